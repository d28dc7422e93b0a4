//! The boot information a Multiboot1 or Multiboot2 bootloader hands the
//! kernel, parsed into one protocol-neutral [`BootInfo`].
//!
//! All of it is untrusted input: every pointer, length and offset is checked
//! against the memory the kernel can read ([`PhysMemory`]) and against the
//! structure that holds it, all arithmetic is checked, and nothing here
//! panics. Malformed input yields a [`BootInfoError`]; nothing is silently
//! truncated.
//!
//! String policy: the kernel command line and module strings must be valid
//! UTF-8 and NUL-terminated within [`MAX_STRING_LEN`] bytes (else an error);
//! the bootloader name is for display only, so a name that is not UTF-8
//! becomes `None`. A string pointer of zero (Multiboot1) means "no string".

mod multiboot1;
mod multiboot2;

use core::fmt;

pub use multiboot1::{MULTIBOOT1_BOOTLOADER_MAGIC, parse_multiboot1};
pub use multiboot2::{MULTIBOOT2_BOOTLOADER_MAGIC, parse_multiboot2};

use crate::memory::{PhysAddr, PhysRange};

/// The most memory-map regions [`BootInfo`] holds; a longer map is an error.
pub const MAX_MEMORY_REGIONS: usize = 128;
/// The most boot modules [`BootInfo`] holds; more is an error.
pub const MAX_MODULES: usize = 32;
/// The longest string (without its NUL) read through a bare pointer.
pub const MAX_STRING_LEN: usize = 4096;
/// The most separate pieces of memory the boot information itself occupies
/// ([`BootInfo::info_ranges`]). Multiboot1 scatters it over the info
/// structure, the command-line string, the bootloader-name string, the
/// memory map, the module list and one string per module; Multiboot2 keeps it
/// in one tag block.
pub const MAX_INFO_RANGES: usize = 5 + MAX_MODULES;
/// The capacity a caller needs to collect [`BootInfo::occupied_ranges`]:
/// every info range and every module.
pub const MAX_OCCUPIED_RANGES: usize = MAX_INFO_RANGES + MAX_MODULES;

/// Read access to physical memory, which the kernel provides through its
/// physical-memory window.
pub trait PhysMemory {
    /// The `len` bytes from `start`, or `None` if any of them lies outside
    /// the memory the implementation can read.
    fn read(&self, start: PhysAddr, len: usize) -> Option<&[u8]>;
}

/// Which Multiboot protocol the bootloader used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Multiboot specification 0.6.96.
    Multiboot1,
    /// Multiboot2 specification 2.0.
    Multiboot2,
}

/// What the firmware says a memory region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM free for the kernel to use (type 1).
    Available,
    /// Anything the kernel must not use (type 2 and every unknown type).
    Reserved,
    /// RAM holding ACPI tables, reusable once they are read (type 3).
    AcpiReclaimable,
    /// Memory to preserve across hibernation (type 4).
    AcpiNvs,
    /// Defective RAM (type 5).
    Defective,
}

impl MemoryKind {
    /// The kind for a Multiboot memory-map `type` value (both protocols use
    /// the same values).
    #[must_use]
    pub const fn from_multiboot_type(memory_type: u32) -> Self {
        match memory_type {
            1 => Self::Available,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Defective,
            _ => Self::Reserved,
        }
    }
}

/// One entry of the firmware memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// The addresses the entry covers (never empty).
    pub range: PhysRange,
    /// What the firmware says they are.
    pub kind: MemoryKind,
}

/// A boot module the bootloader loaded into memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    /// Where the module's bytes lie.
    pub range: PhysRange,
    /// The string the bootloader configuration gave the module.
    pub cmdline: &'a str,
}

/// Which ACPI Root System Description Pointer structure a Multiboot2 tag
/// copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpVersion {
    /// ACPI 1.0 RSDP (tag 14): 20 bytes, points to the RSDT.
    V1,
    /// ACPI 2.0+ RSDP (tag 15): at least 36 bytes, also points to the XSDT.
    V2,
}

/// The bootloader's copy of the ACPI RSDP (Multiboot2 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiRsdp<'a> {
    /// Which structure the bytes hold.
    pub version: RsdpVersion,
    /// The RSDP bytes as the bootloader copied them (checksums unchecked).
    pub bytes: &'a [u8],
}

