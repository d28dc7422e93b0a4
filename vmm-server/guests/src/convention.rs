//! The boot convention's numbers (the crate documentation says what each
//! means), shared by the VMM, its tests and the guests: the guests'
//! assembly takes them as `const` operands ([`guest!`](crate::guest)), so
//! a change here changes the guests.

/// The debug console: one byte OUT per character.
pub const DEBUG_CONSOLE_PORT: u16 = 0xE9;
/// The exit port: a 32-bit OUT of the exit code ends the test.
pub const EXIT_PORT: u16 = 0xF4;
/// The exit code of a guest whose every check passed.
pub const EXIT_SUCCESS: u32 = 0;
/// The exit code of an exception no check expected is this plus the
/// vector (0x10D for a #GP).
pub const UNEXPECTED_EXCEPTION_EXIT: u32 = 0x100;

/// A port no device claims: reads return all ones.
pub const UNCLAIMED_PORT: u16 = 0x5A;

/// The MMIO test device's guest-physical base.
pub const MMIO_TEST_BASE: u64 = 0xD000_0000;
/// The device's size: one page.
pub const MMIO_TEST_SIZE: u64 = 0x1000;
/// The read-only 32-bit ID register's offset.
pub const MMIO_ID_OFFSET: u64 = 0;
/// What the ID register reads ("BULK" in little-endian ASCII).
pub const MMIO_ID: u32 = 0x4B4C_5542;
/// The 64-bit scratch register's offset: it reads back what was written.
pub const MMIO_SCRATCH_OFFSET: u64 = 8;

/// The lowest guest-physical address a segment may occupy: below it lie
/// the real-mode interrupt vector table and the BIOS data area.
pub const LOAD_START: u64 = 0x8000;
/// The end (exclusive) of the range segments may occupy.
pub const LOAD_END: u64 = 0x9_F000;
/// The entry point lies below this: real-mode code runs with CS base 0.
pub const REAL_MODE_LIMIT: u64 = 0x1_0000;
/// The least guest RAM a guest needs, from guest-physical 0.
pub const MIN_RAM_BYTES: u64 = 2 << 20;

/// CR0 at the first instruction: ET only (real mode, no paging).
pub const INITIAL_CR0: u64 = 0x10;
/// RFLAGS at the first instruction: only the reserved bit 1.
pub const INITIAL_RFLAGS: u64 = 0x2;

/// The selector of the guests' 32-bit code segment.
pub const CODE32_SELECTOR: u16 = 0x08;
/// The selector of the guests' data segment (also the unreal-mode one).
pub const DATA_SELECTOR: u16 = 0x10;
/// The selector of the guests' 64-bit code segment.
pub const CODE64_SELECTOR: u16 = 0x18;

/// A flat segment descriptor: base 0, limit 0xF_FFFF pages (4 GiB), with
/// the access byte `access` (bits 40..48) and the flags nibble `flags`
/// (bits 52..56: G, D/B, L, AVL).
const fn flat_descriptor(access: u8, flags: u8) -> u64 {
    0xFFFF | (0xF << 48) | ((access as u64) << 40) | (((flags & 0xF) as u64) << 52)
}

/// The access byte of a present, DPL 0, execute/read code segment, with
/// the accessed bit already set (so loading it writes nothing).
const CODE_ACCESS: u8 = 0x9B;
/// The access byte of a present, DPL 0, read/write data segment, accessed.
const DATA_ACCESS: u8 = 0x93;
/// Flags G (4 KiB granularity) and D/B (32-bit).
const FLAGS_32: u8 = 0xC;
/// Flags G and L (64-bit code; D must be 0).
const FLAGS_64: u8 = 0xA;

/// The GDT every guest loads: null, 32-bit code ([`CODE32_SELECTOR`]),
/// data ([`DATA_SELECTOR`]), 64-bit code ([`CODE64_SELECTOR`]).
pub const GDT: [u64; 4] = [
    0,
    flat_descriptor(CODE_ACCESS, FLAGS_32),
    flat_descriptor(DATA_ACCESS, FLAGS_32),
    flat_descriptor(CODE_ACCESS, FLAGS_64),
];
const _: () = assert!(GDT[1] == 0x00CF_9B00_0000_FFFF);
const _: () = assert!(GDT[2] == 0x00CF_9300_0000_FFFF);
const _: () = assert!(GDT[3] == 0x00AF_9B00_0000_FFFF);
const _: () = assert!(CODE32_SELECTOR == 8 && DATA_SELECTOR == 16 && CODE64_SELECTOR == 24);

/// The rounds of `guest-hostile`'s exit flood: each one CPUID and one OUT
/// to port 0x80, so twice as many exits.
pub const HOSTILE_FLOOD_ROUNDS: u32 = 10_000;

/// The MSRs the guests touch.
pub mod msr {
    /// IA32_SYSENTER_CS.
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    /// IA32_PAT.
    pub const IA32_PAT: u32 = 0x277;
    /// IA32_EFER.
    pub const IA32_EFER: u32 = 0xC000_0080;
    /// IA32_STAR.
    pub const IA32_STAR: u32 = 0xC000_0081;
    /// IA32_LSTAR.
    pub const IA32_LSTAR: u32 = 0xC000_0082;

    /// The MSRs the guests expect to read back what they wrote.
    pub const ALLOWED: [u32; 4] = [IA32_PAT, IA32_STAR, IA32_LSTAR, IA32_SYSENTER_CS];

    /// The MSRs the guests expect #GP(0) from (kept equal to the guests'
    /// probes by hand): IA32_FEATURE_CONTROL, IA32_VMX_BASIC, AMD's VM_CR
    /// and VM_HSAVE_PA, an unimplemented number in the 0xC000_0000 range,
    /// and one outside every range.
    pub const REFUSED: [u32; 6] = [0x3A, 0x480, 0xC001_0114, 0xC001_0117, 0xC000_1234, 0x1234_5678];
}
