//! The `svm` backend (AMD SVM with nested paging), first step: enabling
//! SVM, the VMCB's layout, and the world switch, run by the boot
//! self-test [`run_test_guest`] (`inject=guest-svm`) on a small real-mode
//! guest. VCpu objects and VMEnter build on these pieces
//! (`docs/VIRTUALISATION.md`); `docs/virtualisation-hardware.md` has the
//! numbers used here (AMD64 APM Vol. 2, chapter 15 and appendix B).

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::memory::PhysFrame;
use kernel_core::virt::{self, ExitKind, GuestMapping, IoAccess, SvmExitFields};
use kernel_core::vspace::MemoryType;
use static_assertions::const_assert_eq;

use crate::arch::paging::physmap_pointer;

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

/// The guest's general registers that the VMCB does not hold (RAX and
/// RSP are in it): the world switch loads and stores them.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct GuestRegisters {
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}
const_assert_eq!(size_of::<GuestRegisters>(), 14 * 8);

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
    "mov rbx, [rax + 0]",
    "mov rcx, [rax + 8]",
    "mov rdx, [rax + 16]",
    "mov rsi, [rax + 24]",
    "mov rdi, [rax + 32]",
    "mov rbp, [rax + 40]",
    "mov r8, [rax + 48]",
    "mov r9, [rax + 56]",
    "mov r10, [rax + 64]",
    "mov r11, [rax + 72]",
    "mov r12, [rax + 80]",
    "mov r13, [rax + 88]",
    "mov r14, [rax + 96]",
    "mov r15, [rax + 104]",
    "mov rax, [rsp]",
    "vmload rax",
    "vmrun rax",
    "vmsave rax",
    "mov rax, [rsp + 8]",
    "mov [rax + 0], rbx",
    "mov [rax + 8], rcx",
    "mov [rax + 16], rdx",
    "mov [rax + 24], rsi",
    "mov [rax + 32], rdi",
    "mov [rax + 40], rbp",
    "mov [rax + 48], r8",
    "mov [rax + 56], r9",
    "mov [rax + 64], r10",
    "mov [rax + 72], r11",
    "mov [rax + 80], r12",
    "mov [rax + 88], r13",
    "mov [rax + 96], r14",
    "mov [rax + 104], r15",
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

/// A zeroed 4 KiB frame and its mapping in the physical-memory map.
fn zeroed_frame(allocator: &mut FrameAllocator, taken: &mut heapless::Vec<PhysFrame, 16>) -> Option<*mut u8> {
    let frame = allocator.allocate()?;
    let address = frame.start().as_u64();
    let pointer = physmap_pointer(address, 0x1000)?;
    // SAFETY: the frame was just taken from the allocator, so nothing else
    // uses it, and it lies inside the physical-memory map (checked).
    unsafe { core::ptr::write_bytes(pointer, 0, 0x1000) };
    taken.push(frame).ok()?;
    Some(pointer)
}

/// Writes the 64-bit `value` at entry `index` of the table at `table`.
fn set_entry(table: *mut u8, index: usize, value: u64) {
    debug_assert!(index < 512);
    // SAFETY: `table` maps a whole page-aligned frame (`zeroed_frame`)
    // and `index` is below 512, so the entry is in bounds and aligned.
    let entry = unsafe { table.cast::<u64>().add(index) };
    // SAFETY: as above: a valid, aligned `u64` the kernel owns.
    unsafe { entry.write_volatile(value) };
}

/// The physical address behind a pointer `zeroed_frame` returned.
fn physical(taken: &heapless::Vec<PhysFrame, 16>, index: usize) -> u64 {
    taken[index].start().as_u64()
}

/// The test guest, 16-bit real mode, at guest-physical 0x100: an OUT to
/// port 0x80, a CPUID, a write outside its memory (guest-physical
/// 0x2000: a nested page fault), then HLT.
const TEST_GUEST: [u8; 15] = [
    0xb0, 0x42, // mov al, 0x42
    0xe6, 0x80, // out 0x80, al
    0x31, 0xc0, // xor ax, ax
    0x0f, 0xa2, // cpuid
    0xc6, 0x06, 0x00, 0x20, 0x01, // mov byte [0x2000], 1
    0xf4, // hlt
    0xf4, // hlt (never reached)
];
/// Where the guest's code starts.
const GUEST_ENTRY: u64 = 0x100;
/// The length of the guest's store to 0x2000, which the test skips as a
/// VMM would after emulating MMIO.
const STORE_LENGTH: u64 = 5;

