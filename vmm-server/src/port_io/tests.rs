use std::vec::Vec;

use bulkhead_components::vcpu::GuestExit;
use kernel_core::vcpu::Segment;
use kernel_core::virt::ExitKind;
use proptest::prelude::*;

use super::*;
use crate::devices::{Console, DebugConsole, TestExitPort};
use crate::test_support::{CODE, DATA, FakeClock, Machine, Mode};
use crate::vmm::{Action, Config, Vmm};

#[derive(Default)]
struct Lines(Vec<Vec<u8>>);

impl Console for Lines {
    fn write_line(&mut self, line: &[u8]) {
        self.0.push(line.to_vec());
    }
}

/// A port device that records writes and reads a counter.
#[derive(Default)]
struct Recorder {
    writes: Vec<(u16, AccessSize, u32)>,
    next: u32,
}

impl PortDevice for Recorder {
    fn read(&mut self, _port: u16, _size: AccessSize) -> u32 {
        self.next = self.next.wrapping_add(0x0101_0101);
        self.next | 0xff00_0000
    }

    fn write(&mut self, port: u16, size: AccessSize, value: u32) -> ControlFlow<Stop> {
        self.writes.push((port, size, value));
        ControlFlow::Continue(())
    }
}

fn io_exit(machine: &Machine, port: u16, size: u8, input: bool, string: bool, rep: bool, length: u64) -> GuestExit {
    machine.exit(ExitKind::Io, IoAccess { port, size, input, string, rep }.pack(), length)
}

#[test]
fn in_fills_al_ax_or_eax_as_the_cpu_does() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_ports(0x60, 0x6f, &mut recorder).unwrap();
    let mut machine = Machine::new(Mode::Long);
    for (size, expected) in [(1, 0x1122_3344_5566_7701), (2, 0x1122_3344_5566_0202), (4, 0xff03_0303)] {
        machine.registers.general[0] = 0x1122_3344_5566_7788;
        machine.registers.rip = CODE;
        let exit = io_exit(&machine, 0x64, size, true, false, false, 1);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
        assert_eq!((machine.registers.general[0], machine.registers.rip), (expected, CODE + 1), "size {size}");
    }
}

#[test]
fn out_writes_the_low_bytes_of_rax() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    {
        let mut vmm = Vmm::new(Config::default(), &mut clock);
        vmm.register_ports(0x60, 0x6f, &mut recorder).unwrap();
        let mut machine = Machine::new(Mode::Real);
        machine.registers.general[0] = 0x1122_3344_5566_7788;
        for size in [1, 2, 4] {
            machine.registers.rip = CODE;
            machine.code(&[0x66, 0xef]); // out dx, eax (in 16-bit code)
            let exit = io_exit(&machine, 0x61, size, false, false, false, 0);
            assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
            assert_eq!(machine.registers.rip, CODE + 2);
        }
    }
    assert_eq!(
        recorder.writes,
        [(0x61, AccessSize::Byte, 0x88), (0x61, AccessSize::Word, 0x7788), (0x61, AccessSize::Dword, 0x5566_7788)]
    );
}

#[test]
fn unclaimed_ports_read_all_ones_and_drop_writes() {
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[0] = 0x1234_5678_9abc_def0;
    let read = io_exit(&machine, 0x80, 2, true, false, false, 2);
    assert_eq!(machine.run(&mut vmm, &read), Action::Resume);
    assert_eq!(machine.registers.general[0], 0x1234_5678_9abc_ffff);
    let write = io_exit(&machine, 0x80, 1, false, false, false, 2);
    assert_eq!(machine.run(&mut vmm, &write), Action::Resume);
    assert_eq!(machine.registers.rip, CODE + 4);
    assert_eq!(vmm.counters().unclaimed_port_accesses(), 2);
}

