//! Ring 3: the fault-injection kernel's user test programs (`inject=user-*`,
//! kernel/src/fault_injection.rs). Each program runs in its own address
//! space; whatever it does (exit, fault, bad system calls, a return address
//! that SYSRET must not take), the kernel reports it in one line, ends only
//! that program, and goes on to "boot complete" and `bulkhead: exit
//! success`.

mod common;

use bulkhead::emulator::{self, QemuBoot, QemuOptions, RunOutcome};
use common::*;

const HELLO_LINES: [&str; 2] = ["user: hello from ring 3", "user mode: user-hello exited with code 0"];
const PAGE_FAULT_LINES: [&str; 2] = [
    "user fault: page fault (#PF) at rip 0x400000 cr2 0x10000000 error 0x6 (not present, write, user mode)",
    "user mode: user-page-fault ended by its fault (vector 14)",
];
const KERNEL_READ_LINES: [&str; 2] = [
    // Present (the kernel image is mapped) but supervisor-only.
    "user fault: page fault (#PF) at rip 0x400000 cr2 0xffffffff80100000 error 0x5 \
     (protection violation, read, user mode)",
    "user mode: user-kernel-read ended by its fault (vector 14)",
];
const PRIVILEGED_LINES: [&str; 2] = [
    "user fault: general-protection fault (#GP) at rip 0x400000 error 0x0",
    "user mode: user-privileged ended by its fault (vector 13)",
];
const BAD_SYSCALL_LINES: [&str; 2] = ["user: ok", "user mode: user-bad-syscall exited with code 0"];
/// The user's SYSCALL sits in the last two bytes of the lower half, so it
/// would return to 0x800000000000. QEMU's IRETQ takes that address and the
/// fetch faults in ring 3; Intel CPUs (Bochs) refuse it in IRETQ itself,
/// which the report marks with " (the return to user mode was refused)".
const NONCANONICAL_FAULT_PREFIX: &str = "user fault: general-protection fault (#GP) at rip 0x800000000000 error 0x0";
const NONCANONICAL_LINES: [&str; 2] = ["user: !", "user mode: user-noncanonical-sysret ended by its fault (vector 13)"];
/// TF set right before SYSCALL: Intel CPUs (Bochs) raise the single-step
/// trap on the kernel's entry stub while RSP is still the user's.
const TRAP_FLAG_LINES: [&str; 2] = ["user: T", "user mode: user-trap-flag exited with code 0"];
/// Kernel system calls from ring 3 as the root thread, on objects in
/// physical memory: every result is printed (error codes and the badge in
/// hex; 6 is FailedLookup, 1 InvalidArgument).
const CAPABILITIES_LINES: [&str; 12] = [
    "user: retype endpoint 0",
    "user: retype notification 0",
    "user: mint badged copy 0",
    "user: signal through the copy 0",
    "user: poll badge cafe",
    "user: invoke empty slot 6",
    "user: unknown system call 1",
    "user: call cptr u64::MAX 6",
    "user: revoke original 0",
    "user: signal through the revoked copy 6",
    "user: signal through the original 0",
    "user mode: user-capabilities exited with code 0",
];
/// A Wait with nothing to signal and no other thread ends the program.
const BLOCKED_LINES: [&str; 3] =
    ["user: W", "user: thread blocked with nothing to run", "user mode: user-blocked ended blocked"];
const FLOOD_LINES: [&str; 3] = [
    "user: (output limit of 32 lines reached: the rest is dropped)",
    "user mode: 5808 bytes of program output dropped",
    "user mode: user-flood exited with code 0",
];

