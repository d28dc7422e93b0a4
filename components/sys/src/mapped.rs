//! Volatile windows onto 4 KiB frames a thread mapped into its own
//! VSpace, so that code without `unsafe` can read and write memory it
//! obtained by capability (a shared buffer, a child's image page).
//!
//! Soundness rests on the kernel: [`MappedPage::map`] maps the frame
//! through this crate, and Frame::Map refuses an address where anything is
//! mapped already (DeleteFirst) or a larger page covers it (FailedLookup),
//! so no Rust object, stack or other window can be there. The window is
//! restricted to `[root_task::FIRST_FREE_ADDRESS, USER_TOP)`, above the
//! root task's image, stack, IPC buffer and info page, and it only maps
//! into the VSpace the caller says is its own. One thing stays the PD's
//! discipline: the VSpace capability passed must be the thread's own (and
//! the caller of the unsafe [`Heap::init`](crate::heap::Heap::init) must
//! not give it a window's pages; the safe
//! [`Heap::map_and_init`](crate::heap::Heap::map_and_init) maps its own). A
//! window whose frame is later unmapped by other means faults on access:
//! the thread is stopped, nothing else is written.

use bulkhead_components::Error;
use bulkhead_components::abi::cap::Rights;
use bulkhead_components::abi::root_task::FIRST_FREE_ADDRESS;
use bulkhead_components::abi::vspace::USER_TOP;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::invocation::attributes;

use crate::Sys;

/// Words in a page.
pub const WORDS: usize = 512;

/// A frame mapped readable and writable at `address` in the caller's VSpace.
#[derive(Debug)]
pub struct MappedPage {
    frame: Cap<kind::Frame>,
    base: *mut u64,
}

impl MappedPage {
    /// Maps `frame` (a 4 KiB frame with READ and WRITE) at `address` in
    /// `own_vspace`, which must be the calling thread's VSpace, not
    /// executable, write-back.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an address below
    /// `FIRST_FREE_ADDRESS` or past the user half, or the kernel's code.
    pub fn map(
        sys: &mut Sys,
        frame: Cap<kind::Frame>,
        own_vspace: Cap<kind::Pml4>,
        address: u64,
    ) -> Result<MappedPage, Error> {
        if !(FIRST_FREE_ADDRESS..=USER_TOP - 4096).contains(&address) {
            return Err(Error::InvalidArgument);
        }
        let base = usize::try_from(address).map_err(|_| Error::InvalidArgument)?;
        frame.map(sys, own_vspace, address, Rights::READ | Rights::WRITE, attributes::DATA)?;
        // The page is memory from outside the program: exposed provenance.
        Ok(MappedPage { frame, base: core::ptr::with_exposed_provenance_mut(base) })
    }

    /// The word at `index`, if inside the page.
    #[must_use]
    pub fn read(&self, index: usize) -> Option<u64> {
        if index >= WORDS {
            return None;
        }
        let word = self.base.wrapping_add(index);
        // SAFETY: the kernel mapped this page readable at `base` where
        // nothing was mapped before (module documentation); the index is
        // inside it; volatile, as another mapping of the frame may write it.
        Some(unsafe { word.read_volatile() })
    }

    /// Writes the word at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] for an index past the page.
    pub fn write(&mut self, index: usize, value: u64) -> Result<(), Error> {
        if index >= WORDS {
            return Err(Error::RangeError);
        }
        let word = self.base.wrapping_add(index);
        // SAFETY: as for `read`; the page was mapped writable.
        unsafe { word.write_volatile(value) };
        Ok(())
    }

    /// Unmaps the frame and gives its capability back.
    ///
    /// # Errors
    ///
    /// The kernel's code (then the page stays mapped and usable, so the
    /// window is handed back with the error).
    pub fn unmap(self, sys: &mut Sys) -> Result<Cap<kind::Frame>, (Error, MappedPage)> {
        match self.frame.unmap(sys) {
            Ok(()) => Ok(self.frame),
            Err(error) => Err((error, self)),
        }
    }
}

/// A volatile window onto one 4 KiB page of a region the loader mapped
/// into this protection domain from its manifest (`regions::NAME` in the
/// generated names). Regions lie at or above `layout::RESERVED_END`, where
/// the loader's layout puts no image, stack, IPC buffer, info page or
/// heap, so no Rust object is there; a page that is not mapped, or a write
/// to a read-only one, faults and stops the thread, nothing else.
#[derive(Debug)]
pub struct SharedPage {
    base: *mut u64,
}

impl SharedPage {
    /// The page at `address`: `None` unless it is page-aligned, at or
    /// above the layout's end and inside the user half.
    #[must_use]
    pub fn new(address: u64) -> Option<SharedPage> {
        let allowed = bulkhead_capdl_spec::layout::RESERVED_END..=USER_TOP - 4096;
        if !allowed.contains(&address) || !address.is_multiple_of(4096) {
            return None;
        }
        let base = usize::try_from(address).ok()?;
        // Memory the loader mapped, from outside the program: exposed
        // provenance.
        Some(SharedPage { base: core::ptr::with_exposed_provenance_mut(base) })
    }

    /// The word at `index`, if inside the page.
    #[must_use]
    pub fn read(&self, index: usize) -> Option<u64> {
        if index >= WORDS {
            return None;
        }
        let word = self.base.wrapping_add(index);
        // SAFETY: the address is in the region range, where only the
        // loader's mappings of manifest regions lie (type documentation):
        // no Rust object is there, so a volatile read through a raw pointer
        // aliases nothing; the index is inside the page; if the page is not
        // mapped, the read faults and the thread is stopped.
        Some(unsafe { word.read_volatile() })
    }

    /// Writes the word at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] for an index past the page.
    pub fn write(&mut self, index: usize, value: u64) -> Result<(), Error> {
        if index >= WORDS {
            return Err(Error::RangeError);
        }
        let word = self.base.wrapping_add(index);
        // SAFETY: as for `read`; a write to a page mapped read-only faults
        // and stops the thread.
        unsafe { word.write_volatile(value) };
        Ok(())
    }
}
