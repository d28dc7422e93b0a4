//! Names the kernel addresses in exception reports.
//!
//! The kernel prints its exception reports as plain text, with the faulting
//! instruction pointer and a stack of return addresses:
//!
//! ```text
//!     rip 0xffffffff80104a3c  cs 0x8  rflags 0x10086
//!   #0 0xffffffff80104a3c
//!   #1 0xffffffff80102f10
//! ```
//!
//! [`Symbolizer::annotate_line`] appends, right after each 16-hex-digit
//! address on such a line, the function that holds it and its source line:
//!
//! ```text
//!   #1 0xffffffff80102f10 bulkhead_kernel::trap::dispatch at kernel/src/trap.rs:88
//! ```
//!
//! Names and lines come from the kernel ELF's DWARF (through `addr2line`);
//! where the DWARF says nothing, the ELF symbol table gives at least
//! `function+0xoffset`. Source paths inside the workspace are shown relative
//! to its root.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// The reader over the DWARF sections: a copy that is reference counted
/// and shareable between threads, so a [`Symbolizer`] owns its data and can
/// move to the thread that reads the serial console.
type DwarfReader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// How many entries of the sorted symbol table a lookup walks back from the
/// last symbol that starts at or below the address, to step over aliases and
/// nested labels that end before it.
const SYMBOL_LOOKBACK_ENTRIES: usize = 16;

/// The number of hex digits in a full 64-bit address as the kernel prints it.
const ADDRESS_HEX_DIGITS: usize = 16;

/// The directory that source paths are shown relative to, unless
/// [`Symbolizer::with_source_root`] says otherwise: the workspace root, which
/// is where this package's manifest lives.
pub fn default_source_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Shows `path` relative to `root` when it lies inside it, unchanged
/// otherwise (the Rust standard library, registry crates).
pub(crate) fn display_source_path(path: &Path, root: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(relative) if !relative.as_os_str().is_empty() => relative.display().to_string(),
        _ => path.display().to_string(),
    }
}

/// Why a [`Symbolizer`] could not be built.
#[derive(Debug)]
pub enum SymbolizeError {
    /// The kernel file is not an object file that `object` can read.
    Elf(object::Error),
    /// The kernel's DWARF debug information is malformed.
    Dwarf(gimli::Error),
}

impl fmt::Display for SymbolizeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(error) => write!(formatter, "cannot read the kernel ELF: {error}"),
            Self::Dwarf(error) => write!(formatter, "cannot read the kernel's DWARF: {error}"),
        }
    }
}

impl std::error::Error for SymbolizeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Elf(error) => Some(error),
            Self::Dwarf(error) => Some(error),
        }
    }
}

/// One function symbol of the ELF symbol table, the fallback when the DWARF
/// does not cover an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FunctionSymbol {
    /// The first address of the function.
    start: u64,
    /// One past its last address: from the symbol size, or for a sizeless
    /// (assembly) label, the next symbol or the end of its section.
    end: u64,
    /// The demangled name, without the Rust hash.
    name: String,
}

/// One frame of a DWARF lookup: the innermost function first, then the
/// functions it was inlined into.
#[derive(Debug)]
struct SourceFrame {
    /// The demangled function name, if the DWARF names it.
    function: Option<String>,
    /// `file:line` (or just `file`) of the address within this frame's
    /// function; for the outer frames of an inline chain, the call site.
    location: Option<String>,
}

/// Which address a report line's addresses stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressKind {
    /// The address of the instruction itself (`rip`, frame `#0`).
    Instruction,
    /// A return address (frames `#1` and up): the call is the instruction
    /// before it, so `address - 1` is looked up.
    ReturnAddress,
}

/// Turns kernel addresses into function names and source lines, from the
/// kernel ELF's DWARF and symbol table.
pub struct Symbolizer {
    /// The DWARF line and function tables.
    context: addr2line::Context<DwarfReader>,
    /// The ELF's function symbols, sorted by start address.
    symbols: Vec<FunctionSymbol>,
    /// Source paths under this directory are shown relative to it.
    source_root: PathBuf,
}

