//! What the virtualisation backends share (`docs/VIRTUALISATION.md`): the
//! guest's register file their world switches load and store, and the
//! boot self-tests' test guest (`inject=guest-svm`, `inject=guest-vtx`):
//! one page of guest memory with 16-bit code, second-level tables in the
//! backend's format built with `kernel_core::virt`, and one exit handler
//! for both backends, over the backend-neutral exit.

use kernel_core::frame_allocator::FrameAllocator;
use kernel_core::memory::{PhysAddr, PhysFrame};
use kernel_core::virt::{self, Exit, ExitKind, GuestFormat, GuestMapping, IoAccess};
use kernel_core::vspace::MemoryType;

use crate::arch::paging::physmap_pointer;

/// The guest's general registers as a VCpu's record keeps them, in x86
/// encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15): the
/// world switches load them from the record before entering and store
/// them into it after an exit, with the offsets below. RSP's word is left
/// alone (both backends keep RSP in the hardware's control block), and so
/// is RAX's by `svm` (in the VMCB too); `vtx` loads RAX last.
pub(crate) type GuestRegisters = [u64; 16];

/// Encoding numbers of registers the backends name.
pub(crate) mod register {
    /// RAX, which `svm` keeps in the VMCB while the guest runs.
    pub(crate) const RAX: usize = 0;
}

/// The backend [`enable_backend`] turned on: 0 none, else its
/// `GuestFormat` plus one.
static BACKEND: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The backend [`enable_backend`] turned on, as its GuestSpaces' format.
pub(crate) fn backend() -> Option<GuestFormat> {
    match BACKEND.load(core::sync::atomic::Ordering::Relaxed) {
        0 => None,
        1 => Some(GuestFormat::Npt),
        _ => Some(GuestFormat::Ept),
    }
}

/// Turns on the virtualisation backend the CPU has, at boot, for good:
/// `svm` on a CPU with SVM and nested paging, `vtx` on one with VT-x
/// (its capabilities checked). The GuestSpaces' entry format, or `None`
/// when neither can run: then the kernel says why and runs everything
/// but guests.
pub(crate) fn enable_backend(allocator: &mut FrameAllocator) -> Option<GuestFormat> {
    let cpu = crate::arch::cpu::summary();
    let (name, result, format) = if cpu.svm {
        ("svm", crate::arch::svm::enable(allocator), GuestFormat::Npt)
    } else if cpu.vtx {
        ("vtx", crate::arch::vtx::enable(allocator), GuestFormat::Ept)
    } else {
        println!("virtualisation: this CPU has neither VT-x nor SVM: no guest runs");
        return None;
    };
    match result {
        Ok(()) => {
            BACKEND.store(format as u8 + 1, core::sync::atomic::Ordering::Relaxed);
            Some(format)
        }
        Err(why) => {
            println!("{name}: {why}: no guest runs");
            None
        }
    }
}

/// The world switches' instructions that load the guest's registers but
/// RAX and RSP from the [`GuestRegisters`] at RAX (word `n` at `8 * n`;
/// RAX itself is the backend's: in the VMCB for `svm`, loaded last for
/// `vtx`).
macro_rules! load_guest_registers {
    () => {
        concat!(
            "mov rcx, [rax + 8]\n",
            "mov rdx, [rax + 16]\n",
            "mov rbx, [rax + 24]\n",
            "mov rbp, [rax + 40]\n",
            "mov rsi, [rax + 48]\n",
            "mov rdi, [rax + 56]\n",
            "mov r8, [rax + 64]\n",
            "mov r9, [rax + 72]\n",
            "mov r10, [rax + 80]\n",
            "mov r11, [rax + 88]\n",
            "mov r12, [rax + 96]\n",
            "mov r13, [rax + 104]\n",
            "mov r14, [rax + 112]\n",
            "mov r15, [rax + 120]\n",
        )
    };
}
pub(crate) use load_guest_registers;

