//! The recursive-descent parser: tokens to a [`Manifest`]. It stops at the
//! first syntax error.

use crate::ast::{
    CapRights, Channel, Connection, ConnectionKind, Device, Flow, Guest, Item, Located, Manifest, Mapping,
    MemoryRights, Name, ProtectionDomain, Region,
};
use crate::diagnostic::{Diagnostic, Span};
use crate::lexer::{Token, TokenKind, tokenize};

/// Parses the manifest `text`, read from `file` (the name errors show).
///
/// # Errors
///
/// The first lexical or syntax error.
pub fn parse(file: &str, text: &str) -> Result<Manifest, Diagnostic> {
    let tokens = tokenize(file, text)?;
    let mut parser = Parser { tokens, position: 0 };
    parser.manifest()
}

/// What kind of quantity a number stands for, which decides its units.
#[derive(Clone, Copy)]
enum Quantity {
    /// A plain count or address: no unit.
    Plain,
    /// Bytes: none, `KiB`, `MiB`, `GiB`.
    Size,
    /// Microseconds: `us`, `ms`, `s` (a unit is required).
    Time,
}

const TOP_LEVEL: &str = "`pd`, `region`, `channel`, `device`, `guest` or `flow`";

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with `End`, which is never consumed.
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.position.min(last)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::End {
            self.position += 1;
        }
        token
    }

    fn skip_newlines(&mut self) {
        while self.peek().kind == TokenKind::Newline {
            self.advance();
        }
    }

    fn unexpected(&self, expected: &str, hint: &str) -> Diagnostic {
        let token = self.peek();
        Diagnostic::new(&token.span, format!("expected {expected}, found {}", token.kind.describe()), hint)
    }

    fn expect(&mut self, kind: &TokenKind, expected: &str, hint: &str) -> Result<Span, Diagnostic> {
        if &self.peek().kind == kind { Ok(self.advance().span) } else { Err(self.unexpected(expected, hint)) }
    }

    fn end_of_statement(&mut self) -> Result<(), Diagnostic> {
        match self.peek().kind {
            TokenKind::Newline => {
                self.advance();
                Ok(())
            }
            TokenKind::End => Ok(()),
            _ => Err(self.unexpected("the end of the line", "write one statement per line")),
        }
    }

    fn name(&mut self, what: &str) -> Result<Name, Diagnostic> {
        match self.peek().kind.clone() {
            TokenKind::Word(text) => Ok(Name { text, span: self.advance().span }),
            _ => Err(self.unexpected(&format!("a {what} name"), "names are letters, digits and `_`")),
        }
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), Diagnostic> {
        match &self.peek().kind {
            TokenKind::Word(word) if word == keyword => {
                self.advance();
                Ok(())
            }
            _ => Err(self.unexpected(&format!("`{keyword}`"), &format!("write `{keyword}` here"))),
        }
    }

    fn number(&mut self, quantity: Quantity) -> Result<Located<u64>, Diagnostic> {
        let TokenKind::Number { value, unit } = self.peek().kind.clone() else {
            let hint = match quantity {
                Quantity::Plain => "write a number such as `4` or `0x1000`",
                Quantity::Size => "write a size such as `4096`, `64KiB` or `2MiB`",
                Quantity::Time => "write a time such as `500us`, `2ms` or `1s`",
            };
            return Err(self.unexpected("a number", hint));
        };
        let span = self.advance().span;
        let scale: Option<u64> = match (quantity, unit.as_str()) {
            (Quantity::Plain | Quantity::Size, "") => Some(1),
            (Quantity::Size, "KiB") => Some(1 << 10),
            (Quantity::Size, "MiB") => Some(1 << 20),
            (Quantity::Size, "GiB") => Some(1 << 30),
            (Quantity::Time, "us") => Some(1),
            (Quantity::Time, "ms") => Some(1_000),
            (Quantity::Time, "s") => Some(1_000_000),
            _ => None,
        };
        let Some(scale) = scale else {
            let hint = match quantity {
                Quantity::Plain => "this number takes no unit",
                Quantity::Size => "sizes take `KiB`, `MiB`, `GiB` or no unit (bytes)",
                Quantity::Time => "times take `us`, `ms` or `s`",
            };
            let message = if unit.is_empty() {
                "a time needs a unit".to_owned()
            } else {
                format!("unit `{unit}` is not allowed here")
            };
            return Err(Diagnostic::new(&span, message, hint));
        };
        let value = value
            .checked_mul(scale)
            .ok_or_else(|| Diagnostic::new(&span, "number does not fit in 64 bits", "use a smaller number"))?;
        Ok(Located { value, span })
    }

    fn text(&mut self, what: &str) -> Result<Located<String>, Diagnostic> {
        match self.peek().kind.clone() {
            TokenKind::Text(value) => Ok(Located { value, span: self.advance().span }),
            _ => Err(self.unexpected(&format!("{what} in quotes"), "write it as a string, e.g. \"name\"")),
        }
    }

    fn memory_rights(&mut self) -> Result<Located<MemoryRights>, Diagnostic> {
        let hint = "memory rights are `r`, `rw`, `rx` or `rwx`";
        let TokenKind::Word(word) = self.peek().kind.clone() else {
            return Err(self.unexpected("memory rights", hint));
        };
        let span = self.peek().span.clone();
        let mut rights = MemoryRights::default();
        for letter in word.chars() {
            let slot = match letter {
                'r' => &mut rights.read,
                'w' => &mut rights.write,
                'x' => &mut rights.execute,
                _ => return Err(Diagnostic::new(&span, format!("`{word}` is not a set of memory rights"), hint)),
            };
            if *slot {
                return Err(Diagnostic::new(&span, format!("`{letter}` repeated in `{word}`"), hint));
            }
            *slot = true;
        }
        self.advance();
        Ok(Located { value: rights, span })
    }

    /// One or more of `read`, `write`, `grant`, `grant_reply` up to the end
    /// of the line or the next keyword that is not a right.
    fn cap_rights(&mut self) -> Result<Located<CapRights>, Diagnostic> {
        let span = self.peek().span.clone();
        let mut rights = CapRights::default();
        let mut count = 0;
        while let TokenKind::Word(word) = self.peek().kind.clone() {
            let slot = match word.as_str() {
                "read" => &mut rights.read,
                "write" => &mut rights.write,
                "grant" => &mut rights.grant,
                "grant_reply" => &mut rights.grant_reply,
                _ => break,
            };
            if *slot {
                return Err(Diagnostic::new(
                    &self.peek().span,
                    format!("right `{word}` repeated"),
                    "name each right once",
                ));
            }
            *slot = true;
            count += 1;
            self.advance();
        }
        if count == 0 {
            return Err(self.unexpected("capability rights", "rights are `read`, `write`, `grant`, `grant_reply`"));
        }
        Ok(Located { value: rights, span })
    }

    fn manifest(&mut self) -> Result<Manifest, Diagnostic> {
        let mut manifest = Manifest::default();
        loop {
            self.skip_newlines();
            let token = self.peek().clone();
            let item = match &token.kind {
                TokenKind::End => return Ok(manifest),
                TokenKind::Word(word) => match word.as_str() {
                    "pd" => Item::ProtectionDomain(self.protection_domain()?),
                    "region" => Item::Region(self.region()?),
                    "channel" => Item::Channel(self.channel()?),
                    "device" => Item::Device(self.device()?),
                    "guest" => Item::Guest(Box::new(self.guest()?)),
                    "flow" => Item::Flow(self.flow()?),
                    other => {
                        return Err(Diagnostic::new(
                            &token.span,
                            format!("unknown item `{other}`"),
                            format!("a manifest is made of {TOP_LEVEL} items"),
                        ));
                    }
                },
                _ => return Err(self.unexpected("an item", &format!("a manifest is made of {TOP_LEVEL} items"))),
            };
            manifest.items.push(item);
        }
    }

    /// `KEYWORD NAME {` NEWLINE, then calls `statement` for each line
    /// inside (with the keyword of that line) until `}`.
    fn block(
        &mut self,
        what: &str,
        mut statement: impl FnMut(&mut Self, &str, &Span) -> Result<(), Diagnostic>,
    ) -> Result<Name, Diagnostic> {
        self.advance();
        let name = self.name(what)?;
        self.expect(&TokenKind::OpenBrace, "`{`", &format!("a {what} is a block: `{{` after the name"))?;
        self.end_of_statement()?;
        loop {
            self.skip_newlines();
            let token = self.peek().clone();
            match &token.kind {
                TokenKind::CloseBrace => {
                    self.advance();
                    self.end_of_statement()?;
                    return Ok(name);
                }
                TokenKind::End => {
                    return Err(Diagnostic::new(
                        &name.span,
                        format!("{what} `{}` is not closed", name.text),
                        "end the block with `}` on a line of its own",
                    ));
                }
                TokenKind::Word(word) => {
                    self.advance();
                    statement(self, word, &token.span)?;
                    self.end_of_statement()?;
                }
                _ => return Err(self.unexpected("a statement", "each line in a block starts with a keyword")),
            }
        }
    }

    fn protection_domain(&mut self) -> Result<ProtectionDomain, Diagnostic> {
        let mut image = None;
        let mut priority = None;
        let mut budget = None;
        let mut period = None;
        let mut core = None;
        let mut stack = None;
        let mut heap = None;
        let mut passive = None;
        let name = self.block("protection domain", |parser, keyword, span| match keyword {
            "image" => once(&mut image, parser.text("an image file")?, keyword, span),
            "priority" => once(&mut priority, parser.number(Quantity::Plain)?, keyword, span),
            "budget" => once(&mut budget, parser.number(Quantity::Time)?, keyword, span),
            "period" => once(&mut period, parser.number(Quantity::Time)?, keyword, span),
            "core" => once(&mut core, parser.number(Quantity::Plain)?, keyword, span),
            "stack" => once(&mut stack, parser.number(Quantity::Size)?, keyword, span),
            "heap" => once(&mut heap, parser.number(Quantity::Size)?, keyword, span),
            "passive" => once(&mut passive, Located { value: (), span: span.clone() }, keyword, span),
            other => Err(unknown_statement(
                span,
                other,
                "protection domain",
                "`image`, `priority`, `budget`, `period`, `core`, `stack`, `heap`, `passive`",
            )),
        })?;
        Ok(ProtectionDomain { name, image, priority, budget, period, core, stack, heap, passive })
    }

    fn region(&mut self) -> Result<Region, Diagnostic> {
        let mut size = None;
        let mut page_size = None;
        let mut physical = None;
        let mut rights = None;
        let mut shared = None;
        let mut contents = None;
        let mut mappings = Vec::new();
        let name = self.block("region", |parser, keyword, span| match keyword {
            "size" => once(&mut size, parser.number(Quantity::Size)?, keyword, span),
            "page" => once(&mut page_size, parser.number(Quantity::Size)?, keyword, span),
            "physical" => once(&mut physical, parser.number(Quantity::Plain)?, keyword, span),
            "rights" => once(&mut rights, parser.memory_rights()?, keyword, span),
            "shared" => once(&mut shared, Located { value: (), span: span.clone() }, keyword, span),
            "contents" => once(&mut contents, parser.text("a guest file")?, keyword, span),
            "map" => {
                let domain = parser.name("protection domain")?;
                parser.keyword("at")?;
                let address = parser.number(Quantity::Plain)?;
                let rights = parser.memory_rights()?;
                mappings.push(Mapping { domain, address, rights, span: span.clone() });
                Ok(())
            }
            other => Err(unknown_statement(
                span,
                other,
                "region",
                "`size`, `page`, `physical`, `rights`, `shared`, `contents`, `map`",
            )),
        })?;
        Ok(Region { name, size, page_size, physical, rights, shared: shared.map(|s| s.span), contents, mappings })
    }

    fn channel(&mut self) -> Result<Channel, Diagnostic> {
        let mut rights = None;
        let mut connections = Vec::new();
        let name = self.block("channel", |parser, keyword, span| {
            let kind = match keyword {
                "rights" => return once(&mut rights, parser.cap_rights()?, keyword, span),
                "call" => ConnectionKind::Call,
                "send" => ConnectionKind::Send,
                "notify" => ConnectionKind::Notify,
                "faults" => ConnectionKind::Faults,
                other => {
                    return Err(unknown_statement(
                        span,
                        other,
                        "channel",
                        "`rights`, `call`, `send`, `notify`, `faults`",
                    ));
                }
            };
            let from = parser.name("protection domain")?;
            parser.expect(&TokenKind::Arrow, "`->`", "a connection reads `sender -> receiver`")?;
            let to = parser.name("protection domain")?;
            let mut badge = None;
            let mut rights = None;
            while let TokenKind::Word(word) = parser.peek().kind.clone() {
                let word_span = parser.advance().span;
                match word.as_str() {
                    "badge" => once(&mut badge, parser.number(Quantity::Plain)?, "badge", &word_span)?,
                    "rights" => once(&mut rights, parser.cap_rights()?, "rights", &word_span)?,
                    other => {
                        return Err(Diagnostic::new(
                            &word_span,
                            format!("unknown option `{other}`"),
                            "a connection may end with `badge N` and `rights ...`",
                        ));
                    }
                }
            }
            connections.push(Connection { kind, from, to, badge, rights, span: span.clone() });
            Ok(())
        })?;
        Ok(Channel { name, rights, connections })
    }

    fn device(&mut self) -> Result<Device, Diagnostic> {
        let mut owners = Vec::new();
        let mut irqs = Vec::new();
        let mut io_ports = Vec::new();
        let mut mmio = Vec::new();
        let mut pci = Vec::new();
        let mut shared = None;
        let name = self.block("device", |parser, keyword, span| {
            match keyword {
                "owner" => owners.push(parser.name("protection domain")?),
                "irq" => irqs.push(parser.number(Quantity::Plain)?),
                "ioports" => {
                    let first = parser.number(Quantity::Plain)?;
                    parser.expect(&TokenKind::DotDot, "`..`", "a port range reads `FIRST..LAST` (inclusive)")?;
                    let last = parser.number(Quantity::Plain)?;
                    io_ports.push(Located { value: (first.value, last.value), span: first.span });
                }
                "mmio" => {
                    let base = parser.number(Quantity::Plain)?;
                    parser.keyword("size")?;
                    let size = parser.number(Quantity::Size)?;
                    mmio.push(Located { value: (base.value, size.value), span: base.span });
                }
                "pci" => {
                    let text = parser.text("a PCI address \"BB:DD.F\"")?;
                    let address = parse_pci(&text.value).ok_or_else(|| {
                        Diagnostic::new(
                            &text.span,
                            format!("malformed PCI address \"{}\"", text.value),
                            "write bus:device.function in hexadecimal, e.g. \"00:1f.2\" (device < 0x20, function < 8)",
                        )
                    })?;
                    pci.push(Located { value: address, span: text.span });
                }
                "shared" => once(&mut shared, Located { value: (), span: span.clone() }, keyword, span)?,
                other => {
                    return Err(unknown_statement(
                        span,
                        other,
                        "device",
                        "`owner`, `irq`, `ioports`, `mmio`, `pci`, `shared`",
                    ));
                }
            }
            Ok(())
        })?;
        Ok(Device { name, owners, irqs, io_ports, mmio, pci, shared: shared.map(|s| s.span) })
    }

    fn guest(&mut self) -> Result<Guest, Diagnostic> {
        let mut memory = Vec::new();
        let mut vcpus = None;
        let mut vmm = None;
        let mut vmx = None;
        let mut disks = Vec::new();
        let mut region_disks = Vec::new();
        let mut nics = Vec::new();
        let mut exposures = Vec::new();
        let mut image = None;
        let mut kernel = None;
        let mut initrd = None;
        let mut cmdline = None;
        let mut debug = None;
        let name = self.block("guest", |parser, keyword, span| {
            match keyword {
                "memory" => memory.push(parser.name("region")?),
                "image" => once(&mut image, parser.text("a guest image")?, keyword, span)?,
                "kernel" => once(&mut kernel, parser.text("a kernel image")?, keyword, span)?,
                "initrd" => once(&mut initrd, parser.text("an initramfs image")?, keyword, span)?,
                "cmdline" => once(&mut cmdline, parser.text("a kernel command line")?, keyword, span)?,
                "vcpus" => once(&mut vcpus, parser.number(Quantity::Plain)?, keyword, span)?,
                "debug" => {
                    let device = parser.name("device")?;
                    once(&mut debug, Located { value: device, span: span.clone() }, keyword, span)?;
                }
                "vmm" | "vmx" => {
                    let domain = parser.name("protection domain")?;
                    let slot = if keyword == "vmm" { &mut vmm } else { &mut vmx };
                    once(slot, Located { value: domain, span: span.clone() }, keyword, span)?;
                }
                "disk" => {
                    let device = parser.name(keyword)?;
                    match &parser.peek().kind {
                        TokenKind::Word(word) if word == "via" => {
                            parser.advance();
                            disks.push((device, parser.name("channel")?));
                        }
                        TokenKind::Word(word) if word == "from" => {
                            parser.advance();
                            region_disks.push((device, parser.name("region")?));
                        }
                        _ => {
                            return Err(parser.unexpected(
                                "`via` or `from`",
                                "a disk reads `disk NAME via CHANNEL` or `disk NAME from REGION`",
                            ));
                        }
                    }
                }
                "nic" => {
                    let device = parser.name(keyword)?;
                    parser.keyword("via")?;
                    nics.push((device, parser.name("channel")?));
                }
                "expose" => {
                    let region = parser.name("region")?;
                    parser.keyword("to")?;
                    let domain = parser.name("protection domain")?;
                    exposures.push((region, domain));
                }
                other => {
                    return Err(unknown_statement(
                        span,
                        other,
                        "guest",
                        "`memory`, `vcpus`, `vmm`, `vmx`, `image`, `kernel`, `initrd`, `cmdline`, `disk`, `nic`, `expose`, `debug`",
                    ));
                }
            }
            Ok(())
        })?;
        Ok(Guest {
            name,
            memory,
            vcpus,
            vmm: vmm.map(|located| located.value),
            vmx: vmx.map(|located| located.value),
            disks,
            region_disks,
            nics,
            exposures,
            image,
            kernel,
            initrd,
            cmdline,
            debug: debug.map(|located| located.value),
        })
    }

    fn flow(&mut self) -> Result<Flow, Diagnostic> {
        let span = self.advance().span;
        let from = self.name("protection domain")?;
        let both_ways = match self.peek().kind {
            TokenKind::Arrow => false,
            TokenKind::BothWays => true,
            _ => return Err(self.unexpected("`->` or `<->`", "a flow reads `flow A -> B` or `flow A <-> B`")),
        };
        self.advance();
        let to = self.name("protection domain")?;
        self.end_of_statement()?;
        Ok(Flow { from, to, both_ways, span })
    }
}

/// Stores a field's value, refusing a second one.
fn once<T>(slot: &mut Option<Located<T>>, value: Located<T>, keyword: &str, span: &Span) -> Result<(), Diagnostic> {
    if let Some(first) = slot {
        return Err(Diagnostic::new(
            span,
            format!("`{keyword}` given twice"),
            format!("the first is at line {}; keep one", first.span.line),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn unknown_statement(span: &Span, keyword: &str, block: &str, allowed: &str) -> Diagnostic {
    Diagnostic::new(span, format!("unknown statement `{keyword}` in a {block}"), format!("a {block} takes {allowed}"))
}

/// `BB:DD.F` in hexadecimal.
fn parse_pci(text: &str) -> Option<(u64, u64, u64)> {
    let (bus, rest) = text.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let number = |part: &str| {
        if part.is_empty() || part.len() > 2 { None } else { u64::from_str_radix(part, 16).ok() }
    };
    let (bus, device, function) = (number(bus)?, number(device)?, number(function)?);
    (device < 0x20 && function < 8).then_some((bus, device, function))
}
