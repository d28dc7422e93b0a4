use bulkhead_components::vcpu::GuestExit;
use kernel_core::virt::{ControlAccess, ExitKind};

use super::*;
use crate::test_support::{CODE, DATA, FakeClock, Machine, Mode};
use crate::vmm::{Action, Config, Vmm};
use crate::{EmulationFailure, Stop};

const GP0: u64 = 13 | 3 << 8 | 1 << 11 | 1 << 31;
const UD: u64 = 6 | 3 << 8 | 1 << 31;

/// A control-register exit as `vtx` reports it (register named, length
/// given) or as `svm` does (neither).
fn exit(machine: &Machine, register: u8, write: bool, gpr: Option<u8>, length: u64) -> GuestExit {
    machine.exit(ExitKind::ControlRegister, ControlAccess { register, write, gpr }.pack(), length)
}

fn run(machine: &mut Machine, exit: &GuestExit) -> Action {
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    machine.run(&mut vmm, exit)
}

#[test]
fn mov_to_cr_with_a_named_register_writes_the_field() {
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[9] = 0x2000;
    let exit = exit(&machine, 3, true, Some(9), 3);
    assert_eq!(run(&mut machine, &exit), Action::Resume);
    assert_eq!((machine.vcpu.get(GuestField::CR3), machine.registers.rip), (0x2000, CODE + 3));
}

#[test]
fn mov_to_and_from_cr_without_a_named_register_is_decoded() {
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[3] = cr4::PAE | cr4::PGE | cr4::OSFXSR;
    machine.code(&[0x0f, 0x22, 0xe3]); // mov cr4, rbx
    let write = exit(&machine, 4, true, None, 0);
    assert_eq!(run(&mut machine, &write), Action::Resume);
    assert_eq!(
        (machine.vcpu.get(GuestField::CR4), machine.registers.rip),
        (cr4::PAE | cr4::PGE | cr4::OSFXSR, CODE + 3)
    );
    machine.registers.rip = CODE;
    machine.registers.general[13] = u64::MAX;
    machine.code(&[0x41, 0x0f, 0x20, 0xdd]); // mov r13, cr3
    let read = exit(&machine, 3, false, None, 0);
    assert_eq!(run(&mut machine, &read), Action::Resume);
    assert_eq!((machine.registers.general[13], machine.registers.rip), (0x1000, CODE + 4));
}

