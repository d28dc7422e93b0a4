//! The driver: operations, a strategy that generates them, and [`run`],
//! which applies each one to the real kernel core (through
//! `syscall::handle`, as the root thread) and to the spec, then checks
//! refinement and every invariant.
//!
//! An operation's `Debug` output is Rust: with `use
//! bulkhead_harness::driver::{Addr::*, Op::*, rights::*, types::*}` a
//! printed (shrunk) sequence compiles as it is, so a failure becomes a
//! regression test by one copy (`tests/harness.rs` has some).

use std::collections::BTreeMap;
use std::fmt;

use kernel_core::cap::Cap as KernelCap;
use kernel_core::ipc::{MessageInfo, ThreadId};
use kernel_core::memory::PhysAddr;
use kernel_core::platform::RecordingPlatform;
use kernel_core::store::{MapStore, ObjectStore};
use kernel_core::syscall::{self, Kernel, SyscallArgs};
use kernel_core::test_fixture;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

use crate::invariants;
use crate::project;
use crate::spec::{Boot, Outcome, State, label};

/// A slot address as CNode invocations take it: `R(i)` is slot `i` of the
/// root CNode (a 64-bit address from the root thread's CSpace root);
/// `In(node, index, depth)` is `index`, `depth` bits, relative to the CNode
/// capability at root cptr `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// Root CNode slot.
    R(u64),
    /// `(node cptr, index, depth)`.
    In(u64, u64, u64),
}

impl Addr {
    /// The cptr of the CNode the address is relative to.
    #[must_use]
    pub const fn node(self) -> u64 {
        match self {
            Addr::R(_) => 0,
            Addr::In(node, ..) => node,
        }
    }

    /// The index and depth words.
    #[must_use]
    pub const fn index_depth(self) -> [u64; 2] {
        match self {
            Addr::R(index) => [index, 64],
            Addr::In(_, index, depth) => [index, depth],
        }
    }
}

/// A rights word (bit 0 READ, 1 WRITE, 2 GRANT, 3 GRANT_REPLY; higher bits
/// are ignored by the kernel), printed by name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rights(pub u64);

/// The rights words by name: R read, W write, G grant, P grant-reply.
pub mod rights {
    use super::Rights;
    /// No right.
    pub const NONE: Rights = Rights(0);
    /// READ.
    pub const R: Rights = Rights(1);
    /// WRITE.
    pub const W: Rights = Rights(2);
    /// READ | WRITE.
    pub const RW: Rights = Rights(3);
    /// GRANT.
    pub const G: Rights = Rights(4);
    /// READ | GRANT.
    pub const RG: Rights = Rights(5);
    /// WRITE | GRANT.
    pub const WG: Rights = Rights(6);
    /// READ | WRITE | GRANT.
    pub const RWG: Rights = Rights(7);
    /// GRANT_REPLY.
    pub const P: Rights = Rights(8);
    /// READ | GRANT_REPLY.
    pub const RP: Rights = Rights(9);
    /// WRITE | GRANT_REPLY.
    pub const WP: Rights = Rights(10);
    /// READ | WRITE | GRANT_REPLY.
    pub const RWP: Rights = Rights(11);
    /// GRANT | GRANT_REPLY.
    pub const GP: Rights = Rights(12);
    /// READ | GRANT | GRANT_REPLY.
    pub const RGP: Rights = Rights(13);
    /// WRITE | GRANT | GRANT_REPLY.
    pub const WGP: Rights = Rights(14);
    /// Every right.
    pub const RWGP: Rights = Rights(15);
    /// Every named word, in value order.
    pub const NAMED: [(&str, Rights); 16] = [
        ("NONE", NONE),
        ("R", R),
        ("W", W),
        ("RW", RW),
        ("G", G),
        ("RG", RG),
        ("WG", WG),
        ("RWG", RWG),
        ("P", P),
        ("RP", RP),
        ("WP", WP),
        ("RWP", RWP),
        ("GP", GP),
        ("RGP", RGP),
        ("WGP", WGP),
        ("RWGP", RWGP),
    ];
}

