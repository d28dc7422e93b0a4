//! The system-call layer end to end on the host: a root task builds three
//! protection domains out of one untyped (CNodes, threads, an endpoint, a
//! notification, reply objects, scheduling contexts), and they exchange a
//! badged Call and ReplyRecv, a long message, a capability and a signal;
//! then every kind of bad input is refused with its error while the others
//! keep working, and revoking a minted endpoint cuts off every copy.

use super::*;
use crate::cap::SlotStore;
use crate::cap::invocation::label as cnode_label;
use crate::cap::object::ObjectKind;
use crate::ipc::{ReceiveSlot, ThreadId, ThreadState};
use crate::platform::RecordingPlatform;
use crate::store::MapStore;
use crate::test_fixture::{R_SELF, R_UNTYPED, ROOT_TCB, Request, issue, root_kernel, root_slot, root_thread};

// Root CNode slots (a root cptr is the slot index).
const R_SCHED_CONTROL: u64 = 2;
const R_ROOT_TCB: u64 = 3;
const R_TCB: u64 = 10; // 10 server, 11 client, 12 notifier
const R_ENDPOINT: u64 = 20;
const R_NOTIFICATION: u64 = 21;
const R_REPLY: u64 = 22;
const R_MINTED: u64 = 25;
const R_CNODE: u64 = 30; // 30, 31, 32 (guarded copies at 40, 41, 42)
const R_GUARDED: u64 = 40;
const R_SCHED_CONTEXT: u64 = 50;

const SERVER: usize = 0;
const CLIENT: usize = 1;
const NOTIFIER: usize = 2;

struct System {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
    threads: [ThreadId; 3],
}

impl System {
    fn root(&self) -> ThreadId {
        ThreadId::new(PhysAddr::new(ROOT_TCB))
    }

    /// One system call; returns the label of the thread's message after it
    /// (the error code for invocations). The arguments mirror the registers.
    #[allow(clippy::too_many_arguments)] // one per register of the system call
    fn syscall(
        &mut self,
        thread: ThreadId,
        number: u64,
        cptr: u64,
        label: u64,
        words: &[u64],
        extra: &[u64],
        reply: u64,
    ) -> u64 {
        let request = Request { number, cptr, label, words, extra, reply };
        issue(&mut self.kernel, &mut self.platform, thread, &request);
        self.kernel.scheduler.schedule(&mut self.kernel.store);
        self.kernel.store.tcb(thread).info.label
    }

    /// A kernel invocation by the root task, which must succeed.
    fn root_call(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) {
        let root = self.root();
        let result = self.syscall(root, number::CALL, cptr, label, words, extra, 0);
        assert_eq!(result, 0, "root invocation {label} on {cptr} failed with {result}");
    }

    fn retype(&mut self, kind: ObjectKind, size_bits: u64, slot: u64, count: u64) {
        self.root_call(R_UNTYPED, cnode_label::UNTYPED_RETYPE, &[kind as u64, size_bits, 0, 0, slot, count], &[R_SELF]);
    }

    /// Copies (or, for reply capabilities, moves) a root capability into
    /// slot `index` of protection domain `pd`'s CNode, with `rights`.
    fn give(&mut self, pd: usize, index: u64, from: u64, rights: Rights) {
        let target = R_GUARDED + pd as u64;
        if matches!(self.kernel.store.slot(root_slot(from)).cap, Cap::Reply { .. }) {
            self.root_call(target, cnode_label::CNODE_MOVE, &[index, 64, from, 64], &[R_SELF]);
        } else {
            self.root_call(
                target,
                cnode_label::CNODE_COPY,
                &[index, 64, from, 64, u64::from(rights.bits())],
                &[R_SELF],
            );
        }
    }

    /// The object a root slot's capability names.
    fn object(&self, index: u64) -> PhysAddr {
        self.kernel.store.slot(root_slot(index)).cap.memory_region().expect("an object").0
    }

    fn state(&self, pd: usize) -> ThreadState {
        self.kernel.store.tcb(self.threads[pd]).state
    }
}

/// The server's CNode.
fn server_cnode(system: &System) -> PhysAddr {
    match system.kernel.store.slot(root_slot(R_GUARDED)).cap {
        Cap::CNode { base, .. } => base,
        other => panic!("{other:?}"),
    }
}

