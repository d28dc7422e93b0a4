//! Debugging the kernel with gdb, the way the README tells a user to:
//! `cargo run -- --gdb` starts QEMU halted and prints one gdb command; this
//! test runs that command in batch mode, stops in the kernel's Rust entry
//! function and asserts on the backtrace's source lines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bulkhead::tools::{self, Tool};

/// A port unlikely to clash with a user's `cargo run -- --gdb` (1234).
const PORT: u16 = 31_234;

#[test]
fn gdb_stops_in_kernel_entry_with_a_source_backtrace() {
    tools::ensure(&[Tool::Gdb, Tool::Qemu]).unwrap_or_else(|error| panic!("{error}"));
    let mut cli = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["--gdb", "--gdb-port", &PORT.to_string(), "--timeout", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the bulkhead CLI");

    // The CLI prints the attach command on the line after "Attach with:".
    let stderr = cli.stderr.take().expect("piped stderr");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut attach_next = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("cli: {line}");
            if attach_next {
                let _ = sender.send(line.trim().to_owned());
                attach_next = false;
            }
            attach_next |= line.contains("Attach with:");
        }
    });
    let stdout = cli.stdout.take().expect("piped stdout");
    let console = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());

    let attach = receiver.recv_timeout(Duration::from_secs(600)).expect("the CLI printed the gdb command");
    assert!(attach.starts_with("gdb "), "attach command: {attach}");
    let script = format!(
        "{attach} -batch -ex 'hbreak kernel_entry' -ex 'continue' -ex 'backtrace' -ex 'info line *$pc' -ex 'delete' -ex 'detach'"
    );
    let gdb = Command::new("timeout").args(["120", "sh", "-c", &script]).output().expect("run gdb");
    let gdb_output = format!("{}{}", String::from_utf8_lossy(&gdb.stdout), String::from_utf8_lossy(&gdb.stderr));
    println!("--- gdb ---\n{gdb_output}");

    let status = cli.wait().expect("the CLI exits");
    let console = console.join().unwrap_or_default();
    println!("--- console ---\n{console}");

    assert!(gdb_output.contains("Hardware assisted breakpoint 1 at 0xffffffff8"), "hbreak on kernel_entry");
    assert!(gdb_output.contains("Breakpoint 1, "), "the breakpoint hit");
    let backtrace_line = gdb_output
        .lines()
        .find(|line| line.starts_with("#0 ") && line.contains("kernel_entry"))
        .expect("frame #0 is kernel_entry");
    assert!(backtrace_line.contains("kernel/src/boot.rs:"), "frame #0 has a source line: {backtrace_line}");
    assert!(gdb_output.contains("Line "), "info line resolves the stop address");
    // After gdb detaches the kernel boots on to a normal end.
    assert!(console.contains("Bulkhead 0.1.0 kernel"), "the kernel ran on after detach");
    assert!(status.success(), "the CLI reports the kernel's success after detach: {status}");
}
