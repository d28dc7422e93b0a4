//! The test system `pds`'s pager: receives the intruder's fault and reports it;
//! it does not resume the intruder.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("pds", "pds-pager", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let faults: Cap<kind::Endpoint> = Cap::new(names::caps::FAULTS);
    let reply: Cap<kind::Reply> = Cap::new(names::caps::REPLY);
    match faults.recv(sys, Some(reply)) {
        Ok(fault) => match bulkhead_programs::describe_fault(&fault.message) {
            Some(described) => {
                println!("{described} from badge {:#x}", fault.badge);
                0
            }
            None => {
                println!("a message that is no fault (label {:#x})", fault.message.label);
                1
            }
        },
        Err(error) => {
            println!("receive failed: {error}");
            1
        }
    }
}
