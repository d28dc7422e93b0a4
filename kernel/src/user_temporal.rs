//! Temporal isolation on the real kernel (`inject=user-temporal`): the
//! local APIC timer preempts a spinning thread when its scheduling
//! context's budget runs out (`arch::timer`).
//!
//! The kernel builds two threads as the root thread, through the
//! system-call layer like [`crate::user_pds`] (Untyped::Retype of a TCB and
//! a scheduling context, SchedControl::Configure, TCB::SetPriority,
//! BindSchedContext, Resume), suspends the root thread, and runs them
//! preemptively (`user::run_threads_preemptive`). Neither holds any
//! capability: they only spin and use the debugging calls.
//!
//! | thread | priority | scheduling context | program |
//! | --- | ---: | --- | --- |
//! | `pd-spinner` | 200 | [`SPINNER_BUDGET`] in every [`PERIOD`] (20 %) | forever: a system call (Yield), then 1,000 loop iterations in RCX and R11 that check each other (a thread preempted in ring 3 and resumed through another thread's system call must get RCX and R11 back, which SYSRET would overwrite: it prints "registers lost" and exits otherwise); its budget runs out in ring 3 and in the kernel alike, and a call made after it ran out still completes (the thread then waits for its refill) |
//! | `pd-counter` | 1 | [`PERIOD`] in every [`PERIOD`] (the whole CPU) | counts loop iterations for [`COUNTER_RUN_TICKS`] TSC ticks (RDI), with a Yield every 4,096, prints the count in hex, exits |
//!
//! Times are TSC ticks (under `-icount shift=0`, instructions). The run
//! ends when `pd-counter` exits, although the spinner could still run; the
//! spinner is then stopped. The kernel prints each thread's ticks as the
//! timer path measured them and its share of the run.

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::ipc::{self, ThreadId};
use kernel_core::syscall::{Kernel, label};

use crate::arch::objects::PhysStore;
use crate::arch::user::{self, Program, ProgramEnd, UserThreadSpec};
use crate::arch::{cpu, timer};
use crate::root;
use crate::user_pds::{StepFailed, invoke, retype};

/// The scheduling period, in TSC ticks.
pub(crate) const PERIOD: u64 = 1_000_000;
/// The spinner's budget per period: 20 %.
pub(crate) const SPINNER_BUDGET: u64 = 200_000;
/// How long the counter counts: 30 periods.
pub(crate) const COUNTER_RUN_TICKS: u64 = 30 * PERIOD;

/// Root CNode slots for the threads' objects: `FIRST_SLOT + 2 * thread`
/// its TCB, `+ 1` its scheduling context (user_pds uses 200..235).
const FIRST_SLOT: u64 = 240;
/// Object types (`docs/abi.md`, "Object types").
const TYPE_TCB: u64 = 2;
const TYPE_SCHED_CONTEXT: u64 = 3;
/// A scheduling context's size: 2^8 bytes.
const SCHED_CONTEXT_SIZE_BITS: u64 = 8;
/// SchedControl::Configure (`kernel_core::syscall::label`).
const SCHED_CONTROL_CONFIGURE: u64 = label::SCHED_CONTROL_CONFIGURE;

/// One thread of the test.
struct Spec {
    name: &'static str,
    priority: u64,
    budget: u64,
    /// Its scheduling context's period.
    period: u64,
    /// Index into `temporal_program_table`.
    program: usize,
    arguments: [u64; 2],
}

const SPINNER: usize = 0;
const COUNTER: usize = 1;
/// A thread that makes (refused) system calls in a loop, forever.
const CALLER: usize = 2;
/// The round-robin test: the priority both threads share, and how long
/// the counter counts.
const ROUND_ROBIN_PRIORITY: u64 = 10;
const ROUND_ROBIN_COUNT_TICKS: u64 = 3 * PERIOD;
/// Both threads' budget and period: far longer than a slice, so that only
/// the slice can take the CPU from the caller.
const ROUND_ROBIN_PERIOD: u64 = 40 * PERIOD;

fn build(kernel: &mut Kernel<PhysStore>, root: ThreadId, specs: &[Spec]) -> Result<[ThreadId; 2], StepFailed> {
    let untyped = root::slot::FIRST_UNTYPED;
    let root_cnode = root::slot::ROOT_CNODE;
    let mut threads = [None; 2];
    for (index, spec) in (0..).zip(specs) {
        let (tcb, context) = (FIRST_SLOT + 2 * index, FIRST_SLOT + 2 * index + 1);
        let (l, w, e) = retype(TYPE_TCB, 0, root_cnode, tcb);
        invoke(kernel, root, "retype a TCB", untyped, (l, &w, &e))?;
        let (l, w, e) = retype(TYPE_SCHED_CONTEXT, SCHED_CONTEXT_SIZE_BITS, root_cnode, context);
        invoke(kernel, root, "retype a scheduling context", untyped, (l, &w, &e))?;
        kernel.now = cpu::read_tsc();
        let words = [spec.budget, spec.period];
        invoke(kernel, root, "configure", root::slot::SCHED_CONTROL, (SCHED_CONTROL_CONFIGURE, &words, &[context]))?;
        let words = [spec.priority];
        invoke(kernel, root, "set the priority", tcb, (label::TCB_SET_PRIORITY, &words, &[root::slot::ROOT_TCB]))?;
        invoke(kernel, root, "bind", tcb, (label::TCB_BIND_SCHED_CONTEXT, &[], &[context]))?;
        let object = root_slot_object(kernel, root, tcb).ok_or(StepFailed { step: "TCB capability", code: 0 })?;
        threads[usize::try_from(index).unwrap_or(0)] = Some(ThreadId::new(object));
    }
    for index in 0..2 {
        invoke(kernel, root, "resume", FIRST_SLOT + 2 * index, (label::TCB_RESUME, &[], &[]))?;
    }
    invoke(kernel, root, "suspend the root", root::slot::ROOT_TCB, (label::TCB_SUSPEND, &[], &[]))?;
    match threads {
        [Some(spinner), Some(counter)] => Ok([spinner, counter]),
        _ => Err(StepFailed { step: "threads", code: 0 }),
    }
}

