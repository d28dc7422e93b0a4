//! The test system `pds`'s server (tests/systems/pds.capdl): answers calls with the word plus
//! the caller's badge.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_components::cap::Cap;
use bulkhead_sys::{PdInfo, Sys};

bulkhead_programs::program!("pds", "pds-server", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &PdInfo, sys: &mut Sys) -> u64 {
    bulkhead_programs::echo_server(sys, Cap::new(names::caps::SERVICE), Cap::new(names::caps::REPLY))
}
