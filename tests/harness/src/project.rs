//! The kernel's state projected onto the abstract state, and the checks
//! that only make sense on the kernel's own representation (its
//! derivation list).
//!
//! The kernel keeps the derivation tree as seL4 does: one doubly linked
//! list in which each capability's descendants follow it, with "is the
//! parent of" computed from two capabilities and two bits. The projection
//! turns that into parent pointers: the descendants of a capability are
//! the run of slots after it that it is the parent of (what a revoke
//! deletes), and a capability's parent is the one with the smallest such
//! run containing it.

use std::collections::{BTreeMap, BTreeSet};

use kernel_core::cap::{Cap as KernelCap, MappedAt, PageTableLevel, SlotRef, SlotStore, derivation};
use kernel_core::ipc::{self, Queue, ThreadId, ThreadState as KernelThreadState};
use kernel_core::memory::PhysAddr;
use kernel_core::sched::SleepQueue;
use kernel_core::store::{MapStore, ObjectStore};
use kernel_core::syscall::Kernel;
use kernel_core::vspace::entry as entry_bit;

use crate::spec::vspace;
use crate::spec::{
    AsidPool, Cap, Entry, Info, IrqLine, Kind, Loan, Mapping, Notification, Object, ObjectId, Pte, Reply, Resumption,
    SchedContext, State, Table, Thread, ThreadState, VCpu,
};

/// The spec's view of a kernel capability.
///
/// # Errors
///
/// The capability's description, for types the spec does not cover yet.
pub fn abstract_cap(cap: &KernelCap) -> Result<Cap, String> {
    Ok(match *cap {
        KernelCap::Untyped { base, size_bits, free_offset, is_device: false } => {
            Cap::Untyped { base: base.as_u64(), size_bits, watermark: free_offset }
        }
        KernelCap::CNode { base, radix_bits, guard, guard_bits } => {
            Cap::CNode { base: base.as_u64(), radix: radix_bits, guard, guard_bits }
        }
        KernelCap::Tcb { object } => Cap::Tcb { base: object.as_u64() },
        KernelCap::Endpoint { object, badge, rights } => {
            Cap::Endpoint { base: object.as_u64(), badge, rights: rights.bits() }
        }
        KernelCap::Notification { object, badge, rights } => {
            Cap::Notification { base: object.as_u64(), badge, rights: rights.bits() }
        }
        KernelCap::Reply { object } => Cap::Reply { base: object.as_u64() },
        KernelCap::SchedContext { object, size_bits } => Cap::SchedContext { base: object.as_u64(), size_bits },
        KernelCap::SchedControl => Cap::SchedControl,
        KernelCap::IrqControl => Cap::IrqControl,
        KernelCap::IrqHandler { line } => Cap::IrqHandler { line },
        KernelCap::Frame { base, size, rights, is_device: false, mapping } => Cap::Frame {
            base: base.as_u64(),
            size_bits: size.bits(),
            rights: rights.bits(),
            mapping: mapping.map(abstract_mapping),
        },
        KernelCap::PageTable { object, level, mapping } => Cap::PageTable {
            base: object.as_u64(),
            kind: match level {
                PageTableLevel::PageTable => Kind::PageTable,
                PageTableLevel::PageDirectory => Kind::PageDirectory,
                PageTableLevel::PageDirectoryPointerTable => Kind::PageDirectoryPointerTable,
                PageTableLevel::Pml4 => Kind::Pml4,
                PageTableLevel::GuestSpace => Kind::GuestSpace,
            },
            mapping: mapping.map(abstract_mapping),
        },
        KernelCap::AsidControl => Cap::AsidControl,
        KernelCap::AsidPool { object, first } => Cap::AsidPool { base: object.as_u64(), first: first.0 },
        KernelCap::VCpu { object } => Cap::VCpu { base: object.as_u64() },
        other => return Err(format!("a capability outside the spec: {other:?}")),
    })
}

/// A capability's mapping record.
const fn abstract_mapping(mapping: MappedAt) -> Mapping {
    Mapping { asid: mapping.asid.0, vaddr: mapping.address }
}

