//! Donation scenarios: whose budget pays, when a loan begins and ends,
//! and where the server is queued afterwards.

use super::super::{EndpointCap, ThreadId, ThreadState, call, receive, reply, stop_thread};
use super::{running_context, server_of};
use crate::cap::Rights;
use crate::memory::PhysAddr;
use crate::sched::{SchedContext, Scheduler};
use crate::store::{MapStore, ObjectStore};

const ENDPOINT: PhysAddr = PhysAddr::new(0x30_0000);
const OTHER_ENDPOINT: PhysAddr = PhysAddr::new(0x30_0040);
const REPLY: PhysAddr = PhysAddr::new(0x31_0000);
const OTHER_REPLY: PhysAddr = PhysAddr::new(0x31_0020);
const PERIOD: u64 = 1_000;

fn thread(number: u64) -> ThreadId {
    ThreadId::new(PhysAddr::new(0x20_0000 + number * 0x800))
}

fn context(number: u64) -> PhysAddr {
    PhysAddr::new(0x50_0000 + number * 0x100)
}

fn endpoint(object: PhysAddr) -> EndpointCap {
    EndpointCap { object, badge: 0, rights: Rights::ALL }
}

struct World {
    store: MapStore,
    scheduler: Scheduler,
}

impl World {
    /// Threads as (priority, budget per 1,000 ticks, passive), all
    /// runnable from time 0, then the scheduler's pick.
    fn new(threads: &[(u8, u64, bool)]) -> World {
        let mut world = World { store: MapStore::new(), scheduler: Scheduler::new() };
        for (number, &(priority, budget, passive)) in (0..).zip(threads) {
            let id = thread(number);
            *world.store.sched_context_mut(context(number)) =
                SchedContext { bound: Some(id), ..SchedContext::new(budget, PERIOD, 0) };
            let tcb = world.store.tcb_mut(id);
            tcb.priority = priority;
            tcb.passive = passive;
            tcb.sched_context = Some(context(number));
            tcb.state = ThreadState::Runnable;
            world.scheduler.make_ready(&mut world.store, id);
        }
        world.scheduler.schedule(&mut world.store);
        world
    }

    fn current(&self) -> Option<ThreadId> {
        self.scheduler.current()
    }

    /// The running thread receives on `at` with `reply_object`.
    fn receive(&mut self, at: PhysAddr, reply_object: PhysAddr) {
        let current = self.current().expect("a running thread");
        receive(&mut self.store, &mut self.scheduler, current, at, Some(reply_object), true);
        self.scheduler.schedule(&mut self.store);
    }

    /// The running thread calls `at`.
    fn call(&mut self, at: PhysAddr) {
        let current = self.current().expect("a running thread");
        call(&mut self.store, &mut self.scheduler, current, endpoint(at));
        self.scheduler.schedule(&mut self.store);
    }

    /// The running thread replies through `reply_object`.
    fn reply(&mut self, reply_object: PhysAddr) {
        let current = self.current().expect("a running thread");
        reply(&mut self.store, &mut self.scheduler, current, reply_object, false);
        self.scheduler.schedule(&mut self.store);
    }

    /// Time passes to `now`: the kernel's entry accounting and refills.
    fn tick(&mut self, now: u64) {
        self.scheduler.account(&mut self.store, now);
        self.scheduler.release_due(&mut self.store, now);
        self.scheduler.schedule(&mut self.store);
    }

    fn remaining(&self, number: u64) -> u64 {
        self.store.sched_context(context(number)).remaining
    }

    fn loan_context(&self, id: ThreadId) -> Option<PhysAddr> {
        self.store.tcb(id).loan.map(|loan| loan.context)
    }
}

/// A passive server (thread 0, priority 20, 100 ticks of its own) waiting
/// on the endpoint, and its client (thread 1, priority 10, 500 ticks)
/// running.
fn served() -> World {
    let mut world = World::new(&[(20, 100, true), (10, 500, false)]);
    assert_eq!(world.current(), Some(thread(0)));
    world.receive(ENDPOINT, REPLY);
    assert_eq!(world.current(), Some(thread(1)));
    world
}

#[test]
fn a_passive_server_runs_on_its_callers_budget_until_it_replies() {
    let (server, client) = (thread(0), thread(1));
    let mut world = served();
    world.call(ENDPOINT);
    assert_eq!(world.current(), Some(server));
    assert_eq!(world.loan_context(server), Some(context(1)));
    assert_eq!(world.store.sched_context(context(1)).lent_to, Some(server));
    assert_eq!(world.store.sched_context(context(1)).bound, Some(client), "the context stays bound to its caller");
    assert_eq!(server_of(&world.store, REPLY), Some(server));
    world.tick(300);
    assert_eq!((world.remaining(0), world.remaining(1)), (100, 200), "the caller's budget paid for the server");
    world.reply(REPLY);
    assert_eq!(world.loan_context(server), None);
    assert_eq!(world.store.sched_context(context(1)).lent_to, None);
    assert_eq!(running_context(&world.store, server), Some(context(0)));
    assert_eq!(world.current(), Some(server), "the server keeps the CPU after replying: it has its own budget");
}

