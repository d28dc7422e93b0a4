//! The `svm` backend (AMD SVM with nested paging), first step: enabling
//! SVM, the VMCB's layout, and the world switch, run by the boot
//! self-test [`run_test_guest`] (`inject=guest-svm`) on a small real-mode
//! guest. VCpu objects and VMEnter build on these pieces
//! (`docs/VIRTUALISATION.md`); `docs/virtualisation-hardware.md` has the
//! numbers used here (AMD64 APM Vol. 2, chapter 15 and appendix B).

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::virt::{self, GuestFormat, SvmExitFields};
use static_assertions::const_assert_eq;

use crate::arch::guest::{
    Accumulators, Frames, GUEST_ENTRY, GuestRegisters, Next, Program, SPARE_EXITS, build_memory, free_frames, handle,
    report_cost,
};
use crate::arch::guest::{load_guest_registers, store_guest_registers};

/// EFER.SVME: SVM instructions enabled.
const EFER_SVME: u64 = 1 << 12;
/// The MSR holding the host save area's physical address.
const VM_HSAVE_PA: u32 = 0xc001_0117;

/// A segment register in the VMCB's state save area.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct Segment {
    /// The selector.
    pub(crate) selector: u16,
    /// The attributes in the packed 12-bit form (descriptor bits 40..48
    /// and 52..56).
    pub(crate) attributes: u16,
    /// The limit.
    pub(crate) limit: u32,
    /// The base.
    pub(crate) base: u64,
}
const_assert_eq!(size_of::<Segment>(), 16);

/// A VMCB: the control area (intercepts, exit information, nested
/// paging) and the guest's state save area. One 4 KiB page.
#[repr(C, align(4096))]
pub(crate) struct Vmcb {
    intercept_cr: u32,
    intercept_dr: u32,
    intercept_exceptions: u32,
    intercept_misc1: u32,
    intercept_misc2: u32,
    reserved0: [u8; 0x40 - 0x14],
    iopm_base: u64,
    msrpm_base: u64,
    tsc_offset: u64,
    guest_asid: u32,
    tlb_control: u32,
    int_ctl: u64,
    int_shadow: u64,
    exit_code: u64,
    exit_info1: u64,
    exit_info2: u64,
    exit_int_info: u64,
    np_enable: u64,
    reserved1: [u8; 0xa8 - 0x98],
    event_inj: u64,
    n_cr3: u64,
    lbr_virt: u64,
    clean_bits: u64,
    next_rip: u64,
    reserved2: [u8; 0x400 - 0xd0],
    es: Segment,
    cs: Segment,
    ss: Segment,
    ds: Segment,
    fs: Segment,
    gs: Segment,
    gdtr: Segment,
    ldtr: Segment,
    idtr: Segment,
    tr: Segment,
    reserved3: [u8; 0x4cb - 0x4a0],
    cpl: u8,
    reserved4: [u8; 4],
    efer: u64,
    reserved5: [u8; 0x548 - 0x4d8],
    cr4: u64,
    cr3: u64,
    cr0: u64,
    dr7: u64,
    dr6: u64,
    rflags: u64,
    rip: u64,
    reserved6: [u8; 0x5d8 - 0x580],
    rsp: u64,
    reserved7: [u8; 0x5f8 - 0x5e0],
    rax: u64,
    star: u64,
    lstar: u64,
    cstar: u64,
    sfmask: u64,
    kernel_gs_base: u64,
    sysenter_cs: u64,
    sysenter_esp: u64,
    sysenter_eip: u64,
    cr2: u64,
    reserved8: [u8; 0x668 - 0x648],
    g_pat: u64,
    reserved9: [u8; 0x1000 - 0x670],
}
const_assert_eq!(size_of::<Vmcb>(), 0x1000);
const_assert_eq!(offset_of!(Vmcb, intercept_misc1), 0x00c);
const_assert_eq!(offset_of!(Vmcb, iopm_base), 0x040);
const_assert_eq!(offset_of!(Vmcb, guest_asid), 0x058);
const_assert_eq!(offset_of!(Vmcb, int_ctl), 0x060);
const_assert_eq!(offset_of!(Vmcb, exit_code), 0x070);
const_assert_eq!(offset_of!(Vmcb, np_enable), 0x090);
const_assert_eq!(offset_of!(Vmcb, event_inj), 0x0a8);
const_assert_eq!(offset_of!(Vmcb, n_cr3), 0x0b0);
const_assert_eq!(offset_of!(Vmcb, next_rip), 0x0c8);
const_assert_eq!(offset_of!(Vmcb, es), 0x400);
const_assert_eq!(offset_of!(Vmcb, tr), 0x490);
const_assert_eq!(offset_of!(Vmcb, cpl), 0x4cb);
const_assert_eq!(offset_of!(Vmcb, efer), 0x4d0);
const_assert_eq!(offset_of!(Vmcb, cr4), 0x548);
const_assert_eq!(offset_of!(Vmcb, rip), 0x578);
const_assert_eq!(offset_of!(Vmcb, rsp), 0x5d8);
const_assert_eq!(offset_of!(Vmcb, rax), 0x5f8);
const_assert_eq!(offset_of!(Vmcb, cr2), 0x640);
const_assert_eq!(offset_of!(Vmcb, g_pat), 0x668);

