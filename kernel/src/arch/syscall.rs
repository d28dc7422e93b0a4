//! System-call entry: SYSCALL from ring 3 into the kernel and back with
//! SYSRETQ (or IRETQ, see below).
//!
//! # The entry path
//!
//! `SYSCALL` loads CS and SS from STAR, RIP from LSTAR, saves the user's
//! RIP in RCX and RFLAGS in R11, and clears the RFLAGS bits named in FMASK;
//! it does not switch stacks. [`syscall_entry`](self) therefore:
//!
//! 1. parks the user RSP in a scratch word and points RSP at the end of
//!    the running thread's save area (`threads::SaveAreas`; outside a run
//!    of the thread table, the top of the kernel-entry stack);
//! 2. pushes every user register there, which fills in a [`UserContext`];
//! 3. moves to the kernel-entry stack (the same stack the TSS names as
//!    RSP0, so that exceptions from ring 3 land there too) and calls
//!    [`syscall_dispatch`] with a pointer to the context; it returns the
//!    context to go back with: the same one, or another thread's save
//!    area when the scheduler picked another (`threads::switch_in_place`),
//!    so a thread switch copies no registers;
//! 4. returns to ring 3 with SYSRETQ, or with IRETQ when the saved RIP is
//!    not a lower-half (user) address.
//!
//! **Single CPU, no SWAPGS (for now).** The scratch word and the
//! kernel-entry stack are plain statics: there is one CPU and the kernel
//! runs with interrupts off (FMASK clears IF), so a second entry cannot
//! arrive while one is in flight. SMP bring-up replaces both with a per-CPU
//! area reached through SWAPGS and GS; the kernel uses neither FS nor GS
//! today, so a user-loaded GS selector cannot mislead it.
//!
//! **Why IRETQ for a non-canonical RIP.** On Intel CPUs, SYSRET with a
//! non-canonical RCX raises #GP *in ring 0* after RSP already holds the
//! user's value (CVE-2012-0217): the kernel would take an exception on a
//! stack the user chose. AMD CPUs raise it in ring 3. The user can reach
//! this by running `syscall` in the last two bytes of the lower half (the
//! return address is then 0x0000_8000_0000_0000). IRETQ checks the address
//! before it changes privilege, on the kernel stack: its #GP is taken in
//! ring 0 at a known instruction ([`user_return_iretq_address`]), which the
//! exception path turns into a fault of the user program (as Linux does).
//!
//! **A user's trap flag.** FMASK clears TF, yet a single-step trap armed
//! in ring 3 fires on the stub's first instruction, before the stack
//! switch (Intel; see [`is_single_step_into_syscall_entry`]). #DB has its
//! own IST stack for this, and the exception path dismisses that one trap.
//!
//! **Nothing the user passes is trusted.** The dispatcher reads only RAX
//! and the argument registers, as numbers, and hands them to
//! `kernel_core::syscall::handle`, which checks every capability address
//! and argument; RFLAGS is filtered before every return
//! ([`sanitize_user_rflags`]); the user's RSP is only stored and restored,
//! never dereferenced.
//!
//! **Registers of a kernel system call** (`docs/abi.md`, "Registers"):
//! RAX the number, RDI the cptr, RSI the message info word, RDX the reply
//! cptr, R10, R8, R9, R15 message words 0..3; words 4..length and the
//! extra capability addresses in the thread's IPC buffer (indices 4..120
//! and 120..123, copied by `threads`).
//! Back: RAX 0, RSI the thread's info word (an invocation's error code as
//! its label), RDI the badge, message words 0..3 in the same registers and
//! words 4..length in the IPC buffer.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel_core::error::SyscallError;
use kernel_core::fastpath::{fastpath_call, fastpath_reply_recv};
use kernel_core::ipc::{
    self, MAX_MESSAGE_WORDS, MessageInfo, REGISTER_MESSAGE_WORDS, Resumption, ThreadId, ThreadName,
};
use kernel_core::store::ObjectStore;
use kernel_core::syscall::{SyscallArgs, number};
use static_assertions::const_assert_eq;

use super::{gdt, threads};

/// The debugging system calls the test programs and the root task use besides the
/// kernel's own (`kernel_core::syscall::number`, 1 to 10). Every other
/// number goes to `kernel_core::syscall::handle` (which answers an unknown
/// one with InvalidArgument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum DebugSyscall {
    /// Prints the low byte of RDI on the console. Output is collected into
    /// lines of at most [`threads::DEBUG_LINE_BYTES`] bytes, each printed
    /// with a `user: ` prefix (`user NAME: ` when several threads run); a
    /// thread may print at most [`threads::DEBUG_LINES_PER_PROGRAM`] lines
    /// ([`threads::DEBUG_LINES_PER_ROOT_TASK_THREAD`] in a root-task run),
    /// the rest is dropped. Returns 0 in RAX; other registers keep their
    /// values.
    DebugPutchar = 0x100,
    /// Ends the calling thread with the exit code in RDI. Never returns to
    /// it: another thread runs, or the run ends.
    ThreadExit = 0x101,
    /// Benchmark mark (`threads::bench_mark`): RDI 0 starts the IPC
    /// benchmark, RDI = N ends it after N round trips and the kernel prints
    /// the figures. Ignored outside a benchmark run. Returns 0 in RAX.
    BenchMark = 0x102,
    /// Names a thread (seL4's TCB debug name), for the kernel's dumps
    /// (`kernel_core::conformance`): RDI a TCB capability address in the
    /// caller's CSpace, RSI, RDX, R10 and R8 the name's 32 bytes
    /// (little-endian words, NUL-padded), stored as they are. Returns 0 in
    /// RAX and, as an invocation does, the result code as the label of
    /// the info word in RSI: 0, FailedLookup (the address names no
    /// capability) or InvalidCapability (not a TCB capability). Other
    /// registers keep their values.
    NameThread = 0x103,
}

