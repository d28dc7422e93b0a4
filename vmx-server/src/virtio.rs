//! virtio devices for the guest (virtio 1.2, modern interface only). This
//! first part: guest memory as the device models see it ([`GuestRam`])
//! and the split virtqueue walked as hostile input ([`queue::SplitQueue`]).
//!
//! # Trust
//!
//! Everything the guest writes is hostile input: the queue layout,
//! descriptor tables, ring indices. A bad value gets a refused chain or a
//! queue error, never a panic, an unbounded loop or an allocation. Guest
//! memory is reached only through [`GuestRam`], whose every access is
//! bounds-checked and copies bytes (no reference into memory the guest can
//! change under us), and each descriptor is copied once and then used from
//! the copy, so a guest changing the table while a request is served cannot
//! make the model use a descriptor it did not check.

pub mod queue;

#[cfg(test)]
mod test_support;

/// A guest-physical range that is not wholly guest RAM (or that wraps
/// past 2^64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// The guest's RAM as the device model sees it: copies in and out, every
/// access bounds-checked.
///
/// The VMM's guest memory (or vmx-server's own mapping of its guest's RAM)
/// implements it. Implementations copy with volatile accesses, or behind a
/// compiler fence, and keep the order of calls: the queue writes a used
/// ring entry in one call and the used index in a later one, and the
/// driver must not see the index before the entry (on x86 stores are not
/// reordered with other stores, so program order is enough; see
/// [`queue`], "Memory ordering").
pub trait GuestRam {
    /// Copies `bytes.len()` bytes from `guest_physical` into `bytes`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] when any of the bytes lies outside guest RAM; the
    /// contents of `bytes` are then unspecified.
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), OutOfRange>;

    /// Copies `bytes` to `guest_physical`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] when any of the bytes lies outside guest RAM; nothing
    /// is written then.
    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), OutOfRange>;
}
