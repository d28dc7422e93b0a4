//! Starting the root task: the first ring-3 program of a real system, from
//! an ELF boot module (`kernel_core::root_task` is its ABI).
//!
//! The kernel builds the root task's address space out of boot frames that
//! never go back to the allocator: a PML4 (with the kernel's half), the
//! page-table structures its image, stack, IPC buffer and info page need,
//! and those pages. These structures belong to the kernel (no capability
//! names them), so the root cannot unmap its own image; it gets
//! capabilities to its PML4 (with ASID 1 from ASID pool 0, both in its
//! CNode), its IPC buffer and its info page, and maps everything else
//! itself from [`FIRST_FREE_ADDRESS`] on, with structures it retypes.

use kernel_core::cap::{
    Asid, Cap, FrameSize, MappedAt, ObjectKind, PageTableLevel, Rights, SlotRef, SlotStore, derivation,
};
use kernel_core::elf::{self, Bounds, ElfError, Image, PAGE_BYTES};
use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::ipc::ThreadId;
use kernel_core::memory::{FRAME_SIZE, PhysAddr, PhysRange};
use kernel_core::root_task::{
    FIRST_FREE_ADDRESS, IMAGE_BASE, IMAGE_END, INFO_PAGE, IPC_BUFFER, MAX_UNTYPEDS, RootInfo, STACK_PAGES, STACK_TOP,
    UntypedInfo, slot,
};
use kernel_core::store::ObjectStore;
use kernel_core::syscall::{self, RFLAGS_FIXED};
use kernel_core::vspace::{ENTRIES, entry};

use super::objects::PhysStore;
use super::paging::physmap_pointer;

/// Why the root task could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RootTaskError {
    /// The module lies outside the physical-memory map.
    Unreachable,
    /// The image is not a valid executable for the root task.
    Image(ElfError),
    /// The boot allocator ran dry.
    OutOfFrames,
    /// The root thread or its CNode is missing (boot did not create them).
    NoRoot,
}

impl core::fmt::Display for RootTaskError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RootTaskError::Unreachable => formatter.write_str("the module lies outside the physical-memory map"),
            RootTaskError::Image(error) => write!(formatter, "the image is refused: {error}"),
            RootTaskError::OutOfFrames => formatter.write_str("out of boot frames"),
            RootTaskError::NoRoot => formatter.write_str("no root thread"),
        }
    }
}

/// The bytes of a boot module.
fn module_bytes(range: PhysRange) -> Option<&'static [u8]> {
    let length = range.end.as_u64().checked_sub(range.start.as_u64())?;
    let pointer = physmap_pointer(range.start.as_u64(), length)?;
    let length = usize::try_from(length).ok()?;
    // SAFETY: the module's frames are reserved from the boot allocator
    // (`boot::reserved_ranges`), so nothing else ever writes them, and the
    // physical-memory map covers all `length` bytes (checked): a shared
    // slice over them stays valid for the kernel's lifetime.
    Some(unsafe { core::slice::from_raw_parts(pointer, length) })
}

/// A zeroed boot frame.
fn zeroed_frame(allocator: &mut FrameAllocator) -> Result<PhysAddr, RootTaskError> {
    let frame = allocator.allocate().ok_or(RootTaskError::OutOfFrames)?;
    let pointer = physmap_pointer(frame.start().as_u64(), FRAME_SIZE).ok_or(RootTaskError::OutOfFrames)?;
    // SAFETY: the allocator just handed this frame out to us alone, and the
    // physical-memory map covers it (checked); bytes need no validity.
    unsafe { core::ptr::write_bytes(pointer, 0, 4096) };
    Ok(frame.start())
}

/// Builds the root's page tables out of boot frames.
struct Mapper<'a> {
    store: &'a mut PhysStore,
    allocator: &'a mut FrameAllocator,
    pml4: PhysAddr,
    no_execute: u64,
}

