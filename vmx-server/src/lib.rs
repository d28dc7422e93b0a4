//! Per-guest VMX protection domain: the guest's device models (16550 UART, virtio console, block and net).
//!
//! Built so far: the 16550A UART that is the guest's COM1 ([`uart`]),
//! and the virtio-mmio transport, split virtqueues and virtio-blk
//! ([`virtio`]; `docs/DEVICES.md`). Every device is a pure state machine tested on the
//! host; the PD's event loop that serves them is still to come.

#![no_std]
#![forbid(unsafe_code)]

pub mod uart;
pub mod virtio;
