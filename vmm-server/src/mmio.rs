//! Second-level faults: device memory (MMIO) emulated by decoding the
//! faulting instruction, and accesses outside the guest's memory.
//!
//! A second-level fault is the guest touching a guest-physical address
//! its GuestSpace does not map (or maps without the right). The VMM
//! fetches and decodes the instruction at RIP, computes its memory
//! operand's address (segment base, base, index, displacement, through
//! the guest's paging) and checks it against the fault: the exit's
//! guest-physical address must lie inside the access, and the access
//! must go the way the fault says. A mismatch means the guest changed
//! its code or page tables between the fault and the VMM's look (another
//! vCPU racing, or a hostile guest): the guest is stopped, since
//! emulating an instruction the hardware did not execute could write
//! anywhere the guest names.
//!
//! The instructions emulated are the ones drivers use on device memory:
//! MOV (register to memory, memory to register, immediate to memory),
//! MOVZX, MOVSX and MOVSXD, of 1, 2, 4 and 8 bytes. Anything else (a
//! read-modify-write, a string move, a vector load) stops the guest, as
//! KVM and QEMU end a guest whose MMIO they cannot emulate; so does an
//! access that crosses a page boundary or a device's end, and an
//! instruction fetch from device memory.
//!
//! An access no device claims is open bus, as on a PC (and as Firecracker
//! and QEMU treat unassigned addresses): reads return all ones, writes are
//! dropped, the instruction completes, and the access is counted. A
//! hostile guest probing outside its memory therefore learns nothing,
//! changes nothing, and keeps running at the cost of its own exits.

use core::ops::ControlFlow;

use bulkhead_components::vcpu::GuestExit;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use kernel_core::virt::SecondLevelFault;

use crate::access_size::AccessSize;
use crate::context::Guest;
use crate::counters::Counters;
use crate::fault::Fault;
use crate::guest::{GuestMemory, VcpuState};
use crate::operand::{read_register, write_register};
use crate::paging::Access;
use crate::port_io::RegisterError;
use crate::stop::{EmulationFailure, Stop};

/// A device in guest-physical memory: a state machine the bus calls for
/// each access, with the offset from the device's base.
pub trait MmioDevice {
    /// A read of `size` bytes at `offset` (bits above `size` are ignored).
    fn read(&mut self, offset: u64, size: AccessSize) -> u64;

    /// A write of `size` bytes of `value` at `offset`: `Break` stops the
    /// guest.
    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop>;
}

/// How many devices one bus holds.
pub const MAX_MMIO_DEVICES: usize = 16;
/// The guest's page size: device accesses may not cross a page.
const PAGE_BYTES: u64 = 4096;

/// One registered device.
struct MmioRange<'a> {
    base: u64,
    /// The last address (inclusive), so that a range may end at 2^64.
    last: u64,
    device: &'a mut dyn MmioDevice,
}

/// Devices by guest-physical range.
pub(crate) struct MmioBus<'a> {
    devices: heapless::Vec<MmioRange<'a>, MAX_MMIO_DEVICES>,
}

/// What an access reaches.
enum Target<'d, 'a> {
    Device(&'d mut (dyn MmioDevice + 'a), u64),
    OpenBus,
    Split,
}

impl<'a> MmioBus<'a> {
    /// An empty bus.
    pub(crate) const fn new() -> Self {
        MmioBus { devices: heapless::Vec::new() }
    }

    /// Puts `device` at `base..base + length`.
    pub(crate) fn register(
        &mut self,
        base: u64,
        length: u64,
        device: &'a mut dyn MmioDevice,
    ) -> Result<(), RegisterError> {
        let Some(last) = length.checked_sub(1).and_then(|extent| base.checked_add(extent)) else {
            return Err(RegisterError::EmptyRange);
        };
        if self.devices.iter().any(|range| base <= range.last && range.base <= last) {
            return Err(RegisterError::Overlap);
        }
        self.devices.push(MmioRange { base, last, device }).map_err(|_| RegisterError::Full)
    }

    fn target(&mut self, address: u64, size: AccessSize) -> Target<'_, 'a> {
        let end = address.saturating_add(size.bytes() as u64 - 1);
        let Some(range) = self.devices.iter_mut().find(|range| address <= range.last && range.base <= end) else {
            return Target::OpenBus;
        };
        if address < range.base || end > range.last {
            return Target::Split;
        }
        Target::Device(&mut *range.device, address - range.base)
    }
}

/// What a decoded instruction does with its memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    /// Load into `destination`, sign-extending from the access size or not.
    Load { destination: Register, sign_extend: bool },
    /// Store a general register.
    StoreRegister { source: Register },
    /// Store an immediate (already sign-extended as the instruction says).
    StoreImmediate { value: u64 },
}

