//! Building the system: every object of the spec in creation order, the
//! regions with `contents` filled from the bundle's guest files, then
//! each guest's memory (mapped into its GuestSpace, its image loaded or
//! its Linux kernel, initramfs and command line staged) and VCpus, then
//! each protection domain's address space (its image, stack, IPC buffer,
//! info page, heap and regions), its CNode's capabilities and its thread;
//! the threads start only once every PD is complete.
//!
//! The loader keeps the original capability to every object in its own
//! CNode (from `slot::FIRST_FREE` up); the PDs get derived copies. A
//! mapping is made through a capability of its own (a copy of the frame's
//! original with the mapping's rights), as the kernel records one mapping
//! per capability.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use alloc::collections::BTreeMap;

use bulkhead_capdl_spec::contents::{self, Fill};
use bulkhead_capdl_spec::linux::{SetupHeader, Staging};
use bulkhead_capdl_spec::{
    Bundle, DomainSpec, GuestInfo, GuestSpec, MAX_GUEST_DISKS, MappedDisk, MappedRam, NO_GUEST_ENTRY, ObjectId,
    ObjectKind as SpecKind, PAGE_SIZES, PdInfo, SystemSpec, from_blob, layout,
};
use bulkhead_components::Error;
use bulkhead_components::abi::cap::{ObjectKind, Rights};
use bulkhead_components::abi::root_task::{FIRST_FREE_ADDRESS, MAX_UNTYPEDS, slot};
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::elf::{self, Bounds, PAGE_BYTES};
use bulkhead_components::invocation::{Destination, Registers, Slot, attributes};
use bulkhead_components::slots::SlotAllocator;
use bulkhead_sys::heap::HEAP;
use bulkhead_sys::mapped::MappedPage;
use bulkhead_sys::{RootInfo, Sys, println};

const ROOT_CNODE: Cap<kind::CNode> = Cap::new(slot::ROOT_CNODE);
const ROOT_VSPACE: Cap<kind::Pml4> = Cap::new(slot::ROOT_VSPACE);
const ROOT_TCB: Cap<kind::Tcb> = Cap::new(slot::ROOT_TCB);
const SCHED_CONTROL: Cap<kind::SchedControl> = Cap::new(slot::SCHED_CONTROL);
const ASID_POOL: Cap<kind::AsidPool> = Cap::new(slot::ASID_POOL);
const IRQ_CONTROL: Cap<kind::IrqControl> = Cap::new(slot::IRQ_CONTROL);
const IO_PORT_CONTROL: Cap<kind::IoPortControl> = Cap::new(slot::IO_PORT_CONTROL);

/// The page through which the loader fills frames before a PD maps them.
const SCRATCH_PAGE: u64 = FIRST_FREE_ADDRESS;
/// The loader's heap (for the decoded spec), in the same page table.
const HEAP_START: u64 = FIRST_FREE_ADDRESS + 0x10_0000;
/// The 2 MiB through which the loader fills a guest's 2 MiB frames.
const LARGE_SCRATCH: u64 = FIRST_FREE_ADDRESS + 0x20_0000;
const HEAP_PAGES: usize = 128;

/// Page-table shifts: a PDPT covers 512 GiB, a page directory 1 GiB, a
/// page table 2 MiB.
const PDPT_SHIFT: u32 = 39;
const PD_SHIFT: u32 = 30;
const PT_SHIFT: u32 = 21;

/// Why loading stopped.
struct Failure {
    /// What the loader was doing: `ping: map its stack`.
    doing: String,
    /// Why it failed.
    why: Why,
}

enum Why {
    Kernel(Error),
    Spec(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.why {
            Why::Kernel(error) => write!(formatter, "{}: {error}", self.doing),
            Why::Spec(message) => write!(formatter, "{}: {message}", self.doing),
        }
    }
}

/// Adds what the loader was doing to a kernel error.
trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> Doing<T> for Result<T, Error> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|error| Failure { doing: what(), why: Why::Kernel(error) })
    }
}

fn refuse<T>(doing: impl Into<String>, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { doing: doing.into(), why: Why::Spec(message.into()) })
}

/// Loads `system` and returns the exit code: 0 once every PD runs.
pub(crate) fn main(system: &[u8], info: &RootInfo, sys: &mut Sys) -> u64 {
    let start = bulkhead_sys::arch::read_tsc();
    match load(system, info, sys) {
        Ok(summary) => {
            let ticks = bulkhead_sys::arch::read_tsc().wrapping_sub(start);
            println!(
                "loader: started {} protection domains: {} objects, {} capabilities, {} mappings; exiting",
                summary.domains, summary.objects, summary.caps, summary.mappings
            );
            let ram = summary.ram;
            println!(
                "loader: RAM for the system: {} KiB: frames {} KiB, page tables {} KiB (of them in guest spaces {} KiB), kernel objects {} KiB; for the loader itself: {} KiB",
                ram.system() / 1024,
                ram.frames / 1024,
                (ram.host_tables + ram.guest_tables) / 1024,
                ram.guest_tables / 1024,
                ram.objects / 1024,
                ram.loader / 1024
            );
            println!("loader: built the system in {ticks} TSC ticks");
            0
        }
        Err(failure) => {
            println!("loader: {failure}");
            1
        }
    }
}

/// The RAM the loader retyped from the root's untypeds, in bytes, by
/// what it became (device memory is not counted: it is no RAM). What the
/// loader took for itself (its heap, the page tables of its own VSpace
/// for its windows) is apart: it is not part of the system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RamUse {
    /// Frames: regions (a guest's RAM and disks among them), program
    /// images, stacks, heaps, IPC buffers, info pages.
    frames: u64,
    /// Page tables of the PDs' VSpaces (PDPTs, page directories, page
    /// tables; each VSpace's PML4 is a kernel object).
    host_tables: u64,
    /// Page tables of guests' physical address spaces (NPT or EPT).
    guest_tables: u64,
    /// TCBs, scheduling contexts, CNodes, endpoints, notifications,
    /// replies, VCpus, PML4s, GuestSpaces.
    objects: u64,
    /// The loader's own.
    loader: u64,
}

impl RamUse {
    /// Everything the system took.
    const fn system(&self) -> u64 {
        self.frames + self.host_tables + self.guest_tables + self.objects
    }

    /// Counts `count` objects of `kind` of `size_bits` (the retype's).
    fn add(&mut self, kind: ObjectKind, size_bits: u64, count: u64, purpose: Purpose) {
        let each = kind.size_bits(size_bits).map_or(0, |bits| 1_u64 << bits);
        let bytes = each.saturating_mul(count);
        let counter = match (purpose, kind) {
            (Purpose::Loader, _) => &mut self.loader,
            (_, ObjectKind::Frame4K | ObjectKind::Frame2M | ObjectKind::Frame1G) => &mut self.frames,
            (Purpose::GuestTable, _) => &mut self.guest_tables,
            (_, ObjectKind::PageTable | ObjectKind::PageDirectory | ObjectKind::PageDirectoryPointerTable) => {
                &mut self.host_tables
            }
            _ => &mut self.objects,
        };
        *counter = counter.saturating_add(bytes);
    }
}

