//! One guest's devices through the protocol: the description, COM1's
//! lines and interrupt, a virtio-blk read from the first register to the
//! used ring, the virtio console's lines, a frame around the network
//! device's loopback, refusals, and a property test of arbitrary messages.

extern crate std;

use std::cell::RefCell;
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::protocol::{MAX_DEVICES, label};
use crate::uart::{IER_TRANSMITTER_EMPTY, INTERRUPT_ENABLE_OFFSET, MCR_OUT2, MODEM_CONTROL_OFFSET};
use crate::virtio::blk::{MemoryDisk, REQUEST_IN, STATUS_OK};
use crate::virtio::mmio::{MAGIC_VALUE, register};
use crate::virtio::test_support::{
    AVAILABLE_RING, BUFFERS, DESCRIPTOR_TABLE, FakeRam, QUEUE_0, QUEUE_1, QueueLayout, RAM_BYTES, TestDriver,
    USED_RING, halves, readable, writable,
};
use crate::virtio::{FEATURE_VERSION_1, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK};

/// The guest's RAM, shared between the set and the test's driver.
#[derive(Clone)]
struct SharedRam(Rc<RefCell<FakeRam>>);

impl GuestRam for SharedRam {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), crate::virtio::OutOfRange> {
        self.0.borrow().read(guest_physical, bytes)
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), crate::virtio::OutOfRange> {
        self.0.borrow_mut().write(guest_physical, bytes)
    }
}

/// The console lines, shared with the test.
#[derive(Clone, Default)]
struct Lines(Rc<RefCell<Vec<String>>>);

impl LineSink for Lines {
    fn write_line(&mut self, line: &str) {
        self.0.borrow_mut().push(line.into());
    }
}

/// A sector's bytes, as a length.
const SECTOR: usize = 512;

type Set = GuestDevices<SharedRam, MemoryDisk<Vec<u8>>, Lines>;

/// A set with `disks` disks of four sectors each, sector n filled with
/// byte n + 1 of disk d * 16.
fn new_set(disks: usize) -> (Set, SharedRam, Lines) {
    let ram = SharedRam(Rc::new(RefCell::new(FakeRam::new(0, RAM_BYTES))));
    let lines = Lines::default();
    let backends = (0..disks).map(|number| {
        let bytes: Vec<u8> =
            (0..4 * SECTOR).map(|at| u8::try_from(number * 16 + at / SECTOR + 1).expect("small")).collect();
        let mut id = [0; 20];
        id[0] = b'0' + u8::try_from(number).expect("small");
        (MemoryDisk::new(bytes), id)
    });
    (GuestDevices::new(ram.clone(), backends, lines.clone()), ram, lines)
}

fn access(space: Space, address: u64, bytes: u64, write: Option<u64>) -> Request {
    Request::Access(Access { space, address, width: Width::from_bytes(bytes).expect("a width"), write })
}

fn read(set: &mut Set, space: Space, address: u64, bytes: u64) -> AccessReply {
    match set.serve(&access(space, address, bytes, None)) {
        Ok(Served::Access(reply)) => reply,
        other => panic!("read of {address:#x}: {other:?}"),
    }
}

fn write(set: &mut Set, space: Space, address: u64, bytes: u64, value: u64) -> AccessReply {
    match set.serve(&access(space, address, bytes, Some(value))) {
        Ok(Served::Access(reply)) => reply,
        other => panic!("write of {address:#x}: {other:?}"),
    }
}

#[test]
fn com1_and_each_disk_are_described_in_order() {
    let (set, ..) = new_set(2);
    let devices: Vec<Device> = set.devices().iter().copied().collect();
    assert_eq!(
        devices,
        [
            Device { kind: DeviceKind::Uart16550, base: 0x3f8, bytes: 8, line: 4 },
            Device { kind: DeviceKind::VirtioMmio, base: 0xfeb0_0000, bytes: 0x200, line: 5 },
            Device { kind: DeviceKind::VirtioMmio, base: 0xfeb0_1000, bytes: 0x200, line: 6 },
            Device { kind: DeviceKind::VirtioMmio, base: 0xfeb0_4000, bytes: 0x200, line: 11 },
            Device { kind: DeviceKind::VirtioMmio, base: 0xfeb0_5000, bytes: 0x200, line: 12 },
        ]
    );
    let (many, ..) = new_set(MAX_DISKS + 2);
    assert_eq!(many.devices().len(), 1 + MAX_DISKS + 2, "disks past the lines are not served");
    let (none, ..) = new_set(0);
    let windows: Vec<u64> = none.devices().iter().skip(1).map(|device| device.base).collect();
    assert_eq!(windows, [CONSOLE_BASE, NET_BASE], "the console and the network device have fixed windows");
    let mut reply = [0; describe_words(MAX_DEVICES)];
    let (mut set, ..) = new_set(2);
    let written = set.handle_message(label::DESCRIBE, &[], &mut reply).expect("served");
    assert_eq!(Devices::decode(&reply[..written]).as_ref(), Ok(set.devices()));
}

