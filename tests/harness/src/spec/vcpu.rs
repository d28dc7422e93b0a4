//! VCpus in the spec: the object (8 KiB; one capability slot, for its
//! GuestSpace, at the start of its second page), its binding to a thread,
//! the guest-state fields a VMM may read and write, and a thread's bound
//! notification.
//!
//! The field rules are the spec's own statement of `docs/abi.md`'s VCpu
//! table, written from the table and not from the kernel's code.

use super::{Cap, Error, Kind, State};

/// log2 of a VCpu's size.
pub const VCPU_BITS: u8 = 13;
/// Where a VCpu's one capability slot (its GuestSpace) lies.
pub const SPACE_SLOT_OFFSET: u64 = 4096;
/// Guest-state fields.
pub const FIELDS: usize = 59;

/// Invocation labels (`docs/abi.md`).
pub mod label {
    /// VCpu::SetTcb.
    pub const SET_TCB: u64 = 112;
    /// VCpu::SetSpace.
    pub const SET_SPACE: u64 = 113;
    /// VCpu::ReadState.
    pub const READ_STATE: u64 = 114;
    /// VCpu::WriteState.
    pub const WRITE_STATE: u64 = 115;
    /// TCB::BindNotification.
    pub const BIND_NOTIFICATION: u64 = 41;
    /// TCB::UnbindNotification.
    pub const UNBIND_NOTIFICATION: u64 = 42;
}

/// A VCpu's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VCpu {
    /// The thread it is bound to.
    pub tcb: Option<u64>,
    /// The guest-state fields, by number.
    pub fields: Vec<u64>,
    /// The guest's general registers in x86 encoding order, as the last
    /// VMEnter left them (RSP's slot 0: the RSP field holds it).
    pub registers: [u64; 16],
}

impl VCpu {
    /// A new VCpu: unbound, in the x86 RESET state.
    #[must_use]
    pub fn fresh() -> VCpu {
        let mut fields = vec![0; FIELDS];
        fields[0] = 0xfff0; // RIP
        fields[2] = 0x2; // RFLAGS
        fields[3] = 0x6000_0010; // CR0: CD, NW, ET
        fields[7] = 0x400; // DR7
        fields[13] = 0xffff; // GDTR limit
        fields[15] = 0xffff; // IDTR limit
        fields[56] = 0x0007_0406_0007_0406; // PAT: WB, WT, UC-, UC, twice
        for segment in 0..8 {
            let at = 16 + 4 * segment;
            // ES, CS, SS, DS, FS, GS: data (CS: code at 0xf000); LDTR; TR.
            let attributes = match segment {
                1 => 0x9b,
                6 => 0x82,
                7 => 0x8b,
                _ => 0x93,
            };
            if segment == 1 {
                fields[at] = 0xf000;
                fields[at + 1] = 0xffff_0000;
            }
            fields[at + 2] = 0xffff;
            fields[at + 3] = attributes;
        }
        VCpu { tcb: None, fields, registers: [0; 16] }
    }
}

/// VMEnter's message and reply (`docs/abi.md`, "VMEnter").
pub mod enter {
    /// The words of guest state a message and a reply begin with: 16
    /// registers, RIP, RFLAGS, the event.
    pub const STATE_WORDS: usize = 19;
    /// The words VMEnter takes: the state, the deadline (word 19, 0 for
    /// none) and the controls (word 20).
    pub const MESSAGE_WORDS: usize = 21;
    /// Control bit 0: `WAIT` (the vCPU is halted: sleep, do not run it).
    pub const WAIT: u64 = 1;
    /// Control bit 1: `INTERRUPT_WINDOW` (nothing on the harness's
    /// machine, whose guest halts at once).
    pub const INTERRUPT_WINDOW: u64 = 2;
    /// The exit kind of a deadline that passed.
    pub const DEADLINE: u64 = 18;
    /// The words of an exit reply.
    pub const EXIT_WORDS: usize = 31;
    /// The label of an exit reply.
    pub const LABEL_EXIT: u64 = 0x2_0000;
    /// The label of a reply to a pending notification.
    pub const LABEL_NOTIFICATION: u64 = 0x2_0001;
    /// The exit every guest takes on the harness's machine: HLT (kind 2),
    /// reason 0, one byte long; the entry delivered the pending event.
    pub const HLT: u64 = 2;
}

/// Whether `value` is a canonical 48-bit address.
fn canonical(value: u64) -> bool {
    !(1 << 47..0xffff_8000_0000_0000).contains(&value)
}

