//! The test system `pds`'s clients: each calls the server once and checks that the answer carries its badge.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `pds`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/pds/pds-client.rs"));
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let endpoint: Cap<kind::Endpoint> = Cap::new(names::caps::SERVICE);
    match bulkhead_programs::call_echo(sys, endpoint, 0x100) {
        Ok(answer) if answer > 0x100 => {
            println!("answer {answer:#x}");
            0
        }
        Ok(answer) => {
            println!("answer {answer:#x} carries no badge");
            1
        }
        Err(error) => {
            println!("the call failed: {error}");
            1
        }
    }
}

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
