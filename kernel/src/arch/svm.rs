//! The `svm` backend (AMD SVM with nested paging): enabling SVM at boot
//! ([`enable`]), the VMCB's layout, the world switch, running a VCpu's
//! guest for VMEnter ([`run_guest`]), and the boot self-test
//! [`run_test_guest`] (`inject=guest-svm`) on a small real-mode guest
//! (`docs/VIRTUALISATION.md`); `docs/virtualisation-hardware.md` has the
//! numbers used here (AMD64 APM Vol. 2, chapter 15 and appendix B).

use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering};

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::vcpu::{
    ALL_DIRTY, GuestEntry, GuestField, GuestState, HELD_FIELDS, LAZY_FIELDS, Segment as Register, SegmentPart, VCpu,
};
use kernel_core::virt::{self, Event, Exit, ExitKind, GuestFormat, SvmExitFields};
use static_assertions::const_assert_eq;

use crate::arch::guest::{
    Accumulators, Frames, GUEST_ENTRY, GuestRegisters, Next, Program, SPARE_EXITS, build_memory, free_frames, handle,
    register, report_cost,
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
    /// A virtual interrupt about to be taken (V_IRQ): the interrupt
    /// window VMEnter's `INTERRUPT_WINDOW` asks for.
    pub(super) const VINTR: u32 = 1 << 4;
    /// CPUID.
    pub(super) const CPUID: u32 = 1 << 18;
    /// INT n: set with the #BP intercept, because QEMU's TCG raises
    /// INT3's #BP through this intercept, not through the exception's.
    pub(super) const INTN: u32 = 1 << 21;
    /// INVD: a guest's would drop dirty cache lines of host memory.
    pub(super) const INVD: u32 = 1 << 22;
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
    /// VMLOAD: unintercepted, a guest's would load state from a system
    /// physical address (no virtual VMLOAD here), any host memory.
    pub(super) const VMLOAD: u32 = 1 << 2;
    /// VMSAVE: likewise, a store to any host memory.
    pub(super) const VMSAVE: u32 = 1 << 3;
    /// STGI: the guest may not set the host's global interrupt flag.
    pub(super) const STGI: u32 = 1 << 4;
    /// CLGI: nor clear it, which would hold off the host's interrupts.
    pub(super) const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub(super) const SKINIT: u32 = 1 << 6;
    /// XSETBV: XCR0 is not switched between guests and the host.
    pub(super) const XSETBV: u32 = 1 << 13;

    /// Every virtualisation instruction, each answered with #UD by the
    /// VMM, and XSETBV.
    pub(super) const ALL: u32 = VMRUN | VMMCALL | VMLOAD | VMSAVE | STGI | CLGI | SKINIT | XSETBV;
}

/// VMCB `int_ctl`: physical interrupts are gated by the host's IF, not
/// the guest's.
const V_INTR_MASKING: u64 = 1 << 24;
/// VMCB `int_ctl` for an interrupt-window exit: a virtual interrupt
/// pending (V_IRQ, bit 8) that the guest's virtual TPR cannot hold off
/// (V_IGN_TPR, bit 20; V_INTR_PRIO 15, bits 16..20). With the VINTR
/// intercept the guest exits as soon as it could take it (RFLAGS.IF set,
/// no interrupt shadow) and never takes it.
const INTERRUPT_WINDOW_REQUEST: u64 = 1 << 8 | 0xf << 16 | 1 << 20;

