//! VCpu invocations and TCB::BindNotification through the system-call
//! layer: every error path, the bindings both ways and what deletion
//! undoes, and a property test of the guest-state allowlist.

use proptest::prelude::*;

use super::*;
use crate::cap::invocation::label as cnode_label;
use crate::cap::object::ObjectKind;
use crate::cap::{Rights, SlotStore};
use crate::platform::{PlatformEvent, RecordingPlatform};
use crate::store::MapStore;
use crate::syscall::{Kernel, label as tcb_label};
use crate::test_fixture::{R_SELF, R_UNTYPED, Request, issue, root_kernel, root_slot, root_thread};
use crate::virt::{ExitKind, GuestFormat};
use crate::vspace::label as vspace_label;

// Root CNode slots (a root cptr is the slot index).
const R_ASID_CONTROL: u64 = 2;
const R_POOL_UNTYPED: u64 = 3;
const R_POOL: u64 = 4;
const R_VCPU: u64 = 10; // 10, 11
const R_TCB: u64 = 12; // 12, 13
const R_GUEST: u64 = 14; // 14, 15 (the first assigned)
const R_PML4: u64 = 16; // assigned
const R_NOTIFICATION: u64 = 18; // 18, 19
const R_COPY: u64 = 30; // 30.. copies

struct World {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
}

