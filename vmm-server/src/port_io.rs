//! I/O port exits: an I/O bus of devices on port ranges, IN and OUT of 1,
//! 2 and 4 bytes through AL, AX and EAX, and string I/O (INS, OUTS, with
//! or without REP) emulated through the guest's memory.
//!
//! A port no device claims behaves as on a PC with nothing there: reads
//! return all ones, writes are dropped; both are counted. An access is
//! dispatched to the device that claims its first port.
//!
//! String I/O moves at most [`MAX_STRING_ELEMENTS`] elements per exit: a
//! REP instruction with more to do stays at RIP with RCX, RSI or RDI
//! advanced, so it exits again and continues (as a CPU leaves a REP
//! instruction interrupted), and one exit never costs the VMM more than
//! a bounded amount of work whatever RCX holds. The memory side goes
//! through the guest's paging with the CPU's checks; an element the guest
//! may not access stops the guest (its page fault cannot be injected
//! faithfully without CR2 in the allowlist), with the registers reflecting
//! the elements already moved.

use core::ops::ControlFlow;

use bulkhead_components::vcpu::GuestExit;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use kernel_core::virt::IoAccess;

use crate::access_size::AccessSize;
use crate::context::Guest;
use crate::counters::Counters;
use crate::cpu::rflags;
use crate::fault::Fault;
use crate::guest::{GuestMemory, VcpuState};
use crate::paging::{Access, MemoryAccess};
use crate::stop::{EmulationFailure, Stop};

/// A device on I/O ports: a state machine the bus calls for each access.
pub trait PortDevice {
    /// IN of `size` bytes from `port`: the value (bits above `size` are
    /// ignored).
    fn read(&mut self, port: u16, size: AccessSize) -> u32;

    /// OUT of `size` bytes of `value` to `port`: `Break` stops the guest.
    fn write(&mut self, port: u16, size: AccessSize, value: u32) -> ControlFlow<Stop>;
}

/// How many devices one bus holds.
pub const MAX_PORT_DEVICES: usize = 16;
/// How many port ranges one bus holds (a device may answer on several:
/// the 8259A pair on three, the 8254 on two).
pub const MAX_PORT_RANGES: usize = 32;
/// The most string-I/O elements one exit moves.
pub const MAX_STRING_ELEMENTS: u64 = 256;

/// Why a device could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// A range is empty or wraps, or no range was given.
    EmptyRange,
    /// A range overlaps a registered device's, or another of its own.
    Overlap,
    /// The bus is full.
    Full,
}

/// Ports `first..=last`, answered by the device at `device` in the bus's
/// device table.
struct PortRange {
    first: u16,
    last: u16,
    device: usize,
}

/// The I/O bus: devices, and the port ranges each answers on.
pub(crate) struct IoBus<'a> {
    devices: heapless::Vec<&'a mut dyn PortDevice, MAX_PORT_DEVICES>,
    ranges: heapless::Vec<PortRange, MAX_PORT_RANGES>,
}

impl<'a> IoBus<'a> {
    /// An empty bus.
    pub(crate) const fn new() -> Self {
        IoBus { devices: heapless::Vec::new(), ranges: heapless::Vec::new() }
    }

    /// Puts `device` on each of `ranges` (`(first, last)`, inclusive).
    /// Nothing changes on an error.
    pub(crate) fn register(
        &mut self,
        ranges: &[(u16, u16)],
        device: &'a mut dyn PortDevice,
    ) -> Result<(), RegisterError> {
        if ranges.is_empty() || ranges.iter().any(|(first, last)| last < first) {
            return Err(RegisterError::EmptyRange);
        }
        let overlaps = |a: (u16, u16), b: (u16, u16)| a.0 <= b.1 && b.0 <= a.1;
        for (index, &range) in ranges.iter().enumerate() {
            let taken = self.ranges.iter().any(|other| overlaps(range, (other.first, other.last)));
            let own = ranges[..index].iter().any(|&other| overlaps(range, other));
            if taken || own {
                return Err(RegisterError::Overlap);
            }
        }
        if self.devices.is_full() || self.ranges.capacity() - self.ranges.len() < ranges.len() {
            return Err(RegisterError::Full);
        }
        let index = self.devices.len();
        self.devices.push(device).map_err(|_| RegisterError::Full)?;
        for &(first, last) in ranges {
            self.ranges.push(PortRange { first, last, device: index }).map_err(|_| RegisterError::Full)?;
        }
        Ok(())
    }

