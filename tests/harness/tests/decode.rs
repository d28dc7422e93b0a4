//! The fuzz target's decoder (`bulkhead_harness::decode`): what bytes
//! decode to, and that the seed corpus in `tests/harness/fuzz/corpus/ops`
//! decodes to sequences that run cleanly and do something.

use std::path::PathBuf;

use bulkhead_harness::decode::{ESCAPE, MAX_OPS, TAGS, ops, thread_setup};
use bulkhead_harness::driver::Addr::{In, R};
use bulkhead_harness::driver::IrqCall;
use bulkhead_harness::driver::Op::{
    Configure, Copy, Delete, Interrupt, IpcCall, Irq, IrqGet, Mint, Move, Mutate, Raw, Recv, ReplyRecv, Retype, Revoke,
    Send, Signal, Syscall, Tcb, Tick, Wait, Yield,
};
use bulkhead_harness::driver::TcbCall::{
    BindSchedContext, Resume, SetFaultHandler, SetMaxPriority, SetPriority, SetSpace, Suspend, WriteRegisters,
};
use bulkhead_harness::driver::rights::{RWGP, W};
use bulkhead_harness::driver::types::{CNODE, ENDPOINT, SCHED_CONTEXT, TCB};
use bulkhead_harness::driver::{
    BADGED_SLOTS, ENDPOINT_SLOT, NOTIFICATION_SLOT, Op, REPLY_SLOTS, ROOT_TCB_SLOT, SCHED_CONTEXT_SLOTS,
    SCHED_CONTROL_SLOT, THREAD_SLOTS, Type, ipc_objects, results, run,
};

/// Every operation name (`Op::name`): the seed corpus has them all.
const OPERATION_NAMES: [&str; 34] = [
    "Retype",
    "Copy",
    "Mint",
    "Move",
    "Mutate",
    "Delete",
    "Revoke",
    "Raw",
    "TCB::SetSpace",
    "TCB::SetFaultHandler",
    "TCB::SetPriority",
    "TCB::SetMaxPriority",
    "TCB::BindSchedContext",
    "TCB::Resume",
    "TCB::Suspend",
    "TCB::WriteRegisters",
    "Configure",
    "Send",
    "NBSend",
    "Call",
    "Recv",
    "NBRecv",
    "ReplyRecv",
    "Signal",
    "Wait",
    "Poll",
    "Yield",
    "Syscall",
    "Tick",
    "IrqControl::Get",
    "IrqHandler::SetNotification",
    "IrqHandler::Clear",
    "IrqHandler::Ack",
    "Interrupt",
];

fn corpus() -> Vec<(String, Vec<u8>)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ops");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .expect("the seed corpus")
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).expect("a seed")))
        .collect();
    files.sort();
    files
}

#[test]
fn bytes_decode_to_the_documented_operations() {
    let bytes = [0, 1, 3, 0, 0, 0, 3, 2, 2, 5, 3, 2, 1, 1, 6, 5, 15, 6, 3, 5, 5];
    assert_eq!(
        ops(&bytes),
        [
            Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 2 },
            Mint { dest: R(5), src: R(3), rights: W, badge: 1 },
            Copy { dest: R(6), src: R(5), rights: RWGP },
            Revoke { slot: R(3) },
            Delete { slot: R(5) },
        ]
    );
    // An address byte from 160: a slot of the CNode at 3 + byte % 9.
    assert_eq!(ops(&[3, 166, 9, 2]), [Move { dest: In(7, 1, 2), src: R(2) }]);
    // Escaped words, the guard form of Mutate's data, a Raw call.
    let mut escaped = vec![0, ESCAPE];
    escaped.extend_from_slice(&7_u64.to_le_bytes());
    escaped.extend_from_slice(&[1, 4, 0, 1, 3, 1]);
    assert_eq!(
        ops(&escaped),
        [Retype { untyped: 7, kind: CNODE, size_bits: 4, root: 0, node: 0, node_depth: 64, offset: 3, count: 1 }]
    );
    assert_eq!(ops(&[4, 8, 7, 9]), [Mutate { dest: R(8), src: R(7), data: (1 << 6) | 1 }]);
    assert_eq!(ops(&[7, 1, 1, 3, 0]), [Raw { cptr: 1, label: 1, words: 3, extra: 0 }]);
    let mut unknown_type = vec![0, 1, ESCAPE];
    unknown_type.extend_from_slice(&99_u64.to_le_bytes());
    assert!(matches!(ops(&unknown_type)[0], Retype { kind: Type(99), .. }));
    // An escaped type word is never one the spec leaves out (7 to 13):
    // the fuzz target's first find was type 13, which made the spec panic.
    let outside = [0, 1, ESCAPE, 13, 0];
    assert!(matches!(ops(&outside)[0], Retype { kind: Type(27), .. }));
    run(&ops(&outside)).expect("an unknown type is refused");
    // Type index 6 is a scheduling context; the type byte wraps at 7.
    assert!(matches!(ops(&[0, 1, 6, 8, 0, 0, 15, 1])[0], Retype { kind: SCHED_CONTEXT, size_bits: 8, offset: 15, .. }));
    assert!(matches!(ops(&[0, 1, 9, 0, 0, 0, 12, 1])[0], Retype { kind: TCB, .. }));
    // Slots wrap at 32: the badged, free and thread slots have one byte.
    assert_eq!(ops(&[5, 55, 6, 159]), [Delete { slot: R(23) }, Revoke { slot: R(31) }]);
}

