//! The root task as a VMM: a guest's memory in a GuestSpace, a VCpu
//! bound to the root's own thread, and VMEnter run exit by exit, each exit
//! handled as a VMM would (`docs/VIRTUALISATION.md`). The guest is the one
//! the kernel's boot self-tests run: 16-bit real mode, an OUT, a CPUID, a
//! WRMSR of EFER, a store outside its memory, HLT. Then VMEnter's
//! deadline and controls: a spinning guest stopped by its deadline, a
//! halted vCPU's `WAIT` ended by the deadline and by a signal, an
//! interrupt-window exit only after an STI's shadow, and the refusals;
//! the exception intercepts a debugger uses (an INT3 and a single step
//! exit with their vectors, other vectors are refused).
//! Last, the same VCpu as a 64-bit guest: its SYSCALL lands where the
//! LSTAR field says, its SWAPGS and its CR2 reach the fields, and PAT and
//! the SYSENTER MSRs keep what was written.

use bulkhead_components::Error;
use bulkhead_components::abi::cap::{ObjectKind, Rights};
use bulkhead_components::abi::vcpu::{GuestField, Segment, SegmentPart};
use bulkhead_components::abi::virt::{ExitKind, IoAccess, SecondLevelFault};
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::invocation::{Registers, attributes};
use bulkhead_components::kernel::{EXIT_DETAIL_WORDS, Kernel, NO_CAP, Syscall, number};
use bulkhead_components::vcpu::{EnterControls, Entered, GuestExit, GuestRegisters, vm_enter};
use bulkhead_components::{Message, abi::vcpu::enter};
use bulkhead_sys::mapped::MappedPage;
use bulkhead_sys::{Sys, println};

use super::{Failure, ROOT_CNODE, ROOT_TCB, ROOT_VSPACE, Root, SCHED_CONTROL, Stopped, expect, step};

