//! Policies that hold for every crate, checked rather than just written
//! down: workspace lints everywhere, and no `unsafe` outside the kernel.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace members, read from the root Cargo.toml.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("root Cargo.toml");
    let start = manifest.find("members = [").expect("a members list");
    let list = &manifest[start..manifest[start..].find(']').map(|end| start + end).expect("closed list")];
    list.lines().filter_map(|line| line.trim().strip_prefix('"')?.split('"').next().map(str::to_owned)).collect()
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    let members = members();
    assert!(members.len() >= 8, "members: {members:?}");
    for member in members {
        let manifest = workspace_root().join(&member).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|error| panic!("{}: {error}", manifest.display()));
        assert!(text.contains("[lints]\nworkspace = true"), "{} lacks `[lints] workspace = true`", manifest.display());
    }
}

#[test]
fn workspace_lints_deny_undocumented_unsafe() {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("root Cargo.toml");
    for lint in
        ["unsafe_op_in_unsafe_fn = \"deny\"", "undocumented_unsafe_blocks = \"deny\"", "missing_safety_doc = \"deny\""]
    {
        assert!(manifest.contains(lint), "workspace lints lack {lint}");
    }
}

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("readable directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn servers_capdl_and_components_forbid_unsafe() {
    for crate_directory in ["vmm-server", "vmx-server", "drivers-server", "dcui-server", "capdl", "components"] {
        let root = workspace_root().join(crate_directory).join("src");
        let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
        assert!(lib.contains("#![forbid(unsafe_code)]"), "{crate_directory}/src/lib.rs must forbid unsafe code");
    }
}

/// The fuzz crates (`capdl/fuzz`, the manifest's; `tests/harness/fuzz`,
/// the invariant harness's) are workspaces of their own, since
/// cargo-fuzz builds them with nightly and sanitizers: the root excludes
/// them, and they keep the policy by hand, repeating the workspace lints
/// and forbidding unsafe code in every target.
#[test]
fn the_fuzz_crates_stay_outside_and_keep_the_policy() {
    let root = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("root Cargo.toml");
    assert!(
        root.contains("exclude = [\"capdl/fuzz\", \"tests/harness/fuzz\"]"),
        "the root workspace excludes the fuzz crates"
    );
    let lints = &root[root.find("[workspace.lints.rust]").expect("workspace lints")..];
    for fuzz in ["capdl/fuzz", "tests/harness/fuzz"] {
        let manifest =
            std::fs::read_to_string(workspace_root().join(fuzz).join("Cargo.toml")).expect("fuzz Cargo.toml");
        assert!(manifest.contains("\n[workspace]\n"), "{fuzz} is a workspace of its own");
        for lint in ["unsafe_op_in_unsafe_fn", "missing_docs", "undocumented_unsafe_blocks", "missing_safety_doc"] {
            let line = lints.lines().find(|line| line.starts_with(lint)).expect("a workspace lint");
            assert!(manifest.contains(line), "{fuzz}/Cargo.toml lacks `{line}`");
        }
        let mut targets = Vec::new();
        rust_files(&workspace_root().join(fuzz).join("fuzz_targets"), &mut targets);
        assert!(!targets.is_empty(), "{fuzz} has targets");
        for target in targets {
            let text = std::fs::read_to_string(&target).expect("fuzz target");
            assert!(text.contains("#![forbid(unsafe_code)]"), "{} must forbid unsafe code", target.display());
        }
        let corpus = workspace_root().join(fuzz).join("corpus");
        assert!(corpus.read_dir().is_ok_and(|mut entries| entries.next().is_some()), "{fuzz} has a seed corpus");
    }
}

/// Ring 3 has one crate with `unsafe`, `components/sys` (docs/runtime.md);
/// every other crate under `components/` forbids it at its root.
#[test]
fn ring_three_keeps_unsafe_in_bulkhead_sys() {
    let sys = std::fs::read_to_string(workspace_root().join("components/sys/src/lib.rs")).expect("sys lib.rs");
    assert!(
        sys.contains("#![deny(unsafe_op_in_unsafe_fn)]"),
        "components/sys/src/lib.rs denies unsafe_op_in_unsafe_fn"
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace_root().join("components")).expect("components/").flatten() {
        let directory = entry.path();
        if !directory.join("Cargo.toml").exists() || directory.ends_with("sys") {
            continue;
        }
        let roots = ["src/lib.rs", "src/main.rs"].map(|root| directory.join(root));
        for root in roots.iter().filter(|root| root.exists()) {
            let text = std::fs::read_to_string(root).expect("crate root");
            assert!(text.contains("#![forbid(unsafe_code)]"), "{} must forbid unsafe code", root.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "the root task at least");
}

#[test]
fn the_kernel_library_is_free_of_unsafe_and_every_unsafe_block_is_explained() {
    let lib = std::fs::read_to_string(workspace_root().join("kernel/src/lib.rs")).expect("kernel lib.rs");
    assert!(lib.contains("#![forbid(unsafe_code)]"), "the hardware-free kernel library forbids unsafe code");
    // Clippy's undocumented_unsafe_blocks checks blocks; this also catches
    // `unsafe impl` without a SAFETY comment right above it.
    let mut files = Vec::new();
    rust_files(&workspace_root().join("kernel/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("unsafe impl") {
                let explained = lines[..index].iter().rev().take(8).any(|previous| previous.contains("SAFETY:"));
                assert!(explained, "{}:{}: `unsafe impl` without a SAFETY comment", file.display(), index + 1);
            }
        }
    }
}

/// Runs cargo with the given arguments at the workspace root, in its own
/// target directory (so it never waits on the `cargo test` that runs it),
/// and returns its combined output if it fails.
fn cargo_fails(arguments: &[&str]) -> Option<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args(arguments)
        .env("CARGO_TARGET_DIR", workspace_root().join("target").join("bulkhead").join("lint"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo");
    (!output.status.success())
        .then(|| format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn code_is_rustfmt_clean() {
    if let Some(output) = cargo_fails(&["fmt", "--all", "--", "--check"]) {
        panic!("cargo fmt --all would change files (run it):\n{output}");
    }
}

#[test]
fn clippy_is_clean_on_host_and_bare_metal() {
    if let Some(output) = cargo_fails(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]) {
        panic!("clippy on the host crates:\n{output}");
    }
    let kernel =
        ["clippy", "-p", "bulkhead-kernel", "--target", "x86_64-unknown-none", "--features", "fault-injection"];
    if let Some(output) = cargo_fails(&[&kernel[..], &["--", "-D", "warnings"]].concat()) {
        panic!("clippy on the bare-metal kernel:\n{output}");
    }
    let user = [
        "clippy",
        "-p",
        "bulkhead-sys",
        "-p",
        "bulkhead-root-task",
        "-p",
        "bulkhead-loader",
        "-p",
        "bulkhead-programs",
        "-p",
        "bulkhead-test-guests",
        "--target",
        "x86_64-unknown-none",
    ];
    if let Some(output) = cargo_fails(&[&user[..], &["--", "-D", "warnings"]].concat()) {
        panic!("clippy on the bare-metal ring-3 crates:\n{output}");
    }
}
