//! Deliberate faults, for the boot tests that check the exception reports
//! (built only with the `fault-injection` feature; never in a release
//! image). Selected with the kernel command line `inject=KIND`.
//!
//! The `user-*` kinds run hand-written ring-3 test programs (see
//! [`USER_PROGRAMS`]) that misbehave in every way a user can: the kernel
//! must end each one with a report and go on to "boot complete".

use kernel_core::cmdline::Cmdline;
use kernel_core::frame_allocator::FrameAllocator;

use crate::arch::guest::Program as GuestProgram;
use crate::arch::user::{self, Program, ProgramEnd};

/// An address the kernel never maps (the identity map is gone by now).
const UNMAPPED_ADDRESS: u64 = 0xdead_b000;
/// A non-canonical address: any access raises #GP, not #PF.
const NON_CANONICAL_ADDRESS: u64 = 0x8000_0000_0000_0000;

/// Triggers the fault named by `inject=` on the command line, if any.
pub(crate) fn run(cmdline: &Cmdline<'_>, allocator: &mut FrameAllocator) {
    let Some(kind) = cmdline.get("inject") else { return };
    println!("fault injection: triggering {kind}");
    if kind == "user-all" {
        run_user_programs(allocator, &USER_PROGRAMS);
        return;
    }
    if kind == "user-pds" || kind == "user-ipc-bench" {
        crate::user_pds::run(allocator, kind == "user-ipc-bench");
        return;
    }
    if kind == "user-temporal" {
        crate::user_temporal::run(allocator);
        return;
    }
    if kind == "user-round-robin" {
        crate::user_temporal::run_round_robin(allocator);
        return;
    }
    if kind == "user-devices" {
        crate::user_devices::run(allocator);
        return;
    }
    let programs = [("guest-svm", GuestProgram::Exits), ("guest-svm-bench", GuestProgram::CpuidLoop)];
    if let Some((_, program)) = programs.iter().find(|(name, _)| *name == kind) {
        crate::arch::svm::run_test_guest(allocator, *program);
        return;
    }
    let programs = [("guest-vtx", GuestProgram::Exits), ("guest-vtx-bench", GuestProgram::CpuidLoop)];
    if let Some((_, program)) = programs.iter().find(|(name, _)| *name == kind) {
        crate::arch::vtx::run_test_guest(allocator, *program);
        return;
    }
    if let Some(program) = USER_PROGRAMS.iter().find(|program| program.name == kind) {
        run_user_programs(allocator, core::slice::from_ref(program));
        return;
    }
    match kind {
        "page-fault" => inject_page_fault(),
        "gp-fault" => inject_general_protection_fault(),
        "double-fault" => inject_double_fault(),
        "nmi" => inject_nmi(),
        "panic" => inject_panic(),
        "stack-overflow" => {
            let depth = inject_stack_overflow(0);
            println!("fault injection: recursion returned at depth {depth} without overflowing");
        }
        "write-rodata" => inject_write_to_read_only_data(),
        "execute-data" => inject_execute_data(),
        "fault-in-log" => inject_fault_in_log(),
        other => println!(
            "fault injection: unknown kind {other}; known: page-fault, gp-fault, double-fault, nmi, panic, \
             stack-overflow, write-rodata, execute-data, fault-in-log, user-all and the user programs \
             user-hello, user-page-fault, user-kernel-read, user-privileged, user-bad-syscall, \
             user-noncanonical-sysret, user-flood, user-trap-flag, user-capabilities, user-blocked, and the \
             protection domains user-pds and user-ipc-bench, the preemption test user-temporal, the \
             driver test user-devices and the backends' test guests guest-svm and guest-vtx (and their CPUID \
             benchmarks guest-svm-bench and guest-vtx-bench)"
        ),
    }
}

#[inline(never)]
fn inject_page_fault() {
    let pointer = UNMAPPED_ADDRESS as *mut u64;
    // SAFETY: not sound, on purpose: the write faults before it happens,
    // and the page-fault handler stops the machine.
    unsafe { pointer.write_volatile(0x0bad) };
}

#[inline(never)]
fn inject_general_protection_fault() {
    let pointer = NON_CANONICAL_ADDRESS as *const u64;
    // SAFETY: not sound, on purpose: a non-canonical access raises #GP
    // before any memory is touched, and the handler stops the machine.
    let _ = unsafe { pointer.read_volatile() };
}

