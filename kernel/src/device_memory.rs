//! Device memory for the root task: the physical addresses below 4 GiB
//! that the firmware's memory map does not list (the holes where devices
//! decode their registers: the legacy VGA window, the PCI hole), minus
//! the devices the kernel drives itself, cut into naturally aligned
//! power-of-two blocks that become device untypeds (seL4 hands out the
//! same). A device untyped can only be retyped into frames and smaller
//! untypeds, never zeroed by the kernel; a manifest region at a fixed
//! physical address is made from it.

use crate::boot_info::MemoryRegion;
use crate::memory::{PhysAddr, PhysRange};

/// Device untypeds cover addresses below this (the kernel's physical map
/// and the 32-bit PCI hole end there).
pub const DEVICE_LIMIT: u64 = 1 << 32;
/// The smallest block handed out: one page.
pub const MIN_BLOCK_BITS: u8 = 12;
/// The largest block (1 GiB, a huge frame).
pub const MAX_BLOCK_BITS: u8 = 30;

/// The blocks of device memory in `[0, DEVICE_LIMIT)` that no region of
/// `map` covers and no range of `kernel_devices` touches, in address
/// order, as (base, log2 size): at most `out.len()` of them are written;
/// returns how many there are in all (more than written if `out` is too
/// small).
pub fn device_blocks(map: &[MemoryRegion], kernel_devices: &[PhysRange], out: &mut [(PhysAddr, u8)]) -> usize {
    let mut count = 0;
    let mut cursor = 0_u64;
    while cursor < DEVICE_LIMIT {
        // The next address that something listed or the kernel owns covers.
        let taken = map
            .iter()
            .map(|region| region.range)
            .chain(kernel_devices.iter().copied())
            .filter(|range| range.end.as_u64() > cursor && range.start.as_u64() < range.end.as_u64());
        let mut gap_end = DEVICE_LIMIT;
        let mut skip_to = None;
        for range in taken {
            let (start, end) = (range.start.as_u64(), range.end.as_u64());
            if start <= cursor {
                // `cursor` is inside it: the gap starts after it.
                skip_to = Some(skip_to.map_or(end, |skip: u64| skip.max(end)));
            } else {
                gap_end = gap_end.min(start);
            }
        }
        if let Some(end) = skip_to {
            cursor = end;
            continue;
        }
        // The gap [cursor, gap_end), shrunk to whole pages.
        let mut start = cursor.next_multiple_of(1 << MIN_BLOCK_BITS);
        let end = gap_end & !((1 << MIN_BLOCK_BITS) - 1);
        while start < end {
            let bits = block_bits(start, end);
            if let Some(slot) = out.get_mut(count) {
                *slot = (PhysAddr::new(start), bits);
            }
            count += 1;
            start += 1 << bits;
        }
        cursor = gap_end;
    }
    count
}

