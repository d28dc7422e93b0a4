//! What `guest-hostile-pc` decides, kept apart from the hardware so that
//! the host tests it: its command line, its pseudo-random generator, the
//! random accesses of its first phase (which ports and MMIO offsets,
//! which widths and values, and which ones it must never make), and the
//! console markers a test reads.
//!
//! The guest (`src/bin/guest-hostile-pc.rs`) is the hostile guest of the
//! PC platform that Linux guests get (`docs/PLATFORM.md`, "The hostile PC
//! guest"): packed as a minimal `bzImage` by the CLI and booted through
//! the Linux boot path, it writes random values to the board's ports and
//! to the local APIC, I/O APIC and virtio-mmio pages, then drives the
//! virtio-blk device and feeds it malformed virtqueues, checking after
//! each that the device still answers and does what vmx-server documents.

/// The guest's command-line word for the seed: `hostile.seed=N` (decimal,
/// or hexadecimal after `0x`).
pub const SEED_WORD: &str = "hostile.seed=";
/// The word for the rounds of the random phase: `hostile.rounds=N`.
pub const ROUNDS_WORD: &str = "hostile.rounds=";
/// The seed without a `hostile.seed=` word.
pub const DEFAULT_SEED: u64 = 1;
/// The rounds without a `hostile.rounds=` word.
pub const DEFAULT_ROUNDS: u32 = 64;
/// The most rounds the guest runs, whatever its command line says.
pub const MAX_ROUNDS: u32 = 100_000;
/// Random accesses per round: one to each of the three MMIO pages and
/// one to a port, this many times; then [`SOURCES_PER_ROUND`] steps of
/// [`random_interrupt_source`] and an interrupt window.
pub const ACCESSES_PER_ROUND: u32 = 16;
/// Interrupt sources programmed per round.
pub const SOURCES_PER_ROUND: u32 = 2;

/// The first line the guest prints (then ` seed=N rounds=N`).
pub const MARKER_START: &str = "HOSTILE-PC: start";
/// Printed when the random phase is over (then the counts).
pub const MARKER_RANDOM_DONE: &str = "HOSTILE-PC: random phase done";
/// Printed after each virtio case that behaved as documented (then the
/// case's name).
pub const MARKER_CASE_OK: &str = "HOSTILE-PC: case ok ";
/// Printed when a check fails (then what failed); the guest then resets
/// the machine through the reset control register, which stops it.
pub const MARKER_FAIL: &str = "HOSTILE-PC: FAIL ";
/// The virtio cases the guest runs: it checks that it ran them all, and a
/// test counts their [`MARKER_CASE_OK`] lines.
pub const VIRTIO_CASES: u32 = 38;
/// The last line before the power off (then the counts).
pub const MARKER_DONE: &str = "HOSTILE-PC: done";

/// COM1, the guest's console: never a random port.
pub const COM1_PORTS: (u16, u16) = (0x3f8, 0x3ff);
/// The reset control register (the FADT's RESET_REG): a write with bit 2
/// stops the guest, so no random access touches it.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
/// PM1 control's SLP_EN (bit 13): with SLP_TYP 5 it powers the guest off,
/// so every random write has it clear.
pub const SLP_EN: u16 = 1 << 13;

/// The board's ports (`vmm-server`'s `platform::pc`): the 8259A pair and
/// its ELCR, the 8254 and port 0x61, the RTC; the ACPI PM blocks come
/// from the FADT at run time.
pub const BOARD_PORTS: [u16; 13] = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71];

/// SplitMix64: a small, fast generator whose every seed (0 included)
/// gives a full-period sequence. Not for secrets; for reproducible
/// hostility.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prng {
    state: u64,
}