impl AcpiRsdp<'_> {
    /// The RSDT's physical address (RSDP offset 16).
    #[must_use]
    pub fn rsdt_address(&self) -> Option<PhysAddr> {
        read_u32(self.bytes, 16).map(|address| PhysAddr::new(u64::from(address)))
    }

    /// The XSDT's physical address (RSDP offset 24), for a version-2 RSDP.
    #[must_use]
    pub fn xsdt_address(&self) -> Option<PhysAddr> {
        match self.version {
            RsdpVersion::V1 => None,
            RsdpVersion::V2 => read_u64(self.bytes, 24).map(PhysAddr::new),
        }
    }
}

/// The boot information, whichever protocol delivered it. Strings borrow
/// from the bootloader's structures, which therefore stay reserved (see
/// [`BootInfo::occupied_ranges`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo<'a> {
    /// Which protocol the bootloader used.
    pub protocol: Protocol,
    /// The bootloader's name, if it gave one in UTF-8.
    pub bootloader_name: Option<&'a str>,
    /// The kernel command line (empty if the bootloader gave none).
    pub cmdline: &'a str,
    /// The firmware memory map in the bootloader's order, without empty
    /// entries; synthesised from the basic lower/upper memory sizes when the
    /// bootloader gave no map.
    pub memory_map: heapless::Vec<MemoryRegion, MAX_MEMORY_REGIONS>,
    /// The map above was synthesised from the basic sizes: it lists RAM
    /// only, so its holes are not known to be devices.
    pub basic_memory_only: bool,
    /// The boot modules in the bootloader's order.
    pub modules: heapless::Vec<Module<'a>, MAX_MODULES>,
    /// The memory the boot information itself occupies, since `BootInfo`
    /// borrows from it. For Multiboot2 that is the whole tag block; for
    /// Multiboot1 it is the info structure and every structure and string it
    /// points to, each reported on its own so that a piece far from the rest
    /// does not drag the memory between them along. The ranges are never
    /// empty, and pieces that overlap or touch are merged, so no two of them
    /// overlap or touch; their order means nothing.
    pub info_ranges: heapless::Vec<PhysRange, MAX_INFO_RANGES>,
    /// The ACPI RSDP copy, if the bootloader gave one (version 2 preferred).
    pub rsdp: Option<AcpiRsdp<'a>>,
}

impl BootInfo<'_> {
    /// The bytes the memory map calls available, summed as reported (an
    /// overlap counts twice; the frame allocator is the authority on what is
    /// really free). Saturates at `u64::MAX`.
    #[must_use]
    pub fn usable_bytes(&self) -> u64 {
        self.memory_map
            .iter()
            .filter(|region| region.kind == MemoryKind::Available)
            .fold(0_u64, |total, region| total.saturating_add(region.range.len()))
    }

    /// The ranges the boot information occupies: every info range (see
    /// [`BootInfo::info_ranges`]) and then every module, at most
    /// [`MAX_OCCUPIED_RANGES`] of them. The frame allocator must not hand
    /// these out (the kernel adds its own image).
    pub fn occupied_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.info_ranges.iter().copied().chain(self.modules.iter().map(|module| module.range))
    }

    /// Counts for a one-line boot log.
    #[must_use]
    pub fn summary(&self) -> MemorySummary {
        let available_region_count =
            self.memory_map.iter().filter(|region| region.kind == MemoryKind::Available).count();
        MemorySummary {
            protocol: self.protocol,
            available_bytes: self.usable_bytes(),
            available_region_count,
            other_region_count: self.memory_map.len().saturating_sub(available_region_count),
            module_count: self.modules.len(),
        }
    }
}

/// Memory-map counts for logging, from [`BootInfo::summary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySummary {
    /// Which protocol the bootloader used.
    pub protocol: Protocol,
    /// [`BootInfo::usable_bytes`].
    pub available_bytes: u64,
    /// How many regions are available RAM.
    pub available_region_count: usize,
    /// How many regions are anything else.
    pub other_region_count: usize,
    /// How many boot modules there are.
    pub module_count: usize,
}

impl fmt::Display for MemorySummary {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:?}: {} MiB available in {} regions, {} other regions, {} modules",
            self.protocol,
            self.available_bytes / (1024 * 1024),
            self.available_region_count,
            self.other_region_count,
            self.module_count,
        )
    }
}

