//! The PC board: the interrupt controllers and timers of [`super`] wired
//! together as on a PC, for one vCPU (`docs/PLATFORM.md`, "Wiring").
//!
//! [`Pc`] owns the devices; the VMM reaches their registers through
//! [`Pc::read_port`], [`Pc::write_port`], [`Pc::read_mmio`],
//! [`Pc::write_mmio`] and the TSC-deadline MSR, and between exits it
//! calls [`Pc::update`] (poll the timers, route what they raised),
//! [`Pc::take_interrupt`] (the vector to inject, acknowledged) and
//! [`Pc::next_event`] (when to look again). Devices outside the board
//! (the UART, virtio) drive ISA interrupt lines with
//! [`Pc::set_isa_line`].
//!
//! # Wiring
//!
//! | source | 8259A input | I/O APIC input |
//! | --- | --- | --- |
//! | PIT counter 0 (edges) | IRQ0 | 2 (the MADT's override) |
//! | RTC | IRQ8 | 8 |
//! | ACPI SCI (level) | its IRQ (9) | the same |
//! | other ISA lines ([`Pc::set_isa_line`]) | IRQn | n |
//!
//! The 8259A's INTR reaches the processor through LINT0 when LINT0 is
//! unmasked in ExtINT mode (virtual-wire mode, as PC firmware leaves it:
//! [`Pc::new`] programs the local APIC so); I/O APIC messages are
//! accepted by the local APIC if it is their destination; level EOIs of
//! the local APIC go back to the I/O APIC. IPIs are for other vCPUs,
//! which do not exist yet: a self-IPI (or one to all) is accepted, every
//! other one is dropped and counted, as are NMI, SMI, INIT and
//! start-up messages.
//!
//! # Interrupt priority
//!
//! The local APIC's highest pending vector (above its processor
//! priority) is taken first, then the 8259A's. A vector below 16 cannot
//! be injected as an external interrupt (the 8259A before the guest has
//! programmed its vector base): it is acknowledged on the 8259A and
//! dropped, and counted.

use core::cell::RefCell;
use core::ops::ControlFlow;

use super::acpi_pm::AcpiPm;
use super::ioapic::{IO_APIC_BASE, IO_APIC_BYTES, IoApic};
use super::lapic::{LOCAL_APIC_BASE, LOCAL_APIC_BYTES, LocalApic, TimerClocks};
use super::pic::{self, DualPic};
use super::pit::{self, Pit};
use super::rtc::{self, RamSizes, Rtc};
use super::{DeliveryMode, Destination, Nanoseconds, Trigger};
use bulkhead_components::vcpu::GuestRegisters;
use kernel_core::virt::{Event, EventKind};

use crate::access_size::AccessSize;
use crate::boot::acpi::{PmRegisters, RESET_CONTROL_PORT};
use crate::cpu::rflags;
use crate::mmio::MmioDevice;
use crate::msr::MsrDevice;
use crate::port_io::PortDevice;
use crate::stop::Stop;

/// IA32_TSC_DEADLINE.
pub const TSC_DEADLINE_MSR: u32 = 0x6e0;
/// The ISA interrupt lines.
pub const ISA_LINES: u8 = 16;
/// The local APIC timer's input clock: 1 GHz (a 1 ns tick before the
/// divider). Linux reads it from its own calibration, or uses the
/// TSC-deadline mode, which does not need it.
pub const APIC_TIMER_HZ: u64 = 1_000_000_000;

/// The spurious-interrupt vector register, and its value as PC firmware
/// leaves it: APIC software-enabled, spurious vector 0xFF.
const SPURIOUS_VECTOR_REGISTER: u64 = 0xf0;
const FIRMWARE_SPURIOUS_VECTOR: u32 = 0x1ff;
/// LINT0 in ExtINT mode, unmasked (virtual wire), and LINT1 as NMI.
const LVT_LINT0: u64 = 0x350;
const LVT_LINT1: u64 = 0x360;
const FIRMWARE_LINT0: u32 = 0x700;
const FIRMWARE_LINT1: u32 = 0x400;
/// The reset control register: RST_CPU (bit 2) resets; SYS_RST (bit 1)
/// and FULL_RST (bit 3) are kept and read back.
const RESET_CPU: u8 = 1 << 2;
const RESET_KEPT: u8 = 0b1010;

/// The RTC's ISA line.
const RTC_LINE: u8 = 8;
/// The smallest vector an external interrupt may have.
const FIRST_EXTERNAL_VECTOR: u8 = 16;

