//! The virtio network device (virtio 1.2, "Network Device"; device ID 1)
//! over a [`NetPort`]: the guest's Ethernet interface, whose other end is a
//! port that the vswitch will take over (until then a [`crate::link`] to a
//! second guest, or a loopback).
//!
//! # Features and configuration
//!
//! Offered: VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC (the `mac` field holds the
//! address the VMX was given), VIRTIO_NET_F_STATUS (`status` has
//! VIRTIO_NET_S_LINK_UP while the host side says the link is up) and
//! VIRTIO_NET_F_MTU (`mtu` = 1500, so that the driver never sends a frame
//! longer than [`FRAME_BYTES_MAX`]; without it Linux lets a user raise the
//! MTU to 64 KiB, and every such frame would be dropped). The
//! configuration space is `mac` (6 bytes at 0), `status` (le16 at 6),
//! `max_virtqueue_pairs` (le16 at 8: 1, although it is meaningful only
//! with VIRTIO_NET_F_MQ, which is not offered) and `mtu` (le16 at 10); the
//! rest reads 0, and all of it is read-only (the spec lets a modern driver
//! change the MAC only through the control queue, which is not offered).
//!
//! No offloads: no checksum (CSUM, GUEST_CSUM), no segmentation (the TSO,
//! UFO and USO bits), no mergeable receive buffers (MRG_RXBUF), no control
//! queue, no multiqueue. Every frame is a whole Ethernet frame without its
//! FCS, of [`FRAME_BYTES_MIN`] to [`FRAME_BYTES_MAX`] bytes (an 802.1Q tag
//! and a 1500-byte payload fit).
//!
//! # Queues
//!
//! Queue 0 is receiveq1, queue 1 transmitq1, each of at most
//! [`QUEUE_SIZE_MAX`] entries. Every buffer starts with the 12-byte
//! `virtio_net_hdr` of VERSION_1: flags (u8), gso_type (u8), hdr_len,
//! gso_size, csum_start, csum_offset, num_buffers (le16 each). As
//! everywhere in virtio 1.x, the device finds the header and the frame by
//! byte position in the chain, however the driver splits them into
//! descriptors.
//!
//! # Transmit
//!
//! A chain on the transmit queue is header and frame, all device-readable.
//! It is returned with used length 0 (the device writes nothing), after
//! the frame went to [`NetPort::transmit`], or was dropped and counted
//! ([`NetCounters`]) because:
//!
//! - the chain has device-writable descriptors or fewer readable bytes than
//!   the header (`transmit_malformed`);
//! - the frame is shorter than [`FRAME_BYTES_MIN`] or longer than
//!   [`FRAME_BYTES_MAX`] (`transmit_bad_length`; nothing is read);
//! - the header's flags or gso_type is not 0 (`transmit_bad_header`):
//!   without VIRTIO_NET_F_CSUM the driver may not ask for a checksum, and
//!   without a segmentation feature the only gso_type is NONE, so the
//!   device cannot honour either and sends nothing rather than a frame the
//!   driver meant to be changed. hdr_len, gso_size, csum_start,
//!   csum_offset and num_buffers mean nothing without offloads and are
//!   ignored;
//! - a buffer lies outside guest RAM (`transmit_faults`);
//! - the port refused it, its queue being full (`transmit_port_dropped`).
//!
//! # Receive
//!
//! Without MRG_RXBUF each receive chain takes one whole frame with its
//! header, so the device writes the header (flags 0, gso_type NONE, the
//! other fields 0, num_buffers 1 as the spec requires without MRG_RXBUF)
//! and then the frame, and returns the chain with their length. Frames
//! come from [`NetPort::receive`] when the queue is served: on the guest's
//! notify of the receive queue (it posted buffers) and when the VMX calls
//! [`MmioTransport::deliver`] (frames are pending on the port).
//!
//! - No buffer posted: the frame waits, one in the device and the rest in
//!   the port, whose queue is bounded (a link refuses its sender's frames
//!   when full, and the sender counts them). The driver's next notify
//!   delivers them. So a guest that is slow to refill its ring loses no
//!   frame to a burst its port can hold.
//! - No live receive queue (no DRIVER_OK, DEVICE_NEEDS_RESET, the queue not
//!   ready; and at a device reset): [`MmioTransport::deliver`] drops what
//!   waits (`receive_not_ready`), at most [`QUEUE_SIZE_MAX`] frames a call,
//!   as a NIC whose driver is not running does; the guest does not get
//!   stale frames when its driver starts, and its peer's frames keep
//!   flowing.
//! - A chain whose writable bytes cannot hold the header and the frame:
//!   the frame is dropped (`receive_buffer_too_small`) and the chain
//!   returned with length 0 (keeping the frame would let one frame burn
//!   every small buffer in turn).
//! - A chain with device-readable descriptors (receive buffers are
//!   device-writable): returned with length 0, nothing written, the frame
//!   kept for the next chain (`receive_bad_buffers`).
//! - A buffer outside guest RAM: the frame is dropped (`receive_faults`)
//!   and the chain returned with length 0 (what was written before is not
//!   counted as written).
//! - A frame from the port shorter than [`FRAME_BYTES_MIN`] or longer than
//!   its buffer: dropped (`receive_bad_length`).
//!
//! One serving of the receive queue takes at most twice [`QUEUE_SIZE_MAX`]
//! frames from the port and, as every queue, at most the queue size of
//! chains.
//!
//! # Link status
//!
//! [`MmioTransport::set_link_up`] changes `status` and raises the
//! configuration-change interrupt. The status is what the guest is told;
//! the device moves frames whatever it says (the port decides whether they
//! go anywhere).

