//! The test system `temporal`'s counter (tests/systems/temporal.capdl): runs the measured loop at low priority for a fixed number of iterations (a Yield after every round, a system call like the spinner's poll), then signals the spinner to stop; prints its iterations and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("temporal", "temporal-counter", run);

/// How many iterations the counter runs: about 120 of its periods under
/// QEMU `-icount shift=0`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const ITERATIONS: u64 = 120_000_000;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_components::invocation::yield_now;
    let stop: Cap<kind::Notification> = Cap::new(names::caps::STOP_NOTIFICATION);
    let iterations = bulkhead_programs::measured_loop(|so_far| yield_now(sys).map(|()| so_far >= ITERATIONS))
        .and_then(|iterations| stop.signal(sys).map(|()| iterations));
    bulkhead_programs::report_iterations(sys, iterations)
}
