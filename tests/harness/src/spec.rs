//! The executable abstract specification: what the kernel's capability
//! system calls do, written for clarity rather than speed.
//!
//! The state is a handful of ordered maps: the live objects (where each
//! lies, what it is, the untyped capability it was carved from), the
//! capabilities in slots, each with an explicit parent pointer (the
//! derivation tree) and seL4's "original" bit, and the threads. As in
//! seL4, untyped memory is not an object: an untyped capability (never
//! copied, at most moved) stands for its region and carries the region's
//! watermark. Nothing here is shared with the kernel's implementation: the
//! spec has its own capability type, its own address resolution and its
//! own derivation rules (seL4's abstract `cdt`, stated directly); only the
//! ABI's numbers (labels, error codes) come from the kernel.
//!
//! Covered: CNode::Copy, Mint, Move, Mutate, Delete and Revoke;
//! Untyped::Retype of every object type; every system call (Call, Send,
//! NBSend, Recv, NBRecv, ReplyRecv, Signal, Wait, Poll, Yield) with IPC,
//! capability transfer, notifications and reply objects; the TCB
//! invocations; SchedControl::Configure; the scheduler's ready and release
//! queues, budgets and timer ticks ([`threads`]); scheduling-context
//! donation to passive servers ([`donation`]); interrupt lines; address
//! spaces: paging structures, frames, ASID pools and their invocations
//! ([`vspace`]). A thread's CSpace root is in its TCB's slot 0, its fault
//! endpoint in slot 1, its VSpace in slot 2 and its IPC buffer in slot 3.

use std::collections::{BTreeMap, BTreeSet};

pub mod donation;
pub mod threads;
pub mod vcpu;
pub mod vspace;

pub use threads::{
    Info, IrqLine, Loan, Notification, Reply, Resumption, SchedContext, Scheduler, Syscall, Thread, ThreadState,
};
pub use vcpu::VCpu;
pub use vspace::{AsidPool, Mapping, Pte, Table};

/// Bytes per capability slot: slot `i` of a CNode (or a TCB) whose memory
/// starts at `base` lives at `base + i * SLOT_BYTES`.
pub const SLOT_BYTES: u64 = 64;
/// Capability slots at the start of a TCB (slot 0 holds its CSpace root).
pub const TCB_SLOTS: u64 = 4;
/// log2 of a TCB's size.
pub const TCB_BITS: u8 = 11;
/// log2 of an endpoint's and a notification's size.
pub const SMALL_OBJECT_BITS: u8 = 6;
/// log2 of a reply object's size.
pub const REPLY_BITS: u8 = 5;
/// Every right: READ, WRITE, GRANT, GRANT_REPLY.
pub const ALL_RIGHTS: u8 = 0xf;
/// The WRITE right.
pub const WRITE: u8 = 0b10;
/// The most objects one retype may create.
pub const MAX_RETYPE_COUNT: u64 = 256;
/// Untyped sizes a retype may ask for (log2 bytes).
pub const UNTYPED_BITS: std::ops::RangeInclusive<u64> = 4..=47;
/// CNode radixes a retype may ask for.
pub const CNODE_RADIX: std::ops::RangeInclusive<u64> = 1..=16;
/// Scheduling-context sizes a retype may ask for (log2 bytes).
pub const SCHED_CONTEXT_BITS: std::ops::RangeInclusive<u64> = 8..=12;

/// The ABI's numbers are the kernel's own definitions (which
/// `kernel/src/cap/abi_doc_test.rs` keeps in step with `docs/abi.md`): the
/// invocation labels and the error codes. Everything else here is the
/// spec's own.
pub use kernel_core::cap::invocation::label;
pub use kernel_core::error::SyscallError as Error;

/// Object types (the `Untyped::Retype` type numbers of `docs/abi.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Untyped memory.
    Untyped,
    /// A table of capability slots.
    CNode,
    /// A thread.
    Tcb,
    /// A scheduling context.
    SchedContext,
    /// An IPC endpoint.
    Endpoint,
    /// A notification.
    Notification,
    /// A reply object.
    Reply,
    /// The authority to configure scheduling contexts: no memory, one
    /// capability made at boot (it cannot be copied).
    SchedControl,
    /// The authority to issue interrupt-line handlers: no memory, one
    /// capability made at boot (it cannot be copied).
    IrqControl,
    /// One interrupt line's handler: no memory (the spec places line `l`
    /// at byte `IRQ_HANDLER_BASE + l` of kernel memory).
    IrqHandler,
    /// A frame of 4 KiB, 2 MiB or 1 GiB.
    Frame,
    /// A page table (maps 4 KiB frames).
    PageTable,
    /// A page directory (maps page tables and 2 MiB frames).
    PageDirectory,
    /// A page directory pointer table (maps page directories and 1 GiB
    /// frames).
    PageDirectoryPointerTable,
    /// A PML4: the root of a VSpace.
    Pml4,
    /// The root of a guest's physical address space (the machine's
    /// second-level format: the spec sees its entries as a PML4's).
    GuestSpace,
    /// A pool of 512 ASIDs (one page).
    AsidPool,
    /// The authority to make ASID pools: no memory, one capability made at
    /// boot (it cannot be copied).
    AsidControl,
    /// A virtual CPU (8 KiB; one capability slot, its GuestSpace).
    VCpu,
}

/// An object's identity: where it lies, what it is, how big it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId {
    /// Its first byte.
    pub base: u64,
    /// Its type.
    pub kind: Kind,
    /// log2 of its size in bytes.
    pub size_bits: u8,
}

