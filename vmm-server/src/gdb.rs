//! The guest debugger's hardware-free half (`docs/GUEST-GDB.md`): a
//! [`gdbstub`] target over a stopped guest's registers and memory, its
//! software breakpoints, single steps with the guest's own RFLAGS.TF kept
//! out of sight, and the verdict on each exit while a debugger is
//! attached. The VMM program owns the transport (a serial port) and the
//! loop; it hands this module a [`Snapshot`] when the guest stops and
//! takes the registers back when gdb resumes it.
//!
//! Everything gdb sends is untrusted: an address outside the guest's RAM
//! or its page tables is an error reply, a register value the kernel
//! would refuse is refused, and nothing here panics.

use bulkhead_components::vcpu::{GuestExit, GuestRegisters};
use gdbstub::arch::Arch;
use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::breakpoints::{Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::X86_64_SSE;
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use kernel_core::virt::{BREAKPOINT_VECTOR, DEBUG_VECTOR, ExitKind};

use crate::cpu::{ControlRegisters, is_canonical};
use crate::guest::GuestMemory;
use crate::paging::{Access, MemoryAccess, translate};

/// RFLAGS.TF: the single-step trap.
pub const TRAP_FLAG: u64 = 1 << 8;
/// The RFLAGS bits a guest may have (the kernel's WriteState check).
const GUEST_RFLAGS: u64 = kernel_core::vcpu::GUEST_RFLAGS;
/// INT3's encoding.
pub const INT3: u8 = 0xcc;
/// How many software breakpoints gdb may set at once.
pub const MAX_BREAKPOINTS: usize = 64;
/// The exception intercepts (VCpu field 58) for a breakpoint and a step.
pub const INTERCEPT_BREAKPOINT: u64 = 1 << BREAKPOINT_VECTOR;
/// The same for #DB.
pub const INTERCEPT_DEBUG: u64 = 1 << DEBUG_VECTOR;
/// x86 encoding order (the VMEnter registers' index) of each of gdb's
/// amd64 general registers: RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP,
/// R8..R15.
pub const GDB_TO_ENCODING: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

/// A stopped guest as the VMM read it: VMEnter's registers, the paging
/// state the debugger's addresses go through, and the segment selectors
/// (CS, SS, DS, ES, FS, GS) gdb shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The registers.
    pub registers: GuestRegisters,
    /// CR0, CR3, CR4, EFER.
    pub control: ControlRegisters,
    /// The selectors, in gdb's order.
    pub selectors: [u16; 6],
}

/// What gdb asked the guest to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Run until a breakpoint or an interrupt (Ctrl-C).
    Continue,
    /// Run one instruction.
    Step,
}

/// A software breakpoint: an INT3 written over the byte at `physical`
/// (what `linear` translated to when gdb set it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breakpoint {
    /// The guest-virtual address gdb named.
    pub linear: u64,
    /// Its guest-physical address then.
    pub physical: u64,
    /// The byte the INT3 replaced.
    pub original: u8,
}

/// What an exit means to the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The guest stopped for gdb: report this (the exit is consumed; the
    /// registers are as gdb must see them).
    Stop(SingleThreadStopReason<u64>),
    /// The exit is the guest's own: the VMM handles it as always.
    Guest,
}

/// The debugger's state across a session: the breakpoints, the step in
/// flight, and while the guest is stopped its snapshot.
pub struct Debugger<M: GuestMemory> {
    memory: M,
    snapshot: Snapshot,
    breakpoints: heapless::Vec<Breakpoint, MAX_BREAKPOINTS>,
    resume: Option<Resume>,
    /// While a step runs: the guest's own TF, given back when it ends.
    stepping: Option<bool>,
}

impl<M: GuestMemory> Debugger<M> {
    /// A debugger of the guest whose RAM is `memory`, with nothing set.
    pub fn new(memory: M) -> Self {
        Debugger {
            memory,
            snapshot: Snapshot::default(),
            breakpoints: heapless::Vec::new(),
            resume: None,
            stepping: None,
        }
    }

    /// The guest stopped as `snapshot` says: gdb's reads and writes go
    /// to it from now on.
    pub fn stop(&mut self, snapshot: Snapshot) {
        self.snapshot = snapshot;
    }

