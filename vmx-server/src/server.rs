//! One guest's devices behind the VMM-VMX protocol ([`crate::protocol`]):
//! COM1's 16550A and each disk as virtio-mmio over virtio-blk, each at
//! the place and on the ISA line this module decides, over the guest's
//! RAM as the serving PD maps it. The VMX PD runs it behind its endpoint;
//! a VMM without a VMX runs the same set in its own PD
//! (`docs/DEVICES.md`, "The VMM-VMX protocol").
//!
//! Every request is decoded as hostile input; an access no device covers
//! wholly is refused, never guessed at. After each access the reply
//! carries the level of every line the set drives, so the VMM's board
//! never holds a stale level.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::console::{ConsoleLines, LineSink};
use crate::protocol::{
    Access, AccessReply, Device, DeviceKind, Devices, Lines, Refusal, Request, Space, Width, describe_words,
};
use crate::uart::{COM1_BASE_PORT, COM1_IRQ, REGISTER_COUNT, Uart16550};
use crate::virtio::GuestRam;
use crate::virtio::blk::{Block, BlockBackend, BlockCounters};
use crate::virtio::mmio::{MmioTransport, WINDOW_BYTES};

#[cfg(test)]
mod tests;

/// Where virtio-mmio device n's window is: 4 KiB apart from here, in the
/// PC's MMIO hole below the I/O APIC.
pub const VIRTIO_BASE: u64 = 0xfeb0_0000;
/// The ISA line of virtio-mmio device n: none of the board's (0 the PIT,
/// 2 the cascade, 8 the RTC, 9 the SCI) nor COM1's (4).
pub const VIRTIO_LINES: [u8; 4] = [5, 6, 7, 10];
/// The most disks the set serves (one per line above).
pub const MAX_DISKS: usize = VIRTIO_LINES.len();

/// What the set has done, for the PD's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests served (descriptions, accesses, the stop).
    pub served: u64,
    /// Port accesses among them.
    pub port_accesses: u64,
    /// Memory accesses among them.
    pub mmio_accesses: u64,
    /// Requests refused (malformed, or for nothing the set serves).
    pub refused: u64,
}

/// What a served request answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// The description ([`GuestDevices::devices`]).
    Described,
    /// An access's reply.
    Access(AccessReply),
    /// The stop was taken: the console is flushed.
    Stopped,
}

/// One disk: its transport and device.
type VirtioDisk<B> = MmioTransport<Block<B>>;

/// One guest's devices.
pub struct GuestDevices<R, B: BlockBackend, S> {
    ram: R,
    uart: Uart16550,
    console: ConsoleLines,
    sink: S,
    /// On the heap: each holds its scratch buffers (8 KiB).
    disks: Vec<Box<VirtioDisk<B>>>,
    devices: Devices,
    counters: Counters,
}

impl<R: GuestRam, B: BlockBackend, S: LineSink> GuestDevices<R, B, S> {
    /// COM1, then each of `disks` (at most [`MAX_DISKS`]; the rest are not
    /// served) with its virtio-blk ID, over `ram`; console lines go to
    /// `sink`.
    pub fn new(ram: R, disks: impl IntoIterator<Item = (B, [u8; 20])>, sink: S) -> Self {
        let mut devices = Devices::new();
        let com1 = Device {
            kind: DeviceKind::Uart16550,
            base: u64::from(COM1_BASE_PORT),
            bytes: u64::from(REGISTER_COUNT),
            line: COM1_IRQ,
        };
        // Constant, valid and alone: cannot fail.
        let _ = devices.push(com1);
        let mut served = Vec::new();
        for ((backend, id), (index, line)) in disks.into_iter().zip((0_u64..).zip(VIRTIO_LINES)) {
            let window =
                Device { kind: DeviceKind::VirtioMmio, base: VIRTIO_BASE + index * 0x1000, bytes: WINDOW_BYTES, line };
            if devices.push(window).is_ok() {
                served.push(Box::new(MmioTransport::new(Block::new(backend, &id))));
            }
        }
        GuestDevices {
            ram,
            uart: Uart16550::new(),
            console: ConsoleLines::new(),
            sink,
            disks: served,
            devices,
            counters: Counters::default(),
        }
    }

    /// The devices, as a description lists them: COM1 first, then the
    /// disks in order.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// What the set has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// How disk `index`'s requests ended.
    pub fn disk_counters(&self, index: usize) -> Option<BlockCounters> {
        self.disks.get(index).map(|disk| disk.device().counters())
    }

    /// Console bytes COM1 dropped because its output queue was full.
    pub fn dropped_console_bytes(&self) -> u64 {
        self.uart.dropped_output_bytes()
    }

