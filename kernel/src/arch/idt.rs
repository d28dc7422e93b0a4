//! The interrupt descriptor table and the exception entry path.
//!
//! Every CPU exception (vectors 0 to 31) enters through a small assembly
//! stub that pushes a uniform [`TrapFrame`] and calls [`exception_dispatch`].
//! An exception caused by a user program (taken in ring 3, or the CPU
//! refusing the IRETQ back to ring 3) ends that program with a one-line
//! report and resumes the kernel (`arch::user`); the issue "Microkernel
//! core" turns these into fault messages for the thread's handler. Every
//! other exception is a kernel bug: the dispatcher prints a report
//! (vector, error code, registers, CR2, a backtrace) and stops the machine.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};

use static_assertions::const_assert_eq;
use x86::dtables::{DescriptorTablePointer, lidt};

use super::gdt;

/// The registers an exception entry saves, lowest address first. Built
/// partly by the CPU (from `rip` on), partly by the stubs below.
#[repr(C)]
pub(crate) struct TrapFrame {
    pub(crate) r15: u64,
    pub(crate) r14: u64,
    pub(crate) r13: u64,
    pub(crate) r12: u64,
    pub(crate) r11: u64,
    pub(crate) r10: u64,
    pub(crate) r9: u64,
    pub(crate) r8: u64,
    pub(crate) rbp: u64,
    pub(crate) rdi: u64,
    pub(crate) rsi: u64,
    pub(crate) rdx: u64,
    pub(crate) rcx: u64,
    pub(crate) rbx: u64,
    pub(crate) rax: u64,
    pub(crate) vector: u64,
    pub(crate) error_code: u64,
    pub(crate) rip: u64,
    pub(crate) cs: u64,
    pub(crate) rflags: u64,
    pub(crate) rsp: u64,
    pub(crate) ss: u64,
}
// The assembly below depends on this layout: 15 saved registers, then the
// vector and error code pushed by the stubs, then the CPU's frame.
const_assert_eq!(size_of::<TrapFrame>(), 22 * 8);
const_assert_eq!(offset_of!(TrapFrame, rax), 14 * 8);
const_assert_eq!(offset_of!(TrapFrame, vector), 15 * 8);
const_assert_eq!(offset_of!(TrapFrame, rip), 17 * 8);
const_assert_eq!(offset_of!(TrapFrame, ss), 21 * 8);

/// One 16-byte interrupt gate (Intel SDM Vol. 3A, 6.14.1).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    flags: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}
const_assert_eq!(size_of::<Gate>(), 16);
const_assert_eq!(offset_of!(Gate, selector), 2);
const_assert_eq!(offset_of!(Gate, ist), 4);
const_assert_eq!(offset_of!(Gate, flags), 5);
const_assert_eq!(offset_of!(Gate, offset_middle), 6);
const_assert_eq!(offset_of!(Gate, offset_high), 8);

impl Gate {
    const MISSING: Gate =
        Gate { offset_low: 0, selector: 0, ist: 0, flags: 0, offset_middle: 0, offset_high: 0, reserved: 0 };

