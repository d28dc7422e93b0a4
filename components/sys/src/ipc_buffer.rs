//! The thread's IPC buffer: one 4 KiB page holding message words 4..119 at
//! their own indices and the extra capability addresses at indices
//! 120..122 (`docs/abi.md`, "The IPC buffer"). The kernel writes it during
//! a system call, so it is only ever read and written word by word with
//! volatile accesses, never behind a Rust reference.
//!
//! [`pack`] and [`unpack`] turn a message into registers and buffer words
//! and back; they work on any [`WordBuffer`], so the host tests run them on
//! an array.

use bulkhead_components::Error;
use bulkhead_components::kernel::{
    Incoming, MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS, MessageInfo, REGISTER_MESSAGE_WORDS, Syscall,
};
use bulkhead_components::message::Message;

use crate::arch::{RawCall, RawReturn};

/// Words in the page.
pub const WORDS: usize = 512;
/// The index of the first extra capability address.
pub const CAPS_INDEX: usize = 120;

/// Word-wise access to an IPC buffer.
pub trait WordBuffer {
    /// The word at `index` (below [`WORDS`]).
    fn read(&self, index: usize) -> u64;
    /// Sets the word at `index` (below [`WORDS`]).
    fn write(&mut self, index: usize, value: u64);
}

/// The IPC buffer page mapped at a fixed address of this thread's VSpace.
#[derive(Debug)]
pub struct IpcBufferPage {
    base: *mut u64,
}

impl IpcBufferPage {
    /// The page at `address`.
    ///
    /// # Safety
    ///
    /// 1. `address` is page-aligned and the page there is mapped readable
    ///    and writable for as long as the value lives, and
    /// 2. nothing else in the program holds a Rust reference into it or
    ///    uses it for anything but this thread's IPC buffer.
    #[must_use]
    pub unsafe fn new(address: usize) -> IpcBufferPage {
        // The page is memory from outside the program: exposed provenance.
        IpcBufferPage { base: core::ptr::with_exposed_provenance_mut(address) }
    }
}

impl IpcBufferPage {
    /// Copies the words from index `start` on into `words` (one bounds
    /// check, then a run of volatile reads: VMEnter's 31-word reply).
    ///
    /// # Panics
    ///
    /// If the words reach past the page.
    pub fn read_words(&self, start: usize, words: &mut [u64]) {
        assert!(start.checked_add(words.len()).is_some_and(|end| end <= WORDS), "IPC buffer words {start}..");
        for (index, word) in words.iter_mut().enumerate() {
            let source = self.base.wrapping_add(start + index);
            // SAFETY: inside the page (checked above), which `new`'s
            // contract keeps mapped, readable and free of Rust references.
            *word = unsafe { source.read_volatile() };
        }
    }

    /// Copies `words` to the buffer from index `start` on.
    ///
    /// # Panics
    ///
    /// If the words reach past the page.
    pub fn write_words(&mut self, start: usize, words: &[u64]) {
        assert!(start.checked_add(words.len()).is_some_and(|end| end <= WORDS), "IPC buffer words {start}..");
        for (index, word) in words.iter().enumerate() {
            let target = self.base.wrapping_add(start + index);
            // SAFETY: as for `read_words`; the page is writable by the
            // same contract.
            unsafe { target.write_volatile(*word) };
        }
    }
}

impl WordBuffer for IpcBufferPage {
    fn read(&self, index: usize) -> u64 {
        assert!(index < WORDS, "IPC buffer index {index}");
        let word = self.base.wrapping_add(index);
        // SAFETY: the index is inside the page, which `new`'s contract
        // keeps mapped and readable and free of Rust references; a volatile
        // read tolerates the kernel having written it.
        unsafe { word.read_volatile() }
    }

    fn write(&mut self, index: usize, value: u64) {
        assert!(index < WORDS, "IPC buffer index {index}");
        let word = self.base.wrapping_add(index);
        // SAFETY: as for `read`; the page is writable by the same contract.
        unsafe { word.write_volatile(value) }
    }
}

/// The registers for `call`, with words 4.. and the capability addresses
/// written to `buffer`.
///
/// # Errors
///
/// [`Error::NoIpcBuffer`] for more than four words or any capability
/// without a buffer, or more than three capabilities.
pub fn pack(call: &Syscall<'_>, buffer: Option<&mut dyn WordBuffer>) -> Result<RawCall, Error> {
    let words = call.message.words();
    if call.caps.len() > MAX_EXTRA_CAPS {
        return Err(Error::NoIpcBuffer);
    }
    if words.len() > REGISTER_MESSAGE_WORDS || !call.caps.is_empty() {
        let buffer = buffer.ok_or(Error::NoIpcBuffer)?;
        for (index, word) in words.iter().enumerate().skip(REGISTER_MESSAGE_WORDS) {
            buffer.write(index, *word);
        }
        for (index, cap) in call.caps.iter().enumerate() {
            buffer.write(CAPS_INDEX + index, cap.0);
        }
    }
    let mut registers = [0; REGISTER_MESSAGE_WORDS];
    for (register, word) in registers.iter_mut().zip(words) {
        *register = *word;
    }
    // Both at most their limits: the casts cannot truncate.
    let info = MessageInfo {
        label: call.message.label,
        length: u8::try_from(words.len()).unwrap_or(u8::MAX),
        caps: u8::try_from(call.caps.len()).unwrap_or(0),
    };
    Ok(RawCall { number: call.number, cptr: call.cptr.0, info: info.to_word(), reply: call.reply.0, words: registers })
}

