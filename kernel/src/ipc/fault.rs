//! Faults as messages: when a thread faults (a page fault, a
//! general-protection fault, any other exception in ring 3), the kernel
//! sends a message describing it to the thread's fault handler, through
//! the endpoint capability in the thread's fault slot, as a Call on the
//! thread's behalf: the handler's reply resumes the thread. A thread with
//! no usable handler is stopped, and the caller reports it.

use super::{MessageInfo, ThreadId, ThreadState};
use crate::cap::{Cap, Rights, SlotRef};
use crate::sched::Scheduler;
use crate::store::ObjectStore;

/// Fault message labels (the handler's received label).
pub mod label {
    /// A page fault: words are the address, the instruction pointer and
    /// the hardware error code.
    pub const PAGE_FAULT: u64 = 0x1_0000;
    /// Another CPU exception: words are the vector, the error code and the
    /// instruction pointer.
    pub const EXCEPTION: u64 = 0x1_0001;
}

/// What went wrong in the thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A page fault at `address`.
    Page {
        /// The faulting address (CR2).
        address: u64,
        /// Where the thread was.
        instruction: u64,
        /// The hardware error code (present, write, user, ...).
        error_code: u64,
    },
    /// Any other exception.
    Exception {
        /// The vector (13 for #GP, 6 for #UD, ...).
        vector: u64,
        /// The hardware error code, 0 if the vector has none.
        error_code: u64,
        /// Where the thread was.
        instruction: u64,
    },
}

impl Fault {
    /// The message the handler receives: label and words.
    #[must_use]
    pub const fn message(&self) -> (u64, [u64; 3]) {
        match *self {
            Fault::Page { address, instruction, error_code } => (label::PAGE_FAULT, [address, instruction, error_code]),
            Fault::Exception { vector, error_code, instruction } => {
                (label::EXCEPTION, [vector, error_code, instruction])
            }
        }
    }
}

/// What became of a faulting thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The fault went to the handler (delivered now, or queued until the
    /// handler receives); the thread waits for the reply.
    Sent,
    /// No usable handler (the fault slot is empty or holds no endpoint
    /// capability with WRITE): the thread is stopped.
    Stopped,
}

/// The slot in a TCB that holds its fault handler's endpoint capability.
#[must_use]
pub fn fault_slot(thread: ThreadId) -> Option<SlotRef> {
    SlotRef::in_cnode(thread.address(), 1)
}

/// Reports `fault` of `thread` to its handler, or stops the thread.
pub fn handle_fault(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    thread: ThreadId,
    fault: Fault,
) -> FaultOutcome {
    let handler = fault_slot(thread).map(|slot| store.slot(slot).cap);
    let Some(Cap::Endpoint { object, badge, rights }) = handler else {
        super::stop_thread(store, scheduler, thread);
        return FaultOutcome::Stopped;
    };
    if !rights.contains(Rights::WRITE) {
        super::stop_thread(store, scheduler, thread);
        return FaultOutcome::Stopped;
    }
    let (fault_label, words) = fault.message();
    let tcb = store.tcb_mut(thread);
    tcb.info = MessageInfo { label: fault_label, length: 3, caps: 0 };
    tcb.words[..3].copy_from_slice(&words);
    // A fault message never carries a capability.
    let endpoint = super::EndpointCap { object, badge, rights: rights - Rights::GRANT };
    super::call(store, scheduler, thread, endpoint);
    if store.tcb(thread).state == ThreadState::Runnable {
        // The handler named no reply object: it cannot resume the thread,
        // which therefore stops rather than run on past its fault.
        super::stop_thread(store, scheduler, thread);
        return FaultOutcome::Stopped;
    }
    FaultOutcome::Sent
}
