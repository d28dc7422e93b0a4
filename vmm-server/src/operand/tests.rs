use super::*;

fn registers() -> GuestRegisters {
    let mut registers = GuestRegisters::default();
    for (index, value) in registers.general.iter_mut().enumerate() {
        *value = 0x0101_0101_0101_0101 * (index as u64 + 1);
    }
    registers
}

#[test]
fn registers_are_found_in_encoding_order() {
    let registers = registers();
    let order = [
        Register::RAX,
        Register::RCX,
        Register::RDX,
        Register::RBX,
        Register::RSP,
        Register::RBP,
        Register::RSI,
        Register::RDI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
    ];
    for (index, register) in order.into_iter().enumerate() {
        assert_eq!(read_register(&registers, register), Some(registers.general[index]), "{register:?}");
    }
}

#[test]
fn reads_take_the_register_s_bits() {
    let mut registers = GuestRegisters::default();
    registers.general[0] = 0x1122_3344_5566_7788;
    registers.general[6] = 0xaabb;
    assert_eq!(read_register(&registers, Register::AL), Some(0x88));
    assert_eq!(read_register(&registers, Register::AH), Some(0x77));
    assert_eq!(read_register(&registers, Register::AX), Some(0x7788));
    assert_eq!(read_register(&registers, Register::EAX), Some(0x5566_7788));
    assert_eq!(read_register(&registers, Register::SIL), Some(0xbb));
    assert_eq!(read_register(&registers, Register::CR0), None);
    assert_eq!(read_register(&registers, Register::DS), None);
}

#[test]
fn writes_follow_the_cpu_s_rules() {
    let mut registers = GuestRegisters::default();
    let full = 0x1122_3344_5566_7788;
    let cases = [
        (Register::AL, 0xff_ee, 0x1122_3344_5566_77ee),
        (Register::AH, 0xee, 0x1122_3344_5566_ee88),
        (Register::AX, 0x1_eeee, 0x1122_3344_5566_eeee),
        (Register::EAX, 0xffff_ffff_eeee_eeee, 0xeeee_eeee),
        (Register::RAX, 0xdead, 0xdead),
    ];
    for (register, value, expected) in cases {
        registers.general[0] = full;
        assert_eq!(write_register(&mut registers, register, value), Some(()));
        assert_eq!(registers.general[0], expected, "{register:?}");
    }
    registers.general[15] = full;
    write_register(&mut registers, Register::R15W, 0xabcd);
    assert_eq!(registers.general[15], 0x1122_3344_5566_abcd);
    registers.general[7] = full;
    write_register(&mut registers, Register::DIL, 0x12);
    assert_eq!(registers.general[7], 0x1122_3344_5566_7712);
    assert_eq!(write_register(&mut registers, Register::XMM0, 1), None);
}
