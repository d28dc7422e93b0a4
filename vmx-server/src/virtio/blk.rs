//! The virtio block device (virtio 1.2, "Block Device"; device ID 2) over
//! a [`BlockBackend`].
//!
//! # Features and configuration
//!
//! Offered: VIRTIO_F_VERSION_1, VIRTIO_BLK_F_SEG_MAX (seg_max = the queue
//! size minus 2, so that a request of seg_max data descriptors plus its
//! header and status fits an empty ring without indirect descriptors),
//! VIRTIO_BLK_F_BLK_SIZE (512) and VIRTIO_BLK_F_FLUSH. The configuration
//! space is `capacity` (le64, 512-byte sectors, at 0), `seg_max` (le32 at
//! 12) and `blk_size` (le32 at 20); every other byte of the structure
//! (size_max, geometry, topology, writeback, num_queues) reads 0 since its
//! feature is not offered, and writes are ignored. One request queue of at
//! most [`QUEUE_SIZE_MAX`] entries.
//!
//! # Requests
//!
//! A request is a 16-byte header (le32 type, le32 reserved, le64 sector),
//! data, and a status byte. Following the spec's framing rule the device
//! does not care how the driver splits them into descriptors: the header
//! is the first 16 bytes of the chain's device-readable part, the status
//! byte is the last byte of its device-writable part, and the data is what
//! lies between, readable for a write, writable for a read.
//!
//! | type | what the device does |
//! | --- | --- |
//! | IN (0) | reads `data length / 512` sectors from `sector` into the writable data |
//! | OUT (1) | writes the readable data to the sectors from `sector`; without VIRTIO_BLK_F_FLUSH negotiated it also flushes before completing (the spec makes every completed write stable then) |
//! | FLUSH (4) | flushes the backend |
//! | GET_ID (8) | writes the 20-byte ID string (NUL padded), or as much of it as the data holds |
//! | other | status UNSUPP |
//!
//! Status IOERR, with no sector read or written, when: the readable part
//! is shorter than the header; the data of an IN or OUT is not a multiple
//! of 512 bytes; its sectors run past the capacity (or the sector number
//! wraps); an IN has readable bytes past the header or an OUT writable
//! bytes before the status (data in the wrong direction). IOERR after a
//! partial transfer when the backend fails or a buffer lies outside guest
//! RAM. A chain with no writable byte has nowhere for a status: it is
//! returned with length 0 and nothing done.
//!
//! The used length is the number of writable bytes the device wrote from
//! the start of the writable part without a gap (the spec lets it be
//! less than what was written, never more): data and status for a
//! complete IN or GET_ID with a 20-byte buffer, 1 for the status alone, and
//! only the data written before an error.

use super::queue::{DescriptorChain, QueueError, SplitQueue};
use super::{FEATURE_VERSION_1, GuestRam, VirtioDevice, read_config_bytes};

/// The virtio device ID of a block device.
pub const DEVICE_ID: u32 = 2;
/// The protocol's sector size.
pub const SECTOR_BYTES: u64 = 512;
/// VIRTIO_BLK_F_SEG_MAX: seg_max is valid.
pub const FEATURE_SEG_MAX: u64 = 1 << 2;
/// VIRTIO_BLK_F_BLK_SIZE: blk_size is valid.
pub const FEATURE_BLK_SIZE: u64 = 1 << 6;
/// VIRTIO_BLK_F_FLUSH: FLUSH requests are supported.
pub const FEATURE_FLUSH: u64 = 1 << 9;
/// Every feature the block device offers.
pub const FEATURES: u64 = FEATURE_VERSION_1 | FEATURE_SEG_MAX | FEATURE_BLK_SIZE | FEATURE_FLUSH;
/// blk_size: the disk's block size in bytes (the sector size).
pub const BLOCK_SIZE_BYTES: u32 = 512;
/// The largest request queue the device accepts.
pub const QUEUE_SIZE_MAX: u16 = 128;
/// The most data descriptors a request may have (seg_max).
pub const SEGMENTS_MAX: u32 = QUEUE_SIZE_MAX as u32 - 2;

/// Request type IN: read sectors.
pub const REQUEST_IN: u32 = 0;
/// Request type OUT: write sectors.
pub const REQUEST_OUT: u32 = 1;
/// Request type FLUSH: make completed writes stable.
pub const REQUEST_FLUSH: u32 = 4;
/// Request type GET_ID: the device ID string.
pub const REQUEST_GET_ID: u32 = 8;

/// Status OK.
pub const STATUS_OK: u8 = 0;
/// Status IOERR: a device or driver error.
pub const STATUS_IOERR: u8 = 1;
/// Status UNSUPP: an unsupported request type.
pub const STATUS_UNSUPP: u8 = 2;

/// The length of the device ID string.
pub const ID_BYTES: usize = 20;

