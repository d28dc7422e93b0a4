//! What the VMM reaches of its guest, as traits: the VCpu's allowlisted
//! state (the kernel's VCpu::ReadState and WriteState), the guest's
//! physical memory as the VMM maps it, and the host's time stamp counter.
//! The ring-3 binary implements them over its capabilities; the tests
//! implement them over plain arrays.

use bulkhead_components::Error;
use kernel_core::vcpu::GuestField;

/// Guest state the VMM reads and writes between exits: the kernel's
/// VCpu::ReadState and VCpu::WriteState (`docs/abi.md`, "VCpus").
///
/// RIP, RSP, RFLAGS and the pending event are not written through this
/// trait: VMEnter loads them from its message ([`GuestRegisters`]), so
/// the VMM changes them there.
///
/// [`GuestRegisters`]: bulkhead_components::vcpu::GuestRegisters
pub trait VcpuState {
    /// The value of `field`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, VCpu::ReadState).
    fn read(&mut self, field: GuestField) -> Result<u64, Error>;

    /// Sets `field` to `value`.
    ///
    /// # Errors
    ///
    /// The kernel's code: [`Error::InvalidArgument`] for a value the field
    /// may not hold (`kernel_core::vcpu::check`), which the VMM turns into
    /// the #GP a CPU would raise.
    fn write(&mut self, field: GuestField, value: u64) -> Result<(), Error>;
}

/// A guest-physical address outside the memory the VMM maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unbacked {
    /// The first address that is not backed.
    pub guest_physical: u64,
}

/// The guest's physical memory as the VMM maps it. Accesses are copies:
/// the guest may change its memory at any time, so nothing is borrowed.
pub trait GuestMemory {
    /// Copies `bytes.len()` bytes from `guest_physical` into `bytes`.
    ///
    /// # Errors
    ///
    /// [`Unbacked`] when any of the bytes lies outside the guest's memory.
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), Unbacked>;

    /// Copies `bytes` to `guest_physical`.
    ///
    /// # Errors
    ///
    /// [`Unbacked`] when any of the bytes lies outside the guest's memory
    /// (nothing is written then).
    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), Unbacked>;
}

/// The host's time stamp counter, from which the guest's IA32_TSC is
/// computed (the guest's TSC is the host's plus the VCpu's TSC offset,
/// as for RDTSC, which does not exit).
pub trait Clock {
    /// The host's TSC now.
    fn read_host_tsc(&mut self) -> u64;
}
