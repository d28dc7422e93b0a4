//! The scheduler's queues: 256 priorities, round robin within each, the
//! highest-priority ready thread runs. Budgets and periods (scheduling
//! contexts) and the timer that enforces them come next; this is the part
//! IPC needs to hand woken threads over.

use crate::ipc::{Queue, ThreadId, ThreadState};
use crate::store::ObjectStore;

/// Priority levels (0 lowest, 255 highest).
pub const PRIORITIES: usize = 256;

/// The ready queues and the running thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler {
    /// One FIFO per priority.
    queues: [Queue; PRIORITIES],
    /// Bit `p` set iff queue `p` is non-empty: finding the highest ready
    /// priority is four word scans, not 256.
    bitmap: [u64; PRIORITIES / 64],
    /// The thread on the CPU, which is in no queue.
    current: Option<ThreadId>,
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
        Scheduler { queues: [Queue::EMPTY; PRIORITIES], bitmap: [0; PRIORITIES / 64], current: None }
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
    pub fn highest_ready_priority(&self) -> Option<u8> {
        let (index, word) = self.bitmap.iter().enumerate().rev().find(|(_, word)| **word != 0)?;
        // index < 4 and the bit index < 64: the sum is below 256.
        u8::try_from(index * 64 + (63 - word.leading_zeros() as usize)).ok()
    }

    /// Puts a runnable thread at the back of its priority's queue (a no-op
    /// for the running thread and for a thread already queued).
    pub fn make_ready(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        if self.current == Some(thread) || store.tcb(thread).is_queued() {
            return;
        }
        let priority = store.tcb(thread).priority;
        let mut queue = self.queues[usize::from(priority)];
        queue.push_back(store, thread);
        self.queues[usize::from(priority)] = queue;
        self.mark(priority, true);
    }

    /// Takes a thread off the CPU or out of its ready queue (it blocked or
    /// stopped). A thread in an IPC queue is not touched.
    pub fn remove(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        if self.current == Some(thread) {
            self.current = None;
            return;
        }
        let tcb = store.tcb(thread);
        if !tcb.is_queued() || tcb.state != ThreadState::Runnable {
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
                queue.push_front(store, current);
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