/// Checks that the run survived its user programs: every one ended as
/// expected, no kernel report, boot complete, success.
fn assert_kernel_survived(outcome: &RunOutcome, program_count: usize) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the kernel hung");
    assert!(!console.contains("!!! kernel"), "a user program caused a kernel exception or panic");
    assert!(
        console.contains(&format!("user mode: {program_count} of {program_count} programs ended as expected")),
        "every program ends as expected"
    );
    let summary = lines(console).into_iter().find(|line| line.contains("programs ended as expected")).unwrap_or("");
    let (before, after) = summary.split_once(", after ").expect("frame counts");
    assert!(before.ends_with(&format!("before {after}")), "every user frame went back to the allocator: {summary}");
    assert!(console.contains("boot complete"));
    assert_eq!(outcome.final_status(), Some("success"));
}

/// How many programs `inject=user-all` runs.
const USER_PROGRAM_COUNT: usize = 10;

fn run_user_program(kind: &str) -> RunOutcome {
    let outcome = run_kernel_boot(fault_injection_kernel(), &format!("inject={kind}"), false);
    assert!(outcome.console.contains(&format!("fault injection: triggering {kind}")));
    assert_kernel_survived(&outcome, 1);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    outcome
}

#[test]
fn user_hello_prints_from_ring_3_and_exits() {
    let outcome = run_user_program("user-hello");
    assert_lines_in_order(
        &outcome.console,
        &["user mode: running user-hello (code at 0x400000, stack below 0x800000, 12 frames)"],
    );
    assert_lines_in_order(&outcome.console, &HELLO_LINES);
}

#[test]
fn user_page_fault_ends_only_the_program() {
    let outcome = run_user_program("user-page-fault");
    assert_lines_in_order(&outcome.console, &PAGE_FAULT_LINES);
}

#[test]
fn user_read_of_kernel_memory_faults_on_the_supervisor_bit() {
    let outcome = run_user_program("user-kernel-read");
    assert_lines_in_order(&outcome.console, &KERNEL_READ_LINES);
}

#[test]
fn user_privileged_instruction_is_a_user_fault() {
    let outcome = run_user_program("user-privileged");
    assert_lines_in_order(&outcome.console, &PRIVILEGED_LINES);
}

#[test]
fn user_bad_syscalls_return_invalid_argument_and_keep_registers() {
    // The program exits with 1 if any unknown call returns something other
    // than InvalidArgument or any register it set comes back changed.
    let outcome = run_user_program("user-bad-syscall");
    assert_lines_in_order(&outcome.console, &BAD_SYSCALL_LINES);
}

#[test]
fn user_noncanonical_return_address_ends_the_program() {
    let outcome = run_user_program("user-noncanonical-sysret");
    assert_lines_in_order(&outcome.console, &NONCANONICAL_LINES);
    let fault = lines(&outcome.console).into_iter().find(|line| line.starts_with("user fault:")).expect("a fault line");
    assert!(fault.starts_with(NONCANONICAL_FAULT_PREFIX), "{fault}");
}

#[test]
fn user_output_is_bounded() {
    let outcome = run_user_program("user-flood");
    let floods = lines(&outcome.console).into_iter().filter(|line| *line == "user: flood").count();
    assert_eq!(floods, 32, "at most 32 lines per program");
    assert_lines_in_order(&outcome.console, &FLOOD_LINES);
}

#[test]
fn user_trap_flag_before_syscall_is_harmless() {
    let outcome = run_user_program("user-trap-flag");
    assert_lines_in_order(&outcome.console, &TRAP_FLAG_LINES);
}

#[test]
fn user_capabilities_runs_kernel_system_calls_on_physical_objects() {
    let outcome = run_user_program("user-capabilities");
    assert_lines_in_order(&outcome.console, &CAPABILITIES_LINES);
    let printed = lines(&outcome.console).into_iter().filter(|line| line.starts_with("user: ")).count();
    assert_eq!(printed, CAPABILITIES_LINES.len() - 1, "no other program output");
}

#[test]
fn user_blocked_thread_with_nothing_to_run_ends_the_program() {
    let outcome = run_user_program("user-blocked");
    assert_lines_in_order(&outcome.console, &BLOCKED_LINES);
}