/// The instructions that store the guest's registers but RAX and RSP into
/// the [`GuestRegisters`] at RAX.
macro_rules! store_guest_registers {
    () => {
        concat!(
            "mov [rax + 8], rcx\n",
            "mov [rax + 16], rdx\n",
            "mov [rax + 24], rbx\n",
            "mov [rax + 40], rbp\n",
            "mov [rax + 48], rsi\n",
            "mov [rax + 56], rdi\n",
            "mov [rax + 64], r8\n",
            "mov [rax + 72], r9\n",
            "mov [rax + 80], r10\n",
            "mov [rax + 88], r11\n",
            "mov [rax + 96], r12\n",
            "mov [rax + 104], r13\n",
            "mov [rax + 112], r14\n",
            "mov [rax + 120], r15\n",
        )
    };
}
pub(crate) use store_guest_registers;

/// The test guest, 16-bit real mode, at guest-physical [`GUEST_ENTRY`]:
/// an OUT to port 0x80, a CPUID of leaf 0, a WRMSR of the host's EFER
/// (which must exit, never reach the CPU), a write outside its memory
/// (guest-physical 0x2000: a second-level fault), then HLT.
const TEST_GUEST: [u8; 29] = [
    0xb0, 0x42, // mov al, 0x42
    0xe6, 0x80, // out 0x80, al
    0x31, 0xc0, // xor ax, ax
    0x0f, 0xa2, // cpuid
    0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, // mov ecx, 0xc000_0080 (EFER)
    0x66, 0x31, 0xc0, // xor eax, eax
    0x66, 0x31, 0xd2, // xor edx, edx
    0x0f, 0x30, // wrmsr
    0xc6, 0x06, 0x00, 0x20, 0x01, // mov byte [0x2000], 1
    0xf4, // hlt
    0xf4, // hlt (never reached)
];
/// The benchmark guest: CPUID of leaf 0, [`CPUID_ROUNDS`] times (the
/// counter in SI, which CPUID leaves alone), then HLT.
const CPUID_LOOP: [u8; 11] = [
    0xbe, 0xe8, 0x03, // mov si, 1000
    0x31, 0xc0, // 0x103: xor ax, ax
    0x0f, 0xa2, // cpuid
    0x4e, // dec si
    0x75, 0xf9, // jnz 0x103
    0xf4, // hlt
];
/// How many CPUIDs the benchmark guest makes.
pub(crate) const CPUID_ROUNDS: u32 = 1000;

/// Which guest a self-test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Program {
    /// One exit of each kind the handler knows, each printed.
    Exits,
    /// [`CPUID_ROUNDS`] CPUID exits, then HLT: the exit path's cost, in
    /// TSC ticks (instructions under QEMU's `-icount shift=0`).
    CpuidLoop,
}

impl Program {
    /// The guest's code.
    const fn code(self) -> &'static [u8] {
        match self {
            Program::Exits => &TEST_GUEST,
            Program::CpuidLoop => &CPUID_LOOP,
        }
    }

    /// The exits it takes, HLT included.
    pub(crate) const fn exits(self) -> u32 {
        match self {
            Program::Exits => 5,
            Program::CpuidLoop => CPUID_ROUNDS + 1,
        }
    }

    /// Whether each exit is printed.
    const fn verbose(self) -> bool {
        matches!(self, Program::Exits)
    }
}

/// Where the guest's code starts.
pub(crate) const GUEST_ENTRY: u64 = 0x100;
/// The length of the guest's store to 0x2000, which the handler skips as
/// a VMM would after emulating MMIO (a second-level fault reports no
/// instruction length).
const STORE_LENGTH: u64 = 5;
/// Exits beyond its own a test guest may take (host interrupts) before
/// the test gives up on it.
pub(crate) const SPARE_EXITS: u32 = 16;

/// The frames a self-test takes, all given back at its end.
pub(crate) struct Frames {
    taken: heapless::Vec<PhysFrame, 16>,
}

impl Frames {
    /// None yet.
    pub(crate) const fn new() -> Frames {
        Frames { taken: heapless::Vec::new() }
    }

