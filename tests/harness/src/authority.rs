//! Authority confinement: what each thread can reach through its CSpace,
//! and the take-grant closure that bounds what it could ever come to hold.
//!
//! A thread's *holdings* are the capabilities in every CNode reachable
//! from its CSpace root (the root, and every CNode a capability in a
//! reachable CNode names), each as an [`Authority`]: the object, the
//! rights, the badge. Authority can pass from thread `A` to thread `S`
//! only along these edges (seL4's take-grant model for this kernel's
//! invocations):
//!
//! - `A` holds `S`'s TCB: TCB::SetSpace can give `S` any CNode `A` holds;
//! - `A` and `S` both hold one CNode: what `A` puts there `S` can use;
//! - `A` holds an endpoint with WRITE and GRANT and `S` holds it with
//!   READ: a message can carry one of `A`'s capabilities to `S` (a reply
//!   carries none in this kernel);
//! - `A` holds the VSpace (PML4) `S` runs in: what `A` maps there `S` can
//!   use;
//! - `A` holds the VCpu `S` runs, or the GuestSpace it runs in:
//!   VCpu::SetSpace can give `S` any GuestSpace `A` holds, and what `A`
//!   maps into that GuestSpace `S`'s guest can use.
//!
//! Mappings are authority too: a thread's holdings also include the
//! VSpace in its TCB and every frame mapped in that VSpace (while its
//! ASID names it), with READ, and WRITE if the page is writable. A VCpu
//! bound to a thread is the thread's too (its VMEnter runs the guest),
//! with the GuestSpace in the VCpu's slot and every frame mapped there.
//!
//! Only a thread that can act gives: one that is not stopped, or one
//! whose TCB a thread that can act holds (it can be resumed). Objects made
//! from an untyped region belong to whoever holds the region. The
//! *closure* of a state gives each thread everything that can reach it
//! along those edges, transitively. Two checks use it:
//! [`confined_step`] (after every step, each thread's holdings lie within
//! the closure of the state before the step: nothing is gained that was
//! not derivable from what the thread, or one that may give to it, held)
//! and [`within_policy`] (each protection domain's holdings lie within the
//! closure of the authority its manifest grants it).

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::threads::{GRANT, READ};
use crate::spec::{ALL_RIGHTS, Cap, Kind, ObjectId, Pte, SLOT_BYTES, State, WRITE};

/// One capability's authority: its object (an untyped's region), its
/// rights (all four for capabilities without rights) and its badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Authority {
    /// The object or region.
    pub object: ObjectId,
    /// READ, WRITE, GRANT, GRANT_REPLY bits.
    pub rights: u8,
    /// The badge (0: none).
    pub badge: u64,
}

impl Authority {
    /// The authority `cap` carries.
    #[must_use]
    pub fn of(cap: &Cap) -> Authority {
        Authority { object: cap.object(), rights: cap.rights().unwrap_or(ALL_RIGHTS), badge: cap.badge().unwrap_or(0) }
    }

    /// Whether holding `self` lets a thread make `other`: the same object
    /// with no right more, and the same badge or (from an unbadged
    /// capability) any; or, as an untyped region, memory inside it; or, as
    /// IrqControl, any line's handler.
    #[must_use]
    pub fn covers(&self, other: &Authority) -> bool {
        if self.object.kind == Kind::Untyped && self.object.contains(&other.object) {
            return true;
        }
        // IrqControl issues every line's handler.
        if self.object.kind == Kind::IrqControl && other.object.kind == Kind::IrqHandler {
            return true;
        }
        self.object == other.object
            && other.rights & !self.rights == 0
            && (self.badge == other.badge || self.badge == 0)
    }
}

/// Authority by thread (TCB address).
pub type Graph = BTreeMap<u64, BTreeSet<Authority>>;

