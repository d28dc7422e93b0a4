//! VCpus: a guest's virtual CPU as a kernel object (`docs/VIRTUALISATION.md`).
//!
//! A VCpu is 8 KiB: page 0 is the hardware's control block (a VMCB for
//! `svm`, a VMCS region for `vtx`), which only the backend touches; page
//! 1 starts with one capability slot, holding the GuestSpace the VCpu
//! runs in (a derived copy, as a TCB's slots hold its CSpace and VSpace),
//! followed by the kernel's record, [`VCpu`]: the thread the VCpu is bound
//! to and the guest state a VMM may read and write.
//!
//! The guest state is an allowlist of backend-neutral fields
//! ([`GuestField`]); everything else in a VMCB or VMCS (intercepts, host
//! state, permission maps, the EPT pointer or nested CR3, the VPID or
//! ASID, the controls) is the kernel's and no invocation reaches it. The
//! record is the fields' authoritative copy between guest runs: a field
//! written here is marked dirty, and the backend loads the dirty fields
//! into the hardware page before it next enters the guest.
//!
//! [`check`] refuses values that no backend can load (reserved bits, a
//! non-canonical base, nested virtualisation's CR4.VMXE or EFER.SVME);
//! combinations the hardware checks at entry (CR0.PG without PE, a long
//! mode EFER without PAE) are left to it, and an entry it refuses comes
//! back to the VMM as an invalid-state exit, never as a kernel failure.

use crate::cap::derivation::{self, WorkBudget};
use crate::cap::invocation::Message;
use crate::cap::{Cap, MappedAt, PageTableLevel, SlotRef};
use crate::error::SyscallError;
use crate::finalise::Finaliser;
use crate::ipc::{MessageInfo, ThreadId, ThreadState};
use crate::memory::PhysAddr;
use crate::platform::Platform;
use crate::sched::Scheduler;
use crate::store::ObjectStore;
use crate::virt::{Event, Exit, ExitKind};
use crate::vspace::AsidTable;

/// log2 of a VCpu's size: the hardware page and the kernel's page.
pub const VCPU_BITS: u8 = 13;
/// Where the kernel's page starts in a VCpu: its GuestSpace slot, then
/// the [`VCpu`] record.
pub const KERNEL_PAGE_OFFSET: u64 = 4096;
/// log2 of the capability slots in a VCpu (one: its GuestSpace).
pub const VCPU_SLOT_BITS: u8 = 0;

/// The slot in a VCpu that holds its GuestSpace.
#[must_use]
pub fn space_slot(vcpu: PhysAddr) -> Option<SlotRef> {
    SlotRef::in_cnode(PhysAddr::new(vcpu.as_u64().checked_add(KERNEL_PAGE_OFFSET)?), 0)
}

/// Invocation labels of VCpu capabilities.
pub mod label {
    /// VCpu: bind to a thread (extra cap: its TCB).
    pub const VCPU_SET_TCB: u64 = 112;
    /// VCpu: run in a GuestSpace (extra cap: the GuestSpace, with an ASID).
    pub const VCPU_SET_SPACE: u64 = 113;
    /// VCpu: read one guest-state field (word: the field).
    pub const VCPU_READ_STATE: u64 = 114;
    /// VCpu: write one guest-state field (words: the field, the value).
    pub const VCPU_WRITE_STATE: u64 = 115;
}

/// The VCpu invocations as `docs/abi.md` lists them: label, name,
/// argument words, extra capabilities.
pub const LABELS: [(u64, &str, &[&str], &[&str]); 4] = [
    (label::VCPU_SET_TCB, "VCpu::SetTcb", &[], &["tcb"]),
    (label::VCPU_SET_SPACE, "VCpu::SetSpace", &[], &["guest_space"]),
    (label::VCPU_READ_STATE, "VCpu::ReadState", &["field"], &[]),
    (label::VCPU_WRITE_STATE, "VCpu::WriteState", &["field", "value"], &[]),
];

/// A segment register of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// ES.
    Es = 0,
    /// CS.
    Cs = 1,
    /// SS.
    Ss = 2,
    /// DS.
    Ds = 3,
    /// FS.
    Fs = 4,
    /// GS.
    Gs = 5,
    /// The LDT register.
    Ldtr = 6,
    /// The task register.
    Tr = 7,
}

impl Segment {
    /// Every segment register, in field order.
    pub const ALL: [Segment; 8] =
        [Segment::Es, Segment::Cs, Segment::Ss, Segment::Ds, Segment::Fs, Segment::Gs, Segment::Ldtr, Segment::Tr];
}

/// One part of a segment register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentPart {
    /// The selector (16 bits).
    Selector = 0,
    /// The base address.
    Base = 1,
    /// The limit in bytes (32 bits, already scaled by G).
    Limit = 2,
    /// The attributes, packed as a VMCB packs them: bits 0..4 type, 4 S,
    /// 5..7 DPL, 7 P, 8 AVL, 9 L, 10 D/B, 11 G. A segment with P clear is
    /// unusable (the `vtx` backend sets the VMCS's unusable bit from it).
    Attributes = 3,
}

/// A guest-state field a VMM may read and write: its number is the
/// `field` word of ReadState and WriteState (`docs/abi.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GuestField(u8);

