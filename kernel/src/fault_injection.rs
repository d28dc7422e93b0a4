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
        "stack-overflow" => {
            let depth = inject_stack_overflow(0);
            println!("fault injection: recursion returned at depth {depth} without overflowing");
        }
        "write-rodata" => inject_write_to_read_only_data(),
        "execute-data" => inject_execute_data(),
        "fault-in-log" => inject_fault_in_log(),
        other => println!(
            "fault injection: unknown kind {other}; known: page-fault, gp-fault, double-fault, nmi, panic, \
             stack-overflow, write-rodata, execute-data, fault-in-log"
        ),
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
    // SAFETY: interrupts are off, no exception is in flight, and the run
    // ends with the double fault this sets up.
    unsafe { crate::arch::idt::mark_gate_missing(13) };
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

/// Recurses until the boot stack runs into its guard page. The page fault
/// cannot be delivered on the overflowed stack, so it becomes a double
/// fault, which runs on its own IST stack.
#[inline(never)]
fn inject_stack_overflow(depth: u64) -> u64 {
    // A frame of some size that the optimiser cannot remove.
    let frame = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == u64::MAX {
        return frame[0];
    }
    inject_stack_overflow(depth + 1).wrapping_add(frame[63])
}

/// Read-only data, for the write-protection test.
static READ_ONLY: u64 = 0x5eed;

#[inline(never)]
fn inject_write_to_read_only_data() {
    let pointer = core::ptr::addr_of!(READ_ONLY).cast_mut();
    // SAFETY: not sound, on purpose: the page is mapped read-only (and
    // CR0.WP makes that bind ring 0), so the write faults before it happens.
    unsafe { pointer.write_volatile(0) };
}

/// A `ret` instruction placed in the kernel's writable data, for the
/// no-execute test.
#[unsafe(link_section = ".data.execute_test")]
static DATA_CODE: [u8; 1] = [0xc3];

#[inline(never)]
fn inject_execute_data() {
    let pointer = DATA_CODE.as_ptr();
    // SAFETY: not sound, on purpose: transmuting a data address into a
    // function and calling it must fault (the page is no-execute) before
    // the `ret` runs; on a CPU without NX it would simply return.
    let function: extern "C" fn() = unsafe { core::mem::transmute(pointer) };
    function();
    println!("fault injection: data executed: no-execute is not enforced on this CPU");
}

/// A value whose defmt formatting faults, i.e. in the middle of a frame.
struct FaultsWhenLogged;

impl defmt::Format for FaultsWhenLogged {
    fn format(&self, formatter: defmt::Formatter<'_>) {
        defmt::write!(formatter, "about to fault");
        inject_page_fault();
    }
}

/// A fault while a defmt frame is half sent: the report must still reach
/// the host as readable text.
#[inline(never)]
fn inject_fault_in_log() {
    defmt::info!("this frame is cut short: {}", FaultsWhenLogged);
}

#[inline(never)]
fn inject_panic() {
    panic!("deliberate panic (inject=panic)");
}
