//! The device protocol between a guest's VMM and its VMX
//! (`docs/DEVICES.md`, "The VMM-VMX protocol"): the VMM forwards each
//! guest access to a device the VMX serves as one Call, and the reply
//! carries what the access read and the levels of the VMX's interrupt
//! lines, which the VMM drives on its board at once.
//!
//! This module is the encoding alone: labels and words in, typed values
//! out, with no kernel and no device behind it. Both sides decode as if
//! the other were hostile: the VMX every request (a VMM is trusted more,
//! but a bug there must not become a panic here), the VMM every reply (a
//! VMX runs the code that touches guest-controlled descriptors, so a
//! compromised VMX is the more likely failure). Nothing here panics on
//! any input; every decoder refuses words it does not expect.
//!
//! | label | request words | reply words (label 0) |
//! | --- | --- | --- |
//! | [`label::DESCRIBE`] | none | [`PROTOCOL_VERSION`], the device count n, then four words per device: kind, base, bytes, ISA line |
//! | [`label::PORT_READ`] | port, size | value, line levels |
//! | [`label::PORT_WRITE`] | port, size, value | value (0), line levels |
//! | [`label::MMIO_READ`] | guest-physical address, size | value, line levels |
//! | [`label::MMIO_WRITE`] | guest-physical address, size, value | value (0), line levels |
//! | [`label::STOPPED`] | none | none |
//!
//! A refused request gets a reply whose label is an error code (the
//! kernel's error numbering, as every server in the system answers) and no
//! words: [`Refusal`] says which.

#[cfg(test)]
mod tests;

/// The protocol's version: the first word of a [`label::DESCRIBE`] reply.
pub const PROTOCOL_VERSION: u64 = 1;

/// The request labels (a reply's label is 0 or an error code).
pub mod label {
    /// Which devices the VMX serves, where, and on which lines.
    pub const DESCRIBE: u64 = 0x7600;
    /// A guest `in` from a port the VMX serves.
    pub const PORT_READ: u64 = 0x7601;
    /// A guest `out` to a port the VMX serves.
    pub const PORT_WRITE: u64 = 0x7602;
    /// A guest read of device memory the VMX serves.
    pub const MMIO_READ: u64 = 0x7603;
    /// A guest write of device memory the VMX serves.
    pub const MMIO_WRITE: u64 = 0x7604;
    /// The guest has stopped: the VMX flushes its console and reports.
    pub const STOPPED: u64 = 0x7605;
}

/// The most devices one VMX describes (COM1 and four disks today).
pub const MAX_DEVICES: usize = 8;
/// The words of a [`label::DESCRIBE`] reply for `count` devices.
pub const fn describe_words(count: usize) -> usize {
    2 + 4 * count
}
/// ISA interrupt lines: 0..16.
pub const ISA_LINES: u8 = 16;
/// The ISA lines the VMM's board drives itself (the PIT's 0, the
/// cascade's 2, the RTC's 8, the ACPI SCI's 9): a described device may
/// not drive them, or its levels would fight the board's.
pub const BOARD_LINES: [u8; 4] = [0, 2, 8, 9];

/// The bytes of a guest access: what a port or memory access can move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// One byte.
    Byte,
    /// Two bytes.
    Word,
    /// Four bytes.
    Dword,
    /// Eight bytes (memory only: no port access is this wide).
    Qword,
}

impl Width {
    /// The width of `bytes` bytes, if it is one.
    pub const fn from_bytes(bytes: u64) -> Option<Width> {
        match bytes {
            1 => Some(Width::Byte),
            2 => Some(Width::Word),
            4 => Some(Width::Dword),
            8 => Some(Width::Qword),
            _ => None,
        }
    }

    /// Its bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Dword => 4,
            Width::Qword => 8,
        }
    }

    /// Its bytes, as a length.
    pub const fn bytes_usize(self) -> usize {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Dword => 4,
            Width::Qword => 8,
        }
    }

    /// The bits a value of this width may have set.
    pub const fn mask(self) -> u64 {
        match self {
            Width::Qword => u64::MAX,
            other => (1 << (8 * other.bytes())) - 1,
        }
    }
}

/// Where an access goes: an I/O port or a guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// I/O port space (0..=0xFFFF).
    Port,
    /// Guest-physical memory.
    Memory,
}

/// One guest access, as the VMM forwards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Port or memory.
    pub space: Space,
    /// The port or the guest-physical address of the first byte.
    pub address: u64,
    /// How many bytes.
    pub width: Width,
    /// `Some(value)` for a write (no bits above the width), `None` for a
    /// read.
    pub write: Option<u64>,
}

/// A request from the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// [`label::DESCRIBE`].
    Describe,
    /// A port or memory access.
    Access(Access),
    /// [`label::STOPPED`].
    Stopped,
}

