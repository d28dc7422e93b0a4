//! Control-register exits: MOV to and from CR0, CR3, CR4 and CR8, CLTS,
//! LMSW and SMSW, emulated through the guest-state fields.
//!
//! Which accesses exit depends on the backend. `vtx` exits on a MOV to
//! CR0 or CR4 that would change a bit VMX fixes (CR0.NE, CR4.VMXE: the
//! guest/host masks, with the guest's own values in the read shadows),
//! and, on CPUs without the "true" VMX controls, on MOV to and from CR3;
//! its qualification names the general register, except for CLTS and
//! LMSW. `svm` intercepts no control register today, and SVM without
//! decode assists never names the register. So the register comes from
//! the qualification when it is there, and from the decoded instruction
//! otherwise; a decoded instruction must agree with the qualification.
//!
//! Writes are checked as MOV to CR checks them, against the CPU the
//! CPUID table describes: reserved bits (bits 32..64, CR4 features not
//! advertised, CR3 above 36 physical-address bits), PG without PE, NW
//! without CD, entering long mode without PAE or leaving it from 64-bit
//! code, CR8 above 15, are #GP(0), as is any value the kernel refuses.
//! CR0.PG with EFER.LME sets EFER.LMA (clearing PG clears it), as the CPU
//! does. CR8 is kept by the VMM (there is no local APIC to prioritise
//! with yet). CR2 is not in the allowlist: an access to it stops the
//! guest; CR1, CR5..CR7 and CR9..CR15 do not exist: #UD.
//!
//! Under PAE paging a CPU loads the four PDPTEs when CR0, CR3 or CR4
//! change; the allowlist has no PDPTE fields, so on `vtx` (where EPT
//! takes them from the VMCS) a PAE guest whose CR3 write exits keeps its
//! old PDPTEs until the kernel grows them.

use bulkhead_components::vcpu::GuestExit;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use kernel_core::vcpu::{GUEST_CR0, GuestField};
use kernel_core::virt::ControlAccess;

use crate::context::Guest;
use crate::cpu::{Bitness, cr0, cr4, efer};
use crate::cpuid::PHYSICAL_ADDRESS_BITS;
use crate::fault::{Exception, Fault};
use crate::guest::{GuestMemory, VcpuState};
use crate::operand::{read_register, write_register};
use crate::paging::Access;
use crate::stop::EmulationFailure;

/// The CR4 bits a guest may set: those of the features CPUID advertises.
pub const GUEST_CR4: u64 = cr4::VME
    | cr4::PVI
    | cr4::TSD
    | cr4::DE
    | cr4::PSE
    | cr4::PAE
    | cr4::PGE
    | cr4::PCE
    | cr4::OSFXSR
    | cr4::OSXMMEXCPT;

/// The general registers by encoding number, 64-bit and 32-bit.
const GPR64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];
const GPR32: [Register; 16] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
    Register::R8D,
    Register::R9D,
    Register::R10D,
    Register::R11D,
    Register::R12D,
    Register::R13D,
    Register::R14D,
    Register::R15D,
];

/// Where SMSW stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    Register(Register),
    /// A 16-bit store at this linear address.
    Memory(u64),
}

/// One control-register instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    MoveTo { register: u8, source: Register },
    MoveFrom { register: u8, destination: Register },
    Clts,
    Lmsw { source: u64 },
    Smsw { destination: Destination },
}

impl Operation {
    /// The control register and direction it touches.
    const fn access(self) -> (u8, bool) {
        match self {
            Operation::MoveTo { register, .. } => (register, true),
            Operation::MoveFrom { register, .. } => (register, false),
            Operation::Clts | Operation::Lmsw { .. } => (0, true),
            Operation::Smsw { .. } => (0, false),
        }
    }
}

