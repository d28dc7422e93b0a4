//! The virtio-mmio transport, version 2 (modern) only (virtio 1.2,
//! "Virtio Over MMIO"): a 0x200-byte register window, the device's
//! configuration space from 0x100, one level-triggered interrupt line.
//!
//! # Registers
//!
//! | offset | register | access |
//! | --- | --- | --- |
//! | 0x000 | MagicValue 0x74726976 ("virt") | R |
//! | 0x004 | Version 2 | R |
//! | 0x008 | DeviceID | R |
//! | 0x00c | VendorID ([`VENDOR_ID`]) | R |
//! | 0x010, 0x014 | DeviceFeatures, DeviceFeaturesSel | R, W |
//! | 0x020, 0x024 | DriverFeatures, DriverFeaturesSel | W, W |
//! | 0x030, 0x034, 0x038 | QueueSel, QueueNumMax, QueueNum | W, R, W |
//! | 0x044 | QueueReady | RW |
//! | 0x050 | QueueNotify | W |
//! | 0x060, 0x064 | InterruptStatus, InterruptACK | R, W |
//! | 0x070 | Status | RW |
//! | 0x080..0x0a4 | QueueDesc, QueueDriver, QueueDevice (low, high) | W |
//! | 0x0ac..0x0bc | SHMSel, SHMLen, SHMBase: no shared memory regions (length and base read all ones) | W, R |
//! | 0x0c0 | QueueReset (VIRTIO_F_RING_RESET not offered: reads 0) | RW |
//! | 0x0fc | ConfigGeneration | R |
//! | 0x100.. | the device's configuration space | RW |
//!
//! Registers take 32-bit aligned accesses only; any other access reads 0
//! and ignores a write, as do reserved offsets, reads of write-only
//! registers and writes of read-only ones. The configuration space takes
//! naturally aligned 8-, 16- and 32-bit accesses (a 64-bit field is read
//! as two 32-bit halves, as Linux does); anything else reads 0 and ignores
//! the write. Offsets past the window read 0.
//!
//! # Status and feature negotiation
//!
//! Writing 0 to Status resets the device: status, feature selections and
//! the driver's features, every queue (disabled, addresses 0), the
//! interrupt status and the device model itself. Any other write adds the
//! driver's bits (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK, FAILED): a
//! driver may not clear a bit, and such a write keeps them; bits 8 and up
//! and DEVICE_NEEDS_RESET (the device's own) are ignored.
//!
//! FEATURES_OK is accepted only if the driver's features are a subset of
//! the offered ones and include VIRTIO_F_VERSION_1; otherwise the bit is
//! not set, and the driver sees that when it reads Status back (the
//! spec's negotiation). Once FEATURES_OK is set, DriverFeatures writes are
//! ignored. DRIVER_OK is accepted only after FEATURES_OK. The transport
//! offers the device's own feature bits (0..23, 50..63) and, of the
//! reserved transport bits 24..49, only VIRTIO_F_VERSION_1, whatever the
//! device model claims: the queue implements no other (no indirect
//! descriptors, no event index, no packed ring, no notification data, no
//! queue reset).
//!
//! # Queues
//!
//! QueueNum and the six address registers apply to the selected queue
//! while it is not ready and are ignored while it is. QueueReady = 1
//! checks the queue ([`SplitQueue::enable`]); a bad size, alignment or a
//! structure outside guest RAM leaves it not ready and sets
//! DEVICE_NEEDS_RESET. A QueueSel of a queue the device lacks reads
//! QueueNumMax and QueueReady as 0 and ignores the queue registers.
//!
//! QueueNotify with a queue index serves that queue, if DRIVER_OK is set,
//! neither DEVICE_NEEDS_RESET nor FAILED is, and the queue exists and is
//! ready; otherwise it is ignored. A queue error (an available index
//! jump, a ring outside RAM) sets DEVICE_NEEDS_RESET: from then on no
//! queue is served until the driver resets the device.
//!
//! # Interrupts
//!
//! InterruptStatus bit 0 (used buffer) is set when a notify returned at
//! least one buffer to a used ring, bit 1 (configuration change) when the
//! device sets DEVICE_NEEDS_RESET or [`MmioTransport::notify_config_change`]
//! is called, both only while DRIVER_OK is set (the spec lets no
//! notification reach a driver before). InterruptACK clears the bits
//! written. [`MmioTransport::interrupt_line`] is high while any bit is
//! set: the VMM drives the device's IRQ (level-triggered) from it after
//! every access.

