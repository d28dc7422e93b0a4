//! Building the ring-3 images and checking them: today the root task
//! (`components/root-task`), which the kernel loads from a boot module and
//! starts as its root thread (`kernel/src/root_task.rs`, `docs/runtime.md`).
//!
//! The image is built like the kernel (`kernel_build.rs`): a nested cargo
//! for `x86_64-unknown-none`, release profile, in its own target directory
//! (`target/bulkhead/user`). One difference: the target flags in
//! `.cargo/config.toml` are the kernel's (`code-model=kernel`, for code in
//! the top 2 GiB), wrong for a program linked at 4 MiB, so the nested build
//! sets its own through `CARGO_ENCODED_RUSTFLAGS`, which takes precedence
//! over the config file (and replaces any `RUSTFLAGS` from the
//! environment).

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::kernel_build::{output_directory, workspace_root};

/// Where the root task's image may lie (`root_task::IMAGE_BASE`,
/// `IMAGE_END` in `kernel/src/root_task.rs`; `tests/user_images.rs` checks
/// that the two stay equal).
pub const IMAGE_BASE: u64 = 0x40_0000;
/// The end of the image range.
pub const IMAGE_END: u64 = 0x4000_0000;
/// Segments start on pages of this size.
pub const PAGE_SIZE: u64 = 4096;

/// The root task's package and binary.
const ROOT_TASK: &str = "bulkhead-root-task";

/// The flags for ring-3 code: linked at fixed low addresses (static, not
/// position-independent; the small code model: everything below 2 GiB),
/// with frame pointers for backtraces.
const USER_RUSTFLAGS: [&str; 3] = ["-Crelocation-model=static", "-Ccode-model=small", "-Cforce-frame-pointers=yes"];

