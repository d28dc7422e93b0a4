//! Virtual address spaces (VSpaces): x86-64 four-level paging built from
//! capabilities, seL4's way.
//!
//! A VSpace is a PML4 object. Before anything can be mapped into it, it is
//! assigned an ASID from an ASID pool (`AsidPool::Assign`); every mapping
//! a capability makes records (ASID, virtual address) in that capability,
//! and unmapping looks the VSpace up through the ASID again. Deleting a
//! VSpace frees its ASID, so a stale record can never lead the kernel into
//! memory that has been retyped since: the lookup fails, or finds a live
//! VSpace whose entry is checked to still name the object before it is
//! cleared.
//!
//! Paging structures (page directory pointer tables, page directories,
//! page tables) are linked into a VSpace with `PageTable::Map` at the
//! level their kind implies; frames (4 KiB, 2 MiB, 1 GiB) with
//! `Frame::Map`, with rights (never more than the capability's) and a
//! memory type. Only the lower half (below [`USER_TOP`]) is reachable: the
//! upper half of every PML4 is the kernel's, and the PML4 indices that map
//! it are never touched here.
//!
//! Safety rules this module keeps (checked by its tests):
//! - A structure whose capability says "unmapped" is linked into no
//!   reachable table: `PageTable::Unmap` requires the last capability and
//!   clears the table, so whatever it held cannot reappear when it is
//!   mapped again; unmapped structures cannot be copied.
//! - Every leaf entry in a reachable table was made by one frame
//!   capability that still records it, so deleting that capability (which
//!   always unmaps) leaves no user mapping of the frame; only then can its
//!   memory go back to an untyped.

use crate::cap::invocation::{self, Message};
use crate::cap::{Asid, Cap, FrameSize, MappedAt, PageTableLevel, Rights, SlotRef, derivation};
use crate::error::SyscallError;
use crate::memory::PhysAddr;
use crate::platform::Platform;
use crate::store::ObjectStore;
use crate::virt::{self, GuestFormat, GuestMapping};

/// The first virtual address above the user half.
pub const USER_TOP: u64 = 1 << 47;
/// The first guest-physical address a four-level GuestSpace cannot map.
pub const GUEST_TOP: u64 = 1 << 48;
/// Entries in every paging structure.
pub const ENTRIES: usize = 512;
/// ASID pools the kernel can track.
pub const ASID_POOLS: usize = 64;
/// ASIDs per pool.
pub const ASIDS_PER_POOL: usize = 512;

/// Invocation labels of paging, frame and ASID capabilities.
pub mod label {
    /// PageTable (a PDPT, PD or PT): link it into a VSpace (word: virtual
    /// address; extra cap: the VSpace's PML4).
    pub const PAGE_TABLE_MAP: u64 = 96;
    /// PageTable: unlink it and clear it (its last capability only).
    pub const PAGE_TABLE_UNMAP: u64 = 97;
    /// Frame: map it (words: virtual address, rights, attributes; extra
    /// cap: the VSpace's PML4).
    pub const FRAME_MAP: u64 = 98;
    /// Frame: remove this capability's mapping.
    pub const FRAME_UNMAP: u64 = 99;
    /// Frame: its physical address (for DMA), in the reply's word 0.
    pub const FRAME_GET_ADDRESS: u64 = 100;
    /// AsidControl: turn a 4 KiB untyped into an ASID pool (words:
    /// destination index, depth; extra caps: the untyped, the destination
    /// CNode).
    pub const ASID_CONTROL_MAKE_POOL: u64 = 104;
    /// AsidPool: give a PML4 an ASID (extra cap: the PML4).
    pub const ASID_POOL_ASSIGN: u64 = 105;
}

/// The invocations as `docs/abi.md` lists them: label, name, argument
/// words, extra capabilities.
pub const LABELS: [(u64, &str, &[&str], &[&str]); 7] = [
    (label::PAGE_TABLE_MAP, "PageTable::Map", &["vaddr"], &["vspace"]),
    (label::PAGE_TABLE_UNMAP, "PageTable::Unmap", &[], &[]),
    (label::FRAME_MAP, "Frame::Map", &["vaddr", "rights", "attributes"], &["vspace"]),
    (label::FRAME_UNMAP, "Frame::Unmap", &[], &[]),
    (label::FRAME_GET_ADDRESS, "Frame::GetAddress", &[], &[]),
    (label::ASID_CONTROL_MAKE_POOL, "AsidControl::MakePool", &["dest_index", "dest_depth"], &["untyped", "dest_root"]),
    (label::ASID_POOL_ASSIGN, "AsidPool::Assign", &[], &["vspace"]),
];

