//! The test system `pds`'s intruder: reads memory its manifest does not map;
//! the fault goes to its pager, and it never runs again.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("pds", "pds-intruder", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_sys::println;
    let _ = sys;
    let Some(page) = bulkhead_sys::mapped::SharedPage::new(bulkhead_programs::UNMAPPED) else { return 1 };
    println!("reading {:#x}", bulkhead_programs::UNMAPPED);
    let word = page.read(0);
    println!("read {word:?} from memory it was never given");
    1
}
