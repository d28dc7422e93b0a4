//! Interrupt lines, seL4's way: the root task's IrqControl capability
//! creates one `IrqHandler { line }` capability per line (a revocable
//! child of the control capability); the handler's holder binds a
//! notification to the line, and each interrupt on it becomes a signal of
//! that notification with the notification capability's badge.
//!
//! The lines are the legacy 8259 PIC's, 0..[`IRQ_LINES`], except
//! [`CASCADE_LINE`] (the slave PIC's input on the master: never an
//! interrupt of its own). IOAPIC lines 16..23 and MSIs come later.
//!
//! The life of a line ([`IrqTable`] holds its state, hardware-free):
//!
//! 1. masked, no handler; IrqControl::Get issues the one handler
//!    capability (a second Get is RevokeFirst);
//! 2. IrqHandler::SetNotification binds a notification (WRITE needed) and
//!    unmasks the line; IrqHandler::Clear unbinds it and masks the line;
//! 3. when the line fires, the kernel ([`deliver`]) masks it and signals
//!    the notification; the line stays masked until the driver, having
//!    serviced the device, calls IrqHandler::Ack, which unmasks it
//!    (Ack without a bound notification is IllegalOperation);
//! 4. deleting the last handler capability (a delete, or a revoke of the
//!    control capability) unbinds and masks the line and frees it for
//!    another Get ([`finalise`]); deleting the last capability to a bound
//!    notification unbinds it (and masks the line), so that the kernel
//!    never signals an object that is gone.
//!
//! Invocations are split as in [`crate::cap::invocation`]: [`decode`]
//! checks and changes nothing; [`invoke`] acts and cannot fail.

use crate::cap::invocation::{Destination, Message};
use crate::cap::{Badge, Cap, Rights, SlotRef, derivation};
use crate::error::SyscallError;
use crate::ipc;
use crate::memory::PhysAddr;
use crate::platform::Platform;
use crate::store::ObjectStore;
use crate::syscall::Kernel;

/// Invocation labels of IrqControl and IrqHandler capabilities.
pub mod label {
    /// IrqControl: issue the handler capability of a line.
    pub const IRQ_CONTROL_GET: u64 = 80;
    /// IrqHandler: the interrupt was serviced; unmask the line.
    pub const IRQ_HANDLER_ACK: u64 = 81;
    /// IrqHandler: signal this notification on every interrupt.
    pub const IRQ_HANDLER_SET_NOTIFICATION: u64 = 82;
    /// IrqHandler: unbind the notification and mask the line.
    pub const IRQ_HANDLER_CLEAR: u64 = 83;
}

/// The interrupt invocations as `docs/abi.md` lists them: label, name,
/// argument words, extra capabilities.
pub const LABELS: [(u64, &str, &[&str], &[&str]); 4] = [
    (label::IRQ_CONTROL_GET, "IrqControl::Get", &["line", "dest_index", "dest_depth"], &["dest_root"]),
    (label::IRQ_HANDLER_ACK, "IrqHandler::Ack", &[], &[]),
    (label::IRQ_HANDLER_SET_NOTIFICATION, "IrqHandler::SetNotification", &[], &["notification"]),
    (label::IRQ_HANDLER_CLEAR, "IrqHandler::Clear", &[], &[]),
];

/// How many lines the kernel hands out: the two 8259 PICs' 16.
pub const IRQ_LINES: u8 = 16;

/// The master PIC's input from the slave: not a line of its own.
pub const CASCADE_LINE: u8 = 2;

/// One interrupt line's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqLine {
    /// A handler capability exists.
    pub issued: bool,
    /// The bound notification and the badge to signal it with.
    pub notification: Option<(PhysAddr, Badge)>,
    /// The line is masked at the interrupt controller.
    pub masked: bool,
    /// An interrupt was delivered and not acknowledged yet.
    pub pending: bool,
}

impl IrqLine {
    /// A line nobody has: masked.
    pub const FREE: IrqLine = IrqLine { issued: false, notification: None, masked: true, pending: false };
}