impl Prng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Prng { state: seed }
    }

    /// The next 64 random bits.
    pub const fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (0 for a bound of 0), by multiply and
    /// shift: the bias is below 2^-32 for the bounds used here.
    pub const fn below(&mut self, bound: u64) -> u64 {
        // The product's high half is below `bound`.
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// A number below `bound` (0 for a bound of 0).
    pub fn below_u16(&mut self, bound: u16) -> u16 {
        u16::try_from(self.below(u64::from(bound))).unwrap_or(0)
    }

    /// A number below `bound` (0 for a bound of 0).
    pub fn below_u32(&mut self, bound: u32) -> u32 {
        u32::try_from(self.below(u64::from(bound))).unwrap_or(0)
    }

    /// The next 32 random bits.
    pub const fn next_u32(&mut self) -> u32 {
        let [b0, b1, b2, b3, ..] = self.next_u64().to_le_bytes();
        u32::from_le_bytes([b0, b1, b2, b3])
    }

    /// The next 8 random bits.
    pub const fn next_u8(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// True with probability `numerator / denominator`.
    pub const fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// What the guest's command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The generator's seed.
    pub seed: u64,
    /// The rounds of the random phase (at most [`MAX_ROUNDS`]).
    pub rounds: u32,
}

/// Reads `hostile.seed=` and `hostile.rounds=` from the kernel command
/// line `line` (words separated by spaces, as the boot protocol passes
/// them; the bytes up to the first NUL). A missing or malformed value
/// keeps its default; the rounds are capped at [`MAX_ROUNDS`]. The last
/// word of a kind wins, as for Linux's own parameters.
#[must_use]
pub fn parse_command_line(line: &[u8]) -> Options {
    let line = line.split(|byte| *byte == 0).next().unwrap_or_default();
    let mut options = Options { seed: DEFAULT_SEED, rounds: DEFAULT_ROUNDS };
    for word in line.split(|byte| byte.is_ascii_whitespace()) {
        if let Some(value) = word.strip_prefix(SEED_WORD.as_bytes()).and_then(parse_number) {
            options.seed = value;
        } else if let Some(value) = word.strip_prefix(ROUNDS_WORD.as_bytes()).and_then(parse_number) {
            options.rounds = u32::try_from(value).unwrap_or(MAX_ROUNDS).min(MAX_ROUNDS);
        }
    }
    options
}

/// A decimal or `0x` hexadecimal number that fits 64 bits.
fn parse_number(text: &[u8]) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix(b"0x").or_else(|| text.strip_prefix(b"0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_u64, |value, byte| {
        let digit = char::from(*byte).to_digit(radix)?;
        value.checked_mul(u64::from(radix))?.checked_add(u64::from(digit))
    })
}

/// The width of an access, in bytes: 1, 2, 4 or (MMIO only) 8.
pub type Width = u8;

/// One random I/O port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAccess {
    /// The first port.
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub width: Width,
    /// The value written (its low `width` bytes), or `None` for a read.
    pub write: Option<u32>,
}

/// Whether a `width`-byte access at `port` may be made at random: it
/// touches neither COM1 (the guest's console) nor the reset control
/// register, and stays below port 0x10000.
#[must_use]
pub fn port_access_allowed(port: u16, width: Width) -> bool {
    let first = u32::from(port);
    let last = first + u32::from(width) - 1;
    let touches = |low: u16, high: u16| first <= u32::from(high) && u32::from(low) <= last;
    last <= 0xffff && !touches(COM1_PORTS.0, COM1_PORTS.1) && !touches(RESET_CONTROL_PORT, RESET_CONTROL_PORT)
}

/// `value` for a `width`-byte write at `port` with SLP_EN cleared in
/// whatever byte lands on PM1 control's high byte (`pm1_control + 1`):
/// a random write may set any sleep type, but never enables the sleep.
#[must_use]
pub fn without_sleep_enable(port: u16, width: Width, value: u32, pm1_control: u16) -> u32 {
    let slp_en_port = u32::from(pm1_control) + 1;
    let first = u32::from(port);
    if slp_en_port < first || slp_en_port >= first + u32::from(width) {
        return value;
    }
    let byte = slp_en_port - first;
    value & !(u32::from(SLP_EN >> 8) << (8 * byte))
}

