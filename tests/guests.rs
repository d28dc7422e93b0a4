//! Guests: the virtualisation backends run guests the kernel builds
//! itself (`docs/VIRTUALISATION.md`). So far the `svm` backend's boot
//! self-test (`inject=guest-svm`, kernel/src/arch/svm.rs): a real-mode
//! guest under QEMU's SVM with nested paging whose every exit the kernel
//! decodes with `kernel_core::virt` and prints.

mod common;

use bulkhead::emulator;
use common::*;

/// What the test guest's four exits must print, in order: an OUT with its
/// port, size, AL and length (from the next RIP SVM reports); a CPUID of
/// leaf 0; a write to guest-physical 0x2000, outside the guest's one page
/// (qualification 0x2: a write to an unmapped address); a HLT, after the
/// CPUID answer reached the guest's EBX ("Bulk").
const GUEST_LINES: [&str; 5] = [
    "svm guest: out port 0x80, 1 byte(s), al 0x42, length 2",
    "svm guest: cpuid leaf 0x0",
    "svm guest: nested page fault at 0x2000 (0x2), rip 0x108",
    "svm guest: hlt at rip 0x10d, ebx 0x6b6c7542",
    "svm guest: done after 4 exits",
];

#[test]
fn svm_runs_a_real_mode_guest_exit_by_exit() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=guest-svm", false);
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the guest or the kernel hung");
    assert!(!console.contains("!!! kernel"), "the guest caused a kernel exception or panic");
    assert!(console.contains("svm: enabled, host save area at 0x"), "SVM was enabled");
    assert_lines_in_order(console, &GUEST_LINES);
    let frames = lines(console)
        .into_iter()
        .find_map(|line| line.strip_prefix("svm guest: frames before "))
        .expect("the frame count");
    let (before, after) = frames.split_once(", after ").expect("before and after");
    assert_eq!(before, after, "every frame the guest used went back to the allocator");
    // The kernel went on to the end of its boot and reported success.
    assert_eq!(outcome.final_status(), Some("success"));
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}
