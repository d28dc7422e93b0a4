use proptest::prelude::*;

use kernel_core::vcpu::{GuestField, Segment, SegmentPart};
use kernel_core::virt::EventKind;

use super::*;
use crate::cpu::{cr0, efer};
use crate::msr::{MISC_ENABLE_VALUE, POWER_ON_PAT, number};
use crate::stop::EmulationFailure;
use crate::test_support::{CODE, FakeClock, FakeMemory, FakeVcpu, Machine, Mode};

const GP0: u64 = 13 | 3 << 8 | 1 << 11 | 1 << 31;
const UD: u64 = 6 | 3 << 8 | 1 << 31;

fn new_vmm(clock: &mut FakeClock) -> Vmm<'_> {
    Vmm::new(Config::default(), clock)
}

#[test]
fn cpuid_answers_from_the_table_with_the_hardware_s_length() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[0] = 0xffff_ffff_0000_0000;
    machine.registers.general[3] = u64::MAX;
    let exit = machine.exit(ExitKind::Cpuid, 0, 2);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    let vendor = |word: u64| u32::try_from(word).expect("32 bits").to_le_bytes();
    let general = machine.registers.general;
    assert_eq!(
        (general[0], vendor(general[3]), vendor(general[2]), vendor(general[1])),
        (1, *b"Bulk", *b"head", *b"VMM ")
    );
    assert_eq!(machine.registers.rip, CODE + 2);
    assert_eq!(machine.vcpu.reads, 0, "CS's attributes, for the width of RIP, came with the exit");
    assert_eq!(vmm.counters().exits(Some(ExitKind::Cpuid)), 1);
}

#[test]
fn cpuid_without_a_length_is_decoded_with_its_prefixes() {
    for mode in Mode::ALL {
        let mut clock = FakeClock(0);
        let mut vmm = new_vmm(&mut clock);
        let mut machine = Machine::new(mode);
        machine.code(&[0x66, 0x2e, 0x0f, 0xa2]);
        machine.registers.general[0] = 0x8000_0001;
        let exit = machine.exit(ExitKind::Cpuid, 0, 0);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Resume, "{mode:?}");
        assert_eq!(machine.registers.rip, CODE + 4, "{mode:?}");
        assert_ne!(machine.registers.general[2] & u64::from(crate::cpuid::extended::LM), 0);
        // CS's attributes and base came with the exit: no ReadState.
        assert_eq!(machine.vcpu.reads, 0, "{mode:?}");
    }
}

#[test]
fn an_exit_whose_instruction_is_not_there_stops_instead_of_guessing() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0x90]);
    let exit = machine.exit(ExitKind::Cpuid, 0, 0);
    let failure = EmulationFailure::UnexpectedInstruction { mnemonic: Mnemonic::Nop };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
    assert_eq!(machine.registers.rip, CODE);
}

/// Runs RDMSR of `msr` and returns the action and EDX:EAX.
fn rdmsr(vmm: &mut Vmm<'_>, machine: &mut Machine, msr: u32) -> (Action, u64) {
    machine.registers.general[1] = u64::from(msr) | 0xdead_0000_0000_0000;
    machine.registers.general[0] = u64::MAX;
    machine.registers.general[2] = u64::MAX;
    machine.registers.rip = CODE;
    machine.registers.event = 0;
    machine.code(&[0x0f, 0x32]);
    let exit = machine.exit(ExitKind::MsrRead, 0, 0);
    let action = machine.run(vmm, &exit);
    let general = machine.registers.general;
    (action, general[2] << 32 | general[0])
}

/// Runs WRMSR of `value` to `msr` and says whether it was accepted (RIP
/// advanced, no event).
fn wrmsr(vmm: &mut Vmm<'_>, machine: &mut Machine, msr: u32, value: u64) -> bool {
    machine.registers.general[1] = u64::from(msr);
    machine.registers.general[0] = value & 0xffff_ffff | 0xffff_ffff_0000_0000;
    machine.registers.general[2] = value >> 32;
    machine.registers.rip = CODE;
    machine.registers.event = 0;
    machine.code(&[0x0f, 0x30]);
    let exit = machine.exit(ExitKind::MsrWrite, 0, 2);
    assert_eq!(machine.run(vmm, &exit), Action::Resume);
    match machine.registers.event {
        0 => {
            assert_eq!(machine.registers.rip, CODE + 2);
            true
        }
        GP0 => {
            assert_eq!(machine.registers.rip, CODE);
            false
        }
        other => panic!("event {other:#x}"),
    }
}

