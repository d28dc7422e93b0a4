//! Invocations on CNode and Untyped capabilities, split seL4's way:
//! [`decode`] checks everything and changes nothing; [`invoke`] acts and
//! cannot fail on user input (only run out of its work budget, after which
//! the kernel restarts the system call).
//!
//! The ABI (labels, argument words, extra capabilities, errors) is listed in
//! `docs/abi.md`, which `tests` below keep in step with [`LABELS`].

use super::capability::Cap;
use super::cspace::{CPTR_BITS, resolve_exact};
use super::derivation::{self, Finalise, Preempted, WorkBudget};
use super::object::{ObjectKind, RETYPE_FAN_OUT_LIMIT};
use super::rights::Rights;
use super::slot::{SlotRef, SlotStore};
use crate::error::SyscallError;
use crate::memory::PhysAddr;

/// Invocation labels: the first word of an invocation message.
pub mod label {
    /// CNode: delete every capability derived from a slot's capability.
    pub const CNODE_REVOKE: u64 = 1;
    /// CNode: delete a slot's capability.
    pub const CNODE_DELETE: u64 = 2;
    /// CNode: copy a capability, with fewer rights if asked.
    pub const CNODE_COPY: u64 = 3;
    /// CNode: copy a capability with fewer rights and a badge or guard.
    pub const CNODE_MINT: u64 = 4;
    /// CNode: move a capability.
    pub const CNODE_MOVE: u64 = 5;
    /// CNode: move a capability, setting a badge or guard.
    pub const CNODE_MUTATE: u64 = 6;
    /// Untyped: create objects.
    pub const UNTYPED_RETYPE: u64 = 16;
}

/// Every label with its name, argument words and extra capabilities, as
/// `docs/abi.md` lists them.
pub const LABELS: [(u64, &str, &[&str], &[&str]); 7] = [
    (label::CNODE_REVOKE, "CNode::Revoke", &["index", "depth"], &[]),
    (label::CNODE_DELETE, "CNode::Delete", &["index", "depth"], &[]),
    (
        label::CNODE_COPY,
        "CNode::Copy",
        &["dest_index", "dest_depth", "src_index", "src_depth", "rights"],
        &["src_root"],
    ),
    (
        label::CNODE_MINT,
        "CNode::Mint",
        &["dest_index", "dest_depth", "src_index", "src_depth", "rights", "data"],
        &["src_root"],
    ),
    (label::CNODE_MOVE, "CNode::Move", &["dest_index", "dest_depth", "src_index", "src_depth"], &["src_root"]),
    (
        label::CNODE_MUTATE,
        "CNode::Mutate",
        &["dest_index", "dest_depth", "src_index", "src_depth", "data"],
        &["src_root"],
    ),
    (
        label::UNTYPED_RETYPE,
        "Untyped::Retype",
        &["type", "size_bits", "node_index", "node_depth", "node_offset", "count"],
        &["node_root"],
    ),
];

/// An invocation message as the syscall layer hands it over: the label,
/// the argument words, and the extra capabilities, already looked up in the
/// caller's CSpace (`None` where the lookup failed).
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// What to do.
    pub label: u64,
    /// The arguments.
    pub words: &'a [u64],
    /// The extra capabilities' slots.
    pub extra_caps: &'a [Option<SlotRef>],
}

impl Message<'_> {
    pub(crate) fn word(&self, index: usize) -> Result<u64, SyscallError> {
        self.words.get(index).copied().ok_or(SyscallError::TruncatedMessage)
    }

    /// A lookup depth: 1 to 64 bits, or also 0 where `allow_zero` (a
    /// retype's destination: the root CNode itself).
    pub(crate) fn depth(&self, index: usize, allow_zero: bool) -> Result<u8, SyscallError> {
        let depth = self.word(index)?;
        let lowest = if allow_zero { 0 } else { 1 };
        // Mutant: a depth one past the address's 64 bits passes the decode.
        let highest = if cfg!(bulkhead_mutant = "lookup_depth_off_by_one") { CPTR_BITS + 1 } else { CPTR_BITS };
        if (lowest..=u64::from(highest)).contains(&depth) {
            u8::try_from(depth).map_err(|_| SyscallError::RangeError)
        } else {
            Err(SyscallError::RangeError)
        }
    }

    pub(crate) fn extra_cap(&self, store: &impl SlotStore, index: usize) -> Result<Cap, SyscallError> {
        match self.extra_caps.get(index) {
            None => Err(SyscallError::TruncatedMessage),
            Some(None) => Err(SyscallError::InvalidCapability),
            Some(Some(slot)) => Ok(store.slot(*slot).cap),
        }
    }
}

