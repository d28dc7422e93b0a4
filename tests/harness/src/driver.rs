//! The driver: operations, a strategy that generates them, and [`run`],
//! which applies each one to the real kernel core and to the spec, then
//! checks refinement and every invariant.
//!
//! Every operation but [`Op::Tick`] is a system call of the thread that
//! runs (the scheduler's current thread, the same on both sides while they
//! agree), made as the kernel's entry code makes it: the IPC fast path
//! first for Call and ReplyRecv (`kernel_core::fastpath`), otherwise
//! `syscall::handle` (restarted while it reports `Preempted`) and the
//! scheduler. [`Op::Tick`] is a timer interrupt. While no thread runs,
//! only ticks apply; the other operations are skipped.
//!
//! An operation's `Debug` output is Rust: with `use
//! bulkhead_harness::driver::{Addr::*, Op::*, TcbCall::*, rights::*,
//! types::*}` a printed (shrunk) sequence compiles as it is, so a failure
//! becomes a regression test by one copy (`tests/harness.rs` has some).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kernel_core::cap::Cap as KernelCap;
use kernel_core::fastpath::{fastpath_call, fastpath_reply_recv};
use kernel_core::ipc::{self, MessageInfo, ThreadId};
use kernel_core::memory::PhysAddr;
use kernel_core::platform::RecordingPlatform;
use kernel_core::store::{MapStore, ObjectStore};
use kernel_core::syscall::{self, Kernel, SyscallArgs};
use kernel_core::test_fixture;
use kernel_core::virt::GuestFormat;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

use crate::authority::{self, Graph};
use crate::invariants;
use crate::manifest::Scenario;
use crate::project;
use crate::spec::threads::{irq_label, number, tcb_label};
use crate::spec::vcpu::label as vcpu_label;
use crate::spec::vspace::vspace_label;
use crate::spec::{Boot, Loan, State, Syscall, label};

/// A slot address as CNode invocations take it: `R(i)` is slot `i` of the
/// root CNode (a 64-bit address from the root thread's CSpace root);
/// `In(node, index, depth)` is `index`, `depth` bits, relative to the CNode
/// capability at root cptr `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// Root CNode slot.
    R(u64),
    /// `(node cptr, index, depth)`.
    In(u64, u64, u64),
}

impl Addr {
    /// The cptr of the CNode the address is relative to.
    #[must_use]
    pub const fn node(self) -> u64 {
        match self {
            Addr::R(_) => 0,
            Addr::In(node, ..) => node,
        }
    }

    /// The index and depth words.
    #[must_use]
    pub const fn index_depth(self) -> [u64; 2] {
        match self {
            Addr::R(index) => [index, 64],
            Addr::In(_, index, depth) => [index, depth],
        }
    }
}

/// A rights word (bit 0 READ, 1 WRITE, 2 GRANT, 3 GRANT_REPLY; higher bits
/// are ignored by the kernel), printed by name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rights(pub u64);

/// The rights words by name: R read, W write, G grant, P grant-reply.
pub mod rights {
    use super::Rights;
    /// No right.
    pub const NONE: Rights = Rights(0);
    /// READ (printed `READ`: `R` alone is also [`Addr::R`](super::Addr::R)).
    pub const R: Rights = Rights(1);
    /// READ, by the name it prints as.
    pub const READ: Rights = R;
    /// WRITE.
    pub const W: Rights = Rights(2);
    /// READ | WRITE.
    pub const RW: Rights = Rights(3);
    /// GRANT.
    pub const G: Rights = Rights(4);
    /// READ | GRANT.
    pub const RG: Rights = Rights(5);
    /// WRITE | GRANT.
    pub const WG: Rights = Rights(6);
    /// READ | WRITE | GRANT.
    pub const RWG: Rights = Rights(7);
    /// GRANT_REPLY.
    pub const P: Rights = Rights(8);
    /// READ | GRANT_REPLY.
    pub const RP: Rights = Rights(9);
    /// WRITE | GRANT_REPLY.
    pub const WP: Rights = Rights(10);
    /// READ | WRITE | GRANT_REPLY.
    pub const RWP: Rights = Rights(11);
    /// GRANT | GRANT_REPLY.
    pub const GP: Rights = Rights(12);
    /// READ | GRANT | GRANT_REPLY.
    pub const RGP: Rights = Rights(13);
    /// WRITE | GRANT | GRANT_REPLY.
    pub const WGP: Rights = Rights(14);
    /// Every right.
    pub const RWGP: Rights = Rights(15);
    /// Every named word, in value order.
    pub const NAMED: [(&str, Rights); 16] = [
        ("NONE", NONE),
        ("READ", R),
        ("W", W),
        ("RW", RW),
        ("G", G),
        ("RG", RG),
        ("WG", WG),
        ("RWG", RWG),
        ("P", P),
        ("RP", RP),
        ("WP", WP),
        ("RWP", RWP),
        ("GP", GP),
        ("RGP", RGP),
        ("WGP", WGP),
        ("RWGP", RWGP),
    ];
}

impl fmt::Debug for Rights {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rights::NAMED.iter().find(|(_, named)| named == self) {
            Some((name, _)) => formatter.write_str(name),
            None => write!(formatter, "Rights({:#x})", self.0),
        }
    }
}

/// An `Untyped::Retype` type word, printed by name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Type(pub u64);

/// The type words by name (`docs/abi.md`, "Object types").
pub mod types {
    use super::Type;
    /// Untyped memory.
    pub const UNTYPED: Type = Type(0);
    /// A CNode.
    pub const CNODE: Type = Type(1);
    /// A TCB.
    pub const TCB: Type = Type(2);
    /// A scheduling context.
    pub const SCHED_CONTEXT: Type = Type(3);
    /// An endpoint.
    pub const ENDPOINT: Type = Type(4);
    /// A notification.
    pub const NOTIFICATION: Type = Type(5);
    /// A reply object.
    pub const REPLY: Type = Type(6);
    /// A 4 KiB frame.
    pub const FRAME_4K: Type = Type(7);
    /// A 2 MiB frame.
    pub const FRAME_2M: Type = Type(8);
    /// A 1 GiB frame.
    pub const FRAME_1G: Type = Type(9);
    /// A page table.
    pub const PAGE_TABLE: Type = Type(10);
    /// A page directory.
    pub const PAGE_DIRECTORY: Type = Type(11);
    /// A page directory pointer table.
    pub const PDPT: Type = Type(12);
    /// A PML4.
    pub const PML4: Type = Type(13);
    /// A VCpu.
    pub const VCPU: Type = Type(14);
    /// A GuestSpace.
    pub const GUEST_SPACE: Type = Type(15);
    /// Every named word.
    pub const NAMED: [(&str, Type); 16] = [
        ("UNTYPED", UNTYPED),
        ("CNODE", CNODE),
        ("TCB", TCB),
        ("SCHED_CONTEXT", SCHED_CONTEXT),
        ("ENDPOINT", ENDPOINT),
        ("NOTIFICATION", NOTIFICATION),
        ("REPLY", REPLY),
        ("FRAME_4K", FRAME_4K),
        ("FRAME_2M", FRAME_2M),
        ("FRAME_1G", FRAME_1G),
        ("PAGE_TABLE", PAGE_TABLE),
        ("PAGE_DIRECTORY", PAGE_DIRECTORY),
        ("PDPT", PDPT),
        ("PML4", PML4),
        ("VCPU", VCPU),
        ("GUEST_SPACE", GUEST_SPACE),
    ];
}

impl fmt::Debug for Type {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match types::NAMED.iter().find(|(_, named)| named == self) {
            Some((name, _)) => formatter.write_str(name),
            None => write!(formatter, "Type({:#x})", self.0),
        }
    }
}

/// A TCB invocation (its extra capabilities are addresses in the
/// caller's CSpace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcbCall {
    /// TCB::SetSpace with the CNode at `cnode` and, if given, the VSpace
    /// (PML4) at `vspace`.
    SetSpace {
        /// The CNode capability's address.
        cnode: u64,
        /// The PML4 capability's address.
        vspace: Option<u64>,
    },
    /// TCB::SetIpcBuffer with the frame at `frame`.
    SetIpcBuffer {
        /// The frame capability's address.
        frame: u64,
    },
    /// TCB::SetFaultHandler with the endpoint at `endpoint`.
    SetFaultHandler {
        /// The endpoint capability's address.
        endpoint: u64,
    },
    /// TCB::SetPriority.
    SetPriority {
        /// The priority word.
        priority: u64,
        /// The authority TCB capability's address.
        authority: u64,
    },
    /// TCB::SetMaxPriority.
    SetMaxPriority {
        /// The priority word.
        priority: u64,
        /// The authority TCB capability's address.
        authority: u64,
    },
    /// TCB::BindSchedContext with the scheduling context at `sched_context`.
    BindSchedContext {
        /// The scheduling context capability's address.
        sched_context: u64,
    },
    /// TCB::Resume.
    Resume,
    /// TCB::Suspend.
    Suspend,
    /// TCB::WriteRegisters (rdi, rsi, rdx are 1, 2, 3).
    WriteRegisters {
        /// The instruction pointer.
        rip: u64,
        /// The stack pointer.
        rsp: u64,
        /// RFLAGS.
        rflags: u64,
    },
    /// TCB::BindNotification with the notification at `notification`.
    BindNotification {
        /// The notification capability's address.
        notification: u64,
    },
    /// TCB::UnbindNotification.
    UnbindNotification,
    /// TCB::SetPassive with the word `passive` (1 passive, 0 ordinary,
    /// anything else refused).
    SetPassive {
        /// The passive word.
        passive: u64,
    },
}

/// A VCpu invocation (its extra capabilities are addresses in the
/// caller's CSpace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VCpuCall {
    /// VCpu::SetTcb with the TCB at `tcb`.
    SetTcb {
        /// The TCB capability's address.
        tcb: u64,
    },
    /// VCpu::SetSpace with the GuestSpace at `space`.
    SetSpace {
        /// The GuestSpace capability's address.
        space: u64,
    },
    /// VCpu::ReadState of field `field`.
    ReadState {
        /// The field word.
        field: u64,
    },
    /// VCpu::WriteState of `value` into field `field`.
    WriteState {
        /// The field word.
        field: u64,
        /// The value word.
        value: u64,
    },
}

impl VCpuCall {
    /// The label, argument words and extra capability addresses.
    #[must_use]
    pub fn message(&self) -> (u64, Vec<u64>, Vec<u64>) {
        match *self {
            VCpuCall::SetTcb { tcb } => (vcpu_label::SET_TCB, vec![], vec![tcb]),
            VCpuCall::SetSpace { space } => (vcpu_label::SET_SPACE, vec![], vec![space]),
            VCpuCall::ReadState { field } => (vcpu_label::READ_STATE, vec![field], vec![]),
            VCpuCall::WriteState { field, value } => (vcpu_label::WRITE_STATE, vec![field, value], vec![]),
        }
    }

    /// The invocation's name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            VCpuCall::SetTcb { .. } => "VCpu::SetTcb",
            VCpuCall::SetSpace { .. } => "VCpu::SetSpace",
            VCpuCall::ReadState { .. } => "VCpu::ReadState",
            VCpuCall::WriteState { .. } => "VCpu::WriteState",
        }
    }
}

impl TcbCall {
    /// The label, argument words and extra capability addresses.
    #[must_use]
    pub fn message(&self) -> (u64, Vec<u64>, Vec<u64>) {
        match *self {
            TcbCall::SetSpace { cnode, vspace } => {
                (tcb_label::TCB_SET_SPACE, vec![], std::iter::once(cnode).chain(vspace).collect())
            }
            TcbCall::SetIpcBuffer { frame } => (tcb_label::TCB_SET_IPC_BUFFER, vec![], vec![frame]),
            TcbCall::SetFaultHandler { endpoint } => (tcb_label::TCB_SET_FAULT_HANDLER, vec![], vec![endpoint]),
            TcbCall::SetPriority { priority, authority } => {
                (tcb_label::TCB_SET_PRIORITY, vec![priority], vec![authority])
            }
            TcbCall::SetMaxPriority { priority, authority } => {
                (tcb_label::TCB_SET_MAX_PRIORITY, vec![priority], vec![authority])
            }
            TcbCall::BindSchedContext { sched_context } => {
                (tcb_label::TCB_BIND_SCHED_CONTEXT, vec![], vec![sched_context])
            }
            TcbCall::Resume => (tcb_label::TCB_RESUME, vec![], vec![]),
            TcbCall::Suspend => (tcb_label::TCB_SUSPEND, vec![], vec![]),
            TcbCall::WriteRegisters { rip, rsp, rflags } => {
                (tcb_label::TCB_WRITE_REGISTERS, vec![rip, rsp, rflags, 1, 2, 3], vec![])
            }
            TcbCall::BindNotification { notification } => (vcpu_label::BIND_NOTIFICATION, vec![], vec![notification]),
            TcbCall::UnbindNotification => (vcpu_label::UNBIND_NOTIFICATION, vec![], vec![]),
            TcbCall::SetPassive { passive } => (tcb_label::TCB_SET_PASSIVE, vec![passive], vec![]),
        }
    }
}