/// A random port access: three times in four one of the board's ports
/// ([`BOARD_PORTS`] and the PM blocks at `pm_ports`, each `(first, last)`),
/// otherwise any port; a random width of 1, 2 or 4 bytes; a write three
/// times in four, of a random value. Never one [`port_access_allowed`]
/// refuses (another port is drawn, at most 16 times, then port 0x80 is
/// used: the POST-code port, which no device claims), and never SLP_EN
/// ([`without_sleep_enable`]).
pub fn random_port_access(prng: &mut Prng, pm_ports: &[(u16, u16)], pm1_control: u16) -> PortAccess {
    let width: Width = match prng.below(3) {
        0 => 1,
        1 => 2,
        _ => 4,
    };
    let mut port = 0x80;
    for _ in 0..16 {
        let candidate = if prng.chance(3, 4) {
            // Both at most 0x10000 ports: no overflow.
            let board = u32::try_from(BOARD_PORTS.len()).unwrap_or(0);
            let pm: u32 = pm_ports.iter().map(|(first, last)| u32::from(last.saturating_sub(*first)) + 1).sum();
            let mut pick = prng.below_u32(board + pm);
            if let Some(port) = usize::try_from(pick).ok().and_then(|index| BOARD_PORTS.get(index)) {
                *port
            } else {
                pick -= board;
                let mut chosen = 0x80;
                for (first, last) in pm_ports {
                    let count = u32::from(last.saturating_sub(*first)) + 1;
                    if pick < count {
                        chosen = first.wrapping_add(u16::try_from(pick).unwrap_or(0));
                        break;
                    }
                    pick -= count;
                }
                chosen
            }
        } else {
            u16::try_from(prng.below(0x1_0000)).unwrap_or(0x80)
        };
        if port_access_allowed(candidate, width) {
            port = candidate;
            break;
        }
    }
    let write = if prng.chance(3, 4) {
        let mask = if width == 4 { u32::MAX } else { (1 << (8 * u32::from(width))) - 1 };
        Some(without_sleep_enable(port, width, prng.next_u32() & mask, pm1_control))
    } else {
        None
    };
    PortAccess { port, width, write }
}

/// The MMIO pages the guest writes at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioPage {
    /// The local APIC's page (0xFEE0_0000): registers every 16 bytes up to
    /// 0x3F0.
    LocalApic,
    /// The I/O APIC's page (0xFEC0_0000): IOREGSEL at 0 and IOWIN at 0x10.
    IoApic,
    /// The virtio-mmio device's page: its 0x200-byte window (registers
    /// every 4 bytes up to 0xFC, then the configuration space) and open
    /// bus after it.
    Virtio,
}

/// One random MMIO access, by offset in its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The offset in the page: a multiple of `width`.
    pub offset: u16,
    /// 1, 2, 4 or 8 bytes.
    pub width: Width,
    /// The value written (its low `width` bytes), or `None` for a read.
    pub write: Option<u64>,
}

/// The bytes of a page.
pub const PAGE_BYTES: u16 = 0x1000;

/// A random access to `page`: half the time at one of the page's
/// registers (so that the devices see more than open bus), otherwise at
/// any offset; a random width of 1, 2, 4 or 8 bytes, half the time 4 (the
/// width the registers take); the offset aligned to the width, since an
/// access crossing a device window's end stops the guest (a documented
/// stop: the VMM emulates no split access), which would end the run
/// without testing anything more; a write three times in four, of a
/// random value.
pub fn random_mmio_access(prng: &mut Prng, page: MmioPage) -> MmioAccess {
    let width: Width = if prng.chance(1, 2) {
        4
    } else {
        match prng.below(4) {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => 8,
        }
    };
    let offset = if prng.chance(1, 2) {
        match page {
            MmioPage::LocalApic => prng.below_u16(0x40) * 0x10,
            MmioPage::IoApic => prng.below_u16(2) * 0x10,
            MmioPage::Virtio => prng.below_u16(0x80) * 4,
        }
    } else {
        prng.below_u16(PAGE_BYTES)
    };
    let offset = offset & !(u16::from(width) - 1);
    let write = prng.chance(3, 4).then(|| {
        let value = prng.next_u64();
        if width == 8 { value } else { value & ((1 << (8 * u64::from(width))) - 1) }
    });
    MmioAccess { offset, width, write }
}

/// Where a programming write goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An MMIO page, at an offset.
    Page(MmioPage),
    /// An I/O port (the offset is the port).
    Port,
}

