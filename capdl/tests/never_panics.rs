//! The parser and validator take any input without panicking: random
//! bytes, random soups of the language's own tokens, and the example with
//! random pieces cut out or repeated. Each input either checks cleanly or
//! yields errors that point inside the text. Large inputs (hundreds of
//! items over many names, a token repeated thousands of times) finish
//! too, which catches a hang or a blow-up in the parser or validator.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../examples/system.capdl");

/// Fragments of the language, valid and not, for token soups.
const FRAGMENTS: &[&str] = &[
    "pd",
    "region",
    "channel",
    "device",
    "guest",
    "flow",
    "image",
    "priority",
    "budget",
    "period",
    "core",
    "stack",
    "heap",
    "size",
    "page",
    "physical",
    "rights",
    "shared",
    "map",
    "at",
    "call",
    "send",
    "notify",
    "badge",
    "owner",
    "irq",
    "ioports",
    "mmio",
    "pci",
    "memory",
    "vcpus",
    "vmm",
    "vmx",
    "disk",
    "nic",
    "via",
    "from",
    "contents",
    "expose",
    "to",
    "kernel",
    "initrd",
    "cmdline",
    "read",
    "write",
    "grant",
    "grant_reply",
    "r",
    "rw",
    "rwx",
    "a",
    "b",
    "log",
    "{",
    "}",
    "->",
    "<->",
    "..",
    "\n",
    "\n",
    "#",
    "0",
    "1",
    "2",
    "255",
    "256",
    "0x1000",
    "0xffff_ffff_ffff_ffff",
    "18446744073709551615",
    "99999999999999999999",
    "4KiB",
    "2MiB",
    "1GiB",
    "16GiB",
    "1ms",
    "10ms",
    "0us",
    "1s",
    "\"x\"",
    "\"00:1f.2\"",
    "\"",
    "-",
    "<",
    ".",
    ";",
];

fn check(text: &str) {
    if let Err(errors) = bulkhead_capdl::check("soup.capdl", text) {
        assert!(!errors.is_empty());
        let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX).saturating_add(1);
        for error in errors {
            assert!(error.span.line >= 1 && error.span.line <= lines, "{error} outside the text");
            assert!(error.span.column >= 1, "{error}");
            assert!(!error.message.is_empty() && !error.hint.is_empty(), "{error}");
        }
    }
}

/// Checks `text` on a thread of its own and fails if that takes longer
/// than a deadline far beyond what any input here needs (milliseconds):
/// a hang fails the test instead of stalling it. Not a benchmark.
fn check_finishes(text: String) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        check(&text);
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(RecvTimeoutError::Timeout) => panic!("checking a large input did not finish"),
        Err(RecvTimeoutError::Disconnected) => panic!("checking a large input panicked"),
    }
}

/// Statement templates for well-formed blocks with random values: `N`
/// becomes a name, `#` a number, so the validator sees every shape of
/// input the parser accepts.
const BLOCKS: &[&str] = &[
    "pd N {\n image \"i\"\n priority #\n budget #us\n period #ms\n core #\n}\n",
    "pd N {\n image \"i\"\n priority #\n budget #s\n period #us\n core #\n stack #KiB\n}\n",
    "region N {\n size #\n page #\n physical #\n map N at # rw\n map N at # r\n}\n",
    "region N {\n size #GiB\n shared\n rights r\n map N at # rwx\n}\n",
    "channel N {\n rights write\n call N -> N badge #\n notify N -> N badge # rights read\n send N -> N\n}\n",
    "device N {\n owner N\n owner N\n irq #\n ioports #..#\n mmio # size #\n pci \"00:01.0\"\n}\n",
    "device N {\n shared\n owner N\n mmio # size #MiB\n}\n",
    "guest N {\n memory N\n vcpus #\n vmm N\n vmx N\n disk N via N\n expose N to N\n}\n",
    "region N {\n size #\n page #\n contents \"busybox-disk\"\n map N at # rw\n}\n",
    "guest N {\n memory N\n vcpus #\n vmm N\n disk N from N\n disk N from N\n}\n",
    "guest N {\n memory N\n vcpus #\n vmm N\n kernel \"k\"\n initrd \"i\"\n cmdline \"console=ttyS0\tx\"\n image \"g\"\n}\n",
    "flow N -> N\n",
    "flow N <-> N\n",
];
const NAMES: &[&str] = &["a", "b", "c", "d"];
const NUMBERS: &[u64] = &[0, 1, 2, 3, 100, 0x1000, 0x20_0000, 0x4000_0000, 1 << 47, u64::MAX / 2, u64::MAX];

/// The text of `blocks` (indices into `BLOCKS`), each `N` replaced by
/// `name` of the next value's first index and each `#` by the number its
/// second index picks, taking the values in turn, round and round.
fn fill(blocks: &[usize], values: &[(usize, usize)], name: impl Fn(usize) -> String) -> String {
    let mut text = String::new();
    let mut next = values.iter().cycle();
    for &block in blocks {
        for character in BLOCKS[block].chars() {
            let (index, number) = next.next().copied().unwrap_or((0, 0));
            match character {
                'N' => text.push_str(&name(index)),
                '#' => text.push_str(&NUMBERS[number].to_string()),
                other => text.push(other),
            }
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups_never_panic(
        picks in proptest::collection::vec((0..FRAGMENTS.len(), any::<bool>()), 0..120)
    ) {
        let mut text = String::new();
        for (index, newline) in picks {
            text.push_str(FRAGMENTS[index]);
            text.push(if newline { '\n' } else { ' ' });
        }
        check(&text);
    }

    #[test]
    fn cut_and_repeated_examples_never_panic(start in 0..EXAMPLE.len(), length in 0..300usize, repeat in any::<bool>()) {
        let end = (start + length).min(EXAMPLE.len());
        let (start, end) = (EXAMPLE.floor_char_boundary(start), EXAMPLE.floor_char_boundary(end));
        let text = if repeat {
            format!("{}{}", &EXAMPLE[..end], &EXAMPLE[start..])
        } else {
            format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..])
        };
        check(&text);
    }

    #[test]
    fn random_well_formed_manifests_never_panic(
        blocks in proptest::collection::vec(0..BLOCKS.len(), 0..12),
        values in proptest::collection::vec((0..NAMES.len(), 0..NUMBERS.len()), 64),
    ) {
        check(&fill(&blocks, &values, |name| NAMES[name].to_owned()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Hundreds of blocks over 64 names (so most names resolve, some
    /// twice, and the rest get a "did you mean" search over every item),
    /// with numbers small enough that every block parses and the
    /// validator sees them all; then the same followed by one fragment
    /// repeated thousands of times.
    #[test]
    fn large_manifests_finish(
        blocks in proptest::collection::vec(0..BLOCKS.len(), 300..600),
        // NUMBERS[..8]: up to 2^30, so that no size or time overflows.
        values in proptest::collection::vec((0..64usize, 0..8usize), 97),
        fragment in 0..FRAGMENTS.len(),
        repeat in 1000..5000usize,
    ) {
        let mut text = fill(&blocks, &values, |name| format!("n{name}"));
        check_finishes(text.clone());
        for index in 0..repeat {
            text.push_str(FRAGMENTS[fragment]);
            text.push(if index % 64 == 63 { '\n' } else { ' ' });
        }
        check_finishes(text);
    }
}
