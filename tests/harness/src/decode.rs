//! Operation sequences from arbitrary bytes, for the fuzz target
//! (`tests/harness/fuzz`, `docs/VERIFICATION.md`): a small byte code, so
//! that a fuzzer's mutations of a byte move one argument, and so that seed
//! inputs can be written by hand.
//!
//! Each operation is a tag byte (its value modulo 8: Retype, Copy, Mint,
//! Move, Mutate, Delete, Revoke, Raw) followed by its arguments, one byte
//! each, in [`Op`]'s field order. A byte below [`ESCAPE`] maps into the
//! range the random strategy favours (a slot below 16, a rights word
//! below 16, a badge below 4, ...); a byte from [`ESCAPE`] up is followed by
//! the argument as a full word. An address byte below 160 is root slot
//! `byte % 16`; below [`ESCAPE`] it is `In(3 + byte % 9, index, depth)` with
//! one more byte `i`: index `i % 8`, depth `1 + (i / 8) % 3`; from
//! [`ESCAPE`] up, `In(slot, word, word)`. An escaped object type is always
//! one the spec does not know (above 13). Decoding stops when the bytes
//! run out or after [`MAX_OPS`] operations.

use arbitrary::{Result, Unstructured};

use crate::driver::{Addr, Op, Rights, Type, types};

/// Bytes from this value up announce a full word.
pub const ESCAPE: u8 = 240;
/// The most operations one input decodes to.
pub const MAX_OPS: usize = 1_000;

/// The object types by their index byte.
const TYPES: [Type; 6] = [types::UNTYPED, types::CNODE, types::TCB, types::ENDPOINT, types::NOTIFICATION, types::REPLY];

/// The operations `bytes` encode.
#[must_use]
pub fn ops(bytes: &[u8]) -> Vec<Op> {
    let mut input = Unstructured::new(bytes);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < MAX_OPS {
        match op(&mut input) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// A byte below [`ESCAPE`] mapped by `small`, else a full word.
fn word(input: &mut Unstructured<'_>, small: impl Fn(u8) -> u64) -> Result<u64> {
    let byte: u8 = input.arbitrary()?;
    if byte < ESCAPE { Ok(small(byte)) } else { input.arbitrary() }
}

fn slot(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, |byte| u64::from(byte % 16))
}

fn addr(input: &mut Unstructured<'_>) -> Result<Addr> {
    let byte: u8 = input.arbitrary()?;
    if byte < 160 {
        Ok(Addr::R(u64::from(byte % 16)))
    } else if byte < ESCAPE {
        let place: u8 = input.arbitrary()?;
        Ok(Addr::In(3 + u64::from(byte % 9), u64::from(place % 8), 1 + u64::from((place / 8) % 3)))
    } else {
        Ok(Addr::In(slot(input)?, input.arbitrary()?, input.arbitrary()?))
    }
}

fn op(input: &mut Unstructured<'_>) -> Result<Op> {
    let tag: u8 = input.arbitrary()?;
    Ok(match tag % 8 {
        0 => {
            let untyped = slot(input)?;
            let kind_byte: u8 = input.arbitrary()?;
            let kind = if kind_byte < ESCAPE {
                TYPES[usize::from(kind_byte) % TYPES.len()]
            } else {
                // Above the spec's type words, as the strategy's unknown
                // types: the spec refuses to model the words up to 13 it
                // does not cover (frames, paging structures, ...).
                let word: u64 = input.arbitrary()?;
                Type(if word <= 13 { word + 14 } else { word })
            };
            let size_bits = word(input, |byte| u64::from(byte % 16))?;
            let root = slot(input)?;
            let node_byte: u8 = input.arbitrary()?;
            let (node, node_depth) = if node_byte >= ESCAPE {
                (input.arbitrary()?, u64::from(input.arbitrary::<u8>()? % 71))
            } else if node_byte.is_multiple_of(2) {
                (0, 0)
            } else {
                (u64::from((node_byte / 2) % 16), 64)
            };
            let offset = slot(input)?;
            let count = word(input, |byte| u64::from(byte % 4))?;
            Op::Retype { untyped, kind, size_bits, root, node, node_depth, offset, count }
        }
        1 => Op::Copy { dest: addr(input)?, src: addr(input)?, rights: rights(input)? },
        2 => Op::Mint {
            dest: addr(input)?,
            src: addr(input)?,
            rights: rights(input)?,
            badge: word(input, |byte| u64::from(byte % 4))?,
        },
        3 => Op::Move { dest: addr(input)?, src: addr(input)? },
        // A small guard: width `byte % 8`, value `(byte / 8) % 4`.
        4 => Op::Mutate {
            dest: addr(input)?,
            src: addr(input)?,
            data: word(input, |byte| (u64::from((byte / 8) % 4) << 6) | u64::from(byte % 8))?,
        },
        5 => Op::Delete { slot: addr(input)? },
        6 => Op::Revoke { slot: addr(input)? },
        _ => {
            let cptr = slot(input)?;
            // Labels as the strategy makes them: the CNode and Untyped
            // ones and some no capability understands, never a TCB's.
            let label_byte: u8 = input.arbitrary()?;
            let label = if label_byte < ESCAPE {
                u64::from(label_byte % 21)
            } else {
                u64::from(input.int_in_range(1000..=u32::MAX)?)
            };
            let words = input.arbitrary::<u8>()? % 7;
            let extra = input.arbitrary::<u8>()? % 2;
            Op::Raw { cptr, label, words, extra }
        }
    })
}

fn rights(input: &mut Unstructured<'_>) -> Result<Rights> {
    word(input, |byte| u64::from(byte % 16)).map(Rights)
}
