//! The assembly the guests share, as macros that expand to string
//! literals for [`guest!`](crate::guest), which assembles a guest from
//! them and the guest's own text.
//!
//! Syntax: GNU assembler, AT&T operand order (`options(att_syntax)`), so
//! that every instruction's operand size is written out (`movl`, `outb`)
//! in code that changes modes.
//!
//! Layout of a guest's text, in this order (the linker script puts
//! section `.text.guest` first, at 0x8000):
//!
//! 1. [`real_mode_start!`](crate::real_mode_start): `_start` (the entry),
//!    segments and stack;
//! 2. 16-bit code; for the guests that leave real mode,
//!    [`enter_protected_mode!`](crate::enter_protected_mode) ends it
//!    (`code16_end`) and starts the 32-bit code (`code32_start`) at
//!    `protected_entry`, which jumps to the guest's `protected_main`;
//! 3. 32-bit code; for the 64-bit guests,
//!    [`enter_long_mode!`](crate::enter_long_mode) comes last in it
//!    (`enter_long_mode`, `code32_end`) and starts the 64-bit code
//!    (`code64_start`), which jumps to the guest's `long_main`;
//! 4. the guest ends its last region with `code16_end`, `code32_end` or
//!    `code64_end` itself.
//!
//! `tests/images.rs` decodes each region with its bitness, and checks
//! that the regions cover `.text` and that far jumps land on a region's
//! start.
//!
//! Each guest also defines `guest_name` (a NUL-terminated string in
//! `.rodata.guest`): the prefix of its failure lines.
//!
//! The prelude ([`guest!`](crate::guest)) gives every guest:
//!
//! - names for the crate's constants (`DEBUG_CONSOLE_PORT`, `EXIT_PORT`,
//!   `MMIO_TEST_BASE`, `CODE32_SELECTOR`, `IA32_PAT`, ...);
//! - assembler macros, one per mode (suffix 16, 32 or 64):
//!   `say16 "text"` prints a line (the text and a newline),
//!   `print16 "text"` prints without the newline, `newline16`;
//!   `check_z16 N` / `check_nz16 N` fail check N unless the zero flag is
//!   set / clear; `expect_fault32 VECTOR, N, instruction` runs one
//!   instruction that must fault with VECTOR (error code 0, RIP at the
//!   instruction) and continues after it, failing check N otherwise
//!   (32 and 64 only; needs [`exceptions32!`](crate::exceptions32) or
//!   [`exceptions64!`](crate::exceptions64)). All of them keep every
//!   register; `say`/`print` change the flags;
//! - the GDT (`gdt`, `gdt_descriptor`), a 4 KiB stack (`stack_top`, below
//!   64 KiB), and the variables the exception handlers use.
//!
//! The console macros ([`console16!`](crate::console16),
//! [`console32!`](crate::console32), [`console64!`](crate::console64))
//! give the routines those macros call: `putsN` (the string at SI, ESI
//! or RSI), `put_hexN` (EAX as `0x` and 8 hex digits; in 64-bit code the
//! low ECX digits of RAX), `failN` (check EAX failed: say so, exit with
//! EAX) and `exitN` (exit with EAX).

/// Assembles a guest: the prelude (see the
/// [module documentation](crate::asm)), then each argument (string
/// literals, or macros expanding to them) in order, with the crate's
/// constants as `const` operands.
#[macro_export]
macro_rules! guest {
    ($($template:expr),+ $(,)?) => {
        ::core::arch::global_asm!(
            $crate::prelude!(),
            $($template),+,
            // Back to the assembler's state for the compiler's code.
            ".code64\n.text\n",
            options(att_syntax),
            console = const $crate::DEBUG_CONSOLE_PORT,
            exit = const $crate::EXIT_PORT,
            unclaimed = const $crate::UNCLAIMED_PORT,
            mmio_base = const $crate::MMIO_TEST_BASE,
            mmio_id_offset = const $crate::MMIO_ID_OFFSET,
            mmio_scratch_offset = const $crate::MMIO_SCRATCH_OFFSET,
            mmio_id = const $crate::MMIO_ID,
            unexpected = const $crate::UNEXPECTED_EXCEPTION_EXIT,
            code32 = const $crate::CODE32_SELECTOR,
            data = const $crate::DATA_SELECTOR,
            code64 = const $crate::CODE64_SELECTOR,
            gdt_code32 = const $crate::GDT[1],
            gdt_data = const $crate::GDT[2],
            gdt_code64 = const $crate::GDT[3],
            sysenter_cs = const $crate::msr::IA32_SYSENTER_CS,
            pat = const $crate::msr::IA32_PAT,
            efer = const $crate::msr::IA32_EFER,
            star = const $crate::msr::IA32_STAR,
            lstar = const $crate::msr::IA32_LSTAR,
            flood_rounds = const $crate::HOSTILE_FLOOD_ROUNDS,
        );
    };
}

