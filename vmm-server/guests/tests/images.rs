//! Builds the test guests for `x86_64-unknown-none` with a nested cargo
//! (into `target/bulkhead/guests`, so that it never waits on the cargo
//! running this test) and checks each image without running it:
//!
//! - the boot convention's layout: a static ELF64 x86-64 executable whose
//!   loadable segments lie inside `LOAD_START..LOAD_END`, do not overlap,
//!   and whose entry point is in an executable segment below 64 KiB;
//! - the code: each mode's region (`code16_start..code16_end`, and so on)
//!   decodes in that mode without an invalid instruction, the regions
//!   tile `.text`, the entry is the 16-bit region's start, every near
//!   branch stays in its region, and every far jump loads the selector of
//!   the next mode and lands on that mode's region;
//! - the tables: the GDT is the crate's, every IDT gate leads into the
//!   code of its mode through that mode's selector;
//! - the console lines: every line `guests::GUESTS` lists is in the
//!   image, and every whole line the image can print with fixed text is
//!   listed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bulkhead_test_guests::guests::{self, Guest};
use bulkhead_test_guests::{CODE32_SELECTOR, CODE64_SELECTOR, GDT, LOAD_END, LOAD_START, REAL_MODE_LIMIT};
use iced_x86::{Code, Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, OpKind};
use object::elf::{EM_X86_64, ET_EXEC, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the guests once per test run; the directory of the ELF files.
fn built_guests() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target_directory = workspace_root().join("target").join("bulkhead").join("guests");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--release", "--package", "bulkhead-test-guests", "--bins"])
            .args(["--target", "x86_64-unknown-none", "--target-dir"])
            .arg(&target_directory)
            // The flags for the target are the repository's (.cargo/config.toml).
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("running cargo");
        assert!(
            output.status.success(),
            "building the guests failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        target_directory.join("x86_64-unknown-none").join("release")
    })
}

fn read_guest(guest: &Guest) -> Vec<u8> {
    let path = built_guests().join(guest.binary);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A symbol's address.
fn symbol(file: &ElfFile64<'_>, name: &str) -> Option<u64> {
    file.symbol_by_name(name).map(|symbol| symbol.address())
}

/// `length` bytes of the image at `address` (file-backed bytes only).
fn bytes_at<'data>(file: &ElfFile64<'data>, address: u64, length: u64) -> &'data [u8] {
    file.segments()
        .find_map(|segment| segment.data_range(address, length).ok().flatten())
        .unwrap_or_else(|| panic!("{length} bytes at {address:#x} are not in the image"))
}

#[test]
fn the_gdt_holds_flat_segments_of_the_right_modes() {
    assert_eq!(GDT[0], 0, "the null descriptor");
    for (selector, descriptor) in [(0x08, GDT[1]), (0x10, GDT[2]), (0x18, GDT[3])] {
        let base = (descriptor >> 16) & 0xFF_FFFF | ((descriptor >> 56) << 24);
        let limit = descriptor & 0xFFFF | ((descriptor >> 48) & 0xF) << 16;
        let access = (descriptor >> 40) & 0xFF;
        let flags = (descriptor >> 52) & 0xF;
        assert_eq!((base, limit), (0, 0xF_FFFF), "selector {selector:#x}: base 0, limit 4 GiB");
        assert_eq!(access & 0xF0, 0x90, "selector {selector:#x}: present, DPL 0, code or data");
        assert_eq!(access & 1, 1, "selector {selector:#x}: accessed already (loading it writes nothing)");
        assert_eq!(flags & 0x8, 0x8, "selector {selector:#x}: 4 KiB granularity");
    }
    let mode = |descriptor: u64| ((descriptor >> 43) & 1, (descriptor >> 53) & 1, (descriptor >> 54) & 1);
    // (executable, L, D/B)
    assert_eq!(mode(GDT[usize::from(CODE32_SELECTOR / 8)]), (1, 0, 1), "32-bit code");
    assert_eq!(mode(GDT[2]), (0, 0, 1), "data");
    assert_eq!(mode(GDT[usize::from(CODE64_SELECTOR / 8)]), (1, 1, 0), "64-bit code: L set, D clear");
    assert_eq!((GDT[2] >> 41) & 1, 1, "data is writable");
    assert_eq!((GDT[1] >> 41) & 1, 1, "code is readable");
}

