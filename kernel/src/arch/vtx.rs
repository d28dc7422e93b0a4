//! The `vtx` backend (Intel VT-x with EPT, VPID and unrestricted guest):
//! entering VMX operation at boot for good ([`enable`]), a VCpu's VMCS
//! (controls and host state set on its first run), running its guest for
//! VMEnter ([`run_guest`]), and the boot self-test [`run_test_guest`]
//! (`inject=guest-vtx`, under Bochs) on the test guest the `svm` backend
//! runs too. `docs/virtualisation-hardware.md` has the encodings and the
//! checks used here (Intel SDM Vol. 3C, the VMX chapters and appendices
//! A to C).

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::memory::PhysAddr;
use kernel_core::vcpu::{EAGER_FIELDS, GuestEntry, GuestField, GuestState, LAZY_FIELDS, Segment, SegmentPart, VCpu};
use kernel_core::virt::{self, Event, Exit, GuestFormat, VtxExitFields};

use crate::arch::guest::{
    Accumulators, Frames, GUEST_ENTRY, GuestRegisters, Next, Program, SPARE_EXITS, build_memory, free_frames, handle,
    report_cost,
};
use crate::arch::guest::{load_guest_registers, store_guest_registers};

/// Capability and control MSRs (SDM Vol. 3C, appendix A).
mod msr {
    /// Lock (bit 0) and VMX outside SMX (bit 2).
    pub(super) const FEATURE_CONTROL: u32 = 0x3a;
    /// The VMCS revision identifier (bits 0..31) and bit 55: the TRUE
    /// control MSRs exist.
    pub(super) const VMX_BASIC: u32 = 0x480;
    /// Allowed settings of the pin-based controls.
    pub(super) const PINBASED: u32 = 0x481;
    /// Of the primary processor-based controls.
    pub(super) const PROCBASED: u32 = 0x482;
    /// Of the exit controls.
    pub(super) const EXIT: u32 = 0x483;
    /// Of the entry controls.
    pub(super) const ENTRY: u32 = 0x484;
    /// CR0 bits that must be 1.
    pub(super) const CR0_FIXED0: u32 = 0x486;
    /// CR4 bits that must be 1.
    pub(super) const CR4_FIXED0: u32 = 0x488;
    /// Of the secondary processor-based controls.
    pub(super) const PROCBASED2: u32 = 0x48b;
    /// The TRUE variants (used when VMX_BASIC bit 55 is set).
    pub(super) const TRUE_PINBASED: u32 = 0x48d;
    /// TRUE primary processor-based.
    pub(super) const TRUE_PROCBASED: u32 = 0x48e;
    /// TRUE exit.
    pub(super) const TRUE_EXIT: u32 = 0x48f;
    /// TRUE entry.
    pub(super) const TRUE_ENTRY: u32 = 0x490;
    /// FS base.
    pub(super) const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub(super) const GS_BASE: u32 = 0xc000_0101;
    /// SYSENTER CS, ESP, EIP.
    pub(super) const SYSENTER_CS: u32 = 0x174;
    /// EPT and VPID capabilities (INVEPT's types among them).
    pub(super) const EPT_VPID_CAP: u32 = 0x48c;
    /// Miscellaneous data: bits 0..5 the VMX-preemption timer's rate.
    pub(super) const VMX_MISC: u32 = 0x485;
    /// IA32_PAT.
    pub(super) const PAT: u32 = 0x277;
    /// STAR: SYSCALL's and SYSRET's selectors.
    pub(super) const STAR: u32 = 0xc000_0081;
    /// LSTAR: the 64-bit SYSCALL entry.
    pub(super) const LSTAR: u32 = 0xc000_0082;
    /// CSTAR: the compatibility-mode SYSCALL entry.
    pub(super) const CSTAR: u32 = 0xc000_0083;
    /// SFMASK (IA32_FMASK).
    pub(super) const SFMASK: u32 = 0xc000_0084;
    /// KERNEL_GS_BASE: SWAPGS's other GS base.
    pub(super) const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// VMCS field encodings (SDM Vol. 3C, appendix B).
mod field {
    pub(super) const VPID: u64 = 0x0000;
    pub(super) const GUEST_ES: u64 = 0x0800;
    pub(super) const HOST_ES: u64 = 0x0c00;
    pub(super) const HOST_CS: u64 = 0x0c02;
    pub(super) const HOST_SS: u64 = 0x0c04;
    pub(super) const HOST_DS: u64 = 0x0c06;
    pub(super) const HOST_FS: u64 = 0x0c08;
    pub(super) const HOST_GS: u64 = 0x0c0a;
    pub(super) const HOST_TR: u64 = 0x0c0c;
    pub(super) const EPT_POINTER: u64 = 0x201a;
    pub(super) const GUEST_PHYSICAL: u64 = 0x2400;
    pub(super) const LINK_POINTER: u64 = 0x2800;
    pub(super) const GUEST_PAT: u64 = 0x2804;
    pub(super) const GUEST_EFER: u64 = 0x2806;
    pub(super) const HOST_PAT: u64 = 0x2c00;
    pub(super) const HOST_EFER: u64 = 0x2c02;
    pub(super) const PIN_CONTROLS: u64 = 0x4000;
    pub(super) const PROC_CONTROLS: u64 = 0x4002;
    pub(super) const EXCEPTION_BITMAP: u64 = 0x4004;
    pub(super) const EXIT_CONTROLS: u64 = 0x400c;
    pub(super) const ENTRY_CONTROLS: u64 = 0x4012;
    pub(super) const PROC_CONTROLS2: u64 = 0x401e;
    pub(super) const INSTRUCTION_ERROR: u64 = 0x4400;
    pub(super) const EXIT_REASON: u64 = 0x4402;
    pub(super) const EXIT_INTERRUPTION: u64 = 0x4404;
    pub(super) const EXIT_INTERRUPTION_ERROR: u64 = 0x4406;
    pub(super) const EXIT_INSTRUCTION_LENGTH: u64 = 0x440c;
    pub(super) const GUEST_ES_LIMIT: u64 = 0x4800;
    pub(super) const GUEST_ES_RIGHTS: u64 = 0x4814;
    pub(super) const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
    pub(super) const GUEST_ACTIVITY: u64 = 0x4826;
    pub(super) const GUEST_SYSENTER_CS: u64 = 0x482a;
    pub(super) const HOST_SYSENTER_CS: u64 = 0x4c00;
    pub(super) const CR0_MASK: u64 = 0x6000;
    pub(super) const CR4_MASK: u64 = 0x6002;
    pub(super) const CR0_SHADOW: u64 = 0x6004;
    pub(super) const CR4_SHADOW: u64 = 0x6006;
    pub(super) const QUALIFICATION: u64 = 0x6400;
    pub(super) const GUEST_CR0: u64 = 0x6800;
    pub(super) const GUEST_CR3: u64 = 0x6802;
    pub(super) const GUEST_CR4: u64 = 0x6804;
    pub(super) const GUEST_ES_BASE: u64 = 0x6806;
    pub(super) const GUEST_DR7: u64 = 0x681a;
    pub(super) const GUEST_RSP: u64 = 0x681c;
    pub(super) const GUEST_RIP: u64 = 0x681e;
    pub(super) const GUEST_RFLAGS: u64 = 0x6820;
    pub(super) const GUEST_PENDING_DEBUG: u64 = 0x6822;
    pub(super) const GUEST_SYSENTER_ESP: u64 = 0x6824;
    pub(super) const GUEST_SYSENTER_EIP: u64 = 0x6826;
    pub(super) const HOST_CR0: u64 = 0x6c00;
    pub(super) const HOST_CR3: u64 = 0x6c02;
    pub(super) const HOST_CR4: u64 = 0x6c04;
    pub(super) const HOST_FS_BASE: u64 = 0x6c06;
    pub(super) const HOST_GS_BASE: u64 = 0x6c08;
    pub(super) const HOST_TR_BASE: u64 = 0x6c0a;
    pub(super) const HOST_GDTR_BASE: u64 = 0x6c0c;
    pub(super) const HOST_IDTR_BASE: u64 = 0x6c0e;
    pub(super) const HOST_SYSENTER_ESP: u64 = 0x6c10;
    pub(super) const HOST_SYSENTER_EIP: u64 = 0x6c12;
    pub(super) const TSC_OFFSET: u64 = 0x2010;
    pub(super) const ENTRY_INTERRUPTION: u64 = 0x4016;
    pub(super) const ENTRY_ERROR_CODE: u64 = 0x4018;
    pub(super) const ENTRY_INSTRUCTION_LENGTH: u64 = 0x401a;
    pub(super) const VECTORING_INFO: u64 = 0x4408;
    pub(super) const VECTORING_ERROR: u64 = 0x440a;
    pub(super) const GUEST_GDTR_LIMIT: u64 = 0x4810;
    pub(super) const GUEST_IDTR_LIMIT: u64 = 0x4812;
    pub(super) const GUEST_GDTR_BASE: u64 = 0x6816;
    pub(super) const GUEST_IDTR_BASE: u64 = 0x6818;
    pub(super) const PREEMPTION_TIMER: u64 = 0x482e;
}

/// Pin-based controls: host interrupts exit; the VMX-preemption timer.
const PIN_EXTERNAL_INTERRUPT: u32 = 1 << 0;
const PIN_PREEMPTION_TIMER: u32 = 1 << 6;
/// Primary controls: TSC offsetting; HLT exits; every I/O instruction
/// exits; the secondary controls apply.
const PROC_TSC_OFFSET: u32 = 1 << 3;
/// Interrupt-window exiting: an exit as soon as the guest can take an
/// external interrupt (RFLAGS.IF set, no STI or MOV SS blocking); set for
/// one run when VMEnter asks for the window.
const PROC_INTERRUPT_WINDOW: u32 = 1 << 2;
const PROC_HLT: u32 = 1 << 7;
/// MOV to CR8 exits. Without it (and without a TPR shadow) a 64-bit
/// guest's MOV to CR8 would write the physical local APIC's task
/// priority, and could mask the host's interrupts, the timer's among them.
const PROC_CR8_LOAD: u32 = 1 << 19;
/// MOV from CR8 exits (the VMM keeps the guest's CR8).
const PROC_CR8_STORE: u32 = 1 << 20;
const PROC_UNCONDITIONAL_IO: u32 = 1 << 24;
const PROC_SECONDARY: u32 = 1 << 31;
/// Secondary controls: EPT, VPID, unrestricted guest.
const PROC2_EPT: u32 = 1 << 1;
const PROC2_VPID: u32 = 1 << 5;
const PROC2_UNRESTRICTED: u32 = 1 << 7;
/// Exit controls: a 64-bit host; save the guest's PAT and load the
/// host's; save and load EFER.
const EXIT_HOST_64: u32 = 1 << 9;
const EXIT_SAVE_PAT: u32 = 1 << 18;
const EXIT_LOAD_PAT: u32 = 1 << 19;
const EXIT_SAVE_EFER: u32 = 1 << 20;
const EXIT_LOAD_EFER: u32 = 1 << 21;
/// Entry controls: the guest is in IA-32e mode (must equal the guest's
/// EFER.LMA, which the entry loads; an exit stores it back); load the
/// guest's PAT and EFER.
const ENTRY_IA32E_GUEST: u32 = 1 << 9;
const ENTRY_LOAD_PAT: u32 = 1 << 14;
const ENTRY_LOAD_EFER: u32 = 1 << 15;
/// EFER.LMA.
const EFER_LMA: u64 = 1 << 10;

// vtx_world_switch(registers: rdi, launched: rsi, cr2: rdx) -> rax: 0
// after a VM exit, 1 VMfailInvalid, 2 VMfailValid (the error in the
// VMCS). Saves the host's callee-saved registers, points the VMCS's host
// RSP and RIP at this frame and the exit label, loads the guest's CR2
// from [cr2] (only when the CPU's differs: MOV to CR2 serialises) and its
// registers, enters with VMLAUNCH (first time) or VMRESUME, and at the
// exit stores the guest's CR2 into [cr2] first, then its registers. No
// VMCS field holds CR2, so it is moved here, where nothing can fault
// between the move and the entry or between the exit and the move. The
// kernel runs with IF clear: an exit loads RFLAGS with IF clear as well.
global_asm!(
    ".global vtx_world_switch",
    "vtx_world_switch:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdx",
    "push rdi",
    "push rsi",
    "mov rax, 0x6c14",
    "vmwrite rax, rsp",
    "lea rdx, [rip + 3f]",
    "mov rax, 0x6c16",
    "vmwrite rax, rdx",
    "mov rax, [rsp + 16]",
    "mov rax, [rax]",
    "mov rdx, cr2",
    "cmp rax, rdx",
    "je 6f",
    "mov cr2, rax",
    "6:",
    "mov rax, [rsp + 8]",
    load_guest_registers!(),
    "cmp qword ptr [rsp], 0",
    "mov rax, [rax]",
    "jne 2f",
    "vmlaunch",
    "jmp 4f",
    "2:",
    "vmresume",
    "4:",
    "mov eax, 2",
    "mov ecx, 1",
    "cmovc eax, ecx",
    "jmp 5f",
    "3:",
    "push rax",
    "mov rax, cr2",
    "push rax",
    "mov rax, [rsp + 24]",
    store_guest_registers!(),
    "pop rbx",
    "mov rcx, [rsp + 24]",
    "mov [rcx], rbx",
    "pop rbx",
    "mov [rax], rbx",
    "xor eax, eax",
    "5:",
    "add rsp, 24",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
);

unsafe extern "C" {
    /// Enters the guest of the current VMCS (see the assembly above).
    fn vtx_world_switch(registers: *mut GuestRegisters, launched: u64, cr2: *mut u64) -> u64;
}

/// Reads an MSR.
fn read_msr(number: u32) -> u64 {
    // SAFETY: every MSR read here exists on a CPU with VT-x (checked
    // before any is read) and reading has no side effects.
    unsafe { x86::msr::rdmsr(number) }
}

/// A control word with the bits in `wanted` that the capability MSR
/// allows: its low half says which bits must be 1, its high half which
/// may be 1. `None` when a wanted bit is not allowed.
fn adjust(wanted: u32, capability: u64) -> Option<u32> {
    let must = u32::try_from(capability & 0xffff_ffff).ok()?;
    let may = u32::try_from(capability >> 32).ok()?;
    let value = (wanted | must) & may;
    if value & wanted == wanted { Some(value) } else { None }
}

/// Writes a VMCS field of the current VMCS.
fn write(encoding: u64, value: u64) -> Result<(), &'static str> {
    let failed: u8;
    // SAFETY: VMWRITE changes only the current VMCS, which this backend
    // made current; a bad encoding fails with a flag, checked below.
    unsafe {
        asm!("vmwrite {}, {}", "setna {}", in(reg) encoding, in(reg) value, out(reg_byte) failed, options(nostack));
    }
    if failed == 0 { Ok(()) } else { Err("VMWRITE failed") }
}

