//! Every invariant can fail: a sound state passes them all, and for each
//! invariant one corruption of that state makes it fail.

use bulkhead_harness::driver::TcbCall::{
    BindNotification, BindSchedContext, Resume, SetIpcBuffer, SetPassive, SetPriority, SetSpace,
};
use bulkhead_harness::driver::{
    BOOT, FRAME_SLOTS, GUEST_SPACE_SLOT, Op, SPARE_PML4_SLOT, SPARE_TABLE_SLOT, TABLE_SLOTS, Type, VCPU_SLOT, VCpuCall,
    VSPACE_SLOT, types, vspace_objects,
};
use bulkhead_harness::invariants::{self, AFTER_SCHEDULE, ALL};
use bulkhead_harness::spec::{
    Cap, Entry, Error, Kind, Loan, Object, ObjectId, Pte, SLOT_BYTES, State, ThreadState, label,
};

const ENDPOINT: u64 = 4;
const CNODE: u64 = 1;
const UNTYPED: u64 = 0;

/// Root CNode slot `index`'s address.
fn slot(index: u64) -> u64 {
    BOOT.root_cnode + index * SLOT_BYTES
}

/// The result of a Call by the running thread invoking `cptr` with the
/// root CNode as extra capability.
fn invoke(state: &mut State, cptr: u64, label: u64, words: &[u64]) -> u64 {
    let op = Op::Raw { cptr, label, words: 0, extra: 1 };
    let mut call = op.call().expect("a system call");
    call.words = words.to_vec();
    call.length = u8::try_from(words.len()).expect("a short message");
    let running = state.sched.current.expect("a running thread");
    state.syscall(running, &call)
}

fn call(state: &mut State, cptr: u64, label: u64, words: &[u64]) {
    assert_eq!(invoke(state, cptr, label, words), 0, "{label} {words:?}");
}

/// `op` by the running thread (or a tick).
fn step(state: &mut State, op: Op) {
    match op.call() {
        Some(call) => {
            let running = state.sched.current.expect("a running thread");
            assert_eq!(state.syscall(running, &call), 0, "{op:?}");
        }
        None => {
            let Op::Tick { ticks, slice_ended } = op else { unreachable!() };
            state.tick(ticks, slice_ended);
        }
    }
}

/// Endpoints in root slots 3 and 4, a Mint of slot 3 with badge 5 and WRITE
/// in slot 5, a copy of that in slot 8, a CNode in slot 6, an untyped in
/// slot 7; only the root thread.
fn capabilities() -> State {
    let mut state = BOOT.state();
    call(&mut state, 1, label::UNTYPED_RETYPE, &[ENDPOINT, 0, 0, 0, 3, 2]);
    call(&mut state, 0, label::CNODE_MINT, &[5, 64, 3, 64, 0b10, 5]);
    call(&mut state, 0, label::CNODE_COPY, &[8, 64, 5, 64, 0xf]);
    call(&mut state, 1, label::UNTYPED_RETYPE, &[CNODE, 2, 0, 0, 6, 1]);
    call(&mut state, 1, label::UNTYPED_RETYPE, &[UNTYPED, 8, 0, 0, 7, 1]);
    state
}

/// Threads (TCB slot, priority).
const THREADS: [(u64, u64); 6] = [(12, 200), (13, 100), (14, 50), (15, 50), (16, 50), (17, 60)];

