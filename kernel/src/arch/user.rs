//! Ring 3: user address spaces, entering user mode, and ending a user
//! program when it exits or faults.
//!
//! A run (issue "Microkernel core") is one or more kernel threads, each
//! running its program in its own address space, from the boot flow until
//! no thread can run ([`run_threads`]; [`run_program`] runs one program as
//! the root thread). Each address space is a fresh PML4 whose upper half is
//! the kernel's (the physical-memory map at entry 256 and the kernel at
//! entry 511, shared page tables, supervisor-only: the U/S bit is clear in
//! both PML4 entries, which is enough to forbid ring 3 the whole subtree)
//! and whose lower half holds only the program's pages, with U/S set:
//!
//! | virtual | what | permissions |
//! | --- | --- | --- |
//! | [`CODE_BASE`] (0x400000) | the program's code, up to [`CODE_PAGES`] pages | read-only, executable |
//! | below [`STACK_TOP`] (0x800000) | the stack, [`STACK_PAGES`] pages | read-write, no-execute |
//! | [`IPC_BUFFER`] (0x801000) | the thread's IPC buffer, one page (0x800000 stays unmapped) | read-write, no-execute |
//! | the last page of the lower half | optional code ending at 0x7fff_ffff_ffff (the SYSRET test) | read-only, executable |
//!
//! The program enters ring 3 with IRETQ and interrupts off, so a program
//! that loops without a system call or a fault keeps the CPU; except in a
//! preemptive run ([`run_threads_preemptive`], `arch::timer`), where the
//! threads run with interrupts on and the local APIC timer takes the CPU
//! back when a scheduling context's budget runs out.
//! Anything else a program does ends in the kernel: a system call, after
//! which the thread the scheduler picks returns to ring 3 (`threads`
//! switches registers and CR3), or `THREAD_EXIT` or an exception, which
//! ends the thread; another thread runs, or, when none can, the run ends
//! and [`run_threads`] returns to the boot flow (the kernel context saved
//! on entry is resumed; the kernel-entry stack is abandoned). One fault
//! ends a thread, so a program cannot make the kernel loop on its faults.
//!
//! Frames come from the boot frame allocator, are reached through the
//! physical-memory map, and all go back to it when the run ends.

use core::cell::UnsafeCell;

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::ipc::{self, ThreadId};
use kernel_core::memory::{FRAME_SIZE, PhysAddr, PhysFrame};
use kernel_core::syscall::Kernel;
// Page-table entry bits (Intel SDM Vol. 3A, 4.5), as the VSpace code uses them.
use kernel_core::vspace::entry::{ADDRESS as ADDRESS_MASK, NO_EXECUTE, PRESENT, USER, WRITABLE};
use raw_cpuid::CpuId;
use static_assertions::const_assert_eq;
use x86::controlregs::Cr4;

use super::idt::TrapFrame;
use super::objects::PhysStore;
use super::paging::physmap_pointer;
use super::syscall::{self, UserContext};
use super::{boot, cpu, gdt, threads, timer};

/// Where a program's code starts.
pub(crate) const CODE_BASE: u64 = 0x40_0000;
/// The most code pages a program may have.
pub(crate) const CODE_PAGES: usize = 4;
/// The top of a program's stack (its first push lands just below).
pub(crate) const STACK_TOP: u64 = 0x80_0000;
/// The stack's size in pages; the page below it stays unmapped.
pub(crate) const STACK_PAGES: u64 = 4;
/// The thread's IPC buffer (`docs/abi.md`, "Registers"): one page, above
/// the stack with an unmapped page between them. The kernel reaches it only
/// through the physical-memory map (`threads`), never at this address.
pub(crate) const IPC_BUFFER: u64 = 0x80_1000;
/// The last page of the lower half, for code that must end exactly at
/// the top of the user address range.
pub(crate) const TOP_USER_PAGE: u64 = 0x7fff_ffff_f000;

const ENTRIES: u64 = 512;
/// The first PML4 entry of the upper (kernel) half.
const FIRST_KERNEL_PML4_ENTRY: u64 = 256;

/// A page's size in bytes, as a `usize`.
const PAGE_BYTES: usize = 4096;
const_assert_eq!(PAGE_BYTES as u64, FRAME_SIZE);

/// Which ring-3 protections the CPU enforces, for the boot log.
pub(crate) struct UserModeProtection {
    /// Supervisor-mode execution prevention: ring 0 cannot run user pages.
    pub(crate) smep: bool,
    /// Supervisor-mode access prevention: ring 0 cannot touch user pages
    /// (unless it sets RFLAGS.AC, which the kernel never does).
    pub(crate) smap: bool,
    /// User-mode instruction prevention: SGDT, SIDT, SLDT, SMSW and STR
    /// fault in ring 3 (they would reveal kernel addresses).
    pub(crate) umip: bool,
}

