//! The per-guest VMM: its policy and devices, and the exit handler the
//! binary's loop calls after every VMEnter.

use bulkhead_components::vcpu::{GuestExit, GuestRegisters};
use iced_x86::Mnemonic;
use kernel_core::virt::{BREAKPOINT_VECTOR, Event, EventKind, ExitKind};

use crate::context::Guest;
use crate::control_register;
use crate::counters::Counters;
use crate::cpu::{is_canonical, rflags};
use crate::cpuid::CpuidTable;
use crate::fault::{Exception, Fault, combine};
use crate::guest::{Clock, GuestMemory, VcpuState};
use crate::mmio::{self, MmioBus, MmioDevice};
use crate::msr::{APIC_BASE_ADDRESS, APIC_BASE_BSP, APIC_BASE_ENABLE, MsrContext, MsrDevice, MsrFile};
use crate::port_io::{self, IoBus, PortDevice, RegisterError};
use crate::stop::Stop;

/// What the binary does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// VMEnter again with the (updated) registers.
    Resume,
    /// The guest halted with interrupts enabled: wait on the bound
    /// notification (an interrupt or a signal), then VMEnter again.
    Halt,
    /// End the guest and report why.
    Stop(Stop),
}

/// A vCPU's fixed configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Its initial APIC ID: 0 is the bootstrap processor.
    pub apic_id: u8,
}

/// One vCPU's VMM: CPUID table, MSR values, devices and counters.
pub struct Vmm<'a> {
    config: Config,
    cpuid: CpuidTable,
    msrs: MsrFile,
    /// CR8, which the VMM keeps: there is no local APIC yet.
    task_priority: u64,
    ports: IoBus<'a>,
    mmio: MmioBus<'a>,
    msr_device: Option<&'a mut dyn MsrDevice>,
    clock: &'a mut dyn Clock,
    counters: Counters,
}

/// The instructions of the fixed-length exits.
const CPUID: [Mnemonic; 1] = [Mnemonic::Cpuid];
const HLT: [Mnemonic; 1] = [Mnemonic::Hlt];
const RDMSR: [Mnemonic; 1] = [Mnemonic::Rdmsr];
const WRMSR: [Mnemonic; 1] = [Mnemonic::Wrmsr];

impl<'a> Vmm<'a> {
    /// A VMM with no devices, its MSRs at their power-on values, reading
    /// the host's TSC from `clock`.
    pub fn new(config: Config, clock: &'a mut dyn Clock) -> Self {
        Vmm {
            config,
            cpuid: CpuidTable::new(config.apic_id),
            msrs: MsrFile::POWER_ON,
            task_priority: 0,
            ports: IoBus::new(),
            mmio: MmioBus::new(),
            msr_device: None,
            clock,
            counters: Counters::default(),
        }
    }

    /// Puts `device` on I/O ports `first..=last`.
    ///
    /// # Errors
    ///
    /// [`RegisterError`]: an empty range, an overlap, a full bus.
    pub fn register_ports(
        &mut self,
        first: u16,
        last: u16,
        device: &'a mut dyn PortDevice,
    ) -> Result<(), RegisterError> {
        self.ports.register(&[(first, last)], device)
    }

    /// Puts `device` on each of the I/O port ranges `ranges` (`(first,
    /// last)`, inclusive): a device that answers on ports apart, as the
    /// 8259A pair does (`platform::pic::PORT_RANGES`). Nothing is
    /// registered on an error.
    ///
    /// # Errors
    ///
    /// [`RegisterError`]: no range or an empty one, an overlap (with a
    /// registered device or among `ranges`), a full bus.
    pub fn register_port_ranges(
        &mut self,
        ranges: &[(u16, u16)],
        device: &'a mut dyn PortDevice,
    ) -> Result<(), RegisterError> {
        self.ports.register(ranges, device)
    }

    /// Puts `device` at guest-physical `base..base + length`.
    ///
    /// # Errors
    ///
    /// [`RegisterError`]: an empty range, an overlap, a full bus.
    pub fn register_mmio(
        &mut self,
        base: u64,
        length: u64,
        device: &'a mut dyn MmioDevice,
    ) -> Result<(), RegisterError> {
        self.mmio.register(base, length, device)
    }

