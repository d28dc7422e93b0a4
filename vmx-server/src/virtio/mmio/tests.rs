extern crate std;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::virtio::queue::{DescriptorChain, SplitQueue};
use crate::virtio::test_support::{
    AVAILABLE_RING, BUFFERS, DESCRIPTOR_TABLE, FakeRam, RAM_BYTES, TestDriver, USED_RING, linux_bring_up,
    linux_negotiate, linux_setup_queue, read_register, readable, writable, write_register,
};

/// A device for the transport's own tests: ID 42, a few features (one of
/// them a transport feature the transport must not pass on), an 8-byte
/// writable configuration, two queues (4 and 16 entries). Serving a queue
/// returns every chain with length 1 and counts the calls.
#[derive(Clone, Debug, Default)]
struct ProbeDevice {
    config: [u8; 8],
    accepted: Option<u64>,
    resets: usize,
    processed: Vec<u16>,
    chain: DescriptorChain,
}

/// Device-type feature bits the probe device offers.
const PROBE_FEATURES: u64 = 1 | 1 << 5 | 1 << 23 | 1 << 55;
/// VIRTIO_F_INDIRECT_DESC, which the probe device wrongly offers.
const INDIRECT: u64 = 1 << 28;

impl VirtioDevice for ProbeDevice {
    fn device_id(&self) -> u32 {
        42
    }

    fn device_features(&self) -> u64 {
        PROBE_FEATURES | FEATURE_VERSION_1 | INDIRECT
    }

    fn accept_features(&mut self, features: u64) {
        self.accepted = Some(features);
    }