/// The largest block at `start` that is aligned to its size and ends by
/// `end` (`start` page-aligned, `start < end`).
fn block_bits(start: u64, end: u64) -> u8 {
    let mut bits = MAX_BLOCK_BITS;
    while bits > MIN_BLOCK_BITS && (!start.is_multiple_of(1 << bits) || start + (1 << bits) > end) {
        bits -= 1;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot_info::MemoryKind;

    fn region(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion { range: PhysRange::new(PhysAddr::new(start), PhysAddr::new(end)), kind }
    }

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(PhysAddr::new(start), PhysAddr::new(end))
    }

    /// QEMU q35 with 256 MiB, as its firmware reports it.
    fn q35() -> [MemoryRegion; 8] {
        [
            region(0, 0x9fc00, MemoryKind::Available),
            region(0x9fc00, 0xa0000, MemoryKind::Reserved),
            region(0xf0000, 0x10_0000, MemoryKind::Reserved),
            region(0x10_0000, 0xffe_0000, MemoryKind::Available),
            region(0xffe_0000, 0x1000_0000, MemoryKind::Reserved),
            region(0xb000_0000, 0xc000_0000, MemoryKind::Reserved),
            region(0xfed1_c000, 0xfed2_0000, MemoryKind::Reserved),
            region(0xfffc_0000, 0x1_0000_0000, MemoryKind::Reserved),
        ]
    }

    fn blocks(map: &[MemoryRegion], kernel: &[PhysRange]) -> Vec<(u64, u8)> {
        let mut out = [(PhysAddr::new(0), 0); 128];
        let count = device_blocks(map, kernel, &mut out);
        assert!(count <= out.len());
        out[..count].iter().map(|(base, bits)| (base.as_u64(), *bits)).collect()
    }

    #[test]
    fn the_holes_become_aligned_blocks_and_the_kernels_devices_stay_out() {
        let lapic = range(0xfee0_0000, 0xfee0_1000);
        let found = blocks(&q35(), &[lapic]);
        // The VGA window: 128 KiB, 128 KiB, 64 KiB.
        assert_eq!(&found[..3], &[(0xa_0000, 17), (0xc_0000, 17), (0xe_0000, 16)]);
        // The PCI hole below the ECAM, 0x1000_0000..0xb000_0000: 256 MiB,
        // 512 MiB, 1 GiB, 512 MiB and 256 MiB, each aligned to its size.
        assert_eq!(
            &found[3..8],
            &[(0x1000_0000, 28), (0x2000_0000, 29), (0x4000_0000, 30), (0x8000_0000, 29), (0xa000_0000, 28)]
        );
        for &(base, bits) in &found {
            let end = base + (1 << bits);
            assert_eq!(base % (1 << bits), 0, "{base:#x} is not aligned to its size");
            assert!(end <= DEVICE_LIMIT);
            for listed in q35().iter().map(|region| region.range).chain([lapic]) {
                assert!(end <= listed.start.as_u64() || base >= listed.end.as_u64(), "{base:#x} overlaps {listed:?}");
            }
        }
        // The HPET (0xfed0_0000) is handed out; the LAPIC page is not.
        assert!(found.iter().any(|&(base, bits)| base <= 0xfed0_0000 && 0xfed0_0000 < base + (1 << bits)));
        assert!(!found.iter().any(|&(base, bits)| base <= 0xfee0_0000 && 0xfee0_0000 < base + (1 << bits)));
        // Everything not listed is covered: the blocks add up to the holes.
        let covered: u64 = found.iter().map(|&(_, bits)| 1_u64 << bits).sum();
        let listed: u64 = q35().iter().map(|region| region.range.end.as_u64() - region.range.start.as_u64()).sum();
        // The holes (the map lists whole pages around them) minus the
        // LAPIC page.
        assert_eq!(covered, DEVICE_LIMIT - listed - 0x1000);
    }

    #[test]
    fn a_short_output_still_counts_every_block() {
        let mut out = [(PhysAddr::new(0), 0); 2];
        let count = device_blocks(&q35(), &[], &mut out);
        assert!(count > 2);
        assert_eq!(out[0], (PhysAddr::new(0xa_0000), 17));
    }

    #[test]
    fn overlapping_unordered_and_empty_entries_are_handled() {
        let map = [
            region(0x2000, 0x1_0000_0000, MemoryKind::Available),
            region(0x1000, 0x3000, MemoryKind::Reserved),
            region(0x5000, 0x5000, MemoryKind::Reserved),
        ];
        assert_eq!(blocks(&map, &[]), [(0, 12)]);
        assert_eq!(blocks(&[], &[range(0, DEVICE_LIMIT)]), []);
        // Partial pages at the edges of a hole are left out.
        let map = [region(0, 0x1800, MemoryKind::Available), region(0x3800, DEVICE_LIMIT, MemoryKind::Available)];
        assert_eq!(blocks(&map, &[]), [(0x2000, 12)]);
    }
}
