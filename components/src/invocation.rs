//! Typed invocations: every kernel operation a protection domain can ask
//! for, as a method on the capability it names (`docs/abi.md`,
//! "Invocations"). Each builds the message the ABI table describes, makes
//! one system call through a [`Kernel`], and maps a non-zero result code to
//! [`Error`].

use kernel_core::cap::invocation::label as cnode_label;
use kernel_core::cap::{ObjectKind, Rights};
use kernel_core::io_port::label as io_port_label;
use kernel_core::irq::label as irq_label;
use kernel_core::syscall::label as tcb_label;
use kernel_core::vspace::label as vspace_label;

use crate::cap::{CPtr, Cap, kind};
use crate::error::Error;
use crate::kernel::{Incoming, Kernel, NO_CAP, Syscall, number};
use crate::message::Message;

/// A slot named relative to an invoked CNode: `depth` low bits of `index`
/// are resolved through it (`docs/abi.md`, "Conventions").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The address bits.
    pub index: u64,
    /// How many of them to resolve (1..64; 0 names the CNode itself where
    /// an ABI row allows it).
    pub depth: u64,
}

impl Slot {
    /// A slot of a whole 64-bit CSpace such as the root task's, whose guard
    /// makes a capability address the slot index.
    #[must_use]
    pub const fn index(index: u64) -> Slot {
        Slot { index, depth: 64 }
    }

    /// The invoked CNode itself (depth 0), for Untyped::Retype.
    pub const ITSELF: Slot = Slot { index: 0, depth: 0 };
}

/// Where Untyped::Retype puts its capabilities: `count` consecutive slots
/// from `offset` in the CNode that `node` names relative to `root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The CNode `node` is resolved in.
    pub root: Cap<kind::CNode>,
    /// The destination CNode ([`Slot::ITSELF`]: `root` itself).
    pub node: Slot,
    /// The first slot index in it.
    pub offset: u64,
}

impl Destination {
    /// Slots of `root` itself, from `offset` on.
    #[must_use]
    pub const fn slots_of(root: Cap<kind::CNode>, offset: u64) -> Destination {
        Destination { root, node: Slot::ITSELF, offset }
    }
}

/// The registers TCB::WriteRegisters sets (every other register starts at
/// zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// The instruction pointer (a user-half address).
    pub rip: u64,
    /// The stack pointer (a user-half address).
    pub rsp: u64,
    /// Flags: only the arithmetic flags and DF are taken; IF is always set.
    pub rflags: u64,
    /// The first argument register.
    pub rdi: u64,
    /// The second argument register.
    pub rsi: u64,
    /// The third argument register.
    pub rdx: u64,
}

/// Frame::Map attributes (`docs/abi.md`: bit 0 executable, bits 1..2 the
/// memory type).
pub mod attributes {
    pub use kernel_core::vspace::attribute::{EXECUTE, MEMORY_TYPE_SHIFT};
    /// Write-back, not executable: ordinary data.
    pub const DATA: u64 = 0;
    /// Uncacheable (memory type 3): device registers.
    pub const UNCACHEABLE: u64 = 3 << MEMORY_TYPE_SHIFT;
}

/// Calls kernel object `cptr` with `label`, `words` and `caps`; the reply's
/// label is the result code.
pub(crate) fn invoke(
    kernel: &mut impl Kernel,
    cptr: CPtr,
    label: u64,
    words: &[u64],
    caps: &[CPtr],
) -> Result<Message, Error> {
    let message = Message::new(label, words);
    let incoming = kernel.syscall(Syscall { number: number::CALL, cptr, message: &message, caps, reply: NO_CAP })?;
    Error::check(incoming.message.label)?;
    Ok(incoming.message)
}

fn rights_word(rights: Rights) -> u64 {
    u64::from(rights.bits())
}

impl Cap<kind::CNode> {
    /// CNode::Copy: copies the capability at `source` (in `source_root`) to
    /// `dest` with `rights` masked.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, CNode::Copy).
    pub fn copy(
        self,
        kernel: &mut impl Kernel,
        dest: Slot,
        source_root: Cap<kind::CNode>,
        source: Slot,
        rights: Rights,
    ) -> Result<(), Error> {
        let words = [dest.index, dest.depth, source.index, source.depth, rights_word(rights)];
        invoke(kernel, self.cptr(), cnode_label::CNODE_COPY, &words, &[source_root.cptr()]).map(drop)
    }

