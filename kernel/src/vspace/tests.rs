//! VSpace invocations through the system-call layer, every error path, and
//! a property test of the mapping invariant: every entry a VSpace can
//! reach is recorded by a live capability.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::cap::invocation::label as cnode_label;
use crate::cap::object::ObjectKind;
use crate::cap::{Rights, SlotStore};
use crate::platform::{PlatformEvent, RecordingPlatform};
use crate::store::MapStore;
use crate::syscall::Kernel;
use crate::test_fixture::{R_SELF, R_UNTYPED, Request, UNTYPED_BASE, issue, root_kernel, root_slot, root_thread};
use crate::virt::GuestFormat;

// Root CNode slots (a root cptr is the slot index).
const R_ASID_CONTROL: u64 = 2;
const R_POOL_UNTYPED: u64 = 3; // 3..=6: 4 KiB untypeds for pools
const R_POOL: u64 = 8;
const R_PML4: u64 = 10; // 10, 11
const R_PDPT: u64 = 12;
const R_PD: u64 = 13;
const R_PT: u64 = 14; // 14, 15
const R_FRAME: u64 = 20; // 20..=23
const R_LARGE: u64 = 24;
const R_COPY: u64 = 30; // 30.. copies

const CODE: u64 = 0x40_0000;

struct World {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
}

impl World {
    /// An invocation by the root thread: the error code (0 for success) and
    /// the reply's word 0.
    fn call(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> (u64, u64) {
        issue(&mut self.kernel, &mut self.platform, root_thread(), &Request::call(cptr, label, words, extra))
    }

    fn ok(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) {
        let (code, _) = self.call(cptr, label, words, extra);
        assert_eq!(code, 0, "invocation {label} on {cptr} failed with {code}");
    }

    fn error(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> SyscallError {
        let (code, _) = self.call(cptr, label, words, extra);
        SyscallError::ALL.into_iter().find(|error| error.code() == code).unwrap_or_else(|| panic!("code {code}"))
    }

    fn retype(&mut self, kind: ObjectKind, size_bits: u64, slot: u64, count: u64) {
        self.ok(R_UNTYPED, cnode_label::UNTYPED_RETYPE, &[kind as u64, size_bits, 0, 0, slot, count], &[R_SELF]);
    }

    fn cap(&self, slot: u64) -> Cap {
        self.kernel.store.slot(root_slot(slot)).cap
    }

    fn object(&self, slot: u64) -> PhysAddr {
        self.cap(slot).memory_region().expect("an object").0
    }

    fn copy(&mut self, to: u64, from: u64) -> u64 {
        self.call(R_SELF, cnode_label::CNODE_COPY, &[to, 64, from, 64, u64::from(Rights::ALL.bits())], &[R_SELF]).0
    }

    fn delete(&mut self, slot: u64) {
        self.ok(R_SELF, cnode_label::CNODE_DELETE, &[slot, 64], &[]);
    }

    fn map_frame(&mut self, frame: u64, address: u64, rights: Rights, attributes: u64) -> u64 {
        self.map_frame_into(frame, address, rights, attributes, R_PML4)
    }

    fn map_frame_into(&mut self, frame: u64, address: u64, rights: Rights, attributes: u64, space: u64) -> u64 {
        self.call(frame, label::FRAME_MAP, &[address, u64::from(rights.bits()), attributes], &[space]).0
    }

    fn translate(&self, address: u64) -> Option<(u64, u64)> {
        translate(&self.kernel.store, self.object(R_PML4), address)
    }
}

/// A root thread with an 8 MiB untyped, AsidControl and four 4 KiB
/// untypeds; then a pool, two PML4s (the first assigned), a PDPT, a PD, two
/// PTs, four 4 KiB frames and a 2 MiB frame.
fn world() -> World {
    let kernel = root_kernel(23, 255, &[(R_ASID_CONTROL, Cap::AsidControl)]);
    let mut world = World { kernel, platform: RecordingPlatform::new() };

    world.retype(ObjectKind::Untyped, 12, R_POOL_UNTYPED, 4);
    world.ok(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_POOL, 64], &[R_POOL_UNTYPED, R_SELF]);
    world.retype(ObjectKind::Pml4, 0, R_PML4, 2);
    world.retype(ObjectKind::PageDirectoryPointerTable, 0, R_PDPT, 1);
    world.retype(ObjectKind::PageDirectory, 0, R_PD, 1);
    world.retype(ObjectKind::PageTable, 0, R_PT, 2);
    world.retype(ObjectKind::Frame4K, 0, R_FRAME, 4);
    world.retype(ObjectKind::Frame2M, 0, R_LARGE, 1);
    world.ok(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PML4]);
    world
}