impl fmt::Debug for Rights {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rights::NAMED.iter().find(|(_, named)| named == self) {
            Some((name, _)) => formatter.write_str(name),
            None => write!(formatter, "Rights({:#x})", self.0),
        }
    }
}

/// An `Untyped::Retype` type word, printed by name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Type(pub u64);

/// The type words by name (`docs/abi.md`, "Object types").
pub mod types {
    use super::Type;
    /// Untyped memory.
    pub const UNTYPED: Type = Type(0);
    /// A CNode.
    pub const CNODE: Type = Type(1);
    /// A TCB.
    pub const TCB: Type = Type(2);
    /// An endpoint.
    pub const ENDPOINT: Type = Type(4);
    /// A notification.
    pub const NOTIFICATION: Type = Type(5);
    /// A reply object.
    pub const REPLY: Type = Type(6);
    /// Every named word.
    pub const NAMED: [(&str, Type); 6] = [
        ("UNTYPED", UNTYPED),
        ("CNODE", CNODE),
        ("TCB", TCB),
        ("ENDPOINT", ENDPOINT),
        ("NOTIFICATION", NOTIFICATION),
        ("REPLY", REPLY),
    ];
}

impl fmt::Debug for Type {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match types::NAMED.iter().find(|(_, named)| named == self) {
            Some((name, _)) => formatter.write_str(name),
            None => write!(formatter, "Type({:#x})", self.0),
        }
    }
}

/// One system call of the root thread: a Call invoking a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Untyped::Retype on the untyped at root cptr `untyped`: `count`
    /// objects into slots `offset..` of the CNode at (`node`, `node_depth`)
    /// relative to root cptr `root` (depth 0: that CNode itself).
    Retype {
        /// The untyped's cptr.
        untyped: u64,
        /// What to make.
        kind: Type,
        /// A size argument (untyped bits, CNode radix).
        size_bits: u64,
        /// The `node_root` extra capability's cptr.
        root: u64,
        /// `node_index`.
        node: u64,
        /// `node_depth`.
        node_depth: u64,
        /// `node_offset`.
        offset: u64,
        /// How many.
        count: u64,
    },
    /// CNode::Copy.
    Copy {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
        /// Rights mask.
        rights: Rights,
    },
    /// CNode::Mint.
    Mint {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
        /// Rights mask.
        rights: Rights,
        /// The data word: a badge, or a CNode's guard.
        badge: u64,
    },
    /// CNode::Move.
    Move {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
    },
    /// CNode::Mutate.
    Mutate {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
        /// The data word (a CNode's guard).
        data: u64,
    },
    /// CNode::Delete.
    Delete {
        /// The slot.
        slot: Addr,
    },
    /// CNode::Revoke.
    Revoke {
        /// The slot.
        slot: Addr,
    },
    /// Any label on the capability at `cptr`, with the first `words` of
    /// [`RAW_WORDS`] and `extra` root-CNode extra capabilities: truncated
    /// messages and labels the capability does not understand.
    Raw {
        /// The invoked capability.
        cptr: u64,
        /// The label.
        label: u64,
        /// How many argument words.
        words: u8,
        /// How many extra capabilities (each the root CNode, cptr 0).
        extra: u8,
    },
}

/// The argument words a [`Op::Raw`] takes its first ones from: a copy of
/// root slot 3 into slot 5 with every right, data 7.
pub const RAW_WORDS: [u64; 6] = [5, 64, 3, 64, 0xf, 7];

/// A system call's message, as the registers and the IPC buffer carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The invoked capability.
    pub cptr: u64,
    /// The label.
    pub label: u64,
    /// The argument words.
    pub words: Vec<u64>,
    /// The extra capabilities' cptrs.
    pub extra: Vec<u64>,
}