#[inline(never)]
fn inject_double_fault() {
    // A #GP whose gate is missing raises #NP while delivering it; two
    // contributory faults make a double fault, taken on its IST stack.
    // SAFETY: interrupts are off, no exception is in flight, and the run
    // ends with the double fault this sets up.
    unsafe { crate::arch::idt::mark_gate_missing(13) };
    inject_general_protection_fault();
}

#[inline(never)]
fn inject_nmi() {
    // `int 2` enters through the NMI gate, and so through its IST stack and
    // the NMI report, without needing an interrupt controller to send one.
    // SAFETY: the NMI gate is installed (idt::init) and its handler stops
    // the machine; nothing returns here.
    unsafe { core::arch::asm!("int 2") };
}

/// Recurses until the boot stack runs into its guard page. The page fault
/// cannot be delivered on the overflowed stack, so it becomes a double
/// fault, which runs on its own IST stack.
#[inline(never)]
fn inject_stack_overflow(depth: u64) -> u64 {
    // A frame of some size that the optimiser cannot remove.
    let frame = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == u64::MAX {
        return frame[0];
    }
    inject_stack_overflow(depth + 1).wrapping_add(frame[63])
}

/// Read-only data, for the write-protection test.
static READ_ONLY: u64 = 0x5eed;

#[inline(never)]
fn inject_write_to_read_only_data() {
    let pointer = core::ptr::addr_of!(READ_ONLY).cast_mut();
    // SAFETY: not sound, on purpose: the page is mapped read-only (and
    // CR0.WP makes that bind ring 0), so the write faults before it happens.
    unsafe { pointer.write_volatile(0) };
}

/// A `ret` instruction placed in the kernel's writable data, for the
/// no-execute test.
#[unsafe(link_section = ".data.execute_test")]
static DATA_CODE: [u8; 1] = [0xc3];

#[inline(never)]
fn inject_execute_data() {
    let pointer = DATA_CODE.as_ptr();
    // SAFETY: not sound, on purpose: transmuting a data address into a
    // function and calling it must fault (the page is no-execute) before
    // the `ret` runs; on a CPU without NX it would simply return.
    let function: extern "C" fn() = unsafe { core::mem::transmute(pointer) };
    function();
    println!("fault injection: data executed: no-execute is not enforced on this CPU");
}

/// A value whose defmt formatting faults, i.e. in the middle of a frame.
struct FaultsWhenLogged;

impl defmt::Format for FaultsWhenLogged {
    fn format(&self, formatter: defmt::Formatter<'_>) {
        defmt::write!(formatter, "about to fault");
        inject_page_fault();
    }
}

/// A fault while a defmt frame is half sent: the report must still reach
/// the host as readable text.
#[inline(never)]
fn inject_fault_in_log() {
    defmt::info!("this frame is cut short: {}", FaultsWhenLogged);
}

#[inline(never)]
fn inject_panic() {
    panic!("deliberate panic (inject=panic)");
}

/// A ring-3 test program and how it must end.
struct UserTest {
    name: &'static str,
    /// Index into the assembly's `user_program_table`.
    table_index: usize,
    expected: ProgramEnd,
}

/// Page fault and general-protection vectors.
const PAGE_FAULT: u64 = 14;
const GENERAL_PROTECTION: u64 = 13;