impl World {
    /// An invocation by the root thread: the error code (0 for success) and
    /// the reply's word 0.
    fn call(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> (u64, u64) {
        issue(&mut self.kernel, &mut self.platform, root_thread(), &Request::call(cptr, label, words, extra))
    }

    fn ok(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> u64 {
        let (code, word) = self.call(cptr, label, words, extra);
        assert_eq!(code, 0, "invocation {label} on {cptr} failed with {code}");
        word
    }

    fn error(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> SyscallError {
        let (code, _) = self.call(cptr, label, words, extra);
        SyscallError::ALL.into_iter().find(|error| error.code() == code).unwrap_or_else(|| panic!("code {code}"))
    }

    fn retype(&mut self, kind: ObjectKind, size_bits: u64, slot: u64, count: u64) {
        self.ok(R_UNTYPED, cnode_label::UNTYPED_RETYPE, &[kind as u64, size_bits, 0, 0, slot, count], &[R_SELF]);
    }

    fn cap(&self, slot: u64) -> Cap {
        self.kernel.store.slot(root_slot(slot)).cap
    }

    fn object(&self, slot: u64) -> PhysAddr {
        self.cap(slot).memory_region().expect("an object").0
    }

    fn thread(&self, slot: u64) -> ThreadId {
        ThreadId::new(self.object(slot))
    }

    fn delete(&mut self, slot: u64) {
        self.ok(R_SELF, cnode_label::CNODE_DELETE, &[slot, 64], &[]);
    }

    fn copy(&mut self, to: u64, from: u64, rights: Rights) {
        self.ok(R_SELF, cnode_label::CNODE_COPY, &[to, 64, from, 64, u64::from(rights.bits())], &[R_SELF]);
    }

    fn read(&mut self, vcpu: u64, field: GuestField) -> u64 {
        self.ok(vcpu, label::VCPU_READ_STATE, &[u64::from(field.number())], &[])
    }

    fn write(&mut self, vcpu: u64, field: GuestField, value: u64) -> u64 {
        self.call(vcpu, label::VCPU_WRITE_STATE, &[u64::from(field.number()), value], &[]).0
    }

    fn record(&self, slot: u64) -> VCpu {
        *self.kernel.store.vcpu(self.object(slot))
    }
}

/// A root thread (its TCB capability in root slot [`R_SELF_TCB`]) with an
/// 8 MiB untyped on a machine with nested paging; two VCpus, two TCBs,
/// two GuestSpaces (the first with an ASID), an assigned PML4 and two
/// notifications.
fn world() -> World {
    let root_tcb = Cap::Tcb { object: root_thread().address() };
    let mut kernel = root_kernel(23, 255, &[(R_ASID_CONTROL, Cap::AsidControl), (R_SELF_TCB, root_tcb)]);
    kernel.guest_format = Some(GuestFormat::Npt);
    let mut world = World { kernel, platform: RecordingPlatform::new() };
    world.retype(ObjectKind::Untyped, 12, R_POOL_UNTYPED, 1);
    world.ok(R_ASID_CONTROL, vspace_label::ASID_CONTROL_MAKE_POOL, &[R_POOL, 64], &[R_POOL_UNTYPED, R_SELF]);
    world.retype(ObjectKind::VCpu, 0, R_VCPU, 2);
    world.retype(ObjectKind::Tcb, 0, R_TCB, 2);
    world.retype(ObjectKind::GuestSpace, 0, R_GUEST, 2);
    world.retype(ObjectKind::Pml4, 0, R_PML4, 1);
    world.retype(ObjectKind::Notification, 0, R_NOTIFICATION, 2);
    world.ok(R_POOL, vspace_label::ASID_POOL_ASSIGN, &[], &[R_GUEST]);
    world.ok(R_POOL, vspace_label::ASID_POOL_ASSIGN, &[], &[R_PML4]);
    world
}

#[test]
fn a_vcpu_is_two_pages_and_starts_in_the_reset_state() {
    let mut world = world();
    let vcpu = world.cap(R_VCPU);
    assert!(matches!(vcpu, Cap::VCpu { .. }));
    assert_eq!(vcpu.memory_region().map(|(_, bits)| bits), Some(13));
    // Two VCpus 8 KiB apart.
    assert_eq!(world.object(R_VCPU + 1).as_u64() - world.object(R_VCPU).as_u64(), 8192);
    assert_eq!(world.read(R_VCPU, GuestField::RIP), 0xfff0);
    assert_eq!(world.read(R_VCPU, GuestField::RFLAGS), 0x2);
    assert_eq!(world.read(R_VCPU, GuestField::CR0), 0x6000_0010);
    assert_eq!(world.read(R_VCPU, GuestField::DR7), 0x400);
    assert_eq!(world.read(R_VCPU, GuestField::segment(Segment::Cs, SegmentPart::Selector)), 0xf000);
    assert_eq!(world.read(R_VCPU, GuestField::segment(Segment::Cs, SegmentPart::Base)), 0xffff_0000);
    assert_eq!(world.read(R_VCPU, GuestField::segment(Segment::Ss, SegmentPart::Attributes)), 0x93);
    assert_eq!(world.read(R_VCPU, GuestField::segment(Segment::Tr, SegmentPart::Attributes)), 0x8b);
    let record = world.record(R_VCPU);
    assert_eq!((record.tcb, record.dirty), (None, ALL_DIRTY));
    assert_eq!(world.kernel.store.slot(space_slot(world.object(R_VCPU)).expect("slot")).cap, Cap::Null);
}

#[test]
fn field_numbers_are_the_abi() {
    assert_eq!(GuestField::from_word(0), Some(GuestField::RIP));
    assert_eq!(GuestField::from_word(47), Some(GuestField::segment(Segment::Tr, SegmentPart::Attributes)));
    assert_eq!(GuestField::from_word(48), Some(GuestField::STAR));
    assert_eq!(GuestField::from_word(57), Some(GuestField::CR2));
    assert_eq!(GuestField::from_word(58), Some(GuestField::EXCEPTION_INTERCEPTS));
    assert_eq!(GuestField::from_word(59), None);
    assert_eq!(GuestField::from_word(u64::MAX), None);
    assert_eq!(GuestField::from_word(256), None);
    assert_eq!(GuestField::segment(Segment::Es, SegmentPart::Selector).number(), 16);
    assert_eq!(GuestField::segment(Segment::Cs, SegmentPart::Base).number(), 21);
    for number in 16..48 {
        let field = GuestField::from_word(number).expect("a field");
        let (segment, part) = field.segment_part().expect("a segment field");
        assert_eq!(GuestField::segment(segment, part), field);
    }
    assert_eq!(GuestField::TSC_OFFSET.segment_part(), None);
    let msrs = [
        GuestField::STAR,
        GuestField::LSTAR,
        GuestField::CSTAR,
        GuestField::SFMASK,
        GuestField::KERNEL_GS_BASE,
        GuestField::SYSENTER_CS,
        GuestField::SYSENTER_ESP,
        GuestField::SYSENTER_EIP,
        GuestField::PAT,
        GuestField::CR2,
        GuestField::EXCEPTION_INTERCEPTS,
    ];
    for (number, field) in (48..).zip(msrs) {
        assert_eq!(field.number(), number);
        assert_eq!(field.segment_part(), None, "field {number} is no segment's");
    }
}

#[test]
fn fields_are_eager_lazy_or_held_and_exactly_one() {
    assert_eq!(EAGER_FIELDS & LAZY_FIELDS, 0);
    assert_eq!(EAGER_FIELDS & HELD_FIELDS, 0);
    assert_eq!(LAZY_FIELDS & HELD_FIELDS, 0);
    assert_eq!(EAGER_FIELDS | LAZY_FIELDS | HELD_FIELDS, ALL_DIRTY);
    assert_eq!(ALL_DIRTY.count_ones() as usize, GuestField::COUNT);
    // What the guest changes without an exit is read back (lazily).
    for field in [GuestField::KERNEL_GS_BASE, GuestField::CR2, GuestField::DR7] {
        assert_ne!(LAZY_FIELDS & 1 << field.number(), 0, "field {}", field.number());
    }
    // What only WRMSR (which exits) or the VMM changes is the record's.
    for field in [
        GuestField::TSC_OFFSET,
        GuestField::STAR,
        GuestField::LSTAR,
        GuestField::CSTAR,
        GuestField::SFMASK,
        GuestField::SYSENTER_CS,
        GuestField::SYSENTER_ESP,
        GuestField::SYSENTER_EIP,
        GuestField::PAT,
        GuestField::EXCEPTION_INTERCEPTS,
    ] {
        assert_ne!(HELD_FIELDS & 1 << field.number(), 0, "field {}", field.number());
    }
}

#[test]
fn the_reset_state_has_the_power_on_pat_and_no_syscall_msrs() {
    let state = GuestState::RESET;
    assert_eq!(state.get(GuestField::PAT), 0x0007_0406_0007_0406);
    for field in [
        GuestField::STAR,
        GuestField::LSTAR,
        GuestField::CSTAR,
        GuestField::SFMASK,
        GuestField::KERNEL_GS_BASE,
        GuestField::SYSENTER_CS,
        GuestField::SYSENTER_ESP,
        GuestField::SYSENTER_EIP,
        GuestField::CR2,
        GuestField::EXCEPTION_INTERCEPTS,
    ] {
        assert_eq!(state.get(field), 0, "field {}", field.number());
    }
}

#[test]
fn pat_entries_must_be_memory_types() {
    assert!(is_valid_pat(0x0007_0406_0007_0406));
    assert!(is_valid_pat(0));
    assert!(is_valid_pat(0x0706_0504_0100_0706));
    for entry in 0..8 {
        for bad in [2_u64, 3, 8, 0x10, 0xff] {
            assert!(!is_valid_pat(0x0007_0406_0007_0406 & !(0xff << (8 * entry)) | bad << (8 * entry)));
        }
    }
}

#[test]
fn write_state_checks_each_field() {
    let mut world = world();
    let invalid = SyscallError::InvalidArgument.code();
    let cases: &[(GuestField, u64, Option<u64>)] = &[
        // (field, value written, Some(value read back) or None: refused)
        (GuestField::RIP, 0x7c00, Some(0x7c00)),
        (GuestField::RIP, 0xffff_8000_0000_0000, Some(0xffff_8000_0000_0000)),
        (GuestField::RIP, 0x0000_8000_0000_0000, None),
        (GuestField::RSP, 0x1_0000_0000_0000, None),
        (GuestField::RFLAGS, 0x200, Some(0x202)),
        (GuestField::RFLAGS, 0x2_0000, Some(0x2_0002)),
        (GuestField::RFLAGS, 1 << 3, None),
        (GuestField::RFLAGS, 1 << 22, None),
        (GuestField::CR0, 0x8000_0031, Some(0x8000_0031)),
        (GuestField::CR0, 1 << 29, None),
        (GuestField::CR0, 0x6000_0010, Some(0x6000_0010)),
        (GuestField::CR0, 1 << 6, None),
        (GuestField::CR0, 1 << 32, None),
        (GuestField::CR3, 0x000f_ffff_ffff_f000, Some(0x000f_ffff_ffff_f000)),
        (GuestField::CR3, 1 << 52, None),
        (GuestField::CR4, 0x20, Some(0x20)),
        (GuestField::CR4, 1 << 13, None),
        (GuestField::CR4, 1 << 14, None),
        (GuestField::CR4, 1 << 12, None),
        (GuestField::EFER, 0xd01, Some(0xd01)),
        (GuestField::EFER, 1 << 12, None),
        (GuestField::DR7, 0, Some(0x400)),
        (GuestField::DR7, 1 << 32, None),
        (GuestField::INTERRUPTIBILITY, 3, Some(3)),
        (GuestField::INTERRUPTIBILITY, 4, None),
        (GuestField::ACTIVITY, 1, Some(1)),
        (GuestField::ACTIVITY, 2, None),
        // #GP with error code 0: vector 13, kind 3, error bit, valid.
        (GuestField::PENDING_EVENT, 0x8000_0b0d, Some(0x8000_0b0d)),
        (GuestField::PENDING_EVENT, 0, Some(0)),
        // #GP without its error code.
        (GuestField::PENDING_EVENT, 0x8000_030d, None),
        (GuestField::PENDING_EVENT, 0x0d, None),
        (GuestField::TSC_OFFSET, u64::MAX, Some(u64::MAX)),
        (GuestField::GDTR_BASE, 0xffff_ffff_ffff_f000, Some(0xffff_ffff_ffff_f000)),
        (GuestField::GDTR_BASE, 0x8000_0000_0000_0000, None),
        (GuestField::IDTR_LIMIT, 0xffff, Some(0xffff)),
        (GuestField::IDTR_LIMIT, 0x1_0000, None),
        (GuestField::segment(Segment::Cs, SegmentPart::Selector), 0x10, Some(0x10)),
        (GuestField::segment(Segment::Cs, SegmentPart::Selector), 0x1_0000, None),
        (GuestField::segment(Segment::Ds, SegmentPart::Base), 0xffff_ffff, Some(0xffff_ffff)),
        (GuestField::segment(Segment::Ds, SegmentPart::Base), 0x1_0000_0000, None),
        (GuestField::segment(Segment::Fs, SegmentPart::Base), 0x7fff_0000_0000, Some(0x7fff_0000_0000)),
        (GuestField::segment(Segment::Gs, SegmentPart::Base), 0x8000_0000_0000, None),
        (GuestField::segment(Segment::Ss, SegmentPart::Limit), 0xffff_ffff, Some(0xffff_ffff)),
        (GuestField::segment(Segment::Ss, SegmentPart::Limit), 0x1_0000_0000, None),
        (GuestField::segment(Segment::Tr, SegmentPart::Attributes), 0xa9b, Some(0xa9b)),
        (GuestField::segment(Segment::Tr, SegmentPart::Attributes), 0x1000, None),
        (GuestField::STAR, u64::MAX, Some(u64::MAX)),
        (GuestField::LSTAR, 0xffff_ffff_8100_0000, Some(0xffff_ffff_8100_0000)),
        (GuestField::LSTAR, 0x0000_8000_0000_0000, None),
        (GuestField::CSTAR, 0x7fff_ffff_f000, Some(0x7fff_ffff_f000)),
        (GuestField::CSTAR, 0x1234_5678_9abc_def0, None),
        (GuestField::SFMASK, 0x4_7700, Some(0x4_7700)),
        (GuestField::SFMASK, 1 << 32, None),
        (GuestField::KERNEL_GS_BASE, 0xffff_8880_0000_0000, Some(0xffff_8880_0000_0000)),
        (GuestField::KERNEL_GS_BASE, 0x8000_0000_0000_0000, None),
        (GuestField::SYSENTER_CS, 0xffff_ffff, Some(0xffff_ffff)),
        (GuestField::SYSENTER_CS, 1 << 32, None),
        (GuestField::SYSENTER_ESP, 0xffff_8000_0000_8000, Some(0xffff_8000_0000_8000)),
        (GuestField::SYSENTER_ESP, 0x0000_8000_0000_0000, None),
        (GuestField::SYSENTER_EIP, 0x1000, Some(0x1000)),
        (GuestField::SYSENTER_EIP, 0x0001_0000_0000_0000, None),
        (GuestField::PAT, 0x0706_0504_0100_0706, Some(0x0706_0504_0100_0706)),
        (GuestField::PAT, 0x0007_0406_0007_0402, None),
        (GuestField::PAT, 0x0807_0406_0007_0406, None),
        (GuestField::CR2, 0x8000_0000_0000_1234, Some(0x8000_0000_0000_1234)),
        // #DB and #BP only: never #MC (18), the NMI's vector (2), a #PF
        // (14) or #DE (0).
        (GuestField::EXCEPTION_INTERCEPTS, 1 << 1 | 1 << 3, Some(1 << 1 | 1 << 3)),
        (GuestField::EXCEPTION_INTERCEPTS, 1 << 3, Some(1 << 3)),
        (GuestField::EXCEPTION_INTERCEPTS, 1 << 18, None),
        (GuestField::EXCEPTION_INTERCEPTS, 1 << 2 | 1 << 3, None),
        (GuestField::EXCEPTION_INTERCEPTS, 1 << 14, None),
        (GuestField::EXCEPTION_INTERCEPTS, 1, None),
        (GuestField::EXCEPTION_INTERCEPTS, 1 << 35, None),
        (GuestField::EXCEPTION_INTERCEPTS, 0, Some(0)),
    ];
    for &(field, value, expected) in cases {
        let before = world.read(R_VCPU, field);
        let code = world.write(R_VCPU, field, value);
        match expected {
            Some(read_back) => {
                assert_eq!(code, 0, "field {} value {value:#x}", field.number());
                assert_eq!(world.read(R_VCPU, field), read_back, "field {}", field.number());
            }
            None => {
                assert_eq!(code, invalid, "field {} value {value:#x} was not refused", field.number());
                assert_eq!(world.read(R_VCPU, field), before, "a refused write changed field {}", field.number());
            }
        }
    }
    // The other VCpu kept its reset state.
    assert_eq!(world.kernel.store.vcpu(world.object(R_VCPU + 1)).state, GuestState::RESET);
}

#[test]
fn writes_mark_fields_dirty_for_the_backend() {
    let mut world = world();
    world.kernel.store.vcpu_mut(world.object(R_VCPU)).dirty = 0;
    assert_eq!(world.write(R_VCPU, GuestField::CR3, 0x1000), 0);
    assert_eq!(world.write(R_VCPU, GuestField::segment(Segment::Tr, SegmentPart::Base), 0x2000), 0);
    // A refused write marks nothing.
    assert_ne!(world.write(R_VCPU, GuestField::EFER, 1 << 12), 0);
    assert_eq!(world.record(R_VCPU).dirty, 1 << 4 | 1 << 45);
}

#[test]
fn malformed_vcpu_invocations_are_refused() {
    let mut world = world();
    assert_eq!(world.error(R_VCPU, label::VCPU_READ_STATE, &[], &[]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_VCPU, label::VCPU_READ_STATE, &[59], &[]), SyscallError::InvalidArgument);
    assert_eq!(world.error(R_VCPU, label::VCPU_WRITE_STATE, &[64, 0], &[]), SyscallError::InvalidArgument);
    assert_eq!(world.error(R_VCPU, label::VCPU_WRITE_STATE, &[0], &[]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_VCPU, label::VCPU_WRITE_STATE, &[u64::MAX, 0], &[]), SyscallError::InvalidArgument);
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_TCB, &[], &[]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_TCB, &[], &[R_VCPU + 1]), SyscallError::InvalidCapability);
    // An empty slot as the extra capability.
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_TCB, &[], &[200]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_SPACE, &[], &[]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_VCPU, 116, &[], &[]), SyscallError::IllegalOperation);
    assert_eq!(world.error(R_VCPU, tcb_label::TCB_RESUME, &[], &[]), SyscallError::IllegalOperation);
    // A TCB does not take VCpu labels.
    assert_eq!(world.error(R_TCB, label::VCPU_READ_STATE, &[0], &[]), SyscallError::IllegalOperation);
}

