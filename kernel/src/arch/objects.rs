//! Kernel objects in physical memory: [`PhysStore`], the kernel's
//! [`SlotStore`] and [`ObjectStore`].
//!
//! The hardware-free core (`kernel_core`) names every object by its
//! physical address and reaches it only through these two traits. Here
//! each object lives in the memory it was retyped from, reached through
//! the physical-memory map (`paging::physmap_pointer`), as in seL4:
//!
//! | object | where its Rust value lives |
//! | --- | --- |
//! | CNode slot | at its [`SlotRef`] address (64-byte slots) |
//! | TCB | slots 0..[`TCB_SLOTS`] at the TCB's address, the [`Tcb`] at address + `TCB_SLOTS << SLOT_BITS` |
//! | endpoint, notification, reply, scheduling context | at the object's address |
//! | ASID pool | an [`AsidPool`] at the object's address |
//! | VCpu | page 0 zeroed for the hardware (VMCB or VMCS); page 1 its GuestSpace slot, then the [`VCpu`] record |
//! | paging structures | 512 entries the MMU reads, written with volatile stores; a PML4 starts with the kernel's half |
//! | frames | nothing typed: zeroed bytes, reachable from ring 3 once mapped |
//!
//! # Soundness
//!
//! Turning a physical address into `&T` or `&mut T` is sound only if a
//! valid `T` lives there and nothing else aliases it. Both follow from the
//! core's invariant, which its host tests and the invariant harness check:
//!
//! 1. **It only asks for objects of kinds it created, at the addresses it
//!    created them.** Every address the core passes comes from a
//!    capability or from links between objects, and every capability to an
//!    object was made by `Untyped::Retype`, which calls
//!    [`SlotStore::init_object`] first (or by [`crate::root`] at boot, which
//!    does the same). `init_object` writes each kind's fresh Rust value
//!    with `ptr::write`: nothing here ever relies on arbitrary bytes being
//!    a valid value. After that only Rust code writes the object, through
//!    the references handed out here, so it stays a valid `T`.
//! 2. **Objects never overlap while they live.** Retype hands out disjoint,
//!    naturally aligned ranges of an untyped (its watermark), and memory
//!    goes back to an untyped only once every capability to the objects in
//!    it is gone; reusing it calls `init_object` again. A TCB's slots and
//!    its `Tcb` are disjoint parts of its 2 KiB (a compile-time assertion
//!    in `cap::object` checks the sizes).
//! 3. **Nothing else touches object memory.** The untypeds are carved out
//!    of the boot frame allocator at boot and never returned to it, so the
//!    rest of the kernel (the test programs' address spaces) never gets
//!    those frames. A user mapping can only name a Frame object's memory
//!    (`kernel_core::vspace` puts nothing else in a leaf entry), and frame
//!    memory is retyped into other objects only after every capability to
//!    the frame is deleted, which removes every mapping it made (the
//!    mapping invariant `kernel_core::vspace`'s property test checks). Paging
//!    structures are reached only as `u64` entries, never as references.
//! 4. **The receiver serialises access.** There is exactly one
//!    `PhysStore` ([`PhysStore::new`] is `unsafe` for that reason); shared
//!    references live as long as a `&self` borrow and mutable ones as long
//!    as a `&mut self` borrow of it, so the borrow checker gives the same
//!    exclusion over object memory that it gives over the store's own
//!    fields. `init_object` takes `&mut self`, so no reference into an
//!    object survives its re-initialisation.
//!
//! Every address must lie inside the physical-memory map (the first 4 GiB);
//! [`crate::root`] only creates untypeds there. An address outside it is a
//! kernel bug and panics.

use core::mem::{align_of, size_of};

use kernel_core::cap::object::{SLOT_BITS, TCB_SLOTS};
use kernel_core::cap::{ObjectKind, Slot, SlotRef, SlotStore};
use kernel_core::ipc::{Endpoint, Notification, Reply, Tcb, ThreadId};
use kernel_core::memory::PhysAddr;
use kernel_core::sched::SchedContext;
use kernel_core::store::ObjectStore;
use kernel_core::vcpu::{KERNEL_PAGE_OFFSET, VCpu};
use kernel_core::vspace::{AsidPool, ENTRIES};

use super::boot::PHYSMAP_BYTES;
use super::paging::physmap_pointer;

/// Where a TCB's [`Tcb`] value starts, after its capability slots.
const TCB_STATE_OFFSET: u64 = TCB_SLOTS << SLOT_BITS;

/// The kernel's object store: every kernel object in its own physical
/// memory (see the module documentation for why this is sound).
#[derive(Debug)]
pub(crate) struct PhysStore {
    /// Not constructible outside this module except through `new`.
    _private: (),
}