    /// CNode::Mint: like [`copy`](Self::copy), with a badge (endpoints and
    /// notifications) or a guard (CNodes) from `data`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, CNode::Mint).
    pub fn mint(
        self,
        kernel: &mut impl Kernel,
        dest: Slot,
        source_root: Cap<kind::CNode>,
        source: Slot,
        rights: Rights,
        data: u64,
    ) -> Result<(), Error> {
        let words = [dest.index, dest.depth, source.index, source.depth, rights_word(rights), data];
        invoke(kernel, self.cptr(), cnode_label::CNODE_MINT, &words, &[source_root.cptr()]).map(drop)
    }

    /// CNode::Move.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, CNode::Move).
    pub fn move_(
        self,
        kernel: &mut impl Kernel,
        dest: Slot,
        source_root: Cap<kind::CNode>,
        source: Slot,
    ) -> Result<(), Error> {
        let words = [dest.index, dest.depth, source.index, source.depth];
        invoke(kernel, self.cptr(), cnode_label::CNODE_MOVE, &words, &[source_root.cptr()]).map(drop)
    }

    /// CNode::Mutate: moves, setting a CNode capability's guard from `data`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, CNode::Mutate).
    pub fn mutate(
        self,
        kernel: &mut impl Kernel,
        dest: Slot,
        source_root: Cap<kind::CNode>,
        source: Slot,
        data: u64,
    ) -> Result<(), Error> {
        let words = [dest.index, dest.depth, source.index, source.depth, data];
        invoke(kernel, self.cptr(), cnode_label::CNODE_MUTATE, &words, &[source_root.cptr()]).map(drop)
    }

    /// CNode::Delete.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, CNode::Delete).
    pub fn delete(self, kernel: &mut impl Kernel, slot: Slot) -> Result<(), Error> {
        invoke(kernel, self.cptr(), cnode_label::CNODE_DELETE, &[slot.index, slot.depth], &[]).map(drop)
    }

    /// CNode::Revoke: deletes everything derived from the slot's capability.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, CNode::Revoke).
    pub fn revoke(self, kernel: &mut impl Kernel, slot: Slot) -> Result<(), Error> {
        invoke(kernel, self.cptr(), cnode_label::CNODE_REVOKE, &[slot.index, slot.depth], &[]).map(drop)
    }
}

impl Cap<kind::Untyped> {
    /// Untyped::Retype: `count` objects of `object` (`size_bits` for the
    /// variable-size kinds, ignored otherwise) into consecutive empty slots
    /// at `dest`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, Untyped::Retype).
    pub fn retype(
        self,
        kernel: &mut impl Kernel,
        object: ObjectKind,
        size_bits: u64,
        dest: Destination,
        count: u64,
    ) -> Result<(), Error> {
        let words = [object as u64, size_bits, dest.node.index, dest.node.depth, dest.offset, count];
        invoke(kernel, self.cptr(), cnode_label::UNTYPED_RETYPE, &words, &[dest.root.cptr()]).map(drop)
    }
}

impl Cap<kind::Tcb> {
    /// TCB::SetSpace: the thread's CSpace root and, if given, its VSpace.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::SetSpace).
    pub fn set_space(
        self,
        kernel: &mut impl Kernel,
        cspace: Cap<kind::CNode>,
        vspace: Option<Cap<kind::Pml4>>,
    ) -> Result<(), Error> {
        let caps = [cspace.cptr(), vspace.map_or(NO_CAP, Cap::cptr)];
        let count = if vspace.is_some() { 2 } else { 1 };
        invoke(kernel, self.cptr(), tcb_label::TCB_SET_SPACE, &[], &caps[..count]).map(drop)
    }

