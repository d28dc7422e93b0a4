//! Why the VMM stops a guest: the [`Stop`] of [`crate::Action::Stop`].

use bulkhead_components::Error;
use iced_x86::Mnemonic;
use kernel_core::vcpu::GuestField;
use kernel_core::virt::ExitKind;

use crate::paging::TranslationFault;

/// Why a guest is stopped. Nothing here is a host failure: the host runs
/// on, and the binary reports the stop and ends the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest wrote its exit code to the test-exit port
    /// ([`crate::devices::TestExitPort`]).
    Exited(u32),
    /// The guest powered itself off (ACPI S5 through PM1 control).
    PoweredOff,
    /// The guest reset the machine (the reset control register): there is
    /// no firmware to start it again.
    Reset,
    /// The guest shut down: a triple fault.
    TripleFault,
    /// INIT arrived: there is no second vCPU or firmware to restart it.
    Init,
    /// The hardware refused the guest state (the raw reason says why).
    InvalidState {
        /// The hardware's own reason.
        reason: u64,
    },
    /// HLT with interrupts disabled and no event pending: nothing could
    /// ever wake the guest (there is no NMI source yet).
    HaltedWithInterruptsDisabled,
    /// An exit the VMM has no policy for: an unknown kind, `Other`, or a
    /// host interrupt (which the kernel never reports).
    UnhandledExit {
        /// The kind, if the runtime knows it.
        kind: Option<ExitKind>,
        /// The hardware's own reason.
        reason: u64,
        /// The qualification.
        qualification: u64,
    },
    /// An event the VMM cannot deliver: the delivery of `event` touched
    /// memory that is not RAM (a second-level fault while delivering), an
    /// intercepted page fault (CR2 is not in the allowlist, so it could not
    /// be re-injected faithfully), or two events due at once.
    UndeliverableEvent {
        /// The event word (`kernel_core::virt::Event`), 0 for none.
        event: u64,
        /// The other event or the exception vector involved, if any.
        other: u64,
    },
    /// The event word after an exit is not one the kernel would accept.
    MalformedPendingEvent {
        /// The word.
        word: u64,
    },
    /// The VMM could not emulate the instruction at `rip`.
    Emulation {
        /// The guest's RIP.
        rip: u64,
        /// What went wrong.
        failure: EmulationFailure,
    },
    /// The kernel refused a guest-state read or write the VMM needed.
    KernelRefused {
        /// The field.
        field: GuestField,
        /// The kernel's code.
        error: Error,
    },
    /// The emulation left registers VMEnter would refuse (a non-canonical
    /// RSP loaded from a device, say): the guest cannot be entered again.
    UnenterableRegisters {
        /// RIP.
        rip: u64,
        /// RSP.
        rsp: u64,
    },
    /// The PD that serves the guest's devices (its VMX) could not be
    /// reached or answered outside its protocol: the guest's device state
    /// is unknown from then on.
    DeviceServerFailed,
}

/// Why an instruction could not be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulationFailure {
    /// Its bytes could not be fetched (the hardware just fetched them: the
    /// guest changed its page tables meanwhile, or is hostile).
    Fetch(TranslationFault),
    /// No valid instruction starts at RIP.
    Undecodable {
        /// The bytes fetched.
        bytes: [u8; 15],
    },
    /// The instruction is not one that makes this exit (the guest changed
    /// its code or its page tables meanwhile).
    UnexpectedInstruction {
        /// What was decoded.
        mnemonic: Mnemonic,
    },
    /// An instruction the VMM does not emulate on device memory (only MOV,
    /// MOVZX, MOVSX and MOVSXD are).
    UnsupportedInstruction {
        /// What was decoded.
        mnemonic: Mnemonic,
    },
    /// The memory operand could not be translated or reached.
    Operand(TranslationFault),
    /// The memory operand is not where the hardware says the guest faulted
    /// (a page-table or code change racing the VMM).
    AddressMismatch {
        /// The guest-physical address the VMM computed.
        decoded: u64,
        /// The one the exit reported.
        reported: u64,
    },
    /// The instruction reads where the fault says it wrote, or the reverse.
    DirectionMismatch,
    /// A device access crossing a page boundary or a device's end.
    SplitAccess {
        /// The guest-physical address of the access.
        guest_physical: u64,
    },
    /// An instruction fetch from device memory or outside the guest's
    /// memory.
    FetchFromUnbacked {
        /// The guest-physical address.
        guest_physical: u64,
    },
    /// An access to a control register the allowlist does not hold (CR2).
    ControlRegister {
        /// The register's number.
        register: u8,
    },
    /// An I/O exit of a size other than 1, 2 or 4 bytes.
    IoSize {
        /// The size the qualification gave.
        size: u8,
    },
}

