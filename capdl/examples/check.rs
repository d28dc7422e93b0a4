//! Checks a manifest: prints its errors, or its flow graph in DOT and what
//! each protection domain holds and reaches.
//!
//! `cargo run -p bulkhead-capdl --example check -- capdl/examples/system.capdl [--dot]`

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = arguments.iter().find(|argument| !argument.starts_with("--")) else {
        eprintln!("usage: check MANIFEST [--dot]");
        return ExitCode::FAILURE;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let manifest = match bulkhead_capdl::parse(path, &text) {
        Ok(manifest) => manifest,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    match bulkhead_capdl::validate(&manifest) {
        Ok(graph) if arguments.iter().any(|argument| argument == "--dot") => print!("{}", graph.to_dot()),
        Ok(graph) => print!("{}", bulkhead_capdl::domain_report(&manifest, &graph)),
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