impl PhysStore {
    /// The kernel's object store.
    ///
    /// # Safety
    ///
    /// At most one `PhysStore` may exist: two would hand out aliasing
    /// mutable references to the same objects.
    pub(crate) const unsafe fn new() -> PhysStore {
        PhysStore { _private: () }
    }
}

/// A pointer to a `T` at physical `address`, through the physical-memory
/// map. Panics if the object does not lie inside the map or is misaligned
/// for `T` (a kernel bug: see the module documentation).
///
/// This is on every object access of the system-call path, so the check
/// is two compares (the map's bound less the object's size is a constant)
/// and the panics live out of line in [`bad_object_address`].
#[inline(always)]
fn object_pointer<T>(address: u64) -> *mut T {
    let highest = PHYSMAP_BYTES - size_of::<T>() as u64;
    if address > highest || !address.is_multiple_of(align_of::<T>() as u64) {
        bad_object_address(address, size_of::<T>() as u64);
    }
    // The physical-memory map's base is 4 KiB aligned, so the pointer is as
    // aligned as the address (checked above).
    let Some(pointer) = physmap_pointer(address, size_of::<T>() as u64) else {
        bad_object_address(address, size_of::<T>() as u64);
    };
    pointer.cast::<T>()
}

/// The panic of [`object_pointer`], kept off the hot path.
#[cold]
#[inline(never)]
fn bad_object_address(address: u64, size: u64) -> ! {
    if physmap_pointer(address, size).is_none() {
        panic!("kernel object at {address:#x} lies outside the physical-memory map");
    }
    panic!("kernel object at {address:#x} is misaligned");
}

/// Where a VCpu's record lies: on its second page, after its slot.
#[inline(always)]
fn vcpu_address(vcpu: PhysAddr) -> u64 {
    vcpu.as_u64() + KERNEL_PAGE_OFFSET + (1 << SLOT_BITS)
}

#[inline(always)]
fn tcb_address(thread: ThreadId) -> u64 {
    thread.address().as_u64() + TCB_STATE_OFFSET
}

/// Writes `value` at physical `address` without reading or dropping what
/// was there.
fn write_fresh<T>(address: u64, value: T) {
    let pointer = object_pointer::<T>(address);
    // SAFETY: `object_pointer` checked that the pointer is inside the
    // physical-memory map and aligned; the caller is `init_object`, whose
    // `&mut self` guarantees no reference into the object exists, and
    // `write` neither reads nor drops the old bytes (which need not be a
    // valid `T`).
    unsafe { pointer.write(value) };
}

/// Writes empty slots over `count` slots starting at `base`.
fn write_empty_slots(base: u64, count: u64) {
    for index in 0..count {
        write_fresh(base + (index << SLOT_BITS), Slot::EMPTY);
    }
}

/// Generates a shared and a mutable accessor for objects of type `$type`
/// living at the address `$address` computes from the argument.
macro_rules! accessors {
    ($get:ident, $get_mut:ident, $argument:ident: $argument_type:ty, $type:ty, $address:expr) => {
        #[inline(always)]
        fn $get(&self, $argument: $argument_type) -> &$type {
            let pointer = object_pointer::<$type>($address);
            // SAFETY: by the core's invariant (module documentation, 1 and
            // 2) a valid, initialised value of this type lives there, and
            // the `&self` receiver keeps `&mut` borrows of the store, and so
            // of the object, away while this reference lives (4).
            unsafe { &*pointer }
        }

        #[inline(always)]
        fn $get_mut(&mut self, $argument: $argument_type) -> &mut $type {
            let pointer = object_pointer::<$type>($address);
            // SAFETY: as above; the `&mut self` receiver makes this the only
            // reference into object memory while it lives (4).
            unsafe { &mut *pointer }
        }
    };
}

impl SlotStore for PhysStore {
    accessors!(slot, slot_mut, at: SlotRef, Slot, at.address().as_u64());