#[test]
fn allowlisted_msrs_read_what_the_vmm_keeps() {
    let mut clock = FakeClock(1000);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.vcpu.set(GuestField::TSC_OFFSET, 500);
    machine.vcpu.set_segment(Segment::Fs, 0x7fff_0000, 0xc93);
    for (msr, value) in [
        (number::TSC, 1500),
        (number::APIC_BASE, 0xfee0_0900),
        (number::MTRR_CAP, 0),
        (number::MISC_ENABLE, MISC_ENABLE_VALUE),
        (number::PAT, POWER_ON_PAT),
        (number::MTRR_DEF_TYPE, 0),
        (number::EFER, efer::LME | efer::LMA),
        (number::STAR, 0),
        (number::LSTAR, 0),
        (number::FS_BASE, 0x7fff_0000),
        (number::GS_BASE, 0),
        (number::KERNEL_GS_BASE, 0),
        (number::SYSENTER_EIP, 0),
    ] {
        assert_eq!(rdmsr(&mut vmm, &mut machine, msr), (Action::Resume, value), "{msr:#x}");
        assert_eq!(machine.registers.rip, CODE + 2);
        assert_eq!(machine.registers.general[0] >> 32, 0);
    }
}

#[test]
fn allowlisted_msrs_keep_what_is_written() {
    let mut clock = FakeClock(1000);
    let mut vmm = Vmm::new(Config { apic_id: 1 }, &mut clock);
    let mut machine = Machine::new(Mode::Long);
    for (msr, value) in [
        (number::PAT, 0x0006_0504_0100_0706),
        (number::MTRR_DEF_TYPE, 0xc06),
        (number::STAR, 0x0023_0010_0000_0000),
        (number::LSTAR, 0xffff_8000_0010_0000),
        (number::CSTAR, 0xffff_8000_0020_0000),
        (number::SFMASK, 0x4_7700),
        (number::KERNEL_GS_BASE, 0xffff_8800_0000_0000),
        (number::SYSENTER_CS, 0x10),
        (number::SYSENTER_ESP, 0xffff_8000_0000_8000),
        (number::SYSENTER_EIP, 0xffff_8000_0000_9000),
        (number::FS_BASE, 0x7f00_0000_1000),
        (number::GS_BASE, 0xffff_8800_0000_1000),
        (number::EFER, efer::SCE | efer::LME | efer::NXE),
    ] {
        assert!(wrmsr(&mut vmm, &mut machine, msr, value), "{msr:#x}");
        let expected = if msr == number::EFER { value | efer::LMA } else { value };
        assert_eq!(rdmsr(&mut vmm, &mut machine, msr), (Action::Resume, expected), "{msr:#x}");
    }
    assert_eq!(machine.vcpu.get(GuestField::segment(Segment::Fs, SegmentPart::Base)), 0x7f00_0000_1000);
    assert_eq!(machine.vcpu.get(GuestField::EFER), efer::SCE | efer::LME | efer::LMA | efer::NXE);
    // The TSC continues from the value written: the offset takes it.
    assert!(wrmsr(&mut vmm, &mut machine, number::TSC, 5000));
    assert_eq!(machine.vcpu.get(GuestField::TSC_OFFSET), 4000);
    assert_eq!(rdmsr(&mut vmm, &mut machine, number::TSC).1, 5000);
    // Not the bootstrap processor; the value itself may be written back.
    assert_eq!(rdmsr(&mut vmm, &mut machine, number::APIC_BASE).1, 0xfee0_0800);
    assert!(wrmsr(&mut vmm, &mut machine, number::APIC_BASE, 0xfee0_0800));
    assert!(wrmsr(&mut vmm, &mut machine, number::MISC_ENABLE, MISC_ENABLE_VALUE));
}

