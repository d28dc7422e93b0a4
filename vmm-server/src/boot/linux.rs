//! The x86 Linux boot protocol (the kernel's `Documentation/arch/x86/boot.rst`,
//! "64-bit boot protocol") for an unmodified `bzImage`: [`parse`] checks
//! the image's setup header and splits it, [`plan`] decides where
//! everything goes in guest-physical memory, [`load`] writes it through
//! [`GuestMemory`], and [`BootPlan::vcpu`] is the first vCPU's state at
//! the kernel's 64-bit entry.
//!
//! The VMM calls them in that order, once per guest, before the first
//! VMEnter:
//!
//! ```text
//! let image = linux::parse(bzimage)?;
//! let plan = linux::plan(&image, memory_bytes, cmdline, initrd.len() as u64)?;
//! linux::load(&plan, &image, cmdline, initrd, &mut memory)?;
//! let tables = acpi::build(&shape, plan.acpi_tables.start)?;
//! memory.write(plan.acpi_tables.start, &tables)?;
//! // then load plan.vcpu into the boot vCPU's state and registers
//! ```
//!
//! # Guest-physical layout
//!
//! RAM is `memory_bytes` in all; what does not fit below the 32-bit MMIO
//! hole (the I/O APIC, the local APIC and device windows) continues at
//! 4 GiB. The VMM maps the guest's RAM at exactly these ranges.
//!
//! | range | what | e820 |
//! | --- | --- | --- |
//! | `0x0000..0x1000` | real-mode IVT and BIOS data area, left zero (no EBDA pointer) | RAM |
//! | `0x1000..0x2000` | the GDT: null, null, code 0x10, data 0x18 | RAM |
//! | `0x2000..0x8000` | page tables: PML4, PDPT, four page directories (2 MiB pages identity-mapping 0..4 GiB) | RAM |
//! | `0x8000..0x9000` | `boot_params` (the "zero page") | RAM |
//! | `0x9000..0x1_0000` | a boot stack (RSP starts at its top) | RAM |
//! | `0x1_0000..0x2_0000` | the command line, NUL-terminated | RAM |
//! | `0x9_FC00..0xE_0000` | EBDA, VGA and option-ROM holes: nothing | reserved |
//! | `0xE_0000..0x10_0000` | the ACPI tables, RSDP first (inside the legacy RSDP scan window) | reserved |
//! | `0x10_0000..low end` | RAM; the kernel at its `pref_address` (16 MiB), `init_size` reserved; the initramfs at the top | RAM |
//! | `low end..0x1_0000_0000` | MMIO hole (from 3 GiB, [`MMIO_HOLE_START`]) | absent |
//! | `0x1_0000_0000..` | RAM beyond 3 GiB, if any | RAM |
//!
//! "low end" is `min(memory_bytes, 3 GiB)`. Everything the kernel's entry
//! needs (the kernel's `init_size`, `boot_params`, the command line) lies
//! below 3 GiB and so inside the identity map.
//!
//! # Decisions where the protocol leaves room
//!
//! - Only protocol 2.12 and later with `XLF_KERNEL_64` is accepted: the
//!   64-bit entry at load address + 0x200 is the only entry used, so the
//!   real-mode setup code is never run and never loaded.
//! - The protected-mode kernel is the `syssize * 16` bytes after the setup
//!   sectors; bytes beyond (an appended Authenticode signature, as
//!   distributions' signed kernels carry) are not loaded.
//! - The kernel goes at `pref_address` when that is aligned and fits
//!   between 1 MiB and the MMIO hole; otherwise, for a relocatable
//!   kernel, at the first `kernel_alignment`-aligned address at or above
//!   both 16 MiB and `pref_address` (a relocatable kernel decompresses
//!   itself at its aligned load address but never below its build's
//!   `LOAD_PHYSICAL_ADDR`, which `pref_address` holds, so a lower address
//!   would not keep it there); a kernel that is not relocatable and does
//!   not fit at its `pref_address` is refused. `init_size` is reserved
//!   from the load address.
//! - The initramfs goes at the highest page-aligned address below both
//!   the end of low RAM and `initrd_addr_max` (which
//!   `XLF_CAN_BE_LOADED_ABOVE_4G` lifts to the end of low RAM, as QEMU
//!   does) and clear of the kernel's `init_size`, above the kernel or,
//!   failing that, below it; only if neither fits, and the kernel allows
//!   it, at the top of the RAM above 4 GiB (the `ext_ramdisk_*` fields
//!   then carry the high halves).
//! - `boot_params` starts all zero (so its `sentinel` is 0) with the
//!   image's setup header copied in; the fields the protocol gives the
//!   loader are the loader's, whatever the image holds there:
//!   `type_of_loader` 0xFF (unregistered loader), `loadflags` with
//!   LOADED_HIGH and none of the loader's bits (CAN_USE_HEAP is for the
//!   real-mode setup code, which does not run; QUIET and KEEP_SEGMENTS
//!   are not wanted), `heap_end_ptr`, `ext_loader_*`, `setup_data` (no
//!   list) and `hardware_subarch` (a PC) zero.
//! - The e820 map has no entry for the MMIO hole (absence is a hole) and
//!   marks the ACPI tables' window reserved rather than ACPI-reclaimable:
//!   it lies below 1 MiB, which Linux keeps reserved anyway.
//! - The identity map covers the first 4 GiB with 2 MiB pages (1 GiB
//!   pages need `pdpe1gb`, which the guest's CPUID need not have); the
//!   kernel builds its own tables before it touches anything above.

use kernel_core::vcpu::{GuestField, Segment, SegmentPart};

use crate::cpu::{cr0, cr4, efer};
use crate::guest::{GuestMemory, Unbacked};

// --- The setup header's fields: offsets in the image and in `boot_params`
// alike (the header sits at 0x1F1 in both).

/// Where the setup header starts.
const HEADER_START: usize = 0x1f1;
/// `setup_sects`: real-mode setup sectors after the boot sector (0 means 4).
const SETUP_SECTS: usize = 0x1f1;
/// `syssize`: the protected-mode code's size in 16-byte paragraphs.
const SYSSIZE: usize = 0x1f4;
/// `boot_flag`: 0xAA55.
const BOOT_FLAG: usize = 0x1fe;
/// The second byte of the jump at 0x200: the header ends at 0x202 plus it.
const JUMP_LENGTH: usize = 0x201;
/// `header`: "HdrS".
const MAGIC: usize = 0x202;
/// `version`: the boot protocol version, major.minor in two bytes.
const VERSION: usize = 0x206;
/// `type_of_loader`.
const TYPE_OF_LOADER: usize = 0x210;
/// `loadflags`.
const LOADFLAGS: usize = 0x211;
/// `ramdisk_image`: the initramfs's address (low 32 bits).
const RAMDISK_IMAGE: usize = 0x218;
/// `ramdisk_size`: the initramfs's size (low 32 bits).
const RAMDISK_SIZE: usize = 0x21c;
/// `heap_end_ptr`.
const HEAP_END_PTR: usize = 0x224;
/// `ext_loader_ver` and `ext_loader_type` (one byte each).
const EXT_LOADER: usize = 0x226;
/// `cmd_line_ptr`: the command line's address (low 32 bits).
const CMD_LINE_PTR: usize = 0x228;
/// `initrd_addr_max`: the highest address the initramfs may occupy.
const INITRD_ADDR_MAX: usize = 0x22c;
/// `kernel_alignment`: the alignment a relocatable kernel needs.
const KERNEL_ALIGNMENT: usize = 0x230;
/// `relocatable_kernel`: nonzero if the kernel may be loaded anywhere aligned.
const RELOCATABLE_KERNEL: usize = 0x234;
/// `xloadflags`.
const XLOADFLAGS: usize = 0x236;
/// `cmdline_size`: the command line's maximum length, without its NUL.
const CMDLINE_SIZE: usize = 0x238;
/// `hardware_subarch` (u32) and `hardware_subarch_data` (u64).
const HARDWARE_SUBARCH: usize = 0x23c;
/// `setup_data`: the physical address of a `setup_data` list.
const SETUP_DATA: usize = 0x250;
/// `pref_address`: where a relocatable kernel prefers to be.
const PREF_ADDRESS: usize = 0x258;
/// `init_size`: the memory the kernel needs from its load address on
/// before it has set itself up.
const INIT_SIZE: usize = 0x260;

/// The header must reach at least past `handover_offset` (0x264..0x268):
/// every protocol 2.12 field is there.
const HEADER_MIN_END: usize = 0x268;
/// `boot_params` has room for the header up to 0x290, where
/// `edd_mbr_sig_buffer` starts.
const HEADER_MAX_END: usize = 0x290;

// --- `boot_params`' own fields.

/// `acpi_rsdp_addr` (u64).
const ACPI_RSDP_ADDR: u64 = 0x070;
/// `ext_ramdisk_image`: the initramfs address's high 32 bits.
const EXT_RAMDISK_IMAGE: u64 = 0x0c0;
/// `ext_ramdisk_size`: the initramfs size's high 32 bits.
const EXT_RAMDISK_SIZE: u64 = 0x0c4;
/// `ext_cmd_line_ptr`: the command line address's high 32 bits.
const EXT_CMD_LINE_PTR: u64 = 0x0c8;
/// `e820_entries` (u8).
const E820_ENTRIES: u64 = 0x1e8;
/// `e820_table`: up to 128 entries of 20 bytes (address, size, type).
const E820_TABLE: u64 = 0x2d0;
/// The bytes of one e820 entry in `boot_params`.
const E820_ENTRY_BYTES: u64 = 20;

/// "HdrS", little-endian.
const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
/// The boot sector's signature.
const BOOT_FLAG_VALUE: u16 = 0xaa55;
/// Protocol 2.12: `xloadflags`, the `ext_*` fields and the 64-bit entry.
pub const MIN_PROTOCOL: u16 = 0x020c;
/// `type_of_loader` for a loader without an assigned ID.
const UNREGISTERED_LOADER: u8 = 0xff;
/// Bytes of a setup sector.
const SECTOR_BYTES: u64 = 512;

/// `loadflags` bits.
pub mod loadflags {
    /// The protected-mode code is loaded at 1 MiB or above (a bzImage).
    pub const LOADED_HIGH: u8 = 1 << 0;
    /// The kernel's own: KASLR was used (written by the kernel).
    pub const KASLR: u8 = 1 << 1;
    /// The loader asks for an early console that says nothing.
    pub const QUIET: u8 = 1 << 5;
    /// Obsolete: the 32-bit entry keeps the loader's segments.
    pub const KEEP_SEGMENTS: u8 = 1 << 6;
    /// The loader set `heap_end_ptr` for the real-mode setup code.
    pub const CAN_USE_HEAP: u8 = 1 << 7;
}

/// `xloadflags` bits.
pub mod xloadflags {
    /// The kernel has the 64-bit entry at load address + 0x200.
    pub const KERNEL_64: u16 = 1 << 0;
    /// The kernel, `boot_params`, command line and initramfs may lie
    /// above 4 GiB.
    pub const CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
    /// The EFI handover protocol's 32-bit entry.
    pub const EFI_HANDOVER_32: u16 = 1 << 2;
    /// The EFI handover protocol's 64-bit entry.
    pub const EFI_HANDOVER_64: u16 = 1 << 3;
    /// The kernel supports kexec EFI boot with EFI runtime support.
    pub const EFI_KEXEC: u16 = 1 << 4;
}

/// Where the 64-bit entry is, from the load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;

// --- The layout (module documentation, "Guest-physical layout").

/// A page.
pub const PAGE_BYTES: u64 = 0x1000;
/// The GDT's page.
pub const GDT_ADDRESS: u64 = 0x1000;
/// The page tables: PML4, PDPT, then the page directories.
pub const PAGE_TABLES_ADDRESS: u64 = 0x2000;
/// How many page directories: one per GiB of the identity map.
pub const PAGE_DIRECTORIES: u64 = 4;
/// `boot_params`.
pub const ZERO_PAGE_ADDRESS: u64 = 0x8000;
/// The boot stack's lowest address.
pub const STACK_ADDRESS: u64 = 0x9000;
/// The boot stack's top (the first RSP).
pub const STACK_TOP: u64 = 0x1_0000;
/// The command line.
pub const COMMAND_LINE_ADDRESS: u64 = 0x1_0000;
/// The command line's window, its NUL included.
pub const COMMAND_LINE_WINDOW_BYTES: u64 = 0x1_0000;
/// Where conventional memory ends: the EBDA's customary start.
pub const CONVENTIONAL_END: u64 = 0x9_fc00;
/// The ACPI tables' window: [`crate::boot::acpi::build`]'s blob, RSDP
/// first, inside the 0xE0000..0x100000 window that legacy RSDP scans read.
pub const ACPI_TABLES_ADDRESS: u64 = 0xe_0000;
/// Where RAM above the legacy holes starts, and the lowest address the
/// kernel may be loaded at.
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// Where the fallback load address search starts: the customary 16 MiB.
pub const KERNEL_FALLBACK_ADDRESS: u64 = 0x100_0000;
/// Where the 32-bit MMIO hole starts: RAM beyond it continues at
/// [`HIGH_RAM_START`].
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// Where RAM above the MMIO hole starts.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// The largest guest-physical address: the architecture's 52 bits.
pub const PHYSICAL_ADDRESS_LIMIT: u64 = 1 << 52;
/// The most e820 entries a plan has.
pub const MAX_E820_ENTRIES: usize = 5;

