//! Two cascaded 8259A programmable interrupt controllers, wired as on a
//! PC/AT: the master on ports 0x20 and 0x21 takes IRQ0..7, the slave on
//! 0xA0 and 0xA1 takes IRQ8..15 and drives the master's IR2, and the
//! chipset's edge/level control registers (ELCR) sit at 0x4D0 and 0x4D1.
//!
//! The VMM drives the input lines with [`DualPic::set_irq`], asks
//! [`DualPic::has_interrupt`] whether INTR is asserted, and when it can
//! inject an external interrupt runs the INTA cycle with
//! [`DualPic::acknowledge`], which gives the vector. The guest programs
//! the chips through [`PortDevice`].
//!
//! What the model keeps of the 8259A: the ICW1..ICW4 initialisation
//! sequence (vector base, single or cascade, edge or level, auto-EOI,
//! special fully nested mode), the mask (OCW1), every OCW2 command
//! (non-specific, specific and rotating EOIs, priority rotation and
//! auto-EOI rotation), OCW3's register select, poll command and special
//! mask mode. It leaves out the 8080 call-address mode (a vector is
//! always the 8086 one: base plus line), buffered mode (electrical only)
//! and the timing of the INTA pulses.

use core::ops::ControlFlow;

use crate::access_size::AccessSize;
use crate::port_io::PortDevice;
use crate::stop::Stop;

/// The master's command port (ICW1, OCW2, OCW3; reads IRR or ISR).
pub const MASTER_COMMAND_PORT: u16 = 0x20;
/// The master's data port (ICW2..ICW4, then the mask).
pub const MASTER_DATA_PORT: u16 = 0x21;
/// The slave's command port.
pub const SLAVE_COMMAND_PORT: u16 = 0xa0;
/// The slave's data port.
pub const SLAVE_DATA_PORT: u16 = 0xa1;
/// The master's edge/level control register (IRQ0..7).
pub const MASTER_ELCR_PORT: u16 = 0x4d0;
/// The slave's edge/level control register (IRQ8..15).
pub const SLAVE_ELCR_PORT: u16 = 0x4d1;
/// The port ranges the pair answers on, for registration on an I/O bus
/// (the [`PortDevice`] implementation answers all of them).
pub const PORT_RANGES: [(u16, u16); 3] = [
    (MASTER_COMMAND_PORT, MASTER_DATA_PORT),
    (SLAVE_COMMAND_PORT, SLAVE_DATA_PORT),
    (MASTER_ELCR_PORT, SLAVE_ELCR_PORT),
];
/// How many input lines the pair has (IRQ0..15).
pub const IRQ_LINES: u8 = 16;
/// The master's input the slave's INT output drives.
pub const CASCADE_LINE: u8 = 2;

/// The ELCR bits a PC chipset implements: IRQ0, 1 and 2 (timer, keyboard,
/// cascade) are always edge-triggered.
const MASTER_ELCR_BITS: u8 = 0xf8;
/// IRQ8 (RTC) and IRQ13 (FPU error) are always edge-triggered.
const SLAVE_ELCR_BITS: u8 = 0xde;
/// The vector base a PC's firmware gives the master (IRQ0 at vector 8).
const FIRMWARE_MASTER_BASE: u8 = 0x08;
/// The vector base a PC's firmware gives the slave (IRQ8 at vector 0x70).
const FIRMWARE_SLAVE_BASE: u8 = 0x70;

/// Command-port bit telling ICW1 from an OCW.
const ICW1_SELECT: u8 = 0x10;
/// ICW1: ICW4 follows.
const ICW1_IC4: u8 = 0x01;
/// ICW1: single chip, no ICW3.
const ICW1_SINGLE: u8 = 0x02;
/// ICW1: every line level-triggered.
const ICW1_LEVEL: u8 = 0x08;
/// ICW4: automatic end of interrupt.
const ICW4_AUTO_EOI: u8 = 0x02;
/// ICW4: special fully nested mode.
const ICW4_SPECIAL_FULLY_NESTED: u8 = 0x10;
/// Command-port bit telling OCW3 from OCW2.
const OCW3_SELECT: u8 = 0x08;
/// OCW3: read register command (with `OCW3_READ_ISR` choosing which).
const OCW3_READ_REGISTER: u8 = 0x02;
/// OCW3: reads return the ISR instead of the IRR.
const OCW3_READ_ISR: u8 = 0x01;
/// OCW3: poll command.
const OCW3_POLL: u8 = 0x04;
/// OCW3: special mask mode command (with `OCW3_SPECIAL_MASK` setting it).
const OCW3_ENABLE_SPECIAL_MASK: u8 = 0x40;
/// OCW3: special mask mode on.
const OCW3_SPECIAL_MASK: u8 = 0x20;
/// A poll word's "an interrupt was pending" bit.
const POLL_PENDING: u8 = 0x80;

/// Where one chip is in its initialisation sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitStep {
    /// Initialised: data-port writes set the mask.
    Ready,
    /// ICW1 seen, ICW2 (vector base) next.
    ExpectIcw2,
    /// ICW3 (cascade wiring) next.
    ExpectIcw3,
    /// ICW4 (mode) next.
    ExpectIcw4,
}

