//! Debugging a running Linux guest with gdb (`docs/GUEST-GDB.md`), the
//! way `cargo run -- --guest-gdb` lets a user: the `linux_gdb` system
//! (`tests/systems/linux_gdb.capdl`) boots in QEMU with COM2, the guest's
//! debug port, on a TCP port of 127.0.0.1. The guest's init
//! (`guest-images/init`, `bulkhead.gdb=1`) prints the addresses of a few
//! kernel symbols from its /proc/kallsyms and waits, running `sleep 1`,
//! for at most a minute. This test reads those lines off the console
//! while QEMU runs, then drives gdb in batch mode: it attaches (the guest
//! stops where it is) and reads the registers, reads the kernel's banner
//! through the guest's page tables, breaks in `hrtimer_nanosleep` (which
//! every `sleep` enters) and checks that the guest stopped there, steps
//! one instruction, deletes the breakpoint, writes the host name that
//! ends the guest's wait and detaches. The guest then goes on to its disk
//! test and powers off, and the kernel's verdict is success.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bulkhead::emulator::{self, QemuBoot, QemuOptions, WatchOptions};
use bulkhead::guest_images::markers;
use bulkhead::image::BootModule;
use bulkhead::tools::{self, Tool};
use common::*;

/// A port unlikely to clash with a user's `--guest-gdb` (1235).
const PORT: u16 = 31_235;
/// The whole run: the test takes about 25 s here (docs/GUEST-GDB.md);
/// room for a loaded machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// How long gdb may take for its session (the guest waits 60 s at most).
const GDB_TIMEOUT_SECONDS: &str = "55";
/// The offset of `nodename` (the host name) in `init_uts_ns`: the
/// namespace starts with its `struct new_utsname`, whose first field,
/// `sysname`, is 65 bytes (Linux 6.1's include/linux/utsname.h). The test
/// reads the name there before it writes, so a different layout fails
/// loudly rather than writing elsewhere.
const NODENAME_OFFSET: u64 = 65;
/// Kernel addresses: the top 2 GiB (text, modules) and the kernel's half.
const KERNEL_TEXT: u64 = 0xffff_ffff_8000_0000;
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// The number gdb printed (`$N = 0x...`) on the line after `marker`.
fn printed_after(output: &str, marker: &str) -> Option<u64> {
    let line = output.lines().skip_while(|line| line.trim() != marker).nth(1)?;
    let value = line.split(" = ").nth(1)?.trim();
    u64::from_str_radix(value.trim_start_matches("0x"), 16).ok()
}

/// The first eight bytes of `text`, as gdb prints them as a little-endian
/// 64-bit word.
fn word(text: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&text[..8]);
    u64::from_le_bytes(bytes)
}

