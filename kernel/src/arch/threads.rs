//! User threads: the register context and address space the kernel keeps
//! beside each TCB that runs in ring 3, switching between them, and the
//! counters of the expensive instructions on the kernel's path.
//!
//! `kernel_core`'s [`Tcb`](kernel_core::ipc::Tcb) holds what IPC and the
//! scheduler need (state, message, queues); what only the hardware needs
//! lives here, in a small table keyed by [`ThreadId`]: the user registers
//! saved when the thread last left ring 3, its address space (the PML4
//! for CR3), whether it is inside a system call that has not returned yet
//! (then its TCB's message goes into its registers when it runs again),
//! the physical address of its IPC buffer, and its `DEBUG_PUTCHAR` line
//! buffer.
//!
//! **The IPC buffer** (`docs/abi.md`, "Registers") is a page the thread
//! can write at any time (on SMP, while the kernel reads it). The kernel
//! touches it only through the physical-memory map, with volatile copies
//! of whole words into and out of kernel memory ([`read_ipc_buffer`],
//! [`write_ipc_buffer`]); it never makes a Rust reference into it, and
//! treats every word it reads as an untrusted number.
//!
//! **Switching.** After every system call (and after a thread exits or
//! faults) the kernel asks the scheduler who runs (`Scheduler::schedule`).
//! If that is another thread, [`switch_in_place`] leaves the running
//! thread's registers in its save area (where the entry stub saved them,
//! [`SaveAreas`]), names the next thread's save area for the stub to
//! return from and to save into at its next system call, and writes CR3
//! only when the next thread's address space differs from the loaded one.
//! The timer and fault paths use [`switch`], which also copies the next
//! thread's registers into the context they return with. The stub then
//! returns as always (SYSRETQ for a lower-half RIP, otherwise IRETQ), so
//! every check of that path applies to every thread. A thread switch after
//! a user fault returns through IRETQ (`syscall::resume_user`).
//!
//! **One CPU, interrupts off.** The table is a plain cell, like the
//! kernel's state in `crate::root`: nothing touches it concurrently.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel_core::cap::{Cap, FrameSize};
use kernel_core::ipc::{MAX_MESSAGE_WORDS, REGISTER_MESSAGE_WORDS, Resumption, ThreadId};
use kernel_core::memory::FRAME_SIZE;
use kernel_core::store::ObjectStore;
use kernel_core::syscall::{ipc_buffer_slot, vspace_slot};
use kernel_core::vspace::{AsidTable, is_live_vspace};

use super::paging::physmap_pointer;

use super::syscall::{SYSCALL_LENGTH, UserContext};

/// The words of an IPC buffer: message word `i` at index `i` (0..120),
/// the extra capability addresses and the receive slot after them
/// (`kernel_core::ipc::BUFFER_*`).
pub(crate) const IPC_BUFFER_WORDS: usize = 512;
static_assertions::const_assert!(kernel_core::ipc::BUFFER_RECEIVE_DEPTH < IPC_BUFFER_WORDS);
static_assertions::const_assert_eq!(IPC_BUFFER_WORDS as u64 * 8, FRAME_SIZE);

/// The most threads with kernel-built address spaces one run may have
/// (the fault-injection kernel's test programs).
pub(crate) const MAX_USER_THREADS: usize = 8;
/// The most threads the kernel runs at once: the kernel-built ones and
/// those user space makes (each has a table entry and a save area).
/// A thread's entry is taken back when it ends (`forget`), so this bounds
/// the threads alive at once, not the threads of a run.
pub(crate) const MAX_RUNNING_THREADS: usize = 256;

/// The longest line `DEBUG_PUTCHAR` collects before it prints.
pub(crate) const DEBUG_LINE_BYTES: usize = 256;
/// How many lines one thread may print through `DEBUG_PUTCHAR`.
pub(crate) const DEBUG_LINES_PER_PROGRAM: u32 = 32;
/// How many lines a thread of a root-task run may print (a root task's
/// report is long; a flood still ends).
pub(crate) const DEBUG_LINES_PER_ROOT_TASK_THREAD: u32 = 1024;

/// A thread's name in the kernel's output.
pub(crate) type Label = heapless::String<{ kernel_core::ipc::THREAD_NAME_BYTES }>;

/// `name` as a label (cut to fit): printable ASCII but for blanks and `=`
/// is kept, anything else becomes `_`, so that a name cannot break the
/// console's lines or pose as another field.
fn label(name: &[u8]) -> Label {
    let mut label = Label::new();
    for &byte in name {
        let shown = if byte.is_ascii_graphic() && byte != b'=' { char::from(byte) } else { '_' };
        if label.push(shown).is_err() {
            break;
        }
    }
    label
}

/// The state of `DEBUG_PUTCHAR` for one thread.
struct DebugOutput {
    line: heapless::Vec<u8, DEBUG_LINE_BYTES>,
    lines_printed: u32,
    dropped_bytes: u64,
    /// The most lines it prints.
    limit: u32,
}