/// One 8259A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chip {
    /// Interrupt request register: requests not yet acknowledged.
    irr: u8,
    /// In-service register: requests acknowledged and not yet ended.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// The input lines' present levels (edges are detected against them).
    inputs: u8,
    /// The chipset's edge/level control register.
    elcr: u8,
    /// The ELCR bits this chip's chipset implements.
    elcr_bits: u8,
    /// ICW1.LTIM: every line level-triggered, whatever the ELCR says.
    all_level_triggered: bool,
    /// ICW2's vector base (its low three bits are the line).
    vector_base: u8,
    init: InitStep,
    /// ICW1.IC4 of the sequence in progress.
    expects_icw4: bool,
    /// ICW1.SNGL: no slave, no ICW3.
    single: bool,
    /// ICW3 as written (recorded only: the wiring is the PC's).
    cascade_wiring: u8,
    /// ICW4.AEOI: the INTA cycle ends the interrupt itself.
    auto_eoi: bool,
    /// OCW2 "rotate in automatic EOI mode".
    rotate_on_auto_eoi: bool,
    /// ICW4.SFNM: the master lets a slave interrupt nest over one in
    /// service from the same slave.
    special_fully_nested: bool,
    /// OCW3 special mask mode: a masked line in service does not hold
    /// back lower-priority lines.
    special_mask: bool,
    /// The line with the lowest priority (7 until rotated); the one after
    /// it has the highest.
    lowest_priority: u8,
    /// OCW3: command-port reads return the ISR (else the IRR).
    read_isr: bool,
    /// OCW3 poll command: the next read is a poll.
    poll: bool,
    /// This chip is the master (special fully nested mode applies).
    is_master: bool,
}

/// The bit of `line` (0..7).
const fn bit(line: u8) -> u8 {
    1 << (line & 7)
}