/// An interrupt-handler invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqCall {
    /// IrqHandler::SetNotification with the notification at `notification`.
    SetNotification {
        /// The notification capability's address.
        notification: u64,
    },
    /// IrqHandler::Clear.
    Clear,
    /// IrqHandler::Ack.
    Ack,
}

/// An invocation of a paging-structure, frame or ASID capability (its
/// extra capabilities are addresses in the caller's CSpace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VSpaceCall {
    /// PageTable::Map into the VSpace at `vspace`, at the entry covering
    /// `vaddr`.
    MapTable {
        /// The virtual address.
        vaddr: u64,
        /// The PML4 capability's address.
        vspace: u64,
    },
    /// PageTable::Unmap.
    UnmapTable,
    /// Frame::Map into the VSpace at `vspace`.
    MapFrame {
        /// The virtual address.
        vaddr: u64,
        /// The rights word.
        rights: Rights,
        /// The attributes word (bit 0 executable, bits 1..=2 memory type).
        attributes: u64,
        /// The PML4 capability's address.
        vspace: u64,
    },
    /// Frame::Unmap.
    UnmapFrame,
    /// Frame::GetAddress.
    GetAddress,
    /// AsidControl::MakePool from the 4 KiB untyped at `untyped` into
    /// `dest`.
    MakePool {
        /// The untyped capability's address.
        untyped: u64,
        /// The destination slot.
        dest: Addr,
    },
    /// AsidPool::Assign to the PML4 at `vspace`.
    Assign {
        /// The PML4 capability's address.
        vspace: u64,
    },
}

impl VSpaceCall {
    /// The label, argument words and extra capability addresses.
    #[must_use]
    pub fn message(&self) -> (u64, Vec<u64>, Vec<u64>) {
        match *self {
            VSpaceCall::MapTable { vaddr, vspace } => (vspace_label::PAGE_TABLE_MAP, vec![vaddr], vec![vspace]),
            VSpaceCall::UnmapTable => (vspace_label::PAGE_TABLE_UNMAP, vec![], vec![]),
            VSpaceCall::MapFrame { vaddr, rights, attributes, vspace } => {
                (vspace_label::FRAME_MAP, vec![vaddr, rights.0, attributes], vec![vspace])
            }
            VSpaceCall::UnmapFrame => (vspace_label::FRAME_UNMAP, vec![], vec![]),
            VSpaceCall::GetAddress => (vspace_label::FRAME_GET_ADDRESS, vec![], vec![]),
            VSpaceCall::MakePool { untyped, dest } => {
                (vspace_label::ASID_CONTROL_MAKE_POOL, dest.index_depth().to_vec(), vec![untyped, dest.node()])
            }
            VSpaceCall::Assign { vspace } => (vspace_label::ASID_POOL_ASSIGN, vec![], vec![vspace]),
        }
    }

    /// The invocation's name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            VSpaceCall::MapTable { .. } => "PageTable::Map",
            VSpaceCall::UnmapTable => "PageTable::Unmap",
            VSpaceCall::MapFrame { .. } => "Frame::Map",
            VSpaceCall::UnmapFrame => "Frame::Unmap",
            VSpaceCall::GetAddress => "Frame::GetAddress",
            VSpaceCall::MakePool { .. } => "AsidControl::MakePool",
            VSpaceCall::Assign { .. } => "AsidPool::Assign",
        }
    }
}

/// The words of an IPC message of `count` words with `label`: word `i` is
/// `label << 8 | (i + 1)`, so a receiver's words say whose they are.
#[must_use]
pub fn message_words(label: u64, count: u8) -> Vec<u64> {
    (0..u64::from(count).min(120)).map(|index| (label << 8) | (index + 1)).collect()
}

/// One operation: a system call of the running thread, or a timer tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Untyped::Retype on the untyped at root cptr `untyped`: `count`
    /// objects into slots `offset..` of the CNode at (`node`, `node_depth`)
    /// relative to root cptr `root` (depth 0: that CNode itself).
    Retype {
        /// The untyped's cptr.
        untyped: u64,
        /// What to make.
        kind: Type,
        /// A size argument (untyped bits, CNode radix).
        size_bits: u64,
        /// The `node_root` extra capability's cptr.
        root: u64,
        /// `node_index`.
        node: u64,
        /// `node_depth`.
        node_depth: u64,
        /// `node_offset`.
        offset: u64,
        /// How many.
        count: u64,
    },
    /// CNode::Copy.
    Copy {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
        /// Rights mask.
        rights: Rights,
    },
    /// CNode::Mint.
    Mint {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
        /// Rights mask.
        rights: Rights,
        /// The data word: a badge, or a CNode's guard.
        badge: u64,
    },
    /// CNode::Move.
    Move {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
    },
    /// CNode::Mutate.
    Mutate {
        /// Destination.
        dest: Addr,
        /// Source.
        src: Addr,
        /// The data word (a CNode's guard).
        data: u64,
    },
    /// CNode::Delete.
    Delete {
        /// The slot.
        slot: Addr,
    },
    /// CNode::Revoke.
    Revoke {
        /// The slot.
        slot: Addr,
    },
    /// Any label on the capability at `cptr`, with the first `words` of
    /// [`RAW_WORDS`] and `extra` root-CNode extra capabilities: truncated
    /// messages and labels the capability does not understand.
    Raw {
        /// The invoked capability.
        cptr: u64,
        /// The label.
        label: u64,
        /// How many argument words.
        words: u8,
        /// How many extra capabilities (each the root CNode, cptr 0).
        extra: u8,
    },
    /// A TCB invocation (Call) on the TCB capability at `tcb`.
    Tcb {
        /// The TCB capability's address.
        tcb: u64,
        /// Which invocation.
        call: TcbCall,
    },
    /// SchedControl::Configure (Call on the capability at
    /// [`SCHED_CONTROL_SLOT`]) of the scheduling context at `sched_context`.
    Configure {
        /// The scheduling context capability's address.
        sched_context: u64,
        /// The budget word.
        budget: u64,
        /// The period word.
        period: u64,
    },
    /// Send (`blocking`) or NBSend of a [`message_words`] message, with
    /// the capability at `grant` to transfer.
    Send {
        /// The endpoint (or notification, or other) capability's address.
        cptr: u64,
        /// The label.
        label: u64,
        /// The length word (above 120 is refused).
        words: u8,
        /// The address of a capability to transfer.
        grant: Option<u64>,
        /// Send rather than NBSend.
        blocking: bool,
    },
    /// Call as IPC (on an endpoint; on another capability it is an
    /// invocation with these words).
    IpcCall {
        /// The capability's address.
        cptr: u64,
        /// The label.
        label: u64,
        /// The length word.
        words: u8,
        /// The address of a capability to transfer.
        grant: Option<u64>,
    },
    /// Recv (`blocking`) or NBRecv, naming a reply object (0: none) and a
    /// receive slot (address, depth).
    Recv {
        /// The endpoint or notification capability's address.
        cptr: u64,
        /// The reply object capability's address, or 0.
        reply: u64,
        /// Where a transferred capability may land.
        slot: Option<(u64, u64)>,
        /// Recv rather than NBRecv.
        blocking: bool,
    },
    /// ReplyRecv: a [`message_words`] reply through `reply`, then a receive
    /// on `cptr` with it.
    ReplyRecv {
        /// The endpoint capability's address.
        cptr: u64,
        /// The reply object capability's address.
        reply: u64,
        /// The reply's label.
        label: u64,
        /// The reply's length word.
        words: u8,
        /// Where a transferred capability may land.
        slot: Option<(u64, u64)>,
    },
    /// Signal.
    Signal {
        /// The notification capability's address.
        cptr: u64,
    },
    /// Wait (`blocking`) or Poll.
    Wait {
        /// The notification capability's address.
        cptr: u64,
        /// Wait rather than Poll.
        blocking: bool,
    },
    /// Yield.
    Yield,
    /// A system call by number (unknown numbers among them).
    Syscall {
        /// The number.
        number: u64,
        /// The capability address it names.
        cptr: u64,
    },
    /// IrqControl::Get (Call on the capability at [`IRQ_CONTROL_SLOT`]) of
    /// `line`'s handler into `dest`.
    IrqGet {
        /// The line word.
        line: u64,
        /// The destination slot.
        dest: Addr,
    },
    /// An interrupt-handler invocation on the capability at `handler`.
    Irq {
        /// The handler capability's address.
        handler: u64,
        /// Which invocation.
        call: IrqCall,
    },
    /// A paging-structure, frame or ASID invocation (Call) on the
    /// capability at `cptr`.
    VSpace {
        /// The invoked capability's address.
        cptr: u64,
        /// Which invocation.
        call: VSpaceCall,
    },
    /// A VCpu invocation (Call) on the capability at `vcpu`.
    VCpu {
        /// The VCpu capability's address.
        vcpu: u64,
        /// Which invocation.
        call: VCpuCall,
    },
    /// VMEnter by the running thread: registers `i + 1` (RSP `rsp`), RIP
    /// `rip`, RFLAGS `rflags`, event `event`, deadline `deadline` and
    /// controls `controls`, with length word `length`.
    VmEnter {
        /// RSP (word 4).
        rsp: u64,
        /// RIP (word 16).
        rip: u64,
        /// RFLAGS (word 17).
        rflags: u64,
        /// The event to inject (word 18).
        event: u64,
        /// The deadline (word 19; 0 for none).
        deadline: u64,
        /// The entry controls (word 20: bit 0 `WAIT`, bit 1
        /// `INTERRUPT_WINDOW`).
        controls: u64,
        /// The message's length word (21 and up is a whole message).
        length: u8,
    },
    /// A device interrupt on `line`: the kernel masks the line and
    /// signals its bound notification, then the scheduler picks.
    Interrupt {
        /// The line (16 and above name no line).
        line: u8,
    },
    /// A timer interrupt `ticks` after the last: the running thread is
    /// charged, due budgets refilled, and the scheduler picks (after a
    /// yield, when a round-robin slice ended).
    Tick {
        /// Ticks since the last one.
        ticks: u64,
        /// A round-robin slice ended.
        slice_ended: bool,
    },
}

/// The root CNode slot of the SchedControl capability.
pub const SCHED_CONTROL_SLOT: u64 = 255;
/// The root CNode slot of the IrqControl capability.
pub const IRQ_CONTROL_SLOT: u64 = 254;
/// The root CNode slot of the interrupt handler the setup issues.
pub const IRQ_HANDLER_SLOT: u64 = 25;
/// The line the setup's handler is for.
pub const SETUP_IRQ_LINE: u8 = 3;

/// The argument words a [`Op::Raw`] takes its first ones from: a copy of
/// root slot 3 into slot 5 with every right, data 7.
pub const RAW_WORDS: [u64; 6] = [5, 64, 3, 64, 0xf, 7];