    /// TCB::SetIpcBuffer: the 4 KiB frame that holds the thread's long
    /// messages (the thread maps it where it likes).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::SetIpcBuffer).
    pub fn set_ipc_buffer(self, kernel: &mut impl Kernel, frame: Cap<kind::Frame>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), tcb_label::TCB_SET_IPC_BUFFER, &[], &[frame.cptr()]).map(drop)
    }

    /// TCB::WriteRegisters on an inactive thread.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::WriteRegisters).
    pub fn write_registers(self, kernel: &mut impl Kernel, registers: &Registers) -> Result<(), Error> {
        let Registers { rip, rsp, rflags, rdi, rsi, rdx } = *registers;
        invoke(kernel, self.cptr(), tcb_label::TCB_WRITE_REGISTERS, &[rip, rsp, rflags, rdi, rsi, rdx], &[]).map(drop)
    }

    /// TCB::SetPriority, bounded by `authority`'s maximum controlled
    /// priority.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::SetPriority).
    pub fn set_priority(self, kernel: &mut impl Kernel, authority: Cap<kind::Tcb>, priority: u8) -> Result<(), Error> {
        let words = [u64::from(priority)];
        invoke(kernel, self.cptr(), tcb_label::TCB_SET_PRIORITY, &words, &[authority.cptr()]).map(drop)
    }

    /// TCB::SetMaxPriority, bounded the same way.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::SetMaxPriority).
    pub fn set_max_priority(
        self,
        kernel: &mut impl Kernel,
        authority: Cap<kind::Tcb>,
        priority: u8,
    ) -> Result<(), Error> {
        let words = [u64::from(priority)];
        invoke(kernel, self.cptr(), tcb_label::TCB_SET_MAX_PRIORITY, &words, &[authority.cptr()]).map(drop)
    }

    /// TCB::BindSchedContext.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::BindSchedContext).
    pub fn bind_sched_context(self, kernel: &mut impl Kernel, context: Cap<kind::SchedContext>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), tcb_label::TCB_BIND_SCHED_CONTEXT, &[], &[context.cptr()]).map(drop)
    }

    /// TCB::SetPassive: whether Calls delivered to the thread run on
    /// their callers' scheduling contexts.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::SetPassive).
    pub fn set_passive(self, kernel: &mut impl Kernel, passive: bool) -> Result<(), Error> {
        invoke(kernel, self.cptr(), tcb_label::TCB_SET_PASSIVE, &[u64::from(passive)], &[]).map(drop)
    }

    /// TCB::Resume.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::Resume).
    pub fn resume(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), tcb_label::TCB_RESUME, &[], &[]).map(drop)
    }

    /// Names the thread for the kernel's dumps (`DEBUG_NAME_THREAD`, a
    /// debugging call): the first 32 bytes of `name`.
    ///
    /// # Errors
    ///
    /// The kernel's code ([`Kernel::name_thread`]).
    pub fn set_name(self, kernel: &mut impl Kernel, name: &str) -> Result<(), Error> {
        kernel.name_thread(self.cptr(), crate::kernel::thread_name_words(name))
    }

    /// TCB::Suspend.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::Suspend).
    pub fn suspend(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), tcb_label::TCB_SUSPEND, &[], &[]).map(drop)
    }

    /// TCB::SetFaultHandler: the thread's faults go to `endpoint` as
    /// messages (`docs/abi.md`, "Faults").
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::SetFaultHandler).
    pub fn set_fault_handler(self, kernel: &mut impl Kernel, endpoint: Cap<kind::Endpoint>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), tcb_label::TCB_SET_FAULT_HANDLER, &[], &[endpoint.cptr()]).map(drop)
    }
}

impl Cap<kind::SchedControl> {
    /// SchedControl::Configure: `budget` ticks in every `period`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, SchedControl::Configure).
    pub fn configure(
        self,
        kernel: &mut impl Kernel,
        context: Cap<kind::SchedContext>,
        budget: u64,
        period: u64,
    ) -> Result<(), Error> {
        let words = [budget, period];
        invoke(kernel, self.cptr(), tcb_label::SCHED_CONTROL_CONFIGURE, &words, &[context.cptr()]).map(drop)
    }
}

