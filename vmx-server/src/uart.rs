//! The guest's COM1: a 16550A UART (National Semiconductor PC16550D
//! compatible) as Linux's 8250 driver sees it, at I/O ports 0x3F8..0x3FF
//! with its interrupt on IRQ 4.
//!
//! [`Uart16550`] is a pure state machine. The VMM hands it the guest's
//! byte accesses by register offset ([`Uart16550::read`],
//! [`Uart16550::write`]); the host console side takes the guest's output
//! with [`Uart16550::drain_output`] and gives it keyboard input with
//! [`Uart16550::push_input`]; after either, the VMM samples
//! [`Uart16550::interrupt_line`] and drives IRQ 4 with it. Every call does
//! a bounded amount of work, and no guest write can make the model panic,
//! loop or allocate.
//!
//! # Registers
//!
//! | offset | DLAB = 0, read | DLAB = 0, write | DLAB = 1 |
//! | --- | --- | --- | --- |
//! | 0 | RBR, receive buffer | THR, transmit holding | DLL, divisor latch low byte |
//! | 1 | IER, interrupt enable | IER | DLM, divisor latch high byte |
//! | 2 | IIR, interrupt identification | FCR, FIFO control | as DLAB = 0 |
//! | 3 | LCR, line control | LCR | as DLAB = 0 |
//! | 4 | MCR, modem control | MCR | as DLAB = 0 |
//! | 5 | LSR, line status | ignored | as DLAB = 0 |
//! | 6 | MSR, modem status | ignored | as DLAB = 0 |
//! | 7 | SCR, scratch | SCR | as DLAB = 0 |
//!
//! DLAB is LCR bit 7. Offsets 8 and up are not the chip's: they read 0xFF
//! (an open bus) and writes to them are ignored, so a VMM that forwards a
//! wider range than eight ports cannot corrupt the model.
//!
//! # Transmission
//!
//! Transmission is instantaneous: a THR write hands the byte (cut to the
//! word length, LCR bits 0-1) straight to the output queue, so LSR THRE
//! and TEMT are always set and the transmit FIFO is always empty. The
//! output queue holds [`OUTPUT_QUEUE_CAPACITY`] bytes for the host
//! console. It is the wire, not the chip: FCR's "clear transmit FIFO"
//! leaves it alone. When it is full (the host has stopped draining it;
//! the host drains after every exit, so only a stalled console or a
//! hostile guest fills it) the newest byte is dropped and counted
//! ([`Uart16550::dropped_output_bytes`]): what is queued stays in order,
//! and the host learns how much it lost.
//!
//! # Reception
//!
//! The receive FIFO holds 16 bytes with FIFOs enabled (FCR bit 0) and one
//! (the 16450's holding register) without. [`Uart16550::push_input`]
//! refuses a byte it has no room for and the host keeps it: host input
//! never overruns. Neither does it arrive in loopback mode, where the
//! chip's serial input is disconnected. The only overrun is in loopback
//! (the guest writing THR faster than it reads RBR, as Linux's FIFO-size
//! probe does): the byte is lost as on the chip (with FIFOs, the byte
//! that did not fit; without, the byte in the holding register is
//! replaced) and LSR OE is set until the next LSR read. The line carries
//! no parity, framing or break errors, so LSR bits 2-4 and 7 read 0.
//! Reading RBR with nothing received returns 0.
//!
//! # Interrupts
//!
//! IIR reports the highest-priority enabled condition, each enabled by
//! its IER bit:
//!
//! | priority | IIR bits 0-3 | condition | cleared by |
//! | --- | --- | --- | --- |
//! | 1 | 0110 | receiver line status: LSR OE | reading LSR |
//! | 2 | 0100 | received data available: the FIFO at or above the trigger level, or any byte with FIFOs off | reading RBR below the trigger |
//! | 2 | 1100 | character timeout: data in the FIFO below the trigger level | reading RBR until empty |
//! | 3 | 0010 | THR empty | reading IIR when it is the source, or writing THR |
//! | 4 | 0000 | modem status: any MSR delta bit | reading MSR |
//!
//! The chip raises the character timeout when no character has come or
//! gone for four character times; here the host's input arrives in
//! bursts and the model has no clock, so the timeout is pending at once
//! whenever data sits below the trigger level. The guest's handler then
//! sees its interrupt as soon as a byte arrives and, reading RBR while
//! LSR DR is set, takes every byte. The THR-empty condition is raised
//! when THR empties (at once after every THR write, since transmission is
//! instantaneous) and when IER's ETBEI goes from 0 to 1, as on the chip:
//! Linux's start-up checks that re-enabling ETBEI re-raises it. IIR bits
//! 6-7 read 0b11 while FIFOs are enabled, which is how Linux tells a
//! 16550A; bits 4-5 read 0 (no 64-byte FIFO, no National SuperIO bank).
//!
//! [`Uart16550::interrupt_line`] is the level of IRQ 4: the chip's INTR
//! output gated by MCR OUT2, which on a PC enables the driver between the
//! chip and the interrupt controller. Linux sets OUT2 to receive
//! interrupts. In loopback mode the chip forces its modem-control output
//! pins inactive, OUT2 among them, so the line is low whatever is
//! pending. The line is a level: the VMM feeds it to the interrupt
//! controller, which for the ISA IRQ 4 is edge-triggered and latches its
//! rising edges.
//!
//! # Modem control and status
//!
//! Outside loopback the modem inputs show a terminal that is always
//! there and ready: CTS, DSR and DCD asserted, RI not. In loopback (MCR
//! bit 4) they reflect MCR's outputs as on the chip: DTR drives DSR, RTS
//! drives CTS, OUT1 drives RI and OUT2 drives DCD. Every change of CTS,
//! DSR or DCD sets its delta bit, and RI falling sets TERI. The divisor
//! latch and the LCR's parity, stop-bit and break settings are kept for
//! the guest to read back but change nothing: the host console has no
//! baud rate.

