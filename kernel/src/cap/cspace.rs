//! Capability addresses: resolving a (capability pointer, depth) pair
//! through a tree of guarded CNodes to a slot.
//!
//! Each CNode level consumes its guard bits (which must equal the guard)
//! and then its radix bits (the slot index), from the most significant of
//! the `depth` low bits of the address downwards. Resolution stops when the
//! bits are used up, or at a slot that does not hold a CNode.

use super::capability::Cap;
use super::slot::{SlotRef, SlotStore};
use crate::error::LookupFailure;

/// The number of bits in a capability address.
pub const CPTR_BITS: u8 = 64;

/// A resolved address: the slot, and how many address bits were left over
/// when a non-CNode capability ended the walk early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The slot reached.
    pub slot: SlotRef,
    /// Address bits not consumed.
    pub bits_left: u8,
}

/// The low `bits` bits of `value` (all of it for 64).
const fn low_bits(value: u64, bits: u8) -> u64 {
    if bits >= 64 { value } else { value & ((1 << bits) - 1) }
}

/// Resolves the `depth` low bits of `cptr` starting at the CNode
/// capability `root` (seL4's `resolveAddressBits`).
///
/// # Errors
///
/// A [`LookupFailure`] saying where and why the walk stopped.
pub fn resolve(store: &impl SlotStore, root: &Cap, cptr: u64, depth: u8) -> Result<Resolved, LookupFailure> {
    if depth == 0 || depth > CPTR_BITS {
        return Err(LookupFailure::DepthMismatch { bits_left: depth, bits_needed: 1 });
    }
    let mut node = *root;
    let mut bits_left = depth;
    loop {
        let Cap::CNode { base, radix_bits, guard, guard_bits } = node else {
            return Err(LookupFailure::InvalidRoot);
        };
        let level_bits = radix_bits + guard_bits;
        if level_bits == 0 || level_bits > bits_left {
            return Err(LookupFailure::DepthMismatch { bits_left, bits_needed: level_bits });
        }
        // A shift by the whole width (a 64-bit walk with no guard) leaves nothing.
        let address_guard = low_bits(cptr.checked_shr(u32::from(bits_left - guard_bits)).unwrap_or(0), guard_bits);
        // Mutant: guards are not compared.
        if address_guard != guard && !cfg!(bulkhead_mutant = "guard_ignored") {
            return Err(LookupFailure::GuardMismatch { bits_left, guard, guard_bits });
        }
        let index = low_bits(cptr.checked_shr(u32::from(bits_left - level_bits)).unwrap_or(0), radix_bits);
        let Some(slot) = SlotRef::in_cnode(base, index) else {
            return Err(LookupFailure::InvalidRoot);
        };
        bits_left -= level_bits;
        if bits_left == 0 {
            return Ok(Resolved { slot, bits_left });
        }
        node = store.slot(slot).cap;
        if !matches!(node, Cap::CNode { .. }) {
            return Ok(Resolved { slot, bits_left });
        }
    }
}

/// Resolves an address that must name a slot exactly: all `depth` bits
/// consumed (the form CNode invocations use for their source and
/// destination slots).
///
/// # Errors
///
/// [`LookupFailure::DepthMismatch`] when the walk ended early, or whatever
/// [`resolve`] reports.
pub fn resolve_exact(store: &impl SlotStore, root: &Cap, cptr: u64, depth: u8) -> Result<SlotRef, LookupFailure> {
    let resolved = resolve(store, root, cptr, depth)?;
    if resolved.bits_left != 0 {
        return Err(LookupFailure::DepthMismatch { bits_left: resolved.bits_left, bits_needed: 0 });
    }
    Ok(resolved.slot)
}