impl GuestField {
    /// RIP.
    pub const RIP: GuestField = GuestField(0);
    /// RSP.
    pub const RSP: GuestField = GuestField(1);
    /// RFLAGS (bit 1 always reads 1).
    pub const RFLAGS: GuestField = GuestField(2);
    /// CR0.
    pub const CR0: GuestField = GuestField(3);
    /// CR3.
    pub const CR3: GuestField = GuestField(4);
    /// CR4.
    pub const CR4: GuestField = GuestField(5);
    /// EFER.
    pub const EFER: GuestField = GuestField(6);
    /// DR7 (bit 10 always reads 1).
    pub const DR7: GuestField = GuestField(7);
    /// The interrupt shadow: bit 0 blocking by STI, bit 1 by MOV SS.
    pub const INTERRUPTIBILITY: GuestField = GuestField(8);
    /// 0 running, 1 halted (HLT).
    pub const ACTIVITY: GuestField = GuestField(9);
    /// The event to inject on the next entry, in VMEnter's event encoding
    /// (`virt::Event`; 0 for none).
    pub const PENDING_EVENT: GuestField = GuestField(10);
    /// Added to the host's TSC for the guest's RDTSC.
    pub const TSC_OFFSET: GuestField = GuestField(11);
    /// GDTR's base.
    pub const GDTR_BASE: GuestField = GuestField(12);
    /// GDTR's limit (16 bits).
    pub const GDTR_LIMIT: GuestField = GuestField(13);
    /// IDTR's base.
    pub const IDTR_BASE: GuestField = GuestField(14);
    /// IDTR's limit (16 bits).
    pub const IDTR_LIMIT: GuestField = GuestField(15);
    /// The first segment field: segment `s`'s part `p` is field
    /// `16 + 4 * s + p`.
    pub const FIRST_SEGMENT_FIELD: u8 = 16;
    /// The number after the last segment field.
    pub const END_SEGMENT_FIELDS: u8 = 48;
    /// STAR: SYSCALL's and SYSRET's segment selectors (any value).
    pub const STAR: GuestField = GuestField(48);
    /// LSTAR: the 64-bit SYSCALL entry (canonical).
    pub const LSTAR: GuestField = GuestField(49);
    /// CSTAR: the compatibility-mode SYSCALL entry (canonical).
    pub const CSTAR: GuestField = GuestField(50);
    /// SFMASK: the RFLAGS bits SYSCALL clears (32 bits).
    pub const SFMASK: GuestField = GuestField(51);
    /// KERNEL_GS_BASE: the GS base SWAPGS exchanges with GS's (canonical).
    pub const KERNEL_GS_BASE: GuestField = GuestField(52);
    /// IA32_SYSENTER_CS (32 bits).
    pub const SYSENTER_CS: GuestField = GuestField(53);
    /// IA32_SYSENTER_ESP (canonical).
    pub const SYSENTER_ESP: GuestField = GuestField(54);
    /// IA32_SYSENTER_EIP (canonical).
    pub const SYSENTER_EIP: GuestField = GuestField(55);
    /// IA32_PAT: eight entries, each byte a memory type (UC 0, WC 1, WT 4,
    /// WP 5, WB 6, UC- 7).
    pub const PAT: GuestField = GuestField(56);
    /// CR2: the linear address of the guest's last page fault (any value).
    pub const CR2: GuestField = GuestField(57);
    /// The guest exceptions the VMM intercepts, one bit per vector: only
    /// [`INTERCEPTABLE_EXCEPTIONS`] (#DB and #BP, for a debugger). Each
    /// one intercepted ends the run with an exception exit before the
    /// guest sees it.
    pub const EXCEPTION_INTERCEPTS: GuestField = GuestField(58);
    /// How many fields there are (at most 64: the dirty and stale masks
    /// have one bit per field).
    pub const COUNT: usize = 59;

    /// Part `part` of segment register `segment`.
    #[must_use]
    pub const fn segment(segment: Segment, part: SegmentPart) -> GuestField {
        GuestField(GuestField::FIRST_SEGMENT_FIELD + 4 * segment as u8 + part as u8)
    }

    /// The field numbered `word`, if there is one.
    #[must_use]
    pub fn from_word(word: u64) -> Option<GuestField> {
        u8::try_from(word).ok().filter(|number| usize::from(*number) < GuestField::COUNT).map(GuestField)
    }

    /// Its number.
    #[must_use]
    pub const fn number(self) -> u8 {
        self.0
    }

    /// Its segment register and part, for a segment field.
    #[must_use]
    pub const fn segment_part(self) -> Option<(Segment, SegmentPart)> {
        if self.0 < GuestField::FIRST_SEGMENT_FIELD || self.0 >= GuestField::END_SEGMENT_FIELDS {
            return None;
        }
        let index = self.0 - GuestField::FIRST_SEGMENT_FIELD;
        let part = match index % 4 {
            0 => SegmentPart::Selector,
            1 => SegmentPart::Base,
            2 => SegmentPart::Limit,
            _ => SegmentPart::Attributes,
        };
        Some((Segment::ALL[(index / 4) as usize], part))
    }
}

// One dirty and one stale bit per field, in a u64 each.
const _: () = assert!(GuestField::COUNT <= 64);
// Four fields for each segment register.
const _: () = assert!(
    GuestField::END_SEGMENT_FIELDS as usize == GuestField::FIRST_SEGMENT_FIELD as usize + 4 * Segment::ALL.len()
);

/// The RFLAGS bits a guest may have: every architectural flag (CF, PF,
/// AF, ZF, SF, TF, IF, DF, OF, IOPL, NT, RF, VM, AC, VIF, VIP, ID) and the
/// always-one bit 1.
pub const GUEST_RFLAGS: u64 = 0x003f_7fd7;
/// The CR0 bits a guest may have: PE, MP, EM, TS, ET, NE, WP, AM, NW, CD,
/// PG.
pub const GUEST_CR0: u64 = 0xe005_003f;
/// The CR4 bits a guest may have: VME through UMIP (0..=11), FSGSBASE,
/// PCIDE, OSXSAVE, SMEP, SMAP, PKE. Not LA57 (guests page with four
/// levels), VMXE or SMXE (no nested virtualisation).
pub const GUEST_CR4: u64 = 0x0077_0fff;
/// The exceptions a VMM may intercept (the
/// [`GuestField::EXCEPTION_INTERCEPTS`] bits): #DB (vector 1: single
/// steps) and #BP (vector 3: INT3 breakpoints), what a debugger needs.
/// Not #MC or an NMI, which are the host's, nor the others: the kernel
/// decides how each backend delivers them, and a fault intercepted before
/// delivery (a #PF, whose CR2 the VMM would have to restore) is more than
/// a debugger needs.
pub const INTERCEPTABLE_EXCEPTIONS: u64 = 1 << 1 | 1 << 3;
/// The EFER bits a guest may have: SCE, LME, LMA, NXE. Not SVME (no
/// nested virtualisation).
pub const GUEST_EFER: u64 = 0x0d01;
/// The first physical address bit CR3 may not set (the architectural
/// maximum, 52).
pub const CR3_LIMIT: u64 = 1 << 52;
/// IA32_PAT after RESET: WB, WT, UC-, UC in entries 0..4 and again in
/// 4..8.
pub const RESET_PAT: u64 = 0x0007_0406_0007_0406;

