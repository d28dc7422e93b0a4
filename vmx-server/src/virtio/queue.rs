//! The split virtqueue (virtio 1.2, "Split Virtqueues"), walked as hostile
//! input.
//!
//! A queue of size N is three structures in guest RAM, at addresses the
//! driver writes through the transport:
//!
//! | structure | alignment | bytes | written by |
//! | --- | --- | --- | --- |
//! | descriptor table | 16 | 16 N | driver |
//! | available ring (flags, idx, `ring[N]`, used_event) | 2 | 6 + 2 N | driver |
//! | used ring (flags, idx, `ring[N]` of (id, len), avail_event) | 4 | 6 + 8 N | device |
//!
//! # Checks
//!
//! - Enabling (QueueReady = 1, [`SplitQueue::enable`]): N is a power of two
//!   from 1 to the device's maximum, each structure is aligned and lies
//!   wholly inside guest RAM. Otherwise the queue stays disabled and the
//!   transport sets DEVICE_NEEDS_RESET.
//! - Every later access is bounds-checked again by [`GuestRam`]; a ring
//!   that cannot be read or written ([`QueueError`]) stops the queue.
//! - The available index may run at most N entries ahead of the device:
//!   a larger jump is a driver bug or an attack, and the device cannot
//!   tell which entries are real. The queue refuses it with
//!   [`QueueError::AvailableIndexJump`]; the transport sets
//!   DEVICE_NEEDS_RESET and serves nothing more until the driver resets
//!   the device.
//! - A head index from the available ring is reduced modulo nothing: a head
//!   of N or more refuses that chain.
//! - A chain is followed through `next` for at most N descriptors. Without
//!   indirect descriptors a well-formed chain can never be longer (every
//!   descriptor is used once), so a longer walk is a loop and is refused.
//!   Also refused: a `next` of N or more, a device-readable descriptor after
//!   a device-writable one (the spec's framing rule), a buffer wrapping past
//!   2^64, more than 2^32 - 1 bytes in all (the spec's limit, which keeps
//!   the used length in 32 bits), and the INDIRECT flag (indirect
//!   descriptors are not offered: see below).
//!
//! A refused chain is returned to the used ring at once with length 0 and
//! nothing written to it: the device cannot know where a malformed chain's
//! status byte is, and writing a guess would touch memory the driver did
//! not clearly hand over. The queue keeps working; the count of refused
//! chains is in [`SplitQueue::refused_chains`]. A well-formed chain goes to
//! the device as a [`DescriptorChain`], copied from guest memory once: the
//! device reads and writes its buffers through it, and each access is
//! still bounds-checked against guest RAM (a buffer outside RAM fails that
//! access; the device reports it as its protocol says, for the block
//! device with an I/O error status).
//!
//! # Bounded work
//!
//! [`SplitQueue::pop`] hands out at most N chains (refused ones included)
//! between two [`SplitQueue::begin_batch`] calls; the transport calls it
//! before each notify. Each chain costs at most N descriptor reads, so a
//! notify costs at most N^2 descriptor reads plus the data the device moves.
//! Chains the driver adds while a notify is served wait for its next
//! notify (the used ring's flags never ask the driver not to notify).
//!
//! # Not offered
//!
//! VIRTIO_F_INDIRECT_DESC: Linux's block driver works without it (a
//! request takes one descriptor per segment in the ring, and the block
//! device's seg_max leaves room for the header and status), and every
//! table a guest can point the device at is more hostile input.
//! VIRTIO_F_EVENT_IDX: the device interrupts after every notify that used
//! a buffer and ignores the available ring's NO_INTERRUPT flag (a
//! SHOULD-NOT in the spec; an unneeded interrupt is harmless, a missed
//! one hangs the guest, and honouring the flag safely needs a full fence
//! between the used index store and the flag load).
//!
//! # Memory ordering
//!
//! The model runs while the notifying vCPU waits in its exit; other vCPUs
//! of the guest may run and touch the rings at the same time. Reads: the
//! available index is read before the ring entry it covers, and the entry
//! before the descriptors it names, each in its own [`GuestRam::read`];
//! the driver wrote them in the opposite order with a barrier before the
//! index (x86 does not reorder loads with older loads, so program order
//! gives acquire). Writes: the used element (id, len) and the chain's data
//! are written before the used index, in separate [`GuestRam::write`]
//! calls in that order (x86 does not reorder stores with older stores, so
//! program order gives release, as long as [`GuestRam`] implementations
//! neither reorder nor merge their copies, which they promise).