/// Boots the system and has the root task build the three domains.
fn build() -> System {
    let originals = [(R_SCHED_CONTROL, Cap::SchedControl), (R_ROOT_TCB, Cap::Tcb { object: PhysAddr::new(ROOT_TCB) })];
    let kernel = root_kernel(22, 255, &originals);
    let root = root_thread();
    let mut system = System { kernel, platform: RecordingPlatform::new(), threads: [root; 3] };

    system.retype(ObjectKind::Tcb, 0, R_TCB, 3);
    system.retype(ObjectKind::Endpoint, 0, R_ENDPOINT, 1);
    system.retype(ObjectKind::Notification, 0, R_NOTIFICATION, 1);
    system.retype(ObjectKind::Reply, 0, R_REPLY, 1);
    system.retype(ObjectKind::CNode, 4, R_CNODE, 3);
    system.retype(ObjectKind::SchedContext, 8, R_SCHED_CONTEXT, 3);
    for pd in 0..3 {
        system.threads[pd] = match system.kernel.store.slot(root_slot(R_TCB + pd as u64)).cap {
            Cap::Tcb { object } => ThreadId::new(object),
            other => panic!("{other:?}"),
        };
        // A 60-bit guard makes each domain's 16-slot CNode a whole 64-bit CSpace.
        let guard = 60;
        system.root_call(
            R_SELF,
            cnode_label::CNODE_MUTATE,
            &[R_GUARDED + pd as u64, 64, R_CNODE + pd as u64, 64, guard],
            &[R_SELF],
        );
    }
    // Server: the endpoint to receive on (1), its reply object (2), the
    // notification to poll (3). Client: a badged, send-and-grant copy (1)
    // and a second endpoint copy to hand over (2). Notifier: a badged
    // signal-only notification (1).
    system.give(SERVER, 1, R_ENDPOINT, Rights::READ);
    system.give(SERVER, 2, R_REPLY, Rights::ALL);
    system.give(SERVER, 3, R_NOTIFICATION, Rights::READ);
    system.root_call(
        R_SELF,
        cnode_label::CNODE_MINT,
        &[R_MINTED, 64, R_ENDPOINT, 64, u64::from((Rights::WRITE | Rights::GRANT).bits()), 0xc1],
        &[R_SELF],
    );
    system.give(CLIENT, 1, R_MINTED, Rights::ALL);
    system.give(CLIENT, 2, R_ENDPOINT, Rights::WRITE);
    system.give(CLIENT, 4, R_TCB + 1, Rights::ALL);
    system.root_call(
        R_SELF,
        cnode_label::CNODE_MINT,
        &[R_MINTED + 1, 64, R_NOTIFICATION, 64, u64::from(Rights::WRITE.bits()), 0x4],
        &[R_SELF],
    );
    system.give(NOTIFIER, 1, R_MINTED + 1, Rights::ALL);
    for pd in 0..3_u64 {
        let tcb = R_TCB + pd;
        system.root_call(tcb, label::TCB_SET_SPACE, &[], &[R_GUARDED + pd]);
        system.root_call(tcb, label::TCB_SET_PRIORITY, &[100 - pd * 10], &[R_ROOT_TCB]);
        system.root_call(R_SCHED_CONTROL, label::SCHED_CONTROL_CONFIGURE, &[2_000, 10_000], &[R_SCHED_CONTEXT + pd]);
        system.root_call(tcb, label::TCB_BIND_SCHED_CONTEXT, &[], &[R_SCHED_CONTEXT + pd]);
        system.root_call(tcb, label::TCB_RESUME, &[], &[]);
    }
    // The server's receive slot for a granted capability: its slot 5.
    system.kernel.store.tcb_mut(system.threads[SERVER]).receive_slot = Some(ReceiveSlot { cptr: 5, depth: 64 });
    system
}

