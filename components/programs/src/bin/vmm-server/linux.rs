//! The VMM of a Linux guest (`docs/PLATFORM.md`): boots the kernel the
//! loader staged in the guest's RAM by the Linux boot protocol, with the
//! PC board (`platform::pc`) and the guest's devices (COM1 and its disks:
//! in its VMX, or without one in this PD, `vmx_link.rs`), and runs it
//! until it powers off or stops.

use alloc::vec::Vec;
use core::cell::RefCell;

use bulkhead_capdl_spec::GuestInfo;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::vcpu::{EnterControls, Entered, vm_enter};
use bulkhead_sys::mapped::SharedRegion;
use bulkhead_sys::{PdInfo, Sys, println};
use bulkhead_vmm_server::boot::acpi::{self, PC_PM_REGISTERS, PlatformShape, VirtioMmioWindow};
use bulkhead_vmm_server::boot::linux::{self, GuestRegion, Staged};
use bulkhead_vmm_server::platform::TscClock;
use bulkhead_vmm_server::platform::ioapic::IO_APIC_BASE;
use bulkhead_vmm_server::platform::lapic::LOCAL_APIC_BASE;
use bulkhead_vmm_server::platform::pc::{BoardMsrs, BoardPage, BoardPorts, EntryPlan, Pc, PcConfig};
use bulkhead_vmm_server::platform::rtc::RamSizes;
use bulkhead_vmm_server::{Action, Config, GuestMemory, Stop, Vmm};
use bulkhead_vmx_server::protocol::{Device, DeviceKind, Space};
use kernel_core::vcpu::GuestField;
use kernel_core::virt::ExitKind;

use crate::gdb::{AfterExit, GuestGdb};
use crate::vmx_link::{DeviceLink, Forwarded};
use crate::{GuestRam, HostClock, KernelVcpu};

/// The MMIO hole's start: RAM above it is not in the CMOS's low count.
const MMIO_HOLE_START: u64 = 0xc000_0000;

/// The DSDT's entry for a described virtio-mmio window.
fn virtio_window(device: &Device) -> Option<VirtioMmioWindow> {
    (device.kind == DeviceKind::VirtioMmio).then_some(())?;
    Some(VirtioMmioWindow {
        base: u32::try_from(device.base).ok()?,
        bytes: u32::try_from(device.bytes).ok()?,
        irq: device.line,
    })
}

