//! The static capability manifest: language, separation validator, compiler and generated capability names.
//!
//! A manifest (`docs/capdl.md`) describes a whole system: protection
//! domains, memory regions, channels, devices, guests and the information
//! flows allowed between them. [`parse`] reads one into an [`ast`] whose
//! nodes carry their source positions; [`validate`] resolves its names and
//! proves the separation properties, returning the information-flow
//! [`FlowGraph`]; [`check`] does both. [`compile()`] turns a validated
//! manifest into the [`SystemSpec`] the loader follows, [`to_blob`] and
//! [`from_blob`] carry it as postcard bytes, and [`generated_names`] gives
//! each PD Rust constants for its capability slots and regions.

#![forbid(unsafe_code)]

pub mod ast;
pub mod compile;
pub mod diagnostic;
pub mod graph;
pub mod lexer;
pub mod parser;
pub mod report;
pub mod validate;

pub use compile::{SystemSpec, compile, from_blob, generated_image_names, generated_names, to_blob};
pub use diagnostic::{Diagnostic, Span};
pub use graph::{FlowEdge, FlowGraph};
pub use parser::parse;
pub use report::domain_report;
pub use validate::validate;

/// Parses and validates the manifest `text` read from `file`.
///
/// # Errors
///
/// The syntax error, or every validation error, each with its position
/// and a hint.
pub fn check(file: &str, text: &str) -> Result<FlowGraph, Vec<Diagnostic>> {
    let manifest = parse(file, text).map_err(|error| vec![error])?;
    validate(&manifest)
}

/// Parses, validates and compiles the manifest `text` read from `file`:
/// what the build scripts do with every manifest of the repository.
///
/// # Errors
///
/// The syntax error, or every validation error, or the compiler's errors.
pub fn compile_manifest(file: &str, text: &str) -> Result<SystemSpec, Vec<Diagnostic>> {
    let manifest = parse(file, text).map_err(|error| vec![error])?;
    let graph = validate(&manifest)?;
    compile(&manifest, &graph)
}

/// The `*.capdl` files of `directory`, sorted (none if it cannot be read).
pub fn manifests_in(directory: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
    let mut manifests: Vec<std::path::PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "capdl"))
        .collect();
    manifests.sort();
    manifests
}
