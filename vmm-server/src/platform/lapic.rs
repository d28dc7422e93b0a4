//! A local APIC in xAPIC mode, with its timer (Intel SDM vol. 3A, chapter
//! "Advanced Programmable Interrupt Controller (APIC)"): one per vCPU,
//! its registers at 0xFEE0_0000 and the IA32_TSC_DEADLINE MSR.
//!
//! # How the VMM drives it
//!
//! - Before it hands the device an MMIO access, and whenever it wakes,
//!   the VMM calls [`LocalApic::poll_timer`]`(now)`: the [`MmioDevice`]
//!   trait carries no time, so an access happens at the time of the last
//!   poll. [`LocalApic::read_register`] and [`LocalApic::write_register`]
//!   take the time themselves. Time never runs backwards here: an earlier
//!   `now` than one already seen counts as the later one.
//! - Before entering the guest it asks [`LocalApic::highest_pending`]; when
//!   it injects that vector it calls [`LocalApic::acknowledge`].
//! - After each access it drains [`LocalApic::take_ipi`] (IPIs for other
//!   APICs, or for every APIC) and [`LocalApic::take_eoi`] (the vectors of
//!   level-triggered interrupts the guest has ended, for the I/O APIC's
//!   [`super::ioapic::IoApic::end_of_interrupt`]).
//! - Interrupts from the I/O APIC or other APICs whose destination
//!   [`LocalApic::is_destination`] matches are given to
//!   [`LocalApic::accept`] (fixed and lowest-priority ones; NMI, INIT,
//!   start-up and ExtINT are the VMM's to act on).
//! - It sleeps no later than [`LocalApic::next_timer_event`].
//! - WRMSR and RDMSR of IA32_TSC_DEADLINE go to
//!   [`LocalApic::set_tsc_deadline`] and [`LocalApic::tsc_deadline`]; MOV
//!   to and from CR8 to [`LocalApic::set_task_priority`] and
//!   [`LocalApic::task_priority`] (CR8 is TPR bits 4..7).
//!
//! # Choices where the SDM leaves room
//!
//! - Version 0x14 with six LVT entries (max LVT entry 5) and no EOI-
//!   broadcast suppression: every EOI of a level-triggered vector is
//!   reported, and SVR bit 12 is reserved. The CMCI LVT (0x2F0) is not
//!   counted by the version register (the platform reports no CMCI), but
//!   it exists as a register that keeps what is written to it and never
//!   fires.
//! - The APIC ID register is read-only: the VMM routes messages by the ID
//!   it built the APIC with, so a guest may not change it behind the
//!   VMM's back.
//! - Accesses: a 32-bit write at a register's 16-byte-aligned offset is
//!   the only write that acts; every other size or alignment is ignored.
//!   A read of any size sees the 16-byte slot as the register's 32 bits
//!   followed by zeros, so byte and word reads of a register work. An
//!   access to a reserved offset reads zero, is ignored, and sets ESR's
//!   illegal-register-address bit; writes to read-only registers are
//!   ignored silently.
//! - While software-disabled (SVR bit 8 clear) the APIC drops fixed
//!   interrupts rather than holding them (as KVM does), keeps every LVT
//!   masked, and offers nothing to the VMM; IRR and ISR keep what they
//!   held.
//! - IPIs: ESR's send-illegal-vector bit for a fixed or lowest-priority
//!   IPI with a vector below 16; the shorthand "self" is accepted at once
//!   (always edge-triggered); "all including self" is accepted here and
//!   sent to the others; "all excluding self" is only sent. The SDM makes
//!   "self" and "all including self" valid with fixed delivery only:
//!   other modes with them are ignored, as is an INIT level de-assert
//!   (which xAPICs do not support) and the reserved delivery mode 3.
//!   Messages for others are queued ([`IPI_QUEUE_CAPACITY`] of them); if
//!   the VMM lets the queue fill, further IPIs are dropped and counted.
//! - Timer: timer mode 3 (reserved) counts as one-shot. Changing the
//!   divide configuration while the timer counts restarts the count from
//!   its current value at the new rate. A periodic timer that fell
//!   behind fires once, and a periodic timer fires at most once every
//!   [`MIN_PERIODIC_INTERVAL`] whatever its count (the current count
//!   still runs at the programmed rate), so a tiny count cannot flood the
//!   VMM with timer events. Switching between TSC-deadline and the other
//!   modes disarms the timer (initial count and deadline zero).
//! - The guest's TSC is taken to be `now * tsc_hz / 10^9`: zero at the
//!   platform's reset, running at [`TimerClocks::tsc_hz`]. The VMM's
//!   RDTSC must agree with that for TSC-deadline mode to be on time.
//! - LINT0 and LINT1 are only programmed here; what arrives on them (the
//!   8259A's INTR, NMI) is the VMM's, through [`LocalApic::lint0_mode`]
//!   and [`LocalApic::lint1_mode`].

use core::cmp::max;
use core::ops::ControlFlow;

use super::{DeliveryMode, Destination, InterruptMessage, Nanoseconds, Trigger};
use crate::access_size::AccessSize;
use crate::mmio::MmioDevice;
use crate::stop::Stop;

/// The local APIC's guest-physical base address.
pub const LOCAL_APIC_BASE: u64 = 0xfee0_0000;
/// The size of its register page.
pub const LOCAL_APIC_BYTES: u64 = 4096;
/// The version register: version 0x14 (an integrated xAPIC), max LVT
/// entry 5 (six LVTs) in bits 16..23, no EOI-broadcast suppression (bit 24).
pub const LOCAL_APIC_VERSION: u32 = 0x0005_0014;
/// How many IPIs wait for the VMM before further ones are dropped.
pub const IPI_QUEUE_CAPACITY: usize = 8;
/// The shortest interval between two interrupts of a periodic timer.
pub const MIN_PERIODIC_INTERVAL: Nanoseconds = 100_000;

const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;

/// ESR bit 5: a fixed IPI was sent with a vector below 16.
pub const ERROR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: an interrupt with a vector below 16 was received (or an
/// LVT fired with one).
pub const ERROR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// ESR bit 7: the guest touched a reserved register offset.
pub const ERROR_ILLEGAL_REGISTER_ADDRESS: u32 = 1 << 7;

/// Vectors 0..15 are the exceptions' and illegal for interrupts.
const FIRST_LEGAL_VECTOR: u8 = 16;

/// LVT bit 16: the entry is masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode, bits 8..10.
const LVT_DELIVERY_MODE: u32 = 0b111 << 8;
/// LVT timer mode, bits 17..18.
const LVT_TIMER_MODE: u32 = 0b11 << 17;
/// LVT (LINT0 and LINT1) pin polarity, bit 13.
const LVT_POLARITY: u32 = 1 << 13;
/// LVT (LINT0 and LINT1) trigger mode, bit 15.
const LVT_LEVEL_TRIGGERED: u32 = 1 << 15;
/// LVT vector, bits 0..7.
const LVT_VECTOR: u32 = 0xff;

/// SVR bit 8: the APIC is software-enabled.
const SVR_ENABLED: u32 = 1 << 8;
/// SVR's writable bits: the spurious vector, the enable bit, and focus
/// processor checking (bit 9, kept: it only matters to lowest-priority
/// arbitration, which is the VMM's).
const SVR_WRITABLE: u32 = 0x3ff;

/// ICR low dword's writable bits: vector, delivery mode, destination
/// mode, level, trigger mode and shorthand (delivery status reads 0).
const ICR_LOW_WRITABLE: u32 = 0xff | (0b111 << 8) | (1 << 11) | (1 << 14) | (1 << 15) | (0b11 << 18);
/// ICR bit 11: logical destination mode.
const ICR_LOGICAL: u32 = 1 << 11;
/// ICR bit 14: level asserted (meaningful for INIT only).
const ICR_ASSERT: u32 = 1 << 14;
/// ICR bit 15: level-triggered.
const ICR_LEVEL_TRIGGERED: u32 = 1 << 15;
/// ICR high dword's writable bits: the destination.
const ICR_HIGH_WRITABLE: u32 = 0xff00_0000;

/// The divide configuration's bits: 0, 1 and 3.
const DIVIDE_CONFIGURATION_WRITABLE: u32 = 0b1011;

/// The broadcast destination, physical or logical.
const BROADCAST: u8 = 0xff;

/// The low byte of `value`.
const fn low_byte(value: u32) -> u8 {
    value.to_le_bytes()[0]
}

/// The top byte of `value` (bits 24..31, where the xAPIC keeps IDs).
const fn top_byte(value: u32) -> u8 {
    value.to_le_bytes()[3]
}

/// The low 32 bits of `value`.
const fn low_dword(value: u64) -> u32 {
    let bytes = value.to_le_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// `value` as nanoseconds, saturating at the end of time.
fn saturate_to_nanoseconds(value: u128) -> Nanoseconds {
    Nanoseconds::try_from(value).unwrap_or(Nanoseconds::MAX)
}

/// The clocks the timer counts: the APIC timer's input (before the
/// divide configuration) and the TSC (for TSC-deadline mode). A zero
/// frequency counts as 1 Hz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerClocks {
    /// The APIC timer's input clock (the bus or core-crystal clock), Hz.
    pub timer_hz: u64,
    /// The guest's TSC frequency, Hz.
    pub tsc_hz: u64,
}

/// One of the local vector table's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalInterrupt {
    /// Corrected machine-check interrupts (0x2F0).
    CorrectedMachineCheck,
    /// The APIC timer (0x320).
    Timer,
    /// The thermal sensor (0x330).
    Thermal,
    /// The performance counters (0x340).
    PerformanceCounter,
    /// The LINT0 pin (0x350), where PCs wire the 8259A's INTR.
    Lint0,
    /// The LINT1 pin (0x360), where PCs wire NMI.
    Lint1,
    /// APIC errors (0x370).
    Error,
}

impl LocalInterrupt {
    /// Every entry, in the order of their offsets.
    pub const ALL: [LocalInterrupt; 7] = [
        LocalInterrupt::CorrectedMachineCheck,
        LocalInterrupt::Timer,
        LocalInterrupt::Thermal,
        LocalInterrupt::PerformanceCounter,
        LocalInterrupt::Lint0,
        LocalInterrupt::Lint1,
        LocalInterrupt::Error,
    ];

