//! A bounded first-in first-out byte queue in a fixed array, for the
//! device models' byte streams (the UART's FIFOs and output, the virtio
//! console's input and output). No allocation: a guest can fill it, never
//! grow it.

/// A first-in first-out queue of at most `CAPACITY` bytes in a fixed
/// array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ByteQueue<const CAPACITY: usize> {
    bytes: [u8; CAPACITY],
    /// Where the oldest byte is (below `CAPACITY`).
    head: usize,
    /// How many bytes are queued (at most `CAPACITY`).
    len: usize,
}

impl<const CAPACITY: usize> ByteQueue<CAPACITY> {
    /// An empty queue.
    pub(crate) const fn new() -> Self {
        const { assert!(CAPACITY > 0, "a queue holds at least one byte") };
        ByteQueue { bytes: [0; CAPACITY], head: 0, len: 0 }
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `byte`, or gives `false` if the queue is full.
    pub(crate) fn push(&mut self, byte: u8) -> bool {
        if self.len >= CAPACITY {
            return false;
        }
        self.bytes[(self.head + self.len) % CAPACITY] = byte;
        self.len += 1;
        true
    }

    /// Takes the oldest byte.
    pub(crate) fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % CAPACITY;
        self.len -= 1;
        Some(byte)
    }

    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Copies the oldest bytes, as many as fit, into `out` without taking
    /// them; how many.
    pub(crate) fn peek_into(&self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.len);
        for (offset, slot) in out[..count].iter_mut().enumerate() {
            *slot = self.bytes[(self.head + offset) % CAPACITY];
        }
        count
    }

    /// Drops the `count` oldest bytes (all of them if fewer are queued).
    pub(crate) fn discard(&mut self, count: usize) {
        let count = count.min(self.len);
        self.head = (self.head + count) % CAPACITY;
        self.len -= count;
    }
}
