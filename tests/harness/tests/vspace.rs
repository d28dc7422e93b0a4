//! Directed tests of the harness's address-space model: each runs on the
//! kernel core and the spec side by side (refinement and every invariant
//! checked after each step, as in `harness.rs`) and states the result
//! codes the ABI promises (`docs/abi.md`, "Address spaces").

use bulkhead_harness::driver::Addr::R;
use bulkhead_harness::driver::Op::{Copy, Delete, Retype, Revoke, Tcb, VSpace};
use bulkhead_harness::driver::TcbCall::{SetIpcBuffer, SetSpace};
use bulkhead_harness::driver::VSpaceCall::{Assign, GetAddress, MakePool, MapFrame, MapTable, UnmapFrame, UnmapTable};
use bulkhead_harness::driver::rights::{R as READ, RW, RWGP, W};
use bulkhead_harness::driver::types::{FRAME_1G, FRAME_4K, PAGE_TABLE, PML4, UNTYPED};
use bulkhead_harness::driver::{
    ASID_POOL_SLOT, FRAME_SLOTS, Op, PAGING_UNTYPED_SLOT, SETUP_FRAME_VADDR, SPARE_PML4_SLOT, SPARE_TABLE_SLOT,
    TABLE_SLOTS, Type, VSPACE_SLOT, results, run, vspace_objects,
};

const INVALID_ARGUMENT: u64 = 1;
const INVALID_CAPABILITY: u64 = 2;
const ILLEGAL_OPERATION: u64 = 3;
const FAILED_LOOKUP: u64 = 6;
const DELETE_FIRST: u64 = 8;
const REVOKE_FIRST: u64 = 9;
const ALIGNMENT_ERROR: u64 = 5;

/// The setup's VSpace objects, then `ops`; the result codes of `ops`.
fn after_setup(ops: &[Op]) -> Vec<Option<u64>> {
    let setup = vspace_objects();
    let mut all = setup.clone();
    all.extend_from_slice(ops);
    let codes = results(&all).unwrap_or_else(|violation| panic!("{violation}"));
    assert!(codes[..setup.len()].iter().all(|code| *code == Some(0)), "the setup succeeds: {codes:?}");
    codes[setup.len()..].to_vec()
}

/// A retype from the paging untyped into root slot `offset` and on.
const fn paging(kind: Type, size_bits: u64, offset: u64, count: u64) -> Op {
    Retype { untyped: PAGING_UNTYPED_SLOT, kind, size_bits, root: 0, node: 0, node_depth: 0, offset, count }
}

fn ok(count: usize) -> Vec<Option<u64>> {
    vec![Some(0); count]
}

#[test]
fn the_setup_builds_a_vspace() {
    assert_eq!(after_setup(&[]), ok(0));
}

#[test]
fn a_frame_maps_once_per_capability() {
    let frame = FRAME_SLOTS.start;
    let map = |cptr: u64, vaddr: u64| VSpace {
        cptr,
        call: MapFrame { vaddr, rights: RW, attributes: 0, vspace: VSPACE_SLOT },
    };
    let codes = after_setup(&[
        // Already mapped by this capability; a copy maps it again.
        map(frame, 0x2000),
        Copy { dest: R(50), src: R(frame), rights: RWGP },
        map(50, 0x2000),
        // The entry is in use.
        map(frame + 1, 0x2000),
        map(frame + 1, 0x3000),
    ]);
    assert_eq!(codes, vec![Some(ILLEGAL_OPERATION), Some(0), Some(0), Some(DELETE_FIRST), Some(0)]);
}

