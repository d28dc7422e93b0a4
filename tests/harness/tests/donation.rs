//! Scheduling-context donation driven step by step (`docs/abi.md`,
//! "Scheduling-context donation"; `spec::donation`): every step runs on
//! the kernel and on the spec with refinement and every invariant
//! checked, and each test then says what the loans and the scheduler must
//! be. The random runs reach loans too, but seldom each way one ends.

use bulkhead_harness::driver::Op::{Configure, Delete, Interrupt, IpcCall, Recv, ReplyRecv, Tcb, Tick, Wait};
use bulkhead_harness::driver::TcbCall::{BindSchedContext, SetPassive, Suspend};
use bulkhead_harness::driver::types::{ENDPOINT, SCHED_CONTEXT};
use bulkhead_harness::driver::{
    Addr, Applied, BOOT, ENDPOINT_SLOT, Harness, NOTIFICATION_SLOT, Op, REPLY_SLOTS, ROOT_SCHED_CONTEXT_SLOT,
    ROOT_TCB_SLOT, SETUP_IRQ_LINE, ipc_objects, results, run, thread_setup,
};
use bulkhead_harness::spec::{Loan, SLOT_BYTES, State, ThreadState};

const RANGE_ERROR: u64 = 4;
const TRUNCATED_MESSAGE: u64 = 7;
const INVALID_CAPABILITY: u64 = 2;

/// The first reply object's slot (the one the servers here receive with).
const REPLY: u64 = REPLY_SLOTS.start;

/// Runs `ops` with every check after every step; the spec's state and
/// what each step came to, after each step.
fn drive(ops: &[Op]) -> Vec<(State, Option<Applied>)> {
    let mut harness = Harness::new();
    assert_eq!(harness.check(), vec![], "right after boot");
    ops.iter()
        .enumerate()
        .map(|(step, op)| {
            let applied = harness.apply(op);
            if let Some(Applied { expected, got, .. }) = applied {
                assert_eq!(got, expected, "step {step} ({op:?}): result codes");
            }
            let failures = harness.check();
            assert!(failures.is_empty(), "step {step} ({op:?}): {failures:#?}");
            (harness.spec().clone(), applied)
        })
        .collect()
}

/// The spec's state after the last of `ops` (each checked).
fn after(ops: &[Op]) -> State {
    drive(ops).pop().expect("some operations").0
}

/// The address of the object the capability in root slot `index` names.
fn object(state: &State, index: u64) -> u64 {
    state.cap(BOOT.root_cnode + index * SLOT_BYTES).expect("a capability").object().base
}

/// The root thread's TCB.
const ROOT: u64 = BOOT.root_tcb;

/// The operations that make the root a passive server receiving on the
/// endpoint with the first reply object, and the thread of slot 12 (at
/// `priority`, on a budget of 500 in 1,000 in slot 15) the one that runs
/// next and calls it.
fn root_serves_thread_12(priority: u64) -> Vec<Op> {
    let mut ops = ipc_objects();
    ops.extend(thread_setup(12, priority, Some((500, 1_000))));
    ops.extend([
        Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 1 } },
        Recv { cptr: ENDPOINT_SLOT, reply: REPLY, slot: None, blocking: true },
    ]);
    ops
}

/// A Call from thread 12 with `words` words (more than four: not the fast
/// path's).
fn call(words: u8) -> Op {
    IpcCall { cptr: ENDPOINT_SLOT, label: 0x101, words, grant: None }
}

/// The root's answer through the first reply object, receiving again.
fn reply_recv(words: u8) -> Op {
    ReplyRecv { cptr: ENDPOINT_SLOT, reply: REPLY, label: 0x102, words, slot: None }
}