/// The spec's view of entry `index` of the paging structure of `kind` at
/// `table`: `None` if it is empty (zero), an error for bits the kernel
/// never writes (a non-present entry that is not zero, a table link with
/// more than present, writable and user, a page not reachable from user
/// mode, a misaligned address).
fn entry(store: &MapStore, table: u64, kind: Kind, index: u16) -> Result<Option<Pte>, String> {
    let value = store.table_entry(PhysAddr::new(table), usize::from(index));
    let at = || format!("{kind:?} {table:#x} entry {index}: {value:#x}");
    if value == 0 {
        return Ok(None);
    }
    if value & entry_bit::PRESENT == 0 {
        return Err(format!("{}: not present but not empty", at()));
    }
    let address = value & entry_bit::ADDRESS;
    let large = value & entry_bit::LARGE != 0;
    let is_leaf = kind == Kind::PageTable || (large && !vspace::is_root(kind));
    if !is_leaf {
        if value != address | entry_bit::PRESENT | entry_bit::WRITABLE | entry_bit::USER {
            return Err(format!("{}: a table link with other bits", at()));
        }
        return Ok(Some(Pte::Table(address)));
    }
    let size_bits = u8::try_from(vspace::entry_shift(kind)).unwrap_or(0);
    let known = entry_bit::ADDRESS
        | entry_bit::PRESENT
        | entry_bit::WRITABLE
        | entry_bit::USER
        | entry_bit::WRITE_THROUGH
        | entry_bit::CACHE_DISABLE
        | entry_bit::LARGE
        | entry_bit::NO_EXECUTE;
    if value & !known != 0 || value & entry_bit::USER == 0 || !address.is_multiple_of(1 << size_bits) {
        return Err(format!("{}: a page entry the kernel never writes", at()));
    }
    if large != (kind != Kind::PageTable) {
        return Err(format!("{}: the large-page bit does not match the level", at()));
    }
    let memory_type =
        u8::from(value & entry_bit::WRITE_THROUGH != 0) | (u8::from(value & entry_bit::CACHE_DISABLE != 0) << 1);
    Ok(Some(Pte::Page {
        base: address,
        size_bits,
        write: value & entry_bit::WRITABLE != 0,
        execute: value & entry_bit::NO_EXECUTE == 0,
        memory_type,
    }))
}

/// Every paging structure's present entries, all 512 of each (a PML4's
/// upper half too: nothing may appear there).
fn table(store: &MapStore, object: &ObjectId) -> Result<Table, String> {
    let mut entries = BTreeMap::new();
    // Only the non-zero entries: reading all 512 one by one costs the
    // long run an eighth of its time; `entry` reads them the ordinary way.
    for (index, _) in store.table_entries(PhysAddr::new(object.base)) {
        let index = u16::try_from(index).map_err(|_| format!("entry {index} of {object:?}"))?;
        if let Some(pte) = entry(store, object.base, object.kind, index)? {
            entries.insert(index, pte);
        }
    }
    Ok(Table { entries })
}

/// The derivation-tree descendants of the capability in `of`: the run of
/// slots after it in derivation order that it is the parent of.
fn list_descendants(store: &MapStore, of: SlotRef) -> Vec<SlotRef> {
    let mut found = Vec::new();
    let mut next = store.slot(of).links.next;
    while let Some(at) = next {
        if !derivation::is_parent_of(store, of, at) || found.len() > 1 << 16 {
            break;
        }
        found.push(at);
        next = store.slot(at).links.next;
    }
    found
}

