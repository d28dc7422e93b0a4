//! The guests: each binary's name, the lines it prints and how it ends,
//! for the VMM's tests to run each guest and compare its console with.
//!
//! `tests/images.rs` checks that every line listed here is in the built
//! guest, and that every whole line a guest can print with fixed text is
//! listed.

/// How a guest's run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A 32-bit OUT of this code to [`EXIT_PORT`](crate::EXIT_PORT).
    Exit(u32),
    /// A triple fault, which the VMM reports and stops the guest on.
    TripleFault,
}

/// One test guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guest {
    /// The binary's name (the ELF file under
    /// `x86_64-unknown-none/release/`).
    pub binary: &'static str,
    /// The lines it prints on the debug console (without the `'\n'`).
    /// For the guests that end with [`Ending::Exit`], exactly these, in
    /// this order, when every check passes. For `guest-hostile`, the
    /// lines with fixed text in the order it prints them; between them
    /// come the lines with values it read ([`HOSTILE_VALUE_LINES`]).
    pub lines: &'static [&'static str],
    /// How a passing run ends.
    pub ending: Ending,
}

/// 16-bit real mode. Check numbers (the exit code of a failure): 1 to 3,
/// an IN of 1, 2 and 4 bytes from [`UNCLAIMED_PORT`](crate::UNCLAIMED_PORT)
/// reads all ones; 4, CPUID leaf 1 has the hypervisor bit; 5, and no VMX;
/// 6, IA32_PAT reads back what WRMSR wrote (then the reset value is
/// written back); 7, the MMIO ID register through unreal mode (a 32-bit
/// address with a 67h prefix in 16-bit code: DS was loaded with a 4 GiB
/// limit in protected mode, then real mode came back); 8, a 4-byte
/// write and read of the scratch register.
pub const REAL: Guest = Guest {
    binary: "guest-real",
    lines: &[
        "real: debug console ok",
        "real: in al from an unclaimed port reads 0xff ok",
        "real: in ax from an unclaimed port reads 0xffff ok",
        "real: in eax from an unclaimed port reads 0xffffffff ok",
        "real: cpuid hypervisor bit ok",
        "real: cpuid vmx bit clear ok",
        "real: wrmsr/rdmsr ia32_pat round trip ok",
        "real: unreal mode with a 4 gib data segment ok",
        "real: mmio id register ok",
        "real: mmio scratch round trip ok",
        "real: all checks passed",
    ],
    ending: Ending::Exit(crate::EXIT_SUCCESS),
};

/// 32-bit protected mode, flat segments, then 32-bit paging (4 KiB pages:
/// the first 4 MiB identity-mapped, one page aliased, the MMIO page
/// uncached). Checks: 1 and 2, CPUID leaf 1; 3, the hypervisor signature
/// at leaf 0x4000_0000; 4, IA32_SYSENTER_CS round trip; 5, RDMSR
/// 0xC000_1234 raises #GP(0) at the RDMSR, caught by its IDT; 6, WRMSR of
/// IA32_FEATURE_CONTROL (0x3A) likewise; 7, the MMIO ID register without
/// paging; 8, a page aliased at 0x30_0000 shows the same bytes as its
/// identity mapping; 9 and 10, the MMIO ID register (MOV EAX, moffs32)
/// and the scratch register (a store of an immediate) through paging;
/// 11, RDMSR 0x1234_5678 raises #GP(0) with paging on.
pub const PROTECTED: Guest = Guest {
    binary: "guest-protected",
    lines: &[
        "protected: 32-bit protected mode ok",
        "protected: cpuid hypervisor bit ok",
        "protected: cpuid vmx bit clear ok",
        "protected: cpuid hypervisor signature present ok",
        "protected: wrmsr/rdmsr ia32_sysenter_cs round trip ok",
        "protected: rdmsr of an unknown msr raises #gp ok",
        "protected: wrmsr of ia32_feature_control raises #gp ok",
        "protected: mmio id register without paging ok",
        "protected: 32-bit paging with 4 kib pages ok",
        "protected: mmio id register through paging ok",
        "protected: mmio scratch round trip ok",
        "protected: rdmsr of a reserved msr raises #gp with paging ok",
        "protected: all checks passed",
    ],
    ending: Ending::Exit(crate::EXIT_SUCCESS),
};

