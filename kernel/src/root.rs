//! The kernel's state ([`Kernel`] over [`PhysStore`]) and the initial
//! capabilities boot gives the root thread.
//!
//! At boot, frames from the boot frame allocator become the root CNode
//! ([`ROOT_CNODE_RADIX`], with a guard of `64 - radix` zero bits, so that a
//! 64-bit capability address is just the slot index), the root TCB, and
//! untyped memory (naturally aligned power-of-two blocks, below 4 GiB so
//! that the physical-memory map reaches them). The root CNode's slots:
//!
//! | slot | capability |
//! | ---: | --- |
//! | 0 | the root CNode itself |
//! | 1..=4 | untyped memory: the largest naturally aligned blocks the boot allocator can give, largest first, from 1 GiB down to 4 MiB each, leaving it what the root task's image needs ([`create_root_objects`]'s `keep_bytes`; a slot stays empty if no block of 4 MiB is left) |
//! | 5 | SchedControl |
//! | 6 | the root TCB |
//! | 7 | IrqControl: the authority over the interrupt lines (`kernel_core::irq`) |
//! | 8 | IoPortControl: the authority over the I/O ports (`kernel_core::io_port`), except those the kernel drives (COM1, the PICs, the emulators' exit ports), which are reserved |
//! | 9 | AsidControl: makes ASID pools (`kernel_core::vspace`) |
//! | 10..=31 | empty (the root task's ASID pool, VSpace, IPC buffer and info page go to 10..=13) |
//! | 32.. | device untypeds: the holes of the memory map below 4 GiB, without the interrupt controllers' pages (`kernel_core::device_memory`), at most [`MAX_DEVICE_UNTYPEDS`] |
//!
//! The root TCB's CSpace root is a copy of slot 0; the thread has priority
//! and maximum controlled priority 255 and no scheduling context. These
//! frames never go back to the boot allocator.

use core::cell::UnsafeCell;

use kernel_core::cap::object::{SLOT_BITS, TCB_BITS};
use kernel_core::cap::{Cap, ObjectKind, SlotRef, SlotStore, derivation};
use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::ipc::{self, ThreadId, ThreadState};
use kernel_core::memory::{FRAME_SIZE, PhysAddr, PhysRange};
use kernel_core::store::ObjectStore;
use kernel_core::syscall::{self, Kernel};

use crate::arch::objects::PhysStore;
use crate::arch::paging::physmap_pointer;

/// log2 of the root CNode's slot count.
pub(crate) const ROOT_CNODE_RADIX: u8 = 12;

/// The root CNode's slots (a root capability address is the slot index).
pub(crate) mod slot {
    /// The root CNode itself.
    pub(crate) const ROOT_CNODE: u64 = 0;
    /// The first untyped.
    pub(crate) const FIRST_UNTYPED: u64 = 1;
    /// SchedControl.
    pub(crate) const SCHED_CONTROL: u64 = 5;
    /// The root TCB.
    pub(crate) const ROOT_TCB: u64 = 6;
    /// AsidControl.
    pub(crate) const ASID_CONTROL: u64 = 9;
    /// IrqControl.
    pub(crate) const IRQ_CONTROL: u64 = 7;
    /// IoPortControl.
    pub(crate) const IO_PORT_CONTROL: u64 = 8;
}

/// How many RAM untypeds the root gets (slots 1, 2, 3 and 4).
const RAM_UNTYPEDS: usize = 4;
const _: () = assert!(slot::FIRST_UNTYPED + RAM_UNTYPEDS as u64 == slot::SCHED_CONTROL);
/// log2 of the largest and the smallest RAM untyped.
const LARGEST_UNTYPED_BITS: u8 = 30;
const SMALLEST_UNTYPED_BITS: u8 = 22;

/// The kernel's state and the root thread.
struct KernelState {
    kernel: Kernel<PhysStore>,
    root: Option<ThreadId>,
}

struct KernelCell(UnsafeCell<KernelState>);

// SAFETY: one CPU, and the kernel runs with interrupts off: the state is
// reached only through `with_kernel`, from boot, from the system-call and
// fault paths, and from the timer and PIC interrupt paths, which can only
// interrupt ring 3 (IF is clear in ring 0): none of them run concurrently
// or nest.
unsafe impl Sync for KernelCell {}

