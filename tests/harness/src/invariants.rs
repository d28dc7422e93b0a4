//! The invariants checked after every step, each a function over the
//! abstract state (the spec's, and the kernel's projected onto it) that
//! returns what it found wrong. `docs/VERIFICATION.md` says which of
//! seL4's invariants each one mirrors.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::threads::{IRQ_LINES, READ};
use crate::spec::{
    Boot, Cap, IRQ_HANDLER_BASE, Kind, Mapping, ObjectId, Pte, SLOT_BYTES, State, ThreadState, WRITE, vcpu, vspace,
};

/// A broken invariant: its name and what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The invariant's function name.
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

/// One invariant: its name and its check.
pub type Invariant = (&'static str, fn(&State, &Boot) -> Result<(), String>);

/// Every invariant, in the order they are checked.
pub const ALL: [Invariant; 39] = [
    ("caps_name_live_objects", caps_name_live_objects),
    ("slots_inside_live_containers", slots_inside_live_containers),
    ("objects_aligned", objects_aligned),
    ("objects_distinct", objects_distinct),
    ("caps_to_one_object_agree", caps_to_one_object_agree),
    ("untyped_caps_original", untyped_caps_original),
    ("untyped_children_inside_and_below_watermark", untyped_children_inside_and_below_watermark),
    ("objects_in_untyped_are_descendants", objects_in_untyped_are_descendants),
    ("derivation_tree_acyclic", derivation_tree_acyclic),
    ("child_rights_within_parent", child_rights_within_parent),
    ("badges_set_once", badges_set_once),
    ("live_objects_have_caps", live_objects_have_caps),
    ("no_cap_to_kernel_memory", no_cap_to_kernel_memory),
    ("thread_states_name_live_objects", thread_states_name_live_objects),
    ("queues_hold_live_threads_once", queues_hold_live_threads_once),
    ("ipc_queues_match_thread_states", ipc_queues_match_thread_states),
    ("endpoint_queues_one_direction", endpoint_queues_one_direction),
    ("notification_waiters_mean_nothing_pending", notification_waiters_mean_nothing_pending),
    ("reply_bindings_symmetric", reply_bindings_symmetric),
    ("sched_context_bindings_symmetric", sched_context_bindings_symmetric),
    ("loans_symmetric", loans_symmetric),
    ("ready_queues_hold_runnable_threads_of_their_priority", ready_queues_hold_runnable_threads_of_their_priority),
    ("release_queue_throttled_in_refill_order", release_queue_throttled_in_refill_order),
    ("sleep_queue_holds_halted_threads_in_wake_order", sleep_queue_holds_halted_threads_in_wake_order),
    ("running_thread_runnable_and_unqueued", running_thread_runnable_and_unqueued),
    ("runnable_threads_scheduled", runnable_threads_scheduled),
    ("irq_lines_consistent", irq_lines_consistent),
    ("no_mapping_above_user_top", no_mapping_above_user_top),
    ("vspace_entries_well_typed", vspace_entries_well_typed),
    ("vspace_structures_linked_once", vspace_structures_linked_once),
    ("entries_recorded_by_caps", entries_recorded_by_caps),
    ("pages_within_cap_rights", pages_within_cap_rights),
    ("table_caps_agree", table_caps_agree),
    ("asid_table_consistent", asid_table_consistent),
    ("thread_slots_hold_their_types", thread_slots_hold_their_types),
    ("vcpu_bindings_symmetric", vcpu_bindings_symmetric),
    ("notification_bindings_symmetric", notification_bindings_symmetric),
    ("vcpu_slots_hold_guest_spaces", vcpu_slots_hold_guest_spaces),
    ("vcpu_state_within_allowlist", vcpu_state_within_allowlist),
];

/// The invariants that only hold between kernel entries, when the
/// scheduler has picked: checked after every step like the rest.
pub const AFTER_SCHEDULE: [Invariant; 2] =
    [("highest_priority_runs", highest_priority_runs), ("budgets_within_limits", budgets_within_limits)];

/// Runs every invariant; the broken ones, in order.
#[must_use]
pub fn check_all(state: &State, boot: &Boot) -> Vec<Broken> {
    ALL.iter()
        .chain(AFTER_SCHEDULE.iter())
        .filter_map(|(invariant, check)| check(state, boot).err().map(|detail| Broken { invariant, detail }))
        .collect()
}

/// Every capability but an untyped one names a live object of the
/// capability's type and size (and a thread's CSpace root is a CNode
/// capability or nothing).
pub fn caps_name_live_objects(state: &State, _boot: &Boot) -> Result<(), String> {
    for (slot, entry) in &state.slots {
        let object = entry.cap.object();
        if object.kind != Kind::Untyped && !state.objects.contains_key(&object) {
            return Err(format!("slot {slot:#x}: {:?} names no live object", entry.cap));
        }
    }
    for tcb in state.threads.keys() {
        if let Some(cap) = state.cap(*tcb)
            && !matches!(cap, Cap::CNode { .. })
        {
            return Err(format!("thread {tcb:#x}: CSpace root {cap:?} is not a CNode"));
        }
    }
    Ok(())
}

/// Every occupied slot lies in a live CNode or TCB: no capability is left
/// behind in memory whose object is gone.
pub fn slots_inside_live_containers(state: &State, _boot: &Boot) -> Result<(), String> {
    // (first slot, slot count) of every object with slots.
    let containers: Vec<(u64, u64)> = state
        .objects
        .keys()
        .filter(|object| object.slot_count() > 0)
        .map(|object| (object.first_slot(), object.slot_count()))
        .collect();
    for (slot, entry) in &state.slots {
        let inside = containers.iter().any(|(first, count)| {
            *slot >= *first && (*slot - *first) % SLOT_BYTES == 0 && (*slot - *first) / SLOT_BYTES < *count
        });
        if !inside {
            return Err(format!("slot {slot:#x} ({:?}) is in no live CNode, TCB or VCpu", entry.cap));
        }
    }
    Ok(())
}

/// The memory the state speaks of: every live object, and every untyped
/// capability's region (with its slot).
fn regions(state: &State) -> Vec<(ObjectId, Option<u64>)> {
    let untypeds = state
        .slots
        .iter()
        .filter(|(_, entry)| matches!(entry.cap, Cap::Untyped { .. }))
        .map(|(slot, entry)| (entry.cap.object(), Some(*slot)));
    state.objects.keys().map(|object| (*object, None)).chain(untypeds).collect()
}

/// Every object and untyped region starts at a multiple of its size.
pub fn objects_aligned(state: &State, _boot: &Boot) -> Result<(), String> {
    match regions(state).iter().find(|(object, _)| u128::from(object.base) % (1_u128 << object.size_bits) != 0) {
        Some((object, _)) => Err(format!("{object:?} is not aligned to its size")),
        None => Ok(()),
    }
}

/// No two objects overlap, and an untyped region and anything else are
/// either disjoint or one contains the other.
pub fn objects_distinct(state: &State, _boot: &Boot) -> Result<(), String> {
    let regions = regions(state);
    for (index, (a, _)) in regions.iter().enumerate() {
        for (b, _) in &regions[index + 1..] {
            let nested = (a.kind == Kind::Untyped && a.contains(b)) || (b.kind == Kind::Untyped && b.contains(a));
            if a.overlaps(b) && !nested {
                return Err(format!("{a:?} and {b:?} overlap"));
            }
        }
    }
    Ok(())
}

/// Capabilities that name memory at one address name one object: the same
/// type and size (no capability to an object with a different idea of it).
pub fn caps_to_one_object_agree(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut by_base: BTreeMap<u64, ObjectId> = BTreeMap::new();
    for entry in state.slots.values() {
        let object = entry.cap.object();
        if object.kind == Kind::Untyped {
            continue;
        }
        if let Some(seen) = by_base.insert(object.base, object)
            && seen != object
        {
            return Err(format!("capabilities name both {seen:?} and {object:?}"));
        }
    }
    Ok(())
}

/// Untyped capabilities are never copies: each is an original, derived
/// (by retype) from an untyped capability or from nothing.
pub fn untyped_caps_original(state: &State, _boot: &Boot) -> Result<(), String> {
    for (slot, entry) in &state.slots {
        if !matches!(entry.cap, Cap::Untyped { .. }) {
            continue;
        }
        let parent = entry.parent.and_then(|at| state.cap(at));
        if !entry.original || parent.is_some_and(|parent| !matches!(parent, Cap::Untyped { .. })) {
            return Err(format!("slot {slot:#x}: {:?} is a copy (its parent: {parent:?})", entry.cap));
        }
    }
    Ok(())
}

/// An untyped's watermark is within it, and everything carved from it (an
/// object, an untyped capability derived from it) lies inside it, below
/// the watermark: memory above the watermark is free.
pub fn untyped_children_inside_and_below_watermark(state: &State, _boot: &Boot) -> Result<(), String> {
    let untyped = |slot: u64| match state.cap(slot) {
        Some(cap @ Cap::Untyped { watermark, .. }) => Some((cap.object(), watermark)),
        _ => None,
    };
    let mut carved: Vec<(ObjectId, u64)> = Vec::new();
    for (slot, entry) in &state.slots {
        if let Cap::Untyped { watermark, size_bits, .. } = entry.cap {
            if u128::from(watermark) > 1_u128 << size_bits {
                return Err(format!("slot {slot:#x}: watermark {watermark:#x} beyond its end"));
            }
            if let Some(parent) = entry.parent {
                carved.push((entry.cap.object(), parent));
            }
        }
    }
    for (object, info) in &state.objects {
        if let Some(slot) = info.untyped {
            carved.push((*object, slot));
        }
    }
    for (object, slot) in carved {
        let Some((region, watermark)) = untyped(slot) else {
            return Err(format!("{object:?} was carved from slot {slot:#x}, which holds no untyped"));
        };
        if !region.contains(&object) {
            return Err(format!("{object:?} lies outside {region:?}, which it was carved from"));
        }
        if object.end() > u128::from(region.base) + u128::from(watermark) {
            return Err(format!("{object:?} lies above the watermark {watermark:#x} of {region:?}"));
        }
    }
    Ok(())
}

/// The slots of the capabilities below `slot` in the derivation tree,
/// given every slot's children.
fn descendants(children: &BTreeMap<u64, Vec<u64>>, slot: u64) -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![slot];
    while let Some(at) = frontier.pop() {
        for child in children.get(&at).into_iter().flatten() {
            if found.insert(*child) {
                frontier.push(*child);
            }
        }
    }
    found
}

