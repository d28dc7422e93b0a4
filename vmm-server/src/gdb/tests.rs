use std::format;
use std::string::String;
use std::vec::Vec;

use gdbstub::conn::Connection;
use gdbstub::stub::GdbStubBuilder;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use proptest::prelude::*;

use super::*;
use crate::test_support::{FakeMemory, LongTables};

/// Four-level paging: CR0 PG PE, CR4 PAE, EFER LME LMA.
fn long_control(root: u64) -> ControlRegisters {
    ControlRegisters { cr0: 0x8000_0011, cr3: root, cr4: 0x20, efer: 0x500, interruptibility: 0 }
}

/// The kernel's text at 0xffff_ffff_8100_0000 on physical 0x10_0000
/// (read-only, as Linux maps it), 64 KiB of RAM above it.
const TEXT: u64 = 0xffff_ffff_8100_0000;
const TEXT_PHYSICAL: u64 = 0x10_0000;

fn debugger() -> Debugger<FakeMemory> {
    let mut memory = FakeMemory::with_ram(0x20_0000);
    let mut tables = LongTables::new(&mut memory, 0x1000);
    for page in 0..2 {
        // Present, supervisor, read-only.
        tables.map(&mut memory, TEXT + page * 0x1000, TEXT_PHYSICAL + page * 0x1000, 12, 0x1);
    }
    memory.put(TEXT_PHYSICAL, &[0x55, 0x48, 0x89, 0xe5, 0x90, 0xc3]);
    let root = tables.root;
    let mut debugger = Debugger::new(memory);
    debugger.stop(Snapshot { control: long_control(root), ..Snapshot::default() });
    debugger
}

#[test]
fn gdb_s_register_order_maps_onto_the_encoding_order_and_back() {
    let mut debugger = debugger();
    let mut snapshot = Snapshot::default();
    for (index, value) in snapshot.registers.general.iter_mut().enumerate() {
        *value = 0x1000 + index as u64;
    }
    snapshot.registers.rip = TEXT;
    snapshot.registers.rflags = 0x246;
    snapshot.selectors = [0x10, 0x18, 0, 0, 0, 0x2b];
    debugger.stop(snapshot);
    let gdb = debugger.gdb_registers();
    // RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP: encodings 0, 3, 1, 2, 6, 7, 5, 4.
    assert_eq!(&gdb.regs[..8], &[0x1000, 0x1003, 0x1001, 0x1002, 0x1006, 0x1007, 0x1005, 0x1004]);
    assert_eq!(gdb.regs[15], 0x100f);
    assert_eq!((gdb.rip, gdb.eflags, gdb.segments.cs, gdb.segments.gs), (TEXT, 0x246, 0x10, 0x2b));
    let mut changed = gdb.clone();
    changed.regs[1] = 0xbbbb; // RBX
    changed.regs[7] = 0xffff_8000_0000_1000; // RSP
    assert!(debugger.set_gdb_registers(&changed));
    assert_eq!(debugger.registers().general[3], 0xbbbb);
    assert_eq!(debugger.registers().general[4], 0xffff_8000_0000_1000);
    assert_eq!(debugger.gdb_registers(), changed);
}

#[test]
fn register_values_vmenter_would_refuse_are_refused_whole() {
    let mut debugger = debugger();
    let before = *debugger.registers();
    let mut gdb = debugger.gdb_registers();
    gdb.regs[0] = 7;
    gdb.rip = 0x0000_8000_0000_0000;
    assert!(!debugger.set_gdb_registers(&gdb));
    gdb.rip = TEXT;
    gdb.eflags = 1 << 15; // reserved
    assert!(!debugger.set_gdb_registers(&gdb));
    gdb.eflags = 0x2;
    gdb.regs[7] = 1 << 60; // a non-canonical RSP
    assert!(!debugger.set_gdb_registers(&gdb));
    assert_eq!(*debugger.registers(), before);
}

