//! Scenario and property tests of the capability core: what a root task
//! does at boot (retype, copy, mint, move, revoke), every error path of
//! the CNode and Untyped invocations, and the derivation tree's shape after
//! random operation sequences.

use proptest::prelude::*;

use super::cspace::{self, Resolved};
use super::derivation::{self, OnlyUnlink, WorkBudget};
use super::invocation::{self, Message, label};
use super::object::{ObjectKind, SLOT_BITS};
use super::{Cap, Rights, SlotRef, SlotStore};
use crate::error::{LookupFailure, SyscallError};
use crate::finalise::Finaliser;
use crate::memory::PhysAddr;
use crate::platform::RecordingPlatform;
use crate::store::MapStore;
use crate::syscall::Kernel;

const ROOT_CNODE: u64 = 0x10_0000;
const ROOT_RADIX: u8 = 8;
const UNTYPED_BASE: u64 = 0x100_0000;
const UNTYPED_BITS: u8 = 20;
/// Slot 1 of the root CNode holds the untyped; slot 0 the root CNode itself.
const UNTYPED_SLOT: u64 = 1;
const BIG_BUDGET: WorkBudget = WorkBudget(1_000_000);

/// A root task's world: one CNode (radix 8, guard 0 of 56 bits, so a
/// 64-bit address is just the slot index) holding itself and an untyped.
struct World {
    store: MapStore,
    root: Cap,
}

impl World {
    fn new() -> World {
        let root = Cap::CNode { base: PhysAddr::new(ROOT_CNODE), radix_bits: ROOT_RADIX, guard: 0, guard_bits: 56 };
        let mut store = MapStore::new();
        store.init_object(ObjectKind::CNode, PhysAddr::new(ROOT_CNODE), ROOT_RADIX + SLOT_BITS);
        derivation::insert_original(&mut store, slot(0), root);
        let untyped = Cap::Untyped {
            base: PhysAddr::new(UNTYPED_BASE),
            size_bits: UNTYPED_BITS,
            free_offset: 0,
            is_device: false,
        };
        derivation::insert_original(&mut store, slot(UNTYPED_SLOT), untyped);
        World { store, root }
    }

    fn resolve(&self, cptr: u64) -> Option<SlotRef> {
        match cspace::resolve(&self.store, &self.root, cptr, 64) {
            Ok(Resolved { slot, .. }) => Some(slot),
            Err(_) => None,
        }
    }

    /// Invokes the capability at `cptr` like the syscall layer will.
    fn call(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> Result<(), SyscallError> {
        let invoked = self.resolve(cptr).ok_or(SyscallError::InvalidCapability)?;
        let extra_caps: Vec<Option<SlotRef>> = extra.iter().map(|cptr| self.resolve(*cptr)).collect();
        let message = Message { label, words, extra_caps: &extra_caps };
        let before = self.store.clone();
        let decoded = invocation::decode(&self.store, invoked, &message);
        assert_eq!(format!("{:?}", self.store), format!("{before:?}"), "decode changed state");
        let decoded = decoded?;
        let mut budget = BIG_BUDGET;
        let mut kernel = Kernel::new(());
        let mut platform = RecordingPlatform::new();
        let Kernel { scheduler, asids, io_ports, irqs, .. } = &mut kernel;
        let mut finaliser = Finaliser { scheduler, asids, io_ports, irqs, platform: &mut platform };
        invocation::invoke(&mut self.store, decoded, &mut budget, &mut finaliser).expect("a big budget finishes");
        Ok(())
    }

    fn cap(&self, index: u64) -> Cap {
        self.store.slot(slot(index)).cap
    }

    fn retype(&mut self, kind: ObjectKind, size_bits: u64, offset: u64, count: u64) -> Result<(), SyscallError> {
        self.call(UNTYPED_SLOT, label::UNTYPED_RETYPE, &[kind as u64, size_bits, 0, 0, offset, count], &[0])
    }

    fn copy(&mut self, from: u64, to: u64, rights: Rights) -> Result<(), SyscallError> {
        self.call(0, label::CNODE_COPY, &[to, 64, from, 64, u64::from(rights.bits())], &[0])
    }

    fn mint(&mut self, from: u64, to: u64, rights: Rights, data: u64) -> Result<(), SyscallError> {
        self.call(0, label::CNODE_MINT, &[to, 64, from, 64, u64::from(rights.bits()), data], &[0])
    }

    fn revoke(&mut self, index: u64) -> Result<(), SyscallError> {
        self.call(0, label::CNODE_REVOKE, &[index, 64], &[])
    }

    fn delete(&mut self, index: u64) -> Result<(), SyscallError> {
        self.call(0, label::CNODE_DELETE, &[index, 64], &[])
    }
}

fn slot(index: u64) -> SlotRef {
    SlotRef::in_cnode(PhysAddr::new(ROOT_CNODE), index).expect("a root slot")
}

fn untyped_free_offset(world: &World) -> u64 {
    match world.cap(UNTYPED_SLOT) {
        Cap::Untyped { free_offset, .. } => free_offset,
        other => panic!("slot 1 holds {other:?}"),
    }
}

#[test]
fn retype_places_objects_in_order_and_moves_the_watermark() {
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 3).expect("three endpoints");
    for (number, index) in (10..13).enumerate() {
        let expected = PhysAddr::new(UNTYPED_BASE + 64 * number as u64);
        assert_eq!(world.cap(index), Cap::Endpoint { object: expected, badge: 0, rights: Rights::ALL });
    }
    assert_eq!(untyped_free_offset(&world), 192);
    // A 4 KiB frame next: aligned up from 192 to 4096.
    world.retype(ObjectKind::Frame4K, 0, 20, 1).expect("a frame");
    assert!(matches!(world.cap(20), Cap::Frame { base, .. } if base == PhysAddr::new(UNTYPED_BASE + 4096)));
    assert_eq!(untyped_free_offset(&world), 8192);
}