/// Whether `word` is an event WriteState accepts as field 10: 0, or a
/// valid event (bit 31) with no bits in 12..31, a kind of 0 (external,
/// vector 16 up), 2 (NMI, vector 2), 3 (exception, vector 0..=21 but 2
/// and 15) or 4 (software, any vector), and an error code (bit 11, value
/// in 32..64) exactly for the exceptions that push one.
fn valid_event(word: u64) -> bool {
    if word == 0 {
        return true;
    }
    if word & 1 << 31 == 0 || word & 0x7fff_f000 != 0 {
        return false;
    }
    let vector = word & 0xff;
    let kind = (word >> 8) & 0b111;
    let vector_ok = match kind {
        0 => vector >= 16,
        2 => vector == 2,
        3 => vector <= 21 && vector != 2 && vector != 15,
        4 => true,
        _ => return false,
    };
    let pushes = kind == 3 && matches!(vector, 8 | 10..=14 | 17 | 21);
    let has_error = word & 1 << 11 != 0;
    vector_ok && has_error == pushes && (has_error || word >> 32 == 0)
}

/// The value field `field` takes when written with `value`, or `None` if
/// WriteState refuses it.
#[must_use]
pub fn field_value(field: u64, value: u64) -> Option<u64> {
    let take = |ok: bool| ok.then_some(value);
    match field {
        0 | 1 | 12 | 14 => take(canonical(value)),
        2 => (value & !0x003f_7fd7 == 0).then_some(value | 2),
        3 => {
            let allowed = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 16 | 1 << 18 | 1 << 29 | 1 << 30;
            let nw_without_cd = value & 1 << 29 != 0 && value & 1 << 30 == 0;
            take(value & !(allowed | 1 << 31) == 0 && !nw_without_cd)
        }
        4 => take(value < 1 << 52),
        5 => {
            // Bits 0..=11, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE.
            let allowed = 0xfff | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 20 | 1 << 21 | 1 << 22;
            take(value & !allowed == 0)
        }
        6 => take(value & !(1 << 0 | 1 << 8 | 1 << 10 | 1 << 11) == 0),
        7 => (value >> 32 == 0).then_some(value | 0x400),
        8 => take(value <= 3),
        9 => take(value <= 1),
        10 => take(valid_event(value)),
        11 => Some(value),
        13 | 15 => take(value <= 0xffff),
        16..=47 => {
            let segment = (field - 16) / 4;
            match (field - 16) % 4 {
                0 => take(value <= 0xffff),
                1 if segment <= 3 => take(value <= 0xffff_ffff),
                1 => take(canonical(value)),
                2 => take(value <= 0xffff_ffff),
                _ => take(value <= 0xfff),
            }
        }
        // STAR, CR2: anything.
        48 | 57 => Some(value),
        // LSTAR, CSTAR, KERNEL_GS_BASE, SYSENTER_ESP, SYSENTER_EIP.
        49 | 50 | 52 | 54 | 55 => take(canonical(value)),
        // SFMASK, SYSENTER_CS: 32 bits.
        51 | 53 => take(value <= 0xffff_ffff),
        // PAT: every byte UC (0), WC (1), WT (4), WP (5), WB (6) or UC- (7).
        56 => take(value.to_le_bytes().iter().all(|entry| matches!(entry, 0 | 1 | 4..=7))),
        // The exception intercepts: #DB (bit 1) and #BP (bit 3), nothing else.
        58 => take(value & !0b1010 == 0),
        _ => None,
    }
}

impl State {
    /// The slot of the VCpu at `base` that holds its GuestSpace.
    #[must_use]
    pub const fn vcpu_space_slot(base: u64) -> u64 {
        base + SPACE_SLOT_OFFSET
    }