impl Mapper<'_> {
    /// Maps the 4 KiB `frame` at `address` with `leaf_bits` (besides
    /// present and user), making the structures on the way.
    fn map(&mut self, address: u64, frame: PhysAddr, leaf_bits: u64) -> Result<(), RootTaskError> {
        let mut table = self.pml4;
        for shift in [39_u32, 30, 21] {
            let index = usize::try_from((address >> shift) & (ENTRIES as u64 - 1)).unwrap_or(0);
            let value = self.store.table_entry(table, index);
            table = if value & entry::PRESENT != 0 {
                PhysAddr::new(value & entry::ADDRESS)
            } else {
                let next = zeroed_frame(self.allocator)?;
                let link = next.as_u64() | entry::PRESENT | entry::WRITABLE | entry::USER;
                self.store.set_table_entry(table, index, link);
                next
            };
        }
        let index = usize::try_from((address >> 12) & (ENTRIES as u64 - 1)).unwrap_or(0);
        self.store.set_table_entry(table, index, frame.as_u64() | entry::PRESENT | entry::USER | leaf_bits);
        Ok(())
    }

    /// Maps a fresh zeroed page at `address`; returns its frame.
    fn map_new(&mut self, address: u64, leaf_bits: u64) -> Result<PhysAddr, RootTaskError> {
        let frame = zeroed_frame(self.allocator)?;
        self.map(address, frame, leaf_bits)?;
        Ok(frame)
    }
}

/// Copies `bytes` to physical `frame + offset` (inside one frame).
fn copy_into(frame: PhysAddr, offset: u64, bytes: &[u8]) {
    debug_assert!(offset + bytes.len() as u64 <= FRAME_SIZE);
    let Some(pointer) = physmap_pointer(frame.as_u64() + offset, bytes.len() as u64) else { return };
    // SAFETY: the frame is a boot frame this loader owns (not yet reachable
    // from ring 3), `offset + bytes.len()` stays inside it (the caller cuts
    // segments at page boundaries) and the physical-memory map covers it.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), pointer, bytes.len()) };
}

/// Loads the segments of `executable` from `image`; returns the bytes of
/// the image they hold.
fn load_image(mapper: &mut Mapper<'_>, image: &[u8], executable: &Image) -> Result<u64, RootTaskError> {
    let mut page_bytes = [0_u8; PAGE_BYTES];
    for segment in executable.segments() {
        let mut leaf_bits = if segment.permissions.write { entry::WRITABLE } else { 0 };
        if !segment.permissions.execute {
            leaf_bits |= mapper.no_execute;
        }
        for page in (segment.first_page()..segment.page_end()).step_by(PAGE_BYTES) {
            let frame = mapper.map_new(page, leaf_bits)?;
            segment.fill_page(image, page, &mut page_bytes);
            copy_into(frame, 0, &page_bytes);
        }
    }
    Ok(executable.segments().iter().map(|segment| segment.file_size).sum())
}

fn root_slot(cnode: PhysAddr, index: u64) -> Result<SlotRef, RootTaskError> {
    SlotRef::in_cnode(cnode, index).ok_or(RootTaskError::NoRoot)
}

