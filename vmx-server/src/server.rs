//! One guest's devices behind the VMM-VMX protocol ([`crate::protocol`]):
//! COM1's 16550A, each disk as virtio-mmio over virtio-blk, a virtio
//! console (the guest's `hvc0`) and a virtio network device on a loopback
//! port (until the vswitch takes the port over), each at the place and on
//! the ISA line this module decides, over the guest's RAM as the serving
//! PD maps it. The VMX PD runs it behind its endpoint;
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

use crate::console::{ConsoleLines, LINE_BYTES, LineSink};
use crate::link::Loopback;
use crate::protocol::{
    Access, AccessReply, Device, DeviceKind, Devices, Lines, Refusal, Request, Space, Width, describe_words,
};
use crate::uart::{COM1_BASE_PORT, COM1_IRQ, REGISTER_COUNT, Uart16550};
use crate::virtio::blk::{Block, BlockBackend, BlockCounters};
use crate::virtio::console::{Console, ConsoleCounters};
use crate::virtio::mmio::{MmioTransport, WINDOW_BYTES};
use crate::virtio::net::{Net, NetCounters};
use crate::virtio::{GuestRam, VirtioDevice};

#[cfg(test)]
mod tests;

/// Where disk n's virtio-mmio window is: 4 KiB apart from here, in the
/// PC's MMIO hole below the I/O APIC.
pub const VIRTIO_BASE: u64 = 0xfeb0_0000;
/// The ISA line of disk n: none of the board's (0 the PIT, 2 the
/// cascade, 8 the RTC, 9 the SCI) nor COM1's (4) or COM2's (3).
pub const VIRTIO_LINES: [u8; 4] = [5, 6, 7, 10];
/// The most disks the set serves (one per line above).
pub const MAX_DISKS: usize = VIRTIO_LINES.len();
/// The virtio console's window, after the four disks' (whether or not
/// there are four).
pub const CONSOLE_BASE: u64 = VIRTIO_BASE + 4 * 0x1000;
/// The virtio console's ISA line.
pub const CONSOLE_LINE: u8 = 11;
/// The network device's window, after the console's.
pub const NET_BASE: u64 = VIRTIO_BASE + 5 * 0x1000;
/// The network device's ISA line.
pub const NET_LINE: u8 = 12;
/// The network device's MAC address: locally administered (bit 1 of the
/// first byte), unicast. Each guest's device is on a port of its own (a
/// loopback), so one address serves every guest until ports are linked.
pub const GUEST_MAC: [u8; 6] = [0x02, 0x42, 0x48, 0x00, 0x00, 0x01];
/// The prefix of the virtio console's lines, which share the sink with
/// COM1's.
pub const HVC_PREFIX: &str = "hvc0: ";

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

/// Which model serves a described device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Com1,
    Disk(usize),
    Console,
    Net,
}

/// One guest's devices.
pub struct GuestDevices<R, B: BlockBackend, S> {
    ram: R,
    uart: Uart16550,
    console: ConsoleLines,
    sink: S,
    /// On the heap: each holds its scratch buffers (8 KiB).
    disks: Vec<Box<VirtioDisk<B>>>,
    /// The virtio console and its lines (apart from COM1's).
    hvc: Box<MmioTransport<Console>>,
    hvc_lines: ConsoleLines,
    /// The network device on its loopback port.
    net: Box<MmioTransport<Net<Box<Loopback>>>>,
    devices: Devices,
    /// The model of each described device, in the description's order.
    models: Vec<Model>,
    counters: Counters,
}

impl<R: GuestRam, B: BlockBackend, S: LineSink> GuestDevices<R, B, S> {
    /// COM1, then each of `disks` (at most [`MAX_DISKS`]; the rest are not
    /// served) with its virtio-blk ID, then the virtio console and the
    /// network device, over `ram`; console lines (COM1's, and the virtio
    /// console's after [`HVC_PREFIX`]) go to `sink`.
    pub fn new(ram: R, disks: impl IntoIterator<Item = (B, [u8; 20])>, sink: S) -> Self {
        let mut devices = Devices::new();
        let mut models = Vec::new();
        let com1 = Device {
            kind: DeviceKind::Uart16550,
            base: u64::from(COM1_BASE_PORT),
            bytes: u64::from(REGISTER_COUNT),
            line: COM1_IRQ,
        };
        // Constant, valid and alone: cannot fail.
        let _ = devices.push(com1);
        models.push(Model::Com1);
        let mut served = Vec::new();
        for ((backend, id), (index, line)) in disks.into_iter().zip((0_u64..).zip(VIRTIO_LINES)) {
            let window =
                Device { kind: DeviceKind::VirtioMmio, base: VIRTIO_BASE + index * 0x1000, bytes: WINDOW_BYTES, line };
            if devices.push(window).is_ok() {
                models.push(Model::Disk(served.len()));
                served.push(Box::new(MmioTransport::new(Block::new(backend, &id))));
            }
        }
        // At most 1 + 4 + 2 devices at ranges apart: both fit.
        for (base, line, model) in [(CONSOLE_BASE, CONSOLE_LINE, Model::Console), (NET_BASE, NET_LINE, Model::Net)] {
            if devices.push(Device { kind: DeviceKind::VirtioMmio, base, bytes: WINDOW_BYTES, line }).is_ok() {
                models.push(model);
            }
        }
        GuestDevices {
            ram,
            uart: Uart16550::new(),
            console: ConsoleLines::new(),
            sink,
            disks: served,
            hvc: Box::new(MmioTransport::new(Console::new())),
            hvc_lines: ConsoleLines::new(),
            net: Box::new(MmioTransport::new(Net::new(Box::new(Loopback::loopback()), GUEST_MAC))),
            devices,
            models,
            counters: Counters::default(),
        }
    }