impl DebugSyscall {
    /// The debugging call with this number, if it is one.
    pub(crate) const fn decode(number: u64) -> Option<DebugSyscall> {
        match number {
            0x100 => Some(DebugSyscall::DebugPutchar),
            0x101 => Some(DebugSyscall::ThreadExit),
            0x102 => Some(DebugSyscall::BenchMark),
            0x103 => Some(DebugSyscall::NameThread),
            _ => None,
        }
    }
}

/// How many extra capability addresses a message names at most (the IPC
/// buffer's words between them and the receive slot).
const EXTRA_CPTRS: usize = ipc::BUFFER_RECEIVE_CPTR - ipc::BUFFER_EXTRA_CPTRS;
const_assert_eq!(EXTRA_CPTRS, 3);

/// Set when the thread the system-call path returns to did not leave ring
/// 3 through SYSCALL (a timer interrupt or a fault parked it, or it stopped
/// at a preemption point and another thread's call resumes it): its RCX and
/// R11 hold live values, which SYSRETQ would overwrite with RIP and RFLAGS,
/// so the stub returns with IRETQ, restoring every register, and clears
/// the flag.
#[unsafe(no_mangle)]
static SYSCALL_RETURN_FULL: AtomicBool = AtomicBool::new(false);

/// The thread about to return from the system-call path was parked, not
/// in a system call: it must get every register back (see
/// [`SYSCALL_RETURN_FULL`]).
pub(crate) fn return_with_every_register() {
    SYSCALL_RETURN_FULL.store(true, Ordering::Relaxed);
}

/// The length of the SYSCALL instruction (0F 05): a system call that runs
/// again (stopped at a preemption point, or cancelled while blocked) does
/// so from `rip - SYSCALL_LENGTH`.
pub(crate) const SYSCALL_LENGTH: u64 = 2;

/// A user thread's registers as the syscall entry saves them, lowest
/// address first: the hardware-free core's layout, which a suspended
/// thread's TCB also holds. RCX and R11 hold what the user had in them only
/// when the context was saved by an exception; SYSCALL overwrites both
/// (with RIP and RFLAGS), so the syscall ABI treats them as clobbered.
pub(crate) use kernel_core::ipc::UserRegisters as UserContext;
// The assembly below addresses every field by these offsets.
const_assert_eq!(size_of::<UserContext>(), 18 * 8);
const_assert_eq!(offset_of!(UserContext, rax), 0);
const_assert_eq!(offset_of!(UserContext, rbx), 8);
const_assert_eq!(offset_of!(UserContext, rcx), 2 * 8);
const_assert_eq!(offset_of!(UserContext, rdx), 3 * 8);
const_assert_eq!(offset_of!(UserContext, rsi), 4 * 8);
const_assert_eq!(offset_of!(UserContext, rdi), 5 * 8);
const_assert_eq!(offset_of!(UserContext, rbp), 6 * 8);
const_assert_eq!(offset_of!(UserContext, r8), 7 * 8);
const_assert_eq!(offset_of!(UserContext, r11), 10 * 8);
const_assert_eq!(offset_of!(UserContext, r15), 14 * 8);
const_assert_eq!(offset_of!(UserContext, rip), 15 * 8);
const_assert_eq!(offset_of!(UserContext, rflags), 16 * 8);
const_assert_eq!(offset_of!(UserContext, rsp), 17 * 8);
// 18 words keep the stack 16-byte aligned at the call into Rust.
const_assert_eq!(size_of::<UserContext>() % 16, 0);

/// User code selector as SYSRET loads it (GDT 0x20, RPL 3).
pub(crate) const USER_CODE_SELECTOR: u64 = gdt::USER_CODE as u64 | 3;
/// User stack selector as SYSRET loads it (GDT 0x18, RPL 3).
pub(crate) const USER_DATA_SELECTOR: u64 = gdt::USER_DATA as u64 | 3;

/// RFLAGS bits (Intel SDM Vol. 1, 3.4.3).
mod rflags {
    pub(super) const CARRY: u64 = 1 << 0;
    /// Bit 1 is always set.
    pub(super) const RESERVED_ONE: u64 = 1 << 1;
    pub(super) const PARITY: u64 = 1 << 2;
    pub(super) const AUXILIARY_CARRY: u64 = 1 << 4;
    pub(super) const ZERO: u64 = 1 << 6;
    pub(super) const SIGN: u64 = 1 << 7;
    pub(super) const TRAP: u64 = 1 << 8;
    pub(super) const INTERRUPT_ENABLE: u64 = 1 << 9;
    pub(super) const DIRECTION: u64 = 1 << 10;
    pub(super) const OVERFLOW: u64 = 1 << 11;
    pub(super) const IO_PRIVILEGE_LEVEL: u64 = 3 << 12;
    pub(super) const NESTED_TASK: u64 = 1 << 14;
    pub(super) const ALIGNMENT_CHECK: u64 = 1 << 18;
}

/// What SYSCALL clears on entry: interrupts stay off, no single-stepping
/// into the kernel, string operations count upwards, SMAP is not bypassed
/// (AC), no nested-task IRET, and I/O privilege level 0.
const SYSCALL_FLAG_MASK: u64 = rflags::INTERRUPT_ENABLE
    | rflags::TRAP
    | rflags::DIRECTION
    | rflags::ALIGNMENT_CHECK
    | rflags::NESTED_TASK
    | rflags::IO_PRIVILEGE_LEVEL;

