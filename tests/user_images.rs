//! The ring-3 images the CLI builds: the root task builds for bare metal
//! and its ELF passes the loader's layout check; the check itself refuses
//! each broken variant of that image.

use std::path::PathBuf;
use std::sync::OnceLock;

use bulkhead::user_build::{self, IMAGE_BASE, IMAGE_END, check_root_task_layout};

/// The built image's bytes (built once for all tests: about a minute cold).
fn root_task() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = user_build::build_root_task().unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(path, user_build::root_task_elf_path());
        std::fs::read(&path).expect("the built root task")
    })
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// File offsets of the PT_LOAD program headers (ELF64 layout).
fn load_headers(elf: &[u8]) -> Vec<usize> {
    let table = usize::try_from(u64_at(elf, 32)).unwrap();
    let (size, count) = (usize::from(u16_at(elf, 54)), usize::from(u16_at(elf, 56)));
    (0..count).map(|index| table + index * size).filter(|at| u32_at(elf, *at) == 1).collect()
}

fn refused(elf: &[u8], expected: &str) {
    match check_root_task_layout(elf) {
        Ok(()) => panic!("a broken image passed (expected: {expected})"),
        Err(error) => assert!(error.to_string().contains(expected), "{error} does not say {expected:?}"),
    }
}

#[test]
fn the_root_task_builds_as_a_static_image_in_its_range() {
    let elf = root_task();
    check_root_task_layout(elf).expect("the built image passes");
    let headers = load_headers(elf);
    assert!(headers.len() >= 2, "separate code and data segments");
    let flags: Vec<u32> = headers.iter().map(|at| u32_at(elf, at + 4)).collect();
    assert!(flags.contains(&5), "an R+X segment: {flags:?}");
    assert!(flags.iter().all(|flag| flag & 3 != 3), "no W+X segment: {flags:?}");
    let entry = u64_at(elf, 24);
    assert!((IMAGE_BASE..IMAGE_END).contains(&entry), "entry {entry:#x}");
}

#[test]
fn the_layout_check_refuses_each_broken_variant() {
    let good = root_task();
    refused(b"not an elf file at all", "not an ELF64 file");

    let mut image = good.to_vec();
    image[16] = 3; // ET_DYN
    refused(&image, "not a static executable");

    let mut image = good.to_vec();
    image[18] = 3; // EM_386
    refused(&image, "not x86-64");

    let mut image = good.to_vec();
    image[24..32].copy_from_slice(&(IMAGE_END + 0x1000).to_le_bytes());
    refused(&image, "entry point");

    let headers = load_headers(good);
    let mut image = good.to_vec();
    image[headers[0] + 4..headers[0] + 8].copy_from_slice(&7_u32.to_le_bytes()); // R+W+X
    refused(&image, "writable and executable");

    let mut image = good.to_vec();
    image[headers[0] + 16..headers[0] + 24].copy_from_slice(&0x20_0000_u64.to_le_bytes());
    refused(&image, "outside the image range");

    let mut image = good.to_vec();
    let last = *headers.last().unwrap();
    image[last + 16..last + 24].copy_from_slice(&(IMAGE_END - 0x1000).to_le_bytes());
    image[last + 40..last + 48].copy_from_slice(&0x2000_u64.to_le_bytes());
    refused(&image, "outside the image range");

    let mut image = good.to_vec();
    let address = u64_at(good, headers[1] + 16);
    image[headers[1] + 16..headers[1] + 24].copy_from_slice(&(address + 8).to_le_bytes());
    refused(&image, "not page-aligned");

    let mut image = good.to_vec();
    let first = u64_at(good, headers[0] + 16);
    image[headers[1] + 16..headers[1] + 24].copy_from_slice(&first.to_le_bytes());
    refused(&image, "share a page");

    let mut image = good.to_vec();
    image[headers[0]..headers[0] + 4].copy_from_slice(&2_u32.to_le_bytes()); // PT_DYNAMIC
    refused(&image, "dynamically linked");
}

#[test]
fn the_image_range_is_the_kernel_s() {
    let source = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernel/src/root_task.rs"))
        .expect("kernel/src/root_task.rs");
    let value = |name: &str| -> u64 {
        let line = source.lines().find(|line| line.starts_with(&format!("pub const {name}: u64 = "))).unwrap();
        let literal = line.split("= ").nth(1).unwrap().trim_end_matches(';').replace('_', "");
        u64::from_str_radix(literal.trim_start_matches("0x"), 16).unwrap()
    };
    assert_eq!(value("IMAGE_BASE"), IMAGE_BASE);
    assert_eq!(value("IMAGE_END"), IMAGE_END);
}
