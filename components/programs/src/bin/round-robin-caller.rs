//! The test system `round_robin`'s caller (tests/systems/round_robin.capdl): makes system calls (Poll on its stop notification) without end until the worker signals it; prints how many it made and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `round_robin`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/round_robin/round-robin-caller.rs"));
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let name = bulkhead_programs::name_of(info);
    let stop: Cap<kind::Notification> = Cap::new(names::caps::STOP_NOTIFICATION);
    let mut calls: u64 = 0;
    loop {
        calls += 1;
        match stop.poll(sys) {
            Ok(0) => {}
            Ok(_) => break,
            Err(error) => {
                println!("{name}: poll failed: {error}");
                return 1;
            }
        }
    }
    println!("{name}: stopped after {calls} system calls");
    0
}

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