/// The GDT's selectors: `__BOOT_CS` and `__BOOT_DS`.
pub const BOOT_CODE_SELECTOR: u16 = 0x10;
/// `__BOOT_DS`.
pub const BOOT_DATA_SELECTOR: u16 = 0x18;
/// GDTR's limit: the GDT's last byte.
#[allow(clippy::cast_possible_truncation)] // 4 entries of 8 bytes.
pub const GDT_LIMIT: u16 = (GDT.len() * 8 - 1) as u16;
/// The GDT: two null descriptors (Linux's own GDT leaves 0x08 unused),
/// flat 64-bit code (base 0, limit 4 GiB, G, L, present, execute/read,
/// accessed) and flat data (base 0, limit 4 GiB, G, D/B, present,
/// read/write, accessed).
pub const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

// A compile-time check that the fixed pieces are where the layout says.
const _: () = {
    assert!(PAGE_TABLES_ADDRESS + (2 + PAGE_DIRECTORIES) * PAGE_BYTES <= ZERO_PAGE_ADDRESS);
    assert!(ZERO_PAGE_ADDRESS + PAGE_BYTES <= STACK_ADDRESS);
    assert!(COMMAND_LINE_ADDRESS + COMMAND_LINE_WINDOW_BYTES <= CONVENTIONAL_END);
    assert!(ACPI_TABLES_ADDRESS + crate::boot::acpi::MAX_TABLES_BYTES as u64 <= HIGH_MEMORY_START);
    assert!(BOOT_CODE_SELECTOR as usize / 8 < GDT.len() && BOOT_DATA_SELECTOR as usize / 8 < GDT.len());
};

/// Why an image is not a `bzImage` this loader boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxImageError {
    /// The image ends before its setup header does.
    TooShort {
        /// The image's length.
        bytes: usize,
    },
    /// No "HdrS" at 0x202: not a Linux boot image (perhaps an ELF
    /// `vmlinux`).
    NoHeaderMagic,
    /// No 0xAA55 boot flag at 0x1FE.
    NoBootFlag,
    /// The boot protocol is older than 2.12 ([`MIN_PROTOCOL`]).
    ProtocolTooOld {
        /// The image's protocol version.
        version: u16,
    },
    /// The header's length (0x202 + the byte at 0x201) is shorter than
    /// protocol 2.12's header or longer than `boot_params` has room for.
    HeaderLength {
        /// Where the header says it ends.
        end: usize,
    },
    /// LOADED_HIGH is clear: a zImage, loaded below 1 MiB.
    NotLoadedHigh,
    /// XLF_KERNEL_64 is clear: there is no 64-bit entry.
    No64BitEntry,
    /// The setup sectors run past the end of the image.
    SetupBeyondImage {
        /// The setup code's bytes, boot sector included.
        setup_bytes: u64,
        /// The image's length.
        image_bytes: u64,
    },
    /// `syssize` is zero: there is no protected-mode kernel.
    EmptyKernel,
    /// `syssize` claims more protected-mode code than the image holds.
    KernelBeyondImage {
        /// The bytes `syssize` claims.
        claimed: u64,
        /// The bytes after the setup code.
        available: u64,
    },
    /// `kernel_alignment` is not a power of two.
    KernelAlignment {
        /// The value.
        alignment: u32,
    },
    /// `init_size` is smaller than the protected-mode code itself.
    InitSizeTooSmall {
        /// The value.
        init_size: u32,
        /// The protected-mode code's bytes.
        kernel_bytes: u64,
    },
}

/// The setup header's fields the loader uses, as the image states them
/// (after [`parse`]'s checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// The boot protocol version (0x020f is 2.15).
    pub protocol: u16,
    /// The setup sectors after the boot sector (0 already read as 4).
    pub setup_sectors: u8,
    /// `loadflags`.
    pub loadflags: u8,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// The highest address the initramfs may occupy.
    pub initrd_addr_max: u32,
    /// The alignment a relocated kernel needs (a power of two).
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded at any aligned address.
    pub relocatable: bool,
    /// The command line's maximum length, without its NUL.
    pub cmdline_size: u32,
    /// The load address the kernel prefers.
    pub pref_address: u64,
    /// The memory the kernel needs from its load address on.
    pub init_size: u32,
}

/// A checked `bzImage`: its setup header, and the protected-mode kernel
/// split off the real-mode setup code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage<'i> {
    /// The parsed header.
    pub header: SetupHeader,
    /// The header's bytes from 0x1F1 to its end, to be copied into
    /// `boot_params`.
    pub header_bytes: &'i [u8],
    /// The real-mode setup code (boot sector included): not loaded, since
    /// the 64-bit entry skips it.
    pub setup: &'i [u8],
    /// The protected-mode kernel, loaded at the load address.
    pub kernel: &'i [u8],
}

fn read_u8(bytes: &[u8], at: usize) -> Option<u8> {
    bytes.get(at).copied()
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

/// Checks `image` as a `bzImage` with the 64-bit entry and splits it.
/// The image is the guest's and may be anything: every field is checked
/// before it is used, and nothing here panics.
///
/// # Errors
///
/// [`LinuxImageError`]: what is wrong with the image.
pub fn parse(image: &[u8]) -> Result<BzImage<'_>, LinuxImageError> {
    let layout = parse_layout(image, image.len())?;
    let too_short = LinuxImageError::TooShort { bytes: image.len() };
    let header_bytes = image.get(HEADER_START..layout.header_end).ok_or(too_short)?;
    let (setup, rest) = image.split_at_checked(layout.setup_bytes).ok_or(too_short)?;
    let kernel = rest.get(..layout.kernel_bytes).ok_or(too_short)?;
    Ok(BzImage { header: layout.header, header_bytes, setup, kernel })
}

/// Where a checked image's parts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ImageLayout {
    header: SetupHeader,
    /// The end of the setup header (from the jump's length).
    header_end: usize,
    /// The setup code's bytes, boot sector included: the protected-mode
    /// kernel starts there.
    setup_bytes: usize,
    /// The protected-mode kernel's bytes.
    kernel_bytes: usize,
}

/// Checks the header of an image of `image_bytes` bytes whose first bytes
/// are `prefix` (at least up to the header's end) and says where its parts
/// are: [`parse`] for an image in memory, [`boot_staged`] for one in the
/// guest's RAM.
fn parse_layout(prefix: &[u8], image_bytes: usize) -> Result<ImageLayout, LinuxImageError> {
    let too_short = LinuxImageError::TooShort { bytes: image_bytes };
    if image_bytes < HEADER_MIN_END || prefix.len() < HEADER_MIN_END {
        return Err(too_short);
    }
    if read_u32(prefix, MAGIC) != Some(HEADER_MAGIC) {
        return Err(LinuxImageError::NoHeaderMagic);
    }
    if read_u16(prefix, BOOT_FLAG) != Some(BOOT_FLAG_VALUE) {
        return Err(LinuxImageError::NoBootFlag);
    }
    let protocol = read_u16(prefix, VERSION).ok_or(too_short)?;
    if protocol < MIN_PROTOCOL {
        return Err(LinuxImageError::ProtocolTooOld { version: protocol });
    }
    let header_end = usize::from(read_u8(prefix, JUMP_LENGTH).ok_or(too_short)?) + MAGIC;
    if !(HEADER_MIN_END..=HEADER_MAX_END).contains(&header_end) {
        return Err(LinuxImageError::HeaderLength { end: header_end });
    }
    if header_end > image_bytes || header_end > prefix.len() {
        return Err(too_short);
    }
    let loadflags = read_u8(prefix, LOADFLAGS).ok_or(too_short)?;
    if loadflags & loadflags::LOADED_HIGH == 0 {
        return Err(LinuxImageError::NotLoadedHigh);
    }
    let xloadflags = read_u16(prefix, XLOADFLAGS).ok_or(too_short)?;
    if xloadflags & xloadflags::KERNEL_64 == 0 {
        return Err(LinuxImageError::No64BitEntry);
    }

    let setup_sectors = match read_u8(prefix, SETUP_SECTS).ok_or(too_short)? {
        0 => 4,
        sectors => sectors,
    };
    // At most 256 sectors: no overflow.
    let setup_bytes = (u64::from(setup_sectors) + 1) * SECTOR_BYTES;
    let total = u64::try_from(image_bytes).unwrap_or(u64::MAX);
    let setup_end = usize::try_from(setup_bytes)
        .ok()
        .filter(|end| *end <= image_bytes)
        .ok_or(LinuxImageError::SetupBeyondImage { setup_bytes, image_bytes: total })?;

    // A u32 of paragraphs: at most 64 GiB, no overflow.
    let kernel_bytes = u64::from(read_u32(prefix, SYSSIZE).ok_or(too_short)?) * 16;
    if kernel_bytes == 0 {
        return Err(LinuxImageError::EmptyKernel);
    }
    let available = total - setup_bytes;
    let kernel_length = usize::try_from(kernel_bytes)
        .ok()
        .filter(|_| kernel_bytes <= available)
        .ok_or(LinuxImageError::KernelBeyondImage { claimed: kernel_bytes, available })?;

    let kernel_alignment = read_u32(prefix, KERNEL_ALIGNMENT).ok_or(too_short)?;
    if !kernel_alignment.is_power_of_two() {
        return Err(LinuxImageError::KernelAlignment { alignment: kernel_alignment });
    }
    let init_size = read_u32(prefix, INIT_SIZE).ok_or(too_short)?;
    if u64::from(init_size) < kernel_bytes {
        return Err(LinuxImageError::InitSizeTooSmall { init_size, kernel_bytes });
    }
    let header = SetupHeader {
        protocol,
        setup_sectors,
        loadflags,
        xloadflags,
        initrd_addr_max: read_u32(prefix, INITRD_ADDR_MAX).ok_or(too_short)?,
        kernel_alignment,
        relocatable: read_u8(prefix, RELOCATABLE_KERNEL).ok_or(too_short)? != 0,
        cmdline_size: read_u32(prefix, CMDLINE_SIZE).ok_or(too_short)?,
        pref_address: read_u64(prefix, PREF_ADDRESS).ok_or(too_short)?,
        init_size,
    };
    Ok(ImageLayout { header, header_end, setup_bytes: setup_end, kernel_bytes: kernel_length })
}

/// A range of guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRegion {
    /// Its first address.
    pub start: u64,
    /// Its length.
    pub bytes: u64,
}

impl GuestRegion {
    /// The address after its last byte (saturating: a plan's regions
    /// never reach the top of the address space).
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes)
    }

    /// Whether it shares a byte with `other`.
    #[must_use]
    pub const fn overlaps(&self, other: &GuestRegion) -> bool {
        self.start < other.end() && other.start < self.end() && self.bytes != 0 && other.bytes != 0
    }

    /// Whether all of it lies inside `outer`.
    #[must_use]
    pub const fn is_inside(&self, outer: &GuestRegion) -> bool {
        self.start >= outer.start && self.end() <= outer.end()
    }
}

/// Where the guest's RAM is (module documentation, "Guest-physical
/// layout").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamLayout {
    /// RAM from 0 up to the MMIO hole: `min(memory_bytes, 3 GiB)`.
    pub low: GuestRegion,
    /// RAM from 4 GiB on: what did not fit below the hole.
    pub high: Option<GuestRegion>,
}

impl RamLayout {
    /// The layout of `memory_bytes` of RAM, if it is addressable.
    #[must_use]
    pub fn of(memory_bytes: u64) -> Option<RamLayout> {
        let low = GuestRegion { start: 0, bytes: memory_bytes.min(MMIO_HOLE_START) };
        let above = memory_bytes.saturating_sub(MMIO_HOLE_START);
        let high = if above == 0 {
            None
        } else {
            let end = HIGH_RAM_START.checked_add(above).filter(|end| *end <= PHYSICAL_ADDRESS_LIMIT)?;
            Some(GuestRegion { start: HIGH_RAM_START, bytes: end - HIGH_RAM_START })
        };
        Some(RamLayout { low, high })
    }

    /// Its RAM ranges, low first.
    pub fn ranges(&self) -> impl Iterator<Item = GuestRegion> {
        core::iter::once(self.low).chain(self.high)
    }

    /// Whether `region` lies inside one RAM range.
    #[must_use]
    pub fn contains(&self, region: &GuestRegion) -> bool {
        self.ranges().any(|ram| region.is_inside(&ram))
    }
}

/// What an e820 entry says of its range (the values are the BIOS's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Not for the OS.
    Reserved = 2,
    /// ACPI tables the OS may reuse once read.
    AcpiReclaimable = 3,
}

/// One entry of the e820 map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// The range.
    pub region: GuestRegion,
    /// What it is.
    pub kind: E820Kind,
}

