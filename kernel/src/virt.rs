//! The virtualisation core's hardware-free part (`docs/VIRTUALISATION.md`):
//! what the `svm` and `vtx` backends share and what can be computed
//! without a CPU.
//!
//! - [`Exit`]: an exit in one backend-neutral form, decoded from a VMCB's
//!   exit fields ([`decode_svm`]) or a VMCS's ([`decode_vtx`]). The VMM
//!   sees only this form; the raw reason travels along for its logs.
//! - [`Event`]: an event to inject, in one form the VMM writes and the
//!   kernel checks before converting it to a VMCB's EVENTINJ
//!   ([`Event::to_svm`]) or a VMCS's VM-entry interruption information
//!   ([`Event::to_vtx`]).
//! - Second-level page-table entries for AMD's nested paging
//!   ([`npt_table_entry`], [`npt_page_entry`]) and Intel's EPT
//!   ([`ept_table_entry`], [`ept_page_entry`], [`ept_pointer`]).
//!
//! Hardware numbers come from the AMD64 APM Vol. 2 (chapter 15,
//! appendix C) and the Intel SDM Vol. 3C (the VM-exit and EPT chapters);
//! `docs/virtualisation-hardware.md` lists them with what QEMU 7.2 and
//! Bochs 2.7 report.

use crate::vspace::MemoryType;

/// What an exit was, for the VMM. The numbers are the ABI's (VMEnter's
/// exit word, `docs/VIRTUALISATION.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitKind {
    /// CPUID.
    Cpuid = 1,
    /// HLT.
    Hlt = 2,
    /// IN, OUT, INS or OUTS: the qualification is an [`IoAccess`].
    Io = 3,
    /// RDMSR (the MSR is in the guest's RCX).
    MsrRead = 4,
    /// WRMSR (the MSR in RCX, the value in EDX:EAX).
    MsrWrite = 5,
    /// A control-register access: the qualification is a
    /// [`ControlAccess`].
    ControlRegister = 6,
    /// A guest-physical access the second-level tables do not allow: the
    /// qualification is a [`SecondLevelFault`], the address in
    /// [`Exit::guest_physical`].
    SecondLevelFault = 7,
    /// An exception the VMM intercepts (`vcpu::GuestField::
    /// EXCEPTION_INTERCEPTS`), before the guest sees it: the qualification
    /// holds the vector (bits 0..8) and, if bit 8 is set, the error code
    /// (bits 32..64). A #BP's RIP is its INT3's, and the instruction
    /// length 1, on both backends; a single step's #DB (a trap) comes
    /// with RIP after the stepped instruction and no length.
    Exception = 8,
    /// The guest shut down: a triple fault.
    TripleFault = 9,
    /// INIT.
    Init = 10,
    /// VMCALL or VMMCALL: a hypercall.
    Hypercall = 11,
    /// A virtualisation instruction (VMXON, VMRUN and their kin), which
    /// the guest may not use: the VMM injects #UD.
    VirtualisationInstruction = 12,
    /// The guest can take an interrupt now (the VMM asked to be told).
    InterruptWindow = 13,
    /// XSETBV.
    Xsetbv = 14,
    /// The hardware refused the guest state: VMRUN's VMEXIT_INVALID, a
    /// VM-entry failure. The guest did not run.
    InvalidState = 15,
    /// A host interrupt (or NMI) arrived while the guest ran: the kernel
    /// takes it and never reports it.
    HostInterrupt = 16,
    /// Anything else: only the raw reason says what.
    Other = 17,
    /// VMEnter's deadline passed (`docs/abi.md`, "VMEnter"): a host
    /// interrupt ended the guest's run at or after it, or it had passed
    /// before the guest ran (then the guest did not run). The
    /// qualification and the instruction length are 0; the raw reason is
    /// that of the hardware exit that ended the run (0 when the guest did
    /// not run).
    Deadline = 18,
    /// A software interrupt (`svm` only, while #BP is intercepted): an
    /// INT n, or under QEMU's TCG also an INT3, which it reports as an
    /// INT n rather than as a #BP (`docs/abi.md`, "Exception
    /// intercepts"). RIP is the instruction's; qualification and length
    /// 0: the VMM decodes the instruction (0xCC a breakpoint, 0xCD n the
    /// guest's INT n, which it re-delivers).
    SoftwareInterrupt = 19,
}

