//! How the loader fills a region that has `contents`: the file's bytes
//! from the region's first byte, frame by frame, and nothing else.
//!
//! A region's frames are fresh from Untyped::Retype, which zeroes memory
//! objects (docs/abi.md), so the bytes past the file are zero without
//! being written: the loader writes only the file, in 8-byte words, the
//! last one completed with zeros. [`Fill::plan`] cuts the file into one
//! [`Chunk`] per frame it reaches; the loader maps each frame once
//! through its scratch window and copies the chunk.

use core::fmt;
use core::ops::Range;

use crate::PAGE_SIZES;

/// Why a region cannot hold a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillError {
    /// The file has more bytes than the region.
    TooLarge {
        /// The file's bytes.
        file: u64,
        /// The region's bytes.
        region: u64,
    },
    /// The loader fills frames of 4 KiB or 2 MiB only (its scratch
    /// windows); this page size is another.
    PageSize(u64),
}

impl fmt::Display for FillError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { file, region } => {
                write!(formatter, "a file of {file} bytes does not fit a region of {region} bytes")
            }
            Self::PageSize(size) => {
                write!(formatter, "pages of {size:#x} bytes: contents go into pages of 4 KiB or 2 MiB")
            }
        }
    }
}

impl core::error::Error for FillError {}

/// The part of the file that goes into one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The frame's index in the region (its page number).
    pub frame: u64,
    /// The file's bytes that go into it, from the frame's first byte.
    pub file: Range<u64>,
}

/// The plan to fill a region of `frames` frames of `page_size` bytes with
/// a file of `file_bytes` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    page_size: u64,
    file_bytes: u64,
}

impl Fill {
    /// Checks that the file fits and the frames are ones the loader can
    /// map.
    ///
    /// # Errors
    ///
    /// [`FillError::PageSize`] for pages other than 4 KiB and 2 MiB,
    /// [`FillError::TooLarge`] for a file longer than the region.
    pub fn plan(page_size: u64, frames: u64, file_bytes: u64) -> Result<Fill, FillError> {
        if page_size != PAGE_SIZES[0] && page_size != PAGE_SIZES[1] {
            return Err(FillError::PageSize(page_size));
        }
        // A region too large for 64 bits holds any file.
        let region = page_size.saturating_mul(frames);
        if file_bytes > region {
            return Err(FillError::TooLarge { file: file_bytes, region });
        }
        Ok(Fill { page_size, file_bytes })
    }

    /// The chunks, frame 0 first; none for an empty file.
    pub fn chunks(&self) -> impl Iterator<Item = Chunk> + '_ {
        let frames = self.file_bytes.div_ceil(self.page_size);
        (0..frames).map(move |frame| {
            let start = frame * self.page_size;
            Chunk { frame, file: start..self.file_bytes.min(start.saturating_add(self.page_size)) }
        })
    }
}

/// The 8-byte little-endian words of `bytes`, the last one completed with
/// zeros: what the loader writes into a frame from its first byte.
pub fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks(8).map(|chunk| {
        let mut word = [0_u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(word)
    })
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_test_disk_fills_two_large_frames_of_its_region() {
        // The linux system's disk: a 4 MiB image in 8 MiB of 2 MiB pages.
        let fill = Fill::plan(2 * MIB, 4, 4 * MIB).expect("fits");
        let chunks: Vec<Chunk> = fill.chunks().collect();
        assert_eq!(chunks, [Chunk { frame: 0, file: 0..2 * MIB }, Chunk { frame: 1, file: 2 * MIB..4 * MIB }]);
        // One byte more than a page reaches a second frame with one byte.
        let chunks: Vec<Chunk> = Fill::plan(4096, 2, 4097).expect("fits").chunks().collect();
        assert_eq!(chunks, [Chunk { frame: 0, file: 0..4096 }, Chunk { frame: 1, file: 4096..4097 }]);
        assert_eq!(Fill::plan(4096, 3, 0).expect("an empty file fits").chunks().count(), 0);
    }

    #[test]
    fn a_file_too_large_or_pages_too_large_are_refused() {
        assert_eq!(Fill::plan(4096, 2, 8193), Err(FillError::TooLarge { file: 8193, region: 8192 }));
        assert_eq!(Fill::plan(4096, 0, 1), Err(FillError::TooLarge { file: 1, region: 0 }));
        assert_eq!(Fill::plan(1 << 30, 1, 1), Err(FillError::PageSize(1 << 30)));
        assert_eq!(Fill::plan(8192, 1, 1), Err(FillError::PageSize(8192)));
        assert!(Fill::plan(4096, 2, 8192).is_ok());
    }

    #[test]
    fn words_are_little_endian_and_the_last_is_padded_with_zeros() {
        let words: Vec<u64> = words(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).collect();
        assert_eq!(words, [0x0807_0605_0403_0201, 0x0a09]);
        assert_eq!(super::words(&[]).count(), 0);
    }

    proptest::proptest! {
        #[test]
        fn chunks_cover_the_file_once_each_inside_its_frame(
            large in proptest::bool::ANY,
            frames in 0_u64..64,
            file_bytes in 0_u64..(80 << 12),
        ) {
            let page_size = if large { PAGE_SIZES[1] } else { PAGE_SIZES[0] };
            match Fill::plan(page_size, frames, file_bytes) {
                Err(FillError::TooLarge { file, region }) => {
                    proptest::prop_assert!(file > region);
                    proptest::prop_assert_eq!(region, page_size * frames);
                }
                Err(other) => proptest::prop_assert!(false, "unexpected {other:?}"),
                Ok(fill) => {
                    proptest::prop_assert!(file_bytes <= page_size * frames);
                    let mut next = 0;
                    for (index, chunk) in fill.chunks().enumerate() {
                        proptest::prop_assert_eq!(chunk.frame, index as u64);
                        proptest::prop_assert!(chunk.frame < frames);
                        // Contiguous, non-empty, from the frame's first byte.
                        proptest::prop_assert_eq!(chunk.file.start, next);
                        proptest::prop_assert_eq!(chunk.file.start, chunk.frame * page_size);
                        proptest::prop_assert!(chunk.file.end > chunk.file.start);
                        proptest::prop_assert!(chunk.file.end - chunk.file.start <= page_size);
                        next = chunk.file.end;
                    }
                    proptest::prop_assert_eq!(next, file_bytes);
                }
            }
        }

        #[test]
        fn words_hold_the_bytes_in_order(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let back: Vec<u8> = words(&bytes).flat_map(u64::to_le_bytes).collect();
            proptest::prop_assert_eq!(back.len(), bytes.len().div_ceil(8) * 8);
            proptest::prop_assert_eq!(&back[..bytes.len()], &bytes[..]);
            proptest::prop_assert!(back[bytes.len()..].iter().all(|byte| *byte == 0));
        }
    }
}