/// The RFLAGS bits a user program keeps across a return from the kernel:
/// the arithmetic flags and the direction flag. Everything else is the
/// kernel's: IOPL stays 0, NT, TF and AC stay clear, and IF is set by
/// [`sanitize_user_rflags`] on every return (the kernel itself runs with
/// interrupts off; the LAPIC timer preempts ring 3).
const USER_FLAGS_KEPT: u64 = rflags::CARRY
    | rflags::PARITY
    | rflags::AUXILIARY_CARRY
    | rflags::ZERO
    | rflags::SIGN
    | rflags::DIRECTION
    | rflags::OVERFLOW;

/// The RFLAGS a user thread returns with, whatever it had: only the
/// arithmetic flags and DF survive, and interrupts are always on in ring 3
/// (so the timer can preempt any thread; outside a preemptive run the
/// timer is disarmed and the PICs masked, so nothing arrives). The kernel
/// itself always runs with interrupts off.
pub(crate) const fn sanitize_user_rflags(user_rflags: u64) -> u64 {
    (user_rflags & USER_FLAGS_KEPT) | rflags::RESERVED_ONE | rflags::INTERRUPT_ENABLE
}

/// MSR numbers (Intel SDM Vol. 4, table 2-2).
const IA32_EFER: u32 = 0xc000_0080;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_FMASK: u32 = 0xc000_0084;
/// EFER bit 0: SYSCALL/SYSRET enabled.
const EFER_SYSCALL_ENABLE: u64 = 1 << 0;

/// STAR: bits 47:32 give SYSCALL's CS (SS is CS + 8); bits 63:48 are the
/// base from which 64-bit SYSRET takes SS = base + 8 and CS = base + 16
/// (each with RPL 3). With the base at 0x10: SS 0x18|3, CS 0x20|3.
const STAR: u64 = ((gdt::USER_DATA as u64 - 8) << 48) | ((gdt::KERNEL_CODE as u64) << 32);
const_assert_eq!(STAR, 0x0010_0008_0000_0000);
const_assert_eq!((STAR >> 48) + 8, gdt::USER_DATA as u64);
const_assert_eq!((STAR >> 48) + 16, gdt::USER_CODE as u64);
const_assert_eq!((STAR >> 32) & 0xffff, gdt::KERNEL_CODE as u64);
const_assert_eq!((STAR >> 32 & 0xffff) + 8, gdt::KERNEL_DATA as u64);

/// The kernel-entry stack: syscalls and exceptions from ring 3 run here.
pub(crate) const KERNEL_ENTRY_STACK_BYTES: usize = 16 * 1024;

unsafe extern "C" {
    static syscall_entry: u8;
    static user_return_iretq: u8;
    static kernel_entry_stack_bottom: u8;
    static kernel_entry_stack_top: u8;
    static kernel_entry_stack_guard: u8;
    /// Where the entry stub saves the next system call's registers: the
    /// end of the running thread's save area (`threads::SaveAreas`), or the
    /// top of the kernel-entry stack.
    static syscall_save_area_top: AtomicU64;
    /// Saves the callee-saved registers and the stack pointer (for
    /// [`resume_kernel`]) and enters ring 3 with `context`'s registers.
    /// Returns when [`resume_kernel`] is called.
    fn enter_user_mode(context: *const UserContext);
    /// Abandons the current stack and returns from the latest
    /// `enter_user_mode`.
    fn resume_kernel_context() -> !;
    /// Abandons the current stack and returns to ring 3 with IRETQ and
    /// `context`'s registers.
    fn resume_user_context(context: *const UserContext) -> !;
}

/// Makes the entry stub save the next system call's registers in the 144
/// bytes below `top` (the end of a thread's save area, `threads`).
pub(crate) fn set_save_area_top(top: u64) {
    // SAFETY: the word is the stub's `.data` variable, an aligned u64 that
    // only this module and the stub (which runs with interrupts off, never
    // at the same time as Rust code) touch.
    unsafe { syscall_save_area_top.store(top, Ordering::Relaxed) };
}

/// Makes the entry stub save the registers on the kernel-entry stack
/// again (its top 144 bytes, which the Rust code then never uses).
pub(crate) fn reset_save_area_top() {
    set_save_area_top(core::ptr::addr_of!(kernel_entry_stack_top) as u64);
}

/// The kernel-entry stack's address range, for the backtrace walker.
pub(crate) fn kernel_entry_stack_range() -> core::ops::Range<u64> {
    let bottom = core::ptr::addr_of!(kernel_entry_stack_bottom) as u64;
    let top = core::ptr::addr_of!(kernel_entry_stack_top) as u64;
    bottom..top
}

/// Virtual address of the unmapped guard page below the kernel-entry stack.
pub(crate) fn kernel_entry_stack_guard_address() -> u64 {
    core::ptr::addr_of!(kernel_entry_stack_guard) as u64
}

/// Whether `frame` is the single-step trap that a user's TF causes on the
/// first instruction of the SYSCALL entry.
///
/// SYSCALL clears TF through FMASK, but the trap flag in force when
/// SYSCALL began still raises #DB once it completes (Intel; QEMU does not
/// emulate this), at the stub's first instruction, in ring 0, with RSP
/// still the user's. #DB therefore runs on its own IST stack, and this trap
/// is dismissed: the interrupted stub carries on with TF clear.
pub(crate) fn is_single_step_into_syscall_entry(frame: &super::idt::TrapFrame) -> bool {
    frame.vector == 1
        && frame.cs == u64::from(gdt::KERNEL_CODE)
        && frame.rip == core::ptr::addr_of!(syscall_entry) as u64
}

/// The address of the IRETQ that returns to ring 3: a #GP there is the
/// CPU refusing the user's return address, i.e. a user fault.
pub(crate) fn user_return_iretq_address() -> u64 {
    core::ptr::addr_of!(user_return_iretq) as u64
}

