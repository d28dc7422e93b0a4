//! Reading a static ELF64 executable for x86-64: the checks and the list
//! of loadable segments the kernel needs to build the root task (and the
//! root task to build its children). Every field comes from an untrusted
//! image: each is checked, and a bad image is an [`ElfError`], never a
//! panic.

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than its headers say.
    Truncated,
    /// Not an ELF file.
    NotElf,
    /// Not ELF64, little-endian, version 1, x86-64.
    WrongMachine,
    /// Not a static executable (`ET_EXEC`).
    NotExecutable,
    /// A program header table that is not 56-byte entries inside the file.
    BadProgramHeaders,
    /// A loadable segment whose file bytes lie outside the file, whose file
    /// size exceeds its memory size, or whose offset and address disagree
    /// modulo the page size.
    BadSegment,
    /// A loadable segment outside the allowed address range.
    OutOfRange,
    /// Two loadable segments share a page.
    Overlap,
    /// A segment both writable and executable.
    WritableAndExecutable,
    /// The entry point is not inside an executable segment.
    BadEntry,
    /// More loadable segments than [`MAX_SEGMENTS`].
    TooManySegments,
}

/// The most loadable segments an image may have.
pub const MAX_SEGMENTS: usize = 8;
/// The page size segments are placed with.
pub const PAGE_SIZE: u64 = 4096;

/// Segment permission bits (`p_flags`).
pub mod flags {
    /// Executable.
    pub const EXECUTE: u32 = 1;
    /// Writable.
    pub const WRITE: u32 = 2;
    /// Readable.
    pub const READ: u32 = 4;
}

/// One loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its first virtual address.
    pub address: u64,
    /// Bytes in memory (the rest after `file_size` is zero).
    pub memory_size: u64,
    /// Where its bytes start in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// [`flags`] bits.
    pub flags: u32,
}

impl Segment {
    /// The first page it touches.
    #[must_use]
    pub const fn first_page(&self) -> u64 {
        self.address & !(PAGE_SIZE - 1)
    }

    /// The end of the last page it touches (checked not to overflow).
    #[must_use]
    pub const fn end_page(&self) -> u64 {
        (self.address + self.memory_size + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
    }

    /// Whether it is writable.
    #[must_use]
    pub const fn is_writable(&self) -> bool {
        self.flags & flags::WRITE != 0
    }

    /// Whether it is executable.
    #[must_use]
    pub const fn is_executable(&self) -> bool {
        self.flags & flags::EXECUTE != 0
    }
}

/// A checked image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executable {
    /// Where it starts.
    pub entry: u64,
    /// Its loadable segments, in address order.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
}

fn bytes<const N: usize>(image: &[u8], at: u64) -> Result<[u8; N], ElfError> {
    let start = usize::try_from(at).map_err(|_| ElfError::Truncated)?;
    let end = start.checked_add(N).ok_or(ElfError::Truncated)?;
    image.get(start..end).and_then(|slice| slice.try_into().ok()).ok_or(ElfError::Truncated)
}

fn u16_at(image: &[u8], at: u64) -> Result<u16, ElfError> {
    bytes::<2>(image, at).map(u16::from_le_bytes)
}

fn u32_at(image: &[u8], at: u64) -> Result<u32, ElfError> {
    bytes::<4>(image, at).map(u32::from_le_bytes)
}

fn u64_at(image: &[u8], at: u64) -> Result<u64, ElfError> {
    bytes::<8>(image, at).map(u64::from_le_bytes)
}

const PT_LOAD: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PROGRAM_HEADER_SIZE: u16 = 56;

