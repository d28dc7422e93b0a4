//! How a run of the kernel ends.
//!
//! On a server the kernel only halts. Under an emulator (kernel command
//! line `exit=emulator`, which the CLI's boot entries set) it also tells
//! the emulator to stop, so that tests read pass or fail from QEMU's exit
//! status or Bochs's final serial line instead of a person watching:
//!
//! * QEMU's `isa-debug-exit` device at port 0xf4: writing `code` makes QEMU
//!   exit with status `(code << 1) | 1`.
//! * Bochs's shutdown port 0x8900: writing the string `Shutdown` stops it.
//!
//! Either way the last serial line is `bulkhead: exit <status>`.

use core::sync::atomic::{AtomicBool, Ordering};

use x86::io::outb;

/// QEMU's isa-debug-exit port (as configured by the CLI).
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs's shutdown port.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;
/// The exit ports: the kernel's own, never in an `IoPort` range.
pub(crate) const PORTS: [(u16, u16); 2] =
    [(QEMU_DEBUG_EXIT_PORT, QEMU_DEBUG_EXIT_PORT), (BOCHS_SHUTDOWN_PORT, BOCHS_SHUTDOWN_PORT)];

static EXIT_TO_EMULATOR: AtomicBool = AtomicBool::new(false);

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Booted and finished its work. QEMU exits with status 33.
    Success = 0x10,
    /// A panic or an exception. QEMU exits with status 35.
    Failure = 0x11,
}

impl ExitStatus {
    fn name(self) -> &'static str {
        match self {
            ExitStatus::Success => "success",
            ExitStatus::Failure => "failure",
        }
    }
}

/// Lets `stop` signal the emulator (from the `exit=emulator` option).
pub(crate) fn enable_emulator_exit() {
    EXIT_TO_EMULATOR.store(true, Ordering::Release);
}

/// Prints the final line, signals the emulator if allowed, and halts.
pub(crate) fn stop(status: ExitStatus) -> ! {
    crate::println!("bulkhead: exit {}", status.name());
    super::serial::flush();
    if EXIT_TO_EMULATOR.load(Ordering::Acquire) {
        // SAFETY: the command line said the machine is an emulator whose
        // debug-exit device listens at this port; on QEMU the write ends
        // the process, elsewhere the port is unclaimed and ignores it.
        unsafe { outb(QEMU_DEBUG_EXIT_PORT, status as u8) };
        for &byte in b"Shutdown" {
            // SAFETY: as above, for Bochs's shutdown port.
            unsafe { outb(BOCHS_SHUTDOWN_PORT, byte) };
        }
    }
    halt_forever()
}

/// Halts the CPU for good. NMIs can still wake `hlt`, hence the loop.
pub(crate) fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting touches no memory; the
        // kernel has nothing left to run.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
