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

/// The PIT's input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// How long the TSC is measured against the PIT: 10 ms.
const CALIBRATION_MILLISECONDS: u64 = 10;
/// Gives up after this many polls of the PIT (a machine without one): a
/// port read takes about a microsecond on real hardware, so at most some
/// seconds, once.
const CALIBRATION_POLLS: u64 = 5_000_000;

static TSC_KHZ: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The TSC's rate in kHz (ticks per millisecond): from CPUID leaf 0x15
/// when the CPU states it, otherwise measured once against PIT channel 2
/// over 10 ms. 0 if neither works. Call with interrupts off, before ring
/// 3 runs (it drives PIT channel 2 and the speaker-gate port 0x61).
pub(crate) fn tsc_khz() -> u64 {
    use core::sync::atomic::Ordering;
    let known = TSC_KHZ.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let stated = CpuId::new().get_tsc_info().and_then(|info| info.tsc_frequency()).map_or(0, |hz| hz / 1000);
    let khz = if stated != 0 { stated } else { measure_tsc_khz() };
    TSC_KHZ.store(khz, Ordering::Relaxed);
    khz
}

/// Counts TSC ticks while PIT channel 2 counts down 10 ms (mode 0: its
/// output, bit 5 of port 0x61, goes high at the end).
fn measure_tsc_khz() -> u64 {
    let gate = calibration_inb(0x61);
    calibration_outb(0x61, (gate & !0x02) | 0x01);
    let ticks = count_down();
    // Channel 2's gate and the speaker as the firmware left them.
    calibration_outb(0x61, gate);
    ticks
}

/// Starts channel 2's 10 ms count and returns the TSC ticks until its
/// output goes high (0: it never did).
fn count_down() -> u64 {
    let count = PIT_HZ * CALIBRATION_MILLISECONDS / 1000;
    let [low, high, ..] = count.to_le_bytes();
    calibration_outb(0x43, 0b1011_0000);
    calibration_outb(0x42, low);
    calibration_outb(0x42, high);
    let start = read_tsc();
    let mut polls = 0;
    while calibration_inb(0x61) & 0x20 == 0 {
        polls += 1;
        if polls == CALIBRATION_POLLS {
            return 0;
        }
    }
    read_tsc().wrapping_sub(start) / CALIBRATION_MILLISECONDS
}

/// Writes a port of the calibration (0x61, 0x42, 0x43).
fn calibration_outb(port: u16, value: u8) {
    // SAFETY: ports 0x61 (gate and speaker), 0x42 (channel 2) and 0x43
    // (mode) belong to the kernel while no user program runs (`tsc_khz`'s
    // contract); channel 2 only drives the speaker, which stays off (bit 1
    // of 0x61 clear), and nothing else uses it.
    unsafe { x86::io::outb(port, value) };
}

/// Reads a port of the calibration.
fn calibration_inb(port: u16) -> u8 {
    // SAFETY: as for `calibration_outb`; reading 0x61 has no side effects.
    unsafe { x86::io::inb(port) }
}
