//! Multiboot1 (specification 0.6.96): a fixed info structure whose `flags`
//! say which fields are valid, and bare physical pointers to the memory map,
//! the module list and NUL-terminated strings.

use super::{
    BootInfo, BootInfoError, Field, MAX_MODULES, MAX_STRING_LEN, Module, PhysMemory, Protocol, add_info_range,
    empty_boot_info, module_range, push_basic_memory, push_region, read_u32, read_u64, to_utf8,
};
use crate::memory::{PhysAddr, PhysRange};

/// The value a Multiboot1 bootloader leaves in EAX.
pub const MULTIBOOT1_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// Byte offsets of the info-structure fields this parser reads.
mod offset {
    pub(super) const FLAGS: usize = 0;
    pub(super) const MEM_LOWER: usize = 4;
    pub(super) const MEM_UPPER: usize = 8;
    pub(super) const CMDLINE: usize = 16;
    pub(super) const MODS_COUNT: usize = 20;
    pub(super) const MODS_ADDR: usize = 24;
    pub(super) const MMAP_LENGTH: usize = 44;
    pub(super) const MMAP_ADDR: usize = 48;
    pub(super) const BOOT_LOADER_NAME: usize = 64;
}

/// `flags` bits: which fields are valid.
mod flag {
    pub(super) const BASIC_MEMORY: u32 = 1 << 0;
    pub(super) const CMDLINE: u32 = 1 << 2;
    pub(super) const MODULES: u32 = 1 << 3;
    pub(super) const MEMORY_MAP: u32 = 1 << 6;
    pub(super) const BOOTLOADER_NAME: u32 = 1 << 9;
}

/// The bytes this parser reads: everything up to `boot_loader_name`.
const PARSED_INFO_LEN: usize = 68;
/// The whole 0.6.96 structure, through the framebuffer fields (reserved,
/// not read).
const FULL_INFO_LEN: u64 = 116;
/// One module-list entry: `mod_start`, `mod_end`, `string`, reserved.
const MODULE_ENTRY_LEN: usize = 16;
/// The smallest memory-map `size` (it excludes the `size` field itself):
/// `base_addr: u64`, `length: u64`, `type: u32`.
const MEMORY_MAP_ENTRY_MIN_SIZE: usize = 20;

