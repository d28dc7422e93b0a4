//! The kernel's address space during boot.
//!
//! The boot stub leaves three views of physical memory (see `arch::boot`):
//! the identity map of the first GiB (for the stub only), the kernel's
//! higher half at `KERNEL_VIRT_BASE`, and the physical-memory map of the
//! first 4 GiB at `PHYSMAP_BASE`. This module drops the identity map, gives
//! the kernel image its section permissions (text read-only and
//! executable, read-only data, writable data, nothing else executable),
//! unmaps the guard pages below the boot stack and the kernel-entry stack
//! (`arch::syscall`), and reads physical memory
//! through the physical-memory map.

use kernel_core::boot_info::PhysMemory;
use kernel_core::memory::PhysAddr;

use super::boot::{
    KERNEL_VIRT_BASE, PHYSMAP_BASE, PHYSMAP_BYTES, boot_page_directories_phys, boot_pml4_phys, boot_pt_low_phys,
    boot_stack_guard_address,
};

/// Page-table entry bits (Intel SDM Vol. 3A, 4.5).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const NO_EXECUTE: u64 = 1 << 63;

/// Page-level write-through and cache disable (SDM Vol. 3A, 4.9.2): with
/// the PAT as reset leaves it, PCD and PWT together select uncacheable.
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
/// The physical-memory map's page size above the first 2 MiB.
const LARGE_PAGE_BYTES: u64 = 2 << 20;

/// EFER (MSR 0xc0000080) bit 11: no-execute page protection is enabled.
const EFER_NO_EXECUTE_ENABLE: u64 = 1 << 11;

/// Entries per page table; 4 KiB pages.
const ENTRIES: usize = 512;
const PAGE_BYTES: u64 = 4096;

/// The four page directories that map the first 4 GiB follow each other.
const PHYSMAP_PAGE_DIRECTORIES: usize = 4;

unsafe extern "C" {
    static __kernel_text_start: u8;
    static __kernel_rodata_start: u8;
    static __kernel_data_start: u8;
}

/// Whether EFER.NXE is set: page entries may use the no-execute bit (bit
/// 63 is reserved otherwise).
pub(crate) fn no_execute_enabled() -> bool {
    // SAFETY: reading EFER has no side effects.
    let efer = unsafe { x86::msr::rdmsr(x86::msr::IA32_EFER) };
    efer & EFER_NO_EXECUTE_ENABLE != 0
}

/// A kernel pointer to physical memory through the physical-memory map,
/// if the whole range lies inside it.
#[inline]
pub(crate) fn physmap_pointer(start: u64, len: u64) -> Option<*mut u8> {
    let end = start.checked_add(len)?;
    if end > PHYSMAP_BYTES {
        return None;
    }
    Some((PHYSMAP_BASE + start) as *mut u8)
}

/// Reads physical memory below 4 GiB through the physical-memory map.
pub(crate) struct PhysicalMemoryMap;

impl PhysMemory for PhysicalMemoryMap {
    fn read(&self, start: PhysAddr, len: usize) -> Option<&[u8]> {
        let pointer = physmap_pointer(start.as_u64(), len as u64)?;
        // SAFETY:
        // 1. `physmap_pointer` checked that the whole range lies inside the
        //    physical-memory map, which stays mapped for the kernel's life.
        // 2. The bytes are only read as `u8`, which every bit pattern is.
        // 3. During boot nothing writes the boot-information areas that
        //    this reads, so the shared borrow is not invalidated.
        Some(unsafe { core::slice::from_raw_parts(pointer, len) })
    }
}

/// A page table of the boot stub's, as a mutable view.
///
/// # Safety
///
/// `phys` must be the physical address of one of the boot page tables
/// (4 KiB aligned, inside the physical-memory map), and nothing else may
/// hold a reference into it while the view lives.
unsafe fn boot_table(phys: u64) -> &'static mut [u64; ENTRIES] {
    let pointer = (PHYSMAP_BASE + phys) as *mut [u64; ENTRIES];
    // SAFETY: per this function's contract the table is mapped, aligned and
    // not otherwise borrowed; the CPU's own accesses are not Rust borrows.
    unsafe { &mut *pointer }
}

fn flush_tlb() {
    // SAFETY: reading CR3 has no side effects.
    let root = unsafe { x86::controlregs::cr3() };
    // SAFETY: reloading CR3 with its own value flushes the non-global TLB
    // entries (the boot tables use no global pages) and changes nothing else.
    unsafe { x86::controlregs::cr3_write(root) };
}

/// Removes the boot stub's identity mapping of the first GiB.
///
/// # Safety
///
/// The caller must run from the higher half and hold no pointer into the
/// lower half.
pub(crate) unsafe fn remove_identity_map() {
    // SAFETY: the boot PML4 is a boot page table and no reference into it
    // exists (the boot stub wrote it before any Rust code ran).
    let pml4 = unsafe { boot_table(boot_pml4_phys()) };
    // Entry 0 maps only the identity view, which by this function's
    // contract is no longer used.
    pml4[0] = 0;
    flush_tlb();
}

