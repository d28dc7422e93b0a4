//! An unmodified Linux guest (`docs/PLATFORM.md`, `docs/GUEST-IMAGES.md`):
//! Debian's cloud kernel with the busybox initramfs, booted by vmm-server
//! on the emulated PC under QEMU's SVM (`tests/systems/linux.capdl`), its
//! devices (COM1, the virtio disk, console and network device) served by
//! its VMX, a PD of their own
//! (`docs/DEVICES.md`, "The VMM-VMX protocol"). The guest's init prints
//! its markers, writes and reads back a file on its virtio disk, and
//! powers off through ACPI; the VMM reports the power off and the kernel's
//! verdict is success. Two guests side by side
//! (`tests/systems/linux_pair.capdl`) each write their own text to their
//! own disk.

mod common;

use std::time::{Duration, Instant};

use bulkhead::emulator::RunOutcome;
use common::*;

/// How long a boot may take: about 3 minutes here under TCG, with room
/// for a loaded machine.
const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// The lines of the guest's console, without the prefix of the PD that
/// serves COM1 (its VMX) and prints them.
fn guest_lines<'a>(console: &'a str, server: &str) -> Vec<&'a str> {
    let prefix = format!("user {server}: {server}: ");
    console.lines().filter_map(|line| line.trim_end().strip_prefix(prefix.as_str())).collect()
}

/// The guest's devices were the VMX's: its console lines came from the
/// VMX and none from the VMM, the VMM forwarded the accesses and the VMX
/// served them, and it served the disk's requests and reported its
/// console and network device.
fn assert_served_by_the_vmx(console: &str, vmm: &str, vmx: &str) {
    assert!(guest_lines(console, vmm).is_empty(), "{vmm} printed guest console lines itself");
    let booting = format!("user {vmm}: vmm: booting Linux");
    let booting = console.lines().find(|line| line.starts_with(&booting)).expect("the VMM's boot line");
    // COM1, the disk, the virtio console and the network device.
    assert!(booting.trim_end().ends_with("4 device(s) served by the VMX"), "{booting}");
    // The number that starts the PD's line with `words` after it.
    let count = |pd: &str, who: &str, words: &str| -> u64 {
        let prefix = format!("user {pd}: {who}: ");
        let rest = console
            .lines()
            .filter_map(|line| line.trim_end().strip_prefix(prefix.as_str()))
            .find(|rest| rest.split_once(' ').is_some_and(|(_, after)| after.starts_with(words)));
        let rest = rest.unwrap_or_else(|| panic!("no line {prefix}N {words}"));
        rest.split_whitespace().next().and_then(|count| count.parse().ok()).expect("a count")
    };
    let forwarded = count(vmm, "vmm", "device accesses forwarded to the VMX");
    let served = count(vmx, "vmx", "device requests served");
    // Every forwarded access and the VMM's description and stop.
    assert_eq!(served, forwarded + 2, "{vmx} served what {vmm} forwarded");
    assert!(console.contains(&format!("user {vmx}: vmx: disk 0: ")), "{vmx} reported its disk");
    assert!(console.contains(&format!("user {vmx}: vmx: virtio console: ")), "{vmx} reported its console");
    assert!(console.contains(&format!("user {vmx}: vmx: network: ")), "{vmx} reported its network device");
    assert!(!console.contains(&format!("user {vmx}: vmx: refused")), "{vmx} refused a request");
}

#[test]
fn debian_s_kernel_boots_to_userspace_uses_its_disk_and_powers_off() {
    let started = Instant::now();
    let outcome = boot_system_with_timeout("linux", "", false, LINUX_BOOT_TIMEOUT);
    eprintln!("the Linux guest's run took {:.1} s", started.elapsed().as_secs_f64());
    assert_linux_guest_ran(&outcome);
    // What the guest costs the host beyond its RAM: everything the loader
    // took for this system (its only PDs are the guest's VMM and VMX) but
    // the guest's 128 MiB and its 8 MiB disk. The target is 2 MiB.
    let system_kib = loader_ram_kib(&outcome.console).expect("the loader reports the RAM it took");
    let guest_kib = (128 + 8) * 1024;
    let overhead_kib = system_kib.checked_sub(guest_kib).expect("the system holds the guest's RAM and disk");
    eprintln!("one Linux guest costs {overhead_kib} KiB of host RAM beyond its RAM and disk");
    assert!(overhead_kib < 2048, "{overhead_kib} KiB: over the 2 MiB target");
    // The VMM's device Calls and the VMX's replies take the kernel's IPC
    // fast path (docs/PERFORMANCE.md): each forwarded access is a Call and
    // a ReplyRecv, so with the fast path they are about two per access;
    // more than one and a half per access means most Calls took it too.
    let fast = outcome.console.lines().find_map(|line| {
        let (_, rest) = line.strip_prefix("root task: ")?.split_once(" system calls, ")?;
        rest.strip_suffix(" of them Calls and ReplyRecvs on the IPC fast path")?.parse::<u64>().ok()
    });
    let forwarded = outcome.console.lines().find_map(|line| {
        line.strip_prefix("user linux_vmm: vmm: ")?
            .split_once(" device accesses forwarded")
            .and_then(|(count, _)| count.parse::<u64>().ok())
    });
    let (Some(fast), Some(forwarded)) = (fast, forwarded) else { panic!("the kernel's and the VMM's counts") };
    eprintln!("{forwarded} device accesses forwarded, {fast} Calls and ReplyRecvs on the IPC fast path");
    assert!(2 * fast >= 3 * forwarded, "the device Calls missed the IPC fast path: {fast} fast for {forwarded} Calls");
}

