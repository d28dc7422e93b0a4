//! What the VMM builds in guest memory before a Linux guest's first
//! instruction (`docs/PLATFORM.md`): the x86 Linux boot protocol's
//! placement of a `bzImage`, its command line and initramfs with the
//! `boot_params` page and an e820 map ([`linux`]), and the ACPI tables
//! that describe the platform's processors and interrupt controllers
//! ([`acpi`]). Both are pure functions of their inputs (the image's
//! bytes, the guest's memory size, the platform's shape), tested on the
//! host; the image is the guest's and is checked as hostile input.

pub mod acpi;
pub mod linux;