use super::{GuestRam, OutOfRange};

/// The largest queue size any device here offers, and so the most
/// descriptors a [`DescriptorChain`] holds.
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Descriptor flag NEXT: the chain continues at `next`.
pub const DESCRIPTOR_NEXT: u16 = 1;
/// Descriptor flag WRITE: the buffer is device-writable (else
/// device-readable).
pub const DESCRIPTOR_WRITE: u16 = 2;
/// Descriptor flag INDIRECT: the buffer is a table of descriptors (never
/// accepted here: VIRTIO_F_INDIRECT_DESC is not offered).
pub const DESCRIPTOR_INDIRECT: u16 = 4;

/// Bytes in one descriptor-table entry.
const DESCRIPTOR_BYTES: usize = 16;
/// Bytes in one used-ring element (id, len).
const USED_ELEMENT_BYTES: usize = 8;
/// Where the ring array starts in the available and used rings (after
/// flags and idx).
const RING_OFFSET: u64 = 4;
/// Where idx is in the available and used rings.
const INDEX_OFFSET: u64 = 2;

/// Why a queue stopped: the transport sets DEVICE_NEEDS_RESET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The available index ran more than the queue size ahead of the
    /// device.
    AvailableIndexJump {
        /// The index the device expected to see next, or one within N of it.
        next_available: u16,
        /// The index the driver published.
        published: u16,
    },
    /// The available ring could not be read.
    AvailableRingOutOfRange,
    /// The used ring could not be written.
    UsedRingOutOfRange,
}

/// Why QueueReady = 1 was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueSetupError {
    /// QueueNum is 0, not a power of two, or above QueueNumMax.
    InvalidSize(u32),
    /// The descriptor table is not 16-byte aligned.
    DescriptorTableMisaligned(u64),
    /// The available ring is not 2-byte aligned.
    AvailableRingMisaligned(u64),
    /// The used ring is not 4-byte aligned.
    UsedRingMisaligned(u64),
    /// The descriptor table is not wholly inside guest RAM.
    DescriptorTableOutOfRange(u64),
    /// The available ring is not wholly inside guest RAM.
    AvailableRingOutOfRange(u64),
    /// The used ring is not wholly inside guest RAM.
    UsedRingOutOfRange(u64),
}

/// Why a chain was refused (returned with length 0, nothing written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// The head index from the available ring is not below the queue size.
    HeadOutOfRange(u16),
    /// A `next` index is not below the queue size.
    NextOutOfRange(u16),
    /// The chain has more descriptors than the queue size: it loops.
    TooLong,
    /// A descriptor has the INDIRECT flag, which was not negotiated.
    Indirect,
    /// A device-readable descriptor follows a device-writable one.
    ReadableAfterWritable,
    /// A buffer wraps past 2^64.
    BufferWraps,
    /// The buffers add up to more than 2^32 - 1 bytes.
    TooManyBytes,
    /// A descriptor could not be read from the table.
    DescriptorOutOfRange,
}

/// One descriptor as copied from the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// The buffer's guest-physical address.
    pub address: u64,
    /// The buffer's length in bytes.
    pub length: u32,
    /// Device-writable (else device-readable).
    pub writable: bool,
}

/// A well-formed descriptor chain, copied out of the descriptor table:
/// device-readable buffers first, then device-writable ones, at most
/// [`MAX_QUEUE_SIZE`] descriptors and at most 2^32 - 1 bytes.
///
/// The device reads the readable part and writes the writable part as two
/// byte streams ([`DescriptorChain::readable`],
/// [`DescriptorChain::writable`]): the spec's framing rule says a device
/// must not care how the driver split them into descriptors.
#[derive(Clone, Debug)]
pub struct DescriptorChain {
    descriptors: [Descriptor; MAX_QUEUE_SIZE as usize],
    count: usize,
    /// Index of the first writable descriptor (`count` when none).
    first_writable: usize,
    readable_bytes: u64,
    writable_bytes: u64,
}

impl Default for DescriptorChain {
    fn default() -> Self {
        DescriptorChain {
            descriptors: [Descriptor::default(); MAX_QUEUE_SIZE as usize],
            count: 0,
            first_writable: 0,
            readable_bytes: 0,
            writable_bytes: 0,
        }
    }
}