/// Prepares ring 3: SYSCALL/SYSRET, TSS RSP0 (the kernel-entry stack) and
/// SMEP, SMAP and UMIP where the CPU has them.
///
/// # Safety
///
/// Call once on the boot CPU with interrupts off, after `gdt::init` and
/// `idt::init`.
pub(crate) unsafe fn init() -> UserModeProtection {
    // SAFETY: per this function's contract; the GDT is loaded.
    unsafe { syscall::init() };
    // SAFETY: once, at boot, before ring 3 runs (this function's contract).
    unsafe { super::fpu::init() };
    // SAFETY: as above; the kernel-entry stack serves only entries from
    // ring 3, which never nest (interrupts are off in the kernel).
    unsafe { gdt::set_ring0_stack(syscall::kernel_entry_stack_range().end) };
    let features = CpuId::new().get_extended_feature_info();
    let protection = UserModeProtection {
        smep: features.as_ref().is_some_and(|features| features.has_smep()),
        smap: features.as_ref().is_some_and(|features| features.has_smap()),
        umip: features.as_ref().is_some_and(|features| features.has_umip()),
    };
    // SAFETY: reading CR4 has no side effects.
    let mut cr4 = unsafe { x86::controlregs::cr4() };
    cr4.set(Cr4::CR4_ENABLE_SMEP, protection.smep);
    cr4.set(Cr4::CR4_ENABLE_SMAP, protection.smap);
    cr4.set(Cr4::CR4_ENABLE_UMIP, protection.umip);
    // SAFETY: each bit set is one the CPU reports (CPUID leaf 7); the kernel
    // neither runs nor touches user pages (SMEP, SMAP) and does not use the
    // instructions UMIP restricts in ring 3.
    unsafe { x86::controlregs::cr4_write(cr4) };
    protection
}

/// Why a program could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetupError {
    /// The frame allocator is empty.
    OutOfFrames,
    /// A frame lies outside the physical-memory map (above 4 GiB).
    FrameNotMapped,
    /// The program is larger than its pages.
    ProgramTooLarge,
    /// The address space's frame list is full.
    TooManyFrames,
    /// The kernel's root thread, which runs the program, cannot be made
    /// the running thread (or, for several threads, none of them can run).
    NoRootThread,
    /// A preemptive run needs the local APIC timer, which is unreachable.
    NoTimer,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(match self {
            SetupError::OutOfFrames => "out of frames",
            SetupError::FrameNotMapped => "a frame lies outside the physical-memory map",
            SetupError::ProgramTooLarge => "the program does not fit its pages",
            SetupError::TooManyFrames => "too many page-table frames",
            SetupError::NoRootThread => "the root thread cannot be made the running thread",
            SetupError::NoTimer => "the local APIC timer is unreachable",
        })
    }
}

/// The most frames one address space holds (tables and pages).
const MAX_FRAMES: usize = 32;

/// A user address space: its PML4 and every frame it owns.
struct AddressSpace {
    pml4: PhysFrame,
    frames: heapless::Vec<PhysFrame, MAX_FRAMES>,
    no_execute: u64,
}

/// A pointer to the 8-byte entry `index` of the page table in `table`.
fn entry_pointer(table: PhysFrame, index: u64) -> Option<*mut u64> {
    if index >= ENTRIES {
        return None;
    }
    physmap_pointer(table.start().as_u64() + index * 8, 8).map(<*mut u8>::cast::<u64>)
}

impl AddressSpace {
    /// A new address space that maps only the kernel's upper half.
    fn new(allocator: &mut FrameAllocator) -> Result<Self, SetupError> {
        let no_execute = if super::paging::no_execute_enabled() { NO_EXECUTE } else { 0 };
        let mut frames = heapless::Vec::new();
        let pml4 = Self::zeroed_frame(allocator, &mut frames)?;
        let mut space = AddressSpace { pml4, frames, no_execute };
        let boot_pml4 =
            PhysFrame::from_start(PhysAddr::new(boot::boot_pml4_phys())).ok_or(SetupError::FrameNotMapped)?;
        for index in FIRST_KERNEL_PML4_ENTRY..ENTRIES {
            let source = entry_pointer(boot_pml4, index).ok_or(SetupError::FrameNotMapped)?;
            // SAFETY: the boot PML4 is mapped (physical-memory map), aligned,
            // and only ever written by `paging` during early boot, before any
            // program runs; a volatile read makes no Rust reference.
            let entry = unsafe { source.read_volatile() };
            // The kernel's half is supervisor-only: clear U/S in case the
            // boot tables ever set it.
            space.write_entry(pml4, index, entry & !USER)?;
        }
        Ok(space)
    }