/// Intercept word 1 (VMCB 0x00c) bits.
mod misc1 {
    /// A physical interrupt.
    pub(super) const INTR: u32 = 1 << 0;
    /// CPUID.
    pub(super) const CPUID: u32 = 1 << 18;
    /// HLT.
    pub(super) const HLT: u32 = 1 << 24;
    /// I/O instructions, through the I/O permission map.
    pub(super) const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR and WRMSR, through the MSR permission map.
    pub(super) const MSR_PROT: u32 = 1 << 28;
    /// Shutdown (a triple fault).
    pub(super) const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept word 2 (VMCB 0x010) bits.
mod misc2 {
    /// VMRUN: required, or VMRUN refuses the VMCB.
    pub(super) const VMRUN: u32 = 1 << 0;
    /// VMMCALL.
    pub(super) const VMMCALL: u32 = 1 << 1;
}

/// VMCB `int_ctl`: physical interrupts are gated by the host's IF, not
/// the guest's.
const V_INTR_MASKING: u64 = 1 << 24;
/// The power-on PAT, for the guest.
const RESET_PAT: u64 = 0x0007_0406_0007_0406;

// svm_world_switch(vmcb: rdi, host_area: rsi, registers: rdx), System V.
// Saves the host's callee-saved registers, and with VMSAVE the host's FS,
// GS, TR, LDTR and system-call MSRs into `host_area`; loads the guest's
// general registers and, with VMLOAD, its FS, GS, TR, LDTR; runs the
// guest with VMRUN under CLGI; then VMSAVE (guest), stores the guest's
// registers, VMLOAD (host) before anything could use TR, and STGI. The
// kernel runs with IF clear, so no interrupt arrives before it returns.
global_asm!(
    ".global svm_world_switch",
    "svm_world_switch:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rsi",
    "push rdx",
    "push rdi",
    "clgi",
    "mov rax, rsi",
    "vmsave rax",
    "mov rax, rdx",
    load_guest_registers!(),
    "mov rax, [rsp]",
    "vmload rax",
    "vmrun rax",
    "vmsave rax",
    "mov rax, [rsp + 8]",
    store_guest_registers!(),
    "mov rax, [rsp + 16]",
    "vmload rax",
    "stgi",
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
    /// Runs the guest of the VMCB at physical address `vmcb` until it
    /// exits (see the assembly above).
    fn svm_world_switch(vmcb: u64, host_area: u64, registers: *mut GuestRegisters);
}

/// Whether the CPU has SVM with nested paging.
fn available() -> bool {
    let cpu = crate::arch::cpu::summary();
    cpu.svm && cpu.npt
}

/// The boot self-test of the `svm` backend: enables SVM, builds the test
/// guest's memory with nested page tables, a VMCB for a real-mode guest
/// with an all-ones I/O permission map, and runs the guest exit by exit,
/// decoding each exit with `kernel_core::virt::decode_svm`; then turns
/// SVM off and gives every frame back.
pub(crate) fn run_test_guest(allocator: &mut FrameAllocator, program: Program) {
    if !available() {
        println!("svm: this CPU has no SVM with nested paging: no guest runs");
        return;
    }
    let free_before = free_frames(allocator);
    let mut frames = Frames::new();
    match run_with_frames(allocator, &mut frames, program) {
        Ok(exits) => println!("svm guest: done after {exits} exits"),
        Err(why) => println!("svm guest: failed: {why}"),
    }
    disable();
    frames.give_back(allocator);
    println!("svm guest: frames before {free_before}, after {}", free_frames(allocator));
}

/// Turns SVM off again and forgets the host save area, whose frame goes
/// back to the allocator: no VMRUN can use it afterwards.
fn disable() {
    // SAFETY: reading EFER has no side effects.
    let efer = unsafe { x86::msr::rdmsr(x86::msr::IA32_EFER) };
    if efer & EFER_SVME == 0 {
        return;
    }
    // SAFETY: no guest runs (the world switch has returned), so clearing
    // the host save area's address takes nothing from the CPU in use.
    unsafe { x86::msr::wrmsr(VM_HSAVE_PA, 0) };
    // SAFETY: clearing SVME outside a guest only disables the SVM
    // instructions, which nothing runs any more.
    unsafe { x86::msr::wrmsr(x86::msr::IA32_EFER, efer & !EFER_SVME) };
}

fn run_with_frames(allocator: &mut FrameAllocator, frames: &mut Frames, program: Program) -> Result<u32, &'static str> {
    let (hsave, _) = frames.zeroed(allocator)?;
    let (host_area, _) = frames.zeroed(allocator)?;
    let (vmcb, vmcb_pointer) = frames.zeroed(allocator)?;
    // The I/O permission map (12 KiB) and the MSR permission map (8 KiB):
    // every port and every MSR intercepted, so that no guest access
    // reaches the machine.
    let (iopm, _) = frames.filled(allocator, 3, 0xff)?;
    let (msrpm, _) = frames.filled(allocator, 2, 0xff)?;
    let nested_root = build_memory(allocator, frames, GuestFormat::Npt, program)?;

