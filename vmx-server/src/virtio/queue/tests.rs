extern crate std;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::virtio::test_support::{
    AVAILABLE_RING, BUFFERS, DESCRIPTOR_TABLE, FakeRam, RAM_BYTES, TestDriver, USED_RING, readable, writable,
};

/// A queue of `size` entries enabled at the test layout.
fn enabled_queue(size: u16, ram: &FakeRam) -> SplitQueue {
    let mut queue = SplitQueue::new(MAX_QUEUE_SIZE);
    queue.set_requested_size(u32::from(size));
    queue.set_descriptor_table(DESCRIPTOR_TABLE);
    queue.set_available_ring(AVAILABLE_RING);
    queue.set_used_ring(USED_RING);
    queue.enable(ram).expect("the test layout is valid");
    queue
}

fn setup(size: u16) -> (FakeRam, SplitQueue, TestDriver) {
    let ram = FakeRam::new(0, RAM_BYTES);
    let queue = enabled_queue(size, &ram);
    (ram, queue, TestDriver::new(size))
}

/// Pops every chain of one batch: (head, descriptors) each.
fn pop_all(queue: &mut SplitQueue, ram: &mut FakeRam) -> Result<Vec<(u16, Vec<Descriptor>)>, QueueError> {
    let mut chain = DescriptorChain::default();
    let mut chains = Vec::new();
    queue.begin_batch();
    while let Some(head) = queue.pop(ram, &mut chain)? {
        chains.push((head, chain.descriptors().to_vec()));
    }
    Ok(chains)
}

#[test]
fn queue_size_max_is_clamped_to_a_power_of_two() {
    assert_eq!(SplitQueue::new(128).size_max(), 128);
    assert_eq!(SplitQueue::new(100).size_max(), 64);
    assert_eq!(SplitQueue::new(1).size_max(), 1);
    assert_eq!(SplitQueue::new(0).size_max(), 0);
    assert_eq!(SplitQueue::new(u16::MAX).size_max(), MAX_QUEUE_SIZE);
}

#[test]
fn enable_refuses_sizes_that_are_zero_not_a_power_of_two_or_too_big() {
    let ram = FakeRam::new(0, RAM_BYTES);
    for size in [0, 3, 6, 100, 256, 512, 65_536, u32::MAX] {
        let mut queue = SplitQueue::new(128);
        queue.set_requested_size(size);
        queue.set_descriptor_table(DESCRIPTOR_TABLE);
        queue.set_available_ring(AVAILABLE_RING);
        queue.set_used_ring(USED_RING);
        assert_eq!(queue.enable(&ram), Err(QueueSetupError::InvalidSize(size)), "size {size}");
        assert!(!queue.is_ready());
        assert_eq!(queue.size(), 0);
    }
    for size in [1, 2, 64, 128] {
        let mut queue = SplitQueue::new(128);
        queue.set_requested_size(size);
        queue.set_descriptor_table(DESCRIPTOR_TABLE);
        queue.set_available_ring(AVAILABLE_RING);
        queue.set_used_ring(USED_RING);
        assert_eq!(queue.enable(&ram), Ok(()), "size {size}");
        assert_eq!(u32::from(queue.size()), size);
    }
}

#[test]
fn a_queue_that_never_had_its_size_written_uses_the_maximum() {
    let ram = FakeRam::new(0, RAM_BYTES);
    let mut queue = SplitQueue::new(8);
    queue.set_descriptor_table(DESCRIPTOR_TABLE);
    queue.set_available_ring(AVAILABLE_RING);
    queue.set_used_ring(USED_RING);
    assert_eq!(queue.enable(&ram), Ok(()));
    assert_eq!(queue.size(), 8);
}

