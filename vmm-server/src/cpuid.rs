//! The VMM's own CPUID answers, from a table: the guest sees a baseline
//! x86-64 CPU of vendor "BulkheadVMM " with a hypervisor leaf, never the
//! host's identity or features.
//!
//! The features are the ones every x86-64 CPU has and a simple guest
//! needs (Linux's x86-64 required features among them: FPU, PSE, TSC,
//! MSR, PAE, CX8, PGE, CMOV, FXSR, SSE, SSE2, LM), so the guest never
//! relies on one the host might lack: the table advertises, the hardware
//! executes. Hidden on purpose: VMX (leaf 1 ECX bit 5) and SVM (leaf
//! 0x8000_0001 ECX bit 2), since there is no nested virtualisation;
//! XSAVE and OSXSAVE, since XSETBV is answered with #UD; MCE, MCA and
//! MTRRs, which are not emulated; the local APIC unless the VMM has the
//! PC board's (then with its TSC-deadline timer, but no x2APIC); 1 GiB pages and RDTSCP, which a
//! host may lack (QEMU's `qemu64` does).
//!
//! Unknown leaves (above the highest basic, hypervisor or extended leaf,
//! or between them) read as zeros, AMD's rule. Intel's (the highest basic
//! leaf's data) would hand leaf 1's feature bits out under unrelated leaf
//! numbers; zeros tell a guest plainly that nothing is there.

/// The four registers a CPUID leaf returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The vendor string of leaf 0 (EBX, EDX, ECX).
pub const VENDOR: &[u8; 12] = b"BulkheadVMM ";
/// The hypervisor signature of leaf 0x4000_0000 (EBX, ECX, EDX).
pub const HYPERVISOR_SIGNATURE: &[u8; 12] = b"BulkheadVMM ";

/// The highest basic leaf.
pub const MAX_BASIC_LEAF: u32 = 1;
/// The hypervisor leaves' base and highest leaf.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// The highest extended leaf.
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;

/// Leaf 1 EAX: family 6, model 2, stepping 1 (no real CPU's errata apply).
const SIGNATURE: u32 = 0x0000_0621;

/// Leaf 1 EDX bits.
pub mod leaf1_edx {
    /// x87 FPU.
    pub const FPU: u32 = 1 << 0;
    /// Virtual-8086 mode extensions.
    pub const VME: u32 = 1 << 1;
    /// Debugging extensions.
    pub const DE: u32 = 1 << 2;
    /// 4 MiB pages.
    pub const PSE: u32 = 1 << 3;
    /// RDTSC.
    pub const TSC: u32 = 1 << 4;
    /// RDMSR and WRMSR.
    pub const MSR: u32 = 1 << 5;
    /// PAE paging.
    pub const PAE: u32 = 1 << 6;
    /// CMPXCHG8B.
    pub const CX8: u32 = 1 << 8;
    /// A local APIC (set only with the PC board's, [`CpuidTable::with_local_apic`]).
    pub const APIC: u32 = 1 << 9;
    /// SYSENTER and SYSEXIT.
    pub const SEP: u32 = 1 << 11;
    /// MTRRs (not set: not emulated).
    pub const MTRR: u32 = 1 << 12;
    /// Global pages.
    pub const PGE: u32 = 1 << 13;
    /// CMOVcc.
    pub const CMOV: u32 = 1 << 15;
    /// The page attribute table.
    pub const PAT: u32 = 1 << 16;
    /// 36-bit addresses in 4 MiB pages.
    pub const PSE36: u32 = 1 << 17;
    /// CLFLUSH.
    pub const CLFSH: u32 = 1 << 19;
    /// MMX.
    pub const MMX: u32 = 1 << 23;
    /// FXSAVE and FXRSTOR.
    pub const FXSR: u32 = 1 << 24;
    /// SSE.
    pub const SSE: u32 = 1 << 25;
    /// SSE2.
    pub const SSE2: u32 = 1 << 26;
}

