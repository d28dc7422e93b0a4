//! The system-call layer: what a thread's system call does, given its
//! registers, its CSpace and the kernel's objects. The architecture code
//! copies the registers and the IPC buffer into the thread's TCB (message
//! words, extra capability addresses), calls [`handle`], and copies the
//! results back out.
//!
//! Every capability the call names is looked up in the caller's CSpace
//! (the CNode in its TCB's first slot) and checked for type and rights
//! before anything happens; errors come back to the caller as a message
//! whose label is the error code ([`SyscallError::code`]). Nothing a
//! thread passes can make the kernel fail.

use crate::cap::cspace::{self, CPTR_BITS};
use crate::cap::derivation::{self, Preempted, WorkBudget};
use crate::cap::invocation::{self, Message};
use crate::cap::{Cap, FrameSize, Rights, SlotRef};
use crate::error::SyscallError;
use crate::finalise::Finaliser;
use crate::io_port::{self, PortAllocation};
use crate::ipc::{self, EndpointCap, MessageInfo, ThreadId, ThreadName, ThreadState};
use crate::irq::{self, IrqTable};
use crate::memory::PhysAddr;
use crate::platform::Platform;
use crate::sched::{PRIORITIES, SchedContext, Scheduler};
use crate::store::ObjectStore;
use crate::vcpu;
use crate::virt::GuestFormat;
use crate::vspace::{self, AsidTable};

/// System-call numbers (the value in RAX).
pub mod number {
    /// Call a capability: IPC with reply on an endpoint, or a kernel
    /// invocation whose result comes back as the reply.
    pub const CALL: u64 = 1;
    /// Reply through a reply object, then receive on an endpoint.
    pub const REPLY_RECV: u64 = 2;
    /// Send on an endpoint (blocking), signal a notification, or invoke
    /// without waiting for the result.
    pub const SEND: u64 = 3;
    /// Send without blocking (dropped if nobody receives).
    pub const NB_SEND: u64 = 4;
    /// Receive on an endpoint, or wait on a notification.
    pub const RECV: u64 = 5;
    /// Receive without blocking.
    pub const NB_RECV: u64 = 6;
    /// Signal a notification.
    pub const SIGNAL: u64 = 7;
    /// Wait on a notification.
    pub const WAIT: u64 = 8;
    /// Poll a notification without blocking.
    pub const POLL: u64 = 9;
    /// Give up the rest of the time slice.
    pub const YIELD: u64 = 10;
    /// Run the guest of the VCpu bound to the thread until an exit
    /// (`crate::vcpu::vm_enter`).
    pub const VM_ENTER: u64 = 11;
}

/// Invocation labels of TCB and scheduling capabilities (those of CNodes
/// and Untypeds are in [`invocation::label`], of I/O ports in
/// [`io_port::label`], of interrupts in [`irq::label`]).
pub mod label {
    /// TCB: set the thread's CSpace root (extra cap: a CNode).
    pub const TCB_SET_SPACE: u64 = 32;
    /// TCB: set the priority (word: priority; extra cap: an authority TCB
    /// whose maximum controlled priority bounds it).
    pub const TCB_SET_PRIORITY: u64 = 33;
    /// TCB: set the maximum controlled priority (same arguments).
    pub const TCB_SET_MAX_PRIORITY: u64 = 34;
    /// TCB: run on a scheduling context (extra cap: the SchedContext).
    pub const TCB_BIND_SCHED_CONTEXT: u64 = 35;
    /// TCB: start an inactive thread.
    pub const TCB_RESUME: u64 = 36;
    /// TCB: stop a thread, cancelling any IPC it waits in.
    pub const TCB_SUSPEND: u64 = 37;
    /// TCB: send the thread's faults to this endpoint (extra cap: an
    /// endpoint with WRITE; a copy goes into the TCB's fault slot).
    pub const TCB_SET_FAULT_HANDLER: u64 = 38;
    /// TCB: set an inactive thread's instruction pointer, stack pointer,
    /// flags and first three argument registers (words: rip, rsp, rflags,
    /// rdi, rsi, rdx).
    pub const TCB_WRITE_REGISTERS: u64 = 39;
    /// TCB: use this 4 KiB frame as the thread's IPC buffer (extra cap: a
    /// RAM frame with READ and WRITE; a copy goes into the TCB's slot 3).
    pub const TCB_SET_IPC_BUFFER: u64 = 40;
    /// TCB: bind a notification, whose signals end the thread's VMEnter
    /// (extra cap: a notification with READ).
    pub const TCB_BIND_NOTIFICATION: u64 = 41;
    /// TCB: unbind the bound notification.
    pub const TCB_UNBIND_NOTIFICATION: u64 = 42;
    /// TCB: make the thread a passive server or an ordinary one (word: 1
    /// or 0): a Call delivered to a passive server lends it the caller's
    /// scheduling context until the reply (`crate::ipc` donation).
    pub const TCB_SET_PASSIVE: u64 = 43;
    /// SchedControl: give a scheduling context a budget and period
    /// (words: budget, period; extra cap: the SchedContext).
    pub const SCHED_CONTROL_CONFIGURE: u64 = 48;
}

