//! The root task's walk through the ABI. Each step prints one line; the
//! first failure ends the task with code 1.

use alloc::vec::Vec;
use core::fmt;

use bulkhead_components::abi::cap::{ObjectKind, Rights};
use bulkhead_components::abi::root_task::{self, FIRST_FREE_ADDRESS, MAX_UNTYPEDS, slot};
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::invocation::{Destination, Registers, Slot, attributes, yield_now};
use bulkhead_components::slots::SlotAllocator;
use bulkhead_components::{Error, Message};
use bulkhead_sys::heap::HEAP;
use bulkhead_sys::mapped::MappedPage;
use bulkhead_sys::{RootInfo, Sys, println};

mod guest;

const ROOT_CNODE: Cap<kind::CNode> = Cap::new(slot::ROOT_CNODE);
const ROOT_VSPACE: Cap<kind::Pml4> = Cap::new(slot::ROOT_VSPACE);
const ROOT_TCB: Cap<kind::Tcb> = Cap::new(slot::ROOT_TCB);
const SCHED_CONTROL: Cap<kind::SchedControl> = Cap::new(slot::SCHED_CONTROL);
const ASID_CONTROL: Cap<kind::AsidControl> = Cap::new(slot::ASID_CONTROL);

/// The badge the notification copy carries.
const SIGNAL_BADGE: u64 = 0x5;
/// The badge of the child's endpoint capability.
const CHILD_BADGE: u64 = 0xc1;
/// The badge of the child's fault endpoint capability.
const FAULT_BADGE: u64 = 0xfa;
/// The label and word of the child's call, and the label of its report.
const CHILD_LABEL: u64 = 0x11;
const CHILD_WORD: u64 = 41;
const REPORT_LABEL: u64 = 0x12;
/// The long revoke: copies of the endpoint in a CNode of 2^10 slots, and
/// the budget the root gives itself for it (TSC ticks per period), small
/// enough that the revoke cannot finish inside one budget.
const REVOKE_RADIX: u64 = 10;
const REVOKE_COPIES: u64 = 1000;
const ROOT_BUDGET: u64 = 20_000;
const ROOT_PERIOD: u64 = 100_000;
/// What the root writes through its mapped frame.
const PATTERN: u64 = 0x0123_4567_89ab_cdef;

/// Where the root maps things for itself (all in one page table).
const TEST_PAGE: u64 = FIRST_FREE_ADDRESS;
/// The child's stack: four pages (a message and its reply are about a
/// kilobyte each), the pages on either side unmapped.
const CHILD_STACK: u64 = FIRST_FREE_ADDRESS + 0x2000;
const CHILD_STACK_PAGES: u64 = 4;
/// The child's IPC buffer.
const CHILD_IPC_BUFFER: u64 = CHILD_STACK + (CHILD_STACK_PAGES + 1) * 4096;
/// The heap: pages from here, in the same page table.
const HEAP_START: u64 = FIRST_FREE_ADDRESS + 0x10_0000;
const HEAP_PAGES: usize = 4;
/// The child's priority (below the root's 255) and budget.
const CHILD_PRIORITY: u8 = 100;
const CHILD_BUDGET: u64 = 1_000_000;
const CHILD_PERIOD: u64 = 1_000_000;

/// Why a step failed.
enum Failure {
    /// The kernel (or the runtime) refused.
    Kernel(Error),
    /// The kernel answered, but not what the ABI promises.
    Unexpected { what: &'static str, got: u64, expected: u64 },
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Kernel(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Kernel(error) => write!(formatter, "{error}"),
            Failure::Unexpected { what, got, expected } => write!(formatter, "{what} {got:#x}, expected {expected:#x}"),
        }
    }
}

/// A step that failed and said so.
struct Stopped;

/// Prints the step's line.
fn step<T>(name: &str, result: Result<T, Failure>) -> Result<T, Stopped> {
    match result {
        Ok(value) => {
            println!("root: {name} ok");
            Ok(value)
        }
        Err(failure) => {
            println!("root: {name} failed: {failure}");
            Err(Stopped)
        }
    }
}

