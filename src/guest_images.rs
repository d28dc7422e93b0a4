//! The Linux test guest's images, made from Debian packages
//! (`docs/GUEST-IMAGES.md`).
//!
//! - **Kernel**: the bzImage of the versioned package that
//!   `linux-image-cloud-amd64` depends on, resolved with `apt-cache` on
//!   every run (the resolved package and version are printed and recorded,
//!   so a run says which kernel it booted and a later update is visible).
//! - **Initramfs**: an uncompressed cpio "newc" archive written here
//!   ([`Cpio`]): `/init` (`guest-images/init`), busybox from
//!   `busybox-static` with the applets the script runs, and the virtio
//!   modules out of the kernel package, in their dependency order.
//! - **Disk**: a small ext2 image made with `mke2fs -d` from
//!   `guest-images/disk/`, with a fixed UUID, hash seed, times and owners
//!   ([`normalise_ext2`]), so that the same files give the same bytes.
//!
//! Packages are fetched with `apt-get download` alone and unpacked with
//! `dpkg-deb -x`, into `target/bulkhead/guest-images/`, keyed by package
//! and version: a second run fetches nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel_build::{output_directory, workspace_root};

/// The metapackage whose dependency names the kernel to boot.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// The package whose busybox the initramfs carries (statically linked, so
/// the initramfs needs no C library).
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The manifest's name for the kernel (`kernel "debian-cloud"`).
pub const KERNEL_ARTIFACT: &str = "debian-cloud";
/// The manifest's name for the initramfs (`initrd "busybox-initramfs"`).
pub const INITRAMFS_ARTIFACT: &str = "busybox-initramfs";
/// The manifest's name for the disk image (`contents "busybox-disk"`).
pub const DISK_ARTIFACT: &str = "busybox-disk";
/// The artifacts a manifest may name, for messages.
pub const ARTIFACTS: [&str; 3] = [KERNEL_ARTIFACT, INITRAMFS_ARTIFACT, DISK_ARTIFACT];

/// The kernel modules the guest loads (with what they depend on, found in
/// their `.modinfo`): the virtio-mmio transport and the block, console and
/// network drivers. The cloud kernel builds virtio as modules
/// (`CONFIG_VIRTIO=m`).
pub const GUEST_MODULES: [&str; 4] = ["virtio_mmio", "virtio_blk", "virtio_console", "virtio_net"];
/// The busybox applets `/init` runs, linked in `/bin`.
pub const APPLETS: [&str; 13] =
    ["sh", "mount", "umount", "insmod", "cat", "sleep", "sync", "poweroff", "ls", "dd", "grep", "ifconfig", "arping"];
/// `/init` (a busybox `sh` script).
pub const INIT_SCRIPT: &str = include_str!("../guest-images/init");
/// The files of the disk image.
pub const DISK_DIRECTORY: &str = "guest-images/disk";
/// The disk image's size, as `mke2fs` reads it.
pub const DISK_SIZE: &str = "4M";
/// The disk's file-system UUID: fixed, as everything else that `mke2fs`
/// would pick at random, so that the image is reproducible.
pub const DISK_UUID: &str = "b01c4ead-0000-4000-8000-000000000001";
/// The seed of its directory hashes (`-E hash_seed`), likewise.
pub const DISK_HASH_SEED: &str = "b01c4ead-0000-4000-8000-000000000002";
/// The console markers the guest prints (the tests' contract).
pub mod markers {
    /// `/init` runs.
    pub const USERSPACE_UP: &str = "BULKHEAD-GUEST: userspace up";
    /// The disk was written, remounted and read back: followed by the text.
    pub const DISK_OK: &str = "BULKHEAD-GUEST: disk ok ";
    /// The disk test failed: followed by why.
    pub const DISK_FAILED: &str = "BULKHEAD-GUEST: disk failed ";
    /// No virtio block device showed up.
    pub const NO_DISK: &str = "BULKHEAD-GUEST: no disk";
    /// Written to the virtio console (`/dev/hvc0`) only: the host sees it
    /// on that console's lines.
    pub const HVC_OK: &str = "BULKHEAD-GUEST: virtio console ok";
    /// On COM1: no virtio console showed up.
    pub const NO_HVC: &str = "BULKHEAD-GUEST: no virtio console";
    /// Frames sent on `eth0` came back on it (the loopback port): followed
    /// by `tx N rx N`, the driver's own counts.
    pub const NET_OK: &str = "BULKHEAD-GUEST: net ok ";
    /// The network test failed: followed by why.
    pub const NET_FAILED: &str = "BULKHEAD-GUEST: net failed ";
    /// No network interface showed up.
    pub const NO_NET: &str = "BULKHEAD-GUEST: no net";
    /// What the guest writes to the disk and reads back.
    pub const GUEST_TEXT: &str = "written-by-the-guest";
    /// With `bulkhead.bench=1`: `/proc/uptime`'s first number after the
    /// disk test.
    pub const BENCH_UPTIME: &str = "BULKHEAD-GUEST: bench uptime ";
    /// With `bulkhead.bench=1`: the bytes read from the disk, and the
    /// uptime before and after.
    pub const BENCH_READ: &str = "BULKHEAD-GUEST: bench read ";
    /// With `bulkhead.bench=1`: the bytes written to the disk's tail, and
    /// the uptime before and after.
    pub const BENCH_WRITE: &str = "BULKHEAD-GUEST: bench write ";
    /// With `bulkhead.bench=1`: the measures are done.
    pub const BENCH_DONE: &str = "BULKHEAD-GUEST: bench done";
    /// With `bulkhead.gdb=1` (the debugger's test, `tests/guest_gdb.rs`):
    /// a symbol's name and its address in hexadecimal, from
    /// `/proc/kallsyms`.
    pub const SYMBOL: &str = "BULKHEAD-GUEST: symbol ";
    /// The symbols are out; the guest waits for the debugger.
    pub const GDB_MAY_ATTACH: &str = "BULKHEAD-GUEST: gdb may attach";
    /// The guest's host name while it waits, and the one a debugger writes
    /// over it (into `init_uts_ns`) to end the wait.
    pub const GDB_WAIT_HOSTNAME: &str = "bulkhead-gdb-wait";
    /// See [`GDB_WAIT_HOSTNAME`].
    pub const GDB_DONE_HOSTNAME: &str = "bulkhead-gdb-done";
    /// The debugger ended the wait.
    pub const GDB_RELEASED: &str = "BULKHEAD-GUEST: gdb released";
    /// Nothing ended it in time: the guest went on.
    pub const GDB_WAIT_OVER: &str = "BULKHEAD-GUEST: gdb wait over";
}

/// Why the guest images could not be had.
#[derive(Debug)]
pub enum Error {
    /// apt-cache, apt-get or dpkg-deb failed or said something unexpected.
    Package(String),
    /// The package's contents are not what the images need.
    Contents(String),
    /// A file could not be read or written.
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Package(message) => write!(formatter, "guest images: {message}"),
            Error::Contents(message) => write!(formatter, "guest images: {message}"),
            Error::Io(path, source) => write!(formatter, "guest images: {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for crate::Error {
    fn from(error: Error) -> crate::Error {
        match error {
            Error::Io(path, source) => crate::Error::io(format!("guest images: {}", path.display()), source),
            other => crate::Error::GuestImages(other.to_string()),
        }
    }
}

/// A Debian package at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its version, as apt writes it (`1:1.35.0-4+deb12u1+b1`).
    pub version: String,
}

impl Package {
    /// The name of its cache directory: name and version, with every
    /// character other than letters, digits, `.`, `+`, `-` and `_` as `_`
    /// (an epoch's `:` would read as a protocol to QEMU's `-drive`).
    pub fn cache_key(&self) -> String {
        format!("{}_{}", self.name, self.version)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_') { c } else { '_' })
            .collect()
    }
}

impl fmt::Display for Package {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.name, self.version)
    }
}