/// The message the kernel left: words 0..3 from the registers, the rest
/// from `buffer` (without a buffer a longer message is cut to four words).
pub fn unpack(raw: &RawReturn, buffer: Option<&dyn WordBuffer>) -> Incoming {
    let info = MessageInfo::from_word(raw.info);
    let mut length = usize::from(info.length).min(MAX_MESSAGE_WORDS);
    if buffer.is_none() {
        length = length.min(REGISTER_MESSAGE_WORDS);
    }
    let message = Message::from_fn(info.label, length, |index| match raw.words.get(index) {
        Some(word) => *word,
        None => buffer.map_or(0, |buffer| buffer.read(index)),
    });
    Incoming { badge: raw.badge, message, caps: info.caps }
}

#[cfg(test)]
mod tests {
    use bulkhead_components::CPtr;
    use bulkhead_components::kernel::NO_CAP;

    use super::*;

    struct ArrayBuffer([u64; WORDS]);

    impl WordBuffer for ArrayBuffer {
        fn read(&self, index: usize) -> u64 {
            self.0[index]
        }

        fn write(&mut self, index: usize, value: u64) {
            self.0[index] = value;
        }
    }

    fn call<'a>(message: &'a Message, caps: &'a [CPtr]) -> Syscall<'a> {
        Syscall { number: 1, cptr: CPtr(9), message, caps, reply: NO_CAP }
    }

    #[test]
    fn short_messages_travel_in_registers_only() {
        let message = Message::new(0x16, &[1, 2, 3]);
        let raw = pack(&call(&message, &[]), None).unwrap();
        assert_eq!(raw, RawCall { number: 1, cptr: 9, info: (0x16 << 12) | 3, reply: 0, words: [1, 2, 3, 0] });
    }

    #[test]
    fn long_messages_and_capabilities_go_through_the_buffer() {
        let mut buffer = ArrayBuffer([0xdead; WORDS]);
        let words: Vec<u64> = (100..106).collect();
        let message = Message::new(4, &words);
        let raw = pack(&call(&message, &[CPtr(0), CPtr(33)]), Some(&mut buffer)).unwrap();
        assert_eq!(raw.words, [100, 101, 102, 103]);
        assert_eq!(MessageInfo::from_word(raw.info), MessageInfo { label: 4, length: 6, caps: 2 });
        assert_eq!(&buffer.0[..6], &[0xdead, 0xdead, 0xdead, 0xdead, 104, 105], "indices 0..3 untouched");
        assert_eq!(&buffer.0[120..123], &[0, 33, 0xdead]);
        assert_eq!(pack(&call(&message, &[]), None), Err(Error::NoIpcBuffer));
        assert_eq!(pack(&call(&Message::empty(1), &[CPtr(1)]), None), Err(Error::NoIpcBuffer));
        let four = [CPtr(1), CPtr(2), CPtr(3), CPtr(4)];
        assert_eq!(pack(&call(&Message::empty(1), &four), Some(&mut buffer)), Err(Error::NoIpcBuffer));
    }

    #[test]
    fn replies_are_read_from_registers_and_buffer() {
        let mut buffer = ArrayBuffer([0; WORDS]);
        buffer.0[4] = 44;
        buffer.0[5] = 55;
        let raw = RawReturn { badge: 0xc1, info: (7 << 12) | 6, words: [10, 11, 12, 13] };
        let incoming = unpack(&raw, Some(&buffer));
        assert_eq!(incoming.badge, 0xc1);
        assert_eq!(incoming.message, Message::new(7, &[10, 11, 12, 13, 44, 55]));
        assert_eq!(unpack(&raw, None).message.words(), [10, 11, 12, 13], "cut without a buffer");
        let short = RawReturn { badge: 0, info: 1, words: [42, 9, 9, 9] };
        assert_eq!(unpack(&short, Some(&buffer)).message.words(), [42]);
        let too_long = RawReturn { badge: 0, info: 127, words: [0; 4] };
        assert_eq!(unpack(&too_long, Some(&buffer)).message.words().len(), MAX_MESSAGE_WORDS);
    }
}