/// `world()` with the PDPT, PD and first PT mapped for addresses 0..2 MiB.
fn mapped_world() -> World {
    let mut world = world();
    world.ok(R_PDPT, label::PAGE_TABLE_MAP, &[0], &[R_PML4]);
    world.ok(R_PD, label::PAGE_TABLE_MAP, &[0], &[R_PML4]);
    world.ok(R_PT, label::PAGE_TABLE_MAP, &[CODE], &[R_PML4]);
    world
}

#[test]
fn a_frame_mapped_through_three_levels_translates_with_its_rights() {
    let mut world = mapped_world();
    let frame = world.object(R_FRAME);
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::READ, attribute::EXECUTE), 0);
    let (physical, value) = world.translate(CODE + 0x123).expect("mapped");
    assert_eq!(physical, frame.as_u64() + 0x123);
    assert_eq!(value & (entry::WRITABLE | entry::NO_EXECUTE | entry::USER), entry::USER, "read-only, executable");
    assert_eq!(
        world.map_frame(R_FRAME + 1, CODE + 0x1000, Rights::READ | Rights::WRITE, (MemoryType::Uncached as u64) << 1),
        0
    );
    let (_, value) = world.translate(CODE + 0x1000).expect("mapped");
    assert_eq!(
        value & (entry::WRITABLE | entry::NO_EXECUTE | entry::WRITE_THROUGH | entry::CACHE_DISABLE),
        entry::WRITABLE | entry::NO_EXECUTE | entry::WRITE_THROUGH | entry::CACHE_DISABLE
    );
    assert!(world.translate(CODE + 0x2000).is_none());
    // A 2 MiB frame straight into the page directory.
    let large = world.object(R_LARGE);
    assert_eq!(world.map_frame(R_LARGE, 0x20_0000 * 4, Rights::ALL, 0), 0);
    assert_eq!(
        world.translate(0x20_0000 * 4 + 0x1_2345).map(|(physical, _)| physical),
        Some(large.as_u64() + 0x1_2345)
    );
    // The capability says where; GetAddress says what.
    assert!(matches!(world.cap(R_FRAME), Cap::Frame { mapping: Some(MappedAt { address: CODE, .. }), .. }));
    assert_eq!(world.call(R_FRAME, label::FRAME_GET_ADDRESS, &[], &[]), (0, frame.as_u64()));
}

#[test]
fn rights_never_exceed_the_capability() {
    let mut world = mapped_world();
    let read_only = u64::from(Rights::READ.bits());
    assert_eq!(world.call(R_SELF, cnode_label::CNODE_COPY, &[R_COPY, 64, R_FRAME, 64, read_only], &[R_SELF]).0, 0);
    assert_eq!(world.map_frame(R_COPY, CODE, Rights::ALL, 0), 0);
    let (_, value) = world.translate(CODE).expect("mapped");
    assert_eq!(value & entry::WRITABLE, 0, "a read-only capability maps read-only whatever is asked");
}

