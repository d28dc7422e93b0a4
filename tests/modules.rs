//! Boot modules: files the boot loader loads beside the kernel (later the
//! capability manifest and the ring-3 images). The kernel must find each
//! one, with its command line, and keep its frames out of the allocator:
//! through QEMU `-kernel` (Multiboot1) and through GRUB (Multiboot2).

mod common;

use std::path::PathBuf;

use bulkhead::emulator::{self, Firmware, QemuBoot, QemuOptions};
use bulkhead::image::{self, BootModule, DefaultEntry, IsoSpec};
use bulkhead::kernel_build;
use common::*;

const PAGE: usize = 4096;

/// Two module files of 3 and 5 pages, written once per test binary run.
fn module_files() -> Vec<BootModule> {
    let directory = kernel_build::output_directory().join("test-modules");
    std::fs::create_dir_all(&directory).expect("module directory");
    [("first.bin", 3, "first-module role=manifest"), ("second.bin", 5, "second-module")]
        .into_iter()
        .map(|(name, pages, cmdline)| {
            let path: PathBuf = directory.join(name);
            std::fs::write(&path, vec![0xa5_u8; pages * PAGE]).expect("module file");
            BootModule { path, cmdline: cmdline.into() }
        })
        .collect()
}

/// `module: [start, end) cmdline` lines decoded from the kernel's log.
fn reported_modules(console: &str) -> Vec<(u64, u64, String)> {
    console
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("module: [")? + "module: [".len()..];
            let (start, rest) = rest.split_once(", ")?;
            let (end, rest) = rest.split_once(") ")?;
            let rest = rest.rsplit_once(" (kernel/").map_or(rest, |(text, _)| text);
            let parse = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok();
            Some((parse(start)?, parse(end)?, rest.to_owned()))
        })
        .collect()
}

fn free_frames(console: &str) -> u64 {
    let line = console.lines().find(|line| line.contains("free 4 KiB frames")).expect("allocator summary");
    let after = &line[line.find("frames: ").expect("frames: prefix") + "frames: ".len()..];
    after.split_whitespace().next().and_then(|count| count.parse().ok()).expect("a frame count")
}

fn assert_modules_found(console: &str) {
    assert!(!console.contains(", 0 modules"), "the kernel saw no module");
    assert!(console.contains(", 2 modules"), "memory-map summary counts both modules");
    let modules = reported_modules(console);
    assert_eq!(modules.len(), 2, "{modules:?}");
    for ((start, end, cmdline), (pages, name)) in modules.iter().zip([(3, "first-module"), (5, "second-module")]) {
        assert_eq!(end - start, (pages * PAGE) as u64, "module {name} has its file's size");
        assert!(cmdline.contains(name), "module command line {cmdline:?} names {name}");
        assert_eq!(start % PAGE as u64, 0, "modules are page-aligned (multiboot header flag 0)");
    }
    assert!(modules[0].2.contains("role=manifest"), "the whole command line arrives");
}

#[test]
fn kernel_boot_finds_modules_and_keeps_them_from_the_allocator() {
    let kernel = standard_kernel();
    let modules = module_files();
    let with_modules = run_qemu(
        kernel,
        QemuBoot::Kernel { elf: kernel.elf.clone(), cmdline: "exit=emulator".into(), modules },
        QemuOptions::default(),
        KERNEL_BOOT_TIMEOUT,
    );
    assert_eq!(with_modules.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    assert_modules_found(&with_modules.console);
    let without_modules = run_kernel_boot(kernel, "", false);
    let difference = free_frames(&without_modules.console) - free_frames(&with_modules.console);
    // The 8 module pages, plus at most a page of module strings.
    assert!((8..=9).contains(&difference), "modules took {difference} frames out of the allocator");
}

#[test]
fn grub_iso_boot_finds_modules() {
    let kernel = standard_kernel();
    let modules = module_files();
    let iso = kernel_build::output_directory().join("test-modules.iso");
    let spec = IsoSpec { kernel, default_entry: DefaultEntry::Emulator, extra_cmdline: "", modules: &modules };
    image::build_iso(&spec, &iso).unwrap_or_else(|error| panic!("{error}"));
    let outcome =
        run_qemu(kernel, QemuBoot::Iso { iso, firmware: Firmware::Bios }, QemuOptions::default(), KERNEL_BOOT_TIMEOUT);
    assert_successful_boot(&outcome, "GRUB", "multiboot2");
    assert_modules_found(&outcome.console);
}
