//! The guest's devices as the Linux VMM reaches them (`docs/DEVICES.md`,
//! "The VMM-VMX protocol"): in the guest's VMX, a PD of their own, one
//! Call per guest access over the device link the info page names; or,
//! for a guest without a VMX, the same device set in this PD. Either way
//! the VMM learns the devices from their description, puts each on its
//! buses ([`Forwarded`]) and drives their interrupt lines on the board
//! from each answer.
//!
//! A VMX is not trusted: a reply outside the protocol (a refusal, a value
//! wider than the access, a level on a line it did not describe, a kernel
//! error on the link) is a failure that stops the guest
//! ([`Stop::DeviceServerFailed`]), never a panic; until the loop sees it,
//! reads answer as an open bus and nothing more is forwarded.

use alloc::boxed::Box;
use core::cell::RefCell;
use core::ops::ControlFlow;

use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::{Error, Message};
use bulkhead_programs::devices::{self, PdDevices};
use bulkhead_sys::{PdInfo, Sys, println};
use bulkhead_vmm_server::platform::pc::Pc;
use bulkhead_vmm_server::{AccessSize, MmioDevice, PortDevice, Stop};
use bulkhead_vmx_server::protocol::{
    Access, AccessReply, BadReply, Device, Devices, ISA_LINES, Lines, Request, Space, Width,
};
use bulkhead_vmx_server::server::Served;

/// Where the guest's devices are served.
enum Server {
    /// In the guest's VMX, called on `endpoint`. The calls use a handle
    /// without the IPC buffer: an access and its reply fit the registers,
    /// and the VMM's own handle is busy with the vCPU while an exit is
    /// handled.
    Remote { endpoint: Cap<kind::Endpoint>, sys: Sys },
    /// In this PD.
    Local(Box<PdDevices>),
}

/// Why the device link failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkFailure {
    /// The kernel refused the call, or the VMX refused the request.
    Refused(Error),
    /// The VMX answered outside the protocol.
    BadReply(BadReply),
}

/// Why the devices could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectError {
    /// The local device set (no VMX).
    Local(devices::SetupError),
    /// The VMX's description.
    Describe(LinkFailure),
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectError::Local(error) => write!(formatter, "{error}"),
            ConnectError::Describe(failure) => write!(formatter, "the VMX's description failed: {failure:?}"),
        }
    }
}

/// The guest's devices and the state of the way to them.
pub(crate) struct DeviceLink {
    server: Server,
    devices: Devices,
    /// The lines the devices drive.
    driven: Lines,
    failure: Option<LinkFailure>,
    /// Accesses forwarded (Calls, for a VMX).
    forwarded: u64,
    /// TSC ticks spent forwarding them (instructions under QEMU's
    /// `-icount`): each from before the Call to its decoded reply.
    forward_ticks: u64,
}

impl DeviceLink {
    /// The devices of the guest of `pd`: its VMX's, described over the
    /// device link (a call with `sys`, whose IPC buffer takes the
    /// description), or without a VMX a device set in this PD.
    pub(crate) fn connect(pd: &PdInfo, sys: &mut Sys) -> Result<DeviceLink, ConnectError> {
        let (server, devices) = match pd.device_link() {
            Some(link) => {
                let endpoint = Cap::<kind::Endpoint>::new(link.endpoint);
                let (label, words) = Request::Describe.encode();
                let described = endpoint
                    .call(sys, &Message::new(label, &words))
                    .map_err(LinkFailure::Refused)
                    .and_then(|reply| Devices::decode(reply.words()).map_err(LinkFailure::BadReply))
                    .map_err(ConnectError::Describe)?;
                (Server::Remote { endpoint, sys: Sys::without_ipc_buffer() }, described)
            }
            None => {
                let local = devices::guest_devices(pd).map_err(ConnectError::Local)?;
                let described = local.devices().clone();
                (Server::Local(Box::new(local)), described)
            }
        };
        Ok(DeviceLink { server, driven: devices.lines(), devices, failure: None, forwarded: 0, forward_ticks: 0 })
    }

    /// The devices, as described.
    pub(crate) fn devices(&self) -> &Devices {
        &self.devices
    }

