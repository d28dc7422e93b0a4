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

use bulkhead_capdl_spec::PdInfo;
use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::kernel::Kernel;
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

/// A program's whole life as an echo server: prints each call's badge and
/// word; returns 1 (the exit code) only if serving fails.
pub fn echo_server(kernel: &mut impl Kernel, endpoint: Cap<kind::Endpoint>, reply: Cap<kind::Reply>) -> u64 {
    bulkhead_sys::println!("serving");
    let served = serve_echo(kernel, endpoint, reply, |badge, word| {
        bulkhead_sys::println!("call from badge {badge:#x}: {word}");
    });
    if let Err(error) = served {
        bulkhead_sys::println!("serving failed: {error}");
    }
    1
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
