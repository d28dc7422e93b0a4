//! ACPI's fixed-hardware power management, as the FADT of `boot::acpi`
//! declares it for a PC ([`PmRegisters`]): the PM1a event block (PM1
//! status, then PM1 enable, 2 bytes each; 0x600 by default), the PM1a
//! control block (2 bytes; 0x604) and the 24-bit PM timer (4 bytes;
//! 0x608), with the SCI on ISA IRQ 9, level-triggered and active high.
//!
//! # Time
//!
//! The PM timer counts at 3.579545 MHz from guest time 0, a pure
//! function of guest time: tick `t` begins at the first nanosecond `n`
//! with `n * 3_579_545 / 10^9 >= t` ([`ticks_at`], [`time_of_tick`]),
//! in integers, so it never drifts. It reads as the low 24 bits of the
//! tick count (FADT TMR_VAL_EXT clear), bits 24..31 zero. As with the
//! other devices the VMM gives the device the guest time with
//! [`AcpiPm::set_time`] before it dispatches an I/O exit to it, and with
//! [`AcpiPm::sci_level`] and [`AcpiPm::next_sci_event`]; time never goes
//! back.
//!
//! # The SCI
//!
//! PM1 status holds the fixed events; each is cleared by writing 1 to it
//! (writing 0 leaves it). The SCI is asserted while a status bit and its
//! enable in PM1 enable are both set (and SCI_EN, which this platform
//! holds at 1: see below). The VMM feeds [`AcpiPm::sci_level`] to the
//! SCI's line (I/O APIC input 9, 8259A line 9, which the guest's ELCR
//! makes level-triggered) after every access to the device and whenever
//! it wakes for [`AcpiPm::next_sci_event`]. Events:
//!
//! - TMR_STS: set each time bit 23 of the timer toggles, every 2^23
//!   ticks (about 2.34 s), including at the wrap from 0xFF_FFFF to 0. A
//!   VMM that looks only every few seconds still sees it set once.
//! - PWRBTN_STS: set by [`AcpiPm::press_power_button`].
//! - WAK_STS: set by a sleep request this platform does not support
//!   (below).
//!
//! BM_STS, GBL_STS, SLPBTN_STS and RTC_STS are never set here: there is
//! no bus-master activity to report, no firmware sharing the global
//! lock, no sleep button, and the RTC's alarm does not wake from sleep.
//!
//! # Sleep and power off
//!
//! PM1 control's SLP_TYP (bits 10..12) is kept; SLP_EN (bit 13, write
//! only, reads 0) asks for the sleep state SLP_TYP names, as the DSDT
//! declares them. The DSDT declares only `_S5` (soft off) with SLP_TYP
//! [`S5_SLEEP_TYPE`]: writing it with SLP_EN powers the guest off. There
//! is no `Stop` for that yet (`crate::stop`), so the write still returns
//! `ControlFlow::Continue` and the device records the request instead:
//! the VMM checks [`AcpiPm::power_off_requested`] after each write it
//! dispatches here and, when it is set, stops the guest (a clean power
//! off) without entering it again. Any other SLP_TYP with SLP_EN is a
//! sleep state this platform does not support (Linux offers none, since
//! the DSDT has no `_S1`..`_S4`): nothing sleeps, and WAK_STS is set at
//! once, as if the platform had woken the moment it slept, so that a
//! guest that waits for WAK_STS after a sleep request does not wait
//! forever.
//!
//! # Model choices
//!
//! SCI_EN (PM1 control bit 0) reads 1 and ignores writes: ACPI makes the
//! hardware, not the OS, responsible for it, and with no SMI command port
//! (FADT SMI_CMD 0) the platform is always in ACPI mode. BM_RLD (bit 1)
//! is kept and does nothing (there are no C3 states); GBL_RLS (bit 2) is
//! write only and dropped, with no firmware to release the global lock
//! to. Reserved bits read 0 and ignore writes. The timer ignores writes.
//!
//! Accesses of any width work on every register byte: a wider access is
//! split into byte accesses at consecutive ports, as the ISA bus does
//! (and as the siblings `pit` and `rtc` do), so Linux's 16-bit status,
//! enable and control accesses and 32-bit timer reads act on the bytes
//! they cover, and all the bytes of one access see the same time. Ports
//! in none of the blocks read all ones and ignore writes.

use core::ops::ControlFlow;

use super::Nanoseconds;
use crate::access_size::AccessSize;
use crate::boot::acpi::{PC_PM_REGISTERS, PmRegisters, S5_SLEEP_TYPE};
use crate::port_io::PortDevice;
use crate::stop::Stop;

/// The PM timer's input clock.
pub const PM_TIMER_FREQUENCY_HZ: u64 = 3_579_545;
/// The timer's value bits: 24 (FADT TMR_VAL_EXT clear).
pub const PM_TIMER_MASK: u32 = 0x00ff_ffff;
/// How many ticks apart TMR_STS is set: each toggle of bit 23.
pub const TIMER_STATUS_PERIOD_TICKS: u64 = 1 << 23;

/// The event block's bytes: PM1 status (2), PM1 enable (2).
pub const EVENT_BLOCK_BYTES: u16 = 4;
/// The control block's bytes: PM1 control (2).
pub const CONTROL_BLOCK_BYTES: u16 = 2;
/// The timer block's bytes.
pub const TIMER_BLOCK_BYTES: u16 = 4;

