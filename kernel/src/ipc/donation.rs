//! Scheduling-context donation over Call (seL4 MCS's passive servers, in
//! the form NOVA gives portal handlers): a passive server works for its
//! caller on the caller's time.
//!
//! A thread marked passive (`TCB::SetPassive`) still has its own
//! scheduling context, which pays for what it does on its own (starting
//! up, work no Call asked for). When a Call is delivered to it with a
//! reply object, it borrows the caller's scheduling context: a [`Loan`]
//! in its TCB names the reply object and the context, and the context
//! names it as the thread it is `lent_to` ([`server_of`] finds it from
//! the reply object's caller). While the loan lasts, the scheduler
//! charges the server's time to the caller's budget, throttles it when
//! that budget is gone, and refills it with the caller's period
//! ([`running_context`]); the server keeps its own priority. The caller's
//! context stays bound to the caller, which is blocked waiting for the
//! reply, so nothing else runs on it.
//!
//! A loan is made only when it cannot chain: the server holds no loan
//! already, and the caller runs on its own bound context (it holds no
//! loan itself). It ends when the reply object is answered, when the
//! caller stops waiting (stopped, or its context deleted, which stops
//! it), when the reply object is deleted, or when the server stops. Then
//! the server runs on its own context again.
//!
//! Whenever the context a runnable server runs on changes, the scheduler
//! places it by the new one (`place_after_change`): a server waiting to
//! run (queued, or in no queue while its context was never configured)
//! is made ready again by the new budget, and a running one keeps the CPU
//! while the new context has budget and is throttled at once otherwise.
//! A server that takes a queued Call in a receive of its own is running,
//! or (after a ReplyRecv's reply ended its last loan and throttled it)
//! waiting to run; one to which a Call is delivered while it blocks is
//! made ready by its caller afterwards.
//!
//! Why: a VMM calls its VMX for each access to an emulated device and
//! waits, so the pair's work is serial. With a budget each, every Call
//! waits until the VMX's budget allows it; on the caller's context the
//! pair is bounded by the VMM's budget alone, which is what a guest and
//! its devices are given (`docs/PERFORMANCE.md`).

use super::{Loan, ThreadId, ThreadState};
use crate::memory::PhysAddr;
use crate::sched::Scheduler;
use crate::store::ObjectStore;

/// The scheduling context `thread` runs on: the one lent to it while it
/// serves a Call, otherwise its own.
#[inline(always)]
pub fn running_context(store: &impl ObjectStore, thread: ThreadId) -> Option<PhysAddr> {
    let tcb = store.tcb(thread);
    match tcb.loan {
        Some(loan) => Some(loan.context),
        None => tcb.sched_context,
    }
}

/// The context a Call from `caller` delivered to `receiver` lends it, if
/// the receiver is passive and neither thread holds a loan.
#[inline(always)]
pub(crate) fn lendable(store: &impl ObjectStore, caller: ThreadId, receiver: ThreadId) -> Option<PhysAddr> {
    let (from, to) = (store.tcb(caller), store.tcb(receiver));
    // Mutant: a Call never lends the caller's context.
    if !to.passive || to.loan.is_some() || from.loan.is_some() || cfg!(bulkhead_mutant = "donation_never_lends") {
        return None;
    }
    from.sched_context
}

/// Lends `context` to `server` for the Call being served through `reply`.
/// The caller sets the server's queue position afterwards (the server is
/// either running or about to be made ready).
#[inline(always)]
pub(crate) fn begin_loan(store: &mut impl ObjectStore, server: ThreadId, reply: PhysAddr, context: PhysAddr) {
    store.sched_context_mut(context).lent_to = Some(server);
    store.tcb_mut(server).loan = Some(Loan { reply, context });
}

/// The passive server running on the context of the caller waiting on
/// `reply`, if any.
#[must_use]
#[inline(always)]
pub fn server_of(store: &impl ObjectStore, reply: PhysAddr) -> Option<ThreadId> {
    let caller = store.reply(reply).caller?;
    let context = store.tcb(caller).sched_context?;
    let server = store.sched_context(context).lent_to?;
    (store.tcb(server).loan == Some(Loan { reply, context })).then_some(server)
}

/// Lends `context` to `server`, a runnable receiver that has just taken
/// the queued Call served through `reply`, and places it by that context
/// ([`place_after_change`]): one that runs on with no budget in the lent
/// context is throttled at once, and one that waited to run is made
/// ready by it.
pub(crate) fn lend_to_receiving(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    server: ThreadId,
    reply: PhysAddr,
    context: PhysAddr,
) {
    place_after_change(store, scheduler, server, |store| begin_loan(store, server, reply, context));
}

/// Ends the loan made for the Call through `reply`, if there is one: its
/// server runs on its own context again (`place_after_change`: one
/// waiting to run is made ready by its own budget, a running one with no
/// budget of its own left is throttled).
pub fn end_loan(store: &mut impl ObjectStore, scheduler: &mut Scheduler, reply: PhysAddr) {
    let Some(server) = server_of(store, reply) else { return };
    place_after_change(store, scheduler, server, |store| give_back(store, server));
}

/// Runs `change`, which changes the context `thread` runs on, and places
/// the thread by the context it runs on afterwards. A runnable thread
/// that is not running leaves its queue first, whatever the queue (the
/// scheduler finds it by the budget it was queued with), and is made
/// ready by the new context: the back of its priority's queue, the
/// release queue, or no queue while that context was never configured.
/// The running thread keeps the CPU unless the new context has no
/// budget, which throttles it at once. A blocked thread is in no
/// scheduler queue either way.
fn place_after_change<S: ObjectStore>(
    store: &mut S,
    scheduler: &mut Scheduler,
    thread: ThreadId,
    change: impl FnOnce(&mut S),
) {
    let runnable = store.tcb(thread).state == ThreadState::Runnable;
    let running = runnable && scheduler.current() == Some(thread);
    let waiting = runnable && !running;
    if waiting {
        scheduler.remove(store, thread);
    }
    change(store);
    if waiting {
        scheduler.make_ready(store, thread);
    } else if running && !Scheduler::has_budget(store, thread) {
        scheduler.remove(store, thread);
        scheduler.make_ready(store, thread);
    }
}

/// Clears `server`'s loan on both sides, leaving its scheduler queues to
/// the caller.
#[inline(always)]
pub(crate) fn give_back(store: &mut impl ObjectStore, server: ThreadId) {
    if let Some(loan) = store.tcb_mut(server).loan.take() {
        store.sched_context_mut(loan.context).lent_to = None;
    }
}

#[cfg(test)]
mod tests;