/// Every ring-3 test program, in the order `inject=user-all` runs them.
const USER_PROGRAMS: [UserTest; 10] = [
    // Prints "hello from ring 3" (pushing and popping on its stack between
    // calls) and exits with 0; exits with 1 if a call fails.
    UserTest { name: "user-hello", table_index: 0, expected: ProgramEnd::Exited(0) },
    // Writes to an address nothing maps.
    UserTest { name: "user-page-fault", table_index: 1, expected: ProgramEnd::Faulted(PAGE_FAULT) },
    // Reads the kernel image at 0xffffffff80100000: present, supervisor-only.
    UserTest { name: "user-kernel-read", table_index: 2, expected: ProgramEnd::Faulted(PAGE_FAULT) },
    // Executes `cli`, which ring 3 may not.
    UserTest { name: "user-privileged", table_index: 3, expected: ProgramEnd::Faulted(GENERAL_PROTECTION) },
    // Unknown system calls (0, 0xdead, u64::MAX) with garbage in every
    // register (a non-canonical RSP, kernel addresses, AC and DF set): each
    // must return RAX 0 with InvalidArgument as RSI's label, hand back the
    // message registers as they were (R10, RBX) and keep the others; then prints
    // "ok" with garbage in RDI's upper bytes and exits with 0 (1 on any
    // surprise).
    UserTest { name: "user-bad-syscall", table_index: 4, expected: ProgramEnd::Exited(0) },
    // Runs `syscall` in the last two bytes of the lower half, so that the
    // return address is 0x0000800000000000: the kernel must not SYSRET
    // there (a #GP in ring 0 on Intel), and the IRETQ it uses instead
    // faults, which ends the program.
    UserTest { name: "user-noncanonical-sysret", table_index: 5, expected: ProgramEnd::Faulted(GENERAL_PROTECTION) },
    // Prints "flood" 1000 times: the kernel prints 32 lines and drops the
    // rest; then exits with 0.
    UserTest { name: "user-flood", table_index: 6, expected: ProgramEnd::Exited(0) },
    // Sets the trap flag right before a system call (printing "T"): on
    // Intel the single-step trap hits the kernel's SYSCALL entry while RSP
    // is still the user's; the kernel dismisses it, returns with TF clear,
    // and the program exits with 0.
    UserTest { name: "user-trap-flag", table_index: 7, expected: ProgramEnd::Exited(0) },
    // Waits on a notification nothing signals, with no other thread: the
    // kernel must end the program ("thread blocked with nothing to run"),
    // not hang; the next program (user-capabilities in `user-all`) finds
    // the root thread runnable again.
    UserTest { name: "user-blocked", table_index: 9, expected: ProgramEnd::Blocked },
    // Kernel system calls as the root thread: retypes an endpoint and a
    // notification out of the untyped in root slot 1, mints a badged copy
    // of the notification, signals through it and polls the original
    // (printing the badge), invokes an empty slot, makes an unknown system
    // call and a call on cptr u64::MAX, revokes the original and signals
    // through the copy again, printing every error code; exits with 0.
    UserTest { name: "user-capabilities", table_index: 8, expected: ProgramEnd::Exited(0) },
];

unsafe extern "C" {
    /// For each program: start and end of its code, start and end of the
    /// code for the top of the lower half (equal when there is none).
    static user_program_table: [[u64; 4]; USER_PROGRAMS.len()];
}

/// The bytes between two addresses of the assembly below.
fn assembled_bytes(start: u64, end: u64) -> &'static [u8] {
    let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    // SAFETY: both addresses come from `user_program_table`, whose pairs
    // delimit machine code in `.rodata.user_programs`, immutable data that
    // lives as long as the kernel; the start is never null.
    unsafe { core::slice::from_raw_parts(start as *const u8, len) }
}

fn user_program(test: &UserTest) -> Program {
    // SAFETY: the table is immutable data emitted by the assembly below.
    let table = unsafe { &*core::ptr::addr_of!(user_program_table) };
    let [start, end, top_start, top_end] = table[test.table_index];
    Program {
        name: test.name,
        code: assembled_bytes(start, end),
        top_of_lower_half: assembled_bytes(top_start, top_end),
    }
}

/// Runs `tests` one after the other and reports how each ended.
fn run_user_programs(allocator: &mut FrameAllocator, tests: &[UserTest]) {
    let free_before = allocator.free_frame_count();
    let mut as_expected = 0;
    for test in tests {
        let end = match user::run_program(allocator, &user_program(test)) {
            Ok(end) => end,
            Err(error) => {
                println!("user mode: cannot run {}: {error}", test.name);
                continue;
            }
        };
        match end {
            ProgramEnd::Exited(code) => println!("user mode: {} exited with code {code}", test.name),
            ProgramEnd::Faulted(vector) => println!("user mode: {} ended by its fault (vector {vector})", test.name),
            ProgramEnd::Blocked => println!("user mode: {} ended blocked", test.name),
        }
        if end == test.expected {
            as_expected += 1;
        } else {
            println!("user mode: {} should have ended with {:?}", test.name, test.expected);
        }
    }
    let free_after = allocator.free_frame_count();
    println!(
        "user mode: {as_expected} of {} programs ended as expected; frames free before {free_before}, after {free_after}",
        tests.len()
    );
}