    /// Takes a frame, checks that the physical-memory map reaches it, zeroes
    /// it and records it in `frames` (so that it is freed with the space).
    fn zeroed_frame(
        allocator: &mut FrameAllocator,
        frames: &mut heapless::Vec<PhysFrame, MAX_FRAMES>,
    ) -> Result<PhysFrame, SetupError> {
        let frame = allocator.allocate().ok_or(SetupError::OutOfFrames)?;
        let Some(pointer) = physmap_pointer(frame.start().as_u64(), FRAME_SIZE) else {
            // Handed back at once: the allocator just gave it out.
            let _ = allocator.free(frame);
            return Err(SetupError::FrameNotMapped);
        };
        if frames.push(frame).is_err() {
            let _ = allocator.free(frame);
            return Err(SetupError::TooManyFrames);
        }
        // SAFETY: the allocator handed this frame to us alone, the
        // physical-memory map covers it (checked above), and no reference
        // into it exists.
        unsafe { core::ptr::write_bytes(pointer, 0, PAGE_BYTES) };
        Ok(frame)
    }

    /// Whether `frame` belongs to this address space.
    fn owns(&self, frame: PhysFrame) -> bool {
        self.frames.contains(&frame)
    }

    fn read_entry(&self, table: PhysFrame, index: u64) -> Result<u64, SetupError> {
        if !self.owns(table) {
            return Err(SetupError::FrameNotMapped);
        }
        let pointer = entry_pointer(table, index).ok_or(SetupError::FrameNotMapped)?;
        // SAFETY: `table` is a frame of this address space (checked), mapped
        // and aligned; no Rust reference into it exists.
        Ok(unsafe { pointer.read_volatile() })
    }

    fn write_entry(&mut self, table: PhysFrame, index: u64, entry: u64) -> Result<(), SetupError> {
        if !self.owns(table) {
            return Err(SetupError::FrameNotMapped);
        }
        let pointer = entry_pointer(table, index).ok_or(SetupError::FrameNotMapped)?;
        // SAFETY: as in `read_entry`; the space is not live in CR3 while it
        // is being built, so the CPU does not walk it concurrently.
        unsafe { pointer.write_volatile(entry) };
        Ok(())
    }

    /// Maps a new zeroed frame at `virtual_address` (a lower-half page)
    /// with `leaf_flags` (plus PRESENT and USER); returns the frame.
    fn map_new_page(
        &mut self,
        allocator: &mut FrameAllocator,
        virtual_address: u64,
        leaf_flags: u64,
    ) -> Result<PhysFrame, SetupError> {
        let mut table = self.pml4;
        for shift in [39, 30, 21] {
            let index = (virtual_address >> shift) & (ENTRIES - 1);
            let entry = self.read_entry(table, index)?;
            table = if entry & PRESENT != 0 {
                PhysFrame::from_start(PhysAddr::new(entry & ADDRESS_MASK)).ok_or(SetupError::FrameNotMapped)?
            } else {
                // Tables allow everything; each leaf decides.
                let next = Self::zeroed_frame(allocator, &mut self.frames)?;
                self.write_entry(table, index, next.start().as_u64() | PRESENT | WRITABLE | USER)?;
                next
            };
        }
        let page = Self::zeroed_frame(allocator, &mut self.frames)?;
        let index = (virtual_address >> 12) & (ENTRIES - 1);
        self.write_entry(table, index, page.start().as_u64() | PRESENT | USER | leaf_flags)?;
        Ok(page)
    }

    /// Maps read-only executable pages at `start` holding `code`, placed
    /// `offset` bytes into the first page.
    fn map_code(
        &mut self,
        allocator: &mut FrameAllocator,
        start: u64,
        pages: usize,
        offset: usize,
        code: &[u8],
    ) -> Result<(), SetupError> {
        if offset.checked_add(code.len()).is_none_or(|end| end > pages * PAGE_BYTES) {
            return Err(SetupError::ProgramTooLarge);
        }
        for page_index in 0..pages {
            let page_start = page_index * PAGE_BYTES;
            let page_end = page_start + PAGE_BYTES;
            // The part of [offset, offset + len) inside this page.
            let from = offset.max(page_start);
            let to = (offset + code.len()).min(page_end);
            if from >= to {
                continue;
            }
            let frame = self.map_new_page(allocator, start + page_start as u64, 0)?;
            let pointer = physmap_pointer(frame.start().as_u64(), FRAME_SIZE).ok_or(SetupError::FrameNotMapped)?;
            let source = &code[from - offset..to - offset];
            // SAFETY: `from - page_start` is below PAGE_BYTES (from lies in
            // this page), so the result stays inside the frame's mapping.
            let destination = unsafe { pointer.add(from - page_start) };
            // SAFETY: the frame is ours and mapped (checked), the range lies
            // inside it (from and to lie in this page), and the source is
            // kernel data that cannot overlap a freshly allocated frame.
            unsafe { core::ptr::copy_nonoverlapping(source.as_ptr(), destination, source.len()) };
        }
        Ok(())
    }

    /// Gives every frame back to the allocator. The space must not be in
    /// CR3.
    fn release(self, allocator: &mut FrameAllocator) {
        for frame in self.frames {
            if let Err(error) = allocator.free(frame) {
                panic!("frame allocator refused a user frame it handed out: {error}");
            }
        }
    }
}

