//! I/O port capabilities, seL4's way: the root task's IoPortControl
//! capability issues `IoPort { first, last }` capabilities (revocable
//! children of the control capability), and an `IoPort` capability lets its
//! holder read and write the ports in its range through the kernel, which
//! checks the whole access against the range before the machine does it
//! ([`Platform::port_read`], [`Platform::port_write`]).
//!
//! Every port has at most one owner: [`PortAllocation`], a bit per port
//! in the kernel's state, records the ports some issued range covers.
//! Issue refuses a range that overlaps an allocated port (RevokeFirst), and
//! deleting the last capability to a range (a delete, or a revoke of the
//! control capability or of a parent) frees its ports ([`finalise`]).
//! Copies of an `IoPort` capability share its range and its ownership.
//! The kernel reserves the ports it drives itself at boot
//! ([`PortAllocation::reserve`]): no capability can ever cover them.
//!
//! Invocations are split as in [`crate::cap::invocation`]: [`decode`]
//! checks and changes nothing; [`invoke`] acts and cannot fail.

use core::fmt;

use crate::cap::invocation::{Destination, Message};
use crate::cap::{Cap, SlotRef, SlotStore, derivation};
use crate::error::SyscallError;
use crate::platform::{Platform, PortWidth};

/// Invocation labels of IoPortControl and IoPort capabilities.
pub mod label {
    /// IoPortControl: issue a capability to a range of ports.
    pub const IO_PORT_CONTROL_ISSUE: u64 = 64;
    /// IoPort: read 8 bits.
    pub const IO_PORT_IN8: u64 = 65;
    /// IoPort: read 16 bits.
    pub const IO_PORT_IN16: u64 = 66;
    /// IoPort: read 32 bits.
    pub const IO_PORT_IN32: u64 = 67;
    /// IoPort: write 8 bits.
    pub const IO_PORT_OUT8: u64 = 68;
    /// IoPort: write 16 bits.
    pub const IO_PORT_OUT16: u64 = 69;
    /// IoPort: write 32 bits.
    pub const IO_PORT_OUT32: u64 = 70;
}

/// The I/O-port invocations as `docs/abi.md` lists them: label, name,
/// argument words, extra capabilities.
pub const LABELS: [(u64, &str, &[&str], &[&str]); 7] = [
    (
        label::IO_PORT_CONTROL_ISSUE,
        "IoPortControl::Issue",
        &["first", "last", "dest_index", "dest_depth"],
        &["dest_root"],
    ),
    (label::IO_PORT_IN8, "IoPort::In8", &["port"], &[]),
    (label::IO_PORT_IN16, "IoPort::In16", &["port"], &[]),
    (label::IO_PORT_IN32, "IoPort::In32", &["port"], &[]),
    (label::IO_PORT_OUT8, "IoPort::Out8", &["port", "value"], &[]),
    (label::IO_PORT_OUT16, "IoPort::Out16", &["port", "value"], &[]),
    (label::IO_PORT_OUT32, "IoPort::Out32", &["port", "value"], &[]),
];

/// How many I/O ports an x86 CPU has.
pub const PORT_COUNT: usize = 1 << 16;

const WORDS: usize = PORT_COUNT / 64;

/// Which ports belong to an issued range: one bit per port (8 KiB).
#[derive(Clone, PartialEq, Eq)]
pub struct PortAllocation {
    words: [u64; WORDS],
}

impl PortAllocation {
    /// No port allocated.
    #[must_use]
    pub const fn new() -> PortAllocation {
        PortAllocation { words: [0; WORDS] }
    }

    /// Whether `port` belongs to an issued range.
    #[must_use]
    pub fn is_allocated(&self, port: u16) -> bool {
        self.words[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    /// Whether any port of `first..=last` belongs to an issued range.
    #[must_use]
    pub fn any_allocated(&self, first: u16, last: u16) -> bool {
        (first..=last).any(|port| self.is_allocated(port))
    }

    /// How many ports are allocated.
    #[must_use]
    pub fn allocated_count(&self) -> u32 {
        self.words.iter().map(|word| word.count_ones()).sum()
    }

    /// Marks `first..=last` allocated for good: ports the kernel drives
    /// itself (its console, the interrupt controllers), which no `IoPort`
    /// capability may cover. No capability owns them, so none frees them.
    pub fn reserve(&mut self, first: u16, last: u16) {
        self.set(first, last, true);
    }

    fn set(&mut self, first: u16, last: u16, allocated: bool) {
        for port in first..=last {
            let (word, bit) = (usize::from(port) / 64, 1_u64 << (port % 64));
            if allocated {
                self.words[word] |= bit;
            } else {
                self.words[word] &= !bit;
            }
        }
    }
}

impl Default for PortAllocation {
    fn default() -> Self {
        PortAllocation::new()
    }
}

impl fmt::Debug for PortAllocation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("PortAllocation").field("allocated", &self.allocated_count()).finish()
    }
}