#[test]
fn enable_checks_alignment_of_each_structure() {
    let ram = FakeRam::new(0, RAM_BYTES);
    let layouts = [
        (DESCRIPTOR_TABLE + 8, AVAILABLE_RING, USED_RING, QueueSetupError::DescriptorTableMisaligned(0x1008)),
        (DESCRIPTOR_TABLE, AVAILABLE_RING + 1, USED_RING, QueueSetupError::AvailableRingMisaligned(0x3001)),
        (DESCRIPTOR_TABLE, AVAILABLE_RING, USED_RING + 2, QueueSetupError::UsedRingMisaligned(0x4002)),
    ];
    for (table, available, used, error) in layouts {
        let mut queue = SplitQueue::new(16);
        queue.set_descriptor_table(table);
        queue.set_available_ring(available);
        queue.set_used_ring(used);
        assert_eq!(queue.enable(&ram), Err(error));
        assert!(!queue.is_ready());
    }
    // The spec's minimum alignments are enough.
    let mut queue = SplitQueue::new(16);
    queue.set_descriptor_table(DESCRIPTOR_TABLE + 16);
    queue.set_available_ring(AVAILABLE_RING + 2);
    queue.set_used_ring(USED_RING + 4);
    assert_eq!(queue.enable(&ram), Ok(()));
}

#[test]
fn enable_checks_each_structure_is_inside_ram() {
    // RAM from 0x1000 to 0x1_0000.
    let ram = FakeRam::new(0x1000, 0xf000);
    let end = 0x1_0000;
    let size = 16_u64;
    let cases = [
        // Below RAM.
        (0, 0x3000, 0x4000, QueueSetupError::DescriptorTableOutOfRange(0)),
        // Running past the end by one entry.
        (end - 16 * (size - 1), 0x3000, 0x4000, QueueSetupError::DescriptorTableOutOfRange(end - 16 * (size - 1))),
        // Wrapping 2^64.
        (u64::MAX - 15, 0x3000, 0x4000, QueueSetupError::DescriptorTableOutOfRange(u64::MAX - 15)),
        // The available ring's used_event slot is past the end.
        (0x2000, end - (6 + 2 * size) + 2, 0x4000, QueueSetupError::AvailableRingOutOfRange(end - (6 + 2 * size) + 2)),
        (0x2000, u64::MAX - 1, 0x4000, QueueSetupError::AvailableRingOutOfRange(u64::MAX - 1)),
        (0x2000, 0x3000, end - 4, QueueSetupError::UsedRingOutOfRange(end - 4)),
        (0x2000, 0x3000, u64::MAX - 3, QueueSetupError::UsedRingOutOfRange(u64::MAX - 3)),
    ];
    for (table, available, used, error) in cases {
        let mut queue = SplitQueue::new(16);
        queue.set_descriptor_table(table);
        queue.set_available_ring(available);
        queue.set_used_ring(used);
        assert_eq!(queue.enable(&ram), Err(error));
        assert!(!queue.is_ready());
    }
    // Exactly fitting at the end is fine.
    let mut queue = SplitQueue::new(16);
    queue.set_descriptor_table(end - 16 * size);
    queue.set_available_ring(end - 16 * size - (6 + 2 * size));
    queue.set_used_ring(0x1000);
    assert_eq!(queue.enable(&ram), Ok(()));
}

#[test]
fn setup_registers_are_ignored_while_ready() {
    let (_ram, mut queue, _driver) = setup(8);
    queue.set_requested_size(4);
    queue.set_descriptor_table(0x10);
    queue.set_available_ring(0x20);
    queue.set_used_ring(0x40);
    assert_eq!(queue.size(), 8);
    assert_eq!(queue.descriptor_table(), DESCRIPTOR_TABLE);
    assert_eq!(queue.available_ring(), AVAILABLE_RING);
    assert_eq!(queue.used_ring(), USED_RING);
    queue.disable();
    assert!(!queue.is_ready());
    queue.set_descriptor_table(0x10);
    assert_eq!(queue.descriptor_table(), 0x10);
}

#[test]
fn a_disabled_queue_is_never_read() {
    let mut ram = FakeRam::new(0, RAM_BYTES);
    let mut queue = SplitQueue::new(8);
    let mut driver = TestDriver::new(8);
    driver.add(&mut ram, &[readable(BUFFERS, 16)]);
    let reads_before = ram.reads.get();
    assert_eq!(pop_all(&mut queue, &mut ram), Ok(Vec::new()));
    assert_eq!(ram.reads.get(), reads_before);
    assert!(ram.writes.is_empty());
}