/// Whether every entry (byte) of `pat` is a memory type IA32_PAT takes:
/// UC (0), WC (1), WT (4), WP (5), WB (6) or UC- (7). WRMSR raises #GP
/// for any other, and VM entry (`vtx`'s load IA32_PAT, `svm`'s G_PAT)
/// refuses it.
#[must_use]
pub const fn is_valid_pat(pat: u64) -> bool {
    let mut entry = 0;
    while entry < 8 {
        if !matches!((pat >> (8 * entry)) & 0xff, 0 | 1 | 4..=7) {
            return false;
        }
        entry += 1;
    }
    true
}

/// Whether `address` is canonical with 48-bit linear addresses.
#[must_use]
pub const fn is_canonical(address: u64) -> bool {
    let upper = address >> 47;
    upper == 0 || upper == (1 << 17) - 1
}

/// Checks a WriteState value for `field` and returns the value the
/// field takes (RFLAGS bit 1 and DR7 bit 10 set; a pending event in its
/// canonical encoding).
///
/// # Errors
///
/// [`SyscallError::InvalidArgument`] for a value no backend could load.
pub fn check(field: GuestField, value: u64) -> Result<u64, SyscallError> {
    let ok = |valid: bool, value: u64| if valid { Ok(value) } else { Err(SyscallError::InvalidArgument) };
    if let Some((segment, part)) = field.segment_part() {
        return match part {
            SegmentPart::Selector => ok(value <= 0xffff, value),
            // ES, CS, SS and DS bases are 32-bit; the others are used in
            // long mode and must be canonical.
            SegmentPart::Base if matches!(segment, Segment::Es | Segment::Cs | Segment::Ss | Segment::Ds) => {
                ok(value <= u64::from(u32::MAX), value)
            }
            SegmentPart::Base => ok(is_canonical(value), value),
            SegmentPart::Limit => ok(value <= u64::from(u32::MAX), value),
            SegmentPart::Attributes => ok(value <= 0xfff, value),
        };
    }
    match field {
        GuestField::RIP
        | GuestField::RSP
        | GuestField::GDTR_BASE
        | GuestField::IDTR_BASE
        | GuestField::LSTAR
        | GuestField::CSTAR
        | GuestField::KERNEL_GS_BASE
        | GuestField::SYSENTER_ESP
        | GuestField::SYSENTER_EIP => ok(is_canonical(value), value),
        GuestField::RFLAGS => ok(value & !GUEST_RFLAGS == 0, value | 0x2),
        // NW without CD is a combination MOV to CR0 refuses (#GP) and SVM's
        // VMRUN too.
        GuestField::CR0 => ok(value & !GUEST_CR0 == 0 && !(value & 1 << 29 != 0 && value & 1 << 30 == 0), value),
        GuestField::CR3 => ok(value < CR3_LIMIT, value),
        GuestField::CR4 => ok(value & !GUEST_CR4 == 0, value),
        GuestField::EFER => ok(value & !GUEST_EFER == 0, value),
        GuestField::DR7 => ok(value >> 32 == 0, value | 0x400),
        GuestField::INTERRUPTIBILITY => ok(value <= 0b11, value),
        GuestField::ACTIVITY => ok(value <= 1, value),
        GuestField::PENDING_EVENT => match Event::from_word(value) {
            Ok(None) => Ok(0),
            Ok(Some(event)) => Ok(event.to_word()),
            Err(_) => Err(SyscallError::InvalidArgument),
        },
        GuestField::GDTR_LIMIT | GuestField::IDTR_LIMIT => ok(value <= 0xffff, value),
        GuestField::SFMASK | GuestField::SYSENTER_CS => ok(value <= u64::from(u32::MAX), value),
        GuestField::PAT => ok(is_valid_pat(value), value),
        GuestField::EXCEPTION_INTERCEPTS => ok(value & !INTERCEPTABLE_EXCEPTIONS == 0, value),
        // The TSC offset, STAR and CR2: any value.
        _ => Ok(value),
    }
}

/// The allowlisted guest state, indexed by [`GuestField::number`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState(pub [u64; GuestField::COUNT]);

impl GuestState {
    /// The state of an x86 CPU after RESET (Intel SDM Vol. 3A, 10.1.1;
    /// AMD APM Vol. 2, 14.1.3): real mode, executing at CS 0xf000 with base
    /// 0xffff_0000 and RIP 0xfff0, CR0 0x6000_0010 (CD, NW, ET), every data
    /// segment at base 0 with a 64 KiB limit, DR7 0x400, PAT
    /// [`RESET_PAT`]; the SYSCALL and SYSENTER MSRs and CR2 0.
    pub const RESET: GuestState = {
        let mut values = [0; GuestField::COUNT];
        values[GuestField::PAT.0 as usize] = RESET_PAT;
        values[GuestField::RIP.0 as usize] = 0xfff0;
        values[GuestField::RFLAGS.0 as usize] = 0x2;
        values[GuestField::CR0.0 as usize] = 0x6000_0010;
        values[GuestField::DR7.0 as usize] = 0x400;
        values[GuestField::GDTR_LIMIT.0 as usize] = 0xffff;
        values[GuestField::IDTR_LIMIT.0 as usize] = 0xffff;
        let mut index = 0;
        while index < Segment::ALL.len() {
            let segment = Segment::ALL[index];
            let (selector, base, attributes) = match segment {
                Segment::Cs => (0xf000, 0xffff_0000, 0x9b),
                Segment::Ldtr => (0, 0, 0x82),
                Segment::Tr => (0, 0, 0x8b),
                _ => (0, 0, 0x93),
            };
            values[GuestField::segment(segment, SegmentPart::Selector).0 as usize] = selector;
            values[GuestField::segment(segment, SegmentPart::Base).0 as usize] = base;
            values[GuestField::segment(segment, SegmentPart::Limit).0 as usize] = 0xffff;
            values[GuestField::segment(segment, SegmentPart::Attributes).0 as usize] = attributes;
            index += 1;
        }
        GuestState(values)
    };

