extern crate std;

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::virtio::STATUS_FEATURES_OK;
use crate::virtio::mmio::{INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER, MmioTransport, register};
use crate::virtio::queue::DESCRIPTOR_NEXT;
use crate::virtio::test_support::{
    BUFFERS, CheckedRam, Element, FakeRam, QUEUE_0, QUEUE_1, RAM_BYTES, TestDriver, linux_bring_up_pair,
    linux_negotiate, read_register, readable, writable, write_register,
};

const MAC: [u8; 6] = [0x02, 0x42, 0xb1, 0x00, 0x00, 0x07];
const QUEUE_SIZE: u16 = 16;

/// A port that keeps what the device sends and hands out what the test
/// queued, or refuses frames on demand.
#[derive(Clone, Debug, Default)]
struct TestPort {
    sent: Vec<Vec<u8>>,
    incoming: VecDeque<Vec<u8>>,
    refuse: Option<TransmitError>,
}

impl NetPort for TestPort {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TransmitError> {
        if let Some(error) = self.refuse {
            return Err(error);
        }
        self.sent.push(frame.to_vec());
        Ok(())
    }

    fn receive(&mut self, frame: &mut [u8; FRAME_BYTES_MAX]) -> Option<usize> {
        let incoming = self.incoming.pop_front()?;
        // The test may queue a frame longer than the buffer: the port says
        // so by its length, as a broken port would.
        let copied = incoming.len().min(FRAME_BYTES_MAX);
        frame[..copied].copy_from_slice(&incoming[..copied]);
        Some(incoming.len())
    }
}

/// A frame of `length` bytes: to MAC, from another, then a pattern.
fn frame(length: usize, seed: u8) -> Vec<u8> {
    let mut frame: Vec<u8> =
        (0..length).map(|index| index.to_le_bytes()[0].wrapping_mul(7).wrapping_add(seed)).collect();
    let header = [MAC.as_slice(), &[0x02, 0, 0, 0, 0, seed], &[0x08, 0x00]].concat();
    let prefix = header.len().min(length);
    frame[..prefix].copy_from_slice(&header[..prefix]);
    frame
}

/// A transmit header: flags, gso_type, then the other fields.
fn tx_header(flags: u8, gso_type: u8, rest: u8) -> [u8; HEADER_BYTES] {
    let mut header = [rest; HEADER_BYTES];
    header[0] = flags;
    header[1] = gso_type;
    header
}

/// A network device brought up by a Linux-like driver: both queues at the
/// test layouts.
struct Harness {
    transport: MmioTransport<Net<TestPort>>,
    ram: FakeRam,
    rx: TestDriver,
    tx: TestDriver,
}

/// Where the tests put buffers: transmit from BUFFERS, receive from RX.
const RX: u64 = BUFFERS + 0x1_0000;

impl Harness {
    fn new() -> Self {
        let mut transport = MmioTransport::new(Net::new(TestPort::default(), MAC));
        let mut ram = FakeRam::new(0, RAM_BYTES);
        let (rx, tx) = bring_up(&mut transport, &mut ram);
        Harness { transport, ram, rx, tx }
    }

    fn counters(&self) -> NetCounters {
        self.transport.device().counters()
    }

    fn port(&mut self) -> &mut TestPort {
        self.transport.device_mut().port_mut()
    }

    /// Publishes a transmit chain, notifies, checks the used element (length
    /// 0) and the interrupt.
    fn transmit(&mut self, elements: &[Element]) {
        let head = self.tx.add(&mut self.ram, elements);
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, u32::from(TRANSMIT_QUEUE));
        assert_eq!(self.tx.take_used(&self.ram), vec![(u32::from(head), 0)]);
        self.acknowledge(INTERRUPT_USED_BUFFER);
    }

    /// Puts header and frame at BUFFERS and transmits them in one descriptor.
    fn transmit_bytes(&mut self, header: [u8; HEADER_BYTES], frame: &[u8]) {
        self.ram.put(BUFFERS, &header);
        self.ram.put(BUFFERS + HEADER_BYTES as u64, frame);
        let length = u32::try_from(HEADER_BYTES + frame.len()).expect("small");
        self.transmit(&[readable(BUFFERS, length)]);
    }

    /// Posts a receive chain (no notify).
    fn post(&mut self, elements: &[Element]) -> u16 {
        self.rx.add(&mut self.ram, elements)
    }

    fn notify_receive(&mut self) {
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, u32::from(RECEIVE_QUEUE));
    }

    fn acknowledge(&mut self, bits: u32) {
        assert_eq!(self.transport.interrupt_status() & bits, bits, "interrupt raised");
        write_register(&mut self.transport, &mut self.ram, register::INTERRUPT_ACK, bits);
        assert!(!self.transport.interrupt_line());
    }
}

