//! The MC146818 real-time clock and the PC's CMOS memory: an index port
//! (0x70, whose bit 7 disables NMIs) and a data port (0x71) onto 128
//! bytes, of which 0x00..0x09 are the time, date and alarm, 0x0A..0x0D
//! the control and status registers A..D, and the rest battery-backed
//! memory the firmware conventions give meanings to.
//!
//! # Time
//!
//! The clock holds the time as a Unix second plus the guest time that
//! second began at, and the calendar is computed from it
//! ([`civil_from_days`], [`days_from_civil`]), so a guest that leaves the
//! clock alone for a year costs one division to catch up. As with the
//! timer, the device has no clock of its own: the VMM gives it the guest
//! time with [`Rtc::set_time`] before it dispatches an I/O exit to it, and
//! with [`Rtc::irq8_level`] and [`Rtc::next_irq8_event`]; time never goes
//! back. The wall time at reset is the constructor's Unix time, at guest
//! time 0.
//!
//! Updates happen at each second's end, instantly; register A's UIP bit
//! reads 1 for the 244 µs before each, as the chip's does, so a guest
//! that waits for UIP to clear before reading never reads across an
//! update. Register B's SET bit (and a divider held in reset) stops the
//! updates: the guest then sees and edits the fields as written (so it
//! may set the year, then the month, then the day without any of them
//! being corrected in between), and the clock resumes from them, with
//! the first update one second later (half a second after the divider
//! leaves reset), when the updates restart.
//!
//! # Interrupts
//!
//! IRQ8 is register C's IRQF: periodic (register A's rate), alarm and
//! update-ended flags, each gated by its enable in register B, held
//! until the guest reads register C. The VMM feeds [`Rtc::irq8_level`] to
//! the PIC's IRQ8 (an edge-triggered input, so the guest gets one
//! interrupt per rise) and arms its timer for [`Rtc::next_irq8_event`].
//! While IRQF is set no new event is reported, so even an 8 kHz periodic
//! rate costs the VMM one wake-up per read of register C.
//!
//! # Model choices
//!
//! The fields are held as numbers, not as the chip's bytes: changing
//! register B's binary or 12-hour bits changes how the time reads, not
//! the time (the chip would keep its bytes and count them wrongly until
//! rewritten; no guest relies on that). A time or date write with a
//! value the current format cannot express (a BCD nibble above 9, a
//! minute of 60, a month of 13) is dropped. A day beyond the month's end
//! rolls over into the next month: at once when the clock runs (so with
//! SET clear, January 31 then month 2 reads as March 3), at the first
//! update after SET clears when it does not (Linux sets SET first).
//! Register 6 (day of week) is computed from the date and ignores writes.
//! CMOS byte 0x32 is the century (in the current format), kept with the
//! year so that 2099 rolls over to 2100. Daylight-saving (DSE) and the
//! square-wave output (SQWE) are kept in register B and do nothing; any
//! divider selection other than reset counts at 32.768 kHz. Reads of the
//! index port return all ones (it is write-only on a PC).

use core::ops::ControlFlow;

use super::Nanoseconds;
use crate::access_size::AccessSize;
use crate::port_io::PortDevice;
use crate::stop::Stop;

/// The index port: bits 6..0 select a CMOS byte, bit 7 disables NMIs.
pub const INDEX_PORT: u16 = 0x70;
/// The data port: the selected byte.
pub const DATA_PORT: u16 = 0x71;
/// The port range the clock answers on, for registration on an I/O bus.
pub const PORT_RANGE: (u16, u16) = (INDEX_PORT, DATA_PORT);
/// How many CMOS bytes there are (registers included).
pub const CMOS_BYTES: usize = 128;

/// Seconds (0..59).
pub const REGISTER_SECONDS: u8 = 0x00;
/// Alarm seconds (0xC0..0xFF: any).
pub const REGISTER_ALARM_SECONDS: u8 = 0x01;
/// Minutes (0..59).
pub const REGISTER_MINUTES: u8 = 0x02;
/// Alarm minutes.
pub const REGISTER_ALARM_MINUTES: u8 = 0x03;
/// Hours (0..23, or 1..12 with bit 7 for PM in 12-hour mode).
pub const REGISTER_HOURS: u8 = 0x04;
/// Alarm hours.
pub const REGISTER_ALARM_HOURS: u8 = 0x05;
/// Day of the week (1 = Sunday .. 7 = Saturday).
pub const REGISTER_DAY_OF_WEEK: u8 = 0x06;
/// Day of the month (1..31).
pub const REGISTER_DAY_OF_MONTH: u8 = 0x07;
/// Month (1..12).
pub const REGISTER_MONTH: u8 = 0x08;
/// Year of the century (0..99).
pub const REGISTER_YEAR: u8 = 0x09;
/// Register A: UIP, divider, periodic rate.
pub const REGISTER_A: u8 = 0x0a;
/// Register B: SET, interrupt enables, formats.
pub const REGISTER_B: u8 = 0x0b;
/// Register C: interrupt flags, cleared by reading.
pub const REGISTER_C: u8 = 0x0c;
/// Register D: valid RAM and time.
pub const REGISTER_D: u8 = 0x0d;
/// The century (the IBM PC/AT convention, which ACPI's FADT may name).
pub const REGISTER_CENTURY: u8 = 0x32;

/// Register A: update in progress (read only).
pub const A_UPDATE_IN_PROGRESS: u8 = 0x80;
/// Register A's divider bits (DV2..0).
pub const A_DIVIDER: u8 = 0x70;
/// Register A's rate selection bits (RS3..0).
pub const A_RATE: u8 = 0x0f;
/// Register B: updates stopped, time being set.
pub const B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable.
pub const B_PERIODIC_ENABLE: u8 = 0x40;
/// Register B: alarm interrupt enable.
pub const B_ALARM_ENABLE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
pub const B_UPDATE_ENABLE: u8 = 0x10;
/// Register B: binary (else BCD) time and date.
pub const B_BINARY: u8 = 0x04;
/// Register B: 24-hour (else 12-hour) clock.
pub const B_24_HOUR: u8 = 0x02;
/// Register C: an enabled interrupt flag is set (IRQ8 asserted).
pub const C_IRQ: u8 = 0x80;
/// Register C: periodic flag.
pub const C_PERIODIC: u8 = 0x40;
/// Register C: alarm flag.
pub const C_ALARM: u8 = 0x20;
/// Register C: update-ended flag.
pub const C_UPDATE: u8 = 0x10;
/// Register D: valid RAM and time (the battery is good).
pub const D_VALID: u8 = 0x80;

/// How long before each update UIP reads 1.
pub const UPDATE_IN_PROGRESS_NS: Nanoseconds = 244_000;
/// Register A at reset: the 32.768 kHz divider, 1,024 Hz periodic rate.
const RESET_REGISTER_A: u8 = 0x26;
/// Register B at reset: 24-hour BCD, no interrupts (as firmware leaves it).
const RESET_REGISTER_B: u8 = B_24_HOUR;
/// The divider bits that hold the divider chain in reset (11x).
const DIVIDER_RESET: u8 = 0x60;
/// The time base's frequency.
const TIME_BASE_HZ: u64 = 32_768;
/// A byte of an alarm register at or above this matches any value.
const ALARM_ANY: u8 = 0xc0;
/// Register B's bits that enable the flags of register C (the same bits).
const INTERRUPT_ENABLES: u8 = B_PERIODIC_ENABLE | B_ALARM_ENABLE | B_UPDATE_ENABLE;