impl ObjectId {
    /// One past its last byte (as a u128: no overflow at the top).
    #[must_use]
    pub fn end(&self) -> u128 {
        u128::from(self.base) + (1_u128 << self.size_bits)
    }

    /// Whether `other` lies entirely inside this object's memory.
    #[must_use]
    pub fn contains(&self, other: &ObjectId) -> bool {
        self.base <= other.base && other.end() <= self.end()
    }

    /// Whether the two objects share a byte.
    #[must_use]
    pub fn overlaps(&self, other: &ObjectId) -> bool {
        u128::from(self.base) < other.end() && u128::from(other.base) < self.end()
    }

    /// How many capability slots the object holds (a CNode's, a TCB's).
    #[must_use]
    pub const fn slot_count(&self) -> u64 {
        match self.kind {
            Kind::CNode => 1_u64 << (self.size_bits - 6),
            Kind::Tcb => TCB_SLOTS,
            Kind::VCpu => 1,
            _ => 0,
        }
    }

    /// The address of the object's first capability slot: its base, but
    /// for a VCpu, whose one slot starts its second page.
    #[must_use]
    pub const fn first_slot(&self) -> u64 {
        if matches!(self.kind, Kind::VCpu) { State::vcpu_space_slot(self.base) } else { self.base }
    }

    /// The capability slots inside the object, as slot addresses.
    #[must_use]
    pub fn slots(&self) -> Vec<u64> {
        (0..self.slot_count()).map(|index| self.first_slot() + index * SLOT_BYTES).collect()
    }
}

/// A live object (never an untyped: see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    /// The slot of the untyped capability it was carved from (the nearest
    /// one still live); `None` for the objects the kernel creates at boot.
    pub untyped: Option<u64>,
}

/// A capability, as the spec sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// `2^size_bits` bytes of untyped memory at `base`; objects are carved
    /// from `watermark` on.
    Untyped {
        /// First byte.
        base: u64,
        /// log2 of the size.
        size_bits: u8,
        /// Bytes from `base` handed out.
        watermark: u64,
    },
    /// A CNode of `2^radix` slots with a guard.
    CNode {
        /// First slot's address.
        base: u64,
        /// log2 of the slot count.
        radix: u8,
        /// The guard's value.
        guard: u64,
        /// The guard's width.
        guard_bits: u8,
    },
    /// A thread.
    Tcb {
        /// The TCB.
        base: u64,
    },
    /// An endpoint.
    Endpoint {
        /// The object.
        base: u64,
        /// 0 for none.
        badge: u64,
        /// READ, WRITE, GRANT, GRANT_REPLY bits.
        rights: u8,
    },
    /// A notification.
    Notification {
        /// The object.
        base: u64,
        /// 0 for none.
        badge: u64,
        /// READ, WRITE, GRANT, GRANT_REPLY bits.
        rights: u8,
    },
    /// A reply object.
    Reply {
        /// The object.
        base: u64,
    },
    /// A scheduling context.
    SchedContext {
        /// The object.
        base: u64,
        /// log2 of its size.
        size_bits: u8,
    },
    /// SchedControl.
    SchedControl,
    /// IrqControl.
    IrqControl,
    /// An interrupt line's handler.
    IrqHandler {
        /// The line.
        line: u8,
    },
    /// A frame.
    Frame {
        /// Its first byte.
        base: u64,
        /// log2 of its size: 12, 21 or 30.
        size_bits: u8,
        /// READ, WRITE, GRANT, GRANT_REPLY bits (READ maps readable, WRITE
        /// writable).
        rights: u8,
        /// Where this capability mapped it (each capability maps its frame
        /// at most once).
        mapping: Option<Mapping>,
    },
    /// A paging structure.
    PageTable {
        /// The structure.
        base: u64,
        /// Its level: `PageTable`, `PageDirectory`,
        /// `PageDirectoryPointerTable`, `Pml4` or `GuestSpace`.
        kind: Kind,
        /// Where it is linked into a VSpace; for a PML4, its ASID.
        mapping: Option<Mapping>,
    },
    /// AsidControl.
    AsidControl,
    /// An ASID pool.
    AsidPool {
        /// The pool's page.
        base: u64,
        /// Its first ASID (its number in the ASID table times 512).
        first: u16,
    },
    /// A VCpu.
    VCpu {
        /// The object.
        base: u64,
    },
}

/// Where the spec places the SchedControl "object": a byte of kernel
/// memory no other object uses, so that the memory invariants treat it as
/// one of the objects made at boot.
pub const SCHED_CONTROL_ID: ObjectId = ObjectId { base: 0, kind: Kind::SchedControl, size_bits: 0 };
/// Where the spec places the IrqControl "object" (as [`SCHED_CONTROL_ID`]).
pub const IRQ_CONTROL_ID: ObjectId = ObjectId { base: 1, kind: Kind::IrqControl, size_bits: 0 };
/// Where the spec places the AsidControl "object" (as [`SCHED_CONTROL_ID`]).
pub const ASID_CONTROL_ID: ObjectId = ObjectId { base: 2, kind: Kind::AsidControl, size_bits: 0 };
/// The byte of kernel memory where the spec places line 0's handler; line
/// `l`'s is `l` bytes above.
pub const IRQ_HANDLER_BASE: u64 = 0x10;

