//! The narrow interface between the hardware-free core and the machine:
//! the few things an invocation must make the hardware do (invalidate
//! translations after an unmap, and later port I/O and interrupt-line
//! masks). The kernel implements it with real instructions; the host tests
//! and the invariant harness use [`RecordingPlatform`], which only records.

use crate::ipc::ThreadId;
use crate::memory::PhysAddr;

/// What the core asks of the machine. Every method acts at once and cannot
/// fail: the core has checked the request before calling.
pub trait Platform {
    /// The mapping of `virtual_address` in the address space whose root
    /// (PML4) is `vspace` changed or went away: stale translations of it
    /// must not be used again.
    fn invalidate_page(&mut self, vspace: PhysAddr, virtual_address: u64);
    /// A paging structure of the address space rooted at `vspace` was
    /// unlinked: every translation of that address space must go.
    fn invalidate_vspace(&mut self, vspace: PhysAddr);
    /// The address space rooted at `vspace` is gone (its PML4 may be
    /// retyped): the CPU must not keep using it, even as the current one.
    fn vspace_deleted(&mut self, vspace: PhysAddr);
    /// The last capability to `thread`'s TCB is being deleted (the thread
    /// has stopped): whatever the machine layer keeps for it must go, since
    /// a new TCB at the same address is a different thread.
    fn thread_deleted(&mut self, thread: ThreadId);
}

/// One request the core made of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformEvent {
    /// [`Platform::invalidate_page`].
    InvalidatePage {
        /// The address space.
        vspace: PhysAddr,
        /// The page.
        virtual_address: u64,
    },
    /// [`Platform::invalidate_vspace`].
    InvalidateVSpace {
        /// The address space.
        vspace: PhysAddr,
    },
    /// [`Platform::vspace_deleted`].
    VSpaceDeleted {
        /// The address space.
        vspace: PhysAddr,
    },
    /// [`Platform::thread_deleted`].
    ThreadDeleted {
        /// The thread.
        thread: ThreadId,
    },
}

/// A platform that records what it is asked to do, for host tests and the
/// invariant harness. It keeps the last [`RecordingPlatform::CAPACITY`]
/// events; older ones are dropped (and counted).
#[derive(Clone, Debug, Default)]
pub struct RecordingPlatform {
    /// The most recent requests, oldest first.
    pub events: heapless::Deque<PlatformEvent, { RecordingPlatform::CAPACITY }>,
    /// How many requests fell out of `events`.
    pub dropped: u64,
}

impl RecordingPlatform {
    /// How many events it keeps.
    pub const CAPACITY: usize = 64;

    /// A platform with no events yet.
    #[must_use]
    pub fn new() -> RecordingPlatform {
        RecordingPlatform::default()
    }

    fn record(&mut self, event: PlatformEvent) {
        if self.events.is_full() {
            self.events.pop_front();
            self.dropped += 1;
        }
        // Room was made above.
        let _ = self.events.push_back(event);
    }

    /// Whether `event` is among the kept events.
    #[must_use]
    pub fn saw(&self, event: &PlatformEvent) -> bool {
        self.events.iter().any(|kept| kept == event)
    }

    /// Forgets every event.
    pub fn clear(&mut self) {
        self.events.clear();
        self.dropped = 0;
    }
}

impl Platform for RecordingPlatform {
    fn invalidate_page(&mut self, vspace: PhysAddr, virtual_address: u64) {
        self.record(PlatformEvent::InvalidatePage { vspace, virtual_address });
    }

    fn invalidate_vspace(&mut self, vspace: PhysAddr) {
        self.record(PlatformEvent::InvalidateVSpace { vspace });
    }

    fn vspace_deleted(&mut self, vspace: PhysAddr) {
        self.record(PlatformEvent::VSpaceDeleted { vspace });
    }

    fn thread_deleted(&mut self, thread: ThreadId) {
        self.record(PlatformEvent::ThreadDeleted { thread });
    }
}
