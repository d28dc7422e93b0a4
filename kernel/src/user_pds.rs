//! Protection domains on the real kernel, for the fault-injection tests
//! (`inject=user-pds`) and the IPC benchmark (`inject=user-ipc-bench`).
//!
//! Until the manifest loader exists the kernel builds the system by hand,
//! like [`crate::root`]: it runs `kernel_core::syscall::handle` as the root
//! thread, so every object and capability comes from the root's untyped
//! through the same invocations a root task would use (Untyped::Retype,
//! CNode::Copy and Mint, TCB::SetSpace, SetPriority, Resume), and then
//! suspends the root thread. Each protection domain is one thread with its
//! own CNode (16 slots behind a 60-bit zero guard, so a cptr is the slot
//! index) and its own address space built by `arch::user` from its
//! program below:
//!
//! | domain | priority | its CNode | program |
//! | --- | ---: | --- | --- |
//! | `pd-server` | 200 | 1: the endpoint (READ), 2: a reply object, 3: the notification (READ), 4: its receive slot | Recv, then ReplyRecv forever with word 0 + 1; for the first messages (RDI at start says how many) checks a 40-word message (word i = 3i + 1, words 4.. in its IPC buffer), prints how many capabilities came with it and signals through the one received, and prints the badge, word 0 and a Poll of the notification |
//! | `pd-notifier` | 150 | 1: the notification, badge 0x40 (WRITE) | Signal, print the result, exit |
//! | `pd-pager` | 180 | 1: the fault endpoint (READ), 2: a reply object | Recv, print the fault it got (label, address, badge), exit without replying |
//! | `pd-intruder` | 120 | nothing; its fault handler is the fault endpoint, badge 0xfa | Call on slot 1 (it holds nothing there: FailedLookup), print the error, then write to an unmapped address: the fault goes to `pd-pager`, and the intruder waits for a reply that never comes |
//! | `pd-client` | 100 | 1: the endpoint, badge 0x11 (WRITE, GRANT); 2: the notification, badge 0x80 (WRITE) | Call N times (N in RDI at start) with word 0 = 1, 2, ... (the first call a 40-word message, word i = 3i + 1, words 4.. through its IPC buffer, granting slot 2; the others 1 word), check each reply, print a summary (the count in hex), exit |
//!
//! The benchmark runs only the server (printing nothing) and the client:
//! two passes of 10,000 calls (RSI at start), each between two
//! `DEBUG_BENCH_MARK`s; the kernel measures the first as it is and profiles
//! the second (`arch::threads::bench_mark`).

use kernel_core::cap::invocation::label as cnode_label;
use kernel_core::cap::{Cap, SlotRef, SlotStore};
use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::ipc::{MessageInfo, ThreadId};
use kernel_core::store::ObjectStore;
use kernel_core::syscall::{self, Kernel, SyscallArgs, label, number};

use crate::arch::objects::PhysStore;
use crate::arch::user::{self, Program, ProgramEnd, UserThreadSpec};
use crate::root;

/// Round trips the benchmark makes.
pub(crate) const BENCH_ROUND_TRIPS: u64 = 10_000;
/// Calls the client makes in the `user-pds` test.
const TEST_CALLS: u64 = 5;
/// Messages the server prints in the `user-pds` test.
const TEST_PRINTED_MESSAGES: u64 = 3;
/// The length of the client's first message, which the server checks
/// (word i = 3i + 1; words 4.. travel in the IPC buffer).
const LONG_MESSAGE_WORDS: u64 = 40;
// The server's text says so in decimal.
static_assertions::const_assert_eq!(LONG_MESSAGE_WORDS, 40);