/// What the board is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcConfig {
    /// The vCPU's APIC ID.
    pub apic_id: u8,
    /// The guest's TSC frequency, Hz.
    pub tsc_hz: u64,
    /// The RTC's time at reset, seconds since 1970.
    pub unix_seconds: u64,
    /// The RAM the CMOS reports.
    pub ram: RamSizes,
    /// The ACPI PM registers (the ones the FADT describes).
    pub pm: PmRegisters,
}

/// Counts of what the board dropped: each is a guest (or VMM) mistake
/// or a feature the board does not have, never a reason to stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcCounters {
    /// External interrupts the board injected.
    pub injected: u64,
    /// 8259A vectors below 16 (an uninitialised vector base) dropped.
    pub illegal_vectors: u64,
    /// IPIs and I/O APIC messages for other processors, or in a delivery
    /// mode the board does not deliver (NMI, SMI, INIT, start-up, ExtINT).
    pub undelivered_messages: u64,
}

/// The PC board of one vCPU.
pub struct Pc {
    pic: DualPic,
    pit: Pit,
    rtc: Rtc,
    io_apic: IoApic,
    local_apic: LocalApic,
    pm: AcpiPm,
    /// The latest time seen.
    now: Nanoseconds,
    /// The levels of the lines other devices drive (bit n: ISA IRQn).
    isa_levels: u16,
    /// The reset control register's SYS_RST and FULL_RST bits as last
    /// written (it reads back; RST_CPU is the reset itself).
    reset_control: u8,
    /// The RTC's and the SCI's levels at the last update.
    rtc_level: bool,
    sci_level: bool,
    counters: PcCounters,
}

impl Pc {
    /// The board at time 0, as PC firmware hands it to an operating
    /// system: the 8259A pair initialised with every line masked, the
    /// local APIC software-enabled in virtual-wire mode (LINT0 ExtINT,
    /// LINT1 NMI), every I/O APIC entry masked, the timers stopped.
    #[must_use]
    pub fn new(config: PcConfig) -> Pc {
        let clocks = TimerClocks { timer_hz: APIC_TIMER_HZ, tsc_hz: config.tsc_hz };
        let mut local_apic = LocalApic::new(config.apic_id, clocks);
        local_apic.write_register(SPURIOUS_VECTOR_REGISTER, FIRMWARE_SPURIOUS_VECTOR, 0);
        local_apic.write_register(LVT_LINT0, FIRMWARE_LINT0, 0);
        local_apic.write_register(LVT_LINT1, FIRMWARE_LINT1, 0);
        Pc {
            pic: DualPic::new(),
            pit: Pit::new(),
            rtc: Rtc::new(config.unix_seconds, config.ram),
            io_apic: IoApic::new(0),
            local_apic,
            pm: AcpiPm::new(config.pm),
            now: 0,
            isa_levels: 0,
            reset_control: 0,
            rtc_level: false,
            sci_level: false,
            counters: PcCounters::default(),
        }
    }

    /// What the board dropped and injected.
    #[must_use]
    pub const fn counters(&self) -> PcCounters {
        self.counters
    }

    /// The local APIC (for its state in logs and tests).
    #[must_use]
    pub const fn local_apic(&self) -> &LocalApic {
        &self.local_apic
    }

    /// The 8259A pair.
    #[must_use]
    pub const fn pic(&self) -> &DualPic {
        &self.pic
    }

    /// The I/O APIC.
    #[must_use]
    pub const fn io_apic(&self) -> &IoApic {
        &self.io_apic
    }

    /// Whether the guest asked to power off (ACPI S5).
    #[must_use]
    pub const fn power_off_requested(&self) -> bool {
        self.pm.power_off_requested()
    }

    /// Presses the ACPI power button (the guest's orderly shutdown).
    pub fn press_power_button(&mut self) {
        self.pm.press_power_button();
    }

    /// Moves the board's time forward to `now` (an earlier time counts as
    /// the latest one seen).
    fn advance(&mut self, now: Nanoseconds) -> Nanoseconds {
        self.now = self.now.max(now);
        self.now
    }

