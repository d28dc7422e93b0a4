//! Post-boot conformance: a snapshot of the threads a CSpace holds, their
//! capabilities and their address spaces, as text lines the host compares
//! with the system manifest (`docs/capdl.md`, "Post-boot conformance").
//!
//! [`snapshot`] walks the root CNode that the loader left its original
//! capabilities in: for every distinct thread it holds a TCB capability
//! to, one [`Line::Thread`], then a [`Line::Cap`] per non-empty slot of
//! that thread's CSpace root (one level: CNodes in it are not entered),
//! then a [`Line::Map`] per page its VSpace maps in the user half, and
//! finally one [`Line::End`] with the counts. Lines go to a callback and
//! nothing is allocated. A slot or entry that makes no sense is skipped,
//! never a reason to stop: the walk cannot fail.

use core::fmt;

use crate::cap::object::MAX_CNODE_RADIX;
use crate::cap::{Cap, FrameSize, PageTableLevel, Rights, SlotRef, SlotStore};
use crate::ipc::{ThreadId, ThreadName, ThreadState};
use crate::memory::PhysAddr;
use crate::store::ObjectStore;
use crate::syscall::{Kernel, cspace_slot, ipc_buffer_slot, vspace_slot};
use crate::vspace::{ENTRIES, entry};

/// One line of the snapshot. [`Display`](fmt::Display) gives its text
/// (without the `conformance: ` prefix the kernel's console adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A thread.
    Thread(ThreadLine),
    /// A capability in a thread's CSpace root.
    Cap(CapLine),
    /// A page mapped in a thread's VSpace.
    Map(MapLine),
    /// The end of the snapshot, with how many lines of each kind came.
    End(Totals),
}

/// A thread: `thread name=.. tcb=.. priority=.. state=.. cnode=.. radix=..
/// guard=WIDTH:VALUE vspace=.. ipc_buffer=.. fault=ENDPOINT:BADGE:RIGHTS|none
/// sched=BUDGET:PERIOD|none passive=0|1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadLine {
    /// Its debugging name.
    pub name: ThreadName,
    /// Its TCB.
    pub tcb: PhysAddr,
    /// Its priority.
    pub priority: u8,
    /// What it is doing.
    pub state: ThreadState,
    /// Its CSpace root (a CNode capability), if it has one.
    pub cspace: Option<Cap>,
    /// Its VSpace's PML4, if it has one.
    pub vspace: Option<PhysAddr>,
    /// Its IPC buffer's frame, if it has one.
    pub ipc_buffer: Option<PhysAddr>,
    /// Its fault handler's endpoint, badge and rights, if it has one.
    pub fault_handler: Option<(PhysAddr, u64, Rights)>,
    /// Its scheduling context's budget and period (ticks), if it has one.
    pub sched: Option<(u64, u64)>,
    /// Whether it is a passive server (TCB::SetPassive).
    pub passive: bool,
}

/// A capability: `cap thread=.. slot=.. type=.. object=.. rights=..
/// badge=..` (frames add `size=.. device=..`, IRQ handlers
/// `bound=NOTIFICATION:BADGE|none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapLine {
    /// The thread whose CSpace root holds it.
    pub thread: ThreadName,
    /// The slot index.
    pub slot: u64,
    /// The capability.
    pub cap: Cap,
    /// For an IRQ handler: the notification its line signals, and the
    /// badge.
    pub bound: Option<(PhysAddr, u64)>,
}

/// A mapped page: `map thread=.. vaddr=.. paddr=.. size=.. write=..
/// exec=.. user=.. cache=..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLine {
    /// The thread whose VSpace maps it.
    pub thread: ThreadName,
    /// The first virtual address.
    pub vaddr: u64,
    /// The first physical address.
    pub paddr: u64,
    /// 4096, 2097152 or 1073741824.
    pub size: u64,
    /// Writable (through every level).
    pub write: bool,
    /// Executable (no level sets no-execute).
    pub exec: bool,
    /// Reachable from ring 3 (through every level).
    pub user: bool,
    /// The memory type as `Frame::Map` names it (`docs/abi.md`): the PWT
    /// bit as 1, the PCD bit as 2.
    pub cache: u8,
}

/// How many lines of each kind a snapshot printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Thread lines.
    pub threads: u64,
    /// Capability lines.
    pub caps: u64,
    /// Mapping lines.
    pub maps: u64,
}

/// A thread name as one token: `?` for none; whitespace, control
/// characters and `=` become `_` so that the line stays parseable.
struct NameToken<'a>(&'a ThreadName);

