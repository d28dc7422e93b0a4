//! Reading the program headers of a static ELF64 image, for a root task
//! that loads its children's images from bytes it carries. The image is
//! untrusted input: every offset and size is checked with checked
//! arithmetic, and nothing here panics on any input (a property test feeds
//! it arbitrary bytes).
//!
//! Accepted: little-endian ELF64 executables (`ET_EXEC`) for x86-64 with
//! at most [`MAX_SEGMENTS`] loadable segments, each inside the bounds the
//! caller gives (the user half, or a narrower range), with its file bytes
//! inside the image, no two segments sharing a page, no segment both
//! writable and executable, no dynamic linking, and an entry point inside
//! an executable segment.

use core::fmt;

/// The page size segments are rounded to.
pub const PAGE_SIZE: u64 = 4096;
/// [`PAGE_SIZE`] as a length.
pub const PAGE_BYTES: usize = 4096;
/// The most loadable segments an image may have.
pub const MAX_SEGMENTS: usize = 16;

const HEADER_BYTES: usize = 64;
const PROGRAM_HEADER_BYTES: usize = 56;
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_64: u8 = 2;
const DATA_LITTLE_ENDIAN: u8 = 1;
const VERSION_CURRENT: u8 = 1;
const TYPE_EXECUTABLE: u16 = 2;
const MACHINE_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const FLAG_EXECUTE: u32 = 1;
const FLAG_WRITE: u32 = 2;
const FLAG_READ: u32 = 4;

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than its headers say.
    Truncated,
    /// Not an ELF file.
    BadMagic,
    /// Not ELF64, not little-endian, or an unknown version.
    UnsupportedFormat,
    /// Not an executable (`ET_EXEC`) for x86-64.
    WrongType,
    /// Program headers of an unexpected size.
    BadProgramHeaderSize,
    /// More than [`MAX_SEGMENTS`] loadable segments, or none.
    SegmentCount,
    /// An interpreter or dynamic section: the image is not static.
    NotStatic,
    /// A segment's file size exceeds its memory size.
    FileLargerThanMemory,
    /// A segment's file bytes lie outside the image.
    FileRangeOutside,
    /// A segment lies outside the allowed address range (or wraps).
    OutsideBounds,
    /// Two segments share a page.
    Overlap,
    /// A segment is both writable and executable.
    WritableAndExecutable,
    /// The entry point is not inside an executable segment.
    BadEntry,
}

impl fmt::Display for ElfError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ElfError::Truncated => "image shorter than its headers",
            ElfError::BadMagic => "not an ELF file",
            ElfError::UnsupportedFormat => "not a little-endian ELF64 file",
            ElfError::WrongType => "not an x86-64 executable",
            ElfError::BadProgramHeaderSize => "unexpected program header size",
            ElfError::SegmentCount => "no loadable segment, or too many",
            ElfError::NotStatic => "dynamically linked",
            ElfError::FileLargerThanMemory => "segment file size above its memory size",
            ElfError::FileRangeOutside => "segment bytes outside the image",
            ElfError::OutsideBounds => "segment outside the allowed addresses",
            ElfError::Overlap => "segments share a page",
            ElfError::WritableAndExecutable => "segment both writable and executable",
            ElfError::BadEntry => "entry point outside the executable segments",
        };
        formatter.write_str(text)
    }
}

/// A loadable segment's permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

/// One loadable segment, checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Its first virtual address.
    pub address: u64,
    /// Bytes it occupies in memory (the tail past `file_size` is zero).
    pub memory_size: u64,
    /// Where its bytes start in the image.
    pub file_offset: u64,
    /// How many bytes come from the image.
    pub file_size: u64,
    /// What it may be used for.
    pub permissions: Permissions,
}

impl Segment {
    /// The first page it touches.
    #[must_use]
    pub const fn first_page(&self) -> u64 {
        self.address & !(PAGE_SIZE - 1)
    }

    /// The end of its last page ([`parse`] checked that it does not wrap;
    /// for a hand-made segment it saturates).
    #[must_use]
    pub const fn page_end(&self) -> u64 {
        self.address.saturating_add(self.memory_size).saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
    }

