//! Post-boot conformance on the host: reads the capability snapshot a
//! kernel booted with `dump-capabilities` printed after the loader exited
//! ([`parse`]) and compares it with the system manifest's compiled spec
//! ([`check`]): the same objects, the same capabilities with the same
//! rights and badges, the same mappings, and nothing extra
//! (`docs/capdl.md`, "Post-boot conformance").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bulkhead_capdl::SystemSpec;
use bulkhead_capdl::compile::{Cache, ObjectId, ObjectKind};

/// What marks a snapshot line in a console log.
pub const PREFIX: &str = "conformance: ";

/// The first address above the PDs' private layout: everything mapped at
/// or above it must be a region of the manifest.
pub const PRIVATE_TOP: u64 = bulkhead_capdl_spec::layout::RESERVED_END;

/// The name of the loader's own thread, which is not part of the system:
/// it leaves itself unnamed.
pub const LOADER_NAMES: [&str; 1] = ["?"];

/// A PD's private layout: the loader's (`bulkhead_capdl_spec::layout`).
mod layout {
    pub(super) use bulkhead_capdl_spec::layout::{DEFAULT_STACK_BYTES, INFO_PAGE, IPC_BUFFER, STACK_TOP};
    /// The program image's segments.
    pub(super) const IMAGE: (u64, u64) =
        (bulkhead_capdl_spec::layout::IMAGE_BASE, bulkhead_capdl_spec::layout::IMAGE_END);
    /// The heap's start.
    pub(super) const HEAP: u64 = bulkhead_capdl_spec::layout::HEAP_BASE;
    /// A small page.
    pub(super) const PAGE: u64 = 0x1000;
}

/// The whole snapshot: every thread with its capabilities and mappings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The TSC's rate the kernel gave the loader (the `machine` line), by
    /// which it turned the manifest's times into budget ticks.
    pub tsc_khz: Option<u64>,
    /// The threads, in the order the kernel printed them.
    pub threads: Vec<Thread>,
}

/// One `thread` line and the `cap` and `map` lines after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// Its debugging name (`?`: none).
    pub name: String,
    /// Its TCB's physical address.
    pub tcb: u64,
    /// Its priority.
    pub priority: u8,
    /// What it was doing (`runnable`, `inactive`, `blocked_on_receive`, ...).
    pub state: String,
    /// Its CSpace root CNode, if it has one.
    pub cnode: Option<u64>,
    /// The CNode's radix.
    pub radix: u8,
    /// The CSpace root capability's guard width.
    pub guard_bits: u8,
    /// Its guard value.
    pub guard: u64,
    /// Its VSpace's PML4, if it has one.
    pub vspace: Option<u64>,
    /// Its IPC buffer's frame, if it has one.
    pub ipc_buffer: Option<u64>,
    /// Its fault handler's endpoint, badge and rights, if it has one.
    pub fault_handler: Option<(u64, u64, u64)>,
    /// Its scheduling context's budget and period in TSC ticks, if any.
    pub sched: Option<(u64, u64)>,
    /// Whether it is a passive server (`passive=1`).
    pub passive: bool,
    /// The non-empty slots of its CSpace root.
    pub caps: Vec<CapEntry>,
    /// The pages of its VSpace's user half.
    pub maps: Vec<MapEntry>,
}

/// One `cap` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapEntry {
    /// The slot.
    pub slot: u64,
    /// The type (`endpoint`, `cnode`, `irq_handler`, ...).
    pub kind: String,
    /// The object as printed: an address, a port range, an IRQ line.
    pub object: String,
    /// The rights bits.
    pub rights: u64,
    /// The badge.
    pub badge: u64,
    /// For a frame: its size in bytes and whether it is device memory.
    pub frame: Option<(u64, bool)>,
    /// For an IRQ handler: the notification its line signals and the
    /// badge (`None`: unbound).
    pub bound: Option<(u64, u64)>,
}

/// One `map` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// The first virtual address.
    pub vaddr: u64,
    /// The first physical address.
    pub paddr: u64,
    /// The page size in bytes.
    pub size: u64,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Reachable from ring 3.
    pub user: bool,
    /// The memory type: 0 write-back ... 3 uncacheable.
    pub cache: u8,
}

/// Why a log holds no usable snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The log line (1-based) it concerns; 0 for the log as a whole.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(formatter, "conformance dump: {}", self.message)
        } else {
            write!(formatter, "conformance dump, log line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// The `key=value` fields of one line.
struct Fields<'a> {
    line: usize,
    values: BTreeMap<&'a str, &'a str>,
}

impl<'a> Fields<'a> {
    fn error(&self, message: String) -> ParseError {
        ParseError { line: self.line, message }
    }

    fn text(&self, key: &str) -> Result<&'a str, ParseError> {
        self.values.get(key).copied().ok_or_else(|| self.error(format!("no `{key}=`")))
    }

    fn number(&self, key: &str) -> Result<u64, ParseError> {
        let text = self.text(key)?;
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.map_err(|_| self.error(format!("`{key}={text}` is not a number")))
    }

    fn small<T: TryFrom<u64>>(&self, key: &str) -> Result<T, ParseError> {
        let value = self.number(key)?;
        T::try_from(value).map_err(|_| self.error(format!("`{key}={value}` is out of range")))
    }

    fn optional(&self, key: &str) -> Result<Option<u64>, ParseError> {
        if self.text(key)? == "none" { Ok(None) } else { self.number(key).map(Some) }
    }

    fn flag(&self, key: &str) -> Result<bool, ParseError> {
        match self.text(key)? {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(self.error(format!("`{key}={other}` is neither 0 nor 1"))),
        }
    }
}