use crate::byte_queue::ByteQueue;

#[cfg(test)]
mod tests;

/// COM1's base I/O port on a PC.
pub const COM1_BASE_PORT: u16 = 0x3f8;
/// COM1's ISA interrupt line on a PC.
pub const COM1_IRQ: u8 = 4;
/// How many I/O ports the UART decodes from its base.
pub const REGISTER_COUNT: u8 = 8;
/// The receive FIFO's size with FIFOs enabled.
pub const RECEIVE_FIFO_CAPACITY: usize = 16;
/// How many transmitted bytes wait for the host console before the
/// newest are dropped.
pub const OUTPUT_QUEUE_CAPACITY: usize = 256;

/// Offset 0: RBR (read), THR (write), or DLL with DLAB set.
pub const DATA_OFFSET: u8 = 0;
/// Offset 1: IER, or DLM with DLAB set.
pub const INTERRUPT_ENABLE_OFFSET: u8 = 1;
/// Offset 2: IIR (read), FCR (write).
pub const INTERRUPT_IDENTIFICATION_OFFSET: u8 = 2;
/// Offset 3: LCR.
pub const LINE_CONTROL_OFFSET: u8 = 3;
/// Offset 4: MCR.
pub const MODEM_CONTROL_OFFSET: u8 = 4;
/// Offset 5: LSR (writes ignored).
pub const LINE_STATUS_OFFSET: u8 = 5;
/// Offset 6: MSR (writes ignored).
pub const MODEM_STATUS_OFFSET: u8 = 6;
/// Offset 7: SCR, eight bits the chip keeps for software.
pub const SCRATCH_OFFSET: u8 = 7;

/// IER bit 0 (ERBFI): received data available and character timeout.
pub const IER_RECEIVED_DATA: u8 = 0x01;
/// IER bit 1 (ETBEI): THR empty.
pub const IER_TRANSMITTER_EMPTY: u8 = 0x02;
/// IER bit 2 (ELSI): receiver line status.
pub const IER_RECEIVER_LINE_STATUS: u8 = 0x04;
/// IER bit 3 (EDSSI): modem status.
pub const IER_MODEM_STATUS: u8 = 0x08;
/// The IER bits a 16550A implements; bits 4-7 read 0.
const IER_IMPLEMENTED: u8 = 0x0f;

/// IIR bit 0: set when no interrupt is pending.
pub const IIR_NO_INTERRUPT: u8 = 0x01;
/// IIR bits 6-7: both set while FIFOs are enabled.
pub const IIR_FIFOS_ENABLED: u8 = 0xc0;

/// FCR bit 0: enable both FIFOs (the other bits take effect only with it).
pub const FCR_ENABLE_FIFOS: u8 = 0x01;
/// FCR bit 1: clear the receive FIFO.
pub const FCR_CLEAR_RECEIVE: u8 = 0x02;
/// FCR bit 2: clear the transmit FIFO (always empty here).
pub const FCR_CLEAR_TRANSMIT: u8 = 0x04;
/// FCR bits 6-7: the receive trigger level, 1, 4, 8 or 14 bytes.
pub const FCR_TRIGGER_MASK: u8 = 0xc0;
/// The receive trigger levels FCR bits 6-7 select.
pub const RECEIVE_TRIGGER_LEVELS: [usize; 4] = [1, 4, 8, 14];

