//! A system of protection domains from a capdl manifest
//! (`tests/harness/manifests/confined.capdl`), built in the harness's
//! kernel and spec by the root thread's own system calls, in the order the
//! loader (`components/loader`) builds a system: every object retyped,
//! each domain's CNode filled with the capabilities the manifest gives it
//! (minted with their rights and badges; reply objects moved), each
//! thread given its CSpace, priority and budget, every thread resumed, and
//! then the root thread suspends itself. From then on only the domains
//! make system calls, and [`Scenario::policy`] is the manifest's
//! authority graph that [`crate::authority::within_policy`] holds them to.
//!
//! Two deliberate differences from the loader: a domain's CNode has at
//! least [`MIN_RADIX`] bits of slots (the compiler sizes it to the
//! capabilities; the spare slots let a domain copy and receive
//! capabilities), and budgets are the manifest's nanoseconds divided by
//! 1,000 as ticks. Neither changes what any domain may reach.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_capdl_spec::{ObjectKind, SystemSpec};

use crate::authority::{Authority, Graph};
use crate::driver::{Addr, Op, Rights, TcbCall, Type, rights, types};
use crate::spec::{ALL_RIGHTS, ObjectId, SLOT_BYTES, State};

/// The manifest.
pub const MANIFEST: &str = include_str!("../manifests/confined.capdl");
/// Root CNode slot of the manifest's object `i` is `OBJECT_SLOTS + i`.
pub const OBJECT_SLOTS: u64 = 32;
/// Root CNode slot of domain `k`'s guarded CNode capability is
/// `GUARDED_CNODE_SLOTS + k`.
pub const GUARDED_CNODE_SLOTS: u64 = 96;
/// The smallest CNode the harness gives a domain (log2 slots).
pub const MIN_RADIX: u8 = 3;
/// Nanoseconds per tick of the harness's clock.
pub const NANOSECONDS_PER_TICK: u64 = 1_000;

/// The manifest compiled, and the system calls that build it.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The compiled manifest.
    pub spec: SystemSpec,
    /// The retypes that make every object.
    pub retypes: Vec<Op>,
    /// The rest of the build, ending with the root thread suspending
    /// itself.
    pub build: Vec<Op>,
}

/// The harness's radix for a CNode of `radix` in the manifest.
fn radix_of(radix: u8) -> u8 {
    radix.max(MIN_RADIX)
}

/// The root slot of object `index`.
fn object_slot(index: u32) -> u64 {
    OBJECT_SLOTS + u64::from(index)
}

impl Scenario {
    /// The harness's manifest.
    ///
    /// # Panics
    ///
    /// If the manifest does not compile, or uses an object the spec does
    /// not model (frames, devices): the file is part of the harness.
    #[must_use]
    pub fn confined() -> Scenario {
        let spec = match bulkhead_capdl::compile_manifest("confined.capdl", MANIFEST) {
            Ok(spec) => spec,
            Err(diagnostics) => panic!("tests/harness/manifests/confined.capdl: {diagnostics:?}"),
        };
        Scenario::of(spec)
    }