/// A test program: machine code copied into a fresh address space.
#[derive(Clone, Copy)]
pub(crate) struct Program {
    /// The program's name (as `inject=` selects it).
    pub(crate) name: &'static str,
    /// Code copied to [`CODE_BASE`], where it starts running.
    pub(crate) code: &'static [u8],
    /// Code copied to the end of [`TOP_USER_PAGE`], so that its last byte is
    /// the last byte of the lower half; empty for none.
    pub(crate) top_of_lower_half: &'static [u8],
}

/// How a program (or, in a run of several threads, the last thread) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgramEnd {
    /// `THREAD_EXIT` with this code.
    Exited(u64),
    /// An exception with this vector (reported when it happened).
    Faulted(u64),
    /// A system call left the thread unable to run (reported when it
    /// happened): it blocked, and no other thread could take over.
    Blocked,
}

/// The running program's state.
struct RunState {
    running: bool,
    end: Option<ProgramEnd>,
    /// The run ends when this thread ends, whatever else could still run
    /// (a preemptive run whose other threads spin forever).
    ends_with: Option<ThreadId>,
    /// A root-task run: when the root exits with code 0 the run goes on
    /// with the threads it started, until none can run.
    system: Option<SystemRun>,
    /// Called once when the root has exited with code 0.
    after_root_exit: Option<fn()>,
}

/// What a root-task run recorded about the system the root started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SystemRun {
    /// The root thread.
    root: Option<ThreadId>,
    /// How the root ended, once it has.
    pub(crate) root_end: Option<ProgramEnd>,
    /// Threads other than the root that faulted or exited with a code
    /// other than 0.
    pub(crate) failed_threads: u32,
    /// Threads other than the root that exited with code 0.
    pub(crate) finished_threads: u32,
}

struct RunStateCell(UnsafeCell<RunState>);

// SAFETY: one CPU, interrupts off: the state is touched only through
// `with_run_state`, from `run_threads` and from the syscall and exception
// handlers that run while the program is in ring 3, never concurrently
// and never nested.
unsafe impl Sync for RunStateCell {}

static RUN_STATE: RunStateCell = RunStateCell(UnsafeCell::new(RunState {
    running: false,
    end: None,
    ends_with: None,
    system: None,
    after_root_exit: None,
}));

fn with_run_state<R>(action: impl FnOnce(&mut RunState) -> R) -> R {
    // SAFETY: see `RunStateCell`: no other reference exists while `action`
    // runs, and `action` never re-enters.
    let state = unsafe { &mut *RUN_STATE.0.get() };
    action(state)
}

/// One thread of a run: a kernel thread (TCB) and the program it runs in
/// its own address space.
#[derive(Clone, Copy)]
pub(crate) struct UserThreadSpec {
    /// The kernel thread, runnable and with its CSpace set up.
    pub(crate) thread: ThreadId,
    /// Its program.
    pub(crate) program: Program,
    /// RDI and RSI when it starts.
    pub(crate) arguments: [u64; 2],
}

/// Builds `program`'s address space: code, optional top-of-lower-half code,
/// stack, IPC buffer. Returns it with the IPC buffer's frame.
fn build_space(allocator: &mut FrameAllocator, program: &Program) -> Result<(AddressSpace, PhysFrame), SetupError> {
    let mut space = AddressSpace::new(allocator)?;
    let setup = (|| {
        space.map_code(allocator, CODE_BASE, CODE_PAGES, 0, program.code)?;
        if !program.top_of_lower_half.is_empty() {
            let offset = PAGE_BYTES.checked_sub(program.top_of_lower_half.len());
            let offset = offset.ok_or(SetupError::ProgramTooLarge)?;
            space.map_code(allocator, TOP_USER_PAGE, 1, offset, program.top_of_lower_half)?;
        }
        for page in 1..=STACK_PAGES {
            space.map_new_page(allocator, STACK_TOP - page * FRAME_SIZE, WRITABLE | space.no_execute)?;
        }
        space.map_new_page(allocator, IPC_BUFFER, WRITABLE | space.no_execute)
    })();
    match setup {
        Ok(ipc_buffer) => Ok((space, ipc_buffer)),
        Err(error) => {
            space.release(allocator);
            Err(error)
        }
    }
}

/// Builds `program`'s address space, runs it in ring 3 as the root thread
/// (`crate::root`: its kernel system calls act on the root TCB and CSpace)
/// until it exits, faults or blocks, and frees everything it used.
pub(crate) fn run_program(allocator: &mut FrameAllocator, program: &Program) -> Result<ProgramEnd, SetupError> {
    if !crate::root::prepare_root_thread() {
        return Err(SetupError::NoRootThread);
    }
    let root = crate::root::with_kernel(|_, root| root).ok_or(SetupError::NoRootThread)?;
    run_threads(allocator, &[UserThreadSpec { thread: root, program: *program, arguments: [0; 2] }], false)
}