const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// Days in a 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 (the start of an era counted from March, so that
/// a leap day ends its year) to 1970-01-01.
const DAYS_FROM_ERA_START_TO_UNIX_EPOCH: i64 = 719_468;
/// The first day of each month of a year that starts in March.
const MARCH_YEAR_MONTH_STARTS: [i64; 12] = [0, 31, 61, 92, 122, 153, 184, 214, 245, 275, 306, 337];
/// 0000-01-01T00:00:00 in Unix seconds: the earliest time the clock
/// shows (a two-digit century and a two-digit year).
const EARLIEST_SECONDS: i64 = -62_167_219_200;
/// 10,000 years (25 whole eras, so the calendar repeats exactly).
const CLOCK_SPAN_SECONDS: i64 = 25 * DAYS_PER_ERA * SECONDS_PER_DAY;
/// 9999-12-31T23:59:59 in Unix seconds: the latest time the clock shows.
const LATEST_SECONDS: i64 = EARLIEST_SECONDS + CLOCK_SPAN_SECONDS - 1;

/// Days since 1970-01-01 of `year`-`month`-`day` in the proleptic
/// Gregorian calendar. Out-of-range months and days count on (month 13
/// is January of the next year, February 30 is March 1 or 2), which is
/// how a written day beyond a month's end rolls over. Saturates at the
/// ends of `i64` rather than overflow.
#[must_use]
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let months = year.saturating_mul(12).saturating_add(i64::from(month)).saturating_sub(1);
    let (year, month_index) = (months.div_euclid(12), months.rem_euclid(12));
    // Count years from March: January and February end the year before.
    let march_year = if month_index < 2 { year.saturating_sub(1) } else { year };
    let march_month = (month_index + 10) % 12;
    let era = march_year.div_euclid(400);
    let year_of_era = march_year.rem_euclid(400);
    // The leap days before `year_of_era`: each March-year k ends with one
    // when k + 1 is a leap year.
    let days_before_year = year_of_era * 365 + year_of_era / 4 - year_of_era / 100;
    let month_start = usize::try_from(march_month).ok().and_then(|index| MARCH_YEAR_MONTH_STARTS.get(index));
    let day_of_year = month_start.copied().unwrap_or(0) + i64::from(day) - 1;
    era.saturating_mul(DAYS_PER_ERA)
        .saturating_add(days_before_year + day_of_year)
        .saturating_sub(DAYS_FROM_ERA_START_TO_UNIX_EPOCH)
}

/// The proleptic Gregorian date (year, month 1..12, day 1..31) `days`
/// after 1970-01-01.
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days.saturating_add(DAYS_FROM_ERA_START_TO_UNIX_EPOCH);
    let era = days.div_euclid(DAYS_PER_ERA);
    let mut day = days.rem_euclid(DAYS_PER_ERA);
    // An era has four centuries of 36,524 days, the last one a day
    // longer (its final year ends with the 400-year leap day).
    let century = (day / 36_524).min(3);
    day -= century * 36_524;
    // A century has four-year cycles of 1,461 days ending with a leap
    // day (the century's last cycle lacks it, except in the fourth).
    let cycle = day / 1_461;
    day -= cycle * 1_461;
    let year_of_cycle = (day / 365).min(3);
    day -= year_of_cycle * 365;
    let march_year = era.saturating_mul(400).saturating_add(century * 100 + cycle * 4 + year_of_cycle);
    // `day` is 0..=365 in a year that starts in March.
    let march_month = MARCH_YEAR_MONTH_STARTS.iter().rposition(|start| *start <= day).unwrap_or(0);
    let month_start = MARCH_YEAR_MONTH_STARTS.get(march_month).copied().unwrap_or(0);
    let day_of_month = u8::try_from(day - month_start + 1).unwrap_or(1);
    let month = u8::try_from((march_month + 2) % 12 + 1).unwrap_or(1);
    let year = if month <= 2 { march_year.saturating_add(1) } else { march_year };
    (year, month, day_of_month)
}

/// A calendar date and time of day, as the clock's registers show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// The year (0..9999).
    pub year: u16,
    /// The month (1..12).
    pub month: u8,
    /// The day of the month (1..31).
    pub day: u8,
    /// The hour (0..23).
    pub hour: u8,
    /// The minute (0..59).
    pub minute: u8,
    /// The second (0..59).
    pub second: u8,
}

impl DateTime {
    /// The date and time of Unix time `seconds`, taken into the years
    /// 0..9999 the registers can show (the calendar repeats every 10,000
    /// years, so the rollover after 9999 is exact).
    #[must_use]
    pub fn from_unix_seconds(seconds: i64) -> DateTime {
        let seconds = wrap_into_clock_range(seconds);
        let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
        let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
        let part = |value: i64| u8::try_from(value).unwrap_or(0);
        DateTime {
            year: u16::try_from(year).unwrap_or(0),
            month,
            day,
            hour: part(second_of_day / 3600),
            minute: part(second_of_day / 60 % 60),
            second: part(second_of_day % 60),
        }
    }

    /// Its Unix time (a day beyond the month's end counts on into the
    /// next month).
    #[must_use]
    pub fn to_unix_seconds(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let time_of_day = i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        days.saturating_mul(SECONDS_PER_DAY).saturating_add(time_of_day)
    }

    /// The day of the week as the clock counts it: 1 (Sunday) to 7.
    #[must_use]
    pub fn day_of_week(&self) -> u8 {
        // 1970-01-01 was a Thursday (5).
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        u8::try_from((days + 4).rem_euclid(7) + 1).unwrap_or(1)
    }
}

/// `seconds` moved by whole 10,000-year spans into the clock's range.
fn wrap_into_clock_range(seconds: i64) -> i64 {
    seconds.saturating_sub(EARLIEST_SECONDS).rem_euclid(CLOCK_SPAN_SECONDS) + EARLIEST_SECONDS
}

/// The RAM the CMOS memory-size bytes describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamSizes {
    /// Bytes of RAM from address 0 up (below the 4 GiB hole).
    pub below_4gib_bytes: u64,
    /// Bytes of RAM from 4 GiB up.
    pub above_4gib_bytes: u64,
}

/// `value` in BCD (`value` below 100).
const fn to_bcd(value: u8) -> u8 {
    ((value / 10 % 10) << 4) | (value % 10)
}

/// A BCD byte's value, if both nibbles are digits.
const fn from_bcd(byte: u8) -> Option<u8> {
    let (tens, units) = (byte >> 4, byte & 0xf);
    if tens <= 9 && units <= 9 { Some(tens * 10 + units) } else { None }
}

/// How the time registers are written: register B's DM and 24/12 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Format {
    binary: bool,
    hours_24: bool,
}

impl Format {
    /// `value` (below 100) in this format.
    const fn encode(self, value: u8) -> u8 {
        if self.binary { value } else { to_bcd(value) }
    }

    /// A byte's value in this format, if it is one.
    const fn decode(self, byte: u8) -> Option<u8> {
        if self.binary { Some(byte) } else { from_bcd(byte) }
    }

    /// A value below `limit` from `byte`.
    fn decode_below(self, byte: u8, limit: u8) -> Option<u8> {
        self.decode(byte).filter(|value| *value < limit)
    }

