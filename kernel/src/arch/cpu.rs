//! What the CPU is and which virtualisation extensions it offers.

use raw_cpuid::CpuId;

/// The CPU facts the kernel reports at boot.
pub(crate) struct CpuSummary {
    /// CPUID vendor string, e.g. "GenuineIntel" or "AuthenticAMD".
    pub(crate) vendor: heapless::String<12>,
    /// Processor brand string, when the CPU has one.
    pub(crate) brand: heapless::String<48>,
    /// Intel VT-x (VMX) is present.
    pub(crate) vtx: bool,
    /// AMD SVM is present.
    pub(crate) svm: bool,
    /// AMD nested paging (NPT) is present.
    pub(crate) npt: bool,
}

/// Reads CPUID.
pub(crate) fn summary() -> CpuSummary {
    let cpuid = CpuId::new();
    let mut vendor = heapless::String::new();
    if let Some(info) = cpuid.get_vendor_info() {
        let _ = vendor.push_str(info.as_str());
    }
    let mut brand = heapless::String::new();
    if let Some(info) = cpuid.get_processor_brand_string() {
        let _ = brand.push_str(info.as_str().trim());
    }
    let vtx = cpuid.get_feature_info().is_some_and(|features| features.has_vmx());
    let svm = cpuid.get_extended_processor_and_feature_identifiers().is_some_and(|features| features.has_svm());
    let npt = svm && cpuid.get_svm_info().is_some_and(|info| info.has_nested_paging());
    CpuSummary { vendor, brand, vtx, svm, npt }
}

/// Reads the time stamp counter.
pub(crate) fn read_tsc() -> u64 {
    // SAFETY: RDTSC reads a counter; it has no side effects and the kernel
    // does not set CR4.TSD in ring 0 anyway.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR2, the address of the last page fault.
pub(crate) fn read_cr2() -> u64 {
    // SAFETY: reading CR2 has no side effects.
    unsafe { x86::controlregs::cr2() as u64 }
}

/// Reads CR3, the current page-table root.
pub(crate) fn read_cr3() -> u64 {
    // SAFETY: reading CR3 has no side effects.
    unsafe { x86::controlregs::cr3() }
}

/// Reads the frame pointer of the caller's frame.
#[inline(always)]
pub(crate) fn read_frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: copying RBP into a register has no side effects.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// Reads the address of the instruction after this inlined read, which
/// lies inside the caller.
#[inline(always)]
pub(crate) fn read_instruction_pointer() -> u64 {
    let rip: u64;
    // SAFETY: computing a RIP-relative address has no side effects.
    unsafe { core::arch::asm!("lea {}, [rip]", out(reg) rip, options(nomem, nostack, preserves_flags)) };
    rip
}