/// 64-bit long mode (PAE paging, 2 MiB pages identity-mapping the first
/// 4 GiB). Checks: 1, EFER.LMA set; 2 and 3, CPUID leaf 0x8000_0001 LM
/// set and SVM clear; 4 and 5, IA32_LSTAR (a canonical kernel address)
/// and IA32_STAR round trips; 6, RDMSR 0xC000_1234 and 7, WRMSR
/// 0x1234_5678 raise #GP(0), caught by its 64-bit IDT; 8, the MMIO ID
/// register; 9, a 64-bit write and read of the scratch register; 10, a
/// store of a sign-extended 32-bit immediate (MOV r/m64, imm32) read
/// back; 11, MOVZX of a byte of the ID register.
pub const LONG: Guest = Guest {
    binary: "guest-long",
    lines: &[
        "long: 32-bit protected mode ok",
        "long: 64-bit long mode ok",
        "long: efer.lma set ok",
        "long: cpuid long mode bit ok",
        "long: cpuid svm bit clear ok",
        "long: wrmsr/rdmsr ia32_lstar round trip ok",
        "long: wrmsr/rdmsr ia32_star round trip ok",
        "long: rdmsr of an unknown msr raises #gp ok",
        "long: wrmsr of a reserved msr raises #gp ok",
        "long: mmio id register ok",
        "long: mmio 64-bit scratch round trip ok",
        "long: mmio store of a sign-extended immediate ok",
        "long: mmio movzx byte read ok",
        "long: all checks passed",
    ],
    ending: Ending::Exit(crate::EXIT_SUCCESS),
};

/// Tries to escape, in 64-bit long mode, saying what it attempts before
/// each attempt: CR8 (the task priority) raised to 15 and left there
/// (check 19: it reads back); reads and writes of guest-physical memory far outside
/// its RAM; WRMSR of each MSR in [`msr::REFUSED`](crate::msr::REFUSED)
/// and RDMSR of two (each must raise #GP(0); checks 1 to 8); VMXON,
/// VMLAUNCH, VMCALL, VMRUN, VMLOAD, VMSAVE, STGI, CLGI and VMMCALL (each
/// must raise #UD; checks 9 to 17); writes to the I/O APIC, the local
/// APIC (an INIT IPI to all others) and both legacy PICs; an exit flood
/// ([`HOSTILE_FLOOD_ROUNDS`](crate::HOSTILE_FLOOD_ROUNDS) rounds of CPUID
/// and OUT); then a triple fault (LIDT with limit 0, INT3). It ends with
/// the triple fault; should the VMM let it run on, it exits with check
/// 18. A check that fails (an MSR access or an instruction that did not
/// fault) ends it at once with that check's number.
pub const HOSTILE: Guest = Guest {
    binary: "guest-hostile",
    lines: &[
        "hostile: 32-bit protected mode ok",
        "hostile: 64-bit long mode ok",
        "hostile: raising cr8 to 15",
        "hostile: cr8 reads back 15",
        "hostile: reading 0x40000000",
        "hostile: writing 0x5a5a5a5a to 0x40000000",
        "hostile: reading 0xfffff000",
        "hostile: writing 0x5a5a5a5a to 0xfffff000",
        "hostile: wrmsr 0x3a",
        "hostile: wrmsr 0x3a raised #gp",
        "hostile: wrmsr 0x480",
        "hostile: wrmsr 0x480 raised #gp",
        "hostile: wrmsr 0xc0010114",
        "hostile: wrmsr 0xc0010114 raised #gp",
        "hostile: wrmsr 0xc0010117",
        "hostile: wrmsr 0xc0010117 raised #gp",
        "hostile: wrmsr 0xc0001234",
        "hostile: wrmsr 0xc0001234 raised #gp",
        "hostile: wrmsr 0x12345678",
        "hostile: wrmsr 0x12345678 raised #gp",
        "hostile: rdmsr 0x480",
        "hostile: rdmsr 0x480 raised #gp",
        "hostile: rdmsr 0xc0010117",
        "hostile: rdmsr 0xc0010117 raised #gp",
        "hostile: vmxon",
        "hostile: vmxon raised #ud",
        "hostile: vmlaunch",
        "hostile: vmlaunch raised #ud",
        "hostile: vmcall",
        "hostile: vmcall raised #ud",
        "hostile: vmrun",
        "hostile: vmrun raised #ud",
        "hostile: vmload",
        "hostile: vmload raised #ud",
        "hostile: vmsave",
        "hostile: vmsave raised #ud",
        "hostile: stgi",
        "hostile: stgi raised #ud",
        "hostile: clgi",
        "hostile: clgi raised #ud",
        "hostile: vmmcall",
        "hostile: vmmcall raised #ud",
        "hostile: writing the i/o apic at 0xfec00000",
        "hostile: writing the local apic at 0xfee00000",
        "hostile: writing the legacy pics at ports 0x20, 0x21, 0xa0 and 0xa1",
        "hostile: interrupt controllers written",
        "hostile: exit flood of cpuid and out to port 0x80",
        "hostile: exit flood done",
        "hostile: triple fault next",
    ],
    ending: Ending::TripleFault,
};

