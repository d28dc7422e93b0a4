//! Fakes for the host tests: a VCpu whose writes the kernel's own checks
//! judge, sparse guest memory, a clock, and guests set up in each mode
//! with identity-mapped page tables.

use std::boxed::Box;
use std::collections::BTreeMap;
use std::vec::Vec;

use bulkhead_components::Error;
use bulkhead_components::vcpu::{GuestExit, GuestRegisters};
use kernel_core::vcpu::{GuestField, GuestState, Segment, SegmentPart, check};
use kernel_core::virt::ExitKind;

use crate::cpu::{ControlRegisters, cr0, cr4, efer};
use crate::guest::{Clock, GuestMemory, Unbacked, VcpuState};

/// A VCpu's state as the kernel keeps it; WriteState is checked with
/// `kernel_core::vcpu::check`, as the kernel does.
#[derive(Clone, Debug)]
pub(crate) struct FakeVcpu {
    pub(crate) state: GuestState,
    pub(crate) writes: Vec<(GuestField, u64)>,
    pub(crate) reads: usize,
}

impl FakeVcpu {
    pub(crate) fn new() -> Self {
        FakeVcpu { state: GuestState::RESET, writes: Vec::new(), reads: 0 }
    }

    pub(crate) fn get(&self, field: GuestField) -> u64 {
        self.state.get(field)
    }

    pub(crate) fn set(&mut self, field: GuestField, value: u64) {
        self.state.0[usize::from(field.number())] = value;
    }

    pub(crate) fn set_segment(&mut self, segment: Segment, base: u64, attributes: u64) {
        self.set(GuestField::segment(segment, SegmentPart::Base), base);
        self.set(GuestField::segment(segment, SegmentPart::Attributes), attributes);
    }

    pub(crate) fn control(&self) -> ControlRegisters {
        ControlRegisters {
            cr0: self.get(GuestField::CR0),
            cr3: self.get(GuestField::CR3),
            cr4: self.get(GuestField::CR4),
            efer: self.get(GuestField::EFER),
            interruptibility: self.get(GuestField::INTERRUPTIBILITY),
        }
    }
}

impl VcpuState for FakeVcpu {
    fn read(&mut self, field: GuestField) -> Result<u64, Error> {
        self.reads += 1;
        Ok(self.state.get(field))
    }

    fn write(&mut self, field: GuestField, value: u64) -> Result<(), Error> {
        let value = check(field, value).map_err(|_| Error::InvalidArgument)?;
        self.set(field, value);
        self.writes.push((field, value));
        Ok(())
    }
}

/// A VCpu whose every call fails as a dead capability's would.
pub(crate) struct DeadVcpu;

impl VcpuState for DeadVcpu {
    fn read(&mut self, _field: GuestField) -> Result<u64, Error> {
        Err(Error::InvalidCapability)
    }

    fn write(&mut self, _field: GuestField, _value: u64) -> Result<(), Error> {
        Err(Error::InvalidCapability)
    }
}

/// Guest memory backed page by page.
#[derive(Clone, Debug, Default)]
pub(crate) struct FakeMemory {
    pages: BTreeMap<u64, Box<[u8; 4096]>>,
}

impl FakeMemory {
    /// Memory backed at `0..bytes`.
    pub(crate) fn with_ram(bytes: u64) -> Self {
        let mut memory = FakeMemory::default();
        memory.back(0, bytes);
        memory
    }

    pub(crate) fn back(&mut self, start: u64, bytes: u64) {
        for page in (start / 4096)..(start + bytes).div_ceil(4096) {
            self.pages.entry(page).or_insert_with(|| Box::new([0; 4096]));
        }
    }

    pub(crate) fn put(&mut self, address: u64, bytes: &[u8]) {
        GuestMemory::write(self, address, bytes).expect("backed memory");
    }

    pub(crate) fn put_u64(&mut self, address: u64, value: u64) {
        self.put(address, &value.to_le_bytes());
    }

    pub(crate) fn put_u32(&mut self, address: u64, value: u32) {
        self.put(address, &value.to_le_bytes());
    }

    pub(crate) fn get(&self, address: u64, length: usize) -> Vec<u8> {
        let mut bytes = std::vec![0; length];
        GuestMemory::read(self, address, &mut bytes).expect("backed memory");
        bytes
    }

