//! The test system `hpet`'s reader: reads the HPET's general capabilities
//! register through the device region its manifest maps (uncached, at a
//! fixed physical address) and checks what the HPET specification fixes:
//! a counter period of at most 100 ns (in femtoseconds) and a non-zero
//! vendor.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_sys::mapped::SharedPage;
use bulkhead_sys::{PdInfo, Sys, println};

bulkhead_programs::program!("hpet", "hpet-reader", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &PdInfo, _sys: &mut Sys) -> u64 {
    let Some(registers) = SharedPage::new(names::regions::HPET_REGISTERS.address) else { return 1 };
    let Some(capabilities) = registers.read(0) else { return 1 };
    let vendor = (capabilities >> 16) & 0xffff;
    let period_fs = capabilities >> 32;
    println!("capabilities {capabilities:#x}: vendor {vendor:#x}, period {period_fs} fs");
    if vendor != 0 && period_fs != 0 && period_fs <= 100_000_000 { 0 } else { 1 }
}
