//! Fakes for the host tests: guest RAM that records every write, and a
//! driver that lays out a split queue in it the way Linux does.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::mmio::{MAGIC_VALUE, MmioTransport, VERSION, register};
use super::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE};
use super::{
    GuestRam, OutOfRange, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK, VirtioDevice,
};

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
/// Where a queue's three structures are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueLayout {
    pub(crate) descriptor_table: u64,
    pub(crate) available_ring: u64,
    pub(crate) used_ring: u64,
}

/// Queue 0 at the constants above.
pub(crate) const QUEUE_0: QueueLayout =
    QueueLayout { descriptor_table: DESCRIPTOR_TABLE, available_ring: AVAILABLE_RING, used_ring: USED_RING };
/// A second queue, below the buffers (room for 256 entries each).
pub(crate) const QUEUE_1: QueueLayout =
    QueueLayout { descriptor_table: 0x5000, available_ring: 0x6000, used_ring: 0x7000 };
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
    pub(crate) layout: QueueLayout,
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
        Self::with_layout(size, QUEUE_0)
    }

    /// The driver of a queue at `layout`.
    pub(crate) fn with_layout(size: u16, layout: QueueLayout) -> Self {
        TestDriver { layout, size, next_descriptor: 0, available_index: 0, used_seen: 0 }
    }

    /// Writes a raw descriptor-table entry of queue 0.
    pub(crate) fn put_descriptor(ram: &mut FakeRam, index: u16, address: u64, length: u32, flags: u16, next: u16) {
        Self::new(1).write_descriptor(ram, index, address, length, flags, next);
    }

    /// Writes a raw entry of this queue's descriptor table.
    pub(crate) fn write_descriptor(
        &self,
        ram: &mut FakeRam,
        index: u16,
        address: u64,
        length: u32,
        flags: u16,
        next: u16,
    ) {
        let mut raw = [0_u8; 16];
        raw[..8].copy_from_slice(&address.to_le_bytes());
        raw[8..12].copy_from_slice(&length.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        ram.put(self.layout.descriptor_table + 16 * u64::from(index), &raw);
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
            self.write_descriptor(ram, index, element.address, element.length, flags, self.next_descriptor);
        }
        head
    }

    /// Puts `head` in the next available slot and publishes it.
    pub(crate) fn publish(&mut self, ram: &mut FakeRam, head: u16) {
        let slot = u64::from(self.available_index % self.size);
        ram.put_u16(self.layout.available_ring + 4 + 2 * slot, head);
        self.available_index = self.available_index.wrapping_add(1);
        ram.put_u16(self.layout.available_ring + 2, self.available_index);
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
        let published = ram.get_u16(self.layout.used_ring + 2);
        let mut used = Vec::new();
        while self.used_seen != published {
            let slot = u64::from(self.used_seen % self.size);
            let element = self.layout.used_ring + 4 + 8 * slot;
            used.push((ram.get_u32(element), ram.get_u32(element + 4)));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        used
    }
}

/// The low and high 32 bits of `value`.
pub(crate) fn halves(value: u64) -> (u32, u32) {
    let [b0, b1, b2, b3, b4, b5, b6, b7] = value.to_le_bytes();
    (u32::from_le_bytes([b0, b1, b2, b3]), u32::from_le_bytes([b4, b5, b6, b7]))
}

/// A 32-bit register write.
pub(crate) fn write_register<D: VirtioDevice>(
    transport: &mut MmioTransport<D>,
    ram: &mut dyn GuestRam,
    offset: u64,
    value: u32,
) {
    transport.write(offset, 4, value, ram);
}

/// A 32-bit register read.
pub(crate) fn read_register<D: VirtioDevice>(transport: &MmioTransport<D>, offset: u64) -> u32 {
    transport.read(offset, 4)
}

