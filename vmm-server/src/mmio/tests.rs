use bulkhead_components::vcpu::GuestExit;
use kernel_core::vcpu::Segment;
use kernel_core::virt::{Event, ExitKind};
use proptest::prelude::*;

use super::*;
use crate::devices::{TEST_DEVICE_ID, TestMmioDevice};
use crate::test_support::{CODE, FakeClock, MMIO_BASE, Machine, Mode};
use crate::vmm::{Action, Config, Vmm};

const READ: u64 = SecondLevelFault { read: true, write: false, fetch: false, mapped: false }.pack();
const WRITE: u64 = SecondLevelFault { read: false, write: true, fetch: false, mapped: false }.pack();
const FETCH: u64 = SecondLevelFault { read: false, write: false, fetch: true, mapped: false }.pack();

fn fault(machine: &Machine, qualification: u64, guest_physical: u64) -> GuestExit {
    GuestExit { guest_physical, ..machine.exit(ExitKind::SecondLevelFault, qualification, 0) }
}

/// Runs `code` in `mode` against a test device at [`MMIO_BASE`], with
/// RBX pointing at it; returns the action and the machine.
fn run(mode: Mode, code: &[u8], qualification: u64, offset: u64, device: &mut TestMmioDevice) -> (Action, Machine) {
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_mmio(MMIO_BASE, 0x1000, device).unwrap();
    let mut machine = Machine::new(mode);
    machine.registers.general[3] = MMIO_BASE;
    machine.registers.general[0] = 0x1111_2222_3333_4444;
    machine.code(code);
    let exit = fault(&machine, qualification, MMIO_BASE + offset);
    let action = machine.run(&mut vmm, &exit);
    (action, machine)
}

#[test]
fn loads_read_the_device_in_every_mode() {
    for mode in [Mode::Flat32, Mode::Paged32, Mode::Pae] {
        let mut device = TestMmioDevice::new();
        let (action, machine) = run(mode, &[0x8b, 0x03], READ, 0, &mut device); // mov eax, [ebx]
        assert_eq!(action, Action::Resume, "{mode:?}");
        assert_eq!((machine.registers.general[0], machine.registers.rip), (TEST_DEVICE_ID & 0xffff_ffff, CODE + 2));
    }
    // mov eax, [0x100004]: a moffs operand.
    let mut device = TestMmioDevice::new();
    let (action, machine) = run(Mode::Flat32, &[0xa1, 0x04, 0x00, 0x10, 0x00], READ, 4, &mut device);
    assert_eq!((action, machine.registers.general[0]), (Action::Resume, TEST_DEVICE_ID >> 32));
    let (action, machine) = run(Mode::Long, &[0x48, 0x8b, 0x03], READ, 0, &mut device); // mov rax, [rbx]
    assert_eq!(
        (action, machine.registers.general[0], machine.registers.rip),
        (Action::Resume, TEST_DEVICE_ID, CODE + 3)
    );
    // Real mode: DS:BX, with DS's base at the device.
    let mut clock = FakeClock(0);
    let mut device = TestMmioDevice::new();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_mmio(MMIO_BASE, 0x1000, &mut device).unwrap();
    let mut machine = Machine::new(Mode::Real);
    machine.vcpu.set_segment(Segment::Ds, MMIO_BASE, 0x93);
    machine.registers.general[3] = 2;
    machine.code(&[0x8b, 0x07]); // mov ax, [bx]
    let exit = fault(&machine, READ, MMIO_BASE + 2);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(machine.registers.general[0], u64::from(u16::from_le_bytes(*b"LK")));
    assert_eq!(vmm.counters().mmio_accesses(), 1);
}

