//! The way in: multiboot headers, the 32-bit entry, the switch to long mode
//! and the jump to the higher half.
//!
//! Both multiboot loaders (GRUB through Multiboot2, QEMU `-kernel` through
//! Multiboot1) enter `boot_entry32` in 32-bit protected mode with paging
//! off, EAX holding the loader's magic and EBX the physical address of its
//! boot information. The stub:
//!
//! 1. records the time stamp counter (under QEMU `-icount shift=0` it counts
//!    instructions, which gives deterministic boot-cost figures);
//! 2. checks that the CPU has long mode and stops with a message if not;
//! 3. builds the boot page tables: the first GiB of physical memory at 0
//!    (identity, for the stub itself) and at `KERNEL_VIRT_BASE` (the kernel),
//!    and the first 4 GiB at `PHYSMAP_BASE` (the kernel's view of physical
//!    memory, where every multiboot structure lies); 2 MiB pages, except for
//!    the first 2 MiB (4 KiB pages);
//! 4. enables PAE, long mode, no-execute (when present), write protection
//!    and paging, loads a 64-bit GDT and far-returns into 64-bit code;
//! 5. switches to the kernel stack in the higher half and calls
//!    `kernel_entry(magic, info)`, which never returns.
//!
//! The identity mapping is removed by `paging::remove_identity_map` as soon
//! as Rust code runs.

use core::arch::global_asm;

/// Where the kernel's virtual addresses begin: physical 0 appears here.
pub(crate) const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Where the physical-memory map begins: physical 0 appears here
/// (PML4 entry 256, the start of the upper half).
pub(crate) const PHYSMAP_BASE: u64 = 0xffff_8000_0000_0000;

/// How much physical memory the boot page tables map at `PHYSMAP_BASE`:
/// 4 GiB, everything a 32-bit multiboot pointer can reach.
pub(crate) const PHYSMAP_BYTES: u64 = 4 << 30;

/// Size of the kernel's boot stack (the stack `kernel_entry` runs on).
pub(crate) const BOOT_STACK_BYTES: usize = 64 * 1024;

unsafe extern "C" {
    /// Top of the boot stack (the address just past it), from the assembly below.
    static boot_stack_top: u8;
    /// Bottom of the boot stack, from the assembly below.
    static boot_stack_bottom: u8;
    /// The time stamp counter read by the first instruction of the kernel.
    static boot_tsc_at_entry: u64;
    /// Physical address of the boot PML4, read by `paging`.
    static boot_pml4: u8;
    /// Physical address of the page table for the first 2 MiB.
    static boot_pt_low: u8;
    /// Physical address of the first of the four page directories.
    static boot_pd: u8;
    /// The unmapped page below the boot stack.
    static boot_stack_guard: u8;
}

/// The boot stack's address range, for the backtrace walker.
pub(crate) fn boot_stack_range() -> core::ops::Range<u64> {
    // Taking the address of an extern static is safe; only reading it is not.
    let bottom = core::ptr::addr_of!(boot_stack_bottom) as u64;
    let top = core::ptr::addr_of!(boot_stack_top) as u64;
    bottom..top
}

/// The TSC value at the kernel's first instruction.
pub(crate) fn tsc_at_entry() -> u64 {
    let low_address = core::ptr::addr_of!(boot_tsc_at_entry) as u64;
    let pointer = (low_address + KERNEL_VIRT_BASE) as *const u64;
    // SAFETY:
    // 1. `boot_tsc_at_entry` lies in `.boot.data` at a physical address
    //    below 1 GiB, so `KERNEL_VIRT_BASE + address` is mapped by the boot
    //    window (which `paging` keeps for the kernel's lifetime).
    // 2. It is 8-byte aligned (see the assembly) and written only by the
    //    32-bit stub, before any Rust code runs.
    unsafe { pointer.read_volatile() }
}

/// Physical address of the boot PML4 (the `.boot` section runs at its
/// physical addresses, so the symbol's value is its physical address).
pub(crate) fn boot_pml4_phys() -> u64 {
    core::ptr::addr_of!(boot_pml4) as u64
}

/// Physical address of the first of the four consecutive page directories
/// that map the first 4 GiB.
pub(crate) fn boot_page_directories_phys() -> u64 {
    core::ptr::addr_of!(boot_pd) as u64
}

/// Physical address of the page table that maps the first 2 MiB.
pub(crate) fn boot_pt_low_phys() -> u64 {
    core::ptr::addr_of!(boot_pt_low) as u64
}

/// Virtual address of the boot stack's guard page.
pub(crate) fn boot_stack_guard_address() -> u64 {
    core::ptr::addr_of!(boot_stack_guard) as u64
}

// The multiboot headers. Multiboot2 (GRUB) loads the ELF by its program
// headers; Multiboot1 (QEMU -kernel) uses the address fields ("a.out
// kludge", flag bit 16) because QEMU refuses ELF64 files.
global_asm!(
    r#"
    .section .multiboot_header, "a"
    .balign 8
multiboot2_header:
    .long 0xe85250d6                       /* magic */
    .long 0                                /* architecture: i386 protected mode */
    .long multiboot2_header_end - multiboot2_header
    .long 0x100000000 - (0xe85250d6 + (multiboot2_header_end - multiboot2_header))
    .short 0                               /* end tag */
    .short 0
    .long 8
multiboot2_header_end:

    .balign 4
multiboot1_header:
    .long 0x1badb002                       /* magic */
    .long 0x00010003                       /* page-aligned modules, memory map, address fields */
    .long 0x100000000 - (0x1badb002 + 0x00010003)
    .long multiboot1_header                /* header_addr */
    .long __kernel_phys_start              /* load_addr */
    .long __kernel_load_end_phys           /* load_end_addr */
    .long __kernel_phys_end                /* bss_end_addr */
    .long boot_entry32                     /* entry_addr */
    "#
);