#[test]
fn the_debug_console_and_the_test_exit_port_work_through_out() {
    let mut clock = FakeClock(0);
    let mut lines = Lines::default();
    let mut console = DebugConsole::new(&mut lines);
    let mut exit_port = TestExitPort;
    {
        let mut vmm = Vmm::new(Config::default(), &mut clock);
        vmm.register_ports(0xe9, 0xe9, &mut console).unwrap();
        vmm.register_ports(0xf4, 0xf4, &mut exit_port).unwrap();
        let mut machine = Machine::new(Mode::Flat32);
        for byte in b"ok\n" {
            machine.registers.general[0] = u64::from(*byte);
            let exit = io_exit(&machine, 0xe9, 1, false, false, false, 2);
            assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
        }
        machine.registers.general[0] = 0x42;
        let exit = io_exit(&machine, 0xf4, 1, false, false, false, 2);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Exited(0x42)));
        machine.registers.general[0] = 0xdead_beef;
        let exit = io_exit(&machine, 0xf4, 4, false, false, false, 1);
        assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Exited(0xdead_beef)));
    }
    drop(console);
    assert_eq!(lines.0, [b"ok".to_vec()]);
}

#[test]
fn rep_outsb_writes_a_string_from_memory() {
    let mut clock = FakeClock(0);
    let mut lines = Lines::default();
    let mut console = DebugConsole::new(&mut lines);
    {
        let mut vmm = Vmm::new(Config::default(), &mut clock);
        vmm.register_ports(0xe9, 0xe9, &mut console).unwrap();
        for mode in Mode::ALL {
            let mut machine = Machine::new(mode);
            machine.memory.put(DATA, b"hello\n");
            machine.registers.general[6] = DATA;
            machine.registers.general[1] = 6;
            machine.code(&[0xf3, 0x6e]); // rep outsb
            let exit = io_exit(&machine, 0xe9, 1, false, true, true, 2);
            assert_eq!(machine.run(&mut vmm, &exit), Action::Resume, "{mode:?}");
            let general = machine.registers.general;
            assert_eq!((general[1], general[6], machine.registers.rip), (0, DATA + 6, CODE + 2), "{mode:?}");
        }
        assert_eq!(vmm.counters().string_io_elements(), 30);
    }
    drop(console);
    assert_eq!(lines.0.len(), 5);
    assert!(lines.0.iter().all(|line| line == b"hello"));
}

#[test]
fn rep_insw_fills_memory_backwards_with_df() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_ports(0x1f0, 0x1f7, &mut recorder).unwrap();
    let mut machine = Machine::new(Mode::Long);
    machine.registers.rflags |= rflags::DF;
    machine.registers.general[7] = DATA + 4;
    machine.registers.general[1] = 3;
    machine.code(&[0xf3, 0x66, 0x6d]); // rep insw
    let exit = io_exit(&machine, 0x1f0, 2, true, true, true, 0);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(machine.memory.get(DATA, 6), [0x03, 0x03, 0x02, 0x02, 0x01, 0x01]);
    assert_eq!((machine.registers.general[7], machine.registers.rip), (DATA - 2, CODE + 3));
}

#[test]
fn a_long_rep_continues_in_later_exits() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_ports(0x80, 0x80, &mut recorder).unwrap();
    let mut machine = Machine::new(Mode::Long);
    machine.registers.general[6] = DATA;
    machine.registers.general[1] = MAX_STRING_ELEMENTS + 10;
    machine.code(&[0xf3, 0x6e]);
    let exit = io_exit(&machine, 0x80, 1, false, true, true, 2);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!((machine.registers.general[1], machine.registers.rip), (10, CODE));
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!((machine.registers.general[1], machine.registers.rip), (0, CODE + 2));
    assert_eq!(machine.registers.general[6], DATA + MAX_STRING_ELEMENTS + 10);
}

