//! The IPC fast path: Call and ReplyRecv with a short message between two
//! threads, seL4-style, without the general system-call layer's lookups,
//! queue round trips and scheduler pass.
//!
//! Each function handles exactly the common case and otherwise returns
//! `None` having changed nothing, so that the caller falls back to
//! [`syscall::handle`](crate::syscall::handle) and
//! [`Scheduler::schedule`](crate::sched::Scheduler::schedule). When it
//! handles a call, the kernel's state afterwards is exactly what `handle`
//! followed by `schedule` would have produced (a property test runs both
//! on random states and compares the whole kernel), and it returns the
//! thread that now runs (the scheduler's current thread).
//!
//! The architecture code copies the registers into the caller's TCB first,
//! as for the general path (message words, extra capability addresses, an
//! empty info word), and writes the next thread's results out of its TCB.
//!
//! **Call** is taken when: the caller is the running thread; the message
//! has at most [`REGISTER_MESSAGE_WORDS`] words and no capability; the
//! capability resolves in one guarded CNode level covering all 64 bits to
//! an endpoint capability with WRITE; a receiver waits on the endpoint with
//! a reply object that is free; and the receiver is what the scheduler
//! would pick once the caller blocks (it has budget and every ready thread
//! has a lower priority). The caller's own priority does not matter: it
//! blocks.
//!
//! **ReplyRecv** is taken when: the replier is the running thread; the
//! message has at most [`REGISTER_MESSAGE_WORDS`] words; the reply
//! capability (a non-zero address) and the endpoint capability (READ)
//! resolve in one level as above; a caller waits on the reply object and
//! no receiver holds it; no sender waits on the endpoint (the replier just
//! blocks receiving); and the caller is what the scheduler would pick once
//! the replier blocks.

use crate::cap::{Cap, Rights, SlotRef, SlotStore};
use crate::ipc::{EndpointState, MessageInfo, REGISTER_MESSAGE_WORDS, Reply, ThreadId, ThreadState};
use crate::memory::PhysAddr;
use crate::sched::Scheduler;
use crate::store::ObjectStore;
use crate::syscall::{Kernel, SyscallArgs, cspace_slot, number};

/// The capability `cptr` names, if the thread's CSpace root is a single
/// guarded CNode whose guard and radix cover all 64 address bits (the
/// common layout). Resolves to the same slot as the general lookup
/// (`cspace::resolve` over 64 bits) whenever it returns a capability.
#[inline(always)]
fn lookup_single_level(store: &impl SlotStore, thread: ThreadId, cptr: u64) -> Option<Cap> {
    let Cap::CNode { base, radix_bits, guard, guard_bits } = store.slot(cspace_slot(thread)?).cap else {
        return None;
    };
    if radix_bits == 0 || radix_bits >= 64 || u16::from(radix_bits) + u16::from(guard_bits) != 64 {
        return None;
    }
    if cptr >> radix_bits != guard {
        return None;
    }
    let slot = SlotRef::in_cnode(base, cptr & ((1 << radix_bits) - 1))?;
    Some(store.slot(slot).cap)
}

/// Whether `thread` is the running, runnable thread.
fn is_running(store: &impl ObjectStore, scheduler: &Scheduler, thread: ThreadId) -> bool {
    scheduler.current() == Some(thread) && matches!(store.tcb(thread).state, ThreadState::Runnable)
}

/// Copies the first `length` (at most [`REGISTER_MESSAGE_WORDS`]) message
/// words from `from` to `to`. Word by word over the fixed four, so that
/// no variable-length `memcpy` call is made for one or two words.
#[inline(always)]
fn copy_words(store: &mut impl ObjectStore, from: ThreadId, to: ThreadId, length: usize) {
    let source = &store.tcb(from).words;
    let words: [u64; REGISTER_MESSAGE_WORDS] = core::array::from_fn(|index| source[index]);
    let destination = &mut store.tcb_mut(to).words;
    for (index, word) in words.into_iter().enumerate() {
        if index < length {
            destination[index] = word;
        }
    }
}

