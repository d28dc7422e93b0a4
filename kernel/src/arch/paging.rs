//! The kernel's view of physical memory during boot.
//!
//! The boot stub maps the first GiB of physical memory at
//! `KERNEL_VIRT_BASE` (the "boot window") and, temporarily, at 0. This
//! module reads physical memory through the window and drops the identity
//! mapping, after which the lower half belongs to nobody until user
//! address spaces arrive.

use super::boot::{BOOT_WINDOW_BYTES, KERNEL_VIRT_BASE, boot_pml4_phys};
use kernel_core::boot_info::PhysMemory;
use kernel_core::memory::PhysAddr;

/// Translates a physical range inside the boot window to a kernel pointer.
fn window_pointer(start: u64, len: usize) -> Option<*const u8> {
    let end = start.checked_add(len as u64)?;
    if end > BOOT_WINDOW_BYTES {
        return None;
    }
    Some((KERNEL_VIRT_BASE + start) as *const u8)
}

/// Reads physical memory below 1 GiB through the boot window.
pub(crate) struct BootWindow;

impl PhysMemory for BootWindow {
    fn read(&self, start: PhysAddr, len: usize) -> Option<&[u8]> {
        let pointer = window_pointer(start.as_u64(), len)?;
        // SAFETY:
        // 1. `window_pointer` checked that the whole range lies inside the
        //    boot window, which stays mapped (read/write) for the kernel's
        //    lifetime.
        // 2. The bytes are only read as `u8`, which every bit pattern is.
        // 3. During boot nothing writes the boot-information areas that
        //    this reads, so the shared borrow is not invalidated.
        Some(unsafe { core::slice::from_raw_parts(pointer, len) })
    }
}

/// Removes the boot stub's identity mapping of the first GiB.
///
/// # Safety
///
/// The caller must run from the higher half and hold no pointer into the
/// lower half (everything from here on goes through the boot window).
pub(crate) unsafe fn remove_identity_map() {
    let pml4 = (KERNEL_VIRT_BASE + boot_pml4_phys()) as *mut u64;
    // SAFETY:
    // 1. The boot PML4 lies in `.boot.data`, inside the boot window, and is
    //    the live top-level table (CR3 points at it).
    // 2. Entry 0 maps only the identity window, which by this function's
    //    contract is no longer used.
    unsafe { pml4.write_volatile(0) };
    // SAFETY: reading CR3 has no side effects.
    let root = unsafe { x86::controlregs::cr3() };
    // SAFETY: reloading CR3 with its own value flushes the stale identity
    // translations from the TLB and changes nothing else.
    unsafe { x86::controlregs::cr3_write(root) };
}
