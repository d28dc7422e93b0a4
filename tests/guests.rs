//! Guests (`docs/VIRTUALISATION.md`), on both backends: QEMU's SVM with
//! nested paging and Bochs's VT-x with EPT.
//!
//! - The backends' boot self-tests (`inject=guest-svm`, `inject=guest-vtx`;
//!   kernel/src/arch/svm.rs, vtx.rs, guest.rs): one real-mode guest whose
//!   every exit the kernel decodes with `kernel_core::virt` into the same
//!   backend-neutral form and prints.
//! - The guest system (`tests/systems/guests.capdl`): the project's test
//!   guests (`vmm-server/guests`) of 16, 32 and 64 bits, a hostile one and
//!   two that check each other's memory is out of reach, each run by its
//!   own vmm-server PD, all six at once on one core, built by the loader
//!   from the manifest's guest sections.

mod common;

use bulkhead::emulator::{self, RunOutcome};
use bulkhead::image::BootModule;
use bulkhead::user_build;
use bulkhead_test_guests::HOSTILE_FLOOD_ROUNDS;
use bulkhead_test_guests::guests::{Guest, HOSTILE, HOSTILE_VALUE_LINES, ISOLATION, LONG, PROTECTED, REAL};
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

/// What guest `vmm`'s VMM printed of its guest's console, in order.
fn guest_lines<'a>(console: &'a str, vmm: &str) -> Vec<&'a str> {
    let prefix = format!("user {vmm}: guest: ");
    lines(console).into_iter().filter_map(|line| line.strip_prefix(prefix.as_str())).collect()
}

/// The position of `line` in the console, which must have it.
fn position(console: &str, line: &str) -> usize {
    lines(console).iter().position(|candidate| *candidate == line).unwrap_or_else(|| panic!("missing {line:?}"))
}

/// A guest that passed every check: exactly its table's lines (the
/// isolation guest's marker aside), its exit code 0 reported by its VMM,
/// and its VMM's own exit.
fn assert_guest_passed(console: &str, vmm: &str, guest: &Guest) {
    let printed: Vec<&str> =
        guest_lines(console, vmm).into_iter().filter(|line| !line.starts_with("isolation: marker 0x")).collect();
    assert_eq!(printed, guest.lines, "{vmm}: the guest's console");
    assert_lines_in_order(
        console,
        &[&format!("user {vmm}: vmm: the guest exited with code 0"), &format!("user mode: {vmm} exited with code 0")],
    );
}

/// The guest system's run: every guest's checks passed on this backend;
/// the hostile guest was contained; the isolation guests ran at once.
fn assert_guest_system_ran(outcome: &RunOutcome) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the guest system hung");
    assert!(!console.contains("!!! kernel"), "a kernel exception or panic");
    assert!(console.contains("root task: done; the threads it started run on"), "the loader built the system");
    for (vmm, guest) in [
        ("real_vmm", &REAL),
        ("protected_vmm", &PROTECTED),
        ("long_vmm", &LONG),
        ("isolation_a_vmm", &ISOLATION),
        ("isolation_b_vmm", &ISOLATION),
    ] {
        assert_guest_passed(console, vmm, guest);
    }

    // The hostile guest: every attempt answered as a PC without those
    // resources would (all ones, #GP, #UD, nothing), the flood handled, its
    // triple fault stopping it; its VMM reports it and exits with 2, and the
    // kernel, the other five VMMs and their guests ran to their ends.
    let hostile = guest_lines(console, "hostile_vmm");
    let fixed: Vec<&str> = hostile.iter().copied().filter(|line| !HOSTILE_VALUE_LINES.contains(line)).collect();
    assert_eq!(fixed, HOSTILE.lines, "the hostile guest got through every attempt, in order");
    let values: Vec<&str> = hostile.iter().copied().filter(|line| HOSTILE_VALUE_LINES.contains(line)).collect();
    assert_eq!(values, HOSTILE_VALUE_LINES, "memory outside its RAM reads all ones, and writes vanish");
    assert_lines_in_order(
        console,
        &["user hostile_vmm: vmm: the guest stopped: triple fault", "user mode: hostile_vmm exited with code 2"],
    );
    let exits: u64 = lines(console)
        .iter()
        .find_map(|line| {
            let line = line.strip_prefix("user hostile_vmm: vmm: ")?;
            line.split_once(" exits (8 refused MSR accesses, ")?.0.parse().ok()
        })
        .expect("the hostile VMM's exit count, with its 8 refused MSR accesses");
    // Each round of the flood is a CPUID and an OUT.
    let flood = 2 * u64::from(HOSTILE_FLOOD_ROUNDS);
    assert!(exits >= flood, "{exits} exits: the flood's {flood} were handled exit by exit");
    assert!(console.contains("system: 6 threads ended: 5 with code 0, 1 failed"), "the kernel's verdict");
    // The hostile guest raised CR8 to 15 and left it there: the host's own
    // task priority stayed 0 (it would be 0xf0, and the host deaf to its
    // timer, had the guest's MOV to CR8 reached the local APIC).
    assert!(
        console.contains("root task: the local APIC's task priority at the end: 0x0\n"),
        "a guest's CR8 reached the host's task priority"
    );

    // The isolation guests ran at once: each wrote its marker before the
    // other finished scanning, so a store of either into the other's memory
    // would have failed a scan. Their markers differ.
    let written = "guest: isolation: marker written over its upper mib";
    let scanned = "guest: isolation: 50 scans found only its own marker ok";
    for (writer, scanner) in [("isolation_a_vmm", "isolation_b_vmm"), ("isolation_b_vmm", "isolation_a_vmm")] {
        let wrote = position(console, &format!("user {writer}: {written}"));
        let done = position(console, &format!("user {scanner}: {scanned}"));
        assert!(wrote < done, "{writer} wrote its marker after {scanner} had finished scanning: not at once");
    }
    let marker = |vmm: &str| {
        guest_lines(console, vmm).into_iter().find(|line| line.starts_with("isolation: marker 0x")).expect("a marker")
    };
    assert_ne!(marker("isolation_a_vmm"), marker("isolation_b_vmm"));
}

#[test]
fn vmm_server_runs_the_test_guests_under_svm() {
    assert_guest_system_ran(&boot_system("guests", "", false));
}

#[test]
fn vmm_server_runs_the_test_guests_under_vtx_in_bochs() {
    let loader = user_build::build_system("guests").unwrap_or_else(|error| panic!("{error}"));
    let modules = [BootModule { path: loader, cmdline: "root-task".into() }];
    let outcome = run_iso_in_bochs(standard_kernel(), "guests", "", &modules);
    assert!(outcome.console.contains("vtx: in VMX operation"), "Bochs's CPU runs the vtx backend");
    assert_guest_system_ran(&outcome);
}

#[test]
fn the_exit_benchmark_guest_runs_its_ten_thousand_cpuid_exits() {
    // The benchmark's system (`tests/systems/guest_bench.capdl`), without
    // instruction counting: the figures are docs/PERFORMANCE.md's; here,
    // every exit is handled and the VMM reports the CPUID exits' cost.
    let outcome = boot_system("guest_bench", "", false);
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the benchmark hung");
    assert_guest_passed(console, "bench_vmm", &bulkhead_test_guests::guests::CPUID_LOOP);
    assert!(
        lines(console)
            .iter()
            .any(|line| line.starts_with("user bench_vmm: vmm: per CPUID exit (10000 of them), mean ")),
        "the VMM's figures for the 10,000 CPUID exits"
    );
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}