/// Call on an endpoint with a receiver waiting: delivers the message,
/// binds the receiver's reply object to the caller, blocks the caller and
/// makes the receiver the running thread, which it returns. `None`: not
/// the common case (see the module documentation); nothing was changed.
pub fn fastpath_call<S: ObjectStore>(kernel: &mut Kernel<S>, caller: ThreadId, args: SyscallArgs) -> Option<ThreadId> {
    let Kernel { store, scheduler, .. } = kernel;
    let info = args.info;
    let length = usize::from(info.length);
    if args.number != number::CALL || length > REGISTER_MESSAGE_WORDS || info.caps != 0 {
        return None;
    }
    if !is_running(store, scheduler, caller) {
        return None;
    }
    let Cap::Endpoint { object: endpoint, badge, rights } = lookup_single_level(store, caller, args.cptr)? else {
        return None;
    };
    if !rights.contains(Rights::WRITE) {
        return None;
    }
    let state = *store.endpoint(endpoint);
    if state.state != EndpointState::Receiving {
        return None;
    }
    let receiver = state.queue.head?;
    let ThreadState::BlockedOnReceive { reply: Some(reply), .. } = store.tcb(receiver).state else {
        return None;
    };
    if store.reply(reply).caller.is_some() {
        return None;
    }
    // A passive receiver runs on the caller's context: its budget decides.
    let loan = crate::ipc::lendable(store, caller, receiver);
    let has_budget = match loan {
        Some(context) => store.sched_context(context).remaining > 0,
        None => Scheduler::has_budget(store, receiver),
    };
    if !scheduler.runs_next_with_budget(store, receiver, has_budget) {
        return None;
    }

    // The common case: from here on nothing fails.
    let mut queue = state.queue;
    queue.pop_front(store);
    let ep = store.endpoint_mut(endpoint);
    ep.queue = queue;
    if queue.is_empty() {
        ep.state = EndpointState::Idle;
    }
    copy_words(store, caller, receiver, length);
    let to = store.tcb_mut(receiver);
    to.info = MessageInfo { label: info.label, length: info.length, caps: 0 };
    to.badge = badge;
    to.state = ThreadState::Runnable;
    *store.reply_mut(reply) = Reply { caller: Some(caller), receiver: None };
    if let Some(context) = loan {
        crate::ipc::begin_loan(store, receiver, reply, context);
    }
    let from = store.tcb_mut(caller);
    from.info = info;
    from.state = ThreadState::BlockedOnReply { reply };
    scheduler.set_current(receiver);
    Some(receiver)
}

/// ReplyRecv with a caller waiting on the reply object and no sender on
/// the endpoint: delivers the reply, makes the caller the running thread
/// (returned), and blocks the replier receiving on the endpoint with the
/// same reply object. `None`: not the common case; nothing was changed.
pub fn fastpath_reply_recv<S: ObjectStore>(
    kernel: &mut Kernel<S>,
    replier: ThreadId,
    args: SyscallArgs,
) -> Option<ThreadId> {
    let Kernel { store, scheduler, .. } = kernel;
    let info = args.info;
    let length = usize::from(info.length);
    // A zero reply address receives with no reply object: the general path.
    if args.number != number::REPLY_RECV || length > REGISTER_MESSAGE_WORDS || args.reply_cptr == 0 {
        return None;
    }
    if !is_running(store, scheduler, replier) {
        return None;
    }
    let Cap::Reply { object: reply } = lookup_single_level(store, replier, args.reply_cptr)? else {
        return None;
    };
    // A context lent for the Call is the replier's own loan, or the
    // general path sorts it out.
    let Reply { caller: Some(caller), receiver: None } = *store.reply(reply) else {
        return None;
    };
    // A pattern rather than `!=`: the derived comparison is an out-of-line
    // call on this path.
    if !matches!(store.tcb(caller).state, ThreadState::BlockedOnReply { reply: waiting } if waiting == reply) {
        return None;
    }
    // A context lent for the Call is the replier's own loan, or the
    // general path sorts it out.
    let server = crate::ipc::server_of(store, reply);
    if server.is_some_and(|server| server != replier) {
        return None;
    }
    let Cap::Endpoint { object: endpoint, rights, .. } = lookup_single_level(store, replier, args.cptr)? else {
        return None;
    };
    if !rights.contains(Rights::READ) || store.endpoint(endpoint).state == EndpointState::Sending {
        return None;
    }
    if !scheduler.runs_next_when_woken(store, caller) {
        return None;
    }

    // The common case: from here on nothing fails. A reply never carries a
    // capability (no reply-grant path yet). The replier blocks, so the end
    // of its loan needs no re-queueing.
    if server.is_some() {
        crate::ipc::give_back(store, replier);
    }
    copy_words(store, replier, caller, length);
    let to = store.tcb_mut(caller);
    to.info = MessageInfo { label: info.label, length: info.length, caps: 0 };
    to.badge = 0;
    to.state = ThreadState::Runnable;
    *store.reply_mut(reply) = Reply { caller: None, receiver: Some(replier) };
    let from = store.tcb_mut(replier);
    from.info = MessageInfo { caps: 0, ..info };
    from.state = ThreadState::BlockedOnReceive { endpoint, reply: Some(reply) };
    block_receiving(store, replier, endpoint);
    scheduler.set_current(caller);
    Some(caller)
}

/// Appends `receiver` to the endpoint's queue of receivers.
#[inline(always)]
fn block_receiving(store: &mut impl ObjectStore, receiver: ThreadId, endpoint: PhysAddr) {
    let mut queue = store.endpoint(endpoint).queue;
    queue.push_back(store, receiver);
    let ep = store.endpoint_mut(endpoint);
    ep.queue = queue;
    ep.state = EndpointState::Receiving;
}

#[cfg(test)]
mod tests;