/// Runs the root task (`arch::root_task` built it) and every thread it
/// makes, switching as the scheduler decides. A root that exits with code
/// 0 leaves the threads it started running (a loader that built the
/// system and is done: `after_root_exit` is called then); the run ends
/// when no thread can run any more, or when the root ends otherwise (a
/// fault, another code: the system is not trusted to go on). Its
/// threads' output lines name them (`root`, `pd`).
///
/// Returns how the root ended and what the others did.
pub(crate) fn run_root_task(root: ThreadId, after_root_exit: fn()) -> Result<SystemRun, SetupError> {
    let kernel_root = cpu::read_cr3();
    threads::begin_run(kernel_root, true, false);
    let mut context = UserContext::default();
    let started = crate::root::with_kernel(|kernel, _| {
        if threads::adopt(&kernel.store, &kernel.asids, root, "root").is_err()
            || kernel.scheduler.schedule(&mut kernel.store) != Some(root)
        {
            return None;
        }
        threads::switch(&mut kernel.store, &kernel.asids, None, root, &mut context)
    });
    if started.is_none() {
        threads::end_run();
        return Err(SetupError::NoRootThread);
    }
    let system = SystemRun { root: Some(root), ..SystemRun::default() };
    with_run_state(|state| {
        *state = RunState {
            running: true,
            end: None,
            ends_with: Some(root),
            system: Some(system),
            after_root_exit: Some(after_root_exit),
        }
    });
    // With a local APIC the run is preemptive: budgets hold and a thread
    // that spins cannot keep the CPU.
    let preemptive = super::apic::present();
    if preemptive {
        crate::root::with_kernel(|kernel, _| {
            timer::start_run(kernel, &[root]);
            timer::dispatch(kernel);
        });
        // SAFETY: as below; the APIC is present and `timer::init` installed
        // its gates at boot.
        unsafe { timer::run_in_user_mode_preemptible(&context) };
    } else {
        // SAFETY:
        // 1. `threads::switch` loaded CR3 with the root's VSpace, which maps
        //    its image and its stack below its RSP as user pages.
        // 2. `init` set TSS RSP0 to the kernel-entry stack.
        // 3. No other program runs (runs start only from this module's
        //    functions, which do not nest).
        // 4. The handlers that end the run hold nothing with a destructor.
        unsafe { syscall::run_in_user_mode(&context) };
    }
    if preemptive {
        let _ = timer::end_run();
    }
    // SAFETY: back to the kernel's own root, which maps everything the
    // kernel uses.
    unsafe { x86::controlregs::cr3_write(kernel_root) };
    let (end, system) = with_run_state(|state| {
        state.running = false;
        state.ends_with = None;
        (state.end.take(), state.system.take())
    });
    threads::end_run();
    let mut system = system.ok_or(SetupError::NoRootThread)?;
    if system.root_end.is_none() {
        system.root_end = Some(end.ok_or(SetupError::NoRootThread)?);
    }
    Ok(system)
}

/// Runs several threads, each in its own address space built from its
/// program, switching between them as the scheduler decides, until no
/// thread can run; frees every frame of their address spaces. The threads
/// must be set up in the kernel (CSpace, priority, runnable); the one the
/// scheduler picks first starts. Each thread's output lines and its end
/// are printed with its program's name when there are several.
/// `benchmark`: the run measures the IPC benchmark (`DEBUG_BENCH_MARK`).
///
/// Returns how the last thread ended.
pub(crate) fn run_threads(
    allocator: &mut FrameAllocator,
    specs: &[UserThreadSpec],
    benchmark: bool,
) -> Result<ProgramEnd, SetupError> {
    run(allocator, specs, benchmark, None)
}

/// Like [`run_threads`], but preemptive (`arch::timer`): the threads run
/// with interrupts enabled, the local APIC timer charges their scheduling
/// contexts and switches threads, and the run ends when `ends_with` ends
/// (the others may spin forever). Returns how `ends_with` ended and what
/// the timer measured.
pub(crate) fn run_threads_preemptive(
    allocator: &mut FrameAllocator,
    specs: &[UserThreadSpec],
    ends_with: ThreadId,
) -> Result<(ProgramEnd, timer::Measured), SetupError> {
    if !super::apic::present() {
        return Err(SetupError::NoTimer);
    }
    let end = run(allocator, specs, false, Some(ends_with))?;
    Ok((end, timer::end_run()))
}