/// Whom a retype serves, for [`RamUse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The system being built.
    System,
    /// A table of a guest's physical address space.
    GuestTable,
    /// The loader itself.
    Loader,
}

/// What was built.
struct Summary {
    domains: usize,
    objects: usize,
    caps: usize,
    mappings: usize,
    ram: RamUse,
}

fn load(system: &[u8], info: &RootInfo, sys: &mut Sys) -> Result<Summary, Failure> {
    if system.is_empty() {
        return refuse("reading the system", "this loader image carries no system (build it with the CLI)");
    }
    // No heap yet: fixed arrays.
    let devices: heapless::Vec<DeviceUntyped, MAX_UNTYPEDS> = info
        .untypeds
        .iter()
        .take(usize::try_from(info.untyped_count).unwrap_or(0).min(MAX_UNTYPEDS))
        .filter(|untyped| untyped.slot != 0 && untyped.is_device != 0 && untyped.size_bits < 64)
        .map(|untyped| DeviceUntyped {
            cap: Cap::new(untyped.slot),
            base: untyped.base,
            end: untyped.base.saturating_add(1 << untyped.size_bits),
            watermark: untyped.base,
        })
        .collect();
    let untypeds: heapless::Vec<Cap<kind::Untyped>, MAX_UNTYPEDS> = info
        .untypeds
        .iter()
        .take(usize::try_from(info.untyped_count).unwrap_or(0).min(MAX_UNTYPEDS))
        .filter(|untyped| untyped.slot != 0 && untyped.is_device == 0)
        .map(|untyped| Cap::new(untyped.slot))
        .collect();
    if untypeds.is_empty() {
        return refuse("reading the root information", "no RAM untyped");
    }
    if info.tsc_khz == 0 {
        return refuse("reading the root information", "the kernel does not know the TSC rate: budgets cannot be set");
    }
    let mut loader = Loader {
        sys,
        slots: SlotAllocator::new(info.first_free_slot, info.cnode_radix),
        untypeds,
        devices,
        tsc_khz: info.tsc_khz,
        objects: Vec::new(),
        tables: BTreeSet::new(),
        mappings: 0,
        caps: 0,
        ram: RamUse::default(),
    };
    loader.own_heap()?;
    let bundle = Bundle::from_bytes(system)
        .map_err(|error| Failure { doing: "reading the system bundle".into(), why: Why::Spec(format!("{error}")) })?;
    let spec = from_blob(bundle.spec)
        .map_err(|error| Failure { doing: "reading the system spec".into(), why: Why::Spec(format!("{error}")) })?;
    println!(
        "loader: {} protection domains, {} objects, {} program images",
        spec.domains.len(),
        spec.objects.len(),
        bundle.programs.len()
    );
    loader.create_objects(&spec)?;
    loader.fill_regions(&spec, &bundle)?;
    let mut roles = BTreeMap::new();
    for guest in &spec.guests {
        let info = loader.build_guest(&spec, &bundle, guest).map_err(|mut failure| {
            failure.doing = format!("guest {}: {}", guest.name, failure.doing);
            failure
        })?;
        roles.insert(guest.vmm, Role::Vmm(info, guest.vmx.map_or(0, |vmx| vmx.vmm_slot)));
        if let Some(vmx) = guest.vmx {
            let ram = (vmx.memory_address != 0)
                .then_some(MappedRam { address: vmx.memory_address, bytes: info.memory_bytes });
            roles.insert(vmx.domain, Role::Vmx(ram, vmx.vmx_slot, vmx.reply_slot));
        }
    }
    let mut threads = Vec::with_capacity(spec.domains.len());
    for (index, domain) in spec.domains.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let role = roles.get(&index).copied().unwrap_or(Role::Other);
        let disks = served_disks(&spec, index).map_err(|message| Failure {
            doing: format!("{}: list the disks it serves", domain.name),
            why: Why::Spec(message),
        })?;
        threads.push(loader.build_domain(&spec, &bundle, domain, role, &disks)?);
    }
    for (domain, tcb) in spec.domains.iter().zip(threads) {
        tcb.resume(loader.sys).doing(|| format!("{}: start its thread", domain.name))?;
    }
    Ok(Summary {
        domains: spec.domains.len(),
        objects: spec.objects.len(),
        caps: loader.caps,
        mappings: loader.mappings,
        ram: loader.ram,
    })
}

/// What a PD is to a guest, for its info page.
#[derive(Clone, Copy)]
enum Role {
    /// Its VMM: the guest, and the slot of its capability to call the
    /// guest's VMX (0: none).
    Vmm(GuestInfo, u64),
    /// Its VMX: where it maps the guest's RAM, and its slots of the device
    /// channel's endpoint and of its reply object.
    Vmx(Option<MappedRam>, u64, u64),
    /// Neither.
    Other,
}

/// A device untyped and how far the loader has used it (the kernel places
/// each new object at the next address aligned to its size).
struct DeviceUntyped {
    cap: Cap<kind::Untyped>,
    /// Its physical range.
    base: u64,
    end: u64,
    /// The first address not yet used.
    watermark: u64,
}

/// Where an object's original capabilities are in the loader's CNode.
#[derive(Clone, Copy)]
struct Originals {
    /// The first slot.
    slot: u64,
    /// How many (frames of a region; 1 otherwise).
    count: u64,
}

struct Loader<'a> {
    sys: &'a mut Sys,
    slots: SlotAllocator,
    untypeds: heapless::Vec<Cap<kind::Untyped>, MAX_UNTYPEDS>,
    /// Device memory, for regions at fixed physical addresses.
    devices: heapless::Vec<DeviceUntyped, MAX_UNTYPEDS>,
    tsc_khz: u64,
    /// By `ObjectId`.
    objects: Vec<Originals>,
    /// Paging structures made: (VSpace slot, shift, address >> shift).
    tables: BTreeSet<(u64, u32, u64)>,
    mappings: usize,
    caps: usize,
    /// The RAM retyped so far.
    ram: RamUse,
}