#[test]
fn thread_operations_decode_to_the_documented_operations() {
    let bytes = [
        8, 12, 0, 0, // TCB 12: SetSpace, the root CNode
        8, 12, 1, 3, // SetFaultHandler, the endpoint
        8, 12, 2, 100, 2, // SetPriority 100, the root TCB's authority
        8, 13, 3, 239, 12, // SetMaxPriority 255 (239 + 16), thread 12's authority
        8, 12, 4, 15, // BindSchedContext
        8, 12, 5, // Resume
        8, 12, 6, // Suspend
        8, 14, 7, 0, 16, 0xd5, // WriteRegisters
        9, 15, 20, 30, // Configure: budget 10 * 20, period 20 * 30
        10, 3, 1, 2, 132, // Send, granting root slot 4
        11, 22, 9, 165, 0, // NBSend, label 9 % 8, length 100 + 5
        12, 3, 7, 6, 0, // Call
        13, 3, 5, 146, // Recv, reply object 5, receive slot 18
        14, 4, 0, 0, // NBRecv
        15, 3, 6, 2, 1, 147, // ReplyRecv
        16, 23, // Signal
        17, 4, // Wait
        18, 24, // Poll
        19, // Yield
        20, 15, 3, // Syscall 15
        21, 25, 1, // Tick: 250, the slice ended
    ];
    assert_eq!(
        ops(&bytes),
        [
            Tcb { tcb: 12, call: SetSpace { cnode: 0, vspace: None } },
            Tcb { tcb: 12, call: SetFaultHandler { endpoint: 3 } },
            Tcb { tcb: 12, call: SetPriority { priority: 100, authority: 2 } },
            Tcb { tcb: 13, call: SetMaxPriority { priority: 255, authority: 12 } },
            Tcb { tcb: 12, call: BindSchedContext { sched_context: 15 } },
            Tcb { tcb: 12, call: Resume },
            Tcb { tcb: 12, call: Suspend },
            Tcb { tcb: 14, call: WriteRegisters { rip: 0x1000, rsp: 0x1_0000, rflags: 0xd5 } },
            Configure { sched_context: 15, budget: 200, period: 600 },
            Send { cptr: 3, label: 1, words: 2, grant: Some(4), blocking: true },
            Send { cptr: 22, label: 1, words: 105, grant: None, blocking: false },
            IpcCall { cptr: 3, label: 7, words: 6, grant: None },
            Recv { cptr: 3, reply: 5, slot: Some((18, 64)), blocking: true },
            Recv { cptr: 4, reply: 0, slot: None, blocking: false },
            ReplyRecv { cptr: 3, reply: 6, label: 2, words: 1, slot: Some((19, 64)) },
            Signal { cptr: 23 },
            Wait { cptr: 4, blocking: true },
            Wait { cptr: 24, blocking: false },
            Yield,
            Syscall { number: 15, cptr: 3 },
            Tick { ticks: 250, slice_ended: true },
        ]
    );
    // Tags wrap at 27: 27 + 19 is Yield, 54 + 16 a Signal.
    assert_eq!(TAGS, 27);
    assert_eq!(ops(&[27 + 19, 54 + 16, 4]), [Yield, Signal { cptr: 4 }]);
    // The interrupt tags.
    assert_eq!(
        ops(&[24, 3, 25, 25, 25, 0, 4, 25, 25, 1, 25, 25, 2, 26, 23]),
        [
            IrqGet { line: 3, dest: R(25) },
            Irq { handler: 25, call: IrqCall::SetNotification { notification: 4 } },
            Irq { handler: 25, call: IrqCall::Clear },
            Irq { handler: 25, call: IrqCall::Ack },
            Interrupt { line: 3 },
        ]
    );
    // Escaped words: a priority, a grant, a receive slot and its depth
    // byte, ticks.
    let mut escaped = vec![8, 12, 2, ESCAPE];
    escaped.extend_from_slice(&1000_u64.to_le_bytes());
    escaped.extend_from_slice(&[2, 12, 3, 0, 1, ESCAPE]);
    escaped.extend_from_slice(&u64::MAX.to_le_bytes());
    escaped.extend_from_slice(&[13, 3, 5, ESCAPE]);
    escaped.extend_from_slice(&300_u64.to_le_bytes());
    escaped.extend_from_slice(&[70, 21, ESCAPE]);
    escaped.extend_from_slice(&7_u64.to_le_bytes());
    escaped.push(0);
    assert_eq!(
        ops(&escaped),
        [
            Tcb { tcb: 12, call: SetPriority { priority: 1000, authority: 2 } },
            IpcCall { cptr: 3, label: 0, words: 1, grant: Some(u64::MAX) },
            Recv { cptr: 3, reply: 5, slot: Some((300, 70)), blocking: true },
            Tick { ticks: 7, slice_ended: false },
        ]
    );
}

