//! Address spaces in the spec: paging structures as objects whose entries
//! are either links to the structure one level down or page mappings,
//! the ASID pools that name each VSpace, and the invocations that change
//! them (PageTable::Map and Unmap, Frame::Map, Unmap and GetAddress,
//! AsidControl::MakePool, AsidPool::Assign).
//!
//! The model is seL4's abstract one: an entry is a typed value (a table,
//! or a page with its rights and memory type), never a bit pattern; a
//! VSpace is reached through its ASID; every frame or table capability
//! records where it mapped its object, and unmapping (by invocation or by
//! deleting the capability) clears only an entry that still holds that
//! object at that place. Only the lower half of a VSpace exists here: the
//! upper half is the kernel's, and no invocation reaches it.

use std::collections::BTreeMap;

use super::{Cap, Error, Kind, Message, SLOT_BYTES, State};

/// Invocation labels of paging, frame and ASID capabilities.
pub use kernel_core::vspace::label as vspace_label;

/// The first virtual address above the user half.
pub const USER_TOP: u64 = 1 << 47;
/// The first guest-physical address a GuestSpace cannot map.
pub const GUEST_TOP: u64 = 1 << 48;
/// ASIDs per pool.
pub const ASIDS_PER_POOL: u16 = 512;
/// ASID pools the kernel can track.
pub const ASID_POOLS: u16 = 64;
/// log2 of a paging structure's and an ASID pool's size.
pub const TABLE_BITS: u8 = 12;
/// log2 of the frame sizes: 4 KiB, 2 MiB, 1 GiB.
pub const FRAME_BITS: [u8; 3] = [12, 21, 30];
/// The READ and WRITE rights (as for endpoints).
const READ: u8 = 0b01;
const WRITE: u8 = 0b10;
/// `Frame::Map` attribute bits: bit 0 executable, bits 1..=2 memory type.
pub const ATTRIBUTES: u64 = 0b111;

/// Where a frame or a paging structure was mapped: the VSpace's ASID and
/// the first virtual address it covers (for a PML4, its ASID and 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    /// The VSpace's ASID.
    pub asid: u16,
    /// The first virtual address covered.
    pub vaddr: u64,
}

/// One entry of a paging structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    /// A link to the structure one level down, at this address.
    Table(u64),
    /// A page: the frame at `base`, `2^size_bits` bytes.
    Page {
        /// The frame's first byte.
        base: u64,
        /// log2 of its size (12, 21, 30: the level the entry is at).
        size_bits: u8,
        /// Writable from user mode.
        write: bool,
        /// Executable.
        execute: bool,
        /// The memory type (0 write-back, 1 write-through, 2 UC-, 3 UC).
        memory_type: u8,
    },
}

/// A live paging structure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The present entries, by index (0..512).
    pub entries: BTreeMap<u16, Pte>,
}

/// A live ASID pool in the kernel's table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsidPool {
    /// The pool's object.
    pub base: u64,
    /// The VSpace (PML4 address) each assigned ASID names.
    pub assigned: BTreeMap<u16, u64>,
}

/// Whether `kind` is one of the four paging-structure kinds.
#[must_use]
pub const fn is_table(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::PageTable | Kind::PageDirectory | Kind::PageDirectoryPointerTable | Kind::Pml4 | Kind::GuestSpace
    )
}

/// Whether `kind` is a root: a VSpace's PML4 or a GuestSpace.
#[must_use]
pub const fn is_root(kind: Kind) -> bool {
    matches!(kind, Kind::Pml4 | Kind::GuestSpace)
}

/// log2 of the bytes one entry of a structure of `kind` covers.
#[must_use]
pub const fn entry_shift(kind: Kind) -> u32 {
    match kind {
        Kind::Pml4 | Kind::GuestSpace => 39,
        Kind::PageDirectoryPointerTable => 30,
        Kind::PageDirectory => 21,
        _ => 12,
    }
}

/// The structure kind one level below `kind` (`None` below a page table).
#[must_use]
pub const fn below(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::Pml4 | Kind::GuestSpace => Some(Kind::PageDirectoryPointerTable),
        Kind::PageDirectoryPointerTable => Some(Kind::PageDirectory),
        Kind::PageDirectory => Some(Kind::PageTable),
        _ => None,
    }
}

/// The structure kind whose entries link a structure of `kind` (`None`
/// for a root; a PDPT's is a PML4's level, whichever root it is).
#[must_use]
pub const fn parent_of(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::PageDirectoryPointerTable => Some(Kind::Pml4),
        Kind::PageDirectory => Some(Kind::PageDirectoryPointerTable),
        Kind::PageTable => Some(Kind::PageDirectory),
        _ => None,
    }
}