/// Reads a VMCS field of the current VMCS (0 if the read fails).
fn read(encoding: u64) -> u64 {
    let value: u64;
    // SAFETY: VMREAD reads the current VMCS only; a bad encoding fails
    // with a flag and leaves the output, initialised to 0, alone.
    unsafe { asm!("xor {0:e}, {0:e}", "vmread {0}, {1}", out(reg) value, in(reg) encoding, options(nostack)) };
    value
}

/// Whether the CPU has VT-x (the rest is checked when enabling).
fn available() -> bool {
    crate::arch::cpu::summary().vtx
}

/// The VMCS revision identifier (0 until [`enable`] entered VMX
/// operation).
static REVISION: AtomicU64 = AtomicU64::new(0);
/// The adjusted control words, each in its byte lane: pin-based (bits
/// 0..32) and primary processor-based (32..64) in `CONTROLS_LOW`,
/// secondary (0..32) in `CONTROLS_SECONDARY` with exit (32..64), entry in
/// `CONTROLS_ENTRY`.
static CONTROLS_LOW: AtomicU64 = AtomicU64::new(0);
static CONTROLS_SECONDARY: AtomicU64 = AtomicU64::new(0);
static CONTROLS_ENTRY: AtomicU64 = AtomicU64::new(0);
/// The CR0 and CR4 bits VMX operation fixes to 1 (CR0's without PE and
/// PG, which an unrestricted guest may clear): the guest/host masks, so
/// that the guest sees its own value in the read shadows.
static CR0_FIXED: AtomicU64 = AtomicU64::new(0);
static CR4_FIXED: AtomicU64 = AtomicU64::new(0);
/// INVEPT's type for flushing one EPT context: 1 (single-context) or 2
/// (all contexts) when single is not offered.
static INVEPT_TYPE: AtomicU64 = AtomicU64::new(1);
/// The current VMCS's physical address (0: none).
static CURRENT: AtomicU64 = AtomicU64::new(0);
/// The host CR3 the current VMCS holds (`u64::MAX`: not known, after the
/// VMCS became current).
static WRITTEN_HOST_CR3: AtomicU64 = AtomicU64::new(u64::MAX);
/// Likewise its EPT pointer (a VCpu moved to another GuestSpace gets the
/// new one at its next entry).
static WRITTEN_EPT_POINTER: AtomicU64 = AtomicU64::new(u64::MAX);
/// log2 of the TSC ticks per tick of the VMX-preemption timer, or
/// `u64::MAX` when the CPU has none.
static PREEMPTION_RATE: AtomicU64 = AtomicU64::new(u64::MAX);

