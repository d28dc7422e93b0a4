//! `kernel_entry`: from the boot stub's jump into Rust to the end of boot.
//!
//! Order matters: the console first (so that everything after can speak),
//! then the GDT and IDT (so that every fault after this point is reported),
//! then the identity map goes, and only then is untrusted-by-design firmware
//! data (the boot information) parsed.

use kernel_core::boot_info::{self, BootInfo, MemoryKind, Protocol};
use kernel_core::cmdline::Cmdline;
use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::memory::{PhysAddr, PhysRange};

use crate::arch::exit::{ExitStatus, stop};
use crate::arch::user::ProgramEnd;
use crate::arch::{cpu, exit, gdt, idt, paging, serial, timer, user};

unsafe extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
}

/// The physical range of the kernel image, `.bss` included.
fn kernel_image_range() -> PhysRange {
    // The linker defines both symbols as absolute physical addresses;
    // taking their address reads nothing.
    let start = core::ptr::addr_of!(__kernel_phys_start) as u64;
    let end = core::ptr::addr_of!(__kernel_phys_end) as u64;
    PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
}

/// The kernel's first Rust code, called by the boot stub on the boot stack
/// with the multiboot magic and the physical address of the boot info.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn kernel_entry(loader_magic: u32, boot_info_phys: u32) -> ! {
    start_console();
    // SAFETY: first and only call, on the boot CPU, interrupts off.
    unsafe { gdt::init() };
    // SAFETY: as above, and after `gdt::init`.
    unsafe { idt::init() };
    // SAFETY: we run in the higher half and keep no lower-half pointer:
    // the boot information is read through the physical-memory map below.
    unsafe { paging::remove_identity_map() };
    // SAFETY: once, interrupts off, right after the identity map went.
    let protection = unsafe { paging::protect_kernel_image() };
    // SAFETY: once, on the boot CPU, interrupts off, after the GDT and IDT.
    let user_mode = unsafe { user::init() };
    // SAFETY: once, on the boot CPU, interrupts off, after the IDT and the
    // kernel image's protection.
    let apic = unsafe { timer::init() };

    let tsc_at_banner = cpu::read_tsc();
    let cpu = cpu::summary();
    println!(
        "Bulkhead {} kernel, {} build, on {} {}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { "debug" } else { "release" },
        cpu.vendor,
        cpu.brand
    );
    let virtualisation = match (cpu.vtx, cpu.svm, cpu.npt) {
        (true, _, _) => "vtx (Intel VT-x)",
        (false, true, true) => "svm (AMD SVM with nested paging)",
        (false, true, false) => "svm without nested paging: guests unsupported",
        (false, false, _) => "none: guests unsupported",
    };
    println!("boot: virtualisation extensions: {virtualisation}");
    println!("boot: tsc at kernel entry {}, at banner {}", crate::arch::boot::tsc_at_entry(), tsc_at_banner);

    println!(
        "boot: kernel text {} pages read-only, read-only data {} pages, {}; boot stack guard page at {:#x}",
        protection.text_pages,
        protection.rodata_pages,
        if protection.no_execute {
            "nothing else executable"
        } else {
            "no-execute unavailable on this CPU (write protection only)"
        },
        protection.stack_guard
    );
    let on_off = |enabled: bool| if enabled { "on" } else { "unavailable" };
    println!(
        "boot: user mode: SYSCALL/SYSRET on, SMEP {}, SMAP {}, UMIP {}",
        on_off(user_mode.smep),
        on_off(user_mode.smap),
        on_off(user_mode.umip)
    );
    match apic {
        Some(apic) => println!(
            "boot: local APIC {} at {:#x}, legacy PIC masked, timer {}",
            apic.id,
            apic.base,
            if apic.tsc_deadline { "TSC-deadline" } else { "one-shot (calibrated against the TSC)" }
        ),
        None => println!("boot: local APIC unreachable: no preemption"),
    }
    let window = paging::PhysicalMemoryMap;
    let boot_info = match boot_info::parse(loader_magic, PhysAddr::new(u64::from(boot_info_phys)), &window) {
        Ok(info) => info,
        Err(error) => {
            println!("boot: cannot read the boot information: {error}");
            stop(ExitStatus::Failure)
        }
    };
    let cmdline = Cmdline::new(boot_info.cmdline);
    if cmdline.get("exit") == Some("emulator") {
        exit::enable_emulator_exit();
    }
    let protocol = match boot_info.protocol {
        Protocol::Multiboot1 => "multiboot1",
        Protocol::Multiboot2 => "multiboot2",
    };
    println!(
        "boot: loaded by {} via {protocol}, command line \"{}\"",
        boot_info.bootloader_name.unwrap_or("an unnamed loader"),
        boot_info.cmdline
    );

    log_memory_map(&boot_info);
    let reserved = reserved_ranges(&boot_info);
    let mut allocator = build_frame_allocator(&boot_info, &reserved);
    check_frame_allocator(&mut allocator, &reserved);
    // Without the firmware's map, a hole may be firmware memory, not a
    // device: no device untypeds then.
    let device_map = (!boot_info.basic_memory_only).then_some(&boot_info.memory_map[..]);
    let root_module = boot_info.modules.iter().find(|module| module.cmdline.split(' ').any(|word| word == "root-task"));
    create_root_objects(&mut allocator, device_map, root_task_keep_bytes(root_module.map(|module| module.range)));

    #[cfg(feature = "fault-injection")]
    crate::fault_injection::run(&cmdline, &mut allocator);
    #[cfg(not(feature = "fault-injection"))]
    if let Some(fault) = cmdline.get("inject") {
        println!("boot: ignoring inject={fault}: this kernel was built without fault injection");
    }

    if let Some(module) =
        boot_info.modules.iter().find(|module| module.cmdline.split(' ').any(|word| word == "root-task"))
    {
        let after_exit: fn() =
            if cmdline.has_flag("dump-capabilities") { dump_after_root_exit } else { after_root_exit };
        run_root_task(&mut allocator, module.range, after_exit);
    }

    defmt::info!("boot complete: nothing to run yet");
    stop(ExitStatus::Success)
}

