// The build-script part every ring-3 binary shares (`include!`d by each
// one's `build.rs`): links the bare-metal binary with `components/ring3.ld`
// (host builds, empty programs, need none). `rustc-link-arg-bins`
// applies to the package's binaries only.

/// Adds the linker script and the static-executable flags.
fn link_ring3_binary() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{manifest_dir}/../ring3.ld");
    println!("cargo:rerun-if-changed={script}");
    if std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() != "none" {
        return;
    }
    // An absolute path: the linker runs in another directory.
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-static");
}
