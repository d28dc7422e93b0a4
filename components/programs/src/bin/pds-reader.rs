//! The test system `pds`'s reader: waits for the writer's signal, checks the shared page, finds the slot past its capabilities empty, and uses its heap.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

bulkhead_programs::program!("pds", "pds-reader", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let ready: Cap<kind::Notification> = Cap::new(names::caps::READY_NOTIFICATION);
    match ready.wait(sys) {
        Ok(badge) => println!("signalled with badge {badge:#x}"),
        Err(error) => {
            println!("wait failed: {error}");
            return 1;
        }
    }
    let Some(page) = bulkhead_sys::mapped::SharedPage::new(names::regions::SHARED_PAGE.address) else { return 1 };
    let intact =
        (0..bulkhead_sys::mapped::WORDS).all(|index| page.read(index) == Some(bulkhead_programs::pattern(index)));
    println!("the shared page is {}", if intact { "intact" } else { "wrong" });
    // Nothing else: the slot after its last capability is empty.
    let beyond: Cap<kind::Notification> = Cap::new(names::caps::READY_NOTIFICATION + 1);
    let refused = beyond.signal(sys);
    match refused {
        Ok(()) => println!("a slot it was not given is usable"),
        Err(error) => println!("a slot it was not given: {error}"),
    }
    // The heap the manifest gave it works.
    let squares: Vec<u64> = (0..100).map(|value| value * value).collect();
    let heap_works = squares.iter().sum::<u64>() == 328_350;
    println!("heap {}", if heap_works { "works" } else { "is wrong" });
    if intact && refused.is_err() && heap_works { 0 } else { 1 }
}
