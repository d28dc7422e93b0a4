//! Boots the real kernel image every way a user can: QEMU `-kernel`
//! (Multiboot1), the ISO through BIOS and through UEFI (GRUB, Multiboot2),
//! and the same ISO in Bochs with an Intel VT-x CPU. Each run asserts on the
//! banner, the memory-map summary and the exit status, and the QEMU runs
//! print their instruction counts (`-icount shift=0`), which
//! docs/PERFORMANCE.md records.

mod common;

use bulkhead::emulator::{self, Firmware, QemuBoot, QemuOptions, WatchOptions};
use common::*;

fn report_cost(path: &str, outcome: &emulator::RunOutcome) {
    let cost = boot_cost(&outcome.console);
    println!(
        "boot cost [{path}]: instructions from kernel entry: {} to the banner, {} to boot complete; \
         virtual ns from reset to kernel entry (instructions plus firmware idle): {}",
        cost.entry_to_banner(),
        cost.entry_to_boot_complete(),
        cost.tsc_at_entry
    );
}

#[test]
fn qemu_kernel_boot_through_multiboot1() {
    let kernel = standard_kernel();
    let outcome = run_kernel_boot(kernel, "", true);
    assert_successful_boot(&outcome, "qemu", "multiboot1");
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    report_cost("qemu -kernel", &outcome);
}

/// Boots the standard ISO through GRUB with the given firmware, counting
/// instructions, and checks the whole report.
fn boot_iso_in_qemu(firmware: Firmware, timeout: std::time::Duration, label: &str) {
    let kernel = standard_kernel();
    let boot = QemuBoot::Iso { iso: standard_iso().clone(), firmware };
    let options = QemuOptions { count_instructions: true, ..QemuOptions::default() };
    let outcome = run_qemu(kernel, boot, options, timeout);
    assert_successful_boot(&outcome, "GRUB", "multiboot2");
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    report_cost(label, &outcome);
}

#[test]
fn qemu_bios_iso_boot_through_grub() {
    boot_iso_in_qemu(Firmware::Bios, KERNEL_BOOT_TIMEOUT, "qemu BIOS ISO");
}

#[test]
fn qemu_uefi_iso_boot_through_ovmf_and_grub() {
    boot_iso_in_qemu(Firmware::Uefi, FIRMWARE_BOOT_TIMEOUT, "qemu UEFI ISO");
}

#[test]
fn bochs_iso_boot_with_vtx_cpu() {
    let kernel = standard_kernel();
    let iso = standard_iso();
    let (command, log) =
        emulator::bochs_command(iso, emulator::DEFAULT_BOCHS_CPU).unwrap_or_else(|error| panic!("{error}"));
    let watch = WatchOptions { echo: false, timeout: Some(FIRMWARE_BOOT_TIMEOUT), ..WatchOptions::default() };
    let outcome = emulator::run(command, &kernel.elf, &watch).unwrap_or_else(|error| panic!("{error}"));
    print_outcome(&outcome);
    println!("Bochs log: {}", log.display());
    // Bochs's exit status is meaningless (it may crash while tearing down):
    // the kernel's final line is the verdict.
    assert_successful_boot(&outcome, "GRUB", "multiboot2");
    assert!(outcome.console.contains("GenuineIntel"), "Bochs should emulate an Intel CPU");
    assert!(outcome.console.contains("virtualisation extensions: vtx (Intel VT-x)"));
    // Bochs's TSC advances once per emulated instruction.
    let cost = boot_cost(&outcome.console);
    println!(
        "boot cost [bochs BIOS ISO]: instructions from kernel entry: {} to the banner, {} to boot complete; \
         TSC ticks from reset to kernel entry (instructions plus firmware idle): {}",
        cost.entry_to_banner(),
        cost.entry_to_boot_complete(),
        cost.tsc_at_entry
    );
}

#[test]
fn svm_cpu_is_reported_under_qemu() {
    let kernel = standard_kernel();
    let outcome = run_kernel_boot(kernel, "", false);
    assert!(outcome.console.contains("AuthenticAMD"));
    assert!(outcome.console.contains("virtualisation extensions: svm (AMD SVM with nested paging)"));
    let boot = QemuBoot::Kernel { elf: kernel.elf.clone(), cmdline: "exit=emulator".into(), modules: vec![] };
    let plain = QemuOptions { cpu: "qemu64,-svm".into(), ..QemuOptions::default() };
    let outcome = run_qemu(kernel, boot, plain, KERNEL_BOOT_TIMEOUT);
    assert!(outcome.console.contains("virtualisation extensions: none: guests unsupported"));
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

#[test]
fn standard_kernel_ignores_fault_injection() {
    let kernel = standard_kernel();
    let outcome = run_kernel_boot(kernel, "inject=page-fault", false);
    assert!(
        outcome.console.contains("boot: ignoring inject=page-fault: this kernel was built without fault injection")
    );
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}