    /// Every port range the board answers on: the 8259A pair with its
    /// ELCR, the 8254 and port 0x61, the RTC, the reset control register
    /// and the ACPI PM blocks. Register [`BoardPorts`] on all of them.
    #[must_use]
    pub fn port_ranges(&self) -> heapless::Vec<(u16, u16), MAX_BOARD_PORT_RANGES> {
        let mut ranges = heapless::Vec::new();
        let fixed = pic::PORT_RANGES
            .into_iter()
            .chain(pit::PORT_RANGES)
            .chain([rtc::PORT_RANGE, (RESET_CONTROL_PORT, RESET_CONTROL_PORT)]);
        for range in fixed.chain(self.pm.port_ranges()) {
            // 3 + 2 + 1 + 1 + 3 ranges: the vector holds them all.
            let _ = ranges.push(range);
        }
        ranges
    }

    /// IN from `port` at `now`: `None` if no board device has the port.
    pub fn read_port(&mut self, port: u16, size: AccessSize, now: Nanoseconds) -> Option<u32> {
        let now = self.advance(now);
        let device = self.port_device(port, now)?;
        // What happened before the access (a timer's edge, a level) is
        // routed before the guest sees or changes the state it touches.
        self.update(now);
        let value = match device {
            BoardPort::Pic => self.pic.read(port, size),
            BoardPort::Pit => self.pit.read(port, size),
            BoardPort::Rtc => self.rtc.read(port, size),
            BoardPort::Pm => self.pm.read(port, size),
            BoardPort::ResetControl => u32::from(self.reset_control),
        };
        self.update(now);
        Some(value)
    }

    /// OUT to `port` at `now`: `None` if no board device has the port.
    /// A write that powers the guest off stops it
    /// ([`Stop::PoweredOff`]).
    pub fn write_port(
        &mut self,
        port: u16,
        size: AccessSize,
        value: u32,
        now: Nanoseconds,
    ) -> Option<ControlFlow<Stop>> {
        let now = self.advance(now);
        let device = self.port_device(port, now)?;
        self.update(now);
        let flow = match device {
            BoardPort::Pic => self.pic.write(port, size, value),
            BoardPort::Pit => self.pit.write(port, size, value),
            BoardPort::Rtc => self.rtc.write(port, size, value),
            BoardPort::Pm => {
                let flow = self.pm.write(port, size, value);
                if self.pm.power_off_requested() {
                    return Some(ControlFlow::Break(Stop::PoweredOff));
                }
                flow
            }
            BoardPort::ResetControl => {
                let byte = value.to_le_bytes()[0];
                if byte & RESET_CPU != 0 {
                    return Some(ControlFlow::Break(Stop::Reset));
                }
                self.reset_control = byte & RESET_KEPT;
                ControlFlow::Continue(())
            }
        };
        self.update(now);
        Some(flow)
    }

    /// Which device has `port`, with its time set to `now`.
    fn port_device(&mut self, port: u16, now: Nanoseconds) -> Option<BoardPort> {
        let within = |ranges: &[(u16, u16)]| ranges.iter().any(|&(first, last)| (first..=last).contains(&port));
        if within(&pic::PORT_RANGES) {
            return Some(BoardPort::Pic);
        }
        if within(&pit::PORT_RANGES) {
            self.pit.set_time(now);
            return Some(BoardPort::Pit);
        }
        if within(&[rtc::PORT_RANGE]) {
            self.rtc.set_time(now);
            return Some(BoardPort::Rtc);
        }
        if port == RESET_CONTROL_PORT {
            return Some(BoardPort::ResetControl);
        }
        if within(&self.pm.port_ranges()) {
            self.pm.set_time(now);
            return Some(BoardPort::Pm);
        }
        None
    }

    /// A read at guest-physical `address` at `now`: `None` if neither
    /// APIC is there.
    pub fn read_mmio(&mut self, address: u64, size: AccessSize, now: Nanoseconds) -> Option<u64> {
        let now = self.advance(now);
        let (device, offset) = board_mmio(address)?;
        self.update(now);
        let value = match device {
            BoardMmio::LocalApic => {
                self.local_apic.poll_timer(now);
                self.local_apic.read(offset, size)
            }
            BoardMmio::IoApic => self.io_apic.read(offset, size),
        };
        self.update(now);
        Some(value)
    }

    /// A write at guest-physical `address` at `now`: `None` if neither
    /// APIC is there.
    pub fn write_mmio(
        &mut self,
        address: u64,
        size: AccessSize,
        value: u64,
        now: Nanoseconds,
    ) -> Option<ControlFlow<Stop>> {
        let now = self.advance(now);
        let (device, offset) = board_mmio(address)?;
        self.update(now);
        let flow = match device {
            BoardMmio::LocalApic => {
                self.local_apic.poll_timer(now);
                self.local_apic.write(offset, size, value)
            }
            BoardMmio::IoApic => self.io_apic.write(offset, size, value),
        };
        self.update(now);
        Some(flow)
    }