impl fmt::Debug for Symbolizer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Symbolizer")
            .field("symbols", &self.symbols.len())
            .field("source_root", &self.source_root)
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// Reads the DWARF and symbol table of the kernel ELF in `elf`. The
    /// symbolizer copies what it needs and does not borrow `elf`.
    ///
    /// An ELF without DWARF is accepted: lookups then use the symbol table
    /// only.
    pub fn new(elf: &[u8]) -> Result<Self, SymbolizeError> {
        let file = object::File::parse(elf).map_err(SymbolizeError::Elf)?;
        let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let load_section = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
            // A section that is missing, or compressed in a way this build
            // cannot undo, reads as empty: lookups fall back to the symbol
            // table.
            let data = file
                .section_by_name(id.name())
                .and_then(|section| section.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[]));
            Ok(gimli::EndianArcSlice::new(Arc::from(&*data), endian))
        };
        let dwarf = gimli::Dwarf::load(load_section).map_err(SymbolizeError::Dwarf)?;
        let context = addr2line::Context::from_dwarf(dwarf).map_err(SymbolizeError::Dwarf)?;
        Ok(Self { context, symbols: function_symbols(&file), source_root: default_source_root().to_path_buf() })
    }

    /// Shows source paths relative to `root` instead of
    /// [`default_source_root`].
    #[must_use]
    pub fn with_source_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.source_root = root.into();
        self
    }

    /// The directory source paths are shown relative to.
    pub fn source_root(&self) -> &Path {
        &self.source_root
    }

    /// Describes the instruction at `address` as
    /// `function at file:line`, with ` (inlined into outer at file:line)`
    /// when it lies in inlined code (the outer location is the call site),
    /// or as `symbol+0xoffset` when only the symbol table knows it. `None`
    /// when nothing covers the address.
    pub fn describe_address(&self, address: u64) -> Option<String> {
        let frames = self.source_frames(address);
        let symbol = self.symbol_for(address);
        let symbol_name = symbol.map(|symbol| match address - symbol.start {
            0 => symbol.name.clone(),
            offset => format!("{}+{offset:#x}", symbol.name),
        });

        let Some(innermost) = frames.first() else {
            return symbol_name;
        };
        let mut text = innermost.function.clone().or(symbol_name).unwrap_or_else(|| String::from("??"));
        if let Some(location) = &innermost.location {
            text.push_str(" at ");
            text.push_str(location);
        }
        if let Some(outermost) = frames.last().filter(|_| frames.len() > 1) {
            text.push_str(" (inlined into ");
            text.push_str(outermost.function.as_deref().unwrap_or("??"));
            if let Some(location) = &outermost.location {
                text.push_str(" at ");
                text.push_str(location);
            }
            text.push(')');
        }
        Some(text)
    }

    /// Annotates an exception-report line: if `line` begins (after
    /// whitespace) with `rip ` or `#<digits> `, every 16-hex-digit `0x`
    /// address on it that the kernel ELF knows gets ` <description>`
    /// inserted right after it (see [`Self::describe_address`]). For frames
    /// `#1` and up, which hold return addresses, `address - 1` is looked up
    /// so that the call's line is shown. Any other line comes back unchanged.
    pub fn annotate_line(&self, line: &str) -> String {
        let Some(kind) = report_line_kind(line) else {
            return line.to_owned();
        };
        let mut annotated = String::with_capacity(line.len() + 64);
        let mut copied_up_to = 0;
        for (token_start, address) in address_tokens(line) {
            let token_end = token_start + 2 + ADDRESS_HEX_DIGITS;
            let probe = match kind {
                AddressKind::Instruction => Some(address),
                AddressKind::ReturnAddress => address.checked_sub(1),
            };
            if let Some(description) = probe.and_then(|probe| self.describe_address(probe)) {
                annotated.push_str(&line[copied_up_to..token_end]);
                annotated.push(' ');
                annotated.push_str(&description);
                copied_up_to = token_end;
            }
        }
        annotated.push_str(&line[copied_up_to..]);
        annotated
    }

    /// The DWARF frames for `address`, innermost first; empty when no
    /// compilation unit covers it or the DWARF cannot be read there.
    fn source_frames(&self, address: u64) -> Vec<SourceFrame> {
        let mut frames = Vec::new();
        let Ok(mut iterator) = self.context.find_frames(address).skip_all_loads() else {
            return frames;
        };
        while let Ok(Some(frame)) = iterator.next() {
            let function = frame.function.as_ref().and_then(|name| name.demangle().ok()).map(Cow::into_owned);
            let location = frame.location.as_ref().and_then(|location| self.format_location(location));
            frames.push(SourceFrame { function, location });
        }
        frames
    }

    /// `file:line`, or `file` when the line is unknown.
    fn format_location(&self, location: &addr2line::Location<'_>) -> Option<String> {
        let file = display_source_path(Path::new(location.file?), &self.source_root);
        Some(match location.line {
            Some(line) => format!("{file}:{line}"),
            None => file,
        })
    }

    /// The function symbol whose range holds `address`, preferring the one
    /// that starts closest below it.
    fn symbol_for(&self, address: u64) -> Option<&FunctionSymbol> {
        let after = self.symbols.partition_point(|symbol| symbol.start <= address);
        self.symbols[..after].iter().rev().take(SYMBOL_LOOKBACK_ENTRIES).find(|symbol| address < symbol.end)
    }
}

