//! The `vtx` backend (Intel VT-x with EPT, VPID and unrestricted guest),
//! first step: entering VMX operation, a VMCS for a real-mode guest over
//! EPT, and the world switch, run by the boot self-test
//! [`run_test_guest`] (`inject=guest-vtx`, under Bochs) on the test guest
//! the `svm` backend runs too. `docs/virtualisation-hardware.md` has the
//! encodings and the checks used here (Intel SDM Vol. 3C, the VMX
//! chapters and appendices A to C).

use core::arch::{asm, global_asm};

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::virt::{self, GuestFormat, VtxExitFields};

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
    pub(super) const GUEST_EFER: u64 = 0x2806;
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
}

/// Pin-based control: host interrupts exit.
const PIN_EXTERNAL_INTERRUPT: u32 = 1 << 0;
/// Primary controls: HLT exits; every I/O instruction exits; the
/// secondary controls apply.
const PROC_HLT: u32 = 1 << 7;
const PROC_UNCONDITIONAL_IO: u32 = 1 << 24;
const PROC_SECONDARY: u32 = 1 << 31;
/// Secondary controls: EPT, VPID, unrestricted guest.
const PROC2_EPT: u32 = 1 << 1;
const PROC2_VPID: u32 = 1 << 5;
const PROC2_UNRESTRICTED: u32 = 1 << 7;
/// Exit controls: a 64-bit host; save and load EFER.
const EXIT_HOST_64: u32 = 1 << 9;
const EXIT_SAVE_EFER: u32 = 1 << 20;
const EXIT_LOAD_EFER: u32 = 1 << 21;
/// Entry control: load the guest's EFER.
const ENTRY_LOAD_EFER: u32 = 1 << 15;
/// CR4.VMXE.
const CR4_VMXE: u64 = 1 << 13;
/// CR0.NE, which VMX operation requires even of a real-mode guest.
const CR0_NE: u64 = 1 << 5;