    fn read_config(&self, offset: u32, bytes: &mut [u8]) {
        for (position, byte) in bytes.iter_mut().enumerate() {
            let index = usize::try_from(offset).expect("small") + position;
            *byte = self.config.get(index).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u32, bytes: &[u8]) {
        for (position, byte) in bytes.iter().enumerate() {
            let index = usize::try_from(offset).expect("small") + position;
            if let Some(slot) = self.config.get_mut(index) {
                *slot = *byte;
            }
        }
    }

    fn queue_count(&self) -> u16 {
        2
    }

    fn queue_size_max(&self, queue: u16) -> u16 {
        if queue == 0 { 4 } else { 16 }
    }

    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut SplitQueue,
        ram: &mut dyn GuestRam,
    ) -> Result<(), QueueError> {
        self.processed.push(queue_index);
        while let Some(head) = queue.pop(ram, &mut self.chain)? {
            queue.push_used(ram, head, 1)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.accepted = None;
    }
}

fn probe() -> (MmioTransport<ProbeDevice>, FakeRam) {
    (MmioTransport::new(ProbeDevice::default()), FakeRam::new(0, RAM_BYTES))
}

/// A probe device brought up with queue 0 of 4 entries.
fn running_probe() -> (MmioTransport<ProbeDevice>, FakeRam, TestDriver) {
    let (mut transport, mut ram) = probe();
    linux_bring_up(&mut transport, &mut ram, FEATURE_VERSION_1 | 1, 4);
    (transport, ram, TestDriver::new(4))
}

#[test]
fn identity_registers() {
    let (transport, _) = probe();
    assert_eq!(read_register(&transport, register::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(read_register(&transport, register::VERSION), 2);
    assert_eq!(read_register(&transport, register::DEVICE_ID), 42);
    assert_eq!(read_register(&transport, register::VENDOR_ID), 0x4448_4b42);
    assert_eq!(read_register(&transport, register::STATUS), 0);
    assert_eq!(read_register(&transport, register::CONFIG_GENERATION), 0);
}

#[test]
fn the_linux_probe_sequence_brings_the_device_up() {
    let (mut transport, mut ram) = probe();
    let status = linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1 | 1 << 5 | 1 << 55);
    assert_eq!(status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    assert_eq!(transport.device().accepted, Some(FEATURE_VERSION_1 | 1 << 5 | 1 << 55));
    linux_setup_queue(&mut transport, &mut ram, 0, 4);
    linux_setup_queue(&mut transport, &mut ram, 1, 16);
    write_register(&mut transport, &mut ram, register::QUEUE_SELECT, 0);
    assert_eq!(read_register(&transport, register::QUEUE_READY), 1);
    write_register(&mut transport, &mut ram, register::STATUS, status | STATUS_DRIVER_OK);
    assert_eq!(read_register(&transport, register::STATUS), 0x0f);
    assert!(!transport.interrupt_line(), "nothing used yet");
    assert!(ram.writes.is_empty(), "setting up writes no guest memory");
}

#[test]
fn device_features_are_offered_by_word_without_transport_features() {
    let (mut transport, mut ram) = probe();
    assert_eq!(transport.offered_features(), PROBE_FEATURES | FEATURE_VERSION_1);
    assert_eq!(read_register(&transport, register::DEVICE_FEATURES), 1 | 1 << 5 | 1 << 23, "INDIRECT masked");
    write_register(&mut transport, &mut ram, register::DEVICE_FEATURES_SELECT, 1);
    assert_eq!(read_register(&transport, register::DEVICE_FEATURES), 1 | 1 << 23);
    for select in [2, 3, u32::MAX] {
        write_register(&mut transport, &mut ram, register::DEVICE_FEATURES_SELECT, select);
        assert_eq!(read_register(&transport, register::DEVICE_FEATURES), 0);
    }
}

#[test]
fn features_ok_needs_version_1() {
    let (mut transport, mut ram) = probe();
    let status = linux_negotiate(&mut transport, &mut ram, 1);
    assert_eq!(status & STATUS_FEATURES_OK, 0, "refused: the driver sees it on read-back");
    assert_eq!(transport.device().accepted, None);
    write_register(&mut transport, &mut ram, register::STATUS, status | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    assert_eq!(read_register(&transport, register::STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER, "no DRIVER_OK either");
}

#[test]
fn features_ok_refuses_features_not_offered() {
    for unoffered in [1 << 1, INDIRECT, 1 << 29, 1 << 34, 1 << 40, 1 << 63] {
        let (mut transport, mut ram) = probe();
        let status = linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1 | unoffered);
        assert_eq!(status & STATUS_FEATURES_OK, 0, "{unoffered:#x}");
        assert_eq!(transport.device().accepted, None);
        // Trying again with the right set works.
        let status = linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1);
        assert_ne!(status & STATUS_FEATURES_OK, 0);
    }
    // A bit in a word past 64.
    let (mut transport, mut ram) = probe();
    write_register(&mut transport, &mut ram, register::DRIVER_FEATURES_SELECT, 2);
    write_register(&mut transport, &mut ram, register::DRIVER_FEATURES, 1);
    write_register(&mut transport, &mut ram, register::DRIVER_FEATURES_SELECT, 1);
    write_register(&mut transport, &mut ram, register::DRIVER_FEATURES, 1);
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_FEATURES_OK);
    assert_eq!(read_register(&transport, register::STATUS), 0);
}

#[test]
fn driver_features_are_frozen_once_accepted() {
    let (mut transport, mut ram) = probe();
    linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1);
    write_register(&mut transport, &mut ram, register::DRIVER_FEATURES_SELECT, 0);
    write_register(&mut transport, &mut ram, register::DRIVER_FEATURES, 1 << 5);
    // Writing FEATURES_OK again does not renegotiate.
    write_register(&mut transport, &mut ram, register::STATUS, 0x0b);
    assert_eq!(transport.device().accepted, Some(FEATURE_VERSION_1));
}

#[test]
fn status_bits_cannot_be_cleared_or_forged() {
    let (mut transport, mut ram) = probe();
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_ACKNOWLEDGE);
    assert_eq!(read_register(&transport, register::STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER, "no clearing");
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_DEVICE_NEEDS_RESET | 0x30 | 0xff00);
    assert_eq!(
        read_register(&transport, register::STATUS),
        STATUS_ACKNOWLEDGE | STATUS_DRIVER,
        "device and reserved bits"
    );
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_FAILED);
    assert_eq!(read_register(&transport, register::STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FAILED);
}