/// The defined function symbols of `file`, demangled and sorted.
fn function_symbols(file: &object::File<'_>) -> Vec<FunctionSymbol> {
    struct Candidate {
        start: u64,
        size: u64,
        section_end: u64,
        name: String,
    }

    let mut candidates: Vec<Candidate> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.is_definition())
        .filter_map(|symbol| {
            let name = symbol.name().ok().filter(|name| !name.is_empty())?;
            let section_end = symbol
                .section_index()
                .and_then(|index| file.section_by_index(index).ok())
                .map_or(u64::MAX, |section| section.address().saturating_add(section.size()));
            Some(Candidate {
                start: symbol.address(),
                size: symbol.size(),
                section_end,
                name: addr2line::demangle_auto(Cow::Borrowed(name), None).into_owned(),
            })
        })
        .collect();
    candidates.sort_by_key(|candidate| candidate.start);

    let mut symbols = Vec::with_capacity(candidates.len());
    for (index, candidate) in candidates.iter().enumerate() {
        let end = if candidate.size > 0 {
            candidate.start.saturating_add(candidate.size)
        } else {
            let next_start = candidates[index + 1..]
                .iter()
                .map(|next| next.start)
                .find(|&start| start > candidate.start)
                .unwrap_or(u64::MAX);
            next_start.min(candidate.section_end)
        };
        if end > candidate.start {
            symbols.push(FunctionSymbol { start: candidate.start, end, name: candidate.name.clone() });
        }
    }
    symbols
}

/// Whether `line` is an exception-report line whose addresses are to be
/// annotated, and which kind of address it holds.
fn report_line_kind(line: &str) -> Option<AddressKind> {
    let rest = line.trim_start();
    if rest.starts_with("rip ") || rest.starts_with("rip\t") {
        return Some(AddressKind::Instruction);
    }
    let after_hash = rest.strip_prefix('#')?;
    let digits_len = after_hash.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, after_digits) = after_hash.split_at(digits_len);
    if digits.is_empty() || !(after_digits.starts_with(' ') || after_digits.starts_with('\t')) {
        return None;
    }
    if digits.bytes().all(|digit| digit == b'0') {
        Some(AddressKind::Instruction)
    } else {
        Some(AddressKind::ReturnAddress)
    }
}

