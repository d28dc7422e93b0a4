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
//! not give it a window's pages; the frame given to
//! [`MappedPage::map_large`] must be a 2 MiB frame, and nothing else may be
//! mapped into its 2 MiB while the window lives; the safe
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
/// Words in a 2 MiB page.
pub const LARGE_WORDS: usize = 512 * 512;

/// A frame (4 KiB, or 2 MiB through [`MappedPage::map_large`]) mapped
/// readable and writable at `address` in the caller's VSpace.
#[derive(Debug)]
pub struct MappedPage {
    frame: Cap<kind::Frame>,
    window: Window,
}

/// Volatile word access to one page at `base`. Invariant (the
/// constructors of [`MappedPage`] and [`SharedPage`] establish it): the
/// page lies where no Rust object, stack, heap or IPC buffer lives, so raw
/// volatile accesses alias nothing; if it is not mapped (or not writable,
/// for a write), the access faults and the thread is stopped.
#[derive(Debug)]
struct Window {
    base: *mut u64,
    /// Its size in words: [`WORDS`] or [`LARGE_WORDS`].
    words: usize,
}

impl Window {
    fn read(&self, index: usize) -> Option<u64> {
        if index >= self.words {
            return None;
        }
        let word = self.base.wrapping_add(index);
        // SAFETY: the type's invariant; the index is inside the page;
        // volatile, as another mapping of the frame may write it.
        Some(unsafe { word.read_volatile() })
    }

    fn write(&mut self, index: usize, value: u64) -> Result<(), Error> {
        if index >= self.words {
            return Err(Error::RangeError);
        }
        let word = self.base.wrapping_add(index);
        // SAFETY: the type's invariant; the index is inside the page.
        unsafe { word.write_volatile(value) };
        Ok(())
    }
}

impl MappedPage {
    /// Maps `frame` (a 4 KiB frame with READ and WRITE) at `address` in
    /// `own_vspace`, which must be the calling thread's VSpace, not
    /// executable, write-back.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an address below
    /// `FIRST_FREE_ADDRESS` or past the user half, or in a PD the loader
    /// started (its regions live up there, and [`SharedPage`] windows onto
    /// them must alias nothing), or the kernel's code.
    pub fn map(
        sys: &mut Sys,
        frame: Cap<kind::Frame>,
        own_vspace: Cap<kind::Pml4>,
        address: u64,
    ) -> Result<MappedPage, Error> {
        Self::map_words(sys, frame, own_vspace, address, WORDS)
    }

    /// As [`MappedPage::map`] for a 2 MiB frame, at a 2 MiB-aligned
    /// `address` (the caller made the page directory that covers it).
    ///
    /// # Errors
    ///
    /// As [`MappedPage::map`]; the kernel refuses a frame that is not
    /// 2 MiB or a misaligned address.
    pub fn map_large(
        sys: &mut Sys,
        frame: Cap<kind::Frame>,
        own_vspace: Cap<kind::Pml4>,
        address: u64,
    ) -> Result<MappedPage, Error> {
        Self::map_words(sys, frame, own_vspace, address, LARGE_WORDS)
    }

    fn map_words(
        sys: &mut Sys,
        frame: Cap<kind::Frame>,
        own_vspace: Cap<kind::Pml4>,
        address: u64,
        words: usize,
    ) -> Result<MappedPage, Error> {
        let bytes = (words * 8) as u64;
        let allowed = FIRST_FREE_ADDRESS..=USER_TOP - bytes;
        if !allowed.contains(&address) || !address.is_multiple_of(bytes) || crate::entry::started_by_loader() {
            return Err(Error::InvalidArgument);
        }
        let base = usize::try_from(address).map_err(|_| Error::InvalidArgument)?;
        // The kernel maps a frame as a page of the frame's own size. A
        // 4 KiB window onto a larger frame covers part of it; a 2 MiB window
        // onto a 4 KiB frame is the caller's discipline (module
        // documentation): the rest of its 2 MiB is unmapped, and faults.
        frame.map(sys, own_vspace, address, Rights::READ | Rights::WRITE, attributes::DATA)?;
        // The page is memory from outside the program: exposed provenance.
        // The kernel mapped the page where nothing was mapped before
        // (module documentation): the window's invariant holds.
        Ok(MappedPage { frame, window: Window { base: core::ptr::with_exposed_provenance_mut(base), words } })
    }

    /// The word at `index`, if inside the page.
    #[must_use]
    pub fn read(&self, index: usize) -> Option<u64> {
        self.window.read(index)
    }