// svm_world_switch(vmcb: rdi, host_area: rsi, registers: rdx,
// host_interrupts: rcx), System V. Saves the host's callee-saved
// registers, and with VMSAVE the host's FS, GS, TR, LDTR and system-call
// MSRs into `host_area`; loads the guest's general registers and, with
// VMLOAD, its FS, GS, TR, LDTR; runs the guest with VMRUN under CLGI;
// then VMSAVE (guest), stores the guest's registers, VMLOAD (host) before
// anything could use TR, and STGI. With `host_interrupts` non-zero, IF is
// set around VMRUN: with V_INTR_MASKING the host's IF decides whether a
// physical interrupt ends the guest's run (the INTR intercept), and GIF,
// clear until STGI, holds the interrupt until the kernel takes it on its
// way back to ring 3 (IF is clear again by then). A NOP after the STI
// keeps its interrupt shadow off VMRUN (see there). The boot self-test
// passes 0: no host interrupt is set up to be taken there.
global_asm!(
    ".global svm_world_switch",
    "svm_world_switch:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rcx",
    "push rsi",
    "push rdx",
    "push rdi",
    "clgi",
    "mov rax, rsi",
    "vmsave rax",
    "mov rax, rdx",
    load_guest_registers!(),
    "mov rax, [rsp + 24]",
    "test rax, rax",
    "mov rax, [rsp]",
    "vmload rax",
    "jz 2f",
    "sti",
    // STI's interrupt shadow covers the next instruction: not VMRUN, or
    // QEMU's TCG carries it into the guest (the guest's first STI then
    // gets none, and an interrupt-window exit comes inside its shadow).
    // GIF is clear: the host takes no interrupt here either way.
    "nop",
    "2:",
    "vmrun rax",
    "cli",
    "vmsave rax",
    "mov rax, [rsp + 8]",
    store_guest_registers!(),
    "mov rax, [rsp + 16]",
    "vmload rax",
    "stgi",
    "add rsp, 32",
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
    fn svm_world_switch(vmcb: u64, host_area: u64, registers: *mut GuestRegisters, host_interrupts: u64);
}

/// Whether the CPU has SVM with nested paging.
fn available() -> bool {
    let cpu = crate::arch::cpu::summary();
    cpu.svm && cpu.npt
}

/// The page the world switch saves the host's FS, GS, TR, LDTR and
/// system-call MSRs into (VMSAVE): 0 until [`enable`].
static HOST_AREA: AtomicU64 = AtomicU64::new(0);
/// The I/O permission map (12 KiB, every bit set): every port intercepted.
static IO_PERMISSIONS: AtomicU64 = AtomicU64::new(0);
/// The MSR permission map (8 KiB, every bit set): every MSR intercepted.
static MSR_PERMISSIONS: AtomicU64 = AtomicU64::new(0);

/// `count` contiguous frames from the boot allocator, kept for good, every
/// byte `byte`.
fn kept_frames(allocator: &mut FrameAllocator, count: u64, byte: u8) -> Result<u64, &'static str> {
    let range = allocator.allocate_contiguous(count, 0x1000).ok_or("no frames for SVM")?;
    let start = range.start.as_u64();
    let pointer = crate::arch::paging::physmap_pointer(start, count * 0x1000).ok_or("frames outside the physmap")?;
    let bytes = usize::try_from(count * 0x1000).map_err(|_| "too many frames")?;
    // SAFETY: the frames were just taken from the allocator, which never
    // hands them out again, and lie inside the physical-memory map
    // (checked); bytes need no validity.
    unsafe { core::ptr::write_bytes(pointer, byte, bytes) };
    Ok(start)
}

/// Enables SVM for good, at boot: EFER.SVME, the host save area, the
/// page the world switch saves the host's state into, and the all-ones
/// permission maps every VCpu's VMCB names. `Err` on a CPU without SVM
/// and nested paging, or without the frames.
///
/// # Errors
///
/// Why SVM stays off; the kernel then runs everything but guests.
pub(crate) fn enable(allocator: &mut FrameAllocator) -> Result<(), &'static str> {
    if !available() {
        return Err("this CPU has no SVM with nested paging");
    }
    if HOST_AREA.load(Ordering::Relaxed) != 0 {
        return Ok(());
    }
    let hsave = kept_frames(allocator, 1, 0)?;
    let host_area = kept_frames(allocator, 1, 0)?;
    let iopm = kept_frames(allocator, 3, 0xff)?;
    let msrpm = kept_frames(allocator, 2, 0xff)?;
    // SAFETY: reading EFER, an architectural MSR, has no side effects.
    let efer = unsafe { x86::msr::rdmsr(x86::msr::IA32_EFER) };
    // SAFETY: setting SVME enables the SVM instructions and nothing else;
    // the CPU has SVM (checked above).
    unsafe { x86::msr::wrmsr(x86::msr::IA32_EFER, efer | EFER_SVME) };
    // SAFETY: the host save area is a zeroed page the kernel owns for
    // good, as the MSR requires; only VMRUN and #VMEXIT use it.
    unsafe { x86::msr::wrmsr(VM_HSAVE_PA, hsave) };
    IO_PERMISSIONS.store(iopm, Ordering::Relaxed);
    MSR_PERMISSIONS.store(msrpm, Ordering::Relaxed);
    HOST_AREA.store(host_area, Ordering::Relaxed);
    println!("svm: enabled, host save area at {hsave:#x}");
    Ok(())
}

