//! The `syscall` instruction with the register ABI of `docs/abi.md`
//! ("Registers"), and the debugging calls. Bare metal only; the host
//! build has stubs that refuse every call, so that the code above them
//! compiles and is tested there.

use bulkhead_components::Error;
use bulkhead_components::kernel::thread_name_words;

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

/// The debugging call that names a thread (RDI a TCB capability address,
/// RSI, RDX, R10, R8 the name's 32 bytes): the result code comes back as
/// the label of the info word in RSI.
pub const DEBUG_NAME_THREAD: u64 = 0x103;

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

/// Names the thread whose TCB capability `tcb` addresses, for the
/// kernel's dumps: the first 32 bytes of `name` (`DEBUG_NAME_THREAD`).
///
/// # Errors
///
/// The kernel's code: [`Error::FailedLookup`] when `tcb` names no
/// capability, [`Error::InvalidCapability`] when it is not a TCB
/// capability.
pub fn name_thread(tcb: u64, name: &str) -> Result<(), Error> {
    name_thread_words(tcb, thread_name_words(name))
}

/// [`name_thread`] with the name already in its four words.
///
/// # Errors
///
/// As [`name_thread`].
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn name_thread_words(tcb: u64, name: [u64; 4]) -> Result<(), Error> {
    let info: u64;
    // SAFETY: DEBUG_NAME_THREAD reads RDI, RSI, RDX, R10 and R8 as numbers
    // and writes the result into RSI and RAX; SYSCALL overwrites RCX and
    // R11. The other argument registers are declared clobbered as well.
    // No memory of this thread is touched.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") DEBUG_NAME_THREAD => _,
            in("rdi") tcb,
            inlateout("rsi") name[0] => info,
            inlateout("rdx") name[1] => _,
            inlateout("r10") name[2] => _,
            inlateout("r8") name[3] => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, nomem),
        );
    }
    Error::check(bulkhead_components::kernel::MessageInfo::from_word(info).label)
}

/// The host has no kernel: refused as an unknown system call.
///
/// # Errors
///
/// Always [`Error::InvalidArgument`].
#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
pub fn name_thread_words(_tcb: u64, _name: [u64; 4]) -> Result<(), Error> {
    Err(Error::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debugging_calls_are_documented_with_their_numbers() {
        let abi = include_str!("../../../docs/abi.md").split_whitespace().collect::<Vec<_>>().join(" ");
        for (number, name) in
            [(DEBUG_PUTCHAR, "DEBUG_PUTCHAR"), (THREAD_EXIT, "THREAD_EXIT"), (DEBUG_NAME_THREAD, "DEBUG_NAME_THREAD")]
        {
            assert!(abi.contains(&format!("`{number:#x}` {name}")), "{name} ({number:#x}) in docs/abi.md");
        }
    }

    #[test]
    fn the_host_refuses_naming_as_an_unknown_call() {
        assert_eq!(name_thread(6, "loader"), Err(Error::InvalidArgument));
    }
}
