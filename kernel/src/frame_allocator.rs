//! The boot-time physical frame allocator.
//!
//! It hands out the 4 KiB frames the kernel needs while it boots (page
//! tables, its first kernel objects). It is deliberately simple: a sorted
//! table of disjoint free ranges, lowest frame first. A later issue turns the
//! memory still free at the end of boot into Untyped capabilities, after
//! which this allocator is retired.
//!
//! Free memory is computed once, in [`FrameAllocator::new`]:
//!
//! ```text
//! free = Available regions, each shrunk inward to whole frames
//!      − every non-available region   ┐ each grown outward to whole frames:
//!      − every reserved range         │ a frame that touches one at all
//!      − [0, LOW_MEMORY_END)          ┘ is not free
//! ```
//!
//! so where the firmware reports overlapping available and non-available
//! regions, the non-available one wins.
//!
//! The table holds [`MAX_FREE_RANGES`] ranges. If the free memory has more,
//! the smallest ranges are dropped (and never handed out) and their bytes
//! counted in [`FrameAllocator::dropped_bytes`], which boot should log.
//!
//! The allocator is about 8 KiB; keep it in a static rather than on a small
//! stack.

use core::fmt;

use crate::boot_info::{MemoryKind, MemoryRegion};
use crate::memory::{FRAME_SIZE, PhysAddr, PhysFrame, PhysRange};

/// The end of low memory, 1 MiB: the real-mode IVT, BIOS data area, EBDA,
/// video memory and option ROMs live below it, and the firmware may use it
/// in ways its memory map does not say. The allocator never hands it out.
pub const LOW_MEMORY_END: PhysAddr = PhysAddr::new(0x10_0000);

/// How many disjoint free ranges the allocator can track.
pub const MAX_FREE_RANGES: usize = 256;

/// The highest frame-aligned address: the end of any range grown outward
/// past the top of the address space.
const TOP_FRAME_BOUNDARY: PhysAddr = PhysAddr::new(!(FRAME_SIZE - 1));

/// Why [`FrameAllocator::free`] refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is free already (a double free).
    AlreadyFree,
    /// The frame was not free RAM when the allocator was built (reserved,
    /// not RAM, or dropped because the range table was full).
    NotFreeMemory,
    /// Freeing the frame needs a new range and the table is full; the frame
    /// stays allocated.
    TableFull,
}

impl fmt::Display for FreeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::AlreadyFree => "frame is already free",
            Self::NotFreeMemory => "frame was never free memory",
            Self::TableFull => "free-range table is full",
        })
    }
}

/// The boot-time frame allocator (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameAllocator {
    /// Currently free ranges: sorted, disjoint, never touching, frame-aligned.
    free: heapless::Vec<PhysRange, MAX_FREE_RANGES>,
    /// The free ranges as built, to tell a frame that may be freed.
    initial: heapless::Vec<PhysRange, MAX_FREE_RANGES>,
    free_frame_count: u64,
    dropped_bytes: u64,
}

impl FrameAllocator {
    /// An allocator with no free memory.
    #[must_use]
    pub const fn empty() -> Self {
        Self { free: heapless::Vec::new(), initial: heapless::Vec::new(), free_frame_count: 0, dropped_bytes: 0 }
    }

    /// The allocator over the `Available` regions of `memory_map`, less the
    /// other regions, the `reserved` ranges (the kernel image, the boot
    /// information, every module) and low memory.
    ///
    /// It sweeps the inputs once per free range it finds, so it takes time
    /// roughly cubic in their number: about 0.2 ms unoptimised for 30
    /// regions and 5 reserved ranges, 3 ms for a full 128-region map and 40
    /// reserved ranges.
    #[must_use]
    pub fn new(memory_map: &[MemoryRegion], reserved: &[PhysRange]) -> Self {
        let sources = Sources { memory_map, reserved };
        let mut allocator = Self::empty();
        let mut cursor = PhysAddr::ZERO;
        while let Some(range) = sources.next_free_range(cursor) {
            cursor = range.end;
            allocator.push_initial_range(range);
        }
        allocator.initial.clone_from(&allocator.free);
        allocator.free_frame_count =
            allocator.free.iter().fold(0, |count, range| count.saturating_add(range.len() / FRAME_SIZE));
        allocator
    }

