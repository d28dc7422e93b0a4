//! Property tests across the transport, the queue and the block device:
//! hostile register traffic and hostile descriptor tables never panic,
//! never write guest memory outside the used ring and the chains'
//! device-writable buffers, and serve at most the queue size of chains per
//! notify.

extern crate std;

use std::vec::Vec;

use proptest::prelude::*;

use super::blk::{Block, MemoryDisk, REQUEST_FLUSH, REQUEST_GET_ID, REQUEST_IN, REQUEST_OUT, STATUS_OK};
use super::mmio::{MAGIC_VALUE, MmioTransport, VERSION, register};
use super::test_support::{
    AVAILABLE_RING, BUFFERS, CheckedRam, DESCRIPTOR_TABLE, Element, FakeRam, TestDriver, USED_RING, linux_bring_up,
    read_register, readable, writable, write_register,
};
use super::{STATUS_DRIVER_OK, STATUS_FEATURES_OK};

/// RAM for the property tests: 64 KiB.
const RAM_BYTES: usize = 0x1_0000;
/// Sectors of the disk.
const DISK_SECTORS: usize = 64;

type TestBlock = Block<MemoryDisk<Vec<u8>>>;

fn new_transport() -> MmioTransport<TestBlock> {
    let disk: Vec<u8> = (0..DISK_SECTORS * 512).map(|byte| u8::try_from(byte / 512).unwrap_or(0)).collect();
    MmioTransport::new(Block::new(MemoryDisk::new(disk), b"proptest"))
}

/// RAM filled from `seed` with a xorshift generator.
fn random_ram(seed: u64) -> FakeRam {
    let mut ram = FakeRam::new(0, RAM_BYTES);
    let mut state = seed | 1;
    for byte in &mut ram.bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state.to_le_bytes()[0];
    }
    ram
}

/// What the device may write: queue 0 as configured, if ready.
fn watched_queue(transport: &MmioTransport<TestBlock>) -> Option<(u64, u16, u64)> {
    let queue = transport.queue(0)?;
    queue.is_ready().then(|| (queue.descriptor_table(), queue.size(), queue.used_ring()))
}

/// Checks a notify's work: at most the queue size of chains returned, and
/// a bounded number of guest-memory reads for them.
fn check_notify_bound(
    transport: &MmioTransport<TestBlock>,
    used_before: u16,
    reads: usize,
) -> Result<(), TestCaseError> {
    let Some(queue) = transport.queue(0) else { return Ok(()) };
    let size = usize::from(queue.size().max(1));
    let returned = usize::from(queue.next_used().wrapping_sub(used_before));
    prop_assert!(returned <= size, "{} chains returned by one notify of a queue of {}", returned, size);
    // Per chain: index and head, at most `size` descriptors, and header and
    // data segments (each chunk of 4 KiB or descriptor boundary: at most
    // 2 * size + 8 of them for a 32 KiB disk).
    prop_assert!(reads <= 1 + size * (2 + size + 2 * size + 8 + 2), "{} reads", reads);
    Ok(())
}

/// Register offsets the traffic picks from, QueueNotify among them more
/// often.
fn offset_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(std::vec![
            register::DEVICE_FEATURES_SELECT,
            register::DRIVER_FEATURES,
            register::DRIVER_FEATURES_SELECT,
            register::QUEUE_SELECT,
            register::QUEUE_SIZE,
            register::QUEUE_READY,
            register::INTERRUPT_ACK,
            register::STATUS,
            register::QUEUE_DESCRIPTOR_LOW,
            register::QUEUE_DESCRIPTOR_HIGH,
            register::QUEUE_DRIVER_LOW,
            register::QUEUE_DRIVER_HIGH,
            register::QUEUE_DEVICE_LOW,
            register::QUEUE_DEVICE_HIGH,
            register::QUEUE_RESET,
            register::SHARED_MEMORY_SELECT,
        ]),
        2 => Just(register::QUEUE_NOTIFY),
        1 => 0_u64..0x220,
        1 => any::<u64>(),
    ]
}

fn value_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0_u32..20, 0_u32..0x1_0000, Just(0x0f), Just(0x0b), any::<u32>()]
}