/// Every line's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqTable {
    /// Indexed by line.
    pub lines: [IrqLine; IRQ_LINES as usize],
}

impl IrqTable {
    /// Every line free and masked (boot masks both PICs).
    #[must_use]
    pub const fn new() -> IrqTable {
        IrqTable { lines: [IrqLine::FREE; IRQ_LINES as usize] }
    }

    /// A line's state (`None` above the last line).
    #[must_use]
    pub fn line(&self, line: u8) -> Option<&IrqLine> {
        self.lines.get(usize::from(line))
    }

    fn line_mut(&mut self, line: u8) -> Option<&mut IrqLine> {
        self.lines.get_mut(usize::from(line))
    }

    fn set_masked(&mut self, platform: &mut impl Platform, line: u8, masked: bool) {
        if let Some(state) = self.line_mut(line) {
            state.masked = masked;
            platform.irq_set_masked(line, masked);
        }
    }
}

impl Default for IrqTable {
    fn default() -> Self {
        IrqTable::new()
    }
}

/// A decoded interrupt invocation: everything checked, ready to act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqInvocation {
    /// Issue `line`'s handler capability, derived from the control
    /// capability in `control`, into `destination`.
    Get {
        /// The IrqControl capability's slot.
        control: SlotRef,
        /// The empty destination slot.
        destination: SlotRef,
        /// The line.
        line: u8,
    },
    /// Bind the notification and unmask.
    SetNotification {
        /// The line.
        line: u8,
        /// The notification object.
        notification: PhysAddr,
        /// Its capability's badge.
        badge: Badge,
    },
    /// Unbind and mask.
    Clear {
        /// The line.
        line: u8,
    },
    /// Unmask after an interrupt.
    Ack {
        /// The line.
        line: u8,
    },
}

/// Checks an invocation of the IrqControl or IrqHandler capability in
/// `invoked`. Changes nothing.
///
/// Errors, in the order checked: IllegalOperation (a label the capability
/// does not understand); Get: TruncatedMessage (fewer than 3 words),
/// RangeError (a depth not 1..64; a line of 16 or above), IllegalOperation
/// (line 2, the cascade), RevokeFirst (the line's handler exists), then the
/// destination's TruncatedMessage (no extra capability), InvalidCapability
/// (not a CNode), FailedLookup, DeleteFirst; SetNotification:
/// TruncatedMessage (no extra capability), InvalidCapability (not a
/// notification, or one without WRITE); Ack: IllegalOperation (no
/// notification bound).
///
/// # Errors
///
/// The [`SyscallError`] the caller receives.
pub fn decode(
    store: &impl ObjectStore,
    table: &IrqTable,
    invoked: SlotRef,
    message: &Message<'_>,
) -> Result<IrqInvocation, SyscallError> {
    match store.slot(invoked).cap {
        Cap::IrqControl => {
            if message.label != label::IRQ_CONTROL_GET {
                return Err(SyscallError::IllegalOperation);
            }
            let line = message.word(0)?;
            let destination = Destination::read(message, 1, 0)?;
            let line = u8::try_from(line).ok().filter(|line| *line < IRQ_LINES).ok_or(SyscallError::RangeError)?;
            if line == CASCADE_LINE {
                return Err(SyscallError::IllegalOperation);
            }
            if table.line(line).is_some_and(|state| state.issued) {
                return Err(SyscallError::RevokeFirst);
            }
            let destination = destination.resolve(store, message)?;
            Ok(IrqInvocation::Get { control: invoked, destination, line })
        }
        Cap::IrqHandler { line } => match message.label {
            label::IRQ_HANDLER_SET_NOTIFICATION => match message.extra_cap(store, 0)? {
                Cap::Notification { object, badge, rights } if rights.contains(Rights::WRITE) => {
                    Ok(IrqInvocation::SetNotification { line, notification: object, badge })
                }
                _ => Err(SyscallError::InvalidCapability),
            },
            label::IRQ_HANDLER_CLEAR => Ok(IrqInvocation::Clear { line }),
            label::IRQ_HANDLER_ACK => {
                if table.line(line).and_then(|state| state.notification).is_none() {
                    return Err(SyscallError::IllegalOperation);
                }
                Ok(IrqInvocation::Ack { line })
            }
            _ => Err(SyscallError::IllegalOperation),
        },
        _ => Err(SyscallError::InvalidCapability),
    }
}