/// Builds the root task from its boot module and runs it with every thread
/// it makes; stops the machine with its verdict (exit code 0: success).
fn run_root_task(allocator: &mut FrameAllocator, module: PhysRange, after_root_exit: fn()) -> ! {
    let root = match crate::arch::root_task::create(allocator, module) {
        Ok(root) => root,
        Err(error) => {
            println!("root task: cannot start: {error}");
            stop(ExitStatus::Failure)
        }
    };
    match user::run_root_task(root, after_root_exit) {
        Ok(system) => {
            let threads = system.finished_threads + system.failed_threads;
            let root_end = system.root_end;
            if root_end == Some(ProgramEnd::Exited(0)) {
                println!("root task: exited with code 0");
            } else {
                println!("root task: ended: {root_end:?}");
            }
            let (calls, fast) = crate::arch::threads::system_calls();
            println!("root task: {calls} system calls, {fast} of them Calls and ReplyRecvs on the IPC fast path");
            println!(
                "root task: {} system calls stopped at a preemption point and continued later",
                crate::arch::threads::preempted_calls()
            );
            println!(
                "root task: {} guest runs ended by a host interrupt and entered again",
                crate::arch::threads::interrupted_guests()
            );
            println!(
                "root task: the idle loop halted until a timer interrupt {} times",
                timer::IDLE_WAKEUPS.load(core::sync::atomic::Ordering::Relaxed)
            );
            if let Some(priority) = crate::arch::apic::task_priority() {
                println!("root task: the local APIC's task priority at the end: {priority:#x}");
            }
            if threads != 0 {
                println!(
                    "system: {} threads ended: {} with code 0, {} failed; the others are blocked",
                    threads, system.finished_threads, system.failed_threads
                );
            }
            if root_end == Some(ProgramEnd::Exited(0)) && system.failed_threads == 0 {
                defmt::info!("boot complete: the root task finished");
                stop(ExitStatus::Success)
            }
            stop(ExitStatus::Failure)
        }
        Err(error) => {
            println!("root task: cannot run: {error}");
            stop(ExitStatus::Failure)
        }
    }
}

/// The root exited with code 0 and the threads it started run on.
fn after_root_exit() {
    println!("root task: done; the threads it started run on");
}

/// [`after_root_exit`] with the command-line word `dump-capabilities`: the
/// kernel first prints what the root built, before any thread it started
/// runs again (the post-boot conformance dump, `docs/capdl.md`).
fn dump_after_root_exit() {
    crate::arch::conformance::dump_capabilities();
    after_root_exit();
}

/// Creates the root thread's objects and initial capabilities
/// (`root`), out of frames that the boot allocator then no longer holds.
/// What the boot allocator must keep after the root's untypeds: the root
/// task's image (its module's size again: the image is copied into fresh
/// frames) and 16 MiB for its page tables, stack, IPC buffer, info page
/// and the kernel's later boot needs.
fn root_task_keep_bytes(module: Option<PhysRange>) -> u64 {
    let image = module.map_or(0, |range| range.end.as_u64().saturating_sub(range.start.as_u64()));
    image.saturating_add(16 << 20)
}

fn create_root_objects(
    allocator: &mut FrameAllocator,
    memory_map: Option<&[boot_info::MemoryRegion]>,
    keep_bytes: u64,
) {
    match crate::root::create_root_objects(allocator, memory_map, keep_bytes) {
        Ok(summary) => {
            defmt::info!(
                "root: CNode at {=u64:#x} ({=u32} slots), TCB at {=u64:#x}, {=usize} untypeds ({=u64} KiB), SchedControl",
                summary.cnode.as_u64(),
                1_u32 << crate::root::ROOT_CNODE_RADIX,
                summary.tcb.as_u64(),
                summary.untyped_count,
                summary.untyped_bytes >> 10
            );
            defmt::info!(
                "root: {=usize} device untypeds from slot 32 ({=usize} more blocks left out)",
                summary.device_count,
                summary.devices_left_out
            );
        }
        Err(error) => {
            println!("boot: cannot create the root capabilities: {error}");
            stop(ExitStatus::Failure)
        }
    }
}

