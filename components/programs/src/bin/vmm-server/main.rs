//! The VMM of one guest (`docs/VIRTUALISATION.md`, "vmm-server"). A
//! guest with a staged Linux kernel is booted by the Linux boot protocol
//! on the PC platform (`linux.rs`, `docs/PLATFORM.md`). Otherwise the VMM
//! sets up the vCPU the loader bound to this PD's thread (real mode at the
//! guest image's entry point: the project's test-guest convention,
//! `vmm-server/guests`), then runs it exit by exit, each handled by
//! `bulkhead_vmm_server::Vmm` with the debug console (port 0xE9), the
//! test-exit port (0xF4) and the test MMIO device (guest-physical
//! 0xd000_0000). It prints the guest's console lines, how the guest
//! stopped, and its exits: how many, and the TSC ticks (instructions
//! under `-icount`) per exit spent in the kernel and the guest, and in
//! this VMM.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_components::Error;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::vcpu::{EnterControls, Entered, GuestRegisters, vm_enter};
use bulkhead_sys::mapped::SharedRegion;
use bulkhead_sys::{PdInfo, Sys, println};
use bulkhead_vmm_server::devices::{Console, DebugConsole, TestExitPort, TestMmioDevice};
use bulkhead_vmm_server::{Action, Clock, Config, GuestMemory, Stop, Unbacked, VcpuState, Vmm};
use kernel_core::vcpu::{GuestField, Segment, SegmentPart};
use kernel_core::virt::ExitKind;

bulkhead_programs::program!("guests", "vmm-server", run);

extern crate alloc;

mod gdb;
mod linux;
mod vmx_link;

/// Where the test MMIO device sits in guest-physical memory.
const TEST_DEVICE_BASE: u64 = 0xd000_0000;
/// Its size: one page.
const TEST_DEVICE_BYTES: u64 = 0x1000;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &PdInfo, sys: &mut Sys) -> u64 {
    let Some(guest) = info.guest() else {
        println!("vmm: this PD runs no guest (its manifest gives it none)");
        return 1;
    };
    let Some(window) = SharedRegion::new(guest.memory, guest.memory_bytes) else {
        println!("vmm: the guest's memory at {:#x} is not a region of this PD", guest.memory);
        return 1;
    };
    let mut memory = GuestRam { window };
    if guest.vcpus != 0
        && let Some(staged) = linux::staged(&guest)
    {
        return linux::run(sys, &guest, staged, &mut memory, info);
    }
    if guest.entry == bulkhead_capdl_spec::NO_GUEST_ENTRY || guest.vcpus == 0 {
        println!("vmm: the guest has no image or no vCPU: nothing to run");
        return 1;
    }
    let vcpu = Cap::<kind::VCpu>::new(guest.vcpu_slot);
    let mut registers = match start_in_real_mode(sys, vcpu, guest.entry) {
        Ok(registers) => registers,
        Err(error) => {
            println!("vmm: cannot set up vCPU 0: {error}");
            return 1;
        }
    };
    let mut clock = HostClock;
    let mut printer = Printer;
    let mut console = DebugConsole::new(&mut printer);
    let mut exit_port = TestExitPort;
    let mut test_device = TestMmioDevice::new();
    let mut vmm = Vmm::new(Config { apic_id: 0 }, &mut clock);
    let wired = vmm
        .register_ports(bulkhead_vmm_server::devices::DEBUG_CONSOLE_PORT, 0xe9, &mut console)
        .and_then(|()| vmm.register_ports(0xf4, 0xf4, &mut exit_port))
        .and_then(|()| vmm.register_mmio(TEST_DEVICE_BASE, TEST_DEVICE_BYTES, &mut test_device));
    if let Err(error) = wired {
        println!("vmm: cannot wire the devices: {error:?}");
        return 1;
    }
    let mut state = KernelVcpu { sys, vcpu };
    let mut cost = ExitCost::default();
    let stop = loop {
        let entering = bulkhead_sys::arch::read_tsc();
        let entered = vm_enter(state.sys, &mut registers, EnterControls::default());
        let returned = bulkhead_sys::arch::read_tsc();
        let exit = match entered {
            Ok(Entered::Exit(exit)) => exit,
            // No notification is bound yet: nothing to wait for.
            Ok(Entered::Notification { .. }) => continue,
            Err(error) => {
                println!("vmm: VMEnter refused: {error}");
                return 1;
            }
        };
        let action = vmm.handle(&exit, &mut registers, &mut state, &mut memory);
        cost.add(exit.kind, returned.wrapping_sub(entering), bulkhead_sys::arch::read_tsc().wrapping_sub(returned));
        match action {
            Action::Resume => {}
            // No interrupt controller yet: nothing could wake the guest.
            Action::Halt => break None,
            Action::Stop(stop) => break Some(stop),
        }
    };
    match stop {
        Some(Stop::Exited(code)) => println!("vmm: the guest exited with code {code}"),
        Some(other) => println!("vmm: the guest stopped: {other}"),
        None => println!("vmm: the guest halted with interrupts enabled and nothing to wake it"),
    }
    let counters = vmm.counters();
    println!(
        "vmm: {} exits ({} refused MSR accesses, {} open-bus accesses, {} unclaimed port accesses, {} MMIO accesses)",
        counters.total_exits(),
        counters.refused_msr_accesses(),
        counters.open_bus_accesses(),
        counters.unclaimed_port_accesses(),
        counters.mmio_accesses()
    );
    cost.report();
    match stop {
        Some(Stop::Exited(code)) => u64::from(code),
        _ => 2,
    }
}

