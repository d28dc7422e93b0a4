//! `guest-long`: real mode to 32-bit protected mode to 64-bit long mode
//! (PAE paging, the first 4 GiB identity-mapped with 2 MiB pages, the MMIO
//! test device's included, uncached) and checks there
//! (`bulkhead_test_guests::guests::LONG` lists them and its lines). Its
//! 64-bit IDT catches the #GP of MSRs outside the VMM's allowlist, as
//! `guest-protected`'s does in 32-bit mode.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
bulkhead_test_guests::guest!(
    bulkhead_test_guests::real_mode_start!(),
    bulkhead_test_guests::enter_protected_mode!(),
    r#"
protected_main:
    say32 "long: 32-bit protected mode ok"
    jmp enter_long_mode
"#,
    bulkhead_test_guests::console32!(),
    bulkhead_test_guests::enter_long_mode!(),
    r#"
long_main:
    lidtq idt64_descriptor
    say64 "long: 64-bit long mode ok"

    /* 1: EFER.LMA (bit 10). */
    movl $IA32_EFER, %ecx
    rdmsr
    testl $0x400, %eax
    check_nz64 1
    say64 "long: efer.lma set ok"

    /* 2, 3: CPUID leaf 0x80000001, EDX bit 29 (LM) set, ECX bit 2 (SVM)
       clear. */
    movl $0x80000001, %eax
    xorl %ecx, %ecx
    cpuid
    testl $0x20000000, %edx
    check_nz64 2
    say64 "long: cpuid long mode bit ok"
    testl $0x4, %ecx
    check_z64 3
    say64 "long: cpuid svm bit clear ok"

    /* 4: IA32_LSTAR with a canonical kernel address. */
    movl $IA32_LSTAR, %ecx
    movl $0x12345678, %eax
    movl $0xffff8000, %edx
    wrmsr
    xorl %eax, %eax
    xorl %edx, %edx
    rdmsr
    shlq $32, %rdx
    orq %rdx, %rax
    movabsq $0xffff800012345678, %rdx
    cmpq %rdx, %rax
    check_z64 4
    say64 "long: wrmsr/rdmsr ia32_lstar round trip ok"

    /* 5: IA32_STAR (SYSRET base selector 0x20, SYSCALL selector 0x18). */
    movl $IA32_STAR, %ecx
    xorl %eax, %eax
    movl $0x00200018, %edx
    wrmsr
    movl $0xffffffff, %eax
    xorl %edx, %edx
    rdmsr
    testl %eax, %eax
    check_z64 5
    cmpl $0x00200018, %edx
    check_z64 5
    say64 "long: wrmsr/rdmsr ia32_star round trip ok"

    /* 6, 7: MSRs outside the allowlist raise #GP(0). */
    movl $0xc0001234, %ecx
    expect_fault64 VECTOR_GP, 6, rdmsr
    say64 "long: rdmsr of an unknown msr raises #gp ok"
    movl $0x12345678, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    expect_fault64 VECTOR_GP, 7, wrmsr
    say64 "long: wrmsr of a reserved msr raises #gp ok"

    /* 8: the ID register (32-bit load through RBX: an absolute 0xd0000000
       would be sign-extended in 64-bit code). */
    movl $MMIO_TEST_BASE, %ebx
    xorl %eax, %eax
    movl MMIO_ID_OFFSET(%rbx), %eax
    cmpl $MMIO_ID, %eax
    check_z64 8
    say64 "long: mmio id register ok"

    /* 9: the scratch register, 64 bits each way. */
    movabsq $0x0123456789abcdef, %rax
    movq %rax, MMIO_SCRATCH_OFFSET(%rbx)
    xorl %ecx, %ecx
    movq MMIO_SCRATCH_OFFSET(%rbx), %rcx
    cmpq %rax, %rcx
    check_z64 9
    say64 "long: mmio 64-bit scratch round trip ok"

    /* 10: MOV r/m64, imm32 stores the immediate sign-extended. */
    movq $-0x21524111, MMIO_SCRATCH_OFFSET(%rbx)    /* 0xffffffffdeadbeef */
    xorl %ecx, %ecx
    movq MMIO_SCRATCH_OFFSET(%rbx), %rcx
    movq $-0x21524111, %rax
    cmpq %rax, %rcx
    check_z64 10
    say64 "long: mmio store of a sign-extended immediate ok"

    /* 11: MOVZX of the ID register's low byte. */
    movl $0xffffffff, %ecx
    movzbl MMIO_ID_OFFSET(%rbx), %ecx
    cmpl $(MMIO_ID & 0xff), %ecx
    check_z64 11
    say64 "long: mmio movzx byte read ok"

    say64 "long: all checks passed"
    xorl %eax, %eax
    jmp exit64
"#,
    bulkhead_test_guests::console64!(),
    bulkhead_test_guests::exceptions64!(),
    r#"
    .global code64_end
code64_end:

    .pushsection .rodata.guest, "a", @progbits
guest_name:
    .asciz "long"
    .popsection
"#,
);

/// On the host, an empty program (the workspace builds every binary for
/// the host).
#[cfg(not(target_os = "none"))]
fn main() {}
