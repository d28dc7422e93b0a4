//! What the programs of the default system and the test systems share:
//! each binary (`src/bin/`) includes the capability and region names the
//! manifest compiler generated for its image (`build.rs`) and hands them to
//! these functions, so that no program names a slot number.
//!
//! The echo protocol: a client calls with label [`ECHO`] and one word; the
//! server answers label 0 (success) with the word plus the caller's badge,
//! so that each client sees that the server told it apart.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt::Write as _;

pub mod devices;

use bulkhead_capdl_spec::PdInfo;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::kernel::{DebugWriter, Kernel};
use bulkhead_components::{Error, Message};

/// Declares a program at its crate root: includes the names the manifest
/// compiler generated for image `$image` in system `$system` as `mod
/// names` (`names::caps::X`, `names::regions::Y`), names `$run` as the
/// PD's entry ([`bulkhead_sys::pd_entry!`]), and gives the host build an
/// empty `main`.
#[macro_export]
macro_rules! program {
    ($system:literal, $image:literal, $run:path) => {
        /// This image's capabilities and regions, generated from the manifest.
        #[allow(dead_code, unreachable_pub, reason = "generated: not every name is used by every program")]
        mod names {
            include!(concat!(env!("OUT_DIR"), "/names/", $system, "/", $image, ".rs"));
        }

        bulkhead_sys::pd_entry!($run);

        #[cfg(not(target_os = "none"))]
        fn main() {
            eprintln!(
                "this program runs in a Bulkhead protection domain: the host CLI builds it for x86_64-unknown-none"
            );
        }
    };
}

/// The label of an echo request.
pub const ECHO: u64 = 0xec;

/// The PD's name, from the loader's info page.
#[must_use]
pub fn name_of(info: &PdInfo) -> heapless::String<32> {
    let mut name = heapless::String::new();
    let _ = name.push_str(PdInfo::name_str(&info.name_bytes()));
    name
}

/// The answer to an echo request from the holder of `badge`: the word
/// plus the badge, or `None` for a request that is not one.
#[must_use]
pub fn echo_answer(request: &Message, badge: u64) -> Option<u64> {
    if request.label != ECHO {
        return None;
    }
    request.word(0).map(|word| word.wrapping_add(badge))
}

/// Serves echo requests on `endpoint` forever, calling `report` with each
/// caller's badge and word; a malformed request gets InvalidArgument.
///
/// # Errors
///
/// The kernel's refusal of the endpoint or the reply object.
pub fn serve_echo(
    kernel: &mut impl Kernel,
    endpoint: Cap<kind::Endpoint>,
    reply: Cap<kind::Reply>,
    mut report: impl FnMut(u64, u64),
) -> Result<(), Error> {
    let mut incoming = endpoint.recv(kernel, Some(reply))?;
    loop {
        let answer = match echo_answer(&incoming.message, incoming.badge) {
            Some(answer) => {
                report(incoming.badge, incoming.message.word(0).unwrap_or(0));
                Message::new(0, &[answer])
            }
            None => Message::empty(Error::InvalidArgument as u64),
        };
        incoming = endpoint.reply_recv(kernel, reply, &answer)?;
    }
}

/// A server's whole life: serves echo requests ([`serve_echo`]), `report`
/// seeing each call's badge and word, until the kernel refuses it; prints
/// why and returns the exit code 1 (a server has failed when it stops).
pub fn run_echo_server(
    kernel: &mut impl Kernel,
    endpoint: Cap<kind::Endpoint>,
    reply: Cap<kind::Reply>,
    report: impl FnMut(u64, u64),
) -> u64 {
    if let Err(error) = serve_echo(kernel, endpoint, reply, report) {
        let _ = writeln!(DebugWriter(kernel), "serving failed: {error}");
    }
    1
}

/// [`run_echo_server`] that prints `serving` and each call's badge and word.
pub fn echo_server(kernel: &mut impl Kernel, endpoint: Cap<kind::Endpoint>, reply: Cap<kind::Reply>) -> u64 {
    bulkhead_sys::println!("serving");
    run_echo_server(kernel, endpoint, reply, |badge, word| {
        bulkhead_sys::println!("call from badge {badge:#x}: {word}");
    })
}

/// Calls the echo server at `endpoint` with `word`; returns its answer.
///
/// # Errors
///
/// The kernel's or the server's error, or TruncatedMessage for an answer
/// without its word.
pub fn call_echo(kernel: &mut impl Kernel, endpoint: Cap<kind::Endpoint>, word: u64) -> Result<u64, Error> {
    let answer = endpoint.call(kernel, &Message::new(ECHO, &[word]))?;
    answer.word(0).ok_or(Error::TruncatedMessage)
}