/// The guest's MSRs no VMCS field holds, each with its field: swapped
/// around the world switch ([`load_guest_syscall_msrs`],
/// [`restore_host_syscall_msrs`]). KERNEL_GS_BASE is last: the guest's
/// SWAPGS changes it, the others change only through WRMSR, which exits.
const SYSCALL_MSRS: [(GuestField, u32); 5] = [
    (GuestField::STAR, msr::STAR),
    (GuestField::LSTAR, msr::LSTAR),
    (GuestField::CSTAR, msr::CSTAR),
    (GuestField::SFMASK, msr::SFMASK),
    (GuestField::KERNEL_GS_BASE, msr::KERNEL_GS_BASE),
];
/// The index of KERNEL_GS_BASE in [`SYSCALL_MSRS`].
const KERNEL_GS_BASE_INDEX: usize = 4;
static_assertions::const_assert_eq!(SYSCALL_MSRS[KERNEL_GS_BASE_INDEX].1, msr::KERNEL_GS_BASE);
/// The host's values of [`SYSCALL_MSRS`], which the CPU holds whenever
/// no guest runs (read when a VMCS is set up).
static HOST_SYSCALL_MSRS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// EFER.SCE and EFER.LME.
const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;

/// A zeroed frame from the boot allocator, kept for good.
fn kept_frame(allocator: &mut FrameAllocator) -> Result<(u64, *mut u8), &'static str> {
    let frame = allocator.allocate().ok_or("no frame for VMX")?;
    let start = frame.start().as_u64();
    let pointer = crate::arch::paging::physmap_pointer(start, 0x1000).ok_or("a frame outside the physmap")?;
    // SAFETY: the frame was just taken from the allocator, which never
    // hands it out again, and lies inside the physical-memory map
    // (checked); bytes need no validity.
    unsafe { core::ptr::write_bytes(pointer, 0, 0x1000) };
    Ok((start, pointer))
}

