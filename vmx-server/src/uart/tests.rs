//! The UART's behaviours, one test each, Linux's probe and interrupt
//! handling replayed register by register, and a property test over
//! arbitrary access sequences.

extern crate std;

use std::collections::VecDeque;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

const RBR: u8 = DATA_OFFSET;
const THR: u8 = DATA_OFFSET;
const DLL: u8 = DATA_OFFSET;
const IER: u8 = INTERRUPT_ENABLE_OFFSET;
const DLM: u8 = INTERRUPT_ENABLE_OFFSET;
const IIR: u8 = INTERRUPT_IDENTIFICATION_OFFSET;
const FCR: u8 = INTERRUPT_IDENTIFICATION_OFFSET;
const LCR: u8 = LINE_CONTROL_OFFSET;
const MCR: u8 = MODEM_CONTROL_OFFSET;
const LSR: u8 = LINE_STATUS_OFFSET;
const MSR: u8 = MODEM_STATUS_OFFSET;
const SCR: u8 = SCRATCH_OFFSET;

/// LCR for 8-bit words, no parity, one stop bit.
const LCR_8N1: u8 = 0x03;

/// IIR codes as Linux's `serial_reg.h` spells them.
const IIR_RECEIVER_LINE_STATUS: u8 = 0x06;
const IIR_RECEIVED_DATA: u8 = 0x04;
const IIR_CHARACTER_TIMEOUT: u8 = 0x0c;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_MODEM_STATUS: u8 = 0x00;

fn drain_all(uart: &mut Uart16550) -> Vec<u8> {
    let mut buffer = [0_u8; OUTPUT_QUEUE_CAPACITY];
    let taken = uart.drain_output(&mut buffer);
    buffer[..taken].to_vec()
}

/// What Linux's `size_fifo()` (8250_port.c) does to count the receive
/// FIFO: loopback, 256 bytes out, then reads while LSR DR. Gives the
/// count and the bytes read.
fn size_fifo_like_linux(uart: &mut Uart16550) -> (usize, Vec<u8>) {
    let old_lcr = uart.read(LCR);
    uart.write(LCR, 0);
    let old_fcr = uart.read(IIR);
    let old_mcr = uart.read(MCR);
    uart.write(FCR, FCR_ENABLE_FIFOS | FCR_CLEAR_RECEIVE | FCR_CLEAR_TRANSMIT);
    uart.write(MCR, MCR_LOOPBACK);
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS);
    let old_divisor = [uart.read(DLL), uart.read(DLM)];
    uart.write(DLL, 1);
    uart.write(DLM, 0);
    uart.write(LCR, LCR_8N1);
    for byte in 0..=255_u8 {
        uart.write(THR, byte);
    }
    let mut received = Vec::new();
    while uart.read(LSR) & LSR_DATA_READY != 0 && received.len() < 256 {
        received.push(uart.read(RBR));
    }
    uart.write(FCR, old_fcr);
    uart.write(MCR, old_mcr);
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS);
    uart.write(DLL, old_divisor[0]);
    uart.write(DLM, old_divisor[1]);
    uart.write(LCR, old_lcr);
    (received.len(), received)
}

/// Linux's `autoconfig()` and `autoconfig_16550a()` (8250_port.c) as
/// register accesses, with the decisions they take on what they read;
/// gives the port type the driver settles on and the FIFO size it
/// measures.
fn autoconfig_like_linux(uart: &mut Uart16550) -> (&'static str, usize) {
    // The existence test through IER (bits 4-7 masked).
    let saved_ier = uart.read(IER);
    uart.write(IER, 0);
    let cleared = uart.read(IER) & 0x0f;
    uart.write(IER, 0x0f);
    let set = uart.read(IER) & 0x0f;
    uart.write(IER, saved_ier);
    if cleared != 0 || set != 0x0f {
        return ("none: IER test", 0);
    }
    let saved_mcr = uart.read(MCR);
    let saved_lcr = uart.read(LCR);
    // The loopback test: OUT2 and RTS come back as DCD and CTS.
    uart.write(MCR, MCR_LOOPBACK | MCR_OUT2 | MCR_RTS);
    let looped = uart.read(MSR) & 0xf0;
    uart.write(MCR, saved_mcr);
    if looped != 0x90 {
        return ("none: loopback test", 0);
    }
    // EFR (the same offset as FCR) to 0 under LCR 0xBF, then the FIFO
    // test.
    uart.write(LCR, 0xbf);
    uart.write(FCR, 0);
    uart.write(LCR, 0);
    uart.write(FCR, FCR_ENABLE_FIFOS);
    let kind = match uart.read(IIR) >> 6 {
        0 => "8250 or 16450",
        1 => "unknown",
        2 => "16550",
        _ => autoconfig_16550a_like_linux(uart),
    };
    let fifo_size = if kind == "16550A" { size_fifo_like_linux(uart).0 } else { 1 };
    // Back to where it was, FIFOs cleared and off, RBR read, IER off.
    uart.write(LCR, saved_lcr);
    uart.write(MCR, saved_mcr);
    uart.write(FCR, FCR_ENABLE_FIFOS);
    uart.write(FCR, FCR_ENABLE_FIFOS | FCR_CLEAR_RECEIVE | FCR_CLEAR_TRANSMIT);
    uart.write(FCR, 0);
    let _ = uart.read(RBR);
    uart.write(IER, 0);
    (kind, fifo_size)
}