extern crate alloc;

use super::mmio::MmioTransport;
use super::queue::{DescriptorChain, QueueError, SplitQueue};
use super::{FEATURE_VERSION_1, GuestRam, VirtioDevice, read_config_bytes};

/// The virtio device ID of a network device.
pub const DEVICE_ID: u32 = 1;
/// VIRTIO_NET_F_MTU: `mtu` is valid (the driver sends no longer frames).
pub const FEATURE_MTU: u64 = 1 << 3;
/// VIRTIO_NET_F_MAC: `mac` is valid.
pub const FEATURE_MAC: u64 = 1 << 5;
/// VIRTIO_NET_F_STATUS: `status` is valid.
pub const FEATURE_STATUS: u64 = 1 << 16;
/// Every feature the network device offers.
pub const FEATURES: u64 = FEATURE_VERSION_1 | FEATURE_MTU | FEATURE_MAC | FEATURE_STATUS;

/// receiveq1's index.
pub const RECEIVE_QUEUE: u16 = 0;
/// transmitq1's index.
pub const TRANSMIT_QUEUE: u16 = 1;
/// The largest queue the device accepts (either queue).
pub const QUEUE_SIZE_MAX: u16 = 256;

/// The `virtio_net_hdr` of VERSION_1, num_buffers included.
pub const HEADER_BYTES: usize = 12;
/// The MTU the device tells the driver (`mtu`).
pub const MTU_BYTES: u16 = 1500;
/// The shortest frame: destination, source, EtherType.
pub const FRAME_BYTES_MIN: usize = 14;
/// The longest frame: an Ethernet header with an 802.1Q tag (18 bytes) and
/// an MTU of payload; no FCS.
pub const FRAME_BYTES_MAX: usize = 18 + MTU_BYTES as usize;
/// `status` bit VIRTIO_NET_S_LINK_UP.
pub const STATUS_LINK_UP: u16 = 1;

/// Where num_buffers is in the header.
const HEADER_NUM_BUFFERS: usize = 10;
/// The configuration structure up to mtu.
const CONFIG_BYTES: usize = 12;
/// Where status, max_virtqueue_pairs and mtu are in the configuration.
const CONFIG_STATUS: usize = 6;
const CONFIG_QUEUE_PAIRS: usize = 8;
const CONFIG_MTU: usize = 10;

