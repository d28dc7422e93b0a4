//! Turns the kernel's serial byte stream into readable text.
//!
//! COM1 carries two kinds of output, told apart byte by byte:
//!
//! - plain text (firmware, early boot, the banner, panics and exception
//!   reports), which never holds the bytes 0x00 or 0xff and is passed
//!   through untouched, terminal escape sequences included;
//! - defmt frames (the kernel's structured log): the byte 0xff, then one
//!   rzCOBS-encoded defmt frame, then the 0x00 that ends it. Each frame
//!   becomes one line such as
//!   `0.001234 [INFO ] memory: 127 MiB usable (kernel/src/main.rs:42)`.
//!
//! [`ConsoleDecoder`] is a streaming state machine: bytes may arrive in any
//! chunks, down to one at a time, and the output does not depend on where
//! the chunks were cut. A frame that cannot be decoded becomes a one-line
//! `[defmt: undecodable frame (N bytes): <reason>]` and decoding goes on.
//!
//! With a [`Symbolizer`] attached, exception-report lines (`rip …`,
//! `#N …`) get function names and source lines; such lines are held until
//! their newline, every other line streams through as it arrives.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use defmt_decoder::{DecodeError, Encoding, Locations, Table};

use crate::symbolize::{self, Symbolizer};

/// The byte that starts a defmt frame on the wire.
const FRAME_MARKER: u8 = 0xff;

/// The byte that ends a defmt frame (rzCOBS's frame separator).
const FRAME_TERMINATOR: u8 = 0x00;

/// The longest encoded frame accepted. A 0xff that is not followed by a
/// 0x00 within this many bytes was not a frame marker (a stray byte from
/// firmware): the bytes after it are shown as plain text again.
pub const MAX_ENCODED_FRAME_BYTES: usize = 16 * 1024;

/// The longest exception-report line held back for annotation; a longer one
/// is passed through unannotated.
const MAX_HELD_LINE_BYTES: usize = 4096;

/// How many decoded bytes a frame shown as hex lists before eliding the rest.
const MAX_HEX_DUMP_BYTES: usize = 256;

/// Why a [`ConsoleDecoder`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleError {
    /// The kernel ELF's defmt table could not be read (version mismatch,
    /// malformed symbols, not an ELF file).
    DefmtTable(String),
    /// The DWARF locations of the defmt log statements could not be read.
    DefmtLocations(String),
    /// The kernel's defmt uses a frame encoding other than rzCOBS, which
    /// the serial protocol cannot carry.
    UnsupportedEncoding(String),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefmtTable(reason) => {
                write!(formatter, "cannot read the kernel's defmt table: {reason}")
            }
            Self::DefmtLocations(reason) => {
                write!(formatter, "cannot read the kernel's defmt locations: {reason}")
            }
            Self::UnsupportedEncoding(encoding) => write!(
                formatter,
                "the kernel's defmt encoding is {encoding}, but the serial console carries only rzCOBS"
            ),
        }
    }
}

impl std::error::Error for ConsoleError {}

/// The kernel's defmt table and the source location of each log statement.
struct DefmtTable {
    /// Format strings by index.
    table: Table,
    /// `file:line` of each log statement, by the same index.
    locations: Locations,
}

/// What the decoder is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain text.
    Text,
    /// Inside a defmt frame: a 0xff was seen, its 0x00 not yet.
    Frame,
}

/// What the current plain-text line is, as far as the symbolizer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineClass {
    /// Only whitespace, or a prefix of `rip ` or `#<digits> `, so far: held.
    Undecided,
    /// An exception-report line: held until its newline, then annotated.
    Report,
    /// Any other line: passed through as it arrives.
    Plain,
}

/// The streaming serial-console decoder. See the [module docs](self).
pub struct ConsoleDecoder {
    /// The defmt table, or `None` to show frames as hex.
    defmt: Option<DefmtTable>,
    /// Annotates exception-report lines, if set.
    symbolizer: Option<Symbolizer>,
    /// defmt source paths under this directory are shown relative to it.
    source_root: PathBuf,
    /// Text or frame.
    mode: Mode,
    /// The encoded bytes of the current frame, after its 0xff.
    frame: Vec<u8>,
    /// The held part of the current plain-text line (with a symbolizer).
    held_line: Vec<u8>,
    /// What the current plain-text line is (with a symbolizer).
    line_class: LineClass,
    /// Whether the output so far ends with a newline (or is empty), so a
    /// frame's line can start on a line of its own.
    output_at_line_start: bool,
    /// The start of a UTF-8 sequence that [`Self::feed`]'s last chunk ended
    /// in the middle of.
    incomplete_utf8: Vec<u8>,
}

impl fmt::Debug for ConsoleDecoder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ConsoleDecoder")
            .field("has_defmt_table", &self.defmt.is_some())
            .field("symbolizer", &self.symbolizer)
            .field("mode", &self.mode)
            .field("frame_bytes", &self.frame.len())
            .field("held_line_bytes", &self.held_line.len())
            .finish_non_exhaustive()
    }
}

