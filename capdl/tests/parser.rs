//! The parser keeps every node's position and reads units, numbers and
//! rights as docs/capdl.md describes.

use bulkhead_capdl::ast::{ConnectionKind, Item};
use bulkhead_capdl::lexer::{TokenKind, tokenize};

const SYSTEM: &str = "\
# two PDs
pd a {
\timage \"a\"   # tab-indented: a tab is one column
    priority 0x10
    budget 1_500us
    period 2ms
    core 0
    heap 2MiB
}
region r {
    size 1GiB
    page 1GiB
    map a at 0x40_0000_0000 rx
}
channel c {
    rights write grant
    notify a -> a badge 7 rights write
}
flow a <-> a
";

#[test]
fn nodes_carry_file_line_and_column() {
    let manifest = bulkhead_capdl::parse("sys.capdl", SYSTEM).expect("parses");
    let [Item::ProtectionDomain(domain), Item::Region(region), Item::Channel(channel), Item::Flow(flow)] =
        manifest.items.as_slice()
    else {
        panic!("four items: {manifest:?}");
    };
    assert_eq!((&*domain.name.span.file, domain.name.span.line, domain.name.span.column), ("sys.capdl", 2, 4));
    let image = domain.image.as_ref().expect("image");
    assert_eq!((image.value.as_str(), image.span.line, image.span.column), ("a", 3, 8));
    let mapping = &region.mappings[0];
    assert_eq!((mapping.span.line, mapping.span.column), (13, 5));
    assert_eq!((mapping.domain.span.line, mapping.domain.span.column), (13, 9));
    assert_eq!((mapping.address.value, mapping.address.span.column), (0x40_0000_0000, 14));
    assert_eq!((mapping.rights.value.to_string().as_str(), mapping.rights.span.column), ("rx", 29));
    let connection = &channel.connections[0];
    assert_eq!(connection.kind, ConnectionKind::Notify);
    assert_eq!((connection.to.span.line, connection.to.span.column), (17, 17));
    assert_eq!(connection.badge.as_ref().map(|badge| badge.value), Some(7));
    assert!(flow.both_ways);
    assert_eq!((flow.span.line, flow.span.column, flow.to.span.column), (19, 1, 12));
}

#[test]
fn units_scale_sizes_and_times() {
    let manifest = bulkhead_capdl::parse("sys.capdl", SYSTEM).expect("parses");
    let Item::ProtectionDomain(domain) = &manifest.items[0] else { panic!("a PD first") };
    let value = |field: &Option<bulkhead_capdl::ast::Located<u64>>| field.as_ref().map(|located| located.value);
    assert_eq!(value(&domain.priority), Some(16));
    assert_eq!(value(&domain.budget), Some(1_500));
    assert_eq!(value(&domain.period), Some(2_000));
    assert_eq!(value(&domain.heap), Some(2 << 20));
    let Item::Region(region) = &manifest.items[1] else { panic!("a region second") };
    assert_eq!(value(&region.size), Some(1 << 30));
}

#[test]
fn the_lexer_reads_punctuation_comments_and_newlines() {
    let tokens = tokenize("t", "a->b <-> 1..0x2 # c -> d\n\"s\"").expect("lexes");
    let kinds: Vec<TokenKind> = tokens.into_iter().map(|token| token.kind).collect();
    let number = |value| TokenKind::Number { value, unit: String::new() };
    assert_eq!(
        kinds,
        [
            TokenKind::Word("a".into()),
            TokenKind::Arrow,
            TokenKind::Word("b".into()),
            TokenKind::BothWays,
            number(1),
            TokenKind::DotDot,
            number(2),
            TokenKind::Newline,
            TokenKind::Text("s".into()),
            TokenKind::End,
        ]
    );
}

#[test]
fn a_statement_ends_at_the_end_of_its_line() {
    let error = bulkhead_capdl::parse("t", "pd a { image \"a\" }\n").expect_err("one line");
    assert_eq!((error.span.line, error.span.column), (1, 8));
    assert!(error.message.contains("expected the end of the line"), "{error}");
    let error = bulkhead_capdl::parse("t", "flow a -> b flow b -> a\n").expect_err("two statements");
    assert_eq!((error.span.line, error.span.column), (1, 13));
}

#[test]
fn an_empty_manifest_is_valid_and_has_no_flows() {
    let graph = bulkhead_capdl::check("empty.capdl", "# nothing yet\n\n").expect("valid");
    assert!(graph.edges.is_empty() && graph.domains.is_empty());
    assert_eq!(graph.to_dot(), "digraph flows {\n    node [shape=box];\n}\n");
}

#[test]
fn a_guest_names_its_debug_port_once() {
    let text = "guest g {\n    vmm v\n    debug com2\n}\n";
    let manifest = bulkhead_capdl::parse("sys.capdl", text).expect("parses");
    let [Item::Guest(guest)] = manifest.items.as_slice() else { panic!("one guest: {manifest:?}") };
    let debug = guest.debug.as_ref().expect("a debug port");
    assert_eq!((debug.text.as_str(), debug.span.line, debug.span.column), ("com2", 3, 11));
    let without = bulkhead_capdl::parse("sys.capdl", "guest g {\n    vmm v\n}\n").expect("parses");
    let [Item::Guest(guest)] = without.items.as_slice() else { panic!("one guest") };
    assert_eq!(guest.debug, None);
    let twice = text.replace("    debug com2\n", "    debug com2\n    debug com3\n");
    let error = bulkhead_capdl::parse("sys.capdl", &twice).expect_err("two debug ports");
    assert_eq!((error.span.line, error.span.column), (4, 5));
    assert!(error.message.contains("`debug` given twice"), "{error}");
    let error = bulkhead_capdl::parse("sys.capdl", "guest g {\n    debug \"com2\"\n}\n").expect_err("a string");
    assert_eq!(error.span.line, 2);
}
