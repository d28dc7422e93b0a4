//! Running the kernel in QEMU or Bochs and reading what it says.
//!
//! Both emulators put the kernel's COM1 on their standard output. The run
//! loop feeds those bytes through the console decoder (plain text passes,
//! defmt frames are decoded, exception addresses are symbolised), shows or
//! collects the text, and ends the run when the emulator exits, when the
//! kernel's final line `bulkhead: exit ...` has been seen and the emulator
//! lingers (Bochs sometimes does), or when a timeout expires.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Error;
use crate::console::ConsoleDecoder;
use crate::image::BootModule;
use crate::kernel_build::output_directory;
use crate::symbolize::Symbolizer;
use crate::tools::{self, BOCHS_BIOS, BOCHS_VGA_BIOS, OVMF_CODE, OVMF_VARS, Tool};

/// The CPU model QEMU emulates by default: AMD SVM with nested paging, the
/// `svm` backend's target under TCG.
pub const DEFAULT_QEMU_CPU: &str = "qemu64,+svm,+npt";
/// The CPU model Bochs emulates by default: Intel VT-x with EPT, VPID and
/// unrestricted guest, the `vtx` backend's target.
pub const DEFAULT_BOCHS_CPU: &str = "corei7_skylake_x";
/// The emulated machine's RAM for a run, in MiB, unless the run asks for
/// more (a system with Linux guests: `user_build::system_memory_mib`).
pub const MEMORY_MIB: u32 = 256;
/// Bochs's emulated clock rate, instructions per emulated second, for
/// most runs: the kernel's own tests need no more, and a slow emulated
/// clock keeps their time-driven steps (budgets, deadlines, the timer's
/// calibration) short in wall time. Bochs's TSC counts instructions, so
/// this is also the TSC's rate the kernel measures.
pub const BOCHS_IPS: u32 = 4_000_000;
/// Bochs's emulated clock rate for a system with Linux guests
/// (`user_build::system_bochs_ips`). At [`BOCHS_IPS`] the guest's CPU is a
/// 4 MHz machine on which one VM exit costs about 1 ms of its time: the
/// handful of exits each 4 ms tick of Linux's 250 Hz timer takes (the
/// interrupt's injection, the local APIC's EOI, the I/O APIC's) then
/// fill the whole tick, and the guest stops making progress once its
/// timer runs. A 100 MHz machine leaves the guest most of each tick.
pub const LINUX_BOCHS_IPS: u32 = 100_000_000;
/// The port QEMU's gdbstub listens on by default.
pub const DEFAULT_GDB_PORT: u16 = 1234;
/// The TCP port of the guest debugger's line (QEMU's COM2) by default,
/// beside QEMU's own gdbstub's (`docs/GUEST-GDB.md`).
pub const DEFAULT_GUEST_GDB_PORT: u16 = 1235;

/// gdb's arguments that attach it to a guest's stub behind QEMU's COM2 on
/// `port` of 127.0.0.1 (`QemuOptions::com2_port`).
pub fn guest_gdb_arguments(port: u16) -> Vec<String> {
    ["-q", "-ex", "set architecture i386:x86-64", "-ex", &format!("target remote 127.0.0.1:{port}")]
        .map(str::to_owned)
        .to_vec()
}

/// The same as a command a user types.
pub fn guest_gdb_command(port: u16) -> String {
    let quoted: Vec<String> = guest_gdb_arguments(port)
        .into_iter()
        .map(|argument| if argument.contains(' ') { format!("'{argument}'") } else { argument })
        .collect();
    format!("gdb {}", quoted.join(" "))
}

/// The status QEMU exits with when the kernel reports success through
/// isa-debug-exit: `(0x10 << 1) | 1`.
pub const QEMU_EXIT_SUCCESS: i32 = 33;
/// The status for a kernel failure (panic or exception): `(0x11 << 1) | 1`.
pub const QEMU_EXIT_FAILURE: i32 = 35;