static KERNEL: KernelCell = KernelCell(UnsafeCell::new(KernelState {
    // SAFETY: this is the only `PhysStore` the kernel creates.
    kernel: Kernel::new(unsafe { PhysStore::new() }),
    root: None,
}));

/// Runs `action` on the kernel's state and the root thread (`None` before
/// [`create_root_objects`]). `action` must not end the running user
/// program (which abandons the stack): callers decide inside and act
/// after.
pub(crate) fn with_kernel<R>(action: impl FnOnce(&mut Kernel<PhysStore>, Option<ThreadId>) -> R) -> R {
    with_state(|state| action(&mut state.kernel, state.root))
}

fn with_state<R>(action: impl FnOnce(&mut KernelState) -> R) -> R {
    // SAFETY: see `KernelCell`: no other reference to the state exists
    // while `action` runs, and `action` cannot re-enter `with_state` (it
    // runs no user code and takes no system call or interrupt).
    let state = unsafe { &mut *KERNEL.0.get() };
    action(state)
}

/// What boot created, for its log.
pub(crate) struct RootSummary {
    /// The root CNode's slots.
    pub(crate) cnode: PhysAddr,
    /// The root TCB.
    pub(crate) tcb: PhysAddr,
    /// How many untyped capabilities and their total size.
    pub(crate) untyped_count: usize,
    pub(crate) untyped_bytes: u64,
    /// How many device untypeds, and the blocks left out for want of slots.
    pub(crate) device_count: usize,
    pub(crate) devices_left_out: usize,
}

/// The most device untypeds the root gets (slots `FIRST_FREE..`).
pub(crate) const MAX_DEVICE_UNTYPEDS: usize = kernel_core::root_task::MAX_UNTYPEDS - RAM_UNTYPEDS;

/// Takes `bytes` (a power of two, at least a frame) of contiguous, naturally
/// aligned frames inside the physical-memory map.
fn take_block(allocator: &mut FrameAllocator, bytes: u64) -> Option<PhysRange> {
    let range = allocator.allocate_contiguous(bytes / FRAME_SIZE, bytes)?;
    if physmap_pointer(range.start.as_u64(), bytes).is_none() {
        // Above 4 GiB: unusable for now, and never handed out again.
        defmt::warn!("root: a {=u64} KiB block above the physical-memory map is left unused", bytes >> 10);
        return None;
    }
    Some(range)
}

/// The free bytes of the boot allocator.
fn free_bytes(allocator: &FrameAllocator) -> u64 {
    allocator.free_ranges().iter().map(|range| range.end.as_u64() - range.start.as_u64()).sum()
}

/// The next RAM untyped: the largest naturally aligned block, from
/// [`LARGEST_UNTYPED_BITS`] down to [`SMALLEST_UNTYPED_BITS`], that the
/// allocator can give while `keep_bytes` stay free.
fn take_untyped(allocator: &mut FrameAllocator, keep_bytes: u64) -> Option<(PhysRange, u8)> {
    let spare = free_bytes(allocator).saturating_sub(keep_bytes);
    (SMALLEST_UNTYPED_BITS..=LARGEST_UNTYPED_BITS)
        .rev()
        .filter(|bits| 1_u64 << bits <= spare)
        .find_map(|bits| take_block(allocator, 1 << bits).map(|block| (block, bits)))
}

