//! Where the loader stages a Linux guest's files in its memory.
//!
//! A guest with a `kernel` gets, before its VMM starts, the bzImage file
//! as it is, its initramfs and its command line copied into its RAM; the
//! VMM then boots the kernel by the x86 boot protocol from that copy
//! (relocating the protected-mode part to the kernel's preferred address,
//! 16 MiB), so no memory outside the guest's holds the kernel once it
//! runs. The placement ([`Staging::plan`]):
//!
//! - the initramfs at the top of guest RAM, page-aligned, ending at or
//!   below the end of RAM and at or below `initrd_addr_max + 1`;
//! - the bzImage just below it, page-aligned;
//! - the command line, NUL-terminated, in the page below the bzImage;
//! - everything above the kernel's decompression buffer,
//!   `[pref_address, pref_address + init_size)`, which the kernel
//!   overwrites while it unpacks itself (the VMM's copy to
//!   `pref_address` and the unpacking must not touch the staged files).
//!
//! The setup header's fields are read by [`SetupHeader::parse`]; offsets
//! and meanings are the boot protocol's (Linux, `Documentation/arch/x86/boot.rst`).

use core::fmt;

/// The staging granule: 4 KiB pages.
pub const PAGE_BYTES: u64 = 4096;
/// The oldest boot protocol accepted: 2.12 (the 64-bit entry's
/// `xloadflags`, and `pref_address` and `init_size` from 2.10).
pub const MIN_PROTOCOL: u16 = 0x020c;

/// Setup-header offsets in the bzImage file.
mod offset {
    pub(super) const SETUP_SECTS: usize = 0x1f1;
    pub(super) const BOOT_FLAG: usize = 0x1fe;
    pub(super) const HEADER: usize = 0x202;
    pub(super) const VERSION: usize = 0x206;
    pub(super) const INITRD_ADDR_MAX: usize = 0x22c;
    pub(super) const RELOCATABLE_KERNEL: usize = 0x234;
    pub(super) const CMDLINE_SIZE: usize = 0x238;
    pub(super) const PREF_ADDRESS: usize = 0x258;
    pub(super) const INIT_SIZE: usize = 0x260;
    /// The first byte past the fields read here.
    pub(super) const END: usize = 0x264;
}

/// What the loader needs of a bzImage's setup header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// The boot protocol version (`0x020f` is 2.15).
    pub protocol: u16,
    /// 512-byte sectors of real-mode setup code after the boot sector (0
    /// means 4).
    pub setup_sects: u8,
    /// The highest address the initramfs's last byte may have.
    pub initrd_addr_max: u32,
    /// Whether the kernel may run from another address than
    /// `pref_address`.
    pub relocatable: bool,
    /// The longest command line, without its NUL.
    pub cmdline_size: u32,
    /// Where the kernel prefers to be loaded (16 MiB for x86-64).
    pub pref_address: u64,
    /// The bytes from the load address the kernel needs to unpack itself.
    pub init_size: u32,
}

/// Why bytes are no bzImage the loader can stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the setup header's fields.
    TooShort,
    /// No boot flag 0xAA55 at 0x1FE or no "HdrS" at 0x202.
    NotABzImage,
    /// A boot protocol older than [`MIN_PROTOCOL`].
    OldProtocol(u16),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => formatter.write_str("too short for a bzImage's setup header"),
            Self::NotABzImage => formatter.write_str("not a bzImage (no boot flag 0xAA55 and \"HdrS\" header)"),
            Self::OldProtocol(version) => write!(
                formatter,
                "boot protocol {}.{:02} is older than {}.{:02}",
                version >> 8,
                version & 0xff,
                MIN_PROTOCOL >> 8,
                MIN_PROTOCOL & 0xff
            ),
        }
    }
}

impl core::error::Error for HeaderError {}

fn bytes_at<const N: usize>(image: &[u8], at: usize) -> [u8; N] {
    let mut bytes = [0; N];
    if let Some(source) = image.get(at..at + N) {
        bytes.copy_from_slice(source);
    }
    bytes
}