#[test]
fn chains_come_out_in_order_with_their_descriptors() {
    let (mut ram, mut queue, mut driver) = setup(8);
    assert_eq!(pop_all(&mut queue, &mut ram), Ok(Vec::new()), "empty");
    let first =
        driver.add(&mut ram, &[readable(BUFFERS, 16), writable(BUFFERS + 0x100, 512), writable(BUFFERS + 0x400, 1)]);
    let second = driver.add(&mut ram, &[readable(BUFFERS + 0x800, 16)]);
    let chains = pop_all(&mut queue, &mut ram).expect("good chains");
    assert_eq!(
        chains,
        vec![
            (
                first,
                vec![
                    Descriptor { address: BUFFERS, length: 16, writable: false },
                    Descriptor { address: BUFFERS + 0x100, length: 512, writable: true },
                    Descriptor { address: BUFFERS + 0x400, length: 1, writable: true },
                ]
            ),
            (second, vec![Descriptor { address: BUFFERS + 0x800, length: 16, writable: false }]),
        ]
    );
    assert!(ram.writes.is_empty(), "popping writes nothing");
}

#[test]
fn push_used_writes_the_element_before_the_index() {
    let (mut ram, mut queue, mut driver) = setup(4);
    let head = driver.add(&mut ram, &[writable(BUFFERS, 8)]);
    let mut chain = DescriptorChain::default();
    queue.begin_batch();
    assert_eq!(queue.pop(&mut ram, &mut chain), Ok(Some(head)));
    assert_eq!(queue.push_used(&mut ram, head, 5), Ok(()));
    assert_eq!(ram.writes, vec![(USED_RING + 4, 8), (USED_RING + 2, 2)]);
    assert_eq!(driver.take_used(&ram), vec![(u32::from(head), 5)]);
    assert_eq!(queue.next_used(), 1);
}

#[test]
fn ring_indices_wrap_at_65536() {
    let (mut ram, mut queue, mut driver) = setup(2);
    let mut chain = DescriptorChain::default();
    for round in 0..70_000_u32 {
        let head = driver.add(&mut ram, &[writable(BUFFERS, 1)]);
        queue.begin_batch();
        assert_eq!(queue.pop(&mut ram, &mut chain), Ok(Some(head)), "round {round}");
        assert_eq!(queue.push_used(&mut ram, head, 1), Ok(()));
        assert_eq!(driver.take_used(&ram), vec![(u32::from(head), 1)]);
    }
    assert_eq!(queue.next_used(), u16::try_from(70_000 - 65_536).expect("small"));
}

/// A raw descriptor-table entry: index, address, length, flags, next.
type RawDescriptor = (u16, u64, u32, u16, u16);

/// What [`serve_raw`] saw: the chains the device got, the used elements,
/// and the queue, RAM and driver to go on with.
struct Served {
    chains: Vec<(u16, Vec<Descriptor>)>,
    used: Vec<(u32, u32)>,
    queue: SplitQueue,
    ram: FakeRam,
    driver: TestDriver,
}

/// Publishes `head` after writing raw descriptors; pops one batch.
fn serve_raw(size: u16, descriptors: &[RawDescriptor], head: u16) -> Served {
    let (mut ram, mut queue, mut driver) = setup(size);
    for &(index, address, length, flags, next) in descriptors {
        TestDriver::put_descriptor(&mut ram, index, address, length, flags, next);
    }
    driver.publish(&mut ram, head);
    let chains = pop_all(&mut queue, &mut ram).expect("the queue keeps working");
    let used = driver.take_used(&ram);
    Served { chains, used, queue, ram, driver }
}

/// After a refused chain: it was returned with length 0, only the used
/// ring was written, and a good chain still goes through.
fn assert_refused_then_working(size: u16, descriptors: &[RawDescriptor], head: u16) {
    let Served { chains, used, mut queue, mut ram, mut driver } = serve_raw(size, descriptors, head);
    assert_eq!(chains, Vec::new(), "refused chain is not handed to the device");
    assert_eq!(used, vec![(u32::from(head), 0)], "returned with length 0");
    assert!(ram.writes.iter().all(|&(address, _)| (USED_RING..USED_RING + 0x1000).contains(&address)));
    assert_eq!(queue.refused_chains(), 1);
    // A good chain now.
    driver.next_descriptor = 0;
    let good = driver.add(&mut ram, &[readable(BUFFERS, 4)]);
    let chains = pop_all(&mut queue, &mut ram).expect("still working");
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].0, good);
}

