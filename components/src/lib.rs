//! The ring-3 runtime every protection domain shares: typed capability
//! handles, one error enum mirroring the kernel's codes, messages, and the
//! server loop that servers implement (`called`, `notified`).
//!
//! The typed invocations ([`invocation`]) stand on the [`kernel::Kernel`]
//! trait, so they are host-tested against a recording fake; the ELF reader
//! ([`elf`]) lets a root task load its children's images.
//!
//! This crate holds no `unsafe`: the system-call instruction itself, the
//! entry point and the heap live in the one hardware-access crate of ring 3,
//! `bulkhead-sys` (`components/sys`), which implements [`kernel::Kernel`]
//! and [`server::Ipc`] (`docs/runtime.md`).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod cap;
/// The ELF64 reader, shared with the kernel's root-task loader.
pub use kernel_core::elf;
pub mod error;
pub mod heap;
pub mod invocation;
pub mod kernel;
pub mod message;
pub mod server;
pub mod slots;
pub mod vcpu;

/// The kernel's hardware-free library, for its ABI definitions (the root
/// task's layout, object kinds, rights).
pub use kernel_core as abi;

pub use cap::{CPtr, Cap};
pub use error::Error;
pub use message::Message;