    /// RDMSR of IA32_TSC_DEADLINE.
    #[must_use]
    pub fn tsc_deadline(&self) -> u64 {
        self.local_apic.tsc_deadline()
    }

    /// WRMSR of IA32_TSC_DEADLINE at `now`.
    pub fn set_tsc_deadline(&mut self, deadline: u64, now: Nanoseconds) {
        let now = self.advance(now);
        self.update(now);
        self.local_apic.set_tsc_deadline(deadline, now);
        self.update(now);
    }

    /// Sets ISA interrupt line `line`'s level (a device outside the
    /// board: the UART, virtio). Lines 16 and up, and the board's own
    /// (0, 2, 8 and the SCI's), are ignored.
    pub fn set_isa_line(&mut self, line: u8, level: bool) {
        if line >= ISA_LINES || matches!(line, 0 | pic::CASCADE_LINE | RTC_LINE) || line == self.pm.sci_irq() {
            return;
        }
        let bit = 1_u16 << line;
        if (self.isa_levels & bit != 0) == level {
            return;
        }
        self.isa_levels = if level { self.isa_levels | bit } else { self.isa_levels & !bit };
        self.pic.set_irq(line, level);
        self.io_apic.set_line(line, level);
        self.route();
    }

    /// Polls the timers at `now` and routes what they raised: the PIT's
    /// edges, the RTC's and the SCI's levels, the local APIC timer, the
    /// I/O APIC's messages, the local APIC's level EOIs and IPIs.
    pub fn update(&mut self, now: Nanoseconds) {
        let now = self.advance(now);
        if self.pit.irq0_edges(now) > 0 {
            // Edges: the 8259A latches it in IRR, the I/O APIC sends an
            // edge-triggered entry's message; several in one poll merge,
            // as they do on a chip whose IRR bit is already set.
            self.pic.set_irq(0, true);
            self.pic.set_irq(0, false);
            self.io_apic.set_line(2, true);
            self.io_apic.set_line(2, false);
        }
        let rtc_level = self.rtc.irq8_level(now);
        if rtc_level != self.rtc_level {
            self.rtc_level = rtc_level;
            self.pic.set_irq(RTC_LINE, rtc_level);
            self.io_apic.set_line(RTC_LINE, rtc_level);
        }
        let sci_level = self.pm.sci_level(now);
        if sci_level != self.sci_level {
            self.sci_level = sci_level;
            let line = self.pm.sci_irq();
            self.pic.set_irq(line, sci_level);
            self.io_apic.set_line(line, sci_level);
        }
        self.local_apic.poll_timer(now);
        self.route();
    }

    /// Delivers the I/O APIC's messages and the local APIC's IPIs to the
    /// local APIC, and its level EOIs to the I/O APIC, until nothing is
    /// left (bounded: each queue is finite and an EOI re-sends at most
    /// one message per entry).
    fn route(&mut self) {
        // An EOI can re-send a level message, which can be taken and ended
        // again only after the guest runs: two rounds drain everything
        // the queues hold now and what the first round's EOIs re-sent.
        for _ in 0..2 {
            while let Some(vector) = self.local_apic.take_eoi() {
                self.io_apic.end_of_interrupt(vector);
            }
            while let Some(message) = self.io_apic.take_message() {
                self.deliver(message.vector, message.delivery, message.destination, message.trigger);
            }
            while let Some(ipi) = self.local_apic.take_ipi() {
                // "All excluding self": the self part does not exist, and
                // there is no other processor.
                if ipi.excluding.is_some() {
                    self.count_undelivered();
                    continue;
                }
                let message = ipi.message;
                self.deliver(message.vector, message.delivery, message.destination, message.trigger);
            }
        }
    }

    fn deliver(&mut self, vector: u8, delivery: DeliveryMode, destination: Destination, trigger: Trigger) {
        let mine = self.local_apic.is_destination(destination);
        match delivery {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority if mine => {
                self.local_apic.accept(vector, trigger);
            }
            _ => self.count_undelivered(),
        }
    }

    fn count_undelivered(&mut self) {
        self.counters.undelivered_messages = self.counters.undelivered_messages.saturating_add(1);
    }