fn bring_up(transport: &mut MmioTransport<Net<TestPort>>, ram: &mut dyn GuestRam) -> (TestDriver, TestDriver) {
    linux_bring_up_pair(transport, ram, FEATURES, QUEUE_SIZE)
}

/// The receive header the device must write: all 0 but num_buffers = 1.
fn rx_header() -> Vec<u8> {
    let mut header = vec![0_u8; HEADER_BYTES];
    header[10] = 1;
    header
}

#[test]
fn identity_features_and_configuration() {
    let harness = Harness::new();
    let transport = &harness.transport;
    assert_eq!(read_register(transport, register::DEVICE_ID), 1);
    assert_eq!(transport.offered_features(), FEATURE_VERSION_1 | (1 << 3) | (1 << 5) | (1 << 16));
    for (index, byte) in MAC.iter().enumerate() {
        assert_eq!(transport.read(0x100 + index as u64, 1), u32::from(*byte));
    }
    assert_eq!(transport.read(0x106, 2), u32::from(STATUS_LINK_UP));
    assert_eq!(transport.read(0x108, 2), 1, "max_virtqueue_pairs");
    assert_eq!(transport.read(0x10a, 2), 1500, "mtu");
    assert_eq!(transport.read(0x10c, 4), 0, "speed and beyond: not offered");
    assert_eq!(read_register(transport, register::QUEUE_SIZE_MAX), u32::from(QUEUE_SIZE_MAX));
}

#[test]
fn configuration_writes_are_ignored() {
    let mut harness = Harness::new();
    harness.transport.write(0x100, 4, 0xffff_ffff, &mut harness.ram);
    harness.transport.write(0x106, 2, 0, &mut harness.ram);
    assert_eq!(harness.transport.read(0x100, 1), u32::from(MAC[0]));
    assert_eq!(harness.transport.read(0x106, 2), u32::from(STATUS_LINK_UP));
    assert_eq!(harness.transport.device().mac(), MAC);
}

#[test]
fn a_driver_may_take_only_some_features() {
    let mut transport = MmioTransport::new(Net::new(TestPort::default(), MAC));
    let mut ram = FakeRam::new(0, RAM_BYTES);
    let status = linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1 | FEATURE_MAC);
    assert_ne!(status & STATUS_FEATURES_OK, 0);
    // Offloads are refused: CSUM (bit 0) and MRG_RXBUF (bit 15).
    for refused in [1_u64 << 0, 1 << 15, 1 << 17] {
        let status = linux_negotiate(&mut transport, &mut ram, FEATURES | refused);
        assert_eq!(status & STATUS_FEATURES_OK, 0, "feature {refused:#x} is not offered");
    }
}

#[test]
fn a_frame_in_one_descriptor_goes_to_the_port() {
    let mut harness = Harness::new();
    let sent = frame(60, 1);
    harness.transmit_bytes(tx_header(0, 0, 0), &sent);
    assert_eq!(harness.port().sent, vec![sent]);
    let counters = harness.counters();
    assert_eq!((counters.transmitted_frames, counters.transmitted_bytes), (1, 60));
}

#[test]
fn header_and_frame_may_be_split_anyhow() {
    let mut harness = Harness::new();
    let sent = frame(FRAME_BYTES_MAX, 2);
    // Header in two pieces (5 + 7 bytes), frame in three, one of them empty.
    harness.ram.put(BUFFERS, &tx_header(0, 0, 0)[..5]);
    harness.ram.put(BUFFERS + 0x100, &tx_header(0, 0, 0)[5..]);
    harness.ram.put(BUFFERS + 0x200, &sent[..1000]);
    harness.ram.put(BUFFERS + 0x1000, &sent[1000..]);
    harness.transmit(&[
        readable(BUFFERS, 5),
        readable(BUFFERS + 0x100, 7),
        readable(BUFFERS + 0x200, 1000),
        readable(BUFFERS + 0x900, 0),
        readable(BUFFERS + 0x1000, 518),
    ]);
    assert_eq!(harness.port().sent, vec![sent]);
}