/// The structure kind whose entry maps a frame of `2^size_bits` bytes.
#[must_use]
pub const fn leaf_kind(size_bits: u8) -> Kind {
    match size_bits {
        30 => Kind::PageDirectoryPointerTable,
        21 => Kind::PageDirectory,
        _ => Kind::PageTable,
    }
}

/// The index of `vaddr` in a structure of `kind`.
#[must_use]
pub fn index(vaddr: u64, kind: Kind) -> u16 {
    u16::try_from((vaddr >> entry_shift(kind)) & 0x1ff).unwrap_or(0)
}

impl Pte {
    /// The object the entry points at.
    #[must_use]
    pub const fn target(&self) -> u64 {
        match *self {
            Pte::Table(base) | Pte::Page { base, .. } => base,
        }
    }
}

impl State {
    /// The PML4 that `asid` names, if any.
    #[must_use]
    pub fn vspace_of(&self, asid: u16) -> Option<u64> {
        self.asid_pools.get(&(asid / ASIDS_PER_POOL))?.assigned.get(&asid).copied()
    }

    /// The entry at `index` of the live structure at `table`.
    #[must_use]
    pub fn entry(&self, table: u64, index: u16) -> Option<Pte> {
        self.tables.get(&table)?.entries.get(&index).copied()
    }

    /// The structure of `kind` covering `vaddr` in the VSpace rooted at
    /// `pml4`, following table links down from the root.
    fn table_at(&self, pml4: u64, vaddr: u64, kind: Kind) -> Result<u64, Error> {
        let (mut table, mut at) = (pml4, Kind::Pml4);
        while at != kind {
            let Some(Pte::Table(next)) = self.entry(table, index(vaddr, at)) else {
                return Err(Error::FailedLookup);
            };
            table = next;
            at = below(at).ok_or(Error::FailedLookup)?;
        }
        Ok(table)
    }

    /// Extra capability 0 as a space to map into: a PML4 or a GuestSpace
    /// whose ASID still names it; (its root, its ASID, the first address
    /// past its reach). A GuestSpace needs the machine's backend.
    fn vspace_argument(&self, message: &Message<'_>) -> Result<(u64, u16, u64), Error> {
        match message.extra_cap(self, 0)? {
            Cap::PageTable { base, kind, mapping: Some(Mapping { asid, .. }) }
                if is_root(kind) && self.vspace_of(asid) == Some(base) =>
            {
                if kind == Kind::Pml4 {
                    Ok((base, asid, USER_TOP))
                } else if self.guest_backend {
                    Ok((base, asid, GUEST_TOP))
                } else {
                    Err(Error::IllegalOperation)
                }
            }
            _ => Err(Error::InvalidCapability),
        }
    }

    /// The kind of the live root at `base` (a PML4 unless a GuestSpace
    /// lies there).
    fn root_kind(&self, base: u64) -> Kind {
        let guest = super::ObjectId { base, kind: Kind::GuestSpace, size_bits: TABLE_BITS };
        if self.objects.contains_key(&guest) { Kind::GuestSpace } else { Kind::Pml4 }
    }

    /// Whether `cap` is a VSpace a thread may run in: a PML4 whose ASID
    /// still names it.
    #[must_use]
    pub fn is_live_vspace(&self, cap: &Cap) -> bool {
        matches!(*cap, Cap::PageTable { base, kind: Kind::Pml4, mapping: Some(Mapping { asid, .. }) }
            if self.vspace_of(asid) == Some(base))
    }

    /// The capability in `slot` with its mapping record replaced.
    fn record(&mut self, slot: u64, mapped: Option<Mapping>) {
        if let Some(entry) = self.slots.get_mut(&slot)
            && let Cap::Frame { mapping, .. } | Cap::PageTable { mapping, .. } = &mut entry.cap
        {
            *mapping = mapped;
        }
    }