    /// The registers as gdb left them.
    #[must_use]
    pub const fn registers(&self) -> &GuestRegisters {
        &self.snapshot.registers
    }

    /// Takes gdb's last resume request, if there is one.
    pub fn take_resume(&mut self) -> Option<Resume> {
        self.resume.take()
    }

    /// The registers to enter the guest with for `resume`: for a step,
    /// TF set (the guest's own TF remembered).
    pub fn start(&mut self, resume: Resume) -> GuestRegisters {
        let mut registers = self.snapshot.registers;
        if resume == Resume::Step {
            self.stepping = Some(registers.rflags & TRAP_FLAG != 0);
            registers.rflags |= TRAP_FLAG;
        }
        registers
    }

    /// Whether a step is in flight.
    #[must_use]
    pub const fn stepping(&self) -> bool {
        self.stepping.is_some()
    }

    /// The exception intercepts the VCpu needs: #BP while a breakpoint
    /// is set, #DB while a step runs.
    #[must_use]
    pub fn intercepts(&self) -> u64 {
        let breakpoint = if self.breakpoints.is_empty() { 0 } else { INTERCEPT_BREAKPOINT };
        let debug = if self.stepping.is_some() { INTERCEPT_DEBUG } else { 0 };
        breakpoint | debug
    }

    /// The breakpoints set.
    #[must_use]
    pub fn breakpoints(&self) -> &[Breakpoint] {
        &self.breakpoints
    }

    /// Ends a step, if one runs: TF in `registers` goes back to the
    /// guest's own.
    pub fn end_step(&mut self, registers: &mut GuestRegisters) {
        if let Some(guest_tf) = self.stepping.take() {
            registers.rflags = registers.rflags & !TRAP_FLAG | if guest_tf { TRAP_FLAG } else { 0 };
        }
    }

    /// What `exit` means while a debugger is attached, before the VMM
    /// handles it. `instruction` is the byte at RIP for a
    /// software-interrupt exit (the caller fetched it; `None` if it
    /// could not). A #BP at a breakpoint of ours stops with SwBreak; a
    /// #DB during our step ends it (DoneStep). Anything else is the
    /// guest's, and TF stays set for a step still in flight.
    pub fn classify(&mut self, exit: &GuestExit, registers: &mut GuestRegisters, instruction: Option<u8>) -> Verdict {
        let linear = exit.code_segment[0].wrapping_add(registers.rip);
        let vector = exit.qualification & 0xff;
        let breakpoint = match exit.kind {
            Some(ExitKind::Exception) => vector == u64::from(BREAKPOINT_VECTOR),
            Some(ExitKind::SoftwareInterrupt) => instruction == Some(INT3),
            _ => false,
        };
        if breakpoint && self.breakpoints.iter().any(|known| known.linear == linear) {
            self.end_step(registers);
            return Verdict::Stop(SingleThreadStopReason::SwBreak(()));
        }
        if exit.kind == Some(ExitKind::Exception) && vector == u64::from(DEBUG_VECTOR) && self.stepping.is_some() {
            self.end_step(registers);
            return Verdict::Stop(SingleThreadStopReason::DoneStep);
        }
        Verdict::Guest
    }

    /// After the VMM handled an exit of `kind` during a step: an
    /// instruction it emulated (I/O, CPUID, an MSR, a control register,
    /// MMIO, HLT) retired without the CPU's #DB, so the step is done.
    pub fn after_emulation(
        &mut self,
        kind: Option<ExitKind>,
        registers: &mut GuestRegisters,
    ) -> Option<SingleThreadStopReason<u64>> {
        let emulated = matches!(
            kind,
            Some(
                ExitKind::Cpuid
                    | ExitKind::Hlt
                    | ExitKind::Io
                    | ExitKind::MsrRead
                    | ExitKind::MsrWrite
                    | ExitKind::ControlRegister
                    | ExitKind::SecondLevelFault
            )
        );
        if emulated && self.stepping.is_some() {
            self.end_step(registers);
            return Some(SingleThreadStopReason::DoneStep);
        }
        None
    }

