//! The MSRs that live in guest-state fields: RDMSR reads the field (what
//! the kernel loads into the hardware, and what the guest's SWAPGS left
//! in KERNEL_GS_BASE), WRMSR writes it after WRMSR's own checks, and a
//! refused write is #GP(0) with the field unchanged.

use proptest::prelude::*;

use kernel_core::vcpu::{GuestField, check};

use super::*;
use crate::test_support::{FakeClock, Machine, Mode};

/// Each MSR a field holds, and that field.
const FIELD_MSRS: [(u32, GuestField); 11] = [
    (number::SYSENTER_CS, GuestField::SYSENTER_CS),
    (number::SYSENTER_ESP, GuestField::SYSENTER_ESP),
    (number::SYSENTER_EIP, GuestField::SYSENTER_EIP),
    (number::PAT, GuestField::PAT),
    (number::STAR, GuestField::STAR),
    (number::LSTAR, GuestField::LSTAR),
    (number::CSTAR, GuestField::CSTAR),
    (number::SFMASK, GuestField::SFMASK),
    (number::FS_BASE, FS_BASE_FIELD),
    (number::GS_BASE, GS_BASE_FIELD),
    (number::KERNEL_GS_BASE, GuestField::KERNEL_GS_BASE),
];

/// RDMSR of `msr` on `machine`.
fn read(machine: &mut Machine, msr: u32) -> Result<u64, Fault> {
    let mut clock = FakeClock(0);
    let mut context = MsrContext { clock: &mut clock, apic_base: APIC_BASE_ADDRESS | APIC_BASE_ENABLE };
    let control = machine.vcpu.control();
    let mut guest = Guest::new(&mut machine.registers, &mut machine.vcpu, &mut machine.memory, control);
    MsrFile::POWER_ON.read(msr, &mut guest, &mut context)
}

/// WRMSR of `value` to `msr` on `machine`.
fn write(machine: &mut Machine, msr: u32, value: u64) -> Result<(), Fault> {
    let mut clock = FakeClock(0);
    let mut context = MsrContext { clock: &mut clock, apic_base: APIC_BASE_ADDRESS | APIC_BASE_ENABLE };
    let control = machine.vcpu.control();
    let mut guest = Guest::new(&mut machine.registers, &mut machine.vcpu, &mut machine.memory, control);
    let mut file = MsrFile::POWER_ON;
    file.write(msr, value, &mut guest, &mut context)
}

#[test]
fn a_field_msr_reads_its_field_as_the_kernel_holds_it() {
    let mut machine = Machine::new(Mode::Long);
    // At power-on: the RESET state's PAT, everything else 0.
    assert_eq!(read(&mut machine, number::PAT), Ok(POWER_ON_PAT));
    assert_eq!(read(&mut machine, number::LSTAR), Ok(0));
    // The guest's SWAPGS changed KERNEL_GS_BASE without an exit: the read
    // is the field's, not a copy the VMM kept.
    machine.vcpu.set(GuestField::KERNEL_GS_BASE, 0xffff_8880_0000_0000);
    assert_eq!(read(&mut machine, number::KERNEL_GS_BASE), Ok(0xffff_8880_0000_0000));
    for (index, (msr, field)) in (1_u64..).zip(FIELD_MSRS) {
        machine.vcpu.set(field, index * 0x10);
        assert_eq!(read(&mut machine, msr), Ok(index * 0x10), "{msr:#x}");
    }
}

#[test]
fn wrmsr_writes_the_field_through_the_kernel() {
    let mut machine = Machine::new(Mode::Long);
    let values = [
        (number::SYSENTER_CS, 0x10),
        (number::SYSENTER_ESP, 0xffff_8000_0000_8000),
        (number::SYSENTER_EIP, 0xffff_8000_0000_9000),
        (number::PAT, 0x0007_0406_0007_0401),
        (number::STAR, 0x0023_0010_0000_0000),
        (number::LSTAR, 0xffff_ffff_8100_0000),
        (number::CSTAR, 0xffff_ffff_8100_1000),
        (number::SFMASK, 0x4_7700),
        (number::FS_BASE, 0x7f00_0000_1000),
        (number::GS_BASE, 0xffff_8880_0000_1000),
        (number::KERNEL_GS_BASE, 0xffff_8880_0000_2000),
    ];
    for ((msr, value), (field_msr, field)) in values.into_iter().zip(FIELD_MSRS) {
        assert_eq!(msr, field_msr);
        assert_eq!(write(&mut machine, msr, value), Ok(()), "{msr:#x}");
        assert_eq!(machine.vcpu.writes.last(), Some(&(field, value)), "{msr:#x}");
        assert_eq!(read(&mut machine, msr), Ok(value), "{msr:#x}");
    }
}

