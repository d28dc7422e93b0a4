//! Readable reports for the two ways the kernel can die, exceptions and
//! panics, printed on the plain-text path (no host tool needed to read
//! them) and followed by a clean stop: never a hang, never a reboot. A
//! user program's fault is no kernel failure: it gets a one-line report
//! (bounded in number) and only that program ends (`arch::user`).
//!
//! The backtrace follows the frame-pointer chain (the kernel is built with
//! `-C force-frame-pointers=yes`). Each frame is read only after checking
//! that it lies inside one of the kernel's stacks, so a corrupt RBP ends
//! the walk instead of faulting again. The host CLI adds function names and
//! source lines to the addresses (src/symbolize.rs).

use core::ops::Range;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::exit::{ExitStatus, stop};
use crate::arch::idt::TrapFrame;
use crate::arch::{boot, cpu, gdt, syscall};

/// The deepest backtrace printed.
const MAX_FRAMES: usize = 32;

/// The CPU's names for its exception vectors (Intel SDM Vol. 3A, table 6-1).
fn exception_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("divide error", "#DE"),
        1 => ("debug", "#DB"),
        2 => ("non-maskable interrupt", "NMI"),
        3 => ("breakpoint", "#BP"),
        4 => ("overflow", "#OF"),
        5 => ("bound range exceeded", "#BR"),
        6 => ("invalid opcode", "#UD"),
        7 => ("device not available", "#NM"),
        8 => ("double fault", "#DF"),
        9 => ("coprocessor segment overrun", "#MF9"),
        10 => ("invalid TSS", "#TS"),
        11 => ("segment not present", "#NP"),
        12 => ("stack-segment fault", "#SS"),
        13 => ("general-protection fault", "#GP"),
        14 => ("page fault", "#PF"),
        16 => ("x87 floating-point error", "#MF"),
        17 => ("alignment check", "#AC"),
        18 => ("machine check", "#MC"),
        19 => ("SIMD floating-point exception", "#XM"),
        20 => ("virtualization exception", "#VE"),
        21 => ("control protection exception", "#CP"),
        28 => ("hypervisor injection exception", "#HV"),
        29 => ("VMM communication exception", "#VC"),
        30 => ("security exception", "#SX"),
        _ => ("reserved vector", "?"),
    }
}

/// The mnemonic of an exception vector (`#PF`, `#GP`, ...).
pub(crate) fn exception_mnemonic(vector: u64) -> &'static str {
    exception_name(vector).1
}

/// What a page-fault error code means (Intel SDM Vol. 3A, 4.7), e.g.
/// "not present, write, supervisor mode".
struct PageFaultCause(u64);

impl core::fmt::Display for PageFaultCause {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let error_code = self.0;
        let present = if error_code & 1 != 0 { "protection violation" } else { "not present" };
        let access = if error_code & (1 << 4) != 0 {
            "instruction fetch"
        } else if error_code & 2 != 0 {
            "write"
        } else {
            "read"
        };
        let mode = if error_code & 4 != 0 { "user" } else { "supervisor" };
        let reserved = if error_code & 8 != 0 { ", reserved bit set" } else { "" };
        write!(formatter, "{present}, {access}, {mode} mode{reserved}")
    }
}

/// How many user faults are reported one line each; later ones are only
/// counted, so that faulting programs cannot flood the console.
const MAX_USER_FAULT_REPORTS: u32 = 64;

static USER_FAULTS: AtomicU32 = AtomicU32::new(0);

/// Prints the one-line report for a fault of a user program: the
/// exception, the user RIP, CR2 for page faults, the error code. When
/// `on_return` is set, the fault was the CPU refusing the kernel's IRETQ
/// back to `user_rip` (a non-canonical return address).
pub(crate) fn report_user_fault(frame: &TrapFrame, user_rip: u64, on_return: bool) {
    let count = USER_FAULTS.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    if count > MAX_USER_FAULT_REPORTS {
        return;
    }
    let (name, mnemonic) = exception_name(frame.vector);
    crate::print!("user fault: {name} ({mnemonic}) at rip {user_rip:#x}");
    if frame.vector == 14 {
        crate::print!(" cr2 {:#x}", cpu::read_cr2());
    }
    crate::print!(" error {:#x}", frame.error_code);
    if frame.vector == 14 {
        crate::print!(" ({})", PageFaultCause(frame.error_code));
    }
    if on_return {
        crate::print!(" (the return to user mode was refused)");
    }
    println!();
    if count == MAX_USER_FAULT_REPORTS {
        println!("user fault: {MAX_USER_FAULT_REPORTS} user faults reported; further ones end their program silently");
    }
}

