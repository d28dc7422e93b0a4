//! Preemption: the local APIC timer (`arch::apic`) drives the scheduler
//! while user threads run (issue "Microkernel core", scheduling).
//!
//! **Interrupts only in ring 3.** The kernel always runs with RFLAGS.IF
//! clear (FMASK clears it on SYSCALL, interrupt and exception gates clear
//! it, `resume_kernel` restores flags 0x2). A *preemptive* run
//! (`user::run_threads_preemptive`) enters ring 3 with IF set, and every
//! return to ring 3 keeps it set (`arch::syscall::sanitize_user_rflags`
//! sets IF on every return, from system calls and faults too). System
//! calls in a preemptive run charge the caller on entry
//! ([`charge_if_active`]) and re-arm the timer for whichever thread
//! returns ([`redispatch_if_active`]), so a thread that makes system calls
//! is preempted like one that only computes.
//!
//! **The timer interrupt** ([`TIMER_VECTOR`](super::apic::TIMER_VECTOR))
//! enters through its own stub, which saves a [`TrapFrame`] exactly as the
//! exception path does, on the kernel-entry stack (TSS RSP0). From ring 0
//! it cannot happen (IF is clear there): it is counted and ignored. From
//! ring 3, [`timer_interrupt_dispatch`]:
//!
//! 1. charges the interrupted thread: `Scheduler::account` with the TSC
//!    as the time, then `release_due`; the ticks since its dispatch also go
//!    into this module's per-thread measurement (the shares the temporal
//!    test prints);
//! 2. picks the next thread (`user::next_runnable`; after a round-robin
//!    slice, `Scheduler::yield_current` first). If nothing can run but a
//!    budget is waiting for its refill, the kernel idles (spins on the TSC,
//!    interrupts off) until that refill; if nothing can run at all, the run
//!    ends as blocked;
//! 3. keeps the preempted thread's registers as they were, like a thread
//!    whose fault went to its handler (`threads::park_after_fault`: it
//!    resumes with every register unchanged), and loads the next thread's
//!    (`threads::switch`, which writes CR3 if needed, and its system call's
//!    results if it left ring 3 through one);
//! 4. arms the one-shot timer for `Scheduler::timer_deadline` (budget
//!    exhaustion or the earliest refill), or for a round-robin slice of
//!    [`ROUND_ROBIN_SLICE`] TSC ticks when other threads of the running
//!    thread's priority are ready, whichever is first;
//! 5. returns to ring 3 through its own IRETQ with IF set.
//!
//! **Device interrupts** (issue "IOPort ranges, IRQ control and IRQ
//! handlers"). The 16 remapped 8259 vectors enter through one stub each
//! (pushing the vector) and a common path that saves a [`TrapFrame`] like
//! the timer's; [`pic_interrupt_dispatch`] drops a spurious IRQ 7 or 15
//! (`pic::is_spurious`), hands the line to `kernel_core::irq::deliver`
//! (which masks it and signals the bound notification; a line with none
//! is masked and the interrupt counted as ignored), sends the PIC its end
//! of interrupt, and, in a preemptive run, takes the timer path's steps 1
//! to 5, so that a driver woken by its interrupt runs at once if its
//! priority is the highest. Lines are unmasked only while a notification
//! is bound, and interrupts arrive only in ring 3 of a preemptive run.
//!
//! The spurious-interrupt vector has a gate that counts the interrupt and
//! returns.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU64;

use kernel_core::ipc::{self, ThreadId};
use kernel_core::irq::{self, Delivery};
use kernel_core::store::ObjectStore;
use kernel_core::syscall::Kernel;

use super::apic::{self, ApicSummary, PIC_VECTOR_BASE, SPURIOUS_VECTOR, TIMER_VECTOR};
use super::idt::{self, TrapFrame};
use super::objects::PhysStore;
use super::pic;
use super::platform::Machine;
use super::syscall::{self, UserContext};
use super::{cpu, threads, user};