#[test]
fn what_wrmsr_would_fault_on_is_a_general_protection_fault_and_no_write() {
    let mut machine = Machine::new(Mode::Long);
    for (msr, value) in [
        (number::SYSENTER_CS, 1 << 32),
        (number::SYSENTER_ESP, 0x0000_8000_0000_0000),
        (number::SYSENTER_EIP, 0x0001_0000_0000_0000),
        (number::PAT, 0x0007_0406_0007_0402),
        (number::PAT, 0x0807_0406_0007_0406),
        (number::LSTAR, 0x0000_8000_0000_0000),
        (number::CSTAR, 0x1234_5678_9abc_def0),
        (number::SFMASK, 1 << 32),
        (number::FS_BASE, 0x0000_8000_0000_0000),
        (number::GS_BASE, 0x8000_0000_0000_0000),
        (number::KERNEL_GS_BASE, 0x8000_0000_0000_0000),
    ] {
        assert_eq!(write(&mut machine, msr, value), Err(GENERAL_PROTECTION), "{msr:#x} {value:#x}");
    }
    assert!(machine.vcpu.writes.is_empty(), "a refused WRMSR reached the kernel: {:?}", machine.vcpu.writes);
    assert_eq!(machine.vcpu.state, Machine::new(Mode::Long).vcpu.state);
}

#[test]
fn the_file_keeps_only_what_no_field_holds() {
    let mut machine = Machine::new(Mode::Long);
    let mut clock = FakeClock(0);
    let mut context = MsrContext { clock: &mut clock, apic_base: APIC_BASE_ADDRESS };
    let control = machine.vcpu.control();
    let mut guest = Guest::new(&mut machine.registers, &mut machine.vcpu, &mut machine.memory, control);
    let mut file = MsrFile::POWER_ON;
    file.write(number::LSTAR, 0xffff_ffff_8100_0000, &mut guest, &mut context).expect("LSTAR written");
    file.write(number::MTRR_DEF_TYPE, 0xc06, &mut guest, &mut context).expect("MTRRdefType written");
    assert_eq!(file, MsrFile { mtrr_default_type: 0xc06 });
    assert_eq!(guest.state.get(GuestField::LSTAR), 0xffff_ffff_8100_0000);
}

proptest! {
    /// Any value to any field MSR: accepted exactly when the kernel's
    /// WriteState takes it too (the VMM's WRMSR checks are the kernel's,
    /// neither looser nor stricter), then read back as written; refused
    /// with #GP(0) and nothing written otherwise.
    #[test]
    fn wrmsr_of_a_field_msr_agrees_with_the_kernel(
        which in 0..FIELD_MSRS.len(),
        value in prop_oneof![
            any::<u64>(),
            0_u64..0x1_0000_0000,
            Just(0xffff_8000_0000_0000_u64),
            Just(1_u64 << 47),
            Just(POWER_ON_PAT),
            Just(POWER_ON_PAT | 2),
        ],
    ) {
        let (msr, field) = FIELD_MSRS[which];
        let mut machine = Machine::new(Mode::Long);
        let before = machine.vcpu.state;
        let outcome = write(&mut machine, msr, value);
        prop_assert_eq!(outcome.is_ok(), check(field, value).is_ok());
        match outcome {
            Ok(()) => prop_assert_eq!(read(&mut machine, msr), Ok(value)),
            Err(fault) => {
                prop_assert_eq!(fault, GENERAL_PROTECTION);
                prop_assert_eq!(machine.vcpu.state, before);
            }
        }
    }
}