#[test]
fn a_server_out_of_its_callers_budget_waits_for_the_callers_refill() {
    let server = thread(0);
    let mut world = served();
    world.call(ENDPOINT);
    world.tick(500);
    assert_eq!(world.remaining(1), 0);
    assert_eq!(world.remaining(0), 100, "its own budget is not touched");
    assert_ne!(world.current(), Some(server), "throttled on the caller's context");
    world.tick(999);
    assert_ne!(world.current(), Some(server));
    world.tick(PERIOD);
    assert_eq!(world.current(), Some(server), "the caller's refill releases it");
    assert_eq!(world.remaining(1), 500);
}

#[test]
fn an_ordinary_server_keeps_its_own_context() {
    let mut world = World::new(&[(20, 100, false), (10, 500, false)]);
    world.receive(ENDPOINT, REPLY);
    world.call(ENDPOINT);
    assert_eq!(world.current(), Some(thread(0)));
    assert_eq!(world.loan_context(thread(0)), None);
    world.tick(50);
    assert_eq!((world.remaining(0), world.remaining(1)), (50, 500));
}

#[test]
fn a_queued_call_is_lent_when_the_server_receives_it() {
    // The client calls before the server waits: Recv takes the queued Call.
    let mut world = World::new(&[(10, 500, false), (5, 100, true)]);
    world.call(ENDPOINT);
    assert_eq!(world.current(), Some(thread(1)));
    world.receive(ENDPOINT, REPLY);
    assert_eq!(world.loan_context(thread(1)), Some(context(0)));
    world.tick(40);
    assert_eq!((world.remaining(0), world.remaining(1)), (460, 100));
}

#[test]
fn loans_do_not_chain() {
    // Client 2 calls passive server 1, which calls passive server 0: the
    // second server runs on its own context.
    let mut world = World::new(&[(30, 100, true), (20, 200, true), (10, 500, false)]);
    world.receive(OTHER_ENDPOINT, OTHER_REPLY);
    world.receive(ENDPOINT, REPLY);
    assert_eq!(world.current(), Some(thread(2)));
    world.call(ENDPOINT);
    assert_eq!((world.current(), world.loan_context(thread(1))), (Some(thread(1)), Some(context(2))));
    world.call(OTHER_ENDPOINT);
    assert_eq!(world.current(), Some(thread(0)));
    assert_eq!(world.loan_context(thread(0)), None, "a borrowed context is not lent on");
    world.tick(30);
    assert_eq!(world.remaining(0), 70);
}

#[test]
fn stopping_the_caller_ends_the_loan_and_throttles_a_server_without_budget_of_its_own() {
    let (server, client) = (thread(0), thread(1));
    let mut world = served();
    world.call(ENDPOINT);
    world.store.sched_context_mut(context(0)).remaining = 0;
    assert_eq!(world.current(), Some(server));
    stop_thread(&mut world.store, &mut world.scheduler, client);
    assert_eq!(world.loan_context(server), None);
    assert_eq!(world.store.sched_context(context(1)).lent_to, None);
    assert_eq!(world.current(), None, "back on its own empty budget, the server is off the CPU");
    assert_eq!(world.store.tcb(server).state, ThreadState::Runnable);
    world.tick(PERIOD);
    assert_eq!(world.current(), Some(server), "its own refill releases it");
}

#[test]
fn stopping_the_caller_requeues_a_queued_server_by_its_own_budget() {
    let server = thread(0);
    let mut world = served();
    world.call(ENDPOINT);
    world.tick(500);
    // Throttled on the caller's empty context; its own still has 100.
    assert_ne!(world.current(), Some(server));
    stop_thread(&mut world.store, &mut world.scheduler, thread(1));
    world.scheduler.schedule(&mut world.store);
    assert_eq!(world.current(), Some(server), "its own budget lets it run again at once");
}

#[test]
fn stopping_the_server_gives_the_context_back() {
    let (server, client) = (thread(0), thread(1));
    let mut world = served();
    world.call(ENDPOINT);
    stop_thread(&mut world.store, &mut world.scheduler, server);
    assert_eq!(world.loan_context(server), None);
    assert_eq!(world.store.sched_context(context(1)).lent_to, None);
    assert_eq!(world.store.tcb(client).state, ThreadState::BlockedOnReply { reply: REPLY });
    assert_eq!(server_of(&world.store, REPLY), None);
}
