//! The kernel's exception reports, from deliberately broken runs of the
//! fault-injection kernel: each must print a readable report (vector, error
//! code, registers, CR2, a symbolised backtrace) and stop the machine with
//! the failure status, neither hanging nor rebooting.

mod common;

use bulkhead::emulator::{self, RunOutcome};
use common::*;

fn run_injected(kind: &str) -> RunOutcome {
    let outcome = run_kernel_boot(fault_injection_kernel(), &format!("inject={kind}"), false);
    assert!(outcome.console.contains(&format!("fault injection: triggering {kind}")));
    assert!(!outcome.timed_out, "the kernel hung instead of stopping");
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_FAILURE), "QEMU status for a kernel failure");
    assert_eq!(outcome.final_status(), Some("failure"));
    outcome
}

/// The line of the report that starts with `prefix` (after indentation).
fn report_line<'a>(console: &'a str, prefix: &str) -> &'a str {
    console
        .lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no report line starting with {prefix:?}"))
}

fn assert_registers_reported(console: &str) {
    for register in ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8 ", "r15"] {
        assert!(console.contains(&format!(" {register} 0x")), "register {register} missing");
    }
    assert!(report_line(console, "rsp 0x").contains("ss 0x"));
    assert!(console.contains("cr3 0x"));
}

#[test]
fn page_fault_report() {
    let outcome = run_injected("page-fault");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel exception: page fault (#PF, vector 14)"));
    // A supervisor-mode write to a page that is not present: bits W (1) set, P (0) clear.
    assert!(report_line(console, "error code").starts_with("error code 0x2"));
    assert!(console.contains("page fault: not present, write, supervisor mode"));
    assert!(report_line(console, "cr2 ").starts_with("cr2 0x00000000deadb000"));
    assert!(report_line(console, "rip 0xffffffff8").contains("inject_page_fault"), "RIP symbolised");
    assert_registers_reported(console);
    assert!(console.contains("handler on the boot stack, interrupted code on the boot stack"));
    // The backtrace reaches from the faulting function back to the entry.
    let backtrace = &console[console.find("backtrace:").expect("a backtrace")..];
    assert!(backtrace.contains("#0 0xffffffff8"));
    assert!(backtrace.contains("inject_page_fault"));
    assert!(backtrace.contains("kernel_entry"), "backtrace reaches kernel_entry");
    assert!(backtrace.contains("kernel/src/"), "backtrace has source locations");
}

#[test]
fn general_protection_fault_report() {
    let outcome = run_injected("gp-fault");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel exception: general-protection fault (#GP, vector 13)"));
    assert!(console.contains("handler on the boot stack"));
    assert!(report_line(console, "error code").starts_with("error code 0x0"));
    assert!(report_line(console, "rip 0xffffffff8").contains("inject_general_protection_fault"));
    assert_registers_reported(console);
    assert!(console.contains("kernel_entry"));
}

#[test]
fn double_fault_report_runs_on_its_own_stack() {
    let outcome = run_injected("double-fault");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel exception: double fault (#DF, vector 8)"));
    // A double fault always pushes error code 0.
    assert!(report_line(console, "error code").starts_with("error code 0x0"));
    assert_registers_reported(console);
    assert!(console.contains("handler on the double-fault stack (IST1), interrupted code on the boot stack"));
}

#[test]
fn nmi_report_runs_on_its_own_stack() {
    let outcome = run_injected("nmi");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel exception: non-maskable interrupt (NMI, vector 2)"));
    assert!(console.contains("handler on the NMI stack (IST2), interrupted code on the boot stack"));
    assert!(report_line(console, "rip 0xffffffff8").contains("inject_nmi"), "RIP symbolised");
    assert_registers_reported(console);
}

#[test]
fn panic_report() {
    let outcome = run_injected("panic");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel panic at kernel/src/fault_injection.rs:"));
    assert!(console.contains("deliberate panic (inject=panic)"));
    let backtrace = &console[console.find("backtrace:").expect("a backtrace")..];
    assert!(backtrace.contains("inject_panic"), "panic backtrace names the panicking function");
}

#[test]
fn stack_overflow_hits_the_guard_page_and_double_faults_onto_its_own_stack() {
    let outcome = run_injected("stack-overflow");
    let console = &outcome.console;
    // The page fault on the guard page cannot push its frame on the same
    // stack, so the CPU raises a double fault, delivered on IST1.
    assert!(console.contains("!!! kernel exception: double fault (#DF, vector 8)"));
    assert!(console.contains(
        "handler on the double-fault stack (IST1), interrupted code on the boot stack's guard page (stack overflow)"
    ));
    assert!(report_line(console, "rip 0xffffffff8").contains("inject_stack_overflow"));
}

#[test]
fn kernel_read_only_data_is_write_protected() {
    let outcome = run_injected("write-rodata");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel exception: page fault (#PF, vector 14)"));
    assert!(console.contains("page fault: protection violation, write, supervisor mode"));
    assert!(report_line(console, "rip 0xffffffff8").contains("inject_write_to_read_only_data"));
}

#[test]
fn kernel_data_is_not_executable() {
    let outcome = run_injected("execute-data");
    let console = &outcome.console;
    assert!(console.contains("!!! kernel exception: page fault (#PF, vector 14)"));
    assert!(console.contains("page fault: protection violation, instruction fetch, supervisor mode"));
    // The faulting RIP is the data address itself, which is CR2 as well.
    let rip = report_line(console, "rip ").split_whitespace().nth(1).expect("rip value").to_owned();
    let cr2 = report_line(console, "cr2 ").split_whitespace().nth(1).expect("cr2 value").to_owned();
    assert_eq!(rip, cr2, "an instruction fetch fault reports the fetched address in CR2");
    assert!(!console.contains("data executed"), "the data page ran as code");
}

#[test]
fn a_fault_inside_a_log_frame_still_gives_a_readable_report() {
    let outcome = run_injected("fault-in-log");
    let console = &outcome.console;
    // The cut frame is shown as undecodable, and the report after it as text.
    assert!(console.contains("[defmt: undecodable frame"), "the cut frame is reported");
    assert!(console.contains("!!! kernel exception: page fault (#PF, vector 14)"));
    assert!(report_line(console, "cr2 ").starts_with("cr2 0x00000000deadb000"));
    let backtrace = &console[console.find("backtrace:").expect("a backtrace")..];
    assert!(backtrace.contains("inject_fault_in_log"), "the backtrace passes through the logging call");
}