#[test]
fn everything_else_is_a_general_protection_fault() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    for msr in [0, 0x3a, 0x8b, 0xc000_0103, 0x4000_0000, u32::MAX] {
        let (action, _) = rdmsr(&mut vmm, &mut machine, msr);
        assert_eq!((action, machine.registers.event, machine.registers.rip), (Action::Resume, GP0, CODE));
        assert!(!wrmsr(&mut vmm, &mut machine, msr, 0), "{msr:#x}");
    }
    for (msr, value) in [
        (number::EFER, efer::LME | efer::LMA | 1 << 12), // SVME
        (number::EFER, 1 << 1),                          // reserved
        (number::EFER, efer::LMA),                       // LME cleared under paging
        (number::APIC_BASE, 0xfee0_0000),                // disabling the APIC
        (number::APIC_BASE, 0xfec0_0900),                // moving it
        (number::MISC_ENABLE, 0),
        (number::MTRR_CAP, 0),
        (number::PAT, 0x0007_0406_0007_0402), // 2 is not a memory type
        (number::PAT, 0x0007_0406_0007_0416),
        (number::MTRR_DEF_TYPE, 0x1006),
        (number::MTRR_DEF_TYPE, 0x7),
        (number::LSTAR, 0x0000_8000_0000_0000), // non-canonical
        (number::CSTAR, 0x1234_5678_9abc_def0),
        (number::KERNEL_GS_BASE, 0x8000_0000_0000_0000),
        (number::SYSENTER_EIP, 0x0001_0000_0000_0000),
        (number::FS_BASE, 0x0000_8000_0000_0000),
        (number::SFMASK, 1 << 32),
    ] {
        assert!(!wrmsr(&mut vmm, &mut machine, msr, value), "{msr:#x} {value:#x}");
    }
    assert_eq!(vmm.counters().refused_msr_accesses(), 29);
    assert_eq!(vmm.counters().injected(13), 29);
    assert_eq!(machine.vcpu.get(GuestField::EFER), efer::LME | efer::LMA);
}

#[test]
fn efer_s_long_mode_bits_follow_the_cpu() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    // Without paging LME may be set; LMA written is ignored.
    let mut machine = Machine::new(Mode::Flat32);
    assert!(wrmsr(&mut vmm, &mut machine, number::EFER, efer::LME | efer::LMA | efer::NXE));
    assert_eq!(machine.vcpu.get(GuestField::EFER), efer::LME | efer::NXE);
}

#[test]
fn hlt_halts_or_stops() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Flat32);
    machine.code(&[0xf4]);
    let exit = machine.exit(ExitKind::Hlt, 0, 0);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Halt);
    assert_eq!(machine.registers.rip, CODE + 1);
    machine.registers.rip = CODE;
    machine.registers.rflags = 0x2;
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::HaltedWithInterruptsDisabled));
    assert_eq!(machine.registers.rip, CODE + 1);
    // STI; HLT: the shadow ends with the HLT.
    machine.registers.rip = CODE;
    machine.registers.rflags = 0x202;
    machine.vcpu.set(GuestField::INTERRUPTIBILITY, 1);
    let exit = machine.exit(ExitKind::Hlt, 0, 1);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Halt);
    assert_eq!(machine.vcpu.get(GuestField::INTERRUPTIBILITY), 0);
}

#[test]
fn virtualisation_instructions_and_hypercalls_are_invalid_opcodes() {
    for kind in [ExitKind::Hypercall, ExitKind::VirtualisationInstruction, ExitKind::Xsetbv] {
        let mut clock = FakeClock(0);
        let mut vmm = new_vmm(&mut clock);
        let mut machine = Machine::new(Mode::Long);
        let exit = machine.exit(kind, 0, 3);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
        assert_eq!((machine.registers.event, machine.registers.rip), (UD, CODE), "{kind:?}");
        assert_eq!(vmm.counters().injected(6), 1);
    }
}

#[test]
fn intercepted_exceptions_are_reinjected_except_page_faults() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    let exit = machine.exit(ExitKind::Exception, 13 | 1 << 8 | 0x10 << 32, 0);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(machine.registers.event, 13 | 3 << 8 | 1 << 11 | 1 << 31 | 0x10 << 32);
    machine.registers.event = 0;
    let exit = machine.exit(ExitKind::Exception, 14 | 1 << 8 | 2 << 32, 0);
    let qualification = exit.qualification;
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::UndeliverableEvent { event: 0, other: qualification }));
    // An exception while delivering another: #DF.
    machine.registers.event = GP0;
    let exit = machine.exit(ExitKind::Exception, 11 | 1 << 8, 0);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(machine.registers.event, 8 | 3 << 8 | 1 << 11 | 1 << 31);
}

