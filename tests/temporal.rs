//! Temporal isolation on the real kernel (`inject=user-temporal`,
//! kernel/src/user_temporal.rs): the local APIC timer preempts a spinning
//! priority-200 thread whose scheduling context allows it 20 % of the CPU,
//! and a priority-1 thread gets the rest, counts, and exits. Under
//! `-icount shift=0` the TSC and the APIC timer count instructions, so the
//! shares are the same on every run. QEMU's TCG has no TSC-deadline timer
//! (the kernel calibrates the one-shot count mode); Bochs's Skylake has
//! one, and its TSC counts instructions too.

mod common;

use bulkhead::emulator::{self, RunOutcome};
use common::*;

/// The per-mille share after `name ran N TSC ticks, ` on its line.
fn share_per_mille(console: &str, name: &str) -> u64 {
    let marker = format!("temporal: {name} ran ");
    let line = console.lines().find(|line| line.starts_with(&marker)).unwrap_or_else(|| panic!("no {marker:?} line"));
    let rest = line.split(", ").nth(1).unwrap_or_else(|| panic!("no share in {line:?}"));
    let percent = rest.split(' ').next().unwrap_or_default();
    let (whole, tenths) = percent.split_once('.').unwrap_or_else(|| panic!("share {percent:?} in {line:?}"));
    whole.parse::<u64>().expect("whole percent") * 10 + tenths.parse::<u64>().expect("tenths")
}

/// Checks the shares, the counter's progress and exit, and the end.
fn assert_temporal_isolation(outcome: &RunOutcome, timer_mode: &str) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the run timed out: the spinner kept the CPU?");
    // The spinner checks RCX and R11 after every preemption, however it was
    // resumed (a SYSRET into a thread the timer preempted would lose them).
    assert!(!console.contains("registers lost"), "a preempted thread got RCX/R11 back wrong");
    assert!(!console.contains("pd-spinner exited"), "the spinner never ends on its own");
    assert!(console.contains(&format!("legacy PIC masked, timer {timer_mode}")), "expected the {timer_mode} timer");
    let spinner = share_per_mille(console, "pd-spinner");
    let counter = share_per_mille(console, "pd-counter");
    assert!((170..=230).contains(&spinner), "the 20 % spinner took {}.{} %", spinner / 10, spinner % 10);
    assert!(counter >= 700, "the counter got only {}.{} %", counter / 10, counter % 10);
    let count = console
        .lines()
        .find_map(|line| line.strip_prefix("user pd-counter: ")?.strip_suffix(" iterations"))
        .expect("the counter printed its count");
    assert!(u64::from_str_radix(count, 16).expect("hex count") > 0);
    assert!(console.lines().any(|line| line.trim_end() == "user mode: pd-counter exited with code 0"));
    assert!(console.contains(" switches by the timer, 0 timer interrupts in ring 0"));
    let frames = console.lines().find(|line| line.starts_with("user mode: temporal test done")).expect("done line");
    let (before, after) = frames.split_once("before ").and_then(|(_, rest)| rest.split_once(", after ")).unwrap();
    assert_eq!(before, after.trim_end(), "frames leaked: {frames}");
    assert_eq!(outcome.final_status(), Some("success"));
}

#[test]
fn a_spinning_high_priority_pd_gets_only_its_budget() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=user-temporal", true);
    assert_temporal_isolation(&outcome, "one-shot");
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

#[test]
fn temporal_isolation_with_the_tsc_deadline_timer_in_bochs() {
    let outcome = run_fault_injection_iso_in_bochs("inject=user-temporal");
    assert_temporal_isolation(&outcome, "TSC-deadline");
}

/// Round robin within a priority (`inject=user-round-robin`): a thread
/// that makes system calls without end shares priority 10 with a counter
/// that counts for 3,000,000 ticks; both budgets are far longer than a
/// slice. The caller's slice ends after 1,000,000 ticks however many calls
/// it makes, so the counter finishes soon after its 3,000,000: a slice
/// restarted on every call would keep it waiting for the caller's whole
/// 40,000,000-tick budget.
#[test]
fn a_thread_that_makes_system_calls_still_gives_way_at_the_end_of_its_slice() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=user-round-robin", true);
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the run timed out");
    assert!(console.lines().any(|line| line.trim_end() == "user mode: pd-counter exited with code 0"));
    let ticks = console
        .lines()
        .find_map(|line| line.strip_prefix("temporal: run of ")?.split(' ').next()?.parse::<u64>().ok())
        .expect("the run's length");
    assert!(ticks < 10_000_000, "the counter waited {ticks} ticks: the caller's slice never ended");
    assert_eq!(outcome.final_status(), Some("success"));
}