/// Descriptor addresses: the buffers area, the queue's own structures,
/// the end of RAM, and anything.
fn address_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0_u64..64).prop_map(|slot| BUFFERS + 0x100 * slot),
        1 => prop::sample::select(std::vec![DESCRIPTOR_TABLE, AVAILABLE_RING, USED_RING, USED_RING + 2]),
        1 => (RAM_BYTES as u64 - 600)..(RAM_BYTES as u64 + 600),
        1 => (u64::MAX - 600)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn length_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(std::vec![0_u32, 1, 8, 16, 17, 20, 512, 513, 1024]),
        2 => 0_u32..1100,
        1 => (u32::MAX - 600)..=u32::MAX,
        1 => any::<u32>(),
    ]
}

/// How many request headers sit in the buffers area (slot k at
/// `BUFFERS + 0x100 k`); data slots follow them.
const HEADER_SLOTS: usize = 16;

/// A chain's elements: a well-formed request (header slot, data of whole
/// sectors in the right direction for an IN or OUT at the header's
/// sector, status) or anything.
fn chain_strategy() -> impl Strategy<Value = Vec<Element>> {
    let well_formed = (0..HEADER_SLOTS as u64, any::<bool>(), 0_u64..4, 0_u64..8).prop_map(
        |(header_slot, device_writes, sectors, data_slot)| {
            let header = BUFFERS + 0x100 * header_slot;
            let data = BUFFERS + 0x100 * (HEADER_SLOTS as u64 + 4 * data_slot);
            let mut elements = std::vec![readable(header, 16)];
            for sector in 0..sectors {
                let address = data + 512 * sector;
                elements.push(if device_writes { writable(address, 512) } else { readable(address, 512) });
            }
            elements.push(writable(header + 0x20, 1));
            elements
        },
    );
    let anything = prop::collection::vec(
        (address_strategy(), length_strategy(), any::<bool>()).prop_map(|(address, length, device_writes)| {
            if device_writes { writable(address, length) } else { readable(address, length) }
        }),
        1..6,
    );
    prop_oneof![2 => well_formed, 1 => anything]
}

fn request_type_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => prop::sample::select(std::vec![REQUEST_IN, REQUEST_OUT]),
        2 => prop::sample::select(std::vec![REQUEST_FLUSH, REQUEST_GET_ID]),
        1 => any::<u32>(),
    ]
}

fn sector_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0_u64..70, 1 => any::<u64>()]
}