/// The operation of `instruction` on its memory operand `memory`, if it
/// is one the VMM emulates.
fn classify(instruction: &Instruction, memory: u32) -> Option<Operation> {
    let register_operand = |operand: u32| {
        let register = instruction.op_register(operand);
        (instruction.op_kind(operand) == OpKind::Register && register.is_gpr()).then_some(register)
    };
    let load = |sign_extend: bool| {
        let destination = register_operand(0).filter(|_| memory == 1)?;
        Some(Operation::Load { destination, sign_extend })
    };
    match instruction.mnemonic() {
        Mnemonic::Mov if memory == 0 => match register_operand(1) {
            Some(source) => Some(Operation::StoreRegister { source }),
            None => instruction.try_immediate(1).ok().map(|value| Operation::StoreImmediate { value }),
        },
        Mnemonic::Mov | Mnemonic::Movzx => load(false),
        Mnemonic::Movsx | Mnemonic::Movsxd => load(true),
        _ => None,
    }
}

/// One decoded device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DeviceAccess {
    operation: Operation,
    size: AccessSize,
    /// The guest-physical address of its first byte.
    physical: u64,
}

impl DeviceAccess {
    const fn store(&self) -> bool {
        !matches!(self.operation, Operation::Load { .. })
    }
}

/// Emulates the access that made second-level fault `exit`.
pub(crate) fn emulate<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    exit: &GuestExit,
    bus: &mut MmioBus<'_>,
    counters: &mut Counters,
) -> Result<(), Fault> {
    let fault = SecondLevelFault::unpack(exit.qualification);
    let reported = exit.guest_physical;
    if fault.fetch {
        return Err(guest.failure(EmulationFailure::FetchFromUnbacked { guest_physical: reported }));
    }
    let instruction = guest.fetch_instruction()?;
    let access = decode(guest, &instruction, reported)?;
    if !(access.physical <= reported && reported - access.physical < access.size.bytes() as u64) {
        return Err(guest.failure(EmulationFailure::AddressMismatch { decoded: access.physical, reported }));
    }
    if fault.write != access.store() {
        return Err(guest.failure(EmulationFailure::DirectionMismatch));
    }
    let next = guest.next_rip(instruction.len() as u64)?;
    perform(guest, access, bus, counters)?;
    guest.retire(next)
}

/// The device access `instruction` makes: its operation, size and
/// guest-physical address (through the guest's paging, with the CPU's
/// checks at the guest's privilege).
fn decode<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    instruction: &Instruction,
    reported: u64,
) -> Result<DeviceAccess, Fault> {
    let memory = (0..instruction.op_count()).find(|operand| instruction.op_kind(*operand) == OpKind::Memory);
    let operation = memory.and_then(|memory| Some((memory, classify(instruction, memory)?)));
    let size = AccessSize::from_bytes(instruction.memory_size().size() as u64);
    let (Some((memory, operation)), Some(size)) = (operation, size) else {
        return Err(guest.failure(EmulationFailure::UnsupportedInstruction { mnemonic: instruction.mnemonic() }));
    };
    let linear = guest.operand_address(instruction, memory)?;
    if linear % PAGE_BYTES + size.bytes() as u64 > PAGE_BYTES {
        return Err(guest.failure(EmulationFailure::SplitAccess { guest_physical: reported }));
    }
    let store = !matches!(operation, Operation::Load { .. });
    let request = guest.data_access(if store { Access::Write } else { Access::Read })?;
    let physical = guest.translate(linear, request)?;
    Ok(DeviceAccess { operation, size, physical })
}

/// Performs `access` on the device at its address, or on open bus.
fn perform<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    access: DeviceAccess,
    bus: &mut MmioBus<'_>,
    counters: &mut Counters,
) -> Result<(), Fault> {
    let DeviceAccess { operation, size, physical } = access;
    let stored = match operation {
        Operation::Load { .. } => 0,
        Operation::StoreRegister { source } => read_register(guest.registers, source).unwrap_or(0),
        Operation::StoreImmediate { value } => value,
    } & size.mask();
    let loaded = match bus.target(physical, size) {
        Target::Split => return Err(guest.failure(EmulationFailure::SplitAccess { guest_physical: physical })),
        Target::OpenBus => {
            counters.count_open_bus();
            size.mask()
        }
        Target::Device(device, offset) => {
            counters.count_mmio();
            match operation {
                Operation::Load { .. } => device.read(offset, size) & size.mask(),
                Operation::StoreRegister { .. } | Operation::StoreImmediate { .. } => {
                    if let ControlFlow::Break(stop) = device.write(offset, size, stored) {
                        return Err(Fault::Stop(stop));
                    }
                    0
                }
            }
        }
    };
    if let Operation::Load { destination, sign_extend } = operation {
        let value = if sign_extend { size.sign_extend(loaded) } else { loaded };
        write_register(guest.registers, destination, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