/// The TCB and SchedControl invocations as `docs/abi.md` lists them:
/// label, name, argument words, extra capabilities.
pub const INVOCATION_LABELS: [(u64, &str, &[&str], &[&str]); 13] = [
    (label::TCB_SET_SPACE, "TCB::SetSpace", &[], &["cspace_root", "vspace"]),
    (label::TCB_SET_PRIORITY, "TCB::SetPriority", &["priority"], &["authority"]),
    (label::TCB_SET_MAX_PRIORITY, "TCB::SetMaxPriority", &["priority"], &["authority"]),
    (label::TCB_BIND_SCHED_CONTEXT, "TCB::BindSchedContext", &[], &["sched_context"]),
    (label::TCB_RESUME, "TCB::Resume", &[], &[]),
    (label::TCB_SUSPEND, "TCB::Suspend", &[], &[]),
    (label::TCB_SET_FAULT_HANDLER, "TCB::SetFaultHandler", &[], &["endpoint"]),
    (label::TCB_WRITE_REGISTERS, "TCB::WriteRegisters", &["rip", "rsp", "rflags", "rdi", "rsi", "rdx"], &[]),
    (label::TCB_SET_IPC_BUFFER, "TCB::SetIpcBuffer", &[], &["frame"]),
    (label::TCB_BIND_NOTIFICATION, "TCB::BindNotification", &[], &["notification"]),
    (label::TCB_UNBIND_NOTIFICATION, "TCB::UnbindNotification", &[], &[]),
    (label::TCB_SET_PASSIVE, "TCB::SetPassive", &["passive"], &[]),
    (label::SCHED_CONTROL_CONFIGURE, "SchedControl::Configure", &["budget", "period"], &["sched_context"]),
];

/// The system calls as `docs/abi.md` lists them: number and name.
pub const SYSCALLS: [(u64, &str); 11] = [
    (number::CALL, "Call"),
    (number::REPLY_RECV, "ReplyRecv"),
    (number::SEND, "Send"),
    (number::NB_SEND, "NBSend"),
    (number::RECV, "Recv"),
    (number::NB_RECV, "NBRecv"),
    (number::SIGNAL, "Signal"),
    (number::WAIT, "Wait"),
    (number::POLL, "Poll"),
    (number::YIELD, "Yield"),
    (number::VM_ENTER, "VMEnter"),
];

/// The smallest budget a scheduling context may get (ticks): smaller ones
/// would spend more time in the kernel than in the thread.
pub const MIN_BUDGET: u64 = 100;

/// Registers of a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallArgs {
    /// Which system call.
    pub number: u64,
    /// The capability it names.
    pub cptr: u64,
    /// The message's first word: label, length, extra capability count.
    pub info: MessageInfo,
    /// The reply object's capability, for Recv, NBRecv and ReplyRecv.
    pub reply_cptr: u64,
}

