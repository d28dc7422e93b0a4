use super::*;
use crate::test_support::{CODE, DeadVcpu, FakeMemory, Machine, Mode};

/// Runs `check` on a guest view of `machine`.
fn with_guest<R>(
    machine: &mut Machine,
    check: impl FnOnce(&mut Guest<'_, crate::test_support::FakeVcpu, FakeMemory>) -> R,
) -> R {
    let control = machine.vcpu.control();
    let mut guest = Guest::new(&mut machine.registers, &mut machine.vcpu, &mut machine.memory, control);
    check(&mut guest)
}

#[test]
fn bitness_follows_the_mode_and_cs() {
    for (mode, bitness) in [
        (Mode::Real, Bitness::Bits16),
        (Mode::Flat32, Bitness::Bits32),
        (Mode::Paged32, Bitness::Bits32),
        (Mode::Pae, Bitness::Bits32),
        (Mode::Long, Bitness::Bits64),
    ] {
        let mut machine = Machine::new(mode);
        assert_eq!(with_guest(&mut machine, |guest| guest.bitness()), Ok(bitness), "{mode:?}");
    }
    // Compatibility mode: long mode with a 32-bit code segment.
    let mut machine = Machine::new(Mode::Long);
    machine.vcpu.set_segment(Segment::Cs, 0, 0xc9b);
    assert_eq!(with_guest(&mut machine, |guest| guest.bitness()), Ok(Bitness::Bits32));
    // Virtual-8086 mode.
    let mut machine = Machine::new(Mode::Flat32);
    machine.registers.rflags |= rflags::VM;
    assert_eq!(with_guest(&mut machine, |guest| guest.bitness()), Ok(Bitness::Bits16));
}

#[test]
fn instructions_are_fetched_at_cs_base_plus_rip_in_every_mode() {
    for mode in Mode::ALL {
        let mut machine = Machine::new(mode);
        machine.code(&[0x66, 0x0f, 0xa2]);
        let instruction = with_guest(&mut machine, |guest| guest.fetch_instruction()).unwrap();
        assert_eq!((instruction.mnemonic(), instruction.len()), (Mnemonic::Cpuid, 3), "{mode:?}");
    }
    let mut machine = Machine::new(Mode::Real);
    machine.vcpu.set_segment(Segment::Cs, 0x7000, 0x9b);
    machine.registers.rip = 0x1000;
    machine.memory.put(0x8000, &[0xf4]);
    let instruction = with_guest(&mut machine, |guest| guest.fetch_instruction()).unwrap();
    assert_eq!(instruction.mnemonic(), Mnemonic::Hlt);
}

#[test]
fn an_instruction_may_end_just_before_a_missing_page() {
    let mut machine = Machine::new(Mode::Long);
    machine.memory.put_u64(0x4000 + 9 * 8, 0);
    machine.registers.rip = 0x8ffe;
    machine.code(&[0x0f, 0xa2]);
    assert_eq!(with_guest(&mut machine, |guest| guest.fetch_instruction().map(|i| i.len())), Ok(2));
    machine.code(&[0xb8, 0x01]);
    let fault = TranslationFault::PageFault { linear: 0x9000, error_code: 0b1_0000 };
    let failure = Fault::Stop(Stop::Emulation { rip: 0x8ffe, failure: EmulationFailure::Fetch(fault) });
    assert_eq!(with_guest(&mut machine, |guest| guest.fetch_instruction().map(|i| i.len())), Err(failure));
}

#[test]
fn unfetchable_and_undecodable_code_stops() {
    let mut machine = Machine::new(Mode::Real);
    machine.vcpu.set_segment(Segment::Cs, 0xffff_0000, 0x9b);
    let fault = with_guest(&mut machine, |guest| guest.fetch_instruction()).unwrap_err();
    let unbacked = TranslationFault::Unbacked { guest_physical: 0xffff_8000 };
    assert_eq!(fault, Fault::Stop(Stop::Emulation { rip: CODE, failure: EmulationFailure::Fetch(unbacked) }));
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0xf0, 0x90]);
    let fault = with_guest(&mut machine, |guest| guest.fetch_instruction()).unwrap_err();
    assert!(matches!(fault, Fault::Stop(Stop::Emulation { failure: EmulationFailure::Undecodable { .. }, .. })));
}

#[test]
fn rip_wraps_at_the_code_s_width() {
    let mut machine = Machine::new(Mode::Real);
    machine.registers.rip = 0xffff;
    assert_eq!(with_guest(&mut machine, |guest| guest.next_rip(2)), Ok(1));
    let mut machine = Machine::new(Mode::Flat32);
    machine.registers.rip = 0xffff_ffff;
    assert_eq!(with_guest(&mut machine, |guest| guest.next_rip(3)), Ok(2));
    let mut machine = Machine::new(Mode::Long);
    machine.registers.rip = 0x7fff_ffff_fffe;
    assert_eq!(with_guest(&mut machine, |guest| guest.next_rip(1)), Ok(0x7fff_ffff_ffff));
    assert_eq!(with_guest(&mut machine, |guest| guest.next_rip(2)), Err(Fault::Inject(Exception::GENERAL_PROTECTION)));
}