/// The `0x` + 16-hex-digit tokens of `line` that stand alone (no letter,
/// digit or `_` right before or after), as (byte offset of the `0x`, value).
fn address_tokens(line: &str) -> Vec<(usize, u64)> {
    let bytes = line.as_bytes();
    let is_word_byte = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let mut tokens = Vec::new();
    let mut index = 0;
    while index + 2 + ADDRESS_HEX_DIGITS <= bytes.len() {
        let starts_token = bytes[index] == b'0'
            && matches!(bytes[index + 1], b'x' | b'X')
            && (index == 0 || !is_word_byte(bytes[index - 1]));
        if starts_token {
            let digits_end = index + 2 + ADDRESS_HEX_DIGITS;
            // Bytes, not a `str` slice: the 16 bytes may end inside a
            // multi-byte character.
            let digits = &bytes[index + 2..digits_end];
            let ends_token = bytes.get(digits_end).is_none_or(|&byte| !is_word_byte(byte));
            if ends_token
                && digits.iter().all(u8::is_ascii_hexdigit)
                && let Ok(digits) = std::str::from_utf8(digits)
                && let Ok(value) = u64::from_str_radix(digits, 16)
            {
                tokens.push((index, value));
                index = digits_end;
                continue;
            }
        }
        index += 1;
    }
    tokens
}

/// A minimal ELF64 writer for tests: a `.text` section at a kernel address,
/// an optional `.defmt` section and a symbol table, which is all that the
/// symbol-table fallback here and `defmt_decoder::Table::parse` read.
#[cfg(test)]
pub(crate) mod test_elf {
    /// Where the test ELF's `.text` section starts.
    pub(crate) const TEXT_ADDRESS: u64 = 0xffff_ffff_8000_0000;
    /// The size of the test ELF's `.text` section.
    pub(crate) const TEXT_SIZE: u64 = 0x1000;
    /// The size of the test ELF's `.defmt` section (symbol addresses in it
    /// are defmt indices).
    const DEFMT_SIZE: u64 = 0x100;

    const SECTION_HEADER_SIZE: usize = 64;
    const SYMBOL_SIZE: usize = 24;
    const SHT_PROGBITS: u32 = 1;
    const SHT_SYMTAB: u32 = 2;
    const SHT_STRTAB: u32 = 3;
    const SHF_ALLOC: u64 = 2;
    const SHF_EXECINSTR: u64 = 4;
    const SHN_ABS: u16 = 0xfff1;
    const STB_GLOBAL: u8 = 1;

