//! The kinds of kernel object an Untyped can be retyped into, and their sizes.

use crate::error::SyscallError;

/// log2 of the bytes one CNode slot occupies (a capability plus its
/// derivation-tree links).
pub const SLOT_BITS: u8 = 6;
/// The smallest Untyped (16 bytes).
pub const MIN_UNTYPED_BITS: u8 = 4;
/// The largest Untyped (128 TiB, beyond any physical memory we address).
pub const MAX_UNTYPED_BITS: u8 = 47;
/// The largest CNode radix. Deleting a CNode scans its slots, so the radix
/// bounds that scan (64 Ki slots, 4 MiB).
pub const MAX_CNODE_RADIX: u8 = 16;
/// log2 of a TCB's size: its capability slots (CSpace root and those to
/// come) followed by the thread's state.
pub const TCB_BITS: u8 = 11;
/// log2 of the capability slots at the start of every TCB.
pub const TCB_SLOT_BITS: u8 = 2;
/// Capability slots at the start of every TCB.
pub const TCB_SLOTS: u64 = 1 << TCB_SLOT_BITS;

/// How many objects one retype may create (seL4's fan-out limit): the work
/// of one invocation stays bounded.
pub const RETYPE_FAN_OUT_LIMIT: u64 = 256;

/// A kind of kernel object. The numbers are the ABI values of the
/// `Untyped::Retype` type argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// Untyped memory of a chosen size.
    Untyped = 0,
    /// A table of capability slots of a chosen radix.
    CNode = 1,
    /// A thread control block.
    Tcb = 2,
    /// A scheduling context (budget and period).
    SchedContext = 3,
    /// A synchronous IPC endpoint.
    Endpoint = 4,
    /// An asynchronous notification word.
    Notification = 5,
    /// A reply object for Call.
    Reply = 6,
    /// A 4 KiB frame.
    Frame4K = 7,
    /// A 2 MiB frame.
    Frame2M = 8,
    /// A 1 GiB frame.
    Frame1G = 9,
    /// A page table (maps 4 KiB pages).
    PageTable = 10,
    /// A page directory (maps page tables or 2 MiB pages).
    PageDirectory = 11,
    /// A page-directory-pointer table (maps page directories or 1 GiB pages).
    PageDirectoryPointerTable = 12,
    /// A PML4: the root of an address space (VSpace).
    Pml4 = 13,
    /// A virtual CPU: the hardware's control block and the kernel's record
    /// (`crate::vcpu`).
    VCpu = 14,
    /// The root of a guest's physical address space: an NPT or EPT PML4
    /// (`docs/VIRTUALISATION.md`).
    GuestSpace = 15,
}

impl ObjectKind {
    /// Every kind, in ABI order.
    pub const ALL: [ObjectKind; 16] = [
        ObjectKind::Untyped,
        ObjectKind::CNode,
        ObjectKind::Tcb,
        ObjectKind::SchedContext,
        ObjectKind::Endpoint,
        ObjectKind::Notification,
        ObjectKind::Reply,
        ObjectKind::Frame4K,
        ObjectKind::Frame2M,
        ObjectKind::Frame1G,
        ObjectKind::PageTable,
        ObjectKind::PageDirectory,
        ObjectKind::PageDirectoryPointerTable,
        ObjectKind::Pml4,
        ObjectKind::VCpu,
        ObjectKind::GuestSpace,
    ];

