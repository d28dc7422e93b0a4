//! The CLI as a user meets it: `--iso PATH` writes a hybrid BIOS+UEFI ISO
//! for a real server, and bad options are refused with the usage text.

use std::process::Command;

use bulkhead::kernel_build;
use bulkhead::tools::{self, Tool};

fn bulkhead() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
}

#[test]
fn iso_option_writes_a_hybrid_bios_and_uefi_image() {
    tools::ensure(&[Tool::Xorriso]).unwrap_or_else(|error| panic!("{error}"));
    let iso = kernel_build::output_directory().join("test-cli-hardware.iso");
    let _ = std::fs::remove_file(&iso);
    let output = bulkhead().arg("--iso").arg(&iso).output().expect("run the CLI");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("wrote ") && stderr.contains("(BIOS and UEFI)"), "{stderr}");

    // Both El Torito boot images: GRUB for BIOS and the EFI system partition.
    let report = Command::new("xorriso")
        .arg("-indev")
        .arg(&iso)
        .args(["-report_el_torito", "plain"])
        .output()
        .expect("run xorriso");
    let report = String::from_utf8_lossy(&report.stdout);
    let boot_images: Vec<&str> = report.lines().filter(|line| line.starts_with("El Torito boot img :")).collect();
    assert!(boot_images.iter().any(|line| line.contains(" BIOS ")), "{report}");
    assert!(boot_images.iter().any(|line| line.contains(" UEFI ")), "{report}");

    // A hardware ISO boots the entry that only halts at the end.
    let config = kernel_build::output_directory().join("test-cli-grub.cfg");
    let extracted = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/boot/grub/grub.cfg"])
        .arg(&config)
        .output()
        .expect("run xorriso");
    assert!(extracted.status.success(), "{}", String::from_utf8_lossy(&extracted.stderr));
    let config = std::fs::read_to_string(&config).expect("extracted grub.cfg");
    assert!(config.contains("set default=1\n"), "{config}");
}

#[test]
fn unknown_options_are_refused_with_usage() {
    let output = bulkhead().arg("--no-such-option").output().expect("run the CLI");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown option --no-such-option"), "{stderr}");
    assert!(stderr.contains("usage: cargo run -- [OPTIONS]"), "{stderr}");
}

#[test]
fn help_lists_every_option() {
    let output = bulkhead().arg("--help").output().expect("run the CLI");
    assert!(output.status.success());
    let usage = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--gdb",
        "--uefi",
        "--bochs",
        "--cpu",
        "--iso",
        "--kernel-boot",
        "--append",
        "--module",
        "--system",
        "--abi-self-test",
        "--no-root-task",
    ] {
        assert!(usage.contains(option), "{option} missing from --help");
    }
}

#[test]
fn an_unknown_system_is_refused_with_the_known_ones() {
    let output = bulkhead().args(["--kernel-boot", "--system", "no-such-system"]).output().expect("run the CLI");
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no system `no-such-system`; the repository's systems are "), "{stderr}");
    assert!(stderr.contains("default") && stderr.contains("pds"), "{stderr}");
}

#[test]
fn exit_status_follows_the_kernel_verdict() {
    // The default system's Linux guest takes a minute or two.
    let success = bulkhead().args(["--kernel-boot", "--timeout", "900"]).output().expect("run the CLI");
    assert_eq!(success.status.code(), Some(0), "{}", String::from_utf8_lossy(&success.stderr));
    let console = String::from_utf8_lossy(&success.stdout);
    assert!(console.contains("bulkhead: exit success"));
    // Without options the CLI boots the default system through its loader.
    assert!(String::from_utf8_lossy(&success.stderr).contains("bulkhead: system `default`"));
    assert!(console.contains("user hello: hello from hello: the server answered 101"), "{console}");
    // Its standard output is no terminal: the whole log, not the guest's
    // console alone (README, "A Linux guest's console").
    assert!(console.contains("user linux_vmx: linux_vmx: BULKHEAD-GUEST: userspace up"), "{console}");

    let failure = bulkhead()
        .args(["--kernel-boot", "--fault-injection", "--append", "inject=panic", "--timeout", "120"])
        .output()
        .expect("run the CLI");
    assert_eq!(failure.status.code(), Some(1), "{}", String::from_utf8_lossy(&failure.stderr));
    let console = String::from_utf8_lossy(&failure.stdout);
    assert!(console.contains("!!! kernel panic at kernel/src/fault_injection.rs:"), "{console}");
    assert!(console.contains("bulkhead: exit failure"), "{console}");
}

/// `capdl check|graph|show`: the manifest validator from the command line
/// (docs/capdl.md): a valid manifest, a bad one with its location, one
/// protection domain's report, the DOT graph, and usage errors.
#[test]
fn capdl_subcommands_check_graph_and_show_a_manifest() {
    let root = kernel_build::workspace_root();
    let example = root.join("capdl/examples/system.capdl");
    let run = |arguments: &[&str]| {
        let output = bulkhead().arg("capdl").args(arguments).output().expect("run the CLI");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout, stderr)
    };
    let example_path = example.to_str().expect("a UTF-8 path");
    let (code, stdout, _) = run(&["check", example_path]);
    assert_eq!(code, Some(0));
    assert!(stdout.ends_with(": valid, 5 protection domains, 16 flows\n"), "{stdout}");

    let (code, stdout, _) = run(&["graph", example_path]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with("digraph flows {") && stdout.contains("\"serial_driver\" -> \"log_server\""),
        "{stdout}"
    );

    let (code, stdout, _) = run(&["show", example_path, "serial_driver"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("serial_driver\n") && stdout.contains("  device com2: irq 3"), "{stdout}");
    assert!(!stdout.contains("log_server\n  maps"), "only that domain's block: {stdout}");
    let (code, _, stderr) = run(&["show", example_path, "nobody"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("has no protection domain nobody"), "{stderr}");

    let bad = root.join("capdl/tests/bad/bad_page_size.capdl");
    let (code, stdout, stderr) = run(&["check", bad.to_str().expect("a UTF-8 path")]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("bad_page_size.capdl:44:10: error: page size 8192 is not supported"), "{stderr}");
    assert!(stderr.contains("  hint: "), "{stderr}");

    let (code, _, stderr) = run(&["frob"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("usage: cargo run -- capdl check FILE"), "{stderr}");
    let (code, _, stderr) = run(&["check", "/nonexistent.capdl"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent.capdl"), "{stderr}");
}
