//! IPC and scheduling scenarios, and a property test that runs random
//! system-call sequences and checks the queue invariants seL4's proofs
//! state (each thread in at most one queue, queue members in the matching
//! blocked state, ready queues holding only runnable threads of their
//! priority, the running thread in no queue, reply objects and their
//! callers agreeing).

use proptest::prelude::*;

use super::*;
use crate::cap::derivation;
use crate::cap::{Cap, Rights, SlotRef, SlotStore};
use crate::sched::Scheduler;
use crate::store::{MapStore, ObjectStore};

const ENDPOINT: PhysAddr = PhysAddr::new(0x30_0000);
const OTHER_ENDPOINT: PhysAddr = PhysAddr::new(0x30_0010);
const NOTIFICATION: PhysAddr = PhysAddr::new(0x32_0000);
const REPLY: PhysAddr = PhysAddr::new(0x31_0000);
const OTHER_REPLY: PhysAddr = PhysAddr::new(0x31_0020);

fn thread(number: u64) -> ThreadId {
    ThreadId::new(PhysAddr::new(0x20_0000 + number * 0x800))
}

fn cap(badge: u64, rights: Rights) -> EndpointCap {
    EndpointCap { object: ENDPOINT, badge, rights }
}

struct World {
    store: MapStore,
    scheduler: Scheduler,
}

impl World {
    fn new(priorities: &[u8]) -> World {
        let mut world = World { store: MapStore::new(), scheduler: Scheduler::new() };
        for (number, priority) in priorities.iter().enumerate() {
            let id = thread(number as u64);
            let tcb = world.store.tcb_mut(id);
            tcb.priority = *priority;
            tcb.state = ThreadState::Runnable;
            world.scheduler.make_ready(&mut world.store, id);
        }
        world
    }

    fn set_message(&mut self, id: ThreadId, label: u64, words: &[u64]) {
        let tcb = self.store.tcb_mut(id);
        tcb.info = MessageInfo { label, length: u8::try_from(words.len()).expect("a short message"), caps: 0 };
        tcb.words[..words.len()].copy_from_slice(words);
    }

    fn state(&self, id: ThreadId) -> ThreadState {
        self.store.tcb(id).state
    }
}

#[test]
fn call_and_reply_recv_carry_badges_and_messages() {
    let (server, client) = (thread(0), thread(1));
    let mut world = World::new(&[10, 5]);
    let outcome = receive(&mut world.store, &mut world.scheduler, server, ENDPOINT, Some(REPLY), true);
    assert_eq!(outcome, ReceiveOutcome::Blocked);
    assert_eq!(world.state(server), ThreadState::BlockedOnReceive { endpoint: ENDPOINT, reply: Some(REPLY) });

    world.set_message(client, 7, &[1, 2, 3]);
    call(&mut world.store, &mut world.scheduler, client, cap(0xc1, Rights::ALL));
    assert_eq!(world.state(client), ThreadState::BlockedOnReply { reply: REPLY });
    assert_eq!(world.store.reply(REPLY).caller, Some(client));
    let delivered = world.store.tcb(server);
    assert_eq!((delivered.state, delivered.badge, delivered.info.label), (ThreadState::Runnable, 0xc1, 7));
    assert_eq!(delivered.message(), [1, 2, 3]);
    assert_eq!(world.scheduler.schedule(&mut world.store), Some(server));

    // ReplyRecv: reply, then wait again.
    world.set_message(server, 8, &[42]);
    reply(&mut world.store, &mut world.scheduler, server, REPLY, false);
    assert_eq!(world.store.reply(REPLY).caller, None);
    let outcome = receive(&mut world.store, &mut world.scheduler, server, ENDPOINT, Some(REPLY), true);
    assert_eq!(outcome, ReceiveOutcome::Blocked);
    let answered = world.store.tcb(client);
    assert_eq!((answered.state, answered.badge, answered.info.label), (ThreadState::Runnable, 0, 8));
    assert_eq!(answered.message(), [42]);
    assert_eq!(world.scheduler.schedule(&mut world.store), Some(client));
}