/// A frame the port could not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmitError {
    /// The port's queue is full.
    Full,
    /// The port cannot send at all (its peer broke the link's rules).
    Unavailable,
}

/// The host side of a network device: where transmitted frames go and
/// received frames come from. A [`crate::link::LinkPort`] between two
/// guests or to the vswitch, or a loopback.
pub trait NetPort {
    /// Sends one frame ([`FRAME_BYTES_MIN`] to [`FRAME_BYTES_MAX`] bytes).
    ///
    /// # Errors
    ///
    /// [`TransmitError`]: the frame is dropped (the device counts it).
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TransmitError>;

    /// Takes the next received frame into `frame`: its length, or `None`
    /// when none waits. The device checks the length again.
    fn receive(&mut self, frame: &mut [u8; FRAME_BYTES_MAX]) -> Option<usize>;
}

/// A port on the heap is a port: a device can hold a large one (a
/// loopback's ring) without carrying it inline.
impl<P: NetPort + ?Sized> NetPort for alloc::boxed::Box<P> {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TransmitError> {
        (**self).transmit(frame)
    }

    fn receive(&mut self, frame: &mut [u8; FRAME_BYTES_MAX]) -> Option<usize> {
        (**self).receive(frame)
    }
}

/// What happened to the frames (for the PD's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames handed to the port.
    pub transmitted_frames: u64,
    /// Their bytes (without headers).
    pub transmitted_bytes: u64,
    /// Transmit chains with device-writable descriptors or no whole header.
    pub transmit_malformed: u64,
    /// Transmitted frames shorter or longer than a frame may be.
    pub transmit_bad_length: u64,
    /// Transmit headers asking for an offload (flags or gso_type not 0).
    pub transmit_bad_header: u64,
    /// Transmit buffers outside guest RAM.
    pub transmit_faults: u64,
    /// Frames the port refused.
    pub transmit_port_dropped: u64,
    /// Frames written into receive buffers.
    pub received_frames: u64,
    /// Their bytes (without headers).
    pub received_bytes: u64,
    /// Frames dropped because the buffer could not hold them.
    pub receive_buffer_too_small: u64,
    /// Receive chains with device-readable descriptors (returned empty).
    pub receive_bad_buffers: u64,
    /// Frames dropped because a receive buffer was outside guest RAM.
    pub receive_faults: u64,
    /// Frames from the port shorter or longer than a frame may be.
    pub receive_bad_length: u64,
    /// Frames dropped because the driver had no live receive queue.
    pub receive_not_ready: u64,
}

/// The virtio network device.
#[derive(Clone, Debug)]
pub struct Net<P> {
    port: P,
    mac: [u8; 6],
    link_up: bool,
    /// The chain being served (reused: 4 KiB).
    chain: DescriptorChain,
    /// A transmitted frame on its way from guest RAM to the port.
    transmit_frame: [u8; FRAME_BYTES_MAX],
    /// A received frame waiting for a buffer: `receive_frame[..staged]`
    /// (0: none).
    receive_frame: [u8; FRAME_BYTES_MAX],
    staged: usize,
    counters: NetCounters,
}

/// What became of one receive chain.
enum Fill {
    /// The frame is in the chain: the used length.
    Delivered(u32),
    /// The chain is returned empty and the frame dropped.
    FrameDropped,
    /// The chain is returned empty and the frame kept.
    FrameKept,
}

impl<P: NetPort> Net<P> {
    /// A network device with address `mac` over `port`, its link up.
    pub fn new(port: P, mac: [u8; 6]) -> Self {
        Net {
            port,
            mac,
            link_up: true,
            chain: DescriptorChain::default(),
            transmit_frame: [0; FRAME_BYTES_MAX],
            receive_frame: [0; FRAME_BYTES_MAX],
            staged: 0,
            counters: NetCounters::default(),
        }
    }