/// The guest's memory map as `boot_params` carries it: low RAM with the
/// legacy holes reserved, and the RAM above 4 GiB.
#[must_use]
pub fn e820_map(layout: &RamLayout) -> heapless::Vec<E820Entry, MAX_E820_ENTRIES> {
    let entry = |start: u64, end: u64, kind| E820Entry { region: GuestRegion { start, bytes: end - start }, kind };
    let low_end = layout.low.end();
    let candidates = [
        entry(0, CONVENTIONAL_END.min(low_end), E820Kind::Ram),
        entry(CONVENTIONAL_END.min(low_end), ACPI_TABLES_ADDRESS.min(low_end), E820Kind::Reserved),
        entry(ACPI_TABLES_ADDRESS.min(low_end), HIGH_MEMORY_START.min(low_end), E820Kind::Reserved),
        entry(HIGH_MEMORY_START.min(low_end), low_end, E820Kind::Ram),
    ];
    let mut map = heapless::Vec::new();
    for candidate in candidates.into_iter().chain(layout.high.map(|region| E820Entry { region, kind: E820Kind::Ram })) {
        if candidate.region.bytes != 0 {
            // At most MAX_E820_ENTRIES candidates: every push fits.
            map.push(candidate).ok();
        }
    }
    map
}

/// Why a guest cannot be booted as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Less RAM than the fixed low layout needs (1 MiB).
    MemoryTooSmall {
        /// The guest's RAM.
        memory_bytes: u64,
    },
    /// More RAM than 52-bit physical addresses reach once the MMIO hole
    /// is skipped.
    MemoryTooLarge {
        /// The guest's RAM.
        memory_bytes: u64,
    },
    /// The kernel's `init_size` fits neither at its `pref_address` nor,
    /// for a relocatable kernel, at the fallback address, between 1 MiB
    /// and the MMIO hole.
    KernelDoesNotFit {
        /// The address tried last.
        load_address: u64,
        /// The kernel's `init_size`.
        init_size: u32,
    },
    /// The command line is longer than the kernel's `cmdline_size` or the
    /// command-line window allows.
    CommandLineTooLong {
        /// Its length.
        bytes: u64,
        /// The longest allowed.
        limit: u64,
    },
    /// The command line holds a NUL, which would end it early.
    CommandLineHasNul {
        /// Where the first NUL is.
        at: usize,
    },
    /// The initramfs fits nowhere the kernel allows.
    InitrdDoesNotFit {
        /// Its size.
        bytes: u64,
    },
}

/// A segment register as the VMM loads it. The attributes are packed as
/// a VMCB packs them (and as the kernel's VCpu fields take them): bits
/// 0..4 the type, 4 S (code or data), 5..7 DPL, 7 P, 8 AVL, 9 L (64-bit
/// code), 10 D/B, 11 G; that is, a descriptor's bits 40..48 and 52..56.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRegister {
    /// The selector.
    pub selector: u16,
    /// The base.
    pub base: u64,
    /// The limit in bytes (G already applied).
    pub limit: u32,
    /// The packed attributes.
    pub attributes: u16,
}

impl SegmentRegister {
    /// The segment register loaded from the GDT descriptor `descriptor`
    /// with `selector` (a code or data descriptor: its base and limit are
    /// 32-bit).
    #[must_use]
    pub const fn from_descriptor(selector: u16, descriptor: u64) -> SegmentRegister {
        let base = (descriptor >> 16) & 0xff_ffff | ((descriptor >> 56) & 0xff) << 24;
        let raw_limit = (descriptor & 0xffff) | ((descriptor >> 48) & 0xf) << 16;
        let granular = descriptor & (1 << 55) != 0;
        let limit = if granular { raw_limit << 12 | 0xfff } else { raw_limit };
        let attributes = (descriptor >> 40) & 0xff | ((descriptor >> 52) & 0xf) << 8;
        // Each is masked to its width above.
        #[allow(clippy::cast_possible_truncation)]
        let (limit, attributes) = (limit as u32, attributes as u16);
        SegmentRegister { selector, base, limit, attributes }
    }
}

/// A descriptor-table register (GDTR or IDTR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRegister {
    /// The table's linear address.
    pub base: u64,
    /// The table's last valid byte offset.
    pub limit: u16,
}

/// The boot vCPU's state at the kernel's 64-bit entry: long mode with
/// paging through the plan's identity map, flat `__BOOT_CS` and
/// `__BOOT_DS`, interrupts off, RSI at `boot_params`. Every general
/// register not named here is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootVcpuState {
    /// The 64-bit entry: load address + 0x200.
    pub rip: u64,
    /// `boot_params`.
    pub rsi: u64,
    /// The boot stack's top.
    pub rsp: u64,
    /// Only the always-one bit 1: interrupts off.
    pub rflags: u64,
    /// PE, ET, PG.
    pub cr0: u64,
    /// The PML4.
    pub cr3: u64,
    /// PAE.
    pub cr4: u64,
    /// LME and LMA.
    pub efer: u64,
    /// `__BOOT_CS`: flat 64-bit code.
    pub cs: SegmentRegister,
    /// `__BOOT_DS`.
    pub ds: SegmentRegister,
    /// `__BOOT_DS`.
    pub es: SegmentRegister,
    /// `__BOOT_DS`.
    pub ss: SegmentRegister,
    /// `__BOOT_DS` (the protocol leaves FS free; flat data is harmless).
    pub fs: SegmentRegister,
    /// `__BOOT_DS`, as FS.
    pub gs: SegmentRegister,
    /// An empty LDT (present, as after RESET).
    pub ldtr: SegmentRegister,
    /// A 64-bit busy TSS at 0 (long mode needs one loaded; the kernel
    /// loads its own before it uses it).
    pub tr: SegmentRegister,
    /// The plan's GDT.
    pub gdtr: TableRegister,
    /// No IDT: interrupts are off, and the kernel loads its own first.
    pub idtr: TableRegister,
}

impl BootVcpuState {
    /// The state entering a kernel loaded at `load_address`.
    #[must_use]
    pub const fn at_entry(load_address: u64) -> BootVcpuState {
        let data = SegmentRegister::from_descriptor(BOOT_DATA_SELECTOR, GDT[BOOT_DATA_SELECTOR as usize / 8]);
        BootVcpuState {
            rip: load_address.saturating_add(ENTRY_64_OFFSET),
            rsi: ZERO_PAGE_ADDRESS,
            rsp: STACK_TOP,
            rflags: 0x2,
            cr0: cr0::PE | cr0::ET | cr0::PG,
            cr3: PAGE_TABLES_ADDRESS,
            cr4: cr4::PAE,
            efer: efer::LME | efer::LMA,
            cs: SegmentRegister::from_descriptor(BOOT_CODE_SELECTOR, GDT[BOOT_CODE_SELECTOR as usize / 8]),
            ds: data,
            es: data,
            ss: data,
            fs: data,
            gs: data,
            ldtr: SegmentRegister { selector: 0, base: 0, limit: 0xffff, attributes: 0x82 },
            tr: SegmentRegister { selector: 0, base: 0, limit: 0xffff, attributes: 0x8b },
            gdtr: TableRegister { base: GDT_ADDRESS, limit: GDT_LIMIT },
            idtr: TableRegister { base: 0, limit: 0 },
        }
    }
}

impl BootVcpuState {
    /// Every guest-state field this state sets, with its value: control
    /// registers, EFER, the eight segment registers (selector, base,
    /// limit, attributes), GDTR and IDTR. RIP, RSP, RFLAGS and RSI travel
    /// in VMEnter's registers ([`BootVcpuState::registers`]).
    #[must_use]
    pub fn fields(&self) -> heapless::Vec<(GuestField, u64), 40> {
        let mut fields = heapless::Vec::new();
        let mut put = |field: GuestField, value: u64| {
            // 8 + 32 fields: the vector holds them all.
            let _ = fields.push((field, value));
        };
        put(GuestField::CR0, self.cr0);
        put(GuestField::CR3, self.cr3);
        put(GuestField::CR4, self.cr4);
        put(GuestField::EFER, self.efer);
        put(GuestField::GDTR_BASE, self.gdtr.base);
        put(GuestField::GDTR_LIMIT, u64::from(self.gdtr.limit));
        put(GuestField::IDTR_BASE, self.idtr.base);
        put(GuestField::IDTR_LIMIT, u64::from(self.idtr.limit));
        for (segment, register) in [
            (Segment::Es, self.es),
            (Segment::Cs, self.cs),
            (Segment::Ss, self.ss),
            (Segment::Ds, self.ds),
            (Segment::Fs, self.fs),
            (Segment::Gs, self.gs),
            (Segment::Ldtr, self.ldtr),
            (Segment::Tr, self.tr),
        ] {
            put(GuestField::segment(segment, SegmentPart::Selector), u64::from(register.selector));
            put(GuestField::segment(segment, SegmentPart::Base), register.base);
            put(GuestField::segment(segment, SegmentPart::Limit), u64::from(register.limit));
            put(GuestField::segment(segment, SegmentPart::Attributes), u64::from(register.attributes));
        }
        fields
    }

    /// VMEnter's registers at the entry: RIP, RSP, RSI, RFLAGS, the rest
    /// zero, no event.
    #[must_use]
    pub fn registers(&self) -> bulkhead_components::vcpu::GuestRegisters {
        let mut general = [0; 16];
        general[4] = self.rsp;
        general[6] = self.rsi;
        bulkhead_components::vcpu::GuestRegisters { general, rip: self.rip, rflags: self.rflags, event: 0 }
    }
}

/// Where everything goes, decided by [`plan`] and written by [`load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// Where the RAM is.
    pub ram: RamLayout,
    /// The e820 map `boot_params` carries.
    pub e820: heapless::Vec<E820Entry, MAX_E820_ENTRIES>,
    /// The kernel: its load address and `init_size` (the protected-mode
    /// code is loaded at its start).
    pub kernel: GuestRegion,
    /// `boot_params`.
    pub zero_page: GuestRegion,
    /// The command line with its NUL.
    pub command_line: GuestRegion,
    /// The initramfs, if there is one.
    pub initrd: Option<GuestRegion>,
    /// The GDT.
    pub gdt: GuestRegion,
    /// The identity map's tables.
    pub page_tables: GuestRegion,
    /// The boot stack.
    pub stack: GuestRegion,
    /// The window the ACPI tables go in, RSDP first
    /// ([`crate::boot::acpi::build`]).
    pub acpi_tables: GuestRegion,
    /// The boot vCPU's state.
    pub vcpu: BootVcpuState,
}

/// What a plan placed, to name its regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// The kernel's `init_size`.
    Kernel,
    /// `boot_params`.
    ZeroPage,
    /// The command line.
    CommandLine,
    /// The initramfs.
    Initrd,
    /// The GDT.
    Gdt,
    /// The page tables.
    PageTables,
    /// The boot stack.
    Stack,
    /// The ACPI tables' window.
    AcpiTables,
}

impl BootPlan {
    /// Everything it placed, each with its region.
    pub fn placed(&self) -> impl Iterator<Item = (Placed, GuestRegion)> {
        [
            Some((Placed::Kernel, self.kernel)),
            Some((Placed::ZeroPage, self.zero_page)),
            Some((Placed::CommandLine, self.command_line)),
            self.initrd.map(|initrd| (Placed::Initrd, initrd)),
            Some((Placed::Gdt, self.gdt)),
            Some((Placed::PageTables, self.page_tables)),
            Some((Placed::Stack, self.stack)),
            Some((Placed::AcpiTables, self.acpi_tables)),
        ]
        .into_iter()
        .flatten()
    }

    /// Where the RSDP is: the start of the ACPI tables' window.
    #[must_use]
    pub const fn rsdp_address(&self) -> u64 {
        self.acpi_tables.start + crate::boot::acpi::RSDP_OFFSET
    }
}

const fn align_up(value: u64, alignment: u64) -> Option<u64> {
    // `alignment` is a power of two.
    match value.checked_add(alignment - 1) {
        Some(sum) => Some(sum & !(alignment - 1)),
        None => None,
    }
}

const fn align_down(value: u64, alignment: u64) -> u64 {
    value & !(alignment - 1)
}

/// Where the kernel goes (module documentation, "Decisions").
fn place_kernel(header: &SetupHeader, ram: &RamLayout) -> Result<GuestRegion, PlanError> {
    let init_size = u64::from(header.init_size);
    let alignment = u64::from(header.kernel_alignment).max(PAGE_BYTES);
    let fits = |start: u64| {
        let region = GuestRegion { start, bytes: init_size };
        (start >= HIGH_MEMORY_START && start.checked_add(init_size).is_some() && region.is_inside(&ram.low))
            .then_some(region)
    };
    let preferred = header.pref_address;
    if !header.relocatable || preferred.is_multiple_of(alignment) {
        if let Some(region) = fits(preferred) {
            return Ok(region);
        }
        if !header.relocatable {
            return Err(PlanError::KernelDoesNotFit { load_address: preferred, init_size: header.init_size });
        }
    }
    // The kernel decompresses itself at its load address aligned up, but
    // never below its own LOAD_PHYSICAL_ADDR, which `pref_address` is:
    // loading it lower than that would not keep it there.
    let fallback = align_up(KERNEL_FALLBACK_ADDRESS.max(preferred), alignment).unwrap_or(u64::MAX);
    fits(fallback).ok_or(PlanError::KernelDoesNotFit { load_address: fallback, init_size: header.init_size })
}

