use proptest::prelude::*;

use super::*;

/// The PM blocks of the PC board: PM1a event, PM1a control, the PM timer.
const PM_PORTS: [(u16, u16); 3] = [(0x600, 0x603), (0x604, 0x605), (0x608, 0x60b)];
const PM1_CONTROL: u16 = 0x604;

#[test]
fn the_command_line_gives_the_seed_and_the_rounds() {
    let options = parse_command_line(b"console=ttyS0 hostile.seed=12345 hostile.rounds=10 tsc_early_khz=2000000");
    assert_eq!(options, Options { seed: 12345, rounds: 10 });
    assert_eq!(parse_command_line(b"hostile.seed=0xDEADbeef"), Options { seed: 0xdead_beef, rounds: DEFAULT_ROUNDS });
    // Defaults, malformed values, the cap, the last word winning, the NUL.
    assert_eq!(parse_command_line(b""), Options { seed: DEFAULT_SEED, rounds: DEFAULT_ROUNDS });
    assert_eq!(
        parse_command_line(b"hostile.seed=12a hostile.seed= hostile.rounds=-1"),
        Options { seed: DEFAULT_SEED, rounds: DEFAULT_ROUNDS }
    );
    assert_eq!(parse_command_line(b"hostile.seed=99999999999999999999").seed, DEFAULT_SEED, "past 64 bits");
    assert_eq!(parse_command_line(b"hostile.rounds=4294967296").rounds, MAX_ROUNDS);
    assert_eq!(parse_command_line(b"hostile.rounds=200000").rounds, MAX_ROUNDS);
    assert_eq!(parse_command_line(b"hostile.seed=1 hostile.seed=2").seed, 2);
    assert_eq!(parse_command_line(b"hostile.seed=7\0hostile.seed=8").seed, 7);
    assert_eq!(parse_command_line(b"xhostile.seed=7").seed, DEFAULT_SEED, "a whole word only");
}