fn expect(what: &'static str, got: u64, expected: u64) -> Result<(), Failure> {
    if got == expected { Ok(()) } else { Err(Failure::Unexpected { what, got, expected }) }
}

/// The root task's `main` (named by `entry!`): the exit code.
pub(crate) fn main(info: &RootInfo, sys: &mut Sys) -> u64 {
    if info.magic != root_task::MAGIC || info.version != root_task::VERSION {
        println!("root: root information has magic {:#x} version {}, not this runtime's", info.magic, info.version);
        return 1;
    }
    let untypeds = usize::try_from(info.untyped_count).unwrap_or(usize::MAX).min(MAX_UNTYPEDS);
    println!("root: started, {untypeds} untypeds, first free slot {}", info.first_free_slot);
    let Some(untyped) = info.untypeds[..untypeds].iter().find(|untyped| untyped.slot != 0 && untyped.is_device == 0)
    else {
        println!("root: no RAM untyped to work with");
        return 1;
    };
    let mut root = Root {
        sys,
        slots: SlotAllocator::new(info.first_free_slot, info.cnode_radix),
        untyped: Cap::new(untyped.slot),
        budget: None,
    };
    match root.run() {
        Ok(()) => 0,
        Err(Stopped) => 1,
    }
}

/// What the steps share.
struct Root<'a> {
    sys: &'a mut Sys,
    slots: SlotAllocator,
    untyped: Cap<kind::Untyped>,
    /// The scheduling context the root runs on once `long_revoke` gave it
    /// a budget.
    budget: Option<Cap<kind::SchedContext>>,
}