/// The 16550A variant checks: no EFR under either LCR key, no National
/// SuperIO bank, no 64-byte FIFO bit, no XScale UUE bit.
fn autoconfig_16550a_like_linux(uart: &mut Uart16550) -> &'static str {
    uart.write(LCR, 0x80);
    if uart.read(IIR) == 0 {
        return "ST16650 (EFR under LCR 0x80)";
    }
    uart.write(LCR, 0xbf);
    if uart.read(IIR) == 0 {
        return "ST16650V2 (EFR under LCR 0xBF)";
    }
    uart.write(LCR, 0);
    let mcr = uart.read(MCR);
    uart.write(LCR, 0xe0);
    let bank_2 = uart.read(IIR);
    if (bank_2 ^ mcr) & MCR_LOOPBACK == 0 {
        uart.write(LCR, 0);
        uart.write(MCR, mcr ^ MCR_LOOPBACK);
        uart.write(LCR, 0xe0);
        let bank_2 = uart.read(IIR);
        uart.write(LCR, 0);
        uart.write(MCR, mcr);
        if (bank_2 ^ mcr) & MCR_LOOPBACK != 0 {
            return "NS16550 SuperIO";
        }
    }
    uart.write(LCR, 0);
    uart.write(FCR, FCR_ENABLE_FIFOS | 0x20);
    let without_dlab = uart.read(IIR) & 0xe0;
    uart.write(FCR, 0);
    uart.write(LCR, 0x80);
    uart.write(FCR, FCR_ENABLE_FIFOS | 0x20);
    let with_dlab = uart.read(IIR) & 0xe0;
    uart.write(FCR, 0);
    uart.write(LCR, 0);
    if without_dlab == 0xc0 && with_dlab == 0xe0 {
        return "TI16750";
    }
    let saved_ier = uart.read(IER);
    uart.write(IER, saved_ier & !0x40);
    if uart.read(IER) & 0x40 == 0 {
        uart.write(IER, saved_ier | 0x40);
        if uart.read(IER) & 0x40 != 0 {
            return "XScale";
        }
    }
    uart.write(IER, saved_ier);
    "16550A"
}

#[test]
fn a_uart_after_reset_is_quiet_and_ready() {
    let mut uart = Uart16550::new();
    assert_eq!(uart, Uart16550::default());
    assert_eq!(uart.read(IER), 0);
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
    assert_eq!(uart.read(LCR), 0);
    assert_eq!(uart.read(MCR), 0);
    assert_eq!(uart.read(LSR), LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(MSR), MSR_CTS | MSR_DSR | MSR_DCD);
    assert_eq!(uart.read(SCR), 0);
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS);
    assert_eq!([uart.read(DLL), uart.read(DLM)], [12, 0]);
    assert!(!uart.interrupt_line());
    assert_eq!(uart.pending_output_len(), 0);
}

