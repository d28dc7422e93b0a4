use bulkhead_capdl_spec::linux::{SetupHeader, Staging};
use bulkhead_vmm_server::boot::linux;
use proptest::prelude::*;

use super::*;

const MIB: u64 = 1 << 20;

/// A segment of a hand-made ELF file: address, file bytes, memory bytes.
struct Segment<'a> {
    address: u64,
    data: &'a [u8],
    memory: u64,
}

/// A static ELF64 x86-64 executable with `segments` and entry `entry`:
/// the header, the program headers, then each segment's bytes.
fn elf(entry: u64, segments: &[Segment<'_>]) -> Vec<u8> {
    let mut file = vec![0_u8; 64 + 56 * segments.len()];
    file[..4].copy_from_slice(b"\x7fELF");
    file[4] = 2; // 64-bit
    file[5] = 1; // little-endian
    file[6] = 1; // version
    file[16..18].copy_from_slice(&2_u16.to_le_bytes()); // ET_EXEC
    file[18..20].copy_from_slice(&62_u16.to_le_bytes()); // EM_X86_64
    file[20..24].copy_from_slice(&1_u32.to_le_bytes());
    file[24..32].copy_from_slice(&entry.to_le_bytes());
    file[32..40].copy_from_slice(&64_u64.to_le_bytes()); // e_phoff
    file[52..54].copy_from_slice(&64_u16.to_le_bytes()); // e_ehsize
    file[54..56].copy_from_slice(&56_u16.to_le_bytes()); // e_phentsize
    file[56..58].copy_from_slice(&u16::try_from(segments.len()).unwrap().to_le_bytes());
    for (index, segment) in segments.iter().enumerate() {
        let offset = file.len() as u64;
        let header = 64 + 56 * index;
        let mut put = |at: usize, bytes: &[u8]| file[header + at..header + at + bytes.len()].copy_from_slice(bytes);
        put(0, &1_u32.to_le_bytes()); // PT_LOAD
        put(4, &7_u32.to_le_bytes()); // RWX
        put(8, &offset.to_le_bytes());
        put(16, &segment.address.to_le_bytes());
        put(24, &segment.address.to_le_bytes());
        put(32, &(segment.data.len() as u64).to_le_bytes());
        put(40, &segment.memory.to_le_bytes());
        put(48, &4096_u64.to_le_bytes());
        file.extend_from_slice(segment.data);
    }
    file
}

fn code() -> Vec<u8> {
    (0..0x1234_u32).map(|byte| (byte % 251) as u8 + 1).collect()
}

#[test]
fn the_image_is_a_bzimage_the_vmm_and_the_loader_accept() {
    let code = code();
    let data = [0xd5_u8; 40];
    let elf = elf(
        16 * MIB + 0x200,
        &[
            Segment { address: 16 * MIB, data: &code, memory: code.len() as u64 },
            Segment { address: 16 * MIB + 0x2000, data: &data, memory: 0x1_0000 },
        ],
    );
    let image = bzimage_from_elf(&elf).unwrap();
    // The VMM's own parser: every field it checks.
    let parsed = linux::parse(&image).unwrap();
    assert_eq!(parsed.header.protocol, 0x020f);
    assert_eq!(parsed.header.setup_sectors, 1);
    assert_eq!(parsed.header.loadflags, linux::loadflags::LOADED_HIGH);
    assert_eq!(parsed.header.xloadflags, linux::xloadflags::KERNEL_64);
    assert!(!parsed.header.relocatable);
    assert_eq!(parsed.header.pref_address, 16 * MIB);
    assert_eq!(parsed.header.kernel_alignment, 0x20_0000);
    assert_eq!(parsed.header.init_size, 0x1_2000, "the extent of both segments, .bss included");
    assert_eq!(parsed.header.cmdline_size, 2047);
    assert_eq!(parsed.setup.len(), 1024, "the boot sector and one setup sector");
    // The protected-mode part: each segment's bytes at its offset, zeros
    // between, padded to 16 bytes.
    assert_eq!(parsed.kernel.len(), 0x2030);
    assert_eq!(&parsed.kernel[..code.len()], &code[..]);
    assert!(parsed.kernel[code.len()..0x2000].iter().all(|byte| *byte == 0));
    assert_eq!(&parsed.kernel[0x2000..0x2028], &data[..]);
    assert!(parsed.kernel[0x2028..].iter().all(|byte| *byte == 0));
    // Planned as Linux is: at its preferred address, entered at + 0x200.
    let plan = linux::plan(&parsed, 32 * MIB, b"hostile.seed=1", 0).unwrap();
    assert_eq!(plan.kernel.start, 16 * MIB);
    assert_eq!(plan.vcpu.rip, 16 * MIB + 0x200);
    // The loader stages it in a 32 MiB guest.
    let header = SetupHeader::parse(&image).unwrap();
    Staging::plan(32 * MIB, &header, image.len() as u64, None, Some(40)).unwrap();
}

#[test]
fn images_the_boot_path_cannot_take_are_refused() {
    let code = code();
    let at = |address: u64| [Segment { address, data: &code, memory: 0x2000 }];
    assert!(bzimage_from_elf(&elf(16 * MIB + 0x200, &at(16 * MIB))).is_ok());
    let refused = |entry: u64, segments: &[Segment<'_>]| bzimage_from_elf(&elf(entry, segments)).unwrap_err();
    assert!(refused(16 * MIB, &at(16 * MIB)).contains("entry"), "the entry must be at + 0x200");
    assert!(refused(17 * MIB + 0x200, &at(17 * MIB)).contains("2 MiB aligned"));
    assert!(refused(0x200, &at(0)).contains("2 MiB aligned"), "below 1 MiB");
    assert!(refused(0, &[]).contains("no loadable segment"));
    let overlapping = [
        Segment { address: 16 * MIB, data: &code, memory: 0x2000 },
        Segment { address: 16 * MIB + 0x1000, data: &code, memory: 0x2000 },
    ];
    assert!(refused(16 * MIB + 0x200, &overlapping).contains("overlaps"));
    let huge = [Segment { address: 16 * MIB, data: &code, memory: 1 << 33 }];
    assert!(refused(16 * MIB + 0x200, &huge).contains("4 GiB"));
    let far = [
        Segment { address: 16 * MIB, data: &code, memory: 0x2000 },
        Segment { address: 100 * MIB, data: &code, memory: 0x2000 },
    ];
    assert!(refused(16 * MIB + 0x200, &far).contains("64 MiB"));
    let more_file_than_memory = [Segment { address: 16 * MIB, data: &code, memory: 16 }];
    assert!(refused(16 * MIB + 0x200, &more_file_than_memory).contains("more file bytes"));
    let mut not_x86 = elf(16 * MIB + 0x200, &at(16 * MIB));
    not_x86[18] = 3;
    assert!(bzimage_from_elf(&not_x86).unwrap_err().contains("x86-64"));
    assert!(bzimage_from_elf(b"MZ").unwrap_err().contains("ELF64"));
}

proptest! {
    /// Any bytes, and any damage to a good file, give an image or an
    /// error, never a panic; an image is always one the VMM parses.
    #[test]
    fn any_file_packs_or_is_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        if let Ok(image) = bzimage_from_elf(&bytes) {
            prop_assert!(linux::parse(&image).is_ok());
        }
        let code = code();
        let mut file = elf(16 * MIB + 0x200, &[Segment { address: 16 * MIB, data: &code, memory: 0x2000 }]);
        for (index, value) in flips {
            let at = index.index(file.len());
            file[at] = value;
        }
        if let Ok(image) = bzimage_from_elf(&file) {
            prop_assert!(linux::parse(&image).is_ok());
        }
    }
}
