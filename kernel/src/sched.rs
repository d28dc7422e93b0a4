//! The scheduler: 256 priorities, round robin within each, the
//! highest-priority ready thread runs, and scheduling contexts that give a
//! thread a budget per period, so that no thread takes more CPU than its
//! budget however high its priority (temporal isolation).
//!
//! Time is an opaque tick count supplied by the caller (the kernel's
//! timer: the TSC; tests: a simulated clock). The kernel asks
//! [`Scheduler::timer_deadline`] when to interrupt next, and on every
//! kernel entry calls [`Scheduler::account`] (charge the running thread,
//! throttle it if its budget is gone) and [`Scheduler::release_due`]
//! (refill the budgets whose period has come round, and wake the threads
//! whose sleep ended).
//!
//! **Sleeping threads.** VMEnter's `WAIT` (`crate::vcpu::enter_guest`)
//! blocks a thread until its bound notification is signalled or its
//! deadline passes, whichever comes first. The deadline puts it into the
//! sleep queue ([`SleepQueue`], earliest first), linked through the TCB's
//! own sleep links so that the thread can wait in its notification's queue
//! at the same time; a signal takes it out ([`Scheduler::cancel_sleep`]),
//! as does stopping it, and [`Scheduler::release_due`] wakes the ones
//! whose time has come. A sleeping thread is off the CPU: it uses no
//! budget. [`Scheduler::timer_deadline`] includes the earliest wake-up, so
//! that the kernel idles until then when nothing else can run.

use crate::ipc::{MessageInfo, Queue, QueueLinks, ThreadId, ThreadState, running_context};
use crate::store::ObjectStore;

/// Priority levels (0 lowest, 255 highest).
pub const PRIORITIES: usize = 256;

/// A budget of `budget` ticks in every `period` ticks (a periodic server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SchedContext {
    /// Ticks of CPU time per period.
    pub budget: u64,
    /// The period's length in ticks.
    pub period: u64,
    /// Budget left in the current period.
    pub remaining: u64,
    /// When the current period ends and the budget is refilled.
    pub next_refill: u64,
    /// The thread bound to it (one at most), which runs on it unless it is
    /// lent.
    pub bound: Option<ThreadId>,
    /// The passive server it is lent to while its bound thread waits for
    /// that server's reply (`crate::ipc` donation).
    pub lent_to: Option<ThreadId>,
}

impl SchedContext {
    /// A fresh scheduling context: no budget until configured.
    pub const FRESH: SchedContext =
        SchedContext { budget: 0, period: 0, remaining: 0, next_refill: 0, bound: None, lent_to: None };

    /// A context with `budget` ticks in every `period`, its first period
    /// starting at `now`. A budget above the period is cut to the period.
    #[must_use]
    pub fn new(budget: u64, period: u64, now: u64) -> SchedContext {
        let budget = budget.min(period);
        SchedContext {
            budget,
            period,
            remaining: budget,
            next_refill: now.saturating_add(period),
            bound: None,
            lent_to: None,
        }
    }

    /// Starts the periods that have begun by `now`: a full budget again.
    /// Returns when the current period began, if it began by `now` since
    /// the last refill.
    fn refill_if_due(&mut self, now: u64) -> Option<u64> {
        if now < self.next_refill || self.period == 0 {
            return None;
        }
        let periods_passed = (now - self.next_refill) / self.period + 1;
        self.next_refill = self.next_refill.saturating_add(periods_passed.saturating_mul(self.period));
        self.remaining = self.budget;
        Some(self.next_refill.saturating_sub(self.period))
    }
}

/// The ready queues, the release queue and the running thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler {
    /// One FIFO per priority.
    queues: [Queue; PRIORITIES],
    /// Bit `p` set iff queue `p` is non-empty: finding the highest ready
    /// priority is four word scans, not 256.
    bitmap: [u64; PRIORITIES / 64],
    /// The thread on the CPU, which is in no queue.
    current: Option<ThreadId>,
    /// Runnable threads out of budget, by refill time (earliest first).
    release: Queue,
    /// Threads in VMEnter's `WAIT` with a deadline, by wake-up time.
    sleeping: SleepQueue,
    /// When the running thread was last charged.
    charged_until: u64,
}

/// The threads sleeping until a time, earliest first (threads with equal
/// times in the order they went to sleep), linked through each TCB's sleep
/// links: a thread may be here and in a notification's queue at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SleepQueue {
    /// The thread that wakes first.
    pub head: Option<ThreadId>,
    /// The thread that wakes last.
    pub tail: Option<ThreadId>,
}

