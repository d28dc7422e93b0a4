//! Systems built from manifests, booted through the loader: the build
//! script compiled each manifest (the test systems are in `tests/systems/`,
//! beside this file; the default system is `systems/default.capdl`), the
//! CLI's library builds its programs and the loader around them, and the
//! standard kernel runs the loader as its root task. The loader creates
//! every object, capability and mapping of the spec, starts the PDs and
//! exits; the PDs then run on their own and the run ends when none can
//! run any more, with the kernel's verdict.

mod common;

use std::time::Duration;

use bulkhead::emulator::{self, RunOutcome};
use bulkhead::image::BootModule;
use bulkhead::user_build;
use common::*;

/// Where a system ran: QEMU reports the kernel's verdict as its exit code,
/// Bochs only stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emulator {
    Qemu,
    Bochs,
}

fn assert_system_succeeded(outcome: &RunOutcome, machine: Emulator) {
    assert_loader_run_succeeded(outcome);
    if machine == Emulator::Qemu {
        assert_eq!(outcome.exit_code, Some(emulator::QEMU_EXIT_SUCCESS));
    }
}

#[test]
fn the_pds_system_runs_from_its_manifest() {
    assert_pds_system_ran(&boot_system("pds", "", false), Emulator::Qemu);
}

/// The same system on Intel (Bochs, through GRUB): the loader, the TSC
/// rate measured against the PIT, and every PD's behaviour.
#[test]
fn the_pds_system_runs_in_bochs_on_intel() {
    let loader = user_build::build_system("pds").unwrap_or_else(|error| panic!("{error}"));
    let modules = [BootModule { path: loader, cmdline: "root-task".into() }];
    let outcome = run_iso_in_bochs(standard_kernel(), "pds", "", &modules);
    assert_pds_system_ran(&outcome, Emulator::Bochs);
}

fn assert_pds_system_ran(outcome: &RunOutcome, machine: Emulator) {
    let console = &outcome.console;
    assert_lines_in_order(
        console,
        &[
            "user root: loader: 7 protection domains, 34 objects, 6 program images",
            "user mode: root exited with code 0",
        ],
    );
    // Objects and capabilities are the manifest's; the mappings also count
    // the pages of the programs' images, which change with their code.
    let started = console
        .lines()
        .find_map(|line| {
            line.strip_prefix("user root: loader: started 7 protection domains: 34 objects, 15 capabilities, ")
        })
        .expect("the loader reports what it built");
    let mappings: u64 =
        started.strip_suffix(" mappings; exiting").and_then(|count| count.parse().ok()).expect("a count");
    // At least the shared page twice, and per PD an image, a stack page,
    // the IPC buffer and the info page.
    assert!(mappings >= 2 + 7 * 4, "{mappings} mappings");
    // Each client's call arrives with the badge the manifest gave it, and
    // the answer (the word plus the badge) goes back to that client.
    for line in [
        "user server: call from badge 0xa: 256",
        "user server: call from badge 0xb: 256",
        "user client_a: answer 0x10a",
        "user client_b: answer 0x10b",
        "user writer: wrote the shared page and signalled",
        "user reader: signalled with badge 0x4",
        "user reader: the shared page is intact",
        "user reader: a slot it was not given: capability lookup failed",
        "user reader: heap works",
        "user intruder: reading 0x90000000",
        "user fault: intruder (#PF at rip ",
        "user pager: page fault at 0x90000000 (rip ",
    ] {
        assert!(console.lines().any(|printed| printed.contains(line)), "missing {line:?}");
    }
    assert!(console.contains("error code 0x4) from badge 0xf"), "the pager saw the fault with another badge");
    // The intruder never ran again after its fault.
    assert!(!console.contains("from memory it was never given"));
    // Five PDs exit with 0; the server stays blocked in its receive and the
    // intruder in its fault.
    assert!(console.contains("system: 5 threads ended: 5 with code 0, 0 failed; the others are blocked"));
    assert_system_succeeded(outcome, machine);
}