/// The TCB object named by a capability in root CNode slot `slot`.
fn root_slot_object(kernel: &Kernel<PhysStore>, root: ThreadId, slot: u64) -> Option<kernel_core::memory::PhysAddr> {
    use kernel_core::cap::{Cap, SlotRef, SlotStore};
    let base = match kernel.store.slot(kernel_core::syscall::cspace_slot(root)?).cap {
        Cap::CNode { base, .. } => base,
        _ => return None,
    };
    match kernel.store.slot(SlotRef::in_cnode(base, slot)?).cap {
        Cap::Tcb { object } => Some(object),
        _ => None,
    }
}

unsafe extern "C" {
    /// For each program: start and end of its code.
    static temporal_program_table: [[u64; 2]; 3];
}

fn program(spec: &Spec) -> Program {
    // SAFETY: the table is immutable data emitted by the assembly below.
    let table = unsafe { &*core::ptr::addr_of!(temporal_program_table) };
    let [start, end] = table[spec.program];
    let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    // SAFETY: both addresses come from `temporal_program_table`, whose
    // pairs delimit machine code in `.rodata.user_programs`, immutable data
    // that lives as long as the kernel; the start is never null.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    Program { name: spec.name, code, top_of_lower_half: &[] }
}

/// A share in tenths of a percent.
fn per_mille(part: u64, total: u64) -> u64 {
    u64::try_from(u128::from(part) * 1000 / u128::from(total.max(1))).unwrap_or(u64::MAX)
}

/// Round robin within a priority (`inject=user-round-robin`): a thread that
/// makes system calls without end and a counter share priority 10, each
/// with the whole CPU as its budget. Every system call returns to the
/// caller, but its time slice must still end: the counter gets the CPU
/// after [`timer::ROUND_ROBIN_SLICE`] and finishes counting.
pub(crate) fn run_round_robin(allocator: &mut FrameAllocator) {
    let specs = [
        Spec {
            name: "pd-caller",
            priority: ROUND_ROBIN_PRIORITY,
            budget: ROUND_ROBIN_PERIOD,
            period: ROUND_ROBIN_PERIOD,
            program: CALLER,
            arguments: [0; 2],
        },
        Spec {
            name: "pd-counter",
            priority: ROUND_ROBIN_PRIORITY,
            budget: ROUND_ROBIN_PERIOD,
            period: ROUND_ROBIN_PERIOD,
            program: COUNTER,
            arguments: [ROUND_ROBIN_COUNT_TICKS, 0],
        },
    ];
    run_specs(allocator, &specs);
}

/// Builds and runs the two threads, then prints the shares.
pub(crate) fn run(allocator: &mut FrameAllocator) {
    let specs = [
        Spec {
            name: "pd-spinner",
            priority: 200,
            budget: SPINNER_BUDGET,
            period: PERIOD,
            program: SPINNER,
            arguments: [0; 2],
        },
        Spec {
            name: "pd-counter",
            priority: 1,
            budget: PERIOD,
            period: PERIOD,
            program: COUNTER,
            arguments: [COUNTER_RUN_TICKS, 0],
        },
    ];
    println!(
        "temporal: pd-spinner (priority 200) has {SPINNER_BUDGET} of every {PERIOD} TSC ticks, pd-counter \
         (priority 1) all of them; pd-counter counts for {COUNTER_RUN_TICKS} ticks"
    );
    run_specs(allocator, &specs);
}