impl fmt::Display for NameToken<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return formatter.write_str("?");
        }
        for chunk in self.0.as_bytes().utf8_chunks() {
            for character in chunk.valid().chars() {
                let shown = if character.is_whitespace() || character.is_control() || character == '=' {
                    '_'
                } else {
                    character
                };
                fmt::Write::write_char(formatter, shown)?;
            }
            if !chunk.invalid().is_empty() {
                formatter.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

/// An optional physical address: hex, or `none`.
struct Optional(Option<PhysAddr>);

impl fmt::Display for Optional {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => write!(formatter, "{:#x}", address.as_u64()),
            None => formatter.write_str("none"),
        }
    }
}

/// The state's name in a thread line.
const fn state_name(state: &ThreadState) -> &'static str {
    match state {
        ThreadState::Inactive => "inactive",
        ThreadState::Runnable => "runnable",
        ThreadState::BlockedOnSend { .. } => "blocked_on_send",
        ThreadState::BlockedOnReceive { .. } => "blocked_on_receive",
        ThreadState::BlockedOnReply { .. } => "blocked_on_reply",
        ThreadState::BlockedOnNotification { .. } => "blocked_on_notification",
        ThreadState::Sleeping => "sleeping",
    }
}

/// The capability's type in a cap line.
#[must_use]
pub const fn type_name(cap: &Cap) -> &'static str {
    match cap {
        Cap::Null => "null",
        Cap::Untyped { .. } => "untyped",
        Cap::CNode { .. } => "cnode",
        Cap::Tcb { .. } => "tcb",
        Cap::SchedContext { .. } => "sched_context",
        Cap::Endpoint { .. } => "endpoint",
        Cap::Notification { .. } => "notification",
        Cap::Reply { .. } => "reply",
        Cap::Frame { .. } => "frame",
        Cap::PageTable { level: PageTableLevel::PageTable, .. } => "page_table",
        Cap::PageTable { level: PageTableLevel::PageDirectory, .. } => "page_directory",
        Cap::PageTable { level: PageTableLevel::PageDirectoryPointerTable, .. } => "pdpt",
        Cap::PageTable { level: PageTableLevel::Pml4, .. } => "pml4",
        Cap::PageTable { level: PageTableLevel::GuestSpace, .. } => "guest_space",
        Cap::AsidControl => "asid_control",
        Cap::AsidPool { .. } => "asid_pool",
        Cap::VCpu { .. } => "vcpu",
        Cap::IrqControl => "irq_control",
        Cap::IrqHandler { .. } => "irq_handler",
        Cap::IoPortControl => "io_port_control",
        Cap::SchedControl => "sched_control",
        Cap::IoPort { .. } => "io_ports",
    }
}

/// The bytes of a frame of `size`.
const fn frame_bytes(size: FrameSize) -> u64 {
    1 << size.bits()
}

/// What a cap line says its object is: an address, a port range, a line.
struct Object<'a>(&'a Cap);

impl fmt::Display for Object<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            Cap::IrqHandler { line } => write!(formatter, "{line}"),
            Cap::IoPort { first, last } => write!(formatter, "{first:#x}..{last:#x}"),
            Cap::AsidPool { object, .. } => write!(formatter, "{:#x}", object.as_u64()),
            ref cap => match cap.memory_region() {
                Some((base, _)) => write!(formatter, "{:#x}", base.as_u64()),
                None => formatter.write_str("-"),
            },
        }
    }
}

/// The rights a cap line prints: the capability's own for those that
/// carry rights, all of them for the rest (their holder has full
/// authority over the object, as in seL4).
#[must_use]
pub fn rights_of(cap: &Cap) -> Rights {
    match *cap {
        Cap::Endpoint { rights, .. } | Cap::Notification { rights, .. } | Cap::Frame { rights, .. } => rights,
        _ => Rights::ALL,
    }
}

/// `ENDPOINT:BADGE:RIGHTS` or `none`.
struct FaultHandler(Option<(PhysAddr, u64, Rights)>);

impl fmt::Display for FaultHandler {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((endpoint, badge, rights)) => {
                write!(formatter, "{:#x}:{badge:#x}:{:#x}", endpoint.as_u64(), rights.bits())
            }
            None => formatter.write_str("none"),
        }
    }
}

/// `FIRST:SECOND` in hex, or `none`.
struct Pair(Option<(u64, u64)>);

