//! virtio devices for the guest (virtio 1.2, modern interface only): the
//! virtio-mmio register block ([`mmio::MmioTransport`]), the split
//! virtqueue walked as hostile input ([`queue::SplitQueue`]) and the block
//! device ([`blk::Block`]). `docs/DEVICES.md`, "virtio", says why the
//! transport is virtio-mmio and what each model does with bad input.
//!
//! # Trust
//!
//! Everything the guest writes is hostile input: register values, the
//! queue layout, descriptor tables, ring indices, request headers. A bad
//! value gets an ignored write, a refused chain, an error status or the
//! DEVICE_NEEDS_RESET state, never a panic, an unbounded loop or an
//! allocation. Guest memory is reached only through [`GuestRam`], whose
//! every access is bounds-checked and copies bytes (no reference into
//! memory the guest can change under us), and each descriptor is copied
//! once and then used from the copy, so a guest changing the table while
//! a request is served cannot make the model use a descriptor it did not
//! check.
//!
//! # Execution model
//!
//! The VMM hands every access to the device's MMIO window to
//! [`mmio::MmioTransport::read`] and [`mmio::MmioTransport::write`]; a
//! write to QueueNotify serves the queue before the write returns (the
//! notifying vCPU waits in its exit). After each access the VMM drives the
//! device's interrupt line from [`mmio::MmioTransport::interrupt_line`].

pub mod blk;
pub mod mmio;
pub mod queue;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

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

/// VIRTIO_F_VERSION_1 (feature bit 32): the device follows the modern
/// (1.0 and later) interface. Every device here offers it, and the
/// transport refuses FEATURES_OK without it.
pub const FEATURE_VERSION_1: u64 = 1 << 32;

/// Device status ACKNOWLEDGE: the guest has found the device.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Device status DRIVER: the guest has a driver for it.
pub const STATUS_DRIVER: u32 = 2;
/// Device status DRIVER_OK: the driver is ready; the device may serve its
/// queues.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Device status FEATURES_OK: the device accepted the driver's features.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status DEVICE_NEEDS_RESET: the device met an error it cannot
/// recover from without a reset (set by the device only).
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 64;
/// Device status FAILED: the driver gave up on the device.
pub const STATUS_FAILED: u32 = 128;

/// A device behind a virtio transport: its identity, features,
/// configuration space and queues.
///
/// The transport owns the register protocol (status, feature negotiation,
/// queue setup, interrupts); the device sees only the results: the
/// accepted features, configuration-space accesses and notified queues.
pub trait VirtioDevice {
    /// The virtio device ID (2 for a block device).
    fn device_id(&self) -> u32;

    /// Every feature bit the device offers ([`FEATURE_VERSION_1`]
    /// included).
    fn device_features(&self) -> u64;

    /// The features the driver accepted, when the transport sets
    /// FEATURES_OK: always a subset of [`VirtioDevice::device_features`]
    /// with [`FEATURE_VERSION_1`].
    fn accept_features(&mut self, features: u64);

    /// Reads `bytes.len()` bytes of the configuration space at `offset`;
    /// bytes past the device's configuration read as 0.
    fn read_config(&self, offset: u32, bytes: &mut [u8]);

    /// Writes `bytes` to the configuration space at `offset`; read-only
    /// and absent bytes ignore the write.
    fn write_config(&mut self, offset: u32, bytes: &[u8]);

    /// How many virtqueues the device has (at most
    /// [`mmio::MAX_QUEUES`]; the transport exposes no more).
    fn queue_count(&self) -> u16;

    /// The largest size of queue `queue` the device accepts: a power of two
    /// from 1 to [`queue::MAX_QUEUE_SIZE`] (the transport clamps it there).
    fn queue_size_max(&self, queue: u16) -> u16;

    /// Serves the buffers the driver made available on queue
    /// `queue_index`, after a notify. [`queue::SplitQueue::pop`] hands out
    /// at most the queue's size of chains per notify, so the work is
    /// bounded whatever the device does.
    ///
    /// # Errors
    ///
    /// A [`queue::QueueError`] from the queue: the transport then sets
    /// DEVICE_NEEDS_RESET and serves no queue until the driver resets the
    /// device.
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut queue::SplitQueue,
        ram: &mut dyn GuestRam,
    ) -> Result<(), queue::QueueError>;

    /// Returns to the state after power-on (the driver wrote 0 to Status).
    fn reset(&mut self);
}