    /// The value of `field`.
    #[must_use]
    pub const fn get(&self, field: GuestField) -> u64 {
        self.0[field.0 as usize]
    }
}

/// Every field's dirty bit.
pub const ALL_DIRTY: u64 = (1 << GuestField::COUNT) - 1;

/// The fields a backend stores into the record at every exit: those a
/// VMEnter reply carries (RIP, RSP, RFLAGS, CR0, CR3, CR4, EFER, the
/// interruptibility state, the pending event, and CS's base and
/// attributes, which a VMM needs to find the exiting instruction).
pub const EAGER_FIELDS: u64 = 1 << 0
    | 1 << 1
    | 1 << 2
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 8
    | 1 << 10
    | 1 << GuestField::segment(Segment::Cs, SegmentPart::Base).0
    | 1 << GuestField::segment(Segment::Cs, SegmentPart::Attributes).0;
/// The fields only a VMM changes (WriteState): the TSC offset, and the
/// MSRs a guest can write only through WRMSR, which always exits (STAR,
/// LSTAR, CSTAR, SFMASK, the SYSENTER MSRs, PAT), and the exception
/// intercepts. The record holds them
/// current at all times; a backend loads them when they are dirty and
/// never reads them back.
pub const HELD_FIELDS: u64 = 1 << GuestField::TSC_OFFSET.0
    | 1 << GuestField::STAR.0
    | 1 << GuestField::LSTAR.0
    | 1 << GuestField::CSTAR.0
    | 1 << GuestField::SFMASK.0
    | 1 << GuestField::SYSENTER_CS.0
    | 1 << GuestField::SYSENTER_ESP.0
    | 1 << GuestField::SYSENTER_EIP.0
    | 1 << GuestField::PAT.0
    | 1 << GuestField::EXCEPTION_INTERCEPTS.0;
/// The fields the guest may change that a backend leaves in the hardware
/// (or, for `vtx`'s KERNEL_GS_BASE and CR2, which no VMCS field holds, in
/// the record, stored at every exit) at an exit: the segment registers,
/// GDTR and IDTR, DR7, the activity state, KERNEL_GS_BASE (SWAPGS) and
/// CR2 (page faults), marking them stale in the record: ReadState fetches
/// them (`Platform::sync_guest_state`) only when a VMM asks.
pub const LAZY_FIELDS: u64 = ALL_DIRTY & !EAGER_FIELDS & !HELD_FIELDS;

/// The kernel's record of a VCpu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VCpu {
    /// The thread it is bound to (whose VMEnter runs it), if any.
    pub tcb: Option<ThreadId>,
    /// The allowlisted guest state.
    pub state: GuestState,
    /// One bit per field written since the backend last loaded the state
    /// into the hardware page (every bit for a fresh VCpu, whose hardware
    /// page is still zero).
    pub dirty: u64,
    /// One bit per field whose value in the hardware page is newer than
    /// the record's (the guest may have changed it since the backend last
    /// stored it): [`LAZY_FIELDS`] after an exit. WriteState fetches them
    /// all before it writes, so a field is never both dirty and stale.
    pub stale: u64,
    /// The guest's general registers in x86 encoding order (RAX, RCX,
    /// RDX, RBX, RSP, RBP, RSI, RDI, R8..R15) as the last VMEnter or exit
    /// left them; RSP's slot is unused (the RSP field holds it).
    pub registers: [u64; 16],
    /// A host interrupt ended the last run: the thread's VMEnter restarts,
    /// and the restart enters the guest from this record, not from its
    /// message (which still holds the registers of before).
    pub resume: bool,
    /// The entry controls of the VMEnter that loaded the record (a
    /// restart after a host interrupt keeps them, as it keeps the
    /// registers): the backend runs the guest with their deadline and
    /// interrupt-window request (`Platform::run_guest`).
    pub controls: EnterControls,
    /// The backend's own state of the hardware page (0: never used);
    /// `kernel_core` only clears it when the VCpu is made.
    pub hardware: u64,
}

impl VCpu {
    /// A fresh VCpu: bound to nothing, in the RESET state.
    pub const FRESH: VCpu = VCpu {
        tcb: None,
        state: GuestState::RESET,
        dirty: ALL_DIRTY,
        stale: 0,
        registers: [0; 16],
        resume: false,
        controls: EnterControls::NONE,
        hardware: 0,
    };
}

impl Default for VCpu {
    fn default() -> VCpu {
        VCpu::FRESH
    }
}

/// Binds `vcpu` and `thread` to each other, first unbinding each from
/// whatever it was bound to. A run a host interrupt ended is not resumed
/// by the new thread: its VMEnter starts from its own message.
pub fn bind(store: &mut impl ObjectStore, vcpu: PhysAddr, thread: ThreadId) {
    if let Some(old_thread) = store.vcpu(vcpu).tcb {
        store.tcb_mut(old_thread).vcpu = None;
    }
    if let Some(old_vcpu) = store.tcb(thread).vcpu {
        store.vcpu_mut(old_vcpu).tcb = None;
    }
    let record = store.vcpu_mut(vcpu);
    record.tcb = Some(thread);
    record.resume = false;
    store.tcb_mut(thread).vcpu = Some(vcpu);
}

