//! The fuzz target's decoder (`bulkhead_harness::decode`): what bytes
//! decode to, and that the seed corpus in `tests/harness/fuzz/corpus/ops`
//! decodes to sequences that run cleanly and do something.

use std::path::PathBuf;

use bulkhead_harness::decode::{ESCAPE, MAX_OPS, ops};
use bulkhead_harness::driver::Addr::{In, R};
use bulkhead_harness::driver::Op::{Copy, Delete, Mint, Move, Mutate, Raw, Retype, Revoke};
use bulkhead_harness::driver::rights::{RWGP, W};
use bulkhead_harness::driver::types::{CNODE, ENDPOINT};
use bulkhead_harness::driver::{Type, results, run};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ops");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .expect("the seed corpus")
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).expect("a seed")))
        .collect();
    files.sort();
    files
}

#[test]
fn bytes_decode_to_the_documented_operations() {
    let bytes = [0, 1, 3, 0, 0, 0, 3, 2, 2, 5, 3, 2, 1, 1, 6, 5, 15, 6, 3, 5, 5];
    assert_eq!(
        ops(&bytes),
        [
            Retype { untyped: 1, kind: ENDPOINT, size_bits: 0, root: 0, node: 0, node_depth: 0, offset: 3, count: 2 },
            Mint { dest: R(5), src: R(3), rights: W, badge: 1 },
            Copy { dest: R(6), src: R(5), rights: RWGP },
            Revoke { slot: R(3) },
            Delete { slot: R(5) },
        ]
    );
    // An address byte from 160: a slot of the CNode at 3 + byte % 9.
    assert_eq!(ops(&[3, 166, 9, 2]), [Move { dest: In(7, 1, 2), src: R(2) }]);
    // Escaped words, the guard form of Mutate's data, a Raw call.
    let mut escaped = vec![0, ESCAPE];
    escaped.extend_from_slice(&7_u64.to_le_bytes());
    escaped.extend_from_slice(&[1, 4, 0, 1, 3, 1]);
    assert_eq!(
        ops(&escaped),
        [Retype { untyped: 7, kind: CNODE, size_bits: 4, root: 0, node: 0, node_depth: 64, offset: 3, count: 1 }]
    );
    assert_eq!(ops(&[4, 8, 7, 9]), [Mutate { dest: R(8), src: R(7), data: (1 << 6) | 1 }]);
    assert_eq!(ops(&[7, 1, 1, 3, 0]), [Raw { cptr: 1, label: 1, words: 3, extra: 0 }]);
    let mut unknown_type = vec![0, 1, ESCAPE];
    unknown_type.extend_from_slice(&99_u64.to_le_bytes());
    assert!(matches!(ops(&unknown_type)[0], Retype { kind: Type(99), .. }));
    // An escaped type word is never one the spec leaves out (3, 7 to 13):
    // the fuzz target's first find was type 13, which made the spec panic.
    let outside = [0, 1, ESCAPE, 13, 0];
    assert!(matches!(ops(&outside)[0], Retype { kind: Type(27), .. }));
    run(&ops(&outside)).expect("an unknown type is refused");
}

#[test]
fn decoding_is_total_and_bounded() {
    assert!(ops(&[]).is_empty());
    assert_eq!(ops(&[5; 4 * MAX_OPS]).len(), MAX_OPS);
    // Pseudo-random bytes (a fixed linear congruential stream) always
    // decode, and the sequences they make run without a violation.
    let mut state = 0x5eed_u64;
    for length in [1, 7, 64, 300, 2_000] {
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                state.to_le_bytes()[7]
            })
            .collect();
        if let Err(violation) = run(&ops(&bytes)) {
            panic!("{violation}");
        }
    }
}

#[test]
fn the_seed_corpus_runs_cleanly_and_reaches_every_operation() {
    let seeds = corpus();
    assert!(seeds.len() >= 4, "a few seeds");
    let mut kinds = std::collections::BTreeSet::new();
    for (name, bytes) in seeds {
        let decoded = ops(&bytes);
        let codes = results(&decoded).unwrap_or_else(|violation| panic!("{name}: {violation}"));
        assert!(codes.iter().filter(|code| **code == Some(0)).count() >= 2, "{name} has successes: {codes:?}");
        kinds.extend(decoded.iter().map(|op| op.name()));
    }
    assert_eq!(kinds.len(), 8, "every operation kind appears in the corpus: {kinds:?}");
}