#[test]
fn three_domains_exchange_calls_long_messages_capabilities_and_signals() {
    let mut system = build();
    let [server, client, notifier] = system.threads;
    assert_eq!(system.state(SERVER), ThreadState::Runnable);

    let endpoint = system.object(R_ENDPOINT);
    // The server waits with its reply object (moved into its CNode's slot 2).
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    let ThreadState::BlockedOnReceive { endpoint: waited_on, reply: Some(reply) } = system.state(SERVER) else {
        panic!("the server is not waiting: {:?}", system.state(SERVER));
    };
    assert_eq!(waited_on, endpoint);

    // A badged Call with a long message (beyond the 4 register words) and a
    // capability (the client's slot 2) granted along.
    let long: Vec<u64> = (0..40).map(|word| word * 7).collect();
    system.syscall(client, number::CALL, 1, 0x42, &long, &[2], 0);
    assert_eq!(system.state(CLIENT), ThreadState::BlockedOnReply { reply });
    let received = system.kernel.store.tcb(server);
    assert_eq!((received.badge, received.info.label, received.info.caps), (0xc1, 0x42, 1));
    assert_eq!(received.message(), &long[..]);
    let granted = SlotRef::in_cnode(server_cnode(&system), 5).expect("a receive slot");
    assert!(matches!(system.kernel.store.slot(granted).cap, Cap::Endpoint { rights, .. } if rights == Rights::WRITE));

    // ReplyRecv: the answer goes back, the server waits again.
    system.syscall(server, number::REPLY_RECV, 1, 0x43, &[99], &[], 2);
    let answered = system.kernel.store.tcb(client);
    assert_eq!((answered.state, answered.info.label, answered.message()), (ThreadState::Runnable, 0x43, &[99][..]));
    assert!(matches!(system.state(SERVER), ThreadState::BlockedOnReceive { .. }));

    // The notifier signals; the server, once it has something to do, polls.
    system.syscall(notifier, number::SIGNAL, 1, 0, &[], &[], 0);
    system.syscall(client, number::SEND, 1, 7, &[], &[], 0);
    assert_eq!(system.state(SERVER), ThreadState::Runnable);
    system.syscall(server, number::POLL, 3, 0, &[], &[], 0);
    assert_eq!(system.kernel.store.tcb(server).badge, 0x4);
}

#[test]
fn bad_input_gets_an_error_and_the_others_keep_working() {
    let mut system = build();
    let [server, client, notifier] = system.threads;
    let error = |error: SyscallError| error.code();
    // A slot it does not hold, an address outside its CSpace, a capability
    // without the right, a nonsense system call, an over-long message.
    assert_eq!(system.syscall(client, number::CALL, 9, 0, &[], &[], 0), error(SyscallError::FailedLookup));
    assert_eq!(system.syscall(client, number::CALL, u64::MAX, 0, &[], &[], 0), error(SyscallError::FailedLookup));
    assert_eq!(system.syscall(client, number::RECV, 1, 0, &[], &[], 0), error(SyscallError::InvalidCapability));
    assert_eq!(system.syscall(client, 999, 1, 0, &[], &[], 0), error(SyscallError::InvalidArgument));
    assert_eq!(system.syscall(notifier, number::WAIT, 1, 0, &[], &[], 0), error(SyscallError::InvalidCapability));
    assert_eq!(
        system.syscall(server, number::RECV, 1, 0, &[], &[], 3),
        error(SyscallError::InvalidCapability),
        "a notification is no reply object"
    );
    // A priority above what its authority allows.
    assert_eq!(
        system.syscall(client, number::CALL, 4, label::TCB_SET_PRIORITY, &[200], &[4], 0),
        error(SyscallError::RangeError)
    );
    // Garbage in every field of every system call: errors, never a panic.
    for number in 0..12 {
        for cptr in [0, 1, 2, 3, 4, 15, 16, 1 << 63, u64::MAX] {
            for label in [0, 1, 3, 16, 32, 35, 48, u64::MAX] {
                system.syscall(notifier, number, cptr, label, &[u64::MAX, 0, 7], &[u64::MAX, 1], cptr);
            }
        }
    }
    // The server and client still talk.
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    system.syscall(client, number::CALL, 1, 0x55, &[1], &[], 0);
    assert_eq!(system.kernel.store.tcb(server).info.label, 0x55);
    system.syscall(server, number::REPLY_RECV, 1, 0x56, &[], &[], 2);
    assert_eq!(system.kernel.store.tcb(client).info.label, 0x56);
}

#[test]
fn revoking_a_minted_endpoint_cuts_off_every_copy() {
    let mut system = build();
    let [server, client, _] = system.threads;
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    system.root_call(R_SELF, cnode_label::CNODE_REVOKE, &[R_MINTED, 64], &[]);
    assert_eq!(system.syscall(client, number::CALL, 1, 0x1, &[], &[], 0), SyscallError::FailedLookup.code());
    assert!(matches!(system.state(SERVER), ThreadState::BlockedOnReceive { .. }), "nothing reached the server");
    // The unbadged copy the client also holds still works.
    system.syscall(client, number::SEND, 2, 0x2, &[], &[], 0);
    assert_eq!(system.kernel.store.tcb(server).info.label, 0x2);
    assert_eq!(system.kernel.store.tcb(server).badge, 0);
}