    /// The system calls that build `spec`.
    ///
    /// # Panics
    ///
    /// If `spec` uses objects the spec does not model or a fault handler.
    #[must_use]
    pub fn of(spec: SystemSpec) -> Scenario {
        let mut retypes: Vec<(u8, Op)> = Vec::new();
        for (index, object) in (0_u32..).zip(&spec.objects) {
            let (kind, size_bits, bytes_log2): (Type, u64, u8) = match object.kind {
                ObjectKind::Tcb { .. } => (types::TCB, 0, 11),
                ObjectKind::SchedContext { .. } => (types::SCHED_CONTEXT, 8, 8),
                ObjectKind::CNode { radix } => (types::CNODE, u64::from(radix_of(radix)), radix_of(radix) + 6),
                ObjectKind::Endpoint => (types::ENDPOINT, 0, 6),
                ObjectKind::Notification => (types::NOTIFICATION, 0, 6),
                ObjectKind::Reply => (types::REPLY, 0, 5),
                // Address spaces hold no capability authority here.
                ObjectKind::VSpace => continue,
                ref other => panic!("the harness models no {other:?}"),
            };
            let offset = object_slot(index);
            let retype = Op::Retype { untyped: 1, kind, size_bits, root: 0, node: 0, node_depth: 0, offset, count: 1 };
            retypes.push((bytes_log2, retype));
        }
        // Largest first: the untyped's alignment wastes nothing.
        retypes.sort_by_key(|(bytes_log2, _)| std::cmp::Reverse(*bytes_log2));
        let mut build = Vec::new();
        let mut threads = Vec::new();
        for (number, domain) in (0_u64..).zip(&spec.domains) {
            assert!(domain.fault_handler.is_none(), "the harness's manifest has no fault handlers");
            let ObjectKind::CNode { radix } = spec.objects[domain.cnode.0 as usize].kind else {
                panic!("{}: its CNode is not a CNode", domain.name)
            };
            let radix = radix_of(radix);
            let cnode = object_slot(domain.cnode.0);
            let guarded = GUARDED_CNODE_SLOTS + number;
            // The CSpace root resolves a whole 64-bit address in one level.
            build.push(Op::Mint {
                dest: Addr::R(guarded),
                src: Addr::R(cnode),
                rights: rights::RWGP,
                badge: 64 - u64::from(radix),
            });
            for cap in &domain.caps {
                let dest = Addr::In(cnode, cap.slot, u64::from(radix));
                let source = object_slot(cap.object.0);
                build.push(match spec.objects[cap.object.0 as usize].kind {
                    ObjectKind::CNode { .. } if cap.object == domain.cnode => {
                        Op::Copy { dest, src: Addr::R(guarded), rights: rights::RWGP }
                    }
                    ObjectKind::Reply => Op::Move { dest, src: Addr::R(source) },
                    _ => Op::Mint { dest, src: Addr::R(source), rights: Rights(cap.rights), badge: cap.badge },
                });
            }
            let ObjectKind::Tcb { priority, .. } = spec.objects[domain.tcb.0 as usize].kind else {
                panic!("{}: its TCB is not a TCB", domain.name)
            };
            let ObjectKind::SchedContext { budget_ns, period_ns } = spec.objects[domain.sched_context.0 as usize].kind
            else {
                panic!("{}: its scheduling context is not one", domain.name)
            };
            let tcb = object_slot(domain.tcb.0);
            let sched_context = object_slot(domain.sched_context.0);
            build.extend([
                Op::Tcb { tcb, call: TcbCall::SetSpace { cnode: guarded, vspace: None } },
                Op::Tcb { tcb, call: TcbCall::SetPriority { priority: u64::from(priority), authority: 2 } },
                Op::Configure {
                    sched_context,
                    budget: budget_ns / NANOSECONDS_PER_TICK,
                    period: period_ns / NANOSECONDS_PER_TICK,
                },
                Op::Tcb { tcb, call: TcbCall::BindSchedContext { sched_context } },
            ]);
            threads.push(tcb);
        }
        // Every thread starts once every domain is complete; then the root
        // (the loader) stops for good.
        build.extend(threads.into_iter().map(|tcb| Op::Tcb { tcb, call: TcbCall::Resume }));
        build.push(Op::Tcb { tcb: 2, call: TcbCall::Suspend });
        Scenario { spec, retypes: retypes.into_iter().map(|(_, op)| op).collect(), build }
    }

    /// The objects the retypes made, by the manifest's object index, read
    /// from `state` right after [`Scenario::retypes`].
    #[must_use]
    pub fn objects(&self, state: &State, root_cnode: u64) -> Vec<Option<ObjectId>> {
        (0_u32..)
            .zip(&self.spec.objects)
            .map(|(index, _)| state.cap(root_cnode + object_slot(index) * SLOT_BYTES).map(|cap| cap.object()))
            .collect()
    }

    /// The manifest's authority graph: each domain's thread (TCB address)
    /// and the authority its capabilities grant, with `objects` from
    /// [`Scenario::objects`].
    ///
    /// # Panics
    ///
    /// If an object the manifest names was not made.
    #[must_use]
    pub fn policy(&self, objects: &[Option<ObjectId>]) -> Graph {
        let object = |index: u32| objects[index as usize].expect("every object the manifest names was made");
        let mut graph = BTreeMap::new();
        for domain in &self.spec.domains {
            let held: BTreeSet<Authority> = domain
                .caps
                .iter()
                .map(|cap| {
                    let object = object(cap.object.0);
                    let has_rights =
                        matches!(object.kind, crate::spec::Kind::Endpoint | crate::spec::Kind::Notification);
                    let rights = if has_rights { u8::try_from(cap.rights & 0xf).unwrap_or(0) } else { ALL_RIGHTS };
                    Authority { object, rights, badge: cap.badge }
                })
                .collect();
            graph.insert(object(domain.tcb.0).base, held);
        }
        graph
    }
}