#[test]
fn ignored_header_fields_do_not_matter() {
    let mut harness = Harness::new();
    let sent = frame(100, 3);
    harness.transmit_bytes(tx_header(0, 0, 0xa5), &sent);
    assert_eq!(harness.port().sent, vec![sent]);
}

#[test]
fn offload_requests_drop_the_frame() {
    let mut harness = Harness::new();
    for (flags, gso_type) in [(1, 0), (2, 0), (4, 0), (0x80, 0), (0, 1), (0, 3), (0, 4), (0, 5), (0, 0x80)] {
        harness.transmit_bytes(tx_header(flags, gso_type, 0), &frame(100, 4));
    }
    assert_eq!(harness.counters().transmit_bad_header, 9);
    assert!(harness.port().sent.is_empty());
    // The queue goes on.
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(100, 5));
    assert_eq!(harness.port().sent.len(), 1);
}

#[test]
fn frame_lengths_are_bounded_both_ways() {
    let mut harness = Harness::new();
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(FRAME_BYTES_MIN - 1, 6));
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(FRAME_BYTES_MAX + 1, 6));
    harness.transmit_bytes(tx_header(0, 0, 0), &[]);
    assert_eq!(harness.counters().transmit_bad_length, 3);
    // A header-sized chain of 4 GiB - 1 bytes is refused without reading.
    harness.transmit(&[readable(BUFFERS, u32::MAX)]);
    assert_eq!(harness.counters().transmit_bad_length, 4);
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(FRAME_BYTES_MIN, 6));
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(FRAME_BYTES_MAX, 6));
    let lengths: Vec<usize> = harness.port().sent.iter().map(Vec::len).collect();
    assert_eq!(lengths, vec![FRAME_BYTES_MIN, FRAME_BYTES_MAX]);
}

#[test]
fn malformed_transmit_chains_are_dropped() {
    let mut harness = Harness::new();
    harness.ram.put(BUFFERS, &tx_header(0, 0, 0));
    harness.ram.put(BUFFERS + 12, &frame(60, 7));
    // Short of a header; a device-writable buffer; nothing readable at all.
    harness.transmit(&[readable(BUFFERS, 11)]);
    harness.transmit(&[readable(BUFFERS, 72), writable(BUFFERS + 0x800, 16)]);
    harness.transmit(&[writable(BUFFERS, 72)]);
    assert_eq!(harness.counters().transmit_malformed, 3);
    // A buffer outside guest RAM, and one wrapping past its end.
    harness.transmit(&[readable(BUFFERS, 12), readable(RAM_BYTES as u64 - 30, 60)]);
    harness.transmit(&[readable(BUFFERS, 12), readable(u64::MAX - 100, 60)]);
    assert_eq!(harness.counters().transmit_faults, 2);
    assert!(harness.port().sent.is_empty());
    assert!(!harness.ram.writes.iter().any(|&(address, _)| address >= BUFFERS), "transmit writes no buffer");
}

#[test]
fn a_full_port_drops_and_counts() {
    let mut harness = Harness::new();
    for error in [TransmitError::Full, TransmitError::Unavailable] {
        harness.port().refuse = Some(error);
        harness.transmit_bytes(tx_header(0, 0, 0), &frame(60, 8));
    }
    assert_eq!(harness.counters().transmit_port_dropped, 2);
    harness.port().refuse = None;
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(60, 8));
    assert_eq!(harness.counters().transmitted_frames, 1);
}