/// The request header's length.
const HEADER_BYTES: usize = 16;
/// The configuration structure up to num_queues.
const CONFIG_BYTES: usize = 36;
/// Where capacity, seg_max and blk_size are in the configuration.
const CONFIG_CAPACITY: usize = 0;
const CONFIG_SEGMENTS_MAX: usize = 12;
const CONFIG_BLOCK_SIZE: usize = 20;
/// How many bytes move between guest RAM and the backend at a time.
const TRANSFER_BYTES: usize = 4096;

/// A backend's failure: the request completes with IOERR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendError;

/// The storage behind a block device, in 512-byte sectors.
pub trait BlockBackend {
    /// The capacity in sectors.
    fn sectors(&self) -> u64;

    /// Reads `bytes.len()` bytes (a multiple of 512) from `sector` on.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the range is not inside the disk or the
    /// storage fails.
    fn read(&mut self, sector: u64, bytes: &mut [u8]) -> Result<(), BackendError>;

    /// Writes `bytes` (a multiple of 512 bytes) from `sector` on.
    ///
    /// # Errors
    ///
    /// As [`BlockBackend::read`].
    fn write(&mut self, sector: u64, bytes: &[u8]) -> Result<(), BackendError>;

    /// Makes every completed write stable.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the storage fails.
    fn flush(&mut self) -> Result<(), BackendError>;
}

