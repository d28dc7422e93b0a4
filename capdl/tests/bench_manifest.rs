//! The benchmark's generated system (`examples/generate/mod.rs`, 256 PDs
//! and 4,096 channels) validates and compiles, so that `cargo run
//! --example bench` always times a manifest that works. Time is not
//! checked here: docs/PERFORMANCE.md records it.

#[path = "../examples/generate/mod.rs"]
mod generate;

use bulkhead_capdl::{compile, from_blob, generated_names, parse, to_blob, validate};

#[test]
fn the_generated_system_validates_and_compiles() {
    let text = generate::manifest(256, 4096);
    let manifest = parse("bench.capdl", &text).unwrap_or_else(|error| panic!("{error}"));
    let graph = validate(&manifest).unwrap_or_else(|errors| panic!("{}", errors[0]));
    let spec = compile(&manifest, &graph).unwrap_or_else(|errors| panic!("{}", errors[0]));
    assert_eq!(spec.domains.len(), 256);
    assert_eq!(spec.channels.len(), 4096);
    assert_eq!(from_blob(&to_blob(&spec)).ok(), Some(spec.clone()));
    // Every PD calls, sends or signals on 16 channels and is served on 16.
    for domain in &spec.domains {
        assert!(domain.caps.len() > 32, "{}: {} caps", domain.name, domain.caps.len());
        assert!(generated_names(&spec, &domain.name).is_some());
    }
}

#[test]
fn smaller_generated_systems_validate_too() {
    for domains in [32, 64, 128] {
        let text = generate::manifest(domains, domains * 4);
        let graph = bulkhead_capdl::check("small.capdl", &text).unwrap_or_else(|errors| panic!("{}", errors[0]));
        assert_eq!(graph.domains.len(), domains);
    }
}