#[test]
fn set_tcb_binds_one_each_way() {
    let mut world = world();
    let (vcpu_a, vcpu_b) = (world.object(R_VCPU), world.object(R_VCPU + 1));
    let (tcb_a, tcb_b) = (world.thread(R_TCB), world.thread(R_TCB + 1));
    world.ok(R_VCPU, label::VCPU_SET_TCB, &[], &[R_TCB]);
    assert_eq!(world.kernel.store.vcpu(vcpu_a).tcb, Some(tcb_a));
    assert_eq!(world.kernel.store.tcb(tcb_a).vcpu, Some(vcpu_a));
    // Rebinding the VCpu to another thread unbinds the first.
    world.ok(R_VCPU, label::VCPU_SET_TCB, &[], &[R_TCB + 1]);
    assert_eq!(world.kernel.store.tcb(tcb_a).vcpu, None);
    assert_eq!(world.kernel.store.tcb(tcb_b).vcpu, Some(vcpu_a));
    // Binding another VCpu to that thread unbinds the first VCpu.
    world.ok(R_VCPU + 1, label::VCPU_SET_TCB, &[], &[R_TCB + 1]);
    assert_eq!(world.kernel.store.vcpu(vcpu_a).tcb, None);
    assert_eq!(world.kernel.store.vcpu(vcpu_b).tcb, Some(tcb_b));
    assert_eq!(world.kernel.store.tcb(tcb_b).vcpu, Some(vcpu_b));
    // Binding the same pair again changes nothing.
    world.ok(R_VCPU + 1, label::VCPU_SET_TCB, &[], &[R_TCB + 1]);
    assert_eq!(world.kernel.store.tcb(tcb_b).vcpu, Some(vcpu_b));
    assert_eq!(world.kernel.store.vcpu(vcpu_b).tcb, Some(tcb_b));
}

