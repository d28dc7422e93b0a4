//! `guest-hostile-pc`: the hostile guest of the PC platform Linux guests
//! get (`docs/PLATFORM.md`, "The hostile PC guest"). The CLI packs it as
//! a minimal `bzImage` (`src/test_guest_image.rs`, manifest name
//! `hostile-pc`), and the VMM boots it exactly as it boots Linux: 64-bit
//! entry at 16 MiB + 0x200 on the boot path's page tables, `boot_params`
//! in RSI, ACPI tables, COM1 and virtio-mmio disks.
//!
//! It prints on COM1 (polled, a FIFO's 16 bytes per `rep outsb`) and
//! then:
//!
//! 1. **Random phase**: for `hostile.rounds=` rounds, driven by SplitMix64
//!    seeded from `hostile.seed=` (`bulkhead_test_guests::hostile_pc`),
//!    random reads and writes of random widths at random offsets of the
//!    local APIC page, the I/O APIC page and the first virtio-mmio page,
//!    and at random ports of the board (never COM1, never the reset
//!    register, never SLP_EN), with interrupts off; then, each round,
//!    interrupt sources programmed with random parameters and an interrupt
//!    window, the only time interrupts are on: a loop that cannot fault,
//!    taking at most a budget of interrupts, each ended at the local APIC
//!    and at both 8259As (see the assembly).
//! 2. **virtio phase**: drives the virtio-blk device through its
//!    initialisation and posts malformed requests and queues, one case at
//!    a time; after each notify it checks that the device still answers
//!    (MagicValue, Version) and did what `docs/DEVICES.md` says for that
//!    input: the used element, the status byte (or that none was
//!    written), DEVICE_NEEDS_RESET and the interrupt status.
//! 3. A reset, one valid write and read back of a sector, the counts, and
//!    the ACPI S5 power off through PM1a control, as Linux does it.
//!
//! A failed check prints `HOSTILE-PC: FAIL what` and resets the machine
//! through the FADT's reset register (the VMM stops the guest: there is
//! no firmware to restart it); so does an exception, which this guest
//! never expects.
//!
//! Guest-physical memory it uses besides its image (at 16 MiB): the IDT
//! at `IDT_ADDRESS` and the device buffers from `DMA_BASE`, RAM the
//! boot path leaves free (it puts its own structures below 1 MiB and the
//! staged files at the top of RAM).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "register and descriptor fields are narrower than the values they are cut from, on purpose"
)]

#[cfg(target_os = "none")]
mod guest {
    use core::arch::{asm, global_asm};
    use core::fmt::{self, Write as _};
    use core::sync::atomic::{AtomicU8, AtomicU16, Ordering};

    use bulkhead_test_guests::hostile_pc::{
        self, ACCESSES_PER_ROUND, MARKER_CASE_OK, MARKER_DONE, MARKER_FAIL, MARKER_RANDOM_DONE, MARKER_START, MmioPage,
        Prng, SLP_EN, SOURCES_PER_ROUND, Target, VIRTIO_CASES,
    };

    global_asm!(
        r#"
    .section .text.entry32, "ax"
    .code32
    /* The 32-bit entry at the load address: never used (the VMM enters at
       + 0x200 in 64-bit mode). */
startup_32:
    hlt
    jmp startup_32

    .code64
    .section .text.entry64, "ax"
    .global _start64
_start64:
    cli
    cld
    movq %rsi, %r12
    leaq bss_start(%rip), %rdi
    leaq bss_end(%rip), %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    leaq stack_top(%rip), %rsp
    movq %r12, %rdi
    call hostile_main
1:
    cli
    hlt
    jmp 1b

    /* The exception stubs: vector and error code (0 where the CPU pushes
       none) on the stack, then the common part. Inside an interrupt
       window, where only external interrupts arrive (the window's loop
       cannot fault), a vector below 32 is one of those: no error code,
       the interrupt path. */
    .section .text.exceptions, "ax"
    .macro exception_stub vector
exception_stub_\vector:
    cmpb $0, interrupt_window_open(%rip)
    jne interrupt_stubs + 16 * \vector
    .if (\vector == 8) || ((\vector >= 10) && (\vector <= 14)) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp exception_common
    .endm
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    exception_stub \vector
    .endr
exception_common:
    movq %rsp, %rdi
    andq $-16, %rsp
    call hostile_exception
2:
    cli
    hlt
    jmp 2b

    /* The interrupt stubs, 16 bytes apart: the vector, then the common
       part. */
    .balign 16
interrupt_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    pushq $vector
    jmp interrupt_common
    .set vector, vector + 1
    .endr

    /* An external interrupt: counted, its vector noted, ended at the
       local APIC (a MOV of an immediate, which the VMM emulates) and at
       both 8259As (a non-specific EOI), and once the window's budget is
       spent the window closes: IF is cleared in the frame IRETQ returns
       through, so that a line that stays asserted cannot keep the guest
       in its handler. */
interrupt_common:
    pushq %rax
    pushq %rdx
    incq interrupts_taken(%rip)
    movq 16(%rsp), %rax
    andl $255, %eax
    leaq vectors_seen(%rip), %rdx
    btsq %rax, (%rdx)
    movl $0xfee000b0, %edx
    movl $0, (%rdx)
    movb $0x20, %al
    outb %al, $0xa0
    outb %al, $0x20
    decq window_budget(%rip)
    jnz 3f
    andq $-0x201, 40(%rsp)
3:
    popq %rdx
    popq %rax
    addq $8, %rsp
    iretq

    /* interrupt_window(iterations, budget): interrupts on for
       `iterations` turns of a loop that cannot fault, at most `budget`
       of them taken. */
    .global interrupt_window
interrupt_window:
    movq %rsi, window_budget(%rip)
    movb $1, interrupt_window_open(%rip)
    sti
4:
    pause
    decq %rdi
    jnz 4b
    cli
    movb $0, interrupt_window_open(%rip)
    ret

    .section .bss.interrupts, "aw", @nobits
    .balign 8
    .global interrupts_taken, vectors_seen
interrupts_taken:
    .skip 8
window_budget:
    .skip 8
vectors_seen:
    .skip 32
interrupt_window_open:
    .skip 1

    .section .rodata.exception_stubs, "a"
    .balign 8
    .global exception_stubs
exception_stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr

    .section .bss.stack, "aw", @nobits
    .balign 16
    .skip 65536
stack_top:
    .text
"#,
        options(att_syntax)
    );