impl DebugOutput {
    const EMPTY: DebugOutput =
        DebugOutput { line: heapless::Vec::new(), lines_printed: 0, dropped_bytes: 0, limit: DEBUG_LINES_PER_PROGRAM };

    fn put(&mut self, prefix: Prefix, byte: u8) {
        if self.lines_printed >= self.limit {
            self.dropped_bytes = self.dropped_bytes.saturating_add(1);
            return;
        }
        if byte == b'\n' {
            self.print_line(prefix);
            return;
        }
        // The line has room: it is printed as soon as it is full.
        let _ = self.line.push(byte);
        if self.line.is_full() {
            self.print_line(prefix);
        }
    }

    /// Prints the collected line, escaping everything but printable ASCII
    /// (the console's framing bytes 0x00 and 0xff must never appear in
    /// plain text).
    fn print_line(&mut self, prefix: Prefix) {
        prefix.print();
        for &byte in &self.line {
            if byte == b' ' || byte.is_ascii_graphic() {
                crate::print!("{}", char::from(byte));
            } else {
                crate::print!("\\x{byte:02x}");
            }
        }
        crate::println!();
        self.line.clear();
        self.lines_printed += 1;
        if self.lines_printed == self.limit {
            prefix.print();
            crate::println!("(output limit of {} lines reached: the rest is dropped)", self.limit);
        }
    }

    fn finish(&mut self, prefix: Prefix) {
        if !self.line.is_empty() {
            self.print_line(prefix);
        }
        if self.dropped_bytes != 0 {
            crate::println!("user mode: {} bytes of program output dropped", self.dropped_bytes);
        }
        *self = DebugOutput { limit: self.limit, ..DebugOutput::EMPTY };
    }
}

/// How a thread's output lines start: `user: ` when one program runs
/// alone, `user NAME: ` when several threads run.
#[derive(Clone, Copy)]
struct Prefix<'a>(Option<&'a str>);

impl Prefix<'_> {
    fn print(self) {
        match self.0 {
            None => crate::print!("user: "),
            Some(name) => crate::print!("user {name}: "),
        }
    }
}

/// What the kernel keeps for one user thread.
struct UserThread {
    thread: ThreadId,
    /// The program's name, or the name its TCB was given
    /// (`DEBUG_NAME_THREAD`) when it was adopted.
    name: Label,
    /// Its save area in [`SAVE_AREAS`]: its registers while it is not
    /// running, and where the entry stub saves them when it makes a system
    /// call (a thread made by user space keeps them in its TCB while it is
    /// off the CPU instead).
    area: usize,
    /// Its address space (the PML4's physical address).
    cr3: u64,
    /// Its IPC buffer's physical address (a page of its address space).
    ipc_buffer: u64,
    /// It left ring 3 through a system call that has not returned: its
    /// TCB's message goes into its registers when it runs again.
    in_system_call: bool,
    /// A thread user space made (`adopt`): its registers live in its TCB
    /// while it is off the CPU, and its address space and IPC buffer are
    /// whatever its TCB's slots 2 and 3 hold when it runs (`cr3` and
    /// `ipc_buffer` here are unused).
    from_tcb: bool,
    output: DebugOutput,
}

struct Table {
    threads: heapless::Vec<UserThread, MAX_RUNNING_THREADS>,
    /// The address space in CR3 while a run is in progress.
    loaded_cr3: u64,
    /// Several threads run: their output lines and ends name them.
    named: bool,
    /// The run measures the IPC benchmark (`DEBUG_BENCH_MARK`).
    benchmark: bool,
    /// The TSC and counters at the benchmark's start mark.
    bench_start: Option<(u64, PathCounts)>,
    /// Benchmark passes completed.
    bench_passes: u32,
}

struct TableCell(UnsafeCell<Table>);

// SAFETY: one CPU, interrupts off: the table is reached only through
// `with_table`, from the run set-up in `user` and from the system-call and
// exception paths, which never run concurrently and never nest.
unsafe impl Sync for TableCell {}

static TABLE: TableCell = TableCell(UnsafeCell::new(Table {
    threads: heapless::Vec::new(),
    loaded_cr3: 0,
    named: false,
    benchmark: false,
    bench_start: None,
    bench_passes: 0,
}));

fn with_table<R>(action: impl FnOnce(&mut Table) -> R) -> R {
    // SAFETY: see `TableCell`: no other reference to the table exists while
    // `action` runs, and no function here calls `with_table` inside it.
    let table = unsafe { &mut *TABLE.0.get() };
    action(table)
}

impl Table {
    fn entry(&mut self, thread: ThreadId) -> Option<&mut UserThread> {
        self.threads.iter_mut().find(|entry| entry.thread == thread)
    }

