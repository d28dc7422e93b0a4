//! What an exit handler does besides succeeding: inject an exception into
//! the guest, or stop it. Exceptions become the kernel's event words
//! (`kernel_core::virt::Event`), combined with an event already pending
//! by the CPU's rules for double faults (SDM Vol. 3A, table 6-5).

use kernel_core::virt::{Event, EventKind, has_error_code};

use crate::stop::Stop;

/// An exception to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exception {
    /// The vector.
    pub(crate) vector: u8,
    /// Its error code, for the vectors that push one.
    pub(crate) error_code: Option<u32>,
}

impl Exception {
    /// #UD.
    pub(crate) const INVALID_OPCODE: Exception = Exception { vector: 6, error_code: None };
    /// #BP.
    pub(crate) const BREAKPOINT: Exception = Exception { vector: 3, error_code: None };
    /// #DF, error code 0.
    pub(crate) const DOUBLE_FAULT: Exception = Exception { vector: 8, error_code: Some(0) };
    /// #GP(0).
    pub(crate) const GENERAL_PROTECTION: Exception = Exception { vector: 13, error_code: Some(0) };
    /// #PF's vector.
    pub(crate) const PAGE_FAULT_VECTOR: u8 = 14;

    /// The exception an intercepted-exception exit's qualification names
    /// (vector in bits 0..8, bit 8 an error code in bits 32..64), if the
    /// kernel would accept it as an event.
    pub(crate) fn from_qualification(qualification: u64) -> Option<Exception> {
        let vector = u8::try_from(qualification & 0xff).ok()?;
        let error_code = u32::try_from(qualification >> 32).ok()?;
        // The kernel's decoders set bit 8 exactly for the vectors that push
        // an error code; the vector decides.
        let exception = Exception { vector, error_code: has_error_code(vector).then_some(error_code) };
        exception.event().map(|_| exception)
    }

    /// Its event, if the kernel would accept it.
    pub(crate) fn event(self) -> Option<Event> {
        let event = Event { vector: self.vector, kind: EventKind::Exception, error_code: self.error_code };
        Event::from_word(event.to_word()).ok().flatten()
    }
}

/// An exit handler's result other than success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Inject this exception; RIP stays at the faulting instruction.
    Inject(Exception),
    /// Stop the guest.
    Stop(Stop),
}

impl From<Stop> for Fault {
    fn from(stop: Stop) -> Fault {
        Fault::Stop(stop)
    }
}

/// How an exception class combines with another (SDM Vol. 3A, table 6-4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

fn class(event: Event) -> Class {
    match (event.kind, event.vector) {
        (EventKind::Exception, 0 | 10..=13) => Class::Contributory,
        (EventKind::Exception, 14) => Class::PageFault,
        (EventKind::Exception, 8) => Class::DoubleFault,
        (EventKind::Exception | EventKind::External | EventKind::Nmi | EventKind::Software, _) => Class::Benign,
    }
}

/// The event to deliver when `new` arises while `pending` was being
/// delivered: #DF for two contributory exceptions or a page fault then
/// a contributory one or a page fault, a triple fault after #DF, else
/// `new` alone. A pending exception or software interrupt is dropped then
/// (re-executing the instruction raises it again); a pending external
/// interrupt or NMI cannot wait (one event per entry), so the guest stops.
///
/// # Errors
///
/// [`Stop::TripleFault`] or [`Stop::UndeliverableEvent`].
pub(crate) fn combine(pending: Event, new: Event) -> Result<Event, Stop> {
    let serious = |class: Class| matches!(class, Class::Contributory | Class::PageFault);
    match (class(pending), class(new)) {
        (Class::DoubleFault, second) if serious(second) => Err(Stop::TripleFault),
        (Class::Contributory, Class::Contributory) | (Class::PageFault, Class::Contributory | Class::PageFault) => {
            Exception::DOUBLE_FAULT.event().ok_or(Stop::TripleFault)
        }
        _ if matches!(pending.kind, EventKind::External | EventKind::Nmi) => {
            Err(Stop::UndeliverableEvent { event: pending.to_word(), other: new.to_word() })
        }
        _ => Ok(new),
    }
}

#[cfg(test)]
mod tests;
