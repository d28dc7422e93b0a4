//! The host side of Bulkhead: builds the kernel, packs the boot ISO, runs it in QEMU or Bochs and decodes what it prints.

pub mod conformance;
pub mod console;
pub mod console_view;
pub mod emulator;
mod error;
pub mod guest_images;
pub mod image;
pub mod kernel_build;
pub mod manifest;
pub mod symbolize;
pub mod test_guest_image;
pub mod tools;
pub mod user_build;

pub use error::Error;