/// Everything inside an untyped region (an object, a smaller untyped
/// region) has a capability that descends from the untyped's capability;
/// of two untyped capabilities to one region, one descends from the other.
pub fn objects_in_untyped_are_descendants(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut children: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut caps_of: BTreeMap<ObjectId, Vec<u64>> = BTreeMap::new();
    for (slot, entry) in &state.slots {
        if let Some(parent) = entry.parent {
            children.entry(parent).or_default().push(*slot);
        }
        if !matches!(entry.cap, Cap::Untyped { .. }) {
            caps_of.entry(entry.cap.object()).or_default().push(*slot);
        }
    }
    let untypeds: Vec<(u64, ObjectId)> = state
        .slots
        .iter()
        .filter(|(_, entry)| matches!(entry.cap, Cap::Untyped { .. }))
        .map(|(slot, entry)| (*slot, entry.cap.object()))
        .collect();
    for (untyped_slot, untyped) in &untypeds {
        let below = descendants(&children, *untyped_slot);
        for object in state.objects.keys() {
            if !untyped.contains(object) {
                continue;
            }
            let slots = caps_of.get(object).map_or(&[][..], Vec::as_slice);
            if !slots.iter().any(|at| below.contains(at)) {
                return Err(format!("{object:?} lies in {untyped:?} but no capability to it descends from it"));
            }
        }
        for (other_slot, other) in &untypeds {
            if other_slot == untyped_slot || !untyped.contains(other) || below.contains(other_slot) {
                continue;
            }
            let same_region = other == untyped;
            if !same_region || !descendants(&children, *other_slot).contains(untyped_slot) {
                return Err(format!("untyped {other:?} lies in {untyped:?} but does not descend from it"));
            }
        }
    }
    Ok(())
}