/// Why a ring-3 image could not be had.
#[derive(Debug)]
pub enum Error {
    /// cargo failed (its own output says why).
    Build(String),
    /// The ELF breaks a rule the kernel's loader relies on.
    Layout(String),
    /// Reading the image failed.
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Build(message) => write!(formatter, "root task build failed: {message}"),
            Error::Layout(message) => write!(formatter, "root task image layout: {message}"),
            Error::Io(path, source) => write!(formatter, "reading {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for crate::Error {
    fn from(error: Error) -> crate::Error {
        match error {
            Error::Build(message) => crate::Error::KernelBuild(format!("root task: {message}")),
            Error::Layout(message) => crate::Error::KernelLayout(format!("root task: {message}")),
            Error::Io(path, source) => crate::Error::io(format!("reading {}", path.display()), source),
        }
    }
}

/// Where the root task's ELF lands, built or not.
pub fn root_task_elf_path() -> PathBuf {
    output_directory().join("user").join("x86_64-unknown-none").join("release").join(ROOT_TASK)
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

mod compiled {
    include!(concat!(env!("OUT_DIR"), "/systems.rs"));
}

/// The systems the build script compiled: (name, manifest path).
pub fn systems() -> impl Iterator<Item = (&'static str, &'static str)> {
    compiled::SYSTEMS.iter().map(|(name, manifest, _)| (*name, *manifest))
}

/// The compiled spec of system `name`, if the build script compiled one.
pub fn system_spec(name: &str) -> Option<bulkhead_capdl::SystemSpec> {
    let (_, _, blob) = compiled::SYSTEMS.iter().find(|(system, ..)| *system == name)?;
    bulkhead_capdl::from_blob(blob).ok()
}

/// The system `cargo run` boots.
pub const DEFAULT_SYSTEM: &str = "default";

/// The package whose binaries are the programs PDs run: an `image "X"`
/// in a manifest is its binary `X`.
const PROGRAMS: &str = "bulkhead-programs";
/// The loader's package and binary.
const LOADER: &str = "bulkhead-loader";
/// The package whose binaries are the project's test guests: a guest's
/// `image "X"` is its binary `X`.
const GUESTS: &str = "bulkhead-test-guests";

/// Runs the nested cargo for `x86_64-unknown-none` on `binaries` of
/// `package`, with `environment` added.
fn cargo_build(package: &str, binaries: &[&str], environment: &[(&str, &std::ffi::OsStr)]) -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args(["build", "--release", "--package", package]);
    for binary in binaries {
        command.args(["--bin", binary]);
    }
    command
        .args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(output_directory().join("user"))
        .env("CARGO_ENCODED_RUSTFLAGS", USER_RUSTFLAGS.join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    for (name, value) in environment {
        command.env(name, value);
    }
    let status = command.status().map_err(|error| Error::Build(format!("cannot run cargo: {error}")))?;
    if status.success() { Ok(()) } else { Err(Error::Build(format!("cargo exited with {status}"))) }
}

/// Where a ring-3 binary lands.
fn user_binary_path(binary: &str) -> PathBuf {
    output_directory().join("user").join("x86_64-unknown-none").join("release").join(binary)
}

/// Builds system `name` (one the build script compiled): every program
/// image its PDs run (binaries of `components/programs`), the bundle of
/// spec and images, and the loader with that bundle inside. Returns the
/// loader's ELF, the root task to boot.
///
/// # Errors
///
/// [`Error::Build`] for an unknown system or a failed build,
/// [`Error::Layout`] for an image the loaders would refuse, [`Error::Io`].
pub fn build_system(name: &str) -> Result<PathBuf, Error> {
    let Some((_, manifest, blob)) = compiled::SYSTEMS.iter().find(|(system, ..)| *system == name) else {
        let known: Vec<&str> = systems().map(|(system, _)| system).collect();
        return Err(Error::Build(format!("no system `{name}`; the repository's systems are {}", known.join(", "))));
    };
    let spec = bulkhead_capdl::from_blob(blob).map_err(|error| Error::Build(format!("{manifest}: {error}")))?;
    let mut images: Vec<&str> = spec.domains.iter().map(|domain| domain.image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    let mut guest_images: Vec<&str> = spec.guests.iter().filter_map(|guest| guest.image.as_deref()).collect();
    guest_images.sort_unstable();
    guest_images.dedup();
    let _guard = BUILD_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Other processes (test binaries, a second CLI) build systems into the
    // same files: one at a time, or one copies a loader another is writing.
    let directory = output_directory().join("systems");
    std::fs::create_dir_all(&directory).map_err(|error| Error::Io(directory.clone(), error))?;
    let lock_path = directory.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(|error| Error::Io(lock_path.clone(), error))?;
    lock.lock().map_err(|error| Error::Io(lock_path.clone(), error))?;
    cargo_build(PROGRAMS, &images, &[])?;
    if !guest_images.is_empty() {
        cargo_build(GUESTS, &guest_images, &[])?;
    }
    let mut elves = Vec::new();
    for image in &images {
        let path = user_binary_path(image);
        let bytes = std::fs::read(&path).map_err(|error| Error::Io(path.clone(), error))?;
        check_root_task_layout(&bytes).map_err(|error| Error::Layout(format!("image `{image}`: {error}")))?;
        elves.push(loadable_part(bytes));
    }
    // A guest's image is checked by the loader against its memory.
    for image in &guest_images {
        let path = user_binary_path(image);
        let bytes = std::fs::read(&path).map_err(|error| Error::Io(path.clone(), error))?;
        elves.push(loadable_part(bytes));
    }
    let mut programs: Vec<bulkhead_capdl_spec::Program<'_>> = images
        .iter()
        .chain(&guest_images)
        .zip(&elves)
        .map(|(image, elf)| bulkhead_capdl_spec::Program { name: image, elf })
        .collect();
    programs.sort_by_key(|program| program.name);
    if let Some(pair) = programs.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(Error::Build(format!("`{}` names both a PD's program and a guest's image", pair[0].name)));
    }
    let files = guest_files(manifest, &spec)?;
    let guest_files: Vec<bulkhead_capdl_spec::GuestFile<'_>> =
        files.iter().map(|(name, bytes)| bulkhead_capdl_spec::GuestFile { name, bytes }).collect();
    let bundle = bulkhead_capdl_spec::Bundle { spec: blob, programs, guest_files }.to_bytes();
    let bundle_path = directory.join(format!("{name}.bundle"));
    std::fs::write(&bundle_path, &bundle).map_err(|error| Error::Io(bundle_path.clone(), error))?;
    cargo_build(LOADER, &[LOADER], &[("BULKHEAD_SYSTEM_BUNDLE", bundle_path.as_os_str())])?;
    // Copied, checked, then renamed into place: a process still reading the
    // previous image (an emulator, an ISO build) keeps a whole file.
    let loader = directory.join(format!("{name}-loader"));
    let fresh = directory.join(format!("{name}-loader.{}", std::process::id()));
    std::fs::copy(user_binary_path(LOADER), &fresh).map_err(|error| Error::Io(fresh.clone(), error))?;
    let bytes = std::fs::read(&fresh).map_err(|error| Error::Io(fresh.clone(), error))?;
    check_root_task_layout(&bytes)?;
    std::fs::rename(&fresh, &loader).map_err(|error| Error::Io(loader.clone(), error))?;
    Ok(loader)
}

/// The kernels, initramfs images and region contents (disk images) the
/// spec names, each once, sorted by name (`guest_images`,
/// docs/GUEST-IMAGES.md); checks that each Linux guest's files fit its
/// memory as the loader will stage them, and each region's contents the
/// region ([`check_region_contents`]).
///
/// # Errors
///
/// [`Error::Build`] for a name that is no guest image, a kernel that is
/// no bzImage, files that do not fit; [`Error::Io`].
fn guest_files(manifest: &str, spec: &bulkhead_capdl::SystemSpec) -> Result<Vec<(String, Vec<u8>)>, Error> {
    use bulkhead_capdl_spec::linux::{SetupHeader, Staging};
    let kernels = spec.guests.iter().flat_map(|guest| [&guest.kernel, &guest.initrd]);
    let contents = spec.regions.iter().map(|region| &region.contents);
    let mut names: Vec<&str> = kernels.chain(contents).flatten().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // Debian's images are fetched only for a system that names one: the
    // project's own guests are built here.
    let own = |name: &str| name == crate::test_guest_image::HOSTILE_PC_ARTIFACT;
    let images = if names.iter().all(|name| own(name)) {
        None
    } else {
        Some(crate::guest_images::prepare().map_err(|error| Error::Build(format!("{manifest}: {error}")))?)
    };
    let mut files = Vec::new();
    for name in names {
        let bytes = match &images {
            Some(images) if !own(name) => {
                images.artifact(name).map_err(|error| Error::Build(format!("{manifest}: {error}")))?
            }
            _ => hostile_pc_image().map_err(|error| match error {
                Error::Build(why) => Error::Build(format!("{manifest}: {why}")),
                other => other,
            })?,
        };
        files.push((name.to_owned(), bytes));
    }
    let file = |name: &Option<String>| {
        name.as_deref().and_then(|name| files.iter().find(|(file, _)| file == name)).map(|(_, bytes)| bytes)
    };
    for guest in &spec.guests {
        let Some(kernel) = file(&guest.kernel) else { continue };
        let refuse = |why: String| Error::Build(format!("{manifest}: guest `{}`: {why}", guest.name));
        let header = SetupHeader::parse(kernel)
            .map_err(|error| refuse(format!("kernel `{}`: {error}", guest.kernel.as_deref().unwrap_or_default())))?;
        let length = |bytes: &Vec<u8>| u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let cmdline = guest.cmdline.as_ref().map(|text| u64::try_from(text.len()).unwrap_or(u64::MAX));
        Staging::plan(
            guest_memory_bytes(spec, guest),
            &header,
            length(kernel),
            file(&guest.initrd).map(length),
            cmdline,
        )
        .map_err(|error| refuse(format!("its files cannot be staged: {error}")))?;
    }
    check_region_contents(spec, &files).map_err(|why| Error::Build(format!("{manifest}: {why}")))?;
    Ok(files)
}

/// The hostile PC guest as a `bzImage` (`test_guest_image`): its binary
/// built from the test-guest package and packed.
///
/// # Errors
///
/// [`Error::Build`] for a failed build or an ELF file the packer refuses,
/// [`Error::Io`].
fn hostile_pc_image() -> Result<Vec<u8>, Error> {
    use crate::test_guest_image::{HOSTILE_PC_BINARY, bzimage_from_elf};
    cargo_build(GUESTS, &[HOSTILE_PC_BINARY], &[])?;
    let path = user_binary_path(HOSTILE_PC_BINARY);
    let elf = std::fs::read(&path).map_err(|error| Error::Io(path.clone(), error))?;
    bzimage_from_elf(&elf).map_err(|why| Error::Build(format!("`{HOSTILE_PC_BINARY}`: {why}")))
}

/// Checks that every region's `contents` is one of `files` and fits the
/// region as the loader fills it (`bulkhead_capdl_spec::contents::Fill`):
/// the check the manifest's validator cannot make, as only the CLI knows
/// the files.
///
/// # Errors
///
/// Which region, and why: its file is missing, longer than the region, or
/// its pages are not ones the loader fills.
pub fn check_region_contents(spec: &bulkhead_capdl::SystemSpec, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    use bulkhead_capdl_spec::contents::Fill;
    for region in &spec.regions {
        let Some(name) = &region.contents else { continue };
        let Some((_, bytes)) = files.iter().find(|(file, _)| file == name) else {
            return Err(format!("region `{}`: no guest file `{name}`", region.name));
        };
        let Some(bulkhead_capdl::compile::ObjectKind::Frames { page_size, count, .. }) =
            spec.object(region.frames).map(|object| &object.kind)
        else {
            return Err(format!("region `{}`: its frames are not frames", region.name));
        };
        let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Fill::plan(*page_size, *count, length)
            .map_err(|error| format!("region `{}` cannot hold `{name}`: {error}", region.name))?;
    }
    Ok(())
}

/// The end of a guest's memory: guest-physical 0 to the end of its last
/// region (the loader's `GuestInfo::memory_bytes`).
fn guest_memory_bytes(spec: &bulkhead_capdl::SystemSpec, guest: &bulkhead_capdl_spec::GuestSpec) -> u64 {
    guest
        .memory
        .iter()
        .filter_map(|memory| {
            let region = spec.regions.get(usize::try_from(memory.region).ok()?)?;
            memory.guest_physical.checked_add(region.size)
        })
        .max()
        .unwrap_or(0)
}

/// The emulated machine's RAM for system `name`, in MiB: the
/// [`MEMORY_MIB`](crate::emulator::MEMORY_MIB) every run has (the kernel,
/// its boot structures, the root's untypeds, the firmware's share), plus
/// the system's bundle twice (the loader's image is a boot module and is
/// copied into the root task's frames), plus the RAM its regions take
/// ([`region_ram_bytes`]: every guest's memory, its disks and the other
/// regions), rounded up to 16 MiB. Systems without guests and with small
/// bundles keep about the usual amount.
///
/// # Errors
///
/// [`Error::Build`] for an unknown system.
pub fn system_memory_mib(name: &str) -> Result<u32, Error> {
    let spec = system_spec(name).ok_or_else(|| Error::Build(format!("no system `{name}`")))?;
    let bundle_path = output_directory().join("systems").join(format!("{name}.bundle"));
    let bundle_bytes = std::fs::metadata(&bundle_path).map_or(0, |metadata| metadata.len());
    Ok(memory_mib(bundle_bytes, region_ram_bytes(&spec)))
}

/// Bochs's clock rate for system `name`: [`LINUX_BOCHS_IPS`] when a guest
/// of it boots a kernel (Linux: its timer tick needs a CPU of realistic
/// speed), else the usual [`BOCHS_IPS`].
///
/// [`LINUX_BOCHS_IPS`]: crate::emulator::LINUX_BOCHS_IPS
/// [`BOCHS_IPS`]: crate::emulator::BOCHS_IPS
///
/// # Errors
///
/// [`Error::Build`] for an unknown system.
pub fn system_bochs_ips(name: &str) -> Result<u32, Error> {
    let spec = system_spec(name).ok_or_else(|| Error::Build(format!("no system `{name}`")))?;
    Ok(if spec.guests.iter().any(|guest| guest.kernel.is_some()) {
        crate::emulator::LINUX_BOCHS_IPS
    } else {
        crate::emulator::BOCHS_IPS
    })
}

/// The PD whose console lines are the first Linux guest's console (the PD
/// that serves its COM1: its VMX, or its VMM when it has none), if system
/// `name` has a guest that boots a kernel.
pub fn guest_console_pd(name: &str) -> Option<String> {
    let spec = system_spec(name)?;
    let guest = spec.guests.iter().find(|guest| guest.kernel.is_some())?;
    let server = guest.vmx.map_or(guest.vmm, |vmx| vmx.domain);
    let pd = spec.domains.get(usize::try_from(server).ok()?)?;
    Some(pd.name.clone())
}

/// The RAM a system's regions take from the root's untypeds: each guest's
/// memory as it lies in guest-physical space (from 0 to the end of its
/// last region), and every other region of RAM (a guest's disks among
/// them); regions at fixed physical addresses are device memory and take
/// none.
pub fn region_ram_bytes(spec: &bulkhead_capdl::SystemSpec) -> u64 {
    let guest_memory: u64 = spec.guests.iter().map(|guest| guest_memory_bytes(spec, guest)).sum();
    let is_guest_memory = |index: usize| {
        spec.guests.iter().any(|guest| guest.memory.iter().any(|memory| usize::try_from(memory.region) == Ok(index)))
    };
    let other: u64 = spec
        .regions
        .iter()
        .enumerate()
        .filter(|(index, region)| {
            !is_guest_memory(*index)
                && matches!(
                    spec.object(region.frames).map(|object| &object.kind),
                    Some(bulkhead_capdl::compile::ObjectKind::Frames { physical: None, .. })
                )
        })
        .map(|(_, region)| region.size)
        .sum();
    guest_memory.saturating_add(other)
}

/// [`system_memory_mib`]'s sum for a bundle and regions of these sizes.
pub fn memory_mib(bundle_bytes: u64, region_ram_bytes: u64) -> u32 {
    const MIB: u64 = 1 << 20;
    let bytes = (u64::from(crate::emulator::MEMORY_MIB) * MIB)
        .saturating_add(bundle_bytes.saturating_mul(2))
        .saturating_add(region_ram_bytes);
    u32::try_from(bytes.div_ceil(16 * MIB) * 16).unwrap_or(u32::MAX)
}

/// Builds the root task (cargo skips the work when nothing changed) and
/// checks its layout ([`check_root_task_layout`]); returns the ELF's path.
///
/// # Errors
///
/// [`Error::Build`] if cargo fails, [`Error::Layout`] if the image breaks a
/// loader rule, [`Error::Io`] if it cannot be read.
pub fn build_root_task() -> Result<PathBuf, Error> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--package", ROOT_TASK, "--bin", ROOT_TASK])
        .args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(output_directory().join("user"))
        .env("CARGO_ENCODED_RUSTFLAGS", USER_RUSTFLAGS.join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|error| Error::Build(format!("cannot run cargo: {error}")))?;
    if !status.success() {
        return Err(Error::Build(format!("cargo exited with {status}")));
    }
    let elf = root_task_elf_path();
    let bytes = std::fs::read(&elf).map_err(|error| Error::Io(elf.clone(), error))?;
    check_root_task_layout(&bytes)?;
    Ok(elf)
}

/// The part of a checked ELF image the loaders read: the file up to the
/// end of its last loadable segment, without section headers (debug
/// information and symbols stay in the built file, for the symbolizer).
fn loadable_part(mut elf: Vec<u8>) -> Vec<u8> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let Ok(file) = ElfFile64::<object::Endianness>::parse(&*elf) else { return elf };
    let endian = file.endian();
    let headers_end = {
        let header = file.elf_header();
        header.e_phoff(endian) + u64::from(header.e_phnum(endian)) * u64::from(header.e_phentsize(endian))
    };
    let end = file
        .elf_program_headers()
        .iter()
        .filter(|segment| segment.p_type(endian) == object::elf::PT_LOAD)
        .map(|segment| segment.p_offset(endian) + segment.p_filesz(endian))
        .fold(headers_end, u64::max);
    let Ok(end) = usize::try_from(end) else { return elf };
    if end >= elf.len() {
        return elf;
    }
    elf.truncate(end);
    // No section headers: e_shoff (offset 40, 8 bytes), e_shnum (60, 2)
    // and e_shstrndx (62, 2) become zero.
    elf[40..48].fill(0);
    elf[60..64].fill(0);
    elf
}

