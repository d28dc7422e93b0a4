//! The debug console: `core::fmt` over the kernel's DEBUG_PUTCHAR call,
//! one system call per byte (the kernel collects lines). For early
//! bring-up and tests; the log server replaces it for real protection
//! domains.

use core::fmt;

/// A `core::fmt::Write` sink over DEBUG_PUTCHAR. Writing never fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            crate::arch::debug_putchar(byte);
        }
        Ok(())
    }
}

/// Prints on the debug console, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => {{
        use core::fmt::Write as _;
        // The console never fails.
        let _ = write!($crate::console::Console, $($argument)*);
    }};
}

/// Prints a line on the debug console, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($argument:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::Console, $($argument)*);
    }};
}