/// The kernel's last line on every run.
pub const FINAL_LINE_PREFIX: &str = "bulkhead: exit ";

/// Firmware for an ISO boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (QEMU's default).
    Bios,
    /// OVMF.
    Uefi,
}

/// How QEMU boots the kernel.
#[derive(Clone, Debug)]
pub enum QemuBoot {
    /// `-kernel` through Multiboot1: the fastest path, for tests.
    Kernel {
        /// The kernel ELF.
        elf: PathBuf,
        /// The kernel command line.
        cmdline: String,
        /// Boot modules, in order.
        modules: Vec<BootModule>,
    },
    /// From the ISO through GRUB and Multiboot2.
    Iso {
        /// The ISO.
        iso: PathBuf,
        /// BIOS or UEFI.
        firmware: Firmware,
    },
}

/// Everything else about a QEMU run.
#[derive(Clone, Debug)]
pub struct QemuOptions {
    /// `-cpu` value.
    pub cpu: String,
    /// When set, QEMU starts halted with its gdbstub on this TCP port.
    pub gdb_port: Option<u16>,
    /// `-icount shift=0`: one emulated instruction per nanosecond of
    /// virtual time, so the guest's TSC counts instructions.
    pub count_instructions: bool,
    /// `-m`: the machine's RAM in MiB.
    pub memory_mib: u32,
    /// When set, the machine's second serial port (COM2) is a TCP server
    /// on this port of 127.0.0.1: the guest debugger's line
    /// (`docs/GUEST-GDB.md`).
    pub com2_port: Option<u16>,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions {
            cpu: DEFAULT_QEMU_CPU.into(),
            gdb_port: None,
            count_instructions: false,
            memory_mib: MEMORY_MIB,
            com2_port: None,
        }
    }
}

/// A per-image file name (`PREFIX-IMAGESTEM.EXTENSION`): runs of one image
/// reuse their files instead of piling up new ones, and runs of different
/// images never share one.
fn per_image_name(prefix: &str, image: &Path, extension: &str) -> String {
    let stem = image.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{prefix}-{stem}.{extension}")
}

/// Builds the QEMU command line: installs QEMU (and OVMF) if missing and
/// prepares a fresh copy of the UEFI variable store, then
/// [`qemu_arguments`].
///
/// # Errors
///
/// Missing tools, or the OVMF variable store could not be copied.
pub fn qemu_command(boot: &QemuBoot, options: &QemuOptions) -> Result<Command, Error> {
    tools::ensure(&[Tool::Qemu])?;
    let mut uefi_variables = None;
    if let QemuBoot::Iso { iso, firmware: Firmware::Uefi } = boot {
        tools::ensure(&[Tool::Ovmf])?;
        let variables = output_directory().join("ovmf").join(per_image_name("vars", iso, "fd"));
        copy_file(Path::new(OVMF_VARS), &variables)?;
        uefi_variables = Some(variables);
    }
    let mut command = Command::new("qemu-system-x86_64");
    command.args(qemu_arguments(boot, options, uefi_variables.as_deref()));
    Ok(command)
}

