//! The emulated PC platform a Linux guest expects (`docs/PLATFORM.md`):
//! the interrupt controllers and timers vmm-server owns (the issue "Boot
//! an unmodified Linux guest"; the UART and virtio devices are
//! vmx-server's). Each device is a state machine with no kernel calls and
//! no clock of its own: time comes in as an argument, in nanoseconds of
//! guest time ([`Nanoseconds`]), and interrupts go out as return values
//! or queued messages, so that every device is tested on the host and the
//! VMM decides how they are wired and when they are polled.
//!
//! | module | device | guest interface |
//! | --- | --- | --- |
//! | [`pic`] | two cascaded 8259A PICs | ports 0x20, 0x21, 0xA0, 0xA1, ELCR 0x4D0, 0x4D1 |
//! | [`pit`] | the 8254 interval timer and port 0x61 | ports 0x40..=0x43, 0x61 |
//! | [`rtc`] | the MC146818 RTC and CMOS memory | ports 0x70, 0x71 |
//! | [`ioapic`] | an 82093AA I/O APIC, 24 inputs | MMIO at 0xFEC0_0000 |
//! | [`lapic`] | a local APIC (xAPIC) with its timer | MMIO at 0xFEE0_0000, IA32_TSC_DEADLINE |
//! | [`acpi_pm`] | ACPI PM1a event and control registers, the PM timer, the SCI | ports 0x600..=0x60B |
//!
//! Guest-controlled values are never trusted: every register write is
//! masked to the bits the device has, every index is checked, and nothing
//! a guest writes can make a device panic, loop or allocate.

pub mod acpi_pm;
pub mod ioapic;
pub mod lapic;
pub mod pc;
pub mod pic;
pub mod pit;
pub mod rtc;

/// A wider port access to a byte-wide device, split into byte reads at
/// consecutive ports as the ISA bus does; bits above the access's size
/// read zero.
pub(crate) fn read_bytes(port: u16, size: crate::AccessSize, mut read_byte: impl FnMut(u16) -> u8) -> u32 {
    let mut bytes = [0; 4];
    for (offset, byte) in (0_u16..).zip(bytes.iter_mut()).take(size.bytes()) {
        *byte = read_byte(port.wrapping_add(offset));
    }
    u32::from_le_bytes(bytes)
}

/// A wider port write to a byte-wide device, split into byte writes at
/// consecutive ports, low byte first.
pub(crate) fn write_bytes(port: u16, size: crate::AccessSize, value: u32, mut write_byte: impl FnMut(u16, u8)) {
    for (offset, byte) in (0_u16..).zip(value.to_le_bytes()).take(size.bytes()) {
        write_byte(port.wrapping_add(offset), byte);
    }
}

/// Guest time: nanoseconds since the platform's reset.
pub type Nanoseconds = u64;

/// How an interrupt message is delivered to a local APIC (the I/O APIC's
/// redirection entries and the ICR encode it in bits 8..11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// To the vector, on the destination's processor(s).
    Fixed,
    /// To the vector, on the lowest-priority processor of the destination.
    LowestPriority,
    /// A system-management interrupt.
    Smi,
    /// A non-maskable interrupt.
    Nmi,
    /// INIT.
    Init,
    /// Start-up (the vector is the start page).
    StartUp,
    /// An external interrupt: the vector comes from the 8259A (INTA).
    ExtInt,
}

impl DeliveryMode {
    /// The mode of encoding `bits` (bits 8..11 of a redirection entry or
    /// the ICR, shifted down), if it names one (3 is reserved).
    #[must_use]
    pub const fn from_bits(bits: u8) -> Option<DeliveryMode> {
        match bits & 0b111 {
            0 => Some(DeliveryMode::Fixed),
            1 => Some(DeliveryMode::LowestPriority),
            2 => Some(DeliveryMode::Smi),
            4 => Some(DeliveryMode::Nmi),
            5 => Some(DeliveryMode::Init),
            6 => Some(DeliveryMode::StartUp),
            7 => Some(DeliveryMode::ExtInt),
            _ => None,
        }
    }
}

/// Whether an interrupt is edge- or level-triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge: delivered once per rising edge.
    Edge,
    /// Level: delivered while asserted; the end of its service is
    /// reported back (EOI) so that a still-asserted line is delivered
    /// again.
    Level,
}

/// How a message's destination names local APICs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The APIC whose ID is this (0xFF: every APIC).
    Physical(u8),
    /// The APICs whose logical destination (LDR, under the DFR's model)
    /// matches this mask.
    Logical(u8),
}

/// An interrupt message for the local APICs: from an I/O APIC
/// redirection entry, or an IPI from a local APIC's ICR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptMessage {
    /// The vector (for StartUp, the start page).
    pub vector: u8,
    /// How it is delivered.
    pub delivery: DeliveryMode,
    /// Which APICs receive it.
    pub destination: Destination,
    /// Edge or level.
    pub trigger: Trigger,
}