    fn init_object(&mut self, kind: ObjectKind, base: PhysAddr, size_bits: u8) {
        let address = base.as_u64();
        match kind {
            ObjectKind::CNode => write_empty_slots(address, 1 << size_bits.saturating_sub(SLOT_BITS)),
            ObjectKind::Tcb => {
                write_empty_slots(address, TCB_SLOTS);
                write_fresh(address + TCB_STATE_OFFSET, Tcb::FRESH);
            }
            ObjectKind::Endpoint => write_fresh(address, Endpoint::FRESH),
            ObjectKind::Notification => write_fresh(address, Notification::FRESH),
            ObjectKind::Reply => write_fresh(address, Reply::FRESH),
            ObjectKind::SchedContext => write_fresh(address, SchedContext::FRESH),
            ObjectKind::VCpu => {
                let Some(pointer) = physmap_pointer(address, KERNEL_PAGE_OFFSET) else {
                    panic!("VCpu at {address:#x} lies outside the physical-memory map");
                };
                // SAFETY: the hardware page lies inside the physical-memory
                // map (checked), is memory of an untyped that nothing else
                // uses (module documentation, 2 and 3), and no reference
                // into it exists (`&mut self`); bytes need no validity.
                unsafe { core::ptr::write_bytes(pointer, 0, 1 << 12) };
                write_empty_slots(address + KERNEL_PAGE_OFFSET, 1);
                write_fresh(vcpu_address(base), VCpu::FRESH);
                super::fpu::init_area(base);
            }
            ObjectKind::Frame4K
            | ObjectKind::Frame2M
            | ObjectKind::Frame1G
            | ObjectKind::PageTable
            | ObjectKind::PageDirectory
            | ObjectKind::PageDirectoryPointerTable
            | ObjectKind::Pml4
            | ObjectKind::GuestSpace => {
                let Some(pointer) = physmap_pointer(address, 1 << size_bits) else {
                    panic!("memory object at {address:#x} lies outside the physical-memory map");
                };
                // SAFETY: the whole object lies inside the physical-memory
                // map (checked), is memory of an untyped that nothing else
                // uses (module documentation, 2 and 3), and no reference
                // into it exists (`&mut self`); bytes need no validity.
                unsafe { core::ptr::write_bytes(pointer, 0, 1 << size_bits) };
                if kind == ObjectKind::Pml4 {
                    copy_kernel_half(address);
                }
            }
            // An untyped's memory gets initialised when it is retyped
            // into objects; device memory never reaches here (the core
            // skips `init_object` for it).
            ObjectKind::Untyped => {}
        }
    }
}

/// The first PML4 entry of the kernel's half.
const FIRST_KERNEL_ENTRY: usize = ENTRIES / 2;

/// A pointer to entry `index` of the paging structure at `table`.
fn entry_pointer(table: PhysAddr, index: usize) -> *mut u64 {
    assert!(index < ENTRIES, "entry {index} of a paging structure");
    object_pointer::<[u64; ENTRIES]>(table.as_u64()).cast::<u64>().wrapping_add(index)
}

/// Gives the fresh PML4 at `address` the kernel's half of the boot PML4
/// (the physical-memory map and the kernel image), supervisor-only.
fn copy_kernel_half(address: u64) {
    let boot = PhysAddr::new(super::boot::boot_pml4_phys());
    for index in FIRST_KERNEL_ENTRY..ENTRIES {
        // SAFETY: the pointer is inside the physical-memory map, an aligned
        // entry of a whole 4 KiB table (`entry_pointer`); the boot PML4 is
        // written only during early boot.
        let entry = unsafe { entry_pointer(boot, index).read_volatile() };
        // SAFETY: as above; the new PML4 is not yet reachable by anything
        // but this function.
        unsafe { entry_pointer(PhysAddr::new(address), index).write_volatile(entry & !USER_BIT) };
    }
}

/// The user/supervisor bit of a paging entry.
const USER_BIT: u64 = 1 << 2;

impl ObjectStore for PhysStore {
    fn table_entry(&self, table: PhysAddr, index: usize) -> u64 {
        // SAFETY: the core names only paging structures it created (module
        // documentation, 1); an entry is a plain u64 that the MMU may also
        // read, hence the volatile access and no Rust reference.
        unsafe { entry_pointer(table, index).read_volatile() }
    }

    fn set_table_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        // SAFETY: as above; `&mut self` serialises writers (4).
        unsafe { entry_pointer(table, index).write_volatile(value) };
    }

    fn init_asid_pool(&mut self, at: PhysAddr) {
        write_fresh(at.as_u64(), AsidPool::FRESH);
    }

    accessors!(asid_pool, asid_pool_mut, at: PhysAddr, AsidPool, at.as_u64());
    accessors!(tcb, tcb_mut, thread: ThreadId, Tcb, tcb_address(thread));
    accessors!(endpoint, endpoint_mut, at: PhysAddr, Endpoint, at.as_u64());
    accessors!(notification, notification_mut, at: PhysAddr, Notification, at.as_u64());
    accessors!(reply, reply_mut, at: PhysAddr, Reply, at.as_u64());
    accessors!(sched_context, sched_context_mut, at: PhysAddr, SchedContext, at.as_u64());
    accessors!(vcpu, vcpu_mut, at: PhysAddr, VCpu, vcpu_address(at));
}