/// QEMU's arguments, with no side effects. `uefi_variables` is the writable
/// copy of OVMF's variable store, used for UEFI boots.
pub fn qemu_arguments(boot: &QemuBoot, options: &QemuOptions, uefi_variables: Option<&Path>) -> Vec<OsString> {
    let mut arguments: Vec<OsString> = Vec::new();
    let mut add = |words: &[&str]| arguments.extend(words.iter().map(OsString::from));
    add(&["-machine", "q35", "-cpu", &options.cpu, "-m", &options.memory_mib.to_string()]);
    add(&["-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"]);
    add(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if let Some(port) = options.com2_port {
        // Not waiting for a client: the machine boots, gdb attaches later.
        add(&["-serial", &format!("tcp:127.0.0.1:{port},server=on,wait=off")]);
    }
    match boot {
        QemuBoot::Kernel { elf, cmdline, modules } => {
            arguments.extend(["-kernel".into(), elf.into(), "-append".into(), cmdline.into()]);
            if !modules.is_empty() {
                arguments.extend(["-initrd".into(), multiboot1_module_list(modules).into()]);
            }
        }
        QemuBoot::Iso { iso, firmware } => {
            arguments.extend(["-cdrom".into(), iso.into(), "-boot".into(), "d".into()]);
            if *firmware == Firmware::Uefi {
                let variables = uefi_variables.map(|path| path.display().to_string()).unwrap_or_default();
                arguments.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}").into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={variables}").into(),
                ]);
            }
        }
    }
    if options.count_instructions {
        arguments.extend(["-icount".into(), "shift=0".into()]);
    }
    if let Some(port) = options.gdb_port {
        arguments.extend(["-gdb".into(), format!("tcp:127.0.0.1:{port}").into(), "-S".into()]);
    }
    arguments
}

/// QEMU's Multiboot1 module list: `file args` per module, separated by
/// commas; a comma inside an entry is written twice.
fn multiboot1_module_list(modules: &[BootModule]) -> String {
    modules
        .iter()
        .map(|module| {
            let entry = format!("{} {}", module.path.display(), module.cmdline);
            entry.trim_end().replace(',', ",,")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn copy_file(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|error| Error::io(format!("creating {}", parent.display()), error))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|error| Error::io(format!("copying {} to {}", from.display(), to.display()), error))
}

/// The Bochs configuration for booting an ISO headless: serial on standard
/// output, Bochs's own log in a file, the VNC display (the only one this
/// Bochs build offers without a window) with no wait for a viewer.
pub fn bochs_config(iso: &Path, cpu_model: &str, log: &Path, machine: BochsMachine) -> String {
    let BochsMachine { memory_mib, ips } = machine;
    format!(
        "# Written by the bulkhead CLI (src/emulator.rs).\n\
         memory: guest={memory_mib}, host={memory_mib}\n\
         romimage: file={BOCHS_BIOS}, options=fastboot\n\
         vgaromimage: file={BOCHS_VGA_BIOS}\n\
         cpu: model={cpu_model}, count=1, ips={ips}, reset_on_triple_fault=0\n\
         ata0-master: type=cdrom, path=\"{iso}\", status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev=/dev/stdout\n\
         display_library: rfb, options=\"timeout=0\"\n\
         clock: sync=none, time0=local\n\
         speaker: enabled=0\n\
         mouse: enabled=0\n\
         log: {log}\n\
         panic: action=fatal\n\
         error: action=report\n\
         info: action=ignore\n\
         debug: action=ignore\n",
        iso = iso.display(),
        log = log.display(),
    )
}

/// The machine Bochs emulates around its CPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BochsMachine {
    /// Its RAM, in MiB.
    pub memory_mib: u32,
    /// Its clock rate: instructions per emulated second ([`BOCHS_IPS`],
    /// [`LINUX_BOCHS_IPS`]).
    pub ips: u32,
}

impl Default for BochsMachine {
    fn default() -> Self {
        BochsMachine { memory_mib: MEMORY_MIB, ips: BOCHS_IPS }
    }
}

/// Builds the Bochs command for an ISO on the usual machine; returns it
/// with the path of Bochs's own log (the place to read VM-entry check
/// failures).
///
/// # Errors
///
/// Missing tools, or the configuration could not be written.
pub fn bochs_command(iso: &Path, cpu_model: &str) -> Result<(Command, PathBuf), Error> {
    bochs_command_on(iso, cpu_model, BochsMachine::default())
}

