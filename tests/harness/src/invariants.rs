//! The invariants checked after every step, each a function over the
//! abstract state (the spec's, and the kernel's projected onto it) that
//! returns what it found wrong. `docs/VERIFICATION.md` says which of
//! seL4's invariants each one mirrors.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{Boot, Cap, Kind, ObjectId, SLOT_BYTES, State};

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
pub const ALL: [Invariant; 13] = [
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
];

/// Runs every invariant; the broken ones, in order.
#[must_use]
pub fn check_all(state: &State, boot: &Boot) -> Vec<Broken> {
    ALL.iter()
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
    let containers: Vec<(u64, u64)> = state
        .objects
        .keys()
        .filter(|object| object.slot_count() > 0)
        .map(|object| (object.base, object.slot_count()))
        .collect();
    for (slot, entry) in &state.slots {
        let inside = containers.iter().any(|(base, count)| {
            *slot >= *base && (*slot - *base) % SLOT_BYTES == 0 && (*slot - *base) / SLOT_BYTES < *count
        });
        if !inside {
            return Err(format!("slot {slot:#x} ({:?}) is in no live CNode or TCB", entry.cap));
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
        if !in_untyped && !boot_objects.contains(&object) {
            return Err(format!("slot {slot:#x}: {:?} reaches kernel memory", entry.cap));
        }
    }
    Ok(())
}
