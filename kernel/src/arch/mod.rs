//! Everything that touches x86-64 hardware directly. The rest of the kernel
//! (the `kernel_core` library) is hardware-free and host-tested.

pub(crate) mod apic;
pub(crate) mod boot;
#[allow(dead_code, reason = "the root task's exit runs the dump when the command line asks for it")]
pub(crate) mod conformance;
pub(crate) mod cpu;
pub(crate) mod exit;
pub(crate) mod fpu;
pub(crate) mod gdt;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs the backends' self-tests until VCpus exist")
)]
pub(crate) mod guest;
pub(crate) mod idt;
pub(crate) mod objects;
pub(crate) mod paging;
pub(crate) mod pic;
pub(crate) mod platform;
pub(crate) mod root_task;
pub(crate) mod serial;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs the backend's self-test until VCpus exist")
)]
pub(crate) mod svm;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs user programs until there is a loader")
)]
pub(crate) mod syscall;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs user programs until there is a loader")
)]
pub(crate) mod threads;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs user programs until there is a loader")
)]
pub(crate) mod timer;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs user programs until there is a loader")
)]
pub(crate) mod user;
#[cfg_attr(
    not(feature = "fault-injection"),
    allow(dead_code, reason = "only the fault-injection kernel runs the backend's self-test until VCpus exist")
)]
pub(crate) mod vtx;