/// Root CNode slots for the domains' objects: slot `FIRST + 4 * domain +`
/// 0 its TCB, 1 its CNode, 2 the guarded copy that becomes its CSpace root.
/// From 200 on: the slots from 32 hold the device untypeds boot made
/// (`root.rs`, at most 60 of them).
const FIRST_SLOT: u64 = 200;
/// Root CNode slots of the shared endpoint and notification.
const ENDPOINT_SLOT: u64 = 232;
const NOTIFICATION_SLOT: u64 = 233;
/// Root CNode slots of the fault endpoint and the intruder's badged copy.
const FAULT_ENDPOINT_SLOT: u64 = 234;
const FAULT_HANDLER_SLOT: u64 = 235;
/// The badge the intruder's faults arrive with.
const FAULT_BADGE: u64 = 0xfa;
/// log2 of each domain's CNode slot count.
const PD_CNODE_RADIX: u64 = 4;
/// Object types (`docs/abi.md`, "Object types").
const TYPE_CNODE: u64 = 1;
const TYPE_TCB: u64 = 2;
const TYPE_ENDPOINT: u64 = 4;
const TYPE_NOTIFICATION: u64 = 5;
const TYPE_REPLY: u64 = 6;
/// Rights bits.
const READ: u64 = 1;
const WRITE: u64 = 2;
const GRANT: u64 = 4;
/// Badges.
const CLIENT_BADGE: u64 = 0x11;
const NOTIFIER_BADGE: u64 = 0x40;
/// The badge of the notification capability the client grants the server.
const GRANTED_BADGE: u64 = 0x80;

/// One protection domain.
struct Domain {
    name: &'static str,
    priority: u64,
    /// Index into `pd_program_table`.
    program: usize,
    /// RDI and RSI at start.
    arguments: [u64; 2],
}

const SERVER: usize = 0;
const CLIENT: usize = 1;
const NOTIFIER: usize = 2;
const INTRUDER: usize = 3;
const PAGER: usize = 4;

/// A failed step of the set-up.
pub(crate) struct StepFailed {
    pub(crate) step: &'static str,
    pub(crate) code: u64,
}

/// Runs one invocation as the root thread through the system-call layer.
pub(crate) fn invoke(
    kernel: &mut Kernel<PhysStore>,
    root: ThreadId,
    step: &'static str,
    cptr: u64,
    invocation: (u64, &[u64], &[u64]),
) -> Result<(), StepFailed> {
    let (label, words, extra) = invocation;
    let tcb = kernel.store.tcb_mut(root);
    tcb.words[..words.len()].copy_from_slice(words);
    tcb.extra_cptrs[..extra.len()].copy_from_slice(extra);
    let info = MessageInfo {
        label,
        length: u8::try_from(words.len()).unwrap_or(u8::MAX),
        caps: u8::try_from(extra.len()).unwrap_or(u8::MAX),
    };
    let args = SyscallArgs { number: number::CALL, cptr, info, reply_cptr: 0 };
    while syscall::handle(kernel, &mut crate::arch::platform::Machine, root, args).is_err() {}
    match kernel.store.tcb(root).info.label {
        0 => Ok(()),
        code => Err(StepFailed { step, code }),
    }
}

/// Retype `count` objects of `kind` into the CNode named by `node_root`
/// (depth 0: the CNode itself), from `slot` on.
pub(crate) fn retype(kind: u64, size_bits: u64, node_root: u64, slot: u64) -> (u64, [u64; 6], [u64; 1]) {
    (cnode_label::UNTYPED_RETYPE, [kind, size_bits, 0, 0, slot, 1], [node_root])
}

/// Copies (or mints, with `badge`) root slot `source` into `slot` of the
/// CNode the invocation names, with `rights`.
fn copy(slot: u64, source: u64, rights: u64, badge: Option<u64>) -> Result<(u64, heapless::Vec<u64, 6>, [u64; 1]), ()> {
    let mut words: heapless::Vec<u64, 6> = heapless::Vec::new();
    words.extend_from_slice(&[slot, 64, source, 64, rights]).map_err(|_| ())?;
    let label = match badge {
        Some(badge) => {
            words.push(badge).map_err(|_| ())?;
            cnode_label::CNODE_MINT
        }
        None => cnode_label::CNODE_COPY,
    };
    Ok((label, words, [root::slot::ROOT_CNODE]))
}