    /// A save area no thread of the table uses (there is one per table
    /// entry, so there is one whenever the table has room).
    fn free_area(&self) -> Option<usize> {
        (0..MAX_RUNNING_THREADS).find(|area| self.threads.iter().all(|entry| entry.area != *area))
    }
}

/// The threads' register save areas (see [`UserThread::area`]).
///
/// **Why the entry stub saves into them.** A system call that switches
/// threads would otherwise copy the caller's 18 registers from the kernel
/// stack into its entry and the next thread's out of its entry onto the
/// stack (two 144-byte copies per switch). Instead the stub pushes the
/// registers straight into the running thread's area (its top is in
/// `syscall_save_area_top`, which [`switch`] sets whenever it puts a thread
/// on the CPU), and returns to ring 3 from whichever area
/// `syscall_dispatch` names: a switch between two of the table's threads
/// copies nothing. Outside a run the stub saves on the kernel-entry stack
/// as before ([`reset_save_area`]).
///
/// **Aliasing.** The areas are outside [`Table`], so `with_table`'s `&mut
/// Table` never covers them. While a system call runs, `syscall_dispatch`
/// holds the one `&mut UserContext` into the caller's area; the code here
/// touches another area only through raw pointers, and the caller's own
/// area only through that reference (`switch` compares addresses first).
struct SaveAreas(UnsafeCell<[UserContext; MAX_RUNNING_THREADS]>);

// SAFETY: one CPU, interrupts off (as for `TableCell`); the areas are
// reached as described above, never concurrently.
unsafe impl Sync for SaveAreas {}

static SAVE_AREAS: SaveAreas = SaveAreas(UnsafeCell::new([UserContext::ZERO; MAX_RUNNING_THREADS]));

/// A pointer to save area `area` (below `MAX_RUNNING_THREADS`: every `area`
/// of an entry is).
fn area_pointer(area: usize) -> *mut UserContext {
    debug_assert!(area < MAX_RUNNING_THREADS);
    SAVE_AREAS.0.get().cast::<UserContext>().wrapping_add(area)
}

/// Makes the entry stub save the next system call's registers into `area`.
fn use_save_area(area: *mut UserContext) {
    let top = area.wrapping_add(1) as u64;
    super::syscall::set_save_area_top(top);
}

/// Makes the entry stub save on the kernel-entry stack again (no thread
/// of the table is running).
fn reset_save_area() {
    super::syscall::reset_save_area_top();
}

/// Starts a run: forgets every earlier thread. `named`: several threads
/// run (output lines say which); `benchmark`: `DEBUG_BENCH_MARK` measures.
pub(crate) fn begin_run(cr3: u64, named: bool, benchmark: bool) {
    with_table(|table| {
        table.threads.clear();
        reset_save_area();
        table.loaded_cr3 = cr3;
        table.named = named;
        table.benchmark = benchmark;
        table.bench_start = None;
        table.bench_passes = 0;
    });
}

/// The address space rooted at `vspace` is being deleted: if it is loaded,
/// load the boot page tables (the kernel's half only) instead, so that the
/// CPU never walks tables whose memory may be retyped. The next switch
/// loads the next thread's space.
pub(crate) fn unload_vspace(vspace: u64) {
    with_table(|table| {
        // SAFETY: reading CR3 has no side effects.
        let loaded = unsafe { x86::controlregs::cr3() } & 0x000f_ffff_ffff_f000;
        if loaded == vspace {
            let boot = super::boot::boot_pml4_phys();
            // SAFETY: the boot PML4 maps the kernel's half exactly as every
            // address space does, so the running code, its stack and every
            // static stay mapped.
            unsafe { x86::controlregs::cr3_write(boot) };
            table.loaded_cr3 = boot;
            count(&COUNTERS.cr3_writes);
        }
    });
}

/// Adds a thread that has not run yet: it starts with `context` in the
/// address space `cr3`, with its IPC buffer at physical address
/// `ipc_buffer` (a page-aligned frame of that space). Returns false if the
/// table is full.
pub(crate) fn add(thread: ThreadId, name: &'static str, context: UserContext, cr3: u64, ipc_buffer: u64) -> bool {
    with_table(|table| {
        let Some(area) = table.free_area() else { return false };
        // SAFETY: no entry uses the area, so no reference into it exists
        // (the running thread's, if any, is in its own area); the pointer
        // is inside `SAVE_AREAS` and aligned.
        unsafe { area_pointer(area).write(context) };
        let entry = UserThread {
            thread,
            name: label(name.as_bytes()),
            area,
            cr3,
            ipc_buffer,
            in_system_call: false,
            from_tcb: false,
            output: DebugOutput::EMPTY,
        };
        table.threads.push(entry).is_ok()
    })
}

/// Ends the run: prints what every thread left in its line buffer and
/// forgets them all.
pub(crate) fn end_run() {
    with_table(|table| {
        let named = table.named;
        for entry in &mut table.threads {
            entry.output.finish(Prefix(named.then_some(entry.name.as_str())));
        }
        table.threads.clear();
        reset_save_area();
        table.named = false;
        table.benchmark = false;
    });
}