impl ExitKind {
    /// Every kind, in ABI order.
    pub const ALL: [ExitKind; 19] = [
        ExitKind::Cpuid,
        ExitKind::Hlt,
        ExitKind::Io,
        ExitKind::MsrRead,
        ExitKind::MsrWrite,
        ExitKind::ControlRegister,
        ExitKind::SecondLevelFault,
        ExitKind::Exception,
        ExitKind::TripleFault,
        ExitKind::Init,
        ExitKind::Hypercall,
        ExitKind::VirtualisationInstruction,
        ExitKind::InterruptWindow,
        ExitKind::Xsetbv,
        ExitKind::InvalidState,
        ExitKind::HostInterrupt,
        ExitKind::Other,
        ExitKind::Deadline,
        ExitKind::SoftwareInterrupt,
    ];

    /// The kind VMEnter's exit word names, if any.
    #[must_use]
    pub fn from_word(word: u64) -> Option<ExitKind> {
        ExitKind::ALL.into_iter().find(|kind| *kind as u64 == word)
    }
}

/// An exit, backend-neutral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// What kind of exit.
    pub kind: ExitKind,
    /// The hardware's own reason (an SVM exit code, a VT-x exit reason
    /// with its failure bit), for logs.
    pub raw_reason: u64,
    /// The kind's details (see each [`ExitKind`]).
    pub qualification: u64,
    /// The guest-physical address of a [`ExitKind::SecondLevelFault`].
    pub guest_physical: u64,
    /// The length of the instruction that exited, when the hardware says
    /// (`vtx` always; `svm` without next-RIP support only for I/O): 0
    /// otherwise, and the VMM decodes the instruction.
    pub instruction_length: u8,
}

/// An I/O access, packed into an exit's qualification: the port in bits
/// 0..16, the size in bytes (1, 2, 4) in bits 16..19, bit 19 IN (else
/// OUT), bit 20 a string instruction, bit 21 a REP prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// The port.
    pub port: u16,
    /// Bytes: 1, 2 or 4.
    pub size: u8,
    /// IN or INS (else OUT or OUTS).
    pub input: bool,
    /// INS or OUTS.
    pub string: bool,
    /// With a REP prefix.
    pub rep: bool,
}

impl IoAccess {
    /// The packed form.
    #[must_use]
    pub const fn pack(self) -> u64 {
        self.port as u64
            | (self.size as u64) << 16
            | (self.input as u64) << 19
            | (self.string as u64) << 20
            | (self.rep as u64) << 21
    }

    /// The access a packed qualification describes.
    #[must_use]
    pub const fn unpack(word: u64) -> IoAccess {
        IoAccess {
            port: (word & 0xffff) as u16,
            size: ((word >> 16) & 0b111) as u8,
            input: word & (1 << 19) != 0,
            string: word & (1 << 20) != 0,
            rep: word & (1 << 21) != 0,
        }
    }
}

/// A control-register access, packed: the register in bits 0..4, bit 4
/// a write (MOV to CR, CLTS, LMSW), the general register in bits 8..12
/// with bit 12 saying it is known (the `vtx` backend always knows; `svm`
/// without decode assists does not, and the VMM decodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlAccess {
    /// CR0 to CR15.
    pub register: u8,
    /// A write (else a read).
    pub write: bool,
    /// The general register moved to or from (0 RAX .. 15 R15), if known.
    pub gpr: Option<u8>,
}

impl ControlAccess {
    /// The packed form.
    #[must_use]
    pub const fn pack(self) -> u64 {
        let gpr = match self.gpr {
            Some(gpr) => (gpr as u64 & 0xf) << 8 | 1 << 12,
            None => 0,
        };
        (self.register as u64 & 0xf) | (self.write as u64) << 4 | gpr
    }

    /// The access a qualification word packs (other bits ignored).
    #[must_use]
    pub const fn unpack(word: u64) -> ControlAccess {
        let gpr = if word & (1 << 12) != 0 { Some(((word >> 8) & 0xf) as u8) } else { None };
        ControlAccess { register: (word & 0xf) as u8, write: word & (1 << 4) != 0, gpr }
    }
}

/// A second-level fault, packed: bit 0 a read, bit 1 a write, bit 2 an
/// instruction fetch, bit 3 the address was mapped (the access lacked a
/// right), else nothing was mapped there (MMIO, or a guest outside its
/// memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondLevelFault {
    /// The access was a read.
    pub read: bool,
    /// A write.
    pub write: bool,
    /// An instruction fetch.
    pub fetch: bool,
    /// Something was mapped at the address.
    pub mapped: bool,
}