#[test]
fn every_frame_map_error() {
    let mut world = mapped_world();
    let no_vspace: &[u64] = &[];
    assert_eq!(world.error(R_FRAME, label::FRAME_MAP, &[CODE, 3, 0], no_vspace), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_FRAME, label::FRAME_MAP, &[CODE, 3], &[R_PML4]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_FRAME, label::FRAME_MAP, &[CODE, 3, 0], &[99]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_FRAME, label::FRAME_MAP, &[CODE, 3, 0], &[R_PT]), SyscallError::InvalidCapability);
    assert_eq!(
        world.error(R_FRAME, label::FRAME_MAP, &[CODE, 3, 0], &[R_PML4 + 1]),
        SyscallError::InvalidCapability,
        "a PML4 without an ASID"
    );
    assert_eq!(world.map_frame(R_FRAME, CODE + 8, Rights::ALL, 0), SyscallError::AlignmentError.code());
    assert_eq!(world.map_frame(R_LARGE, 0x30_0000, Rights::ALL, 0), SyscallError::AlignmentError.code());
    assert_eq!(world.map_frame(R_FRAME, USER_TOP, Rights::ALL, 0), SyscallError::InvalidArgument.code());
    assert_eq!(world.map_frame(R_FRAME, !0xfff, Rights::ALL, 0), SyscallError::InvalidArgument.code());
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::WRITE, 0), SyscallError::InvalidArgument.code(), "no READ");
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 1 << 3), SyscallError::InvalidArgument.code());
    assert_eq!(world.map_frame(R_FRAME, 0x4000_0000, Rights::ALL, 0), SyscallError::FailedLookup.code(), "no PD");
    assert_eq!(world.map_frame(R_FRAME, 0x60_0000, Rights::ALL, 0), SyscallError::FailedLookup.code(), "no PT");
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 0), 0);
    assert_eq!(world.map_frame(R_FRAME + 1, CODE, Rights::ALL, 0), SyscallError::DeleteFirst.code());
    assert_eq!(world.map_frame(R_FRAME, CODE + 0x1000, Rights::ALL, 0), SyscallError::IllegalOperation.code());
    assert_eq!(world.map_frame(R_LARGE, CODE, Rights::ALL, 0), SyscallError::DeleteFirst.code(), "a PT is there");
    // A 4 KiB frame under a 2 MiB mapping finds no page table.
    assert_eq!(world.map_frame(R_LARGE, 0x40_0000 * 2, Rights::ALL, 0), 0);
    assert_eq!(world.map_frame(R_FRAME + 2, 0x40_0000 * 2, Rights::ALL, 0), SyscallError::FailedLookup.code());
    // Unknown labels, and labels of other objects.
    assert_eq!(world.error(R_FRAME, 999, &[], &[]), SyscallError::IllegalOperation);
    assert_eq!(world.error(R_FRAME, label::PAGE_TABLE_MAP, &[0], &[R_PML4]), SyscallError::IllegalOperation);
    assert_eq!(world.error(R_PT, label::FRAME_MAP, &[0, 3, 0], &[R_PML4]), SyscallError::IllegalOperation);
}

#[test]
fn every_page_table_error() {
    let mut world = world();
    assert_eq!(world.error(R_PD, label::PAGE_TABLE_MAP, &[0], &[R_PML4]), SyscallError::FailedLookup, "no PDPT");
    assert_eq!(world.error(R_PDPT, label::PAGE_TABLE_MAP, &[], &[R_PML4]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_PDPT, label::PAGE_TABLE_MAP, &[0], &[]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_PDPT, label::PAGE_TABLE_MAP, &[0], &[R_PML4 + 1]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_PDPT, label::PAGE_TABLE_MAP, &[USER_TOP], &[R_PML4]), SyscallError::InvalidArgument);
    assert_eq!(world.error(R_PML4, label::PAGE_TABLE_MAP, &[0], &[R_PML4]), SyscallError::IllegalOperation);
    world.ok(R_PDPT, label::PAGE_TABLE_MAP, &[0x123], &[R_PML4]);
    assert!(
        matches!(world.cap(R_PDPT), Cap::PageTable { mapping: Some(MappedAt { address: 0, .. }), .. }),
        "the address is rounded down to what the entry covers"
    );
    assert_eq!(world.error(R_PDPT, label::PAGE_TABLE_MAP, &[1 << 39], &[R_PML4]), SyscallError::IllegalOperation);
    world.ok(R_PD, label::PAGE_TABLE_MAP, &[0], &[R_PML4]);
    world.ok(R_PT, label::PAGE_TABLE_MAP, &[0], &[R_PML4]);
    assert_eq!(world.error(R_PT + 1, label::PAGE_TABLE_MAP, &[0x1000], &[R_PML4]), SyscallError::DeleteFirst);
    // Unmapped tables cannot be copied; mapped ones can, and then Unmap
    // needs the last capability.
    assert_eq!(world.copy(R_COPY, R_PT + 1), SyscallError::IllegalOperation.code());
    assert_eq!(world.copy(R_COPY, R_PT), 0);
    assert_eq!(world.error(R_PT, label::PAGE_TABLE_UNMAP, &[], &[]), SyscallError::RevokeFirst);
    assert_eq!(world.error(R_PML4, label::PAGE_TABLE_UNMAP, &[], &[]), SyscallError::IllegalOperation);
    world.delete(R_COPY);
    world.ok(R_PT, label::PAGE_TABLE_UNMAP, &[], &[]);
    assert_eq!(world.copy(R_COPY, R_PML4 + 1), SyscallError::IllegalOperation.code(), "an unassigned PML4");
}