#[test]
fn a_breakpoint_is_an_int3_in_memory_hidden_from_reads_and_removed_with_its_byte_back() {
    let mut debugger = debugger();
    assert!(debugger.insert_breakpoint(TEXT + 1));
    assert!(debugger.insert_breakpoint(TEXT + 1), "a second insertion is the same breakpoint");
    assert_eq!(debugger.breakpoints().len(), 1);
    let mut raw = [0; 1];
    GuestMemory::read(&debugger.memory, TEXT_PHYSICAL + 1, &mut raw).expect("RAM");
    assert_eq!(raw, [INT3]);
    let mut seen = [0; 6];
    assert_eq!(debugger.read_virtual(TEXT, &mut seen), 6);
    assert_eq!(seen, [0x55, 0x48, 0x89, 0xe5, 0x90, 0xc3]);
    assert_eq!(debugger.intercepts(), INTERCEPT_BREAKPOINT);
    assert!(debugger.remove_breakpoint(TEXT + 1));
    assert!(!debugger.remove_breakpoint(TEXT + 1), "gone");
    GuestMemory::read(&debugger.memory, TEXT_PHYSICAL + 1, &mut raw).expect("RAM");
    assert_eq!(raw, [0x48]);
    assert_eq!(debugger.intercepts(), 0);
}

#[test]
fn a_write_over_a_breakpoint_changes_the_hidden_byte_and_keeps_the_int3() {
    let mut debugger = debugger();
    assert!(debugger.insert_breakpoint(TEXT + 2));
    assert!(debugger.write_virtual(TEXT + 1, &[0xaa, 0xbb, 0xcc]));
    let mut raw = [0; 3];
    GuestMemory::read(&debugger.memory, TEXT_PHYSICAL + 1, &mut raw).expect("RAM");
    assert_eq!(raw, [0xaa, INT3, 0xcc]);
    let mut seen = [0; 3];
    debugger.read_virtual(TEXT + 1, &mut seen);
    assert_eq!(seen, [0xaa, 0xbb, 0xcc]);
    debugger.clear();
    GuestMemory::read(&debugger.memory, TEXT_PHYSICAL + 2, &mut raw[..1]).expect("RAM");
    assert_eq!(raw[0], 0xbb);
    assert!(debugger.breakpoints().is_empty());
}

#[test]
fn addresses_without_a_mapping_or_ram_are_errors_and_reads_stop_at_the_first_hole() {
    let mut debugger = debugger();
    assert!(!debugger.insert_breakpoint(0xffff_ffff_9000_0000), "not mapped");
    assert!(!debugger.insert_breakpoint(0x0000_8000_0000_0000), "not canonical");
    let mut bytes = [0; 0x20];
    // The text's second page is the last mapped: a read across its end.
    assert_eq!(debugger.read_virtual(TEXT + 0x2000 - 0x10, &mut bytes), 0x10);
    assert_eq!(debugger.read_virtual(0xdead_0000, &mut bytes), 0);
    assert!(!debugger.write_virtual(0xdead_0000, &[1]));
    assert!(debugger.read_addrs(0xdead_0000, &mut bytes).is_err());
    assert!(debugger.write_addrs(u64::MAX, &[1, 2]).is_err());
}

#[test]
fn the_breakpoint_table_has_a_bound() {
    let mut debugger = debugger();
    for index in 0..MAX_BREAKPOINTS as u64 {
        assert!(debugger.insert_breakpoint(TEXT + index));
    }
    assert!(!debugger.insert_breakpoint(TEXT + 0x100));
}

fn exit(kind: ExitKind, qualification: u64) -> GuestExit {
    GuestExit {
        kind: Some(kind),
        reason: 0,
        qualification,
        guest_physical: 0,
        instruction_length: 0,
        control: [0; 5],
        code_segment: [0; 2],
    }
}

