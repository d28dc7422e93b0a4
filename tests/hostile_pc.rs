//! The hostile PC guest (`docs/PLATFORM.md`, "The hostile PC guest"): the
//! project's `guest-hostile-pc`, packed as a minimal bzImage and booted
//! by vmm-server through the Linux boot path, on the PC board, ACPI
//! tables, COM1 and virtio-mmio disk Linux guests get. It writes random
//! values to the local APIC, I/O APIC and virtio pages and to the board's
//! ports, programs interrupt sources at random and takes their interrupts,
//! then feeds the virtio-blk device malformed virtqueues and checks each
//! answer against docs/DEVICES.md, writes and reads back a sector, and
//! powers off through ACPI S5.
//!
//! - Alone under `svm` in QEMU (`tests/systems/hostile_pc.capdl`): every
//!   check passes, the VMM reports the power off, nothing panics, the
//!   kernel's verdict is success.
//! - Beside a Linux guest (`tests/systems/hostile_pc_linux.capdl`): the
//!   Linux guest boots to userspace, uses its disk and powers off while
//!   the hostile one runs.
//! - Alone under `vtx` in Bochs.

mod common;

use std::time::{Duration, Instant};

use bulkhead::emulator::{self, RunOutcome};
use bulkhead_test_guests::hostile_pc::{
    MARKER_CASE_OK, MARKER_DONE, MARKER_FAIL, MARKER_RANDOM_DONE, MARKER_START, VIRTIO_CASES,
};
use common::*;

/// The Linux guest beside the hostile one has 7 ms of every 10: its boot
/// takes about 3 minutes alone under TCG, with room for a loaded machine.
const LINUX_BESIDE_TIMEOUT: Duration = Duration::from_secs(1200);

/// The lines of `vmm`'s guest console, without the prefixes.
fn guest_lines<'a>(console: &'a str, vmm: &str) -> Vec<&'a str> {
    let prefix = format!("user {vmm}: {vmm}: ");
    console.lines().filter_map(|line| line.trim_end().strip_prefix(prefix.as_str())).collect()
}

/// The number after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// The hostile guest ran every phase and passed every check (its console
/// printed by `console_pd`, the PD that serves its COM1: its VMX, or its
/// VMM without one); its VMM reported the power off and ended with code
/// 0; interrupts reached it.
fn assert_hostile_guest_passed(console: &str, seed: &str, console_pd: &str) {
    let guest = guest_lines(console, console_pd);
    assert!(!guest.iter().any(|line| line.starts_with(MARKER_FAIL)), "a check failed");
    assert!(guest.iter().any(|line| line.starts_with(&format!("{MARKER_START} seed={seed} "))), "the seed");
    assert!(guest.iter().any(|line| line.starts_with(MARKER_RANDOM_DONE)), "the random phase ended");
    let cases = guest.iter().filter(|line| line.starts_with(MARKER_CASE_OK)).count();
    assert_eq!(cases, VIRTIO_CASES as usize, "every virtio case behaved as documented");
    let done = guest.iter().find(|line| line.starts_with(MARKER_DONE)).expect("the guest's last marker");
    assert_eq!(number_after(done, "virtio cases="), Some(u64::from(VIRTIO_CASES)));
    let taken = guest
        .iter()
        .find_map(|line| number_after(line, "interrupt windows took "))
        .expect("the interrupt windows' count");
    assert!(taken > 0, "no interrupt reached the guest: the windows tested nothing");
    assert_lines_in_order(
        console,
        &["user hostile_vmm: vmm: the guest powered off", "user mode: hostile_vmm exited with code 0"],
    );
    assert!(!console.contains("panicked"), "a panic");
    let injected = console
        .lines()
        .filter(|line| line.starts_with("user hostile_vmm: vmm: "))
        .find_map(|line| number_after(line, " deadline exits, "))
        .expect("the VMM's counts");
    assert!(injected > 0, "the VMM injected no interrupt");
}

#[test]
fn the_hostile_pc_guest_is_contained_under_svm() {
    let started = Instant::now();
    let outcome = boot_system("hostile_pc", "", false);
    eprintln!("the hostile guest's run took {:.1} s", started.elapsed().as_secs_f64());
    assert_hostile_guest_passed(&outcome.console, "0x5eed0001", "hostile_vmx");
    // Its devices were the VMX's: the VMM forwarded, the VMX served every
    // request and refused none, and nothing stopped either PD.
    let console = &outcome.console;
    assert!(guest_lines(console, "hostile_vmm").is_empty(), "the VMM printed the guest's console itself");
    assert!(console.contains("device accesses forwarded to the VMX"), "the VMM forwarded to its VMX");
    assert!(console.contains("user hostile_vmx: vmx: ") && console.contains(" device requests served ("));
    assert!(console.contains(", 0 refused,"), "the VMX refused a request the VMM forwarded");
    assert!(!console.contains("device server failed"), "the VMM lost its VMX");
    assert_loader_run_succeeded(&outcome);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
}

#[test]
fn a_linux_guest_runs_on_beside_the_hostile_one() {
    let started = Instant::now();
    let outcome = boot_system_with_timeout("hostile_pc_linux", "", false, LINUX_BESIDE_TIMEOUT);
    eprintln!("the hostile and Linux guests' run took {:.1} s", started.elapsed().as_secs_f64());
    let console = &outcome.console;
    assert_hostile_guest_passed(console, "0x5eed0002", "hostile_vmm");
    let linux = guest_lines(console, "linux_vmm");
    for marker in ["BULKHEAD-GUEST: userspace up", "BULKHEAD-GUEST: disk ok written-by-the-guest"] {
        assert!(linux.contains(&marker), "the Linux guest's marker {marker:?}");
    }
    assert!(!linux.iter().any(|line| line.contains("Kernel panic")), "the Linux guest panicked");
    assert!(console.contains("user linux_vmm: vmm: the guest powered off"), "the Linux guest powered off");
    // They ran at once: the hostile guest's random phase ended after the
    // Linux kernel's first line, and Linux's last line came after the
    // hostile guest started.
    let position = |line: &str| console.lines().position(|candidate| candidate.contains(line)).expect(line);
    let linux_first = position("user linux_vmm: linux_vmm: ");
    let linux_last = console
        .lines()
        .enumerate()
        .filter(|(_, line)| line.starts_with("user linux_vmm: linux_vmm: "))
        .map(|(at, _)| at)
        .last()
        .expect("the Linux guest's lines");
    assert!(linux_first < position(MARKER_RANDOM_DONE), "the random phase ended before Linux started");
    assert!(position(MARKER_START) < linux_last, "the hostile guest started after Linux ended");
    assert_loader_run_succeeded(&outcome);
}

#[test]
fn the_hostile_pc_guest_is_contained_under_vtx_in_bochs() {
    let started = Instant::now();
    // On the machine the system needs: its RAM and the 100 MHz emulated
    // CPU of systems whose guests boot a kernel (at Bochs's usual 4 MHz
    // the random timers' interrupts fill the guest's CPU).
    let outcome: RunOutcome = boot_system_in_bochs("hostile_pc_bochs", FIRMWARE_BOOT_TIMEOUT);
    eprintln!("the hostile guest's Bochs run took {:.1} s", started.elapsed().as_secs_f64());
    assert!(outcome.console.contains("vtx: in VMX operation"), "Bochs's CPU runs the vtx backend");
    assert_hostile_guest_passed(&outcome.console, "0x5eed0003", "hostile_vmm");
    assert_loader_run_succeeded(&outcome);
}