/// [`capabilities`], then the random setups' VSpace objects
/// ([`vspace_objects`]: a VSpace with a frame mapped), reply objects
/// (slots 9 and 11), a notification (slot 10), a scheduling context
/// (slot 18) and six more threads ([`THREADS`]; slot 15's runs in the
/// VSpace with the mapped frame as its IPC buffer): the root receives on
/// endpoint 3 with the reply object of slot 9, the thread of slot 12
/// receives there too, the one of slot 13 waits on the notification, the
/// one of slot 14 (on the scheduling context) called slot 17's, a passive
/// server with no context of its own, which borrowed slot 14's context
/// and ran out of its budget (the release queue), slot 15's runs and slot
/// 16's is ready.
fn sound() -> State {
    let mut state = capabilities();
    for op in vspace_objects() {
        step(&mut state, op);
    }
    let retype = |kind: Type, size_bits: u64, offset: u64| Op::retype_root(kind, size_bits, offset, 1);
    step(&mut state, retype(types::REPLY, 0, 9));
    step(&mut state, retype(types::REPLY, 0, 11));
    step(&mut state, retype(types::NOTIFICATION, 0, 10));
    step(&mut state, retype(types::SCHED_CONTEXT, 8, 18));
    step(&mut state, Op::Configure { sched_context: 18, budget: 100, period: 1_000 });
    for (slot, priority) in THREADS {
        step(&mut state, retype(types::TCB, 0, slot));
        step(&mut state, Op::Tcb { tcb: slot, call: SetSpace { cnode: 0, vspace: None } });
        step(&mut state, Op::Tcb { tcb: slot, call: SetPriority { priority, authority: 2 } });
        if slot == 14 {
            step(&mut state, Op::Tcb { tcb: slot, call: BindSchedContext { sched_context: 18 } });
        }
        if slot == 15 {
            step(&mut state, Op::Tcb { tcb: slot, call: SetSpace { cnode: 0, vspace: Some(VSPACE_SLOT) } });
            step(&mut state, Op::Tcb { tcb: slot, call: SetIpcBuffer { frame: FRAME_SLOTS.start } });
        }
        if slot == 17 {
            step(&mut state, Op::Tcb { tcb: slot, call: SetPassive { passive: 1 } });
        }
        step(&mut state, Op::Tcb { tcb: slot, call: Resume });
    }
    // The root, then slot 12's thread, receive; slot 13's waits; slot
    // 17's receives on endpoint 4; slot 14's calls it there, and it runs
    // on slot 14's context until its budget is gone; slot 15's runs.
    step(&mut state, Op::Recv { cptr: 3, reply: 9, slot: None, blocking: true });
    step(&mut state, Op::Recv { cptr: 3, reply: 0, slot: None, blocking: true });
    step(&mut state, Op::Wait { cptr: 10, blocking: true });
    step(&mut state, Op::Recv { cptr: 4, reply: 11, slot: None, blocking: true });
    step(&mut state, Op::IpcCall { cptr: 4, label: 0, words: 0, grant: None });
    step(&mut state, Op::Tick { ticks: 150, slice_ended: false });
    // The VSpace objects' VCpu runs on slot 13's thread, which has the
    // notification bound too; a field written.
    step(&mut state, Op::VCpu { vcpu: VCPU_SLOT, call: VCpuCall::SetTcb { tcb: 13 } });
    step(&mut state, Op::Tcb { tcb: 13, call: BindNotification { notification: 10 } });
    step(&mut state, Op::VCpu { vcpu: VCPU_SLOT, call: VCpuCall::WriteState { field: 0, value: 0x7c00 } });
    state
}

/// A thread's TCB address.
fn tcb(state: &State, slot: u64) -> u64 {
    state.cap(self::slot(slot)).expect("a TCB").object().base
}

/// The address of the object the capability in root slot `index` names.
fn base(state: &State, index: u64) -> u64 {
    state.cap(slot(index)).expect("a capability").object().base
}

/// The entries of the paging structure in root slot `index`.
fn table(state: &mut State, index: u64) -> &mut std::collections::BTreeMap<u16, Pte> {
    let at = base(state, index);
    &mut state.tables.get_mut(&at).expect("a live structure").entries
}

fn entry(state: &mut State, index: u64) -> &mut Entry {
    state.slots.get_mut(&slot(index)).expect("an occupied slot")
}

/// A way to break a sound state, given its first endpoint.
type Corruption = fn(&mut State, ObjectId);

/// The invariants `state` breaks.
fn broken(state: &State) -> Vec<&'static str> {
    invariants::check_all(state, &BOOT).into_iter().map(|broken| broken.invariant).collect()
}

