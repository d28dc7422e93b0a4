//! The syntax tree. Every node carries the [`Span`] it was written at, so
//! that the validator can point at the line that causes a problem.

use crate::diagnostic::Span;

/// A name as written (a reference or a definition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// The name.
    pub text: String,
    /// Where it is written.
    pub span: Span,
}

/// A number and where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it is written.
    pub span: Span,
}

/// Memory access rights of a mapping: a set of `r`, `w`, `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemoryRights {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl MemoryRights {
    /// Whether every right of `self` is also in `other`.
    pub fn within(self, other: Self) -> bool {
        (!self.read || other.read) && (!self.write || other.write) && (!self.execute || other.execute)
    }
}

impl std::fmt::Display for MemoryRights {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let letters: String = [(self.read, 'r'), (self.write, 'w'), (self.execute, 'x')]
            .iter()
            .filter(|(held, _)| *held)
            .map(|(_, letter)| *letter)
            .collect();
        formatter.write_str(&letters)
    }
}

/// Capability rights of an endpoint or notification (docs/abi.md,
/// "Conventions": READ, WRITE, GRANT, GRANT_REPLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CapRights {
    /// READ: receive or wait.
    pub read: bool,
    /// WRITE: send, call or signal.
    pub write: bool,
    /// GRANT: pass capabilities in messages.
    pub grant: bool,
    /// GRANT_REPLY: pass a reply capability (call).
    pub grant_reply: bool,
}

impl CapRights {
    /// All four rights.
    pub const ALL: Self = Self { read: true, write: true, grant: true, grant_reply: true };

    /// Whether every right of `self` is also in `other`.
    pub fn within(self, other: Self) -> bool {
        (!self.read || other.read)
            && (!self.write || other.write)
            && (!self.grant || other.grant)
            && (!self.grant_reply || other.grant_reply)
    }
}

impl std::fmt::Display for CapRights {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<&str> =
            [(self.read, "read"), (self.write, "write"), (self.grant, "grant"), (self.grant_reply, "grant_reply")]
                .iter()
                .filter(|(held, _)| *held)
                .map(|(_, word)| *word)
                .collect();
        formatter.write_str(&words.join(" "))
    }
}

/// A whole manifest: its items in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The top-level items.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// `pd NAME { ... }`
    ProtectionDomain(ProtectionDomain),
    /// `region NAME { ... }`
    Region(Region),
    /// `channel NAME { ... }`
    Channel(Channel),
    /// `device NAME { ... }`
    Device(Device),
    /// `guest NAME { ... }`
    Guest(Box<Guest>),
    /// `flow A -> B` or `flow A <-> B`
    Flow(Flow),
}

impl Item {
    /// The item's name (a flow has none).
    pub fn name(&self) -> Option<&Name> {
        match self {
            Self::ProtectionDomain(item) => Some(&item.name),
            Self::Region(item) => Some(&item.name),
            Self::Channel(item) => Some(&item.name),
            Self::Device(item) => Some(&item.name),
            Self::Guest(item) => Some(&item.name),
            Self::Flow(_) => None,
        }
    }

    /// What kind of item this is, in words.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ProtectionDomain(_) => "protection domain",
            Self::Region(_) => "region",
            Self::Channel(_) => "channel",
            Self::Device(_) => "device",
            Self::Guest(_) => "guest",
            Self::Flow(_) => "flow",
        }
    }
}

/// A protection domain: one program with its scheduling parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectionDomain {
    /// Its name.
    pub name: Name,
    /// `image "file"`: the program image.
    pub image: Option<Located<String>>,
    /// `priority N` (0..=255).
    pub priority: Option<Located<u64>>,
    /// `budget T` in microseconds.
    pub budget: Option<Located<u64>>,
    /// `period T` in microseconds.
    pub period: Option<Located<u64>>,
    /// `core N`.
    pub core: Option<Located<u64>>,
    /// `stack SIZE` in bytes.
    pub stack: Option<Located<u64>>,
    /// `heap SIZE` in bytes.
    pub heap: Option<Located<u64>>,
    /// `passive`: a Call delivered to it runs on the caller's scheduling
    /// context until the reply (`docs/abi.md`, "Scheduling-context
    /// donation"); its own budget pays for the rest.
    pub passive: Option<Located<()>>,
}