impl Cap<kind::Frame> {
    /// Frame::Map at `address` in `vspace` with the capability's rights AND
    /// `rights` and `attributes` ([`attributes`]).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, Frame::Map).
    pub fn map(
        self,
        kernel: &mut impl Kernel,
        vspace: Cap<kind::Pml4>,
        address: u64,
        rights: Rights,
        attributes: u64,
    ) -> Result<(), Error> {
        let words = [address, rights_word(rights), attributes];
        invoke(kernel, self.cptr(), vspace_label::FRAME_MAP, &words, &[vspace.cptr()]).map(drop)
    }

    /// Frame::Unmap: removes the mapping this capability made, if any.
    ///
    /// # Errors
    ///
    /// The kernel's code (a lookup or type error: Unmap itself always
    /// succeeds).
    pub fn unmap(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vspace_label::FRAME_UNMAP, &[], &[]).map(drop)
    }

    /// Frame::GetAddress: the frame's physical address (for DMA).
    ///
    /// # Errors
    ///
    /// The kernel's code, or [`Error::TruncatedMessage`] for a reply
    /// without the word.
    pub fn get_address(self, kernel: &mut impl Kernel) -> Result<u64, Error> {
        let reply = invoke(kernel, self.cptr(), vspace_label::FRAME_GET_ADDRESS, &[], &[])?;
        reply.word(0).ok_or(Error::TruncatedMessage)
    }
}

impl Cap<kind::PageTable> {
    /// PageTable::Map: links the structure into `vspace` at the entry
    /// covering `address`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, PageTable::Map).
    pub fn map(self, kernel: &mut impl Kernel, vspace: Cap<kind::Pml4>, address: u64) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vspace_label::PAGE_TABLE_MAP, &[address], &[vspace.cptr()]).map(drop)
    }

    /// PageTable::Unmap.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, PageTable::Unmap).
    pub fn unmap(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vspace_label::PAGE_TABLE_UNMAP, &[], &[]).map(drop)
    }
}

impl Cap<kind::AsidControl> {
    /// AsidControl::MakePool: turns a whole, unused 4 KiB untyped into an
    /// ASID pool at `dest` (relative to `dest_root`).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, AsidControl::MakePool).
    pub fn make_pool(
        self,
        kernel: &mut impl Kernel,
        untyped: Cap<kind::Untyped>,
        dest_root: Cap<kind::CNode>,
        dest: Slot,
    ) -> Result<(), Error> {
        let words = [dest.index, dest.depth];
        let caps = [untyped.cptr(), dest_root.cptr()];
        invoke(kernel, self.cptr(), vspace_label::ASID_CONTROL_MAKE_POOL, &words, &caps).map(drop)
    }
}

impl Cap<kind::AsidPool> {
    /// AsidPool::Assign: gives the PML4 an ASID, making it a usable VSpace.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, AsidPool::Assign).
    pub fn assign(self, kernel: &mut impl Kernel, vspace: Cap<kind::Pml4>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vspace_label::ASID_POOL_ASSIGN, &[], &[vspace.cptr()]).map(drop)
    }
}

impl Cap<kind::IrqControl> {
    /// IrqControl::Get: the handler capability of `line`, at `dest`
    /// (relative to `dest_root`).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IrqControl::Get).
    pub fn get(self, kernel: &mut impl Kernel, line: u8, dest_root: Cap<kind::CNode>, dest: Slot) -> Result<(), Error> {
        let words = [u64::from(line), dest.index, dest.depth];
        invoke(kernel, self.cptr(), irq_label::IRQ_CONTROL_GET, &words, &[dest_root.cptr()]).map(drop)
    }
}

impl Cap<kind::IrqHandler> {
    /// IrqHandler::Ack: the interrupt is serviced; unmasks the line.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IrqHandler::Ack).
    pub fn ack(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), irq_label::IRQ_HANDLER_ACK, &[], &[]).map(drop)
    }

    /// IrqHandler::SetNotification: each interrupt signals `notification`
    /// (with its capability's badge); unmasks the line.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IrqHandler::SetNotification).
    pub fn set_notification(
        self,
        kernel: &mut impl Kernel,
        notification: Cap<kind::Notification>,
    ) -> Result<(), Error> {
        invoke(kernel, self.cptr(), irq_label::IRQ_HANDLER_SET_NOTIFICATION, &[], &[notification.cptr()]).map(drop)
    }

    /// IrqHandler::Clear: unbinds the notification and masks the line.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IrqHandler::Clear).
    pub fn clear(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), irq_label::IRQ_HANDLER_CLEAR, &[], &[]).map(drop)
    }
}

