//! The ring-3 side of the system-call ABI, and the only crate of ring 3
//! allowed `unsafe` (`docs/runtime.md`): the `syscall` instruction
//! ([`arch`]), the thread's IPC buffer ([`ipc_buffer`]), the root task's
//! entry point ([`entry!`]), the debug console ([`println!`]), the panic
//! handler (feature `panic-handler`), the heap ([`heap`], with a global
//! allocator behind the feature `global-allocator`) and volatile windows
//! onto frames the PD mapped for itself ([`mapped`]).
//!
//! [`Sys`] implements `bulkhead_components::kernel::Kernel`, on which every
//! typed invocation in `bulkhead_components::invocation` stands, and
//! `bulkhead_components::server::Ipc` for the server loop. On the host the
//! crate compiles (so that clippy and the unit tests cover its pure parts)
//! with a stub for the instruction that refuses every call.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod arch;
pub mod console;
pub mod entry;
pub mod heap;
pub mod ipc_buffer;
pub mod mapped;
mod panic;
mod sys;

pub use bulkhead_capdl_spec::PdInfo;
pub use bulkhead_components as components;
pub use kernel_core::root_task::RootInfo;
pub use sys::Sys;