    /// A zeroed 4 KiB frame: its physical address and its mapping in the
    /// physical-memory map.
    pub(crate) fn zeroed(&mut self, allocator: &mut FrameAllocator) -> Result<(u64, *mut u8), &'static str> {
        self.filled(allocator, 1, 0)
    }

    /// `count` contiguous frames, every byte `byte`.
    pub(crate) fn filled(
        &mut self,
        allocator: &mut FrameAllocator,
        count: u64,
        byte: u8,
    ) -> Result<(u64, *mut u8), &'static str> {
        let range = allocator.allocate_contiguous(count, 0x1000).ok_or("no frames")?;
        let start = range.start.as_u64();
        for index in 0..count {
            let frame = PhysFrame::from_start(PhysAddr::new(start + index * 0x1000)).ok_or("a misaligned frame")?;
            self.taken.push(frame).map_err(|_| "too many frames")?;
        }
        let pointer = physmap_pointer(start, count * 0x1000).ok_or("frames outside the physical-memory map")?;
        let bytes = usize::try_from(count * 0x1000).map_err(|_| "too many frames")?;
        // SAFETY: the frames were just taken from the allocator, so nothing
        // else uses them, and they lie inside the physical-memory map
        // (checked); bytes need no validity.
        unsafe { core::ptr::write_bytes(pointer, byte, bytes) };
        Ok((start, pointer))
    }

    /// Gives every frame back.
    pub(crate) fn give_back(self, allocator: &mut FrameAllocator) {
        for frame in self.taken {
            let _ = allocator.free(frame);
        }
    }
}

/// Free frames the allocator holds (a self-test must leave as many as it
/// found).
pub(crate) fn free_frames(allocator: &FrameAllocator) -> u64 {
    allocator.free_ranges().iter().map(|range| range.len() / 0x1000).sum()
}

/// Writes the 64-bit `value` at entry `index` of the table at `table`.
fn set_entry(table: *mut u8, index: usize, value: u64) {
    assert!(index < 512, "entry {index} of a table");
    // SAFETY: `table` maps a whole page-aligned frame (`Frames::zeroed`)
    // and `index` is below 512, so the entry is in bounds and aligned.
    let entry = unsafe { table.cast::<u64>().add(index) };
    // SAFETY: as above: a valid, aligned `u64` the kernel owns.
    unsafe { entry.write_volatile(value) };
}

/// Builds the guest's memory (one page at guest-physical 0 holding the
/// test code) and four levels of second-level tables mapping it in
/// `format`; returns the root table's physical address.
pub(crate) fn build_memory(
    allocator: &mut FrameAllocator,
    frames: &mut Frames,
    format: GuestFormat,
    program: Program,
) -> Result<u64, &'static str> {
    let levels = [frames.zeroed(allocator)?, frames.zeroed(allocator)?, frames.zeroed(allocator)?];
    let leaf = frames.zeroed(allocator)?;
    let (memory, code) = frames.zeroed(allocator)?;
    let offset = usize::try_from(GUEST_ENTRY).map_err(|_| "entry")?;
    // SAFETY: the guest's frame is ours and inside the physmap, and the
    // entry point lies inside it.
    let entry = unsafe { code.add(offset) };
    // SAFETY: the code fits far below the frame's end, and the frame does
    // not overlap the constant it is copied from.
    unsafe { core::ptr::copy_nonoverlapping(program.code().as_ptr(), entry, program.code().len()) };
    let link = |next: u64| match format {
        GuestFormat::Npt => virt::npt_table_entry(next),
        GuestFormat::Ept => virt::ept_table_entry(next),
    };
    set_entry(levels[0].1, 0, link(levels[1].0));
    set_entry(levels[1].1, 0, link(levels[2].0));
    set_entry(levels[2].1, 0, link(leaf.0));
    let page = GuestMapping { write: true, execute: true, memory_type: MemoryType::WriteBack, large: false };
    let value = match format {
        GuestFormat::Npt => virt::npt_page_entry(memory, page),
        GuestFormat::Ept => virt::ept_page_entry(memory, page),
    };
    set_entry(leaf.1, 0, value);
    Ok(levels[0].0)
}

