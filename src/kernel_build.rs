//! Building the kernel for bare metal and checking the resulting ELF.
//!
//! The kernel is built by a nested cargo for `x86_64-unknown-none`, in its
//! own target directory per variant (so that a build never waits on the
//! lock of the `cargo run` or `cargo test` that started it, and variants
//! never overwrite each other). The target's flags live in
//! `.cargo/config.toml`; `RUSTFLAGS` from the environment would override
//! them, so it is removed for the nested build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::Error;

/// Which kernel to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelVariant {
    /// The production kernel.
    Standard,
    /// With the `fault-injection` feature: `inject=KIND` on the command line
    /// triggers a deliberate fault (for the exception-report tests).
    FaultInjection,
}

impl KernelVariant {
    fn directory_name(self) -> &'static str {
        match self {
            KernelVariant::Standard => "kernel",
            KernelVariant::FaultInjection => "kernel-fault-injection",
        }
    }
}

/// A built kernel.
#[derive(Clone, Debug)]
pub struct KernelImage {
    /// The kernel ELF (with debug info; GRUB and QEMU load it as is).
    pub elf: PathBuf,
    /// Which variant it is.
    pub variant: KernelVariant,
}

/// The workspace root (where `Cargo.toml` and `.cargo/config.toml` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the CLI keeps what it builds.
pub fn output_directory() -> PathBuf {
    workspace_root().join("target").join("bulkhead")
}

/// Where a variant's ELF lands, built or not.
pub fn kernel_elf_path(variant: KernelVariant) -> PathBuf {
    output_directory()
        .join(variant.directory_name())
        .join("x86_64-unknown-none")
        .join("release")
        .join("bulkhead-kernel")
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds a kernel variant (cargo skips the work when nothing changed) and
/// checks its layout.
///
/// # Errors
///
/// [`Error::KernelBuild`] if cargo fails, [`Error::KernelLayout`] if the
/// ELF breaks a loader assumption.
pub fn build_kernel(variant: KernelVariant) -> Result<KernelImage, Error> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--release", "--package", "bulkhead-kernel", "--bin", "bulkhead-kernel"])
        .args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(output_directory().join(variant.directory_name()))
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    if variant == KernelVariant::FaultInjection {
        command.args(["--features", "fault-injection"]);
    }
    let status = command.status().map_err(|error| Error::KernelBuild(format!("cannot run cargo: {error}")))?;
    if !status.success() {
        return Err(Error::KernelBuild(format!("cargo exited with {status}")));
    }
    let elf = kernel_elf_path(variant);
    let bytes = std::fs::read(&elf).map_err(|error| Error::io(format!("reading {}", elf.display()), error))?;
    check_kernel_layout(&bytes)?;
    Ok(KernelImage { elf, variant })
}

/// Multiboot1 wants its header in the first 8 KiB of the file.
const MULTIBOOT1_SEARCH_BYTES: usize = 8192;
/// Multiboot2 wants its header in the first 32 KiB.
const MULTIBOOT2_SEARCH_BYTES: usize = 32768;

/// Checks what the two loaders rely on (see kernel/linker.ld):
/// both multiboot headers are where the loaders search, and every loaded
/// segment has the same file-offset-to-physical-address difference, so
/// that QEMU's Multiboot1 loader, which copies the file verbatim from
/// `load_addr`, places each byte where GRUB's ELF loader would.
///
/// # Errors
///
/// [`Error::KernelLayout`] naming the broken property.
pub fn check_kernel_layout(elf: &[u8]) -> Result<(), Error> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let file = ElfFile64::<object::Endianness>::parse(elf)
        .map_err(|error| Error::KernelLayout(format!("not an ELF64 file: {error}")))?;
    let endian = file.endian();
    let mut difference: Option<i128> = None;
    for header in file.elf_program_headers() {
        if header.p_type(endian) != object::elf::PT_LOAD || header.p_filesz(endian) == 0 {
            continue;
        }
        let (virtual_address, physical) = (header.p_vaddr(endian), header.p_paddr(endian));
        if virtual_address != physical && virtual_address != physical.wrapping_add(KERNEL_VIRT_BASE) {
            return Err(Error::KernelLayout(format!(
                "segment at {virtual_address:#x} is loaded at {physical:#x}: neither identity nor higher half"
            )));
        }
        let this = i128::from(header.p_offset(endian)) - i128::from(physical);
        match difference {
            None => difference = Some(this),
            Some(expected) if expected == this => {}
            Some(expected) => {
                return Err(Error::KernelLayout(format!(
                    "segment at {virtual_address:#x} has file offset - physical address {this:#x}, others {expected:#x}"
                )));
            }
        }
    }
    if difference.is_none() {
        return Err(Error::KernelLayout("no loadable segment".into()));
    }
    if !contains_aligned_u32(elf, 0x1bad_b002, 4, MULTIBOOT1_SEARCH_BYTES) {
        return Err(Error::KernelLayout("no Multiboot1 header in the first 8 KiB".into()));
    }
    if !contains_aligned_u32(elf, 0xe852_50d6, 8, MULTIBOOT2_SEARCH_BYTES) {
        return Err(Error::KernelLayout("no Multiboot2 header in the first 32 KiB".into()));
    }
    Ok(())
}

/// The kernel links its higher half at this base plus the physical address.
const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

fn contains_aligned_u32(bytes: &[u8], value: u32, alignment: usize, limit: usize) -> bool {
    let window = &bytes[..bytes.len().min(limit)];
    window.chunks_exact(alignment).any(|chunk| chunk[..4] == value.to_le_bytes())
}

/// The kernel's ELF path relative to the workspace root, for messages.
pub fn display_path(path: &Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
}
