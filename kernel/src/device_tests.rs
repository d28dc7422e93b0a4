//! I/O ports and interrupt lines through the system-call layer, on the
//! host: a root task holding IrqControl and IoPortControl issues ranges
//! and handlers, reads and writes ports (recorded by
//! [`RecordingPlatform`]), binds notifications and takes interrupts;
//! every error path of every invocation is refused with its code; and a
//! property test checks that no sequence of Issue, Copy, Delete, Revoke,
//! In and Out ever lets two ranges own one port.

use proptest::prelude::*;

use crate::cap::invocation::label as cnode_label;
use crate::cap::object::ObjectKind;
use crate::cap::{Cap, Rights, SlotStore};
use crate::error::SyscallError;
use crate::io_port::label as port_label;
use crate::ipc::{ThreadId, ThreadState};
use crate::irq::{self, Delivery, label as irq_label};
use crate::memory::PhysAddr;
use crate::platform::{PlatformEvent, PortWidth, RecordingPlatform};
use crate::store::{MapStore, ObjectStore};
use crate::syscall::{Kernel, label as tcb_label, number};
use crate::test_fixture::{R_SELF, R_UNTYPED, ROOT_TCB, Request, issue, root_kernel, root_slot, root_thread};

// Root CNode slots (a root cptr is the slot index).
const R_IRQ_CONTROL: u64 = 2;
const R_IO_PORT_CONTROL: u64 = 3;
const R_ROOT_TCB: u64 = 4;
const R_NOTIFICATION: u64 = 10;
const R_ENDPOINT: u64 = 11;
const R_BADGED: u64 = 12; // a WRITE-only copy with badge 0x40
const R_READ_ONLY: u64 = 13; // a READ-only copy
const R_DRIVER: u64 = 14;
const R_PORTS: u64 = 20; // 20.. issued ranges and their copies
const R_HANDLER: u64 = 40; // 40.. handlers

/// An invocation's outcome: the label (error code) and message word 0 if
/// the reply has one.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok(Option<u64>),
    Err(SyscallError),
}

fn err(error: SyscallError) -> Reply {
    Reply::Err(error)
}

const OK: Reply = Reply::Ok(None);

struct System {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
}

impl System {
    fn root() -> ThreadId {
        root_thread()
    }

    fn syscall(&mut self, thread: ThreadId, number: u64, cptr: u64, label: u64, words: &[u64], extra: &[u64]) {
        let request = Request { number, cptr, label, words, extra, reply: 0 };
        issue(&mut self.kernel, &mut self.platform, thread, &request);
        self.kernel.scheduler.schedule(&mut self.kernel.store);
    }

    /// A Call by the root task.
    fn call(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) -> Reply {
        self.syscall(System::root(), number::CALL, cptr, label, words, extra);
        let tcb = self.kernel.store.tcb(System::root());
        match tcb.info.label {
            0 => Reply::Ok((tcb.info.length == 1).then_some(tcb.words[0])),
            code => Reply::Err(*SyscallError::ALL.iter().find(|error| error.code() == code).expect("a known code")),
        }
    }

    fn ok(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) {
        assert_eq!(self.call(cptr, label, words, extra), OK, "invocation {label} on {cptr}");
    }

    fn cap(&self, index: u64) -> Cap {
        self.kernel.store.slot(root_slot(index)).cap
    }

    fn issue(&mut self, first: u64, last: u64, slot: u64) -> Reply {
        self.call(R_IO_PORT_CONTROL, port_label::IO_PORT_CONTROL_ISSUE, &[first, last, slot, 64], &[R_SELF])
    }

    fn get(&mut self, line: u64, slot: u64) -> Reply {
        self.call(R_IRQ_CONTROL, irq_label::IRQ_CONTROL_GET, &[line, slot, 64], &[R_SELF])
    }

    fn delete(&mut self, slot: u64) {
        self.ok(R_SELF, cnode_label::CNODE_DELETE, &[slot, 64], &[]);
    }

    fn copy(&mut self, from: u64, to: u64) -> Reply {
        self.call(R_SELF, cnode_label::CNODE_COPY, &[to, 64, from, 64, u64::from(Rights::ALL.bits())], &[R_SELF])
    }

    fn events(&self) -> Vec<PlatformEvent> {
        self.platform.events.iter().copied().collect()
    }

