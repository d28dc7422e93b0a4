//! The root task's ABI: where its initial capabilities are, the page of
//! facts the kernel hands it at start ([`RootInfo`]), and its address-space
//! layout. The kernel builds the root task from an ELF image; the ring-3
//! runtime (`components`) reads this same definition, so the two sides
//! cannot drift apart.
//!
//! The root thread starts at the image's entry point with RSP at
//! [`STACK_TOP`] (16-byte aligned, nothing pushed) and RDI holding
//! [`INFO_PAGE`], the virtual address of its [`RootInfo`].

/// The root CNode's slots (a root capability address is the slot index:
/// the root CNode's guard makes it a whole 64-bit CSpace).
pub mod slot {
    /// The root CNode itself.
    pub const ROOT_CNODE: u64 = 0;
    /// The first of the untyped slots [`RootInfo::untypeds`] describes.
    pub const FIRST_UNTYPED: u64 = 1;
    /// SchedControl: budgets for scheduling contexts.
    pub const SCHED_CONTROL: u64 = 5;
    /// The root TCB.
    pub const ROOT_TCB: u64 = 6;
    /// IRQControl.
    pub const IRQ_CONTROL: u64 = 7;
    /// IOPortControl.
    pub const IO_PORT_CONTROL: u64 = 8;
    /// AsidControl.
    pub const ASID_CONTROL: u64 = 9;
    /// The ASID pool the root's own VSpace was assigned from (root task
    /// runs only).
    pub const ASID_POOL: u64 = 10;
    /// The root's VSpace (its PML4; root task runs only).
    pub const ROOT_VSPACE: u64 = 11;
    /// The root's IPC buffer frame (root task runs only).
    pub const ROOT_IPC_BUFFER: u64 = 12;
    /// The page holding [`RootInfo`](super::RootInfo) (root task runs only).
    pub const ROOT_INFO_FRAME: u64 = 13;
    /// The first slot the kernel leaves empty for the root to use.
    pub const FIRST_FREE: u64 = 32;
}

/// Where the root task's image may lie: `[IMAGE_BASE, IMAGE_END)`.
pub const IMAGE_BASE: u64 = 0x40_0000;
/// The end of the image range (1 GiB).
pub const IMAGE_END: u64 = 0x4000_0000;
/// The top of the root's stack (its first push lands below).
pub const STACK_TOP: u64 = 0x4010_0000;
/// The root stack's size in 4 KiB pages; the page below stays unmapped.
pub const STACK_PAGES: u64 = 16;
/// The root's IPC buffer (one page, above the stack with a gap).
pub const IPC_BUFFER: u64 = 0x4010_1000;
/// The page holding [`RootInfo`].
pub const INFO_PAGE: u64 = 0x4010_2000;
/// The first virtual address the root task may use for its own mappings:
/// everything from here to the end of the user half is free. It starts a
/// new PML4 entry (512 GiB), so the root maps its own PDPT there first:
/// the structures below it belong to the kernel's image mapping.
pub const FIRST_FREE_ADDRESS: u64 = 0x80_0000_0000;

/// [`RootInfo::magic`]: "BULKROOT" in little-endian bytes.
pub const MAGIC: u64 = u64::from_le_bytes(*b"BULKROOT");
/// [`RootInfo::version`] of this layout.
pub const VERSION: u64 = 3;
/// The most untyped capabilities [`RootInfo`] describes: the RAM ones
/// (slots [`slot::FIRST_UNTYPED`]..), then the device ones (slots
/// [`slot::FIRST_FREE`].., before [`RootInfo::first_free_slot`]).
pub const MAX_UNTYPEDS: usize = 64;

/// One untyped capability the root holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UntypedInfo {
    /// Its slot in the root CNode (0: this entry is unused).
    pub slot: u64,
    /// Its first physical byte.
    pub base: u64,
    /// log2 of its size.
    pub size_bits: u64,
    /// 1 for device memory, 0 for RAM.
    pub is_device: u64,
}