/// [`run_threads`]; preemptive, ending with that thread, if `ends_with`.
fn run(
    allocator: &mut FrameAllocator,
    specs: &[UserThreadSpec],
    benchmark: bool,
    ends_with: Option<ThreadId>,
) -> Result<ProgramEnd, SetupError> {
    let mut spaces: heapless::Vec<AddressSpace, { threads::MAX_USER_THREADS }> = heapless::Vec::new();
    let mut ipc_buffers: heapless::Vec<PhysFrame, { threads::MAX_USER_THREADS }> = heapless::Vec::new();
    let release_all = |spaces: heapless::Vec<AddressSpace, { threads::MAX_USER_THREADS }>,
                       allocator: &mut FrameAllocator| {
        for space in spaces {
            space.release(allocator);
        }
    };
    for spec in specs {
        let (space, ipc_buffer) = match build_space(allocator, &spec.program) {
            Ok(built) => built,
            Err(error) => {
                release_all(spaces, allocator);
                return Err(error);
            }
        };
        // The buffer's frame belongs to the space (it is freed with it).
        if ipc_buffers.push(ipc_buffer).is_err() {
            space.release(allocator);
            release_all(spaces, allocator);
            return Err(SetupError::TooManyFrames);
        }
        if let Err(space) = spaces.push(space) {
            space.release(allocator);
            release_all(spaces, allocator);
            return Err(SetupError::TooManyFrames);
        }
    }
    let kernel_root = cpu::read_cr3();
    threads::begin_run(kernel_root, specs.len() > 1, benchmark);
    for ((spec, space), ipc_buffer) in specs.iter().zip(&spaces).zip(&ipc_buffers) {
        println!(
            "user mode: running {} (code at {CODE_BASE:#x}, stack below {STACK_TOP:#x}, {} frames)",
            spec.program.name,
            space.frames.len()
        );
        let context = UserContext {
            rip: CODE_BASE,
            rsp: STACK_TOP,
            rdi: spec.arguments[0],
            rsi: spec.arguments[1],
            ..UserContext::default()
        };
        // The table holds MAX_USER_THREADS, as many as `spaces`.
        let _ = threads::add(
            spec.thread,
            spec.program.name,
            context,
            space.pml4.start().as_u64(),
            ipc_buffer.start().as_u64(),
        );
    }
    if ends_with.is_some() {
        let threads: heapless::Vec<ThreadId, { threads::MAX_USER_THREADS }> =
            specs.iter().map(|spec| spec.thread).collect();
        crate::root::with_kernel(|kernel, _| timer::start_run(kernel, &threads));
    }
    let mut context = UserContext::default();
    // A thread that has not run yet: its registers are loaded as they are.
    let started = crate::root::with_kernel(|kernel, _| {
        let first = next_runnable(kernel)?;
        threads::switch(&mut kernel.store, &kernel.asids, None, first, &mut context)
    });
    if started.is_none() {
        if ends_with.is_some() {
            let _ = timer::end_run();
        }
        threads::end_run();
        // SAFETY: back to the kernel's own root (a switch that found no
        // thread wrote no CR3, but this keeps the rule simple).
        unsafe { x86::controlregs::cr3_write(kernel_root) };
        release_all(spaces, allocator);
        return Err(SetupError::NoRootThread);
    }
    with_run_state(|state| {
        *state = RunState { running: true, end: None, ends_with, system: None, after_root_exit: None }
    });
    if ends_with.is_some() {
        crate::root::with_kernel(|kernel, _| timer::dispatch(kernel));
        // SAFETY: as below; `run_threads_preemptive` checked the APIC,
        // whose gates `timer::init` installed at boot.
        unsafe { timer::run_in_user_mode_preemptible(&context) };
    } else {
        // SAFETY:
        // 1. `threads::switch` loaded CR3 with the first thread's address
        //    space, which maps CODE_BASE and the stack below STACK_TOP as
        //    user pages.
        // 2. `init` set TSS RSP0 to the kernel-entry stack.
        // 3. No other program runs (`running` was false: runs start only
        //    from this function, which does not nest).
        // 4. The handlers that end the run hold nothing with a destructor.
        unsafe { syscall::run_in_user_mode(&context) };
    }
    // SAFETY: back to the kernel's own root, which maps everything the
    // kernel uses; the threads' tables are released below.
    unsafe { x86::controlregs::cr3_write(kernel_root) };
    let end = with_run_state(|state| {
        state.running = false;
        state.ends_with = None;
        state.end.take()
    });
    threads::end_run();
    release_all(spaces, allocator);
    match end {
        Some(end) => Ok(end),
        None => panic!("a user run returned to the kernel without an end"),
    }
}