    /// The entry's register offset.
    #[must_use]
    pub const fn offset(self) -> u64 {
        match self {
            LocalInterrupt::CorrectedMachineCheck => 0x2f0,
            LocalInterrupt::Timer => 0x320,
            LocalInterrupt::Thermal => 0x330,
            LocalInterrupt::PerformanceCounter => 0x340,
            LocalInterrupt::Lint0 => 0x350,
            LocalInterrupt::Lint1 => 0x360,
            LocalInterrupt::Error => 0x370,
        }
    }

    /// Its place in the table.
    const fn index(self) -> usize {
        match self {
            LocalInterrupt::CorrectedMachineCheck => 0,
            LocalInterrupt::Timer => 1,
            LocalInterrupt::Thermal => 2,
            LocalInterrupt::PerformanceCounter => 3,
            LocalInterrupt::Lint0 => 4,
            LocalInterrupt::Lint1 => 5,
            LocalInterrupt::Error => 6,
        }
    }

    /// The bits a write may set (the SDM's LVT layouts; delivery status
    /// and remote IRR are read-only and read 0, since delivery here is
    /// immediate).
    const fn writable_bits(self) -> u32 {
        match self {
            LocalInterrupt::Timer => LVT_VECTOR | LVT_MASKED | LVT_TIMER_MODE,
            LocalInterrupt::CorrectedMachineCheck | LocalInterrupt::Thermal | LocalInterrupt::PerformanceCounter => {
                LVT_VECTOR | LVT_DELIVERY_MODE | LVT_MASKED
            }
            LocalInterrupt::Lint0 | LocalInterrupt::Lint1 => {
                LVT_VECTOR | LVT_DELIVERY_MODE | LVT_POLARITY | LVT_LEVEL_TRIGGERED | LVT_MASKED
            }
            LocalInterrupt::Error => LVT_VECTOR | LVT_MASKED,
        }
    }
}

/// The timer's mode (LVT timer bits 17..18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Counts the initial count down once (also the reserved mode 3).
    OneShot,
    /// Counts down and reloads.
    Periodic,
    /// Fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

/// An IPI the guest sent through the ICR, for the VMM to route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterprocessorInterrupt {
    /// The message, its destination as the ICR names it (broadcast, for
    /// the "all" shorthands).
    pub message: InterruptMessage,
    /// The sender's APIC ID when the message is for every APIC but the
    /// sender (the shorthands "all excluding self" and "all including
    /// self", whose self part was accepted already): a VMM with one vCPU
    /// has no one to deliver it to.
    pub excluding: Option<u8>,
}

/// 256 vectors, one bit each: IRR, ISR and TMR, eight 32-bit registers
/// each at 16-byte spacing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VectorSet([u32; 8]);

impl VectorSet {
    /// The word holding `vector` and its bit there (`vector >> 5` is at
    /// most 7, so the word always exists).
    const fn place(vector: u8) -> (usize, u32) {
        ((vector >> 5) as usize, 1 << (vector & 31))
    }

    fn insert(&mut self, vector: u8) {
        let (word, bit) = Self::place(vector);
        if let Some(word) = self.0.get_mut(word) {
            *word |= bit;
        }
    }

    fn remove(&mut self, vector: u8) {
        let (word, bit) = Self::place(vector);
        if let Some(word) = self.0.get_mut(word) {
            *word &= !bit;
        }
    }

    fn contains(&self, vector: u8) -> bool {
        let (word, bit) = Self::place(vector);
        self.0.get(word).is_some_and(|word| word & bit != 0)
    }

    fn highest(&self) -> Option<u8> {
        let (index, word) = self.0.iter().enumerate().rev().find(|(_, word)| **word != 0)?;
        u8::try_from(index * 32 + 31 - word.leading_zeros() as usize).ok()
    }

    /// Register word `index` (0..8), zero beyond.
    fn word(&self, index: usize) -> u32 {
        self.0.get(index).copied().unwrap_or(0)
    }
}

/// A register of the xAPIC page, decoded from its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Register {
    Id,
    Version,
    TaskPriority,
    ArbitrationPriority,
    ProcessorPriority,
    EndOfInterrupt,
    RemoteRead,
    LogicalDestination,
    DestinationFormat,
    SpuriousVector,
    InService(usize),
    TriggerMode(usize),
    Request(usize),
    ErrorStatus,
    LocalVector(LocalInterrupt),
    CommandLow,
    CommandHigh,
    InitialCount,
    CurrentCount,
    DivideConfiguration,
}

impl Register {
    /// The register at `offset` (16-byte aligned), or `None` for a
    /// reserved offset.
    fn decode(offset: u64) -> Option<Register> {
        if !offset.is_multiple_of(16) {
            return None;
        }
        let word = |base: u64| usize::try_from((offset - base) / 16).ok();
        Some(match offset {
            0x20 => Register::Id,
            0x30 => Register::Version,
            0x80 => Register::TaskPriority,
            0x90 => Register::ArbitrationPriority,
            0xa0 => Register::ProcessorPriority,
            0xb0 => Register::EndOfInterrupt,
            0xc0 => Register::RemoteRead,
            0xd0 => Register::LogicalDestination,
            0xe0 => Register::DestinationFormat,
            0xf0 => Register::SpuriousVector,
            0x100..=0x170 => Register::InService(word(0x100)?),
            0x180..=0x1f0 => Register::TriggerMode(word(0x180)?),
            0x200..=0x270 => Register::Request(word(0x200)?),
            0x280 => Register::ErrorStatus,
            0x300 => Register::CommandLow,
            0x310 => Register::CommandHigh,
            0x380 => Register::InitialCount,
            0x390 => Register::CurrentCount,
            0x3e0 => Register::DivideConfiguration,
            _ => Register::LocalVector(LocalInterrupt::ALL.into_iter().find(|entry| entry.offset() == offset)?),
        })
    }
}

/// The one-shot or periodic count in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Countdown {
    /// When the count was loaded.
    loaded_at: Nanoseconds,
    /// The count loaded then: the initial count, or what was left of the
    /// count when the divide configuration changed.
    loaded_count: u32,
    /// When the timer fires next.
    next_expiry: Nanoseconds,
}

/// A local APIC (xAPIC) and its timer. See the module's documentation
/// for how the VMM drives it.
#[derive(Clone, Debug)]
pub struct LocalApic {
    apic_id: u8,
    clocks: TimerClocks,
    /// The latest time the APIC was told of.
    now: Nanoseconds,
    task_priority: u8,
    logical_destination: u8,
    /// DFR bits 28..31: 0xF flat, 0x0 cluster.
    destination_model: u8,
    spurious_vector: u32,
    in_service: VectorSet,
    trigger_mode: VectorSet,
    request: VectorSet,
    /// ESR as the guest last latched it by writing ESR.
    error_status: u32,
    /// Errors since that latch.
    errors_since_latch: u32,
    local_vectors: [u32; 7],
    command_low: u32,
    command_high: u32,
    initial_count: u32,
    divide_configuration: u32,
    countdown: Option<Countdown>,
    tsc_deadline: u64,
    /// Level-triggered vectors ended by EOI, not yet taken by the VMM: a
    /// set, not a queue, so that none can be lost.
    ended_level_vectors: VectorSet,
    ipis: heapless::Deque<InterprocessorInterrupt, IPI_QUEUE_CAPACITY>,
    dropped_ipis: u64,
}

impl LocalApic {
    /// The APIC with ID `apic_id` in its power-up state (SDM "Local APIC
    /// State After Power-Up or Reset"): software-disabled (SVR 0xFF),
    /// every LVT masked, IRR, ISR and TMR empty, DFR flat (all ones), the
    /// timer stopped and dividing by 2, at time 0.
    #[must_use]
    pub fn new(apic_id: u8, clocks: TimerClocks) -> Self {
        let clocks = TimerClocks { timer_hz: clocks.timer_hz.max(1), tsc_hz: clocks.tsc_hz.max(1) };
        LocalApic {
            apic_id,
            clocks,
            now: 0,
            task_priority: 0,
            logical_destination: 0,
            destination_model: 0xf,
            spurious_vector: 0xff,
            in_service: VectorSet::default(),
            trigger_mode: VectorSet::default(),
            request: VectorSet::default(),
            error_status: 0,
            errors_since_latch: 0,
            local_vectors: [LVT_MASKED; 7],
            command_low: 0,
            command_high: 0,
            initial_count: 0,
            divide_configuration: 0,
            countdown: None,
            tsc_deadline: 0,
            ended_level_vectors: VectorSet::default(),
            ipis: heapless::Deque::new(),
            dropped_ipis: 0,
        }
    }

    /// Its APIC ID.
    #[must_use]
    pub const fn apic_id(&self) -> u8 {
        self.apic_id
    }

    /// Whether SVR's software-enable bit is set.
    #[must_use]
    pub const fn is_software_enabled(&self) -> bool {
        self.spurious_vector & SVR_ENABLED != 0
    }

    /// The spurious-interrupt vector (SVR bits 0..7).
    #[must_use]
    pub const fn spurious_vector(&self) -> u8 {
        low_byte(self.spurious_vector)
    }

    /// The task priority (TPR; CR8 is its bits 4..7).
    #[must_use]
    pub const fn task_priority(&self) -> u8 {
        self.task_priority
    }

    /// Sets the task priority (a MOV to CR8 sets `cr8 << 4`).
    pub fn set_task_priority(&mut self, priority: u8) {
        self.task_priority = priority;
    }

    /// The processor priority (PPR): the task priority, or the class of
    /// the highest vector in service if that is higher.
    #[must_use]
    pub fn processor_priority(&self) -> u8 {
        let in_service = self.in_service.highest().unwrap_or(0);
        if self.task_priority >> 4 >= in_service >> 4 { self.task_priority } else { in_service & 0xf0 }
    }