/// `Frame::Map` attribute bits.
pub mod attribute {
    /// The mapping may be executed (otherwise it is no-execute).
    pub const EXECUTE: u64 = 1 << 0;
    /// The memory type, bits 1..=2: see [`MemoryType`](super::MemoryType).
    pub const MEMORY_TYPE_SHIFT: u32 = 1;
    /// Every defined bit.
    pub const ALL: u64 = EXECUTE | (0b11 << MEMORY_TYPE_SHIFT);
}

/// The memory types `Frame::Map` offers: the four the reset value of the
/// PAT gives the PWT and PCD bits (Intel SDM Vol. 3A, 13.12.4), so the
/// kernel needs no PAT programming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    /// Write-back: ordinary RAM.
    WriteBack = 0,
    /// Write-through.
    WriteThrough = 1,
    /// Uncacheable, unless an MTRR says write-combining (UC-).
    UncachedMinus = 2,
    /// Uncacheable: device registers.
    Uncached = 3,
}

/// Page-table entry bits (Intel SDM Vol. 3A, 4.5; AMD APM Vol. 2, 5.3).
pub mod entry {
    /// Present.
    pub const PRESENT: u64 = 1 << 0;
    /// Writable.
    pub const WRITABLE: u64 = 1 << 1;
    /// Reachable from ring 3.
    pub const USER: u64 = 1 << 2;
    /// Write-through (PAT index bit 0).
    pub const WRITE_THROUGH: u64 = 1 << 3;
    /// Cache disable (PAT index bit 1).
    pub const CACHE_DISABLE: u64 = 1 << 4;
    /// In a PDPT or PD entry: maps a 1 GiB or 2 MiB page, not a table.
    pub const LARGE: u64 = 1 << 7;
    /// No-execute.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// The physical-address bits (51:12).
    pub const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
}

/// An ASID pool's table: the PML4 each ASID names (0: free). One page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsidPool {
    /// The PML4's physical address per ASID of the pool, 0 when free.
    pub entries: [u64; ASIDS_PER_POOL],
}

impl AsidPool {
    /// A pool with every ASID free.
    pub const FRESH: AsidPool = AsidPool { entries: [0; ASIDS_PER_POOL] };
}

impl Default for AsidPool {
    fn default() -> AsidPool {
        AsidPool::FRESH
    }
}

/// The kernel's table of ASID pools: pool `n` holds ASIDs `n * 512 ..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsidTable {
    /// Each pool's object, if made.
    pub pools: [Option<PhysAddr>; ASID_POOLS],
}

impl Default for AsidTable {
    fn default() -> AsidTable {
        AsidTable::EMPTY
    }
}

impl AsidTable {
    /// No pools.
    pub const EMPTY: AsidTable = AsidTable { pools: [None; ASID_POOLS] };

    /// The VSpace (PML4) `asid` names, if any.
    #[must_use]
    pub fn vspace(&self, store: &impl ObjectStore, asid: Asid) -> Option<PhysAddr> {
        let pool = self.pools.get(usize::from(asid.0) / ASIDS_PER_POOL).copied().flatten()?;
        let vspace = store.asid_pool(pool).entries[usize::from(asid.0) % ASIDS_PER_POOL];
        (vspace != 0).then_some(PhysAddr::new(vspace))
    }
}

/// log2 of the bytes one entry of a structure at `level` covers.
const fn entry_shift(level: PageTableLevel) -> u32 {
    match level {
        PageTableLevel::Pml4 | PageTableLevel::GuestSpace => 39,
        PageTableLevel::PageDirectoryPointerTable => 30,
        PageTableLevel::PageDirectory => 21,
        PageTableLevel::PageTable => 12,
    }
}

/// The index of `address` in a structure at `level`.
fn index(address: u64, level: PageTableLevel) -> usize {
    // Nine bits always fit.
    usize::from(((address >> entry_shift(level)) & 0x1ff) as u16)
}

