//! Generates the names every program here includes: for each system
//! manifest in the repository (`systems/*.capdl`, the default system, and
//! `tests/systems/*.capdl`, the test systems), for each program image its
//! PDs run, `$OUT_DIR/names/<system>/<image>.rs` with `caps::` and
//! `regions::` constants (`bulkhead_capdl::generated_image_names`). An
//! invalid manifest fails the build with its errors. Also links the
//! bare-metal binaries with the shared ring-3 linker script.

include!("../ring3_build.rs");

use std::path::{Path, PathBuf};

fn main() {
    link_ring3_binary();
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("names");
    for directory in [root.join("systems"), root.join("tests/systems")] {
        println!("cargo:rerun-if-changed={}", directory.display());
        for manifest in bulkhead_capdl::manifests_in(&directory) {
            generate(&manifest, &out);
        }
    }
}

fn generate(manifest: &Path, out: &Path) {
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|error| panic!("{}: {error}", manifest.display()));
    let file = manifest.display().to_string();
    let spec = match bulkhead_capdl::compile_manifest(&file, &text) {
        Ok(spec) => spec,
        Err(errors) => {
            for error in &errors {
                println!("cargo:warning={}", error.to_string().replace('\n', " "));
            }
            panic!("{file}: the manifest has {} errors", errors.len());
        }
    };
    let system = manifest.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let directory = out.join(&system);
    std::fs::create_dir_all(&directory).expect("creating the names directory");
    let mut images: Vec<&str> = spec.domains.iter().map(|domain| domain.image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    for image in images {
        let names = bulkhead_capdl::generated_image_names(&spec, image).expect("a PD runs the image");
        let path = directory.join(format!("{image}.rs"));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(names.as_str()) {
            std::fs::write(&path, names).expect("writing generated names");
        }
    }
}