use super::queue::{QueueError, QueueSetupError, SplitQueue};
use super::{
    FEATURE_VERSION_1, GuestRam, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK, VirtioDevice,
};

/// MagicValue: "virt" in little-endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Version: 2, the modern interface.
pub const VERSION: u32 = 2;
/// VendorID: "BKHD" in little-endian (any value will do; Linux shows it
/// in the device's modalias).
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"BKHD");
/// The size of a device's MMIO window (registers and configuration
/// space), as the guest's `virtio_mmio.device=` parameter gives it.
pub const WINDOW_BYTES: u64 = 0x200;
/// Where the device's configuration space starts in the window.
pub const CONFIG_OFFSET: u64 = 0x100;
/// The most queues a transport exposes.
pub const MAX_QUEUES: usize = 8;

/// InterruptStatus bit 0: a buffer was returned to a used ring.
pub const INTERRUPT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit 1: the device's configuration (or status) changed.
pub const INTERRUPT_CONFIG_CHANGE: u32 = 2;

/// The feature bits the transport lets a device offer: the device-type
/// bits 0..23 and 50..63, and VIRTIO_F_VERSION_1 of the transport bits.
pub const OFFERABLE_FEATURES: u64 = ((1 << 24) - 1) | FEATURE_VERSION_1 | !((1 << 50) - 1);

/// The register offsets in the window.
pub mod register {
    /// MagicValue (R).
    pub const MAGIC_VALUE: u64 = 0x000;
    /// Version (R).
    pub const VERSION: u64 = 0x004;
    /// DeviceID (R).
    pub const DEVICE_ID: u64 = 0x008;
    /// VendorID (R).
    pub const VENDOR_ID: u64 = 0x00c;
    /// DeviceFeatures (R).
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// DeviceFeaturesSel (W).
    pub const DEVICE_FEATURES_SELECT: u64 = 0x014;
    /// DriverFeatures (W).
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// DriverFeaturesSel (W).
    pub const DRIVER_FEATURES_SELECT: u64 = 0x024;
    /// QueueSel (W).
    pub const QUEUE_SELECT: u64 = 0x030;
    /// QueueNumMax (R).
    pub const QUEUE_SIZE_MAX: u64 = 0x034;
    /// QueueNum (W).
    pub const QUEUE_SIZE: u64 = 0x038;
    /// QueueReady (RW).
    pub const QUEUE_READY: u64 = 0x044;
    /// QueueNotify (W).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// InterruptStatus (R).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// InterruptACK (W).
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Status (RW).
    pub const STATUS: u64 = 0x070;
    /// QueueDescLow (W).
    pub const QUEUE_DESCRIPTOR_LOW: u64 = 0x080;
    /// QueueDescHigh (W).
    pub const QUEUE_DESCRIPTOR_HIGH: u64 = 0x084;
    /// QueueDriverLow (W): the available ring.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// QueueDriverHigh (W).
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// QueueDeviceLow (W): the used ring.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// QueueDeviceHigh (W).
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// SHMSel (W).
    pub const SHARED_MEMORY_SELECT: u64 = 0x0ac;
    /// SHMLenLow (R).
    pub const SHARED_MEMORY_LENGTH_LOW: u64 = 0x0b0;
    /// SHMLenHigh (R).
    pub const SHARED_MEMORY_LENGTH_HIGH: u64 = 0x0b4;
    /// SHMBaseLow (R).
    pub const SHARED_MEMORY_BASE_LOW: u64 = 0x0b8;
    /// SHMBaseHigh (R).
    pub const SHARED_MEMORY_BASE_HIGH: u64 = 0x0bc;
    /// QueueReset (RW).
    pub const QUEUE_RESET: u64 = 0x0c0;
    /// ConfigGeneration (R).
    pub const CONFIG_GENERATION: u64 = 0x0fc;
}

