//! Derivation-tree operations: insert a derived capability, move one,
//! delete one, revoke everything derived from one.
//!
//! These act; they do not check. The invocation decoders check every
//! precondition (slots empty or full, rights, depths) before calling them,
//! so nothing here fails on user input. Deletion and revocation can be long
//! and take a work budget: when it runs out they stop at a consistent state
//! and report [`Preempted`], and the kernel restarts the system call.

use super::capability::Cap;
use super::object::{SLOT_BITS, TCB_SLOT_BITS};
use super::slot::{DerivationLinks, Slot, SlotRef, SlotStore};
use crate::memory::PhysAddr;

/// A long operation ran out of its work budget; the state is consistent and
/// the operation can be started again to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preempted;

/// How much work a long operation may do before it yields: each deleted
/// capability costs one unit. Scanning a CNode for its next occupied slot
/// is not charged (it is bounded by `MAX_CNODE_RADIX` and must finish for
/// the operation to progress at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkBudget(pub u32);

impl WorkBudget {
    /// Spends one unit, or reports that none is left.
    fn spend(&mut self) -> Result<(), Preempted> {
        self.0 = self.0.checked_sub(1).ok_or(Preempted)?;
        Ok(())
    }
}

/// What removing a capability from its slot must undo besides unlinking
/// it: a mapped frame's mapping, and for the last capability to an object,
/// every reference the kernel holds to the object (threads queued on an
/// endpoint, a thread in the scheduler, a bound scheduling context...), so
/// that its memory can be retyped without anything still pointing into it.
pub trait Finalise<S: ?Sized> {
    /// `cap` is about to leave its slot; `is_final` says no other
    /// capability names its object. Must not fail and must not touch the
    /// derivation tree.
    fn removing(&mut self, store: &mut S, cap: Cap, is_final: bool);
}

/// Finalisation that does nothing, for tests of the derivation tree alone
/// (objects without kernel state).
#[derive(Clone, Copy, Debug, Default)]
pub struct OnlyUnlink;

impl<S: ?Sized> Finalise<S> for OnlyUnlink {
    fn removing(&mut self, _store: &mut S, _cap: Cap, _is_final: bool) {}
}

/// Whether the capability in `parent` is a derivation-tree parent of the
/// one in `child` (seL4's `isMDBParentOf`).
pub fn is_parent_of<S: SlotStore + ?Sized>(store: &S, parent: SlotRef, child: SlotRef) -> bool {
    let (parent, child) = (store.slot(parent), store.slot(child));
    if !parent.links.revocable || !parent.cap.same_region_as(&child.cap) {
        return false;
    }
    match parent.cap.badge() {
        // A badged endpoint or notification capability is the parent only
        // of copies with its badge, up to the next newly badged one.
        Some(badge) if badge != 0 => child.cap.badge() == Some(badge) && !child.links.first_badged,
        _ => true,
    }
}

/// Whether the capability in `at` has derived children.
pub fn has_children<S: SlotStore + ?Sized>(store: &S, at: SlotRef) -> bool {
    store.slot(at).links.next.is_some_and(|next| is_parent_of(store, at, next))
}

/// Whether the capability in `at` is the last one to its object.
pub fn is_final<S: SlotStore + ?Sized>(store: &S, at: SlotRef) -> bool {
    let slot = store.slot(at);
    let shares_object = |neighbour: Option<SlotRef>| {
        neighbour.is_some_and(|neighbour| slot.cap.same_object_as(&store.slot(neighbour).cap))
    };
    !shares_object(slot.links.previous) && !shares_object(slot.links.next)
}

/// Puts an original capability (one the kernel creates at boot, with no
/// parent: the initial untypeds and control capabilities) into the empty
/// slot `at`, outside any derivation chain. It is revocable: what is
/// derived from it can be revoked.
pub fn insert_original(store: &mut impl SlotStore, at: SlotRef, cap: Cap) {
    *store.slot_mut(at) =
        Slot { cap, links: DerivationLinks { previous: None, next: None, revocable: true, first_badged: true } };
}

/// Puts `cap`, derived from the capability in `parent`, into the empty
/// slot `destination`, directly after its parent in derivation order.
/// `is_new_object` marks a capability to an object that retype just made.
pub fn insert_derived(
    store: &mut impl SlotStore,
    parent: SlotRef,
    destination: SlotRef,
    cap: Cap,
    is_new_object: bool,
) {
    let parent_cap = store.slot(parent).cap;
    let revocable = is_new_object || cap.is_revocable_derivation_of(&parent_cap);
    let next = store.slot(parent).links.next;
    *store.slot_mut(destination) =
        Slot { cap, links: DerivationLinks { previous: Some(parent), next, revocable, first_badged: revocable } };
    store.slot_mut(parent).links.next = Some(destination);
    if let Some(next) = next {
        store.slot_mut(next).links.previous = Some(destination);
    }
}

