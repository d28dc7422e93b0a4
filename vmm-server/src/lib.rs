//! The per-guest VMM's brain, backend-neutral and host-tested: what to do
//! with each exit a guest makes (`docs/VIRTUALISATION.md`, "vmm-server").
//!
//! The ring-3 binary loops: `vm_enter(&mut registers)`; on an exit it
//! calls [`Vmm::handle`] and acts on the [`Action`]: [`Action::Resume`]
//! enters again, [`Action::Halt`] waits on its notification first,
//! [`Action::Stop`] ends the guest and reports the [`Stop`]. This library
//! never calls the kernel: it reaches the VCpu's guest state through
//! [`VcpuState`] (VCpu::ReadState and WriteState), the guest's memory
//! through [`GuestMemory`] and the host's TSC through [`Clock`], so every
//! handler runs on the host against fakes.
//!
//! # Exits
//!
//! | exit | what the VMM does |
//! | --- | --- |
//! | CPUID | answers from its own table ([`cpuid`]): a baseline x86-64 CPU, no VMX, SVM or XSAVE, a hypervisor leaf |
//! | RDMSR, WRMSR | an allowlist ([`msr`]); anything else, a reserved bit, a non-canonical address: #GP(0) |
//! | I/O | the I/O bus ([`port_io`]): devices on port ranges, unclaimed ports read all ones; INS and OUTS through memory |
//! | HLT | RIP advanced; with RFLAGS.IF clear, stop (nothing could wake it), else [`Action::Halt`] |
//! | control register | MOV to and from CR0, CR3, CR4, CR8, CLTS, LMSW, SMSW through the guest fields ([`control_register`]) |
//! | second-level fault | the instruction decoded and emulated on an MMIO device ([`mmio`]), open bus outside every device |
//! | VMCALL, VMMCALL, VMXON and kin, XSETBV | #UD |
//! | exception | re-injected (a page fault stops: CR2 is not in the allowlist) |
//! | triple fault, INIT, invalid state, other | stop |
//! | interrupt window | resume |
//!
//! Counters of every exit kind and of what the VMM did are in
//! [`Counters`]: a flood of exits costs only the guest's own time.
//!
//! # Instructions
//!
//! When the hardware gives no instruction length (`svm` without next-RIP,
//! for everything but I/O), and for MMIO, string I/O and control
//! registers without decode assists, the VMM fetches the instruction at
//! CS.base + RIP through the guest's own paging ([`paging`]: none, 32-bit,
//! PAE, four-level) and decodes it with iced-x86 in the code's bitness
//! (64 with EFER.LMA and CS.L, 32 with CR0.PE and CS.D, else 16). A
//! decoded instruction must be one that makes the exit (CPUID for a CPUID
//! exit, and so on): if the guest changed its code or page tables in
//! between, or the bytes cannot be fetched, the guest stops with the
//! reason ([`EmulationFailure`]) rather than have its RIP moved by a
//! wrong length. An emulated instruction retires as on a CPU: RIP moves
//! on (wrapping at the code's width; a non-canonical one is #GP) and an
//! STI or MOV SS interrupt shadow ends.
//!
//! # Events
//!
//! Faults are injected through `registers.event` in the kernel's event
//! encoding (`kernel_core::virt::Event`). An event the exit interrupted
//! (word 18 of the reply) is kept for re-injection: an instruction exit
//! with an event pending leaves the instruction for after the event (it
//! exits again), a second-level fault during delivery stops the guest,
//! and a fault while an event is pending combines with it by the CPU's
//! double-fault rules (#DF, or a triple-fault stop).
//!
//! # Known gaps
//!
//! Kept but not yet loaded into the hardware (the kernel's allowlist has
//! no fields for them): PAT, the SYSENTER and SYSCALL MSRs, PAE's PDPTEs.
//! Single-stepping (RFLAGS.TF) over an emulated instruction raises no
//! #DB (DR6 is not in the allowlist). The PC platform's interrupt
//! controllers and timers ([`platform`]) and the Linux boot builders
//! ([`boot`]) exist and are host-tested, but the exit loop does not use
//! them yet (`docs/PLATFORM.md`, "Wiring"): no interrupt reaches a guest.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod access_size;
pub mod boot;
mod context;
pub mod control_register;
pub mod counters;
pub mod cpu;
pub mod cpuid;
pub mod devices;
mod fault;
pub mod gdb;
pub mod guest;
pub mod mmio;
pub mod msr;
mod operand;
pub mod paging;
pub mod platform;
pub mod port_io;
pub mod stop;
pub mod vmm;

#[cfg(test)]
mod test_support;

pub use access_size::AccessSize;
pub use counters::Counters;
pub use guest::{Clock, GuestMemory, Unbacked, VcpuState};
pub use mmio::MmioDevice;
pub use port_io::{PortDevice, RegisterError};
pub use stop::{EmulationFailure, Stop};
pub use vmm::{Action, Config, Vmm};
