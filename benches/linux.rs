//! The Linux guest's benchmarks (`docs/PERFORMANCE.md`, "Linux guest
//! benchmarks"): Debian's cloud kernel with the busybox initramfs
//! (`docs/GUEST-IMAGES.md`) booted twice in one run, both under QEMU
//! `-icount shift=0` (one nanosecond of guest time per instruction, so
//! the figures are instruction counts, not the host's noisy wall time):
//! directly in QEMU, and as a Bulkhead guest under `svm`
//! (`tests/systems/linux_bench.capdl`). Each guest has a 32 MiB virtio
//! disk and `bulkhead.bench=1` on its command line, so its init reports
//! its uptime after the disk test and times (by `/proc/uptime`) dd
//! reading the whole disk four times and writing its tail four times.
//! The bench prints both sets of figures and their ratios; it gates on
//! nothing but the runs' success.
//!
//! `cargo bench --bench linux` (a few minutes here).

use std::process::ExitCode;
use std::time::Duration;

use bulkhead::emulator::{self, QemuBoot, QemuOptions, WatchOptions};
use bulkhead::guest_images::{self, BenchFigures, DirectOptions};
use bulkhead::image::BootModule;
use bulkhead::kernel_build::{self, KernelVariant};
use bulkhead::user_build;

/// The system the Bulkhead run boots.
const SYSTEM: &str = "linux_bench";
/// The disk both guests get, in bytes (the system's disk region).
const DISK_BYTES: u64 = 32 << 20;
/// The direct run's command line: the Bulkhead guest's, less what its VMM
/// appends (`tsc_early_khz=`, which a guest with a non-exiting PIT does
/// not need).
const DIRECT_CMDLINE: &str = "console=ttyS0 panic=-1 reboot=acpi bulkhead.bench=1";
/// Each run's limit (each takes a minute or two here).
const TIMEOUT: Duration = Duration::from_secs(1200);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("linux bench: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    eprintln!("linux bench: booting the guest directly in QEMU (-icount shift=0)");
    let options = DirectOptions { count_instructions: true, cmdline: DIRECT_CMDLINE, disk_bytes: Some(DISK_BYTES) };
    let direct = guest_images::boot_directly_with(&options, TIMEOUT, false).map_err(|error| error.to_string())?;
    let _ = std::fs::remove_file(&direct.disk);
    let direct_figures = figures("direct", &direct.outcome.console, direct.outcome.timed_out)?;

    eprintln!("linux bench: booting it under Bulkhead (system `{SYSTEM}`, svm, -icount shift=0)");
    let kernel = kernel_build::build_kernel(KernelVariant::Standard).map_err(|error| error.to_string())?;
    let loader = user_build::build_system(SYSTEM).map_err(|error| error.to_string())?;
    let memory_mib = user_build::system_memory_mib(SYSTEM).map_err(|error| error.to_string())?;
    let boot = QemuBoot::Kernel {
        elf: kernel.elf.clone(),
        cmdline: "exit=emulator".into(),
        modules: vec![BootModule { path: loader, cmdline: "root-task".into() }],
    };
    let qemu = QemuOptions { count_instructions: true, memory_mib, ..QemuOptions::default() };
    let command = emulator::qemu_command(&boot, &qemu).map_err(|error| error.to_string())?;
    let watch = WatchOptions { echo: false, timeout: Some(TIMEOUT), ..WatchOptions::default() };
    let bulkhead = emulator::run(command, &kernel.elf, &watch).map_err(|error| error.to_string())?;
    if bulkhead.final_status() != Some("success") {
        return Err(format!("the Bulkhead run did not succeed:\n{}", bulkhead.console));
    }
    let bulkhead_figures = figures("Bulkhead", &bulkhead.console, bulkhead.timed_out)?;

    println!("Linux guest benchmarks (QEMU TCG, -icount shift=0: guest seconds are 10^9 instructions, halts included)");
    println!("{:<44} {:>14} {:>14} {:>8}", "figure", "direct", "Bulkhead", "ratio");
    let row = |name: &str, direct: f64, bulkhead: f64, unit: &str| {
        println!("{name:<44} {:>12.3} {unit} {:>12.3} {unit} {:>8.3}", direct, bulkhead, bulkhead / direct);
    };
    row("guest time at `Run /init`", direct_figures.run_init_seconds, bulkhead_figures.run_init_seconds, "s");
    row("guest uptime after the disk test", direct_figures.uptime_seconds, bulkhead_figures.uptime_seconds, "s");
    let mib = |bytes_per_second: f64| bytes_per_second / f64::from(1 << 20);
    row(
        "disk read, whole disk x4 (MiB/s)",
        mib(direct_figures.read.bytes_per_second()),
        mib(bulkhead_figures.read.bytes_per_second()),
        " ",
    );
    row(
        "disk write, 28 MiB tail x4, fsync (MiB/s)",
        mib(direct_figures.write.bytes_per_second()),
        mib(bulkhead_figures.write.bytes_per_second()),
        " ",
    );
    match hypervisor_seconds_before_the_guest(&bulkhead.console) {
        Some(seconds) => println!(
            "Bulkhead's own boot before the guest's VMM started (kernel, loader, staging): {seconds:.3} s \
             (the guest's clock starts there; the direct run's firmware time is not measured)"
        ),
        None => println!("Bulkhead's own boot before the guest: not found in the log"),
    }
    println!("targets: boot within 1.3 times direct; disk at least 0.7 times direct");
    Ok(())
}

/// The machine's clock when the guest's VMM began its boot, from its
/// line `vmm: booting Linux at host TSC N: ...` (under `-icount shift=0`
/// the TSC counts nanoseconds since reset), in seconds.
fn hypervisor_seconds_before_the_guest(console: &str) -> Option<f64> {
    let line = console.lines().find_map(|line| line.strip_prefix("user linux_vmm: vmm: booting Linux at host TSC "))?;
    let ticks: u64 = line.split(':').next()?.trim().parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // nanoseconds of a boot, far below 2^52
    Some(ticks as f64 / 1e9)
}

/// The figures of one run, or why there are none.
fn figures(which: &str, console: &str, timed_out: bool) -> Result<BenchFigures, String> {
    guest_images::bench_figures(console).ok_or_else(|| {
        let why = if timed_out { "timed out" } else { "ended" };
        format!("the {which} run {why} without its figures:\n{console}")
    })
}
