//! `guest-real`: a 16-bit real-mode guest (`bulkhead_test_guests::guests::REAL`
//! lists its checks and lines). Its only excursion out of real mode is to
//! load DS and ES with a 4 GiB limit ("unreal mode": CR0.PE set, the data
//! selector loaded, CR0.PE cleared, no far jump, CS keeps its real-mode
//! cache), so that its last two checks reach the MMIO test device at
//! 0xD000_0000 through 32-bit addresses (an address-size prefix) in
//! 16-bit code. Every exception goes to stubs in its IVT, which report it.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
bulkhead_test_guests::guest!(
    bulkhead_test_guests::real_mode_start!(),
    r#"
    call install_real_mode_exceptions
    say16 "real: debug console ok"

    /* 1 to 3: IN of each size from an unclaimed port reads all ones. */
    xorl %eax, %eax
    inb $UNCLAIMED_PORT, %al
    cmpb $0xff, %al
    check_z16 1
    say16 "real: in al from an unclaimed port reads 0xff ok"
    xorl %eax, %eax
    movw $UNCLAIMED_PORT, %dx
    inw %dx, %ax
    cmpw $0xffff, %ax
    check_z16 2
    say16 "real: in ax from an unclaimed port reads 0xffff ok"
    xorl %eax, %eax
    inl %dx, %eax
    cmpl $0xffffffff, %eax
    check_z16 3
    say16 "real: in eax from an unclaimed port reads 0xffffffff ok"

    /* 4, 5: CPUID leaf 1, ECX bit 31 (hypervisor) set, bit 5 (VMX) clear. */
    movl $1, %eax
    xorl %ecx, %ecx
    cpuid
    testl $0x80000000, %ecx
    check_nz16 4
    say16 "real: cpuid hypervisor bit ok"
    testl $0x20, %ecx
    check_z16 5
    say16 "real: cpuid vmx bit clear ok"

    /* 6: IA32_PAT reads back what was written (entry 0 write-combining
       instead of write-back), then gets its reset value back. */
    movl $IA32_PAT, %ecx
    movl $0x00070401, %eax
    movl $0x00070406, %edx
    wrmsr
    xorl %eax, %eax
    xorl %edx, %edx
    rdmsr
    cmpl $0x00070401, %eax
    check_z16 6
    cmpl $0x00070406, %edx
    check_z16 6
    movl $0x00070406, %eax
    wrmsr
    say16 "real: wrmsr/rdmsr ia32_pat round trip ok"

    /* Unreal mode: DS and ES get the flat data segment's 4 GiB limit in
       protected mode and keep it back in real mode, with base 0. */
    lgdtl gdt_descriptor
    movl %cr0, %eax
    orb $0x1, %al                                   /* PE */
    movl %eax, %cr0
    jmp 1f
1:
    movw $DATA_SELECTOR, %bx
    movw %bx, %ds
    movw %bx, %es
    andb $0xfe, %al                                 /* back to real mode */
    movl %eax, %cr0
    jmp 2f
2:
    xorw %bx, %bx
    movw %bx, %ds
    movw %bx, %es
    say16 "real: unreal mode with a 4 gib data segment ok"

    /* 7: the MMIO ID register, 8: the scratch register (4 bytes). */
    movl $MMIO_TEST_BASE, %ebx
    xorl %eax, %eax
    movl MMIO_ID_OFFSET(%ebx), %eax
    cmpl $MMIO_ID, %eax
    check_z16 7
    say16 "real: mmio id register ok"
    movl $0x4c414552, %eax                          /* "REAL" */
    movl %eax, MMIO_SCRATCH_OFFSET(%ebx)
    xorl %ecx, %ecx
    movl MMIO_SCRATCH_OFFSET(%ebx), %ecx
    cmpl %eax, %ecx
    check_z16 8
    say16 "real: mmio scratch round trip ok"

    say16 "real: all checks passed"
    xorl %eax, %eax
    jmp exit16
"#,
    bulkhead_test_guests::console16!(),
    bulkhead_test_guests::real_mode_exceptions!(),
    r#"
    .global code16_end
code16_end:

    .pushsection .rodata.guest, "a", @progbits
guest_name:
    .asciz "real"
    .popsection
"#,
);

/// On the host, an empty program (the workspace builds every binary for
/// the host).
#[cfg(not(target_os = "none"))]
fn main() {}
