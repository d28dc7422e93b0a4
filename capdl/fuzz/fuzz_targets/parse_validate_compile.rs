//! Feeds arbitrary bytes through the whole manifest pipeline: parse,
//! validate and, for a valid manifest, compile, encode, decode and
//! generate every PD's names. Any panic (or, with `-timeout`, a slow
//! input) is a bug; errors are the expected outcome for most inputs.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let Ok(manifest) = bulkhead_capdl::parse("fuzz.capdl", &text) else { return };
    let Ok(graph) = bulkhead_capdl::validate(&manifest) else { return };
    let Ok(spec) = bulkhead_capdl::compile(&manifest, &graph) else { return };
    let blob = bulkhead_capdl::to_blob(&spec);
    let decoded = bulkhead_capdl::from_blob(&blob).expect("a blob just written reads back");
    assert_eq!(decoded, spec, "the blob round-trips");
    assert_eq!(bulkhead_capdl::to_blob(&decoded), blob, "encoding is deterministic");
    for domain in &spec.domains {
        let names = bulkhead_capdl::generated_names(&spec, &domain.name);
        assert!(names.is_some_and(|names| names.contains("pub mod caps")), "names for `{}`", domain.name);
    }
});