    fn notification(&self) -> PhysAddr {
        self.cap(R_NOTIFICATION).memory_region().expect("an object").0
    }
}

/// The root task with its CNode, an untyped, both control capabilities and
/// a notification (plain, badged write-only, read-only) and an endpoint.
fn build() -> System {
    let originals = [
        (R_IRQ_CONTROL, Cap::IrqControl),
        (R_IO_PORT_CONTROL, Cap::IoPortControl),
        (R_ROOT_TCB, Cap::Tcb { object: PhysAddr::new(ROOT_TCB) }),
    ];
    let kernel = root_kernel(22, 200, &originals);
    let mut system = System { kernel, platform: RecordingPlatform::new() };
    let retype = |system: &mut System, kind: ObjectKind, slot: u64| {
        system.ok(R_UNTYPED, cnode_label::UNTYPED_RETYPE, &[kind as u64, 0, 0, 0, slot, 1], &[R_SELF]);
    };
    retype(&mut system, ObjectKind::Notification, R_NOTIFICATION);
    retype(&mut system, ObjectKind::Endpoint, R_ENDPOINT);
    retype(&mut system, ObjectKind::Tcb, R_DRIVER);
    system.ok(
        R_SELF,
        cnode_label::CNODE_MINT,
        &[R_BADGED, 64, R_NOTIFICATION, 64, u64::from(Rights::WRITE.bits()), 0x40],
        &[R_SELF],
    );
    system.ok(
        R_SELF,
        cnode_label::CNODE_COPY,
        &[R_READ_ONLY, 64, R_NOTIFICATION, 64, u64::from(Rights::READ.bits())],
        &[R_SELF],
    );
    system
}

