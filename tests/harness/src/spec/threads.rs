//! The spec's threads, IPC and scheduler: what each system call does to
//! thread states, endpoint and notification queues, reply objects, the
//! ready and release queues and scheduling contexts, stated directly over
//! plain vectors and maps (a queue is a `Vec` in arrival order).
//!
//! A thread's message is its whole word buffer, as the ABI keeps it
//! between calls: a system call writes its argument words at the front,
//! a delivered message overwrites the receiver's first `length` words, and
//! the info word says how many of them are the current message.

use std::collections::BTreeMap;

use super::{Cap, Error, Kind, State, WRITE};

/// Words in a thread's message buffer.
pub const MESSAGE_WORDS: usize = 120;
/// The READ right.
pub const READ: u8 = 0b1;
/// The GRANT right.
pub const GRANT: u8 = 0b100;
/// Interrupt lines, the cascade line and the IRQ labels (the kernel's).
pub use kernel_core::irq::{CASCADE_LINE, IRQ_LINES, label as irq_label};
/// The ABI's numbers are the kernel's definitions, as in the rest of the
/// spec (`kernel/src/cap/abi_doc_test.rs` keeps them in step with
/// `docs/abi.md`): the system-call numbers, the TCB and SchedControl
/// labels, the smallest budget, the user address limit and the RFLAGS a
/// thread may set.
pub use kernel_core::syscall::label as tcb_label;
pub use kernel_core::syscall::{MIN_BUDGET, RFLAGS_FIXED, USER_RFLAGS, number};
pub use kernel_core::vspace::USER_TOP;

/// An interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqLine {
    /// A handler capability for it exists.
    pub issued: bool,
    /// The notification it signals and the badge (from the handler's
    /// SetNotification).
    pub notification: Option<(u64, u64)>,
    /// Masked at the interrupt controller.
    pub masked: bool,
    /// Delivered and not acknowledged yet.
    pub pending: bool,
}

impl IrqLine {
    /// A line nobody holds: masked.
    pub const FREE: IrqLine = IrqLine { issued: false, notification: None, masked: true, pending: false };
}

/// What a thread is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadState {
    /// Never started, or stopped.
    #[default]
    Inactive,
    /// Running or ready to run.
    Runnable,
    /// In `endpoint`'s queue with a message to send.
    BlockedOnSend {
        /// The endpoint.
        endpoint: u64,
        /// The badge of the capability it sends with.
        badge: u64,
        /// That capability has GRANT.
        can_grant: bool,
        /// A Call: it then waits for the reply.
        is_call: bool,
    },
    /// In `endpoint`'s queue waiting for a message.
    BlockedOnReceive {
        /// The endpoint.
        endpoint: u64,
        /// The reply object a Call delivered to it is bound to.
        reply: Option<u64>,
    },
    /// Called, waiting for the reply through `reply`.
    BlockedOnReply {
        /// The reply object.
        reply: u64,
    },
    /// In `notification`'s queue waiting for a signal (Wait, or VMEnter's
    /// `WAIT` on the bound notification, which may also sleep until a
    /// deadline).
    BlockedOnNotification {
        /// The notification.
        notification: u64,
    },
    /// VMEnter's `WAIT` without a bound notification: asleep until its
    /// deadline, in the sleep queue only.
    Sleeping,
}

/// What a thread's interrupted system call becomes when it runs again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resumption {
    /// It returns its results.
    #[default]
    Results,
    /// It was stopped while blocked: it makes the same call again.
    Restart,
    /// TCB::WriteRegisters gave it new registers to start from.
    Fresh,
}

/// The info word of a thread's current message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// The label (an error code for a failed invocation).
    pub label: u64,
    /// How many of the buffer's words are the message.
    pub length: u8,
    /// How many capabilities came with it.
    pub caps: u8,
}

/// A thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// What it does.
    pub state: ThreadState,
    /// Its priority.
    pub priority: u8,
    /// The highest priority it may give a thread as an authority.
    pub max_priority: u8,
    /// The scheduling context bound to it: the one it runs on unless it
    /// holds a [`Loan`].
    pub sched_context: Option<u64>,
    /// A passive server (TCB::SetPassive): a Call delivered to it with a
    /// reply object lends it the caller's scheduling context
    /// ([`super::donation`]).
    pub passive: bool,
    /// The scheduling context a caller lent it for the Call it serves,
    /// until that Call's reply: the one it runs on meanwhile.
    pub loan: Option<Loan>,
    /// Its current message's info word.
    pub info: Info,
    /// Its message buffer ([`MESSAGE_WORDS`] words).
    pub words: Vec<u64>,
    /// The badge of what it last received.
    pub badge: u64,
    /// The extra capability addresses of its last system call.
    pub extra: [u64; 3],
    /// Where a capability sent to it lands: (address, depth).
    pub receive: Option<(u64, u8)>,
    /// How its interrupted call resumes.
    pub resumption: Resumption,
    /// rip, rsp, rflags, rdi, rsi, rdx as TCB::WriteRegisters set them.
    pub registers: [u64; 6],
    /// The VCpu bound to it.
    pub vcpu: Option<u64>,
    /// Its bound notification.
    pub bound_notification: Option<u64>,
    /// When it wakes, while it sleeps (VMEnter's `WAIT` with a deadline).
    pub wake_at: Option<u64>,
}

impl Thread {
    /// A freshly retyped thread: inactive, priority 0, no message.
    #[must_use]
    pub fn fresh() -> Thread {
        Thread {
            state: ThreadState::Inactive,
            priority: 0,
            max_priority: 0,
            sched_context: None,
            passive: false,
            loan: None,
            info: Info::default(),
            words: vec![0; MESSAGE_WORDS],
            badge: 0,
            extra: [0; 3],
            receive: None,
            resumption: Resumption::Results,
            registers: [0; 6],
            vcpu: None,
            bound_notification: None,
            wake_at: None,
        }
    }

