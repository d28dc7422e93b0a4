//! The exit decoders, the event checks and the second-level entries,
//! against the hardware's documented encodings.

use super::*;
use proptest::prelude::*;

fn svm(code: u64, info1: u64, info2: u64, rip: u64) -> Exit {
    decode_svm(SvmExitFields { code, info1, info2, rip })
}

fn vtx(reason: u64, qualification: u64) -> Exit {
    decode_vtx(VtxExitFields { reason, qualification, instruction_length: 2, ..VtxExitFields::default() })
}

#[test]
fn svm_io_exits_carry_port_size_direction_and_length() {
    // OUT DX, AL to 0xf4: port in bits 16..32, SZ8 (bit 4), OUT (bit 0
    // clear); EXITINFO2 is the next RIP, one byte on.
    let exit = svm(svm_code::IOIO, 0xf4 << 16 | 1 << 4, 0x1001, 0x1000);
    assert_eq!(exit.kind, ExitKind::Io);
    assert_eq!(
        IoAccess::unpack(exit.qualification),
        IoAccess { port: 0xf4, size: 1, input: false, string: false, rep: false }
    );
    assert_eq!(exit.instruction_length, 1);
    // REP INSW from 0x1f0: IN, string, REP, SZ16.
    let exit = svm(svm_code::IOIO, 0x1f0 << 16 | 1 << 5 | 1 << 3 | 1 << 2 | 1, 0x2002, 0x2000);
    assert_eq!(
        IoAccess::unpack(exit.qualification),
        IoAccess { port: 0x1f0, size: 2, input: true, string: true, rep: true }
    );
    // IN EAX, imm8 (SZ32), two bytes.
    let exit = svm(svm_code::IOIO, 0x71 << 16 | 1 << 6 | 1, 0x3002, 0x3000);
    assert_eq!((IoAccess::unpack(exit.qualification).size, exit.instruction_length), (4, 2));
    // A next RIP that cannot be one instruction on gives no length.
    assert_eq!(svm(svm_code::IOIO, 0, 0x1000, 0x2000).instruction_length, 0);
    assert_eq!(svm(svm_code::IOIO, 0, 0x1000 + 16, 0x1000).instruction_length, 0);
}

#[test]
fn vtx_io_exits_decode_the_same_access() {
    // Size less one in bits 0..3, IN bit 3, string 4, REP 5, port 16..32.
    let exit = vtx(vtx_reason::IO, 0x1f0 << 16 | 1 << 5 | 1 << 4 | 1 << 3 | 1);
    assert_eq!(exit.kind, ExitKind::Io);
    assert_eq!(
        IoAccess::unpack(exit.qualification),
        IoAccess { port: 0x1f0, size: 2, input: true, string: true, rep: true }
    );
    assert_eq!(exit.instruction_length, 2);
    let exit = vtx(vtx_reason::IO, 0xf4 << 16);
    assert_eq!(IoAccess::unpack(exit.qualification).size, 1);
}

#[test]
fn second_level_faults_say_what_was_tried_and_whether_it_was_mapped() {
    // NPF: a write (bit 1) to an unmapped page (bit 0 clear).
    let exit = svm(svm_code::NPF, 1 << 1 | 1 << 2 | 1 << 32, 0xfee0_0000, 0);
    assert_eq!(exit.kind, ExitKind::SecondLevelFault);
    assert_eq!(exit.guest_physical, 0xfee0_0000);
    assert_eq!(exit.qualification, SecondLevelFault { read: false, write: true, fetch: false, mapped: false }.pack());
    // NPF: a fetch (bit 4) from a present, no-execute page.
    let exit = svm(svm_code::NPF, 1 | 1 << 4, 0x5000, 0);
    assert_eq!(exit.qualification, SecondLevelFault { read: false, write: false, fetch: true, mapped: true }.pack());
    // EPT violation: a read (bit 0) of a page that allowed nothing.
    let exit =
        decode_vtx(VtxExitFields { reason: 48, qualification: 1, guest_physical: 0xb8000, ..VtxExitFields::default() });
    assert_eq!(exit.guest_physical, 0xb8000);
    assert_eq!(exit.qualification, SecondLevelFault { read: true, write: false, fetch: false, mapped: false }.pack());
    // A write to a read-only page: bit 3 (readable) says it was mapped.
    let exit = vtx(vtx_reason::EPT_VIOLATION, 1 << 1 | 1 << 3);
    assert_eq!(exit.qualification, SecondLevelFault { read: false, write: true, fetch: false, mapped: true }.pack());
}

