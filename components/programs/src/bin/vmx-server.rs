//! The VMX of one guest (`docs/DEVICES.md`, "The VMM-VMX protocol"): the
//! guest's devices (COM1's 16550A, each disk as virtio-mmio over
//! virtio-blk) in a protection domain of their own, over the guest's RAM
//! and the disk regions as this PD maps them (its info page says where).
//! It waits on the device link's endpoint for its VMM's calls, one per
//! guest access, and answers each with what it read and the levels of its
//! interrupt lines. Every request is decoded as hostile input: a
//! malformed one, or one for nothing it serves, gets an error reply and
//! the VMX serves on. At the guest's stop it flushes the console and
//! prints its counters.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use bulkhead_components::cap::{Cap, kind};
use bulkhead_components::kernel::Incoming;
use bulkhead_components::{Error, Message};
use bulkhead_programs::devices::{self, PdDevices};
use bulkhead_sys::{PdInfo, Sys, println};
use bulkhead_vmx_server::protocol::{MAX_DEVICES, Refusal, describe_words, label};

bulkhead_programs::program!("linux", "vmx-server", run);

/// How many refusals are printed one by one (a VMM that keeps sending
/// bad requests is counted, not allowed to fill the log).
const REFUSALS_PRINTED: u64 = 8;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(info: &PdInfo, sys: &mut Sys) -> u64 {
    let Some((endpoint, Some(reply))) = info.device_link().map(|link| (link.endpoint, link.reply)) else {
        println!("vmx: the info page names no device link (a `call VMM -> VMX` channel)");
        return 1;
    };
    let mut devices = match devices::guest_devices(info) {
        Ok(devices) => devices,
        Err(error) => {
            println!("vmx: cannot set up the guest's devices: {error}");
            return 1;
        }
    };
    println!(
        "vmx: serving COM1, {} disk(s), the virtio console and the network device (loopback)",
        devices.devices().len() - 3
    );
    let endpoint = Cap::<kind::Endpoint>::new(endpoint);
    let reply = Cap::<kind::Reply>::new(reply);
    match serve(sys, &mut devices, endpoint, reply) {
        Err(error) => println!("vmx: the kernel refused the device link: {error}"),
        // Served until the kernel refused: cannot end otherwise.
        Ok(never) => match never {},
    }
    1
}

/// Serves the VMM's calls until the kernel refuses a receive or a reply.
fn serve(
    sys: &mut Sys,
    devices: &mut PdDevices,
    endpoint: Cap<kind::Endpoint>,
    reply: Cap<kind::Reply>,
) -> Result<core::convert::Infallible, Error> {
    let mut incoming: Incoming = endpoint.recv(sys, Some(reply))?;
    let mut words = [0_u64; describe_words(MAX_DEVICES)];
    // TSC ticks (instructions under `-icount`) from each request's arrival
    // to its reply, and how many requests.
    let (mut handling, mut requests) = (0_u64, 0_u64);
    loop {
        let arrived = bulkhead_sys::arch::read_tsc();
        let request = &incoming.message;
        let answer = match devices.handle_message(request.label, request.words(), &mut words) {
            Ok(written) => Message::new(0, &words[..written]),
            Err(refusal) => {
                let refused = devices.counters().refused;
                if refused <= REFUSALS_PRINTED {
                    println!("vmx: refused request {:#x} {:?}: {refusal:?}", request.label, request.words());
                }
                Message::empty(error_code(refusal))
            }
        };
        handling = handling.wrapping_add(bulkhead_sys::arch::read_tsc().wrapping_sub(arrived));
        requests += 1;
        if request.label == label::STOPPED && answer.label == 0 {
            devices::report("vmx", devices);
            println!(
                "vmx: {} ticks in this PD per request on average; {} heap bytes in use",
                handling / requests,
                bulkhead_sys::heap::HEAP.allocated_bytes()
            );
        }
        incoming = endpoint.reply_recv(sys, reply, &answer)?;
    }
}

/// The reply label of a refusal: RangeError for an access to nothing
/// served, InvalidArgument for a malformed request.
fn error_code(refusal: Refusal) -> u64 {
    let error = match refusal {
        Refusal::NotServed => Error::RangeError,
        Refusal::UnknownLabel | Refusal::WrongLength | Refusal::BadSize | Refusal::BadPort | Refusal::ValueTooWide => {
            Error::InvalidArgument
        }
    };
    error as u64
}