#[test]
fn retype_error_paths() {
    let mut world = World::new();
    let retype =
        |world: &mut World, words: &[u64], extra: &[u64]| world.call(UNTYPED_SLOT, label::UNTYPED_RETYPE, words, extra);
    let endpoint = ObjectKind::Endpoint as u64;
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, 10], &[0]), Err(SyscallError::TruncatedMessage));
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, 10, 1], &[]), Err(SyscallError::TruncatedMessage));
    assert_eq!(retype(&mut world, &[99, 0, 0, 0, 10, 1], &[0]), Err(SyscallError::InvalidArgument));
    assert_eq!(retype(&mut world, &[ObjectKind::CNode as u64, 0, 0, 0, 10, 1], &[0]), Err(SyscallError::RangeError));
    assert_eq!(
        retype(&mut world, &[ObjectKind::Frame1G as u64, 0, 0, 0, 10, 1], &[0]),
        Err(SyscallError::RangeError),
        "a 1 GiB frame does not fit a 1 MiB untyped"
    );
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, 10, 0], &[0]), Err(SyscallError::RangeError));
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, 10, 257], &[0]), Err(SyscallError::RangeError));
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, 255, 2], &[0]), Err(SyscallError::RangeError));
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, u64::MAX, 2], &[0]), Err(SyscallError::RangeError));
    assert_eq!(retype(&mut world, &[endpoint, 0, 0, 0, 0, 1], &[0]), Err(SyscallError::DeleteFirst));
    assert_eq!(
        retype(&mut world, &[endpoint, 0, 0, 0, 10, 1], &[UNTYPED_SLOT]),
        Err(SyscallError::InvalidCapability),
        "the destination root is not a CNode"
    );
    assert_eq!(
        retype(&mut world, &[endpoint, 0, 5, 64, 10, 1], &[0]),
        Err(SyscallError::InvalidCapability),
        "the destination slot holds no CNode"
    );
    assert_eq!(retype(&mut world, &[endpoint, 0, 5, 65, 10, 1], &[0]), Err(SyscallError::RangeError));
    assert_eq!(retype(&mut world, &[endpoint, 0, 5, 7, 10, 1], &[0]), Err(SyscallError::FailedLookup));
    // 256 frames of 4 KiB fill the 1 MiB untyped exactly; one more does not fit.
    world.retype(ObjectKind::Frame4K, 0, 2, 254).expect("254 frames");
    assert_eq!(untyped_free_offset(&world), 254 * 4096);
    world.delete(2).expect("make room for the next capability");
    assert_eq!(world.retype(ObjectKind::Frame2M, 0, 2, 1), Err(SyscallError::RangeError));
    assert_eq!(world.retype(ObjectKind::Frame4K, 0, 2, 1), Ok(()));
    world.delete(3).expect("make room");
    world.delete(4).expect("make room");
    assert_eq!(world.retype(ObjectKind::Frame4K, 0, 3, 2), Err(SyscallError::NotEnoughMemory), "one frame is left");
    assert_eq!(world.retype(ObjectKind::Frame4K, 0, 3, 1), Ok(()));
    // Invoking something that is not an untyped.
    assert_eq!(
        world.call(10, label::UNTYPED_RETYPE, &[endpoint, 0, 0, 0, 10, 1], &[0]),
        Err(SyscallError::IllegalOperation)
    );
    // Slot 4 was emptied above and stayed empty.
    assert_eq!(
        world.call(4, label::UNTYPED_RETYPE, &[endpoint, 0, 0, 0, 10, 1], &[0]),
        Err(SyscallError::InvalidCapability)
    );
}