    /// Writes the word at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] for an index past the page.
    pub fn write(&mut self, index: usize, value: u64) -> Result<(), Error> {
        self.window.write(index, value)
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
    window: Window,
}

impl SharedPage {
    /// The page at `address`: `None` unless the thread is a PD the loader
    /// started ([`pd_entry!`](crate::pd_entry!)) and the address is
    /// page-aligned, at or above the layout's end and inside the user half.
    #[must_use]
    pub fn new(address: u64) -> Option<SharedPage> {
        // Only a PD the loader started has that layout: a root task maps
        // its own pages (and its heap) up there.
        if !crate::entry::started_by_loader() {
            return None;
        }
        let allowed = bulkhead_capdl_spec::layout::RESERVED_END..=USER_TOP - 4096;
        if !allowed.contains(&address) || !address.is_multiple_of(4096) {
            return None;
        }
        let base = usize::try_from(address).ok()?;
        // Memory the loader mapped, from outside the program: exposed
        // provenance. Regions lie above the PD's own layout: the window's
        // invariant holds.
        Some(SharedPage { window: Window { base: core::ptr::with_exposed_provenance_mut(base), words: WORDS } })
    }

    /// The word at `index`, if inside the page.
    #[must_use]
    pub fn read(&self, index: usize) -> Option<u64> {
        self.window.read(index)
    }

    /// Writes the word at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] for an index past the page.
    pub fn write(&mut self, index: usize, value: u64) -> Result<(), Error> {
        self.window.write(index, value)
    }
}

/// A volatile, byte-addressed window onto a run of pages the loader mapped
/// into this protection domain from its manifest, end to end (a guest's
/// memory as its VMM sees it, `docs/capdl.md`). Every access is a volatile
/// access of exactly the bytes asked for: another mapping of the same
/// frames (the guest, a device-model PD) may read and write them at any
/// time, so a write never rewrites bytes beside its own. The same
/// invariant as [`SharedPage`]'s holds for every page of the run.
#[derive(Debug)]
pub struct SharedRegion {
    base: *mut u8,
    bytes: u64,
}

impl SharedRegion {
    /// The `bytes` from `address` on: `None` unless the thread is a PD the
    /// loader started and the run is page-aligned, whole pages, at or
    /// above the layout's end and inside the user half.
    #[must_use]
    pub fn new(address: u64, bytes: u64) -> Option<SharedRegion> {
        if !crate::entry::started_by_loader() || !region_allowed(address, bytes) {
            return None;
        }
        let base = usize::try_from(address).ok()?;
        // As for `SharedPage::new`: memory the loader mapped, from outside
        // the program (exposed provenance), above the PD's own layout.
        Some(SharedRegion { base: core::ptr::with_exposed_provenance_mut(base), bytes })
    }

    /// Its length in bytes.
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether it has no bytes.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The window's byte `offset` if `count` bytes from there are inside.
    fn at(&self, offset: u64, count: usize) -> Option<*mut u8> {
        let end = offset.checked_add(u64::try_from(count).ok()?)?;
        if end > self.bytes {
            return None;
        }
        Some(self.base.wrapping_add(usize::try_from(offset).ok()?))
    }

    /// Copies the bytes from `offset` on into `bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] if they reach past the region (nothing read).
    pub fn read(&self, offset: u64, bytes: &mut [u8]) -> Result<(), Error> {
        let source = self.at(offset, bytes.len()).ok_or(Error::RangeError)?;
        // SAFETY: the type's invariant; the bytes are inside the region
        // (checked).
        unsafe { read_volatile_bytes(source, bytes) };
        Ok(())
    }

    /// Copies `bytes` into the region from `offset` on.
    ///
    /// # Errors
    ///
    /// [`Error::RangeError`] if they reach past the region (nothing
    /// written).
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let target = self.at(offset, bytes.len()).ok_or(Error::RangeError)?;
        // SAFETY: the type's invariant; the bytes are inside the region
        // (checked), and a page a write faults on stops the thread.
        unsafe { write_volatile_bytes(target, bytes) };
        Ok(())
    }
}

/// How many of `bytes.len()` bytes from `address` come before its first
/// 8-byte boundary, and how many whole aligned words follow them.
fn word_split(address: *const u8, length: usize) -> (usize, usize) {
    let head = address.align_offset(8).min(length);
    (head, (length - head) / 8)
}