    /// The port.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// The port, to change its state.
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    /// What happened to the frames so far.
    pub fn counters(&self) -> NetCounters {
        self.counters
    }

    /// The MAC address in the configuration.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether `status` says the link is up.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Whether a received frame waits in the device for a buffer.
    pub fn has_staged_frame(&self) -> bool {
        self.staged != 0
    }

    /// Sets the link status; `true` if it changed (the transport must then
    /// raise the configuration-change interrupt: use
    /// [`MmioTransport::set_link_up`]).
    fn set_link(&mut self, up: bool) -> bool {
        let changed = self.link_up != up;
        self.link_up = up;
        changed
    }

    /// Drops the waiting frames (the one in the device and at most
    /// [`QUEUE_SIZE_MAX`] from the port): no live receive queue.
    fn discard_received(&mut self) {
        if self.staged != 0 {
            self.staged = 0;
            self.counters.receive_not_ready += 1;
        }
        for _ in 0..QUEUE_SIZE_MAX {
            if self.port.receive(&mut self.receive_frame).is_none() {
                break;
            }
            self.counters.receive_not_ready += 1;
        }
    }

    /// The configuration structure's first [`CONFIG_BYTES`] bytes.
    fn config(&self) -> [u8; CONFIG_BYTES] {
        let mut config = [0_u8; CONFIG_BYTES];
        config[..6].copy_from_slice(&self.mac);
        let status = if self.link_up { STATUS_LINK_UP } else { 0 };
        config[CONFIG_STATUS..CONFIG_STATUS + 2].copy_from_slice(&status.to_le_bytes());
        config[CONFIG_QUEUE_PAIRS..CONFIG_QUEUE_PAIRS + 2].copy_from_slice(&1_u16.to_le_bytes());
        config[CONFIG_MTU..CONFIG_MTU + 2].copy_from_slice(&MTU_BYTES.to_le_bytes());
        config
    }

    /// Sends the frame of the transmit chain in `self.chain`, or counts why
    /// not.
    fn transmit_chain(&mut self, ram: &dyn GuestRam) {
        let Net { port, chain, transmit_frame, counters, .. } = self;
        let readable = chain.readable_bytes();
        if chain.writable_bytes() != 0 || readable < HEADER_BYTES as u64 {
            counters.transmit_malformed += 1;
            return;
        }
        let frame_length = readable - HEADER_BYTES as u64;
        let Some(frame_length) = usize::try_from(frame_length).ok().filter(|length| is_frame_length(*length)) else {
            counters.transmit_bad_length += 1;
            return;
        };
        let mut reader = chain.readable();
        let mut header = [0_u8; HEADER_BYTES];
        let frame = &mut transmit_frame[..frame_length];
        if reader.read(ram, &mut header).is_err() || reader.read(ram, frame).is_err() {
            counters.transmit_faults += 1;
            return;
        }
        // flags and gso_type: no offload was negotiated.
        if header[0] != 0 || header[1] != 0 {
            counters.transmit_bad_header += 1;
            return;
        }
        match port.transmit(frame) {
            Ok(()) => {
                counters.transmitted_frames += 1;
                counters.transmitted_bytes += frame_length as u64;
            }
            Err(TransmitError::Full | TransmitError::Unavailable) => counters.transmit_port_dropped += 1,
        }
    }