/// [`bochs_command`] on `machine`.
///
/// # Errors
///
/// As [`bochs_command`].
pub fn bochs_command_on(iso: &Path, cpu_model: &str, machine: BochsMachine) -> Result<(Command, PathBuf), Error> {
    tools::ensure(&[Tool::Bochs])?;
    let directory = output_directory().join("bochs");
    std::fs::create_dir_all(&directory)
        .map_err(|error| Error::io(format!("creating {}", directory.display()), error))?;
    let log = directory.join(per_image_name("bochs", iso, "log"));
    let config = directory.join(per_image_name("bochsrc", iso, "txt"));
    let commands = directory.join("continue.rc");
    std::fs::write(&config, bochs_config(iso, cpu_model, &log, machine))
        .map_err(|error| Error::io(format!("writing {}", config.display()), error))?;
    // This Bochs has its debugger built in, which reads commands before
    // running: give it the one command "continue".
    std::fs::write(&commands, "c\n").map_err(|error| Error::io(format!("writing {}", commands.display()), error))?;
    let mut command = Command::new("bochs");
    command.arg("-q").arg("-f").arg(&config).arg("-rc").arg(&commands);
    Ok((command, log))
}

/// How to watch a run.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Copy the decoded console to our standard output as it arrives.
    pub echo: bool,
    /// Kill the emulator after this long.
    pub timeout: Option<Duration>,
    /// Printed on standard error once the emulator has started (e.g. how to
    /// attach gdb to it).
    pub announce: Option<String>,
    /// Each piece of decoded console text, sent as it arrives: a caller
    /// that runs the emulator on another thread watches the console while
    /// the machine runs (a closed receiver is ignored).
    pub tap: Option<mpsc::Sender<String>>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The emulator's exit status, `None` if it was killed.
    pub exit_code: Option<i32>,
    /// The decoded console text.
    pub console: String,
    /// The raw serial bytes.
    pub raw: Vec<u8>,
    /// The emulator's standard error.
    pub stderr: String,
    /// The run hit its timeout.
    pub timed_out: bool,
    /// Wall-clock duration (noisy: use instruction counts to compare).
    pub wall_time: Duration,
}

impl RunOutcome {
    /// The kernel's final verdict (`success` or `failure`), if it got there.
    pub fn final_status(&self) -> Option<&str> {
        self.console.lines().rev().find_map(|line| line.trim_end_matches('\r').strip_prefix(FINAL_LINE_PREFIX))
    }
}

/// How long an emulator may linger after the kernel's final line.
const LINGER_AFTER_FINAL_LINE: Duration = Duration::from_secs(5);

/// Runs an emulator command to its end, decoding the console with the
/// kernel ELF's defmt table and symbols.
///
/// # Errors
///
/// [`Error::Emulator`] if it cannot be started.
pub fn run(command: Command, kernel_elf: &Path, watch: &WatchOptions) -> Result<RunOutcome, Error> {
    run_with_decoder(command, kernel_decoder(kernel_elf)?, watch)
}

/// The console decoder for the kernel ELF at `kernel_elf`: its defmt table
/// and, where it has debug info, its symbols.
fn kernel_decoder(kernel_elf: &Path) -> Result<ConsoleDecoder, Error> {
    let elf =
        std::fs::read(kernel_elf).map_err(|error| Error::io(format!("reading {}", kernel_elf.display()), error))?;
    let decoder = ConsoleDecoder::new(Some(&elf)).map_err(|error| Error::Emulator(error.to_string()))?;
    // Without debug info the report keeps its raw addresses; say so once.
    Ok(match Symbolizer::new(&elf) {
        Ok(symbolizer) => decoder.with_symbolizer(symbolizer),
        Err(error) => {
            eprintln!("bulkhead: exception reports will not be symbolised: {error}");
            decoder
        }
    })
}

/// Runs an emulator command whose console is plain text (no Bulkhead
/// kernel: a Linux guest booted directly), like [`run`].
///
/// # Errors
///
/// [`Error::Emulator`] if it cannot be started.
pub fn run_plain(command: Command, watch: &WatchOptions) -> Result<RunOutcome, Error> {
    let decoder = ConsoleDecoder::new(None).map_err(|error| Error::Emulator(error.to_string()))?;
    run_with_decoder(command, decoder, watch)
}