#[test]
fn gdb_attaches_to_a_linux_guest_reads_it_stops_at_a_breakpoint_and_steps() {
    tools::ensure(&[Tool::Gdb, Tool::Qemu]).unwrap_or_else(|error| panic!("{error}"));
    let started = Instant::now();
    let loader = bulkhead::user_build::build_system("linux_gdb").unwrap_or_else(|error| panic!("{error}"));
    let kernel = standard_kernel();
    let boot = QemuBoot::Kernel {
        elf: kernel.elf.clone(),
        cmdline: "exit=emulator".into(),
        modules: vec![BootModule { path: loader, cmdline: "root-task".into() }],
    };
    let memory_mib = bulkhead::user_build::system_memory_mib("linux_gdb").unwrap_or_else(|error| panic!("{error}"));
    let options = QemuOptions { memory_mib, com2_port: Some(PORT), ..QemuOptions::default() };
    let command = emulator::qemu_command(&boot, &options).unwrap_or_else(|error| panic!("{error}"));
    let (tap, console) = mpsc::channel();
    let elf = kernel.elf.clone();
    let emulator = std::thread::spawn(move || {
        let watch = WatchOptions { timeout: Some(RUN_TIMEOUT), tap: Some(tap), ..WatchOptions::default() };
        emulator::run(command, &elf, &watch).unwrap_or_else(|error| panic!("{error}"))
    });

    // The guest's symbols, read while QEMU runs.
    let mut seen = String::new();
    while !seen.contains(markers::GDB_MAY_ATTACH) {
        match console.recv_timeout(RUN_TIMEOUT) {
            Ok(text) => seen.push_str(&text),
            Err(_) => {
                let outcome = emulator.join().expect("the emulator's thread");
                print_outcome(&outcome);
                panic!("the guest never said {:?}", markers::GDB_MAY_ATTACH);
            }
        }
    }
    let booted = started.elapsed();
    let symbols: BTreeMap<&str, u64> = seen
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(markers::SYMBOL)? + markers::SYMBOL.len()..];
            let (name, address) = rest.trim().split_once(' ')?;
            Some((name, u64::from_str_radix(address, 16).ok()?))
        })
        .collect();
    println!("the guest's symbols after {:.1} s: {symbols:x?}", booted.as_secs_f64());
    let symbol = |name: &str| *symbols.get(name).unwrap_or_else(|| panic!("the guest printed {name}'s address"));
    let (banner, nanosleep, uts) = (symbol("linux_banner"), symbol("hrtimer_nanosleep"), symbol("init_uts_ns"));
    let nodename = uts + NODENAME_OFFSET;
    // "bulkhead-gdb-wait": "wait" is at 13, "gdb-" at 9.
    let done = u32::from_le_bytes(*b"done");
    assert!(markers::GDB_WAIT_HOSTNAME.ends_with("-wait") && markers::GDB_DONE_HOSTNAME.ends_with("-done"));

    let gdb_started = Instant::now();
    let commands = [
        "echo PC:\\n".to_owned(),
        "p/x $pc".into(),
        "echo CS:\\n".into(),
        "p/x $cs".into(),
        "echo BANNER:\\n".into(),
        format!("p/x *(unsigned long long *){banner:#x}"),
        "echo NODENAME:\\n".into(),
        format!("p/x *(unsigned long long *){nodename:#x}"),
        format!("break *{nanosleep:#x}"),
        "continue".into(),
        "echo HIT:\\n".into(),
        "p/x $pc".into(),
        "echo HIT_RSP:\\n".into(),
        "p/x $rsp".into(),
        "stepi".into(),
        "echo STEPPED:\\n".into(),
        "p/x $pc".into(),
        "delete".into(),
        // Ends the guest's wait: "bulkhead-gdb-wait" becomes "-done".
        format!("set var *(unsigned int *){:#x} = {done:#x}", nodename + 13),
        "echo RELEASED:\\n".into(),
        format!("p/x *(unsigned long long *){:#x}", nodename + 9),
        "detach".into(),
    ];
    let mut gdb = Command::new("timeout");
    gdb.args([GDB_TIMEOUT_SECONDS, "gdb", "-nx", "-batch"]).args(emulator::guest_gdb_arguments(PORT));
    for command in &commands {
        gdb.args(["-ex", command]);
    }
    let gdb = gdb.output().expect("run gdb");
    let gdb_time = gdb_started.elapsed();
    let gdb_output = format!("{}{}", String::from_utf8_lossy(&gdb.stdout), String::from_utf8_lossy(&gdb.stderr));
    println!("--- gdb ({:.1} s) ---\n{gdb_output}", gdb_time.as_secs_f64());

    let outcome = emulator.join().expect("the emulator's thread");
    println!("the whole run took {:.1} s", started.elapsed().as_secs_f64());
    // Shown by cargo when an assertion below fails.
    print_outcome(&outcome);

    // Registers at the attach: the guest stopped wherever it was, in its
    // kernel (idle, most likely) or in a user process; CS's privilege
    // level agrees with RIP's half.
    let pc = printed_after(&gdb_output, "PC:").expect("gdb read RIP");
    let cs = printed_after(&gdb_output, "CS:").expect("gdb read CS");
    if cs & 3 == 0 {
        assert!(pc >= KERNEL_TEXT, "ring 0 at {pc:#x}, CS {cs:#x}: not the kernel's text");
    } else {
        assert!(cs & 3 == 3 && pc < 0x8000_0000_0000, "ring 3 at {pc:#x}, CS {cs:#x}: not a user address");
    }
    // Memory by guest-virtual address, through the guest's page tables.
    assert_eq!(printed_after(&gdb_output, "BANNER:"), Some(word(b"Linux version")), "linux_banner's first word");
    assert_eq!(printed_after(&gdb_output, "NODENAME:"), Some(word(markers::GDB_WAIT_HOSTNAME.as_bytes())));
    // The breakpoint hit, in the kernel, on a kernel stack.
    assert!(gdb_output.contains(&format!("Breakpoint 1 at {nanosleep:#x}")), "the breakpoint was set");
    assert_eq!(printed_after(&gdb_output, "HIT:"), Some(nanosleep), "stopped at hrtimer_nanosleep");
    let rsp = printed_after(&gdb_output, "HIT_RSP:").expect("gdb read RSP");
    assert!(rsp >= KERNEL_HALF, "RSP {rsp:#x} in the kernel's half");
    // One step: the function's first instruction (ftrace's 5-byte NOP in
    // Debian's kernel), no further than an instruction's length.
    let stepped = printed_after(&gdb_output, "STEPPED:").expect("gdb read RIP after stepi");
    assert!(stepped > nanosleep && stepped <= nanosleep + 15, "one instruction on: {stepped:#x}");
    // The write reached the guest: it read the new host name and went on.
    assert_eq!(printed_after(&gdb_output, "RELEASED:"), Some(word(b"gdb-done")));
    assert!(gdb.status.success(), "gdb ended well (not by its timeout): {:?}", gdb.status);

    let console = &outcome.console;
    for line in
        ["vmm: gdb stub on the serial port at 0x2f8", "vmm: gdb attached", "vmm: gdb detached: the guest runs on"]
    {
        assert!(console.contains(line), "the VMM said {line:?}");
    }
    for marker in [markers::GDB_RELEASED, "BULKHEAD-GUEST: disk ok written-by-the-guest"] {
        assert!(console.contains(marker), "the guest's marker {marker:?} after the debugger");
    }
    assert!(!console.contains(markers::GDB_WAIT_OVER), "the guest waited in vain");
    assert!(!console.contains("Kernel panic"), "the guest panicked");
    assert_lines_in_order(console, &["user linux_vmm: vmm: the guest powered off"]);
    assert_loader_run_succeeded(&outcome);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    println!(
        "boot to the symbols {:.1} s, gdb session {:.1} s, whole test {:.1} s",
        booted.as_secs_f64(),
        gdb_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