    /// The raw value of LVT entry `entry`.
    #[must_use]
    pub fn local_vector(&self, entry: LocalInterrupt) -> u32 {
        self.local_vectors.get(entry.index()).copied().unwrap_or(LVT_MASKED)
    }

    /// How an interrupt on LINT0 is delivered: `None` while masked (or in
    /// the reserved mode). `Some(ExtInt)` means the 8259A's interrupts
    /// reach this processor (the VMM takes the vector from the PIC).
    #[must_use]
    pub fn lint0_mode(&self) -> Option<DeliveryMode> {
        self.lint_mode(LocalInterrupt::Lint0)
    }

    /// How an interrupt on LINT1 is delivered: `None` while masked.
    /// Linux programs NMI here.
    #[must_use]
    pub fn lint1_mode(&self) -> Option<DeliveryMode> {
        self.lint_mode(LocalInterrupt::Lint1)
    }

    fn lint_mode(&self, entry: LocalInterrupt) -> Option<DeliveryMode> {
        let value = self.local_vector(entry);
        if value & LVT_MASKED != 0 {
            return None;
        }
        DeliveryMode::from_bits(low_byte(value >> 8))
    }

    /// Whether a message with `destination` is for this APIC: physical by
    /// ID (0xFF: every APIC), logical by LDR under DFR's model (flat: any
    /// common bit; cluster: the same cluster in bits 4..7, or cluster
    /// 0xF for every cluster, and a common bit in 0..3; 0xFF: every APIC).
    #[must_use]
    pub fn is_destination(&self, destination: Destination) -> bool {
        match destination {
            Destination::Physical(id) => id == BROADCAST || id == self.apic_id,
            Destination::Logical(BROADCAST) => true,
            Destination::Logical(mask) if self.destination_model == 0 => {
                let cluster = mask >> 4;
                (cluster == 0xf || cluster == self.logical_destination >> 4)
                    && mask & self.logical_destination & 0xf != 0
            }
            Destination::Logical(mask) => mask & self.logical_destination != 0,
        }
    }