impl DescriptorChain {
    /// The descriptors, in chain order.
    #[must_use]
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors[..self.count]
    }

    /// How many bytes the device-readable buffers hold.
    #[must_use]
    pub fn readable_bytes(&self) -> u64 {
        self.readable_bytes
    }

    /// How many bytes the device-writable buffers hold.
    #[must_use]
    pub fn writable_bytes(&self) -> u64 {
        self.writable_bytes
    }

    /// A cursor at the start of the device-readable bytes.
    #[must_use]
    pub fn readable(&self) -> ChainCursor<'_> {
        ChainCursor::new(&self.descriptors[..self.first_writable])
    }

    /// A cursor at the start of the device-writable bytes.
    #[must_use]
    pub fn writable(&self) -> ChainCursor<'_> {
        ChainCursor::new(&self.descriptors[self.first_writable..self.count])
    }

    /// Copies the chain starting at `head` out of the table at
    /// `descriptor_table` of a queue of `size` entries, checking it.
    fn load(&mut self, ram: &dyn GuestRam, descriptor_table: u64, size: u16, head: u16) -> Result<(), ChainError> {
        self.count = 0;
        self.first_writable = 0;
        self.readable_bytes = 0;
        self.writable_bytes = 0;
        if head >= size {
            return Err(ChainError::HeadOutOfRange(head));
        }
        let mut index = head;
        loop {
            if self.count >= usize::from(size) {
                return Err(ChainError::TooLong);
            }
            let entry = descriptor_table
                .checked_add(u64::from(index) * DESCRIPTOR_BYTES as u64)
                .ok_or(ChainError::DescriptorOutOfRange)?;
            let mut raw = [0_u8; DESCRIPTOR_BYTES];
            ram.read(entry, &mut raw).map_err(|OutOfRange| ChainError::DescriptorOutOfRange)?;
            let (address, length, flags, next) = parse_descriptor(&raw);
            if flags & DESCRIPTOR_INDIRECT != 0 {
                return Err(ChainError::Indirect);
            }
            let writable = flags & DESCRIPTOR_WRITE != 0;
            if address.checked_add(u64::from(length)).is_none() {
                return Err(ChainError::BufferWraps);
            }
            if writable {
                self.writable_bytes += u64::from(length);
            } else {
                if self.first_writable != self.count {
                    return Err(ChainError::ReadableAfterWritable);
                }
                self.readable_bytes += u64::from(length);
                self.first_writable = self.count + 1;
            }
            if self.readable_bytes + self.writable_bytes > u64::from(u32::MAX) {
                return Err(ChainError::TooManyBytes);
            }
            self.descriptors[self.count] = Descriptor { address, length, writable };
            self.count += 1;
            if flags & DESCRIPTOR_NEXT == 0 {
                return Ok(());
            }
            if next >= size {
                return Err(ChainError::NextOutOfRange(next));
            }
            index = next;
        }
    }
}

/// A descriptor-table entry's fields: address, length, flags, next.
fn parse_descriptor(raw: &[u8; DESCRIPTOR_BYTES]) -> (u64, u32, u16, u16) {
    let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = *raw;
    (
        u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u32::from_le_bytes([l0, l1, l2, l3]),
        u16::from_le_bytes([f0, f1]),
        u16::from_le_bytes([n0, n1]),
    )
}

/// Why a cursor access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorError {
    /// The chain's part has fewer bytes left than asked for.
    PastTheEnd,
    /// A buffer lies (partly) outside guest RAM.
    OutOfRange,
}

/// A position in one part (readable or writable) of a [`DescriptorChain`],
/// moving forward as bytes are read, written or skipped.
#[derive(Clone, Debug)]
pub struct ChainCursor<'chain> {
    descriptors: &'chain [Descriptor],
    /// The descriptor the next byte is in.
    index: usize,
    /// Bytes of that descriptor already passed.
    offset: u32,
    /// Bytes left after the cursor.
    remaining: u64,
}

impl<'chain> ChainCursor<'chain> {
    fn new(descriptors: &'chain [Descriptor]) -> Self {
        let remaining = descriptors.iter().map(|descriptor| u64::from(descriptor.length)).sum();
        let mut cursor = ChainCursor { descriptors, index: 0, offset: 0, remaining };
        cursor.settle();
        cursor
    }