/// Whether several threads run (their ends are reported as they happen).
pub(crate) fn named_run() -> bool {
    with_table(|table| table.named)
}

/// Whether `thread` can still run, if it is in the table (`None` if not): a
/// kernel-built one always; one user space made only while its TCB still
/// holds a VSpace with a live ASID and an IPC buffer (either may have been
/// deleted since it last ran).
pub(crate) fn can_run(store: &impl ObjectStore, asids: &AsidTable, thread: ThreadId) -> Option<bool> {
    let from_tcb = with_table(|table| table.entry(thread).map(|entry| entry.from_tcb))?;
    Some(!from_tcb || spaces_from_tcb(store, asids, thread).is_some())
}

/// The address space and IPC buffer a thread made by user space runs with:
/// the PML4 in its TCB's slot 2 and the frame in slot 3. The PML4's ASID
/// must still name it: once its ASID is gone (its pool deleted), unmapping
/// through that VSpace no longer works, so its mappings could outlive
/// their frames, and the CPU must never use it again (seL4 switches such a
/// thread to the kernel's tables; here it is not run).
fn spaces_from_tcb(store: &impl ObjectStore, asids: &AsidTable, thread: ThreadId) -> Option<(u64, u64)> {
    let vspace = store.slot(vspace_slot(thread)?).cap;
    let Cap::PageTable { object, .. } = vspace else { return None };
    is_live_vspace(store, asids, &vspace).then_some((object.as_u64(), ipc_buffer_from_tcb(store, thread)?))
}

/// The IPC buffer frame in a thread's TCB slot 3 (alive while that
/// capability is).
fn ipc_buffer_from_tcb(store: &impl ObjectStore, thread: ThreadId) -> Option<u64> {
    match store.slot(ipc_buffer_slot(thread)?).cap {
        Cap::Frame { base, size: FrameSize::Small, .. } => Some(base.as_u64()),
        _ => None,
    }
}

/// Why [`adopt`] could not take a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdoptError {
    /// Its TCB gives it no VSpace (with an ASID) or no IPC buffer.
    NoContext,
    /// [`MAX_RUNNING_THREADS`] threads are alive already.
    TableFull,
}

/// Takes `thread`, which user space made and set up through its TCB (a
/// VSpace, an IPC buffer, registers), into the table so that it can run.
///
/// # Errors
///
/// [`AdoptError`]: it lacks one of them, or the table is full.
pub(crate) fn adopt(
    store: &impl ObjectStore,
    asids: &AsidTable,
    thread: ThreadId,
    name: &'static str,
) -> Result<(), AdoptError> {
    if spaces_from_tcb(store, asids, thread).is_none() {
        return Err(AdoptError::NoContext);
    }
    with_table(|table| {
        if table.entry(thread).is_some() {
            return Ok(());
        }
        // Nothing is written into the area: its registers come from its TCB
        // each time it is put on the CPU.
        let Some(area) = table.free_area() else { return Err(AdoptError::TableFull) };
        // The name the TCB was given, if any (the loader names its PDs).
        let given = store.tcb(thread).name;
        let given = Some(given.as_bytes()).filter(|given| !given.is_empty());
        let entry = UserThread {
            thread,
            name: label(given.unwrap_or(name.as_bytes())),
            area,
            cr3: 0,
            ipc_buffer: 0,
            in_system_call: false,
            from_tcb: true,
            output: DebugOutput { limit: DEBUG_LINES_PER_ROOT_TASK_THREAD, ..DebugOutput::EMPTY },
        };
        table.threads.push(entry).map_err(|_| AdoptError::TableFull)
    })
}

/// `thread`'s TCB is being deleted, or the thread ended: the kernel
/// forgets it and its entry and save area are free again (a new TCB at the
/// same address is another thread; a thread resumed after it ended is
/// adopted again from its TCB).
pub(crate) fn forget(thread: ThreadId) {
    with_table(|table| {
        let named = table.named;
        if let Some(index) = table.threads.iter().position(|entry| entry.thread == thread) {
            let mut entry = table.threads.swap_remove(index);
            entry.output.finish(Prefix(named.then_some(entry.name.as_str())));
        }
    });
}

/// The physical address of `thread`'s IPC buffer, if it has one.
pub(crate) fn ipc_buffer_of(store: &impl ObjectStore, thread: ThreadId) -> Option<u64> {
    match with_table(|table| table.entry(thread).map(|entry| (entry.from_tcb, entry.ipc_buffer)))? {
        (false, buffer) => Some(buffer),
        (true, _) => ipc_buffer_from_tcb(store, thread),
    }
}