/// Builds `specs` (the second is the counter, whose end ends the run), runs
/// them preemptively and prints what each got.
fn run_specs(allocator: &mut FrameAllocator, specs: &[Spec; 2]) {
    if !root::prepare_root_thread() {
        println!("user mode: no root thread to build the temporal test");
        return;
    }
    let built = root::with_kernel(|kernel, root| {
        let root = root.ok_or(StepFailed { step: "root thread", code: 0 })?;
        build(kernel, root, specs)
    });
    let threads = match built {
        Ok(threads) => threads,
        Err(StepFailed { step, code }) => {
            println!("user mode: cannot build the temporal test: {step} failed with error code {code}");
            return;
        }
    };
    let run_specs: [UserThreadSpec; 2] = core::array::from_fn(|index| UserThreadSpec {
        thread: threads[index],
        program: program(&specs[index]),
        arguments: specs[index].arguments,
    });
    let free_before = allocator.free_frame_count();
    let result = user::run_threads_preemptive(allocator, &run_specs, threads[COUNTER]);
    let free_after = allocator.free_frame_count();
    // The spinner is still runnable: stop both for good.
    root::with_kernel(|kernel, _| {
        for thread in threads {
            ipc::stop_thread(&mut kernel.store, &mut kernel.scheduler, thread);
        }
    });
    let (end, measured) = match result {
        Ok(result) => result,
        Err(error) => {
            println!("user mode: cannot run the temporal test: {error}");
            return;
        }
    };
    if end != ProgramEnd::Exited(0) {
        println!("temporal: pd-counter ended with {end:?}");
    }
    for (ran, spec) in measured.ran.iter().zip(specs) {
        let share = per_mille(ran.ticks, measured.total);
        println!("temporal: {} ran {} TSC ticks, {}.{} % of the run", spec.name, ran.ticks, share / 10, share % 10);
    }
    println!(
        "temporal: run of {} TSC ticks, {} timer interrupts from ring 3 in total since boot, {} switches by the \
         timer, {} timer interrupts in ring 0",
        measured.total,
        timer::USER_TICKS.load(core::sync::atomic::Ordering::Relaxed),
        measured.switches,
        timer::KERNEL_TICKS.load(core::sync::atomic::Ordering::Relaxed)
    );
    println!("user mode: temporal test done; frames free before {free_before}, after {free_after}");
}

// The two programs, copied to user::CODE_BASE; position independent.
core::arch::global_asm!(
    r#"
    .section .rodata.user_programs, "a"

temporal_spinner:
    mov eax, 10                         /* Yield: returns to ring 3 through SYSRET */
    syscall
    /* Then a little computing in RCX and R11, the two registers SYSRET
       overwrites: R11 always holds RCX + 0x5a5a. Preempted anywhere here,
       the thread must get both back as they were, whichever path resumes
       it (the timer's IRETQ, or another thread's system call). */
    mov ecx, 1000
    lea r11, [rcx + 0x5a5a]
temporal_spinner_loop:
    lea rax, [rcx + 0x5a5a]
    cmp rax, r11
    jne temporal_spinner_lost
    dec ecx
    lea r11, [rcx + 0x5a5a]
    test ecx, ecx
    jnz temporal_spinner_loop
    jmp temporal_spinner
temporal_spinner_lost:
    lea rbx, [rip + temporal_spinner_text]
temporal_spinner_print:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz temporal_spinner_exit
    mov eax, 0x100
    syscall
    inc rbx
    jmp temporal_spinner_print
temporal_spinner_exit:
    mov edi, 1
    mov eax, 0x101
    syscall
    ud2
temporal_spinner_text:
    .asciz "registers lost across a preemption\n"
temporal_spinner_end:

    /* RDI: how many TSC ticks to count for. */
temporal_counter:
    mov r14, rdi
    rdtsc
    shl rdx, 32
    or rax, rdx
    lea r12, [rax + r14]                /* when to stop */
    xor r13d, r13d                      /* iterations */
temporal_counter_loop:
    inc r13
    /* A Yield every 4096 iterations: the spinner's refill is then often
       noticed on this system call, whose path resumes the preempted
       spinner. */
    test r13d, 0xfff
    jnz temporal_counter_time
    mov eax, 10
    syscall
temporal_counter_time:
    rdtsc
    shl rdx, 32
    or rax, rdx
    cmp rax, r12
    jb temporal_counter_loop
    /* Print R13 in hex without leading zeros, then the text. */
    mov ecx, 60
temporal_counter_skip:
    mov rdx, r13
    shr rdx, cl
    test edx, 0xf
    jnz temporal_counter_digit
    sub ecx, 4
    jnz temporal_counter_skip
temporal_counter_digit:
    mov rdx, r13
    shr rdx, cl
    and edx, 0xf
    lea edi, [rdx + 0x30]
    cmp edx, 10
    jb temporal_counter_put
    add edi, 0x27
temporal_counter_put:
    push rcx
    mov eax, 0x100
    syscall
    pop rcx
    sub ecx, 4
    jns temporal_counter_digit
    lea rbx, [rip + temporal_counter_text]
temporal_counter_print:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz temporal_counter_exit
    mov eax, 0x100
    syscall
    inc rbx
    jmp temporal_counter_print
temporal_counter_exit:
    xor edi, edi
    mov eax, 0x101
    syscall
    ud2
temporal_counter_text:
    .asciz " iterations\n"
temporal_counter_end:

temporal_caller:
    mov eax, 0x42                       /* no such system call: InvalidArgument */
    syscall
    jmp temporal_caller
temporal_caller_end:

    .balign 8
    .global temporal_program_table
temporal_program_table:
    .quad temporal_spinner, temporal_spinner_end
    .quad temporal_counter, temporal_counter_end
    .quad temporal_caller, temporal_caller_end
    .text
    "#
);
