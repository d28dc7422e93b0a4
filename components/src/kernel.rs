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

use kernel_core::vcpu::enter;

use crate::vcpu::GuestRegisters;

/// The words of a VMEnter exit reply after the registers: kind, reason,
/// qualification, guest-physical address, instruction length, five
/// control words and CS's base and attributes.
pub const EXIT_DETAIL_WORDS: usize = enter::EXIT_WORDS - enter::STATE_WORDS;

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

    /// VMEnter's transport (`docs/abi.md`, "VMEnter"): sends `registers`
    /// and `controls` (the deadline and the control bits, message words
    /// [`enter::DEADLINE`] and [`enter::CONTROLS`]) as VMEnter's message
    /// ([`enter::MESSAGE_WORDS`] words); when the reply carries at least
    /// [`enter::STATE_WORDS`] words, they go back into `registers`, and
    /// when it carries all [`enter::EXIT_WORDS`], the rest go into `exit`.
    /// Returns the reply's info word (label, length) and badge; the caller
    /// checks the label. The default goes through [`Kernel::syscall`]; a
    /// runtime moves the words between the registers, its IPC buffer and
    /// these arguments directly.
    ///
    /// # Errors
    ///
    /// As [`Kernel::syscall`].
    fn vm_enter_call(
        &mut self,
        registers: &mut GuestRegisters,
        controls: [u64; 2],
        exit: &mut [u64; EXIT_DETAIL_WORDS],
    ) -> Result<(MessageInfo, u64), Error> {
        let mut words = [0; enter::MESSAGE_WORDS];
        words[..16].copy_from_slice(&registers.general);
        (words[enter::RIP], words[enter::RFLAGS], words[enter::EVENT]) =
            (registers.rip, registers.rflags, registers.event);
        [words[enter::DEADLINE], words[enter::CONTROLS]] = controls;
        let message = Message::new(0, &words);
        let incoming = self.syscall(Syscall {
            number: number::VM_ENTER,
            cptr: NO_CAP,
            message: &message,
            caps: &[],
            reply: NO_CAP,
        })?;
        let reply = incoming.message.words();
        if let Some(message) = reply.get(..enter::STATE_WORDS) {
            registers.general.copy_from_slice(&message[..16]);
            (registers.rip, registers.rflags, registers.event) =
                (message[enter::RIP], message[enter::RFLAGS], message[enter::EVENT]);
        }
        if let Some(detail) = reply.get(enter::STATE_WORDS..enter::EXIT_WORDS) {
            exit.copy_from_slice(detail);
        }
        let length = u8::try_from(reply.len()).unwrap_or(u8::MAX);
        Ok((MessageInfo { label: incoming.message.label, length, caps: incoming.caps }, incoming.badge))
    }

    /// Prints one byte on the kernel's debug console.
    fn debug_putchar(&mut self, byte: u8);

    /// `DEBUG_NAME_THREAD`: names the thread whose TCB capability `tcb`
    /// addresses, for the kernel's dumps; `name` is the 32 bytes of
    /// [`thread_name_words`].
    ///
    /// # Errors
    ///
    /// The kernel's code: [`Error::FailedLookup`] when `tcb` names no
    /// capability, [`Error::InvalidCapability`] when it is not a TCB
    /// capability. A kernel without the call refuses it as an unknown
    /// system call ([`Error::InvalidArgument`]), which is what this
    /// default does.
    fn name_thread(&mut self, tcb: CPtr, name: [u64; 4]) -> Result<(), Error> {
        let _ = (tcb, name);
        Err(Error::InvalidArgument)
    }
}

/// The bytes of a thread name (`DEBUG_NAME_THREAD`).
pub const THREAD_NAME_BYTES: usize = kernel_core::ipc::THREAD_NAME_BYTES;

/// `name` as `DEBUG_NAME_THREAD` passes it: its first
/// [`THREAD_NAME_BYTES`] bytes (cut at a character boundary),
/// NUL-padded, in four little-endian words.
#[must_use]
pub fn thread_name_words(name: &str) -> [u64; 4] {
    let mut end = name.len().min(THREAD_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = [0_u8; THREAD_NAME_BYTES];
    bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
    let mut words = [0_u64; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut eight = [0_u8; 8];
        eight.copy_from_slice(chunk);
        *word = u64::from_le_bytes(eight);
    }
    words
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
        pub(crate) names: Vec<(u64, [u64; 4])>,
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

        fn name_thread(&mut self, tcb: CPtr, name: [u64; 4]) -> Result<(), Error> {
            self.names.push((tcb.0, name));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_pack_into_four_little_endian_words() {
        assert_eq!(
            thread_name_words("log_server"),
            [u64::from_le_bytes(*b"log_serv"), u64::from_le_bytes(*b"er\0\0\0\0\0\0"), 0, 0]
        );
        assert_eq!(thread_name_words(""), [0; 4]);
        let long = "abcdefgh".repeat(5);
        assert_eq!(thread_name_words(&long), [u64::from_le_bytes(*b"abcdefgh"); 4], "cut at 32 bytes");
        // 31 ASCII bytes and a two-byte character: the character goes whole.
        let name = format!("{}\u{e9}", "a".repeat(31));
        let words = thread_name_words(&name);
        assert_eq!(words[3].to_le_bytes(), *b"aaaaaaa\0");
    }
}