/// VMEnter's message and reply layout (`docs/abi.md`, "VMEnter").
pub mod enter {
    /// Words 0..16: the general registers in x86 encoding order (RAX, RCX,
    /// RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
    pub const REGISTERS: usize = 0;
    /// The word of RSP among them.
    pub const RSP: usize = 4;
    /// Word 16: RIP.
    pub const RIP: usize = 16;
    /// Word 17: RFLAGS.
    pub const RFLAGS: usize = 17;
    /// Word 18: the event to inject (0 for none); in a reply, the event
    /// still pending (one whose delivery an exit interrupted, or that the
    /// guest never ran to take).
    pub const EVENT: usize = 18;
    /// The words of guest state a message and every reply begin with:
    /// the registers, RIP, RFLAGS and the event.
    pub const STATE_WORDS: usize = 19;
    /// [`STATE_WORDS`] as a message length: a reply to a pending
    /// notification.
    pub const STATE_LENGTH: u8 = 19;
    /// Message word 19: the deadline, an absolute TSC value (0: none).
    pub const DEADLINE: usize = 19;
    /// Message word 20: the entry controls ([`control`]).
    pub const CONTROLS: usize = 20;
    /// The words VMEnter takes.
    pub const MESSAGE_WORDS: usize = 21;
    /// [`MESSAGE_WORDS`] as a message length.
    pub const MESSAGE_LENGTH: u8 = 21;
    /// Reply word 19: the exit's kind (`virt::ExitKind`).
    pub const EXIT_KIND: usize = 19;
    /// Reply word 20: the hardware's own exit reason.
    pub const EXIT_REASON: usize = 20;
    /// Reply word 21: the kind's qualification.
    pub const QUALIFICATION: usize = 21;
    /// Reply word 22: the guest-physical address of a second-level fault.
    pub const GUEST_PHYSICAL: usize = 22;
    /// Reply word 23: the exiting instruction's length (0: not known).
    pub const INSTRUCTION_LENGTH: usize = 23;
    /// Reply words 24..29: CR0, CR3, CR4, EFER and the interruptibility
    /// state.
    pub const CONTROL: usize = 24;
    /// Reply words 29 and 30: CS's base and attributes (the packed form
    /// of `docs/abi.md`'s segment fields).
    pub const CODE_SEGMENT: usize = 29;
    /// The words of an exit reply.
    pub const EXIT_WORDS: usize = 31;
    /// [`EXIT_WORDS`] as a message length.
    pub const EXIT_LENGTH: u8 = 31;
    /// The reply's label for an exit.
    pub const LABEL_EXIT: u64 = 0x2_0000;
    /// The reply's label when the bound notification was pending (or
    /// signalled during a `WAIT`): the guest did not run (further); its
    /// registers come back as for an exit (words 0..19) and the badge as
    /// for Wait.
    pub const LABEL_NOTIFICATION: u64 = 0x2_0001;

    /// The bits of the entry controls (message word [`CONTROLS`]).
    pub mod control {
        /// The vCPU is halted: do not enter the guest, block the thread
        /// until its bound notification is signalled or the deadline
        /// passes.
        pub const WAIT: u64 = 1 << 0;
        /// Exit with `ExitKind::InterruptWindow` as soon as the guest can
        /// take an external interrupt (RFLAGS.IF set, no STI or MOV SS
        /// shadow).
        pub const INTERRUPT_WINDOW: u64 = 1 << 1;
        /// Every defined bit; any other is InvalidArgument.
        pub const ALL: u64 = WAIT | INTERRUPT_WINDOW;
    }
}

/// VMEnter's deadline and entry controls (message words
/// [`enter::DEADLINE`] and [`enter::CONTROLS`]), checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EnterControls {
    /// The TSC value at which the call returns with
    /// `ExitKind::Deadline` (0: none), as the message word gives it.
    pub deadline: u64,
    /// `WAIT`: the vCPU is halted; block instead of entering the guest.
    pub wait: bool,
    /// `INTERRUPT_WINDOW`: exit when the guest can take an interrupt.
    pub interrupt_window: bool,
}

impl EnterControls {
    /// No deadline, no control: the guest runs until an exit.
    pub const NONE: EnterControls = EnterControls { deadline: 0, wait: false, interrupt_window: false };

    /// The controls of message words `deadline` (0: none) and `controls`.
    ///
    /// # Errors
    ///
    /// [`SyscallError::InvalidArgument`] for a control bit outside
    /// [`enter::control::ALL`].
    pub const fn from_words(deadline: u64, controls: u64) -> Result<EnterControls, SyscallError> {
        if controls & !enter::control::ALL != 0 {
            return Err(SyscallError::InvalidArgument);
        }
        Ok(EnterControls {
            deadline,
            wait: controls & enter::control::WAIT != 0,
            interrupt_window: controls & enter::control::INTERRUPT_WINDOW != 0,
        })
    }

    /// The message words they came from.
    #[must_use]
    pub const fn to_words(self) -> [u64; 2] {
        let wait = if self.wait { enter::control::WAIT } else { 0 };
        let window = if self.interrupt_window { enter::control::INTERRUPT_WINDOW } else { 0 };
        [self.deadline, wait | window]
    }

    /// The deadline, if there is one.
    #[must_use]
    pub const fn deadline(self) -> Option<u64> {
        if self.deadline == 0 { None } else { Some(self.deadline) }
    }

    /// Whether there is a deadline and it has passed at `now`.
    #[must_use]
    pub const fn deadline_passed(self, now: u64) -> bool {
        self.deadline != 0 && now >= self.deadline
    }
}

/// Where a guest runs: its VCpu, and its GuestSpace's root, ASID and
/// entry format, for [`Platform::run_guest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestEntry {
    /// The VCpu (its hardware page).
    pub vcpu: PhysAddr,
    /// The GuestSpace's root table.
    pub root: PhysAddr,
    /// The GuestSpace's ASID.
    pub asid: crate::cap::Asid,
    /// The entry format of the backend.
    pub format: crate::virt::GuestFormat,
}