    /// Which section a test symbol belongs to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Placement {
        /// A function in `.text`.
        Function,
        /// An entry of the defmt table in `.defmt`.
        Defmt,
        /// An absolute symbol (`_defmt_version_ = 4`).
        Absolute,
    }

    /// One symbol of the test ELF.
    #[derive(Debug, Clone)]
    pub(crate) struct TestSymbol {
        /// The raw (mangled or JSON) symbol name.
        pub(crate) name: String,
        /// Its section.
        pub(crate) placement: Placement,
        /// Its value (address, or defmt index).
        pub(crate) value: u64,
        /// Its size in bytes (0 for a sizeless label).
        pub(crate) size: u64,
    }

    impl TestSymbol {
        /// A function symbol in `.text`.
        pub(crate) fn function(name: &str, address: u64, size: u64) -> Self {
            Self { name: name.to_owned(), placement: Placement::Function, value: address, size }
        }
    }

    fn push_u16(buffer: &mut Vec<u8>, value: u16) {
        buffer.extend_from_slice(&value.to_le_bytes());
    }

    fn push_u32(buffer: &mut Vec<u8>, value: u32) {
        buffer.extend_from_slice(&value.to_le_bytes());
    }

    fn push_u64(buffer: &mut Vec<u8>, value: u64) {
        buffer.extend_from_slice(&value.to_le_bytes());
    }

    fn align(buffer: &mut Vec<u8>, alignment: usize) {
        while !buffer.len().is_multiple_of(alignment) {
            buffer.push(0);
        }
    }

    fn to_u64(value: usize) -> u64 {
        u64::try_from(value).expect("test ELF offsets fit in u64")
    }

    fn to_u32(value: usize) -> u32 {
        u32::try_from(value).expect("test ELF string offsets fit in u32")
    }

    /// Appends `name` and a NUL to a string table, returning its offset.
    fn add_string(table: &mut Vec<u8>, name: &str) -> u32 {
        let offset = to_u32(table.len());
        table.extend_from_slice(name.as_bytes());
        table.push(0);
        offset
    }

    /// One section header's fields.
    struct SectionHeader {
        name: u32,
        kind: u32,
        flags: u64,
        address: u64,
        offset: usize,
        size: usize,
        link: u32,
        info: u32,
        alignment: u64,
        entry_size: u64,
    }

    /// Builds an x86-64 ELF executable holding `symbols`; it has a `.defmt`
    /// section only if one of them is placed there.
    pub(crate) fn build(symbols: &[TestSymbol]) -> Vec<u8> {
        let has_defmt = symbols.iter().any(|symbol| symbol.placement == Placement::Defmt);
        // Section indices: 0 null, 1 .text, then .defmt if any, then the
        // symbol table, its strings and the section names.
        let defmt_index: u16 = 2;
        let symtab_index: u16 = if has_defmt { 3 } else { 2 };
        let strtab_index = symtab_index + 1;
        let shstrtab_index = symtab_index + 2;

        let mut names = vec![0_u8];
        let mut strings = vec![0_u8];
        let mut symbol_table = vec![0_u8; SYMBOL_SIZE];
        for symbol in symbols {
            push_u32(&mut symbol_table, add_string(&mut strings, &symbol.name));
            let (kind, section) = match symbol.placement {
                Placement::Function => (2_u8, 1_u16),
                Placement::Defmt => (1_u8, defmt_index),
                Placement::Absolute => (0_u8, SHN_ABS),
            };
            symbol_table.push((STB_GLOBAL << 4) | kind);
            symbol_table.push(0);
            push_u16(&mut symbol_table, section);
            push_u64(&mut symbol_table, symbol.value);
            push_u64(&mut symbol_table, symbol.size);
        }

        let mut file = vec![0_u8; 64];
        let mut headers = vec![SectionHeader {
            name: 0,
            kind: 0,
            flags: 0,
            address: 0,
            offset: 0,
            size: 0,
            link: 0,
            info: 0,
            alignment: 0,
            entry_size: 0,
        }];
        let text_size = usize::try_from(TEXT_SIZE).expect("small");
        headers.push(SectionHeader {
            name: add_string(&mut names, ".text"),
            kind: SHT_PROGBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            address: TEXT_ADDRESS,
            offset: file.len(),
            size: text_size,
            link: 0,
            info: 0,
            alignment: 16,
            entry_size: 0,
        });
        file.resize(file.len() + text_size, 0xcc);
        if has_defmt {
            let defmt_size = usize::try_from(DEFMT_SIZE).expect("small");
            headers.push(SectionHeader {
                name: add_string(&mut names, ".defmt"),
                kind: SHT_PROGBITS,
                flags: 0,
                address: 0,
                offset: file.len(),
                size: defmt_size,
                link: 0,
                info: 0,
                alignment: 1,
                entry_size: 0,
            });
            file.resize(file.len() + defmt_size, 0);
        }
        align(&mut file, 8);
        headers.push(SectionHeader {
            name: add_string(&mut names, ".symtab"),
            kind: SHT_SYMTAB,
            flags: 0,
            address: 0,
            offset: file.len(),
            size: symbol_table.len(),
            link: u32::from(strtab_index),
            info: 1,
            alignment: 8,
            entry_size: to_u64(SYMBOL_SIZE),
        });
        file.extend_from_slice(&symbol_table);
        headers.push(SectionHeader {
            name: add_string(&mut names, ".strtab"),
            kind: SHT_STRTAB,
            flags: 0,
            address: 0,
            offset: file.len(),
            size: strings.len(),
            link: 0,
            info: 0,
            alignment: 1,
            entry_size: 0,
        });
        file.extend_from_slice(&strings);
        let shstrtab_name = add_string(&mut names, ".shstrtab");
        headers.push(SectionHeader {
            name: shstrtab_name,
            kind: SHT_STRTAB,
            flags: 0,
            address: 0,
            offset: file.len(),
            size: names.len(),
            link: 0,
            info: 0,
            alignment: 1,
            entry_size: 0,
        });
        file.extend_from_slice(&names);
        align(&mut file, 8);

        let section_headers_offset = file.len();
        for header in &headers {
            push_u32(&mut file, header.name);
            push_u32(&mut file, header.kind);
            push_u64(&mut file, header.flags);
            push_u64(&mut file, header.address);
            push_u64(&mut file, to_u64(header.offset));
            push_u64(&mut file, to_u64(header.size));
            push_u32(&mut file, header.link);
            push_u32(&mut file, header.info);
            push_u64(&mut file, header.alignment);
            push_u64(&mut file, header.entry_size);
        }

        let mut elf_header = Vec::with_capacity(64);
        elf_header.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        elf_header.extend_from_slice(&[0; 8]);
        push_u16(&mut elf_header, 2); // ET_EXEC
        push_u16(&mut elf_header, 62); // EM_X86_64
        push_u32(&mut elf_header, 1); // EV_CURRENT
        push_u64(&mut elf_header, TEXT_ADDRESS); // entry
        push_u64(&mut elf_header, 0); // no program headers
        push_u64(&mut elf_header, to_u64(section_headers_offset));
        push_u32(&mut elf_header, 0); // flags
        push_u16(&mut elf_header, 64); // ELF header size
        push_u16(&mut elf_header, 56); // program header entry size
        push_u16(&mut elf_header, 0); // program header count
        push_u16(&mut elf_header, u16::try_from(SECTION_HEADER_SIZE).expect("small"));
        push_u16(&mut elf_header, u16::try_from(headers.len()).expect("few sections"));
        push_u16(&mut elf_header, shstrtab_index);
        file[..64].copy_from_slice(&elf_header);
        file
    }
}

