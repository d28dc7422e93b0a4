//! The 8254 programmable interval timer (counters 0..2 on ports
//! 0x40..0x42, the control word on 0x43) and the PC's system control
//! port B (0x61), which gates counter 2, enables the speaker and shows
//! counter 2's output.
//!
//! The counters run from a 1,193,182 Hz clock that is a pure function of
//! guest time: clock tick `t` begins at the first nanosecond `n` with
//! `n * 1_193_182 / 10^9 >= t` ([`ticks_at`], [`time_of_tick`]), computed
//! in integers, so nothing drifts however long the guest runs. Each
//! counter remembers the tick its count started at, and its count and
//! output are worked out from the ticks since then when the guest (or
//! the VMM) looks.
//!
//! # Time
//!
//! The device has no clock: the VMM gives it the guest time with
//! [`Pit::set_time`] before it dispatches an I/O exit to it (the
//! [`PortDevice`] methods have no time argument), and with every call to
//! [`Pit::irq0_edges`] and [`Pit::next_irq0_event`]. Time never goes
//! back: an earlier time than one already seen is taken as that one.
//!
//! # IRQ0
//!
//! Counter 0's output drives IRQ0. The VMM polls [`Pit::irq0_edges`],
//! which counts the output's rising edges since the last poll (periodic
//! in modes 2 and 3, once per count in modes 0 and 4), raises the line
//! that many times (or once: the PIC latches one request per line
//! anyway), and arms its timer for [`Pit::next_irq0_event`]. A guest that
//! programs a tiny period cannot make the VMM spin: a poll reports at
//! most [`MAX_IRQ0_EDGES_PER_POLL`] edges (the rest are dropped, as a PIC
//! would have merged them), and in the periodic modes the next event is
//! never sooner than [`MIN_PERIODIC_EVENT_INTERVAL_NS`] after the last
//! poll.
//!
//! # What is modelled
//!
//! Modes 0 to 5 for count and output, binary and BCD counting, the three
//! access modes with the byte flip-flop, the counter latch and read-back
//! commands (count and status), and the gate of counter 2 (the gates of
//! counters 0 and 1 are tied high on a PC). Simplifications: a count is
//! loaded the moment it is written (the 8254 loads it on the next clock
//! edge, one tick later); a count written in mode 2 or 3 while counting
//! restarts the counter (the 8254 waits for the end of the current
//! period; Linux always writes the control word first, which restarts
//! both); a control word's immediate change of the output (for instance
//! to high when mode 2 is set) is not an IRQ0 edge; in mode 3 with an odd
//! count the count read back is approximate (the output is exact).

use core::ops::ControlFlow;

use super::Nanoseconds;
use crate::access_size::AccessSize;
use crate::port_io::PortDevice;
use crate::stop::Stop;

/// The counters' input clock.
pub const PIT_FREQUENCY_HZ: u64 = 1_193_182;
/// Counter 0's port (IRQ0, the system timer).
pub const COUNTER_0_PORT: u16 = 0x40;
/// Counter 1's port (DRAM refresh on old PCs; unused since).
pub const COUNTER_1_PORT: u16 = 0x41;
/// Counter 2's port (the speaker, and Linux's TSC calibration).
pub const COUNTER_2_PORT: u16 = 0x42;
/// The control word port (write only).
pub const CONTROL_PORT: u16 = 0x43;
/// System control port B: counter 2's gate and output, the speaker.
pub const SYSTEM_CONTROL_PORT: u16 = 0x61;
/// The port ranges the timer answers on, for registration on an I/O bus
/// (the [`PortDevice`] implementation answers both).
pub const PORT_RANGES: [(u16, u16); 2] = [(COUNTER_0_PORT, CONTROL_PORT), (SYSTEM_CONTROL_PORT, SYSTEM_CONTROL_PORT)];
/// The most IRQ0 edges one poll reports.
pub const MAX_IRQ0_EDGES_PER_POLL: u32 = 16;
/// In the periodic modes, the least time from one poll of IRQ0 to the
/// next event the timer asks for (100 µs: a 10 kHz tick, ten times
/// Linux's fastest HZ).
pub const MIN_PERIODIC_EVENT_INTERVAL_NS: Nanoseconds = 100_000;

const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;
/// Port 0x61: counter 2's gate.
pub const PORT_61_GATE_2: u8 = 0x01;
/// Port 0x61: speaker data enable (the speaker sounds counter 2's output).
pub const PORT_61_SPEAKER: u8 = 0x02;
/// Port 0x61: the refresh request toggle (read only).
pub const PORT_61_REFRESH: u8 = 0x10;
/// Port 0x61: counter 2's output (read only).
pub const PORT_61_OUT_2: u8 = 0x20;
/// Port 0x61's bits a write sets: gate, speaker, and the parity and
/// channel check enables (kept, with nothing to check).
const PORT_61_WRITABLE: u8 = 0x0f;
/// The refresh toggle flips every 15.085 µs on a PC.
const REFRESH_PERIOD_NS: u64 = 15_085;

/// The clock tick in progress at `now`: `floor(now * 1_193_182 / 10^9)`.
#[must_use]
pub fn ticks_at(now: Nanoseconds) -> u64 {
    let ticks = u128::from(now) * u128::from(PIT_FREQUENCY_HZ) / u128::from(NANOSECONDS_PER_SECOND);
    // At most now / 838: it fits.
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The first nanosecond of clock tick `tick` (the least `n` with
/// `ticks_at(n) >= tick`), or the last one there is.
#[must_use]
pub fn time_of_tick(tick: u64) -> Nanoseconds {
    let numerator = u128::from(tick) * u128::from(NANOSECONDS_PER_SECOND);
    let time = numerator.div_ceil(u128::from(PIT_FREQUENCY_HZ));
    u64::try_from(time).unwrap_or(u64::MAX)
}

/// How the guest reads and writes a counter's 16-bit count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// The low byte only (the high byte is zero).
    LowByte,
    /// The high byte only (the low byte is zero).
    HighByte,
    /// Low byte, then high byte, by a flip-flop.
    Word,
}

impl Access {
    /// The control word's RW field (1..3), for the status byte.
    const fn bits(self) -> u8 {
        match self {
            Access::LowByte => 1,
            Access::HighByte => 2,
            Access::Word => 3,
        }
    }
}

/// What a counter is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// No count since the control word (or, in mode 0, half of a new
    /// two-byte count written: counting is disabled).
    Unloaded,
    /// Modes 1 and 5: a count is loaded, waiting for the gate to rise.
    Armed,
    /// Counting `period` ticks from `start_tick`; while the gate holds it
    /// (modes 0, 2, 3, 4), `paused_at` is how far it had got.
    Counting { start_tick: u64, period: u64, paused_at: Option<u64> },
}