/// Every parent pointer names an occupied slot and following parents never
/// comes back to where it started.
pub fn derivation_tree_acyclic(state: &State, _boot: &Boot) -> Result<(), String> {
    for (slot, entry) in &state.slots {
        let mut seen = BTreeSet::from([*slot]);
        let mut parent = entry.parent;
        while let Some(at) = parent {
            let Some(above) = state.slots.get(&at) else {
                return Err(format!("slot {slot:#x}: ancestor {at:#x} is empty"));
            };
            if !seen.insert(at) {
                return Err(format!("slot {slot:#x}: the derivation tree loops at {at:#x}"));
            }
            parent = above.parent;
        }
    }
    Ok(())
}

/// A capability derived from another to the same object has no right its
/// parent lacks.
pub fn child_rights_within_parent(state: &State, _boot: &Boot) -> Result<(), String> {
    for (slot, entry) in &state.slots {
        let Some(parent) = entry.parent.and_then(|at| state.slots.get(&at)) else { continue };
        if let (Some(rights), Some(parent_rights)) = (entry.cap.rights(), parent.cap.rights())
            && rights & !parent_rights != 0
        {
            return Err(format!("slot {slot:#x}: rights {rights:#b} exceed its parent's {parent_rights:#b}"));
        }
    }
    Ok(())
}

/// Badges are set once: a capability derived from a badged one carries
/// its badge (a capability may carry a badge its unbadged parent lacks:
/// the Mint that set it, or a copy of that Mint's capability after it
/// was deleted).
pub fn badges_set_once(state: &State, _boot: &Boot) -> Result<(), String> {
    for (slot, entry) in &state.slots {
        let Some(parent) = entry.parent.and_then(|at| state.slots.get(&at)) else { continue };
        let (Some(badge), Some(parent_badge)) = (entry.cap.badge(), parent.cap.badge()) else { continue };
        if parent_badge != 0 && badge != parent_badge {
            return Err(format!("slot {slot:#x}: badge {badge:#x} under a parent badged {parent_badge:#x}"));
        }
    }
    Ok(())
}

/// Every live object is named by some capability.
pub fn live_objects_have_caps(state: &State, _boot: &Boot) -> Result<(), String> {
    let named: BTreeSet<ObjectId> = state.slots.values().map(|entry| entry.cap.object()).collect();
    match state.objects.keys().find(|object| !named.contains(object)) {
        Some(object) => Err(format!("{object:?} is live but no capability names it")),
        None => Ok(()),
    }
}

/// Every capability names memory handed out as untyped at boot, or one of
/// the objects the kernel made at boot: none reaches the kernel's own.
pub fn no_cap_to_kernel_memory(state: &State, boot: &Boot) -> Result<(), String> {
    let boot_objects = boot.boot_objects();
    for (slot, entry) in &state.slots {
        let object = entry.cap.object();
        let in_untyped = boot
            .untyped_ranges()
            .iter()
            .any(|(base, bits)| ObjectId { base: *base, kind: Kind::Untyped, size_bits: *bits }.contains(&object));
        // A line's handler names no memory: the spec places it at a byte
        // of kernel memory no object uses.
        let handler = object.kind == Kind::IrqHandler
            && (IRQ_HANDLER_BASE..IRQ_HANDLER_BASE + u64::from(IRQ_LINES)).contains(&object.base);
        if !in_untyped && !boot_objects.contains(&object) && !handler {
            return Err(format!("slot {slot:#x}: {:?} reaches kernel memory", entry.cap));
        }
    }
    Ok(())
}

/// A queue's name: what holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueueName {
    Ready(u8),
    Release,
    Endpoint(u64),
    Notification(u64),
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueName::Ready(priority) => write!(formatter, "ready queue {priority}"),
            QueueName::Release => write!(formatter, "the release queue"),
            QueueName::Endpoint(base) => write!(formatter, "endpoint {base:#x}"),
            QueueName::Notification(base) => write!(formatter, "notification {base:#x}"),
        }
    }
}

/// Every queue of the state, named: the ready queues, the release queue,
/// each endpoint's and each notification's.
fn queues(state: &State) -> Vec<(QueueName, &Vec<u64>)> {
    let mut all: Vec<(QueueName, &Vec<u64>)> =
        state.sched.ready.iter().map(|(priority, queue)| (QueueName::Ready(*priority), queue)).collect();
    all.push((QueueName::Release, &state.sched.release));
    all.extend(state.endpoints.iter().map(|(base, queue)| (QueueName::Endpoint(*base), queue)));
    all.extend(state.notifications.iter().map(|(base, state)| (QueueName::Notification(*base), &state.waiters)));
    all
}