impl Root<'_> {
    /// One object of `object` from the untyped, in the next free slot.
    fn retype<T>(&mut self, object: ObjectKind, size_bits: u64) -> Result<Cap<T>, Failure> {
        let slot = self.slots.take_one()?;
        self.untyped.retype(self.sys, object, size_bits, Destination::slots_of(ROOT_CNODE, slot), 1)?;
        Ok(Cap::new(slot))
    }

    /// A copy of `source` in the next free slot with `rights` and `badge`.
    fn mint<T>(&mut self, source: Cap<T>, rights: Rights, badge: u64) -> Result<Cap<T>, Failure> {
        let slot = self.slots.take_one()?;
        ROOT_CNODE.mint(self.sys, Slot::index(slot), ROOT_CNODE, Slot::index(source.cptr().0), rights, badge)?;
        Ok(Cap::new(slot))
    }

    /// A fresh 4 KiB frame mapped read-write at `address` in the root's VSpace.
    fn map_new_frame(&mut self, address: u64) -> Result<Cap<kind::Frame>, Failure> {
        let frame = self.retype::<kind::Frame>(ObjectKind::Frame4K, 0)?;
        frame.map(self.sys, ROOT_VSPACE, address, Rights::READ | Rights::WRITE, attributes::DATA)?;
        Ok(frame)
    }

    /// Makes sure a PDPT, a page directory and a page table cover `address`:
    /// each level is retyped and mapped unless the kernel says the entry is
    /// in use already (DeleteFirst), then the spare is deleted.
    fn map_page_tables(&mut self, address: u64) -> Result<(), Failure> {
        for level in [ObjectKind::PageDirectoryPointerTable, ObjectKind::PageDirectory, ObjectKind::PageTable] {
            let table = self.retype::<kind::PageTable>(level, 0)?;
            match table.map(self.sys, ROOT_VSPACE, address) {
                Ok(()) => {}
                Err(Error::DeleteFirst) => ROOT_CNODE.delete(self.sys, Slot::index(table.cptr().0))?,
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), Stopped> {
        // Capabilities: retype, mint a badged copy, signal through it.
        let endpoint = step("retype endpoint", self.retype::<kind::Endpoint>(ObjectKind::Endpoint, 0))?;
        let notification = step("retype notification", self.retype::<kind::Notification>(ObjectKind::Notification, 0))?;
        let badged = step("mint badged notification", self.mint(notification, Rights::WRITE, SIGNAL_BADGE))?;
        step("signal badged copy", badged.signal(self.sys).map_err(Failure::from))?;
        step(
            "poll original",
            notification.poll(self.sys).map_err(Failure::from).and_then(|badge| expect("badge", badge, SIGNAL_BADGE)),
        )?;

        // Memory: page tables, a frame mapped, written, read back, unmapped.
        step("map page tables", self.map_page_tables(TEST_PAGE))?;
        let frame = step("retype frame", self.retype::<kind::Frame>(ObjectKind::Frame4K, 0))?;
        step("frame address", frame.get_address(self.sys).map(drop).map_err(Failure::from))?;
        let mut page =
            step("map frame", MappedPage::map(self.sys, frame, ROOT_VSPACE, TEST_PAGE).map_err(Failure::from))?;
        let round_trip =
            page.write(0, PATTERN).and_then(|()| page.write(511, !PATTERN)).map_err(Failure::from).and_then(|()| {
                expect("word 0", page.read(0).unwrap_or(0), PATTERN)?;
                expect("word 511", page.read(511).unwrap_or(0), !PATTERN)
            });
        step("write and read back", round_trip)?;
        step("unmap frame", page.unmap(self.sys).map(drop).map_err(|(error, _)| Failure::from(error)))?;

        // The heap: frames mapped for it, then a vector on the global allocator.
        step("heap", self.heap())?;

        // Address spaces: an ASID pool from a 4 KiB untyped, a VSpace from it.
        let pool = step("make asid pool", self.make_pool())?;
        let vspace = step("retype pml4", self.retype::<kind::Pml4>(ObjectKind::Pml4, 0))?;
        step("assign asid", pool.assign(self.sys, vspace).map_err(Failure::from))?;

        let (child_buffer, child_tcb) = self.child(endpoint, notification)?;
        // Raised to the root's priority, the child gets the CPU when the root
        // yields and goes on to Wait on the notification. Suspended there and
        // resumed, it must make its Wait again, not return from it with a
        // result it never got.
        let sys = &mut *self.sys;
        let restart = child_tcb
            .set_priority(sys, ROOT_TCB, 255)
            .and_then(|()| yield_now(sys))
            .and_then(|()| child_tcb.suspend(sys))
            .and_then(|()| child_tcb.resume(sys))
            .and_then(|()| yield_now(sys));
        step("suspend and resume the waiting child", restart.map_err(Failure::from))?;
        // The child waits on the notification again. Its IPC buffer goes
        // (revoking the root's capability deletes the copy in the child's
        // TCB), then the signal wakes it: the kernel must stop it, not run
        // it without a buffer or end the run.
        let orphan = ROOT_CNODE
            .revoke(self.sys, Slot::index(child_buffer.cptr().0))
            .and_then(|()| notification.signal(self.sys));
        step("take the child's ipc buffer and wake it", orphan.map_err(Failure::from))?;
        step("retype after revoke reuses the memory", self.reuse_after_revoke())?;
        self.long_revoke(endpoint)?;
        // Last, on the budget the long revoke set: the root as a VMM.
        self.guest(pool)
    }

    /// A 64 KiB untyped of its own: a frame from it, revoke the untyped
    /// (the frame goes), a frame again: the same physical page.
    fn reuse_after_revoke(&mut self) -> Result<(), Failure> {
        let untyped = self.retype::<kind::Untyped>(ObjectKind::Untyped, 16)?;
        let first = self.slots.take_one()?;
        untyped.retype(self.sys, ObjectKind::Frame4K, 0, Destination::slots_of(ROOT_CNODE, first), 1)?;
        let before = Cap::<kind::Frame>::new(first).get_address(self.sys)?;
        ROOT_CNODE.revoke(self.sys, Slot::index(untyped.cptr().0))?;
        untyped.retype(self.sys, ObjectKind::Frame4K, 0, Destination::slots_of(ROOT_CNODE, first), 1)?;
        let after = Cap::<kind::Frame>::new(first).get_address(self.sys)?;
        expect("the frame's address after the revoke", after, before)
    }

    /// Fills a CNode with copies of `endpoint`, puts the root on a small
    /// budget, and revokes every copy in one call: the kernel stops the
    /// revoke at its preemption points when the budget runs out (it reports
    /// how often at the end of the run) and finishes it later.
    fn long_revoke(&mut self, endpoint: Cap<kind::Endpoint>) -> Result<(), Stopped> {
        let cnode = step("retype a 1024-slot cnode", self.retype::<kind::CNode>(ObjectKind::CNode, REVOKE_RADIX))?;
        let source = Slot::index(endpoint.cptr().0);
        let copies = (0..REVOKE_COPIES).try_for_each(|index| {
            cnode.copy(self.sys, Slot { index, depth: REVOKE_RADIX }, ROOT_CNODE, source, Rights::ALL)
        });
        step("copy the endpoint 1000 times", copies.map_err(Failure::from))?;
        let budget = self.retype::<kind::SchedContext>(ObjectKind::SchedContext, 8).and_then(|context| {
            SCHED_CONTROL.configure(self.sys, context, ROOT_BUDGET, ROOT_PERIOD)?;
            ROOT_TCB.bind_sched_context(self.sys, context)?;
            self.budget = Some(context);
            Ok(())
        });
        step("put the root on a budget", budget)?;
        step("revoke every copy", ROOT_CNODE.revoke(self.sys, source).map_err(Failure::from))?;
        // Every slot is empty again: a copy into the first one succeeds.
        let empty = cnode.copy(self.sys, Slot { index: 0, depth: REVOKE_RADIX }, ROOT_CNODE, source, Rights::ALL);
        step("the copies are gone", empty.map_err(Failure::from))?;
        Ok(())
    }

    fn make_pool(&mut self) -> Result<Cap<kind::AsidPool>, Failure> {
        let untyped = self.retype::<kind::Untyped>(ObjectKind::Untyped, 12)?;
        let slot = self.slots.take_one()?;
        ASID_CONTROL.make_pool(self.sys, untyped, ROOT_CNODE, Slot::index(slot))?;
        Ok(Cap::new(slot))
    }

    /// Maps [`HEAP_PAGES`] fresh frames at [`HEAP_START`] for the global
    /// allocator, fills a vector, and checks that dropping it gives every
    /// byte back.
    fn heap(&mut self) -> Result<(), Failure> {
        let mut frames = [Cap::new(0); HEAP_PAGES];
        for frame in &mut frames {
            *frame = self.retype::<kind::Frame>(ObjectKind::Frame4K, 0)?;
        }
        let region = HEAP.map_and_init(self.sys, ROOT_VSPACE, HEAP_START, &frames)?;
        if region.size() != HEAP_PAGES * 4096 {
            return Err(Failure::Unexpected { what: "heap pages", got: region.pages() as u64, expected: 4 });
        }
        let squares: Vec<u64> = (0..1000).map(|value| value * value).collect();
        let sum: u64 = squares.iter().sum();
        expect("sum of squares", sum, 999 * 1000 * 1999 / 6)?;
        drop(squares);
        match HEAP.allocated_bytes() {
            0 => Ok(()),
            bytes => Err(Failure::Unexpected { what: "bytes still allocated", got: bytes as u64, expected: 0 }),
        }
    }

    /// A thread in the root's own CSpace and VSpace, on its own scheduling
    /// context, that calls the root over a badged endpoint.
    fn child(
        &mut self,
        endpoint: Cap<kind::Endpoint>,
        notification: Cap<kind::Notification>,
    ) -> Result<(Cap<kind::Frame>, Cap<kind::Tcb>), Stopped> {
        let objects = (|| {
            let reply = self.retype::<kind::Reply>(ObjectKind::Reply, 0)?;
            let tcb = self.retype::<kind::Tcb>(ObjectKind::Tcb, 0)?;
            Ok((reply, tcb, self.retype::<kind::SchedContext>(ObjectKind::SchedContext, 8)?))
        })();
        let (reply, tcb, context) = step("retype reply, tcb and sched context", objects)?;
        let pages = (0..CHILD_STACK_PAGES)
            .try_for_each(|page| self.map_new_frame(CHILD_STACK + page * 4096).map(drop))
            .and_then(|()| self.map_new_frame(CHILD_IPC_BUFFER));
        let buffer = step("map child stack and ipc buffer", pages)?;
        let endpoints = self
            .mint(endpoint, Rights::WRITE, CHILD_BADGE)
            .and_then(|call| Ok((call, self.mint(endpoint, Rights::WRITE, FAULT_BADGE)?)));
        let (call_endpoint, fault_endpoint) = step("mint child endpoints", endpoints)?;
        let sys = &mut *self.sys;
        step("set space", tcb.set_space(sys, ROOT_CNODE, Some(ROOT_VSPACE)).map_err(Failure::from))?;
        step("set ipc buffer", tcb.set_ipc_buffer(sys, buffer).map_err(Failure::from))?;
        step("set fault handler", tcb.set_fault_handler(sys, fault_endpoint).map_err(Failure::from))?;
        let entry: extern "C" fn(u64, u64) -> ! = child_entry;
        let registers = Registers {
            rip: entry as usize as u64,
            // As after a call: the entry sees RSP + 8 16-byte aligned.
            rsp: CHILD_STACK + CHILD_STACK_PAGES * 4096 - 8,
            rflags: 0,
            rdi: call_endpoint.cptr().0,
            rsi: notification.cptr().0,
            rdx: 0,
        };
        step("write registers", tcb.write_registers(sys, &registers).map_err(Failure::from))?;
        step("set priority", tcb.set_priority(sys, ROOT_TCB, CHILD_PRIORITY).map_err(Failure::from))?;
        step(
            "configure sched context",
            SCHED_CONTROL.configure(sys, context, CHILD_BUDGET, CHILD_PERIOD).map_err(Failure::from),
        )?;
        step("bind sched context", tcb.bind_sched_context(sys, context).map_err(Failure::from))?;
        step("resume child", tcb.resume(sys).map_err(Failure::from))?;

        // The child runs once the root waits.
        let call = endpoint.recv(sys, Some(reply)).map_err(Failure::from).and_then(|incoming| {
            if incoming.badge == FAULT_BADGE {
                return Err(Failure::Unexpected {
                    what: "child fault, label",
                    got: incoming.message.label,
                    expected: 0,
                });
            }
            expect("badge", incoming.badge, CHILD_BADGE)?;
            expect("label", incoming.message.label, CHILD_LABEL)?;
            expect("word", incoming.message.word(0).unwrap_or(0), CHILD_WORD)
        });
        step("child call", call)?;
        // The reply wakes the child, which reports what it received.
        let report = endpoint
            .reply_recv(sys, reply, &Message::new(0, &[CHILD_WORD + 1]))
            .map_err(Failure::from)
            .and_then(|incoming| {
                expect("badge", incoming.badge, CHILD_BADGE)?;
                expect("label", incoming.message.label, REPORT_LABEL)?;
                expect("word", incoming.message.word(0).unwrap_or(0), CHILD_WORD + 1)
            });
        step("reply", report)?;
        println!("root: child replied");
        Ok((buffer, tcb))
    }
}

/// The child thread: calls the root, reports the reply, then waits on a
/// notification nobody signals (the root's exit ends the run). It passes
/// only short messages, so it needs no IPC buffer address.
extern "C" fn child_entry(endpoint: u64, notification: u64) -> ! {
    let mut sys = Sys::without_ipc_buffer();
    let endpoint: Cap<kind::Endpoint> = Cap::new(endpoint);
    let answer = match endpoint.call(&mut sys, &Message::new(CHILD_LABEL, &[CHILD_WORD])) {
        Ok(reply) => reply.word(0).unwrap_or(0),
        Err(error) => error as u64,
    };
    let _ = endpoint.send(&mut sys, &Message::new(REPORT_LABEL, &[answer]));
    let _ = Cap::<kind::Notification>::new(notification).wait(&mut sys);
    bulkhead_sys::arch::exit(0)
}