    /// Accepts a fixed (or lowest-priority) interrupt with `vector` into
    /// IRR, marking TMR for a level-triggered one. Returns whether it was
    /// accepted: a vector below 16 is refused (ESR's receive-illegal-
    /// vector bit), and a software-disabled APIC drops it.
    pub fn accept(&mut self, vector: u8, trigger: Trigger) -> bool {
        if vector < FIRST_LEGAL_VECTOR {
            self.record_error(ERROR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        if !self.is_software_enabled() {
            return false;
        }
        self.request.insert(vector);
        match trigger {
            Trigger::Edge => self.trigger_mode.remove(vector),
            Trigger::Level => self.trigger_mode.insert(vector),
        }
        true
    }

    /// The vector the VMM should inject next: the highest requested one
    /// whose priority class (bits 4..7) is above PPR's, while the APIC is
    /// software-enabled.
    #[must_use]
    pub fn highest_pending(&self) -> Option<u8> {
        if !self.is_software_enabled() {
            return None;
        }
        let vector = self.request.highest()?;
        (vector >> 4 > self.processor_priority() >> 4).then_some(vector)
    }

    /// Moves `vector` from IRR to ISR, as the processor does when it
    /// takes the interrupt: the VMM calls it when it injects the vector.
    /// Returns whether `vector` was requested (nothing changes if not).
    pub fn acknowledge(&mut self, vector: u8) -> bool {
        if !self.request.contains(vector) {
            return false;
        }
        self.request.remove(vector);
        self.in_service.insert(vector);
        true
    }

    /// The next level-triggered vector the guest has ended with EOI, for
    /// the I/O APIC, highest first. A vector ended twice before the VMM
    /// takes it is reported once: ending it in the I/O APIC twice would
    /// do no more.
    pub fn take_eoi(&mut self) -> Option<u8> {
        let vector = self.ended_level_vectors.highest()?;
        self.ended_level_vectors.remove(vector);
        Some(vector)
    }

    /// The next IPI for the VMM to route, oldest first.
    pub fn take_ipi(&mut self) -> Option<InterprocessorInterrupt> {
        self.ipis.pop_front()
    }

    /// How many IPIs were dropped because the queue was full.
    #[must_use]
    pub const fn dropped_ipis(&self) -> u64 {
        self.dropped_ipis
    }

    /// The timer's mode.
    #[must_use]
    pub fn timer_mode(&self) -> TimerMode {
        match (self.local_vector(LocalInterrupt::Timer) & LVT_TIMER_MODE) >> 17 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }

    /// The divide configuration's divisor: 1, 2, 4, ..., 128.
    #[must_use]
    pub const fn timer_divisor(&self) -> u32 {
        let code = ((self.divide_configuration >> 1) & 0b100) | (self.divide_configuration & 0b11);
        if code == 0b111 { 1 } else { 2 << code }
    }

    /// The guest's TSC at `now`.
    #[must_use]
    pub fn tsc_at(&self, now: Nanoseconds) -> u64 {
        let ticks = u128::from(now) * u128::from(self.clocks.tsc_hz) / NANOSECONDS_PER_SECOND;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The earliest time at which the guest's TSC reads `tsc` or more.
    fn time_of_tsc(&self, tsc: u64) -> Nanoseconds {
        let nanoseconds = (u128::from(tsc) * NANOSECONDS_PER_SECOND).div_ceil(u128::from(self.clocks.tsc_hz));
        saturate_to_nanoseconds(nanoseconds)
    }

    /// IA32_TSC_DEADLINE as RDMSR reads it: the armed deadline, 0 once it
    /// fired or outside TSC-deadline mode.
    #[must_use]
    pub fn tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TimerMode::TscDeadline { self.tsc_deadline } else { 0 }
    }

    /// WRMSR of IA32_TSC_DEADLINE at `now`: arms the timer for TSC
    /// `deadline` (0 disarms it). Outside TSC-deadline mode the write is
    /// ignored (SDM). A deadline already passed fires at once.
    pub fn set_tsc_deadline(&mut self, deadline: u64, now: Nanoseconds) {
        self.poll_timer(now);
        if self.timer_mode() == TimerMode::TscDeadline {
            self.tsc_deadline = deadline;
            self.poll_timer(now);
        }
    }

    /// Advances the APIC's time to `now` and fires the timer if it is
    /// due: its vector goes into IRR unless the LVT entry is masked.
    /// Returns whether the timer expired. At most one interrupt per call,
    /// in constant time.
    pub fn poll_timer(&mut self, now: Nanoseconds) -> bool {
        self.now = max(self.now, now);
        let now = self.now;
        match self.timer_mode() {
            TimerMode::TscDeadline => {
                if self.tsc_deadline == 0 || self.tsc_at(now) < self.tsc_deadline {
                    return false;
                }
                // The SDM: the timer disarms itself by clearing the MSR.
                self.tsc_deadline = 0;
            }
            mode @ (TimerMode::OneShot | TimerMode::Periodic) => {
                let Some(mut countdown) = self.countdown.filter(|countdown| now >= countdown.next_expiry) else {
                    return false;
                };
                if mode == TimerMode::Periodic {
                    countdown.next_expiry = self.next_periodic_expiry(&countdown, now);
                    self.countdown = Some(countdown);
                } else {
                    self.countdown = None;
                }
            }
        }
        self.fire_local(LocalInterrupt::Timer);
        true
    }

    /// When the VMM should next call [`LocalApic::poll_timer`] (no earlier
    /// than `now`), or `None` if the timer cannot fire: stopped, disarmed,
    /// or masked (a masked timer's expiry is caught up with by the poll
    /// that precedes the access unmasking it).
    #[must_use]
    pub fn next_timer_event(&self, now: Nanoseconds) -> Option<Nanoseconds> {
        if self.local_vector(LocalInterrupt::Timer) & LVT_MASKED != 0 {
            return None;
        }
        let expiry = match self.timer_mode() {
            TimerMode::TscDeadline => (self.tsc_deadline != 0).then(|| self.time_of_tsc(self.tsc_deadline))?,
            TimerMode::OneShot | TimerMode::Periodic => self.countdown?.next_expiry,
        };
        Some(max(expiry, now))
    }

    /// The timer's current count at `now` (0 in TSC-deadline mode, and
    /// once a one-shot count has run out).
    #[must_use]
    pub fn current_count(&self, now: Nanoseconds) -> u32 {
        let now = max(self.now, now);
        let mode = self.timer_mode();
        let Some(countdown) = self.countdown.filter(|_| mode != TimerMode::TscDeadline) else {
            return 0;
        };
        let ticks = self.ticks_between(countdown.loaded_at, now);
        let loaded = u128::from(countdown.loaded_count);
        // A periodic count reloads; so does the count of a timer switched
        // from periodic to one-shot since its last reload, until the
        // period under way runs out (its expiry is still ahead).
        let reloading = mode == TimerMode::Periodic || now < countdown.next_expiry;
        let count = if ticks < loaded {
            loaded - ticks
        } else if reloading && self.initial_count != 0 {
            let initial = u128::from(self.initial_count);
            initial - (ticks - loaded) % initial
        } else {
            0
        };
        u32::try_from(count).unwrap_or(0)
    }

    /// Timer ticks (input clock over the divisor) from `start` to `now`.
    fn ticks_between(&self, start: Nanoseconds, now: Nanoseconds) -> u128 {
        let elapsed = u128::from(now.saturating_sub(start));
        elapsed * u128::from(self.clocks.timer_hz) / (NANOSECONDS_PER_SECOND * u128::from(self.timer_divisor()))
    }

    /// The earliest time at which `ticks` ticks have passed since `start`.
    fn time_after_ticks(&self, start: Nanoseconds, ticks: u128) -> Nanoseconds {
        let scaled = ticks.saturating_mul(NANOSECONDS_PER_SECOND * u128::from(self.timer_divisor()));
        start.saturating_add(saturate_to_nanoseconds(scaled.div_ceil(u128::from(self.clocks.timer_hz))))
    }

    /// When a periodic count fires after `now`: the next reload after
    /// `now` (skipping any periods missed), and no sooner than
    /// [`MIN_PERIODIC_INTERVAL`] from `now`.
    fn next_periodic_expiry(&self, countdown: &Countdown, now: Nanoseconds) -> Nanoseconds {
        let ticks = self.ticks_between(countdown.loaded_at, now);
        let loaded = u128::from(countdown.loaded_count);
        let period = u128::from(self.initial_count.max(1));
        let boundary = if ticks < loaded {
            loaded
        } else {
            loaded.saturating_add(((ticks - loaded) / period).saturating_add(1).saturating_mul(period))
        };
        max(self.time_after_ticks(countdown.loaded_at, boundary), now.saturating_add(MIN_PERIODIC_INTERVAL))
    }

    /// Loads `count` into the timer at the current time (0 stops it).
    fn load_count(&mut self, count: u32) {
        let now = self.now;
        self.countdown = (count != 0).then(|| {
            let mut next_expiry = self.time_after_ticks(now, u128::from(count));
            if self.timer_mode() == TimerMode::Periodic {
                next_expiry = max(next_expiry, now.saturating_add(MIN_PERIODIC_INTERVAL));
            }
            Countdown { loaded_at: now, loaded_count: count, next_expiry }
        });
    }

    /// Delivers LVT entry `entry`'s vector to this APIC unless masked
    /// (the timer, the error interrupt: fixed, edge-triggered).
    fn fire_local(&mut self, entry: LocalInterrupt) {
        let value = self.local_vector(entry);
        if value & LVT_MASKED != 0 {
            return;
        }
        self.accept(low_byte(value), Trigger::Edge);
    }

    /// Records errors `bits` in ESR and, when one is new, signals the
    /// error LVT. An illegal vector there adds its own error bit, which is
    /// then not new: the recursion ends after one step.
    fn record_error(&mut self, bits: u32) {
        let new = bits & !self.errors_since_latch;
        self.errors_since_latch |= bits;
        if new != 0 {
            self.fire_local(LocalInterrupt::Error);
        }
    }

    /// A read of the 32-bit register at 16-byte-aligned `offset`, at time
    /// `now`. A reserved offset reads 0 and sets ESR's illegal-register-
    /// address bit.
    pub fn read_register(&mut self, offset: u64, now: Nanoseconds) -> u32 {
        self.poll_timer(now);
        let Some(register) = Register::decode(offset) else {
            self.record_error(ERROR_ILLEGAL_REGISTER_ADDRESS);
            return 0;
        };
        match register {
            Register::Id => u32::from(self.apic_id) << 24,
            Register::Version => LOCAL_APIC_VERSION,
            Register::TaskPriority => u32::from(self.task_priority),
            Register::ProcessorPriority => u32::from(self.processor_priority()),
            // APR matters to lowest-priority arbitration, which the VMM does.
            Register::ArbitrationPriority | Register::EndOfInterrupt | Register::RemoteRead => 0,
            Register::LogicalDestination => u32::from(self.logical_destination) << 24,
            Register::DestinationFormat => (u32::from(self.destination_model) << 28) | 0x0fff_ffff,
            Register::SpuriousVector => self.spurious_vector,
            Register::InService(word) => self.in_service.word(word),
            Register::TriggerMode(word) => self.trigger_mode.word(word),
            Register::Request(word) => self.request.word(word),
            Register::ErrorStatus => self.error_status,
            Register::LocalVector(entry) => self.local_vector(entry),
            // Delivery status (bit 12) reads idle: IPIs are sent at once.
            Register::CommandLow => self.command_low,
            Register::CommandHigh => self.command_high,
            Register::InitialCount => self.initial_count,
            Register::CurrentCount => self.current_count(self.now),
            Register::DivideConfiguration => self.divide_configuration,
        }
    }

    /// A write of `value` to the 32-bit register at 16-byte-aligned
    /// `offset`, at time `now`, masked to the register's bits. Read-only
    /// registers ignore it; a reserved offset sets ESR's illegal-register-
    /// address bit.
    pub fn write_register(&mut self, offset: u64, value: u32, now: Nanoseconds) {
        self.poll_timer(now);
        let Some(register) = Register::decode(offset) else {
            self.record_error(ERROR_ILLEGAL_REGISTER_ADDRESS);
            return;
        };
        match register {
            Register::TaskPriority => self.task_priority = low_byte(value),
            Register::EndOfInterrupt => self.end_of_interrupt(),
            Register::LogicalDestination => self.logical_destination = top_byte(value),
            Register::DestinationFormat => self.destination_model = top_byte(value) >> 4,
            Register::SpuriousVector => self.write_spurious_vector(value),
            Register::ErrorStatus => {
                // A write latches the errors seen since the last one.
                self.error_status = self.errors_since_latch;
                self.errors_since_latch = 0;
            }
            Register::LocalVector(entry) => self.write_local_vector(entry, value),
            Register::CommandLow => {
                self.command_low = value & ICR_LOW_WRITABLE;
                self.send_ipi();
            }
            Register::CommandHigh => self.command_high = value & ICR_HIGH_WRITABLE,
            Register::InitialCount => {
                // In TSC-deadline mode the initial count is not used (SDM).
                if self.timer_mode() != TimerMode::TscDeadline {
                    self.initial_count = value;
                    self.load_count(value);
                }
            }
            Register::DivideConfiguration => self.write_divide_configuration(value),
            Register::Id
            | Register::Version
            | Register::ArbitrationPriority
            | Register::ProcessorPriority
            | Register::RemoteRead
            | Register::InService(_)
            | Register::TriggerMode(_)
            | Register::Request(_)
            | Register::CurrentCount => {}
        }
    }

    /// EOI: ends the highest vector in service; a level-triggered one is
    /// reported through [`LocalApic::take_eoi`].
    fn end_of_interrupt(&mut self) {
        let Some(vector) = self.in_service.highest() else {
            return;
        };
        self.in_service.remove(vector);
        if self.trigger_mode.contains(vector) {
            self.ended_level_vectors.insert(vector);
        }
    }

    fn write_spurious_vector(&mut self, value: u32) {
        self.spurious_vector = value & SVR_WRITABLE;
        if !self.is_software_enabled() {
            // The SDM: software disabling masks every LVT entry.
            for entry in &mut self.local_vectors {
                *entry |= LVT_MASKED;
            }
        }
    }

    fn write_local_vector(&mut self, entry: LocalInterrupt, value: u32) {
        let mut value = value & entry.writable_bits();
        if !self.is_software_enabled() {
            // Mask bits cannot be cleared while software-disabled.
            value |= LVT_MASKED;
        }
        let was_deadline = self.timer_mode() == TimerMode::TscDeadline;
        if let Some(slot) = self.local_vectors.get_mut(entry.index()) {
            *slot = value;
        }
        if entry == LocalInterrupt::Timer && was_deadline != (self.timer_mode() == TimerMode::TscDeadline) {
            // Moving into or out of TSC-deadline mode disarms the timer.
            self.initial_count = 0;
            self.countdown = None;
            self.tsc_deadline = 0;
        }
    }

    fn write_divide_configuration(&mut self, value: u32) {
        let counting = self.countdown.is_some() && self.timer_mode() != TimerMode::TscDeadline;
        let remaining = self.current_count(self.now);
        self.divide_configuration = value & DIVIDE_CONFIGURATION_WRITABLE;
        if counting && remaining != 0 {
            // Count on from where the count is, at the new rate.
            self.load_count(remaining);
        }
    }

    /// Sends the IPI the ICR now holds.
    fn send_ipi(&mut self) {
        let command = self.command_low;
        let vector = low_byte(command);
        let Some(delivery) = DeliveryMode::from_bits(low_byte(command >> 8)) else {
            return;
        };
        // An xAPIC sends every IPI edge-triggered: the level de-assert
        // form (level trigger, level bit clear) is ignored, and a level
        // trigger with the level bit set is treated as edge (SDM vol. 3,
        // "Interrupt Command Register"), so an IPI never sets the
        // receiver's TMR nor reports a level EOI.
        if command & ICR_LEVEL_TRIGGERED != 0 && command & ICR_ASSERT == 0 {
            return;
        }
        let trigger = Trigger::Edge;
        let carries_vector = matches!(delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority);
        if carries_vector && vector < FIRST_LEGAL_VECTOR {
            self.record_error(ERROR_SEND_ILLEGAL_VECTOR);
            return;
        }
        let broadcast = InterruptMessage { vector, delivery, destination: Destination::Physical(BROADCAST), trigger };
        let others = InterprocessorInterrupt { message: broadcast, excluding: Some(self.apic_id) };
        match (command >> 18) & 0b11 {
            0 => {
                let target = top_byte(self.command_high);
                let destination = if command & ICR_LOGICAL != 0 {
                    Destination::Logical(target)
                } else {
                    Destination::Physical(target)
                };
                let message = InterruptMessage { vector, delivery, destination, trigger };
                self.queue_ipi(InterprocessorInterrupt { message, excluding: None });
            }
            1 => {
                if delivery == DeliveryMode::Fixed {
                    self.accept(vector, Trigger::Edge);
                }
            }
            2 => {
                if delivery == DeliveryMode::Fixed {
                    self.accept(vector, Trigger::Edge);
                    self.queue_ipi(others);
                }
            }
            _ => self.queue_ipi(others),
        }
    }

    fn queue_ipi(&mut self, ipi: InterprocessorInterrupt) {
        if self.ipis.push_back(ipi).is_err() {
            self.dropped_ipis = self.dropped_ipis.saturating_add(1);
        }
    }
}

impl MmioDevice for LocalApic {
    /// The 16-byte slot holding `offset` read as the register's 32 bits
    /// then zeros; bytes past the slot read 0. At the last polled time.
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        let within = offset % 16;
        let register = self.read_register(offset - within, self.now);
        let slot = u128::from(register).to_le_bytes();
        let mut value = [0; 8];
        for (index, byte) in value.iter_mut().take(size.bytes()).enumerate() {
            let at = usize::try_from(within).unwrap_or(usize::MAX).saturating_add(index);
            *byte = slot.get(at).copied().unwrap_or(0);
        }
        u64::from_le_bytes(value)
    }

    /// Only a 32-bit write at a register's aligned offset acts; others
    /// are ignored. At the last polled time.
    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop> {
        if size == AccessSize::Dword && offset.is_multiple_of(16) {
            self.write_register(offset, low_dword(value), self.now);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A 100 MHz timer clock (10 ns a tick) and a 2 GHz TSC.
    const CLOCKS: TimerClocks = TimerClocks { timer_hz: 100_000_000, tsc_hz: 2_000_000_000 };

    const TPR: u64 = 0x80;
    const PPR: u64 = 0xa0;
    const EOI: u64 = 0xb0;
    const LDR: u64 = 0xd0;
    const DFR: u64 = 0xe0;
    const SVR: u64 = 0xf0;
    const ISR: u64 = 0x100;
    const TMR: u64 = 0x180;
    const IRR: u64 = 0x200;
    const ESR: u64 = 0x280;
    const ICR_LOW: u64 = 0x300;
    const ICR_HIGH: u64 = 0x310;
    const LVT_TIMER: u64 = 0x320;
    const LVT_LINT0: u64 = 0x350;
    const LVT_LINT1: u64 = 0x360;
    const LVT_ERROR: u64 = 0x370;
    const INITIAL_COUNT: u64 = 0x380;
    const CURRENT_COUNT: u64 = 0x390;
    const DIVIDE: u64 = 0x3e0;

    const ONE_SHOT: u32 = 0;
    const PERIODIC: u32 = 1 << 17;
    const TSC_DEADLINE: u32 = 2 << 17;

    fn enabled(apic_id: u8) -> LocalApic {
        let mut apic = LocalApic::new(apic_id, CLOCKS);
        apic.write_register(SVR, 0x1ff, 0);
        apic
    }

    /// Accepts and acknowledges `vector`, as the VMM does when it injects.
    fn inject(apic: &mut LocalApic, vector: u8, trigger: Trigger) {
        assert!(apic.accept(vector, trigger));
        assert_eq!(apic.highest_pending(), Some(vector));
        assert!(apic.acknowledge(vector));
    }

    /// Divide by 1: one tick every 10 ns.
    fn timer(mode: u32, vector: u8) -> LocalApic {
        let mut apic = enabled(0);
        apic.write_register(DIVIDE, 0b1011, 0);
        apic.write_register(LVT_TIMER, mode | u32::from(vector), 0);
        apic
    }

    #[test]
    fn it_powers_up_as_the_sdm_says() {
        let mut apic = LocalApic::new(3, CLOCKS);
        assert_eq!(apic.read_register(0x20, 0), 3 << 24);
        assert_eq!(apic.read_register(0x30, 0), 0x0005_0014);
        assert_eq!(apic.read_register(SVR, 0), 0xff);
        assert_eq!(apic.read_register(DFR, 0), 0xffff_ffff);
        assert_eq!(apic.read_register(LDR, 0), 0);
        for entry in LocalInterrupt::ALL {
            assert_eq!(apic.read_register(entry.offset(), 0), LVT_MASKED, "{entry:?}");
        }
        assert_eq!(apic.timer_divisor(), 2);
        assert!(!apic.is_software_enabled());
        assert_eq!(apic.lint0_mode(), None);
        assert_eq!(apic.next_timer_event(0), None);
    }

    #[test]
    fn linux_bring_up_on_the_bsp() {
        let mut apic = LocalApic::new(0, CLOCKS);
        // setup_local_APIC: TPR 0, flat model, LDR from the CPU number.
        apic.write_register(TPR, 0, 0);
        apic.write_register(DFR, 0xffff_ffff, 0);
        apic.write_register(LDR, 1 << 24, 0);
        // Enabled with the spurious vector 0xFF.
        apic.write_register(SVR, 0x1ff, 0);
        assert!(apic.is_software_enabled());
        assert_eq!(apic.spurious_vector(), 0xff);
        // LINT0 ExtINT (unmasked on the BSP in virtual-wire mode), LINT1 NMI.
        apic.write_register(LVT_LINT0, 0x700, 0);
        apic.write_register(LVT_LINT1, 0x400, 0);
        assert_eq!(apic.lint0_mode(), Some(DeliveryMode::ExtInt));
        assert_eq!(apic.lint1_mode(), Some(DeliveryMode::Nmi));
        // The error vector, then ESR cleared by writes.
        apic.write_register(LVT_ERROR, 0xfe, 0);
        apic.write_register(ESR, 0, 0);
        apic.write_register(ESR, 0, 0);
        assert_eq!(apic.read_register(ESR, 0), 0);
        // The timer: vector 0xEC, TSC-deadline mode, then a deadline.
        apic.write_register(LVT_TIMER, TSC_DEADLINE | 0xec, 0);
        apic.set_tsc_deadline(2_000, 0);
        assert_eq!(apic.next_timer_event(0), Some(1_000));
        assert!(apic.poll_timer(1_000));
        assert_eq!(apic.highest_pending(), Some(0xec));
        assert!(apic.is_destination(Destination::Logical(1)));
        assert!(!apic.is_destination(Destination::Logical(2)));
        // LINT0 masked again once the I/O APIC takes over.
        apic.write_register(LVT_LINT0, 0x1_0700, 0);
        assert_eq!(apic.lint0_mode(), None);
        assert_eq!(apic.read_register(LVT_LINT0, 0), 0x1_0700);
    }

    #[test]
    fn software_disabling_masks_every_lvt_and_drops_interrupts() {
        let mut apic = enabled(0);
        apic.write_register(LVT_LINT0, 0x700, 0);
        apic.write_register(LVT_TIMER, 0x40, 0);
        assert!(apic.accept(0x50, Trigger::Edge));
        apic.write_register(SVR, 0xff, 0);
        assert_eq!(apic.read_register(LVT_LINT0, 0), 0x1_0700);
        assert_eq!(apic.read_register(LVT_TIMER, 0), 0x1_0040);
        // The mask cannot be cleared while disabled.
        apic.write_register(LVT_LINT0, 0x700, 0);
        assert_eq!(apic.lint0_mode(), None);
        assert!(!apic.accept(0x60, Trigger::Edge));
        assert_eq!(apic.highest_pending(), None);
        // IRR held what it had.
        assert_eq!(apic.read_register(IRR + 0x20, 0), 1 << 16);
        apic.write_register(SVR, 0x1ff, 0);
        assert_eq!(apic.highest_pending(), Some(0x50));
    }

    #[test]
    fn register_writes_are_masked_to_their_bits() {
        let mut apic = enabled(0);
        apic.write_register(SVR, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(SVR, 0), 0x3ff);
        apic.write_register(LVT_TIMER, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(LVT_TIMER, 0), 0x7_00ff);
        apic.write_register(LVT_LINT0, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(LVT_LINT0, 0), 0x1_a7ff);
        apic.write_register(LVT_ERROR, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(LVT_ERROR, 0), 0x1_00ff);
        apic.write_register(0x340, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(0x340, 0), 0x1_07ff);
        apic.write_register(DIVIDE, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(DIVIDE, 0), 0b1011);
        apic.write_register(TPR, 0xffff_ff35, 0);
        assert_eq!(apic.read_register(TPR, 0), 0x35);
        apic.write_register(LDR, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(LDR, 0), 0xff00_0000);
        apic.write_register(DFR, 0x0123_4567, 0);
        assert_eq!(apic.read_register(DFR, 0), 0x0fff_ffff);
        apic.write_register(ICR_HIGH, 0xffff_ffff, 0);
        assert_eq!(apic.read_register(ICR_HIGH, 0), 0xff00_0000);
        // Read-only registers keep their values.
        apic.write_register(0x20, 0xffff_ffff, 0);
        apic.write_register(0x30, 0, 0);
        assert_eq!(apic.read_register(0x20, 0), 0);
        assert_eq!(apic.read_register(0x30, 0), LOCAL_APIC_VERSION);
        assert_eq!(apic.read_register(ESR, 0), 0);
    }

    #[test]
    fn reserved_offsets_read_zero_and_set_the_illegal_register_bit() {
        let mut apic = enabled(0);
        apic.write_register(LVT_ERROR, 0xfe, 0);
        assert_eq!(apic.read_register(0x40, 0), 0);
        apic.write_register(0x3f0, 1, 0);
        apic.write_register(ESR, 0, 0);
        assert_eq!(apic.read_register(ESR, 0), ERROR_ILLEGAL_REGISTER_ADDRESS);
        // The error LVT fired once for the new error bit.
        assert_eq!(apic.highest_pending(), Some(0xfe));
        // The next write latches the errors since: none.
        apic.write_register(ESR, 0, 0);
        assert_eq!(apic.read_register(ESR, 0), 0);
    }

    #[test]
    fn mmio_accesses_of_other_sizes_are_defined() {
        let mut apic = LocalApic::new(0x12, CLOCKS);
        assert_eq!(apic.read(0x20, AccessSize::Dword), 0x1200_0000);
        assert_eq!(apic.read(0x23, AccessSize::Byte), 0x12);
        assert_eq!(apic.read(0x22, AccessSize::Word), 0x12 << 8);
        assert_eq!(apic.read(0x30, AccessSize::Qword), 0x0005_0014);
        assert_eq!(apic.read(0x24, AccessSize::Dword), 0);
        assert_eq!(apic.read(0x2e, AccessSize::Qword), 0);
        assert_eq!(apic.read(0xfff, AccessSize::Byte), 0);
        assert_eq!(apic.read(u64::MAX, AccessSize::Qword), 0);
        // Only aligned dword writes act.
        for (offset, size) in [(0xf0, AccessSize::Byte), (0xf0, AccessSize::Qword), (0xf4, AccessSize::Dword)] {
            assert_eq!(apic.write(offset, size, 0x1ff), ControlFlow::Continue(()));
            assert!(!apic.is_software_enabled());
        }
        assert_eq!(apic.write(0xf0, AccessSize::Dword, 0xffff_ffff_0000_01ff), ControlFlow::Continue(()));
        assert!(apic.is_software_enabled());
    }

    #[test]
    fn vectors_below_16_are_illegal() {
        let mut apic = enabled(0);
        for vector in 0..16 {
            assert!(!apic.accept(vector, Trigger::Edge));
        }
        assert_eq!(apic.highest_pending(), None);
        apic.write_register(ESR, 0, 0);
        assert_eq!(apic.read_register(ESR, 0), ERROR_RECEIVE_ILLEGAL_VECTOR);
    }

    #[test]
    fn an_illegal_error_vector_does_not_recurse() {
        let mut apic = enabled(0);
        apic.write_register(LVT_ERROR, 0x03, 0);
        apic.read_register(0x50, 0);
        apic.write_register(ESR, 0, 0);
        assert_eq!(apic.read_register(ESR, 0), ERROR_ILLEGAL_REGISTER_ADDRESS | ERROR_RECEIVE_ILLEGAL_VECTOR);
        assert_eq!(apic.highest_pending(), None);
    }

    #[test]
    fn priority_classes_decide_what_is_pending() {
        let mut apic = enabled(0);
        apic.write_register(TPR, 0x45, 0);
        assert_eq!(apic.read_register(PPR, 0), 0x45);
        // Class 4 does not beat TPR class 4; class 5 does.
        assert!(apic.accept(0x4f, Trigger::Edge));
        assert_eq!(apic.highest_pending(), None);
        assert!(apic.accept(0x50, Trigger::Edge));
        assert_eq!(apic.highest_pending(), Some(0x50));
        assert!(apic.acknowledge(0x50));
        // In service 0x50 raises PPR to its class (TPR's low bits go).
        assert_eq!(apic.read_register(PPR, 0), 0x50);
        assert!(apic.accept(0x5a, Trigger::Edge));
        assert_eq!(apic.highest_pending(), None);
        assert!(apic.accept(0x61, Trigger::Edge));
        assert_eq!(apic.highest_pending(), Some(0x61));
        assert!(apic.acknowledge(0x61));
        assert_eq!(apic.read_register(PPR, 0), 0x60);
        assert_eq!(apic.read_register(ISR + 0x20, 0), 1 << 16);
        assert_eq!(apic.read_register(ISR + 0x30, 0), 1 << 1);
        // EOI ends the highest in service first.
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.read_register(PPR, 0), 0x50);
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.read_register(PPR, 0), 0x45);
        assert_eq!(apic.highest_pending(), Some(0x5a));
        // A TPR above everything blocks it; CR8 writes go through TPR.
        apic.set_task_priority(0xf0);
        assert_eq!(apic.highest_pending(), None);
        apic.set_task_priority(0);
        assert_eq!(apic.task_priority(), 0);
        assert_eq!(apic.highest_pending(), Some(0x5a));
    }

    #[test]
    fn a_tpr_above_the_in_service_class_is_the_ppr() {
        let mut apic = enabled(0);
        inject(&mut apic, 0x31, Trigger::Edge);
        apic.write_register(TPR, 0x72, 0);
        assert_eq!(apic.processor_priority(), 0x72);
        apic.write_register(TPR, 0x31, 0);
        assert_eq!(apic.processor_priority(), 0x31);
        apic.write_register(TPR, 0x2f, 0);
        assert_eq!(apic.processor_priority(), 0x30);
    }

    #[test]
    fn acknowledging_an_unrequested_vector_does_nothing() {
        let mut apic = enabled(0);
        assert!(!apic.acknowledge(0x40));
        assert_eq!(apic.read_register(ISR + 0x20, 0), 0);
        // EOI with nothing in service is harmless.
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.take_eoi(), None);
    }

