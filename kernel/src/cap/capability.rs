//! Capabilities: what a slot holds, and the rules for deriving one from
//! another.

use super::object::{ObjectKind, SLOT_BITS};
use super::rights::Rights;
use crate::error::SyscallError;
use crate::memory::PhysAddr;

/// A badge: the word an endpoint or notification capability stamps on what
/// is sent through it, so that a server can tell its clients apart. Zero
/// means unbadged.
pub type Badge = u64;

/// The size of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSize {
    /// 4 KiB.
    Small,
    /// 2 MiB.
    Large,
    /// 1 GiB.
    Huge,
}

impl FrameSize {
    /// log2 of the size in bytes.
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            FrameSize::Small => 12,
            FrameSize::Large => 21,
            FrameSize::Huge => 30,
        }
    }
}

/// The four levels of x86-64 paging structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageTableLevel {
    /// Maps 4 KiB pages.
    PageTable,
    /// Maps page tables or 2 MiB pages.
    PageDirectory,
    /// Maps page directories or 1 GiB pages.
    PageDirectoryPointerTable,
    /// The root of a VSpace.
    Pml4,
    /// The root of a guest's physical address space (an NPT or EPT PML4:
    /// the structures below it take its format).
    GuestSpace,
}

/// An address-space identifier: which VSpace a mapping was made in. Pool
/// `asid >> 9`, entry `asid & 511` (see `crate::vspace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Asid(pub u16);

/// Where a frame or paging structure is mapped: the VSpace's ASID and the
/// first virtual address it covers. For a PML4 (a VSpace root) the ASID
/// it was assigned and address 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedAt {
    /// The address space.
    pub asid: Asid,
    /// The first virtual address covered.
    pub address: u64,
}

/// A capability. Objects are named by their physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// An empty slot.
    Null,
    /// Untyped memory: `[base, base + 2^size_bits)`, of which the first
    /// `free_offset` bytes hold objects.
    Untyped {
        /// Start of the region.
        base: PhysAddr,
        /// log2 of its size.
        size_bits: u8,
        /// Bytes from `base` already handed out (the watermark).
        free_offset: u64,
        /// Device memory (MMIO): only frames and untypeds may be made of it.
        is_device: bool,
    },
    /// A CNode of `2^radix_bits` slots; resolving an address through it
    /// first matches `guard_bits` bits against `guard`.
    CNode {
        /// Its slots' memory.
        base: PhysAddr,
        /// log2 of its slot count.
        radix_bits: u8,
        /// The guard value.
        guard: u64,
        /// The guard's width.
        guard_bits: u8,
    },
    /// A thread.
    Tcb {
        /// The object.
        object: PhysAddr,
    },
    /// A scheduling context.
    SchedContext {
        /// The object.
        object: PhysAddr,
        /// log2 of its size.
        size_bits: u8,
    },
    /// An IPC endpoint.
    Endpoint {
        /// The object.
        object: PhysAddr,
        /// Stamped on messages sent through this capability.
        badge: Badge,
        /// READ receives, WRITE sends, GRANT and GRANT_REPLY transfer caps.
        rights: Rights,
    },
    /// A notification.
    Notification {
        /// The object.
        object: PhysAddr,
        /// OR-ed into the notification word by a signal through this capability.
        badge: Badge,
        /// READ waits, WRITE signals.
        rights: Rights,
    },
    /// A reply object.
    Reply {
        /// The object.
        object: PhysAddr,
    },
    /// A physical frame.
    Frame {
        /// Its first byte.
        base: PhysAddr,
        /// 4 KiB, 2 MiB or 1 GiB.
        size: FrameSize,
        /// READ maps readable, WRITE writable.
        rights: Rights,
        /// Device memory (MMIO).
        is_device: bool,
        /// Where this capability mapped the frame (each copy of a frame
        /// capability maps it at most once).
        mapping: Option<MappedAt>,
    },
    /// A paging structure of a VSpace.
    PageTable {
        /// The table.
        object: PhysAddr,
        /// Its level.
        level: PageTableLevel,
        /// Where it is linked into a VSpace; for a PML4, its ASID.
        mapping: Option<MappedAt>,
    },
    /// The authority to make ASID pools.
    AsidControl,
    /// A virtual CPU (`crate::vcpu`).
    VCpu {
        /// The object (its hardware page; the kernel's page follows).
        object: PhysAddr,
    },
    /// A pool of 512 ASIDs, to assign to VSpaces.
    AsidPool {
        /// The pool's table (one 4 KiB page).
        object: PhysAddr,
        /// Its first ASID.
        first: Asid,
    },
    /// The authority to create IRQ handler capabilities.
    IrqControl,
    /// The authority over one interrupt line.
    IrqHandler {
        /// The line (legacy PIC and IOAPIC lines).
        line: u8,
    },
    /// The authority to create I/O port capabilities.
    IoPortControl,
    /// The authority to give scheduling contexts budgets: CPU time.
    SchedControl,
    /// The authority over the I/O ports `first..=last`.
    IoPort {
        /// First port.
        first: u16,
        /// Last port (inclusive).
        last: u16,
    },
}

