//! Handing out empty slots of a CNode, first free first: what a root task
//! does with the slots the kernel left it.

use crate::error::Error;

/// Empty slots `[next, end)` of one CNode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotAllocator {
    next: u64,
    end: u64,
}

impl SlotAllocator {
    /// Slots from `first_free` up to the end of a CNode of `radix` bits.
    #[must_use]
    pub fn new(first_free: u64, radix: u64) -> SlotAllocator {
        let end = if radix >= 64 { u64::MAX } else { 1 << radix };
        SlotAllocator { next: first_free.min(end), end }
    }

    /// The next `count` consecutive empty slots; returns the first.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] when fewer are left (nothing is taken).
    pub fn take(&mut self, count: u64) -> Result<u64, Error> {
        let first = self.next;
        let end = first.checked_add(count).filter(|end| *end <= self.end).ok_or(Error::RangeError)?;
        self.next = end;
        Ok(first)
    }

    /// One empty slot.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] when none is left.
    pub fn take_one(&mut self) -> Result<u64, Error> {
        self.take(1)
    }

    /// How many are left.
    #[must_use]
    pub const fn remaining(&self) -> u64 {
        self.end - self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_at_the_end_of_the_cnode() {
        let mut slots = SlotAllocator::new(32, 6);
        assert_eq!(slots.take_one(), Ok(32));
        assert_eq!(slots.take(30), Ok(33));
        assert_eq!(slots.remaining(), 1);
        assert_eq!(slots.take(2), Err(Error::RangeError));
        assert_eq!(slots.take_one(), Ok(63));
        assert_eq!(slots.take_one(), Err(Error::RangeError));
        assert_eq!(SlotAllocator::new(300, 8).remaining(), 0);
        assert_eq!(SlotAllocator::new(0, 64).take(u64::MAX), Ok(0));
    }
}