/// LCR bits 0-1: word length, 5 to 8 bits.
pub const LCR_WORD_LENGTH_MASK: u8 = 0x03;
/// LCR bit 7: the divisor latch access bit (DLAB).
pub const LCR_DIVISOR_LATCH_ACCESS: u8 = 0x80;

/// MCR bit 0: data terminal ready.
pub const MCR_DTR: u8 = 0x01;
/// MCR bit 1: request to send.
pub const MCR_RTS: u8 = 0x02;
/// MCR bit 2: OUT1, a spare output.
pub const MCR_OUT1: u8 = 0x04;
/// MCR bit 3: OUT2, which on a PC gates the interrupt line.
pub const MCR_OUT2: u8 = 0x08;
/// MCR bit 4: loopback (diagnostic) mode.
pub const MCR_LOOPBACK: u8 = 0x10;
/// The MCR bits a 16550A implements; bits 5-7 read 0.
const MCR_IMPLEMENTED: u8 = 0x1f;

/// LSR bit 0: data ready, a byte waits in RBR or the FIFO.
pub const LSR_DATA_READY: u8 = 0x01;
/// LSR bit 1: overrun error, a received byte was lost (cleared by reading
/// LSR).
pub const LSR_OVERRUN_ERROR: u8 = 0x02;
/// LSR bit 5: THR (and the transmit FIFO) empty.
pub const LSR_THR_EMPTY: u8 = 0x20;
/// LSR bit 6: transmitter empty, THR and the shift register both.
pub const LSR_TRANSMITTER_EMPTY: u8 = 0x40;

/// MSR bit 0: CTS changed since MSR was last read.
pub const MSR_DELTA_CTS: u8 = 0x01;
/// MSR bit 1: DSR changed since MSR was last read.
pub const MSR_DELTA_DSR: u8 = 0x02;
/// MSR bit 2: RI went from asserted to not (trailing edge).
pub const MSR_TRAILING_EDGE_RI: u8 = 0x04;
/// MSR bit 3: DCD changed since MSR was last read.
pub const MSR_DELTA_DCD: u8 = 0x08;
/// MSR bit 4: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// MSR bit 5: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR bit 6: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR bit 7: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
/// The delta bits, MSR bits 0-3.
const MSR_DELTAS: u8 = 0x0f;

/// What reads as the modem inputs outside loopback: a terminal that is
/// present and ready.
const CONNECTED_MODEM_INPUTS: u8 = MSR_CTS | MSR_DSR | MSR_DCD;
/// What offsets past the chip's eight registers read.
const OPEN_BUS: u8 = 0xff;
/// The divisor at reset: 12, 9,600 baud from the 1.8432 MHz clock, as a
/// PC's firmware leaves COM1.
const RESET_DIVISOR: u16 = 12;

/// A condition that IIR reports, in priority order (highest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptSource {
    /// An overrun error (LSR OE), with IER ELSI.
    ReceiverLineStatus,
    /// The receive FIFO at or above its trigger level (any byte with
    /// FIFOs off), with IER ERBFI.
    ReceivedDataAvailable,
    /// Data in the receive FIFO below its trigger level, with IER ERBFI.
    CharacterTimeout,
    /// THR empty, with IER ETBEI.
    TransmitterHoldingRegisterEmpty,
    /// An MSR delta bit set, with IER EDSSI.
    ModemStatus,
}

impl InterruptSource {
    /// The source's code in IIR bits 0-3 (bit 0 clear: an interrupt is
    /// pending).
    #[must_use]
    pub const fn identification(self) -> u8 {
        match self {
            InterruptSource::ReceiverLineStatus => 0x06,
            InterruptSource::ReceivedDataAvailable => 0x04,
            InterruptSource::CharacterTimeout => 0x0c,
            InterruptSource::TransmitterHoldingRegisterEmpty => 0x02,
            InterruptSource::ModemStatus => 0x00,
        }
    }
}