/// Linux's probe of a virtio-mmio device up to FEATURES_OK, as
/// `virtio_mmio.c` and `virtio.c` do it: checks magic and version, resets,
/// ACKNOWLEDGE, DRIVER, reads both feature words, writes `features` back,
/// sets FEATURES_OK. Returns the status read back (the driver checks
/// FEATURES_OK in it).
pub(crate) fn linux_negotiate<D: VirtioDevice>(
    transport: &mut MmioTransport<D>,
    ram: &mut dyn GuestRam,
    features: u64,
) -> u32 {
    assert_eq!(read_register(transport, register::MAGIC_VALUE), MAGIC_VALUE);
    assert_eq!(read_register(transport, register::VERSION), VERSION);
    assert_ne!(read_register(transport, register::DEVICE_ID), 0);
    write_register(transport, ram, register::STATUS, 0);
    assert_eq!(read_register(transport, register::STATUS), 0, "reset");
    write_register(transport, ram, register::STATUS, STATUS_ACKNOWLEDGE);
    write_register(transport, ram, register::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    write_register(transport, ram, register::DEVICE_FEATURES_SELECT, 1);
    let high = read_register(transport, register::DEVICE_FEATURES);
    write_register(transport, ram, register::DEVICE_FEATURES_SELECT, 0);
    let low = read_register(transport, register::DEVICE_FEATURES);
    let offered = u64::from(high) << 32 | u64::from(low);
    assert_eq!(offered, transport.offered_features());
    let (low, high) = halves(features);
    write_register(transport, ram, register::DRIVER_FEATURES_SELECT, 1);
    write_register(transport, ram, register::DRIVER_FEATURES, high);
    write_register(transport, ram, register::DRIVER_FEATURES_SELECT, 0);
    write_register(transport, ram, register::DRIVER_FEATURES, low);
    let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    write_register(transport, ram, register::STATUS, status);
    read_register(transport, register::STATUS)
}

/// Linux's setup of queue `index` at the test layout with `size` entries
/// (`vm_setup_vq`).
pub(crate) fn linux_setup_queue<D: VirtioDevice>(
    transport: &mut MmioTransport<D>,
    ram: &mut dyn GuestRam,
    index: u32,
    size: u32,
) {
    linux_setup_queue_at(transport, ram, index, size, QUEUE_0);
}

/// Linux's setup of queue `index` at `layout` with `size` entries.
pub(crate) fn linux_setup_queue_at<D: VirtioDevice>(
    transport: &mut MmioTransport<D>,
    ram: &mut dyn GuestRam,
    index: u32,
    size: u32,
    layout: QueueLayout,
) {
    write_register(transport, ram, register::QUEUE_SELECT, index);
    assert_eq!(read_register(transport, register::QUEUE_READY), 0, "not in use yet");
    assert!(read_register(transport, register::QUEUE_SIZE_MAX) >= size);
    write_register(transport, ram, register::QUEUE_SIZE, size);
    for (low, address) in [
        (register::QUEUE_DESCRIPTOR_LOW, layout.descriptor_table),
        (register::QUEUE_DRIVER_LOW, layout.available_ring),
        (register::QUEUE_DEVICE_LOW, layout.used_ring),
    ] {
        let (address_low, address_high) = halves(address);
        write_register(transport, ram, low, address_low);
        write_register(transport, ram, low + 4, address_high);
    }
    write_register(transport, ram, register::QUEUE_READY, 1);
}

/// Negotiates `features`, sets queue 0 up with `size` entries and sets
/// DRIVER_OK.
pub(crate) fn linux_bring_up<D: VirtioDevice>(
    transport: &mut MmioTransport<D>,
    ram: &mut dyn GuestRam,
    features: u64,
    size: u32,
) {
    let status = linux_negotiate(transport, ram, features);
    assert_ne!(status & STATUS_FEATURES_OK, 0, "features accepted");
    linux_setup_queue(transport, ram, 0, size);
    assert_eq!(read_register(transport, register::QUEUE_READY), 1);
    write_register(transport, ram, register::STATUS, status | STATUS_DRIVER_OK);
    assert_eq!(read_register(transport, register::STATUS), status | STATUS_DRIVER_OK);
}

/// Negotiates `features`, sets queue 0 up at [`QUEUE_0`] and queue 1 at
/// [`QUEUE_1`] with `size` entries each and sets DRIVER_OK: a device with a
/// receive and a transmit queue (net, console). Their drivers.
pub(crate) fn linux_bring_up_pair<D: VirtioDevice>(
    transport: &mut MmioTransport<D>,
    ram: &mut dyn GuestRam,
    features: u64,
    size: u16,
) -> (TestDriver, TestDriver) {
    let status = linux_negotiate(transport, ram, features);
    assert_ne!(status & STATUS_FEATURES_OK, 0, "features accepted");
    for (queue, layout) in [(0, QUEUE_0), (1, QUEUE_1)] {
        linux_setup_queue_at(transport, ram, queue, u32::from(size), layout);
    }
    write_register(transport, ram, register::STATUS, status | STATUS_DRIVER_OK);
    (TestDriver::with_layout(size, QUEUE_0), TestDriver::with_layout(size, QUEUE_1))
}

/// Guest RAM that checks each write the device makes: it must fall inside
/// the used ring's idx and elements, or inside a device-writable buffer of
/// a descriptor that was in the table at some point since the queue was
/// configured ([`CheckedRam::watch`]). The table can change under the
/// device only by its own writes, so the allowed set is the table as it
/// was, plus what each write put there.
#[derive(Clone, Debug)]
pub(crate) struct CheckedRam {
    pub(crate) ram: FakeRam,
    /// (descriptor table, size, used ring) of each watched queue.
    watched: Vec<(u64, u16, u64)>,
    /// Writable buffers seen in the table: (start, end).
    allowed: Vec<(u64, u64)>,
    /// Writes outside every allowed range.
    pub(crate) violations: Vec<(u64, usize)>,
}

impl CheckedRam {
    pub(crate) fn new(ram: FakeRam) -> Self {
        CheckedRam { ram, watched: Vec::new(), allowed: Vec::new(), violations: Vec::new() }
    }

    /// Checks writes against this queue from now on (`None`: the device may
    /// write nothing).
    pub(crate) fn watch(&mut self, queue: Option<(u64, u16, u64)>) {
        self.watch_all(queue.as_slice());
    }

    /// Checks writes against these queues from now on.
    pub(crate) fn watch_all(&mut self, queues: &[(u64, u16, u64)]) {
        self.watched = queues.to_vec();
        self.allowed.clear();
        self.collect_writable_buffers();
    }

    fn collect_writable_buffers(&mut self) {
        for (table, size, _) in self.watched.clone() {
            self.collect_queue_buffers(table, size);
        }
    }

    fn collect_queue_buffers(&mut self, table: u64, size: u16) {
        for index in 0..u64::from(size) {
            // Straight from the bytes: the oracle's reads are not the
            // device's, which the tests count.
            let Some(range) = table.checked_add(16 * index).and_then(|entry| self.ram.range(entry, 16)) else {
                continue;
            };
            let raw = &self.ram.bytes[range];
            let address = u64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
            let length = u64::from(u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")));
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            if flags & DESCRIPTOR_WRITE != 0
                && let Some(end) = address.checked_add(length)
            {
                self.allowed.push((address, end));
            }
        }
    }

    fn is_allowed(&self, address: u64, length: usize) -> bool {
        let Some(end) = address.checked_add(length as u64) else { return false };
        let in_used_ring = |&(_, size, used): &(u64, u16, u64)| {
            let used_start = used + 2;
            let used_end = used + 4 + 8 * u64::from(size);
            address >= used_start && end <= used_end
        };
        self.watched.iter().any(in_used_ring)
            || self.allowed.iter().any(|&(start, stop)| address >= start && end <= stop)
    }
}

impl GuestRam for CheckedRam {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), OutOfRange> {
        self.ram.read(guest_physical, bytes)
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        if !self.is_allowed(guest_physical, bytes.len()) {
            self.violations.push((guest_physical, bytes.len()));
        }
        self.ram.write(guest_physical, bytes)?;
        self.collect_writable_buffers();
        Ok(())
    }
}
