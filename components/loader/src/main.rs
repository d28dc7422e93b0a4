//! The loader: the root task of every system built from a manifest
//! (`docs/capdl.md`). Its image carries the system (a `Bundle`: the
//! compiled spec, every program image and the files Linux guests boot
//! from); it creates exactly the objects, capabilities and mappings the
//! spec lists, out of the root's untypeds and control capabilities, starts
//! the protection domains and exits with code 0, leaving them running. Any failure stops it with code 1 before
//! a single PD runs, naming the PD, the object and the kernel's error.
//!
//! On the host this binary is an empty program, so that `cargo build` of
//! the whole workspace works; `src/user_build.rs` builds the real image for
//! `x86_64-unknown-none` with the system in it.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

// Compiled on the host too, so that clippy and the type checker see it;
// only the bare-metal build calls it.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod load;

/// The system this loader builds (see `build.rs`).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
static SYSTEM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/system.bundle"));

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn loader_main(info: &bulkhead_sys::RootInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    load::main(SYSTEM, info, sys)
}

bulkhead_sys::entry!(loader_main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("bulkhead-loader runs on Bulkhead as its root task: the host CLI builds it for x86_64-unknown-none");
}
