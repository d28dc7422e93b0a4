//! The workspace's build script.
//!
//! Today it records what the CLI needs to know about the tree it was built
//! from. When the capability manifest lands (capdl/), this is where the
//! manifest is compiled and the ring-3 protection domains are packed into
//! the boot image.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The kernel's target and flags are the CLI's business (src/kernel_build.rs),
    // but a missing target should be reported here, early, with the fix.
    let sysroot = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    if let Some(sysroot) = sysroot {
        let target = std::path::Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-none");
        if !target.is_dir() {
            println!(
                "cargo:warning=the x86_64-unknown-none target is not installed; run `rustup target add x86_64-unknown-none` (rust-toolchain.toml lists it, so rustup normally adds it by itself)"
            );
        }
    }
}