    /// Whether the thread can run (or runs).
    #[must_use]
    pub fn is_runnable(&self) -> bool {
        self.state == ThreadState::Runnable
    }
}

/// A notification's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// The OR of the badges signalled since the last wait, if any signal
    /// arrived (a signal with badge 0 is pending too).
    pub pending: Option<u64>,
    /// Threads waiting, in arrival order.
    pub waiters: Vec<u64>,
    /// The thread it is bound to.
    pub bound_tcb: Option<u64>,
}

/// A reply object's bindings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The caller waiting for a reply through it.
    pub caller: Option<u64>,
    /// The receiver that named it in a receive still waiting.
    pub receiver: Option<u64>,
}

/// A scheduling context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedContext {
    /// Ticks per period (0: never configured).
    pub budget: u64,
    /// The period in ticks.
    pub period: u64,
    /// Ticks left in this period.
    pub remaining: u64,
    /// When the budget is next refilled.
    pub next_refill: u64,
    /// The thread bound to it: the one that runs on it, unless it is lent.
    pub bound: Option<u64>,
    /// The passive server it is lent to while its bound thread waits for
    /// that server's reply ([`super::donation`]).
    pub lent_to: Option<u64>,
}

/// A caller's scheduling context lent to the passive server that serves
/// its Call ([`super::donation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loan {
    /// The reply object whose answer ends the loan.
    pub reply: u64,
    /// The caller's scheduling context (still bound to the caller).
    pub context: u64,
}

/// The scheduler's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scheduler {
    /// The running thread.
    pub current: Option<u64>,
    /// Ready threads by priority, each queue in turn order (empty queues
    /// are not listed).
    pub ready: BTreeMap<u8, Vec<u64>>,
    /// Runnable threads out of budget, by refill time (earliest first;
    /// equal times in arrival order).
    pub release: Vec<u64>,
    /// Threads in VMEnter's `WAIT` with a deadline, by wake-up time
    /// (earliest first; equal times in the order they went to sleep).
    pub sleeping: Vec<u64>,
    /// The time.
    pub now: u64,
    /// Until when the running thread has been charged.
    pub charged_until: u64,
}

/// One system call, as the thread's registers and IPC buffer carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// The system-call number.
    pub number: u64,
    /// The invoked capability's address.
    pub cptr: u64,
    /// The message's label.
    pub label: u64,
    /// The info word's length field (0..=127; above 120 is refused).
    pub length: u8,
    /// The message words (the first `length` are written).
    pub words: Vec<u64>,
    /// The extra capability addresses (the info word's count is their
    /// number).
    pub extra: Vec<u64>,
    /// The reply object's address (Recv, NBRecv, ReplyRecv; 0: none).
    pub reply: u64,
    /// The receive slot (address, depth word) of a receive.
    pub receive: (u64, u64),
}

impl State {
    /// The thread whose TCB is at `tcb`.
    pub(super) fn thread(&self, tcb: u64) -> &Thread {
        &self.threads[&tcb]
    }

    pub(super) fn thread_mut(&mut self, tcb: u64) -> &mut Thread {
        self.threads.get_mut(&tcb).expect("a live thread")
    }

    /// Whether `thread` has budget left on the scheduling context it runs
    /// on, its own or a lent one ([`State::running_context`]; threads
    /// without either always have).
    #[must_use]
    pub fn has_budget(&self, thread: u64) -> bool {
        self.running_context(thread).is_none_or(|context| self.sched_contexts[&context].remaining > 0)
    }

    /// Whether `thread` is in any queue: ready, release, endpoint or
    /// notification.
    #[must_use]
    pub fn is_queued(&self, thread: u64) -> bool {
        self.sched.ready.values().any(|queue| queue.contains(&thread))
            || self.sched.release.contains(&thread)
            || self.endpoints.values().any(|queue| queue.contains(&thread))
            || self.notifications.values().any(|state| state.waiters.contains(&thread))
    }

    /// Whether `thread` runs on a scheduling context (its own or a lent
    /// one) never configured.
    #[must_use]
    pub fn awaits_configuration(&self, thread: u64) -> bool {
        self.running_context(thread).is_some_and(|context| self.sched_contexts[&context].period == 0)
    }

    /// The time at which the budget `thread` runs on is refilled next.
    fn refill_time(&self, thread: u64) -> u64 {
        self.running_context(thread).map_or(0, |context| self.sched_contexts[&context].next_refill)
    }

    /// A runnable thread joins the back of its priority's ready queue, or
    /// the release queue without budget (nothing for the running thread or
    /// a queued one).
    /// A thread on a scheduling context that was never configured waits
    /// for its configuration in no queue: it has no budget to run on and
    /// no period that would refill one.
    pub fn make_ready(&mut self, thread: u64) {
        if self.sched.current == Some(thread) || self.is_queued(thread) || self.awaits_configuration(thread) {
            return;
        }
        if self.has_budget(thread) {
            let priority = self.thread(thread).priority;
            self.sched.ready.entry(priority).or_default().push(thread);
        } else {
            let due = self.refill_time(thread);
            let at = self.sched.release.iter().position(|member| self.refill_time(*member) > due);
            let at = at.unwrap_or(self.sched.release.len());
            self.sched.release.insert(at, thread);
        }
    }

    /// Takes `thread` off the CPU or out of the ready or release queue it is
    /// in (IPC queues are left alone).
    pub fn unschedule(&mut self, thread: u64) {
        if self.sched.current == Some(thread) {
            self.sched.current = None;
            return;
        }
        self.sched.release.retain(|member| *member != thread);
        for queue in self.sched.ready.values_mut() {
            queue.retain(|member| *member != thread);
        }
        self.sched.ready.retain(|_, queue| !queue.is_empty());
    }

