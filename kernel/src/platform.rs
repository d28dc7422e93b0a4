//! The narrow interface between the hardware-free core and the machine:
//! the few things an invocation must make the hardware do (invalidate
//! translations after an unmap, port I/O, interrupt-line masks). The kernel implements it with real instructions; the host tests
//! and the invariant harness use [`RecordingPlatform`], which only records.

use crate::ipc::ThreadId;
use crate::memory::PhysAddr;
use crate::vcpu::{GuestEntry, VCpu};
use crate::virt::{Exit, ExitKind};

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
    /// The last capability to the VCpu at `vcpu` is being deleted: the
    /// CPU must not keep its control block cached (`vtx`: VMCLEAR), since
    /// the memory may be retyped.
    fn vcpu_deleted(&mut self, vcpu: PhysAddr);
    /// Reads `width` from I/O port `port` (zero-extended).
    fn port_read(&mut self, port: u16, width: PortWidth) -> u32;
    /// Writes the low `width` of `value` to I/O port `port`.
    fn port_write(&mut self, port: u16, width: PortWidth, value: u32);
    /// Masks (`true`) or unmasks interrupt line `line` at the interrupt
    /// controller. The core only asks for lines below
    /// [`crate::irq::IRQ_LINES`].
    fn irq_set_masked(&mut self, line: u8, masked: bool);
    /// Runs the guest `entry` names until it exits: loads the fields
    /// `record` marks dirty (and clears the marks), enters with its
    /// registers (asking for an interrupt-window exit if
    /// `record.controls` says so, for this run only), and on the way out
    /// stores the guest's registers and fields back into `record`. A host
    /// interrupt ends the run: before `record.controls.deadline` that is
    /// `None` (the kernel takes it, then the run goes on); at or after it,
    /// an exit of kind `ExitKind::Deadline` (`crate::vcpu::deadline_exit`).
    /// The machine makes sure a host interrupt comes by the deadline. Any
    /// other exit is returned as it is. The core checked `entry` (a bound VCpu, a
    /// live GuestSpace of the machine's format) and every field.
    fn run_guest(&mut self, entry: &GuestEntry, record: &mut VCpu) -> Option<Exit>;
    /// Copies the fields `record.stale` marks from the VCpu `vcpu`'s
    /// hardware page into `record` and clears the marks (a backend stores
    /// only the fields a VMEnter reply carries at each exit).
    fn sync_guest_state(&mut self, vcpu: PhysAddr, record: &mut VCpu);
}

/// The width of one port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortWidth {
    /// 8 bits (IN/OUT with AL).
    Byte,
    /// 16 bits (AX).
    Word,
    /// 32 bits (EAX).
    DoubleWord,
}

impl PortWidth {
    /// How many consecutive ports the access covers.
    #[must_use]
    pub const fn bytes(self) -> u16 {
        match self {
            PortWidth::Byte => 1,
            PortWidth::Word => 2,
            PortWidth::DoubleWord => 4,
        }
    }

    /// The bits of a value this wide.
    #[must_use]
    pub const fn mask(self) -> u32 {
        match self {
            PortWidth::Byte => 0xff,
            PortWidth::Word => 0xffff,
            PortWidth::DoubleWord => u32::MAX,
        }
    }
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
    /// [`Platform::vcpu_deleted`].
    VCpuDeleted {
        /// The VCpu.
        vcpu: PhysAddr,
    },
    /// [`Platform::run_guest`].
    GuestRun {
        /// The VCpu.
        vcpu: PhysAddr,
    },
    /// [`Platform::port_read`].
    PortRead {
        /// The port.
        port: u16,
        /// The access width.
        width: PortWidth,
    },
    /// [`Platform::port_write`].
    PortWrite {
        /// The port.
        port: u16,
        /// The access width.
        width: PortWidth,
        /// The value written.
        value: u32,
    },
    /// [`Platform::irq_set_masked`].
    IrqMasked {
        /// The line.
        line: u8,
        /// Masked (`true`) or unmasked.
        masked: bool,
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
    /// What every port read returns (masked to the access width).
    pub port_input: u32,
    /// How many of the next guest runs a host interrupt ends (each then
    /// counts down); after them every run exits with
    /// [`RecordingPlatform::GUEST_EXIT`].
    pub host_interrupts: u32,
    /// The time at which those host interrupts arrive: one at or after
    /// the entry's deadline ends the run with `ExitKind::Deadline`.
    pub clock: u64,
    /// The last guest entry asked for, and the controls it ran with.
    pub last_entry: Option<(GuestEntry, crate::vcpu::EnterControls)>,
}

impl RecordingPlatform {
    /// How many events it keeps.
    pub const CAPACITY: usize = 64;
    /// The exit every recorded guest run ends with: the guest halts at
    /// once (HLT, one byte), its state as it was entered but for the
    /// pending event, which the entry delivered.
    pub const GUEST_EXIT: Exit =
        Exit { kind: ExitKind::Hlt, raw_reason: 0, qualification: 0, guest_physical: 0, instruction_length: 1 };

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

    fn vcpu_deleted(&mut self, vcpu: PhysAddr) {
        self.record(PlatformEvent::VCpuDeleted { vcpu });
    }

    fn port_read(&mut self, port: u16, width: PortWidth) -> u32 {
        self.record(PlatformEvent::PortRead { port, width });
        self.port_input & width.mask()
    }

    fn port_write(&mut self, port: u16, width: PortWidth, value: u32) {
        self.record(PlatformEvent::PortWrite { port, width, value });
    }

    fn irq_set_masked(&mut self, line: u8, masked: bool) {
        self.record(PlatformEvent::IrqMasked { line, masked });
    }

    fn run_guest(&mut self, entry: &GuestEntry, record: &mut VCpu) -> Option<Exit> {
        self.record(PlatformEvent::GuestRun { vcpu: entry.vcpu });
        self.last_entry = Some((*entry, record.controls));
        // The hardware loaded every field.
        record.dirty = 0;
        if self.host_interrupts > 0 {
            self.host_interrupts -= 1;
            return record.controls.deadline_passed(self.clock).then(|| crate::vcpu::deadline_exit(0));
        }
        record.state.0[usize::from(crate::vcpu::GuestField::PENDING_EVENT.number())] = 0;
        Some(RecordingPlatform::GUEST_EXIT)
    }

    fn sync_guest_state(&mut self, _vcpu: PhysAddr, record: &mut VCpu) {
        // The recorded guest changes no field: the record is current.
        record.stale = 0;
    }
}