#[test]
fn device_untyped_holds_only_frames_and_untypeds() {
    let mut world = World::new();
    let device = Cap::Untyped { base: PhysAddr::new(0xfe00_0000), size_bits: 22, free_offset: 0, is_device: true };
    derivation::insert_original(&mut world.store, slot(UNTYPED_SLOT), device);
    assert_eq!(world.retype(ObjectKind::Endpoint, 0, 10, 1), Err(SyscallError::InvalidArgument));
    assert_eq!(world.retype(ObjectKind::CNode, 4, 10, 1), Err(SyscallError::InvalidArgument));
    world.retype(ObjectKind::Frame4K, 0, 10, 1).expect("an MMIO frame");
    assert!(matches!(world.cap(10), Cap::Frame { is_device: true, .. }));
}

#[test]
fn copy_mint_move_mutate_error_paths() {
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 1).expect("an endpoint");
    let words = |to: u64, from: u64| [to, 64, from, 64, u64::from(Rights::ALL.bits()), 7];
    assert_eq!(world.call(0, label::CNODE_COPY, &words(11, 10)[..4], &[0]), Err(SyscallError::TruncatedMessage));
    assert_eq!(world.call(0, label::CNODE_COPY, &words(11, 10), &[]), Err(SyscallError::TruncatedMessage));
    assert_eq!(world.call(0, label::CNODE_COPY, &words(11, 10), &[10]), Err(SyscallError::InvalidCapability));
    assert_eq!(world.call(0, label::CNODE_COPY, &words(11, 10), &[999]), Err(SyscallError::InvalidCapability));
    assert_eq!(world.call(0, label::CNODE_COPY, &words(10, 10), &[0]), Err(SyscallError::DeleteFirst));
    assert_eq!(world.call(0, label::CNODE_COPY, &words(11, 12), &[0]), Err(SyscallError::FailedLookup), "empty source");
    assert_eq!(world.call(0, label::CNODE_COPY, &[11, 63, 10, 64, 15], &[0]), Err(SyscallError::FailedLookup));
    assert_eq!(world.call(0, label::CNODE_COPY, &[11, 65, 10, 64, 15], &[0]), Err(SyscallError::RangeError));
    assert_eq!(world.call(0, label::CNODE_COPY, &[11, 0, 10, 64, 15], &[0]), Err(SyscallError::RangeError));
    assert_eq!(world.call(0, label::CNODE_COPY, &[11, 64, 10, 300, 15], &[0]), Err(SyscallError::RangeError));
    assert_eq!(world.copy(UNTYPED_SLOT, 11, Rights::ALL), Err(SyscallError::IllegalOperation), "untypeds move only");
    assert_eq!(world.call(10, label::CNODE_COPY, &words(11, 10), &[0]), Err(SyscallError::IllegalOperation));
    assert_eq!(world.call(0, 999, &words(11, 10), &[0]), Err(SyscallError::IllegalOperation));
    world.mint(10, 11, Rights::ALL, 7).expect("badge 7");
    assert_eq!(world.mint(11, 12, Rights::ALL, 8), Err(SyscallError::IllegalOperation), "no re-badging");
    assert_eq!(
        world.call(0, label::CNODE_MUTATE, &[12, 64, 11, 64, 8], &[0]),
        Err(SyscallError::IllegalOperation),
        "no re-badging by mutate either"
    );
    assert_eq!(world.call(0, label::CNODE_MOVE, &[12, 64, 11, 64], &[]), Err(SyscallError::TruncatedMessage));
    world.call(0, label::CNODE_MOVE, &[12, 64, 11, 64], &[0]).expect("a move");
    assert!(world.cap(11).is_null());
    assert_eq!(world.cap(12).badge(), Some(7));
}

#[test]
fn rights_only_shrink_along_derivation() {
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 1).expect("an endpoint");
    world.copy(10, 11, Rights::WRITE).expect("send-only copy");
    world.copy(11, 12, Rights::ALL).expect("a copy asking for everything");
    assert!(matches!(world.cap(12), Cap::Endpoint { rights, .. } if rights == Rights::WRITE));
}

