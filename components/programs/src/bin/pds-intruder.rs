//! The test system `pds`'s intruder: reads memory its manifest does not map;
//! the fault goes to its pager, and it never runs again.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

/// This image's capabilities and regions in system `pds`.
#[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
mod names {
    include!(concat!(env!("OUT_DIR"), "/names/pds/pds-intruder.rs"));
}

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

bulkhead_sys::pd_entry!(run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none");
}
