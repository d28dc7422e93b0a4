//! Links the bare-metal guests with the crate's own linker scripts (host
//! builds, empty programs, need none): `guests.ld` for the guests of the
//! test-guest convention, `hostile-pc.ld` for `guest-hostile-pc`, which
//! the CLI packs as a `bzImage` and the Linux boot path loads at 16 MiB.
//! `rustc-link-arg-bin` applies to one binary.

/// The guests linked with `guests.ld` (every binary but the hostile PC
/// guest; `tests/images.rs` checks them).
const CONVENTION_GUESTS: [&str; 6] =
    ["guest-real", "guest-protected", "guest-long", "guest-hostile", "guest-isolation", "guest-cpuid-loop"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // Absolute paths: the linker runs in another directory.
    let script = format!("{manifest_dir}/guests.ld");
    let hostile_pc_script = format!("{manifest_dir}/hostile-pc.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed={hostile_pc_script}");
    if std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() != "none" {
        return;
    }
    for guest in CONVENTION_GUESTS {
        println!("cargo:rustc-link-arg-bin={guest}=-T{script}");
    }
    println!("cargo:rustc-link-arg-bin=guest-hostile-pc=-T{hostile_pc_script}");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-static");
}
