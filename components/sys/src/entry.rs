//! Entry points. The kernel starts the root thread at `_start` with RSP at
//! `root_task::STACK_TOP` and RDI holding `root_task::INFO_PAGE`
//! (`kernel/src/root_task.rs`); the loader starts every protection domain
//! of a manifest the same way, with RSP at `layout::STACK_TOP` and RDI
//! holding `layout::INFO_PAGE` (`bulkhead_capdl_spec`). `_start` makes the
//! stack what a Rust function expects and calls the function that
//! [`entry!`](crate::entry!) (root task) or [`pd_entry!`](crate::pd_entry!)
//! (protection domain) defines, which copies the info page out, makes the
//! thread's [`Sys`] (and, for a PD, its heap) and calls the binary's
//! `main`; `main` returns the exit code.
//!
//! Nothing is zeroed here: the loaders zero-fill every segment past its
//! file bytes (`.bss`), as ELF says.

use bulkhead_capdl_spec::{PD_INFO_MAGIC, PD_INFO_VERSION, PdInfo, layout};
use kernel_core::root_task::{self, INFO_PAGE, RootInfo};

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
use crate::Sys;

/// Names the binary's `main(&RootInfo, &mut Sys) -> u64` as the root
/// task's entry. Use once, at the crate root of the binary:
///
/// ```
/// use bulkhead_sys::{RootInfo, Sys};
///
/// fn root_main(_info: &RootInfo, _sys: &mut Sys) -> u64 {
///     0
/// }
/// bulkhead_sys::entry!(root_main);
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The symbol `_start` calls.
        #[cfg(all(target_arch = "x86_64", target_os = "none"))]
        #[unsafe(no_mangle)]
        fn bulkhead_sys_main(info_address: u64) -> u64 {
            let main: fn(&$crate::RootInfo, &mut $crate::Sys) -> u64 = $main;
            $crate::entry::run_root_task(info_address, main)
        }
    };
}

/// Names the binary's `main(&PdInfo, &mut Sys) -> u64` as a protection
/// domain's entry (a program the loader starts from a manifest). Before
/// `main` runs, the heap the manifest gives the PD becomes the global
/// allocator's (with the feature `global-allocator`). Use once, at the
/// crate root of the binary:
///
/// ```
/// use bulkhead_sys::{PdInfo, Sys};
///
/// fn pd_main(_info: &PdInfo, _sys: &mut Sys) -> u64 {
///     0
/// }
/// bulkhead_sys::pd_entry!(pd_main);
/// ```
#[macro_export]
macro_rules! pd_entry {
    ($main:path) => {
        /// The symbol `_start` calls.
        #[cfg(all(target_arch = "x86_64", target_os = "none"))]
        #[unsafe(no_mangle)]
        fn bulkhead_sys_main(info_address: u64) -> u64 {
            let main: fn(&$crate::PdInfo, &mut $crate::Sys) -> u64 = $main;
            $crate::entry::run_protection_domain(info_address, main)
        }
    };
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
unsafe extern "Rust" {
    /// Defined by [`entry!`] or [`pd_entry!`] in the binary.
    fn bulkhead_sys_main(info_address: u64) -> u64;
}

// The kernel enters with RSP 16-byte aligned and nothing pushed; the call
// pushes the return address, so `start` sees the stack as any function
// called from Rust does. RBP 0 ends frame-pointer backtraces here.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
core::arch::global_asm!(
    ".section .text._start, \"ax\", @progbits",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {start}",
    "    ud2",
    ".size _start, . - _start",
    start = sym start,
);

/// Why the entry point refused to start `main`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// RDI was not the ABI's info page address.
    InfoAddress(u64),
    /// The page's magic or version is not this runtime's.
    Version {
        /// The magic found.
        magic: u64,
        /// The version found.
        version: u64,
    },
    /// The IPC buffer is not where the layout says.
    IpcBuffer(u64),
    /// The heap is not where the layout says, or larger than it allows.
    Heap {
        /// Its first byte.
        base: u64,
        /// Its size.
        bytes: u64,
    },
}

