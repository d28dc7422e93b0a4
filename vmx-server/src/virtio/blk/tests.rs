extern crate std;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::virtio::mmio::{INTERRUPT_USED_BUFFER, MmioTransport, register};
use crate::virtio::queue::{DESCRIPTOR_NEXT, DESCRIPTOR_WRITE};
use crate::virtio::test_support::{
    BUFFERS, Element, FakeRam, RAM_BYTES, TestDriver, linux_bring_up, read_register, readable, writable, write_register,
};
use crate::virtio::{STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK};

/// Sectors of the test disk.
const DISK_SECTORS: u64 = 64;

/// A memory disk that counts flushes and fails on demand.
#[derive(Clone, Debug)]
struct TestDisk {
    disk: MemoryDisk<Vec<u8>>,
    flushes: usize,
    fail_reads: bool,
    fail_writes: bool,
    fail_flushes: bool,
}

impl TestDisk {
    /// Sector `n` is filled with byte `n`.
    fn new() -> Self {
        let bytes = (0..DISK_SECTORS).flat_map(|sector| vec![u8::try_from(sector).expect("small"); 512]).collect();
        TestDisk {
            disk: MemoryDisk::new(bytes),
            flushes: 0,
            fail_reads: false,
            fail_writes: false,
            fail_flushes: false,
        }
    }
}

impl BlockBackend for TestDisk {
    fn sectors(&self) -> u64 {
        self.disk.sectors()
    }

    fn read(&mut self, sector: u64, bytes: &mut [u8]) -> Result<(), BackendError> {
        if self.fail_reads {
            return Err(BackendError);
        }
        self.disk.read(sector, bytes)
    }

    fn write(&mut self, sector: u64, bytes: &[u8]) -> Result<(), BackendError> {
        if self.fail_writes {
            return Err(BackendError);
        }
        self.disk.write(sector, bytes)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.flushes += 1;
        if self.fail_flushes { Err(BackendError) } else { Ok(()) }
    }
}

/// A block device brought up by a Linux-like driver.
struct Harness {
    transport: MmioTransport<Block<TestDisk>>,
    ram: FakeRam,
    driver: TestDriver,
}

/// Where requests' parts go.
const HEADER: u64 = BUFFERS;
const DATA: u64 = BUFFERS + 0x1000;
const STATUS: u64 = BUFFERS + 0x100;
const QUEUE_SIZE: u16 = 128;

impl Harness {
    fn with_features(features: u64) -> Self {
        let mut transport = MmioTransport::new(Block::new(TestDisk::new(), b"bulkhead-disk-0"));
        let mut ram = FakeRam::new(0, RAM_BYTES);
        linux_bring_up(&mut transport, &mut ram, features, u32::from(QUEUE_SIZE));
        Harness { transport, ram, driver: TestDriver::new(QUEUE_SIZE) }
    }

    fn new() -> Self {
        Self::with_features(FEATURES)
    }