#[test]
fn the_guest_s_own_int3_goes_back_as_a_breakpoint_trap_past_it() {
    const BP: u64 = 3 | 3 << 8 | 1 << 31;
    for (kind, qualification, length) in
        [(ExitKind::Exception, 3, 1), (ExitKind::Exception, 3, 0), (ExitKind::SoftwareInterrupt, 0, 0)]
    {
        let mut clock = FakeClock(0);
        let mut vmm = new_vmm(&mut clock);
        let mut machine = Machine::new(Mode::Long);
        machine.code(&[0xcc, 0x90]);
        let exit = machine.exit(kind, qualification, length);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Resume, "{kind:?}");
        assert_eq!((machine.registers.event, machine.registers.rip), (BP, CODE + 1), "{kind:?}");
    }
}

#[test]
fn an_int_n_reported_as_a_software_interrupt_is_delivered_past_it() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0xcd, 0x80]);
    let exit = machine.exit(ExitKind::SoftwareInterrupt, 0, 0);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!((machine.registers.event, machine.registers.rip), (0x80 | 4 << 8 | 1 << 31, CODE + 2));
    // Anything else there: the guest changed its code; it stops.
    machine.registers.rip = CODE;
    machine.registers.event = 0;
    machine.code(&[0x90]);
    let failure = EmulationFailure::UnexpectedInstruction { mnemonic: Mnemonic::Nop };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
}

#[test]
fn fatal_exits_stop_the_guest() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    let cases = [
        (Some(ExitKind::TripleFault), Stop::TripleFault),
        (Some(ExitKind::Init), Stop::Init),
        (Some(ExitKind::InvalidState), Stop::InvalidState { reason: 0x1234 }),
        (Some(ExitKind::Other), Stop::UnhandledExit { kind: Some(ExitKind::Other), reason: 0x1234, qualification: 7 }),
        (
            Some(ExitKind::HostInterrupt),
            Stop::UnhandledExit { kind: Some(ExitKind::HostInterrupt), reason: 0x1234, qualification: 7 },
        ),
        (None, Stop::UnhandledExit { kind: None, reason: 0x1234, qualification: 7 }),
    ];
    for (kind, stop) in cases {
        let exit = GuestExit { kind, ..machine.exit(ExitKind::Other, 7, 0) };
        assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(stop));
    }
    let exit = machine.exit(ExitKind::InterruptWindow, 0, 0);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
}

#[test]
fn an_event_being_delivered_comes_before_the_instruction() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    let interrupt = Event { vector: 0x20, kind: EventKind::External, error_code: None }.to_word();
    machine.registers.event = interrupt;
    for kind in [ExitKind::Cpuid, ExitKind::Hlt, ExitKind::MsrWrite, ExitKind::Hypercall] {
        let exit = machine.exit(kind, 0, 2);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
        assert_eq!((machine.registers.event, machine.registers.rip), (interrupt, CODE));
    }
    assert_eq!(vmm.counters().deferred_exits(), 4);
    // A second-level fault while delivering cannot be emulated.
    let mut exit = machine.exit(ExitKind::SecondLevelFault, 0b10, 0);
    exit.guest_physical = 0xfee0_0000;
    assert_eq!(
        machine.run(&mut vmm, &exit),
        Action::Stop(Stop::UndeliverableEvent { event: interrupt, other: 0xfee0_0000 })
    );
    // An intercepted exception during an interrupt's delivery: one event
    // per entry, and the interrupt cannot wait.
    let exception = machine.exit(ExitKind::Exception, 13 | 1 << 8, 0);
    assert_eq!(
        machine.run(&mut vmm, &exception),
        Action::Stop(Stop::UndeliverableEvent { event: interrupt, other: GP0 })
    );
    machine.registers.event = 1 << 30;
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::MalformedPendingEvent { word: 1 << 30 }));
}