/// The pattern the writer of the shared page puts at word `index`.
#[must_use]
pub const fn pattern(index: usize) -> u64 {
    0x5eed_0000_0000_0000 ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// An address no manifest of the test systems maps (above the PD layout,
/// below every region).
pub const UNMAPPED: u64 = 0x9000_0000;

/// The label of a page-fault message (`docs/abi.md`, "Faults").
pub const PAGE_FAULT: u64 = 0x1_0000;
/// The label of any other exception's message.
pub const OTHER_FAULT: u64 = 0x1_0001;

/// A fault message in words: `page fault at ADDRESS (rip RIP, error
/// code E)` or `exception VECTOR (rip RIP)`; `None` for another label or
/// a message too short.
#[must_use]
pub fn describe_fault(message: &Message) -> Option<heapless::String<96>> {
    use core::fmt::Write as _;
    let mut text = heapless::String::new();
    match message.label {
        PAGE_FAULT => {
            let (address, rip, code) = (message.word(0)?, message.word(1)?, message.word(2)?);
            write!(text, "page fault at {address:#x} (rip {rip:#x}, error code {code:#x})").ok()?;
        }
        OTHER_FAULT => {
            let (vector, rip) = (message.word(0)?, message.word(2)?);
            write!(text, "exception {vector} (rip {rip:#x})").ok()?;
        }
        _ => return None,
    }
    Some(text)
}

/// Loop iterations between two checks of [`measured_loop`].
pub const ITERATIONS_PER_CHECK: u64 = 1_000;

/// One step of the measured work: a multiply-add the compiler cannot
/// remove or fold, the same in every program that measures its share.
#[must_use]
pub fn work_step(state: u64) -> u64 {
    core::hint::black_box(state.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1))
}

/// Runs [`work_step`] in rounds of [`ITERATIONS_PER_CHECK`] iterations,
/// calling `check` (given the iterations so far) after each round, until
/// it answers true; returns the iterations. Two programs that loop here
/// with checks of equal cost (each one system call) do equal work per
/// iteration, so their iteration counts compare their CPU time.
///
/// # Errors
///
/// The first error `check` returns.
pub fn measured_loop(mut check: impl FnMut(u64) -> Result<bool, Error>) -> Result<u64, Error> {
    let mut state = 1;
    let mut iterations = 0;
    loop {
        for _ in 0..ITERATIONS_PER_CHECK {
            state = work_step(state);
        }
        iterations += ITERATIONS_PER_CHECK;
        if check(iterations)? {
            return Ok(iterations);
        }
    }
}

/// Prints the outcome of a [`measured_loop`] and returns the exit code: 0
/// after `N iterations`, 1 after the failed system call's error.
pub fn report_iterations(kernel: &mut impl Kernel, outcome: Result<u64, Error>) -> u64 {
    let mut console = DebugWriter(kernel);
    match outcome {
        Ok(iterations) => {
            let _ = writeln!(console, "{iterations} iterations");
            0
        }
        Err(error) => {
            let _ = writeln!(console, "a system call failed: {error}");
            1
        }
    }
}

/// `part` as per mille of `whole`, rounded down (0 for an empty whole).
#[must_use]
pub fn per_mille(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    u64::try_from(u128::from(part) * 1000 / u128::from(whole)).unwrap_or(u64::MAX)
}

/// `total / count` in hundredths: `(whole, hundredths)`, rounded down
/// (`(0, 0)` for a count of 0).
#[must_use]
pub fn hundredths(total: u64, count: u64) -> (u64, u64) {
    if count == 0 {
        return (0, 0);
    }
    let scaled = u128::from(total) * 100 / u128::from(count);
    (u64::try_from(scaled / 100).unwrap_or(u64::MAX), u64::try_from(scaled % 100).unwrap_or(0))
}

/// Finds the times a thread lost the CPU from consecutive TSC readings:
/// a step longer than `threshold` ticks means another thread ran (or the
/// thread waited for its budget) in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gaps {
    threshold: u64,
    last: Option<u64>,
    /// How many steps were longer than the threshold.
    pub count: u64,
    /// The longest of them, in ticks.
    pub longest: u64,
}

impl Gaps {
    /// No reading yet; gaps are steps of more than `threshold` ticks.
    #[must_use]
    pub const fn new(threshold: u64) -> Gaps {
        Gaps { threshold, last: None, count: 0, longest: 0 }
    }

    /// Takes the next reading.
    pub fn observe(&mut self, now: u64) {
        if let Some(last) = self.last {
            let step = now.saturating_sub(last);
            if step > self.threshold {
                self.count += 1;
                self.longest = self.longest.max(step);
            }
        }
        self.last = Some(now);
    }
}

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// The PIT channel 0 reload value for about `hz` interrupts a second
/// (clamped to the counter's 16 bits; 0 Hz gives the slowest rate).
#[must_use]
pub fn pit_divisor(hz: u64) -> u16 {
    let divisor = PIT_HZ.checked_div(hz).unwrap_or(u64::MAX).clamp(1, u64::from(u16::MAX));
    u16::try_from(divisor).unwrap_or(u16::MAX)
}

/// Whether `value` is a binary-coded-decimal seconds value (0x00..=0x59),
/// as the RTC's register 0 holds in its default mode.
#[must_use]
pub const fn is_bcd_seconds(value: u8) -> bool {
    value >> 4 < 6 && value & 0xf < 10
}

#[cfg(test)]
mod tests {
    use super::*;

