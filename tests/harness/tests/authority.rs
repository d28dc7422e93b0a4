//! Authority confinement (`docs/VERIFICATION.md`, "Authority
//! confinement"): the manifest's system built by system calls conforms to
//! its manifest, random system calls by its domains never take a domain's
//! authority outside the manifest's take-grant closure, and the checks
//! report the breaches they exist for.

use std::collections::BTreeSet;

use bulkhead_harness::authority::{self, Authority};
use bulkhead_harness::driver::{BOOT, hunt_manifest, manifest_harness};
use bulkhead_harness::manifest::Scenario;
use bulkhead_harness::spec::{Cap, Entry, Kind, ObjectId, State, ThreadState};

/// Operations the domains make in `cargo test`; `BULKHEAD_HARNESS_OPS`
/// sets another budget (the mutant tests use it).
const OPERATIONS: usize = 20_000;

/// The scenario, the state right after the build, the objects it made
/// (by the manifest's index) and the domains' threads by name.
type Built = (Scenario, State, Vec<Option<ObjectId>>, Vec<(String, u64)>);

fn built() -> Built {
    let scenario = Scenario::confined();
    let (harness, objects) = manifest_harness(&scenario).unwrap_or_else(|violation| panic!("{violation}"));
    let state = harness.spec().clone();
    let threads = scenario
        .spec
        .domains
        .iter()
        .map(|domain| (domain.name.clone(), objects[domain.tcb.0 as usize].expect("its TCB").base))
        .collect();
    (scenario, state, objects, threads)
}

fn thread(threads: &[(String, u64)], name: &str) -> u64 {
    threads.iter().find(|(domain, _)| domain == name).expect("a domain").1
}

#[test]
fn the_system_is_built_as_its_manifest_says() {
    let (scenario, state, objects, threads) = built();
    assert_eq!(threads.len(), 4);
    // The loader stopped; every domain runs or waits to, at its priority.
    assert_eq!(state.threads[&BOOT.root_tcb].state, ThreadState::Inactive);
    for domain in &scenario.spec.domains {
        let tcb = thread(&threads, &domain.name);
        let priority = match scenario.spec.objects[domain.tcb.0 as usize].kind {
            bulkhead_capdl_spec::ObjectKind::Tcb { priority, .. } => priority,
            _ => unreachable!(),
        };
        assert_eq!((state.threads[&tcb].state, state.threads[&tcb].priority), (ThreadState::Runnable, priority));
        assert!(state.threads[&tcb].sched_context.is_some(), "{} runs on its budget", domain.name);
    }
    // client_a may pass capabilities to the server; nobody else may pass
    // anything to anyone.
    let policy = scenario.policy(&objects);
    let domains: BTreeSet<u64> = policy.keys().copied().collect();
    let closure = authority::closure(&policy, &domains);
    // The stopped loader holds every object but can never act again.
    let graph = authority::graph(&state);
    assert_eq!(authority::actors(&state, &graph), domains);
    let (server, client_a, client_b) =
        (thread(&threads, "server"), thread(&threads, "client_a"), thread(&threads, "client_b"));
    let held = |tcb: u64| authority::holdings(&state, tcb);
    assert!(held(client_a).is_subset(&closure[&server]));
    assert!(!held(client_b).is_subset(&closure[&server]));
    assert_eq!(closure[&client_b], held(client_b));
}

#[test]
fn the_domains_stay_within_their_manifest() {
    let scenario = Scenario::confined();
    let budget = std::env::var("BULKHEAD_HARNESS_OPS").ok().and_then(|ops| ops.parse().ok()).unwrap_or(OPERATIONS);
    let found = hunt_manifest(&scenario, 0x5eed, budget, 100);
    let mut by_op: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
    for ((op, code), count) in &found.stats.results {
        let entry = by_op.entry(op).or_default();
        entry.0 += count;
        if *code == 0 {
            entry.1 += count;
        }
    }
    for (op, (ran, succeeded)) in &by_op {
        println!("{op}: {ran} ran, {succeeded} succeeded");
    }
    println!(
        "{} operations applied ({} through the IPC fast path), {} skipped",
        found.stats.applied, found.stats.fast_paths, found.stats.skipped
    );
    if let Some((number, ops, violation)) = found.violation {
        println!("caught after {} operations (sequence {number})", found.stats.applied);
        panic!("{violation}\nthe sequence: {ops:?}");
    }
    // The domains did talk: calls, receives and signals succeeded.
    for op in ["Call", "Recv", "Signal", "Send"] {
        assert!(by_op.get(op).is_some_and(|(_, succeeded)| *succeeded > 0), "no {op} succeeded");
    }
}