#[test]
fn every_guest_keeps_the_boot_convention_layout() {
    for guest in guests::GUESTS {
        let bytes = read_guest(&guest);
        let name = guest.binary;
        let file = ElfFile64::<object::Endianness>::parse(&*bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let endian = file.endian();
        assert_eq!(endian, object::Endianness::Little, "{name}: little-endian");
        let header = file.elf_header();
        assert_eq!(header.e_machine(endian), EM_X86_64, "{name}: x86-64");
        assert_eq!(header.e_type(endian), ET_EXEC, "{name}: a static executable");
        let entry = header.e_entry(endian);
        let mut loaded: Vec<(u64, u64, bool)> = Vec::new();
        for segment in file.elf_program_headers() {
            let kind = segment.p_type(endian);
            assert!(kind != PT_INTERP && kind != PT_DYNAMIC, "{name}: dynamically linked");
            if kind != PT_LOAD || segment.p_memsz(endian) == 0 {
                continue;
            }
            let (physical, memory) = (segment.p_paddr(endian), segment.p_memsz(endian));
            assert_eq!(physical, segment.p_vaddr(endian), "{name}: the code runs at its load address");
            assert!(segment.p_filesz(endian) <= memory, "{name}: segment at {physical:#x} has more file than memory");
            let end = physical + memory;
            assert!(
                LOAD_START <= physical && end <= LOAD_END,
                "{name}: segment {physical:#x}..{end:#x} outside {LOAD_START:#x}..{LOAD_END:#x}"
            );
            if let Some((other, ..)) = loaded.iter().find(|(start, stop, _)| *start < end && physical < *stop) {
                panic!("{name}: segments at {other:#x} and {physical:#x} overlap");
            }
            loaded.push((physical, end, segment.p_flags(endian) & PF_X != 0));
        }
        assert!(!loaded.is_empty(), "{name}: no loadable segment");
        assert!(entry < REAL_MODE_LIMIT, "{name}: entry {entry:#x} out of real mode's reach");
        assert!(
            loaded.iter().any(|(start, stop, executable)| *executable && (*start..*stop).contains(&entry)),
            "{name}: entry {entry:#x} is not in an executable segment"
        );
        assert_eq!(symbol(&file, "code16_start"), Some(entry), "{name}: the entry starts the 16-bit code");
        let stack_top = symbol(&file, "stack_top").expect("stack_top");
        assert!(stack_top <= REAL_MODE_LIMIT, "{name}: the stack is out of real mode's reach");
    }
}

/// One mode's code: [start, end) decoded with `bitness`.
struct Region {
    bitness: u32,
    start: u64,
    end: u64,
}

fn regions(file: &ElfFile64<'_>) -> Vec<Region> {
    let mut regions = Vec::new();
    for bitness in [16, 32, 64] {
        let start = symbol(file, &format!("code{bitness}_start"));
        let end = symbol(file, &format!("code{bitness}_end"));
        match (start, end) {
            (Some(start), Some(end)) => {
                assert!(start < end, "code{bitness}: empty");
                regions.push(Region { bitness, start, end });
            }
            (None, None) => {}
            _ => panic!("code{bitness}_start and code{bitness}_end come in pairs"),
        }
    }
    regions
}

fn describe(instruction: &Instruction) -> String {
    let mut text = String::new();
    GasFormatter::new().format(instruction, &mut text);
    format!("{:#x}: {text}", instruction.ip())
}

#[test]
fn every_guest_decodes_in_its_modes_and_switches_mode_by_far_jumps() {
    for guest in guests::GUESTS {
        let bytes = read_guest(&guest);
        let name = guest.binary;
        let file = ElfFile64::<object::Endianness>::parse(&*bytes).expect("ELF");
        let regions = regions(&file);
        assert_eq!(regions.first().map(|region| region.bitness), Some(16), "{name}: starts in real mode");
        // The regions follow each other and cover .text exactly.
        let text = file.section_by_name(".text").expect(".text");
        assert_eq!(regions[0].start, text.address(), "{name}: .text starts with the 16-bit code");
        for pair in regions.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{name}: code{} and code{} meet", pair[0].bitness, pair[1].bitness);
        }
        let last = regions.last().expect("a region");
        assert_eq!(last.end, text.address() + text.size(), "{name}: every byte of .text is in a region");

        let mut far_jumps = Vec::new();
        for region in &regions {
            let code = bytes_at(&file, region.start, region.end - region.start);
            let mut decoder = Decoder::with_ip(region.bitness, code, region.start, DecoderOptions::NONE);
            let mut instruction = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut instruction);
                if instruction.is_invalid() {
                    let offset = usize::try_from(instruction.ip() - region.start).expect("an offset");
                    let shown = &code[offset..code.len().min(offset + 8)];
                    panic!("{name}: invalid {}-bit code at {:#x}: {shown:02x?}", region.bitness, instruction.ip());
                }
                // JMP, Jcc, CALL, LOOP and JCXZ to an address.
                let near = instruction.op_count() > 0
                    && matches!(
                        instruction.op0_kind(),
                        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                    );
                if near {
                    let target = instruction.near_branch_target();
                    assert!(
                        (region.start..region.end).contains(&target),
                        "{name}: {} leaves the {}-bit code",
                        describe(&instruction),
                        region.bitness
                    );
                }
                match instruction.code() {
                    Code::Jmp_ptr1616 | Code::Jmp_ptr1632 => {
                        let target = if instruction.code() == Code::Jmp_ptr1616 {
                            u64::from(instruction.far_branch16())
                        } else {
                            u64::from(instruction.far_branch32())
                        };
                        far_jumps.push((region.bitness, instruction.far_branch_selector(), target));
                    }
                    Code::Jmp_m1616 | Code::Jmp_m1632 | Code::Jmp_m1664 | Code::Call_ptr1616 | Code::Call_ptr1632 => {
                        panic!("{name}: {} is a far transfer the test cannot follow", describe(&instruction))
                    }
                    _ => {}
                }
            }
        }
        // Each region after the first is entered by one far jump from the
        // one before, with that mode's code selector, at its start.
        let expected: Vec<(u32, u16, u64)> = regions
            .windows(2)
            .map(|pair| {
                let selector = if pair[1].bitness == 32 { CODE32_SELECTOR } else { CODE64_SELECTOR };
                (pair[0].bitness, selector, pair[1].start)
            })
            .collect();
        assert_eq!(far_jumps, expected, "{name}: far jumps (from bitness, selector, target): {far_jumps:#x?}");
    }
}