/// The facts the kernel gives the root task, in a read-only page at
/// [`INFO_PAGE`]. Every field is a `u64` so the layout is the same for
/// every compiler.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootInfo {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u64,
    /// log2 of the root CNode's slot count.
    pub cnode_radix: u64,
    /// The first empty root slot: [`slot::FIRST_FREE`] plus the device
    /// untypeds the kernel put there.
    pub first_free_slot: u64,
    /// The first virtual address free for the root's own mappings.
    pub first_free_address: u64,
    /// The root's IPC buffer (virtual).
    pub ipc_buffer: u64,
    /// How many entries of `untypeds` are used.
    pub untyped_count: u64,
    /// The untyped capabilities: RAM first, then device memory.
    pub untypeds: [UntypedInfo; MAX_UNTYPEDS],
    /// Bytes of the root's image loaded (for its log).
    pub image_bytes: u64,
    /// The TSC's rate in kHz: a scheduling context's budget and period
    /// are TSC ticks (SchedControl::Configure), this many per millisecond.
    /// 0 when the kernel could not tell.
    pub tsc_khz: u64,
}

impl RootInfo {
    /// An empty description.
    pub const EMPTY: RootInfo = RootInfo {
        magic: MAGIC,
        version: VERSION,
        cnode_radix: 0,
        first_free_slot: slot::FIRST_FREE,
        first_free_address: FIRST_FREE_ADDRESS,
        ipc_buffer: IPC_BUFFER,
        untyped_count: 0,
        untypeds: [UntypedInfo { slot: 0, base: 0, size_bits: 0, is_device: 0 }; MAX_UNTYPEDS],
        image_bytes: 0,
        tsc_khz: 0,
    };

    /// The page's bytes, as the kernel writes them.
    #[must_use]
    pub fn to_words(&self) -> [u64; INFO_WORDS] {
        let mut words = [0; INFO_WORDS];
        let head = [
            self.magic,
            self.version,
            self.cnode_radix,
            self.first_free_slot,
            self.first_free_address,
            self.ipc_buffer,
            self.untyped_count,
        ];
        words[..head.len()].copy_from_slice(&head);
        let mut at = head.len();
        for untyped in &self.untypeds {
            words[at..at + 4].copy_from_slice(&[untyped.slot, untyped.base, untyped.size_bits, untyped.is_device]);
            at += 4;
        }
        words[at] = self.image_bytes;
        words[at + 1] = self.tsc_khz;
        words
    }
}

/// The words of a [`RootInfo`].
pub const INFO_WORDS: usize = size_of::<RootInfo>() / 8;

// The layout is all u64s in declaration order: `to_words` and the ring-3
// reader rely on it.
const _: () = {
    assert!(size_of::<RootInfo>() == (7 + 4 * MAX_UNTYPEDS + 2) * 8);
    assert!(size_of::<RootInfo>() <= 4096);
    assert!(STACK_TOP - STACK_PAGES * 4096 > IMAGE_END);
    assert!(IPC_BUFFER > STACK_TOP && INFO_PAGE > IPC_BUFFER && FIRST_FREE_ADDRESS > INFO_PAGE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_the_declaration_order() {
        let mut info = RootInfo::EMPTY;
        info.cnode_radix = 8;
        info.untyped_count = 1;
        info.untypeds[0] = UntypedInfo { slot: 1, base: 0x20_0000, size_bits: 22, is_device: 0 };
        info.image_bytes = 0x1234;
        info.tsc_khz = 2_000_000;
        let words = info.to_words();
        assert_eq!(&words[..7], &[MAGIC, VERSION, 8, slot::FIRST_FREE, FIRST_FREE_ADDRESS, IPC_BUFFER, 1]);
        assert_eq!(&words[7..11], &[1, 0x20_0000, 22, 0]);
        assert_eq!(words[INFO_WORDS - 2], 0x1234);
        assert_eq!(words[INFO_WORDS - 1], 2_000_000);
    }
}