impl Op {
    /// The operation's name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Op::Retype { .. } => "Retype",
            Op::Copy { .. } => "Copy",
            Op::Mint { .. } => "Mint",
            Op::Move { .. } => "Move",
            Op::Mutate { .. } => "Mutate",
            Op::Delete { .. } => "Delete",
            Op::Revoke { .. } => "Revoke",
            Op::Raw { .. } => "Raw",
            Op::Tcb { call, .. } => match call {
                TcbCall::SetSpace { .. } => "TCB::SetSpace",
                TcbCall::SetIpcBuffer { .. } => "TCB::SetIpcBuffer",
                TcbCall::SetFaultHandler { .. } => "TCB::SetFaultHandler",
                TcbCall::SetPriority { .. } => "TCB::SetPriority",
                TcbCall::SetMaxPriority { .. } => "TCB::SetMaxPriority",
                TcbCall::BindSchedContext { .. } => "TCB::BindSchedContext",
                TcbCall::Resume => "TCB::Resume",
                TcbCall::Suspend => "TCB::Suspend",
                TcbCall::WriteRegisters { .. } => "TCB::WriteRegisters",
                TcbCall::BindNotification { .. } => "TCB::BindNotification",
                TcbCall::UnbindNotification => "TCB::UnbindNotification",
                TcbCall::SetPassive { .. } => "TCB::SetPassive",
            },
            Op::Configure { .. } => "Configure",
            Op::Send { blocking: true, .. } => "Send",
            Op::Send { blocking: false, .. } => "NBSend",
            Op::IpcCall { .. } => "Call",
            Op::Recv { blocking: true, .. } => "Recv",
            Op::Recv { blocking: false, .. } => "NBRecv",
            Op::ReplyRecv { .. } => "ReplyRecv",
            Op::Signal { .. } => "Signal",
            Op::Wait { blocking: true, .. } => "Wait",
            Op::Wait { blocking: false, .. } => "Poll",
            Op::Yield => "Yield",
            Op::Syscall { .. } => "Syscall",
            Op::IrqGet { .. } => "IrqControl::Get",
            Op::Irq { call: IrqCall::SetNotification { .. }, .. } => "IrqHandler::SetNotification",
            Op::Irq { call: IrqCall::Clear, .. } => "IrqHandler::Clear",
            Op::Irq { call: IrqCall::Ack, .. } => "IrqHandler::Ack",
            Op::VSpace { call, .. } => call.name(),
            Op::VCpu { call, .. } => call.name(),
            Op::VmEnter { .. } => "VMEnter",
            Op::Interrupt { .. } => "Interrupt",
            Op::Tick { .. } => "Tick",
        }
    }

    /// The system call the operation makes (a [`Op::Tick`] or an
    /// [`Op::Interrupt`] makes none: `None`).
    #[must_use]
    pub fn call(&self) -> Option<Syscall> {
        let invoke = |cptr: u64, label: u64, words: Vec<u64>, extra: Vec<u64>| Syscall {
            number: number::CALL,
            cptr,
            label,
            length: u8::try_from(words.len()).unwrap_or(u8::MAX),
            words,
            extra,
            reply: 0,
            receive: (0, 0),
        };
        let ipc = |number: u64, cptr: u64, label: u64, count: u8, grant: Option<u64>| Syscall {
            number,
            cptr,
            label,
            length: count,
            words: message_words(label, count),
            extra: grant.into_iter().collect(),
            reply: 0,
            receive: (0, 0),
        };
        let transfer = |label: u64, dest: Addr, src: Addr, more: &[u64]| {
            let mut words = [dest.index_depth(), src.index_depth()].concat();
            words.extend_from_slice(more);
            invoke(dest.node(), label, words, vec![src.node()])
        };
        Some(match *self {
            Op::Retype { untyped, kind, size_bits, root, node, node_depth, offset, count } => invoke(
                untyped,
                label::UNTYPED_RETYPE,
                vec![kind.0, size_bits, node, node_depth, offset, count],
                vec![root],
            ),
            Op::Copy { dest, src, rights } => transfer(label::CNODE_COPY, dest, src, &[rights.0]),
            Op::Mint { dest, src, rights, badge } => transfer(label::CNODE_MINT, dest, src, &[rights.0, badge]),
            Op::Move { dest, src } => transfer(label::CNODE_MOVE, dest, src, &[]),
            Op::Mutate { dest, src, data } => transfer(label::CNODE_MUTATE, dest, src, &[data]),
            Op::Delete { slot } | Op::Revoke { slot } => invoke(
                slot.node(),
                if matches!(self, Op::Delete { .. }) { label::CNODE_DELETE } else { label::CNODE_REVOKE },
                slot.index_depth().to_vec(),
                Vec::new(),
            ),
            Op::Raw { cptr, label, words, extra } => invoke(
                cptr,
                label,
                RAW_WORDS[..usize::from(words).min(RAW_WORDS.len())].to_vec(),
                vec![0; usize::from(extra).min(3)],
            ),
            Op::Tcb { tcb, call } => {
                let (label, words, extra) = call.message();
                invoke(tcb, label, words, extra)
            }
            Op::VSpace { cptr, call } => {
                let (label, words, extra) = call.message();
                invoke(cptr, label, words, extra)
            }
            Op::VCpu { vcpu, call } => {
                let (label, words, extra) = call.message();
                invoke(vcpu, label, words, extra)
            }
            Op::VmEnter { rsp, rip, rflags, event, deadline, controls, length } => {
                let mut words: Vec<u64> = (1..=16).collect();
                words[4] = rsp;
                words.extend([rip, rflags, event, deadline, controls]);
                words.truncate(usize::from(length));
                Syscall { number: number::VM_ENTER, length, ..invoke(0, 0, words, Vec::new()) }
            }
            Op::Configure { sched_context, budget, period } => invoke(
                SCHED_CONTROL_SLOT,
                tcb_label::SCHED_CONTROL_CONFIGURE,
                vec![budget, period],
                vec![sched_context],
            ),
            Op::Send { cptr, label, words, grant, blocking } => {
                ipc(if blocking { number::SEND } else { number::NB_SEND }, cptr, label, words, grant)
            }
            Op::IpcCall { cptr, label, words, grant } => ipc(number::CALL, cptr, label, words, grant),
            Op::Recv { cptr, reply, slot, blocking } => Syscall {
                reply,
                receive: slot.unwrap_or((0, 0)),
                ..ipc(if blocking { number::RECV } else { number::NB_RECV }, cptr, 0, 0, None)
            },
            Op::ReplyRecv { cptr, reply, label, words, slot } => {
                Syscall { reply, receive: slot.unwrap_or((0, 0)), ..ipc(number::REPLY_RECV, cptr, label, words, None) }
            }
            Op::Signal { cptr } => ipc(number::SIGNAL, cptr, 0, 0, None),
            Op::Wait { cptr, blocking } => ipc(if blocking { number::WAIT } else { number::POLL }, cptr, 0, 0, None),
            Op::Yield => ipc(number::YIELD, 0, 0, 0, None),
            Op::Syscall { number, cptr } => ipc(number, cptr, 0, 0, None),
            Op::IrqGet { line, dest } => {
                let [index, depth] = dest.index_depth();
                invoke(IRQ_CONTROL_SLOT, irq_label::IRQ_CONTROL_GET, vec![line, index, depth], vec![dest.node()])
            }
            Op::Irq { handler, call } => match call {
                IrqCall::SetNotification { notification } => {
                    invoke(handler, irq_label::IRQ_HANDLER_SET_NOTIFICATION, vec![], vec![notification])
                }
                IrqCall::Clear => invoke(handler, irq_label::IRQ_HANDLER_CLEAR, vec![], vec![]),
                IrqCall::Ack => invoke(handler, irq_label::IRQ_HANDLER_ACK, vec![], vec![]),
            },
            Op::Interrupt { .. } | Op::Tick { .. } => return None,
        })
    }
}

/// The layout the harness boots: a 256-slot root CNode behind a 56-bit
/// guard, a 16 KiB untyped in slot 1, the root TCB's capability in slot 2,
/// a 2 GiB untyped for frames and paging structures in slot 252 (at
/// 2 GiB, so that a 1 GiB frame fits), and AsidControl, IrqControl and
/// SchedControl in slots 253, 254 and 255.
pub const BOOT: Boot = Boot {
    root_cnode: test_fixture::ROOT_CNODE,
    root_radix: 8,
    root_tcb: test_fixture::ROOT_TCB,
    untyped_base: test_fixture::UNTYPED_BASE,
    untyped_bits: 14,
    sched_control: SCHED_CONTROL_SLOT,
    irq_control: IRQ_CONTROL_SLOT,
    asid_control: ASID_CONTROL_SLOT,
    guest_backend: true,
    paging_untyped: PAGING_UNTYPED_SLOT,
    paging_untyped_base: 1 << 31,
    paging_untyped_bits: 31,
};

/// The root CNode slot of the untyped for frames and paging structures.
pub const PAGING_UNTYPED_SLOT: u64 = 252;
/// The root CNode slot of the AsidControl capability.
pub const ASID_CONTROL_SLOT: u64 = 253;
/// The root slot of the 4 KiB untyped the setup makes the ASID pool from.
pub const POOL_UNTYPED_SLOT: u64 = 26;
/// The root slot of the setup's ASID pool.
pub const ASID_POOL_SLOT: u64 = 27;
/// The root slot of the setup's VSpace (an assigned PML4).
pub const VSPACE_SLOT: u64 = 28;
/// The root slots of the setup's PDPT, page directory and page table,
/// linked into the VSpace to cover virtual address 0.
pub const TABLE_SLOTS: std::ops::Range<u64> = 29..32;
/// The root slots of the setup's 4 KiB frames (the first mapped at
/// [`SETUP_FRAME_VADDR`], read-write) and its 2 MiB frame (unmapped).
pub const FRAME_SLOTS: std::ops::Range<u64> = 32..35;
/// The root slot of a second PML4, left without an ASID.
pub const SPARE_PML4_SLOT: u64 = 35;
/// The root slot of a second page table, left unmapped.
pub const SPARE_TABLE_SLOT: u64 = 36;
/// The root slot of the setup's GuestSpace (with the pool's second ASID).
pub const GUEST_SPACE_SLOT: u64 = 37;
/// The root slots of the GuestSpace's PDPT and page directory, linked to
/// cover guest-physical 0, and of a 2 MiB frame mapped there.
pub const GUEST_OBJECT_SLOTS: std::ops::Range<u64> = 38..41;
/// The root slot of a copy of the first frame's capability, mapped at
/// [`SETUP_COPY_VADDR`]: a frame mapped twice, through capabilities that
/// are not its last, from the start.
pub const FRAME_COPY_SLOT: u64 = 41;
/// The root slot of the setup's VCpu, running in the GuestSpace.
pub const VCPU_SLOT: u64 = 42;
/// The root slots of the VCpus of the setup's threads (one each, the
/// thread in TCB slot `12 + i` runs the one in `43 + i`).
pub const THREAD_VCPU_SLOTS: std::ops::Range<u64> = 43..46;
/// The root slot of the scheduling context some setups bind the root to.
pub const ROOT_SCHED_CONTEXT_SLOT: u64 = 46;
/// Where the copy maps the frame.
pub const SETUP_COPY_VADDR: u64 = 0x4000;
/// Where the setup maps its first frame.
pub const SETUP_FRAME_VADDR: u64 = 0x1000;

/// Root slot of the root TCB's capability.
pub const ROOT_TCB_SLOT: u64 = 2;

/// The root slot of the endpoint the setup makes.
pub const ENDPOINT_SLOT: u64 = 3;
/// The root slot of the notification the setup makes.
pub const NOTIFICATION_SLOT: u64 = 4;
/// The root slots of the reply objects the setup makes.
pub const REPLY_SLOTS: std::ops::Range<u64> = 5..8;
/// The root slot of the 4-slot CNode the setup makes.
pub const CNODE_SLOT: u64 = 8;
/// The root slots the setup's random retypes fill.
pub const OBJECT_SLOTS: std::ops::Range<u64> = 9..12;
/// The root slots the setup makes threads' TCBs in.
pub const THREAD_SLOTS: std::ops::Range<u64> = 12..15;
/// The root slots the setup makes scheduling contexts in.
pub const SCHED_CONTEXT_SLOTS: std::ops::Range<u64> = 15..18;
/// Root slots the setup leaves empty (destinations, receive slots).
pub const FREE_SLOTS: std::ops::Range<u64> = 18..22;
/// Root slots of the badged capabilities the setup mints: the endpoint
/// with WRITE only and badge 0x11, the notification with badge 0x22 and
/// with badge 0x44.
pub const BADGED_SLOTS: std::ops::Range<u64> = 22..25;

/// A root-CNode cptr: mostly the first slots (where objects, threads and
/// scheduling contexts are made), the setup's address-space objects and
/// the paging untyped, at times one of the boot capabilities (weight
/// `boot_weight`), or anything.
fn root_cptr(boot_weight: u32) -> impl Strategy<Value = u64> {
    prop_oneof![
        40 => 3_u64..SCHED_CONTEXT_SLOTS.end,
        6 => BADGED_SLOTS,
        // Without this, Delete, Revoke, Copy and Move would almost never
        // name a pool, a VSpace or a mapped frame (a mutant that keeps a
        // deleted frame's mapping went unseen for 40,000 operations).
        6 => POOL_UNTYPED_SLOT..THREAD_VCPU_SLOTS.end,
        1 => Just(PAGING_UNTYPED_SLOT),
        boot_weight => 0_u64..3,
        2 => FREE_SLOTS.start..256,
        1 => any::<u64>(),
    ]
}