/// Reads the snapshot out of a whole console log: the lines that start
/// with [`PREFIX`] (the kernel prints them so; a PD's output starts with
/// `user NAME: ` and cannot pose as the dump).
///
/// # Errors
///
/// A [`ParseError`] for a log without snapshot lines, a malformed line, a
/// `cap` or `map` line before any `thread` line or naming another thread
/// than the one before it, a second snapshot, and a snapshot whose `end`
/// line is missing or counts other numbers of lines than arrived (lines
/// were lost).
pub fn parse(text: &str) -> Result<Snapshot, ParseError> {
    let mut snapshot = Snapshot::default();
    let mut ended = false;
    let mut any = false;
    for (index, raw) in text.lines().enumerate() {
        let Some(body) = raw.strip_prefix(PREFIX) else { continue };
        any = true;
        let line = index + 1;
        let body = body.trim_end();
        let mut words = body.split_whitespace();
        let kind = words.next().unwrap_or("");
        let mut values = BTreeMap::new();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| ParseError { line, message: format!("`{word}` is not key=value") })?;
            values.insert(key, value);
        }
        let fields = Fields { line, values };
        if ended {
            return Err(fields.error("a line after the snapshot's end (two snapshots in one log?)".to_owned()));
        }
        match kind {
            "machine" => snapshot.tsc_khz = Some(fields.number("tsc_khz")?),
            "thread" => snapshot.threads.push(thread(&fields)?),
            "cap" | "map" => {
                let thread = snapshot
                    .threads
                    .last_mut()
                    .ok_or_else(|| fields.error(format!("a `{kind}` line before any thread")))?;
                let named = fields.text("thread")?;
                if named != thread.name {
                    return Err(fields.error(format!("a line of thread `{named}` among those of `{}`", thread.name)));
                }
                if kind == "cap" {
                    thread.caps.push(cap(&fields)?);
                } else {
                    thread.maps.push(map(&fields)?);
                }
            }
            "end" => {
                let counted = [
                    ("threads", snapshot.threads.len()),
                    ("caps", snapshot.threads.iter().map(|thread| thread.caps.len()).sum()),
                    ("maps", snapshot.threads.iter().map(|thread| thread.maps.len()).sum()),
                ];
                for (key, arrived) in counted {
                    let printed = fields.number(key)?;
                    if u64::try_from(arrived).ok() != Some(printed) {
                        return Err(fields.error(format!("the kernel printed {printed} {key} but {arrived} arrived")));
                    }
                }
                ended = true;
            }
            other => return Err(fields.error(format!("unknown line kind `{other}`"))),
        }
    }
    if !any {
        return Err(ParseError { line: 0, message: format!("no `{}` lines in the log", PREFIX.trim_end()) });
    }
    if !ended {
        return Err(ParseError { line: 0, message: "no `end` line: the dump is incomplete".to_owned() });
    }
    Ok(snapshot)
}

fn thread(fields: &Fields<'_>) -> Result<Thread, ParseError> {
    let guard = fields.text("guard")?;
    let (guard_bits, guard_value) =
        guard.split_once(':').ok_or_else(|| fields.error(format!("`guard={guard}` is not WIDTH:VALUE")))?;
    let guard_fields =
        Fields { line: fields.line, values: BTreeMap::from([("width", guard_bits), ("value", guard_value)]) };
    Ok(Thread {
        name: fields.text("name")?.to_owned(),
        tcb: fields.number("tcb")?,
        priority: fields.small("priority")?,
        state: fields.text("state")?.to_owned(),
        cnode: fields.optional("cnode")?,
        radix: fields.small("radix")?,
        guard_bits: guard_fields.small("width")?,
        guard: guard_fields.number("value")?,
        vspace: fields.optional("vspace")?,
        ipc_buffer: fields.optional("ipc_buffer")?,
        fault_handler: fault_handler(fields)?,
        sched: numbers(fields, "sched", ["BUDGET", "PERIOD"])?.map(|[budget, period]| (budget, period)),
        passive: match fields.text("passive")? {
            "0" => false,
            "1" => true,
            other => return Err(fields.error(format!("`passive={other}` is neither 0 nor 1"))),
        },
        caps: Vec::new(),
        maps: Vec::new(),
    })
}