/// Where the root maps the guest's page to write its code.
const GUEST_PAGE: u64 = super::FIRST_FREE_ADDRESS + 0x2_0000;
/// Where the guest's code starts (guest-physical, real mode).
const GUEST_ENTRY: u64 = 0x100;
/// The guest: `mov al, 0x42; out 0x80, al; xor ax, ax; cpuid;
/// mov ecx, 0xc000_0080; xor eax, eax; xor edx, edx; wrmsr;
/// mov byte [0x2000], 1; hlt`, then at [`SPIN_AT`] `inc word [0x300];
/// jmp short` back to the increment: a loop that never exits and counts
/// its rounds at guest-physical [`SPIN_COUNTER`].
const GUEST_CODE: [u8; 34] = [
    0xb0, 0x42, 0xe6, 0x80, 0x31, 0xc0, 0x0f, 0xa2, 0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x66, 0x31, 0xc0, 0x66, 0x31,
    0xd2, 0x0f, 0x30, 0xc6, 0x06, 0x00, 0x20, 0x01, 0xf4, 0xff, 0x06, 0x00, 0x03, 0xeb, 0xfa,
];
/// Where the spinning loop counts (guest-physical; a word of the page).
const SPIN_COUNTER: u64 = 0x300;
/// The benchmark guest at [`CPUID_LOOP_AT`]: CPUID of leaf 0,
/// [`CPUID_ROUNDS`] times (the counter in SI, which CPUID leaves alone),
/// then HLT: `mov si, 1000; l: xor ax, ax; cpuid; dec si; jnz l; hlt`.
const CPUID_LOOP: [u8; 11] = [0xbe, 0xe8, 0x03, 0x31, 0xc0, 0x0f, 0xa2, 0x4e, 0x75, 0xf9, 0xf4];
/// Where it starts (guest-physical).
const CPUID_LOOP_AT: u64 = 0x200;
/// The interrupt-window guest at [`WINDOW_AT`]: `sti; nop; nop; hlt`.
/// Entered with interrupts disabled, it can take an interrupt only once
/// the STI's shadow (the first NOP) is over: at `WINDOW_AT + 2`.
const WINDOW_CODE: [u8; 4] = [0xfb, 0x90, 0x90, 0xf4];
/// Where it starts (guest-physical).
const WINDOW_AT: u64 = 0x280;
/// The debugging guest at [`DEBUG_AT`]: `int3; nop; nop; hlt`.
const DEBUG_CODE: [u8; 4] = [0xcc, 0x90, 0x90, 0xf4];
/// Where it starts (guest-physical).
const DEBUG_AT: u64 = 0x3e0;
/// The exception intercepts' bits: #DB (vector 1) and #BP (vector 3).
const INTERCEPT_DEBUG: u64 = 1 << 1;
const INTERCEPT_BREAKPOINT: u64 = 1 << 3;
/// RFLAGS.TF: a single step.
const RFLAGS_TF: u64 = 1 << 8;
/// The 64-bit guest at [`LONG_AT`]: `mov rbx, cr2; mov cr2, rax; swapgs;
/// syscall; hlt` (the HLT only if SYSCALL fell through).
const LONG_CODE: [u8; 12] = [0x0f, 0x20, 0xd3, 0x0f, 0x22, 0xd0, 0x0f, 0x01, 0xf8, 0x0f, 0x05, 0xf4];
/// Where it starts (guest-physical, and linear: the paging maps the
/// guest's page onto itself).
const LONG_AT: u64 = 0x380;
/// Where SYSCALL goes back to (RCX after it): past the SYSCALL.
const AFTER_SYSCALL: u64 = LONG_AT + 11;
/// The 64-bit guest's SYSCALL entry, the LSTAR it is given: a HLT.
const SYSCALL_ENTRY: u64 = 0x3c0;
/// The 64-bit guest's paging: one entry at guest-physical 0, read as the
/// PML4's, the PDPT's, the page directory's and the page table's first
/// (CR3 is 0, and every level's entry 0 points at page 0 again): linear
/// page 0 is physical page 0. Present, writable, supervisor.
const SELF_MAPPING_ENTRY: u64 = 0x3;
/// The 64-bit guest's state: CR0 PG, ET, PE; CR4 PAE; EFER SCE, LME, LMA;
/// CS a 64-bit code segment (selector 8, attributes G, L, P, S, code).
const LONG_CR0: u64 = 0x8000_0011;
const LONG_CR4: u64 = 0x20;
const LONG_EFER: u64 = 0x501;
const LONG_CS_ATTRIBUTES: u64 = 0xa9b;
/// STAR: SYSCALL's CS 0x10 (SS 0x18), SYSRET's base 0x20.
const GUEST_STAR: u64 = 0x0023_0010_0000_0000;
/// SFMASK: SYSCALL clears DF.
const GUEST_SFMASK: u64 = 0x400;
/// RFLAGS at entry: DF set (for SFMASK to clear).
const RFLAGS_DF: u64 = 0x402;
/// GS's base and KERNEL_GS_BASE before the guest's SWAPGS.
const GUEST_GS_BASE: u64 = 0x1111_0000;
const GUEST_KERNEL_GS_BASE: u64 = 0xffff_8000_2222_0000;
/// CR2 as WriteState sets it (the guest reads it into RBX), and as the
/// guest sets it (from RAX).
const CR2_WRITTEN: u64 = 0x5555_0000;
const CR2_BY_GUEST: u64 = 0x7777_0000;
/// PAT and SYSENTER values written and read back.
const GUEST_PAT: u64 = 0x0007_0406_0007_0401;
const GUEST_SYSENTER: [(GuestField, u64); 3] = [
    (GuestField::SYSENTER_CS, 0x10),
    (GuestField::SYSENTER_ESP, 0xffff_8000_0000_8000),
    (GuestField::SYSENTER_EIP, 0xffff_8000_0000_9000),
];
/// How far ahead the deadline tests set their deadlines (TSC ticks).
const DEADLINE_AHEAD: u64 = 2_000_000;
/// How late a deadline's return may come: the timer's interrupt, the
/// kernel's path back and the root's TSC read take a few thousand ticks
/// (about 1,000 under QEMU's `-icount`), but an emulator without
/// `-icount` on a loaded host delivers a timer interrupt when its own
/// thread gets to it (over 600,000 ticks late was seen). Without the
/// deadline the calls would not come back for 2^40 ticks (the root's
/// budget) or ever.
const DEADLINE_SLACK: u64 = 50_000_000;
/// A deadline far enough ahead that a signal comes first.
const FAR_AHEAD: u64 = 1 << 40;
/// RFLAGS with interrupts disabled, and enabled.
const RFLAGS_IF_CLEAR: u64 = 0x2;
const RFLAGS_IF_SET: u64 = 0x202;
/// The index of the interruptibility state among an exit's control words.
const INTERRUPTIBILITY: usize = 4;
/// How many CPUIDs it makes.
const CPUID_ROUNDS: u64 = 1000;
/// The root's budget for the benchmark: the whole period, so that no
/// throttling lands in the measurement.
const BENCH_BUDGET: u64 = 1 << 40;
/// How often the root tries to catch the signal after the guest ran (the
/// signal may come before the guest runs, when the root's budget ends
/// between its go-ahead and its VMEnter).
const SPIN_ATTEMPTS: u32 = 5;
/// Where HLT is.
const HLT_AT: u64 = GUEST_ENTRY + 27;
/// Where the endless loop is.
const SPIN_AT: u64 = GUEST_ENTRY + 28;
/// The badge of the signaller's notification capability.
const SIGNALLER_BADGE: u64 = 0x77;
/// The signaller's IPC buffer (its stack is the stopped child's).
const SIGNALLER_IPC_BUFFER: u64 = super::CHILD_IPC_BUFFER + 0x2000;
/// Its priority, below the root's: it runs only when the root cannot.
const SIGNALLER_PRIORITY: u8 = 100;
/// The root's budget while its guest spins (TSC ticks per period): room
/// for many rounds of the loop, a bounded share of the CPU.
const GUEST_BUDGET: u64 = 2_000_000;
const GUEST_PERIOD: u64 = 4_000_000;
/// What the VMM answers CPUID with in EBX ("Bulk").
const CPUID_EBX: u64 = 0x6b6c_7542;
/// The exits the guest takes, in order.
const EXPECTED: [ExitKind; 5] =
    [ExitKind::Io, ExitKind::Cpuid, ExitKind::MsrWrite, ExitKind::SecondLevelFault, ExitKind::Hlt];
/// Register numbers (x86 encoding).
const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const R11: usize = 11;