#[test]
fn linuxs_autoconfig_finds_a_16550a_with_a_16_byte_fifo() {
    let mut uart = Uart16550::new();
    assert_eq!(autoconfig_like_linux(&mut uart), ("16550A", RECEIVE_FIFO_CAPACITY));
    // Nothing of the probe leaked out to the host console, and the UART
    // is left quiet.
    assert_eq!(uart.pending_output_len(), 0);
    assert_eq!(uart.read(LSR), LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
}

#[test]
fn linuxs_fifo_size_probe_keeps_the_first_16_bytes_and_overruns() {
    let mut uart = Uart16550::new();
    uart.write(MCR, MCR_LOOPBACK);
    uart.write(FCR, FCR_ENABLE_FIFOS);
    uart.write(LCR, LCR_8N1);
    for byte in 0..=255_u8 {
        uart.write(THR, byte);
    }
    assert_eq!(uart.read(LSR), LSR_DATA_READY | LSR_OVERRUN_ERROR | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    // OE clears on the read.
    assert_eq!(uart.read(LSR) & LSR_OVERRUN_ERROR, 0);
    let mut uart = Uart16550::new();
    let (count, received) = size_fifo_like_linux(&mut uart);
    assert_eq!(count, 16);
    assert_eq!(received, (0..16).collect::<Vec<u8>>());
}

#[test]
fn the_scratch_register_keeps_any_byte() {
    let mut uart = Uart16550::new();
    for value in [0x00, 0x55, 0xaa, 0xff] {
        uart.write(SCR, value);
        assert_eq!(uart.read(SCR), value);
    }
    // DLAB does not move it.
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS);
    assert_eq!(uart.read(SCR), 0xff);
}

#[test]
fn the_line_control_register_keeps_all_eight_bits() {
    let mut uart = Uart16550::new();
    for value in [0x03, 0x1b, 0xbf, 0xe0, 0x7f] {
        uart.write(LCR, value);
        assert_eq!(uart.read(LCR), value);
    }
}

#[test]
fn dlab_switches_offsets_0_and_1_to_the_divisor_latch() {
    let mut uart = Uart16550::new();
    uart.write(IER, IER_RECEIVED_DATA);
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS | LCR_8N1);
    uart.write(DLL, 0x01);
    uart.write(DLM, 0x02);
    assert_eq!([uart.read(DLL), uart.read(DLM)], [0x01, 0x02]);
    // The divisor writes neither transmitted nor changed IER.
    assert_eq!(uart.pending_output_len(), 0);
    uart.write(LCR, LCR_8N1);
    assert_eq!(uart.read(IER), IER_RECEIVED_DATA);
    uart.write(THR, b'x');
    assert_eq!(drain_all(&mut uart), b"x");
    // A received byte is not read through DLL.
    assert!(uart.push_input(b'y'));
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS | LCR_8N1);
    assert_eq!(uart.read(RBR), 0x01);
    assert_eq!(uart.read(LSR) & LSR_DATA_READY, LSR_DATA_READY);
    uart.write(LCR, LCR_8N1);
    assert_eq!(uart.read(RBR), b'y');
    // Back under DLAB, the divisor is as left.
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS);
    assert_eq!([uart.read(DLL), uart.read(DLM)], [0x01, 0x02]);
}

#[test]
fn ier_and_mcr_keep_only_the_bits_a_16550a_has() {
    let mut uart = Uart16550::new();
    uart.write(IER, 0xff);
    assert_eq!(uart.read(IER), 0x0f);
    uart.write(MCR, 0xff);
    assert_eq!(uart.read(MCR), 0x1f);
}

#[test]
fn enabling_etbei_with_thr_empty_raises_thre_until_iir_is_read() {
    let mut uart = Uart16550::new();
    uart.write(MCR, MCR_OUT2);
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    assert!(uart.interrupt_line());
    assert_eq!(uart.read(IIR), IIR_THR_EMPTY);
    // The read that reported it cleared it.
    assert!(!uart.interrupt_line());
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
    // Writing IER again with ETBEI already set is no 0-to-1 change.
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
    // Off and on again raises it again (Linux's start-up THRE test).
    uart.write(IER, 0);
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(IIR), IIR_THR_EMPTY);
}