#[test]
fn deleting_either_side_unbinds_the_other() {
    let mut world = world();
    let vcpu = world.object(R_VCPU);
    let tcb = world.thread(R_TCB);
    world.ok(R_VCPU, label::VCPU_SET_TCB, &[], &[R_TCB]);
    // A copy's deletion is not the last: nothing changes.
    world.copy(R_COPY, R_VCPU, Rights::ALL);
    world.delete(R_COPY);
    assert_eq!(world.kernel.store.tcb(tcb).vcpu, Some(vcpu));
    assert!(!world.platform.saw(&PlatformEvent::VCpuDeleted { vcpu }));
    world.delete(R_VCPU);
    assert_eq!(world.kernel.store.tcb(tcb).vcpu, None);
    assert!(world.platform.saw(&PlatformEvent::VCpuDeleted { vcpu }));

    let vcpu = world.object(R_VCPU + 1);
    world.ok(R_VCPU + 1, label::VCPU_SET_TCB, &[], &[R_TCB]);
    world.delete(R_TCB);
    assert_eq!(world.kernel.store.vcpu(vcpu).tcb, None);
}

#[test]
fn set_space_takes_a_guest_space_with_an_asid() {
    let mut world = world();
    let vcpu = world.object(R_VCPU);
    let slot = space_slot(vcpu).expect("slot");
    // Unassigned GuestSpace, a PML4, a VCpu: refused.
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_GUEST + 1]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_PML4]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_VCPU]), SyscallError::InvalidCapability);
    assert_eq!(world.kernel.store.slot(slot).cap, Cap::Null);
    world.ok(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_GUEST]);
    assert_eq!(world.kernel.store.slot(slot).cap, world.cap(R_GUEST), "a copy, with its ASID");
    // Setting it again replaces the copy (one copy in the slot).
    world.ok(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_GUEST]);
    assert_eq!(world.kernel.store.slot(slot).cap, world.cap(R_GUEST));
    // A second GuestSpace replaces the first.
    world.ok(R_POOL, vspace_label::ASID_POOL_ASSIGN, &[], &[R_GUEST + 1]);
    world.ok(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_GUEST + 1]);
    assert_eq!(world.kernel.store.slot(slot).cap, world.cap(R_GUEST + 1));
}

#[test]
fn a_vcpu_holding_the_last_guest_space_capability_frees_its_asid_when_deleted() {
    let mut world = world();
    let guest = world.object(R_GUEST);
    let Cap::PageTable { mapping: Some(MappedAt { asid, .. }), .. } = world.cap(R_GUEST) else { panic!("assigned") };
    world.ok(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_GUEST]);
    // The VCpu's copy keeps the GuestSpace (and its ASID) alive.
    world.delete(R_GUEST);
    assert_eq!(world.kernel.asids.vspace(&world.kernel.store, asid), Some(guest));
    world.delete(R_VCPU);
    assert_eq!(world.kernel.asids.vspace(&world.kernel.store, asid), None);
    assert!(world.platform.saw(&PlatformEvent::VSpaceDeleted { vspace: guest }));
}

#[test]
fn bind_notification_needs_read_and_binds_one_each_way() {
    let mut world = world();
    let tcb = world.thread(R_TCB);
    let notification = world.object(R_NOTIFICATION);
    world.copy(R_COPY, R_NOTIFICATION, Rights::WRITE);
    let bind = tcb_label::TCB_BIND_NOTIFICATION;
    let unbind = tcb_label::TCB_UNBIND_NOTIFICATION;
    assert_eq!(world.error(R_TCB, bind, &[], &[R_COPY]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_TCB, bind, &[], &[R_VCPU]), SyscallError::InvalidCapability);
    assert_eq!(world.error(R_TCB, bind, &[], &[]), SyscallError::TruncatedMessage);
    assert_eq!(world.error(R_TCB, unbind, &[], &[]), SyscallError::IllegalOperation);
    world.ok(R_TCB, bind, &[], &[R_NOTIFICATION]);
    assert_eq!(world.kernel.store.tcb(tcb).bound_notification, Some(notification));
    assert_eq!(world.kernel.store.notification(notification).bound_tcb, Some(tcb));
    // One each way: neither the thread nor the notification binds twice.
    assert_eq!(world.error(R_TCB, bind, &[], &[R_NOTIFICATION + 1]), SyscallError::IllegalOperation);
    assert_eq!(world.error(R_TCB + 1, bind, &[], &[R_NOTIFICATION]), SyscallError::IllegalOperation);
    world.ok(R_TCB, unbind, &[], &[]);
    assert_eq!(world.kernel.store.tcb(tcb).bound_notification, None);
    assert_eq!(world.kernel.store.notification(notification).bound_tcb, None);
    world.ok(R_TCB + 1, bind, &[], &[R_NOTIFICATION]);
}

#[test]
fn deleting_a_bound_notification_or_thread_unbinds_the_other() {
    let mut world = world();
    let tcb = world.thread(R_TCB);
    let second = world.object(R_NOTIFICATION + 1);
    world.ok(R_TCB, tcb_label::TCB_BIND_NOTIFICATION, &[], &[R_NOTIFICATION]);
    world.delete(R_NOTIFICATION);
    assert_eq!(world.kernel.store.tcb(tcb).bound_notification, None);
    world.ok(R_TCB + 1, tcb_label::TCB_BIND_NOTIFICATION, &[], &[R_NOTIFICATION + 1]);
    world.delete(R_TCB + 1);
    assert_eq!(world.kernel.store.notification(second).bound_tcb, None);
    // The freed notification binds again.
    world.ok(R_TCB, tcb_label::TCB_BIND_NOTIFICATION, &[], &[R_NOTIFICATION + 1]);
    assert_eq!(world.kernel.store.notification(second).bound_tcb, Some(tcb));
}

proptest! {
    /// Any field number and value: an error code or success, never a
    /// panic; an accepted value reads back as `check` normalised it, and a
    /// refused one leaves the state as it was.
    #[test]
    fn write_state_accepts_exactly_what_check_accepts(field in 0_u64..64, value in any::<u64>(), raw in any::<bool>()) {
        let mut world = world();
        // Half the time a value with few bits set, where most fields accept.
        let value = if raw { value } else { value & 0xffff };
        let before = world.record(R_VCPU).state;
        let code = world.call(R_VCPU, label::VCPU_WRITE_STATE, &[field, value], &[]).0;
        let after = world.record(R_VCPU).state;
        match GuestField::from_word(field).map(|field| (field, check(field, value))) {
            Some((field, Ok(stored))) => {
                prop_assert_eq!(code, 0);
                prop_assert_eq!(after.get(field), stored);
                prop_assert_eq!(check(field, stored), Ok(stored), "a stored value passes the check again");
            }
            _ => {
                prop_assert_eq!(code, SyscallError::InvalidArgument.code());
                prop_assert_eq!(after, before);
            }
        }
    }
}