    unsafe extern "C" {
        /// The 32 exception stubs' addresses (the assembly above).
        static exception_stubs: [u64; 32];
        /// The first interrupt stub; vector n's is 16 n bytes on.
        static interrupt_stubs: u8;
        /// External interrupts taken in the windows.
        static interrupts_taken: u64;
        /// A bit per vector taken.
        static vectors_seen: [u64; 4];
        /// Interrupts on for `iterations` turns of a loop, at most `budget`
        /// taken.
        fn interrupt_window(iterations: u64, budget: u64);
    }

    /// Turns of an interrupt window's loop, and the interrupts it takes
    /// at most.
    const WINDOW_ITERATIONS: u64 = 20_000;
    const WINDOW_BUDGET: u64 = 16;

    /// The IDT: 256 interrupt gates, one page of RAM below the buffers.
    const IDT_ADDRESS: u64 = 0x3f_f000;
    /// The device buffers: 64 KiB of RAM at 4 MiB, identity-mapped.
    const DMA_BASE: u64 = 0x40_0000;
    /// Where the boot path's identity map ends.
    const IDENTITY_MAP_END: u64 = 1 << 32;

    // --- Port I/O, MMIO and RAM.

    fn outb(port: u16, value: u8) {
        // SAFETY: port I/O reaches the emulated board's devices, none of
        // which touches memory this program uses.
        unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
    }

    fn outw(port: u16, value: u16) {
        // SAFETY: as `outb`.
        unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
    }

    fn outl(port: u16, value: u32) {
        // SAFETY: as `outb`.
        unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
    }

