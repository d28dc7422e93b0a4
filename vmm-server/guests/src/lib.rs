//! The project's own test guests: bare-metal x86 programs that a VMM
//! (`vmm-server`) boots, one binary each, which check the virtual machine
//! they find and report through I/O ports; and a hostile one that tries to
//! escape. This library holds what the VMM, its tests and the guests share:
//! the boot convention's numbers ([`convention`]), the table of guests with
//! the lines each prints and how each ends ([`guests`]), and the assembly
//! the guests are made of ([`asm`]).
//!
//! # The guests
//!
//! | binary | modes | ends with |
//! | --- | --- | --- |
//! | `guest-real` | 16-bit real mode (and unreal mode for MMIO) | exit code 0 |
//! | `guest-protected` | real → 32-bit protected, then 32-bit paging with 4 KiB pages | exit code 0 |
//! | `guest-long` | real → protected → 64-bit long mode, 2 MiB pages | exit code 0 |
//! | `guest-hostile` | real → protected → long mode | a triple fault |
//! | `guest-hostile-pc` | 64-bit, entered by the Linux boot path | an ACPI S5 power off |
//!
//! `guest-hostile-pc` is not of the convention below: it is linked at
//! 16 MiB (`hostile-pc.ld`), packed by the CLI as a bzImage and booted as
//! a Linux kernel on the PC platform, and written in Rust; [`hostile_pc`]
//! holds its decisions, host-tested, and says what it does
//! (`docs/PLATFORM.md`, "The hostile PC guest").
//!
//! Each is written in GNU assembler syntax (AT&T) inside
//! `core::arch::global_asm!` (rustc's LLVM assembler; no external tool),
//! linked by rust-lld with `guests.ld` into a static ELF file:
//!
//! ```text
//! cargo build -p bulkhead-test-guests --release --target x86_64-unknown-none
//! target/x86_64-unknown-none/release/guest-{real,protected,long,hostile}
//! ```
//!
//! On the host each binary is an empty `fn main() {}` (the workspace's
//! `cargo test` builds every binary for the host). `tests/images.rs`
//! builds the guests into `target/bulkhead/guests` and checks each image:
//! its layout, its GDT and IDTs, every instruction decoded in the mode it
//! runs in, far jumps landing in code of the right mode, and the lines of
//! [`guests::GUESTS`] present in it.
//!
//! # Boot convention
//!
//! What the VMM does and what the guests rely on:
//!
//! - **Loading.** The image is a static ELF64 x86-64 executable. The VMM
//!   copies each `PT_LOAD` segment's `p_filesz` bytes to guest-physical
//!   `p_paddr` and zeroes the rest of the segment up to `p_memsz` (the
//!   stack and page tables live there) and the rest of guest RAM. Every
//!   segment lies inside [`LOAD_START`]`..`[`LOAD_END`] (0x8000 to
//!   0x9F000): nothing below 0x8000, so the real-mode interrupt vector
//!   table and BIOS data area stay free, nothing at or above 0x9F000. The
//!   ELF headers are not loaded. Guest RAM is at least [`MIN_RAM_BYTES`]
//!   (2 MiB) from guest-physical 0.
//! - **First state.** Real mode: CR0 = 0x10 (ET), CS selector 0 with base
//!   0, every data segment 0 (base 0, limit 0xFFFF), RIP = `e_entry`
//!   (0x8000, the image's first byte, below 64 KiB), RFLAGS = 0x2
//!   (interrupts off), IDTR base 0 limit 0x3FF (the real-mode default),
//!   EFER 0. The guests set their own stack before using one and never
//!   enable interrupts.
//! - **Debug console, port [`DEBUG_CONSOLE_PORT`] (0xE9).** One byte OUT
//!   per character; lines end with `'\n'`. Every guest writes only
//!   printable ASCII and newlines.
//! - **Exit, port [`EXIT_PORT`] (0xF4).** A 32-bit OUT of the exit code
//!   ends the test: [`EXIT_SUCCESS`] (0) when every check passed, the
//!   number of the first failed check otherwise (the guest first prints
//!   `"<name>: check 0x0000000n failed"`), or
//!   [`UNEXPECTED_EXCEPTION_EXIT`] plus the vector for an exception no
//!   check expected (after `"<name>: unexpected exception 0x... at 0x...,
//!   error code 0x..."`). The VMM stops the guest there; a guest that runs
//!   on halts with interrupts off.
//! - **MMIO test device at guest-physical [`MMIO_TEST_BASE`]
//!   (0xD000_0000).** Offset [`MMIO_ID_OFFSET`] (0): a read-only 32-bit ID
//!   register reading [`MMIO_ID`] (0x4B4C_5542, "BULK"); offset
//!   [`MMIO_SCRATCH_OFFSET`] (8): a 64-bit scratch register that reads
//!   back what was written. The guests also make narrower accesses and
//!   rely on little-endian register semantics: a 1-byte read of the ID
//!   register returns its low byte (`guest-long`), and a 4-byte write then
//!   read at offset 8 returns what was written (`guest-real`,
//!   `guest-protected`).
//! - **CPUID.** Leaf 1: the hypervisor bit (ECX bit 31) set, VMX (ECX
//!   bit 5) clear. Leaf 0x8000_0001: LM (EDX bit 29) set, SVM (ECX bit 2)
//!   clear. Leaf 0x4000_0000: a hypervisor signature (EBX, ECX, EDX not
//!   all zero).
//! - **MSRs.** [`msr::ALLOWED`] (IA32_PAT, STAR, LSTAR, SYSENTER_CS) read
//!   back what was written; EFER works as the real register (long mode is
//!   entered by setting EFER.LME, then CR0.PG); every MSR in
//!   [`msr::REFUSED`] gets #GP(0), for RDMSR and WRMSR alike, with RIP at
//!   the faulting instruction.
//! - **I/O.** A read of an unclaimed port ([`UNCLAIMED_PORT`], 0x5A)
//!   returns all ones at every size.
//! - **Virtualisation instructions** (VMXON, VMLAUNCH, VMCALL, VMRUN,
//!   VMLOAD, VMSAVE, STGI, CLGI, VMMCALL) raise #UD in the guest, whether
//!   the hardware raises it or the VMM injects it.
//! - **Triple fault.** The VMM stops the guest and reports it
//!   (`guest-hostile` ends this way).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod asm;
pub mod convention;
pub mod guests;
pub mod hostile_pc;

pub use convention::*;

/// The guests contain no Rust code that could panic, but a bare-metal
/// binary needs a handler.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