// The 32-bit stub. Registers on entry: EAX = loader magic, EBX = boot info.
global_asm!(
    r#"
    .section .boot.text, "ax"
    .code32
    .global boot_entry32
boot_entry32:
    cli
    cld
    mov esp, offset boot_stack32_top      /* multiboot leaves ESP undefined */
    mov esi, eax                          /* keep the magic */
    mov edi, ebx                          /* keep the boot-info address */
    rdtsc
    mov dword ptr [boot_tsc_at_entry], eax
    mov dword ptr [boot_tsc_at_entry + 4], edx

    /* Long mode? CPUID 0x80000001 EDX bit 29. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb 2f
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz 2f
    mov ebp, edx                          /* bit 20: no-execute */

    /* Zero the boot page tables. */
    mov ebx, edi
    mov edi, offset boot_page_tables_start
    xor eax, eax
    mov ecx, 9 * 4096 / 4                 /* 9 pages: see boot_page_tables_start */
    rep stosd
    mov edi, ebx

    /* PML4: identity (0), physical-memory map (256), kernel (511). */
    mov eax, offset boot_pdpt_identity
    or eax, 0x3
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pdpt_physmap
    or eax, 0x3
    mov dword ptr [boot_pml4 + 256 * 8], eax
    mov eax, offset boot_pdpt_kernel
    or eax, 0x3
    mov dword ptr [boot_pml4 + 511 * 8], eax
    /* The first GiB's page directory serves all three views. */
    mov eax, offset boot_pd
    or eax, 0x3
    mov dword ptr [boot_pdpt_identity], eax
    mov dword ptr [boot_pdpt_kernel + 510 * 8], eax
    /* The physical-memory map: four page directories, four GiB. */
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov dword ptr [boot_pdpt_physmap + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 1b
    /* 2048 entries of 2 MiB (present, writable, large) in the four
       consecutive page directories: physical 0 to 4 GiB. */
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jne 1b
    /* The first 2 MiB in 4 KiB pages instead: the firmware's fixed MTRRs
       give parts of it other memory types than RAM, which a large page
       must not straddle, and the kernel image in it gets per-section
       permissions and a stack guard page once in Rust. */
    mov eax, offset boot_pt_low
    or eax, 0x3
    mov dword ptr [boot_pd], eax
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 12
    or eax, 0x3
    mov dword ptr [boot_pt_low + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jne 1b

    /* PAE on, CR3, then EFER.LME (+ NXE when the CPU has it). */
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1 << 8
    test ebp, 1 << 20
    jz 3f
    or eax, 1 << 11
3:
    wrmsr
    /* Paging, protection, write protection for ring 0. */
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    push 0x08
    mov eax, offset boot_entry64
    push eax
    retf

    /* No long mode: say so on COM1 and stop. */
2:
    mov ebx, offset boot_no_long_mode_message
4:
    movzx eax, byte ptr [ebx]
    test al, al
    jz 6f
    mov ecx, eax
5:
    mov dx, 0x3fd
    in al, dx
    test al, 0x20
    jz 5b
    mov dx, 0x3f8
    mov eax, ecx
    out dx, al
    inc ebx
    jmp 4b
6:
    cli
    hlt
    jmp 6b

    .code64
boot_entry64:
    xor eax, eax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    movabs rsp, offset boot_stack_top
    xor ebp, ebp                          /* ends the backtrace */
    /* edi = boot-info address, esi = magic: swap into the C argument order. */
    mov edx, edi
    mov edi, esi
    mov esi, edx
    movabs rax, offset kernel_entry
    call rax
7:
    cli
    hlt
    jmp 7b

    .section .boot.data, "aw"
    .balign 8
    .global boot_tsc_at_entry
boot_tsc_at_entry:
    .quad 0
boot_gdt:
    .quad 0                               /* null */
    .quad 0x00209a0000000000              /* 0x08: 64-bit code, ring 0 */
boot_gdt_end:
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
boot_no_long_mode_message:
    .asciz "bulkhead: this CPU has no 64-bit long mode; stopping.\r\n"
    .balign 16
boot_stack32:
    .skip 256                             /* for the far return only */
boot_stack32_top:

    .balign 4096
    .global boot_page_tables_start        /* kernel/linker.ld checks the size */
boot_page_tables_start:                   /* 9 pages, zeroed by the stub */
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt_identity:
    .skip 4096
boot_pdpt_kernel:
    .skip 4096
boot_pdpt_physmap:
    .skip 4096
    .global boot_pd
boot_pd:                                  /* four consecutive page directories */
    .skip 4 * 4096
    .global boot_pt_low
boot_pt_low:
    .skip 4096
    .global boot_page_tables_end
boot_page_tables_end:

    .section .bss.boot_stack, "aw", @nobits
    .balign 4096
    .global boot_stack_guard
boot_stack_guard:                         /* unmapped by paging::protect_kernel_image */
    .skip 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip {boot_stack_bytes}
    .global boot_stack_top
boot_stack_top:

    .text
    "#,
    boot_stack_bytes = const BOOT_STACK_BYTES,
);