/// Which part of the boot information an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The fixed info structure (Multiboot1) or the tag list (Multiboot2).
    Info,
    /// The memory map.
    MemoryMap,
    /// The Multiboot1 module list.
    ModuleList,
    /// The kernel command line.
    Cmdline,
    /// The bootloader name.
    BootloaderName,
    /// A module's string.
    ModuleCmdline,
}

impl fmt::Display for Field {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Info => "boot information",
            Self::MemoryMap => "memory map",
            Self::ModuleList => "module list",
            Self::Cmdline => "kernel command line",
            Self::BootloaderName => "bootloader name",
            Self::ModuleCmdline => "module string",
        })
    }
}

/// Why the boot information was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The bootloader magic matched neither Multiboot protocol.
    UnknownMagic(u32),
    /// A structure lies (partly) outside the memory the kernel can read, or
    /// its end would pass the top of the address space.
    Unreadable {
        /// Which structure.
        field: Field,
        /// Where it was said to start.
        address: PhysAddr,
    },
    /// The Multiboot2 information does not start 8-byte aligned.
    MisalignedInfo(PhysAddr),
    /// The Multiboot2 `total_size` cannot hold the fixed part and an end tag.
    InvalidTotalSize(u32),
    /// A Multiboot2 tag is smaller than its fixed fields or runs past
    /// `total_size`.
    MalformedTag {
        /// The tag's type.
        tag_type: u32,
        /// The tag's offset from the start of the information.
        offset: usize,
        /// The tag's stated size.
        size: u32,
    },
    /// The Multiboot2 tags ran out before an end tag.
    MissingEndTag,
    /// A Multiboot2 tag that may appear once appeared again.
    DuplicateTag(u32),
    /// A string has no NUL within its tag or within [`MAX_STRING_LEN`]
    /// bytes.
    UnterminatedString(Field),
    /// A string that must be UTF-8 is not.
    InvalidUtf8(Field),
    /// The memory map's entry size is too small for an entry, or its length
    /// is not a whole number of entries.
    MalformedMemoryMap,
    /// The memory map has more non-empty entries than [`MAX_MEMORY_REGIONS`].
    MemoryMapTooLong,
    /// There are more modules than [`MAX_MODULES`].
    TooManyModules,
    /// A memory-map entry's end would pass the top of the address space.
    MemoryRegionWraps {
        /// The entry's base address.
        base: PhysAddr,
        /// The entry's length in bytes.
        len_bytes: u64,
    },
    /// A module ends before it starts.
    InvalidModuleRange(PhysRange),
    /// The bootloader gave neither a memory map nor basic memory sizes.
    NoMemoryMap,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMagic(magic) => write!(formatter, "unknown bootloader magic {magic:#x}"),
            Self::Unreadable { field, address } => {
                write!(formatter, "{field} at {address} is outside readable memory")
            }
            Self::MisalignedInfo(address) => {
                write!(formatter, "Multiboot2 information at {address} is not 8-byte aligned")
            }
            Self::InvalidTotalSize(size) => {
                write!(formatter, "Multiboot2 total size {size} is too small")
            }
            Self::MalformedTag { tag_type, offset, size } => {
                write!(formatter, "Multiboot2 tag type {tag_type} at offset {offset} has bad size {size}")
            }
            Self::MissingEndTag => formatter.write_str("Multiboot2 tags have no end tag"),
            Self::DuplicateTag(tag_type) => {
                write!(formatter, "Multiboot2 tag type {tag_type} appears twice")
            }
            Self::UnterminatedString(field) => write!(formatter, "{field} is not NUL-terminated"),
            Self::InvalidUtf8(field) => write!(formatter, "{field} is not UTF-8"),
            Self::MalformedMemoryMap => formatter.write_str("memory map entries are malformed"),
            Self::MemoryMapTooLong => write!(formatter, "memory map has more than {MAX_MEMORY_REGIONS} entries"),
            Self::TooManyModules => write!(formatter, "more than {MAX_MODULES} boot modules"),
            Self::MemoryRegionWraps { base, len_bytes } => {
                write!(formatter, "memory region at {base} of {len_bytes:#x} bytes wraps around")
            }
            Self::InvalidModuleRange(range) => {
                write!(formatter, "module range {range} is inverted")
            }
            Self::NoMemoryMap => formatter.write_str("bootloader gave no memory information"),
        }
    }
}