impl Op {
    /// The operation's name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Op::Retype { .. } => "Retype",
            Op::Copy { .. } => "Copy",
            Op::Mint { .. } => "Mint",
            Op::Move { .. } => "Move",
            Op::Mutate { .. } => "Mutate",
            Op::Delete { .. } => "Delete",
            Op::Revoke { .. } => "Revoke",
            Op::Raw { .. } => "Raw",
        }
    }

    /// The system call the operation makes.
    #[must_use]
    pub fn call(&self) -> Call {
        let transfer = |label: u64, dest: Addr, src: Addr, more: &[u64]| {
            let mut words = [dest.index_depth(), src.index_depth()].concat();
            words.extend_from_slice(more);
            Call { cptr: dest.node(), label, words, extra: vec![src.node()] }
        };
        match *self {
            Op::Retype { untyped, kind, size_bits, root, node, node_depth, offset, count } => Call {
                cptr: untyped,
                label: label::UNTYPED_RETYPE,
                words: vec![kind.0, size_bits, node, node_depth, offset, count],
                extra: vec![root],
            },
            Op::Copy { dest, src, rights } => transfer(label::CNODE_COPY, dest, src, &[rights.0]),
            Op::Mint { dest, src, rights, badge } => transfer(label::CNODE_MINT, dest, src, &[rights.0, badge]),
            Op::Move { dest, src } => transfer(label::CNODE_MOVE, dest, src, &[]),
            Op::Mutate { dest, src, data } => transfer(label::CNODE_MUTATE, dest, src, &[data]),
            Op::Delete { slot } | Op::Revoke { slot } => Call {
                cptr: slot.node(),
                label: if matches!(self, Op::Delete { .. }) { label::CNODE_DELETE } else { label::CNODE_REVOKE },
                words: slot.index_depth().to_vec(),
                extra: Vec::new(),
            },
            Op::Raw { cptr, label, words, extra } => Call {
                cptr,
                label,
                words: RAW_WORDS[..usize::from(words).min(RAW_WORDS.len())].to_vec(),
                extra: vec![0; usize::from(extra).min(3)],
            },
        }
    }
}

/// The layout the harness boots: a 256-slot root CNode behind a 56-bit
/// guard, a 16 KiB untyped in slot 1 and the root TCB's capability in slot 2.
pub const BOOT: Boot = Boot {
    root_cnode: test_fixture::ROOT_CNODE,
    root_radix: 8,
    root_tcb: test_fixture::ROOT_TCB,
    untyped_base: test_fixture::UNTYPED_BASE,
    untyped_bits: 14,
};

/// Root slot of the root TCB's capability.
pub const ROOT_TCB_SLOT: u64 = 2;

/// A root-CNode cptr: mostly the first slots (where objects are made), at
/// times one of the boot capabilities (weight `boot_weight`), or anything.
fn root_cptr(boot_weight: u32) -> impl Strategy<Value = u64> {
    prop_oneof![
        40 => 3_u64..12,
        boot_weight => 0_u64..3,
        2 => 16_u64..256,
        1 => any::<u64>(),
    ]
}

/// A slot address: mostly a root slot, else a slot of a CNode whose
/// capability may be in a root slot, now and then a malformed one.
fn addr(boot_weight: u32) -> impl Strategy<Value = Addr> {
    prop_oneof![
        12 => root_cptr(boot_weight).prop_map(Addr::R),
        5 => (3_u64..12, 0_u64..8, 1_u64..=3).prop_map(|(node, index, depth)| Addr::In(node, index, depth)),
        1 => (0_u64..12, any::<u64>(), prop_oneof![Just(0_u64), Just(65), Just(64), any::<u64>()])
            .prop_map(|(node, index, depth)| Addr::In(node, index, depth)),
    ]
}

/// A destination: as [`addr`], or one of the root slots above those
/// objects are made in (more often empty).
fn dest() -> impl Strategy<Value = Addr> {
    prop_oneof![3 => addr(2), 1 => (12_u64..16).prop_map(Addr::R)]
}

