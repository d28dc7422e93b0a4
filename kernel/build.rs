//! Links the bare-metal kernel with its linker script and defmt's table
//! script. Host builds (unit tests) need neither.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    // The deliberately broken variants the invariant harness must catch
    // (`docs/VERIFICATION.md`, "Mutants"); never set in a real build.
    println!(
        "cargo::rustc-check-cfg=cfg(bulkhead_mutant, values(\"mint_keeps_rights\", \"revoke_leaves_one_child\", \"retype_off_by_one\", \"badge_rebadge_allowed\", \"delete_keeps_cnode_contents\", \"untyped_copyable\", \"move_keeps_stale_link\", \"guard_ignored\", \"mutate_allows_badge\", \"lookup_depth_off_by_one\", \"queue_remove_keeps_tail\", \"budget_not_charged\", \"signal_overwrites_word\", \"recv_ignores_read_right\", \"endpoint_delete_leaves_waiters\", \"grant_ignored\", \"priority_ceiling_ignored\", \"set_priority_no_requeue\", \"suspend_keeps_reply_binding\", \"preempted_goes_to_back\", \"notification_delete_keeps_irq_binding\", \"frame_delete_keeps_mapping\", \"frame_map_ignores_write_right\", \"pml4_delete_keeps_asid\", \"table_map_overwrites_entry\", \"asid_pool_delete_keeps_table\", \"vcpu_delete_keeps_binding\", \"write_state_unchecked\", \"bind_notification_twice\", \"vm_enter_ignores_dead_space\", \"donation_never_lends\"))"
    );
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "none" {
        return;
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // An absolute path: the linker runs in another directory.
    println!("cargo:rustc-link-arg-bins=-T{manifest_dir}/linker.ld");
    // defmt's interned format strings go into the `.defmt` section, which
    // the host decodes from the ELF; defmt's build script puts defmt.x on
    // the library search path.
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