    /// `hour` (0..23) in this format: in 12-hour mode 1..12 with bit 7
    /// for PM (midnight is 12 AM, noon 12 PM).
    const fn encode_hour(self, hour: u8) -> u8 {
        if self.hours_24 {
            return self.encode(hour);
        }
        let hour_12 = match hour % 12 {
            0 => 12,
            hour => hour,
        };
        let pm = if hour >= 12 { 0x80 } else { 0 };
        self.encode(hour_12) | pm
    }

    /// The hour (0..23) an hours byte in this format shows, if any.
    fn decode_hour(self, byte: u8) -> Option<u8> {
        if self.hours_24 {
            return self.decode_below(byte, 24);
        }
        let pm = byte & 0x80 != 0;
        let hour_12 = self.decode(byte & 0x7f).filter(|hour| (1..=12).contains(hour))?;
        Some(hour_12 % 12 + if pm { 12 } else { 0 })
    }
}

/// One alarm register, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AlarmField {
    /// 0xC0..0xFF: any value.
    Any,
    /// This value.
    Exactly(u32),
    /// A value the field never takes.
    Never,
}

impl AlarmField {
    fn new(byte: u8, decoded: Option<u8>) -> AlarmField {
        if byte >= ALARM_ANY {
            AlarmField::Any
        } else {
            decoded.map_or(AlarmField::Never, |value| AlarmField::Exactly(u32::from(value)))
        }
    }

    fn matches(self, value: u32) -> bool {
        match self {
            AlarmField::Any => true,
            AlarmField::Exactly(wanted) => wanted == value,
            AlarmField::Never => false,
        }
    }
}

/// The MC146818 and its CMOS memory.
///
/// At reset: the constructor's wall time, register A 0x26 (32.768 kHz
/// divider, 1,024 Hz rate), B 0x02 (24-hour BCD, no interrupts), C 0, D
/// 0x80, index 0, NMIs enabled, the memory zero but for the memory-size
/// bytes ([`Rtc::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtc {
    /// The CMOS bytes; the clock's registers (but the alarm bytes) are
    /// held apart and their slots unused.
    memory: [u8; CMOS_BYTES],
    /// The selected byte (bits 6..0 of the last index write).
    index: u8,
    /// Bit 7 of the last index write.
    nmi_disabled: bool,
    register_a: u8,
    register_b: u8,
    /// Register C's PF, AF and UF.
    flags: u8,
    /// The Unix second the running clock shows.
    seconds: i64,
    /// The guest time that second began.
    second_started_at: Nanoseconds,
    /// While updates are stopped (SET, or the divider in reset): the
    /// fields the guest sees and edits.
    held: Option<DateTime>,
    /// The latest guest time given.
    now: Nanoseconds,
}

impl Rtc {
    /// The clock at reset showing Unix time `unix_seconds` (from 9999's
    /// end on, 9999-12-31 23:59:59), with the memory-size bytes of `ram`
    /// (each capped at what its bytes hold):
    ///
    /// | bytes | what |
    /// | --- | --- |
    /// | 0x15, 0x16 | base memory in KiB (640 with enough RAM) |
    /// | 0x17, 0x18 and 0x30, 0x31 | KiB above 1 MiB (below 4 GiB), at most 0xFFFF |
    /// | 0x34, 0x35 | 64 KiB units above 16 MiB (below 4 GiB), at most 0xFFFF |
    /// | 0x5B..0x5D | 64 KiB units above 4 GiB, at most 0xFF_FFFF |
    #[must_use]
    pub fn new(unix_seconds: u64, ram: RamSizes) -> Rtc {
        let mut memory = [0; CMOS_BYTES];
        let below = ram.below_4gib_bytes;
        let capped_u16 = |value: u64| u16::try_from(value).unwrap_or(u16::MAX).to_le_bytes();
        let base_kib = capped_u16((below / 1024).min(640));
        let extended_kib = capped_u16(below.saturating_sub(1 << 20) / 1024);
        let above_16_mib = capped_u16(below.saturating_sub(16 << 20) / (64 << 10));
        let above_4_gib = (ram.above_4gib_bytes / (64 << 10)).min(0xff_ffff).to_le_bytes();
        for (index, bytes) in [
            (0x15, &base_kib[..]),
            (0x17, &extended_kib[..]),
            (0x30, &extended_kib[..]),
            (0x34, &above_16_mib[..]),
            (0x5b, &above_4_gib[..3]),
        ] {
            if let Some(slots) = memory.get_mut(index..index + bytes.len()) {
                slots.copy_from_slice(bytes);
            }
        }
        Rtc {
            memory,
            index: 0,
            nmi_disabled: false,
            register_a: RESET_REGISTER_A,
            register_b: RESET_REGISTER_B,
            flags: 0,
            seconds: i64::try_from(unix_seconds).unwrap_or(i64::MAX).min(LATEST_SECONDS),
            second_started_at: 0,
            held: None,
            now: 0,
        }
    }

    /// Gives the device the guest time, running the clock up to it: call
    /// it before dispatching an I/O exit to it. A time before one already
    /// given counts as that one.
    pub fn set_time(&mut self, now: Nanoseconds) {
        let now = now.max(self.now);
        let before = self.now;
        self.now = now;
        if let Some(period) = self.periodic_ticks()
            && time_base_ticks(now) / period > time_base_ticks(before) / period
        {
            self.flags |= C_PERIODIC;
        }
        if self.held.is_some() {
            return;
        }
        let whole_seconds = now.saturating_sub(self.second_started_at) / NANOSECONDS_PER_SECOND;
        if whole_seconds == 0 {
            return;
        }
        let from = self.seconds;
        self.seconds = wrap_into_clock_range(from.saturating_add(i64::try_from(whole_seconds).unwrap_or(i64::MAX)));
        self.second_started_at =
            self.second_started_at.saturating_add(whole_seconds.saturating_mul(NANOSECONDS_PER_SECOND));
        self.flags |= C_UPDATE;
        if self.seconds_until_alarm(from).is_some_and(|wait| u64::from(wait) <= whole_seconds) {
            self.flags |= C_ALARM;
        }
    }

    /// Whether IRQ8 is asserted at `now` (register C's IRQF).
    pub fn irq8_level(&mut self, now: Nanoseconds) -> bool {
        self.set_time(now);
        self.interrupt_requested()
    }

    /// When IRQ8 could next rise: the next periodic, alarm or update
    /// event whose interrupt is enabled; `None` if none is, or while IRQ8
    /// is asserted (it can only rise again after the guest reads
    /// register C, which is an exit).
    pub fn next_irq8_event(&mut self, now: Nanoseconds) -> Option<Nanoseconds> {
        self.set_time(now);
        if self.interrupt_requested() {
            return None;
        }
        let periodic = self.periodic_ticks().filter(|_| self.register_b & B_PERIODIC_ENABLE != 0).map(|period| {
            let next = (time_base_ticks(self.now) / period).saturating_add(1).saturating_mul(period);
            time_of_time_base_tick(next)
        });
        let running = self.held.is_none();
        let after_seconds =
            |seconds: u64| self.second_started_at.saturating_add(seconds.saturating_mul(NANOSECONDS_PER_SECOND));
        let update = (running && self.register_b & B_UPDATE_ENABLE != 0).then(|| after_seconds(1));
        let alarm = (running && self.register_b & B_ALARM_ENABLE != 0)
            .then(|| self.seconds_until_alarm(self.seconds))
            .flatten()
            .map(|wait| after_seconds(u64::from(wait)));
        [periodic, update, alarm].into_iter().flatten().min()
    }