/// The kernel's state as the spec would hold it: the capabilities, their
/// parents (from the derivation list), the objects they name (each with
/// the nearest untyped its capabilities descend from), the state of every
/// live thread, endpoint, notification, reply object and scheduling
/// context, and the scheduler's queues.
///
/// # Errors
///
/// What could not be projected: a capability of a type outside the spec,
/// or capabilities to one object descending from different untypeds.
pub fn project(kernel: &Kernel<MapStore>) -> Result<State, String> {
    let store = &kernel.store;
    let mut state = State::default();
    // Parent: among the capabilities whose descendants include a slot, the
    // one with the fewest descendants.
    let mut best: BTreeMap<SlotRef, (usize, SlotRef)> = BTreeMap::new();
    let mut runs: Vec<(SlotRef, Vec<SlotRef>)> = Vec::new();
    for (at, slot) in store.occupied() {
        let cap = abstract_cap(&slot.cap).map_err(|error| format!("slot {:#x}: {error}", at.address().as_u64()))?;
        state.slots.insert(at.address().as_u64(), Entry { cap, parent: None, original: slot.links.revocable });
        let below = list_descendants(store, at);
        runs.push((at, below.clone()));
        for descendant in &below {
            let candidate = (below.len(), at);
            best.entry(*descendant).and_modify(|seen| *seen = (*seen).min(candidate)).or_insert(candidate);
        }
    }
    for (child, (_, parent)) in best {
        if let Some(entry) = state.slots.get_mut(&child.address().as_u64()) {
            entry.parent = Some(parent.address().as_u64());
        }
    }
    // Each capability's children in the order its run lists them: the
    // order a revoke deletes them in.
    for (at, below) in runs {
        let at = at.address().as_u64();
        let children: Vec<u64> = below
            .iter()
            .map(|slot| slot.address().as_u64())
            .filter(|slot| state.slots.get(slot).and_then(|entry| entry.parent) == Some(at))
            .collect();
        if !children.is_empty() {
            state.child_order.insert(at, children);
        }
    }
    // Objects (untypeds are not), and the untyped each was carved from: the
    // nearest untyped above any of its capabilities.
    let mut objects: BTreeMap<ObjectId, Option<u64>> = BTreeMap::new();
    for (slot, entry) in &state.slots {
        let object = entry.cap.object();
        if object.kind == Kind::Untyped {
            continue;
        }
        let untyped = state.untyped_above(*slot);
        if let Some(seen) = objects.insert(object, untyped)
            && seen != untyped
        {
            return Err(format!("capabilities to {object:?} descend from untypeds in {seen:?} and {untyped:?}"));
        }
    }
    state.objects = objects.into_iter().map(|(object, untyped)| (object, Object { untyped })).collect();
    for object in state.objects.keys() {
        let at = PhysAddr::new(object.base);
        match object.kind {
            Kind::Tcb => {
                state.threads.insert(object.base, thread(store, ThreadId::new(at))?);
            }
            Kind::Endpoint => {
                state.endpoints.insert(object.base, walk(store, &store.endpoint(at).queue)?);
            }
            Kind::Notification => {
                let notification = store.notification(at);
                let pending = notification.active.then_some(notification.word);
                let waiters = walk(store, &notification.waiters)?;
                let bound_tcb = notification.bound_tcb.map(id);
                state.notifications.insert(object.base, Notification { pending, waiters, bound_tcb });
            }
            Kind::Reply => {
                let reply = store.reply(at);
                let (caller, receiver) = (reply.caller.map(id), reply.receiver.map(id));
                state.replies.insert(object.base, Reply { caller, receiver });
            }
            Kind::SchedContext => {
                let context = store.sched_context(at);
                state.sched_contexts.insert(
                    object.base,
                    SchedContext {
                        budget: context.budget,
                        period: context.period,
                        remaining: context.remaining,
                        next_refill: context.next_refill,
                        bound: context.bound.map(id),
                        lent_to: context.lent_to.map(id),
                    },
                );
            }
            kind if vspace::is_table(kind) => {
                state.tables.insert(object.base, table(store, object)?);
            }
            Kind::VCpu => {
                let record = store.vcpu(at);
                if record.resume || record.stale != 0 {
                    return Err(format!(
                        "VCpu {:#x}: a run a host interrupt ended (the harness has none)",
                        object.base
                    ));
                }
                let vcpu =
                    VCpu { tcb: record.tcb.map(id), fields: record.state.0.to_vec(), registers: record.registers };
                state.vcpus.insert(object.base, vcpu);
            }
            _ => {}
        }
    }
    for (number, pool) in kernel.asids.pools.iter().enumerate() {
        let Some(pool) = pool else { continue };
        let assigned = store
            .asid_pool(*pool)
            .entries
            .iter()
            .enumerate()
            .filter(|(_, vspace)| **vspace != 0)
            .map(|(index, vspace)| (u16::try_from(number * 512 + index).unwrap_or(u16::MAX), *vspace))
            .collect();
        state.asid_pools.insert(u16::try_from(number).unwrap_or(u16::MAX), AsidPool { base: pool.as_u64(), assigned });
    }
    state.guest_backend = kernel.guest_format.is_some();
    let scheduler = &kernel.scheduler;
    state.sched.current = scheduler.current().map(id);
    for priority in 0..=u8::MAX {
        let queue = walk(store, scheduler.queue(priority))?;
        if !queue.is_empty() {
            state.sched.ready.insert(priority, queue);
        }
    }
    state.sched.release = walk(store, scheduler.release_queue())?;
    state.sched.sleeping = walk_sleepers(store, scheduler.sleep_queue())?;
    state.sched.now = kernel.now;
    state.sched.charged_until = scheduler.charged_until();
    state.irqs = kernel
        .irqs
        .lines
        .iter()
        .map(|line| IrqLine {
            issued: line.issued,
            notification: line.notification.map(|(object, badge)| (object.as_u64(), badge)),
            masked: line.masked,
            pending: line.pending,
        })
        .collect();
    Ok(state)
}