#[test]
fn every_guest_has_the_crates_gdt_and_idts_into_its_code() {
    for guest in guests::GUESTS {
        let bytes = read_guest(&guest);
        let name = guest.binary;
        let file = ElfFile64::<object::Endianness>::parse(&*bytes).expect("ELF");
        let regions = regions(&file);
        // A guest that never leaves real mode has no GDT (the linker drops
        // the unused one); every other has the crate's.
        match symbol(&file, "gdt") {
            Some(gdt) => {
                let image: Vec<u64> = bytes_at(&file, gdt, 32)
                    .chunks_exact(8)
                    .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes")))
                    .collect();
                assert_eq!(image, GDT, "{name}: the GDT");
            }
            None => assert!(
                regions.iter().all(|region| region.bitness == 16) && symbol(&file, "gdt_descriptor").is_none(),
                "{name}: no GDT but code beyond real mode"
            ),
        }
        let region = |bitness: u32| regions.iter().find(|region| region.bitness == bitness);
        let mut tables = 0;
        for (table, gate_bytes, bitness, selector) in
            [("idt32", 8, 32, CODE32_SELECTOR), ("idt64", 16, 64, CODE64_SELECTOR)]
        {
            let Some(address) = symbol(&file, table) else { continue };
            tables += 1;
            let code = region(bitness).unwrap_or_else(|| panic!("{name}: {table} without {bitness}-bit code"));
            let gates = bytes_at(&file, address, 32 * gate_bytes);
            for (vector, gate) in gates.chunks_exact(usize::try_from(gate_bytes).expect("gate size")).enumerate() {
                let word = |index: usize| u64::from(u16::from_le_bytes([gate[2 * index], gate[2 * index + 1]]));
                let mut offset = word(0) | word(3) << 16;
                if gate_bytes == 16 {
                    offset |= u64::from(u32::from_le_bytes(gate[8..12].try_into().expect("4 bytes"))) << 32;
                }
                assert_eq!(word(1), u64::from(selector), "{name}: {table}[{vector}] selector");
                assert_eq!(word(2), 0x8E00, "{name}: {table}[{vector}] is a present DPL 0 interrupt gate");
                assert!(
                    (code.start..code.end).contains(&offset),
                    "{name}: {table}[{vector}] leads to {offset:#x}, outside the {bitness}-bit code"
                );
                let stub = symbol(&file, &format!("exception{bitness}_{vector}"));
                assert_eq!(stub, Some(offset), "{name}: {table}[{vector}] leads to its stub");
            }
        }
        if let Some(table) = symbol(&file, "real_exception_table") {
            tables += 1;
            let code = region(16).expect("16-bit code");
            for (vector, entry) in bytes_at(&file, table, 64).chunks_exact(2).enumerate() {
                let offset = u64::from(u16::from_le_bytes([entry[0], entry[1]]));
                assert!((code.start..code.end).contains(&offset), "{name}: IVT entry {vector} outside the 16-bit code");
                assert_eq!(
                    symbol(&file, &format!("real_exception_{vector}")),
                    Some(offset),
                    "{name}: IVT entry {vector}"
                );
            }
        }
        assert_eq!(tables, 1, "{name}: one table of exception handlers");
    }
}