impl ConsoleDecoder {
    /// Builds a decoder for the kernel whose ELF is `kernel_elf`; its
    /// `.defmt` section gives the format strings and its DWARF the
    /// `file:line` of each log statement. With `None`, or an ELF without a
    /// `.defmt` section, frames are shown as hex.
    pub fn new(kernel_elf: Option<&[u8]>) -> Result<Self, ConsoleError> {
        let defmt = match kernel_elf {
            Some(elf) => read_defmt_table(elf)?,
            None => None,
        };
        Ok(Self {
            defmt,
            symbolizer: None,
            source_root: symbolize::default_source_root().to_path_buf(),
            mode: Mode::Text,
            frame: Vec::new(),
            held_line: Vec::new(),
            line_class: LineClass::Undecided,
            output_at_line_start: true,
            incomplete_utf8: Vec::new(),
        })
    }

    /// Annotates exception-report lines with `symbolizer`. Plain-text lines
    /// that could be report lines (`rip …`, `#N …`) are then held until
    /// their newline.
    #[must_use]
    pub fn with_symbolizer(mut self, symbolizer: Symbolizer) -> Self {
        self.symbolizer = Some(symbolizer);
        self
    }

    /// Shows defmt source paths relative to `root` instead of
    /// [`symbolize::default_source_root`].
    #[must_use]
    pub fn with_source_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.source_root = root.into();
        self
    }

    /// Whether frames are decoded (true) or shown as hex (false).
    pub fn has_defmt_table(&self) -> bool {
        self.defmt.is_some()
    }

    /// Feeds raw serial bytes and returns the text to show now. Invalid
    /// UTF-8 becomes U+FFFD; a UTF-8 sequence cut by the chunk's end is kept
    /// for the next call. Use [`Self::feed_bytes`] for the exact bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        let mut output = std::mem::take(&mut self.incomplete_utf8);
        self.process(bytes, &mut output);
        let complete_len = output.len() - incomplete_utf8_suffix_len(&output);
        self.incomplete_utf8 = output.split_off(complete_len);
        String::from_utf8_lossy(&output).into_owned()
    }

    /// Ends the stream (or marks a pause in it) and returns what was held
    /// back: a frame cut off by the end of the stream is reported as
    /// undecodable and a held report line is flushed, annotated. The decoder
    /// can go on being fed afterwards.
    pub fn finish(&mut self) -> String {
        let mut output = std::mem::take(&mut self.incomplete_utf8);
        self.flush(&mut output);
        String::from_utf8_lossy(&output).into_owned()
    }

    /// Like [`Self::feed`], but returns the output bytes exactly: plain text
    /// (and firmware output that is not UTF-8) byte for byte.
    pub fn feed_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut output = std::mem::take(&mut self.incomplete_utf8);
        self.process(bytes, &mut output);
        output
    }

    /// Like [`Self::finish`], but returns the output bytes exactly.
    pub fn finish_bytes(&mut self) -> Vec<u8> {
        let mut output = std::mem::take(&mut self.incomplete_utf8);
        self.flush(&mut output);
        output
    }

    /// The demultiplexer: splits `bytes` into plain text and frames.
    fn process(&mut self, mut bytes: &[u8], output: &mut Vec<u8>) {
        while !bytes.is_empty() {
            match self.mode {
                Mode::Text => {
                    let text_end = bytes
                        .iter()
                        .position(|&byte| byte == FRAME_MARKER || byte == FRAME_TERMINATOR)
                        .unwrap_or(bytes.len());
                    self.text(&bytes[..text_end], output);
                    if let Some(&byte) = bytes.get(text_end) {
                        // A 0x00 outside a frame is a stray rzCOBS separator
                        // (defmt's encoder sends one before its first frame)
                        // and shows nothing: it is dropped.
                        if byte == FRAME_MARKER {
                            self.mode = Mode::Frame;
                            self.frame.clear();
                        }
                        bytes = &bytes[text_end + 1..];
                    } else {
                        bytes = &[];
                    }
                }
                Mode::Frame => {
                    if self.frame.is_empty() {
                        // Separators right after the marker (defmt's encoder
                        // starts its first frame with one) end no frame.
                        let leading_zeros = bytes.iter().take_while(|&&byte| byte == FRAME_TERMINATOR).count();
                        bytes = &bytes[leading_zeros..];
                    }
                    // Look no further than one byte past the longest frame,
                    // so that where the chunks were cut does not matter.
                    let room = (MAX_ENCODED_FRAME_BYTES + 1).saturating_sub(self.frame.len());
                    let window = &bytes[..bytes.len().min(room)];
                    if let Some(frame_end) = window.iter().position(|&byte| byte == FRAME_TERMINATOR) {
                        self.frame.extend_from_slice(&window[..frame_end]);
                        bytes = &bytes[frame_end + 1..];
                        self.mode = Mode::Text;
                        let encoded = std::mem::take(&mut self.frame);
                        let line = self.frame_line(&encoded);
                        self.emit_frame_line(&line, output);
                    } else {
                        self.frame.extend_from_slice(window);
                        bytes = &bytes[window.len()..];
                        if self.frame.len() > MAX_ENCODED_FRAME_BYTES {
                            self.recover_from_overlong_frame(output);
                        }
                    }
                }
            }
        }
    }

    /// The current frame has grown past [`MAX_ENCODED_FRAME_BYTES`] without
    /// a 0x00, so its 0xff was not a frame marker (a stray byte from
    /// firmware): says so, then takes the bytes after it as input again,
    /// in text mode.
    fn recover_from_overlong_frame(&mut self, output: &mut Vec<u8>) {
        let notice = format!(
            "[defmt: undecodable frame (more than {MAX_ENCODED_FRAME_BYTES} bytes): \
             no 0x00 ends it; showing its bytes as text]\n"
        );
        self.emit_frame_line(&notice, output);
        let bytes = std::mem::take(&mut self.frame);
        self.mode = Mode::Text;
        // The bytes hold no 0x00, and fewer than the longest frame follow
        // any 0xff among them, so this cannot come back here: no deeper
        // recursion.
        self.process(&bytes, output);
    }

    /// Handles a run of plain text (no 0x00, no 0xff).
    fn text(&mut self, text: &[u8], output: &mut Vec<u8>) {
        let Some(last) = text.last() else {
            return;
        };
        if self.symbolizer.is_none() {
            output.extend_from_slice(text);
            self.output_at_line_start = *last == b'\n';
            return;
        }
        for &byte in text {
            if byte == b'\n' {
                if self.line_class != LineClass::Plain {
                    self.flush_held_line(output);
                }
                output.push(b'\n');
                self.output_at_line_start = true;
                self.line_class = LineClass::Undecided;
                continue;
            }
            if self.line_class == LineClass::Plain {
                output.push(byte);
                self.output_at_line_start = false;
                continue;
            }
            self.held_line.push(byte);
            if self.line_class == LineClass::Undecided {
                self.line_class = classify_line_start(&self.held_line);
            }
            let overlong = self.held_line.len() > MAX_HELD_LINE_BYTES;
            if self.line_class == LineClass::Plain || overlong {
                output.append(&mut self.held_line);
                self.output_at_line_start = false;
                self.line_class = LineClass::Plain;
            }
        }
    }

    /// Writes out the held part of the current line, annotated if it is an
    /// exception-report line.
    fn flush_held_line(&mut self, output: &mut Vec<u8>) {
        if self.held_line.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held_line);
        let annotated = match (&self.symbolizer, std::str::from_utf8(&held)) {
            (Some(symbolizer), Ok(line)) if self.line_class == LineClass::Report => {
                Some(symbolizer.annotate_line(line))
            }
            _ => None,
        };
        match annotated {
            Some(line) => output.extend_from_slice(line.as_bytes()),
            None => output.extend_from_slice(&held),
        }
        self.output_at_line_start = false;
    }

    /// Writes a frame's line (ending in '\n') on a line of its own: a
    /// partial text line before it is flushed and ended first.
    fn emit_frame_line(&mut self, line: &str, output: &mut Vec<u8>) {
        self.flush_held_line(output);
        if !self.output_at_line_start {
            output.push(b'\n');
        }
        output.extend_from_slice(line.as_bytes());
        self.output_at_line_start = true;
        self.line_class = LineClass::Undecided;
    }

    /// Flushes everything held back (see [`Self::finish`]).
    fn flush(&mut self, output: &mut Vec<u8>) {
        if self.mode == Mode::Frame {
            let notice = undecodable_line(self.frame.len(), "the stream ended before the frame's 0x00");
            self.frame.clear();
            self.mode = Mode::Text;
            self.emit_frame_line(&notice, output);
        }
        self.flush_held_line(output);
        if self.line_class == LineClass::Report {
            self.line_class = LineClass::Undecided;
        }
    }

    /// The line (ending in '\n') that shows the frame whose encoded bytes,
    /// between its 0xff and its 0x00, are `encoded`.
    fn frame_line(&self, encoded: &[u8]) -> String {
        let decoded = match rzcobs_decode(encoded) {
            Ok(decoded) => decoded,
            Err(reason) => return undecodable_line(encoded.len(), reason),
        };
        let Some(defmt) = &self.defmt else {
            return hex_dump_line(&decoded);
        };
        let index = match decoded.as_slice() {
            [low, high, ..] => u16::from_le_bytes([*low, *high]),
            _ => return undecodable_line(encoded.len(), "shorter than a format index"),
        };
        let (frame, consumed) = match defmt.table.decode(&decoded) {
            Ok(decoded_frame) => decoded_frame,
            Err(DecodeError::UnexpectedEof) => {
                return undecodable_line(
                    encoded.len(),
                    &format!("format {index:#06x} needs more bytes than the frame has"),
                );
            }
            Err(DecodeError::Malformed) => {
                return undecodable_line(
                    encoded.len(),
                    &format!("format {index:#06x} is not in the kernel's defmt table, or its arguments are malformed"),
                );
            }
        };
        // Only rzCOBS's zero padding may follow the frame's last argument.
        let unused = decoded.get(consumed..).unwrap_or_default();
        let unused_len = unused.len() - unused.iter().rev().take_while(|&&byte| byte == 0).count();
        if unused_len > 0 {
            return undecodable_line(
                encoded.len(),
                &format!("format {index:#06x} left {unused_len} bytes unused; is the kernel ELF the one that runs?"),
            );
        }

        let mut line = String::new();
        if let Some(timestamp) = frame.display_timestamp() {
            let _ = write!(line, "{timestamp} ");
        }
        if let Some(level) = frame.level() {
            let _ = write!(line, "[{:<5}] ", level.as_str().to_uppercase());
        }
        push_escaped(&mut line, &frame.display_message().to_string());
        if let Some(location) = defmt.locations.get(&frame.index()) {
            let file = symbolize::display_source_path(&location.file, &self.source_root);
            let _ = write!(line, " ({file}:{})", location.line);
        }
        line.push('\n');
        line
    }
}