#[test]
fn a_decoded_instruction_must_match_the_exit() {
    let mut machine = Machine::new(Mode::Long);
    machine.code(&[0x0f, 0x22, 0xc0]); // mov cr0, rax
    let wrong = exit(&machine, 3, true, None, 0);
    let failure = EmulationFailure::UnexpectedInstruction { mnemonic: Mnemonic::Mov };
    assert_eq!(run(&mut machine, &wrong), Action::Stop(Stop::Emulation { rip: CODE, failure }));
    machine.code(&[0x0f, 0xa2]);
    let failure = EmulationFailure::UnexpectedInstruction { mnemonic: Mnemonic::Cpuid };
    let exit = exit(&machine, 0, true, None, 0);
    assert_eq!(run(&mut machine, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
}

/// Writes `value` to CR`register` through RAX and says whether it was
/// accepted (else the event is #GP and RIP stays).
fn write(machine: &mut Machine, register: u8, value: u64) -> bool {
    machine.registers.general[0] = value;
    machine.registers.rip = CODE;
    machine.registers.event = 0;
    let exit = exit(machine, register, true, Some(0), 3);
    assert_eq!(run(machine, &exit), Action::Resume);
    match machine.registers.event {
        0 => true,
        GP0 => {
            assert_eq!(machine.registers.rip, CODE);
            false
        }
        other => panic!("event {other:#x}"),
    }
}

#[test]
fn writes_the_cpu_would_refuse_are_general_protection_faults() {
    let mut machine = Machine::new(Mode::Long);
    let cr0_now = machine.vcpu.get(GuestField::CR0);
    assert!(!write(&mut machine, 4, cr4::PAE | 1 << 13), "VMXE");
    assert!(!write(&mut machine, 4, cr4::PAE | 1 << 18), "OSXSAVE: CPUID hides XSAVE");
    assert!(!write(&mut machine, 4, cr4::PAE | cr4::PCIDE), "PCID is not advertised");
    assert!(!write(&mut machine, 4, cr4::PSE), "PAE off in long mode");
    assert!(!write(&mut machine, 0, cr0_now | 1 << 32), "CR0 bits 32..64");
    assert!(!write(&mut machine, 0, cr0_now & !cr0::PG), "leaving long mode from 64-bit code");
    assert!(!write(&mut machine, 0, cr0_now & !cr0::PE), "PG without PE");
    assert!(!write(&mut machine, 0, cr0_now | cr0::NW), "NW without CD");
    assert!(!write(&mut machine, 3, 1 << 40), "beyond 36 physical-address bits");
    assert!(!write(&mut machine, 8, 16), "CR8 above 15");
    assert_eq!(machine.vcpu.get(GuestField::CR0), cr0_now);
    assert!(machine.vcpu.writes.is_empty());
}

#[test]
fn cr0_ignores_reserved_low_bits_and_keeps_et() {
    let mut machine = Machine::new(Mode::Flat32);
    assert!(write(&mut machine, 0, cr0::PE | 0xffc0 | cr0::CD | cr0::NW));
    assert_eq!(machine.vcpu.get(GuestField::CR0), cr0::PE | cr0::ET | cr0::CD | cr0::NW);
}

#[test]
fn paging_with_lme_enters_long_mode_and_leaving_it_exits() {
    let mut machine = Machine::new(Mode::Flat32);
    machine.vcpu.set(GuestField::EFER, efer::LME);
    machine.vcpu.set(GuestField::CR3, 0x1000);
    assert!(!write(&mut machine, 0, cr0::PE | cr0::PG), "long mode needs PAE");
    machine.vcpu.set(GuestField::CR4, cr4::PAE);
    assert!(write(&mut machine, 0, cr0::PE | cr0::PG));
    assert_eq!(machine.vcpu.get(GuestField::EFER), efer::LME | efer::LMA);
    assert_eq!(machine.vcpu.get(GuestField::CR0), cr0::PE | cr0::PG | cr0::ET);
    // Now in compatibility mode (CS is 32-bit): paging may go off again.
    assert!(write(&mut machine, 0, cr0::PE));
    assert_eq!(machine.vcpu.get(GuestField::EFER), efer::LME);
}

#[test]
fn cr8_is_kept_by_the_vmm() {
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[0] = 9;
    let to = exit(&machine, 8, true, Some(0), 4);
    assert_eq!(machine.run(&mut vmm, &to), Action::Resume);
    let from = exit(&machine, 8, false, Some(2), 4);
    assert_eq!(machine.run(&mut vmm, &from), Action::Resume);
    assert_eq!((machine.registers.general[2], machine.registers.rip), (9, CODE + 8));
}

#[test]
fn clts_lmsw_and_smsw_reach_cr0() {
    let mut machine = Machine::new(Mode::Flat32);
    machine.vcpu.set(GuestField::CR0, cr0::PE | cr0::ET | cr0::TS);
    machine.code(&[0x0f, 0x06]); // clts
    let clts = exit(&machine, 0, true, None, 2);
    assert_eq!(run(&mut machine, &clts), Action::Resume);
    assert_eq!((machine.vcpu.get(GuestField::CR0), machine.registers.rip), (cr0::PE | cr0::ET, CODE + 2));
    // lmsw ax: sets MP, cannot clear PE.
    machine.registers.rip = CODE;
    machine.registers.general[0] = 0x2;
    machine.code(&[0x0f, 0x01, 0xf0]);
    let lmsw = exit(&machine, 0, true, None, 3);
    assert_eq!(run(&mut machine, &lmsw), Action::Resume);
    assert_eq!(machine.vcpu.get(GuestField::CR0), cr0::PE | cr0::ET | 0x2);
    // lmsw [DATA]
    machine.registers.rip = CODE;
    machine.memory.put(DATA, &[0x8, 0]);
    machine.code(&[0x0f, 0x01, 0x35, 0x00, 0x90, 0x00, 0x00]);
    let lmsw = exit(&machine, 0, true, None, 0);
    assert_eq!(run(&mut machine, &lmsw), Action::Resume);
    assert_eq!(machine.vcpu.get(GuestField::CR0), cr0::PE | cr0::ET | cr0::TS);
    // smsw [DATA] and smsw eax (an SVM CR0-read intercept).
    machine.registers.rip = CODE;
    machine.code(&[0x0f, 0x01, 0x25, 0x00, 0x90, 0x00, 0x00]);
    let smsw = exit(&machine, 0, false, None, 0);
    assert_eq!(run(&mut machine, &smsw), Action::Resume);
    assert_eq!(machine.memory.get(DATA, 2), [0x19, 0]);
    machine.registers.rip = CODE;
    machine.registers.general[0] = u64::MAX;
    machine.code(&[0x0f, 0x01, 0xe0]);
    assert_eq!(run(&mut machine, &smsw), Action::Resume);
    assert_eq!((machine.registers.general[0], machine.registers.rip), (0x19, CODE + 3));
}

#[test]
fn missing_control_registers_are_refused() {
    let mut machine = Machine::new(Mode::Long);
    let cr2 = exit(&machine, 2, true, Some(0), 3);
    let failure = EmulationFailure::ControlRegister { register: 2 };
    assert_eq!(run(&mut machine, &cr2), Action::Stop(Stop::Emulation { rip: CODE, failure }));
    let cr5 = exit(&machine, 5, false, Some(0), 3);
    assert_eq!(run(&mut machine, &cr5), Action::Resume);
    assert_eq!((machine.registers.event, machine.registers.rip), (UD, CODE));
}

#[test]
fn an_interrupt_shadow_ends_with_the_emulated_instruction() {
    let mut machine = Machine::new(Mode::Long);
    machine.vcpu.set(GuestField::INTERRUPTIBILITY, 2);
    machine.registers.general[0] = 0x3000;
    let exit = exit(&machine, 3, true, Some(0), 3);
    assert_eq!(run(&mut machine, &exit), Action::Resume);
    assert_eq!(machine.vcpu.get(GuestField::INTERRUPTIBILITY), 0);
}

#[test]
fn a_real_mode_guest_enters_protected_mode() {
    let mut machine = Machine::new(Mode::Real);
    machine.registers.general[0] = 0x11;
    machine.code(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    let exit = exit(&machine, 0, true, None, 0);
    assert_eq!(run(&mut machine, &exit), Action::Resume);
    assert_eq!((machine.vcpu.get(GuestField::CR0), machine.registers.rip), (cr0::PE | cr0::ET, CODE + 3));
}
