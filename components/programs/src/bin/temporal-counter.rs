//! The test system `temporal`'s counter (tests/systems/temporal.capdl): runs the measured loop at low priority for a fixed number of iterations (a Yield after every round, a system call like the spinner's poll), then signals the spinner to stop; prints its iterations and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `temporal`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/temporal/temporal-counter.rs"));
}

/// How many iterations the counter runs: about 120 of its periods under
/// QEMU `-icount shift=0`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const ITERATIONS: u64 = 120_000_000;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_components::invocation::yield_now;
    let stop: Cap<kind::Notification> = Cap::new(names::caps::STOP_NOTIFICATION);
    let iterations = bulkhead_programs::measured_loop(|so_far| yield_now(sys).map(|()| so_far >= ITERATIONS))
        .and_then(|iterations| stop.signal(sys).map(|()| iterations));
    bulkhead_programs::report_iterations(sys, &bulkhead_programs::name_of(info), iterations)
}

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
