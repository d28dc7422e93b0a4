//! The kernel's test systems as manifests, booted through the loader on the
//! standard kernel: the Rust counterparts of the fault-injection kernel's
//! assembly programs (`inject=user-temporal`, `user-round-robin`,
//! `user-ipc-bench`, `user-devices`; `tests/temporal.rs` and
//! `tests/user_mode.rs`, which test the kernel without the loader). Each
//! system is a manifest in `tests/systems/`, its programs are binaries of
//! `components/programs` named after their images, and the loader builds
//! it, starts its PDs and exits; the run ends when no thread can run any
//! more.
//!
//! - `temporal`: a spinner (priority 200, 2 ms in every 10 ms: 20 %) and
//!   a counter (priority 1, 8 ms in every 10 ms: the rest of the core; a
//!   whole period would put the core's budgets over 1, which the validator
//!   refuses) run the same measured loop
//!   (`bulkhead_programs::measured_loop`: rounds of 1,000 iterations, one
//!   system call after each). The counter runs 120,000,000 iterations, signals the spinner's
//!   `stop` notification and exits; the spinner polls it after every round
//!   and exits when signalled. With equal work per iteration, the
//!   spinner's share of the iterations is its share of the CPU: about
//!   20 %.
//! - `round_robin`: a caller that polls its `stop` notification without
//!   end and a worker that counts, both at priority 10 with half of a 1 s
//!   period: far longer than the run, so only the round-robin slice
//!   (1,000,000 TSC ticks) takes the CPU from the caller. The worker reads the TSC at
//!   every step, counts the times it lost the CPU and its longest wait,
//!   signals the caller and exits; the caller then stops.
//! - `ipc_bench`: a client makes 10,000 one-word Calls to a server
//!   (priority 200) that answers each in a ReplyRecv loop, and prints the
//!   TSC ticks per round trip: instructions under QEMU `-icount shift=0`,
//!   the figure for Rust PDs built by the loader (docs/PERFORMANCE.md).
//!   The server stays blocked in its receive at the end.
//! - `devices`: a driver owning the RTC's ports (0x70..0x71) and the PIT's
//!   (0x40..0x43, line 0) reads the RTC's seconds through its port
//!   capability, is refused port 0x72 through the same capability,
//!   programs PIT channel 0 at 100 Hz and takes three interrupts by
//!   polling the PIT's notification (a PD that waited would leave no
//!   thread to run, which ends the run), acknowledging each; then it
//!   stops the PIT, clears its handler and exits.
//!
//! `temporal` runs under plain TCG and under `-icount shift=0`, where the
//! TSC and the APIC timer count instructions and the figures are the same
//! on every run; `round_robin` and `ipc_bench` run under `-icount` only,
//! `devices` under plain TCG. The measured figures are in
//! docs/PERFORMANCE.md ("IPC round trip", "Temporal isolation").

mod common;

use bulkhead::emulator::{self, RunOutcome};
use common::*;

/// The loader finished, `ended` PDs exited with 0 and none failed, and the
/// kernel reported success.
fn assert_system_succeeded(outcome: &RunOutcome, ended: usize) {
    let console = &outcome.console;
    assert_loader_run_succeeded(outcome);
    assert!(
        console.contains(&format!("system: {ended} threads ended: {ended} with code 0, 0 failed")),
        "expected {ended} PDs to exit with 0"
    );
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

/// The text after `marker` on the console line that contains it.
fn after<'a>(console: &'a str, marker: &str) -> &'a str {
    console
        .lines()
        .find_map(|line| line.split_once(marker).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no line with {marker:?}"))
}

/// The leading decimal number of `text`.
fn leading_number(text: &str) -> u64 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number at the start of {text:?}"))
}

/// The number right after `marker` in the line with `marker`.
fn number_between(console: &str, marker: &str) -> u64 {
    leading_number(after(console, marker))
}