#[test]
fn frame_map_checks_its_arguments_in_order() {
    let frame = FRAME_SLOTS.start + 1;
    let map = |vaddr: u64, rights, attributes: u64, vspace: u64| VSpace {
        cptr: frame,
        call: MapFrame { vaddr, rights, attributes, vspace },
    };
    let codes = after_setup(&[
        map(0x2000, RW, 0, SPARE_PML4_SLOT),
        map(0x2000, W, 0, VSPACE_SLOT),
        map(0x2000, RW, 8, VSPACE_SLOT),
        map(0x2800, RW, 0, VSPACE_SLOT),
        map(1 << 47, RW, 0, VSPACE_SLOT),
        map((1 << 47) - 0x1000, RW, 0, VSPACE_SLOT),
        map(0x3000, READ, 0b111, VSPACE_SLOT),
    ]);
    assert_eq!(
        codes,
        vec![
            Some(INVALID_CAPABILITY),
            Some(INVALID_ARGUMENT),
            Some(INVALID_ARGUMENT),
            Some(ALIGNMENT_ERROR),
            Some(INVALID_ARGUMENT),
            Some(FAILED_LOOKUP),
            Some(0),
        ]
    );
}

#[test]
fn deleting_a_frame_capability_unmaps_it() {
    let frame = FRAME_SLOTS.start;
    let codes = after_setup(&[
        Delete { slot: R(frame) },
        // The entry is free again: the second frame takes it.
        VSpace {
            cptr: frame + 1,
            call: MapFrame { vaddr: SETUP_FRAME_VADDR, rights: RW, attributes: 0, vspace: VSPACE_SLOT },
        },
    ]);
    assert_eq!(codes, ok(2));
}

#[test]
fn a_table_unmaps_only_as_its_last_capability() {
    let table = TABLE_SLOTS.end - 1;
    let codes = after_setup(&[
        Copy { dest: R(50), src: R(table), rights: RWGP },
        VSpace { cptr: table, call: UnmapTable },
        Delete { slot: R(50) },
        VSpace { cptr: table, call: UnmapTable },
        // Unmapped (and cleared), it links in again, and the frame that
        // was in it maps once more.
        VSpace { cptr: table, call: MapTable { vaddr: 0, vspace: VSPACE_SLOT } },
        VSpace { cptr: FRAME_SLOTS.start, call: UnmapFrame },
        VSpace {
            cptr: FRAME_SLOTS.start,
            call: MapFrame { vaddr: SETUP_FRAME_VADDR, rights: RW, attributes: 0, vspace: VSPACE_SLOT },
        },
    ]);
    assert_eq!(codes, vec![Some(0), Some(REVOKE_FIRST), Some(0), Some(0), Some(0), Some(0), Some(0)]);
}

#[test]
fn unmapped_tables_and_unassigned_pml4s_cannot_be_copied() {
    let codes = after_setup(&[
        Copy { dest: R(50), src: R(SPARE_TABLE_SLOT), rights: RWGP },
        Copy { dest: R(50), src: R(SPARE_PML4_SLOT), rights: RWGP },
        Copy { dest: R(50), src: R(VSPACE_SLOT), rights: RWGP },
    ]);
    assert_eq!(codes, vec![Some(ILLEGAL_OPERATION), Some(ILLEGAL_OPERATION), Some(0)]);
}

#[test]
fn a_table_goes_in_at_its_own_level_only() {
    let codes = after_setup(&[
        // A page table needs a page directory above it: at 1 GiB there is none.
        VSpace { cptr: SPARE_TABLE_SLOT, call: MapTable { vaddr: 1 << 30, vspace: VSPACE_SLOT } },
        // At 2 MiB the setup's page directory has room.
        VSpace { cptr: SPARE_TABLE_SLOT, call: MapTable { vaddr: (1 << 21) + 0x1234, vspace: VSPACE_SLOT } },
        VSpace { cptr: SPARE_PML4_SLOT, call: MapTable { vaddr: 0, vspace: VSPACE_SLOT } },
    ]);
    assert_eq!(codes, vec![Some(FAILED_LOOKUP), Some(0), Some(ILLEGAL_OPERATION)]);
}