#[test]
fn a_step_sets_tf_and_gives_the_guest_its_own_back_when_the_debug_exit_comes() {
    for guest_tf in [0, TRAP_FLAG] {
        let mut debugger = debugger();
        let mut snapshot = Snapshot::default();
        snapshot.registers.rflags = 0x202 | guest_tf;
        debugger.stop(snapshot);
        let mut registers = debugger.start(Resume::Step);
        assert_eq!(registers.rflags & TRAP_FLAG, TRAP_FLAG);
        assert_eq!(debugger.intercepts(), INTERCEPT_DEBUG);
        registers.rip = TEXT + 1;
        let verdict = debugger.classify(&exit(ExitKind::Exception, 1), &mut registers, None);
        assert_eq!(verdict, Verdict::Stop(SingleThreadStopReason::DoneStep));
        assert_eq!(registers.rflags, 0x202 | guest_tf, "the guest's TF, whatever it was");
        assert!(!debugger.stepping());
        assert_eq!(debugger.intercepts(), 0);
    }
}

#[test]
fn an_emulated_instruction_completes_a_step_but_a_deadline_does_not() {
    let mut debugger = debugger();
    let mut registers = debugger.start(Resume::Step);
    for kind in [ExitKind::Deadline, ExitKind::InterruptWindow] {
        assert_eq!(debugger.classify(&exit(kind, 0), &mut registers, None), Verdict::Guest);
        assert_eq!(debugger.after_emulation(Some(kind), &mut registers), None);
        assert!(debugger.stepping());
    }
    assert_eq!(debugger.after_emulation(Some(ExitKind::Io), &mut registers), Some(SingleThreadStopReason::DoneStep));
    assert_eq!(registers.rflags & TRAP_FLAG, 0);
    // Not stepping: an emulated instruction is only that.
    assert_eq!(debugger.after_emulation(Some(ExitKind::Cpuid), &mut registers), None);
}

#[test]
fn only_a_breakpoint_of_ours_stops_the_guest_and_others_are_the_guest_s() {
    let mut debugger = debugger();
    assert!(debugger.insert_breakpoint(TEXT + 4));
    let mut registers = GuestRegisters { rip: TEXT + 4, ..GuestRegisters::default() };
    let breakpoint = exit(ExitKind::Exception, 3);
    assert_eq!(
        debugger.classify(&breakpoint, &mut registers, None),
        Verdict::Stop(SingleThreadStopReason::SwBreak(()))
    );
    // QEMU's TCG: an INT3 as a software interrupt, the byte at RIP an INT3.
    let software = exit(ExitKind::SoftwareInterrupt, 0);
    assert_eq!(
        debugger.classify(&software, &mut registers, Some(INT3)),
        Verdict::Stop(SingleThreadStopReason::SwBreak(()))
    );
    assert_eq!(debugger.classify(&software, &mut registers, Some(0xcd)), Verdict::Guest, "an INT n");
    registers.rip = TEXT + 5;
    assert_eq!(debugger.classify(&breakpoint, &mut registers, None), Verdict::Guest, "the guest's own INT3");
    // A #DB with no step of ours: the guest's.
    assert_eq!(debugger.classify(&exit(ExitKind::Exception, 1), &mut registers, None), Verdict::Guest);
}

/// A connection that keeps what the stub sends.
#[derive(Default)]
struct Recorder {
    sent: Vec<u8>,
}

impl Connection for Recorder {
    type Error = ();

    fn write(&mut self, byte: u8) -> Result<(), ()> {
        self.sent.push(byte);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        Ok(())
    }
}

/// A gdb packet: `$payload#checksum`.
fn packet(payload: &str) -> Vec<u8> {
    let sum = payload.bytes().fold(0_u8, u8::wrapping_add);
    format!("${payload}#{sum:02x}").into_bytes()
}