/// The status bits a driver may set.
const DRIVER_STATUS_BITS: u32 =
    STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK | STATUS_FAILED;

/// Why the device set DEVICE_NEEDS_RESET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeedsResetCause {
    /// QueueReady = 1 was refused for this queue.
    QueueSetup {
        /// The queue's index.
        queue: u16,
        /// What was wrong.
        error: QueueSetupError,
    },
    /// Serving this queue failed.
    Queue {
        /// The queue's index.
        queue: u16,
        /// What was wrong.
        error: QueueError,
    },
}

/// A virtio device's virtio-mmio register window.
#[derive(Clone, Debug)]
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    /// The device status byte.
    status: u32,
    device_features_select: u32,
    driver_features_select: u32,
    /// DriverFeatures words 0 and 1 as written.
    driver_features: u64,
    /// The driver set a bit in a DriverFeatures word past 1 (no feature is
    /// offered there, so FEATURES_OK will be refused).
    driver_features_beyond_64: bool,
    queue_select: u32,
    queues: [SplitQueue; MAX_QUEUES],
    /// How many of `queues` the device has.
    queue_count: usize,
    interrupt_status: u32,
    config_generation: u32,
    needs_reset_cause: Option<NeedsResetCause>,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// The transport for `device`, as after a reset.
    pub fn new(device: D) -> Self {
        let queue_count = usize::from(device.queue_count()).min(MAX_QUEUES);
        let queues = core::array::from_fn(|index| {
            // index < MAX_QUEUES, far below u16::MAX.
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            if usize::from(index) < queue_count {
                SplitQueue::new(device.queue_size_max(index))
            } else {
                SplitQueue::new(0)
            }
        });
        MmioTransport {
            device,
            status: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            driver_features_beyond_64: false,
            queue_select: 0,
            queues,
            queue_count,
            interrupt_status: 0,
            config_generation: 0,
            needs_reset_cause: None,
        }
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, to change its backend's state.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device status (as Status reads).
    pub fn status(&self) -> u32 {
        self.status
    }

    /// InterruptStatus.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// The level of the device's interrupt line: high while InterruptStatus
    /// has a bit set.
    pub fn interrupt_line(&self) -> bool {
        self.interrupt_status != 0
    }

    /// Queue `index`, if the device has it.
    pub fn queue(&self, index: u16) -> Option<&SplitQueue> {
        self.queues[..self.queue_count].get(usize::from(index))
    }

    /// Why DEVICE_NEEDS_RESET is set, while it is.
    pub fn needs_reset_cause(&self) -> Option<NeedsResetCause> {
        self.needs_reset_cause
    }

    /// The features offered: the device's, limited to
    /// [`OFFERABLE_FEATURES`].
    pub fn offered_features(&self) -> u64 {
        self.device.device_features() & OFFERABLE_FEATURES
    }

    /// The device's configuration changed (for example the disk's
    /// capacity): ConfigGeneration moves on and, with DRIVER_OK, the
    /// configuration-change interrupt is raised.
    pub fn notify_config_change(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & STATUS_DRIVER_OK != 0 {
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    /// A read of `size` bytes at `offset` in the window.
    pub fn read(&self, offset: u64, size: usize) -> u32 {
        if offset >= CONFIG_OFFSET {
            let Some(config_offset) = config_access(offset, size) else { return 0 };
            let mut bytes = [0_u8; 4];
            self.device.read_config(config_offset, &mut bytes[..size]);
            return u32::from_le_bytes(bytes);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        match offset {
            register::MAGIC_VALUE => MAGIC_VALUE,
            register::VERSION => VERSION,
            register::DEVICE_ID => self.device.device_id(),
            register::VENDOR_ID => VENDOR_ID,
            register::DEVICE_FEATURES => feature_word(self.offered_features(), self.device_features_select),
            register::QUEUE_SIZE_MAX => self.selected_queue().map_or(0, |queue| u32::from(queue.size_max())),
            register::QUEUE_READY => self.selected_queue().map_or(0, |queue| u32::from(queue.is_ready())),
            register::INTERRUPT_STATUS => self.interrupt_status,
            register::STATUS => self.status,
            register::SHARED_MEMORY_LENGTH_LOW
            | register::SHARED_MEMORY_LENGTH_HIGH
            | register::SHARED_MEMORY_BASE_LOW
            | register::SHARED_MEMORY_BASE_HIGH => u32::MAX,
            register::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    /// A write of the low `size` bytes of `value` at `offset` in the
    /// window; a QueueNotify serves the queue in `ram` before it returns.
    pub fn write(&mut self, offset: u64, size: usize, value: u32, ram: &mut dyn GuestRam) {
        if offset >= CONFIG_OFFSET {
            if let Some(config_offset) = config_access(offset, size) {
                self.device.write_config(config_offset, &value.to_le_bytes()[..size]);
            }
            return;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return;
        }
        match offset {
            register::DEVICE_FEATURES_SELECT => self.device_features_select = value,
            register::DRIVER_FEATURES => self.write_driver_features(value),
            register::DRIVER_FEATURES_SELECT => self.driver_features_select = value,
            register::QUEUE_SELECT => self.queue_select = value,
            register::QUEUE_SIZE => {
                if let Some(queue) = self.selected_queue_mut() {
                    queue.set_requested_size(value);
                }
            }
            register::QUEUE_READY => self.write_queue_ready(value, ram),
            register::QUEUE_NOTIFY => self.notify(value, ram),
            register::INTERRUPT_ACK => self.interrupt_status &= !value,
            register::STATUS => self.write_status(value),
            register::QUEUE_DESCRIPTOR_LOW | register::QUEUE_DESCRIPTOR_HIGH => {
                if let Some(queue) = self.selected_queue_mut() {
                    let address = with_half(queue.descriptor_table(), offset == register::QUEUE_DESCRIPTOR_HIGH, value);
                    queue.set_descriptor_table(address);
                }
            }
            register::QUEUE_DRIVER_LOW | register::QUEUE_DRIVER_HIGH => {
                if let Some(queue) = self.selected_queue_mut() {
                    let address = with_half(queue.available_ring(), offset == register::QUEUE_DRIVER_HIGH, value);
                    queue.set_available_ring(address);
                }
            }
            register::QUEUE_DEVICE_LOW | register::QUEUE_DEVICE_HIGH => {
                if let Some(queue) = self.selected_queue_mut() {
                    let address = with_half(queue.used_ring(), offset == register::QUEUE_DEVICE_HIGH, value);
                    queue.set_used_ring(address);
                }
            }
            // Read-only registers, SHMSel (no regions) and QueueReset
            // (not offered) ignore writes, as do reserved offsets.
            _ => {}
        }
    }

    fn selected_queue(&self) -> Option<&SplitQueue> {
        let index = usize::try_from(self.queue_select).ok()?;
        self.queues[..self.queue_count].get(index)
    }

    fn selected_queue_mut(&mut self) -> Option<&mut SplitQueue> {
        let index = usize::try_from(self.queue_select).ok()?;
        self.queues[..self.queue_count].get_mut(index)
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status & STATUS_FEATURES_OK != 0 {
            return;
        }
        match self.driver_features_select {
            0 => self.driver_features = (self.driver_features & !u64::from(u32::MAX)) | u64::from(value),
            1 => self.driver_features = (self.driver_features & u64::from(u32::MAX)) | u64::from(value) << 32,
            _ => self.driver_features_beyond_64 |= value != 0,
        }
    }

    fn write_queue_ready(&mut self, value: u32, ram: &dyn GuestRam) {
        let queue_select = self.queue_select;
        let Some(queue) = self.selected_queue_mut() else { return };
        if value == 0 {
            queue.disable();
            return;
        }
        if let Err(error) = queue.enable(ram) {
            // queue_select indexes an existing queue, below MAX_QUEUES.
            let queue = u16::try_from(queue_select).unwrap_or(u16::MAX);
            self.set_needs_reset(NeedsResetCause::QueueSetup { queue, error });
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let driver_bits = value & DRIVER_STATUS_BITS;
        let mut status = self.status | driver_bits;
        if status & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            if self.features_acceptable() {
                self.device.accept_features(self.driver_features);
            } else {
                status &= !STATUS_FEATURES_OK;
            }
        }
        if status & STATUS_FEATURES_OK == 0 {
            status &= !STATUS_DRIVER_OK;
        }
        self.status = status;
    }

    /// Whether the driver's features may be accepted: offered ones only,
    /// VIRTIO_F_VERSION_1 among them.
    fn features_acceptable(&self) -> bool {
        !self.driver_features_beyond_64
            && self.driver_features & !self.offered_features() == 0
            && self.driver_features & FEATURE_VERSION_1 != 0
    }

    /// Status 0: everything back to its power-on state (ConfigGeneration
    /// goes on counting).
    fn reset(&mut self) {
        self.status = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.driver_features_beyond_64 = false;
        self.queue_select = 0;
        for queue in &mut self.queues {
            queue.reset();
        }
        self.interrupt_status = 0;
        self.needs_reset_cause = None;
        self.device.reset();
    }

    fn set_needs_reset(&mut self, cause: NeedsResetCause) {
        self.status |= STATUS_DEVICE_NEEDS_RESET;
        if self.needs_reset_cause.is_none() {
            self.needs_reset_cause = Some(cause);
        }
        if self.status & STATUS_DRIVER_OK != 0 {
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    fn notify(&mut self, value: u32, ram: &mut dyn GuestRam) {
        if let Ok(index) = u16::try_from(value) {
            self.serve_queue(index, ram);
        }
    }

    /// Serves queue `index` as a notify of it would: the host side's kick,
    /// for work that does not start with the driver (received frames or
    /// console input waiting for the guest's buffers). Nothing happens, and
    /// `false` comes back, unless DRIVER_OK is set, neither
    /// DEVICE_NEEDS_RESET nor FAILED is, and the queue exists and is ready.
    /// The work is bounded as a notify's is, and raises the same
    /// interrupts.
    pub fn serve_queue(&mut self, index: u16, ram: &mut dyn GuestRam) -> bool {
        if !self.is_queue_live(index) {
            return false;
        }
        let Some(queue) = self.queues[..self.queue_count].get_mut(usize::from(index)) else { return false };
        let used_before = queue.next_used();
        queue.begin_batch();
        let result = self.device.process_queue(index, queue, ram);
        if queue.next_used() != used_before {
            self.interrupt_status |= INTERRUPT_USED_BUFFER;
        }
        if let Err(error) = result {
            self.set_needs_reset(NeedsResetCause::Queue { queue: index, error });
        }
        true
    }

    /// Whether queue `index` would be served now: DRIVER_OK set, neither
    /// DEVICE_NEEDS_RESET nor FAILED, and the queue exists and is ready.
    pub fn is_queue_live(&self, index: u16) -> bool {
        let serving = STATUS_DRIVER_OK | STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED;
        self.status & serving == STATUS_DRIVER_OK && self.queue(index).is_some_and(SplitQueue::is_ready)
    }
}

/// The configuration-space offset of a `size`-byte access at window
/// `offset` (at or past [`CONFIG_OFFSET`]), if the access is allowed: 1, 2
/// or 4 bytes, naturally aligned, inside the window.
fn config_access(offset: u64, size: usize) -> Option<u32> {
    let size_bytes = match size {
        1 | 2 | 4 => size as u64,
        _ => return None,
    };
    if !offset.is_multiple_of(size_bytes) || offset.checked_add(size_bytes)? > WINDOW_BYTES {
        return None;
    }
    u32::try_from(offset - CONFIG_OFFSET).ok()
}

/// Word `select` (0 low, 1 high, others 0) of a 64-bit feature set.
fn feature_word(features: u64, select: u32) -> u32 {
    let [b0, b1, b2, b3, b4, b5, b6, b7] = features.to_le_bytes();
    match select {
        0 => u32::from_le_bytes([b0, b1, b2, b3]),
        1 => u32::from_le_bytes([b4, b5, b6, b7]),
        _ => 0,
    }
}

/// `address` with its low or high half replaced by `value`.
fn with_half(address: u64, high: bool, value: u32) -> u64 {
    if high {
        (address & u64::from(u32::MAX)) | u64::from(value) << 32
    } else {
        (address & !u64::from(u32::MAX)) | u64::from(value)
    }
}

#[cfg(test)]
mod tests;
