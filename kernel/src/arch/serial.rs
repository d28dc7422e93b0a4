//! COM1, the kernel's console: a polled 16550 UART at I/O port 0x3f8.
//!
//! Two paths write to it. Plain text (`println!`) serves early boot, the
//! banner, panics and exception reports: readable without any host tool.
//! The structured log (`crate::log`, defmt) sends binary frames, each
//! introduced by the byte 0xff and ended by 0x00; neither byte ever occurs
//! in plain text, so the host demultiplexes the two (src/console.rs).

use core::fmt;

use x86::io::{inb, outb};

const COM1: u16 = 0x3f8;
/// COM1's eight registers: the kernel's own, never in an `IoPort` range.
pub(crate) const PORTS: (u16, u16) = (COM1, COM1 + 7);
const DATA: u16 = COM1;
const INTERRUPT_ENABLE: u16 = COM1 + 1;
const FIFO_CONTROL: u16 = COM1 + 2;
const LINE_CONTROL: u16 = COM1 + 3;
const MODEM_CONTROL: u16 = COM1 + 4;
const LINE_STATUS: u16 = COM1 + 5;

/// LSR bit 5: the transmit holding register is empty.
const LINE_STATUS_TRANSMIT_EMPTY: u8 = 1 << 5;
/// LSR bit 6: the holding and shift registers are both empty: every byte
/// has left the UART.
const LINE_STATUS_IDLE: u8 = 1 << 6;

/// How long to wait for the transmitter before dropping a byte. A missing
/// UART reads back 0xff (always "empty"), so this bounds only a stuck one.
const TRANSMIT_SPIN_LIMIT: u32 = 1_000_000;

/// The marker byte that starts a defmt frame on the wire.
pub(crate) const DEFMT_FRAME_MARKER: u8 = 0xff;

/// Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit,
/// FIFOs on, interrupts off. `kernel_entry` calls it first of all, so every
/// later message, reports included, finds the UART ready.
pub(crate) fn init() {
    let setup: [(u16, u8); 7] = [
        (INTERRUPT_ENABLE, 0x00),
        (LINE_CONTROL, 0x80),     // divisor latch access
        (DATA, 0x01),             // divisor 1 = 115200 baud (low byte)
        (INTERRUPT_ENABLE, 0x00), // divisor high byte
        (LINE_CONTROL, 0x03),     // 8N1, latch off
        (FIFO_CONTROL, 0xc7),     // enable and clear FIFOs, 14-byte threshold
        (MODEM_CONTROL, 0x03),    // DTR, RTS
    ];
    for (port, value) in setup {
        // SAFETY: 0x3f8..0x3ff are COM1's registers on every PC-compatible
        // machine; the kernel is their only user and runs with interrupts
        // off, so no other code observes the half-programmed UART.
        unsafe { outb(port, value) };
    }
}

/// Waits (boundedly) until the line status has all bits of `mask` set.
fn wait_for_line_status(mask: u8) {
    for _ in 0..TRANSMIT_SPIN_LIMIT {
        // SAFETY: reading COM1's line status register has no side effect
        // beyond the UART's own state machine.
        let status = unsafe { inb(LINE_STATUS) };
        if status & mask == mask {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Waits until every byte written so far has left the UART, so that a
/// machine stopped right after (an emulator's exit port, a reset) loses no
/// output.
pub(crate) fn flush() {
    wait_for_line_status(LINE_STATUS_IDLE);
}

/// Sends one byte, waiting (boundedly) for the transmitter.
pub(crate) fn write_byte(byte: u8) {
    wait_for_line_status(LINE_STATUS_TRANSMIT_EMPTY);
    // SAFETY: writing COM1's data register transmits a byte; nothing else
    // in the system owns COM1.
    unsafe { outb(DATA, byte) };
}

/// Sends raw bytes (used by the defmt logger for its frames).
pub(crate) fn write_bytes(bytes: &[u8]) {
    for &byte in bytes {
        write_byte(byte);
    }
}

/// A `fmt::Write` sink for plain text. It holds no lock, so a fault or panic
/// that happens while text is being printed can still print its report
/// (the kernel is single-threaded with interrupts off: the only overlap is
/// such re-entry, which at worst interleaves two messages).
pub(crate) struct PlainText;

impl fmt::Write for PlainText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            // Keep the two wire bytes that frame defmt out of plain text.
            let byte = match byte {
                0x00 | DEFMT_FRAME_MARKER => b'?',
                other => other,
            };
            write_byte(byte);
        }
        Ok(())
    }
}