/// One 8254 counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counter {
    /// 0..5 (the control word's 6 and 7 are 2 and 3).
    mode: u8,
    /// The mode field as the last control word wrote it (0..=7), for the
    /// read-back status.
    written_mode: u8,
    access: Access,
    bcd: bool,
    /// The count register as the guest wrote it (BCD digits in BCD).
    count_register: u16,
    /// The low byte of a two-byte count, waiting for its high byte.
    pending_low_byte: Option<u8>,
    /// The read flip-flop of a two-byte counter: the high byte is next.
    read_high_next: bool,
    /// A latched count, read before the live one.
    latched_count: Option<u16>,
    /// A latched status byte, read before any count.
    latched_status: Option<u8>,
    /// The status's NULL COUNT: a count written but not yet loaded.
    null_count: bool,
    /// The gate input.
    gate: bool,
    run: Run,
    /// Output edges since the count started that IRQ0 polls reported.
    edges_reported: u64,
    /// Unreported edges of an earlier count (a restart keeps them).
    edges_carried: u64,
}

/// The status byte's OUTPUT bit.
const STATUS_OUTPUT: u8 = 0x80;
/// The status byte's NULL COUNT bit.
const STATUS_NULL_COUNT: u8 = 0x40;

/// `value` read as four BCD digits (a nibble above 9 counts as its value,
/// as the 8254 leaves undefined).
fn from_bcd(value: u16) -> u64 {
    let [low, high] = value.to_le_bytes();
    let digits = [high >> 4, high & 0xf, low >> 4, low & 0xf];
    digits.iter().fold(0, |total, digit| total * 10 + u64::from(*digit))
}

/// `value` (below 10,000) as four BCD digits.
fn to_bcd(value: u64) -> u16 {
    let value = value % 10_000;
    let digits = [value / 1000, value / 100 % 10, value / 10 % 10, value % 10];
    digits.iter().fold(0, |total, digit| (total << 4) | u16::try_from(*digit).unwrap_or(0))
}

impl Counter {
    /// A counter at reset: mode 0, two-byte access, no count, gate high.
    const fn new() -> Counter {
        Counter {
            mode: 0,
            written_mode: 0,
            access: Access::Word,
            bcd: false,
            count_register: 0,
            pending_low_byte: None,
            read_high_next: false,
            latched_count: None,
            latched_status: None,
            null_count: true,
            gate: true,
            run: Run::Unloaded,
            edges_reported: 0,
            edges_carried: 0,
        }
    }

    /// The count range: 2^16 in binary, 10^4 in BCD.
    const fn modulus(&self) -> u64 {
        if self.bcd { 10_000 } else { 0x1_0000 }
    }

    /// The period the count register asks for (a count of 0 is the
    /// largest, 65,536 or 10,000).
    fn period(&self) -> u64 {
        let count = if self.bcd { from_bcd(self.count_register) } else { u64::from(self.count_register) };
        if count == 0 { self.modulus() } else { count }
    }

    /// Whether the gate suspends counting in this mode (0 and 4: pause; 2
    /// and 3: stop, and restart when it rises).
    const fn gate_pauses(&self) -> bool {
        matches!(self.mode, 0 | 2 | 3 | 4)
    }

    /// How many ticks the count has run at `tick`, and its period.
    fn elapsed(&self, tick: u64) -> Option<(u64, u64)> {
        match self.run {
            Run::Counting { start_tick, period, paused_at } => {
                Some((paused_at.unwrap_or_else(|| tick.saturating_sub(start_tick)), period.max(1)))
            }
            Run::Unloaded | Run::Armed => None,
        }
    }

    /// The counting element at `tick`, in binary.
    fn count(&self, tick: u64) -> u64 {
        let modulus = self.modulus();
        let Some((elapsed, period)) = self.elapsed(tick) else {
            return if self.bcd { from_bcd(self.count_register) % modulus } else { u64::from(self.count_register) };
        };
        let remaining = match self.mode {
            2 => period - elapsed % period,
            3 => {
                // The count goes down by two each tick, in each half.
                let phase = elapsed % period;
                let high_half = period.div_ceil(2);
                let half_phase = if phase < high_half { phase } else { phase - high_half };
                period.saturating_sub(half_phase.saturating_mul(2))
            }
            // Modes 0, 1, 4, 5 count down through zero and wrap.
            _ => (period % modulus + modulus - elapsed % modulus) % modulus,
        };
        remaining % modulus
    }

    /// The count as the guest reads it (BCD in BCD mode).
    fn visible_count(&self, tick: u64) -> u16 {
        let count = self.count(tick);
        if self.bcd { to_bcd(count) } else { u16::try_from(count & 0xffff).unwrap_or(0) }
    }

    /// The output at `tick`.
    fn output(&self, tick: u64) -> bool {
        let Some((elapsed, period)) = self.elapsed(tick) else {
            // Mode 0 starts low; the others start high (and stay so while
            // waiting for a count or a trigger).
            return self.mode != 0;
        };
        match self.mode {
            0 | 1 => elapsed >= period,
            2 => !self.gate || period < 2 || elapsed % period != period - 1,
            3 => !self.gate || elapsed % period < period.div_ceil(2),
            // Modes 4 and 5: low for the one tick at the terminal count.
            _ => elapsed != period,
        }
    }