/// VMEnter's message and reply words, wherever the call keeps them: the
/// general path's arrays (beside the TCB's message), or the calling
/// thread's registers and IPC buffer on the architecture's VMEnter path,
/// which then moves each word once.
pub trait EnterWords {
    /// Whether the caller sent all [`enter::MESSAGE_WORDS`] words.
    fn has_message(&self) -> bool;
    /// Message word `index` (below [`enter::MESSAGE_WORDS`]).
    fn message(&self, index: usize) -> u64;
    /// Sets reply word `index` (below [`enter::EXIT_WORDS`]).
    fn reply(&mut self, index: usize, word: u64);
    /// Whether the call may block (a `WAIT`): the words then go into the
    /// TCB's message, as on the general path. A path that answers from the
    /// caller's own registers says no, and [`enter_guest`] hands it a
    /// `WAIT` back untouched ([`Entered::Elsewhere`]).
    fn may_block(&self) -> bool {
        true
    }
}

/// [`EnterWords`] in arrays: the message, if whole, and the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnterArrays {
    /// The message (`None`: fewer than [`enter::MESSAGE_WORDS`] words).
    pub message: Option<[u64; enter::MESSAGE_WORDS]>,
    /// The reply.
    pub reply: [u64; enter::EXIT_WORDS],
}

impl EnterWords for EnterArrays {
    fn has_message(&self) -> bool {
        self.message.is_some()
    }

    fn message(&self, index: usize) -> u64 {
        self.message.map_or(0, |message| message[index])
    }

    fn reply(&mut self, index: usize, word: u64) {
        self.reply[index] = word;
    }
}

/// The guest registers and control state a reply carries, from `record`
/// (the reply's first [`enter::STATE_WORDS`] words).
#[inline(always)]
fn reply_state(record: &VCpu, words: &mut impl EnterWords) {
    for (index, &register) in record.registers.iter().enumerate() {
        words.reply(index, register);
    }
    words.reply(enter::RSP, record.state.get(GuestField::RSP));
    words.reply(enter::RIP, record.state.get(GuestField::RIP));
    words.reply(enter::RFLAGS, record.state.get(GuestField::RFLAGS));
    words.reply(enter::EVENT, record.state.get(GuestField::PENDING_EVENT));
}

/// The exit's words of a reply (words [`enter::EXIT_KIND`] and up), the
/// control state from `record`.
#[inline(always)]
fn reply_exit(record: &VCpu, exit: &Exit, words: &mut impl EnterWords) {
    let detail = [
        exit.kind as u64,
        exit.raw_reason,
        exit.qualification,
        exit.guest_physical,
        u64::from(exit.instruction_length),
        record.state.get(GuestField::CR0),
        record.state.get(GuestField::CR3),
        record.state.get(GuestField::CR4),
        record.state.get(GuestField::EFER),
        record.state.get(GuestField::INTERRUPTIBILITY),
        record.state.get(GuestField::segment(Segment::Cs, SegmentPart::Base)),
        record.state.get(GuestField::segment(Segment::Cs, SegmentPart::Attributes)),
    ];
    for (index, word) in (enter::EXIT_KIND..).zip(detail) {
        words.reply(index, word);
    }
}

/// The exit VMEnter reports when its deadline passed: no qualification,
/// no instruction length; `raw_reason` is the hardware exit that ended the
/// run (0 when the guest did not run).
#[must_use]
pub const fn deadline_exit(raw_reason: u64) -> Exit {
    Exit { kind: ExitKind::Deadline, raw_reason, qualification: 0, guest_physical: 0, instruction_length: 0 }
}

/// Loads VMEnter's message into `record`, checked as WriteState checks
/// the fields it sets: RSP, RIP, RFLAGS and the pending event; `controls`
/// (decoded from the message) are kept with them. Nothing changes when a
/// check fails.
#[inline(always)]
fn load_message(record: &mut VCpu, words: &impl EnterWords, controls: EnterControls) -> Result<(), SyscallError> {
    let fields = [
        (GuestField::RSP, words.message(enter::RSP)),
        (GuestField::RIP, words.message(enter::RIP)),
        (GuestField::RFLAGS, words.message(enter::RFLAGS)),
        (GuestField::PENDING_EVENT, words.message(enter::EVENT)),
    ];
    let mut values = [0; 4];
    for (value, (field, word)) in values.iter_mut().zip(fields) {
        *value = check(field, word)?;
    }
    for (index, register) in record.registers.iter_mut().enumerate() {
        *register = words.message(index);
    }
    record.registers[enter::RSP] = 0;
    for ((field, _), value) in fields.into_iter().zip(values) {
        if record.state.get(field) != value {
            record.state.0[usize::from(field.0)] = value;
            record.dirty |= 1 << field.0;
        }
    }
    record.controls = controls;
    Ok(())
}

/// How [`enter_guest`] ended, when it did not refuse the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entered {
    /// The guest exited (or the deadline passed): the reply holds all
    /// [`enter::EXIT_WORDS`] words.
    Exit,
    /// The bound notification was pending: the guest did not run
    /// (further); the reply holds the registers (its first
    /// [`enter::STATE_WORDS`] words), and `badge` is what Wait returns.
    Notification {
        /// The signals' badges, ORed.
        badge: u64,
    },
    /// A host interrupt ended the guest's run: nothing is replied, the
    /// VCpu resumes from its record, and the thread's call runs again
    /// ([`crate::ipc::Resumption::Again`], set here) once the kernel has
    /// taken the interrupt.
    Interrupted,
    /// `WAIT`: the thread blocked, waiting on its bound notification
    /// and, with a deadline, sleeping until it. The reply holds all
    /// [`enter::EXIT_WORDS`] words of the deadline's exit; the caller puts
    /// them into the thread's message with the label and length of a
    /// signal's reply ([`enter::LABEL_NOTIFICATION`], its first
    /// [`enter::STATE_WORDS`] words), which a signal completes with its
    /// badge, and which the deadline turns into the exit's
    /// ([`crate::sched::Scheduler::release_due`]).
    Blocked,
    /// A `WAIT` on words that cannot block ([`EnterWords::may_block`]):
    /// nothing happened; the call must take the general path.
    Elsewhere,
}

