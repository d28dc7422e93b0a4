//! What the host tests of the system-call layer and the invariant harness
//! (`tests/harness`) share: a kernel with a running root thread whose
//! CSpace is a 256-slot CNode (a capability address is the slot index), an
//! untyped and the control capabilities a test asks for, as the kernel's
//! boot creates them. Built with the `alloc` feature (or in the library's
//! own tests).

use crate::cap::object::{ObjectKind, SLOT_BITS};
use crate::cap::{Cap, SlotRef, SlotStore, derivation};
use crate::ipc::{MessageInfo, ThreadId, ThreadState};
use crate::memory::PhysAddr;
use crate::platform::Platform;
use crate::store::{MapStore, ObjectStore};
use crate::syscall::{self, Kernel, SyscallArgs, cspace_slot};

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

/// A system call as a test issues it: what the registers and the IPC
/// buffer carry.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The system-call number.
    pub number: u64,
    /// The capability it names.
    pub cptr: u64,
    /// The message's label.
    pub label: u64,
    /// The message words.
    pub words: &'a [u64],
    /// The extra capabilities' addresses.
    pub extra: &'a [u64],
    /// The reply object's address (0 for none).
    pub reply: u64,
}

impl<'a> Request<'a> {
    /// A Call of `cptr` with `label`, `words` and `extra`.
    #[must_use]
    pub const fn call(cptr: u64, label: u64, words: &'a [u64], extra: &'a [u64]) -> Request<'a> {
        Request { number: syscall::number::CALL, cptr, label, words, extra, reply: 0 }
    }
}

/// `thread` makes the system call `request` as the architecture code
/// would hand it over (the words and extra addresses in its TCB),
/// restarted while it is preempted. Returns the label of the thread's
/// message after it (an invocation's error code) and its word 0.
pub fn issue(
    kernel: &mut Kernel<MapStore>,
    platform: &mut impl Platform,
    thread: ThreadId,
    request: &Request<'_>,
) -> (u64, u64) {
    let tcb = kernel.store.tcb_mut(thread);
    tcb.words[..request.words.len()].copy_from_slice(request.words);
    tcb.extra_cptrs[..request.extra.len()].copy_from_slice(request.extra);
    let info = MessageInfo {
        label: request.label,
        length: u8::try_from(request.words.len()).expect("a message of at most 120 words"),
        caps: u8::try_from(request.extra.len()).expect("at most 3 extra capabilities"),
    };
    let args = SyscallArgs { number: request.number, cptr: request.cptr, info, reply_cptr: request.reply };
    while syscall::handle(kernel, platform, thread, args).is_err() {}
    let tcb = kernel.store.tcb(thread);
    (tcb.info.label, tcb.words[0])
}
