//! Times the manifest pipeline on a generated system of 256 PDs and 4,096
//! channels (`generate/mod.rs`): parse, validate, compile and encode the
//! blob, each phase separately and in total, best and median of ten runs.
//! Exits non-zero if the manifest does not validate or compile.
//!
//! `cargo run --release -p bulkhead-capdl --example bench`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_capdl::{Diagnostic, compile, parse, to_blob, validate};

mod generate;

const DOMAINS: usize = 256;
const CHANNELS: usize = 4096;
const RUNS: usize = 10;
const PHASES: [&str; 5] = ["parse", "validate", "compile", "to_blob", "total"];

fn fail(what: &str, errors: &[Diagnostic]) -> ExitCode {
    eprintln!("the generated manifest does not {what}:");
    for error in errors.iter().take(20) {
        eprintln!("{error}");
    }
    ExitCode::FAILURE
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() -> ExitCode {
    let text = generate::manifest(DOMAINS, CHANNELS);
    // Once outside the clock, to report what does not validate.
    let manifest = match parse("bench.capdl", &text) {
        Ok(manifest) => manifest,
        Err(error) => return fail("parse", &[error]),
    };
    let graph = match validate(&manifest) {
        Ok(graph) => graph,
        Err(errors) => return fail("validate", &errors),
    };
    let spec = match compile(&manifest, &graph) {
        Ok(spec) => spec,
        Err(errors) => return fail("compile", &errors),
    };
    let blob = to_blob(&spec);
    if spec.domains.len() != DOMAINS || spec.channels.len() != CHANNELS {
        eprintln!("the spec has {} PDs and {} channels", spec.domains.len(), spec.channels.len());
        return ExitCode::FAILURE;
    }

    let mut times: [Vec<Duration>; PHASES.len()] = Default::default();
    for _ in 0..RUNS {
        let start = Instant::now();
        let Ok(manifest) = parse("bench.capdl", &text) else { return ExitCode::FAILURE };
        let parsed = Instant::now();
        let Ok(graph) = validate(&manifest) else { return ExitCode::FAILURE };
        let validated = Instant::now();
        let Ok(spec) = compile(&manifest, &graph) else { return ExitCode::FAILURE };
        let compiled = Instant::now();
        let encoded = to_blob(&spec);
        let end = Instant::now();
        if encoded != blob {
            eprintln!("two runs gave different blobs");
            return ExitCode::FAILURE;
        }
        let phases = [parsed - start, validated - parsed, compiled - validated, end - compiled, end - start];
        for (phase, time) in times.iter_mut().zip(phases) {
            phase.push(time);
        }
    }

    let caps: usize = spec.domains.iter().map(|domain| domain.caps.len()).sum();
    let mappings: usize = spec.domains.iter().map(|domain| domain.mappings.len()).sum();
    let flows = text.lines().filter(|line| line.starts_with("flow ")).count();
    println!(
        "manifest: {DOMAINS} PDs, {CHANNELS} channels, {flows} flows, {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    println!(
        "spec: {} objects, {caps} capabilities, {mappings} mappings, {} flow edges, blob {} bytes",
        spec.objects.len(),
        graph.edges.len(),
        blob.len()
    );
    println!("{RUNS} runs:");
    println!("| phase | best (ms) | median (ms) |");
    println!("| --- | ---: | ---: |");
    for (name, phase) in PHASES.iter().zip(&mut times) {
        phase.sort();
        let (best, median) = (phase[0], phase[RUNS / 2]);
        println!("| {name} | {:.2} | {:.2} |", milliseconds(best), milliseconds(median));
    }
    ExitCode::SUCCESS
}
