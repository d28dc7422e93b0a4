//! The VMM's own test devices: a debug console on port 0xE9 (Bochs's and
//! QEMU's `debugcon`), a test-exit port on 0xF4 (QEMU's `isa-debug-exit`)
//! and a test MMIO device with an ID register and a scratch register.
//! Each is a pure state machine, tested on the host.

use core::ops::ControlFlow;

use crate::access_size::AccessSize;
use crate::mmio::MmioDevice;
use crate::port_io::PortDevice;
use crate::stop::Stop;

/// Where the debug console's complete lines go (the binary prints them).
pub trait Console {
    /// One line, without its end, every byte printable ASCII.
    fn write_line(&mut self, line: &[u8]);
}

/// The debug console's port.
pub const DEBUG_CONSOLE_PORT: u16 = 0xe9;
/// The longest line the debug console hands over; a longer one is handed
/// over in pieces of this size.
pub const MAX_LINE_BYTES: usize = 160;

/// A byte-wide debug console: OUT of a byte appends it to the current
/// line; a newline (or a full line) hands the line to the [`Console`].
/// Carriage returns are dropped, and every byte outside printable ASCII
/// (escape sequences included) becomes `?`, so that a guest cannot drive
/// the host's terminal. IN reads 0xE9, which is how guests detect it.
pub struct DebugConsole<'c> {
    line: heapless::Vec<u8, MAX_LINE_BYTES>,
    console: &'c mut dyn Console,
    lines: u64,
}

impl<'c> DebugConsole<'c> {
    /// A console handing its lines to `console`.
    pub fn new(console: &'c mut dyn Console) -> Self {
        DebugConsole { line: heapless::Vec::new(), console, lines: 0 }
    }

    /// How many lines it handed over.
    #[must_use]
    pub const fn lines(&self) -> u64 {
        self.lines
    }

    /// The bytes of the line not yet complete.
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        &self.line
    }

    fn hand_over(&mut self) {
        self.console.write_line(&self.line);
        self.line.clear();
        self.lines = self.lines.saturating_add(1);
    }

    fn put(&mut self, byte: u8) {
        match byte {
            b'\n' => self.hand_over(),
            b'\r' => {}
            _ => {
                let printable = if byte == b'\t' || (0x20..0x7f).contains(&byte) { byte } else { b'?' };
                if self.line.push(printable).is_err() {
                    self.hand_over();
                    // The line was just emptied: the byte fits.
                    self.line.push(printable).ok();
                }
            }
        }
    }
}

impl PortDevice for DebugConsole<'_> {
    fn read(&mut self, _port: u16, _size: AccessSize) -> u32 {
        u32::from(DEBUG_CONSOLE_PORT)
    }

    /// Only the low byte of a wider OUT is written, as `debugcon` does.
    fn write(&mut self, _port: u16, _size: AccessSize, value: u32) -> ControlFlow<Stop> {
        self.put(value.to_le_bytes()[0]);
        ControlFlow::Continue(())
    }
}

/// The test-exit port.
pub const TEST_EXIT_PORT: u16 = 0xf4;

/// A test-exit port: OUT of `v` (1, 2 or 4 bytes) stops the guest with
/// [`Stop::Exited`]`(v)`. Unlike QEMU's `isa-debug-exit`, the value is
/// reported as written, not as `v << 1 | 1`. IN reads all ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestExitPort;

impl PortDevice for TestExitPort {
    fn read(&mut self, _port: u16, _size: AccessSize) -> u32 {
        u32::MAX
    }

    fn write(&mut self, _port: u16, _size: AccessSize, value: u32) -> ControlFlow<Stop> {
        ControlFlow::Break(Stop::Exited(value))
    }
}

/// The test MMIO device's ID register (offset 0, read-only): "BULKHEAD"
/// in ASCII, least significant byte first.
pub const TEST_DEVICE_ID: u64 = u64::from_le_bytes(*b"BULKHEAD");
/// The test MMIO device's scratch register's offset.
pub const TEST_DEVICE_SCRATCH: u64 = 8;
/// The test MMIO device's registers' size: the ID and the scratch
/// register, 8 bytes each. Beyond them it reads zero and ignores writes.
pub const TEST_DEVICE_REGISTER_BYTES: u64 = 16;

/// A test MMIO device: an ID register at offset 0 that reads
/// [`TEST_DEVICE_ID`] and a scratch register at offset 8 that reads back
/// what was written. Accesses of any size at any offset see the registers
/// as little-endian bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestMmioDevice {
    scratch: u64,
    writes: u64,
}

impl Default for TestMmioDevice {
    fn default() -> Self {
        TestMmioDevice::new()
    }
}

impl TestMmioDevice {
    /// The device with its scratch register zero.
    #[must_use]
    pub const fn new() -> Self {
        TestMmioDevice { scratch: 0, writes: 0 }
    }

    /// The scratch register.
    #[must_use]
    pub const fn scratch(&self) -> u64 {
        self.scratch
    }

    /// How many writes it took (to any offset).
    #[must_use]
    pub const fn writes(&self) -> u64 {
        self.writes
    }

    fn registers(&self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&TEST_DEVICE_ID.to_le_bytes());
        bytes[8..].copy_from_slice(&self.scratch.to_le_bytes());
        bytes
    }
}

/// The byte indices `offset..offset + size` clipped to the registers.
fn register_bytes(offset: u64, size: AccessSize) -> impl Iterator<Item = (usize, usize)> {
    (0..size.bytes()).filter_map(move |index| {
        let at = offset.checked_add(index as u64).filter(|at| *at < TEST_DEVICE_REGISTER_BYTES)?;
        Some((index, usize::try_from(at).ok()?))
    })
}

impl MmioDevice for TestMmioDevice {
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        let registers = self.registers();
        let mut value = [0; 8];
        for (index, at) in register_bytes(offset, size) {
            value[index] = registers[at];
        }
        u64::from_le_bytes(value)
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop> {
        self.writes = self.writes.saturating_add(1);
        let mut registers = self.registers();
        let bytes = value.to_le_bytes();
        for (index, at) in register_bytes(offset, size) {
            if at >= 8 {
                registers[at] = bytes[index];
            }
        }
        let mut scratch = [0; 8];
        scratch.copy_from_slice(&registers[8..]);
        self.scratch = u64::from_le_bytes(scratch);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
