extern crate std;

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::virtio::STATUS_FEATURES_OK;
use crate::virtio::mmio::{INTERRUPT_USED_BUFFER, register};
use crate::virtio::test_support::{
    BUFFERS, CheckedRam, Element, FakeRam, QUEUE_0, QUEUE_1, RAM_BYTES, TestDriver, linux_bring_up_pair,
    linux_negotiate, read_register, readable, writable, write_register,
};

const QUEUE_SIZE: u16 = 16;
/// Receive buffers from here on.
const RX: u64 = BUFFERS + 0x1_0000;

fn bring_up(transport: &mut MmioTransport<Console>, ram: &mut dyn GuestRam) -> (TestDriver, TestDriver) {
    linux_bring_up_pair(transport, ram, FEATURES, QUEUE_SIZE)
}

struct Harness {
    transport: MmioTransport<Console>,
    ram: FakeRam,
    rx: TestDriver,
    tx: TestDriver,
}

impl Harness {
    fn new() -> Self {
        let mut transport = MmioTransport::new(Console::new());
        let mut ram = FakeRam::new(0, RAM_BYTES);
        let (rx, tx) = bring_up(&mut transport, &mut ram);
        Harness { transport, ram, rx, tx }
    }

    fn counters(&self) -> ConsoleCounters {
        self.transport.device().counters()
    }

    /// Publishes a transmit chain and notifies; checks it came back empty.
    fn transmit(&mut self, elements: &[Element]) {
        let head = self.tx.add(&mut self.ram, elements);
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, u32::from(TRANSMIT_QUEUE));
        assert_eq!(self.tx.take_used(&self.ram), vec![(u32::from(head), 0)]);
        assert!(self.transport.interrupt_line());
        write_register(&mut self.transport, &mut self.ram, register::INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
    }

    fn drain(&mut self) -> Vec<u8> {
        let mut out = vec![0_u8; OUTPUT_QUEUE_CAPACITY + 1];
        let count = self.transport.device_mut().drain_output(&mut out);
        out.truncate(count);
        out
    }

    fn post(&mut self, elements: &[Element]) -> u16 {
        let head = self.rx.add(&mut self.ram, elements);
        write_register(&mut self.transport, &mut self.ram, register::QUEUE_NOTIFY, u32::from(RECEIVE_QUEUE));
        head
    }
}

#[test]
fn identity_features_and_configuration() {
    let mut harness = Harness::new();
    assert_eq!(read_register(&harness.transport, register::DEVICE_ID), 3);
    assert_eq!(harness.transport.offered_features(), FEATURE_VERSION_1);
    for offset in [0x100, 0x102, 0x104, 0x108] {
        assert_eq!(harness.transport.read(offset, 2), 0, "no cols, rows, max_nr_ports or emerg_wr");
    }
    harness.transport.write(0x108, 4, u32::from(b'!'), &mut harness.ram);
    assert!(harness.drain().is_empty(), "no emergency write");
    // SIZE (0), MULTIPORT (1) and EMERG_WRITE (2) are refused.
    for refused in [1_u64, 2, 4] {
        let status = linux_negotiate(&mut harness.transport, &mut harness.ram, FEATURES | refused);
        assert_eq!(status & STATUS_FEATURES_OK, 0);
    }
}

#[test]
fn transmitted_bytes_reach_the_host_in_order() {
    let mut harness = Harness::new();
    harness.ram.put(BUFFERS, b"hello, ");
    harness.ram.put(BUFFERS + 0x100, b"console\n");
    harness.transmit(&[readable(BUFFERS, 7), readable(BUFFERS + 0x80, 0), readable(BUFFERS + 0x100, 8)]);
    harness.transmit(&[readable(BUFFERS, 5)]);
    assert_eq!(harness.drain(), b"hello, console\nhello".to_vec());
    assert_eq!(harness.counters().transmitted_bytes, 20);
}

#[test]
fn a_full_output_queue_drops_the_newest_bytes() {
    let mut harness = Harness::new();
    let bytes: Vec<u8> = (0..OUTPUT_QUEUE_CAPACITY + 100).map(|index| index.to_le_bytes()[0]).collect();
    harness.ram.put(BUFFERS, &bytes);
    harness.transmit(&[readable(BUFFERS, u32::try_from(bytes.len()).expect("small"))]);
    assert_eq!(harness.transport.device().pending_output_len(), OUTPUT_QUEUE_CAPACITY);
    assert_eq!(harness.drain(), bytes[..OUTPUT_QUEUE_CAPACITY].to_vec());
    assert_eq!(harness.counters().dropped_output_bytes, 100);
}