/// A round-robin time slice between threads of one priority, in TSC
/// ticks (1 ms at 1 GHz; under `-icount shift=0`, a million instructions).
pub(crate) const ROUND_ROBIN_SLICE: u64 = 1_000_000;
/// RFLAGS.IF.
const INTERRUPT_ENABLE: u64 = 1 << 9;

/// Timer interrupts taken from ring 3.
pub(crate) static USER_TICKS: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken in ring 0 (none should be: counted, ignored).
pub(crate) static KERNEL_TICKS: AtomicU64 = AtomicU64::new(0);
/// Spurious interrupts (counted by the assembly stub) and PIC interrupts
/// nobody handles.
#[unsafe(no_mangle)]
pub(crate) static IGNORED_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// PIC interrupts delivered to a bound notification.
pub(crate) static DEVICE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// The distance between two PIC entry stubs (see the assembly below).
const PIC_STUB_BYTES: u64 = 16;

/// The TSC ticks one thread ran in the current preemptive run.
#[derive(Clone, Copy)]
pub(crate) struct Ran {
    pub(crate) thread: ThreadId,
    pub(crate) ticks: u64,
}

/// The state of a preemptive run.
struct Run {
    active: bool,
    /// The thread dispatched last and the TSC when it was.
    dispatched: Option<(ThreadId, u64)>,
    /// When the running thread's round-robin slice ends, if it shares its
    /// priority.
    slice_end: Option<u64>,
    /// TSC at the run's start.
    started_at: u64,
    ran: heapless::Vec<Ran, { threads::MAX_USER_THREADS }>,
    /// Thread switches made by the timer path.
    switches: u64,
    /// The TSC deadline the timer is armed for, if it is.
    armed: Option<u64>,
    /// The thread whose round-robin slice `slice_end` ends.
    slice_owner: Option<ThreadId>,
    /// A VMEnter deadline the timer was armed for since [`dispatch`]
    /// armed it for `armed` ([`arm_for_guest`]).
    guest_armed: Option<u64>,
}

struct RunCell(UnsafeCell<Run>);

// SAFETY: one CPU: the state is reached only through `with_run`, from the
// run set-up in `user` (interrupts off) and from the timer interrupt,
// which arrives only in ring 3 and so never while another `with_run` is
// in progress; `with_run` is never called inside itself.
unsafe impl Sync for RunCell {}

static RUN: RunCell = RunCell(UnsafeCell::new(Run {
    active: false,
    dispatched: None,
    slice_end: None,
    started_at: 0,
    ran: heapless::Vec::new(),
    switches: 0,
    armed: None,
    slice_owner: None,
    guest_armed: None,
}));

fn with_run<R>(action: impl FnOnce(&mut Run) -> R) -> R {
    // SAFETY: see `RunCell`: no other reference exists while `action` runs.
    let run = unsafe { &mut *RUN.0.get() };
    action(run)
}

impl Run {
    /// Adds the ticks since the last dispatch to that thread, up to `now`.
    fn charge(&mut self, now: u64) {
        if let Some((thread, since)) = self.dispatched.take()
            && let Some(entry) = self.ran.iter_mut().find(|entry| entry.thread == thread)
        {
            entry.ticks = entry.ticks.saturating_add(now.saturating_sub(since));
        }
    }
}

unsafe extern "C" {
    static timer_interrupt_entry: u8;
    static ignored_interrupt_entry: u8;
    static pic_interrupt_entries: u8;
    /// `arch::syscall`'s ring-3 entry (saves the kernel context for
    /// `resume_kernel`, then IRETQ). Called directly, not through
    /// `run_in_user_mode`, because that clears IF (see the module
    /// documentation).
    fn enter_user_mode(context: *const UserContext);
}

