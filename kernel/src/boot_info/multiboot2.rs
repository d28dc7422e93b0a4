//! Multiboot2 (specification 2.0): an 8-byte-aligned block of `total_size`
//! bytes holding a fixed header and 8-byte-aligned tags up to an end tag.
//! Everything the kernel reads lies inside that one block.

use super::{
    AcpiRsdp, BootInfo, BootInfoError, Field, Module, PhysMemory, Protocol, RsdpVersion, add_info_range,
    empty_boot_info, module_range, push_basic_memory, push_region, read_u32, read_u64, string_before_nul, to_utf8,
};
use crate::memory::{PhysAddr, PhysRange};

/// The value a Multiboot2 bootloader leaves in EAX.
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// Tag types this parser reads; it skips every other.
mod tag {
    pub(super) const END: u32 = 0;
    pub(super) const CMDLINE: u32 = 1;
    pub(super) const BOOTLOADER_NAME: u32 = 2;
    pub(super) const MODULE: u32 = 3;
    pub(super) const BASIC_MEMORY: u32 = 4;
    pub(super) const MEMORY_MAP: u32 = 6;
    pub(super) const ACPI_OLD_RSDP: u32 = 14;
    pub(super) const ACPI_NEW_RSDP: u32 = 15;
}

/// The fixed part: `total_size: u32`, `reserved: u32`.
const HEADER_LEN: usize = 8;
/// Every tag's header: `type: u32`, `size: u32`.
const TAG_HEADER_LEN: usize = 8;
/// Tags start at multiples of this (from the start of the information).
const TAG_ALIGN: usize = 8;
/// The smallest memory-map entry: `base_addr: u64`, `length: u64`,
/// `type: u32`, `reserved: u32`.
const MEMORY_MAP_ENTRY_MIN_LEN: usize = 24;
/// An ACPI 1.0 RSDP.
const RSDP_V1_LEN: usize = 20;
/// An ACPI 2.0 RSDP.
const RSDP_V2_LEN: usize = 36;

/// Parses the Multiboot2 information at `info`.
///
/// The whole tag block is the one [`BootInfo::info_ranges`] entry. Unknown tags are skipped. The command line, bootloader name, basic memory,
/// memory map and each RSDP tag may appear at most once. Without a memory map
/// the map is synthesised from the basic-memory tag.
///
/// # Errors
///
/// Any [`BootInfoError`] but `UnknownMagic`.
pub fn parse_multiboot2<M: PhysMemory>(info: PhysAddr, memory: &M) -> Result<BootInfo<'_>, BootInfoError> {
    if !info.is_aligned(8) {
        return Err(BootInfoError::MisalignedInfo(info));
    }
    let unreadable = BootInfoError::Unreadable { field: Field::Info, address: info };
    let header = memory.read(info, HEADER_LEN).ok_or(unreadable)?;
    let total_size = read_u32(header, 0).ok_or(unreadable)?;
    let total_len = usize::try_from(total_size)
        .ok()
        .filter(|&len| len >= HEADER_LEN + TAG_HEADER_LEN)
        .ok_or(BootInfoError::InvalidTotalSize(total_size))?;
    let info_range = PhysRange::from_start_len(info, u64::from(total_size)).ok_or(unreadable)?;
    let bytes = memory.read(info, total_len).ok_or(unreadable)?;

    let mut boot_info = empty_boot_info(Protocol::Multiboot2);
    add_info_range(&mut boot_info.info_ranges, info_range)?;
    let mut tags = TagsSeen::default();
    let mut offset = HEADER_LEN;
    loop {
        let (Some(tag_type), Some(size)) = (read_u32(bytes, offset), read_u32(bytes, offset.saturating_add(4))) else {
            return Err(BootInfoError::MissingEndTag);
        };
        let malformed = BootInfoError::MalformedTag { tag_type, offset, size };
        let tag_end = usize::try_from(size)
            .ok()
            .filter(|&size| size >= TAG_HEADER_LEN)
            .and_then(|size| offset.checked_add(size))
            .ok_or(malformed)?;
        let body = bytes.get(offset + TAG_HEADER_LEN..tag_end).ok_or(malformed)?;
        if tag_type == tag::END {
            break;
        }
        tags.note(tag_type)?;
        parse_tag(tag_type, body, malformed, &mut boot_info, &mut tags)?;
        offset = tag_end.checked_next_multiple_of(TAG_ALIGN).ok_or(BootInfoError::MissingEndTag)?;
    }

    if boot_info.memory_map.is_empty()
        && let Some((lower_kib, upper_kib)) = tags.basic_memory
    {
        push_basic_memory(&mut boot_info.memory_map, lower_kib, upper_kib)?;
        boot_info.basic_memory_only = true;
    }
    if boot_info.memory_map.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    boot_info.rsdp = tags.rsdp_v2.or(tags.rsdp_v1);
    Ok(boot_info)
}