/// The 16550A UART; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uart16550 {
    /// DLL (low byte) and DLM (high byte).
    divisor_latch: u16,
    /// IER bits 0-3.
    interrupt_enable: u8,
    /// LCR, all eight bits.
    line_control: u8,
    /// MCR bits 0-4.
    modem_control: u8,
    /// SCR.
    scratch: u8,
    /// FCR bit 0: 16-byte FIFOs (else the 16450's one-byte holding
    /// registers).
    fifos_enabled: bool,
    /// The receive trigger level FCR bits 6-7 chose: 1, 4, 8 or 14.
    receive_trigger_level: usize,
    /// Received bytes (at most 16, and at most 1 with FIFOs off).
    receive: ByteQueue<RECEIVE_FIFO_CAPACITY>,
    /// LSR OE: a received byte was lost since LSR was last read.
    overrun: bool,
    /// The THR-empty interrupt condition, raised when THR empties or
    /// ETBEI is enabled, lowered by a THR write or an IIR read that
    /// reports it.
    transmitter_empty_pending: bool,
    /// MSR bits 0-3, cleared by reading MSR.
    modem_status_deltas: u8,
    /// Transmitted bytes the host console has not taken yet.
    output: ByteQueue<OUTPUT_QUEUE_CAPACITY>,
    /// Transmitted bytes dropped because `output` was full.
    dropped_output_bytes: u64,
}

impl Default for Uart16550 {
    fn default() -> Self {
        Uart16550::new()
    }
}

impl Uart16550 {
    /// A UART after reset: no interrupts enabled, FIFOs off, 8-bit words
    /// not yet chosen (LCR 0: 5-bit words), modem outputs off, the divisor
    /// at 12 (9,600 baud), nothing received or queued.
    #[must_use]
    pub const fn new() -> Uart16550 {
        Uart16550 {
            divisor_latch: RESET_DIVISOR,
            interrupt_enable: 0,
            line_control: 0,
            modem_control: 0,
            scratch: 0,
            fifos_enabled: false,
            receive_trigger_level: RECEIVE_TRIGGER_LEVELS[0],
            receive: ByteQueue::new(),
            overrun: false,
            transmitter_empty_pending: false,
            modem_status_deltas: 0,
            output: ByteQueue::new(),
            dropped_output_bytes: 0,
        }
    }

    /// The guest reads the register at `offset` from the base port; reads
    /// of RBR, IIR, LSR and MSR have the chip's side effects (see the
    /// module documentation). Offsets 8 and up read 0xFF.
    pub fn read(&mut self, offset: u8) -> u8 {
        match offset {
            DATA_OFFSET if self.divisor_latch_selected() => self.divisor_latch.to_le_bytes()[0],
            DATA_OFFSET => self.read_receive_buffer(),
            INTERRUPT_ENABLE_OFFSET if self.divisor_latch_selected() => self.divisor_latch.to_le_bytes()[1],
            INTERRUPT_ENABLE_OFFSET => self.interrupt_enable,
            INTERRUPT_IDENTIFICATION_OFFSET => self.read_interrupt_identification(),
            LINE_CONTROL_OFFSET => self.line_control,
            MODEM_CONTROL_OFFSET => self.modem_control,
            LINE_STATUS_OFFSET => self.read_line_status(),
            MODEM_STATUS_OFFSET => self.read_modem_status(),
            SCRATCH_OFFSET => self.scratch,
            _ => OPEN_BUS,
        }
    }

    /// The guest writes `value` to the register at `offset` from the base
    /// port. Writes to LSR, MSR and offsets 8 and up are ignored.
    pub fn write(&mut self, offset: u8, value: u8) {
        match offset {
            DATA_OFFSET if self.divisor_latch_selected() => {
                self.divisor_latch = u16::from_le_bytes([value, self.divisor_latch.to_le_bytes()[1]]);
            }
            DATA_OFFSET => self.transmit(value),
            INTERRUPT_ENABLE_OFFSET if self.divisor_latch_selected() => {
                self.divisor_latch = u16::from_le_bytes([self.divisor_latch.to_le_bytes()[0], value]);
            }
            INTERRUPT_ENABLE_OFFSET => self.write_interrupt_enable(value),
            INTERRUPT_IDENTIFICATION_OFFSET => self.write_fifo_control(value),
            LINE_CONTROL_OFFSET => self.line_control = value,
            MODEM_CONTROL_OFFSET => self.write_modem_control(value),
            SCRATCH_OFFSET => self.scratch = value,
            // LSR and MSR are read-only here (writing them is a factory
            // test on the chip); past offset 7 is not the chip.
            _ => {}
        }
    }