/// Installs the interrupt gates and enables the local APIC (timer masked,
/// legacy PIC masked). Returns what the APIC reported, or `None` if it
/// could not be reached.
///
/// # Safety
///
/// Call once on the boot CPU with interrupts off, after `idt::init` and
/// `paging::protect_kernel_image`.
pub(crate) unsafe fn init() -> Option<ApicSummary> {
    let timer = core::ptr::addr_of!(timer_interrupt_entry) as u64;
    let ignored = core::ptr::addr_of!(ignored_interrupt_entry) as u64;
    let pic_entries = core::ptr::addr_of!(pic_interrupt_entries) as u64;
    // SAFETY: per this function's contract; the stubs below are interrupt
    // entries that save and restore every register they touch.
    unsafe { idt::set_interrupt_gate(TIMER_VECTOR, timer) };
    for (line, vector) in (PIC_VECTOR_BASE..PIC_VECTOR_BASE + 16).enumerate() {
        // SAFETY: as above; stub `line` starts `line * PIC_STUB_BYTES`
        // bytes after the first (the assembly aligns each to 16 bytes).
        unsafe { idt::set_interrupt_gate(vector, pic_entries + line as u64 * PIC_STUB_BYTES) };
    }
    // SAFETY: as above.
    unsafe { idt::set_interrupt_gate(SPURIOUS_VECTOR, ignored) };
    // SAFETY: per this function's contract, and the gates are in place.
    unsafe { apic::init() }
}

/// Starts a preemptive run of `run_threads`: forgets the last run's
/// figures and charges nothing for the time before now (the scheduler's
/// `account` runs with no thread on a scheduling context current, or with
/// the root thread, which has none).
pub(crate) fn start_run(kernel: &mut Kernel<PhysStore>, threads: &[ThreadId]) {
    // Count mode: calibrate (once) before the run's clock starts.
    let _ = apic::calibrate();
    let now = cpu::read_tsc();
    kernel.now = now;
    kernel.scheduler.account(&mut kernel.store, now);
    with_run(|run| {
        run.active = true;
        run.dispatched = None;
        run.slice_end = None;
        run.started_at = now;
        run.switches = 0;
        run.ran.clear();
        for &thread in threads {
            let _ = run.ran.push(Ran { thread, ticks: 0 });
        }
    });
}

