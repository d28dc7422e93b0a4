//! Typed physical addresses, ranges and frames.
//!
//! Every address the boot code handles comes from the bootloader or the
//! firmware, so nothing here can overflow or panic: arithmetic that could wrap
//! returns `Option`, and a range whose end lies below its start is simply
//! empty.

use core::fmt;

/// The size of one physical frame (and of the smallest x86-64 page), in bytes.
pub const FRAME_SIZE: u64 = 4096;

/// A physical address.
///
/// A plain number: it says nothing about whether memory exists there or who
/// owns it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Address zero.
    pub const ZERO: Self = Self(0);

    /// Wraps a raw physical address.
    #[must_use]
    pub const fn new(address: u64) -> Self {
        Self(address)
    }

    /// The raw address.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + offset_bytes`, or `None` if that passes `u64::MAX`.
    #[must_use]
    pub const fn checked_add(self, offset_bytes: u64) -> Option<Self> {
        match self.0.checked_add(offset_bytes) {
            Some(address) => Some(Self(address)),
            None => None,
        }
    }

    /// `self - offset_bytes`, or `None` if that goes below zero.
    #[must_use]
    pub const fn checked_sub(self, offset_bytes: u64) -> Option<Self> {
        match self.0.checked_sub(offset_bytes) {
            Some(address) => Some(Self(address)),
            None => None,
        }
    }

    /// The highest multiple of `align_bytes` at or below `self`, or `None` if
    /// `align_bytes` is not a power of two.
    #[must_use]
    pub const fn align_down(self, align_bytes: u64) -> Option<Self> {
        if !align_bytes.is_power_of_two() {
            return None;
        }
        Some(Self(self.0 & !(align_bytes - 1)))
    }

    /// The lowest multiple of `align_bytes` at or above `self`, or `None` if
    /// `align_bytes` is not a power of two or that multiple passes `u64::MAX`.
    #[must_use]
    pub const fn align_up(self, align_bytes: u64) -> Option<Self> {
        if !align_bytes.is_power_of_two() {
            return None;
        }
        match self.0.checked_add(align_bytes - 1) {
            Some(bumped) => Some(Self(bumped & !(align_bytes - 1))),
            None => None,
        }
    }

    /// Whether `self` is a multiple of `align_bytes`; always `false` if
    /// `align_bytes` is not a power of two.
    #[must_use]
    pub const fn is_aligned(self, align_bytes: u64) -> bool {
        align_bytes.is_power_of_two() && self.0 & (align_bytes - 1) == 0
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:#x}", self.0)
    }
}

/// A half-open range of physical addresses, `start..end`.
///
/// A range whose `end` is at or below its `start` is empty; no method treats
/// it as wrapping around.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysRange {
    /// The first address in the range.
    pub start: PhysAddr,
    /// The first address past the range.
    pub end: PhysAddr,
}

impl PhysRange {
    /// The range `start..end`.
    #[must_use]
    pub const fn new(start: PhysAddr, end: PhysAddr) -> Self {
        Self { start, end }
    }

    /// The range of `len_bytes` bytes from `start`, or `None` if its end would
    /// pass `u64::MAX`.
    #[must_use]
    pub const fn from_start_len(start: PhysAddr, len_bytes: u64) -> Option<Self> {
        match start.checked_add(len_bytes) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// The number of bytes in the range (zero if it is empty).
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether the range holds no address.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.end.0 <= self.start.0
    }

    /// Whether `address` lies in the range.
    #[must_use]
    pub const fn contains(&self, address: PhysAddr) -> bool {
        self.start.0 <= address.0 && address.0 < self.end.0
    }

    /// Whether the two ranges share at least one address.
    #[must_use]
    pub const fn overlaps(&self, other: &Self) -> bool {
        !self.is_empty() && !other.is_empty() && self.start.0 < other.end.0 && other.start.0 < self.end.0
    }