/// A thread's TCB address.
fn id(thread: ThreadId) -> u64 {
    thread.address().as_u64()
}

/// The threads in an intrusive queue, head to tail (an error if the links
/// loop or stop short of the tail).
fn walk(store: &MapStore, queue: &Queue) -> Result<Vec<u64>, String> {
    let mut members = Vec::new();
    let mut at = queue.head;
    let mut last = None;
    while let Some(thread) = at {
        if members.len() > 4096 {
            return Err("a thread queue loops".to_owned());
        }
        members.push(id(thread));
        last = Some(thread);
        at = store.tcb(thread).queue_links().next;
    }
    if last != queue.tail {
        return Err(format!("a thread queue's tail is {:?}, its last member {last:?}", queue.tail));
    }
    Ok(members)
}

/// The threads in the sleep queue, head to tail (an error if the sleep
/// links loop or stop short of the tail).
fn walk_sleepers(store: &MapStore, queue: &SleepQueue) -> Result<Vec<u64>, String> {
    let mut members = Vec::new();
    let mut at = queue.head;
    let mut last = None;
    while let Some(thread) = at {
        if members.len() > 4096 {
            return Err("the sleep queue loops".to_owned());
        }
        members.push(id(thread));
        last = Some(thread);
        at = store.tcb(thread).sleep_links().next;
    }
    if last != queue.tail {
        return Err(format!("the sleep queue's tail is {:?}, its last member {last:?}", queue.tail));
    }
    Ok(members)
}

/// The spec's view of a kernel thread.
fn thread(store: &MapStore, thread: ThreadId) -> Result<Thread, String> {
    let tcb = store.tcb(thread);
    let state = match tcb.state {
        KernelThreadState::Inactive => ThreadState::Inactive,
        KernelThreadState::Runnable => ThreadState::Runnable,
        KernelThreadState::BlockedOnSend { endpoint, badge, can_grant, is_call } => {
            ThreadState::BlockedOnSend { endpoint: endpoint.as_u64(), badge, can_grant, is_call }
        }
        KernelThreadState::BlockedOnReceive { endpoint, reply } => {
            ThreadState::BlockedOnReceive { endpoint: endpoint.as_u64(), reply: reply.map(PhysAddr::as_u64) }
        }
        KernelThreadState::BlockedOnReply { reply } => ThreadState::BlockedOnReply { reply: reply.as_u64() },
        KernelThreadState::BlockedOnNotification { notification } => {
            ThreadState::BlockedOnNotification { notification: notification.as_u64() }
        }
        KernelThreadState::Sleeping => ThreadState::Sleeping,
    };
    let registers = tcb.registers;
    let chosen = [registers.rip, registers.rsp, registers.rflags, registers.rdi, registers.rsi, registers.rdx];
    let mut others = registers;
    (others.rip, others.rsp, others.rflags, others.rdi, others.rsi, others.rdx) = (0, 0, 0, 0, 0, 0);
    if others != ipc::UserRegisters::ZERO {
        return Err(format!("thread {:#x}: registers no call sets are not zero: {others:?}", id(thread)));
    }
    Ok(Thread {
        state,
        priority: tcb.priority,
        max_priority: tcb.max_priority,
        sched_context: tcb.sched_context.map(PhysAddr::as_u64),
        passive: tcb.passive,
        loan: tcb.loan.map(|loan| Loan { reply: loan.reply.as_u64(), context: loan.context.as_u64() }),
        info: Info { label: tcb.info.label, length: tcb.info.length, caps: tcb.info.caps },
        words: tcb.words.to_vec(),
        badge: tcb.badge,
        extra: tcb.extra_cptrs,
        receive: tcb.receive_slot.map(|slot| (slot.cptr, slot.depth)),
        resumption: match tcb.resumption {
            ipc::Resumption::Results => Resumption::Results,
            ipc::Resumption::Restart => Resumption::Restart,
            ipc::Resumption::Fresh => Resumption::Fresh,
            ipc::Resumption::Again => {
                return Err(format!(
                    "thread {:#x}: a VMEnter to run again (the harness has no host interrupts)",
                    id(thread)
                ));
            }
        },
        registers: chosen,
        vcpu: tcb.vcpu.map(PhysAddr::as_u64),
        bound_notification: tcb.bound_notification.map(PhysAddr::as_u64),
        wake_at: tcb.wake_at(),
    })
}