/// The control area every guest runs with: the intercepts (physical
/// interrupts, CPUID, INVD, HLT, every port and MSR through the all-ones
/// maps, shutdown, every virtualisation instruction, XSETBV), nested
/// paging, the guest's IF for virtual interrupts only, and the power-on
/// DR6 (the guest's PAT is a field of the record, [`load_held`]).
fn set_controls(control: &mut Vmcb) {
    control.intercept_misc1 =
        misc1::INTR | misc1::CPUID | misc1::INVD | misc1::HLT | misc1::IOIO_PROT | misc1::MSR_PROT | misc1::SHUTDOWN;
    control.intercept_misc2 = misc2::ALL;
    control.iopm_base = IO_PERMISSIONS.load(Ordering::Relaxed);
    control.msrpm_base = MSR_PERMISSIONS.load(Ordering::Relaxed);
    control.int_ctl = V_INTR_MASKING;
    control.np_enable = 1;
    control.dr6 = 0xffff_0ff0;
}

/// A segment field of `state`.
fn part(state: &GuestState, register: Register, part: SegmentPart) -> u64 {
    state.get(GuestField::segment(register, part))
}

/// The VMCB segment of `register` in `state`.
#[allow(clippy::cast_possible_truncation, reason = "the fields are checked to their widths (kernel_core::vcpu::check)")]
fn segment_of(state: &GuestState, register: Register) -> Segment {
    Segment {
        selector: part(state, register, SegmentPart::Selector) as u16,
        attributes: part(state, register, SegmentPart::Attributes) as u16,
        limit: part(state, register, SegmentPart::Limit) as u32,
        base: part(state, register, SegmentPart::Base),
    }
}

/// The VMCB's segment registers, in the allowlist's order.
fn segments(control: &mut Vmcb) -> [&mut Segment; 8] {
    let Vmcb { es, cs, ss, ds, fs, gs, ldtr, tr, .. } = control;
    [es, cs, ss, ds, fs, gs, ldtr, tr]
}

/// Loads every allowlisted field of `state` into the VMCB.
fn load_state(control: &mut Vmcb, state: &GuestState) {
    load_lazy(control, state);
    load_held(control, state);
    load_eager(control, state);
}

/// Loads the fields only a VMM changes (`kernel_core::vcpu::HELD_FIELDS`):
/// the TSC offset, the SYSCALL and SYSENTER MSRs (VMLOAD puts them into
/// the CPU before VMRUN, VMSAVE stores them back after the exit), the
/// guest's PAT (G_PAT, which VMRUN loads with nested paging on), and the
/// exception intercepts (#DB and #BP at most, checked by the core; with
/// #BP, INT n too: QEMU's TCG reports an INT3 as an INT n, never as a
/// #BP, and the VMM tells the two apart by the instruction).
fn load_held(control: &mut Vmcb, state: &GuestState) {
    control.tsc_offset = state.get(GuestField::TSC_OFFSET);
    let exceptions = state.get(GuestField::EXCEPTION_INTERCEPTS);
    control.intercept_exceptions = u32::try_from(exceptions).unwrap_or(0);
    if exceptions & 1 << virt::BREAKPOINT_VECTOR != 0 {
        control.intercept_misc1 |= misc1::INTN;
    } else {
        control.intercept_misc1 &= !misc1::INTN;
    }
    control.star = state.get(GuestField::STAR);
    control.lstar = state.get(GuestField::LSTAR);
    control.cstar = state.get(GuestField::CSTAR);
    control.sfmask = state.get(GuestField::SFMASK);
    control.sysenter_cs = state.get(GuestField::SYSENTER_CS);
    control.sysenter_esp = state.get(GuestField::SYSENTER_ESP);
    control.sysenter_eip = state.get(GuestField::SYSENTER_EIP);
    control.g_pat = state.get(GuestField::PAT);
}

