//! `guest-cpuid-loop`: the exit benchmark's guest (`docs/PERFORMANCE.md`,
//! "VM exits handled in vmm-server"). In 16-bit real mode it runs CPUID
//! of leaf 0 10,000 times, four instructions per round (XOR, CPUID,
//! DEC, JNZ), so that its VMM's figures per CPUID exit are the cost of an
//! exit handled in vmm-server: the kernel's part, the world switch and
//! the VMM's. `bulkhead_test_guests::guests::CPUID_LOOP` lists its lines.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
bulkhead_test_guests::guest!(
    bulkhead_test_guests::real_mode_start!(),
    r#"
    .set ROUNDS, 10000

    call install_real_mode_exceptions
    say16 "cpuid-loop: 10000 cpuid exits next"
    movl $ROUNDS, %edi
1:
    xorl %eax, %eax
    cpuid
    decl %edi
    jnz 1b
    say16 "cpuid-loop: done"
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
    .asciz "cpuid-loop"
    .popsection
"#,
);

/// On the host, an empty program (the workspace builds every binary for
/// the host).
#[cfg(not(target_os = "none"))]
fn main() {}
