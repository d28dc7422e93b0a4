//! `bulkhead`: the front door. `cargo run` builds the kernel, packs the
//! hybrid BIOS+UEFI ISO and boots it in QEMU with the serial console here.
//! `cargo run -- --help` lists the options.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead::Error;
use bulkhead::emulator::{self, Firmware, QemuBoot, QemuOptions, WatchOptions};
use bulkhead::image::{self, BootModule, DefaultEntry, IsoSpec};
use bulkhead::kernel_build::{self, KernelVariant};
use bulkhead::tools::{self, Tool};

const USAGE: &str = "\
usage: cargo run -- [OPTIONS]
       cargo run -- capdl check|graph|show ...   (the capability manifest: docs/capdl.md)

Builds the Bulkhead kernel and a system (the default one, systems/default.capdl:
its programs and the loader that builds it from the compiled manifest), packs a
hybrid BIOS+UEFI GRUB ISO with the loader as the root task and boots it in QEMU
(TCG) with the serial console on this terminal. The run ends when the kernel
stops (when no thread can run any more); the exit status is 0 if it reported
success.

options:
  --gdb              start QEMU halted with its gdbstub and print the gdb
                     command that attaches (see README, \"Debugging\")
  --gdb-port PORT    gdbstub TCP port (default 1234)
  --guest-gdb        boot the Linux test system whose VMM serves gdb's remote
                     protocol for its guest on COM2 (tests/systems/
                     linux_gdb.capdl, unless --system names another), COM2
                     a TCP port on 127.0.0.1, and print the gdb command that
                     attaches to the running guest (docs/GUEST-GDB.md)
  --guest-gdb-port PORT
                     that TCP port (default 1235)
  --uefi             boot the ISO through UEFI firmware (OVMF) instead of BIOS
  --bochs            boot the ISO in Bochs (headless; CPU with VT-x and EPT)
  --cpu MODEL        emulated CPU: a QEMU -cpu value (default qemu64,+svm,+npt)
                     or, with --bochs, a Bochs model (default corei7_skylake_x)
  --iso PATH         only write the ISO to PATH (for a real server: its
                     default entry halts instead of stopping an emulator)
  --kernel-boot      skip GRUB: boot QEMU -kernel through Multiboot1 (fastest)
  --append WORDS     extra kernel command-line words
  --module PATH      load PATH as a boot module (its command line is the file
                     name); repeat for more
  --system NAME      boot another system of the repository (systems/*.capdl,
                     tests/systems/*.capdl; the default is `default`)
  --abi-self-test    boot the kernel-ABI self-test (components/root-task) as
                     the root task instead of a system
  --no-root-task     boot without the root task (the kernel reports and stops)
  --fault-injection  build the kernel that honours inject=KIND on its command
                     line: page-fault, gp-fault, double-fault, nmi, panic,
                     stack-overflow, write-rodata, execute-data,
                     fault-in-log; ring-3 programs: user-hello,
                     user-page-fault, user-kernel-read, user-privileged,
                     user-bad-syscall, user-noncanonical-sysret,
                     user-flood, user-trap-flag, user-capabilities,
                     user-blocked, user-all; several protection domains:
                     user-pds, user-ipc-bench (with --count-instructions),
                     user-temporal (budgets under the LAPIC timer),
                     user-round-robin (a slice ends despite system calls),
                     user-devices (a driver with I/O port and IRQ capabilities)
  --count-instructions
                     run QEMU with -icount shift=0 (the TSC counts instructions)
  --direct-linux     no Bulkhead: boot the Linux test guest (Debian's cloud
                     kernel and the busybox initramfs, docs/GUEST-IMAGES.md)
                     straight in QEMU with a fresh virtio disk, for comparison
  --timeout SECONDS  stop the emulator after this long
  -h, --help         show this text
";

/// The system `--guest-gdb` boots: Linux with the debugger on COM2.
const GUEST_GDB_SYSTEM: &str = "linux_gdb";

#[derive(Clone, Debug, Default)]
struct Options {
    gdb: bool,
    gdb_port: Option<u16>,
    guest_gdb: bool,
    guest_gdb_port: Option<u16>,
    uefi: bool,
    bochs: bool,
    cpu: Option<String>,
    iso: Option<PathBuf>,
    kernel_boot: bool,
    append: String,
    modules: Vec<BootModule>,
    fault_injection: bool,
    no_root_task: bool,
    system: Option<String>,
    abi_self_test: bool,
    count_instructions: bool,
    direct_linux: bool,
    timeout: Option<u64>,
}

fn parse_options(arguments: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut arguments = arguments.into_iter();
    while let Some(argument) = arguments.next() {
        let mut value = |name: &str| arguments.next().ok_or_else(|| format!("{name} needs a value"));
        match argument.as_str() {
            "--gdb" => options.gdb = true,
            "--gdb-port" => {
                let port = value("--gdb-port")?;
                options.gdb_port = Some(port.parse().map_err(|_| format!("--gdb-port: not a port: {port}"))?);
            }
            "--guest-gdb" => options.guest_gdb = true,
            "--guest-gdb-port" => {
                let port = value("--guest-gdb-port")?;
                options.guest_gdb_port =
                    Some(port.parse().map_err(|_| format!("--guest-gdb-port: not a port: {port}"))?);
            }
            "--uefi" => options.uefi = true,
            "--bochs" => options.bochs = true,
            "--cpu" => options.cpu = Some(value("--cpu")?),
            "--iso" => options.iso = Some(PathBuf::from(value("--iso")?)),
            "--kernel-boot" => options.kernel_boot = true,
            "--append" => {
                let words = value("--append")?;
                options.append = if options.append.is_empty() { words } else { format!("{} {words}", options.append) };
            }
            "--module" => {
                let path = PathBuf::from(value("--module")?);
                let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
                options.modules.push(BootModule { path, cmdline: name });
            }
            "--fault-injection" => options.fault_injection = true,
            "--no-root-task" => options.no_root_task = true,
            "--system" => options.system = Some(value("--system")?),
            "--abi-self-test" => options.abi_self_test = true,
            "--count-instructions" => options.count_instructions = true,
            "--direct-linux" => options.direct_linux = true,
            "--timeout" => {
                let seconds = value("--timeout")?;
                options.timeout = Some(seconds.parse().map_err(|_| format!("--timeout: not a number: {seconds}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.bochs && (options.gdb || options.uefi || options.kernel_boot || options.count_instructions) {
        return Err(
            "--bochs boots the BIOS ISO and has no gdbstub: drop --gdb, --uefi, --kernel-boot, --count-instructions"
                .into(),
        );
    }
    if options.guest_gdb && (options.bochs || options.abi_self_test || options.no_root_task || options.direct_linux) {
        return Err(
            "--guest-gdb boots a system in QEMU: drop --bochs, --abi-self-test, --no-root-task, --direct-linux".into(),
        );
    }
    if options.guest_gdb && options.system.is_none() {
        options.system = Some(GUEST_GDB_SYSTEM.into());
    }
    if [options.system.is_some(), options.abi_self_test, options.no_root_task].iter().filter(|set| **set).count() > 1 {
        return Err("--system, --abi-self-test and --no-root-task each choose the root task: give one".into());
    }
    if options.direct_linux
        && (options.bochs
            || options.gdb
            || options.uefi
            || options.kernel_boot
            || options.iso.is_some()
            || options.system.is_some()
            || options.abi_self_test
            || options.no_root_task
            || options.fault_injection
            || !options.modules.is_empty()
            || !options.append.is_empty())
    {
        return Err(
            "--direct-linux boots Linux without Bulkhead: it takes only --count-instructions and --timeout".into()
        );
    }
    if options.kernel_boot && options.uefi {
        return Err("--kernel-boot bypasses the firmware's boot: drop --uefi".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.first().is_some_and(|first| first == "capdl") {
        let outcome = bulkhead::manifest::run(&arguments[1..]);
        print!("{}", outcome.stdout);
        eprint!("{}", outcome.stderr);
        return ExitCode::from(outcome.code);
    }
    let options = match parse_options(arguments) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("bulkhead: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bulkhead: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(options: &Options) -> Result<ExitCode, Error> {
    if options.direct_linux {
        return run_direct_linux(options);
    }
    let mut needed = vec![];
    if options.bochs {
        needed.push(Tool::Bochs);
    } else if options.iso.is_none() {
        needed.push(Tool::Qemu);
    }
    if !options.kernel_boot {
        needed.extend([Tool::GrubMkrescue, Tool::Xorriso, Tool::Mtools]);
    }
    if options.uefi {
        needed.push(Tool::Ovmf);
    }
    tools::ensure(&needed)?;

    let variant = if options.fault_injection { KernelVariant::FaultInjection } else { KernelVariant::Standard };
    let kernel = kernel_build::build_kernel(variant)?;
    eprintln!("bulkhead: kernel {}", kernel_build::display_path(&kernel.elf));
    // The root task comes first; the fault-injection kernel's test
    // programs run without it.
    let mut modules = options.modules.clone();
    if !options.fault_injection && !options.no_root_task {
        let root_task = if options.abi_self_test {
            bulkhead::user_build::build_root_task()?
        } else {
            let system = options.system.as_deref().unwrap_or(bulkhead::user_build::DEFAULT_SYSTEM);
            let loader = bulkhead::user_build::build_system(system)?;
            eprintln!("bulkhead: system `{system}`");
            loader
        };
        eprintln!("bulkhead: root task {}", kernel_build::display_path(&root_task));
        modules.insert(0, BootModule { path: root_task, cmdline: "root-task".into() });
    }
    let options = &Options { modules, ..options.clone() };
    // A system with Linux guests needs more RAM than the usual machine.
    let memory_mib = match booted_system(options) {
        Some(system) => bulkhead::user_build::system_memory_mib(system)?,
        None => emulator::MEMORY_MIB,
    };

    if let Some(path) = &options.iso {
        let spec = IsoSpec {
            kernel: &kernel,
            default_entry: DefaultEntry::Hardware,
            extra_cmdline: &options.append,
            modules: &options.modules,
        };
        image::build_iso(&spec, path)?;
        eprintln!("bulkhead: wrote {} (BIOS and UEFI)", path.display());
        return Ok(ExitCode::SUCCESS);
    }

    let mut watch = WatchOptions {
        echo: true,
        timeout: options.timeout.map(std::time::Duration::from_secs),
        ..WatchOptions::default()
    };
    let iso_path = kernel_build::output_directory().join(match variant {
        KernelVariant::Standard => "bulkhead.iso",
        KernelVariant::FaultInjection => "bulkhead-fault-injection.iso",
    });
    let build_emulator_iso = || {
        let spec = IsoSpec {
            kernel: &kernel,
            default_entry: DefaultEntry::Emulator,
            extra_cmdline: &options.append,
            modules: &options.modules,
        };
        image::build_iso(&spec, &iso_path)
    };

    if options.bochs {
        build_emulator_iso()?;
        let cpu = options.cpu.as_deref().unwrap_or(emulator::DEFAULT_BOCHS_CPU);
        // A system with Linux guests needs an emulated CPU fast enough
        // for their timer tick (`emulator::LINUX_BOCHS_IPS`).
        let ips = match booted_system(options) {
            Some(system) => bulkhead::user_build::system_bochs_ips(system)?,
            None => emulator::BOCHS_IPS,
        };
        let machine = emulator::BochsMachine { memory_mib, ips };
        let (command, log) = emulator::bochs_command_on(&iso_path, cpu, machine)?;
        eprintln!(
            "bulkhead: booting {} in Bochs ({cpu}, {} M instructions per emulated second); Bochs's log: {}",
            iso_path.display(),
            ips / 1_000_000,
            log.display()
        );
        let outcome = run_shown(command, &kernel.elf, &watch, options)?;
        // Bochs's exit status means little (it may crash while tearing
        // down): the kernel's final line is the verdict.
        return Ok(verdict(outcome.final_status(), outcome.timed_out));
    }

    let boot = if options.kernel_boot {
        let cmdline = format!("exit=emulator {}", options.append).trim().to_owned();
        QemuBoot::Kernel { elf: kernel.elf.clone(), cmdline, modules: options.modules.clone() }
    } else {
        build_emulator_iso()?;
        QemuBoot::Iso { iso: iso_path.clone(), firmware: if options.uefi { Firmware::Uefi } else { Firmware::Bios } }
    };
    let gdb_port = options.gdb.then(|| options.gdb_port.unwrap_or(emulator::DEFAULT_GDB_PORT));
    let qemu_options = QemuOptions {
        cpu: options.cpu.clone().unwrap_or_else(|| emulator::DEFAULT_QEMU_CPU.into()),
        gdb_port,
        count_instructions: options.count_instructions,
        memory_mib,
        com2_port: options.guest_gdb.then(|| options.guest_gdb_port.unwrap_or(emulator::DEFAULT_GUEST_GDB_PORT)),
    };
    let command = emulator::qemu_command(&boot, &qemu_options)?;
    if let Some(port) = gdb_port {
        tools::ensure(&[Tool::Gdb])?;
        let root = kernel_build::workspace_root();
        let mut attach = format!("gdb -q --cd={} -x tools/gdb/bulkhead.gdb", root.display());
        if port != emulator::DEFAULT_GDB_PORT {
            attach =
                format!("gdb -q --cd={} -ex 'set $bulkhead_port = {port}' -x tools/gdb/bulkhead.gdb", root.display());
        }
        if options.fault_injection {
            attach = attach.replace(" -x ", " -ex 'set $bulkhead_fault_injection = 1' -x ");
        }
        // Printed once QEMU runs, so that the command works right away.
        watch.announce =
            Some(format!("bulkhead: QEMU is waiting for gdb on 127.0.0.1:{port}. Attach with:\n    {attach}"));
    }
    if let Some(port) = qemu_options.com2_port {
        tools::ensure(&[Tool::Gdb])?;
        let attach = emulator::guest_gdb_command(port);
        let line = format!("bulkhead: the guest's gdb stub is on 127.0.0.1:{port} (COM2). Attach with:\n    {attach}");
        watch.announce = Some(match watch.announce.take() {
            Some(first) => format!("{first}\n{line}"),
            None => line,
        });
    }
    eprintln!("bulkhead: booting in QEMU (-cpu {}); quit with Ctrl-C", qemu_options.cpu);
    let outcome = run_shown(command, &kernel.elf, &watch, options)?;
    Ok(match outcome.exit_code {
        Some(emulator::QEMU_EXIT_SUCCESS) => ExitCode::SUCCESS,
        Some(emulator::QEMU_EXIT_FAILURE) => ExitCode::FAILURE,
        _ => verdict(outcome.final_status(), outcome.timed_out),
    })
}

/// The system whose loader is the root task, if the run boots one (not
/// the ABI self-test, no root task, not the fault-injection kernel).
fn booted_system(options: &Options) -> Option<&str> {
    match (&options.system, options.abi_self_test, options.no_root_task, options.fault_injection) {
        (system, false, false, false) => Some(system.as_deref().unwrap_or(bulkhead::user_build::DEFAULT_SYSTEM)),
        _ => None,
    }
}

/// Runs the emulator with the console on this terminal: for a system with
/// a Linux guest, when standard output is a terminal, its console first,
/// and a key to switch to the hypervisor's whole log (`console_view`);
/// otherwise the whole log.
fn run_shown(
    command: std::process::Command,
    kernel_elf: &std::path::Path,
    watch: &WatchOptions,
    options: &Options,
) -> Result<emulator::RunOutcome, Error> {
    // The view is for a person: a script reading standard output gets the
    // whole log.
    let at_a_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match booted_system(options).filter(|_| at_a_terminal).and_then(bulkhead::user_build::guest_console_pd) {
        Some(console_pd) => {
            eprintln!("bulkhead: showing the Linux guest's console (its lines as `{console_pd}` prints them)");
            let view = bulkhead::console_view::ConsoleView::new(&console_pd, bulkhead::console_view::View::Guest);
            emulator::run_interactive(command, kernel_elf, watch, view)
        }
        None => emulator::run(command, kernel_elf, watch),
    }
}

/// `--direct-linux`: the Linux test guest straight in QEMU; success when
/// its init reached user space and QEMU exited by itself.
fn run_direct_linux(options: &Options) -> Result<ExitCode, Error> {
    use bulkhead::guest_images::{self, markers};
    // Generous: the guest powers off by itself well within this.
    let timeout = std::time::Duration::from_secs(options.timeout.unwrap_or(600));
    let run = guest_images::boot_directly(options.count_instructions, timeout, true)?;
    let _ = std::fs::remove_file(&run.disk);
    let outcome = &run.outcome;
    eprintln!(
        "bulkhead: {} with {} in QEMU without Bulkhead: {:.1} s wall time, QEMU exit {:?}",
        run.images.kernel_package,
        run.images.busybox_package,
        outcome.wall_time.as_secs_f64(),
        outcome.exit_code
    );
    if options.count_instructions
        && let Some(seconds) = guest_images::last_kernel_timestamp(&outcome.console)
    {
        eprintln!(
            "bulkhead: the guest's last kernel line at {seconds:.6} s of guest time (under -icount shift=0: {:.0} \
             million instructions, plus the time it spent halted)",
            seconds * 1e3
        );
    }
    let reached = outcome.console.lines().any(|line| line.trim_end() == markers::USERSPACE_UP);
    Ok(if reached && !outcome.timed_out { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The CLI's exit status from the kernel's final line.
fn verdict(final_status: Option<&str>, timed_out: bool) -> ExitCode {
    match final_status {
        Some("success") => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
        None => {
            let why = if timed_out { "the run timed out" } else { "the emulator ended" };
            eprintln!("bulkhead: {why} before the kernel's final line");
            ExitCode::from(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Options, String> {
        parse_options(words.iter().map(|word| (*word).to_owned()))
    }

    #[test]
    fn no_options_boot_the_bios_iso_in_qemu() {
        let options = parse(&[]).expect("valid");
        assert!(!options.gdb && !options.uefi && !options.bochs && !options.kernel_boot);
        assert!(options.iso.is_none() && options.cpu.is_none());
    }

    #[test]
    fn values_are_parsed() {
        let options =
            parse(&["--gdb", "--gdb-port", "4000", "--cpu", "max", "--append", "a=1", "--append", "b"]).expect("valid");
        assert_eq!(options.gdb_port, Some(4000));
        assert_eq!(options.cpu.as_deref(), Some("max"));
        assert_eq!(options.append, "a=1 b");
        let options = parse(&["--module", "/x/root-task", "--module", "disk.img"]).expect("valid");
        let names: Vec<&str> = options.modules.iter().map(|module| module.cmdline.as_str()).collect();
        assert_eq!(names, ["root-task", "disk.img"]);
    }

    #[test]
    fn contradictions_and_unknowns_are_refused() {
        assert!(parse(&["--bochs", "--gdb"]).is_err());
        assert!(parse(&["--kernel-boot", "--uefi"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--gdb-port"]).is_err());
        assert!(parse(&["--gdb-port", "99999"]).is_err());
        let guest = parse(&["--guest-gdb", "--guest-gdb-port", "4001"]).expect("valid");
        assert_eq!((guest.system.as_deref(), guest.guest_gdb_port), (Some("linux_gdb"), Some(4001)));
        assert!(parse(&["--guest-gdb", "--bochs"]).is_err());
        assert!(parse(&["--guest-gdb-port", "x"]).is_err());
        assert!(parse(&["--direct-linux", "--bochs"]).is_err());
        assert!(parse(&["--direct-linux", "--system", "linux"]).is_err());
        assert!(parse(&["--direct-linux", "--count-instructions", "--timeout", "60"]).is_ok());
        assert_eq!(parse(&["--help"]).err().as_deref(), Some(""));
    }
}