impl fmt::Display for Pair {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((first, second)) => write!(formatter, "{first:#x}:{second:#x}"),
            None => formatter.write_str("none"),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Thread(thread) => {
                let (cnode, radix, guard_bits, guard) = match thread.cspace {
                    Some(Cap::CNode { base, radix_bits, guard, guard_bits }) => {
                        (Some(base), radix_bits, guard_bits, guard)
                    }
                    _ => (None, 0, 0, 0),
                };
                write!(
                    formatter,
                    "thread name={} tcb={:#x} priority={} state={} cnode={} radix={radix} guard={guard_bits}:{guard:#x} vspace={} ipc_buffer={} fault={} sched={} passive={}",
                    NameToken(&thread.name),
                    thread.tcb.as_u64(),
                    thread.priority,
                    state_name(&thread.state),
                    Optional(cnode),
                    Optional(thread.vspace),
                    Optional(thread.ipc_buffer),
                    FaultHandler(thread.fault_handler),
                    Pair(thread.sched),
                    u8::from(thread.passive),
                )
            }
            Line::Cap(line) => {
                write!(
                    formatter,
                    "cap thread={} slot={} type={} object={} rights={:#x} badge={:#x}",
                    NameToken(&line.thread),
                    line.slot,
                    type_name(&line.cap),
                    Object(&line.cap),
                    rights_of(&line.cap).bits(),
                    line.cap.badge().unwrap_or(0),
                )?;
                if let Cap::Frame { size, is_device, .. } = line.cap {
                    write!(formatter, " size={} device={}", frame_bytes(size), u8::from(is_device))?;
                }
                if let Cap::IrqHandler { .. } = line.cap {
                    write!(
                        formatter,
                        " bound={}",
                        Pair(line.bound.map(|(notification, badge)| (notification.as_u64(), badge)))
                    )?;
                }
                Ok(())
            }
            Line::Map(map) => write!(
                formatter,
                "map thread={} vaddr={:#x} paddr={:#x} size={} write={} exec={} user={} cache={}",
                NameToken(&map.thread),
                map.vaddr,
                map.paddr,
                map.size,
                u8::from(map.write),
                u8::from(map.exec),
                u8::from(map.user),
                map.cache,
            ),
            Line::End(totals) => {
                write!(formatter, "end threads={} caps={} maps={}", totals.threads, totals.caps, totals.maps)
            }
        }
    }
}

/// The slots of the CNode a capability names: (its slots' base, how many).
fn cnode_slots(cap: &Cap) -> Option<(PhysAddr, u64)> {
    match *cap {
        Cap::CNode { base, radix_bits, .. } if radix_bits <= MAX_CNODE_RADIX => Some((base, 1 << radix_bits)),
        _ => None,
    }
}

/// The non-empty slots of the CNode `cap` names, in index order.
fn occupied<S: SlotStore>(store: &S, cap: &Cap) -> impl Iterator<Item = (u64, Cap)> {
    let (base, count) = cnode_slots(cap).unwrap_or((PhysAddr::new(0), 0));
    (0..count).filter_map(move |index| {
        let slot = SlotRef::in_cnode(base, index)?;
        let cap = store.slot(slot).cap;
        (!cap.is_null()).then_some((index, cap))
    })
}

/// Writes the snapshot of the threads `root_cnode` (a CNode capability)
/// holds TCB capabilities to, line by line, into `emit`, and returns the
/// counts it also printed as the last line. Anything but a CNode gives an
/// empty snapshot.
pub fn snapshot<S: ObjectStore>(kernel: &Kernel<S>, root_cnode: &Cap, mut emit: impl FnMut(&Line)) -> Totals {
    let store = &kernel.store;
    let mut totals = Totals::default();
    for (index, cap) in occupied(store, root_cnode) {
        let Cap::Tcb { object } = cap else { continue };
        // Only a thread's first capability in the root CNode counts.
        let seen = occupied(store, root_cnode)
            .take_while(|(earlier, _)| *earlier < index)
            .any(|(_, earlier)| earlier == Cap::Tcb { object });
        if seen {
            continue;
        }
        thread(kernel, ThreadId::new(object), &mut totals, &mut emit);
    }
    emit(&Line::End(totals));
    totals
}