impl Chip {
    /// A chip as a PC's firmware leaves it: initialised with edge
    /// triggering at `vector_base`, every line masked.
    const fn new(vector_base: u8, elcr_bits: u8, is_master: bool) -> Chip {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0xff,
            inputs: 0,
            elcr: 0,
            elcr_bits,
            all_level_triggered: false,
            vector_base,
            init: InitStep::Ready,
            expects_icw4: false,
            single: false,
            cascade_wiring: if is_master { bit(CASCADE_LINE) } else { CASCADE_LINE },
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            special_mask: false,
            lowest_priority: 7,
            read_isr: false,
            poll: false,
            is_master,
        }
    }

    /// The lines that are level-triggered.
    const fn level_lines(&self) -> u8 {
        if self.all_level_triggered { 0xff } else { self.elcr }
    }

    /// Drives input `line` (0..7) to `level`: an edge-triggered line
    /// latches a request on a rising edge (and keeps it when the line
    /// falls, so a pulse is not lost), a level-triggered one requests
    /// while high.
    fn set_input(&mut self, line: u8, level: bool) {
        let mask = bit(line);
        let rising = level && self.inputs & mask == 0;
        self.inputs = if level { self.inputs | mask } else { self.inputs & !mask };
        if self.level_lines() & mask != 0 {
            self.irr = if level { self.irr | mask } else { self.irr & !mask };
        } else if rising {
            self.irr |= mask;
        }
    }

    /// Makes the level-triggered lines' requests follow their inputs
    /// again (after the trigger mode changed).
    fn resync_level_lines(&mut self) {
        let level = self.level_lines();
        self.irr = (self.irr & !level) | (self.inputs & level);
    }

    /// `line`'s priority: 0 is the highest, 7 the lowest.
    const fn priority(&self, line: u8) -> u8 {
        line.wrapping_sub(self.lowest_priority).wrapping_sub(1) & 7
    }

    /// The line of highest priority among `lines`.
    fn highest_priority(&self, lines: u8) -> Option<u8> {
        (0..8)
            .map(|offset| self.lowest_priority.wrapping_add(1).wrapping_add(offset) & 7)
            .find(|line| lines & bit(*line) != 0)
    }

    /// The in-service lines that hold back lower-priority requests.
    const fn blocking_in_service(&self) -> u8 {
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.is_master && self.special_fully_nested {
            in_service &= !bit(CASCADE_LINE);
        }
        in_service
    }

    /// The line this chip would interrupt for (its INT output), if any:
    /// an unmasked request of higher priority than every blocking line in
    /// service. A chip in the middle of its initialisation asks for none.
    fn pending(&self) -> Option<u8> {
        if self.init != InitStep::Ready {
            return None;
        }
        let request = self.highest_priority(self.irr & !self.imr)?;
        match self.highest_priority(self.blocking_in_service()) {
            Some(in_service) if self.priority(in_service) <= self.priority(request) => None,
            _ => Some(request),
        }
    }

    /// The INTA cycle for `line`: an edge request is consumed (a level
    /// request stays while its input is high), and the line goes in
    /// service unless auto-EOI ends it at once.
    fn acknowledge_line(&mut self, line: u8) {
        let mask = bit(line);
        if self.level_lines() & mask == 0 {
            self.irr &= !mask;
        }
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.lowest_priority = line & 7;
            }
        } else {
            self.isr |= mask;
        }
    }

    /// A poll: the pending line acknowledged, as `0x80 | line`, or 0.
    fn poll_read(&mut self) -> u8 {
        self.poll = false;
        match self.pending() {
            Some(line) => {
                self.acknowledge_line(line);
                POLL_PENDING | line
            }
            None => 0,
        }
    }

    /// Ends the highest-priority interrupt in service (non-specific EOI),
    /// making it the lowest priority when `rotate`.
    fn end_highest(&mut self, rotate: bool) {
        if let Some(line) = self.highest_priority(self.isr) {
            self.isr &= !bit(line);
            if rotate {
                self.lowest_priority = line;
            }
        }
    }

    /// ICW1: starts the initialisation sequence and resets the chip's
    /// modes as the datasheet lists (mask cleared, IR7 lowest, special
    /// mask off, reads select the IRR, ICW4's modes off). Edge requests
    /// are dropped: an edge line must rise again after initialisation.
    fn write_icw1(&mut self, value: u8) {
        self.init = InitStep::ExpectIcw2;
        self.expects_icw4 = value & ICW1_IC4 != 0;
        self.single = value & ICW1_SINGLE != 0;
        self.all_level_triggered = value & ICW1_LEVEL != 0;
        self.irr = 0;
        self.isr = 0;
        self.imr = 0;
        self.special_mask = false;
        self.lowest_priority = 7;
        self.read_isr = false;
        self.poll = false;
        self.auto_eoi = false;
        self.rotate_on_auto_eoi = false;
        self.special_fully_nested = false;
        self.resync_level_lines();
    }

    /// OCW2: end of interrupt and priority rotation. Bits 7..5 are R, SL
    /// and EOI; bits 2..0 the line for the specific forms.
    fn write_ocw2(&mut self, value: u8) {
        let line = value & 7;
        match value >> 5 {
            // Rotate in automatic EOI mode: clear, set.
            0b000 => self.rotate_on_auto_eoi = false,
            0b100 => self.rotate_on_auto_eoi = true,
            0b001 => self.end_highest(false),
            0b101 => self.end_highest(true),
            0b011 => self.isr &= !bit(line),
            0b111 => {
                self.isr &= !bit(line);
                self.lowest_priority = line;
            }
            // Set priority: `line` becomes the lowest.
            0b110 => self.lowest_priority = line,
            // 0b010: no operation.
            _ => {}
        }
    }

    /// OCW3: special mask mode, poll, and which register reads return.
    fn write_ocw3(&mut self, value: u8) {
        if value & OCW3_ENABLE_SPECIAL_MASK != 0 {
            self.special_mask = value & OCW3_SPECIAL_MASK != 0;
        }
        if value & OCW3_POLL != 0 {
            self.poll = true;
        }
        if value & OCW3_READ_REGISTER != 0 {
            self.read_isr = value & OCW3_READ_ISR != 0;
        }
    }

    /// A write to the command port (A0 = 0).
    fn write_command(&mut self, value: u8) {
        if value & ICW1_SELECT != 0 {
            self.write_icw1(value);
        } else if value & OCW3_SELECT != 0 {
            self.write_ocw3(value);
        } else {
            self.write_ocw2(value);
        }
    }

    /// A write to the data port (A0 = 1): the next ICW, or the mask.
    fn write_data(&mut self, value: u8) {
        let after_icw3 = if self.expects_icw4 { InitStep::ExpectIcw4 } else { InitStep::Ready };
        match self.init {
            InitStep::ExpectIcw2 => {
                self.vector_base = value & 0xf8;
                self.init = if self.single { after_icw3 } else { InitStep::ExpectIcw3 };
            }
            InitStep::ExpectIcw3 => {
                self.cascade_wiring = value;
                self.init = after_icw3;
            }
            InitStep::ExpectIcw4 => {
                self.auto_eoi = value & ICW4_AUTO_EOI != 0;
                self.special_fully_nested = value & ICW4_SPECIAL_FULLY_NESTED != 0;
                self.init = InitStep::Ready;
            }
            InitStep::Ready => self.imr = value,
        }
    }

    /// A read of the command port: the poll word after a poll command,
    /// else the IRR or ISR as OCW3 selected.
    fn read_command(&mut self) -> u8 {
        if self.poll {
            self.poll_read()
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    /// A read of the data port: the poll word after a poll command (the
    /// poll answers the next read of either port), else the mask.
    fn read_data(&mut self) -> u8 {
        if self.poll { self.poll_read() } else { self.imr }
    }

    /// A write of the ELCR: only the bits the chipset implements.
    fn write_elcr(&mut self, value: u8) {
        self.elcr = value & self.elcr_bits;
        self.resync_level_lines();
    }
}

/// The PC's two cascaded 8259As and their ELCRs.
///
/// At reset the pair is as a PC's firmware leaves it (no firmware runs
/// before a directly booted Linux, so this is the model's choice):
/// initialised, edge-triggered, the master's vectors at 0x08, the
/// slave's at 0x70, every line masked, fixed priority with IRQ0 highest.
///
/// The slave's INT output is the master's IR2 whatever ICW3 says (ICW3
/// is recorded, not used: the wiring is the board's), and the master
/// sees it as a level, so a slave request stays visible until its INTA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DualPic {
    master: Chip,
    slave: Chip,
}

