//! What deleting a capability undoes ([`derivation::Finalise`] for the
//! kernel's objects), so that no kernel state points into an object whose
//! last capability is gone: its memory can then be retyped safely.
//!
//! | last capability to | what happens |
//! | --- | --- |
//! | an endpoint, a notification | every thread waiting on it wakes with [`SyscallError::InvalidCapability`] as its result; a notification is unbound from its thread |
//! | a reply object | a caller waiting for the reply, or a receiver that named it, wakes with `InvalidCapability` |
//! | a TCB | the thread stops (out of every queue and off the CPU) and its scheduling context, VCpu and bound notification are unbound; its own slots were emptied first (`derivation::delete`) |
//! | a VCpu | it is unbound from its thread and the CPU drops its control block; its GuestSpace slot was emptied first |
//! | a scheduling context | the thread bound to it is suspended (a thread never runs without a budget it was given) and unbound |
//! | a paging structure | it is unlinked from the VSpace it was mapped into |
//! | a PML4 | its ASID is freed (mappings recorded against it are then void) and the CPU stops using it |
//! | an ASID pool | its ASIDs are freed with every VSpace assigned from it |
//!
//! | an I/O port range | its ports are free to issue again |
//! | an IRQ handler | its line is masked, unbound and free for IrqControl::Get again |
//! | a notification bound to a line | the line is unbound and masked: the kernel never signals a deleted object |
//!
//! And every frame capability, last or not, takes its own mapping with it.
//!
//! Waking waiters with an error rather than leaving them blocked keeps
//! every thread's state pointing only at live objects (an invariant the
//! host tests check) and tells each one why its call ended.
//!
//! [`derivation::Finalise`]: crate::cap::derivation::Finalise

use crate::cap::derivation::Finalise;
use crate::cap::{Cap, PageTableLevel};
use crate::error::SyscallError;
use crate::io_port::{self, PortAllocation};
use crate::ipc::{self, EndpointState, MessageInfo, Queue, ThreadId, ThreadState};
use crate::irq::{self, IrqTable};
use crate::platform::Platform;
use crate::sched::Scheduler;
use crate::store::ObjectStore;
use crate::vspace::{self, AsidTable};

/// The kernel's finalisation: the kernel state besides the objects that
/// deleting an object may touch, and the machine.
pub struct Finaliser<'a, P> {
    /// The scheduler threads leave or join.
    pub scheduler: &'a mut Scheduler,
    /// The VSpaces by ASID.
    pub asids: &'a mut AsidTable,
    /// Which I/O ports are issued.
    pub io_ports: &'a mut PortAllocation,
    /// The interrupt lines' bindings.
    pub irqs: &'a mut IrqTable,
    /// The machine, for translations to invalidate and lines to mask.
    pub platform: &'a mut P,
}

/// Ends whatever `thread` waits in and makes it runnable with `error` as the
/// result of the system call it was blocked in.
fn wake_with_error(store: &mut impl ObjectStore, scheduler: &mut Scheduler, thread: ThreadId, error: SyscallError) {
    ipc::stop_thread(store, scheduler, thread);
    let tcb = store.tcb_mut(thread);
    // Its call ends here, with this error as its result.
    tcb.resumption = ipc::Resumption::Results;
    tcb.info = MessageInfo { label: error.code(), length: 0, caps: 0 };
    tcb.badge = 0;
    tcb.state = ThreadState::Runnable;
    scheduler.make_ready(store, thread);
}

impl<S: ObjectStore, P: Platform> Finalise<S> for Finaliser<'_, P> {
    fn removing(&mut self, store: &mut S, cap: Cap, is_final: bool) {
        // Each frame capability's mapping is its own: it goes with it.
        // Mutant: only the last capability to a frame takes its mapping
        // with it; a copy's mapping stays.
        if matches!(cap, Cap::Frame { .. }) && (is_final || !cfg!(bulkhead_mutant = "frame_delete_keeps_mapping")) {
            vspace::unmap(store, self.asids, self.platform, &cap);
        }
        if !is_final {
            return;
        }
        // Port ownership and interrupt bindings (handlers, and notifications
        // bound to lines) are released with the last capability.
        io_port::finalise(self.io_ports, &cap);
        irq::finalise(self.irqs, self.platform, &cap);
        let scheduler = &mut *self.scheduler;
        match cap {
            Cap::Endpoint { object, .. } => {
                // Mutant: the waiters are not woken; the queue is just emptied
                // below, leaving them blocked on a dead endpoint.
                while !cfg!(bulkhead_mutant = "endpoint_delete_leaves_waiters")
                    && let Some(thread) = store.endpoint(object).queue.head
                {
                    wake_with_error(store, scheduler, thread, SyscallError::InvalidCapability);
                }
                let endpoint = store.endpoint_mut(object);
                endpoint.state = EndpointState::Idle;
                endpoint.queue = Queue::EMPTY;
            }
            Cap::Notification { object, .. } => {
                while let Some(thread) = store.notification(object).waiters.head {
                    wake_with_error(store, scheduler, thread, SyscallError::InvalidCapability);
                }
                if let Some(thread) = store.notification_mut(object).bound_tcb.take() {
                    store.tcb_mut(thread).bound_notification = None;
                }
            }
            Cap::VCpu { object } => {
                // Mutant: the thread keeps running a deleted VCpu.
                if let Some(thread) = store.vcpu_mut(object).tcb.take()
                    && !cfg!(bulkhead_mutant = "vcpu_delete_keeps_binding")
                {
                    store.tcb_mut(thread).vcpu = None;
                }
                self.platform.vcpu_deleted(object);
            }
            Cap::Reply { object } => {
                // A context lent for its Call goes back to the caller.
                ipc::end_loan(store, scheduler, object);
                let reply = *store.reply(object);
                for thread in [reply.caller, reply.receiver].into_iter().flatten() {
                    wake_with_error(store, scheduler, thread, SyscallError::InvalidCapability);
                }
            }
            Cap::Tcb { object } => {
                let thread = ThreadId::new(object);
                ipc::stop_thread(store, scheduler, thread);
                self.platform.thread_deleted(thread);
                let tcb = store.tcb_mut(thread);
                let (context, vcpu, notification) =
                    (tcb.sched_context.take(), tcb.vcpu.take(), tcb.bound_notification.take());
                if let Some(context) = context {
                    store.sched_context_mut(context).bound = None;
                }
                if let Some(vcpu) = vcpu {
                    store.vcpu_mut(vcpu).tcb = None;
                }
                if let Some(notification) = notification {
                    store.notification_mut(notification).bound_tcb = None;
                }
            }
            Cap::SchedContext { object, .. } => {
                if let Some(thread) = store.sched_context_mut(object).bound.take() {
                    ipc::stop_thread(store, scheduler, thread);
                    store.tcb_mut(thread).sched_context = None;
                }
            }
            // Mutant: a PML4's last capability goes, its ASID stays assigned.
            Cap::PageTable { level: PageTableLevel::Pml4, .. } if cfg!(bulkhead_mutant = "pml4_delete_keeps_asid") => {}
            // Mutant: an ASID pool's last capability goes, the pool stays in
            // the ASID table.
            Cap::AsidPool { .. } if cfg!(bulkhead_mutant = "asid_pool_delete_keeps_table") => {}
            Cap::PageTable { .. } | Cap::AsidPool { .. } => vspace::unmap(store, self.asids, self.platform, &cap),
            _ => {}
        }
    }
}
