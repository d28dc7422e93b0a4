//! The fast path against the general path: random states and system calls
//! run through both (fast path where it applies, general path otherwise,
//! against the general path always) must leave the whole kernel in the same
//! state; and every condition the fast path checks makes it fall back
//! without changing anything.

use proptest::prelude::*;

use super::*;
use crate::cap::derivation;
use crate::cap::object::{ObjectKind, SLOT_BITS};
use crate::ipc::ReceiveSlot;
use crate::platform::RecordingPlatform;
use crate::sched::SchedContext;
use crate::store::MapStore;
use crate::syscall::handle;

const THREADS: usize = 4;

fn thread(index: usize) -> ThreadId {
    ThreadId::new(PhysAddr::new(0x20_0000 + index as u64 * 0x800))
}

fn cnode(index: usize) -> PhysAddr {
    PhysAddr::new(0x40_0000 + index as u64 * 0x1000)
}

fn endpoint(index: u64) -> PhysAddr {
    PhysAddr::new(0x60_0000 + index * 0x40)
}

const NOTIFICATION: PhysAddr = PhysAddr::new(0x60_0100);

fn reply(index: usize) -> PhysAddr {
    PhysAddr::new(0x61_0000 + (index % THREADS) as u64 * 0x20)
}

fn sched_context(index: usize) -> PhysAddr {
    PhysAddr::new(0x62_0000 + index as u64 * 0x100)
}

/// What every thread's CNode holds (a cptr is the slot index).
mod slot {
    /// Its own reply object (also in slot 0: a reply address of 0).
    pub(super) const REPLY: u64 = 4;
    /// Endpoint 0, badged, all rights.
    pub(super) const CALL: u64 = 1;
    /// Endpoint 1, WRITE only.
    pub(super) const CALL_OTHER: u64 = 2;
    /// Endpoint 0, READ only.
    pub(super) const RECEIVE: u64 = 3;
    /// The next thread's reply object.
    pub(super) const FOREIGN_REPLY: u64 = 5;
    /// The notification.
    pub(super) const NOTIFICATION: u64 = 6;
    /// Endpoint 1, all rights.
    pub(super) const BOTH: u64 = 7;
}

/// The thread whose CSpace is a 56-bit CNode level (the fast path's
/// lookup does not apply; the general one does).
const SHORT_CSPACE: usize = 3;

/// Threads with the given priorities and scheduling contexts (`None`:
/// none), all runnable, the highest running.
fn world(priorities: [u8; THREADS], budgets: [Option<u64>; THREADS]) -> Kernel<MapStore> {
    let mut store = MapStore::new();
    for index in 0..THREADS {
        let id = thread(index);
        store.init_object(ObjectKind::Tcb, id.address(), 11);
        store.init_object(ObjectKind::CNode, cnode(index), 4 + SLOT_BITS);
        let guard_bits = if index == SHORT_CSPACE { 52 } else { 60 };
        let root = Cap::CNode { base: cnode(index), radix_bits: 4, guard: 0, guard_bits };
        derivation::insert_original(&mut store, cspace_slot(id).expect("slot"), root);
        let in_cnode = |slot| SlotRef::in_cnode(cnode(index), slot).expect("slot");
        let caps = [
            (0, Cap::Reply { object: reply(index) }),
            (slot::CALL, Cap::Endpoint { object: endpoint(0), badge: 0x10 + index as u64, rights: Rights::ALL }),
            (slot::CALL_OTHER, Cap::Endpoint { object: endpoint(1), badge: 0, rights: Rights::WRITE }),
            (slot::RECEIVE, Cap::Endpoint { object: endpoint(0), badge: 0, rights: Rights::READ }),
            (slot::REPLY, Cap::Reply { object: reply(index) }),
            (slot::FOREIGN_REPLY, Cap::Reply { object: reply(index + 1) }),
            (slot::NOTIFICATION, Cap::Notification { object: NOTIFICATION, badge: 1 << index, rights: Rights::ALL }),
            (slot::BOTH, Cap::Endpoint { object: endpoint(1), badge: 0x20, rights: Rights::ALL }),
        ];
        for (at, cap) in caps {
            derivation::insert_original(&mut store, in_cnode(at), cap);
        }
        let tcb = store.tcb_mut(id);
        tcb.priority = priorities[index];
        tcb.max_priority = priorities[index];
        tcb.state = ThreadState::Runnable;
        tcb.receive_slot = Some(ReceiveSlot { cptr: 15, depth: 64 });
        if let Some(budget) = budgets[index] {
            *store.sched_context_mut(sched_context(index)) =
                SchedContext { bound: Some(id), ..SchedContext::new(budget, 1_000, 0) };
            store.tcb_mut(id).sched_context = Some(sched_context(index));
        }
    }
    let mut kernel = Kernel::new(store);
    for index in 0..THREADS {
        kernel.scheduler.make_ready(&mut kernel.store, thread(index));
    }
    kernel.scheduler.schedule(&mut kernel.store);
    kernel
}