#[test]
fn both_backends_name_the_same_exits_alike() {
    let pairs = [
        (svm_code::CPUID, vtx_reason::CPUID, ExitKind::Cpuid),
        (svm_code::HLT, vtx_reason::HLT, ExitKind::Hlt),
        (svm_code::SHUTDOWN, vtx_reason::TRIPLE_FAULT, ExitKind::TripleFault),
        (svm_code::INIT, vtx_reason::INIT, ExitKind::Init),
        (svm_code::VMMCALL, vtx_reason::VMCALL, ExitKind::Hypercall),
        (svm_code::VMRUN, vtx_reason::VMXON, ExitKind::VirtualisationInstruction),
        (svm_code::VINTR, vtx_reason::INTERRUPT_WINDOW, ExitKind::InterruptWindow),
        (svm_code::INTR, vtx_reason::EXTERNAL_INTERRUPT, ExitKind::HostInterrupt),
        (svm_code::XSETBV, vtx_reason::XSETBV, ExitKind::Xsetbv),
        (svm_code::INVALID, vtx_reason::ENTRY_FAILURE | 33, ExitKind::InvalidState),
    ];
    for (code, reason, kind) in pairs {
        assert_eq!(svm(code, 0, 0, 0).kind, kind, "svm {code:#x}");
        assert_eq!(vtx(reason, 0).kind, kind, "vtx {reason}");
        assert_eq!(svm(code, 0, 0, 0).raw_reason, code);
    }
    for code in [svm_code::VMLOAD, 0x83, 0x84, 0x85, svm_code::SKINIT] {
        assert_eq!(svm(code, 0, 0, 0).kind, ExitKind::VirtualisationInstruction);
    }
    for reason in [vtx_reason::VMCLEAR, 20, 24, vtx_reason::INVEPT, vtx_reason::INVVPID] {
        assert_eq!(vtx(reason, 0).kind, ExitKind::VirtualisationInstruction);
    }
    assert_eq!(
        (svm(svm_code::MSR, 0, 0, 0).kind, svm(svm_code::MSR, 1, 0, 0).kind),
        (ExitKind::MsrRead, ExitKind::MsrWrite)
    );
    assert_eq!(
        (vtx(vtx_reason::RDMSR, 0).kind, vtx(vtx_reason::WRMSR, 0).kind),
        (ExitKind::MsrRead, ExitKind::MsrWrite)
    );
    // The NMI arrives as exception-or-NMI with type 2: the host's.
    let nmi =
        decode_vtx(VtxExitFields { reason: 0, interruption_info: 1 << 31 | 2 << 8 | 2, ..VtxExitFields::default() });
    assert_eq!(nmi.kind, ExitKind::HostInterrupt);
    assert_eq!(svm(svm_code::NMI, 0, 0, 0).kind, ExitKind::HostInterrupt);
    // The VMX-preemption timer (reason 52) bounds a run as an interrupt does.
    assert_eq!(vtx(52, 0).kind, ExitKind::HostInterrupt);
    assert_eq!(svm(0x6e, 0, 0, 0).kind, ExitKind::Other, "RDTSC is not intercepted: an unknown exit");
    assert_eq!(vtx(16, 0).kind, ExitKind::Other);
}

#[test]
fn control_register_exits_know_the_register_only_on_vtx() {
    let write_cr3 = svm(svm_code::CR_WRITE + 3, 0, 0, 0);
    assert_eq!(write_cr3.qualification, ControlAccess { register: 3, write: true, gpr: None }.pack());
    let read_cr0 = svm(svm_code::CR_READ, 0, 0, 0);
    assert_eq!(read_cr0.qualification, ControlAccess { register: 0, write: false, gpr: None }.pack());
    let selective = svm(svm_code::CR0_SELECTIVE_WRITE, 0, 0, 0);
    assert_eq!(selective.qualification, ControlAccess { register: 0, write: true, gpr: None }.pack());
    // MOV CR4, RBX: register 4, type 0 (to CR), GPR 3.
    let exit = vtx(vtx_reason::CR_ACCESS, 4 | 3 << 8);
    assert_eq!(exit.qualification, ControlAccess { register: 4, write: true, gpr: Some(3) }.pack());
    // MOV RAX, CR3 (type 1) and CLTS (type 2: a write without a GPR).
    assert_eq!(
        vtx(vtx_reason::CR_ACCESS, 3 | 1 << 4).qualification,
        ControlAccess { register: 3, write: false, gpr: Some(0) }.pack()
    );
    assert_eq!(
        vtx(vtx_reason::CR_ACCESS, 2 << 4).qualification,
        ControlAccess { register: 0, write: true, gpr: None }.pack()
    );
}