    /// Takes every breakpoint out of the guest's memory (its bytes back)
    /// and forgets any step: a detach.
    pub fn clear(&mut self) {
        while let Some(breakpoint) = self.breakpoints.pop() {
            let _ = self.memory.write(breakpoint.physical, &[breakpoint.original]);
        }
        self.resume = None;
    }

    /// The guest-physical address of `linear` for the debugger: a
    /// supervisor read (so read-only code can take a breakpoint, and
    /// SMAP does not hide user pages).
    fn physical(&mut self, linear: u64) -> Option<u64> {
        let request = MemoryAccess { access: Access::Read, user: false, alignment_check: true };
        translate(&mut self.memory, &self.snapshot.control, linear, request).ok()
    }

    /// Calls `each(physical, offset, length)` for the pieces of
    /// `linear..linear + length` that lie in one page each, up to the
    /// first that does not translate; how many bytes were covered.
    fn pages(&mut self, linear: u64, length: usize, mut each: impl FnMut(&mut M, u64, usize, usize) -> bool) -> usize {
        let mut done = 0;
        while done < length {
            let address = linear.wrapping_add(done as u64);
            let in_page = usize::try_from(0x1000 - (address & 0xfff)).unwrap_or(1);
            let chunk = in_page.min(length - done);
            let Some(physical) = self.physical(address) else { break };
            if !each(&mut self.memory, physical, done, chunk) {
                break;
            }
            done += chunk;
        }
        done
    }

    /// Reads guest-virtual memory with every breakpoint's INT3 shown as
    /// the byte it replaced; how many bytes could be read.
    pub fn read_virtual(&mut self, linear: u64, data: &mut [u8]) -> usize {
        let length = data.len();
        let mut pieces: heapless::Vec<(u64, usize, usize), 8> = heapless::Vec::new();
        let read = self.pages(linear, length, |memory, physical, offset, chunk| {
            let ok = memory.read(physical, &mut data[offset..offset + chunk]).is_ok();
            if ok {
                let _ = pieces.push((physical, offset, chunk));
            }
            ok
        });
        for (physical, offset, chunk) in pieces {
            for breakpoint in &self.breakpoints {
                if let Some(at) = breakpoint.physical.checked_sub(physical)
                    && let Ok(at) = usize::try_from(at)
                    && at < chunk
                {
                    data[offset + at] = breakpoint.original;
                }
            }
        }
        read
    }

    /// Writes guest-virtual memory, page by page; a byte under a
    /// breakpoint changes the byte the INT3 will give back, not the INT3.
    /// Whether it all was written (a page that does not translate ends
    /// the write there).
    pub fn write_virtual(&mut self, linear: u64, data: &[u8]) -> bool {
        let mut done = 0;
        while done < data.len() {
            let address = linear.wrapping_add(done as u64);
            let in_page = usize::try_from(0x1000 - (address & 0xfff)).unwrap_or(1);
            let piece = &data[done..done + in_page.min(data.len() - done)];
            let Some(physical) = self.physical(address) else { return false };
            if self.memory.write(physical, piece).is_err() {
                return false;
            }
            for breakpoint in &mut self.breakpoints {
                if let Some(at) = breakpoint.physical.checked_sub(physical)
                    && let Ok(at) = usize::try_from(at)
                    && let Some(byte) = piece.get(at)
                {
                    breakpoint.original = *byte;
                    let _ = self.memory.write(breakpoint.physical, &[INT3]);
                }
            }
            done += piece.len();
        }
        true
    }

    /// Sets a breakpoint at `linear`: false when it cannot be (no RAM
    /// there, or the table is full). Setting one twice is one.
    pub fn insert_breakpoint(&mut self, linear: u64) -> bool {
        if self.breakpoints.iter().any(|known| known.linear == linear) {
            return true;
        }
        let Some(physical) = self.physical(linear) else { return false };
        let mut original = [0];
        if self.memory.read(physical, &mut original).is_err() || self.breakpoints.is_full() {
            return false;
        }
        // Two addresses on one byte (an alias): the first's INT3 is there.
        let original = self
            .breakpoints
            .iter()
            .find(|known| known.physical == physical)
            .map_or(original[0], |known| known.original);
        if self.memory.write(physical, &[INT3]).is_err() {
            return false;
        }
        self.breakpoints.push(Breakpoint { linear, physical, original }).is_ok()
    }