/// Enters VMX operation for good, at boot: checks IA32_FEATURE_CONTROL,
/// sets CR0.NE and CR4.VMXE, runs VMXON on a kept frame and works out
/// the control words every VMCS gets (EPT, VPID, unrestricted guest,
/// HLT and unconditional I/O exiting, external-interrupt exiting, EFER
/// saved and loaded, TSC offsetting).
///
/// # Errors
///
/// Why VT-x stays off; the kernel then runs everything but guests.
pub(crate) fn enable(allocator: &mut FrameAllocator) -> Result<(), &'static str> {
    if !available() {
        return Err("this CPU has no VT-x");
    }
    if REVISION.load(Ordering::Relaxed) != 0 {
        return Ok(());
    }
    let feature = read_msr(msr::FEATURE_CONTROL);
    if feature & 0b101 != 0b101 {
        return Err("VT-x is not enabled and locked by the firmware (IA32_FEATURE_CONTROL)");
    }
    let basic = read_msr(msr::VMX_BASIC);
    let revision = basic & 0x7fff_ffff;
    let true_controls = basic & (1 << 55) != 0;
    let capability = |plain: u32, true_one: u32| read_msr(if true_controls { true_one } else { plain });
    let pin_capability = capability(msr::PINBASED, msr::TRUE_PINBASED);
    // The preemption timer where the CPU has it: external-interrupt exiting
    // alone would do on hardware, but a timer bounds every run whatever
    // the guest does with its interrupt flag (Bochs 2.7 takes no
    // external-interrupt exit while the guest's IF is clear).
    let timer = adjust(PIN_EXTERNAL_INTERRUPT | PIN_PREEMPTION_TIMER, pin_capability);
    let pin = timer.or_else(|| adjust(PIN_EXTERNAL_INTERRUPT, pin_capability));
    let proc_capability = capability(msr::PROCBASED, msr::TRUE_PROCBASED);
    let proc = adjust(
        PROC_TSC_OFFSET | PROC_HLT | PROC_CR8_LOAD | PROC_CR8_STORE | PROC_UNCONDITIONAL_IO | PROC_SECONDARY,
        proc_capability,
    );
    // Interrupt-window exiting is set for single runs (`run_checked`): the
    // CPU must allow it (its allowed-1 settings are the high half).
    if (proc_capability >> 32) & u64::from(PROC_INTERRUPT_WINDOW) == 0 {
        return Err("the CPU has no interrupt-window exiting");
    }
    let proc2 = adjust(PROC2_EPT | PROC2_VPID | PROC2_UNRESTRICTED, read_msr(msr::PROCBASED2));
    let exit = adjust(
        EXIT_HOST_64 | EXIT_SAVE_PAT | EXIT_LOAD_PAT | EXIT_SAVE_EFER | EXIT_LOAD_EFER,
        capability(msr::EXIT, msr::TRUE_EXIT),
    );
    let entry_capability = capability(msr::ENTRY, msr::TRUE_ENTRY);
    let entry = adjust(ENTRY_LOAD_PAT | ENTRY_LOAD_EFER, entry_capability);
    let (Some(pin), Some(proc), Some(proc2), Some(exit), Some(entry)) = (pin, proc, proc2, exit, entry) else {
        return Err("the CPU lacks a control this backend needs (EPT, VPID, unrestricted guest, PAT or EFER loading)");
    };
    // IA-32e mode guest follows the guest's EFER.LMA (`load_state`): the
    // CPU must allow it both ways.
    if adjust(entry | ENTRY_IA32E_GUEST, entry_capability).is_none() || entry & ENTRY_IA32E_GUEST != 0 {
        return Err("the CPU cannot enter a 64-bit guest and a legacy one alike (IA-32e mode guest control)");
    }
    let ept_caps = read_msr(msr::EPT_VPID_CAP);
    if ept_caps & (1 << 20) == 0 || ept_caps & (0b11 << 25) == 0 {
        return Err("the CPU has no INVEPT");
    }
    let invept = if ept_caps & (1 << 25) != 0 { 1 } else { 2 };

    // CR0 and CR4 must have their fixed-1 bits: CR0.NE (x87 errors as
    // exceptions, which the kernel, using no x87, does not mind) and
    // CR4.VMXE are the ones the kernel does not set at boot.
    // SAFETY: reading CR0 has no side effects.
    let cr0 = unsafe { x86::controlregs::cr0() } | x86::controlregs::Cr0::CR0_NUMERIC_ERROR;
    // SAFETY: setting CR0.NE changes only how x87 errors are reported.
    unsafe { x86::controlregs::cr0_write(cr0) };
    if cr0.bits() as u64 & read_msr(msr::CR0_FIXED0) != read_msr(msr::CR0_FIXED0) {
        return Err("CR0 lacks a bit VMX operation needs");
    }
    // SAFETY: reading CR4 has no side effects.
    let cr4 = unsafe { x86::controlregs::cr4() } | x86::controlregs::Cr4::CR4_ENABLE_VMX;
    // SAFETY: setting CR4.VMXE only enables the VMX instructions.
    unsafe { x86::controlregs::cr4_write(cr4) };
    if cr4.bits() as u64 & read_msr(msr::CR4_FIXED0) != read_msr(msr::CR4_FIXED0) {
        clear_vmxe();
        return Err("CR4 lacks a bit VMX operation needs");
    }
    let (vmxon, vmxon_pointer) = match kept_frame(allocator) {
        Ok(frame) => frame,
        Err(why) => {
            clear_vmxe();
            return Err(why);
        }
    };
    // SAFETY: the VMXON region is a zeroed frame of ours inside the
    // physmap; its first dword is aligned: the revision goes there.
    unsafe { vmxon_pointer.cast::<u32>().write_volatile(u32::try_from(revision).unwrap_or(0)) };
    let failed: u8;
    // SAFETY: the VMXON region is a page of ours with the revision in
    // place, CR4.VMXE is set and the firmware enabled VMX; failure sets
    // a flag, checked below.
    unsafe { asm!("vmxon [{}]", "setna {}", in(reg) &raw const vmxon, out(reg_byte) failed, options(nostack)) };
    if failed != 0 {
        clear_vmxe();
        return Err("VMXON failed");
    }
    CONTROLS_LOW.store(u64::from(pin) | u64::from(proc) << 32, Ordering::Relaxed);
    CONTROLS_SECONDARY.store(u64::from(proc2) | u64::from(exit) << 32, Ordering::Relaxed);
    CONTROLS_ENTRY.store(u64::from(entry), Ordering::Relaxed);
    let pe_pg = 1 | 1 << 31;
    CR0_FIXED.store(read_msr(msr::CR0_FIXED0) & !pe_pg, Ordering::Relaxed);
    CR4_FIXED.store(read_msr(msr::CR4_FIXED0), Ordering::Relaxed);
    INVEPT_TYPE.store(invept, Ordering::Relaxed);
    if timer.is_some() {
        PREEMPTION_RATE.store(read_msr(msr::VMX_MISC) & 0x1f, Ordering::Relaxed);
    }
    REVISION.store(revision, Ordering::Relaxed);
    println!("vtx: in VMX operation, VMCS revision {revision:#x}");
    Ok(())
}

/// Clears CR4.VMXE after a failed enable: the CPU as it was found.
fn clear_vmxe() {
    // SAFETY: reading CR4 has no side effects.
    let cr4 = unsafe { x86::controlregs::cr4() };
    // SAFETY: outside VMX operation (VMXON never succeeded), clearing
    // CR4.VMXE only disables the VMX instructions again.
    unsafe { x86::controlregs::cr4_write(cr4 - x86::controlregs::Cr4::CR4_ENABLE_VMX) };
}

/// Makes the VMCS at `vmcs` the current one (VMPTRLD), unless it is.
fn make_current(vmcs: u64) -> Result<(), &'static str> {
    if CURRENT.load(Ordering::Relaxed) == vmcs {
        return Ok(());
    }
    let failed: u8;
    // SAFETY: in VMX root operation; `vmcs` is a VCpu's (or the
    // self-test's) page with the revision in place, cleared once before
    // its first use; failure sets a flag, checked below.
    unsafe { asm!("vmptrld [{}]", "setna {}", in(reg) &raw const vmcs, out(reg_byte) failed, options(nostack)) };
    if failed != 0 {
        return Err("VMPTRLD failed");
    }
    CURRENT.store(vmcs, Ordering::Relaxed);
    WRITTEN_HOST_CR3.store(u64::MAX, Ordering::Relaxed);
    WRITTEN_EPT_POINTER.store(u64::MAX, Ordering::Relaxed);
    Ok(())
}