/// Checks `image` and lists its loadable segments, which must all lie in
/// `[low, high)`, page-aligned in the file as in memory, never sharing a
/// page, never writable and executable at once.
///
/// # Errors
///
/// The first problem found.
pub fn parse(image: &[u8], low: u64, high: u64) -> Result<Executable, ElfError> {
    if bytes::<4>(image, 0)? != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    // Class 2 (64-bit), data 1 (little-endian), version 1.
    if bytes::<3>(image, 4)? != [2, 1, 1] || u16_at(image, 18)? != EM_X86_64 || u32_at(image, 20)? != 1 {
        return Err(ElfError::WrongMachine);
    }
    if u16_at(image, 16)? != ET_EXEC {
        return Err(ElfError::NotExecutable);
    }
    let entry = u64_at(image, 24)?;
    let table = u64_at(image, 32)?;
    let entry_size = u16_at(image, 54)?;
    let count = u16_at(image, 56)?;
    if count > 0 && entry_size != PROGRAM_HEADER_SIZE {
        return Err(ElfError::BadProgramHeaders);
    }
    let table_end = u64::from(count)
        .checked_mul(u64::from(PROGRAM_HEADER_SIZE))
        .and_then(|size| table.checked_add(size))
        .ok_or(ElfError::BadProgramHeaders)?;
    if table_end > image.len() as u64 {
        return Err(ElfError::BadProgramHeaders);
    }
    let mut segments: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
    for index in 0..u64::from(count) {
        let header = table + index * u64::from(PROGRAM_HEADER_SIZE);
        if u32_at(image, header)? != PT_LOAD {
            continue;
        }
        let segment = Segment {
            flags: u32_at(image, header + 4)?,
            file_offset: u64_at(image, header + 8)?,
            address: u64_at(image, header + 16)?,
            file_size: u64_at(image, header + 32)?,
            memory_size: u64_at(image, header + 40)?,
        };
        check_segment(image, &segment, low, high)?;
        segments.push(segment).map_err(|_| ElfError::TooManySegments)?;
    }
    segments.sort_unstable_by_key(|segment| segment.address);
    if segments.windows(2).any(|pair| pair[0].end_page() > pair[1].first_page()) {
        return Err(ElfError::Overlap);
    }
    let runs_entry = |segment: &Segment| {
        segment.is_executable() && (segment.address..segment.address + segment.memory_size).contains(&entry)
    };
    if !segments.iter().any(runs_entry) {
        return Err(ElfError::BadEntry);
    }
    Ok(Executable { entry, segments })
}