#[test]
fn stores_reach_the_scratch_register() {
    let mut device = TestMmioDevice::new();
    let (action, _) = run(Mode::Long, &[0x48, 0x89, 0x43, 0x08], WRITE, 8, &mut device); // mov [rbx+8], rax
    assert_eq!(action, Action::Resume);
    assert_eq!(device.scratch(), 0x1111_2222_3333_4444);
    // mov qword [rbx+8], -2 (an imm32 sign-extended)
    let (action, _) = run(Mode::Long, &[0x48, 0xc7, 0x43, 0x08, 0xfe, 0xff, 0xff, 0xff], WRITE, 8, &mut device);
    assert_eq!(action, Action::Resume);
    assert_eq!(device.scratch(), u64::MAX - 1);
    // mov byte [rbx+9], 0x5a ; mov word [rbx+10], ax ; mov [rbx+12], ah
    let (action, _) = run(Mode::Long, &[0xc6, 0x43, 0x09, 0x5a], WRITE, 9, &mut device);
    assert_eq!(action, Action::Resume);
    run(Mode::Long, &[0x66, 0x89, 0x43, 0x0a], WRITE, 10, &mut device);
    run(Mode::Long, &[0x88, 0x63, 0x0c], WRITE, 12, &mut device);
    assert_eq!(device.scratch(), 0xffff_ff44_4444_5afe);
}

#[test]
fn extending_loads_extend() {
    let mut device = TestMmioDevice::new();
    assert!(device.write(8, AccessSize::Qword, 0x8000_8080_0000_0080).is_continue());
    let cases: [(&[u8], u64); 6] = [
        (&[0x0f, 0xb6, 0x43, 0x08], 0x80),                        // movzx eax, byte [rbx+8]
        (&[0x48, 0x0f, 0xbe, 0x43, 0x08], 0xffff_ffff_ffff_ff80), // movsx rax, byte [rbx+8]
        (&[0x0f, 0xbf, 0x43, 0x0c], 0xffff_8080),                 // movsx eax, word [rbx+12]
        (&[0x48, 0x63, 0x43, 0x0c], 0xffff_ffff_8000_8080),       // movsxd rax, dword [rbx+12]
        (&[0x66, 0x0f, 0xb6, 0x43, 0x08], 0x1111_2222_3333_0080), // movzx ax, byte [rbx+8]
        (&[0x8a, 0x63, 0x08], 0x1111_2222_3333_8044),             // mov ah, [rbx+8]
    ];
    for (code, expected) in cases {
        let offset = u64::from(code[code.len() - 1]);
        let (action, machine) = run(Mode::Long, code, READ, offset, &mut device);
        assert_eq!(action, Action::Resume, "{code:x?}");
        assert_eq!(machine.registers.general[0], expected, "{code:x?}");
        assert_eq!(machine.registers.rip, CODE + code.len() as u64);
    }
}

#[test]
fn outside_every_device_is_open_bus() {
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[3] = 0x1f_0000;
    machine.code(&[0x8b, 0x0b]); // mov ecx, [rbx]
    machine.registers.general[1] = u64::MAX;
    let exit = fault(&machine, READ, 0x1f_0000);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!((machine.registers.general[1], machine.registers.rip), (0xffff_ffff, CODE + 2));
    machine.registers.rip = CODE;
    machine.code(&[0x89, 0x03]); // mov [rbx], eax
    let exit = fault(&machine, WRITE, 0x1f_0000);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(machine.registers.rip, CODE + 2);
    assert_eq!(vmm.counters().open_bus_accesses(), 2);
    assert_eq!(vmm.counters().mmio_accesses(), 0);
}

fn failure_of(action: Action) -> EmulationFailure {
    match action {
        Action::Stop(Stop::Emulation { rip: CODE, failure }) => failure,
        other => panic!("not an emulation stop: {other:?}"),
    }
}

#[test]
fn instructions_other_than_moves_stop_the_guest() {
    for (code, mnemonic) in [
        (&[0x01, 0x03][..], Mnemonic::Add),          // add [rbx], eax
        (&[0x87, 0x03][..], Mnemonic::Xchg),         // xchg [rbx], eax
        (&[0xf3, 0x48, 0xa5][..], Mnemonic::Movsq),  // rep movsq
        (&[0x0f, 0x10, 0x03][..], Mnemonic::Movups), // movups xmm0, [rbx]
        (&[0x8c, 0x1b][..], Mnemonic::Mov),          // mov [rbx], ds
        (&[0xff, 0x23][..], Mnemonic::Jmp),          // jmp [rbx]
    ] {
        let mut device = TestMmioDevice::new();
        let (action, _) = run(Mode::Long, code, WRITE, 0, &mut device);
        assert_eq!(failure_of(action), EmulationFailure::UnsupportedInstruction { mnemonic }, "{code:x?}");
        assert_eq!(device.writes(), 0);
    }
}