#[test]
fn a_transmit_descriptor_loop_is_refused_and_the_queue_goes_on() {
    let mut harness = Harness::new();
    harness.tx.write_descriptor(&mut harness.ram, 0, BUFFERS, 72, DESCRIPTOR_NEXT, 1);
    harness.tx.write_descriptor(&mut harness.ram, 1, BUFFERS, 72, DESCRIPTOR_NEXT, 0);
    harness.tx.publish(&mut harness.ram, 0);
    harness.tx.next_descriptor = 2;
    write_register(&mut harness.transport, &mut harness.ram, register::QUEUE_NOTIFY, 1);
    assert_eq!(harness.tx.take_used(&harness.ram), vec![(0, 0)]);
    assert_eq!(harness.transport.queue(TRANSMIT_QUEUE).map(SplitQueue::refused_chains), Some(1));
    harness.acknowledge(INTERRUPT_USED_BUFFER);
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(60, 9));
    assert_eq!(harness.port().sent.len(), 1);
}

#[test]
fn a_received_frame_fills_a_posted_buffer() {
    let mut harness = Harness::new();
    let head = harness.post(&[writable(RX, 1530)]);
    harness.notify_receive();
    assert!(harness.rx.take_used(&harness.ram).is_empty(), "nothing to deliver yet");
    let received = frame(98, 10);
    harness.port().incoming.push_back(received.clone());
    harness.transport.deliver(&mut harness.ram);
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(head), 12 + 98)]);
    assert_eq!(harness.ram.get(RX, 12), rx_header());
    assert_eq!(harness.ram.get(RX + 12, 98), received);
    harness.acknowledge(INTERRUPT_USED_BUFFER);
    let counters = harness.counters();
    assert_eq!((counters.received_frames, counters.received_bytes), (1, 98));
}

#[test]
fn a_receive_buffer_may_be_split_anyhow() {
    let mut harness = Harness::new();
    let received = frame(FRAME_BYTES_MAX, 11);
    harness.port().incoming.push_back(received.clone());
    let head = harness.post(&[
        writable(RX, 12),
        writable(RX + 0x100, 0),
        writable(RX + 0x200, 700),
        writable(RX + 0x1000, 900),
    ]);
    harness.notify_receive();
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(head), 12 + 1518)]);
    assert_eq!(harness.ram.get(RX, 12), rx_header());
    assert_eq!(harness.ram.get(RX + 0x200, 700), received[..700].to_vec());
    assert_eq!(harness.ram.get(RX + 0x1000, 818), received[700..].to_vec());
}

#[test]
fn frames_wait_for_buffers_in_order() {
    let mut harness = Harness::new();
    let frames: Vec<Vec<u8>> = (0..4).map(|seed| frame(60 + usize::from(seed), seed)).collect();
    harness.port().incoming.extend(frames.iter().cloned());
    harness.transport.deliver(&mut harness.ram);
    assert!(harness.transport.device().has_staged_frame(), "the first frame waits in the device");
    assert!(!harness.transport.interrupt_line());
    let mut delivered = Vec::new();
    for round in 0..2 {
        let first = harness.post(&[writable(RX + 0x1000 * round * 2, 1530)]);
        let second = harness.post(&[writable(RX + 0x1000 * (round * 2 + 1), 1530)]);
        harness.notify_receive();
        let used = harness.rx.take_used(&harness.ram);
        assert_eq!(used.iter().map(|&(head, _)| head).collect::<Vec<_>>(), vec![u32::from(first), u32::from(second)]);
        for (slot, (_, length)) in used.into_iter().enumerate() {
            let address = RX + 0x1000 * (round * 2 + slot as u64) + 12;
            delivered.push(harness.ram.get(address, length as usize - 12));
        }
    }
    assert_eq!(delivered, frames);
    assert!(!harness.transport.device().has_staged_frame());
}

#[test]
fn a_buffer_too_small_drops_the_frame() {
    let mut harness = Harness::new();
    harness.port().incoming.extend([frame(100, 12), frame(60, 13)]);
    let small = harness.post(&[writable(RX, 12 + 99)]);
    let good = harness.post(&[writable(RX + 0x1000, 12 + 60)]);
    harness.notify_receive();
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(small), 0), (u32::from(good), 72)]);
    assert_eq!(harness.ram.get(RX + 0x1000 + 12, 60), frame(60, 13));
    assert_eq!(harness.counters().receive_buffer_too_small, 1);
    assert!(!harness.ram.writes.iter().any(|&(address, _)| (RX..RX + 0x1000).contains(&address)));
}

