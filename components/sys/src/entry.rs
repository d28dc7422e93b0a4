//! The root task's entry point. The kernel starts the root thread at
//! `_start` with RSP at `root_task::STACK_TOP` and RDI holding
//! `root_task::INFO_PAGE` (`kernel/src/root_task.rs`). `_start` makes the
//! stack what a Rust function expects and calls [`start`], which copies
//! the [`RootInfo`] out of its page, makes the root thread's [`Sys`] and
//! calls the binary's `main`, named with [`entry!`](crate::entry!); `main`
//! returns the exit code.
//!
//! Nothing is zeroed here: the kernel's loader zero-fills every segment
//! past its file bytes (`.bss`), as ELF says.

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
        /// The symbol `bulkhead_sys::entry::start` calls.
        #[cfg(all(target_arch = "x86_64", target_os = "none"))]
        #[unsafe(no_mangle)]
        fn bulkhead_sys_main(info: &$crate::RootInfo, sys: &mut $crate::Sys) -> u64 {
            let main: fn(&$crate::RootInfo, &mut $crate::Sys) -> u64 = $main;
            main(info, sys)
        }
    };
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
unsafe extern "Rust" {
    /// Defined by [`entry!`] in the binary.
    fn bulkhead_sys_main(info: &RootInfo, sys: &mut Sys) -> u64;
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
const INFO_ADDRESS: usize = INFO_PAGE as usize;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[allow(clippy::cast_possible_truncation)]
const IPC_BUFFER_ADDRESS: usize = root_task::IPC_BUFFER as usize;

/// The Rust side of `_start`.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
extern "C" fn start(info_address: u64) -> ! {
    if info_address != INFO_PAGE {
        crate::println!("root: entered with RDI {info_address:#x}, not the info page {INFO_PAGE:#x}");
        crate::arch::exit(1);
    }
    // SAFETY: the root-task ABI maps the read-only info page at INFO_PAGE
    // (just checked to be RDI) before the thread starts; it is page-aligned
    // and holds a `RootInfo`, whose fields are all `u64`, so any bytes are
    // a valid value. It is copied out once, by a volatile read, and never
    // referenced.
    let info = unsafe { core::ptr::with_exposed_provenance::<RootInfo>(INFO_ADDRESS).read_volatile() };
    if let Err(error) = check_root_info(info_address, &info) {
        crate::println!("root: the kernel's root information is not this runtime's: {error:?}");
        crate::arch::exit(1);
    }
    // SAFETY: the root-task ABI maps the root thread's IPC buffer at
    // IPC_BUFFER (checked above against the info page), readable and
    // writable, outside the image, stack and info page, so no Rust object
    // lives there; this is the only handle made for it, and the root thread
    // is the one running.
    let mut sys = unsafe { Sys::with_ipc_buffer(IPC_BUFFER_ADDRESS) };
    // SAFETY: `entry!` defines `bulkhead_sys_main` with exactly this
    // signature (it coerces the binary's `main` to that function type).

    let code = unsafe { bulkhead_sys_main(&info, &mut sys) };
    crate::arch::exit(code)
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
}
