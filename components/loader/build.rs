//! Links the bare-metal loader with the shared ring-3 linker script and
//! puts the system it loads into its image: the file that the environment
//! variable `BULKHEAD_SYSTEM_BUNDLE` names (a `Bundle`: the compiled spec
//! and every program image, written by the host CLI), copied to
//! `$OUT_DIR/system.bundle` for `include_bytes!`. Without the variable the
//! bundle is empty and the loader says so and stops (`cargo build` of the
//! workspace builds it that way).

include!("../ring3_build.rs");

fn main() {
    link_ring3_binary();
    println!("cargo:rerun-if-env-changed=BULKHEAD_SYSTEM_BUNDLE");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("system.bundle");
    let bytes = match std::env::var_os("BULKHEAD_SYSTEM_BUNDLE") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", std::path::Path::new(&path).display());
            std::fs::read(&path).unwrap_or_else(|error| {
                panic!("reading the system bundle {}: {error}", std::path::Path::new(&path).display())
            })
        }
        None => Vec::new(),
    };
    // Write only when changed, so that an unchanged system does not relink.
    if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&out, &bytes).expect("writing the system bundle into OUT_DIR");
    }
}
