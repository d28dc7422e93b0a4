//! The VMM of a Linux guest (`docs/PLATFORM.md`): boots the kernel the
//! loader staged in the guest's RAM by the Linux boot protocol, with the
//! PC board (`platform::pc`) and the guest's COM1 (vmx-server's 16550A,
//! run in this PD until vmx-server's own PD serves it), and runs it
//! until it powers off or stops.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::ControlFlow;

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
use bulkhead_vmm_server::{AccessSize, Action, Config, GuestMemory, MmioDevice, PortDevice, Stop, Vmm};
use bulkhead_vmx_server::uart::{COM1_BASE_PORT, COM1_IRQ, REGISTER_COUNT, Uart16550};
use bulkhead_vmx_server::virtio::blk::{BackendError, Block, BlockBackend};
use bulkhead_vmx_server::virtio::mmio::{MmioTransport, WINDOW_BYTES};
use bulkhead_vmx_server::virtio::{self, OutOfRange};
use kernel_core::vcpu::GuestField;
use kernel_core::virt::ExitKind;

use crate::gdb::{AfterExit, GuestGdb};
use crate::{GuestRam, HostClock, KernelVcpu};

/// The MMIO hole's start: RAM above it is not in the CMOS's low count.
const MMIO_HOLE_START: u64 = 0xc000_0000;
/// Where virtio-mmio device n's window is: 4 KiB apart from here.
const VIRTIO_BASE: u32 = 0xfeb0_0000;
/// The ISA IRQ of virtio-mmio device n (none of the board's, nor COM1's).
const VIRTIO_IRQS: [u8; 4] = [5, 6, 7, 10];

/// The window and interrupt of virtio-mmio device `index`.
fn virtio_window(index: usize) -> Option<VirtioMmioWindow> {
    let irq = *VIRTIO_IRQS.get(index)?;
    let offset = u32::try_from(index).ok()?.checked_mul(0x1000)?;
    Some(VirtioMmioWindow { base: VIRTIO_BASE + offset, bytes: u32::try_from(WINDOW_BYTES).ok()?, irq })
}