#[test]
fn a_readable_receive_buffer_is_returned_and_the_frame_kept() {
    let mut harness = Harness::new();
    harness.port().incoming.extend([frame(60, 14), frame(61, 15)]);
    let readable_head = harness.post(&[readable(RX, 1530)]);
    let mixed = harness.post(&[readable(RX, 12), writable(RX + 0x100, 1530)]);
    // A buffer of no bytes is too small: the first frame is dropped there.
    let zero = harness.post(&[writable(RX, 0)]);
    let good = harness.post(&[writable(RX + 0x1000, 1530)]);
    harness.notify_receive();
    assert_eq!(
        harness.rx.take_used(&harness.ram),
        vec![(u32::from(readable_head), 0), (u32::from(mixed), 0), (u32::from(zero), 0), (u32::from(good), 73)]
    );
    assert_eq!(harness.ram.get(RX + 0x1000 + 12, 61), frame(61, 15));
    let counters = harness.counters();
    assert_eq!((counters.receive_bad_buffers, counters.receive_buffer_too_small, counters.received_frames), (2, 1, 1));
    assert!(!harness.ram.writes.iter().any(|&(address, _)| (RX..RX + 0x1000).contains(&address)), "readable untouched");
}

#[test]
fn a_receive_buffer_outside_ram_drops_the_frame() {
    let mut harness = Harness::new();
    harness.port().incoming.extend([frame(60, 15), frame(61, 16)]);
    let outside = harness.post(&[writable(RX, 12), writable(RAM_BYTES as u64 - 10, 100)]);
    let good = harness.post(&[writable(RX + 0x1000, 1530)]);
    harness.notify_receive();
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(outside), 0), (u32::from(good), 73)]);
    assert_eq!(harness.ram.get(RX + 0x1000 + 12, 61), frame(61, 16));
    assert_eq!(harness.counters().receive_faults, 1);
}

#[test]
fn bad_lengths_from_the_port_are_dropped() {
    let mut harness = Harness::new();
    harness.port().incoming.extend([vec![0; 0], vec![1; 13], vec![2; FRAME_BYTES_MAX + 1], frame(64, 17)]);
    let head = harness.post(&[writable(RX, 1530)]);
    harness.notify_receive();
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(head), 76)]);
    assert_eq!(harness.counters().receive_bad_length, 3);
}

#[test]
fn without_a_live_receive_queue_frames_are_dropped() {
    let mut transport = MmioTransport::new(Net::new(TestPort::default(), MAC));
    let mut ram = FakeRam::new(0, RAM_BYTES);
    transport.device_mut().port_mut().incoming.extend([frame(60, 18), frame(60, 19)]);
    transport.deliver(&mut ram);
    assert_eq!(transport.device().counters().receive_not_ready, 2);
    assert!(transport.device().port().incoming.is_empty());
    assert!(ram.writes.is_empty());
    assert!(!transport.interrupt_line());
    // A frame waiting in the device when the driver resets it is dropped.
    let mut harness = Harness::new();
    harness.port().incoming.push_back(frame(60, 20));
    harness.transport.deliver(&mut harness.ram);
    assert!(harness.transport.device().has_staged_frame());
    write_register(&mut harness.transport, &mut harness.ram, register::STATUS, 0);
    assert!(!harness.transport.device().has_staged_frame());
    assert_eq!(harness.counters().receive_not_ready, 1);
}

#[test]
fn one_delivery_is_bounded() {
    let mut harness = Harness::new();
    let frames = 3 * usize::from(QUEUE_SIZE_MAX);
    harness.port().incoming.extend((0..frames).map(|_| vec![0; 5]));
    harness.post(&[writable(RX, 1530)]);
    harness.transport.deliver(&mut harness.ram);
    assert_eq!(harness.counters().receive_bad_length, 2 * u64::from(QUEUE_SIZE_MAX));
    assert_eq!(harness.port().incoming.len(), frames - 2 * usize::from(QUEUE_SIZE_MAX));
}