#[test]
fn set_passive_takes_zero_or_one() {
    let ops = [
        Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 1 } },
        Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 2 } },
        Op::Raw { cptr: ROOT_TCB_SLOT, label: 43, words: 0, extra: 0 },
    ];
    assert_eq!(results(&ops).expect("it runs"), [Some(0), Some(RANGE_ERROR), Some(TRUNCATED_MESSAGE)]);
    assert!(after(&ops).threads[&ROOT].passive, "a refused word changes nothing");
    let mut ops = ops.to_vec();
    ops.push(Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 0 } });
    assert!(!after(&ops).threads[&ROOT].passive);
}

/// A Call to a passive server lends it the caller's context: its time is
/// charged there, and the reply gives the context back; the fast paths
/// take both halves, and the general paths come to the same states.
#[test]
fn a_call_lends_the_callers_context_until_the_reply() {
    for (words, fast) in [(2, true), (6, false)] {
        let mut ops = root_serves_thread_12(100);
        let setup = ops.len();
        ops.extend([call(words), Tick { ticks: 100, slice_ended: false }, reply_recv(words)]);
        let steps = drive(&ops);
        let (lent, called) = &steps[setup];
        let (charged, _) = &steps[setup + 1];
        let (answered, replied) = &steps[setup + 2];
        assert_eq!(called.map(|applied| applied.fast), Some(fast), "the Call of {words} words");
        assert_eq!(replied.map(|applied| applied.fast), Some(fast), "the ReplyRecv of {words} words");
        let (thread, reply, context) = (object(lent, 12), object(lent, REPLY), object(lent, 15));
        assert_eq!(lent.threads[&ROOT].loan, Some(Loan { reply, context }));
        assert_eq!(lent.sched_contexts[&context].lent_to, Some(ROOT));
        assert_eq!(lent.sched_contexts[&context].bound, Some(thread), "the caller keeps its context bound");
        assert_eq!(lent.threads[&thread].state, ThreadState::BlockedOnReply { reply });
        assert_eq!(lent.sched.current, Some(ROOT));
        assert_eq!(charged.sched_contexts[&context].remaining, 400, "the server's time is the caller's");
        assert_eq!(answered.threads[&ROOT].loan, None);
        assert_eq!(answered.sched_contexts[&context].lent_to, None);
        assert_eq!(answered.sched.current, Some(thread));
    }
    let mut ops = root_serves_thread_12(100);
    ops.extend([call(1), reply_recv(1)]);
    let stats = run(&ops).unwrap_or_else(|violation| panic!("{violation}"));
    assert_eq!((stats.loans_begun, stats.loans_ended), (1, 1), "the run's counters");
}

/// A server whose own context has no budget left answers on the fast
/// path and on the general one alike: the general path throttles it as
/// the loan ends, then blocks it receiving; the fast path only blocks it.
#[test]
fn a_server_without_a_budget_of_its_own_replies_alike_on_both_paths() {
    for (words, fast) in [(1, true), (6, false)] {
        let mut ops = root_serves_thread_12(100);
        // Thread 12 binds the receiving root to a context never configured.
        ops.extend([
            Op::retype_root(SCHED_CONTEXT, 8, ROOT_SCHED_CONTEXT_SLOT, 1),
            Tcb { tcb: ROOT_TCB_SLOT, call: BindSchedContext { sched_context: ROOT_SCHED_CONTEXT_SLOT } },
            call(words),
            reply_recv(words),
        ]);
        let steps = drive(&ops);
        let (answered, replied) = steps.last().expect("the reply");
        assert_eq!(replied.map(|applied| applied.fast), Some(fast));
        let thread = object(answered, 12);
        assert_eq!(answered.threads[&ROOT].loan, None);
        assert!(matches!(answered.threads[&ROOT].state, ThreadState::BlockedOnReceive { .. }));
        assert_eq!(answered.sched.current, Some(thread));
        assert!(answered.sched.release.is_empty());
    }
}