/// What `protect_kernel_image` did, for the boot log.
pub(crate) struct Protection {
    /// Whether the CPU enforces no-execute (without it, only write
    /// protection applies).
    pub(crate) no_execute: bool,
    /// Pages of kernel text (read-only, executable).
    pub(crate) text_pages: u64,
    /// Pages of read-only data.
    pub(crate) rodata_pages: u64,
    /// Virtual address of the unmapped guard page below the boot stack.
    pub(crate) stack_guard: u64,
}

/// Gives each page of the first 2 MiB its permissions: the kernel's text
/// read-only and executable, its read-only data read-only, everything else
/// writable and (where the CPU has no-execute) not executable, and the
/// guard pages of the boot stack and the kernel-entry stack not present. Every 2 MiB page above is made
/// non-executable too: nothing but the kernel text may run.
///
/// # Safety
///
/// Call once, on the boot CPU with interrupts off, after
/// `remove_identity_map`, before anything else edits the boot tables.
pub(crate) unsafe fn protect_kernel_image() -> Protection {
    let no_execute = no_execute_enabled();
    let data_flags = PRESENT | WRITABLE | if no_execute { NO_EXECUTE } else { 0 };
    let rodata_flags = PRESENT | if no_execute { NO_EXECUTE } else { 0 };

    let higher_half_to_phys = |symbol: *const u8| symbol as u64 - KERNEL_VIRT_BASE;
    let text = higher_half_to_phys(core::ptr::addr_of!(__kernel_text_start))
        ..higher_half_to_phys(core::ptr::addr_of!(__kernel_rodata_start));
    let rodata = text.end..higher_half_to_phys(core::ptr::addr_of!(__kernel_data_start));
    let guard_virtual = boot_stack_guard_address();
    let guard = higher_half_to_phys(guard_virtual as *const u8);
    let entry_stack_guard = higher_half_to_phys(super::syscall::kernel_entry_stack_guard_address() as *const u8);

    // SAFETY: the low page table is a boot page table; no reference into
    // it exists, and the contract excludes concurrent edits.
    let low = unsafe { boot_table(boot_pt_low_phys()) };
    for (index, entry) in low.iter_mut().enumerate() {
        let phys = index as u64 * PAGE_BYTES;
        *entry = if phys == guard || phys == entry_stack_guard {
            0
        } else if text.contains(&phys) {
            phys | PRESENT
        } else if rodata.contains(&phys) {
            phys | rodata_flags
        } else {
            phys | data_flags
        };
    }
    if no_execute {
        for directory in 0..PHYSMAP_PAGE_DIRECTORIES {
            let phys = boot_page_directories_phys() + directory as u64 * PAGE_BYTES;
            // SAFETY: one of the four boot page directories; no reference
            // into it exists, and the contract excludes concurrent edits.
            let table = unsafe { boot_table(phys) };
            for (index, entry) in table.iter_mut().enumerate() {
                // Entry 0 of the first directory points to the low page
                // table, whose own entries decide (a no-execute bit here
                // would forbid the kernel text too).
                if directory != 0 || index != 0 {
                    *entry |= NO_EXECUTE;
                }
            }
        }
    }
    flush_tlb();
    Protection {
        no_execute,
        text_pages: (text.end - text.start) / PAGE_BYTES,
        rodata_pages: (rodata.end - rodata.start) / PAGE_BYTES,
        stack_guard: guard_virtual,
    }
}

/// Makes the physical-memory map's 2 MiB page that holds `phys` uncached
/// (PCD and PWT), for MMIO such as the local APIC's registers: the boot
/// stub maps all of the first 4 GiB write-back. Returns false if `phys`
/// is outside the map or in the first 2 MiB (4 KiB pages, RAM and the
/// kernel image: never made uncached).
///
/// # Safety
///
/// Call on the boot CPU with interrupts off, after `protect_kernel_image`,
/// while nothing else edits the boot tables, and only for a page that
/// holds no RAM the kernel uses (its accesses would become slow, not
/// wrong).
pub(crate) unsafe fn make_physmap_page_uncached(phys: u64) -> bool {
    let index = phys / LARGE_PAGE_BYTES;
    if phys >= PHYSMAP_BYTES || index == 0 {
        return false;
    }
    let entries = ENTRIES as u64;
    let directory = boot_page_directories_phys() + index / entries * PAGE_BYTES;
    // SAFETY: one of the four boot page directories (index < 2048); no
    // reference into it exists, and the contract excludes concurrent edits.
    let table = unsafe { boot_table(directory) };
    // index % 512 < 512: inside the table.
    table[(index % entries) as usize] |= CACHE_DISABLE | WRITE_THROUGH;
    flush_tlb();
    true
}