/// Checks what the kernel's root-task loader relies on: a static
/// little-endian x86-64 executable (no interpreter, no dynamic section),
/// every loadable segment page-aligned, inside `[IMAGE_BASE, IMAGE_END)`,
/// with no more file bytes than memory bytes, not both writable and
/// executable, no two sharing a page; the entry point inside an executable
/// segment.
///
/// # Errors
///
/// [`Error::Layout`] naming the broken rule.
pub fn check_root_task_layout(elf: &[u8]) -> Result<(), Error> {
    use object::elf::{EM_X86_64, ET_EXEC, PF_W, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD};
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let layout = |message: String| Error::Layout(message);
    let file =
        ElfFile64::<object::Endianness>::parse(elf).map_err(|error| layout(format!("not an ELF64 file: {error}")))?;
    let endian = file.endian();
    if endian != object::Endianness::Little {
        return Err(layout("not little-endian".into()));
    }
    let header = file.elf_header();
    if header.e_machine(endian) != EM_X86_64 {
        return Err(layout(format!("machine {} is not x86-64", header.e_machine(endian))));
    }
    if header.e_type(endian) != ET_EXEC {
        return Err(layout(format!("type {} is not a static executable (ET_EXEC)", header.e_type(endian))));
    }
    let entry = header.e_entry(endian);
    // (first page, end of the last page, end, executable)
    let mut loaded: Vec<(u64, u64, u64, bool)> = Vec::new();
    for segment in file.elf_program_headers() {
        let kind = segment.p_type(endian);
        if kind == PT_INTERP || kind == PT_DYNAMIC {
            return Err(layout("dynamically linked (PT_INTERP or PT_DYNAMIC)".into()));
        }
        if kind != PT_LOAD || segment.p_memsz(endian) == 0 {
            continue;
        }
        let (address, memory, file_size) = (segment.p_vaddr(endian), segment.p_memsz(endian), segment.p_filesz(endian));
        let flags = segment.p_flags(endian);
        let end = address.checked_add(memory).ok_or_else(|| layout(format!("segment at {address:#x} wraps")))?;
        if address % PAGE_SIZE != 0 || segment.p_offset(endian) % PAGE_SIZE != 0 {
            return Err(layout(format!("segment at {address:#x} is not page-aligned")));
        }
        if address < IMAGE_BASE || end > IMAGE_END {
            return Err(layout(format!(
                "segment {address:#x}..{end:#x} is outside the image range {IMAGE_BASE:#x}..{IMAGE_END:#x}"
            )));
        }
        if file_size > memory {
            return Err(layout(format!("segment at {address:#x} has more file bytes than memory bytes")));
        }
        if flags & PF_W != 0 && flags & PF_X != 0 {
            return Err(layout(format!("segment at {address:#x} is writable and executable")));
        }
        let page_end = end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if let Some((other, ..)) = loaded.iter().find(|(start, stop, ..)| *start < page_end && address < *stop) {
            return Err(layout(format!("segments at {other:#x} and {address:#x} share a page")));
        }
        loaded.push((address, page_end, end, flags & PF_X != 0));
    }
    if loaded.is_empty() {
        return Err(layout("no loadable segment".into()));
    }
    if !loaded.iter().any(|(start, _, stop, executable)| *executable && (*start..*stop).contains(&entry)) {
        return Err(layout(format!("entry point {entry:#x} is not in an executable segment")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_grows_with_the_bundle_and_the_guests() {
        // A system of small programs keeps the usual 256 MiB (one 16 MiB
        // step up for a bundle of a few hundred KiB).
        assert_eq!(memory_mib(0, 0), 256);
        assert_eq!(memory_mib(400 << 10, 2 << 20), 272);
        // One Linux guest of 128 MiB and a 17 MB bundle: 256 + 2 * 16.2
        // + 128 MiB, rounded up.
        assert_eq!(memory_mib(17_000_000, 128 << 20), 432);
        // Two such guests sharing the files.
        assert_eq!(memory_mib(17_000_000, 256 << 20), 560);
    }

    /// A Linux guest with a disk region, a shared ring and device memory.
    const SYSTEM: &str = "
pd vmm {
    image \"vmm-server\"
    priority 100
    budget 10ms
    period 10ms
    core 0
}

region ram_low {
    size 126MiB
    page 2MiB
    map vmm at 0x10_0000_0000 rw
}

region ram_high {
    size 2MiB
    page 2MiB
    map vmm at 0x10_07e0_0000 rw
}

region disk {
    size 8MiB
    page 2MiB
    contents \"busybox-disk\"
    map vmm at 0x20_0000_0000 rw
}

region scratch {
    size 16KiB
    map vmm at 0x30_0000_0000 rw
}

region registers {
    size 4KiB
    physical 0xfed0_0000
    map vmm at 0x40_0000_0000 rw
}

guest linux {
    memory ram_low
    memory ram_high
    vcpus 1
    vmm vmm
    kernel \"debian-cloud\"
    disk root from disk
}
";

    fn compiled(text: &str) -> bulkhead_capdl::SystemSpec {
        let manifest = bulkhead_capdl::parse("test.capdl", text).expect("parses");
        let graph = bulkhead_capdl::validate(&manifest).expect("validates");
        bulkhead_capdl::compile(&manifest, &graph).expect("compiles")
    }

    #[test]
    fn the_machine_counts_guest_memory_disks_and_other_ram_but_not_device_memory() {
        let spec = compiled(SYSTEM);
        // 128 MiB of guest memory, the 8 MiB disk and 16 KiB of scratch.
        assert_eq!(region_ram_bytes(&spec), (128 << 20) + (8 << 20) + (16 << 10));
        // With a 21 MB bundle: 256 + 2 * 20 + 136 MiB, rounded up.
        assert_eq!(memory_mib(21_000_000, region_ram_bytes(&spec)), 448);
    }

    #[test]
    fn a_regions_contents_must_be_a_file_that_fits_it() {
        let spec = compiled(SYSTEM);
        let file = |bytes: usize| vec![("busybox-disk".to_owned(), vec![0x5a_u8; bytes])];
        assert_eq!(check_region_contents(&spec, &file(8 << 20)), Ok(()));
        assert_eq!(check_region_contents(&spec, &file(4 << 20)), Ok(()));
        let error = check_region_contents(&spec, &file((8 << 20) + 1)).expect_err("too large");
        assert!(error.contains("region `disk` cannot hold `busybox-disk`") && error.contains("8388609"), "{error}");
        let error = check_region_contents(&spec, &[]).expect_err("missing");
        assert_eq!(error, "region `disk`: no guest file `busybox-disk`");
    }
}