/// The level below `level` (`None` below a page table).
const fn below(level: PageTableLevel) -> Option<PageTableLevel> {
    match level {
        PageTableLevel::Pml4 | PageTableLevel::GuestSpace => Some(PageTableLevel::PageDirectoryPointerTable),
        PageTableLevel::PageDirectoryPointerTable => Some(PageTableLevel::PageDirectory),
        PageTableLevel::PageDirectory => Some(PageTableLevel::PageTable),
        PageTableLevel::PageTable => None,
    }
}

/// The level of the structure whose entries link a structure of `level`
/// (`None` for a root, a PML4 or a GuestSpace, which nothing links; the
/// level above a PDPT is a root's, whichever root it is).
const fn parent_of(level: PageTableLevel) -> Option<PageTableLevel> {
    match level {
        PageTableLevel::Pml4 | PageTableLevel::GuestSpace => None,
        PageTableLevel::PageDirectoryPointerTable => Some(PageTableLevel::Pml4),
        PageTableLevel::PageDirectory => Some(PageTableLevel::PageDirectoryPointerTable),
        PageTableLevel::PageTable => Some(PageTableLevel::PageDirectory),
    }
}

/// The level of the structure whose entry maps a frame of `size`.
const fn leaf_level(size: FrameSize) -> PageTableLevel {
    match size {
        FrameSize::Small => PageTableLevel::PageTable,
        FrameSize::Large => PageTableLevel::PageDirectory,
        FrameSize::Huge => PageTableLevel::PageDirectoryPointerTable,
    }
}

/// The structure at `level` that covers `address` in the VSpace rooted at
/// `pml4`, following present table entries down from the root.
fn table_at(
    store: &impl ObjectStore,
    pml4: PhysAddr,
    address: u64,
    level: PageTableLevel,
) -> Result<PhysAddr, SyscallError> {
    let mut table = pml4;
    let mut at = PageTableLevel::Pml4;
    while at != level {
        let value = store.table_entry(table, index(address, at));
        if value & entry::PRESENT == 0 || value & entry::LARGE != 0 {
            return Err(SyscallError::FailedLookup);
        }
        table = PhysAddr::new(value & entry::ADDRESS);
        at = below(at).ok_or(SyscallError::FailedLookup)?;
    }
    Ok(table)
}

/// Where an entry lives: a structure and an index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// The structure.
    pub table: PhysAddr,
    /// The index.
    pub index: usize,
}

/// A decoded invocation, everything checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VSpaceInvocation {
    /// Link the structure in `slot` at `entry`, recording `mapping`.
    MapTable {
        /// The structure's capability.
        slot: SlotRef,
        /// The empty entry that will point at it.
        entry: EntryRef,
        /// The entry's value.
        value: u64,
        /// What the capability records.
        mapping: MappedAt,
    },
    /// Unlink the structure in `slot` (if still linked where it says) and
    /// clear it.
    UnmapTable {
        /// The structure's capability (its last one).
        slot: SlotRef,
    },
    /// Map the frame in `slot` at `entry`.
    MapFrame {
        /// The frame's capability.
        slot: SlotRef,
        /// The empty entry.
        entry: EntryRef,
        /// The entry's value.
        value: u64,
        /// What the capability records.
        mapping: MappedAt,
    },
    /// Remove the mapping the frame capability in `slot` made, if any.
    UnmapFrame {
        /// The frame's capability.
        slot: SlotRef,
    },
    /// Reply with the frame's physical address.
    GetAddress {
        /// The address.
        address: PhysAddr,
    },
    /// Make the 4 KiB untyped in `untyped` an ASID pool, numbered `pool`.
    MakePool {
        /// The untyped's slot.
        untyped: SlotRef,
        /// The pool's memory.
        object: PhysAddr,
        /// Its number in the ASID table.
        pool: usize,
        /// The empty slot for the pool's capability.
        destination: SlotRef,
    },
    /// Give the PML4 in `vspace` the ASID `asid` from the pool at `pool`.
    Assign {
        /// The PML4's capability slot.
        vspace: SlotRef,
        /// The pool's object.
        pool: PhysAddr,
        /// The ASID.
        asid: Asid,
    },
}