    /// Picks who runs: the running thread keeps the CPU while it is
    /// runnable and no ready thread has a strictly higher priority;
    /// otherwise it goes back to the front of its queue (it did not finish
    /// its turn) and the first thread of the highest ready priority runs.
    pub fn schedule(&mut self) {
        let highest = self.sched.ready.keys().next_back().copied();
        if let Some(current) = self.sched.current {
            let (runnable, priority) = (self.thread(current).is_runnable(), self.thread(current).priority);
            if runnable && highest.is_none_or(|highest| highest <= priority) {
                return;
            }
            self.sched.current = None;
            if runnable {
                self.sched.ready.entry(priority).or_default().insert(0, current);
            }
        }
        let Some((&priority, queue)) = self.sched.ready.iter_mut().next_back() else { return };
        let next = queue.remove(0);
        if queue.is_empty() {
            self.sched.ready.remove(&priority);
        }
        self.sched.current = Some(next);
    }

    /// Yield: the running thread goes to the back of its queue, then
    /// [`State::schedule`].
    pub fn yield_current(&mut self) {
        if let Some(current) = self.sched.current.take()
            && self.thread(current).is_runnable()
        {
            self.make_ready(current);
        }
        self.schedule();
    }

    /// A timer interrupt `ticks` after the last one: the running thread is
    /// charged for the time since it was last charged (throttled into the
    /// release queue if that ends its budget), the budgets whose period
    /// came round are refilled and their threads made ready, and then the
    /// scheduler picks (after yielding, if a round-robin slice ended).
    pub fn tick(&mut self, ticks: u64, slice_ended: bool) {
        let now = self.sched.now.saturating_add(ticks);
        self.sched.now = now;
        self.account(now);
        self.release_due(now);
        if slice_ended { self.yield_current() } else { self.schedule() }
    }

    /// Charges the running thread up to `now`, on the context it runs on
    /// (a passive server serving a Call: its caller's): all the ticks since
    /// it was last charged, or, when its budget was refilled now, only those
    /// since the refill's period began.
    fn account(&mut self, now: u64) {
        let since = self.sched.charged_until;
        self.sched.charged_until = now;
        let Some(current) = self.sched.current else { return };
        let Some(context) = self.running_context(current) else { return };
        let state = self.sched_contexts.get_mut(&context).expect("a live scheduling context");
        let charged_from = if refill_if_due(state, now) { since.max(state.next_refill - state.period) } else { since };
        state.remaining = state.remaining.saturating_sub(now.saturating_sub(charged_from));
        if state.remaining == 0 {
            self.sched.current = None;
            self.make_ready(current);
        }
    }

    /// Refills every budget in the release queue whose refill time has
    /// come (the one each thread runs on), in queue order, and makes its
    /// thread ready.
    fn release_due(&mut self, now: u64) {
        self.wake_sleepers(now);
        while let Some(&thread) = self.sched.release.first() {
            let Some(context) = self.running_context(thread) else { break };
            if self.sched_contexts[&context].next_refill > now {
                break;
            }
            self.sched.release.remove(0);
            let _ = refill_if_due(self.sched_contexts.get_mut(&context).expect("the context"), now);
            self.make_ready(thread);
        }
    }

    /// Puts `thread` to sleep until `wake_at`, after every sleeper that
    /// wakes by then.
    pub(super) fn sleep_until(&mut self, thread: u64, wake_at: u64) {
        self.cancel_sleep(thread);
        let at = self.sched.sleeping.iter().position(|member| self.thread(*member).wake_at > Some(wake_at));
        let at = at.unwrap_or(self.sched.sleeping.len());
        self.sched.sleeping.insert(at, thread);
        self.thread_mut(thread).wake_at = Some(wake_at);
    }

    /// Takes `thread` out of the sleep queue, if it sleeps.
    fn cancel_sleep(&mut self, thread: u64) {
        self.sched.sleeping.retain(|member| *member != thread);
        self.thread_mut(thread).wake_at = None;
    }

    /// Wakes the sleepers whose time has come, earliest first: each leaves
    /// the notification it waited on, and its VMEnter returns the
    /// deadline's exit its `WAIT` prepared (label 0x20000, 31 words,
    /// badge 0).
    fn wake_sleepers(&mut self, now: u64) {
        while let Some(&thread) = self.sched.sleeping.first() {
            if self.thread(thread).wake_at.is_some_and(|wake_at| wake_at > now) {
                break;
            }
            self.cancel_sleep(thread);
            if let ThreadState::BlockedOnNotification { notification } = self.thread(thread).state {
                let waiters = &mut self.notifications.get_mut(&notification).expect("the notification").waiters;
                waiters.retain(|member| *member != thread);
            }
            let woken = self.thread_mut(thread);
            woken.info = Info { label: super::vcpu::enter::LABEL_EXIT, length: 31, caps: 0 };
            woken.badge = 0;
            woken.state = ThreadState::Runnable;
            self.make_ready(thread);
        }
    }

    /// Takes `thread` out of whatever it waits in (the sleep queue too) and
    /// off the scheduler, and makes it inactive; a blocked call restarts
    /// when it resumes. A caller that stops waiting for its reply takes
    /// back the context it lent; a server that stops gives back the one
    /// lent to it.
    pub fn stop_thread(&mut self, thread: u64) {
        self.cancel_sleep(thread);
        let state = self.thread(thread).state;
        if !matches!(state, ThreadState::Runnable | ThreadState::Inactive) {
            self.thread_mut(thread).resumption = Resumption::Restart;
        }
        match state {
            ThreadState::BlockedOnSend { endpoint, .. } | ThreadState::BlockedOnReceive { endpoint, .. } => {
                if let ThreadState::BlockedOnReceive { reply: Some(reply), .. } = state {
                    self.replies.get_mut(&reply).expect("the reply object").receiver = None;
                }
                self.endpoints.get_mut(&endpoint).expect("the endpoint").retain(|member| *member != thread);
            }
            ThreadState::BlockedOnNotification { notification } => {
                let waiters = &mut self.notifications.get_mut(&notification).expect("the notification").waiters;
                waiters.retain(|member| *member != thread);
            }
            ThreadState::BlockedOnReply { reply } => {
                self.end_loan(reply);
                self.replies.get_mut(&reply).expect("the reply object").caller = None;
            }
            ThreadState::Runnable => self.unschedule(thread),
            ThreadState::Sleeping | ThreadState::Inactive => {}
        }
        // Stopped, it is in no scheduler queue whatever context it had.
        self.give_back(thread);
        self.thread_mut(thread).state = ThreadState::Inactive;
    }