#[test]
fn exceptions_carry_their_error_codes() {
    // #GP (13) pushes an error code; #UD (6) does not.
    let gp = svm(svm_code::EXCEPTION + 13, 0x18, 0, 0);
    assert_eq!((gp.kind, gp.qualification), (ExitKind::Exception, 13 | 1 << 8 | 0x18 << 32));
    assert_eq!(svm(svm_code::EXCEPTION + 6, 0x18, 0, 0).qualification, 6);
    let pf = decode_vtx(VtxExitFields {
        reason: 0,
        interruption_info: 1 << 31 | 1 << 11 | 3 << 8 | 14,
        interruption_error: 2,
        ..VtxExitFields::default()
    });
    assert_eq!(pf.qualification, 14 | 1 << 8 | 2 << 32);
}

#[test]
fn a_breakpoint_is_one_byte_long_on_both_backends_and_a_single_step_has_no_length() {
    let svm_breakpoint = svm(svm_code::EXCEPTION + 3, 0, 0, 0x1000);
    assert_eq!((svm_breakpoint.kind, svm_breakpoint.qualification), (ExitKind::Exception, 3));
    assert_eq!(svm_breakpoint.instruction_length, 1);
    let svm_step = svm(svm_code::EXCEPTION + 1, 0, 0, 0x1000);
    assert_eq!((svm_step.qualification, svm_step.instruction_length), (1, 0));
    // vtx: INT3 is a software exception (type 6) with its length; a
    // single step's #DB a hardware exception (type 3), whose exit's
    // length field is undefined (here garbage).
    let vtx_exit = |interruption_info: u64, instruction_length: u64| {
        decode_vtx(VtxExitFields { reason: 0, interruption_info, instruction_length, ..VtxExitFields::default() })
    };
    let vtx_breakpoint = vtx_exit(1 << 31 | 6 << 8 | 3, 1);
    assert_eq!((vtx_breakpoint.kind, vtx_breakpoint.qualification), (ExitKind::Exception, 3));
    assert_eq!(vtx_breakpoint.instruction_length, svm_breakpoint.instruction_length);
    let vtx_step = vtx_exit(1 << 31 | 3 << 8 | 1, 7);
    assert_eq!((vtx_step.qualification, vtx_step.instruction_length), (1, 0));
    // svm's software-interrupt intercept (QEMU reports INT3 there):
    // RIP at the instruction, its length unknown.
    let software = svm(svm_code::SWINT, 0, 0, 0x1000);
    assert_eq!(
        (software.kind, software.qualification, software.instruction_length),
        (ExitKind::SoftwareInterrupt, 0, 0)
    );
    // A #GP's length is undefined too.
    assert_eq!(vtx_exit(1 << 31 | 1 << 11 | 3 << 8 | 13, 3).instruction_length, 0);
}

#[test]
fn a_failed_entry_is_invalid_state_whatever_its_basic_reason() {
    for basic in [33, 34, 41, 0, 10] {
        assert_eq!(vtx(vtx_reason::ENTRY_FAILURE | basic, 4).kind, ExitKind::InvalidState);
    }
}

#[test]
fn events_are_checked_like_the_hardware_would() {
    let ok = |word: u64| Event::from_word(word).expect("a valid event").expect("an event");
    assert_eq!(Event::from_word(0), Ok(None));
    // #GP with its error code; #UD without.
    let gp = ok(1 << 31 | 1 << 11 | 3 << 8 | 13 | 0x10 << 32);
    assert_eq!(gp, Event { vector: 13, kind: EventKind::Exception, error_code: Some(0x10) });
    assert_eq!(ok(1 << 31 | 3 << 8 | 6).error_code, None);
    assert_eq!(ok(1 << 31 | 0x20).kind, EventKind::External);
    assert_eq!(ok(1 << 31 | 2 << 8 | 2).kind, EventKind::Nmi);
    assert_eq!(ok(1 << 31 | 4 << 8 | 0x80).kind, EventKind::Software);
    let refused = [
        (1 << 11 | 13, BadEvent::Malformed),                   // not valid but not zero
        (1 << 31 | 1 << 12 | 0x20, BadEvent::Malformed),       // reserved bit
        (1 << 31 | 5 << 8 | 0x20, BadEvent::Malformed),        // unknown type
        (1 << 31 | 2 << 8 | 3, BadEvent::Vector),              // NMI not on vector 2
        (1 << 31 | 3 << 8 | 2, BadEvent::Vector),              // an exception on the NMI's vector
        (1 << 31 | 3 << 8 | 31, BadEvent::Vector),             // a reserved vector
        (1 << 31 | 3 << 8 | 15, BadEvent::Vector),             // reserved
        (1 << 31 | 8, BadEvent::Vector),                       // an external interrupt on an exception vector
        (1 << 31 | 3 << 8 | 13, BadEvent::ErrorCode),          // #GP without its code
        (1 << 31 | 1 << 11 | 3 << 8 | 6, BadEvent::ErrorCode), // #UD with one
        (1 << 31 | 0x20 | 5 << 32, BadEvent::ErrorCode),       // a code word without the flag
    ];
    for (word, why) in refused {
        assert_eq!(Event::from_word(word), Err(why), "{word:#x}");
    }
}

