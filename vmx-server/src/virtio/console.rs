//! The virtio console device (virtio 1.2, "Console Device"; device ID 3)
//! with one port: the guest's `hvc0`, a byte stream to and from the host
//! console, as the 16550A's is.
//!
//! # Features and configuration
//!
//! Offered: VIRTIO_F_VERSION_1 only. Not VIRTIO_CONSOLE_F_SIZE (no `cols`
//! and `rows`: the host console has no size to report), not
//! VIRTIO_CONSOLE_F_MULTIPORT (one port, so no control queues and no
//! `max_nr_ports`), not VIRTIO_CONSOLE_F_EMERG_WRITE. The configuration
//! space therefore has no valid field and reads 0; writes are ignored.
//!
//! # Queues
//!
//! Queue 0 is receiveq0 (port 0's input), queue 1 transmitq0 (its output),
//! each of at most [`QUEUE_SIZE_MAX`] entries.
//!
//! # Transmit
//!
//! A transmit chain's readable bytes go, in order, to the output queue
//! ([`OUTPUT_QUEUE_CAPACITY`] bytes) that the host console drains with
//! [`Console::drain_output`]; the chain is returned at once with used
//! length 0. As with the UART, transmission never waits for the host: when
//! the queue is full, the newest bytes are dropped and counted
//! (`dropped_output_bytes`), so a stalled console never stalls the guest
//! and what is queued stays in order. A chain with device-writable
//! descriptors is not output (`transmit_malformed`); nor is one of more
//! than [`TRANSMIT_CHAIN_BYTES_MAX`] bytes (`transmit_too_long`; Linux
//! sends at most 32 KiB at a time, and the bound keeps a notify's work
//! small whatever the descriptors claim). A buffer outside guest RAM stops
//! the chain (`transmit_faults`): the chain is read in chunks of 256 bytes,
//! and the chunks before the one that failed were output.
//!
//! # Receive
//!
//! The host pushes input with [`MmioTransport::push_input`] (or
//! [`Console::push_input`] and then serves queue 0): up to
//! [`INPUT_QUEUE_CAPACITY`] bytes wait in the device, and the host keeps
//! what does not fit for later, so host input is never lost. Waiting
//! bytes fill the guest's posted receive buffers in order, as many as each
//! chain holds, when queue 0 is served: on the guest's notify (it posted
//! buffers) and on the host's push. A chain is taken only while bytes
//! wait. A chain with device-readable descriptors or no writable byte is
//! returned with length 0 and nothing written (`receive_bad_buffers`); a
//! buffer outside guest RAM returns the chain with length 0
//! (`receive_faults`). In both cases the bytes stay for the next chain.
//!
//! A device reset keeps both queues: they are the wire, not the driver's
//! state.

use super::mmio::MmioTransport;
use super::queue::{CursorError, DescriptorChain, QueueError, SplitQueue};
use super::{FEATURE_VERSION_1, GuestRam, VirtioDevice, read_config_bytes};
use crate::byte_queue::ByteQueue;

/// The virtio device ID of a console.
pub const DEVICE_ID: u32 = 3;
/// Every feature the console offers.
pub const FEATURES: u64 = FEATURE_VERSION_1;
/// receiveq0's index.
pub const RECEIVE_QUEUE: u16 = 0;
/// transmitq0's index.
pub const TRANSMIT_QUEUE: u16 = 1;
/// The largest queue the device accepts (either queue).
pub const QUEUE_SIZE_MAX: u16 = 128;
/// Transmitted bytes the host console has not drained yet, at most.
pub const OUTPUT_QUEUE_CAPACITY: usize = 4096;
/// Host input waiting for the guest's buffers, at most.
pub const INPUT_QUEUE_CAPACITY: usize = 256;
/// The longest transmit chain that is output.
pub const TRANSMIT_CHAIN_BYTES_MAX: u64 = 64 * 1024;

/// How many bytes move between guest RAM and a queue at a time.
const CHUNK_BYTES: usize = 256;

/// What happened to the bytes (for the PD's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleCounters {
    /// Bytes read from transmit chains (queued or dropped).
    pub transmitted_bytes: u64,
    /// Of those, bytes dropped because the output queue was full.
    pub dropped_output_bytes: u64,
    /// Transmit chains with device-writable descriptors.
    pub transmit_malformed: u64,
    /// Transmit chains longer than [`TRANSMIT_CHAIN_BYTES_MAX`].
    pub transmit_too_long: u64,
    /// Transmit chains with a buffer outside guest RAM.
    pub transmit_faults: u64,
    /// Bytes written into receive buffers.
    pub received_bytes: u64,
    /// Receive chains with device-readable descriptors or no writable byte.
    pub receive_bad_buffers: u64,
    /// Receive chains with a buffer outside guest RAM.
    pub receive_faults: u64,
}