    /// The devices, as a description lists them: COM1 first, then the
    /// disks in order, then the virtio console and the network device.
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

    /// What the virtio console did.
    pub fn hvc_counters(&self) -> ConsoleCounters {
        self.hvc.device().counters()
    }

    /// What the network device did.
    pub fn net_counters(&self) -> NetCounters {
        self.net.device().counters()
    }

    /// The levels of every line the set drives.
    pub fn lines(&self) -> Lines {
        let mut lines = Lines::from(self.uart.interrupt_line()) << COM1_IRQ;
        for (disk, line) in self.disks.iter().zip(VIRTIO_LINES) {
            lines |= Lines::from(disk.interrupt_line()) << line;
        }
        lines |= Lines::from(self.hvc.interrupt_line()) << CONSOLE_LINE;
        lines |= Lines::from(self.net.interrupt_line()) << NET_LINE;
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
                self.drain_hvc();
                if !self.hvc_lines.is_empty() {
                    self.hvc_lines.flush(&mut Prefixed(&mut self.sink));
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
        let model = self.models.get(index).copied().ok_or(Refusal::NotServed)?;
        let value = match (model, device.kind, access.space) {
            (Model::Com1, DeviceKind::Uart16550, Space::Port) => {
                self.counters.port_accesses += 1;
                self.uart_access(offset, access)
            }
            (Model::Disk(disk), DeviceKind::VirtioMmio, Space::Memory) => {
                self.counters.mmio_accesses += 1;
                let disk = self.disks.get_mut(disk).ok_or(Refusal::NotServed)?;
                virtio_access(disk, &mut self.ram, offset, access)
            }
            (Model::Console, DeviceKind::VirtioMmio, Space::Memory) => {
                self.counters.mmio_accesses += 1;
                let value = virtio_access(&mut self.hvc, &mut self.ram, offset, access);
                self.drain_hvc();
                value
            }
            (Model::Net, DeviceKind::VirtioMmio, Space::Memory) => {
                self.counters.mmio_accesses += 1;
                let value = virtio_access(&mut self.net, &mut self.ram, offset, access);
                // The loopback's frames come back at once: into the
                // guest's receive buffers now, or at its next notify.
                if access.write.is_some() {
                    self.net.deliver(&mut self.ram);
                }
                value
            }
            // `find` matched the spaces, and each model its kind.
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

    fn drain_hvc(&mut self) {
        let hvc = self.hvc.device_mut();
        drain_into(|bytes| hvc.drain_output(bytes), &mut self.hvc_lines, &mut Prefixed(&mut self.sink));
    }

    fn drain_console(&mut self) {
        let uart = &mut self.uart;
        drain_into(|bytes| uart.drain_output(bytes), &mut self.console, &mut self.sink);
    }
}

/// Takes a device's transmitted bytes (`drain` fills a buffer and says
/// how many, 0 when none are left) into `lines`, finished lines to `sink`.
fn drain_into(mut drain: impl FnMut(&mut [u8]) -> usize, lines: &mut ConsoleLines, sink: &mut dyn LineSink) {
    let mut bytes = [0; 64];
    loop {
        let count = drain(&mut bytes);
        if count == 0 {
            break;
        }
        for byte in bytes.iter().take(count) {
            lines.push(*byte, sink);
        }
    }
}

/// The virtio console's lines, after [`HVC_PREFIX`], into COM1's sink.
struct Prefixed<'a, S>(&'a mut S);

impl<S: LineSink> LineSink for Prefixed<'_, S> {
    fn write_line(&mut self, line: &str) {
        let mut prefixed: heapless::String<{ HVC_PREFIX.len() + LINE_BYTES }> = heapless::String::new();
        // Both fit: the line is at most LINE_BYTES.
        let _ = prefixed.push_str(HVC_PREFIX);
        let _ = prefixed.push_str(line);
        self.0.write_line(&prefixed);
    }
}

/// An access to a virtio-mmio window: the transport's registers are at
/// most four bytes wide, so an eight-byte access reads 0 and writes
/// nothing, as the transport treats any size it does not take.
fn virtio_access<D: VirtioDevice>(
    disk: &mut MmioTransport<D>,
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
