//! The kernel's own GDT and TSS, with interrupt stacks (IST) for the
//! exceptions that must not trust the current stack.
//!
//! A double fault often means the kernel stack is gone (overflowed or
//! corrupt); an NMI or machine check can arrive at any instruction; a debug
//! exception can arrive on the SYSCALL entry's first instruction, while RSP
//! is still the user's (`arch::syscall`). Each of these gets its own
//! known-good stack through the TSS's IST table, so the exception report
//! can always be printed. TSS RSP0, the stack for every other exception
//! from ring 3, is the kernel-entry stack (`set_ring0_stack`).

use core::cell::UnsafeCell;
use core::mem::size_of;

use static_assertions::const_assert_eq;
use x86::Ring;
use x86::dtables::{DescriptorTablePointer, lgdt};
use x86::segmentation::SegmentSelector;

/// Kernel code segment selector.
pub(crate) const KERNEL_CODE: u16 = 0x08;
/// Kernel data segment selector.
pub(crate) const KERNEL_DATA: u16 = 0x10;
/// User data segment selector (DPL 3; SYSRET needs it right below user code).
pub(crate) const USER_DATA: u16 = 0x18;
/// User code segment selector (DPL 3, 64-bit).
pub(crate) const USER_CODE: u16 = 0x20;
/// Task state segment selector (a 16-byte system descriptor).
pub(crate) const TSS_SELECTOR: u16 = 0x28;

/// The TSS's size, which is also where its (absent) I/O bitmap would start.
const TSS_BYTES: u16 = 104;

/// IST slot (1-based, as in the IDT gate) used for double faults.
pub(crate) const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot used for NMIs.
pub(crate) const IST_NMI: u8 = 2;
/// IST slot used for machine checks.
pub(crate) const IST_MACHINE_CHECK: u8 = 3;
/// IST slot used for debug exceptions (#DB): a single-step trap set up in
/// ring 3 fires on the first instruction of the SYSCALL entry, before it
/// has switched away from the user's stack (`arch::syscall`).
pub(crate) const IST_DEBUG: u8 = 4;

const IST_STACK_BYTES: usize = 16 * 1024;
const IST_STACK_COUNT: usize = 4;

/// The 64-bit task state segment (Intel SDM Vol. 3A, 8.7).
#[repr(C, packed(4))]
struct TaskStateSegment {
    reserved0: u32,
    privilege_stacks: [u64; 3],
    reserved1: u64,
    interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
}
const_assert_eq!(size_of::<TaskStateSegment>(), TSS_BYTES as usize);
const_assert_eq!(core::mem::offset_of!(TaskStateSegment, privilege_stacks), 4);
const_assert_eq!(core::mem::offset_of!(TaskStateSegment, interrupt_stacks), 36);
const_assert_eq!(core::mem::offset_of!(TaskStateSegment, io_map_base), 102);

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_BYTES]; IST_STACK_COUNT]);

/// Everything this module hands to the CPU, in one place.
struct Tables {
    gdt: [u64; 7],
    tss: TaskStateSegment,
    stacks: IstStacks,
}

/// Lets `Tables` live in a `static` that the CPU reads and the kernel
/// writes once.
struct TablesCell(UnsafeCell<Tables>);

// SAFETY: the tables are written only by `init`, which runs once on the
// boot CPU with interrupts off before anything else reads them; after
// that, only the CPU reads them (and the CPU writes the stacks).
unsafe impl Sync for TablesCell {}

static TABLES: TablesCell = TablesCell(UnsafeCell::new(Tables {
    gdt: [0; 7],
    tss: TaskStateSegment {
        reserved0: 0,
        privilege_stacks: [0; 3],
        reserved1: 0,
        interrupt_stacks: [0; 7],
        reserved2: 0,
        reserved3: 0,
        // Set by `init` (kept zero here so the whole static, stacks
        // included, lands in .bss rather than in the image).
        io_map_base: 0,
    },
    stacks: IstStacks([[0; IST_STACK_BYTES]; IST_STACK_COUNT]),
}));

/// Builds a code or data segment descriptor for long mode.
const fn segment(executable: bool, dpl: u64) -> u64 {
    let present = 1 << 47;
    let descriptor_type = 1 << 44; // code/data, not system
    let long_mode = if executable { 1 << 53 } else { 0 };
    let kind = if executable { 0b1010 << 40 } else { 0b0010 << 40 }; // exec+read / read+write
    present | descriptor_type | long_mode | kind | (dpl << 45)
}

