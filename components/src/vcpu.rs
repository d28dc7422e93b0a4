//! What a VMM needs of the kernel (`docs/abi.md`, "VCpus" and
//! "VMEnter"): a guest's physical memory (frames and paging structures
//! mapped into a GuestSpace), its VCpu (bound to the VMM's thread, with
//! the allowlisted guest state read and written field by field), the
//! VMM's bound notification, and VMEnter, which runs the guest until an
//! exit (or its deadline) and hands back its registers and the exit, or
//! with [`EnterControls::wait`] sleeps for a halted vCPU instead.

use kernel_core::vcpu::{GuestField, enter, label as vcpu_label};
use kernel_core::virt::ExitKind;
use kernel_core::vspace::label as vspace_label;

use crate::cap::{Cap, kind};
use crate::error::Error;
use crate::invocation::invoke;
use crate::kernel::{EXIT_DETAIL_WORDS, Kernel};

pub use kernel_core::cap::Rights;
pub use kernel_core::syscall::label::{TCB_BIND_NOTIFICATION, TCB_UNBIND_NOTIFICATION};

impl Cap<kind::VCpu> {
    /// VCpu::SetTcb: binds the VCpu to the thread (one each way).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, VCpu::SetTcb).
    pub fn set_tcb(self, kernel: &mut impl Kernel, tcb: Cap<kind::Tcb>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vcpu_label::VCPU_SET_TCB, &[], &[tcb.cptr()]).map(drop)
    }

    /// VCpu::SetSpace: the GuestSpace (with an ASID) the VCpu runs in.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, VCpu::SetSpace).
    pub fn set_space(self, kernel: &mut impl Kernel, space: Cap<kind::GuestSpace>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vcpu_label::VCPU_SET_SPACE, &[], &[space.cptr()]).map(drop)
    }

    /// VCpu::ReadState: one guest-state field.
    ///
    /// # Errors
    ///
    /// The kernel's code, or [`Error::TruncatedMessage`] for a reply
    /// without the word.
    pub fn read_state(self, kernel: &mut impl Kernel, field: GuestField) -> Result<u64, Error> {
        let reply = invoke(kernel, self.cptr(), vcpu_label::VCPU_READ_STATE, &[u64::from(field.number())], &[])?;
        reply.word(0).ok_or(Error::TruncatedMessage)
    }

    /// VCpu::WriteState: one guest-state field.
    ///
    /// # Errors
    ///
    /// The kernel's code: [`Error::InvalidArgument`] for a value the field
    /// cannot hold (`docs/abi.md`'s field table).
    pub fn write_state(self, kernel: &mut impl Kernel, field: GuestField, value: u64) -> Result<(), Error> {
        let words = [u64::from(field.number()), value];
        invoke(kernel, self.cptr(), vcpu_label::VCPU_WRITE_STATE, &words, &[]).map(drop)
    }
}

impl Cap<kind::Tcb> {
    /// TCB::BindNotification: the notification (READ needed) whose
    /// signals end the thread's VMEnter.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, TCB::BindNotification).
    pub fn bind_notification(
        self,
        kernel: &mut impl Kernel,
        notification: Cap<kind::Notification>,
    ) -> Result<(), Error> {
        invoke(kernel, self.cptr(), TCB_BIND_NOTIFICATION, &[], &[notification.cptr()]).map(drop)
    }

    /// TCB::UnbindNotification.
    ///
    /// # Errors
    ///
    /// The kernel's code (IllegalOperation when none is bound).
    pub fn unbind_notification(self, kernel: &mut impl Kernel) -> Result<(), Error> {
        invoke(kernel, self.cptr(), TCB_UNBIND_NOTIFICATION, &[], &[]).map(drop)
    }
}

impl Cap<kind::Frame> {
    /// Frame::Map into a GuestSpace at guest-physical `address` (rights:
    /// READ and WRITE become EPT's read and write, NPT's present and
    /// writable; attributes as for [`Cap::<kind::Frame>::map`]).
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, Frame::Map).
    pub fn map_guest(
        self,
        kernel: &mut impl Kernel,
        space: Cap<kind::GuestSpace>,
        address: u64,
        rights: Rights,
        attributes: u64,
    ) -> Result<(), Error> {
        let words = [address, u64::from(rights.bits()), attributes];
        invoke(kernel, self.cptr(), vspace_label::FRAME_MAP, &words, &[space.cptr()]).map(drop)
    }
}