#[test]
fn port_reads_and_writes_reach_the_machine_inside_the_range_only() {
    let mut system = build();
    assert_eq!(system.issue(0x70, 0x71, R_PORTS), OK);
    assert_eq!(system.cap(R_PORTS), Cap::IoPort { first: 0x70, last: 0x71 });
    assert_eq!(system.kernel.io_ports.allocated_count(), 2);
    system.platform.port_input = 0x1234_5678;
    system.platform.clear();
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN8, &[0x71], &[]), Reply::Ok(Some(0x78)));
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN16, &[0x70], &[]), Reply::Ok(Some(0x5678)));
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_OUT8, &[0x70, 0x18b], &[]), OK);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_OUT16, &[0x70, 0xabcd_ef01], &[]), OK);
    assert_eq!(
        system.events(),
        [
            PlatformEvent::PortRead { port: 0x71, width: PortWidth::Byte },
            PlatformEvent::PortRead { port: 0x70, width: PortWidth::Word },
            PlatformEvent::PortWrite { port: 0x70, width: PortWidth::Byte, value: 0x8b },
            PlatformEvent::PortWrite { port: 0x70, width: PortWidth::Word, value: 0xef01 },
        ]
    );
    system.platform.clear();
    // The whole access must lie inside the range.
    let range_error = err(SyscallError::RangeError);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN16, &[0x71], &[]), range_error);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN32, &[0x70], &[]), range_error);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN8, &[0x6f], &[]), range_error);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN8, &[0x72], &[]), range_error);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_OUT8, &[0x1_0070, 0], &[]), range_error);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_OUT32, &[u64::MAX, 0], &[]), range_error);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_OUT16, &[0x71, 0], &[]), range_error);
    // Truncated messages, labels an I/O port does not understand.
    let truncated = err(SyscallError::TruncatedMessage);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_IN8, &[], &[]), truncated);
    assert_eq!(system.call(R_PORTS, port_label::IO_PORT_OUT8, &[0x70], &[]), truncated);
    assert_eq!(
        system.call(R_PORTS, port_label::IO_PORT_CONTROL_ISSUE, &[0x70], &[]),
        err(SyscallError::IllegalOperation)
    );
    assert_eq!(system.call(R_PORTS, 71, &[0x70], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(system.call(R_PORTS, irq_label::IRQ_HANDLER_ACK, &[], &[]), err(SyscallError::IllegalOperation));
    // Port invocations on capabilities that are not I/O ports.
    // On an endpoint the label is only a message's label (dropped: nobody waits).
    system.syscall(System::root(), number::NB_SEND, R_ENDPOINT, port_label::IO_PORT_IN8, &[0x70], &[]);
    assert_eq!(system.call(R_SELF, port_label::IO_PORT_IN8, &[0x70], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(
        system.call(R_IO_PORT_CONTROL, port_label::IO_PORT_IN8, &[0x70], &[]),
        err(SyscallError::IllegalOperation)
    );
    assert_eq!(system.call(R_IRQ_CONTROL, port_label::IO_PORT_IN8, &[0x70], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(system.call(R_PORTS + 1, port_label::IO_PORT_IN8, &[0x70], &[]), err(SyscallError::FailedLookup));
    assert!(system.events().is_empty(), "no refused access reached the machine: {:?}", system.events());
    // A copy works like the original; a Send does the access without a reply.
    assert_eq!(system.copy(R_PORTS, R_PORTS + 1), OK);
    assert_eq!(system.call(R_PORTS + 1, port_label::IO_PORT_IN32, &[0x70], &[]), range_error);
    system.syscall(System::root(), number::SEND, R_PORTS + 1, port_label::IO_PORT_OUT8, &[0x71, 9], &[]);
    assert_eq!(system.events(), [PlatformEvent::PortWrite { port: 0x71, width: PortWidth::Byte, value: 9 }]);
}

#[test]
fn issue_refuses_bad_ranges_overlaps_and_bad_destinations() {
    let mut system = build();
    let control = R_IO_PORT_CONTROL;
    let issue = port_label::IO_PORT_CONTROL_ISSUE;
    for words in [&[][..], &[0x40], &[0x40, 0x43], &[0x40, 0x43, R_PORTS]] {
        assert_eq!(system.call(control, issue, words, &[R_SELF]), err(SyscallError::TruncatedMessage), "{words:?}");
    }
    assert_eq!(system.call(control, issue, &[0x40, 0x43, R_PORTS, 0], &[R_SELF]), err(SyscallError::RangeError));
    assert_eq!(system.call(control, issue, &[0x40, 0x43, R_PORTS, 65], &[R_SELF]), err(SyscallError::RangeError));
    assert_eq!(system.issue(0x40, 0x1_0000, R_PORTS), err(SyscallError::RangeError));
    assert_eq!(system.issue(0x43, 0x40, R_PORTS), err(SyscallError::RangeError));
    assert_eq!(system.call(control, issue, &[0x40, 0x43, R_PORTS, 64], &[]), err(SyscallError::TruncatedMessage));
    assert_eq!(
        system.call(control, issue, &[0x40, 0x43, R_PORTS, 64], &[R_ENDPOINT]),
        err(SyscallError::InvalidCapability)
    );
    assert_eq!(system.call(control, issue, &[0x40, 0x43, R_PORTS, 64], &[99]), err(SyscallError::InvalidCapability));
    assert_eq!(system.call(control, issue, &[0x40, 0x43, 1 << 20, 64], &[R_SELF]), err(SyscallError::FailedLookup));
    assert_eq!(system.issue(0x40, 0x43, R_NOTIFICATION), err(SyscallError::DeleteFirst));
    assert_eq!(system.call(control, 65, &[0x40, 0x43, R_PORTS, 64], &[R_SELF]), err(SyscallError::IllegalOperation));
    assert_eq!(system.kernel.io_ports.allocated_count(), 0, "nothing refused allocated a port");
    // One owner per port: overlaps at either end, inside or around, and
    // the very same range, are refused.
    assert_eq!(system.issue(0x40, 0x43, R_PORTS), OK);
    for (first, last) in [(0x40, 0x40), (0x43, 0x50), (0x30, 0x40), (0x41, 0x42), (0x00, 0xffff), (0x40, 0x43)] {
        assert_eq!(system.issue(first, last, R_PORTS + 1), err(SyscallError::RevokeFirst), "{first:#x}..={last:#x}");
    }
    assert_eq!(system.issue(0x3f, 0x3f, R_PORTS + 1), OK, "next to it is fine");
    assert_eq!(system.issue(0x44, 0xffff, R_PORTS + 2), OK);
    assert_eq!(system.kernel.io_ports.allocated_count(), 0x1_0000 - 0x3f);
    // Control capabilities cannot be copied; reserved ports never issued.
    assert_eq!(system.copy(R_IO_PORT_CONTROL, R_PORTS + 3), err(SyscallError::IllegalOperation));
    system.kernel.io_ports.reserve(0x20, 0x21);
    assert_eq!(system.issue(0x20, 0x20, R_PORTS + 3), err(SyscallError::RevokeFirst));
}

#[test]
fn deleting_the_last_capability_to_a_range_frees_its_ports() {
    let mut system = build();
    assert_eq!(system.issue(0x40, 0x43, R_PORTS), OK);
    assert_eq!(system.copy(R_PORTS, R_PORTS + 1), OK);
    system.delete(R_PORTS);
    assert_eq!(system.kernel.io_ports.allocated_count(), 4, "the copy still owns them");
    assert_eq!(system.issue(0x40, 0x40, R_PORTS + 2), err(SyscallError::RevokeFirst));
    system.delete(R_PORTS + 1);
    assert_eq!(system.kernel.io_ports.allocated_count(), 0);
    assert_eq!(system.issue(0x40, 0x40, R_PORTS + 2), OK);
    // Revoking the control capability takes every range and frees it all.
    assert_eq!(system.issue(0x60, 0x64, R_PORTS + 3), OK);
    assert_eq!(system.copy(R_PORTS + 3, R_PORTS + 4), OK);
    system.ok(R_SELF, cnode_label::CNODE_REVOKE, &[R_IO_PORT_CONTROL, 64], &[]);
    assert_eq!(system.kernel.io_ports.allocated_count(), 0);
    for slot in R_PORTS..R_PORTS + 5 {
        assert!(system.cap(slot).is_null());
    }
    assert_eq!(system.issue(0x40, 0x64, R_PORTS), OK);
}

#[test]
fn an_interrupt_signals_the_bound_notification_and_masks_until_ack() {
    let mut system = build();
    assert_eq!(system.get(4, R_HANDLER), OK);
    assert_eq!(system.cap(R_HANDLER), Cap::IrqHandler { line: 4 });
    assert!(system.kernel.irqs.lines[4].issued && system.kernel.irqs.lines[4].masked);
    system.platform.clear();
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_SET_NOTIFICATION, &[], &[R_BADGED]), OK);
    assert_eq!(system.events(), [PlatformEvent::IrqMasked { line: 4, masked: false }]);
    assert_eq!(system.kernel.irqs.lines[4].notification, Some((system.notification(), 0x40)));
    assert!(!irq::awaited(&system.kernel), "bound, but nobody waits: no reason to idle for it");

    // The driver (sharing the root's CSpace) waits on the notification.
    let driver = match system.cap(R_DRIVER) {
        Cap::Tcb { object } => ThreadId::new(object),
        other => panic!("{other:?}"),
    };
    system.ok(R_DRIVER, tcb_label::TCB_SET_SPACE, &[], &[R_SELF]);
    system.ok(R_DRIVER, tcb_label::TCB_SET_PRIORITY, &[100], &[R_ROOT_TCB]);
    system.ok(R_DRIVER, tcb_label::TCB_RESUME, &[], &[]);
    system.syscall(driver, number::WAIT, R_READ_ONLY, 0, &[], &[]);
    assert!(matches!(system.kernel.store.tcb(driver).state, ThreadState::BlockedOnNotification { .. }));
    assert!(irq::awaited(&system.kernel), "a waiter on a bound, unmasked line: the CPU idles for the device");

    system.platform.clear();
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 4), Delivery::Signalled);
    assert_eq!(system.events(), [PlatformEvent::IrqMasked { line: 4, masked: true }]);
    let woken = system.kernel.store.tcb(driver);
    assert_eq!((woken.state, woken.badge), (ThreadState::Runnable, 0x40));
    assert!(system.kernel.irqs.lines[4].masked && system.kernel.irqs.lines[4].pending);
    assert!(!irq::awaited(&system.kernel), "the waiter woke, and the line is masked until the Ack");

    // A second interrupt before the Ack (one in flight) is kept in the word.
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 4), Delivery::Signalled);
    system.syscall(System::root(), number::POLL, R_READ_ONLY, 0, &[], &[]);
    assert_eq!(system.kernel.store.tcb(System::root()).badge, 0x40);

    system.platform.clear();
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_ACK, &[], &[]), OK);
    assert_eq!(system.events(), [PlatformEvent::IrqMasked { line: 4, masked: false }]);
    assert!(!system.kernel.irqs.lines[4].masked && !system.kernel.irqs.lines[4].pending);

    // Clear: unbound and masked; the next interrupt is dropped.
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_CLEAR, &[], &[]), OK);
    assert_eq!(system.kernel.irqs.lines[4].notification, None);
    assert!(system.kernel.irqs.lines[4].masked);
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_ACK, &[], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 4), Delivery::Unbound);
    system.syscall(System::root(), number::POLL, R_READ_ONLY, 0, &[], &[]);
    assert_eq!(system.kernel.store.tcb(System::root()).badge, 0, "no signal after Clear");
}