/// Builds the domains in `domains` (by index: SERVER, CLIENT, ...) through
/// the system-call layer, suspends the root thread, and returns their
/// threads.
fn build(
    kernel: &mut Kernel<PhysStore>,
    root: ThreadId,
    domains: &[Domain],
) -> Result<heapless::Vec<ThreadId, 5>, StepFailed> {
    let untyped = root::slot::FIRST_UNTYPED;
    let root_cnode = root::slot::ROOT_CNODE;
    let failed = |step| StepFailed { step, code: 0 };
    let mut threads = heapless::Vec::new();
    for (index, domain) in (0..).zip(domains) {
        let [tcb, cnode, guarded] = [0, 1, 2].map(|offset| FIRST_SLOT + 4 * index + offset);
        let (l, w, e) = retype(TYPE_TCB, 0, root_cnode, tcb);
        invoke(kernel, root, "retype a TCB", untyped, (l, &w, &e))?;
        let (l, w, e) = retype(TYPE_CNODE, PD_CNODE_RADIX, root_cnode, cnode);
        invoke(kernel, root, "retype a CNode", untyped, (l, &w, &e))?;
        // The guard makes a 64-bit cptr the slot index.
        let guard = 64 - PD_CNODE_RADIX;
        let words = [guarded, 64, cnode, 64, READ | WRITE | GRANT, guard];
        invoke(kernel, root, "mint the guarded CNode", root_cnode, (cnode_label::CNODE_MINT, &words, &[root_cnode]))?;
        invoke(kernel, root, "set the CSpace", tcb, (label::TCB_SET_SPACE, &[], &[guarded]))?;
        let words = [domain.priority];
        invoke(kernel, root, "set the priority", tcb, (label::TCB_SET_PRIORITY, &words, &[root::slot::ROOT_TCB]))?;
        let root_cnode_base = match kernel.store.slot(syscall::cspace_slot(root).ok_or(failed("root CSpace"))?).cap {
            Cap::CNode { base, .. } => base,
            _ => return Err(failed("root CSpace")),
        };
        let tcb_slot = SlotRef::in_cnode(root_cnode_base, tcb).ok_or(failed("TCB slot"))?;
        let Cap::Tcb { object } = kernel.store.slot(tcb_slot).cap else { return Err(failed("TCB capability")) };
        threads.push(ThreadId::new(object)).map_err(|_| failed("too many domains"))?;
    }
    let guarded = |domain: usize| FIRST_SLOT + 4 * domain as u64 + 2;
    let (l, w, e) = retype(TYPE_ENDPOINT, 0, root_cnode, ENDPOINT_SLOT);
    invoke(kernel, root, "retype the endpoint", untyped, (l, &w, &e))?;
    let (l, w, e) = retype(TYPE_NOTIFICATION, 0, root_cnode, NOTIFICATION_SLOT);
    invoke(kernel, root, "retype the notification", untyped, (l, &w, &e))?;
    // Straight into the server's CNode: reply capabilities cannot be copied.
    let (l, w, e) = retype(TYPE_REPLY, 0, guarded(SERVER), 2);
    invoke(kernel, root, "retype the reply object", untyped, (l, &w, &e))?;
    let mut grants = heapless::Vec::<(usize, u64, u64, u64, Option<u64>), 8>::new();
    grants.push((SERVER, 1, ENDPOINT_SLOT, READ, None)).map_err(|_| failed("too many grants"))?;
    grants
        .push((CLIENT, 1, ENDPOINT_SLOT, WRITE | GRANT, Some(CLIENT_BADGE)))
        .map_err(|_| failed("too many grants"))?;
    if domains.len() > NOTIFIER {
        grants.push((SERVER, 3, NOTIFICATION_SLOT, READ, None)).map_err(|_| failed("too many grants"))?;
        grants
            .push((NOTIFIER, 1, NOTIFICATION_SLOT, WRITE, Some(NOTIFIER_BADGE)))
            .map_err(|_| failed("too many grants"))?;
        grants
            .push((CLIENT, 2, NOTIFICATION_SLOT, WRITE, Some(GRANTED_BADGE)))
            .map_err(|_| failed("too many grants"))?;
    }
    if domains.len() > PAGER {
        // The pager receives the intruder's faults on an endpoint of its
        // own, with a reply object straight in its CNode.
        let (l, w, e) = retype(TYPE_ENDPOINT, 0, root_cnode, FAULT_ENDPOINT_SLOT);
        invoke(kernel, root, "retype the fault endpoint", untyped, (l, &w, &e))?;
        let (l, w, e) = retype(TYPE_REPLY, 0, guarded(PAGER), 2);
        invoke(kernel, root, "retype the pager's reply object", untyped, (l, &w, &e))?;
        grants.push((PAGER, 1, FAULT_ENDPOINT_SLOT, READ, None)).map_err(|_| failed("too many grants"))?;
        let words = [FAULT_HANDLER_SLOT, 64, FAULT_ENDPOINT_SLOT, 64, WRITE, FAULT_BADGE];
        invoke(kernel, root, "mint the fault handler", root_cnode, (cnode_label::CNODE_MINT, &words, &[root_cnode]))?;
        let intruder_tcb = FIRST_SLOT + 4 * INTRUDER as u64;
        let set = (label::TCB_SET_FAULT_HANDLER, &[][..], &[FAULT_HANDLER_SLOT][..]);
        invoke(kernel, root, "set the intruder's fault handler", intruder_tcb, set)?;
    }
    for (domain, slot, source, rights, badge) in grants {
        let (l, w, e) = copy(slot, source, rights, badge).map_err(|()| failed("copy"))?;
        invoke(kernel, root, "give a capability", guarded(domain), (l, &w, &e))?;
    }
    for (index, _) in (0..).zip(domains) {
        invoke(kernel, root, "resume", FIRST_SLOT + 4 * index, (label::TCB_RESUME, &[], &[]))?;
    }
    // The root thread steps aside: the domains run alone.
    invoke(kernel, root, "suspend the root", root::slot::ROOT_TCB, (label::TCB_SUSPEND, &[], &[]))?;
    Ok(threads)
}