/// Loans never chain: a server holding a loan lends nothing when it calls
/// another passive server, and borrows nothing more when it is called
/// again.
#[test]
fn loans_never_chain() {
    let mut ops = ipc_objects();
    ops.push(Op::retype_root(ENDPOINT, 0, 9, 1));
    ops.extend(thread_setup(12, 100, Some((500, 1_000))));
    ops.extend(thread_setup(13, 200, None));
    ops.extend(thread_setup(14, 50, Some((400, 1_000))));
    ops.extend([
        Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 1 } },
        Tcb { tcb: 13, call: SetPassive { passive: 1 } },
        // The root receives; thread 13 (200) receives on the other
        // endpoint; thread 12 (100) calls the root, which borrows its
        // context.
        Recv { cptr: ENDPOINT_SLOT, reply: REPLY, slot: None, blocking: true },
        Recv { cptr: 9, reply: REPLY + 1, slot: None, blocking: true },
        call(1),
        // The root calls thread 13, which serves it on its own (no)
        // context, and answers.
        IpcCall { cptr: 9, label: 0x103, words: 1, grant: None },
    ]);
    let lent = after(&ops);
    let (thread_13, context_12) = (object(&lent, 13), object(&lent, 15));
    assert_eq!(lent.threads[&thread_13].loan, None, "a borrower lends nothing");
    assert_eq!(lent.threads[&ROOT].loan.map(|loan| loan.context), Some(context_12));
    ops.extend([
        ReplyRecv { cptr: 9, reply: REPLY + 1, label: 0x104, words: 0, slot: None },
        // The root, still on thread 12's context, receives with another
        // reply object; thread 14 (50) calls it.
        Recv { cptr: ENDPOINT_SLOT, reply: REPLY + 2, slot: None, blocking: true },
        IpcCall { cptr: ENDPOINT_SLOT, label: 0x105, words: 0, grant: None },
    ]);
    let called_again = after(&ops);
    let context_14 = object(&called_again, 17);
    assert_eq!(called_again.threads[&ROOT].loan.map(|loan| loan.context), Some(context_12));
    assert_eq!(called_again.sched_contexts[&context_14].lent_to, None, "a borrower borrows nothing more");
    assert_eq!(called_again.sched.current, Some(ROOT));
    // Its answers end the first loan only when they go through its reply
    // object.
    ops.push(ReplyRecv { cptr: ENDPOINT_SLOT, reply: REPLY + 2, label: 0x106, words: 0, slot: None });
    assert!(after(&ops).threads[&ROOT].loan.is_some());
}

/// Each way a loan ends, after thread 12's Call lent the root its
/// context: the server runs on its own (no) context again. Thread 13
/// (priority 50, no budget) runs when the root does not.
#[test]
fn every_way_a_loan_ends() {
    let ends: [(&str, Vec<Op>); 7] = [
        ("the server's reply", vec![reply_recv(0)]),
        // Any thread holding the reply object may answer: thread 13 while
        // the root, still on the loan, waits.
        ("another thread's reply", vec![Wait { cptr: NOTIFICATION_SLOT, blocking: true }, reply_recv(0)]),
        ("the caller suspended", vec![Tcb { tcb: 12, call: Suspend }]),
        ("the caller's TCB deleted", vec![Delete { slot: Addr::R(12) }]),
        ("the caller's context deleted", vec![Delete { slot: Addr::R(15) }]),
        ("the reply object deleted", vec![Delete { slot: Addr::R(REPLY) }]),
        ("the server suspended", vec![Tcb { tcb: ROOT_TCB_SLOT, call: Suspend }]),
    ];
    for (how, end) in ends {
        let mut ops = ipc_objects();
        ops.extend(thread_setup(13, 50, None));
        ops.extend(root_serves_thread_12(100).into_iter().skip(ipc_objects().len()));
        ops.push(call(0));
        let lent_at = ops.len() - 1;
        ops.extend(end);
        let steps = drive(&ops);
        let (lent, _) = &steps[lent_at];
        assert!(lent.threads[&ROOT].loan.is_some(), "{how}: lent");
        let (ended, _) = steps.last().expect("the end");
        assert!(ended.threads.get(&ROOT).is_none_or(|root| root.loan.is_none()), "{how}: the loan ended");
        assert!(ended.sched_contexts.values().all(|context| context.lent_to.is_none()), "{how}");
        if how == "the reply object deleted" {
            let thread = object(ended, 12);
            assert_eq!(ended.threads[&thread].info.label, INVALID_CAPABILITY, "the caller's Call ends so");
        }
    }
}