/// The virtio console.
#[derive(Clone, Debug)]
pub struct Console {
    input: ByteQueue<INPUT_QUEUE_CAPACITY>,
    output: ByteQueue<OUTPUT_QUEUE_CAPACITY>,
    /// The chain being served (reused: 4 KiB).
    chain: DescriptorChain,
    counters: ConsoleCounters,
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Console {
    /// A console with nothing queued.
    #[must_use]
    pub fn new() -> Self {
        Console {
            input: ByteQueue::new(),
            output: ByteQueue::new(),
            chain: DescriptorChain::default(),
            counters: ConsoleCounters::default(),
        }
    }

    /// What happened to the bytes so far.
    #[must_use]
    pub fn counters(&self) -> ConsoleCounters {
        self.counters
    }

    /// Queues host input for the guest: how many of `bytes` fit (the host
    /// keeps the rest for later). Serve queue 0 afterwards (or use
    /// [`MmioTransport::push_input`]).
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        bytes.iter().take_while(|&&byte| self.input.push(byte)).count()
    }

    /// How many input bytes wait for the guest's buffers.
    #[must_use]
    pub fn pending_input_len(&self) -> usize {
        self.input.len()
    }

    /// Moves the oldest transmitted bytes, as many as fit, into `out`, and
    /// gives how many.
    pub fn drain_output(&mut self, out: &mut [u8]) -> usize {
        let taken = self.output.peek_into(out);
        self.output.discard(taken);
        taken
    }

    /// How many transmitted bytes wait for [`Console::drain_output`].
    #[must_use]
    pub fn pending_output_len(&self) -> usize {
        self.output.len()
    }

    /// Outputs the transmit chain in `self.chain`.
    fn transmit_chain(&mut self, ram: &dyn GuestRam) {
        let Console { output, chain, counters, .. } = self;
        if chain.writable_bytes() != 0 {
            counters.transmit_malformed += 1;
            return;
        }
        if chain.readable_bytes() > TRANSMIT_CHAIN_BYTES_MAX {
            counters.transmit_too_long += 1;
            return;
        }
        let mut reader = chain.readable();
        let mut chunk = [0_u8; CHUNK_BYTES];
        while reader.remaining() > 0 {
            let take = usize::try_from(reader.remaining()).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
            if reader.read(ram, &mut chunk[..take]).is_err() {
                counters.transmit_faults += 1;
                return;
            }
            counters.transmitted_bytes += take as u64;
            for &byte in &chunk[..take] {
                if !output.push(byte) {
                    counters.dropped_output_bytes += 1;
                }
            }
        }
    }

    /// Fills the receive chain in `self.chain` with waiting input: the used
    /// length.
    fn fill(&mut self, ram: &mut dyn GuestRam) -> u32 {
        let Console { input, chain, counters, .. } = self;
        if chain.readable_bytes() != 0 || chain.writable_bytes() == 0 {
            counters.receive_bad_buffers += 1;
            return 0;
        }
        let mut chunk = [0_u8; CHUNK_BYTES];
        let room = usize::try_from(chain.writable_bytes()).map_or(CHUNK_BYTES, |room| room.min(CHUNK_BYTES));
        // The input queue holds at most CHUNK_BYTES bytes: one chunk.
        let count = input.peek_into(&mut chunk[..room]);
        match chain.writable().write(ram, &chunk[..count]) {
            Ok(()) => {
                input.discard(count);
                counters.received_bytes += count as u64;
                // At most CHUNK_BYTES.
                u32::try_from(count).unwrap_or(0)
            }
            Err(CursorError::OutOfRange | CursorError::PastTheEnd) => {
                counters.receive_faults += 1;
                0
            }
        }
    }
}

const _: () = assert!(INPUT_QUEUE_CAPACITY <= CHUNK_BYTES, "one chunk takes all waiting input");

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn device_features(&self) -> u64 {
        FEATURES
    }

    fn accept_features(&mut self, _features: u64) {
        // VERSION_1 is the only one, and the transport requires it.
    }

    fn read_config(&self, offset: u32, bytes: &mut [u8]) {
        // No field is valid without SIZE, MULTIPORT or EMERG_WRITE.
        read_config_bytes(&[], offset, bytes);
    }

    fn write_config(&mut self, _offset: u32, _bytes: &[u8]) {
        // emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE, not offered.
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
            RECEIVE_QUEUE => {
                while !self.input.is_empty() {
                    let Some(head) = queue.pop(ram, &mut self.chain)? else { break };
                    let written = self.fill(ram);
                    queue.push_used(ram, head, written)?;
                }
            }
            TRANSMIT_QUEUE => {
                while let Some(head) = queue.pop(ram, &mut self.chain)? {
                    self.transmit_chain(ram);
                    queue.push_used(ram, head, 0)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn reset(&mut self) {
        // The queues are the wire: they outlive the driver.
    }
}

impl MmioTransport<Console> {
    /// Host input for the guest: queues what fits (how many of `bytes`;
    /// the host keeps the rest) and fills the guest's posted receive
    /// buffers with what waits, raising the used-buffer interrupt if any
    /// was filled.
    pub fn push_input(&mut self, bytes: &[u8], ram: &mut dyn GuestRam) -> usize {
        let accepted = self.device_mut().push_input(bytes);
        self.serve_queue(RECEIVE_QUEUE, ram);
        accepted
    }
}

#[cfg(test)]
mod tests;