    /// The date and time the clock shows at `now` (the held fields while
    /// updates are stopped).
    pub fn date_time(&mut self, now: Nanoseconds) -> DateTime {
        self.set_time(now);
        self.current()
    }

    /// Whether the guest's last index write disabled NMIs (bit 7).
    #[must_use]
    pub const fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The date and time shown.
    fn current(&self) -> DateTime {
        self.held.unwrap_or_else(|| DateTime::from_unix_seconds(self.seconds))
    }

    const fn format(&self) -> Format {
        Format { binary: self.register_b & B_BINARY != 0, hours_24: self.register_b & B_24_HOUR != 0 }
    }

    /// Whether the divider chain is held in reset (no updates, no
    /// periodic interrupts).
    const fn divider_in_reset(&self) -> bool {
        self.register_a & DIVIDER_RESET == DIVIDER_RESET
    }

    /// Whether updates are stopped.
    const fn updates_stopped(&self) -> bool {
        self.register_b & B_SET != 0 || self.divider_in_reset()
    }

    /// The periodic interrupt's period in time-base ticks, if the rate
    /// selects one: rate r is 65,536 Hz >> r, except that with a
    /// 32.768 kHz time base rates 1 and 2 give the 256 Hz and 128 Hz of
    /// rates 8 and 9, as on the chip.
    fn periodic_ticks(&self) -> Option<u64> {
        if self.divider_in_reset() {
            return None;
        }
        match self.register_a & A_RATE {
            0 => None,
            1 => Some(1 << 7),
            2 => Some(1 << 8),
            rate => Some(1 << (rate - 1)),
        }
    }

    /// IRQF: a flag set whose interrupt is enabled.
    const fn interrupt_requested(&self) -> bool {
        self.flags & self.register_b & INTERRUPT_ENABLES != 0
    }

    /// Whether an update is at most [`UPDATE_IN_PROGRESS_NS`] away. The
    /// chip keeps UIP set for the update cycle too (1,984 us at 32.768
    /// kHz); here the update is instant, so UIP falls at the second's
    /// boundary: a reader that waits for UIP to fall then reads a time
    /// that is whole, which is all UIP promises.
    const fn update_in_progress(&self) -> bool {
        let into_second = self.now.saturating_sub(self.second_started_at) % NANOSECONDS_PER_SECOND;
        self.held.is_none() && into_second >= NANOSECONDS_PER_SECOND - UPDATE_IN_PROGRESS_NS
    }

    /// How many seconds after Unix second `from` the alarm next matches
    /// (1..=86,400), if it can.
    fn seconds_until_alarm(&self, from: i64) -> Option<u32> {
        let format = self.format();
        let byte = |index: u8| self.memory.get(usize::from(index)).copied().unwrap_or(0);
        let (second_byte, minute_byte, hour_byte) =
            (byte(REGISTER_ALARM_SECONDS), byte(REGISTER_ALARM_MINUTES), byte(REGISTER_ALARM_HOURS));
        let second = AlarmField::new(second_byte, format.decode_below(second_byte, 60));
        let minute = AlarmField::new(minute_byte, format.decode_below(minute_byte, 60));
        let hour = AlarmField::new(hour_byte, format.decode_hour(hour_byte));
        if [second, minute, hour].contains(&AlarmField::Never) {
            return None;
        }
        let second_of_day = u32::try_from(from.rem_euclid(SECONDS_PER_DAY)).unwrap_or(0);
        let (first_minute, first_second) = (second_of_day / 60, second_of_day % 60);
        // Each minute of the coming day, and this minute again tomorrow.
        for step in 0..=1440 {
            let minute_of_day = (first_minute + step) % 1440;
            if !hour.matches(minute_of_day / 60) || !minute.matches(minute_of_day % 60) {
                continue;
            }
            let earliest = if step == 0 { first_second + 1 } else { 0 };
            let at = match second {
                AlarmField::Exactly(wanted) if wanted >= earliest => wanted,
                AlarmField::Any if earliest < 60 => earliest,
                _ => continue,
            };
            return Some(step * 60 + at - first_second);
        }
        None
    }

    /// Changes the date and time shown: the held fields while updates are
    /// stopped, else the running clock (keeping its second's phase).
    fn set_current(&mut self, date_time: DateTime) {
        match &mut self.held {
            Some(held) => *held = date_time,
            None => self.seconds = wrap_into_clock_range(date_time.to_unix_seconds()),
        }
    }

    /// A write of a time or date register.
    fn write_time(&mut self, index: u8, value: u8) {
        let format = self.format();
        let mut date_time = self.current();
        let written = match index {
            REGISTER_SECONDS => format.decode_below(value, 60).map(|second| date_time.second = second),
            REGISTER_MINUTES => format.decode_below(value, 60).map(|minute| date_time.minute = minute),
            REGISTER_HOURS => format.decode_hour(value).map(|hour| date_time.hour = hour),
            REGISTER_DAY_OF_MONTH => {
                format.decode(value).filter(|day| (1..=31).contains(day)).map(|day| date_time.day = day)
            }
            REGISTER_MONTH => {
                format.decode(value).filter(|month| (1..=12).contains(month)).map(|month| date_time.month = month)
            }
            REGISTER_YEAR => format
                .decode_below(value, 100)
                .map(|year| date_time.year = date_time.year / 100 * 100 + u16::from(year)),
            REGISTER_CENTURY => format
                .decode_below(value, 100)
                .map(|century| date_time.year = u16::from(century) * 100 + date_time.year % 100),
            _ => None,
        };
        if written.is_some() {
            self.set_current(date_time);
        }
    }

    /// A write of register A or B, stopping or restarting the updates.
    fn write_control(&mut self, index: u8, value: u8) {
        let (were_stopped, divider_was_in_reset) = (self.updates_stopped(), self.divider_in_reset());
        if index == REGISTER_A {
            self.register_a = value & !A_UPDATE_IN_PROGRESS;
        } else {
            // Setting SET clears UIE, as on the chip.
            self.register_b = if value & B_SET != 0 { value & !B_UPDATE_ENABLE } else { value };
        }
        match (were_stopped, self.updates_stopped()) {
            (false, true) => self.held = Some(self.current()),
            (true, false) => {
                if let Some(held) = self.held.take() {
                    self.seconds = wrap_into_clock_range(held.to_unix_seconds());
                }
                // The first update comes a second after SET clears, half
                // a second after the divider leaves reset.
                let phase = if divider_was_in_reset { NANOSECONDS_PER_SECOND / 2 } else { 0 };
                self.second_started_at = self.now.saturating_sub(phase);
            }
            _ => {}
        }
    }

