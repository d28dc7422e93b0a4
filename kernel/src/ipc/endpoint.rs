//! Send, Receive, Call and Reply on endpoints.

use super::donation::{begin_loan, end_loan, lend_to_receiving, lendable};
use super::{EndpointState, MessageInfo, ReceiveSlot, ThreadId, ThreadState};
use crate::cap::cspace::{self, CPTR_BITS};
use crate::cap::derivation;
use crate::cap::{Cap, Rights, SlotRef};
use crate::memory::PhysAddr;
use crate::sched::Scheduler;
use crate::store::ObjectStore;

/// The parts of an endpoint capability a send or receive uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointCap {
    /// The endpoint.
    pub object: PhysAddr,
    /// Stamped on what is sent through it.
    pub badge: u64,
    /// Its rights (GRANT lets a send transfer a capability).
    pub rights: Rights,
}

/// What a Receive found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// A sender was waiting: the message is in the receiver's TCB.
    Received,
    /// Nobody was sending and the receiver now sleeps in the queue.
    Blocked,
    /// Nobody was sending and the receiver did not want to wait (NBRecv).
    WouldBlock,
}

/// The non-empty slot `cptr` names in `thread`'s CSpace (all 64 bits).
fn sender_slot(store: &impl ObjectStore, thread: ThreadId, cptr: u64) -> Option<SlotRef> {
    let root = store.slot(SlotRef::in_cnode(thread.address(), 0)?).cap;
    let slot = cspace::resolve(store, &root, cptr, CPTR_BITS).ok()?.slot;
    (!store.slot(slot).cap.is_null()).then_some(slot)
}

/// The slot `receive` names in `thread`'s CSpace, using exactly its depth.
fn receiver_slot(store: &impl ObjectStore, thread: ThreadId, receive: ReceiveSlot) -> Option<SlotRef> {
    let root = store.slot(SlotRef::in_cnode(thread.address(), 0)?).cap;
    cspace::resolve_exact(store, &root, receive.cptr, receive.depth).ok()
}

/// Copies the message from `sender` to `receiver`, stamps the badge, and
/// transfers the sender's capability if the sender may grant and the
/// receiver offers an empty slot (otherwise the capability is dropped and
/// `info.caps` says 0, as in seL4). Both slots are looked up now, in the
/// two threads' CSpaces as they are at delivery: the sender's first extra
/// capability address and the receiver's receive slot.
fn transfer(store: &mut impl ObjectStore, sender: ThreadId, receiver: ThreadId, badge: u64, can_grant: bool) {
    let from = store.tcb(sender);
    let info = from.info;
    let length = usize::from(info.length).min(super::MAX_MESSAGE_WORDS);
    let send_cptr = from.extra_cptrs[0];
    let receive_slot = store.tcb(receiver).receive_slot;
    let mut transferred = 0;
    if info.caps > 0
        && can_grant
        && let Some(receive) = receive_slot
        && let (Some(source), Some(destination)) =
            (sender_slot(store, sender, send_cptr), receiver_slot(store, receiver, receive))
        && store.slot(destination).cap.is_null()
        && let Ok(cap) = store.slot(source).cap.derive()
    {
        derivation::insert_derived(store, source, destination, cap, false);
        transferred = 1;
    }
    // Only the words the message has: a whole-buffer copy would cost ~120
    // moves on every IPC, however short.
    for index in 0..length {
        let word = store.tcb(sender).words[index];
        store.tcb_mut(receiver).words[index] = word;
    }
    let to = store.tcb_mut(receiver);
    to.info = MessageInfo { label: info.label, length: info.length, caps: transferred };
    to.badge = badge;
}

/// Sends the sender's message through `endpoint`. With a receiver waiting
/// the message is delivered at once; otherwise a blocking send queues the
/// sender and a non-blocking one (NBSend) drops the message.
pub fn send(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    sender: ThreadId,
    endpoint: EndpointCap,
    blocking: bool,
) {
    deliver_or_queue(store, scheduler, sender, endpoint, blocking, false);
}

/// Calls through `endpoint`: like a blocking send, after which the caller
/// waits for the reply through the reply object the receiver named.
pub fn call(store: &mut impl ObjectStore, scheduler: &mut Scheduler, caller: ThreadId, endpoint: EndpointCap) {
    deliver_or_queue(store, scheduler, caller, endpoint, true, true);
}