/// The highest page-aligned start for `bytes` inside `floor..ceiling`.
fn highest_fit(bytes: u64, floor: u64, ceiling: u64) -> Option<GuestRegion> {
    let start = align_down(ceiling.checked_sub(bytes)?, PAGE_BYTES);
    (start >= floor).then_some(GuestRegion { start, bytes })
}

/// Where the initramfs goes (module documentation, "Decisions").
fn place_initrd(header: &SetupHeader, ram: &RamLayout, kernel: &GuestRegion, bytes: u64) -> Option<GuestRegion> {
    let above_4g = header.xloadflags & xloadflags::CAN_BE_LOADED_ABOVE_4G != 0;
    let ceiling = if above_4g { ram.low.end() } else { (u64::from(header.initrd_addr_max) + 1).min(ram.low.end()) };
    let above_kernel = highest_fit(bytes, kernel.end(), ceiling);
    let below_kernel = || highest_fit(bytes, HIGH_MEMORY_START, ceiling.min(kernel.start));
    let high = || ram.high.filter(|_| above_4g).and_then(|high| highest_fit(bytes, high.start, high.end()));
    above_kernel.or_else(below_kernel).or_else(high)
}

/// Decides where `image`, a command line of `cmdline`, and an initramfs
/// of `initrd_bytes` (0 for none) go in a guest with `memory_bytes` of
/// RAM. All inputs may be hostile: sizes are checked, never trusted.
///
/// # Errors
///
/// [`PlanError`]: what does not fit.
pub fn plan(image: &BzImage<'_>, memory_bytes: u64, cmdline: &[u8], initrd_bytes: u64) -> Result<BootPlan, PlanError> {
    if memory_bytes < HIGH_MEMORY_START {
        return Err(PlanError::MemoryTooSmall { memory_bytes });
    }
    let ram = RamLayout::of(memory_bytes).ok_or(PlanError::MemoryTooLarge { memory_bytes })?;
    let header = &image.header;

    let cmdline_bytes = u64::try_from(cmdline.len()).unwrap_or(u64::MAX);
    let cmdline_limit = u64::from(header.cmdline_size).min(COMMAND_LINE_WINDOW_BYTES - 1);
    if cmdline_bytes > cmdline_limit {
        return Err(PlanError::CommandLineTooLong { bytes: cmdline_bytes, limit: cmdline_limit });
    }
    if let Some(at) = cmdline.iter().position(|byte| *byte == 0) {
        return Err(PlanError::CommandLineHasNul { at });
    }

    let kernel = place_kernel(header, &ram)?;
    let initrd = match initrd_bytes {
        0 => None,
        bytes => Some(place_initrd(header, &ram, &kernel, bytes).ok_or(PlanError::InitrdDoesNotFit { bytes })?),
    };
    Ok(BootPlan {
        e820: e820_map(&ram),
        ram,
        kernel,
        zero_page: GuestRegion { start: ZERO_PAGE_ADDRESS, bytes: PAGE_BYTES },
        command_line: GuestRegion { start: COMMAND_LINE_ADDRESS, bytes: cmdline_bytes + 1 },
        initrd,
        gdt: GuestRegion { start: GDT_ADDRESS, bytes: 8 * GDT.len() as u64 },
        page_tables: GuestRegion { start: PAGE_TABLES_ADDRESS, bytes: (2 + PAGE_DIRECTORIES) * PAGE_BYTES },
        stack: GuestRegion { start: STACK_ADDRESS, bytes: STACK_TOP - STACK_ADDRESS },
        acpi_tables: GuestRegion { start: ACPI_TABLES_ADDRESS, bytes: HIGH_MEMORY_START - ACPI_TABLES_ADDRESS },
        vcpu: BootVcpuState::at_entry(kernel.start),
    })
}

/// Why [`load`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The command line, initramfs or kernel are not the ones the plan
    /// was made for (their lengths differ).
    NotThePlanned(Placed),
    /// A write fell outside the guest's memory: the VMM did not map the
    /// plan's RAM layout.
    Unbacked(Unbacked),
}

impl From<Unbacked> for LoadError {
    fn from(unbacked: Unbacked) -> LoadError {
        LoadError::Unbacked(unbacked)
    }
}

/// Page-table entry bits.
mod entry {
    /// Present.
    pub(super) const PRESENT: u64 = 1 << 0;
    /// Writable.
    pub(super) const WRITABLE: u64 = 1 << 1;
    /// A 2 MiB (or 1 GiB) page rather than a table.
    pub(super) const LARGE: u64 = 1 << 7;
}

/// Entries written per chunk of a page-table page.
const ENTRIES_PER_CHUNK: usize = 64;

/// Writes the identity map: PML4 -> PDPT -> four page directories of
/// 2 MiB pages.
fn write_page_tables(memory: &mut impl GuestMemory) -> Result<(), Unbacked> {
    let pml4 = PAGE_TABLES_ADDRESS;
    let pdpt = pml4 + PAGE_BYTES;
    let first_directory = pdpt + PAGE_BYTES;
    write_zeros(memory, pml4, 2 * PAGE_BYTES)?;
    memory.write(pml4, &(pdpt | entry::PRESENT | entry::WRITABLE).to_le_bytes())?;
    for gigabyte in 0..PAGE_DIRECTORIES {
        let directory = first_directory + gigabyte * PAGE_BYTES;
        memory.write(pdpt + gigabyte * 8, &(directory | entry::PRESENT | entry::WRITABLE).to_le_bytes())?;
        let mut chunk = [0u8; ENTRIES_PER_CHUNK * 8];
        for first in (0..512u64).step_by(ENTRIES_PER_CHUNK) {
            for (index, bytes) in (first..).zip(chunk.chunks_exact_mut(8)) {
                let page = (gigabyte << 30) | (index << 21);
                bytes.copy_from_slice(&(page | entry::PRESENT | entry::WRITABLE | entry::LARGE).to_le_bytes());
            }
            memory.write(directory + first * 8, &chunk)?;
        }
    }
    Ok(())
}

fn write_zeros(memory: &mut impl GuestMemory, start: u64, bytes: u64) -> Result<(), Unbacked> {
    const ZEROS: [u8; 512] = [0; 512];
    let mut done = 0;
    while done < bytes {
        let piece = usize::try_from(bytes - done).map_or(ZEROS.len(), |left| left.min(ZEROS.len()));
        memory.write(start.saturating_add(done), ZEROS.get(..piece).unwrap_or(&ZEROS))?;
        done += piece as u64;
    }
    Ok(())
}

/// The low and high 32 bits of `value`.
fn halves(value: u64) -> (u32, u32) {
    let low = u32::try_from(value & 0xffff_ffff).unwrap_or(0);
    let high = u32::try_from(value >> 32).unwrap_or(0);
    (low, high)
}

/// Writes `boot_params` (module documentation, "Decisions").
fn write_zero_page(plan: &BootPlan, header_bytes: &[u8], memory: &mut impl GuestMemory) -> Result<(), Unbacked> {
    let base = plan.zero_page.start;
    let at = |offset: usize| base + offset as u64;
    write_zeros(memory, base, PAGE_BYTES)?;

    // The image's header (`parse` bounded it to HEADER_MAX_END; the rest
    // up to there is padding and stays zero), with the loader's fields
    // set.
    let mut header = [0u8; HEADER_MAX_END - HEADER_START];
    for (to, from) in header.iter_mut().zip(header_bytes) {
        *to = *from;
    }
    let mut put = |offset: usize, value: &[u8]| {
        let field = header.get_mut(offset.saturating_sub(HEADER_START)..).and_then(|rest| rest.get_mut(..value.len()));
        if let Some(field) = field {
            field.copy_from_slice(value);
        }
    };
    let (initrd_low, initrd_high) = halves(plan.initrd.map_or(0, |initrd| initrd.start));
    let (size_low, size_high) = halves(plan.initrd.map_or(0, |initrd| initrd.bytes));
    let (cmdline_low, cmdline_high) = halves(plan.command_line.start);
    put(TYPE_OF_LOADER, &[UNREGISTERED_LOADER]);
    put(LOADFLAGS, &[loadflags::LOADED_HIGH]);
    put(RAMDISK_IMAGE, &initrd_low.to_le_bytes());
    put(RAMDISK_SIZE, &size_low.to_le_bytes());
    put(HEAP_END_PTR, &[0, 0]);
    put(EXT_LOADER, &[0, 0]);
    put(CMD_LINE_PTR, &cmdline_low.to_le_bytes());
    put(HARDWARE_SUBARCH, &[0; 12]);
    put(SETUP_DATA, &[0; 8]);
    memory.write(at(HEADER_START), &header)?;

    memory.write(base + ACPI_RSDP_ADDR, &plan.rsdp_address().to_le_bytes())?;
    memory.write(base + EXT_RAMDISK_IMAGE, &initrd_high.to_le_bytes())?;
    memory.write(base + EXT_RAMDISK_SIZE, &size_high.to_le_bytes())?;
    memory.write(base + EXT_CMD_LINE_PTR, &cmdline_high.to_le_bytes())?;
    memory.write(base + E820_ENTRIES, &[u8::try_from(plan.e820.len()).unwrap_or(u8::MAX)])?;
    for (index, e820) in (0u64..).zip(&plan.e820) {
        let mut bytes = [0u8; 20];
        bytes[..8].copy_from_slice(&e820.region.start.to_le_bytes());
        bytes[8..16].copy_from_slice(&e820.region.bytes.to_le_bytes());
        bytes[16..].copy_from_slice(&(e820.kind as u32).to_le_bytes());
        memory.write(base + E820_TABLE + index * E820_ENTRY_BYTES, &bytes)?;
    }
    Ok(())
}

/// Writes everything `plan` placed, except the ACPI tables (the caller
/// writes [`crate::boot::acpi::build`]'s blob at
/// [`BootPlan::acpi_tables`]): the protected-mode kernel, `boot_params`,
/// the command line, the initramfs, the GDT, the page tables, and zeros
/// over the real-mode IVT and BIOS data area (the first page). The
/// guest's RAM need not be zero: every byte the kernel reads at its entry
/// is written.
///
/// # Errors
///
/// [`LoadError::NotThePlanned`] if an input's length is not the planned
/// one; [`LoadError::Unbacked`] if the VMM's memory lacks part of the
/// plan's RAM (what was written before stays written).
pub fn load(
    plan: &BootPlan,
    image: &BzImage<'_>,
    cmdline: &[u8],
    initrd: &[u8],
    memory: &mut impl GuestMemory,
) -> Result<(), LoadError> {
    let length = |bytes: &[u8]| u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if length(cmdline).checked_add(1) != Some(plan.command_line.bytes) {
        return Err(LoadError::NotThePlanned(Placed::CommandLine));
    }
    if length(initrd) != plan.initrd.map_or(0, |region| region.bytes) {
        return Err(LoadError::NotThePlanned(Placed::Initrd));
    }
    if length(image.kernel) > plan.kernel.bytes {
        return Err(LoadError::NotThePlanned(Placed::Kernel));
    }

    memory.write(plan.kernel.start, image.kernel)?;
    if let Some(region) = plan.initrd {
        memory.write(region.start, initrd)?;
    }
    write_boot_structures(plan, image.header_bytes, cmdline, memory)
}

/// Writes the command line, the GDT, the page tables, `boot_params` (with
/// `header_bytes`, the image's setup header) and zeros over the first
/// page: everything but the kernel and the initramfs.
fn write_boot_structures(
    plan: &BootPlan,
    header_bytes: &[u8],
    cmdline: &[u8],
    memory: &mut impl GuestMemory,
) -> Result<(), LoadError> {
    let length = |bytes: &[u8]| u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    memory.write(plan.command_line.start, cmdline)?;
    memory.write(plan.command_line.start.saturating_add(length(cmdline)), &[0])?;
    let mut gdt = [0u8; GDT.len() * 8];
    for (bytes, descriptor) in gdt.chunks_exact_mut(8).zip(GDT) {
        bytes.copy_from_slice(&descriptor.to_le_bytes());
    }
    memory.write(plan.gdt.start, &gdt)?;
    // No interrupt vectors and an empty BIOS data area: no EBDA pointer
    // for an RSDP scan to follow, no base-memory size to believe.
    write_zeros(memory, 0, GDT_ADDRESS)?;
    write_page_tables(memory)?;
    write_zero_page(plan, header_bytes, memory)?;
    Ok(())
}

/// A kernel, initramfs and command line the loader staged in the guest's
/// RAM before the VMM started (`docs/capdl.md`, guests with a `kernel`):
/// the `bzImage` file as it is, the initramfs where it stays, the command
/// line's bytes without a NUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    /// The `bzImage` file.
    pub image: GuestRegion,
    /// The initramfs, if any.
    pub initrd: Option<GuestRegion>,
    /// The command line, if any.
    pub command_line: Option<GuestRegion>,
}

/// The most bytes the VMM appends to a staged command line
/// ([`boot_staged`]'s `append`).
pub const MAX_APPENDED_COMMAND_LINE: usize = 128;

