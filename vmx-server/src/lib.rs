//! Per-guest VMX protection domain: the guest's device models (16550 UART, virtio console, block and net).
//!
//! Empty for now: this crate exists so that the workspace has its final
//! shape. See `docs/ARCHITECTURE.md` for the issue that fills it.

#![no_std]
#![forbid(unsafe_code)]

pub mod virtio;