/// A slot address: mostly a root slot, else a slot of a CNode whose
/// capability may be in a root slot, now and then a malformed one.
fn addr(boot_weight: u32) -> BoxedStrategy<Addr> {
    prop_oneof![
        12 => root_cptr(boot_weight).prop_map(Addr::R),
        5 => (prop_oneof![3 => Just(CNODE_SLOT), 2 => 3_u64..12], 0_u64..8, 1_u64..=3)
            .prop_map(|(node, index, depth)| Addr::In(node, index, depth)),
        1 => (0_u64..12, any::<u64>(), prop_oneof![Just(0_u64), Just(65), Just(64), any::<u64>()])
            .prop_map(|(node, index, depth)| Addr::In(node, index, depth)),
    ]
    .boxed()
}

/// A destination: as [`addr`], or one of the root slots above those
/// objects are made in (more often empty).
fn dest() -> impl Strategy<Value = Addr> {
    prop_oneof![3 => addr(2), 1 => FREE_SLOTS.prop_map(Addr::R)]
}

fn rights_word() -> impl Strategy<Value = Rights> {
    prop_oneof![9 => (0_u64..16).prop_map(Rights), 1 => any::<u64>().prop_map(Rights)]
}

fn badge_word() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0_u64), 6 => 1_u64..4, 1 => any::<u64>()]
}

/// A Mutate data word: mostly a small guard (width 0..8), else anything.
fn guard_word() -> impl Strategy<Value = u64> {
    prop_oneof![4 => (0_u64..8, 0_u64..4).prop_map(|(bits, value)| (value << 6) | bits), 1 => any::<u64>()]
}

fn retype() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        4 => Just(types::ENDPOINT),
        3 => Just(types::NOTIFICATION),
        2 => Just(types::CNODE),
        2 => Just(types::UNTYPED),
        1 => Just(types::TCB),
        1 => Just(types::REPLY),
        1 => Just(types::SCHED_CONTEXT),
        2 => prop_oneof![6 => 7_u64..=13, 1 => 14_u64..=15].prop_map(Type),
        1 => prop_oneof![Just(16_u64), Just(99), any::<u64>().prop_filter("no type", |word| *word > 15)].prop_map(Type),
    ];
    let size_bits = prop_oneof![3 => 0_u64..=5, 3 => 4_u64..=15, 1 => any::<u64>()];
    let node = prop_oneof![
        6 => Just((0_u64, 0_u64)),
        3 => (3_u64..12).prop_map(|slot| (slot, 64)),
        1 => (any::<u64>(), 0_u64..=70),
    ];
    let offset = prop_oneof![6 => 3_u64..12, 2 => 0_u64..8, 1 => any::<u64>()];
    let count = prop_oneof![8 => 1_u64..=3, 1 => Just(0_u64), 1 => 4_u64..300, 1 => any::<u64>()];
    let untyped = prop_oneof![6 => Just(1_u64), 2 => Just(PAGING_UNTYPED_SLOT), 4 => root_cptr(1)];
    let root = prop_oneof![9 => Just(0_u64), 1 => root_cptr(1)];
    (untyped, kind, size_bits, root, node, offset, count).prop_map(
        |(untyped, kind, size_bits, root, (node, node_depth), offset, count)| Op::Retype {
            untyped,
            kind,
            size_bits,
            root,
            node,
            node_depth,
            offset,
            count,
        },
    )
}

/// Labels for [`Op::Raw`]: the CNode, Untyped, TCB and SchedControl
/// ones and others no capability understands.
fn raw_label() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0_u64..=20, 2 => 30_u64..=50, 1 => 1000_u64..=u64::from(u32::MAX)]
}

/// A VSpace (PML4) capability's address: mostly the setup's.
fn vspace_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![5 => Just(VSPACE_SLOT), 1 => Just(SPARE_PML4_SLOT), 2 => Just(GUEST_SPACE_SLOT), 2 => root_cptr(1)]
}

/// A frame capability's address: mostly the setup's.
fn frame_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![4 => FRAME_SLOTS, 1 => Just(GUEST_OBJECT_SLOTS.end - 1), 1 => FREE_SLOTS, 1 => root_cptr(1)]
}

/// A paging structure's capability address: mostly the setup's.
fn table_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => TABLE_SLOTS,
        2 => prop_oneof![Just(SPARE_PML4_SLOT), Just(SPARE_TABLE_SLOT), Just(VSPACE_SLOT), Just(GUEST_SPACE_SLOT)],
        1 => GUEST_OBJECT_SLOTS.start..GUEST_OBJECT_SLOTS.end - 1,
        1 => FREE_SLOTS,
        1 => root_cptr(1),
    ]
}

/// A virtual address: mostly ones the setup's structures cover (around
/// 0, 2 MiB, 1 GiB), the last page below the user half's end, the end
/// itself, misaligned ones, anything.
fn vaddr_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0_u64..4).prop_map(|page| page << 12),
        2 => prop::sample::select(vec![0_u64, 1 << 21, 2 << 21, 1 << 30, 1 << 39, 3 << 39]),
        1 => prop::sample::select(vec![(1 << 47) - (1 << 12), (1 << 47) - (1 << 21), 1 << 47, 0x1234, !0xfff]),
        1 => any::<u64>(),
    ]
}

/// A paging, frame or ASID invocation.
fn vspace_op() -> impl Strategy<Value = Op> {
    let attributes = prop_oneof![6 => 0_u64..8, 1 => any::<u64>()];
    let frame_rights = prop_oneof![3 => Just(rights::RW), 2 => Just(rights::R), 2 => rights_word()];
    let pool_untyped = prop_oneof![3 => Just(POOL_UNTYPED_SLOT), 2 => OBJECT_SLOTS, 1 => root_cptr(1)];
    prop_oneof![
        4 => (table_cptr(), vaddr_word(), vspace_cptr())
            .prop_map(|(cptr, vaddr, vspace)| Op::VSpace { cptr, call: VSpaceCall::MapTable { vaddr, vspace } }),
        2 => table_cptr().prop_map(|cptr| Op::VSpace { cptr, call: VSpaceCall::UnmapTable }),
        6 => (frame_cptr(), vaddr_word(), frame_rights, attributes, vspace_cptr()).prop_map(
            |(cptr, vaddr, rights, attributes, vspace)| Op::VSpace {
                cptr,
                call: VSpaceCall::MapFrame { vaddr, rights, attributes, vspace },
            }
        ),
        3 => frame_cptr().prop_map(|cptr| Op::VSpace { cptr, call: VSpaceCall::UnmapFrame }),
        1 => frame_cptr().prop_map(|cptr| Op::VSpace { cptr, call: VSpaceCall::GetAddress }),
        1 => (prop_oneof![4 => Just(ASID_CONTROL_SLOT), 1 => root_cptr(1)], pool_untyped, dest()).prop_map(
            |(cptr, untyped, dest)| Op::VSpace { cptr, call: VSpaceCall::MakePool { untyped, dest } }
        ),
        2 => (prop_oneof![4 => Just(ASID_POOL_SLOT), 1 => root_cptr(1)], vspace_cptr())
            .prop_map(|(cptr, vspace)| Op::VSpace { cptr, call: VSpaceCall::Assign { vspace } }),
    ]
}

/// A capability-system operation: mostly well-formed invocations on the
/// slots where objects are made, with malformed ones mixed in.
fn capability_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => retype(),
        4 => (dest(), addr(4), rights_word()).prop_map(|(dest, src, rights)| Op::Copy { dest, src, rights }),
        4 => (dest(), addr(4), rights_word(), badge_word())
            .prop_map(|(dest, src, rights, badge)| Op::Mint { dest, src, rights, badge }),
        2 => (dest(), addr(1)).prop_map(|(dest, src)| Op::Move { dest, src }),
        2 => (dest(), addr(1), guard_word()).prop_map(|(dest, src, data)| Op::Mutate { dest, src, data }),
        3 => addr(1).prop_map(|slot| Op::Delete { slot }),
        2 => addr(1).prop_map(|slot| Op::Revoke { slot }),
        1 => (prop_oneof![Just(0_u64), Just(1), root_cptr(2)], raw_label(), 0_u8..=6, 0_u8..=1)
            .prop_map(|(cptr, label, words, extra)| Op::Raw { cptr, label, words, extra }),
        6 => vspace_op().boxed(),
        3 => vcpu_op().boxed(),
        3 => teardown(),
    ]
}

/// A Revoke or a Delete of one of the setup's shared objects: the ASID
/// pool (its deletion takes every space's ASID, the one way a VCpu's
/// GuestSpace, kept alive by the VCpu's copy, dies), the CNode (deleted
/// with whatever the operations put in it), the notification bound to
/// an interrupt line and to a thread, the VSpace and the GuestSpace
/// (whose last capabilities free ASIDs), a mapped frame. A revoke
/// deletes the copies (threads' VSpace slots, badged mints, a VCpu's
/// GuestSpace), so that a later delete is the last. Without these, the
/// random operations reached such last deletions too rarely: once the
/// VCpu operations thinned the others out, kernels that forgot a CNode's
/// contents, an interrupt binding or a PML4's ASID went unseen for 60,000
/// operations.
fn teardown() -> impl Strategy<Value = Op> {
    let slots = vec![ASID_POOL_SLOT, CNODE_SLOT, NOTIFICATION_SLOT, VSPACE_SLOT, GUEST_SPACE_SLOT, FRAME_SLOTS.start];
    (prop::sample::select(slots), any::<bool>()).prop_map(|(slot, revoke)| {
        let slot = Addr::R(slot);
        if revoke { Op::Revoke { slot } } else { Op::Delete { slot } }
    })
}

/// A TCB capability's address: mostly a thread's, else the root's or any.
fn tcb_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![6 => THREAD_SLOTS, 2 => Just(2_u64), 2 => root_cptr(1)]
}

/// A scheduling context's address.
fn sched_context_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![4 => SCHED_CONTEXT_SLOTS, 1 => root_cptr(1)]
}

/// A priority word: mostly a few shared values, so that threads meet in
/// one ready queue; sometimes anything up to 255, or beyond.
fn priority_word() -> impl Strategy<Value = u64> {
    prop_oneof![6 => prop::sample::select(vec![0_u64, 50, 100, 200, 254, 255]), 2 => 0_u64..=255, 1 => any::<u64>()]
}

fn tcb_call() -> impl Strategy<Value = TcbCall> {
    prop_oneof![
        2 => (prop_oneof![4 => Just(0_u64), 1 => root_cptr(2)], prop_oneof![2 => Just(None), 2 => vspace_cptr().prop_map(Some)])
            .prop_map(|(cnode, vspace)| TcbCall::SetSpace { cnode, vspace }),
        1 => frame_cptr().prop_map(|frame| TcbCall::SetIpcBuffer { frame }),
        1 => root_cptr(1).prop_map(|endpoint| TcbCall::SetFaultHandler { endpoint }),
        4 => (priority_word(), prop_oneof![3 => Just(2_u64), 2 => tcb_cptr()])
            .prop_map(|(priority, authority)| TcbCall::SetPriority { priority, authority }),
        1 => (priority_word(), prop_oneof![3 => Just(2_u64), 2 => tcb_cptr()])
            .prop_map(|(priority, authority)| TcbCall::SetMaxPriority { priority, authority }),
        2 => sched_context_cptr().prop_map(|sched_context| TcbCall::BindSchedContext { sched_context }),
        3 => Just(TcbCall::Resume),
        2 => Just(TcbCall::Suspend),
        1 => (prop_oneof![3 => 0x1000_u64..0x10_0000, 1 => any::<u64>()], any::<u64>(), any::<u64>())
            .prop_map(|(rip, rsp, rflags)| TcbCall::WriteRegisters { rip, rsp: rsp >> 16, rflags }),
        2 => notification_cptr().prop_map(|notification| TcbCall::BindNotification { notification }),
        1 => Just(TcbCall::UnbindNotification),
        3 => passive_word().prop_map(|passive| TcbCall::SetPassive { passive }),
    ]
}

/// A TCB::SetPassive word: mostly 1 (so that Calls find passive servers
/// and lend them their contexts), often 0, at times one it refuses.
fn passive_word() -> impl Strategy<Value = u64> {
    prop_oneof![5 => Just(1_u64), 3 => Just(0_u64), 1 => 2_u64..=u64::MAX]
}

/// A VCpu capability's address: mostly the setup's.
fn vcpu_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![5 => Just(VCPU_SLOT), 3 => THREAD_VCPU_SLOTS, 2 => OBJECT_SLOTS, 1 => root_cptr(1)]
}

