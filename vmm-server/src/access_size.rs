//! The width of a port or memory access.

/// How many bytes one port or memory access moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessSize {
    /// One byte.
    Byte = 1,
    /// Two bytes.
    Word = 2,
    /// Four bytes.
    Dword = 4,
    /// Eight bytes (memory only: ports move at most four).
    Qword = 8,
}

impl AccessSize {
    /// The size of an access of `bytes` bytes, if there is one.
    #[must_use]
    pub const fn from_bytes(bytes: u64) -> Option<AccessSize> {
        match bytes {
            1 => Some(AccessSize::Byte),
            2 => Some(AccessSize::Word),
            4 => Some(AccessSize::Dword),
            8 => Some(AccessSize::Qword),
            _ => None,
        }
    }

    /// Its width in bytes.
    #[must_use]
    pub const fn bytes(self) -> usize {
        self as usize
    }

    /// The mask of its value bits (0xff for a byte).
    #[must_use]
    pub const fn mask(self) -> u64 {
        match self {
            AccessSize::Qword => u64::MAX,
            size => (1 << (8 * size as u64)) - 1,
        }
    }

    /// `value` sign-extended from this width to 64 bits.
    #[must_use]
    pub const fn sign_extend(self, value: u64) -> u64 {
        let unused = 64 - 8 * self as u32;
        ((value << unused).cast_signed() >> unused).cast_unsigned()
    }
}

#[cfg(test)]
mod tests;