/// A blocked thread's state names a live object of the right type (an
/// endpoint, a notification, a reply object), and a thread's scheduling
/// context is live.
pub fn thread_states_name_live_objects(state: &State, _boot: &Boot) -> Result<(), String> {
    for (tcb, thread) in &state.threads {
        let named = match thread.state {
            ThreadState::BlockedOnSend { endpoint, .. } => vec![state.endpoints.contains_key(&endpoint)],
            ThreadState::BlockedOnReceive { endpoint, reply } => vec![
                state.endpoints.contains_key(&endpoint),
                reply.is_none_or(|reply| state.replies.contains_key(&reply)),
            ],
            ThreadState::BlockedOnReply { reply } => vec![state.replies.contains_key(&reply)],
            ThreadState::BlockedOnNotification { notification } => {
                vec![state.notifications.contains_key(&notification)]
            }
            ThreadState::Inactive | ThreadState::Runnable | ThreadState::Sleeping => vec![],
        };
        if named.contains(&false) {
            return Err(format!("thread {tcb:#x}: {:?} names an object that is not live", thread.state));
        }
        if let Some(context) = thread.sched_context
            && !state.sched_contexts.contains_key(&context)
        {
            return Err(format!("thread {tcb:#x} runs on {context:#x}, which is not a live scheduling context"));
        }
    }
    Ok(())
}

/// Every queue holds live threads only, and each thread is in at most one
/// queue, at most once (the running thread included: it is in none).
pub fn queues_hold_live_threads_once(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut seen: BTreeMap<u64, QueueName> = BTreeMap::new();
    for (name, queue) in queues(state) {
        for member in queue {
            if !state.threads.contains_key(member) {
                return Err(format!("{name} holds {member:#x}, which is not a live thread"));
            }
            if let Some(other) = seen.insert(*member, name) {
                return Err(format!("{member:#x} is in {other} and in {name}"));
            }
        }
    }
    if let Some(current) = state.sched.current
        && !state.threads.contains_key(&current)
    {
        return Err(format!("the running thread {current:#x} is not live"));
    }
    Ok(())
}

/// A thread is in an endpoint's queue exactly when it is blocked sending
/// to or receiving from that endpoint, and in a notification's exactly
/// when it waits on that notification (seL4's `sym_refs` for queues).
pub fn ipc_queues_match_thread_states(state: &State, _boot: &Boot) -> Result<(), String> {
    for (tcb, thread) in &state.threads {
        let expected = match thread.state {
            ThreadState::BlockedOnSend { endpoint, .. } | ThreadState::BlockedOnReceive { endpoint, .. } => {
                Some(QueueName::Endpoint(endpoint))
            }
            ThreadState::BlockedOnNotification { notification } => Some(QueueName::Notification(notification)),
            _ => None,
        };
        let found: Vec<QueueName> = queues(state)
            .into_iter()
            .filter(|(name, queue)| {
                matches!(name, QueueName::Endpoint(_) | QueueName::Notification(_)) && queue.contains(tcb)
            })
            .map(|(name, _)| name)
            .collect();
        if found != expected.into_iter().collect::<Vec<_>>() {
            let found: Vec<String> = found.iter().map(ToString::to_string).collect();
            return Err(format!("thread {tcb:#x} is {:?} but in the IPC queues {found:?}", thread.state));
        }
    }
    Ok(())
}

/// An endpoint's waiters all send or all receive.
pub fn endpoint_queues_one_direction(state: &State, _boot: &Boot) -> Result<(), String> {
    for (endpoint, queue) in &state.endpoints {
        let sending = |member: &u64| {
            matches!(state.threads.get(member).map(|thread| thread.state), Some(ThreadState::BlockedOnSend { .. }))
        };
        let senders = queue.iter().filter(|member| sending(member)).count();
        if senders != 0 && senders != queue.len() {
            return Err(format!(
                "endpoint {endpoint:#x} holds {senders} senders and {} receivers",
                queue.len() - senders
            ));
        }
    }
    Ok(())
}

/// A notification with waiters has no signal pending: a signal wakes a
/// waiter rather than waiting itself.
pub fn notification_waiters_mean_nothing_pending(state: &State, _boot: &Boot) -> Result<(), String> {
    for (notification, ntfn) in &state.notifications {
        if !ntfn.waiters.is_empty() && ntfn.pending.is_some() {
            return Err(format!("notification {notification:#x} has waiters and a pending signal {:?}", ntfn.pending));
        }
    }
    Ok(())
}

/// A reply object's caller is blocked on that reply object, and its
/// receiver is blocked receiving with it, and the other way round: each
/// such blocked thread is named by its reply object.
pub fn reply_bindings_symmetric(state: &State, _boot: &Boot) -> Result<(), String> {
    for (base, reply) in &state.replies {
        if let Some(caller) = reply.caller
            && state.threads.get(&caller).map(|thread| thread.state)
                != Some(ThreadState::BlockedOnReply { reply: *base })
        {
            return Err(format!("reply {base:#x}: its caller {caller:#x} does not wait on it"));
        }
        if let Some(receiver) = reply.receiver
            && !matches!(
                state.threads.get(&receiver).map(|thread| thread.state),
                Some(ThreadState::BlockedOnReceive { reply: Some(named), .. }) if named == *base
            )
        {
            return Err(format!("reply {base:#x}: its receiver {receiver:#x} does not receive with it"));
        }
    }
    for (tcb, thread) in &state.threads {
        let named = match thread.state {
            ThreadState::BlockedOnReply { reply } => state.replies.get(&reply).map(|state| state.caller),
            ThreadState::BlockedOnReceive { reply: Some(reply), .. } => {
                state.replies.get(&reply).map(|state| state.receiver)
            }
            _ => continue,
        };
        if named != Some(Some(*tcb)) {
            return Err(format!("thread {tcb:#x} is {:?} but its reply object does not name it", thread.state));
        }
    }
    Ok(())
}

