//! The guest CPU's architectural state as the VMM reads it: control
//! register and flag bits (Intel SDM Vol. 3A, 2.5; AMD APM Vol. 2, 3.1),
//! the packed segment attributes of `kernel_core::vcpu`, and the modes
//! they make (which paging, how many bits of code, which privilege).

use bulkhead_components::vcpu::GuestExit;

/// CR0 bits.
pub mod cr0 {
    /// Protection enabled.
    pub const PE: u64 = 1 << 0;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type: hardwired to 1 since the Pentium Pro.
    pub const ET: u64 = 1 << 4;
    /// Write protect: supervisor writes honour read-only pages.
    pub const WP: u64 = 1 << 16;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    /// Virtual-8086 mode extensions.
    pub const VME: u64 = 1 << 0;
    /// Protected-mode virtual interrupts.
    pub const PVI: u64 = 1 << 1;
    /// RDTSC only at CPL 0.
    pub const TSD: u64 = 1 << 2;
    /// Debugging extensions.
    pub const DE: u64 = 1 << 3;
    /// 4 MiB pages in 32-bit paging.
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension (PAE and long-mode paging).
    pub const PAE: u64 = 1 << 5;
    /// Global pages.
    pub const PGE: u64 = 1 << 7;
    /// RDPMC at any CPL.
    pub const PCE: u64 = 1 << 8;
    /// FXSAVE and FXRSTOR, SSE.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SIMD floating-point exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// PCIDs in CR3.
    pub const PCIDE: u64 = 1 << 17;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
}

/// EFER bits.
pub mod efer {
    /// SYSCALL and SYSRET.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enabled.
    pub const LME: u64 = 1 << 8;
    /// Long mode active (read-only: CR0.PG with LME sets it).
    pub const LMA: u64 = 1 << 10;
    /// No-execute pages.
    pub const NXE: u64 = 1 << 11;
}

/// RFLAGS bits.
pub mod rflags {
    /// Interrupts enabled.
    pub const IF: u64 = 1 << 9;
    /// String instructions count down.
    pub const DF: u64 = 1 << 10;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check; with CR4.SMAP, lets the kernel touch user pages.
    pub const AC: u64 = 1 << 18;
}

/// The control state a VMEnter exit reply carries: CR0, CR3, CR4, EFER
/// and the interruptibility state, as the guest left them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlRegisters {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER (without SVME, which the guest never sees).
    pub efer: u64,
    /// Blocking by STI (bit 0) and by MOV SS (bit 1).
    pub interruptibility: u64,
}

impl ControlRegisters {
    /// The control state of `exit`.
    #[must_use]
    pub const fn of(exit: &GuestExit) -> ControlRegisters {
        let [cr0, cr3, cr4, efer, interruptibility] = exit.control;
        ControlRegisters { cr0, cr3, cr4, efer, interruptibility }
    }

    /// Whether protection is enabled.
    #[must_use]
    pub const fn protected(&self) -> bool {
        self.cr0 & cr0::PE != 0
    }

    /// Whether paging is on.
    #[must_use]
    pub const fn paging(&self) -> bool {
        self.cr0 & cr0::PG != 0
    }

    /// Whether long mode is active.
    #[must_use]
    pub const fn long_mode(&self) -> bool {
        self.efer & efer::LMA != 0
    }

    /// Which paging translates linear addresses.
    #[must_use]
    pub const fn paging_mode(&self) -> PagingMode {
        if !self.paging() {
            PagingMode::Off
        } else if self.cr4 & cr4::PAE == 0 {
            PagingMode::Bits32
        } else if self.long_mode() {
            PagingMode::FourLevel
        } else {
            PagingMode::Pae
        }
    }
}

/// The paging modes (SDM Vol. 3A, 4.1.1; LA57 is never allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// No paging: linear addresses are physical.
    Off,
    /// 32-bit paging: two levels of 4-byte entries, 4 MiB pages with
    /// CR4.PSE.
    Bits32,
    /// PAE paging: four PDPTEs, then two levels of 8-byte entries.
    Pae,
    /// Four-level paging (long mode): 2 MiB and 1 GiB pages.
    FourLevel,
}

/// A segment's attributes in the packed form of the guest-state fields
/// (`kernel_core::vcpu::SegmentPart::Attributes`): bits 0..4 type, 4 S,
/// 5..7 DPL, 7 P, 8 AVL, 9 L, 10 D/B, 11 G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentAttributes(pub u64);

impl SegmentAttributes {
    /// The descriptor privilege level.
    #[must_use]
    pub const fn dpl(self) -> u8 {
        ((self.0 >> 5) & 0b11) as u8
    }

    /// L: a 64-bit code segment.
    #[must_use]
    pub const fn long(self) -> bool {
        self.0 & (1 << 9) != 0
    }

    /// D/B: 32-bit default operand and address size.
    #[must_use]
    pub const fn big(self) -> bool {
        self.0 & (1 << 10) != 0
    }
}

/// The default operand and address size of code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bitness {
    /// Real mode, virtual-8086 mode, or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment (protected or compatibility mode).
    Bits32,
    /// 64-bit mode.
    Bits64,
}

impl Bitness {
    /// The bitness of code running under `control` with code-segment
    /// attributes `cs` and flags `flags`: 64 in long mode with CS.L, 32 in
    /// protected mode with CS.D, else 16.
    #[must_use]
    pub const fn of_code(control: &ControlRegisters, cs: SegmentAttributes, flags: u64) -> Bitness {
        if control.long_mode() && cs.long() {
            Bitness::Bits64
        } else if control.protected() && flags & rflags::VM == 0 && cs.big() {
            Bitness::Bits32
        } else {
            Bitness::Bits16
        }
    }

    /// Its width, as iced-x86 takes it.
    #[must_use]
    pub const fn bits(self) -> u32 {
        match self {
            Bitness::Bits16 => 16,
            Bitness::Bits32 => 32,
            Bitness::Bits64 => 64,
        }
    }

    /// The mask of an instruction pointer of this width.
    #[must_use]
    pub const fn ip_mask(self) -> u64 {
        match self {
            Bitness::Bits16 => 0xffff,
            Bitness::Bits32 => 0xffff_ffff,
            Bitness::Bits64 => u64::MAX,
        }
    }

    /// The mask of a linear address outside 64-bit mode: 32 bits.
    #[must_use]
    pub const fn linear_mask(self) -> u64 {
        match self {
            Bitness::Bits64 => u64::MAX,
            Bitness::Bits16 | Bitness::Bits32 => 0xffff_ffff,
        }
    }
}

/// Whether `address` is canonical with 48-bit linear addresses.
#[must_use]
pub const fn is_canonical(address: u64) -> bool {
    kernel_core::vcpu::is_canonical(address)
}
