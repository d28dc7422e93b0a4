//! The static capability manifest: language, separation validator, compiler and generated capability names.
//!
//! Empty for now: this crate exists so that the workspace has its final
//! shape. See `docs/ARCHITECTURE.md` for the issue that fills it.

#![no_std]
#![forbid(unsafe_code)]