/// Parses the Multiboot1 information at `info`.
///
/// Fields whose `flags` bit is clear are ignored. Without a memory map (or
/// with one that yields no region) the map is synthesised from
/// `mem_lower`/`mem_upper`. The info structure, the memory map, the module
/// list and each string read become separate [`BootInfo::info_ranges`]
/// (merged where they overlap or touch).
///
/// # Errors
///
/// Any [`BootInfoError`] but `UnknownMagic`, `MisalignedInfo`,
/// `InvalidTotalSize`, `MalformedTag`, `MissingEndTag` and `DuplicateTag`
/// (which are Multiboot2's).
pub fn parse_multiboot1<M: PhysMemory>(info: PhysAddr, memory: &M) -> Result<BootInfo<'_>, BootInfoError> {
    let info_unreadable = BootInfoError::Unreadable { field: Field::Info, address: info };
    let full_info = PhysRange::from_start_len(info, FULL_INFO_LEN).ok_or(info_unreadable)?;
    let fixed = memory.read(info, PARSED_INFO_LEN).ok_or(info_unreadable)?;
    let word = |offset| read_u32(fixed, offset).ok_or(info_unreadable);
    let pointer = |offset| word(offset).map(|address| PhysAddr::new(u64::from(address)));
    let flags = word(offset::FLAGS)?;

    let mut boot_info = empty_boot_info(Protocol::Multiboot1);
    add_info_range(&mut boot_info.info_ranges, full_info)?;

    if flags & flag::MEMORY_MAP != 0 {
        let map_address = pointer(offset::MMAP_ADDR)?;
        let map_len = word(offset::MMAP_LENGTH)?;
        let unreadable = BootInfoError::Unreadable { field: Field::MemoryMap, address: map_address };
        let map_range = PhysRange::from_start_len(map_address, u64::from(map_len)).ok_or(unreadable)?;
        let map_len = usize::try_from(map_len).map_err(|_| unreadable)?;
        let map = memory.read(map_address, map_len).ok_or(unreadable)?;
        add_info_range(&mut boot_info.info_ranges, map_range)?;
        parse_memory_map(map, &mut boot_info)?;
    }
    if boot_info.memory_map.is_empty() && flags & flag::BASIC_MEMORY != 0 {
        let (lower_kib, upper_kib) = (word(offset::MEM_LOWER)?, word(offset::MEM_UPPER)?);
        push_basic_memory(&mut boot_info.memory_map, lower_kib, upper_kib)?;
        boot_info.basic_memory_only = true;
    }
    if boot_info.memory_map.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }

    if flags & flag::CMDLINE != 0 {
        let (bytes, range) = read_c_string(memory, pointer(offset::CMDLINE)?, Field::Cmdline)?;
        add_info_range(&mut boot_info.info_ranges, range)?;
        boot_info.cmdline = to_utf8(bytes, Field::Cmdline)?;
    }
    if flags & flag::BOOTLOADER_NAME != 0 {
        let address = pointer(offset::BOOT_LOADER_NAME)?;
        let (bytes, range) = read_c_string(memory, address, Field::BootloaderName)?;
        add_info_range(&mut boot_info.info_ranges, range)?;
        boot_info.bootloader_name = core::str::from_utf8(bytes).ok();
    }
    if flags & flag::MODULES != 0 {
        let list_address = pointer(offset::MODS_ADDR)?;
        let count = usize::try_from(word(offset::MODS_COUNT)?)
            .ok()
            .filter(|&count| count <= MAX_MODULES)
            .ok_or(BootInfoError::TooManyModules)?;
        let unreadable = BootInfoError::Unreadable { field: Field::ModuleList, address: list_address };
        // At most 32 entries of 16 bytes: the product cannot saturate.
        let list_len = count.saturating_mul(MODULE_ENTRY_LEN);
        let list_range = u64::try_from(list_len)
            .ok()
            .and_then(|len_bytes| PhysRange::from_start_len(list_address, len_bytes))
            .ok_or(unreadable)?;
        let list = if count == 0 { &[] } else { memory.read(list_address, list_len).ok_or(unreadable)? };
        add_info_range(&mut boot_info.info_ranges, list_range)?;
        for entry in list.chunks_exact(MODULE_ENTRY_LEN) {
            let entry_word = |offset| read_u32(entry, offset).ok_or(unreadable);
            let range = module_range(entry_word(0)?, entry_word(4)?)?;
            let string_address = PhysAddr::new(u64::from(entry_word(8)?));
            let (bytes, string_range) = read_c_string(memory, string_address, Field::ModuleCmdline)?;
            add_info_range(&mut boot_info.info_ranges, string_range)?;
            let cmdline = to_utf8(bytes, Field::ModuleCmdline)?;
            boot_info.modules.push(Module { range, cmdline }).map_err(|_| BootInfoError::TooManyModules)?;
        }
    }

    Ok(boot_info)
}

/// Appends the entries of the memory map `map` (`size: u32` then `size`
/// bytes: `base_addr: u64`, `length: u64`, `type: u32`, anything more
/// ignored).
fn parse_memory_map(map: &[u8], boot_info: &mut BootInfo<'_>) -> Result<(), BootInfoError> {
    let mut offset = 0;
    while offset < map.len() {
        let malformed = BootInfoError::MalformedMemoryMap;
        let size = read_u32(map, offset).ok_or(malformed)?;
        let size = usize::try_from(size).map_err(|_| malformed)?;
        if size < MEMORY_MAP_ENTRY_MIN_SIZE {
            return Err(malformed);
        }
        let entry_start = offset.checked_add(4).ok_or(malformed)?;
        let entry_end = entry_start.checked_add(size).ok_or(malformed)?;
        let entry = map.get(entry_start..entry_end).ok_or(malformed)?;
        let base = read_u64(entry, 0).ok_or(malformed)?;
        let len_bytes = read_u64(entry, 8).ok_or(malformed)?;
        let memory_type = read_u32(entry, 16).ok_or(malformed)?;
        push_region(&mut boot_info.memory_map, base, len_bytes, memory_type)?;
        offset = entry_end;
    }
    Ok(())
}