/// A guest-state field word: mostly a field, at times past the last or
/// anything.
fn field_word() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0_u64..59, 1 => 59_u64..64, 1 => any::<u64>()]
}

/// A guest-state value: values some field takes and some field refuses
/// (reserved bits, non-canonical addresses, a #GP with and without its
/// error code, CR0.NW without CD, CR4.VMXE, a PAT with and without a
/// reserved memory type), small numbers, anything.
fn state_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0_u64, 1, 2, 3, 0x202, 0x2_0002, 0x9b, 0xa9b, 0xfff0, 0xffff, 0x1000, 0x6000_0010, 0x8000_0031,
            0x2000_0000, 0xd01, 1 << 12, 1 << 13, 0x8000_0b0d, 0x8000_030d, 0x8000_0030, 0xffff_ffff, 1 << 32,
            1 << 47, 0xffff_8000_0000_0000, 1 << 52, 0x0007_0406_0007_0406, 0x0007_0406_0007_0402, 0b1010, 0b1000, 1 << 18,
        ]),
        2 => 0_u64..0x1_0000,
        1 => any::<u64>(),
    ]
}

/// A VCpu invocation.
fn vcpu_op() -> impl Strategy<Value = Op> {
    let space = prop_oneof![4 => Just(GUEST_SPACE_SLOT), 2 => vspace_cptr(), 1 => root_cptr(1)];
    let call = prop_oneof![
        2 => tcb_cptr().prop_map(|tcb| VCpuCall::SetTcb { tcb }),
        2 => space.prop_map(|space| VCpuCall::SetSpace { space }),
        1 => field_word().prop_map(|field| VCpuCall::ReadState { field }),
        4 => (field_word(), state_value()).prop_map(|(field, value)| VCpuCall::WriteState { field, value }),
    ];
    (vcpu_cptr(), call).prop_map(|(vcpu, call)| Op::VCpu { vcpu, call })
}

fn budget_and_period() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        6 => (100_u64..2_000, 0_u64..5_000).prop_map(|(budget, extra)| (budget, budget + extra)),
        1 => (0_u64..200, 0_u64..300),
        1 => (any::<u64>(), any::<u64>()),
    ]
}

/// An IPC label.
fn ipc_label() -> impl Strategy<Value = u64> {
    // Above every error code, so that a received label never reads as one
    // in the statistics (labels are 52 bits).
    prop_oneof![6 => 0x100_u64..0x108, 1 => 0x100_u64..1 << 52]
}

/// A message length word: mostly short, at times long or beyond 120.
fn length_word() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0_u8..=6, 1 => 100_u8..=127]
}

/// A capability to transfer: mostly none.
fn grant() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![3 => Just(None), 1 => root_cptr(3).prop_map(Some)]
}

/// A receive slot: mostly none or an empty root slot, at times anything.
fn receive_slot() -> impl Strategy<Value = Option<(u64, u64)>> {
    prop_oneof![
        2 => Just(None),
        3 => FREE_SLOTS.prop_map(|slot| Some((slot, 64))),
        1 => (root_cptr(1), 0_u64..=70).prop_map(Some),
    ]
}

/// A reply object's address for a receive: mostly one of the setup's,
/// the first of them most often (a server that receives and replies
/// through one reply object, so that its ReplyRecv answers the Call it
/// received and ends the loan the Call made), at times none or anything.
fn reply_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0_u64), 3 => Just(REPLY_SLOTS.start), 3 => REPLY_SLOTS, 1 => root_cptr(1)]
}

/// An IPC operation's endpoint: mostly the setup's.
fn endpoint_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![5 => Just(ENDPOINT_SLOT), 2 => Just(BADGED_SLOTS.start), 1 => Just(NOTIFICATION_SLOT), 2 => root_cptr(1)]
}

/// A notification operation's capability: mostly the setup's.
fn notification_cptr() -> impl Strategy<Value = u64> {
    prop_oneof![4 => Just(NOTIFICATION_SLOT), 3 => BADGED_SLOTS.start + 1..BADGED_SLOTS.end, 2 => root_cptr(1)]
}

/// A thread operation: IPC, notifications, TCB and SchedControl
/// invocations, yields and timer ticks.
fn thread_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (tcb_cptr(), tcb_call().boxed()).prop_map(|(tcb, call)| Op::Tcb { tcb, call }),
        1 => (sched_context_cptr(), budget_and_period())
            .prop_map(|(sched_context, (budget, period))| Op::Configure { sched_context, budget, period }),
        4 => (endpoint_cptr(), ipc_label(), length_word(), grant(), any::<bool>())
            .prop_map(|(cptr, label, words, grant, blocking)| Op::Send { cptr, label, words, grant, blocking }),
        4 => (endpoint_cptr(), ipc_label(), length_word(), grant())
            .prop_map(|(cptr, label, words, grant)| Op::IpcCall { cptr, label, words, grant }),
        4 => (endpoint_cptr(), reply_cptr(), receive_slot(), prop_oneof![3 => Just(true), 1 => Just(false)])
            .prop_map(|(cptr, reply, slot, blocking)| Op::Recv { cptr, reply, slot, blocking }),
        3 => (endpoint_cptr(), reply_cptr(), ipc_label(), length_word(), receive_slot())
            .prop_map(|(cptr, reply, label, words, slot)| Op::ReplyRecv { cptr, reply, label, words, slot }),
        3 => notification_cptr().prop_map(|cptr| Op::Signal { cptr }),
        2 => (notification_cptr(), any::<bool>()).prop_map(|(cptr, blocking)| Op::Wait { cptr, blocking }),
        1 => Just(Op::Yield),
        4 => (prop_oneof![3 => 0_u64..300, 2 => 100_u64..5_000, 1 => any::<u32>().prop_map(u64::from)], any::<bool>())
            .prop_map(|(ticks, slice_ended)| Op::Tick { ticks, slice_ended }),
        1 => (prop_oneof![Just(0_u64), 11_u64..20, any::<u64>()], root_cptr(1))
            .prop_map(|(number, cptr)| Op::Syscall { number, cptr }),
        3 => irq_op(),
        2 => vm_enter_op(),
    ]
}

/// VMEnter: mostly a whole message with values VMEnter takes, at times
/// refused ones (non-canonical addresses, reserved flags, malformed
/// events, undefined control bits) or a short message (the 19 words of
/// before the deadline and the controls among them); deadlines of none,
/// soon (past or ahead of the ticks so far) or far off, and `WAIT`s that
/// sleep on the bound notification or alone.
fn vm_enter_op() -> BoxedStrategy<Op> {
    let address = prop_oneof![6 => 0_u64..0x1_0000, 1 => state_value()];
    let rflags = prop_oneof![6 => Just(0x2_u64), 2 => Just(0x202), 1 => state_value()];
    let event = prop_oneof![6 => Just(0_u64), 2 => Just(0x8000_0b0d), 1 => state_value()];
    let deadline = prop_oneof![4 => Just(0_u64), 4 => 1_u64..20_000, 1 => any::<u64>()];
    let controls = prop_oneof![8 => 0_u64..4, 1 => any::<u64>()];
    let length = prop_oneof![8 => Just(21_u8), 1 => Just(19_u8), 1 => 0_u8..21, 1 => 22_u8..=127];
    ((address.clone(), address, rflags, event), (deadline, controls, length))
        .prop_map(|((rsp, rip, rflags, event), (deadline, controls, length))| Op::VmEnter {
            rsp,
            rip,
            rflags,
            event,
            deadline,
            controls,
            length,
        })
        .boxed()
}

/// Interrupts (mostly on the setup's line) and the interrupt
/// invocations.
fn irq_op() -> BoxedStrategy<Op> {
    let line = prop_oneof![4 => Just(u64::from(SETUP_IRQ_LINE)), 2 => 0_u64..16, 1 => any::<u64>()];
    let handler = prop_oneof![4 => Just(IRQ_HANDLER_SLOT), 1 => root_cptr(1)];
    let call = prop_oneof![
        2 => notification_cptr().prop_map(|notification| IrqCall::SetNotification { notification }),
        1 => Just(IrqCall::Clear),
        4 => Just(IrqCall::Ack),
    ];
    prop_oneof![
        4 => prop_oneof![5 => Just(SETUP_IRQ_LINE), 1 => 0_u8..20].prop_map(|line| Op::Interrupt { line }),
        1 => (line, dest()).prop_map(|(line, dest)| Op::IrqGet { line, dest }),
        4 => (handler, call).prop_map(|(handler, call)| Op::Irq { handler, call }),
    ]
    .boxed()
}

/// One operation: a capability-system operation or a thread operation,
/// about half each.
pub fn op() -> impl Strategy<Value = Op> {
    // Boxed: the unboxed strategy's value trees are deep enough types to
    // overflow a test thread's stack in a debug build.
    prop_oneof![24 => capability_op().boxed(), 33 => thread_op().boxed()]
}

/// A well-formed retype from the boot untyped into the root CNode: what
/// starts every sequence, so that the operations after it find objects.
fn setup_retype() -> impl Strategy<Value = Op> {
    let kind_and_size = prop_oneof![
        3 => Just((types::ENDPOINT, 0_u64)),
        2 => Just((types::NOTIFICATION, 0)),
        2 => (1_u64..=3).prop_map(|radix| (types::CNODE, radix)),
        1 => (6_u64..=10).prop_map(|bits| (types::UNTYPED, bits)),
        1 => Just((types::REPLY, 0)),
    ];
    (kind_and_size, OBJECT_SLOTS, 1_u64..=2)
        .prop_map(|((kind, size_bits), offset, count)| Op::retype_root(kind, size_bits, offset, count))
}

impl Op {
    /// A well-formed retype of `count` objects from the boot untyped into
    /// root slots `offset..`.
    #[must_use]
    pub const fn retype_root(kind: Type, size_bits: u64, offset: u64, count: u64) -> Op {
        Op::Retype { untyped: 1, kind, size_bits, root: 0, node: 0, node_depth: 0, offset, count }
    }
}

/// The operations that make one more thread in root slot `slot`: a TCB
/// sharing the root's CSpace at `priority` (the root's TCB the
/// authority), with `budget` (budget, period) on a scheduling context in
/// the matching slot of [`SCHED_CONTEXT_SLOTS`], started.
#[must_use]
pub fn thread_setup(slot: u64, priority: u64, budget: Option<(u64, u64)>) -> Vec<Op> {
    let context = slot - THREAD_SLOTS.start + SCHED_CONTEXT_SLOTS.start;
    let mut ops = vec![
        Op::retype_root(types::TCB, 0, slot, 1),
        Op::Tcb { tcb: slot, call: TcbCall::SetSpace { cnode: 0, vspace: None } },
        Op::Tcb { tcb: slot, call: TcbCall::SetPriority { priority, authority: ROOT_TCB_SLOT } },
    ];
    if let Some((budget, period)) = budget {
        ops.extend([
            Op::retype_root(types::SCHED_CONTEXT, 8, context, 1),
            Op::Configure { sched_context: context, budget, period },
            Op::Tcb { tcb: slot, call: TcbCall::BindSchedContext { sched_context: context } },
        ]);
    }
    ops.push(Op::Tcb { tcb: slot, call: TcbCall::Resume });
    ops
}

/// The setup of one more thread, in TCB slot `slot`: a TCB sharing the
/// root's CSpace at a priority below the root's, sometimes on a
/// configured scheduling context, started.
fn setup_thread(slot: u64) -> impl Strategy<Value = Vec<Op>> {
    let priority = prop::sample::select(vec![50_u64, 100, 100, 200, 254]);
    let budget = prop_oneof![1 => Just(None), 1 => (200_u64..1_000, 1_000_u64..3_000).prop_map(Some)];
    (priority, budget, any::<bool>()).prop_map(move |(priority, budget, in_vspace)| {
        let mut ops = thread_setup(slot, priority, budget);
        if in_vspace {
            let space = TcbCall::SetSpace { cnode: 0, vspace: Some(VSPACE_SLOT) };
            let buffer = TcbCall::SetIpcBuffer { frame: FRAME_SLOTS.start };
            ops.insert(1, Op::Tcb { tcb: slot, call: space });
            ops.insert(2, Op::Tcb { tcb: slot, call: buffer });
        }
        // A VCpu of its own in the GuestSpace, so that its VMEnters run.
        let vcpu = slot - THREAD_SLOTS.start + THREAD_VCPU_SLOTS.start;
        let retype = Op::Retype {
            untyped: PAGING_UNTYPED_SLOT,
            kind: types::VCPU,
            size_bits: 0,
            root: 0,
            node: 0,
            node_depth: 0,
            offset: vcpu,
            count: 1,
        };
        ops.insert(1, retype);
        ops.insert(2, Op::VCpu { vcpu, call: VCpuCall::SetSpace { space: GUEST_SPACE_SLOT } });
        ops.insert(3, Op::VCpu { vcpu, call: VCpuCall::SetTcb { tcb: slot } });
        ops
    })
}