/// The images, ready on disk.
#[derive(Clone, Debug)]
pub struct GuestImages {
    /// The kernel package booted.
    pub kernel_package: Package,
    /// The busybox package in the initramfs.
    pub busybox_package: Package,
    /// The kernel's release (`6.1.0-56-cloud-amd64`), its modules' directory.
    pub kernel_release: String,
    /// The bzImage.
    pub bzimage: PathBuf,
    /// The initramfs (uncompressed newc cpio).
    pub initramfs: PathBuf,
    /// The disk image (ext2, [`disk_image`]).
    pub disk: PathBuf,
    /// The modules in `/lib/modules/order`, in load order.
    pub module_order: Vec<String>,
}

impl GuestImages {
    /// The bytes of artifact `name` ([`KERNEL_ARTIFACT`],
    /// [`INITRAMFS_ARTIFACT`], [`DISK_ARTIFACT`]).
    ///
    /// # Errors
    ///
    /// [`Error::Contents`] for a name that is no artifact, [`Error::Io`].
    pub fn artifact(&self, name: &str) -> Result<Vec<u8>, Error> {
        let path = match name {
            KERNEL_ARTIFACT => &self.bzimage,
            INITRAMFS_ARTIFACT => &self.initramfs,
            DISK_ARTIFACT => &self.disk,
            other => {
                return Err(Error::Contents(format!(
                    "no guest image called `{other}`: the CLI provides {}",
                    ARTIFACTS.map(|name| format!("`{name}`")).join(", ")
                )));
            }
        };
        std::fs::read(path).map_err(|error| Error::Io(path.clone(), error))
    }
}

/// Where the images are cached.
pub fn cache_directory() -> PathBuf {
    output_directory().join("guest-images")
}

/// Fetches (unless cached) and builds the images; prints the packages.
///
/// # Errors
///
/// [`Error::Package`] when apt cannot resolve or fetch a package (after
/// one `apt-get update`), [`Error::Contents`] when a package lacks what
/// the images need, [`Error::Io`].
pub fn prepare() -> Result<GuestImages, Error> {
    let directory = cache_directory();
    create_directory(&directory)?;
    // Test binaries and a CLI may prepare at once: one at a time.
    let lock_path = directory.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(|error| Error::Io(lock_path.clone(), error))?;
    lock.lock().map_err(|error| Error::Io(lock_path.clone(), error))?;

    let mut updated = false;
    let (kernel_package, busybox_package) = match resolve_packages() {
        Ok(packages) => packages,
        Err(first) => {
            // Missing or stale package lists: refresh them once.
            apt_get_update(&first)?;
            updated = true;
            resolve_packages()?
        }
    };
    record_resolution(&directory, &kernel_package, &busybox_package)?;
    prune(&directory, &[kernel_package.cache_key(), busybox_package.cache_key()])?;
    let kernel_deb = fetch(&directory, &kernel_package, &mut updated)?;
    let busybox_deb = fetch(&directory, &busybox_package, &mut updated)?;
    let kernel = unpack_kernel(&directory, &kernel_package, &kernel_deb)?;
    let busybox = unpack_busybox(&directory, &busybox_package, &busybox_deb)?;

    let busybox_bytes = std::fs::read(&busybox).map_err(|error| Error::Io(busybox.clone(), error))?;
    let mut modules = Vec::new();
    for name in &kernel.module_order {
        let path = kernel.directory.join("modules").join(format!("{name}.ko"));
        modules.push((name.clone(), std::fs::read(&path).map_err(|error| Error::Io(path.clone(), error))?));
    }
    let archive = initramfs(INIT_SCRIPT.as_bytes(), &busybox_bytes, &modules);
    let initramfs = directory.join(initramfs_file_name(&[kernel_package.cache_key(), busybox_package.cache_key()]));
    write_if_changed(&initramfs, &archive)?;
    let disk = directory.join(format!("{DISK_ARTIFACT}.img"));
    write_if_changed(&disk, &disk_image()?)?;
    Ok(GuestImages {
        kernel_package,
        busybox_package,
        kernel_release: kernel.release,
        bzimage: kernel.directory.join("bzImage"),
        initramfs,
        disk,
        module_order: kernel.module_order,
    })
}

/// Writes a fresh ext2 disk image of [`DISK_SIZE`] at `path` with the files
/// of [`DISK_DIRECTORY`] ([`disk_image`]; the guest writes to it, so every
/// run gets its own copy).
///
/// # Errors
///
/// As [`disk_image`], and [`Error::Io`] if `path` cannot be written.
pub fn fresh_disk_image(path: &Path) -> Result<(), Error> {
    let bytes = disk_image()?;
    if let Some(parent) = path.parent() {
        create_directory(parent)?;
    }
    std::fs::write(path, bytes).map_err(|error| Error::Io(path.to_owned(), error))
}

