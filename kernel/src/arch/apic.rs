//! The local APIC and its timer (issue "Microkernel core", scheduling).
//!
//! The local APIC's registers are a 4 KiB MMIO page at the address in the
//! IA32_APIC_BASE MSR (normally 0xfee00000), reached through the
//! physical-memory map; [`init`] makes the 2 MiB page of that map holding
//! it uncached (`paging::make_physmap_page_uncached`: the boot tables map
//! everything write-back). Every register access is a 32-bit volatile
//! read or write at the offset the SDM gives (Vol. 3A, table 11-1).
//!
//! [`init`] software-enables the APIC (spurious-interrupt vector
//! [`SPURIOUS_VECTOR`]), masks the legacy 8259 PICs (after remapping them
//! to vectors [`PIC_VECTOR_BASE`].. so that no PIC interrupt can ever look
//! like an exception: `arch::pic`) and leaves the timer masked. The timer is
//! one-shot and interrupts on [`TIMER_VECTOR`]:
//!
//! - **TSC-deadline mode** where CPUID.01H:ECX[24] says the CPU has it:
//!   the deadline, an absolute TSC value, goes into IA32_TSC_DEADLINE.
//! - **One-shot count mode** otherwise (QEMU's TCG has no TSC-deadline
//!   timer): the timer counts down from the initial count at the bus clock
//!   divided by 1; [`calibrate`] measures, once, how many timer ticks pass
//!   in [`CALIBRATION_TSC_TICKS`] TSC ticks (it spins on the TSC with the
//!   timer counting down from its maximum), and a deadline becomes a count
//!   by that ratio. A count that would not fit 32 bits is cut to the
//!   maximum: the timer fires early and the kernel simply re-arms it.
//!
//! Time is the TSC everywhere (the scheduler's ticks). Under QEMU with
//! `-icount shift=0` both the TSC and the APIC's clock advance one tick per
//! instruction, so the ratio is 1 and runs repeat exactly.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use kernel_core::memory::{PhysAddr, PhysRange};
use raw_cpuid::CpuId;

use super::cpu;
use super::paging::{make_physmap_page_uncached, physmap_pointer};

/// The timer's interrupt vector (the first one above the exceptions).
pub(crate) const TIMER_VECTOR: u8 = 0x20;
/// The spurious-interrupt vector (its low four bits must be ones on old
/// APICs).
pub(crate) const SPURIOUS_VECTOR: u8 = 0xff;
/// Where the 8259 PICs' 16 vectors go (every line masked until a driver
/// binds a notification to it, `arch::pic`; spurious IRQs 7 and 15 can
/// arrive on `PIC_VECTOR_BASE + 7` and `+ 15` at any time).
pub(crate) const PIC_VECTOR_BASE: u8 = 0x30;
/// TSC ticks the count-mode calibration spins for.
pub(crate) const CALIBRATION_TSC_TICKS: u64 = 1_000_000;

/// IA32_APIC_BASE (MSR 0x1b): bits 35:12 the register page, bit 11 the
/// global enable.
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// IA32_TSC_DEADLINE (MSR 0x6e0): the absolute TSC value at which the
/// timer fires in TSC-deadline mode; 0 disarms it.
const IA32_TSC_DEADLINE: u32 = 0x6e0;

/// Register offsets in the APIC page (SDM Vol. 3A, table 11-1).
mod register {
    /// Local APIC ID.
    pub(super) const ID: usize = 0x20;
    /// Task priority: 0 accepts every vector.
    pub(super) const TASK_PRIORITY: usize = 0x80;
    /// End of interrupt: write 0.
    pub(super) const END_OF_INTERRUPT: usize = 0xb0;
    /// Spurious-interrupt vector; bit 8 software-enables the APIC.
    pub(super) const SPURIOUS: usize = 0xf0;
    /// LVT timer: vector, bit 16 mask, bits 18:17 mode.
    pub(super) const LVT_TIMER: usize = 0x320;
    /// LVT LINT0: the local interrupt pin the 8259 master's output drives.
    pub(super) const LVT_LINT0: usize = 0x350;
    /// Initial count (count mode): writing starts the countdown, 0 stops it.
    pub(super) const INITIAL_COUNT: usize = 0x380;
    /// Current count (count mode).
    pub(super) const CURRENT_COUNT: usize = 0x390;
    /// Divide configuration (count mode).
    pub(super) const DIVIDE: usize = 0x3e0;
}