/// Loads the fields the backend leaves in the VMCB at an exit
/// (`kernel_core::vcpu::LAZY_FIELDS`): the segment registers, GDTR and
/// IDTR (CPL follows SS's DPL), DR7, KERNEL_GS_BASE (VMLOAD puts it into
/// the CPU) and CR2 (VMRUN loads it).
fn load_lazy(control: &mut Vmcb, state: &GuestState) {
    for (register, segment) in Register::ALL.into_iter().zip(segments(control)) {
        *segment = segment_of(state, register);
    }
    let table = |base: GuestField, limit: GuestField| Segment {
        base: state.get(base),
        limit: u32::try_from(state.get(limit)).unwrap_or(u32::MAX),
        ..Segment::default()
    };
    control.gdtr = table(GuestField::GDTR_BASE, GuestField::GDTR_LIMIT);
    control.idtr = table(GuestField::IDTR_BASE, GuestField::IDTR_LIMIT);
    control.cpl = u8::try_from((part(state, Register::Ss, SegmentPart::Attributes) >> 5) & 3).unwrap_or(0);
    control.dr7 = state.get(GuestField::DR7);
    control.kernel_gs_base = state.get(GuestField::KERNEL_GS_BASE);
    control.cr2 = state.get(GuestField::CR2);
}

/// Loads the fields a VMEnter reply carries (CS's base and attributes
/// among them, not its selector and limit, which may be stale). EFER gets SVME,
/// which VMRUN requires and the guest never sees set (reads of EFER exit).
fn load_eager(control: &mut Vmcb, state: &GuestState) {
    control.cs.base = part(state, Register::Cs, SegmentPart::Base);
    control.cs.attributes = u16::try_from(part(state, Register::Cs, SegmentPart::Attributes) & 0xfff).unwrap_or(0);
    control.rip = state.get(GuestField::RIP);
    control.rsp = state.get(GuestField::RSP);
    control.rflags = state.get(GuestField::RFLAGS);
    control.cr0 = state.get(GuestField::CR0);
    control.cr3 = state.get(GuestField::CR3);
    control.cr4 = state.get(GuestField::CR4);
    control.efer = state.get(GuestField::EFER) | EFER_SVME;
    control.int_shadow = u64::from(state.get(GuestField::INTERRUPTIBILITY) != 0);
    // The event word is EVENTINJ's layout; the core checked it.
    control.event_inj = Event::from_word(state.get(GuestField::PENDING_EVENT)).ok().flatten().map_or(0, Event::to_svm);
}

/// Stores the lazy fields of the VMCB into `state` (the activity field
/// stays as it was: SVM has no halted state, HLT always exits).
/// KERNEL_GS_BASE is the guest's as VMSAVE stored it after the exit, CR2
/// as the exit stored it.
fn store_lazy(control: &mut Vmcb, state: &mut GuestState) {
    let mut set = |field: GuestField, value: u64| state.0[usize::from(field.number())] = value;
    for (register, segment) in Register::ALL.into_iter().zip(segments(control)) {
        set(GuestField::segment(register, SegmentPart::Selector), u64::from(segment.selector));
        set(GuestField::segment(register, SegmentPart::Attributes), u64::from(segment.attributes & 0xfff));
        set(GuestField::segment(register, SegmentPart::Limit), u64::from(segment.limit));
        set(GuestField::segment(register, SegmentPart::Base), segment.base);
    }
    set(GuestField::GDTR_BASE, control.gdtr.base);
    set(GuestField::GDTR_LIMIT, u64::from(control.gdtr.limit & 0xffff));
    set(GuestField::IDTR_BASE, control.idtr.base);
    set(GuestField::IDTR_LIMIT, u64::from(control.idtr.limit & 0xffff));
    set(GuestField::DR7, control.dr7);
    set(GuestField::KERNEL_GS_BASE, control.kernel_gs_base);
    set(GuestField::CR2, control.cr2);
}

/// Stores the eager fields of the VMCB into `state` after an exit. An
/// event whose delivery the exit interrupted (EXITINTINFO, EVENTINJ's
/// layout) becomes the pending event again.
fn store_eager(control: &Vmcb, state: &mut GuestState) {
    let mut set = |field: GuestField, value: u64| state.0[usize::from(field.number())] = value;
    set(GuestField::RIP, control.rip);
    set(GuestField::RSP, control.rsp);
    set(GuestField::RFLAGS, control.rflags);
    set(GuestField::CR0, control.cr0);
    set(GuestField::CR3, control.cr3);
    set(GuestField::CR4, control.cr4);
    set(GuestField::EFER, control.efer & !EFER_SVME);
    set(GuestField::INTERRUPTIBILITY, control.int_shadow & 1);
    set(GuestField::segment(Register::Cs, SegmentPart::Base), control.cs.base);
    set(GuestField::segment(Register::Cs, SegmentPart::Attributes), u64::from(control.cs.attributes & 0xfff));
    let pending = Event::from_word(control.exit_int_info & 0xffff_ffff_8000_0fff).ok().flatten();
    set(GuestField::PENDING_EVENT, pending.map_or(0, Event::to_word));
}