    /// Appends `range` (above every range so far); when the table is full,
    /// drops the smallest range instead.
    fn push_initial_range(&mut self, range: PhysRange) {
        let Err(range) = self.free.push(range) else {
            return;
        };
        let smallest =
            self.free.iter().enumerate().min_by_key(|(_, free)| free.len()).map(|(index, free)| (index, free.len()));
        match smallest {
            Some((index, smallest_len)) if smallest_len < range.len() => {
                self.free.remove(index);
                self.dropped_bytes = self.dropped_bytes.saturating_add(smallest_len);
                // A slot was just freed, so this push succeeds.
                let _ = self.free.push(range);
            }
            Some(_) | None => {
                self.dropped_bytes = self.dropped_bytes.saturating_add(range.len());
            }
        }
    }

    /// Takes the lowest free frame, or `None` if memory is exhausted.
    pub fn allocate(&mut self) -> Option<PhysFrame> {
        let first = self.free.first_mut()?;
        let frame = PhysFrame::from_start(first.start)?;
        first.start = frame.range().end;
        if first.is_empty() {
            self.free.remove(0);
        }
        self.free_frame_count = self.free_frame_count.saturating_sub(1);
        Some(frame)
    }

    /// Takes the lowest `frame_count` contiguous frames whose start is a
    /// multiple of `align_bytes`. `None` if `frame_count` is zero,
    /// `align_bytes` is not a power of two of at least [`FRAME_SIZE`], or no
    /// free range can hold them (a placement that would split a range is
    /// skipped while the table is full).
    pub fn allocate_contiguous(&mut self, frame_count: u64, align_bytes: u64) -> Option<PhysRange> {
        if frame_count == 0 || align_bytes < FRAME_SIZE || !align_bytes.is_power_of_two() {
            return None;
        }
        let len_bytes = frame_count.checked_mul(FRAME_SIZE)?;
        let table_full = self.free.is_full();
        let (index, allocation) = self.free.iter().enumerate().find_map(|(index, free)| {
            let start = free.start.align_up(align_bytes)?;
            let allocation = PhysRange::from_start_len(start, len_bytes)?;
            let fits = allocation.end <= free.end;
            let splits = start > free.start && allocation.end < free.end;
            (fits && !(splits && table_full)).then_some((index, allocation))
        })?;
        let free = *self.free.get(index)?;
        let before = PhysRange::new(free.start, allocation.start);
        let after = PhysRange::new(allocation.end, free.end);
        match (before.is_empty(), after.is_empty()) {
            (true, true) => {
                self.free.remove(index);
            }
            (true, false) => *self.free.get_mut(index)? = after,
            (false, true) => *self.free.get_mut(index)? = before,
            (false, false) => {
                *self.free.get_mut(index)? = before;
                // The search skipped splits while the table was full.
                let _ = self.free.insert(index.saturating_add(1), after);
            }
        }
        self.free_frame_count = self.free_frame_count.saturating_sub(frame_count);
        Some(allocation)
    }

    /// Returns `frame` to the free memory, merging it with free neighbours.
    ///
    /// # Errors
    ///
    /// [`FreeError::NotFreeMemory`] if the frame was not free memory when the
    /// allocator was built, [`FreeError::AlreadyFree`] on a double free, and
    /// [`FreeError::TableFull`] if it needs a new range and there is no room.
    pub fn free(&mut self, frame: PhysFrame) -> Result<(), FreeError> {
        let range = frame.range();
        let was_free = self.initial.iter().any(|initial| initial.start <= range.start && range.end <= initial.end);
        if !was_free {
            return Err(FreeError::NotFreeMemory);
        }
        // The first free range that starts above the frame.
        let index = self.free.partition_point(|free| free.start <= range.start);
        let previous_index = index.checked_sub(1);
        let previous = previous_index.and_then(|previous| self.free.get(previous)).copied();
        let next = self.free.get(index).copied();
        let neighbours = [previous, next];
        if neighbours.iter().flatten().any(|neighbour| neighbour.overlaps(&range)) {
            return Err(FreeError::AlreadyFree);
        }
        let joins_previous = previous.filter(|previous| previous.end == range.start);
        let joins_next = next.filter(|next| next.start == range.end);
        match (previous_index, joins_previous, joins_next) {
            (Some(previous_index), Some(_), Some(next)) => {
                if let Some(previous) = self.free.get_mut(previous_index) {
                    previous.end = next.end;
                }
                self.free.remove(index);
            }
            (Some(previous_index), Some(_), None) => {
                if let Some(previous) = self.free.get_mut(previous_index) {
                    previous.end = range.end;
                }
            }
            (_, _, Some(_)) => {
                if let Some(next) = self.free.get_mut(index) {
                    next.start = range.start;
                }
            }
            (_, _, None) => {
                self.free.insert(index, range).map_err(|_| FreeError::TableFull)?;
            }
        }
        self.free_frame_count = self.free_frame_count.saturating_add(1);
        Ok(())
    }