/// The thread the scheduler picks to run next, skipping (and stopping)
/// threads the kernel has no user context for (neither built by the kernel
/// nor given a VSpace and an IPC buffer through their TCB); `None` if none
/// can run.
pub(crate) fn next_runnable(kernel: &mut Kernel<PhysStore>) -> Option<ThreadId> {
    loop {
        let next = kernel.scheduler.schedule(&mut kernel.store)?;
        // A thread user space set up through its TCB joins the run; one in
        // the table runs only while its TCB still gives it a VSpace and an
        // IPC buffer.
        let runs = match threads::can_run(&kernel.store, &kernel.asids, next) {
            Some(runs) => Ok(runs),
            None => threads::adopt(&kernel.store, &kernel.asids, next, "pd").map(|()| true),
        };
        match runs {
            Ok(true) => return Some(next),
            Ok(false) | Err(threads::AdoptError::NoContext) => println!(
                "user mode: thread {:#x} has no user context (or lost its VSpace or IPC buffer): stopped",
                next.address().as_u64()
            ),
            Err(threads::AdoptError::TableFull) => {
                // A kernel limit, not the thread's doing: the system is not
                // what its builder asked for.
                println!(
                    "user mode: thread {:#x} cannot run: {} threads are alive, the most the kernel keeps: stopped",
                    next.address().as_u64(),
                    threads::MAX_RUNNING_THREADS
                );
                with_run_state(|state| {
                    if let Some(system) = state.system.as_mut() {
                        system.failed_threads = system.failed_threads.saturating_add(1);
                    }
                });
            }
        }
        ipc::stop_thread(&mut kernel.store, &mut kernel.scheduler, next);
    }
}

/// The running thread ended (`THREAD_EXIT`, or a fault already reported):
/// stops it and puts the registers of the next thread to run into
/// `context`; ends the run (returning from [`run_threads`]) if none can.
pub(crate) fn end_thread(context: &mut UserContext, end: ProgramEnd) {
    let thread = crate::root::with_kernel(|kernel, _| kernel.scheduler.current());
    end_thread_of(context, end, thread);
}

/// [`end_thread`] for `thread`, which ran last but may be off the CPU
/// already (a fault without a handler has stopped it).
fn end_thread_of(context: &mut UserContext, end: ProgramEnd, thread: Option<ThreadId>) {
    if let Some(thread) = thread {
        threads::finish_output(thread);
        if threads::named_run() {
            let name = threads::name(thread);
            match end {
                ProgramEnd::Exited(code) => println!("user mode: {name} exited with code {code}"),
                ProgramEnd::Faulted(vector) => println!("user mode: {name} ended by its fault (vector {vector})"),
                ProgramEnd::Blocked => println!("user mode: {name} ended blocked"),
            }
        }
    }
    let (run_ends, after_root_exit) = with_run_state(|state| {
        let is_root = thread.is_some() && state.ends_with == thread;
        let Some(system) = state.system.as_mut() else { return (is_root, None) };
        if thread.is_some() && system.root == thread {
            system.root_end = Some(end);
            if end == ProgramEnd::Exited(0) {
                // The system runs on without its root.
                state.ends_with = None;
                return (false, state.after_root_exit.take());
            }
        } else if end == ProgramEnd::Exited(0) {
            system.finished_threads = system.finished_threads.saturating_add(1);
        } else if end != ProgramEnd::Blocked {
            system.failed_threads = system.failed_threads.saturating_add(1);
        }
        (is_root, None)
    });
    if let Some(after_root_exit) = after_root_exit {
        after_root_exit();
    }
    let next = crate::root::with_kernel(|kernel, _| {
        if let Some(thread) = thread {
            ipc::stop_thread(&mut kernel.store, &mut kernel.scheduler, thread);
            // Its entry is free for another thread (its output is flushed).
            threads::forget(thread);
        }
        if run_ends {
            return None;
        }
        let next = timer::next_thread(kernel)?;
        let returns_from_call = threads::switch(&mut kernel.store, &kernel.asids, None, next, context)?;
        if returns_from_call {
            threads::write_results(&kernel.store, next, context);
        } else {
            // `context` goes back through the system-call stub.
            syscall::return_with_every_register();
        }
        Some(next)
    });
    if next.is_none() {
        end_program(end);
    }
}

/// Ends the run and resumes the kernel in [`run_threads`].
/// Panics (a kernel bug) if no run is in progress.
pub(crate) fn end_program(end: ProgramEnd) -> ! {
    let was_running = with_run_state(|state| {
        let was_running = state.running && state.end.is_none();
        state.end = Some(end);
        was_running
    });
    if !was_running {
        panic!("a user program ended ({end:?}) while none was running");
    }
    // SAFETY: a run is in progress (checked above), so `run_threads`'s
    // `run_in_user_mode` call is live; the callers (the syscall dispatcher
    // and the exception path) hold no values with destructors.
    unsafe { syscall::resume_kernel() }
}

/// Reads a word of a kernel stack that a ring-0 exception interrupted, if
/// `address` lies inside the boot stack or the kernel-entry stack.
fn read_kernel_stack_word(address: u64) -> Option<u64> {
    let end = address.checked_add(8)?;
    let inside = |stack: core::ops::Range<u64>| stack.start <= address && end <= stack.end;
    if !address.is_multiple_of(8) || !(inside(boot::boot_stack_range()) || inside(syscall::kernel_entry_stack_range()))
    {
        return None;
    }
    // SAFETY: the address is 8-byte aligned and inside a kernel stack,
    // a mapped static; reading a u64 from it cannot fault.
    Some(unsafe { (address as *const u64).read_volatile() })
}