/// Writes the revision into the fresh VMCS region at `vmcs` and clears
/// it (VMCLEAR), then makes it current and writes every control and the
/// parts of the host state that never change.
fn initialise(vmcs: u64) -> Result<(), &'static str> {
    let pointer = crate::arch::paging::physmap_pointer(vmcs, 0x1000).ok_or("a VMCS outside the physmap")?;
    let revision = u32::try_from(REVISION.load(Ordering::Relaxed)).unwrap_or(0);
    // SAFETY: a VCpu's first page (or the self-test's frame) is the
    // kernel's alone, inside the physmap (checked) and page aligned.
    unsafe { pointer.cast::<u32>().write_volatile(revision) };
    clear(vmcs);
    make_current(vmcs)?;
    let low = CONTROLS_LOW.load(Ordering::Relaxed);
    let secondary = CONTROLS_SECONDARY.load(Ordering::Relaxed);
    write(field::PIN_CONTROLS, low & 0xffff_ffff)?;
    write(field::PROC_CONTROLS, low >> 32)?;
    write(field::PROC_CONTROLS2, secondary & 0xffff_ffff)?;
    write(field::EXIT_CONTROLS, secondary >> 32)?;
    write(field::ENTRY_CONTROLS, CONTROLS_ENTRY.load(Ordering::Relaxed))?;
    write(field::EXCEPTION_BITMAP, 0)?;
    write(field::VPID, 1)?;
    write(field::LINK_POINTER, u64::MAX)?;
    let cr0_fixed = CR0_FIXED.load(Ordering::Relaxed);
    let cr4_fixed = CR4_FIXED.load(Ordering::Relaxed);
    write(field::CR0_MASK, cr0_fixed)?;
    write(field::CR4_MASK, cr4_fixed)?;
    // No pending debug exceptions, no CR3 targets, no MSR lists, nothing
    // to inject (a fresh VMCS's fields are not defined to be zero).
    for encoding in [field::GUEST_PENDING_DEBUG, 0x400a, 0x400e, 0x4010, 0x4014, 0x4016, 0x4006, 0x4008] {
        write(encoding, 0)?;
    }
    // The host: the kernel. CR3 is written before an entry when it
    // changed (the thread that enters decides it); the FS and GS bases
    // here, for good: the kernel never changes them, and ring 3 cannot
    // (CR4.FSGSBASE is off, the MSRs are privileged).
    write(field::HOST_FS_BASE, read_msr(msr::FS_BASE))?;
    write(field::HOST_GS_BASE, read_msr(msr::GS_BASE))?;
    // SAFETY: reading CR0 and CR4 has no side effects.
    write(field::HOST_CR0, unsafe { x86::controlregs::cr0() }.bits() as u64)?;
    // SAFETY: as above.
    write(field::HOST_CR4, unsafe { x86::controlregs::cr4() }.bits() as u64)?;
    let code = u64::from(crate::arch::gdt::KERNEL_CODE);
    let data = u64::from(crate::arch::gdt::KERNEL_DATA);
    for (encoding, selector) in [
        (field::HOST_ES, data),
        (field::HOST_CS, code),
        (field::HOST_SS, data),
        (field::HOST_DS, data),
        (field::HOST_FS, 0),
        (field::HOST_GS, 0),
        (field::HOST_TR, u64::from(crate::arch::gdt::TSS_SELECTOR)),
    ] {
        write(encoding, selector)?;
    }
    write(field::HOST_TR_BASE, crate::arch::gdt::tss_base())?;
    let mut gdtr = x86::dtables::DescriptorTablePointer::<u64>::default();
    let mut idtr = x86::dtables::DescriptorTablePointer::<u64>::default();
    // SAFETY: SGDT and SIDT store the current table registers into the
    // pointers, which are ours.
    unsafe { x86::dtables::sgdt(&mut gdtr) };
    // SAFETY: as above.
    unsafe { x86::dtables::sidt(&mut idtr) };
    write(field::HOST_GDTR_BASE, gdtr.base as u64)?;
    write(field::HOST_IDTR_BASE, idtr.base as u64)?;
    write(field::HOST_SYSENTER_CS, read_msr(msr::SYSENTER_CS))?;
    write(field::HOST_SYSENTER_ESP, read_msr(msr::SYSENTER_CS + 1))?;
    write(field::HOST_SYSENTER_EIP, read_msr(msr::SYSENTER_CS + 2))?;
    write(field::HOST_EFER, read_msr(x86::msr::IA32_EFER))?;
    write(field::HOST_PAT, read_msr(msr::PAT))?;
    // The kernel's own SYSCALL MSRs (`syscall::init` set them at boot,
    // before any VCpu exists; they never change after).
    for (host, (_, number)) in HOST_SYSCALL_MSRS.iter().zip(SYSCALL_MSRS) {
        host.store(read_msr(number), Ordering::Relaxed);
    }
    Ok(())
}

/// VMCLEAR of the VMCS at `vmcs`: its data goes to memory and it is no
/// longer current (or launched).
fn clear(vmcs: u64) {
    // SAFETY: in VMX root operation; `vmcs` is a page-aligned page the
    // kernel owns (not the VMXON region); VMCLEAR writes only there.
    unsafe { asm!("vmclear [{}]", in(reg) &raw const vmcs, options(nostack)) };
    if CURRENT.load(Ordering::Relaxed) == vmcs {
        CURRENT.store(0, Ordering::Relaxed);
    }
}

/// Copies the lazy fields of the VCpu's VMCS into its record
/// (`kernel_core::platform::Platform::sync_guest_state`): makes the VMCS
/// current and reads them. A VMX instruction failing here is a kernel bug
/// (the VMCS is the kernel's alone), so it panics.
pub(crate) fn sync_guest_state(vmcs: u64, record: &mut VCpu) {
    if record.hardware != 0 {
        if let Err(why) = make_current(vmcs) {
            panic!("vtx: {why} (VM-instruction error {})", read(field::INSTRUCTION_ERROR));
        }
        store_lazy(&mut record.state);
    }
    record.stale = 0;
}

/// A VCpu is being deleted: its VMCS must not stay cached in the CPU,
/// which could write it back into memory retyped since.
pub(crate) fn vcpu_deleted(vmcs: PhysAddr) {
    if REVISION.load(Ordering::Relaxed) != 0 {
        clear(vmcs.as_u64());
    }
}

/// The per-entry host state: CR3 (the entering thread's VSpace), written
/// when it differs from what the current VMCS holds.
fn write_host_per_entry() -> Result<(), &'static str> {
    // SAFETY: reading CR3 has no side effects.
    let cr3 = unsafe { x86::controlregs::cr3() };
    if WRITTEN_HOST_CR3.load(Ordering::Relaxed) != cr3 {
        write(field::HOST_CR3, cr3)?;
        WRITTEN_HOST_CR3.store(cr3, Ordering::Relaxed);
    }
    Ok(())
}

/// Arms the VMX-preemption timer for the time left until `bound` (the
/// kernel's timer deadline, the running thread's budget or slice end, or
/// VMEnter's deadline if that comes first: `timer::arm_for_guest`), so
/// that the run ends by then even if no interrupt could end it; without a
/// bound, as far off as the timer reaches.
fn write_preemption_timer(bound: Option<u64>) -> Result<(), &'static str> {
    let rate = PREEMPTION_RATE.load(Ordering::Relaxed);
    if rate == u64::MAX {
        return Ok(());
    }
    let ticks = bound.map_or(u64::MAX, |deadline| deadline.saturating_sub(crate::arch::cpu::read_tsc()));
    let value = u32::try_from(ticks >> rate).unwrap_or(u32::MAX);
    write(field::PREEMPTION_TIMER, u64::from(value))
}

/// Invalidates the guest-physical and combined translations of the EPT
/// context `eptp` (INVEPT), so that nothing the kernel unmapped since the
/// guest last ran survives.
fn flush_ept(eptp: u64) {
    let descriptor: [u64; 2] = [eptp, 0];
    let kind = INVEPT_TYPE.load(Ordering::Relaxed);
    // SAFETY: in VMX root operation with INVEPT of this type supported
    // (`enable` checked); INVEPT only drops cached translations.
    unsafe { asm!("invept {}, [{}]", in(reg) kind, in(reg) &raw const descriptor, options(nostack)) };
}

/// A segment field of `state`.
fn part(state: &GuestState, register: Segment, part: SegmentPart) -> u64 {
    state.get(GuestField::segment(register, part))
}