#[test]
fn the_sound_state_keeps_every_invariant() {
    let state = sound();
    assert_eq!(broken(&state), Vec::<&str>::new());
    // The boot state's 6 and `capabilities`' 6, the two boot capabilities
    // the VSpace objects come from and their 16, the two reply objects,
    // notification and scheduling context, each thread's TCB and CSpace
    // root, slot 15's thread's VSpace and IPC buffer, and the VCpu and the
    // copy of the GuestSpace in its slot.
    assert_eq!(state.slots.len(), 12 + 2 + 16 + 4 + 6 * 2 + 2 + 2, "{:#?}", state.slots);
    let vcpu = base(&state, VCPU_SLOT);
    assert_eq!(state.vcpus[&vcpu].tcb, Some(tcb(&state, 13)));
    assert_eq!(state.vcpus[&vcpu].fields[0], 0x7c00);
    assert_eq!(state.cap(State::vcpu_space_slot(vcpu)), state.cap(slot(GUEST_SPACE_SLOT)));
    assert!(state.notifications.values().any(|notification| notification.bound_tcb == Some(tcb(&state, 13))));
    let reachable = state.reachable_tables();
    assert_eq!(
        reachable.len(),
        4 + 3,
        "the VSpace's PML4, PDPT, page directory and page table; the GuestSpace, its PDPT and page directory: \
         {reachable:x?}"
    );
    let page_table = reachable.iter().find(|(_, _, kind, _)| *kind == Kind::PageTable).expect("a page table");
    assert!(matches!(state.entry(page_table.1, 1), Some(Pte::Page { write: true, .. })), "the frame at 0x1000");
    // It is the state the documentation says.
    let root = BOOT.root_tcb;
    assert_eq!(state.endpoints.values().find(|queue| !queue.is_empty()), Some(&vec![root, tcb(&state, 12)]));
    assert_eq!(state.notifications.values().next().map(|state| state.waiters.clone()), Some(vec![tcb(&state, 13)]));
    assert_eq!(state.sched.release, vec![tcb(&state, 17)]);
    let (caller, server, context) = (tcb(&state, 14), tcb(&state, 17), base(&state, 18));
    let reply = base(&state, 11);
    assert_eq!(state.threads[&server].loan, Some(Loan { reply, context }), "slot 17's borrows slot 14's context");
    assert_eq!(state.threads[&server].sched_context, None);
    assert_eq!(state.sched_contexts[&context].lent_to, Some(server));
    assert_eq!(state.threads[&caller].state, ThreadState::BlockedOnReply { reply });
    assert_eq!(state.sched_contexts[&context].remaining, 0);
    assert_eq!(state.sched.current, Some(tcb(&state, 15)));
    assert_eq!(state.sched.ready.get(&50), Some(&vec![tcb(&state, 16)]));
    // Thread 13, waiting on its notification, may sleep until a deadline
    // too (VMEnter's `WAIT`): in the sleep queue with its wake-up time.
    let mut asleep = state.clone();
    let waiter = tcb(&asleep, 13);
    asleep.threads.get_mut(&waiter).expect("a thread").wake_at = Some(500);
    asleep.sched.sleeping.push(waiter);
    assert_eq!(broken(&asleep), Vec::<&str>::new());
}

