extern crate std;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::virtio::mmio::{MmioTransport, register};
use crate::virtio::net::{self, Net, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use crate::virtio::test_support::{
    BUFFERS, FakeRam, QUEUE_0, RAM_BYTES, TestDriver, linux_bring_up_pair, readable, writable, write_register,
};

/// One half of a link's shared memory, as both ends see it.
type Half = Rc<RefCell<Vec<u8>>>;

/// One end's view: its outgoing and its incoming half. Any access outside
/// a half panics, so that a test notices the link trying one.
#[derive(Clone, Debug)]
struct TestMemory {
    outgoing: Half,
    incoming: Half,
}

impl LinkMemory for TestMemory {
    fn outgoing_bytes(&self) -> usize {
        self.outgoing.borrow().len()
    }

    fn incoming_bytes(&self) -> usize {
        self.incoming.borrow().len()
    }

    fn write_outgoing(&mut self, offset: usize, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let mut half = self.outgoing.borrow_mut();
        let end = offset.checked_add(bytes.len()).expect("no wrap");
        assert!(end <= half.len(), "write of {}..{end} outside a half of {}", offset, half.len());
        half[offset..end].copy_from_slice(bytes);
        Ok(())
    }

    fn read_incoming(&self, offset: usize, bytes: &mut [u8]) -> Result<(), OutOfBounds> {
        let half = self.incoming.borrow();
        let end = offset.checked_add(bytes.len()).expect("no wrap");
        assert!(end <= half.len(), "read of {}..{end} outside a half of {}", offset, half.len());
        bytes.copy_from_slice(&half[offset..end]);
        Ok(())
    }
}

fn half(bytes: usize) -> Half {
    Rc::new(RefCell::new(vec![0; bytes]))
}

/// Two ends of a link: A writes the first half, B the second.
fn pair(a_bytes: usize, b_bytes: usize) -> (LinkPort<TestMemory>, LinkPort<TestMemory>, Half, Half) {
    let (a_half, b_half) = (half(a_bytes), half(b_bytes));
    let a = LinkPort::new(TestMemory { outgoing: a_half.clone(), incoming: b_half.clone() }).expect("room");
    let b = LinkPort::new(TestMemory { outgoing: b_half.clone(), incoming: a_half.clone() }).expect("room");
    (a, b, a_half, b_half)
}

/// A frame of `length` bytes, its bytes from `seed`.
fn frame(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|index| index.to_le_bytes()[0] ^ seed).collect()
}

fn pop(port: &mut LinkPort<TestMemory>) -> Option<Vec<u8>> {
    let mut buffer = [0_u8; FRAME_BYTES_MAX];
    port.pop(&mut buffer).map(|length| buffer[..length].to_vec())
}