impl Default for DualPic {
    fn default() -> Self {
        DualPic::new()
    }
}

impl DualPic {
    /// The pair at reset (see the type's documentation).
    #[must_use]
    pub const fn new() -> DualPic {
        DualPic {
            master: Chip::new(FIRMWARE_MASTER_BASE, MASTER_ELCR_BITS, true),
            slave: Chip::new(FIRMWARE_SLAVE_BASE, SLAVE_ELCR_BITS, false),
        }
    }

    /// Drives input `line` (IRQ0..15) to `level` (true: asserted). An
    /// edge-triggered line latches a request when it rises; a
    /// level-triggered one (ICW1.LTIM or its ELCR bit) requests while it
    /// is asserted. Line 2 is the cascade, which only the slave drives,
    /// and lines from 16 on do not exist: both are ignored.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..8 if line != CASCADE_LINE => self.master.set_input(line, level),
            8..IRQ_LINES => self.slave.set_input(line - 8, level),
            _ => {}
        }
        self.update_cascade();
    }

    /// Whether INTR is asserted: the master has an unmasked request (its
    /// own or the slave's) of higher priority than anything in service.
    #[must_use]
    pub fn has_interrupt(&self) -> bool {
        self.master.pending().is_some()
    }

    /// The INTA cycle, when the VMM injects the external interrupt: the
    /// vector, with the request moved from IRR to ISR (unless auto-EOI),
    /// through the slave for a request on the cascade line. A request
    /// that vanished since [`DualPic::has_interrupt`] (its level line fell,
    /// or it was masked) reads as the spurious IRQ7 of the master, or
    /// IRQ15 of the slave when the master saw the cascade request, with
    /// nothing put in service on the chip that had none. `None` while the
    /// master is in the middle of its initialisation sequence: it has no
    /// vector base to give (and [`DualPic::has_interrupt`] is false).
    pub fn acknowledge(&mut self) -> Option<u8> {
        if self.master.init != InitStep::Ready {
            return None;
        }
        let vector = match self.master.pending() {
            None => self.master.vector_base | 7,
            Some(line) => {
                self.master.acknowledge_line(line);
                if line == CASCADE_LINE && !self.master.single {
                    match self.slave.pending() {
                        Some(slave_line) => {
                            self.slave.acknowledge_line(slave_line);
                            self.slave.vector_base | slave_line
                        }
                        None => self.slave.vector_base | 7,
                    }
                } else {
                    self.master.vector_base | line
                }
            }
        };
        self.update_cascade();
        Some(vector)
    }

    /// The INTA cycle for an interrupt the VMM cannot deliver (a vector
    /// below 16, which no external interrupt may have): the vector, with
    /// nothing left in service, as if the processor had taken it and the
    /// guest had ended it at once. Without this, the lost interrupt's
    /// in-service bit would block every line of lower priority until the
    /// guest re-initialised the chips.
    pub fn acknowledge_and_end(&mut self) -> Option<u8> {
        let (master, slave) = (self.master.isr, self.slave.isr);
        let vector = self.acknowledge()?;
        // INTA only sets in-service bits: keep those that were set before.
        self.master.isr &= master;
        self.slave.isr &= slave;
        self.update_cascade();
        Some(vector)
    }

    /// Whether input `line` (IRQ0..15) is level-triggered (ICW1.LTIM of
    /// its chip or its ELCR bit).
    #[must_use]
    pub const fn is_level_triggered(&self, line: u8) -> bool {
        match line {
            0..8 => self.master.level_lines() & bit(line) != 0,
            8..IRQ_LINES => self.slave.level_lines() & bit(line - 8) != 0,
            _ => false,
        }
    }

    /// Whether input `line` (IRQ0..15) is masked (OCW1); a line that
    /// does not exist is.
    #[must_use]
    pub const fn is_masked(&self, line: u8) -> bool {
        match line {
            0..8 => self.master.imr & bit(line) != 0,
            8..IRQ_LINES => self.slave.imr & bit(line - 8) != 0,
            _ => true,
        }
    }

    /// The master's IR2 follows the slave's INT output.
    fn update_cascade(&mut self) {
        let slave_output = self.slave.pending().is_some();
        let mask = bit(CASCADE_LINE);
        self.master.inputs = if slave_output { self.master.inputs | mask } else { self.master.inputs & !mask };
        self.master.irr = if slave_output { self.master.irr | mask } else { self.master.irr & !mask };
    }

    /// An IN of one byte from `port`: all ones where the pair has no
    /// register.
    fn read_byte(&mut self, port: u16) -> u8 {
        let value = match port {
            MASTER_COMMAND_PORT => self.master.read_command(),
            MASTER_DATA_PORT => self.master.read_data(),
            SLAVE_COMMAND_PORT => self.slave.read_command(),
            SLAVE_DATA_PORT => self.slave.read_data(),
            MASTER_ELCR_PORT => self.master.elcr,
            SLAVE_ELCR_PORT => self.slave.elcr,
            _ => 0xff,
        };
        // A poll may have acknowledged a slave request.
        self.update_cascade();
        value
    }

    /// An OUT of one byte to `port`: dropped where the pair has no
    /// register.
    fn write_byte(&mut self, port: u16, value: u8) {
        match port {
            MASTER_COMMAND_PORT => self.master.write_command(value),
            MASTER_DATA_PORT => self.master.write_data(value),
            SLAVE_COMMAND_PORT => self.slave.write_command(value),
            SLAVE_DATA_PORT => self.slave.write_data(value),
            MASTER_ELCR_PORT => self.master.write_elcr(value),
            SLAVE_ELCR_PORT => self.slave.write_elcr(value),
            _ => {}
        }
        self.update_cascade();
    }
}