fn rights_word() -> impl Strategy<Value = Rights> {
    prop_oneof![9 => (0_u64..16).prop_map(Rights), 1 => any::<u64>().prop_map(Rights)]
}

fn badge_word() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0_u64), 6 => 1_u64..4, 1 => any::<u64>()]
}

/// A Mutate data word: mostly a small guard (width 0..8), else anything.
fn guard_word() -> impl Strategy<Value = u64> {
    prop_oneof![4 => (0_u64..8, 0_u64..4).prop_map(|(bits, value)| (value << 6) | bits), 1 => any::<u64>()]
}

fn retype() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        4 => Just(types::ENDPOINT),
        3 => Just(types::NOTIFICATION),
        2 => Just(types::CNODE),
        2 => Just(types::UNTYPED),
        1 => Just(types::TCB),
        1 => Just(types::REPLY),
        1 => prop_oneof![Just(14_u64), Just(99), any::<u64>().prop_filter("a type outside the spec", |word| *word > 13)]
            .prop_map(Type),
    ];
    let size_bits = prop_oneof![3 => 0_u64..=5, 3 => 4_u64..=15, 1 => any::<u64>()];
    let node = prop_oneof![
        6 => Just((0_u64, 0_u64)),
        3 => (3_u64..12).prop_map(|slot| (slot, 64)),
        1 => (any::<u64>(), 0_u64..=70),
    ];
    let offset = prop_oneof![6 => 3_u64..12, 2 => 0_u64..8, 1 => any::<u64>()];
    let count = prop_oneof![8 => 1_u64..=3, 1 => Just(0_u64), 1 => 4_u64..300, 1 => any::<u64>()];
    let untyped = prop_oneof![6 => Just(1_u64), 4 => root_cptr(1)];
    let root = prop_oneof![9 => Just(0_u64), 1 => root_cptr(1)];
    (untyped, kind, size_bits, root, node, offset, count).prop_map(
        |(untyped, kind, size_bits, root, (node, node_depth), offset, count)| Op::Retype {
            untyped,
            kind,
            size_bits,
            root,
            node,
            node_depth,
            offset,
            count,
        },
    )
}

/// Labels for [`Op::Raw`]: the CNode and Untyped ones and others no
/// capability of the scenario understands (never a TCB label: TCB
/// invocations are outside the spec yet).
fn raw_label() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0_u64..=20, 1 => 1000_u64..=u64::from(u32::MAX)]
}

/// One operation: mostly well-formed invocations on the slots where
/// objects are made, with malformed ones mixed in.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => retype(),
        4 => (dest(), addr(4), rights_word()).prop_map(|(dest, src, rights)| Op::Copy { dest, src, rights }),
        4 => (dest(), addr(4), rights_word(), badge_word())
            .prop_map(|(dest, src, rights, badge)| Op::Mint { dest, src, rights, badge }),
        2 => (dest(), addr(1)).prop_map(|(dest, src)| Op::Move { dest, src }),
        2 => (dest(), addr(1), guard_word()).prop_map(|(dest, src, data)| Op::Mutate { dest, src, data }),
        3 => addr(1).prop_map(|slot| Op::Delete { slot }),
        2 => addr(1).prop_map(|slot| Op::Revoke { slot }),
        1 => (prop_oneof![Just(0_u64), Just(1), root_cptr(2)], raw_label(), 0_u8..=6, 0_u8..=1)
            .prop_map(|(cptr, label, words, extra)| Op::Raw { cptr, label, words, extra }),
    ]
}