impl Root<'_> {
    /// Builds the guest and runs it to HLT.
    pub(super) fn guest(&mut self, pool: Cap<kind::AsidPool>) -> Result<(), Stopped> {
        let space = step("retype and assign a guest space", self.guest_space(pool))?;
        let page = step("map guest memory", self.guest_memory(space))?;
        let vcpu = step("retype a vcpu", self.retype::<kind::VCpu>(ObjectKind::VCpu, 0))?;
        let bind = vcpu.set_space(self.sys, space).and_then(|()| vcpu.set_tcb(self.sys, ROOT_TCB));
        step("bind the vcpu to the root", bind.map_err(Failure::from))?;
        step("write guest state", self.guest_state(vcpu))?;
        let mut refused = GuestRegisters { rip: 1 << 47, rflags: 0x2, ..GuestRegisters::default() };
        let refusal = match vm_enter(self.sys, &mut refused, EnterControls::default()) {
            Err(Error::InvalidArgument) => Ok(()),
            Err(error) => Err(Failure::Kernel(error)),
            Ok(_) => Err(Failure::Unexpected { what: "VMEnter with a non-canonical RIP ran", got: 1, expected: 0 }),
        };
        step("vmenter refuses a non-canonical rip", refusal)?;
        step("run the guest to hlt", self.run_guest(vcpu))?;
        let signals = step("start a signaller", self.signals())?;
        step("a spinning guest ends with the vmm's budget", self.spin(&page, &signals))?;
        step("vmenter refuses undefined controls and a 19-word message", self.refused_controls())?;
        step("a spinning guest ends at its deadline", self.spin_to_deadline(&page))?;
        step("a halted vcpu sleeps until its deadline", self.wait_for_deadline(&page, &signals))?;
        step("a signal ends a halted vcpu's sleep", self.wait_for_signal(&signals))?;
        step("an interrupt window opens after the sti shadow", self.interrupt_window())?;
        step("an int3 and a single step exit with #bp and #db when intercepted", self.debug_exits(vcpu))?;
        step("run a cpuid loop", self.cpuid_loop())?;
        step("a 64-bit guest's syscall, swapgs and cr2 use the vcpu's fields", self.long_mode(vcpu))
    }

    /// The VCpu as a 64-bit guest at [`LONG_AT`]: its state written
    /// (paging through [`SELF_MAPPING_ENTRY`], STAR, LSTAR, SFMASK, GS's
    /// base and KERNEL_GS_BASE, CR2, PAT, the SYSENTER MSRs), it reads
    /// CR2, writes CR2, swaps GS and makes a SYSCALL, which must land on
    /// the HLT at LSTAR with RCX, R11 and RFLAGS as SYSCALL leaves them and
    /// CS from STAR; ReadState then gives the guest's CR2 and the swapped
    /// GS bases, and PAT and SYSENTER as written. A PAT entry that is no
    /// memory type is refused.
    fn long_mode(&mut self, vcpu: Cap<kind::VCpu>) -> Result<(), Failure> {
        let cs = |part| GuestField::segment(Segment::Cs, part);
        let gs_base = GuestField::segment(Segment::Gs, SegmentPart::Base);
        for (field, value) in [
            (GuestField::CR3, 0),
            (GuestField::CR4, LONG_CR4),
            (GuestField::CR0, LONG_CR0),
            (GuestField::EFER, LONG_EFER),
            (cs(SegmentPart::Selector), 0x8),
            (cs(SegmentPart::Limit), 0xffff_ffff),
            (cs(SegmentPart::Attributes), LONG_CS_ATTRIBUTES),
            (GuestField::STAR, GUEST_STAR),
            (GuestField::LSTAR, SYSCALL_ENTRY),
            (GuestField::SFMASK, GUEST_SFMASK),
            (gs_base, GUEST_GS_BASE),
            (GuestField::KERNEL_GS_BASE, GUEST_KERNEL_GS_BASE),
            (GuestField::CR2, CR2_WRITTEN),
            (GuestField::PAT, GUEST_PAT),
        ]
        .into_iter()
        .chain(GUEST_SYSENTER)
        {
            vcpu.write_state(self.sys, field, value)?;
        }
        match vcpu.write_state(self.sys, GuestField::PAT, (GUEST_PAT & !0xff) | 2) {
            Err(Error::InvalidArgument) => {}
            other => {
                return Err(Failure::Unexpected {
                    what: "a PAT entry of type 2 written, ok",
                    got: u64::from(other.is_ok()),
                    expected: 0,
                });
            }
        }
        let mut registers = GuestRegisters { rip: LONG_AT, rflags: RFLAGS_DF, ..GuestRegisters::default() };
        registers.general[RAX] = CR2_BY_GUEST;
        let exit = exit_of(vm_enter(self.sys, &mut registers, EnterControls::default())?, ExitKind::Hlt)?;
        println!(
            "root: 64-bit guest halted at rip {:#x}: rcx {:#x}, r11 {:#x}, rflags {:#x}, cr2 read {:#x}",
            registers.rip,
            registers.get(RCX),
            registers.get(R11),
            registers.rflags,
            registers.get(RBX)
        );
        expect("RIP at LSTAR's HLT", registers.rip, SYSCALL_ENTRY)?;
        expect("RCX: the RIP after SYSCALL", registers.get(RCX), AFTER_SYSCALL)?;
        expect("R11: RFLAGS before SYSCALL", registers.get(R11), RFLAGS_DF)?;
        expect("RFLAGS: SFMASK cleared DF", registers.rflags, RFLAGS_DF & !GUEST_SFMASK)?;
        expect("EFER in the exit", exit.control[3], LONG_EFER)?;
        expect("CS selector from STAR", vcpu.read_state(self.sys, cs(SegmentPart::Selector))?, 0x10)?;
        expect("the CR2 the guest read", registers.get(RBX), CR2_WRITTEN)?;
        expect("the CR2 the guest wrote", vcpu.read_state(self.sys, GuestField::CR2)?, CR2_BY_GUEST)?;
        expect("GS base after SWAPGS", vcpu.read_state(self.sys, gs_base)?, GUEST_KERNEL_GS_BASE)?;
        expect("KERNEL_GS_BASE after SWAPGS", vcpu.read_state(self.sys, GuestField::KERNEL_GS_BASE)?, GUEST_GS_BASE)?;
        expect("PAT", vcpu.read_state(self.sys, GuestField::PAT)?, GUEST_PAT)?;
        for (field, value) in GUEST_SYSENTER {
            expect("a SYSENTER MSR", vcpu.read_state(self.sys, field)?, value)?;
        }
        expect("LSTAR", vcpu.read_state(self.sys, GuestField::LSTAR)?, SYSCALL_ENTRY)
    }

    /// The benchmark: the guest makes [`CPUID_ROUNDS`] CPUIDs, each an
    /// exit the root answers. Prints the TSC ticks per exit (instructions
    /// under QEMU's `-icount shift=0`: `cargo run -- --kernel-boot
    /// --abi-self-test --count-instructions`), split into the time inside
    /// VMEnter (kernel, world switch, the guest's three instructions) and
    /// the time in the root's own handling; checks only that every exit
    /// was a CPUID and the last HLT.
    fn cpuid_loop(&mut self) -> Result<(), Failure> {
        let context = self.budget.ok_or(Failure::Unexpected { what: "the root's budget", got: 0, expected: 1 })?;
        SCHED_CONTROL.configure(self.sys, context, BENCH_BUDGET, BENCH_BUDGET)?;
        let mut registers = GuestRegisters { rip: CPUID_LOOP_AT, rflags: 0x2, ..GuestRegisters::default() };
        let (mut inside, mut cpuids) = (0, 0);
        let started = bulkhead_sys::arch::read_tsc();
        loop {
            let before = bulkhead_sys::arch::read_tsc();
            let entered = vm_enter(self.sys, &mut registers, EnterControls::default())?;
            inside += bulkhead_sys::arch::read_tsc() - before;
            let Entered::Exit(exit) = entered else {
                return Err(Failure::Unexpected { what: "a notification during the benchmark", got: 1, expected: 0 });
            };
            match exit.kind {
                Some(ExitKind::Cpuid) => {
                    cpuids += 1;
                    self.handle(&exit, ExitKind::Cpuid, &mut registers)?;
                }
                Some(ExitKind::Hlt) => break,
                _ => {
                    return Err(Failure::Unexpected {
                        what: "a benchmark exit, reason",
                        got: exit.reason,
                        expected: 0,
                    });
                }
            }
        }
        let total = bulkhead_sys::arch::read_tsc() - started;
        expect("CPUID exits", cpuids, CPUID_ROUNDS)?;
        let exits = cpuids + 1;
        println!(
            "root: cpuid loop: {exits} exits, {} TSC ticks per exit: {} inside VMEnter, {} in the root",
            total / exits,
            inside / exits,
            (total - inside) / exits
        );
        Ok(())
    }

    /// The guest loops for ever at [`SPIN_AT`]. The root runs on a budget
    /// (`long_revoke` gave it one); a thread of lower priority, which runs
    /// only while the root is out of budget, signals the notification
    /// bound to the root each time the root lets it go. The VMEnter must
    /// come back with that signal after the guest ran (its counter moved):
    /// the guest's time was the root's, and the kernel took the CPU from
    /// it when the budget ran out.
    fn spin(&mut self, page: &MappedPage, signals: &Signals) -> Result<(), Failure> {
        let Signals { bound: notification, go } = *signals;
        ROOT_TCB.bind_notification(self.sys, notification)?;
        // A budget the guest can run in: the revoke's is used up by a few
        // system calls.
        let context = self.budget.ok_or(Failure::Unexpected { what: "the root's budget", got: 0, expected: 1 })?;
        SCHED_CONTROL.configure(self.sys, context, GUEST_BUDGET, GUEST_PERIOD)?;
        for _ in 0..SPIN_ATTEMPTS {
            let before = spin_counter(page);
            go.signal(self.sys)?;
            let mut registers = GuestRegisters { rip: SPIN_AT, rflags: 0x2, ..GuestRegisters::default() };
            match vm_enter(self.sys, &mut registers, EnterControls::default())? {
                Entered::Notification { badge } => {
                    expect("the signal's badge", badge, SIGNALLER_BADGE)?;
                    if spin_counter(page) == before {
                        // The signal came before the guest ran: again.
                        continue;
                    }
                    let in_loop = (SPIN_AT..SPIN_AT + 6).contains(&registers.rip);
                    expect("RIP in the loop", u64::from(in_loop), 1)?;
                    ROOT_TCB.unbind_notification(self.sys)?;
                    println!("root: the spinning guest stopped when the root's budget ran out");
                    return Ok(());
                }
                Entered::Exit(exit) => {
                    return Err(Failure::Unexpected {
                        what: "the spinning guest exited, reason",
                        got: exit.reason,
                        expected: 0,
                    });
                }
            }
        }
        Err(Failure::Unexpected {
            what: "attempts without the guest running",
            got: u64::from(SPIN_ATTEMPTS),
            expected: 0,
        })
    }

    /// The notification the deadline tests bind to the root, and the
    /// signaller that signals it with [`SIGNALLER_BADGE`] each time its
    /// `go` notification is signalled (it runs only when the root cannot).
    fn signals(&mut self) -> Result<Signals, Failure> {
        let bound = self.retype::<kind::Notification>(ObjectKind::Notification, 0)?;
        let go = self.retype::<kind::Notification>(ObjectKind::Notification, 0)?;
        let badged = self.mint(bound, Rights::WRITE, SIGNALLER_BADGE)?;
        self.signaller(badged, go)?;
        Ok(Signals { bound, go })
    }

    /// The root gives itself its whole core again (budget = period): the
    /// deadline tests measure time, which a refill wait would stretch.
    fn whole_budget(&mut self) -> Result<(), Failure> {
        let context = self.budget.ok_or(Failure::Unexpected { what: "the root's budget", got: 0, expected: 1 })?;
        SCHED_CONTROL.configure(self.sys, context, BENCH_BUDGET, BENCH_BUDGET)?;
        Ok(())
    }

    /// Control bits VMEnter does not define are refused (InvalidArgument),
    /// as is a `WAIT` that could never end (no deadline, no bound
    /// notification: IllegalOperation) and the 19-word message of before
    /// the deadline and the controls (TruncatedMessage); the guest does
    /// not run.
    fn refused_controls(&mut self) -> Result<(), Failure> {
        let start = GuestRegisters { rip: SPIN_AT, rflags: RFLAGS_IF_CLEAR, ..GuestRegisters::default() };
        for controls in [1 << 2, 1 << 63, u64::MAX] {
            let mut registers = start;
            let mut detail = [0; EXIT_DETAIL_WORDS];
            let (info, _) = self.sys.vm_enter_call(&mut registers, [0, controls], &mut detail)?;
            expect("VMEnter with an undefined control bit, result", info.label, Error::InvalidArgument as u64)?;
        }
        let mut registers = start;
        let forever = EnterControls { wait: true, ..EnterControls::default() };
        match vm_enter(self.sys, &mut registers, forever) {
            Err(Error::IllegalOperation) => {}
            other => {
                return Err(Failure::Unexpected {
                    what: "WAIT without a deadline or a notification, ok",
                    got: u64::from(other.is_ok()),
                    expected: 0,
                });
            }
        }
        let mut words = [0; enter::STATE_WORDS];
        words[enter::RIP] = SPIN_AT;
        words[enter::RFLAGS] = RFLAGS_IF_CLEAR;
        let message = Message::new(0, &words);
        let old = Syscall { number: number::VM_ENTER, cptr: NO_CAP, message: &message, caps: &[], reply: NO_CAP };
        let incoming = self.sys.syscall(old)?;
        expect("a 19-word VMEnter, result", incoming.message.label, Error::TruncatedMessage as u64)
    }

    /// (a) A guest that never exits (the counting loop, interrupts
    /// disabled) comes back with a Deadline exit at about its deadline,
    /// having run until then.
    fn spin_to_deadline(&mut self, page: &MappedPage) -> Result<(), Failure> {
        self.whole_budget()?;
        let before = spin_counter(page);
        let mut registers = GuestRegisters { rip: SPIN_AT, rflags: RFLAGS_IF_CLEAR, ..GuestRegisters::default() };
        let deadline = bulkhead_sys::arch::read_tsc() + DEADLINE_AHEAD;
        let entered = vm_enter(self.sys, &mut registers, EnterControls { deadline, ..EnterControls::default() })?;
        let returned = bulkhead_sys::arch::read_tsc();
        let exit = deadline_exit(entered)?;
        expect("the deadline exit's instruction length", exit.instruction_length, 0)?;
        expect("returned at or after the deadline", u64::from(returned >= deadline), 1)?;
        expect("returned about at the deadline", u64::from(returned - deadline < DEADLINE_SLACK), 1)?;
        expect("the guest ran", u64::from(spin_counter(page) != before), 1)?;
        let in_loop = (SPIN_AT..SPIN_AT + 6).contains(&registers.rip);
        expect("RIP in the loop", u64::from(in_loop), 1)?;
        // A deadline already past: back at once, the guest not run.
        let counted = spin_counter(page);
        let past = EnterControls { deadline: 1, ..EnterControls::default() };
        let exit = deadline_exit(vm_enter(self.sys, &mut registers, past)?)?;
        expect("the hardware reason of a run that never started", exit.reason, 0)?;
        expect("the guest did not run", spin_counter(page), counted)?;
        println!("root: the spinning guest came back {} TSC ticks after its deadline", returned - deadline);
        Ok(())
    }

    /// (b) A halted vCPU (`WAIT`) with a deadline and no bound
    /// notification: the call sleeps and comes back with a Deadline exit at
    /// or after the deadline, the guest not run. Meanwhile the root is off
    /// the CPU: the signaller, which runs only when the root cannot, gets
    /// to signal the (unbound) notification, which the root then polls.
    fn wait_for_deadline(&mut self, page: &MappedPage, signals: &Signals) -> Result<(), Failure> {
        let counted = spin_counter(page);
        signals.go.signal(self.sys)?;
        let mut registers = GuestRegisters { rip: SPIN_AT, rflags: RFLAGS_IF_SET, ..GuestRegisters::default() };
        let deadline = bulkhead_sys::arch::read_tsc() + DEADLINE_AHEAD;
        let halted = EnterControls { deadline, wait: true, interrupt_window: false };
        let entered = vm_enter(self.sys, &mut registers, halted)?;
        let returned = bulkhead_sys::arch::read_tsc();
        deadline_exit(entered)?;
        expect("woke at or after the deadline", u64::from(returned >= deadline), 1)?;
        expect("woke about at the deadline", u64::from(returned - deadline < DEADLINE_SLACK), 1)?;
        expect("RIP where the vCPU halted", registers.rip, SPIN_AT)?;
        expect("the halted guest did not run", spin_counter(page), counted)?;
        expect("the signaller ran while the root slept", signals.bound.poll(self.sys)?, SIGNALLER_BADGE)?;
        println!("root: the halted vcpu woke {} TSC ticks after its deadline", returned - deadline);
        Ok(())
    }

    /// (c) A halted vCPU with a bound notification and a deadline far
    /// ahead: the signaller's signal ends the sleep (label 0x20001, its
    /// badge), long before the deadline.
    fn wait_for_signal(&mut self, signals: &Signals) -> Result<(), Failure> {
        ROOT_TCB.bind_notification(self.sys, signals.bound)?;
        let mut registers = GuestRegisters { rip: SPIN_AT, rflags: RFLAGS_IF_SET, ..GuestRegisters::default() };
        let deadline = bulkhead_sys::arch::read_tsc() + FAR_AHEAD;
        signals.go.signal(self.sys)?;
        let halted = EnterControls { deadline, wait: true, interrupt_window: false };
        let entered = vm_enter(self.sys, &mut registers, halted)?;
        ROOT_TCB.unbind_notification(self.sys)?;
        match entered {
            Entered::Notification { badge } => expect("the signal's badge", badge, SIGNALLER_BADGE)?,
            Entered::Exit(exit) => {
                return Err(Failure::Unexpected {
                    what: "a halted vCPU exited, kind",
                    got: exit.kind.map_or(0, |kind| kind as u64),
                    expected: 0,
                });
            }
        }
        expect("before the deadline", u64::from(bulkhead_sys::arch::read_tsc() < deadline), 1)?;
        expect("RIP where the vCPU halted", registers.rip, SPIN_AT)
    }

    /// (d) `INTERRUPT_WINDOW` on a guest entered with interrupts disabled
    /// at `sti; nop; nop; hlt`: the exit comes after the NOP in the STI's
    /// shadow, not before; at an instruction with interrupts already
    /// enabled it comes at once; the request lasts one call (the next runs
    /// to HLT).
    fn interrupt_window(&mut self) -> Result<(), Failure> {
        let window = EnterControls { interrupt_window: true, ..EnterControls::default() };
        let mut registers = GuestRegisters { rip: WINDOW_AT, rflags: RFLAGS_IF_CLEAR, ..GuestRegisters::default() };
        let exit = exit_of(vm_enter(self.sys, &mut registers, window)?, ExitKind::InterruptWindow)?;
        println!(
            "root: interrupt window at rip {:#x}, rflags {:#x}, interruptibility {:#x}",
            registers.rip, registers.rflags, exit.control[INTERRUPTIBILITY]
        );
        expect("RIP at the window (after STI and its shadow)", registers.rip, WINDOW_AT + 2)?;
        expect("RFLAGS.IF at the window", registers.rflags & RFLAGS_IF_SET, RFLAGS_IF_SET)?;
        expect("no interrupt shadow at the window", exit.control[INTERRUPTIBILITY], 0)?;
        let mut open = GuestRegisters { rip: WINDOW_AT + 1, rflags: RFLAGS_IF_SET, ..GuestRegisters::default() };
        exit_of(vm_enter(self.sys, &mut open, window)?, ExitKind::InterruptWindow)?;
        expect("RIP of a window open at entry", open.rip, WINDOW_AT + 1)?;
        exit_of(vm_enter(self.sys, &mut registers, EnterControls::default())?, ExitKind::Hlt)?;
        expect("RIP at HLT", registers.rip, WINDOW_AT + 3)
    }

    /// The exception intercepts (`docs/abi.md`, field 58): only #DB and
    /// #BP are accepted; with #BP intercepted the guest's INT3 exits with
    /// vector 3, RIP at the INT3 and length 1 (both backends); with #DB
    /// and RFLAGS.TF one NOP runs and the step exits with vector 1, RIP
    /// after it and no length; intercepts cleared, the guest runs on to
    /// its HLT with TF clear.
    fn debug_exits(&mut self, vcpu: Cap<kind::VCpu>) -> Result<(), Failure> {
        for refused in [1, 1 << 2, 1 << 14, 1 << 18, INTERCEPT_BREAKPOINT | 1 << 32] {
            match vcpu.write_state(self.sys, GuestField::EXCEPTION_INTERCEPTS, refused) {
                Err(Error::InvalidArgument) => {}
                other => {
                    println!("root: exception intercepts {refused:#x} written: {other:?}");
                    return Err(Failure::Unexpected {
                        what: "exception intercepts outside #DB and #BP written, ok",
                        got: u64::from(other.is_ok()),
                        expected: 0,
                    });
                }
            }
        }
        let both = INTERCEPT_DEBUG | INTERCEPT_BREAKPOINT;
        vcpu.write_state(self.sys, GuestField::EXCEPTION_INTERCEPTS, both)?;
        expect(
            "the exception intercepts read back",
            vcpu.read_state(self.sys, GuestField::EXCEPTION_INTERCEPTS)?,
            both,
        )?;
        let mut registers = GuestRegisters { rip: DEBUG_AT, rflags: RFLAGS_IF_CLEAR, ..GuestRegisters::default() };
        let Entered::Exit(breakpoint) = vm_enter(self.sys, &mut registers, EnterControls::default())? else {
            return Err(Failure::Unexpected { what: "a notification at the INT3", got: 1, expected: 0 });
        };
        println!(
            "root: int3 exit: kind {:?}, reason {:#x}, qualification {:#x}, rip {:#x}, length {}",
            breakpoint.kind, breakpoint.reason, breakpoint.qualification, registers.rip, breakpoint.instruction_length
        );
        match breakpoint.kind {
            Some(ExitKind::Exception) => {
                expect("the #BP exit's vector", breakpoint.qualification, 3)?;
                expect("the INT3's length", breakpoint.instruction_length, 1)?;
            }
            // svm under QEMU's TCG: INT3 through the INT n intercept.
            Some(ExitKind::SoftwareInterrupt) => {
                expect("the software interrupt's qualification", breakpoint.qualification, 0)?;
                expect("the software interrupt's length", breakpoint.instruction_length, 0)?;
            }
            other => {
                return Err(Failure::Unexpected {
                    what: "the INT3's exit kind",
                    got: other.map_or(0, |kind| kind as u64),
                    expected: ExitKind::Exception as u64,
                });
            }
        }
        expect("RIP at the INT3", registers.rip, DEBUG_AT)?;
        registers.rip = DEBUG_AT + 1;
        registers.rflags = RFLAGS_IF_CLEAR | RFLAGS_TF;
        let step = exit_of(vm_enter(self.sys, &mut registers, EnterControls::default())?, ExitKind::Exception)?;
        println!(
            "root: single-step exit: qualification {:#x}, rip {:#x}, length {}",
            step.qualification, registers.rip, step.instruction_length
        );
        expect("the #DB exit's vector", step.qualification, 1)?;
        expect("RIP after the stepped NOP", registers.rip, DEBUG_AT + 2)?;
        expect("a single step's length", step.instruction_length, 0)?;
        expect("TF still set after the step", registers.rflags & RFLAGS_TF, RFLAGS_TF)?;
        vcpu.write_state(self.sys, GuestField::EXCEPTION_INTERCEPTS, 0)?;
        registers.rflags = RFLAGS_IF_CLEAR;
        exit_of(vm_enter(self.sys, &mut registers, EnterControls::default())?, ExitKind::Hlt)?;
        expect("RIP at the debugging guest's HLT", registers.rip, DEBUG_AT + 3)
    }

    /// A thread at [`SIGNALLER_PRIORITY`] in the root's CSpace and VSpace
    /// that, each time `go` is signalled, signals `signal`.
    fn signaller(&mut self, signal: Cap<kind::Notification>, go: Cap<kind::Notification>) -> Result<(), Failure> {
        let tcb = self.retype::<kind::Tcb>(ObjectKind::Tcb, 0)?;
        let context = self.retype::<kind::SchedContext>(ObjectKind::SchedContext, 8)?;
        let buffer = self.map_new_frame(SIGNALLER_IPC_BUFFER)?;
        tcb.set_space(self.sys, ROOT_CNODE, Some(ROOT_VSPACE))?;
        tcb.set_ipc_buffer(self.sys, buffer)?;
        let entry: extern "C" fn(u64, u64) -> ! = signaller_entry;
        let registers = Registers {
            rip: entry as usize as u64,
            rsp: super::CHILD_STACK + super::CHILD_STACK_PAGES * 4096 - 8,
            rflags: 0,
            rdi: signal.cptr().0,
            rsi: go.cptr().0,
            rdx: 0,
        };
        tcb.write_registers(self.sys, &registers)?;
        tcb.set_priority(self.sys, ROOT_TCB, SIGNALLER_PRIORITY)?;
        SCHED_CONTROL.configure(self.sys, context, super::CHILD_BUDGET, super::CHILD_PERIOD)?;
        tcb.bind_sched_context(self.sys, context)?;
        tcb.resume(self.sys)?;
        Ok(())
    }

    /// A GuestSpace with an ASID.
    fn guest_space(&mut self, pool: Cap<kind::AsidPool>) -> Result<Cap<kind::GuestSpace>, Failure> {
        let space = self.retype::<kind::GuestSpace>(ObjectKind::GuestSpace, 0)?;
        pool.assign_guest(self.sys, space)?;
        Ok(space)
    }

    /// One page at guest-physical 0 holding the code (and the 64-bit
    /// guest's paging, [`SELF_MAPPING_ENTRY`]): the frame mapped
    /// into the root's VSpace to write it, and a copy of its capability
    /// mapped into the GuestSpace (each capability maps once).
    fn guest_memory(&mut self, space: Cap<kind::GuestSpace>) -> Result<MappedPage, Failure> {
        for level in [ObjectKind::PageDirectoryPointerTable, ObjectKind::PageDirectory, ObjectKind::PageTable] {
            let table = self.retype::<kind::PageTable>(level, 0)?;
            table.map_guest(self.sys, space, 0)?;
        }
        let frame = self.retype::<kind::Frame>(ObjectKind::Frame4K, 0)?;
        let mut page = MappedPage::map(self.sys, frame, ROOT_VSPACE, GUEST_PAGE)?;
        for (at, code) in [
            (0, &SELF_MAPPING_ENTRY.to_le_bytes()[..]),
            (GUEST_ENTRY, &GUEST_CODE[..]),
            (CPUID_LOOP_AT, &CPUID_LOOP[..]),
            (WINDOW_AT, &WINDOW_CODE[..]),
            (DEBUG_AT, &DEBUG_CODE[..]),
            (LONG_AT, &LONG_CODE[..]),
            (SYSCALL_ENTRY, &[0xf4][..]),
        ] {
            let first_word = usize::try_from(at / 8).unwrap_or(0);
            for (index, chunk) in code.chunks(8).enumerate() {
                let mut bytes = [0xf4; 8];
                bytes[..chunk.len()].copy_from_slice(chunk);
                page.write(first_word + index, u64::from_le_bytes(bytes))?;
            }
        }
        let copy = self.mint(frame, Rights::ALL, 0)?;
        copy.map_guest(self.sys, space, 0, Rights::READ | Rights::WRITE, attributes::EXECUTE)?;
        Ok(page)
    }

    /// Real mode at guest-physical 0: CS selector and base 0, CR0 with
    /// only ET; the rest as a fresh VCpu has it (the RESET state), read
    /// back to check.
    fn guest_state(&mut self, vcpu: Cap<kind::VCpu>) -> Result<(), Failure> {
        vcpu.write_state(self.sys, GuestField::segment(Segment::Cs, SegmentPart::Selector), 0)?;
        vcpu.write_state(self.sys, GuestField::segment(Segment::Cs, SegmentPart::Base), 0)?;
        vcpu.write_state(self.sys, GuestField::CR0, 0x10)?;
        expect("CS base", vcpu.read_state(self.sys, GuestField::segment(Segment::Cs, SegmentPart::Base))?, 0)?;
        expect(
            "SS attributes",
            vcpu.read_state(self.sys, GuestField::segment(Segment::Ss, SegmentPart::Attributes))?,
            0x93,
        )?;
        match vcpu.write_state(self.sys, GuestField::CR4, 1 << 13) {
            Err(Error::InvalidArgument) => Ok(()),
            other => Err(Failure::Unexpected {
                what: "CR4.VMXE written, result",
                got: u64::from(other.is_ok()),
                expected: 0,
            }),
        }
    }

    /// VMEnter until HLT, handling each exit; the exits must be
    /// [`EXPECTED`], in order.
    fn run_guest(&mut self, vcpu: Cap<kind::VCpu>) -> Result<(), Failure> {
        let mut registers = GuestRegisters { rip: GUEST_ENTRY, rflags: 0x2, ..GuestRegisters::default() };
        for (number, expected) in EXPECTED.into_iter().enumerate() {
            let exit = match vm_enter(self.sys, &mut registers, EnterControls::default())? {
                Entered::Exit(exit) => exit,
                Entered::Notification { badge } => {
                    return Err(Failure::Unexpected { what: "a notification, badge", got: badge, expected: 0 });
                }
            };
            let Some(kind) = exit.kind else {
                return Err(Failure::Unexpected { what: "an unknown exit, reason", got: exit.reason, expected: 0 });
            };
            if kind != expected {
                println!("root: guest exit {number} was {kind:?} (reason {:#x}), not {expected:?}", exit.reason);
                return Err(Failure::Unexpected { what: "exit kind", got: kind as u64, expected: expected as u64 });
            }
            self.handle(&exit, kind, &mut registers)?;
        }
        expect("RIP at HLT", registers.rip, HLT_AT)?;
        expect("EBX from the CPUID answer", registers.get(RBX), CPUID_EBX)?;
        expect("RIP in the VCpu's state", vcpu.read_state(self.sys, GuestField::RIP)?, HLT_AT)?;
        println!("root: guest ran to hlt: io, cpuid, wrmsr, second-level fault, hlt");
        Ok(())
    }

    /// What a VMM does with each exit: checks it and moves RIP past the
    /// instruction (its length from the exit, or known by decoding where
    /// `svm` without next-RIP reports none).
    fn handle(&mut self, exit: &GuestExit, kind: ExitKind, registers: &mut GuestRegisters) -> Result<(), Failure> {
        let length = |known: u64| if exit.instruction_length == 0 { known } else { exit.instruction_length };
        match kind {
            ExitKind::Io => {
                let access = IoAccess::unpack(exit.qualification);
                expect("OUT port", u64::from(access.port), 0x80)?;
                expect("OUT size", u64::from(access.size), 1)?;
                expect("OUT input", u64::from(access.input), 0)?;
                expect("AL", registers.get(RAX) & 0xff, 0x42)?;
                expect("OUT length", exit.instruction_length, 2)?;
                registers.rip += 2;
            }
            ExitKind::Cpuid => {
                expect("CPUID leaf", registers.get(RAX) & 0xffff, 0)?;
                registers.general[RAX] = 1;
                registers.general[RBX] = CPUID_EBX;
                registers.general[RCX] = 0;
                registers.general[RDX] = 0x6461_6568;
                registers.rip += length(2);
            }
            ExitKind::MsrWrite => {
                expect("WRMSR's MSR", registers.get(RCX) & 0xffff_ffff, 0xc000_0080)?;
                registers.rip += length(2);
            }
            ExitKind::SecondLevelFault => {
                expect("fault address", exit.guest_physical, 0x2000)?;
                let fault = SecondLevelFault::unpack(exit.qualification);
                expect("a write", u64::from(fault.write), 1)?;
                registers.rip += length(5);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The notification bound to the root for the deadline tests and the
/// signaller's go-ahead (see `Root::signals`).
#[derive(Clone, Copy)]
struct Signals {
    bound: Cap<kind::Notification>,
    go: Cap<kind::Notification>,
}

/// The spinning loop's round counter (a word of guest memory).
fn spin_counter(page: &MappedPage) -> u64 {
    page.read(usize::try_from(SPIN_COUNTER / 8).unwrap_or(0)).unwrap_or(0) & 0xffff
}

/// The exit `entered` must be, of kind `kind`.
fn exit_of(entered: Entered, kind: ExitKind) -> Result<GuestExit, Failure> {
    match entered {
        Entered::Exit(exit) if exit.kind == Some(kind) => Ok(exit),
        Entered::Exit(exit) => Err(Failure::Unexpected {
            what: "exit kind",
            got: exit.kind.map_or(0, |kind| kind as u64),
            expected: kind as u64,
        }),
        Entered::Notification { badge } => {
            Err(Failure::Unexpected { what: "a notification, badge", got: badge, expected: 0 })
        }
    }
}

/// The Deadline exit `entered` must be.
fn deadline_exit(entered: Entered) -> Result<GuestExit, Failure> {
    exit_of(entered, ExitKind::Deadline)
}

/// The signaller: for each go-ahead on `go`, one signal on `signal`.
extern "C" fn signaller_entry(signal: u64, go: u64) -> ! {
    let mut sys = Sys::without_ipc_buffer();
    loop {
        if Cap::<kind::Notification>::new(go).wait(&mut sys).is_err() {
            bulkhead_sys::arch::exit(1)
        }
        let _ = Cap::<kind::Notification>::new(signal).signal(&mut sys);
    }
}
