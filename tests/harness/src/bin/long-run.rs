//! The long run: random sequences from the harness's generator, each
//! checked step by step against the spec and the invariants, until a
//! number of operations has been applied (`docs/VERIFICATION.md`).
//!
//! ```text
//! cargo run --release -p bulkhead-harness --bin long-run -- [--ops N] [--seed S]
//! ```
//!
//! Every ~10 s and at the end it prints the operations applied (and
//! skipped, taken by the IPC fast path, and the scheduling-context loans
//! begun and ended), the sequences, the seconds, operations per second and
//! the violations, and
//! at the end the code paths reached: per operation kind how many ran and
//! succeeded, per result code how often it came back (and the error
//! codes that never did). A violation is printed with its sequence and
//! makes the exit status 1.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_harness::driver::{MESSAGE_LABEL, Sequences, Stats, run_counting};
use kernel_core::error::SyscallError;

/// Operations per sequence after its setup retypes (as the fixed-seed run).
const LENGTH: usize = 100;
/// Operations when `--ops` is not given.
const DEFAULT_OPS: usize = 10_000_000;
/// The seed when `--seed` is not given (the fixed-seed run's).
const DEFAULT_SEED: u64 = 0x5eed;
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

fn code_name(code: u64) -> String {
    if code == 0 {
        return "success".to_owned();
    }
    if code == MESSAGE_LABEL {
        return "a message's label".to_owned();
    }
    SyscallError::ALL
        .iter()
        .find(|error| error.code() == code)
        .map_or_else(|| format!("code {code}"), |error| format!("{error:?}"))
}

/// A number written with a decimal parse, or with `0x` in hexadecimal.
fn number(text: &str) -> Option<u64> {
    let text = text.replace(['_', ','], "");
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn arguments() -> Result<(usize, u64), String> {
    let (mut ops, mut seed) = (DEFAULT_OPS, DEFAULT_SEED);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|value| number(&value)).ok_or_else(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--ops" => ops = usize::try_from(value).map_err(|_| "--ops is too large".to_owned())?,
            "--seed" => seed = value,
            _ => return Err(format!("unknown argument {flag}; usage: long-run [--ops N] [--seed S]")),
        }
    }
    Ok((ops, seed))
}

fn progress(stats: &Stats, sequences: usize, elapsed: Duration, violations: usize) {
    let seconds = elapsed.as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "a rate to print")]
    let rate = stats.applied as f64 / seconds.max(f64::EPSILON);
    println!(
        "{} operations ({} skipped, {} through the IPC fast path, {} loans begun, {} ended), {sequences} sequences, {seconds:.1} s, {rate:.0} operations/s, {violations} violations",
        stats.applied, stats.skipped, stats.fast_paths, stats.loans_begun, stats.loans_ended
    );
}

/// The code paths reached: per operation, how many ran and succeeded, and
/// each result code's count.
fn paths(stats: &Stats) {
    let mut by_op: BTreeMap<&str, BTreeMap<u64, usize>> = BTreeMap::new();
    let mut by_code: BTreeMap<u64, usize> = BTreeMap::new();
    for ((op, code), count) in &stats.results {
        *by_op.entry(op).or_default().entry(*code).or_default() += count;
        *by_code.entry(*code).or_default() += count;
    }
    println!("operation: ran, succeeded; result codes");
    for (op, codes) in &by_op {
        let ran: usize = codes.values().sum();
        let succeeded = codes.get(&0).copied().unwrap_or(0);
        let detail: Vec<String> = codes.iter().map(|(code, count)| format!("{} {count}", code_name(*code))).collect();
        println!("  {op}: {ran} ran, {succeeded} succeeded; {}", detail.join(", "));
    }
    println!("result code: count");
    for (code, count) in &by_code {
        println!("  {code} {}: {count}", code_name(*code));
    }
    let never: Vec<String> = SyscallError::ALL
        .iter()
        .filter(|error| !by_code.contains_key(&error.code()))
        .map(|error| format!("{error:?}"))
        .collect();
    println!("never returned: {}", if never.is_empty() { "none".to_owned() } else { never.join(", ") });
}

fn main() -> ExitCode {
    let (ops, seed) = match arguments() {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    println!("long run: {ops} operations, seed {seed:#x}, sequences of {LENGTH}");
    let started = Instant::now();
    let mut next_report = PROGRESS_EVERY;
    let mut stream = Sequences::new(seed, LENGTH);
    let mut stats = Stats::default();
    let mut sequences = 0;
    while stats.applied < ops {
        let sequence = stream.next_sequence();
        sequences += 1;
        if let Err(violation) = run_counting(&sequence, &mut stats) {
            progress(&stats, sequences, started.elapsed(), 1);
            paths(&stats);
            println!("{violation}the sequence (number {}): {sequence:?}", sequences - 1);
            return ExitCode::FAILURE;
        }
        if started.elapsed() >= next_report {
            progress(&stats, sequences, started.elapsed(), 0);
            next_report += PROGRESS_EVERY;
        }
    }
    println!("done:");
    progress(&stats, sequences, started.elapsed(), 0);
    paths(&stats);
    ExitCode::SUCCESS
}
