//! The test system `round_robin`'s worker (tests/systems/round_robin.capdl): counts to a bound, reading the TSC at every step to see when it lost the CPU to the caller, signals the caller to stop and exits, printing its count and its waits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("round_robin", "round-robin-worker", run);

/// How far the worker counts: several round-robin slices of work.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const BOUND: u64 = 300_000;
/// A step between two TSC readings longer than this means another thread
/// ran in between (a step of the count takes a few dozen ticks).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const GAP_TICKS: u64 = 100_000;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::arch::read_tsc;
    use bulkhead_sys::println;
    let mut gaps = bulkhead_programs::Gaps::new(GAP_TICKS);
    let start = read_tsc();
    let mut state = 1;
    let mut count = 0;
    while count < BOUND {
        gaps.observe(read_tsc());
        state = bulkhead_programs::work_step(state);
        count += 1;
    }
    let ticks = read_tsc().saturating_sub(start);
    let stop: Cap<kind::Notification> = Cap::new(names::caps::STOP_NOTIFICATION);
    if let Err(error) = stop.signal(sys) {
        println!("signal failed: {error}");
        return 1;
    }
    println!(
        "counted to {count} in {ticks} TSC ticks; gave the CPU away {} times, the longest wait {} ticks",
        gaps.count, gaps.longest
    );
    0
}
