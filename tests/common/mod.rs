//! What the boot tests share: building each kernel variant and ISO once per
//! test binary, running QEMU or Bochs, and reading the kernel's report.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bulkhead::emulator::{self, QemuBoot, QemuOptions, RunOutcome, WatchOptions};
use bulkhead::image::{self, BootModule, DefaultEntry, IsoSpec};
use bulkhead::kernel_build::{self, KernelImage, KernelVariant};

/// Generous: TCG runs are CPU-bound and the machine has two cores.
pub const KERNEL_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Firmware boots (OVMF, Bochs) are slower still.
pub const FIRMWARE_BOOT_TIMEOUT: Duration = Duration::from_secs(400);

fn build_once(cell: &'static OnceLock<KernelImage>, variant: KernelVariant) -> &'static KernelImage {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    cell.get_or_init(|| kernel_build::build_kernel(variant).unwrap_or_else(|error| panic!("{error}")))
}

/// The standard kernel, built once per test binary.
pub fn standard_kernel() -> &'static KernelImage {
    static KERNEL: OnceLock<KernelImage> = OnceLock::new();
    build_once(&KERNEL, KernelVariant::Standard)
}

/// The fault-injection kernel, built once per test binary.
pub fn fault_injection_kernel() -> &'static KernelImage {
    static KERNEL: OnceLock<KernelImage> = OnceLock::new();
    build_once(&KERNEL, KernelVariant::FaultInjection)
}

/// The running test binary's name without cargo's hash (`boot`, `modules`):
/// files named after it are reused by the next run instead of piling up.
pub fn test_binary_name() -> String {
    let executable = std::env::current_exe().expect("test binary path");
    let stem = executable.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    stem.rsplit_once('-').map_or(stem.clone(), |(name, _hash)| name.to_owned())
}

/// The emulator ISO of the standard kernel, built once per test binary.
pub fn standard_iso() -> &'static PathBuf {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let kernel = standard_kernel();
        let path = kernel_build::output_directory().join(format!("test-{}.iso", test_binary_name()));
        let spec = IsoSpec { kernel, default_entry: DefaultEntry::Emulator, extra_cmdline: "", modules: &[] };
        image::build_iso(&spec, &path).unwrap_or_else(|error| panic!("{error}"));
        path
    })
}

/// Runs QEMU to the end and prints the console (cargo shows it on failure).
pub fn run_qemu(kernel: &KernelImage, boot: QemuBoot, options: QemuOptions, timeout: Duration) -> RunOutcome {
    let command = emulator::qemu_command(&boot, &options).unwrap_or_else(|error| panic!("{error}"));
    let watch = WatchOptions { echo: false, timeout: Some(timeout), ..WatchOptions::default() };
    let outcome = emulator::run(command, &kernel.elf, &watch).unwrap_or_else(|error| panic!("{error}"));
    print_outcome(&outcome);
    outcome
}

/// Boots the kernel through QEMU `-kernel` with extra command-line words.
pub fn run_kernel_boot(kernel: &KernelImage, extra_cmdline: &str, count_instructions: bool) -> RunOutcome {
    let boot = QemuBoot::Kernel {
        elf: kernel.elf.clone(),
        cmdline: format!("exit=emulator {extra_cmdline}"),
        modules: vec![],
    };
    let options = QemuOptions { count_instructions, ..QemuOptions::default() };
    run_qemu(kernel, boot, options, KERNEL_BOOT_TIMEOUT)
}

pub fn print_outcome(outcome: &RunOutcome) {
    println!("--- console ---\n{}\n--- end of console ---", outcome.console);
    println!(
        "exit code {:?}, timed out {}, wall time {:.1} s",
        outcome.exit_code,
        outcome.timed_out,
        outcome.wall_time.as_secs_f64()
    );
    if !outcome.stderr.trim().is_empty() {
        println!("--- emulator stderr ---\n{}", outcome.stderr);
    }
}

