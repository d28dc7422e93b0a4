//! Per-guest VMX protection domain: the guest's device models (16550 UART, virtio console, block and net).
//!
//! Built so far: the 16550A UART that is the guest's COM1 ([`uart`]),
//! and the virtio-mmio transport, split virtqueues and virtio-blk
//! ([`virtio`]; `docs/DEVICES.md`); the protocol by which a guest's VMM
//! forwards device accesses to its VMX ([`protocol`]), the set of one
//! guest's devices behind it ([`server`]) and the console's lines
//! ([`console`]). Every part is a pure state machine tested on the host;
//! the PD around them is the `vmx-server` program of
//! `components/programs`.

#![no_std]
#![forbid(unsafe_code)]

pub mod console;
pub mod protocol;
pub mod server;
pub mod uart;
pub mod virtio;
