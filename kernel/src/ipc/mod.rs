//! Threads, endpoints, notifications and reply objects: the state of
//! synchronous IPC and asynchronous signalling, hardware-free.
//!
//! The model is seL4's with MCS reply objects: a receiver names a reply
//! object when it waits; a Call delivered to it binds that reply object to
//! the caller, who sleeps until someone replies through it. Every function
//! here acts on state the system-call layer has already checked (rights,
//! lengths, object types), so none of them fails on user input; they only
//! change thread states, queues and messages, and hand woken threads to
//! the [`Scheduler`](crate::sched::Scheduler).

mod cancel;
mod donation;
mod endpoint;
mod fault;
mod notification;
mod queue;

pub use cancel::stop_thread;
pub use donation::server_of;
pub(crate) use donation::{begin_loan, give_back, lendable};
pub use donation::{end_loan, running_context};
pub use endpoint::{EndpointCap, ReceiveOutcome, call, endpoint_cap_with, receive, reply, send};
pub use fault::{Fault, FaultOutcome, fault_slot, handle_fault, label as fault_label};
pub use notification::{WaitOutcome, signal, wait};
pub use queue::Queue;

use crate::memory::PhysAddr;

/// The most message words a thread can send: the first
/// [`REGISTER_MESSAGE_WORDS`] travel in registers, the rest in the thread's
/// IPC buffer.
pub const MAX_MESSAGE_WORDS: usize = 120;
/// Message words that travel in registers (the fast path's limit).
pub const REGISTER_MESSAGE_WORDS: usize = 4;
/// IPC buffer index of the first extra capability address (three follow).
pub const BUFFER_EXTRA_CPTRS: usize = MAX_MESSAGE_WORDS;
/// IPC buffer index of the receive slot's capability address (Recv,
/// NBRecv, ReplyRecv).
pub const BUFFER_RECEIVE_CPTR: usize = 123;
/// IPC buffer index of the receive slot's lookup depth: 0 accepts no
/// capability, 1..=64 names a slot.
pub const BUFFER_RECEIVE_DEPTH: usize = 124;

/// Where a receiver accepts a transferred capability: an empty slot its
/// own CSpace resolves `cptr` to, using exactly `depth` bits. It is looked
/// up when a message arrives, never earlier: a slot named long before
/// could have been deleted and its memory reused since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveSlot {
    /// The slot's address.
    pub cptr: u64,
    /// Bits of `cptr` to use (1..=64).
    pub depth: u8,
}

/// A thread, named by its TCB's physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(PhysAddr);

impl ThreadId {
    /// The thread whose TCB is at `tcb`.
    #[must_use]
    pub const fn new(tcb: PhysAddr) -> ThreadId {
        ThreadId(tcb)
    }

    /// Its TCB's address.
    #[must_use]
    pub const fn address(self) -> PhysAddr {
        self.0
    }
}

/// The first word of a message: what it is and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MessageInfo {
    /// The protocol's label (an invocation label for the kernel).
    pub label: u64,
    /// Message words that follow (at most [`MAX_MESSAGE_WORDS`]).
    pub length: u8,
    /// Capabilities transferred (0 or 1 for now).
    pub caps: u8,
}

impl MessageInfo {
    /// The register encoding: bits 0..7 the length, 7..9 the capability
    /// count, 12..64 the label.
    #[must_use]
    pub const fn to_word(self) -> u64 {
        (self.label << 12) | (((self.caps & 0x3) as u64) << 7) | ((self.length & 0x7f) as u64)
    }

    /// Decodes the register encoding; nothing is rejected here (the
    /// system-call layer checks the length against [`MAX_MESSAGE_WORDS`]).
    #[must_use]
    pub const fn from_word(word: u64) -> MessageInfo {
        // Masked to 7 and 2 bits first: the casts cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        MessageInfo { label: word >> 12, caps: ((word >> 7) & 0x3) as u8, length: (word & 0x7f) as u8 }
    }
}

/// What a thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThreadState {
    /// Not started, or stopped.
    #[default]
    Inactive,
    /// Ready to run, or running.
    Runnable,
    /// Waiting in an endpoint's queue to send.
    BlockedOnSend {
        /// The endpoint.
        endpoint: PhysAddr,
        /// The badge of the capability it sends with.
        badge: u64,
        /// The capability it sends with allows transferring capabilities.
        can_grant: bool,
        /// It is a Call: after delivery it waits for the reply.
        is_call: bool,
    },
    /// Waiting in an endpoint's queue to receive.
    BlockedOnReceive {
        /// The endpoint.
        endpoint: PhysAddr,
        /// The reply object a Call delivered to it binds to the caller.
        reply: Option<PhysAddr>,
    },
    /// Has called and waits for the reply through this reply object.
    BlockedOnReply {
        /// The reply object.
        reply: PhysAddr,
    },
    /// Waiting for a notification (Wait, or VMEnter's `WAIT` on the
    /// bound notification, which may also sleep until a deadline).
    BlockedOnNotification {
        /// The notification.
        notification: PhysAddr,
    },
    /// VMEnter's `WAIT` without a bound notification: sleeping until its
    /// deadline, in the scheduler's sleep queue only.
    Sleeping,
}

