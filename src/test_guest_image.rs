//! The project's own guests packed as a `bzImage`, so that the VMM boots
//! them by the same Linux boot path as Debian's kernel (`docs/GUEST-IMAGES.md`,
//! "The hostile PC guest"): today `guest-hostile-pc`, which a manifest
//! names `kernel "hostile-pc"`.
//!
//! [`bzimage_from_elf`] turns a static ELF64 image linked at its load
//! address (`vmm-server/guests/hostile-pc.ld`) into the smallest image the
//! boot protocol (Linux, `Documentation/arch/x86/boot.rst`) and the VMM's
//! loader (`vmm-server/src/boot/linux.rs`) accept:
//!
//! - a boot sector and one setup sector (`setup_sects` 1), holding only
//!   the setup header: boot flag 0xAA55, the jump at 0x200 whose length
//!   ends the header at 0x268 (protocol 2.12's fields), "HdrS", protocol
//!   2.15, `loadflags` LOADED_HIGH, `xloadflags` XLF_KERNEL_64 (the 64-bit
//!   entry at load address + 0x200 is the only one), not relocatable,
//!   `pref_address` the image's load address (its lowest segment, 2 MiB
//!   aligned, `kernel_alignment`), `init_size` the image's extent in
//!   memory (its `.bss` included) rounded up to a page, `cmdline_size`
//!   2047, `initrd_addr_max` 2 GiB - 1; the real-mode code, which the
//!   64-bit entry skips, is absent;
//! - the protected-mode part: the segments' file bytes at their offsets
//!   from the load address (gaps zero), padded to 16 bytes (`syssize`
//!   counts paragraphs). `.bss` is not in the file: the guest zeroes it.

use object::elf::{EM_X86_64, ET_EXEC, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};

/// The manifest's name for the hostile PC guest (`kernel "hostile-pc"`).
pub const HOSTILE_PC_ARTIFACT: &str = "hostile-pc";
/// The test-guest binary it is made from (`vmm-server/guests`).
pub const HOSTILE_PC_BINARY: &str = "guest-hostile-pc";

/// Where the 64-bit entry is, from the load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// The load address's alignment (`kernel_alignment`): 2 MiB, as Linux's.
pub const KERNEL_ALIGNMENT: u32 = 0x20_0000;
/// `min_alignment`: the alignment as a power of two.
const MIN_ALIGNMENT: u8 = 21;
/// The jump's length byte at 0x201: the header ends at 0x202 plus it.
const JUMP_LENGTH: u8 = 0x66;
const _: () = assert!(1 << MIN_ALIGNMENT == KERNEL_ALIGNMENT);
const _: () = assert!(offset::HEADER + JUMP_LENGTH as usize == offset::HEADER_END);
/// The protocol version written: 2.15.
pub const PROTOCOL: u16 = 0x020f;
/// The setup sectors after the boot sector.
pub const SETUP_SECTORS: u8 = 1;
/// The bytes before the protected-mode part.
pub const SETUP_BYTES: usize = (SETUP_SECTORS as usize + 1) * 512;
/// The most bytes the protected-mode part may have: far more than a test
/// guest needs, and a bound on what a damaged file makes the packer
/// allocate.
pub const MAX_FILE_BYTES: usize = 64 << 20;
/// The longest command line, without its NUL.
pub const CMDLINE_SIZE: u32 = 2047;

/// Setup-header offsets (the boot protocol's).
mod offset {
    pub(super) const SETUP_SECTS: usize = 0x1f1;
    pub(super) const SYSSIZE: usize = 0x1f4;
    pub(super) const BOOT_FLAG: usize = 0x1fe;
    pub(super) const JUMP: usize = 0x200;
    pub(super) const HEADER: usize = 0x202;
    pub(super) const VERSION: usize = 0x206;
    pub(super) const LOADFLAGS: usize = 0x211;
    pub(super) const CODE32_START: usize = 0x214;
    pub(super) const INITRD_ADDR_MAX: usize = 0x22c;
    pub(super) const KERNEL_ALIGNMENT: usize = 0x230;
    pub(super) const RELOCATABLE_KERNEL: usize = 0x234;
    pub(super) const MIN_ALIGNMENT: usize = 0x235;
    pub(super) const XLOADFLAGS: usize = 0x236;
    pub(super) const CMDLINE_SIZE: usize = 0x238;
    pub(super) const PREF_ADDRESS: usize = 0x258;
    pub(super) const INIT_SIZE: usize = 0x260;
    /// The end of protocol 2.12's header (after `handover_offset`).
    pub(super) const HEADER_END: usize = 0x268;
}

