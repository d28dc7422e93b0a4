//! The kernel command line: whitespace-separated words, each `key=value` or a
//! bare `flag`.
//!
//! The text comes from the bootloader, so the parser accepts any string and
//! never panics. There is no quoting or escaping: a word ends at the first
//! whitespace character, and a word splits into key and value at its first
//! `=` (so `a=b=c` has key `a` and value `b=c`, and `key=` has an empty
//! value).

use core::str::SplitWhitespace;

/// One word of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argument<'a> {
    /// A word without `=`.
    Flag(&'a str),
    /// A word `key=value`, split at its first `=`.
    KeyValue {
        /// The text before the first `=`.
        key: &'a str,
        /// The text after the first `=` (possibly empty).
        value: &'a str,
    },
}

impl<'a> Argument<'a> {
    fn parse(word: &'a str) -> Self {
        match word.split_once('=') {
            Some((key, value)) => Self::KeyValue { key, value },
            None => Self::Flag(word),
        }
    }
}

/// A parsed view of a kernel command line; it borrows the text and copies
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    /// A view of the command line `text`.
    #[must_use]
    pub const fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The whole command line, as given.
    #[must_use]
    pub const fn as_str(&self) -> &'a str {
        self.text
    }

    /// The words, in order.
    #[must_use]
    pub fn iter(&self) -> Arguments<'a> {
        Arguments { words: self.text.split_whitespace() }
    }

    /// The value of the last `key=value` word with this key, or `None` if
    /// there is none. A bare flag of the same name does not count.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .filter_map(|argument| match argument {
                Argument::KeyValue { key: found_key, value } if found_key == key => Some(value),
                Argument::KeyValue { .. } | Argument::Flag(_) => None,
            })
            .last()
    }

    /// Whether the bare word `name` appears. A `name=value` word does not
    /// count.
    #[must_use]
    pub fn has_flag(&self, name: &str) -> bool {
        self.iter().any(|argument| argument == Argument::Flag(name))
    }
}

impl<'a> IntoIterator for &Cmdline<'a> {
    type Item = Argument<'a>;
    type IntoIter = Arguments<'a>;

    fn into_iter(self) -> Arguments<'a> {
        self.iter()
    }
}

/// The iterator over a command line's words, from [`Cmdline::iter`].
#[derive(Clone, Debug)]
pub struct Arguments<'a> {
    words: SplitWhitespace<'a>,
}

impl<'a> Iterator for Arguments<'a> {
    type Item = Argument<'a>;

    fn next(&mut self) -> Option<Argument<'a>> {
        self.words.next().map(Argument::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_flags() {
        let cmdline = Cmdline::new("  console=serial  quiet\tlog=debug\n");
        assert_eq!(cmdline.get("console"), Some("serial"));
        assert_eq!(cmdline.get("log"), Some("debug"));
        assert_eq!(cmdline.get("quiet"), None);
        assert!(cmdline.has_flag("quiet"));
        assert!(!cmdline.has_flag("console"));
        assert_eq!(cmdline.iter().count(), 3);
    }

    #[test]
    fn last_occurrence_wins() {
        let cmdline = Cmdline::new("log=info log=trace");
        assert_eq!(cmdline.get("log"), Some("trace"));
    }

    #[test]
    fn splits_at_first_equals_sign() {
        let cmdline = Cmdline::new("a=b=c empty= =orphan");
        assert_eq!(cmdline.get("a"), Some("b=c"));
        assert_eq!(cmdline.get("empty"), Some(""));
        assert_eq!(cmdline.get(""), Some("orphan"));
    }

    #[test]
    fn empty_and_odd_input() {
        assert_eq!(Cmdline::new("").iter().next(), None);
        assert_eq!(Cmdline::new(" \t\n ").iter().next(), None);
        let unicode = Cmdline::new("clé=värde\u{2003}ünïcode");
        assert_eq!(unicode.get("clé"), Some("värde"));
        assert!(unicode.has_flag("ünïcode"));
    }

    #[test]
    fn iterates_in_order() {
        let cmdline = Cmdline::new("one two=2");
        let mut arguments = (&cmdline).into_iter();
        assert_eq!(arguments.next(), Some(Argument::Flag("one")));
        assert_eq!(arguments.next(), Some(Argument::KeyValue { key: "two", value: "2" }));
        assert_eq!(arguments.next(), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics_and_round_trips_words(text in "\\PC{0,64}") {
            let cmdline = Cmdline::new(&text);
            for argument in cmdline.iter() {
                match argument {
                    Argument::Flag(name) => proptest::prop_assert!(cmdline.has_flag(name)),
                    Argument::KeyValue { key, .. } => proptest::prop_assert!(cmdline.get(key).is_some()),
                }
            }
            proptest::prop_assert_eq!(cmdline.iter().count(), text.split_whitespace().count());
        }
    }
}