#[test]
fn writing_zero_to_status_resets_everything() {
    let (mut transport, mut ram, mut driver) = running_probe();
    write_register(&mut transport, &mut ram, register::QUEUE_SELECT, 1);
    driver.add(&mut ram, &[writable(BUFFERS, 4)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert!(transport.interrupt_line());
    write_register(&mut transport, &mut ram, register::STATUS, 0);
    assert_eq!(read_register(&transport, register::STATUS), 0);
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), 0);
    assert!(!transport.interrupt_line());
    assert_eq!(read_register(&transport, register::QUEUE_READY), 0, "QueueSel back to 0, not ready");
    let queue = transport.queue(0).expect("queue 0");
    assert_eq!((queue.descriptor_table(), queue.available_ring(), queue.used_ring()), (0, 0, 0));
    assert_eq!(queue.size_max(), 4);
    assert_eq!(transport.device().resets, 2, "the probe's reset and this one");
    assert_eq!(transport.device().accepted, None);
    // It comes up again.
    linux_bring_up(&mut transport, &mut ram, FEATURE_VERSION_1, 4);
    let mut driver = TestDriver::new(4);
    let used_before = ram.get_u16(USED_RING + 2);
    assert_eq!(used_before, 1, "the old used ring is the driver's to clear");
    ram.put(AVAILABLE_RING, &[0; 16]);
    ram.put(USED_RING, &[0; 40]);
    let head = driver.add(&mut ram, &[writable(BUFFERS, 4)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(driver.take_used(&ram), vec![(u32::from(head), 1)]);
}

#[test]
fn registers_take_aligned_32_bit_accesses_only() {
    let (mut transport, mut ram) = probe();
    for size in [1, 2, 8, 0, 3] {
        assert_eq!(transport.read(register::MAGIC_VALUE, size), 0, "size {size}");
        transport.write(register::STATUS, size, STATUS_ACKNOWLEDGE, &mut ram);
        assert_eq!(read_register(&transport, register::STATUS), 0, "size {size}");
    }
    assert_eq!(transport.read(register::MAGIC_VALUE + 1, 4), 0);
    assert_eq!(transport.read(register::VERSION + 2, 4), 0);
    transport.write(register::STATUS + 2, 4, STATUS_ACKNOWLEDGE, &mut ram);
    assert_eq!(read_register(&transport, register::STATUS), 0);
}

#[test]
fn write_only_registers_read_0_and_read_only_ones_ignore_writes() {
    let (mut transport, mut ram, _driver) = running_probe();
    for offset in [
        register::DEVICE_FEATURES_SELECT,
        register::DRIVER_FEATURES,
        register::DRIVER_FEATURES_SELECT,
        register::QUEUE_SELECT,
        register::QUEUE_SIZE,
        register::QUEUE_NOTIFY,
        register::INTERRUPT_ACK,
        register::QUEUE_DESCRIPTOR_LOW,
        register::QUEUE_DEVICE_HIGH,
        register::SHARED_MEMORY_SELECT,
        register::QUEUE_RESET,
    ] {
        assert_eq!(read_register(&transport, offset), 0, "{offset:#x}");
    }
    let before = transport.clone();
    for offset in [
        register::MAGIC_VALUE,
        register::VERSION,
        register::DEVICE_ID,
        register::VENDOR_ID,
        register::DEVICE_FEATURES,
        register::QUEUE_SIZE_MAX,
        register::INTERRUPT_STATUS,
        register::CONFIG_GENERATION,
        register::SHARED_MEMORY_LENGTH_LOW,
        register::SHARED_MEMORY_BASE_HIGH,
        register::QUEUE_RESET,
        0x018,
        0x040,
        0x0fc - 4,
    ] {
        write_register(&mut transport, &mut ram, offset, 0xdead_beef);
    }
    for offset in (0..0x100).step_by(4) {
        assert_eq!(read_register(&transport, offset), read_register(&before, offset), "{offset:#x}");
    }
    assert_eq!(read_register(&transport, register::MAGIC_VALUE), MAGIC_VALUE);
}

#[test]
fn there_are_no_shared_memory_regions() {
    let (transport, _) = probe();
    for offset in [
        register::SHARED_MEMORY_LENGTH_LOW,
        register::SHARED_MEMORY_LENGTH_HIGH,
        register::SHARED_MEMORY_BASE_LOW,
        register::SHARED_MEMORY_BASE_HIGH,
    ] {
        assert_eq!(read_register(&transport, offset), u32::MAX);
    }
}

#[test]
fn reserved_offsets_and_offsets_past_the_window_read_0() {
    let (mut transport, mut ram) = probe();
    for offset in [0x018, 0x01c, 0x028, 0x03c, 0x040, 0x048, 0x054, 0x068, 0x074, 0x0a8, 0x0c4, 0x0f8] {
        assert_eq!(read_register(&transport, offset), 0, "{offset:#x}");
    }
    for offset in [WINDOW_BYTES, WINDOW_BYTES + 4, 0x1000, u64::MAX - 3, u64::MAX] {
        assert_eq!(transport.read(offset, 4), 0);
        assert_eq!(transport.read(offset, 1), 0);
        transport.write(offset, 1, 0xff, &mut ram);
    }
    assert_eq!(transport.device().config, [0; 8]);
}

#[test]
fn config_space_takes_naturally_aligned_byte_word_and_dword_accesses() {
    let (mut transport, mut ram) = probe();
    transport.device_mut().config = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    assert_eq!(transport.read(CONFIG_OFFSET, 4), 0x4433_2211);
    assert_eq!(transport.read(CONFIG_OFFSET + 4, 4), 0x8877_6655);
    assert_eq!(transport.read(CONFIG_OFFSET + 2, 2), 0x4433);
    assert_eq!(transport.read(CONFIG_OFFSET + 7, 1), 0x88);
    // Past the device's configuration: 0.
    assert_eq!(transport.read(CONFIG_OFFSET + 8, 4), 0);
    assert_eq!(transport.read(WINDOW_BYTES - 4, 4), 0);
    // Misaligned or odd sizes: 0.
    assert_eq!(transport.read(CONFIG_OFFSET + 1, 2), 0);
    assert_eq!(transport.read(CONFIG_OFFSET + 2, 4), 0);
    assert_eq!(transport.read(CONFIG_OFFSET, 8), 0);
    assert_eq!(transport.read(CONFIG_OFFSET, 3), 0);

    transport.write(CONFIG_OFFSET + 1, 1, 0xaabb, &mut ram);
    transport.write(CONFIG_OFFSET + 4, 2, 0xccdd_eeff, &mut ram);
    assert_eq!(transport.device().config, [0x11, 0xbb, 0x33, 0x44, 0xff, 0xee, 0x77, 0x88]);
    transport.write(CONFIG_OFFSET + 1, 2, 0, &mut ram);
    transport.write(CONFIG_OFFSET + 2, 4, 0, &mut ram);
    transport.write(CONFIG_OFFSET, 8, 0, &mut ram);
    // The last dword of the window is fine, straddling its end is not an
    // access there is.
    transport.write(WINDOW_BYTES - 4, 4, 0, &mut ram);
    assert_eq!(transport.device().config, [0x11, 0xbb, 0x33, 0x44, 0xff, 0xee, 0x77, 0x88]);
    assert!(ram.writes.is_empty());
}

#[test]
fn queue_registers_of_a_missing_queue_read_0_and_ignore_writes() {
    let (mut transport, mut ram) = probe();
    linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1);
    for select in [2, 7, 8, u32::MAX] {
        write_register(&mut transport, &mut ram, register::QUEUE_SELECT, select);
        assert_eq!(read_register(&transport, register::QUEUE_SIZE_MAX), 0);
        write_register(&mut transport, &mut ram, register::QUEUE_SIZE, 4);
        write_register(&mut transport, &mut ram, register::QUEUE_DESCRIPTOR_LOW, 0x1000);
        write_register(&mut transport, &mut ram, register::QUEUE_READY, 1);
        assert_eq!(read_register(&transport, register::QUEUE_READY), 0);
    }
    assert_eq!(transport.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert!(transport.queue(2).is_none());
    assert_eq!(transport.queue(0).map(SplitQueue::descriptor_table), Some(0));
}

#[test]
fn queue_addresses_are_assembled_from_halves_and_frozen_while_ready() {
    let (mut transport, mut ram) = probe();
    write_register(&mut transport, &mut ram, register::QUEUE_SELECT, 1);
    write_register(&mut transport, &mut ram, register::QUEUE_DESCRIPTOR_HIGH, 0x1);
    write_register(&mut transport, &mut ram, register::QUEUE_DESCRIPTOR_LOW, 0x2000);
    write_register(&mut transport, &mut ram, register::QUEUE_DRIVER_LOW, 0x3000);
    write_register(&mut transport, &mut ram, register::QUEUE_DRIVER_HIGH, 0xffff_ffff);
    write_register(&mut transport, &mut ram, register::QUEUE_DEVICE_LOW, 0x4000);
    let queue = transport.queue(1).expect("queue 1");
    assert_eq!(queue.descriptor_table(), 0x1_0000_2000);
    assert_eq!(queue.available_ring(), 0xffff_ffff_0000_3000);
    assert_eq!(queue.used_ring(), 0x4000);
    assert_eq!(transport.queue(0).map(SplitQueue::descriptor_table), Some(0), "only the selected queue");

    let (mut transport, mut ram, _driver) = running_probe();
    write_register(&mut transport, &mut ram, register::QUEUE_SIZE, 2);
    write_register(&mut transport, &mut ram, register::QUEUE_DESCRIPTOR_LOW, 0);
    write_register(&mut transport, &mut ram, register::QUEUE_DEVICE_HIGH, 1);
    let queue = transport.queue(0).expect("queue 0");
    assert_eq!((queue.size(), queue.descriptor_table(), queue.used_ring()), (4, DESCRIPTOR_TABLE, USED_RING));
}

#[test]
fn a_bad_queue_size_refuses_queue_ready_and_needs_reset() {
    for size in [0, 3, 8, 1 << 16] {
        let (mut transport, mut ram) = probe();
        linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1);
        write_register(&mut transport, &mut ram, register::STATUS, 0x0f);
        write_register(&mut transport, &mut ram, register::QUEUE_SIZE, size);
        write_register(&mut transport, &mut ram, register::QUEUE_DESCRIPTOR_LOW, 0x1000);
        write_register(&mut transport, &mut ram, register::QUEUE_DRIVER_LOW, 0x3000);
        write_register(&mut transport, &mut ram, register::QUEUE_DEVICE_LOW, 0x4000);
        write_register(&mut transport, &mut ram, register::QUEUE_READY, 1);
        assert_eq!(read_register(&transport, register::QUEUE_READY), 0, "size {size}");
        assert_eq!(read_register(&transport, register::STATUS), 0x0f | STATUS_DEVICE_NEEDS_RESET);
        assert_eq!(
            transport.needs_reset_cause(),
            Some(NeedsResetCause::QueueSetup { queue: 0, error: QueueSetupError::InvalidSize(size) })
        );
        assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE, "DRIVER_OK was set");
    }
}