/// Builds the root task from the ELF image in `module` and prepares the
/// root thread to run it. Returns the root thread.
pub(crate) fn create(allocator: &mut FrameAllocator, module: PhysRange) -> Result<ThreadId, RootTaskError> {
    let image = module_bytes(module).ok_or(RootTaskError::Unreachable)?;
    let executable = elf::parse(image, Bounds { start: IMAGE_BASE, end: IMAGE_END }).map_err(RootTaskError::Image)?;
    let no_execute = if super::paging::no_execute_enabled() { entry::NO_EXECUTE } else { 0 };
    crate::root::with_kernel(|kernel, root| {
        let root = root.ok_or(RootTaskError::NoRoot)?;
        let cnode = match kernel.store.slot(syscall::cspace_slot(root).ok_or(RootTaskError::NoRoot)?).cap {
            Cap::CNode { base, .. } => base,
            _ => return Err(RootTaskError::NoRoot),
        };
        let pml4 = allocator.allocate().ok_or(RootTaskError::OutOfFrames)?.start();
        kernel.store.init_object(ObjectKind::Pml4, pml4, 12);
        let mut mapper = Mapper { store: &mut kernel.store, allocator, pml4, no_execute };
        let image_bytes = load_image(&mut mapper, image, &executable)?;
        for page in 1..=STACK_PAGES {
            mapper.map_new(STACK_TOP - page * FRAME_SIZE, entry::WRITABLE | no_execute)?;
        }
        let ipc_buffer = mapper.map_new(IPC_BUFFER, entry::WRITABLE | no_execute)?;
        let info_frame = mapper.map_new(INFO_PAGE, no_execute)?;

        // The info page.
        let mut info = RootInfo::EMPTY;
        info.cnode_radix = u64::from(crate::root::ROOT_CNODE_RADIX);
        info.image_bytes = image_bytes;
        info.tsc_khz = super::cpu::tsc_khz();
        // RAM untypeds in their slots, then the device untypeds boot put
        // from FIRST_FREE on; the root's free slots start after them.
        let ram = slot::FIRST_UNTYPED..slot::SCHED_CONTROL;
        let devices = slot::FIRST_FREE..slot::FIRST_FREE + crate::root::MAX_DEVICE_UNTYPEDS as u64;
        for at in ram.chain(devices) {
            if usize::try_from(info.untyped_count).unwrap_or(MAX_UNTYPEDS) >= MAX_UNTYPEDS {
                break;
            }
            if let Cap::Untyped { base, size_bits, is_device, .. } = kernel.store.slot(root_slot(cnode, at)?).cap {
                if is_device {
                    info.first_free_slot = at + 1;
                }
                let entry = UntypedInfo {
                    slot: at,
                    base: base.as_u64(),
                    size_bits: u64::from(size_bits),
                    is_device: u64::from(is_device),
                };
                info.untypeds[usize::try_from(info.untyped_count).unwrap_or(0)] = entry;
                info.untyped_count += 1;
            }
        }
        for (index, word) in info.to_words().iter().enumerate() {
            copy_into(info_frame, index as u64 * 8, &word.to_le_bytes());
        }

        // Its capabilities: ASID pool 0 with the root's VSpace at ASID 1,
        // the VSpace, the IPC buffer and the info page.
        let pool = zeroed_frame(allocator)?;
        let store = &mut kernel.store;
        store.init_asid_pool(pool);
        let asid = Asid(1);
        store.asid_pool_mut(pool).entries[usize::from(asid.0)] = pml4.as_u64();
        kernel.asids.pools[0] = Some(pool);
        let vspace =
            Cap::PageTable { object: pml4, level: PageTableLevel::Pml4, mapping: Some(MappedAt { asid, address: 0 }) };
        let frame = |base, rights| Cap::Frame { base, size: FrameSize::Small, rights, is_device: false, mapping: None };
        let originals = [
            (slot::ASID_POOL, Cap::AsidPool { object: pool, first: Asid(0) }),
            (slot::ROOT_VSPACE, vspace),
            (slot::ROOT_IPC_BUFFER, frame(ipc_buffer, Rights::ALL)),
            (slot::ROOT_INFO_FRAME, frame(info_frame, Rights::READ)),
        ];
        for (index, cap) in originals {
            derivation::insert_original(store, root_slot(cnode, index)?, cap);
        }
        // The root thread runs in them.
        let vspace_slot = syscall::vspace_slot(root).ok_or(RootTaskError::NoRoot)?;
        derivation::insert_derived(store, root_slot(cnode, slot::ROOT_VSPACE)?, vspace_slot, vspace, false);
        let buffer_slot = syscall::ipc_buffer_slot(root).ok_or(RootTaskError::NoRoot)?;
        let buffer_cap = frame(ipc_buffer, Rights::ALL);
        derivation::insert_derived(store, root_slot(cnode, slot::ROOT_IPC_BUFFER)?, buffer_slot, buffer_cap, false);
        let registers = &mut store.tcb_mut(root).registers;
        registers.rip = executable.entry;
        registers.rsp = STACK_TOP;
        registers.rdi = INFO_PAGE;
        registers.rflags = RFLAGS_FIXED;
        crate::println!(
            "root task: {} bytes in {} segments at {:#x}, entry {:#x}; stack below {STACK_TOP:#x}, IPC buffer at \
             {IPC_BUFFER:#x}, info at {INFO_PAGE:#x}, free from {FIRST_FREE_ADDRESS:#x}",
            image_bytes,
            executable.segments().len(),
            executable.segments().first().map_or(0, |segment| segment.address),
            executable.entry
        );
        Ok(root)
    })
}
