//! Signal, Wait and Poll on notifications.

use super::{ThreadId, ThreadState};
use crate::memory::PhysAddr;
use crate::sched::Scheduler;
use crate::store::ObjectStore;

/// What a Wait or Poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// A signal was pending: the thread's badge holds the OR of the badges.
    Received,
    /// Nothing pending and the thread now sleeps in the queue.
    Blocked,
    /// Nothing pending and the thread did not want to wait (Poll): its badge is 0.
    WouldBlock,
}

/// Signals the notification at `notification` with `badge`: wakes the
/// first waiter with it, or ORs it into the word for the next wait.
pub fn signal(store: &mut impl ObjectStore, scheduler: &mut Scheduler, notification: PhysAddr, badge: u64) {
    let mut waiters = store.notification(notification).waiters;
    if let Some(waiter) = waiters.pop_front(store) {
        store.notification_mut(notification).waiters = waiters;
        // A VMEnter `WAIT` sleeping until a deadline too: the signal ends it.
        scheduler.cancel_sleep(store, waiter);
        let tcb = store.tcb_mut(waiter);
        tcb.badge = badge;
        tcb.state = ThreadState::Runnable;
        scheduler.make_ready(store, waiter);
    } else {
        let state = store.notification_mut(notification);
        state.active = true;
        state.word |= badge;
        // Mutant: a pending signal's badge replaces the word instead of OR-ing into it.
        #[cfg(bulkhead_mutant = "signal_overwrites_word")]
        {
            state.word = badge;
        }
    }
}

/// Waits on (or, with `blocking` false, polls) the notification.
pub fn wait(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    notification: PhysAddr,
    thread: ThreadId,
    blocking: bool,
) -> WaitOutcome {
    let state = *store.notification(notification);
    if state.active {
        let taken = store.notification_mut(notification);
        taken.active = false;
        taken.word = 0;
        store.tcb_mut(thread).badge = state.word;
        return WaitOutcome::Received;
    }
    if !blocking {
        store.tcb_mut(thread).badge = 0;
        return WaitOutcome::WouldBlock;
    }
    scheduler.remove(store, thread);
    store.tcb_mut(thread).state = ThreadState::BlockedOnNotification { notification };
    let mut waiters = state.waiters;
    waiters.push_back(store, thread);
    store.notification_mut(notification).waiters = waiters;
    WaitOutcome::Blocked
}