/// The ext2 disk image of [`DISK_SIZE`] with the files of
/// [`DISK_DIRECTORY`]: made by `mke2fs -d` with a fixed UUID and hash seed
/// and root as the owner, then with every time and owner set to 0
/// ([`normalise_ext2`]), so the same files always give the same bytes (a
/// bundle that carries the image is reproducible).
///
/// # Errors
///
/// [`Error::Package`] if `mke2fs` (e2fsprogs) is missing or fails,
/// [`Error::Contents`] if its image is not the ext2 [`normalise_ext2`]
/// reads, [`Error::Io`].
pub fn disk_image() -> Result<Vec<u8>, Error> {
    crate::tools::ensure(&[crate::tools::Tool::Mke2fs]).map_err(|error| Error::Package(error.to_string()))?;
    let directory = cache_directory();
    create_directory(&directory)?;
    // mke2fs writes a file: one of this call's own (threads of one process
    // make images at once), removed after.
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = directory.join(format!("disk-{}-{number}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let source = workspace_root().join(DISK_DIRECTORY);
    let output = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-L", "bulkhead", "-U", DISK_UUID, "-E"])
        .arg(format!("hash_seed={DISK_HASH_SEED},root_owner=0:0"))
        .arg("-d")
        .arg(&source)
        .arg(&path)
        .arg(DISK_SIZE)
        .output()
        .map_err(|error| Error::Package(format!("cannot run mke2fs: {error}")))?;
    let bytes = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    if !output.status.success() {
        return Err(Error::Package(format!(
            "mke2fs {} failed with {}: {}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let mut bytes = bytes.map_err(|error| Error::Io(path.clone(), error))?;
    normalise_ext2(&mut bytes).map_err(|why| Error::Contents(format!("the disk image mke2fs made: {why}")))?;
    Ok(bytes)
}

/// Superblock offsets (from its first byte, at byte 1024 of the image).
mod superblock {
    pub(super) const AT: usize = 1024;
    pub(super) const INODES_COUNT: usize = 0;
    pub(super) const BLOCKS_COUNT: usize = 4;
    pub(super) const FIRST_DATA_BLOCK: usize = 20;
    pub(super) const LOG_BLOCK_SIZE: usize = 24;
    pub(super) const BLOCKS_PER_GROUP: usize = 32;
    pub(super) const INODES_PER_GROUP: usize = 40;
    pub(super) const MTIME: usize = 44;
    pub(super) const WTIME: usize = 48;
    pub(super) const MAGIC: usize = 56;
    pub(super) const LASTCHECK: usize = 64;
    pub(super) const REV_LEVEL: usize = 76;
    pub(super) const INODE_SIZE: usize = 88;
    pub(super) const FEATURE_INCOMPAT: usize = 96;
    pub(super) const DESC_SIZE: usize = 254;
    pub(super) const MKFS_TIME: usize = 264;
    /// The incompatible feature of 64-bit block numbers (larger group
    /// descriptors).
    pub(super) const INCOMPAT_64BIT: u32 = 0x80;
}

/// Inode offsets.
mod inode {
    pub(super) const UID: usize = 2;
    pub(super) const ATIME: usize = 8;
    pub(super) const CTIME: usize = 12;
    pub(super) const MTIME: usize = 16;
    pub(super) const GID: usize = 24;
    pub(super) const UID_HIGH: usize = 120;
    pub(super) const GID_HIGH: usize = 122;
    /// The bytes past the first 128 that the inode uses (large inodes).
    pub(super) const EXTRA_ISIZE: usize = 128;
    /// `i_ctime_extra` to `i_crtime_extra`: the nanoseconds and the
    /// creation time.
    pub(super) const EXTRA_TIMES: core::ops::Range<usize> = 132..152;
}

fn field(image: &[u8], at: usize, width: usize) -> Result<u64, String> {
    let bytes = at
        .checked_add(width)
        .and_then(|end| image.get(at..end))
        .ok_or_else(|| format!("a field at byte {at} is past the image's end"))?;
    Ok(bytes.iter().rev().fold(0, |value, byte| value << 8 | u64::from(*byte)))
}

fn clear(image: &mut [u8], at: usize, width: usize) -> Result<(), String> {
    at.checked_add(width)
        .and_then(|end| image.get_mut(at..end))
        .ok_or_else(|| format!("a field at byte {at} is past the image's end"))?
        .fill(0);
    Ok(())
}

/// Sets every time `mke2fs` wrote into an ext2 image to 0 (the
/// superblock's creation, write, mount and check times; each inode's
/// access, change and modification times, and on large inodes their
/// nanoseconds and creation time) and every inode's owner and group to
/// root: what `mke2fs -d` takes from the clock and from the source files.
/// Reads only what the image's own superblock and group descriptors say,
/// each access bounds-checked.
///
/// # Errors
///
/// Why the bytes are not an ext2 image this can walk (no magic, a
/// block or inode size it does not know, a table past the end).
pub fn normalise_ext2(image: &mut [u8]) -> Result<(), String> {
    use superblock as sb;
    let at = |offset: usize| sb::AT + offset;
    if field(image, at(sb::MAGIC), 2)? != 0xef53 {
        return Err("no ext2 magic at byte 1080".into());
    }
    let log_block_size = field(image, at(sb::LOG_BLOCK_SIZE), 4)?;
    if log_block_size > 6 {
        return Err(format!("block size 1024 << {log_block_size}"));
    }
    let block_size = 1024_u64 << log_block_size;
    let inode_size = if field(image, at(sb::REV_LEVEL), 4)? == 0 { 128 } else { field(image, at(sb::INODE_SIZE), 2)? };
    if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
        return Err(format!("inodes of {inode_size} bytes"));
    }
    let descriptor_size = if field(image, at(sb::FEATURE_INCOMPAT), 4)? & u64::from(sb::INCOMPAT_64BIT) != 0 {
        field(image, at(sb::DESC_SIZE), 2)?
    } else {
        32
    };
    let blocks = field(image, at(sb::BLOCKS_COUNT), 4)?;
    let first_data_block = field(image, at(sb::FIRST_DATA_BLOCK), 4)?;
    let blocks_per_group = field(image, at(sb::BLOCKS_PER_GROUP), 4)?;
    let inodes_per_group = field(image, at(sb::INODES_PER_GROUP), 4)?;
    if blocks_per_group == 0 || inodes_per_group == 0 || descriptor_size < 32 || first_data_block >= blocks {
        return Err("a superblock without groups".into());
    }
    let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
    if groups.saturating_mul(inodes_per_group) < field(image, at(sb::INODES_COUNT), 4)? {
        return Err("fewer inodes in the groups than the superblock counts".into());
    }
    let index = |value: u64| usize::try_from(value).map_err(|_| format!("{value} is past the address space"));
    let image_bytes = u64::try_from(image.len()).unwrap_or(u64::MAX);
    // Every group's descriptor and inodes lie inside the image, so the
    // loop below is bounded by its size.
    let descriptors = (first_data_block + 1).saturating_mul(block_size);
    if descriptors.saturating_add(groups.saturating_mul(descriptor_size)) > image_bytes
        || groups.saturating_mul(inodes_per_group).saturating_mul(inode_size) > image_bytes
    {
        return Err("group descriptors or inode tables past the image's end".into());
    }
    for group in 0..groups {
        let descriptor = descriptors + group * descriptor_size;
        // bg_inode_table (its high half only with 64-bit descriptors).
        let mut table = field(image, index(descriptor + 8)?, 4)?;
        if descriptor_size >= 64 {
            table |= field(image, index(descriptor + 0x28)?, 4)? << 32;
        }
        let start = table.checked_mul(block_size).ok_or("an inode table past 2^64")?;
        for number in 0..inodes_per_group {
            let inode = index(start.saturating_add(number * inode_size))?;
            for (offset, width) in [
                (inode::UID, 2),
                (inode::ATIME, 4),
                (inode::CTIME, 4),
                (inode::MTIME, 4),
                (inode::GID, 2),
                (inode::UID_HIGH, 2),
                (inode::GID_HIGH, 2),
            ] {
                clear(image, inode.saturating_add(offset), width)?;
            }
            if inode_size > 128 {
                let extra = field(image, inode.saturating_add(inode::EXTRA_ISIZE), 2)?;
                let used_end = 128_u64.saturating_add(extra).min(inode_size);
                for offset in inode::EXTRA_TIMES.step_by(4) {
                    if u64::try_from(offset + 4).unwrap_or(u64::MAX) <= used_end {
                        clear(image, inode.saturating_add(offset), 4)?;
                    }
                }
            }
        }
    }
    for offset in [sb::MTIME, sb::WTIME, sb::LASTCHECK, sb::MKFS_TIME] {
        clear(image, at(offset), 4)?;
    }
    Ok(())
}

fn create_directory(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|error| Error::Io(path.to_owned(), error))
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    // Written beside and renamed: a reader never sees half a file.
    let fresh = path.with_extension(format!("new{}", std::process::id()));
    std::fs::write(&fresh, bytes).map_err(|error| Error::Io(fresh.clone(), error))?;
    std::fs::rename(&fresh, path).map_err(|error| Error::Io(path.to_owned(), error))
}

/// Runs a command and returns its standard output, or why it failed.
fn run_tool(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|error| format!("cannot run {shown}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{shown} failed with {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The kernel package and the busybox package, at their candidate
/// versions.
fn resolve_packages() -> Result<(Package, Package), Error> {
    let depends = run_tool(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE])).map_err(Error::Package)?;
    let kernel = versioned_kernel_dependency(&depends).ok_or_else(|| {
        Error::Package(format!("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package"))
    })?;
    Ok((candidate(&kernel)?, candidate(BUSYBOX_PACKAGE)?))
}

fn candidate(name: &str) -> Result<Package, Error> {
    let policy = run_tool(Command::new("apt-cache").args(["policy", name])).map_err(Error::Package)?;
    let version = candidate_version(&policy)
        .ok_or_else(|| Error::Package(format!("apt knows no candidate version of `{name}`")))?;
    Ok(Package { name: name.to_owned(), version })
}

/// The first `Depends:` of `apt-cache depends` output that is a real
/// (not virtual, `<...>`) `linux-image-` package.
pub fn versioned_kernel_dependency(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let name = line.trim().trim_start_matches('|').strip_prefix("Depends:")?.trim();
        (name.starts_with("linux-image-") && !name.contains(['<', '>', ' '])).then(|| name.to_owned())
    })
}

/// The `Candidate:` version of `apt-cache policy` output (`None` for
/// `(none)` or no such line).
pub fn candidate_version(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let version = line.trim().strip_prefix("Candidate:")?.trim();
        (!version.is_empty() && version != "(none)" && !version.contains(char::is_whitespace))
            .then(|| version.to_owned())
    })
}

