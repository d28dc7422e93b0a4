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
pub fn read_bytes(port: u16, size: crate::AccessSize, mut read_byte: impl FnMut(u16) -> u8) -> u32 {
    let mut bytes = [0; 4];
    for (offset, byte) in (0_u16..).zip(bytes.iter_mut()).take(size.bytes()) {
        *byte = read_byte(port.wrapping_add(offset));
    }
    u32::from_le_bytes(bytes)
}

/// A wider port write to a byte-wide device, split into byte writes at
/// consecutive ports, low byte first.
pub fn write_bytes(port: u16, size: crate::AccessSize, value: u32, mut write_byte: impl FnMut(u16, u8)) {
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

/// Guest time from the TSC: nanoseconds since `base`, the TSC's value at
/// the platform's reset, at `hz` ticks a second. Exact integer arithmetic
/// in `u128`; a tick count is rounded down to nanoseconds and a time up
/// to ticks, so that a deadline made from a time never comes before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscClock {
    base: u64,
    hz: u64,
}

impl TscClock {
    /// The clock of a TSC counting `hz` ticks a second (0 counts as 1)
    /// that read `base` at reset.
    #[must_use]
    pub const fn new(base: u64, hz: u64) -> TscClock {
        TscClock { base, hz: if hz == 0 { 1 } else { hz } }
    }

    /// The TSC's frequency.
    #[must_use]
    pub const fn hz(&self) -> u64 {
        self.hz
    }

    /// The TSC offset (VMCS `TSC_OFFSET`, `GuestField::TSC_OFFSET`) that
    /// makes the guest's RDTSC read 0 at the reset, counting as this
    /// clock does: the local APIC's TSC-deadline timer takes the guest's
    /// TSC to be `time * hz / 10^9`, so a VMM that runs the board on this
    /// clock must give the vCPU this offset before its first entry, or a
    /// deadline the guest computes from RDTSC fires `base` ticks late.
    #[must_use]
    pub const fn guest_tsc_offset(&self) -> u64 {
        self.base.wrapping_neg()
    }

    /// The guest time at TSC value `tsc` (0 before the reset).
    #[must_use]
    pub fn nanoseconds(&self, tsc: u64) -> Nanoseconds {
        let ticks = u128::from(tsc.saturating_sub(self.base));
        u64::try_from(ticks * 1_000_000_000 / u128::from(self.hz)).unwrap_or(u64::MAX)
    }

    /// The first TSC value at or after guest time `time` (saturating).
    #[must_use]
    pub fn tsc_at(&self, time: Nanoseconds) -> u64 {
        let ticks = (u128::from(time) * u128::from(self.hz)).div_ceil(1_000_000_000);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(self.base)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_2_ghz_tsc_ticks_twice_a_nanosecond() {
        let clock = TscClock::new(1000, 2_000_000_000);
        assert_eq!(clock.nanoseconds(1000), 0);
        assert_eq!(clock.nanoseconds(999), 0, "before the reset");
        assert_eq!(clock.nanoseconds(3001), 1000);
        assert_eq!(clock.tsc_at(1000), 3000);
        assert_eq!(clock.tsc_at(u64::MAX), u64::MAX, "saturates");
        assert_eq!(TscClock::new(0, 0).hz(), 1);
    }

    proptest! {
        /// A deadline made from a time is never before it, and at most one
        /// tick after it.
        #[test]
        fn deadlines_never_come_early(base in 0_u64..1 << 60, hz in 1_u64..10_000_000_000, time in 0_u64..1 << 50) {
            let clock = TscClock::new(base, hz);
            let tsc = clock.tsc_at(time);
            prop_assert!(clock.nanoseconds(tsc) >= time);
            if tsc > base {
                prop_assert!(clock.nanoseconds(tsc - 1) < time);
            }
        }
    }
}
