//! A link between two network ports: two bounded single-producer,
//! single-consumer frame rings in memory the two ends share, one ring for
//! each direction. Two guests' VMX PDs joined by a manifest-granted region
//! get a network cable; a vswitch port will be the same thing with the
//! vswitch at the other end. [`Loopback`] is a link whose two ends are one:
//! what the guest sends comes back to it.
//!
//! # Layout
//!
//! The shared memory is two halves. Each end writes only its own half (its
//! *outgoing* half) and only reads the other (its *incoming* half), so a
//! manifest can map the peer's half read-only and the information-flow
//! graph shows one writer per half. A half holds:
//!
//! | offset | bytes | what |
//! | --- | --- | --- |
//! | [`TAIL_OFFSET`] (0) | le32 | tail of this half's ring: frames written so far (free-running) |
//! | [`HEAD_OFFSET`] (64) | le32 | head of the *other* half's ring: frames this half's writer consumed from it |
//! | [`SLOTS_OFFSET`] (128) | [`SLOT_BYTES`] each | the ring's slots: a le32 length, then the frame |
//!
//! The two indices sit on separate cache lines. A half of `n` bytes has
//! [`slot_count`]`(n)` slots: the largest power of two (at most 2^16) of
//! whole slots after the indices, so that the free-running u32 indices map
//! onto slots the same way across their wrap. Both ends compute the counts
//! from the halves' sizes, which they know from the manifest; nothing in
//! the shared memory says how big it is. A slot's frame is
//! [`FRAME_BYTES_MIN`] to [`FRAME_BYTES_MAX`] bytes.
//!
//! # Trust
//!
//! The other end may be compromised: everything in the incoming half is
//! hostile, and so is the head the peer publishes for our ring. Each end
//! keeps its own indices (its tail and its head) privately and only
//! publishes them, never reads them back. Then:
//!
//! - The writer reads the peer's head; `tail - head` (wrapping) more than
//!   the slot count is a lie, and the writer sends nothing until the head
//!   makes sense again ([`PushError::PeerFault`], counted). Equal to the slot
//!   count: the ring is full ([`PushError::Full`]).
//! - The reader reads the peer's tail; more than the slot count ahead of
//!   its head is a lie, and nothing is read until it makes sense again
//!   (counted). Otherwise it reads the slot's length once, into a local:
//!   a length outside the frame bounds skips the slot (counted), and
//!   only a valid length's bytes are copied out. Slot offsets come from the
//!   reader's own head and slot count, so they are always inside the half.
//! - Every access goes through [`LinkMemory`], bounds-checked again, and
//!   copies bytes: no reference into memory the peer can change. A peer
//!   changing a frame while it is copied only garbles its own frame.
//!
//! A hostile peer can thus stop the link or send garbage frames, which it
//! could anyway; it cannot make this end panic, loop, or touch memory
//! outside the halves. Each call does bounded work: a push writes one
//! slot; a pop reads at most the slot count of slots.
//!
//! # Ordering
//!
//! The writer copies the frame and its length into the slot before it
//! publishes the new tail; the reader reads the tail before the slot, and
//! copies the frame out before it publishes the new head (so the writer
//! cannot reuse the slot under it). As with guest RAM
//! ([`crate::virtio::GuestRam`]), each is a separate copy in program
//! order, which on x86 (stores not reordered with stores, loads not with
//! loads) gives release and acquire, as long as [`LinkMemory`]
//! implementations neither reorder nor merge their copies and copy an
//! aligned le32 in one access (so the peer never sees half an index).
//!
//! # Not yet
//!
//! Notification: a real link signals the peer after a push (and the
//! writer after a pop frees a full ring) through a manifest-granted
//! notification; that is the VMX program's to wire. A restarted end
//! starts its indices at 0 and must be paired with a fresh peer.

extern crate alloc;

use crate::virtio::net::{FRAME_BYTES_MAX, FRAME_BYTES_MIN, NetPort, TransmitError};

/// Where a half's tail index is.
pub const TAIL_OFFSET: usize = 0;
/// Where a half's head index (of the other half's ring) is.
pub const HEAD_OFFSET: usize = 64;
/// Where a half's slots start.
pub const SLOTS_OFFSET: usize = 128;
/// One slot: a le32 length and room for the longest frame, rounded up.
pub const SLOT_BYTES: usize = 1536;
/// The most slots a half's ring has.
pub const SLOT_COUNT_MAX: u32 = 1 << 16;
/// The bytes of a loopback's memory: eight slots.
pub const LOOPBACK_BYTES: usize = SLOTS_OFFSET + 8 * SLOT_BYTES;

/// The bytes of a slot's length prefix.
const LENGTH_BYTES: usize = 4;

const _: () = assert!(LENGTH_BYTES + FRAME_BYTES_MAX <= SLOT_BYTES, "a slot holds the longest frame");

/// An access outside a half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds;