impl Cap {
    /// The object the capability names (for an untyped, its memory).
    #[must_use]
    pub fn object(&self) -> ObjectId {
        let (base, kind, size_bits) = match *self {
            Cap::Untyped { base, size_bits, .. } => (base, Kind::Untyped, size_bits),
            Cap::CNode { base, radix, .. } => (base, Kind::CNode, radix + 6),
            Cap::Tcb { base } => (base, Kind::Tcb, TCB_BITS),
            Cap::Endpoint { base, .. } => (base, Kind::Endpoint, SMALL_OBJECT_BITS),
            Cap::Notification { base, .. } => (base, Kind::Notification, SMALL_OBJECT_BITS),
            Cap::Reply { base } => (base, Kind::Reply, REPLY_BITS),
            Cap::SchedContext { base, size_bits } => (base, Kind::SchedContext, size_bits),
            Cap::SchedControl => return SCHED_CONTROL_ID,
            Cap::IrqControl => return IRQ_CONTROL_ID,
            Cap::IrqHandler { line } => (IRQ_HANDLER_BASE + u64::from(line), Kind::IrqHandler, 0),
            Cap::Frame { base, size_bits, .. } => (base, Kind::Frame, size_bits),
            Cap::PageTable { base, kind, .. } => (base, kind, vspace::TABLE_BITS),
            Cap::AsidPool { base, .. } => (base, Kind::AsidPool, vspace::TABLE_BITS),
            Cap::AsidControl => return ASID_CONTROL_ID,
            Cap::VCpu { base } => (base, Kind::VCpu, vcpu::VCPU_BITS),
        };
        ObjectId { base, kind, size_bits }
    }

    /// The rights, for the capabilities that carry them.
    #[must_use]
    pub const fn rights(&self) -> Option<u8> {
        match *self {
            Cap::Endpoint { rights, .. } | Cap::Notification { rights, .. } | Cap::Frame { rights, .. } => Some(rights),
            _ => None,
        }
    }

    /// Where a frame or paging-structure capability mapped its object.
    #[must_use]
    pub const fn mapping(&self) -> Option<Mapping> {
        match *self {
            Cap::Frame { mapping, .. } | Cap::PageTable { mapping, .. } => mapping,
            _ => None,
        }
    }

    /// The badge, for the capabilities that carry one.
    #[must_use]
    pub const fn badge(&self) -> Option<u64> {
        match *self {
            Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => Some(badge),
            _ => None,
        }
    }
}

/// A capability in its slot, with its place in the derivation tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The capability.
    pub cap: Cap,
    /// The slot of the capability it derives from.
    pub parent: Option<u64>,
    /// seL4's "original" bit: the capability may parent copies of the
    /// same object (new objects, untypeds, newly badged capabilities).
    pub original: bool,
}

/// The whole abstract state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Live objects.
    pub objects: BTreeMap<ObjectId, Object>,
    /// Occupied slots, by slot address.
    pub slots: BTreeMap<u64, Entry>,
    /// Each capability's children in the order a revoke deletes them
    /// (seL4's `cdt_list`): a new child of a capability comes first, a
    /// copy that becomes its source's sibling comes right after its
    /// source, and a deleted capability's children take its place in its
    /// parent's list. Only capabilities with children are listed.
    pub child_order: BTreeMap<u64, Vec<u64>>,
    /// The threads of live TCBs, by TCB address.
    pub threads: BTreeMap<u64, Thread>,
    /// Live endpoints' queues (senders or receivers, in arrival order).
    pub endpoints: BTreeMap<u64, Vec<u64>>,
    /// Live notifications.
    pub notifications: BTreeMap<u64, Notification>,
    /// Live reply objects.
    pub replies: BTreeMap<u64, Reply>,
    /// Live scheduling contexts.
    pub sched_contexts: BTreeMap<u64, SchedContext>,
    /// Live VCpus.
    pub vcpus: BTreeMap<u64, VCpu>,
    /// The scheduler.
    pub sched: Scheduler,
    /// The interrupt lines ([`threads::IRQ_LINES`] of them).
    pub irqs: Vec<IrqLine>,
    /// Live paging structures, by address.
    pub tables: BTreeMap<u64, Table>,
    /// The ASID table: the live pools by number (pool `n` holds ASIDs
    /// `n * 512..`).
    pub asid_pools: BTreeMap<u16, AsidPool>,
    /// The machine has a virtualisation backend (a boot fact: GuestSpaces
    /// can be mapped into).
    pub guest_backend: bool,
    /// While a CNode::Delete or Revoke runs: the deletions left before it
    /// is preempted (`None` otherwise; always `None` between steps).
    pub work: Option<u32>,
    /// A Delete or Revoke ran out of [`State::work`] (always `false`
    /// between steps).
    pub preempted: bool,
}

/// Capabilities one CNode::Delete or Revoke deletes before it is preempted
/// and the system call starts again (the kernel's work budget per call):
/// the restart decodes the call afresh from the caller's CSpace, so a
/// revoke that deleted its caller's CSpace stops there.
pub const WORK_PER_CALL: u32 = 256;

/// The bits of `value` from `low` up, `count` of them (count 0..=64).
fn bits(value: u64, low: u32, count: u32) -> u64 {
    let shifted = if low >= 64 { 0 } else { value >> low };
    if count >= 64 { shifted } else { shifted & ((1_u64 << count) - 1) }
}

/// Where a walk through guarded CNodes ended.
struct Walk {
    slot: u64,
    bits_left: u64,
}