/// Prints the report for an exception taken in the kernel and stops.
pub(crate) fn report_exception_and_stop(frame: &TrapFrame) -> ! {
    crate::log::close_interrupted_frame();
    let (name, mnemonic) = exception_name(frame.vector);
    println!();
    println!("!!! kernel exception: {name} ({mnemonic}, vector {})", frame.vector);
    println!("    error code {:#x}", frame.error_code);
    if frame.vector == 14 {
        println!("    page fault: {}", PageFaultCause(frame.error_code));
    }
    println!("    rip {:#018x}  cs {:#x}  rflags {:#x}", frame.rip, frame.cs, frame.rflags);
    println!("    rsp {:#018x}  ss {:#x}", frame.rsp, frame.ss);
    // Which stack the handler itself runs on shows whether the IST switch
    // happened (double faults, NMIs and machine checks must not trust the
    // interrupted stack).
    let frame_address = core::ptr::from_ref(frame) as u64;
    println!("    handler on the {}, interrupted code on the {}", stack_name(frame_address), stack_name(frame.rsp));
    println!("    cr2 {:#018x}  cr3 {:#018x}", cpu::read_cr2(), cpu::read_cr3());
    let registers = [
        ("rax", frame.rax),
        ("rbx", frame.rbx),
        ("rcx", frame.rcx),
        ("rdx", frame.rdx),
        ("rsi", frame.rsi),
        ("rdi", frame.rdi),
        ("rbp", frame.rbp),
        ("r8 ", frame.r8),
        ("r9 ", frame.r9),
        ("r10", frame.r10),
        ("r11", frame.r11),
        ("r12", frame.r12),
        ("r13", frame.r13),
        ("r14", frame.r14),
        ("r15", frame.r15),
    ];
    for row in registers.chunks(3) {
        crate::print!("   ");
        for (register, value) in row {
            crate::print!(" {register} {value:#018x}");
        }
        println!();
    }
    print_backtrace(frame.rip, frame.rbp);
    stop(ExitStatus::Failure)
}

/// Prints the report for a panic and stops.
pub(crate) fn report_panic_and_stop(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::log::close_interrupted_frame();
    println!();
    match info.location() {
        Some(location) => println!(
            "!!! kernel panic at {}:{}:{}: {}",
            location.file(),
            location.line(),
            location.column(),
            info.message()
        ),
        None => println!("!!! kernel panic: {}", info.message()),
    }
    // Frame #0 is this function; the walk starts at its caller.
    print_backtrace(cpu::read_instruction_pointer(), cpu::read_frame_pointer());
    stop(ExitStatus::Failure)
}

/// The stacks a kernel frame pointer may legitimately point into.
fn kernel_stacks() -> [Range<u64>; 6] {
    let [double_fault, nmi, machine_check, debug] = gdt::ist_stack_ranges();
    [boot::boot_stack_range(), double_fault, nmi, machine_check, debug, syscall::kernel_entry_stack_range()]
}

/// The name of the kernel stack that holds `address`, in the order of
/// [`kernel_stacks`].
fn stack_name(address: u64) -> &'static str {
    let guard = boot::boot_stack_guard_address();
    if (guard..guard + 4096).contains(&address) {
        return "boot stack's guard page (stack overflow)";
    }
    let entry_guard = syscall::kernel_entry_stack_guard_address();
    if (entry_guard..entry_guard + 4096).contains(&address) {
        return "kernel-entry stack's guard page (stack overflow)";
    }
    const NAMES: [&str; 6] = [
        "boot stack",
        "double-fault stack (IST1)",
        "NMI stack (IST2)",
        "machine-check stack (IST3)",
        "debug stack (IST4)",
        "kernel-entry stack (syscalls and ring-3 exceptions)",
    ];
    kernel_stacks()
        .iter()
        .zip(NAMES)
        .find(|(stack, _)| stack.contains(&address))
        .map_or("unknown stack", |(_, name)| name)
}

/// Reads the saved (RBP, return address) pair of the frame at `rbp`, if
/// `rbp` points into a kernel stack.
fn read_frame(rbp: u64, stacks: &[Range<u64>]) -> Option<(u64, u64)> {
    if !rbp.is_multiple_of(8) {
        return None;
    }
    let end = rbp.checked_add(16)?;
    if !stacks.iter().any(|stack| stack.start <= rbp && end <= stack.end) {
        return None;
    }
    let pointer = rbp as *const u64;
    // SAFETY: `rbp..rbp + 16` is 8-byte aligned and lies inside one of the
    // kernel's stacks, which are mapped, readable statics; reading two
    // `u64`s from it cannot fault, whatever garbage they hold.
    let saved_rbp = unsafe { pointer.read_volatile() };
    let return_pointer = pointer.wrapping_add(1);
    // SAFETY: as above, the second word of the same checked range.
    let return_address = unsafe { return_pointer.read_volatile() };
    Some((saved_rbp, return_address))
}

/// Prints frame #0 (an instruction address) and then the return address
/// of every frame on the frame-pointer chain that starts at `rbp`.
fn print_backtrace(rip: u64, mut rbp: u64) {
    println!("backtrace:");
    println!("  #0 {rip:#018x}");
    let stacks = kernel_stacks();
    for index in 1..MAX_FRAMES {
        let Some((saved_rbp, return_address)) = read_frame(rbp, &stacks) else {
            return;
        };
        if return_address == 0 {
            return;
        }
        println!("  #{index} {return_address:#018x}");
        // Frames move up the stack; anything else is corruption or the end.
        if saved_rbp <= rbp {
            return;
        }
        rbp = saved_rbp;
    }
    println!("  ... (deeper frames not shown)");
}