    fn device(&mut self, port: u16) -> Option<&mut (dyn PortDevice + 'a)> {
        let range = self.ranges.iter().find(|range| (range.first..=range.last).contains(&port))?;
        self.devices.get_mut(range.device).map(|device| &mut **device)
    }

    /// IN: the device's value, or all ones (counted) where no device is.
    pub(crate) fn read(&mut self, port: u16, size: AccessSize, counters: &mut Counters) -> u32 {
        let mask = u32::try_from(size.mask()).unwrap_or(u32::MAX);
        match self.device(port) {
            Some(device) => device.read(port, size) & mask,
            None => {
                counters.count_unclaimed_port();
                mask
            }
        }
    }

    /// OUT: to the device, or dropped (counted) where no device is.
    pub(crate) fn write(
        &mut self,
        port: u16,
        size: AccessSize,
        value: u32,
        counters: &mut Counters,
    ) -> ControlFlow<Stop> {
        let value = value & u32::try_from(size.mask()).unwrap_or(u32::MAX);
        match self.device(port) {
            Some(device) => device.write(port, size, value),
            None => {
                counters.count_unclaimed_port();
                ControlFlow::Continue(())
            }
        }
    }
}

/// The instructions an I/O exit can come from.
const IO_INSTRUCTIONS: [Mnemonic; 8] = [
    Mnemonic::In,
    Mnemonic::Out,
    Mnemonic::Insb,
    Mnemonic::Insw,
    Mnemonic::Insd,
    Mnemonic::Outsb,
    Mnemonic::Outsw,
    Mnemonic::Outsd,
];

/// Emulates the I/O access of `exit`.
pub(crate) fn emulate<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    exit: &GuestExit,
    bus: &mut IoBus<'_>,
    counters: &mut Counters,
) -> Result<(), Fault> {
    let access = IoAccess::unpack(exit.qualification);
    let size = AccessSize::from_bytes(u64::from(access.size)).filter(|size| *size <= AccessSize::Dword);
    let Some(size) = size else { return Err(guest.failure(EmulationFailure::IoSize { size: access.size })) };
    if access.string {
        return emulate_string(guest, access, size, bus, counters);
    }
    let length = guest.instruction_length(exit.instruction_length, &IO_INSTRUCTIONS)?;
    let next = guest.next_rip(length)?;
    let rax = guest.registers.general[0];
    if access.input {
        let value = u64::from(bus.read(access.port, size, counters));
        // IN to AL or AX keeps the rest of RAX; to EAX it clears bits 32..64.
        guest.registers.general[0] = match size {
            AccessSize::Dword | AccessSize::Qword => value,
            AccessSize::Byte | AccessSize::Word => (rax & !size.mask()) | value,
        };
    } else {
        let value = u32::try_from(rax & size.mask()).unwrap_or(u32::MAX);
        if let ControlFlow::Break(stop) = bus.write(access.port, size, value, counters) {
            return Err(Fault::Stop(stop));
        }
    }
    guest.retire(next)
}

/// The address size of a string instruction's memory operand.
fn address_mask(kind: OpKind) -> Option<u64> {
    match kind {
        OpKind::MemorySegSI | OpKind::MemoryESDI => Some(0xffff),
        OpKind::MemorySegESI | OpKind::MemoryESEDI => Some(0xffff_ffff),
        OpKind::MemorySegRSI | OpKind::MemoryESRDI => Some(u64::MAX),
        _ => None,
    }
}

/// `register` with its low `mask` bits replaced by `value`: a 32-bit
/// update clears bits 32..64, a 16-bit one keeps them.
const fn update(register: u64, value: u64, mask: u64) -> u64 {
    match mask {
        0xffff => (register & !0xffff) | (value & 0xffff),
        _ => value & mask,
    }
}

/// One INS or OUTS, decoded.
struct StringTransfer {
    access: IoAccess,
    size: AccessSize,
    /// RDI for INS, RSI for OUTS.
    index_register: usize,
    /// The address size's mask.
    mask: u64,
    /// ES's base for INS, the (overridable) DS's for OUTS.
    segment_base: u64,
    /// The memory side's access.
    request: MemoryAccess,
    /// The element size, negated when RFLAGS.DF counts down.
    step: u64,
}