impl Cap<kind::PageTable> {
    /// PageTable::Map into a GuestSpace at the entry covering
    /// guest-physical `address`.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, PageTable::Map).
    pub fn map_guest(self, kernel: &mut impl Kernel, space: Cap<kind::GuestSpace>, address: u64) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vspace_label::PAGE_TABLE_MAP, &[address], &[space.cptr()]).map(drop)
    }
}

impl Cap<kind::AsidPool> {
    /// AsidPool::Assign of a GuestSpace.
    ///
    /// # Errors
    ///
    /// The kernel's code (`docs/abi.md`, AsidPool::Assign).
    pub fn assign_guest(self, kernel: &mut impl Kernel, space: Cap<kind::GuestSpace>) -> Result<(), Error> {
        invoke(kernel, self.cptr(), vspace_label::ASID_POOL_ASSIGN, &[], &[space.cptr()]).map(drop)
    }
}

/// The guest's registers as VMEnter takes and returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegisters {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 (x86 encoding
    /// order: an instruction's register number indexes it).
    pub general: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// The event to inject at the next entry (`kernel_core::virt::Event`'s
    /// word; 0 for none). After an exit, an event whose delivery the exit
    /// interrupted, to be injected again.
    pub event: u64,
}

impl GuestRegisters {
    /// The register of encoding number `number` (0 RAX .. 15 R15).
    #[must_use]
    pub const fn get(&self, number: usize) -> u64 {
        self.general[number]
    }
}

/// What the guest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestExit {
    /// The kind (`None`: a kind this runtime does not know).
    pub kind: Option<ExitKind>,
    /// The hardware's own reason, for logs.
    pub reason: u64,
    /// The kind's qualification (`kernel_core::virt`'s packings).
    pub qualification: u64,
    /// The guest-physical address of a second-level fault.
    pub guest_physical: u64,
    /// The exiting instruction's length (0: not known; decode it).
    pub instruction_length: u64,
    /// CR0, CR3, CR4, EFER and the interruptibility state at the exit.
    pub control: [u64; 5],
    /// CS's base and attributes at the exit (the packed attributes of
    /// `docs/abi.md`'s segment fields): where the exiting instruction is.
    pub code_segment: [u64; 2],
}

/// VMEnter's deadline and entry controls (`docs/abi.md`, "VMEnter").
/// The default asks for nothing: the guest runs until an exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnterControls {
    /// An absolute host TSC value (0: none): a run still going on then
    /// ends with an exit of kind [`ExitKind::Deadline`] (also at once, the
    /// guest not run, when it has passed already).
    pub deadline: u64,
    /// The vCPU is halted: the guest does not run; the call sleeps until
    /// the thread's bound notification is signalled
    /// ([`Entered::Notification`]) or the deadline passes (an exit of kind
    /// [`ExitKind::Deadline`]). The kernel refuses it with neither a
    /// bound notification nor a deadline (IllegalOperation).
    pub wait: bool,
    /// Exit with [`ExitKind::InterruptWindow`] as soon as the guest can
    /// take an external interrupt (RFLAGS.IF set, no STI or MOV SS
    /// shadow), for this call only.
    pub interrupt_window: bool,
}

impl EnterControls {
    /// Message words [`enter::DEADLINE`] and [`enter::CONTROLS`].
    #[must_use]
    pub const fn words(self) -> [u64; 2] {
        let wait = if self.wait { enter::control::WAIT } else { 0 };
        let window = if self.interrupt_window { enter::control::INTERRUPT_WINDOW } else { 0 };
        [self.deadline, wait | window]
    }
}

/// How a VMEnter ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entered {
    /// The guest exited.
    Exit(GuestExit),
    /// The bound notification was pending, or was signalled while the
    /// call waited (`badge`: what Wait would have returned); the guest did
    /// not run further.
    Notification {
        /// The signals' badges, ORed.
        badge: u64,
    },
}

