//! An I/O APIC after the 82093AA datasheet: 24 interrupt inputs, each
//! routed by a redirection entry to local APICs as an
//! [`InterruptMessage`].
//!
//! # How the VMM drives it
//!
//! - Devices' interrupt lines go to [`IoApic::set_line`] whenever they
//!   change (or are re-asserted): `true` is the electrical high level,
//!   and an entry's polarity decides whether high is asserted.
//! - After each line change, register write or EOI, the VMM drains
//!   [`IoApic::take_message`] and hands each message to the local APICs
//!   its destination names.
//! - A local APIC's EOI of a level-triggered vector
//!   ([`super::lapic::LocalApic::take_eoi`]) goes to
//!   [`IoApic::end_of_interrupt`].
//!
//! # Choices where the datasheet leaves room
//!
//! - Version 0x11 (the 82093AA's, with no EOI register): the local APICs
//!   broadcast every level-triggered EOI instead. Switching an entry to
//!   edge-triggered clears its remote IRR, which is how Linux ends a
//!   level interrupt by hand on I/O APICs of this version.
//! - Only 32-bit accesses at IOREGSEL (0x00) and IOWIN (0x10) act; any
//!   other access reads 0 and writes nothing. IOREGSEL keeps its low
//!   byte; a register index with no register reads 0 and ignores writes.
//! - The destination is the full 8 bits 56..63 (xAPIC systems), not the
//!   82093AA's 4 physical bits.
//! - Delivery is immediate, so delivery status reads 0. Entries in NMI,
//!   SMI, INIT and ExtINT mode are edge-triggered whatever their trigger
//!   bit says (the datasheet's rule for those modes); an entry in the
//!   reserved delivery mode 3 delivers nothing.
//! - Messages wait in a queue of [`MESSAGE_QUEUE_CAPACITY`]; if the VMM
//!   lets it fill, further messages are dropped and counted, and a
//!   level-triggered entry whose message was dropped keeps its remote IRR
//!   clear, so that it is delivered again at the next line change, EOI or
//!   write to it while still asserted.

use core::ops::ControlFlow;

use super::{DeliveryMode, Destination, InterruptMessage, Trigger};
use crate::access_size::AccessSize;
use crate::mmio::MmioDevice;
use crate::stop::Stop;

/// The I/O APIC's guest-physical base address.
pub const IO_APIC_BASE: u64 = 0xfec0_0000;
/// The size of the region the VMM registers for it: one page (the
/// registers are its first 0x20 bytes).
pub const IO_APIC_BYTES: u64 = 4096;
/// How many interrupt inputs (redirection entries) it has.
pub const IO_APIC_LINES: u8 = 24;
/// The version register: version 0x11, max redirection entry 23 in bits
/// 16..23.
pub const IO_APIC_VERSION: u32 = 0x0017_0011;
/// How many messages wait for the VMM before further ones are dropped.
pub const MESSAGE_QUEUE_CAPACITY: usize = 32;

/// IOREGSEL's offset: the index of the register IOWIN shows.
const REGISTER_SELECT: u64 = 0x00;
/// IOWIN's offset: the selected register.
const REGISTER_WINDOW: u64 = 0x10;

/// The ID register's index.
const ID_REGISTER: u8 = 0x00;
/// The version register's index.
const VERSION_REGISTER: u8 = 0x01;
/// The arbitration register's index.
const ARBITRATION_REGISTER: u8 = 0x02;
/// The first redirection entry's low dword's index; entry `n` is at
/// `0x10 + 2n` (low) and `0x11 + 2n` (high).
const FIRST_REDIRECTION_REGISTER: u8 = 0x10;

/// Entry bits 0..7: the vector.
const ENTRY_VECTOR: u64 = 0xff;
/// Entry bits 8..10: the delivery mode.
const ENTRY_DELIVERY_MODE: u64 = 0b111 << 8;
/// Entry bit 11: logical destination mode.
const ENTRY_LOGICAL: u64 = 1 << 11;
/// Entry bit 13: the input is active low.
const ENTRY_ACTIVE_LOW: u64 = 1 << 13;
/// Entry bit 14: remote IRR, a level-triggered interrupt accepted and
/// not yet ended (read-only).
pub const ENTRY_REMOTE_IRR: u64 = 1 << 14;
/// Entry bit 15: level-triggered.
const ENTRY_LEVEL_TRIGGERED: u64 = 1 << 15;
/// Entry bit 16: masked.
pub const ENTRY_MASKED: u64 = 1 << 16;
/// Entry bits 56..63: the destination.
const ENTRY_DESTINATION: u64 = 0xff << 56;
/// The bits a guest may write (delivery status and remote IRR are
/// read-only; the rest is reserved).
const ENTRY_WRITABLE: u64 = ENTRY_VECTOR
    | ENTRY_DELIVERY_MODE
    | ENTRY_LOGICAL
    | ENTRY_ACTIVE_LOW
    | ENTRY_LEVEL_TRIGGERED
    | ENTRY_MASKED
    | ENTRY_DESTINATION;