    /// Whether the 8259A's INTR reaches the processor: LINT0 unmasked in
    /// ExtINT mode.
    fn pic_connected(&self) -> bool {
        self.local_apic.lint0_mode() == Some(DeliveryMode::ExtInt)
    }

    /// Whether an interrupt waits for the processor to take it.
    #[must_use]
    pub fn has_interrupt(&self) -> bool {
        self.local_apic.highest_pending().is_some() || (self.pic_connected() && self.pic.has_interrupt())
    }

    /// The vector to inject now, acknowledged (the local APIC's moves to
    /// ISR; the 8259A's INTA cycle), or `None`. Call it only when the
    /// guest can take an interrupt (RFLAGS.IF set, no interrupt shadow,
    /// no other event being injected).
    pub fn take_interrupt(&mut self) -> Option<u8> {
        if let Some(vector) = self.local_apic.highest_pending() {
            self.local_apic.acknowledge(vector);
            self.counters.injected = self.counters.injected.saturating_add(1);
            return Some(vector);
        }
        if !self.pic_connected() || !self.pic.has_interrupt() {
            return None;
        }
        // The vector base decides whether the vector can be injected; an
        // uninitialised pair's (0x08) cannot, and its interrupt is taken
        // and ended at once rather than left in service.
        let mut probe = *self.pic();
        let vector = probe.acknowledge()?;
        if vector < FIRST_EXTERNAL_VECTOR {
            self.pic.acknowledge_and_end();
            self.counters.illegal_vectors = self.counters.illegal_vectors.saturating_add(1);
            return None;
        }
        self.pic = probe;
        self.counters.injected = self.counters.injected.saturating_add(1);
        Some(vector)
    }

    /// When the board next needs [`Pc::update`]: the earliest of the
    /// timers' next events (no earlier than `now`), or `None` if no timer
    /// can fire.
    pub fn next_event(&mut self, now: Nanoseconds) -> Option<Nanoseconds> {
        let now = self.advance(now);
        [
            self.pit.next_irq0_event(now),
            self.rtc.next_irq8_event(now),
            self.pm.next_sci_event(now),
            self.local_apic.next_timer_event(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What the next VMEnter asks of the kernel for the board's sake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryPlan {
    /// When the board next needs an update (guest time): the run must end
    /// by then.
    pub deadline: Option<Nanoseconds>,
    /// An interrupt waits but the guest cannot take it yet: exit when it
    /// can.
    pub interrupt_window: bool,
    /// The guest is halted with nothing to take: do not run it; wait for
    /// the deadline or a notification.
    pub wait: bool,
}

impl Pc {
    /// Before a VMEnter: updates the board at `now`, injects the next
    /// interrupt into `registers.event` if the guest can take it
    /// (RFLAGS.IF set, `interruptibility` without an STI or MOV SS
    /// shadow, no event already being injected), and says what the entry
    /// must ask for. `halted` is the vCPU's HLT state: an injected
    /// interrupt ends it (a halted guest had RFLAGS.IF set, or it would
    /// have stopped), and a halted guest with nothing to take waits.
    pub fn plan_entry(
        &mut self,
        registers: &mut GuestRegisters,
        interruptibility: u64,
        halted: &mut bool,
        now: Nanoseconds,
    ) -> EntryPlan {
        self.update(now);
        let mut interrupt_window = false;
        if self.has_interrupt() {
            // A halted guest has retired its HLT: an STI or MOV SS shadow
            // the exit reported (`sti; hlt`) is over.
            let shadow = if *halted { 0 } else { interruptibility & 0b11 };
            let can_take = registers.event == 0 && registers.rflags & rflags::IF != 0 && shadow == 0;
            if can_take {
                // An 8259A vector below 16 is dropped (`take_interrupt`):
                // the next pending one is tried, at most once per line.
                for _ in 0..ISA_LINES {
                    if let Some(vector) = self.take_interrupt() {
                        registers.event = Event { vector, kind: EventKind::External, error_code: None }.to_word();
                        *halted = false;
                        break;
                    }
                    if !self.has_interrupt() {
                        break;
                    }
                }
                // The next one is taken when the guest can again (its
                // handler runs with interrupts off). If nothing was
                // injected, what still waits is a dropped vector that a
                // level-triggered line raised again at once: a window exit
                // would come before the guest's first instruction, after
                // every entry, and the guest would never run again. It is
                // dropped again at the next exit instead.
                interrupt_window = registers.event != 0 && self.has_interrupt();
            } else {
                interrupt_window = true;
            }
        }
        let wait = *halted && registers.event == 0;
        EntryPlan { deadline: self.next_event(now), interrupt_window: interrupt_window && !wait, wait }
    }
}

/// The board's port devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BoardPort {
    Pic,
    Pit,
    Rtc,
    Pm,
    ResetControl,
}

/// The board's MMIO devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BoardMmio {
    LocalApic,
    IoApic,
}

/// Which APIC's page holds `address`, and the offset in it.
fn board_mmio(address: u64) -> Option<(BoardMmio, u64)> {
    [(BoardMmio::LocalApic, LOCAL_APIC_BASE, LOCAL_APIC_BYTES), (BoardMmio::IoApic, IO_APIC_BASE, IO_APIC_BYTES)]
        .into_iter()
        .find_map(|(device, base, bytes)| {
            let offset = address.checked_sub(base)?;
            (offset < bytes).then_some((device, offset))
        })
}

/// Guest time for the board's bus adapters: a function of nothing that
/// reads the clock (the binary's reads the TSC; tests' read a cell).
pub type Now<'a> = &'a dyn Fn() -> Nanoseconds;

/// The board's ports on the VMM's I/O bus (register it on
/// [`Pc::port_ranges`]): the VMM's loop
/// keeps the board in a [`RefCell`] so that it can also reach it
/// between exits. The cell is never borrowed across a call into the
/// guest or another device, so a borrow cannot fail; if it ever did, the
/// access would read as open bus and write nothing.
pub struct BoardPorts<'a> {
    /// The board.
    pub pc: &'a RefCell<Pc>,
    /// Guest time.
    pub now: Now<'a>,
}