#[test]
fn unmapping_a_table_clears_it_so_nothing_comes_back() {
    let mut world = mapped_world();
    let pml4 = world.object(R_PML4);
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 0), 0);
    world.platform.clear();
    world.ok(R_PT, label::PAGE_TABLE_UNMAP, &[], &[]);
    assert!(world.translate(CODE).is_none());
    assert!(world.platform.saw(&PlatformEvent::InvalidateVSpace { vspace: pml4 }));
    let pt = world.object(R_PT);
    assert!((0..ENTRIES).all(|index| world.kernel.store.table_entry(pt, index) == 0), "cleared");
    // Mapped again elsewhere, it brings no old mapping with it; the frame's
    // stale record unmaps nothing that is not its own.
    world.ok(R_PT, label::PAGE_TABLE_MAP, &[0x60_0000], &[R_PML4]);
    assert!(world.translate(0x60_0000 + (CODE & 0x1f_ffff)).is_none());
    world.ok(R_PT + 1, label::PAGE_TABLE_MAP, &[CODE], &[R_PML4]);
    assert_eq!(world.map_frame(R_FRAME + 1, CODE, Rights::ALL, 0), 0);
    world.ok(R_FRAME, label::FRAME_UNMAP, &[], &[]);
    assert!(world.translate(CODE).is_some(), "another frame's mapping at the same place stays");
    assert!(matches!(world.cap(R_FRAME), Cap::Frame { mapping: None, .. }));
}

#[test]
fn deleting_a_frame_capability_removes_its_mapping_and_only_its_own() {
    let mut world = mapped_world();
    let pml4 = world.object(R_PML4);
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 0), 0);
    assert_eq!(world.copy(R_COPY, R_FRAME), 0);
    assert!(matches!(world.cap(R_COPY), Cap::Frame { mapping: None, .. }), "a copy starts unmapped");
    assert_eq!(world.map_frame(R_COPY, CODE + 0x1000, Rights::ALL, 0), 0);
    world.platform.clear();
    world.delete(R_COPY);
    assert!(world.translate(CODE + 0x1000).is_none());
    assert!(world.translate(CODE).is_some());
    assert!(world.platform.saw(&PlatformEvent::InvalidatePage { vspace: pml4, virtual_address: CODE + 0x1000 }));
    world.delete(R_FRAME);
    assert!(world.translate(CODE).is_none());
}

#[test]
fn deleting_a_vspace_frees_its_asid_and_voids_old_records() {
    let mut world = mapped_world();
    let pml4 = world.object(R_PML4);
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 0), 0);
    let Cap::PageTable { mapping: Some(MappedAt { asid, .. }), .. } = world.cap(R_PML4) else { panic!() };
    world.delete(R_PML4);
    assert_eq!(world.kernel.asids.vspace(&world.kernel.store, asid), None);
    assert!(world.platform.saw(&PlatformEvent::VSpaceDeleted { vspace: pml4 }));
    // The next VSpace gets the same ASID; the frame's old record must not
    // touch it.
    world.ok(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PML4 + 1]);
    let Cap::PageTable { mapping: Some(MappedAt { asid: reused, .. }), .. } = world.cap(R_PML4 + 1) else { panic!() };
    assert_eq!(reused, asid);
    let other = world.object(R_PML4 + 1);
    let before: Vec<u64> = (0..ENTRIES).map(|index| world.kernel.store.table_entry(other, index)).collect();
    world.ok(R_FRAME, label::FRAME_UNMAP, &[], &[]);
    world.delete(R_PD);
    let after: Vec<u64> = (0..ENTRIES).map(|index| world.kernel.store.table_entry(other, index)).collect();
    assert_eq!(before, after);
}

