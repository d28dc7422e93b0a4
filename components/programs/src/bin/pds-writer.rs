//! The test system `pds`'s writer: fills the shared page and signals the reader.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("pds", "pds-writer", run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::println;
    let Some(mut page) = bulkhead_sys::mapped::SharedPage::new(names::regions::SHARED_PAGE.address) else {
        println!("the shared page is not where the layout allows");
        return 1;
    };
    for index in 0..bulkhead_sys::mapped::WORDS {
        if page.write(index, bulkhead_programs::pattern(index)).is_err() {
            return 1;
        }
    }
    let ready: Cap<kind::Notification> = Cap::new(names::caps::READY_NOTIFICATION);
    match ready.signal(sys) {
        Ok(()) => {
            println!("wrote the shared page and signalled");
            0
        }
        Err(error) => {
            println!("signal failed: {error}");
            1
        }
    }
}