    // SAFETY: reading EFER, an architectural MSR, has no side effects.
    let efer = unsafe { x86::msr::rdmsr(x86::msr::IA32_EFER) };
    // SAFETY: setting SVME enables the SVM instructions and nothing else;
    // the CPU has SVM (checked by the caller).
    unsafe { x86::msr::wrmsr(x86::msr::IA32_EFER, efer | EFER_SVME) };
    // SAFETY: the host save area is a zeroed page the kernel owns from now
    // on, as the MSR requires; only VMRUN and #VMEXIT use it.
    unsafe { x86::msr::wrmsr(VM_HSAVE_PA, hsave) };
    println!("svm: enabled, host save area at {hsave:#x}");

    // SAFETY: the VMCB's frame is zeroed, page aligned (a frame), ours and
    // inside the physmap; `Vmcb` is plain data of exactly one page, and
    // nothing else refers to it while this reference lives.
    let control = unsafe { &mut *vmcb_pointer.cast::<Vmcb>() };
    control.intercept_misc1 =
        misc1::INTR | misc1::CPUID | misc1::HLT | misc1::IOIO_PROT | misc1::MSR_PROT | misc1::SHUTDOWN;
    control.intercept_misc2 = misc2::VMRUN | misc2::VMMCALL;
    control.iopm_base = iopm;
    control.msrpm_base = msrpm;
    control.guest_asid = 1;
    control.tlb_control = 1;
    control.int_ctl = V_INTR_MASKING;
    control.np_enable = 1;
    control.n_cr3 = nested_root;
    // A real-mode guest: every segment at base 0 with a 64 KiB limit.
    let data = Segment { selector: 0, attributes: 0x093, limit: 0xffff, base: 0 };
    control.cs = Segment { attributes: 0x09b, ..data };
    (control.ds, control.es, control.ss, control.fs, control.gs) = (data, data, data, data, data);
    control.gdtr = Segment { limit: 0xffff, ..Segment::default() };
    control.idtr = Segment { limit: 0xffff, ..Segment::default() };
    control.ldtr = Segment { attributes: 0x082, limit: 0xffff, ..Segment::default() };
    control.tr = Segment { attributes: 0x08b, limit: 0xffff, ..Segment::default() };
    control.cr0 = 0x10;
    control.efer = EFER_SVME;
    control.rflags = 0x2;
    control.rip = GUEST_ENTRY;
    control.dr6 = 0xffff_0ff0;
    control.dr7 = 0x400;
    control.g_pat = RESET_PAT;

    let mut registers = GuestRegisters::default();
    let started = crate::arch::cpu::read_tsc();
    for exits in 1..=program.exits() + SPARE_EXITS {
        // SAFETY: `vmcb` and `host_area` are page-aligned frames the
        // kernel owns, the VMCB describes a guest whose memory is only the
        // page the nested tables map, SVM is enabled and the host save
        // area set; the world switch keeps every register the System V
        // ABI asks a callee to keep.
        unsafe { svm_world_switch(vmcb, host_area, &raw mut registers) };
        control.tlb_control = 0;
        let exit = virt::decode_svm(SvmExitFields {
            code: control.exit_code,
            info1: control.exit_info1,
            info2: control.exit_info2,
            rip: control.rip,
        });
        let accumulators = Accumulators {
            rax: &mut control.rax,
            rbx: &mut registers.rbx,
            rcx: &mut registers.rcx,
            rdx: &mut registers.rdx,
        };
        match handle("svm guest", program, &exit, control.rip, accumulators)? {
            Next::Resume(rip) => control.rip = rip,
            Next::Halted => {
                report_cost("svm guest", program, exits, started);
                return Ok(exits);
            }
        }
    }
    Err("the guest did not halt")
}
