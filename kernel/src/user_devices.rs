//! A ring-3 driver on the real kernel (`inject=user-devices`): I/O port
//! and interrupt capabilities end to end (`kernel_core::io_port`,
//! `kernel_core::irq`, `arch::pic`).
//!
//! The kernel builds the system as the root thread through the
//! system-call layer, like [`crate::user_pds`]: IoPortControl::Issue puts
//! the CMOS/RTC ports 0x70..0x71 and the PIT's ports 0x40..0x43 straight
//! into the driver's CNode, IrqControl::Get puts the PIT's line 0 there,
//! and the driver gets a notification (READ) and a badged copy of it
//! (WRITE, badge [`IRQ_BADGE`]) to bind. Then it runs preemptively (PIC
//! interrupts reach the CPU only while ring 3 runs with interrupts on):
//!
//! | thread | priority | its CNode | program |
//! | --- | ---: | --- | --- |
//! | `pd-driver` | 200 | 1: ports 0x70..0x71, 2: ports 0x40..0x43, 3: line 0's handler, 4: the notification (READ), 5: its badged copy (WRITE) | selects RTC register 0 (seconds) and reads it; asks for port 0x72 and for 16 bits at 0x71 (both outside its range: RangeError) and for port 0x60 through an empty slot (FailedLookup); binds the notification to line 0, programs the PIT for about 100 interrupts a second, and twice waits for the interrupt and acknowledges it, printing the badge; clears the handler; finally executes `in al, 0x71` itself, which ring 3 may not (#GP: the run ends with that fault) |
//! | `pd-spinner` | 1 | nothing | spins, so that ring 3 runs (with interrupts on) while the driver waits |

use kernel_core::cap::invocation::label as cnode_label;
use kernel_core::cap::{Cap, SlotRef, SlotStore};
use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::io_port::label as port_label;
use kernel_core::ipc::{self, ThreadId};
use kernel_core::irq::label as irq_label;
use kernel_core::memory::PhysAddr;
use kernel_core::syscall::{self, Kernel, label};

use crate::arch::objects::PhysStore;
use crate::arch::timer;
use crate::arch::user::{self, Program, ProgramEnd, UserThreadSpec};
use crate::root;
use crate::user_pds::{StepFailed, invoke, retype};

/// Root CNode slots: the driver's TCB, CNode and its guarded copy, the
/// spinner's TCB, the notification and its badged copy (user_pds uses
/// 200..235, user_temporal 240..243).
const DRIVER_TCB: u64 = 250;
const DRIVER_CNODE: u64 = 251;
const DRIVER_GUARDED: u64 = 252;
const SPINNER_TCB: u64 = 253;
const NOTIFICATION: u64 = 254;
const BADGED_NOTIFICATION: u64 = 255;
/// The badge each interrupt signals.
pub(crate) const IRQ_BADGE: u64 = 0x1;
/// The PIT's interrupt line.
const PIT_LINE: u64 = 0;
/// log2 of the driver's CNode slot count.
const PD_CNODE_RADIX: u64 = 4;
/// Object types (`docs/abi.md`, "Object types").
const TYPE_CNODE: u64 = 1;
const TYPE_TCB: u64 = 2;
const TYPE_NOTIFICATION: u64 = 5;
/// Rights bits.
const READ: u64 = 1;
const WRITE: u64 = 2;