/// INS or OUTS, with or without REP.
fn emulate_string<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    access: IoAccess,
    size: AccessSize,
    bus: &mut IoBus<'_>,
    counters: &mut Counters,
) -> Result<(), Fault> {
    let instruction = guest.fetch_instruction()?;
    let transfer = StringTransfer::decode(guest, &instruction, access, size)?;
    let next = guest.next_rip(instruction.len() as u64)?;
    let remaining = transfer.run(guest, bus, counters)?;
    // A REP with elements left runs again (and exits again).
    if access.rep && remaining > 0 { Ok(()) } else { guest.retire(next) }
}

impl StringTransfer {
    /// The transfer `instruction` makes, which must be the INS or OUTS
    /// the exit describes.
    fn decode<S: VcpuState, M: GuestMemory>(
        guest: &mut Guest<'_, S, M>,
        instruction: &Instruction,
        access: IoAccess,
        size: AccessSize,
    ) -> Result<StringTransfer, Fault> {
        let expected = if access.input {
            [Mnemonic::Insb, Mnemonic::Insw, Mnemonic::Insd]
        } else {
            [Mnemonic::Outsb, Mnemonic::Outsw, Mnemonic::Outsd]
        };
        let memory_operand = if access.input { 0 } else { 1 };
        let mask = address_mask(instruction.op_kind(memory_operand));
        let (true, Some(mask)) = (expected.contains(&instruction.mnemonic()), mask) else {
            return Err(guest.failure(EmulationFailure::UnexpectedInstruction { mnemonic: instruction.mnemonic() }));
        };
        let (index_register, segment) =
            if access.input { (7, Register::ES) } else { (6, instruction.memory_segment()) };
        let segment_base = guest.segment_base(segment)?;
        let request = guest.data_access(if access.input { Access::Write } else { Access::Read })?;
        let bytes = size.bytes() as u64;
        let step = if guest.registers.rflags & rflags::DF != 0 { bytes.wrapping_neg() } else { bytes };
        Ok(StringTransfer { access, size, index_register, mask, segment_base, request, step })
    }

    /// Moves up to [`MAX_STRING_ELEMENTS`] elements and updates RSI or RDI
    /// (and RCX for REP) by what moved, even when an element fails: how
    /// many elements REP has left.
    fn run<S: VcpuState, M: GuestMemory>(
        &self,
        guest: &mut Guest<'_, S, M>,
        bus: &mut IoBus<'_>,
        counters: &mut Counters,
    ) -> Result<u64, Fault> {
        let registers = &guest.registers.general;
        let mut count = if self.access.rep { registers[1] & self.mask } else { 1 };
        let mut index = registers[self.index_register] & self.mask;
        let mut outcome = Ok(());
        let mut moved = 0;
        while count > 0 && moved < MAX_STRING_ELEMENTS {
            outcome = self.move_element(guest, self.segment_base.wrapping_add(index), bus, counters);
            if outcome.is_err() {
                break;
            }
            index = index.wrapping_add(self.step) & self.mask;
            count -= 1;
            moved += 1;
        }
        counters.count_string_elements(moved);
        let registers = &mut guest.registers.general;
        registers[self.index_register] = update(registers[self.index_register], index, self.mask);
        if self.access.rep {
            registers[1] = update(registers[1], count, self.mask);
        }
        outcome.map(|()| count)
    }

    /// Moves one element between the port and `linear`.
    fn move_element<S: VcpuState, M: GuestMemory>(
        &self,
        guest: &mut Guest<'_, S, M>,
        linear: u64,
        bus: &mut IoBus<'_>,
        counters: &mut Counters,
    ) -> Result<(), Fault> {
        let (port, size) = (self.access.port, self.size);
        let mut word = [0; 4];
        if self.access.input {
            word = bus.read(port, size, counters).to_le_bytes();
            return guest.write_linear(linear, &word[..size.bytes()], self.request);
        }
        guest.read_linear(linear, &mut word[..size.bytes()], self.request)?;
        match bus.write(port, size, u32::from_le_bytes(word), counters) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(stop) => Err(Fault::Stop(stop)),
        }
    }
}

#[cfg(test)]
mod tests;