/// A well-formed retype from the boot untyped into the root CNode: what
/// starts every sequence, so that the operations after it find objects.
fn setup_retype() -> impl Strategy<Value = Op> {
    let kind_and_size = prop_oneof![
        3 => Just((types::ENDPOINT, 0_u64)),
        2 => Just((types::NOTIFICATION, 0)),
        2 => (1_u64..=3).prop_map(|radix| (types::CNODE, radix)),
        1 => (6_u64..=10).prop_map(|bits| (types::UNTYPED, bits)),
    ];
    (kind_and_size, 3_u64..12, 1_u64..=2).prop_map(|((kind, size_bits), offset, count)| Op::Retype {
        untyped: 1,
        kind,
        size_bits,
        root: 0,
        node: 0,
        node_depth: 0,
        offset,
        count,
    })
}

/// A sequence: a few retypes that make objects, then up to `length`
/// operations (any number, so that shrinking can drop every operation a
/// failure does not need).
pub fn sequence(length: usize) -> impl Strategy<Value = Vec<Op>> {
    sequence_within(1..=5, 1..=length)
}

/// A sequence of a few retypes, then exactly `length` operations.
pub fn sequence_of_length(length: usize) -> impl Strategy<Value = Vec<Op>> {
    sequence_within(2..=5, length..=length)
}

fn sequence_within(
    setup: std::ops::RangeInclusive<usize>,
    length: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<Op>> {
    (proptest::collection::vec(setup_retype(), setup), proptest::collection::vec(op(), length)).prop_map(
        |(mut setup, ops)| {
            setup.extend(ops);
            setup
        },
    )
}

/// One check that failed after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which check: `result`, `refinement`, `projection`,
    /// `derivation_list_well_formed`, or an invariant's name prefixed by
    /// `kernel:` (on the projected kernel state) or `spec:`.
    pub check: String,
    /// What differed.
    pub detail: String,
}

/// A failed step: where, what ran, and every check that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The step's index in the sequence (`None`: right after boot).
    pub step: Option<usize>,
    /// The operation of that step.
    pub op: Option<Op>,
    /// The failed checks.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.step, self.op) {
            (Some(step), Some(op)) => writeln!(formatter, "Violation at step {step}: {op:?}")?,
            _ => writeln!(formatter, "Violation right after boot")?,
        }
        for failure in &self.failures {
            writeln!(formatter, "  [{}] {}", failure.check, failure.detail)?;
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations run on both the kernel and the spec.
    pub applied: usize,
    /// Operations skipped: a Call that would block the only thread, or
    /// any operation once the root thread stopped.
    pub skipped: usize,
    /// How often each operation came back with each result code.
    pub results: BTreeMap<(&'static str, u64), usize>,
}

impl Stats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Stats) {
        self.applied += other.applied;
        self.skipped += other.skipped;
        for (code, count) in &other.results {
            *self.results.entry(*code).or_default() += count;
        }
    }
}

/// The kernel and the spec side by side.
pub struct Harness {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
    spec: State,
    boot: Boot,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// Both booted into [`BOOT`].
    #[must_use]
    pub fn new() -> Harness {
        let root_tcb = KernelCap::Tcb { object: PhysAddr::new(BOOT.root_tcb) };
        let kernel = test_fixture::root_kernel(BOOT.untyped_bits, 255, &[(ROOT_TCB_SLOT, root_tcb)]);
        Harness { kernel, platform: RecordingPlatform::new(), spec: BOOT.state(), boot: BOOT }
    }

    /// The spec's state.
    #[must_use]
    pub const fn spec(&self) -> &State {
        &self.spec
    }

    fn root(&self) -> ThreadId {
        ThreadId::new(PhysAddr::new(self.boot.root_tcb))
    }