/// VMEnter's work, whichever way the call reached the kernel: the
/// general system-call path ([`vm_enter`], through the TCB's message) or
/// the architecture's VMEnter path, whose `words` are the caller's
/// registers and IPC buffer (a `WAIT`, which may block, comes back from
/// there as [`Entered::Elsewhere`]). The message is only read when the VCpu does not resume a run a
/// host interrupt ended (the restart keeps the record's registers and
/// controls). In order: a pending signal on the bound notification ends
/// the call at once; a deadline already past (`now`, read only when
/// there is a deadline) ends it with `ExitKind::Deadline` without running
/// the guest; `WAIT` blocks the thread; otherwise the guest runs until an
/// exit.
///
/// # Errors
///
/// IllegalOperation when no VCpu is bound to the thread or the machine
/// has no virtualisation backend; InvalidCapability when the VCpu has no
/// GuestSpace or its GuestSpace lost its ASID; TruncatedMessage for fewer
/// than [`enter::MESSAGE_WORDS`] words; InvalidArgument for an undefined
/// control bit, a non-canonical RSP or RIP, reserved RFLAGS bits or a
/// malformed event; IllegalOperation for `WAIT` with neither a deadline
/// nor a bound notification (it could never end). Nothing changes on an
/// error.
#[allow(clippy::too_many_arguments, reason = "the kernel state VMEnter touches, passed apart for the borrows")]
pub fn enter_guest(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    asids: &AsidTable,
    guest_format: Option<crate::virt::GuestFormat>,
    platform: &mut impl Platform,
    thread: ThreadId,
    now: impl FnOnce() -> u64,
    words: &mut impl EnterWords,
) -> Result<Entered, SyscallError> {
    let tcb = store.tcb(thread);
    let (vcpu, bound) = (tcb.vcpu.ok_or(SyscallError::IllegalOperation)?, tcb.bound_notification);
    let format = guest_format.ok_or(SyscallError::IllegalOperation)?;
    let space = space_slot(vcpu).map(|slot| store.slot(slot).cap).unwrap_or(Cap::Null);
    let Cap::PageTable { object: root, mapping: Some(MappedAt { asid, .. }), .. } = space else {
        return Err(SyscallError::InvalidCapability);
    };
    // Mutant: a VCpu whose GuestSpace lost its ASID still enters.
    if !is_live_guest_space(store, asids, &space) && !cfg!(bulkhead_mutant = "vm_enter_ignores_dead_space") {
        return Err(SyscallError::InvalidCapability);
    }
    let controls = if store.vcpu(vcpu).resume {
        store.vcpu(vcpu).controls
    } else {
        if !words.has_message() {
            return Err(SyscallError::TruncatedMessage);
        }
        let controls = EnterControls::from_words(words.message(enter::DEADLINE), words.message(enter::CONTROLS))?;
        if controls.wait {
            if controls.deadline == 0 && bound.is_none() {
                return Err(SyscallError::IllegalOperation);
            }
            if !words.may_block() {
                return Ok(Entered::Elsewhere);
            }
        }
        load_message(store.vcpu_mut(vcpu), words, controls)?;
        controls
    };
    // A pending notification ends the call before the guest runs.
    if let Some(notification) = bound
        && store.notification(notification).active
    {
        let pending = store.notification_mut(notification);
        let badge = pending.word;
        (pending.active, pending.word) = (false, 0);
        let record = store.vcpu_mut(vcpu);
        record.resume = false;
        reply_state(record, words);
        return Ok(Entered::Notification { badge });
    }
    if controls.deadline != 0 && controls.deadline_passed(now()) {
        let record = store.vcpu_mut(vcpu);
        record.resume = false;
        reply_state(record, words);
        reply_exit(record, &deadline_exit(0), words);
        return Ok(Entered::Exit);
    }
    if controls.wait {
        let record = store.vcpu_mut(vcpu);
        record.resume = false;
        reply_state(record, words);
        reply_exit(record, &deadline_exit(0), words);
        halt(store, scheduler, thread, bound, controls.deadline());
        return Ok(Entered::Blocked);
    }
    // The run's deadline and interrupt-window request are the record's
    // `controls`.
    let entry = GuestEntry { vcpu, root, asid, format };
    let record = store.vcpu_mut(vcpu);
    let Some(exit) = platform.run_guest(&entry, record) else {
        record.resume = true;
        store.tcb_mut(thread).resumption = crate::ipc::Resumption::Again;
        return Ok(Entered::Interrupted);
    };
    record.resume = false;
    // The reply built from the record in place (not a copy of the whole
    // record).
    reply_state(record, words);
    reply_exit(record, &exit, words);
    Ok(Entered::Exit)
}

/// `WAIT`: blocks `thread`, which is running, on its bound notification
/// (as Wait would) or, without one, in [`ThreadState::Sleeping`]; with a
/// deadline, it also sleeps until then.
fn halt(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    thread: ThreadId,
    bound: Option<PhysAddr>,
    deadline: Option<u64>,
) {
    scheduler.remove(store, thread);
    match bound {
        Some(notification) => {
            store.tcb_mut(thread).state = ThreadState::BlockedOnNotification { notification };
            let mut waiters = store.notification(notification).waiters;
            waiters.push_back(store, thread);
            store.notification_mut(notification).waiters = waiters;
        }
        None => store.tcb_mut(thread).state = ThreadState::Sleeping,
    }
    if let Some(deadline) = deadline {
        scheduler.sleep_until(store, thread, deadline);
    }
}