/// Every program's lines, in `inject=user-all` order (the non-canonical
/// case's fault line is checked apart: it differs between CPUs).
fn assert_all_programs_reported(console: &str) {
    let expected: Vec<&str> = [
        &HELLO_LINES[..],
        &PAGE_FAULT_LINES,
        &KERNEL_READ_LINES,
        &PRIVILEGED_LINES,
        &BAD_SYSCALL_LINES,
        &NONCANONICAL_LINES,
        &FLOOD_LINES,
        &TRAP_FLAG_LINES,
        &BLOCKED_LINES,
        &CAPABILITIES_LINES,
    ]
    .concat();
    assert_lines_in_order(console, &expected);
    let faults: Vec<&str> = lines(console).into_iter().filter(|line| line.starts_with("user fault:")).collect();
    assert_eq!(faults.len(), 4, "one line per faulting program: {faults:?}");
    assert!(faults[3].starts_with(NONCANONICAL_FAULT_PREFIX), "{}", faults[3]);
}

#[test]
fn user_all_programs_in_one_boot() {
    let outcome = run_user_program_set("user-all", QemuOptions::default());
    assert!(outcome.console.contains("boot: user mode: SYSCALL/SYSRET on, SMEP unavailable, SMAP unavailable"));
}

#[test]
fn user_all_programs_with_smep_smap_and_umip() {
    let options = QemuOptions { cpu: "max".into(), ..QemuOptions::default() };
    let outcome = run_user_program_set("user-all", options);
    assert!(outcome.console.contains("boot: user mode: SYSCALL/SYSRET on, SMEP on, SMAP on, UMIP on"));
}

fn run_user_program_set(kind: &str, options: QemuOptions) -> RunOutcome {
    let kernel = fault_injection_kernel();
    let boot =
        QemuBoot::Kernel { elf: kernel.elf.clone(), cmdline: format!("exit=emulator inject={kind}"), modules: vec![] };
    let outcome = run_qemu(kernel, boot, options, KERNEL_BOOT_TIMEOUT);
    assert_kernel_survived(&outcome, USER_PROGRAM_COUNT);
    assert_all_programs_reported(&outcome.console);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    outcome
}

/// Bochs emulates an Intel CPU, where SYSRET to a non-canonical address
/// would fault in ring 0 on the user's stack (the kernel must return with
/// IRETQ instead, whose refusal is a user fault), and where a user's trap
/// flag raises #DB on the first instruction of the SYSCALL entry.
#[test]
fn user_all_programs_in_bochs_on_intel() {
    let outcome = run_fault_injection_iso_in_bochs("inject=user-all");
    let console = &outcome.console;
    assert_kernel_survived(&outcome, USER_PROGRAM_COUNT);
    assert_all_programs_reported(console);
    assert!(
        console.contains(&format!("{NONCANONICAL_FAULT_PREFIX} (the return to user mode was refused)")),
        "on Intel, IRETQ itself refuses the non-canonical return address"
    );
}