fn put_u32(half: &Half, offset: usize, value: u32) {
    half.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn slot_counts_are_powers_of_two_of_whole_slots() {
    assert_eq!(slot_count(0), 0);
    assert_eq!(slot_count(SLOTS_OFFSET + SLOT_BYTES - 1), 0);
    assert_eq!(slot_count(SLOTS_OFFSET + SLOT_BYTES), 1);
    assert_eq!(slot_count(SLOTS_OFFSET + 3 * SLOT_BYTES), 2);
    assert_eq!(slot_count(SLOTS_OFFSET + 4 * SLOT_BYTES), 4);
    assert_eq!(slot_count(0x1_0000), 32, "a 64 KiB half");
    assert_eq!(slot_count(usize::MAX), SLOT_COUNT_MAX);
}

#[test]
fn a_half_without_room_for_a_slot_is_refused() {
    let memory = TestMemory { outgoing: half(SLOTS_OFFSET + SLOT_BYTES - 1), incoming: half(0x1_0000) };
    assert_eq!(LinkPort::new(memory).err(), Some(LinkError::HalfTooSmall));
    let memory = TestMemory { outgoing: half(0x1_0000), incoming: half(100) };
    assert_eq!(LinkPort::new(memory).err(), Some(LinkError::HalfTooSmall));
}

#[test]
fn frames_cross_both_ways_in_order() {
    let (mut a, mut b, _, _) = pair(0x1_0000, SLOTS_OFFSET + 2 * SLOT_BYTES);
    assert_eq!(a.slot_counts(), (32, 2));
    assert_eq!(b.slot_counts(), (2, 32));
    for seed in 0..3 {
        a.push(&frame(60 + usize::from(seed), seed)).expect("room");
    }
    b.push(&frame(FRAME_BYTES_MAX, 9)).expect("room");
    assert_eq!(pop(&mut a), Some(frame(FRAME_BYTES_MAX, 9)));
    assert_eq!(pop(&mut a), None);
    for seed in 0..3 {
        assert_eq!(pop(&mut b), Some(frame(60 + usize::from(seed), seed)));
    }
    assert_eq!(pop(&mut b), None);
    assert_eq!((a.counters().pushed, a.counters().popped, b.counters().pushed, b.counters().popped), (3, 1, 1, 3));
}

#[test]
fn a_full_ring_refuses_until_the_peer_consumes() {
    let (mut a, mut b, _, _) = pair(SLOTS_OFFSET + 4 * SLOT_BYTES, SLOTS_OFFSET + SLOT_BYTES);
    for round in 0..10_u8 {
        for seed in 0..4 {
            a.push(&frame(100, round * 4 + seed)).expect("room");
        }
        assert_eq!(a.push(&frame(100, 0)), Err(PushError::Full));
        for seed in 0..4 {
            assert_eq!(pop(&mut b), Some(frame(100, round * 4 + seed)), "slots reused across the ring's wrap");
        }
    }
    assert_eq!(a.counters().full, 10);
}

#[test]
fn frames_of_bad_lengths_are_not_pushed() {
    let (mut a, mut b, _, _) = pair(0x1_0000, 0x1_0000);
    for length in [0, 1, FRAME_BYTES_MIN - 1, FRAME_BYTES_MAX + 1, 9000] {
        assert_eq!(a.push(&frame(length, 1)), Err(PushError::InvalidLength));
    }
    assert_eq!(pop(&mut b), None);
}

#[test]
fn a_slot_with_a_bad_length_is_skipped() {
    let (mut a, mut b, a_half, _) = pair(0x1_0000, 0x1_0000);
    for seed in 0..3 {
        a.push(&frame(60, seed)).expect("room");
    }
    // A hostile writer: slot 0 claims 5 bytes, slot 1 a gigabyte.
    put_u32(&a_half, SLOTS_OFFSET, 5);
    put_u32(&a_half, SLOTS_OFFSET + SLOT_BYTES, 1 << 30);
    assert_eq!(pop(&mut b), Some(frame(60, 2)));
    assert_eq!(b.counters().bad_lengths, 2);
    assert_eq!(pop(&mut b), None);
}

#[test]
fn a_lying_tail_yields_nothing_until_it_makes_sense() {
    let (mut a, mut b, a_half, _) = pair(0x1_0000, 0x1_0000);
    a.push(&frame(60, 1)).expect("room");
    put_u32(&a_half, TAIL_OFFSET, 33);
    assert_eq!(pop(&mut b), None);
    put_u32(&a_half, TAIL_OFFSET, u32::MAX);
    assert_eq!(pop(&mut b), None, "behind the head is as bad");
    assert_eq!(b.counters().peer_faults, 2);
    put_u32(&a_half, TAIL_OFFSET, 1);
    assert_eq!(pop(&mut b), Some(frame(60, 1)));
}

#[test]
fn a_lying_head_stops_the_writer() {
    let (mut a, mut b, _, b_half) = pair(0x1_0000, 0x1_0000);
    a.push(&frame(60, 1)).expect("room");
    // B claims to have consumed frames never written.
    put_u32(&b_half, HEAD_OFFSET, 5);
    assert_eq!(a.push(&frame(60, 2)), Err(PushError::PeerFault));
    assert_eq!(a.counters().peer_faults, 1);
    // B's own next pop publishes its real head again.
    assert_eq!(pop(&mut b), Some(frame(60, 1)));
    a.push(&frame(60, 3)).expect("room again");
    assert_eq!(pop(&mut b), Some(frame(60, 3)));
}

#[test]
fn each_end_writes_only_its_own_half() {
    let (mut a, mut b, a_half, b_half) = pair(0x1_0000, 0x1_0000);
    let b_before = b_half.borrow().clone();
    a.push(&frame(60, 1)).expect("room");
    assert_eq!(*b_half.borrow(), b_before, "A's push leaves B's half alone");
    let a_before = a_half.borrow().clone();
    assert_eq!(pop(&mut b), Some(frame(60, 1)));
    assert_eq!(*a_half.borrow(), a_before, "B's pop leaves A's half alone");
}

#[test]
fn a_loopback_returns_what_was_sent() {
    let mut port = Loopback::loopback();
    assert_eq!(port.slot_counts(), (8, 8));
    let mut buffer = [0_u8; FRAME_BYTES_MAX];
    assert_eq!(port.receive(&mut buffer), None);
    for seed in 0..8 {
        port.transmit(&frame(64, seed)).expect("room");
    }
    assert_eq!(port.transmit(&frame(64, 9)), Err(TransmitError::Full));
    for seed in 0..8 {
        assert_eq!(port.receive(&mut buffer), Some(64));
        assert_eq!(buffer[..64], frame(64, seed)[..]);
    }
    assert_eq!(port.receive(&mut buffer), None);
    assert_eq!(port.transmit(&frame(5, 0)), Err(TransmitError::Unavailable), "not a frame");
}

/// A guest with a network device over one end of a link.
struct Guest {
    transport: MmioTransport<Net<LinkPort<TestMemory>>>,
    ram: FakeRam,
    rx: TestDriver,
    tx: TestDriver,
}

impl Guest {
    fn new(port: LinkPort<TestMemory>, mac: [u8; 6]) -> Self {
        let mut transport = MmioTransport::new(Net::new(port, mac));
        let mut ram = FakeRam::new(0, RAM_BYTES);
        let (rx, tx) = linux_bring_up_pair(&mut transport, &mut ram, net::FEATURES, 64);
        Guest { transport, ram, rx, tx }
    }

    /// Posts `count` receive buffers of 1530 bytes at slot `first` on and
    /// notifies.
    fn post_buffers(&mut self, first: u64, count: u64) {
        for slot in first..first + count {
            self.rx.add(&mut self.ram, &[writable(BUFFERS + 0x1_0000 + 0x800 * slot, 1530)]);
        }
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, u32::from(RECEIVE_QUEUE));
    }

    fn send(&mut self, frame: &[u8]) {
        self.ram.put(BUFFERS, &[0; 12]);
        self.ram.put(BUFFERS + 12, frame);
        let length = u32::try_from(12 + frame.len()).expect("small");
        self.tx.add(&mut self.ram, &[readable(BUFFERS, length)]);
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, u32::from(TRANSMIT_QUEUE));
    }

    /// The frames delivered since the last call (buffers posted in order).
    fn received(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for (head, length) in self.rx.take_used(&self.ram) {
            assert!(length > 12, "a frame");
            // Each chain is one descriptor: its address is in the table.
            let entry = self.ram.get(QUEUE_0.descriptor_table + 16 * u64::from(head), 8);
            let address = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            frames.push(self.ram.get(address + 12, length as usize - 12));
        }
        frames
    }
}