/// The low 32 bits of `value`.
const fn low_dword(value: u64) -> u32 {
    let bytes = value.to_le_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The high 32 bits of `value`.
const fn high_dword(value: u64) -> u32 {
    let bytes = value.to_le_bytes();
    u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
}

/// A redirection entry's fields, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RedirectionEntry(u64);

impl RedirectionEntry {
    const fn masked(self) -> bool {
        self.0 & ENTRY_MASKED != 0
    }

    const fn remote_irr(self) -> bool {
        self.0 & ENTRY_REMOTE_IRR != 0
    }

    const fn active_low(self) -> bool {
        self.0 & ENTRY_ACTIVE_LOW != 0
    }

    const fn vector(self) -> u8 {
        self.0.to_le_bytes()[0]
    }

    const fn delivery(self) -> Option<DeliveryMode> {
        DeliveryMode::from_bits(self.0.to_le_bytes()[1])
    }

    /// Level-triggered in effect: the trigger bit counts only for fixed
    /// and lowest-priority delivery.
    fn level_triggered(self) -> bool {
        self.0 & ENTRY_LEVEL_TRIGGERED != 0
            && matches!(self.delivery(), Some(DeliveryMode::Fixed | DeliveryMode::LowestPriority))
    }

    /// The message it sends, if its delivery mode is not reserved.
    fn message(self) -> Option<InterruptMessage> {
        let target = self.0.to_le_bytes()[7];
        let destination =
            if self.0 & ENTRY_LOGICAL != 0 { Destination::Logical(target) } else { Destination::Physical(target) };
        let trigger = if self.level_triggered() { Trigger::Level } else { Trigger::Edge };
        Some(InterruptMessage { vector: self.vector(), delivery: self.delivery()?, destination, trigger })
    }
}

/// An I/O APIC with 24 inputs. See the module's documentation for how the
/// VMM drives it.
#[derive(Clone, Debug)]
pub struct IoApic {
    /// The ID register's bits 24..27.
    id: u8,
    register_select: u8,
    entries: [RedirectionEntry; IO_APIC_LINES as usize],
    /// Each input's electrical level, bit `n` for line `n`.
    line_levels: u32,
    messages: heapless::Deque<InterruptMessage, MESSAGE_QUEUE_CAPACITY>,
    dropped_messages: u64,
}

impl IoApic {
    /// The I/O APIC with ID `id` (its low 4 bits, as the MADT states it)
    /// after reset: every entry masked and zero otherwise, every line low.
    #[must_use]
    pub fn new(id: u8) -> Self {
        IoApic {
            id: id & 0xf,
            register_select: 0,
            entries: [RedirectionEntry(ENTRY_MASKED); IO_APIC_LINES as usize],
            line_levels: 0,
            messages: heapless::Deque::new(),
            dropped_messages: 0,
        }
    }

    /// Its ID.
    #[must_use]
    pub const fn id(&self) -> u8 {
        self.id
    }

    /// Redirection entry `line` as the guest reads it, if the line exists.
    #[must_use]
    pub fn redirection_entry(&self, line: u8) -> Option<u64> {
        self.entries.get(usize::from(line)).map(|entry| entry.0)
    }

    /// The electrical level of input `line` (false for a line that does
    /// not exist).
    #[must_use]
    pub fn line_level(&self, line: u8) -> bool {
        line < IO_APIC_LINES && self.line_levels & (1 << line) != 0
    }

    /// Whether input `line` is asserted under its entry's polarity.
    fn asserted(&self, line: u8) -> bool {
        let active_low = self.entries.get(usize::from(line)).is_some_and(|entry| entry.active_low());
        self.line_level(line) != active_low
    }

    /// Sets input `line`'s electrical level (`true`: high). An edge-
    /// triggered entry sends its message when the input becomes asserted;
    /// a level-triggered one whenever it is asserted with remote IRR
    /// clear. Masked entries send nothing (an edge is lost; a level is
    /// sent on unmasking if still asserted). Lines 24 and up are ignored.
    pub fn set_line(&mut self, line: u8, level: bool) {
        let Some(entry) = self.entries.get(usize::from(line)).copied() else {
            return;
        };
        let was_asserted = self.asserted(line);
        if level {
            self.line_levels |= 1 << line;
        } else {
            self.line_levels &= !(1 << line);
        }
        if entry.level_triggered() {
            self.deliver_if_level_asserted(line);
        } else if !was_asserted && self.asserted(line) && !entry.masked() {
            self.send(entry);
        }
    }

    /// An EOI of `vector` from a local APIC: clears remote IRR in every
    /// level-triggered entry with that vector, and sends again those
    /// whose input is still asserted.
    pub fn end_of_interrupt(&mut self, vector: u8) {
        for line in 0..IO_APIC_LINES {
            let Some(entry) = self.entries.get_mut(usize::from(line)) else {
                continue;
            };
            if entry.remote_irr() && entry.vector() == vector {
                entry.0 &= !ENTRY_REMOTE_IRR;
                self.deliver_if_level_asserted(line);
            }
        }
    }

    /// The next message for the local APICs, oldest first.
    pub fn take_message(&mut self) -> Option<InterruptMessage> {
        self.messages.pop_front()
    }

    /// How many messages were dropped because the queue was full.
    #[must_use]
    pub const fn dropped_messages(&self) -> u64 {
        self.dropped_messages
    }

    /// Sends a level-triggered entry's message if its input is asserted,
    /// it is unmasked and its remote IRR is clear, and sets remote IRR.
    fn deliver_if_level_asserted(&mut self, line: u8) {
        let asserted = self.asserted(line);
        let Some(entry) = self.entries.get(usize::from(line)).copied() else {
            return;
        };
        if !entry.level_triggered() || !asserted || entry.masked() || entry.remote_irr() {
            return;
        }
        if self.send(entry)
            && let Some(entry) = self.entries.get_mut(usize::from(line))
        {
            entry.0 |= ENTRY_REMOTE_IRR;
        }
    }

    /// Queues `entry`'s message; returns whether it was queued.
    fn send(&mut self, entry: RedirectionEntry) -> bool {
        let Some(message) = entry.message() else {
            return false;
        };
        if self.messages.push_back(message).is_err() {
            self.dropped_messages = self.dropped_messages.saturating_add(1);
            return false;
        }
        true
    }

    /// The register with index `index` (what IOWIN shows when IOREGSEL
    /// holds it); 0 for an index with no register.
    #[must_use]
    pub fn read_register(&self, index: u8) -> u32 {
        match index {
            ID_REGISTER => u32::from(self.id) << 24,
            VERSION_REGISTER => IO_APIC_VERSION,
            // The arbitration ID is loaded from the ID.
            ARBITRATION_REGISTER => u32::from(self.id) << 24,
            _ => match Self::entry_of(index) {
                Some((line, high)) => {
                    let entry = self.redirection_entry(line).unwrap_or(0);
                    if high { high_dword(entry) } else { low_dword(entry) }
                }
                None => 0,
            },
        }
    }

    /// A write of `value` to the register with index `index`, masked to
    /// its writable bits; ignored for read-only registers and indices
    /// with no register.
    pub fn write_register(&mut self, index: u8, value: u32) {
        if index == ID_REGISTER {
            self.id = value.to_le_bytes()[3] & 0xf;
            return;
        }
        let Some((line, high)) = Self::entry_of(index) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(usize::from(line)) else {
            return;
        };
        let value = u64::from(value);
        let written = if high { (entry.0 & 0xffff_ffff) | (value << 32) } else { (entry.0 & !0xffff_ffff) | value };
        let mut updated = RedirectionEntry((written & ENTRY_WRITABLE) | (entry.0 & ENTRY_REMOTE_IRR));
        if !updated.level_triggered() {
            // Remote IRR means nothing for edge-triggered entries, and
            // switching to edge is how software clears a stuck one.
            updated.0 &= !ENTRY_REMOTE_IRR;
        }
        *entry = updated;
        // Unmasking (or reprogramming) an asserted level input sends it.
        self.deliver_if_level_asserted(line);
    }

    /// The line and dword (high or not) register `index` holds, if it is
    /// a redirection entry's.
    fn entry_of(index: u8) -> Option<(u8, bool)> {
        let offset = index.checked_sub(FIRST_REDIRECTION_REGISTER)?;
        let line = offset / 2;
        (line < IO_APIC_LINES).then_some((line, offset % 2 == 1))
    }
}

impl MmioDevice for IoApic {
    /// IOREGSEL or IOWIN with a 32-bit read; anything else reads 0.
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        match (offset, size) {
            (REGISTER_SELECT, AccessSize::Dword) => u64::from(self.register_select),
            (REGISTER_WINDOW, AccessSize::Dword) => u64::from(self.read_register(self.register_select)),
            _ => 0,
        }
    }

    /// IOREGSEL or IOWIN with a 32-bit write; anything else is ignored.
    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop> {
        match (offset, size) {
            (REGISTER_SELECT, AccessSize::Dword) => self.register_select = value.to_le_bytes()[0],
            (REGISTER_WINDOW, AccessSize::Dword) => self.write_register(self.register_select, low_dword(value)),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    /// Writes register `index` through IOREGSEL and IOWIN.
    fn write(ioapic: &mut IoApic, index: u8, value: u32) {
        assert_eq!(ioapic.write(0x00, AccessSize::Dword, u64::from(index)), ControlFlow::Continue(()));
        assert_eq!(ioapic.write(0x10, AccessSize::Dword, u64::from(value)), ControlFlow::Continue(()));
    }

    /// Reads register `index` through IOREGSEL and IOWIN.
    fn read(ioapic: &mut IoApic, index: u8) -> u32 {
        assert_eq!(ioapic.write(0x00, AccessSize::Dword, u64::from(index)), ControlFlow::Continue(()));
        u32::try_from(ioapic.read(0x10, AccessSize::Dword)).unwrap()
    }

    /// Programs entry `line` as Linux does: high dword first, then low.
    fn program(ioapic: &mut IoApic, line: u8, low: u32, destination: u8) {
        write(ioapic, 0x11 + 2 * line, u32::from(destination) << 24);
        write(ioapic, 0x10 + 2 * line, low);
    }

    fn messages(ioapic: &mut IoApic) -> Vec<InterruptMessage> {
        core::iter::from_fn(|| ioapic.take_message()).collect()
    }

    fn fixed(vector: u8, destination: u8, trigger: Trigger) -> InterruptMessage {
        InterruptMessage {
            vector,
            delivery: DeliveryMode::Fixed,
            destination: Destination::Physical(destination),
            trigger,
        }
    }

    const LEVEL: u32 = 1 << 15;
    const ACTIVE_LOW: u32 = 1 << 13;
    const MASKED: u32 = 1 << 16;
    const REMOTE_IRR: u32 = 1 << 14;

    #[test]
    fn it_resets_with_every_entry_masked() {
        let mut ioapic = IoApic::new(0x12);
        assert_eq!(ioapic.id(), 2);
        assert_eq!(read(&mut ioapic, 0x00), 2 << 24);
        assert_eq!(read(&mut ioapic, 0x01), 0x0017_0011);
        assert_eq!(read(&mut ioapic, 0x02), 2 << 24);
        for line in 0..IO_APIC_LINES {
            assert_eq!(read(&mut ioapic, 0x10 + 2 * line), 1 << 16);
            assert_eq!(read(&mut ioapic, 0x11 + 2 * line), 0);
            ioapic.set_line(line, true);
        }
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn the_id_is_writable_in_four_bits_and_the_rest_read_only() {
        let mut ioapic = IoApic::new(0);
        write(&mut ioapic, 0x00, 0xffff_ffff);
        assert_eq!(read(&mut ioapic, 0x00), 0x0f00_0000);
        assert_eq!(read(&mut ioapic, 0x02), 0x0f00_0000);
        write(&mut ioapic, 0x01, 0);
        write(&mut ioapic, 0x02, 0);
        assert_eq!(read(&mut ioapic, 0x01), IO_APIC_VERSION);
        assert_eq!(read(&mut ioapic, 0x02), 0x0f00_0000);
    }

    #[test]
    fn registers_beyond_the_table_read_zero_and_ignore_writes() {
        let mut ioapic = IoApic::new(0);
        for index in [0x03, 0x0f, 0x40, 0x41, 0x80, 0xff] {
            write(&mut ioapic, index, 0xffff_ffff);
            assert_eq!(read(&mut ioapic, index), 0, "index {index:#x}");
        }
        assert_eq!(read(&mut ioapic, 0x3f), 0);
    }

    #[test]
    fn only_dword_accesses_at_the_two_registers_act() {
        let mut ioapic = IoApic::new(0);
        assert_eq!(ioapic.write(0x00, AccessSize::Dword, 0x1234_5610), ControlFlow::Continue(()));
        assert_eq!(ioapic.read(0x00, AccessSize::Dword), 0x10);
        assert_eq!(ioapic.write(0x00, AccessSize::Byte, 0x12), ControlFlow::Continue(()));
        assert_eq!(ioapic.write(0x10, AccessSize::Qword, 0), ControlFlow::Continue(()));
        assert_eq!(ioapic.write(0x14, AccessSize::Dword, 0), ControlFlow::Continue(()));
        assert_eq!(ioapic.read(0x10, AccessSize::Dword), 1 << 16);
        assert_eq!(ioapic.read(0x10, AccessSize::Byte), 0);
        assert_eq!(ioapic.read(0x20, AccessSize::Dword), 0);
        assert_eq!(ioapic.read(u64::MAX, AccessSize::Dword), 0);
    }

    #[test]
    fn entries_keep_only_their_writable_bits() {
        let mut ioapic = IoApic::new(0);
        write(&mut ioapic, 0x10, 0xffff_ffff);
        write(&mut ioapic, 0x11, 0xffff_ffff);
        // Delivery status (12), remote IRR (14) and bits 17..55 stay 0.
        assert_eq!(read(&mut ioapic, 0x10), 0x1_afff);
        assert_eq!(read(&mut ioapic, 0x11), 0xff00_0000);
        assert_eq!(ioapic.redirection_entry(0), Some(0xff00_0000_0001_afff));
        assert_eq!(ioapic.redirection_entry(24), None);
    }

    #[test]
    fn an_edge_entry_sends_on_the_asserting_edge_only() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 4, 0x24, 0);
        assert_eq!(ioapic.redirection_entry(4), Some(0x24));
        ioapic.set_line(4, true);
        assert_eq!(messages(&mut ioapic), [fixed(0x24, 0, Trigger::Edge)]);
        // Held high, or falling: nothing.
        ioapic.set_line(4, true);
        ioapic.set_line(4, false);
        assert_eq!(messages(&mut ioapic), []);
        ioapic.set_line(4, true);
        assert_eq!(messages(&mut ioapic), [fixed(0x24, 0, Trigger::Edge)]);
        assert!(ioapic.line_level(4));
        // Remote IRR stays clear on edge entries, and EOI does nothing.
        ioapic.end_of_interrupt(0x24);
        assert_eq!(ioapic.redirection_entry(4), Some(0x24));
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn an_active_low_edge_entry_sends_on_the_falling_edge() {
        let mut ioapic = IoApic::new(0);
        ioapic.set_line(9, true);
        program(&mut ioapic, 9, ACTIVE_LOW | 0x29, 1);
        assert_eq!(messages(&mut ioapic), []);
        ioapic.set_line(9, false);
        assert_eq!(messages(&mut ioapic), [fixed(0x29, 1, Trigger::Edge)]);
        ioapic.set_line(9, true);
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn a_level_entry_waits_for_eoi_and_sends_again_while_asserted() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 10, LEVEL | 0x3a, 0);
        ioapic.set_line(10, true);
        assert_eq!(messages(&mut ioapic), [fixed(0x3a, 0, Trigger::Level)]);
        assert_eq!(read(&mut ioapic, 0x10 + 20), LEVEL | REMOTE_IRR | 0x3a);
        // Still asserted, remote IRR set: nothing more.
        ioapic.set_line(10, true);
        assert_eq!(messages(&mut ioapic), []);
        // EOI of another vector does nothing.
        ioapic.end_of_interrupt(0x3b);
        assert_eq!(messages(&mut ioapic), []);
        // EOI while still asserted: sent again.
        ioapic.end_of_interrupt(0x3a);
        assert_eq!(messages(&mut ioapic), [fixed(0x3a, 0, Trigger::Level)]);
        // De-asserted, then EOI: remote IRR clears, nothing is sent.
        ioapic.set_line(10, false);
        ioapic.end_of_interrupt(0x3a);
        assert_eq!(messages(&mut ioapic), []);
        assert_eq!(read(&mut ioapic, 0x10 + 20), LEVEL | 0x3a);
    }

    #[test]
    fn the_sci_as_the_tables_declare_it_is_quiet_from_reset() {
        // `boot::acpi` declares the SCI (ISA IRQ 9) level-triggered and
        // active high: inputs are electrical levels, low from reset, so
        // programming and unmasking it sends nothing until a device
        // asserts it.
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 9, LEVEL | 0x39, 0);
        assert_eq!(messages(&mut ioapic), []);
        ioapic.end_of_interrupt(0x39);
        assert_eq!(messages(&mut ioapic), []);
        ioapic.set_line(9, true);
        assert_eq!(messages(&mut ioapic), [fixed(0x39, 0, Trigger::Level)]);
        ioapic.set_line(9, false);
        ioapic.end_of_interrupt(0x39);
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn an_active_low_entry_on_an_idle_low_input_sends_at_once() {
        // Why the tables declare no active-low input: an input nothing
        // drives reads low, which an active-low entry takes as asserted
        // the moment it is unmasked.
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 11, LEVEL | ACTIVE_LOW | 0x3b, 0);
        assert_eq!(messages(&mut ioapic), [fixed(0x3b, 0, Trigger::Level)]);
    }

    #[test]
    fn an_active_low_level_entry_is_asserted_while_low() {
        // PCI interrupts: level, active low.
        let mut ioapic = IoApic::new(0);
        ioapic.set_line(16, true);
        program(&mut ioapic, 16, LEVEL | ACTIVE_LOW | 0x41, 0);
        assert_eq!(messages(&mut ioapic), []);
        ioapic.set_line(16, false);
        assert_eq!(messages(&mut ioapic), [fixed(0x41, 0, Trigger::Level)]);
        ioapic.set_line(16, true);
        ioapic.end_of_interrupt(0x41);
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn eoi_ends_every_entry_with_the_vector() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 5, LEVEL | 0x50, 0);
        program(&mut ioapic, 6, LEVEL | 0x50, 0);
        ioapic.set_line(5, true);
        ioapic.set_line(6, true);
        assert_eq!(messages(&mut ioapic).len(), 2);
        ioapic.set_line(5, false);
        ioapic.end_of_interrupt(0x50);
        assert_eq!(messages(&mut ioapic), [fixed(0x50, 0, Trigger::Level)]);
        assert_eq!(ioapic.redirection_entry(5), Some(u64::from(LEVEL | 0x50)));
        assert_eq!(ioapic.redirection_entry(6), Some(u64::from(LEVEL | REMOTE_IRR | 0x50)));
    }

    #[test]
    fn a_masked_edge_is_lost_and_a_masked_level_is_sent_on_unmask() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 1, MASKED | 0x21, 0);
        ioapic.set_line(1, true);
        program(&mut ioapic, 1, 0x21, 0);
        assert_eq!(messages(&mut ioapic), []);
        program(&mut ioapic, 2, MASKED | LEVEL | 0x22, 0);
        ioapic.set_line(2, true);
        assert_eq!(messages(&mut ioapic), []);
        program(&mut ioapic, 2, LEVEL | 0x22, 0);
        assert_eq!(messages(&mut ioapic), [fixed(0x22, 0, Trigger::Level)]);
        // Masked with remote IRR set: EOI clears it, sends nothing, and
        // unmasking sends.
        program(&mut ioapic, 2, MASKED | LEVEL | 0x22, 0);
        ioapic.end_of_interrupt(0x22);
        assert_eq!(messages(&mut ioapic), []);
        assert_eq!(read(&mut ioapic, 0x14) & REMOTE_IRR, 0);
        program(&mut ioapic, 2, LEVEL | 0x22, 0);
        assert_eq!(messages(&mut ioapic), [fixed(0x22, 0, Trigger::Level)]);
        // De-asserted while masked: unmasking sends nothing.
        program(&mut ioapic, 2, MASKED | LEVEL | 0x22, 0);
        ioapic.end_of_interrupt(0x22);
        ioapic.set_line(2, false);
        program(&mut ioapic, 2, LEVEL | 0x22, 0);
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn switching_to_edge_clears_a_stuck_remote_irr() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 3, LEVEL | 0x33, 0);
        ioapic.set_line(3, true);
        ioapic.set_line(3, false);
        assert_eq!(messages(&mut ioapic).len(), 1);
        // Linux's EOI by hand on a version-0x11 I/O APIC.
        write(&mut ioapic, 0x16, 0x33);
        write(&mut ioapic, 0x16, LEVEL | 0x33);
        assert_eq!(read(&mut ioapic, 0x16), LEVEL | 0x33);
        ioapic.set_line(3, true);
        assert_eq!(messages(&mut ioapic), [fixed(0x33, 0, Trigger::Level)]);
    }

    #[test]
    fn the_guest_cannot_write_remote_irr() {
        let mut ioapic = IoApic::new(0);
        write(&mut ioapic, 0x10, LEVEL | REMOTE_IRR | 0x30);
        assert_eq!(read(&mut ioapic, 0x10), LEVEL | 0x30);
        program(&mut ioapic, 0, LEVEL | 0x30, 0);
        ioapic.set_line(0, true);
        // Rewriting the entry keeps the remote IRR the device set.
        write(&mut ioapic, 0x10, LEVEL | 0x31);
        assert_eq!(read(&mut ioapic, 0x10), LEVEL | REMOTE_IRR | 0x31);
    }

    #[test]
    fn messages_carry_mode_and_destination() {
        let mut ioapic = IoApic::new(0);
        // Logical destination 0x03, lowest priority, level.
        program(&mut ioapic, 11, (1 << 11) | (1 << 8) | LEVEL | 0x61, 0x03);
        ioapic.set_line(11, true);
        let expected = InterruptMessage {
            vector: 0x61,
            delivery: DeliveryMode::LowestPriority,
            destination: Destination::Logical(0x03),
            trigger: Trigger::Level,
        };
        assert_eq!(messages(&mut ioapic), [expected]);
        // NMI with the level bit: edge all the same, no remote IRR.
        program(&mut ioapic, 12, (4 << 8) | LEVEL, 0xff);
        ioapic.set_line(12, true);
        let nmi = InterruptMessage {
            vector: 0,
            delivery: DeliveryMode::Nmi,
            destination: Destination::Physical(0xff),
            trigger: Trigger::Edge,
        };
        assert_eq!(messages(&mut ioapic), [nmi]);
        assert_eq!(read(&mut ioapic, 0x10 + 24) & REMOTE_IRR, 0);
        ioapic.set_line(12, true);
        assert_eq!(messages(&mut ioapic), []);
        // ExtINT (virtual wire through the I/O APIC).
        program(&mut ioapic, 0, 7 << 8, 0);
        ioapic.set_line(0, true);
        assert_eq!(messages(&mut ioapic).first().map(|message| message.delivery), Some(DeliveryMode::ExtInt));
    }

    #[test]
    fn the_reserved_delivery_mode_sends_nothing() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 7, (3 << 8) | LEVEL | 0x70, 0);
        ioapic.set_line(7, true);
        assert_eq!(messages(&mut ioapic), []);
        assert_eq!(read(&mut ioapic, 0x10 + 14) & REMOTE_IRR, 0);
        // Made valid while asserted: an edge entry waits for an edge.
        program(&mut ioapic, 7, 0x70, 0);
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn lines_beyond_the_table_are_ignored() {
        let mut ioapic = IoApic::new(0);
        for line in [24, 31, 32, 200, 255] {
            ioapic.set_line(line, true);
            assert!(!ioapic.line_level(line));
        }
        assert_eq!(messages(&mut ioapic), []);
    }

    #[test]
    fn a_full_queue_drops_and_a_dropped_level_message_is_sent_again() {
        let mut ioapic = IoApic::new(0);
        program(&mut ioapic, 1, 0x21, 0);
        program(&mut ioapic, 2, LEVEL | 0x22, 0);
        for _ in 0..MESSAGE_QUEUE_CAPACITY {
            ioapic.set_line(1, true);
            ioapic.set_line(1, false);
        }
        ioapic.set_line(1, true);
        ioapic.set_line(2, true);
        assert_eq!(ioapic.dropped_messages(), 2);
        assert_eq!(read(&mut ioapic, 0x14) & REMOTE_IRR, 0);
        assert_eq!(messages(&mut ioapic).len(), MESSAGE_QUEUE_CAPACITY);
        // The level input is still asserted with remote IRR clear: the next
        // event sends it.
        ioapic.set_line(2, true);
        assert_eq!(messages(&mut ioapic), [fixed(0x22, 0, Trigger::Level)]);
    }

    /// One guest or VMM action, for the property test.
    #[derive(Clone, Debug)]
    enum Action {
        Write(u64, AccessSize, u64),
        Read(u64, AccessSize),
        Line(u8, bool),
        EndOfInterrupt(u8),
        Drain,
    }

    fn access_size() -> impl Strategy<Value = AccessSize> {
        prop_oneof![Just(AccessSize::Byte), Just(AccessSize::Word), Just(AccessSize::Dword), Just(AccessSize::Qword)]
    }

    /// A redirection entry's low dword with its fields chosen at random.
    fn entry_low() -> impl Strategy<Value = u64> {
        (any::<u8>(), 0_u64..8, any::<[bool; 4]>()).prop_map(|(vector, mode, [logical, low, level, masked])| {
            u64::from(vector)
                | mode << 8
                | u64::from(logical) << 11
                | u64::from(low) << 13
                | u64::from(level) << 15
                | u64::from(masked) << 16
        })
    }

    fn action() -> impl Strategy<Value = Action> {
        let offset = prop_oneof![Just(REGISTER_SELECT), Just(REGISTER_WINDOW), any::<u64>()];
        let size = prop_oneof![3 => Just(AccessSize::Dword), 1 => access_size()];
        // Mostly register indices in the table (for IOREGSEL) and
        // plausible entries (for IOWIN).
        let value = prop_oneof![0_u64..0x40, entry_low(), any::<u64>()];
        prop_oneof![
            (offset.clone(), size, value).prop_map(|(offset, size, value)| Action::Write(offset, size, value)),
            (offset, access_size()).prop_map(|(offset, size)| Action::Read(offset, size)),
            (0_u8..32, any::<bool>()).prop_map(|(line, level)| Action::Line(line, level)),
            any::<u8>().prop_map(Action::EndOfInterrupt),
            Just(Action::Drain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn random_accesses_never_panic_and_keep_the_invariants(
            id in any::<u8>(),
            actions in proptest::collection::vec(action(), 1..300),
        ) {
            let mut ioapic = IoApic::new(id);
            for action in actions {
                let queued = ioapic.messages.len();
                match action {
                    Action::Write(offset, size, value) => {
                        prop_assert_eq!(ioapic.write(offset, size, value), ControlFlow::Continue(()));
                    }
                    Action::Read(offset, size) => {
                        let value = ioapic.read(offset, size);
                        prop_assert_eq!(value >> 32, 0);
                    }
                    Action::Line(line, level) => {
                        let masked = ioapic.redirection_entry(line).is_none_or(|entry| entry & ENTRY_MASKED != 0);
                        ioapic.set_line(line, level);
                        if masked {
                            // Masked and absent inputs send nothing.
                            prop_assert_eq!(ioapic.messages.len(), queued);
                        }
                        prop_assert_eq!(ioapic.line_level(line), level && line < IO_APIC_LINES);
                    }
                    Action::EndOfInterrupt(vector) => ioapic.end_of_interrupt(vector),
                    Action::Drain => {
                        let drained = messages(&mut ioapic);
                        prop_assert!(drained.len() <= MESSAGE_QUEUE_CAPACITY);
                        prop_assert!(drained.iter().all(|message| message.trigger == Trigger::Edge
                            || matches!(message.delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority)));
                    }
                }
                prop_assert!(ioapic.id() <= 0xf);
                for line in 0..IO_APIC_LINES {
                    let entry = RedirectionEntry(ioapic.redirection_entry(line).unwrap_or(0));
                    prop_assert_eq!(entry.0 & !(ENTRY_WRITABLE | ENTRY_REMOTE_IRR), 0);
                    if entry.remote_irr() {
                        prop_assert!(entry.level_triggered());
                    }
                    // With nothing dropped, an asserted, unmasked level
                    // input has always been sent and not yet ended.
                    if ioapic.dropped_messages() == 0
                        && entry.level_triggered()
                        && !entry.masked()
                        && ioapic.asserted(line)
                    {
                        prop_assert!(entry.remote_irr());
                    }
                }
            }
        }
    }
}