/// The boot self-test of the `svm` backend: enables SVM, builds nested
/// page tables mapping one frame at guest-physical 0, a VMCB for a
/// real-mode guest with an all-ones I/O permission map, and runs
/// [`TEST_GUEST`] exit by exit, decoding each exit with
/// `kernel_core::virt::decode_svm` and printing it. Gives every frame
/// back at the end.
pub(crate) fn run_test_guest(allocator: &mut FrameAllocator) {
    if !available() {
        println!("svm: this CPU has no SVM with nested paging: no guest runs");
        return;
    }
    let free_before = free_frames(allocator);
    let mut taken: heapless::Vec<PhysFrame, 16> = heapless::Vec::new();
    match run_with_frames(allocator, &mut taken) {
        Ok(exits) => println!("svm guest: done after {exits} exits"),
        Err(why) => println!("svm guest: failed: {why}"),
    }
    disable();
    // The I/O permission map's three frames are among them.
    for frame in taken {
        let _ = allocator.free(frame);
    }
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

fn free_frames(allocator: &FrameAllocator) -> u64 {
    allocator.free_ranges().iter().map(|range| range.len() / 0x1000).sum()
}

fn run_with_frames(
    allocator: &mut FrameAllocator,
    taken: &mut heapless::Vec<PhysFrame, 16>,
) -> Result<u32, &'static str> {
    let frame = |allocator: &mut FrameAllocator, taken: &mut heapless::Vec<PhysFrame, 16>| {
        zeroed_frame(allocator, taken).ok_or("no frame")
    };
    // Host save area, host VMSAVE area, VMCB, nested PML4, PDPT, PD, PT,
    // and the guest's one page of memory.
    let _hsave = frame(allocator, taken)?;
    let _host_area = frame(allocator, taken)?;
    let vmcb_pointer = frame(allocator, taken)?;
    let tables: [*mut u8; 4] =
        [frame(allocator, taken)?, frame(allocator, taken)?, frame(allocator, taken)?, frame(allocator, taken)?];
    let memory = frame(allocator, taken)?;
    // The I/O permission map: 12 KiB, every port intercepted.
    let iopm = allocator.allocate_contiguous(3, 0x1000).ok_or("no frames for the I/O permission map")?;
    let iopm_pointer = physmap_pointer(iopm.start.as_u64(), 3 * 0x1000).ok_or("the map lies outside the physmap")?;
    // SAFETY: three frames just taken from the allocator, inside the
    // physical-memory map (checked); bytes need no validity.
    unsafe { core::ptr::write_bytes(iopm_pointer, 0xff, 3 * 0x1000) };
    for index in 0..3 {
        let start = kernel_core::memory::PhysAddr::new(iopm.start.as_u64() + index * 0x1000);
        let frame = PhysFrame::from_start(start).ok_or("a misaligned frame")?;
        taken.push(frame).map_err(|_| "too many frames")?;
    }
    // SAFETY: the guest's frame is ours and inside the physmap, and the
    // entry point lies inside it.
    let entry = unsafe { memory.add(usize::try_from(GUEST_ENTRY).unwrap_or(0)) };
    // SAFETY: the code fits far below the frame's end, and the frame does
    // not overlap the constant it is copied from.
    unsafe { core::ptr::copy_nonoverlapping(TEST_GUEST.as_ptr(), entry, TEST_GUEST.len()) };
    // Nested page tables: guest-physical 0..4 KiB is the guest's frame.
    let (hsave, host_area, vmcb) = (physical(taken, 0), physical(taken, 1), physical(taken, 2));
    let (pml4, pdpt, pd, pt, guest_frame) =
        (physical(taken, 3), physical(taken, 4), physical(taken, 5), physical(taken, 6), physical(taken, 7));
    set_entry(tables[0], 0, virt::npt_table_entry(pdpt));
    set_entry(tables[1], 0, virt::npt_table_entry(pd));
    set_entry(tables[2], 0, virt::npt_table_entry(pt));
    let page = GuestMapping { write: true, execute: true, memory_type: MemoryType::WriteBack, large: false };
    set_entry(tables[3], 0, virt::npt_page_entry(guest_frame, page));
    debug_assert_eq!(physical(taken, 3), pml4);

    // SAFETY: reading EFER, an architectural MSR, has no side effects.
    let efer = unsafe { x86::msr::rdmsr(x86::msr::IA32_EFER) };
    // SAFETY: setting SVME enables the SVM instructions and nothing else;
    // the CPU has SVM (checked above).
    unsafe { x86::msr::wrmsr(x86::msr::IA32_EFER, efer | EFER_SVME) };
    // SAFETY: the host save area is a zeroed page the kernel owns from now
    // on, as the MSR requires; only VMRUN and #VMEXIT use it.
    unsafe { x86::msr::wrmsr(VM_HSAVE_PA, hsave) };
    println!("svm: enabled, host save area at {hsave:#x}");

    let vmcb_ref = vmcb_pointer.cast::<Vmcb>();
    // SAFETY: the VMCB's frame is zeroed, page aligned (a frame), ours and
    // inside the physmap; `Vmcb` is plain data of exactly one page.
    let control = unsafe { &mut *vmcb_ref };
    control.intercept_misc1 = misc1::INTR | misc1::CPUID | misc1::HLT | misc1::IOIO_PROT | misc1::SHUTDOWN;
    control.intercept_misc2 = misc2::VMRUN | misc2::VMMCALL;
    control.iopm_base = iopm.start.as_u64();
    control.guest_asid = 1;
    control.tlb_control = 1;
    control.int_ctl = V_INTR_MASKING;
    control.np_enable = 1;
    control.n_cr3 = pml4;
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
    for exits in 1..=16 {
        // SAFETY: `vmcb` and `host_area` are page-aligned frames the
        // kernel owns, the VMCB describes a guest whose memory is only the
        // frame mapped by the nested tables above, SVM is enabled and the
        // host save area set; the world switch saves and restores every
        // register the System V ABI asks a callee to keep.
        unsafe { svm_world_switch(vmcb, host_area, &raw mut registers) };
        control.tlb_control = 0;
        let exit = virt::decode_svm(SvmExitFields {
            code: control.exit_code,
            info1: control.exit_info1,
            info2: control.exit_info2,
            rip: control.rip,
        });
        match exit.kind {
            ExitKind::Io => {
                let access = IoAccess::unpack(exit.qualification);
                let direction = if access.input { "in" } else { "out" };
                println!(
                    "svm guest: {direction} port {:#x}, {} byte(s), al {:#x}, length {}",
                    access.port,
                    access.size,
                    control.rax & 0xff,
                    exit.instruction_length
                );
                control.rip += u64::from(exit.instruction_length);
            }
            ExitKind::Cpuid => {
                println!("svm guest: cpuid leaf {:#x}", control.rax & 0xffff_ffff);
                // "Bulkhead" in EBX:EDX, as a VMM would answer leaf 0.
                (control.rax, registers.rbx, registers.rdx, registers.rcx) = (1, 0x6b6c_7542, 0x6461_6568, 0);
                control.rip += 2;
            }
            ExitKind::SecondLevelFault => {
                println!(
                    "svm guest: nested page fault at {:#x} ({:#x}), rip {:#x}",
                    exit.guest_physical, exit.qualification, control.rip
                );
                control.rip += STORE_LENGTH;
            }
            ExitKind::Hlt => {
                println!("svm guest: hlt at rip {:#x}, ebx {:#x}", control.rip, registers.rbx);
                return Ok(exits);
            }
            ExitKind::InvalidState => return Err("VMRUN refused the guest state"),
            ExitKind::HostInterrupt => {}
            _ => {
                println!("svm guest: unexpected exit {:?} (code {:#x})", exit.kind, exit.raw_reason);
                return Err("an unexpected exit");
            }
        }
    }
    Err("the guest did not halt within 16 exits")
}