/// Checks what the kernel handed over before anything relies on it.
///
/// # Errors
///
/// The first mismatch.
pub fn check_root_info(info_address: u64, info: &RootInfo) -> Result<(), EntryError> {
    if info_address != INFO_PAGE {
        return Err(EntryError::InfoAddress(info_address));
    }
    if info.magic != root_task::MAGIC || info.version != root_task::VERSION {
        return Err(EntryError::Version { magic: info.magic, version: info.version });
    }
    if info.ipc_buffer != root_task::IPC_BUFFER {
        return Err(EntryError::IpcBuffer(info.ipc_buffer));
    }
    Ok(())
}

// The layout's addresses as pointers' integers (x86-64: 64-bit, no truncation).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[allow(clippy::cast_possible_truncation)]
const ROOT_INFO_ADDRESS: usize = INFO_PAGE as usize;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[allow(clippy::cast_possible_truncation)]
const ROOT_IPC_BUFFER_ADDRESS: usize = root_task::IPC_BUFFER as usize;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[allow(clippy::cast_possible_truncation)]
const PD_INFO_ADDRESS: usize = layout::INFO_PAGE as usize;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[allow(clippy::cast_possible_truncation)]
const PD_IPC_BUFFER_ADDRESS: usize = layout::IPC_BUFFER as usize;

/// The Rust side of `_start`.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
extern "C" fn start(info_address: u64) -> ! {
    // SAFETY: `entry!` or `pd_entry!` defines `bulkhead_sys_main` with
    // exactly this signature; a binary without either does not link.
    let code = unsafe { bulkhead_sys_main(info_address) };
    crate::arch::exit(code)
}

/// The root task's start: checks the kernel's [`RootInfo`], makes the
/// root thread's [`Sys`] and runs `main`. Called by [`entry!`].
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn run_root_task(info_address: u64, main: fn(&RootInfo, &mut Sys) -> u64) -> u64 {
    if info_address != INFO_PAGE {
        crate::println!("root: entered with RDI {info_address:#x}, not the info page {INFO_PAGE:#x}");
        return 1;
    }
    // SAFETY: the root-task ABI maps the read-only info page at INFO_PAGE
    // (just checked to be RDI) before the thread starts; it is page-aligned
    // and holds a `RootInfo`, whose fields are all `u64`, so any bytes are
    // a valid value. It is copied out once, by a volatile read, and never
    // referenced.
    let info = unsafe { core::ptr::with_exposed_provenance::<RootInfo>(ROOT_INFO_ADDRESS).read_volatile() };
    if let Err(error) = check_root_info(info_address, &info) {
        crate::println!("root: the kernel's root information is not this runtime's: {error:?}");
        return 1;
    }
    // SAFETY: the root-task ABI maps the root thread's IPC buffer at
    // IPC_BUFFER (checked above against the info page), readable and
    // writable, outside the image, stack and info page, so no Rust object
    // lives there; this is the only handle made for it, and the root thread
    // is the one running.
    let mut sys = unsafe { Sys::with_ipc_buffer(ROOT_IPC_BUFFER_ADDRESS) };
    main(&info, &mut sys)
}

