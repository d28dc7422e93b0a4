//! The system tools the CLI and the tests drive, and how they get onto the
//! machine.
//!
//! Setup folds into `cargo run` and `cargo test`: when a tool is missing and
//! we run as root on Debian or Ubuntu, the missing packages are installed
//! with apt-get (saying so first); anywhere else the run stops with a
//! message naming the packages and the command to install them. Nothing is
//! ever skipped because a tool is missing.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use crate::Error;

/// A system tool, with how to tell it is present and which Debian packages
/// provide it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `qemu-system-x86_64`.
    Qemu,
    /// `grub-mkrescue` with both the BIOS (i386-pc) and UEFI (x86_64-efi)
    /// GRUB platforms, so that the ISO boots on both.
    GrubMkrescue,
    /// `xorriso`, which grub-mkrescue uses to write the ISO.
    Xorriso,
    /// mtools, which grub-mkrescue uses for the ISO's EFI system partition.
    Mtools,
    /// OVMF, QEMU's UEFI firmware.
    Ovmf,
    /// Bochs with its BIOS and VGA BIOS.
    Bochs,
    /// The GNU debugger.
    Gdb,
    /// `mke2fs`, which makes the Linux guest's ext2 disk image.
    Mke2fs,
}

/// OVMF's code image (read-only).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's variable store template (copied before each use).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Bochs's system BIOS.
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// The VGA BIOS Bochs loads.
pub const BOCHS_VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";

impl Tool {
    /// Everything `cargo run` and `cargo test` may need.
    pub const ALL: [Tool; 8] =
        [Tool::Qemu, Tool::GrubMkrescue, Tool::Xorriso, Tool::Mtools, Tool::Ovmf, Tool::Bochs, Tool::Gdb, Tool::Mke2fs];

    /// The Debian (and Ubuntu) packages that provide the tool.
    pub fn debian_packages(self) -> &'static [&'static str] {
        match self {
            Tool::Qemu => &["qemu-system-x86"],
            Tool::GrubMkrescue => &["grub-common", "grub-pc-bin", "grub-efi-amd64-bin"],
            Tool::Xorriso => &["xorriso"],
            Tool::Mtools => &["mtools"],
            Tool::Ovmf => &["ovmf"],
            // bochs needs one front end; bochs-term is the lightest (the CLI
            // runs Bochs headless through its built-in VNC display anyway).
            Tool::Bochs => &["bochs", "bochsbios", "vgabios", "bochs-term"],
            Tool::Gdb => &["gdb"],
            Tool::Mke2fs => &["e2fsprogs"],
        }
    }

    /// Whether the tool is usable on this machine.
    pub fn is_present(self) -> bool {
        match self {
            Tool::Qemu => on_path("qemu-system-x86_64"),
            Tool::GrubMkrescue => {
                on_path("grub-mkrescue")
                    && Path::new("/usr/lib/grub/i386-pc").is_dir()
                    && Path::new("/usr/lib/grub/x86_64-efi").is_dir()
            }
            Tool::Xorriso => on_path("xorriso"),
            Tool::Mtools => on_path("mformat"),
            Tool::Ovmf => Path::new(OVMF_CODE).is_file() && Path::new(OVMF_VARS).is_file(),
            Tool::Bochs => on_path("bochs") && Path::new(BOCHS_BIOS).is_file() && Path::new(BOCHS_VGA_BIOS).is_file(),
            Tool::Gdb => on_path("gdb"),
            Tool::Mke2fs => on_path("mke2fs"),
        }
    }
}

