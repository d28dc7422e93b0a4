//! The test system `ipc_bench`'s server (tests/systems/ipc_bench.capdl): answers every call with the word plus the caller's badge, in a ReplyRecv loop, printing nothing per call.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `ipc_bench`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/ipc_bench/bench-server.rs"));
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::Cap;
    let name = bulkhead_programs::name_of(info);
    let (endpoint, reply) = (Cap::new(names::caps::BENCH), Cap::new(names::caps::REPLY));
    bulkhead_programs::run_echo_server(sys, &name, endpoint, reply, |_, _| {})
}

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