impl State {
    /// The capability in `slot`, if any.
    #[must_use]
    pub fn cap(&self, slot: u64) -> Option<Cap> {
        self.slots.get(&slot).map(|entry| entry.cap)
    }

    /// The direct children of the capability in `slot`, in revoke order.
    #[must_use]
    pub fn children(&self, slot: u64) -> Vec<u64> {
        self.child_order.get(&slot).cloned().unwrap_or_default()
    }

    /// Puts `child` into `parent`'s children: first, or right after
    /// `after` (one of them).
    fn adopt(&mut self, parent: u64, child: u64, after: Option<u64>) {
        let children = self.child_order.entry(parent).or_default();
        let at = after.and_then(|after| children.iter().position(|slot| *slot == after)).map_or(0, |at| at + 1);
        children.insert(at, child);
    }

    /// Walks the `depth` low bits of `cptr` from the CNode capability
    /// `root`: each level matches its guard, then takes its radix bits as
    /// a slot index; the walk goes on while bits are left and the slot
    /// holds a CNode.
    fn walk(&self, root: Option<Cap>, cptr: u64, depth: u64) -> Result<Walk, Error> {
        if depth == 0 || depth > 64 {
            return Err(Error::FailedLookup);
        }
        let mut node = root;
        let mut left = depth;
        loop {
            let Some(Cap::CNode { base, radix, guard, guard_bits }) = node else {
                return Err(Error::FailedLookup);
            };
            let level = u64::from(radix) + u64::from(guard_bits);
            if level == 0 || level > left {
                return Err(Error::FailedLookup);
            }
            let below = u32::try_from(left - level).map_err(|_| Error::FailedLookup)?;
            let index = bits(cptr, below, u32::from(radix));
            if bits(cptr, below + u32::from(radix), u32::from(guard_bits)) != guard {
                return Err(Error::FailedLookup);
            }
            let slot = base + index * SLOT_BYTES;
            left -= level;
            match self.cap(slot) {
                _ if left == 0 => return Ok(Walk { slot, bits_left: 0 }),
                Some(cap @ Cap::CNode { .. }) => node = Some(cap),
                _ => return Ok(Walk { slot, bits_left: left }),
            }
        }
    }

    /// The slot `(index, depth)` names relative to the CNode capability
    /// `root`, consuming exactly `depth` bits.
    pub(crate) fn lookup_slot(&self, root: Option<Cap>, index: u64, depth: u64) -> Result<u64, Error> {
        let walk = self.walk(root, index, depth)?;
        if walk.bits_left != 0 {
            return Err(Error::FailedLookup);
        }
        Ok(walk.slot)
    }

    /// The occupied slot `cptr` names in `thread`'s CSpace (a walk of all
    /// 64 bits that may stop early at a non-CNode capability).
    pub(crate) fn lookup_cap(&self, thread: u64, cptr: u64) -> Result<u64, Error> {
        // The TCB's slot 0 (at the TCB's own address) holds the root.
        let root = self.cap(thread);
        let walk = self.walk(root, cptr, 64)?;
        if self.cap(walk.slot).is_none() {
            return Err(Error::FailedLookup);
        }
        Ok(walk.slot)
    }

    /// An invocation of the capability in slot `invoked`, `cap`: its
    /// label, argument words and extra capabilities (the slots they
    /// resolved to, `None` where they did not).
    fn invoke(
        &mut self,
        invoked: u64,
        cap: Cap,
        label: u64,
        words: &[u64],
        extra: &[Option<u64>],
    ) -> Result<Option<u64>, Error> {
        let message = Message { words, extra };
        match (cap, label) {
            (Cap::CNode { .. }, label::CNODE_REVOKE | label::CNODE_DELETE) => {
                self.revoke_or_delete(cap, label, &message)
            }
            (Cap::CNode { .. }, label::CNODE_COPY | label::CNODE_MINT | label::CNODE_MOVE | label::CNODE_MUTATE) => {
                self.transfer(cap, label, &message)
            }
            (Cap::Untyped { .. }, label::UNTYPED_RETYPE) => self.retype(invoked, &message),
            (Cap::Tcb { base }, vcpu::label::BIND_NOTIFICATION | vcpu::label::UNBIND_NOTIFICATION) => {
                self.bind_notification(base, label, extra)
            }
            (Cap::Tcb { base }, _) => self.invoke_tcb(base, label, words, extra),
            (Cap::VCpu { base }, _) => return self.invoke_vcpu(base, label, words, extra),
            (Cap::SchedControl, _) => self.configure(label, words, extra),
            (Cap::IrqControl, _) => self.irq_get(invoked, label, words, extra),
            (Cap::IrqHandler { line }, _) => self.invoke_irq_handler(line, label, extra),
            (Cap::Frame { .. } | Cap::PageTable { .. } | Cap::AsidControl | Cap::AsidPool { .. }, _) => {
                return self.invoke_vspace(invoked, cap, label, &message);
            }
            _ => Err(Error::IllegalOperation),
        }
        .map(|()| None)
    }

    /// CNode::Revoke and CNode::Delete: `index, depth`.
    fn revoke_or_delete(&mut self, node: Cap, label: u64, message: &Message<'_>) -> Result<(), Error> {
        let slot = self.lookup_slot(Some(node), message.word(0)?, message.depth(1)?)?;
        self.work = Some(WORK_PER_CALL);
        if label == label::CNODE_REVOKE {
            self.revoke(slot);
        } else if self.slots.contains_key(&slot) {
            self.delete(slot);
        }
        self.work = None;
        Ok(())
    }