/// One write of a [`random_interrupt_source`] step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// Where.
    pub target: Target,
    /// The offset in the page, or the port.
    pub offset: u16,
    /// 1 or 4 bytes (ports take bytes, the APICs 32-bit words).
    pub width: Width,
    /// The value.
    pub value: u32,
}

/// The most writes one step makes.
pub const MAX_STEP_WRITES: usize = 5;

/// The interrupt sources a step programs (the variants of
/// [`random_interrupt_source`]).
pub const INTERRUPT_SOURCES: u64 = 8;

/// A vector an interrupt controller takes: 16 to 255 (below 16 the local
/// APIC refuses it as illegal, which the random writes try anyway).
fn random_vector(prng: &mut Prng) -> u32 {
    16 + prng.below_u32(240)
}

/// One step of coherent programming with random parameters, so that the
/// interrupt windows take interrupts (random writes alone seldom leave a
/// controller able to deliver one): the local APIC software-enabled with
/// its task priority 0 and LINT0 in ExtINT mode; a self-IPI of a random
/// vector, edge or level; an I/O APIC entry unmasked with a random vector
/// and trigger, to this vCPU; the master 8259A initialised at a random
/// vector base with a random mask; the RTC's periodic interrupt at a
/// random rate; the PIT's counter 0 in mode 2 with a random count; the
/// local APIC timer one-shot or periodic with a random vector, divisor and
/// count; or the PM timer's overflow interrupt (TMR_EN) and the SCI. The
/// writes, in order, in the first of the returned count.
pub fn random_interrupt_source(prng: &mut Prng, pm1_event: u16) -> ([Write; MAX_STEP_WRITES], usize) {
    let apic = |offset: u16, value: u32| Write { target: Target::Page(MmioPage::LocalApic), offset, width: 4, value };
    let io_apic = |offset: u16, value: u32| Write { target: Target::Page(MmioPage::IoApic), offset, width: 4, value };
    let port = |port: u16, value: u8| Write { target: Target::Port, offset: port, width: 1, value: u32::from(value) };
    let none = port(0x80, 0);
    let mut writes = [none; MAX_STEP_WRITES];
    let mut count = 0;
    let mut put = |write: Write| {
        if let Some(slot) = writes.get_mut(count) {
            *slot = write;
            count += 1;
        }
    };
    match prng.below(INTERRUPT_SOURCES) {
        0 => {
            put(apic(0xf0, 0x100 | random_vector(prng)));
            put(apic(0x80, 0));
            put(apic(0x350, 0x700));
        }
        1 => {
            let level = if prng.chance(1, 4) { 1 << 15 | 1 << 14 } else { 0 };
            put(apic(0x300, 1 << 18 | level | random_vector(prng)));
        }
        2 => {
            let entry = prng.below_u32(24);
            let trigger = if prng.chance(1, 2) { 1 << 15 } else { 0 };
            put(io_apic(0, 0x11 + 2 * entry));
            put(io_apic(0x10, 0));
            put(io_apic(0, 0x10 + 2 * entry));
            put(io_apic(0x10, trigger | random_vector(prng)));
        }
        3 => {
            put(port(0x20, 0x11));
            put(port(0x21, random_vector(prng).to_le_bytes()[0] & 0xf8));
            put(port(0x21, 0x04));
            put(port(0x21, 0x01));
            put(port(0x21, prng.next_u8() & prng.next_u8()));
        }
        4 => {
            put(port(0x70, 0x0a));
            put(port(0x71, 0x20 | (3 + prng.next_u8() % 13)));
            put(port(0x70, 0x0b));
            put(port(0x71, 0x42));
        }
        5 => {
            let [low, high] = (100 + prng.below_u16(0xff00)).to_le_bytes();
            put(port(0x43, 0x34));
            put(port(0x40, low));
            put(port(0x40, high));
        }
        6 => {
            let periodic = if prng.chance(1, 2) { 1 << 17 } else { 0 };
            put(apic(0x320, periodic | random_vector(prng)));
            put(apic(0x3e0, prng.below_u32(16)));
            put(apic(0x380, 1 + prng.below_u32(100_000)));
        }
        _ => {
            // PM1 enable is the event block's upper half: TMR_EN.
            put(port(pm1_event + 2, 0x01));
        }
    }
    (writes, count)
}

#[cfg(test)]
mod tests;