#[test]
fn bad_transmit_chains_output_nothing() {
    let mut harness = Harness::new();
    harness.ram.put(BUFFERS, b"abcdef");
    harness.transmit(&[readable(BUFFERS, 3), writable(BUFFERS + 3, 3)]);
    harness.transmit(&[readable(BUFFERS, 0x8000), readable(BUFFERS, 0x8000), readable(BUFFERS, 1)]);
    harness.transmit(&[readable(BUFFERS, u32::MAX)]);
    assert_eq!((harness.counters().transmit_malformed, harness.counters().transmit_too_long), (1, 2));
    // Outside RAM: the chunk holding the bad buffer is not output.
    harness.transmit(&[readable(BUFFERS, 3), readable(RAM_BYTES as u64 - 2, 4)]);
    assert_eq!(harness.counters().transmit_faults, 1);
    assert!(harness.drain().is_empty());
    // A long chain outputs its chunks before the bad one.
    let long: Vec<u8> = (0..300_u32).map(|index| index.to_le_bytes()[0]).collect();
    harness.ram.put(BUFFERS, &long);
    harness.transmit(&[readable(BUFFERS, 300), readable(RAM_BYTES as u64 - 2, 4)]);
    assert_eq!(harness.counters().transmit_faults, 2);
    assert_eq!(harness.drain(), long[..256].to_vec());
    assert!(!harness.ram.writes.iter().any(|&(address, _)| address >= BUFFERS));
}

#[test]
fn input_fills_posted_buffers_in_order() {
    let mut harness = Harness::new();
    let first = harness.post(&[writable(RX, 4)]);
    let second = harness.post(&[writable(RX + 0x100, 2), writable(RX + 0x200, 100)]);
    assert!(harness.rx.take_used(&harness.ram).is_empty(), "no input, no chain taken");
    assert_eq!(harness.transport.push_input(b"ls -l /\n", &mut harness.ram), 8);
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(first), 4), (u32::from(second), 4)]);
    assert_eq!(harness.ram.get(RX, 4), b"ls -".to_vec());
    assert_eq!(harness.ram.get(RX + 0x100, 2), b"l ".to_vec());
    assert_eq!(harness.ram.get(RX + 0x200, 2), b"/\n".to_vec());
    assert!(harness.transport.interrupt_line());
    assert_eq!(harness.counters().received_bytes, 8);
}

#[test]
fn input_waits_for_buffers_and_the_host_keeps_what_does_not_fit() {
    let mut harness = Harness::new();
    let typed: Vec<u8> = (0..300_u32).map(|index| index.to_le_bytes()[0]).collect();
    assert_eq!(harness.transport.push_input(&typed, &mut harness.ram), INPUT_QUEUE_CAPACITY);
    assert_eq!(harness.transport.device().pending_input_len(), INPUT_QUEUE_CAPACITY);
    let head = harness.post(&[writable(RX, 1024)]);
    assert_eq!(harness.rx.take_used(&harness.ram), vec![(u32::from(head), 256)]);
    assert_eq!(harness.ram.get(RX, 256), typed[..256].to_vec());
    assert_eq!(harness.transport.push_input(&typed[256..], &mut harness.ram), 44);
}

#[test]
fn bad_receive_buffers_keep_the_input() {
    let mut harness = Harness::new();
    harness.transport.device_mut().push_input(b"xyz");
    let readable_head = harness.post(&[readable(RX, 16)]);
    let empty = harness.post(&[writable(RX, 0)]);
    let outside = harness.post(&[writable(RAM_BYTES as u64 - 1, 16)]);
    let good = harness.post(&[writable(RX + 0x100, 16)]);
    assert_eq!(
        harness.rx.take_used(&harness.ram),
        vec![(u32::from(readable_head), 0), (u32::from(empty), 0), (u32::from(outside), 0), (u32::from(good), 3)]
    );
    assert_eq!(harness.ram.get(RX + 0x100, 3), b"xyz".to_vec());
    let counters = harness.counters();
    assert_eq!((counters.receive_bad_buffers, counters.receive_faults), (2, 1));
}