    /// How many rising edges the output made from the count's start to
    /// `tick`.
    fn edges_through(&self, tick: u64) -> u64 {
        let Some((elapsed, period)) = self.elapsed(tick) else { return 0 };
        match self.mode {
            0 | 1 => u64::from(elapsed >= period),
            2 | 3 => elapsed / period,
            _ => u64::from(elapsed > period),
        }
    }

    /// The tick of the output's next rising edge after `tick`, if one is
    /// coming (none while paused).
    fn next_edge_tick(&self, tick: u64) -> Option<u64> {
        let Run::Counting { start_tick, paused_at: None, .. } = self.run else { return None };
        let (elapsed, period) = self.elapsed(tick)?;
        let edge = match self.mode {
            0 | 1 => (elapsed < period).then_some(period)?,
            2 | 3 => (elapsed / period).saturating_add(1).saturating_mul(period),
            _ => (elapsed <= period).then_some(period + 1)?,
        };
        Some(start_tick.saturating_add(edge))
    }

    /// Before the count restarts: keeps the edges not yet reported.
    fn retire_edges(&mut self, tick: u64) {
        let unreported = self.edges_through(tick).saturating_sub(self.edges_reported);
        self.edges_carried = self.edges_carried.saturating_add(unreported).min(u64::from(MAX_IRQ0_EDGES_PER_POLL));
        self.edges_reported = 0;
    }

    /// Starts counting the count register from `tick` (paused if the gate
    /// is low in a mode the gate pauses).
    fn start(&mut self, tick: u64) {
        self.retire_edges(tick);
        let paused_at = (!self.gate && self.gate_pauses()).then_some(0);
        self.run = Run::Counting { start_tick: tick, period: self.period(), paused_at };
        self.null_count = false;
    }

    /// The status byte a read-back latches.
    fn status(&self, tick: u64) -> u8 {
        let output = if self.output(tick) { STATUS_OUTPUT } else { 0 };
        let null_count = if self.null_count { STATUS_NULL_COUNT } else { 0 };
        // The mode as the control word wrote it: 6 and 7 read back as 6
        // and 7, though they count as 2 and 3.
        output | null_count | (self.access.bits() << 4) | (self.written_mode << 1) | u8::from(self.bcd)
    }

    /// A control word for this counter with RW = `access_bits` (1..3).
    fn set_mode(&mut self, control: u8, access_bits: u8, tick: u64) {
        self.retire_edges(tick);
        self.access = match access_bits {
            1 => Access::LowByte,
            2 => Access::HighByte,
            _ => Access::Word,
        };
        self.written_mode = (control >> 1) & 7;
        self.mode = match self.written_mode {
            6 => 2,
            7 => 3,
            mode => mode,
        };
        self.bcd = control & 1 != 0;
        self.run = Run::Unloaded;
        self.pending_low_byte = None;
        self.read_high_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.null_count = true;
    }

    /// The counter latch command (or a read-back's count latch): a count
    /// already latched and not read stays.
    fn latch_count(&mut self, tick: u64) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.visible_count(tick));
        }
    }

    /// A read-back's status latch: a status already latched stays.
    fn latch_status(&mut self, tick: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(tick));
        }
    }

    /// A guest write of a count byte.
    fn write(&mut self, value: u8, tick: u64) {
        let count = match (self.access, self.pending_low_byte.take()) {
            (Access::LowByte, _) => u16::from(value),
            (Access::HighByte, _) => u16::from(value) << 8,
            (Access::Word, Some(low)) => u16::from_le_bytes([low, value]),
            (Access::Word, None) => {
                self.pending_low_byte = Some(value);
                if self.mode == 0 {
                    // Mode 0: the first byte stops the count, OUT low.
                    self.retire_edges(tick);
                    self.run = Run::Unloaded;
                }
                return;
            }
        };
        self.count_register = count;
        self.null_count = true;
        match self.mode {
            // A one-shot in progress finishes; the next trigger loads it.
            1 | 5 => {
                if self.run == Run::Unloaded {
                    self.run = Run::Armed;
                }
            }
            _ => self.start(tick),
        }
    }

    /// A guest read of a count byte: the latched status, the latched
    /// count, or the live count, a byte at a time by the access mode.
    fn read(&mut self, tick: u64) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let value = self.latched_count.unwrap_or_else(|| self.visible_count(tick));
        let [low, high] = value.to_le_bytes();
        let (byte, complete) = match self.access {
            Access::LowByte => (low, true),
            Access::HighByte => (high, true),
            Access::Word => {
                let high_next = self.read_high_next;
                self.read_high_next = !high_next;
                if high_next { (high, true) } else { (low, false) }
            }
        };
        if complete {
            self.latched_count = None;
        }
        byte
    }

    /// The gate input goes to `level` at `tick`.
    fn set_gate(&mut self, level: bool, tick: u64) {
        if level == self.gate {
            return;
        }
        self.gate = level;
        match (self.mode, &mut self.run) {
            (0 | 4, Run::Counting { start_tick, paused_at, .. }) => {
                if level {
                    if let Some(elapsed) = paused_at.take() {
                        *start_tick = tick.saturating_sub(elapsed);
                    }
                } else {
                    *paused_at = Some(tick.saturating_sub(*start_tick));
                }
            }
            (2 | 3, Run::Counting { start_tick, paused_at, .. }) => {
                if level {
                    // A rising gate reloads the count.
                    self.start(tick);
                } else {
                    *paused_at = Some(tick.saturating_sub(*start_tick));
                }
            }
            // Modes 1 and 5: a rising gate triggers (or retriggers).
            (1 | 5, Run::Armed | Run::Counting { .. }) if level => self.start(tick),
            _ => {}
        }
    }
}

