//! Proof of the harness's power: each deliberately broken kernel variant
//! (`cfg(bulkhead_mutant = "...")` in `kernel_core`) must make the
//! fixed-seed run fail with a violation, within a bounded number of
//! operations, and the check `docs/VERIFICATION.md` names must be among
//! those that fail.
//!
//! Each mutant builds in a target directory of its own under
//! `target/bulkhead/mutants` (so reruns only run), without debug
//! information, and runs only `fixed_seed_run` with a budget of
//! [`BUDGET`] operations. `BULKHEAD_MUTANTS` (names separated by commas)
//! runs only those mutants; a name not in [`MUTANTS`] fails the test.

use std::path::PathBuf;
use std::process::Command;

/// Operations a mutant gets to show itself (the slowest caught so far
/// needs about 20,000, and needed 38,000 with an earlier generator: the
/// margin keeps a change of the generator from failing the test by a few
/// operations).
const BUDGET: usize = 60_000;

/// The mutants and a check that must catch each.
const MUTANTS: [(&str, &str); 31] = [
    ("mint_keeps_rights", "refinement"),
    ("revoke_leaves_one_child", "refinement"),
    ("retype_off_by_one", "kernel: untyped_children_inside_and_below_watermark"),
    ("badge_rebadge_allowed", "result"),
    ("delete_keeps_cnode_contents", "kernel: slots_inside_live_containers"),
    ("untyped_copyable", "kernel: untyped_children_inside_and_below_watermark"),
    ("move_keeps_stale_link", "derivation_list_well_formed"),
    ("guard_ignored", "result"),
    ("mutate_allows_badge", "result"),
    ("lookup_depth_off_by_one", "result"),
    ("queue_remove_keeps_tail", "projection"),
    ("budget_not_charged", "refinement"),
    ("signal_overwrites_word", "refinement"),
    ("recv_ignores_read_right", "refinement"),
    ("endpoint_delete_leaves_waiters", "refinement"),
    ("grant_ignored", "refinement"),
    ("priority_ceiling_ignored", "refinement"),
    ("set_priority_no_requeue", "refinement"),
    ("suspend_keeps_reply_binding", "refinement"),
    ("preempted_goes_to_back", "refinement"),
    ("notification_delete_keeps_irq_binding", "kernel: irq_lines_consistent"),
    ("frame_map_ignores_write_right", "refinement"),
    ("table_map_overwrites_entry", "result"),
    ("frame_delete_keeps_mapping", "kernel: entries_recorded_by_caps"),
    ("pml4_delete_keeps_asid", "kernel: asid_table_consistent"),
    ("asid_pool_delete_keeps_table", "kernel: asid_table_consistent"),
    ("vcpu_delete_keeps_binding", "kernel: vcpu_bindings_symmetric"),
    ("write_state_unchecked", "kernel: vcpu_state_within_allowlist"),
    ("bind_notification_twice", "kernel: notification_bindings_symmetric"),
    ("vm_enter_ignores_dead_space", "result"),
    ("donation_never_lends", "refinement"),
];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a mutant's run printed: the operations it took and the checks
/// that failed.
struct Caught {
    operations: usize,
    checks: Vec<String>,
}

fn run_mutant(mutant: &str) -> Result<Caught, String> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&root)
        .args(["test", "-q", "-p", "bulkhead-harness", "--test", "harness", "fixed_seed_run", "--", "--nocapture"])
        .env("CARGO_TARGET_DIR", root.join("target/bulkhead/mutants").join(mutant))
        .env("RUSTFLAGS", format!("--cfg bulkhead_mutant=\"{mutant}\""))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_PROFILE_TEST_DEBUG", "0")
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("BULKHEAD_HARNESS_OPS", BUDGET.to_string())
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        return Err(format!("not caught in {BUDGET} operations:\n{text}"));
    }
    let operations = text
        .lines()
        .find_map(|line| line.strip_prefix("caught after ")?.split(' ').next()?.parse().ok())
        .ok_or_else(|| format!("failed without a violation:\n{text}"))?;
    let violation = text.lines().skip_while(|line| !line.starts_with("Violation at step"));
    let checks = violation
        .skip(1)
        .take_while(|line| line.starts_with("  ["))
        .filter_map(|line| line.trim_start().strip_prefix('[')?.split_once("] ").map(|(check, _)| check.to_owned()))
        .collect();
    Ok(Caught { operations, checks })
}

/// The mutants `BULKHEAD_MUTANTS` names (all without it), or the names
/// it gives that are not mutants.
fn selected() -> Result<Vec<(&'static str, &'static str)>, Vec<String>> {
    let Some(names) = std::env::var_os("BULKHEAD_MUTANTS") else { return Ok(MUTANTS.to_vec()) };
    let names = names.to_string_lossy().into_owned();
    let names: Vec<&str> = names.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    let unknown: Vec<String> = names
        .iter()
        .filter(|name| !MUTANTS.iter().any(|(mutant, _)| mutant == *name))
        .map(|name| (*name).to_owned())
        .collect();
    if !unknown.is_empty() || names.is_empty() {
        return Err(unknown);
    }
    Ok(MUTANTS.into_iter().filter(|(mutant, _)| names.contains(mutant)).collect())
}

#[test]
fn every_mutant_is_caught() {
    let mutants =
        selected().unwrap_or_else(|unknown| panic!("BULKHEAD_MUTANTS names no mutant or unknown ones: {unknown:?}"));
    let mut failures = Vec::new();
    println!("| mutant | operations | failed checks |");
    for (mutant, expected) in mutants {
        match run_mutant(mutant) {
            Ok(caught) => {
                println!("| {mutant} | {} | {} |", caught.operations, caught.checks.join(", "));
                if !caught.checks.iter().any(|check| check == expected) {
                    failures.push(format!("{mutant}: {expected} did not fail (failed: {:?})", caught.checks));
                }
            }
            Err(error) => failures.push(format!("{mutant}: {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