/// What `thread` can reach through its CSpace.
#[must_use]
pub fn holdings(state: &State, thread: u64) -> BTreeSet<Authority> {
    let mut held = BTreeSet::new();
    let mut visited = BTreeSet::new();
    // The CSpace root sits in the TCB's slot 0.
    let mut frontier: Vec<Cap> = state.cap(thread).into_iter().collect();
    while let Some(cap) = frontier.pop() {
        held.insert(Authority::of(&cap));
        let Cap::CNode { base, radix, .. } = cap else { continue };
        if !visited.insert(base) {
            continue;
        }
        let end = base + (1_u64 << radix) * SLOT_BYTES;
        frontier.extend(state.slots.range(base..end).map(|(_, entry)| entry.cap));
    }
    held.extend(mapped(state, state.cap(State::vspace_slot(thread))));
    if let Some(vcpu) = state.threads.get(&thread).and_then(|thread| thread.vcpu) {
        held.insert(Authority::of(&Cap::VCpu { base: vcpu }));
        held.extend(mapped(state, state.cap(State::vcpu_space_slot(vcpu))));
    }
    held
}

/// A space and what is mapped there: the PML4 or GuestSpace `space`
/// (a VSpace slot's or a VCpu's), and each page reachable through its
/// ASID as its frame with READ (and WRITE if writable).
fn mapped(state: &State, space: Option<Cap>) -> Vec<Authority> {
    let Some(vspace @ Cap::PageTable { base: pml4, mapping: Some(mapping), .. }) = space else {
        return space.map(|cap| Authority::of(&cap)).into_iter().collect();
    };
    let mut found = vec![Authority::of(&vspace)];
    if state.vspace_of(mapping.asid) != Some(pml4) {
        return found;
    }
    let asid = vspace.mapping().map(|mapping| mapping.asid);
    for (_, table, _, _) in state.reachable_tables().into_iter().filter(|(at, ..)| Some(*at) == asid) {
        let Some(contents) = state.tables.get(&table) else { continue };
        for entry in contents.entries.values() {
            if let Pte::Page { base, size_bits, write, .. } = *entry {
                let rights = if write { READ | WRITE } else { READ };
                found.push(Authority { object: ObjectId { base, kind: Kind::Frame, size_bits }, rights, badge: 0 });
            }
        }
    }
    debug_assert!(found.first().is_some_and(|first| first.object.base == pml4));
    found
}

/// Every live thread's holdings (computed once per CSpace root: threads
/// that share one hold the same).
#[must_use]
pub fn graph(state: &State) -> Graph {
    type Space = Option<(ObjectId, Option<crate::spec::Mapping>)>;
    type Key = (Option<(u64, u8)>, Space, Option<(u64, Space)>);
    let mut by_root: BTreeMap<Key, BTreeSet<Authority>> = BTreeMap::new();
    let mut graph = Graph::new();
    for thread in state.threads.keys() {
        let root = match state.cap(*thread) {
            Some(Cap::CNode { base, radix, .. }) => Some((base, radix)),
            _ => None,
        };
        let space = |slot: u64| state.cap(slot).map(|space| (space.object(), space.mapping()));
        let vcpu = state.threads[thread].vcpu.map(|vcpu| (vcpu, space(State::vcpu_space_slot(vcpu))));
        let key = (root, space(State::vspace_slot(*thread)), vcpu);
        let held = by_root.entry(key).or_insert_with(|| holdings(state, *thread)).clone();
        graph.insert(*thread, held);
    }
    graph
}

/// Whether authority may pass from `giver` to `taker` (TCB addresses),
/// given what each holds.
fn may_give(giver: (u64, &BTreeSet<Authority>), taker: (u64, &BTreeSet<Authority>)) -> bool {
    let (_, gives) = giver;
    let (taker_tcb, takes) = taker;
    gives.iter().any(|item| match item.object.kind {
        Kind::Tcb => item.object.base == taker_tcb,
        Kind::CNode | Kind::Pml4 | Kind::VCpu | Kind::GuestSpace => {
            takes.iter().any(|other| other.object == item.object)
        }
        Kind::Endpoint => {
            item.rights & (WRITE | GRANT) == WRITE | GRANT
                && takes.iter().any(|other| other.object == item.object && other.rights & READ != 0)
        }
        _ => false,
    })
}