fn deliver_or_queue(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    sender: ThreadId,
    endpoint: EndpointCap,
    blocking: bool,
    is_call: bool,
) {
    // Mutant: every endpoint capability may transfer a capability, GRANT or not.
    let can_grant = endpoint.rights.contains(Rights::GRANT) || cfg!(bulkhead_mutant = "grant_ignored");
    let state = *store.endpoint(endpoint.object);
    if state.state == EndpointState::Receiving {
        let mut queue = state.queue;
        if let Some(receiver) = queue.pop_front(store) {
            let ep = store.endpoint_mut(endpoint.object);
            ep.queue = queue;
            if queue.is_empty() {
                ep.state = EndpointState::Idle;
            }
            let reply = match store.tcb(receiver).state {
                ThreadState::BlockedOnReceive { reply, .. } => reply,
                _ => None,
            };
            if let Some(reply) = reply {
                store.reply_mut(reply).receiver = None;
            }
            transfer(store, sender, receiver, endpoint.badge, can_grant);
            store.tcb_mut(receiver).state = ThreadState::Runnable;
            // A passive receiver serves the Call on the caller's context:
            // lent before it is queued, so that it queues by that budget.
            if is_call
                && let Some(reply) = reply
                && let Some(context) = lendable(store, sender, receiver)
            {
                begin_loan(store, receiver, reply, context);
            }
            scheduler.make_ready(store, receiver);
            if is_call {
                wait_for_reply(store, scheduler, sender, reply);
            }
            return;
        }
    }
    if !blocking {
        return;
    }
    // Off the CPU or out of its ready queue first, while still runnable.
    scheduler.remove(store, sender);
    store.tcb_mut(sender).state =
        ThreadState::BlockedOnSend { endpoint: endpoint.object, badge: endpoint.badge, can_grant, is_call };
    let mut queue = state.queue;
    queue.push_back(store, sender);
    let ep = store.endpoint_mut(endpoint.object);
    ep.queue = queue;
    ep.state = EndpointState::Sending;
}

/// After a Call was delivered: the caller sleeps on the receiver's reply
/// object. A receiver that named none cannot reply, so the caller goes on
/// at once with an empty reply (label 0, no words) instead of sleeping
/// forever.
fn wait_for_reply(store: &mut impl ObjectStore, scheduler: &mut Scheduler, caller: ThreadId, reply: Option<PhysAddr>) {
    match reply {
        Some(reply) => {
            scheduler.remove(store, caller);
            store.reply_mut(reply).caller = Some(caller);
            store.tcb_mut(caller).state = ThreadState::BlockedOnReply { reply };
        }
        None => {
            let tcb = store.tcb_mut(caller);
            tcb.info = MessageInfo::default();
            tcb.badge = 0;
            tcb.state = ThreadState::Runnable;
        }
    }
}

/// Receives on `endpoint`, naming `reply` as the reply object a Call binds
/// to its caller. The system-call layer checks that `reply` is free
/// ([`Reply::is_free`](super::Reply::is_free)): a server replies before it
/// receives again with the same reply object.
pub fn receive(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    receiver: ThreadId,
    endpoint: PhysAddr,
    reply: Option<PhysAddr>,
    blocking: bool,
) -> ReceiveOutcome {
    let state = *store.endpoint(endpoint);
    if state.state == EndpointState::Sending {
        let mut queue = state.queue;
        if let Some(sender) = queue.pop_front(store) {
            let ep = store.endpoint_mut(endpoint);
            ep.queue = queue;
            if queue.is_empty() {
                ep.state = EndpointState::Idle;
            }
            let ThreadState::BlockedOnSend { badge, can_grant, is_call, .. } = store.tcb(sender).state else {
                // Only senders queue while the endpoint is Sending.
                return ReceiveOutcome::WouldBlock;
            };
            transfer(store, sender, receiver, badge, can_grant);
            if is_call {
                // A passive receiver runs on the caller's context from now
                // on: throttled at once if that has no budget, and made
                // ready by it if it was waiting to run (the reply of a
                // ReplyRecv ended its last loan and throttled it).
                if let Some(reply) = reply
                    && let Some(context) = lendable(store, sender, receiver)
                {
                    lend_to_receiving(store, scheduler, receiver, reply, context);
                }
                wait_for_reply(store, scheduler, sender, reply);
                if reply.is_none() {
                    scheduler.make_ready(store, sender);
                }
            } else {
                store.tcb_mut(sender).state = ThreadState::Runnable;
                scheduler.make_ready(store, sender);
            }
            return ReceiveOutcome::Received;
        }
    }
    if !blocking {
        return ReceiveOutcome::WouldBlock;
    }
    scheduler.remove(store, receiver);
    store.tcb_mut(receiver).state = ThreadState::BlockedOnReceive { endpoint, reply };
    if let Some(reply) = reply {
        store.reply_mut(reply).receiver = Some(receiver);
    }
    let mut queue = state.queue;
    queue.push_back(store, receiver);
    let ep = store.endpoint_mut(endpoint);
    ep.queue = queue;
    ep.state = EndpointState::Receiving;
    ReceiveOutcome::Blocked
}

/// Replies through `reply` with the replier's message, waking the caller.
/// A reply object with no caller waiting (already answered, or never
/// bound) makes this a no-op. `can_grant` is whether the reply capability
/// allows transferring a capability back. A context lent for the Call
/// goes back to the caller first (`super::donation`).
pub fn reply(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    replier: ThreadId,
    reply: PhysAddr,
    can_grant: bool,
) {
    let Some(caller) = store.reply(reply).caller else { return };
    end_loan(store, scheduler, reply);
    store.reply_mut(reply).caller = None;
    if store.tcb(caller).state != (ThreadState::BlockedOnReply { reply }) {
        return;
    }
    transfer(store, replier, caller, 0, can_grant);
    store.tcb_mut(caller).state = ThreadState::Runnable;
    scheduler.make_ready(store, caller);
}

/// Whether the capability in a slot is an endpoint capability with `right`.
#[must_use]
pub fn endpoint_cap_with(cap: &Cap, right: Rights) -> Option<EndpointCap> {
    match *cap {
        Cap::Endpoint { object, badge, rights } if rights.contains(right) => {
            Some(EndpointCap { object, badge, rights })
        }
        _ => None,
    }
}