/// A thread control block (the parts IPC and scheduling use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcb {
    /// What it is doing.
    pub state: ThreadState,
    /// 0 (lowest) to 255.
    pub priority: u8,
    /// The highest priority this thread may give any thread (its own
    /// included) through a TCB capability: priorities are authority too.
    pub max_priority: u8,
    /// The current message's info (being sent, or last received).
    pub info: MessageInfo,
    /// The current message's words.
    pub words: [u64; MAX_MESSAGE_WORDS],
    /// The badge of the last message or notification received.
    pub badge: u64,
    /// Where a received capability lands, if the thread accepts one.
    pub receive_slot: Option<ReceiveSlot>,
    /// The extra capability addresses of the current message (from the IPC
    /// buffer): invocation arguments, or the capability a send transfers.
    pub extra_cptrs: [u64; 3],
    /// The scheduling context bound to the thread, whose budget it runs on
    /// unless it holds a [`Loan`] (`None`: not budget-limited; the loader
    /// gives every user thread one).
    pub sched_context: Option<PhysAddr>,
    /// A passive server (`TCB::SetPassive`): a Call delivered to it lends
    /// it the caller's scheduling context until the reply
    /// ([`donation`](self::donation)).
    pub passive: bool,
    /// The caller's scheduling context it runs on while it serves a Call.
    pub loan: Option<Loan>,
    /// The thread's user-mode registers while it is not on the CPU (the
    /// kernel's own test threads keep theirs in the architecture code).
    pub registers: UserRegisters,
    /// What the system call it was blocked in becomes when it runs again.
    pub resumption: Resumption,
    /// Its debugging name (`DEBUG_NAME_THREAD`), for the kernel's dumps.
    pub name: ThreadName,
    /// The VCpu bound to it (`VCpu::SetTcb`), which its VMEnter runs.
    pub vcpu: Option<PhysAddr>,
    /// The notification bound to it (`TCB::BindNotification`), whose
    /// signals end its VMEnter.
    pub bound_notification: Option<PhysAddr>,
    /// Links of the one queue the thread is in: a ready queue while
    /// runnable, the release queue while runnable but out of budget, an
    /// endpoint's or notification's queue while blocked.
    pub(crate) queue_links: QueueLinks,
    /// Links of the scheduler's sleep queue (VMEnter's `WAIT` with a
    /// deadline), apart from `queue_links`: a thread may sleep there
    /// while it waits in its bound notification's queue.
    pub(crate) sleep_links: QueueLinks,
    /// When a sleeping thread wakes (its VMEnter's deadline); meaningful
    /// only while it is in the sleep queue.
    pub(crate) wake_at: u64,
}

/// A caller's scheduling context lent to the passive server that serves
/// its Call, until the reply through `reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loan {
    /// The reply object of the Call being served.
    pub reply: PhysAddr,
    /// The caller's scheduling context, bound to the caller all along.
    pub context: PhysAddr,
}

/// The most bytes of a thread's debugging name.
pub const THREAD_NAME_BYTES: usize = 32;

/// A thread's debugging name (seL4's TCB debug name): up to
/// [`THREAD_NAME_BYTES`] bytes, NUL-padded. The kernel stores whatever
/// bytes it was given and never interprets them; [`Display`](core::fmt::Display)
/// prints them as UTF-8, replacing invalid sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ThreadName(pub [u8; THREAD_NAME_BYTES]);

impl ThreadName {
    /// No name.
    pub const NONE: ThreadName = ThreadName([0; THREAD_NAME_BYTES]);

    /// The name from the four little-endian words of `DEBUG_NAME_THREAD`.
    #[must_use]
    pub fn from_words(words: [u64; 4]) -> ThreadName {
        let mut bytes = [0; THREAD_NAME_BYTES];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        ThreadName(bytes)
    }

    /// The name's bytes up to the first NUL.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|byte| *byte == 0).unwrap_or(THREAD_NAME_BYTES);
        &self.0[..end]
    }

    /// Whether the thread has no name.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl core::fmt::Display for ThreadName {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            formatter.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                formatter.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

/// What a thread that left ring 3 through a system call gets when it runs
/// again (the architecture code acts on it and resets it to `Results`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resumption {
    /// The call's results (its message and badge) go into its registers.
    #[default]
    Results,
    /// The call it was blocked in was cancelled (the thread was stopped
    /// while it waited): it runs the same system call again, as seL4
    /// restarts it, rather than returning a result it never got.
    Restart,
    /// TCB::WriteRegisters gave it new registers: it starts from them.
    Fresh,
    /// The call itself asked to run again (VMEnter, after a host interrupt
    /// ended its guest's run): the thread goes back to its SYSCALL with
    /// its registers as they were, the kernel taking the interrupt on the
    /// way, whether or not another thread ran in between.
    Again,
}