    /// The levels of every line the set drives.
    pub fn lines(&self) -> Lines {
        let mut lines = Lines::from(self.uart.interrupt_line()) << COM1_IRQ;
        for (disk, line) in self.disks.iter().zip(VIRTIO_LINES) {
            lines |= Lines::from(disk.interrupt_line()) << line;
        }
        lines
    }

    /// Serves one decoded request.
    ///
    /// # Errors
    ///
    /// [`Refusal::NotServed`] for an access no device covers wholly.
    pub fn serve(&mut self, request: &Request) -> Result<Served, Refusal> {
        let served = match request {
            Request::Describe => Ok(Served::Described),
            Request::Stopped => {
                self.drain_console();
                if !self.console.is_empty() {
                    self.console.flush(&mut self.sink);
                }
                Ok(Served::Stopped)
            }
            Request::Access(access) => self.access(access).map(Served::Access),
        };
        match served {
            Ok(_) => self.counters.served += 1,
            Err(_) => self.counters.refused += 1,
        }
        served
    }

    /// Serves the message `label` and `words` and writes the reply's words
    /// into `reply` (at least [`describe_words`]`(`[`crate::protocol::MAX_DEVICES`]`)`
    /// long); returns how many. The VMX's loop around its endpoint.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] for a malformed request or one for nothing served.
    pub fn handle_message(&mut self, label: u64, words: &[u64], reply: &mut [u64]) -> Result<usize, Refusal> {
        let request = Request::decode(label, words).inspect_err(|_| self.counters.refused += 1)?;
        Ok(match self.serve(&request)? {
            Served::Described => {
                let written = self.devices.encode(reply);
                debug_assert_eq!(written, describe_words(self.devices.len()).min(reply.len()));
                written
            }
            Served::Access(answer) => {
                let words = answer.encode();
                let written = words.len().min(reply.len());
                reply[..written].copy_from_slice(&words[..written]);
                written
            }
            Served::Stopped => 0,
        })
    }

    fn access(&mut self, access: &Access) -> Result<AccessReply, Refusal> {
        let (index, device) = self.devices.find(access).ok_or(Refusal::NotServed)?;
        let offset = access.address - device.base;
        let value = match (device.kind, access.space) {
            (DeviceKind::Uart16550, Space::Port) => {
                self.counters.port_accesses += 1;
                self.uart_access(offset, access)
            }
            (DeviceKind::VirtioMmio, Space::Memory) => {
                self.counters.mmio_accesses += 1;
                // Index 0 is COM1; disk n is device n + 1.
                let disk = self.disks.get_mut(index.wrapping_sub(1)).ok_or(Refusal::NotServed)?;
                virtio_access(disk, &mut self.ram, offset, access)
            }
            // `find` matched the spaces: no other pair is found.
            _ => return Err(Refusal::NotServed),
        };
        Ok(AccessReply { value: value & access.width.mask(), lines: self.lines() })
    }

    /// A byte-wide device: a wider access is bytes at consecutive ports,
    /// low byte first.
    fn uart_access(&mut self, offset: u64, access: &Access) -> u64 {
        let mut bytes = access.write.unwrap_or(0).to_le_bytes();
        for (register, byte) in (offset..).zip(bytes.iter_mut()).take(access.width.bytes_usize()) {
            // Inside the eight registers (the access is covered): fits.
            let register = u8::try_from(register).unwrap_or(u8::MAX);
            match access.write {
                Some(_) => self.uart.write(register, *byte),
                None => *byte = self.uart.read(register),
            }
        }
        self.drain_console();
        if access.write.is_some() { 0 } else { u64::from_le_bytes(bytes) }
    }

    fn drain_console(&mut self) {
        let mut bytes = [0; 64];
        loop {
            let count = self.uart.drain_output(&mut bytes);
            if count == 0 {
                break;
            }
            for byte in bytes.iter().take(count) {
                self.console.push(*byte, &mut self.sink);
            }
        }
    }
}

/// An access to a virtio-mmio window: the transport's registers are at
/// most four bytes wide, so an eight-byte access reads 0 and writes
/// nothing, as the transport treats any size it does not take.
fn virtio_access<B: BlockBackend>(
    disk: &mut VirtioDisk<B>,
    ram: &mut dyn GuestRam,
    offset: u64,
    access: &Access,
) -> u64 {
    if access.width == Width::Qword {
        return 0;
    }
    let bytes = access.width.bytes_usize();
    match access.write {
        // At most four bytes wide: the value fits.
        Some(value) => {
            disk.write(offset, bytes, u32::try_from(value).unwrap_or(0), ram);
            0
        }
        None => u64::from(disk.read(offset, bytes)),
    }
}
