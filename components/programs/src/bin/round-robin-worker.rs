//! The test system `round_robin`'s worker (tests/systems/round_robin.capdl): counts to a bound, reading the TSC at every step to see when it lost the CPU to the caller, signals the caller to stop and exits, printing its count and its waits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `round_robin`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/round_robin/round-robin-worker.rs"));
}

/// How far the worker counts: several round-robin slices of work.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const BOUND: u64 = 300_000;
/// A step between two TSC readings longer than this means another thread
/// ran in between (a step of the count takes a few dozen ticks).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const GAP_TICKS: u64 = 100_000;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::arch::read_tsc;
    use bulkhead_sys::println;
    let name = bulkhead_programs::name_of(info);
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
        println!("{name}: signal failed: {error}");
        return 1;
    }
    println!(
        "{name}: counted to {count} in {ticks} TSC ticks; gave the CPU away {} times, the longest wait {} ticks",
        gaps.count, gaps.longest
    );
    0
}

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