/// Checks that console lines end with each of `expected`, in this order.
fn assert_line_ends_in_order(console: &str, expected: &[&str]) {
    let mut lines = console.lines();
    for end in expected {
        assert!(lines.any(|line| line.trim_end().ends_with(end)), "no line ending {end:?} (or out of order)");
    }
}

/// Runs `temporal` and checks the spinner's share: returns it in per mille.
fn temporal_share(count_instructions: bool) -> u64 {
    let outcome = boot_system("temporal", "", count_instructions);
    assert_system_succeeded(&outcome, 2);
    let spinner = number_between(&outcome.console, "spinner: ");
    let counter = number_between(&outcome.console, "counter: ");
    assert_eq!(counter, 120_000_000, "the counter runs a fixed number of iterations");
    let share = spinner * 1000 / (spinner + counter);
    println!("spinner {spinner} iterations, counter {counter}: the spinner's share {}.{} %", share / 10, share % 10);
    assert!((150..=250).contains(&share), "the 20 % spinner got {}.{} % of the iterations", share / 10, share % 10);
    share
}

#[test]
fn temporal_a_budgeted_spinner_gets_its_share() {
    temporal_share(false);
}

#[test]
fn temporal_a_budgeted_spinner_gets_its_share_counting_instructions() {
    temporal_share(true);
}

#[test]
fn round_robin_the_slice_rotates_between_a_caller_and_a_worker() {
    let outcome = boot_system("round_robin", "", true);
    assert_system_succeeded(&outcome, 2);
    let console = &outcome.console;
    let worker = after(console, "worker: counted to ");
    println!("worker: counted to {worker}");
    let away = leading_number(after(worker, "gave the CPU away "));
    let longest = leading_number(after(worker, "the longest wait "));
    // The caller holds the CPU first; it loses it only at the end of its
    // slices, each of 1,000,000 ticks, while its budget is half a second.
    assert!(away >= 2, "the worker lost the CPU {away} times: the slice did not rotate");
    assert!(longest < 10_000_000, "the worker waited {longest} ticks: the caller's slice never ended");
    assert!(number_between(console, "caller: stopped after ") > 0);
}

#[test]
fn ipc_bench_prints_instructions_per_round_trip() {
    let outcome = boot_system("ipc_bench", "", true);
    assert_system_succeeded(&outcome, 1);
    let figures = after(&outcome.console, "bench_client: 10000 round trips, every answer right: ");
    println!("bench_client: {figures}");
    let per_round_trip = leading_number(after(figures, "TSC ticks, "));
    // Not a timing gate: a sanity bound on a deterministic count.
    assert!(per_round_trip > 0 && per_round_trip < 10_000, "{per_round_trip} instructions per round trip");
}

#[test]
fn devices_a_driver_uses_its_ports_and_takes_interrupts() {
    let outcome = boot_system("devices", "", false);
    assert_system_succeeded(&outcome, 1);
    let console = &outcome.console;
    let seconds = u8::from_str_radix(&after(console, "driver: rtc: seconds ")[..2], 16).expect("two hex digits");
    assert!(seconds < 0x60 && seconds & 0xf < 10, "not a BCD seconds value: {seconds:#x}");
    assert_line_ends_in_order(
        console,
        &[
            "driver: port 0x72 outside its range: value out of range",
            "driver: pit programmed for 100 Hz",
            "driver: interrupt 1: badge 0x1, acknowledged",
            "driver: interrupt 2: badge 0x1, acknowledged",
            "driver: interrupt 3: badge 0x1, acknowledged",
            "driver: interrupt 1 waited for: badge 0x1, acknowledged",
            "driver: interrupt 2 waited for: badge 0x1, acknowledged",
            "driver: interrupt 3 waited for: badge 0x1, acknowledged",
        ],
    );
    assert!(after(console, "driver: 3 interrupts in ").ends_with("; the pit stopped"));
}