/// Reads the defmt table and log-statement locations of `elf`; `None` if it
/// has no `.defmt` section.
fn read_defmt_table(elf: &[u8]) -> Result<Option<DefmtTable>, ConsoleError> {
    let table = Table::parse(elf).map_err(|error| ConsoleError::DefmtTable(format!("{error:#}")))?;
    let Some(table) = table else {
        return Ok(None);
    };
    match table.encoding() {
        Encoding::Rzcobs => {}
        other => return Err(ConsoleError::UnsupportedEncoding(format!("{other:?}"))),
    }
    let locations = table.get_locations(elf).map_err(|error| ConsoleError::DefmtLocations(format!("{error:#}")))?;
    Ok(Some(DefmtTable { table, locations }))
}

/// What the start of a held line (no newline in it) makes it.
fn classify_line_start(line: &[u8]) -> LineClass {
    let start = line.iter().position(|byte| !matches!(byte, b' ' | b'\t' | b'\r')).unwrap_or(line.len());
    let rest = &line[start..];
    if rest.is_empty() {
        return LineClass::Undecided;
    }
    const RIP: &[u8] = b"rip";
    if rest.starts_with(b"r") {
        return match rest.get(RIP.len()) {
            None if RIP.starts_with(rest) => LineClass::Undecided,
            Some(b' ' | b'\t') if rest.starts_with(RIP) => LineClass::Report,
            _ => LineClass::Plain,
        };
    }
    let Some(after_hash) = rest.strip_prefix(b"#") else {
        return LineClass::Plain;
    };
    let digits = after_hash.iter().take_while(|byte| byte.is_ascii_digit()).count();
    match after_hash.get(digits) {
        None => LineClass::Undecided,
        Some(b' ' | b'\t') if digits > 0 => LineClass::Report,
        Some(_) => LineClass::Plain,
    }
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 sequence
/// that the next bytes may complete.
fn incomplete_utf8_suffix_len(bytes: &[u8]) -> usize {
    // A sequence is at most 4 bytes long, so its start is among the last 3.
    for suffix_len in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - suffix_len];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: the start is further back
        }
        let sequence_len = match byte {
            0b1100_0000..=0b1101_1111 => 2,
            0b1110_0000..=0b1110_1111 => 3,
            0b1111_0000..=0b1111_0111 => 4,
            _ => 1,
        };
        return if sequence_len > suffix_len { suffix_len } else { 0 };
    }
    0
}