/// The VMCS access rights of the allowlist's packed attributes: bits
/// 0..8 as they are, AVL, L, D/B and G moved to bits 12..16, and the
/// unusable bit (16) for a segment that is not present.
const fn access_rights(attributes: u64) -> u64 {
    let unusable = if attributes & 0x80 == 0 { 1 << 16 } else { 0 };
    (attributes & 0xff) | (attributes & 0xf00) << 4 | unusable
}

/// The packed attributes of VMCS access rights (an unusable segment reads
/// as not present).
const fn attributes_of(rights: u64) -> u64 {
    let packed = (rights & 0xff) | (rights >> 4) & 0xf00;
    if rights & (1 << 16) != 0 { packed & !0x80 } else { packed }
}

/// Writes the fields of `state` that `dirty` marks into the current VMCS.
/// CR0 and CR4 get VMX's fixed bits, which the masks and read shadows
/// hide from the guest.
fn load_state(state: &GuestState, dirty: u64) -> Result<(), &'static str> {
    let is_dirty = |field: GuestField| dirty & (1 << field.number()) != 0;
    // One test passes over the segments' fields, which the VMM rarely
    // writes, at most entries.
    if dirty & SEGMENT_FIELDS != 0 {
        for (index, register) in (0_u64..).zip(Segment::ALL) {
            let parts = [
                (SegmentPart::Selector, field::GUEST_ES),
                (SegmentPart::Base, field::GUEST_ES_BASE),
                (SegmentPart::Limit, field::GUEST_ES_LIMIT),
                (SegmentPart::Attributes, field::GUEST_ES_RIGHTS),
            ];
            for (piece, first) in parts {
                if is_dirty(GuestField::segment(register, piece)) {
                    let value = part(state, register, piece);
                    let value = if piece == SegmentPart::Attributes { access_rights(value) } else { value };
                    write(first + 2 * index, value)?;
                }
            }
        }
    }
    let cr0_fixed = CR0_FIXED.load(Ordering::Relaxed);
    let cr4_fixed = CR4_FIXED.load(Ordering::Relaxed);
    // The dirty simple fields, one bit at a time (RIP alone at most exits).
    let mut simple = dirty & SIMPLE_DIRTY;
    while simple != 0 {
        let number = simple.trailing_zeros() as usize;
        simple &= simple - 1;
        write(SIMPLE_ENCODINGS[number], state.0[number])?;
    }
    if is_dirty(GuestField::EFER) {
        // The entry's IA-32e mode guest control must match the EFER.LMA it
        // loads (an exit stores the guest's LMA back into the control).
        let ia32e = if state.get(GuestField::EFER) & EFER_LMA != 0 { ENTRY_IA32E_GUEST } else { 0 };
        write(field::ENTRY_CONTROLS, CONTROLS_ENTRY.load(Ordering::Relaxed) | u64::from(ia32e))?;
    }
    if is_dirty(GuestField::INTERRUPTIBILITY) {
        write(field::GUEST_INTERRUPTIBILITY, state.get(GuestField::INTERRUPTIBILITY) & 0b11)?;
    }
    single_step_in_shadow(state)?;
    if is_dirty(GuestField::CR0) {
        write(field::GUEST_CR0, state.get(GuestField::CR0) | cr0_fixed)?;
        write(field::CR0_SHADOW, state.get(GuestField::CR0))?;
    }
    if is_dirty(GuestField::CR4) {
        write(field::GUEST_CR4, state.get(GuestField::CR4) | cr4_fixed)?;
        write(field::CR4_SHADOW, state.get(GuestField::CR4))?;
    }
    if is_dirty(GuestField::PENDING_EVENT) {
        match Event::from_word(state.get(GuestField::PENDING_EVENT)).ok().flatten() {
            Some(event) => {
                let (info, error) = event.to_vtx();
                write(field::ENTRY_INTERRUPTION, u64::from(info))?;
                write(field::ENTRY_ERROR_CODE, u64::from(error))?;
                // A software interrupt is re-executed as `int n`: two bytes.
                write(field::ENTRY_INSTRUCTION_LENGTH, 2)?;
            }
            None => write(field::ENTRY_INTERRUPTION, 0)?,
        }
    }
    Ok(())
}

/// The dirty bits of the segment registers' fields (four per register,
/// from ES's selector on).
const SEGMENT_FIELDS: u64 = ((1 << (4 * Segment::ALL.len())) - 1) << GuestField::FIRST_SEGMENT_FIELD;
static_assertions::const_assert_eq!(
    GuestField::segment(Segment::Es, SegmentPart::Selector).number(),
    GuestField::FIRST_SEGMENT_FIELD
);

/// VM entry's check of a single step (SDM Vol. 3C, "Checks on Guest
/// Non-Register State"): in an STI or MOV SS shadow or halted, the
/// pending debug exceptions' BS bit must be RFLAGS.TF (BTF is never
/// set here). A debugger's step (TF set by the VMM) may begin in a
/// shadow, and an exit in one may leave BS set: BS follows TF there.
fn single_step_in_shadow(state: &GuestState) -> Result<(), &'static str> {
    const BS: u64 = 1 << 14;
    const TF: u64 = 1 << 8;
    let shadow = state.get(GuestField::INTERRUPTIBILITY) & 0b11 != 0 || state.get(GuestField::ACTIVITY) == 1;
    if !shadow {
        return Ok(());
    }
    let pending = read(field::GUEST_PENDING_DEBUG);
    let wanted = if state.get(GuestField::RFLAGS) & TF != 0 { pending | BS } else { pending & !BS };
    if wanted != pending {
        write(field::GUEST_PENDING_DEBUG, wanted)?;
    }
    Ok(())
}

/// The fields whose VMCS field holds them as they are.
const SIMPLE_FIELDS: [(GuestField, u64); 15] = [
    (GuestField::RIP, field::GUEST_RIP),
    (GuestField::RSP, field::GUEST_RSP),
    (GuestField::RFLAGS, field::GUEST_RFLAGS),
    (GuestField::CR3, field::GUEST_CR3),
    (GuestField::EFER, field::GUEST_EFER),
    (GuestField::DR7, field::GUEST_DR7),
    (GuestField::ACTIVITY, field::GUEST_ACTIVITY),
    (GuestField::GDTR_BASE, field::GUEST_GDTR_BASE),
    (GuestField::GDTR_LIMIT, field::GUEST_GDTR_LIMIT),
    (GuestField::IDTR_BASE, field::GUEST_IDTR_BASE),
    (GuestField::IDTR_LIMIT, field::GUEST_IDTR_LIMIT),
    (GuestField::SYSENTER_CS, field::GUEST_SYSENTER_CS),
    (GuestField::SYSENTER_ESP, field::GUEST_SYSENTER_ESP),
    (GuestField::SYSENTER_EIP, field::GUEST_SYSENTER_EIP),
    (GuestField::PAT, field::GUEST_PAT),
];