/// Enables SYSCALL/SYSRET: EFER.SCE, STAR, LSTAR and FMASK.
///
/// # Safety
///
/// Call once on the boot CPU with interrupts off, after `gdt::init` (STAR
/// names its selectors).
pub(crate) unsafe fn init() {
    let entry = core::ptr::addr_of!(syscall_entry) as u64;
    // SAFETY: STAR's selectors are the GDT's kernel code/data and user
    // data/code descriptors, in the order SYSCALL and SYSRET require (checked
    // above); nothing executes SYSCALL before EFER.SCE is set below.
    unsafe { x86::msr::wrmsr(IA32_STAR, STAR) };
    // SAFETY: LSTAR points at the entry stub below, in kernel text.
    unsafe { x86::msr::wrmsr(IA32_LSTAR, entry) };
    // SAFETY: the mask only clears flags on entry (see SYSCALL_FLAG_MASK).
    unsafe { x86::msr::wrmsr(IA32_FMASK, SYSCALL_FLAG_MASK) };
    // SAFETY: reading EFER has no side effects.
    let efer = unsafe { x86::msr::rdmsr(IA32_EFER) };
    // SAFETY: setting SCE only makes SYSCALL/SYSRET available; STAR, LSTAR
    // and FMASK are in place.
    unsafe { x86::msr::wrmsr(IA32_EFER, efer | EFER_SYSCALL_ENABLE) };
}

/// Enters ring 3 with `context` and returns once the program has ended
/// (through [`resume_kernel`]). RFLAGS is sanitised; CS and SS are the user
/// selectors.
///
/// # Safety
///
/// The current address space must map `context.rip` and `context.rsp` as
/// the program's user memory; TSS RSP0 must name the kernel-entry stack
/// (`gdt::set_ring0_stack`); no other program may be running; the caller's
/// frame must not rely on destructors running for frames that
/// [`resume_kernel`] later abandons (the syscall and exception handlers).
pub(crate) unsafe fn run_in_user_mode(context: &UserContext) {
    let context = UserContext { rflags: sanitize_user_rflags(context.rflags), ..*context };
    // SAFETY: per this function's contract the address space and TSS are
    // ready; `enter_user_mode` reads the context before it leaves ring 0,
    // and returns here, with the callee-saved registers intact, when
    // `resume_kernel` runs.
    unsafe { enter_user_mode(&raw const context) };
}

/// Ends the running program: returns from [`run_in_user_mode`], abandoning
/// the current (kernel-entry) stack.
///
/// # Safety
///
/// A program must be running (a `run_in_user_mode` call is live), and the
/// frames between here and the kernel entry (the syscall or exception
/// handler) must hold nothing whose destructor matters.
pub(crate) unsafe fn resume_kernel() -> ! {
    // SAFETY: per this function's contract `enter_user_mode` saved a
    // kernel context that is still live on the stack of its caller.
    unsafe { resume_kernel_context() }
}

/// Returns to ring 3 with `context` through IRETQ, abandoning the current
/// kernel stack (a thread switch after a user fault). RFLAGS is sanitised.
///
/// # Safety
///
/// CR3 must hold the address space of the thread `context` belongs to; a
/// run must be in progress (a `run_in_user_mode` call is live); the frames
/// between here and the kernel entry must hold nothing whose destructor
/// matters.
pub(crate) unsafe fn resume_user(context: &UserContext) -> ! {
    let context = UserContext { rflags: sanitize_user_rflags(context.rflags), ..*context };
    threads::count(&threads::COUNTERS.iretqs);
    // SAFETY: per this function's contract the address space is the
    // thread's; the IRETQ path reads the context (a local of this frame,
    // above the stack pointer it pushes below) before it leaves ring 0, and
    // a refused return is a user fault of that thread.
    unsafe { resume_user_context(&raw const context) }
}

/// The Rust side of every SYSCALL. `context` is where the stub saved the
/// caller's registers (its save area, or the kernel-entry stack). Returns
/// the registers the stub goes back to ring 3 with: `context` (updated),
/// or another thread's save area when the scheduler picks another
/// (`threads::switch_in_place`). `THREAD_EXIT` ends the calling thread; the
/// run ends when no thread can run.
#[unsafe(no_mangle)]
extern "C" fn syscall_dispatch(context: &mut UserContext) -> *const UserContext {
    let profiling = threads::profiling();
    let entered = if profiling { super::cpu::read_tsc() } else { 0 };
    threads::count(&threads::COUNTERS.syscalls);
    let thread = crate::root::with_kernel(|kernel, _| kernel.scheduler.current());
    let mut returning = core::ptr::from_mut(context);
    let mut rearm = true;
    // The kernel's own calls are numbered below the debugging ones: one
    // compare sends them on.
    let debug = if context.rax < DebugSyscall::DebugPutchar as u64 { None } else { DebugSyscall::decode(context.rax) };
    match debug {
        Some(DebugSyscall::DebugPutchar) => {
            // The low byte, by definition of the call.
            let byte = context.rdi.to_le_bytes()[0];
            if let Some(thread) = thread {
                threads::put_debug_byte(thread, byte);
            }
            context.rax = 0;
        }
        Some(DebugSyscall::ThreadExit) => {
            super::user::end_thread(context, super::user::ProgramEnd::Exited(context.rdi))
        }
        Some(DebugSyscall::BenchMark) => {
            threads::bench_mark(context.rdi);
            context.rax = 0;
        }
        Some(DebugSyscall::NameThread) => {
            let name = ThreadName::from_words([context.rsi, context.rdx, context.r10, context.r8]);
            let result = match thread {
                Some(thread) => crate::root::with_kernel(|kernel, _| {
                    kernel_core::syscall::name_thread(&mut kernel.store, thread, context.rdi, name)
                }),
                None => Err(SyscallError::FailedLookup),
            };
            let label = result.err().map_or(0, SyscallError::code);
            context.rsi = MessageInfo { label, length: 0, caps: 0 }.to_word();
            context.rax = 0;
        }
        None => {
            let path = vm_enter_path(context);
            match kernel_system_call(context, profiling, path) {
                Ok(SystemCallEnd::Returns(next)) => returning = next,
                // The VMEnter path changed nothing the scheduler or the
                // timer look at: the caller goes on with the timer as it
                // was armed.
                Ok(SystemCallEnd::VmEnterReturns) => rearm = false,
                Err(stopped) => {
                    if let Some(thread) = thread {
                        threads::finish_output(thread);
                    }
                    crate::println!("{}", stopped.message());
                    super::user::end_program(super::user::ProgramEnd::Blocked);
                }
            }
        }
    }
    // SAFETY: `returning` is `context` or the save area `switch_in_place`
    // returned for the next thread; `context` is not used below, so this is
    // the only reference into those registers, and nothing changes the
    // thread table before the stub has read them.
    let returning = unsafe { &mut *returning };
    returning.rflags = sanitize_user_rflags(returning.rflags);
    // In a preemptive run, re-arm the timer for whichever thread returns.
    if rearm {
        super::timer::redispatch_if_active();
    }
    count_return(returning);
    if profiling {
        threads::profile(threads::Phase::Dispatch, super::cpu::read_tsc().wrapping_sub(entered));
    }
    returning
}