/// Parses the boot information of whichever protocol `magic` (the value the
/// bootloader left in EAX) names.
///
/// # Errors
///
/// [`BootInfoError::UnknownMagic`], or whatever the protocol's parser
/// reports.
pub fn parse<M: PhysMemory>(magic: u32, info: PhysAddr, memory: &M) -> Result<BootInfo<'_>, BootInfoError> {
    match magic {
        MULTIBOOT1_BOOTLOADER_MAGIC => parse_multiboot1(info, memory),
        MULTIBOOT2_BOOTLOADER_MAGIC => parse_multiboot2(info, memory),
        _ => Err(BootInfoError::UnknownMagic(magic)),
    }
}

/// A `BootInfo` with nothing in it yet.
const fn empty_boot_info<'a>(protocol: Protocol) -> BootInfo<'a> {
    BootInfo {
        protocol,
        bootloader_name: None,
        cmdline: "",
        memory_map: heapless::Vec::new(),
        basic_memory_only: false,
        modules: heapless::Vec::new(),
        info_ranges: heapless::Vec::new(),
        rsdp: None,
    }
}

/// Records that the boot information occupies `range`, merging it with every
/// range in `ranges` that it overlaps or touches. An empty `range` is
/// skipped.
///
/// # Errors
///
/// [`BootInfoError::TooManyModules`] if `ranges` is full; the parsers add at
/// most [`MAX_INFO_RANGES`] pieces, so only more module strings than
/// [`MAX_MODULES`] could get there.
fn add_info_range(
    ranges: &mut heapless::Vec<PhysRange, MAX_INFO_RANGES>,
    range: PhysRange,
) -> Result<(), BootInfoError> {
    if range.is_empty() {
        return Ok(());
    }
    // The held ranges are non-empty and pairwise neither overlap nor touch,
    // so a held range that touches `range` grown by other held ranges
    // touches `range` itself: one pass finds every range to merge.
    let mut merged = range;
    ranges.retain(|held| {
        let touches = held.start <= merged.end && merged.start <= held.end;
        if touches {
            merged.start = merged.start.min(held.start);
            merged.end = merged.end.max(held.end);
        }
        !touches
    });
    ranges.push(merged).map_err(|_| BootInfoError::TooManyModules)
}

/// The little-endian `u32` at `offset` in `bytes`.
fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    field.try_into().ok().map(u32::from_le_bytes)
}

/// The little-endian `u64` at `offset` in `bytes`.
fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    field.try_into().ok().map(u64::from_le_bytes)
}

/// The string before the first NUL in `bytes`.
fn string_before_nul(bytes: &[u8], field: Field) -> Result<&[u8], BootInfoError> {
    let len = bytes.iter().position(|&byte| byte == 0).ok_or(BootInfoError::UnterminatedString(field))?;
    bytes.get(..len).ok_or(BootInfoError::UnterminatedString(field))
}

/// `bytes` as UTF-8, or [`BootInfoError::InvalidUtf8`].
fn to_utf8(bytes: &[u8], field: Field) -> Result<&str, BootInfoError> {
    core::str::from_utf8(bytes).map_err(|_| BootInfoError::InvalidUtf8(field))
}

/// Appends the memory-map entry `base`/`len_bytes`/`memory_type`, skipping
/// empty entries.
fn push_region(
    memory_map: &mut heapless::Vec<MemoryRegion, MAX_MEMORY_REGIONS>,
    base: u64,
    len_bytes: u64,
    memory_type: u32,
) -> Result<(), BootInfoError> {
    let base = PhysAddr::new(base);
    let range =
        PhysRange::from_start_len(base, len_bytes).ok_or(BootInfoError::MemoryRegionWraps { base, len_bytes })?;
    if range.is_empty() {
        return Ok(());
    }
    let kind = MemoryKind::from_multiboot_type(memory_type);
    memory_map.push(MemoryRegion { range, kind }).map_err(|_| BootInfoError::MemoryMapTooLong)
}

