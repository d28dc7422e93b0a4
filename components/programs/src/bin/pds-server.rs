//! The test system `pds`'s server (tests/systems/pds.capdl): answers calls with the word plus the caller's badge.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `pds`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/pds/pds-server.rs"));
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    println!("serving");
    let endpoint: Cap<kind::Endpoint> = Cap::new(names::caps::SERVICE);
    let served = bulkhead_programs::serve_echo(sys, endpoint, Cap::new(names::caps::REPLY), |badge, word| {
        println!("call from badge {badge:#x}: {word}");
    });
    if let Err(error) = served {
        println!("serving failed: {error}");
    }
    1
}

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