/// Emulates the control-register access of `exit`; CR8 lives in
/// `task_priority`.
pub(crate) fn emulate<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    exit: &GuestExit,
    task_priority: &mut u64,
) -> Result<(), Fault> {
    let access = ControlAccess::unpack(exit.qualification);
    let (operation, length) = match access.gpr {
        Some(index) if (1..=15).contains(&exit.instruction_length) => {
            let table = if guest.bitness()? == Bitness::Bits64 { &GPR64 } else { &GPR32 };
            let register = table[usize::from(index & 0xf)];
            let operation = if access.write {
                Operation::MoveTo { register: access.register, source: register }
            } else {
                Operation::MoveFrom { register: access.register, destination: register }
            };
            (operation, exit.instruction_length)
        }
        _ => {
            let instruction = guest.fetch_instruction()?;
            let operation = decode(guest, &instruction)?;
            if operation.access() != (access.register, access.write) {
                return Err(guest.failure(EmulationFailure::UnexpectedInstruction { mnemonic: instruction.mnemonic() }));
            }
            (operation, instruction.len() as u64)
        }
    };
    let next = guest.next_rip(length)?;
    perform(guest, operation, task_priority)?;
    guest.retire(next)
}

/// The operation `instruction` performs.
fn decode<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    instruction: &Instruction,
) -> Result<Operation, Fault> {
    let control_number = |operand: u32| {
        let register = instruction.op_register(operand);
        (instruction.op_kind(operand) == OpKind::Register && register.is_cr())
            .then(|| u8::try_from(register.number()).unwrap_or(u8::MAX))
    };
    let unexpected = EmulationFailure::UnexpectedInstruction { mnemonic: instruction.mnemonic() };
    match instruction.mnemonic() {
        Mnemonic::Mov => {
            if let Some(register) = control_number(0) {
                Ok(Operation::MoveTo { register, source: instruction.op_register(1) })
            } else if let Some(register) = control_number(1) {
                Ok(Operation::MoveFrom { register, destination: instruction.op_register(0) })
            } else {
                Err(guest.failure(unexpected))
            }
        }
        Mnemonic::Clts => Ok(Operation::Clts),
        Mnemonic::Lmsw => {
            let source = if instruction.op_kind(0) == OpKind::Register {
                read_register(guest.registers, instruction.op_register(0)).unwrap_or(0)
            } else {
                let linear = guest.operand_address(instruction, 0)?;
                let request = guest.data_access(Access::Read)?;
                let mut bytes = [0; 2];
                guest.read_linear(linear, &mut bytes, request)?;
                u64::from(u16::from_le_bytes(bytes))
            };
            Ok(Operation::Lmsw { source })
        }
        Mnemonic::Smsw => {
            let destination = if instruction.op_kind(0) == OpKind::Register {
                Destination::Register(instruction.op_register(0))
            } else {
                Destination::Memory(guest.operand_address(instruction, 0)?)
            };
            Ok(Operation::Smsw { destination })
        }
        _ => Err(guest.failure(unexpected)),
    }
}

fn perform<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    operation: Operation,
    task_priority: &mut u64,
) -> Result<(), Fault> {
    let current = guest.control.cr0;
    match operation {
        Operation::MoveTo { register, source } => {
            let value = read_register(guest.registers, source).unwrap_or(0);
            write_control(guest, register, value, task_priority)
        }
        Operation::MoveFrom { register, destination } => {
            let value = read_control(guest, register, *task_priority)?;
            write_register(guest.registers, destination, value);
            Ok(())
        }
        Operation::Clts => write_cr0(guest, current & !cr0::TS),
        // LMSW loads PE, MP, EM and TS, and can set PE but not clear it.
        Operation::Lmsw { source } => write_cr0(guest, (current & !0xf) | (source & 0xf) | (current & cr0::PE)),
        Operation::Smsw { destination: Destination::Register(register) } => {
            write_register(guest.registers, register, current);
            Ok(())
        }
        Operation::Smsw { destination: Destination::Memory(linear) } => {
            let request = guest.data_access(Access::Write)?;
            let low = u16::try_from(current & 0xffff).unwrap_or(0);
            guest.write_linear(linear, &low.to_le_bytes(), request)
        }
    }
}

