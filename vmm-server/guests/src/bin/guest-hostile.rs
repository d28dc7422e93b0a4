//! `guest-hostile`: tries to escape, and the VMM must contain it
//! (`bulkhead_test_guests::guests::HOSTILE` lists its attempts and
//! lines). It runs in 64-bit long mode (the first 4 GiB identity-mapped,
//! as `guest-long`) so that it reaches any address below 4 GiB, and says
//! what it attempts on the debug console before each attempt, so that a
//! test sees how far it got. An attempt that should fault and does not
//! ends it with that check's number; it ends with a triple fault.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
bulkhead_test_guests::guest!(
    bulkhead_test_guests::real_mode_start!(),
    bulkhead_test_guests::enter_protected_mode!(),
    r#"
protected_main:
    say32 "hostile: 32-bit protected mode ok"
    jmp enter_long_mode
"#,
    bulkhead_test_guests::console32!(),
    bulkhead_test_guests::enter_long_mode!(),
    r#"
    /* Reads and writes guest-physical `address`, printing what it read. */
    .macro probe_memory address
    say64 "hostile: reading \address"
    movl $\address, %ebx
    movl (%rbx), %eax
    print64 "hostile: read \address: "
    movl $8, %ecx
    call put_hex64
    newline64
    say64 "hostile: writing 0x5a5a5a5a to \address"
    movl $0x5a5a5a5a, (%rbx)
    movl (%rbx), %eax
    print64 "hostile: read back \address: "
    call put_hex64
    newline64
    .endm

    /* WRMSR of `value` to `msr`, which must raise #GP(0). */
    .macro hostile_wrmsr msr, value, check
    say64 "hostile: wrmsr \msr"
    movl $\msr, %ecx
    movl $\value, %eax
    xorl %edx, %edx
    expect_fault64 VECTOR_GP, \check, wrmsr
    say64 "hostile: wrmsr \msr raised #gp"
    .endm

    /* RDMSR of `msr`, which must raise #GP(0). */
    .macro hostile_rdmsr msr, check
    say64 "hostile: rdmsr \msr"
    movl $\msr, %ecx
    expect_fault64 VECTOR_GP, \check, rdmsr
    say64 "hostile: rdmsr \msr raised #gp"
    .endm

    /* `instruction` (named `name`) must raise #UD. */
    .macro hostile_ud name, check, instruction:vararg
    say64 "hostile: \name"
    expect_fault64 VECTOR_UD, \check, \instruction
    say64 "hostile: \name raised #ud"
    .endm

long_main:
    lidtq idt64_descriptor
    say64 "hostile: 64-bit long mode ok"

    /* 19: the task priority at its highest, and left there. Were the
       guest's MOV to CR8 to reach the physical local APIC (VT-x without
       CR8 exiting or a TPR shadow), the host would take no more
       interrupts, its timer's included, once this guest stops. */
    say64 "hostile: raising cr8 to 15"
    movl $15, %eax
    movq %rax, %cr8
    xorl %ebx, %ebx
    movq %cr8, %rbx
    cmpq $15, %rbx
    check_z64 19
    say64 "hostile: cr8 reads back 15"

    /* Memory far outside a 2 MiB RAM: 1 GiB, and the last page below
       4 GiB. */
    probe_memory 0x40000000
    probe_memory 0xfffff000

    /* 1 to 8: MSRs outside the allowlist. */
    hostile_wrmsr 0x3a, 0x5, 1                      /* IA32_FEATURE_CONTROL: lock, VMX */
    hostile_wrmsr 0x480, 0x0, 2                     /* IA32_VMX_BASIC (read-only) */
    hostile_wrmsr 0xc0010114, 0x0, 3                /* VM_CR: SVM allowed */
    hostile_wrmsr 0xc0010117, 0x1000, 4             /* VM_HSAVE_PA */
    hostile_wrmsr 0xc0001234, 0x0, 5                /* unimplemented */
    hostile_wrmsr 0x12345678, 0x0, 6                /* outside every range */
    hostile_rdmsr 0x480, 7                          /* the host's VMX capabilities */
    hostile_rdmsr 0xc0010117, 8                     /* the host's save area */

    /* 9 to 17: virtualisation instructions. RAX holds the address of a
       zeroed page for those that take one. */
    movl $hostile_page, %eax
    hostile_ud vmxon, 9, vmxon vmxon_pointer(%rip)
    hostile_ud vmlaunch, 10, vmlaunch
    hostile_ud vmcall, 11, vmcall
    hostile_ud vmrun, 12, vmrun %rax
    hostile_ud vmload, 13, vmload %rax
    hostile_ud vmsave, 14, vmsave %rax
    hostile_ud stgi, 15, stgi
    hostile_ud clgi, 16, clgi
    hostile_ud vmmcall, 17, vmmcall

    /* Interrupt controllers: redirection entry 0 of the I/O APIC unmasked
       (vector 0); the local APIC enabled, then an INIT IPI to all others;
       both PICs initialised (ICW1 to ICW4) and unmasked. Interrupts stay
       off: nothing may happen. */
    say64 "hostile: writing the i/o apic at 0xfec00000"
    movl $0xfec00000, %ebx
    movl $0x10, (%rbx)                              /* IOREGSEL: entry 0, low half */
    movl $0x0, 0x10(%rbx)                           /* IOWIN */
    say64 "hostile: writing the local apic at 0xfee00000"
    movl $0xfee00000, %ebx
    movl $0x1ff, 0xf0(%rbx)                         /* spurious vector register: enabled */
    movl $0x0, 0x310(%rbx)                          /* ICR high */
    movl $0xc4500, 0x300(%rbx)                      /* ICR low: INIT, all excluding self */
    say64 "hostile: writing the legacy pics at ports 0x20, 0x21, 0xa0 and 0xa1"
    movb $0x11, %al                                 /* ICW1: edge, cascade, ICW4 */
    outb %al, $0x20
    outb %al, $0xa0
    movb $0x20, %al                                 /* ICW2: vector bases */
    outb %al, $0x21
    movb $0x28, %al
    outb %al, $0xa1
    movb $0x04, %al                                 /* ICW3: slave on line 2 */
    outb %al, $0x21
    movb $0x02, %al
    outb %al, $0xa1
    movb $0x01, %al                                 /* ICW4: 8086 mode */
    outb %al, $0x21
    outb %al, $0xa1
    xorb %al, %al                                   /* OCW1: nothing masked */
    outb %al, $0x21
    outb %al, $0xa1
    say64 "hostile: interrupt controllers written"

    /* The exit flood: each round one CPUID and one OUT. */
    say64 "hostile: exit flood of cpuid and out to port 0x80"
    movl $HOSTILE_FLOOD_ROUNDS, %r12d
1:
    xorl %eax, %eax
    cpuid
    outb %al, $0x80
    decl %r12d
    jnz 1b
    say64 "hostile: exit flood done"

    /* The triple fault: with an IDT of limit 0, INT3 raises #GP, whose
       delivery raises #DF, whose delivery shuts the processor down. */
    say64 "hostile: triple fault next"
    lidtq empty_idt_descriptor
    int3
    /* 18: the VMM let it run on. */
    movl $18, %eax
    jmp fail64
"#,
    bulkhead_test_guests::console64!(),
    bulkhead_test_guests::exceptions64!(),
    r#"
    .global code64_end
code64_end:

    .pushsection .data.guest, "aw", @progbits
    .balign 8
/* VMXON's operand: the physical address of its region. */
vmxon_pointer:
    .quad hostile_page
empty_idt_descriptor:
    .word 0
    .quad 0
    .popsection

    .pushsection .bss.tables, "aw", @nobits
    .balign 4096
hostile_page:
    .skip 4096
    .popsection

    .pushsection .rodata.guest, "a", @progbits
guest_name:
    .asciz "hostile"
    .popsection
"#,
);

/// On the host, an empty program (the workspace builds every binary for
/// the host).
#[cfg(not(target_os = "none"))]
fn main() {}