/// A good read after a reset and a clean bring-up: the device still works
/// (sector 3 reads as the disk holds it: earlier writes may have changed it).
fn assert_good_read_after_reset(transport: &mut MmioTransport<TestBlock>) -> Result<(), TestCaseError> {
    let mut ram = FakeRam::new(0, RAM_BYTES);
    write_register(transport, &mut ram, register::STATUS, 0);
    linux_bring_up(transport, &mut ram, super::blk::FEATURES, 8);
    let mut driver = TestDriver::new(8);
    let mut header = [0_u8; 16];
    header[8..].copy_from_slice(&3_u64.to_le_bytes());
    ram.put(BUFFERS, &header);
    ram.put(BUFFERS + 0x300, &[0xee]);
    let head =
        driver.add(&mut ram, &[readable(BUFFERS, 16), writable(BUFFERS + 0x100, 512), writable(BUFFERS + 0x300, 1)]);
    write_register(transport, &mut ram, register::QUEUE_NOTIFY, 0);
    prop_assert_eq!(driver.take_used(&ram), std::vec![(u32::from(head), 513)]);
    prop_assert_eq!(ram.get(BUFFERS + 0x300, 1), std::vec![STATUS_OK]);
    let sector_3 = transport.device().backend().bytes()[3 * 512..4 * 512].to_vec();
    prop_assert_eq!(ram.get(BUFFERS + 0x100, 512), sector_3);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any register traffic, over RAM full of noise, optionally after a
    /// proper bring-up: no panic, the identity registers stay, the line is
    /// the interrupt status, DRIVER_OK only with FEATURES_OK, writes only
    /// where allowed, bounded work per notify; and the device works after a
    /// reset.
    #[test]
    fn random_register_traffic_keeps_the_device_sound(
        seed in any::<u64>(),
        bring_up in any::<bool>(),
        operations in prop::collection::vec(
            (offset_strategy(), prop::sample::select(std::vec![4_usize, 4, 4, 1, 2, 8]), value_strategy()),
            0..120,
        ),
    ) {
        let mut transport = new_transport();
        let mut ram = CheckedRam::new(random_ram(seed));
        if bring_up {
            // Queue structures at the test layout, their contents noise.
            linux_bring_up(&mut transport, &mut ram.ram, super::blk::FEATURES, 16);
        }
        for (offset, size, value) in operations {
            ram.watch(watched_queue(&transport));
            let used_before = transport.queue(0).map_or(0, |queue| queue.next_used());
            let reads_before = ram.ram.reads.get();
            transport.write(offset, size, value, &mut ram);
            check_notify_bound(&transport, used_before, ram.ram.reads.get() - reads_before)?;
            prop_assert_eq!(&ram.violations, &Vec::new());
            prop_assert_eq!(read_register(&transport, register::MAGIC_VALUE), MAGIC_VALUE);
            prop_assert_eq!(read_register(&transport, register::VERSION), VERSION);
            let interrupt_status = read_register(&transport, register::INTERRUPT_STATUS);
            prop_assert_eq!(transport.interrupt_line(), interrupt_status != 0);
            prop_assert_eq!(interrupt_status & !3, 0);
            let status = read_register(&transport, register::STATUS);
            prop_assert!(status & STATUS_DRIVER_OK == 0 || status & STATUS_FEATURES_OK != 0);
            prop_assert_eq!(status & !0xcf, 0, "only defined status bits");
            // Reads of any register never panic either.
            let _ = transport.read(offset, size);
        }
        assert_good_read_after_reset(&mut transport)?;
    }

    /// Random chains (hostile ones and well-formed requests), raw
    /// descriptor overwrites and available-index steps (some past the
    /// queue size) on a live device: no panic, writes only to the used ring
    /// and device-writable buffers, at most the queue size of chains per
    /// notify, and the device works after a reset.
    #[test]
    fn random_descriptor_tables_are_served_within_bounds(
        size_log2 in 0_u32..=4,
        chains in prop::collection::vec(chain_strategy(), 1..20),
        overwrites in prop::collection::vec(
            (0_u16..16, address_strategy(), length_strategy(), 0_u16..8, 0_u16..20),
            0..4,
        ),
        // (within the queue size, value): mostly steps the driver may
        // take, sometimes any jump.
        steps in prop::collection::vec((prop::bool::weighted(0.95), any::<u16>()), 1..8),
        headers in prop::collection::vec((request_type_strategy(), sector_strategy()), HEADER_SLOTS),
        seed in any::<u64>(),
    ) {
        let size = 1_u16 << size_log2;
        let mut transport = new_transport();
        let mut fake = random_ram(seed);
        fake.put(AVAILABLE_RING, &[0; 64]);
        fake.put(USED_RING, &[0; 256]);
        linux_bring_up(&mut transport, &mut fake, super::blk::FEATURES, u32::from(size));
        for (slot, (request_type, sector)) in (0_u64..).zip(&headers) {
            let mut header = [0_u8; 16];
            header[..4].copy_from_slice(&request_type.to_le_bytes());
            header[8..].copy_from_slice(&sector.to_le_bytes());
            fake.put(BUFFERS + 0x100 * slot, &header);
        }
        // The chains, their heads in the ring in order.
        let mut driver = TestDriver::new(size);
        let mut heads = Vec::new();
        for elements in &chains {
            heads.push(driver.build_chain(&mut fake, elements));
        }
        for &(index, address, length, flags, next) in &overwrites {
            TestDriver::put_descriptor(&mut fake, index % size, address, length, flags, next);
        }
        let mut ram = CheckedRam::new(fake);
        let mut available_index = 0_u16;
        for (within, value) in steps {
            let step = if within { value % (size + 1) } else { value };
            for _ in 0..step.min(64) {
                let slot = u64::from(available_index % size);
                let head = heads[usize::from(available_index) % heads.len()];
                ram.ram.put_u16(AVAILABLE_RING + 4 + 2 * slot, head);
                available_index = available_index.wrapping_add(1);
            }
            available_index = available_index.wrapping_add(step.saturating_sub(64));
            ram.ram.put_u16(AVAILABLE_RING + 2, available_index);
            ram.watch(watched_queue(&transport));
            let used_before = transport.queue(0).map_or(0, |queue| queue.next_used());
            let reads_before = ram.ram.reads.get();
            write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
            check_notify_bound(&transport, used_before, ram.ram.reads.get() - reads_before)?;
            prop_assert_eq!(&ram.violations, &Vec::new());
        }
        assert_good_read_after_reset(&mut transport)?;
    }
}