/// Reads the NUL-terminated string at `start`: its bytes (without the NUL)
/// and the range it occupies (with the NUL). Address zero means no string.
fn read_c_string<M: PhysMemory>(
    memory: &M,
    start: PhysAddr,
    field: Field,
) -> Result<(&[u8], PhysRange), BootInfoError> {
    if start == PhysAddr::ZERO {
        return Ok((&[], PhysRange::default()));
    }
    let unreadable = BootInfoError::Unreadable { field, address: start };
    let mut address = start;
    for len in 0..=MAX_STRING_LEN {
        let byte = memory.read(address, 1).and_then(|bytes| bytes.first().copied());
        let next = address.checked_add(1).ok_or(unreadable)?;
        match byte {
            None => return Err(unreadable),
            Some(0) => {
                let bytes = if len == 0 { &[] } else { memory.read(start, len).ok_or(unreadable)? };
                return Ok((bytes, PhysRange::new(start, next)));
            }
            Some(_) => address = next,
        }
    }
    Err(BootInfoError::UnterminatedString(field))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::tests::{FakeMemory, sorted, u32_of, well_formed};
    use super::*;
    use crate::boot_info::{MAX_INFO_RANGES, MAX_MEMORY_REGIONS, MAX_OCCUPIED_RANGES, MemoryKind, MemoryRegion};

    const INFO: u64 = 0x9000;
    const MEMORY_MAP: u64 = 0x9100;
    const MODULES: u64 = 0x9800;
    const CMDLINE: u64 = 0x9900;
    const NAME: u64 = 0x9a00;
    const MODULE_STRING: u64 = 0x9b00;
    const ALL_FLAGS: u32 =
        flag::BASIC_MEMORY | flag::CMDLINE | flag::MODULES | flag::MEMORY_MAP | flag::BOOTLOADER_NAME;

    fn write_u32(memory: &mut FakeMemory, address: u64, value: u32) {
        memory.write(address, &value.to_le_bytes());
    }

    fn write_field(memory: &mut FakeMemory, offset: usize, value: u32) {
        write_u32(memory, INFO + offset as u64, value);
    }

    /// Writes a memory map of `entries` (base, length, type) with `size`
    /// fields of `entry_size`, and points the info structure at it.
    fn write_memory_map(memory: &mut FakeMemory, entries: &[(u64, u64, u32)], entry_size: u32) {
        let mut address = MEMORY_MAP;
        for &(base, len_bytes, memory_type) in entries {
            write_u32(memory, address, entry_size);
            memory.write(address + 4, &base.to_le_bytes());
            memory.write(address + 12, &len_bytes.to_le_bytes());
            write_u32(memory, address + 20, memory_type);
            address += 4 + u64::from(entry_size);
        }
        write_field(memory, offset::MMAP_ADDR, u32_of(MEMORY_MAP));
        write_field(memory, offset::MMAP_LENGTH, u32_of(address - MEMORY_MAP));
    }

    /// A structure like GRUB's: every field this parser reads is valid.
    fn grub_like() -> FakeMemory {
        let mut memory = FakeMemory::zeroed(0, 0x10000);
        write_field(&mut memory, offset::FLAGS, ALL_FLAGS);
        write_field(&mut memory, offset::MEM_LOWER, 639);
        write_field(&mut memory, offset::MEM_UPPER, 0x1f_b800);
        let entries = [
            (0, 0x9_fc00, 1),
            (0xf_0000, 0x1_0000, 2),
            (0x10_0000, 0x7ee_0000, 1),
            (0xfffc_0000, 0x4_0000, 2),
            (0x7fe_0000, 0, 1),
        ];
        write_memory_map(&mut memory, &entries, 20);
        write_field(&mut memory, offset::CMDLINE, u32_of(CMDLINE));
        memory.write(CMDLINE, b"console=serial quiet\0");
        write_field(&mut memory, offset::BOOT_LOADER_NAME, u32_of(NAME));
        memory.write(NAME, b"GRUB 2.12\0");
        write_field(&mut memory, offset::MODS_COUNT, 2);
        write_field(&mut memory, offset::MODS_ADDR, u32_of(MODULES));
        for (index, (start, end, string)) in
            [(0x20_0000, 0x28_0000, MODULE_STRING), (0x28_0000, 0x28_0010, 0)].into_iter().enumerate()
        {
            let entry = MODULES + 16 * index as u64;
            write_u32(&mut memory, entry, start);
            write_u32(&mut memory, entry + 4, end);
            write_u32(&mut memory, entry + 8, u32_of(string));
        }
        memory.write(MODULE_STRING, b"root-task name=init\0");
        memory
    }

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
    }

    fn parse(memory: &FakeMemory) -> Result<BootInfo<'_>, BootInfoError> {
        parse_multiboot1(PhysAddr::new(INFO), memory)
    }

    #[test]
    fn parses_a_grub_like_structure() {
        let memory = grub_like();
        let info = parse(&memory).unwrap();
        assert_eq!(info.protocol, Protocol::Multiboot1);
        assert_eq!(info.cmdline, "console=serial quiet");
        assert_eq!(info.bootloader_name, Some("GRUB 2.12"));
        assert_eq!(
            info.memory_map.as_slice(),
            &[
                MemoryRegion { range: range(0, 0x9_fc00), kind: MemoryKind::Available },
                MemoryRegion { range: range(0xf_0000, 0x10_0000), kind: MemoryKind::Reserved },
                MemoryRegion { range: range(0x10_0000, 0x7fe_0000), kind: MemoryKind::Available },
                MemoryRegion { range: range(0xfffc_0000, 0x1_0000_0000), kind: MemoryKind::Reserved },
            ]
        );
        assert_eq!(info.modules.len(), 2);
        assert_eq!(info.modules[0].range, range(0x20_0000, 0x28_0000));
        assert_eq!(info.modules[0].cmdline, "root-task name=init");
        assert_eq!(info.modules[1].cmdline, "");
        let string = |start: u64, text: &[u8]| range(start, start + text.len() as u64 + 1);
        let info_ranges = [
            range(INFO, INFO + FULL_INFO_LEN),
            range(MEMORY_MAP, MEMORY_MAP + 5 * 24),
            range(MODULES, MODULES + 2 * 16),
            string(CMDLINE, b"console=serial quiet"),
            string(NAME, b"GRUB 2.12"),
            string(MODULE_STRING, b"root-task name=init"),
        ];
        assert_eq!(sorted(&info.info_ranges), info_ranges);
        let modules = [range(0x20_0000, 0x28_0000), range(0x28_0000, 0x28_0010)];
        assert_eq!(sorted(&info.occupied_ranges().collect::<Vec<_>>()), sorted(&[&info_ranges[..], &modules].concat()));
        assert_eq!(info.rsdp, None);
        assert_eq!(info.usable_bytes(), 0x9_fc00 + 0x7ee_0000);
        let summary = info.summary();
        assert_eq!((summary.available_region_count, summary.other_region_count), (2, 2));
        assert_eq!(summary.module_count, 2);
    }

    #[test]
    fn fields_whose_flag_is_clear_are_ignored() {
        let mut memory = grub_like();
        write_field(&mut memory, offset::FLAGS, flag::BASIC_MEMORY);
        let info = parse(&memory).unwrap();
        assert_eq!(info.cmdline, "");
        assert_eq!(info.bootloader_name, None);
        assert!(info.modules.is_empty());
        assert_eq!(info.info_ranges.as_slice(), &[range(INFO, INFO + FULL_INFO_LEN)]);
        assert_eq!(info.memory_map.len(), 2);
        assert_eq!(info.memory_map[1].range, range(0x10_0000, 0x10_0000 + 0x1f_b800 * 1024));
        assert!(info.basic_memory_only, "a map made from the basic sizes says so");
        assert!(!parse(&grub_like()).unwrap().basic_memory_only);
    }

    /// Memory made of two separately placed pieces.
    struct TwoPieces(FakeMemory, FakeMemory);

    impl PhysMemory for TwoPieces {
        fn read(&self, start: PhysAddr, len: usize) -> Option<&[u8]> {
            self.0.read(start, len).or_else(|| self.1.read(start, len))
        }
    }

    #[test]
    fn a_far_string_is_a_range_of_its_own() {
        const FAR_INFO: u64 = 0x1_0000;
        const FAR_CMDLINE: u64 = 0x7f0_0000;
        let mut low = FakeMemory::zeroed(FAR_INFO, 0x100);
        low.write(FAR_INFO, &(flag::BASIC_MEMORY | flag::CMDLINE).to_le_bytes());
        low.write(FAR_INFO + offset::MEM_UPPER as u64, &0x1_fc00_u32.to_le_bytes());
        low.write(FAR_INFO + offset::CMDLINE as u64, &u32_of(FAR_CMDLINE).to_le_bytes());
        let memory = TwoPieces(low, FakeMemory::new(FAR_CMDLINE, b"console=serial\0"));
        let info = parse_multiboot1(PhysAddr::new(FAR_INFO), &memory).unwrap();
        assert_eq!(info.cmdline, "console=serial");
        let expected = [range(FAR_INFO, FAR_INFO + FULL_INFO_LEN), range(FAR_CMDLINE, FAR_CMDLINE + 15)];
        assert_eq!(sorted(&info.info_ranges), expected);
        assert_eq!(sorted(&info.occupied_ranges().collect::<Vec<_>>()), expected);
        let occupied_bytes: u64 = info.occupied_ranges().map(|range| range.len()).sum();
        assert_eq!(occupied_bytes, FULL_INFO_LEN + 15);
    }

    #[test]
    fn touching_pieces_are_merged() {
        let mut memory = grub_like();
        write_field(&mut memory, offset::FLAGS, flag::BASIC_MEMORY | flag::CMDLINE | flag::BOOTLOADER_NAME);
        let cmdline = INFO + FULL_INFO_LEN;
        memory.write(cmdline, b"abc\0");
        write_field(&mut memory, offset::CMDLINE, u32_of(cmdline));
        write_field(&mut memory, offset::BOOT_LOADER_NAME, u32_of(cmdline + 2));
        let info = parse(&memory).unwrap();
        assert_eq!((info.cmdline, info.bootloader_name), ("abc", Some("c")));
        assert_eq!(info.info_ranges.as_slice(), &[range(INFO, cmdline + 4)]);
    }

    #[test]
    fn every_piece_apart_fills_the_capacity() {
        const LIST: u64 = 0xc000;
        const STRINGS: u64 = 0xd000;
        let mut memory = grub_like();
        write_field(&mut memory, offset::MODS_COUNT, u32_of(MAX_MODULES));
        write_field(&mut memory, offset::MODS_ADDR, u32_of(LIST));
        for index in 0..MAX_MODULES as u64 {
            let entry = LIST + 16 * index;
            let start = 0x100_0000 + 0x1000 * index;
            write_u32(&mut memory, entry, u32_of(start));
            write_u32(&mut memory, entry + 4, u32_of(start + 0x1000));
            write_u32(&mut memory, entry + 8, u32_of(STRINGS + 0x10 * index));
            memory.write(STRINGS + 0x10 * index, b"m\0");
        }
        let info = parse(&memory).unwrap();
        assert_eq!(info.modules.len(), MAX_MODULES);
        assert_eq!(info.info_ranges.len(), MAX_INFO_RANGES);
        assert!(well_formed(&info.info_ranges));
        let mut occupied = heapless::Vec::<PhysRange, MAX_OCCUPIED_RANGES>::new();
        for range in info.occupied_ranges() {
            assert_eq!(occupied.push(range), Ok(()));
        }
        assert_eq!(occupied.len(), MAX_OCCUPIED_RANGES);
    }

    #[test]
    fn no_memory_information_is_an_error() {
        let mut memory = grub_like();
        write_field(&mut memory, offset::FLAGS, flag::CMDLINE);
        assert_eq!(parse(&memory), Err(BootInfoError::NoMemoryMap));
    }

    #[test]
    fn info_outside_memory_is_unreadable() {
        let memory = grub_like();
        let error = parse_multiboot1(PhysAddr::new(0xffe0), &memory);
        let expected = BootInfoError::Unreadable { field: Field::Info, address: PhysAddr::new(0xffe0) };
        assert_eq!(error, Err(expected));
        assert_eq!(
            parse_multiboot1(PhysAddr::new(u64::MAX - 8), &memory).unwrap_err(),
            BootInfoError::Unreadable { field: Field::Info, address: PhysAddr::new(u64::MAX - 8) }
        );
    }

    #[test]
    fn memory_map_entries_are_checked() {
        let mut memory = grub_like();
        write_memory_map(&mut memory, &[(0x10_0000, 0x10_0000, 1)], 16);
        assert_eq!(parse(&memory), Err(BootInfoError::MalformedMemoryMap));

        write_memory_map(&mut memory, &[(0x10_0000, 0x10_0000, 1)], 28);
        assert_eq!(parse(&memory).unwrap().memory_map.len(), 1);

        write_field(&mut memory, offset::MMAP_LENGTH, 30);
        assert_eq!(parse(&memory), Err(BootInfoError::MalformedMemoryMap));

        write_memory_map(&mut memory, &[(u64::MAX - 6, 6, 1)], 20);
        assert_eq!(parse(&memory).unwrap().memory_map[0].range.len(), 6);
        write_memory_map(&mut memory, &[(u64::MAX - 6, 7, 1)], 20);
        let wraps = BootInfoError::MemoryRegionWraps { base: PhysAddr::new(u64::MAX - 6), len_bytes: 7 };
        assert_eq!(parse(&memory), Err(wraps));

        write_field(&mut memory, offset::MMAP_ADDR, 0xff00);
        write_field(&mut memory, offset::MMAP_LENGTH, 0x200);
        assert!(matches!(parse(&memory), Err(BootInfoError::Unreadable { field: Field::MemoryMap, .. })));
    }

    #[test]
    fn an_overlong_memory_map_is_an_error() {
        let mut memory = grub_like();
        let entries: Vec<_> = (0..=MAX_MEMORY_REGIONS as u64).map(|index| (index << 20, 0x1000, 1)).collect();
        write_memory_map(&mut memory, &entries[..MAX_MEMORY_REGIONS], 20);
        assert_eq!(parse(&memory).unwrap().memory_map.len(), MAX_MEMORY_REGIONS);
        write_memory_map(&mut memory, &entries, 20);
        assert_eq!(parse(&memory), Err(BootInfoError::MemoryMapTooLong));
    }

    #[test]
    fn modules_are_checked() {
        let mut memory = grub_like();
        write_field(&mut memory, offset::MODS_COUNT, 33);
        assert_eq!(parse(&memory), Err(BootInfoError::TooManyModules));
        write_field(&mut memory, offset::MODS_COUNT, u32::MAX);
        assert_eq!(parse(&memory), Err(BootInfoError::TooManyModules));

        let mut memory = grub_like();
        write_u32(&mut memory, MODULES + 4, 0x1f_0000);
        assert_eq!(parse(&memory), Err(BootInfoError::InvalidModuleRange(range(0x20_0000, 0x1f_0000))));

        let mut memory = grub_like();
        write_field(&mut memory, offset::MODS_ADDR, 0xfff8);
        assert!(matches!(parse(&memory), Err(BootInfoError::Unreadable { field: Field::ModuleList, .. })));
    }

    #[test]
    fn strings_are_checked() {
        let mut memory = grub_like();
        memory.write(CMDLINE, &[0xff, 0xfe, 0]);
        assert_eq!(parse(&memory), Err(BootInfoError::InvalidUtf8(Field::Cmdline)));

        let mut memory = grub_like();
        memory.write(NAME, &[b'G', 0xc3, 0]);
        assert_eq!(parse(&memory).unwrap().bootloader_name, None);

        let mut memory = grub_like();
        memory.write(MODULE_STRING, &[0x80, 0]);
        assert_eq!(parse(&memory), Err(BootInfoError::InvalidUtf8(Field::ModuleCmdline)));

        let mut memory = grub_like();
        memory.write(0xa000, &[b'x'; MAX_STRING_LEN + 1]);
        memory.write(0xa000 + MAX_STRING_LEN as u64 + 1, &[0]);
        write_field(&mut memory, offset::CMDLINE, 0xa000);
        assert_eq!(parse(&memory), Err(BootInfoError::UnterminatedString(Field::Cmdline)));
        memory.write(0xa000 + MAX_STRING_LEN as u64, &[0]);
        assert_eq!(parse(&memory).unwrap().cmdline.len(), MAX_STRING_LEN);

        let mut memory = grub_like();
        memory.write(0xfffc, b"abcd");
        write_field(&mut memory, offset::CMDLINE, 0xfffc);
        let unreadable = BootInfoError::Unreadable { field: Field::Cmdline, address: PhysAddr::new(0xfffc) };
        assert_eq!(parse(&memory), Err(unreadable));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Random bytes, with the pointers aimed into the buffer so that the
        /// parser gets past the first check.
        #[test]
        fn random_bytes_never_panic(
            mut bytes in prop::collection::vec(any::<u8>(), 0..1024),
            info in 0_u64..1024,
            pointers in prop::collection::vec((0_usize..5, 0_u32..1100), 0..6),
        ) {
            let pointer_offsets = [
                offset::MMAP_ADDR, offset::MMAP_LENGTH, offset::CMDLINE, offset::MODS_ADDR, offset::BOOT_LOADER_NAME,
            ];
            for (which, value) in pointers {
                let at = usize::try_from(info).unwrap() + pointer_offsets[which];
                if let Some(field) = bytes.get_mut(at..at + 4) {
                    field.copy_from_slice(&value.to_le_bytes());
                }
            }
            let memory = FakeMemory::new(0, &bytes);
            if let Ok(boot_info) = parse_multiboot1(PhysAddr::new(info), &memory) {
                prop_assert!(!boot_info.memory_map.is_empty());
                prop_assert!(well_formed(&boot_info.info_ranges));
                let info_structure = range(info, info + FULL_INFO_LEN);
                prop_assert!(boot_info.info_ranges.iter().any(|held| held.intersect(&info_structure) == Some(info_structure)));
                prop_assert!(boot_info.occupied_ranges().count() <= MAX_OCCUPIED_RANGES);
            }
        }
    }
}