#[test]
fn every_guest_holds_exactly_the_lines_its_table_lists() {
    for guest in guests::GUESTS {
        let bytes = read_guest(&guest);
        let name = guest.binary;
        let file = ElfFile64::<object::Endianness>::parse(&*bytes).expect("ELF");
        let rodata = file.section_by_name(".rodata").expect(".rodata").data().expect("section data");
        // Whole lines of fixed text: strings ending in "\n\0" that start
        // with the guest's prefix.
        let prefix = guest.lines[0].split(": ").next().expect("a prefix");
        let found: BTreeSet<&str> = rodata
            .split(|byte| *byte == 0)
            .filter_map(|string| std::str::from_utf8(string).ok()?.strip_suffix('\n'))
            .filter(|line| line.starts_with(&format!("{prefix}: ")))
            .collect();
        let listed: BTreeSet<&str> = guest.lines.iter().copied().collect();
        assert_eq!(listed.len(), guest.lines.len(), "{name}: a line listed twice");
        assert_eq!(found, listed, "{name}: the lines in the image and the lines listed");
        for line in guest.lines {
            assert!(line.bytes().all(|byte| byte.is_ascii_graphic() || byte == b' '), "{name}: {line:?} is not plain");
        }
    }
    for (line, address) in guests::HOSTILE_VALUE_LINES.iter().zip([0, 0, 1, 1]) {
        let address = format!("{:#x}", guests::HOSTILE_PROBED_ADDRESSES[address]);
        assert!(line.contains(&address), "{line} names {address}");
    }
}
