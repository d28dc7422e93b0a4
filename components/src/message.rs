//! Messages as a server sees them.

use kernel_core::ipc::{MAX_MESSAGE_WORDS, MessageInfo};

/// A message: a label and up to 120 words. Only the words it has are
/// written (the storage is not zeroed first): building a short message
/// costs its length, not the kernel's maximum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The protocol's operation (or a result code, in a reply from the kernel).
    pub label: u64,
    words: heapless::Vec<u64, MAX_MESSAGE_WORDS>,
}

impl Message {
    /// A message with `label` and `words` (words past 120 are cut off, and
    /// the length says so).
    #[must_use]
    pub fn new(label: u64, words: &[u64]) -> Message {
        let length = words.len().min(MAX_MESSAGE_WORDS);
        let mut stored = heapless::Vec::new();
        // At most the capacity: cannot fail.
        let _ = stored.extend_from_slice(&words[..length]);
        Message { label, words: stored }
    }

    /// A message with `label` and `length` words (at most 120), word `i`
    /// being `word(i)`: builds it in place, with no intermediate array.
    #[must_use]
    pub fn from_fn(label: u64, length: usize, mut word: impl FnMut(usize) -> u64) -> Message {
        let mut stored = heapless::Vec::new();
        for index in 0..length.min(MAX_MESSAGE_WORDS) {
            // Below the capacity: cannot fail.
            let _ = stored.push(word(index));
        }
        Message { label, words: stored }
    }

    /// An empty message with `label`.
    #[must_use]
    pub fn empty(label: u64) -> Message {
        Message::new(label, &[])
    }

    /// The words.
    #[must_use]
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The word at `index`, if the message is that long: servers read
    /// client messages through this, never by indexing.
    #[must_use]
    pub fn word(&self, index: usize) -> Option<u64> {
        self.words().get(index).copied()
    }

    /// The info word the kernel reads (no capabilities attached).
    #[must_use]
    pub fn info(&self) -> MessageInfo {
        // At most 120: fits.
        let length = u8::try_from(self.words.len()).unwrap_or(u8::MAX);
        MessageInfo { label: self.label, length, caps: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_place_as_from_a_slice() {
        let from_slice = Message::new(5, &[10, 11, 12]);
        assert_eq!(Message::from_fn(5, 3, |index| 10 + index as u64), from_slice);
        assert_eq!(Message::from_fn(5, 500, |_| 1).words().len(), MAX_MESSAGE_WORDS);
    }

    #[test]
    fn long_input_is_cut_at_the_kernel_limit() {
        let words = [7_u64; 200];
        let message = Message::new(3, &words);
        assert_eq!(message.words().len(), MAX_MESSAGE_WORDS);
        assert_eq!(message.info().length, 120);
        assert_eq!(message.word(119), Some(7));
        assert_eq!(message.word(120), None);
    }

    #[test]
    fn the_info_word_round_trips_through_its_register_encoding() {
        let info = Message::new(0xabc, &[1, 2, 3]).info();
        assert_eq!(MessageInfo::from_word(info.to_word()), info);
    }
}