/// `fault=ENDPOINT:BADGE` or `fault=none`.
/// `key=A:B:...` (as many numbers as `names`) or `key=none`.
fn numbers<const N: usize>(fields: &Fields<'_>, key: &str, names: [&str; N]) -> Result<Option<[u64; N]>, ParseError> {
    let text = fields.text(key)?;
    if text == "none" {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != N {
        return Err(fields.error(format!("`{key}={text}` is not {}", names.join(":"))));
    }
    let parts = Fields { line: fields.line, values: names.iter().copied().zip(parts).collect() };
    let mut values = [0; N];
    for (value, name) in values.iter_mut().zip(names) {
        *value = parts.number(name)?;
    }
    Ok(Some(values))
}

/// `fault=ENDPOINT:BADGE:RIGHTS` or `fault=none`.
fn fault_handler(fields: &Fields<'_>) -> Result<Option<(u64, u64, u64)>, ParseError> {
    Ok(numbers(fields, "fault", ["ENDPOINT", "BADGE", "RIGHTS"])?
        .map(|[endpoint, badge, rights]| (endpoint, badge, rights)))
}

fn cap(fields: &Fields<'_>) -> Result<CapEntry, ParseError> {
    let kind = fields.text("type")?.to_owned();
    let frame = if kind == "frame" { Some((fields.number("size")?, fields.flag("device")?)) } else { None };
    let bound = if kind == "irq_handler" {
        numbers(fields, "bound", ["NOTIFICATION", "BADGE"])?.map(|[notification, badge]| (notification, badge))
    } else {
        None
    };
    Ok(CapEntry {
        slot: fields.number("slot")?,
        kind,
        object: fields.text("object")?.to_owned(),
        rights: fields.number("rights")?,
        badge: fields.number("badge")?,
        frame,
        bound,
    })
}

fn map(fields: &Fields<'_>) -> Result<MapEntry, ParseError> {
    Ok(MapEntry {
        vaddr: fields.number("vaddr")?,
        paddr: fields.number("paddr")?,
        size: fields.number("size")?,
        write: fields.flag("write")?,
        exec: fields.flag("exec")?,
        user: fields.flag("user")?,
        cache: fields.small("cache")?,
    })
}

/// One difference between the snapshot and the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// No thread carries the PD's name.
    MissingThread {
        /// The PD.
        pd: String,
    },
    /// Several threads carry the PD's name.
    DuplicateThread {
        /// The PD.
        pd: String,
        /// How many.
        count: usize,
    },
    /// A thread the spec does not have.
    ExtraThread {
        /// Its name.
        name: String,
        /// Its TCB.
        tcb: u64,
    },
    /// The thread's priority is not the spec's.
    WrongPriority {
        /// The PD.
        pd: String,
        /// The spec's.
        expected: u8,
        /// The thread's.
        found: u8,
    },
    /// The thread's CSpace root is missing or shaped otherwise.
    WrongCSpace {
        /// The PD.
        pd: String,
        /// What differs.
        problem: String,
    },
    /// The thread has no VSpace.
    MissingVSpace {
        /// The PD.
        pd: String,
    },
    /// A slot the spec fills is empty.
    MissingCap {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// The spec's capability (type and object name).
        expected: String,
    },
    /// A slot the spec leaves empty holds a capability.
    ExtraCap {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// What it holds (type and object).
        found: String,
    },
    /// The capability is of another type than the spec's object.
    WrongCapType {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// The spec's type.
        expected: String,
        /// The capability's.
        found: String,
    },
    /// The IRQ line or port range differs from the spec's.
    WrongCapObject {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// The spec's.
        expected: String,
        /// The capability's.
        found: String,
    },
    /// The capability's rights differ from the spec's.
    WrongRights {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// The spec's.
        expected: u64,
        /// The capability's.
        found: u64,
    },
    /// The capability's badge differs from the spec's.
    WrongBadge {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// The spec's.
        expected: u64,
        /// The capability's.
        found: u64,
    },
    /// The thread was never started (the loader resumes every PD's).
    NotStarted {
        /// The PD.
        pd: String,
    },
    /// The scheduling context's budget and period (TSC ticks) are not the
    /// manifest's times at the machine's TSC rate.
    WrongBudget {
        /// The PD.
        pd: String,
        /// What the manifest's budget and period come to.
        expected: Option<(u64, u64)>,
        /// What the thread has.
        found: Option<(u64, u64)>,
    },
    /// The thread is passive and the manifest does not say so, or the
    /// other way round.
    WrongPassive {
        /// The PD.
        pd: String,
        /// Whether the manifest makes it passive.
        expected: bool,
    },
    /// An IRQ handler's line signals another notification or badge than
    /// its device's (`1 << line`), or none.
    WrongIrqBinding {
        /// The PD.
        pd: String,
        /// The slot.
        slot: u64,
        /// The badge the line should signal.
        expected_badge: u64,
        /// The notification and badge it signals, if any.
        found: Option<(u64, u64)>,
    },
    /// The capability in the thread's fault slot has other rights than
    /// the WRITE the loader gives it.
    WrongFaultRights {
        /// The PD.
        pd: String,
        /// Its rights.
        found: u64,
    },
    /// The thread's fault handler is not the manifest's (`faults`).
    WrongFaultHandler {
        /// The PD.
        pd: String,
        /// What the manifest says: the badge, or none.
        expected: Option<u64>,
        /// What the thread has: the badge, or none.
        found: Option<u64>,
    },
    /// Slot 0 does not hold the PD's own CSpace root.
    NotOwnCSpace {
        /// The PD.
        pd: String,
        /// What slot 0 names.
        found: String,
        /// The thread's CSpace root.
        cspace: String,
    },
    /// One spec object is two kernel objects.
    SplitObject {
        /// The spec object's name.
        object: String,
        /// Where one copy points: PD and object.
        first: (String, String),
        /// Where another points.
        second: (String, String),
    },
    /// Two spec objects are one kernel object.
    SharedObject {
        /// The first spec object's name.
        first: String,
        /// The second's.
        second: String,
        /// The kernel object both name.
        object: String,
    },
    /// Pages of a region mapping are not mapped.
    MissingMapping {
        /// The PD.
        pd: String,
        /// The region.
        region: String,
        /// The first page not mapped.
        vaddr: u64,
        /// How many pages of the mapping are not mapped.
        pages: u64,
    },
    /// A page is mapped otherwise than the spec says.
    WrongMapping {
        /// The PD.
        pd: String,
        /// The region, or `private`.
        region: String,
        /// The page.
        vaddr: u64,
        /// What differs.
        problem: String,
    },
    /// Two PDs map a region's page to different frames.
    RegionFramesDiffer {
        /// The region.
        region: String,
        /// The page's index in the region.
        page: u64,
        /// One PD and its frame.
        first: (String, u64),
        /// Another PD and its frame.
        second: (String, u64),
    },
    /// One frame serves two pages that must have their own.
    FrameReused {
        /// The frame.
        paddr: u64,
        /// Its first use.
        first: String,
        /// Its second use.
        second: String,
    },
    /// A page that is neither a region's nor part of the private layout.
    ExtraMapping {
        /// The PD.
        pd: String,
        /// The page.
        vaddr: u64,
        /// Its size.
        size: u64,
        /// Why it is not allowed.
        why: String,
    },
    /// A private page both writable and executable.
    WritableExecutable {
        /// The PD.
        pd: String,
        /// The page.
        vaddr: u64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::MissingThread { pd } => write!(formatter, "`{pd}`: no thread of that name"),
            Mismatch::DuplicateThread { pd, count } => write!(formatter, "`{pd}`: {count} threads of that name"),
            Mismatch::ExtraThread { name, tcb } => {
                write!(formatter, "thread `{name}` (TCB {tcb:#x}) is no protection domain of the manifest")
            }
            Mismatch::WrongPriority { pd, expected, found } => {
                write!(formatter, "`{pd}`: priority {found}, the manifest says {expected}")
            }
            Mismatch::WrongCSpace { pd, problem } => write!(formatter, "`{pd}`: CSpace root: {problem}"),
            Mismatch::MissingVSpace { pd } => write!(formatter, "`{pd}`: the thread has no VSpace"),
            Mismatch::MissingCap { pd, slot, expected } => {
                write!(formatter, "`{pd}` slot {slot}: empty, the manifest puts {expected} there")
            }
            Mismatch::ExtraCap { pd, slot, found } => {
                write!(formatter, "`{pd}` slot {slot}: holds {found}, which the manifest does not give")
            }
            Mismatch::WrongCapType { pd, slot, expected, found } => {
                write!(formatter, "`{pd}` slot {slot}: a {found} capability, the manifest says {expected}")
            }
            Mismatch::WrongCapObject { pd, slot, expected, found } => {
                write!(formatter, "`{pd}` slot {slot}: names {found}, the manifest says {expected}")
            }
            Mismatch::WrongRights { pd, slot, expected, found } => {
                write!(formatter, "`{pd}` slot {slot}: rights {found:#x}, the manifest says {expected:#x}")
            }
            Mismatch::WrongBadge { pd, slot, expected, found } => {
                write!(formatter, "`{pd}` slot {slot}: badge {found:#x}, the manifest says {expected:#x}")
            }
            Mismatch::NotStarted { pd } => write!(formatter, "`{pd}`: its thread was never started"),
            Mismatch::WrongBudget { pd, expected, found } => {
                let describe = |sched: &Option<(u64, u64)>| {
                    sched.map_or("none".to_owned(), |(budget, period)| format!("{budget} ticks in {period}"))
                };
                write!(
                    formatter,
                    "`{pd}`: scheduling context {}, the manifest says {}",
                    describe(found),
                    describe(expected)
                )
            }
            Mismatch::WrongPassive { pd, expected } => {
                let what = |passive: bool| if passive { "passive" } else { "not passive" };
                write!(formatter, "`{pd}`: its thread is {}, the manifest says {}", what(!expected), what(*expected))
            }
            Mismatch::WrongIrqBinding { pd, slot, expected_badge, found } => match found {
                Some((notification, badge)) => write!(
                    formatter,
                    "`{pd}` slot {slot}: the line signals {notification:#x} with badge {badge:#x}, the device's notification with {expected_badge:#x} expected"
                ),
                None => write!(
                    formatter,
                    "`{pd}` slot {slot}: the line signals nothing, badge {expected_badge:#x} expected"
                ),
            },
            Mismatch::WrongFaultRights { pd, found } => {
                write!(formatter, "`{pd}`: its fault capability has rights {found:#x}, WRITE (0x2) expected")
            }
            Mismatch::WrongFaultHandler { pd, expected, found } => {
                let describe =
                    |handler: &Option<u64>| handler.map_or("none".to_owned(), |badge| format!("badge {badge:#x}"));
                write!(formatter, "`{pd}`: fault handler {}, the manifest says {}", describe(found), describe(expected))
            }
            Mismatch::NotOwnCSpace { pd, found, cspace } => {
                write!(formatter, "`{pd}` slot 0: names CNode {found}, but the thread's CSpace root is {cspace}")
            }
            Mismatch::SplitObject { object, first, second } => write!(
                formatter,
                "`{object}` is two objects: {} in `{}` and {} in `{}`",
                first.1, first.0, second.1, second.0
            ),
            Mismatch::SharedObject { first, second, object } => {
                write!(formatter, "`{first}` and `{second}` are one object ({object}), the manifest has two")
            }
            Mismatch::MissingMapping { pd, region, vaddr, pages } => {
                write!(formatter, "`{pd}`: {pages} page(s) of region `{region}` not mapped, the first at {vaddr:#x}")
            }
            Mismatch::WrongMapping { pd, region, vaddr, problem } => {
                write!(formatter, "`{pd}`: page {vaddr:#x} of {region}: {problem}")
            }
            Mismatch::RegionFramesDiffer { region, page, first, second } => write!(
                formatter,
                "region `{region}` page {page}: frame {:#x} in `{}` but {:#x} in `{}`",
                first.1, first.0, second.1, second.0
            ),
            Mismatch::FrameReused { paddr, first, second } => {
                write!(formatter, "frame {paddr:#x} is both {first} and {second}")
            }
            Mismatch::ExtraMapping { pd, vaddr, size, why } => {
                write!(formatter, "`{pd}`: page {vaddr:#x} ({size} bytes) {why}")
            }
            Mismatch::WritableExecutable { pd, vaddr } => {
                write!(formatter, "`{pd}`: private page {vaddr:#x} is writable and executable")
            }
        }
    }
}