#[test]
fn an_operand_elsewhere_than_the_fault_stops_the_guest() {
    let mut device = TestMmioDevice::new();
    // The exit says +8, the instruction touches +0: a race or an attack.
    let (action, _) = run(Mode::Long, &[0x89, 0x03], WRITE, 8, &mut device);
    assert_eq!(failure_of(action), EmulationFailure::AddressMismatch { decoded: MMIO_BASE, reported: MMIO_BASE + 8 });
    // A store where the fault says read.
    let (action, _) = run(Mode::Long, &[0x89, 0x03], READ, 0, &mut device);
    assert_eq!(failure_of(action), EmulationFailure::DirectionMismatch);
    assert_eq!(device.writes(), 0);
    // A fault inside the access (its second byte) is the access's.
    let (action, _) = run(Mode::Long, &[0x89, 0x03], WRITE, 2, &mut device);
    assert_eq!(action, Action::Resume);
}

#[test]
fn split_accesses_and_fetches_stop_the_guest() {
    let mut device = TestMmioDevice::new();
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_mmio(MMIO_BASE, 0x10, &mut device).unwrap();
    let mut machine = Machine::new(Mode::Long);
    // Over the device's end.
    machine.registers.general[3] = MMIO_BASE + 0xc;
    machine.code(&[0x48, 0x8b, 0x03]);
    let exit = fault(&machine, READ, MMIO_BASE + 0xc);
    let failure = EmulationFailure::SplitAccess { guest_physical: MMIO_BASE + 0xc };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
    // Over a page boundary.
    machine.registers.general[3] = MMIO_BASE + 0xffe;
    let exit = fault(&machine, READ, MMIO_BASE + 0xffe);
    let failure = EmulationFailure::SplitAccess { guest_physical: MMIO_BASE + 0xffe };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
    // Running code from device memory.
    let exit = fault(&machine, FETCH, MMIO_BASE);
    let failure = EmulationFailure::FetchFromUnbacked { guest_physical: MMIO_BASE };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
}

#[test]
fn a_fault_during_event_delivery_is_not_emulated() {
    let mut device = TestMmioDevice::new();
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_mmio(MMIO_BASE, 0x1000, &mut device).unwrap();
    let mut machine = Machine::new(Mode::Long);
    let event = Event { vector: 13, kind: kernel_core::virt::EventKind::Exception, error_code: Some(0) }.to_word();
    machine.registers.event = event;
    machine.code(&[0x89, 0x03]);
    let exit = fault(&machine, WRITE, MMIO_BASE);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::UndeliverableEvent { event, other: MMIO_BASE }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Arbitrary bytes at RIP in any mode, at an MMIO fault: a stop, an
    /// injected fault, or an emulated move, never a panic.
    #[test]
    fn arbitrary_instructions_at_an_mmio_fault_never_panic(
        mode in proptest::sample::select(Mode::ALL.to_vec()),
        code in proptest::collection::vec(any::<u8>(), 15),
        general in proptest::array::uniform16(prop_oneof![Just(MMIO_BASE), any::<u64>(), 0_u64..0x20_0000]),
        qualification in 0_u64..16,
        offset in 0_u64..0x1010,
    ) {
        let mut device = TestMmioDevice::new();
        let mut clock = FakeClock(0);
        let mut vmm = Vmm::new(Config::default(), &mut clock);
        vmm.register_mmio(MMIO_BASE, 0x1000, &mut device).unwrap();
        let mut machine = Machine::new(mode);
        machine.registers.general = general;
        machine.code(&code);
        let exit = fault(&machine, qualification, MMIO_BASE + offset);
        match machine.run(&mut vmm, &exit) {
            Action::Resume => prop_assert!(machine.registers.rip != CODE || machine.registers.event != 0),
            Action::Halt => prop_assert!(false, "MMIO never halts"),
            Action::Stop(_) => prop_assert_eq!(machine.registers.rip, CODE),
        }
    }
}
