//! The two legacy 8259 PICs: remapping, per-line masks, end of interrupt
//! and the spurious-IRQ check (issue "IOPort ranges, IRQ control and IRQ
//! handlers").
//!
//! Boot remaps them to vectors [`PIC_VECTOR_BASE`].. and masks every line
//! ([`remap_and_mask_all`], called by `apic::init`). A line is unmasked
//! only while a driver's notification is bound to it (`kernel_core::irq`
//! asks through `Platform::irq_set_masked`, which the kernel implements
//! with [`set_masked`]). When it fires, the kernel masks it, sends the
//! end of interrupt ([`end_of_interrupt`]) at once and signals the
//! notification; the line stays masked until the driver's Ack, so the
//! device cannot interrupt again before it has been serviced.
//!
//! The PICs raise IRQ 7 (master) or IRQ 15 (slave) when a request goes
//! away before the CPU acknowledges it; such a spurious IRQ has its
//! in-service bit clear and must get no end of interrupt from its own PIC
//! (the master still needs one for a spurious IRQ 15, which came through
//! the cascade): [`is_spurious`].

use super::apic::PIC_VECTOR_BASE;

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
/// The master's input from the slave.
const CASCADE_LINE: u8 = 2;
/// OCW2: non-specific end of interrupt.
const END_OF_INTERRUPT: u8 = 0x20;
/// OCW3: the next read of the command port returns the in-service register.
const READ_IN_SERVICE: u8 = 0x0b;

/// The I/O ports the kernel itself drives here: no `IoPort` capability may
/// cover them.
pub(crate) const PORTS: [(u16, u16); 2] = [(MASTER_COMMAND, MASTER_DATA), (SLAVE_COMMAND, SLAVE_DATA)];

fn outb(port: u16, value: u8) {
    // SAFETY: only the PICs' own command and data ports reach here (the
    // callers pass the constants above); writing them changes which
    // interrupts arrive and touches no memory.
    unsafe { x86::io::outb(port, value) };
}

fn inb(port: u16) -> u8 {
    // SAFETY: as for `outb`: reading a PIC's data port (the mask) or
    // command port (after OCW3, a status register) has no other effect.
    unsafe { x86::io::inb(port) }
}

/// Remaps both PICs to `PIC_VECTOR_BASE` and masks every line.
pub(crate) fn remap_and_mask_all() {
    outb(MASTER_COMMAND, 0x11); // ICW1: initialise, ICW4 follows
    outb(SLAVE_COMMAND, 0x11);
    outb(MASTER_DATA, PIC_VECTOR_BASE); // ICW2: vector base
    outb(SLAVE_DATA, PIC_VECTOR_BASE + 8);
    outb(MASTER_DATA, 1 << CASCADE_LINE); // ICW3: slave on IRQ 2
    outb(SLAVE_DATA, CASCADE_LINE);
    outb(MASTER_DATA, 1); // ICW4: 8086 mode
    outb(SLAVE_DATA, 1);
    outb(MASTER_DATA, 0xff); // OCW1: mask everything
    outb(SLAVE_DATA, 0xff);
}

/// The data port holding `line`'s mask bit, and the bit.
fn mask_register(line: u8) -> (u16, u8) {
    if line < 8 { (MASTER_DATA, 1 << line) } else { (SLAVE_DATA, 1 << (line & 7)) }
}

/// Masks or unmasks `line` (0..16; others are ignored). Unmasking a slave
/// line also unmasks the cascade input on the master, which then stays
/// unmasked (each slave line keeps its own mask bit).
pub(crate) fn set_masked(line: u8, masked: bool) {
    if line >= 16 {
        return;
    }
    let (port, bit) = mask_register(line);
    let mask = inb(port);
    outb(port, if masked { mask | bit } else { mask & !bit });
    if !masked && line >= 8 {
        outb(MASTER_DATA, inb(MASTER_DATA) & !(1 << CASCADE_LINE));
    }
}

/// Whether every line is masked (the master's cascade input aside, which
/// stays unmasked once a slave line was): then neither PIC can raise an
/// interrupt, not even a spurious one, which needs a request.
pub(crate) fn every_line_masked() -> bool {
    inb(MASTER_DATA) | 1 << CASCADE_LINE == 0xff && inb(SLAVE_DATA) == 0xff
}

/// Sends the end of interrupt for `line` (both PICs for a slave line).
pub(crate) fn end_of_interrupt(line: u8) {
    if line >= 8 {
        outb(SLAVE_COMMAND, END_OF_INTERRUPT);
    }
    outb(MASTER_COMMAND, END_OF_INTERRUPT);
}

/// The 8259's poll command (OCW3 with P set): the next read of the
/// command port acknowledges the highest-priority request, if any.
const POLL: u8 = 0x0c;
/// In a poll's answer: a request was pending (bits 0..2: its level).
const POLL_REQUEST: u8 = 0x80;

/// Takes a pending interrupt without the CPU's interrupt cycle (the
/// kernel idles with interrupts off): the PICs' poll command acknowledges
/// the highest-priority request and names its line, which is then in
/// service until [`end_of_interrupt`]. `None`: nothing was pending (or
/// the slave had withdrawn its request, which the master's end of
/// interrupt then clears).
pub(crate) fn poll() -> Option<u8> {
    outb(MASTER_COMMAND, POLL);
    let master = inb(MASTER_COMMAND);
    if master & POLL_REQUEST == 0 {
        return None;
    }
    let level = master & 0x7;
    if level != CASCADE_LINE {
        return Some(level);
    }
    outb(SLAVE_COMMAND, POLL);
    let slave = inb(SLAVE_COMMAND);
    if slave & POLL_REQUEST == 0 {
        outb(MASTER_COMMAND, END_OF_INTERRUPT);
        return None;
    }
    Some(8 + (slave & 0x7))
}

fn in_service(command_port: u16) -> u8 {
    outb(command_port, READ_IN_SERVICE);
    inb(command_port)
}

/// Whether an interrupt on `line` is a spurious IRQ 7 or 15 (see the
/// module documentation). For a spurious IRQ 15 it sends the master its
/// end of interrupt; a spurious IRQ needs nothing else.
pub(crate) fn is_spurious(line: u8) -> bool {
    match line {
        7 => in_service(MASTER_COMMAND) & 0x80 == 0,
        15 => {
            let spurious = in_service(SLAVE_COMMAND) & 0x80 == 0;
            if spurious {
                outb(MASTER_COMMAND, END_OF_INTERRUPT);
            }
            spurious
        }
        _ => false,
    }
}