#[cfg(test)]
mod tests {
    use super::test_elf::{TEXT_ADDRESS, TestSymbol};
    use super::*;

    /// Line of the first line of [`known_function`] (set just above it).
    const KNOWN_FUNCTION_FIRST_LINE: u32 = line!();
    /// A function whose address the DWARF test looks up.
    #[inline(never)]
    fn known_function(value: u64) -> u64 {
        std::hint::black_box(value).wrapping_mul(3)
    }
    /// Line just after [`known_function`].
    const KNOWN_FUNCTION_LAST_LINE: u32 = line!();

    /// Inlined into [`inline_caller`] even in unoptimised builds.
    #[inline(always)]
    fn inlined_callee(value: u64) -> u64 {
        std::hint::black_box(value).rotate_left(7) ^ 0x5a5a
    }

    /// Line of the first line of [`inline_caller`] (set just above it).
    const INLINE_CALLER_FIRST_LINE: u32 = line!();
    /// Calls [`inlined_callee`], which gets inlined into it.
    #[inline(never)]
    fn inline_caller(value: u64) -> u64 {
        let mixed = inlined_callee(value);
        std::hint::black_box(mixed)
    }
    /// Line just after [`inline_caller`].
    const INLINE_CALLER_LAST_LINE: u32 = line!();

    /// The test binary itself: the one ELF with real DWARF at hand.
    fn test_binary() -> Vec<u8> {
        let path = std::env::current_exe().expect("the test binary has a path");
        std::fs::read(path).expect("the test binary is readable")
    }

    /// The link-time address and size of the function in `elf` whose
    /// demangled name is `name`, from the symbol table.
    fn find_function(elf: &[u8], name: &str) -> (u64, u64) {
        let file = object::File::parse(elf).expect("the test binary parses");
        file.symbols()
            .filter(|symbol| symbol.kind() == SymbolKind::Text)
            .find(|symbol| symbol.name().is_ok_and(|raw| addr2line::demangle_auto(Cow::Borrowed(raw), None) == name))
            .map(|symbol| (symbol.address(), symbol.size()))
            .unwrap_or_else(|| panic!("{name} is in the test binary's symbol table"))
    }

