//! The kernel's error codes as ring 3 sees them.

use core::fmt;

use kernel_core::error::SyscallError;

/// Why the kernel refused a system call or invocation. The same numbers
/// as the kernel's `SyscallError`; a test checks every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// An argument is outside its domain.
    InvalidArgument = 1,
    /// A capability argument has the wrong type or lacks a right.
    InvalidCapability = 2,
    /// The operation is not allowed on this capability.
    IllegalOperation = 3,
    /// A number is outside its allowed range.
    RangeError = 4,
    /// An address or size is misaligned.
    AlignmentError = 5,
    /// A capability address did not resolve.
    FailedLookup = 6,
    /// The message is too short.
    TruncatedMessage = 7,
    /// The destination slot is occupied.
    DeleteFirst = 8,
    /// The capability still has derived children.
    RevokeFirst = 9,
    /// The untyped has too little free memory.
    NotEnoughMemory = 10,
    /// Not the kernel's: the runtime could not pass the message (more
    /// than four words or any capability, but no IPC buffer to put them
    /// in; more than three capabilities).
    NoIpcBuffer = 0x1_0000,
    /// A code this runtime does not know (a newer kernel).
    Unknown = u64::MAX,
}

/// `Ok` or the error, from a result code (a reply's label).
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The error for a non-zero result code.
    #[must_use]
    pub fn from_code(code: u64) -> Error {
        match code {
            1 => Error::InvalidArgument,
            2 => Error::InvalidCapability,
            3 => Error::IllegalOperation,
            4 => Error::RangeError,
            5 => Error::AlignmentError,
            6 => Error::FailedLookup,
            7 => Error::TruncatedMessage,
            8 => Error::DeleteFirst,
            9 => Error::RevokeFirst,
            10 => Error::NotEnoughMemory,
            _ => Error::Unknown,
        }
    }

    /// `Ok(())` for code 0, the error otherwise.
    ///
    /// # Errors
    ///
    /// The error the code names.
    pub fn check(code: u64) -> Result<()> {
        if code == 0 { Ok(()) } else { Err(Error::from_code(code)) }
    }
}

impl From<SyscallError> for Error {
    fn from(error: SyscallError) -> Error {
        Error::from_code(error.code())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unknown => formatter.write_str("unknown kernel error"),
            Error::NoIpcBuffer => formatter.write_str("the message needs an IPC buffer this thread has not got"),
            // The kernel's text for the same code.
            known => {
                let code = *known as u64;
                match SyscallError::ALL.iter().find(|error| error.code() == code) {
                    Some(error) => write!(formatter, "{error}"),
                    None => formatter.write_str("unknown kernel error"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_error_has_its_twin() {
        for error in SyscallError::ALL {
            if error == SyscallError::Preempted {
                // Internal: the kernel restarts the call, user space never sees it.
                continue;
            }
            let mirrored = Error::from(error);
            assert_eq!(mirrored as u64, error.code(), "{error:?}");
            assert_eq!(format!("{mirrored:?}"), format!("{error:?}"));
            assert_eq!(mirrored.to_string(), error.to_string());
        }
        assert_eq!(Error::from_code(11), Error::Unknown, "Preempted never reaches user space");
        assert_eq!(Error::from_code(12345), Error::Unknown);
        assert_eq!(
            Error::from_code(Error::NoIpcBuffer as u64),
            Error::Unknown,
            "local errors never come from the kernel"
        );
        assert_eq!(Error::check(0), Ok(()));
        assert_eq!(Error::check(6), Err(Error::FailedLookup));
    }
}