#[test]
fn senders_queue_in_arrival_order_with_their_badges() {
    let mut world = World::new(&[1, 1, 1, 1]);
    for number in 1..=3 {
        world.set_message(thread(number), number, &[number * 10]);
        send(&mut world.store, &mut world.scheduler, thread(number), cap(number, Rights::WRITE), true);
        assert!(matches!(world.state(thread(number)), ThreadState::BlockedOnSend { badge, .. } if badge == number));
    }
    assert_eq!(world.store.endpoint(ENDPOINT).state, EndpointState::Sending);
    for number in 1..=3 {
        let outcome = receive(&mut world.store, &mut world.scheduler, thread(0), ENDPOINT, None, true);
        assert_eq!(outcome, ReceiveOutcome::Received);
        assert_eq!(world.store.tcb(thread(0)).badge, number);
        assert_eq!(world.store.tcb(thread(0)).message(), [number * 10]);
        assert_eq!(world.state(thread(number)), ThreadState::Runnable);
    }
    assert_eq!(world.store.endpoint(ENDPOINT).state, EndpointState::Idle);
    assert!(world.store.endpoint(ENDPOINT).queue.is_empty());
}

#[test]
fn non_blocking_variants_never_wait() {
    let mut world = World::new(&[1, 1]);
    send(&mut world.store, &mut world.scheduler, thread(0), cap(0, Rights::WRITE), false);
    assert_eq!(world.state(thread(0)), ThreadState::Runnable, "NBSend with nobody receiving drops the message");
    assert_eq!(world.store.endpoint(ENDPOINT).state, EndpointState::Idle);
    let outcome = receive(&mut world.store, &mut world.scheduler, thread(1), ENDPOINT, None, false);
    assert_eq!(outcome, ReceiveOutcome::WouldBlock);
    assert_eq!(world.state(thread(1)), ThreadState::Runnable);
}

#[test]
fn a_long_message_arrives_whole() {
    let mut world = World::new(&[1, 1]);
    let words: Vec<u64> = (0..MAX_MESSAGE_WORDS as u64).map(|word| word * 3 + 1).collect();
    receive(&mut world.store, &mut world.scheduler, thread(0), ENDPOINT, None, true);
    world.set_message(thread(1), 99, &words);
    send(&mut world.store, &mut world.scheduler, thread(1), cap(0, Rights::WRITE), true);
    assert_eq!(world.store.tcb(thread(0)).message(), &words[..]);
}

#[test]
fn a_call_to_a_receiver_without_reply_object_does_not_hang_the_caller() {
    let mut world = World::new(&[1, 1]);
    receive(&mut world.store, &mut world.scheduler, thread(0), ENDPOINT, None, true);
    world.set_message(thread(1), 5, &[5]);
    call(&mut world.store, &mut world.scheduler, thread(1), cap(0, Rights::ALL));
    let caller = world.store.tcb(thread(1));
    assert_eq!((caller.state, caller.info.label, caller.info.length), (ThreadState::Runnable, 0, 0));
    // The same when the call queued first and the receiver arrives without one.
    call(&mut world.store, &mut world.scheduler, thread(1), cap(0, Rights::ALL));
    assert!(matches!(world.state(thread(1)), ThreadState::BlockedOnSend { is_call: true, .. }));
    receive(&mut world.store, &mut world.scheduler, thread(0), ENDPOINT, None, true);
    assert_eq!(world.state(thread(1)), ThreadState::Runnable);
    assert!(world.store.tcb(thread(1)).is_queued(), "the caller is back in its ready queue");
}

#[test]
fn replies_without_a_waiting_caller_do_nothing() {
    let mut world = World::new(&[1, 1]);
    reply(&mut world.store, &mut world.scheduler, thread(0), OTHER_REPLY, true);
    assert_eq!(world.store.reply(OTHER_REPLY).caller, None);
    receive(&mut world.store, &mut world.scheduler, thread(0), ENDPOINT, Some(REPLY), true);
    call(&mut world.store, &mut world.scheduler, thread(1), cap(0, Rights::ALL));
    reply(&mut world.store, &mut world.scheduler, thread(0), REPLY, false);
    world.set_message(thread(0), 77, &[]);
    reply(&mut world.store, &mut world.scheduler, thread(0), REPLY, false);
    assert_ne!(world.store.tcb(thread(1)).info.label, 77, "a second reply reaches nobody");
}

