//! The system-call primitives every typed invocation stands on. The ring-3
//! hardware-access crate (`bulkhead-sys`) implements [`Kernel`] with the
//! `syscall` instruction; host tests implement it with a recording fake,
//! so that every wrapper in [`crate::invocation`] is tested without a
//! kernel.

use crate::cap::CPtr;
use crate::error::Error;
use crate::message::Message;

pub use kernel_core::ipc::{MAX_MESSAGE_WORDS, MessageInfo, REGISTER_MESSAGE_WORDS};
pub use kernel_core::syscall::number;

/// The most extra capability addresses a message carries (IPC buffer
/// indices 120..122).
pub const MAX_EXTRA_CAPS: usize = 3;

/// What a system call hands back: the thread's message after the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The badge of the last message or signal received (RDI on return).
    pub badge: u64,
    /// The label and words of the thread's message (for an invocation the
    /// label is the result code).
    pub message: Message,
    /// How many capabilities arrived with it.
    pub caps: u8,
}

/// A capability address that names no capability: the reply argument of
/// calls that take none.
pub const NO_CAP: CPtr = CPtr(0);

/// One system call with everything the register ABI carries
/// (`docs/abi.md`, "Registers").
#[derive(Clone, Copy, Debug)]
pub struct Syscall<'a> {
    /// The number (RAX): one of [`number`].
    pub number: u64,
    /// The capability it names (RDI).
    pub cptr: CPtr,
    /// The message: label and words.
    pub message: &'a Message,
    /// Extra capability addresses (at most [`MAX_EXTRA_CAPS`]).
    pub caps: &'a [CPtr],
    /// The reply object for Recv, NBRecv and ReplyRecv ([`NO_CAP`] for none).
    pub reply: CPtr,
}

/// The kernel as a protection domain sees it.
pub trait Kernel {
    /// Makes one system call.
    ///
    /// # Errors
    ///
    /// Only local refusals, before the kernel is entered:
    /// [`Error::NoIpcBuffer`] for a message this thread cannot pass. The
    /// kernel's own refusals arrive as the returned message's label.
    fn syscall(&mut self, call: Syscall<'_>) -> Result<Incoming, Error>;

    /// Prints one byte on the kernel's debug console.
    fn debug_putchar(&mut self, byte: u8);
}

/// A `core::fmt::Write` sink over [`Kernel::debug_putchar`].
pub struct DebugWriter<'a, K: Kernel>(pub &'a mut K);

impl<K: Kernel> core::fmt::Write for DebugWriter<'_, K> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            self.0.debug_putchar(byte);
        }
        Ok(())
    }
}

/// A [`Kernel`] that records every call and answers from a script: the
/// host tests' stand-in for the real one.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// One recorded system call.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) struct Recorded {
        pub(crate) number: u64,
        pub(crate) cptr: u64,
        pub(crate) label: u64,
        pub(crate) words: Vec<u64>,
        pub(crate) caps: Vec<u64>,
        pub(crate) reply: u64,
    }

    /// Records calls; answers each with the next scripted reply, or an
    /// empty success.
    #[derive(Default)]
    pub(crate) struct FakeKernel {
        pub(crate) calls: Vec<Recorded>,
        pub(crate) answers: Vec<Incoming>,
        pub(crate) console: Vec<u8>,
    }

    impl FakeKernel {
        pub(crate) fn answer(&mut self, badge: u64, label: u64, words: &[u64]) {
            self.answers.push(Incoming { badge, message: Message::new(label, words), caps: 0 });
        }

        pub(crate) fn last(&self) -> &Recorded {
            self.calls.last().expect("a call was made")
        }
    }

    impl Kernel for FakeKernel {
        fn syscall(&mut self, call: Syscall<'_>) -> Result<Incoming, Error> {
            if call.caps.len() > MAX_EXTRA_CAPS {
                return Err(Error::NoIpcBuffer);
            }
            self.calls.push(Recorded {
                number: call.number,
                cptr: call.cptr.0,
                label: call.message.label,
                words: call.message.words().to_vec(),
                caps: call.caps.iter().map(|cap| cap.0).collect(),
                reply: call.reply.0,
            });
            Ok(if self.answers.is_empty() {
                Incoming { badge: 0, message: Message::empty(0), caps: 0 }
            } else {
                self.answers.remove(0)
            })
        }

        fn debug_putchar(&mut self, byte: u8) {
            self.console.push(byte);
        }
    }
}