#[test]
fn deleting_the_vspace_voids_every_record_against_it() {
    let codes = after_setup(&[
        Delete { slot: R(VSPACE_SLOT) },
        // The ASID is free: the spare PML4 gets it, and nothing is mapped there.
        VSpace { cptr: ASID_POOL_SLOT, call: Assign { vspace: SPARE_PML4_SLOT } },
        VSpace {
            cptr: FRAME_SLOTS.start + 1,
            call: MapFrame { vaddr: SETUP_FRAME_VADDR, rights: RW, attributes: 0, vspace: SPARE_PML4_SLOT },
        },
        // The stale records unmap nothing.
        VSpace { cptr: FRAME_SLOTS.start, call: UnmapFrame },
        Delete { slot: R(TABLE_SLOTS.start) },
    ]);
    assert_eq!(codes, vec![Some(0), Some(0), Some(FAILED_LOOKUP), Some(0), Some(0)]);
}

#[test]
fn deleting_the_pool_unassigns_its_vspaces() {
    let codes = after_setup(&[
        Revoke { slot: R(26) },
        VSpace {
            cptr: FRAME_SLOTS.start + 1,
            call: MapFrame { vaddr: 0x2000, rights: RW, attributes: 0, vspace: VSPACE_SLOT },
        },
        // The untyped is empty again and makes a new pool, which the old
        // VSpace cannot join (it keeps its dead ASID).
        VSpace { cptr: 253, call: MakePool { untyped: 26, dest: R(ASID_POOL_SLOT) } },
        VSpace { cptr: ASID_POOL_SLOT, call: Assign { vspace: VSPACE_SLOT } },
        VSpace { cptr: ASID_POOL_SLOT, call: Assign { vspace: SPARE_PML4_SLOT } },
    ]);
    assert_eq!(codes, vec![Some(0), Some(INVALID_CAPABILITY), Some(0), Some(INVALID_CAPABILITY), Some(0)]);
}

#[test]
fn a_thread_runs_in_a_live_vspace_with_a_writable_buffer() {
    let codes = after_setup(&[
        Op::retype_root(bulkhead_harness::driver::types::TCB, 0, 12, 1),
        Tcb { tcb: 12, call: SetSpace { cnode: 0, vspace: Some(SPARE_PML4_SLOT) } },
        Tcb { tcb: 12, call: SetSpace { cnode: 0, vspace: Some(VSPACE_SLOT) } },
        Copy { dest: R(50), src: R(FRAME_SLOTS.start), rights: READ },
        Tcb { tcb: 12, call: SetIpcBuffer { frame: 50 } },
        Tcb { tcb: 12, call: SetIpcBuffer { frame: FRAME_SLOTS.start + 2 } },
        Tcb { tcb: 12, call: SetIpcBuffer { frame: FRAME_SLOTS.start } },
        VSpace { cptr: FRAME_SLOTS.start, call: GetAddress },
        // The thread's copy keeps the VSpace alive when the root's goes.
        Delete { slot: R(VSPACE_SLOT) },
        Delete { slot: R(12) },
    ]);
    assert_eq!(
        codes,
        vec![
            Some(0),
            Some(INVALID_CAPABILITY),
            Some(0),
            Some(0),
            Some(INVALID_CAPABILITY),
            Some(INVALID_CAPABILITY),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
        ]
    );
}

#[test]
fn large_frames_map_at_their_level() {
    let codes = after_setup(&[
        paging(FRAME_1G, 0, 50, 1),
        // A 1 GiB frame goes into the PDPT; the 2 MiB one into the page
        // directory, but not over the page table at 0.
        VSpace { cptr: 50, call: MapFrame { vaddr: 1 << 30, rights: RW, attributes: 1, vspace: VSPACE_SLOT } },
        VSpace {
            cptr: FRAME_SLOTS.start + 2,
            call: MapFrame { vaddr: 0, rights: RW, attributes: 0, vspace: VSPACE_SLOT },
        },
        VSpace {
            cptr: FRAME_SLOTS.start + 2,
            call: MapFrame { vaddr: 1 << 21, rights: RW, attributes: 6, vspace: VSPACE_SLOT },
        },
        // Nothing links below a large page.
        VSpace { cptr: SPARE_TABLE_SLOT, call: MapTable { vaddr: 1 << 21, vspace: VSPACE_SLOT } },
    ]);
    assert_eq!(codes, vec![Some(0), Some(0), Some(DELETE_FIRST), Some(0), Some(DELETE_FIRST)]);
}