/// The loader's `RAM for the system: N KiB` figure.
fn loader_ram_kib(console: &str) -> Option<u64> {
    let (_, rest) = console.split_once("loader: RAM for the system: ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The same system under `vtx`, in Bochs on an Intel CPU with VT-x and
/// EPT, on a 100 MHz emulated clock (`emulator::LINUX_BOCHS_IPS`); about
/// a minute here once built.
#[test]
fn debian_s_kernel_boots_under_vtx_in_bochs() {
    let started = Instant::now();
    let outcome = boot_system_in_bochs("linux", LINUX_BOOT_TIMEOUT);
    eprintln!("the Linux guest's run in Bochs took {:.1} s", started.elapsed().as_secs_f64());
    assert!(outcome.console.contains("virtualisation extensions: vtx (Intel VT-x)"), "the vtx backend ran the guest");
    assert_linux_guest_ran(&outcome);
}

/// The Linux guest of `tests/systems/linux.capdl` booted, reached
/// userspace, used its disk and powered off, and the kernel's verdict is
/// success.
fn assert_linux_guest_ran(outcome: &RunOutcome) {
    let console = &outcome.console;
    if outcome.timed_out || outcome.final_status() != Some("success") {
        print_outcome(outcome);
    }
    let guest = guest_lines(console, "linux_vmx");
    assert!(guest.iter().any(|line| line.contains("Linux version 6.1.0")), "the kernel's banner");
    assert!(guest.iter().any(|line| line.contains("serial8250: ttyS0 at I/O 0x3f8 (irq = 4")), "COM1 probed");
    for marker in ["BULKHEAD-GUEST: userspace up", "BULKHEAD-GUEST: disk ok written-by-the-guest"] {
        assert!(guest.contains(&marker), "the guest's marker {marker:?}");
    }
    assert_console_and_network_worked(&guest, "linux_vmx");
    assert!(!guest.iter().any(|line| line.contains("Kernel panic")), "the guest panicked");
    assert_lines_in_order(console, &["user linux_vmm: vmm: the guest powered off"]);
    assert_served_by_the_vmx(console, "linux_vmm", "linux_vmx");
    assert_loader_run_succeeded(outcome);
}

/// The guest's virtio console and network device, both served by `vmx`,
/// worked: its marker came through the console alone (written to
/// `/dev/hvc0`, so it shows only with the `hvc0: ` prefix), and as many
/// frames came back to `eth0` as it sent, at least one (the port is a
/// loopback; the guest's own driver counts both).
fn assert_console_and_network_worked(guest: &[&str], vmx: &str) {
    assert!(guest.contains(&"hvc0: BULKHEAD-GUEST: virtio console ok"), "{vmx}'s guest wrote to its virtio console");
    assert!(!guest.contains(&"BULKHEAD-GUEST: virtio console ok"), "the console's marker came through COM1");
    let net = guest.iter().find_map(|line| line.strip_prefix("BULKHEAD-GUEST: net ok tx "));
    let counts = net.and_then(|rest| rest.split_once(" rx ")).map(|(tx, rx)| (tx.parse::<u64>(), rx.parse::<u64>()));
    let Some((Ok(sent), Ok(received))) = counts else {
        panic!("{vmx}'s guest reported no working network: {:?}", guest.iter().find(|line| line.contains("net")))
    };
    assert!(sent >= 1 && received == sent, "{vmx}'s loopback: {sent} frames sent, {received} received");
}

#[test]
fn two_linux_guests_run_side_by_side_each_on_its_own_disk() {
    let started = Instant::now();
    let outcome = boot_system_with_timeout("linux_pair", "", false, 2 * LINUX_BOOT_TIMEOUT);
    eprintln!("the two Linux guests' run took {:.1} s", started.elapsed().as_secs_f64());
    if outcome.timed_out || outcome.final_status() != Some("success") {
        print_outcome(&outcome);
    }
    let console = &outcome.console;
    for (vmm, vmx, text) in
        [("linux_a_vmm", "linux_a_vmx", "written-by-a"), ("linux_b_vmm", "linux_b_vmx", "written-by-b")]
    {
        let guest = guest_lines(console, vmx);
        assert!(guest.contains(&"BULKHEAD-GUEST: userspace up"), "{vmx}'s guest reached userspace");
        let disk_ok = format!("BULKHEAD-GUEST: disk ok {text}");
        assert!(guest.contains(&disk_ok.as_str()), "{vmx}'s guest used its own disk: {disk_ok:?}");
        assert!(!guest.iter().any(|line| line.contains("Kernel panic")), "{vmx}'s guest panicked");
        assert_console_and_network_worked(&guest, vmx);
        assert!(console.contains(&format!("user {vmm}: vmm: the guest powered off")), "{vmm} reported the power off");
        assert_served_by_the_vmx(console, vmm, vmx);
    }
    // They ran at once: each one's first kernel line comes before the
    // other's last.
    let position = |vmx: &str, last: bool| {
        let prefix = format!("user {vmx}: {vmx}: ");
        let mut found = console.lines().enumerate().filter(|(_, line)| line.starts_with(&prefix)).map(|(at, _)| at);
        if last { found.last() } else { found.next() }.expect("the guest's lines")
    };
    assert!(position("linux_a_vmx", false) < position("linux_b_vmx", true));
    assert!(position("linux_b_vmx", false) < position("linux_a_vmx", true));
    assert_loader_run_succeeded(&outcome);
}