/// A decoded invocation: everything checked, ready to act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Delete everything derived from the capability in `slot`.
    Revoke {
        /// The slot.
        slot: SlotRef,
    },
    /// Delete the capability in `slot` (an empty slot stays empty).
    Delete {
        /// The slot.
        slot: SlotRef,
    },
    /// Put `cap`, derived from `source`'s capability, into `destination`.
    Derive {
        /// The parent.
        source: SlotRef,
        /// The empty destination.
        destination: SlotRef,
        /// The derived capability.
        cap: Cap,
    },
    /// Move `source`'s capability into `destination` as `cap`.
    Move {
        /// The slot emptied.
        source: SlotRef,
        /// The empty destination.
        destination: SlotRef,
        /// The capability as it lands (mutated or not).
        cap: Cap,
    },
    /// Create `count` objects in the untyped at `untyped`.
    Retype {
        /// The untyped's slot.
        untyped: SlotRef,
        /// What to make.
        kind: ObjectKind,
        /// log2 of each object's size.
        object_bits: u8,
        /// Offset in the untyped of the first object.
        start_offset: u64,
        /// The CNode whose slots receive the capabilities.
        node_base: PhysAddr,
        /// The first of those slots.
        node_offset: u64,
        /// How many.
        count: u64,
    },
}

/// Checks an invocation of the capability in `invoked` and says what it
/// will do. Changes nothing.
///
/// # Errors
///
/// The [`SyscallError`] the caller receives.
pub fn decode(store: &impl SlotStore, invoked: SlotRef, message: &Message<'_>) -> Result<Invocation, SyscallError> {
    let cap = store.slot(invoked).cap;
    match (cap, message.label) {
        (Cap::CNode { .. }, label::CNODE_REVOKE | label::CNODE_DELETE) => {
            let slot = lookup(store, &cap, message.word(0)?, message.depth(1, false)?)?;
            Ok(if message.label == label::CNODE_REVOKE {
                Invocation::Revoke { slot }
            } else {
                Invocation::Delete { slot }
            })
        }
        (Cap::CNode { .. }, label::CNODE_COPY | label::CNODE_MINT | label::CNODE_MOVE | label::CNODE_MUTATE) => {
            decode_transfer(store, &cap, message)
        }
        (Cap::Untyped { .. }, label::UNTYPED_RETYPE) => decode_retype(store, invoked, &cap, message),
        (Cap::Null, _) => Err(SyscallError::InvalidCapability),
        _ => Err(SyscallError::IllegalOperation),
    }
}

pub(crate) fn lookup(store: &impl SlotStore, root: &Cap, index: u64, depth: u8) -> Result<SlotRef, SyscallError> {
    resolve_exact(store, root, index, depth).map_err(|_| SyscallError::FailedLookup)
}

/// The empty slot a control capability's invocation creates a capability
/// in, named as CNode invocations name slots: `index` and `depth` (words
/// `index_word` and `index_word + 1`, depth 1..64) relative to the CNode
/// of extra capability `extra`. The words must be there
/// (TruncatedMessage) and the depth in range (RangeError) before the
/// caller's own checks; the rest comes after them: the CNode
/// (TruncatedMessage when missing, InvalidCapability when it is something
/// else), the lookup (FailedLookup) and the slot being empty (DeleteFirst).
pub(crate) struct Destination {
    index: u64,
    depth: u8,
    extra: usize,
}