#[test]
fn link_status_changes_raise_a_configuration_interrupt() {
    let mut harness = Harness::new();
    harness.transport.set_link_up(false);
    assert_eq!(harness.transport.read(0x106, 2), 0);
    harness.acknowledge(INTERRUPT_CONFIG_CHANGE);
    harness.transport.set_link_up(false);
    assert!(!harness.transport.interrupt_line(), "no change, no interrupt");
    harness.transport.set_link_up(true);
    assert_eq!(harness.transport.read(0x106, 2), u32::from(STATUS_LINK_UP));
    harness.acknowledge(INTERRUPT_CONFIG_CHANGE);
}

/// One step of the property test's driver.
#[derive(Clone, Debug)]
enum Step {
    /// A frame of this length (and seed) arrives; the VMX delivers.
    Arrive(usize, u8),
    /// The driver posts a receive chain and notifies.
    Post(Vec<Element>),
    /// The driver transmits a chain (its first bytes a header with these
    /// flags and gso_type) and notifies.
    Send(Vec<Element>, u8, u8),
    /// A raw register write.
    Register(u64, u32),
}

fn element_strategy() -> impl Strategy<Value = Element> {
    let address = prop_oneof![
        4 => (0_u64..32).prop_map(|slot| RX + 0x800 * slot),
        1 => prop::sample::select(vec![QUEUE_0.descriptor_table, QUEUE_0.used_ring, QUEUE_1.available_ring]),
        1 => (RAM_BYTES as u64 - 2000)..(RAM_BYTES as u64 + 100),
        1 => any::<u64>(),
    ];
    let length = prop_oneof![
        3 => prop::sample::select(vec![0_u32, 1, 12, 13, 60, 72, 1530, 2000]),
        2 => 0_u32..2048,
        1 => any::<u32>(),
    ];
    (address, length, any::<bool>()).prop_map(|(address, length, device_writes)| Element {
        address,
        length,
        writable: device_writes,
    })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let chain = || prop::collection::vec(element_strategy(), 1..4);
    let good_rx = (0_u64..32).prop_map(|slot| vec![writable(RX + 0x800 * slot, 1530)]);
    prop_oneof![
        3 => (prop_oneof![3 => 14_usize..=1518, 1 => 0_usize..2000], any::<u8>()).prop_map(|(length, seed)| Step::Arrive(length, seed)),
        3 => prop_oneof![2 => good_rx, 1 => chain()].prop_map(Step::Post),
        2 => (chain(), prop_oneof![3 => Just(0_u8), 1 => any::<u8>()], prop_oneof![3 => Just(0_u8), 1 => any::<u8>()])
            .prop_map(|(elements, flags, gso)| Step::Send(elements, flags, gso)),
        1 => (prop::sample::select(vec![register::QUEUE_NOTIFY, register::STATUS, register::INTERRUPT_ACK, register::QUEUE_SELECT]), 0_u32..4)
            .prop_map(|(offset, value)| Step::Register(offset, value)),
    ]
}

/// The queues the device may write: those ready, at the test layouts.
fn watched_queues(transport: &MmioTransport<Net<TestPort>>) -> Vec<(u64, u16, u64)> {
    [(RECEIVE_QUEUE, QUEUE_0), (TRANSMIT_QUEUE, QUEUE_1)]
        .into_iter()
        .filter_map(|(index, layout)| {
            let queue = transport.queue(index)?;
            queue.is_ready().then_some((layout.descriptor_table, queue.size(), layout.used_ring))
        })
        .collect()
}

