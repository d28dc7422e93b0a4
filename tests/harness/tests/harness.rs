//! The invariant harness in `cargo test`: random sequences of system calls
//! run on the kernel core and on the executable spec, with refinement and
//! every invariant checked after each step (`docs/VERIFICATION.md`).
//!
//! A failure of the random test prints the shortest sequence proptest
//! could shrink it to, as Rust: pasting it into `run(&[...])` below makes
//! it a regression test (the directed tests at the end are written so).

use std::collections::BTreeMap;
use std::time::Instant;

use bulkhead_harness::driver::Addr::{In, R};
use bulkhead_harness::driver::Op::{Copy, Delete, Mint, Move, Mutate, Raw, Retype, Revoke};
use bulkhead_harness::driver::rights::{R as READ, RW, RWGP, W};
use bulkhead_harness::driver::types::{CNODE, ENDPOINT, NOTIFICATION, UNTYPED};
use bulkhead_harness::driver::{Op, Stats, hunt, run, sequence};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Operations per random sequence (after its few setup retypes).
const LENGTH: usize = 100;
/// Random sequences per run of the proptest test.
const CASES: u32 = 600;
/// The fixed-seed run's seed and its operations (sequences of `LENGTH`);
/// `BULKHEAD_HARNESS_OPS` sets another budget (the mutant tests use it).
const SEED: u64 = 0x5eed;
const FIXED_OPS: usize = 50_000;

/// Runs `ops`, failing the test with the violation if there is one.
fn check(ops: &[Op]) -> Stats {
    run(ops).unwrap_or_else(|violation| panic!("{violation}"))
}

proptest! {
    #![proptest_config(Config { cases: CASES, failure_persistence: None, ..Config::default() })]

    /// Random sequences refine the spec and keep every invariant.
    #[test]
    fn random_sequences_refine_the_spec(ops in sequence(LENGTH)) {
        if let Err(violation) = run(&ops) {
            prop_assert!(false, "{}", violation);
        }
    }
}

/// The same sequences every time, without shrinking: prints how many
/// operations ran (and, when something breaks, after how many operations).
#[test]
fn fixed_seed_run() {
    let budget = std::env::var("BULKHEAD_HARNESS_OPS").ok().and_then(|ops| ops.parse().ok()).unwrap_or(FIXED_OPS);
    let started = Instant::now();
    let found = hunt(SEED, budget.div_ceil(LENGTH), LENGTH);
    let elapsed = started.elapsed();
    let mut table: BTreeMap<&str, BTreeMap<u64, usize>> = BTreeMap::new();
    for ((op, code), count) in &found.stats.results {
        table.entry(op).or_default().insert(*code, *count);
    }
    for (op, codes) in table {
        println!("{op}: result code -> count {codes:?}");
    }
    println!(
        "{} operations applied, {} skipped, in {:.1} s",
        found.stats.applied,
        found.stats.skipped,
        elapsed.as_secs_f64()
    );
    if let Some((number, ops, violation)) = found.violation {
        println!("caught after {} operations (sequence {number})", found.stats.applied);
        panic!("{violation}\nthe sequence: {ops:?}");
    }
}

/// Revoking the untyped deletes everything made from it, and the next
/// retype starts again at its base.
#[test]
fn revoking_the_untyped_hands_back_its_memory() {
    let stats = check(&[
        Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 2 },
        Mint { dest: R(5), src: R(3), rights: W, badge: 7 },
        Copy { dest: R(6), src: R(5), rights: RWGP },
        Retype { untyped: 1, kind: CNODE, size_bits: 2, root: 0, node: 0, node_depth: 0, offset: 7, count: 1 },
        Copy { dest: In(7, 1, 2), src: R(6), rights: READ },
        Revoke { slot: R(1) },
        Retype { untyped: 1, kind: NOTIFICATION, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 1 },
    ]);
    assert_eq!(stats.results.get(&("Retype", 0)), Some(&3));
}

/// A badged copy outlives the Mint that badged it and goes with a revoke
/// of the original, not with a revoke of a later Mint of the same badge.
#[test]
fn a_badged_copy_outlives_its_mint() {
    check(&[
        Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 1 },
        Mint { dest: R(4), src: R(3), rights: RWGP, badge: 5 },
        Copy { dest: R(5), src: R(4), rights: RW },
        Mint { dest: R(6), src: R(3), rights: RWGP, badge: 5 },
        Delete { slot: R(4) },
        Revoke { slot: R(6) },
        Mint { dest: R(7), src: R(5), rights: RWGP, badge: 6 },
        Revoke { slot: R(3) },
    ]);
}

/// Deleting the last capability to a CNode deletes what it holds, down
/// through a CNode inside it; a guard set by Mutate addresses its slots.
#[test]
fn deleting_a_cnode_deletes_its_contents() {
    check(&[
        Retype { untyped: 1, kind: CNODE, size_bits: 2, root: 0, node: 0, node_depth: 0, offset: 3, count: 2 },
        Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 3, node_depth: 64, offset: 0, count: 2 },
        Move { dest: In(3, 2, 2), src: R(4) },
        Mutate { dest: R(5), src: R(3), data: (0b1 << 6) | 1 },
        Copy { dest: In(5, 0b110, 3), src: In(5, 0b100, 3), rights: READ },
        Raw { cptr: 5, label: 3, words: 3, extra: 1 },
        Delete { slot: R(5) },
    ]);
}

/// An untyped retyped into one child untyped of its own size: two
/// capabilities to one region, the child's below the parent's.
#[test]
fn an_untyped_may_hold_one_child_of_its_size() {
    check(&[
        Retype { untyped: 1, kind: UNTYPED, size_bits: 14, root: 0, node: 0, node_depth: 0, offset: 11, count: 1 },
        Retype { untyped: 11, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 1 },
        Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 4, count: 1 },
        Delete { slot: R(11) },
        Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 4, count: 1 },
    ]);
}

/// The root thread revoking its CSpace root's children takes its own
/// CSpace away: every later call fails its lookup.
#[test]
fn the_root_thread_can_revoke_its_own_cspace() {
    let stats = check(&[
        Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 1 },
        Revoke { slot: R(0) },
        Copy { dest: R(4), src: R(3), rights: RWGP },
        Delete { slot: R(3) },
    ]);
    assert_eq!(stats.results.get(&("Copy", 6)), Some(&1));
}