/// Why [`boot_staged`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagedBootError {
    /// The image's header is wrong.
    Image(LinuxImageError),
    /// The plan failed.
    Plan(PlanError),
    /// Writing the plan failed.
    Load(LoadError),
    /// A staged part lies outside the guest's RAM, or the staged image
    /// overlaps where the plan puts something (the staged initramfs may
    /// only be where the kernel allows one).
    Misplaced(Placed),
    /// The staged command line is longer than the VMM reads.
    CommandLineTooLong {
        /// Its length.
        bytes: u64,
    },
}

impl From<Unbacked> for StagedBootError {
    fn from(unbacked: Unbacked) -> StagedBootError {
        StagedBootError::Load(LoadError::Unbacked(unbacked))
    }
}

/// The longest staged command line the VMM takes (the window's size
/// less its NUL; the kernel's own `cmdline_size` is checked by the plan).
pub const MAX_STAGED_COMMAND_LINE: usize = 4095;

/// Boots a kernel staged in guest memory: checks the staged `bzImage`'s
/// header, plans (the initramfs stays where it was staged, if the kernel
/// allows it there), copies the protected-mode kernel to its load
/// address and writes everything else [`load`] writes. The staged copies
/// are plain RAM afterwards (the kernel's to reuse). Every staged byte is
/// the guest's own memory and is checked as hostile input.
///
/// # Errors
///
/// [`StagedBootError`]: what is wrong.
pub fn boot_staged(
    memory: &mut impl GuestMemory,
    memory_bytes: u64,
    staged: &Staged,
    append: &[u8],
) -> Result<BootPlan, StagedBootError> {
    let ram = RamLayout::of(memory_bytes).ok_or(StagedBootError::Plan(PlanError::MemoryTooLarge { memory_bytes }))?;
    let in_ram = |region: &GuestRegion| region.start.checked_add(region.bytes).is_some() && ram.contains(region);
    if !in_ram(&staged.image) {
        return Err(StagedBootError::Misplaced(Placed::Kernel));
    }
    let mut prefix = [0u8; HEADER_MAX_END];
    let image_bytes = usize::try_from(staged.image.bytes).unwrap_or(usize::MAX);
    let prefix_bytes = image_bytes.min(HEADER_MAX_END);
    memory.read(staged.image.start, prefix.get_mut(..prefix_bytes).unwrap_or(&mut []))?;
    let layout =
        parse_layout(prefix.get(..prefix_bytes).unwrap_or(&[]), image_bytes).map_err(StagedBootError::Image)?;
    let header_bytes = prefix.get(HEADER_START..layout.header_end).unwrap_or(&[]);

    let mut command_line = [0u8; MAX_STAGED_COMMAND_LINE + 1 + MAX_APPENDED_COMMAND_LINE];
    let append = append.get(..append.len().min(MAX_APPENDED_COMMAND_LINE)).unwrap_or(&[]);
    let staged_bytes = match staged.command_line {
        None => 0,
        Some(region) => {
            if !in_ram(&region) {
                return Err(StagedBootError::Misplaced(Placed::CommandLine));
            }
            let bytes = usize::try_from(region.bytes)
                .ok()
                .filter(|bytes| *bytes <= MAX_STAGED_COMMAND_LINE)
                .ok_or(StagedBootError::CommandLineTooLong { bytes: region.bytes })?;
            let text = command_line.get_mut(..bytes).unwrap_or(&mut []);
            memory.read(region.start, text)?;
            bytes
        }
    };
    let mut length = staged_bytes;
    if !append.is_empty() {
        let separator = usize::from(staged_bytes != 0);
        if let Some(tail) = command_line.get_mut(length..length + separator + append.len()) {
            tail[..separator].fill(b' ');
            tail[separator..].copy_from_slice(append);
            length += separator + append.len();
        }
    }
    let command_line = command_line.get(..length).unwrap_or(&[]);

    let image = BzImage { header: layout.header, header_bytes, setup: &[], kernel: &[] };
    let initrd_bytes = staged.initrd.map_or(0, |initrd| initrd.bytes);
    let mut plan = plan(&image, memory_bytes, command_line, initrd_bytes).map_err(StagedBootError::Plan)?;
    if let Some(initrd) = staged.initrd {
        let above_4g = layout.header.xloadflags & xloadflags::CAN_BE_LOADED_ABOVE_4G != 0;
        let below_limit = above_4g || initrd.end() <= u64::from(layout.header.initrd_addr_max) + 1;
        if !in_ram(&initrd) || !below_limit || initrd.start < HIGH_MEMORY_START {
            return Err(StagedBootError::Misplaced(Placed::Initrd));
        }
        plan.initrd = Some(initrd);
    }
    // Nothing the plan writes may overlap the staged image (it is read
    // while the kernel is copied) or the staged initramfs (which stays).
    for (placed, region) in plan.placed() {
        if placed != Placed::Initrd && region.overlaps(&staged.image) {
            return Err(StagedBootError::Misplaced(placed));
        }
        if let Some(initrd) = staged.initrd
            && placed != Placed::Initrd
            && region.overlaps(&initrd)
        {
            return Err(StagedBootError::Misplaced(Placed::Initrd));
        }
    }
    let kernel_bytes = u64::try_from(layout.kernel_bytes).unwrap_or(u64::MAX);
    if kernel_bytes > plan.kernel.bytes {
        return Err(StagedBootError::Load(LoadError::NotThePlanned(Placed::Kernel)));
    }
    let from = staged.image.start + layout.setup_bytes as u64;
    copy_within(memory, from, plan.kernel.start, kernel_bytes)?;
    write_boot_structures(&plan, header_bytes, command_line, memory).map_err(StagedBootError::Load)?;
    Ok(plan)
}

