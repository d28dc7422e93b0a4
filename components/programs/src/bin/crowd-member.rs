//! The test system `crowd`'s members (tests/systems/crowd.capdl): each
//! says which member it is and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_sys::{PdInfo, Sys, println};

bulkhead_programs::program!("crowd", "crowd-member", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &PdInfo, _sys: &mut Sys) -> u64 {
    println!("{} ran", bulkhead_programs::name_of(info));
    0
}