#[test]
fn revoking_a_badged_endpoint_removes_every_derived_copy_and_nothing_else() {
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 1).expect("an endpoint");
    world.retype(ObjectKind::CNode, 4, 30, 1).expect("a second CNode");
    world.mint(10, 11, Rights::ALL, 0xb1).expect("badge b1");
    world.mint(10, 12, Rights::WRITE, 0xb2).expect("badge b2");
    world.copy(11, 13, Rights::WRITE).expect("copy of b1");
    world.copy(13, 14, Rights::WRITE).expect("copy of the copy");
    // A copy into the second CNode, addressed through it (depth 64 + 4 bits).
    let sub = match world.cap(30) {
        Cap::CNode { base, .. } => base,
        other => panic!("{other:?}"),
    };
    world.call(30, label::CNODE_COPY, &[5, 4, 11, 64, 15], &[0]).expect("copy of b1 into the sub-CNode");
    let sub_slot = SlotRef::in_cnode(sub, 5).expect("slot");
    assert_eq!(world.store.slot(sub_slot).cap.badge(), Some(0xb1));

    world.revoke(11).expect("revoke b1");
    assert_eq!(world.cap(11).badge(), Some(0xb1), "the revoked capability itself stays");
    for index in [13, 14] {
        assert!(world.cap(index).is_null(), "slot {index} still holds a b1 copy");
    }
    assert!(world.store.slot(sub_slot).cap.is_null(), "the copy in the sub-CNode is gone too");
    assert_eq!(world.cap(12).badge(), Some(0xb2), "another badge is untouched");
    assert_eq!(world.cap(10).badge(), Some(0), "the original is untouched");
    // Revoking the original takes every badge with it.
    world.revoke(10).expect("revoke the original");
    for index in [11, 12] {
        assert!(world.cap(index).is_null());
    }
}

#[test]
fn revoking_the_untyped_frees_everything_and_retype_hands_back_the_same_memory() {
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 4).expect("four endpoints");
    world.retype(ObjectKind::CNode, 2, 20, 1).expect("a CNode");
    let first = [world.cap(10), world.cap(20)];
    world.copy(10, 30, Rights::ALL).expect("a copy");
    world.call(20, label::CNODE_COPY, &[1, 2, 11, 64, 15], &[0]).expect("a copy inside the new CNode");
    assert_eq!(
        world.retype(ObjectKind::Endpoint, 0, 40, 1).map(|()| untyped_free_offset(&world)),
        Ok(512 + 64),
        "while objects live, retype goes on from the watermark: 4 endpoints (256 bytes), a CNode of \
         4 slots (256..512), an endpoint"
    );
    world.revoke(UNTYPED_SLOT).expect("revoke the untyped");
    for index in [10, 11, 12, 13, 20, 30, 40] {
        assert!(world.cap(index).is_null(), "slot {index} survived the revoke");
    }
    assert_eq!(world.store.occupied().count(), 2, "only the root CNode and the untyped are left");
    world.retype(ObjectKind::Endpoint, 0, 10, 4).expect("four endpoints again");
    world.retype(ObjectKind::CNode, 2, 20, 1).expect("a CNode again");
    assert_eq!([world.cap(10), world.cap(20)], first, "the same memory comes back");
}

#[test]
fn deleting_the_last_cap_to_a_cnode_deletes_what_it_holds() {
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 1).expect("an endpoint");
    world.retype(ObjectKind::CNode, 2, 20, 2).expect("two CNodes");
    // CNode A (slot 20) holds an endpoint copy and the last cap to CNode B,
    // which holds a cap to A itself.
    world.call(20, label::CNODE_COPY, &[0, 2, 10, 64, 15], &[0]).expect("endpoint copy into A");
    world.call(20, label::CNODE_MOVE, &[1, 2, 21, 64], &[0]).expect("move B's cap into A");
    world.copy(20, 22, Rights::ALL).expect("second cap to A");
    let b_cap_slot = match world.cap(20) {
        Cap::CNode { base, .. } => SlotRef::in_cnode(base, 1).expect("slot"),
        other => panic!("{other:?}"),
    };
    let b_base = match world.store.slot(b_cap_slot).cap {
        Cap::CNode { base, .. } => base,
        other => panic!("{other:?}"),
    };
    // Put the second cap to A into B (moving it from slot 22).
    let b_first = SlotRef::in_cnode(b_base, 0).expect("slot");
    world.call(20, label::CNODE_MOVE, &[1 << 2, 4, 22, 64], &[0]).expect("move into B through A");
    assert!(matches!(world.store.slot(b_first).cap, Cap::CNode { .. }));
    // Deleting slot 20 removes A's last outside cap; A and B hold each other.
    world.delete(20).expect("delete");
    assert!(world.cap(20).is_null());
    // The untyped's revoke still reaches everything left in the cycle.
    world.revoke(UNTYPED_SLOT).expect("revoke");
    assert_eq!(world.store.occupied().count(), 2);
}

#[test]
fn a_cnode_holding_its_own_last_cap_is_deleted_without_looping() {
    let mut world = World::new();
    world.retype(ObjectKind::CNode, 2, 20, 1).expect("a CNode");
    let base = match world.cap(20) {
        Cap::CNode { base, .. } => base,
        other => panic!("{other:?}"),
    };
    world.call(20, label::CNODE_COPY, &[3, 2, 20, 64, 15], &[0]).expect("a copy of A into A");
    world.delete(20).expect("delete the outside cap");
    let inside = SlotRef::in_cnode(base, 3).expect("slot");
    assert!(matches!(world.store.slot(inside).cap, Cap::CNode { .. }), "the inside cap keeps A alive");
    // Deleting the inside cap directly, the last one: A's own slot is skipped.
    let mut budget = WorkBudget(100);
    derivation::delete(&mut world.store, inside, &mut budget, &mut OnlyUnlink).expect("finishes");
    assert!(world.store.slot(inside).cap.is_null());
}