#[test]
fn suspend_cancels_a_waiting_thread_and_resume_restarts_it() {
    let mut system = build();
    let [server, _, _] = system.threads;
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    system.root_call(R_TCB, label::TCB_SUSPEND, &[], &[]);
    assert_eq!(system.state(SERVER), ThreadState::Inactive);
    let endpoint = system.kernel.store.endpoint(system.object(R_ENDPOINT));
    assert!(endpoint.queue.is_empty(), "the suspended server left the endpoint's queue");
    system.root_call(R_TCB, label::TCB_RESUME, &[], &[]);
    assert_eq!(system.state(SERVER), ThreadState::Runnable);
    // A scheduling context bound twice is refused.
    assert_eq!(
        system.syscall(
            system.root(),
            number::CALL,
            R_TCB + 1,
            label::TCB_BIND_SCHED_CONTEXT,
            &[],
            &[R_SCHED_CONTEXT],
            0
        ),
        SyscallError::IllegalOperation.code()
    );
    // Budgets below the minimum or above the period are refused.
    for (budget, period) in [(10, 10_000), (5_000, 4_000)] {
        assert_eq!(
            system.syscall(
                system.root(),
                number::CALL,
                R_SCHED_CONTROL,
                label::SCHED_CONTROL_CONFIGURE,
                &[budget, period],
                &[R_SCHED_CONTEXT],
                0
            ),
            SyscallError::RangeError.code()
        );
    }
}

#[test]
fn a_fault_handler_set_by_invocation_receives_the_fault() {
    let mut system = build();
    let [server, client, _] = system.threads;
    // The server handles the client's faults through the endpoint (the
    // root's unbadged copy, which has WRITE).
    system.root_call(R_TCB + 1, label::TCB_SET_FAULT_HANDLER, &[], &[R_ENDPOINT]);
    assert_eq!(
        system.syscall(system.root(), number::CALL, R_TCB + 1, label::TCB_SET_FAULT_HANDLER, &[], &[R_NOTIFICATION], 0),
        SyscallError::InvalidCapability.code(),
        "a notification is no fault handler"
    );
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    let fault = ipc::Fault::Page { address: 0x1000, instruction: 0x40_0010, error_code: 4 };
    let outcome = ipc::handle_fault(&mut system.kernel.store, &mut system.kernel.scheduler, client, fault);
    assert_eq!(outcome, ipc::FaultOutcome::Sent);
    assert_eq!(system.kernel.store.tcb(server).info.label, ipc::fault_label::PAGE_FAULT);
    assert_eq!(system.kernel.store.tcb(server).message(), [0x1000, 0x40_0010, 4]);
    // Its reply resumes the client.
    system.syscall(server, number::REPLY_RECV, 1, 0, &[], &[], 2);
    assert_eq!(system.state(CLIENT), ThreadState::Runnable);
    // Revoking the endpoint removes the handler: the next fault stops the thread.
    system.root_call(R_SELF, cnode_label::CNODE_REVOKE, &[R_ENDPOINT, 64], &[]);
    let outcome = ipc::handle_fault(&mut system.kernel.store, &mut system.kernel.scheduler, client, fault);
    assert_eq!(outcome, ipc::FaultOutcome::Stopped);
    assert_eq!(system.state(CLIENT), ThreadState::Inactive);
}

#[test]
fn deleting_the_last_endpoint_capability_wakes_its_waiters_with_an_error() {
    let mut system = build();
    let [server, client, _] = system.threads;
    let endpoint = system.object(R_ENDPOINT);
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    let ThreadState::BlockedOnReceive { reply: Some(reply), .. } = system.state(SERVER) else { panic!() };
    // Every copy goes (revoke), then the original: the last capability.
    system.root_call(R_SELF, cnode_label::CNODE_REVOKE, &[R_ENDPOINT, 64], &[]);
    assert!(matches!(system.state(SERVER), ThreadState::BlockedOnReceive { .. }), "copies are not the last cap");
    system.root_call(R_SELF, cnode_label::CNODE_DELETE, &[R_ENDPOINT, 64], &[]);
    assert_eq!(system.state(SERVER), ThreadState::Runnable);
    assert_eq!(system.kernel.store.tcb(server).info.label, SyscallError::InvalidCapability.code());
    assert!(system.kernel.store.endpoint(endpoint).queue.is_empty());
    // The reply object the server named is free again for a new receive.
    assert!(system.kernel.store.reply(reply).is_free());
    assert_eq!(system.syscall(client, number::CALL, 1, 0, &[], &[], 0), SyscallError::FailedLookup.code());
}