#[test]
fn string_io_uses_the_address_size_and_segments() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_ports(0x80, 0x80, &mut recorder).unwrap();
    // Real mode, ES:DI with ES base 0x9000: DI wraps at 64 KiB and only DI
    // changes.
    let mut machine = Machine::new(Mode::Real);
    machine.vcpu.set_segment(Segment::Es, 0x9000, 0x93);
    machine.registers.general[7] = 0xdead_0000_ffff;
    machine.registers.general[1] = 0x1234_0000_0002;
    machine.code(&[0xf3, 0x6c]); // rep insb
    let exit = io_exit(&machine, 0x80, 1, true, true, true, 2);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(machine.memory.get(0x1_8fff, 1), [0x01]);
    assert_eq!(machine.memory.get(0x9000, 1), [0x02]);
    assert_eq!((machine.registers.general[7], machine.registers.general[1]), (0xdead_0000_0001, 0x1234_0000_0000));
}

#[test]
fn string_io_into_memory_the_guest_may_not_write_stops_with_progress_kept() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_ports(0x80, 0x80, &mut recorder).unwrap();
    let mut machine = Machine::new(Mode::Long);
    // The page after DATA is not present.
    machine.memory.put_u64(0x4000 + 10 * 8, 0);
    machine.registers.general[7] = DATA + 0xffe;
    machine.registers.general[1] = 4;
    machine.code(&[0xf3, 0x6c]);
    let exit = io_exit(&machine, 0x80, 1, true, true, true, 2);
    let Action::Stop(Stop::Emulation { failure: EmulationFailure::Operand(fault), .. }) = machine.run(&mut vmm, &exit)
    else {
        panic!("a stop");
    };
    assert_eq!(fault, crate::paging::TranslationFault::PageFault { linear: 0xa000, error_code: 0b10 });
    assert_eq!((machine.registers.general[7], machine.registers.general[1]), (0xa000, 2));
    assert_eq!(machine.registers.rip, CODE);
}

#[test]
fn malformed_io_exits_stop() {
    let mut clock = FakeClock(0);
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    let mut machine = Machine::new(Mode::Long);
    let exit = io_exit(&machine, 0x80, 3, true, false, false, 1);
    let failure = EmulationFailure::IoSize { size: 3 };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
    machine.code(&[0x0f, 0xa2]);
    let exit = io_exit(&machine, 0x80, 1, true, true, false, 0);
    let failure = EmulationFailure::UnexpectedInstruction { mnemonic: Mnemonic::Cpuid };
    assert_eq!(machine.run(&mut vmm, &exit), Action::Stop(Stop::Emulation { rip: CODE, failure }));
}

proptest! {
    /// Arbitrary string-I/O state: never a panic, never more than a batch.
    #[test]
    fn arbitrary_string_io_is_bounded(
        mode in proptest::sample::select(Mode::ALL.to_vec()),
        input: bool,
        rep: bool,
        size in proptest::sample::select(std::vec![1_u8, 2, 4]),
        rcx: u64,
        rsi: u64,
        rdi: u64,
        rflags in any::<u64>(),
        prefix in proptest::sample::select(std::vec![0x26_u8, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67, 0xf3, 0x66]),
    ) {
        let mut clock = FakeClock(0);
        let mut recorder = Recorder::default();
        let mut vmm = Vmm::new(Config::default(), &mut clock);
        vmm.register_ports(0x80, 0x80, &mut recorder).unwrap();
        let mut machine = Machine::new(mode);
        let opcode = match (input, size) { (true, 1) => 0x6c, (true, _) => 0x6d, (false, 1) => 0x6e, (false, _) => 0x6f };
        machine.code(&[prefix, 0xf3, opcode]);
        machine.registers.general[1] = rcx;
        machine.registers.general[6] = rsi;
        machine.registers.general[7] = rdi;
        machine.registers.rflags = rflags;
        let exit = io_exit(&machine, 0x80, size, input, true, rep, 0);
        let _ = machine.run(&mut vmm, &exit);
        prop_assert!(vmm.counters().string_io_elements() <= MAX_STRING_ELEMENTS);
    }
}