/// `thread`'s program name.
pub(crate) fn name(thread: ThreadId) -> Label {
    with_table(|table| table.entry(thread).map_or_else(|| label(b"(unknown_thread)"), |entry| entry.name.clone()))
}

/// `DEBUG_PUTCHAR` for `thread`.
pub(crate) fn put_debug_byte(thread: ThreadId, byte: u8) {
    with_table(|table| {
        let named = table.named;
        if let Some(entry) = table.entry(thread) {
            entry.output.put(Prefix(named.then_some(entry.name.as_str())), byte);
        }
    });
}

/// Prints what `thread` left in its line buffer (it ended).
pub(crate) fn finish_output(thread: ThreadId) {
    with_table(|table| {
        let named = table.named;
        if let Some(entry) = table.entry(thread) {
            entry.output.finish(Prefix(named.then_some(entry.name.as_str())));
        }
    });
}

/// Makes `next` the thread that returns to ring 3 with `context`.
///
/// `leaving` is the thread that entered the kernel, if it is to be resumed
/// later: its registers (`context` as the entry saved them) are kept and
/// it counts as inside its system call. If `next` is another thread, its
/// saved registers go into `context` and CR3 is written when its address
/// space is not the loaded one. Returns whether `next` returns from a
/// system call (its TCB's message must then go into its registers), or
/// `None` if the kernel has no context for `next`.
pub(crate) fn switch(
    store: &mut impl ObjectStore,
    asids: &AsidTable,
    leaving: Option<ThreadId>,
    next: ThreadId,
    context: &mut UserContext,
) -> Option<bool> {
    let (returns_from_call, area) = switch_in_place(store, asids, leaving, next, context)?;
    if !core::ptr::eq(area, context) {
        // SAFETY: `area` is `next`'s save area (not `context`, compared
        // above), inside `SAVE_AREAS` and aligned; no reference into it
        // exists (see `SaveAreas`).
        *context = unsafe { area.read() };
    }
    Some(returns_from_call)
}

/// [`switch`] for the system-call path, which returns to ring 3 from any
/// save area: `next`'s registers stay where they are, and the returned
/// pointer names them (`context` itself when `next` is the leaving thread).
/// The pointer is valid until the next call into this module that changes
/// the table.
pub(crate) fn switch_in_place(
    store: &mut impl ObjectStore,
    asids: &AsidTable,
    leaving: Option<ThreadId>,
    next: ThreadId,
    context: &mut UserContext,
) -> Option<(bool, *mut UserContext)> {
    with_table(|table| {
        if leaving == Some(next) {
            // The same thread goes on; if it changed its own VSpace (or lost
            // it) during the call, the new one is loaded (or it cannot run).
            if table.entry(next).is_some_and(|entry| entry.from_tcb) {
                reload_own_vspace(table, store, asids, next)?;
            }
            // A call that asked to run again (VMEnter after a host
            // interrupt, which the kernel takes on the way back to ring 3)
            // returns to its SYSCALL with its registers as they were.
            if store.tcb(next).resumption == Resumption::Again {
                store.tcb_mut(next).resumption = Resumption::Results;
                context.rip = context.rip.wrapping_sub(SYSCALL_LENGTH);
                return Some((false, core::ptr::from_mut(context)));
            }
            return Some((true, core::ptr::from_mut(context)));
        }
        if let Some(leaving) = leaving
            && let Some(entry) = table.entry(leaving)
        {
            let area = area_pointer(entry.area);
            if entry.from_tcb {
                store.tcb_mut(leaving).registers = *context;
            } else if !core::ptr::eq(area, context) {
                // SAFETY: `area` is not `context` (compared) and no other
                // reference into it exists (see `SaveAreas`); it is inside
                // `SAVE_AREAS` and aligned.
                unsafe { area.write(*context) };
            }
            entry.in_system_call = true;
        }
        let loaded_cr3 = table.loaded_cr3;
        let entry = table.entry(next)?;
        let area = area_pointer(entry.area);
        // A thread that left through a system call gets its results, makes
        // the call again (it was cancelled while blocked), or starts from
        // the registers TCB::WriteRegisters gave it (`Resumption`).
        let was_in_call = entry.in_system_call;
        // Read first: almost always `Results`, and then nothing is written.
        let resumption = if entry.from_tcb || was_in_call { store.tcb(next).resumption } else { Resumption::Results };
        if resumption != Resumption::Results {
            store.tcb_mut(next).resumption = Resumption::Results;
        }
        let restart = was_in_call && matches!(resumption, Resumption::Restart | Resumption::Again);
        let returns_from_call = was_in_call && resumption == Resumption::Results;
        let cr3 = if entry.from_tcb {
            // Its TCB says where it runs, now; a thread whose VSpace or IPC
            // buffer went is not run.
            let (cr3, _) = spaces_from_tcb(store, asids, next)?;
            let mut registers = store.tcb(next).registers;
            if restart {
                registers.rip = registers.rip.wrapping_sub(SYSCALL_LENGTH);
            }
            if core::ptr::eq(area, context) {
                // The leaving thread's area was freed and handed to `next`.
                *context = registers;
            } else {
                // SAFETY: as above: another area than `context`, with no
                // reference into it.
                unsafe { area.write(registers) };
            }
            cr3
        } else {
            if restart {
                if core::ptr::eq(area, context) {
                    context.rip = context.rip.wrapping_sub(SYSCALL_LENGTH);
                } else {
                    // SAFETY: as above: another area than `context`, inside
                    // `SAVE_AREAS` and aligned, with no reference into it.
                    let mut registers = unsafe { area.read() };
                    registers.rip = registers.rip.wrapping_sub(SYSCALL_LENGTH);
                    // SAFETY: as for the read.
                    unsafe { area.write(registers) };
                }
            }
            entry.cr3
        };
        entry.in_system_call = false;
        use_save_area(area);
        if cr3 != loaded_cr3 {
            // SAFETY: `cr3` is the PML4 of a user address space built by
            // `user` for this run (it lives until the run ends), or the PML4
            // object a capability in the thread's TCB names (it lives while
            // that capability does); either way its upper half is the
            // kernel's: the running code, its stack and every static stay
            // mapped.
            unsafe { x86::controlregs::cr3_write(cr3) };
            table.loaded_cr3 = cr3;
            count(&COUNTERS.cr3_writes);
        }
        count(&COUNTERS.thread_switches);
        Some((returns_from_call, area))
    })
}