#[test]
fn deleting_a_reply_object_wakes_the_caller_and_deleting_a_thread_unqueues_it() {
    let mut system = build();
    let [server, client, _] = system.threads;
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    system.syscall(client, number::CALL, 1, 0x42, &[], &[], 0);
    assert!(matches!(system.state(CLIENT), ThreadState::BlockedOnReply { .. }));
    // The server drops its reply capability (the only one: it was moved).
    assert_eq!(system.syscall(server, number::CALL, 0, 0, &[], &[], 0), SyscallError::FailedLookup.code());
    let server_cnode = R_GUARDED;
    system.root_call(server_cnode, cnode_label::CNODE_DELETE, &[2, 64], &[]);
    assert_eq!(system.state(CLIENT), ThreadState::Runnable);
    assert_eq!(system.kernel.store.tcb(client).info.label, SyscallError::InvalidCapability.code());

    // The client calls again and blocks in the endpoint's queue (the server
    // is not receiving); the root deletes the client's TCB (the client holds
    // a copy in its own CNode: that goes first, then the root's last one).
    system.syscall(client, number::CALL, 1, 0x43, &[], &[], 0);
    assert!(matches!(system.state(CLIENT), ThreadState::BlockedOnSend { .. }));
    system.root_call(R_GUARDED + 1, cnode_label::CNODE_DELETE, &[4, 64], &[]);
    system.root_call(R_SELF, cnode_label::CNODE_DELETE, &[R_TCB + 1, 64], &[]);
    assert_eq!(system.state(CLIENT), ThreadState::Inactive);
    assert!(system.kernel.store.endpoint(system.object(R_ENDPOINT)).queue.is_empty());
    // Its CSpace-root slot was emptied with it, and its scheduling context
    // is free to bind to another thread.
    let client_cspace = cspace_slot(client).expect("slot");
    assert!(system.kernel.store.slot(client_cspace).cap.is_null());
    let context = system.object(R_SCHED_CONTEXT + 1);
    assert_eq!(system.kernel.store.sched_context(context).bound, None);
}

#[test]
fn deleting_a_scheduling_context_suspends_its_thread() {
    let mut system = build();
    let [_, client, _] = system.threads;
    assert_eq!(system.state(CLIENT), ThreadState::Runnable);
    system.root_call(R_SELF, cnode_label::CNODE_DELETE, &[R_SCHED_CONTEXT + 1, 64], &[]);
    assert_eq!(system.state(CLIENT), ThreadState::Inactive);
    assert_eq!(system.kernel.store.tcb(client).sched_context, None);
}

/// Revoking the untyped everything came from, with threads blocked in
/// every way, leaves no kernel state naming a dead object: the scheduler
/// holds only the root, and the memory can be retyped again at once.
#[test]
fn revoking_the_whole_system_leaves_nothing_behind() {
    let mut system = build();
    let [server, client, notifier] = system.threads;
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    system.syscall(client, number::CALL, 1, 0x42, &[], &[], 0);
    system.syscall(notifier, number::WAIT, 1, 0, &[], &[], 0);
    system.root_call(R_SELF, cnode_label::CNODE_REVOKE, &[R_UNTYPED, 64], &[]);
    let root = system.root();
    for priority in 0..=255 {
        let queue = system.kernel.scheduler.queue(priority);
        assert!(queue.head.is_none() || (queue.head == Some(root) && queue.tail == Some(root)), "{priority}");
    }
    for thread in [server, client, notifier] {
        assert_eq!(system.kernel.store.tcb(thread).state, ThreadState::Inactive);
    }
    system.retype(ObjectKind::Tcb, 0, R_TCB, 3);
    assert_eq!(system.object(R_TCB), server.address(), "the same memory, from the start");
}

