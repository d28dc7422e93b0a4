use proptest::prelude::*;

use super::*;

fn text(words: [u32; 3]) -> std::vec::Vec<u8> {
    words.iter().flat_map(|word| word.to_le_bytes()).collect()
}

#[test]
fn leaf_zero_names_the_vendor_and_the_highest_basic_leaf() {
    let result = CpuidTable::new(0).query(0, 0);
    assert_eq!(result.eax, MAX_BASIC_LEAF);
    assert_eq!(text([result.ebx, result.edx, result.ecx]), b"BulkheadVMM ");
}

#[test]
fn leaf_one_has_the_baseline_and_hides_nested_virtualisation() {
    let result = CpuidTable::new(3).query(1, 0);
    for feature in [
        leaf1_edx::FPU,
        leaf1_edx::PSE,
        leaf1_edx::TSC,
        leaf1_edx::MSR,
        leaf1_edx::PAE,
        leaf1_edx::CX8,
        leaf1_edx::SEP,
        leaf1_edx::PGE,
        leaf1_edx::CMOV,
        leaf1_edx::PAT,
        leaf1_edx::PSE36,
        leaf1_edx::FXSR,
        leaf1_edx::SSE,
        leaf1_edx::SSE2,
    ] {
        assert_ne!(result.edx & feature, 0, "{feature:#x}");
    }
    assert_eq!(result.edx & (leaf1_edx::APIC | leaf1_edx::MTRR), 0);
    assert_eq!(result.ecx & (leaf1_ecx::VMX | leaf1_ecx::XSAVE | leaf1_ecx::OSXSAVE), 0);
    assert_ne!(result.ecx & leaf1_ecx::HYPERVISOR, 0);
    assert_eq!(result.ebx >> 24, 3, "the APIC ID");
    assert_eq!((result.ebx >> 8) & 0xff, 8, "a 64-byte CLFLUSH line");
}

#[test]
fn extended_leaves_have_long_mode_and_no_svm() {
    let table = CpuidTable::new(0);
    assert_eq!(table.query(0x8000_0000, 0).eax, MAX_EXTENDED_LEAF);
    let result = table.query(0x8000_0001, 0);
    for feature in [extended::LM, extended::NX, extended::SYSCALL] {
        assert_ne!(result.edx & feature, 0, "{feature:#x}");
    }
    assert_eq!(result.edx & extended::PAGE_1G, 0);
    assert_eq!(result.ecx & extended::SVM, 0);
    assert_eq!(table.query(0x8000_0008, 0).eax, 36 | 48 << 8);
}

#[test]
fn the_hypervisor_leaf_has_a_signature() {
    let result = CpuidTable::new(0).query(HYPERVISOR_LEAF, 0);
    assert_eq!(result.eax, HYPERVISOR_LEAF);
    assert_eq!(text([result.ebx, result.ecx, result.edx]), b"BulkheadVMM ");
}

#[test]
fn unknown_leaves_are_zero() {
    let table = CpuidTable::new(0);
    for leaf in [2, 4, 7, 0xb, 0xd, 0x4000_0001, 0x8000_0002, 0x8000_0009, 0xffff_ffff] {
        assert_eq!(table.query(leaf, 0), CpuidResult::default(), "{leaf:#x}");
    }
}

proptest! {
    #[test]
    fn only_table_leaves_answer(leaf in any::<u32>(), subleaf in any::<u32>()) {
        let known = [0, 1, HYPERVISOR_LEAF, 0x8000_0000, 0x8000_0001, MAX_EXTENDED_LEAF];
        let result = CpuidTable::new(0).query(leaf, subleaf);
        prop_assert!(known.contains(&leaf) || result == CpuidResult::default());
        prop_assert_eq!(result, CpuidTable::new(0).query(leaf, 0));
    }
}
