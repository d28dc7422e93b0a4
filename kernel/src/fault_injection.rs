//! Deliberate faults, for the boot tests that check the exception reports
//! (built only with the `fault-injection` feature; never in a release
//! image). Selected with the kernel command line `inject=KIND`.

use kernel_core::cmdline::Cmdline;

/// An address the kernel never maps (the identity map is gone by now).
const UNMAPPED_ADDRESS: u64 = 0xdead_b000;
/// A non-canonical address: any access raises #GP, not #PF.
const NON_CANONICAL_ADDRESS: u64 = 0x8000_0000_0000_0000;

/// Triggers the fault named by `inject=` on the command line, if any.
pub(crate) fn run(cmdline: &Cmdline<'_>) {
    let Some(kind) = cmdline.get("inject") else { return };
    println!("fault injection: triggering {kind}");
    match kind {
        "page-fault" => inject_page_fault(),
        "gp-fault" => inject_general_protection_fault(),
        "double-fault" => inject_double_fault(),
        "nmi" => inject_nmi(),
        "panic" => inject_panic(),
        other => {
            println!("fault injection: unknown kind {other}; known: page-fault, gp-fault, double-fault, nmi, panic")
        }
    }
}

#[inline(never)]
fn inject_page_fault() {
    let pointer = UNMAPPED_ADDRESS as *mut u64;
    // SAFETY: not sound, on purpose: the write faults before it happens,
    // and the page-fault handler stops the machine.
    unsafe { pointer.write_volatile(0x0bad) };
}

#[inline(never)]
fn inject_general_protection_fault() {
    let pointer = NON_CANONICAL_ADDRESS as *const u64;
    // SAFETY: not sound, on purpose: a non-canonical access raises #GP
    // before any memory is touched, and the handler stops the machine.
    let _ = unsafe { pointer.read_volatile() };
}

#[inline(never)]
fn inject_double_fault() {
    // A #GP whose gate is missing raises #NP while delivering it; two
    // contributory faults make a double fault, taken on its IST stack.
    crate::arch::idt::mark_gate_missing(13);
    inject_general_protection_fault();
}

#[inline(never)]
fn inject_nmi() {
    // `int 2` enters through the NMI gate, and so through its IST stack and
    // the NMI report, without needing an interrupt controller to send one.
    // SAFETY: the NMI gate is installed (idt::init) and its handler stops
    // the machine; nothing returns here.
    unsafe { core::arch::asm!("int 2") };
}

#[inline(never)]
fn inject_panic() {
    panic!("deliberate panic (inject=panic)");
}