/// What every setup makes first: the endpoint, the notification, the
/// reply objects and the badged capabilities the IPC operations mostly
/// use, a CNode of 4 slots, and the handler of interrupt line
/// [`SETUP_IRQ_LINE`] bound to the notification with badge 0x44.
#[must_use]
pub fn ipc_objects() -> Vec<Op> {
    let retype = |kind: Type, offset: u64, count: u64| {
        Op::retype_root(kind, if kind == types::CNODE { 2 } else { 0 }, offset, count)
    };
    vec![
        retype(types::ENDPOINT, ENDPOINT_SLOT, 1),
        retype(types::NOTIFICATION, NOTIFICATION_SLOT, 1),
        retype(types::REPLY, REPLY_SLOTS.start, REPLY_SLOTS.end - REPLY_SLOTS.start),
        retype(types::CNODE, CNODE_SLOT, 1),
        Op::Mint { dest: Addr::R(BADGED_SLOTS.start), src: Addr::R(ENDPOINT_SLOT), rights: rights::W, badge: 0x11 },
        Op::Mint {
            dest: Addr::R(BADGED_SLOTS.start + 1),
            src: Addr::R(NOTIFICATION_SLOT),
            rights: rights::RWGP,
            badge: 0x22,
        },
        Op::Mint {
            dest: Addr::R(BADGED_SLOTS.start + 2),
            src: Addr::R(NOTIFICATION_SLOT),
            rights: rights::RWGP,
            badge: 0x44,
        },
        Op::IrqGet { line: u64::from(SETUP_IRQ_LINE), dest: Addr::R(IRQ_HANDLER_SLOT) },
        Op::Irq { handler: IRQ_HANDLER_SLOT, call: IrqCall::SetNotification { notification: BADGED_SLOTS.start + 2 } },
    ]
}

/// What every random setup makes next, from the paging untyped: an ASID
/// pool (from a 4 KiB untyped), a VSpace with that pool's first ASID, a
/// PDPT, a page directory and a page table linked into it to cover
/// virtual address 0, two 4 KiB frames (the first mapped read-write at
/// [`SETUP_FRAME_VADDR`]), a 2 MiB frame, a second PML4 without an ASID
/// and a second page table, unmapped; and a GuestSpace with the next ASID
/// and 2 MiB of guest memory at guest-physical 0 (through its own PDPT
/// and page directory); and a copy of the first frame's capability that
/// maps it a second time, read-only, at [`SETUP_COPY_VADDR`].
#[must_use]
pub fn vspace_objects() -> Vec<Op> {
    let retype = |kind: Type, size_bits: u64, offset: u64, count: u64| Op::Retype {
        untyped: PAGING_UNTYPED_SLOT,
        kind,
        size_bits,
        root: 0,
        node: 0,
        node_depth: 0,
        offset,
        count,
    };
    let invoke = |cptr: u64, call: VSpaceCall| Op::VSpace { cptr, call };
    let mut ops = vec![
        retype(types::UNTYPED, 12, POOL_UNTYPED_SLOT, 1),
        invoke(ASID_CONTROL_SLOT, VSpaceCall::MakePool { untyped: POOL_UNTYPED_SLOT, dest: Addr::R(ASID_POOL_SLOT) }),
        retype(types::PML4, 0, VSPACE_SLOT, 1),
        invoke(ASID_POOL_SLOT, VSpaceCall::Assign { vspace: VSPACE_SLOT }),
    ];
    for (slot, kind) in TABLE_SLOTS.zip([types::PDPT, types::PAGE_DIRECTORY, types::PAGE_TABLE]) {
        ops.push(retype(kind, 0, slot, 1));
        ops.push(invoke(slot, VSpaceCall::MapTable { vaddr: 0, vspace: VSPACE_SLOT }));
    }
    ops.extend([
        retype(types::FRAME_4K, 0, FRAME_SLOTS.start, 2),
        invoke(
            FRAME_SLOTS.start,
            VSpaceCall::MapFrame { vaddr: SETUP_FRAME_VADDR, rights: rights::RW, attributes: 0, vspace: VSPACE_SLOT },
        ),
        retype(types::PML4, 0, SPARE_PML4_SLOT, 1),
        retype(types::PAGE_TABLE, 0, SPARE_TABLE_SLOT, 1),
        retype(types::FRAME_2M, 0, FRAME_SLOTS.start + 2, 1),
        // A guest's physical memory: 2 MiB at guest-physical 0.
        retype(types::GUEST_SPACE, 0, GUEST_SPACE_SLOT, 1),
        invoke(ASID_POOL_SLOT, VSpaceCall::Assign { vspace: GUEST_SPACE_SLOT }),
        retype(types::PDPT, 0, GUEST_OBJECT_SLOTS.start, 1),
        retype(types::PAGE_DIRECTORY, 0, GUEST_OBJECT_SLOTS.start + 1, 1),
        retype(types::FRAME_2M, 0, GUEST_OBJECT_SLOTS.start + 2, 1),
    ]);
    for table in GUEST_OBJECT_SLOTS.start..GUEST_OBJECT_SLOTS.end - 1 {
        ops.push(invoke(table, VSpaceCall::MapTable { vaddr: 0, vspace: GUEST_SPACE_SLOT }));
    }
    let guest_memory = VSpaceCall::MapFrame { vaddr: 0, rights: rights::RW, attributes: 1, vspace: GUEST_SPACE_SLOT };
    ops.push(invoke(GUEST_OBJECT_SLOTS.end - 1, guest_memory));
    ops.push(Op::Copy { dest: Addr::R(FRAME_COPY_SLOT), src: Addr::R(FRAME_SLOTS.start), rights: rights::RWGP });
    let copy = VSpaceCall::MapFrame { vaddr: SETUP_COPY_VADDR, rights: rights::R, attributes: 0, vspace: VSPACE_SLOT };
    ops.push(invoke(FRAME_COPY_SLOT, copy));
    ops.push(retype(types::VCPU, 0, VCPU_SLOT, 1));
    ops.push(Op::VCpu { vcpu: VCPU_SLOT, call: VCpuCall::SetSpace { space: GUEST_SPACE_SLOT } });
    ops
}

/// The setup: the IPC objects, the VSpace objects, a few retypes that
/// make more objects, then one to three more threads (some in the
/// setup's VSpace, with an IPC buffer); often a passive server (the root
/// or the first thread), and in half the setups a configured scheduling
/// context ([`ROOT_SCHED_CONTEXT_SLOT`]) for the root.
fn setup(retypes: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<Op>> {
    let threads = (1_u64..=3)
        .prop_flat_map(|count| (THREAD_SLOTS.start..THREAD_SLOTS.start + count).map(setup_thread).collect::<Vec<_>>());
    let passive = prop::sample::select(vec![None, Some(ROOT_TCB_SLOT), Some(ROOT_TCB_SLOT), Some(THREAD_SLOTS.start)]);
    let root_budget = prop_oneof![1 => Just(None), 1 => (500_u64..2_000, 2_000_u64..4_000).prop_map(Some)];
    let parts = (proptest::collection::vec(setup_retype(), retypes), threads, passive, root_budget);
    parts.prop_map(|(retypes, threads, passive, root_budget)| {
        let mut ops = ipc_objects();
        ops.extend(vspace_objects());
        ops.extend(retypes);
        ops.extend(threads.into_iter().flatten());
        // The root, which runs most, runs the VCpu (its VMEnters reach the
        // guest); the first thread has the notification bound.
        let first = THREAD_SLOTS.start;
        ops.push(Op::VCpu { vcpu: VCPU_SLOT, call: VCpuCall::SetTcb { tcb: ROOT_TCB_SLOT } });
        ops.push(Op::Tcb { tcb: first, call: TcbCall::BindNotification { notification: NOTIFICATION_SLOT } });
        // Often a passive server: the root (in half the setups without a
        // scheduling context of its own, as seL4's passive servers) or the
        // first thread, so that Calls from threads with a budget lend it
        // theirs.
        if let Some(server) = passive {
            ops.push(Op::Tcb { tcb: server, call: TcbCall::SetPassive { passive: 1 } });
        }
        // In half the setups the root runs on a budget too, so that its Calls
        // (it makes most) lend a context to a passive thread.
        if let Some((budget, period)) = root_budget {
            let context = ROOT_SCHED_CONTEXT_SLOT;
            ops.extend([
                Op::retype_root(types::SCHED_CONTEXT, 8, context, 1),
                Op::Configure { sched_context: context, budget, period },
                Op::Tcb { tcb: ROOT_TCB_SLOT, call: TcbCall::BindSchedContext { sched_context: context } },
            ]);
        }
        ops
    })
}

/// A sequence: the setup, then up to `length` operations (any number, so
/// that shrinking can drop every operation a failure does not need).
pub fn sequence(length: usize) -> impl Strategy<Value = Vec<Op>> {
    sequence_within(1..=5, 1..=length)
}

/// A sequence of the setup, then exactly `length` operations.
pub fn sequence_of_length(length: usize) -> impl Strategy<Value = Vec<Op>> {
    sequence_within(2..=5, length..=length)
}

fn sequence_within(
    retypes: std::ops::RangeInclusive<usize>,
    length: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<Op>> {
    (setup(retypes), proptest::collection::vec(op(), length)).prop_map(|(mut setup, ops)| {
        setup.extend(ops);
        setup
    })
}

/// One check that failed after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which check: `result`, `refinement`, `projection`,
    /// `derivation_list_well_formed`, or an invariant's name prefixed by
    /// `kernel:` (on the projected kernel state) or `spec:`.
    pub check: String,
    /// What differed.
    pub detail: String,
}

/// A failed step: where, what ran, and every check that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The step's index in the sequence (`None`: right after boot).
    pub step: Option<usize>,
    /// The operation of that step.
    pub op: Option<Op>,
    /// The failed checks.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.step, self.op) {
            (Some(step), Some(op)) => writeln!(formatter, "Violation at step {step}: {op:?}")?,
            _ => writeln!(formatter, "Violation right after boot")?,
        }
        for failure in &self.failures {
            writeln!(formatter, "  [{}] {}", failure.check, failure.detail)?;
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations run on both the kernel and the spec.
    pub applied: usize,
    /// Operations skipped: a system call while no thread runs.
    pub skipped: usize,
    /// Calls and ReplyRecvs the kernel's IPC fast path handled.
    pub fast_paths: usize,
    /// Scheduling contexts lent to passive servers (loans that began).
    pub loans_begun: usize,
    /// Loans that ended (given back, or gone with their borrower).
    pub loans_ended: usize,
    /// How often each operation came back with each result code (the
    /// caller's label afterwards; 0 for a tick; labels above the error
    /// codes, which only messages carry, count as [`MESSAGE_LABEL`]).
    pub results: BTreeMap<(&'static str, u64), usize>,
}

/// What [`Stats::results`] counts a label above every error code as: a
/// received (or, after NBSend, the caller's own) message's label.
pub const MESSAGE_LABEL: u64 = u64::MAX;

/// `code` as [`Stats::results`] counts it.
#[must_use]
pub fn result_bucket(code: u64) -> u64 {
    if code > 31 { MESSAGE_LABEL } else { code }
}

impl Stats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Stats) {
        self.applied += other.applied;
        self.skipped += other.skipped;
        self.fast_paths += other.fast_paths;
        self.loans_begun += other.loans_begun;
        self.loans_ended += other.loans_ended;
        for (code, count) in &other.results {
            *self.results.entry(*code).or_default() += count;
        }
    }
}

/// Every loan of `state`: (borrower, loan).
fn loans(state: &State) -> BTreeSet<(u64, Loan)> {
    state.threads.iter().filter_map(|(tcb, thread)| thread.loan.map(|loan| (*tcb, loan))).collect()
}

/// What one step came to on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The spec's result code.
    pub expected: u64,
    /// The kernel's result code.
    pub got: u64,
    /// The kernel's IPC fast path handled it.
    pub fast: bool,
}