/// Copies the bytes at `source` into `bytes` with volatile loads of
/// exactly those bytes: single bytes up to the first 8-byte boundary and
/// after the last, aligned 8-byte words between (a guest's disk I/O goes
/// through here: a word at a time is eight times fewer loads than a byte
/// at a time).
///
/// # Safety
///
/// `bytes.len()` bytes from `source` must be readable for the call.
unsafe fn read_volatile_bytes(source: *const u8, bytes: &mut [u8]) {
    let (head, words) = word_split(source, bytes.len());
    let (head_bytes, rest) = bytes.split_at_mut(head);
    let (word_bytes, tail_bytes) = rest.split_at_mut(words * 8);
    for (index, byte) in head_bytes.iter_mut().enumerate() {
        // SAFETY: inside the caller's range.
        *byte = unsafe { source.wrapping_add(index).read_volatile() };
    }
    let word_source = source.wrapping_add(head).cast::<u64>();
    for (index, chunk) in word_bytes.chunks_exact_mut(8).enumerate() {
        // SAFETY: inside the caller's range, and 8-byte aligned (the head
        // ended at a boundary).
        let word = unsafe { word_source.wrapping_add(index).read_volatile() };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let tail_source = source.wrapping_add(head + words * 8);
    for (index, byte) in tail_bytes.iter_mut().enumerate() {
        // SAFETY: inside the caller's range.
        *byte = unsafe { tail_source.wrapping_add(index).read_volatile() };
    }
}

/// Copies `bytes` to `target` with volatile stores of exactly those bytes,
/// split as [`read_volatile_bytes`] splits: nothing beside them is
/// rewritten.
///
/// # Safety
///
/// `bytes.len()` bytes from `target` must be writable for the call, and
/// no Rust reference may cover them.
unsafe fn write_volatile_bytes(target: *mut u8, bytes: &[u8]) {
    let (head, words) = word_split(target, bytes.len());
    let (head_bytes, rest) = bytes.split_at(head);
    let (word_bytes, tail_bytes) = rest.split_at(words * 8);
    for (index, byte) in head_bytes.iter().enumerate() {
        // SAFETY: inside the caller's range.
        unsafe { target.wrapping_add(index).write_volatile(*byte) };
    }
    let word_target = target.wrapping_add(head).cast::<u64>();
    for (index, chunk) in word_bytes.chunks_exact(8).enumerate() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        // SAFETY: inside the caller's range, and 8-byte aligned.
        unsafe { word_target.wrapping_add(index).write_volatile(u64::from_ne_bytes(word)) };
    }
    let tail_target = target.wrapping_add(head + words * 8);
    for (index, byte) in tail_bytes.iter().enumerate() {
        // SAFETY: inside the caller's range.
        unsafe { tail_target.wrapping_add(index).write_volatile(*byte) };
    }
}

/// Whether `bytes` from `address` on are whole pages between the loader's
/// layout and the end of the user half, where only regions are mapped.
fn region_allowed(address: u64, bytes: u64) -> bool {
    let aligned = address.is_multiple_of(4096) && bytes.is_multiple_of(4096);
    aligned
        && address >= bulkhead_capdl_spec::layout::RESERVED_END
        && address.checked_add(bytes).is_some_and(|end| end <= USER_TOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_window_must_lie_between_the_layout_and_the_user_top() {
        let first = bulkhead_capdl_spec::layout::RESERVED_END;
        assert!(region_allowed(first, 4096));
        assert!(region_allowed(first, 0));
        assert!(region_allowed(USER_TOP - 8192, 8192));
        assert!(!region_allowed(first - 4096, 4096), "below the layout's end");
        assert!(!region_allowed(USER_TOP - 4096, 8192), "past the user half");
        assert!(!region_allowed(first + 8, 4096), "not page-aligned");
        assert!(!region_allowed(first, 4095), "not whole pages");
        assert!(!region_allowed(u64::MAX - 4095, 4096), "wraps");
    }

    /// Every start (aligned or not) and length up to a few words: the
    /// word-wise copies read and write exactly the bytes asked for.
    #[test]
    fn volatile_copies_move_exactly_their_bytes() {
        let pattern = |index: usize| u8::try_from(index % 251).unwrap_or(0);
        for start in 0..16 {
            for length in 0..48 {
                let mut memory: Vec<u64> = vec![0; 10];
                let base = memory.as_mut_ptr().cast::<u8>();
                let bytes: Vec<u8> = (0..length).map(|index| pattern(index + 1)).collect();
                // SAFETY: start + length <= 64 < 80 bytes of `memory`, which
                // no reference covers while the raw pointer is used.
                unsafe { write_volatile_bytes(base.wrapping_add(start), &bytes) };
                let mut back = vec![0xee; length];
                // SAFETY: as above.
                unsafe { read_volatile_bytes(base.wrapping_add(start), &mut back) };
                assert_eq!(back, bytes, "start {start}, length {length}");
                let all: Vec<u8> = memory.iter().flat_map(|word| word.to_ne_bytes()).collect();
                assert!(all[..start].iter().all(|byte| *byte == 0), "before: start {start}, length {length}");
                assert!(all[start + length..].iter().all(|byte| *byte == 0), "after: start {start}, length {length}");
                assert_eq!(&all[start..start + length], bytes.as_slice());
            }
        }
        assert_eq!(word_split(core::ptr::without_provenance(0x1003), 20), (5, 1));
        assert_eq!(word_split(core::ptr::without_provenance(0x1000), 20), (0, 2));
        assert_eq!(word_split(core::ptr::without_provenance(0x1007), 0), (0, 0));
    }

    #[test]
    fn only_a_pd_the_loader_started_gets_windows_onto_regions() {
        // The host test is no such PD: even a valid region address is refused.
        assert!(!crate::entry::started_by_loader());
        assert!(SharedPage::new(bulkhead_capdl_spec::layout::RESERVED_END).is_none());
        assert!(SharedRegion::new(bulkhead_capdl_spec::layout::RESERVED_END, 4096).is_none());
    }
}
