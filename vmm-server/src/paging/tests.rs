use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::test_support::{FakeMemory, LongTables, PTE_PRW_US};

const READ: MemoryAccess = MemoryAccess { access: Access::Read, user: false, alignment_check: false };
const WRITE: MemoryAccess = MemoryAccess { access: Access::Write, user: false, alignment_check: false };
const FETCH: MemoryAccess = MemoryAccess { access: Access::Fetch, user: false, alignment_check: false };
const USER_READ: MemoryAccess = MemoryAccess { access: Access::Read, user: true, alignment_check: false };
const USER_WRITE: MemoryAccess = MemoryAccess { access: Access::Write, user: true, alignment_check: false };

fn control(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> ControlRegisters {
    ControlRegisters { cr0, cr3, cr4, efer, interruptibility: 0 }
}

const PAGING: u64 = cr0::PE | cr0::PG;
const LONG: u64 = efer::LME | efer::LMA;

fn page_fault(linear: u64, error_code: u32) -> Result<u64, TranslationFault> {
    Err(TranslationFault::PageFault { linear, error_code })
}

#[test]
fn without_paging_linear_is_physical() {
    let mut memory = FakeMemory::default();
    let control = control(cr0::PE, 0x1234_5000, 0, 0);
    assert_eq!(translate(&mut memory, &control, 0xdead_beef, WRITE), Ok(0xdead_beef));
}

/// 32-bit paging: PD at 0x1000, PT at 0x2000.
fn bits32(cr4: u64) -> (FakeMemory, ControlRegisters) {
    let mut memory = FakeMemory::with_ram(0x10_0000);
    memory.put_u32(0x1000 + 4, 0x2000 | 0x7); // 4 MiB..8 MiB: the PT
    memory.put_u32(0x2000 + 4 * 3, 0x5000 | 0x7); // 0x40_3000 -> 0x5000
    memory.put_u32(0x2000 + 4 * 4, 0x6000 | 0x5); // 0x40_4000 -> 0x6000 read-only
    memory.put_u32(0x2000 + 4 * 5, 0x7000 | 0x3); // 0x40_5000 -> 0x7000 supervisor
    // 8 MiB..12 MiB: a 4 MiB page at 0x1_00c0_0000 (PSE-36 bits 13..21 hold 1).
    memory.put_u32(0x1000 + 4 * 2, 0x00c0_0000 | 1 << 13 | 0x80 | 0x7);
    (memory, control(PAGING, 0x1000, cr4, 0))
}

#[test]
fn bits32_paging_maps_4k_pages() {
    let (mut memory, control) = bits32(0);
    assert_eq!(translate(&mut memory, &control, 0x40_3abc, READ), Ok(0x5abc));
    assert_eq!(translate(&mut memory, &control, 0x40_6000, READ), page_fault(0x40_6000, 0));
    assert_eq!(translate(&mut memory, &control, 0x123, WRITE), page_fault(0x123, 0b10));
}

#[test]
fn bits32_paging_maps_4m_pages_only_with_pse() {
    let (mut memory, pse) = bits32(cr4::PSE);
    assert_eq!(translate(&mut memory, &pse, 0x80_1234, READ), Ok(0x1_00c0_1234));
    // Without PSE the entry points at a page table (at 0xc0_2000, unbacked).
    let (mut memory, no_pse) = bits32(0);
    assert_eq!(
        translate(&mut memory, &no_pse, 0x80_1234, READ),
        Err(TranslationFault::Unbacked { guest_physical: 0xc0_2004 })
    );
}

#[test]
fn protection_follows_wp_and_user() {
    let (mut memory, mut control) = bits32(0);
    // Read-only page: supervisor writes pass without WP, fault with it.
    assert_eq!(translate(&mut memory, &control, 0x40_4000, WRITE), Ok(0x6000));
    control.cr0 |= cr0::WP;
    assert_eq!(translate(&mut memory, &control, 0x40_4000, WRITE), page_fault(0x40_4000, 0b011));
    assert_eq!(translate(&mut memory, &control, 0x40_4000, USER_WRITE), page_fault(0x40_4000, 0b111));
    assert_eq!(translate(&mut memory, &control, 0x40_4000, USER_READ), Ok(0x6000));
    // Supervisor page: user accesses fault.
    assert_eq!(translate(&mut memory, &control, 0x40_5000, USER_READ), page_fault(0x40_5000, 0b101));
    assert_eq!(translate(&mut memory, &control, 0x40_5000, READ), Ok(0x7000));
}

#[test]
fn accessed_and_dirty_bits_are_set_one_byte_at_a_time() {
    let (mut memory, control) = bits32(0);
    memory.put_u32(0x2000 + 4 * 3, 0xffff_f000 & 0x5000 | 0x7 | 0x100);
    translate(&mut memory, &control, 0x40_3000, READ).unwrap();
    assert_eq!(memory.get(0x1004, 4), (0x2000_u32 | 0x27).to_le_bytes());
    assert_eq!(memory.get(0x200c, 4), (0x5000_u32 | 0x127).to_le_bytes());
    translate(&mut memory, &control, 0x40_3000, WRITE).unwrap();
    assert_eq!(memory.get(0x200c, 4), (0x5000_u32 | 0x167).to_le_bytes());
}

/// PAE: PDPT at 0x1000, PD at 0x2000, PT at 0x3000.
fn pae() -> (FakeMemory, ControlRegisters) {
    let mut memory = FakeMemory::with_ram(0x10_0000);
    memory.put_u64(0x1000 + 8, 0x2000 | 1); // 1 GiB..2 GiB
    memory.put_u64(0x2000, 0x3000 | PTE_PRW_US);
    memory.put_u64(0x3000 + 8 * 2, 0x8000 | PTE_PRW_US | 1 << 63);
    memory.put_u64(0x2000 + 8, 0x1234_0000_0000 & 0x000f_ffff_ffe0_0000 | 0x80 | PTE_PRW_US);
    (memory, control(PAGING, 0x1000, cr4::PAE, efer::NXE))
}

#[test]
fn pae_paging_maps_4k_and_2m_pages() {
    let (mut memory, control) = pae();
    assert_eq!(translate(&mut memory, &control, 0x4000_2010, READ), Ok(0x8010));
    assert_eq!(
        translate(&mut memory, &control, 0x4020_0000 + 0x1_2345, READ),
        Ok(0x1234_0001_2345 & !0x1f_ffff | 0x1_2345)
    );
    // The first PDPTE is not present.
    assert_eq!(translate(&mut memory, &control, 0x10, READ), page_fault(0x10, 0));
    // NX with EFER.NXE: fetches fault with the fetch bit.
    assert_eq!(translate(&mut memory, &control, 0x4000_2010, FETCH), page_fault(0x4000_2010, 0b1_0001));
    // The same bit without NXE is reserved.
    let no_nxe = ControlRegisters { efer: 0, ..control };
    assert_eq!(translate(&mut memory, &no_nxe, 0x4000_2010, READ), page_fault(0x4000_2010, 0b1001));
}

fn long() -> (FakeMemory, LongTables, ControlRegisters) {
    let mut memory = FakeMemory::with_ram(0x10_0000);
    let tables = LongTables::new(&mut memory, 0x1000);
    let control = control(PAGING | cr0::WP, tables.root, cr4::PAE, LONG | efer::NXE);
    (memory, tables, control)
}

#[test]
fn four_level_paging_maps_every_page_size() {
    let (mut memory, mut tables, control) = long();
    tables.map(&mut memory, 0xffff_8000_0000_1000, 0x5000, 12, PTE_PRW_US);
    tables.map(&mut memory, 0x0000_7f00_0020_0000, 0x4000_0000, 21, PTE_PRW_US);
    tables.map(&mut memory, 0x0000_0040_0000_0000, 0x80_0000_0000, 30, PTE_PRW_US);
    assert_eq!(translate(&mut memory, &control, 0xffff_8000_0000_1234, READ), Ok(0x5234));
    assert_eq!(translate(&mut memory, &control, 0x0000_7f00_002f_ffff, READ), Ok(0x400f_ffff));
    assert_eq!(translate(&mut memory, &control, 0x0000_0040_3fff_fff0, READ), Ok(0x80_3fff_fff0));
    assert_eq!(
        translate(&mut memory, &control, 0x0000_8000_0000_0000, READ),
        Err(TranslationFault::NonCanonical { linear: 0x0000_8000_0000_0000 })
    );
    assert_eq!(translate(&mut memory, &control, 0x1000_0000, READ), page_fault(0x1000_0000, 0));
}

#[test]
fn smep_and_smap_guard_user_pages_from_the_kernel() {
    let (mut memory, mut tables, mut control) = long();
    tables.map(&mut memory, 0x40_0000, 0x5000, 12, PTE_PRW_US);
    control.cr4 |= cr4::SMEP;
    assert_eq!(translate(&mut memory, &control, 0x40_0000, FETCH), page_fault(0x40_0000, 0b1_0001));
    assert_eq!(translate(&mut memory, &control, 0x40_0000, READ), Ok(0x5000));
    control.cr4 |= cr4::SMAP;
    assert_eq!(translate(&mut memory, &control, 0x40_0000, READ), page_fault(0x40_0000, 0b0001));
    let with_ac = MemoryAccess { alignment_check: true, ..READ };
    assert_eq!(translate(&mut memory, &control, 0x40_0000, with_ac), Ok(0x5000));
    assert_eq!(translate(&mut memory, &control, 0x40_0000, USER_READ), Ok(0x5000));
}

#[test]
fn tables_outside_memory_are_reported() {
    let (mut memory, _, control) = long();
    let control = ControlRegisters { cr3: 0x4000_0000, ..control };
    assert_eq!(
        translate(&mut memory, &control, 0, READ),
        Err(TranslationFault::Unbacked { guest_physical: 0x4000_0000 })
    );
}

proptest! {
    /// Whatever the guest's tables hold, a walk ends in an answer.
    #[test]
    fn walks_of_arbitrary_tables_never_panic(
        words in proptest::collection::vec(any::<u64>(), 64),
        cr0 in any::<u64>(),
        cr3 in 0_u64..0x2000,
        cr4 in any::<u64>(),
        efer in any::<u64>(),
        linear in any::<u64>(),
        access in 0_u8..3,
        user: bool,
    ) {
        let mut memory = FakeMemory::with_ram(0x2000);
        for (index, word) in words.iter().enumerate() {
            // Entries point inside the two pages or anywhere.
            let word = if index % 2 == 0 { word & 0x1fff } else { *word };
            memory.put_u64(index as u64 * 64, word);
        }
        let control = ControlRegisters { cr0, cr3, cr4, efer, interruptibility: 0 };
        let access = [Access::Read, Access::Write, Access::Fetch][usize::from(access)];
        let _ = translate(&mut memory, &control, linear, MemoryAccess { access, user, alignment_check: false });
    }

    /// Four-level walks agree with the mappings the tables were built from.
    #[test]
    fn four_level_walks_match_their_mappings(
        pages in proptest::collection::btree_map(0_u64..1 << 24, 0_u64..1 << 28, 1..24),
        probes in proptest::collection::vec((0_u64..1 << 24, 0_u64..4096), 16),
    ) {
        let (mut memory, mut tables, control) = long();
        let linear_of = |page: u64| (page << 12) | if page & (1 << 23) != 0 { 0xffff_8000_0000_0000 } else { 0 };
        for (page, frame) in &pages {
            tables.map(&mut memory, linear_of(*page), frame << 12, 12, PTE_PRW_US);
        }
        let mapped: BTreeMap<u64, u64> = pages;
        for (page, offset) in probes {
            let linear = linear_of(page) | offset;
            let expected = mapped.get(&page).map(|frame| frame << 12 | offset);
            let translated = translate(&mut memory, &control, linear, READ);
            match expected {
                Some(physical) => prop_assert_eq!(translated, Ok(physical)),
                None => {
                    let not_present = matches!(translated, Err(TranslationFault::PageFault { error_code: 0, .. }));
                    prop_assert!(not_present, "{:?}", translated);
                }
            }
        }
    }
}