#[test]
fn every_asid_error() {
    let mut world = world();
    // MakePool: the untyped must be a whole, unused, 4 KiB of RAM.
    assert_eq!(
        world.error(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_COPY, 64], &[R_UNTYPED, R_SELF]),
        SyscallError::InvalidCapability
    );
    assert_eq!(
        world.error(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_COPY, 64], &[R_POOL_UNTYPED, R_SELF]),
        SyscallError::RevokeFirst,
        "already a pool: the pool is its child"
    );
    assert_eq!(
        world.error(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_POOL, 64], &[R_POOL_UNTYPED + 1, R_SELF]),
        SyscallError::DeleteFirst
    );
    assert_eq!(
        world.error(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_COPY, 64], &[R_POOL_UNTYPED + 1, R_PT]),
        SyscallError::InvalidCapability
    );
    assert_eq!(
        world.error(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_COPY, 0], &[R_POOL_UNTYPED + 1, R_SELF]),
        SyscallError::RangeError
    );
    assert_eq!(
        world.error(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_COPY, 64], &[R_POOL_UNTYPED + 1]),
        SyscallError::TruncatedMessage
    );
    assert_eq!(world.error(R_ASID_CONTROL, 999, &[], &[]), SyscallError::IllegalOperation);
    assert_eq!(world.copy(R_COPY, R_ASID_CONTROL), SyscallError::IllegalOperation.code(), "one AsidControl");
    // Assign: once per VSpace, PML4s only.
    assert_eq!(world.error(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PML4]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PDPT]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_POOL, label::ASID_POOL_ASSIGN, &[], &[]), SyscallError::TruncatedMessage);
    // A full pool: pool 0 has 511 ASIDs (ASID 0 is never used).
    world.retype(ObjectKind::Pml4, 0, 40, 200);
    for slot in 40..240 {
        world.ok(R_POOL, label::ASID_POOL_ASSIGN, &[], &[slot]);
    }
    let pool = world.object(R_POOL);
    for index in 202..ASIDS_PER_POOL {
        world.kernel.store.asid_pool_mut(pool).entries[index] = 0x1000;
    }
    assert_eq!(world.error(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PML4 + 1]), SyscallError::NotEnoughMemory);
    // A second pool serves on.
    world.ok(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_COPY, 64], &[R_POOL_UNTYPED + 1, R_SELF]);
    world.ok(R_COPY, label::ASID_POOL_ASSIGN, &[], &[R_PML4 + 1]);
    assert!(matches!(world.cap(R_PML4 + 1), Cap::PageTable { mapping: Some(MappedAt { asid: Asid(512), .. }), .. }));
    // Deleting a pool voids every VSpace assigned from it.
    world.delete(R_COPY);
    assert_eq!(world.kernel.asids.vspace(&world.kernel.store, Asid(512)), None);
    assert_eq!(world.kernel.asids.pools[1], None);
}

#[test]
fn a_vspace_whose_pool_is_gone_takes_no_mapping_and_its_untyped_makes_a_pool_again() {
    let mut world = world();
    world.delete(R_POOL);
    // The PML4's capability still says ASID 1, but the ASID is gone: a
    // mapping recorded against it could never be removed again.
    assert_eq!(world.error(R_PDPT, label::PAGE_TABLE_MAP, &[0], &[R_PML4]), SyscallError::InvalidCapability);
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 0), SyscallError::InvalidCapability.code());
    // The pool's untyped, its child gone, makes a pool again.
    world.ok(R_ASID_CONTROL, label::ASID_CONTROL_MAKE_POOL, &[R_POOL, 64], &[R_POOL_UNTYPED, R_SELF]);
    world.ok(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PML4 + 1]);
    world.ok(R_PDPT, label::PAGE_TABLE_MAP, &[0], &[R_PML4 + 1]);
}

