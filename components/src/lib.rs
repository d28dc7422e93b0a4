//! The ring-3 runtime every protection domain shares: typed capability
//! handles, one error enum mirroring the kernel's codes, messages, and the
//! server loop that servers implement (`called`, `notified`).
//!
//! This crate holds no `unsafe`: the system-call instruction itself and the
//! entry point live in the one hardware-access crate of ring 3 (to come with
//! the first protection domain image), which implements [`server::Ipc`].

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod cap;
pub mod error;
pub mod message;
pub mod server;

pub use cap::{CPtr, Cap};
pub use error::Error;
pub use message::Message;