    /// A kernel-like ELF without DWARF: `trap::dispatch` at +0x100 (0x40
    /// bytes), `trap::entry` right after it and a sizeless assembly label.
    fn kernel_like_symbolizer() -> Symbolizer {
        let elf = test_elf::build(&[
            TestSymbol::function("_ZN15bulkhead_kernel4trap8dispatch17h0123456789abcdefE", TEXT_ADDRESS + 0x100, 0x40),
            TestSymbol::function("_ZN15bulkhead_kernel4trap5entry17hfedcba9876543210E", TEXT_ADDRESS + 0x140, 0x20),
            TestSymbol::function("isr_common_stub", TEXT_ADDRESS + 0x200, 0),
            TestSymbol::function("isr_next_stub", TEXT_ADDRESS + 0x280, 0),
        ]);
        Symbolizer::new(&elf).expect("the test ELF parses")
    }

    #[test]
    fn dwarf_gives_function_name_and_source_line() {
        // Keep the function referenced so it is linked in.
        assert_eq!(known_function(2), 6);
        let elf = test_binary();
        let (address, _size) = find_function(&elf, "bulkhead::symbolize::tests::known_function");
        let symbolizer = Symbolizer::new(&elf).expect("the test binary's DWARF parses");

        let line = format!("    rip 0x{address:016x}  cs 0x8  rflags 0x10086");
        let annotated = symbolizer.annotate_line(&line);
        let prefix =
            format!("    rip 0x{address:016x} bulkhead::symbolize::tests::known_function at src/symbolize.rs:");
        let rest = annotated.strip_prefix(&prefix).unwrap_or_else(|| panic!("unexpected annotation: {annotated}"));
        let (line_number, tail) =
            rest.split_once(' ').unwrap_or_else(|| panic!("no text after the line number: {annotated}"));
        let line_number: u32 = line_number.parse().expect("a line number");
        assert!(
            (KNOWN_FUNCTION_FIRST_LINE..=KNOWN_FUNCTION_LAST_LINE).contains(&line_number),
            "line {line_number} is not within known_function: {annotated}"
        );
        assert_eq!(tail, " cs 0x8  rflags 0x10086");
    }

    #[test]
    fn dwarf_shows_inlined_function_and_its_caller() {
        assert_ne!(inline_caller(1), 0);
        let elf = test_binary();
        let (start, size) = find_function(&elf, "bulkhead::symbolize::tests::inline_caller");
        assert!(size > 0, "inline_caller has a size");
        let symbolizer = Symbolizer::new(&elf).expect("the test binary's DWARF parses");

        let inlined = (start..start + size)
            .filter_map(|address| symbolizer.describe_address(address))
            .find(|description| {
                description.starts_with("bulkhead::symbolize::tests::inlined_callee at src/symbolize.rs:")
            })
            .unwrap_or_else(|| panic!("no address of inline_caller is in inlined_callee"));
        let (_, outer) = inlined
            .split_once(" (inlined into bulkhead::symbolize::tests::inline_caller at src/symbolize.rs:")
            .unwrap_or_else(|| panic!("unexpected inline description: {inlined}"));
        let call_line: u32 = outer
            .strip_suffix(')')
            .and_then(|line| line.parse().ok())
            .unwrap_or_else(|| panic!("unexpected call site: {inlined}"));
        assert!(
            (INLINE_CALLER_FIRST_LINE..=INLINE_CALLER_LAST_LINE).contains(&call_line),
            "the call site is not in inline_caller: {inlined}"
        );
    }

    #[test]
    fn symbol_table_fallback_demangles_and_shows_offset() {
        let symbolizer = kernel_like_symbolizer();
        assert_eq!(
            symbolizer.annotate_line("  #0 0xffffffff80000104"),
            "  #0 0xffffffff80000104 bulkhead_kernel::trap::dispatch+0x4"
        );
        assert_eq!(
            symbolizer.annotate_line("    rip 0xFFFFFFFF80000140  cs 0x8"),
            "    rip 0xFFFFFFFF80000140 bulkhead_kernel::trap::entry  cs 0x8"
        );
    }