/// A thread runs on a scheduling context exactly when that context is
/// bound to it.
pub fn sched_context_bindings_symmetric(state: &State, _boot: &Boot) -> Result<(), String> {
    for (tcb, thread) in &state.threads {
        if let Some(context) = thread.sched_context
            && state.sched_contexts.get(&context).and_then(|context| context.bound) != Some(*tcb)
        {
            return Err(format!("thread {tcb:#x} runs on {context:#x}, which is not bound to it"));
        }
    }
    for (base, context) in &state.sched_contexts {
        if let Some(bound) = context.bound
            && state.threads.get(&bound).and_then(|thread| thread.sched_context) != Some(*base)
        {
            return Err(format!("scheduling context {base:#x} is bound to {bound:#x}, which does not run on it"));
        }
    }
    Ok(())
}

/// A scheduling context is lent to a thread exactly when that thread's
/// loan names it, and every loan is one a Call made: its reply object is
/// live and its caller, the context's bound thread, waits on it (the
/// reply object names that caller), holds no loan itself (loans never
/// chain) and is not the borrower.
pub fn loans_symmetric(state: &State, _boot: &Boot) -> Result<(), String> {
    for (base, context) in &state.sched_contexts {
        if let Some(borrower) = context.lent_to
            && state.threads.get(&borrower).and_then(|thread| thread.loan).map(|loan| loan.context) != Some(*base)
        {
            return Err(format!("scheduling context {base:#x} is lent to {borrower:#x}, whose loan is not of it"));
        }
    }
    for (tcb, thread) in &state.threads {
        let Some(loan) = thread.loan else { continue };
        let Some(context) = state.sched_contexts.get(&loan.context) else {
            return Err(format!("thread {tcb:#x} borrows {:#x}, which is not a live scheduling context", loan.context));
        };
        if context.lent_to != Some(*tcb) {
            return Err(format!(
                "thread {tcb:#x} borrows {:#x}, which is lent to {:x?}",
                loan.context, context.lent_to
            ));
        }
        let Some(reply) = state.replies.get(&loan.reply) else {
            return Err(format!("thread {tcb:#x}'s loan is for {:#x}, which is not a live reply object", loan.reply));
        };
        let Some(caller) = context.bound else {
            return Err(format!("thread {tcb:#x} borrows {:#x}, which is bound to no caller", loan.context));
        };
        let waits = state.threads.get(&caller).map(|thread| thread.state)
            == Some(ThreadState::BlockedOnReply { reply: loan.reply });
        if !waits || reply.caller != Some(caller) || caller == *tcb {
            return Err(format!(
                "thread {tcb:#x} borrows {:#x} for reply {:#x}, but its caller {caller:#x} does not wait on it",
                loan.context, loan.reply
            ));
        }
        if state.threads.get(&caller).is_some_and(|thread| thread.loan.is_some()) {
            return Err(format!("thread {tcb:#x} borrows from {caller:#x}, which holds a loan itself: a chain"));
        }
    }
    Ok(())
}

/// Ready queue `p` holds only runnable threads of priority `p` that have
/// budget left on the context they run on (seL4's `valid_queues`).
pub fn ready_queues_hold_runnable_threads_of_their_priority(state: &State, _boot: &Boot) -> Result<(), String> {
    for (priority, queue) in &state.sched.ready {
        if queue.is_empty() {
            return Err(format!("ready queue {priority} is listed but empty"));
        }
        for member in queue {
            let Some(thread) = state.threads.get(member) else { continue };
            if !thread.is_runnable() || thread.priority != *priority || !state.has_budget(*member) {
                return Err(format!(
                    "ready queue {priority} holds {member:#x}: {:?} at priority {}, budget left: {}",
                    thread.state,
                    thread.priority,
                    state.has_budget(*member)
                ));
            }
        }
    }
    Ok(())
}

/// The release queue holds only runnable threads whose budget is used up,
/// in the order their budgets are refilled (seL4's `valid_release_q`):
/// the budget of the context each runs on, a lent one for a borrower.
pub fn release_queue_throttled_in_refill_order(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut last = 0;
    for member in &state.sched.release {
        let Some(thread) = state.threads.get(member) else { continue };
        let running_on = thread.loan.map_or(thread.sched_context, |loan| Some(loan.context));
        let context = running_on.and_then(|context| state.sched_contexts.get(&context));
        let Some(context) = context.filter(|context| context.remaining == 0 && context.period != 0) else {
            return Err(format!("the release queue holds {member:#x}, which has budget or none configured"));
        };
        if !thread.is_runnable() {
            return Err(format!("the release queue holds {member:#x}, which is {:?}", thread.state));
        }
        if context.next_refill < last {
            return Err(format!("the release queue is out of refill order at {member:#x}"));
        }
        last = context.next_refill;
    }
    Ok(())
}