/// Feeds `bytes` to a fresh stub over `debugger`; what it answered, or
/// None if the session ended in an error (the VMM then starts a new one).
fn session(debugger: &mut Debugger<FakeMemory>, bytes: &[u8]) -> Option<String> {
    let mut buffer = [0; 4096];
    let stub = GdbStubBuilder::new(Recorder::default()).with_packet_buffer(&mut buffer).build().ok()?;
    let mut machine = stub.run_state_machine(debugger).ok()?;
    for &byte in bytes {
        machine = match machine {
            GdbStubStateMachine::Idle(idle) => idle.incoming_data(debugger, byte).ok()?,
            GdbStubStateMachine::Running(running) => running.incoming_data(debugger, byte).ok()?,
            GdbStubStateMachine::CtrlCInterrupt(interrupt) => {
                interrupt.interrupt_handled(debugger, Some(SingleThreadStopReason::Signal(Signal::SIGINT))).ok()?
            }
            GdbStubStateMachine::Disconnected(_) => return None,
        };
    }
    let sent = match &mut machine {
        GdbStubStateMachine::Idle(idle) => core::mem::take(&mut idle.borrow_conn().sent),
        GdbStubStateMachine::Running(running) => core::mem::take(&mut running.borrow_conn().sent),
        GdbStubStateMachine::CtrlCInterrupt(interrupt) => core::mem::take(&mut interrupt.borrow_conn().sent),
        GdbStubStateMachine::Disconnected(disconnected) => core::mem::take(&mut disconnected.borrow_conn().sent),
    };
    Some(String::from_utf8_lossy(&sent).into_owned())
}

#[test]
fn gdb_reads_memory_through_the_guest_s_paging_and_an_unmapped_address_is_an_error_reply() {
    let mut debugger = debugger();
    let mut bytes = packet(&format!("m{TEXT:x},6"));
    bytes.extend(packet("mdead0000,4"));
    let answer = session(&mut debugger, &bytes).expect("the session goes on");
    assert!(answer.contains("554889e590c3"), "{answer}");
    assert!(answer.contains("$E"), "an error reply: {answer}");
}

#[test]
fn a_z0_packet_sets_a_breakpoint_and_c_asks_to_continue() {
    let mut debugger = debugger();
    let mut bytes = packet(&format!("Z0,{:x},1", TEXT + 3));
    bytes.extend(packet("c"));
    let answer = session(&mut debugger, &bytes).expect("the session goes on");
    assert!(answer.contains("$OK"), "{answer}");
    assert_eq!(debugger.breakpoints().len(), 1);
    assert_eq!(debugger.take_resume(), Some(Resume::Continue));
    assert_eq!(debugger.take_resume(), None);
}

#[test]
fn malformed_packets_get_errors_or_end_the_session_never_a_panic() {
    let mut debugger = debugger();
    let cases: [&[u8]; 8] = [
        b"$m#00",
        b"$mzz,zz#00",
        b"$G00#00",
        b"$Z0,ffffffffffffffffffff,1#00",
        b"$M0,ffffffff:00#00",
        b"$$$$####",
        b"\x03\x03$c#63\x03",
        b"$qSupported:xmlRegisters=i386#00",
    ];
    for case in cases {
        let _ = session(&mut debugger, case);
        let _ =
            session(&mut debugger, &packet(core::str::from_utf8(&case[1..case.len().saturating_sub(3)]).unwrap_or("")));
    }
    // gdbstub ends a session on a packet it cannot parse (a short G):
    // the VMM starts a new one, and the debugger's state is intact.
    assert_eq!(session(&mut debugger, &packet("G00")), None);
    let answer = session(&mut debugger, &packet(&format!("m{TEXT:x},2"))).expect("a new session");
    assert!(answer.contains("5548"), "{answer}");
}

proptest! {
    #[test]
    fn any_bytes_from_the_debugger_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut debugger = debugger();
        let _ = session(&mut debugger, &bytes);
    }

    #[test]
    fn any_packet_payload_never_panics(payload in "[-a-zA-Z0-9:,;=?.]{0,80}") {
        let mut debugger = debugger();
        let _ = session(&mut debugger, &packet(&payload));
    }
}