/// Initialises COM1. Kept out of line so that the first instruction after
/// `kernel_entry`'s prologue belongs to `kernel_entry` itself: gdb's
/// `hbreak kernel_entry` then stops on a line of this file, not inside
/// inlined port I/O (tests/gdb.rs).
#[inline(never)]
fn start_console() {
    serial::init();
}

fn memory_kind_name(kind: MemoryKind) -> &'static str {
    match kind {
        MemoryKind::Available => "available",
        MemoryKind::Reserved => "reserved",
        MemoryKind::AcpiReclaimable => "ACPI reclaimable",
        MemoryKind::AcpiNvs => "ACPI NVS",
        MemoryKind::Defective => "defective",
    }
}

fn log_memory_map(boot_info: &BootInfo<'_>) {
    for region in &boot_info.memory_map {
        defmt::info!(
            "memory: [{=u64:#011x}, {=u64:#011x}) {=str}",
            region.range.start.as_u64(),
            region.range.end.as_u64(),
            memory_kind_name(region.kind)
        );
    }
    let summary = boot_info.summary();
    defmt::info!(
        "memory map: {=u64} MiB available in {=usize} regions, {=usize} other regions, {=usize} modules",
        summary.available_bytes >> 20,
        summary.available_region_count,
        summary.other_region_count,
        summary.module_count
    );
    for module in &boot_info.modules {
        defmt::info!(
            "module: [{=u64:#x}, {=u64:#x}) {=str}",
            module.range.start.as_u64(),
            module.range.end.as_u64(),
            module.cmdline
        );
    }
}

/// Everything the frame allocator must never hand out besides what the
/// firmware reserves: the kernel image, the boot information and the
/// modules (low memory is excluded by the allocator itself).
type ReservedRanges = heapless::Vec<PhysRange, { boot_info::MAX_OCCUPIED_RANGES + 1 }>;

fn reserved_ranges(boot_info: &BootInfo<'_>) -> ReservedRanges {
    let mut reserved = ReservedRanges::new();
    // Capacity covers the kernel and everything `occupied_ranges` yields,
    // so no push can fail.
    let _ = reserved.push(kernel_image_range());
    for range in boot_info.occupied_ranges() {
        let _ = reserved.push(range);
    }
    reserved
}

fn build_frame_allocator(boot_info: &BootInfo<'_>, reserved: &[PhysRange]) -> FrameAllocator {
    let allocator = FrameAllocator::new(&boot_info.memory_map, reserved);
    let kernel = kernel_image_range();
    defmt::info!(
        "frames: {=u64} free 4 KiB frames ({=u64} MiB) in {=usize} ranges; kernel image [{=u64:#x}, {=u64:#x}) reserved",
        allocator.free_frame_count(),
        allocator.free_frame_count() >> 8,
        allocator.free_ranges().len(),
        kernel.start.as_u64(),
        kernel.end.as_u64()
    );
    if allocator.dropped_bytes() != 0 {
        defmt::warn!(
            "frames: the memory map has more free ranges than the boot allocator holds; {=u64} KiB left unused",
            allocator.dropped_bytes() >> 10
        );
    }
    allocator
}

/// Takes frames and gives them back, checking that none of them overlaps
/// the kernel image, the boot information or a module: a boot-time smoke
/// test of the allocator on the real memory map. It checks against the same
/// reserved list the allocator was built from, so it catches allocator
/// bugs, not a missing reservation (tests/modules.rs does that); the host
/// tests cover the logic exhaustively. The allocator hands out the lowest
/// free frames first, which lie right next to the kernel image.
fn check_frame_allocator(allocator: &mut FrameAllocator, reserved: &[PhysRange]) {
    const SAMPLE: usize = 64;
    let before = allocator.free_frame_count();
    let mut taken: heapless::Vec<_, SAMPLE> = heapless::Vec::new();
    while taken.len() < SAMPLE {
        let Some(frame) = allocator.allocate() else { break };
        if let Some(range) = reserved.iter().find(|range| frame.range().overlaps(range)) {
            panic!("frame allocator handed out {}, inside the reserved range {}", frame.start(), range);
        }
        let _ = taken.push(frame);
    }
    let count = taken.len();
    for frame in taken {
        if let Err(error) = allocator.free(frame) {
            panic!("frame allocator refused a frame it handed out: {error}");
        }
    }
    if allocator.free_frame_count() != before {
        panic!("frame allocator lost frames: {before} before, {} after", allocator.free_frame_count());
    }
    defmt::info!(
        "frames: allocated and freed {=usize} frames, none inside the kernel image, boot information or modules",
        count
    );
}