const NEXT: u16 = DESCRIPTOR_NEXT;
const WRITE: u16 = DESCRIPTOR_WRITE;

#[test]
fn a_descriptor_loop_is_refused() {
    // a -> b -> a.
    assert_refused_then_working(8, &[(0, BUFFERS, 16, NEXT, 1), (1, BUFFERS, 16, NEXT, 0)], 0);
    // A descriptor chained to itself.
    assert_refused_then_working(8, &[(3, BUFFERS, 16, NEXT, 3)], 3);
}

#[test]
fn a_chain_longer_than_the_queue_is_refused() {
    // All four descriptors, then back to the first: five links in a queue
    // of four.
    assert_refused_then_working(
        4,
        &[(0, BUFFERS, 1, NEXT, 1), (1, BUFFERS, 1, NEXT, 2), (2, BUFFERS, 1, NEXT, 3), (3, BUFFERS, 1, NEXT, 0)],
        0,
    );
    // Exactly the queue size is fine.
    let Served { chains, used, .. } = serve_raw(
        4,
        &[(0, BUFFERS, 1, NEXT, 1), (1, BUFFERS, 1, NEXT, 2), (2, BUFFERS, 1, NEXT, 3), (3, BUFFERS, 1, WRITE, 0)],
        0,
    );
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].1.len(), 4);
    assert_eq!(used, Vec::new());
}

#[test]
fn indices_outside_the_table_are_refused() {
    // next out of range.
    assert_refused_then_working(8, &[(0, BUFFERS, 16, NEXT, 8)], 0);
    assert_refused_then_working(8, &[(0, BUFFERS, 16, NEXT, u16::MAX)], 0);
    // head out of range.
    let Served { chains, used, queue, .. } = serve_raw(8, &[], 8);
    assert_eq!(chains, Vec::new());
    assert_eq!(used, vec![(8, 0)]);
    assert_eq!(queue.refused_chains(), 1);
}

#[test]
fn a_readable_descriptor_after_a_writable_one_is_refused() {
    assert_refused_then_working(8, &[(0, BUFFERS, 16, WRITE | NEXT, 1), (1, BUFFERS, 16, 0, 0)], 0);
    // Even when the writable one is empty.
    assert_refused_then_working(8, &[(0, BUFFERS, 0, WRITE | NEXT, 1), (1, BUFFERS, 16, 0, 0)], 0);
}

#[test]
fn indirect_descriptors_are_refused() {
    assert_refused_then_working(8, &[(0, BUFFERS, 64, DESCRIPTOR_INDIRECT, 0)], 0);
    assert_refused_then_working(8, &[(0, BUFFERS, 16, NEXT, 1), (1, BUFFERS, 32, DESCRIPTOR_INDIRECT | WRITE, 0)], 0);
}

#[test]
fn buffers_wrapping_past_2_to_the_64_are_refused() {
    assert_refused_then_working(8, &[(0, u64::MAX, 2, 0, 0)], 0);
    assert_refused_then_working(8, &[(0, u64::MAX - 15, 16, WRITE, 0)], 0);
    // Ending at the last byte is not a wrap (only outside RAM).
    let Served { chains, .. } = serve_raw(8, &[(0, u64::MAX - 15, 15, WRITE, 0)], 0);
    assert_eq!(chains.len(), 1);
}

#[test]
fn chains_of_more_than_4_gib_are_refused_and_4_gib_minus_one_is_not() {
    assert_refused_then_working(8, &[(0, BUFFERS, u32::MAX, NEXT, 1), (1, BUFFERS, 1, WRITE, 0)], 0);
    let Served { chains, .. } = serve_raw(8, &[(0, BUFFERS, u32::MAX - 1, NEXT, 1), (1, BUFFERS, 1, WRITE, 0)], 0);
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].1[0].length, u32::MAX - 1);
}