/// The kernel and the spec side by side.
pub struct Harness {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
    spec: State,
    boot: Boot,
    /// The kernel's projected state after the last check.
    previous: Option<State>,
    /// The closure of the authority graph every thread it names must
    /// stay within.
    policy: Option<Graph>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// Both booted into [`BOOT`].
    #[must_use]
    pub fn new() -> Harness {
        let root_tcb = KernelCap::Tcb { object: PhysAddr::new(BOOT.root_tcb) };
        let mut kernel = test_fixture::root_kernel(
            BOOT.untyped_bits,
            255,
            &[
                (ROOT_TCB_SLOT, root_tcb),
                (SCHED_CONTROL_SLOT, KernelCap::SchedControl),
                (IRQ_CONTROL_SLOT, KernelCap::IrqControl),
                (ASID_CONTROL_SLOT, KernelCap::AsidControl),
                (
                    PAGING_UNTYPED_SLOT,
                    KernelCap::Untyped {
                        base: PhysAddr::new(BOOT.paging_untyped_base),
                        size_bits: BOOT.paging_untyped_bits,
                        free_offset: 0,
                        is_device: false,
                    },
                ),
            ],
        );
        // A machine with the `svm` backend: GuestSpaces take NPT entries
        // (the host's format, so the projection decodes them alike).
        kernel.guest_format = BOOT.guest_backend.then_some(GuestFormat::Npt);
        Harness {
            kernel,
            platform: RecordingPlatform::new(),
            spec: BOOT.state(),
            boot: BOOT,
            previous: None,
            policy: None,
        }
    }

    /// Holds every thread `policy` names to its closure from now on.
    pub fn set_policy(&mut self, policy: &Graph) {
        self.policy = Some(authority::policy_closure(policy));
    }

    /// The spec's state.
    #[must_use]
    pub const fn spec(&self) -> &State {
        &self.spec
    }

    /// The kernel.
    #[must_use]
    pub const fn kernel(&self) -> &Kernel<MapStore> {
        &self.kernel
    }

    /// `call` made by `thread` on the kernel, as its entry code makes it;
    /// the thread's result code afterwards, and whether the fast path took
    /// it.
    fn kernel_syscall(&mut self, thread: u64, call: &Syscall) -> (u64, bool) {
        let thread = ThreadId::new(PhysAddr::new(thread));
        let receives = matches!(call.number, number::RECV | number::NB_RECV | number::REPLY_RECV);
        let tcb = self.kernel.store.tcb_mut(thread);
        let length = usize::from(call.length).min(ipc::MAX_MESSAGE_WORDS);
        for (index, word) in tcb.words[..length].iter_mut().enumerate() {
            *word = call.words.get(index).copied().unwrap_or(0);
        }
        let caps = call.extra.len().min(3);
        tcb.extra_cptrs = [0; 3];
        tcb.extra_cptrs[..caps].copy_from_slice(&call.extra[..caps]);
        if receives {
            let (cptr, depth) = call.receive;
            let depth = u8::try_from(depth).ok().filter(|depth| (1..=64).contains(depth));
            tcb.receive_slot = depth.map(|depth| ipc::ReceiveSlot { cptr, depth });
        }
        tcb.info = MessageInfo::default();
        let info = MessageInfo { label: call.label, length: call.length, caps: u8::try_from(caps).unwrap_or(3) };
        let args = SyscallArgs { number: call.number, cptr: call.cptr, info, reply_cptr: call.reply };
        let fast = match call.number {
            number::CALL => fastpath_call(&mut self.kernel, thread, args),
            number::REPLY_RECV => fastpath_reply_recv(&mut self.kernel, thread, args),
            _ => None,
        };
        if fast.is_none() {
            while syscall::handle(&mut self.kernel, &mut self.platform, thread, args).is_err() {}
            self.kernel.scheduler.schedule(&mut self.kernel.store);
        }
        (self.kernel.store.tcb(thread).info.label, fast.is_some())
    }

    /// A timer interrupt on the kernel, as its timer path takes it.
    fn kernel_tick(&mut self, ticks: u64, slice_ended: bool) {
        let kernel = &mut self.kernel;
        let now = kernel.now.saturating_add(ticks);
        kernel.now = now;
        kernel.scheduler.account(&mut kernel.store, now);
        kernel.scheduler.release_due(&mut kernel.store, now);
        if slice_ended {
            kernel.scheduler.yield_current(&mut kernel.store);
        } else {
            kernel.scheduler.schedule(&mut kernel.store);
        }
    }

    /// Runs `op` on both: `None` when it was skipped (a system call while
    /// no thread runs).
    pub fn apply(&mut self, op: &Op) -> Option<Applied> {
        let Some(call) = op.call() else {
            match *op {
                Op::Tick { ticks, slice_ended } => {
                    self.spec.tick(ticks, slice_ended);
                    self.kernel_tick(ticks, slice_ended);
                }
                Op::Interrupt { line } => {
                    self.spec.interrupt(line);
                    kernel_core::irq::deliver(&mut self.kernel, &mut self.platform, line);
                    self.kernel.scheduler.schedule(&mut self.kernel.store);
                }
                _ => unreachable!("only ticks and interrupts make no call"),
            }
            return Some(Applied { expected: 0, got: 0, fast: false });
        };
        let thread = self.spec.sched.current?;
        let expected = self.spec.syscall(thread, &call);
        let (mut got, fast) = self.kernel_syscall(thread, &call);
        // A caller whose TCB its own call deleted has no result to see
        // (the kernel may still write one into the dead TCB); refinement
        // checks that the TCB is gone on both sides.
        if !self.spec.threads.contains_key(&thread) {
            got = expected;
        }
        Some(Applied { expected, got, fast })
    }

    /// Every check on the current states (and, for authority, against the
    /// state of the last check).
    #[must_use]
    pub fn check(&mut self) -> Vec<Failure> {
        let mut failures = Vec::new();
        let failure = |check: &str, detail: String| Failure { check: check.to_owned(), detail };
        if let Err(detail) = project::derivation_list_well_formed(&self.kernel.store) {
            failures.push(failure("derivation_list_well_formed", detail));
        }
        match project::project(&self.kernel) {
            Err(detail) => failures.push(failure("projection", detail)),
            Ok(kernel) => {
                if let Err(detail) = project::queues_well_formed(&self.kernel, &kernel) {
                    failures.push(failure("queues_well_formed", detail));
                }
                for broken in invariants::check_all(&kernel, &self.boot) {
                    failures.push(failure(&format!("kernel: {}", broken.invariant), broken.detail));
                }
                if let Some(detail) = difference(&kernel, &self.spec) {
                    failures.push(failure("refinement", detail));
                }
                if let Some(previous) = &self.previous
                    && let Err(detail) = authority::confined_step(previous, &kernel)
                {
                    failures.push(failure("authority_confined", detail));
                }
                if let Some(policy) = &self.policy
                    && let Err(detail) = authority::within_policy(policy, &kernel)
                {
                    failures.push(failure("authority_within_manifest", detail));
                }
                self.previous = Some(kernel);
            }
        }
        if let Some(policy) = &self.policy
            && let Err(detail) = authority::within_policy(policy, &self.spec)
        {
            failures.push(failure("spec: authority_within_manifest", detail));
        }
        for broken in invariants::check_all(&self.spec, &self.boot) {
            failures.push(failure(&format!("spec: {}", broken.invariant), broken.detail));
        }
        failures
    }
}

/// The entries of two maps that differ, described.
fn map_differences<K: Ord + Copy + fmt::Debug, V: PartialEq + fmt::Debug>(
    what: &str,
    kernel: &BTreeMap<K, V>,
    spec: &BTreeMap<K, V>,
    found: &mut Vec<String>,
) {
    let keys: BTreeSet<K> = kernel.keys().chain(spec.keys()).copied().collect();
    for key in keys {
        let (in_kernel, in_spec) = (kernel.get(&key), spec.get(&key));
        if in_kernel != in_spec {
            found.push(format!("{what} {key:x?}: kernel {in_kernel:x?}, spec {in_spec:x?}"));
        }
    }
}

/// How the kernel's projected state differs from the spec's (the first few
/// differences), or `None` when they are equal.
#[must_use]
pub fn difference(kernel: &State, spec: &State) -> Option<String> {
    if kernel == spec {
        return None;
    }
    let mut found = Vec::new();
    map_differences("slot", &kernel.slots, &spec.slots, &mut found);
    map_differences("children of", &kernel.child_order, &spec.child_order, &mut found);
    map_differences("object", &kernel.objects, &spec.objects, &mut found);
    map_differences("thread", &kernel.threads, &spec.threads, &mut found);
    map_differences("endpoint", &kernel.endpoints, &spec.endpoints, &mut found);
    map_differences("notification", &kernel.notifications, &spec.notifications, &mut found);
    map_differences("reply", &kernel.replies, &spec.replies, &mut found);
    map_differences("sched context", &kernel.sched_contexts, &spec.sched_contexts, &mut found);
    if kernel.sched != spec.sched {
        found.push(format!("scheduler: kernel {:x?}, spec {:x?}", kernel.sched, spec.sched));
    }
    for (line, (in_kernel, in_spec)) in kernel.irqs.iter().zip(&spec.irqs).enumerate() {
        if in_kernel != in_spec {
            found.push(format!("interrupt line {line}: kernel {in_kernel:x?}, spec {in_spec:x?}"));
        }
    }
    map_differences("paging structure", &kernel.tables, &spec.tables, &mut found);
    map_differences("ASID pool", &kernel.asid_pools, &spec.asid_pools, &mut found);
    if found.is_empty() {
        // Something the lists above do not name (a boot fact, say).
        found.push(format!("kernel {kernel:x?}, spec {spec:x?}"));
    }
    let shown = found.len().min(4);
    let more = if found.len() > shown { format!(" (and {} more)", found.len() - shown) } else { String::new() };
    Some(format!("{}{more}", found[..shown].join("; ")))
}

/// Runs `ops` on a freshly booted kernel and spec, checking everything
/// after boot and after every step.
///
/// # Errors
///
/// The first step after which a check failed.
pub fn run(ops: &[Op]) -> Result<Stats, Violation> {
    run_recording(ops, &mut Vec::new())
}

/// Like [`run`], and returns each step's result code (`None`: skipped),
/// for tests that say what every step must return.
///
/// # Errors
///
/// The first step after which a check failed.
pub fn results(ops: &[Op]) -> Result<Vec<Option<u64>>, Violation> {
    let mut codes = Vec::new();
    run_recording(ops, &mut codes)?;
    Ok(codes)
}

/// Like [`run`], and returns the spec's state after the last step (which
/// the kernel's state refined, as after every step), for tests that look
/// at what a sequence left behind.
///
/// # Errors
///
/// The first step after which a check failed.
pub fn final_state(ops: &[Op]) -> Result<(State, Stats), Violation> {
    let mut harness = Harness::new();
    let failures = harness.check();
    if !failures.is_empty() {
        return Err(Violation { step: None, op: None, failures });
    }
    let stats = run_steps(&mut harness, ops, &mut Vec::new())?;
    Ok((harness.spec, stats))
}

fn run_recording(ops: &[Op], codes: &mut Vec<Option<u64>>) -> Result<Stats, Violation> {
    let mut harness = Harness::new();
    let failures = harness.check();
    if !failures.is_empty() {
        return Err(Violation { step: None, op: None, failures });
    }
    run_steps(&mut harness, ops, codes)
}

/// Applies `ops` to `harness`, checking after each.
fn run_steps(harness: &mut Harness, ops: &[Op], codes: &mut Vec<Option<u64>>) -> Result<Stats, Violation> {
    let mut stats = Stats::default();
    for (step, op) in ops.iter().enumerate() {
        let loans_before = loans(harness.spec());
        let Some(Applied { expected, got, fast }) = harness.apply(op) else {
            stats.skipped += 1;
            codes.push(None);
            continue;
        };
        codes.push(Some(got));
        stats.applied += 1;
        stats.fast_paths += usize::from(fast);
        let loans_after = loans(harness.spec());
        stats.loans_begun += loans_after.difference(&loans_before).count();
        stats.loans_ended += loans_before.difference(&loans_after).count();
        *stats.results.entry((op.name(), result_bucket(got))).or_default() += 1;
        let mut failures = Vec::new();
        if expected != got {
            failures.push(Failure { check: "result".to_owned(), detail: format!("kernel {got}, spec {expected}") });
        }
        failures.extend(harness.check());
        if !failures.is_empty() {
            return Err(Violation { step: Some(step), op: Some(*op), failures });
        }
    }
    Ok(stats)
}