/// Spurious-vector register bit 8: the APIC is software-enabled.
const SOFTWARE_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode ExtINT (bits 10:8 = 111): the interrupt's vector comes
/// from the 8259, as on a PC in virtual-wire mode.
const DELIVERY_EXTINT: u32 = 0b111 << 8;
/// LVT timer modes (bits 18:17).
const TIMER_ONE_SHOT: u32 = 0;
const TIMER_TSC_DEADLINE: u32 = 2 << 17;
/// Divide configuration 0b1011: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;

/// The APIC's register page as 32-bit words (null until [`init`]).
static APIC_PAGE: AtomicPtr<u32> = AtomicPtr::new(core::ptr::null_mut());
/// The local APIC's physical page (its architectural default until `init`).
static APIC_PHYSICAL: AtomicU64 = AtomicU64::new(0xfee0_0000);
/// The I/O APIC's usual physical page: the kernel keeps it for itself
/// (interrupt routing is the kernel's), though it does not drive it yet.
const IO_APIC_PHYSICAL: u64 = 0xfec0_0000;
/// The CPU has the TSC-deadline timer.
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);
/// Count mode: APIC timer ticks per [`CALIBRATION_TSC_TICKS`] TSC ticks
/// (0: not calibrated yet).
static TIMER_TICKS_PER_CALIBRATION: AtomicU64 = AtomicU64::new(0);

/// What [`init`] found, for the log.
#[derive(Clone, Copy)]
pub(crate) struct ApicSummary {
    /// The register page's physical address.
    pub(crate) base: u64,
    /// The local APIC ID.
    pub(crate) id: u32,
    /// The timer runs in TSC-deadline mode.
    pub(crate) tsc_deadline: bool,
}

/// A pointer to the register at `offset` bytes into the APIC page.
fn register_pointer(offset: usize) -> *mut u32 {
    let page = APIC_PAGE.load(Ordering::Relaxed);
    debug_assert!(!page.is_null() && offset < 0x1000 && offset.is_multiple_of(16));
    page.wrapping_add(offset / 4)
}