#[test]
fn get_refuses_bad_lines_second_handlers_and_bad_destinations() {
    let mut system = build();
    let control = R_IRQ_CONTROL;
    let get = irq_label::IRQ_CONTROL_GET;
    for words in [&[][..], &[4], &[4, R_HANDLER]] {
        assert_eq!(system.call(control, get, words, &[R_SELF]), err(SyscallError::TruncatedMessage), "{words:?}");
    }
    assert_eq!(system.call(control, get, &[4, R_HANDLER, 0], &[R_SELF]), err(SyscallError::RangeError));
    for line in [16, 23, 255, 256, u64::MAX] {
        assert_eq!(system.get(line, R_HANDLER), err(SyscallError::RangeError), "line {line}");
    }
    assert_eq!(system.get(2, R_HANDLER), err(SyscallError::IllegalOperation), "the cascade");
    assert_eq!(system.call(control, get, &[4, R_HANDLER, 64], &[]), err(SyscallError::TruncatedMessage));
    assert_eq!(system.call(control, get, &[4, R_HANDLER, 64], &[R_NOTIFICATION]), err(SyscallError::InvalidCapability));
    assert_eq!(system.call(control, get, &[4, 1 << 20, 64], &[R_SELF]), err(SyscallError::FailedLookup));
    assert_eq!(system.get(4, R_NOTIFICATION), err(SyscallError::DeleteFirst));
    assert_eq!(
        system.call(control, irq_label::IRQ_HANDLER_ACK, &[4, R_HANDLER, 64], &[R_SELF]),
        err(SyscallError::IllegalOperation)
    );
    assert!(system.kernel.irqs.lines.iter().all(|line| !line.issued), "nothing refused issued a line");
    assert_eq!(system.get(0, R_HANDLER), OK);
    assert_eq!(system.get(15, R_HANDLER + 1), OK);
    assert_eq!(system.get(0, R_HANDLER + 2), err(SyscallError::RevokeFirst), "one handler per line");
    assert_eq!(system.copy(R_IRQ_CONTROL, R_HANDLER + 2), err(SyscallError::IllegalOperation));
    assert_eq!(system.copy(R_HANDLER, R_HANDLER + 2), OK, "a handler can be copied");
    assert_eq!(system.cap(R_HANDLER + 2), Cap::IrqHandler { line: 0 });
}