/// What the architecture code does before either path: the registers go
/// into the running thread's TCB and its info word is cleared.
fn enter(kernel: &mut Kernel<MapStore>, caller: ThreadId, words: [u64; 6], extra: [u64; 3]) {
    let tcb = kernel.store.tcb_mut(caller);
    tcb.words[..6].copy_from_slice(&words);
    tcb.extra_cptrs = extra;
    tcb.info = MessageInfo::default();
}

fn general(kernel: &mut Kernel<MapStore>, caller: ThreadId, args: SyscallArgs) -> Option<ThreadId> {
    while handle(kernel, &mut RecordingPlatform::new(), caller, args).is_err() {}
    kernel.scheduler.schedule(&mut kernel.store)
}

fn fast(kernel: &mut Kernel<MapStore>, caller: ThreadId, args: SyscallArgs) -> Option<ThreadId> {
    match args.number {
        number::CALL => fastpath_call(kernel, caller, args),
        number::REPLY_RECV => fastpath_reply_recv(kernel, caller, args),
        _ => None,
    }
}

/// One system call of the running thread through both paths; checks they
/// agree, keeps the result, and says whether the fast path took it.
fn step(kernel: &mut Kernel<MapStore>, args: SyscallArgs, words: [u64; 6], extra: [u64; 3]) -> bool {
    let Some(caller) = kernel.scheduler.current() else { return false };
    enter(kernel, caller, words, extra);
    let mut reference = kernel.clone();
    let expected = general(&mut reference, caller, args);
    let before = kernel.clone();
    let (next, taken) = match fast(kernel, caller, args) {
        Some(next) => (Some(next), true),
        None => {
            assert_eq!(*kernel, before, "a fallback changed the state: {args:?}");
            (general(kernel, caller, args), false)
        }
    };
    assert_eq!(next, expected, "{args:?}");
    assert_eq!(*kernel, reference, "fast and general paths disagree on {args:?} (fast path taken: {taken})");
    taken
}

fn args(number: u64, cptr: u64, length: u8, reply_cptr: u64) -> SyscallArgs {
    SyscallArgs { number, cptr, info: MessageInfo { label: 7, length, caps: 0 }, reply_cptr }
}

const WORDS: [u64; 6] = [11, 22, 33, 44, 55, 66];

