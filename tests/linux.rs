//! An unmodified Linux guest (`docs/PLATFORM.md`, `docs/GUEST-IMAGES.md`):
//! Debian's cloud kernel with the busybox initramfs, booted by vmm-server
//! on the emulated PC under QEMU's SVM (`tests/systems/linux.capdl`). The
//! guest's init prints its markers, writes and reads back a file on its
//! virtio disk, and powers off through ACPI; the VMM reports the power
//! off and the kernel's verdict is success.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// How long a boot may take: about 3 minutes here under TCG, with room
/// for a loaded machine.
const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// The lines of the guest's console, without the VMM's prefix.
fn guest_lines<'a>(console: &'a str, vmm: &str) -> Vec<&'a str> {
    let prefix = format!("user {vmm}: {vmm}: ");
    console.lines().filter_map(|line| line.trim_end().strip_prefix(prefix.as_str())).collect()
}

#[test]
fn debian_s_kernel_boots_to_userspace_uses_its_disk_and_powers_off() {
    let started = Instant::now();
    let outcome = boot_system_with_timeout("linux", "", false, LINUX_BOOT_TIMEOUT);
    let console = &outcome.console;
    eprintln!("the Linux guest's run took {:.1} s", started.elapsed().as_secs_f64());
    if outcome.timed_out || outcome.final_status() != Some("success") {
        print_outcome(&outcome);
    }
    let guest = guest_lines(console, "linux_vmm");
    assert!(guest.iter().any(|line| line.contains("Linux version 6.1.0")), "the kernel's banner");
    assert!(guest.iter().any(|line| line.contains("serial8250: ttyS0 at I/O 0x3f8 (irq = 4")), "COM1 probed");
    for marker in ["BULKHEAD-GUEST: userspace up", "BULKHEAD-GUEST: disk ok written-by-the-guest"] {
        assert!(guest.contains(&marker), "the guest's marker {marker:?}");
    }
    assert!(!guest.iter().any(|line| line.contains("Kernel panic")), "the guest panicked");
    assert_lines_in_order(console, &["user linux_vmm: vmm: the guest powered off"]);
    assert_loader_run_succeeded(&outcome);
}