#[test]
fn two_guests_exchange_frames_both_ways() {
    let (a_port, b_port, _, _) = pair(0x1_0000, 0x1_0000);
    let mut a = Guest::new(a_port, [2, 0, 0, 0, 0, 0xa]);
    let mut b = Guest::new(b_port, [2, 0, 0, 0, 0, 0xb]);
    a.post_buffers(0, 4);
    b.post_buffers(0, 4);
    let to_b: Vec<Vec<u8>> = (0..6).map(|seed| frame(60 + 100 * usize::from(seed), seed)).collect();
    for frame in &to_b {
        a.send(frame);
    }
    a.send(&frame(FRAME_BYTES_MAX, 0x40));
    // B's VMX is told frames are pending: four buffers, four frames.
    b.transport.deliver(&mut b.ram);
    assert!(b.transport.interrupt_line());
    let mut got = b.received();
    assert_eq!(got.len(), 4);
    // B posts more buffers: the rest come on its notify.
    b.post_buffers(4, 4);
    got.extend(b.received());
    let mut expected = to_b.clone();
    expected.push(frame(FRAME_BYTES_MAX, 0x40));
    assert_eq!(got, expected);
    // And back.
    b.send(&frame(64, 0x77));
    a.transport.deliver(&mut a.ram);
    assert_eq!(a.received(), vec![frame(64, 0x77)]);
    let a_counters = a.transport.device().counters();
    assert_eq!((a_counters.transmitted_frames, a_counters.received_frames), (7, 1));
}

#[test]
fn a_full_link_drops_at_the_sender() {
    let (a_port, b_port, _, _) = pair(SLOTS_OFFSET + 2 * SLOT_BYTES, 0x1_0000);
    let mut a = Guest::new(a_port, [2, 0, 0, 0, 0, 0xa]);
    let mut b = Guest::new(b_port, [2, 0, 0, 0, 0, 0xb]);
    for seed in 0..4 {
        a.send(&frame(60, seed));
    }
    assert_eq!(a.transport.device().counters().transmit_port_dropped, 2);
    b.post_buffers(0, 4);
    assert_eq!(b.received(), vec![frame(60, 0), frame(60, 1)]);
}