#[test]
fn every_reset_value_passes_its_own_check() {
    for number in 0..GuestField::COUNT as u64 {
        let field = GuestField::from_word(number).expect("a field");
        let value = GuestState::RESET.get(field);
        assert_eq!(check(field, value), Ok(value), "field {number}");
    }
}

/// The root thread's TCB capability.
const R_SELF_TCB: u64 = 40;

/// A VMEnter message: registers 1..=16 (RSP 0x8000), RIP, RFLAGS and
/// the event; no deadline, no control.
fn enter_message(rip: u64, rflags: u64, event: u64) -> Vec<u64> {
    let mut words: Vec<u64> = (1..=16).collect();
    words[enter::RSP] = 0x8000;
    words.extend([rip, rflags, event, 0, 0]);
    words
}

/// [`enter_message`] with a deadline and control bits.
fn controlled_message(deadline: u64, controls: u64) -> Vec<u64> {
    let mut words = enter_message(0x7c00, 0x202, 0);
    words[enter::DEADLINE] = deadline;
    words[enter::CONTROLS] = controls;
    words
}

impl World {
    fn vm_enter(&mut self, words: &[u64]) -> (u64, Vec<u64>, u64) {
        let request =
            Request { number: crate::syscall::number::VM_ENTER, cptr: 0, label: 0, words, extra: &[], reply: 0 };
        let (label, _) = issue(&mut self.kernel, &mut self.platform, root_thread(), &request);
        let tcb = self.kernel.store.tcb(root_thread());
        (label, tcb.message().to_vec(), tcb.badge)
    }
}

/// [`world`] with its first VCpu bound to the root thread and running in
/// the assigned GuestSpace, and the first notification bound to the root.
fn world_with_root_tcb() -> World {
    let mut world = world();
    world.ok(R_VCPU, label::VCPU_SET_TCB, &[], &[R_SELF_TCB]);
    world.ok(R_VCPU, label::VCPU_SET_SPACE, &[], &[R_GUEST]);
    world.ok(R_SELF_TCB, tcb_label::TCB_BIND_NOTIFICATION, &[], &[R_NOTIFICATION]);
    world
}

#[test]
fn vm_enter_runs_the_guest_and_replies_with_its_exit() {
    let mut world = world_with_root_tcb();
    let vcpu = world.object(R_VCPU);
    let message = enter_message(0x7c00, 0x202, 0);
    let (label, words, _) = world.vm_enter(&message);
    assert_eq!(label, enter::LABEL_EXIT);
    assert_eq!(words.len(), enter::EXIT_WORDS);
    assert_eq!(words[..enter::STATE_WORDS], message[..enter::STATE_WORDS], "the registers as the guest left them");
    assert_eq!(words[enter::EXIT_KIND], ExitKind::Hlt as u64);
    assert_eq!(words[enter::INSTRUCTION_LENGTH], 1);
    assert_eq!(words[enter::CONTROL], 0x6000_0010, "CR0 as at RESET");
    assert!(world.platform.saw(&PlatformEvent::GuestRun { vcpu }));
    let record = world.record(R_VCPU);
    assert_eq!((record.state.get(GuestField::RIP), record.state.get(GuestField::RSP)), (0x7c00, 0x8000));
    assert_eq!(record.dirty, 0, "the backend loaded every field");
    assert!(!record.resume);
}

#[test]
fn vm_enter_refuses_what_it_cannot_run() {
    let mut world = world_with_root_tcb();
    let good = enter_message(0x7c00, 0x202, 0);
    // A short message, a non-canonical RIP or RSP, reserved RFLAGS, a
    // malformed event: nothing runs, nothing changes.
    let before = world.record(R_VCPU);
    assert_eq!(world.vm_enter(&good[..18]).0, SyscallError::TruncatedMessage.code());
    // The 19-word message of before the deadline and the controls.
    assert_eq!(world.vm_enter(&good[..enter::STATE_WORDS]).0, SyscallError::TruncatedMessage.code());
    assert_eq!(world.vm_enter(&good[..enter::MESSAGE_WORDS - 1]).0, SyscallError::TruncatedMessage.code());
    for (index, value) in
        [(enter::RIP, 1 << 47), (enter::RSP, 1 << 47), (enter::RFLAGS, 1 << 3), (enter::EVENT, 0x8000_030d)]
    {
        let mut bad = good.clone();
        bad[index] = value;
        assert_eq!(world.vm_enter(&bad).0, SyscallError::InvalidArgument.code(), "word {index}");
    }
    assert_eq!(world.record(R_VCPU), before);
    assert!(!world.platform.events.iter().any(|event| matches!(event, PlatformEvent::GuestRun { .. })));
    // No backend.
    world.kernel.guest_format = None;
    assert_eq!(world.vm_enter(&good).0, SyscallError::IllegalOperation.code());
    world.kernel.guest_format = Some(GuestFormat::Npt);
    // The GuestSpace's last capability elsewhere goes: the VCpu's copy
    // keeps it alive; its ASID pool going takes the ASID.
    world.delete(R_POOL);
    assert_eq!(world.vm_enter(&good).0, SyscallError::InvalidCapability.code());
    // No VCpu bound.
    world.delete(R_VCPU);
    assert_eq!(world.vm_enter(&good).0, SyscallError::IllegalOperation.code());
}

#[test]
fn a_pending_notification_ends_vm_enter_before_the_guest_runs() {
    let mut world = world_with_root_tcb();
    let signal = Request {
        number: crate::syscall::number::SIGNAL,
        cptr: R_NOTIFICATION,
        label: 0,
        words: &[],
        extra: &[],
        reply: 0,
    };
    issue(&mut world.kernel, &mut world.platform, root_thread(), &signal);
    let message = enter_message(0x1000, 0x2, 0);
    let (label, words, badge) = world.vm_enter(&message);
    assert_eq!(label, enter::LABEL_NOTIFICATION);
    assert_eq!(words, message[..enter::STATE_WORDS], "the registers come back, loaded");
    assert_eq!(badge, 0, "the notification capability's badge");
    assert!(!world.platform.events.iter().any(|event| matches!(event, PlatformEvent::GuestRun { .. })));
    // The signal was taken: the next VMEnter runs the guest.
    assert_eq!(world.vm_enter(&message).0, enter::LABEL_EXIT);
}

