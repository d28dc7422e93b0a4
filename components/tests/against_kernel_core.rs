//! The typed invocations against the kernel's own system-call layer
//! (`kernel_core::syscall::handle` over its map-backed store), set up with
//! the root task's slot layout: every wrapper's message must be the one the
//! kernel decodes, and the root task's self-test sequence must succeed
//! step by step. The threads' system calls are made in turn, as the
//! architecture code would after a switch.

use bulkhead_components::abi::cap::derivation;
use bulkhead_components::abi::cap::{Cap as KernelCap, ObjectKind, Rights, SlotRef, SlotStore};
use bulkhead_components::abi::ipc::{MessageInfo, ThreadId, ThreadName, ThreadState};
use bulkhead_components::abi::memory::PhysAddr;
use bulkhead_components::abi::platform::RecordingPlatform;
use bulkhead_components::abi::root_task::{FIRST_FREE_ADDRESS, slot};
use bulkhead_components::abi::store::{MapStore, ObjectStore};
use bulkhead_components::abi::syscall::{self, SyscallArgs, cspace_slot};
use bulkhead_components::abi::vspace::translate;
use bulkhead_components::cap::{CPtr, Cap, kind};
use bulkhead_components::invocation::{Destination, Registers, Slot, attributes};
use bulkhead_components::kernel::{Incoming, Kernel, Syscall};
use bulkhead_components::slots::SlotAllocator;
use bulkhead_components::{Error, Message};

const ROOT_CNODE_AT: u64 = 0x10_0000;
const ROOT_TCB_AT: u64 = 0x80_0000;
const UNTYPED_AT: u64 = 0x100_0000;

/// The kernel core with one thread making the calls.
struct CoreKernel {
    kernel: syscall::Kernel<MapStore>,
    platform: RecordingPlatform,
    thread: ThreadId,
}

impl Kernel for CoreKernel {
    fn syscall(&mut self, call: Syscall<'_>) -> Result<Incoming, Error> {
        let words = call.message.words();
        let tcb = self.kernel.store.tcb_mut(self.thread);
        tcb.words[..words.len()].copy_from_slice(words);
        for (index, cap) in call.caps.iter().enumerate() {
            tcb.extra_cptrs[index] = cap.0;
        }
        let info = MessageInfo {
            label: call.message.label,
            length: u8::try_from(words.len()).expect("at most 120"),
            caps: u8::try_from(call.caps.len()).expect("at most 3"),
        };
        let args = SyscallArgs { number: call.number, cptr: call.cptr.0, info, reply_cptr: call.reply.0 };
        while syscall::handle(&mut self.kernel, &mut self.platform, self.thread, args).is_err() {}
        self.kernel.scheduler.schedule(&mut self.kernel.store);
        let tcb = self.kernel.store.tcb(self.thread);
        let length = usize::from(tcb.info.length).min(120);
        Ok(Incoming {
            badge: tcb.badge,
            message: Message::new(tcb.info.label, &tcb.words[..length]),
            caps: tcb.info.caps,
        })
    }

    fn debug_putchar(&mut self, _byte: u8) {}

    fn name_thread(&mut self, tcb: CPtr, name: [u64; 4]) -> Result<(), Error> {
        let name = ThreadName::from_words(name);
        syscall::name_thread(&mut self.kernel.store, self.thread, tcb.0, name).map_err(Error::from)
    }
}

fn root_slot(index: u64) -> SlotRef {
    SlotRef::in_cnode(PhysAddr::new(ROOT_CNODE_AT), index).expect("slot")
}

/// The root task's start: its CNode (slot 0, 256 slots behind a 56-bit
/// guard), an 8 MiB untyped (1), SchedControl (5), its TCB (6) and
/// AsidControl (9), as `kernel/src/root_task.rs` lays them out; the rest
/// (pool, VSpace) the test makes through the wrappers.
fn boot() -> CoreKernel {
    let mut store = MapStore::new();
    store.init_object(ObjectKind::CNode, PhysAddr::new(ROOT_CNODE_AT), 8 + 6);
    let cnode = KernelCap::CNode { base: PhysAddr::new(ROOT_CNODE_AT), radix_bits: 8, guard: 0, guard_bits: 56 };
    derivation::insert_original(&mut store, root_slot(slot::ROOT_CNODE), cnode);
    let untyped =
        KernelCap::Untyped { base: PhysAddr::new(UNTYPED_AT), size_bits: 23, free_offset: 0, is_device: false };
    derivation::insert_original(&mut store, root_slot(slot::FIRST_UNTYPED), untyped);
    derivation::insert_original(&mut store, root_slot(slot::SCHED_CONTROL), KernelCap::SchedControl);
    let tcb = KernelCap::Tcb { object: PhysAddr::new(ROOT_TCB_AT) };
    derivation::insert_original(&mut store, root_slot(slot::ROOT_TCB), tcb);
    derivation::insert_original(&mut store, root_slot(slot::ASID_CONTROL), KernelCap::AsidControl);
    let root = ThreadId::new(PhysAddr::new(ROOT_TCB_AT));
    derivation::insert_derived(&mut store, root_slot(slot::ROOT_CNODE), cspace_slot(root).expect("slot"), cnode, false);
    let tcb = store.tcb_mut(root);
    (tcb.priority, tcb.max_priority, tcb.state) = (255, 255, ThreadState::Runnable);
    let mut kernel = syscall::Kernel::new(store);
    kernel.scheduler.make_ready(&mut kernel.store, root);
    kernel.scheduler.schedule(&mut kernel.store);
    CoreKernel { kernel, platform: RecordingPlatform::new(), thread: root }
}