/// A wider access is split into byte accesses at consecutive ports, as
/// the ISA bus does for byte-wide devices; bits above the access's size
/// read zero.
impl PortDevice for DualPic {
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

    fn out(pic: &mut DualPic, port: u16, value: u8) {
        assert_eq!(pic.write(port, AccessSize::Byte, u32::from(value)), ControlFlow::Continue(()));
    }

    fn inb(pic: &mut DualPic, port: u16) -> u8 {
        pic.read(port, AccessSize::Byte).to_le_bytes()[0]
    }

    /// The initialisation Linux's `init_8259A` performs, with the master's
    /// vectors at `base` and the slave's at `base + 8`.
    fn linux_init(pic: &mut DualPic, base: u8, icw4: u8) {
        out(pic, MASTER_DATA_PORT, 0xff);
        out(pic, SLAVE_DATA_PORT, 0xff);
        out(pic, MASTER_COMMAND_PORT, 0x11);
        out(pic, MASTER_DATA_PORT, base);
        out(pic, MASTER_DATA_PORT, 0x04);
        out(pic, MASTER_DATA_PORT, icw4);
        out(pic, SLAVE_COMMAND_PORT, 0x11);
        out(pic, SLAVE_DATA_PORT, base + 8);
        out(pic, SLAVE_DATA_PORT, 0x02);
        out(pic, SLAVE_DATA_PORT, icw4 & !ICW4_AUTO_EOI);
        // Everything unmasked (Linux then masks what it does not use).
        out(pic, MASTER_DATA_PORT, 0x00);
        out(pic, SLAVE_DATA_PORT, 0x00);
    }

    fn initialised(base: u8) -> DualPic {
        let mut pic = DualPic::new();
        linux_init(&mut pic, base, 0x01);
        pic
    }

    fn pulse(pic: &mut DualPic, line: u8) {
        pic.set_irq(line, true);
        pic.set_irq(line, false);
    }