    /// Gives `device` the MSRs it has, before the VMM's own file, and
    /// makes CPUID advertise the local APIC and its TSC-deadline timer
    /// (the device is the PC board's, `platform::pc::BoardMsrs`).
    pub fn attach_local_apic(&mut self, device: &'a mut dyn MsrDevice) {
        self.msr_device = Some(device);
        self.cpuid = self.cpuid.with_local_apic();
    }

    /// The counters.
    #[must_use]
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The CPUID table.
    #[must_use]
    pub const fn cpuid(&self) -> &CpuidTable {
        &self.cpuid
    }

    /// Handles `exit`, updating `registers` for the next VMEnter and the
    /// VCpu's other state through `state`, and says what to do next.
    ///
    /// Never panics, whatever the exit, the registers or the guest's
    /// memory hold: a guest's mistake (or attack) becomes an injected
    /// exception or a [`Stop`]. After [`Action::Resume`] or
    /// [`Action::Halt`], the registers are ones VMEnter accepts.
    pub fn handle(
        &mut self,
        exit: &GuestExit,
        registers: &mut GuestRegisters,
        state: &mut impl VcpuState,
        memory: &mut impl GuestMemory,
    ) -> Action {
        self.counters.count_exit(exit.kind);
        let pending = match Event::from_word(registers.event) {
            Ok(pending) => pending,
            Err(_) => return Action::Stop(Stop::MalformedPendingEvent { word: registers.event }),
        };
        let mut guest = Guest::at_exit(registers, state, memory, exit);
        let action = match self.dispatch(exit, pending, &mut guest) {
            Ok(action) => action,
            Err(Fault::Stop(stop)) => Action::Stop(stop),
            Err(Fault::Inject(exception)) => self.inject(guest.registers, pending, exception),
        };
        match action {
            Action::Resume | Action::Halt => enterable(registers).map_or_else(Action::Stop, |()| action),
            Action::Stop(_) => action,
        }
    }

    /// Makes `exception` the event of the next entry, combined with an
    /// event already pending.
    fn inject(&mut self, registers: &mut GuestRegisters, pending: Option<Event>, exception: Exception) -> Action {
        let Some(event) = exception.event() else {
            return Action::Stop(Stop::UndeliverableEvent {
                event: registers.event,
                other: u64::from(exception.vector),
            });
        };
        let event = match pending {
            Some(pending) => match combine(pending, event) {
                Ok(event) => event,
                Err(stop) => return Action::Stop(stop),
            },
            None => event,
        };
        self.counters.count_injected(event.vector);
        registers.event = event.to_word();
        Action::Resume
    }

    fn dispatch<S: VcpuState, M: GuestMemory>(
        &mut self,
        exit: &GuestExit,
        pending: Option<Event>,
        guest: &mut Guest<'_, S, M>,
    ) -> Result<Action, Fault> {
        let unhandled = |kind| Stop::UnhandledExit { kind, reason: exit.reason, qualification: exit.qualification };
        let Some(kind) = exit.kind else { return Err(unhandled(None).into()) };
        if pending.is_some() && is_instruction_exit(kind) {
            // No instruction exits while an event is being delivered: the
            // event comes first, the instruction has not run. Deliver the
            // event; the instruction runs after it, and exits again.
            self.counters.count_deferred();
            return Ok(Action::Resume);
        }
        match kind {
            ExitKind::Cpuid => self.cpuid_exit(guest, exit).map(|()| Action::Resume),
            ExitKind::Hlt => halt(guest, exit),
            ExitKind::Io => port_io::emulate(guest, exit, &mut self.ports, &mut self.counters).map(|()| Action::Resume),
            ExitKind::MsrRead => self.rdmsr(guest, exit).map(|()| Action::Resume),
            ExitKind::MsrWrite => self.wrmsr(guest, exit).map(|()| Action::Resume),
            ExitKind::ControlRegister => {
                control_register::emulate(guest, exit, &mut self.task_priority).map(|()| Action::Resume)
            }
            ExitKind::SecondLevelFault => match pending {
                // The delivery itself touched memory that is not RAM (an IDT,
                // a stack or a TSS in device memory or outside the guest).
                Some(event) => {
                    Err(Stop::UndeliverableEvent { event: event.to_word(), other: exit.guest_physical }.into())
                }
                None => mmio::emulate(guest, exit, &mut self.mmio, &mut self.counters).map(|()| Action::Resume),
            },
            ExitKind::Exception => reinject(guest, exit),
            ExitKind::SoftwareInterrupt => software_interrupt(guest),
            ExitKind::TripleFault => Err(Stop::TripleFault.into()),
            ExitKind::Init => Err(Stop::Init.into()),
            ExitKind::Hypercall | ExitKind::VirtualisationInstruction | ExitKind::Xsetbv => {
                Err(Fault::Inject(Exception::INVALID_OPCODE))
            }
            ExitKind::InterruptWindow | ExitKind::Deadline => Ok(Action::Resume),
            ExitKind::InvalidState => Err(Stop::InvalidState { reason: exit.reason }.into()),
            ExitKind::HostInterrupt | ExitKind::Other => Err(unhandled(Some(kind)).into()),
        }
    }