#[test]
fn an_exit_flood_is_counted_and_costs_nothing_else() {
    let mut clock = FakeClock(0);
    let mut vmm = new_vmm(&mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0x0f, 0xa2]);
    let cpuid = machine.exit(ExitKind::Cpuid, 0, 2);
    let window = machine.exit(ExitKind::InterruptWindow, 0, 0);
    let vmcall = machine.exit(ExitKind::Hypercall, 0, 3);
    for _ in 0..50_000 {
        machine.registers.rip = CODE;
        machine.registers.event = 0;
        for exit in [&cpuid, &window, &vmcall] {
            assert_eq!(machine.run(&mut vmm, exit), Action::Resume);
        }
    }
    let counters = vmm.counters();
    assert_eq!(counters.total_exits(), 150_000);
    assert_eq!(counters.exits(Some(ExitKind::Cpuid)), 50_000);
    assert_eq!(counters.exits(Some(ExitKind::InterruptWindow)), 50_000);
    assert_eq!(counters.injected(6), 50_000);
}

#[test]
fn registers_vmenter_would_refuse_stop_the_guest() {
    let mut clock = FakeClock(0);
    let mut device = crate::devices::TestMmioDevice::new();
    let mut vmm = new_vmm(&mut clock);
    vmm.register_mmio(crate::test_support::MMIO_BASE, 0x1000, &mut device).unwrap();
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[3] = crate::test_support::MMIO_BASE;
    // mov [rbx+8], rax: the scratch register takes a non-canonical value.
    machine.registers.general[0] = 0x8000_0000_0000_0000;
    machine.code(&[0x48, 0x89, 0x43, 0x08]);
    let mut exit = machine.exit(ExitKind::SecondLevelFault, 0b10, 0);
    exit.guest_physical = crate::test_support::MMIO_BASE + 8;
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    // mov rsp, [rbx+8]
    machine.code(&[0x48, 0x8b, 0x63, 0x08]);
    exit.qualification = 0b01;
    assert_eq!(
        machine.run(&mut vmm, &exit),
        Action::Stop(Stop::UnenterableRegisters { rip: CODE + 8, rsp: 0x8000_0000_0000_0000 })
    );
}

/// The kinds' words and a few beyond them.
fn any_kind() -> impl Strategy<Value = Option<ExitKind>> {
    (0_u64..20).prop_map(ExitKind::from_word)
}