/// The VMCS encoding of each field of [`SIMPLE_FIELDS`] and of the TSC
/// offset, by field number (0 for the others).
const SIMPLE_ENCODINGS: [u64; GuestField::COUNT] = {
    let mut encodings = [0; GuestField::COUNT];
    let mut index = 0;
    while index < SIMPLE_FIELDS.len() {
        let (guest_field, encoding) = SIMPLE_FIELDS[index];
        encodings[guest_field.number() as usize] = encoding;
        index += 1;
    }
    encodings[GuestField::TSC_OFFSET.number() as usize] = field::TSC_OFFSET;
    // #DB and #BP at most (the core checked): the bitmap's bits are the
    // field's.
    encodings[GuestField::EXCEPTION_INTERCEPTS.number() as usize] = field::EXCEPTION_BITMAP;
    encodings
};
/// The dirty bits [`SIMPLE_ENCODINGS`] covers.
const SIMPLE_DIRTY: u64 = {
    let mut bits = 0;
    let mut number = 0;
    while number < GuestField::COUNT {
        if SIMPLE_ENCODINGS[number] != 0 {
            bits |= 1 << number;
        }
        number += 1;
    }
    bits
};
static_assertions::const_assert_eq!(SIMPLE_DIRTY.count_ones() as usize, SIMPLE_FIELDS.len() + 2);

/// Reads the lazy fields (`kernel_core::vcpu::LAZY_FIELDS`) of the
/// current VMCS into `state`: the segment registers, GDTR and IDTR, DR7,
/// the activity state. KERNEL_GS_BASE and CR2, lazy too, are in no VMCS
/// field: the world switch stored them into the record at the exit.
fn store_lazy(state: &mut GuestState) {
    let mut set = |field: GuestField, value: u64| state.0[usize::from(field.number())] = value;
    for (index, register) in (0_u64..).zip(Segment::ALL) {
        set(GuestField::segment(register, SegmentPart::Selector), read(field::GUEST_ES + 2 * index));
        set(GuestField::segment(register, SegmentPart::Base), read(field::GUEST_ES_BASE + 2 * index));
        set(GuestField::segment(register, SegmentPart::Limit), read(field::GUEST_ES_LIMIT + 2 * index));
        let rights = read(field::GUEST_ES_RIGHTS + 2 * index);
        set(GuestField::segment(register, SegmentPart::Attributes), attributes_of(rights));
    }
    for (guest_field, encoding) in SIMPLE_FIELDS {
        if LAZY_FIELDS & (1 << guest_field.number()) != 0 {
            set(guest_field, read(encoding));
        }
    }
}

/// Reads the eager fields (those a VMEnter reply carries, CS's base and
/// attributes among them) of the current VMCS into `state` after an exit. CR0 and CR4 are what the guest sees
/// (its own bits, the fixed ones from the read shadows); an event whose
/// delivery the exit interrupted (IDT-vectoring information) becomes the
/// pending event again.
fn store_eager(state: &mut GuestState) {
    let mut set = |field: GuestField, value: u64| state.0[usize::from(field.number())] = value;
    let cr0_fixed = CR0_FIXED.load(Ordering::Relaxed);
    let cr4_fixed = CR4_FIXED.load(Ordering::Relaxed);
    set(GuestField::CR0, read(field::GUEST_CR0) & !cr0_fixed | read(field::CR0_SHADOW) & cr0_fixed);
    set(GuestField::CR4, read(field::GUEST_CR4) & !cr4_fixed | read(field::CR4_SHADOW) & cr4_fixed);
    for (guest_field, encoding) in SIMPLE_FIELDS {
        if EAGER_FIELDS & (1 << guest_field.number()) != 0 {
            set(guest_field, read(encoding));
        }
    }
    set(GuestField::INTERRUPTIBILITY, read(field::GUEST_INTERRUPTIBILITY) & 0b11);
    let cs = Segment::Cs as u64;
    set(GuestField::segment(Segment::Cs, SegmentPart::Base), read(field::GUEST_ES_BASE + 2 * cs));
    set(
        GuestField::segment(Segment::Cs, SegmentPart::Attributes),
        attributes_of(read(field::GUEST_ES_RIGHTS + 2 * cs)),
    );
    let vectoring = read(field::VECTORING_INFO);
    let word = (vectoring & 0x8000_0fff) | read(field::VECTORING_ERROR) << 32;
    let pending = if vectoring & (1 << 31) != 0 { Event::from_word(word).ok().flatten() } else { None };
    set(GuestField::PENDING_EVENT, pending.map_or(0, Event::to_word));
}

/// Whether the guest of `state` can use its SYSCALL MSRs without an
/// exit: with EFER.SCE (SYSCALL) or EFER.LME (SWAPGS needs 64-bit mode,
/// which needs LME). The guest cannot change either bit without an exit
/// (WRMSR of EFER exits), so a guest with neither runs with the host's
/// values, which it can neither use nor read.
fn uses_syscall_msrs(state: &GuestState) -> bool {
    state.get(GuestField::EFER) & (EFER_SCE | EFER_LME) != 0
}

/// Puts the guest's [`SYSCALL_MSRS`] into the CPU for an entry, each only
/// where it differs from the host's (which the CPU holds).
fn load_guest_syscall_msrs(state: &GuestState) {
    for (host, (guest_field, number)) in HOST_SYSCALL_MSRS.iter().zip(SYSCALL_MSRS) {
        let value = state.get(guest_field);
        if value != host.load(Ordering::Relaxed) {
            // SAFETY: the kernel itself never executes SYSCALL or SWAPGS,
            // and ring 3 cannot run before `restore_host_syscall_msrs`
            // (called right after the exit, with interrupts off); the value
            // passed WriteState's check, so WRMSR takes it.
            unsafe { x86::msr::wrmsr(number, value) };
        }
    }
}

/// After an exit: stores the guest's KERNEL_GS_BASE (its SWAPGS may have
/// changed it) into `state`, and puts the host's [`SYSCALL_MSRS`] back
/// where the guest's differ.
fn restore_host_syscall_msrs(state: &mut GuestState) {
    state.0[usize::from(GuestField::KERNEL_GS_BASE.number())] = read_msr(msr::KERNEL_GS_BASE);
    for (host, (guest_field, number)) in HOST_SYSCALL_MSRS.iter().zip(SYSCALL_MSRS) {
        let value = host.load(Ordering::Relaxed);
        if state.get(guest_field) != value {
            // SAFETY: the host's own value, read from this MSR when the
            // VMCS was set up.
            unsafe { x86::msr::wrmsr(number, value) };
        }
    }
}

/// Runs one entry of the current VMCS and reads the exit; the guest's
/// CR2 goes in from `cr2` and comes back there.
fn enter(registers: &mut GuestRegisters, launched: bool, cr2: &mut u64) -> Result<Exit, &'static str> {
    // SAFETY: in VMX root operation with the VMCS current and its
    // controls, host state and guest state written: an exit lands back in
    // the world switch with the kernel's stack, tables and segments. The
    // guest's CR2 only matters to the guest: the kernel's page-fault
    // handler reads CR2 only after a fault that set it.
    let outcome = unsafe { vtx_world_switch(registers, u64::from(launched), cr2) };
    match outcome {
        0 => {}
        1 => return Err("VMLAUNCH or VMRESUME failed: no current VMCS"),
        _ => return Err("VMLAUNCH or VMRESUME refused the controls or the host state"),
    }
    Ok(virt::decode_vtx(VtxExitFields {
        reason: read(field::EXIT_REASON),
        qualification: read(field::QUALIFICATION),
        guest_physical: read(field::GUEST_PHYSICAL),
        instruction_length: read(field::EXIT_INSTRUCTION_LENGTH),
        interruption_info: read(field::EXIT_INTERRUPTION),
        interruption_error: read(field::EXIT_INTERRUPTION_ERROR),
    }))
}

