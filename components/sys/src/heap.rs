//! The heap: `buddy_system_allocator` over a region the protection domain
//! mapped for itself (`bulkhead_components::heap::HeapRegion` checks it).
//! With the feature `global-allocator` on bare metal, [`HEAP`] is the
//! `#[global_allocator]`, so `alloc` works once [`Heap::init`] ran.
//!
//! The lock is a spin lock: a thread preempted while holding it makes every
//! other thread of the PD that allocates spin until it runs again, so PDs
//! whose threads have different priorities give each thread its own heap.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use buddy_system_allocator::LockedHeap;
use bulkhead_components::Error;
use bulkhead_components::abi::cap::Rights;
use bulkhead_components::abi::root_task::FIRST_FREE_ADDRESS;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::heap::{HeapRegion, PAGE_SIZE};
use bulkhead_components::invocation::attributes;

use crate::Sys;

/// Size classes up to 2^31 bytes.
const ORDER: usize = 32;

/// A heap over one region.
pub struct Heap {
    inner: LockedHeap<ORDER>,
}

/// The heap the global allocator uses (feature `global-allocator`).
#[cfg_attr(all(feature = "global-allocator", target_os = "none"), global_allocator)]
pub static HEAP: Heap = Heap::empty();

impl Heap {
    /// A heap with no memory yet: every allocation fails.
    #[must_use]
    pub const fn empty() -> Heap {
        Heap { inner: LockedHeap::empty() }
    }

    /// Gives the heap the region `[start, start + size)`.
    ///
    /// # Errors
    ///
    /// What [`HeapRegion::new`] finds wrong with the region;
    /// [`Error::IllegalOperation`] if the heap has memory already.
    ///
    /// # Safety
    ///
    /// 1. The region is mapped readable and writable for as long as the
    ///    heap is used, and
    /// 2. nothing else uses it: no Rust object, stack, IPC buffer or
    ///    [`MappedPage`](crate::mapped::MappedPage) lies in it, and no other
    ///    thread or protection domain can write it.
    pub unsafe fn init(&self, start: usize, size: usize) -> Result<HeapRegion, Error> {
        let region = HeapRegion::new(start, size)?;
        let mut heap = self.inner.lock();
        if heap.stats_total_bytes() != 0 {
            return Err(Error::IllegalOperation);
        }
        // SAFETY: the region is checked (page-aligned, non-empty, not
        // wrapping) and the caller promises it is mapped and unused.
        unsafe { heap.init(region.start(), region.size()) };
        Ok(region)
    }

    /// Maps `frames` (4 KiB frames with READ and WRITE) one after the other
    /// from `start` in `own_vspace`, which must be the calling thread's
    /// VSpace, and gives the heap those pages: the safe way to make a heap.
    /// Frame::Map refuses an address where anything is mapped, so no Rust
    /// object, stack or [`MappedPage`](crate::mapped::MappedPage) can be in
    /// the region, and no window can be mapped over it later
    /// (`crate::mapped` has the argument and the PD's one duty).
    ///
    /// # Errors
    ///
    /// [`Error::IllegalOperation`] if the heap has memory already,
    /// [`Error::InvalidArgument`] for a start below `FIRST_FREE_ADDRESS` or
    /// in a PD the loader started (it has its heap already),
    /// what [`HeapRegion::new`] finds wrong, or the kernel's code for a
    /// frame that would not map (the pages mapped before it stay mapped,
    /// unused).
    pub fn map_and_init(
        &self,
        sys: &mut Sys,
        own_vspace: Cap<kind::Pml4>,
        start: u64,
        frames: &[Cap<kind::Frame>],
    ) -> Result<HeapRegion, Error> {
        // A PD the loader started has its heap already; its regions lie
        // where this one would go, and SharedPage windows onto them must
        // alias no Rust object.
        if start < FIRST_FREE_ADDRESS || crate::entry::started_by_loader() {
            return Err(Error::InvalidArgument);
        }
        let address = usize::try_from(start).map_err(|_| Error::InvalidArgument)?;
        let size = frames.len().checked_mul(PAGE_SIZE).ok_or(Error::RangeError)?;
        let region = HeapRegion::new(address, size)?;
        // Held across the mapping, so that no other thread can init meanwhile.
        let mut heap = self.inner.lock();
        if heap.stats_total_bytes() != 0 {
            return Err(Error::IllegalOperation);
        }
        for (page, frame) in (start..).step_by(PAGE_SIZE).zip(frames) {
            frame.map(sys, own_vspace, page, Rights::READ | Rights::WRITE, attributes::DATA)?;
        }
        // SAFETY: every page of the checked region was just mapped readable
        // and writable by the kernel where nothing was mapped before, so
        // nothing else uses it (see above for the PD's duty).
        unsafe { heap.init(region.start(), region.size()) };
        Ok(region)
    }