    /// How many frames are free now.
    #[must_use]
    pub const fn free_frame_count(&self) -> u64 {
        self.free_frame_count
    }

    /// The free ranges: sorted, disjoint, not touching, frame-aligned.
    #[must_use]
    pub fn free_ranges(&self) -> &[PhysRange] {
        &self.free
    }

    /// The bytes of free memory left out because the table was full (the
    /// smallest ranges went); zero on any ordinary machine.
    #[must_use]
    pub const fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }
}

/// The inputs of [`FrameAllocator::new`], cut to frame boundaries.
struct Sources<'a> {
    memory_map: &'a [MemoryRegion],
    reserved: &'a [PhysRange],
}

impl Sources<'_> {
    /// The available regions, shrunk inward to whole frames.
    fn available(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.memory_map.iter().filter(|region| region.kind == MemoryKind::Available).filter_map(|region| {
            let start = region.range.start.align_up(FRAME_SIZE)?;
            let end = region.range.end.align_down(FRAME_SIZE)?;
            Some(PhysRange::new(start, end)).filter(|range| !range.is_empty())
        })
    }

    /// Low memory, the non-available regions and the reserved ranges, grown
    /// outward to whole frames.
    fn excluded(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let other_regions =
            self.memory_map.iter().filter(|region| region.kind != MemoryKind::Available).map(|region| region.range);
        core::iter::once(PhysRange::new(PhysAddr::ZERO, LOW_MEMORY_END))
            .chain(other_regions)
            .chain(self.reserved.iter().copied())
            .filter(|range| !range.is_empty())
            .map(|range| PhysRange {
                start: range.start.align_down(FRAME_SIZE).unwrap_or(range.start),
                end: range.end.align_up(FRAME_SIZE).unwrap_or(TOP_FRAME_BOUNDARY),
            })
    }

    /// The lowest maximal free range at or above the frame-aligned `cursor`.
    /// Every step moves an address strictly upward, so it terminates.
    fn next_free_range(&self, cursor: PhysAddr) -> Option<PhysRange> {
        let mut start = cursor;
        loop {
            if let Some(excluded) = self.excluded().find(|range| range.contains(start)) {
                start = excluded.end;
            } else if self.available().any(|range| range.contains(start)) {
                break;
            } else {
                start = self
                    .available()
                    .map(|range| range.start)
                    .filter(|&available_start| available_start > start)
                    .min()?;
            }
        }
        let mut end = start;
        while let Some(extended) = self.available().filter(|range| range.contains(end)).map(|range| range.end).max() {
            end = extended;
        }
        if let Some(next_excluded) =
            self.excluded().map(|range| range.start).filter(|&excluded_start| excluded_start > start).min()
        {
            end = end.min(next_excluded);
        }
        Some(PhysRange::new(start, end))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    const MIB: u64 = 0x10_0000;

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
    }

    fn region(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion { range: range(start, end), kind }
    }

    fn available(start: u64, end: u64) -> MemoryRegion {
        region(start, end, MemoryKind::Available)
    }

    fn frame(start: u64) -> PhysFrame {
        PhysFrame::from_start(PhysAddr::new(start)).unwrap()
    }

    #[test]
    fn unaligned_regions_shrink_inward() {
        let allocator = FrameAllocator::new(&[available(2 * MIB + 1, 3 * MIB - 1)], &[]);
        assert_eq!(allocator.free_ranges(), &[range(2 * MIB + 0x1000, 3 * MIB - 0x1000)]);
        assert_eq!(allocator.free_frame_count(), 254);
    }

    #[test]
    fn a_region_smaller_than_a_frame_gives_nothing() {
        let mut allocator = FrameAllocator::new(&[available(2 * MIB + 1, 2 * MIB + 0x1fff)], &[]);
        assert_eq!(allocator.free_frame_count(), 0);
        assert_eq!(allocator.allocate(), None);
    }

    #[test]
    fn low_memory_is_never_free() {
        let allocator = FrameAllocator::new(&[available(0, 2 * MIB)], &[]);
        assert_eq!(allocator.free_ranges(), &[range(MIB, 2 * MIB)]);
        let below = FrameAllocator::new(&[available(0x1000, 0x9f000)], &[]);
        assert_eq!(below.free_frame_count(), 0);
    }

    #[test]
    fn reserved_ranges_across_region_boundaries_grow_outward() {
        let memory_map = [available(MIB, 4 * MIB), available(6 * MIB, 8 * MIB)];
        let reserved = [range(MIB - 5, MIB + 1), range(4 * MIB - 1, 6 * MIB + 0x1001)];
        let allocator = FrameAllocator::new(&memory_map, &reserved);
        assert_eq!(allocator.free_ranges(), &[range(MIB + 0x1000, 4 * MIB - 0x1000), range(6 * MIB + 0x2000, 8 * MIB)]);
    }

    #[test]
    fn non_available_regions_win_over_overlapping_available_ones() {
        let memory_map = [
            available(MIB, 8 * MIB),
            region(2 * MIB, 3 * MIB, MemoryKind::Reserved),
            region(5 * MIB + 1, 5 * MIB + 2, MemoryKind::AcpiNvs),
            available(2 * MIB, 4 * MIB),
        ];
        let allocator = FrameAllocator::new(&memory_map, &[]);
        assert_eq!(
            allocator.free_ranges(),
            &[range(MIB, 2 * MIB), range(3 * MIB, 5 * MIB), range(5 * MIB + 0x1000, 8 * MIB)]
        );
    }

    #[test]
    fn overlapping_and_touching_available_regions_merge() {
        let memory_map = [available(2 * MIB, 4 * MIB), available(3 * MIB, 5 * MIB), available(5 * MIB, 6 * MIB)];
        let allocator = FrameAllocator::new(&memory_map, &[]);
        assert_eq!(allocator.free_ranges(), &[range(2 * MIB, 6 * MIB)]);
    }

    #[test]
    fn regions_at_the_top_of_the_address_space_do_not_overflow() {
        let memory_map = [available(u64::MAX - 3 * 0x1000, u64::MAX)];
        let reserved = [range(u64::MAX - 1, u64::MAX)];
        let mut allocator = FrameAllocator::new(&memory_map, &reserved);
        assert_eq!(allocator.free_frame_count(), 2);
        let first = allocator.allocate().unwrap();
        assert_eq!(first.start(), PhysAddr::new(0xffff_ffff_ffff_d000));
        assert!(allocator.allocate().is_some());
        assert_eq!(allocator.allocate(), None);
    }

    #[test]
    fn allocates_lowest_first_and_round_trips() {
        let mut allocator = FrameAllocator::new(&[available(MIB, MIB + 0x3000)], &[]);
        let first = allocator.allocate().unwrap();
        assert_eq!(first, frame(MIB));
        assert_eq!(allocator.free(first), Ok(()));
        assert_eq!(allocator.allocate(), Some(first));
    }

    #[test]
    fn double_free_and_foreign_frames_are_rejected() {
        let mut allocator = FrameAllocator::new(&[available(MIB, 2 * MIB)], &[range(MIB + 0x5000, MIB + 0x6000)]);
        let frame_in_use = allocator.allocate().unwrap();
        assert_eq!(allocator.free(frame(MIB + 0x1000)), Err(FreeError::AlreadyFree));
        assert_eq!(allocator.free(frame(MIB + 0x5000)), Err(FreeError::NotFreeMemory));
        assert_eq!(allocator.free(frame(0x1000)), Err(FreeError::NotFreeMemory));
        assert_eq!(allocator.free(frame(4 * MIB)), Err(FreeError::NotFreeMemory));
        assert_eq!(allocator.free(frame_in_use), Ok(()));
        assert_eq!(allocator.free(frame_in_use), Err(FreeError::AlreadyFree));
    }

    #[test]
    fn free_merges_with_both_neighbours() {
        let mut allocator = FrameAllocator::new(&[available(MIB, MIB + 0x3000)], &[]);
        let frames = [allocator.allocate().unwrap(), allocator.allocate().unwrap(), allocator.allocate().unwrap()];
        for index in [0, 2, 1] {
            allocator.free(frames[index]).unwrap();
        }
        assert_eq!(allocator.free_ranges(), &[range(MIB, MIB + 0x3000)]);
        assert_eq!(allocator.free_frame_count(), 3);
    }

    /// `count` one-frame-gapped ranges of `frames_each + index` frames each.
    fn many_ranges(count: u64, frames_each: u64) -> Vec<MemoryRegion> {
        (0..count)
            .map(|index| {
                let start = 2 * MIB + index * 2 * MIB;
                available(start, start + (frames_each + index) * 0x1000)
            })
            .collect()
    }

    #[test]
    fn table_overflow_drops_the_smallest_ranges_and_counts_them() {
        let memory_map = many_ranges(300, 1);
        let allocator = FrameAllocator::new(&memory_map, &[]);
        assert_eq!(allocator.free_ranges().len(), MAX_FREE_RANGES);
        // Ranges 0..44 (1..=44 frames) are the smallest.
        let dropped_frames: u64 = (1..=44).sum();
        assert_eq!(allocator.dropped_bytes(), dropped_frames * 0x1000);
        assert_eq!(allocator.free_ranges()[0], memory_map[44].range);
        assert!(allocator.free_ranges().windows(2).all(|pair| pair[0].end < pair[1].start));
    }

    #[test]
    fn free_reports_a_full_table() {
        let mut allocator = FrameAllocator::new(&many_ranges(256, 3), &[]);
        let first = allocator.allocate().unwrap();
        let _second = allocator.allocate().unwrap();
        assert_eq!(allocator.free(first), Err(FreeError::TableFull));
        assert_eq!(allocator.free_frame_count(), 256 * 3 + (0..256).sum::<u64>() - 2);
    }

    #[test]
    fn contiguous_allocation_respects_alignment() {
        let mut allocator = FrameAllocator::new(&[available(MIB + 0x1000, 8 * MIB)], &[]);
        let two_mib = allocator.allocate_contiguous(4, 2 * MIB).unwrap();
        assert_eq!(two_mib, range(2 * MIB, 2 * MIB + 0x4000));
        assert_eq!(allocator.free_ranges(), &[range(MIB + 0x1000, 2 * MIB), range(2 * MIB + 0x4000, 8 * MIB)]);
        assert_eq!(allocator.allocate_contiguous(1, 0x1000), Some(range(MIB + 0x1000, MIB + 0x2000)));
        assert_eq!(allocator.allocate_contiguous(0, 0x1000), None);
        assert_eq!(allocator.allocate_contiguous(1, 0x800), None);
        assert_eq!(allocator.allocate_contiguous(1, 0x3000), None);
        assert_eq!(allocator.allocate_contiguous(u64::MAX, 0x1000), None);
        assert_eq!(allocator.allocate_contiguous(8 * 256, 0x1000), None);
        let expected_frames = (7 * MIB - 0x1000) / 0x1000 - 5;
        assert_eq!(allocator.free_frame_count(), expected_frames);
    }

    fn memory_kind() -> impl Strategy<Value = MemoryKind> {
        prop_oneof![
            3 => Just(MemoryKind::Available),
            1 => Just(MemoryKind::Reserved),
            1 => Just(MemoryKind::AcpiReclaimable),
            1 => Just(MemoryKind::AcpiNvs),
            1 => Just(MemoryKind::Defective),
        ]
    }

    /// Addresses in the first `SPACE` bytes, so a brute-force model can check
    /// every frame.
    const SPACE: u64 = 12 * MIB;

    fn small_range() -> impl Strategy<Value = PhysRange> {
        (0..SPACE, 0..3 * MIB).prop_map(|(start, len)| range(start, (start + len).min(SPACE)))
    }

    fn memory_map() -> impl Strategy<Value = Vec<MemoryRegion>> {
        prop::collection::vec(
            (small_range(), memory_kind()).prop_map(|(range, kind)| MemoryRegion { range, kind }),
            0..10,
        )
    }

    /// The model: a frame is free if it lies inside one available region and
    /// touches no other region, reserved range or low memory.
    fn model_is_free(start: u64, memory_map: &[MemoryRegion], reserved: &[PhysRange]) -> bool {
        let frame = range(start, start + FRAME_SIZE);
        let inside_available = memory_map.iter().any(|region| {
            region.kind == MemoryKind::Available && region.range.start <= frame.start && frame.end <= region.range.end
        });
        let excluded = core::iter::once(range(0, LOW_MEMORY_END.as_u64()))
            .chain(memory_map.iter().filter(|region| region.kind != MemoryKind::Available).map(|region| region.range))
            .chain(reserved.iter().copied())
            .any(|excluded| excluded.overlaps(&frame));
        inside_available && !excluded
    }

    fn check_invariants(allocator: &FrameAllocator) -> Result<(), TestCaseError> {
        let ranges = allocator.free_ranges();
        for free in ranges {
            prop_assert!(!free.is_empty());
            prop_assert!(free.start.is_aligned(FRAME_SIZE) && free.end.is_aligned(FRAME_SIZE));
        }
        prop_assert!(ranges.windows(2).all(|pair| pair[0].end < pair[1].start));
        let counted: u64 = ranges.iter().map(|free| free.len() / FRAME_SIZE).sum();
        prop_assert_eq!(counted, allocator.free_frame_count());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn hands_out_exactly_the_model_frames_once_each(
            memory_map in memory_map(),
            reserved in prop::collection::vec(small_range(), 0..6),
        ) {
            let mut allocator = FrameAllocator::new(&memory_map, &reserved);
            check_invariants(&allocator)?;
            prop_assert_eq!(allocator.dropped_bytes(), 0);
            let initial = allocator.clone();
            let expected: BTreeSet<u64> = (0..SPACE / FRAME_SIZE)
                .map(|index| index * FRAME_SIZE)
                .filter(|&start| model_is_free(start, &memory_map, &reserved))
                .collect();
            prop_assert_eq!(allocator.free_frame_count(), expected.len() as u64);

            let mut handed_out = Vec::new();
            while let Some(frame) = allocator.allocate() {
                prop_assert!(expected.contains(&frame.start().as_u64()), "{:?} not free", frame);
                prop_assert!(handed_out.last().is_none_or(|&last: &PhysFrame| last < frame), "{:?} twice", frame);
                handed_out.push(frame);
            }
            prop_assert_eq!(handed_out.len(), expected.len());
            prop_assert_eq!(allocator.free_frame_count(), 0);

            // Free everything back: odd positions first, then even ones (so
            // frames join both neighbours) while that cannot fill the table;
            // else the lower half downward, then the upper half upward.
            let middle = handed_out.len() / 2;
            let order: Vec<&PhysFrame> = if handed_out.len() <= 400 {
                handed_out.iter().skip(1).step_by(2).chain(handed_out.iter().step_by(2)).collect()
            } else {
                handed_out[..middle].iter().rev().chain(&handed_out[middle..]).collect()
            };
            for frame in order {
                prop_assert_eq!(allocator.free(*frame), Ok(()));
                check_invariants(&allocator)?;
            }
            prop_assert_eq!(&allocator, &initial);
            if let Some(&frame) = handed_out.first() {
                prop_assert_eq!(allocator.free(frame), Err(FreeError::AlreadyFree));
                prop_assert_eq!(allocator.allocate(), Some(frame));
                prop_assert_eq!(allocator.free(frame), Ok(()));
            }
        }

        #[test]
        fn contiguous_allocations_are_free_aligned_and_disjoint(
            memory_map in memory_map(),
            reserved in prop::collection::vec(small_range(), 0..6),
            requests in prop::collection::vec((1_u64..64, 12_u32..22), 1..12),
        ) {
            let mut allocator = FrameAllocator::new(&memory_map, &reserved);
            let mut taken = BTreeSet::new();
            for (frame_count, align_shift) in requests {
                let before = allocator.free_frame_count();
                let Some(allocation) = allocator.allocate_contiguous(frame_count, 1 << align_shift) else {
                    prop_assert_eq!(allocator.free_frame_count(), before);
                    continue;
                };
                prop_assert!(allocation.start.is_aligned(1 << align_shift));
                prop_assert_eq!(allocation.len(), frame_count * FRAME_SIZE);
                prop_assert_eq!(allocator.free_frame_count(), before - frame_count);
                for start in (allocation.start.as_u64()..allocation.end.as_u64()).step_by(4096) {
                    prop_assert!(model_is_free(start, &memory_map, &reserved));
                    prop_assert!(taken.insert(start));
                }
                check_invariants(&allocator)?;
            }
        }

        #[test]
        fn arbitrary_addresses_never_panic(
            memory_map in prop::collection::vec(
                (any::<u64>(), any::<u64>(), memory_kind())
                    .prop_map(|(start, end, kind)| region(start, end, kind)),
                0..12,
            ),
            reserved in prop::collection::vec((any::<u64>(), any::<u64>()).prop_map(|(start, end)| range(start, end)), 0..6),
        ) {
            let mut allocator = FrameAllocator::new(&memory_map, &reserved);
            check_invariants(&allocator)?;
            for _ in 0..64 {
                let Some(frame) = allocator.allocate() else { break };
                prop_assert!(frame.start() >= LOW_MEMORY_END);
                prop_assert!(!reserved.iter().any(|reserved| reserved.overlaps(&frame.range())));
            }
        }
    }
}