#[test]
fn linuxs_startup_sees_a_uart_that_reasserts_thre() {
    let mut uart = Uart16550::new();
    // serial8250_do_startup: the THRE test...
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    let first = uart.read(IIR);
    uart.write(IER, 0);
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    let second = uart.read(IIR);
    uart.write(IER, 0);
    // ...takes neither branch that marks the UART buggy: THRE reasserted,
    assert_eq!(first & IIR_NO_INTERRUPT, 0);
    assert_eq!(second & IIR_NO_INTERRUPT, 0);
    // ...and the TXEN test sees the interrupt on enabling ETBEI.
    uart.write(LCR, LCR_8N1);
    uart.write(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    let status = uart.read(LSR);
    let identification = uart.read(IIR);
    uart.write(IER, 0);
    assert_ne!(status & LSR_TRANSMITTER_EMPTY, 0);
    assert_eq!(identification & IIR_NO_INTERRUPT, 0);
}

#[test]
fn a_thr_write_transmits_at_once_and_leaves_thre_pending() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(MCR, MCR_OUT2);
    uart.write(IER, IER_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(IIR), IIR_THR_EMPTY);
    assert!(!uart.interrupt_line());
    uart.write(THR, b'a');
    // THR and the shift register are empty at once, and the THR-empty
    // condition is back for the next byte.
    assert_eq!(uart.read(LSR), LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    assert!(uart.interrupt_line());
    assert_eq!(uart.read(IIR), IIR_THR_EMPTY);
    assert_eq!(drain_all(&mut uart), b"a");
}

#[test]
fn the_receive_trigger_level_separates_data_available_from_timeout() {
    for (trigger_bits, level) in [(0x00, 1), (0x40, 4), (0x80, 8), (0xc0, 14)] {
        let mut uart = Uart16550::new();
        uart.write(LCR, LCR_8N1);
        uart.write(FCR, FCR_ENABLE_FIFOS | trigger_bits);
        uart.write(IER, IER_RECEIVED_DATA);
        assert_eq!(uart.read(IIR), IIR_FIFOS_ENABLED | IIR_NO_INTERRUPT);
        for byte in 1..level {
            assert!(uart.push_input(u8::try_from(byte).unwrap()));
            assert_eq!(uart.read(IIR), IIR_FIFOS_ENABLED | IIR_CHARACTER_TIMEOUT, "level {level}, {byte} bytes");
        }
        assert!(uart.push_input(0xee));
        assert_eq!(uart.read(IIR), IIR_FIFOS_ENABLED | IIR_RECEIVED_DATA, "level {level}");
        // Reading one byte drops below the trigger (a timeout while data
        // remains), reading them all ends it.
        let _ = uart.read(RBR);
        let expected = if level > 1 { IIR_CHARACTER_TIMEOUT } else { IIR_NO_INTERRUPT };
        assert_eq!(uart.read(IIR), IIR_FIFOS_ENABLED | expected, "level {level}");
        while uart.read(LSR) & LSR_DATA_READY != 0 {
            let _ = uart.read(RBR);
        }
        assert_eq!(uart.read(IIR), IIR_FIFOS_ENABLED | IIR_NO_INTERRUPT);
    }
}

#[test]
fn without_fifos_one_byte_is_data_available_and_the_holding_register_is_full() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(IER, IER_RECEIVED_DATA);
    assert!(uart.push_input(b'1'));
    assert_eq!(uart.read(IIR), IIR_RECEIVED_DATA);
    assert!(!uart.push_input(b'2'), "the 16450 holding register takes one byte");
    assert_eq!(uart.read(RBR), b'1');
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
    assert!(uart.push_input(b'2'));
    assert_eq!(uart.read(RBR), b'2');
    // Nothing received: RBR reads 0 and LSR DR is clear.
    assert_eq!(uart.read(RBR), 0);
    assert_eq!(uart.read(LSR) & LSR_DATA_READY, 0);
}

#[test]
fn the_receive_fifo_takes_16_bytes_in_order_and_refuses_the_17th() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(FCR, FCR_ENABLE_FIFOS);
    for byte in 0..16 {
        assert!(uart.push_input(byte));
    }
    assert!(!uart.push_input(16));
    // Refused input is not an overrun: the host keeps the byte.
    assert_eq!(uart.read(LSR), LSR_DATA_READY | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    let received: Vec<u8> = (0..16).map(|_| uart.read(RBR)).collect();
    assert_eq!(received, (0..16).collect::<Vec<u8>>());
    assert_eq!(uart.read(LSR) & LSR_DATA_READY, 0);
}