/// Boots and runs the staged Linux guest; the PD's exit code.
pub(crate) fn run(sys: &mut Sys, guest: &GuestInfo, staged: Staged, memory: &mut GuestRam, pd: &PdInfo) -> u64 {
    if pd.tsc_khz == 0 {
        println!("vmm: the loader did not say the TSC's rate: the guest's timers cannot run");
        return 1;
    }
    let link = match DeviceLink::connect(pd, sys) {
        Ok(link) => RefCell::new(link),
        Err(error) => {
            println!("vmm: cannot reach the guest's devices: {error}");
            return 1;
        }
    };
    // The devices as described: each on a bus, each virtio window in the
    // DSDT.
    let described: Vec<Device> = link.borrow().devices().iter().copied().collect();
    let mut shape = PlatformShape::pc(1);
    for window in described.iter().filter_map(virtio_window) {
        shape = shape.with_virtio_mmio(window);
    }
    // The TSC's rate, which Linux would otherwise calibrate against the
    // PIT or the PM timer: with every read of them an exit, the
    // calibration's timing checks fail, and Linux gives up the TSC.
    let mut append: heapless::String<40> = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut append, format_args!("tsc_early_khz={}", pd.tsc_khz));
    let plan = match linux::boot_staged(memory, guest.memory_bytes, &staged, append.as_bytes()) {
        Ok(plan) => plan,
        Err(error) => {
            println!("vmm: cannot boot the staged kernel: {error:?}");
            return 1;
        }
    };
    let tables = match acpi::build(&shape, plan.acpi_tables.start) {
        Ok(tables) => tables,
        Err(error) => {
            println!("vmm: cannot build the ACPI tables: {error:?}");
            return 1;
        }
    };
    if memory.write(plan.acpi_tables.start, &tables).is_err() {
        println!("vmm: the ACPI tables' window at {:#x} is not RAM", plan.acpi_tables.start);
        return 1;
    }
    let vcpu = Cap::<kind::VCpu>::new(guest.vcpu_slot);
    for (field, value) in plan.vcpu.fields() {
        if let Err(error) = vcpu.write_state(sys, field, value) {
            println!("vmm: cannot set vCPU 0's {field:?} to {value:#x}: {error}");
            return 1;
        }
    }
    let mut registers = plan.vcpu.registers();
    println!(
        "vmm: booting Linux at host TSC {}: kernel at {:#x} ({} KiB reserved), initramfs {:?}, {} MiB of RAM, {} device(s) served {}",
        bulkhead_sys::arch::read_tsc(),
        plan.kernel.start,
        plan.kernel.bytes / 1024,
        plan.initrd.map(|initrd| (initrd.start, initrd.bytes)),
        guest.memory_bytes >> 20,
        described.len(),
        if link.borrow().is_remote() { "by the VMX" } else { "in this PD" }
    );

    let tsc_hz = pd.tsc_khz.saturating_mul(1000);
    let clock = TscClock::new(bulkhead_sys::arch::read_tsc(), tsc_hz);
    let now = || clock.nanoseconds(bulkhead_sys::arch::read_tsc());
    // The guest's TSC counts from 0 at its reset, as the board's time does.
    if let Err(error) = vcpu.write_state(sys, GuestField::TSC_OFFSET, clock.guest_tsc_offset()) {
        println!("vmm: cannot set vCPU 0's TSC offset: {error}");
        return 1;
    }
    let below = guest.memory_bytes.min(MMIO_HOLE_START);
    let board = RefCell::new(Pc::new(PcConfig {
        apic_id: 0,
        tsc_hz,
        unix_seconds: 0,
        ram: RamSizes { below_4gib_bytes: below, above_4gib_bytes: guest.memory_bytes - below },
        pm: PC_PM_REGISTERS,
    }));
    let mut board_ports = BoardPorts { pc: &board, now: &now };
    let mut local_apic = BoardPage { pc: &board, now: &now, base: LOCAL_APIC_BASE };
    let mut io_apic = BoardPage { pc: &board, now: &now, base: IO_APIC_BASE };
    let mut board_msrs = BoardMsrs { pc: &board, now: &now };
    let mut forwarded: Vec<Forwarded<'_>> =
        described.iter().map(|device| Forwarded { link: &link, board: &board, device: *device }).collect();
    let mut host_clock = HostClock;
    let mut vmm = Vmm::new(Config { apic_id: 0 }, &mut host_clock);
    let ranges = board.borrow().port_ranges();
    let wired = vmm
        .register_port_ranges(&ranges, &mut board_ports)
        .and_then(|()| vmm.register_mmio(LOCAL_APIC_BASE, 4096, &mut local_apic))
        .and_then(|()| vmm.register_mmio(IO_APIC_BASE, 4096, &mut io_apic));
    if let Err(error) = wired {
        println!("vmm: cannot wire the platform: {error:?}");
        return 1;
    }
    for device in &mut forwarded {
        let Device { kind, base, bytes, line } = device.device;
        let wired = match (kind.space(), u16::try_from(base), device.device.last().map(u16::try_from)) {
            (Space::Port, Ok(first), Some(Ok(last))) => vmm.register_ports(first, last, device),
            (Space::Memory, ..) => vmm.register_mmio(base, bytes, device),
            _ => Err(bulkhead_vmm_server::RegisterError::EmptyRange),
        };
        if let Err(error) = wired {
            println!("vmm: cannot wire the device at {base:#x} ({bytes} bytes, {kind:?}): {error:?}");
            return 1;
        }
        println!("vmm: {kind:?} at {base:#x}, IRQ {line}");
    }
    vmm.attach_local_apic(&mut board_msrs);

    // The guest debugger, if the manifest names the guest's debug port.
    let mut debug = guest.debug_port.and_then(|port| {
        let window = SharedRegion::new(guest.memory, guest.memory_bytes)?;
        GuestGdb::new(sys, port, GuestRam { window }, pd.tsc_khz)
    });
    let mut state = KernelVcpu { sys, vcpu };
    let mut halted = false;
    let mut interruptibility = 0;
    let mut deadline_exits: u64 = 0;
    let stop = loop {
        if let Some(debug) = debug.as_mut() {
            debug.poll(&mut registers, &mut state);
        }
        // A debugger's step runs one guest instruction: no interrupt.
        let entry = if debug.as_ref().is_some_and(|debug| debug.stepping() && !halted) {
            EntryPlan::default()
        } else {
            board.borrow_mut().plan_entry(&mut registers, interruptibility, &mut halted, now())
        };
        if entry.wait && entry.deadline.is_none() {
            break Stop::HaltedWithInterruptsDisabled;
        }
        let mut controls = EnterControls {
            deadline: entry.deadline.map_or(0, |time| clock.tsc_at(time).max(1)),
            wait: entry.wait,
            interrupt_window: entry.interrupt_window,
        };
        if let Some(debug) = debug.as_ref() {
            let bound = debug.run_bound(bulkhead_sys::arch::read_tsc());
            controls.deadline = if controls.deadline == 0 { bound } else { controls.deadline.min(bound) };
        }
        let exit = match vm_enter(state.sys, &mut registers, controls) {
            Ok(Entered::Exit(exit)) => exit,
            Ok(Entered::Notification { .. }) => continue,
            Err(error) => {
                println!("vmm: VMEnter refused: {error}");
                return 1;
            }
        };
        interruptibility = exit.control[4];
        if let Some(debug) = debug.as_mut()
            && let AfterExit::Consumed = debug.on_exit(&exit, &mut registers, &mut state, memory)
        {
            continue;
        }
        match exit.kind {
            Some(ExitKind::Deadline) => {
                deadline_exits += 1;
                continue;
            }
            Some(ExitKind::InterruptWindow) => continue,
            _ => {}
        }
        let action = vmm.handle(&exit, &mut registers, &mut state, memory);
        if let Some(failure) = link.borrow().failure() {
            println!("vmm: the guest's device server failed: {failure:?}");
            break Stop::DeviceServerFailed;
        }
        match action {
            // An emulated instruction retired: its interrupt shadow ended.
            Action::Resume => {
                interruptibility = 0;
                if let Some(debug) = debug.as_mut() {
                    debug.after_emulation(exit.kind, &mut registers, &mut state);
                }
            }
            Action::Halt => {
                interruptibility = 0;
                halted = true;
            }
            Action::Stop(stop) => break stop,
        }
    };
    let counters = *vmm.counters();
    let heap_bytes = bulkhead_sys::heap::HEAP.allocated_bytes();
    drop(vmm);
    link.borrow_mut().stop();
    match stop {
        Stop::PoweredOff => println!("vmm: the guest powered off"),
        other => println!("vmm: the guest stopped: {other}"),
    }
    let board = board.borrow();
    println!(
        "vmm: {} exits, {} deadline exits, {} interrupts injected ({} dropped messages, {} illegal vectors), {} unclaimed port accesses, {} MMIO accesses; {} heap bytes in use",
        counters.total_exits(),
        deadline_exits,
        board.counters().injected,
        board.counters().undelivered_messages,
        board.counters().illegal_vectors,
        counters.unclaimed_port_accesses(),
        counters.mmio_accesses(),
        heap_bytes
    );
    match stop {
        Stop::PoweredOff => 0,
        _ => 2,
    }
}

/// The staged parts of a guest with a kernel, from its info page.
pub(crate) fn staged(guest: &GuestInfo) -> Option<Staged> {
    let region =
        |staged: bulkhead_capdl_spec::Staged| GuestRegion { start: staged.guest_physical, bytes: staged.bytes };
    Some(Staged {
        image: region(guest.kernel?),
        initrd: guest.initrd.map(region),
        command_line: guest.cmdline.map(region),
    })
}