#[test]
fn revocation_is_preemptible_and_restartable() {
    let build = || {
        let mut world = World::new();
        world.retype(ObjectKind::Endpoint, 0, 10, 1).expect("an endpoint");
        for index in 11..60 {
            world.copy(10, index, Rights::ALL).expect("a copy");
        }
        world
    };
    let mut preempted = build();
    let mut restarts = 0;
    loop {
        let mut budget = WorkBudget(7);
        match derivation::revoke(&mut preempted.store, slot(10), &mut budget, &mut OnlyUnlink) {
            Ok(()) => break,
            Err(derivation::Preempted) => restarts += 1,
        }
        assert!(restarts < 100, "revoke makes no progress");
    }
    assert_eq!(restarts, 6, "49 deletions in slices of 7: six slices run out, the seventh finishes");
    let mut whole = build();
    whole.revoke(10).expect("in one go");
    assert_eq!(format!("{:?}", preempted.store), format!("{:?}", whole.store));
}

#[test]
fn guarded_multi_level_lookup() {
    let mut world = World::new();
    world.retype(ObjectKind::CNode, 3, 40, 1).expect("a CNode of 8 slots");
    // Give it a 5-bit guard 0b10110 by mutating it into slot 41.
    world.call(0, label::CNODE_MUTATE, &[41, 64, 40, 64, (0b10110 << 6) | 5], &[0]).expect("mutate");
    world.retype(ObjectKind::Notification, 0, 42, 1).expect("a notification");
    // Address: index 41 in the root, then guard 10110 and index 6. The
    // test root's 56-bit guard leaves no room for a second level in a
    // 64-bit address, so walk from an unguarded view of the same CNode.
    let cptr = (41 << 8) | (0b10110 << 3) | 6;
    assert!(matches!(
        cspace::resolve(&world.store, &world.root, cptr, 64),
        Err(LookupFailure::GuardMismatch { bits_left: 64, guard: 0, guard_bits: 56 })
    ));
    // With an unguarded root of radix 8 the same walk fits in 16 bits.
    let root = Cap::CNode { base: PhysAddr::new(ROOT_CNODE), radix_bits: ROOT_RADIX, guard: 0, guard_bits: 0 };
    let resolved = cspace::resolve(&world.store, &root, cptr, 16).expect("two levels");
    let sub_base = match world.cap(41) {
        Cap::CNode { base, .. } => base,
        other => panic!("{other:?}"),
    };
    assert_eq!(resolved, Resolved { slot: SlotRef::in_cnode(sub_base, 6).expect("slot"), bits_left: 0 });
    let wrong_guard = (41 << 8) | (0b10111 << 3) | 6;
    assert!(matches!(
        cspace::resolve(&world.store, &root, wrong_guard, 16),
        Err(LookupFailure::GuardMismatch { bits_left: 8, guard: 0b10110, guard_bits: 5 })
    ));
    // A walk that ends on a non-CNode leaves bits over; exact lookups refuse it.
    let through_notification = (42 << 8) | 1;
    assert_eq!(cspace::resolve(&world.store, &root, through_notification, 16).map(|r| r.bits_left), Ok(8));
    assert!(cspace::resolve_exact(&world.store, &root, through_notification, 16).is_err());
    assert!(matches!(cspace::resolve(&world.store, &root, 0, 0), Err(LookupFailure::DepthMismatch { .. })));
    assert!(matches!(cspace::resolve(&world.store, &Cap::IrqControl, 0, 8), Err(LookupFailure::InvalidRoot)));
}

/// One random operation of the property test.
#[derive(Clone, Debug)]
enum Operation {
    Retype { kind: u8, size: u8, slot: u8, count: u8 },
    Copy { from: u8, to: u8, rights: u8 },
    Mint { from: u8, to: u8, badge: u8 },
    Move { from: u8, to: u8 },
    Delete { slot: u8 },
    Revoke { slot: u8 },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (0_u8..14, 0_u8..6, 2_u8..64, 1_u8..4).prop_map(|(kind, size, slot, count)| Operation::Retype {
            kind,
            size,
            slot,
            count
        }),
        (0_u8..64, 0_u8..64, 0_u8..16).prop_map(|(from, to, rights)| Operation::Copy { from, to, rights }),
        (0_u8..64, 0_u8..64, 0_u8..4).prop_map(|(from, to, badge)| Operation::Mint { from, to, badge }),
        (2_u8..64, 2_u8..64).prop_map(|(from, to)| Operation::Move { from, to }),
        (2_u8..64).prop_map(|slot| Operation::Delete { slot }),
        (1_u8..64).prop_map(|slot| Operation::Revoke { slot }),
    ]
}