    /// A present ring-0 interrupt gate (interrupts stay off in the handler).
    /// The handler address is split into the gate's three fields.
    #[allow(clippy::cast_possible_truncation)] // each field takes its slice of the address
    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CODE,
            ist,
            flags: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

struct IdtCell(UnsafeCell<[Gate; 256]>);

// SAFETY: the IDT is written only during `init` (and, in fault-injection
// builds, by `mark_gate_missing`), on the one CPU, with interrupts off; the
// CPU reads it only when delivering an exception or interrupt, never
// concurrently with those writes.
unsafe impl Sync for IdtCell {}

static IDT: IdtCell = IdtCell(UnsafeCell::new([Gate::MISSING; 256]));

/// Number of CPU exception vectors.
pub(crate) const EXCEPTION_COUNT: usize = 32;

unsafe extern "C" {
    /// Addresses of the 32 exception stubs, from the assembly below.
    static exception_stub_table: [u64; EXCEPTION_COUNT];
}

/// Installs the exception gates and loads the IDT.
///
/// # Safety
///
/// Call once, on the boot CPU, with interrupts off, after `gdt::init`.
pub(crate) unsafe fn init() {
    // SAFETY: the table is immutable data emitted by the assembly below.
    let stubs = unsafe { &*core::ptr::addr_of!(exception_stub_table) };
    // SAFETY: per this function's contract, nothing else touches the IDT now.
    let idt = unsafe { &mut *IDT.0.get() };
    for (vector, &stub) in stubs.iter().enumerate() {
        let ist = match vector {
            1 => gdt::IST_DEBUG,
            2 => gdt::IST_NMI,
            8 => gdt::IST_DOUBLE_FAULT,
            18 => gdt::IST_MACHINE_CHECK,
            _ => 0,
        };
        idt[vector] = Gate::interrupt(stub, ist);
    }
    let pointer = DescriptorTablePointer::new(idt);
    // SAFETY: the IDT is a static holding valid gates whose handlers are
    // the stubs below, and the code selector they name is the kernel's.
    unsafe { lidt(&pointer) };
}

/// Installs a ring-0 interrupt gate (no IST: interrupts arrive only from
/// ring 3, on the kernel-entry stack) for an interrupt vector above the
/// exceptions.
///
/// # Safety
///
/// Call on the boot CPU with interrupts off, after [`init`]; `handler`
/// must be an interrupt entry stub that preserves the interrupted state.
pub(crate) unsafe fn set_interrupt_gate(vector: u8, handler: u64) {
    assert!(usize::from(vector) >= EXCEPTION_COUNT, "vector {vector} is an exception");
    // SAFETY: per this function's contract nothing reads or writes the IDT
    // concurrently (see `IdtCell`).
    let idt = unsafe { &mut *IDT.0.get() };
    idt[usize::from(vector)] = Gate::interrupt(handler, 0);
}

/// Marks one exception gate not present, so that the next exception on
/// that vector escalates into a double fault (fault-injection builds only).
///
/// # Safety
///
/// Call on the boot CPU with interrupts off, while no exception is being
/// delivered, and only to end the run: an exception on `vector` can no
/// longer be handled.
#[cfg(feature = "fault-injection")]
pub(crate) unsafe fn mark_gate_missing(vector: u8) {
    // SAFETY: per this function's contract nothing reads or writes the IDT
    // concurrently (see `IdtCell`).
    let idt = unsafe { &mut *IDT.0.get() };
    idt[usize::from(vector)] = Gate::MISSING;
}

/// The Rust side of every exception entry.
#[unsafe(no_mangle)]
extern "C" fn exception_dispatch(frame: &TrapFrame) {
    if super::syscall::is_single_step_into_syscall_entry(frame) {
        // The stub's stack pointer was still the user's; the trap frame's
        // RFLAGS has TF clear (FMASK), so returning simply runs the stub.
        return;
    }
    // Returns only if this is not a user program's fault.
    super::user::end_program_on_user_fault(frame);
    crate::fault_report::report_exception_and_stop(frame)
}

// Vectors that push an error code: 8, 10-14, 17, 21, 29, 30.
global_asm!(
    r#"
    .macro exception_stub vector, has_error
    .balign 16
exception_stub_\vector:
    .if \has_error == 0
    push 0
    .endif
    push \vector
    jmp exception_common
    .endm

    .text
    exception_stub 0, 0
    exception_stub 1, 0
    exception_stub 2, 0
    exception_stub 3, 0
    exception_stub 4, 0
    exception_stub 5, 0
    exception_stub 6, 0
    exception_stub 7, 0
    exception_stub 8, 1
    exception_stub 9, 0
    exception_stub 10, 1
    exception_stub 11, 1
    exception_stub 12, 1
    exception_stub 13, 1
    exception_stub 14, 1
    exception_stub 15, 0
    exception_stub 16, 0
    exception_stub 17, 1
    exception_stub 18, 0
    exception_stub 19, 0
    exception_stub 20, 0
    exception_stub 21, 1
    exception_stub 22, 0
    exception_stub 23, 0
    exception_stub 24, 0
    exception_stub 25, 0
    exception_stub 26, 0
    exception_stub 27, 0
    exception_stub 28, 0
    exception_stub 29, 1
    exception_stub 30, 1
    exception_stub 31, 0

exception_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    /* Ring 3 may have left DF or AC set (AC would switch SMAP off). */
    cld
    pushfq
    and qword ptr [rsp], {clear_alignment_check}
    popfq
    call exception_dispatch
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

    .section .rodata.exception_stub_table, "a"
    .balign 8
    .global exception_stub_table
exception_stub_table:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
    .text
    "#,
    clear_alignment_check = const !(1i32 << 18), // RFLAGS.AC, sign-extended
);