/// Runs `action` on the VMCB in the first page of the VCpu at `vcpu`.
fn with_vmcb<R>(vcpu: u64, action: impl FnOnce(&mut Vmcb) -> R) -> R {
    let Some(pointer) = crate::arch::paging::physmap_pointer(vcpu, 0x1000) else {
        panic!("VCpu at {vcpu:#x} lies outside the physical-memory map");
    };
    // SAFETY: a VCpu's first page is the kernel's alone (no invocation
    // reaches it, `kernel_core::vcpu`), zeroed when the VCpu was made,
    // page aligned and inside the physmap (checked); `Vmcb` is plain data
    // of one page. The reference lives only for `action`, and the callers
    // (`run_guest`, `sync_guest_state`) run while the core hands them the
    // VCpu's record mutably, which serialises them.
    action(unsafe { &mut *pointer.cast::<Vmcb>() })
}

/// Copies the lazy fields of the VCpu's VMCB into its record
/// (`kernel_core::platform::Platform::sync_guest_state`).
pub(crate) fn sync_guest_state(vcpu: u64, record: &mut VCpu) {
    if record.hardware != 0 {
        with_vmcb(vcpu, |control| store_lazy(control, &mut record.state));
    }
    record.stale = 0;
}

/// Runs the guest of `entry` for VMEnter until an exit the VMM handles
/// (`kernel_core::platform::Platform::run_guest`): the VMCB is the VCpu's
/// first page, set up on its first run. Before each run the record's
/// eager fields (`kernel_core::vcpu::EAGER_FIELDS`) are loaded, the held
/// ones (`HELD_FIELDS`) when a VMM wrote one, and the lazy ones likewise
/// (the core fetched the stale ones before such a write, so the record
/// holds them all); after it the eager ones are stored and the lazy ones
/// left in the VMCB, marked stale. The VMCB's clean bits stay 0: VMRUN
/// reloads every field each time, so no write here needs announcing. A host
/// interrupt ends the run with `ExitKind::HostInterrupt`, which the
/// caller (`platform::Machine`) turns into a deadline's exit or a restart.
/// An interrupt-window request sets V_IRQ and the VINTR intercept for this
/// run only.
/// Every guest runs with hardware ASID 1 and a flush of the whole TLB at
/// each VMRUN: correct whatever the kernel unmapped since, at the cost of
/// refilling the guest's TLB (ASID tagging is a later step).
pub(crate) fn run_guest(entry: &GuestEntry, record: &mut VCpu) -> Exit {
    let host_area = HOST_AREA.load(Ordering::Relaxed);
    let vmcb = entry.vcpu.as_u64();
    assert!(host_area != 0, "VMEnter reached the svm backend before it was enabled");
    with_vmcb(vmcb, |control| run_with_vmcb(entry, record, control, host_area))
}

/// [`run_guest`] with the VCpu's VMCB in hand.
fn run_with_vmcb(entry: &GuestEntry, record: &mut VCpu, control: &mut Vmcb, host_area: u64) -> Exit {
    let vmcb = entry.vcpu.as_u64();
    if record.hardware == 0 {
        set_controls(control);
        record.hardware = 1;
        record.dirty = ALL_DIRTY;
    }
    control.guest_asid = 1;
    control.tlb_control = 1;
    control.n_cr3 = entry.root.as_u64();
    if record.dirty & LAZY_FIELDS != 0 {
        debug_assert!(record.stale == 0, "a lazy field was written while others were stale");
        load_lazy(control, &record.state);
    }
    if record.dirty & HELD_FIELDS != 0 {
        load_held(control, &record.state);
    }
    load_eager(control, &record.state);
    record.dirty = 0;
    if record.controls.interrupt_window {
        control.int_ctl |= INTERRUPT_WINDOW_REQUEST;
        control.intercept_misc1 |= misc1::VINTR;
    }
    control.rax = record.registers[register::RAX];
    let dr6 = control.dr6;
    // SAFETY: the VMCB is the VCpu's page, set up above with every
    // intercept the kernel needs, the permission maps and a nested root
    // the core checked is a live GuestSpace; SVM is enabled and the host
    // areas set (asserted); the world switch keeps every register the
    // System V ABI asks a callee to keep, and writes only the record's
    // registers, which the exclusive borrow covers.
    unsafe { svm_world_switch(vmcb, host_area, &raw mut record.registers, 1) };
    record.registers[register::RAX] = control.rax;
    if record.controls.interrupt_window {
        // The request was for this run: the virtual interrupt is never
        // delivered.
        control.int_ctl &= !INTERRUPT_WINDOW_REQUEST;
        control.intercept_misc1 &= !misc1::VINTR;
    }
    store_eager(control, &mut record.state);
    record.stale = LAZY_FIELDS;
    let exit = virt::decode_svm(SvmExitFields {
        code: control.exit_code,
        info1: control.exit_info1,
        info2: control.exit_info2,
        rip: control.rip,
    });
    control.event_inj = 0;
    if exit.kind == ExitKind::Exception && exit.qualification & 0xff == u64::from(virt::DEBUG_VECTOR) {
        // The CPU set DR6's status bits for a #DB the guest never took:
        // it keeps the DR6 it had.
        control.dr6 = dr6;
    }
    exit
}