impl SetupHeader {
    /// Reads the header of the bzImage file `image`.
    ///
    /// # Errors
    ///
    /// [`HeaderError`]: too short, no bzImage, too old a protocol.
    pub fn parse(image: &[u8]) -> Result<SetupHeader, HeaderError> {
        if image.len() < offset::END {
            return Err(HeaderError::TooShort);
        }
        if u16::from_le_bytes(bytes_at(image, offset::BOOT_FLAG)) != 0xaa55
            || bytes_at::<4>(image, offset::HEADER) != *b"HdrS"
        {
            return Err(HeaderError::NotABzImage);
        }
        let protocol = u16::from_le_bytes(bytes_at(image, offset::VERSION));
        if protocol < MIN_PROTOCOL {
            return Err(HeaderError::OldProtocol(protocol));
        }
        Ok(SetupHeader {
            protocol,
            setup_sects: image[offset::SETUP_SECTS],
            initrd_addr_max: u32::from_le_bytes(bytes_at(image, offset::INITRD_ADDR_MAX)),
            relocatable: image[offset::RELOCATABLE_KERNEL] != 0,
            cmdline_size: u32::from_le_bytes(bytes_at(image, offset::CMDLINE_SIZE)),
            pref_address: u64::from_le_bytes(bytes_at(image, offset::PREF_ADDRESS)),
            init_size: u32::from_le_bytes(bytes_at(image, offset::INIT_SIZE)),
        })
    }

    /// The end of the kernel's decompression buffer when loaded at
    /// `pref_address`: nothing may be staged below it.
    pub fn unpacked_end(&self) -> u64 {
        self.pref_address.saturating_add(u64::from(self.init_size))
    }
}

/// One staged file: where it starts (guest-physical, page-aligned) and its
/// bytes.
pub use crate::Staged;

/// Where the loader puts a Linux guest's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staging {
    /// The bzImage file.
    pub kernel: Staged,
    /// The initramfs, if the guest has one.
    pub initrd: Option<Staged>,
    /// The command line (its bytes without the NUL the loader writes
    /// after them), if the guest has one.
    pub cmdline: Option<Staged>,
}

/// Why a guest's files do not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagingError {
    /// The kernel file is empty.
    EmptyKernel,
    /// The command line is longer than the kernel's `cmdline_size` or a
    /// page (with its NUL).
    CommandLineTooLong {
        /// Its bytes.
        bytes: u64,
        /// The most allowed.
        most: u64,
    },
    /// The files do not fit between the kernel's decompression buffer and
    /// the top of guest RAM (or `initrd_addr_max`).
    NoRoom {
        /// The least guest RAM that would hold them.
        needed: u64,
        /// The guest's RAM.
        memory: u64,
    },
}

impl fmt::Display for StagingError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyKernel => formatter.write_str("the kernel file is empty"),
            Self::CommandLineTooLong { bytes, most } => {
                write!(formatter, "the command line has {bytes} bytes; this kernel takes at most {most}")
            }
            Self::NoRoom { needed, memory } => write!(
                formatter,
                "the kernel's decompression buffer and the files staged above it need {} MiB of guest RAM; \
                 the guest has {} MiB",
                needed.div_ceil(1 << 20),
                memory >> 20
            ),
        }
    }
}

impl core::error::Error for StagingError {}

fn page_down(address: u64) -> u64 {
    address & !(PAGE_BYTES - 1)
}