impl SecondLevelFault {
    /// The packed form.
    #[must_use]
    pub const fn pack(self) -> u64 {
        (self.read as u64) | (self.write as u64) << 1 | (self.fetch as u64) << 2 | (self.mapped as u64) << 3
    }

    /// The fault a qualification word packs (other bits ignored).
    #[must_use]
    pub const fn unpack(word: u64) -> SecondLevelFault {
        SecondLevelFault { read: word & 1 != 0, write: word & 2 != 0, fetch: word & 4 != 0, mapped: word & 8 != 0 }
    }
}

/// A VMCB's exit fields (AMD64 APM Vol. 2, 15.6 and appendix C).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvmExitFields {
    /// EXITCODE.
    pub code: u64,
    /// EXITINFO1.
    pub info1: u64,
    /// EXITINFO2.
    pub info2: u64,
    /// The guest's RIP at the exit (for I/O, EXITINFO2 holds the next
    /// one, which gives the instruction's length).
    pub rip: u64,
}

/// SVM exit codes the decoder names (APM Vol. 2, appendix C).
pub mod svm_code {
    /// Reads of CR0..CR15: 0x00 + n.
    pub const CR_READ: u64 = 0x00;
    /// Writes of CR0..CR15: 0x10 + n.
    pub const CR_WRITE: u64 = 0x10;
    /// Exceptions: 0x40 + vector.
    pub const EXCEPTION: u64 = 0x40;
    /// A physical interrupt.
    pub const INTR: u64 = 0x60;
    /// An NMI.
    pub const NMI: u64 = 0x61;
    /// INIT.
    pub const INIT: u64 = 0x63;
    /// A virtual interrupt can be taken.
    pub const VINTR: u64 = 0x64;
    /// A CR0 write that changes bits other than TS and MP.
    pub const CR0_SELECTIVE_WRITE: u64 = 0x65;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// INT n (and, under QEMU's TCG, INT3).
    pub const SWINT: u64 = 0x75;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN, OUT, INS, OUTS.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR or WRMSR.
    pub const MSR: u64 = 0x7c;
    /// Shutdown (a triple fault).
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// VMLOAD, VMSAVE, STGI, CLGI, SKINIT: 0x82..=0x86.
    pub const VMLOAD: u64 = 0x82;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8d;
    /// A nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN refused the guest state.
    pub const INVALID: u64 = u64::MAX;
}