    /// A byte from the host keyboard for the guest. Gives `false`, and
    /// the host keeps the byte for later, when the receive FIFO (the
    /// holding register with FIFOs off) is full or the UART is in
    /// loopback mode. The byte is cut to the word length (LCR bits 0-1).
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.loopback() || self.receive.len() >= self.receive_capacity() {
            return false;
        }
        self.receive.push(byte & self.word_mask())
    }

    /// Moves the oldest transmitted bytes, as many as fit, into `out`, and
    /// gives how many.
    pub fn drain_output(&mut self, out: &mut [u8]) -> usize {
        let mut taken = 0;
        for slot in out.iter_mut() {
            let Some(byte) = self.output.pop() else { break };
            *slot = byte;
            taken += 1;
        }
        taken
    }

    /// How many transmitted bytes wait for [`Uart16550::drain_output`].
    #[must_use]
    pub const fn pending_output_len(&self) -> usize {
        self.output.len()
    }

    /// How many transmitted bytes were dropped because the output queue
    /// was full (saturating).
    #[must_use]
    pub const fn dropped_output_bytes(&self) -> u64 {
        self.dropped_output_bytes
    }

    /// The level of IRQ 4: an enabled condition is pending, MCR OUT2 is
    /// set, and the UART is not in loopback mode (which forces the OUT2
    /// pin inactive).
    #[must_use]
    pub fn interrupt_line(&self) -> bool {
        let gate_open = self.modem_control & MCR_OUT2 != 0 && !self.loopback();
        gate_open && self.pending_interrupt().is_some()
    }

    /// The highest-priority enabled condition, the one IIR reports.
    #[must_use]
    pub fn pending_interrupt(&self) -> Option<InterruptSource> {
        let enabled = |bit: u8| self.interrupt_enable & bit != 0;
        if enabled(IER_RECEIVER_LINE_STATUS) && self.overrun {
            Some(InterruptSource::ReceiverLineStatus)
        } else if enabled(IER_RECEIVED_DATA) && !self.receive.is_empty() {
            if !self.fifos_enabled || self.receive.len() >= self.receive_trigger_level {
                Some(InterruptSource::ReceivedDataAvailable)
            } else {
                Some(InterruptSource::CharacterTimeout)
            }
        } else if enabled(IER_TRANSMITTER_EMPTY) && self.transmitter_empty_pending {
            Some(InterruptSource::TransmitterHoldingRegisterEmpty)
        } else if enabled(IER_MODEM_STATUS) && self.modem_status_deltas != 0 {
            Some(InterruptSource::ModemStatus)
        } else {
            None
        }
    }

    /// IIR's value, without the side effect of reading it.
    #[must_use]
    pub fn interrupt_identification(&self) -> u8 {
        let fifos = if self.fifos_enabled { IIR_FIFOS_ENABLED } else { 0 };
        fifos | self.pending_interrupt().map_or(IIR_NO_INTERRUPT, InterruptSource::identification)
    }

    /// LSR's value, without the side effect of reading it.
    #[must_use]
    pub const fn line_status(&self) -> u8 {
        let data_ready = if self.receive.is_empty() { 0 } else { LSR_DATA_READY };
        let overrun = if self.overrun { LSR_OVERRUN_ERROR } else { 0 };
        data_ready | overrun | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY
    }

    /// MSR's value, without the side effect of reading it.
    #[must_use]
    pub const fn modem_status(&self) -> u8 {
        self.modem_inputs() | self.modem_status_deltas
    }

    /// LCR's DLAB: offsets 0 and 1 are the divisor latch.
    const fn divisor_latch_selected(&self) -> bool {
        self.line_control & LCR_DIVISOR_LATCH_ACCESS != 0
    }

    const fn loopback(&self) -> bool {
        self.modem_control & MCR_LOOPBACK != 0
    }

    /// The bits of a byte that a word of LCR's length carries: 5 to 8.
    const fn word_mask(&self) -> u8 {
        0xff >> (3 - (self.line_control & LCR_WORD_LENGTH_MASK))
    }

    /// How many bytes the receiver holds: the FIFO, or the 16450's
    /// holding register.
    const fn receive_capacity(&self) -> usize {
        if self.fifos_enabled { RECEIVE_FIFO_CAPACITY } else { 1 }
    }

    /// MSR bits 4-7: the modem inputs, looped back from MCR in loopback.
    const fn modem_inputs(&self) -> u8 {
        if !self.loopback() {
            return CONNECTED_MODEM_INPUTS;
        }
        let control = self.modem_control;
        let mut inputs = 0;
        if control & MCR_DTR != 0 {
            inputs |= MSR_DSR;
        }
        if control & MCR_RTS != 0 {
            inputs |= MSR_CTS;
        }
        if control & MCR_OUT1 != 0 {
            inputs |= MSR_RI;
        }
        if control & MCR_OUT2 != 0 {
            inputs |= MSR_DCD;
        }
        inputs
    }

    /// RBR: the oldest received byte, or 0 with none.
    fn read_receive_buffer(&mut self) -> u8 {
        self.receive.pop().unwrap_or(0)
    }

    /// IIR: reporting the THR-empty condition clears it.
    fn read_interrupt_identification(&mut self) -> u8 {
        let identification = self.interrupt_identification();
        if identification & !IIR_FIFOS_ENABLED == InterruptSource::TransmitterHoldingRegisterEmpty.identification() {
            self.transmitter_empty_pending = false;
        }
        identification
    }

    /// LSR: reading clears OE.
    fn read_line_status(&mut self) -> u8 {
        let status = self.line_status();
        self.overrun = false;
        status
    }

    /// MSR: reading clears the delta bits.
    fn read_modem_status(&mut self) -> u8 {
        let status = self.modem_status();
        self.modem_status_deltas = 0;
        status
    }

    /// THR: the byte leaves at once, to the receiver in loopback and to the
    /// host console otherwise. The write clears the THR-empty condition
    /// and the instant transmission raises it again, so it ends pending.
    fn transmit(&mut self, value: u8) {
        let byte = value & self.word_mask();
        if self.loopback() {
            self.receive_looped_back(byte);
        } else if !self.output.push(byte) {
            self.dropped_output_bytes = self.dropped_output_bytes.saturating_add(1);
        }
        self.transmitter_empty_pending = true;
    }

    /// A byte arrives from the transmitter in loopback. With no room it
    /// is an overrun: with FIFOs the new byte is lost, without them it
    /// replaces the one in the holding register.
    fn receive_looped_back(&mut self, byte: u8) {
        if self.receive.len() < self.receive_capacity() {
            self.receive.push(byte);
            return;
        }
        self.overrun = true;
        if !self.fifos_enabled {
            self.receive.clear();
            self.receive.push(byte);
        }
    }

    /// IER: bits 4-7 are not implemented. ETBEI going from 0 to 1 raises
    /// the THR-empty condition, THR being always empty.
    fn write_interrupt_enable(&mut self, value: u8) {
        let enable = value & IER_IMPLEMENTED;
        if enable & IER_TRANSMITTER_EMPTY != 0 && self.interrupt_enable & IER_TRANSMITTER_EMPTY == 0 {
            self.transmitter_empty_pending = true;
        }
        self.interrupt_enable = enable;
    }

    /// FCR: switching FIFOs on or off empties the receiver; the other bits
    /// take effect only when bit 0 is set. The transmit FIFO is always
    /// empty, so clearing it changes nothing; bit 3 (DMA mode) only
    /// changes the chip's RXRDY and TXRDY pins, which a PC leaves
    /// unconnected.
    fn write_fifo_control(&mut self, value: u8) {
        let enable = value & FCR_ENABLE_FIFOS != 0;
        if enable != self.fifos_enabled {
            self.receive.clear();
            self.fifos_enabled = enable;
        }
        if !enable {
            return;
        }
        if value & FCR_CLEAR_RECEIVE != 0 {
            self.receive.clear();
        }
        self.receive_trigger_level = RECEIVE_TRIGGER_LEVELS[usize::from((value & FCR_TRIGGER_MASK) >> 6)];
    }

    /// MCR: bits 5-7 are not implemented. A change of the modem inputs
    /// (entering or leaving loopback, or an output changing in loopback)
    /// sets MSR's delta bits.
    fn write_modem_control(&mut self, value: u8) {
        let before = self.modem_inputs();
        self.modem_control = value & MCR_IMPLEMENTED;
        let after = self.modem_inputs();
        let changed = before ^ after;
        let mut deltas = 0;
        if changed & MSR_CTS != 0 {
            deltas |= MSR_DELTA_CTS;
        }
        if changed & MSR_DSR != 0 {
            deltas |= MSR_DELTA_DSR;
        }
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            deltas |= MSR_TRAILING_EDGE_RI;
        }
        if changed & MSR_DCD != 0 {
            deltas |= MSR_DELTA_DCD;
        }
        self.modem_status_deltas = (self.modem_status_deltas | deltas) & MSR_DELTAS;
    }
}