#[test]
fn a_queue_outside_ram_or_misaligned_refuses_queue_ready() {
    let (mut transport, mut ram) = probe();
    linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1);
    write_register(&mut transport, &mut ram, register::QUEUE_DESCRIPTOR_LOW, 0x1000);
    write_register(&mut transport, &mut ram, register::QUEUE_DRIVER_LOW, 0x3000);
    write_register(&mut transport, &mut ram, register::QUEUE_DEVICE_HIGH, 0x10);
    write_register(&mut transport, &mut ram, register::QUEUE_READY, 1);
    assert_eq!(read_register(&transport, register::QUEUE_READY), 0);
    assert_eq!(
        transport.needs_reset_cause(),
        Some(NeedsResetCause::QueueSetup { queue: 0, error: QueueSetupError::UsedRingOutOfRange(0x10_0000_0000) })
    );
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), 0, "no notification before DRIVER_OK");
    // A reset and a good setup work.
    linux_bring_up(&mut transport, &mut ram, FEATURE_VERSION_1, 4);
    assert_eq!(transport.needs_reset_cause(), None);
}

#[test]
fn notifies_are_ignored_unless_the_queue_is_live() {
    let (mut transport, mut ram) = probe();
    let mut driver = TestDriver::new(4);
    driver.add(&mut ram, &[writable(BUFFERS, 4)]);
    // Before DRIVER_OK, with the queue set up.
    let status = linux_negotiate(&mut transport, &mut ram, FEATURE_VERSION_1);
    linux_setup_queue(&mut transport, &mut ram, 0, 4);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert!(transport.device().processed.is_empty());
    write_register(&mut transport, &mut ram, register::STATUS, status | STATUS_DRIVER_OK);
    // Missing queues, queue 1 not ready, indices past 16 bits.
    for value in [1, 2, 8, 0x1_0000, u32::MAX] {
        write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, value);
    }
    assert!(transport.device().processed.is_empty());
    assert!(ram.writes.is_empty());
    // Queue 0 disabled again.
    write_register(&mut transport, &mut ram, register::QUEUE_READY, 0);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert!(transport.device().processed.is_empty());
    write_register(&mut transport, &mut ram, register::QUEUE_READY, 1);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(transport.device().processed, vec![0]);
    assert_eq!(driver.take_used(&ram).len(), 1);
    // After FAILED.
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_FAILED);
    driver.add(&mut ram, &[writable(BUFFERS, 4)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(transport.device().processed, vec![0]);
}

#[test]
fn a_used_buffer_raises_the_line_until_acknowledged() {
    let (mut transport, mut ram, mut driver) = running_probe();
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert!(!transport.interrupt_line(), "an empty queue uses nothing");
    driver.add(&mut ram, &[writable(BUFFERS, 4)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert!(transport.interrupt_line());
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), INTERRUPT_USED_BUFFER);
    write_register(&mut transport, &mut ram, register::INTERRUPT_ACK, INTERRUPT_CONFIG_CHANGE);
    assert!(transport.interrupt_line(), "acknowledging another bit leaves it");
    transport.notify_config_change();
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), 3);
    write_register(&mut transport, &mut ram, register::INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
    write_register(&mut transport, &mut ram, register::INTERRUPT_ACK, u32::MAX);
    assert!(!transport.interrupt_line());
}