/// [`run`] for a person at a terminal, showing `view` of the console
/// (`console_view`: the guest's console or the hypervisor's log, switched
/// by a key). The keys are read from standard input when it is a terminal
/// (put in non-canonical mode without echo or signals for the run, and
/// restored after it); otherwise the view never switches.
///
/// # Errors
///
/// As [`run`].
pub fn run_interactive(
    command: Command,
    kernel_elf: &Path,
    watch: &WatchOptions,
    view: crate::console_view::ConsoleView,
) -> Result<RunOutcome, Error> {
    let decoder = kernel_decoder(kernel_elf)?;
    let keys = KeyReader::start();
    if keys.is_some() {
        eprintln!("bulkhead: {}", crate::console_view::HELP);
    }
    let outcome = run_watched(command, decoder, watch, Some(view), keys.as_ref().map(|keys| &keys.receiver));
    drop(keys);
    outcome
}

/// Standard input's keys, byte by byte as typed, while the run lasts: the
/// terminal in non-canonical mode without echo or signals (`stty`, on the
/// terminal itself), restored when this is dropped.
struct KeyReader {
    saved: String,
    receiver: mpsc::Receiver<Vec<u8>>,
}

impl KeyReader {
    /// `None` when standard input is no terminal or `stty` fails.
    fn start() -> Option<KeyReader> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let saved = stty(&["-g"])?.trim().to_owned();
        // The workspace's panics abort, so no Drop runs on one: a hook puts
        // the terminal back first.
        restore_terminal_on_panic(&saved);
        stty(&["-icanon", "-echo", "-isig", "min", "1", "time", "0"])?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 64];
            let mut stdin = std::io::stdin();
            while let Ok(count @ 1..) = stdin.read(&mut buffer) {
                if sender.send(buffer[..count].to_vec()).is_err() {
                    break;
                }
            }
        });
        Some(KeyReader { saved, receiver })
    }
}

/// Installs, once, a panic hook that restores the terminal's settings
/// `saved` (`stty -g`'s) before the usual report.
fn restore_terminal_on_panic(saved: &str) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let saved = saved.to_owned();
    INSTALLED.call_once(move || {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = stty(&[saved.as_str()]);
            previous(info);
        }));
    });
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        let _ = stty(&[self.saved.as_str()]);
    }
}

/// Runs `stty ARGUMENTS` on the controlling terminal; its output, `None`
/// if it failed.
fn stty(arguments: &[&str]) -> Option<String> {
    let terminal = std::fs::File::open("/dev/tty").ok()?;
    let output = Command::new("stty").args(arguments).stdin(terminal).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run_with_decoder(command: Command, decoder: ConsoleDecoder, watch: &WatchOptions) -> Result<RunOutcome, Error> {
    run_watched(command, decoder, watch, None, None)
}

fn run_watched(
    mut command: Command,
    decoder: ConsoleDecoder,
    watch: &WatchOptions,
    view: Option<crate::console_view::ConsoleView>,
    keys: Option<&mpsc::Receiver<Vec<u8>>>,
) -> Result<RunOutcome, Error> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::Emulator(format!("cannot start {:?}: {error}", command.get_program())))?;
    if let Some(announcement) = &watch.announce {
        eprintln!("{announcement}");
    }
    let receiver = spawn_reader(&mut child);
    let stderr_reader = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    });

    let mut transcript =
        Transcript { decoder, echo: watch.echo, view, tap: watch.tap.clone(), raw: Vec::new(), console: String::new() };
    let mut final_line_seen: Option<Instant> = None;
    let mut stdout_open = true;
    let mut timed_out = false;
    let exit_code = loop {
        if stdout_open {
            match receiver.recv_timeout(POLL_INTERVAL) {
                Ok(chunk) => transcript.receive(&chunk),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => stdout_open = false,
            }
        } else {
            std::thread::sleep(POLL_INTERVAL);
        }
        let mut quit = false;
        for typed in keys.iter().flat_map(|keys| keys.try_iter()) {
            quit |= transcript.key(&typed);
        }
        if quit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if final_line_seen.is_none() && transcript.console.contains(FINAL_LINE_PREFIX) {
            final_line_seen = Some(Instant::now());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // What the emulator wrote just before exiting may still be in
            // the pipe: take it until the reader reaches the end.
            while let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(200)) {
                transcript.receive(&chunk);
            }
            break status.code();
        }
        // Checked on every pass, so an emulator that never stops printing
        // still ends at its deadline.
        let lingering = final_line_seen.is_some_and(|seen| seen.elapsed() > LINGER_AFTER_FINAL_LINE);
        let expired = watch.timeout.is_some_and(|timeout| started.elapsed() > timeout);
        if lingering || expired {
            timed_out = expired && !lingering;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    transcript.finish();
    let stderr = stderr_reader.and_then(|reader| reader.join().ok()).unwrap_or_default();
    let Transcript { console, raw, .. } = transcript;
    Ok(RunOutcome { exit_code, console, raw, stderr, timed_out, wall_time: started.elapsed() })
}