const ROOT_CNODE: Cap<kind::CNode> = Cap::new(slot::ROOT_CNODE);
const UNTYPED: Cap<kind::Untyped> = Cap::new(slot::FIRST_UNTYPED);

fn retype<T>(kernel: &mut CoreKernel, slots: &mut SlotAllocator, object: ObjectKind, size_bits: u64) -> Cap<T> {
    let at = slots.take_one().expect("a free slot");
    UNTYPED.retype(kernel, object, size_bits, Destination::slots_of(ROOT_CNODE, at), 1).expect("retype");
    Cap::new(at)
}

#[test]
fn the_root_task_sequence_runs_on_the_kernel_core() {
    let mut kernel = boot();
    let mut slots = SlotAllocator::new(slot::FIRST_FREE, 8);
    let k = &mut kernel;

    // The root's VSpace: a pool from a 4 KiB untyped, a PML4 assigned.
    let pool_untyped: Cap<kind::Untyped> = retype(k, &mut slots, ObjectKind::Untyped, 12);
    let pool: Cap<kind::AsidPool> = Cap::new(slots.take_one().unwrap());
    Cap::<kind::AsidControl>::new(slot::ASID_CONTROL)
        .make_pool(k, pool_untyped, ROOT_CNODE, Slot::index(pool.cptr().0))
        .expect("make pool");
    let vspace: Cap<kind::Pml4> = retype(k, &mut slots, ObjectKind::Pml4, 0);
    pool.assign(k, vspace).expect("assign");
    let root_tcb: Cap<kind::Tcb> = Cap::new(slot::ROOT_TCB);
    root_tcb.set_space(k, ROOT_CNODE, Some(vspace)).expect("the root's own VSpace");

    // Badged notification: signal through the copy, poll the original.
    let endpoint: Cap<kind::Endpoint> = retype(k, &mut slots, ObjectKind::Endpoint, 0);
    let notification: Cap<kind::Notification> = retype(k, &mut slots, ObjectKind::Notification, 0);
    let badged: Cap<kind::Notification> = Cap::new(slots.take_one().unwrap());
    ROOT_CNODE
        .mint(k, Slot::index(badged.cptr().0), ROOT_CNODE, Slot::index(notification.cptr().0), Rights::WRITE, 5)
        .expect("mint");
    assert_eq!(notification.poll(k), Ok(0), "nothing signalled yet");
    badged.signal(k).expect("signal");
    assert_eq!(notification.poll(k), Ok(5));
    assert_eq!(badged.poll(k), Err(Error::InvalidCapability), "the copy cannot wait");
    let occupied =
        ROOT_CNODE.copy(k, Slot::index(badged.cptr().0), ROOT_CNODE, Slot::index(endpoint.cptr().0), Rights::ALL);
    assert_eq!(occupied, Err(Error::DeleteFirst));

    // Three levels of tables, then a frame mapped, found, unmapped.
    for level in [ObjectKind::PageDirectoryPointerTable, ObjectKind::PageDirectory, ObjectKind::PageTable] {
        let table: Cap<kind::PageTable> = retype(k, &mut slots, level, 0);
        table.map(k, vspace, FIRST_FREE_ADDRESS).expect("map table");
        assert_eq!(table.map(k, vspace, FIRST_FREE_ADDRESS), Err(Error::IllegalOperation), "mapped already");
    }
    let spare: Cap<kind::PageTable> = retype(k, &mut slots, ObjectKind::PageTable, 0);
    assert_eq!(spare.map(k, vspace, FIRST_FREE_ADDRESS), Err(Error::DeleteFirst), "what the root task tolerates");
    ROOT_CNODE.delete(k, Slot::index(spare.cptr().0)).expect("delete the spare");
    let frame: Cap<kind::Frame> = retype(k, &mut slots, ObjectKind::Frame4K, 0);
    frame.map(k, vspace, FIRST_FREE_ADDRESS, Rights::READ | Rights::WRITE, attributes::DATA).expect("map frame");
    let physical = frame.get_address(k).expect("address");
    let pml4 = k.kernel.store.slot(root_slot(vspace.cptr().0)).cap.memory_region().expect("a PML4").0;
    assert_eq!(translate(&k.kernel.store, pml4, FIRST_FREE_ADDRESS + 8).map(|(at, _)| at), Some(physical + 8));
    frame.unmap(k).expect("unmap");
    assert_eq!(translate(&k.kernel.store, pml4, FIRST_FREE_ADDRESS), None);

    // A child thread on its own scheduling context.
    let reply: Cap<kind::Reply> = retype(k, &mut slots, ObjectKind::Reply, 0);
    let tcb: Cap<kind::Tcb> = retype(k, &mut slots, ObjectKind::Tcb, 0);
    let context: Cap<kind::SchedContext> = retype(k, &mut slots, ObjectKind::SchedContext, 8);
    let buffer: Cap<kind::Frame> = retype(k, &mut slots, ObjectKind::Frame4K, 0);
    buffer.map(k, vspace, FIRST_FREE_ADDRESS + 0x4000, Rights::READ | Rights::WRITE, attributes::DATA).unwrap();
    let call_endpoint: Cap<kind::Endpoint> = Cap::new(slots.take_one().unwrap());
    ROOT_CNODE
        .mint(k, Slot::index(call_endpoint.cptr().0), ROOT_CNODE, Slot::index(endpoint.cptr().0), Rights::WRITE, 0xc1)
        .unwrap();
    tcb.set_space(k, ROOT_CNODE, Some(vspace)).expect("set space");
    tcb.set_ipc_buffer(k, buffer).expect("set ipc buffer");
    tcb.set_fault_handler(k, call_endpoint).expect("fault handler");
    let registers = Registers { rip: 0x40_1000, rsp: FIRST_FREE_ADDRESS + 0x3ff8, rflags: 0, rdi: 7, rsi: 0, rdx: 0 };
    tcb.write_registers(k, &registers).expect("write registers");
    assert_eq!(
        tcb.write_registers(k, &Registers { rip: 1 << 47, ..registers }),
        Err(Error::InvalidArgument),
        "rip outside the user half"
    );
    tcb.set_priority(k, root_tcb, 100).expect("priority");
    tcb.set_max_priority(k, root_tcb, 100).expect("max priority");
    let sched_control: Cap<kind::SchedControl> = Cap::new(slot::SCHED_CONTROL);
    assert_eq!(sched_control.configure(k, context, 50, 1000), Err(Error::RangeError), "budget below 100");
    sched_control.configure(k, context, 1_000_000, 1_000_000).expect("configure");
    tcb.bind_sched_context(k, context).expect("bind");
    tcb.resume(k).expect("resume");
    let child = match k.kernel.store.slot(root_slot(tcb.cptr().0)).cap {
        KernelCap::Tcb { object } => ThreadId::new(object),
        other => panic!("{other:?}"),
    };
    assert_eq!(k.kernel.store.tcb(child).state, ThreadState::Runnable);

    // The child calls (and waits); the root receives, replies, and the
    // child has the answer.
    k.thread = child;
    let _ = call_endpoint.call(k, &Message::new(0x11, &[41]));
    assert!(matches!(k.kernel.store.tcb(child).state, ThreadState::BlockedOnSend { .. }));
    k.thread = ThreadId::new(PhysAddr::new(ROOT_TCB_AT));
    let incoming = endpoint.recv(k, Some(reply)).expect("recv");
    assert_eq!((incoming.badge, incoming.message.label, incoming.message.words()), (0xc1, 0x11, &[41][..]));
    endpoint.reply_recv(k, reply, &Message::new(0, &[42])).expect("reply");
    let answered = k.kernel.store.tcb(child);
    assert_eq!((answered.state, answered.info.label, answered.message()), (ThreadState::Runnable, 0, &[42][..]));

    // Suspend stops it.
    tcb.suspend(k).expect("suspend");
    assert_eq!(k.kernel.store.tcb(child).state, ThreadState::Inactive);
}

#[test]
fn a_thread_names_itself_through_its_tcb_capability() {
    let mut kernel = boot();
    let own: Cap<kind::Tcb> = Cap::new(slot::ROOT_TCB);
    own.set_name(&mut kernel, "loader").expect("named");
    let root = ThreadId::new(PhysAddr::new(ROOT_TCB_AT));
    assert_eq!(kernel.kernel.store.tcb(root).name.to_string(), "loader");
    assert_eq!(Cap::<kind::Tcb>::new(slot::ROOT_CNODE).set_name(&mut kernel, "x"), Err(Error::InvalidCapability));
    assert_eq!(Cap::<kind::Tcb>::new(200).set_name(&mut kernel, "x"), Err(Error::FailedLookup));
}
