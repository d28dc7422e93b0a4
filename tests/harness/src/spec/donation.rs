//! Scheduling-context donation, as `docs/abi.md` ("Scheduling-context
//! donation") states it, in the spec's own terms.
//!
//! - A thread is *passive* when TCB::SetPassive said so. The flag only
//!   matters when a Call is delivered: a loan, once made, outlives it.
//! - When a Call (a fault message is one too) is delivered to a passive
//!   receiver that names a reply object, the receiver *borrows* the
//!   caller's bound scheduling context until that reply object is
//!   answered: the receiver's [`Loan`] names the reply object and the
//!   context, and the context names the receiver as its borrower
//!   (`lent_to`). The caller stays bound to its context; it is blocked
//!   on the reply meanwhile.
//! - Loans never chain: no loan is made when the receiver already holds
//!   one, when the caller holds one (it would lend what is not its own),
//!   or when the caller has no context to lend.
//! - While it holds a loan, a thread runs on the lent context
//!   ([`State::running_context`]): the scheduler charges, throttles,
//!   refills and queues it by that context's budget and period, never by
//!   its own; it keeps its own priority.
//! - A loan ends when its reply object is answered (by whoever replies
//!   through it), when the caller stops waiting for the reply (it is
//!   suspended, or its TCB or its context is deleted, either of which
//!   stops it), when the reply object is deleted, and when the borrower
//!   stops.
//! - Whenever a thread's running context changes (a loan begins or ends),
//!   the scheduler places it by the context it now runs on: a runnable
//!   thread that is not running leaves wherever it waited to run and is
//!   made ready again (the back of its priority's queue, or the release
//!   queue, or no queue while that context was never configured); the
//!   running thread keeps the CPU while that context has budget and is
//!   throttled at once otherwise; a blocked thread is not scheduled
//!   anyway.
//! - SchedControl::Configure of a lent context re-queues its borrower
//!   (`configure` in `threads.rs`).
//!
//! Nothing here is the kernel's code (`kernel/src/ipc/donation.rs`): the
//! borrower of a reply object's Call is found by the loans themselves,
//! not through the caller and its context as the kernel finds it.

use super::State;
use super::threads::Loan;

impl State {
    /// The scheduling context `thread` runs on: the one lent to it while it
    /// holds a loan, otherwise its own (`None`: it is not budget-limited).
    #[must_use]
    pub fn running_context(&self, thread: u64) -> Option<u64> {
        let thread = self.thread(thread);
        thread.loan.map_or(thread.sched_context, |loan| Some(loan.context))
    }

    /// The thread holding the loan made for the Call whose reply goes
    /// through `reply`, if any.
    #[must_use]
    pub fn borrower_through(&self, reply: u64) -> Option<u64> {
        self.threads.iter().find(|(_, thread)| thread.loan.is_some_and(|loan| loan.reply == reply)).map(|(tcb, _)| *tcb)
    }

    /// A Call from `caller` delivered to `receiver` with the reply object
    /// `reply`: a passive receiver borrows the caller's context, unless
    /// either of them holds a loan or the caller has no context.
    pub(super) fn lend_for_call(&mut self, caller: u64, receiver: u64, reply: u64) {
        let (from, to) = (self.thread(caller), self.thread(receiver));
        if !to.passive || to.loan.is_some() || from.loan.is_some() {
            return;
        }
        let Some(context) = from.sched_context else { return };
        self.change_running_context(receiver, |state| {
            state.thread_mut(receiver).loan = Some(Loan { reply, context });
            state.sched_contexts.get_mut(&context).expect("the caller's context").lent_to = Some(receiver);
        });
    }

    /// Ends the loan made for the Call answered through `reply`, if there
    /// is one: its borrower runs on its own context again.
    pub(super) fn end_loan(&mut self, reply: u64) {
        if let Some(server) = self.borrower_through(reply) {
            self.change_running_context(server, |state| state.give_back(server));
        }
    }

    /// Clears `server`'s loan on both sides, whatever the scheduler makes
    /// of it (for a thread that stops).
    pub(super) fn give_back(&mut self, server: u64) {
        if let Some(loan) = self.thread_mut(server).loan.take() {
            self.sched_contexts.get_mut(&loan.context).expect("the lent context").lent_to = None;
        }
    }

    /// Runs `change`, which changes the context `thread` runs on, and
    /// places the thread by its new context (see the module
    /// documentation).
    fn change_running_context(&mut self, thread: u64, change: impl FnOnce(&mut State)) {
        let runnable = self.thread(thread).is_runnable();
        let running = runnable && self.sched.current == Some(thread);
        if runnable && !running {
            self.unschedule(thread);
        }
        change(self);
        if (runnable && !running) || (running && !self.has_budget(thread)) {
            self.unschedule(thread);
            self.make_ready(thread);
        }
    }
}