#[test]
fn write_registers_sets_an_inactive_thread_and_keeps_flags_safe() {
    let mut system = build();
    let [server, _, _] = system.threads;
    let root = system.root();
    let write = |system: &mut System, words: &[u64]| {
        system.syscall(root, number::CALL, R_TCB, label::TCB_WRITE_REGISTERS, words, &[], 0)
    };
    // A running thread's registers are its own.
    assert_eq!(write(&mut system, &[0x40_0000, 0x80_0000, 0, 1, 2, 3]), SyscallError::IllegalOperation.code());
    system.root_call(R_TCB, label::TCB_SUSPEND, &[], &[]);
    assert_eq!(write(&mut system, &[0x40_0000, 0x80_0000, 0, 1, 2]), SyscallError::TruncatedMessage.code());
    assert_eq!(write(&mut system, &[1 << 47, 0x80_0000, 0, 1, 2, 3]), SyscallError::InvalidArgument.code());
    assert_eq!(write(&mut system, &[0x40_0000, u64::MAX, 0, 1, 2, 3]), SyscallError::InvalidArgument.code());
    // IOPL 3, TF, NT, AC and ID asked for; only the arithmetic flags come through.
    assert_eq!(write(&mut system, &[0x40_0000, 0x80_0000, 0x27_7fff, 1, 2, 3]), 0);
    let registers = system.kernel.store.tcb(server).registers;
    assert_eq!(
        (registers.rip, registers.rsp, registers.rdi, registers.rsi, registers.rdx),
        (0x40_0000, 0x80_0000, 1, 2, 3)
    );
    assert_eq!(registers.rflags, USER_RFLAGS | RFLAGS_FIXED);
    assert_eq!(registers.rflags & (0x3000 | 0x100 | 0x4000 | 0x4_0000 | 0x20_0000), 0);
}

#[test]
fn set_ipc_buffer_and_set_space_take_only_the_right_objects() {
    let mut system = build();
    let root = system.root();
    system.retype(ObjectKind::Frame4K, 0, 60, 1);
    system.retype(ObjectKind::PageTable, 0, 61, 1);
    system.retype(ObjectKind::Pml4, 0, 62, 1);
    let call = |system: &mut System, label: u64, extra: &[u64]| {
        system.syscall(root, number::CALL, R_TCB, label, &[], extra, 0)
    };
    assert_eq!(call(&mut system, label::TCB_SET_IPC_BUFFER, &[61]), SyscallError::InvalidCapability.code());
    assert_eq!(call(&mut system, label::TCB_SET_IPC_BUFFER, &[R_ENDPOINT]), SyscallError::InvalidCapability.code());
    assert_eq!(call(&mut system, label::TCB_SET_IPC_BUFFER, &[]), SyscallError::TruncatedMessage.code());
    let read_only = u64::from(Rights::READ.bits());
    system.root_call(R_SELF, cnode_label::CNODE_COPY, &[63, 64, 60, 64, read_only], &[R_SELF]);
    assert_eq!(call(&mut system, label::TCB_SET_IPC_BUFFER, &[63]), SyscallError::InvalidCapability.code());
    assert_eq!(call(&mut system, label::TCB_SET_IPC_BUFFER, &[60]), 0);
    let server = system.threads[SERVER];
    let buffer = ipc_buffer_slot(server).expect("slot");
    assert!(matches!(system.kernel.store.slot(buffer).cap, Cap::Frame { size: FrameSize::Small, .. }));
    // SetSpace's VSpace must be a PML4 with an ASID; the CSpace stays
    // untouched when the VSpace is refused.
    assert_eq!(
        call(&mut system, label::TCB_SET_SPACE, &[R_GUARDED, 62]),
        SyscallError::InvalidCapability.code(),
        "a PML4 without an ASID"
    );
    assert_eq!(call(&mut system, label::TCB_SET_SPACE, &[R_GUARDED, 60]), SyscallError::InvalidCapability.code());
    assert!(system.kernel.store.slot(vspace_slot(server).expect("slot")).cap.is_null());
}

/// A blocked sender's capability is looked up when the message is
/// delivered: if the sender's CSpace went away meanwhile (its memory could
/// have been retyped), nothing is transferred.
#[test]
fn a_blocked_senders_capability_is_looked_up_at_delivery() {
    let mut system = build();
    let [server, client, _] = system.threads;
    // The client sends (blocking: nobody receives yet) granting its slot 2.
    system.syscall(client, number::SEND, 1, 0x21, &[5], &[2], 0);
    assert!(matches!(system.state(CLIENT), ThreadState::BlockedOnSend { .. }));
    // Its whole CSpace goes: the copy in its TCB, then the last capability.
    system.root_call(R_SELF, cnode_label::CNODE_REVOKE, &[R_GUARDED + 1, 64], &[]);
    system.root_call(R_SELF, cnode_label::CNODE_DELETE, &[R_GUARDED + 1, 64], &[]);
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    let received = system.kernel.store.tcb(server);
    assert_eq!((received.info.label, received.info.caps, received.message()), (0x21, 0, &[5][..]));
    assert!(system.kernel.store.slot(SlotRef::in_cnode(server_cnode(&system), 5).expect("slot")).cap.is_null());
}