impl Cap {
    /// The capability for a freshly retyped object of `kind` at `base`, of
    /// `2^size_bits` bytes (`user_size_bits` is the retype argument).
    #[must_use]
    pub fn for_new_object(kind: ObjectKind, base: PhysAddr, size_bits: u8, is_device: bool) -> Cap {
        match kind {
            ObjectKind::Untyped => Cap::Untyped { base, size_bits, free_offset: 0, is_device },
            ObjectKind::CNode => Cap::CNode { base, radix_bits: size_bits - SLOT_BITS, guard: 0, guard_bits: 0 },
            ObjectKind::Tcb => Cap::Tcb { object: base },
            ObjectKind::SchedContext => Cap::SchedContext { object: base, size_bits },
            ObjectKind::Endpoint => Cap::Endpoint { object: base, badge: 0, rights: Rights::ALL },
            ObjectKind::Notification => Cap::Notification { object: base, badge: 0, rights: Rights::ALL },
            ObjectKind::Reply => Cap::Reply { object: base },
            ObjectKind::Frame4K => Cap::frame(base, FrameSize::Small, is_device),
            ObjectKind::Frame2M => Cap::frame(base, FrameSize::Large, is_device),
            ObjectKind::Frame1G => Cap::frame(base, FrameSize::Huge, is_device),
            ObjectKind::PageTable => Cap::table(base, PageTableLevel::PageTable),
            ObjectKind::PageDirectory => Cap::table(base, PageTableLevel::PageDirectory),
            ObjectKind::PageDirectoryPointerTable => Cap::table(base, PageTableLevel::PageDirectoryPointerTable),
            ObjectKind::Pml4 => Cap::table(base, PageTableLevel::Pml4),
            ObjectKind::GuestSpace => Cap::table(base, PageTableLevel::GuestSpace),
            ObjectKind::VCpu => Cap::VCpu { object: base },
        }
    }

    const fn frame(base: PhysAddr, size: FrameSize, is_device: bool) -> Cap {
        Cap::Frame { base, size, rights: Rights::ALL, is_device, mapping: None }
    }

    const fn table(object: PhysAddr, level: PageTableLevel) -> Cap {
        Cap::PageTable { object, level, mapping: None }
    }

    /// Whether the slot is empty.
    #[must_use]
    pub const fn is_null(&self) -> bool {
        matches!(self, Cap::Null)
    }

