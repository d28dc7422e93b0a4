//! RDMSR and WRMSR: an allowlist of MSRs, emulated from values the VMM
//! keeps or from the VCpu's guest-state fields. Everything else (any other
//! MSR, a reserved bit, a non-canonical address, a write to a read-only
//! MSR) is #GP(0), as a CPU without that MSR or bit would raise.
//!
//! | MSR | read | write |
//! | --- | --- | --- |
//! | IA32_TSC | the host's TSC plus the VCpu's TSC offset, as RDTSC sees it | kept as the offset: the guest's TSC continues from the value written |
//! | IA32_APIC_BASE | 0xfee0_0000, enabled, BSP for APIC ID 0 | the same value accepted; any change #GP |
//! | MTRRcap | 0: no variable ranges, no fixed ranges | #GP (read-only) |
//! | IA32_SYSENTER_CS, _ESP, _EIP | the SYSENTER fields | into them (CS 32 bits; ESP, EIP canonical) |
//! | IA32_MISC_ENABLE | 0x1801: fast strings, no BTS, no PEBS | the same value accepted; any change #GP |
//! | IA32_PAT | the PAT field (power-on 0x0007_0406_0007_0406) | into it, if every entry is a memory type |
//! | MTRRdefType | kept (0) | kept: type UC, WT, WP, WB or WC; FE; E |
//! | IA32_EFER | the EFER field | SCE, LME, NXE (LMA is read-only; LME may not change under paging) into the EFER field |
//! | STAR, LSTAR, CSTAR, SFMASK | the STAR, LSTAR, CSTAR, SFMASK fields | into them (LSTAR, CSTAR canonical; SFMASK 32 bits) |
//! | KERNEL_GS_BASE | the KERNEL_GS_BASE field (the guest's SWAPGS changes it without an exit) | into it (canonical) |
//! | FS_BASE, GS_BASE | the FS and GS base fields | into them (canonical) |
//!
//! The MSRs that live in guest-state fields are the kernel's to load into
//! the hardware (`docs/abi.md`, "VCpus"): the VMM keeps no copy of them,
//! so what a guest reads is what its CPU runs with. Each write is checked
//! here as the CPU's WRMSR checks it (#GP(0)) before it reaches the
//! kernel, whose WriteState checks it again.

use kernel_core::vcpu::{GuestField, Segment, SegmentPart, is_valid_pat};

use crate::context::Guest;
use crate::cpu::{efer, is_canonical};
use crate::fault::{Exception, Fault};
use crate::guest::{Clock, GuestMemory, VcpuState};

/// MSR numbers.
pub mod number {
    /// IA32_TIME_STAMP_COUNTER.
    pub const TSC: u32 = 0x10;
    /// IA32_APIC_BASE.
    pub const APIC_BASE: u32 = 0x1b;
    /// IA32_MTRRCAP.
    pub const MTRR_CAP: u32 = 0xfe;
    /// IA32_SYSENTER_CS.
    pub const SYSENTER_CS: u32 = 0x174;
    /// IA32_SYSENTER_ESP.
    pub const SYSENTER_ESP: u32 = 0x175;
    /// IA32_SYSENTER_EIP.
    pub const SYSENTER_EIP: u32 = 0x176;
    /// IA32_MISC_ENABLE.
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// IA32_PAT.
    pub const PAT: u32 = 0x277;
    /// IA32_MTRR_DEF_TYPE.
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    /// IA32_EFER.
    pub const EFER: u32 = 0xc000_0080;
    /// STAR: SYSCALL's segments.
    pub const STAR: u32 = 0xc000_0081;
    /// LSTAR: the 64-bit SYSCALL entry.
    pub const LSTAR: u32 = 0xc000_0082;
    /// CSTAR: the compatibility-mode SYSCALL entry.
    pub const CSTAR: u32 = 0xc000_0083;
    /// SFMASK (IA32_FMASK): the RFLAGS bits SYSCALL clears.
    pub const SFMASK: u32 = 0xc000_0084;
    /// IA32_FS_BASE.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// IA32_GS_BASE.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// IA32_KERNEL_GS_BASE: SWAPGS's other GS base.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// IA32_APIC_BASE's address bits: the architectural default.
pub const APIC_BASE_ADDRESS: u64 = 0xfee0_0000;
/// IA32_APIC_BASE: this processor is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE: the APIC is globally enabled.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_MISC_ENABLE as the guest reads it: fast strings (bit 0), branch
/// trace storage unavailable (11), PEBS unavailable (12).
pub const MISC_ENABLE_VALUE: u64 = 0x1801;
/// IA32_PAT at power-on: WB, WT, UC-, UC, twice.
pub const POWER_ON_PAT: u64 = kernel_core::vcpu::RESET_PAT;

/// MSRs a device of the VMM's owns (the local APIC's TSC deadline),
/// consulted before the VMM's own file.
pub trait MsrDevice {
    /// RDMSR: `None` if the device does not have `msr`.
    fn read(&mut self, msr: u32) -> Option<u64>;