    fn inb(port: u16) -> u8 {
        let value: u8;
        // SAFETY: as `outb`.
        unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) }
        value
    }

    fn inw(port: u16) -> u16 {
        let value: u16;
        // SAFETY: as `outb`.
        unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack, preserves_flags)) }
        value
    }

    fn inl(port: u16) -> u32 {
        let value: u32;
        // SAFETY: as `outb`.
        unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags)) }
        value
    }

    /// A `width`-byte MOV store of `value` at guest-physical `address`
    /// (identity-mapped), the one instruction form the VMM emulates on
    /// device memory.
    fn mmio_write(address: u64, width: u8, value: u64) {
        // SAFETY (each arm): `address` is device memory or RAM outside this
        // program's image and stack (callers pass the APIC and virtio
        // pages, the IDT or the device buffers); the boot page tables map
        // the first 4 GiB.
        match width {
            // SAFETY: as above.
            1 => unsafe {
                asm!("mov byte ptr [{a}], {v}", a = in(reg) address, v = in(reg_byte) value as u8, options(nostack, preserves_flags))
            },
            // SAFETY: as above.
            2 => unsafe {
                asm!("mov word ptr [{a}], {v:x}", a = in(reg) address, v = in(reg) value, options(nostack, preserves_flags))
            },
            // SAFETY: as above.
            4 => unsafe {
                asm!("mov dword ptr [{a}], {v:e}", a = in(reg) address, v = in(reg) value, options(nostack, preserves_flags))
            },
            // SAFETY: as above.
            _ => unsafe {
                asm!("mov qword ptr [{a}], {v}", a = in(reg) address, v = in(reg) value, options(nostack, preserves_flags))
            },
        }
    }

    /// A `width`-byte MOV or MOVZX load from guest-physical `address`.
    fn mmio_read(address: u64, width: u8) -> u64 {
        let value: u64;
        // As `mmio_write`; a load changes no memory.
        match width {
            // SAFETY: as above.
            1 => unsafe {
                asm!("movzx {v:e}, byte ptr [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, preserves_flags, readonly))
            },
            // SAFETY: as above.
            2 => unsafe {
                asm!("movzx {v:e}, word ptr [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, preserves_flags, readonly))
            },
            // SAFETY: as above.
            4 => unsafe {
                asm!("mov {v:e}, dword ptr [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, preserves_flags, readonly))
            },
            // SAFETY: as above.
            _ => unsafe {
                asm!("mov {v}, qword ptr [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, preserves_flags, readonly))
            },
        }
        value
    }

    /// A byte of guest-physical memory below 4 GiB (the boot path's
    /// tables, the command line, the device buffers).
    fn read_u8(address: u64) -> u8 {
        if address >= IDENTITY_MAP_END {
            return 0xff;
        }
        mmio_read(address, 1) as u8
    }

    fn read_u16(address: u64) -> u16 {
        u16::from_le_bytes([read_u8(address), read_u8(address + 1)])
    }

    fn read_u32(address: u64) -> u32 {
        u32::from(read_u16(address)) | u32::from(read_u16(address + 2)) << 16
    }

    fn read_u64(address: u64) -> u64 {
        u64::from(read_u32(address)) | u64::from(read_u32(address + 4)) << 32
    }

    fn write_u8(address: u64, value: u8) {
        mmio_write(address, 1, u64::from(value));
    }

    fn write_u16(address: u64, value: u16) {
        mmio_write(address, 2, u64::from(value));
    }

    fn write_u32(address: u64, value: u32) {
        mmio_write(address, 4, u64::from(value));
    }

    fn write_u64(address: u64, value: u64) {
        mmio_write(address, 8, value);
    }

    // --- The console: COM1, polled.

    const COM1: u16 = 0x3f8;

    /// COM1's transmit FIFO: the bytes one THRE lets a driver write.
    const FIFO_BYTES: usize = 16;

    /// The console: text is sent in FIFO-sized chunks, each after LSR says
    /// the transmitter is empty and with one `rep outsb` (the VMM emulates
    /// string I/O), so a line costs a few exits rather than two per byte.
    struct Console;

    impl Console {
        /// 8 data bits, no parity, one stop bit, no interrupts, FIFOs on.
        fn init() {
            outb(COM1 + 1, 0x00);
            outb(COM1 + 3, 0x80);
            outb(COM1, 0x01);
            outb(COM1 + 1, 0x00);
            outb(COM1 + 3, 0x03);
            outb(COM1 + 2, 0x07);
            outb(COM1 + 4, 0x03);
        }

        fn send(chunk: &[u8]) {
            // THR empty (LSR bit 5); the 16550A model's is always set, so
            // the wait is bounded.
            for _ in 0..100_000 {
                if inb(COM1 + 5) & 0x20 != 0 {
                    break;
                }
            }
            // SAFETY: OUTSB reads `chunk.len()` bytes from `chunk` (DF is
            // clear: the entry clears it and nothing sets it) and writes
            // them to COM1's THR.
            unsafe {
                asm!(
                    "rep outsb dx, byte ptr [rsi]",
                    in("dx") COM1,
                    inout("rsi") chunk.as_ptr() => _,
                    inout("rcx") chunk.len() => _,
                    options(readonly, nostack, preserves_flags)
                )
            }
        }
    }

    impl fmt::Write for Console {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            for chunk in text.as_bytes().chunks(FIFO_BYTES) {
                Console::send(chunk);
            }
            Ok(())
        }
    }

    macro_rules! say {
        ($($argument:tt)*) => {{
            let _ = writeln!(Console, $($argument)*);
        }};
    }

    // --- Failing.

    /// Where the machine is reset: the FADT's RESET_REG (a port) and
    /// RESET_VALUE, 0xCF9 and 6 until the FADT is read.
    static RESET_PORT: AtomicU16 = AtomicU16::new(0xcf9);
    static RESET_VALUE: AtomicU8 = AtomicU8::new(6);

    /// Says what failed and resets the machine; never returns.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        let _ = writeln!(Console, "{MARKER_FAIL}{what}");
        outb(RESET_PORT.load(Ordering::Relaxed), RESET_VALUE.load(Ordering::Relaxed));
        loop {
            // SAFETY: halts with interrupts off: the VMM stops the guest.
            unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
        }
    }

    macro_rules! check {
        ($condition:expr, $($what:tt)*) => {
            if !$condition {
                fail(format_args!($($what)*));
            }
        };
    }

    /// An exception (the stubs pass the vector, the error code and the
    /// CPU's frame): none is expected.
    #[unsafe(no_mangle)]
    extern "C" fn hostile_exception(frame: u64) -> ! {
        let vector = read_u64(frame);
        let error = read_u64(frame + 8);
        let rip = read_u64(frame + 16);
        fail(format_args!("exception {vector} at rip {rip:#x}, error code {error:#x}"))
    }

    fn load_idt() {
        let cs: u16;
        // SAFETY: reads CS.
        unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) }
        let interrupts = core::ptr::addr_of!(interrupt_stubs) as u64;
        for vector in 0..256_u64 {
            let handler = match usize::try_from(vector) {
                // SAFETY: the table the assembly defines, read-only.
                Ok(exception @ 0..32) => unsafe { exception_stubs[exception] },
                _ => interrupts + 16 * vector,
            };
            let gate = IDT_ADDRESS + vector * 16;
            let low = (handler & 0xffff) | u64::from(cs) << 16 | 0x8e_u64 << 40 | ((handler >> 16) & 0xffff) << 48;
            write_u64(gate, low);
            write_u64(gate + 8, handler >> 32);
        }
        let descriptor: [u16; 5] = [256 * 16 - 1, IDT_ADDRESS as u16, (IDT_ADDRESS >> 16) as u16, 0, 0];
        // SAFETY: the IDT just written, of 32 gates into this image's
        // stubs; `descriptor` is read by LIDT only.
        unsafe { asm!("lidt [{0}]", in(reg) descriptor.as_ptr(), options(readonly, nostack, preserves_flags)) }
    }

    // --- What the boot path gives: boot_params, the command line, ACPI.

    /// `boot_params` fields (the boot protocol's offsets).
    const ACPI_RSDP_ADDR: u64 = 0x070;
    const EXT_CMD_LINE_PTR: u64 = 0x0c8;
    const CMD_LINE_PTR: u64 = 0x228;

    /// What the ACPI tables say this guest needs.
    struct Platform {
        pm1_event: u16,
        pm1_control: u16,
        pm_timer: u16,
        virtio: u64,
    }

    /// The command line's bytes, up to its NUL (at most 2 KiB).
    fn command_line(boot_params: u64, buffer: &mut [u8; 2048]) -> &[u8] {
        let address =
            u64::from(read_u32(boot_params + CMD_LINE_PTR)) | u64::from(read_u32(boot_params + EXT_CMD_LINE_PTR)) << 32;
        let mut length = 0;
        while length < buffer.len() {
            let byte = read_u8(address + length as u64);
            if byte == 0 {
                break;
            }
            buffer[length] = byte;
            length += 1;
        }
        &buffer[..length]
    }

    /// Finds the FADT and DSDT through the RSDP `boot_params` names, and in
    /// them the PM blocks, the reset register and the first virtio-mmio
    /// device (`LNRO0005`, its `Memory32Fixed` window).
    fn read_acpi(boot_params: u64) -> Platform {
        let rsdp = read_u64(boot_params + ACPI_RSDP_ADDR);
        check!(read_u64(rsdp) == u64::from_le_bytes(*b"RSD PTR "), "no RSDP at {rsdp:#x}");
        let xsdt = read_u64(rsdp + 24);
        check!(read_u32(xsdt) == u32::from_le_bytes(*b"XSDT"), "no XSDT at {xsdt:#x}");
        let entries = (u64::from(read_u32(xsdt + 4)).saturating_sub(36) / 8).min(32);
        let mut fadt = None;
        for index in 0..entries {
            let table = read_u64(xsdt + 36 + 8 * index);
            if read_u32(table) == u32::from_le_bytes(*b"FACP") {
                fadt = Some(table);
            }
        }
        let Some(fadt) = fadt else { fail(format_args!("no FADT in the XSDT")) };
        let pm1_event = read_u32(fadt + 56) as u16;
        let pm1_control = read_u32(fadt + 64) as u16;
        let pm_timer = read_u32(fadt + 76) as u16;
        check!(pm1_event != 0 && pm1_control != 0, "no PM1a blocks in the FADT");
        // RESET_REG: a byte in system I/O space.
        if read_u8(fadt + 116) == 1 {
            RESET_PORT.store(read_u64(fadt + 120) as u16, Ordering::Relaxed);
            RESET_VALUE.store(read_u8(fadt + 128), Ordering::Relaxed);
        }
        let dsdt = read_u64(fadt + 140);
        check!(read_u32(dsdt) == u32::from_le_bytes(*b"DSDT"), "no DSDT at {dsdt:#x}");
        let dsdt_end = dsdt + u64::from(read_u32(dsdt + 4)).min(0x1_0000);
        let found = |from: u64, pattern: &[u8]| {
            (from..dsdt_end.saturating_sub(pattern.len() as u64))
                .find(|at| pattern.iter().enumerate().all(|(index, byte)| read_u8(at + index as u64) == *byte))
        };
        let Some(device) = found(dsdt, b"LNRO0005") else { fail(format_args!("no LNRO0005 device in the DSDT")) };
        // Memory32Fixed: 0x86, length 9, then the flags, base and length.
        let Some(window) = found(device, &[0x86, 0x09, 0x00]) else {
            fail(format_args!("no Memory32Fixed window after LNRO0005"))
        };
        Platform { pm1_event, pm1_control, pm_timer, virtio: u64::from(read_u32(window + 4)) }
    }

    // --- The random phase.

    /// A line every this many rounds, to show how far a run got.
    const PROGRESS_ROUNDS: u32 = 250;

    /// The local APIC's and I/O APIC's pages.
    const LOCAL_APIC: u64 = 0xfee0_0000;
    const IO_APIC: u64 = 0xfec0_0000;

    #[derive(Default)]
    struct RandomCounts {
        mmio_writes: u64,
        mmio_reads: u64,
        port_writes: u64,
        port_reads: u64,
        windows: u64,
        sources: u64,
    }

    fn random_phase(prng: &mut Prng, rounds: u32, platform: &Platform) -> RandomCounts {
        let pm_ports = [
            (platform.pm1_event, platform.pm1_event + 3),
            (platform.pm1_control, platform.pm1_control + 1),
            (platform.pm_timer, platform.pm_timer + 3),
        ];
        let mut counts = RandomCounts::default();
        for round in 0..rounds {
            if round % PROGRESS_ROUNDS == 0 && round != 0 {
                say!("HOSTILE-PC: round {round}");
            }
            for _ in 0..ACCESSES_PER_ROUND {
                for (page, base) in [
                    (MmioPage::LocalApic, LOCAL_APIC),
                    (MmioPage::IoApic, IO_APIC),
                    (MmioPage::Virtio, platform.virtio),
                ] {
                    let access = hostile_pc::random_mmio_access(prng, page);
                    let address = base + u64::from(access.offset);
                    match access.write {
                        Some(value) => {
                            mmio_write(address, access.width, value);
                            counts.mmio_writes += 1;
                        }
                        None => {
                            mmio_read(address, access.width);
                            counts.mmio_reads += 1;
                        }
                    }
                }
                let access = hostile_pc::random_port_access(prng, &pm_ports, platform.pm1_control);
                match (access.write, access.width) {
                    (Some(value), 1) => outb(access.port, value as u8),
                    (Some(value), 2) => outw(access.port, value as u16),
                    (Some(value), _) => outl(access.port, value),
                    (None, 1) => {
                        let _ = inb(access.port);
                    }
                    (None, 2) => {
                        let _ = inw(access.port);
                    }
                    (None, _) => {
                        let _ = inl(access.port);
                    }
                }
                if access.write.is_some() {
                    counts.port_writes += 1;
                } else {
                    counts.port_reads += 1;
                }
            }
            for _ in 0..SOURCES_PER_ROUND {
                let (writes, count) = hostile_pc::random_interrupt_source(prng, platform.pm1_event);
                for write in writes.iter().take(count) {
                    match write.target {
                        Target::Port => outb(write.offset, write.value as u8),
                        Target::Page(MmioPage::LocalApic) => {
                            mmio_write(LOCAL_APIC + u64::from(write.offset), 4, u64::from(write.value));
                        }
                        Target::Page(_) => mmio_write(IO_APIC + u64::from(write.offset), 4, u64::from(write.value)),
                    }
                }
                counts.sources += 1;
            }
            // SAFETY: the window's loop and the interrupt handlers keep
            // every register but RDI and the flags (caller-saved), and
            // touch only their own variables, the local APIC and the
            // 8259As.
            unsafe { interrupt_window(WINDOW_ITERATIONS, WINDOW_BUDGET) };
            counts.windows += 1;
        }
        counts
    }

    // --- virtio-mmio and virtio-blk (docs/DEVICES.md).

    mod reg {
        pub(super) const MAGIC: u64 = 0x000;
        pub(super) const VERSION: u64 = 0x004;
        pub(super) const DEVICE_ID: u64 = 0x008;
        pub(super) const DEVICE_FEATURES: u64 = 0x010;
        pub(super) const DEVICE_FEATURES_SEL: u64 = 0x014;
        pub(super) const DRIVER_FEATURES: u64 = 0x020;
        pub(super) const DRIVER_FEATURES_SEL: u64 = 0x024;
        pub(super) const QUEUE_SEL: u64 = 0x030;
        pub(super) const QUEUE_NUM_MAX: u64 = 0x034;
        pub(super) const QUEUE_NUM: u64 = 0x038;
        pub(super) const QUEUE_READY: u64 = 0x044;
        pub(super) const QUEUE_NOTIFY: u64 = 0x050;
        pub(super) const INTERRUPT_STATUS: u64 = 0x060;
        pub(super) const INTERRUPT_ACK: u64 = 0x064;
        pub(super) const STATUS: u64 = 0x070;
        pub(super) const QUEUE_DESC_LOW: u64 = 0x080;
        pub(super) const QUEUE_DESC_HIGH: u64 = 0x084;
        pub(super) const QUEUE_DRIVER_LOW: u64 = 0x090;
        pub(super) const QUEUE_DRIVER_HIGH: u64 = 0x094;
        pub(super) const QUEUE_DEVICE_LOW: u64 = 0x0a0;
        pub(super) const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
        pub(super) const CAPACITY_LOW: u64 = 0x100;
        pub(super) const CAPACITY_HIGH: u64 = 0x104;
    }

    const MAGIC: u32 = 0x7472_6976;
    const STATUS_ACKNOWLEDGE: u32 = 1;
    const STATUS_DRIVER: u32 = 2;
    const STATUS_DRIVER_OK: u32 = 4;
    const STATUS_FEATURES_OK: u32 = 8;
    const STATUS_NEEDS_RESET: u32 = 64;
    const INTERRUPT_USED: u32 = 1;
    const INTERRUPT_CONFIG: u32 = 2;
    const FEATURE_INDIRECT: u32 = 1 << 28;
    /// VIRTIO_F_VERSION_1, bit 32: bit 0 of feature word 1.
    const FEATURE_VERSION_1_HIGH: u32 = 1;

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;

    const REQUEST_IN: u32 = 0;
    const REQUEST_OUT: u32 = 1;
    const REQUEST_FLUSH: u32 = 4;
    const REQUEST_GET_ID: u32 = 8;
    const BLK_OK: u8 = 0;
    const BLK_IOERR: u8 = 1;
    const BLK_UNSUPP: u8 = 2;

    /// The queue size this driver uses.
    const QUEUE_SIZE: u16 = 8;
    /// The structures in the buffers' area.
    const DESCRIPTORS: u64 = DMA_BASE;
    const AVAILABLE: u64 = DMA_BASE + 0x1000;
    const USED: u64 = DMA_BASE + 0x2000;
    const HEADER: u64 = DMA_BASE + 0x3000;
    const DATA: u64 = DMA_BASE + 0x4000;
    const STATUS_BYTE: u64 = DMA_BASE + 0x5000;
    const PATTERN: u64 = DMA_BASE + 0x6000;
    /// What the status byte holds before a request: a device that writes
    /// no status leaves it.
    const UNTOUCHED: u8 = 0xee;
    /// Guest-physical addresses that are not RAM: beyond the guest's RAM
    /// (manifests give this guest less than 1 GiB), and device memory.
    const OUTSIDE_RAM: u64 = 0x4000_0000;
    const SECTOR: u32 = 512;

    /// One descriptor: address, length, flags, next.
    type Descriptor = (u64, u32, u16, u16);

    /// What a case expects the device to do.
    enum Expect {
        /// One used element per head, each with this length, and the
        /// status byte (`UNTOUCHED` if none may be written).
        Used { length: u32, status: u8 },
        /// The device sets DEVICE_NEEDS_RESET and returns nothing.
        NeedsReset,
        /// Nothing: the notify is ignored.
        Nothing,
    }

    struct Driver {
        base: u64,
        next_available: u16,
        used_seen: u16,
        capacity: u64,
        cases: u32,
    }

    impl Driver {
        fn read(&self, offset: u64) -> u32 {
            mmio_read(self.base + offset, 4) as u32
        }

        fn write(&self, offset: u64, value: u32) {
            mmio_write(self.base + offset, 4, u64::from(value));
        }

        /// MagicValue and Version still read as a virtio-mmio device's.
        fn check_answers(&self, after: &str) {
            let (magic, version) = (self.read(reg::MAGIC), self.read(reg::VERSION));
            check!(
                magic == MAGIC && version == 2,
                "after {after}: magic {magic:#x}, version {version}: the device is gone"
            );
        }

        /// Status 0, then ACKNOWLEDGE and DRIVER; the offered features.
        fn begin(&self) -> (u32, u32) {
            self.write(reg::STATUS, 0);
            check!(self.read(reg::STATUS) == 0, "the status after a reset: {:#x}", self.read(reg::STATUS));
            check!(self.read(reg::DEVICE_ID) == 2, "not a block device: {}", self.read(reg::DEVICE_ID));
            self.write(reg::STATUS, STATUS_ACKNOWLEDGE);
            self.write(reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
            self.write(reg::DEVICE_FEATURES_SEL, 0);
            let low = self.read(reg::DEVICE_FEATURES);
            self.write(reg::DEVICE_FEATURES_SEL, 1);
            let high = self.read(reg::DEVICE_FEATURES);
            (low, high)
        }

        /// Features, FEATURES_OK, queue 0 of `QUEUE_SIZE` (zeroed rings),
        /// DRIVER_OK: the spec's initialisation, as Linux does it.
        fn initialise(&mut self) {
            let (low, high) = self.begin();
            check!(high & FEATURE_VERSION_1_HIGH != 0, "VIRTIO_F_VERSION_1 not offered");
            check!(low & FEATURE_INDIRECT == 0, "indirect descriptors offered, which the device does not do");
            self.write(reg::DRIVER_FEATURES_SEL, 0);
            self.write(reg::DRIVER_FEATURES, low);
            self.write(reg::DRIVER_FEATURES_SEL, 1);
            self.write(reg::DRIVER_FEATURES, FEATURE_VERSION_1_HIGH);
            let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
            self.write(reg::STATUS, status);
            check!(self.read(reg::STATUS) == status, "FEATURES_OK refused: status {:#x}", self.read(reg::STATUS));
            for offset in (0..0x3000).step_by(8) {
                write_u64(DMA_BASE + offset, 0);
            }
            self.write(reg::QUEUE_SEL, 0);
            check!(self.read(reg::QUEUE_NUM_MAX) >= u32::from(QUEUE_SIZE), "queue 0 too small");
            self.write(reg::QUEUE_NUM, u32::from(QUEUE_SIZE));
            self.set_queue_addresses(DESCRIPTORS, AVAILABLE, USED);
            self.write(reg::QUEUE_READY, 1);
            check!(self.read(reg::QUEUE_READY) == 1, "queue 0 refused: status {:#x}", self.read(reg::STATUS));
            self.write(reg::STATUS, status | STATUS_DRIVER_OK);
            check!(self.read(reg::STATUS) == status | STATUS_DRIVER_OK, "DRIVER_OK refused");
            self.capacity = u64::from(self.read(reg::CAPACITY_LOW)) | u64::from(self.read(reg::CAPACITY_HIGH)) << 32;
            check!(self.capacity > 16, "a disk of {} sectors", self.capacity);
            self.next_available = 0;
            self.used_seen = 0;
        }

        fn set_queue_addresses(&self, descriptors: u64, available: u64, used: u64) {
            for (register, value) in [
                (reg::QUEUE_DESC_LOW, descriptors),
                (reg::QUEUE_DESC_HIGH, descriptors >> 32),
                (reg::QUEUE_DRIVER_LOW, available),
                (reg::QUEUE_DRIVER_HIGH, available >> 32),
                (reg::QUEUE_DEVICE_LOW, used),
                (reg::QUEUE_DEVICE_HIGH, used >> 32),
            ] {
                self.write(register, value as u32);
            }
        }

        /// Writes `descriptors` into the table from entry 0.
        fn table(descriptors: &[Descriptor]) {
            for (index, (address, length, flags, next)) in descriptors.iter().enumerate() {
                let entry = DESCRIPTORS + 16 * index as u64;
                write_u64(entry, *address);
                write_u32(entry + 8, *length);
                write_u16(entry + 12, *flags);
                write_u16(entry + 14, *next);
            }
        }

        /// A request header at `HEADER`.
        fn header(request: u32, sector: u64) {
            write_u32(HEADER, request);
            write_u32(HEADER + 4, 0);
            write_u64(HEADER + 8, sector);
        }

        /// Makes `heads` available, moves the available index on by
        /// `advance` (their count for an honest driver), notifies queue
        /// `queue`, then checks that the device answers and did what
        /// `expect` says.
        fn post(&mut self, name: &str, heads: &[u16], advance: u16, queue: u32, expect: Expect) {
            write_u8(STATUS_BYTE, UNTOUCHED);
            for (index, head) in heads.iter().enumerate() {
                let slot = u64::from(self.next_available.wrapping_add(index as u16) % QUEUE_SIZE);
                write_u16(AVAILABLE + 4 + 2 * slot, *head);
            }
            self.next_available = self.next_available.wrapping_add(advance);
            write_u16(AVAILABLE + 2, self.next_available);
            self.write(reg::QUEUE_NOTIFY, queue);
            self.check_answers(name);
            let used = read_u16(USED + 2);
            let status = self.read(reg::STATUS);
            let interrupt = self.read(reg::INTERRUPT_STATUS);
            match expect {
                Expect::Used { length, status: expected } => {
                    let count = used.wrapping_sub(self.used_seen);
                    check!(
                        usize::from(count) == heads.len(),
                        "{name}: {count} used elements for {} chains",
                        heads.len()
                    );
                    for head in heads {
                        let slot = u64::from(self.used_seen % QUEUE_SIZE);
                        let (id, written) = (read_u32(USED + 4 + 8 * slot), read_u32(USED + 8 + 8 * slot));
                        check!(id == u32::from(*head), "{name}: used id {id}, not head {head}");
                        check!(written == length, "{name}: used length {written}, documented {length}");
                        self.used_seen = self.used_seen.wrapping_add(1);
                    }
                    let byte = read_u8(STATUS_BYTE);
                    check!(byte == expected, "{name}: status byte {byte:#x}, documented {expected:#x}");
                    check!(status & STATUS_NEEDS_RESET == 0, "{name}: DEVICE_NEEDS_RESET set");
                    check!(interrupt == INTERRUPT_USED, "{name}: interrupt status {interrupt:#x}, not 1");
                }
                Expect::NeedsReset => {
                    check!(used == self.used_seen, "{name}: the used index moved to {used}");
                    check!(status & STATUS_NEEDS_RESET != 0, "{name}: no DEVICE_NEEDS_RESET (status {status:#x})");
                    check!(interrupt & INTERRUPT_CONFIG != 0, "{name}: no configuration interrupt ({interrupt:#x})");
                    check!(read_u8(STATUS_BYTE) == UNTOUCHED, "{name}: a status byte was written");
                }
                Expect::Nothing => {
                    check!(used == self.used_seen, "{name}: the used index moved to {used}");
                    check!(read_u8(STATUS_BYTE) == UNTOUCHED, "{name}: a status byte was written");
                }
            }
            self.write(reg::INTERRUPT_ACK, interrupt);
            check!(self.read(reg::INTERRUPT_STATUS) == 0, "{name}: the interrupt status did not clear");
            self.cases += 1;
            say!("{MARKER_CASE_OK}{name}");
        }

        /// A one-request case: header, `middle` descriptors, a status byte.
        fn request(&mut self, name: &str, request: u32, sector: u64, middle: &[Descriptor], expect: Expect) {
            Self::header(request, sector);
            let mut chain = [(0, 0, 0, 0); 8];
            chain[0] = (HEADER, 16, NEXT, 1);
            let mut count = 1;
            for (address, length, flags) in middle.iter().map(|(address, length, flags, _)| (address, length, flags)) {
                chain[count] = (*address, *length, *flags | NEXT, count as u16 + 1);
                count += 1;
            }
            chain[count] = (STATUS_BYTE, 1, WRITE, 0);
            Self::table(&chain[..=count]);
            self.post(name, &[0], 1, 0, expect);
        }
    }

    /// Every malformed-input case, each checked against docs/DEVICES.md.
    fn virtio_phase(base: u64) -> Driver {
        let mut driver = Driver { base, next_available: 0, used_seen: 0, capacity: 0, cases: 0 };
        driver.check_answers("the random phase");

        // Feature negotiation: asking for indirect descriptors, which are
        // not offered, makes FEATURES_OK fail to stick.
        let (low, _) = driver.begin();
        driver.write(reg::DRIVER_FEATURES_SEL, 0);
        driver.write(reg::DRIVER_FEATURES, low | FEATURE_INDIRECT);
        driver.write(reg::DRIVER_FEATURES_SEL, 1);
        driver.write(reg::DRIVER_FEATURES, FEATURE_VERSION_1_HIGH);
        driver.write(reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        let status = driver.read(reg::STATUS);
        check!(status & STATUS_FEATURES_OK == 0, "FEATURES_OK with indirect descriptors accepted: {status:#x}");
        driver.cases += 1;
        say!("{MARKER_CASE_OK}features with indirect descriptors refused");

        // Queue setup: a table outside RAM, a size not a power of two.
        for (name, size, descriptors) in [
            ("descriptor table outside RAM refused", QUEUE_SIZE, OUTSIDE_RAM),
            ("descriptor table in the local APIC refused", QUEUE_SIZE, LOCAL_APIC),
            ("queue size 7 refused", 7, DESCRIPTORS),
        ] {
            let _ = driver.begin();
            driver.write(reg::DRIVER_FEATURES_SEL, 1);
            driver.write(reg::DRIVER_FEATURES, FEATURE_VERSION_1_HIGH);
            driver.write(reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
            driver.write(reg::QUEUE_SEL, 0);
            driver.write(reg::QUEUE_NUM, u32::from(size));
            driver.set_queue_addresses(descriptors, AVAILABLE, USED);
            driver.write(reg::QUEUE_READY, 1);
            driver.check_answers(name);
            check!(driver.read(reg::QUEUE_READY) == 0, "{name}: the queue became ready");
            let status = driver.read(reg::STATUS);
            check!(status & STATUS_NEEDS_RESET != 0, "{name}: no DEVICE_NEEDS_RESET ({status:#x})");
            driver.cases += 1;
            say!("{MARKER_CASE_OK}{name}");
        }

        driver.initialise();
        let data_in = (DATA, 20, WRITE, 0);
        driver.request("get id", REQUEST_GET_ID, 0, &[data_in], Expect::Used { length: 21, status: BLK_OK });
        check!(read_u8(DATA) != 0, "get id: no ID");

        // Requests the device refuses with a status (docs/DEVICES.md,
        // "Block device").
        driver.request("bad request type", 0x1234_5678, 0, &[], Expect::Used { length: 1, status: BLK_UNSUPP });
        let capacity = driver.capacity;
        let sector = (DATA, SECTOR, WRITE, 0);
        driver.request(
            "read past the disk's end",
            REQUEST_IN,
            capacity,
            &[sector],
            Expect::Used { length: 0, status: BLK_IOERR },
        );
        driver.request(
            "read of a sector number that wraps",
            REQUEST_IN,
            u64::MAX,
            &[sector],
            Expect::Used { length: 0, status: BLK_IOERR },
        );
        driver.request(
            "write past the disk's end",
            REQUEST_OUT,
            capacity - 1,
            &[(DATA, 2 * SECTOR, 0, 0)],
            Expect::Used { length: 1, status: BLK_IOERR },
        );
        driver.request(
            "read of part of a sector",
            REQUEST_IN,
            0,
            &[(DATA, 100, WRITE, 0)],
            Expect::Used { length: 0, status: BLK_IOERR },
        );
        driver.request(
            "read into memory outside RAM",
            REQUEST_IN,
            0,
            &[(OUTSIDE_RAM, SECTOR, WRITE, 0)],
            Expect::Used { length: 0, status: BLK_IOERR },
        );
        driver.request(
            "read into the local APIC",
            REQUEST_IN,
            0,
            &[(LOCAL_APIC, SECTOR, WRITE, 0)],
            Expect::Used { length: 0, status: BLK_IOERR },
        );
        driver.request(
            "write from the virtio window",
            REQUEST_OUT,
            0,
            &[(base, SECTOR, 0, 0)],
            Expect::Used { length: 1, status: BLK_IOERR },
        );
        driver.request(
            "read in the wrong direction",
            REQUEST_IN,
            0,
            &[(DATA, SECTOR, 0, 0)],
            Expect::Used { length: 1, status: BLK_IOERR },
        );

        // A header in device memory: unreadable, an I/O error.
        Driver::table(&[(IO_APIC, 16, NEXT, 1), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("header in the I/O APIC", &[0], 1, 0, Expect::Used { length: 1, status: BLK_IOERR });
        // A status byte in device memory: nothing can be written.
        Driver::header(REQUEST_FLUSH, 0);
        Driver::table(&[(HEADER, 16, NEXT, 1), (LOCAL_APIC + 0x80, 1, WRITE, 0)]);
        driver.post("status byte in the local APIC", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });

        // Lengths 0 and 2^32 - 1.
        Driver::header(REQUEST_GET_ID, 0);
        Driver::table(&[
            (HEADER, 0, NEXT, 1),
            (HEADER, 16, NEXT, 2),
            (DATA, 0, WRITE | NEXT, 3),
            (DATA, 20, WRITE | NEXT, 4),
            (STATUS_BYTE, 1, WRITE, 0),
        ]);
        driver.post("zero-length descriptors", &[0], 1, 0, Expect::Used { length: 21, status: BLK_OK });
        Driver::table(&[(HEADER, 16, NEXT, 1), (STATUS_BYTE, 0, WRITE, 0)]);
        driver.post("no writable byte", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        Driver::table(&[(0, u32::MAX, 0, 0)]);
        driver.post(
            "4 GiB - 1 readable bytes, nothing writable",
            &[0],
            1,
            0,
            Expect::Used { length: 0, status: UNTOUCHED },
        );
        Driver::header(REQUEST_IN, 0);
        Driver::table(&[(HEADER, 16, NEXT, 1), (DATA, u32::MAX, WRITE | NEXT, 2), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("a chain of more than 4 GiB - 1 bytes", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        Driver::table(&[(u64::MAX - 7, 16, NEXT, 1), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("a buffer wrapping past 2^64", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });

        // Malformed chains: refused, returned with length 0, nothing
        // written.
        let refused = Expect::Used { length: 0, status: UNTOUCHED };
        Driver::header(REQUEST_IN, 0);
        Driver::table(&[(HEADER, 16, NEXT, 0)]);
        driver.post("a descriptor whose next is itself", &[0], 1, 0, refused);
        Driver::table(&[(HEADER, 16, NEXT, 1), (DATA, SECTOR, NEXT, 0)]);
        driver.post("a two-descriptor loop", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        let mut ring = [(0, 0, 0, 0); QUEUE_SIZE as usize];
        for (index, descriptor) in ring.iter_mut().enumerate() {
            // All device-readable, so that only the length stops the walk.
            *descriptor = (DATA, SECTOR, NEXT, (index as u16 + 1) % QUEUE_SIZE);
        }
        ring[0] = (HEADER, 16, NEXT, 1);
        Driver::table(&ring);
        driver.post("a chain longer than the queue", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        Driver::table(&[(HEADER, 16, NEXT, QUEUE_SIZE)]);
        driver.post("a next past the table", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        Driver::table(&[(HEADER, 16, NEXT, u16::MAX)]);
        driver.post("a next of 65535", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        driver.post("a head past the table", &[200], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        Driver::table(&[(HEADER, 16, INDIRECT | NEXT, 1), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("an indirect descriptor", &[0], 1, 0, Expect::Used { length: 0, status: UNTOUCHED });
        Driver::table(&[(STATUS_BYTE, 1, WRITE | NEXT, 1), (HEADER, 16, 0, 0)]);
        driver.post(
            "a readable descriptor after a writable one",
            &[0],
            1,
            0,
            Expect::Used { length: 0, status: UNTOUCHED },
        );
        // A whole ring of loops in one notify: each returned.
        for index in 0..QUEUE_SIZE {
            ring[usize::from(index)] = (HEADER, 16, NEXT, index);
        }
        Driver::table(&ring);
        let heads: [u16; QUEUE_SIZE as usize] = core::array::from_fn(|index| index as u16);
        driver.post(
            "a full ring of looping chains",
            &heads,
            QUEUE_SIZE,
            0,
            Expect::Used { length: 0, status: UNTOUCHED },
        );

        // Notifies the device ignores, then the one it serves.
        Driver::header(REQUEST_GET_ID, 0);
        Driver::table(&[(HEADER, 16, NEXT, 1), (DATA, 20, WRITE | NEXT, 2), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("a notify of a missing queue", &[0], 1, 1, Expect::Nothing);
        driver.next_available = driver.next_available.wrapping_sub(1);
        driver.post("a notify of queue 65535", &[0], 1, 0xffff, Expect::Nothing);
        driver.next_available = driver.next_available.wrapping_sub(1);
        driver.post("the same request on queue 0", &[0], 1, 0, Expect::Used { length: 21, status: BLK_OK });
        // The queue's registers do not change while it is ready.
        driver.set_queue_addresses(OUTSIDE_RAM, OUTSIDE_RAM, OUTSIDE_RAM);
        driver.write(reg::QUEUE_NUM, 1);
        driver.post("queue registers written while ready", &[0], 1, 0, Expect::Used { length: 21, status: BLK_OK });

        // An available index more than the queue size ahead: the device
        // needs a reset and serves nothing until it has one.
        driver.post("an available index jump", &[0], QUEUE_SIZE + 1, 0, Expect::NeedsReset);
        driver.post("a request after the jump", &[0], 1, 0, Expect::Nothing);
        driver
    }

    /// A sector written and read back after a reset: the device still works.
    fn final_check(driver: &mut Driver) {
        driver.initialise();
        let sector = driver.capacity - 3;
        for offset in 0..u64::from(SECTOR) {
            write_u8(PATTERN + offset, (offset as u8) ^ 0x5a ^ (offset >> 8) as u8);
        }
        Driver::header(REQUEST_OUT, sector);
        Driver::table(&[(HEADER, 16, NEXT, 1), (PATTERN, SECTOR, NEXT, 2), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("a sector written after a reset", &[0], 1, 0, Expect::Used { length: 1, status: BLK_OK });
        for offset in (0..u64::from(SECTOR)).step_by(8) {
            write_u64(DATA + offset, 0);
        }
        Driver::header(REQUEST_IN, sector);
        Driver::table(&[(HEADER, 16, NEXT, 1), (DATA, SECTOR, WRITE | NEXT, 2), (STATUS_BYTE, 1, WRITE, 0)]);
        driver.post("the sector read back", &[0], 1, 0, Expect::Used { length: SECTOR + 1, status: BLK_OK });
        for offset in (0..u64::from(SECTOR)).step_by(8) {
            check!(read_u64(DATA + offset) == read_u64(PATTERN + offset), "the sector read back differs at {offset}");
        }
    }

    /// The 64-bit entry's Rust part: `boot_params` from RSI.
    #[unsafe(no_mangle)]
    extern "C" fn hostile_main(boot_params: u64) -> ! {
        Console::init();
        load_idt();
        let mut buffer = [0_u8; 2048];
        let options = hostile_pc::parse_command_line(command_line(boot_params, &mut buffer));
        say!("{MARKER_START} seed={:#x} rounds={}", options.seed, options.rounds);
        let platform = read_acpi(boot_params);
        say!(
            "HOSTILE-PC: PM1a event {:#x}, control {:#x}, timer {:#x}, virtio-mmio at {:#x}",
            platform.pm1_event,
            platform.pm1_control,
            platform.pm_timer,
            platform.virtio
        );
        let mut prng = Prng::new(options.seed);
        let counts = random_phase(&mut prng, options.rounds, &platform);
        // SAFETY: written only by the interrupt handler, and interrupts
        // are off now.
        let (taken, seen) = unsafe { (interrupts_taken, vectors_seen) };
        say!(
            "{MARKER_RANDOM_DONE}: {} MMIO writes, {} MMIO reads, {} port writes, {} port reads",
            counts.mmio_writes,
            counts.mmio_reads,
            counts.port_writes,
            counts.port_reads,
        );
        say!(
            "HOSTILE-PC: {} interrupt sources programmed; {} interrupt windows took {} interrupts of {} vectors",
            counts.sources,
            counts.windows,
            taken,
            seen.iter().map(|word| word.count_ones()).sum::<u32>()
        );
        let mut driver = virtio_phase(platform.virtio);
        final_check(&mut driver);
        check!(driver.cases == VIRTIO_CASES, "{} virtio cases ran, not {VIRTIO_CASES}", driver.cases);
        say!(
            "{MARKER_DONE} seed={:#x} rounds={} random accesses={} virtio cases={}",
            options.seed,
            options.rounds,
            counts.mmio_writes + counts.mmio_reads + counts.port_writes + counts.port_reads,
            driver.cases
        );
        // ACPI S5: SLP_TYP 5 (the DSDT's _S5) with SLP_EN.
        outw(platform.pm1_control, 5 << 10 | SLP_EN);
        fail(format_args!("still running after the power off"))
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
