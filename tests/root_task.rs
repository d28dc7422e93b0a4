//! The root task on the real kernel: the standard kernel loads the Rust
//! root-task image (components/root-task) from a boot module, builds its
//! VSpace and runs it; the root task checks the kernel's ABI step by step
//! through the ring-3 runtime (retype, mint, signal, its own page tables,
//! a frame mapped, written and unmapped, a heap, an ASID pool, a child
//! thread in a VSpace it builds, a call and a reply, then a revoke of 1000
//! capabilities on a budget too small for it, which the kernel preempts and
//! finishes later) and exits with 0,
//! which is the machine's verdict. Under QEMU (-kernel, and the BIOS ISO
//! through GRUB) and Bochs (Intel, through GRUB).

mod common;

use std::sync::OnceLock;

use bulkhead::emulator::{self, QemuBoot, QemuOptions, RunOutcome, WatchOptions};
use bulkhead::image::{self, BootModule, DefaultEntry, IsoSpec};
use bulkhead::{kernel_build, user_build};
use common::*;

/// Every step the root task reports, in order (`components/root-task`).
const STEPS: [&str; 53] = [
    "retype endpoint",
    "retype notification",
    "mint badged notification",
    "signal badged copy",
    "poll original",
    "map page tables",
    "retype frame",
    "frame address",
    "map frame",
    "write and read back",
    "unmap frame",
    "heap",
    "make asid pool",
    "retype pml4",
    "assign asid",
    "retype reply, tcb and sched context",
    "map child stack and ipc buffer",
    "mint child endpoints",
    "set space",
    "set ipc buffer",
    "set fault handler",
    "write registers",
    "set priority",
    "configure sched context",
    "bind sched context",
    "resume child",
    "child call",
    "reply",
    "suspend and resume the waiting child",
    "take the child's ipc buffer and wake it",
    "retype after revoke reuses the memory",
    "retype a 1024-slot cnode",
    "copy the endpoint 1000 times",
    "put the root on a budget",
    "revoke every copy",
    "the copies are gone",
    "retype and assign a guest space",
    "map guest memory",
    "retype a vcpu",
    "bind the vcpu to the root",
    "write guest state",
    "vmenter refuses a non-canonical rip",
    "run the guest to hlt",
    "start a signaller",
    "a spinning guest ends with the vmm's budget",
    "vmenter refuses undefined controls and a 19-word message",
    "a spinning guest ends at its deadline",
    "a halted vcpu sleeps until its deadline",
    "a signal ends a halted vcpu's sleep",
    "an interrupt window opens after the sti shadow",
    "an int3 and a single step exit with #bp and #db when intercepted",
    "run a cpuid loop",
    "a 64-bit guest's syscall, swapgs and cr2 use the vcpu's fields",
];

fn root_task_module() -> BootModule {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| user_build::build_root_task().unwrap_or_else(|error| panic!("{error}")));
    BootModule { path: path.clone(), cmdline: "root-task".into() }
}

fn assert_root_task_passed(outcome: &RunOutcome) {
    let console = &outcome.console;
    assert!(!outcome.timed_out, "the kernel hung");
    assert!(!console.contains("!!! kernel"), "the root task caused a kernel exception or panic");
    // Four RAM untypeds, then the device untypeds (how many depends on the
    // machine's memory map), which take the slots from 32 on.
    let (untypeds, first_free) = console
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("user root: root: started, ")?;
            let (untypeds, slot) = rest.split_once(" untypeds, first free slot ")?;
            Some((untypeds.parse::<u64>().ok()?, slot.trim().parse::<u64>().ok()?))
        })
        .expect("the root task reports its untypeds and first free slot");
    assert!(untypeds > 4, "no device untypeds: {untypeds}");
    assert_eq!(first_free, 32 + (untypeds - 4), "the device untypeds should fill the slots from 32 on");
    let mut expected = vec![format!("user root: root: started, {untypeds} untypeds, first free slot {first_free}")];
    expected.extend(STEPS[..28].iter().map(|step| format!("user root: root: {step} ok")));
    expected.push("user root: root: child replied".to_owned());
    expected.extend(STEPS[28..42].iter().map(|step| format!("user root: root: {step} ok")));
    // The root as a VMM: its guest's exits, handled one by one.
    expected.push("user root: root: guest ran to hlt: io, cpuid, wrmsr, second-level fault, hlt".to_owned());
    expected.push("user root: root: run the guest to hlt ok".to_owned());
    expected.push("user root: root: start a signaller ok".to_owned());
    expected.push("user root: root: the spinning guest stopped when the root's budget ran out".to_owned());
    expected.extend(STEPS[44..].iter().map(|step| format!("user root: root: {step} ok")));
    expected.push("root task: exited with code 0".to_owned());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines_in_order(console, &expected);
    assert!(!console.contains("failed"), "a step failed");
    assert!(console.contains("boot complete: the root task finished"));
    // The child, suspended in its Wait and resumed, made the Wait again (had
    // it returned, it would have exited); it lost its IPC buffer and was
    // stopped when the signal woke it; the run went on.
    assert!(!console.contains("pd exited"), "the resumed child returned from a Wait it never finished");
    assert!(
        console.lines().any(|line| line.contains("has no user context (or lost its VSpace or IPC buffer): stopped")),
        "the child without an IPC buffer was not stopped"
    );
    // The revoke of 1000 copies on a 20,000-tick budget ran past it: the
    // kernel stopped it at a preemption point at least once.
    let preempted = console
        .lines()
        .find_map(|line| {
            line.strip_prefix("root task: ")?
                .strip_suffix(" system calls stopped at a preemption point and continued later")
        })
        .and_then(|count| count.parse::<u64>().ok())
        .expect("the kernel reports its preempted system calls");
    assert!(preempted >= 1, "the long revoke was never preempted");
    // The spinning guest ran until the root's budget was gone: a timer
    // interrupt ended its run at least once, and the VMEnter went on.
    let interrupted = console
        .lines()
        .find_map(|line| {
            line.strip_prefix("root task: ")?.strip_suffix(" guest runs ended by a host interrupt and entered again")
        })
        .and_then(|count| count.parse::<u64>().ok())
        .expect("the kernel reports its interrupted guest runs");
    assert!(interrupted >= 1, "no host interrupt ever ended a guest run");
    // VMEnter's deadlines (a spinning guest, a halted vCPU): each step
    // says how late the call came back (the step checks the bound).
    for late in ["user root: root: the spinning guest came back ", "user root: root: the halted vcpu woke "] {
        assert!(
            console.lines().any(|line| line.starts_with(late) && line.ends_with(" TSC ticks after its deadline")),
            "{late:?} missing"
        );
    }
    assert_eq!(outcome.final_status(), Some("success"));
}

