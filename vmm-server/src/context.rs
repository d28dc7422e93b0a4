//! One exit's view of the guest: its registers, its VCpu state and its
//! memory, with what every handler needs on top: the code segment and the
//! CPU mode (read once per exit), fetching and decoding the instruction at
//! RIP, accesses through the guest's paging, and retiring an instruction.

use bulkhead_components::Error;
use bulkhead_components::vcpu::{GuestExit, GuestRegisters};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, Register};
use kernel_core::vcpu::{GuestField, Segment, SegmentPart};

use crate::cpu::{Bitness, ControlRegisters, SegmentAttributes, cr4, is_canonical, rflags};
use crate::fault::{Exception, Fault};
use crate::guest::{GuestMemory, VcpuState};
use crate::operand::read_register;
use crate::paging::{Access, MemoryAccess, TranslationFault, translate};
use crate::stop::{EmulationFailure, Stop};

/// The longest x86 instruction.
pub(crate) const MAX_INSTRUCTION_BYTES: usize = 15;
/// The instructions that exit with no operand bytes, and their encodings
/// without a prefix: CPUID, RDMSR, WRMSR, HLT.
const PLAIN_ENCODINGS: [(Mnemonic, &[u8]); 4] = [
    (Mnemonic::Cpuid, &[0x0f, 0xa2]),
    (Mnemonic::Rdmsr, &[0x0f, 0x32]),
    (Mnemonic::Wrmsr, &[0x0f, 0x30]),
    (Mnemonic::Hlt, &[0xf4]),
];
/// The guest's page size, for splitting accesses.
const PAGE_BYTES: u64 = 4096;

/// The guest as one exit handler sees it.
pub(crate) struct Guest<'g, S: VcpuState, M: GuestMemory> {
    /// The registers VMEnter takes and returns.
    pub(crate) registers: &'g mut GuestRegisters,
    /// The VCpu's other state.
    pub(crate) state: &'g mut S,
    /// The guest's physical memory.
    pub(crate) memory: &'g mut M,
    /// CR0, CR3, CR4, EFER and the interruptibility state at the exit.
    pub(crate) control: ControlRegisters,
    /// CS's attributes, once read.
    code_attributes: Option<SegmentAttributes>,
    /// CS's base, once read.
    code_base: Option<u64>,
}

impl<'g, S: VcpuState, M: GuestMemory> Guest<'g, S, M> {
    /// The guest at an exit with control state `control`; CS's base and
    /// attributes are read from the VCpu when first needed (the tests'
    /// way to count those reads).
    #[cfg(test)]
    pub(crate) fn new(
        registers: &'g mut GuestRegisters,
        state: &'g mut S,
        memory: &'g mut M,
        control: ControlRegisters,
    ) -> Self {
        Guest { registers, state, memory, control, code_attributes: None, code_base: None }
    }

    /// The guest at `exit`, whose CS base and attributes came with it
    /// (VMEnter's reply carries them: no VCpu::ReadState for them).
    pub(crate) fn at_exit(
        registers: &'g mut GuestRegisters,
        state: &'g mut S,
        memory: &'g mut M,
        exit: &GuestExit,
    ) -> Self {
        let [base, attributes] = exit.code_segment;
        Guest {
            registers,
            state,
            memory,
            control: ControlRegisters::of(exit),
            code_attributes: Some(SegmentAttributes(attributes)),
            code_base: Some(base),
        }
    }

    /// A stop for `failure` at the current instruction.
    pub(crate) fn failure(&self, failure: EmulationFailure) -> Fault {
        Fault::Stop(Stop::Emulation { rip: self.registers.rip, failure })
    }

    /// A guest-state field; a refused read stops the guest.
    pub(crate) fn read_field(&mut self, field: GuestField) -> Result<u64, Fault> {
        self.state.read(field).map_err(|error| Fault::Stop(Stop::KernelRefused { field, error }))
    }