    /// The kind with this ABI number.
    #[must_use]
    pub fn from_word(word: u64) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|kind| *kind as u64 == word)
    }

    /// log2 of one object's size in bytes. `user_size_bits` matters only
    /// for the variable-size kinds: an Untyped's size, a CNode's radix, a
    /// scheduling context's size.
    ///
    /// # Errors
    ///
    /// [`SyscallError::RangeError`] when `user_size_bits` is out of range
    /// for the kind.
    pub fn size_bits(self, user_size_bits: u64) -> Result<u8, SyscallError> {
        let in_range = |low: u8, high: u8| -> Result<u8, SyscallError> {
            u8::try_from(user_size_bits).ok().filter(|bits| (low..=high).contains(bits)).ok_or(SyscallError::RangeError)
        };
        Ok(match self {
            ObjectKind::Untyped => in_range(MIN_UNTYPED_BITS, MAX_UNTYPED_BITS)?,
            ObjectKind::CNode => in_range(1, MAX_CNODE_RADIX)? + SLOT_BITS,
            ObjectKind::SchedContext => in_range(8, 12)?,
            ObjectKind::Tcb => TCB_BITS,
            ObjectKind::Endpoint | ObjectKind::Notification => 6,
            ObjectKind::Reply => 5,
            ObjectKind::Frame4K
            | ObjectKind::PageTable
            | ObjectKind::PageDirectory
            | ObjectKind::PageDirectoryPointerTable
            | ObjectKind::Pml4
            | ObjectKind::GuestSpace => 12,
            ObjectKind::VCpu => crate::vcpu::VCPU_BITS,
            ObjectKind::Frame2M => 21,
            ObjectKind::Frame1G => 30,
        })
    }

    /// Whether device memory (MMIO, which the kernel must never write as
    /// if it were RAM) may hold this kind: only frames and smaller untypeds.
    #[must_use]
    pub const fn allowed_in_device_memory(self) -> bool {
        matches!(self, ObjectKind::Untyped | ObjectKind::Frame4K | ObjectKind::Frame2M | ObjectKind::Frame1G)
    }
}

// The kernel stores each object's state in the object's own memory: the
// Rust layouts must fit the sizes retype hands out.
const _: () = {
    use crate::cap::Slot;
    use crate::ipc::{Endpoint, Notification, Reply, Tcb};
    use crate::sched::SchedContext;
    assert!(size_of::<Slot>() <= 1 << SLOT_BITS);
    assert!(size_of::<Tcb>() as u64 + (TCB_SLOTS << SLOT_BITS) <= 1 << TCB_BITS);
    assert!(size_of::<Endpoint>() <= 1 << 6);
    assert!(size_of::<Notification>() <= 1 << 6);
    assert!(size_of::<Reply>() <= 1 << 5);
    assert!(size_of::<SchedContext>() <= 1 << 8);
    // A VCpu's second page: its GuestSpace slot, then its record.
    assert!(
        (1 << SLOT_BITS) + size_of::<crate::vcpu::VCpu>() as u64
            <= (1 << crate::vcpu::VCPU_BITS) - crate::vcpu::KERNEL_PAGE_OFFSET
    );
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_numbers_round_trip() {
        for kind in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_word(kind as u64), Some(kind));
        }
        assert_eq!(ObjectKind::from_word(14), Some(ObjectKind::VCpu));
        assert_eq!(ObjectKind::from_word(16), None);
        assert_eq!(ObjectKind::from_word(u64::MAX), None);
    }

    #[test]
    fn variable_sizes_are_range_checked() {
        assert_eq!(ObjectKind::Untyped.size_bits(3), Err(SyscallError::RangeError));
        assert_eq!(ObjectKind::Untyped.size_bits(12), Ok(12));
        assert_eq!(ObjectKind::Untyped.size_bits(48), Err(SyscallError::RangeError));
        assert_eq!(ObjectKind::CNode.size_bits(0), Err(SyscallError::RangeError));
        assert_eq!(ObjectKind::CNode.size_bits(4), Ok(4 + SLOT_BITS));
        assert_eq!(ObjectKind::CNode.size_bits(17), Err(SyscallError::RangeError));
        assert_eq!(ObjectKind::CNode.size_bits(u64::MAX), Err(SyscallError::RangeError));
        assert_eq!(ObjectKind::Frame2M.size_bits(99), Ok(21), "fixed sizes ignore the argument");
    }
}