/// VMEnter: runs the guest of the VCpu bound to this thread from
/// `registers` until it exits, its deadline passes or the bound
/// notification is pending (with `controls.wait`, sleeps until one of the
/// last two instead of running it), and updates `registers` to the
/// guest's.
///
/// # Errors
///
/// The kernel's code (`docs/abi.md`, "VMEnter"): IllegalOperation with no
/// VCpu bound or no virtualisation backend, or for a `wait` with neither
/// a deadline nor a bound notification; InvalidCapability without a live
/// GuestSpace; InvalidArgument for a non-canonical RIP or RSP, reserved
/// RFLAGS bits or a malformed event (then `registers` are as they were:
/// an error reply carries no words); [`Error::TruncatedMessage`] for a
/// reply too short to be an exit.
pub fn vm_enter(
    kernel: &mut impl Kernel,
    registers: &mut GuestRegisters,
    controls: EnterControls,
) -> Result<Entered, Error> {
    let mut detail = [0; EXIT_DETAIL_WORDS];
    let (info, badge) = kernel.vm_enter_call(registers, controls.words(), &mut detail)?;
    let label = info.label;
    if label != enter::LABEL_EXIT && label != enter::LABEL_NOTIFICATION {
        Error::check(label)?;
        return Err(Error::TruncatedMessage);
    }
    let wanted = if label == enter::LABEL_EXIT { enter::EXIT_WORDS } else { enter::STATE_WORDS };
    if usize::from(info.length) < wanted {
        return Err(Error::TruncatedMessage);
    }
    if label == enter::LABEL_NOTIFICATION {
        return Ok(Entered::Notification { badge });
    }
    let word = |index: usize| detail[index - enter::STATE_WORDS];
    Ok(Entered::Exit(GuestExit {
        kind: ExitKind::from_word(word(enter::EXIT_KIND)),
        reason: word(enter::EXIT_REASON),
        qualification: word(enter::QUALIFICATION),
        guest_physical: word(enter::GUEST_PHYSICAL),
        instruction_length: word(enter::INSTRUCTION_LENGTH),
        control: core::array::from_fn(|index| word(enter::CONTROL + index)),
        code_segment: [word(enter::CODE_SEGMENT), word(enter::CODE_SEGMENT + 1)],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{FakeKernel, Recorded};
    use crate::kernel::number;

    fn call(cptr: u64, label: u64, words: &[u64], caps: &[u64]) -> Recorded {
        Recorded { number: number::CALL, cptr, label, words: words.to_vec(), caps: caps.to_vec(), reply: 0 }
    }

    #[test]
    fn vcpu_invocations_send_the_abi_words() {
        let mut kernel = FakeKernel::default();
        let vcpu: Cap<kind::VCpu> = Cap::new(20);
        vcpu.set_tcb(&mut kernel, Cap::new(2)).unwrap();
        assert_eq!(kernel.last(), &call(20, 112, &[], &[2]));
        vcpu.set_space(&mut kernel, Cap::new(21)).unwrap();
        assert_eq!(kernel.last(), &call(20, 113, &[], &[21]));
        kernel.answer(0, 0, &[0xfff0]);
        assert_eq!(vcpu.read_state(&mut kernel, GuestField::RIP), Ok(0xfff0));
        assert_eq!(kernel.last(), &call(20, 114, &[0], &[]));
        vcpu.write_state(&mut kernel, GuestField::CR3, 0x1000).unwrap();
        assert_eq!(kernel.last(), &call(20, 115, &[4, 0x1000], &[]));
        kernel.answer(0, 1, &[]);
        assert_eq!(vcpu.write_state(&mut kernel, GuestField::CR4, 1 << 13), Err(Error::InvalidArgument));
        let tcb: Cap<kind::Tcb> = Cap::new(2);
        tcb.bind_notification(&mut kernel, Cap::new(4)).unwrap();
        assert_eq!(kernel.last(), &call(2, 41, &[], &[4]));
        tcb.unbind_notification(&mut kernel).unwrap();
        assert_eq!(kernel.last(), &call(2, 42, &[], &[]));
        let frame: Cap<kind::Frame> = Cap::new(30);
        frame.map_guest(&mut kernel, Cap::new(21), 0x2000, Rights::READ | Rights::WRITE, 1).unwrap();
        assert_eq!(kernel.last(), &call(30, 98, &[0x2000, 3, 1], &[21]));
        Cap::<kind::PageTable>::new(31).map_guest(&mut kernel, Cap::new(21), 0).unwrap();
        assert_eq!(kernel.last(), &call(31, 96, &[0], &[21]));
        Cap::<kind::AsidPool>::new(32).assign_guest(&mut kernel, Cap::new(21)).unwrap();
        assert_eq!(kernel.last(), &call(32, 105, &[], &[21]));
    }

    #[test]
    fn vm_enter_sends_the_registers_and_reads_the_exit() {
        let mut kernel = FakeKernel::default();
        let mut registers = GuestRegisters { rip: 0x100, rflags: 0x2, ..GuestRegisters::default() };
        registers.general[0] = 0x42;
        let mut reply: Vec<u64> = (0..31).collect();
        reply[enter::EXIT_KIND] = ExitKind::Io as u64;
        kernel.answer(0, enter::LABEL_EXIT, &reply);
        let none = EnterControls::default();
        let Ok(Entered::Exit(exit)) = vm_enter(&mut kernel, &mut registers, none) else { panic!("an exit") };
        let sent = kernel.last();
        assert_eq!((sent.number, sent.words.len()), (number::VM_ENTER, 21));
        assert_eq!((sent.words[0], sent.words[16], sent.words[17], sent.words[18]), (0x42, 0x100, 0x2, 0));
        assert_eq!(sent.words[19..], [0, 0], "no deadline, no control");
        assert_eq!(exit.kind, Some(ExitKind::Io));
        assert_eq!((exit.reason, exit.qualification, exit.guest_physical, exit.instruction_length), (20, 21, 22, 23));
        assert_eq!(exit.control, [24, 25, 26, 27, 28]);
        assert_eq!(exit.code_segment, [29, 30]);
        assert_eq!((registers.general[3], registers.rip, registers.rflags, registers.event), (3, 16, 17, 18));
        // A notification, an error, short replies.
        kernel.answer(0x5, enter::LABEL_NOTIFICATION, &reply[..19]);
        assert_eq!(vm_enter(&mut kernel, &mut registers, none), Ok(Entered::Notification { badge: 0x5 }));
        kernel.answer(0, 3, &[]);
        assert_eq!(vm_enter(&mut kernel, &mut registers, none), Err(Error::IllegalOperation));
        kernel.answer(0, enter::LABEL_EXIT, &reply[..30]);
        assert_eq!(vm_enter(&mut kernel, &mut registers, none), Err(Error::TruncatedMessage));
        kernel.answer(0x5, enter::LABEL_NOTIFICATION, &reply[..18]);
        assert_eq!(vm_enter(&mut kernel, &mut registers, none), Err(Error::TruncatedMessage));
    }

    #[test]
    fn vm_enter_sends_the_deadline_and_the_controls_and_reads_a_deadline_exit() {
        let mut kernel = FakeKernel::default();
        let mut registers = GuestRegisters { rip: 0x100, rflags: 0x2, ..GuestRegisters::default() };
        let mut reply: Vec<u64> = (0..31).collect();
        reply[enter::EXIT_KIND] = 18;
        kernel.answer(0, enter::LABEL_EXIT, &reply);
        let controls = EnterControls { deadline: 0x1234_5678, wait: true, interrupt_window: false };
        let Ok(Entered::Exit(exit)) = vm_enter(&mut kernel, &mut registers, controls) else { panic!("an exit") };
        assert_eq!(exit.kind, Some(ExitKind::Deadline));
        assert_eq!(kernel.last().words[19..], [0x1234_5678, enter::control::WAIT]);
        let window = EnterControls { interrupt_window: true, ..EnterControls::default() };
        vm_enter(&mut kernel, &mut registers, window).unwrap_err();
        assert_eq!(kernel.last().words[19..], [0, enter::control::INTERRUPT_WINDOW]);
        let both = EnterControls { deadline: 7, wait: true, interrupt_window: true };
        assert_eq!(both.words(), [7, 3]);
        assert_eq!(EnterControls::default().words(), [0, 0]);
    }
}
