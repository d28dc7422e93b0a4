//! Fakes for the host tests: guest RAM that records every write, and a
//! driver that lays out a split queue in it the way Linux does.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE};
use super::{GuestRam, OutOfRange};

/// Guest RAM at `[base, base + bytes.len())`, recording each write.
#[derive(Clone, Debug)]
pub(crate) struct FakeRam {
    pub(crate) base: u64,
    pub(crate) bytes: Vec<u8>,
    /// Every successful write: (address, length).
    pub(crate) writes: Vec<(u64, usize)>,
    /// How many reads were made (successful or not).
    pub(crate) reads: std::cell::Cell<usize>,
}

impl FakeRam {
    pub(crate) fn new(base: u64, length: usize) -> Self {
        FakeRam { base, bytes: vec![0; length], writes: Vec::new(), reads: std::cell::Cell::new(0) }
    }

    /// The slice index range of `[address, address + length)`, if inside.
    pub(crate) fn range(&self, address: u64, length: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(address.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(length)?;
        (end <= self.bytes.len()).then_some(start..end)
    }

    pub(crate) fn put(&mut self, address: u64, bytes: &[u8]) {
        let range = self.range(address, bytes.len()).expect("test layout inside RAM");
        self.bytes[range].copy_from_slice(bytes);
    }

    pub(crate) fn get(&self, address: u64, length: usize) -> Vec<u8> {
        let range = self.range(address, length).expect("test layout inside RAM");
        self.bytes[range].to_vec()
    }

    pub(crate) fn put_u16(&mut self, address: u64, value: u16) {
        self.put(address, &value.to_le_bytes());
    }

    pub(crate) fn get_u16(&self, address: u64) -> u16 {
        let bytes = self.get(address, 2);
        u16::from_le_bytes([bytes[0], bytes[1]])
    }

    pub(crate) fn get_u32(&self, address: u64) -> u32 {
        let bytes = self.get(address, 4);
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

impl GuestRam for FakeRam {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), OutOfRange> {
        self.reads.set(self.reads.get() + 1);
        let range = self.range(guest_physical, bytes.len()).ok_or(OutOfRange)?;
        bytes.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        let range = self.range(guest_physical, bytes.len()).ok_or(OutOfRange)?;
        self.bytes[range].copy_from_slice(bytes);
        self.writes.push((guest_physical, bytes.len()));
        Ok(())
    }
}

/// Where [`TestDriver`] puts a queue's structures and buffers.
pub(crate) const DESCRIPTOR_TABLE: u64 = 0x1000;
pub(crate) const AVAILABLE_RING: u64 = 0x3000;
pub(crate) const USED_RING: u64 = 0x4000;
/// Buffers go from here on.
pub(crate) const BUFFERS: u64 = 0x8000;
/// RAM size for the driver's layout (64 KiB + the buffers' room).
pub(crate) const RAM_BYTES: usize = 0x4_0000;

/// A buffer element of a chain to build: address, length, writable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Element {
    pub(crate) address: u64,
    pub(crate) length: u32,
    pub(crate) writable: bool,
}

pub(crate) fn readable(address: u64, length: u32) -> Element {
    Element { address, length, writable: false }
}

pub(crate) fn writable(address: u64, length: u32) -> Element {
    Element { address, length, writable: true }
}

/// The driver side of one split queue in a [`FakeRam`]: free descriptors
/// taken in order, chains published in the available ring.
#[derive(Clone, Debug)]
pub(crate) struct TestDriver {
    pub(crate) size: u16,
    /// The next descriptor index to hand out (wrapping at `size`).
    pub(crate) next_descriptor: u16,
    /// The available idx published so far.
    pub(crate) available_index: u16,
    /// The used idx consumed so far.
    pub(crate) used_seen: u16,
}

impl TestDriver {
    pub(crate) fn new(size: u16) -> Self {
        TestDriver { size, next_descriptor: 0, available_index: 0, used_seen: 0 }
    }

    /// Writes a raw descriptor-table entry.
    pub(crate) fn put_descriptor(ram: &mut FakeRam, index: u16, address: u64, length: u32, flags: u16, next: u16) {
        let mut raw = [0_u8; 16];
        raw[..8].copy_from_slice(&address.to_le_bytes());
        raw[8..12].copy_from_slice(&length.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        ram.put(DESCRIPTOR_TABLE + 16 * u64::from(index), &raw);
    }

    /// Writes the elements as a chain of fresh descriptors; its head.
    pub(crate) fn build_chain(&mut self, ram: &mut FakeRam, elements: &[Element]) -> u16 {
        let head = self.next_descriptor;
        for (position, element) in elements.iter().enumerate() {
            let index = self.next_descriptor;
            self.next_descriptor = (self.next_descriptor + 1) % self.size;
            let last = position + 1 == elements.len();
            let mut flags = if element.writable { DESCRIPTOR_WRITE } else { 0 };
            if !last {
                flags |= DESCRIPTOR_NEXT;
            }
            Self::put_descriptor(ram, index, element.address, element.length, flags, self.next_descriptor);
        }
        head
    }

    /// Puts `head` in the next available slot and publishes it.
    pub(crate) fn publish(&mut self, ram: &mut FakeRam, head: u16) {
        let slot = u64::from(self.available_index % self.size);
        ram.put_u16(AVAILABLE_RING + 4 + 2 * slot, head);
        self.available_index = self.available_index.wrapping_add(1);
        ram.put_u16(AVAILABLE_RING + 2, self.available_index);
    }

    /// Builds and publishes a chain; its head.
    pub(crate) fn add(&mut self, ram: &mut FakeRam, elements: &[Element]) -> u16 {
        let head = self.build_chain(ram, elements);
        self.publish(ram, head);
        head
    }

    /// The used elements (id, len) the device published since the last
    /// call.
    pub(crate) fn take_used(&mut self, ram: &FakeRam) -> Vec<(u32, u32)> {
        let published = ram.get_u16(USED_RING + 2);
        let mut used = Vec::new();
        while self.used_seen != published {
            let slot = u64::from(self.used_seen % self.size);
            let element = USED_RING + 4 + 8 * slot;
            used.push((ram.get_u32(element), ram.get_u32(element + 4)));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        used
    }
}