    /// CNode::Copy, Mint, Move and Mutate: `dest_index, dest_depth,
    /// src_index, src_depth`, then the rights (Copy, Mint) and the data
    /// word (Mint, Mutate); the source is named relative to extra
    /// capability 0.
    fn transfer(&mut self, node: Cap, label: u64, message: &Message<'_>) -> Result<(), Error> {
        let destination = self.lookup_slot(Some(node), message.word(0)?, message.depth(1)?)?;
        let (source_index, source_depth) = (message.word(2)?, message.depth(3)?);
        let rights = if matches!(label, label::CNODE_COPY | label::CNODE_MINT) { Some(message.word(4)?) } else { None };
        let data = match label {
            label::CNODE_MINT => Some(message.word(5)?),
            label::CNODE_MUTATE => Some(message.word(4)?),
            _ => None,
        };
        let source_root = message.extra_cap(self, 0)?;
        if !matches!(source_root, Cap::CNode { .. }) {
            return Err(Error::InvalidCapability);
        }
        let source = self.lookup_slot(Some(source_root), source_index, source_depth)?;
        if self.slots.contains_key(&destination) {
            return Err(Error::DeleteFirst);
        }
        let source_entry = *self.slots.get(&source).ok_or(Error::FailedLookup)?;
        if let Some(rights) = rights {
            // Copy and Mint: a new capability, derived from the source.
            let mut cap = copy_of(&source_entry.cap)?;
            cap = with_rights(&cap, rights);
            if let Some(data) = data {
                cap = with_data(&cap, data)?;
            }
            self.insert_copy(source, destination, cap);
        } else {
            // Move and Mutate: the same capability, in another slot.
            let cap = match data {
                Some(_) if source_entry.cap.badge().is_some() => return Err(Error::IllegalOperation),
                Some(data) => with_data(&source_entry.cap, data)?,
                None => source_entry.cap,
            };
            self.move_cap(source, destination, cap);
        }
        Ok(())
    }

    /// Untyped::Retype: `type, size_bits, node_index, node_depth,
    /// node_offset, count`; the destination CNode is named relative to
    /// extra capability 0 (depth 0: that capability's CNode itself).
    fn retype(&mut self, untyped: u64, message: &Message<'_>) -> Result<(), Error> {
        let Cap::Untyped { base, size_bits, watermark } = self.slots[&untyped].cap else {
            return Err(Error::InvalidCapability);
        };
        let kind = match message.word(0)? {
            0 => Kind::Untyped,
            1 => Kind::CNode,
            2 => Kind::Tcb,
            3 => Kind::SchedContext,
            4 => Kind::Endpoint,
            5 => Kind::Notification,
            6 => Kind::Reply,
            7..=9 => Kind::Frame,
            10 => Kind::PageTable,
            11 => Kind::PageDirectory,
            12 => Kind::PageDirectoryPointerTable,
            13 => Kind::Pml4,
            14 => Kind::VCpu,
            15 => Kind::GuestSpace,
            _ => return Err(Error::InvalidArgument),
        };
        let requested = message.word(1)?;
        let object_bits = match kind {
            Kind::Untyped if UNTYPED_BITS.contains(&requested) => requested,
            Kind::CNode if CNODE_RADIX.contains(&requested) => requested + 6,
            Kind::SchedContext if SCHED_CONTEXT_BITS.contains(&requested) => requested,
            Kind::Endpoint | Kind::Notification => u64::from(SMALL_OBJECT_BITS),
            Kind::Tcb => u64::from(TCB_BITS),
            Kind::Reply => u64::from(REPLY_BITS),
            Kind::VCpu => u64::from(vcpu::VCPU_BITS),
            Kind::Frame => u64::from(vspace::FRAME_BITS[usize::try_from(message.word(0)? - 7).unwrap_or(0)]),
            kind if vspace::is_table(kind) => u64::from(vspace::TABLE_BITS),
            _ => return Err(Error::RangeError),
        };
        let (node_index, node_depth) = (message.word(2)?, message.word(3)?);
        if node_depth > 64 {
            return Err(Error::RangeError);
        }
        let (offset, count) = (message.word(4)?, message.word(5)?);
        let root = message.extra_cap(self, 0)?;
        if object_bits > u64::from(size_bits) {
            return Err(Error::RangeError);
        }
        if count == 0 || count > MAX_RETYPE_COUNT {
            return Err(Error::RangeError);
        }
        let node = if node_depth == 0 {
            Some(root)
        } else {
            let slot = self.lookup_slot(Some(root), node_index, node_depth)?;
            self.cap(slot)
        };
        let Some(Cap::CNode { base: node_base, radix, .. }) = node else {
            return Err(Error::InvalidCapability);
        };
        let slot_count = 1_u64 << radix;
        if offset >= slot_count || count > slot_count - offset {
            return Err(Error::RangeError);
        }
        let destinations: Vec<u64> = (offset..offset + count).map(|index| node_base + index * SLOT_BYTES).collect();
        if destinations.iter().any(|slot| self.slots.contains_key(slot)) {
            return Err(Error::DeleteFirst);
        }
        // Objects follow the watermark, aligned to their size; an untyped
        // with nothing derived from it left starts again from its base.
        let used = if self.children(untyped).is_empty() { 0 } else { u128::from(watermark) };
        let size = 1_u128 << object_bits;
        let start = used.div_ceil(size) * size;
        let end = start + u128::from(count) * size;
        if end > 1_u128 << size_bits {
            return Err(Error::NotEnoughMemory);
        }
        let object_bits = u8::try_from(object_bits).map_err(|_| Error::RangeError)?;
        for (number, destination) in (0_u128..).zip(destinations) {
            let object_base = u64::try_from(u128::from(base) + start + number * size).map_err(|_| Error::RangeError)?;
            let cap = match kind {
                Kind::Untyped => Cap::Untyped { base: object_base, size_bits: object_bits, watermark: 0 },
                Kind::CNode => Cap::CNode { base: object_base, radix: object_bits - 6, guard: 0, guard_bits: 0 },
                Kind::Endpoint => Cap::Endpoint { base: object_base, badge: 0, rights: ALL_RIGHTS },
                Kind::Notification => Cap::Notification { base: object_base, badge: 0, rights: ALL_RIGHTS },
                Kind::Tcb => Cap::Tcb { base: object_base },
                Kind::Reply => Cap::Reply { base: object_base },
                Kind::SchedContext => Cap::SchedContext { base: object_base, size_bits: object_bits },
                Kind::VCpu => Cap::VCpu { base: object_base },
                Kind::Frame => {
                    Cap::Frame { base: object_base, size_bits: object_bits, rights: ALL_RIGHTS, mapping: None }
                }
                Kind::PageTable
                | Kind::PageDirectory
                | Kind::PageDirectoryPointerTable
                | Kind::Pml4
                | Kind::GuestSpace => Cap::PageTable { base: object_base, kind, mapping: None },
                Kind::SchedControl | Kind::IrqControl | Kind::IrqHandler | Kind::AsidPool | Kind::AsidControl => {
                    unreachable!("not a retype type")
                }
            };
            // A new object in its fresh state (a thread never started).
            self.create_state(kind, object_base);
            if kind != Kind::Untyped {
                self.objects.insert(cap.object(), Object { untyped: Some(untyped) });
            }
            self.slots.insert(destination, Entry { cap, parent: Some(untyped), original: true });
            // Each new object's capability comes first: the last made is
            // the first a revoke deletes.
            self.adopt(untyped, destination, None);
        }
        let watermark = u64::try_from(end).map_err(|_| Error::RangeError)?;
        self.slots.get_mut(&untyped).expect("the untyped").cap = Cap::Untyped { base, size_bits, watermark };
        Ok(())
    }