impl Destination {
    /// Reads the index and depth words.
    pub(crate) fn read(message: &Message<'_>, index_word: usize, extra: usize) -> Result<Self, SyscallError> {
        Ok(Destination { index: message.word(index_word)?, depth: message.depth(index_word + 1, false)?, extra })
    }

    /// Resolves the slot and checks that it is empty.
    pub(crate) fn resolve(&self, store: &impl SlotStore, message: &Message<'_>) -> Result<SlotRef, SyscallError> {
        let root = message.extra_cap(store, self.extra)?;
        if !matches!(root, Cap::CNode { .. }) {
            return Err(SyscallError::InvalidCapability);
        }
        let slot = lookup(store, &root, self.index, self.depth)?;
        if !store.slot(slot).cap.is_null() {
            return Err(SyscallError::DeleteFirst);
        }
        Ok(slot)
    }
}

/// Copy, Mint, Move and Mutate: `dest_index, dest_depth, src_index,
/// src_depth`, then rights (Copy, Mint) and data (Mint, Mutate).
fn decode_transfer(store: &impl SlotStore, node: &Cap, message: &Message<'_>) -> Result<Invocation, SyscallError> {
    let destination = lookup(store, node, message.word(0)?, message.depth(1, false)?)?;
    let (source_index, source_depth) = (message.word(2)?, message.depth(3, false)?);
    let rights = match message.label {
        label::CNODE_COPY | label::CNODE_MINT => Some(Rights::from_word(message.word(4)?)),
        _ => None,
    };
    let data = match message.label {
        label::CNODE_MINT => Some(message.word(5)?),
        label::CNODE_MUTATE => Some(message.word(4)?),
        _ => None,
    };
    let source_root = message.extra_cap(store, 0)?;
    if !matches!(source_root, Cap::CNode { .. }) {
        return Err(SyscallError::InvalidCapability);
    }
    let source = lookup(store, &source_root, source_index, source_depth)?;
    if !store.slot(destination).cap.is_null() {
        return Err(SyscallError::DeleteFirst);
    }
    let source_cap = store.slot(source).cap;
    if source_cap.is_null() {
        return Err(SyscallError::FailedLookup);
    }
    match message.label {
        label::CNODE_COPY | label::CNODE_MINT => {
            let mut cap = source_cap.derive()?.with_rights_masked(rights.unwrap_or(Rights::ALL));
            // Mutant: Mint keeps the source's rights.
            #[cfg(bulkhead_mutant = "mint_keeps_rights")]
            if data.is_some() {
                cap = source_cap.derive()?;
            }
            if let Some(data) = data {
                cap = cap.with_data(data)?;
            }
            Ok(Invocation::Derive { source, destination, cap })
        }
        _ => {
            let cap = match data {
                // Badges are set by Mint only (as in seL4): re-badging a
                // capability in place would change which copies derive from it.
                // Mutant: Mutate sets an endpoint's or notification's badge.
                Some(_) if source_cap.badge().is_some() && !cfg!(bulkhead_mutant = "mutate_allows_badge") => {
                    return Err(SyscallError::IllegalOperation);
                }
                Some(data) => source_cap.with_data(data)?,
                None => source_cap,
            };
            Ok(Invocation::Move { source, destination, cap })
        }
    }
}