/// Copies `bytes` of guest memory from `from` to `to` (the ranges do not
/// overlap: the caller checked), a page at a time.
fn copy_within(memory: &mut impl GuestMemory, from: u64, to: u64, bytes: u64) -> Result<(), Unbacked> {
    let mut page = [0u8; 4096];
    let mut done = 0;
    while done < bytes {
        let piece = (bytes - done).min(page.len() as u64);
        let chunk = page.get_mut(..usize::try_from(piece).unwrap_or(0)).unwrap_or(&mut []);
        memory.read(from + done, chunk)?;
        memory.write(to + done, chunk)?;
        done += piece;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::boxed::Box;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    use kernel_core::vcpu::{GuestField, Segment, SegmentPart, check};
    use proptest::prelude::*;

    use super::*;
    use crate::cpu::ControlRegisters;
    use crate::paging::{Access, MemoryAccess, translate};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// The header fields of a synthetic image; `bytes` builds it.
    #[derive(Clone, Debug)]
    struct Spec {
        setup_sects: u8,
        kernel_bytes: usize,
        trailing_bytes: usize,
        version: u16,
        loadflags: u8,
        xloadflags: u16,
        kernel_alignment: u32,
        relocatable: bool,
        pref_address: u64,
        init_size: u32,
        cmdline_size: u32,
        initrd_addr_max: u32,
    }

    impl Default for Spec {
        /// Like a distribution's kernel (protocol 2.15, 2 MiB alignment,
        /// 16 MiB preferred), only smaller.
        fn default() -> Spec {
            Spec {
                setup_sects: 3,
                kernel_bytes: 0x1_0000,
                trailing_bytes: 0,
                version: 0x020f,
                loadflags: loadflags::LOADED_HIGH,
                xloadflags: xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G,
                kernel_alignment: 0x20_0000,
                relocatable: true,
                pref_address: 0x100_0000,
                init_size: 0x100_0000,
                cmdline_size: 2047,
                initrd_addr_max: 0x7fff_ffff,
            }
        }
    }

    fn put(image: &mut [u8], offset: usize, bytes: &[u8]) {
        image[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    impl Spec {
        fn setup_bytes(&self) -> usize {
            (usize::from(if self.setup_sects == 0 { 4 } else { self.setup_sects }) + 1) * 512
        }

        fn bytes(&self) -> Vec<u8> {
            let setup = self.setup_bytes();
            let mut image = vec![0u8; setup + self.kernel_bytes + self.trailing_bytes];
            for (index, byte) in image.iter_mut().enumerate().skip(setup) {
                *byte = u8::try_from(index % 251).unwrap();
            }
            image[SETUP_SECTS] = self.setup_sects;
            put(&mut image, SYSSIZE, &u32::try_from(self.kernel_bytes / 16).unwrap().to_le_bytes());
            put(&mut image, BOOT_FLAG, &0xaa55u16.to_le_bytes());
            put(&mut image, 0x200, &[0xeb, 0x6a]);
            put(&mut image, MAGIC, b"HdrS");
            put(&mut image, VERSION, &self.version.to_le_bytes());
            image[TYPE_OF_LOADER] = 0x12;
            image[LOADFLAGS] = self.loadflags;
            put(&mut image, INITRD_ADDR_MAX, &self.initrd_addr_max.to_le_bytes());
            put(&mut image, KERNEL_ALIGNMENT, &self.kernel_alignment.to_le_bytes());
            image[RELOCATABLE_KERNEL] = u8::from(self.relocatable);
            image[RELOCATABLE_KERNEL + 1] = 21;
            put(&mut image, XLOADFLAGS, &self.xloadflags.to_le_bytes());
            put(&mut image, CMDLINE_SIZE, &self.cmdline_size.to_le_bytes());
            put(&mut image, PREF_ADDRESS, &self.pref_address.to_le_bytes());
            put(&mut image, INIT_SIZE, &self.init_size.to_le_bytes());
            // Fields the loader owns, set to junk by the image.
            put(&mut image, SETUP_DATA, &0x1234_5678u64.to_le_bytes());
            put(&mut image, HARDWARE_SUBARCH, &2u32.to_le_bytes());
            put(&mut image, HEAP_END_PTR, &0xfe00u16.to_le_bytes());
            image
        }
    }

    /// Guest memory laid out as `ram` says, backed page by page on first
    /// write; unwritten bytes read as `fill` (RAM need not be zero).
    struct SparseMemory {
        ram: RamLayout,
        fill: u8,
        pages: BTreeMap<u64, Box<[u8; 4096]>>,
    }

    impl SparseMemory {
        fn new(ram: RamLayout, fill: u8) -> Self {
            SparseMemory { ram, fill, pages: BTreeMap::new() }
        }

        fn check(&self, at: u64, length: usize) -> Result<(), Unbacked> {
            let region = GuestRegion { start: at, bytes: length as u64 };
            if at.checked_add(length as u64).is_some() && self.ram.contains(&region) {
                Ok(())
            } else {
                Err(Unbacked { guest_physical: at })
            }
        }

        fn bytes(&self, at: u64, length: usize) -> Vec<u8> {
            let mut bytes = vec![0; length];
            GuestMemory::read(self, at, &mut bytes).expect("backed");
            bytes
        }

        fn u8(&self, at: u64) -> u8 {
            self.bytes(at, 1)[0]
        }

        fn u16(&self, at: u64) -> u16 {
            u16::from_le_bytes(self.bytes(at, 2).try_into().unwrap())
        }

        fn u32(&self, at: u64) -> u32 {
            u32::from_le_bytes(self.bytes(at, 4).try_into().unwrap())
        }

        fn u64(&self, at: u64) -> u64 {
            u64::from_le_bytes(self.bytes(at, 8).try_into().unwrap())
        }
    }

    impl GuestMemory for SparseMemory {
        fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), Unbacked> {
            self.check(guest_physical, bytes.len())?;
            for (index, byte) in bytes.iter_mut().enumerate() {
                let at = guest_physical + index as u64;
                *byte = self.pages.get(&(at / 4096)).map_or(self.fill, |page| page[(at % 4096) as usize]);
            }
            Ok(())
        }

        fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), Unbacked> {
            self.check(guest_physical, bytes.len())?;
            for (index, byte) in bytes.iter().enumerate() {
                let at = guest_physical + index as u64;
                let fill = self.fill;
                let page = self.pages.entry(at / 4096).or_insert_with(|| Box::new([fill; 4096]));
                page[(at % 4096) as usize] = *byte;
            }
            Ok(())
        }
    }

    fn parsed(image: &[u8]) -> BzImage<'_> {
        parse(image).expect("a valid image")
    }

    // --- parse

    #[test]
    fn a_valid_image_parses_and_splits() {
        let spec = Spec::default();
        let image = spec.bytes();
        let parsed = parsed(&image);
        assert_eq!(
            parsed.header,
            SetupHeader {
                protocol: 0x020f,
                setup_sectors: 3,
                loadflags: loadflags::LOADED_HIGH,
                xloadflags: xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G,
                initrd_addr_max: 0x7fff_ffff,
                kernel_alignment: 0x20_0000,
                relocatable: true,
                cmdline_size: 2047,
                pref_address: 0x100_0000,
                init_size: 0x100_0000,
            }
        );
        assert_eq!(parsed.setup, &image[..2048]);
        assert_eq!(parsed.kernel, &image[2048..]);
        assert_eq!(parsed.header_bytes, &image[0x1f1..0x26c]);
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let image = Spec { setup_sects: 0, ..Spec::default() }.bytes();
        let parsed = parsed(&image);
        assert_eq!(parsed.header.setup_sectors, 4);
        assert_eq!(parsed.setup.len(), 5 * 512);
        assert_eq!(parsed.kernel.len(), 0x1_0000);
    }

    #[test]
    fn bytes_after_syssize_are_not_the_kernel() {
        // A signed distribution kernel carries its signature there.
        let image = Spec { trailing_bytes: 1472, ..Spec::default() }.bytes();
        let parsed = parsed(&image);
        assert_eq!(parsed.kernel.len(), 0x1_0000);
        assert_eq!(parsed.kernel, &image[2048..2048 + 0x1_0000]);
    }

    #[test]
    fn truncated_images_are_refused() {
        let image = Spec::default().bytes();
        for length in [0, 1, 0x1f1, 0x202, 0x267] {
            assert_eq!(parse(&image[..length]), Err(LinuxImageError::TooShort { bytes: length }), "{length}");
        }
        // Inside the setup code.
        assert_eq!(
            parse(&image[..0x300]),
            Err(LinuxImageError::SetupBeyondImage { setup_bytes: 2048, image_bytes: 0x300 })
        );
        // Inside the kernel.
        assert_eq!(
            parse(&image[..image.len() - 1]),
            Err(LinuxImageError::KernelBeyondImage { claimed: 0x1_0000, available: 0x1_0000 - 1 })
        );
    }

    #[test]
    fn images_without_the_magic_or_boot_flag_are_refused() {
        let mut image = Spec::default().bytes();
        image[MAGIC] = b'X';
        assert_eq!(parse(&image), Err(LinuxImageError::NoHeaderMagic));
        let mut image = Spec::default().bytes();
        image[BOOT_FLAG] = 0;
        assert_eq!(parse(&image), Err(LinuxImageError::NoBootFlag));
        // An ELF vmlinux.
        let mut elf = vec![0u8; 0x1000];
        put(&mut elf, 0, b"\x7fELF");
        assert_eq!(parse(&elf), Err(LinuxImageError::NoHeaderMagic));
    }

    #[test]
    fn old_protocols_are_refused() {
        for version in [0x0200, 0x0206, 0x020b] {
            let image = Spec { version, ..Spec::default() }.bytes();
            assert_eq!(parse(&image), Err(LinuxImageError::ProtocolTooOld { version }));
        }
        let image = Spec { version: 0x020c, ..Spec::default() }.bytes();
        assert!(parse(&image).is_ok());
    }

    #[test]
    fn images_without_the_64_bit_entry_or_loaded_low_are_refused() {
        let image = Spec { xloadflags: xloadflags::CAN_BE_LOADED_ABOVE_4G, ..Spec::default() }.bytes();
        assert_eq!(parse(&image), Err(LinuxImageError::No64BitEntry));
        let image = Spec { loadflags: 0, ..Spec::default() }.bytes();
        assert_eq!(parse(&image), Err(LinuxImageError::NotLoadedHigh));
    }

    #[test]
    fn header_lengths_outside_the_protocols_are_refused() {
        for (jump, end) in [(0x50, 0x252), (0x65, 0x267), (0x8f, 0x291), (0xff, 0x301)] {
            let mut image = Spec::default().bytes();
            image[JUMP_LENGTH] = jump;
            assert_eq!(parse(&image), Err(LinuxImageError::HeaderLength { end }));
        }
        let mut image = Spec::default().bytes();
        image[JUMP_LENGTH] = 0x8e;
        assert_eq!(parsed(&image).header_bytes.len(), 0x290 - 0x1f1);
    }

    #[test]
    fn absurd_sizes_are_refused() {
        // 255 setup sectors in a small file.
        let mut image = Spec::default().bytes();
        image[SETUP_SECTS] = 255;
        let image_bytes = image.len() as u64;
        assert_eq!(parse(&image), Err(LinuxImageError::SetupBeyondImage { setup_bytes: 256 * 512, image_bytes }));
        // syssize at its largest: 64 GiB.
        let mut image = Spec::default().bytes();
        put(&mut image, SYSSIZE, &u32::MAX.to_le_bytes());
        assert_eq!(
            parse(&image),
            Err(LinuxImageError::KernelBeyondImage { claimed: u64::from(u32::MAX) * 16, available: 0x1_0000 })
        );
        let image = Spec { kernel_bytes: 0, ..Spec::default() }.bytes();
        assert_eq!(parse(&image), Err(LinuxImageError::EmptyKernel));
        for alignment in [0, 3, 0x30_0000, u32::MAX] {
            let image = Spec { kernel_alignment: alignment, ..Spec::default() }.bytes();
            assert_eq!(parse(&image), Err(LinuxImageError::KernelAlignment { alignment }));
        }
        let image = Spec { init_size: 0xfff0, ..Spec::default() }.bytes();
        assert_eq!(parse(&image), Err(LinuxImageError::InitSizeTooSmall { init_size: 0xfff0, kernel_bytes: 0x1_0000 }));
    }

    // --- plan

    #[test]
    fn the_kernel_goes_at_its_preferred_address_with_the_initrd_at_the_top() {
        let image = Spec::default().bytes();
        let plan = plan(&parsed(&image), 64 * MIB, b"console=ttyS0", 8 * MIB).unwrap();
        assert_eq!(plan.kernel, GuestRegion { start: 16 * MIB, bytes: 16 * MIB });
        assert_eq!(plan.initrd, Some(GuestRegion { start: 56 * MIB, bytes: 8 * MIB }));
        assert_eq!(plan.command_line, GuestRegion { start: 0x1_0000, bytes: 14 });
        assert_eq!(plan.zero_page, GuestRegion { start: 0x8000, bytes: 0x1000 });
        assert_eq!(plan.vcpu.rip, 16 * MIB + 0x200);
        assert_eq!(plan.rsdp_address(), 0xe_0000);
    }

    #[test]
    fn an_initrd_that_does_not_page_align_ends_below_the_top() {
        let image = Spec::default().bytes();
        let plan = plan(&parsed(&image), 64 * MIB, b"", 4097).unwrap();
        let initrd = plan.initrd.unwrap();
        assert_eq!(initrd.start, 64 * MIB - 0x2000);
        assert_eq!(initrd.bytes, 4097);
    }

    #[test]
    fn a_kernel_that_does_not_fit_is_refused() {
        // A distribution kernel's init_size (51.5 MiB) from 16 MiB needs
        // more than 64 MiB.
        let image = Spec { init_size: 0x337_8000, ..Spec::default() }.bytes();
        let kernel = parsed(&image);
        assert_eq!(
            plan(&kernel, 64 * MIB, b"", 0),
            Err(PlanError::KernelDoesNotFit { load_address: 16 * MIB, init_size: 0x337_8000 })
        );
        assert!(plan(&kernel, 68 * MIB, b"", 0).is_ok());
        assert_eq!(plan(&kernel, MIB - 1, b"", 0), Err(PlanError::MemoryTooSmall { memory_bytes: MIB - 1 }));
        assert_eq!(plan(&kernel, u64::MAX, b"", 0), Err(PlanError::MemoryTooLarge { memory_bytes: u64::MAX }));
    }

    #[test]
    fn an_unusable_preferred_address_falls_back_for_a_relocatable_kernel_only() {
        // (pref_address, where a relocatable kernel goes, where a fixed one goes)
        let cases = [
            (0, Some(16 * MIB), None),
            (0x1234, Some(16 * MIB), None),
            (0x100_1000, Some(18 * MIB), Some(0x100_1000)),
            (0x40_0000_0000, None, None),
            (u64::MAX - 0x10, None, None),
        ];
        for (pref_address, relocated, fixed) in cases {
            for (relocatable, expected) in [(true, relocated), (false, fixed)] {
                let image = Spec { pref_address, relocatable, ..Spec::default() }.bytes();
                let plan = plan(&parsed(&image), 64 * MIB, b"", 0);
                match expected {
                    Some(start) => assert_eq!(plan.unwrap().kernel.start, start, "{pref_address:#x}"),
                    None => assert!(matches!(plan, Err(PlanError::KernelDoesNotFit { .. })), "{pref_address:#x}"),
                }
            }
        }
    }

    #[test]
    fn a_huge_init_size_does_not_overflow() {
        let image = Spec { init_size: u32::MAX, pref_address: u64::MAX - 0x1f_ffff, ..Spec::default() }.bytes();
        assert!(matches!(plan(&parsed(&image), 8 * GIB, b"", 0), Err(PlanError::KernelDoesNotFit { .. })));
    }

    #[test]
    fn the_initrd_respects_initrd_addr_max_unless_the_kernel_allows_4g() {
        let below_2g = Spec { xloadflags: xloadflags::KERNEL_64, ..Spec::default() }.bytes();
        let plan_2g = plan(&parsed(&below_2g), 3 * GIB, b"", 100 * MIB).unwrap();
        let initrd = plan_2g.initrd.unwrap();
        assert_eq!(initrd.end(), 0x8000_0000);
        assert_eq!(initrd.start % PAGE_BYTES, 0);

        let anywhere = Spec::default().bytes();
        let plan_3g = plan(&parsed(&anywhere), 3 * GIB, b"", 100 * MIB).unwrap();
        assert_eq!(plan_3g.initrd.unwrap().end(), MMIO_HOLE_START);
        // 5 GiB of RAM: the initrd still goes below the hole, which has room.
        let plan_5g = plan(&parsed(&anywhere), 5 * GIB, b"", 100 * MIB).unwrap();
        assert_eq!(plan_5g.initrd.unwrap().end(), MMIO_HOLE_START);
    }

    #[test]
    fn an_initrd_goes_below_the_kernel_or_above_4g_when_it_must() {
        // The kernel at 48 MiB leaves 8 MiB above it in 64 MiB of RAM.
        let image = Spec { pref_address: 0x300_0000, init_size: 8 << 20, ..Spec::default() }.bytes();
        let kernel = parsed(&image);
        let plan_below = plan(&kernel, 64 * MIB, b"", 10 * MIB).unwrap();
        assert_eq!(plan_below.initrd, Some(GuestRegion { start: 38 * MIB, bytes: 10 * MIB }));
        assert_eq!(plan(&kernel, 64 * MIB, b"", 48 * MIB), Err(PlanError::InitrdDoesNotFit { bytes: 48 * MIB }));

        // 3 GiB of initrd fits only above 4 GiB, which this kernel allows.
        let plan_high = plan(&kernel, 7 * GIB, b"", 3 * GIB).unwrap();
        assert_eq!(plan_high.initrd, Some(GuestRegion { start: 5 * GIB, bytes: 3 * GIB }));
        let low_only = Spec { xloadflags: xloadflags::KERNEL_64, ..Spec::default() }.bytes();
        assert_eq!(
            plan(&parsed(&low_only), 7 * GIB, b"", 3 * GIB),
            Err(PlanError::InitrdDoesNotFit { bytes: 3 * GIB })
        );
        assert_eq!(plan(&kernel, 7 * GIB, b"", u64::MAX), Err(PlanError::InitrdDoesNotFit { bytes: u64::MAX }));
    }

    #[test]
    fn the_command_line_is_limited() {
        let image = Spec::default().bytes();
        let kernel = parsed(&image);
        assert!(plan(&kernel, 64 * MIB, &[b'x'; 2047], 0).is_ok());
        assert_eq!(
            plan(&kernel, 64 * MIB, &[b'x'; 2048], 0),
            Err(PlanError::CommandLineTooLong { bytes: 2048, limit: 2047 })
        );
        assert_eq!(plan(&kernel, 64 * MIB, b"quiet\0evil", 0), Err(PlanError::CommandLineHasNul { at: 5 }));
        // A kernel claiming 4 GiB of command line gets the window's 64 KiB.
        let image = Spec { cmdline_size: u32::MAX, ..Spec::default() }.bytes();
        let kernel = parsed(&image);
        assert!(plan(&kernel, 64 * MIB, &vec![b'x'; 0xffff], 0).is_ok());
        assert_eq!(
            plan(&kernel, 64 * MIB, &vec![b'x'; 0x1_0000], 0),
            Err(PlanError::CommandLineTooLong { bytes: 0x1_0000, limit: 0xffff })
        );
        let image = Spec { cmdline_size: 0, ..Spec::default() }.bytes();
        assert!(plan(&parsed(&image), 64 * MIB, b"", 0).is_ok());
    }

    // --- e820

    fn e820_of(memory_bytes: u64) -> Vec<(u64, u64, E820Kind)> {
        e820_map(&RamLayout::of(memory_bytes).unwrap())
            .iter()
            .map(|entry| (entry.region.start, entry.region.end(), entry.kind))
            .collect()
    }

    #[test]
    fn the_e820_map_for_several_sizes() {
        use E820Kind::{Ram, Reserved};
        let low = |end| {
            vec![
                (0, 0x9_fc00, Ram),
                (0x9_fc00, 0xe_0000, Reserved),
                (0xe_0000, 0x10_0000, Reserved),
                (0x10_0000, end, Ram),
            ]
        };
        assert_eq!(e820_of(64 * MIB), low(64 * MIB));
        assert_eq!(e820_of(GIB), low(GIB));
        let mut four = low(3 * GIB);
        four.push((4 * GIB, 5 * GIB, Ram));
        assert_eq!(e820_of(4 * GIB), four);
        let mut five = low(3 * GIB);
        five.push((4 * GIB, 6 * GIB, Ram));
        assert_eq!(e820_of(5 * GIB), five);
        assert_eq!(e820_of(3 * GIB), low(3 * GIB));
    }

    // --- load

    fn loaded(spec: &Spec, memory_bytes: u64, cmdline: &[u8], initrd: &[u8]) -> (BootPlan, SparseMemory, Vec<u8>) {
        let image = spec.bytes();
        let kernel = parsed(&image);
        let plan = plan(&kernel, memory_bytes, cmdline, initrd.len() as u64).unwrap();
        // RAM full of junk: load must write every byte that matters.
        let mut memory = SparseMemory::new(plan.ram, 0xa5);
        load(&plan, &kernel, cmdline, initrd, &mut memory).unwrap();
        (plan, memory, image)
    }

    #[test]
    fn boot_params_reads_back() {
        let initrd: Vec<u8> = (0..10_000u32).map(|byte| u8::try_from(byte % 251).unwrap()).collect();
        let (plan, memory, image) = loaded(&Spec::default(), 64 * MIB, b"console=ttyS0 quiet", &initrd);
        let zero_page = 0x8000;
        let initrd_at = plan.initrd.unwrap().start;

        // The loader's fields.
        assert_eq!(memory.u8(zero_page + 0x210), 0xff, "type_of_loader");
        assert_eq!(memory.u8(zero_page + 0x211), loadflags::LOADED_HIGH, "loadflags");
        assert_eq!(u64::from(memory.u32(zero_page + 0x218)), initrd_at, "ramdisk_image");
        assert_eq!(memory.u32(zero_page + 0x21c), 10_000, "ramdisk_size");
        assert_eq!(memory.u32(zero_page + 0x228), 0x1_0000, "cmd_line_ptr");
        assert_eq!(memory.u32(zero_page + 0x0c0), 0, "ext_ramdisk_image");
        assert_eq!(memory.u32(zero_page + 0x0c4), 0, "ext_ramdisk_size");
        assert_eq!(memory.u32(zero_page + 0x0c8), 0, "ext_cmd_line_ptr");
        assert_eq!(memory.u64(zero_page + 0x070), 0xe_0000, "acpi_rsdp_addr");
        assert_eq!(memory.u16(zero_page + 0x224), 0, "heap_end_ptr");
        assert_eq!(memory.u32(zero_page + 0x23c), 0, "hardware_subarch");
        assert_eq!(memory.u64(zero_page + 0x250), 0, "setup_data");
        assert_eq!(memory.u8(zero_page + 0x1ef), 0, "sentinel");

        // The rest of the header is the image's.
        let header = memory.bytes(zero_page + 0x1f1, 0x26c - 0x1f1);
        for (offset, (copied, original)) in (0x1f1..).zip(header.iter().zip(&image[0x1f1..0x26c])) {
            let loaders = [0x210, 0x211, 0x224, 0x225, 0x226, 0x227]
                .into_iter()
                .chain(0x218..0x220)
                .chain(0x228..0x22c)
                .chain(0x23c..0x248)
                .chain(0x250..0x258);
            if !loaders.clone().any(|field| field == offset) {
                assert_eq!(copied, original, "header byte {offset:#x}");
            }
        }
        assert_eq!(&memory.bytes(zero_page + 0x202, 4), b"HdrS");
        assert_eq!(memory.u16(zero_page + 0x1fe), 0xaa55);
        assert_eq!(memory.u32(zero_page + 0x260), 0x100_0000, "init_size");
        // Past the header, boot_params is zero.
        assert!(memory.bytes(zero_page + 0x26c, 0x290 - 0x26c).iter().all(|byte| *byte == 0));

        // e820.
        assert_eq!(memory.u8(zero_page + 0x1e8), 4);
        let table: Vec<(u64, u64, u32)> = (0..4)
            .map(|index| {
                let entry = zero_page + 0x2d0 + index * 20;
                (memory.u64(entry), memory.u64(entry + 8), memory.u32(entry + 16))
            })
            .collect();
        assert_eq!(
            table,
            [(0, 0x9_fc00, 1), (0x9_fc00, 0x4_0400, 2), (0xe_0000, 0x2_0000, 2), (0x10_0000, 63 * MIB, 1)]
        );
        assert!(memory.bytes(zero_page + 0x2d0 + 4 * 20, 20).iter().all(|byte| *byte == 0));

        // The payloads, and a zero BIOS data area over junk RAM.
        assert!(memory.bytes(0, 0x1000).iter().all(|byte| *byte == 0));
        assert_eq!(memory.bytes(16 * MIB, 0x1_0000), &image[2048..]);
        assert_eq!(memory.bytes(0x1_0000, 20), b"console=ttyS0 quiet\0");
        assert_eq!(memory.bytes(initrd_at, initrd.len()), initrd);
    }

    #[test]
    fn an_initrd_above_4g_fills_the_ext_fields() {
        let spec = Spec { pref_address: 0x300_0000, init_size: 8 << 20, ..Spec::default() };
        let image = spec.bytes();
        let kernel = parsed(&image);
        // 5 GiB of RAM, an initrd too large for the 3 GiB below the hole:
        // plan only (the test does not hold gigabytes), then check the
        // fields with a stand-in plan whose initrd is small but high.
        let plan_high = plan(&kernel, 7 * GIB, b"", 3 * GIB).unwrap();
        let mut small = plan_high.clone();
        small.initrd = Some(GuestRegion { start: 0x1_2345_6000, bytes: 3 });
        let mut memory = SparseMemory::new(small.ram, 0);
        load(&small, &kernel, b"", &[1, 2, 3], &mut memory).unwrap();
        assert_eq!(memory.u32(0x8000 + 0x218), 0x2345_6000);
        assert_eq!(memory.u32(0x8000 + 0x0c0), 1);
        assert_eq!(memory.u32(0x8000 + 0x21c), 3);
        assert_eq!(memory.u32(0x8000 + 0x0c4), 0);
        assert_eq!(memory.bytes(0x1_2345_6000, 3), [1, 2, 3]);
    }

    #[test]
    fn load_refuses_inputs_the_plan_was_not_made_for() {
        let image = Spec::default().bytes();
        let kernel = parsed(&image);
        let plan = plan(&kernel, 64 * MIB, b"abc", 3).unwrap();
        let mut memory = SparseMemory::new(plan.ram, 0);
        assert_eq!(
            load(&plan, &kernel, b"abcd", &[0; 3], &mut memory),
            Err(LoadError::NotThePlanned(Placed::CommandLine))
        );
        assert_eq!(load(&plan, &kernel, b"abc", &[0; 4], &mut memory), Err(LoadError::NotThePlanned(Placed::Initrd)));
        let bigger = Spec { kernel_bytes: 0x2_0000, init_size: 0x2_0000, ..Spec::default() }.bytes();
        let mut small_plan = plan.clone();
        small_plan.kernel.bytes = 0x1_0000;
        assert_eq!(
            load(&small_plan, &parsed(&bigger), b"abc", &[0; 3], &mut memory),
            Err(LoadError::NotThePlanned(Placed::Kernel))
        );
        // Memory smaller than the plan's RAM.
        let mut short = SparseMemory::new(RamLayout::of(20 * MIB).unwrap(), 0);
        assert!(matches!(load(&plan, &kernel, b"abc", &[0; 3], &mut short), Err(LoadError::Unbacked(_))));
    }

    /// The page-table walk done by hand: (physical address, page size) or
    /// None where an entry is not present.
    /// Stages `image`, `initrd` and `cmdline` as the loader does: the
    /// initramfs at the top of RAM, the image below it, the command line
    /// in the page below that.
    fn staged(image: &[u8], initrd: &[u8], cmdline: &[u8], memory_bytes: u64) -> (Staged, SparseMemory) {
        let ram = RamLayout::of(memory_bytes).unwrap();
        let mut memory = SparseMemory::new(ram, 0x5a);
        let top = ram.low.end();
        let initrd_at = (top - initrd.len() as u64) & !(PAGE_BYTES - 1);
        let image_at = (initrd_at - image.len() as u64) & !(PAGE_BYTES - 1);
        let cmdline_at = image_at - PAGE_BYTES;
        memory.write(initrd_at, initrd).unwrap();
        memory.write(image_at, image).unwrap();
        memory.write(cmdline_at, cmdline).unwrap();
        let staged = Staged {
            image: GuestRegion { start: image_at, bytes: image.len() as u64 },
            initrd: (!initrd.is_empty()).then_some(GuestRegion { start: initrd_at, bytes: initrd.len() as u64 }),
            command_line: Some(GuestRegion { start: cmdline_at, bytes: cmdline.len() as u64 }),
        };
        (staged, memory)
    }

    #[test]
    fn a_staged_kernel_boots_as_one_loaded_from_memory() {
        let spec = Spec { kernel_bytes: 0x3_0000, ..Spec::default() };
        let initrd: Vec<u8> = (0..20_000_u32).map(|index| (index % 253) as u8).collect();
        let cmdline = b"console=ttyS0 panic=-1";
        let (reference, expected, image) = loaded(&spec, 64 * MIB, cmdline, &initrd);
        let (staged, mut memory) = staged(&image, &initrd, cmdline, 64 * MIB);
        let plan = boot_staged(&mut memory, 64 * MIB, &staged, b"").unwrap();
        assert_eq!(plan.kernel, reference.kernel);
        assert_eq!(plan.initrd, staged.initrd, "the initramfs stays where it was staged");
        assert_eq!(plan.vcpu, reference.vcpu);
        let kernel = &image[spec.setup_bytes()..spec.setup_bytes() + spec.kernel_bytes];
        assert_eq!(memory.bytes(plan.kernel.start, kernel.len()), kernel);
        assert_eq!(memory.bytes(COMMAND_LINE_ADDRESS, cmdline.len() + 1), b"console=ttyS0 panic=-1\0");
        let initrd_at = staged.initrd.unwrap().start;
        assert_eq!(memory.bytes(initrd_at, initrd.len()), initrd);
        // boot_params: the same as a load from memory, but for where the
        // initramfs is.
        let mut want = expected.bytes(ZERO_PAGE_ADDRESS, 4096);
        want[0x218..0x21c].copy_from_slice(&u32::try_from(initrd_at).unwrap().to_le_bytes());
        assert_eq!(memory.bytes(ZERO_PAGE_ADDRESS, 4096), want);
        assert_eq!(memory.bytes(PAGE_TABLES_ADDRESS, 6 * 4096), expected.bytes(PAGE_TABLES_ADDRESS, 6 * 4096));
    }

    #[test]
    fn staged_parts_in_the_wrong_place_are_refused() {
        let spec = Spec { kernel_bytes: 0x3_0000, ..Spec::default() };
        let image = spec.bytes();
        let initrd = [7u8; 5000];
        let (good, mut memory) = staged(&image, &initrd, b"quiet", 64 * MIB);
        let outside = GuestRegion { start: 64 * MIB - 0x1000, bytes: 0x2000 };
        let over_kernel = GuestRegion { start: 16 * MIB, bytes: image.len() as u64 };
        // A good image, but where the kernel is to be copied.
        memory.write(over_kernel.start, &image).unwrap();
        let low = GuestRegion { start: 0x2_0000, bytes: initrd.len() as u64 };
        for (staged, error) in [
            (Staged { image: outside, ..good }, StagedBootError::Misplaced(Placed::Kernel)),
            (Staged { image: over_kernel, ..good }, StagedBootError::Misplaced(Placed::Kernel)),
            (Staged { initrd: Some(outside), ..good }, StagedBootError::Misplaced(Placed::Initrd)),
            (Staged { initrd: Some(low), ..good }, StagedBootError::Misplaced(Placed::Initrd)),
            (Staged { initrd: Some(over_kernel), ..good }, StagedBootError::Misplaced(Placed::Initrd)),
            (Staged { command_line: Some(outside), ..good }, StagedBootError::Misplaced(Placed::CommandLine)),
            (
                Staged { command_line: Some(GuestRegion { start: 0x20_0000, bytes: 5000 }), ..good },
                StagedBootError::CommandLineTooLong { bytes: 5000 },
            ),
            (
                Staged { image: GuestRegion { start: good.image.start, bytes: 0x100 }, ..good },
                StagedBootError::Image(LinuxImageError::TooShort { bytes: 0x100 }),
            ),
        ] {
            assert_eq!(boot_staged(&mut memory, 64 * MIB, &staged, b""), Err(error), "{staged:?}");
        }
        assert!(boot_staged(&mut memory, 64 * MIB, &good, b"").is_ok());
    }

    #[test]
    fn the_vmm_appends_to_the_staged_command_line() {
        let spec = Spec { kernel_bytes: 0x3_0000, ..Spec::default() };
        let image = spec.bytes();
        let (staged, mut memory) = staged(&image, &[1; 100], b"console=ttyS0", 64 * MIB);
        let plan = boot_staged(&mut memory, 64 * MIB, &staged, b"tsc_early_khz=2000000").unwrap();
        let expected = b"console=ttyS0 tsc_early_khz=2000000\0";
        assert_eq!(plan.command_line.bytes, expected.len() as u64);
        assert_eq!(memory.bytes(COMMAND_LINE_ADDRESS, expected.len()), expected);
        // No staged command line: the appended words alone, no space.
        let bare = Staged { command_line: None, ..staged };
        boot_staged(&mut memory, 64 * MIB, &bare, b"quiet").unwrap();
        assert_eq!(memory.bytes(COMMAND_LINE_ADDRESS, 6), b"quiet\0");
        // Longer than the limit: cut.
        let long = [b'x'; MAX_APPENDED_COMMAND_LINE + 10];
        let plan = boot_staged(&mut memory, 64 * MIB, &bare, &long).unwrap();
        assert_eq!(plan.command_line.bytes, MAX_APPENDED_COMMAND_LINE as u64 + 1);
    }

    proptest! {
        /// Whatever the staged bytes and regions, staging never panics.
        #[test]
        fn hostile_staged_images_never_panic(
            header in proptest::collection::vec(any::<u8>(), 0..0x300),
            image_at in 0_u64..(40 * MIB),
            image_bytes in 0_u64..(40 * MIB),
            initrd in proptest::option::of((0_u64..(40 * MIB), 0_u64..(40 * MIB))),
            cmdline in proptest::option::of((0_u64..(40 * MIB), 0_u64..8192)),
        ) {
            let ram = RamLayout::of(32 * MIB).unwrap();
            let mut memory = SparseMemory::new(ram, 0);
            if image_at + header.len() as u64 <= 32 * MIB {
                memory.write(image_at, &header).unwrap();
            }
            let region = |(start, bytes): (u64, u64)| GuestRegion { start, bytes };
            let staged = Staged {
                image: GuestRegion { start: image_at, bytes: image_bytes },
                initrd: initrd.map(region),
                command_line: cmdline.map(region),
            };
            let _ = boot_staged(&mut memory, 32 * MIB, &staged, b"tsc_early_khz=1");
        }
    }

    fn walk(memory: &SparseMemory, cr3: u64, linear: u64) -> Option<(u64, u64)> {
        let mut table = cr3 & !0xfff;
        for (level, shift) in [(4, 39), (3, 30), (2, 21)] {
            let entry = memory.u64(table + ((linear >> shift) & 0x1ff) * 8);
            if entry & entry::PRESENT == 0 {
                return None;
            }
            assert_ne!(entry & entry::WRITABLE, 0);
            let address = entry & 0x000f_ffff_ffff_f000;
            if level == 2 {
                assert_ne!(entry & entry::LARGE, 0, "2 MiB pages");
                return Some((address | (linear & 0x1f_ffff), 2 * MIB));
            }
            assert_eq!(entry & entry::LARGE, 0, "no 1 GiB pages");
            table = address;
        }
        None
    }

    #[test]
    fn the_page_tables_identity_map_4_gib() {
        let (plan, mut memory, _) = loaded(&Spec::default(), 5 * GIB, b"", &[]);
        let control = ControlRegisters {
            cr0: plan.vcpu.cr0,
            cr3: plan.vcpu.cr3,
            cr4: plan.vcpu.cr4,
            efer: plan.vcpu.efer,
            interruptibility: 0,
        };
        let fetch = MemoryAccess { access: Access::Fetch, user: false, alignment_check: false };
        for linear in [0, 0x8000, 0x1_0000, 16 * MIB + 0x200, 0x1234_5678, 0xbfff_ffff, 0xfee0_0000, 0xffff_ffff] {
            assert_eq!(walk(&memory, plan.vcpu.cr3, linear), Some((linear, 2 * MIB)), "{linear:#x}");
            assert_eq!(translate(&mut memory, &control, linear, fetch), Ok(linear), "{linear:#x}");
        }
        for linear in [4 * GIB, 5 * GIB - 1, 512 * GIB] {
            assert_eq!(walk(&memory, plan.vcpu.cr3, linear), None, "{linear:#x}");
        }
    }

    #[test]
    fn the_gdt_holds_flat_boot_code_and_data() {
        let (plan, memory, _) = loaded(&Spec::default(), 64 * MIB, b"", &[]);
        let descriptor = |selector: u16| memory.u64(plan.vcpu.gdtr.base + u64::from(selector));
        assert_eq!(descriptor(0), 0);
        assert_eq!(descriptor(8), 0);
        let decode = |descriptor: u64| {
            let base = (descriptor >> 16) & 0xff_ffff | (descriptor >> 56) << 24;
            let limit = descriptor & 0xffff | ((descriptor >> 48) & 0xf) << 16;
            let access = (descriptor >> 40) & 0xff;
            let flags = (descriptor >> 52) & 0xf;
            (base, limit, access, flags)
        };
        // Code: present, DPL 0, S, execute/read accessed; G and L, not D.
        assert_eq!(decode(descriptor(BOOT_CODE_SELECTOR)), (0, 0xf_ffff, 0x9b, 0b1010));
        // Data: present, DPL 0, S, read/write accessed; G and D/B.
        assert_eq!(decode(descriptor(BOOT_DATA_SELECTOR)), (0, 0xf_ffff, 0x93, 0b1100));
        assert_eq!(plan.vcpu.gdtr, TableRegister { base: 0x1000, limit: 31 });
        assert_eq!(plan.vcpu.cs, SegmentRegister { selector: 0x10, base: 0, limit: 0xffff_ffff, attributes: 0xa9b });
        for data in [plan.vcpu.ds, plan.vcpu.es, plan.vcpu.ss] {
            assert_eq!(data, SegmentRegister { selector: 0x18, base: 0, limit: 0xffff_ffff, attributes: 0xc93 });
        }
    }

    #[test]
    fn the_vcpu_state_is_the_64_bit_entry_and_the_kernel_accepts_it() {
        let image = Spec::default().bytes();
        let state = plan(&parsed(&image), 64 * MIB, b"", 0).unwrap().vcpu;
        assert_eq!(state.rip, 0x100_0200);
        assert_eq!(state.rsi, 0x8000);
        assert_eq!(state.rsp, 0x1_0000);
        assert_eq!(state.rflags, 0x2);
        assert_eq!(state.cr0, 0x8000_0011);
        assert_eq!(state.cr3, 0x2000);
        assert_eq!(state.cr4, 0x20);
        assert_eq!(state.efer, 0x500);
        // Every value passes the kernel's own WriteState checks.
        let mut fields = vec![
            (GuestField::RIP, state.rip),
            (GuestField::RSP, state.rsp),
            (GuestField::RFLAGS, state.rflags),
            (GuestField::CR0, state.cr0),
            (GuestField::CR3, state.cr3),
            (GuestField::CR4, state.cr4),
            (GuestField::EFER, state.efer),
            (GuestField::GDTR_BASE, state.gdtr.base),
            (GuestField::GDTR_LIMIT, u64::from(state.gdtr.limit)),
            (GuestField::IDTR_BASE, state.idtr.base),
            (GuestField::IDTR_LIMIT, u64::from(state.idtr.limit)),
        ];
        let segments = [
            (Segment::Es, state.es),
            (Segment::Cs, state.cs),
            (Segment::Ss, state.ss),
            (Segment::Ds, state.ds),
            (Segment::Fs, state.fs),
            (Segment::Gs, state.gs),
            (Segment::Ldtr, state.ldtr),
            (Segment::Tr, state.tr),
        ];
        for (segment, register) in segments {
            fields.push((GuestField::segment(segment, SegmentPart::Selector), u64::from(register.selector)));
            fields.push((GuestField::segment(segment, SegmentPart::Base), register.base));
            fields.push((GuestField::segment(segment, SegmentPart::Limit), u64::from(register.limit)));
            fields.push((GuestField::segment(segment, SegmentPart::Attributes), u64::from(register.attributes)));
            // Present and usable.
            assert_ne!(register.attributes & 0x80, 0);
        }
        for (field, value) in &fields {
            assert_eq!(check(*field, *value), Ok(*value), "{field:?}");
        }
        // What the VMM writes is exactly this list but for the three that
        // travel in VMEnter's registers.
        let mut written: Vec<_> = state.fields().into_iter().collect();
        let mut expected: Vec<_> = fields[3..].to_vec();
        written.sort_by_key(|(field, _)| field.number());
        expected.sort_by_key(|(field, _)| field.number());
        assert_eq!(written, expected);
        let registers = state.registers();
        assert_eq!((registers.rip, registers.rflags, registers.event), (0x100_0200, 0x2, 0));
        assert_eq!((registers.general[4], registers.general[6]), (0x1_0000, 0x8000));
        assert_eq!(registers.general.iter().filter(|value| **value != 0).count(), 2);
    }

    fn any_spec() -> impl Strategy<Value = Spec> {
        (
            (1u32..0x400, 0u8..=6),
            prop_oneof![Just(0x100_0000u64), Just(0x20_0000), any::<u64>(), 0u64..0x1_0000_0000],
            prop_oneof![Just(0x20_0000u32), Just(0x1000), Just(1), Just(0x8000_0000)],
            (any::<bool>(), any::<bool>()),
            prop_oneof![Just(0x100_0000u32), Just(0x337_8000), any::<u32>()],
            prop_oneof![Just(0x7fff_ffffu32), any::<u32>()],
        )
            .prop_map(
                |(
                    (paragraphs, setup_sects),
                    pref_address,
                    kernel_alignment,
                    (relocatable, above_4g),
                    init_size,
                    initrd_addr_max,
                )| {
                    let kernel_bytes = paragraphs as usize * 16;
                    Spec {
                        setup_sects,
                        kernel_bytes,
                        pref_address,
                        kernel_alignment,
                        relocatable,
                        xloadflags: if above_4g {
                            xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G
                        } else {
                            xloadflags::KERNEL_64
                        },
                        init_size: init_size.max(u32::try_from(kernel_bytes).unwrap()),
                        initrd_addr_max,
                        ..Spec::default()
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_a_damaged_header(
            damage in proptest::collection::vec((0x1f0usize..0x270, any::<u8>()), 1..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut image = Spec::default().bytes();
            for (offset, byte) in damage {
                image[offset] = byte;
            }
            let length = cut.index(image.len() + 1);
            if let Ok(parsed) = parse(&image[..length]) {
                let syssize = u32::from_le_bytes(image[SYSSIZE..SYSSIZE + 4].try_into().unwrap());
                prop_assert_eq!(parsed.kernel.len() as u64, u64::from(syssize) * 16);
                prop_assert!(parsed.setup.len() + parsed.kernel.len() <= length);
                prop_assert!(u64::from(parsed.header.init_size) >= parsed.kernel.len() as u64);
            }
        }

        #[test]
        fn a_plan_places_everything_apart_inside_ram(
            spec in any_spec(),
            memory_bytes in prop_oneof![0u64..8 << 30, Just(u64::MAX), (1u64 << 52) - (1 << 20)..1 << 52],
            cmdline_bytes in 0usize..3000,
            initrd_bytes in prop_oneof![Just(0u64), 0u64..1 << 32, any::<u64>()],
        ) {
            let image = spec.bytes();
            let kernel = parse(&image).unwrap();
            let cmdline = vec![b'x'; cmdline_bytes];
            let Ok(plan) = plan(&kernel, memory_bytes, &cmdline, initrd_bytes) else { return Ok(()) };
            let placed: Vec<(Placed, GuestRegion)> = plan.placed().collect();
            for (index, (what, region)) in placed.iter().enumerate() {
                prop_assert!(plan.ram.contains(region), "{:?} {:x?} outside RAM", what, region);
                prop_assert!(region.start.checked_add(region.bytes).is_some());
                for (other, other_region) in &placed[index + 1..] {
                    prop_assert!(!region.overlaps(other_region), "{:?} {:x?} overlaps {:?} {:x?}", what, region, other, other_region);
                }
            }
            prop_assert!(plan.kernel.start >= HIGH_MEMORY_START);
            prop_assert_eq!(plan.kernel.bytes, u64::from(spec.init_size));
            prop_assert!(!spec.relocatable || plan.kernel.start % u64::from(spec.kernel_alignment).max(PAGE_BYTES) == 0);
            prop_assert!(plan.kernel.end() <= MMIO_HOLE_START);
            prop_assert_eq!(plan.vcpu.rip, plan.kernel.start + 0x200);
            prop_assert_eq!(plan.command_line.bytes, cmdline_bytes as u64 + 1);
            if let Some(initrd) = plan.initrd {
                prop_assert_eq!(initrd.bytes, initrd_bytes);
                prop_assert_eq!(initrd.start % PAGE_BYTES, 0);
                let above_4g = spec.xloadflags & xloadflags::CAN_BE_LOADED_ABOVE_4G != 0;
                prop_assert!(above_4g || initrd.end() - 1 <= u64::from(spec.initrd_addr_max));
            } else {
                prop_assert_eq!(initrd_bytes, 0);
            }
            let e820_ram: u64 = plan.e820.iter().filter(|entry| entry.kind == E820Kind::Ram).map(|entry| entry.region.bytes).sum();
            prop_assert_eq!(e820_ram, memory_bytes - (HIGH_MEMORY_START - CONVENTIONAL_END));
        }
    }
}