/// Reads one tag's `body` (the bytes after its header) into `boot_info`;
/// `malformed` is the error for a body too short for the tag's fields.
fn parse_tag<'a>(
    tag_type: u32,
    body: &'a [u8],
    malformed: BootInfoError,
    boot_info: &mut BootInfo<'a>,
    tags: &mut TagsSeen<'a>,
) -> Result<(), BootInfoError> {
    match tag_type {
        tag::CMDLINE => {
            let bytes = string_before_nul(body, Field::Cmdline)?;
            boot_info.cmdline = to_utf8(bytes, Field::Cmdline)?;
        }
        tag::BOOTLOADER_NAME => {
            let bytes = string_before_nul(body, Field::BootloaderName)?;
            boot_info.bootloader_name = core::str::from_utf8(bytes).ok();
        }
        tag::MODULE => {
            let start = read_u32(body, 0).ok_or(malformed)?;
            let end = read_u32(body, 4).ok_or(malformed)?;
            let range = module_range(start, end)?;
            let string = body.get(8..).ok_or(malformed)?;
            let bytes = string_before_nul(string, Field::ModuleCmdline)?;
            let cmdline = to_utf8(bytes, Field::ModuleCmdline)?;
            boot_info.modules.push(Module { range, cmdline }).map_err(|_| BootInfoError::TooManyModules)?;
        }
        tag::BASIC_MEMORY => {
            let lower_kib = read_u32(body, 0).ok_or(malformed)?;
            let upper_kib = read_u32(body, 4).ok_or(malformed)?;
            tags.basic_memory = Some((lower_kib, upper_kib));
        }
        tag::MEMORY_MAP => {
            let entry_len = read_u32(body, 0).ok_or(malformed)?;
            let entry_len = usize::try_from(entry_len).map_err(|_| BootInfoError::MalformedMemoryMap)?;
            let entries = body.get(8..).ok_or(malformed)?;
            parse_memory_map(entry_len, entries, boot_info)?;
        }
        tag::ACPI_OLD_RSDP if body.len() >= RSDP_V1_LEN => {
            tags.rsdp_v1 = Some(AcpiRsdp { version: RsdpVersion::V1, bytes: body });
        }
        tag::ACPI_NEW_RSDP if body.len() >= RSDP_V2_LEN => {
            tags.rsdp_v2 = Some(AcpiRsdp { version: RsdpVersion::V2, bytes: body });
        }
        tag::ACPI_OLD_RSDP | tag::ACPI_NEW_RSDP => return Err(malformed),
        _ => {}
    }
    Ok(())
}

/// Appends the memory-map `entries`, each `entry_len` bytes starting
/// `base_addr: u64`, `length: u64`, `type: u32` (the rest ignored, whatever
/// `entry_version` says).
fn parse_memory_map(entry_len: usize, entries: &[u8], boot_info: &mut BootInfo<'_>) -> Result<(), BootInfoError> {
    let malformed = BootInfoError::MalformedMemoryMap;
    if entry_len < MEMORY_MAP_ENTRY_MIN_LEN || !entries.len().is_multiple_of(entry_len) {
        return Err(malformed);
    }
    for entry in entries.chunks_exact(entry_len) {
        let base = read_u64(entry, 0).ok_or(malformed)?;
        let len_bytes = read_u64(entry, 8).ok_or(malformed)?;
        let memory_type = read_u32(entry, 16).ok_or(malformed)?;
        push_region(&mut boot_info.memory_map, base, len_bytes, memory_type)?;
    }
    Ok(())
}

/// What the tags said beyond `BootInfo`'s fields, and which once-only tags
/// have appeared.
#[derive(Default)]
struct TagsSeen<'a> {
    /// Bit `n` set: a once-only tag of type `n` appeared.
    once_only_seen: u32,
    basic_memory: Option<(u32, u32)>,
    rsdp_v1: Option<AcpiRsdp<'a>>,
    rsdp_v2: Option<AcpiRsdp<'a>>,
}