impl core::fmt::Display for Stop {
    /// One line for an operator: what stopped the guest, with the numbers
    /// that say where (the test system's logs and `tests/guests.rs` read
    /// these words).
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Stop::Exited(code) => write!(formatter, "exited with code {code}"),
            Stop::PoweredOff => formatter.write_str("powered off (ACPI S5)"),
            Stop::Reset => formatter.write_str("reset the machine (no firmware to restart it)"),
            Stop::TripleFault => formatter.write_str("triple fault"),
            Stop::Init => formatter.write_str("INIT: there is no firmware to restart it"),
            Stop::InvalidState { reason } => {
                write!(formatter, "the hardware refused its state (reason {reason:#x})")
            }
            Stop::HaltedWithInterruptsDisabled => formatter.write_str("halted with interrupts disabled"),
            Stop::UnhandledExit { kind, reason, qualification } => write!(
                formatter,
                "an exit without a policy ({kind:?}, reason {reason:#x}, qualification {qualification:#x})"
            ),
            Stop::UndeliverableEvent { event, other } => {
                write!(formatter, "an event that cannot be delivered ({event:#x}, with {other:#x})")
            }
            Stop::MalformedPendingEvent { word } => write!(formatter, "a malformed pending event {word:#x}"),
            Stop::Emulation { rip, failure } => {
                write!(formatter, "the instruction at rip {rip:#x} was not emulated: {failure:?}")
            }
            Stop::KernelRefused { field, error } => {
                write!(formatter, "the kernel refused guest-state field {}: {error}", field.number())
            }
            Stop::UnenterableRegisters { rip, rsp } => {
                write!(formatter, "registers VMEnter refuses (rip {rip:#x}, rsp {rsp:#x})")
            }
            Stop::DeviceServerFailed => formatter.write_str("its device server failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;

    #[test]
    fn stops_read_as_one_line_each() {
        assert_eq!(Stop::Exited(3).to_string(), "exited with code 3");
        assert_eq!(Stop::TripleFault.to_string(), "triple fault");
        assert_eq!(Stop::PoweredOff.to_string(), "powered off (ACPI S5)");
        assert_eq!(Stop::Reset.to_string(), "reset the machine (no firmware to restart it)");
        assert_eq!(Stop::HaltedWithInterruptsDisabled.to_string(), "halted with interrupts disabled");
        assert_eq!(Stop::InvalidState { reason: 0x21 }.to_string(), "the hardware refused its state (reason 0x21)");
        let emulation = Stop::Emulation { rip: 0x8000, failure: EmulationFailure::DirectionMismatch };
        assert_eq!(emulation.to_string(), "the instruction at rip 0x8000 was not emulated: DirectionMismatch");
        let refused = Stop::KernelRefused { field: GuestField::CR3, error: Error::InvalidArgument };
        assert!(refused.to_string().starts_with("the kernel refused guest-state field 4: "), "{refused}");
        assert!(!Stop::UnenterableRegisters { rip: 1, rsp: 2 }.to_string().contains('\n'));
        assert_eq!(Stop::DeviceServerFailed.to_string(), "its device server failed");
    }
}