impl Staging {
    /// Places a kernel of `kernel_bytes` (whose header is `header`), an
    /// initramfs of `initrd_bytes` and a command line of `cmdline_bytes`
    /// (without its NUL) in guest RAM `[0, memory_bytes)`, as the module
    /// documentation says.
    ///
    /// # Errors
    ///
    /// [`StagingError`]: an empty kernel, a command line too long, or not
    /// enough memory above the decompression buffer.
    pub fn plan(
        memory_bytes: u64,
        header: &SetupHeader,
        kernel_bytes: u64,
        initrd_bytes: Option<u64>,
        cmdline_bytes: Option<u64>,
    ) -> Result<Staging, StagingError> {
        if kernel_bytes == 0 {
            return Err(StagingError::EmptyKernel);
        }
        if let Some(bytes) = cmdline_bytes {
            let most = u64::from(header.cmdline_size).min(PAGE_BYTES - 1);
            if bytes > most {
                return Err(StagingError::CommandLineTooLong { bytes, most });
            }
        }
        // What the files take, each page-aligned from its start, and the
        // decompression buffer below them: the least RAM that holds all.
        let pages = |bytes: u64| bytes.div_ceil(PAGE_BYTES).saturating_mul(PAGE_BYTES);
        let staged_bytes = pages(kernel_bytes)
            .saturating_add(initrd_bytes.map_or(0, pages))
            .saturating_add(if cmdline_bytes.is_some() { PAGE_BYTES } else { 0 });
        let floor = header.unpacked_end().next_multiple_of(PAGE_BYTES);
        let no_room = StagingError::NoRoom { needed: floor.saturating_add(staged_bytes), memory: memory_bytes };
        // The initramfs may not end past initrd_addr_max; the rest lies
        // below it.
        let top = page_down(memory_bytes.min(u64::from(header.initrd_addr_max).saturating_add(1)));
        let mut below = top;
        let mut take = |bytes: u64| -> Result<Staged, StagingError> {
            let start = page_down(below.checked_sub(bytes).ok_or(no_room)?);
            if start < floor {
                return Err(no_room);
            }
            below = start;
            Ok(Staged { guest_physical: start, bytes })
        };
        let initrd = initrd_bytes.map(&mut take).transpose()?;
        let kernel = take(kernel_bytes)?;
        // The command line and its NUL fill at most the page below.
        let cmdline = cmdline_bytes.map(|bytes| take(PAGE_BYTES).map(|page| Staged { bytes, ..page })).transpose()?;
        Ok(Staging { kernel, initrd, cmdline })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setup header of Debian's 6.1 cloud kernel, as far as it is read.
    const DEBIAN: SetupHeader = SetupHeader {
        protocol: 0x020f,
        setup_sects: 39,
        initrd_addr_max: 0x7fff_ffff,
        relocatable: true,
        cmdline_size: 2047,
        pref_address: 0x100_0000,
        init_size: 0x337_8000,
    };
    const MIB: u64 = 1 << 20;

    fn image(header: &SetupHeader) -> [u8; 0x400] {
        let mut bytes = [0_u8; 0x400];
        bytes[offset::SETUP_SECTS] = header.setup_sects;
        bytes[offset::BOOT_FLAG..offset::BOOT_FLAG + 2].copy_from_slice(&0xaa55_u16.to_le_bytes());
        bytes[offset::HEADER..offset::HEADER + 4].copy_from_slice(b"HdrS");
        bytes[offset::VERSION..offset::VERSION + 2].copy_from_slice(&header.protocol.to_le_bytes());
        bytes[offset::INITRD_ADDR_MAX..offset::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&header.initrd_addr_max.to_le_bytes());
        bytes[offset::RELOCATABLE_KERNEL] = u8::from(header.relocatable);
        bytes[offset::CMDLINE_SIZE..offset::CMDLINE_SIZE + 4].copy_from_slice(&header.cmdline_size.to_le_bytes());
        bytes[offset::PREF_ADDRESS..offset::PREF_ADDRESS + 8].copy_from_slice(&header.pref_address.to_le_bytes());
        bytes[offset::INIT_SIZE..offset::INIT_SIZE + 4].copy_from_slice(&header.init_size.to_le_bytes());
        bytes
    }

    #[test]
    fn the_header_reads_back_and_bad_images_are_refused() {
        let bytes = image(&DEBIAN);
        assert_eq!(SetupHeader::parse(&bytes), Ok(DEBIAN));
        assert_eq!(DEBIAN.unpacked_end(), 0x100_0000 + 0x337_8000);
        assert_eq!(SetupHeader::parse(&bytes[..offset::END - 1]), Err(HeaderError::TooShort));
        let mut no_magic = bytes;
        no_magic[offset::HEADER] = b'h';
        assert_eq!(SetupHeader::parse(&no_magic), Err(HeaderError::NotABzImage));
        let mut no_flag = bytes;
        no_flag[offset::BOOT_FLAG] = 0;
        assert_eq!(SetupHeader::parse(&no_flag), Err(HeaderError::NotABzImage));
        let old = image(&SetupHeader { protocol: 0x020a, ..DEBIAN });
        assert_eq!(SetupHeader::parse(&old), Err(HeaderError::OldProtocol(0x020a)));
    }

    #[test]
    fn the_debian_guest_stages_initrd_on_top_then_kernel_then_command_line() {
        let (kernel, initrd, cmdline) = (14_186_432, 2_182_152, 30);
        let staging = Staging::plan(128 * MIB, &DEBIAN, kernel, Some(initrd), Some(cmdline)).expect("fits");
        let initrd_at = staging.initrd.expect("an initramfs").guest_physical;
        assert_eq!(initrd_at, page_down(128 * MIB - initrd));
        assert!(initrd_at + initrd <= 128 * MIB);
        assert_eq!(staging.kernel, Staged { guest_physical: page_down(initrd_at - kernel), bytes: kernel });
        assert_eq!(
            staging.cmdline,
            Some(Staged { guest_physical: staging.kernel.guest_physical - PAGE_BYTES, bytes: cmdline })
        );
        assert!(staging.cmdline.expect("a command line").guest_physical >= DEBIAN.unpacked_end());
    }

    #[test]
    fn the_initramfs_stays_below_initrd_addr_max() {
        let staging = Staging::plan(4 << 30, &DEBIAN, 0x1000, Some(0x1000), None).expect("fits");
        assert_eq!(staging.initrd, Some(Staged { guest_physical: 0x7fff_f000, bytes: 0x1000 }));
        assert_eq!(staging.kernel.guest_physical, 0x7fff_e000);
        assert_eq!(staging.cmdline, None);
    }

    #[test]
    fn too_little_memory_or_too_long_a_command_line_is_refused() {
        // 64 MiB is less than the decompression buffer's end (67.5 MiB).
        let error = Staging::plan(64 * MIB, &DEBIAN, 14 << 20, Some(2 << 20), Some(10)).expect_err("no room");
        let StagingError::NoRoom { needed, memory } = error else { panic!("{error:?}") };
        assert_eq!(memory, 64 * MIB);
        assert_eq!(needed, DEBIAN.unpacked_end() + (14 << 20) + (2 << 20) + PAGE_BYTES);
        // The exact need fits; a page less does not.
        assert!(Staging::plan(needed, &DEBIAN, 14 << 20, Some(2 << 20), Some(10)).is_ok());
        assert!(Staging::plan(needed - PAGE_BYTES, &DEBIAN, 14 << 20, Some(2 << 20), Some(10)).is_err());
        assert_eq!(
            Staging::plan(128 * MIB, &DEBIAN, 1, None, Some(2048)),
            Err(StagingError::CommandLineTooLong { bytes: 2048, most: 2047 })
        );
        assert_eq!(Staging::plan(128 * MIB, &DEBIAN, 0, None, None), Err(StagingError::EmptyKernel));
        assert!(Staging::plan(0, &DEBIAN, 1, None, None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn staged_files_are_aligned_disjoint_in_ram_and_above_the_kernel(
            memory in 0_u64..(6 << 30),
            kernel in 0_u64..(64 << 20),
            initrd in proptest::option::of(0_u64..(64 << 20)),
            cmdline in proptest::option::of(0_u64..3000),
            init_size in 0_u32..(256 << 20),
            initrd_addr_max in proptest::prop_oneof![proptest::strategy::Just(0x7fff_ffff_u32), 0_u32..u32::MAX],
        ) {
            let header = SetupHeader { init_size, initrd_addr_max, ..DEBIAN };
            let Ok(staging) = Staging::plan(memory, &header, kernel, initrd, cmdline) else { return Ok(()) };
            let mut files = alloc::vec![(staging.kernel, staging.kernel.bytes)];
            files.extend(staging.initrd.map(|initrd| (initrd, initrd.bytes)));
            // The command line's page holds it and its NUL.
            files.extend(staging.cmdline.map(|cmdline| (cmdline, cmdline.bytes + 1)));
            for (file, bytes) in &files {
                proptest::prop_assert!(file.guest_physical.is_multiple_of(PAGE_BYTES));
                proptest::prop_assert!(file.guest_physical >= header.unpacked_end());
                proptest::prop_assert!(file.guest_physical + bytes <= memory);
            }
            for (index, (a, a_bytes)) in files.iter().enumerate() {
                for (b, b_bytes) in &files[index + 1..] {
                    let apart = a.guest_physical + a_bytes <= b.guest_physical
                        || b.guest_physical + b_bytes <= a.guest_physical;
                    proptest::prop_assert!(apart, "{a:?} and {b:?} overlap");
                }
            }
            if let Some(staged) = staging.initrd {
                proptest::prop_assert!(staged.guest_physical + staged.bytes <= u64::from(initrd_addr_max) + 1);
                proptest::prop_assert_eq!(Some(staged.bytes), initrd);
                proptest::prop_assert!(staging.kernel.guest_physical < staged.guest_physical);
            }
            proptest::prop_assert_eq!(staging.kernel.bytes, kernel);
            proptest::prop_assert_eq!(staging.cmdline.map(|cmdline| cmdline.bytes), cmdline);
        }

        #[test]
        fn the_header_parser_takes_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..0x300)) {
            let _ = SetupHeader::parse(&bytes);
        }
    }
}