/// Vectors that come from outside the running program even when they
/// interrupt ring 3: they stay kernel events.
const fn is_machine_event(vector: u64) -> bool {
    matches!(vector, 2 | 8 | 18) // NMI, double fault, machine check
}

/// The registers a ring-3 exception saved, as a thread context.
pub(crate) fn context_of(frame: &TrapFrame) -> UserContext {
    UserContext {
        rax: frame.rax,
        rbx: frame.rbx,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        rbp: frame.rbp,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        r12: frame.r12,
        r13: frame.r13,
        r14: frame.r14,
        r15: frame.r15,
        rip: frame.rip,
        rflags: frame.rflags,
        rsp: frame.rsp,
    }
}

/// Sends the running thread's fault to its fault handler
/// (`kernel_core::ipc::handle_fault`): the thread waits, with its
/// registers kept, until the handler replies. Returns the registers of the
/// thread that runs next, or `None` if the thread has no usable handler
/// (it is stopped, and the caller reports the fault as before) or nothing
/// can run while it waits.
fn send_fault_to_handler(frame: &TrapFrame) -> Option<UserContext> {
    let fault = if frame.vector == 14 {
        ipc::Fault::Page { address: cpu::read_cr2(), instruction: frame.rip, error_code: frame.error_code }
    } else {
        ipc::Fault::Exception { vector: frame.vector, error_code: frame.error_code, instruction: frame.rip }
    };
    let thread = crate::root::with_kernel(|kernel, _| kernel.scheduler.current())?;
    let outcome = crate::root::with_kernel(|kernel, _| {
        ipc::handle_fault(&mut kernel.store, &mut kernel.scheduler, thread, fault)
    });
    if outcome == ipc::FaultOutcome::Stopped {
        return None;
    }
    println!(
        "user fault: {} ({} at rip {:#x}) sent to its fault handler",
        threads::name(thread),
        crate::fault_report::exception_mnemonic(frame.vector),
        frame.rip
    );
    crate::root::with_kernel(|kernel, _| {
        threads::park_after_fault(&mut kernel.store, thread, context_of(frame));
        let next = timer::next_thread(kernel)?;
        let mut context = UserContext::default();
        let returns_from_call = threads::switch(&mut kernel.store, &kernel.asids, None, next, &mut context)?;
        if returns_from_call {
            threads::write_results(&kernel.store, next, &mut context);
        }
        Some(context)
    })
}

/// Turns an exception caused by the running user program into the end of
/// that program; returns (for the kernel's report) if it is not one.
///
/// A user fault is an exception taken with CS's RPL 3, or a fault of the
/// IRETQ that returns to ring 3 (the CPU refusing the user's return
/// address). NMIs, double faults and machine checks are never user faults.
pub(crate) fn end_program_on_user_fault(frame: &TrapFrame) {
    let from_ring_3 = frame.cs & 3 == 3;
    let refused_return =
        frame.cs & 3 == 0 && frame.rip == syscall::user_return_iretq_address() && matches!(frame.vector, 11..=13);
    if is_machine_event(frame.vector) || !(from_ring_3 || refused_return) {
        return;
    }
    if !with_run_state(|state| state.running) {
        return;
    }
    // IRETQ faulted with RSP at its frame, whose first word is the user RIP.
    let user_rip = if refused_return { read_kernel_stack_word(frame.rsp) } else { Some(frame.rip) };
    let Some(user_rip) = user_rip else { return };
    // What the thread printed comes before its fault.
    let faulted = crate::root::with_kernel(|kernel, _| kernel.scheduler.current());
    if let Some(thread) = faulted {
        threads::finish_output(thread);
    }
    // A fault of ring-3 code goes to the thread's fault handler if it has
    // one; the refused-return case has no user frame to resume from.
    if !refused_return && let Some(context) = send_fault_to_handler(frame) {
        // In a preemptive run the next thread gets its own timer deadline.
        timer::redispatch_if_active();
        // SAFETY: as below: `context` holds the next thread's registers and
        // address space, the run is live, and this path holds nothing with
        // a destructor.
        unsafe { syscall::resume_user(&context) }
    }
    crate::fault_report::report_user_fault(frame, user_rip, refused_return);
    let mut context = UserContext::default();
    // Returns only if another thread runs next. Not `end_thread`: a fault
    // without a handler has already taken the thread off the CPU, and the
    // run must still know which thread ended (a preemptive run ends with
    // its `ends_with` thread, faulted or not).
    end_thread_of(&mut context, ProgramEnd::Faulted(frame.vector), faulted);
    timer::redispatch_if_active();
    // SAFETY: `end_thread` loaded the next thread's registers and address
    // space; `run_threads`'s `run_in_user_mode` call is live (checked
    // above: `running`); this exception path holds nothing with a
    // destructor.
    unsafe { syscall::resume_user(&context) }
}