unsafe extern "C" {
    /// For each program: start and end of its code.
    static pd_program_table: [[u64; 2]; 5];
}

fn program(domain: &Domain) -> Program {
    // SAFETY: the table is immutable data emitted by the assembly below.
    let table = unsafe { &*core::ptr::addr_of!(pd_program_table) };
    let [start, end] = table[domain.program];
    let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    // SAFETY: both addresses come from `pd_program_table`, whose pairs
    // delimit machine code in `.rodata.user_programs`, immutable data that
    // lives as long as the kernel; the start is never null.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    Program { name: domain.name, code, top_of_lower_half: &[] }
}

/// Builds and runs the protection domains (`benchmark`: only the server
/// and the client, for the IPC benchmark), then reports how the run ended.
pub(crate) fn run(allocator: &mut FrameAllocator, benchmark: bool) {
    // The benchmark's second pass says where the instructions go.
    let (calls, passes, printed) =
        if benchmark { (BENCH_ROUND_TRIPS, 2, 0) } else { (TEST_CALLS, 1, TEST_PRINTED_MESSAGES) };
    let all = [
        Domain { name: "pd-server", priority: 200, program: SERVER, arguments: [printed, 0] },
        Domain { name: "pd-client", priority: 100, program: CLIENT, arguments: [calls, passes] },
        Domain { name: "pd-notifier", priority: 150, program: NOTIFIER, arguments: [0; 2] },
        Domain { name: "pd-intruder", priority: 120, program: INTRUDER, arguments: [0; 2] },
        Domain { name: "pd-pager", priority: 180, program: PAGER, arguments: [0; 2] },
    ];
    let domains = if benchmark { &all[..2] } else { &all[..] };
    if !root::prepare_root_thread() {
        println!("user mode: no root thread to build the protection domains");
        return;
    }
    let built = root::with_kernel(|kernel, root| {
        let root = root.ok_or(StepFailed { step: "root thread", code: 0 })?;
        build(kernel, root, domains)
    });
    let threads = match built {
        Ok(threads) => threads,
        Err(StepFailed { step, code }) => {
            println!("user mode: cannot build the protection domains: {step} failed with error code {code}");
            return;
        }
    };
    println!("user mode: {} protection domains built through the system-call layer", domains.len());
    let mut specs: heapless::Vec<UserThreadSpec, 5> = heapless::Vec::new();
    for (thread, domain) in threads.iter().zip(domains) {
        let _ = specs.push(UserThreadSpec { thread: *thread, program: program(domain), arguments: domain.arguments });
    }
    let free_before = allocator.free_frame_count();
    let end = user::run_threads(allocator, &specs, benchmark);
    let free_after = allocator.free_frame_count();
    match end {
        Ok(ProgramEnd::Exited(code)) => {
            println!("user mode: the run ended when the last thread exited with code {code}")
        }
        Ok(ProgramEnd::Faulted(vector)) => println!("user mode: the run ended with a fault (vector {vector})"),
        Ok(ProgramEnd::Blocked) => println!("user mode: the run ended with every thread blocked"),
        Err(error) => println!("user mode: cannot run the protection domains: {error}"),
    }
    println!("user mode: protection domains done; frames free before {free_before}, after {free_after}");
}