// The test programs. Each is copied to user::CODE_BASE and must be position
// independent; they live in read-only data, so the kernel itself can never
// run them. System calls: rax = number (0x100 DEBUG_PUTCHAR, 0x101
// THREAD_EXIT, rdi = argument; the kernel's own 1..10 take the registers of
// docs/abi.md); SYSCALL clobbers rcx and r11.
core::arch::global_asm!(
    r#"
    .section .rodata.user_programs, "a"

user_hello:
    lea rbx, [rip + .Lhello_text]
.Lhello_next:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz .Lhello_done
    push rbx
    mov eax, 0x100
    syscall
    pop rbx
    test rax, rax
    jnz .Lhello_failed
    inc rbx
    jmp .Lhello_next
.Lhello_done:
    mov eax, 0x101
    xor edi, edi
    syscall
    ud2
.Lhello_failed:
    mov eax, 0x101
    mov edi, 1
    syscall
    ud2
.Lhello_text:
    .asciz "hello from ring 3\n"
user_hello_end:

user_page_fault:
    mov qword ptr [0x10000000], 1
    ud2
user_page_fault_end:

user_kernel_read:
    mov rbx, qword ptr [-0x7ff00000]    /* 0xffffffff80100000, the kernel image */
    ud2
user_kernel_read_end:

user_privileged:
    cli
    ud2
user_privileged_end:

user_bad_syscall:
    movabs rbx, 0xdeadbeefdeadbeef
    movabs rdx, 0xffffffff80000000
    mov rsi, rdx
    mov rdi, -1
    mov rbp, rdx
    movabs r8, 0x8000000000000000
    mov r9, r8
    mov r10, -1
    movabs r12, 0x123456789abcdef0
    mov r13, rdx
    mov r14, -1
    movabs r15, 0xfffffffffffff000
    push 0x40cd5                        /* AC, OF, DF and the status flags */
    popfq
    mov rsp, r8                         /* non-canonical: never used below */
    xor eax, eax                        /* 0: no longer DEBUG_PUTCHAR */
    syscall
    test rax, rax                       /* RAX 0: the kernel took the call */
    jnz .Lbad_failed
    mov rax, rsi
    shr rax, 12
    cmp rax, 1                          /* InvalidArgument, as RSI's label */
    jne .Lbad_failed
    mov eax, 0xdead
    syscall
    test rax, rax                       /* RAX 0: the kernel took the call */
    jnz .Lbad_failed
    mov rax, rsi
    shr rax, 12
    cmp rax, 1                          /* InvalidArgument, as RSI's label */
    jne .Lbad_failed
    mov rax, -1
    syscall
    test rax, rax                       /* RAX 0: the kernel took the call */
    jnz .Lbad_failed
    mov rax, rsi
    shr rax, 12
    cmp rax, 1                          /* InvalidArgument, as RSI's label */
    jne .Lbad_failed
    movabs rax, 0xdeadbeefdeadbeef
    cmp rbx, rax
    jne .Lbad_failed
    cmp rsp, r8
    jne .Lbad_failed
    movabs rax, 0x123456789abcdef0
    cmp r12, rax
    jne .Lbad_failed
    cmp r10, -1
    jne .Lbad_failed
    movabs rdi, 0xdeadbeefdeadbe6f      /* 'o' */
    mov eax, 0x100
    syscall
    movabs rdi, 0xffffffffffffff6b      /* 'k' */
    mov eax, 0x100
    syscall
    mov edi, 0x0a
    mov eax, 0x100
    syscall
    mov eax, 0x101
    xor edi, edi
    syscall
    ud2
.Lbad_failed:
    mov eax, 0x101
    mov edi, 1
    syscall
    ud2
user_bad_syscall_end:

user_noncanonical:
    movabs rcx, 0x7ffffffffffe
    mov eax, 0x100
    mov edi, 0x21                       /* '!' */
    jmp rcx
user_noncanonical_end:
user_noncanonical_top:
    syscall                             /* the last two bytes of the lower half */
user_noncanonical_top_end:

user_flood:
    mov r12d, 1000
.Lflood_again:
    lea rbx, [rip + .Lflood_text]
.Lflood_next:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz .Lflood_line_done
    mov eax, 0x100
    syscall
    inc rbx
    jmp .Lflood_next
.Lflood_line_done:
    dec r12d
    jnz .Lflood_again
    mov eax, 0x101
    xor edi, edi
    syscall
    ud2
.Lflood_text:
    .asciz "flood\n"
user_flood_end:

user_trap_flag:
    mov edi, 0x54                       /* 'T' */
    mov eax, 0x100
    pushfq
    or qword ptr [rsp], 0x100
    popfq                               /* TF: trap after the next instruction */
    syscall
    mov eax, 0x101
    xor edi, edi
    syscall
    ud2
user_trap_flag_end:

    /* Kernel system calls as the root thread (kernel/src/root.rs): slot 0
       the root CNode, 1 an untyped (7..9 hold IrqControl, IoPortControl and
       AsidControl); 17..19 and 30 are empty. Words 4 and up and
       the extra capability addresses go in the IPC buffer (user::IPC_BUFFER).
       Results: RSI's label (bits 12..) is the error code, RDI the badge. */
user_capabilities:
    /* (a) Untyped::Retype (label 16, 6 words, 1 extra cap) an endpoint
       into slot 17, then a notification into slot 18. */
    mov eax, 1                          /* Call */
    mov edi, 1                          /* the untyped */
    mov esi, 0x10086                    /* label 16, caps 1, length 6 */
    mov r10d, 4                         /* type: endpoint */
    xor r8d, r8d                        /* size_bits (fixed size) */
    xor r9d, r9d                        /* node_index */
    xor r15d, r15d                      /* node_depth 0: node_root itself */
    mov qword ptr [{ipc} + 4 * 8], 17   /* word 4 (IPC buffer): node_offset */
    mov qword ptr [{ipc} + 5 * 8], 1    /* word 5: count */
    mov qword ptr [{ipc} + 120 * 8], 0  /* extra cptr 0: node_root, the root CNode */
    syscall
    lea rbx, [rip + .Lcap_text_retype_endpoint]
    call .Lcap_report_label
    mov eax, 1
    mov edi, 1
    mov esi, 0x10086
    mov r10d, 5                         /* type: notification */
    xor r8d, r8d
    xor r9d, r9d
    xor r15d, r15d
    mov qword ptr [{ipc} + 4 * 8], 18
    mov qword ptr [{ipc} + 5 * 8], 1
    mov qword ptr [{ipc} + 120 * 8], 0
    syscall
    lea rbx, [rip + .Lcap_text_retype_notification]
    call .Lcap_report_label
    /* (b) CNode::Mint (label 4, 6 words, 1 extra cap) slot 18 into slot 19
       with badge 0xcafe, Signal through the copy, Poll the original. */
    mov eax, 1
    xor edi, edi                        /* the root CNode */
    mov esi, 0x4086                     /* label 4, caps 1, length 6 */
    mov r10d, 19                        /* dest_index */
    mov r8d, 64                         /* dest_depth */
    mov r9d, 18                         /* src_index */
    mov r15d, 64                        /* src_depth */
    mov qword ptr [{ipc} + 4 * 8], 0xf  /* word 4: rights, all */
    mov qword ptr [{ipc} + 5 * 8], 0xcafe /* word 5: data, the badge */
    mov qword ptr [{ipc} + 120 * 8], 0  /* extra cptr 0: src_root, the root CNode */
    syscall
    lea rbx, [rip + .Lcap_text_mint]
    call .Lcap_report_label
    mov eax, 7                          /* Signal */
    mov edi, 19
    xor esi, esi
    syscall
    lea rbx, [rip + .Lcap_text_signal]
    call .Lcap_report_label
    mov eax, 9                          /* Poll */
    mov edi, 18
    xor esi, esi
    syscall
    mov r13, rdi                        /* the badge */
    lea rbx, [rip + .Lcap_text_poll]
    call .Lcap_report
    /* (c) Invoke an empty slot. */
    mov eax, 1
    mov edi, 30
    xor esi, esi
    syscall
    lea rbx, [rip + .Lcap_text_empty]
    call .Lcap_report_label
    /* (d) Garbage: an unknown system call, a capability address no
       CSpace resolves. */
    mov eax, 0x42
    xor edi, edi
    xor esi, esi
    syscall
    lea rbx, [rip + .Lcap_text_unknown]
    call .Lcap_report_label
    mov eax, 1
    mov rdi, -1
    mov rsi, -1
    syscall
    lea rbx, [rip + .Lcap_text_bad_cptr]
    call .Lcap_report_label
    /* (e) CNode::Revoke (label 1, 2 words) slot 18: the badged copy goes. */
    mov eax, 1
    xor edi, edi
    mov esi, 0x1002                     /* label 1, length 2 */
    mov r10d, 18                        /* index */
    mov r8d, 64                         /* depth */
    syscall
    lea rbx, [rip + .Lcap_text_revoke]
    call .Lcap_report_label
    mov eax, 7
    mov edi, 19
    xor esi, esi
    syscall
    lea rbx, [rip + .Lcap_text_revoked]
    call .Lcap_report_label
    mov eax, 7
    mov edi, 18
    xor esi, esi
    syscall
    lea rbx, [rip + .Lcap_text_original]
    call .Lcap_report_label
    mov eax, 0x101
    xor edi, edi
    syscall
    ud2

    /* Prints the string at RBX, then RSI's label (the error code) in hex,
       then a newline. */
.Lcap_report_label:
    mov r13, rsi
    shr r13, 12
    /* Prints the string at RBX, then R13 in hex, then a newline. */
.Lcap_report:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz .Lcap_report_number
    mov eax, 0x100
    syscall
    inc rbx
    jmp .Lcap_report
.Lcap_report_number:
    mov ecx, 60                         /* skip leading zero digits */
.Lcap_skip:
    mov rdx, r13
    shr rdx, cl
    test edx, 0xf
    jnz .Lcap_digit
    sub ecx, 4
    jnz .Lcap_skip
.Lcap_digit:
    mov rdx, r13
    shr rdx, cl
    and edx, 0xf
    lea edi, [rdx + 0x30]               /* '0' */
    cmp edx, 10
    jb .Lcap_put_digit
    add edi, 0x27                       /* 'a' - '0' - 10 */
.Lcap_put_digit:
    push rcx
    mov eax, 0x100
    syscall
    pop rcx
    sub ecx, 4
    jns .Lcap_digit
    mov edi, 0x0a
    mov eax, 0x100
    syscall
    ret

.Lcap_text_retype_endpoint:
    .asciz "retype endpoint "
.Lcap_text_retype_notification:
    .asciz "retype notification "
.Lcap_text_mint:
    .asciz "mint badged copy "
.Lcap_text_signal:
    .asciz "signal through the copy "
.Lcap_text_poll:
    .asciz "poll badge "
.Lcap_text_empty:
    .asciz "invoke empty slot "
.Lcap_text_unknown:
    .asciz "unknown system call "
.Lcap_text_bad_cptr:
    .asciz "call cptr u64::MAX "
.Lcap_text_revoke:
    .asciz "revoke original "
.Lcap_text_revoked:
    .asciz "signal through the revoked copy "
.Lcap_text_original:
    .asciz "signal through the original "
user_capabilities_end:

    /* Retypes a notification out of the untyped in root slot 2 into slot
       20 (left as it is if the slot is taken), prints "W" and waits on it:
       nothing will signal it and no other thread exists. */
user_blocked:
    mov eax, 1                          /* Call: Untyped::Retype */
    mov edi, 2
    mov esi, 0x10086
    mov r10d, 5                         /* type: notification */
    xor r8d, r8d
    xor r9d, r9d
    xor r15d, r15d
    mov qword ptr [{ipc} + 4 * 8], 20   /* word 4 (IPC buffer): node_offset */
    mov qword ptr [{ipc} + 5 * 8], 1    /* word 5: count */
    mov qword ptr [{ipc} + 120 * 8], 0  /* extra cptr 0: node_root */
    syscall
    mov edi, 0x57                       /* 'W' */
    mov eax, 0x100
    syscall
    mov edi, 0x0a
    mov eax, 0x100
    syscall
    mov eax, 8                          /* Wait */
    mov edi, 20
    xor esi, esi
    syscall
    mov eax, 0x101                      /* never reached */
    mov edi, 1
    syscall
    ud2
user_blocked_end:

    .balign 8
    .global user_program_table
user_program_table:
    .quad user_hello, user_hello_end, user_hello, user_hello
    .quad user_page_fault, user_page_fault_end, user_page_fault, user_page_fault
    .quad user_kernel_read, user_kernel_read_end, user_kernel_read, user_kernel_read
    .quad user_privileged, user_privileged_end, user_privileged, user_privileged
    .quad user_bad_syscall, user_bad_syscall_end, user_bad_syscall, user_bad_syscall
    .quad user_noncanonical, user_noncanonical_end, user_noncanonical_top, user_noncanonical_top_end
    .quad user_flood, user_flood_end, user_flood, user_flood
    .quad user_trap_flag, user_trap_flag_end, user_trap_flag, user_trap_flag
    .quad user_capabilities, user_capabilities_end, user_capabilities, user_capabilities
    .quad user_blocked, user_blocked_end, user_blocked, user_blocked
    .text
    "#,
    ipc = const user::IPC_BUFFER,
);