    /// How many pages it touches.
    #[must_use]
    pub const fn page_count(&self) -> u64 {
        self.page_end().saturating_sub(self.first_page()) / PAGE_SIZE
    }

    /// Fills `page` with what the page at `page_address` holds once the
    /// segment is loaded: its file bytes there, zeros elsewhere. A page the
    /// segment does not touch comes out all zeros.
    pub fn fill_page(&self, image: &[u8], page_address: u64, page: &mut [u8; PAGE_BYTES]) {
        page.fill(0);
        let file_start = self.address;
        let Some(file_end) = self.address.checked_add(self.file_size) else { return };
        let Some(page_end) = page_address.checked_add(PAGE_SIZE) else { return };
        let start = file_start.max(page_address);
        let end = file_end.min(page_end);
        if start >= end {
            return;
        }
        let (Ok(in_page), Ok(length)) = (usize::try_from(start - page_address), usize::try_from(end - start)) else {
            return;
        };
        let Some(from) = self.file_offset.checked_add(start - file_start) else { return };
        let Ok(from) = usize::try_from(from) else { return };
        if let (Some(source), Some(target)) =
            (image.get(from..from.saturating_add(length)), page.get_mut(in_page..in_page + length))
        {
            target.copy_from_slice(source);
        }
    }
}

/// A checked image: its entry point and loadable segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// Where the first thread starts.
    pub entry: u64,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
}

impl Image {
    /// The loadable segments, in header order.
    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

/// The addresses segments may occupy: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The first allowed address.
    pub start: u64,
    /// The first address past the range.
    pub end: u64,
}

impl Bounds {
    /// The user half without its first page (address 0 stays unmapped).
    pub const USER_HALF: Bounds = Bounds { start: PAGE_SIZE, end: crate::vspace::USER_TOP };
}

fn bytes<const N: usize>(image: &[u8], at: usize) -> Result<[u8; N], ElfError> {
    let end = at.checked_add(N).ok_or(ElfError::Truncated)?;
    let slice = image.get(at..end).ok_or(ElfError::Truncated)?;
    let mut out = [0; N];
    out.copy_from_slice(slice);
    Ok(out)
}

fn u16_at(image: &[u8], at: usize) -> Result<u16, ElfError> {
    bytes::<2>(image, at).map(u16::from_le_bytes)
}

fn u32_at(image: &[u8], at: usize) -> Result<u32, ElfError> {
    bytes::<4>(image, at).map(u32::from_le_bytes)
}

fn u64_at(image: &[u8], at: usize) -> Result<u64, ElfError> {
    bytes::<8>(image, at).map(u64::from_le_bytes)
}

/// Parses and checks `image`, allowing segments only inside `bounds`.
///
/// # Errors
///
/// The first [`ElfError`] found.
pub fn parse(image: &[u8], bounds: Bounds) -> Result<Image, ElfError> {
    parse_with(image, bounds, false)
}

/// Parses and checks a guest's image, whose segments' addresses are
/// guest-physical: as [`parse`], except that a segment may be writable
/// and executable (a guest's memory is all readable, writable and
/// executable in its second-level tables; its own paging decides).
///
/// # Errors
///
/// The first [`ElfError`] found.
pub fn parse_guest(image: &[u8], bounds: Bounds) -> Result<Image, ElfError> {
    parse_with(image, bounds, true)
}