/// The exit a VMCB's fields describe.
#[must_use]
pub fn decode_svm(fields: SvmExitFields) -> Exit {
    use svm_code as code;
    let exit = |kind: ExitKind, qualification: u64| Exit {
        kind,
        raw_reason: fields.code,
        qualification,
        guest_physical: 0,
        instruction_length: 0,
    };
    match fields.code {
        code::CR_READ..=0x1f => {
            let access =
                ControlAccess { register: (fields.code & 0xf) as u8, write: fields.code >= code::CR_WRITE, gpr: None };
            exit(ExitKind::ControlRegister, access.pack())
        }
        code::CR0_SELECTIVE_WRITE => {
            exit(ExitKind::ControlRegister, ControlAccess { register: 0, write: true, gpr: None }.pack())
        }
        code::EXCEPTION..=0x5f => {
            let vector = fields.code - code::EXCEPTION;
            let error = if has_error_code(u8::try_from(vector).unwrap_or(0)) {
                1 << 8 | (fields.info1 & 0xffff_ffff) << 32
            } else {
                0
            };
            // SVM intercepts an exception before delivering it: a #BP's
            // RIP is the INT3's own, which only INT3 (one byte, 0xCC)
            // raises (INT 3, 0xCD 0x03, is a software interrupt, and an
            // injected event is never intercepted). Its length is what
            // `vtx` reports for the same exit.
            let length = if vector == u64::from(BREAKPOINT_VECTOR) { 1 } else { 0 };
            Exit { instruction_length: length, ..exit(ExitKind::Exception, vector | error) }
        }
        code::INTR | code::NMI => exit(ExitKind::HostInterrupt, 0),
        code::INIT => exit(ExitKind::Init, 0),
        code::VINTR => exit(ExitKind::InterruptWindow, 0),
        code::CPUID => exit(ExitKind::Cpuid, 0),
        code::SWINT => exit(ExitKind::SoftwareInterrupt, 0),
        code::HLT => exit(ExitKind::Hlt, 0),
        code::IOIO => {
            let info = fields.info1;
            let size = if info & (1 << 4) != 0 {
                1
            } else if info & (1 << 5) != 0 {
                2
            } else {
                4
            };
            let access = IoAccess {
                port: u16::try_from((info >> 16) & 0xffff).unwrap_or(0),
                size,
                input: info & 1 != 0,
                string: info & (1 << 2) != 0,
                rep: info & (1 << 3) != 0,
            };
            // EXITINFO2 is the next RIP; an x86 instruction is 1 to 15 bytes.
            let length = fields.info2.wrapping_sub(fields.rip);
            let length = u8::try_from(length).ok().filter(|length| (1..=15).contains(length)).unwrap_or(0);
            Exit { instruction_length: length, ..exit(ExitKind::Io, access.pack()) }
        }
        code::MSR if fields.info1 == 1 => exit(ExitKind::MsrWrite, 0),
        code::MSR => exit(ExitKind::MsrRead, 0),
        code::SHUTDOWN => exit(ExitKind::TripleFault, 0),
        code::VMMCALL => exit(ExitKind::Hypercall, 0),
        code::VMRUN | code::VMLOAD..=code::SKINIT => exit(ExitKind::VirtualisationInstruction, 0),
        code::XSETBV => exit(ExitKind::Xsetbv, 0),
        code::NPF => {
            // EXITINFO1 is a page-fault error code: bit 0 present, bit 1
            // write, bit 4 instruction fetch.
            let info = fields.info1;
            let (write, fetch) = (info & (1 << 1) != 0, info & (1 << 4) != 0);
            let fault = SecondLevelFault { read: !write && !fetch, write, fetch, mapped: info & 1 != 0 };
            Exit { guest_physical: fields.info2, ..exit(ExitKind::SecondLevelFault, fault.pack()) }
        }
        code::INVALID => exit(ExitKind::InvalidState, 0),
        _ => exit(ExitKind::Other, 0),
    }
}

/// A VMCS's exit fields (Intel SDM Vol. 3C, the VM-exit chapter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtxExitFields {
    /// The exit reason (field 0x4402), with bit 31 for a failed entry.
    pub reason: u64,
    /// The exit qualification (0x6400).
    pub qualification: u64,
    /// The guest-physical address (0x2400).
    pub guest_physical: u64,
    /// The exit instruction length (0x440C).
    pub instruction_length: u64,
    /// The exit interruption information (0x4404).
    pub interruption_info: u64,
    /// The exit interruption error code (0x4406).
    pub interruption_error: u64,
}

/// VT-x basic exit reasons the decoder names (SDM Vol. 3C, appendix C).
pub mod vtx_reason {
    /// An exception or an NMI.
    pub const EXCEPTION_OR_NMI: u64 = 0;
    /// An external interrupt.
    pub const EXTERNAL_INTERRUPT: u64 = 1;
    /// A triple fault.
    pub const TRIPLE_FAULT: u64 = 2;
    /// INIT.
    pub const INIT: u64 = 3;
    /// The guest can take an interrupt.
    pub const INTERRUPT_WINDOW: u64 = 7;
    /// CPUID.
    pub const CPUID: u64 = 10;
    /// HLT.
    pub const HLT: u64 = 12;
    /// VMCALL.
    pub const VMCALL: u64 = 18;
    /// VMCLEAR .. VMXON: 19..=27.
    pub const VMCLEAR: u64 = 19;
    /// VMXON.
    pub const VMXON: u64 = 27;
    /// A control-register access.
    pub const CR_ACCESS: u64 = 28;
    /// An I/O instruction.
    pub const IO: u64 = 30;
    /// RDMSR.
    pub const RDMSR: u64 = 31;
    /// WRMSR.
    pub const WRMSR: u64 = 32;
    /// An EPT violation.
    pub const EPT_VIOLATION: u64 = 48;
    /// The VMX-preemption timer reached zero: the kernel's bound on a
    /// guest run.
    pub const PREEMPTION_TIMER: u64 = 52;
    /// INVEPT.
    pub const INVEPT: u64 = 50;
    /// INVVPID.
    pub const INVVPID: u64 = 53;
    /// XSETBV.
    pub const XSETBV: u64 = 55;
    /// Bit 31 of the reason: the VM entry failed.
    pub const ENTRY_FAILURE: u64 = 1 << 31;
}