#[test]
fn the_root_task_runs_its_abi_self_test_on_the_kernel() {
    let kernel = standard_kernel();
    let boot = QemuBoot::Kernel {
        elf: kernel.elf.clone(),
        cmdline: "exit=emulator".into(),
        modules: vec![root_task_module()],
    };
    let outcome = run_qemu(kernel, boot, QemuOptions::default(), KERNEL_BOOT_TIMEOUT);
    assert_root_task_passed(&outcome);
    assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    assert!(outcome.console.contains("root task: ") && outcome.console.contains("in 3 segments at 0x400000"));
}

/// The ISO with the root task, built once per test binary run (the GRUB
/// and Bochs tests share it and may run at the same time).
fn root_task_iso() -> std::path::PathBuf {
    static ISO: OnceLock<std::path::PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let kernel = standard_kernel();
        let iso = kernel_build::output_directory().join(format!("test-{}-root-task.iso", test_binary_name()));
        let modules = [root_task_module()];
        let spec = IsoSpec { kernel, default_entry: DefaultEntry::Emulator, extra_cmdline: "", modules: &modules };
        image::build_iso(&spec, &iso).unwrap_or_else(|error| panic!("{error}"));
        iso
    })
    .clone()
}

#[test]
fn the_root_task_runs_from_the_iso_through_grub() {
    let kernel = standard_kernel();
    let iso = root_task_iso();
    let boot = QemuBoot::Iso { iso, firmware: emulator::Firmware::Bios };
    let outcome = run_qemu(kernel, boot, QemuOptions::default(), FIRMWARE_BOOT_TIMEOUT);
    assert!(outcome.console.contains("via multiboot2"));
    assert_root_task_passed(&outcome);
}

#[test]
fn the_root_task_runs_in_bochs_on_intel() {
    let kernel = standard_kernel();
    let iso = root_task_iso();
    let (command, log) =
        emulator::bochs_command(&iso, emulator::DEFAULT_BOCHS_CPU).unwrap_or_else(|error| panic!("{error}"));
    let watch = WatchOptions { echo: false, timeout: Some(FIRMWARE_BOOT_TIMEOUT), ..WatchOptions::default() };
    let outcome = emulator::run(command, &kernel.elf, &watch).unwrap_or_else(|error| panic!("{error}"));
    print_outcome(&outcome);
    println!("Bochs log: {}", log.display());
    assert!(outcome.console.contains("GenuineIntel"));
    assert_root_task_passed(&outcome);
}

/// A module that is not a valid root-task image is refused with the
/// reason, and the machine stops with a failure: nothing of it runs.
#[test]
fn a_bad_root_task_image_is_refused() {
    let kernel = standard_kernel();
    let directory = kernel_build::output_directory().join("test-modules");
    std::fs::create_dir_all(&directory).expect("module directory");
    let path = directory.join("not-an-elf.bin");
    std::fs::write(&path, [0x42_u8; 256]).expect("module file");
    let module = BootModule { path, cmdline: "root-task".into() };
    let boot = QemuBoot::Kernel { elf: kernel.elf.clone(), cmdline: "exit=emulator".into(), modules: vec![module] };
    let outcome = run_qemu(kernel, boot, QemuOptions::default(), KERNEL_BOOT_TIMEOUT);
    assert!(outcome.console.contains("root task: cannot start: the image is refused: not an ELF file"));
    assert!(!outcome.console.contains("user root"));
    assert_eq!(outcome.final_status(), Some("failure"));
}