/// How often the run loop looks at the emulator and the clock.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The console of one run: raw bytes in, decoded text kept and (if asked)
/// shown as it arrives.
struct Transcript {
    decoder: ConsoleDecoder,
    echo: bool,
    /// What the echo shows (all of it without one).
    view: Option<crate::console_view::ConsoleView>,
    /// Where the decoded text also goes as it arrives (`WatchOptions::tap`).
    tap: Option<mpsc::Sender<String>>,
    raw: Vec<u8>,
    console: String,
}

impl Transcript {
    fn receive(&mut self, chunk: &[u8]) {
        self.raw.extend_from_slice(chunk);
        let text = self.decoder.feed(chunk);
        self.show(text);
    }

    fn finish(&mut self) {
        let text = self.decoder.finish();
        self.show(text);
        if let Some(last) = self.view.as_mut().map(crate::console_view::ConsoleView::finish) {
            self.echo(&last);
        }
    }

    fn show(&mut self, text: String) {
        match self.view.as_mut() {
            Some(view) => {
                let shown = view.feed(&text);
                self.echo(&shown);
            }
            None => self.echo(&text),
        }
        if let Some(tap) = &self.tap
            && !text.is_empty()
        {
            let _ = tap.send(text.clone());
        }
        self.console.push_str(&text);
    }

    /// Keys typed during the run: whether they ask to stop it.
    fn key(&mut self, typed: &[u8]) -> bool {
        match self.view.as_mut().map(|view| view.keys(typed)) {
            Some(crate::console_view::KeyAction::Switched(shown)) => {
                self.echo(&shown);
                false
            }
            Some(crate::console_view::KeyAction::Quit) => true,
            Some(crate::console_view::KeyAction::None) | None => false,
        }
    }