/// The exit a VMCS's fields describe.
#[must_use]
pub fn decode_vtx(fields: VtxExitFields) -> Exit {
    use vtx_reason as reason;
    let length = u8::try_from(fields.instruction_length).ok().filter(|length| (1..=15).contains(length)).unwrap_or(0);
    let exit = |kind: ExitKind, qualification: u64| Exit {
        kind,
        raw_reason: fields.reason,
        qualification,
        guest_physical: 0,
        instruction_length: length,
    };
    if fields.reason & reason::ENTRY_FAILURE != 0 {
        return exit(ExitKind::InvalidState, fields.qualification);
    }
    let qualification = fields.qualification;
    match fields.reason & 0xffff {
        reason::EXCEPTION_OR_NMI => {
            let info = fields.interruption_info;
            // Type 2 is an NMI: the host's.
            if (info >> 8) & 0b111 == 2 {
                return exit(ExitKind::HostInterrupt, 0);
            }
            let error =
                if info & (1 << 11) != 0 { 1 << 8 | (fields.interruption_error & 0xffff_ffff) << 32 } else { 0 };
            // The exit's instruction length is defined only for software
            // exceptions (type 6: INT3, INTO) and ICEBP (type 5); a fault
            // or a trap (a single step's #DB) has none.
            let length = if matches!((info >> 8) & 0b111, 5 | 6) { length } else { 0 };
            Exit { instruction_length: length, ..exit(ExitKind::Exception, (info & 0xff) | error) }
        }
        reason::EXTERNAL_INTERRUPT => exit(ExitKind::HostInterrupt, 0),
        reason::TRIPLE_FAULT => exit(ExitKind::TripleFault, 0),
        reason::INIT => exit(ExitKind::Init, 0),
        reason::INTERRUPT_WINDOW => exit(ExitKind::InterruptWindow, 0),
        reason::CPUID => exit(ExitKind::Cpuid, 0),
        reason::HLT => exit(ExitKind::Hlt, 0),
        reason::VMCALL => exit(ExitKind::Hypercall, 0),
        reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID => {
            exit(ExitKind::VirtualisationInstruction, 0)
        }
        reason::CR_ACCESS => {
            // Bits 0..4 the register, 4..6 the access type (0 MOV to CR,
            // 1 MOV from CR, 2 CLTS, 3 LMSW), 8..12 the general register.
            let kind = (qualification >> 4) & 0b11;
            let access = ControlAccess {
                register: (qualification & 0xf) as u8,
                write: kind != 1,
                gpr: (kind <= 1).then_some(((qualification >> 8) & 0xf) as u8),
            };
            exit(ExitKind::ControlRegister, access.pack())
        }
        reason::IO => {
            // Bits 0..3 the size less one, bit 3 IN, bit 4 string, bit 5
            // REP, bits 16..32 the port.
            let access = IoAccess {
                port: u16::try_from((qualification >> 16) & 0xffff).unwrap_or(0),
                size: u8::try_from((qualification & 0b111) + 1).unwrap_or(1),
                input: qualification & (1 << 3) != 0,
                string: qualification & (1 << 4) != 0,
                rep: qualification & (1 << 5) != 0,
            };
            exit(ExitKind::Io, access.pack())
        }
        reason::RDMSR => exit(ExitKind::MsrRead, 0),
        reason::WRMSR => exit(ExitKind::MsrWrite, 0),
        reason::EPT_VIOLATION => {
            // Bits 0..3 the access (read, write, fetch); bits 3..6 what
            // the translation allowed: any of them means it was mapped.
            let fault = SecondLevelFault {
                read: qualification & 1 != 0,
                write: qualification & (1 << 1) != 0,
                fetch: qualification & (1 << 2) != 0,
                mapped: qualification & (0b111 << 3) != 0,
            };
            Exit { guest_physical: fields.guest_physical, ..exit(ExitKind::SecondLevelFault, fault.pack()) }
        }
        reason::XSETBV => exit(ExitKind::Xsetbv, 0),
        // The kernel's own bound on the run, like a host interrupt: never
        // reported.
        reason::PREEMPTION_TIMER => exit(ExitKind::HostInterrupt, 0),
        _ => exit(ExitKind::Other, 0),
    }
}