/// The kernel's state, hardware-free.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel<S> {
    /// Every object.
    pub store: S,
    /// Who runs.
    pub scheduler: Scheduler,
    /// The current time in ticks.
    pub now: u64,
    /// The VSpaces by ASID.
    pub asids: AsidTable,
    /// Which I/O ports issued `IoPort` capabilities cover.
    pub io_ports: PortAllocation,
    /// The interrupt lines' handlers, bindings and masks.
    pub irqs: IrqTable,
    /// The entry format of GuestSpaces: the virtualisation backend's
    /// (NPT for `svm`, EPT for `vtx`), `None` on a machine without one.
    pub guest_format: Option<GuestFormat>,
}

impl<S> Kernel<S> {
    /// A kernel over `store` with nothing scheduled, the time 0, no ASID
    /// pool, no port issued, every interrupt line free and masked, and no
    /// guest format (the boot code sets it when it finds a backend).
    pub const fn new(store: S) -> Kernel<S> {
        Kernel {
            store,
            scheduler: Scheduler::new(),
            now: 0,
            asids: AsidTable::EMPTY,
            io_ports: PortAllocation::new(),
            irqs: IrqTable::new(),
            guest_format: None,
        }
    }
}

/// The slot in a TCB that holds its CSpace root.
#[must_use]
pub fn cspace_slot(thread: ThreadId) -> Option<SlotRef> {
    SlotRef::in_cnode(thread.address(), 0)
}

/// The slot in a TCB that holds its VSpace root (a PML4 with an ASID).
#[must_use]
pub fn vspace_slot(thread: ThreadId) -> Option<SlotRef> {
    SlotRef::in_cnode(thread.address(), 2)
}

/// The slot in a TCB that holds its IPC buffer frame.
#[must_use]
pub fn ipc_buffer_slot(thread: ThreadId) -> Option<SlotRef> {
    SlotRef::in_cnode(thread.address(), 3)
}

/// The RFLAGS bits a thread may choose: the arithmetic flags and the
/// direction flag. Interrupts are always enabled in ring 3 and bit 1 is
/// always set; trap, I/O privilege, nested-task, resume, virtual-8086,
/// alignment-check and ID stay clear.
pub const USER_RFLAGS: u64 = 0xcd5;
/// RFLAGS.IF and the always-one bit 1.
pub const RFLAGS_FIXED: u64 = 0x202;

/// Replaces the capability in a TCB slot with `cap`, derived from
/// `source`. Checked by the caller; the old capability's deletion is one
/// unlink (callers refuse a final CNode, whose deletion would be long).
fn install<S: ObjectStore, P: Platform>(
    store: &mut S,
    finaliser: &mut Finaliser<'_, P>,
    source: SlotRef,
    slot: SlotRef,
    cap: Cap,
) {
    if !store.slot(slot).cap.is_null() {
        let mut budget = WorkBudget(1);
        // A non-CNode capability (or a non-final CNode one) goes in one unit.
        let deleted = derivation::delete(store, slot, &mut budget, finaliser);
        debug_assert!(deleted.is_ok() && store.slot(slot).cap.is_null(), "a TCB slot's capability took one unit");
    }
    derivation::insert_derived(store, source, slot, cap, false);
}

/// Looks `cptr` up in the thread's CSpace (all 64 bits).
fn lookup(store: &impl ObjectStore, thread: ThreadId, cptr: u64) -> Result<SlotRef, SyscallError> {
    let root_slot = cspace_slot(thread).ok_or(SyscallError::FailedLookup)?;
    let root = store.slot(root_slot).cap;
    let resolved = cspace::resolve(store, &root, cptr, CPTR_BITS).map_err(|_| SyscallError::FailedLookup)?;
    if store.slot(resolved.slot).cap.is_null() {
        return Err(SyscallError::FailedLookup);
    }
    Ok(resolved.slot)
}

