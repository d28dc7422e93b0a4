use std::vec::Vec;

use proptest::prelude::*;

use super::*;

#[derive(Default)]
struct Lines(Vec<Vec<u8>>);

impl Console for Lines {
    fn write_line(&mut self, line: &[u8]) {
        self.0.push(line.to_vec());
    }
}

fn out(device: &mut impl PortDevice, text: &[u8]) {
    for byte in text {
        assert_eq!(device.write(DEBUG_CONSOLE_PORT, AccessSize::Byte, u32::from(*byte)), ControlFlow::Continue(()));
    }
}

#[test]
fn the_console_hands_over_complete_lines() {
    let mut lines = Lines::default();
    let mut console = DebugConsole::new(&mut lines);
    out(&mut console, b"hello\r\nwor");
    assert_eq!(console.pending(), b"wor");
    out(&mut console, b"ld\n\n");
    assert_eq!(console.lines(), 3);
    assert_eq!(console.read(DEBUG_CONSOLE_PORT, AccessSize::Byte), 0xe9);
    drop(console);
    assert_eq!(lines.0, [b"hello".to_vec(), b"world".to_vec(), Vec::new()]);
}

#[test]
fn the_console_neutralises_control_bytes_and_splits_long_lines() {
    let mut lines = Lines::default();
    let mut console = DebugConsole::new(&mut lines);
    out(&mut console, b"\x1b[2Jtab\there\x00\xff\n");
    out(&mut console, &[b'x'; MAX_LINE_BYTES + 5]);
    // A wider OUT writes its low byte.
    assert_eq!(console.write(DEBUG_CONSOLE_PORT, AccessSize::Dword, 0x4142_4344), ControlFlow::Continue(()));
    assert_eq!(console.pending(), b"xxxxxD");
    drop(console);
    assert_eq!(lines.0[0], b"?[2Jtab\there??".to_vec());
    assert_eq!(lines.0[1], [b'x'; MAX_LINE_BYTES].to_vec());
}

#[test]
fn the_test_exit_port_stops_with_the_value() {
    let mut port = TestExitPort;
    for (size, value) in [(AccessSize::Byte, 0x31), (AccessSize::Word, 0x1234), (AccessSize::Dword, 0xdead_beef)] {
        assert_eq!(port.write(TEST_EXIT_PORT, size, value), ControlFlow::Break(Stop::Exited(value)));
    }
    assert_eq!(port.read(TEST_EXIT_PORT, AccessSize::Byte), u32::MAX);
}

#[test]
fn the_test_device_has_an_id_and_a_scratch_register() {
    let mut device = TestMmioDevice::new();
    assert_eq!(device.read(0, AccessSize::Qword), TEST_DEVICE_ID);
    assert_eq!(device.read(0, AccessSize::Dword), u64::from_le_bytes(*b"BULK\0\0\0\0"));
    assert_eq!(device.read(4, AccessSize::Word), u64::from(u16::from_le_bytes(*b"HE")));
    // The ID is read-only; the scratch register keeps what is written.
    assert_eq!(device.write(0, AccessSize::Qword, 0), ControlFlow::Continue(()));
    assert_eq!(device.read(0, AccessSize::Qword), TEST_DEVICE_ID);
    assert!(device.write(TEST_DEVICE_SCRATCH, AccessSize::Qword, 0x1122_3344_5566_7788).is_continue());
    assert!(device.write(TEST_DEVICE_SCRATCH + 2, AccessSize::Byte, 0xab).is_continue());
    assert_eq!(device.scratch(), 0x1122_3344_55ab_7788);
    assert_eq!(device.read(TEST_DEVICE_SCRATCH + 4, AccessSize::Dword), 0x1122_3344);
    // Straddling the end of the registers, and beyond them.
    assert_eq!(device.read(12, AccessSize::Qword), 0x1122_3344);
    assert_eq!(device.read(16, AccessSize::Qword), 0);
    assert_eq!(device.read(u64::MAX, AccessSize::Qword), 0);
    assert!(device.write(u64::MAX - 2, AccessSize::Qword, u64::MAX).is_continue());
    assert_eq!(device.writes(), 4);
}

proptest! {
    #[test]
    fn the_console_never_hands_over_unprintable_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut lines = Lines::default();
        let mut console = DebugConsole::new(&mut lines);
        out(&mut console, &bytes);
        let pending = console.pending().to_vec();
        drop(console);
        for line in lines.0.iter().chain([&pending]) {
            prop_assert!(line.len() <= MAX_LINE_BYTES);
            prop_assert!(line.iter().all(|byte| *byte == b'\t' || (0x20..0x7f).contains(byte)));
        }
    }

    #[test]
    fn the_test_device_reads_back_the_scratch_register(value: u64, offset in 0_u64..24, size in 0_usize..4) {
        let size = [AccessSize::Byte, AccessSize::Word, AccessSize::Dword, AccessSize::Qword][size];
        let mut device = TestMmioDevice::new();
        prop_assert!(device.write(TEST_DEVICE_SCRATCH, AccessSize::Qword, value).is_continue());
        let mut expected = [0_u8; 8];
        let mut registers = [0_u8; 16];
        registers[..8].copy_from_slice(&TEST_DEVICE_ID.to_le_bytes());
        registers[8..].copy_from_slice(&value.to_le_bytes());
        let start = usize::try_from(offset).unwrap();
        for (index, slot) in expected.iter_mut().enumerate().take(size.bytes()) {
            if let Some(byte) = registers.get(start + index) {
                *slot = *byte;
            }
        }
        prop_assert_eq!(device.read(offset, size), u64::from_le_bytes(expected));
    }
}