    /// Puts `cap`, a copy of the capability in `source`, into the empty
    /// slot `destination`. Its parent is the source if the source may
    /// parent it, otherwise the source's parent (seL4's `cap_insert`).
    pub(crate) fn insert_copy(&mut self, source: u64, destination: u64, cap: Cap) {
        let source_entry = self.slots[&source];
        let original = match (cap, source_entry.cap) {
            (Cap::Endpoint { .. } | Cap::Notification { .. }, source_cap) => cap.badge() != source_cap.badge(),
            (Cap::Untyped { .. }, _) => true,
            _ => false,
        };
        if may_parent(&source_entry, &cap, original) {
            self.adopt(source, destination, None);
            self.slots.insert(destination, Entry { cap, parent: Some(source), original });
        } else {
            // The source's sibling, right after it.
            if let Some(parent) = source_entry.parent {
                self.adopt(parent, destination, Some(source));
            }
            self.slots.insert(destination, Entry { cap, parent: source_entry.parent, original });
        }
    }

    /// Moves the capability in `source` to the empty slot `destination` as
    /// `cap`; it keeps its parent and its children.
    fn move_cap(&mut self, source: u64, destination: u64, cap: Cap) {
        let entry = self.slots.remove(&source).expect("the source");
        self.slots.insert(destination, Entry { cap, ..entry });
        if let Some(siblings) = entry.parent.and_then(|parent| self.child_order.get_mut(&parent)) {
            siblings.iter_mut().filter(|slot| **slot == source).for_each(|slot| *slot = destination);
        }
        if let Some(children) = self.child_order.remove(&source) {
            self.child_order.insert(destination, children);
        }
        for child in self.slots.values_mut() {
            if child.parent == Some(source) {
                child.parent = Some(destination);
            }
        }
        for object in self.objects.values_mut() {
            if object.untyped == Some(source) {
                object.untyped = Some(destination);
            }
        }
    }

    /// The nearest untyped capability above the capability in `slot`.
    #[must_use]
    pub fn untyped_above(&self, slot: u64) -> Option<u64> {
        let mut parent = self.slots.get(&slot)?.parent;
        // A bound on the walk: a broken (cyclic) tree must not hang it.
        for _ in 0..self.slots.len() {
            let entry = self.slots.get(&parent?)?;
            let at = parent?;
            if matches!(entry.cap, Cap::Untyped { .. }) {
                return Some(at);
            }
            parent = entry.parent;
        }
        None
    }

    /// Whether the capability in `slot` is the only one to its object (an
    /// untyped capability always is).
    pub(crate) fn is_final(&self, slot: u64) -> bool {
        let object = self.slots[&slot].cap.object();
        object.kind == Kind::Untyped
            || !self.slots.iter().any(|(at, entry)| *at != slot && entry.cap.object() == object)
    }

    /// Deletes the capability in `slot`. When it is the last one to a CNode
    /// or a TCB, the object's own slots are emptied first (lowest first),
    /// and a TCB's thread stops; the last capability gone, the object is
    /// gone. Children of a deleted capability become its parent's.
    pub fn delete(&mut self, slot: u64) {
        self.delete_within(slot, &mut BTreeSet::new());
    }

