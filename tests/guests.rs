//! Guests: the virtualisation backends run guests the kernel builds
//! itself (`docs/VIRTUALISATION.md`). So far the backends' boot
//! self-tests (`inject=guest-svm`, `inject=guest-vtx`;
//! kernel/src/arch/svm.rs, vtx.rs, test_guest.rs): one real-mode guest,
//! run under QEMU's SVM with nested paging and under Bochs's VT-x with
//! EPT, whose every exit the kernel decodes with `kernel_core::virt` into
//! the same backend-neutral form and prints.

mod common;

use bulkhead::emulator;
use common::*;

/// What the test guest's five exits must print, in order: an OUT with its
/// port, size, AL and length (from the next RIP SVM reports); a CPUID of
/// leaf 0; a WRMSR of EFER, which exits rather than reaching the CPU (the
/// hostile-guest case of reserved MSRs); a write to guest-physical
/// 0x2000, outside the guest's one page (qualification 0x2: a write to an
/// unmapped address); a HLT, after the CPUID answer reached the guest's
/// EBX ("Bulk").
const GUEST_LINES: [&str; 6] = [
    "guest: out port 0x80, 1 byte(s), al 0x42, length 2",
    "guest: cpuid leaf 0x0",
    "guest: wrmsr 0xc0000080 refused, rip 0x114",
    "guest: second-level fault at 0x2000 (0x2), rip 0x116",
    "guest: hlt at rip 0x11b, ebx 0x6b6c7542",
    "guest: done after 5 exits",
];

/// Checks a backend's run of the test guest: its five exits, in order,
/// decoded alike by both backends; no kernel exception; every frame back.
fn assert_guest_ran(console: &str, backend: &str) {
    assert!(!console.contains("!!! kernel"), "the guest caused a kernel exception or panic");
    let expected: Vec<String> = GUEST_LINES.iter().map(|line| format!("{backend} {line}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines_in_order(console, &expected);
    let frames = lines(console)
        .into_iter()
        .find_map(|line| line.strip_prefix(&format!("{backend} guest: frames before ")))
        .expect("the frame count");
    let (before, after) = frames.split_once(", after ").expect("before and after");
    assert_eq!(before, after, "every frame the guest used went back to the allocator");
}

#[test]
fn svm_runs_a_real_mode_guest_exit_by_exit() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=guest-svm", false);
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the guest or the kernel hung");
    assert!(console.contains("svm: enabled, host save area at 0x"), "SVM was enabled");
    assert_guest_ran(console, "svm");
    // The kernel went on to the end of its boot and reported success.
    assert_eq!(outcome.final_status(), Some("success"));
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

#[test]
fn vtx_runs_the_same_guest_in_bochs() {
    let outcome = run_fault_injection_iso_in_bochs("inject=guest-vtx");
    let console = &outcome.console;
    assert!(console.contains("vtx: in VMX operation, VMCS revision 0x"), "VMXON and VMPTRLD worked");
    assert_guest_ran(console, "vtx");
    assert_eq!(outcome.final_status(), Some("success"));
}

#[test]
fn a_cpu_without_the_backend_says_so_and_boots_on() {
    // QEMU's CPU has SVM, not VT-x.
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=guest-vtx", false);
    assert!(outcome.console.contains("vtx: this CPU has no VT-x: no guest runs"), "the refusal is reported");
    assert_eq!(outcome.final_status(), Some("success"));
}

#[test]
fn svm_takes_a_thousand_cpuid_exits_in_a_row() {
    // The benchmark guest (`inject=guest-svm-bench`), without instruction
    // counting: the figures are docs/PERFORMANCE.md's; here, every exit of
    // a guest that exits as fast as it can is handled, and it halts.
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=guest-svm-bench", false);
    let console = &outcome.console;
    assert!(!console.contains("!!! kernel"), "the exit flood caused a kernel exception or panic");
    assert_lines_in_order(
        console,
        &["svm guest: hlt at rip 0x10a, ebx 0x6b6c7542", "svm guest: done after 1001 exits"],
    );
    assert!(
        lines(console).iter().any(|line| line.starts_with("svm guest: 1001 exits in ") && line.ends_with(" per exit")),
        "the cost line"
    );
    assert_eq!(outcome.final_status(), Some("success"));
}
