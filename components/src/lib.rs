//! Ring-3 runtime shared by every protection domain: entry, syscall wrappers, typed capabilities, heap, logging, server loop.
//!
//! Empty for now: this crate exists so that the workspace has its final
//! shape. See `docs/ARCHITECTURE.md` for the issue that fills it.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
