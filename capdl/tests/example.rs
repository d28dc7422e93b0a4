//! The example system of docs/capdl.md parses and validates cleanly, and
//! its information-flow graph is the one the manifest describes.

use std::path::PathBuf;

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> String {
    std::fs::read_to_string(crate_root().join("examples/system.capdl")).expect("examples/system.capdl")
}

#[test]
fn the_example_validates_without_errors() {
    if let Err(errors) = bulkhead_capdl::check("system.capdl", &example()) {
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("the example should validate:\n{}", rendered.join("\n"));
    }
}

#[test]
fn the_documentation_shows_the_example_in_full() {
    let doc = std::fs::read_to_string(crate_root().join("../docs/capdl.md")).expect("docs/capdl.md");
    let start = doc.find("```capdl\n# A small Bulkhead system").expect("the example's code block") + "```capdl\n".len();
    let end = start + doc[start..].find("```").expect("the block's end");
    assert_eq!(doc[start..end], example(), "docs/capdl.md and examples/system.capdl differ");
}

#[test]
fn dot_output_has_the_expected_edges() {
    let graph = bulkhead_capdl::check("system.capdl", &example()).expect("valid");
    let dot = graph.to_dot();
    assert!(dot.starts_with("digraph flows {"), "{dot}");
    for edge in [
        "\"serial_driver\" -> \"log_server\" [label=\"memory log_ring, call log, reply console\"];",
        "\"log_server\" -> \"serial_driver\" [label=\"reply log, call console\"];",
        "\"linux_vmx\" -> \"linux_vmm\" [label=\"memory linux_ram, reply exits, notify exits\"];",
        "\"disk_driver\" -> \"linux_vmx\" [label=\"memory disk_dma, reply block, notify block\"];",
    ] {
        assert!(dot.contains(edge), "missing {edge} in\n{dot}");
    }
    // Nothing connects the serial driver to the guest's servers directly,
    // and the log ring is read by its server alone.
    assert!(!dot.contains("\"serial_driver\" -> \"linux_vmm\""), "{dot}");
    assert!(!dot.contains("\"log_server\" -> \"log_server\""), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 10, "ten distinct flows:\n{dot}");
}

#[test]
fn reachability_follows_flows_transitively() {
    let graph = bulkhead_capdl::check("system.capdl", &example()).expect("valid");
    let reach = graph.reachability();
    let everyone_else = |domain: &str| {
        let mut all: Vec<&str> = ["log_server", "serial_driver", "disk_driver", "linux_vmm", "linux_vmx"]
            .into_iter()
            .filter(|d| *d != domain)
            .collect();
        all.sort_unstable();
        all
    };
    for (domain, reached) in &reach {
        let reached: Vec<&str> = reached.iter().map(String::as_str).collect();
        assert_eq!(reached, everyone_else(domain), "{domain}");
    }
    let text = graph.render_reachability();
    assert!(text.contains("serial_driver -> disk_driver, linux_vmm, linux_vmx, log_server\n"), "{text}");
}

#[test]
fn removing_a_flow_declaration_makes_the_example_fail() {
    let text = example().replace("flow linux_vmx <-> disk_driver\n", "flow linux_vmx -> disk_driver\n");
    let errors = bulkhead_capdl::check("system.capdl", &text).expect_err("an undeclared flow");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("undeclared flow `disk_driver` -> `linux_vmx`"), "{}", errors[0]);
}

#[test]
fn errors_render_with_file_line_column_and_hint() {
    let errors = bulkhead_capdl::check("manifest.capdl", "pd a {\n    priorty 1\n}\n").expect_err("a typo");
    assert_eq!(
        errors[0].to_string(),
        "manifest.capdl:2:5: error: unknown statement `priorty` in a protection domain\n  hint: a protection domain takes `image`, `priority`, `budget`, `period`, `core`, `stack`, `heap`"
    );
}