/// Whether an executable of this name is on `PATH`.
fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|directory| is_executable(&directory.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// The packages to install for the missing tools, without repeats, in a
/// stable order.
pub fn missing_packages(missing: &[Tool]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for tool in missing {
        for package in tool.debian_packages() {
            if !packages.contains(package) {
                packages.push(*package);
            }
        }
    }
    packages
}

/// What to do about missing tools on this machine.
#[derive(Debug, PartialEq, Eq)]
pub enum InstallPlan {
    /// Root on Debian or Ubuntu: install with apt-get.
    AptGet,
    /// Anywhere else: tell the user what to install.
    AskUser {
        /// Why the CLI cannot install by itself.
        reason: &'static str,
    },
}

/// Decides how to install, from whether we are root and the contents of
/// /etc/os-release.
pub fn install_plan(is_root: bool, os_release: Option<&str>) -> InstallPlan {
    let debian_like = os_release.is_some_and(|text| {
        text.lines().any(|line| {
            let line = line.trim();
            let value =
                line.strip_prefix("ID=").or_else(|| line.strip_prefix("ID_LIKE=")).unwrap_or("").trim_matches('"');
            value.split_whitespace().any(|id| id == "debian" || id == "ubuntu")
        })
    });
    match (debian_like, is_root) {
        (true, true) => InstallPlan::AptGet,
        (true, false) => InstallPlan::AskUser { reason: "installing packages needs root" },
        (false, _) => {
            InstallPlan::AskUser { reason: "this is not Debian or Ubuntu, so the CLI does not install packages" }
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Serialises installs within one process (tests run in parallel threads);
/// apt's own lock, waited for below, serialises processes.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Makes sure every tool in `tools` is present, installing what is missing
/// when possible.
///
/// # Errors
///
/// [`Error::MissingTools`] when a tool is missing and cannot be installed
/// here, or apt-get failed.
pub fn ensure(tools: &[Tool]) -> Result<(), Error> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<Tool> = tools.iter().copied().filter(|tool| !tool.is_present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = missing_packages(&missing);
    let os_release = std::fs::read_to_string("/etc/os-release").ok();
    let command = format!("apt-get install -y {}", packages.join(" "));
    match install_plan(running_as_root(), os_release.as_deref()) {
        InstallPlan::AskUser { reason } => Err(Error::MissingTools(format!(
            "missing system tools: {missing:?}; {reason}. Install the packages {} (on Debian or Ubuntu, as root: `{command}`)",
            packages.join(" ")
        ))),
        InstallPlan::AptGet => {
            eprintln!("bulkhead: installing missing tools {missing:?}: apt-get install {}", packages.join(" "));
            apt_get(&["update", "-q"])?;
            let mut arguments = vec!["install", "-y", "-q", "--no-install-recommends"];
            arguments.extend(packages.iter().copied());
            apt_get(&arguments)?;
            let still_missing: Vec<Tool> = missing.into_iter().filter(|tool| !tool.is_present()).collect();
            if still_missing.is_empty() {
                Ok(())
            } else {
                Err(Error::MissingTools(format!(
                    "apt-get installed {} but {still_missing:?} is still missing",
                    packages.join(" ")
                )))
            }
        }
    }
}

fn apt_get(arguments: &[&str]) -> Result<(), Error> {
    let status = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=600"])
        .args(arguments)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|error| Error::MissingTools(format!("cannot run apt-get: {error}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::MissingTools(format!("apt-get {} failed with {status}", arguments.join(" "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
    const UBUNTU: &str = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n";
    const MINT: &str = "NAME=\"Linux Mint\"\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
    const FEDORA: &str = "NAME=\"Fedora Linux\"\nID=fedora\n";

    #[test]
    fn root_on_debian_family_installs_with_apt() {
        for os_release in [DEBIAN, UBUNTU, MINT] {
            assert_eq!(install_plan(true, Some(os_release)), InstallPlan::AptGet, "{os_release}");
        }
    }

    #[test]
    fn non_root_or_other_systems_are_told_what_to_install() {
        assert!(matches!(install_plan(false, Some(DEBIAN)), InstallPlan::AskUser { .. }));
        assert!(matches!(install_plan(true, Some(FEDORA)), InstallPlan::AskUser { .. }));
        assert!(matches!(install_plan(true, None), InstallPlan::AskUser { .. }));
    }

    #[test]
    fn packages_are_listed_once_in_order() {
        let packages = missing_packages(&[Tool::GrubMkrescue, Tool::Bochs, Tool::GrubMkrescue, Tool::Qemu]);
        assert_eq!(
            packages,
            [
                "grub-common",
                "grub-pc-bin",
                "grub-efi-amd64-bin",
                "bochs",
                "bochsbios",
                "vgabios",
                "bochs-term",
                "qemu-system-x86"
            ]
        );
    }

    #[test]
    fn every_tool_names_at_least_one_package() {
        for tool in Tool::ALL {
            assert!(!tool.debian_packages().is_empty(), "{tool:?}");
        }
    }
}
