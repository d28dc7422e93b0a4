//! The first root task: the kernel loads this image and starts it as the
//! root thread (`kernel/src/root_task.rs` is the ABI). It checks the
//! kernel's root information, prints a banner, and exercises the ABI one
//! step at a time through the ring-3 runtime, one line per step
//! (`root: <step> ok` or `root: <step> failed: <error>`), ending with a
//! child thread that calls it over an endpoint. Exit code 0 when every
//! step passed, 1 at the first failure.
//!
//! On the host this binary is an empty program, so that `cargo build` of
//! the whole workspace works; `src/user_build.rs` builds the real image for
//! `x86_64-unknown-none`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

// Compiled on the host too, so that clippy and the type checker see it;
// only the bare-metal build calls it.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod self_test;

bulkhead_sys::entry!(self_test::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("bulkhead-root-task runs on Bulkhead as its root task: the host CLI builds it for x86_64-unknown-none");
}