fn parse_with(image: &[u8], bounds: Bounds, writable_executable: bool) -> Result<Image, ElfError> {
    if image.len() < HEADER_BYTES {
        return Err(ElfError::Truncated);
    }
    let identity = bytes::<16>(image, 0)?;
    if identity[..4] != ELF_MAGIC {
        return Err(ElfError::BadMagic);
    }
    if identity[4] != CLASS_64 || identity[5] != DATA_LITTLE_ENDIAN || identity[6] != VERSION_CURRENT {
        return Err(ElfError::UnsupportedFormat);
    }
    if u16_at(image, 16)? != TYPE_EXECUTABLE || u16_at(image, 18)? != MACHINE_X86_64 {
        return Err(ElfError::WrongType);
    }
    let entry = u64_at(image, 24)?;
    let header_offset = usize::try_from(u64_at(image, 32)?).map_err(|_| ElfError::Truncated)?;
    let header_size = usize::from(u16_at(image, 54)?);
    let header_count = usize::from(u16_at(image, 56)?);
    if header_count > 0 && header_size != PROGRAM_HEADER_BYTES {
        return Err(ElfError::BadProgramHeaderSize);
    }
    let table_end = header_count
        .checked_mul(PROGRAM_HEADER_BYTES)
        .and_then(|size| size.checked_add(header_offset))
        .ok_or(ElfError::Truncated)?;
    if table_end > image.len() {
        return Err(ElfError::Truncated);
    }
    let mut segments = [Segment::default(); MAX_SEGMENTS];
    let mut count = 0;
    for index in 0..header_count {
        let at = header_offset + index * PROGRAM_HEADER_BYTES;
        let kind = u32_at(image, at)?;
        if kind == PT_INTERP || kind == PT_DYNAMIC {
            return Err(ElfError::NotStatic);
        }
        if kind != PT_LOAD {
            continue;
        }
        let flags = u32_at(image, at + 4)?;
        let segment = Segment {
            file_offset: u64_at(image, at + 8)?,
            address: u64_at(image, at + 16)?,
            file_size: u64_at(image, at + 32)?,
            memory_size: u64_at(image, at + 40)?,
            permissions: Permissions {
                read: flags & FLAG_READ != 0,
                write: flags & FLAG_WRITE != 0,
                execute: flags & FLAG_EXECUTE != 0,
            },
        };
        if segment.memory_size == 0 {
            continue;
        }
        check_segment(&segment, image.len(), bounds)?;
        if segment.permissions.write && segment.permissions.execute && !writable_executable {
            return Err(ElfError::WritableAndExecutable);
        }
        let slot = segments.get_mut(count).ok_or(ElfError::SegmentCount)?;
        *slot = segment;
        count += 1;
    }
    let loaded = &segments[..count];
    if loaded.is_empty() {
        return Err(ElfError::SegmentCount);
    }
    for (index, first) in loaded.iter().enumerate() {
        for second in &loaded[index + 1..] {
            if first.first_page() < second.page_end() && second.first_page() < first.page_end() {
                return Err(ElfError::Overlap);
            }
        }
    }
    let entry_ok = loaded.iter().any(|segment| {
        segment.permissions.execute && segment.address <= entry && entry - segment.address < segment.memory_size
    });
    if !entry_ok {
        return Err(ElfError::BadEntry);
    }
    Ok(Image { entry, segments, count })
}