    #[test]
    fn return_addresses_are_looked_up_one_byte_earlier() {
        let symbolizer = kernel_like_symbolizer();
        // 0x140 is the first byte of `entry`, but as a return address it
        // follows a call at the end of `dispatch`.
        assert_eq!(
            symbolizer.annotate_line("  #1 0xffffffff80000140"),
            "  #1 0xffffffff80000140 bulkhead_kernel::trap::dispatch+0x3f"
        );
        assert_eq!(
            symbolizer.annotate_line("  #12 0xffffffff80000140\r"),
            "  #12 0xffffffff80000140 bulkhead_kernel::trap::dispatch+0x3f\r"
        );
        assert_eq!(
            symbolizer.annotate_line("  #00 0xffffffff80000140"),
            "  #00 0xffffffff80000140 bulkhead_kernel::trap::entry"
        );
    }

    #[test]
    fn sizeless_labels_extend_to_the_next_symbol() {
        let symbolizer = kernel_like_symbolizer();
        assert_eq!(symbolizer.describe_address(TEXT_ADDRESS + 0x27f).as_deref(), Some("isr_common_stub+0x7f"));
        // The last label runs to the end of `.text`, and no further.
        assert_eq!(
            symbolizer.describe_address(TEXT_ADDRESS + test_elf::TEXT_SIZE - 1).as_deref(),
            Some("isr_next_stub+0xd7f")
        );
        assert_eq!(symbolizer.describe_address(TEXT_ADDRESS + test_elf::TEXT_SIZE), None);
        // Between `entry`'s end and the first label nothing is known.
        assert_eq!(symbolizer.describe_address(TEXT_ADDRESS + 0x160), None);
    }

    #[test]
    fn every_address_on_a_report_line_is_annotated() {
        let symbolizer = kernel_like_symbolizer();
        assert_eq!(
            symbolizer.annotate_line("rip 0xffffffff80000100 target 0xffffffff80000150,"),
            "rip 0xffffffff80000100 bulkhead_kernel::trap::dispatch \
             target 0xffffffff80000150 bulkhead_kernel::trap::entry+0x10,"
        );
    }

    #[test]
    fn other_lines_and_tokens_are_left_alone() {
        let symbolizer = kernel_like_symbolizer();
        let unchanged = [
            // Not a report line.
            "fault at 0xffffffff80000104",
            "rip=0xffffffff80000104",
            "  #x 0xffffffff80000104",
            "  # 0xffffffff80000104",
            "  #1",
            "ripple 0xffffffff80000104",
            // Not a 16-digit standalone address.
            "  #0 0xffffffff8000010",
            "  #0 0xffffffff800001040",
            "  #0 0xffffffff8000010g",
            "  #0 x0xffffffff80000104",
            "  #0 0xffffffff80000104_",
            "  #0 0x✓✓✓✓✓✓",
            "  #0 0xffffffff8000010✓",
            // An address nothing covers.
            "  #0 0xffffffff90000000",
            "    rip 0x0000000000000000  cs 0x8",
            "  #1 0x0000000000000000",
            "",
            "    rip ",
        ];
        for line in unchanged {
            assert_eq!(symbolizer.annotate_line(line), line);
        }
    }

    #[test]
    fn source_paths_are_shown_relative_to_the_root() {
        let root = Path::new("/work/main");
        assert_eq!(display_source_path(Path::new("/work/main/kernel/src/trap.rs"), root), "kernel/src/trap.rs");
        assert_eq!(
            display_source_path(Path::new("/rustc/abc/library/core/src/panic.rs"), root),
            "/rustc/abc/library/core/src/panic.rs"
        );
        assert_eq!(display_source_path(Path::new("/work/mainline/src/x.rs"), root), "/work/mainline/src/x.rs");
        let symbolizer = kernel_like_symbolizer().with_source_root("/elsewhere");
        assert_eq!(symbolizer.source_root(), Path::new("/elsewhere"));
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        let error = Symbolizer::new(b"not an ELF file").expect_err("garbage is no ELF");
        assert!(matches!(error, SymbolizeError::Elf(_)));
        assert!(error.to_string().starts_with("cannot read the kernel ELF"));
    }

    #[test]
    fn symbolizer_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Symbolizer>();
    }
}