#[test]
fn a_device_answers_on_every_range_it_was_registered_on() {
    let mut clock = FakeClock(0);
    let mut recorder = Recorder::default();
    {
        let mut vmm = Vmm::new(Config::default(), &mut clock);
        // The 8259A pair's shape: three ranges apart.
        vmm.register_port_ranges(&crate::platform::pic::PORT_RANGES, &mut recorder).unwrap();
        let mut machine = Machine::new(Mode::Long);
        machine.registers.general[0] = 0x11;
        for port in [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22] {
            machine.registers.rip = CODE;
            let exit = io_exit(&machine, port, 1, false, false, false, 1);
            assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
        }
        // Port 0x22 is nobody's.
        assert_eq!(vmm.counters().unclaimed_port_accesses(), 1);
    }
    let ports: Vec<u16> = recorder.writes.iter().map(|(port, _, _)| *port).collect();
    assert_eq!(ports, [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1]);
}

#[test]
fn registration_refuses_bad_ranges_and_changes_nothing() {
    let mut clock = FakeClock(0);
    // A refused device stays lent to the bus: each attempt lends a spare.
    let mut recorders: Vec<Recorder> = (0..7).map(|_| Recorder::default()).collect();
    let mut spares = recorders.iter_mut();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    vmm.register_port_ranges(&[(0x40, 0x43), (0x61, 0x61)], spares.next().unwrap()).unwrap();
    assert_eq!(vmm.register_port_ranges(&[], spares.next().unwrap()), Err(RegisterError::EmptyRange));
    let wraps = [(0x70, 0x71), (0x81, 0x80)];
    assert_eq!(vmm.register_port_ranges(&wraps, spares.next().unwrap()), Err(RegisterError::EmptyRange));
    // One range free, the other taken: nothing is registered.
    let half_taken = [(0x70, 0x71), (0x60, 0x61)];
    assert_eq!(vmm.register_port_ranges(&half_taken, spares.next().unwrap()), Err(RegisterError::Overlap));
    let self_overlapping = [(0x70, 0x73), (0x72, 0x72)];
    assert_eq!(vmm.register_port_ranges(&self_overlapping, spares.next().unwrap()), Err(RegisterError::Overlap));
    vmm.register_port_ranges(&[(0x70, 0x71)], spares.next().unwrap()).unwrap();
    assert_eq!(vmm.register_ports(0x71, 0x72, spares.next().unwrap()), Err(RegisterError::Overlap));
    let mut machine = Machine::new(Mode::Long);
    // 0x60 stayed free after the refused registration that named it.
    let exit = io_exit(&machine, 0x60, 1, true, false, false, 1);
    assert_eq!(machine.run(&mut vmm, &exit), Action::Resume);
    assert_eq!(vmm.counters().unclaimed_port_accesses(), 1);
}

#[test]
fn a_full_bus_refuses_more_ranges_whole() {
    let mut clock = FakeClock(0);
    let mut recorders: Vec<Recorder> = (0..=MAX_PORT_DEVICES).map(|_| Recorder::default()).collect();
    let mut spares = recorders.iter_mut();
    let mut vmm = Vmm::new(Config::default(), &mut clock);
    // Fifteen devices with two ranges each leave one device and two
    // ranges free.
    for index in 0..15u16 {
        let base = 0x100 + index * 0x10;
        vmm.register_port_ranges(&[(base, base), (base + 8, base + 8)], spares.next().unwrap()).unwrap();
    }
    let three = [(0x400, 0x400), (0x402, 0x402), (0x404, 0x404)];
    assert_eq!(vmm.register_port_ranges(&three, spares.next().unwrap()), Err(RegisterError::Full));
    vmm.register_port_ranges(&three[..2], spares.next().unwrap()).unwrap();
}