#[test]
fn retiring_ends_an_interrupt_shadow() {
    let mut machine = Machine::new(Mode::Long);
    with_guest(&mut machine, |guest| guest.retire(CODE + 2)).unwrap();
    assert_eq!(machine.registers.rip, CODE + 2);
    assert!(machine.vcpu.writes.is_empty(), "no shadow, no write");
    machine.vcpu.set(GuestField::INTERRUPTIBILITY, 1);
    with_guest(&mut machine, |guest| guest.retire(CODE + 4)).unwrap();
    assert_eq!(machine.vcpu.get(GuestField::INTERRUPTIBILITY), 0);
}

#[test]
fn operand_addresses_add_the_segment_base_outside_64_bit_mode() {
    let mut machine = Machine::new(Mode::Flat32);
    machine.vcpu.set_segment(Segment::Ds, 0x1_0000, 0xc93);
    machine.registers.general[3] = 0x20;
    machine.code(&[0x8b, 0x43, 0x04]); // mov eax, [ebx+4]
    let address = with_guest(&mut machine, |guest| {
        let instruction = guest.fetch_instruction()?;
        guest.operand_address(&instruction, 1)
    });
    assert_eq!(address, Ok(0x1_0024));
    // 64-bit mode: DS's base is ignored, FS's is not; RIP-relative works.
    let mut machine = Machine::new(Mode::Long);
    machine.vcpu.set_segment(Segment::Ds, 0x1_0000, 0xc93);
    machine.vcpu.set_segment(Segment::Fs, 0x7000_0000, 0xc93);
    machine.registers.general[3] = 0x20;
    for (code, expected) in [
        (&[0x8b, 0x43, 0x04][..], 0x24),
        (&[0x64, 0x8b, 0x03][..], 0x7000_0020),
        (&[0x8b, 0x05, 0x00, 0x01, 0x00, 0x00][..], CODE + 6 + 0x100),
    ] {
        machine.code(code);
        let address = with_guest(&mut machine, |guest| {
            let instruction = guest.fetch_instruction()?;
            guest.operand_address(&instruction, 1)
        });
        assert_eq!(address, Ok(expected), "{code:x?}");
    }
}

#[test]
fn ring_three_makes_user_accesses() {
    let mut machine = Machine::new(Mode::Long);
    assert!(!with_guest(&mut machine, |guest| guest.data_access(Access::Read)).unwrap().user);
    machine.vcpu.set_segment(Segment::Ss, 0, 0xcf3);
    assert!(with_guest(&mut machine, |guest| guest.data_access(Access::Read)).unwrap().user);
}

#[test]
fn refused_state_accesses_stop_the_guest() {
    let mut machine = Machine::new(Mode::Long);
    let control = machine.vcpu.control();
    let mut vcpu = DeadVcpu;
    let mut guest = Guest::new(&mut machine.registers, &mut vcpu, &mut machine.memory, control);
    let field = GuestField::segment(Segment::Cs, SegmentPart::Attributes);
    assert_eq!(guest.bitness(), Err(Fault::Stop(Stop::KernelRefused { field, error: Error::InvalidCapability })));
    assert_eq!(
        guest.write_field(GuestField::CR0, 0),
        Err(Fault::Stop(Stop::KernelRefused { field: GuestField::CR0, error: Error::InvalidCapability }))
    );
}

#[test]
fn a_fetch_reads_the_privilege_level_only_under_smep() {
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0x0f, 0xa2]);
    with_guest(&mut machine, |guest| guest.fetch_instruction()).unwrap();
    assert_eq!(machine.vcpu.reads, 2, "CS's attributes and base");
    // Under SMEP, ring 3 fetches from its own (user) pages.
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0x0f, 0xa2]);
    machine.vcpu.set(GuestField::CR4, machine.vcpu.get(GuestField::CR4) | cr4::SMEP);
    machine.vcpu.set_segment(Segment::Ss, 0, 0xcf3);
    with_guest(&mut machine, |guest| guest.fetch_instruction()).unwrap();
    assert_eq!(machine.vcpu.reads, 3);
    // Ring 0 may not fetch from a user page there.
    machine.vcpu.set_segment(Segment::Ss, 0, 0xc93);
    let fault = TranslationFault::PageFault { linear: CODE, error_code: 0b1_0001 };
    let failure = Fault::Stop(Stop::Emulation { rip: CODE, failure: EmulationFailure::Fetch(fault) });
    assert_eq!(with_guest(&mut machine, |guest| guest.fetch_instruction()).map(|i| i.len()), Err(failure));
}
