//! The CLI's one error type.

use std::fmt;

/// Everything that can stop the CLI or a boot test before the kernel runs.
#[derive(Debug)]
pub enum Error {
    /// A system tool is missing and could not be installed.
    MissingTools(String),
    /// Building the kernel failed (cargo's own output says why).
    KernelBuild(String),
    /// The kernel ELF breaks an assumption the boot loaders rely on.
    KernelLayout(String),
    /// grub-mkrescue failed.
    IsoBuild(String),
    /// An emulator could not be started or watched.
    Emulator(String),
    /// The Linux guest's images could not be fetched or built.
    GuestImages(String),
    /// Reading or writing a file failed.
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingTools(message) => write!(formatter, "{message}"),
            Error::KernelBuild(message) => write!(formatter, "kernel build failed: {message}"),
            Error::KernelLayout(message) => write!(formatter, "kernel image layout: {message}"),
            Error::IsoBuild(message) => write!(formatter, "ISO build failed: {message}"),
            Error::Emulator(message) => write!(formatter, "emulator: {message}"),
            Error::GuestImages(message) => write!(formatter, "{message}"),
            Error::Io { context, source } => write!(formatter, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