/// Retype: `type, size_bits, node_index, node_depth, node_offset, count`
/// and the root of the destination CNode's address. A depth of 0 names
/// the root itself.
fn decode_retype(
    store: &impl SlotStore,
    untyped: SlotRef,
    cap: &Cap,
    message: &Message<'_>,
) -> Result<Invocation, SyscallError> {
    let Cap::Untyped { base: _, size_bits, free_offset, is_device } = *cap else {
        return Err(SyscallError::InvalidCapability);
    };
    let kind = ObjectKind::from_word(message.word(0)?).ok_or(SyscallError::InvalidArgument)?;
    let object_bits = kind.size_bits(message.word(1)?)?;
    let (node_index, node_depth) = (message.word(2)?, message.depth(3, true)?);
    let (node_offset, count) = (message.word(4)?, message.word(5)?);
    let root = message.extra_cap(store, 0)?;
    if object_bits > size_bits {
        return Err(SyscallError::RangeError);
    }
    if count == 0 || count > RETYPE_FAN_OUT_LIMIT {
        return Err(SyscallError::RangeError);
    }
    if is_device && !kind.allowed_in_device_memory() {
        return Err(SyscallError::InvalidArgument);
    }
    let node = if node_depth == 0 { root } else { store.slot(lookup(store, &root, node_index, node_depth)?).cap };
    let Cap::CNode { base: node_base, radix_bits, .. } = node else {
        return Err(SyscallError::InvalidCapability);
    };
    let slots = 1_u64 << radix_bits;
    if node_offset >= slots || count > slots - node_offset {
        return Err(SyscallError::RangeError);
    }
    for index in node_offset..node_offset + count {
        let slot = SlotRef::in_cnode(node_base, index).ok_or(SyscallError::RangeError)?;
        if !store.slot(slot).cap.is_null() {
            return Err(SyscallError::DeleteFirst);
        }
    }
    // With no objects left in it, the untyped starts again from its base.
    let used = if derivation::has_children(store, untyped) { free_offset } else { 0 };
    let alignment = 1_u128 << object_bits;
    let start = u128::from(used).div_ceil(alignment) * alignment;
    let end = start + (u128::from(count) << object_bits);
    if end > 1_u128 << size_bits {
        return Err(SyscallError::NotEnoughMemory);
    }
    // `end` fits: it is at most 2^47.
    let start_offset = u64::try_from(start).map_err(|_| SyscallError::NotEnoughMemory)?;
    Ok(Invocation::Retype { untyped, kind, object_bits, start_offset, node_base, node_offset, count })
}

/// Carries out a decoded invocation.
///
/// # Errors
///
/// [`Preempted`] when a revoke or delete ran out of `budget`; invoking the
/// same (re-decoded) invocation again continues it.
pub fn invoke<S: SlotStore>(
    store: &mut S,
    invocation: Invocation,
    budget: &mut WorkBudget,
    finalise: &mut impl Finalise<S>,
) -> Result<(), Preempted> {
    match invocation {
        Invocation::Revoke { slot } => derivation::revoke(store, slot, budget, finalise),
        Invocation::Delete { slot } => {
            if store.slot(slot).cap.is_null() {
                return Ok(());
            }
            derivation::delete(store, slot, budget, finalise)
        }
        Invocation::Derive { source, destination, cap } => {
            derivation::insert_derived(store, source, destination, cap, false);
            Ok(())
        }
        Invocation::Move { source, destination, cap } => {
            derivation::move_cap(store, source, destination, cap);
            Ok(())
        }
        Invocation::Retype { untyped, kind, object_bits, start_offset, node_base, node_offset, count } => {
            let Cap::Untyped { base, size_bits, is_device, .. } = store.slot(untyped).cap else {
                // Decode checked the type; nothing ran in between.
                return Ok(());
            };
            let object_bytes = 1_u64 << object_bits;
            for number in 0..count {
                let object = PhysAddr::new(base.as_u64() + start_offset + number * object_bytes);
                let new_cap = Cap::for_new_object(kind, object, object_bits, is_device);
                if !is_device {
                    store.init_object(kind, object, object_bits);
                }
                // Decode checked the slot exists and is empty.
                if let Some(destination) = SlotRef::in_cnode(node_base, node_offset + number) {
                    derivation::insert_derived(store, untyped, destination, new_cap, true);
                }
            }
            let free_offset = start_offset + count * object_bytes;
            // Mutant: the watermark ends one object short.
            #[cfg(bulkhead_mutant = "retype_off_by_one")]
            let free_offset = free_offset - object_bytes;
            store.slot_mut(untyped).cap = Cap::Untyped { base, size_bits, free_offset, is_device };
            Ok(())
        }
    }
}