    /// Ends what `thread` waits in with `error` as its call's result.
    fn wake_with_error(&mut self, thread: u64, error: Error) {
        self.stop_thread(thread);
        let woken = self.thread_mut(thread);
        woken.resumption = Resumption::Results;
        woken.info = Info { label: error.code(), length: 0, caps: 0 };
        woken.badge = 0;
        woken.state = ThreadState::Runnable;
        self.make_ready(thread);
    }

    /// What the kernel undoes when the last capability to `object` goes:
    /// waiters on an endpoint or notification, and the caller and receiver
    /// of a reply object, wake with `InvalidCapability` (a context lent for
    /// the reply object's Call is given back first); a thread stops and
    /// leaves its scheduling context; a scheduling context stops its thread
    /// (which takes back a loan of it).
    pub(super) fn finalise(&mut self, cap: Cap) {
        let base = cap.object().base;
        self.unbind_on_delete(cap);
        match cap {
            Cap::Endpoint { .. } => {
                while let Some(&thread) = self.endpoints.get(&base).and_then(|queue| queue.first()) {
                    self.wake_with_error(thread, Error::InvalidCapability);
                }
            }
            Cap::Notification { .. } => {
                while let Some(&thread) = self.notifications.get(&base).and_then(|state| state.waiters.first()) {
                    self.wake_with_error(thread, Error::InvalidCapability);
                }
            }
            Cap::Reply { .. } => {
                self.end_loan(base);
                let reply = self.replies[&base];
                for thread in [reply.caller, reply.receiver].into_iter().flatten() {
                    self.wake_with_error(thread, Error::InvalidCapability);
                }
            }
            Cap::Tcb { .. } if self.threads.contains_key(&base) => {
                self.stop_thread(base);
                if let Some(context) = self.thread_mut(base).sched_context.take() {
                    self.sched_contexts.get_mut(&context).expect("the context").bound = None;
                }
            }
            Cap::SchedContext { .. } => {
                if let Some(thread) = self.sched_contexts.get_mut(&base).and_then(|state| state.bound.take()) {
                    self.stop_thread(thread);
                    self.thread_mut(thread).sched_context = None;
                }
            }
            // A structure leaves the VSpace it is linked into; a PML4 gives
            // its ASID back; a pool leaves the ASID table.
            Cap::PageTable { .. } | Cap::AsidPool { .. } => self.unmap(&cap),
            _ => {}
        }
        // Interrupt bindings go with the handler and with the notification.
        match cap {
            Cap::IrqHandler { line } => {
                self.irqs[usize::from(line)] = IrqLine::FREE;
            }
            Cap::Notification { .. } => {
                for line in &mut self.irqs {
                    if line.notification.is_some_and(|(bound, _)| bound == base) {
                        *line = IrqLine { notification: None, pending: false, masked: true, ..*line };
                    }
                }
            }
            _ => {}
        }
    }

    /// IrqControl::Get on the capability in slot `control`: `line,
    /// dest_index, dest_depth`; extra capability 0 the destination CNode.
    /// The handler is the control capability's child.
    pub(super) fn irq_get(
        &mut self,
        control: u64,
        label: u64,
        words: &[u64],
        extra: &[Option<u64>],
    ) -> Result<(), Error> {
        if label != irq_label::IRQ_CONTROL_GET {
            return Err(Error::IllegalOperation);
        }
        let word = |index: usize| words.get(index).copied().ok_or(Error::TruncatedMessage);
        let line = word(0)?;
        let (index, depth) = (word(1)?, word(2)?);
        if !(1..=64).contains(&depth) {
            return Err(Error::RangeError);
        }
        let line = u8::try_from(line).ok().filter(|line| *line < IRQ_LINES).ok_or(Error::RangeError)?;
        if line == CASCADE_LINE {
            return Err(Error::IllegalOperation);
        }
        if self.irqs[usize::from(line)].issued {
            return Err(Error::RevokeFirst);
        }
        let root = match extra.first() {
            None => return Err(Error::TruncatedMessage),
            Some(None) => return Err(Error::InvalidCapability),
            Some(Some(slot)) => self.slots[slot].cap,
        };
        if !matches!(root, Cap::CNode { .. }) {
            return Err(Error::InvalidCapability);
        }
        let destination = self.lookup_slot(Some(root), index, depth)?;
        if self.slots.contains_key(&destination) {
            return Err(Error::DeleteFirst);
        }
        self.irqs[usize::from(line)] = IrqLine { issued: true, ..IrqLine::FREE };
        self.adopt(control, destination, None);
        let cap = Cap::IrqHandler { line };
        self.objects.insert(cap.object(), super::Object { untyped: None });
        self.slots.insert(destination, super::Entry { cap, parent: Some(control), original: true });
        Ok(())
    }