/// Creates the root CNode, the root TCB, the untypeds and SchedControl,
/// and makes the root thread runnable and current. Call once, at boot.
/// The RAM untypeds leave `keep_bytes` in the boot allocator, for the
/// root task's image and structures, made after this.
///
/// # Errors
///
/// A message when the allocator cannot give the root CNode or TCB.
pub(crate) fn create_root_objects(
    allocator: &mut FrameAllocator,
    memory_map: Option<&[kernel_core::boot_info::MemoryRegion]>,
    keep_bytes: u64,
) -> Result<RootSummary, &'static str> {
    let cnode_bytes = 1_u64 << (ROOT_CNODE_RADIX + SLOT_BITS);
    let cnode = take_block(allocator, cnode_bytes).ok_or("no frames for the root CNode")?.start;
    let tcb = take_block(allocator, FRAME_SIZE).ok_or("no frame for the root TCB")?.start;
    let mut summary =
        RootSummary { cnode, tcb, untyped_count: 0, untyped_bytes: 0, device_count: 0, devices_left_out: 0 };
    let mut devices = [(PhysAddr::new(0), 0_u8); MAX_DEVICE_UNTYPEDS];
    let kernel_devices = crate::arch::apic::kernel_device_ranges();
    let found =
        memory_map.map_or(0, |map| kernel_core::device_memory::device_blocks(map, &kernel_devices, &mut devices));
    summary.device_count = found.min(MAX_DEVICE_UNTYPEDS);
    summary.devices_left_out = found - summary.device_count;
    // GuestSpaces take the format of the machine's virtualisation
    // backend (`docs/VIRTUALISATION.md`), turned on here for good: nested
    // paging on an AMD CPU with SVM and NPT, EPT on one with VT-x whose
    // capabilities the backend checks; none when neither can run.
    let guest_format = crate::arch::guest::enable_backend(allocator);
    with_state(|state| {
        let kernel = &mut state.kernel;
        kernel.guest_format = guest_format;
        let store = &mut kernel.store;
        store.init_object(ObjectKind::CNode, cnode, ROOT_CNODE_RADIX + SLOT_BITS);
        store.init_object(ObjectKind::Tcb, tcb, TCB_BITS);
        let root_slot = |index| SlotRef::in_cnode(cnode, index).ok_or("root CNode slot");
        let root_cnode =
            Cap::CNode { base: cnode, radix_bits: ROOT_CNODE_RADIX, guard: 0, guard_bits: 64 - ROOT_CNODE_RADIX };
        derivation::insert_original(store, root_slot(slot::ROOT_CNODE)?, root_cnode);
        for index in (slot::FIRST_UNTYPED..).take(RAM_UNTYPEDS) {
            let Some((block, size_bits)) = take_untyped(allocator, keep_bytes) else { break };
            let untyped = Cap::Untyped { base: block.start, size_bits, free_offset: 0, is_device: false };
            derivation::insert_original(store, root_slot(index)?, untyped);
            summary.untyped_count += 1;
            summary.untyped_bytes += 1 << size_bits;
        }
        for (index, (base, size_bits)) in
            (kernel_core::root_task::slot::FIRST_FREE..).zip(&devices[..summary.device_count])
        {
            let untyped = Cap::Untyped { base: *base, size_bits: *size_bits, free_offset: 0, is_device: true };
            derivation::insert_original(store, root_slot(index)?, untyped);
        }
        derivation::insert_original(store, root_slot(slot::SCHED_CONTROL)?, Cap::SchedControl);
        derivation::insert_original(store, root_slot(slot::ROOT_TCB)?, Cap::Tcb { object: tcb });
        derivation::insert_original(store, root_slot(slot::ASID_CONTROL)?, Cap::AsidControl);
        derivation::insert_original(store, root_slot(slot::IRQ_CONTROL)?, Cap::IrqControl);
        derivation::insert_original(store, root_slot(slot::IO_PORT_CONTROL)?, Cap::IoPortControl);
        let kernel_ports =
            crate::arch::pic::PORTS.into_iter().chain(crate::arch::exit::PORTS).chain([crate::arch::serial::PORTS]);
        for (first, last) in kernel_ports {
            kernel.io_ports.reserve(first, last);
        }
        let root = ThreadId::new(tcb);
        let cspace = syscall::cspace_slot(root).ok_or("root TCB slot")?;
        derivation::insert_derived(store, root_slot(slot::ROOT_CNODE)?, cspace, root_cnode, false);
        let thread = store.tcb_mut(root);
        (thread.priority, thread.max_priority, thread.state) = (u8::MAX, u8::MAX, ThreadState::Runnable);
        kernel.scheduler.make_ready(&mut kernel.store, root);
        kernel.scheduler.schedule(&mut kernel.store);
        state.root = Some(root);
        Ok::<(), &'static str>(())
    })?;
    Ok(summary)
}

#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs user programs")
)]
/// Makes the root thread runnable and the one on the CPU, whatever its
/// last program left it doing (blocked, exited). Returns whether it is.
pub(crate) fn prepare_root_thread() -> bool {
    with_kernel(|kernel, root| {
        let Some(root) = root else { return false };
        let Kernel { store, scheduler, .. } = kernel;
        if store.tcb(root).state != ThreadState::Runnable {
            ipc::stop_thread(store, scheduler, root);
            store.tcb_mut(root).state = ThreadState::Runnable;
            scheduler.make_ready(store, root);
        }
        scheduler.schedule(store) == Some(root)
    })
}