/// A thread made by user space goes on after its own system call: loads
/// its VSpace again if the call changed it. `None` if it has none any more.
#[cold]
fn reload_own_vspace(table: &mut Table, store: &impl ObjectStore, asids: &AsidTable, thread: ThreadId) -> Option<()> {
    let (cr3, _) = spaces_from_tcb(store, asids, thread)?;
    if cr3 != table.loaded_cr3 {
        // SAFETY: the PML4 object a capability in the thread's TCB names
        // (alive while that capability is), whose upper half is the
        // kernel's: the running code, its stack and every static stay
        // mapped.
        unsafe { x86::controlregs::cr3_write(cr3) };
        table.loaded_cr3 = cr3;
        count(&COUNTERS.cr3_writes);
    }
    Some(())
}

/// `thread` left the kernel with its system call to run again (it stopped
/// at a preemption point): its saved registers are as it made the call, so
/// none of its call's results go into them when it runs next.
pub(crate) fn restart_system_call(thread: ThreadId) {
    with_table(|table| {
        if let Some(entry) = table.entry(thread) {
            entry.in_system_call = false;
        }
    });
}

/// Keeps `thread`'s registers as they were at a fault it sent to its
/// handler: when the handler's reply resumes it, it re-runs the faulting
/// instruction with every register unchanged (no system call returns).
pub(crate) fn park_after_fault(store: &mut impl ObjectStore, thread: ThreadId, context: UserContext) {
    with_table(|table| {
        if let Some(entry) = table.entry(thread) {
            if entry.from_tcb {
                store.tcb_mut(thread).registers = context;
            } else {
                // SAFETY: the fault and timer paths that call this hold no
                // reference into a save area; the pointer is inside
                // `SAVE_AREAS` and aligned.
                unsafe { area_pointer(entry.area).write(context) };
            }
            entry.in_system_call = false;
        }
    });
}

/// Puts the results of `thread`'s system call (its TCB's message,
/// `docs/abi.md`, "Registers") into its registers, and words 4 and up of a
/// longer message into its IPC buffer.
#[inline(always)]
pub(crate) fn write_results(store: &impl ObjectStore, thread: ThreadId, context: &mut UserContext) {
    let tcb = store.tcb(thread);
    context.rax = 0;
    context.rsi = tcb.info.to_word();
    context.rdi = tcb.badge;
    [context.r10, context.r8, context.r9, context.r15] = core::array::from_fn(|index| tcb.words[index]);
    let length = usize::from(tcb.info.length).min(MAX_MESSAGE_WORDS);
    if let Some(words) = tcb.words.get(REGISTER_MESSAGE_WORDS..length) {
        write_ipc_buffer(ipc_buffer_of(store, thread), REGISTER_MESSAGE_WORDS, words);
    }
}

/// Volatile access to the first `N` words of a thread's IPC buffer,
/// checked once when made: the VMEnter path's window onto its message and
/// reply.
pub(crate) struct IpcWords<const N: usize> {
    base: *mut u64,
}

impl<const N: usize> IpcWords<N> {
    /// The window onto the buffer at physical `buffer`, if it has one.
    pub(crate) fn new(buffer: Option<u64>) -> Option<IpcWords<N>> {
        Some(IpcWords { base: ipc_buffer_words(buffer, 0, N)? })
    }