/// The 8254 and port 0x61.
///
/// At reset no firmware has run (the model's choice for a directly
/// booted Linux): every counter is in mode 0 with two-byte access and no
/// count, so nothing counts and IRQ0 stays quiet until the guest
/// programs counter 0. Port 0x61 reads zero in its writable bits (counter
/// 2's gate low).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pit {
    counters: [Counter; 3],
    /// Port 0x61's writable bits.
    port_61: u8,
    /// The latest guest time given.
    now: Nanoseconds,
    /// When [`Pit::irq0_edges`] last ran.
    last_irq0_poll: Option<Nanoseconds>,
}

impl Default for Pit {
    fn default() -> Self {
        Pit::new()
    }
}

impl Pit {
    /// The timer at reset (see the type's documentation).
    #[must_use]
    pub const fn new() -> Pit {
        let mut counters = [Counter::new(); 3];
        // Counter 2's gate is port 0x61 bit 0, low at reset.
        counters[2].gate = false;
        Pit { counters, port_61: 0, now: 0, last_irq0_poll: None }
    }

    /// Gives the device the guest time: call it before dispatching an I/O
    /// exit to it. A time before one already given counts as that one.
    pub fn set_time(&mut self, now: Nanoseconds) {
        self.now = self.now.max(now);
    }

    /// The guest time the device has reached.
    #[must_use]
    pub const fn time(&self) -> Nanoseconds {
        self.now
    }

    /// The clock tick the device has reached.
    fn tick(&self) -> u64 {
        ticks_at(self.now)
    }

    /// How many times counter 0's output rose since the last poll (at
    /// most [`MAX_IRQ0_EDGES_PER_POLL`]): raise IRQ0 if any.
    pub fn irq0_edges(&mut self, now: Nanoseconds) -> u32 {
        self.set_time(now);
        let tick = self.tick();
        let counter = &mut self.counters[0];
        let total = counter.edges_through(tick);
        let new = total.saturating_sub(counter.edges_reported).saturating_add(counter.edges_carried);
        counter.edges_reported = counter.edges_reported.max(total);
        counter.edges_carried = 0;
        self.last_irq0_poll = Some(self.now);
        u32::try_from(new.min(u64::from(MAX_IRQ0_EDGES_PER_POLL))).unwrap_or(MAX_IRQ0_EDGES_PER_POLL)
    }

    /// When the VMM should next poll [`Pit::irq0_edges`]: now if edges
    /// are waiting, else the next rising edge of counter 0's output (in
    /// the periodic modes no sooner than [`MIN_PERIODIC_EVENT_INTERVAL_NS`]
    /// after the last poll); `None` if no edge is coming.
    pub fn next_irq0_event(&mut self, now: Nanoseconds) -> Option<Nanoseconds> {
        self.set_time(now);
        let tick = self.tick();
        let counter = &self.counters[0];
        let waiting = counter.edges_carried > 0 || counter.edges_through(tick) > counter.edges_reported;
        let next = if waiting { self.now } else { time_of_tick(counter.next_edge_tick(tick)?) };
        let floor = match (counter.mode, self.last_irq0_poll) {
            (2 | 3, Some(poll)) => poll.saturating_add(MIN_PERIODIC_EVENT_INTERVAL_NS),
            _ => 0,
        };
        Some(next.max(floor))
    }

    /// Counter `index`'s (0..2) output at `now`; `None` for a counter
    /// that does not exist.
    pub fn output(&mut self, index: usize, now: Nanoseconds) -> Option<bool> {
        self.set_time(now);
        let tick = self.tick();
        self.counters.get(index).map(|counter| counter.output(tick))
    }

    /// Whether the speaker sounds: counter 2 gated on and the speaker
    /// enabled (port 0x61 bits 0 and 1).
    #[must_use]
    pub const fn speaker_on(&self) -> bool {
        self.port_61 & (PORT_61_GATE_2 | PORT_61_SPEAKER) == PORT_61_GATE_2 | PORT_61_SPEAKER
    }

    /// A write of the control word.
    fn write_control(&mut self, value: u8) {
        let tick = self.tick();
        let select = usize::from(value >> 6);
        if select == 3 {
            // Read-back: bits 3..1 select counters 2..0; bit 5 clear
            // latches their counts, bit 4 clear their statuses.
            for (index, counter) in self.counters.iter_mut().enumerate() {
                if value & (2 << index) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    counter.latch_count(tick);
                }
                if value & 0x10 == 0 {
                    counter.latch_status(tick);
                }
            }
            return;
        }
        let Some(counter) = self.counters.get_mut(select) else { return };
        match (value >> 4) & 3 {
            0 => counter.latch_count(tick),
            access_bits => counter.set_mode(value, access_bits, tick),
        }
    }

    /// Port 0x61 as read: the writable bits, the refresh toggle, counter
    /// 2's output. Bits 6 and 7 (channel check, parity error) read 0.
    fn read_port_61(&self) -> u8 {
        let refresh = if (self.now / REFRESH_PERIOD_NS) % 2 == 1 { PORT_61_REFRESH } else { 0 };
        let output = if self.counters[2].output(self.tick()) { PORT_61_OUT_2 } else { 0 };
        self.port_61 | refresh | output
    }

    /// An IN of one byte from `port`: all ones where the timer has no
    /// register (the control word is write only).
    fn read_byte(&mut self, port: u16) -> u8 {
        let tick = self.tick();
        match port {
            COUNTER_0_PORT..=COUNTER_2_PORT => {
                let index = usize::from(port - COUNTER_0_PORT);
                self.counters.get_mut(index).map_or(0xff, |counter| counter.read(tick))
            }
            SYSTEM_CONTROL_PORT => self.read_port_61(),
            _ => 0xff,
        }
    }

    /// An OUT of one byte to `port`: dropped where the timer has no
    /// register.
    fn write_byte(&mut self, port: u16, value: u8) {
        let tick = self.tick();
        match port {
            COUNTER_0_PORT..=COUNTER_2_PORT => {
                let index = usize::from(port - COUNTER_0_PORT);
                if let Some(counter) = self.counters.get_mut(index) {
                    counter.write(value, tick);
                }
            }
            CONTROL_PORT => self.write_control(value),
            SYSTEM_CONTROL_PORT => {
                self.port_61 = value & PORT_61_WRITABLE;
                self.counters[2].set_gate(value & PORT_61_GATE_2 != 0, tick);
            }
            _ => {}
        }
    }
}