    fn echo(&self, text: &str) {
        if self.echo && !text.is_empty() {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    }
}

fn spawn_reader(child: &mut Child) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 4096];
            loop {
                match stdout.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(count) => {
                        if sender.send(buffer[..count].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(arguments: &[OsString]) -> String {
        arguments.iter().map(|argument| argument.to_string_lossy()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn uefi_boot_uses_ovmf_code_read_only_and_a_writable_variable_copy() {
        let boot = QemuBoot::Iso { iso: PathBuf::from("/x/b.iso"), firmware: Firmware::Uefi };
        let joined = join(&qemu_arguments(&boot, &QemuOptions::default(), Some(Path::new("/x/vars.fd"))));
        assert!(joined.contains(&format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")), "{joined}");
        assert!(joined.contains("if=pflash,format=raw,unit=1,file=/x/vars.fd"), "{joined}");
        assert!(joined.contains("-cdrom /x/b.iso -boot d"), "{joined}");
        let bios = QemuBoot::Iso { iso: PathBuf::from("/x/b.iso"), firmware: Firmware::Bios };
        assert!(!join(&qemu_arguments(&bios, &QemuOptions::default(), None)).contains("pflash"));
    }

    #[test]
    fn kernel_boot_command_has_the_exit_device_and_no_firmware() {
        let boot = QemuBoot::Kernel { elf: PathBuf::from("/k.elf"), cmdline: "exit=emulator".into(), modules: vec![] };
        let command = qemu_command(&boot, &QemuOptions::default()).expect("qemu present");
        let arguments: Vec<String> =
            command.get_args().map(|argument| argument.to_string_lossy().into_owned()).collect();
        let joined = arguments.join(" ");
        assert!(joined.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"), "{joined}");
        assert!(joined.contains("-kernel /k.elf -append exit=emulator"), "{joined}");
        assert!(joined.contains(&format!("-cpu {DEFAULT_QEMU_CPU}")), "{joined}");
        assert!(!joined.contains("pflash"), "{joined}");
        assert!(!joined.contains("-S"), "{joined}");
        assert!(!joined.contains("-initrd"), "{joined}");
    }

    #[test]
    fn modules_become_a_multiboot1_initrd_list() {
        let modules = vec![
            BootModule { path: PathBuf::from("/m/one"), cmdline: "first a=1,2".into() },
            BootModule { path: PathBuf::from("/m/two"), cmdline: String::new() },
        ];
        assert_eq!(multiboot1_module_list(&modules), "/m/one first a=1,,2,/m/two");
    }

    #[test]
    fn gdb_and_icount_options_reach_qemu() {
        let boot = QemuBoot::Kernel { elf: PathBuf::from("/k.elf"), cmdline: String::new(), modules: vec![] };
        let options = QemuOptions {
            cpu: "max".into(),
            gdb_port: Some(4321),
            count_instructions: true,
            memory_mib: 432,
            com2_port: Some(4001),
        };
        let joined = join(&qemu_arguments(&boot, &options, None));
        assert!(joined.contains("-serial stdio -no-reboot"), "{joined}");
        assert!(joined.contains("-serial tcp:127.0.0.1:4001,server=on,wait=off"), "COM2: {joined}");
        assert!(joined.contains("-gdb tcp:127.0.0.1:4321 -S"), "{joined}");
        assert!(joined.contains("-icount shift=0"), "{joined}");
        assert!(joined.contains("-cpu max"), "{joined}");
        assert!(joined.contains("-m 432"), "{joined}");
        assert!(join(&qemu_arguments(&boot, &QemuOptions::default(), None)).contains(&format!("-m {MEMORY_MIB} ")));
    }

    #[test]
    fn bochs_config_is_headless_with_serial_on_stdout() {
        let config =
            bochs_config(Path::new("/x/b.iso"), "corei7_skylake_x", Path::new("/x/b.log"), BochsMachine::default());
        assert!(config.contains("cpu: model=corei7_skylake_x,"));
        assert!(config.contains("ata0-master: type=cdrom, path=\"/x/b.iso\""));
        assert!(config.contains("com1: enabled=1, mode=file, dev=/dev/stdout"));
        assert!(config.contains("display_library: rfb, options=\"timeout=0\""));
        assert!(config.contains("log: /x/b.log"));
        assert!(config.contains(&format!("memory: guest={MEMORY_MIB}, host={MEMORY_MIB}\n")));
        assert!(config.contains(&format!("ips={BOCHS_IPS}, ")));
        let linux = BochsMachine { memory_mib: 560, ips: LINUX_BOCHS_IPS };
        let larger = bochs_config(Path::new("/x/b.iso"), "corei7_skylake_x", Path::new("/x/b.log"), linux);
        assert!(larger.contains("memory: guest=560, host=560\n"));
        assert!(larger.contains("ips=100000000, "), "{larger}");
    }

    /// Runs a shell script in place of an emulator (any ELF serves as the
    /// "kernel": without a defmt table the decoder passes text through).
    fn run_script(script: &str, timeout: Duration) -> RunOutcome {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let watch = WatchOptions { echo: false, timeout: Some(timeout), ..WatchOptions::default() };
        run(command, Path::new("/usr/bin/true"), &watch).expect("the script runs")
    }

    #[test]
    fn an_emulator_that_never_stops_printing_still_hits_its_timeout() {
        let started = Instant::now();
        let outcome = run_script("while :; do echo spam; done", Duration::from_secs(1));
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code, None);
        assert!(outcome.console.starts_with("spam\n"));
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    }

    #[test]
    fn an_emulator_lingering_after_the_final_line_is_stopped_without_a_timeout() {
        let outcome = run_script("echo 'bulkhead: exit success'; exec sleep 60", Duration::from_secs(50));
        assert!(!outcome.timed_out);
        assert_eq!(outcome.final_status(), Some("success"));
        assert!(outcome.wall_time < Duration::from_secs(30), "took {:?}", outcome.wall_time);
    }

    #[test]
    fn the_tap_sees_the_console_while_the_emulator_still_runs() {
        let (sender, receiver) = mpsc::channel::<String>();
        let watcher = std::thread::spawn(move || {
            // The first line arrives while the "emulator" waits for a file
            // only the watcher creates.
            let mut seen = String::new();
            while !seen.contains("first\n") {
                seen.push_str(&receiver.recv_timeout(Duration::from_secs(20)).expect("the first line, live"));
            }
            std::fs::write(std::env::temp_dir().join(format!("bulkhead-tap-{}", std::process::id())), b"")
                .expect("write the go-ahead");
            receiver.iter().collect::<String>()
        });
        let go = std::env::temp_dir().join(format!("bulkhead-tap-{}", std::process::id()));
        let script =
            format!("echo first; while [ ! -e '{0}' ]; do sleep 0.05; done; rm '{0}'; echo second", go.display());
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        let watch =
            WatchOptions { timeout: Some(Duration::from_secs(30)), tap: Some(sender), ..WatchOptions::default() };
        let outcome = run(command, Path::new("/usr/bin/true"), &watch).expect("the script runs");
        drop(watch);
        assert!(!outcome.timed_out, "the watcher saw the first line while the script ran");
        assert_eq!(outcome.console, "first\nsecond\n");
        assert_eq!(watcher.join().expect("the watcher"), "second\n");
    }

    #[test]
    fn the_guest_gdb_command_attaches_to_com2_s_port() {
        assert_eq!(
            guest_gdb_command(4001),
            "gdb -q -ex 'set architecture i386:x86-64' -ex 'target remote 127.0.0.1:4001'"
        );
        assert_eq!(guest_gdb_arguments(4001)[4], "target remote 127.0.0.1:4001");
    }

    #[test]
    fn the_exit_status_and_the_last_output_are_kept() {
        let outcome = run_script("printf 'one\\ntwo\\n'; exit 33", Duration::from_secs(30));
        assert_eq!(outcome.exit_code, Some(33));
        assert_eq!(outcome.console, "one\ntwo\n");
        assert_eq!(outcome.raw, b"one\ntwo\n");
    }

    #[test]
    fn final_status_reads_the_last_exit_line() {
        let outcome = RunOutcome {
            exit_code: Some(QEMU_EXIT_SUCCESS),
            console: "Bulkhead\nbulkhead: exit success\r\n".into(),
            raw: Vec::new(),
            stderr: String::new(),
            timed_out: false,
            wall_time: Duration::ZERO,
        };
        assert_eq!(outcome.final_status(), Some("success"));
    }
}