/// Four protection domains built by the kernel through the system-call
/// layer (kernel/src/user_pds.rs), each thread in its own address space:
/// the notifier signals, the intruder's call on a slot it does not hold
/// fails (FailedLookup, 6) and its fault ends only it, then the client
/// calls the server five times through its badged endpoint (badge 0x11),
/// the first time with a 40-word message that the server checks and a
/// notification capability (badge 0x80) it grants; the server signals
/// through the received capability and prints the first three messages
/// with a poll of the notification (the notifier's badge 0x40 with the
/// granted 0x80, then nothing) and replies with
/// word 0 + 1, which the client checks. Numbers are in hex.
const PDS_LINES: [&str; 15] = [
    "user mode: 5 protection domains built through the system-call layer",
    "user pd-notifier: signalled, error 0",
    "user mode: pd-notifier exited with code 0",
    "user pd-intruder: call on a slot it does not hold: error 6",
    // The intruder's page fault goes to its fault handler, the pager, as a
    // message (label 0x10000, the address, the handler capability's badge);
    // the pager exits without replying, so the intruder never runs again.
    "user fault: pd-intruder (#PF at rip 0x40002e) sent to its fault handler",
    "user pd-pager: fault message, label 10000 address 10000000 badge fa",
    "user mode: pd-pager exited with code 0",
    // The client's first call is 40 words long (word i = 3i + 1), words
    // 4.. through its IPC buffer into the server's.
    "user pd-server: long message: 40 words all correct",
    // The notification capability the client granted (badge 0x80) lands in
    // the server's receive slot; signalling through it works.
    "user pd-server: capabilities received 1, signal through slot 4: error 0",
    "user pd-server: badge 11 word 1 notification c0",
    "user pd-server: badge 11 word 2 notification 0",
    "user pd-server: badge 11 word 3 notification 0",
    "user pd-client: 5 calls made, every reply was word 0 + 1",
    "user mode: pd-client exited with code 0",
    "user mode: the run ended when the last thread exited with code 0",
];

/// Checks a `user-pds` run: every line in order, nothing else printed by
/// the domains, every frame back, no kernel report, success.
fn assert_protection_domains_ran(outcome: &RunOutcome) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the kernel hung");
    assert!(!console.contains("!!! kernel"), "a protection domain caused a kernel exception or panic");
    assert_lines_in_order(console, &PDS_LINES);
    let printed = lines(console).into_iter().filter(|line| line.starts_with("user pd-")).count();
    assert_eq!(printed, 9, "no other output from the domains");
    assert!(!console.contains("pd-intruder exited"), "the intruder waits for a reply that never comes");
    let summary = lines(console).into_iter().find(|line| line.contains("protection domains done")).unwrap_or("");
    let (before, after) = summary.split_once(", after ").expect("frame counts");
    assert!(before.ends_with(&format!("before {after}")), "every user frame went back to the allocator: {summary}");
    assert!(console.contains("boot complete"));
    assert_eq!(outcome.final_status(), Some("success"));
}

#[test]
fn user_protection_domains_exchange_ipc_in_their_own_address_spaces() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=user-pds", false);
    assert_protection_domains_ran(&outcome);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

#[test]
fn user_protection_domains_in_bochs_on_intel() {
    let outcome = run_fault_injection_iso_in_bochs("inject=user-pds");
    assert_protection_domains_ran(&outcome);
}

/// `user-devices` (kernel/src/user_devices.rs): a driver protection domain
/// with I/O port capabilities for the RTC (0x70..0x71) and the PIT
/// (0x40..0x43) and the handler of line 0. Error 4 is RangeError, 6
/// FailedLookup; the badge is the one the notification capability bound to
/// the line carries.
const DEVICES_LINES: [&str; 12] = [
    "devices: pd-driver holds ports 0x70..0x71 and 0x40..0x43 and line 0's handler",
    "user pd-driver: port 0x72, outside its range: error 4",
    "user pd-driver: 16 bits at 0x71, past its range: error 4",
    "user pd-driver: port 0x60 through an empty slot: error 6",
    "user pd-driver: bind the notification to line 0: error 0",
    "user pd-driver: pit programmed: error 0",
    "user pd-driver: interrupt 1: badge 1 ack error 0",
    "user pd-driver: interrupt 2: badge 1 ack error 0",
    "user pd-driver: clear: error 0",
    "user pd-driver: in al, 0x71 from ring 3",
    "user mode: pd-driver ended by its fault (vector 13)",
    "devices: pd-driver ended by its fault (vector 13)",
];