/// Moves the capability in `source` to the empty slot `destination`,
/// replacing it with `cap` (the same capability, or a mutated one), and
/// keeps its place in derivation order.
pub fn move_cap(store: &mut impl SlotStore, source: SlotRef, destination: SlotRef, cap: Cap) {
    let links = store.slot(source).links;
    *store.slot_mut(destination) = Slot { cap, links };
    *store.slot_mut(source) = Slot::EMPTY;
    // Mutant: the capability before the moved one still points at its old slot.
    #[cfg(bulkhead_mutant = "move_keeps_stale_link")]
    let links = DerivationLinks { previous: None, ..links };
    if let Some(previous) = links.previous {
        store.slot_mut(previous).links.next = Some(destination);
    }
    if let Some(next) = links.next {
        store.slot_mut(next).links.previous = Some(destination);
    }
}

/// Empties `at` and unlinks it; its children become children of its parent.
fn unlink<S: SlotStore + ?Sized>(store: &mut S, at: SlotRef) {
    let links = store.slot(at).links;
    if let Some(previous) = links.previous {
        store.slot_mut(previous).links.next = links.next;
    }
    if let Some(next) = links.next {
        let next_links = &mut store.slot_mut(next).links;
        next_links.previous = links.previous;
        // The next capability inherits the badge boundary, so that a
        // badged parent's children still end where they did.
        next_links.first_badged |= links.first_badged;
    }
    *store.slot_mut(at) = Slot::EMPTY;
}

/// The first occupied slot of a CNode other than `skip`.
fn first_occupied<S: SlotStore + ?Sized>(store: &S, base: PhysAddr, radix_bits: u8, skip: SlotRef) -> Option<SlotRef> {
    (0..1_u64 << radix_bits)
        .filter_map(|index| SlotRef::in_cnode(base, index))
        .find(|at| *at != skip && !store.slot(*at).cap.is_null())
}

/// The capability slots inside the object a capability names: a CNode's,
/// a TCB's (its CSpace root, fault endpoint...) or a VCpu's (its
/// GuestSpace), as (base, log2 count).
fn inner_slots(cap: &Cap) -> Option<(PhysAddr, u8)> {
    match *cap {
        Cap::CNode { base, radix_bits, .. } => Some((base, radix_bits)),
        Cap::Tcb { object } => Some((object, TCB_SLOT_BITS)),
        Cap::VCpu { object } => Some((crate::vcpu::space_slot(object)?.address(), crate::vcpu::VCPU_SLOT_BITS)),
        _ => None,
    }
}

/// Deletes the capability in `at`. If it is the last capability to a
/// CNode or a TCB, the object's own slots are emptied first, iteratively: a
/// chain of objects holding each other's last capabilities never deepens
/// the kernel stack. The descent never returns to `at` (the only way a
/// chain of last capabilities can form a cycle is through the slot being
/// deleted), so it ends, and every round deletes one capability, after
/// `finalise` has undone what the kernel holds of it.
///
/// # Errors
///
/// [`Preempted`] when `budget` runs out; deleting again continues.
pub fn delete<S: SlotStore + ?Sized>(
    store: &mut S,
    at: SlotRef,
    budget: &mut WorkBudget,
    finalise: &mut impl Finalise<S>,
) -> Result<(), Preempted> {
    loop {
        // Walk down from `at` through last capabilities to objects with
        // occupied slots, to a slot that can go right away.
        let mut target = at;
        while let Some((base, radix_bits)) = inner_slots(&store.slot(target).cap) {
            // Mutant: a CNode's last capability goes without its contents.
            #[cfg(bulkhead_mutant = "delete_keeps_cnode_contents")]
            if matches!(store.slot(target).cap, Cap::CNode { .. }) {
                break;
            }
            if !is_final(store, target) {
                break;
            }
            // A thread whose TCB is going stops before its slots (CSpace,
            // VSpace, IPC buffer) are emptied: it never runs without them
            // while a long delete is preempted (finalising again when the
            // TCB capability itself goes changes nothing).
            let cap = store.slot(target).cap;
            if matches!(cap, Cap::Tcb { .. }) {
                finalise.removing(store, cap, true);
            }
            match first_occupied(store, base, radix_bits, at) {
                Some(inner) => target = inner,
                None => break,
            }
        }
        budget.spend()?;
        let cap = store.slot(target).cap;
        let last = is_final(store, target);
        finalise.removing(store, cap, last);
        unlink(store, target);
        if target == at {
            return Ok(());
        }
    }
}

/// Deletes every capability derived from the one in `at` (which stays).
///
/// # Errors
///
/// [`Preempted`] when `budget` runs out; revoking again continues.
pub fn revoke<S: SlotStore + ?Sized>(
    store: &mut S,
    at: SlotRef,
    budget: &mut WorkBudget,
    finalise: &mut impl Finalise<S>,
) -> Result<(), Preempted> {
    while has_children(store, at) {
        let Some(child) = store.slot(at).links.next else { break };
        // Mutant: the last capability derived from `at` survives.
        #[cfg(bulkhead_mutant = "revoke_leaves_one_child")]
        if !store.slot(child).links.next.is_some_and(|after| is_parent_of(store, at, after)) {
            break;
        }
        delete(store, child, budget, finalise)?;
    }
    Ok(())
}

/// The slot count of a CNode whose slots occupy `2^size_bits` bytes.
#[must_use]
pub const fn slots_in(size_bits: u8) -> u64 {
    1 << (size_bits - SLOT_BITS)
}