    /// VCpu invocations on the VCpu at `vcpu`; ReadState's reply word.
    pub(super) fn invoke_vcpu(
        &mut self,
        vcpu: u64,
        label: u64,
        words: &[u64],
        extra: &[Option<u64>],
    ) -> Result<Option<u64>, Error> {
        let word = |index: usize| words.get(index).copied().ok_or(Error::TruncatedMessage);
        let extra_cap = |state: &State, index: usize| -> Result<(u64, Cap), Error> {
            match extra.get(index) {
                None => Err(Error::TruncatedMessage),
                Some(None) => Err(Error::InvalidCapability),
                Some(Some(slot)) => Ok((*slot, state.slots[slot].cap)),
            }
        };
        match label {
            label::SET_TCB => {
                let (_, cap) = extra_cap(self, 0)?;
                let Cap::Tcb { base: thread } = cap else { return Err(Error::InvalidCapability) };
                if let Some(old) = self.vcpus[&vcpu].tcb {
                    self.thread_mut(old).vcpu = None;
                }
                if let Some(old) = self.thread(thread).vcpu {
                    self.vcpus.get_mut(&old).expect("the bound VCpu").tcb = None;
                }
                self.vcpus.get_mut(&vcpu).expect("the VCpu").tcb = Some(thread);
                self.thread_mut(thread).vcpu = Some(vcpu);
                Ok(None)
            }
            label::SET_SPACE => {
                let (source, cap) = extra_cap(self, 0)?;
                let live = matches!(cap, Cap::PageTable { base, kind: Kind::GuestSpace, mapping: Some(mapping) }
                    if self.vspace_of(mapping.asid) == Some(base));
                if !live {
                    return Err(Error::InvalidCapability);
                }
                let copy = super::copy_of(&cap)?;
                let slot = State::vcpu_space_slot(vcpu);
                if self.slots.contains_key(&slot) {
                    self.delete(slot);
                }
                self.insert_copy(source, slot, copy);
                Ok(None)
            }
            label::READ_STATE => {
                let field = usize::try_from(word(0)?).ok().filter(|field| *field < FIELDS);
                let field = field.ok_or(Error::InvalidArgument)?;
                Ok(Some(self.vcpus[&vcpu].fields[field]))
            }
            label::WRITE_STATE => {
                let (field, value) = (word(0)?, word(1)?);
                let stored = field_value(field, value).ok_or(Error::InvalidArgument)?;
                let index = usize::try_from(field).map_err(|_| Error::InvalidArgument)?;
                self.vcpus.get_mut(&vcpu).expect("the VCpu").fields[index] = stored;
                Ok(None)
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// VMEnter by `thread` with a message of `length` words (its words
    /// are in place): checks (the controls too: bits 0 and 1 only, and a
    /// `WAIT` needs a deadline or a bound notification), loads the
    /// registers, RSP, RIP, RFLAGS and the event into its VCpu, then, in
    /// order: takes its bound notification's pending signal; or, past its
    /// deadline (the spec's time), replies with the deadline's exit
    /// without running the guest; or, with `WAIT`, blocks (on the bound
    /// notification, else asleep) with the signal's reply (label 0x20001,
    /// 19 words) over the deadline's (31 words) prepared, asleep until the
    /// deadline if there is one; or runs the guest, which on the harness's
    /// machine halts at once with its state as entered.
    pub(super) fn vm_enter(&mut self, thread: u64, length: usize) -> Result<(), Error> {
        let vcpu = self.thread(thread).vcpu.ok_or(Error::IllegalOperation)?;
        if !self.guest_backend {
            return Err(Error::IllegalOperation);
        }
        let live = matches!(self.cap(State::vcpu_space_slot(vcpu)),
            Some(Cap::PageTable { base, kind: Kind::GuestSpace, mapping: Some(mapping) })
                if self.vspace_of(mapping.asid) == Some(base));
        if !live {
            return Err(Error::InvalidCapability);
        }
        if length < enter::MESSAGE_WORDS {
            return Err(Error::TruncatedMessage);
        }
        let words: Vec<u64> = self.thread(thread).words[..enter::MESSAGE_WORDS].to_vec();
        let (deadline, controls) = (words[19], words[20]);
        if controls & !(enter::WAIT | enter::INTERRUPT_WINDOW) != 0 {
            return Err(Error::InvalidArgument);
        }
        let wait = controls & enter::WAIT != 0;
        let bound = self.thread(thread).bound_notification;
        if wait && deadline == 0 && bound.is_none() {
            return Err(Error::IllegalOperation);
        }
        // RSP, RIP, RFLAGS, the event: as WriteState would store them.
        let checked = [(1, words[4]), (0, words[16]), (2, words[17]), (10, words[18])]
            .map(|(field, value)| field_value(field, value).map(|stored| (field, stored)));
        let mut stored = Vec::new();
        for value in checked {
            stored.push(value.ok_or(Error::InvalidArgument)?);
        }
        let record = self.vcpus.get_mut(&vcpu).expect("the bound VCpu");
        record.registers.copy_from_slice(&words[..16]);
        record.registers[4] = 0;
        for (field, value) in stored {
            record.fields[usize::try_from(field).unwrap_or(0)] = value;
        }
        let pending = bound
            .and_then(|notification| self.notifications.get_mut(&notification))
            .and_then(|notification| notification.pending.take());
        let passed = deadline != 0 && self.sched.now >= deadline;
        let runs = pending.is_none() && !passed && !wait;
        let record = self.vcpus.get_mut(&vcpu).expect("the bound VCpu");
        if runs {
            // The guest runs: the entry delivers the event.
            record.fields[10] = 0;
        }
        let record = record.clone();
        let mut reply = record.registers.to_vec();
        reply[4] = record.fields[1];
        reply.extend([record.fields[0], record.fields[2], record.fields[10]]);
        // CR0, CR3, CR4, EFER, the interruptibility state, CS's base and
        // attributes.
        let control = [3, 4, 5, 6, 8, 21, 23].map(|field| record.fields[field]);
        // An exit's badge is 0; a notification's is what Wait returns.
        let (label, length, badge) = match pending {
            Some(badge) => (enter::LABEL_NOTIFICATION, enter::STATE_WORDS, Some(badge)),
            None => {
                let exit = if runs { [enter::HLT, 0, 0, 0, 1] } else { [enter::DEADLINE, 0, 0, 0, 0] };
                reply.extend(exit);
                reply.extend(control);
                if passed || runs {
                    (enter::LABEL_EXIT, enter::EXIT_WORDS, Some(0))
                } else {
                    // WAIT: the signal's reply over the deadline's; a
                    // signal gives the badge.
                    (enter::LABEL_NOTIFICATION, enter::STATE_WORDS, None)
                }
            }
        };
        let caller = self.thread_mut(thread);
        caller.words[..reply.len()].copy_from_slice(&reply);
        caller.info = super::Info { label, length: u8::try_from(length).unwrap_or(0), caps: 0 };
        if let Some(badge) = badge {
            caller.badge = badge;
        }
        if pending.is_none() && !passed && wait {
            self.unschedule(thread);
            match bound {
                Some(notification) => {
                    self.thread_mut(thread).state = super::ThreadState::BlockedOnNotification { notification };
                    self.notifications.get_mut(&notification).expect("the notification").waiters.push(thread);
                }
                None => self.thread_mut(thread).state = super::ThreadState::Sleeping,
            }
            if deadline != 0 {
                self.sleep_until(thread, deadline);
            }
        }
        Ok(())
    }

    /// TCB::BindNotification (extra capability 0: a notification with
    /// READ) and TCB::UnbindNotification on the thread at `target`.
    pub(super) fn bind_notification(&mut self, target: u64, label: u64, extra: &[Option<u64>]) -> Result<(), Error> {
        if label == label::UNBIND_NOTIFICATION {
            let notification = self.thread_mut(target).bound_notification.take().ok_or(Error::IllegalOperation)?;
            self.notifications.get_mut(&notification).expect("the bound notification").bound_tcb = None;
            return Ok(());
        }
        let cap = match extra.first() {
            None => return Err(Error::TruncatedMessage),
            Some(None) => return Err(Error::InvalidCapability),
            Some(Some(slot)) => self.slots[slot].cap,
        };
        let Cap::Notification { base: notification, rights, .. } = cap else { return Err(Error::InvalidCapability) };
        if rights & super::threads::READ == 0 {
            return Err(Error::InvalidCapability);
        }
        if self.thread(target).bound_notification.is_some() || self.notifications[&notification].bound_tcb.is_some() {
            return Err(Error::IllegalOperation);
        }
        self.thread_mut(target).bound_notification = Some(notification);
        self.notifications.get_mut(&notification).expect("the notification").bound_tcb = Some(target);
        Ok(())
    }

    /// What deleting the last capability to a thread, a notification or a
    /// VCpu undoes of the bindings: the other side is unbound.
    pub(super) fn unbind_on_delete(&mut self, cap: Cap) {
        match cap {
            Cap::Tcb { base } => {
                let Some(thread) = self.threads.get_mut(&base) else { return };
                let (vcpu, notification) = (thread.vcpu.take(), thread.bound_notification.take());
                if let Some(vcpu) = vcpu.and_then(|vcpu| self.vcpus.get_mut(&vcpu)) {
                    vcpu.tcb = None;
                }
                if let Some(notification) = notification.and_then(|at| self.notifications.get_mut(&at)) {
                    notification.bound_tcb = None;
                }
            }
            Cap::Notification { base, .. } => {
                let bound = self.notifications.get_mut(&base).and_then(|notification| notification.bound_tcb.take());
                if let Some(thread) = bound.and_then(|thread| self.threads.get_mut(&thread)) {
                    thread.bound_notification = None;
                }
            }
            Cap::VCpu { base } => {
                let bound = self.vcpus.get_mut(&base).and_then(|vcpu| vcpu.tcb.take());
                if let Some(thread) = bound.and_then(|thread| self.threads.get_mut(&thread)) {
                    thread.vcpu = None;
                }
            }
            _ => {}
        }
    }
}
