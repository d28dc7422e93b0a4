//! The guest debugger's transport and loop (`docs/GUEST-GDB.md`): gdb's
//! remote protocol over a serial port of the host (a 16550; COM2 in
//! `tests/systems/linux_gdb.capdl`), which this VMM has only when its
//! manifest names the guest's `debug` port: the loader then gives it the
//! I/O-port capability and says on its info page in which slot. The
//! protocol and the guest's side are `bulkhead_vmm_server::gdb`'s,
//! host-tested; this module polls the port, stops and resumes the guest,
//! and sleeps while gdb holds it stopped.

use bulkhead_capdl_spec::DebugPort;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::vcpu::{EnterControls, GuestExit, GuestRegisters, vm_enter};
use bulkhead_sys::{Sys, println};
use bulkhead_vmm_server::cpu::ControlRegisters;
use bulkhead_vmm_server::gdb::{Debugger, Resume, Snapshot, Verdict};
use bulkhead_vmm_server::paging::{Access, MemoryAccess, translate};
use bulkhead_vmm_server::{GuestMemory, VcpuState};
use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{GdbStubBuilder, SingleThreadStopReason};
use kernel_core::vcpu::{GuestField, Segment, SegmentPart};
use kernel_core::virt::ExitKind;

use crate::{GuestRam, KernelVcpu};

/// The 16550's registers, from its first port: data, interrupt enable,
/// FIFO control, line control, modem control, line status.
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
/// Line status: a byte received; the transmitter can take one.
const DATA_READY: u8 = 1 << 0;
const TRANSMIT_EMPTY: u8 = 1 << 5;
/// How long a guest runs at most while a debugger may attach (TSC
/// ticks are scaled from this), and how long the VMM sleeps between
/// polls of a stopped guest's port: Ctrl-C and gdb's packets are seen
/// within about this.
const RUN_SLICE_MICROSECONDS: u64 = 10_000;
const STOPPED_POLL_MICROSECONDS: u64 = 1_000;
/// The packet buffer (on the heap, freed with its session): gdb's
/// largest packets (a `G` of the 560-byte register file, `m` replies)
/// fit.
const PACKET_BYTES: usize = 4096;

/// gdb's end of the serial line: the capability to the UART's eight
/// ports and the first of them.
#[derive(Clone, Copy)]
struct Line {
    ports: Cap<kind::IoPorts>,
    first: u16,
}

impl Line {
    fn in8(self, sys: &mut Sys, register: u16) -> Result<u8, bulkhead_components::Error> {
        self.ports.in8(sys, self.first + register)
    }

    fn out8(self, sys: &mut Sys, register: u16, value: u8) -> Result<(), bulkhead_components::Error> {
        self.ports.out8(sys, self.first + register, value)
    }
}

/// The line as gdbstub's connection.
struct Com2 {
    line: Line,
    sys: Sys,
}

impl Com2 {
    fn new(line: Line) -> Com2 {
        Com2 { line, sys: Sys::without_ipc_buffer() }
    }

    /// A byte from gdb, if one came.
    fn poll(&mut self) -> Option<u8> {
        let status = self.line.in8(&mut self.sys, LINE_STATUS).ok()?;
        if status & DATA_READY == 0 {
            return None;
        }
        self.line.in8(&mut self.sys, DATA).ok()
    }
}

impl Connection for Com2 {
    type Error = bulkhead_components::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        // The emulator's UART drains at once; a real one within a byte's
        // time. Bounded either way.
        for _ in 0..100_000 {
            if self.line.in8(&mut self.sys, LINE_STATUS)? & TRANSMIT_EMPTY != 0 {
                break;
            }
        }
        self.line.out8(&mut self.sys, DATA, byte)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

type Machine = GdbStubStateMachine<'static, Debugger<GuestRam>, Com2>;

/// The debugger of one guest: the port, the protocol's state machine
/// while gdb is attached, and the guest's side.
pub(crate) struct GuestGdb {
    line: Line,
    port: Com2,
    machine: Option<Machine>,
    debugger: Debugger<GuestRam>,
    /// The exception intercepts last written to the VCpu.
    intercepts: u64,
    /// TSC ticks per microsecond, and the TSC of the last poll.
    ticks_per_microsecond: u64,
    last_poll: u64,
}

/// What the exit loop does with an exit after the debugger saw it.
pub(crate) enum AfterExit {
    /// The VMM handles it as always.
    Handle,
    /// The debugger took it (the guest stopped and gdb resumed it):
    /// enter again.
    Consumed,
}

impl GuestGdb {
    /// The debugger on the guest's debug port, which the loader named on
    /// the info page (the manifest's `debug DEVICE`): the UART is set up
    /// for gdb, polled, without interrupts. `None`, said on the console,
    /// if the port refuses.
    pub(crate) fn new(sys: &mut Sys, port: DebugPort, ram: GuestRam, tsc_khz: u64) -> Option<Self> {
        let line = Line { ports: Cap::<kind::IoPorts>::new(port.slot), first: port.first_port };
        // 8 bits, no parity, one stop bit; FIFOs on and cleared; no
        // interrupts (the VMM polls); DTR and RTS.
        let setup = [(INTERRUPT_ENABLE, 0), (LINE_CONTROL, 0x03), (FIFO_CONTROL, 0x07), (MODEM_CONTROL, 0x03)];
        if let Err(error) = setup.into_iter().try_for_each(|(register, value)| line.out8(sys, register, value)) {
            println!("vmm: no gdb stub: the debug port at {:#x} refused: {error:?}", port.first_port);
            return None;
        }
        println!("vmm: gdb stub on the serial port at {:#x}: attach gdb to the guest at any time", port.first_port);
        Some(GuestGdb {
            line,
            port: Com2::new(line),
            machine: None,
            debugger: Debugger::new(ram),
            intercepts: 0,
            ticks_per_microsecond: (tsc_khz / 1000).max(1),
            last_poll: 0,
        })
    }