    /// WRMSR: `None` if the device does not have `msr` (every value is
    /// accepted by one that has it).
    fn write(&mut self, msr: u32, value: u64) -> Option<()>;
}

/// The MSR values the VMM keeps for one vCPU: those no guest-state field
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MsrFile {
    mtrr_default_type: u64,
}

/// What an MSR access needs besides the guest.
pub(crate) struct MsrContext<'c> {
    /// The host's TSC.
    pub(crate) clock: &'c mut dyn Clock,
    /// IA32_APIC_BASE's value for this vCPU.
    pub(crate) apic_base: u64,
}

const GENERAL_PROTECTION: Fault = Fault::Inject(Exception::GENERAL_PROTECTION);

/// `Ok(())` when `valid`, else #GP(0).
fn require(valid: bool) -> Result<(), Fault> {
    if valid { Ok(()) } else { Err(GENERAL_PROTECTION) }
}

/// The guest-state field that holds `msr`, and whether WRMSR takes
/// `value` for it (what the CPU's WRMSR would not #GP on).
fn field_of(msr: u32, value: u64) -> Option<(GuestField, bool)> {
    use number::*;
    let canonical = is_canonical(value);
    let low_half = value >> 32 == 0;
    Some(match msr {
        SYSENTER_CS => (GuestField::SYSENTER_CS, low_half),
        SYSENTER_ESP => (GuestField::SYSENTER_ESP, canonical),
        SYSENTER_EIP => (GuestField::SYSENTER_EIP, canonical),
        PAT => (GuestField::PAT, is_valid_pat(value)),
        STAR => (GuestField::STAR, true),
        LSTAR => (GuestField::LSTAR, canonical),
        CSTAR => (GuestField::CSTAR, canonical),
        SFMASK => (GuestField::SFMASK, low_half),
        FS_BASE => (FS_BASE_FIELD, canonical),
        GS_BASE => (GS_BASE_FIELD, canonical),
        KERNEL_GS_BASE => (GuestField::KERNEL_GS_BASE, canonical),
        _ => return None,
    })
}

/// Whether `value` is a valid MTRRdefType: a type (UC, WC, WT, WP, WB)
/// in bits 0..8, FE (10), E (11), nothing else.
fn valid_mtrr_default_type(value: u64) -> bool {
    value & !0xcff == 0 && matches!(value & 0xff, 0 | 1 | 4..=6)
}

const FS_BASE_FIELD: GuestField = GuestField::segment(Segment::Fs, SegmentPart::Base);
const GS_BASE_FIELD: GuestField = GuestField::segment(Segment::Gs, SegmentPart::Base);

impl MsrFile {
    /// The values at power-on.
    pub(crate) const POWER_ON: MsrFile = MsrFile { mtrr_default_type: 0 };

    /// RDMSR of `msr`.
    pub(crate) fn read<S: VcpuState, M: GuestMemory>(
        &self,
        msr: u32,
        guest: &mut Guest<'_, S, M>,
        context: &mut MsrContext<'_>,
    ) -> Result<u64, Fault> {
        use number::*;
        if let Some((field, _)) = field_of(msr, 0) {
            return guest.read_field(field);
        }
        match msr {
            TSC => Ok(context.clock.read_host_tsc().wrapping_add(guest.read_field(GuestField::TSC_OFFSET)?)),
            APIC_BASE => Ok(context.apic_base),
            MTRR_CAP => Ok(0),
            MISC_ENABLE => Ok(MISC_ENABLE_VALUE),
            MTRR_DEF_TYPE => Ok(self.mtrr_default_type),
            EFER => Ok(guest.control.efer),
            _ => Err(GENERAL_PROTECTION),
        }
    }

    /// WRMSR of `value` to `msr`.
    pub(crate) fn write<S: VcpuState, M: GuestMemory>(
        &mut self,
        msr: u32,
        value: u64,
        guest: &mut Guest<'_, S, M>,
        context: &mut MsrContext<'_>,
    ) -> Result<(), Fault> {
        use number::*;
        if let Some((field, valid)) = field_of(msr, value) {
            require(valid)?;
            return guest.write_field(field, value);
        }
        match msr {
            TSC => guest.write_field(GuestField::TSC_OFFSET, value.wrapping_sub(context.clock.read_host_tsc())),
            APIC_BASE => require(value == context.apic_base),
            MISC_ENABLE => require(value == MISC_ENABLE_VALUE),
            MTRR_DEF_TYPE => {
                require(valid_mtrr_default_type(value))?;
                self.mtrr_default_type = value;
                Ok(())
            }
            EFER => write_efer(guest, value),
            // MTRRcap is read-only; the rest do not exist.
            _ => Err(GENERAL_PROTECTION),
        }
    }
}

/// WRMSR to IA32_EFER: SCE, LME and NXE; LMA is the CPU's (a write's LMA
/// bit is ignored); LME may not change while paging is on; any other bit
/// (SVME among them) is #GP.
fn write_efer<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, value: u64) -> Result<(), Fault> {
    require(value & !(efer::SCE | efer::LME | efer::LMA | efer::NXE) == 0)?;
    let current = guest.control.efer;
    let new = (value & !efer::LMA) | (current & efer::LMA);
    require(!(guest.control.paging() && (new ^ current) & efer::LME != 0))?;
    guest.write_field(GuestField::EFER, new)?;
    guest.control.efer = new;
    Ok(())
}

#[cfg(test)]
mod tests;