    /// Bytes the heap manages.
    #[must_use]
    pub fn total_bytes(&self) -> usize {
        self.inner.lock().stats_total_bytes()
    }

    /// Bytes handed out, rounded up to the buddy sizes.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.inner.lock().stats_alloc_actual()
    }

    /// Allocates `layout`.
    ///
    /// # Errors
    ///
    /// [`Error::NotEnoughMemory`] when no block fits.
    pub fn allocate(&self, layout: Layout) -> Result<NonNull<u8>, Error> {
        self.inner.lock().alloc(layout).map_err(|()| Error::NotEnoughMemory)
    }

    /// Gives back a block.
    ///
    /// # Safety
    ///
    /// `block` came from [`allocate`](Self::allocate) on this heap with
    /// this `layout` and is not used afterwards.
    pub unsafe fn deallocate(&self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract is the allocator's.
        unsafe { self.inner.lock().dealloc(block, layout) }
    }
}

// SAFETY: `LockedHeap`'s own `GlobalAlloc` implementation upholds the
// contract; this only forwards to it.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(block, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Page-aligned memory from the host's allocator, as a PD's region.
    struct Region {
        start: NonNull<u8>,
        layout: Layout,
    }

    impl Region {
        fn new(pages: usize) -> Region {
            // Aligned to its size, so that the buddies can merge into one block.
            let layout = Layout::from_size_align(pages * 4096, pages * 4096).unwrap();
            // SAFETY: the layout is non-zero.
            let start = NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap();
            Region { start, layout }
        }

        fn address(&self) -> usize {
            self.start.as_ptr().expose_provenance()
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.start.as_ptr(), self.layout) }
        }
    }

    #[test]
    fn the_heap_hands_out_its_region_and_takes_it_back() {
        let memory = Region::new(4);
        let heap = Heap::empty();
        let small = Layout::from_size_align(24, 8).unwrap();
        assert_eq!(heap.allocate(small), Err(Error::NotEnoughMemory), "no memory before init");
        // SAFETY: the region is ours, mapped and unused until dropped after the heap.
        let region = unsafe { heap.init(memory.address(), 4 * 4096) }.unwrap();
        assert_eq!((region.start(), region.pages()), (memory.address(), 4));
        assert_eq!(heap.total_bytes(), 4 * 4096);
        // SAFETY: as above.
        assert_eq!(unsafe { heap.init(memory.address(), 4096) }, Err(Error::IllegalOperation), "one region");

        let block = heap.allocate(small).unwrap();
        let address = block.as_ptr().addr();
        assert!((region.start()..region.end()).contains(&address) && address.is_multiple_of(8));
        assert_eq!(heap.allocated_bytes(), 32, "rounded up to a buddy size");
        let page = Layout::from_size_align(4096, 4096).unwrap();
        let big = heap.allocate(page).unwrap();
        assert_eq!(big.as_ptr().addr() % 4096, 0);
        assert_eq!(heap.allocate(Layout::from_size_align(4 * 4096, 8).unwrap()), Err(Error::NotEnoughMemory));
        // SAFETY: came from this heap with this layout.
        unsafe { heap.deallocate(block, small) };
        // SAFETY: likewise.
        unsafe { heap.deallocate(big, page) };
        assert_eq!(heap.allocated_bytes(), 0);
        let whole = heap.allocate(Layout::from_size_align(4 * 4096, 8).unwrap()).unwrap();
        assert_eq!(whole.as_ptr().addr(), region.start(), "freed blocks merge back into the whole region");
    }

    #[test]
    fn bad_regions_are_refused_before_anything_is_written() {
        let heap = Heap::empty();
        // SAFETY: refused regions are never touched.
        let misaligned = unsafe { heap.init(0x9000_0800, 4096) };
        assert_eq!(misaligned.unwrap_err(), Error::AlignmentError);
        // SAFETY: likewise.
        let empty = unsafe { heap.init(0x9000_0000, 0) };
        assert_eq!(empty.unwrap_err(), Error::RangeError);
        assert_eq!(heap.total_bytes(), 0);
    }
}