/// The VMEnter system call of `thread` on the general system-call path
/// ([`enter_guest`] on the TCB's message, at time `now`): the reply
/// (label [`enter::LABEL_EXIT`] or [`enter::LABEL_NOTIFICATION`], with
/// the badge 0 or the notification's) goes into the thread's message.
/// When a host interrupt ends the run, nothing is replied: the thread's
/// call runs again once the kernel has taken the interrupt, and the
/// restart enters the guest from the record. A `WAIT` that blocks leaves
/// the replies to a signal and to the deadline in the thread's message
/// ([`Entered::Blocked`]).
///
/// # Errors
///
/// Those of [`enter_guest`].
#[allow(clippy::too_many_arguments, reason = "the kernel state VMEnter touches, passed apart for the borrows")]
pub fn vm_enter(
    store: &mut impl ObjectStore,
    scheduler: &mut Scheduler,
    asids: &AsidTable,
    guest_format: Option<crate::virt::GuestFormat>,
    platform: &mut impl Platform,
    thread: ThreadId,
    now: u64,
    length: usize,
) -> Result<(), SyscallError> {
    let message: Option<[u64; enter::MESSAGE_WORDS]> = {
        let tcb = store.tcb(thread);
        let message = &tcb.words[..length.min(tcb.words.len())];
        message.get(..enter::MESSAGE_WORDS).map(|words| core::array::from_fn(|index| words[index]))
    };
    let mut words = EnterArrays { message, reply: [0; enter::EXIT_WORDS] };
    let entered = enter_guest(store, scheduler, asids, guest_format, platform, thread, || now, &mut words)?;
    let (label, length, badge, prepared) = match entered {
        Entered::Exit => (enter::LABEL_EXIT, enter::EXIT_LENGTH, Some(0), enter::EXIT_WORDS),
        Entered::Notification { badge } => {
            (enter::LABEL_NOTIFICATION, enter::STATE_LENGTH, Some(badge), enter::STATE_WORDS)
        }
        Entered::Interrupted | Entered::Elsewhere => return Ok(()),
        // The signal's reply, over all the deadline's words; the signal
        // sets the badge.
        Entered::Blocked => (enter::LABEL_NOTIFICATION, enter::STATE_LENGTH, None, enter::EXIT_WORDS),
    };
    let tcb = store.tcb_mut(thread);
    tcb.words[..prepared].copy_from_slice(&words.reply[..prepared]);
    if let Some(badge) = badge {
        tcb.badge = badge;
    }
    tcb.info = MessageInfo { label, length, caps: 0 };
    Ok(())
}

/// Whether `cap` is a GuestSpace whose ASID still names it.
#[must_use]
pub fn is_live_guest_space(store: &impl ObjectStore, asids: &AsidTable, cap: &Cap) -> bool {
    matches!(*cap, Cap::PageTable { object, level: PageTableLevel::GuestSpace, mapping: Some(MappedAt { asid, .. }) }
        if asids.vspace(store, asid) == Some(object))
}

/// VCpu invocations, checked then performed; ReadState's result is the
/// reply word.
///
/// # Errors
///
/// The [`SyscallError`] the caller receives: IllegalOperation for an
/// unknown label, TruncatedMessage for missing words or capabilities,
/// InvalidCapability for a capability of the wrong kind (or a GuestSpace
/// without a live ASID), InvalidArgument for an unknown field or a value
/// [`check`] refuses.
pub fn invoke<S: ObjectStore, P: Platform>(
    store: &mut S,
    finaliser: &mut Finaliser<'_, P>,
    vcpu: PhysAddr,
    message: &Message<'_>,
) -> Result<Option<u64>, SyscallError> {
    let word = |index: usize| message.words.get(index).copied().ok_or(SyscallError::TruncatedMessage);
    let extra = |store: &S, index: usize| match message.extra_caps.get(index) {
        None => Err(SyscallError::TruncatedMessage),
        Some(None) => Err(SyscallError::InvalidCapability),
        Some(Some(slot)) => Ok((*slot, store.slot(*slot).cap)),
    };
    match message.label {
        label::VCPU_SET_TCB => {
            let (_, cap) = extra(store, 0)?;
            let Cap::Tcb { object } = cap else { return Err(SyscallError::InvalidCapability) };
            bind(store, vcpu, ThreadId::new(object));
            Ok(None)
        }
        label::VCPU_SET_SPACE => {
            let (source, cap) = extra(store, 0)?;
            if !is_live_guest_space(store, finaliser.asids, &cap) {
                return Err(SyscallError::InvalidCapability);
            }
            let derived = cap.derive()?;
            let slot = space_slot(vcpu).ok_or(SyscallError::InvalidCapability)?;
            // The old GuestSpace capability goes in one unit: it is never a
            // CNode's.
            if !store.slot(slot).cap.is_null() {
                let mut budget = WorkBudget(1);
                let deleted = derivation::delete(store, slot, &mut budget, finaliser);
                debug_assert!(deleted.is_ok(), "a GuestSpace capability took one unit");
            }
            derivation::insert_derived(store, source, slot, derived, false);
            Ok(None)
        }
        label::VCPU_READ_STATE => {
            let field = GuestField::from_word(word(0)?).ok_or(SyscallError::InvalidArgument)?;
            let record = store.vcpu_mut(vcpu);
            if record.stale & (1 << field.0) != 0 {
                finaliser.platform.sync_guest_state(vcpu, record);
            }
            Ok(Some(record.state.get(field)))
        }
        label::VCPU_WRITE_STATE => {
            let field = GuestField::from_word(word(0)?).ok_or(SyscallError::InvalidArgument)?;
            // Mutant: the value goes in unchecked.
            let value =
                if cfg!(bulkhead_mutant = "write_state_unchecked") { word(1)? } else { check(field, word(1)?)? };
            let record = store.vcpu_mut(vcpu);
            // The backend loads the lazy fields as a group: the record must
            // hold them all first.
            if record.stale != 0 {
                finaliser.platform.sync_guest_state(vcpu, record);
            }
            record.state.0[usize::from(field.0)] = value;
            record.dirty |= 1 << field.0;
            Ok(None)
        }
        _ => Err(SyscallError::IllegalOperation),
    }
}

#[cfg(test)]
mod tests;