#[test]
fn every_invariant_catches_its_corruption() {
    let endpoint = sound().cap(slot(3)).expect("an endpoint").object();
    let corruptions: [(&str, Corruption); 41] = [
        ("caps_name_live_objects", |state, endpoint| {
            state.objects.remove(&endpoint);
        }),
        ("slots_inside_live_containers", |state, _| {
            let stray = Entry { cap: state.cap(slot(4)).expect("a cap"), parent: None, original: false };
            state.slots.insert(BOOT.untyped_base + 0x3800, stray);
        }),
        ("objects_aligned", |state, _| {
            let misaligned = ObjectId { base: BOOT.untyped_base + 0x2008, kind: Kind::Endpoint, size_bits: 6 };
            state.objects.insert(misaligned, Object { untyped: Some(slot(1)) });
        }),
        ("objects_distinct", |state, endpoint| {
            let clash = ObjectId { kind: Kind::Notification, ..endpoint };
            state.objects.insert(clash, Object { untyped: Some(slot(1)) });
        }),
        ("caps_to_one_object_agree", |state, endpoint| {
            entry(state, 4).cap = Cap::CNode { base: endpoint.base, radix: 1, guard: 0, guard_bits: 0 };
        }),
        ("untyped_caps_original", |state, _| {
            entry(state, 7).original = false;
        }),
        ("untyped_children_inside_and_below_watermark", |state, _| {
            let Cap::Untyped { base, size_bits, .. } = entry(state, 1).cap else { panic!("the untyped") };
            entry(state, 1).cap = Cap::Untyped { base, size_bits, watermark: 0x40 };
        }),
        ("objects_in_untyped_are_descendants", |state, _| {
            entry(state, 4).parent = None;
        }),
        ("derivation_tree_acyclic", |state, _| {
            entry(state, 3).parent = Some(slot(8));
        }),
        ("child_rights_within_parent", |state, endpoint| {
            entry(state, 8).cap = Cap::Endpoint { base: endpoint.base, badge: 5, rights: 0xf };
        }),
        ("badges_set_once", |state, endpoint| {
            entry(state, 8).cap = Cap::Endpoint { base: endpoint.base, badge: 6, rights: 0b10 };
        }),
        ("live_objects_have_caps", |state, _| {
            let orphan = ObjectId { base: BOOT.untyped_base + 0x3800, kind: Kind::Endpoint, size_bits: 6 };
            state.objects.insert(orphan, Object { untyped: None });
        }),
        ("no_cap_to_kernel_memory", |state, _| {
            let kernel = ObjectId { base: 0x2000, kind: Kind::Endpoint, size_bits: 6 };
            state.objects.insert(kernel, Object { untyped: None });
            entry(state, 4).cap = Cap::Endpoint { base: kernel.base, badge: 0, rights: 0xf };
            entry(state, 4).parent = None;
        }),
        ("thread_states_name_live_objects", |state, _| {
            let waiter = tcb(state, 13);
            state.threads.get_mut(&waiter).expect("a thread").state =
                ThreadState::BlockedOnNotification { notification: BOOT.untyped_base + 0x3fc0 };
        }),
        ("queues_hold_live_threads_once", |state, _| {
            let ready = tcb(state, 16);
            state.sched.release.push(ready);
        }),
        ("ipc_queues_match_thread_states", |state, endpoint| {
            state.endpoints.get_mut(&endpoint.base).expect("the endpoint").pop();
        }),
        ("endpoint_queues_one_direction", |state, endpoint| {
            let receiver = tcb(state, 12);
            state.threads.get_mut(&receiver).expect("a thread").state =
                ThreadState::BlockedOnSend { endpoint: endpoint.base, badge: 0, can_grant: false, is_call: false };
        }),
        ("notification_waiters_mean_nothing_pending", |state, _| {
            state.notifications.values_mut().for_each(|notification| notification.pending = Some(1));
        }),
        ("reply_bindings_symmetric", |state, _| {
            state.replies.values_mut().for_each(|reply| reply.receiver = None);
        }),
        ("sched_context_bindings_symmetric", |state, _| {
            state.sched_contexts.values_mut().for_each(|context| context.bound = None);
        }),
        ("loans_symmetric", |state, _| {
            // The caller's loan given back on one side only.
            let server = tcb(state, 17);
            state.threads.get_mut(&server).expect("a thread").loan = None;
        }),
        ("ready_queues_hold_runnable_threads_of_their_priority", |state, _| {
            let ready = tcb(state, 16);
            state.threads.get_mut(&ready).expect("a thread").priority = 40;
        }),
        ("release_queue_throttled_in_refill_order", |state, _| {
            state.sched_contexts.values_mut().for_each(|context| context.remaining = 50);
        }),
        ("sleep_queue_holds_halted_threads_in_wake_order", |state, _| {
            // Thread 13 waits on its notification with a wake-up time, but
            // nothing would wake it: it is not in the sleep queue.
            let waiter = tcb(state, 13);
            state.threads.get_mut(&waiter).expect("a thread").wake_at = Some(500);
        }),
        ("running_thread_runnable_and_unqueued", |state, _| {
            let running = tcb(state, 15);
            state.sched.ready.get_mut(&50).expect("a ready queue").push(running);
        }),
        ("runnable_threads_scheduled", |state, _| {
            state.sched.ready.clear();
        }),
        ("irq_lines_consistent", |state, _| {
            state.irqs[5].notification = state.notifications.keys().next().map(|notification| (*notification, 1));
        }),
        ("no_mapping_above_user_top", |state, _| {
            let pdpt = base(state, TABLE_SLOTS.start);
            table(state, VSPACE_SLOT).insert(300, Pte::Table(pdpt));
        }),
        ("vspace_entries_well_typed", |state, _| {
            let frame = base(state, FRAME_SLOTS.start);
            table(state, TABLE_SLOTS.start).insert(0, Pte::Table(frame));
        }),
        ("vspace_structures_linked_once", |state, _| {
            let directory = base(state, TABLE_SLOTS.start + 1);
            table(state, TABLE_SLOTS.start).insert(1, Pte::Table(directory));
        }),
        ("entries_recorded_by_caps", |state, _| {
            let Cap::Frame { base, size_bits, rights, .. } = entry(state, FRAME_SLOTS.start).cap else { panic!() };
            entry(state, FRAME_SLOTS.start).cap = Cap::Frame { base, size_bits, rights, mapping: None };
        }),
        ("pages_within_cap_rights", |state, _| {
            // The thread's IPC-buffer copy (read-write) stays; the
            // capability that maps the frame loses WRITE.
            let Cap::Frame { base, size_bits, mapping, .. } = entry(state, FRAME_SLOTS.start).cap else { panic!() };
            entry(state, FRAME_SLOTS.start).cap = Cap::Frame { base, size_bits, rights: 0b01, mapping };
        }),
        ("table_caps_agree", |state, _| {
            let spare = *entry(state, SPARE_TABLE_SLOT);
            state.slots.insert(slot(40), Entry { original: false, ..spare });
        }),
        ("asid_table_consistent", |state, _| {
            let spare = base(state, SPARE_PML4_SLOT);
            state.asid_pools.values_mut().for_each(|pool| {
                pool.assigned.insert(5, spare);
            });
        }),
        ("thread_slots_hold_their_types", |state, _| {
            let thread = tcb(state, 15);
            let endpoint = state.cap(slot(3)).expect("an endpoint");
            state.slots.get_mut(&(thread + 3 * SLOT_BYTES)).expect("the IPC buffer").cap = endpoint;
        }),
        ("vcpu_bindings_symmetric", |state, _| {
            let other = tcb(state, 12);
            state.vcpus.values_mut().for_each(|vcpu| vcpu.tcb = Some(other));
        }),
        ("notification_bindings_symmetric", |state, _| {
            state.notifications.values_mut().for_each(|notification| notification.bound_tcb = None);
        }),
        ("vcpu_slots_hold_guest_spaces", |state, _| {
            let vcpu = base(state, VCPU_SLOT);
            let vspace = state.cap(slot(VSPACE_SLOT)).expect("the VSpace");
            state.slots.get_mut(&State::vcpu_space_slot(vcpu)).expect("the GuestSpace copy").cap = vspace;
        }),
        ("vcpu_state_within_allowlist", |state, _| {
            // CR4.VMXE: nested virtualisation, which WriteState refuses.
            state.vcpus.values_mut().for_each(|vcpu| vcpu.fields[5] = 1 << 13);
        }),
        ("highest_priority_runs", |state, _| {
            let ready = tcb(state, 16);
            state.threads.get_mut(&ready).expect("a thread").priority = 250;
            state.sched.ready = [(250, vec![ready])].into();
        }),
        ("budgets_within_limits", |state, _| {
            state.sched_contexts.values_mut().for_each(|context| context.remaining = context.budget + 1);
        }),
    ];
    assert_eq!(corruptions.len(), ALL.len() + AFTER_SCHEDULE.len(), "one corruption per invariant");
    for ((name, corrupt), (invariant, _)) in corruptions.iter().zip(ALL.iter().chain(AFTER_SCHEDULE.iter())) {
        assert_eq!(name, invariant, "corruptions in the order of `invariants::ALL`");
        let mut state = sound();
        corrupt(&mut state, endpoint);
        assert!(broken(&state).contains(name), "{name} did not catch its corruption (broken: {:?})", broken(&state));
    }
}

#[test]
fn a_refused_call_changes_nothing() {
    let mut state = capabilities();
    let before = state.clone();
    assert_eq!(invoke(&mut state, 0, label::CNODE_COPY, &[3, 64, 4, 64, 0xf]), Error::DeleteFirst.code());
    // Only the caller's result changed.
    let root = BOOT.root_tcb;
    state.threads.get_mut(&root).expect("the root").info = before.threads[&root].info;
    state.threads.get_mut(&root).expect("the root").words = before.threads[&root].words.clone();
    state.threads.get_mut(&root).expect("the root").extra = before.threads[&root].extra;
    assert_eq!(state, before);
}