#[derive(Clone, Debug)]
enum Op {
    Syscall { number: u64, cptr: u64, length: u8, caps: u8, reply_cptr: u64, words: [u64; 6], extra: u64 },
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let number = prop_oneof![
        4 => Just(number::CALL),
        4 => Just(number::REPLY_RECV),
        2 => Just(number::RECV),
        1 => Just(number::SEND),
        1 => Just(number::NB_RECV),
        1 => Just(number::SIGNAL),
        1 => Just(number::WAIT),
        1 => Just(number::YIELD),
    ];
    prop_oneof![
        8 => (number, 0_u64..9, prop_oneof![4 => 0_u8..6, 1 => 0_u8..130], 0_u8..2, 0_u64..7, any::<[u64; 6]>(), 0_u64..9)
            .prop_map(|(number, cptr, length, caps, reply_cptr, words, extra)| Op::Syscall {
                number, cptr, length, caps, reply_cptr, words, extra
            }),
        1 => (1_u64..400).prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random systems and system-call sequences: after every call the
    /// kernel with the fast path equals the kernel without it.
    #[test]
    fn the_fast_path_leaves_exactly_the_state_of_the_general_path(
        priorities in any::<[u8; THREADS]>().prop_map(|p| p.map(|p| p % 4)),
        budgets in proptest::array::uniform4(proptest::option::of(50_u64..600)),
        passive in any::<[bool; THREADS]>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut kernel = world(priorities, budgets);
        // Passive servers borrow their callers' contexts (`crate::ipc`
        // donation): both paths must lend and give back alike.
        for (index, passive) in passive.into_iter().enumerate() {
            kernel.store.tcb_mut(thread(index)).passive = passive;
        }
        for op in ops {
            match op {
                Op::Syscall { number, cptr, length, caps, reply_cptr, words, extra } => {
                    let info = MessageInfo { label: words[5] % 5, length, caps };
                    step(&mut kernel, SyscallArgs { number, cptr, info, reply_cptr }, words, [extra, 0, 0]);
                }
                Op::Tick(ticks) => {
                    kernel.now += ticks;
                    let now = kernel.now;
                    kernel.scheduler.account(&mut kernel.store, now);
                    kernel.scheduler.release_due(&mut kernel.store, now);
                    kernel.scheduler.schedule(&mut kernel.store);
                }
            }
        }
    }
}

/// Server (thread 0, priority 200) waiting in Recv, client (thread 1,
/// priority 100) running, thread 2 (priority 50) ready, thread 3 (short
/// CSpace, priority 10) ready.
fn server_waiting() -> Kernel<MapStore> {
    let mut kernel = world([200, 100, 50, 10], [Some(500), None, None, None]);
    assert_eq!(kernel.scheduler.current(), Some(thread(0)));
    assert!(!step(&mut kernel, args(number::RECV, slot::RECEIVE, 0, slot::REPLY), WORDS, [0; 3]));
    assert_eq!(kernel.scheduler.current(), Some(thread(1)));
    kernel
}

/// The server has received the client's call and runs.
fn client_waiting() -> Kernel<MapStore> {
    let mut kernel = server_waiting();
    assert!(step(&mut kernel, args(number::CALL, slot::CALL, 1, 0), WORDS, [0; 3]));
    assert_eq!(kernel.scheduler.current(), Some(thread(0)));
    kernel
}

#[test]
fn a_call_and_reply_loop_takes_the_fast_path_every_time() {
    let mut kernel = client_waiting();
    let (server, client) = (thread(0), thread(1));
    assert_eq!(kernel.store.tcb(server).badge, 0x11);
    assert_eq!(kernel.store.tcb(server).message(), &[11]);
    for round in 0..20_u64 {
        let words = [round + 1, 0, 0, 0, 0, 0];
        assert!(step(&mut kernel, args(number::REPLY_RECV, slot::RECEIVE, 4, slot::REPLY), words, [0; 3]));
        assert_eq!(kernel.scheduler.current(), Some(client));
        assert_eq!(kernel.store.tcb(client).message(), &[round + 1, 0, 0, 0]);
        assert_eq!(kernel.store.tcb(client).badge, 0);
        assert!(step(&mut kernel, args(number::CALL, slot::CALL, 2, 0), [round, 9, 0, 0, 0, 0], [0; 3]));
        assert_eq!(kernel.scheduler.current(), Some(server));
        assert_eq!(kernel.store.tcb(server).message(), &[round, 9]);
    }
}

/// `args` by the running thread falls back, changing nothing (`step`
/// checks that, and that the general path then agrees).
fn falls_back(kernel: &mut Kernel<MapStore>, args: SyscallArgs) {
    assert!(!step(kernel, args, WORDS, [slot::CALL, 0, 0]), "the fast path took {args:?}");
}

#[test]
fn call_falls_back_outside_the_common_case() {
    // Too long, a capability, not an endpoint, no WRITE, another number.
    falls_back(&mut server_waiting(), args(number::CALL, slot::CALL, 5, 0));
    let mut kernel = server_waiting();
    falls_back(&mut kernel, SyscallArgs { info: MessageInfo { label: 1, length: 1, caps: 1 }, ..args(1, 1, 1, 0) });
    falls_back(&mut server_waiting(), args(number::CALL, slot::NOTIFICATION, 1, 0));
    falls_back(&mut server_waiting(), args(number::CALL, slot::RECEIVE, 1, 0));
    falls_back(&mut server_waiting(), args(number::CALL, 12, 1, 0));
    falls_back(&mut server_waiting(), args(number::SEND, slot::CALL, 1, 0));
    // No receiver waiting on that endpoint.
    falls_back(&mut server_waiting(), args(number::CALL, slot::CALL_OTHER, 1, 0));
    // A guard that does not match.
    falls_back(&mut server_waiting(), args(number::CALL, slot::CALL | 1 << 40, 1, 0));
}

#[test]
fn call_falls_back_for_a_short_cspace_a_caller_not_running_or_a_receiver_without_reply_object() {
    // Thread 3's CSpace is one 56-bit level: the general lookup only.
    let mut kernel = world([0, 0, 0, 200], [None; THREADS]);
    assert_eq!(kernel.scheduler.current(), Some(thread(SHORT_CSPACE)));
    falls_back(&mut kernel, args(number::CALL, slot::CALL << 8, 1, 0));
    // The caller is not the running thread.
    let mut kernel = server_waiting();
    let before = kernel.clone();
    assert_eq!(fastpath_call(&mut kernel, thread(2), args(number::CALL, slot::CALL, 1, 0)), None);
    assert_eq!(kernel, before);
    // The receiver named no reply object.
    let mut kernel = world([200, 100, 50, 10], [None; THREADS]);
    assert!(!step(&mut kernel, args(number::RECV, slot::RECEIVE, 0, 0), WORDS, [0; 3]));
    falls_back(&mut kernel, args(number::CALL, slot::CALL, 1, 0));
}

#[test]
fn call_falls_back_when_the_receiver_would_not_run_next() {
    // A bound reply object (an inconsistent state the fast path refuses).
    let mut kernel = server_waiting();
    kernel.store.reply_mut(reply(0)).caller = Some(thread(3));
    let before = kernel.clone();
    assert_eq!(fastpath_call(&mut kernel, thread(1), args(number::CALL, slot::CALL, 1, 0)), None);
    assert_eq!(kernel, before);
    // A ready thread of the receiver's priority, or a higher one, comes
    // first (thread 0 is put into Receive directly, from its ready queue).
    for other in [60, 70] {
        let mut kernel = world([60, 100, other, 10], [None; THREADS]);
        let Kernel { store, scheduler, .. } = &mut kernel;
        crate::ipc::receive(store, scheduler, thread(0), endpoint(0), Some(reply(0)), true);
        assert_eq!(scheduler.current(), Some(thread(1)));
        falls_back(&mut kernel, args(number::CALL, slot::CALL, 1, 0));
    }
    // The receiver has no budget left.
    let mut kernel = server_waiting();
    kernel.store.sched_context_mut(sched_context(0)).remaining = 0;
    falls_back(&mut kernel, args(number::CALL, slot::CALL, 1, 0));
}

#[test]
fn reply_recv_falls_back_outside_the_common_case() {
    let reply_recv = |length, cptr, reply_cptr| args(number::REPLY_RECV, cptr, length, reply_cptr);
    falls_back(&mut client_waiting(), reply_recv(5, slot::RECEIVE, slot::REPLY));
    // A reply address of 0 receives without a reply object.
    falls_back(&mut client_waiting(), reply_recv(1, slot::RECEIVE, 0));
    // Not a reply capability; nobody waits on that reply object.
    falls_back(&mut client_waiting(), reply_recv(1, slot::RECEIVE, slot::CALL));
    falls_back(&mut client_waiting(), reply_recv(1, slot::RECEIVE, slot::FOREIGN_REPLY));
    // An endpoint capability without READ; not an endpoint.
    falls_back(&mut client_waiting(), reply_recv(1, slot::CALL_OTHER, slot::REPLY));
    falls_back(&mut client_waiting(), reply_recv(1, slot::NOTIFICATION, slot::REPLY));
    // The caller no longer waits for this reply.
    let mut kernel = client_waiting();
    kernel.store.tcb_mut(thread(1)).state = ThreadState::Inactive;
    falls_back(&mut kernel, reply_recv(1, slot::RECEIVE, slot::REPLY));
    // Another receiver holds the reply object.
    let mut kernel = client_waiting();
    kernel.store.reply_mut(reply(0)).receiver = Some(thread(2));
    let before = kernel.clone();
    assert_eq!(fastpath_reply_recv(&mut kernel, thread(0), reply_recv(1, slot::RECEIVE, slot::REPLY)), None);
    assert_eq!(kernel, before);
    // The replier is not the running thread.
    let mut kernel = client_waiting();
    let before = kernel.clone();
    assert_eq!(fastpath_reply_recv(&mut kernel, thread(2), reply_recv(1, slot::RECEIVE, slot::REPLY)), None);
    assert_eq!(kernel, before);
}

#[test]
fn reply_recv_falls_back_for_a_waiting_sender_or_a_caller_that_would_not_run_next() {
    let reply_recv = args(number::REPLY_RECV, slot::RECEIVE, 1, slot::REPLY);
    // A sender waits on the endpoint: the replier receives at once.
    let mut kernel = client_waiting();
    let send_cap = crate::ipc::EndpointCap { object: endpoint(0), badge: 5, rights: Rights::WRITE };
    crate::ipc::send(&mut kernel.store, &mut kernel.scheduler, thread(3), send_cap, true);
    assert_eq!(kernel.store.endpoint(endpoint(0)).state, EndpointState::Sending);
    falls_back(&mut kernel, reply_recv);
    // A ready thread of the caller's priority (100) or higher comes first:
    // thread 2 blocks receiving, gets that priority, and the server wakes it.
    for priority in [100, 150] {
        let mut kernel = client_waiting();
        let Kernel { store, scheduler, .. } = &mut kernel;
        crate::ipc::receive(store, scheduler, thread(2), endpoint(1), None, true);
        store.tcb_mut(thread(2)).priority = priority;
        let wake = crate::ipc::EndpointCap { object: endpoint(1), badge: 0, rights: Rights::WRITE };
        crate::ipc::send(store, scheduler, thread(0), wake, false);
        assert_eq!(scheduler.highest_ready_priority(), Some(priority));
        falls_back(&mut kernel, reply_recv);
    }
    // The caller has no budget left.
    let mut kernel = world([200, 100, 50, 10], [None, Some(500), None, None]);
    assert!(!step(&mut kernel, args(number::RECV, slot::RECEIVE, 0, slot::REPLY), WORDS, [0; 3]));
    assert!(step(&mut kernel, args(number::CALL, slot::CALL, 1, 0), WORDS, [0; 3]));
    kernel.store.sched_context_mut(sched_context(1)).remaining = 0;
    falls_back(&mut kernel, reply_recv);
}

#[test]
fn a_passive_server_borrows_the_callers_context_on_the_fast_path_and_gives_it_back() {
    // The server (thread 0) is passive with a budget of its own; the
    // client (thread 1) has one too.
    let mut kernel = world([200, 100, 50, 10], [Some(500), Some(400), None, None]);
    let server = thread(0);
    kernel.store.tcb_mut(server).passive = true;
    assert!(!step(&mut kernel, args(number::RECV, slot::RECEIVE, 0, slot::REPLY), WORDS, [0; 3]));
    for _ in 0..3 {
        assert!(step(&mut kernel, args(number::CALL, slot::CALL, 1, 0), WORDS, [0; 3]));
        let loan = kernel.store.tcb(server).loan.expect("a loan");
        assert_eq!((loan.reply, loan.context), (reply(0), sched_context(1)));
        assert_eq!(kernel.store.sched_context(sched_context(1)).lent_to, Some(server));
        assert_eq!(crate::ipc::running_context(&kernel.store, server), Some(sched_context(1)));
        assert!(step(&mut kernel, args(number::REPLY_RECV, slot::RECEIVE, 1, slot::REPLY), WORDS, [0; 3]));
        assert_eq!(kernel.store.tcb(server).loan, None);
        assert_eq!(kernel.store.sched_context(sched_context(1)).lent_to, None);
    }
}

#[test]
fn a_call_to_a_passive_server_falls_back_when_the_callers_budget_is_gone() {
    let mut kernel = world([200, 100, 50, 10], [Some(500), Some(400), None, None]);
    kernel.store.tcb_mut(thread(0)).passive = true;
    assert!(!step(&mut kernel, args(number::RECV, slot::RECEIVE, 0, slot::REPLY), WORDS, [0; 3]));
    // The server's own budget is full, but it would run on the caller's.
    kernel.store.sched_context_mut(sched_context(1)).remaining = 0;
    falls_back(&mut kernel, args(number::CALL, slot::CALL, 1, 0));
    assert_eq!(kernel.store.tcb(thread(0)).loan.map(|loan| loan.context), Some(sched_context(1)));
    assert_ne!(kernel.scheduler.current(), Some(thread(0)), "the server waits for the caller's refill");
}
