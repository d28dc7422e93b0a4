//! Per-guest VMM protection domain: vCPU run loops, exit handling, CPU and interrupt-controller emulation.
//!
//! Empty for now: this crate exists so that the workspace has its final
//! shape. See `docs/ARCHITECTURE.md` for the issue that fills it.

#![no_std]
#![forbid(unsafe_code)]