    /// Writes the staged frame into the receive chain in `self.chain`.
    fn fill(&mut self, ram: &mut dyn GuestRam) -> Fill {
        let Net { chain, receive_frame, staged, counters, .. } = self;
        if chain.readable_bytes() != 0 {
            counters.receive_bad_buffers += 1;
            return Fill::FrameKept;
        }
        let length = HEADER_BYTES + *staged;
        if chain.writable_bytes() < length as u64 {
            counters.receive_buffer_too_small += 1;
            return Fill::FrameDropped;
        }
        let mut header = [0_u8; HEADER_BYTES];
        header[HEADER_NUM_BUFFERS..].copy_from_slice(&1_u16.to_le_bytes());
        let mut writer = chain.writable();
        if writer.write(ram, &header).is_err() || writer.write(ram, &receive_frame[..*staged]).is_err() {
            counters.receive_faults += 1;
            return Fill::FrameDropped;
        }
        counters.received_frames += 1;
        counters.received_bytes += *staged as u64;
        // At most 12 + 1518 bytes.
        Fill::Delivered(u32::try_from(length).unwrap_or(0))
    }

    /// Delivers waiting frames into the receive queue's chains.
    fn receive(&mut self, queue: &mut SplitQueue, ram: &mut dyn GuestRam) -> Result<(), QueueError> {
        for _ in 0..2 * QUEUE_SIZE_MAX {
            if self.staged == 0 {
                match self.port.receive(&mut self.receive_frame) {
                    None => return Ok(()),
                    Some(length) if is_frame_length(length) => self.staged = length,
                    Some(_) => {
                        self.counters.receive_bad_length += 1;
                        continue;
                    }
                }
            }
            let Some(head) = queue.pop(ram, &mut self.chain)? else { return Ok(()) };
            let used = match self.fill(ram) {
                Fill::Delivered(length) => {
                    self.staged = 0;
                    length
                }
                Fill::FrameDropped => {
                    self.staged = 0;
                    0
                }
                Fill::FrameKept => 0,
            };
            queue.push_used(ram, head, used)?;
        }
        Ok(())
    }
}

/// Whether a frame may be `length` bytes long.
fn is_frame_length(length: usize) -> bool {
    (FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&length)
}

impl<P: NetPort> VirtioDevice for Net<P> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn device_features(&self) -> u64 {
        FEATURES
    }

    fn accept_features(&mut self, _features: u64) {
        // Nothing the device does depends on them: the header is 12 bytes
        // with VERSION_1 (which the transport requires), and the MAC,
        // status and MTU are there for the driver to use or not.
    }

    fn read_config(&self, offset: u32, bytes: &mut [u8]) {
        read_config_bytes(&self.config(), offset, bytes);
    }

    fn write_config(&mut self, _offset: u32, _bytes: &[u8]) {
        // Read-only: a modern driver changes the MAC through the control
        // queue, which is not offered.
    }

    fn queue_count(&self) -> u16 {
        2
    }

    fn queue_size_max(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }

    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut SplitQueue,
        ram: &mut dyn GuestRam,
    ) -> Result<(), QueueError> {
        match queue_index {
            RECEIVE_QUEUE => self.receive(queue, ram),
            TRANSMIT_QUEUE => {
                while let Some(head) = queue.pop(ram, &mut self.chain)? {
                    self.transmit_chain(ram);
                    queue.push_used(ram, head, 0)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn reset(&mut self) {
        if self.staged != 0 {
            self.staged = 0;
            self.counters.receive_not_ready += 1;
        }
    }
}

impl<P: NetPort> MmioTransport<Net<P>> {
    /// The VMX's call when frames are pending on the port: delivers them
    /// into the guest's receive buffers (raising the used-buffer interrupt
    /// if any was filled), or, when the driver has no live receive queue,
    /// drops them (counted as `receive_not_ready`). Frames for which no
    /// buffer is posted wait for the driver's next notify.
    pub fn deliver(&mut self, ram: &mut dyn GuestRam) {
        if !self.serve_queue(RECEIVE_QUEUE, ram) {
            self.device_mut().discard_received();
        }
    }

    /// Sets the link status the guest sees and, if it changed, raises the
    /// configuration-change interrupt.
    pub fn set_link_up(&mut self, up: bool) {
        if self.device_mut().set_link(up) {
            self.notify_config_change();
        }
    }
}

#[cfg(test)]
mod tests;
