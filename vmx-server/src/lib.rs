//! Per-guest VMX protection domain: the guest's device models (16550 UART, virtio console, block and net).
//!
//! Built so far: the 16550A UART that is the guest's COM1 ([`uart`]),
//! the virtio-mmio transport, split virtqueues and the virtio block, net
//! and console devices ([`virtio`]), and the frame link between two
//! network ports in shared memory, with a loopback ([`link`];
//! `docs/DEVICES.md`). Every device is a pure state machine tested on the
//! host; the PD's event loop that serves them is still to come.

#![no_std]
#![forbid(unsafe_code)]

mod byte_queue;
pub mod link;
pub mod uart;
pub mod virtio;