/// A capability to the log endpoint appearing in the server's CSpace:
/// nothing in the manifest lets it get there.
fn leak_log_to_server(state: &mut State, threads: &[(String, u64)]) {
    let client_b = thread(threads, "client_b");
    let log = authority::holdings(state, client_b)
        .into_iter()
        .find(|item| item.object.kind == Kind::Endpoint && item.badge == 2)
        .expect("client_b's log capability");
    let server = thread(threads, "server");
    let Some(Cap::CNode { base, .. }) = state.cap(server) else { panic!("the server's CSpace") };
    let free = (0..8).map(|index| base + index * 64).find(|slot| !state.slots.contains_key(slot)).expect("a free slot");
    let cap = Cap::Endpoint { base: log.object.base, badge: 2, rights: 2 };
    state.slots.insert(free, Entry { cap, parent: None, original: false });
}

#[test]
fn a_leak_breaks_both_checks() {
    let (scenario, state, objects, threads) = built();
    let policy = scenario.policy(&objects);
    let closed = authority::policy_closure(&policy);
    assert_eq!(authority::within_policy(&closed, &state), Ok(()));
    assert_eq!(authority::confined_step(&state, &state), Ok(()));
    let mut leaked = state.clone();
    leak_log_to_server(&mut leaked, &threads);
    assert!(authority::within_policy(&closed, &leaked).is_err());
    assert!(authority::confined_step(&state, &leaked).is_err());
}

#[test]
fn authority_covers_what_can_be_made_from_it() {
    let endpoint = ObjectId { base: 0x1000, kind: Kind::Endpoint, size_bits: 6 };
    let held = Authority { object: endpoint, rights: 0b011, badge: 0 };
    assert!(held.covers(&Authority { rights: 0b001, badge: 7, ..held }), "fewer rights, a new badge");
    assert!(!held.covers(&Authority { rights: 0b111, ..held }), "GRANT was not held");
    let badged = Authority { badge: 7, ..held };
    assert!(!badged.covers(&Authority { badge: 8, ..held }), "a badge is set once");
    let untyped = ObjectId { base: 0, kind: Kind::Untyped, size_bits: 16 };
    let region = Authority { object: untyped, rights: 0xf, badge: 0 };
    assert!(region.covers(&held), "an untyped region covers what is made from it");
    let set: BTreeSet<Authority> = [region].into();
    assert!(authority::allowed(&set, &badged));
}

/// A thread in the setup's VSpace (slot 12's, a frame as its IPC buffer)
/// while the root holds the VSpace, the frames and the thread's TCB.
fn in_vspace() -> bulkhead_harness::driver::Harness {
    use bulkhead_harness::driver::TcbCall::{SetIpcBuffer, SetSpace};
    use bulkhead_harness::driver::{FRAME_SLOTS, Harness, Op, VSPACE_SLOT, thread_setup, vspace_objects};
    let mut ops = vspace_objects();
    ops.extend(thread_setup(12, 100, None));
    ops.push(Op::Tcb { tcb: 12, call: SetSpace { cnode: 0, vspace: Some(VSPACE_SLOT) } });
    ops.push(Op::Tcb { tcb: 12, call: SetIpcBuffer { frame: FRAME_SLOTS.start } });
    let mut harness = Harness::new();
    for op in &ops {
        assert_eq!(harness.apply(op).map(|applied| applied.got), Some(0), "{op:?}");
    }
    harness
}