/// After a reset and a clean bring-up the device sends and receives.
fn assert_works_after_reset(transport: &mut MmioTransport<Net<TestPort>>) -> Result<(), TestCaseError> {
    let mut ram = FakeRam::new(0, RAM_BYTES);
    write_register(transport, &mut ram, register::STATUS, 0);
    let (rx, tx) = bring_up(transport, &mut ram);
    let port = transport.device_mut().port_mut();
    port.incoming.clear();
    port.sent.clear();
    port.refuse = None;
    let mut harness = Harness {
        transport: core::mem::replace(transport, MmioTransport::new(Net::new(TestPort::default(), MAC))),
        ram,
        rx,
        tx,
    };
    harness.transmit_bytes(tx_header(0, 0, 0), &frame(60, 1));
    prop_assert_eq!(&harness.port().sent, &vec![frame(60, 1)]);
    let head = harness.post(&[writable(RX, 1530)]);
    harness.port().incoming.push_back(frame(70, 2));
    harness.transport.deliver(&mut harness.ram);
    prop_assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(head), 82)]);
    prop_assert_eq!(harness.ram.get(RX + 12, 70), frame(70, 2));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random arrivals, receive chains, transmit chains and register writes:
    /// no panic, writes only to the used rings and device-writable buffers,
    /// every arriving frame accounted for exactly once, used lengths a
    /// header and a frame (or 0) adding up to the bytes counted, transmitted
    /// frames of valid lengths; and the device works after a reset.
    #[test]
    fn random_traffic_keeps_the_device_sound(steps in prop::collection::vec(step_strategy(), 1..60)) {
        let mut transport = MmioTransport::new(Net::new(TestPort::default(), MAC));
        let mut ram = CheckedRam::new(FakeRam::new(0, RAM_BYTES));
        let (mut rx, mut tx) = bring_up(&mut transport, &mut ram.ram);
        let mut arrived = 0_u64;
        let (mut used_frames, mut used_bytes) = (0_u64, 0_u64);
        // A driver that hands its own receive used ring over as a buffer
        // reads garbage from it: the used-ring checks stop then.
        let used_ring = QUEUE_0.used_ring..QUEUE_0.used_ring + 4 + 8 * u64::from(QUEUE_SIZE);
        let mut used_ring_clobbered = false;
        for step in steps {
            if let Step::Post(elements) | Step::Send(elements, ..) = &step {
                used_ring_clobbered |= elements.iter().any(|element| {
                    element.writable
                        && element.address < used_ring.end
                        && element.address.saturating_add(u64::from(element.length)) > used_ring.start
                });
            }
            match step {
                Step::Arrive(length, seed) => {
                    arrived += 1;
                    transport.device_mut().port_mut().incoming.push_back(frame(length, seed));
                    ram.watch_all(&watched_queues(&transport));
                    transport.deliver(&mut ram);
                }
                Step::Post(elements) => {
                    rx.add(&mut ram.ram, &elements);
                    ram.watch_all(&watched_queues(&transport));
                    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
                }
                Step::Send(elements, flags, gso_type) => {
                    if let Some(first) = elements.first() && first.address >= RX && ram.ram.range(first.address, 2).is_some() {
                        ram.ram.put(first.address, &[flags, gso_type]);
                    }
                    tx.add(&mut ram.ram, &elements);
                    ram.watch_all(&watched_queues(&transport));
                    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 1);
                }
                Step::Register(offset, value) => {
                    ram.watch_all(&watched_queues(&transport));
                    write_register(&mut transport, &mut ram, offset, value);
                }
            }
            prop_assert_eq!(&ram.violations, &Vec::new());
            if used_ring_clobbered {
                continue;
            }
            let published = ram.ram.get_u16(QUEUE_0.used_ring + 2);
            prop_assert!(published.wrapping_sub(rx.used_seen) <= QUEUE_SIZE, "at most a queue's worth per step");
            for (_, length) in rx.take_used(&ram.ram) {
                prop_assert!(length == 0 || (26..=1530).contains(&length), "used length {}", length);
                if length != 0 {
                    used_frames += 1;
                    used_bytes += u64::from(length) - 12;
                }
            }
        }
        let device = transport.device();
        let counters = device.counters();
        let waiting = device.port().incoming.len() as u64 + u64::from(device.has_staged_frame());
        prop_assert_eq!(
            arrived,
            counters.received_frames + counters.receive_buffer_too_small + counters.receive_faults
                + counters.receive_bad_length + counters.receive_not_ready + waiting,
            "every arrival accounted for once: {:?}", counters
        );
        if !used_ring_clobbered {
            prop_assert_eq!((used_frames, used_bytes), (counters.received_frames, counters.received_bytes));
        }
        for sent in &device.port().sent {
            prop_assert!(is_frame_length(sent.len()));
        }
        prop_assert_eq!(device.port().sent.len() as u64, counters.transmitted_frames);
        assert_works_after_reset(&mut transport)?;
    }
}