/// The value after `key` on the first line containing `marker`.
fn number_after(console: &str, marker: &str, key: &str) -> Option<u64> {
    let line = console.lines().find(|line| line.contains(marker))?;
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The boot-cost figures the kernel prints: TSC at kernel entry and at the
/// banner. Under `-icount shift=0` the TSC is QEMU's virtual clock in
/// nanoseconds, one per instruction: entry-to-banner counts instructions
/// exactly, reset-to-entry adds the firmware's idle waits.
#[derive(Debug, Clone, Copy)]
pub struct BootCost {
    pub tsc_at_entry: u64,
    pub tsc_at_banner: u64,
    /// The defmt timestamp (`tsc=N`) of the "boot complete" line.
    pub tsc_at_boot_complete: u64,
}

impl BootCost {
    pub fn entry_to_banner(&self) -> u64 {
        self.tsc_at_banner - self.tsc_at_entry
    }

    pub fn entry_to_boot_complete(&self) -> u64 {
        self.tsc_at_boot_complete - self.tsc_at_entry
    }
}

pub fn boot_cost(console: &str) -> BootCost {
    let tsc_at_entry =
        number_after(console, "boot: tsc at kernel entry", "kernel entry").expect("TSC at entry printed");
    let tsc_at_banner = number_after(console, "boot: tsc at kernel entry", "at banner").expect("TSC at banner printed");
    assert!(tsc_at_banner > tsc_at_entry, "TSC went backwards: {tsc_at_entry} then {tsc_at_banner}");
    let tsc_at_boot_complete = number_after(console, "boot complete", "tsc=").expect("timestamped boot-complete line");
    assert!(tsc_at_boot_complete > tsc_at_banner, "TSC went backwards: {tsc_at_banner} then {tsc_at_boot_complete}");
    BootCost { tsc_at_entry, tsc_at_banner, tsc_at_boot_complete }
}

/// Checks what every successful boot prints, whatever the path: the
/// banner, how it was loaded, the memory-map summary (decoded from the
/// kernel's defmt log) and the final line.
pub fn assert_successful_boot(outcome: &RunOutcome, loader: &str, protocol: &str) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the run timed out");
    assert!(console.contains("Bulkhead 0.1.0 kernel, release build, on "), "no banner");
    assert!(
        console.contains(&format!("boot: loaded by {loader}")) && console.contains(&format!("via {protocol},")),
        "expected a {protocol} boot by {loader}"
    );
    // 256 MiB of guest RAM; firmware keeps some, the first MiB is not
    // counted as available by every firmware.
    let available = number_after(console, "memory map: ", "memory map:").expect("memory-map summary (defmt) decoded");
    assert!((200..=256).contains(&available), "{available} MiB available out of 256");
    let regions = number_after(console, "memory map: ", "available in").expect("region count");
    assert!(regions >= 1, "no available region");
    let free_frames = number_after(console, "frames: ", "frames:").expect("frame allocator summary");
    assert!(free_frames * 4096 > 180 << 20 && free_frames * 4096 < 256 << 20, "{free_frames} free frames");
    assert!(
        console.contains("allocated and freed 64 frames, none inside the kernel image, boot information or modules")
    );
    assert!(console.contains("boot complete"));
    assert_eq!(outcome.final_status(), Some("success"));
}

/// Boots the fault-injection kernel in Bochs (an Intel CPU with VT-x)
/// through an ISO whose command line adds `extra_cmdline`, and prints the
/// console. Bochs's exit status is meaningless (it may crash while tearing
/// down): callers judge the run by the kernel's final line.
pub fn run_fault_injection_iso_in_bochs(extra_cmdline: &str) -> RunOutcome {
    let name = extra_cmdline.trim_start_matches("inject=");
    run_iso_in_bochs(fault_injection_kernel(), name, extra_cmdline, &[])
}

/// Builds an ISO of `kernel` with `extra_cmdline` and `modules` (its file
/// is named after the test binary and `name`), boots it in Bochs and
/// prints the console; asserts that Bochs emulated an Intel CPU.
pub fn run_iso_in_bochs(kernel: &KernelImage, name: &str, extra_cmdline: &str, modules: &[BootModule]) -> RunOutcome {
    run_iso_in_bochs_on(kernel, name, extra_cmdline, modules, emulator::BochsMachine::default(), FIRMWARE_BOOT_TIMEOUT)
}