    use bulkhead_components::kernel::Incoming;

    #[test]
    fn the_answer_adds_the_badge_and_refuses_other_labels() {
        assert_eq!(echo_answer(&Message::new(ECHO, &[40]), 2), Some(42));
        assert_eq!(echo_answer(&Message::new(ECHO, &[]), 2), None);
        assert_eq!(echo_answer(&Message::new(1, &[40]), 2), None);
    }

    #[test]
    fn faults_are_described_and_other_messages_are_not() {
        let page = Message::new(PAGE_FAULT, &[0x9000_0000, 0x40_1234, 4]);
        assert_eq!(describe_fault(&page).as_deref(), Some("page fault at 0x90000000 (rip 0x401234, error code 0x4)"));
        let general = Message::new(OTHER_FAULT, &[13, 0, 0x40_0000]);
        assert_eq!(describe_fault(&general).as_deref(), Some("exception 13 (rip 0x400000)"));
        assert_eq!(describe_fault(&Message::new(PAGE_FAULT, &[1, 2])), None);
        assert_eq!(describe_fault(&Message::new(ECHO, &[1, 2, 3])), None);
    }

    #[test]
    fn the_pattern_differs_word_by_word() {
        assert_ne!(pattern(0), pattern(1));
        assert_ne!(pattern(1), pattern(511));
    }
    /// A thread that cannot make any system call (each is refused before
    /// the kernel, as a message without an IPC buffer is) and keeps what
    /// it prints.
    struct Refusing {
        printed: String,
    }

    impl Kernel for Refusing {
        fn syscall(&mut self, _call: bulkhead_components::kernel::Syscall<'_>) -> Result<Incoming, Error> {
            Err(Error::NoIpcBuffer)
        }

        fn debug_putchar(&mut self, byte: u8) {
            self.printed.push(char::from(byte));
        }
    }

    #[test]
    fn the_measured_loop_checks_after_each_round() {
        let mut checks = Vec::new();
        let iterations = measured_loop(|so_far| {
            checks.push(so_far);
            Ok(checks.len() == 3)
        });
        assert_eq!(iterations, Ok(3 * ITERATIONS_PER_CHECK));
        assert_eq!(checks, [ITERATIONS_PER_CHECK, 2 * ITERATIONS_PER_CHECK, 3 * ITERATIONS_PER_CHECK]);
        assert_eq!(measured_loop(|_| Err(Error::RangeError)), Err(Error::RangeError));
        assert_ne!(work_step(1), work_step(2));
    }

    #[test]
    fn reports_print_the_outcome_and_give_the_exit_code() {
        let mut kernel = Refusing { printed: String::new() };
        assert_eq!(report_iterations(&mut kernel, Ok(5_000)), 0);
        assert_eq!(report_iterations(&mut kernel, Err(Error::RangeError)), 1);
        let expected = format!("5000 iterations\na system call failed: {}\n", Error::RangeError);
        assert_eq!(kernel.printed, expected);
    }

    #[test]
    fn a_refused_server_says_why_and_fails() {
        let mut kernel = Refusing { printed: String::new() };
        let mut calls = 0;
        let code = run_echo_server(&mut kernel, Cap::new(1), Cap::new(2), |_, _| calls += 1);
        assert_eq!(code, 1);
        assert_eq!(calls, 0);
        assert_eq!(kernel.printed, format!("serving failed: {}\n", Error::NoIpcBuffer));
    }

    #[test]
    fn shares_and_averages_round_down() {
        assert_eq!(per_mille(1, 5), 200);
        assert_eq!(per_mille(2, 3), 666);
        assert_eq!(per_mille(1, 0), 0);
        assert_eq!(per_mille(u64::MAX, u64::MAX), 1000);
        assert_eq!(hundredths(12_345, 10), (1234, 50));
        assert_eq!(hundredths(2, 3), (0, 66));
        assert_eq!(hundredths(5, 0), (0, 0));
    }

    #[test]
    fn gaps_are_steps_beyond_the_threshold() {
        let mut gaps = Gaps::new(100);
        for now in [1_000, 1_050, 1_150, 1_400, 1_450, 2_450, 2_451] {
            gaps.observe(now);
        }
        assert_eq!((gaps.count, gaps.longest), (2, 1_000));
        let mut backwards = Gaps::new(100);
        backwards.observe(500);
        backwards.observe(10);
        assert_eq!(backwards.count, 0);
    }

    #[test]
    fn the_pit_divisor_fits_sixteen_bits() {
        assert_eq!(pit_divisor(100), 11_931);
        assert_eq!(pit_divisor(0), u16::MAX);
        assert_eq!(pit_divisor(1), u16::MAX);
        assert_eq!(pit_divisor(10_000_000), 1);
    }

    #[test]
    fn bcd_seconds_are_recognised() {
        assert!(is_bcd_seconds(0x00) && is_bcd_seconds(0x59) && is_bcd_seconds(0x07));
        assert!(!is_bcd_seconds(0x60) && !is_bcd_seconds(0x1a) && !is_bcd_seconds(0xff));
    }
}