/// The kernel's thread queues are well formed: each one's links are
/// symmetric, every member is marked queued and is in no other queue, a
/// thread in no queue has no links, each endpoint's direction flag
/// matches its members' states (idle exactly when empty), a notification
/// with no signal pending has a zero word, and the ready-priority bitmap
/// names exactly the non-empty ready queues.
///
/// # Errors
///
/// What is wrong.
pub fn queues_well_formed(kernel: &Kernel<MapStore>, state: &State) -> Result<(), String> {
    let store = &kernel.store;
    // (what holds the queue, which one, the queue): named only on failure.
    let mut queues: Vec<(&str, u64, Queue)> = Vec::new();
    for priority in 0..=u8::MAX {
        let queue = *kernel.scheduler.queue(priority);
        if queue != Queue::EMPTY {
            queues.push(("ready queue", u64::from(priority), queue));
        }
    }
    queues.push(("the release queue", 0, *kernel.scheduler.release_queue()));
    for object in state.objects.keys() {
        let at = PhysAddr::new(object.base);
        match object.kind {
            Kind::Endpoint => {
                let endpoint = store.endpoint(at);
                let members = walk(store, &endpoint.queue)?;
                let direction = match endpoint.state {
                    ipc::EndpointState::Idle => None,
                    ipc::EndpointState::Sending => Some(true),
                    ipc::EndpointState::Receiving => Some(false),
                };
                if direction.is_none() != members.is_empty() {
                    return Err(format!(
                        "endpoint {:#x}: {:?} with {} waiting",
                        object.base,
                        endpoint.state,
                        members.len()
                    ));
                }
                for member in &members {
                    let sending = matches!(
                        store.tcb(ThreadId::new(PhysAddr::new(*member))).state,
                        KernelThreadState::BlockedOnSend { .. }
                    );
                    if direction != Some(sending) {
                        return Err(format!(
                            "endpoint {:#x} is {:?} but holds {member:#x}",
                            object.base, endpoint.state
                        ));
                    }
                }
                queues.push(("endpoint", object.base, endpoint.queue));
            }
            Kind::Notification => {
                let notification = store.notification(at);
                if !notification.active && notification.word != 0 {
                    return Err(format!(
                        "notification {:#x}: no signal pending but word {:#x}",
                        object.base, notification.word
                    ));
                }
                queues.push(("notification", object.base, notification.waiters));
            }
            _ => {}
        }
    }
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    for (holder, which, queue) in &queues {
        let name = format!("{holder} {which:#x}");
        let members = walk(store, queue)?;
        for (index, member) in members.iter().enumerate() {
            let links = store.tcb(ThreadId::new(PhysAddr::new(*member))).queue_links();
            let previous = index.checked_sub(1).map(|before| members[before]);
            if !links.queued || links.previous.map(id) != previous {
                return Err(format!("{member:#x} in {name}: its links disagree with the queue ({links:?})"));
            }
            if let Some(other) = seen.insert(*member, name.clone()) {
                return Err(format!("{member:#x} is in {other} and in {name}"));
            }
        }
    }
    for tcb in state.threads.keys() {
        let links = store.tcb(ThreadId::new(PhysAddr::new(*tcb))).queue_links();
        if !seen.contains_key(tcb) && links != ipc::QueueLinks::default() {
            return Err(format!("{tcb:#x} is in no queue but has links {links:?}"));
        }
    }
    // The sleep queue, through the sleep links: symmetric, each member
    // once and marked, and no other thread with sleep links.
    let sleepers = walk_sleepers(store, kernel.scheduler.sleep_queue())?;
    for (index, member) in sleepers.iter().enumerate() {
        let links = store.tcb(ThreadId::new(PhysAddr::new(*member))).sleep_links();
        let previous = index.checked_sub(1).map(|before| sleepers[before]);
        if !links.queued || links.previous.map(id) != previous || sleepers[..index].contains(member) {
            return Err(format!("{member:#x} in the sleep queue: its links disagree with the queue ({links:?})"));
        }
    }
    for tcb in state.threads.keys() {
        let links = store.tcb(ThreadId::new(PhysAddr::new(*tcb))).sleep_links();
        if !sleepers.contains(tcb) && links != ipc::QueueLinks::default() {
            return Err(format!("{tcb:#x} is not asleep but has sleep links {links:?}"));
        }
    }
    let highest = state.sched.ready.keys().next_back().copied();
    if kernel.scheduler.highest_ready_priority() != highest {
        return Err(format!(
            "the ready bitmap says {:?}, the queues {highest:?}",
            kernel.scheduler.highest_ready_priority()
        ));
    }
    Ok(())
}

