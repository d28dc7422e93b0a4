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