#[test]
fn handler_invocations_refuse_what_they_cannot_use() {
    let mut system = build();
    assert_eq!(system.get(5, R_HANDLER), OK);
    let set = irq_label::IRQ_HANDLER_SET_NOTIFICATION;
    assert_eq!(system.call(R_HANDLER, set, &[], &[]), err(SyscallError::TruncatedMessage));
    assert_eq!(system.call(R_HANDLER, set, &[], &[R_ENDPOINT]), err(SyscallError::InvalidCapability));
    assert_eq!(system.call(R_HANDLER, set, &[], &[R_READ_ONLY]), err(SyscallError::InvalidCapability), "no WRITE");
    assert_eq!(system.call(R_HANDLER, set, &[], &[99]), err(SyscallError::InvalidCapability), "an empty slot");
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_ACK, &[], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_CONTROL_GET, &[], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(system.call(R_HANDLER, 84, &[], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(system.call(R_HANDLER, port_label::IO_PORT_IN8, &[0], &[]), err(SyscallError::IllegalOperation));
    assert_eq!(system.call(R_NOTIFICATION, irq_label::IRQ_HANDLER_ACK, &[], &[]), OK, "a notification Call signals");
    assert_eq!(system.call(R_SELF, irq_label::IRQ_HANDLER_ACK, &[], &[]), err(SyscallError::IllegalOperation));
    assert!(system.kernel.irqs.lines[5].masked, "nothing refused unmasked the line");
    assert_eq!(system.kernel.irqs.lines[5].notification, None);
    // Rebinding replaces the notification and its badge.
    assert_eq!(system.call(R_HANDLER, set, &[], &[R_NOTIFICATION]), OK);
    assert_eq!(system.call(R_HANDLER, set, &[], &[R_BADGED]), OK);
    assert_eq!(system.kernel.irqs.lines[5].notification, Some((system.notification(), 0x40)));
}

#[test]
fn interrupts_on_lines_nobody_handles_are_masked_and_dropped() {
    let mut system = build();
    system.platform.clear();
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 16), Delivery::Unbound);
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 255), Delivery::Unbound);
    assert!(system.events().is_empty(), "no such line: nothing to mask");
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 3), Delivery::Unbound);
    assert_eq!(system.events(), [PlatformEvent::IrqMasked { line: 3, masked: true }]);
    assert_eq!(system.get(3, R_HANDLER), OK);
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 3), Delivery::Unbound, "issued, not bound");
    assert!(!system.kernel.store.notification(system.notification()).active);
}