/// Why the VMX refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A label the protocol does not have.
    UnknownLabel,
    /// Too few or too many words for the label.
    WrongLength,
    /// A size that is not 1, 2 or 4 (ports) or 1, 2, 4 or 8 (memory).
    BadSize,
    /// A port above 0xFFFF.
    BadPort,
    /// A written value with bits above its size.
    ValueTooWide,
    /// No device the VMX serves covers every byte of the access.
    NotServed,
}

impl Request {
    /// Decodes a request from its label and words.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] for a message that is not a well-formed request
    /// (never [`Refusal::NotServed`]: that is the device set's to say).
    pub fn decode(label: u64, words: &[u64]) -> Result<Request, Refusal> {
        let (space, write) = match label {
            label::DESCRIBE | label::STOPPED => {
                if !words.is_empty() {
                    return Err(Refusal::WrongLength);
                }
                return Ok(if label == label::DESCRIBE { Request::Describe } else { Request::Stopped });
            }
            label::PORT_READ => (Space::Port, false),
            label::PORT_WRITE => (Space::Port, true),
            label::MMIO_READ => (Space::Memory, false),
            label::MMIO_WRITE => (Space::Memory, true),
            _ => return Err(Refusal::UnknownLabel),
        };
        let (address, size, value) = match (write, words) {
            (false, &[address, size]) => (address, size, None),
            (true, &[address, size, value]) => (address, size, Some(value)),
            _ => return Err(Refusal::WrongLength),
        };
        let width = Width::from_bytes(size).ok_or(Refusal::BadSize)?;
        if space == Space::Port {
            if width == Width::Qword {
                return Err(Refusal::BadSize);
            }
            if address > u64::from(u16::MAX) {
                return Err(Refusal::BadPort);
            }
        }
        if value.is_some_and(|value| value & !width.mask() != 0) {
            return Err(Refusal::ValueTooWide);
        }
        Ok(Request::Access(Access { space, address, width, write: value }))
    }

    /// Its label and words (at most three), as the VMM sends it.
    pub fn encode(&self) -> (u64, heapless::Vec<u64, 3>) {
        match *self {
            Request::Describe => (label::DESCRIBE, words_of(&[])),
            Request::Stopped => (label::STOPPED, words_of(&[])),
            Request::Access(access) => {
                let label = match (access.space, access.write.is_some()) {
                    (Space::Port, false) => label::PORT_READ,
                    (Space::Port, true) => label::PORT_WRITE,
                    (Space::Memory, false) => label::MMIO_READ,
                    (Space::Memory, true) => label::MMIO_WRITE,
                };
                let words = match access.write {
                    None => words_of(&[access.address, access.width.bytes()]),
                    Some(value) => words_of(&[access.address, access.width.bytes(), value]),
                };
                (label, words)
            }
        }
    }
}

/// A bitmap of ISA lines: bit n is line n.
pub type Lines = u16;

/// The answer to an access: what it read (0 for a write) and the levels
/// of every line the VMX drives, after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessReply {
    /// The value read, no bits above the access's width.
    pub value: u64,
    /// The line levels: bit n set, line n asserted.
    pub lines: Lines,
}

/// Why the VMM refuses a reply: the VMX answered something the protocol
/// does not allow. The VMM stops the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadReply {
    /// Too few or too many words.
    WrongLength,
    /// A value with bits above the access's width, or a write's reply
    /// with a value.
    BadValue,
    /// A line level set for a line the VMX does not drive.
    ForeignLine,
    /// A description of another protocol version.
    Version,
    /// A device of an unknown kind, an empty or wrapping range, a port
    /// range past 0xFFFF, a line past 15 or one of the board's
    /// ([`BOARD_LINES`]), or more than [`MAX_DEVICES`].
    BadDevice,
    /// Two described devices overlap.
    Overlap,
}

impl AccessReply {
    /// The reply's words.
    pub const fn encode(&self) -> [u64; 2] {
        [self.value, self.lines as u64]
    }

    /// Decodes the reply to `access` from a VMX that drives `driven`.
    ///
    /// # Errors
    ///
    /// [`BadReply`] for any reply the protocol does not allow.
    pub fn decode(access: &Access, driven: Lines, words: &[u64]) -> Result<AccessReply, BadReply> {
        let &[value, lines] = words else { return Err(BadReply::WrongLength) };
        if value & !access.width.mask() != 0 || (access.write.is_some() && value != 0) {
            return Err(BadReply::BadValue);
        }
        let lines = Lines::try_from(lines).map_err(|_| BadReply::ForeignLine)?;
        if lines & !driven != 0 {
            return Err(BadReply::ForeignLine);
        }
        Ok(AccessReply { value, lines })
    }
}

/// What kind of device a described range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A 16550A UART on a port range.
    Uart16550,
    /// A virtio-mmio transport on a memory window (the VMM announces it
    /// in the DSDT).
    VirtioMmio,
}

impl DeviceKind {
    const fn code(self) -> u64 {
        match self {
            DeviceKind::Uart16550 => 1,
            DeviceKind::VirtioMmio => 2,
        }
    }