/// Builds a memory map from the basic sizes: `lower_kib` KiB from address 0
/// and `upper_kib` KiB from 1 MiB, both available.
fn push_basic_memory(
    memory_map: &mut heapless::Vec<MemoryRegion, MAX_MEMORY_REGIONS>,
    lower_kib: u32,
    upper_kib: u32,
) -> Result<(), BootInfoError> {
    const AVAILABLE: u32 = 1;
    push_region(memory_map, 0, u64::from(lower_kib) * 1024, AVAILABLE)?;
    push_region(memory_map, 0x10_0000, u64::from(upper_kib) * 1024, AVAILABLE)
}

/// Checks and builds a module's range from its start and (exclusive) end.
fn module_range(start: u32, end: u32) -> Result<PhysRange, BootInfoError> {
    let range = PhysRange::new(PhysAddr::new(u64::from(start)), PhysAddr::new(u64::from(end)));
    if end < start {
        return Err(BootInfoError::InvalidModuleRange(range));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Physical memory for tests: `bytes` at `base`, nothing elsewhere.
    pub(super) struct FakeMemory {
        base: u64,
        bytes: Vec<u8>,
    }

    impl FakeMemory {
        /// Memory holding a copy of `bytes` from address `base`.
        pub(super) fn new(base: u64, bytes: &[u8]) -> Self {
            Self { base, bytes: bytes.to_vec() }
        }

        /// `len` zero bytes from address `base`.
        pub(super) fn zeroed(base: u64, len: usize) -> Self {
            Self { base, bytes: vec![0; len] }
        }

        /// Overwrites the bytes at `address` (which must lie inside).
        pub(super) fn write(&mut self, address: u64, data: &[u8]) {
            let offset = usize::try_from(address - self.base).unwrap();
            self.bytes[offset..offset + data.len()].copy_from_slice(data);
        }
    }

    /// `value` as a `u32`; test fixtures are small.
    pub(super) fn u32_of<T: TryInto<u32>>(value: T) -> u32 {
        value.try_into().ok().unwrap()
    }

    impl PhysMemory for FakeMemory {
        fn read(&self, start: PhysAddr, len: usize) -> Option<&[u8]> {
            let offset = usize::try_from(start.as_u64().checked_sub(self.base)?).ok()?;
            self.bytes.get(offset..offset.checked_add(len)?)
        }
    }

    /// Whether `ranges` are all non-empty and no two of them overlap or
    /// touch, as [`BootInfo::info_ranges`] promises.
    pub(super) fn well_formed(ranges: &[PhysRange]) -> bool {
        ranges.iter().all(|range| !range.is_empty())
            && ranges
                .iter()
                .enumerate()
                .all(|(index, a)| ranges[index + 1..].iter().all(|b| a.end < b.start || b.end < a.start))
    }

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
    }

    /// `ranges` sorted by start.
    pub(super) fn sorted(ranges: &[PhysRange]) -> Vec<PhysRange> {
        let mut ranges = ranges.to_vec();
        ranges.sort_unstable();
        ranges
    }

    #[test]
    fn info_ranges_merge_what_overlaps_or_touches() {
        let mut ranges = heapless::Vec::new();
        add_info_range(&mut ranges, range(0x1000, 0x1100)).unwrap();
        add_info_range(&mut ranges, range(0x5000, 0x5010)).unwrap();
        add_info_range(&mut ranges, range(0x3000, 0x3000)).unwrap();
        add_info_range(&mut ranges, range(0x3000, 0x2000)).unwrap();
        assert_eq!(sorted(&ranges), [range(0x1000, 0x1100), range(0x5000, 0x5010)]);
        add_info_range(&mut ranges, range(0x1100, 0x1200)).unwrap();
        add_info_range(&mut ranges, range(0x5008, 0x5020)).unwrap();
        add_info_range(&mut ranges, range(0x1010, 0x1020)).unwrap();
        assert_eq!(sorted(&ranges), [range(0x1000, 0x1200), range(0x5000, 0x5020)]);
        add_info_range(&mut ranges, range(0x8000, 0x8001)).unwrap();
        add_info_range(&mut ranges, range(0x1200, 0x5000)).unwrap();
        assert_eq!(sorted(&ranges), [range(0x1000, 0x5020), range(0x8000, 0x8001)]);
    }

    #[test]
    fn info_ranges_report_when_full() {
        let mut ranges = heapless::Vec::new();
        for index in 0..MAX_INFO_RANGES as u64 {
            add_info_range(&mut ranges, range(index * 0x10, index * 0x10 + 1)).unwrap();
        }
        assert_eq!(ranges.len(), MAX_INFO_RANGES);
        assert_eq!(add_info_range(&mut ranges, range(0x10_0000, 0x10_0001)), Err(BootInfoError::TooManyModules));
        add_info_range(&mut ranges, range(0x10, 0x20)).unwrap();
        assert_eq!(ranges.len(), MAX_INFO_RANGES - 1);
    }

    proptest! {
        /// Whatever ranges are added, the result covers exactly the
        /// addresses they cover, in well-formed ranges.
        #[test]
        fn info_ranges_cover_exactly_what_was_added(
            pieces in prop::collection::vec((0_u64..256, 0_u64..32), 0..=MAX_INFO_RANGES),
        ) {
            let pieces: Vec<_> = pieces.into_iter().map(|(start, len)| range(start, start + len)).collect();
            let mut ranges = heapless::Vec::new();
            for &piece in &pieces {
                prop_assert_eq!(add_info_range(&mut ranges, piece), Ok(()));
            }
            prop_assert!(well_formed(&ranges));
            for address in (0..300).map(PhysAddr::new) {
                let added = pieces.iter().any(|piece| piece.contains(address));
                prop_assert_eq!(ranges.iter().any(|range| range.contains(address)), added);
            }
        }
    }

    #[test]
    fn memory_types() {
        assert_eq!(MemoryKind::from_multiboot_type(1), MemoryKind::Available);
        assert_eq!(MemoryKind::from_multiboot_type(2), MemoryKind::Reserved);
        assert_eq!(MemoryKind::from_multiboot_type(3), MemoryKind::AcpiReclaimable);
        assert_eq!(MemoryKind::from_multiboot_type(4), MemoryKind::AcpiNvs);
        assert_eq!(MemoryKind::from_multiboot_type(5), MemoryKind::Defective);
        assert_eq!(MemoryKind::from_multiboot_type(0), MemoryKind::Reserved);
        assert_eq!(MemoryKind::from_multiboot_type(u32::MAX), MemoryKind::Reserved);
    }

    #[test]
    fn unknown_magic_is_rejected() {
        let memory = FakeMemory::new(0, &[]);
        assert_eq!(parse(0xdead_beef, PhysAddr::ZERO, &memory), Err(BootInfoError::UnknownMagic(0xdead_beef)));
    }

    #[test]
    fn every_error_displays() {
        use core::fmt::Write;
        let errors = [
            BootInfoError::UnknownMagic(1),
            BootInfoError::Unreadable { field: Field::MemoryMap, address: PhysAddr::new(8) },
            BootInfoError::MisalignedInfo(PhysAddr::new(4)),
            BootInfoError::InvalidTotalSize(3),
            BootInfoError::MalformedTag { tag_type: 6, offset: 8, size: 4 },
            BootInfoError::MissingEndTag,
            BootInfoError::DuplicateTag(1),
            BootInfoError::UnterminatedString(Field::Cmdline),
            BootInfoError::InvalidUtf8(Field::ModuleCmdline),
            BootInfoError::MalformedMemoryMap,
            BootInfoError::MemoryMapTooLong,
            BootInfoError::TooManyModules,
            BootInfoError::MemoryRegionWraps { base: PhysAddr::new(u64::MAX), len_bytes: 2 },
            BootInfoError::InvalidModuleRange(PhysRange::new(PhysAddr::new(2), PhysAddr::new(1))),
            BootInfoError::NoMemoryMap,
        ];
        for error in errors {
            let mut text = heapless::String::<128>::new();
            assert!(write!(text, "{error}").is_ok());
            assert!(!text.is_empty());
        }
    }

    #[test]
    fn rsdp_addresses() {
        let mut bytes = [0_u8; 36];
        bytes[16..20].copy_from_slice(&0x000e_0000_u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x1_0000_0000_u64.to_le_bytes());
        let v2 = AcpiRsdp { version: RsdpVersion::V2, bytes: &bytes };
        assert_eq!(v2.rsdt_address(), Some(PhysAddr::new(0xe_0000)));
        assert_eq!(v2.xsdt_address(), Some(PhysAddr::new(0x1_0000_0000)));
        let v1 = AcpiRsdp { version: RsdpVersion::V1, bytes: &bytes[..20] };
        assert_eq!(v1.xsdt_address(), None);
    }
}
