//! `cargo run -- capdl check|graph|show`: the capability manifest's
//! validator from the command line (`docs/capdl.md`).

/// What a `capdl` subcommand prints and how it ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// For standard output.
    pub stdout: String,
    /// For standard error: diagnostics, each `file:line:column: error: ...`
    /// with its hint.
    pub stderr: String,
    /// 0: valid; 1: the manifest has errors (or names no such domain);
    /// 2: the command line or the file is wrong.
    pub code: u8,
}

/// The subcommands' usage.
pub const USAGE: &str = "\
usage: cargo run -- capdl check FILE       validate a manifest
       cargo run -- capdl graph FILE       its information-flow graph in DOT
       cargo run -- capdl show FILE PD     what one protection domain holds and reaches
";

fn failure(stderr: String, code: u8) -> Outcome {
    Outcome { stdout: String::new(), stderr, code }
}

/// Runs `capdl ARGUMENTS...` (the words after `capdl`).
#[must_use]
pub fn run(arguments: &[String]) -> Outcome {
    let (command, path, domain) = match arguments {
        [command, path] if command == "check" || command == "graph" => (command.as_str(), path, None),
        [command, path, domain] if command == "show" => (command.as_str(), path, Some(domain.as_str())),
        _ => return failure(format!("bulkhead: capdl: unexpected arguments\n\n{USAGE}"), 2),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => return failure(format!("bulkhead: capdl: {path}: {error}\n"), 2),
    };
    let manifest = match bulkhead_capdl::parse(path, &text) {
        Ok(manifest) => manifest,
        Err(error) => return failure(format!("{error}\n"), 1),
    };
    let graph = match bulkhead_capdl::validate(&manifest) {
        Ok(graph) => graph,
        Err(errors) => return failure(errors.iter().map(|error| format!("{error}\n")).collect(), 1),
    };
    let report = bulkhead_capdl::domain_report(&manifest, &graph);
    let stdout = match (command, domain) {
        ("graph", _) => graph.to_dot(),
        ("show", Some(domain)) => {
            // The report has one block per domain: its name, then indented lines.
            let mut lines = report.lines().skip_while(|line| *line != domain);
            let Some(name) = lines.next() else {
                return failure(format!("bulkhead: capdl: {path} has no protection domain {domain}\n"), 1);
            };
            let body: String = lines.take_while(|line| line.starts_with(' ')).map(|line| format!("{line}\n")).collect();
            format!("{name}\n{body}")
        }
        _ => {
            format!("{path}: valid, {} protection domains, {} flows\n", graph.domains.len(), graph.edges.len())
        }
    };
    Outcome { stdout, stderr: String::new(), code: 0 }
}