    const fn from_code(code: u64) -> Option<DeviceKind> {
        match code {
            1 => Some(DeviceKind::Uart16550),
            2 => Some(DeviceKind::VirtioMmio),
            _ => None,
        }
    }

    /// The space its range is in.
    pub const fn space(self) -> Space {
        match self {
            DeviceKind::Uart16550 => Space::Port,
            DeviceKind::VirtioMmio => Space::Memory,
        }
    }
}

/// One device the VMX serves: where the guest reaches it and its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// What it is (and so whether its range is ports or memory).
    pub kind: DeviceKind,
    /// The first port or guest-physical address.
    pub base: u64,
    /// How many ports or bytes (at least 1).
    pub bytes: u64,
    /// Its ISA interrupt line (0..16).
    pub line: u8,
}

impl Device {
    /// The last port or address it covers, if its range is valid.
    pub fn last(&self) -> Option<u64> {
        let last = self.base.checked_add(self.bytes.checked_sub(1)?)?;
        (self.kind.space() == Space::Memory || last <= u64::from(u16::MAX)).then_some(last)
    }

    /// Whether every byte of `access` lies in this device's range.
    pub fn covers(&self, access: &Access) -> bool {
        let Some(last) = self.last() else { return false };
        let Some(access_last) = access.address.checked_add(access.width.bytes() - 1) else { return false };
        self.kind.space() == access.space && self.base <= access.address && access_last <= last
    }
}

/// The devices a VMX serves, as its [`label::DESCRIBE`] reply lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    list: heapless::Vec<Device, MAX_DEVICES>,
}

impl Devices {
    /// No device.
    pub const fn new() -> Devices {
        Devices { list: heapless::Vec::new() }
    }

    /// Adds `device`.
    ///
    /// # Errors
    ///
    /// [`BadReply::BadDevice`] for an invalid range or line, or when full;
    /// [`BadReply::Overlap`] when it overlaps a device already listed.
    pub fn push(&mut self, device: Device) -> Result<(), BadReply> {
        let last = device.last().ok_or(BadReply::BadDevice)?;
        if device.line >= ISA_LINES || BOARD_LINES.contains(&device.line) {
            return Err(BadReply::BadDevice);
        }
        let overlaps = self.iter().any(|other| {
            other.kind.space() == device.kind.space()
                && other.last().is_some_and(|other_last| other.base <= last && device.base <= other_last)
        });
        if overlaps {
            return Err(BadReply::Overlap);
        }
        self.list.push(device).map_err(|_| BadReply::BadDevice)
    }

    /// The devices, in the order of the description.
    pub fn iter(&self) -> impl Iterator<Item = &Device> {
        self.list.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The device whose range holds every byte of `access`.
    pub fn find(&self, access: &Access) -> Option<(usize, &Device)> {
        self.iter().enumerate().find(|(_, device)| device.covers(access))
    }

    /// The lines the devices drive.
    pub fn lines(&self) -> Lines {
        self.iter().fold(0, |lines, device| lines | (1 << device.line))
    }

    /// The reply's words: written into `words` (at least
    /// [`describe_words`]`(len)` of them); returns how many.
    pub fn encode(&self, words: &mut [u64]) -> usize {
        let header = [PROTOCOL_VERSION, self.len() as u64];
        let body =
            self.iter().flat_map(|device| [device.kind.code(), device.base, device.bytes, u64::from(device.line)]);
        let mut written = 0;
        for (slot, word) in words.iter_mut().zip(header.into_iter().chain(body)) {
            *slot = word;
            written += 1;
        }
        written
    }

    /// Decodes a [`label::DESCRIBE`] reply.
    ///
    /// # Errors
    ///
    /// [`BadReply`] for a reply of another version, the wrong length, an
    /// unknown kind, an invalid range or line, or overlapping devices.
    pub fn decode(words: &[u64]) -> Result<Devices, BadReply> {
        let [version, count, rest @ ..] = words else { return Err(BadReply::WrongLength) };
        if *version != PROTOCOL_VERSION {
            return Err(BadReply::Version);
        }
        let count = usize::try_from(*count).map_err(|_| BadReply::BadDevice)?;
        if count > MAX_DEVICES {
            return Err(BadReply::BadDevice);
        }
        if rest.len() != 4 * count {
            return Err(BadReply::WrongLength);
        }
        let mut devices = Devices::new();
        for chunk in rest.chunks_exact(4) {
            let &[kind, base, bytes, line] = chunk else { return Err(BadReply::WrongLength) };
            let kind = DeviceKind::from_code(kind).ok_or(BadReply::BadDevice)?;
            let line = u8::try_from(line).map_err(|_| BadReply::BadDevice)?;
            devices.push(Device { kind, base, bytes, line })?;
        }
        Ok(devices)
    }
}

/// Up to three words in a vector (a request has at most three).
fn words_of(words: &[u64]) -> heapless::Vec<u64, 3> {
    words.iter().copied().take(3).collect()
}
