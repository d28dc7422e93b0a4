//! Direct Console UI protection domain: the menu-driven console on serial and the local display.
//!
//! Empty for now: this crate exists so that the workspace has its final
//! shape. See `docs/ARCHITECTURE.md` for the issue that fills it.

#![no_std]
#![forbid(unsafe_code)]