/// The sleep queue holds each live thread with a wake-up time exactly
/// once, in wake-up order, and only threads blocked in VMEnter's `WAIT`
/// (waiting on a notification, or asleep); a thread asleep without a
/// notification is in it (else nothing would ever wake it).
pub fn sleep_queue_holds_halted_threads_in_wake_order(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut last = 0;
    for (index, member) in state.sched.sleeping.iter().enumerate() {
        let Some(thread) = state.threads.get(member) else {
            return Err(format!("the sleep queue holds {member:#x}, which is not a live thread"));
        };
        if state.sched.sleeping[..index].contains(member) {
            return Err(format!("the sleep queue holds {member:#x} twice"));
        }
        if !matches!(thread.state, ThreadState::Sleeping | ThreadState::BlockedOnNotification { .. }) {
            return Err(format!("the sleep queue holds {member:#x}, which is {:?}", thread.state));
        }
        let Some(wake_at) = thread.wake_at else {
            return Err(format!("the sleep queue holds {member:#x}, which has no wake-up time"));
        };
        if wake_at < last {
            return Err(format!("the sleep queue is out of wake-up order at {member:#x}"));
        }
        last = wake_at;
    }
    for (tcb, thread) in &state.threads {
        let asleep = state.sched.sleeping.contains(tcb);
        if thread.wake_at.is_some() != asleep {
            return Err(format!("thread {tcb:#x} wakes at {:?} but is asleep: {asleep}", thread.wake_at));
        }
        if thread.state == ThreadState::Sleeping && !asleep {
            return Err(format!("thread {tcb:#x} sleeps with nothing to wake it"));
        }
    }
    Ok(())
}

/// The running thread is runnable, has budget left, and is in no queue
/// (seL4's `ct_not_in_q` and `ct_active`).
pub fn running_thread_runnable_and_unqueued(state: &State, _boot: &Boot) -> Result<(), String> {
    let Some(current) = state.sched.current else { return Ok(()) };
    let Some(thread) = state.threads.get(&current) else { return Ok(()) };
    if !thread.is_runnable() || !state.has_budget(current) {
        return Err(format!(
            "the running thread {current:#x} is {:?}, budget left: {}",
            thread.state,
            state.has_budget(current)
        ));
    }
    if let Some((name, _)) = queues(state).into_iter().find(|(_, queue)| queue.contains(&current)) {
        return Err(format!("the running thread {current:#x} is in {name}"));
    }
    Ok(())
}

/// Every runnable thread runs, or waits in a ready queue, or (out of
/// budget) in the release queue; only a thread on a scheduling context
/// never configured waits in none (seL4's `valid_sched_action` and
/// `ct_in_q`: no runnable thread is forgotten).
pub fn runnable_threads_scheduled(state: &State, _boot: &Boot) -> Result<(), String> {
    for (tcb, thread) in &state.threads {
        if !thread.is_runnable() || state.sched.current == Some(*tcb) || state.awaits_configuration(*tcb) {
            continue;
        }
        let queued = state.sched.ready.values().any(|queue| queue.contains(tcb)) || state.sched.release.contains(tcb);
        if !queued {
            return Err(format!("thread {tcb:#x} is runnable but neither runs nor waits to"));
        }
    }
    Ok(())
}

/// After the scheduler picked: no ready thread has a higher priority than
/// the running one, and a thread runs whenever one is ready.
pub fn highest_priority_runs(state: &State, _boot: &Boot) -> Result<(), String> {
    let highest = state.sched.ready.keys().next_back().copied();
    match (state.sched.current.and_then(|current| state.threads.get(&current)), highest) {
        (Some(thread), Some(highest)) if highest > thread.priority => {
            Err(format!("priority {highest} is ready while priority {} runs", thread.priority))
        }
        (None, Some(highest)) if state.sched.current.is_none() => {
            Err(format!("nothing runs while priority {highest} is ready"))
        }
        _ => Ok(()),
    }
}

/// No budget is exceeded: a configured scheduling context never has more
/// left than its budget, its budget fits its period, its next refill is at
/// most one period ahead; one never configured has nothing.
pub fn budgets_within_limits(state: &State, _boot: &Boot) -> Result<(), String> {
    for (base, context) in &state.sched_contexts {
        let sound = if context.period == 0 {
            context.budget == 0 && context.remaining == 0 && context.next_refill == 0
        } else {
            context.remaining <= context.budget
                && context.budget <= context.period
                && context.next_refill <= state.sched.now.saturating_add(context.period)
        };
        if !sound {
            return Err(format!("scheduling context {base:#x}: {context:?} at time {}", state.sched.now));
        }
    }
    Ok(())
}

/// An interrupt line is issued exactly when a handler capability for it
/// exists; a line nobody holds is unbound, masked and not pending; a
/// bound notification is live; a pending line is masked (it waits for its
/// Ack).
pub fn irq_lines_consistent(state: &State, _boot: &Boot) -> Result<(), String> {
    for (number, line) in (0_u8..).zip(&state.irqs) {
        let held = state.slots.values().any(|entry| entry.cap == Cap::IrqHandler { line: number });
        let sound = line.issued == held
            && (line.issued || (line.notification.is_none() && line.masked && !line.pending))
            && line.notification.is_none_or(|(notification, _)| state.notifications.contains_key(&notification))
            && (!line.pending || line.masked);
        if !sound {
            return Err(format!("line {number}: {line:?}, a handler capability held: {held}"));
        }
    }
    Ok(())
}

/// The live paging structures' kinds, by address.
fn table_kinds(state: &State) -> BTreeMap<u64, Kind> {
    state
        .objects
        .keys()
        .filter(|object| vspace::is_table(object.kind))
        .map(|object| (object.base, object.kind))
        .collect()
}

/// No live PML4 has an entry in its upper half: no user mapping reaches
/// [`vspace::USER_TOP`] or above (those entries are the kernel's, and no
/// invocation writes them).
pub fn no_mapping_above_user_top(state: &State, _boot: &Boot) -> Result<(), String> {
    for (base, kind) in table_kinds(state) {
        let upper = state.tables.get(&base).and_then(|table| table.entries.range(256..).next());
        if kind == Kind::Pml4
            && let Some((index, entry)) = upper
        {
            return Err(format!("PML4 {base:#x}: entry {index} ({entry:?}) lies in the kernel's half"));
        }
    }
    Ok(())
}

