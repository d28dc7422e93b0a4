//! The Bulkhead microkernel's hardware-free core: code that the kernel runs and that the host tests and the formal-invariant harness (`tests/harness`) drive unchanged.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
pub mod boot_info;
pub mod cap;
pub mod cmdline;
pub mod conformance;
pub mod device_memory;
pub mod elf;
pub mod error;
pub mod fastpath;
pub mod finalise;
pub mod frame_allocator;
pub mod io_port;
pub mod ipc;
pub mod irq;
pub mod memory;
pub mod platform;
pub mod root_task;
pub mod sched;
pub mod store;
pub mod syscall;
pub mod vcpu;
pub mod virt;
pub mod vspace;

#[cfg(test)]
mod device_tests;
#[cfg(any(test, feature = "alloc"))]
pub mod test_fixture;
