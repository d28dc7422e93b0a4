//! The Bulkhead kernel image: boot, then (in later issues) capabilities,
//! IPC, scheduling and second-level address translation. Nothing else runs
//! in ring 0.
//!
//! This crate holds the hardware-facing parts (`arch`, the logger, the
//! fault reports); the hardware-free logic is the `kernel_core`
//! library, which the host tests drive unchanged. On the host this binary
//! is an empty program so that `cargo build` of the whole workspace works.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(unused))]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("bulkhead-kernel runs on bare metal: use `cargo run` at the workspace root to boot it in QEMU");
}

/// Prints plain text on COM1 (see `arch::serial`).
#[cfg(target_os = "none")]
macro_rules! print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        // The plain-text sink never fails.
        let _ = write!($crate::arch::serial::PlainText, $($arg)*);
    }};
}

/// Prints a line of plain text on COM1.
#[cfg(target_os = "none")]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::arch::serial::PlainText, $($arg)*);
    }};
}

#[cfg(target_os = "none")]
pub(crate) use {print, println};

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(all(target_os = "none", feature = "fault-injection"))]
mod fault_injection;
#[cfg(target_os = "none")]
mod fault_report;
#[cfg(target_os = "none")]
mod log;
#[cfg(target_os = "none")]
mod root;
#[cfg(all(target_os = "none", feature = "fault-injection"))]
mod user_devices;
#[cfg(all(target_os = "none", feature = "fault-injection"))]
mod user_pds;
#[cfg(all(target_os = "none", feature = "fault-injection"))]
mod user_temporal;

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fault_report::report_panic_and_stop(info)
}
