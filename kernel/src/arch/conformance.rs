//! The post-boot conformance dump: the capability state the loader left
//! behind, printed as plain `conformance: ` lines (`docs/capdl.md`,
//! "Post-boot conformance") for the host to compare with the manifest.

use kernel_core::cap::{Cap, SlotStore};
use kernel_core::conformance;
use kernel_core::syscall::cspace_slot;

/// Prints the snapshot (`kernel_core::conformance::snapshot`) of every
/// thread the root thread's CSpace root holds a TCB capability to: the
/// loader keeps its original capabilities there. Without a root thread
/// (or a CSpace) it prints only the `end` line.
/// A `machine tsc_khz=N` line comes first: the rate by which the loader
/// turned the manifest's times into the budgets the dump shows.
pub(crate) fn dump_capabilities() {
    crate::println!("conformance: machine tsc_khz={}", super::cpu::tsc_khz());
    crate::root::with_kernel(|kernel, root| {
        let root_cnode = root.and_then(cspace_slot).map_or(Cap::Null, |slot| kernel.store.slot(slot).cap);
        conformance::snapshot(kernel, &root_cnode, |line| crate::println!("conformance: {line}"));
    });
}