    /// The latest deadline a run may have (absolute TSC): a Ctrl-C or an
    /// attaching gdb is seen within a slice.
    pub(crate) fn run_bound(&self, now: u64) -> u64 {
        now.saturating_add(RUN_SLICE_MICROSECONDS * self.ticks_per_microsecond)
    }

    /// Whether gdb asked for a single step now running (the exit loop
    /// injects no interrupt then: the step is one guest instruction).
    pub(crate) fn stepping(&self) -> bool {
        self.debugger.stepping()
    }

    /// Before the VMM handles `exit`: a breakpoint of ours or the end of
    /// our step stops the guest for gdb (and returns when gdb resumes it).
    pub(crate) fn on_exit(
        &mut self,
        exit: &GuestExit,
        registers: &mut GuestRegisters,
        state: &mut KernelVcpu<'_>,
        memory: &mut GuestRam,
    ) -> AfterExit {
        if self.machine.is_none() {
            return AfterExit::Handle;
        }
        // A software-interrupt exit: the byte the guest executed (an
        // INT3, ours or its own, or an INT n).
        let instruction = (exit.kind == Some(ExitKind::SoftwareInterrupt))
            .then(|| {
                let linear = exit.code_segment[0].wrapping_add(registers.rip);
                let fetch = MemoryAccess { access: Access::Fetch, user: false, alignment_check: false };
                let physical = translate(memory, &ControlRegisters::of(exit), linear, fetch).ok()?;
                let mut byte = [0];
                memory.read(physical, &mut byte).ok().map(|()| byte[0])
            })
            .flatten();
        match self.debugger.classify(exit, registers, instruction) {
            Verdict::Guest => AfterExit::Handle,
            Verdict::Stop(reason) => {
                self.stopped(reason, registers, state);
                AfterExit::Consumed
            }
        }
    }

    /// After the VMM emulated an exit's instruction: a step it completed
    /// stops the guest for gdb.
    pub(crate) fn after_emulation(
        &mut self,
        kind: Option<ExitKind>,
        registers: &mut GuestRegisters,
        state: &mut KernelVcpu<'_>,
    ) {
        if let Some(reason) = self.debugger.after_emulation(kind, registers) {
            self.stopped(reason, registers, state);
        }
    }

    /// Before each entry, at most once a millisecond: gdb's bytes (an
    /// attach or a Ctrl-C stops the guest here, between two exits).
    pub(crate) fn poll(&mut self, registers: &mut GuestRegisters, state: &mut KernelVcpu<'_>) {
        let now = bulkhead_sys::arch::read_tsc();
        if now.wrapping_sub(self.last_poll) < STOPPED_POLL_MICROSECONDS * self.ticks_per_microsecond {
            return;
        }
        self.last_poll = now;
        let Some(byte) = self.port.poll() else { return };
        if self.machine.is_none() {
            // gdb attaches: the guest stops where it is.
            println!("vmm: gdb attached");
            self.snapshot(registers, state);
            let stub = GdbStubBuilder::new(Com2::new(self.line)).packet_buffer_size(PACKET_BYTES).build();
            match stub.map(|stub| stub.run_state_machine(&mut self.debugger)) {
                Ok(Ok(machine)) => self.machine = Some(machine),
                _ => return,
            }
            self.feed(byte);
            self.serve(registers, state);
            return;
        }
        self.feed(byte);
        if matches!(self.machine, Some(GdbStubStateMachine::Idle(_))) {
            // A Ctrl-C: the guest stopped, reported to gdb.
            self.snapshot(registers, state);
            self.serve(registers, state);
        }
    }