    fn delete_within(&mut self, slot: u64, in_progress: &mut BTreeSet<u64>) {
        let Some(entry) = self.slots.get(&slot).copied() else { return };
        in_progress.insert(slot);
        let outer = self.untyped_above(slot);
        let object = entry.cap.object();
        let last = self.is_final(slot);
        if last {
            // A thread stops before its slots are emptied.
            if object.kind == Kind::Tcb {
                self.finalise(entry.cap);
            }
            for inner in object.slots() {
                if !in_progress.contains(&inner) {
                    self.delete_within(inner, in_progress);
                }
                if self.preempted {
                    in_progress.remove(&slot);
                    return;
                }
            }
        }
        // Each capability deleted costs one unit of the call's work.
        if let Some(work) = &mut self.work {
            if *work == 0 {
                self.preempted = true;
                in_progress.remove(&slot);
                return;
            }
            *work -= 1;
        }
        // Every frame capability takes its own mapping with it.
        if matches!(entry.cap, Cap::Frame { .. }) {
            self.unmap(&entry.cap);
        }
        if last {
            self.finalise(entry.cap);
        }
        self.slots.remove(&slot);
        for child in self.slots.values_mut() {
            if child.parent == Some(slot) {
                child.parent = entry.parent;
            }
        }
        // Its children take its place in its parent's list.
        let orphans = self.child_order.remove(&slot).unwrap_or_default();
        if let Some(parent) = entry.parent
            && let Some(siblings) = self.child_order.get_mut(&parent)
            && let Some(at) = siblings.iter().position(|sibling| *sibling == slot)
        {
            siblings.splice(at..=at, orphans);
            if siblings.is_empty() {
                self.child_order.remove(&parent);
            }
        }
        if last {
            self.objects.remove(&object);
            self.forget_state(object.kind, object.base);
        }
        // Objects carved from a deleted untyped now belong to the untyped
        // it came from.
        for other in self.objects.values_mut() {
            if other.untyped == Some(slot) {
                other.untyped = outer;
            }
        }
        in_progress.remove(&slot);
    }

    /// Deletes every capability derived from the one in `slot`, children
    /// first by slot address, until none is left (or the capability itself
    /// went, deleted with a CNode it was in).
    pub fn revoke(&mut self, slot: u64) {
        while self.slots.contains_key(&slot) && !self.preempted {
            let Some(child) = self.children(slot).first().copied() else { break };
            self.delete(child);
        }
    }
}

/// A capability copy: untyped capabilities cannot be copied (two
/// watermarks over one memory range could hand it out twice), nor can
/// reply capabilities (each names one pending call).
///
/// A copy of a frame capability starts unmapped; an unmapped paging
/// structure (or an unassigned PML4) cannot be copied, as two unmapped
/// copies could link one structure into two places.
pub(crate) fn copy_of(cap: &Cap) -> Result<Cap, Error> {
    match *cap {
        Cap::Untyped { .. }
        | Cap::Reply { .. }
        | Cap::SchedControl
        | Cap::IrqControl
        | Cap::AsidControl
        | Cap::PageTable { mapping: None, .. } => Err(Error::IllegalOperation),
        Cap::Frame { base, size_bits, rights, .. } => Ok(Cap::Frame { base, size_bits, rights, mapping: None }),
        other => Ok(other),
    }
}

/// `cap` with its rights ANDed with the low four bits of `mask`.
fn with_rights(cap: &Cap, mask: u64) -> Cap {
    let mask = u8::try_from(mask & u64::from(ALL_RIGHTS)).unwrap_or(0);
    match *cap {
        Cap::Endpoint { base, badge, rights } => Cap::Endpoint { base, badge, rights: rights & mask },
        Cap::Notification { base, badge, rights } => Cap::Notification { base, badge, rights: rights & mask },
        Cap::Frame { base, size_bits, rights, mapping } => {
            Cap::Frame { base, size_bits, rights: rights & mask, mapping }
        }
        other => other,
    }
}

/// `cap` with a Mint or Mutate data word: a badge (set once) for endpoints
/// and notifications, a guard for CNodes (bits 0..6 its width, the rest its
/// value), nothing for the rest.
fn with_data(cap: &Cap, data: u64) -> Result<Cap, Error> {
    match *cap {
        Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } if badge != 0 && badge != data => {
            Err(Error::IllegalOperation)
        }
        Cap::Endpoint { base, rights, .. } => Ok(Cap::Endpoint { base, badge: data, rights }),
        Cap::Notification { base, rights, .. } => Ok(Cap::Notification { base, badge: data, rights }),
        Cap::CNode { base, radix, .. } => {
            let guard_bits = data % 64;
            let guard = data / 64;
            if guard_bits + u64::from(radix) > 64 || u128::from(guard) >= 1_u128 << guard_bits {
                return Err(Error::RangeError);
            }
            let guard_bits = u8::try_from(guard_bits).map_err(|_| Error::RangeError)?;
            Ok(Cap::CNode { base, radix, guard, guard_bits })
        }
        other => Ok(other),
    }
}