/// Counts the way the stub will return with `context` (the same test as
/// the stub's: SYSRETQ for a lower-half RIP).
pub(crate) fn count_return(context: &UserContext) {
    if context.rip >> 47 == 0 {
        threads::count(&threads::COUNTERS.sysrets);
    } else {
        threads::count(&threads::COUNTERS.iretqs);
    }
}

/// How [`kernel_system_call`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SystemCallEnd {
    /// Back to ring 3 with these registers (after the scheduler's choice
    /// and the timer's re-arming, `syscall_dispatch`).
    Returns(*mut UserContext),
    /// [`vm_enter_path`] answered: the caller returns with its own
    /// registers, and nothing needs re-arming.
    VmEnterReturns,
}

/// How the VMEnter path left a VMEnter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmEnterPath {
    /// Not a VMEnter, or one the path does not take (a message shorter
    /// than VMEnter's, no IPC buffer, no current thread): the general path
    /// handles it.
    NotTaken,
    /// Answered: the reply (an exit, a pending notification or an error)
    /// is in the caller's registers and IPC buffer.
    Answered,
    /// A host interrupt ended the guest's run: the thread is marked to make
    /// its call again, and the general path picks who runs (the interrupt
    /// is taken as ring 3 enables interrupts).
    Interrupted,
}

/// VMEnter without the general system-call path (`docs/VIRTUALISATION.md`,
/// "The exit path"): the message goes from the registers and the IPC
/// buffer straight to `kernel_core::vcpu::enter_guest`, and the reply
/// straight back, without the TCB's message words. A VMEnter that ends
/// with an exit, a pending notification or an error changes neither the
/// scheduler's state nor the timer's deadline (which already bounds the
/// guest's run: `timer::armed_deadline`; a VMEnter deadline before it
/// arms the timer earlier for the run, `timer::arm_for_guest`), so the
/// caller is charged for this call at the next timer interrupt or general
/// system call, as for time it spends in ring 3. A `WAIT`, which may
/// block the thread, takes the general path (`enter_guest` hands it back
/// untouched).
fn vm_enter_path(context: &mut UserContext) -> VmEnterPath {
    use kernel_core::vcpu::{Entered, enter};
    if context.rax != number::VM_ENTER {
        return VmEnterPath::NotTaken;
    }
    let info = MessageInfo::from_word(context.rsi);
    if usize::from(info.length) < enter::MESSAGE_WORDS {
        return VmEnterPath::NotTaken;
    }
    crate::root::with_kernel(|kernel, _| {
        let Some(thread) = kernel.scheduler.current() else { return VmEnterPath::NotTaken };
        let Some(buffer) = threads::IpcWords::new(threads::ipc_buffer_of(&kernel.store, thread)) else {
            return VmEnterPath::NotTaken;
        };
        let mut words = DirectWords { context, buffer };
        let entered = kernel_core::vcpu::enter_guest(
            &mut kernel.store,
            &mut kernel.scheduler,
            &kernel.asids,
            kernel.guest_format,
            &mut super::platform::Machine,
            thread,
            super::cpu::read_tsc,
            &mut words,
        );
        let (info, badge) = match entered {
            Ok(Entered::Exit) => (MessageInfo { label: enter::LABEL_EXIT, length: enter::EXIT_LENGTH, caps: 0 }, 0),
            Ok(Entered::Notification { badge }) => {
                (MessageInfo { label: enter::LABEL_NOTIFICATION, length: enter::STATE_LENGTH, caps: 0 }, badge)
            }
            Ok(Entered::Interrupted) => return VmEnterPath::Interrupted,
            // A `WAIT`, which may block, is the general path's (this path
            // answers from the caller's own registers): nothing happened.
            Ok(Entered::Elsewhere | Entered::Blocked) => return VmEnterPath::NotTaken,
            // Nothing changed, and an error carries no words.
            Err(error) => (MessageInfo { label: error.code(), length: 0, caps: 0 }, 0),
        };
        let context = words.context;
        context.rax = 0;
        context.rsi = info.to_word();
        context.rdi = badge;
        VmEnterPath::Answered
    })
}

/// VMEnter's words where the caller keeps them (`docs/abi.md`,
/// "Registers"): words 0..4 in R10, R8, R9 and R15, the rest at their own
/// indices of its IPC buffer. The message is read from, and the reply
/// written to, the same places; the core reads every message word before
/// it writes a reply word.
struct DirectWords<'a> {
    context: &'a mut UserContext,
    buffer: threads::IpcWords<{ kernel_core::vcpu::enter::EXIT_WORDS }>,
}