/// The derivation list's links are symmetric, and every capability to an
/// object sits next to the others of that object.
fn check_links(store: &MapStore) {
    for (at, slot) in store.occupied() {
        if let Some(next) = slot.links.next {
            assert_eq!(store.slot(next).links.previous, Some(at), "next/previous disagree at {at:?}");
            assert!(!store.slot(next).cap.is_null(), "link to an empty slot");
        }
        if let Some(previous) = slot.links.previous {
            assert_eq!(store.slot(previous).links.next, Some(at), "previous/next disagree at {at:?}");
        }
    }
}

/// No two retyped objects overlap unless one is an untyped containing the other.
fn check_no_overlap(store: &MapStore) {
    let regions: Vec<(u64, u64, bool)> = store
        .occupied()
        .filter_map(|(_, slot)| {
            let (base, bits) = slot.cap.memory_region()?;
            (base.as_u64() >= UNTYPED_BASE)
                .then(|| (base.as_u64(), base.as_u64() + (1 << bits), matches!(slot.cap, Cap::Untyped { .. })))
        })
        .collect();
    for (index, a) in regions.iter().enumerate() {
        for b in &regions[index + 1..] {
            let disjoint = a.1 <= b.0 || b.1 <= a.0;
            let same = a.0 == b.0 && a.1 == b.1;
            let nested = (a.2 && a.0 <= b.0 && b.1 <= a.1) || (b.2 && b.0 <= a.0 && a.1 <= b.1);
            assert!(disjoint || same || nested, "objects overlap: {a:?} {b:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_derivation_tree_sound(operations in proptest::collection::vec(operation(), 1..60)) {
        let mut world = World::new();
        for operation in operations {
            let _ = match operation {
                Operation::Retype { kind, size, slot, count } => world.retype(
                    ObjectKind::from_word(u64::from(kind)).unwrap_or(ObjectKind::Endpoint),
                    u64::from(size) + 4,
                    u64::from(slot),
                    u64::from(count),
                ),
                Operation::Copy { from, to, rights } => {
                    world.copy(u64::from(from), u64::from(to), Rights::from_word(u64::from(rights)))
                }
                Operation::Mint { from, to, badge } => {
                    world.mint(u64::from(from), u64::from(to), Rights::ALL, u64::from(badge))
                }
                Operation::Move { from, to } => {
                    world.call(0, label::CNODE_MOVE, &[u64::from(to), 64, u64::from(from), 64], &[0])
                }
                Operation::Delete { slot } => world.delete(u64::from(slot)),
                Operation::Revoke { slot } => world.revoke(u64::from(slot)),
            };
            check_links(&world.store);
            check_no_overlap(&world.store);
        }
        // Revoking the untyped (wherever it was moved) removes every object
        // made from it; what remains are capabilities to the root CNode.
        let untyped = world.store.occupied().find(|(_, slot)| matches!(slot.cap, Cap::Untyped { .. })).map(|(at, _)| at);
        if let Some(untyped) = untyped {
            let mut budget = BIG_BUDGET;
            derivation::revoke(&mut world.store, untyped, &mut budget, &mut OnlyUnlink).expect("revoke");
            for (_, slot) in world.store.occupied() {
                let inside = slot.cap.memory_region().is_some_and(|(base, _)| base.as_u64() >= UNTYPED_BASE);
                prop_assert!(!inside || matches!(slot.cap, Cap::Untyped { .. }), "survived: {:?}", slot.cap);
            }
        }
    }
}

#[test]
fn slot_size_matches_the_layout() {
    assert!(size_of::<super::Slot>() <= 1 << SLOT_BITS);
}

/// The derivation tree as an explicit tree: the abstract model the
/// list-based implementation must refine. Each capability records its
/// parent; "derived from X" is the transitive closure. The rules are
/// seL4's, stated plainly: a new capability's parent is the nearest of its
/// source and the source's ancestors that may parent it (revocable, same
/// region, and for a badged parent the same badge on a capability that is
/// not itself newly badged); deleting a capability hands its children to
/// its parent; moving keeps the tree; revoking deletes every descendant.
mod model {
    use std::collections::BTreeMap;

    use super::super::{Cap, SlotRef};

    #[derive(Clone, Debug)]
    pub(super) struct Node {
        pub(super) cap: Cap,
        pub(super) parent: Option<SlotRef>,
        pub(super) revocable: bool,
    }

    #[derive(Clone, Debug, Default)]
    pub(super) struct Tree {
        pub(super) nodes: BTreeMap<SlotRef, Node>,
    }

    fn can_parent(parent: &Node, cap: &Cap, first_badged: bool) -> bool {
        parent.revocable
            && parent.cap.same_region_as(cap)
            && match parent.cap.badge() {
                Some(badge) if badge != 0 => cap.badge() == Some(badge) && !first_badged,
                _ => true,
            }
    }

    impl Tree {
        pub(super) fn insert_original(&mut self, at: SlotRef, cap: Cap) {
            self.nodes.insert(at, Node { cap, parent: None, revocable: true });
        }

        /// A capability derived from `source` (or, for retype, a new object
        /// under the untyped `source`).
        pub(super) fn insert_derived(&mut self, source: SlotRef, at: SlotRef, cap: Cap, is_new_object: bool) {
            let source_cap = self.nodes[&source].cap;
            // Stated here, not borrowed from the implementation: new objects
            // and untypeds are originals, and so is an endpoint or
            // notification capability whose badge differs from its source's.
            let revocable = is_new_object
                || match (cap, source_cap) {
                    (Cap::Endpoint { badge, .. }, Cap::Endpoint { badge: source_badge, .. })
                    | (Cap::Notification { badge, .. }, Cap::Notification { badge: source_badge, .. }) => {
                        badge != source_badge
                    }
                    (Cap::Untyped { .. }, _) => true,
                    _ => false,
                };
            let mut candidate = Some(source);
            let mut parent = None;
            while let Some(at_candidate) = candidate {
                let node = &self.nodes[&at_candidate];
                if can_parent(node, &cap, revocable) {
                    parent = Some(at_candidate);
                    break;
                }
                candidate = node.parent;
            }
            // A newly badged capability is also the first of its badge.
            self.nodes.insert(at, Node { cap, parent, revocable });
        }

        pub(super) fn descendants(&self, of: SlotRef) -> Vec<SlotRef> {
            let mut found: Vec<SlotRef> = Vec::new();
            let mut frontier = vec![of];
            while let Some(node) = frontier.pop() {
                for (at, child) in &self.nodes {
                    if child.parent == Some(node) && !found.contains(at) {
                        found.push(*at);
                        frontier.push(*at);
                    }
                }
            }
            found.sort();
            found
        }

        pub(super) fn delete(&mut self, at: SlotRef) {
            let Some(node) = self.nodes.remove(&at) else { return };
            for child in self.nodes.values_mut() {
                if child.parent == Some(at) {
                    child.parent = node.parent;
                }
            }
        }

        pub(super) fn revoke(&mut self, at: SlotRef) {
            for descendant in self.descendants(at) {
                self.delete(descendant);
            }
        }

        pub(super) fn move_node(&mut self, from: SlotRef, to: SlotRef, cap: Cap) {
            let Some(mut node) = self.nodes.remove(&from) else { return };
            node.cap = cap;
            self.nodes.insert(to, node);
            for child in self.nodes.values_mut() {
                if child.parent == Some(from) {
                    child.parent = Some(to);
                }
            }
        }
    }
}

/// Operations on a handful of slots, so that copies, mints, deletes and
/// revokes keep meeting the same capabilities.
fn dense_operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        1 => (4_u8..6, 0_u8..2, 2_u8..10, 1_u8..3)
            .prop_map(|(kind, size, slot, count)| Operation::Retype { kind, size, slot, count }),
        3 => (1_u8..12, 2_u8..12, 0_u8..16).prop_map(|(from, to, rights)| Operation::Copy { from, to, rights }),
        3 => (1_u8..12, 2_u8..12, 0_u8..3).prop_map(|(from, to, badge)| Operation::Mint { from, to, badge }),
        1 => (2_u8..12, 2_u8..12).prop_map(|(from, to)| Operation::Move { from, to }),
        2 => (2_u8..12).prop_map(|slot| Operation::Delete { slot }),
        2 => (1_u8..12).prop_map(|slot| Operation::Revoke { slot }),
    ]
}