    /// CPUID: the table's answer in EAX, EBX, ECX, EDX (bits 32..64 clear).
    fn cpuid_exit<S: VcpuState, M: GuestMemory>(
        &mut self,
        guest: &mut Guest<'_, S, M>,
        exit: &GuestExit,
    ) -> Result<(), Fault> {
        let length = guest.instruction_length(exit.instruction_length, &CPUID)?;
        let next = guest.next_rip(length)?;
        let general = &mut guest.registers.general;
        let leaf = u32::try_from(general[0] & 0xffff_ffff).unwrap_or(0);
        let subleaf = u32::try_from(general[1] & 0xffff_ffff).unwrap_or(0);
        let result = self.cpuid.query(leaf, subleaf);
        general[0] = u64::from(result.eax);
        general[3] = u64::from(result.ebx);
        general[1] = u64::from(result.ecx);
        general[2] = u64::from(result.edx);
        guest.retire(next)
    }

    fn msr_context(&mut self) -> MsrContext<'_> {
        let bsp = if self.config.apic_id == 0 { APIC_BASE_BSP } else { 0 };
        MsrContext { clock: &mut *self.clock, apic_base: APIC_BASE_ADDRESS | APIC_BASE_ENABLE | bsp }
    }

    /// RDMSR: ECX names the MSR; the value goes to EDX:EAX.
    fn rdmsr<S: VcpuState, M: GuestMemory>(
        &mut self,
        guest: &mut Guest<'_, S, M>,
        exit: &GuestExit,
    ) -> Result<(), Fault> {
        let length = guest.instruction_length(exit.instruction_length, &RDMSR)?;
        let next = guest.next_rip(length)?;
        let msr = u32::try_from(guest.registers.general[1] & 0xffff_ffff).unwrap_or(0);
        let msrs = self.msrs;
        let value = match self.msr_device.as_mut().and_then(|device| device.read(msr)) {
            Some(value) => Ok(value),
            None => msrs.read(msr, guest, &mut self.msr_context()),
        };
        let value = self.count_refusal(value)?;
        guest.registers.general[0] = value & 0xffff_ffff;
        guest.registers.general[2] = value >> 32;
        guest.retire(next)
    }

    /// WRMSR: ECX names the MSR, EDX:EAX is the value.
    fn wrmsr<S: VcpuState, M: GuestMemory>(
        &mut self,
        guest: &mut Guest<'_, S, M>,
        exit: &GuestExit,
    ) -> Result<(), Fault> {
        let length = guest.instruction_length(exit.instruction_length, &WRMSR)?;
        let next = guest.next_rip(length)?;
        let general = &guest.registers.general;
        let msr = u32::try_from(general[1] & 0xffff_ffff).unwrap_or(0);
        let value = (general[2] & 0xffff_ffff) << 32 | (general[0] & 0xffff_ffff);
        let mut msrs = self.msrs;
        let written = match self.msr_device.as_mut().and_then(|device| device.write(msr, value)) {
            Some(()) => Ok(()),
            None => msrs.write(msr, value, guest, &mut self.msr_context()),
        };
        self.count_refusal(written)?;
        self.msrs = msrs;
        guest.retire(next)
    }

    /// Counts an MSR access answered with an exception.
    fn count_refusal<T>(&mut self, result: Result<T, Fault>) -> Result<T, Fault> {
        if let Err(Fault::Inject(_)) = result {
            self.counters.count_refused_msr();
        }
        result
    }
}

