//! Guest-virtual (linear) to guest-physical translation: the walk a CPU
//! does, over the guest's own page tables in [`GuestMemory`], for the
//! accesses the VMM makes on the guest's behalf (fetching the exiting
//! instruction, a memory operand, string I/O).
//!
//! Every paging mode a guest may use (SDM Vol. 3A, chapter 4): none, 32-bit
//! (4 KiB pages, 4 MiB pages with CR4.PSE and PSE-36), PAE (4 KiB, 2 MiB)
//! and four-level (4 KiB, 2 MiB, 1 GiB). The walk checks what the CPU
//! checks (present, writable with CR0.WP, user, no-execute with
//! EFER.NXE, SMEP and SMAP) and sets the accessed and dirty bits as the
//! CPU does, one byte at a time so that the other bits of an entry are
//! never rewritten.
//!
//! PAE's four PDPTEs are read from memory, where a CPU uses the copies it
//! loaded with CR3: a guest that changes its PDPT without reloading CR3
//! sees the new entries here.

use crate::cpu::{ControlRegisters, PagingMode, cr0, cr4, efer, is_canonical};
use crate::guest::GuestMemory;

/// What an access does with the memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// An access and who makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAccess {
    /// Read, write or fetch.
    pub access: Access,
    /// Made at CPL 3.
    pub user: bool,
    /// RFLAGS.AC, which lets supervisor code touch user pages under SMAP.
    pub alignment_check: bool,
}

/// Why a linear address could not be translated (or its bytes reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslationFault {
    /// The CPU would raise a page fault with this error code (bit 0 a
    /// protection violation, 1 a write, 2 a user access, 3 a reserved bit,
    /// 4 an instruction fetch).
    PageFault {
        /// The linear address.
        linear: u64,
        /// The page-fault error code.
        error_code: u32,
    },
    /// A non-canonical address in long mode (a #GP on a CPU).
    NonCanonical {
        /// The linear address.
        linear: u64,
    },
    /// A paging structure, or the bytes themselves, lie outside the guest's
    /// memory.
    Unbacked {
        /// The first guest-physical address not backed.
        guest_physical: u64,
    },
}

/// Page-fault error-code bits.
mod error_code {
    pub(super) const PROTECTION: u32 = 1 << 0;
    pub(super) const WRITE: u32 = 1 << 1;
    pub(super) const USER: u32 = 1 << 2;
    pub(super) const RESERVED: u32 = 1 << 3;
    pub(super) const FETCH: u32 = 1 << 4;
}

/// Paging-structure entry bits.
mod entry {
    pub(super) const PRESENT: u64 = 1 << 0;
    pub(super) const WRITABLE: u64 = 1 << 1;
    pub(super) const USER: u64 = 1 << 2;
    pub(super) const ACCESSED: u64 = 1 << 5;
    pub(super) const DIRTY: u64 = 1 << 6;
    pub(super) const LARGE: u64 = 1 << 7;
    pub(super) const NO_EXECUTE: u64 = 1 << 63;
    /// The physical-address bits of an 8-byte entry (52-bit addresses).
    pub(super) const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
    /// The physical-address bits of a 4-byte entry.
    pub(super) const ADDRESS_32: u64 = 0xffff_f000;
}

/// One level of a walk.
#[derive(Clone, Copy)]
struct Level {
    /// The shift of the linear-address bits that index it.
    shift: u32,
    /// How many bits index it.
    index_bits: u32,
    /// Its entries may map a page (PS).
    may_map: bool,
    /// Its entries hold R/W and U/S (PAE's PDPTEs do not).
    has_rights: bool,
}

const fn level(shift: u32, index_bits: u32, may_map: bool) -> Level {
    Level { shift, index_bits, may_map, has_rights: true }
}

/// 32-bit paging without and with CR4.PSE.
const BITS32: [Level; 2] = [level(22, 10, false), level(12, 10, false)];
const BITS32_PSE: [Level; 2] = [level(22, 10, true), level(12, 10, false)];
/// PAE paging: the PDPTE carries no rights.
const PAE: [Level; 3] =
    [Level { shift: 30, index_bits: 2, may_map: false, has_rights: false }, level(21, 9, true), level(12, 9, false)];
/// Four-level paging.
const FOUR_LEVEL: [Level; 4] = [level(39, 9, false), level(30, 9, true), level(21, 9, true), level(12, 9, false)];

/// The rights the levels of a walk grant together.
#[derive(Clone, Copy)]
struct Rights {
    writable: bool,
    user: bool,
    executable: bool,
}

/// The guest-physical address `linear` translates to under `control`
/// for `request`, setting accessed and dirty bits as a CPU would.
///
/// # Errors
///
/// [`TranslationFault`]: a page fault the CPU would raise, a non-canonical
/// address, or a paging structure outside the guest's memory.
pub fn translate(
    memory: &mut impl GuestMemory,
    control: &ControlRegisters,
    linear: u64,
    request: MemoryAccess,
) -> Result<u64, TranslationFault> {
    let (levels, table, wide): (&[Level], u64, bool) = match control.paging_mode() {
        PagingMode::Off => return Ok(linear),
        PagingMode::Bits32 if control.cr4 & cr4::PSE != 0 => (&BITS32_PSE, control.cr3 & entry::ADDRESS_32, false),
        PagingMode::Bits32 => (&BITS32, control.cr3 & entry::ADDRESS_32, false),
        PagingMode::Pae => (&PAE, control.cr3 & 0xffff_ffe0, true),
        PagingMode::FourLevel => {
            if !is_canonical(linear) {
                return Err(TranslationFault::NonCanonical { linear });
            }
            (&FOUR_LEVEL, control.cr3 & entry::ADDRESS, true)
        }
    };
    Walk { memory, control, linear, request, wide }.run(levels, table)
}