    /// The physical memory the capability's object occupies, as (start,
    /// log2 size), for capabilities to memory objects.
    #[must_use]
    pub fn memory_region(&self) -> Option<(PhysAddr, u8)> {
        match *self {
            Cap::Untyped { base, size_bits, .. } => Some((base, size_bits)),
            Cap::CNode { base, radix_bits, .. } => Some((base, radix_bits + SLOT_BITS)),
            Cap::Tcb { object } => Some((object, super::object::TCB_BITS)),
            Cap::SchedContext { object, size_bits } => Some((object, size_bits)),
            Cap::Endpoint { object, .. } | Cap::Notification { object, .. } => Some((object, 6)),
            Cap::Reply { object } => Some((object, 5)),
            Cap::Frame { base, size, .. } => Some((base, size.bits())),
            Cap::PageTable { object, .. } | Cap::AsidPool { object, .. } => Some((object, 12)),
            Cap::VCpu { object } => Some((object, crate::vcpu::VCPU_BITS)),
            Cap::Null
            | Cap::AsidControl
            | Cap::IrqControl
            | Cap::IrqHandler { .. }
            | Cap::IoPortControl
            | Cap::IoPort { .. }
            | Cap::SchedControl => None,
        }
    }

    /// Whether `other` names the same object as `self` or, for an Untyped,
    /// memory inside it (seL4's `sameRegionAs`): the test for derivation.
    #[must_use]
    pub fn same_region_as(&self, other: &Cap) -> bool {
        match (self, other) {
            (Cap::Untyped { .. }, _) => match (self.memory_region(), other.memory_region()) {
                (Some((base, bits)), Some((other_base, other_bits))) => {
                    let end = u128::from(base.as_u64()) + (1_u128 << bits);
                    let other_end = u128::from(other_base.as_u64()) + (1_u128 << other_bits);
                    base <= other_base && other_end <= end
                }
                _ => false,
            },
            (Cap::IrqControl, Cap::IrqControl | Cap::IrqHandler { .. }) => true,
            (Cap::IoPortControl, Cap::IoPortControl | Cap::IoPort { .. }) => true,
            (Cap::SchedControl, Cap::SchedControl) | (Cap::AsidControl, Cap::AsidControl) => true,
            (Cap::IrqHandler { line }, Cap::IrqHandler { line: other }) => line == other,
            (Cap::IoPort { first, last }, Cap::IoPort { first: other_first, last: other_last }) => {
                first == other_first && last == other_last
            }
            (Cap::CNode { base, radix_bits, .. }, Cap::CNode { base: other_base, radix_bits: other_radix, .. }) => {
                base == other_base && radix_bits == other_radix
            }
            (Cap::Frame { base, size, .. }, Cap::Frame { base: other_base, size: other_size, .. }) => {
                base == other_base && size == other_size
            }
            (Cap::Tcb { object }, Cap::Tcb { object: other })
            | (Cap::Endpoint { object, .. }, Cap::Endpoint { object: other, .. })
            | (Cap::Notification { object, .. }, Cap::Notification { object: other, .. })
            | (Cap::Reply { object }, Cap::Reply { object: other })
            | (Cap::SchedContext { object, .. }, Cap::SchedContext { object: other, .. })
            | (Cap::PageTable { object, .. }, Cap::PageTable { object: other, .. })
            | (Cap::AsidPool { object, .. }, Cap::AsidPool { object: other, .. })
            | (Cap::VCpu { object }, Cap::VCpu { object: other }) => object == other,
            _ => false,
        }
    }

    /// Whether `other` is a capability to the very same object (seL4's
    /// `sameObjectAs`): the test for "is this the last capability to it".
    /// An Untyped is never the same object as anything else, and control
    /// capabilities are not the same object as what they create.
    #[must_use]
    pub fn same_object_as(&self, other: &Cap) -> bool {
        match (self, other) {
            (Cap::Untyped { .. }, _) => false,
            (Cap::IrqControl, Cap::IrqHandler { .. }) | (Cap::IoPortControl, Cap::IoPort { .. }) => false,
            _ => self.same_region_as(other),
        }
    }

    /// The badge, for the capabilities that carry one.
    #[must_use]
    pub const fn badge(&self) -> Option<Badge> {
        match *self {
            Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => Some(badge),
            _ => None,
        }
    }