#[test]
fn the_guest_s_output_becomes_lines_and_its_interrupt_a_level() {
    let (mut set, _, lines) = new_set(0);
    // Eight-bit words (the reset's five would cut every byte).
    write(&mut set, Space::Port, 0x3fb, 1, 0x03);
    for byte in b"hello\r\nwor" {
        assert_eq!(write(&mut set, Space::Port, 0x3f8, 1, u64::from(*byte)).lines, 0);
    }
    assert_eq!(*lines.0.borrow(), ["hello"]);
    // THR empty, enabled, with OUT2 open: IRQ 4 rises.
    write(&mut set, Space::Port, 0x3f8 + u64::from(MODEM_CONTROL_OFFSET), 1, u64::from(MCR_OUT2));
    let reply =
        write(&mut set, Space::Port, 0x3f8 + u64::from(INTERRUPT_ENABLE_OFFSET), 1, u64::from(IER_TRANSMITTER_EMPTY));
    assert_eq!(reply.lines, 1 << 4);
    // Reading IIR reports it and clears it.
    assert_eq!(read(&mut set, Space::Port, 0x3fa, 1), AccessReply { value: 0x02, lines: 0 });
    // A two-byte read of LSR and MSR: byte by byte, low first.
    let status = read(&mut set, Space::Port, 0x3fd, 2).value;
    assert_eq!(status & 0x60, 0x60, "THRE and TEMT");
    assert_eq!(set.serve(&Request::Stopped), Ok(Served::Stopped));
    assert_eq!(*lines.0.borrow(), ["hello", "wor"], "the stop flushes the partial line");
    assert_eq!(set.counters().port_accesses, 15);
}