#[test]
fn input_before_the_driver_waits_and_survives_a_reset() {
    let mut transport = MmioTransport::new(Console::new());
    let mut ram = FakeRam::new(0, RAM_BYTES);
    assert_eq!(transport.push_input(b"early", &mut ram), 5);
    assert!(ram.writes.is_empty());
    write_register(&mut transport, &mut ram, register::STATUS, 0);
    let (mut rx, _) = bring_up(&mut transport, &mut ram);
    let head = rx.add(&mut ram, &[writable(RX, 64)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(rx.take_used(&ram), vec![(u32::from(head), 5)]);
    assert_eq!(ram.get(RX, 5), b"early".to_vec());
}

#[derive(Clone, Debug)]
enum Step {
    Input(Vec<u8>),
    Post(Vec<Element>),
    Send(Vec<Element>),
    Drain(usize),
    Register(u64, u32),
}

fn element_strategy() -> impl Strategy<Value = Element> {
    let address = prop_oneof![
        4 => (0_u64..32).prop_map(|slot| RX + 0x800 * slot),
        1 => prop::sample::select(vec![QUEUE_0.descriptor_table, QUEUE_1.used_ring]),
        1 => (RAM_BYTES as u64 - 300)..(RAM_BYTES as u64 + 100),
        1 => any::<u64>(),
    ];
    let length = prop_oneof![3 => 0_u32..600, 1 => prop::sample::select(vec![0x1_0000, 0x1_0001]), 1 => any::<u32>()];
    (address, length, any::<bool>()).prop_map(|(address, length, device_writes)| Element {
        address,
        length,
        writable: device_writes,
    })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let chain = || prop::collection::vec(element_strategy(), 1..4);
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Step::Input),
        3 => chain().prop_map(Step::Post),
        2 => chain().prop_map(Step::Send),
        1 => (0_usize..5000).prop_map(Step::Drain),
        1 => (prop::sample::select(vec![register::QUEUE_NOTIFY, register::STATUS, register::INTERRUPT_ACK]), 0_u32..4)
            .prop_map(|(offset, value)| Step::Register(offset, value)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random input, receive and transmit chains, drains and register
    /// writes: no panic, writes only to used rings and device-writable
    /// buffers, the queues within bounds, every accepted input byte either
    /// delivered or waiting, and every transmitted byte drained, waiting or
    /// counted as dropped.
    #[test]
    fn random_traffic_keeps_the_console_sound(steps in prop::collection::vec(step_strategy(), 1..50)) {
        let mut transport = MmioTransport::new(Console::new());
        let mut ram = CheckedRam::new(FakeRam::new(0, RAM_BYTES));
        let (mut rx, mut tx) = bring_up(&mut transport, &mut ram.ram);
        let (mut accepted, mut drained) = (0_u64, 0_u64);
        for step in steps {
            let watched: Vec<(u64, u16, u64)> = [(RECEIVE_QUEUE, QUEUE_0), (TRANSMIT_QUEUE, QUEUE_1)]
                .into_iter()
                .filter_map(|(index, layout)| {
                    let queue = transport.queue(index)?;
                    queue.is_ready().then_some((layout.descriptor_table, queue.size(), layout.used_ring))
                })
                .collect();
            match step {
                Step::Input(bytes) => {
                    ram.watch_all(&watched);
                    accepted += transport.push_input(&bytes, &mut ram) as u64;
                }
                Step::Post(elements) => {
                    rx.add(&mut ram.ram, &elements);
                    ram.watch_all(&watched);
                    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
                }
                Step::Send(elements) => {
                    tx.add(&mut ram.ram, &elements);
                    ram.watch_all(&watched);
                    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 1);
                }
                Step::Drain(length) => {
                    let mut out = vec![0_u8; length];
                    drained += transport.device_mut().drain_output(&mut out) as u64;
                }
                Step::Register(offset, value) => {
                    ram.watch_all(&watched);
                    write_register(&mut transport, &mut ram, offset, value);
                }
            }
            prop_assert_eq!(&ram.violations, &Vec::new());
            let device = transport.device();
            prop_assert!(device.pending_input_len() <= INPUT_QUEUE_CAPACITY);
            prop_assert!(device.pending_output_len() <= OUTPUT_QUEUE_CAPACITY);
        }
        let device = transport.device();
        let counters = device.counters();
        prop_assert_eq!(accepted, counters.received_bytes + device.pending_input_len() as u64);
        prop_assert_eq!(
            counters.transmitted_bytes,
            drained + device.pending_output_len() as u64 + counters.dropped_output_bytes
        );
    }
}