    /// Whether a capability derived as `self` from `source` is revocable,
    /// i.e. a derivation-tree parent of later copies (seL4's
    /// `isCapRevocable`): newly badged endpoint and notification
    /// capabilities, untypeds, and what a control capability creates.
    #[must_use]
    pub fn is_revocable_derivation_of(&self, source: &Cap) -> bool {
        match (self, source) {
            (Cap::Endpoint { .. } | Cap::Notification { .. }, _) => self.badge() != source.badge(),
            (Cap::Untyped { .. }, _) => true,
            (Cap::IrqHandler { .. }, Cap::IrqControl) | (Cap::IoPort { .. }, Cap::IoPortControl) => true,
            _ => false,
        }
    }

    /// The capability a copy of `self` gets (seL4's `deriveCap`).
    ///
    /// A copy of a frame capability is unmapped: each copy maps the frame
    /// at most once, and deleting a copy removes only its own mapping.
    ///
    /// # Errors
    ///
    /// [`SyscallError::IllegalOperation`] for capabilities that cannot be
    /// copied: reply capabilities (they name one pending call), the control
    /// capabilities (one per system), and untypeds. Two capabilities to
    /// one untyped would each keep their own watermark and could hand out
    /// the same memory twice; an untyped is delegated by moving it, or by
    /// retyping a child untyped of the size to give away.
    /// An unmapped paging structure (or an unassigned PML4) cannot be
    /// copied either: its mapping state lives in its capability, and two
    /// unmapped copies could link one table into two places (seL4's rule).
    pub fn derive(&self) -> Result<Cap, SyscallError> {
        match self {
            Cap::Null
            | Cap::Reply { .. }
            | Cap::IrqControl
            | Cap::IoPortControl
            | Cap::SchedControl
            | Cap::AsidControl
            | Cap::PageTable { mapping: None, .. } => Err(SyscallError::IllegalOperation),
            // Mutant: untyped capabilities can be copied.
            Cap::Untyped { .. } if cfg!(bulkhead_mutant = "untyped_copyable") => Ok(*self),
            Cap::Untyped { .. } => Err(SyscallError::IllegalOperation),
            Cap::Frame { base, size, rights, is_device, .. } => {
                Ok(Cap::Frame { base: *base, size: *size, rights: *rights, is_device: *is_device, mapping: None })
            }
            other => Ok(*other),
        }
    }

    /// `self` with its rights reduced to those in `mask` (capabilities
    /// without rights are unchanged).
    #[must_use]
    pub fn with_rights_masked(&self, mask: Rights) -> Cap {
        let mut cap = *self;
        match &mut cap {
            Cap::Endpoint { rights, .. } | Cap::Notification { rights, .. } | Cap::Frame { rights, .. } => {
                *rights &= mask;
            }
            _ => {}
        }
        cap
    }