    /// Writes a guest-state field. A value the kernel refuses
    /// (InvalidArgument) is one no CPU would load: #GP(0), as MOV to CR or
    /// WRMSR would raise. Any other refusal stops the guest.
    pub(crate) fn write_field(&mut self, field: GuestField, value: u64) -> Result<(), Fault> {
        match self.state.write(field, value) {
            Ok(()) => Ok(()),
            Err(Error::InvalidArgument) => Err(Fault::Inject(Exception::GENERAL_PROTECTION)),
            Err(error) => Err(Fault::Stop(Stop::KernelRefused { field, error })),
        }
    }

    fn code_attributes(&mut self) -> Result<SegmentAttributes, Fault> {
        if let Some(attributes) = self.code_attributes {
            return Ok(attributes);
        }
        let attributes = SegmentAttributes(self.read_field(GuestField::segment(Segment::Cs, SegmentPart::Attributes))?);
        self.code_attributes = Some(attributes);
        Ok(attributes)
    }

    fn code_base(&mut self) -> Result<u64, Fault> {
        if let Some(base) = self.code_base {
            return Ok(base);
        }
        let base = self.read_field(GuestField::segment(Segment::Cs, SegmentPart::Base))?;
        self.code_base = Some(base);
        Ok(base)
    }

    /// The bitness of the code running (real mode is 16-bit whatever CS
    /// says, so CS is read only in protected mode).
    pub(crate) fn bitness(&mut self) -> Result<Bitness, Fault> {
        if !self.control.protected() {
            return Ok(Bitness::Bits16);
        }
        let attributes = self.code_attributes()?;
        Ok(Bitness::of_code(&self.control, attributes, self.registers.rflags))
    }

    /// The current privilege level: 0 in real mode, 3 in virtual-8086
    /// mode, else SS's DPL (as both VMX and SVM keep it).
    pub(crate) fn privilege_level(&mut self) -> Result<u8, Fault> {
        if !self.control.protected() {
            return Ok(0);
        }
        if self.registers.rflags & rflags::VM != 0 {
            return Ok(3);
        }
        let attributes = self.read_field(GuestField::segment(Segment::Ss, SegmentPart::Attributes))?;
        Ok(SegmentAttributes(attributes).dpl())
    }

    /// A data access of kind `access` by the code running.
    pub(crate) fn data_access(&mut self, access: Access) -> Result<MemoryAccess, Fault> {
        let user = self.privilege_level()? == 3;
        Ok(MemoryAccess { access, user, alignment_check: self.registers.rflags & rflags::AC != 0 })
    }

    /// The base of segment register `segment` (iced-x86's ES..GS): ES, CS,
    /// SS and DS have base 0 in 64-bit mode.
    pub(crate) fn segment_base(&mut self, segment: Register) -> Result<u64, Fault> {
        let segment = match segment {
            Register::ES => Segment::Es,
            Register::CS => Segment::Cs,
            Register::SS => Segment::Ss,
            Register::DS => Segment::Ds,
            Register::FS => Segment::Fs,
            Register::GS => Segment::Gs,
            _ => return Ok(0),
        };
        let flat = matches!(segment, Segment::Es | Segment::Cs | Segment::Ss | Segment::Ds);
        if flat && self.bitness()? == Bitness::Bits64 {
            return Ok(0);
        }
        if segment == Segment::Cs {
            return self.code_base();
        }
        self.read_field(GuestField::segment(segment, SegmentPart::Base))
    }

    /// The linear address of `offset` from `base` in the current mode
    /// (wrapping at 4 GiB outside 64-bit mode).
    fn linear(&mut self, base: u64, offset: u64) -> Result<u64, Fault> {
        Ok(base.wrapping_add(offset) & self.bitness()?.linear_mask())
    }