    /// A read of CMOS byte `index` (0..127).
    fn read_register(&mut self, index: u8) -> u8 {
        let format = self.format();
        let date_time = self.current();
        match index {
            REGISTER_SECONDS => format.encode(date_time.second),
            REGISTER_MINUTES => format.encode(date_time.minute),
            REGISTER_HOURS => format.encode_hour(date_time.hour),
            REGISTER_DAY_OF_WEEK => format.encode(date_time.day_of_week()),
            REGISTER_DAY_OF_MONTH => format.encode(date_time.day),
            REGISTER_MONTH => format.encode(date_time.month),
            REGISTER_YEAR => format.encode(u8::try_from(date_time.year % 100).unwrap_or(0)),
            REGISTER_CENTURY => format.encode(u8::try_from(date_time.year / 100 % 100).unwrap_or(0)),
            REGISTER_A => self.register_a | if self.update_in_progress() { A_UPDATE_IN_PROGRESS } else { 0 },
            REGISTER_B => self.register_b,
            REGISTER_C => {
                let irq = if self.interrupt_requested() { C_IRQ } else { 0 };
                let value = self.flags | irq;
                self.flags = 0;
                value
            }
            REGISTER_D => D_VALID,
            _ => self.memory.get(usize::from(index)).copied().unwrap_or(0xff),
        }
    }

    /// A write of CMOS byte `index` (0..127).
    fn write_register(&mut self, index: u8, value: u8) {
        match index {
            REGISTER_SECONDS
            | REGISTER_MINUTES
            | REGISTER_HOURS
            | REGISTER_DAY_OF_MONTH
            | REGISTER_MONTH
            | REGISTER_YEAR
            | REGISTER_CENTURY => self.write_time(index, value),
            REGISTER_A | REGISTER_B => self.write_control(index, value),
            // Computed, or read only.
            REGISTER_DAY_OF_WEEK | REGISTER_C | REGISTER_D => {}
            // The alarm bytes and the memory.
            _ => {
                if let Some(slot) = self.memory.get_mut(usize::from(index)) {
                    *slot = value;
                }
            }
        }
    }

    /// An IN of one byte from `port`.
    fn read_byte(&mut self, port: u16) -> u8 {
        match port {
            DATA_PORT => self.read_register(self.index),
            _ => 0xff,
        }
    }

    /// An OUT of one byte to `port`.
    fn write_byte(&mut self, port: u16, value: u8) {
        match port {
            INDEX_PORT => {
                self.index = value & 0x7f;
                self.nmi_disabled = value & 0x80 != 0;
            }
            DATA_PORT => self.write_register(self.index, value),
            _ => {}
        }
    }
}