    /// How many bytes are left after the cursor.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads the next `bytes.len()` bytes and moves past them.
    ///
    /// # Errors
    ///
    /// [`CursorError::PastTheEnd`] (nothing read, the cursor stays) when
    /// fewer bytes are left; [`CursorError::OutOfRange`] when a buffer is
    /// outside guest RAM (the cursor is then somewhere inside the range).
    pub fn read(&mut self, ram: &dyn GuestRam, bytes: &mut [u8]) -> Result<(), CursorError> {
        if self.remaining() < bytes.len() as u64 {
            return Err(CursorError::PastTheEnd);
        }
        let mut done = 0;
        while done < bytes.len() {
            let (address, take) = self.next_segment(bytes.len() - done);
            ram.read(address, &mut bytes[done..done + take]).map_err(|OutOfRange| CursorError::OutOfRange)?;
            done += take;
        }
        Ok(())
    }

    /// Writes `bytes` at the cursor and moves past them.
    ///
    /// # Errors
    ///
    /// As [`ChainCursor::read`]; on [`CursorError::OutOfRange`] the bytes
    /// before the failing buffer were written.
    pub fn write(&mut self, ram: &mut dyn GuestRam, bytes: &[u8]) -> Result<(), CursorError> {
        if self.remaining() < bytes.len() as u64 {
            return Err(CursorError::PastTheEnd);
        }
        let mut done = 0;
        while done < bytes.len() {
            let (address, take) = self.next_segment(bytes.len() - done);
            ram.write(address, &bytes[done..done + take]).map_err(|OutOfRange| CursorError::OutOfRange)?;
            done += take;
        }
        Ok(())
    }

    /// Moves `count` bytes on without touching them.
    ///
    /// # Errors
    ///
    /// [`CursorError::PastTheEnd`] (the cursor stays) when fewer are left.
    pub fn skip(&mut self, count: u64) -> Result<(), CursorError> {
        if self.remaining() < count {
            return Err(CursorError::PastTheEnd);
        }
        let mut left = count;
        while left > 0 {
            // Settled and bytes remain: the descriptor has bytes left.
            let available = self.descriptors[self.index].length - self.offset;
            let in_this = u64::from(available).min(left);
            left -= in_this;
            self.remaining -= in_this;
            // in_this <= available, a u32.
            self.offset += u32::try_from(in_this).unwrap_or(available);
            self.settle();
        }
        Ok(())
    }

    /// The guest-physical address of the next byte and how many of the
    /// next `wanted` bytes are contiguous there; moves past them. The caller
    /// has checked that `wanted` bytes remain and `wanted > 0`.
    fn next_segment(&mut self, wanted: usize) -> (u64, usize) {
        let descriptor = self.descriptors[self.index];
        let available = descriptor.length - self.offset;
        let take = usize::try_from(available).map_or(wanted, |available| available.min(wanted));
        // The chain was checked not to wrap, so address + offset fits.
        let address = descriptor.address + u64::from(self.offset);
        // take <= available, a u32.
        self.offset += u32::try_from(take).unwrap_or(available);
        self.remaining -= take as u64;
        self.settle();
        (address, take)
    }

    /// Steps over finished (and zero-length) descriptors.
    fn settle(&mut self) {
        while self.index < self.descriptors.len() && self.offset == self.descriptors[self.index].length {
            self.index += 1;
            self.offset = 0;
        }
    }
}

/// One split virtqueue: the registers the driver sets up through the
/// transport and the device's positions in the rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitQueue {
    /// The largest size the device accepts (QueueNumMax).
    size_max: u16,
    /// QueueNum as the driver wrote it (checked when the queue is
    /// enabled).
    requested_size: u32,
    descriptor_table: u64,
    available_ring: u64,
    used_ring: u64,
    /// QueueReady: checked and enabled.
    ready: bool,
    /// The size in use while ready.
    size: u16,
    /// The available-ring index of the next chain to take.
    next_available: u16,
    /// The used-ring index of the next element to write (the used idx).
    next_used: u16,
    /// Chains handed out since the last [`SplitQueue::begin_batch`].
    taken_in_batch: u16,
    /// Chains refused since the queue was enabled.
    refused_chains: u64,
}