/// In every VSpace reachable through an ASID, each structure's entries
/// are well typed: a link names a live structure of the next level down,
/// a page a live frame of the size that level maps (seL4's
/// `valid_vspace_objs`); every live structure has a state and nothing
/// else has one.
pub fn vspace_entries_well_typed(state: &State, _boot: &Boot) -> Result<(), String> {
    let kinds = table_kinds(state);
    let with_state: BTreeSet<u64> = state.tables.keys().copied().collect();
    if with_state != kinds.keys().copied().collect::<BTreeSet<u64>>() {
        return Err(format!("structures with a state {with_state:x?}, live structures {:x?}", kinds.keys()));
    }
    for (asid, table, kind, _) in state.reachable_tables() {
        if kinds.get(&table) != Some(&kind) {
            return Err(format!("ASID {asid} reaches {table:#x} as a {kind:?}, which is not a live one"));
        }
        let Some(contents) = state.tables.get(&table) else { continue };
        for (index, entry) in &contents.entries {
            let sound = match *entry {
                Pte::Table(child) => vspace::below(kind).is_some_and(|below| kinds.get(&child) == Some(&below)),
                Pte::Page { base, size_bits, .. } => {
                    vspace::leaf_kind(size_bits) == kind
                        && !vspace::is_root(kind)
                        && state.objects.contains_key(&ObjectId { base, kind: Kind::Frame, size_bits })
                }
            };
            if !sound {
                return Err(format!("{kind:?} {table:#x} (ASID {asid}) entry {index}: {entry:?} is not well typed"));
            }
        }
    }
    Ok(())
}

/// Each structure is linked into at most one place of all the reachable
/// VSpaces, and each PML4 is the root of at most one ASID: a virtual
/// address leads one way only (seL4's `vs_lookup` uniqueness and
/// `valid_asid_map`).
pub fn vspace_structures_linked_once(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut seen: BTreeMap<u64, (u16, u64)> = BTreeMap::new();
    for (asid, table, kind, vaddr) in state.reachable_tables() {
        if let Some(first) = seen.insert(table, (asid, vaddr)) {
            return Err(format!("{kind:?} {table:#x} is reached at {first:x?} and at ({asid}, {vaddr:#x})"));
        }
    }
    Ok(())
}

/// Every entry of a reachable VSpace was made by a live capability that
/// still records it: a page by a capability to that frame recording
/// (ASID, the page's virtual address), a link by a capability to that
/// structure recording (ASID, the first address the entry covers). So
/// deleting the capabilities (which always unmaps) leaves no user mapping
/// of the object, and its memory can be retyped (seL4's
/// `valid_table_caps` and the mapping half of `valid_objs`).
pub fn entries_recorded_by_caps(state: &State, _boot: &Boot) -> Result<(), String> {
    let records: BTreeSet<(u64, Mapping)> = state
        .slots
        .values()
        .filter_map(|entry| entry.cap.mapping().map(|mapping| (entry.cap.object().base, mapping)))
        .collect();
    for (asid, table, kind, first) in state.reachable_tables() {
        let Some(contents) = state.tables.get(&table) else { continue };
        for (index, entry) in &contents.entries {
            let vaddr = first + (u64::from(*index) << vspace::entry_shift(kind));
            if !records.contains(&(entry.target(), Mapping { asid, vaddr })) {
                return Err(format!(
                    "{kind:?} {table:#x} entry {index} ({entry:?}) at ({asid}, {vaddr:#x}): no capability records it"
                ));
            }
        }
    }
    Ok(())
}

/// A page is writable only if a frame capability recording it has WRITE,
/// and readable only if one has READ: a mapping never gives more than
/// the capability that made it.
pub fn pages_within_cap_rights(state: &State, _boot: &Boot) -> Result<(), String> {
    for (asid, table, kind, first) in state.reachable_tables() {
        let Some(contents) = state.tables.get(&table) else { continue };
        for (index, entry) in &contents.entries {
            let Pte::Page { base, write, .. } = *entry else { continue };
            let vaddr = first + (u64::from(*index) << vspace::entry_shift(kind));
            let needed = if write { READ | WRITE } else { READ };
            let allowed = state.slots.values().any(|slot| {
                matches!(slot.cap, Cap::Frame { base: frame, rights, mapping: Some(mapping), .. }
                    if frame == base && mapping == Mapping { asid, vaddr } && rights & needed == needed)
            });
            if !allowed {
                return Err(format!("page {base:#x} at ({asid}, {vaddr:#x}) gives more than its capability"));
            }
        }
    }
    Ok(())
}

/// Every capability to one paging structure records the same mapping:
/// copies of a linked structure (or an assigned PML4) share its record,
/// and an unlinked one (or a PML4 without an ASID) has no copies, so it
/// can be linked into one place only (seL4's `unique_table_caps`).
pub fn table_caps_agree(state: &State, _boot: &Boot) -> Result<(), String> {
    let mut records: BTreeMap<u64, Option<Mapping>> = BTreeMap::new();
    for (slot, entry) in &state.slots {
        let Cap::PageTable { base, mapping, .. } = entry.cap else { continue };
        if mapping.is_none() && records.contains_key(&base) {
            return Err(format!("slot {slot:#x}: an unmapped capability to {base:#x} with others beside it"));
        }
        if let Some(other) = records.insert(base, mapping)
            && (other != mapping || other.is_none())
        {
            return Err(format!("slot {slot:#x}: capabilities to {base:#x} record {other:x?} and {mapping:x?}"));
        }
    }
    Ok(())
}