/// Boots and runs the staged Linux guest; the PD's exit code.
pub(crate) fn run(sys: &mut Sys, guest: &GuestInfo, staged: Staged, memory: &mut GuestRam, pd: &PdInfo) -> u64 {
    let name = &*bulkhead_programs::name_of(pd);
    if pd.tsc_khz == 0 {
        println!("vmm: the loader did not say the TSC's rate: the guest's timers cannot run");
        return 1;
    }
    let disks: heapless::Vec<(u64, u64), 4> = guest_disks(guest);
    let mut shape = PlatformShape::pc(1);
    for index in 0..disks.len() {
        if let Some(window) = virtio_window(index) {
            shape = shape.with_virtio_mmio(window);
        }
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
        "vmm: booting Linux: kernel at {:#x} ({} KiB reserved), initramfs {:?}, {} MiB of RAM, {} disk(s)",
        plan.kernel.start,
        plan.kernel.bytes / 1024,
        plan.initrd.map(|initrd| (initrd.start, initrd.bytes)),
        guest.memory_bytes >> 20,
        disks.len()
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
    let mut serial = SerialPort { uart: Uart16550::new(), board: &board, line: Line::new(name) };
    // On the heap: each device model holds its scratch buffers (8 KiB).
    let mut virtio_disks: Vec<VirtioDisk<'_>> = Vec::with_capacity(disks.len());
    for (index, &(address, bytes)) in disks.iter().enumerate() {
        let (Some(window), Some(disk), Some(ram)) = (
            virtio_window(index),
            SharedRegion::new(address, bytes),
            SharedRegion::new(guest.memory, guest.memory_bytes),
        ) else {
            println!("vmm: disk {index} at {address:#x} ({bytes} bytes) is not a region of this PD");
            return 1;
        };
        let mut id = [0_u8; 20];
        let _ = write_disk_id(&mut id, name, index);
        let device = Block::new(RegionDisk { window: disk }, &id);
        virtio_disks.push(VirtioDisk {
            transport: MmioTransport::new(device),
            ram: VirtioRam { window: ram },
            board: &board,
            irq: window.irq,
        });
    }
    let mut host_clock = HostClock;
    let mut vmm = Vmm::new(Config { apic_id: 0 }, &mut host_clock);
    let ranges = board.borrow().port_ranges();
    let com1_last = COM1_BASE_PORT + u16::from(REGISTER_COUNT) - 1;
    let wired = vmm
        .register_port_ranges(&ranges, &mut board_ports)
        .and_then(|()| vmm.register_ports(COM1_BASE_PORT, com1_last, &mut serial))
        .and_then(|()| vmm.register_mmio(LOCAL_APIC_BASE, 4096, &mut local_apic))
        .and_then(|()| vmm.register_mmio(IO_APIC_BASE, 4096, &mut io_apic));
    if let Err(error) = wired {
        println!("vmm: cannot wire the platform: {error:?}");
        return 1;
    }
    for (index, disk) in virtio_disks.iter_mut().enumerate() {
        let Some(window) = virtio_window(index) else { break };
        if let Err(error) = vmm.register_mmio(u64::from(window.base), u64::from(window.bytes), disk) {
            println!("vmm: cannot wire virtio disk {index}: {error:?}");
            return 1;
        }
        println!("vmm: disk {index}: virtio-mmio at {:#x}, IRQ {}", window.base, window.irq);
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
        match vmm.handle(&exit, &mut registers, &mut state, memory) {
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
    drop(vmm);
    serial.line.flush();
    match stop {
        Stop::PoweredOff => println!("vmm: the guest powered off"),
        other => println!("vmm: the guest stopped: {other}"),
    }
    let board = board.borrow();
    println!(
        "vmm: {} exits, {} deadline exits, {} interrupts injected ({} dropped messages, {} illegal vectors), {} unclaimed port accesses, {} MMIO accesses",
        counters.total_exits(),
        deadline_exits,
        board.counters().injected,
        board.counters().undelivered_messages,
        board.counters().illegal_vectors,
        counters.unclaimed_port_accesses(),
        counters.mmio_accesses()
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

/// COM1: the 16550A on ports 0x3F8..=0x3FF, its interrupt on ISA IRQ 4,
/// its output printed line by line.
struct SerialPort<'a> {
    uart: Uart16550,
    board: &'a RefCell<Pc>,
    line: Line<'a>,
}

impl SerialPort<'_> {
    /// After an access: the interrupt line's level to the board, the
    /// output to the console.
    fn settle(&mut self) {
        if let Ok(mut board) = self.board.try_borrow_mut() {
            board.set_isa_line(COM1_IRQ, self.uart.interrupt_line());
        }
        let mut bytes = [0; 64];
        loop {
            let count = self.uart.drain_output(&mut bytes);
            if count == 0 {
                break;
            }
            for byte in bytes.iter().take(count) {
                self.line.push(*byte);
            }
        }
    }
}

impl PortDevice for SerialPort<'_> {
    fn read(&mut self, port: u16, size: AccessSize) -> u32 {
        let value = bulkhead_vmm_server::platform::read_bytes(port, size, |port| {
            self.uart.read(u8::try_from(port.wrapping_sub(COM1_BASE_PORT)).unwrap_or(u8::MAX))
        });
        self.settle();
        value
    }

    fn write(&mut self, port: u16, size: AccessSize, value: u32) -> ControlFlow<Stop> {
        bulkhead_vmm_server::platform::write_bytes(port, size, value, |port, byte| {
            self.uart.write(u8::try_from(port.wrapping_sub(COM1_BASE_PORT)).unwrap_or(u8::MAX), byte);
        });
        self.settle();
        ControlFlow::Continue(())
    }
}

/// A console line being assembled: printed, with the PD's name before it,
/// at each newline or when full. Control characters other than tab are
/// dropped (carriage returns among them), bytes above 0x7E shown as `?`.
struct Line<'a> {
    name: &'a str,
    bytes: heapless::Vec<u8, 160>,
}

impl<'a> Line<'a> {
    fn new(name: &'a str) -> Self {
        Line { name, bytes: heapless::Vec::new() }
    }

    fn push(&mut self, byte: u8) {
        match byte {
            b'\n' => self.flush(),
            b'\t' | 0x20..=0x7e => self.append(byte),
            0x7f..=0xff => self.append(b'?'),
            _ => {}
        }
    }

    fn append(&mut self, byte: u8) {
        if self.bytes.is_full() {
            self.flush();
        }
        let _ = self.bytes.push(byte);
    }

    fn flush(&mut self) {
        println!("{}: {}", self.name, core::str::from_utf8(&self.bytes).unwrap_or("?"));
        self.bytes.clear();
    }
}

/// The disks the manifest gives the guest: each a region of this PD, its
/// address here and its bytes.
fn guest_disks(guest: &GuestInfo) -> heapless::Vec<(u64, u64), 4> {
    guest.disks.iter().flatten().map(|disk| (disk.address, disk.bytes)).collect()
}

/// virtio-blk's serial number: the PD's name and the disk's index.
fn write_disk_id(id: &mut [u8; 20], name: &str, index: usize) -> core::fmt::Result {
    use core::fmt::Write as _;
    let mut text: heapless::String<20> = heapless::String::new();
    let result = write!(text, "{name}-{index}");
    for (to, from) in id.iter_mut().zip(text.bytes()) {
        *to = from;
    }
    result
}

/// A disk backed by a region of this PD that the loader filled with the
/// image (`docs/capdl.md`, region contents): 512-byte sectors, writes
/// stay in RAM (nothing outlives the run).
struct RegionDisk {
    window: SharedRegion,
}

impl BlockBackend for RegionDisk {
    fn sectors(&self) -> u64 {
        self.window.len() / 512
    }

    fn read(&mut self, sector: u64, bytes: &mut [u8]) -> Result<(), BackendError> {
        let offset = sector.checked_mul(512).ok_or(BackendError)?;
        self.window.read(offset, bytes).map_err(|_| BackendError)
    }

    fn write(&mut self, sector: u64, bytes: &[u8]) -> Result<(), BackendError> {
        let offset = sector.checked_mul(512).ok_or(BackendError)?;
        self.window.write(offset, bytes).map_err(|_| BackendError)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The guest's RAM as the device models reach it (their own view of
/// this PD's window, as vmx-server's PD will have).
struct VirtioRam {
    window: SharedRegion,
}

impl virtio::GuestRam for VirtioRam {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), OutOfRange> {
        self.window.read(guest_physical, bytes).map_err(|_| OutOfRange)
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        self.window.write(guest_physical, bytes).map_err(|_| OutOfRange)
    }
}

/// A virtio-blk disk on the VMM's MMIO bus, its interrupt on the board.
struct VirtioDisk<'a> {
    transport: MmioTransport<Block<RegionDisk>>,
    ram: VirtioRam,
    board: &'a RefCell<Pc>,
    irq: u8,
}

impl VirtioDisk<'_> {
    fn settle(&mut self) {
        if let Ok(mut board) = self.board.try_borrow_mut() {
            board.set_isa_line(self.irq, self.transport.interrupt_line());
        }
    }
}

impl MmioDevice for VirtioDisk<'_> {
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        u64::from(self.transport.read(offset, size.bytes()))
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop> {
        let value = u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX);
        self.transport.write(offset, size.bytes(), value, &mut self.ram);
        self.settle();
        ControlFlow::Continue(())
    }
}