/// `DEBUG_NAME_THREAD` (a debugging call the architecture code decodes):
/// gives the thread whose TCB capability `cptr` names in `caller`'s CSpace
/// the debugging name `name`, which the kernel stores as it is and only
/// prints (seL4's TCB debug name).
///
/// # Errors
///
/// [`SyscallError::FailedLookup`] when `cptr` names no capability,
/// [`SyscallError::InvalidCapability`] when it names one that is not a
/// TCB capability.
pub fn name_thread(
    store: &mut impl ObjectStore,
    caller: ThreadId,
    cptr: u64,
    name: ThreadName,
) -> Result<(), SyscallError> {
    match store.slot(lookup(store, caller, cptr)?).cap {
        Cap::Tcb { object } => {
            store.tcb_mut(ThreadId::new(object)).name = name;
            Ok(())
        }
        _ => Err(SyscallError::InvalidCapability),
    }
}

fn set_result(store: &mut impl ObjectStore, thread: ThreadId, result: Result<(), SyscallError>) {
    set_reply(store, thread, result.map(|()| None));
}

/// An invocation's reply: the error code as the label, or success with at
/// most one result word (message word 0).
fn set_reply(store: &mut impl ObjectStore, thread: ThreadId, result: Result<Option<u64>, SyscallError>) {
    let tcb = store.tcb_mut(thread);
    tcb.info = match result {
        Ok(None) => MessageInfo { label: 0, length: 0, caps: 0 },
        Ok(Some(word)) => {
            tcb.words[0] = word;
            MessageInfo { label: 0, length: 1, caps: 0 }
        }
        Err(error) => MessageInfo { label: error.code(), length: 0, caps: 0 },
    };
}

/// Budget per system call for long operations (revoke, delete): each
/// capability deleted costs one unit.
const WORK_PER_CALL: u32 = 256;

/// Handles one system call of `thread` (the running thread).
///
/// # Errors
///
/// [`Preempted`] when a long invocation ran out of its work budget: the
/// architecture code restarts the same system call.
pub fn handle<S: ObjectStore>(
    kernel: &mut Kernel<S>,
    platform: &mut impl Platform,
    thread: ThreadId,
    args: SyscallArgs,
) -> Result<(), Preempted> {
    let blocking =
        matches!(args.number, number::CALL | number::SEND | number::RECV | number::REPLY_RECV | number::WAIT);
    if matches!(args.number, number::SEND | number::NB_SEND | number::CALL) {
        return send_or_invoke(kernel, platform, thread, args, blocking);
    }
    let Kernel { store, scheduler, asids, guest_format, now, .. } = kernel;
    let result = match args.number {
        number::VM_ENTER => vcpu::vm_enter(
            store,
            scheduler,
            asids,
            *guest_format,
            platform,
            thread,
            *now,
            usize::from(args.info.length),
        ),
        number::YIELD => {
            scheduler.yield_current(store);
            Ok(())
        }
        number::RECV | number::NB_RECV => receive(store, scheduler, thread, args.cptr, args.reply_cptr, blocking),
        number::REPLY_RECV => lookup_reply(store, thread, args.reply_cptr, false).and_then(|reply_object| {
            if usize::from(args.info.length) > ipc::MAX_MESSAGE_WORDS {
                return Err(SyscallError::RangeError);
            }
            // The reply carries no capability (no reply-grant path yet).
            store.tcb_mut(thread).info = MessageInfo { caps: 0, ..args.info };
            ipc::reply(store, scheduler, thread, reply_object, false);
            receive(store, scheduler, thread, args.cptr, args.reply_cptr, true)
        }),
        number::SIGNAL => notification_cap(store, thread, args.cptr, Rights::WRITE).map(|(object, badge)| {
            ipc::signal(store, scheduler, object, badge);
        }),
        number::WAIT | number::POLL => notification_cap(store, thread, args.cptr, Rights::READ).map(|(object, _)| {
            ipc::wait(store, scheduler, object, thread, blocking);
        }),
        _ => Err(SyscallError::InvalidArgument),
    };
    if let Err(error) = result {
        set_result(store, thread, Err(error));
    }
    Ok(())
}

fn notification_cap(
    store: &impl ObjectStore,
    thread: ThreadId,
    cptr: u64,
    right: Rights,
) -> Result<(PhysAddr, u64), SyscallError> {
    match store.slot(lookup(store, thread, cptr)?).cap {
        Cap::Notification { object, badge, rights } if rights.contains(right) => Ok((object, badge)),
        _ => Err(SyscallError::InvalidCapability),
    }
}