/// The debug exception's vector (#DB): single steps.
pub const DEBUG_VECTOR: u8 = 1;
/// The breakpoint exception's vector (#BP): INT3.
pub const BREAKPOINT_VECTOR: u8 = 3;

/// Whether exception `vector` pushes an error code (#DF, #TS, #NP, #SS,
/// #GP, #PF, #AC, #CP).
#[must_use]
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// What kind of event to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// An external (device) interrupt, vectors 16..=255.
    External = 0,
    /// An NMI (vector 2).
    Nmi = 2,
    /// A hardware exception, vectors 0..=21 but 2 (the NMI's) and 15
    /// (reserved).
    Exception = 3,
    /// A software interrupt (INT n), any vector.
    Software = 4,
}

/// An event to inject on the next entry. Its word (VMEnter's) is bits
/// 0..8 the vector, 8..11 the kind, bit 11 an error code present, bit 31
/// valid (0: no event), bits 32..64 the error code: the layout of a
/// VMCB's EVENTINJ, which the `svm` backend uses as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The vector.
    pub vector: u8,
    /// The kind.
    pub kind: EventKind,
    /// The error code, for an exception that pushes one.
    pub error_code: Option<u32>,
}

/// Why an event word was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadEvent {
    /// Reserved bits set, or an unknown kind.
    Malformed,
    /// A vector its kind may not have.
    Vector,
    /// An error code where the exception pushes none, or none where it
    /// pushes one.
    ErrorCode,
}

impl Event {
    /// The event a VMEnter word asks for: `None` when bit 31 is clear.
    ///
    /// # Errors
    ///
    /// [`BadEvent`]: the hardware would refuse the entry (or, for
    /// vectors 22..=31 and 15, deliver something architecturally
    /// reserved), so the kernel refuses the word.
    pub fn from_word(word: u64) -> Result<Option<Event>, BadEvent> {
        if word & (1 << 31) == 0 {
            return if word == 0 { Ok(None) } else { Err(BadEvent::Malformed) };
        }
        if word & 0x7fff_f000 != 0 {
            return Err(BadEvent::Malformed);
        }
        let vector = (word & 0xff) as u8;
        let kind = match (word >> 8) & 0b111 {
            0 => EventKind::External,
            2 => EventKind::Nmi,
            3 => EventKind::Exception,
            4 => EventKind::Software,
            _ => return Err(BadEvent::Malformed),
        };
        let has_error = word & (1 << 11) != 0;
        let vector_ok = match kind {
            EventKind::External => vector >= 16,
            EventKind::Nmi => vector == 2,
            EventKind::Exception => vector <= 21 && vector != 2 && vector != 15,
            EventKind::Software => true,
        };
        if !vector_ok {
            return Err(BadEvent::Vector);
        }
        let wants_error = kind == EventKind::Exception && has_error_code(vector);
        if has_error != wants_error || (!has_error && word >> 32 != 0) {
            return Err(BadEvent::ErrorCode);
        }
        let error_code = has_error.then_some((word >> 32) as u32);
        Ok(Some(Event { vector, kind, error_code }))
    }

    /// The VMEnter word for this event.
    #[must_use]
    pub fn to_word(self) -> u64 {
        let error = self.error_code.map_or(0, |code| 1 << 11 | u64::from(code) << 32);
        u64::from(self.vector) | (self.kind as u64) << 8 | error | 1 << 31
    }

    /// The VMCB's EVENTINJ field (APM Vol. 2, 15.20): the same layout.
    #[must_use]
    pub fn to_svm(self) -> u64 {
        self.to_word()
    }

    /// The VMCS's VM-entry interruption information (field 0x4016) and
    /// error code (0x4018): bits 0..8 the vector, 8..11 the type (0
    /// external, 2 NMI, 3 hardware exception, 4 software interrupt), bit
    /// 11 deliver an error code, bit 31 valid.
    #[must_use]
    pub fn to_vtx(self) -> (u32, u32) {
        let info =
            u32::from(self.vector) | (self.kind as u32) << 8 | u32::from(self.error_code.is_some()) << 11 | 1 << 31;
        (info, self.error_code.unwrap_or(0))
    }
}

