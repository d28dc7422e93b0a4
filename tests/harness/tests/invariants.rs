//! Every invariant can fail: a sound state passes them all, and for each
//! invariant one corruption of that state makes it fail.

use bulkhead_harness::driver::BOOT;
use bulkhead_harness::invariants::{self, ALL};
use bulkhead_harness::spec::{Cap, Entry, Error, Kind, Object, ObjectId, Outcome, SLOT_BYTES, State, label};

const ENDPOINT: u64 = 4;
const CNODE: u64 = 1;
const UNTYPED: u64 = 0;

/// Root CNode slot `index`'s address.
fn slot(index: u64) -> u64 {
    BOOT.root_cnode + index * SLOT_BYTES
}

fn call(state: &mut State, cptr: u64, label: u64, words: &[u64]) {
    let outcome = state.call(BOOT.root_tcb, cptr, label, words, &[0]);
    assert_eq!(outcome, Outcome::Returned(0), "{label} {words:?}");
}

/// Endpoints in root slots 3 and 4, a Mint of slot 3 with badge 5 and WRITE
/// in slot 5, a copy of that in slot 8, a CNode in slot 6, an untyped in
/// slot 7.
fn sound() -> State {
    let mut state = BOOT.state();
    call(&mut state, 1, label::UNTYPED_RETYPE, &[ENDPOINT, 0, 0, 0, 3, 2]);
    call(&mut state, 0, label::CNODE_MINT, &[5, 64, 3, 64, 0b10, 5]);
    call(&mut state, 0, label::CNODE_COPY, &[8, 64, 5, 64, 0xf]);
    call(&mut state, 1, label::UNTYPED_RETYPE, &[CNODE, 2, 0, 0, 6, 1]);
    call(&mut state, 1, label::UNTYPED_RETYPE, &[UNTYPED, 8, 0, 0, 7, 1]);
    state
}

fn entry(state: &mut State, index: u64) -> &mut Entry {
    state.slots.get_mut(&slot(index)).expect("an occupied slot")
}

/// A way to break a sound state, given its first endpoint.
type Corruption = fn(&mut State, ObjectId);

/// The invariants `state` breaks.
fn broken(state: &State) -> Vec<&'static str> {
    invariants::check_all(state, &BOOT).into_iter().map(|broken| broken.invariant).collect()
}

#[test]
fn the_sound_state_keeps_every_invariant() {
    let state = sound();
    assert_eq!(broken(&state), Vec::<&str>::new());
    assert_eq!(state.slots.len(), 10, "{:#?}", state.slots);
}

#[test]
fn every_invariant_catches_its_corruption() {
    let endpoint = sound().cap(slot(3)).expect("an endpoint").object();
    let corruptions: [(&str, Corruption); 13] = [
        ("caps_name_live_objects", |state, endpoint| {
            state.objects.remove(&endpoint);
        }),
        ("slots_inside_live_containers", |state, _| {
            let stray = Entry { cap: state.cap(slot(4)).expect("a cap"), parent: None, original: false };
            state.slots.insert(BOOT.untyped_base + 0x3000, stray);
        }),
        ("objects_aligned", |state, _| {
            let misaligned = ObjectId { base: BOOT.untyped_base + 0x2008, kind: Kind::Endpoint, size_bits: 6 };
            state.objects.insert(misaligned, Object { untyped: Some(slot(1)) });
        }),
        ("objects_distinct", |state, endpoint| {
            let clash = ObjectId { kind: Kind::Notification, ..endpoint };
            state.objects.insert(clash, Object { untyped: Some(slot(1)) });
        }),
        ("caps_to_one_object_agree", |state, endpoint| {
            entry(state, 4).cap = Cap::CNode { base: endpoint.base, radix: 1, guard: 0, guard_bits: 0 };
        }),
        ("untyped_caps_original", |state, _| {
            entry(state, 7).original = false;
        }),
        ("untyped_children_inside_and_below_watermark", |state, _| {
            let Cap::Untyped { base, size_bits, .. } = entry(state, 1).cap else { panic!("the untyped") };
            entry(state, 1).cap = Cap::Untyped { base, size_bits, watermark: 0x40 };
        }),
        ("objects_in_untyped_are_descendants", |state, _| {
            entry(state, 4).parent = None;
        }),
        ("derivation_tree_acyclic", |state, _| {
            entry(state, 3).parent = Some(slot(8));
        }),
        ("child_rights_within_parent", |state, endpoint| {
            entry(state, 8).cap = Cap::Endpoint { base: endpoint.base, badge: 5, rights: 0xf };
        }),
        ("badges_set_once", |state, endpoint| {
            entry(state, 8).cap = Cap::Endpoint { base: endpoint.base, badge: 6, rights: 0b10 };
        }),
        ("live_objects_have_caps", |state, _| {
            let orphan = ObjectId { base: BOOT.untyped_base + 0x3000, kind: Kind::Endpoint, size_bits: 6 };
            state.objects.insert(orphan, Object { untyped: None });
        }),
        ("no_cap_to_kernel_memory", |state, _| {
            let kernel = ObjectId { base: 0x2000, kind: Kind::Endpoint, size_bits: 6 };
            state.objects.insert(kernel, Object { untyped: None });
            entry(state, 4).cap = Cap::Endpoint { base: kernel.base, badge: 0, rights: 0xf };
            entry(state, 4).parent = None;
        }),
    ];
    assert_eq!(corruptions.len(), ALL.len(), "one corruption per invariant");
    for ((name, corrupt), (invariant, _)) in corruptions.iter().zip(ALL) {
        assert_eq!(*name, invariant, "corruptions in the order of `invariants::ALL`");
        let mut state = sound();
        corrupt(&mut state, endpoint);
        assert!(broken(&state).contains(name), "{name} did not catch its corruption (broken: {:?})", broken(&state));
    }
}

#[test]
fn a_refused_call_changes_nothing() {
    let mut state = sound();
    let before = state.clone();
    let outcome = state.call(BOOT.root_tcb, 0, label::CNODE_COPY, &[3, 64, 4, 64, 0xf], &[0]);
    assert_eq!(outcome, Outcome::Returned(Error::DeleteFirst.code()));
    assert_eq!(state, before);
}