/// An address space invocations map into: a VSpace (a PML4) or a
/// GuestSpace, with its ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Space {
    /// The root structure.
    root: PhysAddr,
    /// Its ASID.
    asid: Asid,
    /// For a GuestSpace, the entry format of the machine's backend.
    guest: Option<GuestFormat>,
}

impl Space {
    /// The first address past what the space may map.
    const fn top(&self) -> u64 {
        if self.guest.is_some() { GUEST_TOP } else { USER_TOP }
    }

    /// The entry linking the structure at `next`.
    const fn table_entry(&self, next: PhysAddr) -> u64 {
        match self.guest {
            None => next.as_u64() | entry::PRESENT | entry::WRITABLE | entry::USER,
            Some(GuestFormat::Npt) => virt::npt_table_entry(next.as_u64()),
            Some(GuestFormat::Ept) => virt::ept_table_entry(next.as_u64()),
        }
    }
}

/// The assigned space an extra capability names. The ASID must still
/// name its root (its pool may have been deleted): a mapping recorded
/// against a dead ASID could never be removed. A GuestSpace needs a
/// backend: on a machine without one, mapping into it is
/// IllegalOperation.
fn vspace_argument(
    store: &impl ObjectStore,
    asids: &AsidTable,
    guest: Option<GuestFormat>,
    message: &Message<'_>,
) -> Result<Space, SyscallError> {
    match message.extra_cap(store, 0)? {
        Cap::PageTable {
            object,
            level: level @ (PageTableLevel::Pml4 | PageTableLevel::GuestSpace),
            mapping: Some(MappedAt { asid, .. }),
        } if asids.vspace(store, asid) == Some(object) => {
            if level == PageTableLevel::Pml4 {
                return Ok(Space { root: object, asid, guest: None });
            }
            let format = guest.ok_or(SyscallError::IllegalOperation)?;
            Ok(Space { root: object, asid, guest: Some(format) })
        }
        _ => Err(SyscallError::InvalidCapability),
    }
}

/// Whether `cap` is a PML4 whose ASID still names it: a VSpace a thread
/// may run in and invocations may map into.
#[must_use]
pub fn is_live_vspace(store: &impl ObjectStore, asids: &AsidTable, cap: &Cap) -> bool {
    matches!(*cap, Cap::PageTable { object, level: PageTableLevel::Pml4, mapping: Some(MappedAt { asid, .. }) }
        if asids.vspace(store, asid) == Some(object))
}

/// An address aligned to `1 << shift` whose `1 << shift` bytes lie below
/// `top` ([`USER_TOP`] in a VSpace, [`GUEST_TOP`] in a GuestSpace).
fn user_address(address: u64, shift: u32, top: u64) -> Result<u64, SyscallError> {
    if address & ((1 << shift) - 1) != 0 {
        return Err(SyscallError::AlignmentError);
    }
    if address.checked_add(1 << shift).is_none_or(|end| end > top) {
        return Err(SyscallError::InvalidArgument);
    }
    Ok(address)
}

