//! The test system `round_robin`'s caller (tests/systems/round_robin.capdl): makes system calls (Poll on its stop notification) without end until the worker signals it; prints how many it made and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("round_robin", "round-robin-caller", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let stop: Cap<kind::Notification> = Cap::new(names::caps::STOP_NOTIFICATION);
    let mut calls: u64 = 0;
    loop {
        calls += 1;
        match stop.poll(sys) {
            Ok(0) => {}
            Ok(_) => break,
            Err(error) => {
                println!("poll failed: {error}");
                return 1;
            }
        }
    }
    println!("stopped after {calls} system calls");
    0
}