/// Undoes rzCOBS (reverse zero-compressing COBS), defmt's default frame
/// encoding; `encoded` is one frame without its 0x00. rzCOBS is decoded
/// from the end: each code byte describes the bytes before it.
fn rzcobs_decode(encoded: &[u8]) -> Result<Vec<u8>, &'static str> {
    const TRUNCATED: &str = "malformed rzCOBS: a code byte promises more bytes than precede it";
    let mut reversed = Vec::with_capacity(encoded.len() * 2);
    let mut bytes = encoded.iter().rev().copied();
    while let Some(code) = bytes.next() {
        match code {
            0x00 => return Err("malformed rzCOBS: a 0x00 inside the frame"),
            // Seven bytes, LSB first in stream order: a 1 bit is a zero
            // byte, a 0 bit a byte from the stream.
            0x01..=0x7f => {
                for bit in 0..7 {
                    if code & (1 << (6 - bit)) == 0 {
                        reversed.push(bytes.next().ok_or(TRUNCATED)?);
                    } else {
                        reversed.push(0);
                    }
                }
            }
            // `n + 7` bytes from the stream, then a zero byte.
            0x80..=0xfe => {
                reversed.push(0);
                for _ in 0..(code & 0x7f) + 7 {
                    reversed.push(bytes.next().ok_or(TRUNCATED)?);
                }
            }
            // 134 bytes from the stream, no zero byte.
            0xff => {
                for _ in 0..134 {
                    reversed.push(bytes.next().ok_or(TRUNCATED)?);
                }
            }
        }
    }
    // The last code byte of a frame may stand for up to 7 zero bytes past
    // its end (padding); the defmt decoder ignores them.
    reversed.reverse();
    Ok(reversed)
}

/// `[defmt: undecodable frame (N bytes): reason]` and a newline, where N is
/// the number of encoded bytes between the 0xff and the 0x00.
fn undecodable_line(encoded_len: usize, reason: &str) -> String {
    format!("[defmt: undecodable frame ({encoded_len} bytes): {reason}]\n")
}

/// The line that shows a decoded frame as hex, for lack of a defmt table.
fn hex_dump_line(decoded: &[u8]) -> String {
    let mut line = format!("[defmt: frame ({} bytes), no defmt table:", decoded.len());
    for byte in decoded.iter().take(MAX_HEX_DUMP_BYTES) {
        let _ = write!(line, " {byte:02x}");
    }
    if decoded.len() > MAX_HEX_DUMP_BYTES {
        let _ = write!(line, " … ({} more)", decoded.len() - MAX_HEX_DUMP_BYTES);
    }
    line.push_str("]\n");
    line
}