#[test]
fn deleting_handlers_and_notifications_releases_the_line() {
    let mut system = build();
    assert_eq!(system.get(6, R_HANDLER), OK);
    assert_eq!(system.copy(R_HANDLER, R_HANDLER + 1), OK);
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_SET_NOTIFICATION, &[], &[R_BADGED]), OK);
    system.delete(R_HANDLER);
    assert!(system.kernel.irqs.lines[6].issued, "the copy is still a handler");
    assert_eq!(system.kernel.irqs.lines[6].notification, Some((system.notification(), 0x40)));
    system.platform.clear();
    system.delete(R_HANDLER + 1);
    assert_eq!(system.kernel.irqs.lines[6], irq::IrqLine::FREE);
    assert_eq!(system.events(), [PlatformEvent::IrqMasked { line: 6, masked: true }]);
    assert_eq!(system.get(6, R_HANDLER), OK, "the line can be had again");

    // Deleting every capability to the bound notification unbinds it: the
    // kernel never signals an object that is gone.
    assert_eq!(system.call(R_HANDLER, irq_label::IRQ_HANDLER_SET_NOTIFICATION, &[], &[R_BADGED]), OK);
    system.delete(R_BADGED);
    assert!(system.kernel.irqs.lines[6].notification.is_some(), "other capabilities to it remain");
    system.delete(R_READ_ONLY);
    system.delete(R_NOTIFICATION);
    assert_eq!(system.kernel.irqs.lines[6].notification, None);
    assert!(system.kernel.irqs.lines[6].masked && system.kernel.irqs.lines[6].issued);
    assert_eq!(irq::deliver(&mut system.kernel, &mut system.platform, 6), Delivery::Unbound);

    // Revoking the control capability takes every handler.
    assert_eq!(system.get(7, R_HANDLER + 1), OK);
    system.ok(R_SELF, cnode_label::CNODE_REVOKE, &[R_IRQ_CONTROL, 64], &[]);
    assert!(system.kernel.irqs.lines.iter().all(|line| *line == irq::IrqLine::FREE));
    assert!(system.cap(R_HANDLER).is_null() && system.cap(R_HANDLER + 1).is_null());
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Step {
    Issue { first: u16, length: u16, slot: u64 },
    Copy { from: u64, to: u64 },
    Delete { slot: u64 },
    RevokeControl,
    In { slot: u64, port: u16 },
    Out { slot: u64, port: u16 },
}

const SLOTS: u64 = 8;