    /// Fetches and decodes the instruction at RIP. Its bytes may cross
    /// into a page that is not there, as long as the instruction ends
    /// before it.
    pub(crate) fn fetch_instruction(&mut self) -> Result<Instruction, Fault> {
        let bitness = self.bitness()?;
        let rip = self.registers.rip & bitness.ip_mask();
        let mut bytes = [0; MAX_INSTRUCTION_BYTES];
        let (fetched, stopped_by) = self.fetch_code(&mut bytes)?;
        if fetched == 0 {
            let fault = stopped_by.unwrap_or(TranslationFault::Unbacked { guest_physical: 0 });
            return Err(self.failure(EmulationFailure::Fetch(fault)));
        }
        let decoder = Decoder::try_with_ip(bitness.bits(), &bytes[..fetched], rip, DecoderOptions::NONE);
        let Ok(mut decoder) = decoder else { return Err(self.failure(EmulationFailure::Undecodable { bytes })) };
        let instruction = decoder.decode();
        if !instruction.is_invalid() {
            return Ok(instruction);
        }
        match stopped_by {
            Some(fault) if decoder.last_error() == DecoderError::NoMoreBytes => {
                Err(self.failure(EmulationFailure::Fetch(fault)))
            }
            _ => Err(self.failure(EmulationFailure::Undecodable { bytes })),
        }
    }

    /// Reads as many of `bytes` as can be read from RIP on, as the guest's
    /// instruction fetch would: how many, and what stopped the read.
    fn fetch_code(&mut self, bytes: &mut [u8]) -> Result<(usize, Option<TranslationFault>), Fault> {
        let bitness = self.bitness()?;
        let cs_base = self.code_base()?;
        let rip = self.registers.rip & bitness.ip_mask();
        let linear = if bitness == Bitness::Bits64 { rip } else { self.linear(cs_base, rip)? };
        // The hardware has just fetched these bytes at the guest's own
        // privilege. A supervisor fetch passes every check a user one does,
        // except SMEP's: SS is read (for the CPL) only when SMEP is on.
        let user = self.control.cr4 & cr4::SMEP != 0 && self.privilege_level()? == 3;
        let fetch = MemoryAccess { access: Access::Fetch, user, alignment_check: false };
        Ok(self.read_available(linear, bytes, fetch, bitness.linear_mask()))
    }

    /// Reads as many of `bytes` as can be read from `linear` on, page by
    /// page and then byte by byte: how many, and what stopped the read.
    fn read_available(
        &mut self,
        linear: u64,
        bytes: &mut [u8],
        request: MemoryAccess,
        mask: u64,
    ) -> (usize, Option<TranslationFault>) {
        let mut done = 0;
        while done < bytes.len() {
            let address = linear.wrapping_add(done as u64) & mask;
            let in_page = usize::try_from(PAGE_BYTES - (address % PAGE_BYTES)).unwrap_or(1);
            let chunk = in_page.min(bytes.len() - done);
            let physical = match translate(self.memory, &self.control, address, request) {
                Ok(physical) => physical,
                Err(fault) => return (done, Some(fault)),
            };
            // The page's bytes in one read; byte by byte only to find where
            // the guest's memory ends.
            if self.memory.read(physical, &mut bytes[done..done + chunk]).is_err() {
                for (index, byte) in bytes[done..done + chunk].iter_mut().enumerate() {
                    let at = physical.wrapping_add(index as u64);
                    if let Err(unbacked) = self.memory.read(at, core::slice::from_mut(byte)) {
                        let fault = TranslationFault::Unbacked { guest_physical: unbacked.guest_physical };
                        return (done + index, Some(fault));
                    }
                }
            }
            done += chunk;
        }
        (done, None)
    }

    /// The length of the instruction that exited: the exit's when the
    /// hardware said, else decoded, and then it must be one of `expected`.
    pub(crate) fn instruction_length(&mut self, given: u64, expected: &[Mnemonic]) -> Result<u64, Fault> {
        if (1..=MAX_INSTRUCTION_BYTES as u64).contains(&given) {
            return Ok(given);
        }
        // The common case without a decoder: the bytes at RIP are the
        // instruction's own encoding, whole (a prefix would come first).
        if let [mnemonic] = expected
            && let Some((_, encoding)) = PLAIN_ENCODINGS.iter().find(|(plain, _)| plain == mnemonic)
        {
            let mut bytes = [0; 2];
            let bytes = &mut bytes[..encoding.len()];
            // Byte by byte: a slice comparison would call memcmp for two bytes.
            if self.fetch_code(bytes)?.0 == encoding.len()
                && bytes.iter().zip(*encoding).all(|(byte, plain)| byte == plain)
            {
                return Ok(encoding.len() as u64);
            }
        }
        let instruction = self.fetch_instruction()?;
        if !expected.contains(&instruction.mnemonic()) {
            return Err(self.failure(EmulationFailure::UnexpectedInstruction { mnemonic: instruction.mnemonic() }));
        }
        Ok(instruction.len() as u64)
    }