/// Checks an invocation of a PageTable, Frame, AsidControl or AsidPool
/// capability. Changes nothing.
///
/// # Errors
///
/// The [`SyscallError`] the caller receives.
pub fn decode(
    store: &impl ObjectStore,
    asids: &AsidTable,
    guest: Option<GuestFormat>,
    invoked: SlotRef,
    message: &Message<'_>,
) -> Result<VSpaceInvocation, SyscallError> {
    let cap = store.slot(invoked).cap;
    match (cap, message.label) {
        (Cap::PageTable { level, mapping, object }, label::PAGE_TABLE_MAP) => {
            let Some(parent) = parent_of(level) else { return Err(SyscallError::IllegalOperation) };
            if mapping.is_some() {
                return Err(SyscallError::IllegalOperation);
            }
            let address = message.word(0)?;
            let space = vspace_argument(store, asids, guest, message)?;
            let shift = entry_shift(parent);
            let address = user_address(address & !((1 << shift) - 1), shift, space.top())?;
            let table = table_at(store, space.root, address, parent)?;
            let entry = EntryRef { table, index: index(address, parent) };
            // Mutant: an entry in use is overwritten (no DeleteFirst).
            if store.table_entry(table, entry.index) & entry::PRESENT != 0
                && !cfg!(bulkhead_mutant = "table_map_overwrites_entry")
            {
                return Err(SyscallError::DeleteFirst);
            }
            // Intermediate entries allow everything; leaf entries restrict.
            let value = space.table_entry(object);
            let mapping = MappedAt { asid: space.asid, address };
            Ok(VSpaceInvocation::MapTable { slot: invoked, entry, value, mapping })
        }
        (Cap::PageTable { level, .. }, label::PAGE_TABLE_UNMAP) => {
            if parent_of(level).is_none() {
                return Err(SyscallError::IllegalOperation);
            }
            if !derivation::is_final(store, invoked) {
                return Err(SyscallError::RevokeFirst);
            }
            Ok(VSpaceInvocation::UnmapTable { slot: invoked })
        }
        (Cap::Frame { base, size, rights, mapping, .. }, label::FRAME_MAP) => {
            let (address, wanted, attributes) = (message.word(0)?, message.word(1)?, message.word(2)?);
            let space = vspace_argument(store, asids, guest, message)?;
            if mapping.is_some() {
                return Err(SyscallError::IllegalOperation);
            }
            let granted = rights & Rights::from_word(wanted);
            if !granted.contains(Rights::READ) || attributes & !attribute::ALL != 0 {
                return Err(SyscallError::InvalidArgument);
            }
            let address = user_address(address, u32::from(size.bits()), space.top())?;
            let level = leaf_level(size);
            let table = table_at(store, space.root, address, level)?;
            let entry = EntryRef { table, index: index(address, level) };
            if store.table_entry(table, entry.index) & entry::PRESENT != 0 {
                return Err(SyscallError::DeleteFirst);
            }
            let mut value = base.as_u64() | entry::PRESENT | entry::USER;
            // Mutant: the entry is writable though the rights granted (the
            // capability's, masked by those asked for) lack WRITE.
            if granted.contains(Rights::WRITE) || cfg!(bulkhead_mutant = "frame_map_ignores_write_right") {
                value |= entry::WRITABLE;
            }
            if attributes & attribute::EXECUTE == 0 {
                value |= entry::NO_EXECUTE;
            }
            let memory_type = (attributes >> attribute::MEMORY_TYPE_SHIFT) & 0b11;
            if memory_type & 1 != 0 {
                value |= entry::WRITE_THROUGH;
            }
            if memory_type & 2 != 0 {
                value |= entry::CACHE_DISABLE;
            }
            if size != FrameSize::Small {
                value |= entry::LARGE;
            }
            // A guest's page: the same rights and type in its backend's format.
            if let Some(format) = space.guest {
                let mapping = GuestMapping {
                    write: granted.contains(Rights::WRITE),
                    execute: attributes & attribute::EXECUTE != 0,
                    memory_type: match memory_type {
                        0 => MemoryType::WriteBack,
                        1 => MemoryType::WriteThrough,
                        2 => MemoryType::UncachedMinus,
                        _ => MemoryType::Uncached,
                    },
                    large: size != FrameSize::Small,
                };
                value = match format {
                    GuestFormat::Npt => virt::npt_page_entry(base.as_u64(), mapping),
                    GuestFormat::Ept => virt::ept_page_entry(base.as_u64(), mapping),
                };
            }
            let mapping = MappedAt { asid: space.asid, address };
            Ok(VSpaceInvocation::MapFrame { slot: invoked, entry, value, mapping })
        }
        (Cap::Frame { .. }, label::FRAME_UNMAP) => Ok(VSpaceInvocation::UnmapFrame { slot: invoked }),
        (Cap::Frame { base, .. }, label::FRAME_GET_ADDRESS) => Ok(VSpaceInvocation::GetAddress { address: base }),
        (Cap::AsidControl, label::ASID_CONTROL_MAKE_POOL) => {
            let (index, depth) = (message.word(0)?, message.depth(1, false)?);
            let untyped = message.extra_caps.first().copied().ok_or(SyscallError::TruncatedMessage)?;
            let untyped = untyped.ok_or(SyscallError::InvalidCapability)?;
            let root = message.extra_cap(store, 1)?;
            // A whole 4 KiB of RAM with nothing in it: unused, or with every
            // object it held revoked (then it starts again from its base,
            // as Retype does).
            let Cap::Untyped { base, size_bits: 12, is_device: false, .. } = store.slot(untyped).cap else {
                return Err(SyscallError::InvalidCapability);
            };
            if derivation::has_children(store, untyped) {
                return Err(SyscallError::RevokeFirst);
            }
            if !matches!(root, Cap::CNode { .. }) {
                return Err(SyscallError::InvalidCapability);
            }
            let destination = invocation::lookup(store, &root, index, depth)?;
            if !store.slot(destination).cap.is_null() {
                return Err(SyscallError::DeleteFirst);
            }
            let pool = asids.pools.iter().position(Option::is_none).ok_or(SyscallError::NotEnoughMemory)?;
            Ok(VSpaceInvocation::MakePool { untyped, object: base, pool, destination })
        }
        (Cap::AsidPool { object, first }, label::ASID_POOL_ASSIGN) => {
            let vspace = message.extra_caps.first().copied().ok_or(SyscallError::TruncatedMessage)?;
            let vspace = vspace.ok_or(SyscallError::InvalidCapability)?;
            let Cap::PageTable { level: PageTableLevel::Pml4 | PageTableLevel::GuestSpace, mapping: None, .. } =
                store.slot(vspace).cap
            else {
                return Err(SyscallError::InvalidCapability);
            };
            let pool_number = usize::from(first.0) / ASIDS_PER_POOL;
            if asids.pools.get(pool_number).copied().flatten() != Some(object) {
                return Err(SyscallError::InvalidCapability);
            }
            let pool = store.asid_pool(object);
            // ASID 0 is never handed out: it stays "no address space".
            let free = pool
                .entries
                .iter()
                .enumerate()
                .position(|(index, entry)| *entry == 0 && (first.0 != 0 || index != 0))
                .ok_or(SyscallError::NotEnoughMemory)?;
            let asid = u16::try_from(usize::from(first.0) + free).map_err(|_| SyscallError::RangeError)?;
            Ok(VSpaceInvocation::Assign { vspace, pool: object, asid: Asid(asid) })
        }
        (Cap::Null, _) => Err(SyscallError::InvalidCapability),
        _ => Err(SyscallError::IllegalOperation),
    }
}