/// The prelude of every guest (used by [`guest!`](crate::guest), whose
/// operands it names): constants, assembler macros, the GDT, the stack and the
/// exception handlers' variables.
#[doc(hidden)]
#[macro_export]
macro_rules! prelude {
    () => {
        r#"
    .set DEBUG_CONSOLE_PORT, {console}
    .set EXIT_PORT, {exit}
    .set UNCLAIMED_PORT, {unclaimed}
    .set MMIO_TEST_BASE, {mmio_base}
    .set MMIO_ID_OFFSET, {mmio_id_offset}
    .set MMIO_SCRATCH_OFFSET, {mmio_scratch_offset}
    .set MMIO_ID, {mmio_id}
    .set UNEXPECTED_EXCEPTION_EXIT, {unexpected}
    .set CODE32_SELECTOR, {code32}
    .set DATA_SELECTOR, {data}
    .set CODE64_SELECTOR, {code64}
    .set IA32_SYSENTER_CS, {sysenter_cs}
    .set IA32_PAT, {pat}
    .set IA32_EFER, {efer}
    .set IA32_STAR, {star}
    .set IA32_LSTAR, {lstar}
    .set HOSTILE_FLOOD_ROUNDS, {flood_rounds}
    .set VECTOR_UD, 6
    .set VECTOR_GP, 13
    /* expect_vector's value when no fault is expected. */
    .set NO_VECTOR, 0xffffffff

    /* Console macros: the text goes to .rodata.guest, SI/ESI/RSI is kept. */
    .macro say16 text
    .pushsection .rodata.guest, "a", @progbits
.Ltext\@:
    .ascii "\text"
    .byte 10, 0
    .popsection
    pushw %si
    movw $.Ltext\@, %si
    call puts16
    popw %si
    .endm

    .macro print16 text
    .pushsection .rodata.guest, "a", @progbits
.Ltext\@:
    .asciz "\text"
    .popsection
    pushw %si
    movw $.Ltext\@, %si
    call puts16
    popw %si
    .endm

    .macro newline16
    pushw %ax
    movb $10, %al
    outb %al, $DEBUG_CONSOLE_PORT
    popw %ax
    .endm

    .macro say32 text
    .pushsection .rodata.guest, "a", @progbits
.Ltext\@:
    .ascii "\text"
    .byte 10, 0
    .popsection
    pushl %esi
    movl $.Ltext\@, %esi
    call puts32
    popl %esi
    .endm

    .macro print32 text
    .pushsection .rodata.guest, "a", @progbits
.Ltext\@:
    .asciz "\text"
    .popsection
    pushl %esi
    movl $.Ltext\@, %esi
    call puts32
    popl %esi
    .endm

    .macro newline32
    pushl %eax
    movb $10, %al
    outb %al, $DEBUG_CONSOLE_PORT
    popl %eax
    .endm

    .macro say64 text
    .pushsection .rodata.guest, "a", @progbits
.Ltext\@:
    .ascii "\text"
    .byte 10, 0
    .popsection
    pushq %rsi
    movl $.Ltext\@, %esi
    call puts64
    popq %rsi
    .endm

    .macro print64 text
    .pushsection .rodata.guest, "a", @progbits
.Ltext\@:
    .asciz "\text"
    .popsection
    pushq %rsi
    movl $.Ltext\@, %esi
    call puts64
    popq %rsi
    .endm

    .macro newline64
    pushq %rax
    movb $10, %al
    outb %al, $DEBUG_CONSOLE_PORT
    popq %rax
    .endm

    /* Checks: fail check N unless the zero flag is set (z) or clear (nz). */
    .macro check_z16 check
    jz .Lpassed\@
    movl $\check, %eax
    jmp fail16
.Lpassed\@:
    .endm

    .macro check_nz16 check
    jnz .Lpassed\@
    movl $\check, %eax
    jmp fail16
.Lpassed\@:
    .endm

    .macro check_z32 check
    jz .Lpassed\@
    movl $\check, %eax
    jmp fail32
.Lpassed\@:
    .endm

    .macro check_nz32 check
    jnz .Lpassed\@
    movl $\check, %eax
    jmp fail32
.Lpassed\@:
    .endm

    .macro check_z64 check
    jz .Lpassed\@
    movl $\check, %eax
    jmp fail64
.Lpassed\@:
    .endm

    .macro check_nz64 check
    jnz .Lpassed\@
    movl $\check, %eax
    jmp fail64
.Lpassed\@:
    .endm

    /* Runs `instruction`, which must raise exception `vector` with error
       code 0 (none pushes 0) and RIP at the instruction; the handler
       resumes after it. Otherwise check `check` fails. */
    .macro expect_fault32 vector, check, instruction:vararg
    movl $NO_VECTOR, fault_vector
    movl $\vector, expect_vector
    movl $.Lresume\@, resume_rip
.Lfault\@:
    \instruction
.Lresume\@:
    movl $NO_VECTOR, expect_vector
    pushl %eax
    movl $\check, %eax
    cmpl $\vector, fault_vector
    jne fail32
    cmpl $.Lfault\@, fault_rip
    jne fail32
    cmpl $0, fault_error
    jne fail32
    popl %eax
    .endm

    .macro expect_fault64 vector, check, instruction:vararg
    movl $NO_VECTOR, fault_vector(%rip)
    movl $\vector, expect_vector(%rip)
    movq $.Lresume\@, resume_rip(%rip)
.Lfault\@:
    \instruction
.Lresume\@:
    movl $NO_VECTOR, expect_vector(%rip)
    pushq %rax
    movl $\check, %eax
    cmpl $\vector, fault_vector(%rip)
    jne fail64
    cmpq $.Lfault\@, fault_rip(%rip)
    jne fail64
    cmpq $0, fault_error(%rip)
    jne fail64
    popq %rax
    .endm

    /* The GDT (values from the crate's GDT constant) and its descriptor
       for LGDT (limit, 32-bit base). */
    .pushsection .data.guest, "aw", @progbits
    .balign 16
    .global gdt
gdt:
    .quad 0
    .quad {gdt_code32}
    .quad {gdt_data}
    .quad {gdt_code64}
gdt_end:
    .balign 4
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt

    /* The exception handlers' variables (32-bit code uses the low half). */
    .balign 8
expect_vector:
    .quad NO_VECTOR
resume_rip:
    .quad 0
fault_vector:
    .quad NO_VECTOR
fault_error:
    .quad 0
fault_rip:
    .quad 0
    .popsection

    /* The stack: first in .bss, so below 64 KiB for real mode. */
    .pushsection .bss.stack, "aw", @nobits
    .balign 16
stack_bottom:
    .skip 4096
    .global stack_top
stack_top:
    .popsection
"#
    };
}