#[test]
fn fcr_clears_the_receive_fifo_and_switching_fifos_empties_it() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(FCR, FCR_ENABLE_FIFOS | 0xc0);
    for byte in 0..5 {
        assert!(uart.push_input(byte));
    }
    // Bit 0 clear: FIFOs off, which empties the receiver.
    uart.write(FCR, FCR_CLEAR_RECEIVE | 0x40);
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
    assert_eq!(uart.read(LSR) & LSR_DATA_READY, 0);
    // Bit 0 set: FIFOs on (and empty again); bits 1 and 6-7 act.
    assert!(uart.push_input(9));
    uart.write(FCR, FCR_ENABLE_FIFOS);
    assert_eq!(uart.read(LSR) & LSR_DATA_READY, 0);
    for byte in 0..3 {
        assert!(uart.push_input(byte));
    }
    uart.write(FCR, FCR_ENABLE_FIFOS | FCR_CLEAR_RECEIVE);
    assert_eq!(uart.read(LSR) & LSR_DATA_READY, 0);
    // Clearing the transmit FIFO leaves the host's queue alone.
    uart.write(THR, b'k');
    uart.write(FCR, FCR_ENABLE_FIFOS | FCR_CLEAR_TRANSMIT);
    assert_eq!(drain_all(&mut uart), b"k");
}

#[test]
fn fcr_bits_without_bit_0_are_not_programmed() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    assert!(uart.push_input(b'k'));
    // FIFOs off before and after: no switch, and "clear receive" without
    // bit 0 is not programmed.
    uart.write(FCR, FCR_CLEAR_RECEIVE | FCR_CLEAR_TRANSMIT | 0xc0);
    assert_eq!(uart.read(IIR) & IIR_FIFOS_ENABLED, 0);
    assert_eq!(uart.read(RBR), b'k');
}

#[test]
fn drain_output_gives_bytes_in_order_across_partial_drains() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    for byte in b"hello, world" {
        uart.write(THR, *byte);
    }
    assert_eq!(uart.pending_output_len(), 12);
    let mut small = [0_u8; 5];
    assert_eq!(uart.drain_output(&mut small), 5);
    assert_eq!(&small, b"hello");
    assert_eq!(uart.drain_output(&mut []), 0);
    uart.write(THR, b'!');
    assert_eq!(drain_all(&mut uart), b", world!");
    assert_eq!(uart.drain_output(&mut small), 0);
}

#[test]
fn a_full_output_queue_drops_and_counts_the_newest_bytes() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    for index in 0..300_u32 {
        uart.write(THR, index.to_le_bytes()[0]);
    }
    assert_eq!(uart.pending_output_len(), OUTPUT_QUEUE_CAPACITY);
    assert_eq!(uart.dropped_output_bytes(), 44);
    // LSR never shows the queue: transmission stays instantaneous.
    assert_eq!(uart.read(LSR), LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    assert_eq!(drain_all(&mut uart), (0..=255).collect::<Vec<u8>>());
    // Room again: the next byte is queued.
    uart.write(THR, b'z');
    assert_eq!(drain_all(&mut uart), b"z");
    assert_eq!(uart.dropped_output_bytes(), 44);
}

#[test]
fn the_word_length_cuts_transmitted_and_received_bytes() {
    let mut uart = Uart16550::new();
    for (word_length_bits, mask) in [(0, 0x1f), (1, 0x3f), (2, 0x7f), (3, 0xff)] {
        uart.write(LCR, word_length_bits);
        uart.write(THR, 0xff);
        assert_eq!(drain_all(&mut uart), [mask]);
        assert!(uart.push_input(0xff));
        assert_eq!(uart.read(RBR), mask);
    }
}

#[test]
fn loopback_sends_thr_to_the_receiver_and_mcr_to_msr() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(FCR, FCR_ENABLE_FIFOS);
    uart.write(MCR, MCR_LOOPBACK);
    // Entering loopback dropped CTS, DSR and DCD: three deltas.
    assert_eq!(uart.read(MSR), MSR_DELTA_CTS | MSR_DELTA_DSR | MSR_DELTA_DCD);
    assert_eq!(uart.read(MSR), 0);
    for (output, input, delta) in [
        (MCR_DTR, MSR_DSR, MSR_DELTA_DSR),
        (MCR_RTS, MSR_CTS, MSR_DELTA_CTS),
        (MCR_OUT1, MSR_RI, 0),
        (MCR_OUT2, MSR_DCD, MSR_DELTA_DCD),
    ] {
        uart.write(MCR, MCR_LOOPBACK | output);
        assert_eq!(uart.read(MSR), input | delta, "MCR {output:#x}");
        uart.write(MCR, MCR_LOOPBACK);
        // Only RI's falling edge counts (TERI); the others, either edge.
        let falling = if output == MCR_OUT1 { MSR_TRAILING_EDGE_RI } else { delta };
        assert_eq!(uart.read(MSR), falling, "MCR {output:#x} off");
    }
    uart.write(THR, b'L');
    assert_eq!(uart.pending_output_len(), 0);
    assert_eq!(uart.read(LSR), LSR_DATA_READY | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(RBR), b'L');
    // The host's input does not reach a receiver in loopback.
    assert!(!uart.push_input(b'h'));
    // Leaving loopback: the terminal's inputs are back, with deltas.
    uart.write(MCR, 0);
    assert_eq!(uart.read(MSR), MSR_CTS | MSR_DSR | MSR_DCD | MSR_DELTA_CTS | MSR_DELTA_DSR | MSR_DELTA_DCD);
    assert!(uart.push_input(b'h'));
    uart.write(THR, b'o');
    assert_eq!(drain_all(&mut uart), b"o");
}