/// The lines of one thread.
fn thread<S: ObjectStore>(kernel: &Kernel<S>, thread: ThreadId, totals: &mut Totals, emit: &mut impl FnMut(&Line)) {
    let store = &kernel.store;
    let tcb = store.tcb(thread);
    let name = tcb.name;
    let slot_cap = |slot: Option<SlotRef>| slot.map(|slot| store.slot(slot).cap);
    let cspace = slot_cap(cspace_slot(thread)).filter(|cap| matches!(cap, Cap::CNode { .. }));
    let vspace = match slot_cap(vspace_slot(thread)) {
        Some(Cap::PageTable { object, level: PageTableLevel::Pml4, .. }) => Some(object),
        _ => None,
    };
    let ipc_buffer = match slot_cap(ipc_buffer_slot(thread)) {
        Some(Cap::Frame { base, .. }) => Some(base),
        _ => None,
    };
    let fault_handler = match slot_cap(crate::ipc::fault_slot(thread)) {
        Some(Cap::Endpoint { object, badge, rights }) => Some((object, badge, rights)),
        _ => None,
    };
    let sched = tcb.sched_context.map(|context| {
        let context = store.sched_context(context);
        (context.budget, context.period)
    });
    let line = ThreadLine {
        name,
        tcb: thread.address(),
        priority: tcb.priority,
        state: tcb.state,
        cspace,
        vspace,
        ipc_buffer,
        fault_handler,
        sched,
        passive: tcb.passive,
    };
    totals.threads += 1;
    emit(&Line::Thread(line));
    if let Some(cspace) = cspace {
        for (slot, cap) in occupied(store, &cspace) {
            totals.caps += 1;
            let bound = match cap {
                Cap::IrqHandler { line } => kernel.irqs.line(line).and_then(|state| state.notification),
                _ => None,
            };
            emit(&Line::Cap(CapLine { thread: name, slot, cap, bound }));
        }
    }
    if let Some(pml4) = vspace {
        walk(store, pml4, &mut |page| {
            totals.maps += 1;
            emit(&Line::Map(MapLine { thread: name, ..page }));
        });
    }
}

/// Access through the levels walked so far.
#[derive(Clone, Copy)]
struct Access {
    write: bool,
    user: bool,
    exec: bool,
}

impl Access {
    const ALL: Access = Access { write: true, user: true, exec: true };

    /// What is left after an entry with `value`.
    const fn through(self, value: u64) -> Access {
        Access {
            write: self.write && value & entry::WRITABLE != 0,
            user: self.user && value & entry::USER != 0,
            exec: self.exec && value & entry::NO_EXECUTE == 0,
        }
    }
}

/// The entries of the PML4 that cover the user half.
const USER_PML4_ENTRIES: usize = ENTRIES / 2;

/// Calls `page` for every present leaf of the user half of the VSpace
/// rooted at `pml4` (the thread name is left empty), in address order.
fn walk<S: ObjectStore>(store: &S, pml4: PhysAddr, page: &mut impl FnMut(MapLine)) {
    let present = |table: PhysAddr, index: usize| {
        let value = store.table_entry(table, index);
        (value & entry::PRESENT != 0).then_some(value)
    };
    let next = |value: u64| PhysAddr::new(value & entry::ADDRESS);
    let at = |index: usize, shift: u32| (index as u64) << shift;
    for index4 in 0..USER_PML4_ENTRIES {
        // A PML4 entry cannot map a page: one that says so is skipped.
        let Some(value4) = present(pml4, index4).filter(|value| value & entry::LARGE == 0) else { continue };
        let access4 = Access::ALL.through(value4);
        for index3 in 0..ENTRIES {
            let Some(value3) = present(next(value4), index3) else { continue };
            let vaddr3 = at(index4, 39) | at(index3, 30);
            let access3 = access4.through(value3);
            if value3 & entry::LARGE != 0 {
                page(leaf(vaddr3, value3, 30, access3));
                continue;
            }
            for index2 in 0..ENTRIES {
                let Some(value2) = present(next(value3), index2) else { continue };
                let vaddr2 = vaddr3 | at(index2, 21);
                let access2 = access3.through(value2);
                if value2 & entry::LARGE != 0 {
                    page(leaf(vaddr2, value2, 21, access2));
                    continue;
                }
                for index1 in 0..ENTRIES {
                    let Some(value1) = present(next(value2), index1) else { continue };
                    page(leaf(vaddr2 | at(index1, 12), value1, 12, access2.through(value1)));
                }
            }
        }
    }
}

/// The map line of a leaf entry `value` for a page of `2^shift` bytes at
/// `vaddr`.
fn leaf(vaddr: u64, value: u64, shift: u32, access: Access) -> MapLine {
    let size = 1_u64 << shift;
    let cache = u8::from(value & entry::WRITE_THROUGH != 0) | (u8::from(value & entry::CACHE_DISABLE != 0) << 1);
    MapLine {
        thread: ThreadName::NONE,
        vaddr,
        paddr: value & entry::ADDRESS & !(size - 1),
        size,
        write: access.write,
        exec: access.exec,
        user: access.user,
        cache,
    }
}

#[cfg(test)]
mod tests;