/// The entry point, `_start` (16-bit code, first in `.text.guest`): no
/// interrupts, string operations upwards, every segment 0, the stack.
#[macro_export]
macro_rules! real_mode_start {
    () => {
        r#"
    .section .text.guest, "ax", @progbits
    .code16
    .global _start
    .global code16_start
code16_start:
_start:
    cli
    cld
    xorl %eax, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl $stack_top, %esp
"#
    };
}

/// From real mode to 32-bit protected mode: LGDT, CR0.PE, a far jump that
/// loads CS with the 32-bit code segment, then the data segments and the
/// stack; continues at the guest's `protected_main`. Ends the 16-bit
/// region and starts the 32-bit one.
#[macro_export]
macro_rules! enter_protected_mode {
    () => {
        r#"
    lgdtl gdt_descriptor
    movl %cr0, %eax
    orl $0x1, %eax              /* PE */
    movl %eax, %cr0
    ljmpl $CODE32_SELECTOR, $protected_entry
    .global code16_end
code16_end:

    .code32
    .global code32_start
code32_start:
protected_entry:
    movw $DATA_SELECTOR, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl $stack_top, %esp
    jmp protected_main
"#
    };
}

/// From 32-bit protected mode to 64-bit long mode: page tables mapping the
/// first 4 GiB with 2 MiB pages, identity (write-back below 3 GiB,
/// uncached (PCD, PWT) from 3 GiB, where the MMIO test device and the
/// interrupt controllers are), then CR4.PAE, CR3, EFER.LME (RDMSR and
/// WRMSR), CR0.PG, and a far jump that loads CS with the 64-bit code
/// segment; continues at the guest's `long_main`. Must be the last 32-bit
/// code: it ends the 32-bit region and starts the 64-bit one.
#[macro_export]
macro_rules! enter_long_mode {
    () => {
        r#"
enter_long_mode:
    /* Zero the six pages: PML4, PDPT, four page directories. */
    movl $pml4, %edi
    xorl %eax, %eax
    movl $(6 * 4096 / 4), %ecx
    rep stosl
    movl $(pdpt + 0x3), pml4                        /* present, writable */
    movl $(page_directories + 0x0003), pdpt
    movl $(page_directories + 0x1003), pdpt + 8
    movl $(page_directories + 0x2003), pdpt + 16
    movl $(page_directories + 0x3003), pdpt + 24
    /* 2048 entries of 2 MiB: entry i maps i * 2 MiB. */
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                                 /* present, writable, 2 MiB */
    cmpl $1536, %ecx
    jb 2f
    orl $0x18, %eax                                 /* PWT, PCD from 3 GiB */
2:
    movl %eax, page_directories(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 1b

    movl %cr4, %eax
    orl $0x20, %eax                                 /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $IA32_EFER, %ecx
    rdmsr
    orl $0x100, %eax                                /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000000, %eax                           /* PG: long mode is active */
    movl %eax, %cr0
    ljmp $CODE64_SELECTOR, $long_entry
    .global code32_end
code32_end:

    .code64
    .global code64_start
code64_start:
long_entry:
    movw $DATA_SELECTOR, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movq $stack_top, %rsp
    jmp long_main

    .pushsection .bss.tables, "aw", @nobits
    .balign 4096
pml4:
    .skip 4096
pdpt:
    .skip 4096
page_directories:
    .skip 4 * 4096
    .popsection
"#
    };
}

/// The 16-bit console routines: `puts16`, `put_hex16`, `fail16`,
/// `exit16`.
#[macro_export]
macro_rules! console16 {
    () => {
        r#"
/* Prints the NUL-terminated string at DS:SI. Keeps every register. */
puts16:
    pushw %ax
    pushw %si
1:
    lodsb
    testb %al, %al
    jz 2f
    outb %al, $DEBUG_CONSOLE_PORT
    jmp 1b
2:
    popw %si
    popw %ax
    ret

/* Prints EAX as 0x and eight hex digits. Keeps every register. */
put_hex16:
    pushal
    movl %eax, %edx
    movb $0x30, %al                                 /* '0' */
    outb %al, $DEBUG_CONSOLE_PORT
    movb $0x78, %al                                 /* 'x' */
    outb %al, $DEBUG_CONSOLE_PORT
    movw $8, %cx
1:
    roll $4, %edx
    movb %dl, %al
    andb $0x0f, %al
    addb $0x30, %al
    cmpb $0x39, %al
    jbe 2f
    addb $0x27, %al                                 /* 'a' to 'f' */
2:
    outb %al, $DEBUG_CONSOLE_PORT
    loop 1b
    popal
    ret

/* Check EAX failed: says so, then exits with EAX. */
fail16:
    movw $guest_name, %si
    call puts16
    print16 ": check "
    call put_hex16
    say16 " failed"
/* Ends the test with exit code EAX. */
exit16:
    outl %eax, $EXIT_PORT
1:
    cli
    hlt
    jmp 1b
"#
    };
}

/// The 32-bit console routines: `puts32`, `put_hex32`, `fail32`,
/// `exit32`.
#[macro_export]
macro_rules! console32 {
    () => {
        r#"
/* Prints the NUL-terminated string at ESI. Keeps every register. */
puts32:
    pushl %eax
    pushl %esi
1:
    lodsb
    testb %al, %al
    jz 2f
    outb %al, $DEBUG_CONSOLE_PORT
    jmp 1b
2:
    popl %esi
    popl %eax
    ret

/* Prints EAX as 0x and eight hex digits. Keeps every register. */
put_hex32:
    pushal
    movl %eax, %edx
    movb $0x30, %al
    outb %al, $DEBUG_CONSOLE_PORT
    movb $0x78, %al
    outb %al, $DEBUG_CONSOLE_PORT
    movl $8, %ecx
1:
    roll $4, %edx
    movb %dl, %al
    andb $0x0f, %al
    addb $0x30, %al
    cmpb $0x39, %al
    jbe 2f
    addb $0x27, %al
2:
    outb %al, $DEBUG_CONSOLE_PORT
    loop 1b
    popal
    ret

/* Check EAX failed: says so, then exits with EAX. */
fail32:
    movl $guest_name, %esi
    call puts32
    print32 ": check "
    call put_hex32
    say32 " failed"
/* Ends the test with exit code EAX. */
exit32:
    outl %eax, $EXIT_PORT
1:
    cli
    hlt
    jmp 1b
"#
    };
}

/// The 64-bit console routines: `puts64`, `put_hex64`, `fail64`,
/// `exit64`.
#[macro_export]
macro_rules! console64 {
    () => {
        r#"
/* Prints the NUL-terminated string at RSI. Keeps every register. */
puts64:
    pushq %rax
    pushq %rsi
1:
    lodsb
    testb %al, %al
    jz 2f
    outb %al, $DEBUG_CONSOLE_PORT
    jmp 1b
2:
    popq %rsi
    popq %rax
    ret

/* Prints 0x and the low ECX hex digits of RAX (ECX from 1 to 16). Keeps
   every register. */
put_hex64:
    pushq %rax
    pushq %rcx
    pushq %rdx
    movq %rax, %rdx
    shll $2, %ecx
    rorq %cl, %rdx                                  /* the first digit to print on top */
    shrl $2, %ecx
    movb $0x30, %al
    outb %al, $DEBUG_CONSOLE_PORT
    movb $0x78, %al
    outb %al, $DEBUG_CONSOLE_PORT
1:
    rolq $4, %rdx
    movb %dl, %al
    andb $0x0f, %al
    addb $0x30, %al
    cmpb $0x39, %al
    jbe 2f
    addb $0x27, %al
2:
    outb %al, $DEBUG_CONSOLE_PORT
    loop 1b
    popq %rdx
    popq %rcx
    popq %rax
    ret

/* Check EAX failed: says so, then exits with EAX. */
fail64:
    movl $guest_name, %esi
    call puts64
    print64 ": check "
    movl $8, %ecx
    call put_hex64
    say64 " failed"
/* Ends the test with exit code EAX. */
exit64:
    outl %eax, $EXIT_PORT
1:
    cli
    hlt
    jmp 1b
"#
    };
}

/// Real-mode exception handling (16-bit): `install_real_mode_exceptions`
/// points interrupt vectors 0 to 31 of the IVT at stubs that report an
/// unexpected exception (vector and return address) and exit with
/// `UNEXPECTED_EXCEPTION_EXIT` plus the vector.
#[macro_export]
macro_rules! real_mode_exceptions {
    () => {
        r#"
/* Fills IVT entries 0 to 31 (segment 0). Keeps every register. */
install_real_mode_exceptions:
    pushal
    movw $real_exception_table, %si
    xorw %di, %di
    movw $32, %cx
1:
    lodsw
    movw %ax, (%di)
    movw $0, 2(%di)
    addw $4, %di
    loop 1b
    popal
    ret

    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
real_exception_\vector:
    pushw $\vector
    jmp real_exception
    .endr

/* Stack: vector, IP, CS, FLAGS. */
real_exception:
    movw %sp, %bp
    movw $guest_name, %si
    call puts16
    print16 ": unexpected exception "
    movzwl (%bp), %eax
    call put_hex16
    print16 " at "
    movzwl 2(%bp), %eax
    call put_hex16
    newline16
    movzwl (%bp), %eax
    addl $UNEXPECTED_EXCEPTION_EXIT, %eax
    jmp exit16

    .pushsection .rodata.guest, "a", @progbits
    .balign 2
real_exception_table:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .word real_exception_\vector
    .endr
    .popsection
"#
    };
}

/// 32-bit exception handling: an IDT (`idt32`, `idt32_descriptor` for
/// LIDT) whose 32 interrupt gates lead to stubs that push the vector (and
/// 0 where the CPU pushes no error code), and the common handler: an
/// exception `expect_fault32` expects is recorded (vector, error code,
/// EIP) and the guest resumes after the instruction; any other is
/// reported and ends the test (`UNEXPECTED_EXCEPTION_EXIT` plus the
/// vector).
#[macro_export]
macro_rules! exceptions32 {
    () => {
        r#"
    .irp vector, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
exception32_\vector:
    pushl $0
    pushl $\vector
    jmp exception32
    .endr
    .irp vector, 8,10,11,12,13,14,17,21,29,30
exception32_\vector:
    pushl $\vector
    jmp exception32
    .endr

/* Stack: vector, error code, EIP, CS, EFLAGS. */
exception32:
    pushl %eax
    movl 4(%esp), %eax
    cmpl expect_vector, %eax
    jne unexpected_exception32
    movl %eax, fault_vector
    movl 8(%esp), %eax
    movl %eax, fault_error
    movl 12(%esp), %eax
    movl %eax, fault_rip
    movl resume_rip, %eax
    movl %eax, 12(%esp)
    movl $NO_VECTOR, expect_vector
    popl %eax
    addl $8, %esp
    iretl

/* EAX: the vector; stack: EAX, vector, error code, EIP. */
unexpected_exception32:
    movl $guest_name, %esi
    call puts32
    print32 ": unexpected exception "
    call put_hex32
    print32 " at "
    pushl %eax
    movl 16(%esp), %eax
    call put_hex32
    print32 ", error code "
    movl 12(%esp), %eax
    call put_hex32
    popl %eax
    newline32
    addl $UNEXPECTED_EXCEPTION_EXIT, %eax
    jmp exit32

    .pushsection .data.guest, "aw", @progbits
    .balign 8
    .global idt32
idt32:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    /* offset 15:0, selector, present DPL 0 32-bit interrupt gate, offset 31:16 */
    .word exception32_\vector, CODE32_SELECTOR, 0x8e00, 0
    .endr
idt32_end:
    .balign 4
idt32_descriptor:
    .word idt32_end - idt32 - 1
    .long idt32
    .popsection
"#
    };
}

/// 64-bit exception handling: as [`exceptions32!`](crate::exceptions32),
/// with a 64-bit IDT (`idt64`, `idt64_descriptor`) of 16-byte gates into
/// the 64-bit code segment.
#[macro_export]
macro_rules! exceptions64 {
    () => {
        r#"
    .irp vector, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
exception64_\vector:
    pushq $0
    pushq $\vector
    jmp exception64
    .endr
    .irp vector, 8,10,11,12,13,14,17,21,29,30
exception64_\vector:
    pushq $\vector
    jmp exception64
    .endr

/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
exception64:
    pushq %rax
    movq 8(%rsp), %rax
    cmpl expect_vector(%rip), %eax
    jne unexpected_exception64
    movl %eax, fault_vector(%rip)
    movq 16(%rsp), %rax
    movq %rax, fault_error(%rip)
    movq 24(%rsp), %rax
    movq %rax, fault_rip(%rip)
    movq resume_rip(%rip), %rax
    movq %rax, 24(%rsp)
    movl $NO_VECTOR, expect_vector(%rip)
    popq %rax
    addq $16, %rsp
    iretq

/* RAX: the vector; stack: RAX, vector, error code, RIP. */
unexpected_exception64:
    movl $guest_name, %esi
    call puts64
    print64 ": unexpected exception "
    movl $8, %ecx
    call put_hex64
    print64 " at "
    pushq %rax
    movq 32(%rsp), %rax
    movl $16, %ecx
    call put_hex64
    print64 ", error code "
    movq 24(%rsp), %rax
    movl $8, %ecx
    call put_hex64
    popq %rax
    newline64
    addl $UNEXPECTED_EXCEPTION_EXIT, %eax
    jmp exit64

    .pushsection .data.guest, "aw", @progbits
    .balign 16
    .global idt64
idt64:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    /* offset 15:0, selector, present DPL 0 64-bit interrupt gate (no IST),
       offset 31:16, offset 63:32, reserved */
    .word exception64_\vector, CODE64_SELECTOR, 0x8e00, 0
    .long 0, 0
    .endr
idt64_end:
    .balign 4
idt64_descriptor:
    .word idt64_end - idt64 - 1
    .quad idt64
    .popsection
"#
    };
}