#[test]
fn an_overrun_without_fifos_replaces_the_held_byte() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(MCR, MCR_LOOPBACK);
    uart.write(THR, b'1');
    uart.write(THR, b'2');
    assert_eq!(uart.read(LSR) & LSR_OVERRUN_ERROR, LSR_OVERRUN_ERROR);
    assert_eq!(uart.read(RBR), b'2');
    assert_eq!(uart.read(LSR) & (LSR_OVERRUN_ERROR | LSR_DATA_READY), 0);
}

#[test]
fn out2_gates_the_interrupt_line() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(IER, IER_RECEIVED_DATA);
    assert!(uart.push_input(b'k'));
    assert_eq!(uart.pending_interrupt(), Some(InterruptSource::ReceivedDataAvailable));
    assert!(!uart.interrupt_line());
    uart.write(MCR, MCR_DTR | MCR_RTS | MCR_OUT1);
    assert!(!uart.interrupt_line());
    uart.write(MCR, MCR_OUT2);
    assert!(uart.interrupt_line());
    // Loopback forces the OUT2 pin inactive.
    uart.write(MCR, MCR_OUT2 | MCR_LOOPBACK);
    assert!(uart.pending_interrupt().is_some());
    assert!(!uart.interrupt_line());
    uart.write(MCR, MCR_OUT2);
    let _ = uart.read(RBR);
    assert!(!uart.interrupt_line());
}

#[test]
fn iir_reports_the_highest_priority_condition_and_each_clears_its_way() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(IER, IER_RECEIVED_DATA | IER_TRANSMITTER_EMPTY | IER_RECEIVER_LINE_STATUS | IER_MODEM_STATUS);
    // Entering loopback sets modem deltas; ETBEI's enabling set THRE.
    uart.write(MCR, MCR_LOOPBACK);
    assert_eq!(uart.read(IIR), IIR_THR_EMPTY);
    assert_eq!(uart.read(IIR), IIR_MODEM_STATUS);
    // Two looped-back bytes without FIFOs: data and an overrun.
    uart.write(THR, b'a');
    uart.write(THR, b'b');
    assert_eq!(uart.read(IIR), IIR_RECEIVER_LINE_STATUS);
    assert_eq!(uart.read(IIR), IIR_RECEIVER_LINE_STATUS, "only LSR clears it");
    assert_eq!(uart.read(LSR), LSR_DATA_READY | LSR_OVERRUN_ERROR | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    assert_eq!(uart.read(IIR), IIR_RECEIVED_DATA);
    assert_eq!(uart.read(RBR), b'b');
    assert_eq!(uart.read(IIR), IIR_THR_EMPTY);
    assert_eq!(uart.read(IIR), IIR_MODEM_STATUS);
    assert_eq!(uart.read(IIR), IIR_MODEM_STATUS, "only MSR clears it");
    let _ = uart.read(MSR);
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
}

#[test]
fn a_disabled_condition_is_not_reported() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(MCR, MCR_OUT2);
    assert!(uart.push_input(b'q'));
    uart.write(MCR, MCR_OUT2 | MCR_LOOPBACK);
    uart.write(MCR, MCR_OUT2);
    // Data, a THR write and modem deltas are all there; IER is 0.
    uart.write(THR, b'w');
    assert_eq!(uart.read(IIR), IIR_NO_INTERRUPT);
    assert!(!uart.interrupt_line());
    // Each enabled alone reports alone.
    uart.write(IER, IER_MODEM_STATUS);
    assert_eq!(uart.read(IIR), IIR_MODEM_STATUS);
    uart.write(IER, IER_RECEIVED_DATA);
    assert_eq!(uart.read(IIR), IIR_RECEIVED_DATA);
}

