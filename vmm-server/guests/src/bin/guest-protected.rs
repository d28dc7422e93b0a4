//! `guest-protected`: real mode to 32-bit protected mode with flat
//! segments, checks without paging, then with 32-bit paging in 4 KiB
//! pages (`bulkhead_test_guests::guests::PROTECTED` lists its checks and
//! lines). Its IDT catches the #GP that MSRs outside the VMM's allowlist
//! raise: the handler records the fault and resumes after the faulting
//! RDMSR or WRMSR, and the check then requires vector 13, error code 0
//! and the saved EIP at the instruction.
//!
//! Paging: one page directory; the first 4 MiB identity-mapped by a page
//! table, except virtual 0x30_0000, which maps the page `alias_page`; the
//! MMIO test device's page identity-mapped, uncached (PCD, PWT), by a
//! second page table.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
bulkhead_test_guests::guest!(
    bulkhead_test_guests::real_mode_start!(),
    bulkhead_test_guests::enter_protected_mode!(),
    r#"
    .set ALIAS_VIRTUAL, 0x300000

protected_main:
    lidtl idt32_descriptor
    say32 "protected: 32-bit protected mode ok"

    /* 1, 2: CPUID leaf 1, ECX bit 31 (hypervisor) set, bit 5 (VMX) clear. */
    movl $1, %eax
    xorl %ecx, %ecx
    cpuid
    testl $0x80000000, %ecx
    check_nz32 1
    say32 "protected: cpuid hypervisor bit ok"
    testl $0x20, %ecx
    check_z32 2
    say32 "protected: cpuid vmx bit clear ok"

    /* 3: leaf 0x40000000 names the hypervisor. */
    movl $0x40000000, %eax
    xorl %ecx, %ecx
    cpuid
    orl %ecx, %ebx
    orl %edx, %ebx
    check_nz32 3
    say32 "protected: cpuid hypervisor signature present ok"

    /* 4: IA32_SYSENTER_CS reads back what was written. */
    movl $IA32_SYSENTER_CS, %ecx
    movl $CODE32_SELECTOR, %eax
    xorl %edx, %edx
    wrmsr
    movl $0xffffffff, %eax
    movl %eax, %edx
    rdmsr
    cmpl $CODE32_SELECTOR, %eax
    check_z32 4
    testl %edx, %edx
    check_z32 4
    say32 "protected: wrmsr/rdmsr ia32_sysenter_cs round trip ok"

    /* 5, 6: MSRs outside the allowlist raise #GP(0). */
    movl $0xc0001234, %ecx
    expect_fault32 VECTOR_GP, 5, rdmsr
    say32 "protected: rdmsr of an unknown msr raises #gp ok"
    movl $0x3a, %ecx                                /* IA32_FEATURE_CONTROL */
    movl $0x5, %eax                                 /* lock, VMX outside SMX */
    xorl %edx, %edx
    expect_fault32 VECTOR_GP, 6, wrmsr
    say32 "protected: wrmsr of ia32_feature_control raises #gp ok"

    /* 7: the MMIO ID register, paging off. */
    movl MMIO_TEST_BASE + MMIO_ID_OFFSET, %eax
    cmpl $MMIO_ID, %eax
    check_z32 7
    say32 "protected: mmio id register without paging ok"

    /* 8: paging. Zero the directory, both tables and the alias page. */
    movl $page_directory, %edi
    xorl %eax, %eax
    movl $(4 * 4096 / 4), %ecx
    rep stosl
    movl $page_table_low, %edi
    movl $0x3, %eax                                 /* present, writable */
    movl $1024, %ecx
1:
    stosl
    addl $0x1000, %eax
    loop 1b
    movl $(alias_page + 0x3), page_table_low + (ALIAS_VIRTUAL >> 12) * 4
    /* present, writable, PWT, PCD */
    movl $(MMIO_TEST_BASE + 0x1b), page_table_mmio + ((MMIO_TEST_BASE >> 12) & 0x3ff) * 4
    movl $(page_table_low + 0x3), page_directory
    movl $(page_table_mmio + 0x3), page_directory + (MMIO_TEST_BASE >> 22) * 4
    movl $page_directory, %eax
    movl %eax, %cr3
    movl %cr0, %eax
    orl $0x80000000, %eax                           /* PG */
    movl %eax, %cr0
    /* What goes in through the alias comes out of the page, and back. */
    movl $0x41494c41, ALIAS_VIRTUAL                 /* "ALIA" */
    cmpl $0x41494c41, alias_page
    check_z32 8
    movl $0x44455341, alias_page + 4                /* "ASED" */
    cmpl $0x44455341, ALIAS_VIRTUAL + 4
    check_z32 8
    say32 "protected: 32-bit paging with 4 kib pages ok"

    /* 9: the ID register through paging (MOV EAX, moffs32). */
    movl MMIO_TEST_BASE + MMIO_ID_OFFSET, %eax
    cmpl $MMIO_ID, %eax
    check_z32 9
    say32 "protected: mmio id register through paging ok"

    /* 10: the scratch register: a store of an immediate, a load. */
    movl $MMIO_TEST_BASE, %ebx
    movl $0x544f5250, MMIO_SCRATCH_OFFSET(%ebx)      /* "PROT" */
    xorl %ecx, %ecx
    movl MMIO_SCRATCH_OFFSET(%ebx), %ecx
    cmpl $0x544f5250, %ecx
    check_z32 10
    say32 "protected: mmio scratch round trip ok"

    /* 11: #GP with paging on. */
    movl $0x12345678, %ecx
    expect_fault32 VECTOR_GP, 11, rdmsr
    say32 "protected: rdmsr of a reserved msr raises #gp with paging ok"

    say32 "protected: all checks passed"
    xorl %eax, %eax
    jmp exit32
"#,
    bulkhead_test_guests::console32!(),
    bulkhead_test_guests::exceptions32!(),
    r#"
    .global code32_end
code32_end:

    .pushsection .bss.tables, "aw", @nobits
    .balign 4096
page_directory:
    .skip 4096
page_table_low:
    .skip 4096
page_table_mmio:
    .skip 4096
alias_page:
    .skip 4096
    .popsection

    .pushsection .rodata.guest, "a", @progbits
guest_name:
    .asciz "protected"
    .popsection
"#,
);

/// On the host, an empty program (the workspace builds every binary for
/// the host).
#[cfg(not(target_os = "none"))]
fn main() {}