/// `cargo run`'s system: the echo server and its clients, and a Linux
/// guest that boots, uses its disk and powers off.
#[test]
fn the_default_system_runs_from_its_manifest() {
    let outcome = boot_system_with_timeout(user_build::DEFAULT_SYSTEM, "", false, Duration::from_secs(900));
    let console = &outcome.console;
    for line in ["hello: hello from hello: the server answered 101", "world: hello from world: the server answered 102"]
    {
        assert!(console.lines().any(|printed| printed.ends_with(line)), "missing {line:?}");
    }
    for line in [
        "user linux_vmx: linux_vmx: BULKHEAD-GUEST: userspace up",
        "user linux_vmx: linux_vmx: BULKHEAD-GUEST: disk ok written-by-the-guest",
        "user linux_vmm: vmm: the guest powered off",
    ] {
        assert!(console.lines().any(|printed| printed.trim_end() == line), "missing {line:?}");
    }
    assert!(console.contains("system: 3 threads ended: 3 with code 0, 0 failed; the others are blocked"));
    assert_system_succeeded(&outcome, Emulator::Qemu);
}

#[test]
fn every_repository_system_is_known_to_the_cli() {
    let names: Vec<&str> = user_build::systems().map(|(name, _)| name).collect();
    assert!(names.contains(&"default") && names.contains(&"pds"), "{names:?}");
    for (name, manifest) in user_build::systems() {
        assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest).is_file(), "{name}: {manifest}");
    }
    let error = user_build::build_system("no-such-system").expect_err("an unknown system is refused");
    assert!(error.to_string().contains("no system `no-such-system`"), "{error}");
}

/// Boots `name` with the conformance dump and compares what the loader
/// built with the compiled manifest: every PD's thread, each capability
/// with its type, object, rights and badge, every mapping, nothing extra.
fn assert_conforms(name: &str) {
    // The run goes on after the dump: a system with Linux guests takes
    // minutes to end.
    let has_linux = user_build::system_spec(name).is_some_and(|spec| spec.guests.iter().any(|g| g.kernel.is_some()));
    let timeout = if has_linux { Duration::from_secs(900) } else { KERNEL_BOOT_TIMEOUT };
    let outcome = boot_system_with_timeout(name, "dump-capabilities", false, timeout);
    // What the loader built is checked here; how each PD then ends is its
    // system's own test's business (the guest system's hostile guest ends
    // its VMM with a failure by design).
    assert!(!outcome.timed_out, "{name}: the system hung");
    assert!(!outcome.console.contains("!!! kernel"), "{name}: a kernel exception or panic");
    assert!(outcome.console.contains("root task: done; the threads it started run on"), "{name}: the loader finished");
    assert!(outcome.final_status().is_some(), "{name}: the kernel gave its verdict");
    let snapshot = bulkhead::conformance::parse(&outcome.console).unwrap_or_else(|error| panic!("{error}"));
    let spec = user_build::system_spec(name).expect("the build script compiled the system");
    let mismatches = bulkhead::conformance::check(&spec, &snapshot);
    let report: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "{name}: the loader built something else than the manifest:\n{}", report.join("\n"));
}

/// Device memory: the loader makes the HPET's register page from a device
/// untyped and maps it uncached where the manifest says; the PD reads the
/// timer's capabilities through it.
#[test]
fn the_hpet_system_reads_device_registers_through_a_manifest_region() {
    let outcome = boot_system("hpet", "", false);
    let line = outcome
        .console
        .lines()
        .find_map(|line| line.strip_prefix("user hpet_reader: capabilities "))
        .expect("the reader reports the register");
    // QEMU's HPET: Intel's vendor ID and a 10 ns period.
    assert!(line.ends_with("vendor 0x8086, period 10000000 fs"), "{line}");
    assert_system_succeeded(&outcome, Emulator::Qemu);
}

/// 80 PDs at once: every one runs (the kernel once kept 32 threads and
/// stopped the rest without failing the run).
#[test]
fn a_crowd_of_eighty_pds_all_run() {
    let outcome = boot_system("crowd", "", false);
    for member in 0..80 {
        let line = format!("user member_{member:02}: member_{member:02} ran");
        assert!(outcome.console.lines().any(|printed| printed == line), "missing {line:?}");
    }
    assert!(outcome.console.contains("system: 80 threads ended: 80 with code 0, 0 failed"));
    assert_system_succeeded(&outcome, Emulator::Qemu);
}

/// The post-boot conformance check for every system of the repository:
/// the default system and each test system's manifest.
#[test]
fn every_system_conforms_to_its_manifest() {
    let names: Vec<&str> = user_build::systems().map(|(name, _)| name).collect();
    assert!(names.len() >= 2, "{names:?}");
    for name in names {
        assert_conforms(name);
    }
}
