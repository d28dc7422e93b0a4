//! The default system's echo client: calls the server once, prints its answer and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_components::cap::Cap;
use bulkhead_sys::{PdInfo, Sys, println};

bulkhead_programs::program!("default", "echo-client", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &PdInfo, sys: &mut Sys) -> u64 {
    let name = bulkhead_programs::name_of(info);
    match bulkhead_programs::call_echo(sys, Cap::new(names::caps::ECHO), 100) {
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