fn read(offset: usize) -> u32 {
    // SAFETY: the pointer is into the APIC's register page, mapped uncached
    // by `init` (which set APIC_PAGE only after checking the mapping), at
    // one of the aligned register offsets in `register`.
    unsafe { register_pointer(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; the registers written here only configure the
    // APIC's own interrupt delivery.
    unsafe { register_pointer(offset).write_volatile(value) };
}

/// The task-priority register: 0 from `init` on, for the kernel never
/// raises it. A guest that reached it (a 64-bit MOV to CR8 on VT-x
/// without CR8 exiting) would hold off the host's interrupts; the kernel
/// reports it at the end of a run (`boot::run_root_task`).
pub(crate) fn task_priority() -> Option<u32> {
    present().then(|| read(register::TASK_PRIORITY))
}

/// Enables the local APIC with the timer masked and masks the legacy PIC.
/// Returns `None` if the APIC's page lies outside the physical-memory map.
///
/// # Safety
///
/// Call once on the boot CPU with interrupts off, after
/// `paging::protect_kernel_image` (which must not run again: it would not
/// undo the uncached mapping, but nothing else may edit the boot tables
/// concurrently) and after the IDT has gates for [`TIMER_VECTOR`],
/// [`SPURIOUS_VECTOR`] and the PIC's vectors.
pub(crate) unsafe fn init() -> Option<ApicSummary> {
    // First, whatever happens below: ring 3 runs with interrupts on, so no
    // legacy PIC line may ever reach the CPU (an unremapped IRQ 0 would
    // arrive as vector 8, a double fault).
    super::pic::remap_and_mask_all();
    // SAFETY: reading IA32_APIC_BASE has no side effects (every x86-64 CPU
    // has a local APIC and the MSR).
    let apic_base = unsafe { x86::msr::rdmsr(IA32_APIC_BASE) };
    let base = apic_base & APIC_BASE_ADDRESS_MASK;
    APIC_PHYSICAL.store(base, Ordering::Relaxed);
    let page = physmap_pointer(base, 0x1000)?;
    // SAFETY: per this function's contract, nothing else edits the boot
    // tables now; the page is MMIO, never RAM the kernel uses.
    if !unsafe { make_physmap_page_uncached(base) } {
        return None;
    }
    if apic_base & APIC_BASE_ENABLE == 0 {
        // SAFETY: setting the global enable with the same base only turns
        // the APIC on; its timer is masked after reset.
        unsafe { x86::msr::wrmsr(IA32_APIC_BASE, apic_base | APIC_BASE_ENABLE) };
    }
    // The physical-memory map is 2 MiB aligned and `base` 4 KiB aligned.
    APIC_PAGE.store(page.cast::<u32>(), Ordering::Relaxed);
    let tsc_deadline = CpuId::new().get_feature_info().is_some_and(|features| features.has_tsc_deadline());
    TSC_DEADLINE.store(tsc_deadline, Ordering::Relaxed);
    write(register::LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(register::INITIAL_COUNT, 0);
    write(register::TASK_PRIORITY, 0);
    write(register::SPURIOUS, SOFTWARE_ENABLE | u32::from(SPURIOUS_VECTOR));
    // The PICs reach the CPU through LINT0 as ExtINT (virtual-wire mode),
    // whatever the firmware left there: device lines are delivered through
    // the 8259 (`arch::pic`), each masked there until a driver binds it.
    write(register::LVT_LINT0, DELIVERY_EXTINT);
    Some(ApicSummary { base, id: read(register::ID) >> 24, tsc_deadline })
}

/// The physical pages of the interrupt controllers, which never become
/// device untypeds (a PD that mapped them could take the kernel's timer
/// or route interrupts).
pub(crate) fn kernel_device_ranges() -> [PhysRange; 2] {
    let page = |base: u64| PhysRange::new(PhysAddr::new(base), PhysAddr::new(base + 0x1000));
    [page(APIC_PHYSICAL.load(Ordering::Relaxed)), page(IO_APIC_PHYSICAL)]
}

/// Whether [`init`] succeeded.
pub(crate) fn present() -> bool {
    !APIC_PAGE.load(Ordering::Relaxed).is_null()
}

/// Whether the timer runs in TSC-deadline mode.
pub(crate) fn tsc_deadline_mode() -> bool {
    TSC_DEADLINE.load(Ordering::Relaxed)
}

/// Count mode: measures (once) the APIC timer's ticks per TSC tick; see
/// the module documentation. Returns the timer ticks counted in
/// [`CALIBRATION_TSC_TICKS`] TSC ticks.
pub(crate) fn calibrate() -> u64 {
    let known = TIMER_TICKS_PER_CALIBRATION.load(Ordering::Relaxed);
    if known != 0 || tsc_deadline_mode() || !present() {
        return known;
    }
    write(register::LVT_TIMER, LVT_MASKED | TIMER_ONE_SHOT | u32::from(TIMER_VECTOR));
    write(register::DIVIDE, DIVIDE_BY_1);
    let start = cpu::read_tsc();
    write(register::INITIAL_COUNT, u32::MAX);
    while cpu::read_tsc().wrapping_sub(start) < CALIBRATION_TSC_TICKS {
        core::hint::spin_loop();
    }
    let remaining = read(register::CURRENT_COUNT);
    write(register::INITIAL_COUNT, 0);
    let ticks = u64::from(u32::MAX - remaining).max(1);
    TIMER_TICKS_PER_CALIBRATION.store(ticks, Ordering::Relaxed);
    ticks
}

/// Arms the one-shot timer to interrupt at TSC value `deadline` (at once
/// if it has passed).
pub(crate) fn arm(deadline: u64) {
    if !present() {
        return;
    }
    if tsc_deadline_mode() {
        write(register::LVT_TIMER, TIMER_TSC_DEADLINE | u32::from(TIMER_VECTOR));
        // The SDM asks for a serialising step between the MMIO write that
        // selects the mode and the MSR write (WRMSR to IA32_TSC_DEADLINE
        // is not serialising).
        core::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: the deadline MSR only schedules the timer interrupt,
        // whose gate is installed (`init`'s contract); 0 would disarm it.
        unsafe { x86::msr::wrmsr(IA32_TSC_DEADLINE, deadline.max(1)) };
        return;
    }
    let per_calibration = calibrate();
    let delta = deadline.saturating_sub(cpu::read_tsc());
    let count = u128::from(delta) * u128::from(per_calibration) / u128::from(CALIBRATION_TSC_TICKS);
    let count = u32::try_from(count).unwrap_or(u32::MAX).max(1);
    write(register::LVT_TIMER, TIMER_ONE_SHOT | u32::from(TIMER_VECTOR));
    write(register::DIVIDE, DIVIDE_BY_1);
    write(register::INITIAL_COUNT, count);
}

/// Stops and masks the timer (an interrupt already pending stays pending).
pub(crate) fn disarm() {
    if !present() {
        return;
    }
    write(register::LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    if tsc_deadline_mode() {
        // SAFETY: writing 0 to the deadline MSR disarms the timer.
        unsafe { x86::msr::wrmsr(IA32_TSC_DEADLINE, 0) };
    } else {
        write(register::INITIAL_COUNT, 0);
    }
}

/// Signals the end of the interrupt being handled.
pub(crate) fn end_of_interrupt() {
    if present() {
        write(register::END_OF_INTERRUPT, 0);
    }
}