impl kernel_core::vcpu::EnterWords for DirectWords<'_> {
    fn has_message(&self) -> bool {
        // `vm_enter_path` takes only whole messages.
        true
    }

    #[inline(always)]
    fn message(&self, index: usize) -> u64 {
        match index {
            0 => self.context.r10,
            1 => self.context.r8,
            2 => self.context.r9,
            3 => self.context.r15,
            _ => self.buffer.read(index).unwrap_or(0),
        }
    }

    #[inline(always)]
    fn reply(&mut self, index: usize, word: u64) {
        match index {
            0 => self.context.r10 = word,
            1 => self.context.r8 = word,
            2 => self.context.r9 = word,
            3 => self.context.r15 = word,
            _ => self.buffer.write(index, word),
        }
    }

    fn may_block(&self) -> bool {
        // A blocked thread's replies live in its TCB's message.
        false
    }
}

/// Why no thread can go back to ring 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    /// The kernel has no thread (boot made none).
    NoThread,
    /// The thread blocked (or stopped) and no other thread is ready.
    NothingToRun,
}

impl Stopped {
    const fn message(self) -> &'static str {
        match self {
            Stopped::NoThread => "user: no kernel thread to run the system call",
            Stopped::NothingToRun => "user: thread blocked with nothing to run",
        }
    }
}

/// A kernel system call (`docs/abi.md`, "Registers"): copies the registers
/// and the IPC buffer's message words and extra capability addresses
/// into the running thread's TCB, tries the IPC fast path for Call and
/// ReplyRecv (`kernel_core::fastpath`: it picks the next thread itself),
/// otherwise runs `kernel_core::syscall::handle` (again while it reports
/// `Preempted`) and asks the scheduler who runs next,
/// switches to that thread if it is another, and puts the results of the
/// thread that now returns (its TCB's message) into its registers. Returns
/// the registers to go back to ring 3 with (`threads::switch_in_place`).
/// `profiling`: the benchmark is measuring (read once per system call).
/// `path`: what [`vm_enter_path`] did with the call.
fn kernel_system_call(context: &mut UserContext, profiling: bool, path: VmEnterPath) -> Result<SystemCallEnd, Stopped> {
    if path == VmEnterPath::Answered {
        return Ok(SystemCallEnd::VmEnterReturns);
    }
    let entered = if profiling { super::cpu::read_tsc() } else { 0 };
    // The caller, named before it is charged: if charging uses up its
    // budget, the scheduler takes it off the CPU, but the call it made still
    // completes (its result waits in its registers until its refill).
    let caller = crate::root::with_kernel(|kernel, _| kernel.scheduler.current());
    // In a preemptive run the caller pays for its time up to here (and
    // the kernel's time is the TSC's).
    super::timer::charge_if_active();
    if context.rax == number::VM_ENTER {
        // VMEnter's deadline is measured against the TSC in every run.
        crate::root::with_kernel(|kernel, _| kernel.now = super::cpu::read_tsc());
    }
    crate::root::with_kernel(|kernel, _| {
        let thread = caller.ok_or(Stopped::NoThread)?;
        let tsc = || if profiling { super::cpu::read_tsc() } else { 0 };
        // The guest's run ended for a host interrupt: the thread makes its
        // call again once the kernel has taken it; the scheduler decides
        // who runs now.
        if path == VmEnterPath::Interrupted {
            let next = super::timer::next_thread(kernel).ok_or(Stopped::NothingToRun)?;
            return switch_to(kernel, thread, next, context, profiling.then(|| (entered, tsc())));
        }
        let info = MessageInfo::from_word(context.rsi);
        // Words 4..length, the extra capability addresses and the receive
        // slot come from the IPC buffer, only when the call uses them (a
        // short Call never looks the buffer up).
        let length = usize::from(info.length).min(MAX_MESSAGE_WORDS);
        let caps = usize::from(info.caps).min(EXTRA_CPTRS);
        let receives = matches!(context.rax, number::RECV | number::NB_RECV | number::REPLY_RECV);
        let buffer = if length > REGISTER_MESSAGE_WORDS || caps > 0 || receives {
            threads::ipc_buffer_of(&kernel.store, thread)
        } else {
            None
        };
        let tcb = kernel.store.tcb_mut(thread);
        tcb.words[..REGISTER_MESSAGE_WORDS].copy_from_slice(&[context.r10, context.r8, context.r9, context.r15]);
        if let Some(words) = tcb.words.get_mut(REGISTER_MESSAGE_WORDS..length) {
            threads::read_ipc_buffer(buffer, REGISTER_MESSAGE_WORDS, words);
        }
        tcb.extra_cptrs = [0; EXTRA_CPTRS];
        if let Some(cptrs) = tcb.extra_cptrs.get_mut(..caps) {
            threads::read_ipc_buffer(buffer, ipc::BUFFER_EXTRA_CPTRS, cptrs);
        }
        // A receive names where a transferred capability may land.
        if receives {
            let mut receive = [0; 2];
            threads::read_ipc_buffer(buffer, ipc::BUFFER_RECEIVE_CPTR, &mut receive);
            let depth = u8::try_from(receive[1]).ok().filter(|depth| (1..=64).contains(depth));
            tcb.receive_slot = depth.map(|depth| ipc::ReceiveSlot { cptr: receive[0], depth });
        }
        // A call that produces no message answers with an empty one.
        tcb.info = MessageInfo::default();
        let args = SyscallArgs { number: context.rax, cptr: context.rdi, info, reply_cptr: context.rdx };
        // The fast path leaves the state `handle` and `schedule` would, with
        // the thread that now runs as the scheduler's current one.
        let fast = match args.number {
            number::CALL => fastpath_call(kernel, thread, args),
            number::REPLY_RECV => fastpath_reply_recv(kernel, thread, args),
            _ => None,
        };
        let (next, handled) = match fast {
            Some(next) => {
                threads::count(&threads::COUNTERS.fast_ipc);
                (next, tsc())
            }
            None => {
                // Each restart continues a long operation where the last one
                // stopped. At each preemption point an expired budget or
                // slice wins: the thread keeps its registers as they were,
                // with its SYSCALL (two bytes) to run again, and the
                // scheduler picks who runs now (as the timer interrupt
                // would); when the thread runs again the call continues
                // where it stopped.
                while kernel_core::syscall::handle(kernel, &mut super::platform::Machine, thread, args).is_err() {
                    if super::timer::preemption_due() {
                        threads::count(&threads::COUNTERS.preempted_calls);
                        context.rip = context.rip.wrapping_sub(SYSCALL_LENGTH);
                        let next =
                            super::timer::next_thread_at_preemption_point(kernel).ok_or(Stopped::NothingToRun)?;
                        if next == thread {
                            // Its registers as they are: the SYSCALL again.
                            return Ok(SystemCallEnd::Returns(core::ptr::from_mut(context)));
                        }
                        let (returns_from_call, returning) =
                            threads::switch_in_place(&mut kernel.store, &kernel.asids, Some(thread), next, context)
                                .ok_or(Stopped::NothingToRun)?;
                        // The caller's registers were kept unchanged: no
                        // results go into them when it runs again.
                        threads::restart_system_call(thread);
                        if returns_from_call {
                            write_results_to(&kernel.store, next, context, returning);
                        } else {
                            return_with_every_register();
                        }
                        return Ok(SystemCallEnd::Returns(returning));
                    }
                }
                let handled = tsc();
                // A VMEnter that returns an exit (or a notification) leaves
                // every other thread as it was and its own thread running:
                // the scheduler would pick it again (a refill or a device
                // that could change that arrives as an interrupt, which
                // ends the guest's run and makes the call run again
                // instead). Its results go straight back.
                if args.number == number::VM_ENTER
                    && kernel.scheduler.current() == Some(thread)
                    && kernel.store.tcb(thread).resumption != Resumption::Again
                {
                    threads::write_results(&kernel.store, thread, context);
                    return Ok(SystemCallEnd::Returns(core::ptr::from_mut(context)));
                }
                (super::timer::next_thread(kernel).ok_or(Stopped::NothingToRun)?, handled)
            }
        };
        switch_to(kernel, thread, next, context, profiling.then_some((entered, handled)))
    })
}