/// The reply object named by `cptr`; for a receive it must be free.
fn lookup_reply(
    store: &impl ObjectStore,
    thread: ThreadId,
    cptr: u64,
    must_be_free: bool,
) -> Result<PhysAddr, SyscallError> {
    match store.slot(lookup(store, thread, cptr)?).cap {
        Cap::Reply { object } if !must_be_free || store.reply(object).is_free() => Ok(object),
        Cap::Reply { .. } => Err(SyscallError::IllegalOperation),
        _ => Err(SyscallError::InvalidCapability),
    }
}

fn receive(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    thread: ThreadId,
    cptr: u64,
    reply_cptr: u64,
    blocking: bool,
) -> Result<(), SyscallError> {
    match store.slot(lookup(store, thread, cptr)?).cap {
        // Mutant: Recv/NBRecv/ReplyRecv accept an endpoint capability without READ.
        Cap::Endpoint { object, rights, .. }
            if rights.contains(Rights::READ) || cfg!(bulkhead_mutant = "recv_ignores_read_right") =>
        {
            let reply = if reply_cptr == 0 { None } else { Some(lookup_reply(store, thread, reply_cptr, true)?) };
            if ipc::receive(store, scheduler, thread, object, reply, blocking) == ipc::ReceiveOutcome::WouldBlock {
                // NBRecv found nobody: an empty message with badge 0.
                let tcb = store.tcb_mut(thread);
                tcb.info = MessageInfo::default();
                tcb.badge = 0;
            }
            Ok(())
        }
        Cap::Notification { object, rights, .. } if rights.contains(Rights::READ) => {
            ipc::wait(store, scheduler, object, thread, blocking);
            Ok(())
        }
        _ => Err(SyscallError::InvalidCapability),
    }
}

fn send_or_invoke<S: ObjectStore>(
    kernel: &mut Kernel<S>,
    platform: &mut impl Platform,
    thread: ThreadId,
    args: SyscallArgs,
    blocking: bool,
) -> Result<(), Preempted> {
    let Kernel { store, scheduler, .. } = kernel;
    let is_call = args.number == number::CALL;
    let invoked = match lookup(store, thread, args.cptr) {
        Ok(slot) => slot,
        Err(error) => {
            set_result(store, thread, Err(error));
            return Ok(());
        }
    };
    let length = usize::from(args.info.length);
    if length > ipc::MAX_MESSAGE_WORDS {
        set_result(store, thread, Err(SyscallError::RangeError));
        return Ok(());
    }
    match store.slot(invoked).cap {
        Cap::Endpoint { object, badge, rights } => {
            if !rights.contains(Rights::WRITE) {
                set_result(store, thread, Err(SyscallError::InvalidCapability));
                return Ok(());
            }
            // The capability to transfer (the first extra address) is looked
            // up when the message is delivered.
            store.tcb_mut(thread).info = MessageInfo { caps: args.info.caps.min(1), ..args.info };
            let endpoint = EndpointCap { object, badge, rights };
            if is_call {
                ipc::call(store, scheduler, thread, endpoint);
            } else {
                ipc::send(store, scheduler, thread, endpoint, blocking);
            }
            Ok(())
        }
        Cap::Notification { object, badge, rights } => {
            let result = if rights.contains(Rights::WRITE) {
                ipc::signal(store, scheduler, object, badge);
                Ok(())
            } else {
                Err(SyscallError::InvalidCapability)
            };
            set_result(store, thread, result);
            Ok(())
        }
        _ => {
            let result = invoke_kernel_object(kernel, platform, thread, invoked, args)?;
            // A Send of an invocation does not wait for (or get) the result.
            if is_call || result.is_err() {
                set_reply(&mut kernel.store, thread, result);
            }
            Ok(())
        }
    }
}