#[test]
fn notifications_accumulate_badges_and_wake_waiters() {
    let mut world = World::new(&[1, 1]);
    signal(&mut world.store, &mut world.scheduler, NOTIFICATION, 0b001);
    signal(&mut world.store, &mut world.scheduler, NOTIFICATION, 0b100);
    assert_eq!(wait(&mut world.store, &mut world.scheduler, NOTIFICATION, thread(0), true), WaitOutcome::Received);
    assert_eq!(world.store.tcb(thread(0)).badge, 0b101);
    assert_eq!(
        wait(&mut world.store, &mut world.scheduler, NOTIFICATION, thread(0), false),
        WaitOutcome::WouldBlock,
        "Poll"
    );
    assert_eq!(world.store.tcb(thread(0)).badge, 0);
    assert_eq!(wait(&mut world.store, &mut world.scheduler, NOTIFICATION, thread(0), true), WaitOutcome::Blocked);
    assert_eq!(world.state(thread(0)), ThreadState::BlockedOnNotification { notification: NOTIFICATION });
    signal(&mut world.store, &mut world.scheduler, NOTIFICATION, 0b10);
    assert_eq!((world.state(thread(0)), world.store.tcb(thread(0)).badge), (ThreadState::Runnable, 0b10));
    // An unbadged signal is not lost: the next wait returns at once.
    signal(&mut world.store, &mut world.scheduler, NOTIFICATION, 0);
    assert_eq!(wait(&mut world.store, &mut world.scheduler, NOTIFICATION, thread(1), true), WaitOutcome::Received);
}

#[test]
fn capabilities_transfer_only_with_grant_into_an_empty_slot() {
    let mut world = World::new(&[1, 1]);
    let source = SlotRef::in_cnode(PhysAddr::new(0x40_0000), 1).expect("slot");
    let destination = SlotRef::in_cnode(PhysAddr::new(0x41_0000), 2).expect("slot");
    let given = Cap::Endpoint { object: OTHER_ENDPOINT, badge: 9, rights: Rights::WRITE };
    derivation::insert_original(&mut world.store, source, given);
    // Each thread's CSpace: a 16-slot CNode with a 60-bit guard, so that a
    // 64-bit address is the slot index.
    for (number, base) in [(1, 0x40_0000), (0, 0x41_0000)] {
        let root = Cap::CNode { base: PhysAddr::new(base), radix_bits: 4, guard: 0, guard_bits: 60 };
        let cspace = SlotRef::in_cnode(thread(number).address(), 0).expect("slot");
        derivation::insert_original(&mut world.store, cspace, root);
    }
    world.store.tcb_mut(thread(1)).extra_cptrs[0] = 1;
    world.store.tcb_mut(thread(0)).receive_slot = Some(ReceiveSlot { cptr: 2, depth: 64 });
    let send_with = |world: &mut World, rights: Rights| {
        receive(&mut world.store, &mut world.scheduler, thread(0), ENDPOINT, None, true);
        world.store.tcb_mut(thread(1)).info = MessageInfo { label: 1, length: 0, caps: 1 };
        send(&mut world.store, &mut world.scheduler, thread(1), cap(0, rights), true);
        world.store.tcb(thread(0)).info.caps
    };
    assert_eq!(send_with(&mut world, Rights::WRITE), 0, "no GRANT right: the capability stays behind");
    assert!(world.store.slot(destination).cap.is_null());
    assert_eq!(send_with(&mut world, Rights::WRITE | Rights::GRANT), 1);
    assert_eq!(world.store.slot(destination).cap, given);
    assert_eq!(world.store.slot(source).links.next, Some(destination), "the copy is derived from the original");
    assert_eq!(send_with(&mut world, Rights::WRITE | Rights::GRANT), 0, "the receive slot is full now");
}