impl Loader<'_> {
    /// Maps the loader's own page table and heap.
    fn own_heap(&mut self) -> Result<(), Failure> {
        // Nothing may allocate before the heap exists: the page tables are
        // made without `tables_for` and recorded afterwards.
        let doing = || String::from("map the loader's heap");
        let levels = [
            (PDPT_SHIFT, ObjectKind::PageDirectoryPointerTable),
            (PD_SHIFT, ObjectKind::PageDirectory),
            (PT_SHIFT, ObjectKind::PageTable),
        ];
        for (_, kind) in levels {
            let table = Cap::<kind::PageTable>::new(self.retype_for(kind, 0, 1, Purpose::Loader).doing(doing)?);
            match table.map(self.sys, ROOT_VSPACE, SCRATCH_PAGE) {
                Ok(()) | Err(Error::DeleteFirst) => {}
                Err(error) => return Err(error).doing(doing),
            }
        }
        let first = self.retype_for(ObjectKind::Frame4K, 0, HEAP_PAGES as u64, Purpose::Loader).doing(doing)?;
        let mut frames = [Cap::<kind::Frame>::new(0); HEAP_PAGES];
        for (index, frame) in (0..).zip(frames.iter_mut()) {
            *frame = Cap::new(first + index);
        }
        HEAP.map_and_init(self.sys, ROOT_VSPACE, HEAP_START, &frames).doing(doing)?;
        for (shift, _) in levels {
            self.tables.insert((ROOT_VSPACE.cptr().0, shift, SCRATCH_PAGE >> shift));
        }
        Ok(())
    }

    /// `count` new objects in consecutive slots, from the first untyped
    /// with room for all of them.
    fn retype(&mut self, object: ObjectKind, size_bits: u64, count: u64) -> Result<u64, Error> {
        self.retype_for(object, size_bits, count, Purpose::System)
    }

    /// [`Self::retype`], counted in [`RamUse`] for `purpose`.
    fn retype_for(&mut self, object: ObjectKind, size_bits: u64, count: u64, purpose: Purpose) -> Result<u64, Error> {
        let first = self.slots.take(count)?;
        let mut last_error = Error::NotEnoughMemory;
        for untyped in self.untypeds.clone() {
            match untyped.retype(self.sys, object, size_bits, Destination::slots_of(ROOT_CNODE, first), count) {
                Ok(()) => {
                    self.ram.add(object, size_bits, count, purpose);
                    return Ok(first);
                }
                Err(Error::NotEnoughMemory) => last_error = Error::NotEnoughMemory,
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    fn original(&self, id: ObjectId) -> Result<Originals, Failure> {
        usize::try_from(id.0)
            .ok()
            .and_then(|index| self.objects.get(index))
            .copied()
            .map_or_else(|| refuse("looking up an object", format!("object {} does not exist", id.0)), Ok)
    }

    /// Every object, in the spec's order; device frames first, in address
    /// order, since a device untyped is used from its bottom up.
    fn create_objects(&mut self, spec: &SystemSpec) -> Result<(), Failure> {
        self.objects = alloc::vec![Originals { slot: 0, count: 0 }; spec.objects.len()];
        let mut fixed: Vec<(u64, usize)> = spec
            .objects
            .iter()
            .enumerate()
            .filter_map(|(index, object)| match object.kind {
                SpecKind::Frames { physical: Some(physical), .. } => Some((physical, index)),
                _ => None,
            })
            .collect();
        fixed.sort_unstable();
        for (physical, index) in fixed {
            let object = &spec.objects[index];
            let SpecKind::Frames { page_size, count, .. } = object.kind else { continue };
            let slot = self.device_frames(physical, page_size, count).map_err(|mut failure| {
                failure.doing = format!("create `{}`: {}", object.name, failure.doing);
                failure
            })?;
            self.objects[index] = Originals { slot, count };
        }
        for (index, object) in spec.objects.iter().enumerate() {
            let doing = || format!("create `{}`", object.name);
            let one = |slot| Originals { slot, count: 1 };
            let originals = match &object.kind {
                SpecKind::Tcb { core, .. } => {
                    if *core != 0 {
                        return refuse(doing(), format!("core {core}: this kernel runs on core 0 only"));
                    }
                    one(self.retype(ObjectKind::Tcb, 0, 1).doing(doing)?)
                }
                SpecKind::SchedContext { .. } => {
                    one(self.retype(ObjectKind::SchedContext, u64::from(spec_sched_bits()), 1).doing(doing)?)
                }
                SpecKind::CNode { radix } => one(self.retype(ObjectKind::CNode, u64::from(*radix), 1).doing(doing)?),
                SpecKind::VSpace => {
                    let slot = self.retype(ObjectKind::Pml4, 0, 1).doing(doing)?;
                    ASID_POOL.assign(self.sys, Cap::new(slot)).doing(|| format!("give `{}` an ASID", object.name))?;
                    one(slot)
                }
                SpecKind::GuestSpace => {
                    let slot = self.retype(ObjectKind::GuestSpace, 0, 1).doing(doing)?;
                    ASID_POOL
                        .assign_guest(self.sys, Cap::new(slot))
                        .doing(|| format!("give `{}` an ASID", object.name))?;
                    one(slot)
                }
                SpecKind::VCpu => one(self.retype(ObjectKind::VCpu, 0, 1).doing(doing)?),
                SpecKind::Endpoint => one(self.retype(ObjectKind::Endpoint, 0, 1).doing(doing)?),
                SpecKind::Notification => one(self.retype(ObjectKind::Notification, 0, 1).doing(doing)?),
                SpecKind::Reply => one(self.retype(ObjectKind::Reply, 0, 1).doing(doing)?),
                // Made above, from device memory.
                SpecKind::Frames { physical: Some(_), .. } => continue,
                SpecKind::Frames { page_size, count, physical: None } => {
                    let Some(kind) = frame_kind(*page_size) else {
                        return refuse(doing(), format!("page size {page_size:#x}"));
                    };
                    Originals { slot: self.retype(kind, 0, *count).doing(doing)?, count: *count }
                }
                SpecKind::IrqHandler { line, notification } => {
                    let slot = self.slots.take_one().doing(doing)?;
                    IRQ_CONTROL.get(self.sys, *line, ROOT_CNODE, Slot::index(slot)).doing(doing)?;
                    // Each line signals its own bit of the device's notification.
                    let signal = self.slots.take_one().doing(doing)?;
                    let source = self.original(*notification)?.slot;
                    let badge = 1_u64 << line;
                    ROOT_CNODE
                        .mint(self.sys, Slot::index(signal), ROOT_CNODE, Slot::index(source), Rights::WRITE, badge)
                        .and_then(|()| Cap::<kind::IrqHandler>::new(slot).set_notification(self.sys, Cap::new(signal)))
                        .doing(|| format!("bind `{}` to its notification", object.name))?;
                    one(slot)
                }
                SpecKind::IoPorts { first, last } => {
                    let slot = self.slots.take_one().doing(doing)?;
                    IO_PORT_CONTROL.issue(self.sys, *first, *last, ROOT_CNODE, Slot::index(slot)).doing(doing)?;
                    one(slot)
                }
            };
            self.objects[index] = originals;
        }
        Ok(())
    }

    /// `count` frames of `page_size` at `physical`, from the device
    /// untyped that covers them: first untypeds that fill the gap from its
    /// watermark (each the largest aligned block that fits), then the
    /// frames. Returns their first slot.
    fn device_frames(&mut self, physical: u64, page_size: u64, count: u64) -> Result<u64, Failure> {
        let Some(kind) = frame_kind(page_size) else {
            return refuse("its frames", format!("page size {page_size:#x}"));
        };
        let end = page_size.checked_mul(count).and_then(|bytes| physical.checked_add(bytes));
        let covering =
            self.devices.iter().position(|device| end.is_some_and(|end| device.base <= physical && end <= device.end));
        let Some(index) = covering else {
            return refuse(
                "find its device memory",
                format!("no device untyped covers {physical:#x}: it is RAM, the kernel's, or past 4 GiB"),
            );
        };
        let (cap, mut cursor) = (self.devices[index].cap, self.devices[index].watermark);
        if cursor > physical {
            return refuse(
                "find its device memory",
                "another region already took these frames (shared physical ranges are not supported yet)",
            );
        }
        while cursor < physical {
            // The largest block at `cursor` aligned to its size that ends
            // by `physical`.
            let mut bits = 63 - u64::from((physical - cursor).leading_zeros());
            while !cursor.is_multiple_of(1 << bits) {
                bits -= 1;
            }
            let filler = self.slots.take_one().doing(|| String::from("skip to its address"))?;
            cap.retype(self.sys, ObjectKind::Untyped, bits, Destination::slots_of(ROOT_CNODE, filler), 1)
                .doing(|| format!("skip {:#x} bytes of device memory at {cursor:#x}", 1_u64 << bits))?;
            cursor += 1 << bits;
        }
        let first = self.slots.take(count).doing(|| String::from("its slots"))?;
        cap.retype(self.sys, kind, 0, Destination::slots_of(ROOT_CNODE, first), count)
            .doing(|| format!("retype {count} frames at {physical:#x}"))?;
        self.devices[index].watermark = end.unwrap_or(u64::MAX);
        Ok(first)
    }

    /// Makes the PDPT, page directory and page table that a page of
    /// `page_size` at `address` in `vspace` needs, unless made already.
    fn tables_for(&mut self, vspace: Cap<kind::Pml4>, address: u64, page_size: u64) -> Result<(), Error> {
        self.tables_in(Space::Host(vspace), address, page_size)
    }

    /// Likewise in a host VSpace or a GuestSpace.
    fn tables_in(&mut self, space: Space, address: u64, page_size: u64) -> Result<(), Error> {
        let levels: &[(u32, ObjectKind)] = &[
            (PDPT_SHIFT, ObjectKind::PageDirectoryPointerTable),
            (PD_SHIFT, ObjectKind::PageDirectory),
            (PT_SHIFT, ObjectKind::PageTable),
        ];
        let needed = match page_size {
            size if size == PAGE_SIZES[2] => 1,
            size if size == PAGE_SIZES[1] => 2,
            _ => 3,
        };
        for &(shift, kind) in &levels[..needed] {
            let key = (space.slot(), shift, address >> shift);
            if self.tables.contains(&key) {
                continue;
            }
            let purpose = match space {
                Space::Host(vspace) if vspace.cptr() == ROOT_VSPACE.cptr() => Purpose::Loader,
                Space::Host(_) => Purpose::System,
                Space::Guest(_) => Purpose::GuestTable,
            };
            let table = Cap::<kind::PageTable>::new(self.retype_for(kind, 0, 1, purpose)?);
            let mapped = match space {
                Space::Host(vspace) => table.map(self.sys, vspace, address),
                Space::Guest(guest_space) => table.map_guest(self.sys, guest_space, address),
            };
            match mapped {
                // The loader's own VSpace has the kernel's structures for its
                // image below: a table may be there already.
                Ok(()) | Err(Error::DeleteFirst) => {}
                Err(error) => return Err(error),
            }
            self.tables.insert(key);
        }
        Ok(())
    }

    /// Maps the frame `frame` at `address` in `vspace`.
    fn map(
        &mut self,
        frame: Cap<kind::Frame>,
        vspace: Cap<kind::Pml4>,
        address: u64,
        page_size: u64,
        rights: Rights,
        attributes: u64,
    ) -> Result<(), Error> {
        self.tables_for(vspace, address, page_size)?;
        frame.map(self.sys, vspace, address, rights, attributes)?;
        self.mappings += 1;
        Ok(())
    }

    /// A new 4 KiB frame holding `bytes` (zero-filled past them).
    fn filled_frame(&mut self, words: impl Iterator<Item = u64>) -> Result<Cap<kind::Frame>, Error> {
        let frame = Cap::<kind::Frame>::new(self.retype(ObjectKind::Frame4K, 0, 1)?);
        let mut page = MappedPage::map(self.sys, frame, ROOT_VSPACE, SCRATCH_PAGE)?;
        let mut result = Ok(());
        for (index, word) in words.enumerate() {
            if word != 0 {
                result = result.and(page.write(index, word));
            }
        }
        page.unmap(self.sys).map_err(|(error, _)| error)?;
        result.map(|()| frame)
    }

    /// Builds guest `guest`: maps each memory region into its GuestSpace
    /// (readable, writable and executable, through capabilities of its
    /// own), loads its image, puts every VCpu in the GuestSpace and binds
    /// vCPU 0 to the VMM's thread. Returns what the VMM's info page says.
    fn build_guest(&mut self, spec: &SystemSpec, bundle: &Bundle<'_>, guest: &GuestSpec) -> Result<GuestInfo, Failure> {
        let space = Cap::<kind::GuestSpace>::new(self.original(guest.space)?.slot);
        let mut frames_at: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut end = 0;
        for memory in &guest.memory {
            let Some(region) = usize::try_from(memory.region).ok().and_then(|index| spec.regions.get(index)) else {
                return refuse("map its memory", format!("region {} does not exist", memory.region));
            };
            let doing = || format!("map `{}` at guest-physical {:#x}", region.name, memory.guest_physical);
            let Some(SpecKind::Frames { page_size, physical: None, .. }) =
                spec.object(region.frames).map(|object| &object.kind)
            else {
                return refuse(doing(), "its frames are not RAM");
            };
            let page_size = *page_size;
            let frames = self.original(region.frames)?;
            let rights = Rights::READ | Rights::WRITE;
            for index in 0..frames.count {
                let Some(address) =
                    index.checked_mul(page_size).and_then(|offset| memory.guest_physical.checked_add(offset))
                else {
                    return refuse(doing(), "its pages reach past guest-physical space");
                };
                let copy = self.slots.take_one().doing(doing)?;
                ROOT_CNODE
                    .copy(self.sys, Slot::index(copy), ROOT_CNODE, Slot::index(frames.slot + index), rights)
                    .doing(doing)?;
                self.tables_in(Space::Guest(space), address, page_size).doing(doing)?;
                Cap::<kind::Frame>::new(copy)
                    .map_guest(self.sys, space, address, rights, attributes::EXECUTE)
                    .doing(doing)?;
                self.mappings += 1;
                frames_at.insert(address, (frames.slot + index, page_size));
            }
            end = end.max(memory.guest_physical.saturating_add(region.size));
        }
        let staging = match &guest.kernel {
            None => None,
            Some(kernel) => Some(self.stage_linux(bundle, guest, kernel, end, &frames_at)?),
        };
        let entry = match &guest.image {
            None => NO_GUEST_ENTRY,
            Some(image) => {
                let Some(bytes) = bundle.program(image) else {
                    return refuse(format!("load image `{image}`"), "the bundle has no such program");
                };
                self.load_guest_image(bytes, end, &frames_at).map_err(|mut failure| {
                    failure.doing = format!("load image `{image}`: {}", failure.doing);
                    failure
                })?
            }
        };
        let vmm = usize::try_from(guest.vmm).ok().and_then(|index| spec.domains.get(index));
        let Some(vmm) = vmm else { return refuse("find its VMM", format!("domain {} does not exist", guest.vmm)) };
        let vmm_tcb = Cap::<kind::Tcb>::new(self.original(vmm.tcb)?.slot);
        for (number, vcpu) in guest.vcpus.iter().enumerate() {
            let vcpu = Cap::<kind::VCpu>::new(self.original(*vcpu)?.slot);
            vcpu.set_space(self.sys, space).doing(|| format!("put vCPU {number} in its GuestSpace"))?;
        }
        // One thread runs one VCpu at a time: the VMM starts with vCPU 0.
        if let Some(first) = guest.vcpus.first() {
            Cap::<kind::VCpu>::new(self.original(*first)?.slot)
                .set_tcb(self.sys, vmm_tcb)
                .doing(|| format!("bind vCPU 0 to `{}`", vmm.name))?;
        }
        let memory = guest.memory.first().map_or(0, |memory| memory.vmm_address.wrapping_sub(memory.guest_physical));
        if let Some(port) = guest.debug_port {
            // The slot the info page names holds the VMM's capability to
            // exactly the port's eight I/O ports.
            let cap = usize::try_from(port.slot).ok().and_then(|slot| vmm.caps.get(slot));
            let ports = cap.filter(|cap| cap.slot == port.slot).and_then(|cap| spec.object(cap.object));
            let expected = SpecKind::IoPorts { first: port.first_port, last: port.first_port.saturating_add(7) };
            if port.slot == 0 || ports.map(|object| &object.kind) != Some(&expected) {
                return refuse(
                    "name its debug port",
                    format!("slot {} of `{}` is not I/O ports {:#x}..", port.slot, vmm.name, port.first_port),
                );
            }
        }
        Ok(GuestInfo {
            memory,
            memory_bytes: end,
            vcpu_slot: guest.first_vcpu_slot,
            vcpus: u64::try_from(guest.vcpus.len()).unwrap_or(u64::MAX),
            entry,
            kernel: staging.map(|staging| staging.kernel),
            initrd: staging.and_then(|staging| staging.initrd),
            cmdline: staging.and_then(|staging| staging.cmdline),
            disks: served_disks(spec, guest.vmm).or_else(|message| refuse("list its disks", message))?,
            debug_port: guest.debug_port,
        })
    }

    /// Stages the Linux guest's kernel (the bzImage file as it is), its
    /// initramfs and its command line (with a NUL after it) into its memory
    /// `[0, memory_bytes)` where `linux::Staging::plan` puts them; returns
    /// the placement for the VMM's info page.
    fn stage_linux(
        &mut self,
        bundle: &Bundle<'_>,
        guest: &GuestSpec,
        kernel_name: &str,
        memory_bytes: u64,
        frames_at: &BTreeMap<u64, (u64, u64)>,
    ) -> Result<Staging, Failure> {
        let doing = format!("stage kernel `{kernel_name}`");
        let Some(kernel) = bundle.guest_file(kernel_name) else {
            return refuse(doing, "the bundle has no such file");
        };
        let initrd = match &guest.initrd {
            None => None,
            Some(name) => match bundle.guest_file(name) {
                Some(bytes) => Some(bytes),
                None => return refuse(format!("stage initramfs `{name}`"), "the bundle has no such file"),
            },
        };
        let header = match SetupHeader::parse(kernel) {
            Ok(header) => header,
            Err(error) => return refuse(doing, format!("{error}")),
        };
        let length = |bytes: &[u8]| u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let cmdline = guest.cmdline.as_deref().map(str::as_bytes);
        let staging =
            match Staging::plan(memory_bytes, &header, length(kernel), initrd.map(length), cmdline.map(length)) {
                Ok(staging) => staging,
                Err(error) => return refuse(doing, format!("{error}")),
            };
        self.write_guest(frames_at, staging.kernel.guest_physical, kernel)?;
        if let (Some(place), Some(bytes)) = (staging.initrd, initrd) {
            self.write_guest(frames_at, place.guest_physical, bytes)?;
        }
        if let (Some(place), Some(text)) = (staging.cmdline, cmdline) {
            let mut terminated = Vec::with_capacity(text.len() + 1);
            terminated.extend_from_slice(text);
            terminated.push(0);
            self.write_guest(frames_at, place.guest_physical, &terminated)?;
        }
        println!(
            "loader: guest {}: kernel `{kernel_name}` ({} bytes) staged at {:#x}, initramfs at {:#x} ({} bytes), \
             command line at {:#x} ({} bytes)",
            guest.name,
            staging.kernel.bytes,
            staging.kernel.guest_physical,
            staging.initrd.map_or(0, |initrd| initrd.guest_physical),
            staging.initrd.map_or(0, |initrd| initrd.bytes),
            staging.cmdline.map_or(0, |cmdline| cmdline.guest_physical),
            staging.cmdline.map_or(0, |cmdline| cmdline.bytes),
        );
        Ok(staging)
    }

    /// Writes `bytes` into guest memory from the page-aligned
    /// guest-physical `start`, frame by frame through `frames_at` (from a
    /// frame's guest-physical address to its original slot and size): each
    /// frame is mapped into the loader once, through one capability slot
    /// that is used again for the next (a kernel of 14 MB spans thousands
    /// of 4 KiB pages: a slot each would exhaust the loader's CNode). The
    /// last word is completed with zeros, which the page held anyway.
    fn write_guest(&mut self, frames_at: &BTreeMap<u64, (u64, u64)>, start: u64, bytes: &[u8]) -> Result<(), Failure> {
        let Some(end) = u64::try_from(bytes.len()).ok().and_then(|length| start.checked_add(length)) else {
            return refuse(format!("write guest-physical {start:#x}"), "the bytes reach past guest-physical space");
        };
        if !start.is_multiple_of(8) {
            return refuse(format!("write guest-physical {start:#x}"), "not word-aligned");
        }
        let copy = self.slots.take_one().doing(|| String::from("take a slot for staging"))?;
        let mut address = start;
        while address < end {
            let doing = || format!("write guest-physical {address:#x}");
            let frame = frames_at.range(..=address).next_back().map(|(first, frame)| (*first, *frame));
            let Some((first, (original, size))) = frame.filter(|(first, (_, size))| address - first < *size) else {
                return refuse(doing(), "no guest memory is there");
            };
            if size != PAGE_SIZES[0] && size != PAGE_SIZES[1] {
                return refuse(doing(), "files are staged into memory of 4 KiB or 2 MiB pages");
            }
            let chunk_end = end.min(first.saturating_add(size));
            let (Ok(from), Ok(to), Ok(first_word)) = (
                usize::try_from(address - start),
                usize::try_from(chunk_end - start),
                usize::try_from((address - first) / 8),
            ) else {
                return refuse(doing(), "the bytes reach past the loader's address space");
            };
            let bytes = bytes.get(from..to).unwrap_or_default();
            self.write_frame(copy, original, size, first_word, contents::words(bytes)).doing(doing)?;
            address = chunk_end;
        }
        Ok(())
    }

    /// Writes `words` into the frame whose original capability is in slot
    /// `original` (4 KiB or 2 MiB), from its word `first_word` on, through
    /// a copy in the empty slot `copy` mapped at the scratch window; the
    /// copy is unmapped and deleted again, so `copy` is empty afterwards.
    fn write_frame(
        &mut self,
        copy: u64,
        original: u64,
        size: u64,
        first_word: usize,
        words: impl Iterator<Item = u64>,
    ) -> Result<(), Error> {
        ROOT_CNODE.copy(
            self.sys,
            Slot::index(copy),
            ROOT_CNODE,
            Slot::index(original),
            Rights::READ | Rights::WRITE,
        )?;
        let mapped = if size == PAGE_SIZES[0] {
            MappedPage::map(self.sys, Cap::new(copy), ROOT_VSPACE, SCRATCH_PAGE)
        } else if size == PAGE_SIZES[1] {
            self.tables_for(ROOT_VSPACE, LARGE_SCRATCH, size)
                .and_then(|()| MappedPage::map_large(self.sys, Cap::new(copy), ROOT_VSPACE, LARGE_SCRATCH))
        } else {
            Err(Error::InvalidArgument)
        };
        let mut window = match mapped {
            Ok(window) => window,
            Err(error) => {
                // Leave the slot empty for the next frame; the mapping's
                // error is the one to report.
                let _ = ROOT_CNODE.delete(self.sys, Slot::index(copy));
                return Err(error);
            }
        };
        let mut result = Ok(());
        for (index, word) in (first_word..).zip(words) {
            result = result.and(window.write(index, word));
        }
        window.unmap(self.sys).map_err(|(error, _)| error).and(result)?;
        ROOT_CNODE.delete(self.sys, Slot::index(copy))
    }

    /// Copies each region's `contents` (a guest file of the bundle) into
    /// its first bytes, frame by frame through one capability slot
    /// (`contents::Fill`); the rest of the region stays as Untyped::Retype
    /// left it, zero.
    fn fill_regions(&mut self, spec: &SystemSpec, bundle: &Bundle<'_>) -> Result<(), Failure> {
        let mut copy = None;
        for region in &spec.regions {
            let Some(file_name) = &region.contents else { continue };
            let doing = || format!("fill region `{}` with `{file_name}`", region.name);
            let Some(file) = bundle.guest_file(file_name) else {
                return refuse(doing(), "the bundle has no such file");
            };
            let Some(SpecKind::Frames { page_size, count, physical: None }) =
                spec.object(region.frames).map(|object| &object.kind)
            else {
                return refuse(doing(), "its frames are not RAM");
            };
            let file_bytes = u64::try_from(file.len()).unwrap_or(u64::MAX);
            let fill = match Fill::plan(*page_size, *count, file_bytes) {
                Ok(fill) => fill,
                Err(error) => return refuse(doing(), format!("{error}")),
            };
            let frames = self.original(region.frames)?;
            let copy = match copy {
                Some(slot) => slot,
                None => *copy.insert(self.slots.take_one().doing(doing)?),
            };
            for chunk in fill.chunks() {
                let doing = || format!("fill region `{}`: frame {}", region.name, chunk.frame);
                let (Ok(from), Ok(to)) = (usize::try_from(chunk.file.start), usize::try_from(chunk.file.end)) else {
                    return refuse(doing(), "the file reaches past the loader's address space");
                };
                let bytes = file.get(from..to).unwrap_or_default();
                self.write_frame(copy, frames.slot + chunk.frame, *page_size, 0, contents::words(bytes))
                    .doing(doing)?;
            }
            println!(
                "loader: region {}: {} bytes of `{file_name}`, {} bytes of zeros after them",
                region.name,
                file_bytes,
                region.size.saturating_sub(file_bytes)
            );
        }
        Ok(())
    }

    /// Copies the ELF `image`'s segments into guest memory (a segment's
    /// address is guest-physical) through the frames `frames_at` (from a
    /// frame's guest-physical address to its original slot and size),
    /// each mapped into the loader for the pages it takes; returns the
    /// image's entry point.
    fn load_guest_image(
        &mut self,
        image: &[u8],
        end: u64,
        frames_at: &BTreeMap<u64, (u64, u64)>,
    ) -> Result<u64, Failure> {
        let executable = match elf::parse_guest(image, Bounds { start: 0, end }) {
            Ok(executable) => executable,
            Err(error) => return refuse("parse it", format!("{error}")),
        };
        let mut bytes = [0_u8; PAGE_BYTES];
        for segment in executable.segments() {
            for page in (segment.first_page()..segment.page_end()).step_by(PAGE_BYTES) {
                let doing = || format!("fill guest-physical {page:#x}");
                let frame = frames_at.range(..=page).next_back().map(|(start, frame)| (*start, *frame));
                let Some((start, (original, size))) = frame.filter(|(start, (_, size))| page - start < *size) else {
                    return refuse(doing(), "no guest memory is there");
                };
                segment.fill_page(image, page, &mut bytes);
                let copy = self.slots.take_one().doing(doing)?;
                ROOT_CNODE
                    .copy(self.sys, Slot::index(copy), ROOT_CNODE, Slot::index(original), Rights::READ | Rights::WRITE)
                    .doing(doing)?;
                let mut window = if size == PAGE_SIZES[0] {
                    MappedPage::map(self.sys, Cap::new(copy), ROOT_VSPACE, SCRATCH_PAGE)
                } else if size == PAGE_SIZES[1] {
                    self.tables_for(ROOT_VSPACE, LARGE_SCRATCH, size)
                        .and_then(|()| MappedPage::map_large(self.sys, Cap::new(copy), ROOT_VSPACE, LARGE_SCRATCH))
                } else {
                    return refuse(doing(), "images load into memory of 4 KiB or 2 MiB pages");
                }
                .doing(doing)?;
                let first = usize::try_from((page - start) / 8).unwrap_or(usize::MAX);
                let mut result = Ok(());
                for (index, chunk) in bytes.chunks_exact(8).enumerate() {
                    let mut word = [0_u8; 8];
                    word.copy_from_slice(chunk);
                    result = result.and(window.write(first.saturating_add(index), u64::from_le_bytes(word)));
                }
                window.unmap(self.sys).map_err(|(error, _)| error).and(result).doing(doing)?;
            }
        }
        Ok(executable.entry)
    }

    /// Builds PD `domain`: returns its thread, ready to start.
    fn build_domain(
        &mut self,
        spec: &SystemSpec,
        bundle: &Bundle<'_>,
        domain: &DomainSpec,
        role: Role,
        disks: &[Option<MappedDisk>; MAX_GUEST_DISKS],
    ) -> Result<Cap<kind::Tcb>, Failure> {
        let name = domain.name.as_str();
        let vspace = Cap::<kind::Pml4>::new(self.original(domain.vspace)?.slot);
        let tcb = Cap::<kind::Tcb>::new(self.original(domain.tcb)?.slot);
        let Some(image) = bundle.program(&domain.image) else {
            return refuse(format!("{name}: load its image"), format!("the bundle has no program `{}`", domain.image));
        };
        let entry = self.load_image(vspace, image).map_err(|mut failure| {
            failure.doing = format!("{name}: load image `{}`: {}", domain.image, failure.doing);
            failure
        })?;

        let data = Rights::READ | Rights::WRITE;
        let stack_bytes = if domain.stack_bytes == 0 { layout::DEFAULT_STACK_BYTES } else { domain.stack_bytes };
        if stack_bytes > layout::MAX_STACK_BYTES || domain.heap_bytes > layout::MAX_HEAP_BYTES {
            return refuse(format!("{name}: lay out its memory"), "the stack or heap is larger than the layout allows");
        }
        for page in 1..=stack_bytes.div_ceil(4096) {
            let frame = Cap::new(self.retype(ObjectKind::Frame4K, 0, 1).doing(|| format!("{name}: make its stack"))?);
            self.map(frame, vspace, layout::STACK_TOP - page * 4096, 4096, data, attributes::DATA)
                .doing(|| format!("{name}: map its stack"))?;
        }
        let buffer = Cap::new(self.retype(ObjectKind::Frame4K, 0, 1).doing(|| format!("{name}: make its IPC buffer"))?);
        self.map(buffer, vspace, layout::IPC_BUFFER, 4096, data, attributes::DATA)
            .and_then(|()| tcb.set_ipc_buffer(self.sys, buffer))
            .doing(|| format!("{name}: map and set its IPC buffer"))?;
        let mut info = PdInfo::new(name, domain.heap_bytes, stack_bytes).with_tsc_khz(self.tsc_khz);
        match role {
            Role::Vmm(guest, device_server) => info = info.with_guest(guest).with_device_server(device_server),
            Role::Vmx(ram, endpoint, reply) => info = info.with_vmx(ram, endpoint, reply),
            Role::Other => {}
        }
        // A VMM's disks came with its guest; a VMX's come here.
        info = info.with_disks(disks);
        let info_frame =
            self.filled_frame(info.to_words().into_iter()).doing(|| format!("{name}: write its info page"))?;
        self.map(info_frame, vspace, layout::INFO_PAGE, 4096, Rights::READ, attributes::DATA)
            .doing(|| format!("{name}: map its info page"))?;
        for page in 0..domain.heap_bytes.div_ceil(4096) {
            let frame = Cap::new(self.retype(ObjectKind::Frame4K, 0, 1).doing(|| format!("{name}: make its heap"))?);
            self.map(frame, vspace, layout::HEAP_BASE + page * 4096, 4096, data, attributes::DATA)
                .doing(|| format!("{name}: map its heap"))?;
        }

        for mapping in &domain.mappings {
            let Some(region) = usize::try_from(mapping.region).ok().and_then(|index| spec.regions.get(index)) else {
                return refuse(format!("{name}: map a region"), format!("region {} does not exist", mapping.region));
            };
            let doing = || format!("{name}: map region `{}` at {:#x}", region.name, mapping.address);
            let Some(SpecKind::Frames { page_size, .. }) = spec.object(region.frames).map(|object| &object.kind) else {
                return refuse(doing(), "its frames are not frames");
            };
            let page_size = *page_size;
            let frames = self.original(region.frames)?;
            let rights = Rights::from_bits_truncate(u8::try_from(mapping.rights.bits()).unwrap_or(0));
            for index in 0..frames.count {
                // A capability of its own for each mapping.
                let copy = self.slots.take_one().doing(doing)?;
                ROOT_CNODE
                    .copy(self.sys, Slot::index(copy), ROOT_CNODE, Slot::index(frames.slot + index), rights)
                    .doing(doing)?;
                let Some(address) = index.checked_mul(page_size).and_then(|offset| mapping.address.checked_add(offset))
                else {
                    return refuse(doing(), "the region's pages reach past the address space");
                };
                self.map(Cap::new(copy), vspace, address, page_size, rights, mapping.attributes()).doing(doing)?;
            }
        }

        let radix = self.fill_cnode(spec, domain)?;
        self.prepare_thread(spec, domain, radix, tcb, vspace, entry)?;
        Ok(tcb)
    }

    /// Loads the ELF `image` into `vspace`; returns its entry point.
    fn load_image(&mut self, vspace: Cap<kind::Pml4>, image: &[u8]) -> Result<u64, Failure> {
        let bounds = Bounds { start: layout::IMAGE_BASE, end: layout::IMAGE_END };
        let executable = match elf::parse(image, bounds) {
            Ok(executable) => executable,
            Err(error) => return refuse("parse it", format!("{error}")),
        };
        let mut bytes = [0_u8; PAGE_BYTES];
        for segment in executable.segments() {
            let mut rights = Rights::READ;
            if segment.permissions.write {
                rights |= Rights::WRITE;
            }
            let attributes = if segment.permissions.execute { attributes::EXECUTE } else { attributes::DATA };
            for page in (segment.first_page()..segment.page_end()).step_by(PAGE_BYTES) {
                segment.fill_page(image, page, &mut bytes);
                let words = bytes.chunks_exact(8).map(|chunk| {
                    let mut word = [0_u8; 8];
                    word.copy_from_slice(chunk);
                    u64::from_le_bytes(word)
                });
                let frame = self.filled_frame(words).doing(|| format!("fill the page at {page:#x}"))?;
                self.map(frame, vspace, page, 4096, rights, attributes)
                    .doing(|| format!("map the page at {page:#x}"))?;
            }
        }
        Ok(executable.entry)
    }

    /// Puts the PD's capabilities into its CNode, slot by slot; returns
    /// the CNode's radix.
    fn fill_cnode(&mut self, spec: &SystemSpec, domain: &DomainSpec) -> Result<u8, Failure> {
        let name = domain.name.as_str();
        let cnode = Cap::<kind::CNode>::new(self.original(domain.cnode)?.slot);
        let Some(SpecKind::CNode { radix }) = spec.object(domain.cnode).map(|object| &object.kind) else {
            return refuse(format!("{name}: fill its CNode"), "its CNode is not a CNode");
        };
        let radix = *radix;
        for cap in &domain.caps {
            let source = self.original(cap.object)?.slot;
            let rights = Rights::from_bits_truncate(u8::try_from(cap.rights & 0xf).unwrap_or(0));
            // A CNode capability gets the guard that makes the PD's
            // capability addresses plain slot numbers; the rest their badge.
            let data = if cap.object == domain.cnode { guard(radix) } else { cap.badge };
            let dest = Slot { index: cap.slot, depth: u64::from(radix) };
            // A reply object's capability cannot be copied (the kernel
            // keeps one per object): the PD gets the original.
            let is_reply = spec.object(cap.object).is_some_and(|object| object.kind == SpecKind::Reply);
            let put = if is_reply {
                cnode.move_(self.sys, dest, ROOT_CNODE, Slot::index(source))
            } else {
                cnode.mint(self.sys, dest, ROOT_CNODE, Slot::index(source), rights, data)
            };
            put.doing(|| format!("{name}: put `{}` in slot {}", cap.name, cap.slot))?;
            self.caps += 1;
        }
        Ok(radix)
    }

    /// Sets up the PD's thread: its spaces, priority, budget and registers.
    fn prepare_thread(
        &mut self,
        spec: &SystemSpec,
        domain: &DomainSpec,
        radix: u8,
        tcb: Cap<kind::Tcb>,
        vspace: Cap<kind::Pml4>,
        entry: u64,
    ) -> Result<(), Failure> {
        let name = domain.name.as_str();
        let Some(SpecKind::Tcb { priority, .. }) = spec.object(domain.tcb).map(|object| &object.kind) else {
            return refuse(format!("{name}: set up its thread"), "its TCB is not a TCB");
        };
        let Some(SpecKind::SchedContext { budget_ns, period_ns }) =
            spec.object(domain.sched_context).map(|object| &object.kind)
        else {
            return refuse(format!("{name}: set up its thread"), "its scheduling context is not one");
        };
        // The CSpace root: the PD's CNode with the guard that makes a
        // capability address its slot number.
        let cspace = self.slots.take_one().doing(|| format!("{name}: set its spaces"))?;
        let cnode = self.original(domain.cnode)?.slot;
        let all = Rights::ALL;
        ROOT_CNODE
            .mint(self.sys, Slot::index(cspace), ROOT_CNODE, Slot::index(cnode), all, guard(radix))
            .and_then(|()| tcb.set_space(self.sys, Cap::new(cspace), Some(vspace)))
            .doing(|| format!("{name}: set its spaces"))?;
        tcb.set_priority(self.sys, ROOT_TCB, *priority).doing(|| format!("{name}: set priority {priority}"))?;
        let ticks = |nanoseconds: u64| {
            u64::try_from(u128::from(nanoseconds) * u128::from(self.tsc_khz) / 1_000_000).unwrap_or(u64::MAX)
        };
        let (budget, period) = (ticks(*budget_ns), ticks(*period_ns));
        let context = Cap::<kind::SchedContext>::new(self.original(domain.sched_context)?.slot);
        SCHED_CONTROL
            .configure(self.sys, context, budget, period)
            .and_then(|()| tcb.bind_sched_context(self.sys, context))
            .doing(|| format!("{name}: give it {budget} TSC ticks in every {period}"))?;
        if domain.passive {
            tcb.set_passive(self.sys, true).doing(|| format!("{name}: make it a passive server"))?;
        }
        let registers =
            Registers { rip: entry, rsp: layout::STACK_TOP, rflags: 0, rdi: layout::INFO_PAGE, rsi: 0, rdx: 0 };
        tcb.write_registers(self.sys, &registers).doing(|| format!("{name}: set its registers"))?;
        if let Some(handler) = &domain.fault_handler {
            let doing = || format!("{name}: set its fault handler");
            let endpoint = self.original(handler.endpoint)?.slot;
            let cap = self.slots.take_one().doing(doing)?;
            ROOT_CNODE
                .mint(self.sys, Slot::index(cap), ROOT_CNODE, Slot::index(endpoint), Rights::WRITE, handler.badge)
                .and_then(|()| tcb.set_fault_handler(self.sys, Cap::new(cap)))
                .doing(doing)?;
        }
        // The kernel's logs and the conformance dump call it by its name.
        tcb.set_name(self.sys, name).doing(|| format!("{name}: name its thread"))?;
        Ok(())
    }
}

/// An address space the loader builds page tables in.
#[derive(Clone, Copy)]
enum Space {
    /// A protection domain's (or the loader's own).
    Host(Cap<kind::Pml4>),
    /// A guest's.
    Guest(Cap<kind::GuestSpace>),
}

impl Space {
    /// Its slot in the loader's CNode, which names it in `Loader::tables`.
    fn slot(self) -> u64 {
        match self {
            Self::Host(vspace) => vspace.cptr().0,
            Self::Guest(space) => space.cptr().0,
        }
    }
}

/// The frame object of a page size.
fn frame_kind(page_size: u64) -> Option<ObjectKind> {
    match page_size {
        size if size == PAGE_SIZES[0] => Some(ObjectKind::Frame4K),
        size if size == PAGE_SIZES[1] => Some(ObjectKind::Frame2M),
        size if size == PAGE_SIZES[2] => Some(ObjectKind::Frame1G),
        _ => None,
    }
}

/// The CNode data word of a guard of `64 - radix` zero bits.
fn guard(radix: u8) -> u64 {
    u64::from(64 - radix)
}

/// log2 of a scheduling context's bytes.
fn spec_sched_bits() -> u8 {
    bulkhead_capdl_spec::SCHED_CONTEXT_SIZE_BITS
}

/// The guests' disks PD `server` serves (`GuestDiskSpec::server`), disk n
/// at index n in the order of the guest's `disk` lines.
///
/// # Errors
///
/// A disk whose region does not exist, or more than [`MAX_GUEST_DISKS`]
/// (the validator allows that many per guest; a PD that served two
/// guests' disks could exceed it).
fn served_disks(spec: &SystemSpec, server: u32) -> Result<[Option<MappedDisk>; MAX_GUEST_DISKS], String> {
    let mut disks = [None; MAX_GUEST_DISKS];
    let served = spec.guests.iter().flat_map(|guest| &guest.disks).filter(|disk| disk.server == server);
    for (number, disk) in served.enumerate() {
        let Some(region) = usize::try_from(disk.region).ok().and_then(|index| spec.regions.get(index)) else {
            return Err(format!("disk `{}`: region {} does not exist", disk.name, disk.region));
        };
        let Some(slot) = disks.get_mut(number) else {
            return Err(format!("disk `{}` is past the {MAX_GUEST_DISKS} an info page lists", disk.name));
        };
        *slot = Some(MappedDisk { address: disk.address, bytes: region.size });
    }
    Ok(disks)
}