/// Bits of a nested page-table entry: the host's own paging format (APM
/// Vol. 2, 15.25), so the host's bits; every level needs USER, as nested
/// walks are user accesses, and NO_EXECUTE relies on the host's EFER.NXE.
pub use crate::vspace::entry as npt;

/// Bits of an EPT entry (SDM Vol. 3C, the EPT chapter).
pub mod ept {
    /// Readable.
    pub const READ: u64 = 1 << 0;
    /// Writable.
    pub const WRITE: u64 = 1 << 1;
    /// Executable.
    pub const EXECUTE: u64 = 1 << 2;
    /// The memory type's shift (bits 3..6 of a leaf).
    pub const MEMORY_TYPE_SHIFT: u32 = 3;
    /// Ignore the guest's PAT: the entry's type is the type.
    pub const IGNORE_PAT: u64 = 1 << 6;
    /// A 2 MiB or 1 GiB page.
    pub const LARGE: u64 = 1 << 7;
    /// EPT memory type: uncacheable.
    pub const UNCACHEABLE: u64 = 0;
    /// EPT memory type: write-through.
    pub const WRITE_THROUGH: u64 = 4;
    /// EPT memory type: write-back.
    pub const WRITE_BACK: u64 = 6;
}

/// The entry format of a machine's GuestSpaces: AMD's nested paging
/// (the host's own format) or Intel's EPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFormat {
    /// Nested page tables (`svm`).
    Npt,
    /// Extended page tables (`vtx`).
    Ept,
}

/// The rights and type a guest mapping gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMapping {
    /// The guest may write.
    pub write: bool,
    /// The guest may execute.
    pub execute: bool,
    /// The memory type.
    pub memory_type: MemoryType,
    /// A 2 MiB or 1 GiB page (its entry is in a PD or a PDPT).
    pub large: bool,
}

/// An NPT entry linking the structure at `next`: present, writable and
/// user (the leaf decides).
#[must_use]
pub const fn npt_table_entry(next: u64) -> u64 {
    next | npt::PRESENT | npt::WRITABLE | npt::USER
}

/// An NPT entry mapping the frame at `base`: always readable, as
/// `Frame::Map` requires READ.
#[must_use]
pub const fn npt_page_entry(base: u64, mapping: GuestMapping) -> u64 {
    let mut entry = base | npt::PRESENT | npt::USER;
    if mapping.write {
        entry |= npt::WRITABLE;
    }
    if !mapping.execute {
        entry |= npt::NO_EXECUTE;
    }
    entry |= match mapping.memory_type {
        MemoryType::WriteBack => 0,
        MemoryType::WriteThrough => npt::WRITE_THROUGH,
        MemoryType::UncachedMinus => npt::CACHE_DISABLE,
        MemoryType::Uncached => npt::CACHE_DISABLE | npt::WRITE_THROUGH,
    };
    if mapping.large {
        entry |= npt::LARGE;
    }
    entry
}

/// An EPT entry linking the structure at `next`: every access allowed
/// (the leaf decides).
#[must_use]
pub const fn ept_table_entry(next: u64) -> u64 {
    next | ept::READ | ept::WRITE | ept::EXECUTE
}

/// An EPT entry mapping the frame at `base`: readable (a writable entry
/// that is not readable is a misconfiguration), its memory type fixed
/// (the guest's PAT ignored). EPT has no UC-: UC- and UC are both
/// uncacheable.
#[must_use]
pub const fn ept_page_entry(base: u64, mapping: GuestMapping) -> u64 {
    let mut entry = base | ept::READ | ept::IGNORE_PAT;
    if mapping.write {
        entry |= ept::WRITE;
    }
    if mapping.execute {
        entry |= ept::EXECUTE;
    }
    let memory_type = match mapping.memory_type {
        MemoryType::WriteBack => ept::WRITE_BACK,
        MemoryType::WriteThrough => ept::WRITE_THROUGH,
        MemoryType::UncachedMinus | MemoryType::Uncached => ept::UNCACHEABLE,
    };
    entry |= memory_type << ept::MEMORY_TYPE_SHIFT;
    if mapping.large {
        entry |= ept::LARGE;
    }
    entry
}

/// The EPT pointer for the EPT PML4 at `pml4`: write-back structures, a
/// four-level walk, accessed and dirty flags off.
#[must_use]
pub const fn ept_pointer(pml4: u64) -> u64 {
    pml4 | ept::WRITE_BACK | (4 - 1) << 3
}

#[cfg(test)]
mod tests;
