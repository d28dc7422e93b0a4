//! The guest's general registers as an instruction names them (iced-x86's
//! [`Register`]): reads of any width, and writes with the CPU's rules (a
//! 32-bit write clears bits 32..64, 8- and 16-bit writes keep the rest,
//! AH..BH are bits 8..16 of RAX..RBX).

use bulkhead_components::vcpu::GuestRegisters;
use iced_x86::Register;

/// Where a general register lives in the 64-bit register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// 0 RAX .. 15 R15.
    index: usize,
    /// The bit where the register starts (8 for AH..BH).
    shift: u32,
    /// Its width in bytes.
    bytes: usize,
}

fn slot(register: Register) -> Option<Slot> {
    if !register.is_gpr() {
        return None;
    }
    let index = register.full_register().number();
    let high_byte = matches!(register, Register::AH | Register::CH | Register::DH | Register::BH);
    (index < 16).then_some(Slot { index, shift: if high_byte { 8 } else { 0 }, bytes: register.size() })
}

fn width_mask(bytes: usize) -> u64 {
    if bytes >= 8 { u64::MAX } else { (1 << (8 * bytes)) - 1 }
}

/// The value of general register `register` (zero-extended), or `None`
/// for a register that is not a general one.
pub(crate) fn read_register(registers: &GuestRegisters, register: Register) -> Option<u64> {
    let slot = slot(register)?;
    Some((registers.general[slot.index] >> slot.shift) & width_mask(slot.bytes))
}

/// Writes `value` (truncated to the register's width) to general register
/// `register` as the CPU does; `None` for a register that is not a
/// general one.
pub(crate) fn write_register(registers: &mut GuestRegisters, register: Register, value: u64) -> Option<()> {
    let slot = slot(register)?;
    let old = registers.general[slot.index];
    registers.general[slot.index] = match slot.bytes {
        8 => value,
        4 => value & 0xffff_ffff,
        bytes => {
            let mask = width_mask(bytes) << slot.shift;
            (old & !mask) | ((value << slot.shift) & mask)
        }
    };
    Some(())
}

#[cfg(test)]
mod tests;
