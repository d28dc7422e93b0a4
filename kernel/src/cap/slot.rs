//! Capability slots, where they are stored, and the derivation tree that
//! links them.
//!
//! The derivation tree is seL4's mapping database: all slots form one
//! doubly linked list in which every capability's derived children follow
//! it directly, each child deeper than its parent. Whether a slot is the
//! parent of the one after it is computed from the two capabilities and
//! two bits (`revocable`, `first_badged`), so copying, moving and deleting
//! are constant-time list edits and revoking deletes the run of slots after
//! a capability that it is the parent of. All capabilities to one object
//! stay adjacent in the list, so "is this the last capability to the
//! object" looks only at the two neighbours.

use core::num::NonZeroU64;

use super::capability::Cap;
use super::object::{ObjectKind, SLOT_BITS};
use crate::memory::PhysAddr;

/// Where a slot lives: the physical address of its 64 bytes inside a CNode.
/// Never zero (the first MiB is never handed out as untyped memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotRef(NonZeroU64);

impl SlotRef {
    /// The slot at `index` of the CNode whose slots start at `base`, if the
    /// address is representable and non-zero.
    #[must_use]
    pub fn in_cnode(base: PhysAddr, index: u64) -> Option<SlotRef> {
        let offset = index.checked_mul(1 << SLOT_BITS)?;
        NonZeroU64::new(base.as_u64().checked_add(offset)?).map(SlotRef)
    }

    /// The slot's physical address.
    #[must_use]
    pub const fn address(self) -> PhysAddr {
        PhysAddr::new(self.0.get())
    }
}

/// A slot's links in the derivation tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DerivationLinks {
    /// The slot before this one in derivation order.
    pub previous: Option<SlotRef>,
    /// The slot after this one.
    pub next: Option<SlotRef>,
    /// The capability may be the parent of capabilities to the same object
    /// (set for retyped objects, untypeds and newly badged copies).
    pub revocable: bool,
    /// The capability is the first with its badge: a badged parent's
    /// children stop at the next capability that has this bit.
    pub first_badged: bool,
}

/// One CNode slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// What the slot holds.
    pub cap: Cap,
    /// Its place in the derivation tree (meaningless for an empty slot).
    pub links: DerivationLinks,
}

impl Slot {
    /// An empty slot.
    pub const EMPTY: Slot = Slot {
        cap: Cap::Null,
        links: DerivationLinks { previous: None, next: None, revocable: false, first_badged: false },
    };
}

// The kernel stores slots in CNode memory, 2^SLOT_BITS bytes each.
const _: () = assert!(size_of::<Slot>() <= 1 << SLOT_BITS);

/// Where slots live. The kernel keeps them in the CNodes' own memory (as
/// seL4 does); the host tests and the harness keep them in a map
/// (`store::MapStore`). The capability code reaches slots only through this.
pub trait SlotStore {
    /// The slot at `at` (an empty slot if nothing was ever written there).
    fn slot(&self, at: SlotRef) -> &Slot;
    /// The slot at `at`, for writing.
    fn slot_mut(&mut self, at: SlotRef) -> &mut Slot;
    /// Makes `[base, base + 2^size_bits)` hold a fresh object of `kind`:
    /// empty slots for a CNode (and a TCB's slots), the fresh state of a
    /// thread, endpoint, notification, reply object or scheduling context,
    /// zeroes for memory objects. Nothing stored there before survives.
    fn init_object(&mut self, kind: ObjectKind, base: PhysAddr, size_bits: u8);
}