/// A protection domain's start: checks the loader's [`PdInfo`], gives
/// the heap its region, makes the thread's [`Sys`] and runs `main`.
/// Called by [`pd_entry!`].
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn run_protection_domain(info_address: u64, main: fn(&PdInfo, &mut Sys) -> u64) -> u64 {
    if info_address != layout::INFO_PAGE {
        crate::println!("pd: entered with RDI {info_address:#x}, not the info page {:#x}", layout::INFO_PAGE);
        return 1;
    }
    // SAFETY: the loader maps the read-only info page at layout::INFO_PAGE
    // (just checked to be RDI) before the thread starts; it is page-aligned
    // and holds a `PdInfo`, whose fields are all `u64`, so any bytes are a
    // valid value. It is copied out once, by a volatile read, and never
    // referenced.
    let info = unsafe { core::ptr::with_exposed_provenance::<PdInfo>(PD_INFO_ADDRESS).read_volatile() };
    if let Err(error) = check_pd_info(info_address, &info) {
        crate::println!("pd: the loader's information is not this runtime's: {error:?}");
        return 1;
    }
    STARTED_BY_LOADER.store(true, core::sync::atomic::Ordering::Relaxed);
    if info.heap_bytes != 0 {
        let (Ok(start), Ok(size)) = (usize::try_from(info.heap_base), usize::try_from(info.heap_bytes)) else {
            return 1;
        };
        // SAFETY: the loader maps the heap's pages readable and writable at
        // `heap_base` (checked to be the layout's HEAP_BASE), for this PD
        // alone and for its whole life, and no Rust object, stack or other
        // mapping lies in the layout's heap range.
        if let Err(error) = unsafe { crate::heap::HEAP.init(start, size) } {
            crate::println!("pd: the heap at {start:#x} is refused: {error}");
            return 1;
        }
    }
    // SAFETY: the loader maps the thread's IPC buffer at the layout's
    // IPC_BUFFER, readable and writable, outside the image, stack, info
    // page and heap, so no Rust object lives there; this is the only handle
    // made for it, and the PD's one thread is the one running.
    let mut sys = unsafe { Sys::with_ipc_buffer(PD_IPC_BUFFER_ADDRESS) };
    main(&info, &mut sys)
}

/// Set once a PD's start has checked the loader's info page.
static STARTED_BY_LOADER: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether this program is a PD the loader started (its address space has
/// the loader's layout: nothing of the program's own above
/// `layout::RESERVED_END`).
pub fn started_by_loader() -> bool {
    STARTED_BY_LOADER.load(core::sync::atomic::Ordering::Relaxed)
}

/// Checks what the loader handed over before anything relies on it.
///
/// # Errors
///
/// The first mismatch.
pub fn check_pd_info(info_address: u64, info: &PdInfo) -> Result<(), EntryError> {
    if info_address != layout::INFO_PAGE {
        return Err(EntryError::InfoAddress(info_address));
    }
    if info.magic != PD_INFO_MAGIC || info.version != PD_INFO_VERSION {
        return Err(EntryError::Version { magic: info.magic, version: info.version });
    }
    if info.heap_bytes != 0 && (info.heap_base != layout::HEAP_BASE || info.heap_bytes > layout::MAX_HEAP_BYTES) {
        return Err(EntryError::Heap { base: info.heap_base, bytes: info.heap_bytes });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_abi_layout_starts_main() {
        let info = RootInfo::EMPTY;
        assert_eq!(check_root_info(INFO_PAGE, &info), Ok(()));
        assert_eq!(check_root_info(0x1000, &info), Err(EntryError::InfoAddress(0x1000)));
        let old = RootInfo { version: 0, ..info };
        assert_eq!(check_root_info(INFO_PAGE, &old), Err(EntryError::Version { magic: root_task::MAGIC, version: 0 }));
        let moved = RootInfo { ipc_buffer: 0x801000, ..info };
        assert_eq!(check_root_info(INFO_PAGE, &moved), Err(EntryError::IpcBuffer(0x801000)));
    }

    #[test]
    fn only_the_loaders_layout_starts_a_pd() {
        let info = PdInfo::new("ping", 0x4000, 0x4000);
        assert_eq!(check_pd_info(layout::INFO_PAGE, &info), Ok(()));
        assert_eq!(check_pd_info(0x1000, &info), Err(EntryError::InfoAddress(0x1000)));
        let root = PdInfo { magic: root_task::MAGIC, ..info };
        assert!(matches!(check_pd_info(layout::INFO_PAGE, &root), Err(EntryError::Version { .. })));
        let moved = PdInfo { heap_base: 0x1000, ..info };
        assert_eq!(check_pd_info(layout::INFO_PAGE, &moved), Err(EntryError::Heap { base: 0x1000, bytes: 0x4000 }));
        let huge = PdInfo { heap_bytes: layout::MAX_HEAP_BYTES + 4096, ..info };
        assert!(matches!(check_pd_info(layout::INFO_PAGE, &huge), Err(EntryError::Heap { .. })));
        let no_heap = PdInfo { heap_base: 0, heap_bytes: 0, ..info };
        assert_eq!(check_pd_info(layout::INFO_PAGE, &no_heap), Ok(()));
    }
}