/// Leaf 1 ECX bits.
pub mod leaf1_ecx {
    /// VMX (never set: no nested virtualisation).
    pub const VMX: u32 = 1 << 5;
    /// XSAVE (never set: XSETBV is #UD).
    pub const XSAVE: u32 = 1 << 26;
    /// OSXSAVE (never set).
    pub const OSXSAVE: u32 = 1 << 27;
    /// The local APIC's TSC-deadline timer mode (with a local APIC).
    pub const TSC_DEADLINE: u32 = 1 << 24;
    /// Running under a hypervisor.
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// Leaf 0x8000_0001 bits.
pub mod extended {
    /// ECX: SVM (never set: no nested virtualisation).
    pub const SVM: u32 = 1 << 2;
    /// EDX: SYSCALL and SYSRET.
    pub const SYSCALL: u32 = 1 << 11;
    /// EDX: no-execute pages.
    pub const NX: u32 = 1 << 20;
    /// EDX: 1 GiB pages (not set: a host may lack them).
    pub const PAGE_1G: u32 = 1 << 26;
    /// EDX: long mode.
    pub const LM: u32 = 1 << 29;
}

/// Leaf 1 EDX.
pub const LEAF1_EDX: u32 = {
    use leaf1_edx::*;
    FPU | VME | DE | PSE | TSC | MSR | PAE | CX8 | SEP | PGE | CMOV | PAT | PSE36 | CLFSH | MMX | FXSR | SSE | SSE2
};
/// Leaf 1 ECX: only the hypervisor bit.
pub const LEAF1_ECX: u32 = leaf1_ecx::HYPERVISOR;
/// Leaf 0x8000_0001 EDX.
pub const EXTENDED_EDX: u32 = extended::SYSCALL | extended::NX | extended::LM;
/// Physical-address bits (leaf 0x8000_0008): 36, which every x86-64 CPU
/// has, so that no bit the guest thinks usable is reserved on the host.
pub const PHYSICAL_ADDRESS_BITS: u32 = 36;
/// Linear-address bits: 48 (four-level paging).
pub const LINEAR_ADDRESS_BITS: u32 = 48;

/// The CPUID table of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidTable {
    /// The initial APIC ID (leaf 1 EBX bits 24..32): the vCPU's index.
    apic_id: u8,
    /// Whether the vCPU has a local APIC (leaf 1 EDX.APIC and the
    /// TSC-deadline timer, ECX bit 24).
    local_apic: bool,
}

/// A 12-byte string as three little-endian registers.
const fn words(text: &[u8; 12]) -> [u32; 3] {
    const fn word(text: &[u8; 12], at: usize) -> u32 {
        u32::from_le_bytes([text[at], text[at + 1], text[at + 2], text[at + 3]])
    }
    [word(text, 0), word(text, 4), word(text, 8)]
}

impl CpuidTable {
    /// The table of the vCPU with initial APIC ID `apic_id`.
    #[must_use]
    pub const fn new(apic_id: u8) -> CpuidTable {
        CpuidTable { apic_id, local_apic: false }
    }

    /// The same table with a local APIC: leaf 1 advertises the APIC
    /// (EDX bit 9) and its TSC-deadline timer (ECX bit 24). No x2APIC.
    #[must_use]
    pub const fn with_local_apic(self) -> CpuidTable {
        CpuidTable { local_apic: true, ..self }
    }

    /// What CPUID returns for `leaf` (EAX) and `subleaf` (ECX; no leaf of
    /// the table has subleaves).
    #[must_use]
    pub fn query(&self, leaf: u32, _subleaf: u32) -> CpuidResult {
        match leaf {
            0 => {
                let [ebx, edx, ecx] = words(VENDOR);
                CpuidResult { eax: MAX_BASIC_LEAF, ebx, ecx, edx }
            }
            1 => {
                // CLFLUSH line size 8 quadwords (64 bytes), one logical
                // processor, the APIC ID.
                let ebx = 8 << 8 | 1 << 16 | u32::from(self.apic_id) << 24;
                let (ecx, edx) = if self.local_apic {
                    (LEAF1_ECX | leaf1_ecx::TSC_DEADLINE, LEAF1_EDX | leaf1_edx::APIC)
                } else {
                    (LEAF1_ECX, LEAF1_EDX)
                };
                CpuidResult { eax: SIGNATURE, ebx, ecx, edx }
            }
            HYPERVISOR_LEAF => {
                let [ebx, ecx, edx] = words(HYPERVISOR_SIGNATURE);
                CpuidResult { eax: HYPERVISOR_LEAF, ebx, ecx, edx }
            }
            0x8000_0000 => CpuidResult { eax: MAX_EXTENDED_LEAF, ..CpuidResult::default() },
            0x8000_0001 => CpuidResult { eax: SIGNATURE, edx: EXTENDED_EDX, ..CpuidResult::default() },
            MAX_EXTENDED_LEAF => {
                CpuidResult { eax: PHYSICAL_ADDRESS_BITS | LINEAR_ADDRESS_BITS << 8, ..CpuidResult::default() }
            }
            _ => CpuidResult::default(),
        }
    }
}

#[cfg(test)]
mod tests;