/// The cap line type of a spec object.
fn type_of(kind: &ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Tcb { .. } => "tcb",
        ObjectKind::SchedContext { .. } => "sched_context",
        ObjectKind::CNode { .. } => "cnode",
        ObjectKind::VSpace => "pml4",
        ObjectKind::Endpoint => "endpoint",
        ObjectKind::Notification => "notification",
        ObjectKind::Reply => "reply",
        ObjectKind::Frames { .. } => "frame",
        ObjectKind::IrqHandler { .. } => "irq_handler",
        ObjectKind::IoPorts { .. } => "io_ports",
        ObjectKind::GuestSpace => "guest_space",
        ObjectKind::VCpu => "vcpu",
    }
}

/// The object a cap line names for the spec objects that are no memory:
/// an IRQ line, a port range.
fn fixed_object(kind: &ObjectKind) -> Option<String> {
    match kind {
        ObjectKind::IrqHandler { line, .. } => Some(line.to_string()),
        ObjectKind::IoPorts { first, last } => Some(format!("{first:#x}..{last:#x}")),
        _ => None,
    }
}

/// Which spec object is which kernel object, both ways.
#[derive(Default)]
struct Identities {
    by_id: BTreeMap<ObjectId, (String, String)>,
    by_object: BTreeMap<String, ObjectId>,
    reported: BTreeSet<(ObjectId, ObjectId)>,
}