fn check_segment(segment: &Segment, image_length: usize, bounds: Bounds) -> Result<(), ElfError> {
    if segment.file_size > segment.memory_size {
        return Err(ElfError::FileLargerThanMemory);
    }
    let file_end = segment.file_offset.checked_add(segment.file_size).ok_or(ElfError::FileRangeOutside)?;
    if file_end > image_length as u64 {
        return Err(ElfError::FileRangeOutside);
    }
    let end = segment.address.checked_add(segment.memory_size).ok_or(ElfError::OutsideBounds)?;
    // Rounded to pages: the whole pages it touches must be inside.
    let page_end = end.checked_add(PAGE_SIZE - 1).ok_or(ElfError::OutsideBounds)? & !(PAGE_SIZE - 1);
    if segment.first_page() < bounds.start || page_end > bounds.end {
        return Err(ElfError::OutsideBounds);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (type, flags, offset, address, file size, memory size)
    type Header = (u32, u32, u64, u64, u64, u64);

    /// A minimal image: ELF header, program headers, then `payload`.
    fn build(entry: u64, headers: &[Header], payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0_u8; HEADER_BYTES];
        image[..4].copy_from_slice(&ELF_MAGIC);
        image[4] = CLASS_64;
        image[5] = DATA_LITTLE_ENDIAN;
        image[6] = VERSION_CURRENT;
        image[16..18].copy_from_slice(&TYPE_EXECUTABLE.to_le_bytes());
        image[18..20].copy_from_slice(&MACHINE_X86_64.to_le_bytes());
        image[24..32].copy_from_slice(&entry.to_le_bytes());
        image[32..40].copy_from_slice(&(HEADER_BYTES as u64).to_le_bytes());
        image[54..56].copy_from_slice(&u16::try_from(PROGRAM_HEADER_BYTES).unwrap().to_le_bytes());
        image[56..58].copy_from_slice(&u16::try_from(headers.len()).unwrap().to_le_bytes());
        for &(kind, flags, offset, address, file_size, memory_size) in headers {
            let mut header = [0_u8; PROGRAM_HEADER_BYTES];
            header[0..4].copy_from_slice(&kind.to_le_bytes());
            header[4..8].copy_from_slice(&flags.to_le_bytes());
            header[8..16].copy_from_slice(&offset.to_le_bytes());
            header[16..24].copy_from_slice(&address.to_le_bytes());
            header[24..32].copy_from_slice(&address.to_le_bytes());
            header[32..40].copy_from_slice(&file_size.to_le_bytes());
            header[40..48].copy_from_slice(&memory_size.to_le_bytes());
            image.extend_from_slice(&header);
        }
        image.extend_from_slice(payload);
        image
    }

    const RX: u32 = FLAG_READ | FLAG_EXECUTE;
    const RW: u32 = FLAG_READ | FLAG_WRITE;

    fn good() -> Vec<u8> {
        // Payload at offset 64 + 2 * 56 = 176.
        build(
            0x40_0010,
            &[(PT_LOAD, RX, 176, 0x40_0000, 32, 32), (PT_LOAD, RW, 208, 0x40_1000, 8, 0x2000)],
            &[0xaa; 40],
        )
    }

    #[test]
    fn a_good_image_parses_into_its_segments() {
        let image = parse(&good(), Bounds::USER_HALF).unwrap();
        assert_eq!(image.entry, 0x40_0010);
        let segments = image.segments();
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].permissions, Permissions { read: true, write: false, execute: true });
        assert_eq!((segments[1].first_page(), segments[1].page_count()), (0x40_1000, 2));
    }

    #[test]
    fn pages_hold_file_bytes_then_zeros() {
        let bytes = good();
        let image = parse(&bytes, Bounds::USER_HALF).unwrap();
        let mut page = [0xff; PAGE_BYTES];
        image.segments()[1].fill_page(&bytes, 0x40_1000, &mut page);
        assert_eq!(&page[..8], &[0xaa; 8]);
        assert!(page[8..].iter().all(|byte| *byte == 0));
        image.segments()[1].fill_page(&bytes, 0x40_2000, &mut page);
        assert!(page.iter().all(|byte| *byte == 0), "the .bss page");
        let mut unaligned = bytes.clone();
        let image = parse(&unaligned, Bounds::USER_HALF).unwrap();
        image.segments()[0].fill_page(&unaligned, 0x40_0000, &mut page);
        assert_eq!(&page[..32], &[0xaa; 32]);
        unaligned.truncate(100);
        image.segments()[0].fill_page(&unaligned, 0x40_0000, &mut page);
        assert!(page.iter().all(|byte| *byte == 0), "bytes past the image are never read");
    }

    #[test]
    fn each_rule_refuses_its_image() {
        let refused = |bytes: Vec<u8>| parse(&bytes, Bounds::USER_HALF).unwrap_err();
        assert_eq!(refused(good()[..63].to_vec()), ElfError::Truncated);
        let mut bad = good();
        bad[0] = 0;
        assert_eq!(refused(bad), ElfError::BadMagic);
        let mut bad = good();
        bad[4] = 1;
        assert_eq!(refused(bad), ElfError::UnsupportedFormat);
        let mut bad = good();
        bad[5] = 2;
        assert_eq!(refused(bad), ElfError::UnsupportedFormat);
        let mut bad = good();
        bad[16] = 3;
        assert_eq!(refused(bad), ElfError::WrongType, "a shared object");
        let mut bad = good();
        bad[18] = 3;
        assert_eq!(refused(bad), ElfError::WrongType, "i386");
        let mut bad = good();
        bad[54] = 55;
        assert_eq!(refused(bad), ElfError::BadProgramHeaderSize);
        let mut bad = good();
        bad[56] = 200;
        assert_eq!(refused(bad), ElfError::Truncated, "headers past the end");
        assert_eq!(refused(build(0x40_0000, &[], &[])), ElfError::SegmentCount);
        let interp = build(0x40_0000, &[(PT_INTERP, 4, 0, 0, 0, 0), (PT_LOAD, RX, 0, 0x40_0000, 0, 16)], &[]);
        assert_eq!(refused(interp), ElfError::NotStatic);
        assert_eq!(
            refused(build(0x40_0000, &[(PT_LOAD, RX, 0, 0x40_0000, 32, 16)], &[])),
            ElfError::FileLargerThanMemory
        );
        assert_eq!(
            refused(build(0x40_0000, &[(PT_LOAD, RX, 110, 0x40_0000, 16, 16)], &[])),
            ElfError::FileRangeOutside
        );
        assert_eq!(
            refused(build(0x40_0000, &[(PT_LOAD, RX, u64::MAX, 0x40_0000, 2, 16)], &[])),
            ElfError::FileRangeOutside
        );
        assert_eq!(refused(build(0, &[(PT_LOAD, RX, 0, 0, 16, 16)], &[])), ElfError::OutsideBounds, "page 0");
        let top = crate::vspace::USER_TOP;
        assert_eq!(refused(build(top - 8, &[(PT_LOAD, RX, 0, top - 8, 0, 16)], &[])), ElfError::OutsideBounds);
        assert_eq!(refused(build(0, &[(PT_LOAD, RX, 0, u64::MAX - 4, 0, 16)], &[])), ElfError::OutsideBounds);
        let overlap =
            build(0x40_0000, &[(PT_LOAD, RX, 0, 0x40_0000, 16, 16), (PT_LOAD, RW, 0, 0x40_0800, 16, 16)], &[]);
        assert_eq!(refused(overlap), ElfError::Overlap, "two segments in one page");
        let wx = build(0x40_0000, &[(PT_LOAD, RX | FLAG_WRITE, 0, 0x40_0000, 16, 16)], &[]);
        assert_eq!(refused(wx.clone()), ElfError::WritableAndExecutable);
        // A guest's image may have one: guest memory is all executable.
        assert!(parse_guest(&wx, Bounds::USER_HALF).is_ok());
        assert_eq!(refused(build(0x40_2000, &[(PT_LOAD, RX, 0, 0x40_0000, 16, 16)], &[])), ElfError::BadEntry);
        let data_entry =
            build(0x40_1000, &[(PT_LOAD, RX, 0, 0x40_0000, 16, 16), (PT_LOAD, RW, 0, 0x40_1000, 0, 8)], &[]);
        assert_eq!(refused(data_entry), ElfError::BadEntry, "entry in a data segment");
        let narrow = Bounds { start: 0x40_1000, end: 0x50_0000 };
        assert_eq!(parse(&good(), narrow).unwrap_err(), ElfError::OutsideBounds);
    }

    #[test]
    fn too_many_segments_are_refused() {
        let headers: Vec<Header> =
            (0..=MAX_SEGMENTS as u64).map(|page| (PT_LOAD, RX, 0, 0x40_0000 + page * PAGE_SIZE, 0, 8)).collect();
        assert_eq!(parse(&build(0x40_0000, &headers, &[]), Bounds::USER_HALF).unwrap_err(), ElfError::SegmentCount);
        assert!(parse(&build(0x40_0000, &headers[..MAX_SEGMENTS], &[]), Bounds::USER_HALF).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, Bounds::USER_HALF);
        }

        #[test]
        fn corrupted_good_images_never_panic_and_stay_checked(
            edits in proptest::collection::vec((0_usize..216, any::<u8>()), 1..8),
        ) {
            let mut bytes = good();
            for (at, value) in edits {
                bytes[at] = value;
            }
            if let Ok(image) = parse(&bytes, Bounds::USER_HALF) {
                let mut page = [0; PAGE_BYTES];
                for segment in image.segments() {
                    prop_assert!(segment.file_size <= segment.memory_size);
                    prop_assert!(!(segment.permissions.write && segment.permissions.execute));
                    prop_assert!(segment.first_page() >= PAGE_SIZE);
                    prop_assert!(segment.page_end() <= crate::vspace::USER_TOP);
                    segment.fill_page(&bytes, segment.first_page(), &mut page);
                }
            }
        }
    }
}
