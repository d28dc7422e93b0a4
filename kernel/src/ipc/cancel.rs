//! Taking a thread out of whatever IPC it waits in (for Suspend, and later
//! for deleting the objects it waits on).

use super::{EndpointState, Resumption, ThreadId, ThreadState};
use crate::sched::Scheduler;
use crate::store::ObjectStore;

/// Stops `thread`: takes it out of any endpoint or notification queue and
/// out of the sleep queue, unbinds a reply object it waits on or holds,
/// ends the loan of a context it holds or has lent,
/// takes it off the CPU and out of the scheduler's queues, and makes it
/// inactive. A blocked system
/// call is cancelled: if the thread is resumed, it makes the call again
/// ([`Resumption::Restart`]).
pub fn stop_thread(store: &mut impl ObjectStore, scheduler: &mut Scheduler, thread: ThreadId) {
    if !matches!(store.tcb(thread).state, ThreadState::Runnable | ThreadState::Inactive) {
        store.tcb_mut(thread).resumption = Resumption::Restart;
    }
    scheduler.cancel_sleep(store, thread);
    match store.tcb(thread).state {
        ThreadState::BlockedOnSend { endpoint, .. } | ThreadState::BlockedOnReceive { endpoint, .. } => {
            if let ThreadState::BlockedOnReceive { reply: Some(reply), .. } = store.tcb(thread).state {
                store.reply_mut(reply).receiver = None;
            }
            let mut queue = store.endpoint(endpoint).queue;
            queue.remove(store, thread);
            let state = store.endpoint_mut(endpoint);
            state.queue = queue;
            if queue.is_empty() {
                state.state = EndpointState::Idle;
            }
        }
        ThreadState::BlockedOnNotification { notification } => {
            let mut waiters = store.notification(notification).waiters;
            waiters.remove(store, thread);
            store.notification_mut(notification).waiters = waiters;
        }
        ThreadState::BlockedOnReply { reply } => {
            // Its context is no longer lent: the server of its Call goes
            // back to its own.
            super::end_loan(store, scheduler, reply);
            // Mutant: the reply object stays bound to the stopped caller.
            if !cfg!(bulkhead_mutant = "suspend_keeps_reply_binding") {
                store.reply_mut(reply).caller = None;
            }
        }
        ThreadState::Runnable => scheduler.remove(store, thread),
        ThreadState::Sleeping | ThreadState::Inactive => {}
    }
    // A stopped server gives back the context lent to it (it is in no
    // scheduler queue now, whatever the context).
    super::donation::give_back(store, thread);
    store.tcb_mut(thread).state = ThreadState::Inactive;
}