    /// `self` with the mint/mutate data word applied: a badge for endpoint
    /// and notification capabilities, a guard for CNode capabilities (bits
    /// 0..6 the guard's width, the rest its value). Other capabilities
    /// ignore the word.
    ///
    /// # Errors
    ///
    /// [`SyscallError::IllegalOperation`] when re-badging an already
    /// badged capability; [`SyscallError::RangeError`] for a guard that
    /// does not fit.
    pub fn with_data(&self, data: u64) -> Result<Cap, SyscallError> {
        let mut cap = *self;
        match &mut cap {
            Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => {
                // Mutant: a badged capability can be minted with another badge.
                if *badge != 0 && data != *badge && !cfg!(bulkhead_mutant = "badge_rebadge_allowed") {
                    return Err(SyscallError::IllegalOperation);
                }
                *badge = data;
            }
            Cap::CNode { radix_bits, guard, guard_bits, .. } => {
                let (new_guard_bits, new_guard) = ((data & 0x3f) as u8, data >> 6);
                if u32::from(new_guard_bits) + u32::from(*radix_bits) > 64
                    || (new_guard_bits < 58 && new_guard >> new_guard_bits != 0)
                {
                    return Err(SyscallError::RangeError);
                }
                *guard_bits = new_guard_bits;
                *guard = new_guard;
            }
            _ => {}
        }
        Ok(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(object: u64, badge: Badge) -> Cap {
        Cap::Endpoint { object: PhysAddr::new(object), badge, rights: Rights::ALL }
    }

    #[test]
    fn untyped_regions_contain_what_lies_inside() {
        let untyped = Cap::Untyped { base: PhysAddr::new(0x10000), size_bits: 16, free_offset: 0, is_device: false };
        assert!(untyped.same_region_as(&endpoint(0x10000, 0)));
        assert!(untyped.same_region_as(&endpoint(0x1ffc0, 0)));
        assert!(!untyped.same_region_as(&endpoint(0x1fff0, 0)), "an endpoint is 64 bytes: this one pokes out");
        assert!(!untyped.same_region_as(&endpoint(0x20000, 0)));
        assert!(!untyped.same_region_as(&endpoint(0xfff0, 0)));
        assert!(untyped.same_region_as(&untyped), "an untyped covers itself (its copies derive from it)");
        assert!(!untyped.same_object_as(&untyped), "but is never the same object as anything");
        assert!(!untyped.same_region_as(&Cap::IrqControl));
    }

    #[test]
    fn the_top_of_the_address_space_does_not_overflow() {
        let untyped =
            Cap::Untyped { base: PhysAddr::new(u64::MAX - 0xffff), size_bits: 16, free_offset: 0, is_device: true };
        assert!(untyped.same_region_as(&endpoint(u64::MAX - 0x3f, 0)));
    }

    #[test]
    fn badges_decide_revocability() {
        let original = endpoint(0x1000, 0);
        assert!(endpoint(0x1000, 7).is_revocable_derivation_of(&original), "minting a badge");
        assert!(!endpoint(0x1000, 0).is_revocable_derivation_of(&original), "a plain copy");
        assert!(!endpoint(0x1000, 7).is_revocable_derivation_of(&endpoint(0x1000, 7)), "a copy of a badged cap");
    }

    #[test]
    fn badges_are_set_once() {
        let badged = endpoint(0x1000, 0).with_data(5).expect("first badge");
        assert_eq!(badged.badge(), Some(5));
        assert_eq!(badged.with_data(5), Ok(badged), "the same badge again is fine");
        assert_eq!(badged.with_data(6), Err(SyscallError::IllegalOperation));
    }

    #[test]
    fn guards_must_fit() {
        let cnode = Cap::CNode { base: PhysAddr::new(0x4000), radix_bits: 8, guard: 0, guard_bits: 0 };
        let guarded = cnode.with_data((0b101 << 6) | 3).expect("a 3-bit guard");
        assert_eq!(guarded, Cap::CNode { base: PhysAddr::new(0x4000), radix_bits: 8, guard: 0b101, guard_bits: 3 });
        assert_eq!(cnode.with_data((0b1000 << 6) | 3), Err(SyscallError::RangeError), "value wider than the guard");
        assert_eq!(cnode.with_data(57), Err(SyscallError::RangeError), "guard plus radix beyond 64 bits");
        assert!(cnode.with_data(56).is_ok());
    }

    #[test]
    fn rights_only_shrink_and_some_caps_cannot_be_copied() {
        let read_only = endpoint(0x1000, 0).with_rights_masked(Rights::READ);
        assert_eq!(read_only, Cap::Endpoint { object: PhysAddr::new(0x1000), badge: 0, rights: Rights::READ });
        assert_eq!(read_only.with_rights_masked(Rights::ALL), read_only, "masking never adds rights");
        assert_eq!(Cap::IrqControl.derive(), Err(SyscallError::IllegalOperation));
        assert_eq!(Cap::Reply { object: PhysAddr::new(0x40) }.derive(), Err(SyscallError::IllegalOperation));
        assert_eq!(Cap::Null.derive(), Err(SyscallError::IllegalOperation));
        let untyped = Cap::Untyped { base: PhysAddr::new(0x10000), size_bits: 12, free_offset: 0, is_device: false };
        assert_eq!(untyped.derive(), Err(SyscallError::IllegalOperation), "untypeds move, never copy");
    }
}