    /// The guest stopped for `reason` (registers as gdb must see them):
    /// tell gdb and serve it until it resumes the guest.
    fn stopped(
        &mut self,
        reason: SingleThreadStopReason<u64>,
        registers: &mut GuestRegisters,
        state: &mut KernelVcpu<'_>,
    ) {
        self.snapshot(registers, state);
        if let Some(GdbStubStateMachine::Running(running)) = self.machine.take() {
            self.machine = running.report_stop(&mut self.debugger, reason).ok();
        }
        self.serve(registers, state);
    }

    /// Takes the stopped guest's state into the debugger.
    fn snapshot(&mut self, registers: &GuestRegisters, state: &mut KernelVcpu<'_>) {
        let mut read = |field| state.read(field).unwrap_or(0);
        let control = ControlRegisters {
            cr0: read(GuestField::CR0),
            cr3: read(GuestField::CR3),
            cr4: read(GuestField::CR4),
            efer: read(GuestField::EFER),
            interruptibility: 0,
        };
        let selectors = [Segment::Cs, Segment::Ss, Segment::Ds, Segment::Es, Segment::Fs, Segment::Gs]
            .map(|segment| u16::try_from(read(GuestField::segment(segment, SegmentPart::Selector))).unwrap_or(0));
        self.debugger.stop(Snapshot { registers: *registers, control, selectors });
    }

    /// Passes one byte to the state machine; a Ctrl-C stops the guest
    /// (SIGINT); a protocol error ends the session as a detach would.
    fn feed(&mut self, byte: u8) {
        let Some(machine) = self.machine.take() else { return };
        let next = match machine {
            GdbStubStateMachine::Idle(idle) => idle.incoming_data(&mut self.debugger, byte),
            GdbStubStateMachine::Running(running) => running.incoming_data(&mut self.debugger, byte),
            other => Ok(other),
        };
        // A Ctrl-C stops the guest; an error ends the session (None).
        self.machine = match next {
            Ok(GdbStubStateMachine::CtrlCInterrupt(interrupt)) => {
                let reason = SingleThreadStopReason::Signal(Signal::SIGINT);
                interrupt.interrupt_handled(&mut self.debugger, Some(reason)).ok()
            }
            Ok(machine) => Some(machine),
            Err(_) => None,
        };
    }

    /// Serves gdb while the guest is stopped, sleeping between polls;
    /// returns with `registers` to enter when gdb resumes it (or
    /// detaches, or the session breaks: then every breakpoint is gone
    /// and the guest runs on).
    fn serve(&mut self, registers: &mut GuestRegisters, state: &mut KernelVcpu<'_>) {
        loop {
            match &self.machine {
                Some(GdbStubStateMachine::Idle(_)) => {}
                Some(GdbStubStateMachine::Running(_)) => {
                    let resume = self.debugger.take_resume().unwrap_or(Resume::Continue);
                    *registers = self.debugger.start(resume);
                    self.write_intercepts(state);
                    return;
                }
                _ => {
                    self.detach(registers, state);
                    return;
                }
            }
            match self.port.poll() {
                Some(byte) => self.feed(byte),
                None => self.sleep(registers, state),
            }
        }
    }

    /// The session ended: breakpoints out, no intercepts, the guest on.
    fn detach(&mut self, registers: &mut GuestRegisters, state: &mut KernelVcpu<'_>) {
        println!("vmm: gdb detached: the guest runs on");
        *registers = *self.debugger.registers();
        self.debugger.end_step(registers);
        self.debugger.clear();
        self.machine = None;
        self.write_intercepts(state);
    }

    /// Keeps VCpu field 58 what the debugger needs.
    fn write_intercepts(&mut self, state: &mut KernelVcpu<'_>) {
        let wanted = self.debugger.intercepts();
        if wanted != self.intercepts && state.write(GuestField::EXCEPTION_INTERCEPTS, wanted).is_ok() {
            self.intercepts = wanted;
        }
    }

    /// Sleeps about a millisecond without running the guest: VMEnter's
    /// `WAIT` with a deadline (the vCPU as if halted; the thread off the
    /// CPU, its budget not charged).
    fn sleep(&mut self, registers: &GuestRegisters, state: &mut KernelVcpu<'_>) {
        let mut parked = *registers;
        let deadline =
            bulkhead_sys::arch::read_tsc().saturating_add(STOPPED_POLL_MICROSECONDS * self.ticks_per_microsecond);
        let _ = vm_enter(state.sys, &mut parked, EnterControls { deadline, wait: true, interrupt_window: false });
    }
}