/// Decodes and performs an invocation of a kernel object; its result may
/// carry one reply word.
fn invoke_kernel_object<S: ObjectStore>(
    kernel: &mut Kernel<S>,
    platform: &mut impl Platform,
    thread: ThreadId,
    invoked: SlotRef,
    args: SyscallArgs,
) -> Result<Result<Option<u64>, SyscallError>, Preempted> {
    let Kernel { store, scheduler, now, asids, io_ports, irqs, guest_format } = kernel;
    let now = *now;
    let tcb = store.tcb(thread);
    let words: [u64; ipc::MAX_MESSAGE_WORDS] = tcb.words;
    let length = usize::from(args.info.length);
    let extra_count = usize::from(args.info.caps).min(tcb.extra_cptrs.len());
    let extra_cptrs = tcb.extra_cptrs;
    let mut extra_caps = [None; 3];
    for (index, cptr) in extra_cptrs[..extra_count].iter().enumerate() {
        extra_caps[index] = lookup(store, thread, *cptr).ok();
    }
    let message = Message { label: args.info.label, words: &words[..length], extra_caps: &extra_caps[..extra_count] };
    match store.slot(invoked).cap {
        Cap::CNode { .. } | Cap::Untyped { .. } => {
            let decoded = match invocation::decode(store, invoked, &message) {
                Ok(decoded) => decoded,
                Err(error) => return Ok(Err(error)),
            };
            let mut budget = WorkBudget(WORK_PER_CALL);
            let mut finaliser = Finaliser { scheduler, asids, io_ports, irqs, platform };
            invocation::invoke(store, decoded, &mut budget, &mut finaliser)?;
            Ok(Ok(None))
        }
        Cap::Tcb { object } => {
            let mut finaliser = Finaliser { scheduler, asids, io_ports, irqs, platform };
            Ok(invoke_tcb(store, &mut finaliser, ThreadId::new(object), &message).map(|()| None))
        }
        Cap::SchedControl => Ok(configure_sched_context(store, scheduler, now, &message).map(|()| None)),
        Cap::VCpu { object } => {
            let mut finaliser = Finaliser { scheduler, asids, io_ports, irqs, platform };
            Ok(vcpu::invoke(store, &mut finaliser, object, &message))
        }
        Cap::PageTable { .. } | Cap::Frame { .. } | Cap::AsidControl | Cap::AsidPool { .. } => {
            Ok(vspace::decode(store, asids, *guest_format, invoked, &message)
                .map(|decoded| vspace::invoke(store, asids, platform, decoded)))
        }
        Cap::IoPortControl | Cap::IoPort { .. } => Ok(io_port::decode(store, io_ports, invoked, &message)
            .map(|decoded| io_port::invoke(store, io_ports, platform, decoded))),
        Cap::IrqControl | Cap::IrqHandler { .. } => Ok(irq::decode(store, irqs, invoked, &message)
            .map(|decoded| irq::invoke(store, irqs, platform, decoded))
            .map(|()| None)),
        _ => Ok(Err(SyscallError::IllegalOperation)),
    }
}

fn extra(store: &impl ObjectStore, message: &Message<'_>, index: usize) -> Result<(SlotRef, Cap), SyscallError> {
    match message.extra_caps.get(index) {
        None => Err(SyscallError::TruncatedMessage),
        Some(None) => Err(SyscallError::InvalidCapability),
        Some(Some(slot)) => Ok((*slot, store.slot(*slot).cap)),
    }
}

fn word(message: &Message<'_>, index: usize) -> Result<u64, SyscallError> {
    message.words.get(index).copied().ok_or(SyscallError::TruncatedMessage)
}

