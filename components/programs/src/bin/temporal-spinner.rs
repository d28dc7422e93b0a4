//! The test system `temporal`'s spinner (tests/systems/temporal.capdl): runs the measured loop at high priority on a 20 % budget, polling for the counter's stop signal after every round; prints its iterations and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("temporal", "temporal-spinner", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    let stop: Cap<kind::Notification> = Cap::new(names::caps::STOP_NOTIFICATION);
    let iterations = bulkhead_programs::measured_loop(|_| stop.poll(sys).map(|badge| badge != 0));
    bulkhead_programs::report_iterations(sys, iterations)
}