/// The addresses `guest-hostile` reads and writes outside its RAM.
pub const HOSTILE_PROBED_ADDRESSES: [u32; 2] = [0x4000_0000, 0xFFFF_F000];

/// The lines with values `guest-hostile` prints about each address in
/// [`HOSTILE_PROBED_ADDRESSES`], as a VMM that behaves like a PC makes
/// them (reads all ones, writes vanish): after "reading", the value read;
/// after "writing", the value read back.
pub const HOSTILE_VALUE_LINES: [&str; 4] = [
    "hostile: read 0x40000000: 0xffffffff",
    "hostile: read back 0x40000000: 0xffffffff",
    "hostile: read 0xfffff000: 0xffffffff",
    "hostile: read back 0xfffff000: 0xffffffff",
];

/// One of two guests that run at once, each filling the upper MiB of its
/// RAM with a marker of its own (the TSC at its start, printed as
/// "isolation: marker 0x..." between its second and third lines) and
/// scanning it 50 times while the other does the same: check 1, only its
/// own marker is there; check 2, the first quadword past its RAM reads
/// all ones.
pub const ISOLATION: Guest = Guest {
    binary: "guest-isolation",
    lines: &[
        "isolation: 32-bit protected mode ok",
        "isolation: 64-bit long mode ok",
        "isolation: marker written over its upper mib",
        "isolation: 50 scans found only its own marker ok",
        "isolation: the first quadword past its memory reads all ones ok",
        "isolation: all checks passed",
    ],
    ending: Ending::Exit(crate::EXIT_SUCCESS),
};

/// The exit benchmark's guest: 10,000 rounds of CPUID of leaf 0 in real
/// mode (`docs/PERFORMANCE.md`, "VM exits handled in vmm-server").
pub const CPUID_LOOP: Guest = Guest {
    binary: "guest-cpuid-loop",
    lines: &["cpuid-loop: 10000 cpuid exits next", "cpuid-loop: done"],
    ending: Ending::Exit(crate::EXIT_SUCCESS),
};

/// Every guest.
pub const GUESTS: [Guest; 6] = [REAL, PROTECTED, LONG, HOSTILE, ISOLATION, CPUID_LOOP];
