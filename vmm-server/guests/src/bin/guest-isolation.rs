//! `guest-isolation`: one of two guests that run at once on one core, to
//! show that neither reaches the other's memory (the guest system,
//! `tests/systems/guests.capdl`, runs two). In 64-bit long mode it picks a
//! marker of its own (the TSC when it starts: on one core no two guests
//! read the same value), prints it, fills the upper MiB of its 2 MiB of
//! RAM with it, then scans that MiB again and again while the other guest
//! does the same with its marker: any store of the other's landing in its
//! memory would end the scan with check 1. Last, the first address past
//! its RAM reads all ones (check 2): the other guest's frames are not
//! there, nor anything else. `bulkhead_test_guests::guests::ISOLATION`
//! lists its lines.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
bulkhead_test_guests::guest!(
    bulkhead_test_guests::real_mode_start!(),
    bulkhead_test_guests::enter_protected_mode!(),
    r#"
protected_main:
    say32 "isolation: 32-bit protected mode ok"
    jmp enter_long_mode
"#,
    bulkhead_test_guests::console32!(),
    bulkhead_test_guests::enter_long_mode!(),
    r#"
    .set MARKED_BASE, 0x100000
    .set MARKED_QWORDS, 0x100000 / 8
    .set PAST_MEMORY, 0x200000
    .set SCANS, 50

long_main:
    lidtq idt64_descriptor
    say64 "isolation: 64-bit long mode ok"

    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, %r15
    print64 "isolation: marker "
    movl $16, %ecx
    call put_hex64
    newline64

    movl $MARKED_BASE, %edi
    movl $MARKED_QWORDS, %ecx
    movq %r15, %rax
    cld
    rep stosq
    say64 "isolation: marker written over its upper mib"

    /* 1: every quadword still holds the marker, scan after scan. */
    movl $SCANS, %r14d
1:
    movl $MARKED_BASE, %edi
    movl $MARKED_QWORDS, %ecx
    movq %r15, %rax
    repe scasq
    check_z64 1
    decl %r14d
    jnz 1b
    say64 "isolation: 50 scans found only its own marker ok"

    /* 2: past its memory, nothing: all ones (open bus). */
    movl $PAST_MEMORY, %ebx
    xorl %eax, %eax
    movq (%rbx), %rax
    cmpq $-1, %rax
    check_z64 2
    say64 "isolation: the first quadword past its memory reads all ones ok"

    say64 "isolation: all checks passed"
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
    .asciz "isolation"
    .popsection
"#,
);

/// On the host, an empty program (the workspace builds every binary for
/// the host).
#[cfg(not(target_os = "none"))]
fn main() {}