#[test]
fn a_config_change_moves_the_generation_and_interrupts_only_after_driver_ok() {
    let (mut transport, mut ram) = probe();
    transport.notify_config_change();
    assert_eq!(read_register(&transport, register::CONFIG_GENERATION), 1);
    assert!(!transport.interrupt_line());
    linux_bring_up(&mut transport, &mut ram, FEATURE_VERSION_1, 4);
    assert_eq!(read_register(&transport, register::CONFIG_GENERATION), 1, "a reset keeps counting");
    transport.notify_config_change();
    assert_eq!(read_register(&transport, register::CONFIG_GENERATION), 2);
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
}

#[test]
fn an_available_index_jump_needs_reset_and_stops_every_queue_until_reset() {
    let (mut transport, mut ram, mut driver) = running_probe();
    ram.put_u16(AVAILABLE_RING + 2, 5);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(read_register(&transport, register::STATUS), 0x0f | STATUS_DEVICE_NEEDS_RESET);
    assert_eq!(
        transport.needs_reset_cause(),
        Some(NeedsResetCause::Queue {
            queue: 0,
            error: QueueError::AvailableIndexJump { next_available: 0, published: 5 }
        })
    );
    assert_eq!(read_register(&transport, register::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
    assert!(ram.writes.is_empty());
    // Good requests are not served now, and other writes change nothing
    // that matters.
    ram.put_u16(AVAILABLE_RING + 2, 0);
    driver.add(&mut ram, &[writable(BUFFERS, 4)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    write_register(&mut transport, &mut ram, register::STATUS, STATUS_DRIVER_OK);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(transport.device().processed, vec![0]);
    assert!(ram.writes.is_empty());
    assert_ne!(read_register(&transport, register::STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
    // The driver resets and sets up again: served.
    ram.put(AVAILABLE_RING, &[0; 16]);
    linux_bring_up(&mut transport, &mut ram, FEATURE_VERSION_1, 4);
    let mut driver = TestDriver::new(4);
    let head = driver.add(&mut ram, &[readable(BUFFERS, 16), writable(BUFFERS + 16, 1)]);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(driver.take_used(&ram), vec![(u32::from(head), 1)]);
    assert_eq!(read_register(&transport, register::STATUS), 0x0f);
}

#[test]
fn refused_chains_still_raise_the_used_buffer_interrupt() {
    let (mut transport, mut ram, mut driver) = running_probe();
    TestDriver::put_descriptor(&mut ram, 0, BUFFERS, 1, crate::virtio::queue::DESCRIPTOR_NEXT, 0);
    driver.publish(&mut ram, 0);
    write_register(&mut transport, &mut ram, register::QUEUE_NOTIFY, 0);
    assert_eq!(driver.take_used(&ram), vec![(0, 0)]);
    assert!(transport.interrupt_line());
    assert_eq!(transport.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}
