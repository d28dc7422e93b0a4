//! The guests' x87, MMX and SSE state (the FXSAVE image), which neither a
//! VMCB nor a VMCS holds.
//!
//! The kernel and every ring-3 program are built without floating point
//! (`x86_64-unknown-none` is soft-float), so the only code that uses the
//! FPU is a guest's. The kernel keeps the host's CR0.TS set: any x87,
//! MMX or SSE instruction in ring 3 raises #NM and is that thread's
//! fault, so no protection domain can read or leave FPU state behind for
//! another, and none can see a guest's. Each VCpu has its own 512-byte
//! FXSAVE area on its second page (after its slot and record, at
//! [`AREA_OFFSET`]), made with the state of a processor after reset (FCW
//! 0x37F, MXCSR 0x1F80, everything else 0). Around each world switch the
//! kernel clears TS, loads the VCpu's area (FXRSTOR), runs the guest,
//! saves the area (FXSAVE) and sets TS again: the eager form, two
//! 512-byte copies per exit. (A lazy form, which keeps a VCpu's state
//! loaded until another VCpu runs, would save both copies while one
//! guest runs alone; it needs the owner forgotten when a VCpu is deleted.)
//! CR4.OSFXSR is set so that FXSAVE and FXRSTOR include the XMM registers
//! and MXCSR.

use core::arch::asm;

use kernel_core::memory::PhysAddr;
use kernel_core::vcpu::{KERNEL_PAGE_OFFSET, VCpu};

use super::paging::physmap_pointer;

/// Where a VCpu's FXSAVE area is: on its second page, at this offset.
pub(crate) const AREA_OFFSET: u64 = KERNEL_PAGE_OFFSET + 2048;
/// The area's bytes.
const AREA_BYTES: usize = 512;

// The slot (64 bytes) and the record come first on the second page.
static_assertions::const_assert!(64 + size_of::<VCpu>() <= 2048);
static_assertions::const_assert!(AREA_OFFSET.is_multiple_of(16));
static_assertions::const_assert!(AREA_OFFSET + AREA_BYTES as u64 <= 2 * KERNEL_PAGE_OFFSET);

/// CR0.TS: the next x87, MMX or SSE instruction raises #NM.
const CR0_TS: u64 = 1 << 3;
/// CR4.OSFXSR: FXSAVE and FXRSTOR cover the XMM registers and MXCSR.
const CR4_OSFXSR: u64 = 1 << 9;

/// The FXSAVE image of a processor after reset: FCW 0x37F (every x87
/// exception masked, 64-bit precision), MXCSR 0x1F80 (every SSE exception
/// masked); the rest zero.
const RESET_IMAGE: [u8; AREA_BYTES] = {
    let mut image = [0; AREA_BYTES];
    image[0] = 0x7f;
    image[1] = 0x03;
    image[24] = 0x80;
    image[25] = 0x1f;
    image
};

/// Sets CR4.OSFXSR and CR0.TS (module documentation).
///
/// # Safety
///
/// Call once at boot, before ring 3 runs.
pub(crate) unsafe fn init() {
    // SAFETY: OSFXSR only widens what FXSAVE and FXRSTOR move.
    unsafe { write_cr4(read_cr4() | CR4_OSFXSR) };
    // SAFETY: TS only makes FPU instructions fault, which the kernel never
    // executes outside this module (which clears it first).
    unsafe { write_cr0(read_cr0() | CR0_TS) };
}

fn read_cr0() -> u64 {
    let value: u64;
    // SAFETY: reading CR0 in ring 0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

fn read_cr4() -> u64 {
    let value: u64;
    // SAFETY: reading CR4 in ring 0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
///
/// `value` must be a CR0 the kernel can run with.
unsafe fn write_cr0(value: u64) {
    // SAFETY: per this function's contract.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// # Safety
///
/// `value` must be a CR4 the kernel can run with.
unsafe fn write_cr4(value: u64) {
    // SAFETY: per this function's contract.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// The VCpu's FXSAVE area, through the physical-memory map.
fn area(vcpu: PhysAddr) -> *mut u8 {
    let address = vcpu.as_u64() + AREA_OFFSET;
    match physmap_pointer(address, AREA_BYTES as u64) {
        Some(pointer) => pointer,
        None => panic!("VCpu at {:#x} lies outside the physical-memory map", vcpu.as_u64()),
    }
}

/// Writes the reset image into a new VCpu's area.
pub(crate) fn init_area(vcpu: PhysAddr) {
    let pointer = area(vcpu);
    // SAFETY: the area is inside the VCpu's second page (asserted above),
    // which the kernel owns and nothing else references while the object
    // is made; bytes need no validity.
    unsafe { core::ptr::copy_nonoverlapping(RESET_IMAGE.as_ptr(), pointer, AREA_BYTES) };
}

/// Loads the VCpu's FPU state for its guest (CR0.TS clear until
/// [`save`]).
pub(crate) fn load(vcpu: PhysAddr) {
    let pointer = area(vcpu);
    // SAFETY: the area is the VCpu's own, 16-byte aligned (asserted) and
    // holds an image FXSAVE wrote or the reset image, whose reserved MXCSR
    // bits are clear, so FXRSTOR cannot fault; clearing TS lets it run.
    unsafe { asm!("clts", "fxrstor64 [{}]", in(reg) pointer, options(nostack, preserves_flags)) };
}

/// Saves the guest's FPU state into the VCpu's area and sets CR0.TS
/// again.
pub(crate) fn save(vcpu: PhysAddr) {
    let pointer = area(vcpu);
    // SAFETY: as for `load`; TS is cleared first (a `vtx` exit loads the
    // host's CR0 from the VMCS, which has it set), and set again after.
    unsafe { asm!("clts", "fxsave64 [{}]", in(reg) pointer, options(nostack, preserves_flags)) };
    // SAFETY: the kernel's CR0 with TS set again (module documentation).
    unsafe { write_cr0(read_cr0() | CR0_TS) };
}