/// PM1 status TMR_STS: bit 23 of the timer toggled.
pub const STATUS_TIMER: u16 = 1 << 0;
/// PM1 status BM_STS: a bus master requested the bus (never set here).
pub const STATUS_BUS_MASTER: u16 = 1 << 4;
/// PM1 status GBL_STS: the firmware released the global lock (never set
/// here).
pub const STATUS_GLOBAL: u16 = 1 << 5;
/// PM1 status PWRBTN_STS: the power button was pressed.
pub const STATUS_POWER_BUTTON: u16 = 1 << 8;
/// PM1 status SLPBTN_STS: the sleep button was pressed (never set here).
pub const STATUS_SLEEP_BUTTON: u16 = 1 << 9;
/// PM1 status RTC_STS: the RTC alarm woke the system (never set here).
pub const STATUS_RTC: u16 = 1 << 10;
/// PM1 status WAK_STS: the system woke from a sleep state.
pub const STATUS_WAKE: u16 = 1 << 15;
/// The PM1 status bits that exist (write 1 to clear).
pub const STATUS_BITS: u16 = STATUS_TIMER
    | STATUS_BUS_MASTER
    | STATUS_GLOBAL
    | STATUS_POWER_BUTTON
    | STATUS_SLEEP_BUTTON
    | STATUS_RTC
    | STATUS_WAKE;

/// PM1 enable TMR_EN: TMR_STS raises the SCI.
pub const ENABLE_TIMER: u16 = 1 << 0;
/// PM1 enable GBL_EN: GBL_STS raises the SCI.
pub const ENABLE_GLOBAL: u16 = 1 << 5;
/// PM1 enable PWRBTN_EN: PWRBTN_STS raises the SCI.
pub const ENABLE_POWER_BUTTON: u16 = 1 << 8;
/// PM1 enable SLPBTN_EN: SLPBTN_STS raises the SCI.
pub const ENABLE_SLEEP_BUTTON: u16 = 1 << 9;
/// PM1 enable RTC_EN: RTC_STS raises the SCI.
pub const ENABLE_RTC: u16 = 1 << 10;
/// The PM1 enable bits that exist (each in the same position as the
/// status bit it enables).
pub const ENABLE_BITS: u16 = ENABLE_TIMER | ENABLE_GLOBAL | ENABLE_POWER_BUTTON | ENABLE_SLEEP_BUTTON | ENABLE_RTC;

/// PM1 control SCI_EN: events raise the SCI, not an SMI (always 1 here).
pub const CONTROL_SCI_ENABLE: u16 = 1 << 0;
/// PM1 control BM_RLD: bus-master requests end C3 (kept, no effect).
pub const CONTROL_BUS_MASTER_RELOAD: u16 = 1 << 1;
/// PM1 control GBL_RLS: releases the global lock to the firmware (write
/// only; dropped here).
pub const CONTROL_GLOBAL_RELEASE: u16 = 1 << 2;
/// PM1 control SLP_TYPx: the sleep type SLP_EN enters (bits 10..12).
pub const CONTROL_SLEEP_TYPE: u16 = 0b111 << CONTROL_SLEEP_TYPE_SHIFT;
/// Where SLP_TYPx starts in PM1 control.
pub const CONTROL_SLEEP_TYPE_SHIFT: u32 = 10;
/// PM1 control SLP_EN: enter the sleep state SLP_TYPx names (write only).
pub const CONTROL_SLEEP_ENABLE: u16 = 1 << 13;
/// The PM1 control bits a write keeps.
const CONTROL_KEPT: u16 = CONTROL_BUS_MASTER_RELOAD | CONTROL_SLEEP_TYPE;

const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// The timer tick in progress at `now`: `floor(now * 3_579_545 / 10^9)`.
#[must_use]
pub fn ticks_at(now: Nanoseconds) -> u64 {
    let ticks = u128::from(now) * u128::from(PM_TIMER_FREQUENCY_HZ) / u128::from(NANOSECONDS_PER_SECOND);
    // At most now / 279: it fits.
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The first nanosecond of timer tick `tick` (the least `n` with
/// `ticks_at(n) >= tick`), or the last one there is.
#[must_use]
pub fn time_of_tick(tick: u64) -> Nanoseconds {
    let numerator = u128::from(tick) * u128::from(NANOSECONDS_PER_SECOND);
    let time = numerator.div_ceil(u128::from(PM_TIMER_FREQUENCY_HZ));
    u64::try_from(time).unwrap_or(u64::MAX)
}

/// The PM timer's value at `now`: the low 24 bits of the tick count.
#[must_use]
pub fn timer_value_at(now: Nanoseconds) -> u32 {
    u32::try_from(ticks_at(now) & u64::from(PM_TIMER_MASK)).unwrap_or(0)
}

/// How many times bit 23 of the timer has toggled by `now`.
fn timer_toggles_at(now: Nanoseconds) -> u64 {
    ticks_at(now) / TIMER_STATUS_PERIOD_TICKS
}

/// A 16-bit register of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Register {
    Status,
    Enable,
    Control,
    Timer,
}

/// ACPI's PM1a event and control registers and the PM timer.
///
/// At reset (guest time 0): PM1 status and enable zero, PM1 control
/// SCI_EN only, the timer at 0, no power-off request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiPm {
    /// Where the blocks are, and the SCI's IRQ.
    registers: PmRegisters,
    /// PM1 status.
    status: u16,
    /// PM1 enable.
    enable: u16,
    /// PM1 control (SLP_EN never set).
    control: u16,
    /// Whether the guest asked for S5.
    power_off_requested: bool,
    /// The latest guest time given.
    now: Nanoseconds,
}

impl Default for AcpiPm {
    /// The device at [`PC_PM_REGISTERS`]: ports 0x600..=0x60B, SCI IRQ 9.
    fn default() -> Self {
        AcpiPm::new(PC_PM_REGISTERS)
    }
}

impl AcpiPm {
    /// The device at reset on the ports `registers` names, the ones the
    /// FADT declares (`boot::acpi`, which refuses blocks past port
    /// 0xFFFF; here a block running past it is cut short).
    #[must_use]
    pub const fn new(registers: PmRegisters) -> AcpiPm {
        AcpiPm { registers, status: 0, enable: 0, control: CONTROL_SCI_ENABLE, power_off_requested: false, now: 0 }
    }