/// The most port ranges the board answers on ([`Pc::port_ranges`]).
pub const MAX_BOARD_PORT_RANGES: usize = 10;

impl PortDevice for BoardPorts<'_> {
    fn read(&mut self, port: u16, size: AccessSize) -> u32 {
        let open_bus = u32::try_from(size.mask()).unwrap_or(u32::MAX);
        let now = (self.now)();
        self.pc.try_borrow_mut().ok().and_then(|mut pc| pc.read_port(port, size, now)).unwrap_or(open_bus)
    }

    fn write(&mut self, port: u16, size: AccessSize, value: u32) -> ControlFlow<Stop> {
        let now = (self.now)();
        self.pc
            .try_borrow_mut()
            .ok()
            .and_then(|mut pc| pc.write_port(port, size, value, now))
            .unwrap_or(ControlFlow::Continue(()))
    }
}

/// The board's APIC pages on the VMM's MMIO bus, one adapter per page
/// (register it at `base` for 4 KiB): the same cell as [`BoardPorts`].
pub struct BoardPage<'a> {
    /// The board.
    pub pc: &'a RefCell<Pc>,
    /// Guest time.
    pub now: Now<'a>,
    /// The page's guest-physical base ([`LOCAL_APIC_BASE`] or
    /// [`IO_APIC_BASE`]).
    pub base: u64,
}

impl MmioDevice for BoardPage<'_> {
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        let now = (self.now)();
        let address = self.base.wrapping_add(offset);
        self.pc.try_borrow_mut().ok().and_then(|mut pc| pc.read_mmio(address, size, now)).unwrap_or(size.mask())
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop> {
        let now = (self.now)();
        let address = self.base.wrapping_add(offset);
        self.pc
            .try_borrow_mut()
            .ok()
            .and_then(|mut pc| pc.write_mmio(address, size, value, now))
            .unwrap_or(ControlFlow::Continue(()))
    }
}

/// The board's MSR (IA32_TSC_DEADLINE) for the VMM's MSR handling.
pub struct BoardMsrs<'a> {
    /// The board.
    pub pc: &'a RefCell<Pc>,
    /// Guest time.
    pub now: Now<'a>,
}

impl MsrDevice for BoardMsrs<'_> {
    fn read(&mut self, msr: u32) -> Option<u64> {
        (msr == TSC_DEADLINE_MSR).then(|| self.pc.try_borrow().map_or(0, |pc| pc.tsc_deadline()))
    }

    fn write(&mut self, msr: u32, value: u64) -> Option<()> {
        if msr != TSC_DEADLINE_MSR {
            return None;
        }
        let now = (self.now)();
        if let Ok(mut pc) = self.pc.try_borrow_mut() {
            pc.set_tsc_deadline(value, now);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests;