/// The end of a system call on the general path: `thread` made it, the
/// scheduler picked `next`; switches to `next` if it is another thread
/// (stopping it, and asking again, if it cannot run) and puts the results
/// of the thread that now returns into its registers. `profile`: when the
/// call entered the kernel and when it was handled, while the benchmark
/// measures.
fn switch_to(
    kernel: &mut kernel_core::syscall::Kernel<super::objects::PhysStore>,
    thread: ThreadId,
    next: ThreadId,
    context: &mut UserContext,
    profile: Option<(u64, u64)>,
) -> Result<SystemCallEnd, Stopped> {
    let (next, (returns_from_call, returning)) =
        match threads::switch_in_place(&mut kernel.store, &kernel.asids, Some(thread), next, context) {
            Some(switched) => (next, switched),
            None => {
                // Only after the fast path (which picks without
                // `next_runnable`'s checks): a thread that cannot run is
                // stopped, and `next_runnable` picks another.
                ipc::stop_thread(&mut kernel.store, &mut kernel.scheduler, next);
                let next = super::timer::next_thread(kernel).ok_or(Stopped::NothingToRun)?;
                // `next_thread` returns only threads the table knows.
                let switched = threads::switch_in_place(&mut kernel.store, &kernel.asids, Some(thread), next, context);
                (next, switched.ok_or(Stopped::NothingToRun)?)
            }
        };
    if returns_from_call {
        write_results_to(&kernel.store, next, context, returning);
    } else {
        return_with_every_register();
    }
    if let Some((entered, handled)) = profile {
        threads::profile(threads::Phase::Handle, handled.wrapping_sub(entered));
        threads::profile(threads::Phase::Switch, super::cpu::read_tsc().wrapping_sub(handled));
    }
    Ok(SystemCallEnd::Returns(returning))
}

/// Writes `next`'s system-call results into the registers it returns with:
/// `returning`, which is either `context` or `next`'s own save area.
#[inline(always)]
fn write_results_to(store: &impl ObjectStore, next: ThreadId, context: &mut UserContext, returning: *mut UserContext) {
    if core::ptr::eq(returning, context) {
        threads::write_results(store, next, context);
    } else {
        // SAFETY: `returning` is `next`'s save area, not `context`
        // (compared), and no other reference into it exists
        // (`threads::SaveAreas`); `write_results` does not change the
        // thread table.
        threads::write_results(store, next, unsafe { &mut *returning });
    }
}