#[test]
fn a_host_interrupt_restarts_vm_enter_from_the_record() {
    let mut world = world_with_root_tcb();
    world.platform.host_interrupts = 1;
    let message = enter_message(0x7c00, 0x202, 0);
    let request =
        Request { number: crate::syscall::number::VM_ENTER, cptr: 0, label: 0, words: &message, extra: &[], reply: 0 };
    issue(&mut world.kernel, &mut world.platform, root_thread(), &request);
    assert!(world.record(R_VCPU).resume);
    assert_eq!(world.kernel.store.tcb(root_thread()).resumption, crate::ipc::Resumption::Again);
    world.kernel.store.tcb_mut(root_thread()).resumption = crate::ipc::Resumption::Results;
    // The restart's message still says RIP 0x7c00; the guest had moved on.
    world.kernel.store.vcpu_mut(world.object(R_VCPU)).state.0[usize::from(GuestField::RIP.number())] = 0x7c05;
    let (label, words, _) = world.vm_enter(&message);
    assert_eq!(label, enter::LABEL_EXIT);
    assert_eq!(words[enter::RIP], 0x7c05, "entered from the record, not the message");
    assert!(!world.record(R_VCPU).resume);
    // Rebinding forgets an interrupted run.
    world.platform.host_interrupts = 1;
    issue(&mut world.kernel, &mut world.platform, root_thread(), &request);
    world.ok(R_VCPU, label::VCPU_SET_TCB, &[], &[R_SELF_TCB]);
    assert!(!world.record(R_VCPU).resume);
}

#[test]
fn the_message_lengths_are_the_word_counts() {
    assert_eq!(usize::from(enter::MESSAGE_LENGTH), enter::MESSAGE_WORDS);
    assert_eq!(usize::from(enter::STATE_LENGTH), enter::STATE_WORDS);
    assert_eq!(usize::from(enter::EXIT_LENGTH), enter::EXIT_WORDS);
    // The deadline and the controls follow the state; a reply's exit
    // words take their places.
    assert_eq!((enter::DEADLINE, enter::CONTROLS), (enter::STATE_WORDS, enter::STATE_WORDS + 1));
    assert_eq!(enter::EXIT_KIND, enter::STATE_WORDS);
}

#[test]
fn entry_controls_decode_their_two_words() {
    assert_eq!(EnterControls::from_words(0, 0), Ok(EnterControls::NONE));
    let decoded = EnterControls::from_words(1234, enter::control::WAIT | enter::control::INTERRUPT_WINDOW);
    assert_eq!(decoded, Ok(EnterControls { deadline: 1234, wait: true, interrupt_window: true }));
    assert_eq!(decoded.map(EnterControls::deadline), Ok(Some(1234)));
    assert_eq!(EnterControls::NONE.deadline(), None, "0 is no deadline");
    assert_eq!(EnterControls::from_words(0, 1 << 2), Err(SyscallError::InvalidArgument));
    assert_eq!(EnterControls::from_words(5, 1 << 63), Err(SyscallError::InvalidArgument));
    let deadline = EnterControls { deadline: 100, ..EnterControls::NONE };
    assert!(!deadline.deadline_passed(99));
    assert!(deadline.deadline_passed(100), "a deadline has passed at its own tick");
    assert!(!EnterControls::NONE.deadline_passed(u64::MAX), "no deadline never passes");
}

proptest! {
    /// Any two words: the controls decode exactly when no undefined bit
    /// is set, and then give their words back.
    #[test]
    fn entry_controls_round_trip_or_are_refused(deadline in any::<u64>(), controls in any::<u64>()) {
        match EnterControls::from_words(deadline, controls) {
            Ok(decoded) => {
                prop_assert_eq!(controls & !enter::control::ALL, 0);
                prop_assert_eq!(decoded.to_words(), [deadline, controls]);
            }
            Err(error) => {
                prop_assert_eq!(error, SyscallError::InvalidArgument);
                prop_assert_ne!(controls & !enter::control::ALL, 0);
            }
        }
    }
}

/// The guest runs recorded so far.
fn guest_runs(world: &World) -> usize {
    world.platform.events.iter().filter(|event| matches!(event, PlatformEvent::GuestRun { .. })).count()
}

#[test]
fn undefined_control_bits_and_a_wait_that_could_never_end_are_refused() {
    let mut world = world_with_root_tcb();
    let before = world.record(R_VCPU);
    for controls in [1 << 2, 1 << 31, u64::MAX] {
        let (label, _, _) = world.vm_enter(&controlled_message(0, controls));
        assert_eq!(label, SyscallError::InvalidArgument.code(), "controls {controls:#x}");
    }
    // WAIT with a notification bound or a deadline is fine; with neither
    // it would sleep for ever.
    world.ok(R_SELF_TCB, tcb_label::TCB_UNBIND_NOTIFICATION, &[], &[]);
    let (label, _, _) = world.vm_enter(&controlled_message(0, enter::control::WAIT));
    assert_eq!(label, SyscallError::IllegalOperation.code());
    assert_eq!(world.record(R_VCPU), before, "nothing changed");
    assert_eq!(guest_runs(&world), 0);
    assert_eq!(world.kernel.store.tcb(root_thread()).state, ThreadState::Runnable);
}

#[test]
fn the_run_has_the_deadline_and_the_interrupt_window() {
    let mut world = world_with_root_tcb();
    world.kernel.now = 10;
    let message = controlled_message(500, enter::control::INTERRUPT_WINDOW);
    assert_eq!(world.vm_enter(&message).0, enter::LABEL_EXIT);
    let (_, controls) = world.platform.last_entry.expect("the guest ran");
    assert_eq!((controls.deadline, controls.interrupt_window), (500, true));
    assert_eq!(world.vm_enter(&enter_message(0x7c00, 0x202, 0)).0, enter::LABEL_EXIT);
    let (_, controls) = world.platform.last_entry.expect("the guest ran");
    assert_eq!((controls.deadline, controls.interrupt_window), (0, false), "the window was for one run");
}

#[test]
fn a_deadline_already_past_returns_at_once_without_running_the_guest() {
    let mut world = world_with_root_tcb();
    world.kernel.now = 1_000;
    // An event to inject: the guest never ran to take it.
    let mut message = controlled_message(1_000, 0);
    message[enter::EVENT] = 0x8000_0020;
    let (label, words, badge) = world.vm_enter(&message);
    assert_eq!((label, badge), (enter::LABEL_EXIT, 0));
    assert_eq!(words.len(), enter::EXIT_WORDS);
    assert_eq!(words[enter::EXIT_KIND], ExitKind::Deadline as u64);
    assert_eq!(words[enter::EXIT_REASON..=enter::INSTRUCTION_LENGTH], [0, 0, 0, 0]);
    assert_eq!(words[..enter::STATE_WORDS], message[..enter::STATE_WORDS], "the event is still pending");
    assert_eq!(words[enter::CONTROL], 0x6000_0010, "CR0 as at RESET");
    assert_eq!(guest_runs(&world), 0);
    // A deadline still ahead lets the guest run.
    assert_eq!(world.vm_enter(&controlled_message(1_001, 0)).2, 0);
    assert_eq!(guest_runs(&world), 1);
    // A pending signal wins over a past deadline.
    let notification = world.object(R_NOTIFICATION);
    crate::ipc::signal(&mut world.kernel.store, &mut world.kernel.scheduler, notification, 0x40);
    let (label, _, badge) = world.vm_enter(&controlled_message(5, 0));
    assert_eq!((label, badge), (enter::LABEL_NOTIFICATION, 0x40));
}