impl Identities {
    /// Records that `pd` sees spec object `id` as `object` (type-qualified).
    fn record(&mut self, spec: &SystemSpec, id: ObjectId, pd: &str, object: String, out: &mut Vec<Mismatch>) {
        let name = |id: ObjectId| spec.object(id).map_or_else(|| format!("object {}", id.0), |o| o.name.clone());
        match self.by_id.get(&id) {
            Some((first_pd, first)) if *first != object => {
                out.push(Mismatch::SplitObject {
                    object: name(id),
                    first: (first_pd.clone(), first.clone()),
                    second: (pd.to_owned(), object.clone()),
                });
            }
            Some(_) => {}
            None => {
                self.by_id.insert(id, (pd.to_owned(), object.clone()));
            }
        }
        match self.by_object.get(&object) {
            Some(&other) if other != id => {
                let pair = (other.min(id), other.max(id));
                if self.reported.insert(pair) {
                    out.push(Mismatch::SharedObject { first: name(pair.0), second: name(pair.1), object });
                }
            }
            Some(_) => {}
            None => {
                self.by_object.insert(object, id);
            }
        }
    }
}

/// Compares the snapshot with the spec; an empty list means the system
/// the loader built is exactly the manifest's. The rules are
/// `docs/capdl.md`'s ("Post-boot conformance").
#[must_use]
pub fn check(spec: &SystemSpec, snapshot: &Snapshot) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let loaders: Vec<&Thread> =
        snapshot.threads.iter().filter(|thread| LOADER_NAMES.contains(&thread.name.as_str())).collect();
    for extra in loaders.iter().skip(1) {
        out.push(Mismatch::ExtraThread { name: extra.name.clone(), tcb: extra.tcb });
    }
    for thread in &snapshot.threads {
        if !LOADER_NAMES.contains(&thread.name.as_str()) && spec.domain(&thread.name).is_none() {
            out.push(Mismatch::ExtraThread { name: thread.name.clone(), tcb: thread.tcb });
        }
    }
    let mut identities = Identities::default();
    let mut frames = Frames::default();
    for domain in &spec.domains {
        let named: Vec<&Thread> = snapshot.threads.iter().filter(|thread| thread.name == domain.name).collect();
        match named.as_slice() {
            [] => out.push(Mismatch::MissingThread { pd: domain.name.clone() }),
            [thread] => {
                check_thread(spec, domain, thread, snapshot.tsc_khz, &mut identities, &mut out);
                check_mappings(spec, domain, thread, &mut frames, &mut out);
            }
            several => out.push(Mismatch::DuplicateThread { pd: domain.name.clone(), count: several.len() }),
        }
    }
    out
}