/// The threads of `state` that can act: those not stopped, and those
/// whose TCB a thread that can act holds.
#[must_use]
pub fn actors(state: &State, graph: &Graph) -> BTreeSet<u64> {
    let mut acting: BTreeSet<u64> = state
        .threads
        .iter()
        .filter(|(_, thread)| thread.state != crate::spec::ThreadState::Inactive)
        .map(|(tcb, _)| *tcb)
        .collect();
    loop {
        let resumable: Vec<u64> = acting
            .iter()
            .filter_map(|actor| graph.get(actor))
            .flatten()
            .filter(|item| item.object.kind == Kind::Tcb && graph.contains_key(&item.object.base))
            .map(|item| item.object.base)
            .filter(|tcb| !acting.contains(tcb))
            .collect();
        if resumable.is_empty() {
            return acting;
        }
        acting.extend(resumable);
    }
}

/// The take-grant closure of `graph`: each thread's authority with all
/// that can reach it from the threads in `actors` along the module's
/// edges, transitively.
#[must_use]
pub fn closure(graph: &Graph, actors: &BTreeSet<u64>) -> Graph {
    let mut closed = graph.clone();
    loop {
        let mut grown = false;
        let snapshot = closed.clone();
        for (taker, takes) in &mut closed {
            for (giver, gives) in snapshot.iter().filter(|(giver, _)| actors.contains(giver)) {
                if giver != taker && may_give((*giver, gives), (*taker, &snapshot[taker])) {
                    let before = takes.len();
                    takes.extend(gives.iter().copied());
                    grown |= takes.len() != before;
                }
            }
        }
        if !grown {
            return closed;
        }
    }
}

/// Whether `allowed` covers `item`.
#[must_use]
pub fn allowed(allowed: &BTreeSet<Authority>, item: &Authority) -> bool {
    allowed.iter().any(|held| held.covers(item))
}

/// The first item of a thread's holdings in `after` outside its `bound`.
fn first_outside(bound: &Graph, after: &Graph) -> Result<(), String> {
    for (thread, held) in after {
        let Some(limit) = bound.get(thread) else { continue };
        if let Some(item) = held.iter().find(|item| !allowed(limit, item)) {
            return Err(format!("thread {thread:#x} holds {item:x?}, which nothing it could reach allowed"));
        }
    }
    Ok(())
}

/// After a step from `before` to `after`: every thread live in both holds
/// only what the closure of `before` allowed it. (The closure is computed
/// only when some thread holds what its own holdings before did not
/// cover: most steps give nobody anything new.)
///
/// # Errors
///
/// The first thread, and the authority, outside it.
pub fn confined_step(before: &State, after: &State) -> Result<(), String> {
    let (before_graph, after_graph) = (graph(before), graph(after));
    if first_outside(&before_graph, &after_graph).is_ok() {
        return Ok(());
    }
    let actors = actors(before, &before_graph);
    first_outside(&closure(&before_graph, &actors), &after_graph)
}

/// The closure of a manifest's authority graph, for [`within_policy`]:
/// every domain can act.
#[must_use]
pub fn policy_closure(policy: &Graph) -> Graph {
    let every_domain: BTreeSet<u64> = policy.keys().copied().collect();
    closure(policy, &every_domain)
}

/// Every thread `closed` (a [`policy_closure`]) names holds, in `state`,
/// only what it allows.
///
/// # Errors
///
/// The first thread, and the authority, outside it.
pub fn within_policy(closed: &Graph, state: &State) -> Result<(), String> {
    let held: Graph = closed.keys().map(|thread| (*thread, holdings(state, *thread))).collect();
    first_outside(closed, &held)
}