fn build(kernel: &mut Kernel<PhysStore>, root: ThreadId) -> Result<[ThreadId; 2], StepFailed> {
    let untyped = root::slot::FIRST_UNTYPED;
    let root_cnode = root::slot::ROOT_CNODE;
    for (kind, size_bits, slot) in [
        (TYPE_TCB, 0, DRIVER_TCB),
        (TYPE_CNODE, PD_CNODE_RADIX, DRIVER_CNODE),
        (TYPE_TCB, 0, SPINNER_TCB),
        (TYPE_NOTIFICATION, 0, NOTIFICATION),
    ] {
        let (l, w, e) = retype(kind, size_bits, root_cnode, slot);
        invoke(kernel, root, "retype", untyped, (l, &w, &e))?;
    }
    // The guard makes a 64-bit cptr the slot index.
    let words = [DRIVER_GUARDED, 64, DRIVER_CNODE, 64, READ | WRITE, 64 - PD_CNODE_RADIX];
    invoke(kernel, root, "mint the guarded CNode", root_cnode, (cnode_label::CNODE_MINT, &words, &[root_cnode]))?;
    let words = [BADGED_NOTIFICATION, 64, NOTIFICATION, 64, WRITE, IRQ_BADGE];
    invoke(kernel, root, "mint the badged notification", root_cnode, (cnode_label::CNODE_MINT, &words, &[root_cnode]))?;
    // Device capabilities straight into the driver's CNode.
    let issue = port_label::IO_PORT_CONTROL_ISSUE;
    let ports = root::slot::IO_PORT_CONTROL;
    invoke(kernel, root, "issue the RTC ports", ports, (issue, &[0x70, 0x71, 1, 64], &[DRIVER_GUARDED]))?;
    invoke(kernel, root, "issue the PIT ports", ports, (issue, &[0x40, 0x43, 2, 64], &[DRIVER_GUARDED]))?;
    let get = irq_label::IRQ_CONTROL_GET;
    invoke(kernel, root, "get line 0", root::slot::IRQ_CONTROL, (get, &[PIT_LINE, 3, 64], &[DRIVER_GUARDED]))?;
    for (slot, source, rights) in [(4, NOTIFICATION, READ), (5, BADGED_NOTIFICATION, WRITE)] {
        let words = [slot, 64, source, 64, rights];
        invoke(
            kernel,
            root,
            "give the notification",
            DRIVER_GUARDED,
            (cnode_label::CNODE_COPY, &words, &[root_cnode]),
        )?;
    }
    invoke(kernel, root, "set the CSpace", DRIVER_TCB, (label::TCB_SET_SPACE, &[], &[DRIVER_GUARDED]))?;
    let authority = [root::slot::ROOT_TCB];
    invoke(kernel, root, "set the priority", DRIVER_TCB, (label::TCB_SET_PRIORITY, &[200], &authority))?;
    invoke(kernel, root, "set the priority", SPINNER_TCB, (label::TCB_SET_PRIORITY, &[1], &authority))?;
    let driver = tcb_object(kernel, root, DRIVER_TCB).ok_or(StepFailed { step: "driver TCB", code: 0 })?;
    let spinner = tcb_object(kernel, root, SPINNER_TCB).ok_or(StepFailed { step: "spinner TCB", code: 0 })?;
    for tcb in [DRIVER_TCB, SPINNER_TCB] {
        invoke(kernel, root, "resume", tcb, (label::TCB_RESUME, &[], &[]))?;
    }
    invoke(kernel, root, "suspend the root", root::slot::ROOT_TCB, (label::TCB_SUSPEND, &[], &[]))?;
    Ok([ThreadId::new(driver), ThreadId::new(spinner)])
}

/// The TCB object named by a capability in root CNode slot `slot`.
fn tcb_object(kernel: &Kernel<PhysStore>, root: ThreadId, slot: u64) -> Option<PhysAddr> {
    let base = match kernel.store.slot(syscall::cspace_slot(root)?).cap {
        Cap::CNode { base, .. } => base,
        _ => return None,
    };
    match kernel.store.slot(SlotRef::in_cnode(base, slot)?).cap {
        Cap::Tcb { object } => Some(object),
        _ => None,
    }
}

unsafe extern "C" {
    /// For each program: start and end of its code.
    static device_program_table: [[u64; 2]; 2];
}

fn program(name: &'static str, index: usize) -> Program {
    // SAFETY: the table is immutable data emitted by the assembly below.
    let table = unsafe { &*core::ptr::addr_of!(device_program_table) };
    let [start, end] = table[index];
    let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    // SAFETY: both addresses come from `device_program_table`, whose pairs
    // delimit machine code in `.rodata.user_programs`, immutable data that
    // lives as long as the kernel; the start is never null.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    Program { name, code, top_of_lower_half: &[] }
}