#[test]
fn the_generator_is_splitmix64() {
    // SplitMix64's first outputs for seed 0 (Vigna's reference
    // implementation gives these).
    let mut prng = Prng::new(0);
    assert_eq!(prng.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(prng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(prng.next_u64(), 0x06c4_5d18_8009_454f);
    // The same seed, the same sequence.
    let (mut a, mut b) = (Prng::new(42), Prng::new(42));
    assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    assert_eq!(Prng::new(5).below(0), 0);
}

#[test]
fn forbidden_ports_are_refused_and_sleep_enable_is_cleared() {
    assert!(!port_access_allowed(0x3f8, 1));
    assert!(!port_access_allowed(0x3ff, 1));
    assert!(!port_access_allowed(0x3f6, 4), "reaches 0x3f8");
    assert!(port_access_allowed(0x3f4, 4), "ends at 0x3f7");
    assert!(port_access_allowed(0x400, 4));
    assert!(!port_access_allowed(0xcf9, 1));
    assert!(!port_access_allowed(0xcf8, 2));
    assert!(!port_access_allowed(0xcf6, 4));
    assert!(port_access_allowed(0xcfa, 4));
    assert!(port_access_allowed(0xcf5, 4));
    assert!(!port_access_allowed(0xfffe, 4), "past the last port");
    assert!(port_access_allowed(0xfffc, 4));
    // SLP_EN is bit 5 of the byte at PM1 control + 1, wherever the
    // access starts.
    assert_eq!(without_sleep_enable(0x604, 2, 0xffff, PM1_CONTROL), 0xdfff);
    assert_eq!(without_sleep_enable(0x605, 1, 0xff, PM1_CONTROL), 0xdf);
    assert_eq!(without_sleep_enable(0x602, 4, 0xffff_ffff, PM1_CONTROL), 0xdfff_ffff);
    assert_eq!(without_sleep_enable(0x604, 1, 0xff, PM1_CONTROL), 0xff, "the low byte has no SLP_EN");
    assert_eq!(without_sleep_enable(0x606, 2, 0xffff, PM1_CONTROL), 0xffff);
    assert_eq!(without_sleep_enable(0x3400, 2, 0x3400, PM1_CONTROL), 0x3400, "another port");
}

#[test]
fn random_accesses_reach_every_board_port_and_register() {
    let mut prng = Prng::new(7);
    let mut seen_ports = std::collections::BTreeSet::new();
    let mut pm1_sleep_types = std::collections::BTreeSet::new();
    for _ in 0..20_000 {
        let access = random_port_access(&mut prng, &PM_PORTS, PM1_CONTROL);
        seen_ports.insert(access.port);
        if let (0x604, 2, Some(value)) = (access.port, access.width, access.write) {
            pm1_sleep_types.insert((value >> 10) & 7);
        }
    }
    for port in BOARD_PORTS.iter().copied().chain(PM_PORTS.iter().flat_map(|&(first, last)| first..=last)) {
        assert!(seen_ports.contains(&port), "port {port:#x} never drawn");
    }
    assert_eq!(pm1_sleep_types.len(), 8, "every sleep type is written, without SLP_EN");
    for page in [MmioPage::LocalApic, MmioPage::IoApic, MmioPage::Virtio] {
        let mut widths = std::collections::BTreeSet::new();
        let mut registers = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let access = random_mmio_access(&mut prng, page);
            widths.insert(access.width);
            if access.width == 4 {
                registers.insert(access.offset);
            }
        }
        assert_eq!(widths.into_iter().collect::<Vec<_>>(), [1, 2, 4, 8], "{page:?}");
        let expected: Vec<u16> = match page {
            MmioPage::LocalApic => (0..0x400).step_by(0x10).collect(),
            MmioPage::IoApic => vec![0, 0x10],
            MmioPage::Virtio => (0..0x200).step_by(4).collect(),
        };
        assert!(expected.iter().all(|offset| registers.contains(offset)), "{page:?}: a register never written");
    }
}

#[test]
fn every_interrupt_source_is_programmed() {
    let mut prng = Prng::new(3);
    let mut first_writes = std::collections::BTreeSet::new();
    for _ in 0..2_000 {
        let (writes, count) = random_interrupt_source(&mut prng, 0x600);
        assert!((1..=MAX_STEP_WRITES).contains(&count));
        first_writes.insert((format!("{:?}", writes[0].target), writes[0].offset));
    }
    assert_eq!(first_writes.len() as u64, INTERRUPT_SOURCES, "{first_writes:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// No seed makes the guest touch its console or the reset register,
    /// or set SLP_EN; every access stays inside its page, aligned to its
    /// width, with a value that fits it.
    #[test]
    fn no_seed_makes_a_forbidden_access(seed in any::<u64>(), pm1_control in 0x400_u16..0xf000) {
        let pm_ports = [(pm1_control - 4, pm1_control - 1), (pm1_control, pm1_control + 1)];
        let mut prng = Prng::new(seed);
        for _ in 0..64 {
            let access = random_port_access(&mut prng, &pm_ports, pm1_control);
            prop_assert!([1, 2, 4].contains(&access.width));
            prop_assert!(port_access_allowed(access.port, access.width));
            if let Some(value) = access.write {
                prop_assert!(access.width == 4 || value >> (8 * u32::from(access.width)) == 0);
                let first = u32::from(access.port);
                let high = u32::from(pm1_control) + 1;
                if (first..first + u32::from(access.width)).contains(&high) {
                    prop_assert_eq!(value >> (8 * (high - first)) & 0x20, 0, "SLP_EN set");
                }
            }
            let (writes, count) = random_interrupt_source(&mut prng, pm1_control - 4);
            for write in &writes[..count] {
                prop_assert!([1, 4].contains(&write.width));
                if write.target == Target::Port {
                    prop_assert!(port_access_allowed(write.offset, write.width));
                    prop_assert!(write.offset != pm1_control + 1 && write.value <= 0xff);
                } else {
                    prop_assert!(write.offset % 4 == 0 && write.offset < PAGE_BYTES);
                }
            }
            for page in [MmioPage::LocalApic, MmioPage::IoApic, MmioPage::Virtio] {
                let access = random_mmio_access(&mut prng, page);
                prop_assert!([1, 2, 4, 8].contains(&access.width));
                prop_assert_eq!(access.offset % u16::from(access.width), 0);
                prop_assert!(access.offset + u16::from(access.width) <= PAGE_BYTES);
                if let (Some(value), true) = (access.write, access.width < 8) {
                    prop_assert_eq!(value >> (8 * u64::from(access.width)), 0);
                }
            }
        }
    }

    /// Any command line parses without a panic, within the cap.
    #[test]
    fn any_command_line_parses(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(parse_command_line(&line).rounds <= MAX_ROUNDS);
    }
}