#[test]
fn zero_length_descriptors_are_accepted_and_carry_no_bytes() {
    let (mut ram, mut queue, mut driver) = setup(8);
    driver.add(
        &mut ram,
        &[readable(BUFFERS, 0), readable(BUFFERS + 0x10, 3), writable(BUFFERS + 0x20, 0), writable(BUFFERS + 0x30, 2)],
    );
    ram.put(BUFFERS + 0x10, b"abc");
    let mut chain = DescriptorChain::default();
    queue.begin_batch();
    assert!(matches!(queue.pop(&mut ram, &mut chain), Ok(Some(_))));
    assert_eq!(chain.readable_bytes(), 3);
    assert_eq!(chain.writable_bytes(), 2);
    let mut bytes = [0_u8; 3];
    assert_eq!(chain.readable().read(&ram, &mut bytes), Ok(()));
    assert_eq!(&bytes, b"abc");
    assert_eq!(chain.writable().write(&mut ram, b"xy"), Ok(()));
    assert_eq!(ram.get(BUFFERS + 0x30, 2), b"xy");
}

#[test]
fn the_available_index_may_run_at_most_the_queue_size_ahead() {
    // Exactly size ahead: fine.
    let (mut ram, mut queue, mut driver) = setup(4);
    for _ in 0..4 {
        driver.add(&mut ram, &[readable(BUFFERS, 1)]);
    }
    assert_eq!(pop_all(&mut queue, &mut ram).map(|chains| chains.len()), Ok(4));

    // One more than the size: refused, nothing taken.
    let (mut ram, mut queue, _driver) = setup(4);
    ram.put_u16(AVAILABLE_RING + 2, 5);
    assert_eq!(pop_all(&mut queue, &mut ram), Err(QueueError::AvailableIndexJump { next_available: 0, published: 5 }));
    assert!(ram.writes.is_empty());
    // A "decrement" is a jump of almost 2^16.
    let (mut ram, mut queue, mut driver) = setup(4);
    driver.add(&mut ram, &[readable(BUFFERS, 1)]);
    assert_eq!(pop_all(&mut queue, &mut ram).map(|chains| chains.len()), Ok(1));
    ram.put_u16(AVAILABLE_RING + 2, 0);
    assert_eq!(pop_all(&mut queue, &mut ram), Err(QueueError::AvailableIndexJump { next_available: 1, published: 0 }));
}

#[test]
fn one_batch_hands_out_at_most_the_queue_size_of_chains() {
    let (mut ram, mut queue, mut driver) = setup(4);
    let mut chain = DescriptorChain::default();
    for _ in 0..4 {
        driver.add(&mut ram, &[writable(BUFFERS, 1)]);
    }
    queue.begin_batch();
    let mut taken = 0;
    // The driver refills as the device returns buffers: the batch still
    // stops after four.
    while let Some(head) = queue.pop(&mut ram, &mut chain).expect("good") {
        queue.push_used(&mut ram, head, 1).expect("used ring");
        driver.take_used(&ram);
        driver.add(&mut ram, &[writable(BUFFERS, 1)]);
        taken += 1;
        assert!(taken <= 4);
    }
    assert_eq!(taken, 4);
    // The next notify gets the rest.
    queue.begin_batch();
    assert!(queue.pop(&mut ram, &mut chain).expect("good").is_some());
}

#[test]
fn refused_chains_count_toward_the_batch_bound() {
    let (mut ram, mut queue, mut driver) = setup(4);
    TestDriver::put_descriptor(&mut ram, 0, BUFFERS, 1, NEXT, 0);
    for _ in 0..4 {
        driver.publish(&mut ram, 0);
    }
    let reads_before = ram.reads.get();
    assert_eq!(pop_all(&mut queue, &mut ram), Ok(Vec::new()));
    let reads = ram.reads.get() - reads_before;
    assert_eq!(driver.take_used(&ram), vec![(0, 0); 4]);
    assert_eq!(queue.refused_chains(), 4);
    // Each refused chain read at most the queue size of descriptors: 4
    // chains of (index, head, 4 descriptors), and the batch ended without
    // another look at the index.
    assert_eq!(reads, 4 * (2 + 4));
}

#[test]
fn rings_that_leave_ram_after_enabling_stop_the_queue() {
    let (mut ram, mut queue, mut driver) = setup(4);
    driver.add(&mut ram, &[writable(BUFFERS, 1)]);
    let mut chain = DescriptorChain::default();
    queue.begin_batch();
    let head = queue.pop(&mut ram, &mut chain).expect("good").expect("a chain");
    // The guest's RAM shrinks under the used ring (a VMM bug or unplug).
    ram.bytes.truncate(usize::try_from(USED_RING).expect("small"));
    assert_eq!(queue.push_used(&mut ram, head, 1), Err(QueueError::UsedRingOutOfRange));
    assert_eq!(queue.next_used(), 0, "nothing published");
    ram.bytes.truncate(usize::try_from(AVAILABLE_RING).expect("small"));
    assert_eq!(queue.pop(&mut ram, &mut chain), Err(QueueError::AvailableRingOutOfRange));
}