    /// The addresses in both ranges, or `None` if they share none.
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        let intersection = Self { start: self.start.max(other.start), end: self.end.min(other.end) };
        (!intersection.is_empty()).then_some(intersection)
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PhysRange({:#x}..{:#x})", self.start.0, self.end.0)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

/// One 4 KiB physical frame: its start is a multiple of [`FRAME_SIZE`] and its
/// end is representable, so [`PhysFrame::range`] can never overflow.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysFrame {
    start: PhysAddr,
}

impl PhysFrame {
    /// The frame that starts at `start`, or `None` if `start` is not
    /// 4 KiB-aligned or the frame would end past `u64::MAX`.
    #[must_use]
    pub const fn from_start(start: PhysAddr) -> Option<Self> {
        if !start.is_aligned(FRAME_SIZE) || start.checked_add(FRAME_SIZE).is_none() {
            return None;
        }
        Some(Self { start })
    }

    /// The frame's first address.
    #[must_use]
    pub const fn start(self) -> PhysAddr {
        self.start
    }

    /// The frame's addresses, [`FRAME_SIZE`] bytes from its start.
    #[must_use]
    pub const fn range(self) -> PhysRange {
        // The constructor checked that the end is representable.
        PhysRange { start: self.start, end: PhysAddr(self.start.0.saturating_add(FRAME_SIZE)) }
    }
}

impl fmt::Debug for PhysFrame {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PhysFrame({:#x})", self.start.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(PhysAddr::new(5).checked_add(3), Some(PhysAddr::new(8)));
        assert_eq!(PhysAddr::ZERO.checked_sub(1), None);
        assert_eq!(PhysAddr::new(u64::MAX).align_up(FRAME_SIZE), None);
        assert_eq!(PhysRange::from_start_len(PhysAddr::new(u64::MAX), 1), None);
    }

    #[test]
    fn alignment() {
        let address = PhysAddr::new(0x1234);
        assert_eq!(address.align_down(FRAME_SIZE), Some(PhysAddr::new(0x1000)));
        assert_eq!(address.align_up(FRAME_SIZE), Some(PhysAddr::new(0x2000)));
        assert_eq!(PhysAddr::new(0x2000).align_up(FRAME_SIZE), Some(PhysAddr::new(0x2000)));
        assert_eq!(address.align_down(3), None);
        assert_eq!(address.align_up(0), None);
        assert!(PhysAddr::new(0x3000).is_aligned(FRAME_SIZE));
        assert!(!address.is_aligned(FRAME_SIZE));
        assert!(!PhysAddr::ZERO.is_aligned(0));
    }

    #[test]
    fn ranges() {
        let low = range(0x1000, 0x3000);
        let high = range(0x2000, 0x5000);
        assert_eq!(low.len(), 0x2000);
        assert!(low.overlaps(&high));
        assert!(!low.overlaps(&range(0x3000, 0x4000)));
        assert_eq!(low.intersect(&high), Some(range(0x2000, 0x3000)));
        assert_eq!(low.intersect(&range(0x3000, 0x4000)), None);
        assert!(low.contains(PhysAddr::new(0x2fff)));
        assert!(!low.contains(PhysAddr::new(0x3000)));
    }

    #[test]
    fn inverted_ranges_are_empty() {
        let inverted = range(0x5000, 0x1000);
        assert!(inverted.is_empty());
        assert_eq!(inverted.len(), 0);
        assert!(!inverted.overlaps(&range(0, u64::MAX)));
        assert!(!inverted.contains(PhysAddr::new(0x3000)));
        assert_eq!(inverted.intersect(&range(0, u64::MAX)), None);
    }

    #[test]
    fn frames_must_be_aligned_and_end_in_range() {
        assert!(PhysFrame::from_start(PhysAddr::new(0x1001)).is_none());
        assert!(PhysFrame::from_start(PhysAddr::new(!0xfff)).is_none());
        let frame = PhysFrame::from_start(PhysAddr::new(0x7000));
        assert_eq!(frame.map(PhysFrame::range), Some(range(0x7000, 0x8000)));
    }
}