/// The memory one end of a link sees: its outgoing half, which only it
/// writes, and its incoming half, which only the other end writes.
///
/// Implemented over the PD's mappings of a shared region (volatile copies,
/// in program order, an aligned le32 in one access; see the module's
/// "Ordering"), and over plain memory for a loopback and the tests.
pub trait LinkMemory {
    /// The outgoing half's size in bytes.
    fn outgoing_bytes(&self) -> usize;

    /// The incoming half's size in bytes.
    fn incoming_bytes(&self) -> usize;

    /// Copies `bytes` to `offset` in the outgoing half.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] when any byte is outside the half; nothing is
    /// written then.
    fn write_outgoing(&mut self, offset: usize, bytes: &[u8]) -> Result<(), OutOfBounds>;

    /// Copies `bytes.len()` bytes from `offset` in the incoming half.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] when any byte is outside the half.
    fn read_incoming(&self, offset: usize, bytes: &mut [u8]) -> Result<(), OutOfBounds>;
}

/// How many slots a half of `half_bytes` bytes has: the largest power of
/// two of whole slots after the indices, at most [`SLOT_COUNT_MAX`]; 0 when
/// not even one fits.
#[must_use]
pub const fn slot_count(half_bytes: usize) -> u32 {
    let whole = half_bytes.saturating_sub(SLOTS_OFFSET) / SLOT_BYTES;
    if whole == 0 {
        return 0;
    }
    let mut count: u32 = 1;
    while count < SLOT_COUNT_MAX && count as usize * 2 <= whole {
        count *= 2;
    }
    count
}

/// Why a link cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// A half has no room for one slot.
    HalfTooSmall,
    /// The outgoing half's indices could not be written.
    OutOfBounds,
}

/// Why a frame was not pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Shorter than [`FRAME_BYTES_MIN`] or longer than [`FRAME_BYTES_MAX`].
    InvalidLength,
    /// Every slot holds a frame the peer has not consumed.
    Full,
    /// The peer's head is not within the slot count behind our tail (or
    /// could not be read): the peer broke the protocol.
    PeerFault,
}

/// What one end saw (for the PD's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames written to the outgoing ring.
    pub pushed: u64,
    /// Frames read from the incoming ring.
    pub popped: u64,
    /// Pushes refused: the ring was full.
    pub full: u64,
    /// Pushes and pops refused: the peer's index made no sense.
    pub peer_faults: u64,
    /// Incoming slots skipped: their length was not a frame's.
    pub bad_lengths: u64,
}

/// One end of a link over its [`LinkMemory`].
#[derive(Clone, Debug)]
pub struct LinkPort<M> {
    memory: M,
    /// Frames written to the outgoing ring (ours alone).
    tail: u32,
    /// Frames consumed from the incoming ring (ours alone).
    head: u32,
    outgoing_slots: u32,
    incoming_slots: u32,
    counters: LinkCounters,
}

impl<M: LinkMemory> LinkPort<M> {
    /// The end over `memory`, its indices 0 (published in the outgoing
    /// half). The peer starts at 0 too.
    ///
    /// # Errors
    ///
    /// [`LinkError`] when a half has no room for a slot or cannot be
    /// written.
    pub fn new(mut memory: M) -> Result<Self, LinkError> {
        let outgoing_slots = slot_count(memory.outgoing_bytes());
        let incoming_slots = slot_count(memory.incoming_bytes());
        if outgoing_slots == 0 || incoming_slots == 0 {
            return Err(LinkError::HalfTooSmall);
        }
        for offset in [TAIL_OFFSET, HEAD_OFFSET] {
            memory.write_outgoing(offset, &0_u32.to_le_bytes()).map_err(|OutOfBounds| LinkError::OutOfBounds)?;
        }
        Ok(LinkPort { memory, tail: 0, head: 0, outgoing_slots, incoming_slots, counters: LinkCounters::default() })
    }