/// Nanoseconds in TSC ticks at `tsc_khz`, as the loader converts them.
fn ticks(nanoseconds: u64, tsc_khz: u64) -> u64 {
    u64::try_from(u128::from(nanoseconds) * u128::from(tsc_khz) / 1_000_000).unwrap_or(u64::MAX)
}

fn check_thread(
    spec: &SystemSpec,
    domain: &bulkhead_capdl::compile::DomainSpec,
    thread: &Thread,
    tsc_khz: Option<u64>,
    identities: &mut Identities,
    out: &mut Vec<Mismatch>,
) {
    let pd = domain.name.as_str();
    if thread.state == "inactive" {
        out.push(Mismatch::NotStarted { pd: pd.to_owned() });
    }
    if let (Some(tsc_khz), Some(ObjectKind::SchedContext { budget_ns, period_ns })) =
        (tsc_khz, spec.object(domain.sched_context).map(|object| &object.kind))
    {
        let expected = Some((ticks(*budget_ns, tsc_khz), ticks(*period_ns, tsc_khz)));
        if thread.sched != expected {
            out.push(Mismatch::WrongBudget { pd: pd.to_owned(), expected, found: thread.sched });
        }
    }
    if thread.passive != domain.passive {
        out.push(Mismatch::WrongPassive { pd: pd.to_owned(), expected: domain.passive });
    }
    if let Some(ObjectKind::Tcb { priority, .. }) = spec.object(domain.tcb).map(|object| &object.kind)
        && *priority != thread.priority
    {
        out.push(Mismatch::WrongPriority { pd: pd.to_owned(), expected: *priority, found: thread.priority });
    }
    identities.record(spec, domain.tcb, pd, format!("tcb:{:#x}", thread.tcb), out);
    let radix = match spec.object(domain.cnode).map(|object| &object.kind) {
        Some(ObjectKind::CNode { radix }) => *radix,
        _ => 0,
    };
    match thread.cnode {
        None => out.push(Mismatch::WrongCSpace { pd: pd.to_owned(), problem: "none".to_owned() }),
        Some(cnode) => {
            identities.record(spec, domain.cnode, pd, format!("cnode:{cnode:#x}"), out);
            if thread.radix != radix {
                let problem = format!("radix {}, the manifest says {radix}", thread.radix);
                out.push(Mismatch::WrongCSpace { pd: pd.to_owned(), problem });
            }
            if u32::from(thread.guard_bits) + u32::from(thread.radix) != 64 || thread.guard != 0 {
                let problem = format!(
                    "guard {}:{:#x}, so capability addresses are not slot numbers (want {}:0x0)",
                    thread.guard_bits,
                    thread.guard,
                    64_u8.saturating_sub(thread.radix)
                );
                out.push(Mismatch::WrongCSpace { pd: pd.to_owned(), problem });
            }
        }
    }
    match (&domain.fault_handler, thread.fault_handler) {
        (None, None) => {}
        (Some(want), Some((endpoint, badge, rights))) => {
            identities.record(spec, want.endpoint, pd, format!("endpoint:{endpoint:#x}"), out);
            if rights != bulkhead_capdl::compile::RIGHT_WRITE {
                out.push(Mismatch::WrongFaultRights { pd: pd.to_owned(), found: rights });
            }
            if badge != want.badge {
                let (expected, found) = (Some(want.badge), Some(badge));
                out.push(Mismatch::WrongFaultHandler { pd: pd.to_owned(), expected, found });
            }
        }
        (want, found) => out.push(Mismatch::WrongFaultHandler {
            pd: pd.to_owned(),
            expected: want.as_ref().map(|want| want.badge),
            found: found.map(|(_, badge, _)| badge),
        }),
    }
    match thread.vspace {
        None => out.push(Mismatch::MissingVSpace { pd: pd.to_owned() }),
        Some(vspace) => identities.record(spec, domain.vspace, pd, format!("pml4:{vspace:#x}"), out),
    }
    let held: BTreeMap<u64, &CapEntry> = thread.caps.iter().map(|cap| (cap.slot, cap)).collect();
    let wanted: BTreeSet<u64> = domain.caps.iter().map(|cap| cap.slot).collect();
    for want in &domain.caps {
        let Some(object) = spec.object(want.object) else { continue };
        let expected_type = type_of(&object.kind);
        let slot = want.slot;
        let Some(cap) = held.get(&slot) else {
            let expected = format!("a {expected_type} capability to `{}`", object.name);
            out.push(Mismatch::MissingCap { pd: pd.to_owned(), slot, expected });
            continue;
        };
        if cap.kind != expected_type {
            let (expected, found) = (expected_type.to_owned(), cap.kind.clone());
            out.push(Mismatch::WrongCapType { pd: pd.to_owned(), slot, expected, found });
            continue;
        }
        if let Some(expected) = fixed_object(&object.kind)
            && cap.object != expected
        {
            out.push(Mismatch::WrongCapObject { pd: pd.to_owned(), slot, expected, found: cap.object.clone() });
        }
        if cap.rights != want.rights {
            out.push(Mismatch::WrongRights { pd: pd.to_owned(), slot, expected: want.rights, found: cap.rights });
        }
        if cap.badge != want.badge {
            out.push(Mismatch::WrongBadge { pd: pd.to_owned(), slot, expected: want.badge, found: cap.badge });
        }
        if let ObjectKind::IrqHandler { line, notification } = object.kind {
            let expected_badge = 1_u64.checked_shl(u32::from(line)).unwrap_or(0);
            match cap.bound {
                Some((bound, badge)) if badge == expected_badge => {
                    identities.record(spec, notification, pd, format!("notification:{bound:#x}"), out);
                }
                found => out.push(Mismatch::WrongIrqBinding { pd: pd.to_owned(), slot, expected_badge, found }),
            }
        }
        if want.object == domain.cnode {
            let own = thread.cnode.map(|cnode| format!("{cnode:#x}"));
            if own.as_deref() != Some(cap.object.as_str()) {
                let cspace = own.unwrap_or_else(|| "none".to_owned());
                out.push(Mismatch::NotOwnCSpace { pd: pd.to_owned(), found: cap.object.clone(), cspace });
            }
        }
        // Frames are runs of objects: their identity is the mappings'.
        if !matches!(object.kind, ObjectKind::Frames { .. }) {
            identities.record(spec, want.object, pd, format!("{}:{}", cap.kind, cap.object), out);
        }
    }
    for cap in thread.caps.iter().filter(|cap| !wanted.contains(&cap.slot)) {
        let found = format!("a {} capability to {}", cap.kind, cap.object);
        out.push(Mismatch::ExtraCap { pd: pd.to_owned(), slot: cap.slot, found });
    }
}