#[test]
fn lsr_and_msr_writes_and_offsets_past_7_change_nothing() {
    let mut uart = Uart16550::new();
    uart.write(LCR, LCR_8N1);
    uart.write(MCR, MCR_OUT2 | MCR_DTR);
    uart.write(IER, IER_RECEIVED_DATA);
    assert!(uart.push_input(b'r'));
    let before = uart.clone();
    uart.write(LSR, 0xff);
    uart.write(MSR, 0xff);
    for offset in REGISTER_COUNT..=u8::MAX {
        uart.write(offset, 0xa5);
        assert_eq!(uart.read(offset), 0xff, "offset {offset}");
    }
    assert_eq!(uart, before);
}

/// A driver in the shape of Linux's `serial8250_handle_irq()`: while IIR
/// shows an interrupt, take every byte while LSR DR, then, with ETBEI on
/// and THRE, write up to 16 bytes and turn ETBEI off when the buffer is
/// empty.
struct LinuxLikeDriver {
    received: Vec<u8>,
    to_send: VecDeque<u8>,
    interrupt_enable: u8,
}

impl LinuxLikeDriver {
    fn handle_interrupt(&mut self, uart: &mut Uart16550) {
        // serial8250_interrupt's pass limit.
        for _ in 0..512 {
            if uart.read(IIR) & IIR_NO_INTERRUPT != 0 {
                return;
            }
            let mut status = uart.read(LSR);
            while status & LSR_DATA_READY != 0 {
                self.received.push(uart.read(RBR));
                status = uart.read(LSR);
            }
            let _ = uart.read(MSR);
            if status & LSR_THR_EMPTY != 0 && self.interrupt_enable & IER_TRANSMITTER_EMPTY != 0 {
                for _ in 0..16 {
                    let Some(byte) = self.to_send.pop_front() else { break };
                    uart.write(THR, byte);
                }
                if self.to_send.is_empty() {
                    self.interrupt_enable &= !IER_TRANSMITTER_EMPTY;
                    uart.write(IER, self.interrupt_enable);
                }
            }
        }
        panic!("the UART kept interrupting");
    }

    fn start_transmit(&mut self, uart: &mut Uart16550, bytes: &[u8]) {
        self.to_send.extend(bytes);
        if self.interrupt_enable & IER_TRANSMITTER_EMPTY == 0 {
            self.interrupt_enable |= IER_TRANSMITTER_EMPTY;
            uart.write(IER, self.interrupt_enable);
        }
    }
}