fn any_mode() -> impl Strategy<Value = Mode> {
    proptest::sample::select(Mode::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the exit, the registers and the code: no panic, and the
    /// guest either goes on with registers VMEnter accepts or stops.
    #[test]
    fn arbitrary_exits_never_panic(
        mode in any_mode(),
        kind in any_kind(),
        qualification in any::<u64>(),
        guest_physical in prop_oneof![any::<u64>(), 0x10_0000_u64..0x10_1000, 0_u64..0x10_0000],
        length in 0_u64..20,
        general in proptest::array::uniform16(any::<u64>()),
        rip in prop_oneof![Just(CODE), any::<u64>()],
        rflags in any::<u64>(),
        event in prop_oneof![Just(0_u64), Just(GP0), any::<u64>()],
        code in proptest::collection::vec(any::<u8>(), 15),
        interruptibility in 0_u64..4,
    ) {
        let mut clock = FakeClock(7);
        let mut console_lines = Lines;
        let mut console = crate::devices::DebugConsole::new(&mut console_lines);
        let mut exit_port = crate::devices::TestExitPort;
        let mut device = crate::devices::TestMmioDevice::new();
        let mut vmm = new_vmm(&mut clock);
        vmm.register_ports(0xe9, 0xe9, &mut console).unwrap();
        vmm.register_ports(0xf4, 0xf4, &mut exit_port).unwrap();
        vmm.register_mmio(crate::test_support::MMIO_BASE, 0x1000, &mut device).unwrap();
        let mut machine = Machine::new(mode);
        machine.code(&code);
        machine.vcpu.set(GuestField::INTERRUPTIBILITY, interruptibility);
        machine.registers.general = general;
        machine.registers.rip = rip;
        machine.registers.rflags = rflags;
        machine.registers.event = event;
        let mut exit = GuestExit { kind, ..machine.exit(ExitKind::Other, qualification, length) };
        exit.guest_physical = guest_physical;
        let action = machine.run(&mut vmm, &exit);
        if matches!(action, Action::Resume | Action::Halt) {
            prop_assert!(is_canonical(machine.registers.rip));
            prop_assert!(is_canonical(machine.registers.general[4]));
            prop_assert!(Event::from_word(machine.registers.event).is_ok());
        }
        prop_assert_eq!(machine.registers.rflags, rflags);
        prop_assert_eq!(vmm.counters().total_exits(), 1);
    }

    /// Arbitrary MSR numbers and values: emulated or #GP, never more.
    #[test]
    fn arbitrary_msr_accesses_are_emulated_or_refused(msr in prop_oneof![any::<u32>(), 0xc000_0080_u32..0xc000_0110, 0_u32..0x300], value: u64, write: bool) {
        let mut clock = FakeClock(7);
        let mut vmm = new_vmm(&mut clock);
        let mut machine = Machine::new(Mode::Long);
        machine.registers.general[1] = u64::from(msr);
        machine.registers.general[0] = value & 0xffff_ffff;
        machine.registers.general[2] = value >> 32;
        let kind = if write { ExitKind::MsrWrite } else { ExitKind::MsrRead };
        let exit = machine.exit(kind, 0, 2);
        prop_assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
        match machine.registers.event {
            0 => prop_assert_eq!(machine.registers.rip, CODE + 2),
            GP0 => {
                prop_assert_eq!(machine.registers.rip, CODE);
                prop_assert_eq!(vmm.counters().refused_msr_accesses(), 1);
            }
            other => prop_assert!(false, "event {:#x}", other),
        }
        prop_assert_eq!(machine.vcpu.get(GuestField::EFER) & !(efer::SCE | efer::NXE), efer::LME | efer::LMA);
        prop_assert_eq!(machine.vcpu.get(GuestField::CR0) & cr0::PG, cr0::PG);
    }
}

/// A console that keeps nothing.
#[derive(Default)]
struct Lines;

impl crate::devices::Console for Lines {
    fn write_line(&mut self, _line: &[u8]) {}
}

#[test]
fn devices_cannot_overlap_or_overflow_a_bus() {
    let mut clock = FakeClock(0);
    let mut ports: [crate::devices::TestExitPort; 20] = Default::default();
    let mut devices: [crate::devices::TestMmioDevice; 20] = Default::default();
    let mut vmm = new_vmm(&mut clock);
    let mut ports = ports.iter_mut();
    let mut devices = devices.iter_mut();
    assert_eq!(vmm.register_ports(0x10, 0xf, ports.next().unwrap()), Err(RegisterError::EmptyRange));
    assert_eq!(vmm.register_mmio(0x1000, 0, devices.next().unwrap()), Err(RegisterError::EmptyRange));
    assert_eq!(vmm.register_mmio(u64::MAX, 2, devices.next().unwrap()), Err(RegisterError::EmptyRange));
    assert_eq!(vmm.register_ports(0x10, 0x17, ports.next().unwrap()), Ok(()));
    assert_eq!(vmm.register_ports(0x17, 0x18, ports.next().unwrap()), Err(RegisterError::Overlap));
    assert_eq!(vmm.register_mmio(0x1000, 0x1000, devices.next().unwrap()), Ok(()));
    assert_eq!(vmm.register_mmio(0x1fff, 0x1, devices.next().unwrap()), Err(RegisterError::Overlap));
    assert_eq!(vmm.register_mmio(u64::MAX, 1, devices.next().unwrap()), Ok(()));
    for port in 0..15_u16 {
        assert_eq!(vmm.register_ports(0x100 + port, 0x100 + port, ports.next().unwrap()), Ok(()));
    }
    assert_eq!(vmm.register_ports(0x200, 0x200, ports.next().unwrap()), Err(RegisterError::Full));
}

#[test]
fn the_vcpu_s_state_fakes_check_as_the_kernel_does() {
    let mut vcpu = FakeVcpu::new();
    assert_eq!(VcpuState::write(&mut vcpu, GuestField::CR4, 1 << 13), Err(bulkhead_components::Error::InvalidArgument));
    let _ = FakeMemory::default();
}