impl SplitQueue {
    /// A disabled queue whose device accepts at most `size_max` entries
    /// (clamped to a power of two from 1 to [`MAX_QUEUE_SIZE`]; 0 stays 0,
    /// a queue that cannot be enabled).
    #[must_use]
    pub fn new(size_max: u16) -> Self {
        let size_max = match size_max.min(MAX_QUEUE_SIZE) {
            0 => 0,
            clamped if clamped.is_power_of_two() => clamped,
            clamped => clamped.next_power_of_two() / 2,
        };
        SplitQueue {
            size_max,
            requested_size: u32::from(size_max),
            descriptor_table: 0,
            available_ring: 0,
            used_ring: 0,
            ready: false,
            size: 0,
            next_available: 0,
            next_used: 0,
            taken_in_batch: 0,
            refused_chains: 0,
        }
    }

    /// Back to the state after a device reset: disabled, addresses 0, the
    /// size at its maximum.
    pub fn reset(&mut self) {
        *self = SplitQueue::new(self.size_max);
    }

    /// QueueNumMax.
    #[must_use]
    pub fn size_max(&self) -> u16 {
        self.size_max
    }

    /// QueueReady.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The size in use (0 while disabled).
    #[must_use]
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The descriptor table's address as written.
    #[must_use]
    pub fn descriptor_table(&self) -> u64 {
        self.descriptor_table
    }

    /// The available ring's address as written.
    #[must_use]
    pub fn available_ring(&self) -> u64 {
        self.available_ring
    }

    /// The used ring's address as written.
    #[must_use]
    pub fn used_ring(&self) -> u64 {
        self.used_ring
    }

    /// The used index the device has published.
    #[must_use]
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// How many chains were refused since the queue was enabled.
    #[must_use]
    pub fn refused_chains(&self) -> u64 {
        self.refused_chains
    }

    /// QueueNum: ignored while the queue is ready (the driver must not
    /// change it then); checked by [`SplitQueue::enable`].
    pub fn set_requested_size(&mut self, size: u32) {
        if !self.ready {
            self.requested_size = size;
        }
    }

    /// QueueDescLow/High: ignored while ready.
    pub fn set_descriptor_table(&mut self, address: u64) {
        if !self.ready {
            self.descriptor_table = address;
        }
    }

    /// QueueDriverLow/High: ignored while ready.
    pub fn set_available_ring(&mut self, address: u64) {
        if !self.ready {
            self.available_ring = address;
        }
    }

    /// QueueDeviceLow/High: ignored while ready.
    pub fn set_used_ring(&mut self, address: u64) {
        if !self.ready {
            self.used_ring = address;
        }
    }

    /// QueueReady = 1: checks the size and the three structures, then
    /// enables the queue with both ring positions at 0 (the driver zeroes
    /// the rings before). Enabling a ready queue does nothing.
    ///
    /// # Errors
    ///
    /// [`QueueSetupError`]: the queue stays disabled.
    pub fn enable(&mut self, ram: &dyn GuestRam) -> Result<(), QueueSetupError> {
        if self.ready {
            return Ok(());
        }
        let requested = self.requested_size;
        let size = match u16::try_from(requested) {
            Ok(size) if size != 0 && size.is_power_of_two() && size <= self.size_max => size,
            _ => return Err(QueueSetupError::InvalidSize(requested)),
        };
        let entries = u64::from(size);
        if !self.descriptor_table.is_multiple_of(16) {
            return Err(QueueSetupError::DescriptorTableMisaligned(self.descriptor_table));
        }
        if !self.available_ring.is_multiple_of(2) {
            return Err(QueueSetupError::AvailableRingMisaligned(self.available_ring));
        }
        if !self.used_ring.is_multiple_of(4) {
            return Err(QueueSetupError::UsedRingMisaligned(self.used_ring));
        }
        if !is_ram(ram, self.descriptor_table, DESCRIPTOR_BYTES as u64 * entries) {
            return Err(QueueSetupError::DescriptorTableOutOfRange(self.descriptor_table));
        }
        if !is_ram(ram, self.available_ring, 6 + 2 * entries) {
            return Err(QueueSetupError::AvailableRingOutOfRange(self.available_ring));
        }
        if !is_ram(ram, self.used_ring, 6 + USED_ELEMENT_BYTES as u64 * entries) {
            return Err(QueueSetupError::UsedRingOutOfRange(self.used_ring));
        }
        self.size = size;
        self.ready = true;
        self.next_available = 0;
        self.next_used = 0;
        self.taken_in_batch = 0;
        self.refused_chains = 0;
        Ok(())
    }