/// SchedControl::Configure of a lent context re-queues its borrower: a
/// server throttled on its caller's spent budget runs again at once.
#[test]
fn configuring_a_lent_context_requeues_its_borrower() {
    let mut ops = root_serves_thread_12(100);
    // Thread 12 makes thread 13, then calls.
    ops.extend(thread_setup(13, 50, None));
    ops.extend([call(0), Tick { ticks: 600, slice_ended: false }]);
    let throttled = after(&ops);
    let (thread_13, context) = (object(&throttled, 13), object(&throttled, 15));
    assert_eq!(throttled.sched.release, vec![ROOT], "the root spent thread 12's budget");
    assert_eq!(throttled.sched.current, Some(thread_13));
    ops.push(Configure { sched_context: 15, budget: 300, period: 1_000 });
    let configured = after(&ops);
    assert_eq!(configured.sched.current, Some(ROOT));
    assert_eq!(configured.sched_contexts[&context].remaining, 300);
    assert_eq!(configured.sched_contexts[&context].lent_to, Some(ROOT));
}

/// A borrower throttled on its caller's spent budget is released when
/// that budget's period comes round, and, throttled again, when the loan
/// ends (here: the caller is suspended), by its own (no) context.
#[test]
fn a_throttled_borrower_is_released_by_the_refill_or_the_end_of_its_loan() {
    let mut ops = root_serves_thread_12(100);
    ops.extend(thread_setup(13, 50, None));
    ops.extend([call(0), Tick { ticks: 600, slice_ended: false }, Tick { ticks: 500, slice_ended: false }]);
    let refilled = after(&ops);
    let context = object(&refilled, 15);
    assert_eq!(refilled.sched.current, Some(ROOT), "thread 12's budget came round at 1,000");
    assert_eq!(refilled.sched_contexts[&context].remaining, 500, "a whole budget again");
    ops.extend([Tick { ticks: 600, slice_ended: false }, Tcb { tcb: 12, call: Suspend }]);
    let steps = drive(&ops);
    let (throttled, _) = &steps[steps.len() - 2];
    assert_eq!(throttled.sched.release, vec![ROOT]);
    let (ended, _) = &steps[steps.len() - 1];
    assert_eq!((ended.threads[&ROOT].loan, ended.sched.current), (None, Some(ROOT)));
    assert!(ended.sched.release.is_empty());
}

/// The operations after which the root, a passive server, has taken the
/// queued Call of thread 12 (priority 100, no budget of its own), which
/// was bound, while it waited, to a scheduling context in slot 15 that
/// was never configured: the root borrows a context without budget.
/// Thread 13 (50, no budget) is ready.
fn root_takes_a_call_on_a_context_never_configured() -> Vec<Op> {
    let mut ops = ipc_objects();
    ops.extend(thread_setup(12, 100, None));
    ops.extend(thread_setup(13, 50, None));
    ops.extend([
        Op::retype_root(SCHED_CONTEXT, 8, 15, 1),
        Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 1 } },
        // The root waits; thread 12 calls with nobody receiving; the
        // interrupt wakes the root (thread 13 had the CPU meanwhile).
        Wait { cptr: NOTIFICATION_SLOT, blocking: true },
        call(0),
        Interrupt { line: SETUP_IRQ_LINE },
        Tcb { tcb: 12, call: BindSchedContext { sched_context: 15 } },
        Recv { cptr: ENDPOINT_SLOT, reply: REPLY, slot: None, blocking: true },
    ]);
    ops
}