/// The guest's RAX, RBX, RCX and RDX, which a CPUID answer sets.
pub(crate) struct Accumulators<'a> {
    /// RAX.
    pub(crate) rax: &'a mut u64,
    /// RBX.
    pub(crate) rbx: &'a mut u64,
    /// RCX.
    pub(crate) rcx: &'a mut u64,
    /// RDX.
    pub(crate) rdx: &'a mut u64,
}

/// What to do after an exit.
pub(crate) enum Next {
    /// Enter again at this RIP.
    Resume(u64),
    /// The guest halted: the test is over.
    Halted,
}

/// Handles one exit of the test guest as a VMM would, printing it with
/// `prefix`: an I/O access is logged and skipped by its length, CPUID
/// answers "Bulkhead" in EBX:EDX, the store outside the guest's memory
/// is logged and skipped, HLT ends the test.
///
/// # Errors
///
/// An exit the test guest should not take.
pub(crate) fn handle(
    prefix: &str,
    program: Program,
    exit: &Exit,
    rip: u64,
    registers: Accumulators<'_>,
) -> Result<Next, &'static str> {
    match exit.kind {
        ExitKind::Io => {
            let access = IoAccess::unpack(exit.qualification);
            let direction = if access.input { "in" } else { "out" };
            println!(
                "{prefix}: {direction} port {:#x}, {} byte(s), al {:#x}, length {}",
                access.port,
                access.size,
                *registers.rax & 0xff,
                exit.instruction_length
            );
            if exit.instruction_length == 0 {
                return Err("an I/O exit without its length");
            }
            Ok(Next::Resume(rip + u64::from(exit.instruction_length)))
        }
        ExitKind::Cpuid => {
            if program.verbose() {
                println!("{prefix}: cpuid leaf {:#x}", *registers.rax & 0xffff_ffff);
            }
            (*registers.rax, *registers.rbx, *registers.rdx, *registers.rcx) = (1, 0x6b6c_7542, 0x6461_6568, 0);
            // CPUID is two bytes (0f a2): `svm` under QEMU reports no
            // length, so the VMM knows it by decoding.
            Ok(Next::Resume(rip + 2))
        }
        ExitKind::MsrWrite | ExitKind::MsrRead => {
            // A VMM would inject #GP for an MSR outside its allowlist; the
            // self-test skips the two-byte instruction. What matters is
            // that the access exited instead of reaching the CPU.
            let access = if exit.kind == ExitKind::MsrWrite { "wrmsr" } else { "rdmsr" };
            println!("{prefix}: {access} {:#x} refused, rip {rip:#x}", *registers.rcx & 0xffff_ffff);
            Ok(Next::Resume(rip + 2))
        }
        ExitKind::SecondLevelFault => {
            println!(
                "{prefix}: second-level fault at {:#x} ({:#x}), rip {:#x}",
                exit.guest_physical, exit.qualification, rip
            );
            Ok(Next::Resume(rip + STORE_LENGTH))
        }
        ExitKind::Hlt => {
            println!("{prefix}: hlt at rip {rip:#x}, ebx {:#x}", *registers.rbx);
            Ok(Next::Halted)
        }
        ExitKind::InvalidState => Err("the hardware refused the guest state"),
        ExitKind::HostInterrupt => Ok(Next::Resume(rip)),
        _ => {
            println!("{prefix}: unexpected exit {:?} (reason {:#x})", exit.kind, exit.raw_reason);
            Err("an unexpected exit")
        }
    }
}

/// For the benchmark guest, prints what its exits cost: TSC ticks from
/// the first entry to the HLT exit, per exit (under QEMU's `-icount
/// shift=0` a tick is one emulated instruction: the kernel's world switch,
/// exit decoding and handling, and the guest's few instructions; the
/// hardware transition itself costs no instructions there).
pub(crate) fn report_cost(prefix: &str, program: Program, exits: u32, started: u64) {
    if program != Program::CpuidLoop {
        return;
    }
    let ticks = crate::arch::cpu::read_tsc().wrapping_sub(started);
    println!("{prefix}: {exits} exits in {ticks} TSC ticks, {} per exit", ticks / u64::from(exits.max(1)));
}