/// Arms the timer for the running thread (see the module documentation,
/// step 4) and notes its dispatch.
pub(crate) fn dispatch(kernel: &mut Kernel<PhysStore>) {
    let now = cpu::read_tsc();
    let budget = kernel.scheduler.timer_deadline(&kernel.store, now);
    let current = kernel.scheduler.current();
    let shares_priority =
        current.is_some_and(|thread| !kernel.scheduler.queue(kernel.store.tcb(thread).priority).is_empty());
    // A thread keeps the slice it started: returning from a system call
    // does not start a new one (else a thread that makes calls would never
    // give way to its equals). A slice that ended while the thread was in
    // the kernel stays ended: the timer is armed in the past, fires as the
    // thread returns to ring 3, and the timer path rotates the priority.
    let slice_end = shares_priority.then(|| {
        with_run(|run| match run.slice_end {
            Some(end) if run.slice_owner == current => end,
            _ => now.saturating_add(ROUND_ROBIN_SLICE),
        })
    });
    let deadline = match (budget, slice_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match deadline {
        Some(deadline) => apic::arm(deadline),
        None => apic::disarm(),
    }
    with_run(|run| {
        run.slice_end = slice_end;
        run.slice_owner = if slice_end.is_some() { current } else { None };
        run.armed = deadline;
        run.guest_armed = None;
        run.dispatched = current.map(|thread| (thread, cpu::read_tsc()));
    });
}

/// In a preemptive run, the TSC deadline the timer is armed for (the
/// running thread's budget or slice end): a guest's run must end by then
/// (`vtx` bounds it with the VMX-preemption timer too).
pub(crate) fn armed_deadline() -> Option<u64> {
    with_run(|run| if run.active { run.armed } else { None })
}

/// Before a guest runs for VMEnter with `deadline`: in a preemptive run,
/// arms the timer for the deadline if it comes before the one the timer
/// is armed for (the thread's budget or slice end, which [`dispatch`]
/// arms again at the next kernel entry: an early interrupt in ring 3 only
/// costs a pass through the timer path). Returns when the run must end:
/// the earlier of the two (the bound the `vtx` backend gives the
/// VMX-preemption timer). Outside a preemptive run only the
/// VMX-preemption timer can bound the run.
pub(crate) fn arm_for_guest(deadline: u64) -> Option<u64> {
    with_run(|run| {
        let armed = if run.active { run.armed } else { None };
        if run.active && armed.is_none_or(|armed| deadline < armed) && run.guest_armed != Some(deadline) {
            apic::arm(deadline);
            run.guest_armed = Some(deadline);
        }
        Some(armed.map_or(deadline, |armed| armed.min(deadline)))
    })
}

/// Whether a long system call should stop at its next preemption point: in
/// a preemptive run, the running thread's budget or slice has run out (the
/// timer's deadline has passed, so its interrupt is pending and arrives as
/// soon as ring 3 enables interrupts again).
pub(crate) fn preemption_due() -> bool {
    with_run(|run| run.active && run.armed.is_some_and(|deadline| cpu::read_tsc() >= deadline))
}

/// In a preemptive run: charges the running thread up to now and
/// releases refilled threads (the system-call entry's share of
/// [`timer_interrupt_dispatch`]'s step 1). Outside one: nothing, so the
/// non-preemptive runs (and the IPC benchmark) pay nothing for it.
pub(crate) fn charge_if_active() {
    if !with_run(|run| run.active) {
        return;
    }
    let now = cpu::read_tsc();
    let caller = crate::root::with_kernel(|kernel, _| kernel.scheduler.current());
    // The measurement counts the system call's kernel time for the caller
    // too (up to `redispatch_if_active`), as its budget does.
    with_run(|run| {
        run.charge(now);
        run.dispatched = caller.map(|thread| (thread, now));
    });
    crate::root::with_kernel(|kernel, _| {
        kernel.now = now;
        kernel.scheduler.account(&mut kernel.store, now);
        kernel.scheduler.release_due(&mut kernel.store, now);
    });
}

/// In a preemptive run: closes the caller's measured interval and arms
/// the timer for the thread about to return to ring 3 ([`dispatch`]).
/// Outside one: nothing.
pub(crate) fn redispatch_if_active() {
    if with_run(|run| run.active) {
        let now = cpu::read_tsc();
        with_run(|run| run.charge(now));
        crate::root::with_kernel(|kernel, _| dispatch(kernel));
    }
}

/// What a preemptive run measured.
pub(crate) struct Measured {
    /// TSC ticks from the run's start to its end.
    pub(crate) total: u64,
    /// Each thread's ticks in ring 3 (and in the system calls it made
    /// between two timer interrupts).
    pub(crate) ran: heapless::Vec<Ran, { threads::MAX_USER_THREADS }>,
    /// Thread switches made by the timer path.
    pub(crate) switches: u64,
}

/// Ends a preemptive run: stops the timer and returns the figures.
pub(crate) fn end_run() -> Measured {
    apic::disarm();
    let now = cpu::read_tsc();
    with_run(|run| {
        run.charge(now);
        run.active = false;
        run.slice_end = None;
        Measured { total: now.saturating_sub(run.started_at), ran: run.ran.clone(), switches: run.switches }
    })
}

/// Enters ring 3 with `context` and interrupts enabled; returns when the
/// run ends (like `syscall::run_in_user_mode`).
///
/// # Safety
///
/// As for `syscall::run_in_user_mode`; in addition the timer gate must be
/// installed ([`init`]).
pub(crate) unsafe fn run_in_user_mode_preemptible(context: &UserContext) {
    let context = UserContext { rflags: syscall::sanitize_user_rflags(context.rflags) | INTERRUPT_ENABLE, ..*context };
    // SAFETY: per this function's contract (that of `run_in_user_mode`,
    // which makes the same call); IF set only lets the timer interrupt in
    // while ring 3 runs: the gates clear it again.
    unsafe { enter_user_mode(&raw const context) };
}

/// Copies `context` into the part of `frame` IRETQ and the stub restore.
fn load_frame(frame: &mut TrapFrame, context: &UserContext) {
    frame.rax = context.rax;
    frame.rbx = context.rbx;
    frame.rcx = context.rcx;
    frame.rdx = context.rdx;
    frame.rsi = context.rsi;
    frame.rdi = context.rdi;
    frame.rbp = context.rbp;
    frame.r8 = context.r8;
    frame.r9 = context.r9;
    frame.r10 = context.r10;
    frame.r11 = context.r11;
    frame.r12 = context.r12;
    frame.r13 = context.r13;
    frame.r14 = context.r14;
    frame.r15 = context.r15;
    frame.rip = context.rip;
    frame.rsp = context.rsp;
    frame.rflags = context.rflags;
}

/// Picks the next thread; idles until the earliest refill or wake-up
/// (`Scheduler::timer_deadline`) when only throttled or sleeping threads
/// remain, or until a device interrupts when a thread waits for one
/// (`irq::awaited`). `None`: nothing can run any more (a sleeping thread
/// keeps the run alive: its wake-up is a deadline).
///
/// The kernel idles inside the kernel's state. While it waits for a
/// device it keeps interrupts off and polls the PICs for the request
/// ([`pic::poll`]), delivering it here as the interrupt path would
/// instead of taking the interrupt. While it waits only for a time and
/// every PIC line is masked, it halts the CPU with the local APIC timer
/// armed for that time ([`halt_until`]); with a line unmasked (a
/// driver's notification bound, nobody waiting on it) it spins on the TSC
/// instead, since that line's interrupt could not be taken in ring 0.
fn next_or_idle(kernel: &mut Kernel<PhysStore>, slice_ended: bool) -> Option<ThreadId> {
    if slice_ended {
        kernel.scheduler.yield_current(&mut kernel.store);
    }
    loop {
        if let Some(next) = user::next_runnable(kernel) {
            return Some(next);
        }
        let refill = kernel.scheduler.timer_deadline(&kernel.store, cpu::read_tsc());
        let device = irq::awaited(kernel);
        if refill.is_none() && !device {
            return None;
        }
        if let Some(until) = refill
            && !device
            && apic::present()
            && pic::every_line_masked()
        {
            halt_until(until);
        }
        loop {
            if device && let Some(line) = pic::poll() {
                if !pic::is_spurious(line) {
                    let delivery = irq::deliver(kernel, &mut Machine, line);
                    pic::end_of_interrupt(line);
                    threads::count(if delivery == Delivery::Unbound {
                        &IGNORED_INTERRUPTS
                    } else {
                        &DEVICE_INTERRUPTS
                    });
                }
                break;
            }
            if refill.is_some_and(|refill| cpu::read_tsc() >= refill) {
                break;
            }
            core::hint::spin_loop();
        }
        let now = cpu::read_tsc();
        kernel.now = now;
        kernel.scheduler.account(&mut kernel.store, now);
        kernel.scheduler.release_due(&mut kernel.store, now);
    }
}

/// Set while [`halt_until`] halts: a timer interrupt taken in ring 0 then
/// is the idle loop's wake-up, not a stray one.
static IDLING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Timer interrupts that woke the idle loop.
pub(crate) static IDLE_WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// Halts the CPU until the TSC reaches `deadline`, the local APIC timer
/// armed for it (the caller re-arms the timer for the next thread with
/// [`dispatch`]). Interrupts are enabled only around each HLT (`sti`
/// holds them off until after the HLT begins, so the wake-up cannot slip
/// in before it): the caller checked that no PIC line can interrupt, and
/// the timer's gate taken from ring 0 only counts the interrupt.
fn halt_until(deadline: u64) {
    while cpu::read_tsc() < deadline {
        apic::arm(deadline);
        IDLING.store(true, core::sync::atomic::Ordering::Relaxed);
        // SAFETY: the kernel's interrupt gates are installed (`init`) and
        // their ring-0 paths touch only counters and the APIC's end of
        // interrupt: the timer's (`timer_interrupt_dispatch`), the
        // spurious vector's, and none of the PIC's, whose lines are all
        // masked (the caller checked) so that none can arrive. CLI
        // restores the kernel's rule of running with interrupts off.
        unsafe { core::arch::asm!("sti", "hlt", "cli") };
        IDLING.store(false, core::sync::atomic::Ordering::Relaxed);
    }
}

/// The next thread for the system-call and fault paths: in a preemptive
/// run it idles until a refill when only throttled threads remain (like
/// the timer path), otherwise it is `user::next_runnable`. `None`:
/// nothing can run any more.
pub(crate) fn next_thread(kernel: &mut Kernel<PhysStore>) -> Option<ThreadId> {
    if with_run(|run| run.active) { next_or_idle(kernel, false) } else { user::next_runnable(kernel) }
}

/// [`next_thread`] at a preemption point: a round-robin slice that has
/// ended gives the CPU to the next thread of the same priority first.
pub(crate) fn next_thread_at_preemption_point(kernel: &mut Kernel<PhysStore>) -> Option<ThreadId> {
    if !with_run(|run| run.active) {
        return user::next_runnable(kernel);
    }
    let now = cpu::read_tsc();
    let slice_ended = with_run(|run| run.slice_end.is_some_and(|end| now >= end));
    next_or_idle(kernel, slice_ended)
}

/// What the timer path decided.
enum Decision {
    /// Return to ring 3 through the stub (the frame holds the registers).
    Return,
    /// Return with `syscall::resume_user` (a non-lower-half RIP: its IRETQ
    /// is the one the fault path recognises).
    Resume(UserContext),
    /// Nothing can run: the run ends.
    Blocked,
}

/// The Rust side of the timer interrupt (see the module documentation).
#[unsafe(no_mangle)]
extern "C" fn timer_interrupt_dispatch(frame: &mut TrapFrame) {
    apic::end_of_interrupt();
    if frame.cs & 3 != 3 && IDLING.load(core::sync::atomic::Ordering::Relaxed) {
        // The idle loop's wake-up (`halt_until`).
        threads::count(&IDLE_WAKEUPS);
        return;
    }
    if frame.cs & 3 != 3 || !with_run(|run| run.active) {
        // Ring 0 runs with interrupts off; an interrupt left pending by an
        // earlier run arrives in ring 3 before `active`: either way there
        // is nothing to preempt.
        threads::count(&KERNEL_TICKS);
        return;
    }
    threads::count(&USER_TICKS);
    preempt(frame);
}

/// The Rust side of a PIC interrupt (see the module documentation).
#[unsafe(no_mangle)]
extern "C" fn pic_interrupt_dispatch(frame: &mut TrapFrame) {
    let line = frame.vector.checked_sub(u64::from(PIC_VECTOR_BASE)).and_then(|line| u8::try_from(line).ok());
    let Some(line) = line.filter(|line| *line < 16) else {
        threads::count(&IGNORED_INTERRUPTS);
        return;
    };
    if pic::is_spurious(line) {
        threads::count(&IGNORED_INTERRUPTS);
        return;
    }
    // Masked first (by `deliver`), then the end of interrupt: the line
    // cannot interrupt again before the driver's Ack.
    let delivery = crate::root::with_kernel(|kernel, _| irq::deliver(kernel, &mut Machine, line));
    pic::end_of_interrupt(line);
    if delivery == Delivery::Unbound {
        threads::count(&IGNORED_INTERRUPTS);
        return;
    }
    threads::count(&DEVICE_INTERRUPTS);
    if frame.cs & 3 == 3 && with_run(|run| run.active) {
        preempt(frame);
    }
}

/// Steps 1 to 5 of the timer path for an interrupt that arrived in ring 3
/// of a preemptive run: charge, pick the next thread, switch, re-arm.
fn preempt(frame: &mut TrapFrame) {
    let now = cpu::read_tsc();
    let slice_ended = with_run(|run| {
        run.charge(now);
        run.slice_end.is_some_and(|end| now >= end)
    });
    let interrupted = user::context_of(frame);
    let decision = crate::root::with_kernel(|kernel, _| {
        let previous = kernel.scheduler.current();
        kernel.now = now;
        kernel.scheduler.account(&mut kernel.store, now);
        kernel.scheduler.release_due(&mut kernel.store, now);
        let Some(next) = next_or_idle(kernel, slice_ended) else {
            if let Some(previous) = previous {
                threads::park_after_fault(&mut kernel.store, previous, interrupted);
            }
            return Decision::Blocked;
        };
        let mut decision = Decision::Return;
        if previous != Some(next) {
            if let Some(previous) = previous {
                threads::park_after_fault(&mut kernel.store, previous, interrupted);
            }
            // `next_runnable` returns only threads that can run; should a
            // switch still fail, that thread is stopped and another picked:
            // a default (empty) context is never loaded.
            let mut next = next;
            let context = loop {
                let mut context = UserContext::default();
                match threads::switch(&mut kernel.store, &kernel.asids, None, next, &mut context) {
                    Some(returns_from_call) => {
                        if returns_from_call {
                            threads::write_results(&kernel.store, next, &mut context);
                        }
                        break Some(context);
                    }
                    None => {
                        ipc::stop_thread(&mut kernel.store, &mut kernel.scheduler, next);
                        match next_or_idle(kernel, false) {
                            Some(another) => next = another,
                            None => break None,
                        }
                    }
                }
            };
            let Some(context) = context else { return Decision::Blocked };
            with_run(|run| run.switches += 1);
            if context.rip >> 47 == 0 {
                load_frame(frame, &context);
            } else {
                decision = Decision::Resume(context);
            }
        }
        dispatch(kernel);
        decision
    });
    match decision {
        Decision::Return => frame.rflags = syscall::sanitize_user_rflags(frame.rflags) | INTERRUPT_ENABLE,
        Decision::Resume(context) => {
            // SAFETY: `threads::switch` loaded the thread's address space;
            // the run is live (`active`); this interrupt path holds nothing
            // with a destructor.
            unsafe { syscall::resume_user(&context) }
        }
        Decision::Blocked => {
            crate::println!("user: every thread blocked or stopped, nothing to run");
            user::end_program(user::ProgramEnd::Blocked);
        }
    }
}

// The timer's entry stub saves a TrapFrame like `idt`'s exception stubs
// (vector 0x20, error code 0); the PIC's 16 stubs, 16 bytes apart, push
// their vector and share the same saving path; the ignored-interrupt stub
// only counts.
global_asm!(
    r#"
    /* With the error code and vector pushed: saves the rest of a TrapFrame,
       calls HANDLER(frame) with DF and AC clear (ring 3 may have left them
       set; AC would switch SMAP off), restores and returns with IRETQ. */
    .macro trap_frame_call handler
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
    cld
    pushfq
    and qword ptr [rsp], {clear_alignment_check}
    popfq
    call \handler
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
    .endm

    .text
    .balign 16
    .global timer_interrupt_entry
timer_interrupt_entry:
    push 0
    push {vector}
    trap_frame_call timer_interrupt_dispatch

    .balign 16
    .global pic_interrupt_entries
pic_interrupt_entries:
    .set pic_line, 0
    .rept 16
    .balign 16
    push 0
    push {pic_base} + pic_line
    jmp pic_interrupt_common
    .set pic_line, pic_line + 1
    .endr

    .balign 16
pic_interrupt_common:
    trap_frame_call pic_interrupt_dispatch

    .balign 16
    .global ignored_interrupt_entry
ignored_interrupt_entry:
    lock inc qword ptr [rip + IGNORED_INTERRUPTS]
    iretq
    "#,
    vector = const TIMER_VECTOR,
    pic_base = const PIC_VECTOR_BASE,
    clear_alignment_check = const !(1i32 << 18), // RFLAGS.AC, sign-extended
);
