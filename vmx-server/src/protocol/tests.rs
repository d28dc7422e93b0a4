//! The protocol's encodings: each message round-trips, each malformed
//! message is refused with its reason, and no input makes a decoder panic
//! (property tests over arbitrary labels and words).

extern crate std;

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

fn port_read(port: u64, size: u64) -> Result<Request, Refusal> {
    Request::decode(label::PORT_READ, &[port, size])
}

fn com1() -> Device {
    Device { kind: DeviceKind::Uart16550, base: 0x3f8, bytes: 8, line: 4 }
}

fn disk(base: u64, line: u8) -> Device {
    Device { kind: DeviceKind::VirtioMmio, base, bytes: 0x200, line }
}

#[test]
fn every_request_round_trips() {
    let requests = [
        Request::Describe,
        Request::Stopped,
        Request::Access(Access { space: Space::Port, address: 0x3fd, width: Width::Byte, write: None }),
        Request::Access(Access { space: Space::Port, address: 0x3f8, width: Width::Dword, write: Some(0xdead_beef) }),
        Request::Access(Access { space: Space::Memory, address: 0xfeb0_0000, width: Width::Qword, write: None }),
        Request::Access(Access { space: Space::Memory, address: 0xfeb0_0070, width: Width::Word, write: Some(0xffff) }),
    ];
    for request in requests {
        let (label, words) = request.encode();
        assert_eq!(Request::decode(label, &words), Ok(request), "{request:?}");
    }
}

#[test]
fn malformed_requests_are_refused_with_their_reason() {
    assert_eq!(Request::decode(0x1234, &[]), Err(Refusal::UnknownLabel));
    assert_eq!(Request::decode(0, &[]), Err(Refusal::UnknownLabel));
    assert_eq!(Request::decode(label::DESCRIBE, &[1]), Err(Refusal::WrongLength));
    assert_eq!(Request::decode(label::STOPPED, &[0, 0]), Err(Refusal::WrongLength));
    assert_eq!(Request::decode(label::PORT_READ, &[0x3f8]), Err(Refusal::WrongLength));
    assert_eq!(Request::decode(label::PORT_READ, &[0x3f8, 1, 0]), Err(Refusal::WrongLength));
    assert_eq!(Request::decode(label::MMIO_WRITE, &[0xfeb0_0000, 4]), Err(Refusal::WrongLength));
    assert_eq!(port_read(0x3f8, 3), Err(Refusal::BadSize));
    assert_eq!(port_read(0x3f8, 0), Err(Refusal::BadSize));
    assert_eq!(port_read(0x3f8, 8), Err(Refusal::BadSize), "no port access is eight bytes");
    assert_eq!(port_read(0x1_0000, 1), Err(Refusal::BadPort));
    assert_eq!(Request::decode(label::MMIO_READ, &[0, 16]), Err(Refusal::BadSize));
    assert_eq!(Request::decode(label::PORT_WRITE, &[0x3f8, 1, 0x100]), Err(Refusal::ValueTooWide));
    assert_eq!(Request::decode(label::MMIO_WRITE, &[0, 4, 1 << 32]), Err(Refusal::ValueTooWide));
    assert!(Request::decode(label::MMIO_WRITE, &[0, 8, u64::MAX]).is_ok());
}

#[test]
fn a_reply_is_checked_against_its_access_and_the_lines_driven() {
    let read = Access { space: Space::Port, address: 0x3f8, width: Width::Byte, write: None };
    let write = Access { write: Some(0x41), ..read };
    let driven: Lines = 1 << 4 | 1 << 5;
    assert_eq!(AccessReply::decode(&read, driven, &[0x60, 1 << 4]), Ok(AccessReply { value: 0x60, lines: 1 << 4 }));
    assert_eq!(AccessReply::decode(&write, driven, &[0, 0]), Ok(AccessReply { value: 0, lines: 0 }));
    assert_eq!(AccessReply::decode(&read, driven, &[0x60]), Err(BadReply::WrongLength));
    assert_eq!(AccessReply::decode(&read, driven, &[0x60, 0, 0]), Err(BadReply::WrongLength));
    assert_eq!(AccessReply::decode(&read, driven, &[0x100, 0]), Err(BadReply::BadValue), "wider than the access");
    assert_eq!(AccessReply::decode(&write, driven, &[1, 0]), Err(BadReply::BadValue), "a write reads nothing");
    assert_eq!(AccessReply::decode(&read, driven, &[0, 1 << 3]), Err(BadReply::ForeignLine));
    assert_eq!(AccessReply::decode(&read, driven, &[0, 1 << 16]), Err(BadReply::ForeignLine));
    let reply = AccessReply { value: 0x7f, lines: 1 << 5 };
    assert_eq!(AccessReply::decode(&read, driven, &reply.encode()), Ok(reply));
}