/// [`run_iso_in_bochs`] on `machine`, stopped after `timeout`.
pub fn run_iso_in_bochs_on(
    kernel: &KernelImage,
    name: &str,
    extra_cmdline: &str,
    modules: &[BootModule],
    machine: emulator::BochsMachine,
    timeout: Duration,
) -> RunOutcome {
    let iso = kernel_build::output_directory().join(format!("test-{}-{name}.iso", test_binary_name()));
    let spec = IsoSpec { kernel, default_entry: DefaultEntry::Emulator, extra_cmdline, modules };
    image::build_iso(&spec, &iso).unwrap_or_else(|error| panic!("{error}"));
    let (command, log) = emulator::bochs_command_on(&iso, emulator::DEFAULT_BOCHS_CPU, machine)
        .unwrap_or_else(|error| panic!("{error}"));
    let watch = WatchOptions { echo: false, timeout: Some(timeout), ..WatchOptions::default() };
    let outcome = emulator::run(command, &kernel.elf, &watch).unwrap_or_else(|error| panic!("{error}"));
    print_outcome(&outcome);
    println!("Bochs log: {}", log.display());
    assert!(outcome.console.contains("GenuineIntel"), "Bochs should emulate an Intel CPU");
    outcome
}

/// Boots system `name` of the repository (`user_build::build_system`: its
/// programs and the loader around them) through QEMU `-kernel` with
/// `extra_cmdline`; under `-icount shift=0` with `count_instructions`. One
/// system at a time per test binary: without `-icount` the guest's TSC is
/// the host's clock, and a second emulator taking a host core would change
/// the work a budget buys.
pub fn boot_system(name: &str, extra_cmdline: &str, count_instructions: bool) -> RunOutcome {
    boot_system_with_timeout(name, extra_cmdline, count_instructions, KERNEL_BOOT_TIMEOUT)
}

/// [`boot_system`] with its own timeout (a Linux guest's boot takes
/// minutes under TCG).
pub fn boot_system_with_timeout(
    name: &str,
    extra_cmdline: &str,
    count_instructions: bool,
    timeout: Duration,
) -> RunOutcome {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let loader = bulkhead::user_build::build_system(name).unwrap_or_else(|error| panic!("{error}"));
    let kernel = standard_kernel();
    let boot = QemuBoot::Kernel {
        elf: kernel.elf.clone(),
        cmdline: format!("exit=emulator {extra_cmdline}"),
        modules: vec![BootModule { path: loader, cmdline: "root-task".into() }],
    };
    // The usual machine, larger for a system with big guests or bundle.
    let memory_mib = bulkhead::user_build::system_memory_mib(name).unwrap_or_else(|error| panic!("{error}"));
    let options = QemuOptions { count_instructions, memory_mib, ..QemuOptions::default() };
    run_qemu(kernel, boot, options, timeout)
}

/// Boots system `name` (its loader as the root task) in Bochs, through an
/// ISO, on the machine the system needs: its RAM
/// (`user_build::system_memory_mib`) and its clock rate
/// (`user_build::system_bochs_ips`); stopped after `timeout`.
pub fn boot_system_in_bochs(name: &str, timeout: Duration) -> RunOutcome {
    let loader = bulkhead::user_build::build_system(name).unwrap_or_else(|error| panic!("{error}"));
    let machine = emulator::BochsMachine {
        memory_mib: bulkhead::user_build::system_memory_mib(name).unwrap_or_else(|error| panic!("{error}")),
        ips: bulkhead::user_build::system_bochs_ips(name).unwrap_or_else(|error| panic!("{error}")),
    };
    let modules = [BootModule { path: loader, cmdline: "root-task".into() }];
    run_iso_in_bochs_on(standard_kernel(), name, "", &modules, machine, timeout)
}

/// A system's run went well as far as the loader and the kernel tell: no
/// hang, no kernel exception, the loader finished and the kernel's verdict
/// is success (QEMU's exit code is checked by the caller that used QEMU).
pub fn assert_loader_run_succeeded(outcome: &RunOutcome) {
    assert!(!outcome.timed_out, "the system hung");
    assert!(!outcome.console.contains("!!! kernel"), "a kernel exception or panic");
    assert!(outcome.console.contains("root task: done; the threads it started run on"));
    assert_eq!(outcome.final_status(), Some("success"));
}

/// The console's lines, without trailing whitespace.
pub fn lines(console: &str) -> Vec<&str> {
    console.lines().map(str::trim_end).collect()
}

/// Checks that `expected` appear as whole lines, in this order.
pub fn assert_lines_in_order(console: &str, expected: &[&str]) {
    let lines = lines(console);
    let mut position = 0;
    for line in expected {
        match lines[position..].iter().position(|candidate| candidate == line) {
            Some(offset) => position += offset + 1,
            None => panic!("line {line:?} missing (or out of order)"),
        }
    }
}
