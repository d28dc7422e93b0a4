//! The kernel's system-call error codes: the one enum every invocation's
//! decode step returns, and the numbers user space sees (the ring-3 runtime
//! in `components/` mirrors them). Zero is success and never an error.

use core::fmt;

/// Why an invocation was refused. Decoding returns these before anything
/// changes; invoking never fails on user input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum SyscallError {
    /// An argument is out of its domain (an unknown object type, a bad
    /// size, a label the object does not understand).
    InvalidArgument = 1,
    /// A capability argument has the wrong type or lacks a right.
    InvalidCapability = 2,
    /// The operation is not allowed on this capability (e.g. minting a
    /// capability that cannot be badged).
    IllegalOperation = 3,
    /// A number lies outside the allowed range (given in the error's
    /// companion values by the syscall layer).
    RangeError = 4,
    /// An address or size is not suitably aligned.
    AlignmentError = 5,
    /// A capability address did not resolve (see [`LookupFailure`]).
    FailedLookup = 6,
    /// The message is shorter than the invocation needs.
    TruncatedMessage = 7,
    /// The destination slot is not empty.
    DeleteFirst = 8,
    /// The capability still has derived children (e.g. moving an untyped
    /// with objects in it, or retyping over live objects).
    RevokeFirst = 9,
    /// The untyped has too little free memory for the request.
    NotEnoughMemory = 10,
    /// The operation was cut short at a preemption point: the kernel
    /// restarts it, user space never sees this.
    Preempted = 11,
}

impl SyscallError {
    /// Every error, in code order (for tables and tests).
    pub const ALL: [SyscallError; 11] = [
        SyscallError::InvalidArgument,
        SyscallError::InvalidCapability,
        SyscallError::IllegalOperation,
        SyscallError::RangeError,
        SyscallError::AlignmentError,
        SyscallError::FailedLookup,
        SyscallError::TruncatedMessage,
        SyscallError::DeleteFirst,
        SyscallError::RevokeFirst,
        SyscallError::NotEnoughMemory,
        SyscallError::Preempted,
    ];

    /// The number user space receives.
    #[must_use]
    pub const fn code(self) -> u64 {
        self as u64
    }
}

impl fmt::Display for SyscallError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            SyscallError::InvalidArgument => "invalid argument",
            SyscallError::InvalidCapability => "invalid capability",
            SyscallError::IllegalOperation => "illegal operation",
            SyscallError::RangeError => "value out of range",
            SyscallError::AlignmentError => "misaligned address or size",
            SyscallError::FailedLookup => "capability lookup failed",
            SyscallError::TruncatedMessage => "message too short",
            SyscallError::DeleteFirst => "destination slot is occupied",
            SyscallError::RevokeFirst => "capability has derived children",
            SyscallError::NotEnoughMemory => "not enough free memory in the untyped",
            SyscallError::Preempted => "preempted (restarted by the kernel)",
        };
        formatter.write_str(text)
    }
}

/// Why a capability address did not resolve (the detail behind
/// [`SyscallError::FailedLookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupFailure {
    /// A capability on the path is not a CNode, with this many bits left.
    InvalidRoot,
    /// The slot the address names holds no capability.
    MissingCapability {
        /// Address bits still unresolved.
        bits_left: u8,
    },
    /// The address bits do not match a CNode's guard.
    GuardMismatch {
        /// Address bits still unresolved at the mismatch.
        bits_left: u8,
        /// The CNode's guard.
        guard: u64,
        /// The guard's width.
        guard_bits: u8,
    },
    /// The depth ends inside a CNode level, or the address needs more
    /// levels than the depth allows.
    DepthMismatch {
        /// Address bits still unresolved.
        bits_left: u8,
        /// Bits the next level would consume.
        bits_needed: u8,
    },
}