    /// Word `index`, if below `N`.
    #[inline(always)]
    pub(crate) fn read(&self, index: usize) -> Option<u64> {
        // SAFETY: as in `read_ipc_buffer`: words 0..N lie inside the
        // thread's IPC buffer (checked by `new`), reached through the
        // physical-memory map, aligned; a volatile load makes no Rust
        // reference into user memory.
        (index < N).then(|| unsafe { self.base.wrapping_add(index).read_volatile() })
    }

    /// Sets word `index`, if below `N`.
    #[inline(always)]
    pub(crate) fn write(&mut self, index: usize, word: u64) {
        if index < N {
            // SAFETY: as in `read`.
            unsafe { self.base.wrapping_add(index).write_volatile(word) };
        }
    }
}

/// A pointer to word `first` of `thread`'s IPC buffer (through the
/// physical-memory map), if the thread has one and words `first..first +
/// count` lie inside it.
fn ipc_buffer_words(buffer: Option<u64>, first: usize, count: usize) -> Option<*mut u64> {
    if first.checked_add(count)? > IPC_BUFFER_WORDS {
        return None;
    }
    let physical = buffer?;
    let page = physmap_pointer(physical, FRAME_SIZE)?.cast::<u64>();
    // `first` is at most IPC_BUFFER_WORDS (checked): inside the page's
    // mapping or just past its end (then `count` is 0 and nothing is read).
    Some(page.wrapping_add(first))
}

/// Copies words `first..first + into.len()` of `thread`'s IPC buffer into
/// `into`. Leaves `into` as it is if the thread has no IPC buffer or the
/// words lie outside it.
pub(crate) fn read_ipc_buffer(buffer: Option<u64>, first: usize, into: &mut [u64]) {
    let Some(source) = ipc_buffer_words(buffer, first, into.len()) else { return };
    for (index, word) in into.iter_mut().enumerate() {
        // SAFETY: `source` and the next `into.len()` words lie inside the
        // thread's IPC buffer (checked by `ipc_buffer_words`), a frame of
        // this run or a RAM Frame object that the capability in the
        // thread's TCB keeps alive, which the physical-memory map covers,
        // 8-byte aligned. The
        // user may write it at any time, so it is read word by word with
        // volatile loads into kernel memory: no Rust reference into it
        // exists, and each value is only a number to the kernel.
        *word = unsafe { source.wrapping_add(index).read_volatile() };
    }
}

/// Copies `words` into `thread`'s IPC buffer from word `first` on. Does
/// nothing if the thread has no IPC buffer or the words lie outside it.
pub(crate) fn write_ipc_buffer(buffer: Option<u64>, first: usize, words: &[u64]) {
    let Some(destination) = ipc_buffer_words(buffer, first, words.len()) else { return };
    for (index, &word) in words.iter().enumerate() {
        // SAFETY: as in `read_ipc_buffer`: the words lie inside the thread's
        // IPC buffer, reached through the physical-memory map, aligned; a
        // volatile store makes no Rust reference into user memory.
        unsafe { destination.wrapping_add(index).write_volatile(word) };
    }
}

/// Counters of the expensive instructions on the kernel's path, since boot.
pub(crate) struct PathCounters {
    /// Kernel entries through SYSCALL.
    pub(crate) syscalls: AtomicU64,
    /// Returns to ring 3 through SYSRETQ.
    pub(crate) sysrets: AtomicU64,
    /// Returns to ring 3 through IRETQ.
    pub(crate) iretqs: AtomicU64,
    /// CR3 writes (address-space switches).
    pub(crate) cr3_writes: AtomicU64,
    /// Switches from one user thread to another.
    pub(crate) thread_switches: AtomicU64,
    /// Long system calls stopped at a preemption point (to run again).
    pub(crate) preempted_calls: AtomicU64,
    /// Guest runs (VMEnter) a host interrupt ended, to run again.
    pub(crate) interrupted_guests: AtomicU64,
    /// Calls and ReplyRecvs the IPC fast path took.
    pub(crate) fast_ipc: AtomicU64,
}

/// How many system calls have entered the kernel so far, and how many of
/// them the IPC fast path took.
pub(crate) fn system_calls() -> (u64, u64) {
    (COUNTERS.syscalls.load(Ordering::Relaxed), COUNTERS.fast_ipc.load(Ordering::Relaxed))
}

/// How many guest runs a host interrupt has ended so far.
pub(crate) fn interrupted_guests() -> u64 {
    COUNTERS.interrupted_guests.load(Ordering::Relaxed)
}

/// How many long system calls have stopped at a preemption point so far.
pub(crate) fn preempted_calls() -> u64 {
    COUNTERS.preempted_calls.load(Ordering::Relaxed)
}

