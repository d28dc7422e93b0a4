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

use kernel_core::cap::{Cap as KernelCap, SlotRef, SlotStore, derivation};
use kernel_core::ipc::{ThreadId, ThreadState};
use kernel_core::memory::PhysAddr;
use kernel_core::store::{MapStore, ObjectStore};
use kernel_core::syscall::Kernel;

use crate::spec::{Cap, Entry, Kind, Object, ObjectId, State, Thread};

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
        other => return Err(format!("a capability outside the spec: {other:?}")),
    })
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
/// the nearest untyped its capabilities descend from) and the threads the
/// spec knows.
///
/// # Errors
///
/// What could not be projected: a capability of a type outside the spec,
/// or capabilities to one object descending from different untypeds.
pub fn project(kernel: &Kernel<MapStore>, threads: &BTreeMap<u64, Thread>) -> Result<State, String> {
    let store = &kernel.store;
    let mut state = State::default();
    // Parent: among the capabilities whose descendants include a slot, the
    // one with the fewest descendants.
    let mut best: BTreeMap<SlotRef, (usize, SlotRef)> = BTreeMap::new();
    for (at, slot) in store.occupied() {
        let cap = abstract_cap(&slot.cap).map_err(|error| format!("slot {:#x}: {error}", at.address().as_u64()))?;
        state.slots.insert(at.address().as_u64(), Entry { cap, parent: None, original: slot.links.revocable });
        let below = list_descendants(store, at);
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
    for tcb in threads.keys() {
        let stopped = store.tcb(ThreadId::new(PhysAddr::new(*tcb))).state == ThreadState::Inactive;
        state.threads.insert(*tcb, Thread { active: !stopped });
    }
    Ok(state)
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