/// Every refusal of the TCB and SchedControl invocations, each with the
/// code `docs/abi.md` gives it; nothing changes when one is refused.
#[test]
fn every_tcb_and_sched_control_error() {
    let mut system = build();
    let root = system.root();
    let call = |system: &mut System, cptr: u64, label: u64, words: &[u64], extra: &[u64]| {
        system.syscall(root, number::CALL, cptr, label, words, extra, 0)
    };
    let code = SyscallError::code;
    let tcb = R_TCB + 1;
    // SetSpace: a missing capability, a non-CNode, replacing the last
    // capability to a CNode (its contents would go: a long operation).
    assert_eq!(call(&mut system, tcb, label::TCB_SET_SPACE, &[], &[]), code(SyscallError::TruncatedMessage));
    assert_eq!(call(&mut system, tcb, label::TCB_SET_SPACE, &[], &[R_ENDPOINT]), code(SyscallError::InvalidCapability));
    assert_eq!(call(&mut system, tcb, label::TCB_SET_SPACE, &[], &[99]), code(SyscallError::InvalidCapability));
    // The root lets go of the client's CNode: the copy in the client's TCB
    // is the last capability to it.
    system.root_call(R_SELF, cnode_label::CNODE_DELETE, &[R_GUARDED + 1, 64], &[]);
    let capabilities =
        |system: &System| system.kernel.store.occupied().map(|(at, slot)| (at, *slot)).collect::<Vec<_>>();
    let before = capabilities(&system);
    assert_eq!(call(&mut system, tcb, label::TCB_SET_SPACE, &[], &[R_GUARDED]), code(SyscallError::RevokeFirst));
    assert_eq!(capabilities(&system), before, "a refused SetSpace changes no capability");
    // SetPriority and SetMaxPriority: no word, no authority, a non-TCB
    // authority, above 255, above the authority's ceiling.
    for label in [label::TCB_SET_PRIORITY, label::TCB_SET_MAX_PRIORITY] {
        assert_eq!(call(&mut system, tcb, label, &[], &[R_ROOT_TCB]), code(SyscallError::TruncatedMessage));
        assert_eq!(call(&mut system, tcb, label, &[5], &[]), code(SyscallError::TruncatedMessage));
        assert_eq!(call(&mut system, tcb, label, &[5], &[R_ENDPOINT]), code(SyscallError::InvalidCapability));
        assert_eq!(call(&mut system, tcb, label, &[256], &[R_ROOT_TCB]), code(SyscallError::RangeError));
        assert_eq!(call(&mut system, tcb, label, &[200], &[R_TCB + 2]), code(SyscallError::RangeError));
    }
    // BindSchedContext: no capability, not a scheduling context, one that
    // is bound already.
    assert_eq!(call(&mut system, tcb, label::TCB_BIND_SCHED_CONTEXT, &[], &[]), code(SyscallError::TruncatedMessage));
    assert_eq!(
        call(&mut system, tcb, label::TCB_BIND_SCHED_CONTEXT, &[], &[R_NOTIFICATION]),
        code(SyscallError::InvalidCapability)
    );
    assert_eq!(
        call(&mut system, tcb, label::TCB_BIND_SCHED_CONTEXT, &[], &[R_SCHED_CONTEXT + 1]),
        code(SyscallError::IllegalOperation)
    );
    // SetPassive: no word, a word other than 0 or 1 (the flag stays as
    // it was); 1 and 0 set and clear it.
    let passive = |system: &System| system.kernel.store.tcb(system.threads[CLIENT]).passive;
    assert_eq!(call(&mut system, tcb, label::TCB_SET_PASSIVE, &[], &[]), code(SyscallError::TruncatedMessage));
    assert_eq!(call(&mut system, tcb, label::TCB_SET_PASSIVE, &[2], &[]), code(SyscallError::RangeError));
    assert!(!passive(&system));
    assert_eq!(call(&mut system, tcb, label::TCB_SET_PASSIVE, &[1], &[]), 0);
    assert!(passive(&system));
    assert_eq!(call(&mut system, tcb, label::TCB_SET_PASSIVE, &[u64::MAX], &[]), code(SyscallError::RangeError));
    assert!(passive(&system));
    assert_eq!(call(&mut system, tcb, label::TCB_SET_PASSIVE, &[0], &[]), 0);
    assert!(!passive(&system));
    // SetFaultHandler: an endpoint without WRITE.
    system.root_call(
        R_SELF,
        cnode_label::CNODE_COPY,
        &[60, 64, R_ENDPOINT, 64, u64::from(Rights::READ.bits())],
        &[R_SELF],
    );
    assert_eq!(call(&mut system, tcb, label::TCB_SET_FAULT_HANDLER, &[], &[60]), code(SyscallError::InvalidCapability));
    // A label no TCB understands; SchedControl with a TCB label, with too
    // few words, with a non-scheduling-context capability.
    assert_eq!(call(&mut system, tcb, 999, &[], &[]), code(SyscallError::IllegalOperation));
    assert_eq!(call(&mut system, R_SCHED_CONTROL, label::TCB_RESUME, &[], &[]), code(SyscallError::IllegalOperation));
    assert_eq!(
        call(&mut system, R_SCHED_CONTROL, label::SCHED_CONTROL_CONFIGURE, &[1_000], &[R_SCHED_CONTEXT]),
        code(SyscallError::TruncatedMessage)
    );
    assert_eq!(
        call(&mut system, R_SCHED_CONTROL, label::SCHED_CONTROL_CONFIGURE, &[1_000, 2_000], &[R_TCB]),
        code(SyscallError::InvalidCapability)
    );
}

