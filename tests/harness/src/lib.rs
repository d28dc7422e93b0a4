//! The formal-invariant harness: an executable abstract specification of
//! the kernel ([`spec`]), a projection of the real kernel core's state onto
//! it ([`project`]), the invariants seL4's proofs state that apply here
//! ([`invariants`]), and a driver ([`driver`]) that runs random sequences
//! of system calls on both, checking refinement and every invariant after
//! each step, authority confinement ([`authority`]) step by step and
//! against a capdl manifest's system built by system calls ([`manifest`]),
//! and a decoder ([`decode`]) from arbitrary bytes to such sequences for
//! the fuzz target. `docs/VERIFICATION.md` describes it.
#![forbid(unsafe_code)]

pub mod authority;
pub mod decode;
pub mod driver;
pub mod invariants;
pub mod manifest;
pub mod project;
pub mod spec;