/// Builds and runs the driver and the spinner, then reports.
pub(crate) fn run(allocator: &mut FrameAllocator) {
    if !root::prepare_root_thread() {
        println!("user mode: no root thread to build the device test");
        return;
    }
    let built = root::with_kernel(|kernel, root| {
        let root = root.ok_or(StepFailed { step: "root thread", code: 0 })?;
        build(kernel, root)
    });
    let threads = match built {
        Ok(threads) => threads,
        Err(StepFailed { step, code }) => {
            println!("user mode: cannot build the device test: {step} failed with error code {code}");
            return;
        }
    };
    println!("devices: pd-driver holds ports 0x70..0x71 and 0x40..0x43 and line 0's handler");
    let specs = [
        UserThreadSpec { thread: threads[0], program: program("pd-driver", 0), arguments: [0; 2] },
        UserThreadSpec { thread: threads[1], program: program("pd-spinner", 1), arguments: [0; 2] },
    ];
    let free_before = allocator.free_frame_count();
    let result = user::run_threads_preemptive(allocator, &specs, threads[0]);
    let free_after = allocator.free_frame_count();
    root::with_kernel(|kernel, _| {
        for thread in threads {
            ipc::stop_thread(&mut kernel.store, &mut kernel.scheduler, thread);
        }
    });
    match result {
        Ok((ProgramEnd::Faulted(vector), _)) => println!("devices: pd-driver ended by its fault (vector {vector})"),
        Ok((end, _)) => println!("devices: pd-driver ended with {end:?}"),
        Err(error) => println!("user mode: cannot run the device test: {error}"),
    }
    let line = root::with_kernel(|kernel, _| kernel.irqs.lines[0]);
    println!(
        "devices: {} interrupts delivered, {} ignored; line 0 masked {}, bound {}",
        timer::DEVICE_INTERRUPTS.load(core::sync::atomic::Ordering::Relaxed),
        timer::IGNORED_INTERRUPTS.load(core::sync::atomic::Ordering::Relaxed),
        line.masked,
        line.notification.is_some()
    );
    println!("user mode: device test done; frames free before {free_before}, after {free_after}");
}

