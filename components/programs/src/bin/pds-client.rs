//! The test system `pds`'s clients: each calls the server once and checks that the answer
//! carries its badge.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_components::cap::Cap;
use bulkhead_sys::{PdInfo, Sys, println};

bulkhead_programs::program!("pds", "pds-client", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &PdInfo, sys: &mut Sys) -> u64 {
    match bulkhead_programs::call_echo(sys, Cap::new(names::caps::SERVICE), 0x100) {
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