/// Performs a decoded invocation; returns the reply's word 0, if it has
/// one. Cannot fail.
pub fn invoke(
    store: &mut impl ObjectStore,
    asids: &mut AsidTable,
    platform: &mut impl Platform,
    invocation: VSpaceInvocation,
) -> Option<u64> {
    match invocation {
        VSpaceInvocation::MapTable { slot, entry, value, mapping }
        | VSpaceInvocation::MapFrame { slot, entry, value, mapping } => {
            store.set_table_entry(entry.table, entry.index, value);
            match &mut store.slot_mut(slot).cap {
                Cap::PageTable { mapping: recorded, .. } | Cap::Frame { mapping: recorded, .. } => {
                    *recorded = Some(mapping);
                }
                _ => {}
            }
            None
        }
        VSpaceInvocation::UnmapTable { slot } => {
            let cap = store.slot(slot).cap;
            unmap(store, asids, platform, &cap);
            if let Cap::PageTable { object, mapping, .. } = &mut store.slot_mut(slot).cap {
                *mapping = None;
                let object = *object;
                for index in 0..ENTRIES {
                    store.set_table_entry(object, index, 0);
                }
            }
            None
        }
        VSpaceInvocation::UnmapFrame { slot } => {
            let cap = store.slot(slot).cap;
            unmap(store, asids, platform, &cap);
            if let Cap::Frame { mapping, .. } = &mut store.slot_mut(slot).cap {
                *mapping = None;
            }
            None
        }
        VSpaceInvocation::GetAddress { address } => Some(address.as_u64()),
        VSpaceInvocation::MakePool { untyped, object, pool, destination } => {
            store.init_asid_pool(object);
            let first = Asid(u16::try_from(pool * ASIDS_PER_POOL).unwrap_or(u16::MAX));
            if let Cap::Untyped { free_offset, .. } = &mut store.slot_mut(untyped).cap {
                *free_offset = 1 << 12;
            }
            derivation::insert_derived(store, untyped, destination, Cap::AsidPool { object, first }, true);
            asids.pools[pool] = Some(object);
            None
        }
        VSpaceInvocation::Assign { vspace, pool, asid } => {
            let Cap::PageTable { object, .. } = store.slot(vspace).cap else { return None };
            store.asid_pool_mut(pool).entries[usize::from(asid.0) % ASIDS_PER_POOL] = object.as_u64();
            if let Cap::PageTable { mapping, .. } = &mut store.slot_mut(vspace).cap {
                *mapping = Some(MappedAt { asid, address: 0 });
            }
            None
        }
    }
}