    /// Whether the devices are in a VMX.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.server, Server::Remote { .. })
    }

    /// The failure that ended the link, if any.
    pub(crate) fn failure(&self) -> Option<LinkFailure> {
        self.failure
    }

    /// Forwards one access; `None` once the link has failed.
    fn forward(&mut self, access: Access) -> Option<AccessReply> {
        if self.failure.is_some() {
            return None;
        }
        self.forwarded += 1;
        let start = bulkhead_sys::arch::read_tsc();
        let answer = match &mut self.server {
            Server::Remote { endpoint, sys } => {
                let (label, words) = Request::Access(access).encode();
                endpoint.call(sys, &Message::new(label, &words)).map_err(LinkFailure::Refused).and_then(|reply| {
                    AccessReply::decode(&access, self.driven, reply.words()).map_err(LinkFailure::BadReply)
                })
            }
            Server::Local(devices) => match devices.serve(&Request::Access(access)) {
                Ok(Served::Access(reply)) => Ok(reply),
                // This VMM forwards only what the set described.
                Ok(_) | Err(_) => Err(LinkFailure::Refused(Error::RangeError)),
            },
        };
        self.forward_ticks = self.forward_ticks.wrapping_add(bulkhead_sys::arch::read_tsc().wrapping_sub(start));
        answer.inspect_err(|failure| self.failure = Some(*failure)).ok()
    }

    /// Tells the devices the guest has stopped (they flush the console)
    /// and prints the link's counters.
    pub(crate) fn stop(&mut self) {
        match &mut self.server {
            Server::Remote { endpoint, sys } => {
                if self.failure.is_none() {
                    let (label, words) = Request::Stopped.encode();
                    if let Err(error) = endpoint.call(sys, &Message::new(label, &words)) {
                        println!("vmm: the VMX refused the stop: {error}");
                    }
                }
                println!(
                    "vmm: {} device accesses forwarded to the VMX (one Call each), {} ticks each on average",
                    self.forwarded,
                    self.forward_ticks.checked_div(self.forwarded).unwrap_or(0)
                );
            }
            Server::Local(devices) => {
                let _ = devices.serve(&Request::Stopped);
                devices::report("vmm", devices);
                println!(
                    "vmm: {} device accesses served in this PD, {} ticks each on average",
                    self.forwarded,
                    self.forward_ticks.checked_div(self.forwarded).unwrap_or(0)
                );
            }
        }
    }
}

/// One described device on the VMM's bus: each access goes over the link,
/// and the answer's line levels to the board.
pub(crate) struct Forwarded<'a> {
    pub(crate) link: &'a RefCell<DeviceLink>,
    pub(crate) board: &'a RefCell<Pc>,
    pub(crate) device: Device,
}

impl Forwarded<'_> {
    /// One access at `address` (port or guest-physical), wholly inside the
    /// device: the value it read, the board's lines updated.
    fn access(&mut self, address: u64, width: Width, write: Option<u64>) -> Option<u64> {
        let access = Access { space: self.device.kind.space(), address, width, write };
        let reply = self.link.try_borrow_mut().ok()?.forward(access)?;
        let driven = self.link.try_borrow().map_or(0, |link| link.driven);
        if let Ok(mut board) = self.board.try_borrow_mut() {
            for line in (0..ISA_LINES).filter(|line| driven & (1 << line) != 0) {
                board.set_isa_line(line, reply.lines & (1 << line) != 0);
            }
        }
        Some(reply.value)
    }

    /// A port access: at once when it lies inside the device's ports,
    /// else byte by byte, the bytes outside read as an open bus (0xFF) and
    /// written nowhere.
    fn port(&mut self, port: u16, size: AccessSize, write: Option<u32>) -> Option<u32> {
        let width = Width::from_bytes(size.bytes() as u64)?;
        let whole = Access { space: Space::Port, address: u64::from(port), width, write: None };
        if self.device.covers(&whole) {
            let value = self.access(u64::from(port), width, write.map(u64::from))?;
            return u32::try_from(value).ok();
        }
        let mut bytes = write.unwrap_or(0).to_le_bytes();
        for (offset, byte) in (0_u16..).zip(bytes.iter_mut()).take(size.bytes()) {
            let address = u64::from(port.wrapping_add(offset));
            let single = Access { address, width: Width::Byte, ..whole };
            *byte = if self.device.covers(&single) {
                let value = self.access(address, Width::Byte, write.map(|_| u64::from(*byte)))?;
                u8::try_from(value).ok()?
            } else {
                0xff
            };
        }
        Some(if write.is_some() { 0 } else { u32::from_le_bytes(bytes) })
    }
}

impl PortDevice for Forwarded<'_> {
    fn read(&mut self, port: u16, size: AccessSize) -> u32 {
        self.port(port, size, None).unwrap_or(u32::MAX)
    }

    fn write(&mut self, port: u16, size: AccessSize, value: u32) -> ControlFlow<Stop> {
        let mask = Width::from_bytes(size.bytes() as u64).map_or(0, Width::mask);
        let value = u32::try_from(u64::from(value) & mask).unwrap_or(0);
        match self.port(port, size, Some(value)) {
            Some(_) => ControlFlow::Continue(()),
            None => ControlFlow::Break(Stop::DeviceServerFailed),
        }
    }
}

impl MmioDevice for Forwarded<'_> {
    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        let (Some(width), Some(address)) =
            (Width::from_bytes(size.bytes() as u64), self.device.base.checked_add(offset))
        else {
            return u64::MAX;
        };
        self.access(address, width, None).unwrap_or(u64::MAX)
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64) -> ControlFlow<Stop> {
        let (Some(width), Some(address)) =
            (Width::from_bytes(size.bytes() as u64), self.device.base.checked_add(offset))
        else {
            return ControlFlow::Break(Stop::DeviceServerFailed);
        };
        match self.access(address, width, Some(value & width.mask())) {
            Some(_) => ControlFlow::Continue(()),
            None => ControlFlow::Break(Stop::DeviceServerFailed),
        }
    }
}