/// Appends `message` with control characters other than tab escaped
/// (`\n`, `\u{1b}`), so that a frame is always one line and cannot drive
/// the terminal.
fn push_escaped(line: &mut String, message: &str) {
    for character in message.chars() {
        if character.is_control() && character != '\t' {
            line.extend(character.escape_default());
        } else {
            line.push(character);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::test_elf::{self, Placement, TEXT_ADDRESS, TestSymbol};

    /// defmt's rzCOBS encoder (defmt 1.x `encoding/rzcobs.rs`), including
    /// the 0x00 that ends the frame.
    fn rzcobs_encode(data: &[u8]) -> Vec<u8> {
        let mut encoded = Vec::new();
        let mut run: u8 = 0;
        let mut zeros: u8 = 0;
        for &byte in data {
            if run < 7 {
                if byte == 0 {
                    zeros |= 1 << run;
                } else {
                    encoded.push(byte);
                }
                run += 1;
                if run == 7 && zeros != 0 {
                    encoded.push(zeros);
                    run = 0;
                    zeros = 0;
                }
            } else if byte == 0 {
                encoded.push((run - 7) | 0x80);
                run = 0;
                zeros = 0;
            } else {
                encoded.push(byte);
                run += 1;
                if run == 134 {
                    encoded.push(0xff);
                    run = 0;
                    zeros = 0;
                }
            }
        }
        match run {
            0 => {}
            1..=6 => encoded.push((zeros | (0xff << run)) & 0x7f),
            _ => encoded.push((run - 7) | 0x80),
        }
        encoded.push(0);
        encoded
    }

    /// A frame as the kernel sends it: 0xff, rzCOBS, 0x00.
    fn wire_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![FRAME_MARKER];
        frame.extend(rzcobs_encode(payload));
        frame
    }

    /// A defmt log frame payload: index, microsecond timestamp, arguments.
    fn payload(index: u16, timestamp_us: u64, arguments: &[u8]) -> Vec<u8> {
        let mut payload = index.to_le_bytes().to_vec();
        payload.extend(timestamp_us.to_le_bytes());
        payload.extend_from_slice(arguments);
        payload
    }

    fn defmt_symbol(index: u64, tag: &str, data: &str) -> TestSymbol {
        TestSymbol {
            name: format!(
                r#"{{"package":"bulkhead-kernel","tag":"{tag}","data":"{data}","disambiguator":"{index}","crate_name":"bulkhead_kernel"}}"#
            ),
            placement: Placement::Defmt,
            value: index,
            size: 1,
        }
    }

    fn absolute_symbol(name: &str) -> TestSymbol {
        TestSymbol { name: name.to_owned(), placement: Placement::Absolute, value: 0, size: 0 }
    }

    const MEMORY_INDEX: u16 = 2;
    const DEVICE_INDEX: u16 = 3;
    const PRINTLN_INDEX: u16 = 4;

    /// A kernel-like ELF with a defmt table and two functions.
    fn kernel_elf_with_encoding(encoding: &str) -> Vec<u8> {
        test_elf::build(&[
            absolute_symbol("_defmt_version_ = 4"),
            absolute_symbol(&format!("_defmt_encoding_ = {encoding}")),
            defmt_symbol(1, "defmt_timestamp", "{=u64:us}"),
            defmt_symbol(u64::from(MEMORY_INDEX), "defmt_info", "memory: {=u32} MiB usable"),
            defmt_symbol(u64::from(DEVICE_INDEX), "defmt_warn", "device says {=str}"),
            defmt_symbol(u64::from(PRINTLN_INDEX), "defmt_println", "plain {=u8}"),
            TestSymbol::function("_ZN15bulkhead_kernel4trap8dispatch17h0123456789abcdefE", TEXT_ADDRESS + 0x100, 0x40),
            TestSymbol::function("_ZN15bulkhead_kernel4trap5entry17hfedcba9876543210E", TEXT_ADDRESS + 0x140, 0x20),
        ])
    }

    fn kernel_elf() -> Vec<u8> {
        kernel_elf_with_encoding("rzcobs")
    }

    fn decoder_with_table() -> ConsoleDecoder {
        ConsoleDecoder::new(Some(&kernel_elf())).expect("the test ELF's defmt table parses")
    }

    fn decoder_with_symbolizer() -> ConsoleDecoder {
        let elf = kernel_elf();
        let symbolizer = Symbolizer::new(&elf).expect("the test ELF parses");
        ConsoleDecoder::new(Some(&elf)).expect("the test ELF's defmt table parses").with_symbolizer(symbolizer)
    }

    fn decode_all(mut decoder: ConsoleDecoder, chunks: &[&[u8]]) -> Vec<u8> {
        let mut output = Vec::new();
        for chunk in chunks {
            output.extend(decoder.feed_bytes(chunk));
        }
        output.extend(decoder.finish_bytes());
        output
    }

    /// Decodes `input` whole, cut in two at every byte boundary and one
    /// byte at a time, checks that all give the same output (through both
    /// the byte and the text API) and returns it.
    fn decode_at_every_boundary(make_decoder: impl Fn() -> ConsoleDecoder, input: &[u8]) -> String {
        let whole = decode_all(make_decoder(), &[input]);
        for cut in 0..=input.len() {
            let (first, second) = input.split_at(cut);
            assert_eq!(
                decode_all(make_decoder(), &[first, second]),
                whole,
                "output changes when the input is cut at byte {cut}"
            );
        }
        let single_bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_all(make_decoder(), &single_bytes), whole);

        let mut decoder = make_decoder();
        let mut text = String::new();
        for chunk in input.chunks(1) {
            text.push_str(&decoder.feed(chunk));
        }
        text.push_str(&decoder.finish());
        assert_eq!(text, String::from_utf8_lossy(&whole));
        text
    }

    fn no_table() -> ConsoleDecoder {
        ConsoleDecoder::new(None).expect("a decoder without ELF always builds")
    }

    /// Firmware output: OVMF's and GRUB's escape sequences, CRLF, UTF-8,
    /// lines that look almost like report lines, and no final newline.
    const FIRMWARE_TEXT: &str = "BdsDxe: loading Boot0001 \"UEFI QEMU DVD-ROM\"\r\n\
        \x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H\x1b[0m\x1b[37m\x1b[40m\
        Welcome to GRUB!\r\n  ünïcode ✓ banner\n\
        rip: 0xffffffff80000104\n#x 0xffffffff80000104\n   \t\r\n\
        ripple 0xffffffff80000104\nPress ESC in 5 seconds";

    #[test]
    fn plain_text_passes_through_at_every_chunk_boundary() {
        let input = FIRMWARE_TEXT.as_bytes();
        assert_eq!(decode_at_every_boundary(no_table, input), FIRMWARE_TEXT);
        assert_eq!(decode_at_every_boundary(decoder_with_table, input), FIRMWARE_TEXT);
        assert_eq!(decode_at_every_boundary(decoder_with_symbolizer, input), FIRMWARE_TEXT);
    }

    #[test]
    fn firmware_escape_sequences_stream_without_waiting_for_a_newline() {
        let mut decoder = decoder_with_symbolizer();
        assert_eq!(decoder.feed(b"\x1b[2J\x1b[01;01H"), "\x1b[2J\x1b[01;01H");
        assert_eq!(decoder.feed(b"Press ESC in 5 seconds"), "Press ESC in 5 seconds");
        // Whitespace alone may still become a report line: held, then sent
        // with the byte that decides.
        assert_eq!(decoder.feed(b"\r\n  "), "\r\n");
        assert_eq!(decoder.feed(b"x"), "  x");
        assert_eq!(decoder.finish(), "");
    }

    #[test]
    fn text_that_is_not_utf8_passes_through_byte_for_byte() {
        // OVMF's PC-ANSI box drawing is code page 437, not UTF-8.
        let input = b"\xc9\xcd\xcd\xc8 OVMF\r\n";
        assert_eq!(decode_all(no_table(), &[input]), input);
        let mut decoder = decoder_with_symbolizer();
        assert_eq!(decoder.feed_bytes(input), input);
        assert_eq!(decoder.feed(input), "\u{fffd}\u{fffd}\u{fffd}\u{fffd} OVMF\r\n");
    }

    #[test]
    fn utf8_cut_by_a_chunk_boundary_is_completed_by_the_next_chunk() {
        let mut decoder = no_table();
        assert_eq!(decoder.feed("✓".as_bytes().get(..1).expect("3 bytes")), "");
        assert_eq!(decoder.feed("✓".as_bytes().get(1..2).expect("3 bytes")), "");
        assert_eq!(decoder.feed("✓é".as_bytes().get(2..).expect("3 bytes")), "✓é");
        assert_eq!(decoder.feed(b"\xc3"), "");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }

    #[test]
    fn frames_are_decoded_with_timestamp_level_and_message() {
        let mut input = b"booting".to_vec();
        input.extend(wire_frame(&payload(MEMORY_INDEX, 1_234_567, &127_u32.to_le_bytes())));
        input.extend(b"done\n");
        input.extend(wire_frame(&payload(PRINTLN_INDEX, 2_000_000, &[7])));
        assert_eq!(
            decode_at_every_boundary(decoder_with_table, &input),
            "booting\n1.234567 [INFO ] memory: 127 MiB usable\ndone\n2.000000 plain 7\n"
        );
    }

    #[test]
    fn leading_separators_around_the_marker_are_skipped() {
        // defmt's encoder opens its first frame with a 0x00.
        let mut input = vec![FRAME_TERMINATOR, FRAME_MARKER, FRAME_TERMINATOR, FRAME_TERMINATOR];
        input.extend(rzcobs_encode(&payload(MEMORY_INDEX, 5, &[1, 0, 0, 0])));
        input.extend(b"after\n");
        assert_eq!(
            decode_at_every_boundary(decoder_with_table, &input),
            "0.000005 [INFO ] memory: 1 MiB usable\nafter\n"
        );
    }

    #[test]
    fn control_characters_in_frames_are_escaped() {
        let message = b"\x1b[2Jgone\n";
        let mut arguments = u32::try_from(message.len()).expect("short").to_le_bytes().to_vec();
        arguments.extend_from_slice(message);
        let input = wire_frame(&payload(DEVICE_INDEX, 0, &arguments));
        assert_eq!(
            decode_at_every_boundary(decoder_with_table, &input),
            "0.000000 [WARN ] device says \\u{1b}[2Jgone\\n\n"
        );
    }

    #[test]
    fn undecodable_frames_are_reported_and_decoding_goes_on() {
        let good = wire_frame(&payload(MEMORY_INDEX, 1, &[2, 0, 0, 0]));
        let unknown_index = wire_frame(&payload(0x99, 1, &[]));
        // rzCOBS pads with up to 7 zero bytes, which could complete a frame
        // that is short by fewer bytes: this one lacks 9.
        let truncated = wire_frame(&[2, 0, 1, 2, 3]);
        let mut trailing = payload(MEMORY_INDEX, 1, &[2, 0, 0, 0]);
        trailing.push(0x55);
        let trailing = wire_frame(&trailing);
        let bad_rzcobs = [FRAME_MARKER, 0x05, FRAME_TERMINATOR];

        let mut input = Vec::new();
        for frame in [&unknown_index, &truncated, &trailing, &bad_rzcobs[..], &good] {
            input.extend_from_slice(frame);
        }
        input.extend(b"still here\n");
        let encoded_len = |frame: &[u8]| frame.len() - 2;
        let expected = format!(
            "[defmt: undecodable frame ({} bytes): format 0x0099 is not in the kernel's defmt table, or its arguments are malformed]\n\
             [defmt: undecodable frame ({} bytes): format 0x0002 needs more bytes than the frame has]\n\
             [defmt: undecodable frame ({} bytes): format 0x0002 left 1 bytes unused; is the kernel ELF the one that runs?]\n\
             [defmt: undecodable frame (1 bytes): malformed rzCOBS: a code byte promises more bytes than precede it]\n\
             0.000001 [INFO ] memory: 2 MiB usable\n\
             still here\n",
            encoded_len(&unknown_index),
            encoded_len(&truncated),
            encoded_len(&trailing),
        );
        assert_eq!(decode_at_every_boundary(decoder_with_table, &input), expected);
    }

    #[test]
    fn frames_without_a_table_are_shown_as_hex() {
        let payload = [0x02, 0x00, 0x40, 0xe2, 0x01, 0x07, 0x08];
        let mut input = b"boot\n".to_vec();
        input.extend(wire_frame(&payload));
        input.extend(b"after\n");
        assert_eq!(
            decode_at_every_boundary(no_table, &input),
            "boot\n[defmt: frame (7 bytes), no defmt table: 02 00 40 e2 01 07 08]\nafter\n"
        );

        // A kernel ELF without a `.defmt` section gives the same.
        let elf = test_elf::build(&[TestSymbol::function("main", TEXT_ADDRESS, 4)]);
        let decoder = ConsoleDecoder::new(Some(&elf)).expect("an ELF without defmt is fine");
        assert!(!decoder.has_defmt_table());
        assert!(decoder_with_table().has_defmt_table());
        assert_eq!(
            String::from_utf8_lossy(&decode_all(decoder, &[&input])),
            "boot\n[defmt: frame (7 bytes), no defmt table: 02 00 40 e2 01 07 08]\nafter\n"
        );
    }

    #[test]
    fn a_stream_that_ends_inside_a_frame_is_reported_by_finish() {
        let mut input = b"text".to_vec();
        input.extend(&wire_frame(&payload(MEMORY_INDEX, 1, &[2, 0, 0, 0]))[..4]);
        assert_eq!(
            decode_at_every_boundary(decoder_with_table, &input),
            "text\n[defmt: undecodable frame (3 bytes): the stream ended before the frame's 0x00]\n"
        );
        // After finish the decoder starts afresh in text mode.
        let mut decoder = decoder_with_table();
        let _ = decoder.feed(&[FRAME_MARKER, 0x01]);
        let _ = decoder.finish();
        assert_eq!(decoder.feed(b"ok\n"), "ok\n");
    }

    #[test]
    fn a_stray_marker_turns_back_into_text() {
        let text = "A".repeat(MAX_ENCODED_FRAME_BYTES + 10);
        let mut input = b"firmware ".to_vec();
        input.push(FRAME_MARKER);
        input.extend(text.as_bytes());
        input.extend(wire_frame(&payload(MEMORY_INDEX, 1, &[3, 0, 0, 0])));
        input.extend(b"tail\n");
        let expected = format!(
            "firmware \n[defmt: undecodable frame (more than {MAX_ENCODED_FRAME_BYTES} bytes): \
             no 0x00 ends it; showing its bytes as text]\n{text}\n\
             0.000001 [INFO ] memory: 3 MiB usable\ntail\n"
        );
        let whole = decode_all(decoder_with_table(), &[&input]);
        assert_eq!(String::from_utf8_lossy(&whole), expected);
        for chunk_size in [1, 7, 4096, MAX_ENCODED_FRAME_BYTES + 1] {
            let chunks: Vec<&[u8]> = input.chunks(chunk_size).collect();
            assert_eq!(decode_all(decoder_with_table(), &chunks), whole);
        }
    }

    #[test]
    fn report_lines_are_annotated_and_held_until_their_newline() {
        let input = b"  #1 0xffffffff80000140\r\n    rip 0xffffffff80000104  cs 0x8\n\
            at 0xffffffff80000104\n";
        assert_eq!(
            decode_at_every_boundary(decoder_with_symbolizer, input),
            "  #1 0xffffffff80000140 bulkhead_kernel::trap::dispatch+0x3f\r\n    \
             rip 0xffffffff80000104 bulkhead_kernel::trap::dispatch+0x4  cs 0x8\n\
             at 0xffffffff80000104\n"
        );
        // Without a symbolizer the same lines pass through unchanged.
        assert_eq!(decode_at_every_boundary(decoder_with_table, input), String::from_utf8_lossy(input));

        let mut decoder = decoder_with_symbolizer();
        assert_eq!(decoder.feed(b"  #0 0xffffffff80000104"), "");
        assert_eq!(decoder.finish(), "  #0 0xffffffff80000104 bulkhead_kernel::trap::dispatch+0x4");
    }

    #[test]
    fn a_frame_inside_a_report_line_flushes_it_first() {
        let mut input = b"  #0 0xffffffff80000104".to_vec();
        input.extend(wire_frame(&payload(MEMORY_INDEX, 1, &[4, 0, 0, 0])));
        input.extend(b"  #1 0xffffffff80000141\n");
        assert_eq!(
            decode_at_every_boundary(decoder_with_symbolizer, &input),
            "  #0 0xffffffff80000104 bulkhead_kernel::trap::dispatch+0x4\n\
             0.000001 [INFO ] memory: 4 MiB usable\n  \
             #1 0xffffffff80000141 bulkhead_kernel::trap::entry\n"
        );
    }

    #[test]
    fn unusable_kernel_elves_are_errors() {
        let error = ConsoleDecoder::new(Some(b"not an ELF")).expect_err("garbage is rejected");
        assert!(matches!(error, ConsoleError::DefmtTable(_)), "{error:?}");

        let raw = kernel_elf_with_encoding("raw");
        let error = ConsoleDecoder::new(Some(&raw)).expect_err("raw encoding is rejected");
        assert_eq!(error, ConsoleError::UnsupportedEncoding(String::from("Raw")));
        assert!(error.to_string().contains("only rzCOBS"));

        let mut wrong_version = kernel_elf();
        let marker = b"_defmt_version_ = 4";
        let position = wrong_version
            .windows(marker.len())
            .position(|window| window == marker)
            .expect("the version symbol is in the string table");
        wrong_version[position + marker.len() - 1] = b'9';
        let error = ConsoleDecoder::new(Some(&wrong_version)).expect_err("defmt version 9 is rejected");
        assert!(error.to_string().contains("version mismatch"), "{error}");
    }

    #[test]
    fn rzcobs_decoding_undoes_the_defmt_encoder() {
        // Test vectors from defmt's encoder.
        let vectors: &[(&[u8], &[u8])] = &[
            (&[0x00], &[0x7f]),
            (&[0x01], &[0x01, 0x7e]),
            (&[0x00, 0x01], &[0x01, 0x7d]),
            (&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x80]),
        ];
        for (data, encoded) in vectors {
            let mut expected = encoded.to_vec();
            expected.push(0);
            assert_eq!(rzcobs_encode(data), expected);
        }

        // Round trips with zero runs, long non-zero runs and every length
        // up to past the 134-byte block.
        let mut state: u32 = 0x1234_5678;
        for length in 0..400 {
            let data: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    if state.is_multiple_of(5) { 0 } else { state.to_le_bytes()[1] | 1 }
                })
                .collect();
            let encoded = rzcobs_encode(&data);
            let (terminator, body) = encoded.split_last().expect("the terminator is there");
            assert_eq!(*terminator, 0);
            assert!(!body.contains(&0), "rzCOBS output holds no 0x00");
            let decoded = rzcobs_decode(body).expect("the encoder's output decodes");
            assert!(decoded.starts_with(&data), "length {length}");
            let padding = &decoded[data.len()..];
            assert!(padding.len() <= 7 && padding.iter().all(|&byte| byte == 0));
        }
        assert!(rzcobs_decode(&[0x80]).is_err());
        assert!(rzcobs_decode(&[0xff]).is_err());
        assert!(rzcobs_decode(&[0x01, 0x00, 0x7e]).is_err());
    }

    #[test]
    fn report_line_starts_are_classified() {
        let cases: &[(&[u8], LineClass)] = &[
            (b"", LineClass::Undecided),
            (b"  \t\r", LineClass::Undecided),
            (b"  r", LineClass::Undecided),
            (b"  rip", LineClass::Undecided),
            (b"  rip ", LineClass::Report),
            (b"rip\t", LineClass::Report),
            (b"ripe", LineClass::Plain),
            (b"rx", LineClass::Plain),
            (b"#", LineClass::Undecided),
            (b"  #12", LineClass::Undecided),
            (b"  #12 ", LineClass::Report),
            (b"# ", LineClass::Plain),
            (b"#1x", LineClass::Plain),
            (b"\x1b[2J", LineClass::Plain),
        ];
        for (line, class) in cases {
            assert_eq!(classify_line_start(line), *class, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn decoder_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ConsoleDecoder>();
    }
}