    /// QueueReady = 0: the device stops using the queue (its addresses
    /// stay, for the driver to change or enable again).
    pub fn disable(&mut self) {
        self.ready = false;
        self.size = 0;
    }

    /// Starts a notify's work: [`SplitQueue::pop`] hands out at most the
    /// queue size of chains until the next call.
    pub fn begin_batch(&mut self) {
        self.taken_in_batch = 0;
    }

    /// The next available chain, copied into `chain`: its head index, or
    /// `None` when the queue is disabled, empty, or this batch has had the
    /// queue size of chains. Malformed chains are returned to the used ring
    /// here (length 0) and skipped.
    ///
    /// # Errors
    ///
    /// [`QueueError`] when the available ring is unreadable or its index
    /// jumped, or the used ring is unwritable: the queue is unusable until
    /// a reset.
    pub fn pop(&mut self, ram: &mut dyn GuestRam, chain: &mut DescriptorChain) -> Result<Option<u16>, QueueError> {
        while self.ready && self.taken_in_batch < self.size {
            let published = self.read_available_u16(ram, INDEX_OFFSET)?;
            let pending = published.wrapping_sub(self.next_available);
            if pending == 0 {
                return Ok(None);
            }
            if pending > self.size {
                return Err(QueueError::AvailableIndexJump { next_available: self.next_available, published });
            }
            let slot = u64::from(self.next_available % self.size);
            let head = self.read_available_u16(ram, RING_OFFSET + 2 * slot)?;
            self.next_available = self.next_available.wrapping_add(1);
            self.taken_in_batch += 1;
            match chain.load(ram, self.descriptor_table, self.size, head) {
                Ok(()) => return Ok(Some(head)),
                Err(_refused) => {
                    self.refused_chains += 1;
                    self.push_used(ram, head, 0)?;
                }
            }
        }
        Ok(None)
    }

    /// Returns the chain at `head` to the driver with `written_bytes`
    /// written (the used element first, then the used index).
    ///
    /// # Errors
    ///
    /// [`QueueError::UsedRingOutOfRange`] when the used ring cannot be
    /// written (nothing is published then).
    pub fn push_used(&mut self, ram: &mut dyn GuestRam, head: u16, written_bytes: u32) -> Result<(), QueueError> {
        if !self.ready {
            return Ok(());
        }
        let slot = u64::from(self.next_used % self.size);
        let element_address = self.used_ring + RING_OFFSET + USED_ELEMENT_BYTES as u64 * slot;
        let mut element = [0_u8; USED_ELEMENT_BYTES];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&written_bytes.to_le_bytes());
        ram.write(element_address, &element).map_err(|OutOfRange| QueueError::UsedRingOutOfRange)?;
        let next_used = self.next_used.wrapping_add(1);
        ram.write(self.used_ring + INDEX_OFFSET, &next_used.to_le_bytes())
            .map_err(|OutOfRange| QueueError::UsedRingOutOfRange)?;
        self.next_used = next_used;
        Ok(())
    }

    /// A little-endian u16 at `offset` in the available ring.
    fn read_available_u16(&self, ram: &dyn GuestRam, offset: u64) -> Result<u16, QueueError> {
        let mut bytes = [0_u8; 2];
        ram.read(self.available_ring + offset, &mut bytes).map_err(|OutOfRange| QueueError::AvailableRingOutOfRange)?;
        Ok(u16::from_le_bytes(bytes))
    }
}

/// Whether `[address, address + length)` is wholly guest RAM (read through
/// in chunks: [`GuestRam`] has no other way to ask).
fn is_ram(ram: &dyn GuestRam, address: u64, length: u64) -> bool {
    const CHUNK: usize = 256;
    if address.checked_add(length).is_none() {
        return false;
    }
    let mut scratch = [0_u8; CHUNK];
    let mut done = 0;
    while done < length {
        let take = usize::try_from(length - done).map_or(CHUNK, |left| left.min(CHUNK));
        if ram.read(address + done, &mut scratch[..take]).is_err() {
            return false;
        }
        done += take as u64;
    }
    true
}

#[cfg(test)]
mod tests;