/// A thread stopped while blocked in a call makes the call again when it is
/// resumed; one given new registers starts from them; one woken by a
/// deleted object gets the error as its call's result.
#[test]
fn a_cancelled_call_is_restarted_and_written_registers_start_fresh() {
    let mut system = build();
    let [server, _, notifier] = system.threads;
    system.syscall(server, number::RECV, 1, 0, &[], &[], 2);
    system.root_call(R_TCB, label::TCB_SUSPEND, &[], &[]);
    assert_eq!(system.kernel.store.tcb(server).resumption, ipc::Resumption::Restart);
    system.root_call(R_TCB, label::TCB_WRITE_REGISTERS, &[0x40_0000, 0x80_0000, 0, 1, 2, 3], &[]);
    assert_eq!(system.kernel.store.tcb(server).resumption, ipc::Resumption::Fresh);
    // A runnable thread that is suspended was in no call: nothing changes.
    system.root_call(R_TCB + 2, label::TCB_SUSPEND, &[], &[]);
    assert_eq!(system.kernel.store.tcb(notifier).resumption, ipc::Resumption::Results);
    // Waiting on a notification whose last capability goes ends the call
    // with an error: a result, not a restart.
    let mut system = build();
    let [server, _, _] = system.threads;
    system.syscall(server, number::WAIT, 3, 0, &[], &[], 0);
    assert!(matches!(system.state(SERVER), ThreadState::BlockedOnNotification { .. }));
    system.root_call(R_SELF, cnode_label::CNODE_REVOKE, &[R_NOTIFICATION, 64], &[]);
    system.root_call(R_SELF, cnode_label::CNODE_DELETE, &[R_NOTIFICATION, 64], &[]);
    assert_eq!(system.state(SERVER), ThreadState::Runnable);
    assert_eq!(system.kernel.store.tcb(server).resumption, ipc::Resumption::Results);
    assert_eq!(system.kernel.store.tcb(server).info.label, SyscallError::InvalidCapability.code());
}

/// Deleting the last capability to a TCB stops its thread before the first
/// of its slots is emptied: preempted half-way, the delete leaves no
/// runnable thread without its CSpace.
#[test]
fn a_thread_stops_before_its_tcb_slots_are_emptied() {
    let mut system = build();
    let [_, client, _] = system.threads;
    // The client's own copy of its TCB goes first; the root's is the last.
    system.root_call(R_GUARDED + 1, cnode_label::CNODE_DELETE, &[4, 64], &[]);
    assert_eq!(system.state(CLIENT), ThreadState::Runnable);
    let Kernel { store, scheduler, asids, io_ports, irqs, .. } = &mut system.kernel;
    let mut finaliser = Finaliser { scheduler, asids, io_ports, irqs, platform: &mut system.platform };
    let mut budget = WorkBudget(1);
    let result = derivation::delete(store, root_slot(R_TCB + 1), &mut budget, &mut finaliser);
    assert_eq!(result, Err(Preempted), "one unit: one slot emptied, the TCB itself not yet");
    assert_eq!(system.kernel.store.tcb(client).state, ThreadState::Inactive);
    assert!(system.kernel.store.slot(cspace_slot(client).expect("slot")).cap.is_null());
    assert!(!system.kernel.store.slot(root_slot(R_TCB + 1)).cap.is_null());
    assert!(system.platform.saw(&crate::platform::PlatformEvent::ThreadDeleted { thread: client }));
}