impl Cap<kind::IoPortControl> {
    /// IoPortControl::Issue: a capability to the ports `first..=last`, at
    /// `dest` (relative to `dest_root`).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IoPortControl::Issue).
    pub fn issue(
        self,
        kernel: &mut impl Kernel,
        first: u16,
        last: u16,
        dest_root: Cap<kind::CNode>,
        dest: Slot,
    ) -> Result<(), Error> {
        let words = [u64::from(first), u64::from(last), dest.index, dest.depth];
        invoke(kernel, self.cptr(), io_port_label::IO_PORT_CONTROL_ISSUE, &words, &[dest_root.cptr()]).map(drop)
    }
}

impl Cap<kind::IoPorts> {
    /// IoPort::In8: reads the byte at `port`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IoPort::In8), or
    /// [`Error::TruncatedMessage`] for a reply without the value.
    pub fn in8(self, kernel: &mut impl Kernel, port: u16) -> Result<u8, Error> {
        let reply = invoke(kernel, self.cptr(), io_port_label::IO_PORT_IN8, &[u64::from(port)], &[])?;
        let value = reply.word(0).ok_or(Error::TruncatedMessage)?;
        Ok(value.to_le_bytes()[0])
    }

    /// IoPort::Out8: writes `value` at `port`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, IoPort::Out8).
    pub fn out8(self, kernel: &mut impl Kernel, port: u16, value: u8) -> Result<(), Error> {
        let words = [u64::from(port), u64::from(value)];
        invoke(kernel, self.cptr(), io_port_label::IO_PORT_OUT8, &words, &[]).map(drop)
    }
}

impl Cap<kind::Endpoint> {
    /// Call: sends `message` and waits for the reply. Bulkhead's protocols
    /// reply with label 0 for success and an error code otherwise (as
    /// [`crate::server::serve`] does); the kernel refuses a call the same
    /// way, so a non-zero label is an [`Error`].
    ///
    /// # Errors
    ///
    /// The reply's label as an error; [`Error::NoIpcBuffer`] for a message
    /// this thread cannot pass.
    pub fn call(self, kernel: &mut impl Kernel, message: &Message) -> Result<Message, Error> {
        let incoming =
            kernel.syscall(Syscall { number: number::CALL, cptr: self.cptr(), message, caps: &[], reply: NO_CAP })?;
        Error::check(incoming.message.label)?;
        Ok(incoming.message)
    }

    /// Send: waits for a receiver and hands it `message`.
    ///
    /// # Errors
    ///
    /// The kernel's code (a successful Send leaves an empty message).
    pub fn send(self, kernel: &mut impl Kernel, message: &Message) -> Result<(), Error> {
        let incoming =
            kernel.syscall(Syscall { number: number::SEND, cptr: self.cptr(), message, caps: &[], reply: NO_CAP })?;
        Error::check(incoming.message.label)
    }

    /// Recv: waits for a message, naming `reply` for a caller to be
    /// answered through. The message's label is the sender's; a refused
    /// Recv arrives as an empty message with badge 0 whose label is the
    /// error code (the ABI cannot tell the two apart for unbadged senders).
    ///
    /// # Errors
    ///
    /// Only local refusals ([`Kernel::syscall`]).
    pub fn recv(self, kernel: &mut impl Kernel, reply: Option<Cap<kind::Reply>>) -> Result<Incoming, Error> {
        let reply = reply.map_or(NO_CAP, Cap::cptr);
        let empty = Message::empty(0);
        kernel.syscall(Syscall { number: number::RECV, cptr: self.cptr(), message: &empty, caps: &[], reply })
    }

    /// ReplyRecv: answers the caller `reply` holds with `message`, then
    /// receives like [`recv`](Self::recv) with the same reply object.
    ///
    /// # Errors
    ///
    /// Only local refusals ([`Kernel::syscall`]).
    pub fn reply_recv(
        self,
        kernel: &mut impl Kernel,
        reply: Cap<kind::Reply>,
        message: &Message,
    ) -> Result<Incoming, Error> {
        kernel.syscall(Syscall {
            number: number::REPLY_RECV,
            cptr: self.cptr(),
            message,
            caps: &[],
            reply: reply.cptr(),
        })
    }
}

