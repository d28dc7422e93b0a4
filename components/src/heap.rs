//! The region a protection domain gives its heap: checked here, without
//! touching memory, so that the bookkeeping is host-tested; the allocator
//! itself (`buddy_system_allocator` over that region) is in `bulkhead-sys`,
//! which may write to memory.

use crate::error::Error;

/// The granule of heap regions: the PD maps them page by page.
pub const PAGE_SIZE: usize = 4096;

/// A page-aligned, non-empty range of the user half the PD has mapped,
/// readable and writable, for its heap alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapRegion {
    start: usize,
    size: usize,
}

impl HeapRegion {
    /// Checks `[start, start + size)`.
    ///
    /// # Errors
    ///
    /// [`Error::AlignmentError`] for a start or size that is not a whole
    /// number of pages, [`Error::RangeError`] for an empty region, page 0,
    /// or one that wraps or leaves the user half.
    pub fn new(start: usize, size: usize) -> Result<HeapRegion, Error> {
        if !start.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::AlignmentError);
        }
        let end = start.checked_add(size).ok_or(Error::RangeError)?;
        let user_top = usize::try_from(kernel_core::vspace::USER_TOP).map_err(|_| Error::RangeError)?;
        if size == 0 || start == 0 || end > user_top {
            return Err(Error::RangeError);
        }
        Ok(HeapRegion { start, size })
    }

    /// Its first byte.
    #[must_use]
    pub const fn start(&self) -> usize {
        self.start
    }

    /// Its size in bytes.
    #[must_use]
    pub const fn size(&self) -> usize {
        self.size
    }

    /// The first byte past it.
    #[must_use]
    pub const fn end(&self) -> usize {
        self.start + self.size
    }

    /// How many pages the PD maps for it.
    #[must_use]
    pub const fn pages(&self) -> usize {
        self.size / PAGE_SIZE
    }

    /// The address of page `index`, if it is inside.
    #[must_use]
    pub const fn page(&self, index: usize) -> Option<usize> {
        if index < self.pages() { Some(self.start + index * PAGE_SIZE) } else { None }
    }

    /// Whether the two regions share a byte.
    #[must_use]
    pub const fn overlaps(&self, other: &HeapRegion) -> bool {
        self.start < other.end() && other.start < self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_whole_pages_of_the_user_half() {
        let region = HeapRegion::new(0x9000_0000, 0x4000).unwrap();
        assert_eq!(
            (region.start(), region.size(), region.end(), region.pages()),
            (0x9000_0000, 0x4000, 0x9000_4000, 4)
        );
        assert_eq!(region.page(3), Some(0x9000_3000));
        assert_eq!(region.page(4), None);
        assert_eq!(HeapRegion::new(0x9000_0800, 0x1000), Err(Error::AlignmentError));
        assert_eq!(HeapRegion::new(0x9000_0000, 0x800), Err(Error::AlignmentError));
        assert_eq!(HeapRegion::new(0x9000_0000, 0), Err(Error::RangeError));
        assert_eq!(HeapRegion::new(0, 0x1000), Err(Error::RangeError));
        assert_eq!(HeapRegion::new((1 << 47) - 0x1000, 0x2000), Err(Error::RangeError));
        assert!(HeapRegion::new((1 << 47) - 0x1000, 0x1000).is_ok());
        assert_eq!(HeapRegion::new(usize::MAX - 0xfff, 0x2000), Err(Error::RangeError));
        let next = HeapRegion::new(0x9000_4000, 0x1000).unwrap();
        assert!(!region.overlaps(&next));
        assert!(region.overlaps(&HeapRegion::new(0x9000_3000, 0x2000).unwrap()));
    }
}