fn check_segment(image: &[u8], segment: &Segment, low: u64, high: u64) -> Result<(), ElfError> {
    let file_end = segment.file_offset.checked_add(segment.file_size).ok_or(ElfError::BadSegment)?;
    if file_end > image.len() as u64 || segment.file_size > segment.memory_size {
        return Err(ElfError::BadSegment);
    }
    if segment.file_offset % PAGE_SIZE != segment.address % PAGE_SIZE {
        return Err(ElfError::BadSegment);
    }
    let end = segment.address.checked_add(segment.memory_size).ok_or(ElfError::OutOfRange)?;
    let end_page = end.checked_add(PAGE_SIZE - 1).ok_or(ElfError::OutOfRange)? & !(PAGE_SIZE - 1);
    if segment.address < low || end_page > high || segment.memory_size == 0 {
        return Err(ElfError::OutOfRange);
    }
    if segment.is_writable() && segment.is_executable() {
        return Err(ElfError::WritableAndExecutable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A minimal image: one header, `segments` program headers, then the
    /// segments' bytes at offsets 0x1000, 0x2000, ...
    fn image(entry: u64, segments: &[(u64, u64, u64, u32)]) -> Vec<u8> {
        let mut file = vec![0_u8; 0x1000 * (segments.len() + 1)];
        file[..4].copy_from_slice(b"\x7fELF");
        file[4..7].copy_from_slice(&[2, 1, 1]);
        file[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        file[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        file[20..24].copy_from_slice(&1_u32.to_le_bytes());
        file[24..32].copy_from_slice(&entry.to_le_bytes());
        file[32..40].copy_from_slice(&64_u64.to_le_bytes());
        file[54..56].copy_from_slice(&PROGRAM_HEADER_SIZE.to_le_bytes());
        file[56..58].copy_from_slice(&u16::try_from(segments.len()).expect("few").to_le_bytes());
        for (index, (address, file_size, memory_size, flags)) in segments.iter().enumerate() {
            let header = 64 + index * 56;
            let offset = 0x1000 * (index as u64 + 1) + (address % PAGE_SIZE);
            file[header..header + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            file[header + 4..header + 8].copy_from_slice(&flags.to_le_bytes());
            file[header + 8..header + 16].copy_from_slice(&offset.to_le_bytes());
            file[header + 16..header + 24].copy_from_slice(&address.to_le_bytes());
            file[header + 32..header + 40].copy_from_slice(&file_size.to_le_bytes());
            file[header + 40..header + 48].copy_from_slice(&memory_size.to_le_bytes());
        }
        file
    }

    const LOW: u64 = 0x40_0000;
    const HIGH: u64 = 0x4000_0000;
    const RX: u32 = flags::READ | flags::EXECUTE;
    const RW: u32 = flags::READ | flags::WRITE;

    #[test]
    fn a_good_image_lists_its_segments_in_order() {
        let file = image(0x40_1000, &[(0x40_3000, 0x100, 0x2000, RW), (0x40_1000, 0x800, 0x800, RX)]);
        let executable = parse(&file, LOW, HIGH).expect("valid");
        assert_eq!(executable.entry, 0x40_1000);
        assert_eq!(executable.segments.len(), 2);
        assert_eq!(executable.segments[0].address, 0x40_1000);
        assert_eq!(executable.segments[1].end_page(), 0x40_5000);
    }

    #[test]
    fn each_defect_is_named() {
        let good = [(0x40_1000, 0x800, 0x800, RX)];
        assert_eq!(parse(b"\x7fEL", LOW, HIGH), Err(ElfError::Truncated));
        assert_eq!(parse(&[0; 64], LOW, HIGH), Err(ElfError::NotElf));
        let mut file = image(0x40_1000, &good);
        file[4] = 1;
        assert_eq!(parse(&file, LOW, HIGH), Err(ElfError::WrongMachine));
        let mut file = image(0x40_1000, &good);
        file[16] = 3;
        assert_eq!(parse(&file, LOW, HIGH), Err(ElfError::NotExecutable));
        let mut file = image(0x40_1000, &good);
        file[54] = 32;
        assert_eq!(parse(&file, LOW, HIGH), Err(ElfError::BadProgramHeaders));
        let mut file = image(0x40_1000, &good);
        file[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&file, LOW, HIGH), Err(ElfError::BadProgramHeaders));
        assert_eq!(parse(&image(0x40_1000, &[(0x40_1000, 0x2000, 0x2000, RX)]), LOW, HIGH), Err(ElfError::BadSegment));
        assert_eq!(parse(&image(0x40_1000, &[(0x40_1000, 0x900, 0x800, RX)]), LOW, HIGH), Err(ElfError::BadSegment));
        assert_eq!(parse(&image(0x1000, &[(0x1000, 0x10, 0x10, RX)]), LOW, HIGH), Err(ElfError::OutOfRange));
        assert_eq!(parse(&image(0x40_1000, &[(0x40_1000, 0x10, u64::MAX, RX)]), LOW, HIGH), Err(ElfError::OutOfRange));
        assert_eq!(
            parse(&image(0x3fff_f000, &[(0x3fff_f000, 0x10, 0x2000, RX)]), LOW, HIGH),
            Err(ElfError::OutOfRange)
        );
        assert_eq!(
            parse(&image(0x40_1000, &[(0x40_1000, 0x10, 0x10, RX | flags::WRITE)]), LOW, HIGH),
            Err(ElfError::WritableAndExecutable)
        );
        assert_eq!(
            parse(&image(0x40_1000, &[(0x40_1000, 0x10, 0x10, RX), (0x40_1800, 0x10, 0x10, RW)]), LOW, HIGH),
            Err(ElfError::Overlap)
        );
        assert_eq!(parse(&image(0x40_3000, &good), LOW, HIGH), Err(ElfError::BadEntry));
        assert_eq!(parse(&image(0x40_1000, &[(0x40_1000, 0x10, 0x10, RW)]), LOW, HIGH), Err(ElfError::BadEntry));
        let many: Vec<_> = (0..9).map(|page| (0x40_0000 + page * 0x1000, 0x10, 0x10, RX)).collect();
        assert_eq!(parse(&image(0x40_0000, &many), LOW, HIGH), Err(ElfError::TooManySegments));
    }

    proptest! {
        /// Arbitrary bytes, and good images with bytes flipped, never
        /// panic; whatever is accepted keeps the promises.
        #[test]
        fn garbage_is_refused_or_sound(
            flips in proptest::collection::vec((0_usize..0x3000, any::<u8>()), 0..16),
            noise in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = parse(&noise, LOW, HIGH);
            let mut file = image(0x40_1000, &[(0x40_1000, 0x800, 0x800, RX), (0x40_3000, 0x100, 0x2000, RW)]);
            for (at, value) in flips {
                file[at % 0x200] = value;
            }
            if let Ok(executable) = parse(&file, LOW, HIGH) {
                for segment in &executable.segments {
                    prop_assert!(segment.first_page() >= LOW && segment.end_page() <= HIGH);
                    prop_assert!(segment.file_offset + segment.file_size <= file.len() as u64);
                    prop_assert!(!(segment.is_writable() && segment.is_executable()));
                }
            }
        }
    }
}