/// A memory region and where it is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its name.
    pub name: Name,
    /// `size SIZE` in bytes.
    pub size: Option<Located<u64>>,
    /// `page SIZE`: 4KiB (default), 2MiB or 1GiB.
    pub page_size: Option<Located<u64>>,
    /// `physical ADDRESS`: device memory at a fixed physical address.
    pub physical: Option<Located<u64>>,
    /// `rights RIGHTS`: the most any mapping may have (default `rw`).
    pub rights: Option<Located<MemoryRights>>,
    /// `shared`: more than one owner is intended.
    pub shared: Option<Span>,
    /// `contents "FILE"`: a guest file (a disk image the CLI provides)
    /// the loader copies into the region's first bytes.
    pub contents: Option<Located<String>>,
    /// `map PD at ADDRESS RIGHTS` lines.
    pub mappings: Vec<Mapping>,
}

/// `map PD at ADDRESS RIGHTS`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The protection domain that maps the region.
    pub domain: Name,
    /// The virtual address.
    pub address: Located<u64>,
    /// The mapping's rights.
    pub rights: Located<MemoryRights>,
    /// Where the line starts.
    pub span: Span,
}

/// What a channel connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// `call A -> B`: A calls B on the endpoint and B replies.
    Call,
    /// `send A -> B`: A sends one-way messages to B.
    Send,
    /// `notify A -> B`: A signals B's notification.
    Notify,
    /// `faults A -> B`: A's faults go to B over the endpoint as calls made
    /// on A's behalf; B's reply resumes A.
    Faults,
}

impl ConnectionKind {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Send => "send",
            Self::Notify => "notify",
            Self::Faults => "faults",
        }
    }
}

/// An endpoint (and notification) with the PDs connected through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Its name.
    pub name: Name,
    /// `rights ...`: the most any sender's capability may have (default all).
    pub rights: Option<Located<CapRights>>,
    /// The `call`, `send` and `notify` lines.
    pub connections: Vec<Connection>,
}

/// `call|send|notify A -> B [badge N] [rights ...]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// What the connection does.
    pub kind: ConnectionKind,
    /// The sender.
    pub from: Name,
    /// The receiver.
    pub to: Name,
    /// The badge of the sender's capability.
    pub badge: Option<Located<u64>>,
    /// The sender's capability rights (default write, plus grant_reply for
    /// a call).
    pub rights: Option<Located<CapRights>>,
    /// Where the line starts.
    pub span: Span,
}

/// A device and the resources it brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its name.
    pub name: Name,
    /// `owner PD` lines.
    pub owners: Vec<Name>,
    /// `irq N` lines.
    pub irqs: Vec<Located<u64>>,
    /// `ioports FIRST..LAST` lines (inclusive).
    pub io_ports: Vec<Located<(u64, u64)>>,
    /// `mmio ADDRESS size SIZE` lines.
    pub mmio: Vec<Located<(u64, u64)>>,
    /// `pci "BB:DD.F"` lines: bus, device, function.
    pub pci: Vec<Located<(u64, u64, u64)>>,
    /// `shared`: more than one owner is intended.
    pub shared: Option<Span>,
}

/// A virtual machine and the PDs that serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// Its name.
    pub name: Name,
    /// `memory REGION` lines.
    pub memory: Vec<Name>,
    /// `vcpus N`.
    pub vcpus: Option<Located<u64>>,
    /// `vmm PD`.
    pub vmm: Option<Name>,
    /// `vmx PD`.
    pub vmx: Option<Name>,
    /// `disk NAME via CHANNEL` lines: disks a server behind the channel
    /// holds.
    pub disks: Vec<(Name, Name)>,
    /// `disk NAME from REGION` lines: disks whose bytes are a region the
    /// guest's VMX (or its VMM, when it has none) maps and serves.
    pub region_disks: Vec<(Name, Name)>,
    /// `nic NAME via CHANNEL` lines.
    pub nics: Vec<(Name, Name)>,
    /// `expose REGION to PD` lines: mappings of guest memory outside the
    /// VMM and VMX that are intended.
    pub exposures: Vec<(Name, Name)>,
    /// `image "NAME"`: the program the loader puts into the guest's
    /// memory.
    pub image: Option<Located<String>>,
    /// `kernel "NAME"`: a Linux bzImage (a guest image the CLI provides)
    /// the loader stages into the guest's memory for the VMM to boot.
    pub kernel: Option<Located<String>>,
    /// `initrd "NAME"`: the initramfs staged with the kernel.
    pub initrd: Option<Located<String>>,
    /// `cmdline "TEXT"`: the kernel's command line.
    pub cmdline: Option<Located<String>>,
    /// `debug DEVICE`: the serial port (a device of eight I/O ports its
    /// VMM owns) on which the VMM serves gdb for this guest.
    pub debug: Option<Name>,
}

/// `flow A -> B` (or `<->` for both directions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The source.
    pub from: Name,
    /// The destination.
    pub to: Name,
    /// Whether `<->` was written.
    pub both_ways: bool,
    /// Where the line starts.
    pub span: Span,
}