fn apt_get_update(why: &Error) -> Result<(), Error> {
    eprintln!("bulkhead: {why}; refreshing the package lists (apt-get update)");
    run_tool(
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .map(|_| ())
    .map_err(|message| {
        Error::Package(format!(
            "{why}, and refreshing the package lists failed ({message}); run `apt-get update` as root"
        ))
    })
}

/// Records the resolved packages in `resolved.txt`; says so when they
/// differ from the last run's.
fn record_resolution(directory: &Path, kernel: &Package, busybox: &Package) -> Result<(), Error> {
    let path = directory.join("resolved.txt");
    let text = format!("kernel {kernel}\nbusybox {busybox}\n");
    let previous = std::fs::read_to_string(&path).ok();
    if let Some(previous) = previous.as_deref().filter(|previous| *previous != text) {
        eprintln!(
            "bulkhead: the guest packages changed since the last run:\n  was: {}\n  now: {}",
            previous.trim().replace('\n', ", "),
            text.trim().replace('\n', ", ")
        );
    }
    eprintln!("bulkhead: guest kernel {kernel}, {busybox}");
    write_if_changed(&path, text.as_bytes())
}

/// The initramfs's file in the cache, named after the packages' keys.
fn initramfs_file_name(keys: &[String]) -> String {
    format!("busybox-initramfs_{}.cpio", keys.join("_"))
}

/// The prefixes of the cache's per-version entries.
const CACHED_PREFIXES: [&str; 3] = ["linux-image-", "busybox-static_", "busybox-initramfs_"];

/// Removes what older package versions left in the cache: every entry of
/// [`CACHED_PREFIXES`] that names none of `keys`.
fn prune(directory: &Path, keys: &[String]) -> Result<(), Error> {
    for entry in std::fs::read_dir(directory).map_err(|error| Error::Io(directory.to_owned(), error))? {
        let entry = entry.map_err(|error| Error::Io(directory.to_owned(), error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = CACHED_PREFIXES.iter().any(|prefix| name.starts_with(prefix));
        let current =
            keys.iter().any(|key| name == *key || name == format!("{key}.deb")) || name == initramfs_file_name(keys);
        if ours && !current {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|error| Error::Io(path, error))?;
        }
    }
    Ok(())
}

/// The package's `.deb` in the cache, downloaded with `apt-get download`
/// unless there; refreshes the lists once (through `updated`) if the
/// download fails.
fn fetch(directory: &Path, package: &Package, updated: &mut bool) -> Result<PathBuf, Error> {
    let deb = directory.join(format!("{}.deb", package.cache_key()));
    if deb.is_file() {
        return Ok(deb);
    }
    let staging = directory.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    create_directory(&staging)?;
    let download = || {
        run_tool(Command::new("apt-get").current_dir(&staging).args([
            "download",
            "-q",
            &format!("{}={}", package.name, package.version),
        ]))
    };
    let mut result = download();
    if let Err(message) = &result
        && !*updated
    {
        apt_get_update(&Error::Package(message.clone()))?;
        *updated = true;
        result = download();
    }
    result.map_err(|message| Error::Package(format!("fetching {package}: {message}")))?;
    let fetched = std::fs::read_dir(&staging)
        .map_err(|error| Error::Io(staging.clone(), error))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .ok_or_else(|| Error::Package(format!("apt-get download {package} wrote no .deb")))?;
    std::fs::rename(&fetched, &deb).map_err(|error| Error::Io(deb.clone(), error))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(deb)
}

/// Unpacks `deb` into a fresh directory beside the cache.
fn unpack(directory: &Path, deb: &Path) -> Result<PathBuf, Error> {
    let tree = directory.join(format!("unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    create_directory(&tree)?;
    run_tool(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree)).map_err(Error::Package)?;
    Ok(tree)
}

/// The kernel's part of the cache: `bzImage`, `modules/NAME.ko` and the
/// modules' load order.
struct UnpackedKernel {
    directory: PathBuf,
    release: String,
    module_order: Vec<String>,
}

/// The marker file of a complete cache directory; the kernel's holds its
/// release and the module order.
const COMPLETE: &str = ".complete";

fn unpack_kernel(directory: &Path, package: &Package, deb: &Path) -> Result<UnpackedKernel, Error> {
    let cached = directory.join(package.cache_key());
    // The marker: the release, then the modules in load order. Unpacked
    // again if the wanted modules changed since.
    if let Ok(marker) = std::fs::read_to_string(cached.join(COMPLETE)) {
        let mut lines = marker.lines().map(str::to_owned);
        let release = lines.next().unwrap_or_default();
        let module_order: Vec<String> = lines.collect();
        if !release.is_empty() && GUEST_MODULES.iter().all(|wanted| module_order.iter().any(|name| name == wanted)) {
            return Ok(UnpackedKernel { directory: cached, release, module_order });
        }
    }
    let tree = unpack(directory, deb)?;
    let result = collect_kernel(&tree, &cached);
    let _ = std::fs::remove_dir_all(&tree);
    let (release, module_order) = result?;
    let marker = std::iter::once(release.clone()).chain(module_order.iter().cloned()).collect::<Vec<_>>().join("\n");
    std::fs::write(cached.join(COMPLETE), marker).map_err(|error| Error::Io(cached.join(COMPLETE), error))?;
    Ok(UnpackedKernel { directory: cached, release, module_order })
}

/// Copies the bzImage and the wanted modules (with their dependencies) out
/// of the unpacked package `tree` into `cached`.
fn collect_kernel(tree: &Path, cached: &Path) -> Result<(String, Vec<String>), Error> {
    let modules_root = tree.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&modules_root)
        .map_err(|error| Error::Io(modules_root.clone(), error))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let release = match releases.as_mut_slice() {
        [release] => release.clone(),
        _ => return Err(Error::Contents(format!("expected one kernel release in the package, found {releases:?}"))),
    };
    let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
    let _ = std::fs::remove_dir_all(cached);
    create_directory(&cached.join("modules"))?;
    std::fs::copy(&vmlinuz, cached.join("bzImage")).map_err(|error| Error::Io(vmlinuz.clone(), error))?;
    // Every module of the package by name, and what each depends on.
    let mut files = BTreeMap::new();
    index_modules(&modules_root.join(&release).join("kernel"), &mut files)?;
    let mut dependencies = BTreeMap::new();
    let mut pending: Vec<String> = GUEST_MODULES.iter().map(|name| (*name).to_owned()).collect();
    while let Some(name) = pending.pop() {
        if dependencies.contains_key(&name) {
            continue;
        }
        let path: &PathBuf =
            files.get(&name).ok_or_else(|| Error::Contents(format!("the kernel package has no module `{name}`")))?;
        let bytes = std::fs::read(path).map_err(|error| Error::Io(path.clone(), error))?;
        let depends = module_dependencies(&bytes).map_err(|why| Error::Contents(format!("module `{name}`: {why}")))?;
        std::fs::write(cached.join("modules").join(format!("{name}.ko")), &bytes)
            .map_err(|error| Error::Io(cached.join("modules"), error))?;
        pending.extend(depends.iter().cloned());
        dependencies.insert(name, depends);
    }
    let order = load_order(&dependencies).map_err(Error::Contents)?;
    Ok((release, order))
}

/// Every `.ko` under `directory`, by module name.
fn index_modules(directory: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<(), Error> {
    for entry in std::fs::read_dir(directory).map_err(|error| Error::Io(directory.to_owned(), error))? {
        let path = entry.map_err(|error| Error::Io(directory.to_owned(), error))?.path();
        if path.is_dir() {
            index_modules(&path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "ko")
            && let Some(stem) = path.file_stem()
        {
            files.insert(stem.to_string_lossy().into_owned(), path);
        }
    }
    Ok(())
}

/// What a kernel module depends on: the `depends=` entry of its `.modinfo`
/// section (NUL-separated `key=value` strings), split at commas.
///
/// # Errors
///
/// Why the bytes are no module: not an ELF file, no `.modinfo`.
pub fn module_dependencies(module: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(module).map_err(|error| format!("not an ELF file: {error}"))?;
    let section = file.section_by_name(".modinfo").ok_or("no .modinfo section")?;
    let data = section.data().map_err(|error| format!(".modinfo unreadable: {error}"))?;
    let depends = data
        .split(|byte| *byte == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    Ok(depends.split(',').filter(|name| !name.is_empty()).map(str::to_owned).collect())
}

/// The modules of `dependencies` (name to what it depends on) in an order
/// that loads each after its dependencies; ties by name.
///
/// # Errors
///
/// A dependency that is not in the map, or a cycle.
pub fn load_order(dependencies: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, String> {
    let mut order: Vec<String> = Vec::with_capacity(dependencies.len());
    while order.len() < dependencies.len() {
        let ready = dependencies.iter().find(|(name, depends)| {
            !order.contains(name) && depends.iter().all(|dependency| order.contains(dependency))
        });
        match ready {
            Some((name, _)) => order.push(name.clone()),
            None => {
                let stuck: Vec<&String> = dependencies.keys().filter(|name| !order.contains(name)).collect();
                if let Some((name, missing)) = stuck.iter().find_map(|name| {
                    dependencies[*name]
                        .iter()
                        .find(|dependency| !dependencies.contains_key(*dependency))
                        .map(|d| (name, d))
                }) {
                    return Err(format!("module `{name}` depends on `{missing}`, which is not there"));
                }
                return Err(format!("the modules {stuck:?} depend on each other in a cycle"));
            }
        }
    }
    Ok(order)
}

/// busybox out of its package, cached by version.
fn unpack_busybox(directory: &Path, package: &Package, deb: &Path) -> Result<PathBuf, Error> {
    let cached = directory.join(package.cache_key());
    let busybox = cached.join("busybox");
    if cached.join(COMPLETE).is_file() && busybox.is_file() {
        return Ok(busybox);
    }
    let tree = unpack(directory, deb)?;
    let source = tree.join("bin/busybox");
    let _ = std::fs::remove_dir_all(&cached);
    let result = create_directory(&cached)
        .and_then(|()| std::fs::copy(&source, &busybox).map_err(|error| Error::Io(source.clone(), error)));
    let _ = std::fs::remove_dir_all(&tree);
    result?;
    std::fs::write(cached.join(COMPLETE), b"").map_err(|error| Error::Io(cached.join(COMPLETE), error))?;
    Ok(busybox)
}

/// The initramfs: the directories Linux and `/init` use, `/dev/console`,
/// `/init`, busybox with its applets, and the modules with their load
/// order in `/lib/modules/order`.
pub fn initramfs(init: &[u8], busybox: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut archive = Cpio::default();
    for directory in ["bin", "dev", "proc", "sys", "mnt", "lib", "lib/modules"] {
        archive.directory(directory, 0o755);
    }
    // The console Linux opens for init before devtmpfs is mounted.
    archive.character_device("dev/console", 0o600, 5, 1);
    archive.file("init", 0o755, init);
    archive.file("bin/busybox", 0o755, busybox);
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    let mut order = String::new();
    for (name, bytes) in modules {
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
        order.push_str(name);
        order.push('\n');
    }
    archive.file("lib/modules/order", 0o644, order.as_bytes());
    archive.finish()
}

/// The cpio "newc" magic.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";
/// The file-type bits of a mode.
pub const TYPE_MASK: u32 = 0o170_000;
/// A directory.
pub const TYPE_DIRECTORY: u32 = 0o040_000;
/// A regular file.
pub const TYPE_FILE: u32 = 0o100_000;
/// A symbolic link (its data is the target).
pub const TYPE_SYMLINK: u32 = 0o120_000;
/// A character device.
pub const TYPE_CHARACTER: u32 = 0o020_000;
/// The bytes of a newc header: the magic and thirteen 8-digit hex fields.
pub const HEADER_BYTES: usize = 110;

/// A writer of uncompressed cpio "newc" archives (the format Linux
/// unpacks an initramfs from): per entry a 110-byte ASCII header, the
/// NUL-terminated name padded to 4 bytes, the data padded to 4 bytes;
/// a `TRAILER!!!` entry last. Owners are root and times 0, so the same
/// input gives the same bytes.
#[derive(Debug, Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    /// A directory.
    pub fn directory(&mut self, name: &str, permissions: u32) {
        self.entry(name, TYPE_DIRECTORY | (permissions & 0o7777), 2, (0, 0), &[]);
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, permissions: u32, data: &[u8]) {
        self.entry(name, TYPE_FILE | (permissions & 0o7777), 1, (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, TYPE_SYMLINK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub fn character_device(&mut self, name: &str, permissions: u32, major: u32, minor: u32) {
        self.entry(name, TYPE_CHARACTER | (permissions & 0o7777), 1, (major, minor), &[]);
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.header(TRAILER, 0, 1, (0, 0), 0);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, links: u32, device: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let size = u32::try_from(data.len()).expect("a cpio newc entry holds less than 4 GiB");
        self.header(name, mode, links, device, size);
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn header(&mut self, name: &str, mode: u32, links: u32, (major, minor): (u32, u32), size: u32) {
        let name_bytes = u32::try_from(name.len() + 1).expect("a cpio name is short");
        let fields = [self.next_inode, mode, 0, 0, links, 0, size, 0, 0, major, minor, name_bytes, 0];
        self.bytes.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// One entry read back from a newc archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    /// Its path, without a leading `/`.
    pub name: String,
    /// Type and permission bits.
    pub mode: u32,
    /// The device numbers of a device node.
    pub device: (u32, u32),
    /// The file's bytes, or a symbolic link's target.
    pub data: Vec<u8>,
}

/// Reads a newc archive up to its trailer: every entry, checked for the
/// magic, hexadecimal fields, a NUL-terminated name and 4-byte alignment.
///
/// # Errors
///
/// Where and why the bytes are no newc archive (never a panic).
pub fn read_newc(archive: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut entries = Vec::new();
    let mut offset = 0_usize;
    loop {
        if !offset.is_multiple_of(4) {
            return Err(format!("entry at {offset} is not 4-byte aligned"));
        }
        let header = archive
            .get(offset..offset.saturating_add(HEADER_BYTES))
            .ok_or_else(|| format!("archive ends inside the header at {offset}"))?;
        if &header[..6] != NEWC_MAGIC {
            return Err(format!("no newc magic at {offset}"));
        }
        let mut fields = [0_u32; 13];
        for (index, field) in fields.iter_mut().enumerate() {
            let digits = &header[6 + index * 8..6 + (index + 1) * 8];
            let text = std::str::from_utf8(digits).map_err(|_| format!("field {index} at {offset} is not ASCII"))?;
            if !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(format!("field {index} at {offset} is not hexadecimal"));
            }
            *field =
                u32::from_str_radix(text, 16).map_err(|_| format!("field {index} at {offset} is not hexadecimal"))?;
        }
        let [_, mode, _, _, _, _, size, _, _, major, minor, name_bytes, _] = fields;
        let name_start = offset + HEADER_BYTES;
        let name_end = name_start.saturating_add(name_bytes as usize);
        let name =
            archive.get(name_start..name_end).ok_or_else(|| format!("name at {name_start} runs past the end"))?;
        let Some((0, name)) = name.split_last() else {
            return Err(format!("name at {name_start} is empty or not NUL-terminated"));
        };
        let name = std::str::from_utf8(name).map_err(|_| format!("name at {name_start} is not UTF-8"))?.to_owned();
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start.saturating_add(size as usize);
        let data = archive.get(data_start..data_end).ok_or_else(|| format!("data of `{name}` runs past the end"))?;
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(CpioEntry { name, mode, device: (major, minor), data: data.to_vec() });
        offset = data_end.next_multiple_of(4);
    }
}

/// The QEMU command that boots the images directly, without Bulkhead: a
/// `microvm` machine (ISA serial, ACPI, virtio-mmio devices announced in
/// its DSDT, the transport the Bulkhead guest has), `memory_mib` of RAM,
/// the console on standard output, and `disk` as a virtio-blk device if
/// given. The guest powers off at the end; `-no-reboot` turns a panic's
/// reboot into an exit too.
pub fn direct_qemu_arguments(
    images: &GuestImages,
    disk: Option<&Path>,
    memory_mib: u32,
    count_instructions: bool,
    cmdline: &str,
) -> Vec<std::ffi::OsString> {
    let mut arguments: Vec<std::ffi::OsString> = Vec::new();
    let mut add = |words: &[&str]| arguments.extend(words.iter().map(std::ffi::OsString::from));
    // auto-kernel-cmdline=off: QEMU would add `virtio_mmio.device=` words,
    // which this kernel ignores; the devices are found through ACPI alone.
    add(&["-machine", "microvm,acpi=on,auto-kernel-cmdline=off", "-cpu", "max", "-m", &memory_mib.to_string()]);
    add(&["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"]);
    arguments.extend(["-kernel".into(), images.bzimage.clone().into_os_string()]);
    arguments.extend(["-initrd".into(), images.initramfs.clone().into_os_string()]);
    arguments.extend(["-append".into(), cmdline.into()]);
    if let Some(disk) = disk {
        arguments.push("-drive".into());
        arguments.push(format!("id=disk,file={},format=raw,if=none", disk.display()).into());
        arguments.extend(["-device".into(), "virtio-blk-device,drive=disk".into()]);
    }
    if count_instructions {
        arguments.extend(["-icount".into(), "shift=0".into()]);
    }
    arguments
}

/// The guest's clock at the last line of `console` that carries a kernel
/// timestamp (`[    1.810551] ...`), in seconds. Under `-icount shift=0`
/// each instruction advances the guest's clock by one nanosecond (and
/// time spent halted passes too), so this bounds the instructions the
/// guest ran to that line.
pub fn last_kernel_timestamp(console: &str) -> Option<f64> {
    console.lines().rev().find_map(|line| {
        let stamp = line.trim_start().strip_prefix('[')?.split_once(']')?.0;
        stamp_seconds(stamp)
    })
}

/// A kernel timestamp's text (between its brackets) as seconds: finite
/// and not negative.
fn stamp_seconds(stamp: &str) -> Option<f64> {
    stamp.trim().parse::<f64>().ok().filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
}

/// The guest-clock timestamp of the first kernel line of `console` that
/// contains `text` (`[    2.951234] Run /init as init process`, with
/// anything before the bracket, as a VMM's prefix), in seconds.
pub fn kernel_timestamp_of(console: &str, text: &str) -> Option<f64> {
    console.lines().filter(|line| line.contains(text)).find_map(|line| {
        let (before, _) = line.split_once(text)?;
        let (_, stamp) = before.rsplit_once('[')?;
        stamp_seconds(stamp.trim_end().strip_suffix(']')?)
    })
}

/// A timed copy of the guest's benchmark: bytes copied, in seconds of
/// the guest's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdReport {
    /// The bytes copied.
    pub bytes: u64,
    /// The seconds it took by the guest's clock.
    pub seconds: f64,
}

impl DdReport {
    /// Bytes per second (0 for a report of no time).
    #[must_use]
    pub fn bytes_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            #[allow(clippy::cast_precision_loss)] // a disk's size is far below 2^52
            let bytes = self.bytes as f64;
            bytes / self.seconds
        } else {
            0.0
        }
    }
}

/// The guest's benchmark figures (`bulkhead.bench=1`, `guest-images/init`),
/// read from its console (a VMM's prefix before each line is allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchFigures {
    /// The guest's clock at `Run /init as init process`.
    pub run_init_seconds: f64,
    /// `/proc/uptime` after the disk test.
    pub uptime_seconds: f64,
    /// Reading the whole disk.
    pub read: DdReport,
    /// Writing the disk's tail and flushing it.
    pub write: DdReport,
}

/// Reads [`BenchFigures`] from `console`; `None` if a figure is missing or
/// the guest did not finish its measures.
pub fn bench_figures(console: &str) -> Option<BenchFigures> {
    let after = |marker: &str| -> Vec<&str> {
        console.lines().filter_map(|line| line.split_once(marker).map(|(_, rest)| rest.trim())).collect()
    };
    if !console.contains(markers::BENCH_DONE) {
        return None;
    }
    let uptime_seconds = after(markers::BENCH_UPTIME).first()?.split_whitespace().next()?.parse().ok()?;
    let report = |marker: &str| after(marker).first().copied().and_then(dd_report);
    Some(BenchFigures {
        run_init_seconds: kernel_timestamp_of(console, "Run /init as init process")?,
        uptime_seconds,
        read: report(markers::BENCH_READ)?,
        write: report(markers::BENCH_WRITE)?,
    })
}

/// A copy's line after its marker: `BYTES FROM TO`, FROM and TO the
/// guest's `/proc/uptime` around it (10 ms steps); `None` if malformed or
/// if TO is before FROM.
pub fn dd_report(line: &str) -> Option<DdReport> {
    let mut words = line.split_whitespace();
    let bytes = words.next()?.parse().ok()?;
    let from: f64 = words.next()?.parse().ok()?;
    let to: f64 = words.next()?.parse().ok()?;
    let seconds = to - from;
    (words.next().is_none() && from.is_finite() && seconds.is_finite() && seconds >= 0.0)
        .then_some(DdReport { bytes, seconds })
}

/// The RAM of a direct run, in MiB (the size of the test systems' guests).
pub const DIRECT_MEMORY_MIB: u32 = 128;

/// A direct run of the images in QEMU.
#[derive(Debug)]
pub struct DirectRun {
    /// The images booted.
    pub images: GuestImages,
    /// The disk image the guest had (the caller removes it).
    pub disk: PathBuf,
    /// The run: console, exit status, wall time.
    pub outcome: crate::emulator::RunOutcome,
}

/// Boots the images directly in QEMU ([`direct_qemu_arguments`]) with a
/// fresh disk image, to its end or `timeout`; `echo` shows the console as
/// it arrives.
///
/// # Errors
///
/// The images or the disk could not be made, QEMU could not be started.
pub fn boot_directly(
    count_instructions: bool,
    timeout: std::time::Duration,
    echo: bool,
) -> Result<DirectRun, crate::Error> {
    let options = DirectOptions { count_instructions, cmdline: DIRECT_CMDLINE, disk_bytes: None };
    boot_directly_with(&options, timeout, echo)
}

/// How [`boot_directly_with`] boots the images.
#[derive(Clone, Copy, Debug)]
pub struct DirectOptions<'a> {
    /// Under `-icount shift=0`.
    pub count_instructions: bool,
    /// The kernel's command line ([`DIRECT_CMDLINE`] and more).
    pub cmdline: &'a str,
    /// The disk's size: the ext2 image of [`DISK_SIZE`], then zeros up to
    /// this many bytes (`None`, or a size below the image's: the image
    /// alone).
    pub disk_bytes: Option<u64>,
}

/// [`boot_directly`] with `options`.
///
/// # Errors
///
/// As [`boot_directly`].
pub fn boot_directly_with(
    options: &DirectOptions<'_>,
    timeout: std::time::Duration,
    echo: bool,
) -> Result<DirectRun, crate::Error> {
    crate::tools::ensure(&[crate::tools::Tool::Qemu])?;
    let images = prepare()?;
    let disk = cache_directory().join(format!("direct-disk-{}.img", std::process::id()));
    fresh_disk_image(&disk)?;
    if let Some(bytes) = options.disk_bytes {
        let grow = |file: std::fs::File| {
            if file.metadata()?.len() < bytes { file.set_len(bytes) } else { Ok(()) }
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .and_then(grow)
            .map_err(|error| Error::Io(disk.clone(), error))?;
    }
    let mut command = Command::new("qemu-system-x86_64");
    command.args(direct_qemu_arguments(
        &images,
        Some(&disk),
        DIRECT_MEMORY_MIB,
        options.count_instructions,
        options.cmdline,
    ));
    let watch =
        crate::emulator::WatchOptions { echo, timeout: Some(timeout), ..crate::emulator::WatchOptions::default() };
    let outcome = crate::emulator::run_plain(command, &watch)?;
    Ok(DirectRun { images, disk, outcome })
}

/// The kernel command line of a direct run: the console on the first
/// UART, a panic reboots at once (and `-no-reboot` ends QEMU).
pub const DIRECT_CMDLINE: &str = "console=ttyS0 panic=-1";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEPENDS: &str = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
    const POLICY: &str = "busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n";

    #[test]
    fn apt_cache_output_is_read() {
        assert_eq!(versioned_kernel_dependency(DEPENDS).as_deref(), Some("linux-image-6.1.0-56-cloud-amd64"));
        assert_eq!(versioned_kernel_dependency("x\n  Depends: <linux-image-virtual>\n  Depends: libc6\n"), None);
        assert_eq!(
            versioned_kernel_dependency(" |Depends: linux-image-6.1.0-9-cloud-amd64\n").as_deref(),
            Some("linux-image-6.1.0-9-cloud-amd64")
        );
        assert_eq!(candidate_version(POLICY).as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        assert_eq!(candidate_version("x:\n  Installed: (none)\n  Candidate: (none)\n"), None);
        assert_eq!(candidate_version("N: Unable to locate package x\n"), None);
    }

    #[test]
    fn the_last_kernel_timestamp_is_read() {
        let console =
            "[    0.000000] Linux\nBULKHEAD-GUEST: userspace up\n[    1.810551] ACPI: PM: S5\n[x] no\nplain\n";
        assert_eq!(last_kernel_timestamp(console), Some(1.810_551));
        assert_eq!(last_kernel_timestamp("no stamps\n[nan] x\n[-1.0] y\n"), None);
    }

    #[test]
    fn the_benchmark_figures_are_read_through_a_vmm_s_prefix() {
        let console = "\
user linux_vmm: linux_vmm: [    2.951234] Run /init as init process
user linux_vmm: linux_vmm: BULKHEAD-GUEST: userspace up
user linux_vmm: linux_vmm: BULKHEAD-GUEST: bench uptime 3.52
user linux_vmm: linux_vmm: BULKHEAD-GUEST: bench read 134217728 3.53 4.53
user linux_vmm: linux_vmm: BULKHEAD-GUEST: bench write 117440512 4.53 6.53
user linux_vmm: linux_vmm: BULKHEAD-GUEST: bench done
";
        let figures = bench_figures(console).expect("the figures");
        assert_eq!(figures.run_init_seconds, 2.951_234);
        assert_eq!(figures.uptime_seconds, 3.52);
        assert_eq!(figures.read.bytes, 134_217_728);
        assert!((figures.read.seconds - 1.0).abs() < 1e-9, "{figures:?}");
        assert!((figures.read.bytes_per_second() - 134_217_728.0).abs() < 1.0);
        assert_eq!(figures.write.bytes, 117_440_512);
        assert!((figures.write.seconds - 2.0).abs() < 1e-9, "{figures:?}");
        // Without the last marker the measures are unfinished.
        assert_eq!(bench_figures(&console.replace(markers::BENCH_DONE, "")), None);
        // Nor without one of the copies' lines.
        assert_eq!(bench_figures(&console.replace("117440512 4.53", "failed")), None);
    }

    #[test]
    fn copy_reports_and_kernel_stamps_refuse_what_they_cannot_read() {
        assert_eq!(dd_report("512+0 records in"), None);
        assert_eq!(dd_report("x 1.0 2.0"), None);
        assert_eq!(dd_report("1 1.0"), None);
        assert_eq!(dd_report("1 2.0 1.0"), None, "time ran backwards");
        assert_eq!(dd_report("1 nan 1.0"), None);
        assert_eq!(dd_report("1 1.0 2.0 3.0"), None);
        assert_eq!(dd_report("8 1.5 1.5"), Some(DdReport { bytes: 8, seconds: 0.0 }));
        assert_eq!(DdReport { bytes: 5, seconds: 0.0 }.bytes_per_second(), 0.0);
        assert_eq!(kernel_timestamp_of("[  1.5] a\n[  2.5] b\n", "b"), Some(2.5));
        assert_eq!(kernel_timestamp_of("[  1.5] a\n", "b"), None);
        assert_eq!(kernel_timestamp_of("b without a stamp\n", "b"), None);
    }

    #[test]
    fn cache_keys_are_safe_file_names() {
        let package = Package { name: "busybox-static".into(), version: "1:1.35.0-4+deb12u1+b1".into() };
        assert_eq!(package.cache_key(), "busybox-static_1_1.35.0-4+deb12u1+b1");
        let odd = Package { name: "a/b".into(), version: "1 2,3".into() };
        assert_eq!(odd.cache_key(), "a_b_1_2_3");
    }

    fn dependencies(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(name, depends)| ((*name).into(), depends.iter().map(|d| (*d).into()).collect())).collect()
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let map = dependencies(&[
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("virtio_mmio", &["virtio", "virtio_ring"]),
            ("virtio", &["virtio_ring"]),
            ("virtio_ring", &[]),
        ]);
        assert_eq!(load_order(&map).expect("acyclic"), ["virtio_ring", "virtio", "virtio_blk", "virtio_mmio"]);
        let missing = dependencies(&[("a", &["b"])]);
        assert!(load_order(&missing).expect_err("b is missing").contains("`b`"));
        let cycle = dependencies(&[("a", &["b"]), ("b", &["a"])]);
        assert!(load_order(&cycle).expect_err("a cycle").contains("cycle"));
    }

    #[test]
    fn a_module_without_modinfo_is_refused() {
        assert!(module_dependencies(b"not an elf").is_err());
    }

    #[test]
    fn the_archive_has_headers_names_and_data_where_newc_puts_them() {
        let mut archive = Cpio::default();
        archive.directory("dev", 0o755);
        archive.file("init", 0o755, b"#!/bin/sh\n");
        archive.symlink("bin/sh", "busybox");
        archive.character_device("dev/console", 0o600, 5, 1);
        let bytes = archive.finish();
        // The first header: inode 1, a directory of mode 0755, two links,
        // a name of 4 bytes ("dev" and its NUL).
        assert_eq!(&bytes[..14], b"07070100000001");
        assert_eq!(&bytes[14..22], b"000041ed");
        assert_eq!(&bytes[38..46], b"00000002");
        assert_eq!(&bytes[94..102], b"00000004");
        assert_eq!(&bytes[110..114], b"dev\0");
        // Header and name (114 bytes) are padded to 116; no data follows,
        // so the second entry starts there.
        assert_eq!(&bytes[114..116], b"\0\0");
        assert_eq!(&bytes[116..122], NEWC_MAGIC);
        assert!(bytes.len().is_multiple_of(4));
        let entries = read_newc(&bytes).expect("reads back");
        let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(names, ["dev", "init", "bin/sh", "dev/console"]);
        assert_eq!(entries[1].data, b"#!/bin/sh\n");
        assert_eq!(entries[1].mode, TYPE_FILE | 0o755);
        assert_eq!(entries[2].mode & TYPE_MASK, TYPE_SYMLINK);
        assert_eq!(entries[2].data, b"busybox");
        assert_eq!(entries[3].device, (5, 1));
        // The trailer ends it: a truncated archive is refused.
        assert!(read_newc(&bytes[..bytes.len() - 4]).is_err());
    }

    #[test]
    fn the_initramfs_holds_init_busybox_applets_and_modules_in_order() {
        let modules = vec![("virtio_ring".to_owned(), b"ring".to_vec()), ("virtio".to_owned(), b"core".to_vec())];
        let entries = read_newc(&initramfs(b"#!/bin/sh\n", b"BB", &modules)).expect("reads back");
        let find = |name: &str| entries.iter().find(|entry| entry.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(find("init").mode, TYPE_FILE | 0o755);
        assert_eq!(find("bin/busybox").data, b"BB");
        for applet in APPLETS {
            assert_eq!(find(&format!("bin/{applet}")).data, b"busybox", "{applet}");
        }
        for directory in ["dev", "proc", "sys", "mnt"] {
            assert_eq!(find(directory).mode & TYPE_MASK, TYPE_DIRECTORY);
        }
        assert_eq!(find("dev/console").device, (5, 1));
        assert_eq!(find("lib/modules/virtio.ko").data, b"core");
        assert_eq!(find("lib/modules/order").data, b"virtio_ring\nvirtio\n");
    }

    #[test]
    fn the_init_script_prints_the_markers_and_uses_only_linked_applets() {
        assert!(INIT_SCRIPT.starts_with("#!/bin/sh\n"));
        for marker in [
            markers::USERSPACE_UP,
            markers::DISK_OK,
            markers::DISK_FAILED,
            markers::NO_DISK,
            markers::BENCH_UPTIME,
            markers::BENCH_READ,
            markers::BENCH_WRITE,
            markers::BENCH_DONE,
            markers::SYMBOL,
            markers::GDB_MAY_ATTACH,
            markers::GDB_WAIT_HOSTNAME,
            markers::GDB_DONE_HOSTNAME,
            markers::GDB_RELEASED,
            markers::GDB_WAIT_OVER,
            markers::HVC_OK,
            markers::NO_HVC,
            markers::NET_OK,
            markers::NET_FAILED,
            markers::NO_NET,
        ] {
            assert!(INIT_SCRIPT.contains(marker.trim_end()), "{marker}");
        }
        assert!(INIT_SCRIPT.contains(&format!("GUEST_TEXT={}", markers::GUEST_TEXT)));
        // Each line's first word is a shell word, an assignment, a function
        // of the script, or an applet the initramfs links.
        const SHELL: [&str; 17] = [
            "export", "if", "then", "else", "fi", "for", "do", "done", "while", "case", "esac", "echo", "read",
            "return", "[", "{", "}",
        ];
        let words = || {
            INIT_SCRIPT
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(|line| (line, line.split_whitespace().next().unwrap_or_default()))
        };
        let functions: Vec<&str> = words().filter_map(|(_, word)| word.strip_suffix("()")).collect();
        assert_eq!(functions, ["has_virtio_block", "gdb_test", "disk_test", "disk_bench", "net_test"]);
        for (line, word) in words() {
            let known = SHELL.contains(&word)
                || word.contains('=')
                || functions.contains(&word.trim_end_matches("()"))
                || APPLETS.contains(&word);
            assert!(known, "`{word}` in `{line}` is neither shell nor a linked applet");
        }
    }

    fn entry_strategy() -> impl Strategy<Value = (String, u8, Vec<u8>)> {
        ("[a-z][a-z0-9_./-]{0,40}", 0_u8..3, proptest::collection::vec(any::<u8>(), 0..300))
    }

    /// A tiny ext2 image: 1 KiB blocks, one group of 64 blocks, the group
    /// descriptors at block 2, four inodes of `inode_size` bytes from
    /// block 5, every time field 0x1234_5678 and owner 1000.
    fn tiny_ext2(inode_size: u16) -> Vec<u8> {
        let mut image = vec![0_u8; 64 * 1024];
        let mut put = |at: usize, bytes: &[u8]| image[at..at + bytes.len()].copy_from_slice(bytes);
        let sb = 1024;
        put(sb, &4_u32.to_le_bytes()); // inodes
        put(sb + 4, &64_u32.to_le_bytes()); // blocks
        put(sb + 20, &1_u32.to_le_bytes()); // first data block
        put(sb + 32, &8192_u32.to_le_bytes()); // blocks per group
        put(sb + 40, &4_u32.to_le_bytes()); // inodes per group
        for time in [44, 48, 64, 264] {
            put(sb + time, &0x1234_5678_u32.to_le_bytes());
        }
        put(sb + 56, &0xef53_u16.to_le_bytes());
        put(sb + 76, &1_u32.to_le_bytes()); // dynamic revision
        put(sb + 88, &inode_size.to_le_bytes());
        put(2048 + 8, &5_u32.to_le_bytes()); // the inode table's block
        for number in 0..4 {
            let inode = 5 * 1024 + number * usize::from(inode_size);
            put(inode, &0o100_644_u16.to_le_bytes()); // mode
            put(inode + 2, &1000_u16.to_le_bytes());
            put(inode + 4, &7_u32.to_le_bytes()); // size
            for time in [8, 12, 16] {
                put(inode + time, &0x1234_5678_u32.to_le_bytes());
            }
            put(inode + 24, &1000_u16.to_le_bytes());
            put(inode + 26, &1_u16.to_le_bytes()); // links
            if inode_size > 128 {
                put(inode + 128, &32_u16.to_le_bytes()); // extra isize
                for time in (132..152).step_by(4) {
                    put(inode + time, &0x1234_5678_u32.to_le_bytes());
                }
                put(inode + 152, &0xabcd_u16.to_le_bytes()); // past the extra fields
            }
        }
        image
    }

    #[test]
    fn normalising_an_ext2_image_clears_its_times_and_owners_and_nothing_else() {
        for inode_size in [128_u16, 256] {
            let before = tiny_ext2(inode_size);
            let mut after = before.clone();
            normalise_ext2(&mut after).expect("an ext2 image");
            let changed: Vec<usize> = (0..before.len()).filter(|&at| before[at] != after[at]).collect();
            assert!(changed.iter().all(|&at| after[at] == 0), "only zeros are written");
            let mut expected: Vec<usize> =
                [44, 48, 64, 264].iter().flat_map(|time| 1024 + time..1024 + time + 4).collect();
            for number in 0..4 {
                let inode = 5 * 1024 + number * usize::from(inode_size);
                let mut fields = vec![inode + 2, inode + 3, inode + 24, inode + 25];
                fields.extend((8..20).map(|offset| inode + offset));
                if inode_size > 128 {
                    fields.extend((132..152).map(|offset| inode + offset));
                }
                expected.extend(fields);
            }
            // Bytes that held zero stay zero and are not "changed".
            expected.retain(|&at| before[at] != 0);
            expected.sort_unstable();
            assert_eq!(changed, expected, "inodes of {inode_size} bytes");
            let mut again = after.clone();
            normalise_ext2(&mut again).expect("still ext2");
            assert!(again == after, "normalising twice changes nothing more");
        }
    }

    #[test]
    fn a_damaged_ext2_image_is_refused() {
        let mut no_magic = tiny_ext2(128);
        no_magic[1080] = 0;
        assert!(normalise_ext2(&mut no_magic).is_err());
        // An inode table past the end.
        let mut far_table = tiny_ext2(128);
        far_table[2048 + 8..2048 + 12].copy_from_slice(&64_u32.to_le_bytes());
        assert!(normalise_ext2(&mut far_table).is_err());
        // Inodes larger than a block, and more inodes than the groups hold.
        let mut huge_inodes = tiny_ext2(128);
        huge_inodes[1024 + 88..1024 + 90].copy_from_slice(&2048_u16.to_le_bytes());
        assert!(normalise_ext2(&mut huge_inodes).is_err());
        let mut counted = tiny_ext2(128);
        counted[1024..1028].copy_from_slice(&5_u32.to_le_bytes());
        assert!(normalise_ext2(&mut counted).is_err());
        assert!(normalise_ext2(&mut []).is_err());
    }

    proptest! {
        #[test]
        fn normalising_takes_any_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096), damage in proptest::collection::vec((0_usize..64 * 1024, any::<u8>()), 0..16)) {
            // Random bytes, and a valid image with random bytes changed: a
            // result or an error, never a panic.
            let _ = normalise_ext2(&mut bytes);
            let mut image = tiny_ext2(256);
            for (at, value) in damage {
                image[at] = value;
            }
            let _ = normalise_ext2(&mut image);
        }
    }

    proptest! {
        #[test]
        fn archives_read_back_entry_for_entry(entries in proptest::collection::vec(entry_strategy(), 0..20)) {
            let mut archive = Cpio::default();
            for (name, kind, data) in &entries {
                match kind {
                    0 => archive.file(name, 0o644, data),
                    1 => archive.directory(name, 0o755),
                    _ => archive.symlink(name, &String::from_utf8_lossy(data)),
                }
            }
            let bytes = archive.finish();
            prop_assert!(bytes.len().is_multiple_of(4));
            let back = read_newc(&bytes).expect("our own archive reads back");
            prop_assert_eq!(back.len(), entries.len());
            for ((name, kind, data), entry) in entries.iter().zip(&back) {
                prop_assert_eq!(&entry.name, name);
                match kind {
                    0 => { prop_assert_eq!(&entry.data, data); prop_assert_eq!(entry.mode, TYPE_FILE | 0o644); }
                    1 => { prop_assert!(entry.data.is_empty()); prop_assert_eq!(entry.mode, TYPE_DIRECTORY | 0o755); }
                    _ => {
                        let target = String::from_utf8_lossy(data).into_owned().into_bytes();
                        prop_assert_eq!(&entry.data, &target);
                    }
                }
            }
        }

        #[test]
        fn the_reader_refuses_damage_without_panicking(
            entries in proptest::collection::vec(entry_strategy(), 1..6),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            noise in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut archive = Cpio::default();
            for (name, _, data) in &entries {
                archive.file(name, 0o600, data);
            }
            let bytes = archive.finish();
            let _ = read_newc(&bytes[..cut.index(bytes.len())]);
            let mut flipped = bytes.clone();
            let at = flip.index(flipped.len());
            flipped[at] ^= 0x5a;
            let _ = read_newc(&flipped);
            let _ = read_newc(&noise);
        }
    }
}