// The domains' programs (see the module documentation), copied to
// user::CODE_BASE; position independent. Message words 0..3 come back in
// R10, R8, R9, R15 after every kernel system call (words 4.. in the IPC
// buffer at user::IPC_BUFFER, `{ipc}` below), so the loops keep their
// state in R12, R13, R14 (and the stack).
core::arch::global_asm!(
    r#"
    .section .rodata.user_programs, "a"

    /* Per program: NAME_print prints the NUL-terminated string at RBX;
       NAME_hex prints RBP in hex without leading zeros; NAME_exit exits
       with the code in RDI. */
    .macro pd_routines name
\name\()_print:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz \name\()_print_done
    mov eax, 0x100
    syscall
    inc rbx
    jmp \name\()_print
\name\()_print_done:
    ret
\name\()_hex:
    mov ecx, 60
\name\()_hex_skip:
    mov rdx, rbp
    shr rdx, cl
    test edx, 0xf
    jnz \name\()_hex_digit
    sub ecx, 4
    jnz \name\()_hex_skip
\name\()_hex_digit:
    mov rdx, rbp
    shr rdx, cl
    and edx, 0xf
    lea edi, [rdx + 0x30]
    cmp edx, 10
    jb \name\()_hex_put
    add edi, 0x27
\name\()_hex_put:
    push rcx
    mov eax, 0x100
    syscall
    pop rcx
    sub ecx, 4
    jns \name\()_hex_digit
    ret
\name\()_newline:
    mov edi, 0x0a
    mov eax, 0x100
    syscall
    ret
    .endm

    /* Slots: 1 the endpoint, 2 the reply object, 3 the notification.
       RDI at start: how many messages to print. */
pd_server:
    mov r14, rdi
    /* The receive slot for a granted capability: slot 4 (64-bit depth). */
    mov qword ptr [{ipc} + 123 * 8], 4
    mov qword ptr [{ipc} + 124 * 8], 64
    mov eax, 5                          /* Recv */
    mov edi, 1
    xor esi, esi
    mov edx, 2
    syscall
pd_server_message:
    test r14, r14
    jz pd_server_reply
    dec r14
    push rsi                            /* the info word */
    mov r12, rdi                        /* the badge */
    mov r13, r10                        /* word 0 */
    mov eax, esi
    and eax, 0x7f                       /* the length */
    cmp eax, {long_words}
    jne pd_server_short
    /* A long message: words 0..3 into the buffer too, then check all. */
    mov qword ptr [{ipc}], r10
    mov qword ptr [{ipc} + 8], r8
    mov qword ptr [{ipc} + 16], r9
    mov qword ptr [{ipc} + 24], r15
    xor ecx, ecx
pd_server_long_next:
    lea rax, [rcx + rcx * 2 + 1]        /* word i = 3i + 1 */
    cmp qword ptr [rcx * 8 + {ipc}], rax
    jne pd_server_long_bad
    inc ecx
    cmp ecx, {long_words}
    jb pd_server_long_next
    lea rbx, [rip + pd_server_text_long_ok]
    call pd_server_print
    /* The capability it came with: count it, signal through it. */
    lea rbx, [rip + pd_server_text_caps]
    call pd_server_print
    mov rbp, qword ptr [rsp]
    shr rbp, 7
    and ebp, 3
    call pd_server_hex
    mov eax, 7                          /* Signal */
    mov edi, 4
    xor esi, esi
    syscall
    mov rbp, rsi
    shr rbp, 12
    lea rbx, [rip + pd_server_text_signal]
    call pd_server_print
    call pd_server_hex
    call pd_server_newline
    jmp pd_server_short
pd_server_long_bad:
    mov rbp, rcx
    lea rbx, [rip + pd_server_text_long_bad]
    call pd_server_print
    call pd_server_hex
    call pd_server_newline
pd_server_short:
    lea rbx, [rip + pd_server_text_badge]
    call pd_server_print
    mov rbp, r12
    call pd_server_hex
    lea rbx, [rip + pd_server_text_word]
    call pd_server_print
    mov rbp, r13
    call pd_server_hex
    mov eax, 9                          /* Poll the notification */
    mov edi, 3
    xor esi, esi
    syscall
    mov r12, rdi
    lea rbx, [rip + pd_server_text_notification]
    call pd_server_print
    mov rbp, r12
    call pd_server_hex
    call pd_server_newline
    add rsp, 8                          /* the info word */
    mov r10, r13
pd_server_reply:
    inc r10                             /* the reply: word 0 + 1 */
    mov eax, 2                          /* ReplyRecv */
    mov edi, 1
    mov esi, 1                          /* length 1 */
    mov edx, 2
    syscall
    jmp pd_server_message
    pd_routines pd_server
pd_server_text_badge:
    .asciz "badge "
pd_server_text_word:
    .asciz " word "
pd_server_text_notification:
    .asciz " notification "
pd_server_text_long_ok:
    .asciz "long message: 40 words all correct\n"
pd_server_text_long_bad:
    .asciz "long message: wrong word "
pd_server_text_caps:
    .asciz "capabilities received "
pd_server_text_signal:
    .asciz ", signal through slot 4: error "
pd_server_end:

    /* Slot 1: the badged endpoint. RDI at start: calls per pass, RSI:
       passes (each between two benchmark marks). */
pd_client:
    mov r12, rdi                        /* calls per pass */
    mov r14, rsi                        /* passes */
    xor r13d, r13d                      /* calls made */
pd_client_pass:
    test r14, r14
    jz pd_client_done
    dec r14
    lea rax, [r13 + r12]
    push rax                            /* where this pass ends */
    mov eax, 0x102                      /* benchmark start */
    xor edi, edi
    syscall
pd_client_next:
    cmp r13, qword ptr [rsp]
    jae pd_client_pass_done
    mov esi, 1                          /* length 1 */
    test r13, r13
    jnz pd_client_call
    /* The first call: a long message, word i = 3i + 1 (word 0 is 1 as
       always), words 4.. in the IPC buffer. */
    mov ecx, 4
pd_client_long_next:
    lea rax, [rcx + rcx * 2 + 1]
    mov qword ptr [rcx * 8 + {ipc}], rax
    inc ecx
    cmp ecx, {long_words}
    jb pd_client_long_next
    mov r8d, 4
    mov r9d, 7
    mov r15d, 10
    /* Granting slot 2 along (extra capability address 0). */
    mov qword ptr [{ipc} + 120 * 8], 2
    mov esi, {long_words} + (1 << 7)    /* length, one capability */
pd_client_call:
    lea r10, [r13 + 1]                  /* word 0 */
    mov eax, 1                          /* Call */
    mov edi, 1
    syscall
    mov rax, rsi
    shr rax, 12
    jnz pd_client_bad                   /* an error label */
    lea rax, [r13 + 2]
    cmp r10, rax
    jne pd_client_bad
    inc r13
    jmp pd_client_next
pd_client_pass_done:
    pop rax
    mov eax, 0x102                      /* benchmark end */
    mov rdi, r12
    syscall
    jmp pd_client_pass
pd_client_done:
    mov rbp, r13
    call pd_client_hex
    lea rbx, [rip + pd_client_text_done]
    call pd_client_print
    xor edi, edi
    mov eax, 0x101
    syscall
    ud2
pd_client_bad:
    mov r14, r10
    lea rbx, [rip + pd_client_text_bad]
    call pd_client_print
    mov rbp, r14
    call pd_client_hex
    lea rbx, [rip + pd_client_text_call]
    call pd_client_print
    lea rbp, [r13 + 1]
    call pd_client_hex
    call pd_client_newline
    mov edi, 1
    mov eax, 0x101
    syscall
    ud2
    pd_routines pd_client
pd_client_text_done:
    .asciz " calls made, every reply was word 0 + 1\n"
pd_client_text_bad:
    .asciz "bad reply "
pd_client_text_call:
    .asciz " to call "
pd_client_end:

    /* Slot 1: the badged notification. */
pd_notifier:
    mov eax, 7                          /* Signal */
    mov edi, 1
    xor esi, esi
    syscall
    mov rbp, rsi
    shr rbp, 12
    lea rbx, [rip + pd_notifier_text]
    call pd_notifier_print
    call pd_notifier_hex
    call pd_notifier_newline
    xor edi, edi
    mov eax, 0x101
    syscall
    ud2
    pd_routines pd_notifier
pd_notifier_text:
    .asciz "signalled, error "
pd_notifier_end:

    /* Holds no capability at all. */
pd_intruder:
    mov eax, 1                          /* Call slot 1 */
    mov edi, 1
    mov esi, 1
    syscall
    mov rbp, rsi
    shr rbp, 12
    lea rbx, [rip + pd_intruder_text]
    call pd_intruder_print
    call pd_intruder_hex
    call pd_intruder_newline
    mov qword ptr [0x10000000], 1       /* unmapped */
    ud2
    pd_routines pd_intruder
pd_intruder_text:
    .asciz "call on a slot it does not hold: error "
pd_intruder_end:

    /* Slot 1: the fault endpoint, slot 2: its reply object. Takes one
       fault, reports it, and exits without replying. */
pd_pager:
    mov eax, 5                          /* Recv */
    mov edi, 1
    xor esi, esi
    mov edx, 2
    syscall
    mov r12, rsi                        /* the label: bits 12.. */
    shr r12, 12
    mov r13, r10                        /* word 0: the address */
    mov r14, rdi                        /* the badge */
    lea rbx, [rip + pd_pager_text_fault]
    call pd_pager_print
    mov rbp, r12
    call pd_pager_hex
    lea rbx, [rip + pd_pager_text_address]
    call pd_pager_print
    mov rbp, r13
    call pd_pager_hex
    lea rbx, [rip + pd_pager_text_badge]
    call pd_pager_print
    mov rbp, r14
    call pd_pager_hex
    call pd_pager_newline
    xor edi, edi
    mov eax, 0x101
    syscall
    ud2
    pd_routines pd_pager
pd_pager_text_fault:
    .asciz "fault message, label "
pd_pager_text_address:
    .asciz " address "
pd_pager_text_badge:
    .asciz " badge "
pd_pager_end:

    .balign 8
    .global pd_program_table
pd_program_table:
    .quad pd_server, pd_server_end
    .quad pd_client, pd_client_end
    .quad pd_notifier, pd_notifier_end
    .quad pd_intruder, pd_intruder_end
    .quad pd_pager, pd_pager_end
    .text
    "#,
    ipc = const user::IPC_BUFFER,
    long_words = const LONG_MESSAGE_WORDS,
);
