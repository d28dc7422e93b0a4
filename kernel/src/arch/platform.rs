//! The machine behind `kernel_core::platform::Platform`: what invocations
//! make the hardware do.

use kernel_core::ipc::ThreadId;
use kernel_core::memory::PhysAddr;
use kernel_core::platform::Platform;

/// The real machine. The kernel uses no PCIDs and no global user pages, so
/// writing CR3 on an address-space switch drops every user translation:
/// only the address space in CR3 right now can hold stale ones.
#[derive(Debug, Default)]
pub(crate) struct Machine;

fn loaded_vspace() -> u64 {
    // SAFETY: reading CR3 has no side effects.
    let cr3 = unsafe { x86::controlregs::cr3() };
    cr3 & 0x000f_ffff_ffff_f000
}

impl Platform for Machine {
    fn invalidate_page(&mut self, vspace: PhysAddr, virtual_address: u64) {
        let Ok(address) = usize::try_from(virtual_address) else { return };
        if loaded_vspace() == vspace.as_u64() {
            // SAFETY: INVLPG only drops a cached translation; any address
            // is allowed, canonical or not, mapped or not.
            unsafe { x86::tlb::flush(address) };
        }
    }

    fn thread_deleted(&mut self, thread: ThreadId) {
        super::threads::forget(thread);
    }

    fn vspace_deleted(&mut self, vspace: PhysAddr) {
        super::threads::unload_vspace(vspace.as_u64());
    }

    fn invalidate_vspace(&mut self, vspace: PhysAddr) {
        let loaded = loaded_vspace();
        if loaded == vspace.as_u64() {
            // SAFETY: reloading CR3 with its own value drops the non-global
            // translations and changes nothing else.
            unsafe { x86::controlregs::cr3_write(loaded) };
        }
    }
}