impl SleepQueue {
    /// No thread sleeps.
    pub const EMPTY: SleepQueue = SleepQueue { head: None, tail: None };

    /// Whether no thread sleeps.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Inserts `thread` (which must not be in the queue) to wake at
    /// `wake_at`, after every thread that wakes at or before then (a
    /// linear walk, as the release queue's: only VMM threads sleep here).
    fn insert(&mut self, store: &mut impl ObjectStore, thread: ThreadId, wake_at: u64) {
        let mut later = self.head;
        while let Some(member) = later {
            if store.tcb(member).wake_at > wake_at {
                break;
            }
            later = store.tcb(member).sleep_links.next;
        }
        let previous = match later {
            Some(member) => store.tcb(member).sleep_links.previous,
            None => self.tail,
        };
        let tcb = store.tcb_mut(thread);
        tcb.wake_at = wake_at;
        tcb.sleep_links = QueueLinks { previous, next: later, queued: true };
        match previous {
            Some(previous) => store.tcb_mut(previous).sleep_links.next = Some(thread),
            None => self.head = Some(thread),
        }
        match later {
            Some(member) => store.tcb_mut(member).sleep_links.previous = Some(thread),
            None => self.tail = Some(thread),
        }
    }

    /// Removes `thread`, which must be in the queue.
    fn remove(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        let links = store.tcb(thread).sleep_links;
        match links.previous {
            Some(previous) => store.tcb_mut(previous).sleep_links.next = links.next,
            None => self.head = links.next,
        }
        match links.next {
            Some(next) => store.tcb_mut(next).sleep_links.previous = links.previous,
            None => self.tail = links.previous,
        }
        store.tcb_mut(thread).sleep_links = QueueLinks::default();
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl Scheduler {
    /// No threads.
    #[must_use]
    pub const fn new() -> Scheduler {
        Scheduler {
            queues: [Queue::EMPTY; PRIORITIES],
            bitmap: [0; PRIORITIES / 64],
            current: None,
            release: Queue::EMPTY,
            sleeping: SleepQueue::EMPTY,
            charged_until: 0,
        }
    }

    /// The running thread.
    #[must_use]
    pub const fn current(&self) -> Option<ThreadId> {
        self.current
    }

    /// The ready queue of `priority`.
    #[must_use]
    pub fn queue(&self, priority: u8) -> &Queue {
        &self.queues[usize::from(priority)]
    }

    fn mark(&mut self, priority: u8, non_empty: bool) {
        let (word, bit) = (usize::from(priority) / 64, priority % 64);
        if non_empty {
            self.bitmap[word] |= 1 << bit;
        } else {
            self.bitmap[word] &= !(1 << bit);
        }
    }

    /// The highest priority with a ready thread.
    #[must_use]
    #[inline(always)]
    pub fn highest_ready_priority(&self) -> Option<u8> {
        // Usually nothing is ready (the IPC fast path asks on every call):
        // one test of all four words first.
        if self.bitmap.iter().fold(0, |any, word| any | word) == 0 {
            return None;
        }
        let (index, word) = self.bitmap.iter().enumerate().rev().find(|(_, word)| **word != 0)?;
        // index < 4 and the bit index < 64: the sum is below 256.
        u8::try_from(index * 64 + (63 - word.leading_zeros() as usize)).ok()
    }

    /// Until when the running thread has been charged (the time of the
    /// last [`Scheduler::account`]).
    #[must_use]
    pub const fn charged_until(&self) -> u64 {
        self.charged_until
    }

    /// The threads waiting for their budget's refill.
    #[must_use]
    pub const fn release_queue(&self) -> &Queue {
        &self.release
    }

    /// The threads sleeping until their deadline (VMEnter's `WAIT`).
    #[must_use]
    pub const fn sleep_queue(&self) -> &SleepQueue {
        &self.sleeping
    }

    /// Puts `thread`, which has just blocked (in VMEnter's `WAIT`: waiting
    /// on its bound notification, or [`ThreadState::Sleeping`]), to sleep
    /// until `wake_at`: [`Scheduler::release_due`] wakes it then, unless
    /// [`Scheduler::cancel_sleep`] took it out first.
    pub fn sleep_until(&mut self, store: &mut impl ObjectStore, thread: ThreadId, wake_at: u64) {
        if store.tcb(thread).sleep_links.queued {
            self.sleeping.remove(store, thread);
        }
        self.sleeping.insert(store, thread, wake_at);
    }

    /// Takes `thread` out of the sleep queue, if it is there (a signal
    /// ended its wait first, or it is being stopped).
    #[inline(always)]
    pub fn cancel_sleep(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        if store.tcb(thread).sleep_links.queued {
            self.sleeping.remove(store, thread);
        }
    }

    /// Wakes the threads whose sleep ended by `now`: each leaves the
    /// notification queue it waited in, and its VMEnter returns the
    /// deadline's exit (label [`crate::vcpu::enter::LABEL_EXIT`], the exit
    /// reply its wait prepared in its message, badge 0).
    fn wake_sleepers(&mut self, store: &mut impl ObjectStore, now: u64) {
        while let Some(head) = self.sleeping.head {
            if store.tcb(head).wake_at > now {
                break;
            }
            self.sleeping.remove(store, head);
            if let ThreadState::BlockedOnNotification { notification } = store.tcb(head).state {
                let mut waiters = store.notification(notification).waiters;
                waiters.remove(store, head);
                store.notification_mut(notification).waiters = waiters;
            }
            let tcb = store.tcb_mut(head);
            tcb.info =
                MessageInfo { label: crate::vcpu::enter::LABEL_EXIT, length: crate::vcpu::enter::EXIT_LENGTH, caps: 0 };
            tcb.badge = 0;
            tcb.state = ThreadState::Runnable;
            self.make_ready(store, head);
        }
    }

    /// Whether the thread has budget to run on the context it runs on (its
    /// own, or one lent to it: `crate::ipc::running_context`); threads
    /// without a scheduling context always do.
    #[inline(always)]
    pub(crate) fn has_budget(store: &impl ObjectStore, thread: ThreadId) -> bool {
        running_context(store, thread).is_none_or(|context| store.sched_context(context).remaining > 0)
    }

    /// Puts a runnable thread at the back of its priority's queue, or in
    /// the release queue if it has no budget left (a no-op for the running
    /// thread and for a thread already queued). A thread bound to a
    /// scheduling context that was never configured goes into no queue: it
    /// has no budget and no period that would ever refill one, so it waits,
    /// runnable, until SchedControl::Configure re-queues it.
    pub fn make_ready(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        if self.current == Some(thread) || store.tcb(thread).is_queued() || Self::awaits_configuration(store, thread) {
            return;
        }
        if !Self::has_budget(store, thread) {
            self.throttle(store, thread);
            return;
        }
        let priority = store.tcb(thread).priority;
        let mut queue = self.queues[usize::from(priority)];
        queue.push_back(store, thread);
        self.queues[usize::from(priority)] = queue;
        self.mark(priority, true);
    }

    /// Takes a thread off the CPU, out of its ready queue or out of the
    /// release queue (it blocked or stopped). A thread in an IPC queue is
    /// not touched.
    pub fn remove(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        if self.current == Some(thread) {
            self.current = None;
            return;
        }
        let tcb = store.tcb(thread);
        if !tcb.is_queued() || tcb.state != ThreadState::Runnable {
            return;
        }
        if !Self::has_budget(store, thread) {
            let mut release = self.release;
            release.remove(store, thread);
            self.release = release;
            return;
        }
        // A queued runnable thread is in its priority's ready queue (the
        // IPC code takes threads off the scheduler before blocking them).
        let priority = tcb.priority;
        let mut queue = self.queues[usize::from(priority)];
        queue.remove(store, thread);
        self.queues[usize::from(priority)] = queue;
        self.mark(priority, !queue.is_empty());
    }

    /// Whether the thread runs on a scheduling context never configured
    /// (period 0).
    fn awaits_configuration(store: &impl ObjectStore, thread: ThreadId) -> bool {
        running_context(store, thread).is_some_and(|context| store.sched_context(context).period == 0)
    }

    /// When the thread's budget is next refilled.
    fn refill_time(store: &impl ObjectStore, thread: ThreadId) -> u64 {
        running_context(store, thread).map_or(0, |context| store.sched_context(context).next_refill)
    }

    /// Puts a runnable thread without budget into the release queue, in
    /// refill-time order (a linear insert, as in seL4: the queue holds only
    /// throttled threads).
    fn throttle(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        let due = Self::refill_time(store, thread);
        let mut later = self.release.head;
        while let Some(member) = later {
            if Self::refill_time(store, member) > due {
                break;
            }
            later = store.tcb(member).queue_links.next;
        }
        let mut release = self.release;
        match later {
            None => release.push_back(store, thread),
            Some(member) => release.insert_before(store, member, thread),
        }
        self.release = release;
    }

    /// Charges the running thread for the ticks since it was last charged
    /// (or dispatched) and, if that used up its budget, takes it off the CPU
    /// into the release queue. When a new period began in between, the
    /// refilled budget pays only for the ticks since that period began: the
    /// ones before it were the old period's, which the timer bounded by the
    /// old budget. Call on kernel entries with the time (at least whenever
    /// the scheduler decides, and at the timer's deadline).
    pub fn account(&mut self, store: &mut impl ObjectStore, now: u64) {
        let since = self.charged_until;
        let mut used = now.saturating_sub(since);
        self.charged_until = now;
        let Some(current) = self.current else { return };
        let Some(context) = running_context(store, current) else { return };
        let state = store.sched_context_mut(context);
        if let Some(period_start) = state.refill_if_due(now) {
            used = now.saturating_sub(period_start.max(since));
        }
        // Mutant: the running thread's time is not charged to its budget.
        if !cfg!(bulkhead_mutant = "budget_not_charged") {
            state.remaining = state.remaining.saturating_sub(used);
        }
        if state.remaining == 0 {
            self.current = None;
            self.throttle(store, current);
        }
    }

    /// Refills the budgets whose period began by `now` and makes their
    /// threads ready again; wakes the sleepers whose time has come.
    pub fn release_due(&mut self, store: &mut impl ObjectStore, now: u64) {
        self.wake_sleepers(store, now);
        while let Some(head) = self.release.head {
            let Some(context) = running_context(store, head) else { break };
            if store.sched_context(context).next_refill > now {
                break;
            }
            let mut release = self.release;
            release.remove(store, head);
            self.release = release;
            let _ = store.sched_context_mut(context).refill_if_due(now);
            self.make_ready(store, head);
        }
    }

    /// When the kernel must next be entered: the running thread's budget
    /// running out, the earliest refill or the earliest wake-up, whichever
    /// comes first.
    #[must_use]
    pub fn timer_deadline(&self, store: &impl ObjectStore, now: u64) -> Option<u64> {
        let budget_or_refill = self.budget_or_refill_deadline(store, now);
        let wake = self.sleeping.head.map(|head| store.tcb(head).wake_at);
        match (budget_or_refill, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`Scheduler::timer_deadline`] without the sleepers.
    fn budget_or_refill_deadline(&self, store: &impl ObjectStore, now: u64) -> Option<u64> {
        let exhaustion = self.current.and_then(|current| {
            let context = running_context(store, current)?;
            Some(now.saturating_add(store.sched_context(context).remaining))
        });
        let refill = self.release.head.and_then(|head| {
            let context = running_context(store, head)?;
            Some(store.sched_context(context).next_refill)
        });
        match (exhaustion, refill) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decides who runs next: the running thread keeps the CPU unless it
    /// stopped being runnable or a strictly higher priority is ready (a
    /// preempted thread goes back to the front of its queue: it did not
    /// use up its turn). Returns the thread that now runs.
    pub fn schedule(&mut self, store: &mut impl ObjectStore) -> Option<ThreadId> {
        if let Some(current) = self.current {
            let tcb = store.tcb(current);
            let keeps = tcb.state == ThreadState::Runnable
                && self.highest_ready_priority().is_none_or(|highest| highest <= tcb.priority);
            if keeps {
                return Some(current);
            }
            self.current = None;
            if tcb.state == ThreadState::Runnable {
                let priority = tcb.priority;
                let mut queue = self.queues[usize::from(priority)];
                // Mutant: a preempted thread loses its turn (back of its queue).
                if cfg!(bulkhead_mutant = "preempted_goes_to_back") {
                    queue.push_back(store, current);
                } else {
                    queue.push_front(store, current);
                }
                self.queues[usize::from(priority)] = queue;
                self.mark(priority, true);
            }
        }
        let priority = self.highest_ready_priority()?;
        let mut queue = self.queues[usize::from(priority)];
        let next = queue.pop_front(store);
        self.queues[usize::from(priority)] = queue;
        self.mark(priority, !queue.is_empty());
        self.current = next;
        next
    }

    /// Whether `thread`, once made ready, is the one [`Scheduler::schedule`]
    /// picks when the running thread blocks: it has budget (so it goes into
    /// its ready queue, not the release queue) and every ready thread has a
    /// strictly lower priority (so its queue is empty and it comes first).
    #[inline(always)]
    pub(crate) fn runs_next_when_woken(&self, store: &impl ObjectStore, thread: ThreadId) -> bool {
        self.runs_next_with_budget(store, thread, Self::has_budget(store, thread))
    }

    /// [`Scheduler::runs_next_when_woken`] with the thread's budget
    /// given: the budget of a context about to be lent to it.
    #[inline(always)]
    pub(crate) fn runs_next_with_budget(&self, store: &impl ObjectStore, thread: ThreadId, has_budget: bool) -> bool {
        let priority = store.tcb(thread).priority;
        has_budget && self.highest_ready_priority().is_none_or(|highest| highest < priority)
    }

    /// Puts `thread` on the CPU directly, for the IPC fast path
    /// (`crate::fastpath`), which has checked with
    /// [`Scheduler::runs_next_when_woken`] that `schedule` would pick it, and
    /// has taken the previous thread off the CPU by blocking it.
    pub(crate) fn set_current(&mut self, thread: ThreadId) {
        self.current = Some(thread);
    }

    /// The running thread gives up the rest of its turn: it goes to the
    /// back of its queue and the next thread of the highest priority runs.
    pub fn yield_current(&mut self, store: &mut impl ObjectStore) -> Option<ThreadId> {
        if let Some(current) = self.current.take()
            && store.tcb(current).state == ThreadState::Runnable
        {
            self.make_ready(store, current);
        }
        self.schedule(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::ThreadId;
    use crate::memory::PhysAddr;
    use crate::store::MapStore;

    fn thread(number: u64) -> ThreadId {
        ThreadId::new(PhysAddr::new(0x20_0000 + number * 0x800))
    }

    fn context(number: u64) -> PhysAddr {
        PhysAddr::new(0x50_0000 + number * 0x100)
    }

    /// Threads that never block, as (priority, optional (budget, period)).
    fn spinners(threads: &[(u8, Option<(u64, u64)>)]) -> (MapStore, Scheduler) {
        let mut store = MapStore::new();
        let mut scheduler = Scheduler::new();
        for (number, (priority, budget)) in threads.iter().enumerate() {
            let id = thread(number as u64);
            if let Some((budget, period)) = budget {
                *store.sched_context_mut(context(number as u64)) = SchedContext::new(*budget, *period, 0);
                store.tcb_mut(id).sched_context = Some(context(number as u64));
            }
            let tcb = store.tcb_mut(id);
            tcb.priority = *priority;
            tcb.state = ThreadState::Runnable;
            scheduler.make_ready(&mut store, id);
        }
        (store, scheduler)
    }

    /// Runs the system like the kernel would for `duration` ticks: run the
    /// chosen thread until the timer deadline (or a `slice`-tick round-robin
    /// tick), then account, release and schedule. Returns each thread's
    /// ticks on the CPU.
    fn simulate(store: &mut MapStore, scheduler: &mut Scheduler, count: usize, duration: u64, slice: u64) -> Vec<u64> {
        let mut used = vec![0; count];
        let mut now = 0;
        scheduler.schedule(store);
        while now < duration {
            let deadline = scheduler.timer_deadline(store, now).unwrap_or(u64::MAX).min(now + slice).min(duration);
            if let Some(current) = scheduler.current() {
                let index = (current.address().as_u64() - 0x20_0000) / 0x800;
                used[index as usize] += deadline - now;
            }
            let slice_ended = deadline == now + slice;
            now = deadline;
            scheduler.account(store, now);
            scheduler.release_due(store, now);
            if slice_ended {
                scheduler.yield_current(store);
            } else {
                scheduler.schedule(store);
            }
        }
        used
    }

    #[test]
    fn a_spinning_high_priority_thread_gets_only_its_budget() {
        // Priority 200 with 20 % of the CPU; priority 1 with no limit.
        let (mut store, mut scheduler) = spinners(&[(200, Some((2_000, 10_000))), (1, None)]);
        let used = simulate(&mut store, &mut scheduler, 2, 1_000_000, 500);
        assert_eq!(used.iter().sum::<u64>(), 1_000_000);
        let share = used[0] as f64 / 1_000_000.0;
        assert!((share - 0.20).abs() < 0.01, "the budgeted thread took {:.1} %", share * 100.0);
        assert!(used[1] >= 790_000, "the low-priority thread progressed only {} ticks", used[1]);
    }

    #[test]
    fn budgets_share_the_cpu_between_equal_spinners() {
        // Two budget-limited spinners at one priority and a background one.
        let (mut store, mut scheduler) =
            spinners(&[(50, Some((3_000, 10_000))), (50, Some((5_000, 10_000))), (0, None)]);
        let used = simulate(&mut store, &mut scheduler, 3, 1_000_000, 700);
        let shares: Vec<f64> = used.iter().map(|ticks| *ticks as f64 / 1_000_000.0).collect();
        assert!((shares[0] - 0.30).abs() < 0.02, "{shares:?}");
        assert!((shares[1] - 0.50).abs() < 0.02, "{shares:?}");
        assert!((shares[2] - 0.20).abs() < 0.02, "{shares:?}");
    }

    #[test]
    fn a_budget_above_its_period_is_cut_to_the_period() {
        assert_eq!(SchedContext::new(50, 10, 0).budget, 10);
        let mut context = SchedContext::new(4, 10, 0);
        context.remaining = 0;
        assert_eq!(context.refill_if_due(35), Some(30), "the current period began at 30");
        assert_eq!((context.remaining, context.next_refill), (4, 40), "late refills start the current period");
        assert_eq!(context.refill_if_due(39), None);
    }

    #[test]
    fn a_charge_across_a_refill_pays_only_for_the_new_period() {
        // One thread whose budget is its whole period, charged once per
        // 9,000 ticks (as a thread is whose system calls skip the
        // accounting): crossing each period's start refills its budget,
        // and the ticks before that start were the old period's.
        let (mut store, mut scheduler) = spinners(&[(50, Some((10_000, 10_000)))]);
        let thread = scheduler.schedule(&mut store).expect("the spinner runs");
        let context = store.tcb(thread).sched_context.expect("its scheduling context");
        for now in (9_000..100_000).step_by(9_000) {
            scheduler.account(&mut store, now);
            assert_eq!(scheduler.current(), Some(thread), "still running at {now}");
            let period_start = now / 10_000 * 10_000;
            let expected = if now - period_start < 9_000 { 10_000 - (now - period_start) } else { 1_000 };
            assert_eq!(store.sched_context(context).remaining, expected, "at {now}");
        }
    }

    #[test]
    fn a_thread_on_an_unconfigured_context_waits_in_no_queue() {
        // Once this thread went into the release queue with refill time 0,
        // and `release_due` took it out and put it back forever.
        let (mut store, mut scheduler) = spinners(&[(9, None)]);
        store.tcb_mut(thread(1)).priority = 9;
        store.tcb_mut(thread(1)).state = ThreadState::Runnable;
        store.tcb_mut(thread(1)).sched_context = Some(context(1));
        scheduler.make_ready(&mut store, thread(1));
        assert!(!store.tcb(thread(1)).is_queued() && scheduler.release_queue().is_empty());
        scheduler.release_due(&mut store, 1_000);
        assert_eq!(scheduler.schedule(&mut store), Some(thread(0)));
        // Configured, it is ready like any other.
        *store.sched_context_mut(context(1)) = SchedContext { bound: Some(thread(1)), ..SchedContext::new(10, 100, 0) };
        scheduler.make_ready(&mut store, thread(1));
        assert_eq!(scheduler.queue(9).head, Some(thread(1)));
    }

    #[test]
    fn the_release_queue_stays_in_refill_order() {
        let (mut store, mut scheduler) = spinners(&[(9, Some((10, 300))), (9, Some((10, 100))), (9, Some((10, 200)))]);
        for _ in 0..3 {
            scheduler.schedule(&mut store);
            let now = scheduler.charged_until + 10;
            scheduler.account(&mut store, now);
        }
        let mut order = Vec::new();
        let mut at = scheduler.release_queue().head;
        while let Some(member) = at {
            order.push(member);
            at = store.tcb(member).queue_links.next;
        }
        assert_eq!(order, [thread(1), thread(2), thread(0)]);
        assert_eq!(scheduler.timer_deadline(&store, 30), Some(100));
        scheduler.release_due(&mut store, 150);
        assert_eq!(scheduler.schedule(&mut store), Some(thread(1)));
    }
}
