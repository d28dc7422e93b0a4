//! The kernel's structured log: defmt frames on COM1.
//!
//! defmt keeps format strings out of the kernel (they live in the ELF's
//! `.defmt` section) and sends only an index and the arguments, so a log
//! line costs a few bytes on the wire. The host CLI decodes the frames with
//! the kernel ELF (src/console.rs). Each frame goes on the wire as the
//! marker byte 0xff followed by the rzCOBS-encoded frame, which ends in
//! 0x00; plain text never contains either byte.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{cpu, serial};

struct Logger {
    taken: AtomicBool,
    encoder: UnsafeCell<defmt::Encoder>,
}

// SAFETY: `encoder` is touched only between `acquire` and `release`, and
// `taken` makes that section exclusive: `acquire` spins until it owns the
// flag. The kernel runs on one CPU with interrupts off, so the section is
// never re-entered (a fault inside it reports on the plain-text path and
// stops the machine without logging).
unsafe impl Sync for Logger {}

static LOGGER: Logger = Logger { taken: AtomicBool::new(false), encoder: UnsafeCell::new(defmt::Encoder::new()) };

#[defmt::global_logger]
struct SerialLogger;

// SAFETY: `acquire`/`release` bracket every frame and are exclusive (see
// `Logger`); `write` and `flush` run only inside such a bracket.
unsafe impl defmt::Logger for SerialLogger {
    fn acquire() {
        while LOGGER.taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        serial::write_byte(serial::DEFMT_FRAME_MARKER);
        // SAFETY: this CPU owns `taken`, so the encoder is exclusively ours.
        let encoder = unsafe { &mut *LOGGER.encoder.get() };
        encoder.start_frame(serial::write_bytes);
    }

    unsafe fn flush() {
        // The UART is polled: every byte has left by the time `write` returns.
    }

    unsafe fn release() {
        // SAFETY: the caller holds the section opened by `acquire`.
        let encoder = unsafe { &mut *LOGGER.encoder.get() };
        encoder.end_frame(serial::write_bytes);
        LOGGER.taken.store(false, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: the caller holds the section opened by `acquire`.
        let encoder = unsafe { &mut *LOGGER.encoder.get() };
        encoder.write(bytes, serial::write_bytes);
    }
}

/// Ends a defmt frame that a fault or panic interrupted, so that the
/// plain-text report that follows is not taken for frame bytes on the host
/// (the host shows the cut frame as undecodable). Call only on the way to
/// stopping the machine: the interrupted logger is never resumed.
pub(crate) fn close_interrupted_frame() {
    if LOGGER.taken.load(Ordering::Acquire) {
        serial::write_byte(0x00);
        serial::write_byte(b'\n');
        LOGGER.taken.store(false, Ordering::Release);
    }
}

// Timestamps are TSC ticks: instructions under QEMU `-icount shift=0`.
defmt::timestamp!("tsc={=u64}", cpu::read_tsc());

/// defmt's own panics (e.g. `defmt::panic!`) go to the kernel's report.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    core::panic!("defmt panic")
}