    /// The kernel's result for `call` made by the root thread (restarted
    /// while it reports being preempted).
    fn kernel_call(&mut self, call: &Call) -> u64 {
        let root = self.root();
        let tcb = self.kernel.store.tcb_mut(root);
        tcb.words[..call.words.len()].copy_from_slice(&call.words);
        tcb.extra_cptrs[..call.extra.len()].copy_from_slice(&call.extra);
        let info = MessageInfo {
            label: call.label,
            length: u8::try_from(call.words.len()).unwrap_or(u8::MAX),
            caps: u8::try_from(call.extra.len()).unwrap_or(u8::MAX),
        };
        let args = SyscallArgs { number: syscall::number::CALL, cptr: call.cptr, info, reply_cptr: 0 };
        while syscall::handle(&mut self.kernel, &mut self.platform, root, args).is_err() {}
        self.kernel.scheduler.schedule(&mut self.kernel.store);
        self.kernel.store.tcb(root).info.label
    }

    /// Runs `op` on both; `None` when it was skipped, else the spec's and
    /// the kernel's results.
    pub fn apply(&mut self, op: &Op) -> Option<(u64, u64)> {
        let root = self.boot.root_tcb;
        if !self.spec.threads[&root].active {
            return None;
        }
        let call = op.call();
        // A call that would block leaves the spec as it was.
        match self.spec.call(root, call.cptr, call.label, &call.words, &call.extra) {
            Outcome::WouldBlock => None,
            Outcome::Returned(expected) => Some((expected, self.kernel_call(&call))),
        }
    }

    /// Every check on the current states.
    #[must_use]
    pub fn check(&self) -> Vec<Failure> {
        let mut failures = Vec::new();
        let failure = |check: &str, detail: String| Failure { check: check.to_owned(), detail };
        if let Err(detail) = project::derivation_list_well_formed(&self.kernel.store) {
            failures.push(failure("derivation_list_well_formed", detail));
        }
        match project::project(&self.kernel, &self.spec.threads) {
            Err(detail) => failures.push(failure("projection", detail)),
            Ok(kernel) => {
                for broken in invariants::check_all(&kernel, &self.boot) {
                    failures.push(failure(&format!("kernel: {}", broken.invariant), broken.detail));
                }
                if let Some(detail) = difference(&kernel, &self.spec) {
                    failures.push(failure("refinement", detail));
                }
            }
        }
        for broken in invariants::check_all(&self.spec, &self.boot) {
            failures.push(failure(&format!("spec: {}", broken.invariant), broken.detail));
        }
        failures
    }
}

/// How the kernel's projected state differs from the spec's (the first few
/// differences), or `None` when they are equal.
#[must_use]
pub fn difference(kernel: &State, spec: &State) -> Option<String> {
    if kernel == spec {
        return None;
    }
    let mut found = Vec::new();
    let slots: std::collections::BTreeSet<u64> = kernel.slots.keys().chain(spec.slots.keys()).copied().collect();
    for slot in slots {
        let (in_kernel, in_spec) = (kernel.slots.get(&slot), spec.slots.get(&slot));
        if in_kernel != in_spec {
            found.push(format!("slot {slot:#x}: kernel {in_kernel:?}, spec {in_spec:?}"));
        }
    }
    let objects: std::collections::BTreeSet<_> = kernel.objects.keys().chain(spec.objects.keys()).copied().collect();
    for object in objects {
        let (in_kernel, in_spec) = (kernel.objects.get(&object), spec.objects.get(&object));
        if in_kernel != in_spec {
            found.push(format!("object {object:?}: kernel {in_kernel:?}, spec {in_spec:?}"));
        }
    }
    if kernel.threads != spec.threads {
        found.push(format!("threads: kernel {:?}, spec {:?}", kernel.threads, spec.threads));
    }
    let shown = found.len().min(4);
    let more = if found.len() > shown { format!(" (and {} more)", found.len() - shown) } else { String::new() };
    Some(format!("{}{more}", found[..shown].join("; ")))
}

/// Runs `ops` on a freshly booted kernel and spec, checking everything
/// after boot and after every step.
///
/// # Errors
///
/// The first step after which a check failed.
pub fn run(ops: &[Op]) -> Result<Stats, Violation> {
    run_recording(ops, &mut Vec::new())
}