/// `record.hardware` of a VCpu whose VMCS is set up but was never
/// launched, and of one that was.
const INITIALISED: u64 = 1;
const LAUNCHED: u64 = 2;

/// Runs the guest of `entry` for VMEnter until an exit the VMM handles
/// (`kernel_core::platform::Platform::run_guest`): the VMCS is the VCpu's
/// first page, set up on its first run; the dirty fields are written
/// before each entry, every field read back after the exit; the EPT
/// context is flushed at each entry (correct whatever the kernel
/// unmapped since; tagging and targeted flushes are a later step); a host
/// interrupt or the VMX-preemption timer (armed for `bound`) ends the run
/// with `ExitKind::HostInterrupt`, which the caller (`platform::Machine`)
/// turns into a deadline's exit or a restart; an interrupt-window request
/// sets interrupt-window exiting for this run only. The guest's STAR,
/// LSTAR, CSTAR, SFMASK and KERNEL_GS_BASE, which no VMCS field holds,
/// are swapped with the host's around the world switch when the guest
/// could use them (EFER.SCE or LME), each only where it differs from the
/// host's; its CR2 is moved by the world switch itself. A VMX instruction
/// failing here is a kernel bug (the VMCS is the kernel's alone), so it
/// panics.
pub(crate) fn run_guest(entry: &GuestEntry, record: &mut VCpu, bound: Option<u64>) -> Exit {
    match run_checked(entry, record, bound) {
        Ok(exit) => exit,
        Err(why) => panic!("vtx: {why} (VM-instruction error {})", read(field::INSTRUCTION_ERROR)),
    }
}

fn run_checked(entry: &GuestEntry, record: &mut VCpu, bound: Option<u64>) -> Result<Exit, &'static str> {
    let vmcs = entry.vcpu.as_u64();
    if REVISION.load(Ordering::Relaxed) == 0 {
        return Err("VMEnter reached the vtx backend before it was enabled");
    }
    if record.hardware == 0 {
        initialise(vmcs)?;
        record.hardware = INITIALISED;
        record.dirty = kernel_core::vcpu::ALL_DIRTY;
    }
    make_current(vmcs)?;
    write_host_per_entry()?;
    write_preemption_timer(bound)?;
    let eptp = virt::ept_pointer(entry.root.as_u64());
    if WRITTEN_EPT_POINTER.load(Ordering::Relaxed) != eptp {
        write(field::EPT_POINTER, eptp)?;
        WRITTEN_EPT_POINTER.store(eptp, Ordering::Relaxed);
    }
    load_state(&record.state, record.dirty)?;
    record.dirty = 0;
    flush_ept(eptp);
    let window = record.controls.interrupt_window;
    let controls = CONTROLS_LOW.load(Ordering::Relaxed) >> 32;
    if window {
        write(field::PROC_CONTROLS, controls | u64::from(PROC_INTERRUPT_WINDOW))?;
    }
    let swap = uses_syscall_msrs(&record.state);
    if swap {
        load_guest_syscall_msrs(&record.state);
    }
    let cr2 = &mut record.state.0[usize::from(GuestField::CR2.number())];
    let exit = enter(&mut record.registers, record.hardware == LAUNCHED, cr2);
    // The host's SYSCALL MSRs are back before anything could return to
    // ring 3, whatever the entry's outcome.
    if swap {
        restore_host_syscall_msrs(&mut record.state);
    }
    if window {
        // For this run only (whatever the entry's outcome).
        write(field::PROC_CONTROLS, controls)?;
    }
    let exit = exit?;
    record.hardware = LAUNCHED;
    store_eager(&mut record.state);
    record.stale = LAZY_FIELDS;
    // The entry consumed the event; an interrupted delivery is pending
    // again in the state read above, and goes in at the next entry.
    write(field::ENTRY_INTERRUPTION, 0)?;
    if record.state.get(GuestField::PENDING_EVENT) != 0 {
        record.dirty |= 1 << GuestField::PENDING_EVENT.number();
    }
    Ok(exit)
}

/// The boot self-test of the `vtx` backend, in the VMX operation
/// [`enable`] entered: builds the test guest's memory with EPT, a VMCS
/// for a real-mode unrestricted guest, and runs the guest exit by exit,
/// decoding each exit with `kernel_core::virt::decode_vtx`; then clears
/// the VMCS and gives every frame back.
pub(crate) fn run_test_guest(allocator: &mut FrameAllocator, program: Program) {
    if REVISION.load(Ordering::Relaxed) == 0 {
        println!("vtx: this CPU has no VT-x: no guest runs");
        return;
    }
    let free_before = free_frames(allocator);
    let mut frames = Frames::new();
    let mut vmcs = 0;
    match run_with_frames(allocator, &mut frames, &mut vmcs, program) {
        Ok(exits) => println!("vtx guest: done after {exits} exits"),
        Err(why) => {
            println!("vtx guest: failed: {why} (VM-instruction error {})", read(field::INSTRUCTION_ERROR))
        }
    }
    if vmcs != 0 {
        clear(vmcs);
    }
    frames.give_back(allocator);
    println!("vtx guest: frames before {free_before}, after {}", free_frames(allocator));
}

fn run_with_frames(
    allocator: &mut FrameAllocator,
    frames: &mut Frames,
    vmcs_out: &mut u64,
    program: Program,
) -> Result<u32, &'static str> {
    let (vmcs, _) = frames.zeroed(allocator)?;
    let ept_root = build_memory(allocator, frames, GuestFormat::Ept, program)?;
    initialise(vmcs)?;
    *vmcs_out = vmcs;
    write_host_per_entry()?;
    write_preemption_timer(crate::arch::timer::armed_deadline())?;
    let eptp = virt::ept_pointer(ept_root);
    write(field::EPT_POINTER, eptp)?;
    flush_ept(eptp);
    // A real-mode guest at GUEST_ENTRY: every segment at base 0 with a
    // 64 KiB limit, CR0 with only ET.
    let mut state = GuestState::RESET;
    let mut set = |field: GuestField, value: u64| state.0[usize::from(field.number())] = value;
    set(GuestField::segment(Segment::Cs, SegmentPart::Selector), 0);
    set(GuestField::segment(Segment::Cs, SegmentPart::Base), 0);
    set(GuestField::CR0, 0x10);
    set(GuestField::RIP, GUEST_ENTRY);
    load_state(&state, kernel_core::vcpu::ALL_DIRTY)?;

    let mut registers: GuestRegisters = [0; 16];
    let mut cr2 = 0;
    let started = crate::arch::cpu::read_tsc();
    for exits in 1..=program.exits() + SPARE_EXITS {
        let exit = enter(&mut registers, exits > 1, &mut cr2)?;
        let rip = read(field::GUEST_RIP);
        // Encoding order: RAX, RCX, RDX, RBX.
        let [rax, rcx, rdx, rbx, ..] = &mut registers;
        let accumulators = Accumulators { rax, rbx, rcx, rdx };
        match handle("vtx guest", program, &exit, rip, accumulators)? {
            Next::Resume(next) => write(field::GUEST_RIP, next)?,
            Next::Halted => {
                report_cost("vtx guest", program, exits, started);
                return Ok(exits);
            }
        }
    }
    Err("the guest did not halt")
}