#[test]
fn linuxs_interrupt_handler_takes_every_byte_both_ways() {
    let mut uart = Uart16550::new();
    // Start-up and set_termios for a 16550A at 115200 8N1: trigger 8.
    uart.write(LCR, LCR_DIVISOR_LATCH_ACCESS | LCR_8N1);
    uart.write(DLL, 1);
    uart.write(DLM, 0);
    uart.write(LCR, LCR_8N1);
    uart.write(FCR, FCR_ENABLE_FIFOS | FCR_CLEAR_RECEIVE | FCR_CLEAR_TRANSMIT | 0x80);
    uart.write(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    let mut driver = LinuxLikeDriver {
        received: Vec::new(),
        to_send: VecDeque::new(),
        interrupt_enable: IER_RECEIVER_LINE_STATUS | IER_RECEIVED_DATA,
    };
    uart.write(IER, driver.interrupt_enable);
    let typed: Vec<u8> = (0..100_u8).map(|index| b'a' + index % 26).collect();
    let printed: Vec<u8> = (0..70_u8).map(|index| b'0' + index % 10).collect();
    driver.start_transmit(&mut uart, &printed);
    let mut output = Vec::new();
    let mut next_typed = 0;
    // The host pushes what the FIFO takes, the VMM injects IRQ 4 when
    // the line is high, the console drains.
    for _ in 0..100 {
        while next_typed < typed.len() && uart.push_input(typed[next_typed]) {
            next_typed += 1;
        }
        if uart.interrupt_line() {
            driver.handle_interrupt(&mut uart);
        }
        output.extend(drain_all(&mut uart));
        assert!(!uart.interrupt_line(), "the handler left an interrupt pending");
    }
    assert_eq!(driver.received, typed);
    assert_eq!(output, printed);
}

/// Whether an enabled condition is pending, from the state itself.
fn enabled_condition_pending(uart: &Uart16550) -> bool {
    let enable = uart.interrupt_enable;
    (enable & IER_RECEIVER_LINE_STATUS != 0 && uart.overrun)
        || (enable & IER_RECEIVED_DATA != 0 && !uart.receive.is_empty())
        || (enable & IER_TRANSMITTER_EMPTY != 0 && uart.transmitter_empty_pending)
        || (enable & IER_MODEM_STATUS != 0 && uart.modem_status_deltas != 0)
}

#[derive(Clone, Debug)]
enum Operation {
    Read(u8),
    Write(u8, u8),
    Push(u8),
    Drain(usize),
}

/// Offsets the fuzzer aims at: the eight registers, past them, the top.
fn offset() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0_u8..8, 1 => 8_u8..16, 1 => Just(u8::MAX)]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        offset().prop_map(Operation::Read),
        (offset(), any::<u8>()).prop_map(|(offset, value)| Operation::Write(offset, value)),
        any::<u8>().prop_map(Operation::Push),
        (0_usize..40).prop_map(Operation::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any sequence of guest accesses, host input and drains: no panic;
    /// the line low whenever OUT2 is clear; IIR bit 0 clear exactly when
    /// an enabled condition is pending; the queues within their bounds;
    /// and the host console gets exactly the bytes written to THR
    /// outside loopback and DLAB, in order, less the ones counted as
    /// dropped when the queue was full.
    #[test]
    fn arbitrary_operations_keep_the_uart_consistent(operations in proptest::collection::vec(operation(), 0..300)) {
        let mut uart = Uart16550::new();
        let mut expected_output = VecDeque::new();
        let mut expected_dropped = 0_u64;
        for operation in operations {
            match operation {
                Operation::Read(offset) => { let _ = uart.read(offset); }
                Operation::Write(offset, value) => {
                    let transmits = offset == THR
                        && uart.line_control & LCR_DIVISOR_LATCH_ACCESS == 0
                        && uart.modem_control & MCR_LOOPBACK == 0;
                    if transmits {
                        let word_length_bits = u32::from(uart.line_control & LCR_WORD_LENGTH_MASK) + 5;
                        let byte = u8::try_from(u32::from(value) & ((1 << word_length_bits) - 1)).unwrap();
                        if expected_output.len() < OUTPUT_QUEUE_CAPACITY {
                            expected_output.push_back(byte);
                        } else {
                            expected_dropped += 1;
                        }
                    }
                    uart.write(offset, value);
                }
                Operation::Push(byte) => {
                    let receive_capacity = if uart.fifos_enabled { RECEIVE_FIFO_CAPACITY } else { 1 };
                    let room = uart.modem_control & MCR_LOOPBACK == 0 && uart.receive.len() < receive_capacity;
                    prop_assert_eq!(uart.push_input(byte), room);
                }
                Operation::Drain(len) => {
                    let mut buffer = [0_u8; 40];
                    let taken = uart.drain_output(&mut buffer[..len]);
                    let expected: Vec<u8> = (0..taken).filter_map(|_| expected_output.pop_front()).collect();
                    prop_assert_eq!(&buffer[..taken], &expected[..]);
                    prop_assert!(taken == len || expected_output.is_empty());
                }
            }
            if uart.modem_control & MCR_OUT2 == 0 {
                prop_assert!(!uart.interrupt_line());
            }
            prop_assert_eq!(uart.interrupt_identification() & IIR_NO_INTERRUPT == 0, enabled_condition_pending(&uart));
            prop_assert_eq!(uart.interrupt_identification() & IIR_FIFOS_ENABLED != 0, uart.fifos_enabled);
            prop_assert!(uart.pending_output_len() <= OUTPUT_QUEUE_CAPACITY);
            prop_assert_eq!(uart.pending_output_len(), expected_output.len());
            prop_assert_eq!(uart.dropped_output_bytes(), expected_dropped);
            let receive_capacity = if uart.fifos_enabled { RECEIVE_FIFO_CAPACITY } else { 1 };
            prop_assert!(uart.receive.len() <= receive_capacity);
            prop_assert!(RECEIVE_TRIGGER_LEVELS.contains(&uart.receive_trigger_level));
            prop_assert_eq!(uart.line_status() & (LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY), LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
            prop_assert_eq!(uart.interrupt_enable & !0x0f, 0);
            prop_assert_eq!(uart.modem_control & !0x1f, 0);
            prop_assert_eq!(uart.modem_status_deltas & !0x0f, 0);
        }
    }
}