#[test]
fn setup_tags_expand_to_the_documented_setup() {
    // The slots the module documentation names.
    assert_eq!((ROOT_TCB_SLOT, ENDPOINT_SLOT, NOTIFICATION_SLOT, SCHED_CONTROL_SLOT), (2, 3, 4, 255));
    assert_eq!((REPLY_SLOTS, THREAD_SLOTS, SCHED_CONTEXT_SLOTS, BADGED_SLOTS), (5..8, 12..15, 15..18, 22..25));
    let retype = |kind: Type, size_bits: u64, offset: u64| Op::retype_root(kind, size_bits, offset, 1);
    // Tag 23: thread 4 % 3 = 1 (slot 13), priority 200, no budget (below 128).
    let thread = [
        retype(TCB, 0, 13),
        Tcb { tcb: 13, call: SetSpace { cnode: 0, vspace: None } },
        Tcb { tcb: 13, call: SetPriority { priority: 200, authority: 2 } },
        Tcb { tcb: 13, call: Resume },
    ];
    assert_eq!(ops(&[23, 4, 200, 127]), thread);
    assert_eq!(thread_setup(4, 200, 127), thread);
    // Tag 22: the IPC objects first; thread 12 at 254 (238 + 16) on a
    // scheduling context in slot 15, budget 100 + 10 * 10, period twice.
    let mut setup = ipc_objects();
    setup.extend([
        retype(TCB, 0, 12),
        Tcb { tcb: 12, call: SetSpace { cnode: 0, vspace: None } },
        Tcb { tcb: 12, call: SetPriority { priority: 254, authority: 2 } },
        retype(SCHED_CONTEXT, 8, 15),
        Configure { sched_context: 15, budget: 200, period: 400 },
        Tcb { tcb: 12, call: BindSchedContext { sched_context: 15 } },
        Tcb { tcb: 12, call: Resume },
    ]);
    assert_eq!(ops(&[22, 0, 238, 128 + 10, 19]), [setup, vec![Yield]].concat());
    // The setup runs: every step succeeds, and the thread is started.
    let codes = results(&ops(&[22, 0, 238, 138, 23, 1, 100, 0])).expect("the setup runs");
    assert!(codes.iter().all(|code| *code == Some(0)), "{codes:?}");
}

#[test]
fn decoding_is_total_and_bounded() {
    assert!(ops(&[]).is_empty());
    assert_eq!(ops(&[5; 4 * MAX_OPS]).len(), MAX_OPS);
    // A setup tag that would pass the bound is cut at it.
    assert_eq!(ops(&[22; 4 * MAX_OPS]).len(), MAX_OPS);
    // Pseudo-random bytes (a fixed linear congruential stream) always
    // decode, and the sequences they make run without a violation.
    let mut state = 0x5eed_u64;
    for length in [1, 7, 64, 300, 2_000] {
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                state.to_le_bytes()[7]
            })
            .collect();
        if let Err(violation) = run(&ops(&bytes)) {
            panic!("{violation}");
        }
    }
}

#[test]
fn the_seed_corpus_runs_cleanly_and_reaches_every_operation() {
    let seeds = corpus();
    assert!(seeds.len() >= 9, "a few seeds");
    let mut kinds = std::collections::BTreeSet::new();
    for (name, bytes) in seeds {
        let decoded = ops(&bytes);
        if let Err(violation) = run(&decoded) {
            panic!("{name}: {violation}");
        }
        let codes = results(&decoded).unwrap_or_else(|violation| panic!("{name}: {violation}"));
        assert!(codes.iter().filter(|code| **code == Some(0)).count() >= 2, "{name} has successes: {codes:?}");
        kinds.extend(decoded.iter().map(|op| op.name()));
    }
    let every: std::collections::BTreeSet<&str> = OPERATION_NAMES.into_iter().collect();
    assert_eq!(kinds, every, "every operation kind appears in the corpus");
}