/// The 32.768 kHz time base's tick in progress at `now`.
fn time_base_ticks(now: Nanoseconds) -> u64 {
    let ticks = u128::from(now) * u128::from(TIME_BASE_HZ) / u128::from(NANOSECONDS_PER_SECOND);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The first nanosecond of time-base tick `tick`, or the last there is.
fn time_of_time_base_tick(tick: u64) -> Nanoseconds {
    let time = (u128::from(tick) * u128::from(NANOSECONDS_PER_SECOND)).div_ceil(u128::from(TIME_BASE_HZ));
    u64::try_from(time).unwrap_or(u64::MAX)
}

/// Accesses act at the time last given by [`Rtc::set_time`]. A wider
/// access is split into byte accesses at consecutive ports, as the ISA
/// bus does for byte-wide devices; bits above the access's size read
/// zero.
impl PortDevice for Rtc {
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

    const SECOND: Nanoseconds = NANOSECONDS_PER_SECOND;
    /// 2026-12-31 23:59:59 UTC.
    const END_OF_2026: u64 = 1_798_761_599;
    /// 2026-07-04 13:05:09 UTC, a Saturday (no alarm at reset's
    /// 00:00:00 within the tests' reach).
    const MIDDAY: u64 = 1_783_170_309;
    const RAM_512_MIB: RamSizes = RamSizes { below_4gib_bytes: 512 << 20, above_4gib_bytes: 0 };

    fn rtc_at(unix_seconds: u64) -> Rtc {
        Rtc::new(unix_seconds, RAM_512_MIB)
    }

    fn read(rtc: &mut Rtc, now: Nanoseconds, index: u8) -> u8 {
        rtc.set_time(now);
        assert_eq!(rtc.write(INDEX_PORT, AccessSize::Byte, u32::from(index)), ControlFlow::Continue(()));
        rtc.read(DATA_PORT, AccessSize::Byte).to_le_bytes()[0]
    }

    fn write(rtc: &mut Rtc, now: Nanoseconds, index: u8, value: u8) {
        rtc.set_time(now);
        assert_eq!(rtc.write(INDEX_PORT, AccessSize::Byte, u32::from(index)), ControlFlow::Continue(()));
        assert_eq!(rtc.write(DATA_PORT, AccessSize::Byte, u32::from(value)), ControlFlow::Continue(()));
    }

    /// Seconds, minutes, hours, day of week, day, month, year, century as
    /// the registers show them.
    fn registers(rtc: &mut Rtc, now: Nanoseconds) -> [u8; 8] {
        [
            REGISTER_SECONDS,
            REGISTER_MINUTES,
            REGISTER_HOURS,
            REGISTER_DAY_OF_WEEK,
            REGISTER_DAY_OF_MONTH,
            REGISTER_MONTH,
            REGISTER_YEAR,
            REGISTER_CENTURY,
        ]
        .map(|index| read(rtc, now, index))
    }

    fn date(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
        DateTime { year, month, day, hour, minute, second }
    }

    /// Days since 1970 counted the slow way, a year and a month at a time.
    fn reference_days(year: i64, month: u8, day: u8) -> i64 {
        let leap = |year: i64| year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let year_days = |year: i64| if leap(year) { 366 } else { 365 };
        let mut days = 0;
        if year >= 1970 {
            for y in 1970..year {
                days += year_days(y);
            }
        } else {
            for y in year..1970 {
                days -= year_days(y);
            }
        }
        let month_days = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        days + month_days[..usize::from(month - 1)].iter().sum::<i64>() + i64::from(day) - 1
    }

    #[test]
    fn the_calendar_conversions_know_the_leap_years() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2100, 3, 1), 47_541);
        assert_eq!(days_from_civil(2100, 2, 28), 47_540);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(0, 1, 1) * SECONDS_PER_DAY, EARLIEST_SECONDS);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // Days beyond a month's end and month 13 count on.
        assert_eq!(days_from_civil(2026, 2, 31), days_from_civil(2026, 3, 3));
        assert_eq!(days_from_civil(2026, 13, 1), days_from_civil(2027, 1, 1));
        assert_eq!(days_from_civil(2026, 0, 1), days_from_civil(2025, 12, 1));
        // Hostile extremes saturate instead of overflowing.
        let _ = days_from_civil(i64::MAX, 255, 255);
        let _ = days_from_civil(i64::MIN, 0, 0);
        let _ = civil_from_days(i64::MAX);
        let _ = civil_from_days(i64::MIN);
        assert_eq!(DateTime::from_unix_seconds(LATEST_SECONDS), date(9999, 12, 31, 23, 59, 59));
        assert_eq!(DateTime::from_unix_seconds(LATEST_SECONDS + 1), date(0, 1, 1, 0, 0, 0));
    }

    #[test]
    fn reset_shows_the_constructors_time_in_bcd_then_binary() {
        let mut rtc = rtc_at(MIDDAY);
        assert_eq!(registers(&mut rtc, 0), [0x09, 0x05, 0x13, 0x07, 0x04, 0x07, 0x26, 0x20]);
        assert_eq!(read(&mut rtc, 0, REGISTER_B), 0x02);
        write(&mut rtc, 0, REGISTER_B, B_24_HOUR | B_BINARY);
        assert_eq!(registers(&mut rtc, 0), [9, 5, 13, 7, 4, 7, 26, 20]);
        assert_eq!(rtc.date_time(0), date(2026, 7, 4, 13, 5, 9));
    }

    #[test]
    fn the_year_rolls_over_at_the_end_of_2026() {
        let mut rtc = rtc_at(END_OF_2026);
        assert_eq!(registers(&mut rtc, 0), [0x59, 0x59, 0x23, 0x05, 0x31, 0x12, 0x26, 0x20]);
        assert_eq!(registers(&mut rtc, SECOND - 1), [0x59, 0x59, 0x23, 0x05, 0x31, 0x12, 0x26, 0x20]);
        assert_eq!(registers(&mut rtc, SECOND), [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x27, 0x20]);
        // The alarm bytes are zero at reset: midnight matched.
        assert_eq!(read(&mut rtc, SECOND, REGISTER_C), C_PERIODIC | C_ALARM | C_UPDATE);
    }

    #[test]
    fn leap_days_and_centuries_roll_over() {
        for (start, after) in [
            (951_782_399, date(2000, 2, 29, 0, 0, 0)),
            (951_868_799, date(2000, 3, 1, 0, 0, 0)),
            (4_107_542_399, date(2100, 3, 1, 0, 0, 0)),
            (4_102_444_799, date(2100, 1, 1, 0, 0, 0)),
            (946_684_799, date(2000, 1, 1, 0, 0, 0)),
        ] {
            let mut rtc = rtc_at(start);
            assert_eq!(rtc.date_time(SECOND), after, "one second after {start}");
        }
        let mut rtc = rtc_at(4_102_444_799);
        assert_eq!(read(&mut rtc, SECOND, REGISTER_CENTURY), 0x21);
        assert_eq!(read(&mut rtc, SECOND, REGISTER_YEAR), 0x00);
    }

    #[test]
    fn a_long_absence_costs_one_step() {
        let mut rtc = rtc_at(END_OF_2026);
        // Ten years of guest time at once: 2036-12-31 23:59:59 plus the
        // leap days 2028, 2032, 2036 take three days off the calendar.
        let ten_years = (10 * 365 + 3) * 86_400 * SECOND;
        assert_eq!(rtc.date_time(ten_years), date(2036, 12, 31, 23, 59, 59));
    }

    #[test]
    fn the_12_hour_format_shows_and_takes_am_and_pm() {
        let mut rtc = rtc_at(MIDDAY);
        write(&mut rtc, 0, REGISTER_B, 0);
        assert_eq!(read(&mut rtc, 0, REGISTER_HOURS), 0x81);
        for (hour, shown) in [(0, 0x12), (1, 0x01), (11, 0x11), (12, 0x92), (23, 0x91)] {
            let format = Format { binary: false, hours_24: false };
            assert_eq!(format.encode_hour(hour), shown);
            assert_eq!(format.decode_hour(shown), Some(hour));
        }
        let binary = Format { binary: true, hours_24: false };
        assert_eq!(binary.encode_hour(12), 0x8c);
        write(&mut rtc, 0, REGISTER_HOURS, 0x92);
        assert_eq!(rtc.date_time(0).hour, 12);
        // Hour 0 and 13 do not exist on a 12-hour clock.
        write(&mut rtc, 0, REGISTER_HOURS, 0x00);
        write(&mut rtc, 0, REGISTER_HOURS, 0x13);
        assert_eq!(rtc.date_time(0).hour, 12);
    }

    #[test]
    fn set_halts_the_clock_while_linux_writes_the_date() {
        // 2026-01-31 10:00:00.
        let mut rtc = rtc_at(1_769_853_600);
        write(&mut rtc, 0, REGISTER_B, B_SET | B_24_HOUR | B_UPDATE_ENABLE);
        // SET clears UIE.
        assert_eq!(read(&mut rtc, 0, REGISTER_B), B_SET | B_24_HOUR);
        // Year, month, day, hours, minutes, seconds: 2027-02-15 08:30:00.
        // February 31 exists for a moment without being corrected.
        write(&mut rtc, 0, REGISTER_YEAR, 0x27);
        write(&mut rtc, 0, REGISTER_MONTH, 0x02);
        assert_eq!(read(&mut rtc, 0, REGISTER_DAY_OF_MONTH), 0x31);
        write(&mut rtc, 0, REGISTER_DAY_OF_MONTH, 0x15);
        write(&mut rtc, 0, REGISTER_HOURS, 0x08);
        write(&mut rtc, 0, REGISTER_MINUTES, 0x30);
        write(&mut rtc, 0, REGISTER_SECONDS, 0x00);
        // Stopped: five seconds pass without an update, UIP stays clear.
        assert_eq!(read(&mut rtc, 5 * SECOND - 1000, REGISTER_A) & A_UPDATE_IN_PROGRESS, 0);
        assert_eq!(rtc.date_time(5 * SECOND), date(2027, 2, 15, 8, 30, 0));
        write(&mut rtc, 5 * SECOND, REGISTER_B, B_24_HOUR);
        assert_eq!(rtc.date_time(6 * SECOND - 1), date(2027, 2, 15, 8, 30, 0));
        assert_eq!(rtc.date_time(6 * SECOND), date(2027, 2, 15, 8, 30, 1));
        assert_eq!(read(&mut rtc, 6 * SECOND, REGISTER_DAY_OF_WEEK), 0x02);
    }

    #[test]
    fn a_day_beyond_the_months_end_rolls_over_when_the_clock_runs() {
        let mut rtc = rtc_at(1_769_853_600);
        write(&mut rtc, 0, REGISTER_B, B_SET | B_24_HOUR);
        write(&mut rtc, 0, REGISTER_MONTH, 0x02);
        write(&mut rtc, 0, REGISTER_B, B_24_HOUR);
        assert_eq!(rtc.date_time(0), date(2026, 3, 3, 10, 0, 0));
    }

    #[test]
    fn writes_the_format_cannot_express_are_dropped() {
        let mut rtc = rtc_at(MIDDAY);
        for (index, value) in [
            (REGISTER_SECONDS, 0x60),
            (REGISTER_SECONDS, 0x1a),
            (REGISTER_MINUTES, 0xff),
            (REGISTER_HOURS, 0x24),
            (REGISTER_DAY_OF_MONTH, 0x00),
            (REGISTER_DAY_OF_MONTH, 0x32),
            (REGISTER_MONTH, 0x13),
            (REGISTER_YEAR, 0xa0),
            (REGISTER_CENTURY, 0x9a),
            (REGISTER_DAY_OF_WEEK, 0x01),
        ] {
            write(&mut rtc, 0, index, value);
        }
        assert_eq!(rtc.date_time(0), date(2026, 7, 4, 13, 5, 9));
        // Writes while running take effect at once and keep the phase.
        write(&mut rtc, SECOND / 2, REGISTER_MINUTES, 0x45);
        assert_eq!(rtc.date_time(SECOND - 1), date(2026, 7, 4, 13, 45, 9));
        assert_eq!(rtc.date_time(SECOND), date(2026, 7, 4, 13, 45, 10));
        // Binary writes in binary mode; the century moves the year.
        write(&mut rtc, SECOND, REGISTER_B, B_24_HOUR | B_BINARY);
        write(&mut rtc, SECOND, REGISTER_CENTURY, 19);
        write(&mut rtc, SECOND, REGISTER_YEAR, 99);
        assert_eq!(rtc.date_time(SECOND).year, 1999);
    }

    #[test]
    fn uip_reads_one_for_the_244_us_before_each_update() {
        let mut rtc = rtc_at(END_OF_2026);
        assert_eq!(read(&mut rtc, 0, REGISTER_A), RESET_REGISTER_A);
        let uip = |rtc: &mut Rtc, now| read(rtc, now, REGISTER_A) & A_UPDATE_IN_PROGRESS != 0;
        assert!(!uip(&mut rtc, SECOND - UPDATE_IN_PROGRESS_NS - 1));
        assert!(uip(&mut rtc, SECOND - UPDATE_IN_PROGRESS_NS));
        assert!(uip(&mut rtc, SECOND - 1));
        assert!(!uip(&mut rtc, SECOND));
        // UIP is read only.
        write(&mut rtc, SECOND, REGISTER_A, 0xa6);
        assert_eq!(read(&mut rtc, SECOND, REGISTER_A), 0x26);
    }

    #[test]
    fn register_d_reports_valid_time_and_ignores_writes() {
        let mut rtc = rtc_at(0);
        assert_eq!(read(&mut rtc, 0, REGISTER_D), 0x80);
        write(&mut rtc, 0, REGISTER_D, 0x00);
        assert_eq!(read(&mut rtc, 0, REGISTER_D), 0x80);
        write(&mut rtc, 0, REGISTER_C, 0xff);
        assert_eq!(read(&mut rtc, 0, REGISTER_C), 0x00);
    }

    #[test]
    fn the_update_interrupt_is_held_until_register_c_is_read() {
        let mut rtc = rtc_at(MIDDAY);
        assert_eq!(rtc.next_irq8_event(0), None);
        write(&mut rtc, 0, REGISTER_B, B_24_HOUR | B_UPDATE_ENABLE);
        assert_eq!(rtc.next_irq8_event(0), Some(SECOND));
        assert!(!rtc.irq8_level(SECOND - 1));
        assert!(rtc.irq8_level(SECOND));
        assert_eq!(rtc.next_irq8_event(SECOND), None);
        assert!(rtc.irq8_level(3 * SECOND));
        // The periodic flag is set too (rate 6), without its enable.
        assert_eq!(read(&mut rtc, 3 * SECOND, REGISTER_C), C_IRQ | C_PERIODIC | C_UPDATE);
        assert!(!rtc.irq8_level(3 * SECOND));
        assert_eq!(read(&mut rtc, 3 * SECOND, REGISTER_C), 0);
        assert_eq!(rtc.next_irq8_event(3 * SECOND), Some(4 * SECOND));
    }

    #[test]
    fn flags_are_set_without_their_enables_but_do_not_interrupt() {
        let mut rtc = rtc_at(MIDDAY);
        assert!(!rtc.irq8_level(2 * SECOND));
        assert_eq!(read(&mut rtc, 2 * SECOND, REGISTER_C), C_PERIODIC | C_UPDATE);
        // Enabling an interrupt whose flag is set asserts IRQ8 at once.
        rtc.set_time(3 * SECOND);
        write(&mut rtc, 3 * SECOND, REGISTER_B, B_24_HOUR | B_UPDATE_ENABLE);
        assert!(rtc.irq8_level(3 * SECOND));
    }

    #[test]
    fn the_periodic_interrupt_follows_register_as_rate() {
        let mut rtc = rtc_at(END_OF_2026);
        write(&mut rtc, 0, REGISTER_B, B_24_HOUR | B_PERIODIC_ENABLE);
        // Rate 6: 1,024 Hz, 32 ticks of the time base.
        assert_eq!(rtc.next_irq8_event(0), Some(976_563));
        assert!(!rtc.irq8_level(976_562));
        assert!(rtc.irq8_level(976_563));
        assert_eq!(read(&mut rtc, 976_563, REGISTER_C), C_IRQ | C_PERIODIC);
        // (Reading C first: the flag of the second gone by holds IRQ8.)
        let _ = read(&mut rtc, SECOND, REGISTER_C);
        for (rate, period) in [(1, 128), (2, 256), (3, 4), (15, 16_384)] {
            write(&mut rtc, SECOND, REGISTER_A, 0x20 | rate);
            let next = rtc.next_irq8_event(SECOND).unwrap();
            assert_eq!(next, time_of_time_base_tick((time_base_ticks(SECOND) / period + 1) * period));
        }
        write(&mut rtc, SECOND, REGISTER_A, 0x20);
        assert_eq!(rtc.next_irq8_event(SECOND), None);
    }

    #[test]
    fn the_alarm_matches_its_time_and_dont_care_fields() {
        let mut rtc = rtc_at(MIDDAY);
        write(&mut rtc, 0, REGISTER_B, B_24_HOUR | B_ALARM_ENABLE);
        write(&mut rtc, 0, REGISTER_ALARM_HOURS, 0x13);
        write(&mut rtc, 0, REGISTER_ALARM_MINUTES, 0x06);
        write(&mut rtc, 0, REGISTER_ALARM_SECONDS, 0x00);
        assert_eq!(rtc.next_irq8_event(0), Some(51 * SECOND));
        assert!(!rtc.irq8_level(50 * SECOND));
        assert!(rtc.irq8_level(51 * SECOND));
        assert_eq!(read(&mut rtc, 51 * SECOND, REGISTER_C) & C_ALARM, C_ALARM);
        // The same time tomorrow.
        assert_eq!(rtc.next_irq8_event(51 * SECOND), Some((51 + 86_400) * SECOND));
        // Every second: all three don't-care.
        for index in [REGISTER_ALARM_HOURS, REGISTER_ALARM_MINUTES, REGISTER_ALARM_SECONDS] {
            write(&mut rtc, 51 * SECOND, index, 0xff);
        }
        assert_eq!(rtc.next_irq8_event(51 * SECOND), Some(52 * SECOND));
        // Every hour at minute 0: the next is 14:00:00.
        write(&mut rtc, 51 * SECOND, REGISTER_ALARM_MINUTES, 0x00);
        write(&mut rtc, 51 * SECOND, REGISTER_ALARM_SECONDS, 0x00);
        assert_eq!(rtc.next_irq8_event(51 * SECOND), Some((51 + 54 * 60) * SECOND));
        // An hour that does not exist never matches.
        write(&mut rtc, 51 * SECOND, REGISTER_ALARM_HOURS, 0x24);
        assert_eq!(rtc.next_irq8_event(51 * SECOND), None);
    }

    #[test]
    fn an_alarm_passed_while_the_vmm_looked_away_still_sets_af() {
        let mut rtc = rtc_at(MIDDAY);
        write(&mut rtc, 0, REGISTER_ALARM_HOURS, 0x13);
        write(&mut rtc, 0, REGISTER_ALARM_MINUTES, 0x30);
        write(&mut rtc, 0, REGISTER_ALARM_SECONDS, 0x00);
        assert_eq!(read(&mut rtc, 1000 * SECOND, REGISTER_C) & C_ALARM, 0);
        assert_eq!(read(&mut rtc, 2000 * SECOND, REGISTER_C) & C_ALARM, C_ALARM);
        // More than a day: every valid alarm has passed.
        assert_eq!(read(&mut rtc, 100_000 * SECOND, REGISTER_C) & C_ALARM, C_ALARM);
    }

    #[test]
    fn the_divider_in_reset_stops_the_clock_and_restarts_half_a_second_early() {
        let mut rtc = rtc_at(END_OF_2026);
        write(&mut rtc, 0, REGISTER_A, 0x66);
        assert_eq!(rtc.date_time(10 * SECOND), date(2026, 12, 31, 23, 59, 59));
        write(&mut rtc, 10 * SECOND, REGISTER_B, B_24_HOUR | B_PERIODIC_ENABLE);
        assert_eq!(rtc.next_irq8_event(10 * SECOND), None);
        write(&mut rtc, 10 * SECOND, REGISTER_A, 0x26);
        assert_eq!(rtc.date_time(10 * SECOND + SECOND / 2 - 1).year, 2026);
        assert_eq!(rtc.date_time(10 * SECOND + SECOND / 2).year, 2027);
    }

    #[test]
    fn cmos_memory_holds_what_is_written() {
        let mut rtc = rtc_at(0);
        for index in 0x0e..0x80 {
            if index != REGISTER_CENTURY {
                write(&mut rtc, 0, index, index ^ 0x5a);
            }
        }
        for index in 0x0e..0x80 {
            if index != REGISTER_CENTURY {
                assert_eq!(read(&mut rtc, 0, index), index ^ 0x5a);
            }
        }
        // The alarm bytes are memory too.
        write(&mut rtc, 0, REGISTER_ALARM_SECONDS, 0xc3);
        assert_eq!(read(&mut rtc, 0, REGISTER_ALARM_SECONDS), 0xc3);
    }

    #[test]
    fn the_memory_size_bytes_follow_the_firmware_conventions() {
        let bytes = |rtc: &mut Rtc, index: u8, count: u8| -> u32 {
            (0..count).rev().fold(0, |value, offset| (value << 8) | u32::from(read(rtc, 0, index + offset)))
        };
        let mut rtc = rtc_at(0);
        assert_eq!(bytes(&mut rtc, 0x15, 2), 640);
        assert_eq!(bytes(&mut rtc, 0x17, 2), 0xffff);
        assert_eq!(bytes(&mut rtc, 0x30, 2), 0xffff);
        assert_eq!(bytes(&mut rtc, 0x34, 2), (512 - 16) * 16);
        assert_eq!(bytes(&mut rtc, 0x5b, 3), 0);
        // 3 GiB below the hole, 5 GiB above.
        let mut rtc = Rtc::new(0, RamSizes { below_4gib_bytes: 3 << 30, above_4gib_bytes: 5 << 30 });
        assert_eq!(bytes(&mut rtc, 0x34, 2), 0xbf00);
        assert_eq!(bytes(&mut rtc, 0x5b, 3), 5 * 16 * 1024);
        // 32 MiB: extended memory fits.
        let mut rtc = Rtc::new(0, RamSizes { below_4gib_bytes: 32 << 20, above_4gib_bytes: 0 });
        assert_eq!(bytes(&mut rtc, 0x17, 2), 31 * 1024);
        assert_eq!(bytes(&mut rtc, 0x34, 2), 16 * 16);
        // Tiny and huge.
        let mut rtc = Rtc::new(0, RamSizes { below_4gib_bytes: 256 << 10, above_4gib_bytes: u64::MAX });
        assert_eq!(bytes(&mut rtc, 0x15, 2), 256);
        assert_eq!(bytes(&mut rtc, 0x17, 2), 0);
        assert_eq!(bytes(&mut rtc, 0x5b, 3), 0xff_ffff);
    }

    #[test]
    fn the_index_port_records_the_nmi_bit_and_masks_the_index() {
        let mut rtc = rtc_at(0);
        assert!(!rtc.nmi_disabled());
        let _ = rtc.write(INDEX_PORT, AccessSize::Byte, 0x8d);
        assert!(rtc.nmi_disabled());
        assert_eq!(rtc.read(DATA_PORT, AccessSize::Byte), 0x80);
        let _ = rtc.write(INDEX_PORT, AccessSize::Byte, 0x0d);
        assert!(!rtc.nmi_disabled());
        assert_eq!(rtc.read(INDEX_PORT, AccessSize::Byte), 0xff);
    }

    #[test]
    fn huge_start_times_clamp_and_time_never_goes_back() {
        let mut rtc = rtc_at(u64::MAX);
        assert_eq!(rtc.date_time(0), date(9999, 12, 31, 23, 59, 59));
        assert_eq!(rtc.date_time(SECOND), date(0, 1, 1, 0, 0, 0));
        assert_eq!(rtc.date_time(0), date(0, 1, 1, 0, 0, 0));
    }

    #[test]
    fn wide_accesses_and_other_ports_are_harmless() {
        let mut rtc = rtc_at(END_OF_2026);
        // A word write: index 0x0D on 0x70, then a (dropped) write of D.
        assert_eq!(rtc.write(INDEX_PORT, AccessSize::Word, 0x000d), ControlFlow::Continue(()));
        assert_eq!(rtc.read(DATA_PORT, AccessSize::Byte), 0x80);
        assert_eq!(rtc.read(INDEX_PORT, AccessSize::Word), 0x80ff);
        assert_eq!(rtc.read(0x72, AccessSize::Dword), 0xffff_ffff);
        assert_eq!(rtc.write(0xffff, AccessSize::Dword, u32::MAX), ControlFlow::Continue(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any sequence of port accesses at advancing times: no panic, a
        /// valid date, register D valid, C empty when read twice at once,
        /// next events in the future.
        #[test]
        fn arbitrary_accesses_keep_the_clock_sane(
            start in any::<u64>(),
            operations in proptest::collection::vec(
                (0x6f_u16..0x73, any::<u8>(), any::<bool>(), 0_u64..3 * SECOND),
                0..200,
            ),
        ) {
            let mut rtc = Rtc::new(start, RAM_512_MIB);
            let mut now = 0;
            for (port, value, is_write, step) in operations {
                now += step;
                rtc.set_time(now);
                if is_write {
                    let _ = rtc.write(port, AccessSize::Byte, u32::from(value));
                } else {
                    let _ = rtc.read(port, AccessSize::Byte);
                }
                if let Some(next) = rtc.next_irq8_event(now) {
                    prop_assert!(next > now);
                }
                let shown = rtc.date_time(now);
                prop_assert!(shown.year <= 9999 && (1..=12).contains(&shown.month));
                prop_assert!((1..=31).contains(&shown.day) && shown.hour < 24 && shown.minute < 60 && shown.second < 60);
            }
            prop_assert_eq!(read(&mut rtc, now, REGISTER_D), D_VALID);
            let _ = read(&mut rtc, now, REGISTER_C);
            prop_assert_eq!(read(&mut rtc, now, REGISTER_C), 0);
        }

        /// Days to dates and back, against counting the slow way.
        #[test]
        fn the_calendar_conversions_agree(days in -800_000_i64..3_000_000) {
            let (year, month, day) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(year, month, day), days);
            if (1900..2200).contains(&year) {
                prop_assert_eq!(reference_days(year, month, day), days);
            }
        }

        /// Unix seconds to fields and back, inside the clock's range.
        #[test]
        fn date_times_round_trip(seconds in EARLIEST_SECONDS..=LATEST_SECONDS) {
            prop_assert_eq!(DateTime::from_unix_seconds(seconds).to_unix_seconds(), seconds);
        }
    }
}