#[test]
fn a_disk_serves_a_read_through_the_protocol() {
    let (mut set, ram, _) = new_set(2);
    let window = 0xfeb0_1000;
    let mmio_write =
        |set: &mut Set, offset: u64, value: u32| write(set, Space::Memory, window + offset, 4, value.into());
    assert_eq!(read(&mut set, Space::Memory, window + register::MAGIC_VALUE, 4).value, u64::from(MAGIC_VALUE));
    assert_eq!(read(&mut set, Space::Memory, window + register::DEVICE_ID, 4).value, 2);
    assert_eq!(read(&mut set, Space::Memory, window + 0x100, 4).value, 4, "capacity: four sectors");
    mmio_write(&mut set, register::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    mmio_write(&mut set, register::DRIVER_FEATURES_SELECT, 1);
    mmio_write(&mut set, register::DRIVER_FEATURES, halves(FEATURE_VERSION_1).1);
    let negotiated = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    mmio_write(&mut set, register::STATUS, negotiated);
    mmio_write(&mut set, register::QUEUE_SELECT, 0);
    mmio_write(&mut set, register::QUEUE_SIZE, 8);
    for (low, address) in [
        (register::QUEUE_DESCRIPTOR_LOW, DESCRIPTOR_TABLE),
        (register::QUEUE_DRIVER_LOW, AVAILABLE_RING),
        (register::QUEUE_DEVICE_LOW, USED_RING),
    ] {
        mmio_write(&mut set, low, halves(address).0);
    }
    mmio_write(&mut set, register::QUEUE_READY, 1);
    mmio_write(&mut set, register::STATUS, negotiated | STATUS_DRIVER_OK);
    // Read sector 2 of disk 1: header, data, status.
    let mut header = [0_u8; 16];
    header[..4].copy_from_slice(&REQUEST_IN.to_le_bytes());
    header[8..].copy_from_slice(&2_u64.to_le_bytes());
    let mut driver = TestDriver::new(8);
    {
        let mut ram = ram.0.borrow_mut();
        ram.put(BUFFERS, &header);
        driver.add(&mut ram, &[readable(BUFFERS, 16), writable(BUFFERS + 0x100, 512), writable(BUFFERS + 0x400, 1)]);
    }
    let reply = mmio_write(&mut set, register::QUEUE_NOTIFY, 0);
    assert_eq!(reply.lines, 1 << 6, "disk 1's line");
    let ram = ram.0.borrow();
    assert_eq!(ram.get(BUFFERS + 0x100, 512), vec![16 + 3; 512]);
    assert_eq!(ram.get(BUFFERS + 0x400, 1), [STATUS_OK]);
    assert_eq!(driver.take_used(&ram), [(0, 513)]);
    assert_eq!(set.disk_counters(1).map(|counters| counters.ok), Some(1));
}

/// A 32-bit register write to the virtio window at `window`.
fn mmio_write(set: &mut Set, window: u64, offset: u64, value: u32) -> AccessReply {
    write(set, Space::Memory, window + offset, 4, value.into())
}

/// Brings the device at `window` up as Linux does through the protocol:
/// `features` accepted, queue 0 at [`QUEUE_0`] and queue 1 at [`QUEUE_1`]
/// with eight entries each, DRIVER_OK. The two queues' drivers.
fn bring_up_pair(set: &mut Set, window: u64, features: u64) -> (TestDriver, TestDriver) {
    mmio_write(set, window, register::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    for (select, half) in [(0, halves(features).0), (1, halves(features).1)] {
        mmio_write(set, window, register::DRIVER_FEATURES_SELECT, select);
        mmio_write(set, window, register::DRIVER_FEATURES, half);
    }
    let negotiated = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    mmio_write(set, window, register::STATUS, negotiated);
    assert_eq!(read(set, Space::Memory, window + register::STATUS, 4).value, u64::from(negotiated));
    for (queue, layout) in [(0, QUEUE_0), (1, QUEUE_1)] {
        let QueueLayout { descriptor_table, available_ring, used_ring } = layout;
        mmio_write(set, window, register::QUEUE_SELECT, queue);
        mmio_write(set, window, register::QUEUE_SIZE, 8);
        for (low, address) in [
            (register::QUEUE_DESCRIPTOR_LOW, descriptor_table),
            (register::QUEUE_DRIVER_LOW, available_ring),
            (register::QUEUE_DEVICE_LOW, used_ring),
        ] {
            mmio_write(set, window, low, halves(address).0);
        }
        mmio_write(set, window, register::QUEUE_READY, 1);
    }
    mmio_write(set, window, register::STATUS, negotiated | STATUS_DRIVER_OK);
    (TestDriver::with_layout(8, QUEUE_0), TestDriver::with_layout(8, QUEUE_1))
}

#[test]
fn the_virtio_console_s_output_becomes_prefixed_lines_beside_com1_s() {
    let (mut set, ram, lines) = new_set(1);
    assert_eq!(read(&mut set, Space::Memory, CONSOLE_BASE + register::DEVICE_ID, 4).value, 3);
    let (_, mut transmit) = bring_up_pair(&mut set, CONSOLE_BASE, FEATURE_VERSION_1);
    ram.0.borrow_mut().put(BUFFERS, b"virtio says hi\nand more");
    transmit.add(&mut ram.0.borrow_mut(), &[readable(BUFFERS, 23)]);
    let reply = mmio_write(&mut set, CONSOLE_BASE, register::QUEUE_NOTIFY, 1);
    assert_eq!(reply.lines, 1 << CONSOLE_LINE, "the used transmit buffer raises the console's line");
    assert_eq!(*lines.0.borrow(), ["hvc0: virtio says hi"]);
    assert_eq!(transmit.take_used(&ram.0.borrow()), [(0, 0)]);
    // COM1's lines go to the same sink without the prefix.
    write(&mut set, Space::Port, 0x3fb, 1, 0x03);
    for byte in b"uart\n" {
        write(&mut set, Space::Port, 0x3f8, 1, u64::from(*byte));
    }
    assert_eq!(set.serve(&Request::Stopped), Ok(Served::Stopped));
    assert_eq!(*lines.0.borrow(), ["hvc0: virtio says hi", "uart", "hvc0: and more"], "the stop flushes both");
    assert_eq!(set.hvc_counters().transmitted_bytes, 23);
}

#[test]
fn a_frame_the_guest_sends_comes_back_through_the_loopback() {
    use crate::virtio::net::{FEATURES, HEADER_BYTES};
    // The 12-byte header, as a descriptor length.
    const HEADER: u32 = 12;
    const { assert!(HEADER_BYTES == 12) };
    let (mut set, ram, _) = new_set(0);
    assert_eq!(read(&mut set, Space::Memory, NET_BASE + register::DEVICE_ID, 4).value, 1);
    let mac: Vec<u64> =
        (0..6).map(|offset| read(&mut set, Space::Memory, NET_BASE + 0x100 + offset, 1).value).collect();
    assert_eq!(mac, GUEST_MAC.map(u64::from));
    let (mut receive, mut transmit) = bring_up_pair(&mut set, NET_BASE, FEATURES);
    // A receive buffer for a whole frame with its header, then a
    // broadcast frame of 60 bytes behind a zero header.
    let receive_buffer = BUFFERS + 0x1000;
    receive.add(&mut ram.0.borrow_mut(), &[writable(receive_buffer, 1526)]);
    assert_eq!(mmio_write(&mut set, NET_BASE, register::QUEUE_NOTIFY, 0).lines, 0, "nothing received yet");
    let frame: Vec<u8> = [0xff; 6].into_iter().chain(GUEST_MAC).chain(0_u8..48).collect();
    {
        let mut ram = ram.0.borrow_mut();
        ram.put(BUFFERS, &[0; HEADER_BYTES]);
        ram.put(BUFFERS + 0x100, &frame);
        transmit.add(&mut ram, &[readable(BUFFERS, HEADER), readable(BUFFERS + 0x100, 60)]);
    }
    let reply = mmio_write(&mut set, NET_BASE, register::QUEUE_NOTIFY, 1);
    assert_eq!(reply.lines, 1 << NET_LINE);
    let ram = ram.0.borrow();
    assert_eq!(transmit.take_used(&ram), [(0, 0)]);
    assert_eq!(receive.take_used(&ram), [(0, HEADER + 60)]);
    assert_eq!(ram.get(receive_buffer + u64::from(HEADER), 60), frame, "the frame, back");
    let counters = set.net_counters();
    assert_eq!((counters.transmitted_frames, counters.received_frames), (1, 1));
}

#[test]
fn accesses_to_nothing_served_are_refused() {
    let (mut set, ..) = new_set(1);
    for request in [
        access(Space::Port, 0x3f7, 1, None),
        access(Space::Port, 0x400, 1, Some(0)),
        access(Space::Port, 0x3fe, 4, None),
        access(Space::Memory, 0x3f8, 1, None),
        access(Space::Port, 0xfeb0_0000 & 0xffff, 1, None),
        access(Space::Memory, 0xfeb0_0200, 4, None),
        access(Space::Memory, 0xfeb0_01fe, 4, None),
        access(Space::Memory, 0xfeb0_1000, 4, None),
        access(Space::Memory, u64::MAX, 8, None),
    ] {
        assert_eq!(set.serve(&request), Err(Refusal::NotServed), "{request:?}");
    }
    let mut reply = [0; 4];
    assert_eq!(set.handle_message(label::PORT_READ, &[0x3f8], &mut reply), Err(Refusal::WrongLength));
    assert_eq!(set.handle_message(0, &[], &mut reply), Err(Refusal::UnknownLabel));
    assert_eq!(set.counters().refused, 11);
    assert_eq!(set.counters().served, 0);
    // An eight-byte read of a window is served, as the transport serves
    // any size it does not take: zero.
    assert_eq!(read(&mut set, Space::Memory, 0xfeb0_0000, 8).value, 0);
}

proptest! {
    /// Arbitrary messages: refused or answered, never a panic; an answer
    /// only ever raises lines the set drives, and fits its access.
    #[test]
    fn arbitrary_messages_are_answered_or_refused(
        messages in proptest::collection::vec(
            (
                prop_oneof![label::DESCRIBE..=label::STOPPED, any::<u64>()],
                proptest::collection::vec(
                    prop_oneof![0x3f0_u64..0x400, 0xfeb0_0000_u64..0xfeb0_1210, 0xfeb0_4000_u64..0xfeb0_5210, 0_u64..9, any::<u64>()],
                    0..4,
                ),
            ),
            1..200,
        ),
    ) {
        let (mut set, ..) = new_set(2);
        let driven = set.devices().lines();
        let mut reply = [0; describe_words(MAX_DEVICES)];
        for (label, words) in messages {
            if let Ok(written) = set.handle_message(label, &words, &mut reply)
                && let Ok(Request::Access(access)) = Request::decode(label, &words)
            {
                prop_assert!(AccessReply::decode(&access, driven, &reply[..written]).is_ok());
            }
        }
    }
}