/// Whether the capability `entry` may be the parent of `cap` (seL4's
/// `should_be_parent_of`): it is original, names `cap`'s object (or, as
/// an untyped, memory around it), and if it carries a badge, `cap` carries
/// the same one without being newly badged itself.
fn may_parent(entry: &Entry, cap: &Cap, cap_is_original: bool) -> bool {
    let same_region = match entry.cap {
        Cap::Untyped { .. } => entry.cap.object().contains(&cap.object()),
        parent => parent.object() == cap.object(),
    };
    let badge_ok = match entry.cap.badge() {
        Some(badge) if badge != 0 => cap.badge() == Some(badge) && !cap_is_original,
        _ => true,
    };
    entry.original && same_region && badge_ok
}

/// An invocation's arguments.
pub(crate) struct Message<'a> {
    words: &'a [u64],
    extra: &'a [Option<u64>],
}

impl Message<'_> {
    fn word(&self, index: usize) -> Result<u64, Error> {
        self.words.get(index).copied().ok_or(Error::TruncatedMessage)
    }

    /// A slot depth: 1 to 64 bits.
    fn depth(&self, index: usize) -> Result<u64, Error> {
        let depth = self.word(index)?;
        if (1..=64).contains(&depth) { Ok(depth) } else { Err(Error::RangeError) }
    }

    /// Extra capability `index`: missing from the message, or not resolved.
    fn extra_cap(&self, state: &State, index: usize) -> Result<Cap, Error> {
        match self.extra.get(index) {
            None => Err(Error::TruncatedMessage),
            Some(None) => Err(Error::InvalidCapability),
            Some(Some(slot)) => state.cap(*slot).ok_or(Error::InvalidCapability),
        }
    }
}

/// The state the kernel boots the spec's scenario into: a root thread
/// whose CSpace is a `2^root_radix`-slot CNode behind a guard that makes
/// it a whole 64-bit space, holding itself (slot 0), an untyped (slot 1),
/// the root thread's TCB (slot 2) and SchedControl (slot
/// `sched_control`). The root thread runs at priority 255, which is also
/// the highest priority it may give.
#[derive(Clone, Copy, Debug)]
pub struct Boot {
    /// The root CNode's slots.
    pub root_cnode: u64,
    /// log2 of its slot count.
    pub root_radix: u8,
    /// The root thread's TCB.
    pub root_tcb: u64,
    /// The untyped's memory.
    pub untyped_base: u64,
    /// log2 of its size.
    pub untyped_bits: u8,
    /// The root CNode slot of the SchedControl capability.
    pub sched_control: u64,
    /// The root CNode slot of the IrqControl capability.
    pub irq_control: u64,
    /// The root CNode slot of the AsidControl capability.
    pub asid_control: u64,
    /// The machine has a virtualisation backend: frames and tables map
    /// into GuestSpaces.
    pub guest_backend: bool,
    /// The root CNode slot of a second untyped, for frames and paging
    /// structures.
    pub paging_untyped: u64,
    /// Its memory.
    pub paging_untyped_base: u64,
    /// log2 of its size.
    pub paging_untyped_bits: u8,
}

impl Boot {
    /// The root CNode's capability.
    #[must_use]
    pub const fn root_cnode_cap(&self) -> Cap {
        Cap::CNode { base: self.root_cnode, radix: self.root_radix, guard: 0, guard_bits: 64 - self.root_radix }
    }

    /// The objects the kernel creates at boot (outside any untyped).
    #[must_use]
    pub fn boot_objects(&self) -> [ObjectId; 5] {
        [
            self.root_cnode_cap().object(),
            Cap::Tcb { base: self.root_tcb }.object(),
            SCHED_CONTROL_ID,
            IRQ_CONTROL_ID,
            ASID_CONTROL_ID,
        ]
    }

    /// The untyped memory handed out at boot: (base, log2 size).
    #[must_use]
    pub const fn untyped_ranges(&self) -> [(u64, u8); 2] {
        [(self.untyped_base, self.untyped_bits), (self.paging_untyped_base, self.paging_untyped_bits)]
    }

    /// The abstract state right after boot.
    #[must_use]
    pub fn state(&self) -> State {
        let mut state = State::default();
        let root = self.root_cnode_cap();
        let untyped = Cap::Untyped { base: self.untyped_base, size_bits: self.untyped_bits, watermark: 0 };
        let paging = Cap::Untyped { base: self.paging_untyped_base, size_bits: self.paging_untyped_bits, watermark: 0 };
        let tcb = Cap::Tcb { base: self.root_tcb };
        let controls = [
            (self.sched_control, Cap::SchedControl),
            (self.irq_control, Cap::IrqControl),
            (self.asid_control, Cap::AsidControl),
            (self.paging_untyped, paging),
        ];
        for (index, cap) in [(0, root), (1, untyped), (2, tcb)].into_iter().chain(controls) {
            if !matches!(cap, Cap::Untyped { .. }) {
                state.objects.insert(cap.object(), Object { untyped: None });
            }
            state.slots.insert(self.root_cnode + index * SLOT_BYTES, Entry { cap, parent: None, original: true });
        }
        // The thread's CSpace root: a copy of the root CNode's capability.
        state.slots.insert(self.root_tcb, Entry { cap: root, parent: Some(self.root_cnode), original: false });
        state.child_order.insert(self.root_cnode, vec![self.root_tcb]);
        let mut thread = Thread::fresh();
        (thread.priority, thread.max_priority, thread.state) = (255, 255, ThreadState::Runnable);
        state.threads.insert(self.root_tcb, thread);
        state.sched.current = Some(self.root_tcb);
        state.irqs = vec![IrqLine::FREE; usize::from(threads::IRQ_LINES)];
        state.guest_backend = self.guest_backend;
        state
    }
}