/// Who uses each frame, and each region page's frame.
#[derive(Default)]
struct Frames {
    owners: BTreeMap<u64, String>,
    region_pages: BTreeMap<(u32, u64), (String, u64)>,
}

impl Frames {
    fn claim(&mut self, paddr: u64, owner: String, out: &mut Vec<Mismatch>) {
        match self.owners.get(&paddr) {
            Some(first) if *first != owner => {
                // Every PD that maps the region repeats the same finding.
                let mismatch = Mismatch::FrameReused { paddr, first: first.clone(), second: owner };
                if !out.contains(&mismatch) {
                    out.push(mismatch);
                }
            }
            Some(_) => {}
            None => {
                self.owners.insert(paddr, owner);
            }
        }
    }
}

/// The private layout range that holds `[vaddr, vaddr + size)`, by name.
fn private_range(domain: &bulkhead_capdl::compile::DomainSpec, vaddr: u64, size: u64) -> Option<&'static str> {
    let round = |bytes: u64| bytes.div_ceil(layout::PAGE) * layout::PAGE;
    let stack_bytes = if domain.stack_bytes == 0 { layout::DEFAULT_STACK_BYTES } else { domain.stack_bytes };
    let stack_floor = layout::STACK_TOP.saturating_sub(round(stack_bytes)).max(layout::IMAGE.1);
    let ranges = [
        ("image", layout::IMAGE.0, layout::IMAGE.1),
        ("stack", stack_floor, layout::STACK_TOP),
        ("IPC buffer", layout::IPC_BUFFER, layout::IPC_BUFFER + layout::PAGE),
        ("info page", layout::INFO_PAGE, layout::INFO_PAGE + layout::PAGE),
        ("heap", layout::HEAP, layout::HEAP + round(domain.heap_bytes)),
    ];
    let end = vaddr.checked_add(size)?;
    ranges.into_iter().find(|(_, start, stop)| *start <= vaddr && end <= *stop).map(|(name, _, _)| name)
}

