//! The test system `ipc_bench`'s server (tests/systems/ipc_bench.capdl): answers every call with the word plus the caller's badge, in a ReplyRecv loop, printing nothing per call.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("ipc_bench", "bench-server", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::Cap;
    let (endpoint, reply) = (Cap::new(names::caps::BENCH), Cap::new(names::caps::REPLY));
    bulkhead_programs::run_echo_server(sys, endpoint, reply, |_, _| {})
}
