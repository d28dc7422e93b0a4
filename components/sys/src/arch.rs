//! The `syscall` instruction with the register ABI of `docs/abi.md`
//! ("Registers"), and the two debugging calls. Bare metal only; the host
//! build has stubs that refuse every call, so that the code above them
//! compiles and is tested there.

/// What goes into the registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCall {
    /// RAX: the system-call number.
    pub number: u64,
    /// RDI: the capability address.
    pub cptr: u64,
    /// RSI: the message info word.
    pub info: u64,
    /// RDX: the reply object's capability address.
    pub reply: u64,
    /// R10, R8, R9, R15: message words 0..3.
    pub words: [u64; 4],
}

/// What comes back in the registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawReturn {
    /// RDI: the badge.
    pub badge: u64,
    /// RSI: the thread's message info word.
    pub info: u64,
    /// R10, R8, R9, R15: message words 0..3.
    pub words: [u64; 4],
}

/// The debugging call that prints the low byte of RDI.
pub const DEBUG_PUTCHAR: u64 = 0x100;
/// The debugging call that ends the calling thread with the code in RDI.
pub const THREAD_EXIT: u64 = 0x101;

/// Makes one system call.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[must_use]
pub fn syscall(call: &RawCall) -> RawReturn {
    let (badge, info, word0, word1, word2, word3);
    // SAFETY: `syscall` enters the kernel, which reads these registers as
    // numbers and writes back RDI, RSI and the four message registers;
    // SYSCALL itself overwrites RCX and R11, and RAX and RDX are declared
    // clobbered too. Every other register keeps its value and the stack is
    // not touched (`nostack`). Memory may change only in the IPC buffer,
    // which is never behind a Rust reference (`crate::ipc_buffer`), so the
    // compiler's assumption that memory may be read and written is enough.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call.number => _,
            inlateout("rdi") call.cptr => badge,
            inlateout("rsi") call.info => info,
            inlateout("rdx") call.reply => _,
            inlateout("r10") call.words[0] => word0,
            inlateout("r8") call.words[1] => word1,
            inlateout("r9") call.words[2] => word2,
            inlateout("r15") call.words[3] => word3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    RawReturn { badge, info, words: [word0, word1, word2, word3] }
}

/// The host has no kernel: every call is refused as an unknown system
/// call (InvalidArgument as the label).
#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
#[must_use]
pub fn syscall(_call: &RawCall) -> RawReturn {
    RawReturn { badge: 0, info: 1 << 12, words: [0; 4] }
}

/// Prints one byte on the kernel's debug console.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn debug_putchar(byte: u8) {
    // SAFETY: DEBUG_PUTCHAR reads RDI's low byte and returns with RAX 0;
    // SYSCALL overwrites RCX and R11. No memory is touched.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") DEBUG_PUTCHAR => _,
            in("rdi") u64::from(byte),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, nomem),
        );
    }
}

/// The host has no debug console: the byte is dropped.
#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
pub fn debug_putchar(_byte: u8) {}

/// Ends the calling thread with `code` (0 for success).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn exit(code: u64) -> ! {
    // SAFETY: THREAD_EXIT ends the thread and does not return. Should a
    // kernel without the debugging calls return anyway, `ud2` faults, which
    // ends the thread too; either way nothing after runs.
    unsafe {
        core::arch::asm!(
            "syscall",
            "ud2",
            in("rax") THREAD_EXIT,
            in("rdi") code,
            options(nostack, nomem, noreturn),
        );
    }
}

/// The host has no threads to end: a panic names the code.
#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
pub fn exit(code: u64) -> ! {
    panic!("bulkhead-sys: exit({code}) outside Bulkhead")
}

/// The time-stamp counter (RDTSC): ticks at the machine's TSC rate, which
/// a protection domain is not told; under QEMU's `-icount shift=0` one tick
/// per instruction. For measuring, not for telling the time.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
#[must_use]
pub fn read_tsc() -> u64 {
    // SAFETY: RDTSC reads a counter into EDX:EAX and touches no memory;
    // the kernel leaves CR4.TSD clear, so ring 3 may execute it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The host build has no Bulkhead machine: the counter reads 0.
#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
#[must_use]
pub fn read_tsc() -> u64 {
    0
}