fn check_mappings(
    spec: &SystemSpec,
    domain: &bulkhead_capdl::compile::DomainSpec,
    thread: &Thread,
    frames: &mut Frames,
    out: &mut Vec<Mismatch>,
) {
    let pd = domain.name.as_str();
    let pages: BTreeMap<u64, &MapEntry> = thread.maps.iter().map(|map| (map.vaddr, map)).collect();
    let mut claimed = BTreeSet::new();
    let mut region_ranges = Vec::new();
    for mapping in &domain.mappings {
        let Some(region) = usize::try_from(mapping.region).ok().and_then(|index| spec.regions.get(index)) else {
            continue;
        };
        let Some(ObjectKind::Frames { page_size, count, physical }) =
            spec.object(region.frames).map(|object| &object.kind)
        else {
            continue;
        };
        region_ranges.push((mapping.address, mapping.address.saturating_add(region.size), region.name.as_str()));
        let cache = match mapping.cache {
            Cache::WriteBack => 0,
            Cache::Uncacheable => 3,
        };
        let (mut missing, mut first_missing) = (0, None);
        for page in 0..*count {
            let vaddr = mapping.address + page * page_size;
            let Some(map) = pages.get(&vaddr) else {
                missing += 1;
                first_missing.get_or_insert(vaddr);
                continue;
            };
            claimed.insert(vaddr);
            let mut problems = Vec::new();
            if map.size != *page_size {
                problems.push(format!("page size {}, the region's is {page_size}", map.size));
            }
            if map.write != mapping.rights.write {
                problems.push(format!(
                    "write={}, the manifest says {}",
                    u8::from(map.write),
                    u8::from(mapping.rights.write)
                ));
            }
            if map.exec != mapping.rights.execute {
                problems.push(format!(
                    "exec={}, the manifest says {}",
                    u8::from(map.exec),
                    u8::from(mapping.rights.execute)
                ));
            }
            if !map.user {
                problems.push("not reachable from ring 3".to_owned());
            }
            if map.cache != cache {
                problems.push(format!("cache={}, the manifest says {cache}", map.cache));
            }
            if let Some(base) = physical
                && map.paddr != base + page * page_size
            {
                problems.push(format!("frame {:#x}, the region is at {:#x}", map.paddr, base + page * page_size));
            }
            if !problems.is_empty() {
                let region = format!("region `{}`", region.name);
                out.push(Mismatch::WrongMapping { pd: pd.to_owned(), region, vaddr, problem: problems.join("; ") });
            }
            match frames.region_pages.get(&(mapping.region, page)) {
                Some((first_pd, first)) if *first != map.paddr => out.push(Mismatch::RegionFramesDiffer {
                    region: region.name.clone(),
                    page,
                    first: (first_pd.clone(), *first),
                    second: (pd.to_owned(), map.paddr),
                }),
                Some(_) => {}
                None => {
                    frames.region_pages.insert((mapping.region, page), (pd.to_owned(), map.paddr));
                }
            }
            frames.claim(map.paddr, format!("page {page} of region `{}`", region.name), out);
        }
        if let Some(vaddr) = first_missing {
            let region = region.name.clone();
            out.push(Mismatch::MissingMapping { pd: pd.to_owned(), region, vaddr, pages: missing });
        }
    }
    for map in thread.maps.iter().filter(|map| !claimed.contains(&map.vaddr)) {
        let end = map.vaddr.saturating_add(map.size);
        let extra = |why: String| Mismatch::ExtraMapping { pd: pd.to_owned(), vaddr: map.vaddr, size: map.size, why };
        if let Some((_, _, region)) = region_ranges.iter().find(|(start, stop, _)| map.vaddr < *stop && *start < end) {
            out.push(extra(format!("lies in region `{region}` but is not one of its pages")));
            continue;
        }
        if end > PRIVATE_TOP {
            out.push(extra("is at or above 2 GiB and no region of the manifest".to_owned()));
            continue;
        }
        let Some(range) = private_range(domain, map.vaddr, map.size) else {
            out.push(extra("is outside the private layout (image, stack, IPC buffer, info page, heap)".to_owned()));
            continue;
        };
        if map.write && map.exec {
            out.push(Mismatch::WritableExecutable { pd: pd.to_owned(), vaddr: map.vaddr });
        }
        let problem = match range {
            "info page" if map.write || map.exec => Some("the info page must be read-only and not executable"),
            "stack" | "IPC buffer" | "heap" if map.exec => Some("data must not be executable"),
            _ => None,
        };
        if let Some(problem) = problem {
            let region = format!("the private {range}");
            out.push(Mismatch::WrongMapping {
                pd: pd.to_owned(),
                region,
                vaddr: map.vaddr,
                problem: problem.to_owned(),
            });
        }
        if range == "IPC buffer" && thread.ipc_buffer.is_some_and(|frame| frame != map.paddr) {
            let problem = format!("frame {:#x}, but the thread's IPC buffer is another frame", map.paddr);
            out.push(Mismatch::WrongMapping {
                pd: pd.to_owned(),
                region: "the private IPC buffer".to_owned(),
                vaddr: map.vaddr,
                problem,
            });
        }
        frames.claim(map.paddr, format!("private page {:#x} of `{pd}`", map.vaddr), out);
    }
}

#[cfg(test)]
mod tests;