/// The ASID table names live pools, each at the number its capabilities'
/// first ASID gives; each assigned ASID is not 0, lies in its pool's
/// range and names a live root (a PML4 or a GuestSpace) whose
/// capabilities record that ASID; and no root has two ASIDs (seL4's `valid_asid_table` and `valid_asid_map`).
pub fn asid_table_consistent(state: &State, _boot: &Boot) -> Result<(), String> {
    let kinds = table_kinds(state);
    let mut roots = BTreeSet::new();
    for (number, pool) in &state.asid_pools {
        let object = ObjectId { base: pool.base, kind: Kind::AsidPool, size_bits: vspace::TABLE_BITS };
        let first = number * vspace::ASIDS_PER_POOL;
        let named = state.slots.values().any(|entry| entry.cap == Cap::AsidPool { base: pool.base, first });
        if !state.objects.contains_key(&object) || !named {
            return Err(format!("pool {number} ({:#x}) is not a live pool with first ASID {first}", pool.base));
        }
        for (asid, pml4) in &pool.assigned {
            let recorded = state.slots.values().any(|entry| {
                matches!(entry.cap, Cap::PageTable { base, kind, mapping: Some(Mapping { asid: at, .. }) }
                    if base == *pml4 && at == *asid && vspace::is_root(kind))
            });
            let in_range = (first..first + vspace::ASIDS_PER_POOL).contains(asid) && *asid != 0;
            let is_root = kinds.get(pml4).is_some_and(|kind| vspace::is_root(*kind));
            if !in_range || !is_root || !recorded || !roots.insert(*pml4) {
                return Err(format!("ASID {asid} of pool {number} names {pml4:#x}, which it may not"));
            }
        }
    }
    Ok(())
}

/// A thread's other TCB slots hold what their invocations put there: a
/// fault endpoint with WRITE (slot 1), a PML4 (slot 2), a 4 KiB frame
/// with READ and WRITE as the IPC buffer (slot 3), or nothing (seL4's
/// `valid_tcb`'s slot conditions).
pub fn thread_slots_hold_their_types(state: &State, _boot: &Boot) -> Result<(), String> {
    for tcb in state.threads.keys() {
        let at = |index: u64| state.cap(tcb + index * SLOT_BYTES);
        let sound = at(1).is_none_or(|cap| matches!(cap, Cap::Endpoint { rights, .. } if rights & WRITE != 0))
            && at(2).is_none_or(|cap| matches!(cap, Cap::PageTable { kind: Kind::Pml4, .. }))
            && at(3).is_none_or(|cap| {
                matches!(cap, Cap::Frame { size_bits: 12, rights, .. } if rights & (READ | WRITE) == READ | WRITE)
            });
        if !sound {
            return Err(format!("thread {tcb:#x}: slots hold {:?}, {:?}, {:?}", at(1), at(2), at(3)));
        }
    }
    Ok(())
}

/// A thread runs a VCpu exactly when that VCpu is bound to it, and both
/// are live (one each way, as for scheduling contexts).
pub fn vcpu_bindings_symmetric(state: &State, _boot: &Boot) -> Result<(), String> {
    for (tcb, thread) in &state.threads {
        if let Some(vcpu) = thread.vcpu
            && state.vcpus.get(&vcpu).and_then(|vcpu| vcpu.tcb) != Some(*tcb)
        {
            return Err(format!("thread {tcb:#x} runs VCpu {vcpu:#x}, which is not bound to it"));
        }
    }
    for (base, vcpu) in &state.vcpus {
        if let Some(tcb) = vcpu.tcb
            && state.threads.get(&tcb).and_then(|thread| thread.vcpu) != Some(*base)
        {
            return Err(format!("VCpu {base:#x} is bound to {tcb:#x}, which does not run it"));
        }
    }
    Ok(())
}

/// A thread's bound notification is bound to that thread, and the other
/// way round; both are live.
pub fn notification_bindings_symmetric(state: &State, _boot: &Boot) -> Result<(), String> {
    for (tcb, thread) in &state.threads {
        if let Some(notification) = thread.bound_notification
            && state.notifications.get(&notification).and_then(|notification| notification.bound_tcb) != Some(*tcb)
        {
            return Err(format!("thread {tcb:#x} has notification {notification:#x} bound, which names another"));
        }
    }
    for (base, notification) in &state.notifications {
        if let Some(tcb) = notification.bound_tcb
            && state.threads.get(&tcb).and_then(|thread| thread.bound_notification) != Some(*base)
        {
            return Err(format!("notification {base:#x} is bound to {tcb:#x}, which has another bound"));
        }
    }
    Ok(())
}

/// A VCpu's slot holds a GuestSpace or nothing: no VSpace, no other
/// object, reaches the place the VCpu takes its guest's memory from.
pub fn vcpu_slots_hold_guest_spaces(state: &State, _boot: &Boot) -> Result<(), String> {
    for base in state.vcpus.keys() {
        let held = state.cap(State::vcpu_space_slot(*base));
        if held.is_some_and(|cap| !matches!(cap, Cap::PageTable { kind: Kind::GuestSpace, .. })) {
            return Err(format!("VCpu {base:#x}'s slot holds {held:?}"));
        }
    }
    Ok(())
}

/// Every guest-state field of every VCpu holds a value WriteState could
/// have stored there (the fresh values included): nothing reaches the
/// hardware that `docs/abi.md`'s field table refuses.
pub fn vcpu_state_within_allowlist(state: &State, _boot: &Boot) -> Result<(), String> {
    for (base, vcpu) in &state.vcpus {
        if vcpu.fields.len() != vcpu::FIELDS {
            return Err(format!("VCpu {base:#x} has {} fields", vcpu.fields.len()));
        }
        for (field, value) in (0_u64..).zip(&vcpu.fields) {
            if vcpu::field_value(field, *value) != Some(*value) {
                return Err(format!("VCpu {base:#x}: field {field} holds {value:#x}, which WriteState refuses"));
            }
        }
    }
    Ok(())
}