/// What [`hunt`] found.
#[derive(Clone, Debug)]
pub struct Hunt {
    /// What the sequences that ran did (the failing one's steps up to the
    /// violation included).
    pub stats: Stats,
    /// The first violation: the sequence's number, the sequence, and the
    /// violation.
    pub violation: Option<(usize, Vec<Op>, Violation)>,
}

/// The random sequences [`hunt`] and the long run (`src/bin/long-run.rs`)
/// draw: [`sequence_of_length`]`(length)` from a generator seeded with
/// `seed` (the same seed, the same sequences).
pub struct Sequences {
    runner: TestRunner,
    strategy: BoxedStrategy<Vec<Op>>,
}

impl Sequences {
    /// The stream for `seed`, of sequences of `length` operations after
    /// their setup retypes.
    #[must_use]
    pub fn new(seed: u64, length: usize) -> Sequences {
        Sequences::of(seed, sequence_of_length(length).boxed())
    }

    /// The stream for `seed` of `strategy`'s sequences.
    #[must_use]
    pub fn of(seed: u64, strategy: BoxedStrategy<Vec<Op>>) -> Sequences {
        let mut seed_bytes = [0_u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let runner = TestRunner::new_with_rng(proptest::test_runner::Config::default(), rng);
        Sequences { runner, strategy }
    }

    /// The next sequence.
    ///
    /// # Panics
    ///
    /// Never: the strategy has no filter that could reject every value.
    pub fn next_sequence(&mut self) -> Vec<Op> {
        self.strategy.new_tree(&mut self.runner).expect("a sequence").current()
    }
}

/// Runs `ops` and, on a violation, counts the steps up to and including
/// the violating one into `stats`.
///
/// # Errors
///
/// The violation.
pub fn run_counting(ops: &[Op], stats: &mut Stats) -> Result<(), Violation> {
    count_run(ops, stats, &run)
}

/// [`run_counting`] with `runner` in place of [`run`].
fn count_run(
    ops: &[Op],
    stats: &mut Stats,
    runner: &impl Fn(&[Op]) -> Result<Stats, Violation>,
) -> Result<(), Violation> {
    match runner(ops) {
        Ok(run_stats) => {
            stats.add(&run_stats);
            Ok(())
        }
        Err(violation) => {
            let step = violation.step.unwrap_or(0);
            let prefix = runner(&ops[..step]).unwrap_or_default();
            stats.add(&prefix);
            stats.applied += 1;
            Err(violation)
        }
    }
}

/// Runs `stream`'s sequences with `runner` until at least `budget`
/// operations were applied, stopping at the first violation.
fn hunt_in(mut stream: Sequences, budget: usize, runner: &impl Fn(&[Op]) -> Result<Stats, Violation>) -> Hunt {
    let mut stats = Stats::default();
    let mut number = 0;
    while stats.applied < budget {
        let ops = stream.next_sequence();
        if let Err(violation) = count_run(&ops, &mut stats, runner) {
            return Hunt { stats, violation: Some((number, ops, violation)) };
        }
        number += 1;
    }
    Hunt { stats, violation: None }
}

/// Runs random sequences of [`Sequences`]`::new(seed, length)` until at
/// least `budget` operations were applied (a sequence whose threads all
/// block skips the rest), and stops at the first violation without
/// shrinking: how many operations it took to find one is the measure of a
/// check's power.
#[must_use]
pub fn hunt(seed: u64, budget: usize, length: usize) -> Hunt {
    hunt_in(Sequences::new(seed, length), budget, &run)
}

/// A harness in which the root thread has built [`Scenario::confined`]'s
/// system and suspended itself, every step of the build checked, and the
/// manifest's authority graph set as the policy.
///
/// # Errors
///
/// A build step that failed or broke a check, or a domain whose authority
/// right after the build is not exactly what its manifest grants it
/// (`manifest_conformance`).
pub fn manifest_harness(scenario: &Scenario) -> Result<(Harness, Vec<Option<crate::spec::ObjectId>>), Violation> {
    let mut harness = Harness::new();
    let step_failed =
        |step: usize, op: &Op, failures: Vec<Failure>| Violation { step: Some(step), op: Some(*op), failures };
    let failures = harness.check();
    if !failures.is_empty() {
        return Err(Violation { step: None, op: None, failures });
    }
    let mut objects = Vec::new();
    for (step, op) in scenario.retypes.iter().chain(&scenario.build).enumerate() {
        if step == scenario.retypes.len() {
            objects = scenario.objects(harness.spec(), BOOT.root_cnode);
        }
        let mut failures = Vec::new();
        match harness.apply(op) {
            Some(Applied { expected: 0, got: 0, .. }) => {}
            applied => failures.push(Failure { check: "build".to_owned(), detail: format!("{applied:?}") }),
        }
        failures.extend(harness.check());
        if !failures.is_empty() {
            return Err(step_failed(step, op, failures));
        }
    }
    let policy = scenario.policy(&objects);
    for (thread, granted) in &policy {
        let held = authority::holdings(harness.spec(), *thread);
        if held != *granted {
            let failures = vec![Failure {
                check: "manifest_conformance".to_owned(),
                detail: format!("thread {thread:#x} holds {held:x?}, its manifest grants {granted:x?}"),
            }];
            return Err(Violation { step: None, op: None, failures });
        }
    }
    harness.set_policy(&policy);
    Ok((harness, objects))
}

/// Runs `ops` as the domains of [`Scenario::confined`]'s system (built
/// by [`manifest_harness`]), checking everything after every step.
///
/// # Errors
///
/// The first step after which a check failed (`step: None`: the build).
pub fn run_manifest(scenario: &Scenario, ops: &[Op]) -> Result<Stats, Violation> {
    let (mut harness, _) = manifest_harness(scenario)?;
    run_steps(&mut harness, ops, &mut Vec::new())
}

impl Op {
    /// The operation with every capability address (and slot address's
    /// node and root index) passed through `map`; labels, words and
    /// indices inside other CNodes are kept.
    #[must_use]
    pub fn with_cptrs(self, map: impl Fn(u64) -> u64) -> Op {
        let addr = |addr: Addr| match addr {
            Addr::R(index) => Addr::R(map(index)),
            Addr::In(node, index, depth) => Addr::In(map(node), index, depth),
        };
        let slot = |slot: Option<(u64, u64)>| slot.map(|(cptr, depth)| (map(cptr), depth));
        match self {
            Op::Retype { untyped, kind, size_bits, root, node, node_depth, offset, count } => Op::Retype {
                untyped: map(untyped),
                kind,
                size_bits,
                root: map(root),
                node,
                node_depth,
                offset: map(offset),
                count,
            },
            Op::Copy { dest, src, rights } => Op::Copy { dest: addr(dest), src: addr(src), rights },
            Op::Mint { dest, src, rights, badge } => Op::Mint { dest: addr(dest), src: addr(src), rights, badge },
            Op::Move { dest, src } => Op::Move { dest: addr(dest), src: addr(src) },
            Op::Mutate { dest, src, data } => Op::Mutate { dest: addr(dest), src: addr(src), data },
            Op::Delete { slot } => Op::Delete { slot: addr(slot) },
            Op::Revoke { slot } => Op::Revoke { slot: addr(slot) },
            Op::Raw { cptr, label, words, extra } => Op::Raw { cptr: map(cptr), label, words, extra },
            Op::Tcb { tcb, call } => Op::Tcb {
                tcb: map(tcb),
                call: match call {
                    TcbCall::SetSpace { cnode, vspace } => {
                        TcbCall::SetSpace { cnode: map(cnode), vspace: vspace.map(&map) }
                    }
                    TcbCall::SetIpcBuffer { frame } => TcbCall::SetIpcBuffer { frame: map(frame) },
                    TcbCall::SetFaultHandler { endpoint } => TcbCall::SetFaultHandler { endpoint: map(endpoint) },
                    TcbCall::SetPriority { priority, authority } => {
                        TcbCall::SetPriority { priority, authority: map(authority) }
                    }
                    TcbCall::SetMaxPriority { priority, authority } => {
                        TcbCall::SetMaxPriority { priority, authority: map(authority) }
                    }
                    TcbCall::BindSchedContext { sched_context } => {
                        TcbCall::BindSchedContext { sched_context: map(sched_context) }
                    }
                    TcbCall::BindNotification { notification } => {
                        TcbCall::BindNotification { notification: map(notification) }
                    }
                    other => other,
                },
            },
            Op::Configure { sched_context, budget, period } => {
                Op::Configure { sched_context: map(sched_context), budget, period }
            }
            Op::Send { cptr, label, words, grant, blocking } => {
                Op::Send { cptr: map(cptr), label, words, grant: grant.map(&map), blocking }
            }
            Op::IpcCall { cptr, label, words, grant } => {
                Op::IpcCall { cptr: map(cptr), label, words, grant: grant.map(&map) }
            }
            Op::Recv { cptr, reply, slot: receive, blocking } => {
                Op::Recv { cptr: map(cptr), reply: map(reply), slot: slot(receive), blocking }
            }
            Op::ReplyRecv { cptr, reply, label, words, slot: receive } => {
                Op::ReplyRecv { cptr: map(cptr), reply: map(reply), label, words, slot: slot(receive) }
            }
            Op::Signal { cptr } => Op::Signal { cptr: map(cptr) },
            Op::Wait { cptr, blocking } => Op::Wait { cptr: map(cptr), blocking },
            Op::Syscall { number, cptr } => Op::Syscall { number, cptr: map(cptr) },
            Op::IrqGet { line, dest } => Op::IrqGet { line, dest: addr(dest) },
            Op::Irq { handler, call } => Op::Irq {
                handler: map(handler),
                call: match call {
                    IrqCall::SetNotification { notification } => {
                        IrqCall::SetNotification { notification: map(notification) }
                    }
                    other => other,
                },
            },
            Op::VSpace { cptr, call } => Op::VSpace {
                cptr: map(cptr),
                call: match call {
                    VSpaceCall::MapTable { vaddr, vspace } => VSpaceCall::MapTable { vaddr, vspace: map(vspace) },
                    VSpaceCall::MapFrame { vaddr, rights, attributes, vspace } => {
                        VSpaceCall::MapFrame { vaddr, rights, attributes, vspace: map(vspace) }
                    }
                    VSpaceCall::MakePool { untyped, dest } => {
                        VSpaceCall::MakePool { untyped: map(untyped), dest: addr(dest) }
                    }
                    VSpaceCall::Assign { vspace } => VSpaceCall::Assign { vspace: map(vspace) },
                    other => other,
                },
            },
            Op::VCpu { vcpu, call } => Op::VCpu {
                vcpu: map(vcpu),
                call: match call {
                    VCpuCall::SetTcb { tcb } => VCpuCall::SetTcb { tcb: map(tcb) },
                    VCpuCall::SetSpace { space } => VCpuCall::SetSpace { space: map(space) },
                    other => other,
                },
            },
            Op::Yield | Op::Tick { .. } | Op::Interrupt { .. } | Op::VmEnter { .. } => self,
        }
    }
}

/// A capability address of [`op`]'s layout in a domain's 8-slot CSpace
/// of the manifest's system (slot 0 its CNode, 1 an endpoint, 2 and 3
/// a reply object, a notification or another endpoint, 4 to 7 free): the
/// endpoints go to 1, the reply objects and the notifications to 2 and 3,
/// the free slots to 4 to 7.
#[must_use]
pub fn domain_cptr(cptr: u64) -> u64 {
    match cptr {
        ENDPOINT_SLOT | 22 => 1,
        5..=7 | 23 => 2,
        NOTIFICATION_SLOT | 24 => 3,
        18..=21 => cptr - 14,
        other => other % 8,
    }
}

/// One operation of a domain of the manifest's system: [`op`] with every
/// capability address moved into the domain's CSpace ([`domain_cptr`]),
/// and more ticks (every domain runs on a budget).
pub fn domain_op() -> impl Strategy<Value = Op> {
    let tick = (0_u64..3_000, any::<bool>()).prop_map(|(ticks, slice_ended)| Op::Tick { ticks, slice_ended });
    prop_oneof![6 => op().prop_map(|op| op.with_cptrs(domain_cptr)), 1 => tick]
}

/// Runs random sequences of `length` [`domain_op`]s from `seed` on the
/// manifest's system until `budget` operations were applied or one
/// breaks a check (as [`hunt`]).
#[must_use]
pub fn hunt_manifest(scenario: &Scenario, seed: u64, budget: usize, length: usize) -> Hunt {
    let stream = Sequences::of(seed, proptest::collection::vec(domain_op(), length..=length).boxed());
    hunt_in(stream, budget, &|ops: &[Op]| run_manifest(scenario, ops))
}