/// A decoded I/O-port invocation: everything checked, ready to act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPortInvocation {
    /// Allocate `first..=last` and put an `IoPort` capability to it,
    /// derived from the control capability in `control`, in `destination`.
    Issue {
        /// The IoPortControl capability's slot.
        control: SlotRef,
        /// The empty destination slot.
        destination: SlotRef,
        /// First port.
        first: u16,
        /// Last port (inclusive).
        last: u16,
    },
    /// Read `width` at `port`; the value is the result word.
    In {
        /// The first port of the access.
        port: u16,
        /// Its width.
        width: PortWidth,
    },
    /// Write the low `width` of `value` at `port`.
    Out {
        /// The first port of the access.
        port: u16,
        /// Its width.
        width: PortWidth,
        /// The value (already cut to the width).
        value: u32,
    },
}

fn width_of(label: u64) -> Option<(PortWidth, bool)> {
    match label {
        label::IO_PORT_IN8 => Some((PortWidth::Byte, false)),
        label::IO_PORT_IN16 => Some((PortWidth::Word, false)),
        label::IO_PORT_IN32 => Some((PortWidth::DoubleWord, false)),
        label::IO_PORT_OUT8 => Some((PortWidth::Byte, true)),
        label::IO_PORT_OUT16 => Some((PortWidth::Word, true)),
        label::IO_PORT_OUT32 => Some((PortWidth::DoubleWord, true)),
        _ => None,
    }
}

fn port_number(word: u64) -> Result<u16, SyscallError> {
    u16::try_from(word).map_err(|_| SyscallError::RangeError)
}

/// Checks an invocation of the IoPortControl or IoPort capability in
/// `invoked`. Changes nothing.
///
/// Errors, in the order checked: IllegalOperation (a label the capability
/// does not understand); Issue: TruncatedMessage (fewer than 4 words),
/// RangeError (a depth not 1..64; a port above 0xffff; `first` above
/// `last`), RevokeFirst (a port of the range is already issued), then the
/// destination's TruncatedMessage (no extra capability), InvalidCapability
/// (not a CNode), FailedLookup, DeleteFirst; In: TruncatedMessage (no
/// port word), RangeError (the access, `port..port + width`, not inside
/// the capability's range); Out: TruncatedMessage (fewer than 2 words),
/// RangeError as for In.
///
/// # Errors
///
/// The [`SyscallError`] the caller receives.
pub fn decode(
    store: &impl SlotStore,
    allocation: &PortAllocation,
    invoked: SlotRef,
    message: &Message<'_>,
) -> Result<IoPortInvocation, SyscallError> {
    match store.slot(invoked).cap {
        Cap::IoPortControl => {
            if message.label != label::IO_PORT_CONTROL_ISSUE {
                return Err(SyscallError::IllegalOperation);
            }
            let (first, last) = (message.word(0)?, message.word(1)?);
            let destination = Destination::read(message, 2, 0)?;
            let (first, last) = (port_number(first)?, port_number(last)?);
            if first > last {
                return Err(SyscallError::RangeError);
            }
            if allocation.any_allocated(first, last) {
                return Err(SyscallError::RevokeFirst);
            }
            let destination = destination.resolve(store, message)?;
            Ok(IoPortInvocation::Issue { control: invoked, destination, first, last })
        }
        Cap::IoPort { first, last } => {
            let Some((width, is_out)) = width_of(message.label) else {
                return Err(SyscallError::IllegalOperation);
            };
            let port = message.word(0)?;
            let value = if is_out { Some(message.word(1)?) } else { None };
            let access_last = port.checked_add(u64::from(width.bytes()) - 1).ok_or(SyscallError::RangeError)?;
            if port < u64::from(first) || access_last > u64::from(last) {
                return Err(SyscallError::RangeError);
            }
            let port = port_number(port)?;
            Ok(match value {
                #[allow(clippy::cast_possible_truncation, reason = "masked to the width: the cast keeps those bits")]
                Some(value) => IoPortInvocation::Out { port, width, value: (value as u32) & width.mask() },
                None => IoPortInvocation::In { port, width },
            })
        }
        _ => Err(SyscallError::InvalidCapability),
    }
}

/// Carries out a decoded invocation; returns the result word of an In.
pub fn invoke(
    store: &mut impl SlotStore,
    allocation: &mut PortAllocation,
    platform: &mut impl Platform,
    invocation: IoPortInvocation,
) -> Option<u64> {
    match invocation {
        IoPortInvocation::Issue { control, destination, first, last } => {
            allocation.set(first, last, true);
            derivation::insert_derived(store, control, destination, Cap::IoPort { first, last }, false);
            None
        }
        IoPortInvocation::In { port, width } => Some(u64::from(platform.port_read(port, width))),
        IoPortInvocation::Out { port, width, value } => {
            platform.port_write(port, width, value);
            None
        }
    }
}

/// Releases what the kernel keeps for `cap`, the last capability to its
/// object, as it is deleted: the ports of an `IoPort` range.
pub fn finalise(allocation: &mut PortAllocation, cap: &Cap) {
    if let Cap::IoPort { first, last } = *cap {
        allocation.set(first, last, false);
    }
}
