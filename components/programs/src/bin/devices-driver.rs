//! The test system `devices`'s driver (tests/systems/devices.capdl): reads the RTC's seconds through its port capability, is refused a port outside its range, programs the PIT and takes three of its interrupts by polling the device's notification and three by waiting on it (the kernel idles until the device interrupts), acknowledging each, then stops the PIT and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]
// On the host only `main` runs: the driver is built but unused there.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

bulkhead_programs::program!("devices", "devices-driver", run);

use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::{Error, kernel::Kernel};

/// The CMOS index and data ports, and the RTC's seconds register.
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const RTC_SECONDS: u8 = 0x00;
/// A port just past the RTC capability's range.
const OUTSIDE: u16 = 0x72;
/// The PIT's channel 0 data port and its mode/command port.
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, low then high byte, mode 2 (rate generator), binary.
const PIT_RATE_GENERATOR: u8 = 0b0011_0100;
/// Channel 0, low then high byte, mode 0: counting stops until a new
/// count is written, and the output stays low.
const PIT_STOP: u8 = 0b0011_0000;
/// The interrupts a second asked of the PIT.
const PIT_RATE_HZ: u64 = 100;
/// The PIT's line is 0: the loader binds it with the badge `1 << 0`.
const PIT_BADGE: u64 = 1 << 0;
/// The interrupts to take.
const INTERRUPTS: u64 = 3;
/// Polls of the notification before giving up (far more than three
/// interrupts at 100 Hz take).
const MAX_POLLS: u64 = 5_000_000;

/// Programs channel 0 as a rate generator at about `hz`.
fn start_pit(kernel: &mut impl Kernel, ports: Cap<kind::IoPorts>, hz: u64) -> Result<(), Error> {
    let [low, high] = bulkhead_programs::pit_divisor(hz).to_le_bytes();
    ports.out8(kernel, PIT_COMMAND, PIT_RATE_GENERATOR)?;
    ports.out8(kernel, PIT_CHANNEL0, low)?;
    ports.out8(kernel, PIT_CHANNEL0, high)
}

fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_sys::println;
    let rtc: Cap<kind::IoPorts> = Cap::new(names::caps::RTC_IOPORTS);
    let pit: Cap<kind::IoPorts> = Cap::new(names::caps::PIT_IOPORTS);
    let irq: Cap<kind::IrqHandler> = Cap::new(names::caps::PIT_IRQ);
    let notification: Cap<kind::Notification> = Cap::new(names::caps::PIT_IRQ_NOTIFICATION);

    let seconds = match rtc.out8(sys, CMOS_INDEX, RTC_SECONDS).and_then(|()| rtc.in8(sys, CMOS_DATA)) {
        Ok(seconds) if bulkhead_programs::is_bcd_seconds(seconds) => seconds,
        Ok(seconds) => {
            println!("rtc: seconds {seconds:#04x} is not BCD");
            return 1;
        }
        Err(error) => {
            println!("rtc: {error}");
            return 1;
        }
    };
    println!("rtc: seconds {seconds:02x}");
    match rtc.in8(sys, OUTSIDE) {
        Ok(value) => {
            println!("port {OUTSIDE:#x} outside its range read {value:#x}");
            return 1;
        }
        Err(error) => println!("port {OUTSIDE:#x} outside its range: {error}"),
    }

    if let Err(error) = start_pit(sys, pit, PIT_RATE_HZ) {
        println!("programming the pit: {error}");
        return 1;
    }
    println!("pit programmed for {PIT_RATE_HZ} Hz");
    let mut taken = 0;
    let mut polls = 0;
    while taken < INTERRUPTS && polls < MAX_POLLS {
        polls += 1;
        match notification.poll(sys) {
            Ok(badge) if badge & PIT_BADGE != 0 => {
                taken += 1;
                match irq.ack(sys) {
                    Ok(()) => println!("interrupt {taken}: badge {badge:#x}, acknowledged"),
                    Err(error) => {
                        println!("interrupt {taken}: ack failed: {error}");
                        return 1;
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                println!("poll failed: {error}");
                return 1;
            }
        }
    }
    // Then blocked in Wait: with nothing else to run, the kernel idles
    // until the PIT interrupts instead of ending the run.
    for waited in 1..=INTERRUPTS {
        let taken = notification.wait(sys).and_then(|badge| irq.ack(sys).map(|()| badge));
        match taken {
            Ok(badge) => println!("interrupt {waited} waited for: badge {badge:#x}, acknowledged"),
            Err(error) => {
                println!("wait {waited} failed: {error}");
                return 1;
            }
        }
    }
    let stopped = pit.out8(sys, PIT_COMMAND, PIT_STOP).and_then(|()| irq.clear(sys));
    if let Err(error) = stopped {
        println!("stopping the pit: {error}");
        return 1;
    }
    if taken < INTERRUPTS {
        println!("only {taken} interrupts in {polls} polls");
        return 1;
    }
    println!("{taken} interrupts in {polls} polls; the pit stopped");
    0
}