// The descriptors as the SDM spells them (Vol. 3A, 3.4.5 and 5.2.1): present,
// code/data, DPL, type, and L for 64-bit code.
const_assert_eq!(segment(true, 0), 0x0020_9a00_0000_0000);
const_assert_eq!(segment(false, 0), 0x0000_9200_0000_0000);
const_assert_eq!(segment(false, 3), 0x0000_f200_0000_0000);
const_assert_eq!(segment(true, 3), 0x0020_fa00_0000_0000);

/// Address ranges of the IST stacks, for the backtrace walker.
pub(crate) fn ist_stack_ranges() -> [core::ops::Range<u64>; IST_STACK_COUNT] {
    let tables = TABLES.0.get();
    // SAFETY: `tables` points to a live static; taking a field's address
    // creates no reference and reads nothing.
    let base = unsafe { core::ptr::addr_of!((*tables).stacks) } as u64;
    let size = IST_STACK_BYTES as u64;
    core::array::from_fn(|index| {
        let start = base + index as u64 * size;
        start..start + size
    })
}

/// Installs the GDT, reloads the segment registers and loads the TSS.
///
/// # Safety
///
/// Call once, on the boot CPU, with interrupts off.
pub(crate) unsafe fn init() {
    let tables = TABLES.0.get();
    let stacks = ist_stack_ranges();
    // SAFETY: per this function's contract nothing else accesses TABLES
    // now, so the exclusive reference is unique.
    let tables = unsafe { &mut *tables };
    for (slot, stack) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK, IST_DEBUG].iter().zip(stacks) {
        // Stacks grow down: the IST entry holds the top (16-byte aligned).
        tables.tss.interrupt_stacks[usize::from(*slot) - 1] = stack.end;
    }
    // No I/O permission bitmap: ring-3 port access is granted later through
    // IOPort capabilities, never through the TSS by default.
    tables.tss.io_map_base = TSS_BYTES;
    let tss_address = core::ptr::addr_of!(tables.tss) as u64;
    let tss_limit = u64::from(TSS_BYTES - 1);
    let tss_low = (tss_limit & 0xffff)
        | ((tss_address & 0xff_ffff) << 16)
        | (0b1001 << 40) // available 64-bit TSS
        | (1 << 47)
        | (((tss_limit >> 16) & 0xf) << 48)
        | (((tss_address >> 24) & 0xff) << 56);
    let tss_high = tss_address >> 32;
    tables.gdt = [
        0,
        segment(true, 0),  // 0x08 kernel code
        segment(false, 0), // 0x10 kernel data
        segment(false, 3), // USER_DATA (SYSRET order: data before code)
        segment(true, 3),  // USER_CODE
        tss_low,           // 0x28 TSS
        tss_high,
    ];
    let pointer = DescriptorTablePointer::new(&tables.gdt);
    // SAFETY:
    // 1. The GDT is a static, so it outlives every use by the CPU.
    // 2. Its code descriptor at KERNEL_CODE is a 64-bit ring-0 segment,
    //    like the boot GDT's, so reloading CS below keeps us running.
    unsafe { lgdt(&pointer) };
    // SAFETY: KERNEL_CODE is a valid 64-bit code segment of the GDT just
    // loaded; the far return lands on the next instruction.
    unsafe {
        core::arch::asm!(
            "push {code}",
            "lea {scratch}, [rip + 2f]",
            "push {scratch}",
            "retfq",
            "2:",
            "mov ss, {data:x}",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            code = in(reg) u64::from(KERNEL_CODE),
            data = in(reg) KERNEL_DATA,
            scratch = out(reg) _,
        );
    }
    // SAFETY: TSS_SELECTOR names the available TSS descriptor just
    // installed; loading it marks it busy, which is what the CPU expects.
    unsafe { x86::task::load_tr(SegmentSelector::new(TSS_SELECTOR >> 3, Ring::Ring0)) };
}

/// The TSS's address (the host state a VT-x exit reloads TR with).
pub(crate) fn tss_base() -> u64 {
    // SAFETY: only the address is taken; nothing is read or written.
    let tables = unsafe { &raw const (*TABLES.0.get()).tss };
    tables as u64
}

/// Sets the stack the CPU switches to when an exception or interrupt
/// arrives in ring 3 (TSS RSP0).
///
/// # Safety
///
/// Call after `init`, on the boot CPU, with interrupts off; `top` must be
/// the 16-byte-aligned top of a kernel stack that nothing else uses while
/// ring-3 code runs.
pub(crate) unsafe fn set_ring0_stack(top: u64) {
    let tables = TABLES.0.get();
    // SAFETY: per this function's contract nothing else writes TABLES now;
    // the CPU reads RSP0 only on a privilege change, which cannot happen
    // while this ring-0 code runs with interrupts off. The write goes
    // through a raw pointer: no reference to the packed field is made.
    unsafe { (*tables).tss.privilege_stacks[0] = top };
}