/// Like [`run`], and returns each step's result code (`None`: skipped),
/// for tests that say what every step must return.
///
/// # Errors
///
/// The first step after which a check failed.
pub fn results(ops: &[Op]) -> Result<Vec<Option<u64>>, Violation> {
    let mut codes = Vec::new();
    run_recording(ops, &mut codes)?;
    Ok(codes)
}

fn run_recording(ops: &[Op], codes: &mut Vec<Option<u64>>) -> Result<Stats, Violation> {
    let mut harness = Harness::new();
    let mut stats = Stats::default();
    let failures = harness.check();
    if !failures.is_empty() {
        return Err(Violation { step: None, op: None, failures });
    }
    for (step, op) in ops.iter().enumerate() {
        let Some((expected, got)) = harness.apply(op) else {
            stats.skipped += 1;
            codes.push(None);
            continue;
        };
        codes.push(Some(got));
        stats.applied += 1;
        *stats.results.entry((op.name(), got)).or_default() += 1;
        let mut failures = Vec::new();
        if expected != got {
            failures.push(Failure { check: "result".to_owned(), detail: format!("kernel {got}, spec {expected}") });
        }
        failures.extend(harness.check());
        if !failures.is_empty() {
            return Err(Violation { step: Some(step), op: Some(*op), failures });
        }
    }
    Ok(stats)
}

/// What [`hunt`] found.
#[derive(Clone, Debug)]
pub struct Hunt {
    /// What the sequences that ran did (the failing one's steps up to the
    /// violation included).
    pub stats: Stats,
    /// The first violation: the sequence's number, the sequence, and the
    /// violation.
    pub violation: Option<(usize, Vec<Op>, Violation)>,
}

/// The random sequences [`hunt`] and the long run (`src/bin/long-run.rs`)
/// draw: [`sequence_of_length`]`(length)` from a generator seeded with
/// `seed` (the same seed, the same sequences).
pub struct Sequences {
    runner: TestRunner,
    strategy: BoxedStrategy<Vec<Op>>,
}

impl Sequences {
    /// The stream for `seed`, of sequences of `length` operations after
    /// their setup retypes.
    #[must_use]
    pub fn new(seed: u64, length: usize) -> Sequences {
        let mut seed_bytes = [0_u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let runner = TestRunner::new_with_rng(proptest::test_runner::Config::default(), rng);
        Sequences { runner, strategy: sequence_of_length(length).boxed() }
    }

    /// The next sequence.
    ///
    /// # Panics
    ///
    /// Never: the strategy has no filter that could reject every value.
    pub fn next_sequence(&mut self) -> Vec<Op> {
        self.strategy.new_tree(&mut self.runner).expect("a sequence").current()
    }
}

/// Runs `ops` and, on a violation, counts the steps up to and including
/// the violating one into `stats`.
///
/// # Errors
///
/// The violation.
pub fn run_counting(ops: &[Op], stats: &mut Stats) -> Result<(), Violation> {
    match run(ops) {
        Ok(run_stats) => {
            stats.add(&run_stats);
            Ok(())
        }
        Err(violation) => {
            let step = violation.step.unwrap_or(0);
            let prefix = run(&ops[..step]).unwrap_or_default();
            stats.add(&prefix);
            stats.applied += 1;
            Err(violation)
        }
    }
}

/// Runs `sequences` random sequences of [`Sequences`]`::new(seed, length)`
/// and stops at the first violation without shrinking: how many
/// operations it took to find one is the measure of a check's power.
#[must_use]
pub fn hunt(seed: u64, sequences: usize, length: usize) -> Hunt {
    let mut stream = Sequences::new(seed, length);
    let mut stats = Stats::default();
    for number in 0..sequences {
        let ops = stream.next_sequence();
        if let Err(violation) = run_counting(&ops, &mut stats) {
            return Hunt { stats, violation: Some((number, ops, violation)) };
        }
    }
    Hunt { stats, violation: None }
}