#[test]
fn revoking_the_untyped_leaves_no_vspace_and_no_mapping() {
    let mut world = mapped_world();
    assert_eq!(world.map_frame(R_FRAME, CODE, Rights::ALL, 0), 0);
    world.ok(R_SELF, cnode_label::CNODE_REVOKE, &[R_UNTYPED, 64], &[]);
    assert_eq!(world.kernel.asids.pools, [None; ASID_POOLS]);
    // Everything can be made again from the start of the untyped.
    world.retype(ObjectKind::Untyped, 12, R_POOL_UNTYPED, 1);
    assert_eq!(world.object(R_POOL_UNTYPED), PhysAddr::new(UNTYPED_BASE));
}

/// Every present entry reachable from an assigned VSpace is recorded by a
/// live capability: a table's by a capability to that table mapped there,
/// a leaf's by a frame capability mapped there. Also: no two frame
/// capabilities record the same place.
fn check_mapping_invariant(world: &World) -> Result<(), String> {
    let store = &world.kernel.store;
    let mut records: BTreeMap<(u16, u64, u64), usize> = BTreeMap::new();
    for (_, slot) in store.occupied() {
        match slot.cap {
            Cap::Frame { base, mapping: Some(MappedAt { asid, address }), .. } => {
                *records.entry((asid.0, address, base.as_u64())).or_default() += 1;
            }
            Cap::PageTable { object, level, mapping: Some(MappedAt { asid, address }) }
                if level != PageTableLevel::Pml4 =>
            {
                records.entry((asid.0, address, object.as_u64())).or_insert(1);
            }
            _ => {}
        }
    }
    if let Some((record, count)) = records.iter().find(|(_, count)| **count > 1) {
        return Err(format!("{count} frame capabilities record {record:x?}"));
    }
    for (pool_number, pool) in world.kernel.asids.pools.iter().enumerate() {
        let Some(pool) = pool else { continue };
        for (index, pml4) in store.asid_pool(*pool).entries.iter().enumerate() {
            if *pml4 == 0 {
                continue;
            }
            let asid = u16::try_from(pool_number * ASIDS_PER_POOL + index).expect("asid");
            let mut stack = vec![(PhysAddr::new(*pml4), PageTableLevel::Pml4, 0_u64)];
            while let Some((table, level, base)) = stack.pop() {
                for index in 0..ENTRIES {
                    let value = store.table_entry(table, index);
                    if value & entry::PRESENT == 0 {
                        continue;
                    }
                    let address = base | ((index as u64) << entry_shift(level));
                    let target = value & entry::ADDRESS;
                    if !records.contains_key(&(asid, address, target)) {
                        return Err(format!("ASID {asid}: entry at {address:#x} to {target:#x} has no record"));
                    }
                    let leaf = level == PageTableLevel::PageTable || value & entry::LARGE != 0;
                    if let (false, Some(next)) = (leaf, below(level)) {
                        stack.push((PhysAddr::new(target), next, address));
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Step {
    MapTable { table: u64, address: u64, vspace: u64 },
    UnmapTable { table: u64 },
    MapFrame { frame: u64, address: u64, vspace: u64 },
    UnmapFrame { frame: u64 },
    Copy { to: u64, from: u64 },
    Delete { slot: u64 },
    Revoke { slot: u64 },
    Assign { vspace: u64 },
}

/// Addresses that collide often: a few slots in the first 2 GiB and one
/// far away.
fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(CODE),
        Just(CODE + 0x1000),
        Just(0x20_0000),
        Just(0x4000_0000),
        Just(0x7f_c000_0000),
        any::<u64>()
    ]
}

fn any_slot() -> impl Strategy<Value = u64> {
    prop_oneof![R_PML4..=R_PT + 1, R_FRAME..=R_LARGE, R_COPY..R_COPY + 4, Just(R_POOL)]
}

fn step() -> impl Strategy<Value = Step> {
    let vspace = R_PML4..=R_PML4 + 1;
    prop_oneof![
        (R_PDPT..=R_PT + 1, address(), vspace.clone()).prop_map(|(table, address, vspace)| Step::MapTable {
            table,
            address,
            vspace
        }),
        (R_PDPT..=R_PT + 1).prop_map(|table| Step::UnmapTable { table }),
        (prop_oneof![R_FRAME..=R_LARGE, R_COPY..R_COPY + 4], address(), vspace.clone())
            .prop_map(|(frame, address, vspace)| Step::MapFrame { frame, address, vspace }),
        (prop_oneof![R_FRAME..=R_LARGE, R_COPY..R_COPY + 4]).prop_map(|frame| Step::UnmapFrame { frame }),
        (R_COPY..R_COPY + 4, any_slot()).prop_map(|(to, from)| Step::Copy { to, from }),
        any_slot().prop_map(|slot| Step::Delete { slot }),
        any_slot().prop_map(|slot| Step::Revoke { slot }),
        vspace.prop_map(|vspace| Step::Assign { vspace }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random maps, unmaps, copies, deletes and revokes never leave a
    /// reachable entry without its capability.
    #[test]
    fn every_reachable_mapping_has_its_capability(steps in proptest::collection::vec(step(), 1..40)) {
        // Start with one chain of tables mapped, so frame maps often land.
        let mut world = mapped_world();
        for step in &steps {
            match *step {
                Step::MapTable { table, address, vspace } => {
                    world.call(table, label::PAGE_TABLE_MAP, &[address], &[vspace]);
                }
                Step::UnmapTable { table } => {
                    world.call(table, label::PAGE_TABLE_UNMAP, &[], &[]);
                }
                Step::MapFrame { frame, address, vspace } => {
                    world.call(frame, label::FRAME_MAP, &[address & !0xfff, 3, 0], &[vspace]);
                }
                Step::UnmapFrame { frame } => {
                    world.call(frame, label::FRAME_UNMAP, &[], &[]);
                }
                Step::Copy { to, from } => {
                    world.copy(to, from);
                }
                Step::Delete { slot } => {
                    world.call(R_SELF, cnode_label::CNODE_DELETE, &[slot, 64], &[]);
                }
                Step::Revoke { slot } => {
                    world.call(R_SELF, cnode_label::CNODE_REVOKE, &[slot, 64], &[]);
                }
                Step::Assign { vspace } => {
                    world.call(R_POOL, label::ASID_POOL_ASSIGN, &[], &[vspace]);
                }
            }
            if let Err(problem) = check_mapping_invariant(&world) {
                prop_assert!(false, "after {step:?}: {problem}");
            }
        }
    }
}

/// A GuestSpace in slot 40 with the pool's next ASID, and a PDPT (41), a
/// PD (42) and a PT (43) linked into it to cover guest-physical
/// `GUEST_AT`, on a machine whose GuestSpaces take `format`.
const R_GUEST: u64 = 40;
const GUEST_AT: u64 = 1 << 47;

fn guest_world(format: Option<GuestFormat>) -> World {
    let mut world = world();
    world.kernel.guest_format = format;
    world.retype(ObjectKind::GuestSpace, 0, R_GUEST, 1);
    world.retype(ObjectKind::PageDirectoryPointerTable, 0, R_GUEST + 1, 1);
    world.retype(ObjectKind::PageDirectory, 0, R_GUEST + 2, 1);
    world.retype(ObjectKind::PageTable, 0, R_GUEST + 3, 1);
    world.ok(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_GUEST]);
    world
}

fn link_guest_tables(world: &mut World) {
    for table in R_GUEST + 1..=R_GUEST + 3 {
        world.ok(table, label::PAGE_TABLE_MAP, &[GUEST_AT], &[R_GUEST]);
    }
}

#[test]
fn a_guest_space_maps_frames_in_its_backends_format_above_the_user_half() {
    for (format, table_link, page) in
        [(GuestFormat::Npt, 0b111, 0b111 | entry::NO_EXECUTE), (GuestFormat::Ept, 0b111, 0b011 | 6 << 3 | 1 << 6)]
    {
        let mut world = guest_world(Some(format));
        link_guest_tables(&mut world);
        let guest = world.object(R_GUEST);
        let frame = world.object(R_FRAME);
        // Guest-physical 2^47 is beyond a VSpace's reach, not a guest's.
        assert_eq!(world.map_frame_into(R_FRAME, GUEST_AT, Rights::READ | Rights::WRITE, 0, R_GUEST), 0);
        let pdpt = world.kernel.store.table_entry(guest, index(GUEST_AT, PageTableLevel::Pml4));
        assert_eq!(pdpt, world.object(R_GUEST + 1).as_u64() | table_link, "{format:?}");
        let pt = world.object(R_GUEST + 3);
        assert_eq!(world.kernel.store.table_entry(pt, 0), frame.as_u64() | page, "{format:?}");
        // The record is the guest's ASID and the guest-physical address.
        let Cap::Frame { mapping: Some(MappedAt { address, .. }), .. } = world.cap(R_FRAME) else { panic!() };
        assert_eq!(address, GUEST_AT);
        // Deleting the capability unmaps it, as in a VSpace.
        world.delete(R_FRAME);
        assert_eq!(world.kernel.store.table_entry(pt, 0), 0);
        // 2^48 is beyond a four-level guest space.
        assert_eq!(
            world.error(R_FRAME + 1, label::FRAME_MAP, &[1 << 48, 3, 0], &[R_GUEST]),
            SyscallError::InvalidArgument
        );
    }
}

#[test]
fn a_guest_space_is_no_threads_vspace_and_no_table() {
    let mut world = guest_world(Some(GuestFormat::Npt));
    // Not linkable, not unmappable, not a thread's VSpace.
    assert_eq!(world.error(R_GUEST, label::PAGE_TABLE_MAP, &[0], &[R_PML4]), SyscallError::IllegalOperation);
    assert_eq!(world.error(R_GUEST, label::PAGE_TABLE_UNMAP, &[], &[]), SyscallError::IllegalOperation);
    assert!(!is_live_vspace(&world.kernel.store, &world.kernel.asids, &world.cap(R_GUEST)));
    // A table linked into a guest space has the guest's format, and a
    // table already linked cannot go into a VSpace too.
    link_guest_tables(&mut world);
    assert_eq!(world.error(R_GUEST + 1, label::PAGE_TABLE_MAP, &[0], &[R_PML4]), SyscallError::IllegalOperation);
}

#[test]
fn without_a_backend_nothing_maps_into_a_guest_space() {
    let mut world = guest_world(None);
    assert_eq!(
        world.error(R_GUEST + 1, label::PAGE_TABLE_MAP, &[GUEST_AT], &[R_GUEST]),
        SyscallError::IllegalOperation
    );
    assert_eq!(
        world.error(R_FRAME, label::FRAME_MAP, &[0, 3, 0], &[R_GUEST]),
        SyscallError::IllegalOperation,
        "a GuestSpace still needs its ASID checked first: it has one here"
    );
}

#[test]
fn deleting_a_guest_space_frees_its_asid() {
    let mut world = guest_world(Some(GuestFormat::Ept));
    let Cap::PageTable { mapping: Some(MappedAt { asid, .. }), .. } = world.cap(R_GUEST) else { panic!("assigned") };
    assert_eq!(world.kernel.asids.vspace(&world.kernel.store, asid), Some(world.object(R_GUEST)));
    world.delete(R_GUEST);
    assert_eq!(world.kernel.asids.vspace(&world.kernel.store, asid), None);
    // The second PML4 takes the freed ASID.
    world.ok(R_POOL, label::ASID_POOL_ASSIGN, &[], &[R_PML4 + 1]);
    let Cap::PageTable { mapping: Some(MappedAt { asid: reused, .. }), .. } = world.cap(R_PML4 + 1) else { panic!() };
    assert_eq!(reused, asid);
}