#[test]
fn the_highest_priority_runs_and_equal_priorities_take_turns() {
    let mut world = World::new(&[5, 9, 9, 1]);
    assert_eq!(world.scheduler.highest_ready_priority(), Some(9));
    assert_eq!(world.scheduler.schedule(&mut world.store), Some(thread(1)));
    assert_eq!(world.scheduler.yield_current(&mut world.store), Some(thread(2)), "round robin at priority 9");
    assert_eq!(world.scheduler.yield_current(&mut world.store), Some(thread(1)));
    // Both priority-9 threads block: priority 5 runs, then 1.
    for number in [1, 2] {
        receive(&mut world.store, &mut world.scheduler, thread(number), ENDPOINT, None, true);
    }
    assert_eq!(world.scheduler.schedule(&mut world.store), Some(thread(0)));
    // A higher-priority thread woken by IPC preempts the running one, which
    // goes back to the front of its queue.
    world.set_message(thread(0), 1, &[]);
    send(&mut world.store, &mut world.scheduler, thread(0), cap(0, Rights::WRITE), false);
    assert_eq!(world.scheduler.schedule(&mut world.store), Some(thread(1)));
    assert_eq!(world.scheduler.queue(5).head, Some(thread(0)));
    assert_eq!(world.scheduler.highest_ready_priority(), Some(5));
}

#[test]
fn the_priority_bitmap_finds_every_level() {
    for priority in [0_u8, 1, 63, 64, 127, 128, 200, 255] {
        let mut world = World::new(&[priority]);
        assert_eq!(world.scheduler.highest_ready_priority(), Some(priority));
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(thread(0)));
        assert_eq!(world.scheduler.highest_ready_priority(), None);
    }
}

/// One system call of the property test, made by the running thread.
#[derive(Clone, Debug)]
enum Syscall {
    Send { endpoint: bool, badge: u8, blocking: bool },
    Call { endpoint: bool, badge: u8 },
    Receive { endpoint: bool, reply: bool, blocking: bool },
    Reply { reply: bool },
    Signal { badge: u8 },
    Wait { blocking: bool },
    Yield,
}

fn syscall() -> impl Strategy<Value = Syscall> {
    prop_oneof![
        (any::<bool>(), 0_u8..4, any::<bool>()).prop_map(|(endpoint, badge, blocking)| Syscall::Send {
            endpoint,
            badge,
            blocking
        }),
        (any::<bool>(), 0_u8..4).prop_map(|(endpoint, badge)| Syscall::Call { endpoint, badge }),
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(endpoint, reply, blocking)| Syscall::Receive {
            endpoint,
            reply,
            blocking
        }),
        any::<bool>().prop_map(|reply| Syscall::Reply { reply }),
        (0_u8..4).prop_map(|badge| Syscall::Signal { badge }),
        any::<bool>().prop_map(|blocking| Syscall::Wait { blocking }),
        Just(Syscall::Yield),
    ]
}

const THREAD_COUNT: usize = 4;
const THREADS: u64 = THREAD_COUNT as u64;

/// The members of a queue, checking its links on the way.
fn members(store: &MapStore, queue: &Queue) -> Vec<ThreadId> {
    let mut found = Vec::new();
    let mut previous = None;
    let mut at = queue.head;
    while let Some(member) = at {
        let links = store.tcb(member).queue_links;
        assert!(links.queued, "{member:?} in a queue without the queued mark");
        assert_eq!(links.previous, previous, "broken back link at {member:?}");
        found.push(member);
        assert!(found.len() <= THREAD_COUNT, "a queue loops");
        previous = Some(member);
        at = links.next;
    }
    assert_eq!(queue.tail, previous, "the tail is not the last member");
    found
}