    /// The port ranges the device answers on, for
    /// `Vmm::register_port_ranges`: the event block, the control block
    /// and, if there is one, the timer block.
    #[must_use]
    pub fn port_ranges(&self) -> heapless::Vec<(u16, u16), 3> {
        let blocks = [
            Some((self.registers.event_port, EVENT_BLOCK_BYTES)),
            Some((self.registers.control_port, CONTROL_BLOCK_BYTES)),
            self.registers.timer_port.map(|port| (port, TIMER_BLOCK_BYTES)),
        ];
        let mut ranges = heapless::Vec::new();
        for (first, bytes) in blocks.into_iter().flatten() {
            // Three blocks, three slots: the push cannot fail.
            let _ = ranges.push((first, first.saturating_add(bytes - 1)));
        }
        ranges
    }

    /// The ISA IRQ the SCI is wired to.
    #[must_use]
    pub const fn sci_irq(&self) -> u8 {
        self.registers.sci_irq
    }

    /// Gives the device the guest time, setting TMR_STS if bit 23 of the
    /// timer toggled since the last time given: call it before
    /// dispatching an I/O exit to it. A time before one already given
    /// counts as that one.
    pub fn set_time(&mut self, now: Nanoseconds) {
        let now = now.max(self.now);
        if timer_toggles_at(now) > timer_toggles_at(self.now) {
            self.status |= STATUS_TIMER;
        }
        self.now = now;
    }

    /// The PM timer's value at `now` (24 bits).
    pub fn timer_value(&mut self, now: Nanoseconds) -> u32 {
        self.set_time(now);
        timer_value_at(self.now)
    }

    /// Whether the SCI is asserted at `now`: a PM1 status bit set with
    /// its enable (SCI_EN being always set).
    pub fn sci_level(&mut self, now: Nanoseconds) -> bool {
        self.set_time(now);
        self.sci_asserted()
    }

    /// When the SCI could next rise without a guest access: the next
    /// toggle of the timer's bit 23 if TMR_EN is set; `None` if it is
    /// not, or while the SCI is asserted (it can only fall and rise again
    /// after the guest clears a status bit, which is an exit). A power
    /// button press comes from the VMM, which knows.
    pub fn next_sci_event(&mut self, now: Nanoseconds) -> Option<Nanoseconds> {
        self.set_time(now);
        if self.sci_asserted() || self.enable & ENABLE_TIMER == 0 {
            return None;
        }
        let next_toggle = timer_toggles_at(self.now).checked_add(1)?.checked_mul(TIMER_STATUS_PERIOD_TICKS)?;
        // At the end of time there is no next toggle.
        Some(time_of_tick(next_toggle)).filter(|time| *time > self.now)
    }

    /// The power button is pressed: sets PWRBTN_STS (the SCI rises if
    /// PWRBTN_EN is set).
    pub fn press_power_button(&mut self) {
        self.status |= STATUS_POWER_BUTTON;
    }

    /// Whether the guest wrote SLP_EN with SLP_TYP [`S5_SLEEP_TYPE`]:
    /// it powered off, and the VMM stops it (module documentation,
    /// "Sleep and power off"). Once set it stays set.
    #[must_use]
    pub const fn power_off_requested(&self) -> bool {
        self.power_off_requested
    }

    /// A status bit set with its enable.
    const fn sci_asserted(&self) -> bool {
        self.control & CONTROL_SCI_ENABLE != 0 && self.status & self.enable & ENABLE_BITS != 0
    }

    /// The register and byte (0 low, 1 high; 0..3 for the timer) at
    /// `port`, if any: the first block that holds it.
    fn locate(&self, port: u16) -> Option<(Register, u16)> {
        let within = |first: u16, bytes: u16| port.checked_sub(first).filter(|offset| *offset < bytes);
        if let Some(offset) = within(self.registers.event_port, EVENT_BLOCK_BYTES) {
            return Some(if offset < 2 { (Register::Status, offset) } else { (Register::Enable, offset - 2) });
        }
        if let Some(offset) = within(self.registers.control_port, CONTROL_BLOCK_BYTES) {
            return Some((Register::Control, offset));
        }
        let timer = self.registers.timer_port?;
        within(timer, TIMER_BLOCK_BYTES).map(|offset| (Register::Timer, offset))
    }

    /// An IN of one byte from `port`: all ones outside the blocks.
    fn read_byte(&self, port: u16) -> u8 {
        let Some((register, byte)) = self.locate(port) else { return 0xff };
        let value = match register {
            Register::Status => u32::from(self.status),
            Register::Enable => u32::from(self.enable),
            Register::Control => u32::from(self.control),
            Register::Timer => timer_value_at(self.now),
        };
        value.to_le_bytes().get(usize::from(byte)).copied().unwrap_or(0xff)
    }

    /// An OUT of one byte to `port`: dropped outside the blocks.
    fn write_byte(&mut self, port: u16, value: u8) {
        let Some((register, byte)) = self.locate(port) else { return };
        // The byte in its place in a 16-bit register, and that place.
        let shift = 8 * u32::from(byte);
        let (Some(written), Some(lane)) = (u16::from(value).checked_shl(shift), 0xff_u16.checked_shl(shift)) else {
            return;
        };
        match register {
            Register::Status => self.status &= !(written & STATUS_BITS),
            Register::Enable => self.enable = (self.enable & !lane) | (written & ENABLE_BITS),
            Register::Control => {
                self.control = (self.control & !lane) | (written & CONTROL_KEPT) | CONTROL_SCI_ENABLE;
                if written & CONTROL_SLEEP_ENABLE != 0 {
                    self.sleep(written & CONTROL_SLEEP_TYPE);
                }
            }
            Register::Timer => {}
        }
    }

