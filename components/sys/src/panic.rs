//! The panic handler binaries opt into with the feature `panic-handler`:
//! the message on the debug console, then exit with code 1.

#[cfg(all(feature = "panic-handler", target_os = "none"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("panic: {info}");
    crate::arch::exit(1)
}
