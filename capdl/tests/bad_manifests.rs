//! Every manifest in `tests/bad/` has one defect, named on its first line
//! as `# expect: LINE:COLUMN MESSAGE`. Each must be rejected with exactly
//! one error, at that position, whose message contains that text.

use std::path::PathBuf;

struct Expectation {
    line: u32,
    column: u32,
    message: String,
}

fn expectation(file: &str, text: &str) -> Expectation {
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("# expect: ").unwrap_or_else(|| panic!("{file}: no `# expect:` first line"));
    let (position, message) = rest.split_once(' ').unwrap_or_else(|| panic!("{file}: `# expect: L:C MESSAGE`"));
    let (line, column) = position.split_once(':').unwrap_or_else(|| panic!("{file}: position is LINE:COLUMN"));
    Expectation {
        line: line.parse().unwrap_or_else(|_| panic!("{file}: line")),
        column: column.parse().unwrap_or_else(|_| panic!("{file}: column")),
        message: message.to_owned(),
    }
}

fn bad_manifests() -> Vec<(String, String)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&directory)
        .expect("tests/bad")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "capdl"))
        .map(|path| {
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            let text = std::fs::read_to_string(&path).expect("readable manifest");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn at_least_thirty_bad_manifests() {
    let count = bad_manifests().len();
    assert!(count >= 30, "only {count} bad manifests");
}

#[test]
fn every_bad_manifest_is_rejected_with_its_message_and_position() {
    let mut failures = Vec::new();
    for (file, text) in bad_manifests() {
        let expected = expectation(&file, &text);
        let errors = match bulkhead_capdl::check(&file, &text) {
            Ok(_) => {
                failures.push(format!("{file}: accepted, expected `{}`", expected.message));
                continue;
            }
            Err(errors) => errors,
        };
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let [error] = errors.as_slice() else {
            failures.push(format!("{file}: {} errors, expected one:\n{}", errors.len(), rendered.join("\n")));
            continue;
        };
        let position_matches = error.span.line == expected.line && error.span.column == expected.column;
        if !position_matches || !error.message.contains(&expected.message) || error.hint.is_empty() {
            failures.push(format!(
                "{file}: expected {}:{} `{}`, got\n{}",
                expected.line, expected.column, expected.message, rendered[0]
            ));
        }
        assert_eq!(&*error.span.file, file, "the error names its file");
    }
    assert!(failures.is_empty(), "{} of the bad manifests failed:\n{}", failures.len(), failures.join("\n\n"));
}

/// The bad manifests differ from one valid system by one defect each:
/// the base they were written from must itself be valid, or the test
/// above would prove nothing about which defect is caught.
#[test]
fn the_bad_manifests_share_a_valid_base() {
    let base = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/base.capdl"))
        .expect("tests/base.capdl");
    if let Err(errors) = bulkhead_capdl::check("base.capdl", &base) {
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("the base manifest should validate:\n{}", rendered.join("\n"));
    }
}