    /// SLP_EN written with SLP_TYP bits `sleep_type` (in place).
    fn sleep(&mut self, sleep_type: u16) {
        if sleep_type >> CONTROL_SLEEP_TYPE_SHIFT == u16::from(S5_SLEEP_TYPE) {
            self.power_off_requested = true;
        } else {
            // Not supported: wake at once.
            self.status |= STATUS_WAKE;
        }
    }
}

/// Accesses act at the time last given by [`AcpiPm::set_time`]. A wider
/// access is split into byte accesses at consecutive ports, as the ISA
/// bus does; bits above the access's size read zero. A write never
/// stops the guest itself: see [`AcpiPm::power_off_requested`].
impl PortDevice for AcpiPm {
    fn read(&mut self, port: u16, size: AccessSize) -> u32 {
        super::read_bytes(port, size, |port| self.read_byte(port))
    }

    fn write(&mut self, port: u16, size: AccessSize, value: u32) -> ControlFlow<Stop> {
        super::write_bytes(port, size, value, |port, byte| self.write_byte(port, byte));
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::port_io::IoBus;

    const STATUS_PORT: u16 = 0x600;
    const ENABLE_PORT: u16 = 0x602;
    const CONTROL_PORT: u16 = 0x604;
    const TIMER_PORT: u16 = 0x608;
    const SECOND: Nanoseconds = NANOSECONDS_PER_SECOND;
    /// The first nanosecond of tick 2^23: bit 23 first toggles.
    const FIRST_TOGGLE: Nanoseconds = 2_343_484_438;
    /// The first nanosecond of tick 2^24: the timer wraps to 0.
    const WRAP: Nanoseconds = 4_686_968_875;
    /// SLP_TYP 5 (S5) in place.
    const SLP_TYP_S5: u16 = 5 << 10;

    fn read(pm: &mut AcpiPm, now: Nanoseconds, port: u16, size: AccessSize) -> u32 {
        pm.set_time(now);
        pm.read(port, size)
    }

    fn write(pm: &mut AcpiPm, now: Nanoseconds, port: u16, size: AccessSize, value: u32) {
        pm.set_time(now);
        assert_eq!(pm.write(port, size, value), ControlFlow::Continue(()));
    }

    fn inw(pm: &mut AcpiPm, now: Nanoseconds, port: u16) -> u16 {
        u16::try_from(read(pm, now, port, AccessSize::Word)).unwrap()
    }

    fn outw(pm: &mut AcpiPm, now: Nanoseconds, port: u16, value: u16) {
        write(pm, now, port, AccessSize::Word, u32::from(value));
    }

    fn inb(pm: &mut AcpiPm, now: Nanoseconds, port: u16) -> u8 {
        u8::try_from(read(pm, now, port, AccessSize::Byte)).unwrap()
    }

    fn outb(pm: &mut AcpiPm, now: Nanoseconds, port: u16, value: u8) {
        write(pm, now, port, AccessSize::Byte, u32::from(value));
    }

    fn timer(pm: &mut AcpiPm, now: Nanoseconds) -> u32 {
        read(pm, now, TIMER_PORT, AccessSize::Dword)
    }

    #[test]
    fn time_converts_to_ticks_exactly() {
        assert_eq!(ticks_at(0), 0);
        assert_eq!(ticks_at(279), 0);
        assert_eq!(ticks_at(280), 1);
        assert_eq!(time_of_tick(1), 280);
        assert_eq!(ticks_at(SECOND), 3_579_545);
        assert_eq!(time_of_tick(3_579_545), SECOND);
        assert_eq!(ticks_at(SECOND - 1), 3_579_544);
        // An hour, and five centuries, neither overflow nor drift.
        assert_eq!(ticks_at(3600 * SECOND), 12_886_362_000);
        let centuries = 500 * 365 * 24 * 3600;
        assert_eq!(ticks_at(centuries * SECOND), centuries * PM_TIMER_FREQUENCY_HZ);
        assert_eq!(ticks_at(u64::MAX), 66_030_950_515_326_656);
        assert_eq!(time_of_tick(u64::MAX), u64::MAX);
        for tick in [1, 2, 1 << 23, 1 << 24, 3_579_545, 12_886_362_001] {
            let time = time_of_tick(tick);
            assert_eq!(ticks_at(time), tick, "tick {tick} starts at {time}");
            assert_eq!(ticks_at(time - 1), tick - 1, "and not a nanosecond earlier");
        }
        assert_eq!((time_of_tick(1 << 23), time_of_tick(1 << 24)), (FIRST_TOGGLE, WRAP));
    }

    #[test]
    fn the_timer_reads_24_bits_and_wraps_at_2_to_the_24() {
        let mut pm = AcpiPm::default();
        assert_eq!(timer(&mut pm, 0), 0);
        assert_eq!(timer(&mut pm, 279), 0);
        assert_eq!(timer(&mut pm, 280), 1);
        assert_eq!(timer(&mut pm, SECOND), 3_579_545);
        assert_eq!(timer(&mut pm, WRAP - 1), 0xff_ffff);
        assert_eq!(timer(&mut pm, WRAP), 0);
        assert_eq!(timer(&mut pm, WRAP + 280), 1);
        // An hour: 12,886,362,000 ticks, 768 wraps and 1,460,112.
        assert_eq!(timer(&mut pm, 3600 * SECOND), 1_460_112);
        assert_eq!(pm.timer_value(3600 * SECOND), 1_460_112);
        assert_eq!(timer(&mut pm, u64::MAX), 10_862_272);
        assert_eq!(timer_value_at(u64::MAX), 10_862_272);
        // The top byte is zero.
        assert_eq!(inb(&mut pm, u64::MAX, TIMER_PORT + 3), 0);
    }

    #[test]
    fn the_timer_reads_the_same_a_byte_a_word_or_a_dword_at_a_time() {
        let mut pm = AcpiPm::default();
        let now = 3600 * SECOND;
        let bytes = [0, 1, 2, 3].map(|offset| inb(&mut pm, now, TIMER_PORT + offset));
        assert_eq!(u32::from_le_bytes(bytes), 1_460_112);
        let words = [inw(&mut pm, now, TIMER_PORT), inw(&mut pm, now, TIMER_PORT + 2)];
        assert_eq!(u32::from(words[0]) | u32::from(words[1]) << 16, 1_460_112);
        // Writes to the timer change nothing.
        write(&mut pm, now, TIMER_PORT, AccessSize::Dword, 0);
        outb(&mut pm, now, TIMER_PORT + 3, 0xff);
        assert_eq!(timer(&mut pm, now), 1_460_112);
    }

    #[test]
    fn tmr_sts_is_set_at_each_toggle_of_bit_23() {
        let mut pm = AcpiPm::default();
        assert_eq!(inw(&mut pm, FIRST_TOGGLE - 1, STATUS_PORT), 0);
        assert_eq!(inw(&mut pm, FIRST_TOGGLE, STATUS_PORT), STATUS_TIMER);
        // Still set until cleared, even past the next toggle.
        assert_eq!(inw(&mut pm, WRAP + 1, STATUS_PORT), STATUS_TIMER);
        outw(&mut pm, WRAP + 1, STATUS_PORT, STATUS_TIMER);
        assert_eq!(inw(&mut pm, WRAP + 1, STATUS_PORT), 0);
        // Bit 23 goes 0 -> 1 at 2^23 * 3 ticks.
        let third = time_of_tick(3 << 23);
        assert_eq!(inw(&mut pm, third - 1, STATUS_PORT), 0);
        assert_eq!(inw(&mut pm, third, STATUS_PORT), STATUS_TIMER);
        // Cleared, then many toggles at once: set once.
        outw(&mut pm, third, STATUS_PORT, STATUS_TIMER);
        assert_eq!(inw(&mut pm, 3600 * SECOND, STATUS_PORT), STATUS_TIMER);
        outw(&mut pm, 3600 * SECOND, STATUS_PORT, STATUS_TIMER);
        assert_eq!(inw(&mut pm, 3600 * SECOND, STATUS_PORT), 0);
    }

    #[test]
    fn the_wrap_itself_is_a_toggle() {
        let mut pm = AcpiPm::default();
        pm.set_time(FIRST_TOGGLE);
        outw(&mut pm, FIRST_TOGGLE, STATUS_PORT, STATUS_TIMER);
        assert_eq!(inw(&mut pm, WRAP - 1, STATUS_PORT), 0);
        assert_eq!(timer(&mut pm, WRAP - 1), 0xff_ffff);
        assert_eq!(inw(&mut pm, WRAP, STATUS_PORT), STATUS_TIMER);
        assert_eq!(timer(&mut pm, WRAP), 0);
    }

    #[test]
    fn next_sci_event_is_the_next_toggle_while_tmr_en_is_set() {
        let mut pm = AcpiPm::default();
        assert_eq!(pm.next_sci_event(0), None);
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_TIMER);
        assert_eq!(pm.next_sci_event(0), Some(FIRST_TOGGLE));
        assert_eq!(pm.next_sci_event(FIRST_TOGGLE - 1), Some(FIRST_TOGGLE));
        assert!(!pm.sci_level(FIRST_TOGGLE - 1));
        assert!(pm.sci_level(FIRST_TOGGLE));
        // Asserted: nothing more to wake for until the guest clears it.
        assert_eq!(pm.next_sci_event(FIRST_TOGGLE), None);
        outw(&mut pm, FIRST_TOGGLE + 1000, STATUS_PORT, STATUS_TIMER);
        assert!(!pm.sci_level(FIRST_TOGGLE + 1000));
        assert_eq!(pm.next_sci_event(FIRST_TOGGLE + 1000), Some(WRAP));
        assert!(pm.sci_level(WRAP));
        outw(&mut pm, WRAP, STATUS_PORT, STATUS_TIMER);
        assert_eq!(pm.next_sci_event(WRAP), Some(7_030_453_312));
        assert_eq!(7_030_453_312, time_of_tick(3 << 23));
        // TMR_EN cleared: no event, though TMR_STS keeps being set.
        outw(&mut pm, WRAP, ENABLE_PORT, 0);
        assert_eq!(pm.next_sci_event(WRAP), None);
        assert!(!pm.sci_level(10 * SECOND));
        assert_eq!(inw(&mut pm, 10 * SECOND, STATUS_PORT), STATUS_TIMER);
        // Another enable asserted: no event either.
        outw(&mut pm, 10 * SECOND, STATUS_PORT, STATUS_TIMER);
        outw(&mut pm, 10 * SECOND, ENABLE_PORT, ENABLE_TIMER | ENABLE_POWER_BUTTON);
        pm.press_power_button();
        assert_eq!(pm.next_sci_event(10 * SECOND), None);
        // At the end of time there is no next toggle.
        let mut pm = AcpiPm::default();
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_TIMER);
        outw(&mut pm, u64::MAX, STATUS_PORT, STATUS_TIMER);
        assert_eq!(pm.next_sci_event(u64::MAX), None);
    }

    #[test]
    fn pm1_status_is_write_one_to_clear() {
        let mut pm = AcpiPm::default();
        pm.press_power_button();
        let now = FIRST_TOGGLE;
        assert_eq!(inw(&mut pm, now, STATUS_PORT), STATUS_TIMER | STATUS_POWER_BUTTON);
        // Zeros leave every bit; ones the device does not have do nothing.
        outw(&mut pm, now, STATUS_PORT, 0);
        outw(&mut pm, now, STATUS_PORT, !(STATUS_TIMER | STATUS_POWER_BUTTON));
        assert_eq!(inw(&mut pm, now, STATUS_PORT), STATUS_TIMER | STATUS_POWER_BUTTON);
        outw(&mut pm, now, STATUS_PORT, STATUS_POWER_BUTTON);
        assert_eq!(inw(&mut pm, now, STATUS_PORT), STATUS_TIMER);
        // Writing the value read back clears what was read.
        let read_back = inw(&mut pm, now, STATUS_PORT);
        outw(&mut pm, now, STATUS_PORT, read_back);
        assert_eq!(inw(&mut pm, now, STATUS_PORT), 0);
        // A second press while set is one event.
        pm.press_power_button();
        pm.press_power_button();
        outw(&mut pm, now, STATUS_PORT, 0xffff);
        assert_eq!(inw(&mut pm, now, STATUS_PORT), 0);
    }

    #[test]
    fn pm1_enable_keeps_the_bits_it_has() {
        let mut pm = AcpiPm::default();
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), 0);
        outw(&mut pm, 0, ENABLE_PORT, 0xffff);
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), 0x0721);
        assert_eq!(ENABLE_BITS, 0x0721);
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_POWER_BUTTON);
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), ENABLE_POWER_BUTTON);
        outw(&mut pm, 0, ENABLE_PORT, 0);
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), 0);
    }

    #[test]
    fn pm1_control_keeps_sci_en_set_and_slp_en_unread() {
        let mut pm = AcpiPm::default();
        assert_eq!(inw(&mut pm, 0, CONTROL_PORT), CONTROL_SCI_ENABLE);
        // SCI_EN is the hardware's: a write of 0 leaves it.
        outw(&mut pm, 0, CONTROL_PORT, 0);
        assert_eq!(inw(&mut pm, 0, CONTROL_PORT), CONTROL_SCI_ENABLE);
        // BM_RLD and SLP_TYP are kept; GBL_RLS and the reserved bits not.
        outw(&mut pm, 0, CONTROL_PORT, CONTROL_BUS_MASTER_RELOAD | CONTROL_GLOBAL_RELEASE | 3 << 10 | 0xc3f8);
        assert_eq!(inw(&mut pm, 0, CONTROL_PORT), CONTROL_SCI_ENABLE | CONTROL_BUS_MASTER_RELOAD | 3 << 10);
        assert_eq!(CONTROL_SLEEP_TYPE, 0x1c00);
        // SLP_EN reads 0 after a sleep request too.
        outw(&mut pm, 0, CONTROL_PORT, CONTROL_SLEEP_ENABLE | 1 << 10);
        assert_eq!(inw(&mut pm, 0, CONTROL_PORT), CONTROL_SCI_ENABLE | 1 << 10);
    }

    #[test]
    fn the_sci_is_a_status_bit_with_its_enable() {
        let mut pm = AcpiPm::default();
        assert!(!pm.sci_level(0));
        pm.press_power_button();
        assert!(!pm.sci_level(0), "PWRBTN_STS without PWRBTN_EN");
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_TIMER);
        assert!(!pm.sci_level(0), "another enable");
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_POWER_BUTTON);
        assert!(pm.sci_level(0));
        outw(&mut pm, 0, ENABLE_PORT, 0);
        assert!(!pm.sci_level(0), "disabling lowers it");
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_POWER_BUTTON);
        assert!(pm.sci_level(0), "and enabling a set status raises it again");
        outw(&mut pm, 0, STATUS_PORT, STATUS_POWER_BUTTON);
        assert!(!pm.sci_level(0), "clearing the status lowers it");
        // Both events enabled, both set: the SCI falls only when both are
        // cleared.
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_POWER_BUTTON | ENABLE_TIMER);
        pm.press_power_button();
        assert!(pm.sci_level(FIRST_TOGGLE));
        outw(&mut pm, FIRST_TOGGLE, STATUS_PORT, STATUS_POWER_BUTTON);
        assert!(pm.sci_level(FIRST_TOGGLE));
        outw(&mut pm, FIRST_TOGGLE, STATUS_PORT, STATUS_TIMER);
        assert!(!pm.sci_level(FIRST_TOGGLE));
    }

    #[test]
    fn wak_sts_never_raises_the_sci() {
        let mut pm = AcpiPm::default();
        outw(&mut pm, 0, ENABLE_PORT, 0xffff);
        outw(&mut pm, 0, CONTROL_PORT, CONTROL_SLEEP_ENABLE | 3 << 10);
        assert_eq!(inw(&mut pm, 0, STATUS_PORT), STATUS_WAKE);
        assert!(!pm.sci_level(0));
    }

    #[test]
    fn linuxs_s5_sequence_powers_off() {
        // ACPICA writes SLP_TYP first, then SLP_TYP with SLP_EN, each a
        // 16-bit write keeping SCI_EN.
        let mut pm = AcpiPm::default();
        let control = inw(&mut pm, 0, CONTROL_PORT);
        outw(&mut pm, 0, CONTROL_PORT, control | SLP_TYP_S5);
        assert!(!pm.power_off_requested(), "SLP_TYP alone does nothing");
        outw(&mut pm, 0, CONTROL_PORT, control | SLP_TYP_S5 | CONTROL_SLEEP_ENABLE);
        assert!(pm.power_off_requested());
        assert_eq!(inw(&mut pm, 0, CONTROL_PORT), CONTROL_SCI_ENABLE | SLP_TYP_S5);
        assert_eq!(inw(&mut pm, 0, STATUS_PORT), 0, "no WAK_STS: it does not wake");
        // It stays requested.
        outw(&mut pm, 0, CONTROL_PORT, 0);
        assert!(pm.power_off_requested());
        assert_eq!(u16::from(S5_SLEEP_TYPE) << CONTROL_SLEEP_TYPE_SHIFT, SLP_TYP_S5);
    }

    #[test]
    fn s5_by_byte_and_by_dword_powers_off_too() {
        let mut pm = AcpiPm::default();
        // The high byte holds SLP_TYP and SLP_EN: 0x34.
        outb(&mut pm, 0, CONTROL_PORT + 1, 0x34);
        assert!(pm.power_off_requested());
        let mut pm = AcpiPm::default();
        outb(&mut pm, 0, CONTROL_PORT, 0xff);
        assert!(!pm.power_off_requested(), "the low byte has no SLP_EN");
        write(&mut pm, 0, CONTROL_PORT, AccessSize::Dword, 0xffff_3401);
        assert!(pm.power_off_requested());
        // Without SLP_EN: no.
        let mut pm = AcpiPm::default();
        outb(&mut pm, 0, CONTROL_PORT + 1, 0x14);
        assert!(!pm.power_off_requested());
        assert_eq!(inw(&mut pm, 0, STATUS_PORT), 0);
    }

    #[test]
    fn other_sleep_types_are_not_supported_and_wake_at_once() {
        for sleep_type in (0_u16..8).filter(|sleep_type| *sleep_type != 5) {
            let mut pm = AcpiPm::default();
            outw(&mut pm, 0, CONTROL_PORT, CONTROL_SCI_ENABLE | sleep_type << 10 | CONTROL_SLEEP_ENABLE);
            assert!(!pm.power_off_requested(), "S{sleep_type}");
            assert_eq!(inw(&mut pm, 0, STATUS_PORT), STATUS_WAKE, "S{sleep_type} wakes at once");
            assert_eq!(inw(&mut pm, 0, CONTROL_PORT), CONTROL_SCI_ENABLE | sleep_type << 10);
            outw(&mut pm, 0, STATUS_PORT, STATUS_WAKE);
            assert_eq!(inw(&mut pm, 0, STATUS_PORT), 0);
            // The timer runs on.
            assert_eq!(timer(&mut pm, SECOND), 3_579_545);
        }
    }

    #[test]
    fn byte_and_dword_accesses_reach_each_register_byte() {
        let mut pm = AcpiPm::default();
        pm.press_power_button();
        outb(&mut pm, 0, ENABLE_PORT + 1, 0x01);
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), ENABLE_POWER_BUTTON);
        outb(&mut pm, 0, ENABLE_PORT, 0x21);
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), ENABLE_POWER_BUTTON | ENABLE_TIMER | ENABLE_GLOBAL);
        // A byte write replaces only its half.
        outb(&mut pm, 0, ENABLE_PORT + 1, 0x00);
        assert_eq!(inw(&mut pm, 0, ENABLE_PORT), ENABLE_TIMER | ENABLE_GLOBAL);
        assert_eq!(inb(&mut pm, 0, STATUS_PORT), 0x00);
        assert_eq!(inb(&mut pm, 0, STATUS_PORT + 1), 0x01);
        assert_eq!(inb(&mut pm, 0, ENABLE_PORT), 0x21);
        assert_eq!(inb(&mut pm, 0, CONTROL_PORT), 0x01);
        assert_eq!(inb(&mut pm, 0, CONTROL_PORT + 1), 0x00);
        // The event block as one dword: status low, enable high.
        assert_eq!(read(&mut pm, 0, STATUS_PORT, AccessSize::Dword), 0x0021_0100);
        // A dword write: clears PWRBTN_STS, sets PWRBTN_EN only.
        write(&mut pm, 0, STATUS_PORT, AccessSize::Dword, 0x0100_0100);
        assert_eq!(read(&mut pm, 0, STATUS_PORT, AccessSize::Dword), 0x0100_0000);
        // A byte W1C of the high half.
        pm.press_power_button();
        outb(&mut pm, 0, STATUS_PORT, 0xff);
        assert_eq!(inw(&mut pm, 0, STATUS_PORT), STATUS_POWER_BUTTON);
        outb(&mut pm, 0, STATUS_PORT + 1, 0x01);
        assert_eq!(inw(&mut pm, 0, STATUS_PORT), 0);
        // A word across status and enable.
        pm.press_power_button();
        assert_eq!(inw(&mut pm, 0, STATUS_PORT + 1), 0x0001);
        outw(&mut pm, 0, STATUS_PORT + 1, 0x0001);
        assert_eq!(inw(&mut pm, 0, STATUS_PORT), 0);
    }

    #[test]
    fn ports_outside_the_blocks_are_open_bus() {
        let mut pm = AcpiPm::default();
        for port in [0x5ff, 0x606, 0x607, 0x60c, 0x0000, 0xffff] {
            assert_eq!(inb(&mut pm, 0, port), 0xff, "{port:#x}");
            outb(&mut pm, 0, port, 0x34);
        }
        assert!(!pm.power_off_requested());
        assert_eq!(read(&mut pm, 0, 0x606, AccessSize::Word), 0xffff);
        // Straddling: the timer's two top bytes, then open bus.
        assert_eq!(read(&mut pm, SECOND, 0x60a, AccessSize::Dword), 0xffff_0036);
        assert_eq!(read(&mut pm, SECOND, 0x5ff, AccessSize::Word), 0x00ff);
        // A dword at 0xFFFF wraps to port 0 and on: still open bus.
        assert_eq!(read(&mut pm, SECOND, 0xffff, AccessSize::Dword), 0xffff_ffff);
        write(&mut pm, SECOND, 0xffff, AccessSize::Dword, u32::MAX);
        assert_eq!(pm, {
            let mut fresh = AcpiPm::default();
            fresh.set_time(SECOND);
            fresh
        });
    }

    #[test]
    fn the_ports_come_from_the_pm_registers() {
        let pm = AcpiPm::default();
        assert_eq!(pm.port_ranges(), [(0x600, 0x603), (0x604, 0x605), (0x608, 0x60b)]);
        assert_eq!(pm.sci_irq(), 9);
        // They register on an I/O bus without overlapping.
        let mut device = AcpiPm::default();
        let ranges = device.port_ranges();
        assert_eq!(IoBus::new().register(&ranges, &mut device), Ok(()));

        // Elsewhere, without a timer.
        let registers = PmRegisters { event_port: 0xb000, control_port: 0xb004, timer_port: None, sci_irq: 11 };
        let mut pm = AcpiPm::new(registers);
        assert_eq!(pm.port_ranges(), [(0xb000, 0xb003), (0xb004, 0xb005)]);
        assert_eq!(pm.sci_irq(), 11);
        assert_eq!(inw(&mut pm, SECOND, 0xb004), CONTROL_SCI_ENABLE);
        assert_eq!(read(&mut pm, SECOND, TIMER_PORT, AccessSize::Dword), u32::MAX);
        assert_eq!(read(&mut pm, SECOND, STATUS_PORT, AccessSize::Dword), u32::MAX);
        outw(&mut pm, SECOND, 0xb005, 0x34);
        assert!(pm.power_off_requested());

        // Blocks at the top of the port space are cut short, not wrapped.
        let registers = PmRegisters { event_port: 0xfffe, control_port: 0xfff0, timer_port: Some(0xfff8), sci_irq: 9 };
        let mut pm = AcpiPm::new(registers);
        assert_eq!(pm.port_ranges(), [(0xfffe, 0xffff), (0xfff0, 0xfff1), (0xfff8, 0xfffb)]);
        pm.press_power_button();
        assert_eq!(inw(&mut pm, 0, 0xfffe), STATUS_POWER_BUTTON);
        assert_eq!(inb(&mut pm, 0, 0x0000), 0xff, "no enable register at port 0");
    }

    #[test]
    fn time_never_goes_back() {
        let mut pm = AcpiPm::default();
        assert_eq!(timer(&mut pm, 10 * SECOND), 35_795_450 & PM_TIMER_MASK);
        assert_eq!(timer(&mut pm, SECOND), 35_795_450 & PM_TIMER_MASK);
        outw(&mut pm, 0, ENABLE_PORT, ENABLE_TIMER);
        outw(&mut pm, 0, STATUS_PORT, STATUS_TIMER);
        assert!(!pm.sci_level(0));
        assert_eq!(pm.next_sci_event(0), Some(time_of_tick(5 << 23)));
    }

    /// Ports around and in the default blocks.
    const FUZZ_PORTS: core::ops::Range<u16> = 0x5fc..0x610;

    fn size_of(selector: u8) -> AccessSize {
        match selector % 3 {
            0 => AccessSize::Byte,
            1 => AccessSize::Word,
            _ => AccessSize::Dword,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any accesses at advancing times and button presses: no panic,
        /// the timer is the 24-bit tick count, the SCI is the formula,
        /// SCI_EN set and SLP_EN clear, next events in the future, and
        /// power off exactly when an S5 SLP_EN byte reached port 0x605.
        #[test]
        fn arbitrary_accesses_keep_the_registers_consistent(
            start in 0_u64..u64::MAX / 2,
            operations in proptest::collection::vec(
                (FUZZ_PORTS, any::<u8>(), any::<u32>(), any::<bool>(), 0_u64..3 * SECOND, any::<bool>()),
                0..200,
            ),
        ) {
            let mut pm = AcpiPm::default();
            let mut now = start;
            let mut powered_off = false;
            for (port, selector, value, is_write, step, press) in operations {
                now += step;
                pm.set_time(now);
                let size = size_of(selector);
                if press {
                    pm.press_power_button();
                }
                if is_write {
                    prop_assert_eq!(pm.write(port, size, value), ControlFlow::Continue(()));
                    for (offset, byte) in (0_u16..).zip(value.to_le_bytes()).take(size.bytes()) {
                        let s5 = byte & 0x20 != 0 && (byte >> 2) & 0b111 == 5;
                        powered_off |= port.wrapping_add(offset) == CONTROL_PORT + 1 && s5;
                    }
                } else {
                    let _ = pm.read(port, size);
                }
                let timer = pm.read(TIMER_PORT, AccessSize::Dword);
                prop_assert!(timer <= PM_TIMER_MASK);
                prop_assert_eq!(u64::from(timer), ticks_at(now) % (1 << 24));
                prop_assert_eq!(pm.timer_value(now), timer);
                let status = pm.read(STATUS_PORT, AccessSize::Word);
                let enable = pm.read(ENABLE_PORT, AccessSize::Word);
                let control = pm.read(CONTROL_PORT, AccessSize::Word);
                prop_assert_eq!(status & !u32::from(STATUS_BITS), 0);
                prop_assert_eq!(enable & !u32::from(ENABLE_BITS), 0);
                prop_assert_eq!(control & u32::from(CONTROL_SCI_ENABLE | CONTROL_SLEEP_ENABLE), 1);
                let sci = pm.sci_level(now);
                prop_assert_eq!(sci, control & 1 != 0 && status & enable != 0);
                if let Some(next) = pm.next_sci_event(now) {
                    prop_assert!(next > now);
                    prop_assert!(!sci && enable & u32::from(ENABLE_TIMER) != 0);
                    prop_assert_eq!(ticks_at(next) % TIMER_STATUS_PERIOD_TICKS, 0);
                }
                prop_assert_eq!(pm.power_off_requested(), powered_off);
            }
        }

        /// At any time: the timer is below 2^24, tick times are exact.
        #[test]
        fn ticks_and_times_agree(now in any::<u64>(), tick in 1..=ticks_at(u64::MAX)) {
            prop_assert!(timer_value_at(now) <= PM_TIMER_MASK);
            let time = time_of_tick(tick);
            prop_assert_eq!(ticks_at(time), tick);
            prop_assert_eq!(ticks_at(time - 1), tick - 1);
            prop_assert!(time_of_tick(ticks_at(now)) <= now);
        }
    }
}