    /// An invocation of a PageTable, Frame, AsidControl or AsidPool
    /// capability, `cap` in slot `invoked`: the reply's word, if it has one.
    pub(super) fn invoke_vspace(
        &mut self,
        invoked: u64,
        cap: Cap,
        label: u64,
        message: &Message<'_>,
    ) -> Result<Option<u64>, Error> {
        match (cap, label) {
            (Cap::PageTable { base, kind, mapping }, vspace_label::PAGE_TABLE_MAP) => {
                let Some(parent) = parent_of(kind) else { return Err(Error::IllegalOperation) };
                if mapping.is_some() {
                    return Err(Error::IllegalOperation);
                }
                let vaddr = message.word(0)?;
                let (pml4, asid, top) = self.vspace_argument(message)?;
                // The entry covering `vaddr`, from its first address.
                let shift = entry_shift(parent);
                let vaddr = vaddr & !((1 << shift) - 1);
                if vaddr.checked_add(1 << shift).is_none_or(|end| end > top) {
                    return Err(Error::InvalidArgument);
                }
                let table = self.table_at(pml4, vaddr, parent)?;
                if self.entry(table, index(vaddr, parent)).is_some() {
                    return Err(Error::DeleteFirst);
                }
                self.tables
                    .get_mut(&table)
                    .expect("a live table")
                    .entries
                    .insert(index(vaddr, parent), Pte::Table(base));
                self.record(invoked, Some(Mapping { asid, vaddr }));
                Ok(None)
            }
            (Cap::PageTable { base, kind, .. }, vspace_label::PAGE_TABLE_UNMAP) => {
                if is_root(kind) {
                    return Err(Error::IllegalOperation);
                }
                if !self.is_final(invoked) {
                    return Err(Error::RevokeFirst);
                }
                self.unmap(&cap);
                self.record(invoked, None);
                self.tables.get_mut(&base).expect("a live table").entries.clear();
                Ok(None)
            }
            (Cap::Frame { base, size_bits, rights, mapping }, vspace_label::FRAME_MAP) => {
                let (vaddr, wanted, attributes) = (message.word(0)?, message.word(1)?, message.word(2)?);
                let (pml4, asid, top) = self.vspace_argument(message)?;
                if mapping.is_some() {
                    return Err(Error::IllegalOperation);
                }
                let granted = rights & u8::try_from(wanted & 0xf).unwrap_or(0);
                if granted & READ == 0 || attributes & !ATTRIBUTES != 0 {
                    return Err(Error::InvalidArgument);
                }
                if vaddr % (1 << size_bits) != 0 {
                    return Err(Error::AlignmentError);
                }
                if vaddr.checked_add(1 << size_bits).is_none_or(|end| end > top) {
                    return Err(Error::InvalidArgument);
                }
                let level = leaf_kind(size_bits);
                let table = self.table_at(pml4, vaddr, level)?;
                if self.entry(table, index(vaddr, level)).is_some() {
                    return Err(Error::DeleteFirst);
                }
                let page = Pte::Page {
                    base,
                    size_bits,
                    write: granted & WRITE != 0,
                    execute: attributes & 1 != 0,
                    memory_type: u8::try_from((attributes >> 1) & 0b11).unwrap_or(0),
                };
                self.tables.get_mut(&table).expect("a live table").entries.insert(index(vaddr, level), page);
                self.record(invoked, Some(Mapping { asid, vaddr }));
                Ok(None)
            }
            (Cap::Frame { .. }, vspace_label::FRAME_UNMAP) => {
                self.unmap(&cap);
                self.record(invoked, None);
                Ok(None)
            }
            (Cap::Frame { base, .. }, vspace_label::FRAME_GET_ADDRESS) => Ok(Some(base)),
            (Cap::AsidControl, vspace_label::ASID_CONTROL_MAKE_POOL) => self.make_pool(message).map(|()| None),
            (Cap::AsidPool { base, first }, vspace_label::ASID_POOL_ASSIGN) => {
                let vspace = match message.extra.first() {
                    None => return Err(Error::TruncatedMessage),
                    Some(None) => return Err(Error::InvalidCapability),
                    Some(Some(slot)) => *slot,
                };
                let Some(Cap::PageTable { base: pml4, kind, mapping: None }) = self.cap(vspace) else {
                    return Err(Error::InvalidCapability);
                };
                if !is_root(kind) {
                    return Err(Error::InvalidCapability);
                }
                let number = first / ASIDS_PER_POOL;
                let Some(pool) = self.asid_pools.get_mut(&number).filter(|pool| pool.base == base) else {
                    return Err(Error::InvalidCapability);
                };
                // The lowest free ASID of the pool; ASID 0 is never given.
                let asid = (first..first + ASIDS_PER_POOL)
                    .find(|asid| *asid != 0 && !pool.assigned.contains_key(asid))
                    .ok_or(Error::NotEnoughMemory)?;
                pool.assigned.insert(asid, pml4);
                self.record(vspace, Some(Mapping { asid, vaddr: 0 }));
                Ok(None)
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// AsidControl::MakePool: `dest_index, dest_depth`; extra capabilities
    /// a 4 KiB untyped with nothing derived from it and the destination's
    /// CNode. The untyped becomes full; the pool takes the lowest free
    /// number in the ASID table.
    fn make_pool(&mut self, message: &Message<'_>) -> Result<(), Error> {
        let (index, depth) = (message.word(0)?, message.depth(1)?);
        let untyped = match message.extra.first() {
            None => return Err(Error::TruncatedMessage),
            Some(None) => return Err(Error::InvalidCapability),
            Some(Some(slot)) => *slot,
        };
        let root = message.extra_cap(self, 1)?;
        let Some(Cap::Untyped { base, size_bits: 12, .. }) = self.cap(untyped) else {
            return Err(Error::InvalidCapability);
        };
        if !self.children(untyped).is_empty() {
            return Err(Error::RevokeFirst);
        }
        if !matches!(root, Cap::CNode { .. }) {
            return Err(Error::InvalidCapability);
        }
        let destination = self.lookup_slot(Some(root), index, depth)?;
        if self.slots.contains_key(&destination) {
            return Err(Error::DeleteFirst);
        }
        let number =
            (0..ASID_POOLS).find(|number| !self.asid_pools.contains_key(number)).ok_or(Error::NotEnoughMemory)?;
        self.slots.get_mut(&untyped).expect("the untyped").cap =
            Cap::Untyped { base, size_bits: 12, watermark: 1 << 12 };
        let cap = Cap::AsidPool { base, first: number * ASIDS_PER_POOL };
        self.objects.insert(cap.object(), super::Object { untyped: Some(untyped) });
        self.slots.insert(destination, super::Entry { cap, parent: Some(untyped), original: true });
        self.adopt(untyped, destination, None);
        self.asid_pools.insert(number, AsidPool { base, assigned: BTreeMap::new() });
        Ok(())
    }

    /// The entry of a structure of `kind` for `vaddr` in the VSpace `asid`
    /// names, if it is there and points at `object`: (table, index).
    fn find_entry(&self, mapping: Mapping, kind: Kind, object: u64) -> Option<(u64, u16)> {
        let pml4 = self.vspace_of(mapping.asid)?;
        let table = self.table_at(pml4, mapping.vaddr, kind).ok()?;
        let at = index(mapping.vaddr, kind);
        (self.entry(table, at)?.target() == object).then_some((table, at))
    }

    /// Undoes what `cap` records, where it still holds: a frame's or a
    /// structure's entry goes if it is still where the capability says; a
    /// PML4 gives its ASID back; an ASID pool leaves the ASID table with
    /// every VSpace in it.
    pub(super) fn unmap(&mut self, cap: &Cap) {
        let found = match *cap {
            Cap::Frame { base, size_bits, mapping: Some(mapping), .. } => {
                self.find_entry(mapping, leaf_kind(size_bits), base)
            }
            Cap::PageTable { base, kind: Kind::Pml4 | Kind::GuestSpace, mapping: Some(Mapping { asid, .. }) } => {
                if self.vspace_of(asid) == Some(base)
                    && let Some(pool) = self.asid_pools.get_mut(&(asid / ASIDS_PER_POOL))
                {
                    pool.assigned.remove(&asid);
                }
                None
            }
            Cap::PageTable { base, kind, mapping: Some(mapping) } => {
                parent_of(kind).and_then(|parent| self.find_entry(mapping, parent, base))
            }
            Cap::AsidPool { base, first } => {
                let number = first / ASIDS_PER_POOL;
                if self.asid_pools.get(&number).is_some_and(|pool| pool.base == base) {
                    self.asid_pools.remove(&number);
                }
                None
            }
            _ => None,
        };
        if let Some((table, at)) = found {
            self.tables.get_mut(&table).expect("a live table").entries.remove(&at);
        }
    }

    /// Every VSpace reachable through an ASID, and every structure in it:
    /// (ASID, structure address, its kind, the first virtual address it
    /// covers), the PML4s first. A structure linked twice, or a link to a
    /// structure that is not live, appears as many times as it is reached
    /// (or not at all): the invariants look for both.
    #[must_use]
    pub fn reachable_tables(&self) -> Vec<(u16, u64, Kind, u64)> {
        let mut found = Vec::new();
        for pool in self.asid_pools.values() {
            for (asid, pml4) in &pool.assigned {
                let mut frontier = vec![(*pml4, self.root_kind(*pml4), 0_u64)];
                while let Some((table, kind, first)) = frontier.pop() {
                    found.push((*asid, table, kind, first));
                    let (Some(next), Some(state)) = (below(kind), self.tables.get(&table)) else { continue };
                    for (at, entry) in &state.entries {
                        if let Pte::Table(child) = entry
                            && found.len() < 1 << 16
                        {
                            frontier.push((*child, next, first + (u64::from(*at) << entry_shift(kind))));
                        }
                    }
                }
            }
        }
        found
    }

    /// The slot in TCB `thread` that holds its VSpace (slot 2).
    #[must_use]
    pub const fn vspace_slot(thread: u64) -> u64 {
        thread + 2 * SLOT_BYTES
    }
}