#[test]
fn a_descriptor_table_that_left_ram_refuses_the_chain() {
    let mut ram = FakeRam::new(0, 0x2000);
    let mut queue = SplitQueue::new(4);
    queue.set_available_ring(0x100);
    queue.set_used_ring(0x200);
    queue.set_descriptor_table(0x1000);
    queue.enable(&ram).expect("fits");
    // The test layout's driver writes elsewhere: publish head 0 by hand.
    ram.put_u16(0x104, 0);
    ram.put_u16(0x102, 1);
    // The table's page goes away; the rings stay.
    ram.bytes.truncate(0x1000);
    let chains = pop_all(&mut queue, &mut ram).expect("keeps working");
    assert_eq!(chains, Vec::new());
    assert_eq!(queue.refused_chains(), 1);
    assert_eq!(ram.get_u16(0x202), 1, "returned to the used ring");
    assert_eq!((ram.get_u32(0x204), ram.get_u32(0x208)), (0, 0));
}

#[test]
fn cursors_read_write_and_skip_across_descriptors() {
    let (mut ram, mut queue, mut driver) = setup(8);
    ram.put(BUFFERS, b"hello, ");
    ram.put(BUFFERS + 0x100, b"world");
    driver.add(
        &mut ram,
        &[
            readable(BUFFERS, 7),
            readable(BUFFERS + 0x100, 5),
            writable(BUFFERS + 0x200, 2),
            writable(BUFFERS + 0x300, 0),
            writable(BUFFERS + 0x400, 3),
        ],
    );
    let mut chain = DescriptorChain::default();
    queue.begin_batch();
    queue.pop(&mut ram, &mut chain).expect("good").expect("a chain");

    let mut reader = chain.readable();
    assert_eq!(reader.remaining(), 12);
    let mut first = [0_u8; 5];
    assert_eq!(reader.read(&ram, &mut first), Ok(()));
    assert_eq!(&first, b"hello");
    let mut rest = [0_u8; 7];
    assert_eq!(reader.read(&ram, &mut rest), Ok(()));
    assert_eq!(&rest, b", world");
    assert_eq!(reader.remaining(), 0);
    assert_eq!(reader.read(&ram, &mut [0_u8; 1]), Err(CursorError::PastTheEnd));

    let mut writer = chain.writable();
    assert_eq!(writer.remaining(), 5);
    assert_eq!(writer.write(&mut ram, b"abcdef"), Err(CursorError::PastTheEnd), "too long: nothing written");
    assert!(ram.writes.is_empty());
    assert_eq!(writer.skip(1), Ok(()));
    assert_eq!(writer.write(&mut ram, b"XYZ"), Ok(()));
    assert_eq!(writer.skip(2), Err(CursorError::PastTheEnd));
    assert_eq!(writer.skip(1), Ok(()));
    assert_eq!(writer.remaining(), 0);
    assert_eq!(ram.get(BUFFERS + 0x200, 2), b"\0X");
    assert_eq!(ram.get(BUFFERS + 0x400, 3), b"YZ\0");
    assert_eq!(ram.writes, vec![(BUFFERS + 0x201, 1), (BUFFERS + 0x400, 2)]);
}

#[test]
fn cursor_accesses_outside_ram_fail_without_touching_other_memory() {
    let (mut ram, mut queue, mut driver) = setup(8);
    let outside = u64::try_from(RAM_BYTES).expect("small") - 2;
    driver.add(&mut ram, &[readable(outside, 4), writable(outside, 4)]);
    let mut chain = DescriptorChain::default();
    queue.begin_batch();
    queue.pop(&mut ram, &mut chain).expect("good").expect("a chain");
    assert_eq!(chain.readable().read(&ram, &mut [0_u8; 4]), Err(CursorError::OutOfRange));
    assert_eq!(chain.writable().write(&mut ram, &[1; 4]), Err(CursorError::OutOfRange));
    assert!(ram.writes.is_empty());
}