    #[test]
    fn eoi_of_a_level_vector_is_reported_and_of_an_edge_vector_not() {
        let mut apic = enabled(0);
        inject(&mut apic, 0x31, Trigger::Level);
        inject(&mut apic, 0x41, Trigger::Edge);
        assert_eq!(apic.read_register(TMR + 0x10, 0), 1 << 17);
        assert_eq!(apic.read_register(TMR + 0x20, 0), 0);
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.take_eoi(), None);
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.take_eoi(), Some(0x31));
        assert_eq!(apic.take_eoi(), None);
        // Accepted as edge later, the same vector's EOI is not reported.
        inject(&mut apic, 0x31, Trigger::Edge);
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.take_eoi(), None);
    }

    #[test]
    fn a_vector_may_be_requested_again_while_in_service() {
        let mut apic = enabled(0);
        inject(&mut apic, 0x80, Trigger::Edge);
        assert!(apic.accept(0x80, Trigger::Edge));
        // Same class as in service: it waits for the EOI.
        assert_eq!(apic.highest_pending(), None);
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.highest_pending(), Some(0x80));
    }

    #[test]
    fn one_shot_counts_down_exactly_and_fires_once() {
        let mut apic = timer(ONE_SHOT, 0x30);
        apic.write_register(INITIAL_COUNT, 1000, 100);
        assert_eq!(apic.read_register(CURRENT_COUNT, 100), 1000);
        assert_eq!(apic.read_register(CURRENT_COUNT, 109), 1000);
        assert_eq!(apic.read_register(CURRENT_COUNT, 110), 999);
        assert_eq!(apic.read_register(CURRENT_COUNT, 5_100), 500);
        assert_eq!(apic.next_timer_event(5_100), Some(10_100));
        assert!(!apic.poll_timer(10_099));
        assert_eq!(apic.read_register(CURRENT_COUNT, 10_099), 1);
        assert!(apic.poll_timer(10_100));
        assert_eq!(apic.highest_pending(), Some(0x30));
        assert_eq!(apic.read_register(CURRENT_COUNT, 10_100), 0);
        assert_eq!(apic.next_timer_event(10_100), None);
        assert!(!apic.poll_timer(1_000_000));
        assert_eq!(apic.read_register(INITIAL_COUNT, 1_000_000), 1000);
    }

    #[test]
    fn a_late_poll_fires_a_one_shot_once() {
        let mut apic = timer(ONE_SHOT, 0x30);
        apic.write_register(INITIAL_COUNT, 10, 0);
        assert!(apic.poll_timer(1_000_000));
        assert!(!apic.poll_timer(2_000_000));
    }

    #[test]
    fn writing_the_initial_count_restarts_and_zero_stops() {
        let mut apic = timer(ONE_SHOT, 0x30);
        apic.write_register(INITIAL_COUNT, 1000, 0);
        apic.write_register(INITIAL_COUNT, 500, 4_000);
        assert_eq!(apic.next_timer_event(4_000), Some(9_000));
        apic.write_register(INITIAL_COUNT, 0, 5_000);
        assert_eq!(apic.next_timer_event(5_000), None);
        assert_eq!(apic.read_register(CURRENT_COUNT, 5_000), 0);
        assert!(!apic.poll_timer(100_000));
    }

    #[test]
    fn periodic_reloads_and_counts_exactly() {
        let mut apic = timer(PERIODIC, 0x31);
        // 20_000 ticks of 10 ns: 200 us a period (above the minimum).
        apic.write_register(INITIAL_COUNT, 20_000, 0);
        assert_eq!(apic.next_timer_event(0), Some(200_000));
        assert_eq!(apic.read_register(CURRENT_COUNT, 199_990), 1);
        assert!(apic.poll_timer(200_000));
        assert_eq!(apic.read_register(CURRENT_COUNT, 200_000), 20_000);
        assert_eq!(apic.read_register(CURRENT_COUNT, 200_010), 19_999);
        assert_eq!(apic.next_timer_event(200_000), Some(400_000));
        assert!(apic.acknowledge(0x31));
        assert!(!apic.poll_timer(399_999));
        assert!(apic.poll_timer(400_000));
        assert_eq!(apic.highest_pending(), None, "class 3 is in service");
        apic.write_register(EOI, 0, 400_000);
        assert_eq!(apic.highest_pending(), Some(0x31));
    }

    #[test]
    fn a_timer_switched_to_one_shot_counts_out_its_period() {
        let mut apic = timer(PERIODIC, 0x31);
        apic.write_register(INITIAL_COUNT, 20_000, 0);
        assert!(apic.poll_timer(200_000));
        // One-shot now, 50 us into the second period: the count still
        // runs down to 0 at its end, fires once, and stays at 0.
        apic.write_register(LVT_TIMER, ONE_SHOT | 0x31, 250_000);
        assert_eq!(apic.read_register(CURRENT_COUNT, 250_000), 15_000);
        assert_eq!(apic.read_register(CURRENT_COUNT, 399_990), 1);
        assert!(apic.poll_timer(400_000));
        assert_eq!(apic.read_register(CURRENT_COUNT, 400_000), 0);
        assert!(!apic.poll_timer(600_000));
        assert_eq!(apic.read_register(CURRENT_COUNT, 600_000), 0);
    }

    #[test]
    fn a_periodic_timer_that_fell_behind_fires_once() {
        let mut apic = timer(PERIODIC, 0x31);
        apic.write_register(INITIAL_COUNT, 20_000, 0);
        // Ten periods late: one interrupt, and the next at the next reload.
        assert!(apic.poll_timer(2_050_000));
        assert!(!apic.poll_timer(2_050_000));
        assert_eq!(apic.next_timer_event(2_050_000), Some(2_200_000));
        assert_eq!(apic.read_register(CURRENT_COUNT, 2_050_000), 15_000);
    }

    #[test]
    fn a_tiny_periodic_count_is_bounded_by_the_minimum_interval() {
        let mut apic = timer(PERIODIC, 0x31);
        apic.write_register(INITIAL_COUNT, 1, 0);
        assert_eq!(apic.next_timer_event(0), Some(MIN_PERIODIC_INTERVAL));
        let mut now = 0;
        let mut fired = 0;
        while let Some(next) = apic.next_timer_event(now) {
            if next > 1_000_000 {
                break;
            }
            now = next;
            fired += u32::from(apic.poll_timer(now));
        }
        assert_eq!(fired, 10);
        // The count itself still runs at the programmed rate.
        assert_eq!(apic.current_count(now + 5), 1);
    }

    #[test]
    fn the_divide_configuration_selects_1_to_128() {
        let expected = [
            (0b0000, 2),
            (0b0001, 4),
            (0b0010, 8),
            (0b0011, 16),
            (0b1000, 32),
            (0b1001, 64),
            (0b1010, 128),
            (0b1011, 1),
        ];
        for (configuration, divisor) in expected {
            let mut apic = enabled(0);
            apic.write_register(DIVIDE, configuration, 0);
            assert_eq!(apic.timer_divisor(), divisor);
            apic.write_register(LVT_TIMER, 0x30, 0);
            apic.write_register(INITIAL_COUNT, 100, 0);
            // 100 ticks of 10 ns times the divisor.
            let expiry = 1_000 * u64::from(divisor);
            assert_eq!(apic.next_timer_event(0), Some(expiry), "divide {configuration:#b}");
            assert_eq!(apic.read_register(CURRENT_COUNT, expiry / 2), 50);
            assert!(!apic.poll_timer(expiry - 1));
            assert!(apic.poll_timer(expiry));
        }
    }

    #[test]
    fn changing_the_divisor_while_counting_continues_from_the_current_count() {
        let mut apic = timer(ONE_SHOT, 0x30);
        apic.write_register(INITIAL_COUNT, 1000, 0);
        assert_eq!(apic.read_register(CURRENT_COUNT, 4_000), 600);
        // Divide by 2: the remaining 600 ticks take 12 us.
        apic.write_register(DIVIDE, 0, 4_000);
        assert_eq!(apic.read_register(CURRENT_COUNT, 4_000), 600);
        assert_eq!(apic.next_timer_event(4_000), Some(16_000));
        assert_eq!(apic.read_register(CURRENT_COUNT, 10_000), 300);
    }

    #[test]
    fn a_clock_not_a_multiple_of_the_second_rounds_expiry_up() {
        // 3 Hz / 2 (reset divisor): a tick every 2/3 s.
        let mut apic = LocalApic::new(0, TimerClocks { timer_hz: 3, tsc_hz: 3 });
        apic.write_register(SVR, 0x1ff, 0);
        apic.write_register(LVT_TIMER, 0x30, 0);
        apic.write_register(INITIAL_COUNT, 1, 0);
        assert_eq!(apic.next_timer_event(0), Some(666_666_667));
        assert_eq!(apic.read_register(CURRENT_COUNT, 666_666_666), 1);
        assert!(apic.poll_timer(666_666_667));
    }

    #[test]
    fn a_masked_timer_counts_but_does_not_interrupt() {
        let mut apic = timer(PERIODIC, 0x31);
        apic.write_register(LVT_TIMER, PERIODIC | LVT_MASKED | 0x31, 0);
        apic.write_register(INITIAL_COUNT, 20_000, 0);
        assert_eq!(apic.next_timer_event(0), None);
        assert!(apic.poll_timer(250_000));
        assert_eq!(apic.highest_pending(), None);
        // Unmasked between reloads: nothing until the next reload.
        apic.write_register(LVT_TIMER, PERIODIC | 0x31, 300_000);
        assert!(!apic.poll_timer(399_999));
        assert!(apic.poll_timer(400_000));
        assert_eq!(apic.highest_pending(), Some(0x31));
    }

    #[test]
    fn tsc_deadline_fires_at_the_deadline_and_clears_itself() {
        let mut apic = timer(TSC_DEADLINE, 0xec);
        // Initial count is ignored in this mode.
        apic.write_register(INITIAL_COUNT, 5, 0);
        assert_eq!(apic.read_register(INITIAL_COUNT, 0), 0);
        assert_eq!(apic.next_timer_event(0), None);
        // 2 GHz TSC: deadline 3_001 is 1500.5 ns, rounded up.
        apic.set_tsc_deadline(3_001, 0);
        assert_eq!(apic.tsc_deadline(), 3_001);
        assert_eq!(apic.next_timer_event(0), Some(1_501));
        assert!(!apic.poll_timer(1_500));
        assert!(apic.poll_timer(1_501));
        assert_eq!(apic.tsc_deadline(), 0);
        assert_eq!(apic.highest_pending(), Some(0xec));
        assert_eq!(apic.next_timer_event(1_501), None);
        assert_eq!(apic.read_register(CURRENT_COUNT, 1_501), 0);
    }

    #[test]
    fn a_past_tsc_deadline_fires_at_once_and_zero_disarms() {
        let mut apic = timer(TSC_DEADLINE, 0xec);
        apic.set_tsc_deadline(10, 1_000);
        assert_eq!(apic.highest_pending(), Some(0xec));
        assert_eq!(apic.tsc_deadline(), 0);
        apic.set_tsc_deadline(1_000_000, 1_000);
        apic.set_tsc_deadline(0, 2_000);
        assert_eq!(apic.next_timer_event(2_000), None);
        assert_eq!(apic.tsc_deadline(), 0);
    }

    #[test]
    fn the_deadline_msr_is_ignored_outside_its_mode_and_mode_changes_disarm() {
        let mut apic = timer(ONE_SHOT, 0x30);
        apic.set_tsc_deadline(1_000, 0);
        assert_eq!(apic.tsc_deadline(), 0);
        apic.write_register(INITIAL_COUNT, 1000, 0);
        apic.write_register(LVT_TIMER, TSC_DEADLINE | 0x30, 10);
        assert_eq!(apic.read_register(INITIAL_COUNT, 10), 0);
        assert_eq!(apic.next_timer_event(10), None);
        apic.set_tsc_deadline(u64::MAX, 10);
        assert_eq!(apic.tsc_deadline(), u64::MAX);
        assert_eq!(apic.next_timer_event(10), Some(9_223_372_036_854_775_808));
        apic.write_register(LVT_TIMER, PERIODIC | 0x30, 20);
        assert_eq!(apic.tsc_deadline(), 0);
        assert_eq!(apic.next_timer_event(20), None);
        // One-shot to periodic keeps counting.
        apic.write_register(INITIAL_COUNT, 30_000, 20);
        apic.write_register(LVT_TIMER, ONE_SHOT | 0x30, 30);
        assert_eq!(apic.read_register(INITIAL_COUNT, 30), 30_000);
        assert_eq!(apic.next_timer_event(30), Some(300_020));
    }

    #[test]
    fn extreme_clocks_and_counts_saturate_without_panic() {
        for clocks in [TimerClocks { timer_hz: 0, tsc_hz: 0 }, TimerClocks { timer_hz: u64::MAX, tsc_hz: u64::MAX }] {
            let mut apic = LocalApic::new(0, clocks);
            apic.write_register(SVR, 0x1ff, 0);
            apic.write_register(DIVIDE, 0b1010, 0);
            apic.write_register(LVT_TIMER, PERIODIC | 0x30, 0);
            apic.write_register(INITIAL_COUNT, u32::MAX, u64::MAX - 5);
            let _ = apic.next_timer_event(u64::MAX);
            let _ = apic.poll_timer(u64::MAX);
            let _ = apic.read_register(CURRENT_COUNT, u64::MAX);
            apic.write_register(LVT_TIMER, TSC_DEADLINE | 0x30, u64::MAX);
            apic.set_tsc_deadline(u64::MAX, u64::MAX);
            let _ = apic.next_timer_event(u64::MAX);
        }
    }

    #[test]
    fn time_does_not_run_backwards() {
        let mut apic = timer(ONE_SHOT, 0x30);
        apic.write_register(INITIAL_COUNT, 100, 0);
        assert!(apic.poll_timer(2_000));
        apic.write_register(INITIAL_COUNT, 100, 500);
        // Loaded at 2_000, the latest time seen.
        assert_eq!(apic.next_timer_event(0), Some(3_000));
    }

    #[test]
    fn a_self_ipi_is_accepted_at_once() {
        let mut apic = enabled(0);
        apic.write_register(ICR_LOW, (1 << 18) | 0x55, 0);
        assert_eq!(apic.highest_pending(), Some(0x55));
        assert_eq!(apic.take_ipi(), None);
        // Delivery status reads idle.
        assert_eq!(apic.read_register(ICR_LOW, 0) & (1 << 12), 0);
        assert_eq!(apic.read_register(ICR_LOW, 0), (1 << 18) | 0x55);
        // Self with NMI is not a valid combination: ignored.
        apic.write_register(ICR_LOW, (1 << 18) | 0x400, 0);
        assert_eq!(apic.take_ipi(), None);
    }

    #[test]
    fn an_ipi_with_an_illegal_vector_is_not_sent() {
        let mut apic = enabled(0);
        apic.write_register(ICR_LOW, (1 << 18) | 0x05, 0);
        apic.write_register(ICR_LOW, 0x0f, 0);
        assert_eq!(apic.highest_pending(), None);
        assert_eq!(apic.take_ipi(), None);
        apic.write_register(ESR, 0, 0);
        assert_eq!(apic.read_register(ESR, 0), ERROR_SEND_ILLEGAL_VECTOR);
    }

    #[test]
    fn ipis_to_others_are_queued_for_the_vmm() {
        let mut apic = enabled(2);
        apic.write_register(ICR_HIGH, 1 << 24, 0);
        apic.write_register(ICR_LOW, 0x41, 0);
        let message =
            |vector, delivery, destination, trigger| InterruptMessage { vector, delivery, destination, trigger };
        assert_eq!(
            apic.take_ipi(),
            Some(InterprocessorInterrupt {
                message: message(0x41, DeliveryMode::Fixed, Destination::Physical(1), Trigger::Edge),
                excluding: None
            })
        );
        // Logical destination.
        apic.write_register(ICR_HIGH, 0x0c << 24, 0);
        apic.write_register(ICR_LOW, ICR_LOGICAL | 0x42, 0);
        assert_eq!(apic.take_ipi().map(|ipi| ipi.message.destination), Some(Destination::Logical(0x0c)));
        // All including self: accepted here and sent to the others.
        apic.write_register(ICR_LOW, (2 << 18) | 0x43, 0);
        assert_eq!(apic.highest_pending(), Some(0x43));
        assert_eq!(
            apic.take_ipi(),
            Some(InterprocessorInterrupt {
                message: message(0x43, DeliveryMode::Fixed, Destination::Physical(0xff), Trigger::Edge),
                excluding: Some(2)
            })
        );
        // All excluding self: an NMI for the others only.
        apic.write_register(ICR_LOW, (3 << 18) | 0x400, 0);
        let ipi = apic.take_ipi();
        assert_eq!(ipi.map(|ipi| (ipi.message.delivery, ipi.excluding)), Some((DeliveryMode::Nmi, Some(2))));
        assert_eq!(apic.take_ipi(), None);
    }

    #[test]
    fn a_level_triggered_fixed_ipi_is_sent_as_an_edge() {
        let mut apic = enabled(0);
        // To every APIC including this one, level trigger, level set.
        apic.write_register(ICR_LOW, (2 << 18) | ICR_LEVEL_TRIGGERED | ICR_ASSERT | 0x61, 0);
        assert_eq!(apic.highest_pending(), Some(0x61));
        let ipi = apic.take_ipi().map(|ipi| ipi.message.trigger);
        assert_eq!(ipi, Some(Trigger::Edge));
        apic.acknowledge(0x61);
        apic.write_register(EOI, 0, 0);
        assert_eq!(apic.take_eoi(), None, "no level EOI for the I/O APIC");
        // The de-assert form (level bit clear) sends nothing at all.
        apic.write_register(ICR_LOW, (2 << 18) | ICR_LEVEL_TRIGGERED | 0x62, 0);
        assert_eq!((apic.highest_pending(), apic.take_ipi()), (None, None));
    }

    #[test]
    fn linux_starts_an_ap_with_init_and_startup() {
        let mut apic = enabled(0);
        apic.write_register(ICR_HIGH, 1 << 24, 0);
        // INIT assert (level), INIT de-assert (dropped), then SIPI page 0x9A twice.
        apic.write_register(ICR_LOW, ICR_LEVEL_TRIGGERED | ICR_ASSERT | 0x500, 0);
        apic.write_register(ICR_LOW, ICR_LEVEL_TRIGGERED | 0x500, 0);
        apic.write_register(ICR_LOW, 0x69a, 0);
        apic.write_register(ICR_LOW, 0x69a, 0);
        let init = apic.take_ipi().map(|ipi| ipi.message);
        assert_eq!(
            init,
            Some(InterruptMessage {
                vector: 0,
                delivery: DeliveryMode::Init,
                destination: Destination::Physical(1),
                // An xAPIC sends the level-assert INIT as an edge.
                trigger: Trigger::Edge
            })
        );
        for _ in 0..2 {
            let startup = apic.take_ipi().map(|ipi| (ipi.message.delivery, ipi.message.vector));
            assert_eq!(startup, Some((DeliveryMode::StartUp, 0x9a)));
        }
        assert_eq!(apic.take_ipi(), None);
        // The reserved delivery mode 3 sends nothing.
        apic.write_register(ICR_LOW, 0x341, 0);
        assert_eq!(apic.take_ipi(), None);
    }

    #[test]
    fn a_full_ipi_queue_drops_and_counts() {
        let mut apic = enabled(0);
        for _ in 0..IPI_QUEUE_CAPACITY + 3 {
            apic.write_register(ICR_LOW, (3 << 18) | 0x40, 0);
        }
        assert_eq!(apic.dropped_ipis(), 3);
        let mut taken = 0;
        while apic.take_ipi().is_some() {
            taken += 1;
        }
        assert_eq!(taken, IPI_QUEUE_CAPACITY);
    }

    #[test]
    fn destinations_match_physically_and_logically() {
        let mut apic = enabled(5);
        assert!(apic.is_destination(Destination::Physical(5)));
        assert!(apic.is_destination(Destination::Physical(0xff)));
        assert!(!apic.is_destination(Destination::Physical(4)));
        // Flat: any common bit.
        apic.write_register(LDR, 0x24 << 24, 0);
        assert!(apic.is_destination(Destination::Logical(0x04)));
        assert!(apic.is_destination(Destination::Logical(0x21)));
        assert!(!apic.is_destination(Destination::Logical(0x42)));
        // Cluster 2, member bit 2.
        apic.write_register(DFR, 0x0fff_ffff, 0);
        assert!(apic.is_destination(Destination::Logical(0x24)));
        assert!(apic.is_destination(Destination::Logical(0x2c)));
        assert!(apic.is_destination(Destination::Logical(0xf4)));
        assert!(!apic.is_destination(Destination::Logical(0x14)));
        assert!(!apic.is_destination(Destination::Logical(0x21)));
        assert!(apic.is_destination(Destination::Logical(0xff)));
    }

    /// One guest or VMM action, for the property test.
    #[derive(Clone, Debug)]
    enum Action {
        Read(u64, AccessSize),
        Write(u64, AccessSize, u64),
        Accept(u8, bool),
        Acknowledge,
        Poll(u64),
        Deadline(u64),
        Drain,
    }

    fn access_size() -> impl Strategy<Value = AccessSize> {
        prop_oneof![Just(AccessSize::Byte), Just(AccessSize::Word), Just(AccessSize::Dword), Just(AccessSize::Qword)]
    }

    fn action() -> impl Strategy<Value = Action> {
        // Mostly aligned register offsets, so that writes act.
        let offset = prop_oneof![(0_u64..0x40).prop_map(|slot| slot * 16), 0_u64..0x1000, any::<u64>()];
        let value = prop_oneof![any::<u64>(), 0_u64..0x100, Just(0x1ff), (0_u64..4).prop_map(|mode| mode << 17 | 0x40)];
        prop_oneof![
            (offset.clone(), access_size()).prop_map(|(offset, size)| Action::Read(offset, size)),
            (offset.clone(), value.clone()).prop_map(|(offset, value)| Action::Write(offset, AccessSize::Dword, value)),
            (offset, access_size(), value).prop_map(|(offset, size, value)| Action::Write(offset, size, value)),
            (any::<u8>(), any::<bool>()).prop_map(|(vector, level)| Action::Accept(vector, level)),
            Just(Action::Acknowledge),
            (0_u64..2_000_000).prop_map(Action::Poll),
            any::<u64>().prop_map(Action::Deadline),
            Just(Action::Drain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn random_accesses_never_panic_and_keep_the_invariants(
            apic_id in any::<u8>(),
            timer_hz in prop_oneof![Just(0_u64), 1_u64..1_000_000_000, Just(u64::MAX)],
            actions in proptest::collection::vec(action(), 1..200),
        ) {
            let mut apic = LocalApic::new(apic_id, TimerClocks { timer_hz, tsc_hz: timer_hz });
            let mut now: u64 = 0;
            for action in actions {
                match action {
                    Action::Read(offset, size) => {
                        let value = apic.read(offset, size);
                        prop_assert_eq!(value & !size.mask(), 0);
                    }
                    Action::Write(offset, size, value) => {
                        prop_assert_eq!(apic.write(offset, size, value), ControlFlow::Continue(()));
                    }
                    Action::Accept(vector, level) => {
                        let accepted = apic.accept(vector, if level { Trigger::Level } else { Trigger::Edge });
                        prop_assert_eq!(accepted, vector >= 16 && apic.is_software_enabled());
                    }
                    Action::Acknowledge => {
                        if let Some(vector) = apic.highest_pending() {
                            prop_assert!(apic.acknowledge(vector));
                        }
                    }
                    Action::Poll(step) => {
                        now = now.saturating_add(step);
                        apic.poll_timer(now);
                        // Nothing due is left behind after a poll.
                        if let Some(next) = apic.next_timer_event(now) {
                            prop_assert!(next > now);
                        }
                    }
                    Action::Deadline(deadline) => apic.set_tsc_deadline(deadline, now),
                    Action::Drain => {
                        let mut drained = 0;
                        while apic.take_ipi().is_some() {
                            drained += 1;
                        }
                        prop_assert!(drained <= IPI_QUEUE_CAPACITY);
                        while let Some(vector) = apic.take_eoi() {
                            prop_assert!(vector >= 16);
                        }
                    }
                }
                for word in 0..8 {
                    // Vectors 0..15 never get into IRR or ISR.
                    let low_word_mask = if word == 0 { 0xffff } else { 0 };
                    prop_assert_eq!(apic.request.word(word) & low_word_mask, 0);
                    prop_assert_eq!(apic.in_service.word(word) & low_word_mask, 0);
                }
                // PPR and the pending vector, computed here from the
                // registers the guest reads (SDM: PPR is TPR if TPR's class
                // is at least ISRV's, else ISRV's class; a request is
                // pending if its class beats PPR's).
                let highest_in = |base: u64, apic: &mut LocalApic| {
                    (0..8u64).rev().find_map(|word| {
                        let bits = apic.read_register(base + 0x10 * word, now);
                        (bits != 0).then(|| u8::try_from(word * 32 + 31 - u64::from(bits.leading_zeros())).unwrap_or(0))
                    })
                };
                let tpr = u8::try_from(apic.read_register(0x80, now) & 0xff).unwrap_or(0);
                let isrv = highest_in(0x100, &mut apic).unwrap_or(0);
                let ppr = if tpr >> 4 >= isrv >> 4 { tpr } else { isrv & 0xf0 };
                prop_assert_eq!(apic.read_register(0xa0, now), u32::from(ppr));
                let irrv = highest_in(0x200, &mut apic);
                let expected = irrv.filter(|vector| apic.is_software_enabled() && vector >> 4 > ppr >> 4);
                prop_assert_eq!(apic.highest_pending(), expected);
                if !apic.is_software_enabled() {
                    prop_assert_eq!(apic.highest_pending(), None);
                    for entry in LocalInterrupt::ALL {
                        prop_assert_ne!(apic.local_vector(entry) & LVT_MASKED, 0);
                    }
                }
                for entry in LocalInterrupt::ALL {
                    prop_assert_eq!(apic.local_vector(entry) & !entry.writable_bits(), 0);
                }
                prop_assert_eq!(apic.read_register(ICR_LOW, now) & (1 << 12), 0);
                let current = apic.current_count(now);
                prop_assert!(current <= apic.initial_count || apic.countdown.is_some_and(|countdown| current <= countdown.loaded_count));
                prop_assert!(apic.ipis.len() <= IPI_QUEUE_CAPACITY);
            }
        }
    }
}