impl TagsSeen<'_> {
    /// Records a tag of `tag_type`; a second once-only tag is an error.
    fn note(&mut self, tag_type: u32) -> Result<(), BootInfoError> {
        let once_only = matches!(
            tag_type,
            tag::CMDLINE
                | tag::BOOTLOADER_NAME
                | tag::BASIC_MEMORY
                | tag::MEMORY_MAP
                | tag::ACPI_OLD_RSDP
                | tag::ACPI_NEW_RSDP
        );
        if !once_only {
            return Ok(());
        }
        // Every once-only type is below 32.
        let bit = 1_u32.checked_shl(tag_type).unwrap_or(0);
        if self.once_only_seen & bit != 0 {
            return Err(BootInfoError::DuplicateTag(tag_type));
        }
        self.once_only_seen |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::tests::{FakeMemory, u32_of};
    use super::*;
    use crate::boot_info::{MAX_MODULES, MemoryKind, MemoryRegion};

    const INFO: u64 = 0x1_0000;

    /// Builds a Multiboot2 information block tag by tag.
    struct Builder {
        bytes: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Self { bytes: vec![0; HEADER_LEN] }
        }

        fn tag(mut self, tag_type: u32, body: &[u8]) -> Self {
            self.bytes.resize(self.bytes.len().next_multiple_of(TAG_ALIGN), 0);
            self.bytes.extend_from_slice(&tag_type.to_le_bytes());
            self.bytes.extend_from_slice(&u32_of(8 + body.len()).to_le_bytes());
            self.bytes.extend_from_slice(body);
            self
        }

        fn string_tag(self, tag_type: u32, text: &[u8]) -> Self {
            self.tag(tag_type, &[text, b"\0"].concat())
        }

        fn module(self, start: u32, end: u32, text: &str) -> Self {
            let body = [&start.to_le_bytes()[..], &end.to_le_bytes(), text.as_bytes(), b"\0"].concat();
            self.tag(tag::MODULE, &body)
        }

        fn memory_map(self, entry_len: u32, entries: &[(u64, u64, u32)]) -> Self {
            let mut body = [entry_len.to_le_bytes(), 0_u32.to_le_bytes()].concat();
            for &(base, len_bytes, memory_type) in entries {
                let start = body.len();
                body.extend_from_slice(&base.to_le_bytes());
                body.extend_from_slice(&len_bytes.to_le_bytes());
                body.extend_from_slice(&memory_type.to_le_bytes());
                body.resize(start + entry_len as usize, 0);
            }
            self.tag(tag::MEMORY_MAP, &body)
        }

        /// Adds the end tag and sets `total_size`.
        fn finish(self) -> Vec<u8> {
            let mut bytes = self.tag(tag::END, &[]).bytes;
            let total_size = u32_of(bytes.len());
            bytes[..4].copy_from_slice(&total_size.to_le_bytes());
            bytes
        }
    }

    fn grub_like() -> Builder {
        let mut rsdp_v2 = [0_u8; RSDP_V2_LEN];
        rsdp_v2[24..32].copy_from_slice(&0x7fe_1000_u64.to_le_bytes());
        Builder::new()
            .string_tag(tag::CMDLINE, b"log=debug")
            .string_tag(tag::BOOTLOADER_NAME, b"GRUB 2.12")
            .module(0x20_0000, 0x28_0000, "root-task")
            .module(0x28_0000, 0x29_0000, "")
            .tag(tag::BASIC_MEMORY, &[639_u32.to_le_bytes(), 0x1000_u32.to_le_bytes()].concat())
            .tag(5, &[0xff; 12])
            .memory_map(
                24,
                &[(0, 0x9_fc00, 1), (0x10_0000, 0x7ee_0000, 1), (0x7fe_0000, 0x2_0000, 3), (0x8000_0000, 0, 1)],
            )
            .tag(tag::ACPI_OLD_RSDP, &[0; RSDP_V1_LEN])
            .tag(tag::ACPI_NEW_RSDP, &rsdp_v2)
    }

    fn parse(bytes: &[u8]) -> Result<BootInfo<'static>, BootInfoError> {
        let memory = Box::leak(Box::new(FakeMemory::new(INFO, bytes)));
        parse_multiboot2(PhysAddr::new(INFO), memory)
    }

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
    }

    #[test]
    fn parses_a_grub_like_structure() {
        let bytes = grub_like().finish();
        let info = parse(&bytes).unwrap();
        assert_eq!(info.protocol, Protocol::Multiboot2);
        assert_eq!(info.cmdline, "log=debug");
        assert_eq!(info.bootloader_name, Some("GRUB 2.12"));
        assert_eq!(info.modules.len(), 2);
        assert_eq!((info.modules[0].range, info.modules[0].cmdline), (range(0x20_0000, 0x28_0000), "root-task"));
        assert_eq!(info.modules[1].cmdline, "");
        assert_eq!(
            info.memory_map.as_slice(),
            &[
                MemoryRegion { range: range(0, 0x9_fc00), kind: MemoryKind::Available },
                MemoryRegion { range: range(0x10_0000, 0x7fe_0000), kind: MemoryKind::Available },
                MemoryRegion { range: range(0x7fe_0000, 0x800_0000), kind: MemoryKind::AcpiReclaimable },
            ]
        );
        let block = range(INFO, INFO + bytes.len() as u64);
        assert_eq!(info.info_ranges.as_slice(), &[block]);
        let rsdp = info.rsdp.unwrap();
        assert_eq!(rsdp.version, RsdpVersion::V2);
        assert_eq!(rsdp.xsdt_address(), Some(PhysAddr::new(0x7fe_1000)));
        let occupied: Vec<_> = info.occupied_ranges().collect();
        assert_eq!(occupied, [block, range(0x20_0000, 0x28_0000), range(0x28_0000, 0x29_0000)]);
    }

    #[test]
    fn basic_memory_stands_in_for_a_missing_map() {
        let bytes = Builder::new()
            .tag(tag::BASIC_MEMORY, &[640_u32.to_le_bytes(), 1024_u32.to_le_bytes()].concat())
            .tag(tag::ACPI_OLD_RSDP, &[0; RSDP_V1_LEN])
            .finish();
        let info = parse(&bytes).unwrap();
        assert_eq!(info.cmdline, "");
        assert_eq!(info.usable_bytes(), (640 + 1024) * 1024);
        assert_eq!(info.rsdp.map(|rsdp| rsdp.version), Some(RsdpVersion::V1));
        assert_eq!(parse(&Builder::new().finish()), Err(BootInfoError::NoMemoryMap));
    }

    #[test]
    fn header_is_checked() {
        let bytes = grub_like().finish();
        let memory = FakeMemory::new(INFO - 4, &[&[0; 4], &bytes[..]].concat());
        assert_eq!(
            parse_multiboot2(PhysAddr::new(INFO - 4), &memory),
            Err(BootInfoError::MisalignedInfo(PhysAddr::new(INFO - 4)))
        );
        let mut short = bytes.clone();
        short[..4].copy_from_slice(&15_u32.to_le_bytes());
        assert_eq!(parse(&short), Err(BootInfoError::InvalidTotalSize(15)));
        let mut long = bytes.clone();
        long[..4].copy_from_slice(&u32_of(bytes.len() + 8).to_le_bytes());
        let unreadable = BootInfoError::Unreadable { field: Field::Info, address: PhysAddr::new(INFO) };
        assert_eq!(parse(&long), Err(unreadable));
        assert_eq!(parse(&bytes[..4]), Err(unreadable));
    }

    #[test]
    fn missing_end_tag() {
        let mut bytes = grub_like().finish();
        let cut = u32_of(bytes.len() - 8);
        bytes[..4].copy_from_slice(&cut.to_le_bytes());
        assert_eq!(parse(&bytes), Err(BootInfoError::MissingEndTag));
    }

    #[test]
    fn tag_sizes_are_checked() {
        let mut bytes = Builder::new().string_tag(tag::CMDLINE, b"abc").finish();
        bytes[12..16].copy_from_slice(&4_u32.to_le_bytes());
        assert_eq!(parse(&bytes), Err(BootInfoError::MalformedTag { tag_type: 1, offset: 8, size: 4 }));
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&bytes), Err(BootInfoError::MalformedTag { tag_type: 1, offset: 8, size: u32::MAX }));

        let short_module = Builder::new().tag(tag::MODULE, &[0; 6]).finish();
        assert!(matches!(parse(&short_module), Err(BootInfoError::MalformedTag { tag_type: 3, .. })));
        let short_rsdp = Builder::new().tag(tag::ACPI_NEW_RSDP, &[0; RSDP_V1_LEN]).finish();
        assert!(matches!(parse(&short_rsdp), Err(BootInfoError::MalformedTag { tag_type: 15, .. })));
    }

    #[test]
    fn once_only_tags_may_not_repeat() {
        let bytes = grub_like().string_tag(tag::CMDLINE, b"again").finish();
        assert_eq!(parse(&bytes), Err(BootInfoError::DuplicateTag(tag::CMDLINE)));
        let bytes = grub_like().memory_map(24, &[]).finish();
        assert_eq!(parse(&bytes), Err(BootInfoError::DuplicateTag(tag::MEMORY_MAP)));
    }

    #[test]
    fn strings_are_checked() {
        let unterminated = Builder::new().tag(tag::CMDLINE, b"no nul").finish();
        assert_eq!(parse(&unterminated), Err(BootInfoError::UnterminatedString(Field::Cmdline)));
        let not_utf8 = Builder::new().string_tag(tag::CMDLINE, &[0xc0, 0x80]).finish();
        assert_eq!(parse(&not_utf8), Err(BootInfoError::InvalidUtf8(Field::Cmdline)));
        let bytes = grub_like().string_tag(tag::BOOTLOADER_NAME, &[0xff]);
        let bytes = Builder { bytes: bytes.bytes }.finish();
        assert_eq!(parse(&bytes), Err(BootInfoError::DuplicateTag(tag::BOOTLOADER_NAME)));
        let bad_name =
            Builder::new().string_tag(tag::BOOTLOADER_NAME, &[0xff]).memory_map(24, &[(0x10_0000, 0x1000, 1)]).finish();
        assert_eq!(parse(&bad_name).unwrap().bootloader_name, None);
        let module_without_nul = Builder::new().tag(tag::MODULE, &[0; 8]).finish();
        assert_eq!(parse(&module_without_nul), Err(BootInfoError::UnterminatedString(Field::ModuleCmdline)));
    }

    #[test]
    fn memory_map_is_checked() {
        let small_entries = Builder::new().memory_map(16, &[(0x10_0000, 0x1000, 1)]).finish();
        assert_eq!(parse(&small_entries), Err(BootInfoError::MalformedMemoryMap));
        let ragged = Builder::new().tag(tag::MEMORY_MAP, &[&24_u32.to_le_bytes()[..], &[0; 4], &[1; 30]].concat());
        assert_eq!(parse(&ragged.finish()), Err(BootInfoError::MalformedMemoryMap));
        let wide = Builder::new().memory_map(40, &[(0x10_0000, 0x1000, 1), (0x20_0000, 0x1000, 5)]).finish();
        let info = parse(&wide).unwrap();
        assert_eq!(info.memory_map[1].kind, MemoryKind::Defective);
        let entries: Vec<_> = (0..129).map(|index| (index << 20, 0x1000, 1)).collect();
        let overlong = Builder::new().memory_map(24, &entries).finish();
        assert_eq!(parse(&overlong), Err(BootInfoError::MemoryMapTooLong));
    }

    #[test]
    fn modules_are_checked() {
        let mut builder = grub_like();
        for index in 0..u32_of(MAX_MODULES - 1) {
            builder = builder.module(index << 12, (index << 12) + 1, "m");
        }
        assert_eq!(parse(&builder.finish()), Err(BootInfoError::TooManyModules));
        let inverted = Builder::new().module(0x2000, 0x1000, "").finish();
        assert_eq!(parse(&inverted), Err(BootInfoError::InvalidModuleRange(range(0x2000, 0x1000))));
    }

    /// One tag: a type the parser knows (or not), a declared size that may
    /// lie, and random contents.
    fn random_tag() -> impl Strategy<Value = (u32, u32, Vec<u8>)> {
        let tag_type = prop_oneof![0_u32..=6, Just(14), Just(15), any::<u32>()];
        let body = prop::collection::vec(any::<u8>(), 0..64);
        let lie = prop_oneof![7 => Just(None), 1 => any::<u32>().prop_map(Some)];
        (tag_type, body, lie).prop_map(|(tag_type, body, lie)| {
            let size = lie.unwrap_or(u32_of(8 + body.len()));
            (tag_type, size, body)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), size in 0_u32..600) {
            let mut bytes = bytes;
            if let Some(header) = bytes.get_mut(..4) {
                header.copy_from_slice(&size.to_le_bytes());
            }
            let _ = parse(&bytes);
        }

        #[test]
        fn random_tags_never_panic(tags in prop::collection::vec(random_tag(), 0..10), end in any::<bool>()) {
            let mut builder = Builder::new();
            for (tag_type, size, body) in &tags {
                builder = builder.tag(*tag_type, body);
                let size_at = builder.bytes.len() - body.len() - 4;
                builder.bytes[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
            }
            let bytes = if end { builder.finish() } else { builder.bytes };
            if let Ok(info) = parse(&bytes) {
                prop_assert!(!info.memory_map.is_empty());
                prop_assert!(info.modules.len() <= MAX_MODULES);
                prop_assert_eq!(info.info_ranges.as_slice(), &[range(INFO, INFO + bytes.len() as u64)]);
            }
        }
    }
}