/// Accesses act at the time last given by [`Pit::set_time`]. A wider
/// access is split into byte accesses at consecutive ports, as the ISA
/// bus does for byte-wide devices; bits above the access's size read
/// zero.
impl PortDevice for Pit {
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

    /// Linux's 1 ms latch at HZ = 1000: (1,193,182 + 500) / 1000.
    const LATCH_1_MS: u16 = 1193;

    fn out(pit: &mut Pit, now: Nanoseconds, port: u16, value: u8) {
        pit.set_time(now);
        assert_eq!(pit.write(port, AccessSize::Byte, u32::from(value)), ControlFlow::Continue(()));
    }

    fn inb(pit: &mut Pit, now: Nanoseconds, port: u16) -> u8 {
        pit.set_time(now);
        pit.read(port, AccessSize::Byte).to_le_bytes()[0]
    }

    /// Counter `counter`'s mode and a two-byte binary count, as Linux
    /// programs them.
    fn program(pit: &mut Pit, now: Nanoseconds, counter: u8, mode: u8, count: u16) {
        let [low, high] = count.to_le_bytes();
        out(pit, now, CONTROL_PORT, (counter << 6) | 0x30 | (mode << 1));
        out(pit, now, COUNTER_0_PORT + u16::from(counter), low);
        out(pit, now, COUNTER_0_PORT + u16::from(counter), high);
    }

    fn read_word(pit: &mut Pit, now: Nanoseconds, port: u16) -> u16 {
        u16::from_le_bytes([inb(pit, now, port), inb(pit, now, port)])
    }

    #[test]
    fn time_converts_to_ticks_exactly() {
        assert_eq!(ticks_at(0), 0);
        assert_eq!(ticks_at(NANOSECONDS_PER_SECOND), PIT_FREQUENCY_HZ);
        assert_eq!(ticks_at(838), 0);
        assert_eq!(ticks_at(839), 1);
        assert_eq!(time_of_tick(1), 839);
        assert_eq!(time_of_tick(PIT_FREQUENCY_HZ), NANOSECONDS_PER_SECOND);
        // Five centuries of guest time neither overflow nor drift.
        let centuries = 500 * 365 * 24 * 3600;
        assert_eq!(ticks_at(centuries * NANOSECONDS_PER_SECOND), centuries * PIT_FREQUENCY_HZ);
        assert_eq!(ticks_at(u64::MAX), 22_010_322_987_356_910);
        assert_eq!(time_of_tick(u64::MAX), u64::MAX);
    }

