//! The default system's echo client: calls the server once, prints its answer and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `default`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/default/echo-client.rs"));
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let name = bulkhead_programs::name_of(info);
    let endpoint: Cap<kind::Endpoint> = Cap::new(names::caps::ECHO);
    match bulkhead_programs::call_echo(sys, endpoint, 100) {
        Ok(answer) => {
            println!("hello from {name}: the server answered {answer}");
            0
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
