//! One guest's device models (`bulkhead_vmx_server::server::GuestDevices`)
//! over the memory a PD's info page names: the guest's RAM and the disk
//! regions it serves. The `vmx-server` program serves them behind its
//! device link; the `vmm-server` program, for a guest without a VMX, in
//! its own PD. Console lines are printed as `PD: text`.

use bulkhead_capdl_spec::PdInfo;
use bulkhead_sys::mapped::SharedRegion;
use bulkhead_vmx_server::console::LineSink;
use bulkhead_vmx_server::server::{GuestDevices, MAX_DISKS};
use bulkhead_vmx_server::virtio::blk::{BackendError, BlockBackend};
use bulkhead_vmx_server::virtio::{GuestRam, OutOfRange};

/// The device set a PD serves.
pub type PdDevices = GuestDevices<RegionRam, RegionDisk, PrintedLines>;

/// Why the set cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The info page names no guest RAM mapped here.
    NoGuestRam,
    /// A disk's region is not mapped where the info page says.
    Disk(usize),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::NoGuestRam => formatter.write_str("the info page names no guest RAM mapped in this PD"),
            SetupError::Disk(index) => write!(formatter, "disk {index} is not a region of this PD"),
        }
    }
}

/// COM1 and each disk the info page lists, over the guest's RAM as this
/// PD maps it; console lines are printed with the PD's name.
///
/// # Errors
///
/// [`SetupError`] when a disk, or the guest's RAM while there are disks,
/// is not mapped here.
pub fn guest_devices(info: &PdInfo) -> Result<PdDevices, SetupError> {
    // A VMX that serves no disk may map none of the guest's RAM (the
    // manifest allows it): COM1 needs none. Disks do.
    let window = info.guest_ram().and_then(|ram| SharedRegion::new(ram.address, ram.bytes));
    if window.is_none() && info.disks().iter().any(Option::is_some) {
        return Err(SetupError::NoGuestRam);
    }
    let name = crate::name_of(info);
    let mut disks: heapless::Vec<(RegionDisk, [u8; 20]), MAX_DISKS> = heapless::Vec::new();
    for (index, disk) in info.disks().iter().enumerate() {
        let Some(disk) = disk else { continue };
        let window = SharedRegion::new(disk.address, disk.bytes).ok_or(SetupError::Disk(index))?;
        // More than the set serves are left out, as the set would.
        let _ = disks.push((RegionDisk { window }, disk_id(&name, index)));
    }
    Ok(GuestDevices::new(RegionRam { window }, disks, PrintedLines { name }))
}

/// Prints what the set did, each line starting with `who: `.
pub fn report(who: &str, devices: &PdDevices) {
    let counters = devices.counters();
    bulkhead_sys::println!(
        "{who}: {} device requests served ({} port and {} MMIO accesses), {} refused, {} console bytes dropped",
        counters.served,
        counters.port_accesses,
        counters.mmio_accesses,
        counters.refused,
        devices.dropped_console_bytes()
    );
    let hvc = devices.hvc_counters();
    bulkhead_sys::println!(
        "{who}: virtio console: {} bytes out ({} dropped), {} in; {} bad chains, {} faults",
        hvc.transmitted_bytes,
        hvc.dropped_output_bytes,
        hvc.received_bytes,
        hvc.transmit_malformed + hvc.transmit_too_long + hvc.receive_bad_buffers,
        hvc.transmit_faults + hvc.receive_faults
    );
    let net = devices.net_counters();
    bulkhead_sys::println!(
        "{who}: network: {} frames sent ({} bytes), {} received ({} bytes); dropped: {} malformed, {} bad length, \
         {} bad header, {} port full, {} no buffer room, {} not ready, {} faults",
        net.transmitted_frames,
        net.transmitted_bytes,
        net.received_frames,
        net.received_bytes,
        net.transmit_malformed + net.receive_bad_buffers,
        net.transmit_bad_length + net.receive_bad_length,
        net.transmit_bad_header,
        net.transmit_port_dropped,
        net.receive_buffer_too_small,
        net.receive_not_ready,
        net.transmit_faults + net.receive_faults
    );
    for index in 0..MAX_DISKS {
        let Some(disk) = devices.disk_counters(index) else { break };
        bulkhead_sys::println!(
            "{who}: disk {index}: {} requests completed, {} I/O errors, {} unsupported, {} without a status",
            disk.ok,
            disk.io_errors,
            disk.unsupported,
            disk.without_status
        );
    }
}

/// virtio-blk's serial number: the PD's name and the disk's index.
fn disk_id(name: &str, index: usize) -> [u8; 20] {
    use core::fmt::Write as _;
    // A name of at most 32 bytes and an index of one digit fit; the ID
    // keeps the first 20 bytes.
    let mut text: heapless::String<64> = heapless::String::new();
    let _ = write!(text, "{name}-{index}");
    let mut id = [0_u8; 20];
    for (to, from) in id.iter_mut().zip(text.bytes()) {
        *to = from;
    }
    id
}

/// Console lines, printed with the serving PD's name.
pub struct PrintedLines {
    name: heapless::String<32>,
}

impl LineSink for PrintedLines {
    fn write_line(&mut self, line: &str) {
        bulkhead_sys::println!("{}: {line}", self.name);
    }
}

/// A disk backed by a region of this PD that the loader filled with the
/// image (`docs/capdl.md`, region contents): 512-byte sectors, writes
/// stay in RAM (nothing outlives the run).
pub struct RegionDisk {
    window: SharedRegion,
}

impl BlockBackend for RegionDisk {
    fn sectors(&self) -> u64 {
        self.window.len() / 512
    }

    fn read(&mut self, sector: u64, bytes: &mut [u8]) -> Result<(), BackendError> {
        let offset = sector.checked_mul(512).ok_or(BackendError)?;
        self.window.read(offset, bytes).map_err(|_| BackendError)
    }

    fn write(&mut self, sector: u64, bytes: &[u8]) -> Result<(), BackendError> {
        let offset = sector.checked_mul(512).ok_or(BackendError)?;
        self.window.write(offset, bytes).map_err(|_| BackendError)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The guest's RAM as this PD maps it: guest-physical `a` at the window's
/// byte `a`, every access a copy (never a reference into memory the guest
/// writes at the same time).
pub struct RegionRam {
    /// `None`: this PD maps none of the guest's RAM (no device here reads
    /// it; an access is out of range).
    window: Option<SharedRegion>,
}

impl GuestRam for RegionRam {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), OutOfRange> {
        let window = self.window.as_ref().ok_or(OutOfRange)?;
        window.read(guest_physical, bytes).map_err(|_| OutOfRange)
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        let window = self.window.as_mut().ok_or(OutOfRange)?;
        window.write(guest_physical, bytes).map_err(|_| OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_id_is_the_pd_s_name_and_the_index_cut_to_twenty_bytes() {
        assert_eq!(&disk_id("linux_vmx", 0)[..12], b"linux_vmx-0\0");
        assert_eq!(&disk_id("a_very_long_protection_domain", 3), b"a_very_long_protecti");
    }
}