    #[test]
    fn reset_state_is_the_firmwares_all_masked() {
        let mut pic = DualPic::new();
        assert_eq!(inb(&mut pic, MASTER_DATA_PORT), 0xff);
        assert_eq!(inb(&mut pic, SLAVE_DATA_PORT), 0xff);
        pic.set_irq(0, true);
        assert!(!pic.has_interrupt());
        out(&mut pic, MASTER_DATA_PORT, 0xfe);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x08));
    }

    #[test]
    fn linux_probe_reads_back_the_mask() {
        let mut pic = DualPic::new();
        out(&mut pic, MASTER_DATA_PORT, 0xff);
        assert_eq!(inb(&mut pic, MASTER_DATA_PORT), 0xff);
        out(&mut pic, MASTER_DATA_PORT, 0xa5);
        assert_eq!(inb(&mut pic, MASTER_DATA_PORT), 0xa5);
    }

    #[test]
    fn the_linux_init_sequence_sets_the_vector_bases() {
        for base in [0x20, 0x30] {
            let mut pic = initialised(base);
            pulse(&mut pic, 0);
            assert!(pic.has_interrupt());
            assert_eq!(pic.acknowledge(), Some(base));
            out(&mut pic, MASTER_COMMAND_PORT, 0x20);
            pulse(&mut pic, 14);
            assert_eq!(pic.acknowledge(), Some(base + 8 + 6));
        }
    }

    #[test]
    fn icw2_ignores_the_low_three_bits() {
        let mut pic = DualPic::new();
        linux_init(&mut pic, 0x27, 0x01);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), Some(0x21));
    }

    #[test]
    fn icw1_clears_the_mask_and_pending_edges() {
        let mut pic = DualPic::new();
        pic.set_irq(3, true);
        out(&mut pic, MASTER_COMMAND_PORT, 0x11);
        assert_eq!(pic.master.imr, 0);
        assert_eq!(pic.master.irr, 0);
        // Mid-initialisation the chip neither interrupts nor answers INTA.
        assert!(!pic.has_interrupt());
        assert_eq!(pic.acknowledge(), None);
        out(&mut pic, MASTER_DATA_PORT, 0x20);
        out(&mut pic, MASTER_DATA_PORT, 0x04);
        out(&mut pic, MASTER_DATA_PORT, 0x01);
        // The line is still high: no new edge, no request.
        assert!(!pic.has_interrupt());
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), Some(0x23));
    }

    #[test]
    fn icw1_without_icw4_skips_it_and_single_mode_skips_icw3() {
        let mut pic = DualPic::new();
        out(&mut pic, MASTER_COMMAND_PORT, 0x12);
        out(&mut pic, MASTER_DATA_PORT, 0x40);
        assert_eq!(pic.master.init, InitStep::Ready);
        // The next data write is the mask.
        out(&mut pic, MASTER_DATA_PORT, 0xfd);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), Some(0x41));
        // Single mode: IR2 is an ordinary line with the master's vector.
        out(&mut pic, MASTER_DATA_PORT, 0xfb);
        out(&mut pic, SLAVE_DATA_PORT, 0x00);
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        pulse(&mut pic, 8);
        assert_eq!(pic.acknowledge(), Some(0x42));
    }

    #[test]
    fn fixed_priority_puts_irq0_first_and_in_service_blocks_lower() {
        let mut pic = initialised(0x20);
        pulse(&mut pic, 5);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        // IRQ5 waits for IRQ3's EOI; IRQ1 nests over it.
        assert!(!pic.has_interrupt());
        pulse(&mut pic, 1);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x21));
        assert_eq!(pic.master.isr, 0b1010);
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        assert_eq!(pic.master.isr, 0b1000);
        assert!(!pic.has_interrupt());
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x25));
    }

    #[test]
    fn specific_eoi_ends_the_named_line() {
        let mut pic = initialised(0x20);
        pulse(&mut pic, 4);
        assert_eq!(pic.acknowledge(), Some(0x24));
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        out(&mut pic, MASTER_COMMAND_PORT, 0x64);
        assert_eq!(pic.master.isr, 0b1000);
    }

    #[test]
    fn masking_holds_a_request_back_until_unmasked() {
        let mut pic = initialised(0x20);
        out(&mut pic, MASTER_DATA_PORT, 0x10);
        pulse(&mut pic, 4);
        assert!(!pic.has_interrupt());
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x10);
        out(&mut pic, MASTER_DATA_PORT, 0x00);
        assert_eq!(pic.acknowledge(), Some(0x24));
    }

    #[test]
    fn edge_lines_latch_once_per_rising_edge() {
        let mut pic = initialised(0x20);
        pic.set_irq(6, true);
        assert_eq!(pic.acknowledge(), Some(0x26));
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        // Still high, but no new edge.
        assert!(!pic.has_interrupt());
        pic.set_irq(6, true);
        assert!(!pic.has_interrupt());
        pic.set_irq(6, false);
        pic.set_irq(6, true);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn level_lines_follow_the_level_and_come_back_after_eoi() {
        let mut pic = initialised(0x20);
        // The ELCR makes IRQ9 and IRQ11 level-triggered (an ACPI SCI and
        // a PCI line).
        out(&mut pic, SLAVE_ELCR_PORT, 0x0a);
        assert!(pic.is_level_triggered(9));
        assert!(pic.is_level_triggered(11));
        assert!(!pic.is_level_triggered(10));
        pic.set_irq(11, true);
        assert_eq!(pic.acknowledge(), Some(0x2b));
        out(&mut pic, SLAVE_COMMAND_PORT, 0x20);
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        // Still asserted: requested again.
        assert_eq!(pic.acknowledge(), Some(0x2b));
        out(&mut pic, SLAVE_COMMAND_PORT, 0x20);
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        pic.set_irq(11, false);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn the_elcr_keeps_only_the_bits_the_chipset_has() {
        let mut pic = DualPic::new();
        out(&mut pic, MASTER_ELCR_PORT, 0xff);
        out(&mut pic, SLAVE_ELCR_PORT, 0xff);
        assert_eq!(inb(&mut pic, MASTER_ELCR_PORT), 0xf8);
        assert_eq!(inb(&mut pic, SLAVE_ELCR_PORT), 0xde);
        assert!(!pic.is_level_triggered(0) && !pic.is_level_triggered(8) && !pic.is_level_triggered(13));
        assert!(pic.is_level_triggered(3) && pic.is_level_triggered(15));
        // A word access reaches both.
        assert_eq!(pic.write(MASTER_ELCR_PORT, AccessSize::Word, 0x0a20), ControlFlow::Continue(()));
        assert_eq!(pic.read(MASTER_ELCR_PORT, AccessSize::Word), 0x0a20);
    }

    #[test]
    fn icw1_ltim_makes_every_line_level_triggered() {
        let mut pic = DualPic::new();
        out(&mut pic, MASTER_COMMAND_PORT, 0x19);
        out(&mut pic, MASTER_DATA_PORT, 0x20);
        out(&mut pic, MASTER_DATA_PORT, 0x04);
        out(&mut pic, MASTER_DATA_PORT, 0x01);
        assert!(pic.is_level_triggered(0));
        pic.set_irq(0, true);
        pic.set_irq(0, false);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn a_slave_interrupt_goes_through_the_cascade() {
        let mut pic = initialised(0x30);
        pulse(&mut pic, 8);
        assert_eq!(pic.master.irr & 0x04, 0x04);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x38));
        assert_eq!(pic.master.isr, 0x04);
        assert_eq!(pic.slave.isr, 0x01);
        // IRQ3 has lower priority than IRQ2 (in service): it waits.
        pulse(&mut pic, 3);
        assert!(!pic.has_interrupt());
        // Linux ends a slave interrupt with specific EOIs to both.
        out(&mut pic, SLAVE_COMMAND_PORT, 0x60);
        out(&mut pic, MASTER_COMMAND_PORT, 0x62);
        assert_eq!((pic.master.isr, pic.slave.isr), (0, 0));
        assert_eq!(pic.acknowledge(), Some(0x33));
    }

    #[test]
    fn a_masked_slave_does_not_reach_the_master() {
        let mut pic = initialised(0x20);
        out(&mut pic, SLAVE_DATA_PORT, 0xff);
        pulse(&mut pic, 12);
        assert!(!pic.has_interrupt());
        assert_eq!(pic.master.irr, 0);
        out(&mut pic, SLAVE_DATA_PORT, 0x00);
        assert_eq!(pic.acknowledge(), Some(0x2c));
        // Masking the cascade line on the master holds back the slave.
        out(&mut pic, SLAVE_COMMAND_PORT, 0x20);
        out(&mut pic, MASTER_COMMAND_PORT, 0x20);
        out(&mut pic, MASTER_DATA_PORT, 0x04);
        pulse(&mut pic, 15);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn a_vanished_master_request_is_spurious_irq7() {
        let mut pic = initialised(0x20);
        out(&mut pic, MASTER_ELCR_PORT, 0x20);
        pic.set_irq(5, true);
        assert!(pic.has_interrupt());
        pic.set_irq(5, false);
        assert_eq!(pic.acknowledge(), Some(0x27));
        // Nothing in service: Linux's check of ISR bit 7 sees a spurious one.
        out(&mut pic, MASTER_COMMAND_PORT, 0x0b);
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x00);
    }

    #[test]
    fn a_vanished_slave_request_is_spurious_irq15() {
        let mut pic = initialised(0x20);
        // The model's cascade follows the slave at once, so the master
        // sees IR2 without a slave request only in the race between the
        // INTA pulses that real chips have: set that state by hand.
        pic.master.irr |= bit(CASCADE_LINE);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x2f));
        assert_eq!(pic.slave.isr, 0);
        assert_eq!(pic.master.isr, 0x04);
    }

    #[test]
    fn ocw3_selects_irr_or_isr() {
        let mut pic = initialised(0x20);
        pulse(&mut pic, 1);
        pulse(&mut pic, 4);
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x12);
        assert_eq!(pic.acknowledge(), Some(0x21));
        out(&mut pic, MASTER_COMMAND_PORT, 0x0b);
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x02);
        // The selection sticks until changed; an OCW3 without RR keeps it.
        out(&mut pic, MASTER_COMMAND_PORT, 0x08);
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x02);
        out(&mut pic, MASTER_COMMAND_PORT, 0x0a);
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x10);
    }

    #[test]
    fn poll_mode_acknowledges_on_read() {
        let mut pic = initialised(0x20);
        pulse(&mut pic, 6);
        out(&mut pic, MASTER_COMMAND_PORT, 0x0c);
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x86);
        assert_eq!(pic.master.isr, 0x40);
        // One poll per command: the next read is the IRR again.
        assert_eq!(inb(&mut pic, MASTER_COMMAND_PORT), 0x00);
        out(&mut pic, MASTER_COMMAND_PORT, 0x0c);
        assert_eq!(inb(&mut pic, MASTER_DATA_PORT), 0x00);
        // A poll of the slave updates the cascade.
        pulse(&mut pic, 10);
        assert!(pic.master.irr & 0x04 != 0);
        out(&mut pic, SLAVE_COMMAND_PORT, 0x0c);
        assert_eq!(inb(&mut pic, SLAVE_COMMAND_PORT), 0x82);
        assert_eq!(pic.master.irr & 0x04, 0);
    }

    #[test]
    fn auto_eoi_puts_nothing_in_service() {
        let mut pic = DualPic::new();
        linux_init(&mut pic, 0x20, 0x03);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        assert_eq!(pic.master.isr, 0);
        pulse(&mut pic, 4);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn rotation_on_auto_eoi_makes_the_served_line_lowest() {
        let mut pic = DualPic::new();
        linux_init(&mut pic, 0x20, 0x03);
        out(&mut pic, MASTER_COMMAND_PORT, 0x80);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), Some(0x21));
        pulse(&mut pic, 1);
        pulse(&mut pic, 5);
        // IRQ1 is now the lowest: IRQ5 goes first.
        assert_eq!(pic.acknowledge(), Some(0x25));
        assert_eq!(pic.acknowledge(), Some(0x21));
        out(&mut pic, MASTER_COMMAND_PORT, 0x00);
        assert!(!pic.master.rotate_on_auto_eoi);
    }

    #[test]
    fn rotating_eois_and_set_priority_move_the_lowest_priority() {
        let mut pic = initialised(0x20);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        // Rotate on non-specific EOI: IRQ3 becomes lowest, IRQ4 highest.
        out(&mut pic, MASTER_COMMAND_PORT, 0xa0);
        assert_eq!(pic.master.lowest_priority, 3);
        pulse(&mut pic, 0);
        pulse(&mut pic, 4);
        assert_eq!(pic.acknowledge(), Some(0x24));
        // Rotate on specific EOI.
        out(&mut pic, MASTER_COMMAND_PORT, 0xe4);
        assert_eq!((pic.master.lowest_priority, pic.master.isr), (4, 0));
        // Set priority: IRQ7 lowest again.
        out(&mut pic, MASTER_COMMAND_PORT, 0xc7);
        assert_eq!(pic.master.lowest_priority, 7);
        assert_eq!(pic.acknowledge(), Some(0x20));
        // The no-operation form changes nothing.
        let before = pic;
        out(&mut pic, MASTER_COMMAND_PORT, 0x40);
        assert_eq!(pic, before);
    }

    #[test]
    fn special_mask_mode_lets_lower_lines_past_a_masked_one_in_service() {
        let mut pic = initialised(0x20);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        pulse(&mut pic, 6);
        assert!(!pic.has_interrupt());
        // The handler masks its own line and enters special mask mode.
        out(&mut pic, MASTER_DATA_PORT, 0x08);
        out(&mut pic, MASTER_COMMAND_PORT, 0x68);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x26));
        out(&mut pic, MASTER_COMMAND_PORT, 0x48);
        assert!(!pic.master.special_mask);
    }

    #[test]
    fn special_fully_nested_mode_lets_the_slave_nest() {
        let mut pic = DualPic::new();
        linux_init(&mut pic, 0x20, 0x11);
        pulse(&mut pic, 12);
        assert_eq!(pic.acknowledge(), Some(0x2c));
        // Without SFNM the cascade in service would hold IRQ9 back.
        pulse(&mut pic, 9);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x29));
    }

    #[test]
    fn lines_that_do_not_exist_are_ignored() {
        let mut pic = initialised(0x20);
        pic.set_irq(2, true);
        pic.set_irq(16, true);
        pic.set_irq(255, true);
        assert!(!pic.has_interrupt());
        assert!(pic.is_masked(16));
        assert!(!pic.is_level_triggered(200));
    }

    #[test]
    fn unclaimed_ports_and_wide_accesses_are_harmless() {
        let mut pic = initialised(0x20);
        assert_eq!(pic.read(0x22, AccessSize::Byte), 0xff);
        // A word read of 0x21 reads the mask and the open port above it.
        out(&mut pic, MASTER_DATA_PORT, 0x5a);
        assert_eq!(pic.read(MASTER_DATA_PORT, AccessSize::Word), 0xff5a);
        assert_eq!(pic.read(MASTER_DATA_PORT, AccessSize::Dword), 0xffff_ff5a);
        assert_eq!(pic.write(0xffff, AccessSize::Dword, u32::MAX), ControlFlow::Continue(()));
        assert_eq!(pic.read(0xffff, AccessSize::Qword), u32::MAX);
    }

    /// The ports the fuzzer aims at: the pair's and its neighbours.
    const FUZZ_PORTS: [u16; 8] = [0x20, 0x21, 0x22, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x4d2];

    #[derive(Clone, Debug)]
    enum Operation {
        Write(u16, u8),
        Read(u16),
        Line(u8, bool),
        Acknowledge,
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            (proptest::sample::select(FUZZ_PORTS.to_vec()), any::<u8>()).prop_map(|(p, v)| Operation::Write(p, v)),
            proptest::sample::select(FUZZ_PORTS.to_vec()).prop_map(Operation::Read),
            (0_u8..20, any::<bool>()).prop_map(|(l, v)| Operation::Line(l, v)),
            Just(Operation::Acknowledge),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any sequence of port accesses, line changes and INTA cycles:
        /// no panic, the cascade input always equals the slave's output,
        /// level lines' requests equal their inputs, and an asserted INTR
        /// is answered with a vector from one of the two bases.
        #[test]
        fn arbitrary_operations_keep_the_pair_consistent(operations in proptest::collection::vec(operation(), 0..200)) {
            let mut pic = DualPic::new();
            for operation in operations {
                match operation {
                    Operation::Write(port, value) => { let _ = pic.write(port, AccessSize::Byte, u32::from(value)); }
                    Operation::Read(port) => { let _ = pic.read(port, AccessSize::Byte); }
                    Operation::Line(line, level) => pic.set_irq(line, level),
                    Operation::Acknowledge => {
                        let interrupting = pic.has_interrupt();
                        let master_base = pic.master.vector_base;
                        let slave_base = pic.slave.vector_base;
                        if let Some(vector) = pic.acknowledge() {
                            prop_assert!(vector & 0xf8 == master_base || vector & 0xf8 == slave_base);
                        } else {
                            prop_assert!(!interrupting);
                        }
                    }
                }
                prop_assert_eq!(pic.master.irr & 0x04 != 0, pic.slave.pending().is_some());
                for chip in [&pic.master, &pic.slave] {
                    let level = chip.level_lines();
                    prop_assert_eq!(chip.irr & level, chip.inputs & level);
                    prop_assert!(chip.lowest_priority < 8);
                }
            }
        }
    }
}
