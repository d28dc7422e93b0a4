//! What the host tests of the system-call layer and the invariant harness
//! (`tests/harness`) share: a kernel with a running root thread whose
//! CSpace is a 256-slot CNode (a capability address is the slot index), an
//! untyped and the control capabilities a test asks for, as the kernel's
//! boot creates them. Built with the `alloc` feature (or in the library's
//! own tests).

use crate::cap::object::{ObjectKind, SLOT_BITS};
use crate::cap::{Cap, SlotRef, SlotStore, derivation};
use crate::ipc::{ThreadId, ThreadState};
use crate::memory::PhysAddr;
use crate::store::{MapStore, ObjectStore};
use crate::syscall::{Kernel, cspace_slot};

/// The root CNode's slots.
pub const ROOT_CNODE: u64 = 0x10_0000;
/// The root TCB.
pub const ROOT_TCB: u64 = 0x80_0000;
/// The untyped's memory.
pub const UNTYPED_BASE: u64 = 0x100_0000;
/// Root slot 0: the root CNode itself.
pub const R_SELF: u64 = 0;
/// Root slot 1: the untyped.
pub const R_UNTYPED: u64 = 1;

/// Slot `index` of the root CNode.
pub fn root_slot(index: u64) -> SlotRef {
    SlotRef::in_cnode(PhysAddr::new(ROOT_CNODE), index).expect("slot")
}

/// The root thread.
pub fn root_thread() -> ThreadId {
    ThreadId::new(PhysAddr::new(ROOT_TCB))
}

/// The root CNode's capability: 256 slots behind a 56-bit zero guard.
pub const fn root_cnode_cap() -> Cap {
    Cap::CNode { base: PhysAddr::new(ROOT_CNODE), radix_bits: 8, guard: 0, guard_bits: 56 }
}

/// A kernel whose root thread (priority `priority`, maximum controlled
/// priority 255) runs with the root CNode as its CSpace, an untyped of
/// `2^untyped_bits` bytes in slot 1 and `originals` in their slots.
pub fn root_kernel(untyped_bits: u8, priority: u8, originals: &[(u64, Cap)]) -> Kernel<MapStore> {
    let mut store = MapStore::new();
    store.init_object(ObjectKind::CNode, PhysAddr::new(ROOT_CNODE), 8 + SLOT_BITS);
    derivation::insert_original(&mut store, root_slot(R_SELF), root_cnode_cap());
    let untyped =
        Cap::Untyped { base: PhysAddr::new(UNTYPED_BASE), size_bits: untyped_bits, free_offset: 0, is_device: false };
    derivation::insert_original(&mut store, root_slot(R_UNTYPED), untyped);
    for (slot, cap) in originals {
        derivation::insert_original(&mut store, root_slot(*slot), *cap);
    }
    let root = root_thread();
    derivation::insert_derived(
        &mut store,
        root_slot(R_SELF),
        cspace_slot(root).expect("slot"),
        root_cnode_cap(),
        false,
    );
    let tcb = store.tcb_mut(root);
    (tcb.priority, tcb.max_priority, tcb.state) = (priority, 255, ThreadState::Runnable);
    let mut kernel = Kernel::new(store);
    kernel.scheduler.make_ready(&mut kernel.store, root);
    kernel.scheduler.schedule(&mut kernel.store);
    kernel
}