#[test]
fn mappings_are_authority() {
    use bulkhead_harness::driver::{FRAME_SLOTS, Op, VSPACE_SLOT, VSpaceCall, rights};
    let harness = in_vspace();
    let before = harness.spec().clone();
    let thread = before.cap(BOOT.root_cnode + 12 * bulkhead_harness::spec::SLOT_BYTES).expect("a TCB").object().base;
    let frame = |slot: u64| before.cap(BOOT.root_cnode + slot * bulkhead_harness::spec::SLOT_BYTES).expect("a frame");
    let held = authority::holdings(&before, thread);
    let mapped = Authority { object: frame(FRAME_SLOTS.start).object(), rights: 0b11, badge: 0 };
    assert!(held.contains(&mapped), "the thread holds the setup's mapped frame, read-write: {held:?}");
    // The root maps a second frame into the thread's VSpace: the thread
    // gains it, and may (the root holds the VSpace it runs in).
    let mut harness = harness;
    let map = Op::VSpace {
        cptr: FRAME_SLOTS.start + 1,
        call: VSpaceCall::MapFrame { vaddr: 0x2000, rights: rights::R, attributes: 0, vspace: VSPACE_SLOT },
    };
    assert_eq!(harness.apply(&map).map(|applied| applied.got), Some(0));
    let after = harness.spec().clone();
    let second = Authority { object: frame(FRAME_SLOTS.start + 1).object(), rights: 0b01, badge: 0 };
    assert!(authority::holdings(&after, thread).contains(&second));
    assert_eq!(authority::confined_step(&before, &after), Ok(()));
    // A frame nobody held (outside every untyped: the thread shares the
    // root's CSpace, untypeds and all) appearing in the VSpace is a breach.
    let mut leaked = after.clone();
    let stray = ObjectId { base: 0x3000_0000, kind: Kind::Frame, size_bits: 12 };
    let page_table =
        leaked.reachable_tables().into_iter().find(|(.., kind, _)| *kind == Kind::PageTable).expect("a PT");
    let page = bulkhead_harness::spec::Pte::Page {
        base: stray.base,
        size_bits: 12,
        write: false,
        execute: false,
        memory_type: 0,
    };
    leaked.tables.get_mut(&page_table.1).expect("the page table").entries.insert(3, page);
    assert!(authority::confined_step(&before, &leaked).is_err(), "a mapping from nowhere is caught");
}

#[test]
fn a_bound_vcpu_and_its_guest_memory_are_authority() {
    use bulkhead_harness::driver::{GUEST_OBJECT_SLOTS, GUEST_SPACE_SLOT, Op, VCPU_SLOT, VCpuCall};
    let slot = |index: u64| BOOT.root_cnode + index * bulkhead_harness::spec::SLOT_BYTES;
    let mut harness = in_vspace();
    let before = harness.spec().clone();
    let thread = before.cap(slot(12)).expect("a TCB").object().base;
    let vcpu = before.cap(slot(VCPU_SLOT)).expect("the VCpu");
    let guest_memory = Authority {
        object: before.cap(slot(GUEST_OBJECT_SLOTS.end - 1)).expect("the guest frame").object(),
        rights: 0b11,
        badge: 0,
    };
    // Bound to the VCpu, the thread holds it, its GuestSpace and the
    // guest's memory (its VMEnter would run the guest over it); the root
    // that bound it held all of that and the thread's TCB. (The thread
    // shares the root's CSpace, so it held them before too: the breach
    // below is what tells a bound VCpu from a held one.)
    let bind = Op::VCpu { vcpu: VCPU_SLOT, call: VCpuCall::SetTcb { tcb: 12 } };
    assert_eq!(harness.apply(&bind).map(|applied| applied.got), Some(0));
    let after = harness.spec().clone();
    let held = authority::holdings(&after, thread);
    assert!(held.contains(&Authority::of(&vcpu)), "{held:?}");
    let guest_space = after.cap(slot(GUEST_SPACE_SLOT)).expect("the GuestSpace");
    assert!(held.iter().any(|item| item.object == guest_space.object()), "{held:?}");
    assert!(held.contains(&guest_memory), "{held:?}");
    assert_eq!(authority::confined_step(&before, &after), Ok(()));
    // A VCpu bound from nowhere (the state edited, no invocation: outside
    // every untyped the root holds) is a breach.
    let mut stray = before.clone();
    let other = ObjectId { base: 0x3000_0000, kind: Kind::VCpu, size_bits: 13 };
    stray.vcpus.insert(other.base, bulkhead_harness::spec::VCpu::fresh());
    stray.vcpus.get_mut(&other.base).expect("the VCpu").tcb = Some(thread);
    stray.threads.get_mut(&thread).expect("the thread").vcpu = Some(other.base);
    assert!(authority::confined_step(&before, &stray).is_err(), "a VCpu from nowhere is caught");
}