/// A server that takes a queued Call and so borrows a context without
/// budget stops running at once, as a thread whose own budget is gone
/// does (here it waits, in no queue, for the context's configuration);
/// SchedControl::Configure of the lent context then starts it.
#[test]
fn a_server_borrowing_a_context_without_budget_stops_running() {
    let mut ops = root_takes_a_call_on_a_context_never_configured();
    let borrowed = after(&ops);
    let (thread_13, context) = (object(&borrowed, 13), object(&borrowed, 15));
    assert_eq!(borrowed.threads[&ROOT].loan.map(|loan| loan.context), Some(context));
    assert_eq!(borrowed.threads[&ROOT].state, ThreadState::Runnable);
    assert!(borrowed.awaits_configuration(ROOT));
    assert_eq!(borrowed.sched.current, Some(thread_13), "the root has no budget to run on");
    ops.push(Configure { sched_context: 15, budget: 200, period: 1_000 });
    let configured = after(&ops);
    assert_eq!(configured.sched.current, Some(ROOT));
    assert_eq!(configured.threads[&ROOT].loan.map(|loan| loan.context), Some(context));
}

/// When the loan of a server that waits (in no queue) for the lent
/// context's configuration ends, the server runs on its own context
/// again: it is scheduled, not forgotten.
#[test]
fn a_server_waiting_for_a_lent_context_runs_when_the_loan_ends() {
    let mut ops = root_takes_a_call_on_a_context_never_configured();
    // Thread 13 suspends the caller.
    ops.push(Tcb { tcb: 12, call: Suspend });
    let ended = after(&ops);
    assert_eq!(ended.threads[&ROOT].loan, None);
    assert_eq!(ended.sched.current, Some(ROOT), "the root runs on its own (no) context");
}

/// A passive server whose own context has no budget answers one Call with
/// ReplyRecv and takes the next, queued, Call in the same system call: the
/// end of the first loan throttles it (here: into no queue, its own
/// context never configured), and the second loan schedules it by the new
/// caller's budget.
#[test]
fn a_throttled_replier_is_scheduled_by_the_next_loan() {
    let mut ops = ipc_objects();
    ops.extend(thread_setup(12, 200, Some((500, 1_000))));
    ops.extend(thread_setup(13, 100, Some((500, 1_000))));
    ops.extend([
        Op::retype_root(SCHED_CONTEXT, 8, ROOT_SCHED_CONTEXT_SLOT, 1),
        Tcb { tcb: ROOT_TCB_SLOT, call: SetPassive { passive: 1 } },
        Recv { cptr: ENDPOINT_SLOT, reply: REPLY, slot: None, blocking: true },
        // Thread 12 binds the receiving root to the context never
        // configured, and calls it: the root runs on thread 12's context.
        Tcb { tcb: ROOT_TCB_SLOT, call: BindSchedContext { sched_context: ROOT_SCHED_CONTEXT_SLOT } },
        call(0),
        // The root waits; thread 13 calls with nobody receiving; the
        // interrupt wakes the root.
        Wait { cptr: NOTIFICATION_SLOT, blocking: true },
        IpcCall { cptr: ENDPOINT_SLOT, label: 0x103, words: 0, grant: None },
        Interrupt { line: SETUP_IRQ_LINE },
        reply_recv(0),
    ]);
    let state = after(&ops);
    let (thread_13, context_13) = (object(&state, 13), object(&state, 16));
    assert_eq!(state.threads[&ROOT].loan.map(|loan| loan.context), Some(context_13));
    assert_eq!(state.threads[&thread_13].state, ThreadState::BlockedOnReply { reply: object(&state, REPLY) });
    assert_eq!(state.sched.current, Some(ROOT), "the root runs on thread 13's budget");
}
