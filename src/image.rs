//! The boot ISO: GRUB for BIOS and UEFI in one hybrid image
//! (`grub-mkrescue` with the i386-pc and x86_64-efi platforms), loading the
//! kernel through Multiboot2.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::kernel_build::{KernelImage, output_directory};
use crate::tools::{self, Tool};

/// Which GRUB menu entry boots by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultEntry {
    /// For QEMU and Bochs: the kernel may end the emulator when it stops
    /// (`exit=emulator`), which the tests rely on.
    Emulator,
    /// For a real server: the kernel only halts when it stops.
    Hardware,
}

/// A file the boot loader loads next to the kernel (Multiboot module), with
/// its own command line. Later issues use modules for the capability
/// manifest and the ring-3 images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootModule {
    /// The file on the host.
    pub path: PathBuf,
    /// The module's command line (by convention its first word names it).
    pub cmdline: String,
}

/// What goes into an ISO.
#[derive(Clone, Debug)]
pub struct IsoSpec<'a> {
    /// The kernel to boot.
    pub kernel: &'a KernelImage,
    /// The entry GRUB boots after its (zero) timeout.
    pub default_entry: DefaultEntry,
    /// Extra kernel command-line words for both entries.
    pub extra_cmdline: &'a str,
    /// Boot modules, loaded by both entries in this order.
    pub modules: &'a [BootModule],
}

/// The GRUB configuration for an ISO: two entries differing only in
/// `exit=emulator`, GRUB's own output on the serial port as well as the
/// screen (so that a GRUB error shows up in the test logs), no delay.
pub fn grub_config(spec: &IsoSpec<'_>) -> String {
    let default = match spec.default_entry {
        DefaultEntry::Emulator => 0,
        DefaultEntry::Hardware => 1,
    };
    let extra = spec.extra_cmdline.trim();
    let extra = if extra.is_empty() { String::new() } else { format!(" {extra}") };
    let mut module_lines = String::new();
    for (index, module) in spec.modules.iter().enumerate() {
        let cmdline = module.cmdline.trim();
        let cmdline = if cmdline.is_empty() { String::new() } else { format!(" {cmdline}") };
        module_lines.push_str(&format!("    module2 /boot/modules/{}{cmdline}\n", module_file_name(index, module)));
    }
    format!(
        "# Written by the bulkhead CLI (src/image.rs).\n\
         set timeout=0\n\
         set default={default}\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         \n\
         menuentry \"Bulkhead (emulator: stops QEMU or Bochs when done)\" {{\n\
         \x20   multiboot2 /boot/bulkhead-kernel exit=emulator{extra}\n\
         {module_lines}\
         \x20   boot\n\
         }}\n\
         \n\
         menuentry \"Bulkhead\" {{\n\
         \x20   multiboot2 /boot/bulkhead-kernel{extra}\n\
         {module_lines}\
         \x20   boot\n\
         }}\n"
    )
}

/// Writes a hybrid BIOS+UEFI ISO to `output`.
///
/// # Errors
///
/// Missing tools that cannot be installed, file errors, or a failing
/// grub-mkrescue.
pub fn build_iso(spec: &IsoSpec<'_>, output: &Path) -> Result<(), Error> {
    tools::ensure(&[Tool::GrubMkrescue, Tool::Xorriso, Tool::Mtools])?;
    let staging = staging_directory(output);
    let _ = std::fs::remove_dir_all(&staging);
    let grub_directory = staging.join("boot").join("grub");
    std::fs::create_dir_all(&grub_directory)
        .map_err(|error| Error::io(format!("creating {}", grub_directory.display()), error))?;
    let kernel_copy = staging.join("boot").join("bulkhead-kernel");
    std::fs::copy(&spec.kernel.elf, &kernel_copy)
        .map_err(|error| Error::io(format!("copying the kernel to {}", kernel_copy.display()), error))?;
    if !spec.modules.is_empty() {
        let module_directory = staging.join("boot").join("modules");
        std::fs::create_dir_all(&module_directory)
            .map_err(|error| Error::io(format!("creating {}", module_directory.display()), error))?;
        for (index, module) in spec.modules.iter().enumerate() {
            let copy = module_directory.join(module_file_name(index, module));
            std::fs::copy(&module.path, &copy).map_err(|error| {
                Error::io(format!("copying the module {} to {}", module.path.display(), copy.display()), error)
            })?;
        }
    }
    let config = grub_directory.join("grub.cfg");
    std::fs::write(&config, grub_config(spec))
        .map_err(|error| Error::io(format!("writing {}", config.display()), error))?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).map_err(|error| Error::io(format!("creating {}", parent.display()), error))?;
    }
    let result = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(output)
        .arg(&staging)
        .output()
        .map_err(|error| Error::IsoBuild(format!("cannot run grub-mkrescue: {error}")))?;
    if !result.status.success() {
        return Err(Error::IsoBuild(format!(
            "grub-mkrescue exited with {}: {}",
            result.status,
            String::from_utf8_lossy(&result.stderr)
        )));
    }
    Ok(())
}

/// The module's file name inside the ISO: its position, then its host
/// name, so that two modules with one name stay apart.
fn module_file_name(index: usize, module: &BootModule) -> String {
    let name = module.path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("{index}-{name}")
}

/// A staging directory next to the other build products, one per output.
fn staging_directory(output: &Path) -> PathBuf {
    let name = output.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    output_directory().join("iso-staging").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_build::KernelVariant;

    fn kernel() -> KernelImage {
        KernelImage { elf: PathBuf::from("/nonexistent"), variant: KernelVariant::Standard }
    }

    #[test]
    fn emulator_iso_boots_the_emulator_entry_by_default() {
        let kernel = kernel();
        let config = grub_config(&IsoSpec {
            kernel: &kernel,
            default_entry: DefaultEntry::Emulator,
            extra_cmdline: "",
            modules: &[],
        });
        assert!(config.contains("set default=0\n"));
        assert!(config.contains("set timeout=0\n"));
        assert!(config.contains("multiboot2 /boot/bulkhead-kernel exit=emulator\n"));
        assert!(config.contains("multiboot2 /boot/bulkhead-kernel\n"));
    }

    #[test]
    fn hardware_iso_defaults_to_the_plain_entry_and_keeps_extra_words() {
        let kernel = kernel();
        let config = grub_config(&IsoSpec {
            kernel: &kernel,
            default_entry: DefaultEntry::Hardware,
            extra_cmdline: " log=debug ",
            modules: &[],
        });
        assert!(config.contains("set default=1\n"));
        assert!(config.contains("multiboot2 /boot/bulkhead-kernel exit=emulator log=debug\n"));
        assert!(config.contains("multiboot2 /boot/bulkhead-kernel log=debug\n"));
        assert!(!config.contains("module2"));
    }

    #[test]
    fn both_entries_load_every_module_in_order() {
        let kernel = kernel();
        let modules = [
            BootModule { path: PathBuf::from("/a/root task"), cmdline: "root-task".into() },
            BootModule { path: PathBuf::from("/b/disk.img"), cmdline: String::new() },
        ];
        let config = grub_config(&IsoSpec {
            kernel: &kernel,
            default_entry: DefaultEntry::Emulator,
            extra_cmdline: "",
            modules: &modules,
        });
        assert_eq!(config.matches("    module2 /boot/modules/0-root_task root-task\n").count(), 2, "{config}");
        assert_eq!(config.matches("    module2 /boot/modules/1-disk.img\n").count(), 2, "{config}");
        let first = config.find("0-root_task").expect("first module");
        let second = config.find("1-disk.img").expect("second module");
        assert!(first < second);
    }
}