/// The kernel's derivation list is well formed: its links are symmetric
/// and name occupied slots, following them from the list heads reaches
/// every capability exactly once, and the capabilities to one object are
/// neighbours (what the kernel's "last capability" test relies on).
///
/// # Errors
///
/// What is wrong with the list.
pub fn derivation_list_well_formed(store: &MapStore) -> Result<(), String> {
    let occupied: Vec<(SlotRef, KernelCap)> = store.occupied().map(|(at, slot)| (at, slot.cap)).collect();
    for (at, _) in &occupied {
        let links = store.slot(*at).links;
        for (neighbour, back) in [(links.next, true), (links.previous, false)] {
            let Some(neighbour) = neighbour else { continue };
            let other = store.slot(neighbour);
            let points_back = if back { other.links.previous } else { other.links.next };
            if other.cap.is_null() || points_back != Some(*at) {
                return Err(format!(
                    "slot {:#x}: its links and {:#x}'s disagree",
                    at.address().as_u64(),
                    neighbour.address().as_u64()
                ));
            }
        }
    }
    let mut visited = BTreeSet::new();
    let mut order = Vec::new();
    for (head, _) in occupied.iter().filter(|(at, _)| store.slot(*at).links.previous.is_none()) {
        let mut next = Some(*head);
        while let Some(at) = next {
            if !visited.insert(at) {
                return Err(format!("the derivation list loops at {:#x}", at.address().as_u64()));
            }
            order.push(Some(at));
            next = store.slot(at).links.next;
        }
        // Separate lists: their ends are not neighbours.
        order.push(None);
    }
    if visited.len() != occupied.len() {
        return Err(format!("{} capabilities are on no list", occupied.len() - visited.len()));
    }
    // Capabilities to one object form one run of the list order.
    let mut finished: BTreeSet<ObjectId> = BTreeSet::new();
    let mut current: Option<ObjectId> = None;
    for at in order {
        let object = at.and_then(|at| abstract_cap(&store.slot(at).cap).ok()).map(|cap| cap.object());
        let object = object.filter(|object| object.kind != Kind::Untyped);
        if object != current {
            if let Some(done) = current {
                finished.insert(done);
            }
            if let Some(object) = object
                && finished.contains(&object)
            {
                return Err(format!("capabilities to {object:?} are not neighbours in the derivation list"));
            }
            current = object;
        }
    }
    Ok(())
}