/// The boot self-test of the `svm` backend, on the backend [`enable`]
/// turned on: builds the test guest's memory with nested page tables, a
/// VMCB for a real-mode guest, and runs the guest exit by exit, decoding
/// each exit with `kernel_core::virt::decode_svm`; then gives every frame
/// it took back.
pub(crate) fn run_test_guest(allocator: &mut FrameAllocator, program: Program) {
    if HOST_AREA.load(Ordering::Relaxed) == 0 {
        println!("svm: this CPU has no SVM with nested paging: no guest runs");
        return;
    }
    let free_before = free_frames(allocator);
    let mut frames = Frames::new();
    match run_with_frames(allocator, &mut frames, program) {
        Ok(exits) => println!("svm guest: done after {exits} exits"),
        Err(why) => println!("svm guest: failed: {why}"),
    }
    frames.give_back(allocator);
    println!("svm guest: frames before {free_before}, after {}", free_frames(allocator));
}

fn run_with_frames(allocator: &mut FrameAllocator, frames: &mut Frames, program: Program) -> Result<u32, &'static str> {
    let host_area = HOST_AREA.load(Ordering::Relaxed);
    let (vmcb, vmcb_pointer) = frames.zeroed(allocator)?;
    let nested_root = build_memory(allocator, frames, GuestFormat::Npt, program)?;
    // SAFETY: the VMCB's frame is zeroed, page aligned (a frame), ours and
    // inside the physmap; `Vmcb` is plain data of exactly one page, and
    // nothing else refers to it while this reference lives.
    let control = unsafe { &mut *vmcb_pointer.cast::<Vmcb>() };
    set_controls(control);
    control.guest_asid = 1;
    control.tlb_control = 1;
    control.n_cr3 = nested_root;
    // A real-mode guest at GUEST_ENTRY: every segment at base 0 with a
    // 64 KiB limit, CR0 with only ET.
    let mut state = GuestState::RESET;
    let mut set = |field: GuestField, value: u64| state.0[usize::from(field.number())] = value;
    set(GuestField::segment(Register::Cs, SegmentPart::Selector), 0);
    set(GuestField::segment(Register::Cs, SegmentPart::Base), 0);
    set(GuestField::CR0, 0x10);
    set(GuestField::RIP, GUEST_ENTRY);
    load_state(control, &state);

    let mut registers: GuestRegisters = [0; 16];
    let started = crate::arch::cpu::read_tsc();
    for exits in 1..=program.exits() + SPARE_EXITS {
        // SAFETY: `vmcb` and `host_area` are page-aligned frames the
        // kernel owns, the VMCB describes a guest whose memory is only the
        // page the nested tables map, SVM is enabled and the host save
        // area set; the world switch keeps every register the System V
        // ABI asks a callee to keep.
        unsafe { svm_world_switch(vmcb, host_area, &raw mut registers, 0) };
        control.tlb_control = 0;
        let exit = virt::decode_svm(SvmExitFields {
            code: control.exit_code,
            info1: control.exit_info1,
            info2: control.exit_info2,
            rip: control.rip,
        });
        // Encoding order: RAX (the VMCB's here), RCX, RDX, RBX.
        let [_, rcx, rdx, rbx, ..] = &mut registers;
        let accumulators = Accumulators { rax: &mut control.rax, rbx, rcx, rdx };
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