    /// The memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// The memory, to change it (the tests play a hostile peer with it).
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }

    /// What this end saw so far.
    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    /// The slots of the outgoing and the incoming ring.
    pub fn slot_counts(&self) -> (u32, u32) {
        (self.outgoing_slots, self.incoming_slots)
    }

    /// Writes `frame` into the outgoing ring.
    ///
    /// # Errors
    ///
    /// [`PushError`]; nothing is published then.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), PushError> {
        let Ok(length) = u32::try_from(frame.len()) else { return Err(PushError::InvalidLength) };
        if !(FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&frame.len()) {
            return Err(PushError::InvalidLength);
        }
        let Some(head) = self.read_incoming_u32(HEAD_OFFSET) else { return Err(self.peer_fault()) };
        let in_flight = self.tail.wrapping_sub(head);
        if in_flight > self.outgoing_slots {
            return Err(self.peer_fault());
        }
        if in_flight == self.outgoing_slots {
            self.counters.full += 1;
            return Err(PushError::Full);
        }
        let slot = slot_offset(self.tail, self.outgoing_slots);
        let written = self.memory.write_outgoing(slot, &length.to_le_bytes()).is_ok()
            && self.memory.write_outgoing(slot + LENGTH_BYTES, frame).is_ok();
        let tail = self.tail.wrapping_add(1);
        // Slots lie inside the half by construction; a failing write is the
        // memory's fault, and then nothing is published.
        if !written || self.memory.write_outgoing(TAIL_OFFSET, &tail.to_le_bytes()).is_err() {
            return Err(PushError::PeerFault);
        }
        self.tail = tail;
        self.counters.pushed += 1;
        Ok(())
    }

    /// Takes the next frame from the incoming ring into `frame`: its
    /// length ([`FRAME_BYTES_MIN`] to [`FRAME_BYTES_MAX`]), or `None` when
    /// none waits or the peer's tail makes no sense. Slots with bad lengths
    /// are skipped and counted.
    pub fn pop(&mut self, frame: &mut [u8; FRAME_BYTES_MAX]) -> Option<usize> {
        let Some(tail) = self.read_incoming_u32(TAIL_OFFSET) else {
            self.peer_fault();
            return None;
        };
        let pending = tail.wrapping_sub(self.head);
        if pending > self.incoming_slots {
            self.peer_fault();
            return None;
        }
        let mut found = None;
        for _ in 0..pending {
            let slot = slot_offset(self.head, self.incoming_slots);
            self.head = self.head.wrapping_add(1);
            let length = self.read_incoming_u32(slot).and_then(|length| usize::try_from(length).ok());
            match length.filter(|length| (FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(length)) {
                Some(length) if self.memory.read_incoming(slot + LENGTH_BYTES, &mut frame[..length]).is_ok() => {
                    found = Some(length);
                    break;
                }
                _ => self.counters.bad_lengths += 1,
            }
        }
        if pending != 0 {
            // Publishing may fail only through the memory's own fault; the
            // peer then sees the ring fuller than it is, which is safe.
            let _ = self.memory.write_outgoing(HEAD_OFFSET, &self.head.to_le_bytes());
        }
        if found.is_some() {
            self.counters.popped += 1;
        }
        found
    }

    fn read_incoming_u32(&self, offset: usize) -> Option<u32> {
        let mut bytes = [0_u8; 4];
        self.memory.read_incoming(offset, &mut bytes).ok()?;
        Some(u32::from_le_bytes(bytes))
    }

    fn peer_fault(&mut self) -> PushError {
        self.counters.peer_faults += 1;
        PushError::PeerFault
    }
}

/// Where the slot of ring index `index` is, in a ring of `slots` (a power
/// of two, not 0) slots.
fn slot_offset(index: u32, slots: u32) -> usize {
    // index % slots < 2^16: the offset stays below 100 MiB.
    SLOTS_OFFSET + (index % slots) as usize * SLOT_BYTES
}

impl<M: LinkMemory> NetPort for LinkPort<M> {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TransmitError> {
        match self.push(frame) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => Err(TransmitError::Full),
            Err(PushError::InvalidLength | PushError::PeerFault) => Err(TransmitError::Unavailable),
        }
    }

    fn receive(&mut self, frame: &mut [u8; FRAME_BYTES_MAX]) -> Option<usize> {
        self.pop(frame)
    }
}

/// Plain memory that is both halves of one link: a loopback. The bytes
/// are on the heap, allocated zeroed there: a PD's stack never holds
/// them, not even on the way.
#[derive(Clone, Debug)]
pub struct LoopbackMemory<const BYTES: usize> {
    bytes: alloc::boxed::Box<[u8]>,
}

impl<const BYTES: usize> Default for LoopbackMemory<BYTES> {
    fn default() -> Self {
        LoopbackMemory { bytes: alloc::vec![0; BYTES].into_boxed_slice() }
    }
}

impl<const BYTES: usize> LinkMemory for LoopbackMemory<BYTES> {
    fn outgoing_bytes(&self) -> usize {
        BYTES
    }

    fn incoming_bytes(&self) -> usize {
        BYTES
    }

    fn write_outgoing(&mut self, offset: usize, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let end = offset.checked_add(bytes.len()).ok_or(OutOfBounds)?;
        self.bytes.get_mut(offset..end).ok_or(OutOfBounds)?.copy_from_slice(bytes);
        Ok(())
    }

    fn read_incoming(&self, offset: usize, bytes: &mut [u8]) -> Result<(), OutOfBounds> {
        let end = offset.checked_add(bytes.len()).ok_or(OutOfBounds)?;
        bytes.copy_from_slice(self.bytes.get(offset..end).ok_or(OutOfBounds)?);
        Ok(())
    }
}

/// A port whose transmitted frames come back as received ones, up to
/// eight waiting: a guest's network device before it has a peer.
pub type Loopback = LinkPort<LoopbackMemory<LOOPBACK_BYTES>>;

impl Loopback {
    /// An empty loopback.
    #[must_use]
    pub fn loopback() -> Self {
        const SLOTS: u32 = slot_count(LOOPBACK_BYTES);
        const { assert!(SLOTS == 8, "a loopback has eight slots") };
        LinkPort {
            memory: LoopbackMemory::default(),
            tail: 0,
            head: 0,
            outgoing_slots: SLOTS,
            incoming_slots: SLOTS,
            counters: LinkCounters::default(),
        }
    }
}

#[cfg(test)]
mod tests;
