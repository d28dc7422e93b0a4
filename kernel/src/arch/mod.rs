//! Everything that touches x86-64 hardware directly. The rest of the kernel
//! (the `kernel_core` library) is hardware-free and host-tested.

pub(crate) mod boot;
pub(crate) mod cpu;
pub(crate) mod exit;
pub(crate) mod gdt;
pub(crate) mod idt;
pub(crate) mod paging;
pub(crate) mod serial;