/// The implementation's "derived from X": the run of slots after X in
/// derivation order that X is a parent of (what revoke deletes).
fn implementation_descendants(store: &MapStore, of: SlotRef) -> Vec<SlotRef> {
    let mut found = Vec::new();
    let mut next = store.slot(of).links.next;
    while let Some(at) = next {
        if !derivation::is_parent_of(store, of, at) {
            break;
        }
        found.push(at);
        next = store.slot(at).links.next;
    }
    found.sort();
    found
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Refinement: after every successful operation the implementation
    /// holds the same capabilities as the model, and for every capability
    /// the set of capabilities derived from it is the same.
    #[test]
    fn the_derivation_list_refines_the_explicit_tree(operations in proptest::collection::vec(dense_operation(), 1..80)) {
        let mut world = World::new();
        let mut tree = model::Tree::default();
        tree.insert_original(slot(0), world.cap(0));
        tree.insert_original(slot(UNTYPED_SLOT), world.cap(UNTYPED_SLOT));
        for operation in operations {
            let before: Vec<(u64, Cap)> = (0..256).map(|index| (index, world.cap(index))).collect();
            let untyped_at = world.store.occupied().find(|(_, s)| matches!(s.cap, Cap::Untyped { .. })).map(|(at, _)| at);
            let outcome = match operation {
                Operation::Retype { kind, size, slot: first, count } => world.retype(
                    ObjectKind::from_word(u64::from(kind)).unwrap_or(ObjectKind::Endpoint),
                    u64::from(size) + 4,
                    u64::from(first),
                    u64::from(count),
                ).map(|()| {
                    let untyped = untyped_at.expect("retype succeeded, so an untyped exists");
                    // The model's own watermark: objects follow the last
                    // one, or start again at the base once none is left.
                    let Cap::Untyped { base, free_offset, .. } = tree.nodes[&untyped].cap else { unreachable!() };
                    let used = if tree.descendants(untyped).is_empty() { 0 } else { free_offset };
                    let (_, object_bits) = world.cap(u64::from(first)).memory_region().expect("an object");
                    let start = used.div_ceil(1 << object_bits) << object_bits;
                    for (number, index) in (u64::from(first)..u64::from(first) + u64::from(count)).enumerate() {
                        let expected = base.as_u64() + start + ((number as u64) << object_bits);
                        assert_eq!(world.cap(index).memory_region().map(|(at, _)| at.as_u64()), Some(expected), "object {number} of the retype");
                        tree.insert_derived(untyped, slot(index), world.cap(index), true);
                    }
                    tree.nodes.get_mut(&untyped).expect("the untyped").cap = world.store.slot(untyped).cap;
                }),
                Operation::Copy { from, to, rights } => world
                    .copy(u64::from(from), u64::from(to), Rights::from_word(u64::from(rights)))
                    .map(|()| tree.insert_derived(slot(u64::from(from)), slot(u64::from(to)), world.cap(u64::from(to)), false)),
                Operation::Mint { from, to, badge } => world
                    .mint(u64::from(from), u64::from(to), Rights::ALL, u64::from(badge))
                    .map(|()| tree.insert_derived(slot(u64::from(from)), slot(u64::from(to)), world.cap(u64::from(to)), false)),
                Operation::Move { from, to } => world
                    .call(0, label::CNODE_MOVE, &[u64::from(to), 64, u64::from(from), 64], &[0])
                    .map(|()| tree.move_node(slot(u64::from(from)), slot(u64::from(to)), world.cap(u64::from(to)))),
                Operation::Delete { slot: index } => world.delete(u64::from(index)).map(|()| tree.delete(slot(u64::from(index)))),
                Operation::Revoke { slot: index } => world.revoke(u64::from(index)).map(|()| tree.revoke(slot(u64::from(index)))),
            };
            if outcome.is_err() {
                let after: Vec<(u64, Cap)> = (0..256).map(|index| (index, world.cap(index))).collect();
                prop_assert_eq!(&before, &after, "a refused operation changed capabilities");
            }
            for (at, node) in &tree.nodes {
                prop_assert_eq!(world.store.slot(*at).cap, node.cap, "slot {:?} differs from the model", at);
            }
            prop_assert_eq!(world.store.occupied().count(), tree.nodes.len(), "the implementation holds extra capabilities");
            for at in tree.nodes.keys() {
                prop_assert_eq!(implementation_descendants(&world.store, *at), tree.descendants(*at), "descendants of {:?}", at);
            }
        }
    }
}

#[test]
fn a_deleted_badged_parent_leaves_its_copies_outside_a_later_capability_with_the_same_badge() {
    // O unbadged; B and then B' minted from O with badge 5; B2 a copy of B.
    // Derivation order: O, B', B, B2. Deleting B must not make B2 a child
    // of B': B2 was derived from B, not from B', so revoking B' leaves it.
    let mut world = World::new();
    world.retype(ObjectKind::Endpoint, 0, 10, 1).expect("O");
    world.mint(10, 11, Rights::ALL, 5).expect("B");
    world.copy(11, 12, Rights::ALL).expect("B2");
    world.mint(10, 13, Rights::ALL, 5).expect("B'");
    world.delete(11).expect("delete B");
    world.revoke(13).expect("revoke B'");
    assert_eq!(world.cap(12).badge(), Some(5), "B2 survived the revoke of B'");
    world.revoke(10).expect("revoke O");
    assert!(world.cap(12).is_null(), "B2 was derived from O all along");
}