    /// The RIP after an instruction of `length` bytes: wrapped to the
    /// code's width; a non-canonical one in 64-bit mode is #GP(0), raised
    /// before the instruction takes effect.
    pub(crate) fn next_rip(&mut self, length: u64) -> Result<u64, Fault> {
        let bitness = self.bitness()?;
        let next = self.registers.rip.wrapping_add(length) & bitness.ip_mask();
        if !is_canonical(next) {
            return Err(Fault::Inject(Exception::GENERAL_PROTECTION));
        }
        Ok(next)
    }

    /// Completes an emulated instruction: RIP moves on to `next_rip`, and
    /// an interrupt shadow (STI or MOV SS just before) ends, as it does
    /// when an instruction retires.
    pub(crate) fn retire(&mut self, next_rip: u64) -> Result<(), Fault> {
        self.registers.rip = next_rip;
        if self.control.interruptibility != 0 {
            self.write_field(GuestField::INTERRUPTIBILITY, 0)?;
            self.control.interruptibility = 0;
        }
        Ok(())
    }

    /// The linear address of memory operand `operand` of `instruction`.
    pub(crate) fn operand_address(&mut self, instruction: &Instruction, operand: u32) -> Result<u64, Fault> {
        let segment = instruction.memory_segment();
        let base = self.segment_base(segment)?;
        let registers = &*self.registers;
        let address = instruction.virtual_address(operand, 0, |register, _, _| {
            if register == segment { Some(base) } else { read_register(registers, register) }
        });
        let Some(address) = address else {
            return Err(self.failure(EmulationFailure::UnsupportedInstruction { mnemonic: instruction.mnemonic() }));
        };
        Ok(address & self.bitness()?.linear_mask())
    }

    /// The guest-physical address of `linear` for `request`.
    pub(crate) fn translate(&mut self, linear: u64, request: MemoryAccess) -> Result<u64, Fault> {
        translate(self.memory, &self.control, linear, request)
            .map_err(|fault| self.failure(EmulationFailure::Operand(fault)))
    }

    /// Reads `bytes` from `linear` (which may cross pages).
    pub(crate) fn read_linear(&mut self, linear: u64, bytes: &mut [u8], request: MemoryAccess) -> Result<(), Fault> {
        let mask = self.bitness()?.linear_mask();
        match self.read_available(linear, bytes, request, mask) {
            (_, None) => Ok(()),
            (_, Some(fault)) => Err(self.failure(EmulationFailure::Operand(fault))),
        }
    }

    /// Writes `bytes` to `linear` (which may cross pages). Both pages are
    /// translated before anything is written.
    pub(crate) fn write_linear(&mut self, linear: u64, bytes: &[u8], request: MemoryAccess) -> Result<(), Fault> {
        let mask = self.bitness()?.linear_mask();
        let linear = linear & mask;
        let in_page = usize::try_from(PAGE_BYTES - (linear % PAGE_BYTES)).unwrap_or(1).min(bytes.len());
        let (first, second) = bytes.split_at(in_page);
        let first_physical = self.translate(linear, request)?;
        let second_physical =
            if second.is_empty() { 0 } else { self.translate(linear.wrapping_add(in_page as u64) & mask, request)? };
        for (physical, part) in [(first_physical, first), (second_physical, second)] {
            if part.is_empty() {
                continue;
            }
            if let Err(unbacked) = self.memory.write(physical, part) {
                let fault = TranslationFault::Unbacked { guest_physical: unbacked.guest_physical };
                return Err(self.failure(EmulationFailure::Operand(fault)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