fn check_invariants(world: &World) {
    let store = &world.store;
    let mut seen: Vec<ThreadId> = Vec::new();
    let mut note = |thread: ThreadId| {
        assert!(!seen.contains(&thread), "{thread:?} is in two queues");
        seen.push(thread);
    };
    for priority in 0..=255_u8 {
        for member in members(store, world.scheduler.queue(priority)) {
            let tcb = store.tcb(member);
            assert_eq!((tcb.state, tcb.priority), (ThreadState::Runnable, priority), "ready queue holds {member:?}");
            assert_ne!(world.scheduler.current(), Some(member), "the running thread is queued");
            note(member);
        }
    }
    for endpoint in [ENDPOINT, OTHER_ENDPOINT] {
        let state = store.endpoint(endpoint);
        let queued = members(store, &state.queue);
        assert_eq!(state.state == EndpointState::Idle, queued.is_empty(), "endpoint state and queue disagree");
        for member in queued {
            let matches = match store.tcb(member).state {
                ThreadState::BlockedOnSend { endpoint: at, .. } => {
                    at == endpoint && state.state == EndpointState::Sending
                }
                ThreadState::BlockedOnReceive { endpoint: at, .. } => {
                    at == endpoint && state.state == EndpointState::Receiving
                }
                _ => false,
            };
            assert!(matches, "{member:?} waits on {endpoint:?} in state {:?}", store.tcb(member).state);
            note(member);
        }
    }
    for member in members(store, &store.notification(NOTIFICATION).waiters) {
        assert_eq!(store.tcb(member).state, ThreadState::BlockedOnNotification { notification: NOTIFICATION });
        note(member);
    }
    for number in 0..THREADS {
        let id = thread(number);
        let tcb = store.tcb(id);
        match tcb.state {
            ThreadState::Runnable => {
                assert!(world.scheduler.current() == Some(id) || seen.contains(&id), "{id:?} runnable but nowhere")
            }
            ThreadState::BlockedOnReply { reply } => {
                assert_eq!(store.reply(reply).caller, Some(id), "{id:?} waits on a reply object not bound to it");
                assert!(!tcb.is_queued());
            }
            ThreadState::Inactive => panic!("no thread stops in this test"),
            _ => assert!(seen.contains(&id), "{id:?} blocked outside its queue"),
        }
    }
    for reply in [REPLY, OTHER_REPLY] {
        if let Some(caller) = store.reply(reply).caller {
            assert_eq!(store.tcb(caller).state, ThreadState::BlockedOnReply { reply });
        }
        if let Some(receiver) = store.reply(reply).receiver {
            assert!(
                matches!(store.tcb(receiver).state, ThreadState::BlockedOnReceive { reply: Some(held), .. } if held == reply),
                "reply object {reply:?} names a receiver that does not hold it"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_system_calls_keep_the_queues_sound(
        priorities in proptest::collection::vec(0_u8..4, THREAD_COUNT),
        calls in proptest::collection::vec(syscall(), 1..80),
    ) {
        let mut world = World::new(&priorities);
        world.scheduler.schedule(&mut world.store);
        // Each thread owns one of the two reply objects' worth of calls in flight.
        for call_made in calls {
            let Some(current) = world.scheduler.current() else {
                // Everyone sleeps: only an interrupt (a signal) can wake someone.
                signal(&mut world.store, &mut world.scheduler, NOTIFICATION, 1);
                world.scheduler.schedule(&mut world.store);
                check_invariants(&world);
                continue;
            };
            let endpoint_of = |other: bool| if other { OTHER_ENDPOINT } else { ENDPOINT };
            let reply_of = |other: bool| if other { OTHER_REPLY } else { REPLY };
            match call_made {
                Syscall::Send { endpoint, badge, blocking } => {
                    let target = EndpointCap { object: endpoint_of(endpoint), badge: u64::from(badge), rights: Rights::ALL };
                    send(&mut world.store, &mut world.scheduler, current, target, blocking);
                }
                Syscall::Call { endpoint, badge } => {
                    let target = EndpointCap { object: endpoint_of(endpoint), badge: u64::from(badge), rights: Rights::ALL };
                    call(&mut world.store, &mut world.scheduler, current, target);
                }
                Syscall::Receive { endpoint, reply: use_reply, blocking } => {
                    // The syscall layer refuses a reply object that is still bound.
                    let reply_object = Some(reply_of(use_reply)).filter(|at| world.store.reply(*at).is_free());
                    receive(&mut world.store, &mut world.scheduler, current, endpoint_of(endpoint), reply_object, blocking);
                }
                Syscall::Reply { reply: which } => reply(&mut world.store, &mut world.scheduler, current, reply_of(which), true),
                Syscall::Signal { badge } => signal(&mut world.store, &mut world.scheduler, NOTIFICATION, u64::from(badge)),
                Syscall::Wait { blocking } => {
                    wait(&mut world.store, &mut world.scheduler, NOTIFICATION, current, blocking);
                }
                Syscall::Yield => {
                    world.scheduler.yield_current(&mut world.store);
                }
            }
            world.scheduler.schedule(&mut world.store);
            check_invariants(&world);
        }
    }
}

mod faults {
    use super::*;

    const HANDLER_ENDPOINT: PhysAddr = PhysAddr::new(0x33_0000);

    fn with_handler(world: &mut World, faulting: ThreadId, rights: Rights) {
        let slot = fault_slot(faulting).expect("a fault slot");
        let cap = Cap::Endpoint { object: HANDLER_ENDPOINT, badge: 0xfa, rights };
        derivation::insert_original(&mut world.store, slot, cap);
    }

    #[test]
    fn a_fault_reaches_the_handler_as_a_call_and_the_reply_resumes_the_thread() {
        let (handler, faulting) = (thread(0), thread(1));
        let mut world = World::new(&[50, 10]);
        with_handler(&mut world, faulting, Rights::WRITE | Rights::GRANT);
        receive(&mut world.store, &mut world.scheduler, handler, HANDLER_ENDPOINT, Some(REPLY), true);
        let fault = Fault::Page { address: 0xdead_0000, instruction: 0x40_1234, error_code: 0b110 };
        let outcome = handle_fault(&mut world.store, &mut world.scheduler, faulting, fault);
        assert_eq!(outcome, FaultOutcome::Sent);
        assert_eq!(world.state(faulting), ThreadState::BlockedOnReply { reply: REPLY });
        let message = world.store.tcb(handler);
        assert_eq!((message.info.label, message.badge, message.info.caps), (fault_label::PAGE_FAULT, 0xfa, 0));
        assert_eq!(message.message(), [0xdead_0000, 0x40_1234, 0b110]);
        reply(&mut world.store, &mut world.scheduler, handler, REPLY, false);
        assert_eq!(world.state(faulting), ThreadState::Runnable);
    }

    #[test]
    fn a_fault_waits_in_the_queue_until_the_handler_receives() {
        let (handler, faulting) = (thread(0), thread(1));
        let mut world = World::new(&[50, 10]);
        with_handler(&mut world, faulting, Rights::WRITE);
        let fault = Fault::Exception { vector: 13, error_code: 0, instruction: 0x40_0000 };
        assert_eq!(handle_fault(&mut world.store, &mut world.scheduler, faulting, fault), FaultOutcome::Sent);
        assert!(matches!(world.state(faulting), ThreadState::BlockedOnSend { is_call: true, .. }));
        receive(&mut world.store, &mut world.scheduler, handler, HANDLER_ENDPOINT, Some(REPLY), true);
        assert_eq!(world.store.tcb(handler).info.label, fault_label::EXCEPTION);
        assert_eq!(world.store.tcb(handler).message(), [13, 0, 0x40_0000]);
        assert_eq!(world.state(faulting), ThreadState::BlockedOnReply { reply: REPLY });
    }

    #[test]
    fn without_a_usable_handler_the_thread_stops() {
        let mut world = World::new(&[10, 10, 10]);
        let fault = Fault::Exception { vector: 6, error_code: 0, instruction: 0x40_0000 };
        assert_eq!(handle_fault(&mut world.store, &mut world.scheduler, thread(0), fault), FaultOutcome::Stopped);
        assert_eq!(world.state(thread(0)), ThreadState::Inactive);
        assert!(!world.store.tcb(thread(0)).is_queued(), "a stopped thread leaves the ready queue");
        // A handler capability without WRITE is no handler.
        with_handler(&mut world, thread(1), Rights::READ);
        assert_eq!(handle_fault(&mut world.store, &mut world.scheduler, thread(1), fault), FaultOutcome::Stopped);
        // A handler that receives without a reply object cannot resume it.
        with_handler(&mut world, thread(2), Rights::WRITE);
        receive(&mut world.store, &mut world.scheduler, thread(0), HANDLER_ENDPOINT, None, true);
        assert_eq!(handle_fault(&mut world.store, &mut world.scheduler, thread(2), fault), FaultOutcome::Stopped);
        assert_eq!(world.state(thread(2)), ThreadState::Inactive);
    }
}

mod donation {
    use super::*;
    use crate::sched::SchedContext;

    const OWN_CONTEXT: PhysAddr = PhysAddr::new(0x34_0000);
    const CALLER_CONTEXT: PhysAddr = PhysAddr::new(0x34_0100);
    const OTHER_CALLER_CONTEXT: PhysAddr = PhysAddr::new(0x34_0200);

    fn bind(world: &mut World, thread: ThreadId, context: PhysAddr, state: SchedContext) {
        *world.store.sched_context_mut(context) = SchedContext { bound: Some(thread), ..state };
        world.store.tcb_mut(thread).sched_context = Some(context);
    }

    /// A passive server that takes a queued Call lent a context without
    /// budget (here one never configured, bound to the caller while it
    /// waited in the queue) stops running at once: it runs on no budget.
    /// It used to keep the CPU. When that loan ends it is made ready by
    /// its own context: it used to stay in no queue, runnable and
    /// forgotten.
    #[test]
    fn a_server_borrowing_no_budget_stops_and_runs_again_when_the_loan_ends() {
        let (server, caller) = (thread(0), thread(1));
        let mut world = World::new(&[50, 10]);
        world.store.tcb_mut(server).passive = true;
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(server));
        call(&mut world.store, &mut world.scheduler, caller, cap(0, Rights::WRITE));
        bind(&mut world, caller, CALLER_CONTEXT, SchedContext::FRESH);
        receive(&mut world.store, &mut world.scheduler, server, ENDPOINT, Some(REPLY), true);
        assert_eq!(world.store.tcb(server).loan, Some(Loan { reply: REPLY, context: CALLER_CONTEXT }));
        assert_eq!(world.scheduler.current(), None, "no budget to run on");
        assert!(!world.store.tcb(server).is_queued(), "it waits for the lent context's configuration");
        stop_thread(&mut world.store, &mut world.scheduler, caller);
        assert_eq!(world.store.tcb(server).loan, None);
        assert!(world.store.tcb(server).is_queued(), "ready again on its own (unlimited) context");
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(server));
    }

    /// A passive server whose own context was never configured answers a
    /// Call (the loan's end throttles it into no queue) and, in the same
    /// ReplyRecv, takes the next caller's queued Call: the new loan makes
    /// it ready by that caller's budget. It used to stay in no queue.
    #[test]
    fn a_replier_throttled_by_its_own_context_is_made_ready_by_the_next_loan() {
        let (server, first, second) = (thread(0), thread(1), thread(2));
        let mut world = World::new(&[50, 20, 10]);
        world.store.tcb_mut(server).passive = true;
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(server));
        receive(&mut world.store, &mut world.scheduler, server, ENDPOINT, Some(REPLY), true);
        bind(&mut world, server, OWN_CONTEXT, SchedContext::FRESH);
        bind(&mut world, first, CALLER_CONTEXT, SchedContext::new(500, 1_000, 0));
        bind(&mut world, second, OTHER_CALLER_CONTEXT, SchedContext::new(500, 1_000, 0));
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(first));
        call(&mut world.store, &mut world.scheduler, first, cap(0, Rights::WRITE));
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(server), "on the first caller's budget");
        call(&mut world.store, &mut world.scheduler, second, cap(0, Rights::WRITE));
        reply(&mut world.store, &mut world.scheduler, server, REPLY, false);
        assert_eq!(world.scheduler.current(), None, "no budget of its own");
        receive(&mut world.store, &mut world.scheduler, server, ENDPOINT, Some(REPLY), true);
        assert_eq!(world.store.tcb(server).loan, Some(Loan { reply: REPLY, context: OTHER_CALLER_CONTEXT }));
        assert!(world.store.tcb(server).is_queued(), "ready on the second caller's budget");
        assert_eq!(world.scheduler.schedule(&mut world.store), Some(server));
    }
}