const GENERAL_PROTECTION: Fault = Fault::Inject(Exception::GENERAL_PROTECTION);

fn require(valid: bool) -> Result<(), Fault> {
    if valid { Ok(()) } else { Err(GENERAL_PROTECTION) }
}

/// A control register that does not exist (#UD) or that the allowlist
/// lacks (CR2: stop).
fn missing<S: VcpuState, M: GuestMemory>(guest: &Guest<'_, S, M>, register: u8) -> Fault {
    if register == 2 {
        guest.failure(EmulationFailure::ControlRegister { register })
    } else {
        Fault::Inject(Exception::INVALID_OPCODE)
    }
}

fn read_control<S: VcpuState, M: GuestMemory>(
    guest: &Guest<'_, S, M>,
    register: u8,
    task_priority: u64,
) -> Result<u64, Fault> {
    match register {
        0 => Ok(guest.control.cr0),
        3 => Ok(guest.control.cr3),
        4 => Ok(guest.control.cr4),
        8 => Ok(task_priority),
        _ => Err(missing(guest, register)),
    }
}

fn write_control<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    register: u8,
    value: u64,
    task_priority: &mut u64,
) -> Result<(), Fault> {
    match register {
        0 => write_cr0(guest, value),
        3 => write_cr3(guest, value),
        4 => write_cr4(guest, value),
        8 => {
            require(value >> 4 == 0)?;
            *task_priority = value;
            Ok(())
        }
        _ => Err(missing(guest, register)),
    }
}

/// MOV to CR0 (and CLTS, LMSW): reserved bits 0..32 are ignored (ET reads
/// as 1), bits 32..64 are #GP, and so are the combinations a CPU refuses.
fn write_cr0<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, value: u64) -> Result<(), Fault> {
    require(value >> 32 == 0)?;
    let value = (value & GUEST_CR0) | cr0::ET;
    require(!(value & cr0::PG != 0 && value & cr0::PE == 0))?;
    require(!(value & cr0::NW != 0 && value & cr0::CD == 0))?;
    let old = guest.control.cr0;
    let mut new_efer = guest.control.efer;
    let enabling_paging = value & cr0::PG != 0 && old & cr0::PG == 0;
    let disabling_paging = value & cr0::PG == 0 && old & cr0::PG != 0;
    if enabling_paging && guest.control.efer & efer::LME != 0 {
        // Entering long mode: PAE must be on and the code not 64-bit yet.
        require(guest.control.cr4 & cr4::PAE != 0 && guest.bitness()? != Bitness::Bits64)?;
        new_efer |= efer::LMA;
    }
    if disabling_paging && guest.control.long_mode() {
        // Leaving long mode is only allowed from compatibility mode.
        require(guest.bitness()? != Bitness::Bits64)?;
        new_efer &= !efer::LMA;
    }
    guest.write_field(GuestField::CR0, value)?;
    guest.control.cr0 = value;
    if new_efer != guest.control.efer {
        guest.write_field(GuestField::EFER, new_efer)?;
        guest.control.efer = new_efer;
    }
    Ok(())
}

/// MOV to CR3: bit 63 is a no-flush hint under CR4.PCIDE; address bits
/// beyond the advertised width are #GP.
fn write_cr3<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, value: u64) -> Result<(), Fault> {
    let value = if guest.control.cr4 & cr4::PCIDE != 0 { value & !(1 << 63) } else { value };
    require(value >> PHYSICAL_ADDRESS_BITS == 0)?;
    guest.write_field(GuestField::CR3, value)?;
    guest.control.cr3 = value;
    Ok(())
}

/// MOV to CR4: only the bits of advertised features; PAE stays on in long
/// mode.
fn write_cr4<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, value: u64) -> Result<(), Fault> {
    require(value & !GUEST_CR4 == 0)?;
    require(!(guest.control.long_mode() && value & cr4::PAE == 0))?;
    guest.write_field(GuestField::CR4, value)?;
    guest.control.cr4 = value;
    Ok(())
}

#[cfg(test)]
mod tests;