    pub(crate) fn get_u64(&self, address: u64) -> u64 {
        u64::from_le_bytes(self.get(address, 8).try_into().expect("8 bytes"))
    }

    /// The page-sized pieces of `length` bytes from `address`: (page,
    /// offset in it, offset in the bytes, length), or the first address
    /// not backed.
    fn pieces(&self, address: u64, length: usize) -> Result<Vec<(u64, usize, usize, usize)>, Unbacked> {
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < length {
            let at = address.checked_add(done as u64).ok_or(Unbacked { guest_physical: u64::MAX })?;
            let (page, offset) = (at / 4096, (at % 4096) as usize);
            if !self.pages.contains_key(&page) {
                return Err(Unbacked { guest_physical: at });
            }
            let piece = (4096 - offset).min(length - done);
            pieces.push((page, offset, done, piece));
            done += piece;
        }
        Ok(pieces)
    }
}

impl GuestMemory for FakeMemory {
    fn read(&self, guest_physical: u64, bytes: &mut [u8]) -> Result<(), Unbacked> {
        for (page, offset, at, length) in self.pieces(guest_physical, bytes.len())? {
            bytes[at..at + length].copy_from_slice(&self.pages[&page][offset..offset + length]);
        }
        Ok(())
    }

    fn write(&mut self, guest_physical: u64, bytes: &[u8]) -> Result<(), Unbacked> {
        for (page, offset, at, length) in self.pieces(guest_physical, bytes.len())? {
            let page = self.pages.get_mut(&page).expect("checked");
            page[offset..offset + length].copy_from_slice(&bytes[at..at + length]);
        }
        Ok(())
    }
}

/// A host TSC that reads a fixed value.
pub(crate) struct FakeClock(pub(crate) u64);

impl Clock for FakeClock {
    fn read_host_tsc(&mut self) -> u64 {
        self.0
    }
}

/// The modes a fixture guest runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Real mode, CS base 0.
    Real,
    /// Protected mode, flat 32-bit segments, no paging.
    Flat32,
    /// 32-bit paging, identity-mapped 0..4 MiB with 4 KiB pages.
    Paged32,
    /// PAE paging, identity-mapped 0..2 MiB.
    Pae,
    /// Long mode, 64-bit code, identity-mapped 0..2 MiB.
    Long,
}

impl Mode {
    pub(crate) const ALL: [Mode; 5] = [Mode::Real, Mode::Flat32, Mode::Paged32, Mode::Pae, Mode::Long];
}

/// RAM of the fixtures: 0..1 MiB. Above it (still identity-mapped by the
/// guest's tables) nothing is backed: the MMIO and open-bus tests' space.
pub(crate) const RAM_BYTES: u64 = 0x10_0000;
/// Where the fixtures' code starts.
pub(crate) const CODE: u64 = 0x8000;
/// A data page of the fixtures.
pub(crate) const DATA: u64 = 0x9000;
/// Where the fixtures put an MMIO device.
pub(crate) const MMIO_BASE: u64 = 0x10_0000;
/// The page-table pages of the fixtures.
const TABLES: u64 = 0x1000;
/// Page-table entry bits: present, writable, user.
pub(crate) const PTE_PRW_US: u64 = 0x7;

/// A guest, its VCpu and its memory.
pub(crate) struct Machine {
    pub(crate) vcpu: FakeVcpu,
    pub(crate) registers: GuestRegisters,
    pub(crate) memory: FakeMemory,
}