/// Carries out a decoded invocation.
pub fn invoke(
    store: &mut impl ObjectStore,
    table: &mut IrqTable,
    platform: &mut impl Platform,
    invocation: IrqInvocation,
) {
    match invocation {
        IrqInvocation::Get { control, destination, line } => {
            if let Some(state) = table.line_mut(line) {
                *state = IrqLine { issued: true, ..IrqLine::FREE };
            }
            derivation::insert_derived(store, control, destination, Cap::IrqHandler { line }, false);
        }
        IrqInvocation::SetNotification { line, notification, badge } => {
            if let Some(state) = table.line_mut(line) {
                state.notification = Some((notification, badge));
                state.pending = false;
            }
            table.set_masked(platform, line, false);
        }
        IrqInvocation::Clear { line } => unbind(table, platform, line),
        IrqInvocation::Ack { line } => {
            if let Some(state) = table.line_mut(line) {
                state.pending = false;
            }
            table.set_masked(platform, line, false);
        }
    }
}

fn unbind(table: &mut IrqTable, platform: &mut impl Platform, line: u8) {
    if let Some(state) = table.line_mut(line) {
        state.notification = None;
        state.pending = false;
    }
    table.set_masked(platform, line, true);
}

/// Releases what the kernel keeps for `cap`, the last capability to its
/// object, as it is deleted: a handler's line (unbound, masked, free for
/// another Get), or a notification's bindings.
pub fn finalise(table: &mut IrqTable, platform: &mut impl Platform, cap: &Cap) {
    match *cap {
        Cap::IrqHandler { line } => {
            unbind(table, platform, line);
            if let Some(state) = table.line_mut(line) {
                state.issued = false;
            }
        }
        // Mutant: a notification's last capability goes, its line stays
        // bound to it.
        Cap::Notification { .. } if cfg!(bulkhead_mutant = "notification_delete_keeps_irq_binding") => {}
        Cap::Notification { object, .. } => {
            for line in 0..IRQ_LINES {
                if table.line(line).and_then(|state| state.notification).is_some_and(|(bound, _)| bound == object) {
                    unbind(table, platform, line);
                }
            }
        }
        _ => {}
    }
}

/// What [`deliver`] did with an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The line's notification was signalled; the line is masked until Ack.
    Signalled,
    /// No notification is bound to the line (or there is no such line): it
    /// is masked and the interrupt dropped.
    Unbound,
}

/// Whether some thread waits on a notification that an interrupt line can
/// still signal (bound and unmasked: not waiting for its Ack): then a CPU
/// with nothing to run idles until a device interrupts, instead of ending
/// the run.
pub fn awaited<S: ObjectStore>(kernel: &Kernel<S>) -> bool {
    kernel.irqs.lines.iter().any(|line| {
        !line.masked
            && line
                .notification
                .is_some_and(|(notification, _)| kernel.store.notification(notification).waiters.head.is_some())
    })
}

/// The kernel's entry for an interrupt on `line` (the architecture code
/// calls it, after acknowledging the interrupt at the controller): masks
/// the line and signals its notification with the bound badge. A woken
/// waiter becomes ready; the caller decides whether to switch to it.
pub fn deliver<S: ObjectStore>(kernel: &mut Kernel<S>, platform: &mut impl Platform, line: u8) -> Delivery {
    let Some(state) = kernel.irqs.line(line).copied() else { return Delivery::Unbound };
    kernel.irqs.set_masked(platform, line, true);
    let Some((notification, badge)) = state.notification else { return Delivery::Unbound };
    if let Some(state) = kernel.irqs.line_mut(line) {
        state.pending = true;
    }
    ipc::signal(&mut kernel.store, &mut kernel.scheduler, notification, badge);
    Delivery::Signalled
}