#[test]
fn make_pool_needs_an_empty_4k_untyped() {
    let codes = after_setup(&[
        // The pool's untyped is full; a bigger one is refused.
        VSpace { cptr: 253, call: MakePool { untyped: 26, dest: R(50) } },
        paging(UNTYPED, 13, 51, 1),
        VSpace { cptr: 253, call: MakePool { untyped: 51, dest: R(50) } },
        paging(UNTYPED, 12, 52, 1),
        Retype { untyped: 52, kind: FRAME_4K, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 53, count: 1 },
        VSpace { cptr: 253, call: MakePool { untyped: 52, dest: R(50) } },
        Revoke { slot: R(52) },
        VSpace { cptr: 253, call: MakePool { untyped: 52, dest: R(50) } },
        VSpace { cptr: 50, call: Assign { vspace: SPARE_PML4_SLOT } },
    ]);
    assert_eq!(
        codes,
        vec![
            Some(REVOKE_FIRST),
            Some(0),
            Some(INVALID_CAPABILITY),
            Some(0),
            Some(0),
            Some(REVOKE_FIRST),
            Some(0),
            Some(0),
            Some(0),
        ]
    );
}

#[test]
fn a_page_table_in_the_paging_untyped_is_retyped_fresh() {
    // Revoking the paging untyped takes every object back; the same
    // memory retyped again starts empty.
    let mut ops = vspace_objects();
    ops.extend([Revoke { slot: R(PAGING_UNTYPED_SLOT) }, paging(PML4, 0, 50, 1), paging(PAGE_TABLE, 0, 51, 1)]);
    run(&ops).unwrap_or_else(|violation| panic!("{violation}"));
}

#[test]
fn a_guest_space_maps_guest_physical_memory_and_runs_no_thread() {
    use bulkhead_harness::driver::types::{PDPT, TCB};
    use bulkhead_harness::driver::{GUEST_OBJECT_SLOTS, GUEST_SPACE_SLOT};
    let guest_frame = GUEST_OBJECT_SLOTS.end - 1;
    let codes = after_setup(&[
        // Guest-physical 2^47 is beyond a VSpace, not a guest.
        paging(PDPT, 0, 50, 2),
        VSpace { cptr: 50, call: MapTable { vaddr: 1 << 47, vspace: GUEST_SPACE_SLOT } },
        VSpace { cptr: 51, call: MapTable { vaddr: 1 << 47, vspace: VSPACE_SLOT } },
        VSpace { cptr: 51, call: MapTable { vaddr: 1 << 48, vspace: GUEST_SPACE_SLOT } },
        // The guest's memory is mapped already, by this capability.
        VSpace { cptr: guest_frame, call: MapFrame { vaddr: 0, rights: RW, attributes: 0, vspace: GUEST_SPACE_SLOT } },
        // A root is neither linked nor unlinked, and no thread runs in it.
        VSpace { cptr: GUEST_SPACE_SLOT, call: UnmapTable },
        VSpace { cptr: GUEST_SPACE_SLOT, call: MapTable { vaddr: 0, vspace: VSPACE_SLOT } },
        Op::retype_root(TCB, 0, 12, 1),
        Tcb { tcb: 12, call: SetSpace { cnode: 0, vspace: Some(GUEST_SPACE_SLOT) } },
        // Deleting the guest's memory capability unmaps it; deleting the
        // space frees its ASID for the spare PML4.
        Delete { slot: R(guest_frame) },
        Delete { slot: R(GUEST_SPACE_SLOT) },
        VSpace { cptr: ASID_POOL_SLOT, call: Assign { vspace: SPARE_PML4_SLOT } },
        VSpace { cptr: 50, call: UnmapTable },
    ]);
    assert_eq!(
        codes,
        vec![
            Some(0),
            Some(0),
            Some(INVALID_ARGUMENT),
            Some(INVALID_ARGUMENT),
            Some(ILLEGAL_OPERATION),
            Some(ILLEGAL_OPERATION),
            Some(ILLEGAL_OPERATION),
            Some(0),
            Some(INVALID_CAPABILITY),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
        ]
    );
}