/// The kernel's path counters. SWAPGS and WRMSR are not counted: the
/// path has none (one CPU, no per-CPU area, no per-thread MSRs yet).
pub(crate) static COUNTERS: PathCounters = PathCounters {
    syscalls: AtomicU64::new(0),
    sysrets: AtomicU64::new(0),
    iretqs: AtomicU64::new(0),
    cr3_writes: AtomicU64::new(0),
    thread_switches: AtomicU64::new(0),
    preempted_calls: AtomicU64::new(0),
    interrupted_guests: AtomicU64::new(0),
    fast_ipc: AtomicU64::new(0),
};

/// Adds one to a counter (one CPU: a plain load and store would do).
pub(crate) fn count(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Whether the benchmark is measuring: the system-call path then reads
/// the TSC at its phases (`profile_*`).
static PROFILING: AtomicBool = AtomicBool::new(false);

/// TSC ticks spent, while profiling, in: the whole of `syscall_dispatch`;
/// copying the registers in and `kernel_core::syscall::handle`; choosing
/// the next thread, switching and copying its results out.
static PROFILE_TICKS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// The phases [`PROFILE_TICKS`] counts.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    Dispatch = 0,
    Handle = 1,
    Switch = 2,
}

/// Whether the benchmark is measuring.
pub(crate) fn profiling() -> bool {
    PROFILING.load(Ordering::Relaxed)
}

/// Adds `ticks` to `phase`'s total.
pub(crate) fn profile(phase: Phase, ticks: u64) {
    let counter = &PROFILE_TICKS[phase as usize];
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(ticks), Ordering::Relaxed);
}

/// A snapshot of [`COUNTERS`].
#[derive(Clone, Copy)]
struct PathCounts([u64; 5]);

impl PathCounts {
    fn now() -> PathCounts {
        let counters = &COUNTERS;
        PathCounts(
            [&counters.syscalls, &counters.sysrets, &counters.iretqs, &counters.cr3_writes, &counters.thread_switches]
                .map(|counter| counter.load(Ordering::Relaxed)),
        )
    }
}

/// A value per round trip with two decimals, from a total over `rounds`.
struct PerRound {
    total: u64,
    rounds: u64,
}

impl core::fmt::Display for PerRound {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hundredths = u128::from(self.total) * 100 / u128::from(self.rounds.max(1));
        write!(formatter, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

/// `DEBUG_BENCH_MARK`: with `rounds` 0 a measured pass starts (the TSC
/// and the counters are noted); otherwise it ends after `rounds` round
/// trips and the kernel prints the figures per round trip. The first pass
/// runs the plain path; later passes also read the TSC at the phases of
/// the system-call path and say where the instructions go (those reads
/// cost instructions of their own, so the first pass is the figure).
/// Ignored unless the run is a benchmark.
pub(crate) fn bench_mark(rounds: u64) {
    let tsc = super::cpu::read_tsc();
    let counts = PathCounts::now();
    let start = with_table(|table| {
        if !table.benchmark {
            return None;
        }
        if rounds == 0 {
            table.bench_start = Some((tsc, counts));
            for counter in &PROFILE_TICKS {
                counter.store(0, Ordering::Relaxed);
            }
            PROFILING.store(table.bench_passes > 0, Ordering::Relaxed);
            return None;
        }
        let profiled = PROFILING.swap(false, Ordering::Relaxed);
        table.bench_passes += 1;
        table.bench_start.take().map(|start| (start, profiled))
    });
    let Some(((start_tsc, start_counts), profiled)) = start else { return };
    let per_round = |total: u64| PerRound { total, rounds };
    let instructions = tsc.wrapping_sub(start_tsc);
    if profiled {
        let [dispatch, handle, switch] = PROFILE_TICKS.each_ref().map(|counter| counter.load(Ordering::Relaxed));
        crate::println!(
            "bench: profiled pass: {} per round trip with the profiling's own TSC reads; of that {} in \
             syscall_dispatch ({} copying registers in and in kernel_core::syscall::handle, {} choosing the next \
             thread, switching and copying results out), {} outside it (entry and exit stubs, SYSCALL, SYSRET, the \
             two programs' loops)",
            per_round(instructions),
            per_round(dispatch),
            per_round(handle),
            per_round(switch),
            per_round(instructions.saturating_sub(dispatch))
        );
        return;
    }
    let delta: [u64; 5] = core::array::from_fn(|index| counts.0[index].wrapping_sub(start_counts.0[index]));
    let [syscalls, sysrets, iretqs, cr3_writes, switches] = delta;
    crate::println!(
        "bench: ipc round trip (Call + ReplyRecv, 1 word, two address spaces): {rounds} round trips, {instructions} \
         TSC ticks, {} per round trip",
        per_round(instructions)
    );
    crate::println!(
        "bench: per round trip: {} SYSCALL, {} SYSRET, {} IRETQ, {} CR3 writes, {} thread switches, 0.00 SWAPGS, 0.00 \
         WRMSR",
        per_round(syscalls),
        per_round(sysrets),
        per_round(iretqs),
        per_round(cr3_writes),
        per_round(switches)
    );
}