/// Checks a `user-devices` run: the RTC read (a BCD seconds value), every
/// refusal, two interrupts through the notification, the ring-3 `in`
/// ending the driver with #GP, every frame back, success.
fn assert_driver_ran(outcome: &RunOutcome) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the kernel hung (an interrupt never came?)");
    assert!(!console.contains("!!! kernel"), "the driver caused a kernel exception or panic");
    let rtc = lines(console)
        .into_iter()
        .find_map(|line| line.strip_prefix("user pd-driver: rtc: select error 0 read error 0 seconds "))
        .expect("the driver read the RTC through its port capability");
    let seconds = u8::from_str_radix(rtc, 16).expect("a byte in hex");
    assert!(seconds < 0x60 && seconds & 0xf < 10, "not a BCD seconds value: {seconds:#x}");
    assert_lines_in_order(console, &DEVICES_LINES);
    assert!(
        lines(console).iter().any(|line| line.starts_with("user fault: general-protection fault (#GP) at rip 0x4")),
        "the ring-3 in instruction is reported as a #GP"
    );
    assert!(!console.contains("the port read worked"), "ring 3 must have no I/O privilege");
    // Two interrupts reached the driver; a third may have arrived between
    // the second Ack and the Clear (it is delivered, then dropped by Clear).
    let delivered = lines(console)
        .into_iter()
        .find_map(|line| {
            line.strip_prefix("devices: ")?
                .strip_suffix(" interrupts delivered, 0 ignored; line 0 masked true, bound false")
        })
        .expect("the interrupt summary: nothing ignored, the line masked and unbound at the end");
    assert!(["2", "3"].contains(&delivered), "{delivered} interrupts delivered");
    let summary = lines(console).into_iter().find(|line| line.contains("device test done")).unwrap_or("");
    let (before, after) = summary.split_once(", after ").expect("frame counts");
    assert!(before.ends_with(&format!("before {after}")), "every user frame went back to the allocator: {summary}");
    assert_eq!(outcome.final_status(), Some("success"));
}

#[test]
fn user_driver_reads_ports_and_takes_interrupts_through_its_capabilities() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=user-devices", false);
    assert_driver_ran(&outcome);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

#[test]
fn user_driver_in_bochs_on_intel() {
    let outcome = run_fault_injection_iso_in_bochs("inject=user-devices");
    assert_driver_ran(&outcome);
}

/// The number before `marker` in `line` (figures are printed as
/// `1234.56 marker`).
fn figure_before(line: &str, marker: &str) -> f64 {
    let before = line.split(marker).next().unwrap_or("");
    let word = before.split_whitespace().last().unwrap_or("");
    word.parse().unwrap_or_else(|_| panic!("no figure before {marker:?} in {line:?}"))
}

/// The IPC benchmark (`inject=user-ipc-bench`, docs/PERFORMANCE.md): under
/// `-icount shift=0` the TSC counts instructions. A benchmark never gates
/// on its figures: this checks only that they were printed and are
/// plausible.
#[test]
fn ipc_round_trip_benchmark_prints_its_figures() {
    let outcome = run_kernel_boot(fault_injection_kernel(), "inject=user-ipc-bench", true);
    let console = &outcome.console;
    assert_eq!(outcome.final_status(), Some("success"));
    assert!(!console.contains("!!! kernel"));
    let bench: Vec<&str> = lines(console).into_iter().filter(|line| line.starts_with("bench: ")).collect();
    for line in &bench {
        println!("{line}");
    }
    assert_eq!(bench.len(), 3, "{bench:?}");
    let per_round_trip = figure_before(bench[0], "per round trip");
    assert!(per_round_trip > 0.0, "{}", bench[0]);
    assert!(bench[1].starts_with("bench: per round trip: 2.00 SYSCALL, 2.00 SYSRET,"), "{}", bench[1]);
    assert!(figure_before(bench[1], "CR3 writes") > 0.0, "{}", bench[1]);
    assert!(figure_before(bench[2], "per round trip with") > 0.0, "{}", bench[2]);
    assert!(console.contains("user pd-client: 4e20 calls made, every reply was word 0 + 1"));
}