// The programs, copied to user::CODE_BASE; position independent. A
// kernel invocation is a Call (RAX 1) with the capability in RDI, the info
// word in RSI (label << 12 | caps << 7 | length) and words 0..3 in R10,
// R8, R9, R15; the error code comes back as RSI's label (RSI >> 12), an
// In's value in R10, a Wait's badge in RDI.
core::arch::global_asm!(
    r#"
    .section .rodata.user_programs, "a"

    /* devices_print: the NUL-terminated string at RBX; devices_hex: RBP in
       hex without leading zeros; devices_newline. */
    .macro devices_call cptr, info, word0, word1
    mov eax, 1
    mov edi, \cptr
    mov esi, \info
    mov r10d, \word0
    mov r8d, \word1
    syscall
    shr rsi, 12
    .endm

    .macro devices_say text
    lea rbx, [rip + \text]
    call devices_print
    .endm

devices_driver:
    /* The RTC: select register 0 (seconds), read it. */
    devices_call 1, {out8_info}, 0x70, 0
    mov r12, rsi
    devices_call 1, {in8_info}, 0x71, 0
    mov r13, rsi
    mov r14, r10
    devices_say devices_text_rtc
    mov rbp, r12
    call devices_hex
    devices_say devices_text_read
    mov rbp, r13
    call devices_hex
    devices_say devices_text_seconds
    mov rbp, r14
    call devices_hex
    call devices_newline
    /* Outside its range, and a port it holds no capability for. */
    devices_call 1, {in8_info}, 0x72, 0
    mov rbp, rsi
    devices_say devices_text_outside
    call devices_hex
    call devices_newline
    devices_call 1, {in16_info}, 0x71, 0
    mov rbp, rsi
    devices_say devices_text_wide
    call devices_hex
    call devices_newline
    devices_call 6, {in8_info}, 0x60, 0
    mov rbp, rsi
    devices_say devices_text_no_cap
    call devices_hex
    call devices_newline
    /* Bind the badged notification (slot 5) to line 0 (slot 3). */
    mov qword ptr [{ipc} + 960], 5
    devices_call 3, {bind_info}, 0, 0
    mov rbp, rsi
    devices_say devices_text_bind
    call devices_hex
    call devices_newline
    /* The PIT: channel 0, low then high byte, mode 2 (rate generator),
       divisor 11932 (about 100 Hz). */
    devices_call 2, {out8_info}, 0x43, 0x34
    mov r12, rsi
    devices_call 2, {out8_info}, 0x40, 0x9c
    or r12, rsi
    devices_call 2, {out8_info}, 0x40, 0x2e
    or r12, rsi
    mov rbp, r12
    devices_say devices_text_pit
    call devices_hex
    call devices_newline
    /* Two interrupts: wait, print the badge, acknowledge. */
    mov r14d, 1
devices_driver_wait:
    mov eax, 8                          /* Wait on slot 4 */
    mov edi, 4
    xor esi, esi
    syscall
    mov r13, rdi                        /* the badge */
    devices_call 3, {ack_info}, 0, 0
    mov r12, rsi
    devices_say devices_text_interrupt
    mov rbp, r14
    call devices_hex
    devices_say devices_text_badge
    mov rbp, r13
    call devices_hex
    devices_say devices_text_ack
    mov rbp, r12
    call devices_hex
    call devices_newline
    inc r14
    cmp r14, 2
    jbe devices_driver_wait
    devices_call 3, {clear_info}, 0, 0
    mov rbp, rsi
    devices_say devices_text_clear
    call devices_hex
    call devices_newline
    /* Ring 3 has no I/O privilege: this faults (#GP). */
    devices_say devices_text_raw
    in al, 0x71
    devices_say devices_text_raw_worked
    xor edi, edi
    mov eax, 0x101
    syscall
    ud2

devices_print:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz devices_print_done
    mov eax, 0x100
    syscall
    inc rbx
    jmp devices_print
devices_print_done:
    ret
devices_hex:
    mov ecx, 60
devices_hex_skip:
    mov rdx, rbp
    shr rdx, cl
    test edx, 0xf
    jnz devices_hex_digit
    sub ecx, 4
    jnz devices_hex_skip
devices_hex_digit:
    mov rdx, rbp
    shr rdx, cl
    and edx, 0xf
    lea edi, [rdx + 0x30]
    cmp edx, 10
    jb devices_hex_put
    add edi, 0x27
devices_hex_put:
    push rcx
    mov eax, 0x100
    syscall
    pop rcx
    sub ecx, 4
    jns devices_hex_digit
    ret
devices_newline:
    mov edi, 0x0a
    mov eax, 0x100
    syscall
    ret

devices_text_rtc:
    .asciz "rtc: select error "
devices_text_read:
    .asciz " read error "
devices_text_seconds:
    .asciz " seconds "
devices_text_outside:
    .asciz "port 0x72, outside its range: error "
devices_text_wide:
    .asciz "16 bits at 0x71, past its range: error "
devices_text_no_cap:
    .asciz "port 0x60 through an empty slot: error "
devices_text_bind:
    .asciz "bind the notification to line 0: error "
devices_text_pit:
    .asciz "pit programmed: error "
devices_text_interrupt:
    .asciz "interrupt "
devices_text_badge:
    .asciz ": badge "
devices_text_ack:
    .asciz " ack error "
devices_text_clear:
    .asciz "clear: error "
devices_text_raw:
    .asciz "in al, 0x71 from ring 3\n"
devices_text_raw_worked:
    .asciz "the port read worked: ring 3 has I/O privilege!\n"
devices_driver_end:

devices_spinner:
    pause
    jmp devices_spinner
devices_spinner_end:

    .balign 8
    .global device_program_table
device_program_table:
    .quad devices_driver, devices_driver_end
    .quad devices_spinner, devices_spinner_end
    .text
    "#,
    ipc = const user::IPC_BUFFER,
    out8_info = const (port_label::IO_PORT_OUT8 << 12) | 2,
    in8_info = const (port_label::IO_PORT_IN8 << 12) | 1,
    in16_info = const (port_label::IO_PORT_IN16 << 12) | 1,
    bind_info = const (irq_label::IRQ_HANDLER_SET_NOTIFICATION << 12) | (1 << 7),
    ack_info = const irq_label::IRQ_HANDLER_ACK << 12,
    clear_info = const irq_label::IRQ_HANDLER_CLEAR << 12,
);