// The entry stub, the two ways back to ring 3, and the kernel-entry stack.
global_asm!(
    r#"
    .text
    .balign 16
    .global syscall_entry
syscall_entry:
    /* CPL 0, IF clear, RSP still the user's: park it, take the kernel's. */
    mov qword ptr [rip + syscall_user_rsp], rsp
    /* Save into the running thread's save area (threads::SaveAreas), or
       the top of the kernel-entry stack when no thread of the table runs;
       pushing from its end fills in a UserContext. */
    mov rsp, qword ptr [rip + syscall_save_area_top]
    push qword ptr [rip + syscall_user_rsp]      /* rsp */
    push r11                                     /* rflags */
    push rcx                                     /* rip */
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    mov rdi, rsp
    /* The kernel-entry stack below its top context-sized block (which the
       registers may occupy): the same alignment as a push from the top. */
    lea rsp, [rip + kernel_entry_stack_top - {context_bytes}]
    call syscall_dispatch
    /* Back to ring 3 with the context at RAX (syscall_dispatch returned
       it): IRETQ for a thread that did not enter through SYSCALL (every
       register back, RCX and R11 included), else SYSRETQ if RIP is a
       lower-half address, otherwise IRETQ (see the module documentation). */
    cmp byte ptr [rip + {return_full}], 0
    jne syscall_return_full
    mov rcx, qword ptr [rax + {rip}]
    shr rcx, 47
    jnz return_to_user_iretq
    mov rbx, qword ptr [rax + {rbx}]
    mov rdx, qword ptr [rax + {rdx}]
    mov rsi, qword ptr [rax + {rsi}]
    mov rdi, qword ptr [rax + {rdi}]
    mov rbp, qword ptr [rax + {rbp}]
    mov r8, qword ptr [rax + {r8}]
    mov r9, qword ptr [rax + {r9}]
    mov r10, qword ptr [rax + {r10}]
    mov r12, qword ptr [rax + {r12}]
    mov r13, qword ptr [rax + {r13}]
    mov r14, qword ptr [rax + {r14}]
    mov r15, qword ptr [rax + {r15}]
    mov rcx, qword ptr [rax + {rip}]
    mov r11, qword ptr [rax + {rflags}]
    mov rsp, qword ptr [rax + {rsp}]
    mov rax, qword ptr [rax + {rax}]
    sysretq

syscall_return_full:
    mov byte ptr [rip + {return_full}], 0
    /* RAX points at a UserContext; RSP is a kernel stack. */
return_to_user_iretq:
    push {user_ss}
    push qword ptr [rax + {rsp}]
    push qword ptr [rax + {rflags}]
    push {user_cs}
    push qword ptr [rax + {rip}]
    mov rbx, qword ptr [rax + {rbx}]
    mov rcx, qword ptr [rax + {rcx}]
    mov rdx, qword ptr [rax + {rdx}]
    mov rsi, qword ptr [rax + {rsi}]
    mov rdi, qword ptr [rax + {rdi}]
    mov rbp, qword ptr [rax + {rbp}]
    mov r8, qword ptr [rax + {r8}]
    mov r9, qword ptr [rax + {r9}]
    mov r10, qword ptr [rax + {r10}]
    mov r11, qword ptr [rax + {r11}]
    mov r12, qword ptr [rax + {r12}]
    mov r13, qword ptr [rax + {r13}]
    mov r14, qword ptr [rax + {r14}]
    mov r15, qword ptr [rax + {r15}]
    mov rax, qword ptr [rax + {rax}]
    .global user_return_iretq
user_return_iretq:
    iretq

    /* resume_user_context(context): back to ring 3 with IRETQ, from
       whatever kernel stack this runs on (it is abandoned). */
    .balign 16
    .global resume_user_context
resume_user_context:
    mov rax, rdi
    jmp return_to_user_iretq

    /* enter_user_mode(context): save the kernel's callee-saved registers
       and stack pointer, then IRETQ into ring 3. */
    .balign 16
    .global enter_user_mode
enter_user_mode:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov qword ptr [rip + user_resume_rsp], rsp
    mov rax, rdi
    jmp return_to_user_iretq

    /* resume_kernel_context(): return from the latest enter_user_mode with
       the kernel's segments and flags (interrupts off, AC and DF clear). */
    .balign 16
    .global resume_kernel_context
resume_kernel_context:
    mov rsp, qword ptr [rip + user_resume_rsp]
    mov eax, {kernel_data}
    mov ss, ax
    mov ds, ax
    mov es, ax
    push 2
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .section .data.syscall_entry, "aw", @progbits
    .balign 8
    .global syscall_save_area_top
syscall_save_area_top:
    .quad kernel_entry_stack_top

    .section .bss.syscall_entry, "aw", @nobits
    .balign 8
syscall_user_rsp:
    .skip 8
user_resume_rsp:
    .skip 8

    .section .bss.kernel_entry_stack, "aw", @nobits
    .balign 4096
    .global kernel_entry_stack_guard
kernel_entry_stack_guard:                 /* unmapped by paging::protect_kernel_image */
    .skip 4096
    .global kernel_entry_stack_bottom
kernel_entry_stack_bottom:
    .skip {stack_bytes}
    .global kernel_entry_stack_top
kernel_entry_stack_top:
    .text
    "#,
    rax = const offset_of!(UserContext, rax),
    rbx = const offset_of!(UserContext, rbx),
    rcx = const offset_of!(UserContext, rcx),
    rdx = const offset_of!(UserContext, rdx),
    rsi = const offset_of!(UserContext, rsi),
    rdi = const offset_of!(UserContext, rdi),
    rbp = const offset_of!(UserContext, rbp),
    r8 = const offset_of!(UserContext, r8),
    r9 = const offset_of!(UserContext, r9),
    r10 = const offset_of!(UserContext, r10),
    r11 = const offset_of!(UserContext, r11),
    r12 = const offset_of!(UserContext, r12),
    r13 = const offset_of!(UserContext, r13),
    r14 = const offset_of!(UserContext, r14),
    r15 = const offset_of!(UserContext, r15),
    rip = const offset_of!(UserContext, rip),
    rflags = const offset_of!(UserContext, rflags),
    rsp = const offset_of!(UserContext, rsp),
    user_ss = const USER_DATA_SELECTOR,
    user_cs = const USER_CODE_SELECTOR,
    kernel_data = const gdt::KERNEL_DATA,
    stack_bytes = const KERNEL_ENTRY_STACK_BYTES,
    context_bytes = const size_of::<UserContext>(),
    return_full = sym SYSCALL_RETURN_FULL,
);