/// A disk held in memory: a byte buffer the device owns or borrows (a
/// test's vector, or a disk image mapped into the protection domain).
/// A trailing partial sector is not part of the disk. Flushing does
/// nothing: the bytes are as stable as the memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryDisk<S> {
    storage: S,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> MemoryDisk<S> {
    /// The disk over `storage`.
    pub fn new(storage: S) -> Self {
        MemoryDisk { storage }
    }

    /// The disk's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.as_ref()
    }

    /// The byte range of `length` bytes from `sector`, if inside the disk.
    fn range(&self, sector: u64, length: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(sector.checked_mul(SECTOR_BYTES)?).ok()?;
        let end = start.checked_add(length)?;
        let disk_bytes = usize::try_from(self.sectors() * SECTOR_BYTES).ok()?;
        (end <= disk_bytes).then_some(start..end)
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> BlockBackend for MemoryDisk<S> {
    fn sectors(&self) -> u64 {
        self.storage.as_ref().len() as u64 / SECTOR_BYTES
    }

    fn read(&mut self, sector: u64, bytes: &mut [u8]) -> Result<(), BackendError> {
        let range = self.range(sector, bytes.len()).ok_or(BackendError)?;
        bytes.copy_from_slice(&self.storage.as_ref()[range]);
        Ok(())
    }

    fn write(&mut self, sector: u64, bytes: &[u8]) -> Result<(), BackendError> {
        let range = self.range(sector, bytes.len()).ok_or(BackendError)?;
        self.storage.as_mut()[range].copy_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// How many requests ended each way (for the PD's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounters {
    /// Completed with status OK.
    pub ok: u64,
    /// Completed with status IOERR.
    pub io_errors: u64,
    /// Completed with status UNSUPP.
    pub unsupported: u64,
    /// Returned without a status: no writable byte.
    pub without_status: u64,
}

/// The virtio block device.
#[derive(Clone, Debug)]
pub struct Block<B> {
    backend: B,
    id: [u8; ID_BYTES],
    /// VIRTIO_BLK_F_FLUSH was negotiated (else every write is flushed).
    flush_negotiated: bool,
    /// The chain being served (reused: 4 KiB).
    chain: DescriptorChain,
    /// Bytes on their way between guest RAM and the backend.
    transfer: [u8; TRANSFER_BYTES],
    counters: BlockCounters,
}

impl<B: BlockBackend> Block<B> {
    /// A block device over `backend` whose GET_ID answers `id` (cut to 20
    /// bytes, NUL padded).
    pub fn new(backend: B, id: &[u8]) -> Self {
        let mut padded = [0_u8; ID_BYTES];
        let length = id.len().min(ID_BYTES);
        padded[..length].copy_from_slice(&id[..length]);
        Block {
            backend,
            id: padded,
            flush_negotiated: false,
            chain: DescriptorChain::default(),
            transfer: [0; TRANSFER_BYTES],
            counters: BlockCounters::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, to change its state.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// How requests ended so far.
    pub fn counters(&self) -> BlockCounters {
        self.counters
    }

    /// The configuration structure's first [`CONFIG_BYTES`] bytes.
    fn config(&self) -> [u8; CONFIG_BYTES] {
        let mut config = [0_u8; CONFIG_BYTES];
        config[CONFIG_CAPACITY..CONFIG_CAPACITY + 8].copy_from_slice(&self.backend.sectors().to_le_bytes());
        config[CONFIG_SEGMENTS_MAX..CONFIG_SEGMENTS_MAX + 4].copy_from_slice(&SEGMENTS_MAX.to_le_bytes());
        config[CONFIG_BLOCK_SIZE..CONFIG_BLOCK_SIZE + 4].copy_from_slice(&BLOCK_SIZE_BYTES.to_le_bytes());
        config
    }

    /// Serves the chain in `self.chain`: the used length.
    fn serve(&mut self, ram: &mut dyn GuestRam) -> u32 {
        let writable = self.chain.writable_bytes();
        if writable == 0 {
            self.counters.without_status += 1;
            return 0;
        }
        let data_capacity = writable - 1;
        let (status, data_written) = self.execute(ram, data_capacity);
        match status {
            STATUS_OK => self.counters.ok += 1,
            STATUS_UNSUPP => self.counters.unsupported += 1,
            _ => self.counters.io_errors += 1,
        }
        let mut status_cursor = self.chain.writable();
        let status_written = status_cursor.skip(data_capacity).is_ok() && status_cursor.write(ram, &[status]).is_ok();
        let length = if status_written && data_written == data_capacity { writable } else { data_written };
        // The chain holds at most u32::MAX bytes.
        u32::try_from(length).unwrap_or(0)
    }

    /// Carries out the request: its status and how many data bytes were
    /// written to the writable part from its start.
    fn execute(&mut self, ram: &mut dyn GuestRam, data_capacity: u64) -> (u8, u64) {
        let Block { backend, id, flush_negotiated, chain, transfer, .. } = self;
        let readable = chain.readable_bytes();
        let mut reader = chain.readable();
        let mut header = [0_u8; HEADER_BYTES];
        if reader.read(ram, &mut header).is_err() {
            return (STATUS_IOERR, 0);
        }
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = header;
        let request_type = u32::from_le_bytes([t0, t1, t2, t3]);
        let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        match request_type {
            REQUEST_IN => {
                if readable != HEADER_BYTES as u64 || !fits(backend.sectors(), sector, data_capacity) {
                    return (STATUS_IOERR, 0);
                }
                let mut writer = chain.writable();
                let mut done = 0;
                while done < data_capacity {
                    let take = chunk(data_capacity - done);
                    let buffer = &mut transfer[..take];
                    if backend.read(sector + done / SECTOR_BYTES, buffer).is_err() || writer.write(ram, buffer).is_err()
                    {
                        return (STATUS_IOERR, done);
                    }
                    done += take as u64;
                }
                (STATUS_OK, done)
            }
            REQUEST_OUT => {
                let data_length = readable - HEADER_BYTES as u64;
                if data_capacity != 0 || !fits(backend.sectors(), sector, data_length) {
                    return (STATUS_IOERR, 0);
                }
                let mut done = 0;
                while done < data_length {
                    let take = chunk(data_length - done);
                    let buffer = &mut transfer[..take];
                    if reader.read(ram, buffer).is_err() || backend.write(sector + done / SECTOR_BYTES, buffer).is_err()
                    {
                        return (STATUS_IOERR, 0);
                    }
                    done += take as u64;
                }
                if !*flush_negotiated && backend.flush().is_err() {
                    return (STATUS_IOERR, 0);
                }
                (STATUS_OK, 0)
            }
            REQUEST_FLUSH => match backend.flush() {
                Ok(()) => (STATUS_OK, 0),
                Err(BackendError) => (STATUS_IOERR, 0),
            },
            REQUEST_GET_ID => {
                // Less than 20 bytes: usize.
                let length = usize::try_from(data_capacity).map_or(ID_BYTES, |capacity| capacity.min(ID_BYTES));
                match chain.writable().write(ram, &id[..length]) {
                    Ok(()) => (STATUS_OK, length as u64),
                    Err(_) => (STATUS_IOERR, 0),
                }
            }
            _ => (STATUS_UNSUPP, 0),
        }
    }
}

/// Whether `data_bytes` of data are whole sectors from `sector` inside a
/// disk of `capacity` sectors.
fn fits(capacity: u64, sector: u64, data_bytes: u64) -> bool {
    data_bytes.is_multiple_of(SECTOR_BYTES)
        && sector.checked_add(data_bytes / SECTOR_BYTES).is_some_and(|end| end <= capacity)
}

/// The next transfer's size: at most [`TRANSFER_BYTES`].
fn chunk(left: u64) -> usize {
    usize::try_from(left).map_or(TRANSFER_BYTES, |left| left.min(TRANSFER_BYTES))
}

impl<B: BlockBackend> VirtioDevice for Block<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn device_features(&self) -> u64 {
        FEATURES
    }

    fn accept_features(&mut self, features: u64) {
        self.flush_negotiated = features & FEATURE_FLUSH != 0;
    }

    fn read_config(&self, offset: u32, bytes: &mut [u8]) {
        read_config_bytes(&self.config(), offset, bytes);
    }

    fn write_config(&mut self, _offset: u32, _bytes: &[u8]) {
        // No field is writable: VIRTIO_BLK_F_CONFIG_WCE is not offered.
    }

    fn queue_count(&self) -> u16 {
        1
    }

    fn queue_size_max(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }

    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut SplitQueue,
        ram: &mut dyn GuestRam,
    ) -> Result<(), QueueError> {
        if queue_index != 0 {
            return Ok(());
        }
        while let Some(head) = queue.pop(ram, &mut self.chain)? {
            let written = self.serve(ram);
            queue.push_used(ram, head, written)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.flush_negotiated = false;
    }
}

#[cfg(test)]
mod tests;