/// Whether exits of `kind` come from an instruction the guest executed.
const fn is_instruction_exit(kind: ExitKind) -> bool {
    match kind {
        ExitKind::Cpuid
        | ExitKind::Hlt
        | ExitKind::Io
        | ExitKind::MsrRead
        | ExitKind::MsrWrite
        | ExitKind::ControlRegister
        | ExitKind::Hypercall
        | ExitKind::VirtualisationInstruction
        | ExitKind::Xsetbv
        | ExitKind::SoftwareInterrupt => true,
        ExitKind::SecondLevelFault
        | ExitKind::Exception
        | ExitKind::TripleFault
        | ExitKind::Init
        | ExitKind::InterruptWindow
        | ExitKind::InvalidState
        | ExitKind::HostInterrupt
        | ExitKind::Other
        | ExitKind::Deadline => false,
    }
}

/// HLT: RIP moves on; with interrupts disabled nothing could wake the
/// guest (there is no NMI source), so it stops; else the binary waits.
fn halt<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, exit: &GuestExit) -> Result<Action, Fault> {
    let length = guest.instruction_length(exit.instruction_length, &HLT)?;
    let next = guest.next_rip(length)?;
    guest.retire(next)?;
    if guest.registers.rflags & rflags::IF == 0 {
        return Err(Stop::HaltedWithInterruptsDisabled.into());
    }
    Ok(Action::Halt)
}

/// An intercepted exception goes back to the guest as it was, except a
/// page fault (stopped: this VMM never intercepts one) and a #BP, which
/// the CPU delivers as a trap: RIP past the INT3.
fn reinject<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, exit: &GuestExit) -> Result<Action, Fault> {
    match Exception::from_qualification(exit.qualification) {
        Some(exception) if exception.vector == BREAKPOINT_VECTOR => breakpoint(guest, exit.instruction_length),
        Some(exception) if exception.vector != Exception::PAGE_FAULT_VECTOR => Err(Fault::Inject(exception)),
        Some(_) | None => Err(Stop::UndeliverableEvent { event: 0, other: exit.qualification }.into()),
    }
}

/// The guest's own INT3 (of `length` bytes, 0 if the exit did not say),
/// intercepted: delivered as the CPU would have, a #BP with RIP past it.
/// (Injected as a hardware exception, it skips the gate's DPL check an
/// INT3 in ring 3 makes: a guest whose #BP gate is not DPL 3 takes a #BP
/// where it would have taken a #GP.)
fn breakpoint<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>, length: u64) -> Result<Action, Fault> {
    let length = guest.instruction_length(length, &[Mnemonic::Int3])?;
    let next = guest.next_rip(length)?;
    guest.retire(next)?;
    Err(Fault::Inject(Exception::BREAKPOINT))
}

/// A software-interrupt exit (`svm` with #BP intercepted): an INT3 (QEMU's
/// TCG reports it here) is a breakpoint; an INT n is delivered as the CPU
/// would have, a software interrupt with RIP past the instruction (the
/// `svm` backend pushes RIP as it is; no other backend makes this exit).
fn software_interrupt<S: VcpuState, M: GuestMemory>(guest: &mut Guest<'_, S, M>) -> Result<Action, Fault> {
    let instruction = guest.fetch_instruction()?;
    match instruction.mnemonic() {
        Mnemonic::Int3 => breakpoint(guest, instruction.len() as u64),
        Mnemonic::Int => {
            let next = guest.next_rip(instruction.len() as u64)?;
            guest.retire(next)?;
            let event = Event { vector: instruction.immediate8(), kind: EventKind::Software, error_code: None };
            guest.registers.event = event.to_word();
            Ok(Action::Resume)
        }
        mnemonic => Err(guest.failure(crate::EmulationFailure::UnexpectedInstruction { mnemonic })),
    }
}

/// Checks the registers are ones VMEnter accepts (`docs/abi.md`,
/// "VMEnter"): canonical RIP and RSP, a well-formed event.
fn enterable(registers: &GuestRegisters) -> Result<(), Stop> {
    let event_ok = Event::from_word(registers.event).is_ok();
    let (rip, rsp) = (registers.rip, registers.general[4]);
    if is_canonical(rip) && is_canonical(rsp) && event_ok {
        Ok(())
    } else {
        Err(Stop::UnenterableRegisters { rip, rsp })
    }
}

#[cfg(test)]
mod tests;
