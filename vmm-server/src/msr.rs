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
//! | IA32_SYSENTER_CS, _ESP, _EIP | kept | kept (ESP, EIP canonical) |
//! | IA32_MISC_ENABLE | 0x1801: fast strings, no BTS, no PEBS | the same value accepted; any change #GP |
//! | IA32_PAT | kept (power-on 0x0007_0406_0007_0406) | kept, if every entry is a memory type |
//! | MTRRdefType | kept (0) | kept: type UC, WT, WP, WB or WC; FE; E |
//! | IA32_EFER | the EFER field | SCE, LME, NXE (LMA is read-only; LME may not change under paging) into the EFER field |
//! | STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE | kept | kept (LSTAR, CSTAR, KERNEL_GS_BASE canonical; SFMASK 32 bits) |
//! | FS_BASE, GS_BASE | the FS and GS base fields | into them (canonical) |
//!
//! The kept values are not yet loaded into the hardware: the allowlist
//! has no fields for PAT, the SYSENTER MSRs or the SYSCALL MSRs
//! (`docs/VIRTUALISATION.md`, "Not yet"), so a guest that uses SYSENTER or
//! SYSCALL runs with what the hardware holds until the kernel grows them.

use kernel_core::vcpu::{GuestField, Segment, SegmentPart};

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
pub const POWER_ON_PAT: u64 = 0x0007_0406_0007_0406;

/// MSRs a device of the VMM's owns (the local APIC's TSC deadline),
/// consulted before the VMM's own file.
pub trait MsrDevice {
    /// RDMSR: `None` if the device does not have `msr`.
    fn read(&mut self, msr: u32) -> Option<u64>;

    /// WRMSR: `None` if the device does not have `msr` (every value is
    /// accepted by one that has it).
    fn write(&mut self, msr: u32, value: u64) -> Option<()>;
}

/// The MSR values the VMM keeps for one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MsrFile {
    pat: u64,
    mtrr_default_type: u64,
    sysenter_cs: u64,
    sysenter_esp: u64,
    sysenter_eip: u64,
    star: u64,
    lstar: u64,
    cstar: u64,
    sfmask: u64,
    kernel_gs_base: u64,
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

/// Whether every byte of `value` is a PAT memory type (UC, WC, WT, WP,
/// WB, UC-).
fn valid_pat(value: u64) -> bool {
    value.to_le_bytes().iter().all(|entry| matches!(entry, 0 | 1 | 4..=7))
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
    pub(crate) const POWER_ON: MsrFile = MsrFile {
        pat: POWER_ON_PAT,
        mtrr_default_type: 0,
        sysenter_cs: 0,
        sysenter_esp: 0,
        sysenter_eip: 0,
        star: 0,
        lstar: 0,
        cstar: 0,
        sfmask: 0,
        kernel_gs_base: 0,
    };

    /// RDMSR of `msr`.
    pub(crate) fn read<S: VcpuState, M: GuestMemory>(
        &self,
        msr: u32,
        guest: &mut Guest<'_, S, M>,
        context: &mut MsrContext<'_>,
    ) -> Result<u64, Fault> {
        use number::*;
        match msr {
            TSC => Ok(context.clock.read_host_tsc().wrapping_add(guest.read_field(GuestField::TSC_OFFSET)?)),
            APIC_BASE => Ok(context.apic_base),
            MTRR_CAP => Ok(0),
            SYSENTER_CS => Ok(self.sysenter_cs),
            SYSENTER_ESP => Ok(self.sysenter_esp),
            SYSENTER_EIP => Ok(self.sysenter_eip),
            MISC_ENABLE => Ok(MISC_ENABLE_VALUE),
            PAT => Ok(self.pat),
            MTRR_DEF_TYPE => Ok(self.mtrr_default_type),
            EFER => Ok(guest.control.efer),
            STAR => Ok(self.star),
            LSTAR => Ok(self.lstar),
            CSTAR => Ok(self.cstar),
            SFMASK => Ok(self.sfmask),
            FS_BASE => guest.read_field(FS_BASE_FIELD),
            GS_BASE => guest.read_field(GS_BASE_FIELD),
            KERNEL_GS_BASE => Ok(self.kernel_gs_base),
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
        let keep = |slot: &mut u64, valid: bool| {
            require(valid)?;
            *slot = value;
            Ok(())
        };
        match msr {
            TSC => guest.write_field(GuestField::TSC_OFFSET, value.wrapping_sub(context.clock.read_host_tsc())),
            APIC_BASE => require(value == context.apic_base),
            SYSENTER_CS => keep(&mut self.sysenter_cs, true),
            SYSENTER_ESP => keep(&mut self.sysenter_esp, is_canonical(value)),
            SYSENTER_EIP => keep(&mut self.sysenter_eip, is_canonical(value)),
            MISC_ENABLE => require(value == MISC_ENABLE_VALUE),
            PAT => keep(&mut self.pat, valid_pat(value)),
            MTRR_DEF_TYPE => keep(&mut self.mtrr_default_type, valid_mtrr_default_type(value)),
            EFER => write_efer(guest, value),
            STAR => keep(&mut self.star, true),
            LSTAR => keep(&mut self.lstar, is_canonical(value)),
            CSTAR => keep(&mut self.cstar, is_canonical(value)),
            SFMASK => keep(&mut self.sfmask, value >> 32 == 0),
            FS_BASE => write_segment_base(guest, FS_BASE_FIELD, value),
            GS_BASE => write_segment_base(guest, GS_BASE_FIELD, value),
            KERNEL_GS_BASE => keep(&mut self.kernel_gs_base, is_canonical(value)),
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

/// WRMSR to FS_BASE or GS_BASE: a canonical address into the field.
fn write_segment_base<S: VcpuState, M: GuestMemory>(
    guest: &mut Guest<'_, S, M>,
    field: GuestField,
    value: u64,
) -> Result<(), Fault> {
    require(is_canonical(value))?;
    guest.write_field(field, value)
}