impl Machine {
    pub(crate) fn new(mode: Mode) -> Self {
        let mut vcpu = FakeVcpu::new();
        let mut memory = FakeMemory::with_ram(RAM_BYTES);
        let (cs, ss) = match mode {
            Mode::Real => (0x9b, 0x93),
            Mode::Flat32 | Mode::Paged32 | Mode::Pae => (0xc9b, 0xc93),
            Mode::Long => (0xa9b, 0xc93),
        };
        for segment in [Segment::Es, Segment::Ss, Segment::Ds, Segment::Fs, Segment::Gs] {
            vcpu.set_segment(segment, 0, ss);
        }
        vcpu.set_segment(Segment::Cs, 0, cs);
        let mut cr0_value = cr0::ET;
        if mode != Mode::Real {
            cr0_value |= cr0::PE;
        }
        match mode {
            Mode::Real | Mode::Flat32 => {}
            Mode::Paged32 => {
                memory.put_u32(TABLES, 0x2000 | 0x7);
                for page in 0..1024 {
                    memory.put_u32(0x2000 + page * 4, u32::try_from(page * 4096).expect("32 bits") | 0x7);
                }
                vcpu.set(GuestField::CR3, TABLES);
            }
            Mode::Pae => {
                memory.put_u64(TABLES, 0x2000 | 0x1);
                memory.put_u64(0x2000, 0x3000 | PTE_PRW_US);
                for page in 0..512 {
                    memory.put_u64(0x3000 + page * 8, (page * 4096) | PTE_PRW_US);
                }
                vcpu.set(GuestField::CR3, TABLES);
                vcpu.set(GuestField::CR4, cr4::PAE);
            }
            Mode::Long => {
                memory.put_u64(TABLES, 0x2000 | PTE_PRW_US);
                memory.put_u64(0x2000, 0x3000 | PTE_PRW_US);
                memory.put_u64(0x3000, 0x4000 | PTE_PRW_US);
                for page in 0..512 {
                    memory.put_u64(0x4000 + page * 8, (page * 4096) | PTE_PRW_US);
                }
                vcpu.set(GuestField::CR3, TABLES);
                vcpu.set(GuestField::CR4, cr4::PAE);
                vcpu.set(GuestField::EFER, efer::LME | efer::LMA);
            }
        }
        if matches!(mode, Mode::Paged32 | Mode::Pae | Mode::Long) {
            cr0_value |= cr0::PG | cr0::WP;
        }
        vcpu.set(GuestField::CR0, cr0_value);
        let registers = GuestRegisters { rip: CODE, rflags: 0x202, ..GuestRegisters::default() };
        Machine { vcpu, registers, memory }
    }

    /// Puts `bytes` at RIP.
    pub(crate) fn code(&mut self, bytes: &[u8]) {
        self.memory.put(self.registers.rip, bytes);
    }

    /// An exit of `kind` with the VCpu's control state.
    pub(crate) fn exit(&self, kind: ExitKind, qualification: u64, instruction_length: u64) -> GuestExit {
        let control = self.vcpu.control();
        GuestExit {
            kind: Some(kind),
            reason: 0x1234,
            qualification,
            guest_physical: 0,
            instruction_length,
            control: [control.cr0, control.cr3, control.cr4, control.efer, control.interruptibility],
            code_segment: [
                self.vcpu.get(GuestField::segment(Segment::Cs, SegmentPart::Base)),
                self.vcpu.get(GuestField::segment(Segment::Cs, SegmentPart::Attributes)),
            ],
        }
    }

    /// Handles `exit` with `vmm`.
    pub(crate) fn run(&mut self, vmm: &mut crate::Vmm<'_>, exit: &GuestExit) -> crate::Action {
        vmm.handle(exit, &mut self.registers, &mut self.vcpu, &mut self.memory)
    }
}

/// Four-level page tables built in `memory` from a bump allocator.
pub(crate) struct LongTables {
    pub(crate) root: u64,
    next: u64,
}

impl LongTables {
    /// Tables whose pages come from `first..`.
    pub(crate) fn new(memory: &mut FakeMemory, first: u64) -> Self {
        memory.back(first, 4096);
        memory.put(first, &[0; 4096]);
        LongTables { root: first, next: first + 4096 }
    }

    fn table(&mut self, memory: &mut FakeMemory, entry_address: u64) -> u64 {
        let entry = memory.get_u64(entry_address);
        if entry & 1 != 0 {
            return entry & 0x000f_ffff_ffff_f000;
        }
        let table = self.next;
        self.next += 4096;
        memory.back(table, 4096);
        memory.put(table, &[0; 4096]);
        memory.put_u64(entry_address, table | PTE_PRW_US);
        table
    }

    /// Maps `linear` to `physical` with a page of `1 << shift` bytes (12,
    /// 21, 30) and leaf `flags`.
    pub(crate) fn map(&mut self, memory: &mut FakeMemory, linear: u64, physical: u64, shift: u32, flags: u64) {
        let mut table = self.root;
        for level_shift in [39, 30, 21, 12] {
            let entry_address = table + ((linear >> level_shift) & 0x1ff) * 8;
            if level_shift == shift {
                let large = if shift > 12 { 1 << 7 } else { 0 };
                memory.put_u64(entry_address, physical | flags | large);
                return;
            }
            table = self.table(memory, entry_address);
        }
    }
}