    #[test]
    fn mode_2_with_linuxs_1_ms_latch_interrupts_every_1193_ticks() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 2, LATCH_1_MS);
        assert_eq!(pit.irq0_edges(0), 0);
        let period = time_of_tick(u64::from(LATCH_1_MS));
        assert_eq!(period, 999_848);
        assert_eq!(pit.next_irq0_event(0), Some(period));
        assert_eq!(pit.irq0_edges(period - 1), 0);
        assert_eq!(pit.irq0_edges(period), 1);
        assert_eq!(pit.next_irq0_event(period), Some(time_of_tick(2 * u64::from(LATCH_1_MS))));
        // Ten milliseconds later: ten edges.
        assert_eq!(pit.irq0_edges(time_of_tick(11 * u64::from(LATCH_1_MS))), 10);
        // The output is low for the last tick of each period.
        let tick = 12 * u64::from(LATCH_1_MS) - 1;
        assert_eq!(pit.output(0, time_of_tick(tick)), Some(false));
        assert_eq!(pit.output(0, time_of_tick(tick + 1)), Some(true));
    }

    #[test]
    fn mode_2_counts_down_from_the_count_to_one() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 2, 100);
        assert_eq!(read_word(&mut pit, 0, COUNTER_0_PORT), 100);
        assert_eq!(read_word(&mut pit, time_of_tick(99), COUNTER_0_PORT), 1);
        assert_eq!(read_word(&mut pit, time_of_tick(100), COUNTER_0_PORT), 100);
        assert_eq!(read_word(&mut pit, time_of_tick(130), COUNTER_0_PORT), 70);
    }

    #[test]
    fn mode_0_fires_once_at_the_terminal_count_and_keeps_counting() {
        let mut pit = Pit::new();
        out(&mut pit, 0, CONTROL_PORT, 0x30);
        // The control word drives OUT low; the count is not loaded yet.
        assert_eq!(pit.output(0, 0), Some(false));
        out(&mut pit, 0, COUNTER_0_PORT, 0x10);
        out(&mut pit, 0, COUNTER_0_PORT, 0x00);
        assert_eq!(pit.next_irq0_event(0), Some(time_of_tick(16)));
        assert_eq!(pit.output(0, time_of_tick(15)), Some(false));
        assert_eq!(pit.output(0, time_of_tick(16)), Some(true));
        // The count wraps through zero to 0xFFFF.
        assert_eq!(read_word(&mut pit, time_of_tick(17), COUNTER_0_PORT), 0xffff);
        assert_eq!(pit.irq0_edges(time_of_tick(1000)), 1);
        assert_eq!(pit.irq0_edges(time_of_tick(100_000)), 0);
        assert_eq!(pit.next_irq0_event(time_of_tick(100_000)), None);
    }

    #[test]
    fn mode_0_stops_at_the_first_byte_and_restarts_at_the_second() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 0, 50);
        let now = time_of_tick(60);
        assert_eq!(pit.output(0, now), Some(true));
        out(&mut pit, now, COUNTER_0_PORT, 20);
        assert_eq!(pit.output(0, now), Some(false));
        out(&mut pit, now, COUNTER_0_PORT, 0);
        assert_eq!(pit.output(0, time_of_tick(79)), Some(false));
        assert_eq!(pit.output(0, time_of_tick(80)), Some(true));
        // The first count's edge was not polled: it is kept.
        assert_eq!(pit.irq0_edges(time_of_tick(80)), 2);
    }

    #[test]
    fn a_count_of_zero_is_65536() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 2, 0);
        assert_eq!(read_word(&mut pit, 0, COUNTER_0_PORT), 0);
        assert_eq!(read_word(&mut pit, time_of_tick(1), COUNTER_0_PORT), 0xffff);
        assert_eq!(pit.irq0_edges(time_of_tick(65_535)), 0);
        assert_eq!(pit.irq0_edges(time_of_tick(65_536)), 1);
    }

    #[test]
    fn a_count_of_one_in_mode_2_cannot_make_the_vmm_spin() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 2, 1);
        assert_eq!(pit.irq0_edges(1_000_000), MAX_IRQ0_EDGES_PER_POLL);
        // Edges are waiting again at once, but the next event is the floor.
        assert_eq!(pit.next_irq0_event(1_000_500), Some(1_000_000 + MIN_PERIODIC_EVENT_INTERVAL_NS));
        // Mode 3 likewise.
        program(&mut pit, 2_000_000, 0, 3, 1);
        assert_eq!(pit.irq0_edges(3_000_000), MAX_IRQ0_EDGES_PER_POLL);
        assert_eq!(pit.next_irq0_event(3_000_000), Some(3_000_000 + MIN_PERIODIC_EVENT_INTERVAL_NS));
    }

    #[test]
    fn mode_3_is_a_square_wave() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 3, 10);
        // The count goes down by two in each half.
        assert_eq!(read_word(&mut pit, 0, COUNTER_0_PORT), 10);
        assert_eq!(read_word(&mut pit, time_of_tick(2), COUNTER_0_PORT), 6);
        assert_eq!(read_word(&mut pit, time_of_tick(7), COUNTER_0_PORT), 6);
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 3, 10);
        let outputs: [bool; 10] = core::array::from_fn(|tick| pit.output(0, time_of_tick(tick as u64)).unwrap());
        assert_eq!(outputs, [true, true, true, true, true, false, false, false, false, false]);
        // An odd count: high one tick longer than low.
        program(&mut pit, time_of_tick(10), 0, 3, 5);
        let base = 10;
        let outputs: [bool; 5] = core::array::from_fn(|tick| pit.output(0, time_of_tick(base + tick as u64)).unwrap());
        assert_eq!(outputs, [true, true, true, false, false]);
        // Ten periods, and the first count's edge at tick 10 (not polled
        // before the new control word, so kept).
        assert_eq!(pit.irq0_edges(time_of_tick(base + 50)), 11);
    }

    #[test]
    fn mode_4_strobes_one_tick_after_the_count() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 4, 8);
        assert_eq!(pit.next_irq0_event(0), Some(time_of_tick(9)));
        assert_eq!(pit.output(0, time_of_tick(7)), Some(true));
        assert_eq!(pit.output(0, time_of_tick(8)), Some(false));
        assert_eq!(pit.irq0_edges(time_of_tick(8)), 0);
        assert_eq!(pit.output(0, time_of_tick(9)), Some(true));
        assert_eq!(pit.irq0_edges(time_of_tick(9)), 1);
    }

    #[test]
    fn modes_1_and_5_wait_for_the_gate() {
        let mut pit = Pit::new();
        // Counter 2, mode 1, count 20; the gate (port 0x61 bit 0) is low.
        program(&mut pit, 0, 2, 1, 20);
        assert_eq!(pit.output(2, 0), Some(true));
        assert_eq!(inb(&mut pit, time_of_tick(100), CONTROL_PORT), 0xff);
        out(&mut pit, time_of_tick(100), SYSTEM_CONTROL_PORT, 0x01);
        assert_eq!(pit.output(2, time_of_tick(100)), Some(false));
        assert_eq!(pit.output(2, time_of_tick(119)), Some(false));
        assert_eq!(pit.output(2, time_of_tick(120)), Some(true));
        // Retriggering restarts the one-shot.
        out(&mut pit, time_of_tick(130), SYSTEM_CONTROL_PORT, 0x00);
        out(&mut pit, time_of_tick(131), SYSTEM_CONTROL_PORT, 0x01);
        assert_eq!(pit.output(2, time_of_tick(150)), Some(false));
        assert_eq!(pit.output(2, time_of_tick(151)), Some(true));
        // Mode 5: a strobe 20 ticks after the trigger.
        program(&mut pit, time_of_tick(200), 2, 5, 20);
        out(&mut pit, time_of_tick(200), SYSTEM_CONTROL_PORT, 0x00);
        out(&mut pit, time_of_tick(210), SYSTEM_CONTROL_PORT, 0x01);
        assert_eq!(pit.output(2, time_of_tick(230)), Some(false));
        assert_eq!(pit.output(2, time_of_tick(231)), Some(true));
    }

    #[test]
    fn the_gate_pauses_mode_0_and_restarts_mode_2() {
        let mut pit = Pit::new();
        out(&mut pit, 0, SYSTEM_CONTROL_PORT, 0x01);
        program(&mut pit, 0, 2, 0, 100);
        out(&mut pit, time_of_tick(40), SYSTEM_CONTROL_PORT, 0x00);
        assert_eq!(read_word(&mut pit, time_of_tick(500), COUNTER_2_PORT), 60);
        out(&mut pit, time_of_tick(500), SYSTEM_CONTROL_PORT, 0x01);
        assert_eq!(pit.output(2, time_of_tick(559)), Some(false));
        assert_eq!(pit.output(2, time_of_tick(560)), Some(true));
        // Mode 2: gate low forces the output high; rising reloads.
        program(&mut pit, time_of_tick(1000), 2, 2, 10);
        out(&mut pit, time_of_tick(1009), SYSTEM_CONTROL_PORT, 0x00);
        assert_eq!(pit.output(2, time_of_tick(1009)), Some(true));
        out(&mut pit, time_of_tick(1100), SYSTEM_CONTROL_PORT, 0x01);
        assert_eq!(read_word(&mut pit, time_of_tick(1103), COUNTER_2_PORT), 7);
    }

    #[test]
    fn linuxs_pit_calibration_sees_out2_rise_on_port_61() {
        let mut pit = Pit::new();
        // Gate high, speaker off; counter 2 mode 0, the 10 ms latch.
        let port_61 = inb(&mut pit, 0, SYSTEM_CONTROL_PORT);
        out(&mut pit, 0, SYSTEM_CONTROL_PORT, (port_61 & !0x02) | 0x01);
        out(&mut pit, 0, CONTROL_PORT, 0xb0);
        let latch: u16 = 11_932;
        out(&mut pit, 0, COUNTER_2_PORT, latch.to_le_bytes()[0]);
        out(&mut pit, 0, COUNTER_2_PORT, latch.to_le_bytes()[1]);
        let end = time_of_tick(u64::from(latch));
        assert_eq!(inb(&mut pit, end - 1, SYSTEM_CONTROL_PORT) & PORT_61_OUT_2, 0);
        assert_eq!(inb(&mut pit, end, SYSTEM_CONTROL_PORT) & PORT_61_OUT_2, PORT_61_OUT_2);
        assert!(!pit.speaker_on());
        // Counter 2 is not IRQ0.
        assert_eq!(pit.irq0_edges(end), 0);
    }

    #[test]
    fn linuxs_quick_calibration_reads_the_msb_going_down() {
        let mut pit = Pit::new();
        out(&mut pit, 0, SYSTEM_CONTROL_PORT, 0x01);
        out(&mut pit, 0, CONTROL_PORT, 0xb0);
        out(&mut pit, 0, COUNTER_2_PORT, 0xff);
        out(&mut pit, 0, COUNTER_2_PORT, 0xff);
        // Each check reads the LSB and then the MSB of the live count.
        for msb in [0xff_u8, 0xfe, 0xfd, 0x80] {
            let now = time_of_tick(u64::from(0xff - msb) * 256 + 10);
            let _ = inb(&mut pit, now, COUNTER_2_PORT);
            assert_eq!(inb(&mut pit, now, COUNTER_2_PORT), msb);
        }
    }

    #[test]
    fn the_counter_latch_freezes_a_count_until_it_is_read() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 2, 1000);
        out(&mut pit, time_of_tick(100), CONTROL_PORT, 0x00);
        // A second latch before the read changes nothing.
        out(&mut pit, time_of_tick(200), CONTROL_PORT, 0x00);
        assert_eq!(read_word(&mut pit, time_of_tick(300), COUNTER_0_PORT), 900);
        // Released: the live count again.
        assert_eq!(read_word(&mut pit, time_of_tick(300), COUNTER_0_PORT), 700);
    }

    #[test]
    fn single_byte_access_modes_read_and_write_one_byte() {
        let mut pit = Pit::new();
        out(&mut pit, 0, CONTROL_PORT, 0x54); // counter 1, LSB only, mode 2
        out(&mut pit, 0, COUNTER_1_PORT, 0x12);
        assert_eq!(inb(&mut pit, 0, COUNTER_1_PORT), 0x12);
        assert_eq!(inb(&mut pit, time_of_tick(2), COUNTER_1_PORT), 0x10);
        out(&mut pit, 0, CONTROL_PORT, 0x64); // counter 1, MSB only, mode 2
        out(&mut pit, 0, COUNTER_1_PORT, 0x02);
        // Count 0x200: after 0x100 ticks the MSB reads 1.
        assert_eq!(inb(&mut pit, 0, COUNTER_1_PORT), 0x02);
        assert_eq!(inb(&mut pit, time_of_tick(0x100), COUNTER_1_PORT), 0x01);
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let mut pit = Pit::new();
        out(&mut pit, 0, CONTROL_PORT, 0x34);
        // Before the count: null count set, output high (mode 2).
        out(&mut pit, 0, CONTROL_PORT, 0xe2);
        assert_eq!(inb(&mut pit, 0, COUNTER_0_PORT), 0x80 | 0x40 | 0x34);
        out(&mut pit, 0, COUNTER_0_PORT, 0x00);
        out(&mut pit, 0, COUNTER_0_PORT, 0x10);
        // Status and count of counter 0.
        out(&mut pit, time_of_tick(0x10), CONTROL_PORT, 0xc2);
        assert_eq!(inb(&mut pit, time_of_tick(0x50), COUNTER_0_PORT), 0x80 | 0x34);
        assert_eq!(read_word(&mut pit, time_of_tick(0x50), COUNTER_0_PORT), 0x1000 - 0x10);
        // Count only, of counters 1 and 2 (unprogrammed: the register).
        out(&mut pit, 0, CONTROL_PORT, 0xdc);
        assert_eq!(read_word(&mut pit, 0, COUNTER_2_PORT), 0);
        // Status only.
        out(&mut pit, time_of_tick(0x60), CONTROL_PORT, 0xe2);
        assert_eq!(inb(&mut pit, time_of_tick(0x60), COUNTER_0_PORT), 0x80 | 0x34);
    }

    #[test]
    fn a_control_word_mode_6_or_7_counts_as_2_or_3_and_reads_back_as_written() {
        let mut pit = Pit::new();
        // The read-back status holds the mode bits as written (8254
        // datasheet: "exactly as written in the last Mode Control Word").
        out(&mut pit, 0, CONTROL_PORT, 0x3c);
        out(&mut pit, 0, CONTROL_PORT, 0xe2);
        assert_eq!(inb(&mut pit, 0, COUNTER_0_PORT) & 0x0e, 0x0c);
        out(&mut pit, 0, CONTROL_PORT, 0x3e);
        out(&mut pit, 0, CONTROL_PORT, 0xe2);
        assert_eq!(inb(&mut pit, 0, COUNTER_0_PORT) & 0x0e, 0x0e);
        // Mode 6 counts as mode 2: a rate generator, IRQ0 once a period.
        out(&mut pit, 0, CONTROL_PORT, 0x3c);
        out(&mut pit, 0, COUNTER_0_PORT, 0xa9);
        out(&mut pit, 0, COUNTER_0_PORT, 0x04);
        assert_eq!(pit.irq0_edges(10_000_000), 10, "1193 ticks: 10 periods of about 1 ms in 10 ms");
    }

    #[test]
    fn bcd_counting_counts_in_decimal() {
        let mut pit = Pit::new();
        out(&mut pit, 0, CONTROL_PORT, 0x35); // mode 2, BCD
        out(&mut pit, 0, COUNTER_0_PORT, 0x00);
        out(&mut pit, 0, COUNTER_0_PORT, 0x10); // 1000 decimal
        assert_eq!(read_word(&mut pit, time_of_tick(1), COUNTER_0_PORT), 0x0999);
        assert_eq!(pit.irq0_edges(time_of_tick(1000)), 1);
        // A BCD count of 0 is 10,000.
        out(&mut pit, 0, CONTROL_PORT, 0x31);
        out(&mut pit, time_of_tick(2000), COUNTER_0_PORT, 0x00);
        out(&mut pit, time_of_tick(2000), COUNTER_0_PORT, 0x00);
        assert_eq!(read_word(&mut pit, time_of_tick(2001), COUNTER_0_PORT), 0x9999);
        assert_eq!(pit.next_irq0_event(time_of_tick(2001)), Some(time_of_tick(12_000)));
    }

    #[test]
    fn port_61_keeps_its_writable_bits_and_shows_the_refresh_toggle() {
        let mut pit = Pit::new();
        out(&mut pit, 0, SYSTEM_CONTROL_PORT, 0xff);
        assert!(pit.speaker_on());
        // Counter 2 is unprogrammed in mode 0: OUT2 low.
        assert_eq!(inb(&mut pit, 0, SYSTEM_CONTROL_PORT), 0x0f);
        assert_eq!(inb(&mut pit, REFRESH_PERIOD_NS, SYSTEM_CONTROL_PORT), 0x1f);
        assert_eq!(inb(&mut pit, 2 * REFRESH_PERIOD_NS, SYSTEM_CONTROL_PORT), 0x0f);
    }

    #[test]
    fn time_never_goes_back() {
        let mut pit = Pit::new();
        program(&mut pit, 5_000_000, 0, 2, 100);
        pit.set_time(1_000);
        assert_eq!(pit.time(), 5_000_000);
        assert_eq!(pit.irq0_edges(0), 0);
    }

    #[test]
    fn unclaimed_ports_and_wide_accesses_are_harmless() {
        let mut pit = Pit::new();
        assert_eq!(pit.read(0x44, AccessSize::Byte), 0xff);
        assert_eq!(pit.output(3, 0), None);
        // A word write to 0x42 writes counter 2's LSB and the control word.
        assert_eq!(pit.write(COUNTER_2_PORT, AccessSize::Word, 0x3400), ControlFlow::Continue(()));
        assert_eq!(pit.counters[0].mode, 2);
        assert_eq!(pit.write(0xffff, AccessSize::Dword, u32::MAX), ControlFlow::Continue(()));
        assert_eq!(pit.read(0xffff, AccessSize::Qword) & 0xff, 0xff);
    }

    #[test]
    fn bcd_conversions_round_trip() {
        assert_eq!(from_bcd(0x1234), 1234);
        assert_eq!(to_bcd(1234), 0x1234);
        assert_eq!(to_bcd(10_000), 0);
        // Nibbles above 9 count as their value, without overflow.
        assert_eq!(from_bcd(0xffff), 15 * 1111);
    }

    /// The ports the fuzzer aims at: the timer's and a neighbour.
    const FUZZ_PORTS: [u16; 6] = [0x40, 0x41, 0x42, 0x43, 0x44, 0x61];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any sequence of port accesses at advancing times: no panic,
        /// at most the cap of edges per poll, a next event never in the
        /// past, and statuses that describe a real mode.
        #[test]
        fn arbitrary_accesses_keep_the_timer_sane(
            operations in proptest::collection::vec(
                (proptest::sample::select(FUZZ_PORTS.to_vec()), any::<u8>(), any::<bool>(), 0_u64..50_000_000),
                0..200,
            ),
        ) {
            let mut pit = Pit::new();
            let mut now = 0_u64;
            for (port, value, is_write, step) in operations {
                now += step;
                pit.set_time(now);
                if is_write {
                    let _ = pit.write(port, AccessSize::Byte, u32::from(value));
                } else {
                    let _ = pit.read(port, AccessSize::Byte);
                }
                prop_assert!(pit.irq0_edges(now) <= MAX_IRQ0_EDGES_PER_POLL);
                if let Some(next) = pit.next_irq0_event(now) {
                    prop_assert!(next >= now);
                }
                let tick = ticks_at(now);
                for counter in &pit.counters {
                    let counted_as = match counter.written_mode { 6 => 2, 7 => 3, mode => mode };
                    prop_assert_eq!(counter.mode, counted_as);
                    // A rate generator never reads 0 below a full 65,536
                    // period: it reloads at 1.
                    if counter.mode == 2
                        && let Some((_, period)) = counter.elapsed(tick)
                        && period < counter.modulus()
                    {
                        prop_assert!((1..=period).contains(&counter.count(tick)));
                    }
                }
            }
        }

        /// The conversions are each other's inverse where they can be.
        #[test]
        fn ticks_and_times_agree(now in any::<u64>(), tick in 0..=ticks_at(u64::MAX)) {
            let start = time_of_tick(ticks_at(now));
            prop_assert!(start <= now);
            prop_assert_eq!(ticks_at(start), ticks_at(now));
            prop_assert_eq!(ticks_at(time_of_tick(tick)), tick);
            prop_assert!(ticks_at(time_of_tick(tick) - 1) < tick || tick == 0);
        }
    }
}