/// TCB invocations, decoded then performed.
fn invoke_tcb<S: ObjectStore, P: Platform>(
    store: &mut S,
    finaliser: &mut Finaliser<'_, P>,
    target: ThreadId,
    message: &Message<'_>,
) -> Result<(), SyscallError> {
    let scheduler = &mut *finaliser.scheduler;
    match message.label {
        label::TCB_SET_SPACE | label::TCB_SET_FAULT_HANDLER | label::TCB_SET_IPC_BUFFER => {
            let (source, cap) = extra(store, message, 0)?;
            let slot = match (message.label, cap) {
                (label::TCB_SET_SPACE, Cap::CNode { .. }) => cspace_slot(target),
                (label::TCB_SET_FAULT_HANDLER, Cap::Endpoint { rights, .. }) if rights.contains(Rights::WRITE) => {
                    ipc::fault_slot(target)
                }
                (label::TCB_SET_IPC_BUFFER, Cap::Frame { size: FrameSize::Small, rights, is_device: false, .. })
                    if rights.contains(Rights::READ | Rights::WRITE) =>
                {
                    ipc_buffer_slot(target)
                }
                _ => return Err(SyscallError::InvalidCapability),
            }
            .ok_or(SyscallError::InvalidCapability)?;
            let derived = cap.derive()?;
            // SetSpace's optional second capability: the VSpace.
            let vspace = if message.label == label::TCB_SET_SPACE && message.extra_caps.len() > 1 {
                let (vspace_source, vspace_cap) = extra(store, message, 1)?;
                if !vspace::is_live_vspace(store, finaliser.asids, &vspace_cap) {
                    return Err(SyscallError::InvalidCapability);
                }
                let slot = vspace_slot(target).ok_or(SyscallError::InvalidCapability)?;
                Some((vspace_source, slot, vspace_cap.derive()?))
            } else {
                None
            };
            // Replacing the last capability to a CNode would mean deleting
            // its contents, a long operation: refuse it up front instead.
            if matches!(store.slot(slot).cap, Cap::CNode { .. }) && derivation::is_final(store, slot) {
                return Err(SyscallError::RevokeFirst);
            }
            // Invoke: the old capabilities go (one unlink each), the new
            // ones go in.
            install(store, finaliser, source, slot, derived);
            if let Some((vspace_source, vspace_slot, vspace_cap)) = vspace {
                install(store, finaliser, vspace_source, vspace_slot, vspace_cap);
            }
            Ok(())
        }
        label::TCB_WRITE_REGISTERS => {
            let words: [u64; 6] = core::array::from_fn(|index| message.words.get(index).copied().unwrap_or(0));
            if message.words.len() < words.len() {
                return Err(SyscallError::TruncatedMessage);
            }
            let [rip, rsp, rflags, rdi, rsi, rdx] = words;
            if rip >= vspace::USER_TOP || rsp > vspace::USER_TOP {
                return Err(SyscallError::InvalidArgument);
            }
            if store.tcb(target).state != ThreadState::Inactive {
                return Err(SyscallError::IllegalOperation);
            }
            store.tcb_mut(target).resumption = ipc::Resumption::Fresh;
            let registers = &mut store.tcb_mut(target).registers;
            *registers = ipc::UserRegisters::default();
            registers.rip = rip;
            registers.rsp = rsp;
            registers.rflags = (rflags & USER_RFLAGS) | RFLAGS_FIXED;
            (registers.rdi, registers.rsi, registers.rdx) = (rdi, rsi, rdx);
            Ok(())
        }
        label::TCB_SET_PRIORITY | label::TCB_SET_MAX_PRIORITY => {
            let priority = word(message, 0)?;
            let (_, authority) = extra(store, message, 0)?;
            let Cap::Tcb { object } = authority else { return Err(SyscallError::InvalidCapability) };
            let ceiling = store.tcb(ThreadId::new(object)).max_priority;
            let priority = u8::try_from(priority).map_err(|_| SyscallError::RangeError)?;
            // Mutant: the authority's maximum controlled priority is not checked.
            if usize::from(priority) >= PRIORITIES
                || (priority > ceiling && !cfg!(bulkhead_mutant = "priority_ceiling_ignored"))
            {
                return Err(SyscallError::RangeError);
            }
            if message.label == label::TCB_SET_MAX_PRIORITY {
                store.tcb_mut(target).max_priority = priority;
            } else {
                // Re-queue at the new priority.
                // Mutant: a runnable thread keeps its place (and the CPU) at the old priority.
                let runnable = store.tcb(target).state == ThreadState::Runnable
                    && !cfg!(bulkhead_mutant = "set_priority_no_requeue");
                if runnable {
                    scheduler.remove(store, target);
                }
                store.tcb_mut(target).priority = priority;
                if runnable {
                    scheduler.make_ready(store, target);
                }
            }
            Ok(())
        }
        label::TCB_BIND_SCHED_CONTEXT => {
            let (_, cap) = extra(store, message, 0)?;
            let Cap::SchedContext { object, .. } = cap else { return Err(SyscallError::InvalidCapability) };
            if store.sched_context(object).bound.is_some() || store.tcb(target).sched_context.is_some() {
                return Err(SyscallError::IllegalOperation);
            }
            let runnable = store.tcb(target).state == ThreadState::Runnable;
            if runnable {
                scheduler.remove(store, target);
            }
            store.sched_context_mut(object).bound = Some(target);
            store.tcb_mut(target).sched_context = Some(object);
            if runnable {
                scheduler.make_ready(store, target);
            }
            Ok(())
        }
        label::TCB_BIND_NOTIFICATION => {
            let (_, cap) = extra(store, message, 0)?;
            let Cap::Notification { object, rights, .. } = cap else { return Err(SyscallError::InvalidCapability) };
            if !rights.contains(Rights::READ) {
                return Err(SyscallError::InvalidCapability);
            }
            // Mutant: a notification bound to another thread binds again.
            let taken =
                store.notification(object).bound_tcb.is_some() && !cfg!(bulkhead_mutant = "bind_notification_twice");
            if store.tcb(target).bound_notification.is_some() || taken {
                return Err(SyscallError::IllegalOperation);
            }
            store.tcb_mut(target).bound_notification = Some(object);
            store.notification_mut(object).bound_tcb = Some(target);
            Ok(())
        }
        label::TCB_UNBIND_NOTIFICATION => {
            let Some(notification) = store.tcb_mut(target).bound_notification.take() else {
                return Err(SyscallError::IllegalOperation);
            };
            store.notification_mut(notification).bound_tcb = None;
            Ok(())
        }
        label::TCB_SET_PASSIVE => {
            // Only new Calls look at the flag: a loan already made lasts
            // until its reply.
            store.tcb_mut(target).passive = match word(message, 0)? {
                0 => false,
                1 => true,
                _ => return Err(SyscallError::RangeError),
            };
            Ok(())
        }
        label::TCB_RESUME => {
            if store.tcb(target).state == ThreadState::Inactive {
                store.tcb_mut(target).state = ThreadState::Runnable;
                scheduler.make_ready(store, target);
            }
            Ok(())
        }
        label::TCB_SUSPEND => {
            ipc::stop_thread(store, scheduler, target);
            Ok(())
        }
        _ => Err(SyscallError::IllegalOperation),
    }
}

