//! The machine behind `kernel_core::platform::Platform`: what invocations
//! make the hardware do (TLB invalidation, port I/O, PIC line masks).

use kernel_core::ipc::ThreadId;
use kernel_core::memory::PhysAddr;
use kernel_core::platform::{Platform, PortWidth};
use kernel_core::vcpu::{GuestEntry, VCpu};
use kernel_core::virt::{Exit, ExitKind, GuestFormat};

use super::pic;

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

    fn vcpu_deleted(&mut self, vcpu: PhysAddr) {
        // A VMCS may be cached in the CPU (`vtx`); a VMCB never is.
        super::vtx::vcpu_deleted(vcpu);
    }

    fn run_guest(&mut self, entry: &GuestEntry, record: &mut VCpu) -> Option<Exit> {
        // The run ends by the deadline: a host interrupt (the local APIC
        // timer, armed for it if it comes before the kernel's own
        // deadline) ends it then (`vtx`: the VMX-preemption timer too).
        let deadline = record.controls.deadline();
        super::fpu::load(entry.vcpu);
        let exit = match entry.format {
            GuestFormat::Npt => {
                if let Some(deadline) = deadline {
                    super::timer::arm_for_guest(deadline);
                }
                super::svm::run_guest(entry, record)
            }
            GuestFormat::Ept => {
                // The VMX-preemption timer's bound: the kernel's deadline
                // or VMEnter's, whichever comes first.
                let bound = match deadline {
                    Some(deadline) => super::timer::arm_for_guest(deadline),
                    None => super::timer::armed_deadline(),
                };
                super::vtx::run_guest(entry, record, bound)
            }
        };
        super::fpu::save(entry.vcpu);
        if exit.kind != ExitKind::HostInterrupt {
            return Some(exit);
        }
        if record.controls.deadline_passed(super::cpu::read_tsc()) {
            return Some(kernel_core::vcpu::deadline_exit(exit.raw_reason));
        }
        super::threads::count(&super::threads::COUNTERS.interrupted_guests);
        None
    }

    fn sync_guest_state(&mut self, vcpu: PhysAddr, record: &mut VCpu) {
        match super::guest::backend() {
            Some(GuestFormat::Npt) => super::svm::sync_guest_state(vcpu.as_u64(), record),
            Some(GuestFormat::Ept) => super::vtx::sync_guest_state(vcpu.as_u64(), record),
            None => record.stale = 0,
        }
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

    fn port_read(&mut self, port: u16, width: PortWidth) -> u32 {
        // SAFETY (each block below): the core asks only for ports inside an
        // `IoPort` capability's range, and the kernel's own ports (PICs,
        // COM1, the emulators' exit ports) are reserved at boot so that no
        // such range covers them (`root::create_root_objects`). Port I/O
        // touches no memory; what a device does then is the capability
        // holder's business.
        match width {
            // SAFETY: see above.
            PortWidth::Byte => u32::from(unsafe { x86::io::inb(port) }),
            // SAFETY: see above.
            PortWidth::Word => u32::from(unsafe { x86::io::inw(port) }),
            // SAFETY: see above.
            PortWidth::DoubleWord => unsafe { x86::io::inl(port) },
        }
    }

    #[allow(clippy::cast_possible_truncation, reason = "the core masked the value to the width")]
    fn port_write(&mut self, port: u16, width: PortWidth, value: u32) {
        match width {
            // SAFETY: as in `port_read`.
            PortWidth::Byte => unsafe { x86::io::outb(port, value as u8) },
            // SAFETY: as in `port_read`.
            PortWidth::Word => unsafe { x86::io::outw(port, value as u16) },
            // SAFETY: as in `port_read`.
            PortWidth::DoubleWord => unsafe { x86::io::outl(port, value) },
        }
    }

    fn irq_set_masked(&mut self, line: u8, masked: bool) {
        pic::set_masked(line, masked);
    }
}