/// Puts vCPU 0 in real mode at `entry` (CS 0, every segment base 0, CR0
/// with only ET, interrupts off) and returns the registers VMEnter
/// starts it with.
fn start_in_real_mode(sys: &mut Sys, vcpu: Cap<kind::VCpu>, entry: u64) -> Result<GuestRegisters, Error> {
    vcpu.write_state(sys, GuestField::segment(Segment::Cs, SegmentPart::Selector), 0)?;
    vcpu.write_state(sys, GuestField::segment(Segment::Cs, SegmentPart::Base), 0)?;
    vcpu.write_state(sys, GuestField::CR0, 0x10)?;
    Ok(GuestRegisters { rip: entry, rflags: 0x2, ..GuestRegisters::default() })
}

/// The VCpu's state through the kernel's VCpu::ReadState and WriteState.
struct KernelVcpu<'s> {
    sys: &'s mut Sys,
    vcpu: Cap<kind::VCpu>,
}

impl VcpuState for KernelVcpu<'_> {
    fn read(&mut self, field: GuestField) -> Result<u64, Error> {
        self.vcpu.read_state(self.sys, field)
    }

    fn write(&mut self, field: GuestField, value: u64) -> Result<(), Error> {
        self.vcpu.write_state(self.sys, field, value)
    }
}

/// The host's TSC.
struct HostClock;

impl Clock for HostClock {
    fn read_host_tsc(&mut self) -> u64 {
        bulkhead_sys::arch::read_tsc()
    }
}

/// Prints the guest's console lines, marked as the guest's.
struct Printer;

impl Console for Printer {
    fn write_line(&mut self, line: &[u8]) {
        // The debug console hands over printable ASCII only.
        println!("guest: {}", core::str::from_utf8(line).unwrap_or("?"));
    }
}

/// What the exits cost, in TSC ticks (instructions under QEMU's
/// `-icount shift=0`): from VMEnter's call to its return (the ring-3
/// runtime's copies, the kernel's entry and exit, the world switch and
/// the guest's own instructions up to its exit), and from the return to
/// the next call (this VMM's handling). Every exit, and CPUID exits
/// alone (the exit benchmark's, `docs/PERFORMANCE.md`).
#[derive(Default)]
struct ExitCost {
    all: Tally,
    cpuid: Tally,
}

impl ExitCost {
    fn add(&mut self, kind: Option<ExitKind>, entered: u64, handled: u64) {
        self.all.add(entered, handled);
        if kind == Some(ExitKind::Cpuid) {
            self.cpuid.add(entered, handled);
        }
    }

    fn report(&self) {
        self.all.report("exit");
        self.cpuid.report("CPUID exit");
    }
}

/// The two parts' sums and their smallest values (an exit without a
/// timer interrupt or a preemption inside it).
#[derive(Default)]
struct Tally {
    exits: u64,
    entered: u64,
    handled: u64,
    fewest: Option<(u64, u64)>,
}

impl Tally {
    fn add(&mut self, entered: u64, handled: u64) {
        self.exits += 1;
        self.entered = self.entered.wrapping_add(entered);
        self.handled = self.handled.wrapping_add(handled);
        let (fewest_entered, fewest_handled) = self.fewest.unwrap_or((entered, handled));
        self.fewest = Some((fewest_entered.min(entered), fewest_handled.min(handled)));
    }

    fn report(&self, what: &str) {
        let Some((fewest_entered, fewest_handled)) = self.fewest else { return };
        println!(
            "vmm: per {what} ({} of them), mean {} ticks in VMEnter (kernel and guest) and {} in the VMM; fewest {} and {}",
            self.exits,
            self.entered / self.exits,
            self.handled / self.exits,
            fewest_entered,
            fewest_handled
        );
    }
}

/// The guest's memory as this VMM maps it: guest-physical `a` at the
/// window's byte `a` (the loader's info page says where the window is).
/// Every access touches exactly its own bytes, never their neighbours:
/// the guest may be writing those at the same time.
struct GuestRam {
    window: SharedRegion,
}

impl GuestMemory for GuestRam {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), Unbacked> {
        self.window.read(guest_physical, bytes).map_err(|_| self.unbacked(guest_physical))
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), Unbacked> {
        self.window.write(guest_physical, bytes).map_err(|_| self.unbacked(guest_physical))
    }
}

impl GuestRam {
    /// The first byte of an access from `guest_physical` on that no RAM
    /// backs.
    fn unbacked(&self, guest_physical: u64) -> Unbacked {
        Unbacked { guest_physical: guest_physical.max(self.window.len()) }
    }
}
