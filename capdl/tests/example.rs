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
    assert!(dot.starts_with("digraph flows {\n"), "{dot}");
    let edges: Vec<&str> = dot.lines().filter(|line| line.contains(" -> ")).map(str::trim).collect();
    assert_eq!(
        edges,
        [
            "\"disk_driver\" -> \"linux_vmx\" [label=\"memory disk_dma, reply block, notify block\"];",
            "\"disk_driver\" -> \"log_server\" [label=\"send log\"];",
            "\"linux_vmm\" -> \"linux_vmx\" [label=\"memory linux_ram, call exits\"];",
            "\"linux_vmm\" -> \"log_server\" [label=\"send log\"];",
            "\"linux_vmx\" -> \"disk_driver\" [label=\"memory disk_dma, call block\"];",
            "\"linux_vmx\" -> \"linux_vmm\" [label=\"memory linux_ram, reply exits, notify exits\"];",
            "\"log_server\" -> \"serial_driver\" [label=\"call console\"];",
            "\"serial_driver\" -> \"log_server\" [label=\"memory log_ring, send log, reply console\"];",
        ],
        "{dot}"
    );
    for domain in ["log_server", "serial_driver", "disk_driver", "linux_vmm", "linux_vmx"] {
        assert!(dot.contains(&format!("    \"{domain}\";\n")), "node {domain} in\n{dot}");
    }
}

#[test]
fn reachability_follows_flows_transitively() {
    let graph = bulkhead_capdl::check("system.capdl", &example()).expect("valid");
    let reach = graph.reachability();
    let reached = |domain: &str| -> Vec<&str> { reach[domain].iter().map(String::as_str).collect() };
    // Log messages go one way: nothing the log server or the serial driver
    // holds reaches the guest's servers or the disk driver.
    assert_eq!(reached("log_server"), ["serial_driver"]);
    assert_eq!(reached("serial_driver"), ["log_server"]);
    // The guest's side reaches everything, through the log.
    assert_eq!(reached("linux_vmm"), ["disk_driver", "linux_vmx", "log_server", "serial_driver"]);
    assert_eq!(reached("disk_driver"), ["linux_vmm", "linux_vmx", "log_server", "serial_driver"]);
    let text = graph.render_reachability();
    assert!(text.contains("log_server -> serial_driver\n"), "{text}");
}

#[test]
fn the_domain_report_lists_holdings_and_reach() {
    let text = example();
    let manifest = bulkhead_capdl::parse("system.capdl", &text).expect("parses");
    let graph = bulkhead_capdl::validate(&manifest).expect("valid");
    let report = bulkhead_capdl::domain_report(&manifest, &graph);
    for line in [
        "serial_driver\n  maps log_ring at 0x1000000000 rw\n  send log -> log_server badge 1\n",
        "  device com2: irq 3, ioports 0x2f8..0x2ff\n  reaches log_server\n",
        "  device ahci: irq 11, mmio 0xfebf1000 size 0x1000, pci 00:1f.2\n",
        "  serves notify block from disk_driver badge 2\n",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }
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
        "manifest.capdl:2:5: error: unknown statement `priorty` in a protection domain\n  hint: a protection domain takes `image`, `priority`, `budget`, `period`, `core`, `stack`, `heap`, `passive`"
    );
}