/// A thread's user-mode registers, in the order the kernel's entry code
/// saves them (the architecture code asserts the offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs, reason = "the x86-64 register names say it")]
pub struct UserRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Where the thread continues (from RCX on SYSCALL).
    pub rip: u64,
    /// Its RFLAGS (from R11 on SYSCALL).
    pub rflags: u64,
    /// Its stack pointer.
    pub rsp: u64,
}

impl UserRegisters {
    /// Every register zero.
    pub const ZERO: UserRegisters = UserRegisters {
        rax: 0,
        rbx: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        rbp: 0,
        r8: 0,
        r9: 0,
        r10: 0,
        r11: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        rip: 0,
        rflags: 0,
        rsp: 0,
    };
}

/// A thread's links in the queue that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QueueLinks {
    /// The thread before it.
    pub previous: Option<ThreadId>,
    /// The thread after it.
    pub next: Option<ThreadId>,
    /// Whether it is in a queue at all.
    pub queued: bool,
}

impl Tcb {
    /// A fresh thread: inactive, priority 0, no message.
    pub const FRESH: Tcb = Tcb {
        state: ThreadState::Inactive,
        priority: 0,
        max_priority: 0,
        info: MessageInfo { label: 0, length: 0, caps: 0 },
        words: [0; MAX_MESSAGE_WORDS],
        badge: 0,
        receive_slot: None,
        extra_cptrs: [0; 3],
        sched_context: None,
        passive: false,
        loan: None,
        registers: UserRegisters::ZERO,
        resumption: Resumption::Results,
        name: ThreadName::NONE,
        vcpu: None,
        bound_notification: None,
        queue_links: QueueLinks { previous: None, next: None, queued: false },
        sleep_links: QueueLinks { previous: None, next: None, queued: false },
        wake_at: 0,
    };

    /// The words of the current message.
    #[must_use]
    pub fn message(&self) -> &[u64] {
        &self.words[..usize::from(self.info.length).min(MAX_MESSAGE_WORDS)]
    }

    /// The thread's links in the queue that holds it (read-only: the
    /// queues change them), for the invariant harness's checks.
    #[must_use]
    pub const fn queue_links(&self) -> QueueLinks {
        self.queue_links
    }

    /// Whether the thread sits in a queue (ready or blocked).
    #[must_use]
    pub const fn is_queued(&self) -> bool {
        self.queue_links.queued
    }

    /// The thread's links in the sleep queue, for the invariant harness.
    #[must_use]
    pub const fn sleep_links(&self) -> QueueLinks {
        self.sleep_links
    }

    /// When the thread wakes, while it is in the sleep queue.
    #[must_use]
    pub const fn wake_at(&self) -> Option<u64> {
        if self.sleep_links.queued { Some(self.wake_at) } else { None }
    }
}

impl Default for Tcb {
    fn default() -> Self {
        Tcb::FRESH
    }
}

/// Which way an endpoint's queue points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EndpointState {
    /// Nobody waits.
    #[default]
    Idle,
    /// Senders wait.
    Sending,
    /// Receivers wait.
    Receiving,
}

/// A synchronous IPC endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Who waits.
    pub state: EndpointState,
    /// The waiting threads, in arrival order.
    pub queue: Queue,
}

impl Endpoint {
    /// A fresh endpoint.
    pub const FRESH: Endpoint = Endpoint { state: EndpointState::Idle, queue: Queue::EMPTY };
}

/// A notification: a word of flags that signals OR into and a wait takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Notification {
    /// A signal arrived that no wait has taken yet.
    pub active: bool,
    /// The OR of the badges signalled since the last wait.
    pub word: u64,
    /// The waiting threads, in arrival order.
    pub waiters: Queue,
    /// The thread it is bound to (`TCB::BindNotification`).
    pub bound_tcb: Option<ThreadId>,
}

impl Notification {
    /// A fresh notification.
    pub const FRESH: Notification = Notification { active: false, word: 0, waiters: Queue::EMPTY, bound_tcb: None };
}

/// A reply object: which caller a reply through it wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reply {
    /// The thread waiting for the reply, while a Call is outstanding.
    pub caller: Option<ThreadId>,
    /// The receiver blocked in Receive with this reply object, which a Call
    /// delivered to it will bind.
    pub receiver: Option<ThreadId>,
}

impl Reply {
    /// A fresh reply object.
    pub const FRESH: Reply = Reply { caller: None, receiver: None };

    /// Whether a Receive may name it: no call outstanding through it and no
    /// other receiver holding it.
    #[must_use]
    pub const fn is_free(&self) -> bool {
        self.caller.is_none() && self.receiver.is_none()
    }
}

#[cfg(test)]
mod tests;