#[test]
fn a_description_round_trips_and_names_its_lines() {
    let mut devices = Devices::new();
    for device in [com1(), disk(0xfeb0_0000, 5), disk(0xfeb0_1000, 6)] {
        devices.push(device).expect("valid and apart");
    }
    let mut words = [0; describe_words(MAX_DEVICES)];
    let written = devices.encode(&mut words);
    assert_eq!(written, describe_words(3));
    assert_eq!(&words[..2], &[PROTOCOL_VERSION, 3]);
    assert_eq!(Devices::decode(&words[..written]), Ok(devices.clone()));
    assert_eq!(devices.lines(), 1 << 4 | 1 << 5 | 1 << 6);
    let access = Access { space: Space::Memory, address: 0xfeb0_11fc, width: Width::Dword, write: None };
    assert_eq!(devices.find(&access).map(|(index, _)| index), Some(2));
    let straddling = Access { address: 0xfeb0_11fe, ..access };
    assert_eq!(devices.find(&straddling), None, "an access past the window's end");
    let port = Access { space: Space::Port, address: 0xfeb0_1000, width: Width::Byte, write: None };
    assert_eq!(devices.find(&port), None, "the same number in the other space");
}

#[test]
fn bad_descriptions_are_refused() {
    let good = {
        let mut devices = Devices::new();
        devices.push(com1()).expect("valid");
        let mut words = vec![0; describe_words(1)];
        devices.encode(&mut words);
        words
    };
    let with = |index: usize, value: u64| {
        let mut words = good.clone();
        words[index] = value;
        Devices::decode(&words)
    };
    assert!(Devices::decode(&good).is_ok());
    assert_eq!(Devices::decode(&[]), Err(BadReply::WrongLength));
    assert_eq!(Devices::decode(&good[..5]), Err(BadReply::WrongLength));
    assert_eq!(with(0, PROTOCOL_VERSION + 1), Err(BadReply::Version));
    assert_eq!(with(1, 2), Err(BadReply::WrongLength));
    assert_eq!(with(1, u64::MAX), Err(BadReply::BadDevice));
    assert_eq!(with(2, 7), Err(BadReply::BadDevice), "an unknown kind");
    assert_eq!(with(3, 0xfffc), Err(BadReply::BadDevice), "ports past 0xFFFF");
    assert_eq!(with(4, 0), Err(BadReply::BadDevice), "an empty range");
    assert_eq!(with(5, 16), Err(BadReply::BadDevice), "no ISA line 16");
    for line in BOARD_LINES {
        assert_eq!(with(5, u64::from(line)), Err(BadReply::BadDevice), "the board drives line {line}");
    }
    assert!(with(5, 3).is_ok() && with(5, 15).is_ok());
    let mut twice = Devices::new();
    twice.push(disk(0xfeb0_0000, 5)).expect("valid");
    assert_eq!(twice.push(disk(0xfeb0_01ff, 6)), Err(BadReply::Overlap));
    assert!(twice.push(Device { kind: DeviceKind::Uart16550, base: 0xfeb0, bytes: 8, line: 4 }).is_ok());
    let wrapping = Device { kind: DeviceKind::VirtioMmio, base: u64::MAX, bytes: 2, line: 5 };
    assert_eq!(twice.push(wrapping), Err(BadReply::BadDevice));
    let mut full = Devices::new();
    for index in 0..MAX_DEVICES as u64 {
        full.push(disk(index * 0x1000, 5)).expect("room");
    }
    assert_eq!(full.push(disk(0x10_0000, 5)), Err(BadReply::BadDevice));
}

fn any_label() -> impl Strategy<Value = u64> {
    prop_oneof![label::DESCRIBE..=label::STOPPED + 1, any::<u64>()]
}

fn any_word() -> impl Strategy<Value = u64> {
    prop_oneof![0_u64..16, 0x3f0_u64..0x400, 0xfeb0_0000_u64..0xfeb0_2000, any::<u64>()]
}

proptest! {
    /// Whatever arrives, decoding either refuses it or gives a request that
    /// encodes back to exactly the same message.
    #[test]
    fn any_request_decodes_to_itself_or_is_refused(
        label in any_label(),
        words in proptest::collection::vec(any_word(), 0..6),
    ) {
        if let Ok(request) = Request::decode(label, &words) {
            let (encoded_label, encoded) = request.encode();
            prop_assert_eq!(encoded_label, label);
            prop_assert_eq!(encoded.as_slice(), &words[..]);
        }
    }

    /// Likewise for replies, as the VMM reads them.
    #[test]
    fn any_reply_decodes_within_its_rules_or_is_refused(
        words in proptest::collection::vec(any_word(), 0..40),
        driven in any::<u16>(),
        size in prop_oneof![Just(1_u64), Just(2), Just(4), Just(8)],
        write in any::<bool>(),
    ) {
        let width = Width::from_bytes(size).expect("a width");
        let access = Access { space: Space::Memory, address: 0, width, write: write.then_some(0) };
        if let Ok(reply) = AccessReply::decode(&access, driven, &words) {
            prop_assert_eq!(reply.lines & !driven, 0);
            prop_assert_eq!(reply.value & !width.mask(), 0);
        }
        if let Ok(devices) = Devices::decode(&words) {
            let mut encoded: Vec<u64> = vec![0; describe_words(devices.len())];
            devices.encode(&mut encoded);
            prop_assert_eq!(encoded, words);
        }
    }
}
