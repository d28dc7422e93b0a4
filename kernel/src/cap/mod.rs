//! Capabilities and the capability space: seL4's model, hardware-free.
//!
//! | module | holds |
//! | --- | --- |
//! | [`capability`] | the [`Cap`] type and its derivation rules |
//! | [`rights`] | access rights |
//! | [`object`] | object kinds and sizes for retype |
//! | [`slot`] | slots, their storage, the derivation-tree links |
//! | [`cspace`] | resolving capability addresses through guarded CNodes |
//! | [`derivation`] | insert, move, delete, revoke over the derivation tree |
//! | [`invocation`] | CNode and Untyped invocations, decoded then invoked |

pub mod capability;
pub mod cspace;
pub mod derivation;
pub mod invocation;
pub mod object;
pub mod rights;
pub mod slot;

pub use capability::{Asid, Badge, Cap, FrameSize, MappedAt, PageTableLevel};
pub use object::ObjectKind;
pub use rights::Rights;
pub use slot::{Slot, SlotRef, SlotStore};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod abi_doc_test;