#[test]
fn a_host_interrupt_after_the_deadline_ends_the_call_with_the_deadline() {
    let mut world = world_with_root_tcb();
    world.kernel.now = 100;
    // The interrupt arrives before the deadline: the call runs again.
    (world.platform.host_interrupts, world.platform.clock) = (1, 150);
    let message = controlled_message(200, 0);
    let request =
        Request { number: crate::syscall::number::VM_ENTER, cptr: 0, label: 0, words: &message, extra: &[], reply: 0 };
    issue(&mut world.kernel, &mut world.platform, root_thread(), &request);
    assert!(world.record(R_VCPU).resume);
    assert_eq!(world.record(R_VCPU).controls.deadline, 200, "the restart keeps the deadline");
    world.kernel.store.tcb_mut(root_thread()).resumption = crate::ipc::Resumption::Results;
    // The restart's run: the interrupt comes at the deadline.
    (world.platform.host_interrupts, world.platform.clock) = (1, 200);
    let (label, words, _) = world.vm_enter(&enter_message(0x1, 0x2, 0));
    assert_eq!(label, enter::LABEL_EXIT);
    assert_eq!(words[enter::EXIT_KIND], ExitKind::Deadline as u64);
    assert_eq!(words[enter::RIP], 0x7c00, "the record's registers, not the restart's message");
    assert!(!world.record(R_VCPU).resume);
    // A restart that finds the deadline past does not run the guest.
    (world.platform.host_interrupts, world.platform.clock) = (1, 150);
    issue(&mut world.kernel, &mut world.platform, root_thread(), &request);
    world.kernel.store.tcb_mut(root_thread()).resumption = crate::ipc::Resumption::Results;
    let runs = guest_runs(&world);
    world.kernel.now = 250;
    let (_, words, _) = world.vm_enter(&message);
    assert_eq!(words[enter::EXIT_KIND], ExitKind::Deadline as u64);
    assert_eq!(guest_runs(&world), runs);
}

/// Where the root thread waits: its state and wake-up time.
fn root_wait(world: &World) -> (ThreadState, Option<u64>) {
    let tcb = world.kernel.store.tcb(root_thread());
    (tcb.state, tcb.wake_at())
}

/// Advances the kernel's time to `now`, as a timer interrupt would.
fn tick(world: &mut World, now: u64) {
    let kernel = &mut world.kernel;
    kernel.now = now;
    kernel.scheduler.account(&mut kernel.store, now);
    kernel.scheduler.release_due(&mut kernel.store, now);
    kernel.scheduler.schedule(&mut kernel.store);
}

#[test]
fn wait_sleeps_until_the_deadline_and_returns_it() {
    let mut world = world_with_root_tcb();
    let notification = world.object(R_NOTIFICATION);
    world.kernel.now = 1_000;
    let message = controlled_message(5_000, enter::control::WAIT);
    let (label, _, _) = world.vm_enter(&message);
    assert_eq!(label, enter::LABEL_NOTIFICATION, "the signal's reply, prepared");
    assert_eq!(root_wait(&world), (ThreadState::BlockedOnNotification { notification }, Some(5_000)));
    assert_eq!(world.kernel.store.notification(notification).waiters.head, Some(root_thread()));
    assert_eq!(world.kernel.scheduler.current(), None, "the thread left the CPU");
    assert_eq!(guest_runs(&world), 0, "a halted vCPU does not run");
    assert_eq!(world.kernel.scheduler.timer_deadline(&world.kernel.store, 1_000), Some(5_000));
    tick(&mut world, 4_999);
    assert_eq!(root_wait(&world).1, Some(5_000), "still asleep");
    tick(&mut world, 5_000);
    assert_eq!(root_wait(&world), (ThreadState::Runnable, None));
    assert_eq!(world.kernel.scheduler.current(), Some(root_thread()));
    assert!(world.kernel.store.notification(notification).waiters.is_empty(), "out of the notification's queue");
    let tcb = world.kernel.store.tcb(root_thread());
    assert_eq!((tcb.info.label, usize::from(tcb.info.length), tcb.badge), (enter::LABEL_EXIT, enter::EXIT_WORDS, 0));
    let words = tcb.message();
    assert_eq!(words[enter::EXIT_KIND], ExitKind::Deadline as u64);
    assert_eq!(words[..enter::STATE_WORDS], message[..enter::STATE_WORDS]);
    assert_eq!(words[enter::CONTROL], 0x6000_0010);
    assert!(world.kernel.scheduler.sleep_queue().is_empty());
}

#[test]
fn a_signal_ends_a_wait_before_its_deadline() {
    let mut world = world_with_root_tcb();
    let notification = world.object(R_NOTIFICATION);
    world.kernel.now = 1_000;
    let message = controlled_message(5_000, enter::control::WAIT);
    world.vm_enter(&message);
    tick(&mut world, 2_000);
    crate::ipc::signal(&mut world.kernel.store, &mut world.kernel.scheduler, notification, 0x9);
    world.kernel.scheduler.schedule(&mut world.kernel.store);
    assert_eq!(root_wait(&world), (ThreadState::Runnable, None), "out of the sleep queue too");
    assert!(world.kernel.scheduler.sleep_queue().is_empty());
    let tcb = world.kernel.store.tcb(root_thread());
    assert_eq!((tcb.info.label, usize::from(tcb.info.length), tcb.badge), (enter::LABEL_NOTIFICATION, 19, 0x9));
    assert_eq!(tcb.message(), &message[..enter::STATE_WORDS]);
    // The deadline passing later changes nothing.
    tick(&mut world, 6_000);
    assert_eq!(world.kernel.store.tcb(root_thread()).info.label, enter::LABEL_NOTIFICATION);
    // Without a deadline the wait is the notification's alone.
    world.vm_enter(&controlled_message(0, enter::control::WAIT));
    assert_eq!(root_wait(&world), (ThreadState::BlockedOnNotification { notification }, None));
    tick(&mut world, u64::MAX);
    assert_eq!(root_wait(&world).0, ThreadState::BlockedOnNotification { notification });
    // A signal already pending ends a WAIT at once.
    crate::ipc::signal(&mut world.kernel.store, &mut world.kernel.scheduler, notification, 0x2);
    world.kernel.scheduler.schedule(&mut world.kernel.store);
    crate::ipc::signal(&mut world.kernel.store, &mut world.kernel.scheduler, notification, 0x4);
    let (label, _, badge) = world.vm_enter(&controlled_message(0, enter::control::WAIT));
    assert_eq!((label, badge), (enter::LABEL_NOTIFICATION, 0x4));
    assert_eq!(root_wait(&world), (ThreadState::Runnable, None));
}

#[test]
fn a_wait_without_a_notification_sleeps_until_its_deadline() {
    let mut world = world_with_root_tcb();
    world.ok(R_SELF_TCB, tcb_label::TCB_UNBIND_NOTIFICATION, &[], &[]);
    world.kernel.now = 10;
    world.vm_enter(&controlled_message(300, enter::control::WAIT));
    assert_eq!(root_wait(&world), (ThreadState::Sleeping, Some(300)));
    tick(&mut world, 300);
    let tcb = world.kernel.store.tcb(root_thread());
    assert_eq!(
        (tcb.state, tcb.info.label, tcb.message()[enter::EXIT_KIND]),
        (ThreadState::Runnable, enter::LABEL_EXIT, ExitKind::Deadline as u64)
    );
    // A deadline already past never sleeps.
    let (label, words, _) = world.vm_enter(&controlled_message(300, enter::control::WAIT));
    assert_eq!((label, words[enter::EXIT_KIND]), (enter::LABEL_EXIT, ExitKind::Deadline as u64));
    assert_eq!(root_wait(&world), (ThreadState::Runnable, None));
}

