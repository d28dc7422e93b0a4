//! Intrusive thread queues: the links live in the TCBs, so a queue is two
//! words and every operation is constant time. A thread is in at most one
//! queue at a time.

use super::ThreadId;
use crate::store::ObjectStore;

/// A FIFO of threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Queue {
    /// The first thread.
    pub head: Option<ThreadId>,
    /// The last thread.
    pub tail: Option<ThreadId>,
}

impl Queue {
    /// No threads.
    pub const EMPTY: Queue = Queue { head: None, tail: None };

    /// Whether no thread waits.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Appends `thread` (which must be in no queue).
    #[inline(always)]
    pub fn push_back(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        let links = &mut store.tcb_mut(thread).queue_links;
        links.previous = self.tail;
        links.next = None;
        links.queued = true;
        match self.tail {
            Some(tail) => store.tcb_mut(tail).queue_links.next = Some(thread),
            None => self.head = Some(thread),
        }
        self.tail = Some(thread);
    }

    /// Prepends `thread` (which must be in no queue).
    pub fn push_front(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        let links = &mut store.tcb_mut(thread).queue_links;
        links.previous = None;
        links.next = self.head;
        links.queued = true;
        match self.head {
            Some(head) => store.tcb_mut(head).queue_links.previous = Some(thread),
            None => self.tail = Some(thread),
        }
        self.head = Some(thread);
    }

    /// Inserts `thread` (which must be in no queue) just before `member`.
    pub fn insert_before(&mut self, store: &mut impl ObjectStore, member: ThreadId, thread: ThreadId) {
        let previous = store.tcb(member).queue_links.previous;
        let links = &mut store.tcb_mut(thread).queue_links;
        links.previous = previous;
        links.next = Some(member);
        links.queued = true;
        store.tcb_mut(member).queue_links.previous = Some(thread);
        match previous {
            Some(previous) => store.tcb_mut(previous).queue_links.next = Some(thread),
            None => self.head = Some(thread),
        }
    }

    /// Removes and returns the first thread.
    #[inline(always)]
    pub fn pop_front(&mut self, store: &mut impl ObjectStore) -> Option<ThreadId> {
        let head = self.head?;
        self.remove(store, head);
        Some(head)
    }

    /// Removes `thread`, which must be in this queue.
    #[inline(always)]
    pub fn remove(&mut self, store: &mut impl ObjectStore, thread: ThreadId) {
        let links = store.tcb(thread).queue_links;
        match links.previous {
            Some(previous) => store.tcb_mut(previous).queue_links.next = links.next,
            None => self.head = links.next,
        }
        match links.next {
            Some(next) => store.tcb_mut(next).queue_links.previous = links.previous,
            // Mutant: removing the last of two or more threads leaves `tail`
            // at it, so the next push_back links behind the removed thread.
            None if cfg!(bulkhead_mutant = "queue_remove_keeps_tail") && links.previous.is_some() => {}
            None => self.tail = links.previous,
        }
        store.tcb_mut(thread).queue_links = super::QueueLinks::default();
    }
}