    fn header(&mut self, request_type: u32, sector: u64) {
        let mut header = [0_u8; 16];
        header[..4].copy_from_slice(&request_type.to_le_bytes());
        header[4..8].copy_from_slice(&0xffff_ffff_u32.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.ram.put(HEADER, &header);
        self.ram.put(STATUS, &[0xee]);
    }

    /// Publishes a chain, notifies, returns the used length.
    fn submit(&mut self, elements: &[Element]) -> u32 {
        let head = self.driver.add(&mut self.ram, elements);
        self.notify_expecting(head)
    }

    fn notify_expecting(&mut self, head: u16) -> u32 {
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, 0);
        let used = self.driver.take_used(&self.ram);
        assert_eq!(used.len(), 1, "one request, one used element");
        assert_eq!(used[0].0, u32::from(head));
        assert!(self.transport.interrupt_line());
        write_register(&mut self.transport, &mut self.ram, register::INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
        used[0].1
    }

    fn status(&self) -> u8 {
        self.ram.get(STATUS, 1)[0]
    }

    fn disk(&self) -> &[u8] {
        self.transport.device().backend().disk.bytes()
    }

    /// A good two-sector read at sector 5 works (the device still works).
    fn assert_a_good_read_works(&mut self) {
        self.header(REQUEST_IN, 5);
        self.ram.put(DATA, &[0; 1024]);
        let length = self.submit(&[readable(HEADER, 16), writable(DATA, 1024), writable(STATUS, 1)]);
        assert_eq!(self.status(), STATUS_OK);
        assert_eq!(length, 1025);
        assert_eq!(self.ram.get(DATA, 512), vec![5; 512]);
        assert_eq!(self.ram.get(DATA + 512, 512), vec![6; 512]);
        assert_eq!(self.transport.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    }
}

#[test]
fn the_configuration_space_has_capacity_seg_max_and_block_size() {
    let harness = Harness::new();
    let transport = &harness.transport;
    assert_eq!(read_register(transport, register::DEVICE_ID), 2);
    assert_eq!(transport.offered_features(), FEATURES);
    assert_eq!(FEATURES, 1 << 32 | 1 << 9 | 1 << 6 | 1 << 2);
    assert_eq!(transport.read(0x100, 4), 64, "capacity low");
    assert_eq!(transport.read(0x104, 4), 0, "capacity high");
    assert_eq!(transport.read(0x10c, 4), 126, "seg_max");
    assert_eq!(transport.read(0x114, 4), 512, "blk_size");
    assert_eq!(transport.read(0x114, 2), 512);
    assert_eq!(transport.read(0x115, 1), 2);
    for offset in [0x108, 0x110, 0x118, 0x11c, 0x120, 0x124, 0x1fc] {
        assert_eq!(transport.read(offset, 4), 0, "{offset:#x}");
    }
    let mut queue_max = harness.transport;
    write_register(&mut queue_max, &mut FakeRam::new(0, 0), register::QUEUE_SELECT, 0);
    assert_eq!(read_register(&queue_max, register::QUEUE_SIZE_MAX), 128);
}

#[test]
fn configuration_writes_are_ignored() {
    let mut harness = Harness::new();
    harness.transport.write(0x100, 4, 0xffff_ffff, &mut harness.ram);
    harness.transport.write(0x120, 1, 1, &mut harness.ram);
    assert_eq!(harness.transport.read(0x100, 4), 64);
    assert_eq!(harness.transport.read(0x120, 1), 0);
}

#[test]
fn a_large_capacity_reads_as_two_halves() {
    let device = Block::new(MemoryDisk::new(vec![0_u8; 3 * 512]), b"");
    let mut config = [0_u8; 8];
    device.read_config(0, &mut config);
    assert_eq!(u64::from_le_bytes(config), 3);
    struct Huge;
    impl BlockBackend for Huge {
        fn sectors(&self) -> u64 {
            0x1_2345_6789
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), BackendError> {
            Err(BackendError)
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), BackendError> {
            Err(BackendError)
        }
        fn flush(&mut self) -> Result<(), BackendError> {
            Ok(())
        }
    }
    let transport = MmioTransport::new(Block::new(Huge, b""));
    assert_eq!(transport.read(0x100, 4), 0x2345_6789);
    assert_eq!(transport.read(0x104, 4), 1);
}

#[test]
fn a_read_fills_the_data_buffers_and_reports_its_length() {
    let mut harness = Harness::new();
    harness.header(REQUEST_IN, 2);
    let length =
        harness.submit(&[readable(HEADER, 16), writable(DATA, 512), writable(DATA + 0x800, 1024), writable(STATUS, 1)]);
    assert_eq!(harness.status(), STATUS_OK);
    assert_eq!(length, 1537);
    assert_eq!(harness.ram.get(DATA, 512), vec![2; 512]);
    assert_eq!(harness.ram.get(DATA + 0x800, 512), vec![3; 512]);
    assert_eq!(harness.ram.get(DATA + 0xa00, 512), vec![4; 512]);
    assert_eq!(harness.transport.device().counters().ok, 1);
}

#[test]
fn a_read_of_the_last_sector_works() {
    let mut harness = Harness::new();
    harness.header(REQUEST_IN, DISK_SECTORS - 1);
    let length = harness.submit(&[readable(HEADER, 16), writable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 513));
    assert_eq!(harness.ram.get(DATA, 512), vec![63; 512]);
}

#[test]
fn a_write_stores_the_data() {
    let mut harness = Harness::new();
    harness.header(REQUEST_OUT, 7);
    harness.ram.put(DATA, &[0xab; 512]);
    harness.ram.put(DATA + 0x800, &[0xcd; 512]);
    let length =
        harness.submit(&[readable(HEADER, 16), readable(DATA, 512), readable(DATA + 0x800, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 1));
    assert_eq!(&harness.disk()[7 * 512..8 * 512], &[0xab; 512]);
    assert_eq!(&harness.disk()[8 * 512..9 * 512], &[0xcd; 512]);
    assert_eq!(&harness.disk()[9 * 512..10 * 512], &[9; 512]);
    assert_eq!(harness.transport.device().backend().flushes, 0, "FLUSH negotiated: no flush per write");
}

#[test]
fn without_flush_negotiated_every_write_is_flushed() {
    let mut harness = Harness::with_features(FEATURE_VERSION_1 | FEATURE_SEG_MAX);
    harness.header(REQUEST_OUT, 0);
    let length = harness.submit(&[readable(HEADER, 16), readable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 1));
    assert_eq!(harness.transport.device().backend().flushes, 1);
    harness.transport.device_mut().backend_mut().fail_flushes = true;
    harness.header(REQUEST_OUT, 0);
    harness.submit(&[readable(HEADER, 16), readable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!(harness.status(), STATUS_IOERR);
}

#[test]
fn the_framing_of_header_data_and_status_does_not_matter() {
    // Header split in two, data and status in one writable descriptor.
    let mut harness = Harness::new();
    harness.header(REQUEST_IN, 3);
    let length = harness.submit(&[readable(HEADER, 5), readable(HEADER + 5, 11), writable(DATA, 513)]);
    assert_eq!(length, 513);
    assert_eq!(harness.ram.get(DATA, 512), vec![3; 512]);
    assert_eq!(harness.ram.get(DATA + 512, 1), vec![STATUS_OK]);
    // Header and data in one readable descriptor for a write.
    let mut harness = Harness::new();
    let mut request = vec![0_u8; 16 + 512];
    request[..4].copy_from_slice(&REQUEST_OUT.to_le_bytes());
    request[8..16].copy_from_slice(&9_u64.to_le_bytes());
    request[16..].fill(0x5a);
    harness.ram.put(DATA, &request);
    harness.ram.put(STATUS, &[0xee]);
    let length = harness.submit(&[readable(DATA, 528), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 1));
    assert_eq!(&harness.disk()[9 * 512..10 * 512], &[0x5a; 512]);
}

#[test]
fn flush_flushes_the_backend() {
    let mut harness = Harness::new();
    harness.header(REQUEST_FLUSH, 0);
    let length = harness.submit(&[readable(HEADER, 16), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 1));
    assert_eq!(harness.transport.device().backend().flushes, 1);
    harness.transport.device_mut().backend_mut().fail_flushes = true;
    harness.header(REQUEST_FLUSH, 0);
    harness.submit(&[readable(HEADER, 16), writable(STATUS, 1)]);
    assert_eq!(harness.status(), STATUS_IOERR);
    assert_eq!(harness.transport.device().counters().io_errors, 1);
}

#[test]
fn get_id_returns_the_padded_id() {
    let mut harness = Harness::new();
    harness.header(REQUEST_GET_ID, 0);
    harness.ram.put(DATA, &[0xff; 20]);
    let length = harness.submit(&[readable(HEADER, 16), writable(DATA, 20), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 21));
    assert_eq!(harness.ram.get(DATA, 20), b"bulkhead-disk-0\0\0\0\0\0");
    // A 20-byte ID has no NUL; a longer one is cut.
    let device = Block::new(MemoryDisk::new(vec![0_u8; 512]), b"0123456789abcdefghijKLM");
    assert_eq!(&device.id, b"0123456789abcdefghij");
    // A short buffer gets what fits.
    harness.header(REQUEST_GET_ID, 0);
    harness.ram.put(DATA, &[0xff; 20]);
    let length = harness.submit(&[readable(HEADER, 16), writable(DATA, 4), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_OK, 5));
    assert_eq!(harness.ram.get(DATA, 5), b"bulk\xff");
}

#[test]
fn unknown_request_types_are_unsupported() {
    let mut harness = Harness::new();
    for request_type in [2, 3, 5, 10, 11, 13, 14, 0x8000_0000, u32::MAX] {
        harness.header(request_type, 0);
        let length = harness.submit(&[readable(HEADER, 16), writable(DATA, 512), writable(STATUS, 1)]);
        assert_eq!(harness.status(), STATUS_UNSUPP, "type {request_type}");
        assert_eq!(length, 0, "the data before the status was not written");
    }
    assert_eq!(harness.transport.device().counters().unsupported, 9);
    harness.assert_a_good_read_works();
}

#[test]
fn sectors_past_the_end_are_an_io_error_and_move_nothing() {
    let mut harness = Harness::new();
    let disk_before = harness.disk().to_vec();
    for (request_type, sector, data_bytes) in [
        (REQUEST_IN, DISK_SECTORS, 512),
        (REQUEST_IN, DISK_SECTORS - 1, 1024),
        (REQUEST_IN, u64::MAX, 512),
        (REQUEST_IN, u64::MAX / 512 + 1, 512),
        (REQUEST_OUT, DISK_SECTORS, 512),
        (REQUEST_OUT, DISK_SECTORS - 1, 1024),
        (REQUEST_OUT, u64::MAX, 512),
    ] {
        harness.header(request_type, sector);
        harness.ram.put(DATA, &[0x77; 1024]);
        let data = if request_type == REQUEST_IN { writable(DATA, data_bytes) } else { readable(DATA, data_bytes) };
        let length = harness.submit(&[readable(HEADER, 16), data, writable(STATUS, 1)]);
        assert_eq!(harness.status(), STATUS_IOERR, "type {request_type} sector {sector}");
        assert_eq!(length, u32::from(request_type == REQUEST_OUT), "type {request_type} sector {sector}");
        assert_eq!(harness.ram.get(DATA, 1024), vec![0x77; 1024], "no data read into the guest");
        assert_eq!(harness.disk(), disk_before.as_slice(), "no data written to the disk");
    }
    harness.assert_a_good_read_works();
}

#[test]
fn data_that_is_not_whole_sectors_is_an_io_error() {
    let mut harness = Harness::new();
    for data_bytes in [1, 511, 513, 1000] {
        harness.header(REQUEST_IN, 0);
        harness.submit(&[readable(HEADER, 16), writable(DATA, data_bytes), writable(STATUS, 1)]);
        assert_eq!(harness.status(), STATUS_IOERR, "{data_bytes}");
        harness.header(REQUEST_OUT, 0);
        harness.submit(&[readable(HEADER, 16), readable(DATA, data_bytes), writable(STATUS, 1)]);
        assert_eq!(harness.status(), STATUS_IOERR, "{data_bytes}");
    }
    harness.assert_a_good_read_works();
}

#[test]
fn data_in_the_wrong_direction_is_an_io_error() {
    let mut harness = Harness::new();
    let disk_before = harness.disk().to_vec();
    // A read whose data buffer is device-readable.
    harness.header(REQUEST_IN, 0);
    harness.ram.put(DATA, &[0x77; 512]);
    let length = harness.submit(&[readable(HEADER, 16), readable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 1));
    assert_eq!(harness.ram.get(DATA, 512), vec![0x77; 512]);
    // A write whose data buffer is device-writable.
    harness.header(REQUEST_OUT, 0);
    let length = harness.submit(&[readable(HEADER, 16), writable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 0));
    assert_eq!(harness.ram.get(DATA, 512), vec![0x77; 512]);
    assert_eq!(harness.disk(), disk_before.as_slice());
    harness.assert_a_good_read_works();
}

#[test]
fn a_chain_without_a_writable_byte_is_returned_untouched() {
    let mut harness = Harness::new();
    harness.header(REQUEST_IN, 0);
    let writes_before = harness.ram.writes.len();
    let length = harness.submit(&[readable(HEADER, 16), readable(DATA, 512)]);
    assert_eq!(length, 0);
    assert_eq!(harness.status(), 0xee);
    // Only the used element and index were written.
    assert_eq!(harness.ram.writes.len() - writes_before, 2);
    assert_eq!(harness.transport.device().counters().without_status, 1);
    // Also with an empty writable descriptor.
    harness.header(REQUEST_FLUSH, 0);
    assert_eq!(harness.submit(&[readable(HEADER, 16), writable(STATUS, 0)]), 0);
    assert_eq!(harness.status(), 0xee);
    harness.assert_a_good_read_works();
}

#[test]
fn a_short_header_is_an_io_error() {
    let mut harness = Harness::new();
    harness.header(REQUEST_IN, 0);
    let length = harness.submit(&[readable(HEADER, 8), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 1));
    // No readable part at all.
    harness.ram.put(STATUS, &[0xee]);
    let length = harness.submit(&[writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 1));
    harness.assert_a_good_read_works();
}

#[test]
fn buffers_outside_ram_are_an_io_error() {
    let mut harness = Harness::new();
    let outside = u64::try_from(RAM_BYTES).expect("small");
    // Read data outside RAM.
    harness.header(REQUEST_IN, 0);
    let length = harness.submit(&[readable(HEADER, 16), writable(outside, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 0));
    // Read data straddling the end of RAM: the part inside may be written.
    harness.header(REQUEST_IN, 0);
    let length = harness.submit(&[readable(HEADER, 16), writable(outside - 256, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 0));
    // Write data outside RAM: the disk is untouched.
    let disk_before = harness.disk().to_vec();
    harness.header(REQUEST_OUT, 0);
    let length = harness.submit(&[readable(HEADER, 16), readable(outside + 0x1000, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 1));
    assert_eq!(harness.disk(), disk_before.as_slice());
    // The header outside RAM.
    harness.ram.put(STATUS, &[0xee]);
    let length = harness.submit(&[readable(u64::MAX - 16, 16), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 1));
    // The status outside RAM: nothing to report it in, length 0.
    harness.header(REQUEST_FLUSH, 0);
    let length = harness.submit(&[readable(HEADER, 16), writable(outside, 1)]);
    assert_eq!(length, 0);
    harness.assert_a_good_read_works();
}

#[test]
fn descriptor_lengths_of_0_and_nearly_4_gib_are_survived() {
    let mut harness = Harness::new();
    // A read into a buffer of 4 GiB - 32: more than the disk; its status
    // byte would be far outside RAM.
    harness.header(REQUEST_IN, 0);
    let length = harness.submit(&[readable(HEADER, 16), writable(DATA, u32::MAX - 32)]);
    assert_eq!(length, 0);
    assert_eq!(harness.ram.get(DATA, 16), vec![0; 16], "nothing read");
    // Zero-length descriptors everywhere.
    harness.header(REQUEST_IN, 1);
    let length = harness.submit(&[
        readable(HEADER, 0),
        readable(HEADER, 16),
        readable(HEADER, 0),
        writable(DATA, 0),
        writable(DATA, 512),
        writable(STATUS, 1),
        writable(STATUS, 0),
    ]);
    assert_eq!((harness.status(), length), (STATUS_OK, 513));
    assert_eq!(harness.ram.get(DATA, 512), vec![1; 512]);
    harness.assert_a_good_read_works();
}

#[test]
fn backend_failures_are_io_errors() {
    let mut harness = Harness::new();
    harness.transport.device_mut().backend_mut().fail_reads = true;
    harness.header(REQUEST_IN, 0);
    harness.ram.put(DATA, &[0x77; 512]);
    let length = harness.submit(&[readable(HEADER, 16), writable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 0));
    harness.transport.device_mut().backend_mut().fail_writes = true;
    harness.header(REQUEST_OUT, 0);
    let length = harness.submit(&[readable(HEADER, 16), readable(DATA, 512), writable(STATUS, 1)]);
    assert_eq!((harness.status(), length), (STATUS_IOERR, 1));
    let backend = harness.transport.device_mut().backend_mut();
    backend.fail_reads = false;
    backend.fail_writes = false;
    harness.assert_a_good_read_works();
}

#[test]
fn hostile_chains_are_refused_and_the_device_keeps_working() {
    let mut harness = Harness::new();
    // A loop a -> b -> a.
    harness.header(REQUEST_IN, 0);
    TestDriver::put_descriptor(&mut harness.ram, 0, HEADER, 16, DESCRIPTOR_NEXT, 1);
    TestDriver::put_descriptor(&mut harness.ram, 1, STATUS, 1, DESCRIPTOR_NEXT | DESCRIPTOR_WRITE, 0);
    harness.driver.publish(&mut harness.ram, 0);
    assert_eq!(harness.notify_expecting(0), 0);
    assert_eq!(harness.status(), 0xee, "a refused chain gets no status");
    // next out of range.
    TestDriver::put_descriptor(&mut harness.ram, 1, STATUS, 1, DESCRIPTOR_NEXT | DESCRIPTOR_WRITE, QUEUE_SIZE);
    harness.driver.publish(&mut harness.ram, 0);
    assert_eq!(harness.notify_expecting(0), 0);
    // head out of range.
    harness.driver.publish(&mut harness.ram, QUEUE_SIZE + 3);
    assert_eq!(harness.notify_expecting(QUEUE_SIZE + 3), 0);
    assert_eq!(harness.transport.queue(0).map(|queue| queue.refused_chains()), Some(3));
    harness.driver.next_descriptor = 2;
    harness.assert_a_good_read_works();
}

#[test]
fn a_request_with_seg_max_segments_fills_the_ring() {
    let mut harness = Harness::new();
    harness.header(REQUEST_IN, 0);
    let mut elements = vec![readable(HEADER, 16)];
    let segments = u64::from(SEGMENTS_MAX);
    for segment in 0..segments {
        elements.push(writable(DATA + 512 * (segment % 32), 512));
    }
    elements.push(writable(STATUS, 1));
    assert_eq!(elements.len(), usize::from(QUEUE_SIZE));
    let length = harness.submit(&elements);
    assert_eq!(harness.status(), STATUS_IOERR, "126 sectors from sector 0 is more than the 64-sector disk");
    assert_eq!(length, 0);
    // Within the disk: 60 segments.
    harness.header(REQUEST_IN, 2);
    let mut elements = vec![readable(HEADER, 16)];
    for segment in 0..60 {
        elements.push(writable(DATA + 512 * segment, 512));
    }
    elements.push(writable(STATUS, 1));
    let length = harness.submit(&elements);
    assert_eq!((harness.status(), length), (STATUS_OK, 60 * 512 + 1));
    assert_eq!(harness.ram.get(DATA + 512 * 59, 512), vec![61; 512]);
}

#[test]
fn the_device_serves_nothing_until_driver_ok_and_reset_clears_negotiation() {
    let mut transport = MmioTransport::new(Block::new(TestDisk::new(), b""));
    let mut ram = FakeRam::new(0, RAM_BYTES);
    linux_bring_up(&mut transport, &mut ram, FEATURES, 128);
    assert!(transport.device().flush_negotiated);
    write_register(&mut transport, &mut ram, register::STATUS, 0);
    assert!(!transport.device().flush_negotiated);
    assert_eq!(read_register(&transport, register::STATUS) & (STATUS_FEATURES_OK | STATUS_DRIVER_OK), 0);
}

#[test]
fn memory_disks_check_their_bounds() {
    let mut disk = MemoryDisk::new(vec![0_u8; 2 * 512 + 100]);
    assert_eq!(disk.sectors(), 2, "the partial sector is not part of the disk");
    let mut buffer = [0_u8; 512];
    assert_eq!(disk.read(1, &mut buffer), Ok(()));
    assert_eq!(disk.read(2, &mut buffer), Err(BackendError));
    assert_eq!(disk.write(2, &buffer), Err(BackendError));
    assert_eq!(disk.read(u64::MAX, &mut buffer), Err(BackendError));
    assert_eq!(disk.write(1, &[1; 1024]), Err(BackendError));
    assert_eq!(disk.write(1, &[1; 512]), Ok(()));
    assert_eq!(&disk.bytes()[512..1024], &[1; 512]);
    assert_eq!(disk.flush(), Ok(()));
}
