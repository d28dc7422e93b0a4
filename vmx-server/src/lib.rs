//! Per-guest VMX protection domain: the guest's device models (16550 UART, virtio console, block and net).
//!
//! Built so far: the 16550A UART that is the guest's COM1 ([`uart`]),
//! the virtio-mmio transport, split virtqueues and the virtio block, net
//! and console devices ([`virtio`]), the frame link between two network
//! ports in shared memory, with a loopback ([`link`]; `docs/DEVICES.md`);
//! the protocol by which a guest's VMM forwards device accesses to its
//! VMX ([`protocol`]), the set of one guest's devices behind it
//! ([`server`]) and the console's lines ([`console`]). Every part is a
//! pure state machine tested on the host; the PD around them is the
//! `vmx-server` program of `components/programs` (the network and
//! console devices are not wired into it yet).

#![no_std]
#![forbid(unsafe_code)]

mod byte_queue;
pub mod console;
pub mod link;
pub mod protocol;
pub mod server;
pub mod uart;
pub mod virtio;