    /// IrqHandler::SetNotification (extra capability 0: a notification
    /// with WRITE), Clear and Ack.
    pub(super) fn invoke_irq_handler(&mut self, line: u8, label: u64, extra: &[Option<u64>]) -> Result<(), Error> {
        match label {
            irq_label::IRQ_HANDLER_SET_NOTIFICATION => {
                let cap = match extra.first() {
                    None => return Err(Error::TruncatedMessage),
                    Some(None) => return Err(Error::InvalidCapability),
                    Some(Some(slot)) => self.slots[slot].cap,
                };
                let Cap::Notification { base, badge, rights } = cap else { return Err(Error::InvalidCapability) };
                if rights & WRITE == 0 {
                    return Err(Error::InvalidCapability);
                }
                let state = &mut self.irqs[usize::from(line)];
                *state = IrqLine { notification: Some((base, badge)), pending: false, masked: false, ..*state };
                Ok(())
            }
            irq_label::IRQ_HANDLER_CLEAR => {
                let state = &mut self.irqs[usize::from(line)];
                *state = IrqLine { notification: None, pending: false, masked: true, ..*state };
                Ok(())
            }
            irq_label::IRQ_HANDLER_ACK => {
                let state = &mut self.irqs[usize::from(line)];
                if state.notification.is_none() {
                    return Err(Error::IllegalOperation);
                }
                *state = IrqLine { pending: false, masked: false, ..*state };
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// An interrupt on `line`, as the kernel takes it: the line is masked;
    /// if a notification is bound, the line is pending its Ack and the
    /// notification is signalled with the bound badge; then the scheduler
    /// picks (a woken driver of higher priority runs).
    pub fn interrupt(&mut self, line: u8) {
        if let Some(state) = self.irqs.get_mut(usize::from(line)) {
            state.masked = true;
            if let Some((notification, badge)) = state.notification {
                state.pending = true;
                self.signal(notification, badge);
            }
        }
        self.schedule();
    }

    /// Sets a thread's result: the error code as the label, or an empty
    /// success.
    /// (A caller that deleted its own TCB's last capability gets none: its
    /// thread is gone.)
    fn set_result(&mut self, thread: u64, result: Result<(), Error>) {
        self.set_reply(thread, result.map(|()| None));
    }

    /// An invocation's reply: the error code as the label, or success with
    /// at most one word (message word 0).
    fn set_reply(&mut self, thread: u64, result: Result<Option<u64>, Error>) {
        if let Some(caller) = self.threads.get_mut(&thread) {
            caller.info = match result {
                Ok(None) => Info { label: 0, length: 0, caps: 0 },
                Ok(Some(word)) => {
                    caller.words[0] = word;
                    Info { label: 0, length: 1, caps: 0 }
                }
                Err(error) => Info { label: error.code(), length: 0, caps: 0 },
            };
        }
    }

    /// The system call `call` of the running thread `thread`; afterwards
    /// the scheduler picks who runs. Returns the caller's result label
    /// afterwards (0 or an error code; a blocked caller's current label).
    pub fn syscall(&mut self, thread: u64, call: &Syscall) -> u64 {
        // What the entry code copies in: the words, the extra capability
        // addresses, a receive's slot; the info word starts empty.
        let receives = matches!(call.number, number::RECV | number::NB_RECV | number::REPLY_RECV);
        let length = usize::from(call.length).min(MESSAGE_WORDS);
        let caps = call.extra.len().min(3);
        {
            let caller = self.thread_mut(thread);
            for (index, word) in caller.words.iter_mut().take(length).enumerate() {
                *word = call.words.get(index).copied().unwrap_or(0);
            }
            caller.extra = [0; 3];
            caller.extra[..caps].copy_from_slice(&call.extra[..caps]);
            if receives {
                let (cptr, depth) = call.receive;
                caller.receive = u8::try_from(depth).ok().filter(|depth| (1..=64).contains(depth)).map(|d| (cptr, d));
            }
            caller.info = Info::default();
        }
        let blocking =
            matches!(call.number, number::CALL | number::SEND | number::RECV | number::REPLY_RECV | number::WAIT);
        let result = match call.number {
            number::CALL | number::SEND | number::NB_SEND => self.send_or_invoke(thread, call, blocking),
            number::YIELD => {
                self.yield_current();
                Ok(())
            }
            number::RECV | number::NB_RECV => self.receive(thread, call.cptr, call.reply, blocking),
            number::REPLY_RECV => self.reply_recv(thread, call),
            number::SIGNAL => self.notification_cap(thread, call.cptr, WRITE).map(|(object, badge)| {
                self.signal(object, badge);
            }),
            number::WAIT | number::POLL => self.notification_cap(thread, call.cptr, READ).map(|(object, _)| {
                self.wait(object, thread, blocking);
            }),
            number::VM_ENTER => self.vm_enter(thread, length),
            _ => Err(Error::InvalidArgument),
        };
        if let Err(error) = result {
            self.set_result(thread, Err(error));
        }
        self.schedule();
        self.threads.get(&thread).map_or(0, |caller| caller.info.label)
    }

    /// The notification capability `cptr` names with `right`.
    fn notification_cap(&self, thread: u64, cptr: u64, right: u8) -> Result<(u64, u64), Error> {
        match self.cap(self.lookup_cap(thread, cptr)?) {
            Some(Cap::Notification { base, badge, rights }) if rights & right != 0 => Ok((base, badge)),
            _ => Err(Error::InvalidCapability),
        }
    }

    /// Call, Send and NBSend: IPC on an endpoint, a signal, or a kernel
    /// invocation.
    fn send_or_invoke(&mut self, thread: u64, call: &Syscall, blocking: bool) -> Result<(), Error> {
        let invoked = self.lookup_cap(thread, call.cptr)?;
        if usize::from(call.length) > MESSAGE_WORDS {
            return Err(Error::RangeError);
        }
        let info = Info { label: call.label, length: call.length, caps: u8::from(!call.extra.is_empty()) };
        match self.slots[&invoked].cap {
            Cap::Endpoint { rights, .. } if rights & WRITE == 0 => Err(Error::InvalidCapability),
            Cap::Endpoint { base, badge, rights } => {
                self.thread_mut(thread).info = info;
                self.send(thread, base, badge, rights & GRANT != 0, blocking, call.number == number::CALL);
                Ok(())
            }
            Cap::Notification { base, badge, rights } if rights & WRITE != 0 => {
                self.signal(base, badge);
                self.set_result(thread, Ok(()));
                Ok(())
            }
            Cap::Notification { .. } => Err(Error::InvalidCapability),
            cap => {
                let length = usize::from(call.length);
                let words: Vec<u64> = self.thread(thread).words[..length].to_vec();
                let extra: Vec<Option<u64>> =
                    call.extra.iter().take(3).map(|cptr| self.lookup_cap(thread, *cptr).ok()).collect();
                let result = self.invoke(invoked, cap, call.label, &words, &extra);
                if std::mem::take(&mut self.preempted) {
                    // The kernel starts the call again, decoding it afresh
                    // from the caller's CSpace as it is now.
                    return self.send_or_invoke(thread, call, blocking);
                }
                if call.number == number::CALL || result.is_err() {
                    self.set_reply(thread, result);
                }
                Ok(())
            }
        }
    }

    /// Sends `sender`'s message to `endpoint` with `badge`: to the first
    /// waiting receiver, or (blocking) into the queue; a Call then waits for
    /// the reply (and may lend a passive receiver its context).
    fn send(&mut self, sender: u64, endpoint: u64, badge: u64, can_grant: bool, blocking: bool, is_call: bool) {
        let receiver = self.endpoints[&endpoint]
            .first()
            .copied()
            .filter(|first| matches!(self.thread(*first).state, ThreadState::BlockedOnReceive { .. }));
        if let Some(receiver) = receiver {
            self.endpoints.get_mut(&endpoint).expect("the endpoint").remove(0);
            let ThreadState::BlockedOnReceive { reply, .. } = self.thread(receiver).state else { unreachable!() };
            if let Some(reply) = reply {
                self.replies.get_mut(&reply).expect("the reply object").receiver = None;
            }
            self.deliver(sender, receiver, badge, can_grant);
            self.thread_mut(receiver).state = ThreadState::Runnable;
            if is_call && let Some(reply) = reply {
                self.lend_for_call(sender, receiver, reply);
            }
            self.make_ready(receiver);
            if is_call {
                self.wait_for_reply(sender, reply);
            }
            return;
        }
        if !blocking {
            return;
        }
        self.unschedule(sender);
        self.thread_mut(sender).state = ThreadState::BlockedOnSend { endpoint, badge, can_grant, is_call };
        self.endpoints.get_mut(&endpoint).expect("the endpoint").push(sender);
    }

    /// A delivered Call's caller waits on the receiver's reply object; with
    /// none it goes on at once with an empty reply.
    fn wait_for_reply(&mut self, caller: u64, reply: Option<u64>) {
        match reply {
            Some(reply) => {
                self.unschedule(caller);
                self.replies.get_mut(&reply).expect("the reply object").caller = Some(caller);
                self.thread_mut(caller).state = ThreadState::BlockedOnReply { reply };
            }
            None => {
                let waiting = self.thread_mut(caller);
                waiting.info = Info::default();
                waiting.badge = 0;
                waiting.state = ThreadState::Runnable;
            }
        }
    }

    /// Copies `sender`'s message to `receiver` with `badge`, and the
    /// capability at the sender's first extra address into the receiver's
    /// receive slot when the message carries one, the sender may grant,
    /// and the slot resolves and is empty; otherwise no capability arrives.
    fn deliver(&mut self, sender: u64, receiver: u64, badge: u64, can_grant: bool) {
        let from = self.thread(sender).clone();
        let mut transferred = 0;
        if from.info.caps > 0
            && can_grant
            && let Some((cptr, depth)) = self.thread(receiver).receive
            && let Ok(source) = self.lookup_cap(sender, from.extra[0])
            && let Ok(destination) = self.lookup_slot(self.cap(receiver), cptr, u64::from(depth))
            && !self.slots.contains_key(&destination)
            && let Ok(cap) = super::copy_of(&self.slots[&source].cap)
        {
            self.insert_copy(source, destination, cap);
            transferred = 1;
        }
        let length = usize::from(from.info.length).min(MESSAGE_WORDS);
        let to = self.thread_mut(receiver);
        to.words[..length].copy_from_slice(&from.words[..length]);
        to.info = Info { label: from.info.label, length: from.info.length, caps: transferred };
        to.badge = badge;
    }

    /// Recv and NBRecv (and the receive of ReplyRecv).
    fn receive(&mut self, thread: u64, cptr: u64, reply_cptr: u64, blocking: bool) -> Result<(), Error> {
        match self.cap(self.lookup_cap(thread, cptr)?) {
            Some(Cap::Endpoint { base, rights, .. }) if rights & READ != 0 => {
                let reply = if reply_cptr == 0 { None } else { Some(self.reply_object(thread, reply_cptr, true)?) };
                let sender = self.endpoints[&base]
                    .first()
                    .copied()
                    .filter(|first| matches!(self.thread(*first).state, ThreadState::BlockedOnSend { .. }));
                if let Some(sender) = sender {
                    self.endpoints.get_mut(&base).expect("the endpoint").remove(0);
                    let ThreadState::BlockedOnSend { badge, can_grant, is_call, .. } = self.thread(sender).state else {
                        unreachable!()
                    };
                    self.deliver(sender, thread, badge, can_grant);
                    if is_call {
                        if let Some(reply) = reply {
                            self.lend_for_call(sender, thread, reply);
                        }
                        self.wait_for_reply(sender, reply);
                        if reply.is_none() {
                            self.make_ready(sender);
                        }
                    } else {
                        self.thread_mut(sender).state = ThreadState::Runnable;
                        self.make_ready(sender);
                    }
                } else if blocking {
                    self.unschedule(thread);
                    self.thread_mut(thread).state = ThreadState::BlockedOnReceive { endpoint: base, reply };
                    if let Some(reply) = reply {
                        self.replies.get_mut(&reply).expect("the reply object").receiver = Some(thread);
                    }
                    self.endpoints.get_mut(&base).expect("the endpoint").push(thread);
                } else {
                    // NBRecv with nobody sending: an empty message, badge 0.
                    let receiver = self.thread_mut(thread);
                    receiver.info = Info::default();
                    receiver.badge = 0;
                }
                Ok(())
            }
            Some(Cap::Notification { base, rights, .. }) if rights & READ != 0 => {
                self.wait(base, thread, blocking);
                Ok(())
            }
            _ => Err(Error::InvalidCapability),
        }
    }

    /// The reply object `cptr` names; a receive needs it free (no caller
    /// waiting through it, no other receiver holding it).
    fn reply_object(&self, thread: u64, cptr: u64, must_be_free: bool) -> Result<u64, Error> {
        match self.cap(self.lookup_cap(thread, cptr)?) {
            Some(Cap::Reply { base }) => {
                let state = self.replies[&base];
                if must_be_free && (state.caller.is_some() || state.receiver.is_some()) {
                    Err(Error::IllegalOperation)
                } else {
                    Ok(base)
                }
            }
            _ => Err(Error::InvalidCapability),
        }
    }

    /// ReplyRecv: replies through the reply object (no capability goes
    /// back; a context lent for the Call goes back to its caller), then
    /// receives on the endpoint with it.
    fn reply_recv(&mut self, thread: u64, call: &Syscall) -> Result<(), Error> {
        let reply = self.reply_object(thread, call.reply, false)?;
        if usize::from(call.length) > MESSAGE_WORDS {
            return Err(Error::RangeError);
        }
        self.thread_mut(thread).info = Info { label: call.label, length: call.length, caps: 0 };
        if let Some(caller) = self.replies[&reply].caller {
            self.end_loan(reply);
            self.replies.get_mut(&reply).expect("the reply object").caller = None;
            if self.thread(caller).state == (ThreadState::BlockedOnReply { reply }) {
                self.deliver(thread, caller, 0, false);
                self.thread_mut(caller).state = ThreadState::Runnable;
                self.make_ready(caller);
            }
        }
        self.receive(thread, call.cptr, call.reply, true)
    }

    /// Signal: wakes the first waiter with `badge`, or ORs it into the
    /// pending word.
    fn signal(&mut self, notification: u64, badge: u64) {
        let state = self.notifications.get_mut(&notification).expect("the notification");
        if state.waiters.is_empty() {
            state.pending = Some(state.pending.unwrap_or(0) | badge);
            return;
        }
        let waiter = state.waiters.remove(0);
        // A VMEnter `WAIT` asleep until a deadline too: the signal ends it.
        self.cancel_sleep(waiter);
        let woken = self.thread_mut(waiter);
        woken.badge = badge;
        woken.state = ThreadState::Runnable;
        self.make_ready(waiter);
    }

    /// Wait (blocking) and Poll: takes the pending word as the badge, or
    /// waits, or (Poll) returns badge 0.
    fn wait(&mut self, notification: u64, thread: u64, blocking: bool) {
        if let Some(word) = self.notifications.get_mut(&notification).expect("the notification").pending.take() {
            self.thread_mut(thread).badge = word;
        } else if blocking {
            self.unschedule(thread);
            self.thread_mut(thread).state = ThreadState::BlockedOnNotification { notification };
            self.notifications.get_mut(&notification).expect("the notification").waiters.push(thread);
        } else {
            self.thread_mut(thread).badge = 0;
        }
    }

    /// TCB invocations on the thread at `target`.
    pub(super) fn invoke_tcb(
        &mut self,
        target: u64,
        label: u64,
        words: &[u64],
        extra: &[Option<u64>],
    ) -> Result<(), Error> {
        let extra_cap = |state: &State, index: usize| -> Result<(u64, Cap), Error> {
            match extra.get(index) {
                None => Err(Error::TruncatedMessage),
                Some(None) => Err(Error::InvalidCapability),
                Some(Some(slot)) => Ok((*slot, state.slots[slot].cap)),
            }
        };
        let word = |index: usize| words.get(index).copied().ok_or(Error::TruncatedMessage);
        match label {
            tcb_label::TCB_SET_SPACE | tcb_label::TCB_SET_FAULT_HANDLER | tcb_label::TCB_SET_IPC_BUFFER => {
                let (source, cap) = extra_cap(self, 0)?;
                let index = match (label, cap) {
                    (tcb_label::TCB_SET_SPACE, Cap::CNode { .. }) => 0,
                    (tcb_label::TCB_SET_FAULT_HANDLER, Cap::Endpoint { rights, .. }) if rights & WRITE != 0 => 1,
                    // The IPC buffer: a 4 KiB frame the thread may read and
                    // write.
                    (tcb_label::TCB_SET_IPC_BUFFER, Cap::Frame { size_bits: 12, rights, .. })
                        if rights & (READ | WRITE) == READ | WRITE =>
                    {
                        3
                    }
                    _ => return Err(Error::InvalidCapability),
                };
                let derived = super::copy_of(&cap)?;
                // SetSpace's optional second capability: a live VSpace.
                let vspace = if label == tcb_label::TCB_SET_SPACE && extra.len() > 1 {
                    let (vspace_source, vspace) = extra_cap(self, 1)?;
                    if !self.is_live_vspace(&vspace) {
                        return Err(Error::InvalidCapability);
                    }
                    Some((vspace_source, super::copy_of(&vspace)?))
                } else {
                    None
                };
                let slot = target + index * super::SLOT_BYTES;
                if matches!(self.cap(slot), Some(Cap::CNode { .. })) && self.is_final(slot) {
                    return Err(Error::RevokeFirst);
                }
                let installs = std::iter::once((source, slot, derived))
                    .chain(vspace.map(|(source, cap)| (source, State::vspace_slot(target), cap)));
                for (source, slot, cap) in installs {
                    if self.slots.contains_key(&slot) {
                        self.delete(slot);
                    }
                    self.insert_copy(source, slot, cap);
                }
                Ok(())
            }
            tcb_label::TCB_WRITE_REGISTERS => {
                if words.len() < 6 {
                    return Err(Error::TruncatedMessage);
                }
                let (rip, rsp, rflags) = (words[0], words[1], words[2]);
                if rip >= USER_TOP || rsp > USER_TOP {
                    return Err(Error::InvalidArgument);
                }
                if self.thread(target).state != ThreadState::Inactive {
                    return Err(Error::IllegalOperation);
                }
                let thread = self.thread_mut(target);
                thread.resumption = Resumption::Fresh;
                thread.registers = [rip, rsp, (rflags & USER_RFLAGS) | RFLAGS_FIXED, words[3], words[4], words[5]];
                Ok(())
            }
            tcb_label::TCB_SET_PRIORITY | tcb_label::TCB_SET_MAX_PRIORITY => {
                let priority = word(0)?;
                let (_, authority) = extra_cap(self, 0)?;
                let Cap::Tcb { base: authority } = authority else { return Err(Error::InvalidCapability) };
                let ceiling = self.thread(authority).max_priority;
                let priority = u8::try_from(priority).map_err(|_| Error::RangeError)?;
                if priority > ceiling {
                    return Err(Error::RangeError);
                }
                if label == tcb_label::TCB_SET_MAX_PRIORITY {
                    self.thread_mut(target).max_priority = priority;
                } else {
                    let runnable = self.thread(target).is_runnable();
                    if runnable {
                        self.unschedule(target);
                    }
                    self.thread_mut(target).priority = priority;
                    if runnable {
                        self.make_ready(target);
                    }
                }
                Ok(())
            }
            tcb_label::TCB_BIND_SCHED_CONTEXT => {
                let (_, cap) = extra_cap(self, 0)?;
                let Cap::SchedContext { base: context, .. } = cap else { return Err(Error::InvalidCapability) };
                if self.sched_contexts[&context].bound.is_some() || self.thread(target).sched_context.is_some() {
                    return Err(Error::IllegalOperation);
                }
                let runnable = self.thread(target).is_runnable();
                if runnable {
                    self.unschedule(target);
                }
                self.sched_contexts.get_mut(&context).expect("the context").bound = Some(target);
                self.thread_mut(target).sched_context = Some(context);
                if runnable {
                    self.make_ready(target);
                }
                Ok(())
            }
            tcb_label::TCB_SET_PASSIVE => {
                // Only Calls delivered from now on look at it: a loan
                // already made lasts until its reply.
                self.thread_mut(target).passive = match word(0)? {
                    0 => false,
                    1 => true,
                    _ => return Err(Error::RangeError),
                };
                Ok(())
            }
            tcb_label::TCB_RESUME => {
                if self.thread(target).state == ThreadState::Inactive {
                    self.thread_mut(target).state = ThreadState::Runnable;
                    self.make_ready(target);
                }
                Ok(())
            }
            tcb_label::TCB_SUSPEND => {
                self.stop_thread(target);
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// SchedControl::Configure: `budget, period`; extra capability 0 the
    /// scheduling context. The thread that runs on it, if runnable,
    /// re-queues: the passive server it is lent to, or else its bound
    /// thread.
    pub(super) fn configure(&mut self, label: u64, words: &[u64], extra: &[Option<u64>]) -> Result<(), Error> {
        if label != tcb_label::SCHED_CONTROL_CONFIGURE {
            return Err(Error::IllegalOperation);
        }
        let word = |index: usize| words.get(index).copied().ok_or(Error::TruncatedMessage);
        let (budget, period) = (word(0)?, word(1)?);
        let context = match extra.first() {
            None => return Err(Error::TruncatedMessage),
            Some(None) => return Err(Error::InvalidCapability),
            Some(Some(slot)) => match self.slots[slot].cap {
                Cap::SchedContext { base, .. } => base,
                _ => return Err(Error::InvalidCapability),
            },
        };
        if budget < MIN_BUDGET || period < budget {
            return Err(Error::RangeError);
        }
        let SchedContext { bound, lent_to, .. } = self.sched_contexts[&context];
        let runnable = lent_to.or(bound).filter(|thread| self.thread(*thread).is_runnable());
        if let Some(thread) = runnable {
            self.unschedule(thread);
        }
        let next_refill = self.sched.now.saturating_add(period);
        let configured = SchedContext { budget, period, remaining: budget, next_refill, bound, lent_to };
        self.sched_contexts.insert(context, configured);
        if let Some(thread) = runnable {
            self.make_ready(thread);
        }
        Ok(())
    }

    /// A new object's state, for retype.
    pub(super) fn create_state(&mut self, kind: Kind, base: u64) {
        match kind {
            Kind::Tcb => {
                self.threads.insert(base, Thread::fresh());
            }
            Kind::Endpoint => {
                self.endpoints.insert(base, Vec::new());
            }
            Kind::Notification => {
                self.notifications.insert(base, Notification::default());
            }
            Kind::Reply => {
                self.replies.insert(base, Reply::default());
            }
            Kind::SchedContext => {
                self.sched_contexts.insert(base, SchedContext::default());
            }
            Kind::VCpu => {
                self.vcpus.insert(base, super::VCpu::fresh());
            }
            kind if super::vspace::is_table(kind) => {
                self.tables.insert(base, super::Table::default());
            }
            _ => {}
        }
    }

    /// A deleted object's state goes with it.
    pub(super) fn forget_state(&mut self, kind: Kind, base: u64) {
        match kind {
            Kind::Tcb => {
                self.threads.remove(&base);
            }
            Kind::Endpoint => {
                self.endpoints.remove(&base);
            }
            Kind::Notification => {
                self.notifications.remove(&base);
            }
            Kind::Reply => {
                self.replies.remove(&base);
            }
            Kind::SchedContext => {
                self.sched_contexts.remove(&base);
            }
            Kind::VCpu => {
                self.vcpus.remove(&base);
            }
            kind if super::vspace::is_table(kind) => {
                self.tables.remove(&base);
            }
            _ => {}
        }
    }
}

/// Starts the periods that have begun by `now`: a full budget again, the
/// next refill one period after the current period's start. Whether it
/// refilled.
fn refill_if_due(state: &mut SchedContext, now: u64) -> bool {
    if now < state.next_refill || state.period == 0 {
        return false;
    }
    let periods = (now - state.next_refill) / state.period + 1;
    state.next_refill = state.next_refill.saturating_add(periods.saturating_mul(state.period));
    state.remaining = state.budget;
    true
}