/// An operation on a link in the property tests.
#[derive(Clone, Debug)]
enum Operation {
    /// A pushes a frame of this length to B (or B to A).
    Push { from_a: bool, length: usize, seed: u8 },
    /// B pops (or A).
    Pop { at_b: bool },
}

fn operation_strategy() -> impl Strategy<Value = Operation> {
    let length = prop_oneof![4 => FRAME_BYTES_MIN..=FRAME_BYTES_MAX, 1 => 0_usize..2000];
    prop_oneof![
        (any::<bool>(), length, any::<u8>()).prop_map(|(from_a, length, seed)| Operation::Push {
            from_a,
            length,
            seed
        }),
        any::<bool>().prop_map(|at_b| Operation::Pop { at_b }),
    ]
}

fn half_bytes_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(SLOTS_OFFSET + SLOT_BYTES),
        (1_usize..20).prop_map(|slots| SLOTS_OFFSET + slots * SLOT_BYTES + 7),
        Just(0x1_0000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any sequence of pushes and pops on both directions does what a
    /// bounded VecDeque per direction does.
    #[test]
    fn pushes_and_pops_match_a_queue_model(
        a_bytes in half_bytes_strategy(),
        b_bytes in half_bytes_strategy(),
        operations in prop::collection::vec(operation_strategy(), 0..200),
    ) {
        let (mut a, mut b, _, _) = pair(a_bytes, b_bytes);
        let capacity_a_to_b = slot_count(a_bytes) as usize;
        let capacity_b_to_a = slot_count(b_bytes) as usize;
        let mut a_to_b: VecDeque<Vec<u8>> = VecDeque::new();
        let mut b_to_a: VecDeque<Vec<u8>> = VecDeque::new();
        for operation in operations {
            match operation {
                Operation::Push { from_a, length, seed } => {
                    let (port, model, capacity) =
                        if from_a { (&mut a, &mut a_to_b, capacity_a_to_b) } else { (&mut b, &mut b_to_a, capacity_b_to_a) };
                    let frame = frame(length, seed);
                    let expected = if !(FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&length) {
                        Err(PushError::InvalidLength)
                    } else if model.len() == capacity {
                        Err(PushError::Full)
                    } else {
                        model.push_back(frame.clone());
                        Ok(())
                    };
                    prop_assert_eq!(port.push(&frame), expected);
                }
                Operation::Pop { at_b } => {
                    let (port, model) = if at_b { (&mut b, &mut a_to_b) } else { (&mut a, &mut b_to_a) };
                    prop_assert_eq!(pop(port), model.pop_front());
                }
            }
        }
        prop_assert_eq!(a.counters().peer_faults + b.counters().peer_faults, 0);
        prop_assert_eq!(a.counters().bad_lengths + b.counters().bad_lengths, 0);
    }

    /// Random corruption of either half between operations (a compromised
    /// peer, or both): no panic, no access outside a half (the test memory
    /// panics on one), every popped frame of a valid length, and each pop
    /// bounded by the slot count.
    #[test]
    fn corrupted_halves_never_break_an_end(
        a_bytes in half_bytes_strategy(),
        b_bytes in half_bytes_strategy(),
        steps in prop::collection::vec(
            (operation_strategy(), prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u32>(), 0_u8..3), 0..4)),
            0..150,
        ),
    ) {
        let (mut a, mut b, a_half, b_half) = pair(a_bytes, b_bytes);
        for (operation, corruptions) in steps {
            for (in_a, index, value, kind) in corruptions {
                let half = if in_a { &a_half } else { &b_half };
                let length = half.borrow().len();
                // An index word, a slot's length, or any byte.
                let offset = match kind {
                    0 => if index.index(2) == 0 { TAIL_OFFSET } else { HEAD_OFFSET },
                    1 => SLOTS_OFFSET + index.index(slot_count(length) as usize) * SLOT_BYTES,
                    _ => index.index(length - 3),
                };
                put_u32(half, offset, value);
            }
            match operation {
                Operation::Push { from_a, length, seed } => {
                    let port = if from_a { &mut a } else { &mut b };
                    let _ = port.push(&frame(length, seed));
                }
                Operation::Pop { at_b } => {
                    let port = if at_b { &mut b } else { &mut a };
                    let skipped_before = port.counters().bad_lengths;
                    if let Some(frame) = pop(port) {
                        prop_assert!((FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&frame.len()));
                    }
                    let skipped = port.counters().bad_lengths - skipped_before;
                    prop_assert!(skipped <= u64::from(port.slot_counts().1));
                }
            }
        }
    }
}