#[test]
fn events_convert_to_both_backends() {
    let gp = Event { vector: 13, kind: EventKind::Exception, error_code: Some(0x10) };
    assert_eq!(gp.to_svm(), 13 | 3 << 8 | 1 << 11 | 1 << 31 | 0x10 << 32);
    assert_eq!(gp.to_vtx(), (13 | 3 << 8 | 1 << 11 | 1 << 31, 0x10));
    let timer = Event { vector: 0x30, kind: EventKind::External, error_code: None };
    assert_eq!(timer.to_vtx(), (0x30 | 1 << 31, 0));
}

#[test]
fn second_level_entries_have_the_formats_each_backend_needs() {
    let page = GuestMapping { write: false, execute: true, memory_type: MemoryType::WriteBack, large: false };
    // NPT: present, user, read-only, executable; tables present, writable, user.
    assert_eq!(npt_page_entry(0x5000, page), 0x5000 | 0b101);
    assert_eq!(npt_table_entry(0x6000), 0x6000 | 0b111);
    let data = GuestMapping { write: true, execute: false, memory_type: MemoryType::Uncached, large: true };
    assert_eq!(npt_page_entry(0x20_0000, data), 0x20_0000 | 0b111 | 1 << 3 | 1 << 4 | 1 << 7 | 1 << 63);
    // EPT: read and execute, write-back, the guest's PAT ignored.
    assert_eq!(ept_page_entry(0x5000, page), 0x5000 | 0b101 | 6 << 3 | 1 << 6);
    assert_eq!(ept_page_entry(0x20_0000, data), 0x20_0000 | 0b011 | 1 << 6 | 1 << 7);
    let through = GuestMapping { memory_type: MemoryType::WriteThrough, ..page };
    assert_eq!(ept_page_entry(0, through) >> 3 & 0b111, 4);
    assert_eq!(ept_table_entry(0x6000), 0x6000 | 0b111);
    // Write-back structures, a four-level walk.
    assert_eq!(ept_pointer(0x7000), 0x7000 | 0x1e);
}

proptest! {
    /// Every exit word decodes to something (no panic), and a packed I/O
    /// access comes back as it went in.
    #[test]
    fn any_exit_decodes(code in any::<u64>(), info1 in any::<u64>(), info2 in any::<u64>(), rip in any::<u64>(),
                        reason in any::<u64>(), qualification in any::<u64>(), info in any::<u64>()) {
        let exit = decode_svm(SvmExitFields { code, info1, info2, rip });
        prop_assert!(exit.instruction_length <= 15);
        let exit = decode_vtx(VtxExitFields { reason, qualification, guest_physical: info2, instruction_length: info1,
            interruption_info: info, interruption_error: info2 });
        prop_assert!(exit.instruction_length <= 15);
    }

    #[test]
    fn io_accesses_round_trip(port in any::<u16>(), size in prop::sample::select(vec![1_u8, 2, 4]),
                              input in any::<bool>(), string in any::<bool>(), rep in any::<bool>()) {
        let access = IoAccess { port, size, input, string, rep };
        prop_assert_eq!(IoAccess::unpack(access.pack()), access);
    }

    /// A word the checks accept converts back to itself: nothing is lost
    /// or invented on the way to either backend.
    #[test]
    fn accepted_events_round_trip(word in any::<u64>()) {
        if let Ok(Some(event)) = Event::from_word(word) {
            prop_assert_eq!(event.to_word(), word);
            prop_assert_eq!(Event::from_word(event.to_svm()), Ok(Some(event)));
        }
    }
}

#[test]
fn exit_kinds_round_trip_through_their_words() {
    for kind in ExitKind::ALL {
        assert_eq!(ExitKind::from_word(kind as u64), Some(kind));
    }
    assert_eq!(ExitKind::from_word(0), None);
    assert_eq!(ExitKind::from_word(18), Some(ExitKind::Deadline), "the ABI's number");
    assert_eq!(ExitKind::from_word(19), Some(ExitKind::SoftwareInterrupt), "the ABI's number");
    assert_eq!(ExitKind::from_word(20), None);
}

#[test]
fn qualifications_unpack_what_they_pack() {
    for bits in 0..16_u64 {
        let fault = SecondLevelFault::unpack(bits);
        assert_eq!(fault.pack(), bits);
    }
    for register in 0..16_u8 {
        for write in [false, true] {
            for gpr in [None, Some(0), Some(7), Some(15)] {
                let access = ControlAccess { register, write, gpr };
                assert_eq!(ControlAccess::unpack(access.pack()), access);
            }
        }
    }
}