fn step() -> impl Strategy<Value = Step> {
    // A small port window so that ranges collide often.
    let slot = || (0..SLOTS).prop_map(|slot| R_PORTS + slot);
    prop_oneof![
        4 => (0_u16..64, 1_u16..16, slot()).prop_map(|(first, length, slot)| Step::Issue { first, length, slot }),
        2 => (slot(), slot()).prop_map(|(from, to)| Step::Copy { from, to }),
        3 => slot().prop_map(|slot| Step::Delete { slot }),
        1 => Just(Step::RevokeControl),
        2 => (slot(), 0_u16..80).prop_map(|(slot, port)| Step::In { slot, port }),
        2 => (slot(), 0_u16..80).prop_map(|(slot, port)| Step::Out { slot, port }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the root task does, the ranges its `IoPort` capabilities
    /// name never overlap unless they are the same range (copies), the
    /// kernel's bitmap is exactly their union, and an access succeeds
    /// exactly when it lies inside the capability's range.
    #[test]
    fn no_port_ever_has_two_owners(steps in proptest::collection::vec(step(), 1..40)) {
        let mut system = build();
        for step in steps {
            match step {
                Step::Issue { first, length, slot } => {
                    let last = first + length - 1;
                    let overlaps = system.kernel.io_ports.any_allocated(first, last);
                    let occupied = !system.cap(slot).is_null();
                    let expected = if overlaps {
                        err(SyscallError::RevokeFirst)
                    } else if occupied {
                        err(SyscallError::DeleteFirst)
                    } else {
                        OK
                    };
                    prop_assert_eq!(system.issue(u64::from(first), u64::from(last), slot), expected);
                }
                Step::Copy { from, to } => {
                    let _ = system.copy(from, to);
                }
                Step::Delete { slot } => system.delete(slot),
                Step::RevokeControl => system.ok(R_SELF, cnode_label::CNODE_REVOKE, &[R_IO_PORT_CONTROL, 64], &[]),
                Step::In { slot, port } | Step::Out { slot, port } => {
                    let cap = system.cap(slot);
                    let (label, words) = if matches!(step, Step::In { .. }) {
                        (port_label::IO_PORT_IN8, vec![u64::from(port)])
                    } else {
                        (port_label::IO_PORT_OUT8, vec![u64::from(port), 1])
                    };
                    let reply = system.call(slot, label, &words, &[]);
                    match cap {
                        Cap::IoPort { first, last } if (first..=last).contains(&port) => {
                            prop_assert!(matches!(reply, Reply::Ok(_)));
                        }
                        Cap::IoPort { .. } => prop_assert_eq!(reply, err(SyscallError::RangeError)),
                        Cap::Null => prop_assert_eq!(reply, err(SyscallError::FailedLookup)),
                        _ => prop_assert!(matches!(reply, Reply::Err(_))),
                    }
                }
            }
            let ranges: Vec<(u16, u16)> = (0..SLOTS)
                .filter_map(|slot| match system.cap(R_PORTS + slot) {
                    Cap::IoPort { first, last } => Some((first, last)),
                    _ => None,
                })
                .collect();
            for (index, a) in ranges.iter().enumerate() {
                for b in &ranges[index + 1..] {
                    prop_assert!(a == b || a.1 < b.0 || b.1 < a.0, "{:?} and {:?} overlap", a, b);
                }
            }
            for port in 0..100_u16 {
                let owned = ranges.iter().any(|(first, last)| (*first..=*last).contains(&port));
                prop_assert_eq!(system.kernel.io_ports.is_allocated(port), owned, "port {}", port);
            }
        }
    }
}

/// One step of the interrupt property test.
#[derive(Clone, Debug)]
enum IrqStep {
    Get { line: u64, slot: u64 },
    Copy { from: u64, to: u64 },
    Delete { slot: u64 },
    SetNotification { slot: u64, notification: u64 },
    Clear { slot: u64 },
    Ack { slot: u64 },
    Deliver { line: u8 },
    RevokeControl,
}

const HANDLER_SLOTS: u64 = 6;
/// The notification capabilities (and an endpoint, to be refused).
const NOTIFICATION_SLOTS: [u64; 4] = [R_NOTIFICATION, R_BADGED, R_READ_ONLY, R_ENDPOINT];

fn irq_step() -> impl Strategy<Value = IrqStep> {
    let slot = || (0..HANDLER_SLOTS).prop_map(|slot| R_HANDLER + slot);
    let notification = proptest::sample::select(NOTIFICATION_SLOTS.to_vec());
    prop_oneof![
        3 => (0_u64..6, slot()).prop_map(|(line, slot)| IrqStep::Get { line, slot }),
        2 => (slot(), slot()).prop_map(|(from, to)| IrqStep::Copy { from, to }),
        2 => slot().prop_map(|slot| IrqStep::Delete { slot }),
        // Often enough that every capability to the notification goes.
        2 => proptest::sample::select(NOTIFICATION_SLOTS[..3].to_vec()).prop_map(|slot| IrqStep::Delete { slot }),
        3 => (slot(), notification).prop_map(|(slot, notification)| IrqStep::SetNotification { slot, notification }),
        1 => slot().prop_map(|slot| IrqStep::Clear { slot }),
        3 => slot().prop_map(|slot| IrqStep::Ack { slot }),
        4 => (0_u8..6).prop_map(|line| IrqStep::Deliver { line }),
        1 => Just(IrqStep::RevokeControl),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the root task does with handlers and notifications, and
    /// whenever lines fire: the kernel's mask of every line is the one the
    /// machine was last told; a line is unmasked only while its handler
    /// exists and a notification is bound; a line is issued exactly while a
    /// handler capability to it exists; a bound notification always still
    /// has a capability (the kernel never signals a deleted object); and an
    /// interrupt signals exactly when a notification is bound.
    #[test]
    fn lines_are_unmasked_only_while_bound_to_a_live_notification(
        steps in proptest::collection::vec(irq_step(), 1..60),
    ) {
        let mut system = build();
        let notification = system.notification();
        let mut machine_masked = [true; irq::IRQ_LINES as usize];
        for step in steps {
            system.platform.clear();
            match step {
                IrqStep::Get { line, slot } => {
                    let _ = system.get(line, slot);
                }
                IrqStep::Copy { from, to } => {
                    let _ = system.copy(from, to);
                }
                IrqStep::Delete { slot } => system.delete(slot),
                IrqStep::SetNotification { slot, notification } => {
                    let set = irq_label::IRQ_HANDLER_SET_NOTIFICATION;
                    let _ = system.call(slot, set, &[], &[notification]);
                }
                IrqStep::Clear { slot } => {
                    let _ = system.call(slot, irq_label::IRQ_HANDLER_CLEAR, &[], &[]);
                }
                IrqStep::Ack { slot } => {
                    let bound = match system.cap(slot) {
                        Cap::IrqHandler { line } => system.kernel.irqs.lines[usize::from(line)].notification.is_some(),
                        _ => false,
                    };
                    let reply = system.call(slot, irq_label::IRQ_HANDLER_ACK, &[], &[]);
                    prop_assert_eq!(reply == OK, bound, "Ack succeeds exactly on a bound handler");
                }
                IrqStep::Deliver { line } => {
                    let bound = system.kernel.irqs.lines[usize::from(line)].notification;
                    let word_before = system.kernel.store.notification(notification).word;
                    let delivery = irq::deliver(&mut system.kernel, &mut system.platform, line);
                    prop_assert_eq!(delivery == Delivery::Signalled, bound.is_some());
                    if let Some((_, badge)) = bound {
                        prop_assert_eq!(system.kernel.store.notification(notification).word, word_before | badge);
                    }
                }
                IrqStep::RevokeControl => system.ok(R_SELF, cnode_label::CNODE_REVOKE, &[R_IRQ_CONTROL, 64], &[]),
            }
            for event in system.events() {
                if let PlatformEvent::IrqMasked { line, masked } = event {
                    machine_masked[usize::from(line)] = masked;
                }
            }
            let notification_alive = NOTIFICATION_SLOTS[..3].iter().any(|slot| !system.cap(*slot).is_null());
            for line in 0..irq::IRQ_LINES {
                let state = system.kernel.irqs.lines[usize::from(line)];
                prop_assert_eq!(state.masked, machine_masked[usize::from(line)], "line {}", line);
                if !state.masked {
                    prop_assert!(state.issued && state.notification.is_some(), "line {} unmasked: {:?}", line, state);
                }
                let handler_exists =
                    (0..HANDLER_SLOTS).any(|slot| system.cap(R_HANDLER + slot) == Cap::IrqHandler { line });
                prop_assert_eq!(state.issued, handler_exists, "line {}", line);
                if state.notification.is_some() {
                    prop_assert!(state.issued && notification_alive, "line {} bound to a dead object", line);
                }
            }
        }
    }
}