impl Cap<kind::Notification> {
    /// Signal: ORs the capability's badge into the notification's word.
    ///
    /// # Errors
    ///
    /// The kernel's code.
    pub fn signal(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        self.notification_call(kernel, number::SIGNAL).map(drop)
    }

    /// Wait: the OR of the badges signalled since the last wait, sleeping
    /// until there is one.
    ///
    /// # Errors
    ///
    /// The kernel's code.
    pub fn wait(self, kernel: &mut impl Kernel) -> Result<u64, Error> {
        self.notification_call(kernel, number::WAIT)
    }

    /// Poll: like [`wait`](Self::wait) without sleeping (0: nothing was
    /// signalled).
    ///
    /// # Errors
    ///
    /// The kernel's code.
    pub fn poll(self, kernel: &mut impl Kernel) -> Result<u64, Error> {
        self.notification_call(kernel, number::POLL)
    }

    fn notification_call(self, kernel: &mut impl Kernel, number: u64) -> Result<u64, Error> {
        let empty = Message::empty(0);
        let incoming =
            kernel.syscall(Syscall { number, cptr: self.cptr(), message: &empty, caps: &[], reply: NO_CAP })?;
        Error::check(incoming.message.label)?;
        Ok(incoming.badge)
    }
}

/// Yield: the rest of this time slice goes to the next ready thread of the
/// same priority.
///
/// # Errors
///
/// The kernel's code.
pub fn yield_now(kernel: &mut impl Kernel) -> Result<(), Error> {
    let empty = Message::empty(0);
    let incoming =
        kernel.syscall(Syscall { number: number::YIELD, cptr: CPtr(0), message: &empty, caps: &[], reply: NO_CAP })?;
    Error::check(incoming.message.label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{FakeKernel, Recorded};

    fn recorded(number: u64, cptr: u64, label: u64, words: &[u64], caps: &[u64]) -> Recorded {
        Recorded { number, cptr, label, words: words.to_vec(), caps: caps.to_vec(), reply: 0 }
    }

    fn call(cptr: u64, label: u64, words: &[u64], caps: &[u64]) -> Recorded {
        recorded(number::CALL, cptr, label, words, caps)
    }

    #[test]
    fn cnode_invocations_send_the_abi_words_and_the_source_root() {
        let mut kernel = FakeKernel::default();
        let cnode: Cap<kind::CNode> = Cap::new(0);
        let source_root: Cap<kind::CNode> = Cap::new(3);
        let rw = Rights::READ | Rights::WRITE;
        cnode.copy(&mut kernel, Slot::index(40), source_root, Slot { index: 33, depth: 8 }, rw).unwrap();
        assert_eq!(kernel.last(), &call(0, 3, &[40, 64, 33, 8, 3], &[3]));
        cnode.mint(&mut kernel, Slot::index(41), source_root, Slot::index(33), Rights::ALL, 0xbad).unwrap();
        assert_eq!(kernel.last(), &call(0, 4, &[41, 64, 33, 64, 0xf, 0xbad], &[3]));
        cnode.move_(&mut kernel, Slot::index(42), source_root, Slot::index(41)).unwrap();
        assert_eq!(kernel.last(), &call(0, 5, &[42, 64, 41, 64], &[3]));
        cnode.mutate(&mut kernel, Slot::index(43), source_root, Slot::index(42), 7).unwrap();
        assert_eq!(kernel.last(), &call(0, 6, &[43, 64, 42, 64, 7], &[3]));
        cnode.delete(&mut kernel, Slot::index(43)).unwrap();
        assert_eq!(kernel.last(), &call(0, 2, &[43, 64], &[]));
        cnode.revoke(&mut kernel, Slot::index(33)).unwrap();
        assert_eq!(kernel.last(), &call(0, 1, &[33, 64], &[]));
    }

    #[test]
    fn kernel_result_codes_become_errors() {
        let mut kernel = FakeKernel::default();
        kernel.answer(0, 8, &[]);
        let cnode: Cap<kind::CNode> = Cap::new(0);
        let result = cnode.copy(&mut kernel, Slot::index(1), cnode, Slot::index(2), Rights::ALL);
        assert_eq!(result, Err(Error::DeleteFirst));
        kernel.answer(0, 6, &[]);
        assert_eq!(Cap::<kind::Notification>::new(9).poll(&mut kernel), Err(Error::FailedLookup));
        kernel.answer(0, 99, &[]);
        assert_eq!(Cap::<kind::Tcb>::new(9).resume(&mut kernel), Err(Error::Unknown));
    }

    #[test]
    fn retype_names_the_type_the_destination_and_the_count() {
        let mut kernel = FakeKernel::default();
        let untyped: Cap<kind::Untyped> = Cap::new(1);
        let dest = Destination::slots_of(Cap::new(0), 32);
        untyped.retype(&mut kernel, ObjectKind::Endpoint, 0, dest, 2).unwrap();
        assert_eq!(kernel.last(), &call(1, 16, &[4, 0, 0, 0, 32, 2], &[0]));
        let nested = Destination { root: Cap::new(0), node: Slot::index(50), offset: 3 };
        untyped.retype(&mut kernel, ObjectKind::CNode, 4, nested, 1).unwrap();
        assert_eq!(kernel.last(), &call(1, 16, &[1, 4, 50, 64, 3, 1], &[0]));
    }

    #[test]
    fn tcb_invocations_follow_the_abi_table() {
        let mut kernel = FakeKernel::default();
        let tcb: Cap<kind::Tcb> = Cap::new(40);
        tcb.set_space(&mut kernel, Cap::new(0), Some(Cap::new(11))).unwrap();
        assert_eq!(kernel.last(), &call(40, 32, &[], &[0, 11]));
        tcb.set_space(&mut kernel, Cap::new(0), None).unwrap();
        assert_eq!(kernel.last(), &call(40, 32, &[], &[0]));
        tcb.set_ipc_buffer(&mut kernel, Cap::new(44)).unwrap();
        assert_eq!(kernel.last(), &call(40, 40, &[], &[44]));
        let registers = Registers { rip: 0x40_1000, rsp: 0x8000_3ff8, rflags: 0, rdi: 1, rsi: 2, rdx: 3 };
        tcb.write_registers(&mut kernel, &registers).unwrap();
        assert_eq!(kernel.last(), &call(40, 39, &[0x40_1000, 0x8000_3ff8, 0, 1, 2, 3], &[]));
        tcb.set_priority(&mut kernel, Cap::new(6), 100).unwrap();
        assert_eq!(kernel.last(), &call(40, 33, &[100], &[6]));
        tcb.set_max_priority(&mut kernel, Cap::new(6), 90).unwrap();
        assert_eq!(kernel.last(), &call(40, 34, &[90], &[6]));
        tcb.bind_sched_context(&mut kernel, Cap::new(41)).unwrap();
        assert_eq!(kernel.last(), &call(40, 35, &[], &[41]));
        tcb.set_fault_handler(&mut kernel, Cap::new(42)).unwrap();
        assert_eq!(kernel.last(), &call(40, 38, &[], &[42]));
        tcb.resume(&mut kernel).unwrap();
        assert_eq!(kernel.last(), &call(40, 36, &[], &[]));
        tcb.suspend(&mut kernel).unwrap();
        assert_eq!(kernel.last(), &call(40, 37, &[], &[]));
        let calls = kernel.calls.len();
        tcb.set_name(&mut kernel, "log_server").unwrap();
        assert_eq!(kernel.names, [(40, crate::kernel::thread_name_words("log_server"))]);
        assert_eq!(kernel.calls.len(), calls, "a debugging call, not an invocation");
        Cap::<kind::SchedControl>::new(5).configure(&mut kernel, Cap::new(41), 1000, 5000).unwrap();
        assert_eq!(kernel.last(), &call(5, 48, &[1000, 5000], &[41]));
    }

    #[test]
    fn vspace_invocations_follow_the_abi_table() {
        let mut kernel = FakeKernel::default();
        let frame: Cap<kind::Frame> = Cap::new(50);
        let vspace: Cap<kind::Pml4> = Cap::new(11);
        frame.map(&mut kernel, vspace, 0x8000_0000, Rights::READ | Rights::WRITE, attributes::DATA).unwrap();
        assert_eq!(kernel.last(), &call(50, 98, &[0x8000_0000, 3, 0], &[11]));
        frame.unmap(&mut kernel).unwrap();
        assert_eq!(kernel.last(), &call(50, 99, &[], &[]));
        kernel.answer(0, 0, &[0x1234_5000]);
        assert_eq!(frame.get_address(&mut kernel), Ok(0x1234_5000));
        assert_eq!(kernel.last(), &call(50, 100, &[], &[]));
        assert_eq!(frame.get_address(&mut kernel), Err(Error::TruncatedMessage), "a reply without its word");
        let table: Cap<kind::PageTable> = Cap::new(51);
        table.map(&mut kernel, vspace, 0x8000_0000).unwrap();
        assert_eq!(kernel.last(), &call(51, 96, &[0x8000_0000], &[11]));
        table.unmap(&mut kernel).unwrap();
        assert_eq!(kernel.last(), &call(51, 97, &[], &[]));
        Cap::<kind::AsidControl>::new(9).make_pool(&mut kernel, Cap::new(60), Cap::new(0), Slot::index(61)).unwrap();
        assert_eq!(kernel.last(), &call(9, 104, &[61, 64], &[60, 0]));
        Cap::<kind::AsidPool>::new(10).assign(&mut kernel, Cap::new(62)).unwrap();
        assert_eq!(kernel.last(), &call(10, 105, &[], &[62]));
        assert_eq!(attributes::UNCACHEABLE, 0b110);
    }

    #[test]
    fn endpoint_and_notification_calls_use_their_system_call_numbers() {
        let mut kernel = FakeKernel::default();
        let endpoint: Cap<kind::Endpoint> = Cap::new(70);
        kernel.answer(0, 0, &[42]);
        let reply = endpoint.call(&mut kernel, &Message::new(1, &[41])).unwrap();
        assert_eq!(reply.words(), [42]);
        assert_eq!(kernel.last(), &recorded(number::CALL, 70, 1, &[41], &[]));
        kernel.answer(0, Error::InvalidArgument as u64, &[]);
        assert_eq!(endpoint.call(&mut kernel, &Message::empty(1)), Err(Error::InvalidArgument));
        endpoint.send(&mut kernel, &Message::new(2, &[1, 2])).unwrap();
        assert_eq!(kernel.last(), &recorded(number::SEND, 70, 2, &[1, 2], &[]));
        kernel.answer(0xc1, 5, &[9]);
        let incoming = endpoint.recv(&mut kernel, Some(Cap::new(71))).unwrap();
        assert_eq!((incoming.badge, incoming.message.label, incoming.message.words()), (0xc1, 5, &[9][..]));
        assert_eq!(kernel.last(), &Recorded { reply: 71, ..recorded(number::RECV, 70, 0, &[], &[]) });
        endpoint.reply_recv(&mut kernel, Cap::new(71), &Message::new(0, &[10])).unwrap();
        assert_eq!(kernel.last(), &Recorded { reply: 71, ..recorded(number::REPLY_RECV, 70, 0, &[10], &[]) });

        let notification: Cap<kind::Notification> = Cap::new(72);
        notification.signal(&mut kernel).unwrap();
        assert_eq!(kernel.last(), &recorded(number::SIGNAL, 72, 0, &[], &[]));
        kernel.answer(0b101, 0, &[]);
        assert_eq!(notification.poll(&mut kernel), Ok(0b101));
        assert_eq!(kernel.last().number, number::POLL);
        kernel.answer(0b1, 0, &[]);
        assert_eq!(notification.wait(&mut kernel), Ok(0b1));
        assert_eq!(kernel.last().number, number::WAIT);
    }

    #[test]
    fn the_debug_writer_prints_through_the_kernel() {
        use core::fmt::Write as _;
        let mut kernel = FakeKernel::default();
        write!(crate::kernel::DebugWriter(&mut kernel), "root: {} ok", 3).unwrap();
        assert_eq!(kernel.console, b"root: 3 ok");
        assert!(kernel.calls.is_empty());
    }
}