/// Packs the static ELF64 x86-64 executable `elf` as a `bzImage` (module
/// documentation). The ELF file is the build's output, but it is checked
/// as any input: nothing here panics.
///
/// # Errors
///
/// Why the file cannot be packed: not a static x86-64 executable, no
/// loadable segment, a load address that is not 2 MiB aligned or below
/// 1 MiB, an entry point other than load address + 0x200, overlapping
/// segments, or an image larger than `init_size` can say.
pub fn bzimage_from_elf(elf: &[u8]) -> Result<Vec<u8>, String> {
    let file = ElfFile64::<object::Endianness>::parse(elf).map_err(|error| format!("not an ELF64 file: {error}"))?;
    let endian = file.endian();
    let header = file.elf_header();
    if header.e_machine(endian) != EM_X86_64 || header.e_type(endian) != ET_EXEC {
        return Err("not a static x86-64 executable".into());
    }
    let mut segments: Vec<(u64, u64, &[u8])> = Vec::new();
    for segment in file.elf_program_headers() {
        if segment.p_type(endian) != PT_LOAD || segment.p_memsz(endian) == 0 {
            continue;
        }
        let address = segment.p_paddr(endian);
        let data = segment
            .data(endian, elf)
            .map_err(|()| format!("segment at {address:#x}: its bytes are not in the file"))?;
        let memory = segment.p_memsz(endian);
        if (data.len() as u64) > memory {
            return Err(format!("segment at {address:#x}: more file bytes than memory"));
        }
        segments.push((address, memory, data));
    }
    segments.sort_by_key(|(address, ..)| *address);
    let Some(&(load_address, ..)) = segments.first() else { return Err("no loadable segment".into()) };
    if load_address < 0x10_0000 || !load_address.is_multiple_of(u64::from(KERNEL_ALIGNMENT)) {
        return Err(format!("load address {load_address:#x}: not 2 MiB aligned at or above 1 MiB"));
    }
    let entry = header.e_entry(endian);
    if Some(entry) != load_address.checked_add(ENTRY_64_OFFSET) {
        return Err(format!("entry {entry:#x}: not the load address {load_address:#x} + 0x200"));
    }
    let mut memory_end = load_address;
    let mut kernel: Vec<u8> = Vec::new();
    for (address, memory, data) in &segments {
        if *address < memory_end {
            return Err(format!("segment at {address:#x} overlaps the one before"));
        }
        memory_end = address.checked_add(*memory).ok_or_else(|| format!("segment at {address:#x} wraps"))?;
        let start = usize::try_from(address - load_address).map_err(|_| "too large".to_string())?;
        let too_large = || format!("the image spans more than 4 GiB from {load_address:#x}");
        if memory_end - load_address > u64::from(u32::MAX) {
            return Err(too_large());
        }
        if !data.is_empty() {
            if start.saturating_add(data.len()) > MAX_FILE_BYTES {
                return Err(format!("the image's file bytes reach past {} MiB", MAX_FILE_BYTES >> 20));
            }
            kernel.resize(start, 0);
            kernel.extend_from_slice(data);
        }
    }
    kernel.resize(kernel.len().next_multiple_of(16), 0);
    let init_size = u32::try_from((memory_end - load_address).next_multiple_of(4096))
        .map_err(|_| format!("the image spans more than 4 GiB from {load_address:#x}"))?
        .max(u32::try_from(kernel.len()).unwrap_or(u32::MAX));
    let syssize = u32::try_from(kernel.len() / 16).map_err(|_| "the image is too large".to_string())?;

    let mut image = vec![0_u8; SETUP_BYTES];
    let mut put = |at: usize, bytes: &[u8]| image[at..at + bytes.len()].copy_from_slice(bytes);
    put(offset::SETUP_SECTS, &[SETUP_SECTORS]);
    put(offset::SYSSIZE, &syssize.to_le_bytes());
    put(offset::BOOT_FLAG, &0xaa55_u16.to_le_bytes());
    // A short jump over the header: its length byte says where it ends.
    put(offset::JUMP, &[0xeb, JUMP_LENGTH]);
    put(offset::HEADER, b"HdrS");
    put(offset::VERSION, &PROTOCOL.to_le_bytes());
    put(offset::LOADFLAGS, &[1]);
    put(offset::CODE32_START, &u32::try_from(load_address).unwrap_or(0).to_le_bytes());
    put(offset::INITRD_ADDR_MAX, &0x7fff_ffff_u32.to_le_bytes());
    put(offset::KERNEL_ALIGNMENT, &KERNEL_ALIGNMENT.to_le_bytes());
    put(offset::RELOCATABLE_KERNEL, &[0]);
    put(offset::MIN_ALIGNMENT, &[MIN_ALIGNMENT]);
    put(offset::XLOADFLAGS, &1_u16.to_le_bytes());
    put(offset::CMDLINE_SIZE, &CMDLINE_SIZE.to_le_bytes());
    put(offset::PREF_ADDRESS, &load_address.to_le_bytes());
    put(offset::INIT_SIZE, &init_size.to_le_bytes());
    image.extend_from_slice(&kernel);
    Ok(image)
}

#[cfg(test)]
mod tests;