#[test]
fn the_sleep_queue_wakes_threads_in_deadline_order() {
    // Three threads asleep with deadlines out of order (two equal): they
    // wake earliest first, equals in the order they slept, and taking one
    // out of the middle leaves the queue linked.
    let mut world = world();
    let threads = [world.thread(R_TCB), world.thread(R_TCB + 1), root_thread()];
    let kernel = &mut world.kernel;
    for (thread, wake_at) in threads.into_iter().zip([300, 100, 300]) {
        kernel.store.tcb_mut(thread).state = ThreadState::Sleeping;
        kernel.scheduler.sleep_until(&mut kernel.store, thread, wake_at);
    }
    let order = |kernel: &Kernel<MapStore>| {
        let mut order = Vec::new();
        let mut at = kernel.scheduler.sleep_queue().head;
        while let Some(thread) = at {
            order.push(thread);
            at = kernel.store.tcb(thread).sleep_links().next;
        }
        assert_eq!(order.last().copied(), kernel.scheduler.sleep_queue().tail);
        order
    };
    assert_eq!(order(kernel), [threads[1], threads[0], threads[2]]);
    kernel.scheduler.cancel_sleep(&mut kernel.store, threads[0]);
    assert_eq!(order(kernel), [threads[1], threads[2]]);
    assert_eq!(kernel.store.tcb(threads[0]).sleep_links(), crate::ipc::QueueLinks::default());
    kernel.scheduler.release_due(&mut kernel.store, 299);
    assert_eq!(order(kernel), [threads[2]]);
    assert_eq!(kernel.store.tcb(threads[1]).state, ThreadState::Runnable);
    assert_eq!(kernel.store.tcb(threads[0]).state, ThreadState::Sleeping, "cancelled: never woken");
}

#[test]
fn stopping_or_deleting_a_sleeping_thread_takes_it_out_of_the_sleep_queue() {
    let mut world = world_with_root_tcb();
    let thread = world.thread(R_TCB);
    let notification = world.object(R_NOTIFICATION + 1);
    let kernel = &mut world.kernel;
    // Another thread waits on a notification and sleeps.
    kernel.store.tcb_mut(thread).state = ThreadState::BlockedOnNotification { notification };
    let mut waiters = kernel.store.notification(notification).waiters;
    waiters.push_back(&mut kernel.store, thread);
    kernel.store.notification_mut(notification).waiters = waiters;
    kernel.scheduler.sleep_until(&mut kernel.store, thread, 700);
    // TCB::Suspend.
    world.ok(R_TCB, tcb_label::TCB_SUSPEND, &[], &[]);
    assert_eq!(world.kernel.store.tcb(thread).state, ThreadState::Inactive);
    assert_eq!(world.kernel.store.tcb(thread).resumption, crate::ipc::Resumption::Restart);
    assert!(world.kernel.scheduler.sleep_queue().is_empty());
    assert!(world.kernel.store.notification(notification).waiters.is_empty());
    // Deleting the last capability to a sleeping TCB.
    let kernel = &mut world.kernel;
    kernel.store.tcb_mut(thread).state = ThreadState::Sleeping;
    kernel.scheduler.sleep_until(&mut kernel.store, thread, 800);
    world.delete(R_TCB);
    assert!(world.kernel.scheduler.sleep_queue().is_empty());
    assert_eq!(world.kernel.store.tcb(thread).sleep_links(), crate::ipc::QueueLinks::default());
    // Deleting the notification a WAIT sleeps on wakes it (with an error,
    // which the root's own Delete call then replaces with its result), out
    // of the sleep queue.
    world.kernel.now = 0;
    world.vm_enter(&controlled_message(900, enter::control::WAIT));
    assert_eq!(root_wait(&world).1, Some(900));
    world.delete(R_NOTIFICATION);
    assert_eq!(root_wait(&world), (ThreadState::Runnable, None));
    assert!(world.kernel.scheduler.sleep_queue().is_empty());
}

#[test]
fn a_sleeping_thread_uses_no_budget() {
    let mut world = world_with_root_tcb();
    let context = PhysAddr::new(0x70_0000);
    let kernel = &mut world.kernel;
    *kernel.store.sched_context_mut(context) =
        crate::sched::SchedContext { bound: Some(root_thread()), ..crate::sched::SchedContext::new(1_000, 100_000, 0) };
    kernel.store.tcb_mut(root_thread()).sched_context = Some(context);
    tick(&mut world, 200);
    assert_eq!(world.kernel.store.sched_context(context).remaining, 800, "running costs budget");
    world.vm_enter(&controlled_message(50_000, enter::control::WAIT));
    for now in [10_000, 30_000, 49_999] {
        tick(&mut world, now);
        assert_eq!(world.kernel.store.sched_context(context).remaining, 800, "asleep at {now}");
    }
    tick(&mut world, 50_000);
    assert_eq!(world.kernel.scheduler.current(), Some(root_thread()));
    tick(&mut world, 50_100);
    assert_eq!(world.kernel.store.sched_context(context).remaining, 700, "running again costs budget");
}

#[test]
fn stale_fields_are_fetched_before_a_read_or_a_write() {
    let mut world = world();
    let vcpu = world.object(R_VCPU);
    // As after an exit: the lazy fields are the hardware's.
    world.kernel.store.vcpu_mut(vcpu).stale = LAZY_FIELDS;
    // An eager field reads without a fetch.
    world.read(R_VCPU, GuestField::RIP);
    assert_eq!(world.record(R_VCPU).stale, LAZY_FIELDS);
    // So do CS's base and attributes, which every exit reply carries.
    world.read(R_VCPU, GuestField::segment(Segment::Cs, SegmentPart::Attributes));
    assert_eq!(world.record(R_VCPU).stale, LAZY_FIELDS);
    // And the fields only the VMM changes (WRMSR always exits).
    world.read(R_VCPU, GuestField::LSTAR);
    world.read(R_VCPU, GuestField::PAT);
    assert_eq!(world.record(R_VCPU).stale, LAZY_FIELDS);
    // A lazy one fetches them all.
    world.read(R_VCPU, GuestField::segment(Segment::Cs, SegmentPart::Selector));
    assert_eq!(world.record(R_VCPU).stale, 0);
    // KERNEL_GS_BASE (SWAPGS) and CR2 (page faults) are lazy.
    world.kernel.store.vcpu_mut(vcpu).stale = LAZY_FIELDS;
    world.read(R_VCPU, GuestField::KERNEL_GS_BASE);
    assert_eq!(world.record(R_VCPU).stale, 0);
    world.kernel.store.vcpu_mut(vcpu).stale = LAZY_FIELDS;
    world.read(R_VCPU, GuestField::CR2);
    assert_eq!(world.record(R_VCPU).stale, 0);
    // A write fetches first too (the backend loads the lazy fields as a
    // group), so that no field is both dirty and stale.
    world.kernel.store.vcpu_mut(vcpu).stale = LAZY_FIELDS;
    assert_eq!(world.write(R_VCPU, GuestField::DR7, 0), 0);
    let record = world.record(R_VCPU);
    assert_eq!((record.stale, record.dirty & (1 << GuestField::DR7.number())), (0, 1 << 7));
}