/// SchedControl::Configure: budget and period for a scheduling context.
fn configure_sched_context(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    now: u64,
    message: &Message<'_>,
) -> Result<(), SyscallError> {
    if message.label != label::SCHED_CONTROL_CONFIGURE {
        return Err(SyscallError::IllegalOperation);
    }
    let (budget, period) = (word(message, 0)?, word(message, 1)?);
    let (_, cap) = extra(store, message, 0)?;
    let Cap::SchedContext { object, .. } = cap else { return Err(SyscallError::InvalidCapability) };
    if budget < MIN_BUDGET || period < budget {
        return Err(SyscallError::RangeError);
    }
    let bound = store.sched_context(object).bound;
    // Re-queue the thread running on it (the bound one, or the passive
    // server it is lent to): its budget changes which queue it is in.
    let runner = store.sched_context(object).lent_to.or(bound);
    let runnable = runner.filter(|thread| store.tcb(*thread).state == ThreadState::Runnable);
    if let Some(thread) = runnable {
        scheduler.remove(store, thread);
    }
    let lent_to = store.sched_context(object).lent_to;
    *store.sched_context_mut(object) = SchedContext { bound, lent_to, ..SchedContext::new(budget, period, now) };
    if let Some(thread) = runnable {
        scheduler.make_ready(store, thread);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