/// One walk in progress.
struct Walk<'w, M: GuestMemory> {
    memory: &'w mut M,
    control: &'w ControlRegisters,
    linear: u64,
    request: MemoryAccess,
    /// 8-byte entries (PAE and four-level), else 4-byte.
    wide: bool,
}

impl<M: GuestMemory> Walk<'_, M> {
    fn run(&mut self, levels: &[Level], mut table: u64) -> Result<u64, TranslationFault> {
        let no_execute = self.wide && self.control.efer & efer::NXE != 0;
        let mut rights = Rights { writable: true, user: true, executable: true };
        let mut visited = [(0_u64, 0_u64); 4];
        for (depth, level) in levels.iter().enumerate() {
            let index = (self.linear >> level.shift) & ((1 << level.index_bits) - 1);
            let address = table.wrapping_add(index * self.entry_bytes());
            let value = self.read_entry(address)?;
            if value & entry::PRESENT == 0 {
                return Err(self.page_fault(0));
            }
            if self.wide && !no_execute && value & entry::NO_EXECUTE != 0 {
                return Err(self.page_fault(error_code::PROTECTION | error_code::RESERVED));
            }
            if level.has_rights {
                rights.writable &= value & entry::WRITABLE != 0;
                rights.user &= value & entry::USER != 0;
            }
            rights.executable &= !(no_execute && value & entry::NO_EXECUTE != 0);
            visited[depth] = (address, value);
            let last = depth + 1 == levels.len();
            if last || (level.may_map && value & entry::LARGE != 0) {
                self.check(rights)?;
                self.mark_used(&visited[..=depth])?;
                let offset = self.linear & ((1 << level.shift) - 1);
                return Ok(self.page_base(value, level.shift) | offset);
            }
            table = if self.wide { value & entry::ADDRESS } else { value & entry::ADDRESS_32 };
        }
        // The last level always maps.
        Err(self.page_fault(error_code::RESERVED))
    }

    const fn entry_bytes(&self) -> u64 {
        if self.wide { 8 } else { 4 }
    }

    fn read_entry(&mut self, address: u64) -> Result<u64, TranslationFault> {
        let mut bytes = [0; 8];
        let width = if self.wide { 8 } else { 4 };
        self.memory
            .read(address, &mut bytes[..width])
            .map_err(|unbacked| TranslationFault::Unbacked { guest_physical: unbacked.guest_physical })?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// The physical base of the page a leaf entry maps at `shift`.
    fn page_base(&self, value: u64, shift: u32) -> u64 {
        if self.wide {
            return value & entry::ADDRESS & !((1 << shift) - 1);
        }
        if shift == 22 {
            // A 4 MiB page: bits 13..21 of the entry are bits 32..40 of the
            // address (PSE-36).
            return (value & 0xffc0_0000) | ((value >> 13) & 0xff) << 32;
        }
        value & entry::ADDRESS_32
    }

    /// The CPU's permission checks (SDM Vol. 3A, 4.6).
    fn check(&self, rights: Rights) -> Result<(), TranslationFault> {
        let request = self.request;
        let user_violation = request.user && !rights.user;
        let supervisor_on_user_page = !request.user && rights.user;
        let smap_violation = supervisor_on_user_page && self.control.cr4 & cr4::SMAP != 0 && !request.alignment_check;
        let violation = match request.access {
            Access::Read => user_violation || smap_violation,
            Access::Write => {
                let write_protected = request.user || self.control.cr0 & cr0::WP != 0;
                user_violation || (write_protected && !rights.writable) || smap_violation
            }
            Access::Fetch => {
                let smep_violation = supervisor_on_user_page && self.control.cr4 & cr4::SMEP != 0;
                user_violation || !rights.executable || smep_violation
            }
        };
        if violation { Err(self.page_fault(error_code::PROTECTION)) } else { Ok(()) }
    }

    /// Sets the accessed bit of every entry used and the dirty bit of the
    /// leaf for a write, writing only the entry's low byte.
    fn mark_used(&mut self, visited: &[(u64, u64)]) -> Result<(), TranslationFault> {
        let leaf = visited.len() - 1;
        for (depth, &(address, value)) in visited.iter().enumerate() {
            let mut wanted = entry::ACCESSED;
            if depth == leaf && self.request.access == Access::Write {
                wanted |= entry::DIRTY;
            }
            // PAE's PDPTEs have no accessed bit.
            let pae_pdpte = self.wide && self.control.paging_mode() == PagingMode::Pae && depth == 0;
            if value & wanted != wanted && !pae_pdpte {
                let low = (value | wanted).to_le_bytes()[0];
                self.memory
                    .write(address, &[low])
                    .map_err(|unbacked| TranslationFault::Unbacked { guest_physical: unbacked.guest_physical })?;
            }
        }
        Ok(())
    }

    fn page_fault(&self, bits: u32) -> TranslationFault {
        let mut code = bits;
        if self.request.access == Access::Write {
            code |= error_code::WRITE;
        }
        if self.request.user {
            code |= error_code::USER;
        }
        if self.request.access == Access::Fetch {
            code |= error_code::FETCH;
        }
        TranslationFault::PageFault { linear: self.linear, error_code: code }
    }
}

#[cfg(test)]
mod tests;