// vtx_world_switch(registers: rdi, launched: rsi) -> rax: 0 after a VM
// exit, 1 VMfailInvalid, 2 VMfailValid (the error in the VMCS). Saves the
// host's callee-saved registers, points the VMCS's host RSP and RIP at
// this frame and the exit label, loads the guest's registers, enters with
// VMLAUNCH (first time) or VMRESUME, and at the exit stores the guest's
// registers. The kernel runs with IF clear: an exit loads RFLAGS with IF
// clear as well.
global_asm!(
    ".global vtx_world_switch",
    "vtx_world_switch:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "push rsi",
    "mov rax, 0x6c14",
    "vmwrite rax, rsp",
    "lea rdx, [rip + 3f]",
    "mov rax, 0x6c16",
    "vmwrite rax, rdx",
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
    "mov rax, [rsp + 16]",
    store_guest_registers!(),
    "pop rbx",
    "mov [rax], rbx",
    "xor eax, eax",
    "5:",
    "add rsp, 16",
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
    fn vtx_world_switch(registers: *mut GuestRegisters, launched: u64) -> u64;
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

/// The boot self-test of the `vtx` backend: enters VMX operation, builds
/// the test guest's memory with EPT, a VMCS for a real-mode unrestricted
/// guest whose every I/O instruction and HLT exits, and runs the guest
/// exit by exit, decoding each exit with `kernel_core::virt::decode_vtx`;
/// then leaves VMX operation and gives every frame back.
pub(crate) fn run_test_guest(allocator: &mut FrameAllocator, program: Program) {
    if !available() {
        println!("vtx: this CPU has no VT-x: no guest runs");
        return;
    }
    let free_before = free_frames(allocator);
    let mut frames = Frames::new();
    let mut in_vmx = false;
    match run_with_frames(allocator, &mut frames, &mut in_vmx, program) {
        Ok(exits) => println!("vtx guest: done after {exits} exits"),
        Err(why) if in_vmx => {
            println!("vtx guest: failed: {why} (VM-instruction error {})", read(field::INSTRUCTION_ERROR))
        }
        Err(why) => println!("vtx guest: failed: {why}"),
    }
    if in_vmx {
        // SAFETY: in VMX root operation (VMXON succeeded), no guest runs;
        // VMXOFF leaves VMX operation, after which CR4.VMXE may be cleared.
        unsafe { asm!("vmxoff", options(nostack)) };
    }
    // SAFETY: reading CR4 has no side effects.
    let cr4 = unsafe { x86::controlregs::cr4() };
    // SAFETY: outside VMX operation (never entered, or left above),
    // clearing CR4.VMXE only disables the VMX instructions again.
    unsafe { x86::controlregs::cr4_write(cr4 - x86::controlregs::Cr4::CR4_ENABLE_VMX) };
    frames.give_back(allocator);
    println!("vtx guest: frames before {free_before}, after {}", free_frames(allocator));
}

fn run_with_frames(
    allocator: &mut FrameAllocator,
    frames: &mut Frames,
    in_vmx: &mut bool,
    program: Program,
) -> Result<u32, &'static str> {
    let feature = read_msr(msr::FEATURE_CONTROL);
    if feature & 0b101 != 0b101 {
        return Err("VT-x is not enabled and locked by the firmware (IA32_FEATURE_CONTROL)");
    }
    let basic = read_msr(msr::VMX_BASIC);
    let revision = basic & 0x7fff_ffff;
    let true_controls = basic & (1 << 55) != 0;
    let (vmxon, vmxon_pointer) = frames.zeroed(allocator)?;
    let (vmcs, vmcs_pointer) = frames.zeroed(allocator)?;
    for pointer in [vmxon_pointer, vmcs_pointer] {
        // SAFETY: each is a zeroed frame of ours inside the physmap, and
        // its first dword is aligned: the revision goes there.
        unsafe { pointer.cast::<u32>().write_volatile(u32::try_from(revision).unwrap_or(0)) };
    }
    let ept_root = build_memory(allocator, frames, GuestFormat::Ept, program)?;

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
    let cr4 = cr4.bits() as u64;
    if cr4 & read_msr(msr::CR4_FIXED0) != read_msr(msr::CR4_FIXED0) {
        return Err("CR4 lacks a bit VMX operation needs");
    }
    let failed: u8;
    // SAFETY: the VMXON region is a page of ours with the revision in
    // place, CR4.VMXE is set and the firmware enabled VMX; failure sets
    // a flag, checked below.
    unsafe { asm!("vmxon [{}]", "setna {}", in(reg) &raw const vmxon, out(reg_byte) failed, options(nostack)) };
    if failed != 0 {
        return Err("VMXON failed");
    }
    *in_vmx = true;
    let failed: u8;
    // SAFETY: in VMX root operation; the VMCS region is a page of ours
    // with the revision in place: VMCLEAR then VMPTRLD make it current.
    unsafe {
        asm!(
            "vmclear [{0}]",
            "vmptrld [{0}]",
            "setna {1}",
            in(reg) &raw const vmcs,
            out(reg_byte) failed,
            options(nostack),
        );
    }
    if failed != 0 {
        return Err("VMCLEAR or VMPTRLD failed");
    }
    println!("vtx: in VMX operation, VMCS revision {revision:#x}");

    let capability = |plain: u32, true_one: u32| read_msr(if true_controls { true_one } else { plain });
    let pin = adjust(PIN_EXTERNAL_INTERRUPT, capability(msr::PINBASED, msr::TRUE_PINBASED));
    let proc =
        adjust(PROC_HLT | PROC_UNCONDITIONAL_IO | PROC_SECONDARY, capability(msr::PROCBASED, msr::TRUE_PROCBASED));
    let proc2 = adjust(PROC2_EPT | PROC2_VPID | PROC2_UNRESTRICTED, read_msr(msr::PROCBASED2));
    let exit = adjust(EXIT_HOST_64 | EXIT_SAVE_EFER | EXIT_LOAD_EFER, capability(msr::EXIT, msr::TRUE_EXIT));
    let entry = adjust(ENTRY_LOAD_EFER, capability(msr::ENTRY, msr::TRUE_ENTRY));
    let (Some(pin), Some(proc), Some(proc2), Some(exit), Some(entry)) = (pin, proc, proc2, exit, entry) else {
        return Err("the CPU lacks a control this backend needs (EPT, VPID, unrestricted guest, EFER loading)");
    };
    write(field::PIN_CONTROLS, u64::from(pin))?;
    write(field::PROC_CONTROLS, u64::from(proc))?;
    write(field::PROC_CONTROLS2, u64::from(proc2))?;
    write(field::EXIT_CONTROLS, u64::from(exit))?;
    write(field::ENTRY_CONTROLS, u64::from(entry))?;
    write(field::EXCEPTION_BITMAP, 0)?;
    write(field::VPID, 1)?;
    write(field::EPT_POINTER, virt::ept_pointer(ept_root))?;
    write(field::LINK_POINTER, u64::MAX)?;

    // The host: the kernel as it runs now.
    write(field::HOST_CR0, cr0.bits() as u64)?;
    // SAFETY: reading CR3 has no side effects.
    write(field::HOST_CR3, unsafe { x86::controlregs::cr3() })?;
    write(field::HOST_CR4, cr4)?;
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
    write(field::HOST_FS_BASE, read_msr(msr::FS_BASE))?;
    write(field::HOST_GS_BASE, read_msr(msr::GS_BASE))?;
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

    // A real-mode guest under unrestricted guest: every segment at base 0
    // with a 64 KiB limit, LDTR unusable, a busy TSS; CR0.NE and CR4.VMXE
    // set (VMX needs them) but hidden by the masks and shadows.
    for index in 0..6 {
        // ES, CS, SS, DS, FS, GS: selectors, limits, rights, bases.
        write(field::GUEST_ES + 2 * index, 0)?;
        write(field::GUEST_ES_LIMIT + 2 * index, 0xffff)?;
        write(field::GUEST_ES_RIGHTS + 2 * index, if index == 1 { 0x9b } else { 0x93 })?;
        write(field::GUEST_ES_BASE + 2 * index, 0)?;
    }
    // LDTR (index 6), TR (7), GDTR (8), IDTR (9).
    write(field::GUEST_ES + 12, 0)?;
    write(field::GUEST_ES + 14, 0)?;
    write(field::GUEST_ES_RIGHTS + 12, 0x1_0000)?;
    write(field::GUEST_ES_RIGHTS + 14, 0x8b)?;
    for index in 6..10 {
        write(field::GUEST_ES_LIMIT + 2 * index, 0xffff)?;
        write(field::GUEST_ES_BASE + 2 * index, 0)?;
    }
    write(field::GUEST_CR0, 0x10 | CR0_NE)?;
    write(field::CR0_MASK, CR0_NE)?;
    write(field::CR0_SHADOW, 0)?;
    write(field::GUEST_CR4, CR4_VMXE)?;
    write(field::CR4_MASK, CR4_VMXE)?;
    write(field::CR4_SHADOW, 0)?;
    write(field::GUEST_CR3, 0)?;
    write(field::GUEST_EFER, 0)?;
    write(field::GUEST_DR7, 0x400)?;
    write(field::GUEST_RFLAGS, 0x2)?;
    write(field::GUEST_RSP, 0)?;
    write(field::GUEST_RIP, GUEST_ENTRY)?;
    write(field::GUEST_INTERRUPTIBILITY, 0)?;
    write(field::GUEST_ACTIVITY, 0)?;
    // No pending debug exceptions, no CR3 targets, no MSR lists, nothing
    // to inject (a fresh VMCS's fields are not defined to be zero).
    for encoding in [0x6822, 0x400a, 0x400e, 0x4010, 0x4014, 0x4016, 0x4006, 0x4008] {
        write(encoding, 0)?;
    }

    let mut registers = GuestRegisters::default();
    let started = crate::arch::cpu::read_tsc();
    for exits in 1..=program.exits() + SPARE_EXITS {
        // SAFETY: in VMX root operation with the VMCS current and every
        // field set above: the guest sees only the page EPT maps, and the
        // host state is the kernel's own, so an exit lands back in the
        // world switch with the kernel's stack, tables and segments.
        let outcome = unsafe { vtx_world_switch(&raw mut registers, u64::from(exits > 1)) };
        match outcome {
            0 => {}
            1 => return Err("VMLAUNCH or VMRESUME failed: no current VMCS"),
            _ => return Err("VMLAUNCH or VMRESUME refused the controls or the host state"),
        }
        let exit = virt::decode_vtx(VtxExitFields {
            reason: read(field::EXIT_REASON),
            qualification: read(field::QUALIFICATION),
            guest_physical: read(field::GUEST_PHYSICAL),
            instruction_length: read(field::EXIT_INSTRUCTION_LENGTH),
            interruption_info: read(field::EXIT_INTERRUPTION),
            interruption_error: read(field::EXIT_INTERRUPTION_ERROR),
        });
        let rip = read(field::GUEST_RIP);
        let accumulators = Accumulators {
            rax: &mut registers.rax,
            rbx: &mut registers.rbx,
            rcx: &mut registers.rcx,
            rdx: &mut registers.rdx,
        };
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
