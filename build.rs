//! The workspace's build script.
//!
//! It compiles every system manifest in the repository (`systems/*.capdl`,
//! the default system, and `tests/systems/*.capdl`, the test systems) with
//! the capdl compiler: an invalid manifest fails the build with its
//! errors (file:line:column and a hint); each valid one becomes
//! `$OUT_DIR/systems/<name>.spec` (the postcard blob the loader follows)
//! and an entry of `$OUT_DIR/systems.rs`, the table the CLI boots systems
//! from (`src/user_build.rs`). The programs' generated names come from the
//! same compiler in `components/programs/build.rs`. It also checks that the
//! bare-metal target is installed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    compile_systems();
    // The kernel's target and flags are the CLI's business (src/kernel_build.rs),
    // but a missing target should be reported here, early, with the fix.
    let sysroot = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    if let Some(sysroot) = sysroot {
        let target = Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-none");
        if !target.is_dir() {
            println!(
                "cargo:warning=the x86_64-unknown-none target is not installed; run `rustup target add x86_64-unknown-none` (rust-toolchain.toml lists it, so rustup normally adds it by itself)"
            );
        }
    }
}

/// Compiles the repository's manifests into blobs and the CLI's table.
fn compile_systems() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let blobs = out.join("systems");
    std::fs::create_dir_all(&blobs).expect("creating OUT_DIR/systems");
    let mut table = String::from(
        "/// The systems compiled from the repository's manifests by the build script:\n\
         /// (name, manifest path from the repository root, spec blob).\n\
         pub(crate) const SYSTEMS: &[(&str, &str, &[u8])] = &[\n",
    );
    let mut names = Vec::new();
    for directory in ["systems", "tests/systems"] {
        println!("cargo:rerun-if-changed={directory}");
        for manifest in bulkhead_capdl::manifests_in(&root.join(directory)) {
            let name = manifest.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
            assert!(!names.contains(&name), "two system manifests are called `{name}`: rename one");
            let relative = format!("{directory}/{name}.capdl");
            let blob = compile_system(&manifest, &relative);
            let path = blobs.join(format!("{name}.spec"));
            write_if_changed(&path, &blob);
            let _ = writeln!(table, "    ({name:?}, {relative:?}, include_bytes!({:?})),", path.display().to_string());
            names.push(name);
        }
    }
    table.push_str("];\n");
    write_if_changed(&out.join("systems.rs"), table.as_bytes());
}

/// One manifest's blob; panics with its errors.
fn compile_system(manifest: &Path, shown: &str) -> Vec<u8> {
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|error| panic!("{shown}: {error}"));
    match bulkhead_capdl::compile_manifest(shown, &text) {
        Ok(spec) => bulkhead_capdl::to_blob(&spec),
        Err(errors) => {
            for error in &errors {
                println!("cargo:warning={}", error.to_string().replace('\n', " "));
            }
            panic!("{shown}: the manifest has {} errors (above)", errors.len());
        }
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    }
}
