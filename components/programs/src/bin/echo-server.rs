//! The default system's echo server: answers each client's call with its word plus the
//! client's badge.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_components::cap::Cap;
use bulkhead_sys::{PdInfo, Sys};

bulkhead_programs::program!("default", "echo-server", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &PdInfo, sys: &mut Sys) -> u64 {
    bulkhead_programs::echo_server(sys, Cap::new(names::caps::ECHO), Cap::new(names::caps::REPLY))
}