/// Undoes what `cap` records, if it still holds: a frame's or structure's
/// entry is cleared when the VSpace its ASID names still has an entry for
/// the object at the recorded address; a PML4 gives its ASID back; an ASID
/// pool leaves the table, with every VSpace in it. Used by `Unmap` and
/// when a capability is deleted.
pub fn unmap(store: &mut impl ObjectStore, asids: &mut AsidTable, platform: &mut impl Platform, cap: &Cap) {
    match *cap {
        Cap::Frame { base, size, mapping: Some(MappedAt { asid, address }), .. } => {
            let level = leaf_level(size);
            if let Some(entry) = find_entry(store, asids, asid, address, level, base) {
                store.set_table_entry(entry.table, entry.index, 0);
                if let Some(pml4) = asids.vspace(store, asid) {
                    platform.invalidate_page(pml4, address);
                }
            }
        }
        Cap::PageTable { object, level, mapping: Some(MappedAt { asid, address }) } => match parent_of(level) {
            Some(parent) => {
                if let Some(entry) = find_entry(store, asids, asid, address, parent, object) {
                    store.set_table_entry(entry.table, entry.index, 0);
                    if let Some(pml4) = asids.vspace(store, asid) {
                        platform.invalidate_vspace(pml4);
                    }
                }
            }
            None => {
                if asids.vspace(store, asid) == Some(object) {
                    free_asid(store, asids, asid);
                    platform.vspace_deleted(object);
                }
            }
        },
        Cap::AsidPool { object, first } => {
            let number = usize::from(first.0) / ASIDS_PER_POOL;
            if asids.pools.get(number).copied().flatten() == Some(object) {
                for vspace in store.asid_pool(object).entries.iter().filter(|entry| **entry != 0) {
                    platform.vspace_deleted(PhysAddr::new(*vspace));
                }
                asids.pools[number] = None;
            }
        }
        _ => {}
    }
}

fn free_asid(store: &mut impl ObjectStore, asids: &AsidTable, asid: Asid) {
    if let Some(pool) = asids.pools.get(usize::from(asid.0) / ASIDS_PER_POOL).copied().flatten() {
        store.asid_pool_mut(pool).entries[usize::from(asid.0) % ASIDS_PER_POOL] = 0;
    }
}

/// The entry at `level` for `address` in the VSpace `asid` names, if it is
/// present and points at `object`.
fn find_entry(
    store: &impl ObjectStore,
    asids: &AsidTable,
    asid: Asid,
    address: u64,
    level: PageTableLevel,
    object: PhysAddr,
) -> Option<EntryRef> {
    let pml4 = asids.vspace(store, asid)?;
    let table = table_at(store, pml4, address, level).ok()?;
    let entry = EntryRef { table, index: index(address, level) };
    let value = store.table_entry(table, entry.index);
    (value & entry::PRESENT != 0 && value & entry::ADDRESS == object.as_u64()).then_some(entry)
}

/// Where `address` leads in the VSpace rooted at `pml4`: the physical
/// address and the leaf entry, or `None` if nothing is mapped there (for
/// tests, the invariant harness and fault reports).
#[must_use]
pub fn translate(store: &impl ObjectStore, pml4: PhysAddr, address: u64) -> Option<(u64, u64)> {
    if address >= USER_TOP {
        return None;
    }
    let mut table = pml4;
    let mut level = PageTableLevel::Pml4;
    loop {
        let value = store.table_entry(table, index(address, level));
        if value & entry::PRESENT == 0 {
            return None;
        }
        let is_leaf = level == PageTableLevel::PageTable || value & entry::LARGE != 0;
        if is_leaf {
            let offset = address & ((1 << entry_shift(level)) - 1);
            return Some(((value & entry::ADDRESS) + offset, value));
        }
        table = PhysAddr::new(value & entry::ADDRESS);
        level = below(level)?;
    }
}

#[cfg(test)]
mod tests;
