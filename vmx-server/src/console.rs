//! The guest's console output as lines: the bytes COM1 transmits,
//! assembled into lines for the host's log. Control characters other than
//! tab are dropped (carriage returns among them), bytes above 0x7E become
//! `?`, and a line is handed over at each newline or when it reaches
//! [`LINE_BYTES`], so what the host prints is printable ASCII of bounded
//! length whatever the guest sends.

/// The longest line handed over; a longer one is cut into pieces.
pub const LINE_BYTES: usize = 160;

/// Where finished lines go (the PD prints them with its name).
pub trait LineSink {
    /// One line, without its newline: printable ASCII and tabs only.
    fn write_line(&mut self, line: &str);
}

/// A line being assembled.
#[derive(Clone, Debug, Default)]
pub struct ConsoleLines {
    bytes: heapless::Vec<u8, LINE_BYTES>,
}

impl ConsoleLines {
    /// No line started.
    pub const fn new() -> ConsoleLines {
        ConsoleLines { bytes: heapless::Vec::new() }
    }

    /// Takes one transmitted byte.
    pub fn push(&mut self, byte: u8, sink: &mut dyn LineSink) {
        match byte {
            b'\n' => self.flush(sink),
            b'\t' | 0x20..=0x7e => self.append(byte, sink),
            0x7f..=0xff => self.append(b'?', sink),
            _ => {}
        }
    }

    /// Hands over the line so far (an empty line too: a newline makes one).
    pub fn flush(&mut self, sink: &mut dyn LineSink) {
        // Only printable ASCII and tabs were appended: always UTF-8.
        sink.write_line(core::str::from_utf8(&self.bytes).unwrap_or("?"));
        self.bytes.clear();
    }

    /// Whether part of a line waits for its end.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn append(&mut self, byte: u8, sink: &mut dyn LineSink) {
        if self.bytes.is_full() {
            self.flush(sink);
        }
        // Not full after the flush: cannot fail.
        let _ = self.bytes.push(byte);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::String;
    use std::vec::Vec;

    use super::*;

    #[derive(Default)]
    struct Collected(Vec<String>);

    impl LineSink for Collected {
        fn write_line(&mut self, line: &str) {
            self.0.push(line.into());
        }
    }

    #[test]
    fn lines_end_at_newlines_without_control_characters() {
        let mut lines = ConsoleLines::new();
        let mut sink = Collected::default();
        for byte in b"Linux\tversion\r\n\x1b[0m\xffok\n\n" {
            lines.push(*byte, &mut sink);
        }
        assert_eq!(sink.0, ["Linux\tversion", "[0m?ok", ""]);
        assert!(lines.is_empty());
    }

    #[test]
    fn a_long_line_is_cut_and_a_partial_one_flushed() {
        let mut lines = ConsoleLines::new();
        let mut sink = Collected::default();
        for _ in 0..LINE_BYTES + 3 {
            lines.push(b'x', &mut sink);
        }
        assert_eq!(sink.0.len(), 1);
        assert_eq!(sink.0[0].len(), LINE_BYTES);
        assert!(!lines.is_empty());
        lines.flush(&mut sink);
        assert_eq!(sink.0[1], "xxx");
    }
}