    /// Removes the breakpoint at `linear`, its byte back: false if none
    /// is there.
    pub fn remove_breakpoint(&mut self, linear: u64) -> bool {
        let Some(index) = self.breakpoints.iter().position(|known| known.linear == linear) else { return false };
        let breakpoint = self.breakpoints.swap_remove(index);
        if !self.breakpoints.iter().any(|known| known.physical == breakpoint.physical) {
            let _ = self.memory.write(breakpoint.physical, &[breakpoint.original]);
        }
        true
    }

    /// gdb's registers from the snapshot: the general registers in gdb's
    /// order, RIP, RFLAGS, the selectors; the x87 and SSE state reads as
    /// zeros (the kernel does not expose the guest's).
    #[must_use]
    pub fn gdb_registers(&self) -> X86_64CoreRegs {
        let registers = &self.snapshot.registers;
        let mut gdb = X86_64CoreRegs::default();
        for (slot, encoding) in gdb.regs.iter_mut().zip(GDB_TO_ENCODING) {
            *slot = registers.general[encoding];
        }
        gdb.rip = registers.rip;
        gdb.eflags = u32::try_from(registers.rflags & 0xffff_ffff).unwrap_or(0);
        let [cs, ss, ds, es, fs, gs] = self.snapshot.selectors.map(u32::from);
        gdb.segments.cs = cs;
        gdb.segments.ss = ss;
        gdb.segments.ds = ds;
        gdb.segments.es = es;
        gdb.segments.fs = fs;
        gdb.segments.gs = gs;
        gdb
    }

    /// Takes gdb's registers into the snapshot: the general registers,
    /// RIP (canonical) and RFLAGS (the guest's bits; bit 1 set). Selectors,
    /// x87 and SSE writes are ignored. False, with nothing changed, for
    /// a value VMEnter would refuse.
    pub fn set_gdb_registers(&mut self, gdb: &X86_64CoreRegs) -> bool {
        let rflags = u64::from(gdb.eflags);
        let rsp = gdb.regs[7];
        if !is_canonical(gdb.rip) || !is_canonical(rsp) || rflags & !GUEST_RFLAGS != 0 {
            return false;
        }
        let registers = &mut self.snapshot.registers;
        for (value, encoding) in gdb.regs.iter().zip(GDB_TO_ENCODING) {
            registers.general[encoding] = *value;
        }
        registers.rip = gdb.rip;
        registers.rflags = rflags | 0x2;
        true
    }
}

impl<M: GuestMemory> Target for Debugger<M> {
    type Arch = X86_64_SSE;
    type Error = ();

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl<M: GuestMemory> SingleThreadBase for Debugger<M> {
    fn read_registers(&mut self, registers: &mut <X86_64_SSE as Arch>::Registers) -> TargetResult<(), Self> {
        *registers = self.gdb_registers();
        Ok(())
    }

    fn write_registers(&mut self, registers: &<X86_64_SSE as Arch>::Registers) -> TargetResult<(), Self> {
        if self.set_gdb_registers(registers) { Ok(()) } else { Err(TargetError::NonFatal) }
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        match self.read_virtual(start, data) {
            0 if !data.is_empty() => Err(TargetError::NonFatal),
            read => Ok(read),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        if self.write_virtual(start, data) { Ok(()) } else { Err(TargetError::NonFatal) }
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl<M: GuestMemory> SingleThreadResume for Debugger<M> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl<M: GuestMemory> SingleThreadSingleStep for Debugger<M> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Step);
        Ok(())
    }
}

impl<M: GuestMemory> Breakpoints for Debugger<M> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl<M: GuestMemory> SwBreakpoint for Debugger<M> {
    fn add_sw_breakpoint(&mut self, address: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.insert_breakpoint(address))
    }

    fn remove_sw_breakpoint(&mut self, address: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_breakpoint(address))
    }
}

#[cfg(test)]
mod tests;
