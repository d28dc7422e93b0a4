use proptest::prelude::*;

use super::*;
use crate::boot::acpi::PC_PM_REGISTERS;

const MS: Nanoseconds = 1_000_000;
/// A 2 GHz TSC.
const TSC_HZ: u64 = 2_000_000_000;
const IF: u64 = rflags::IF;

fn board() -> Pc {
    Pc::new(PcConfig {
        apic_id: 0,
        tsc_hz: TSC_HZ,
        unix_seconds: 1_700_000_000,
        ram: RamSizes { below_4gib_bytes: 128 << 20, above_4gib_bytes: 0 },
        pm: PC_PM_REGISTERS,
    })
}

fn out(pc: &mut Pc, port: u16, value: u8, now: Nanoseconds) {
    assert_eq!(pc.write_port(port, AccessSize::Byte, u32::from(value), now), Some(ControlFlow::Continue(())));
}

fn mmio_write(pc: &mut Pc, address: u64, value: u32, now: Nanoseconds) {
    assert_eq!(pc.write_mmio(address, AccessSize::Dword, u64::from(value), now), Some(ControlFlow::Continue(())));
}

/// Linux's 8259A set-up: vectors 0x30 and 0x38, cascade on IRQ2, 8086
/// mode, then the masks.
fn init_pic(pc: &mut Pc, master_mask: u8, slave_mask: u8) {
    for (port, value) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01)] {
        out(pc, port, value, 0);
    }
    for (port, value) in [(0xa0, 0x11), (0xa1, 0x38), (0xa1, 0x02), (0xa1, 0x01)] {
        out(pc, port, value, 0);
    }
    out(pc, 0x21, master_mask, 0);
    out(pc, 0xa1, slave_mask, 0);
}

/// PIT counter 0 in mode 2 with `count`.
fn start_pit(pc: &mut Pc, count: u16, now: Nanoseconds) {
    out(pc, 0x43, 0x34, now);
    let [low, high] = count.to_le_bytes();
    out(pc, 0x40, low, now);
    out(pc, 0x40, high, now);
}

/// I/O APIC entry `line`: `vector`, physical destination 0, unmasked.
fn route_io_apic(pc: &mut Pc, line: u8, vector: u8, level: bool) {
    let index = 0x10 + 2 * u32::from(line);
    mmio_write(pc, IO_APIC_BASE, index + 1, 0);
    mmio_write(pc, IO_APIC_BASE + 0x10, 0, 0);
    mmio_write(pc, IO_APIC_BASE, index, 0);
    mmio_write(pc, IO_APIC_BASE + 0x10, u32::from(vector) | if level { 1 << 15 } else { 0 }, 0);
}

fn lapic_eoi(pc: &mut Pc, now: Nanoseconds) {
    mmio_write(pc, LOCAL_APIC_BASE + 0xb0, 0, now);
}

#[test]
fn the_local_apic_starts_in_virtual_wire_mode() {
    let pc = board();
    assert!(pc.local_apic().is_software_enabled());
    assert_eq!(pc.local_apic().lint0_mode(), Some(DeliveryMode::ExtInt));
    assert_eq!(pc.local_apic().lint1_mode(), Some(DeliveryMode::Nmi));
    assert!(!pc.has_interrupt());
}

#[test]
fn the_pit_reaches_the_guest_through_the_8259a() {
    let mut pc = board();
    init_pic(&mut pc, 0xfe, 0xff);
    start_pit(&mut pc, 1193, 0);
    pc.update(MS / 2);
    assert!(!pc.has_interrupt(), "no edge before the first period ends");
    let next = pc.next_event(MS / 2).expect("the PIT schedules its edge");
    assert!(next > MS / 2 && next <= MS + MS / 100, "next event {next}");
    pc.update(next);
    assert!(pc.has_interrupt());
    assert_eq!(pc.take_interrupt(), Some(0x30));
    assert!(!pc.has_interrupt(), "one edge, one interrupt");
    assert_eq!(pc.counters().injected, 1);
}

#[test]
fn a_masked_8259a_line_raises_nothing() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    start_pit(&mut pc, 1193, 0);
    pc.update(10 * MS);
    assert!(!pc.has_interrupt());
    assert_eq!(pc.take_interrupt(), None);
}

#[test]
fn a_vector_below_16_is_dropped_and_counted() {
    // Firmware leaves the master's base at 0x08: unmasking IRQ0 without
    // reprogramming it would raise vector 8, which is no external
    // interrupt.
    let mut pc = board();
    out(&mut pc, 0x21, 0xfe, 0);
    start_pit(&mut pc, 1193, 0);
    pc.update(2 * MS);
    assert!(pc.has_interrupt());
    assert_eq!(pc.take_interrupt(), None);
    assert_eq!(pc.counters().illegal_vectors, 1);
}

#[test]
fn a_dropped_vector_does_not_stay_in_service_and_block_lower_lines() {
    // Master at firmware's 0x08 (IRQ0 and the cascade unmasked), slave at
    // firmware's 0x70 (IRQ10 unmasked): IRQ0's vector 8 is dropped, and
    // the slave's IRQ10, below IRQ0 in priority, still gets through.
    let mut pc = board();
    out(&mut pc, 0x21, 0xfa, 0);
    out(&mut pc, 0xa1, 0xfb, 0);
    start_pit(&mut pc, 1193, 0);
    pc.update(2 * MS);
    assert_eq!(pc.take_interrupt(), None);
    assert_eq!(pc.counters().illegal_vectors, 1);
    pc.set_isa_line(10, true);
    assert_eq!(pc.take_interrupt(), Some(0x72));
}

#[test]
fn a_dropped_vector_that_a_level_line_raises_again_asks_for_no_window() {
    // Found by the hostile PC guest: the master at firmware's 0x08, line 5
    // level-triggered (ELCR) and held high by a device, the guest with
    // interrupts on. Each plan drops vector 13, which the line raises again
    // at once; a window exit asked for over RFLAGS.IF = 1 would end every
    // entry before the guest's first instruction, and it would never run
    // again.
    let mut pc = board();
    out(&mut pc, 0x4d0, 0x20, 0);
    out(&mut pc, 0x21, 0xdf, 0);
    pc.set_isa_line(5, true);
    let mut halted = false;
    let mut guest = registers(0x2 | IF);
    for exits in 1..=3 {
        let plan = pc.plan_entry(&mut guest, 0, &mut halted, 0);
        assert_eq!(guest.event, 0, "vector 13 is no external interrupt");
        assert!(!plan.interrupt_window, "a window over IF = 1 would end the entry at once");
        assert!(pc.has_interrupt(), "the line still raises it");
        assert!(pc.counters().illegal_vectors >= exits, "dropped at every exit");
        assert!(pc.counters().illegal_vectors <= u64::from(ISA_LINES) * exits, "a bounded number of tries per plan");
    }
}

#[test]
fn an_interrupt_behind_a_dropped_vector_is_injected_in_the_same_plan() {
    // The master at firmware's 0x08 with IRQ0 (an edge, vector 8) and the
    // cascade unmasked, the slave at 0x70 with IRQ10: vector 8 is dropped
    // and the slave's 0x72 injected at once, not left for a later exit.
    let mut pc = board();
    out(&mut pc, 0x21, 0xfa, 0);
    out(&mut pc, 0xa1, 0xfb, 0);
    start_pit(&mut pc, 1193, 0);
    pc.set_isa_line(10, true);
    let mut halted = false;
    let mut guest = registers(0x2 | IF);
    let plan = pc.plan_entry(&mut guest, 0, &mut halted, 2 * MS);
    assert_eq!(guest.event & 0xff, 0x72);
    assert_eq!(pc.counters().illegal_vectors, 1);
    assert!(!plan.interrupt_window);
}

#[test]
fn the_pit_reaches_the_guest_through_the_io_apic_on_input_2() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 2, 0x31, false);
    start_pit(&mut pc, 1193, 0);
    pc.update(2 * MS);
    assert_eq!(pc.take_interrupt(), Some(0x31));
    assert_eq!(pc.take_interrupt(), None);
    lapic_eoi(&mut pc, 2 * MS);
    pc.update(3 * MS + MS / 10);
    assert_eq!(pc.take_interrupt(), Some(0x31), "the next period's edge");
}

#[test]
fn a_level_interrupt_is_sent_again_after_eoi_while_its_line_is_asserted() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 5, 0x41, true);
    pc.set_isa_line(5, true);
    assert_eq!(pc.take_interrupt(), Some(0x41));
    assert_eq!(pc.take_interrupt(), None, "remote IRR holds it until the EOI");
    lapic_eoi(&mut pc, 0);
    assert_eq!(pc.take_interrupt(), Some(0x41), "still asserted: delivered again");
    pc.set_isa_line(5, false);
    lapic_eoi(&mut pc, 0);
    assert_eq!(pc.take_interrupt(), None);
}

#[test]
fn the_board_s_own_lines_cannot_be_driven_from_outside() {
    let mut pc = board();
    init_pic(&mut pc, 0x00, 0x00);
    for line in [0, 2, 8, PC_PM_REGISTERS.sci_irq, 16, 200] {
        pc.set_isa_line(line, true);
    }
    assert!(!pc.has_interrupt());
    pc.set_isa_line(4, true);
    assert_eq!(pc.take_interrupt(), Some(0x34));
}

#[test]
fn the_tsc_deadline_timer_fires_at_its_deadline() {
    let mut pc = board();
    // LVT timer: vector 0xef, TSC-deadline mode.
    mmio_write(&mut pc, LOCAL_APIC_BASE + 0x320, 0xef | 0b10 << 17, 0);
    // 1 ms of a 2 GHz TSC.
    pc.set_tsc_deadline(2_000_000, 0);
    assert_eq!(pc.tsc_deadline(), 2_000_000);
    assert_eq!(pc.next_event(0), Some(MS));
    pc.update(MS - 1);
    assert!(!pc.has_interrupt());
    pc.update(MS);
    assert_eq!(pc.take_interrupt(), Some(0xef));
    assert_eq!(pc.tsc_deadline(), 0, "the timer disarms itself");
}

#[test]
fn writing_s5_to_pm1_control_powers_off() {
    let mut pc = board();
    let control = PC_PM_REGISTERS.control_port;
    let value = 5 << 10 | 1 << 13;
    assert_eq!(pc.write_port(control, AccessSize::Word, value, 0), Some(ControlFlow::Break(Stop::PoweredOff)));
    assert!(pc.power_off_requested());
}

#[test]
fn the_reset_control_register_resets_with_rst_cpu_and_keeps_the_rest() {
    let mut pc = board();
    out(&mut pc, 0xcf9, 0x02, 0);
    assert_eq!(pc.read_port(0xcf9, AccessSize::Byte, 0), Some(0x02));
    out(&mut pc, 0xcf9, 0xf9, 0);
    assert_eq!(pc.read_port(0xcf9, AccessSize::Byte, 0), Some(0x08), "only SYS_RST and FULL_RST are kept");
    // The FADT's RESET_VALUE.
    assert_eq!(pc.write_port(0xcf9, AccessSize::Byte, 0x06, 0), Some(ControlFlow::Break(Stop::Reset)));
}

#[test]
fn the_board_answers_on_every_range_it_names_and_nowhere_else() {
    let mut pc = board();
    let ranges = pc.port_ranges();
    assert_eq!(ranges.len(), 10);
    assert!(ranges.contains(&(0xcf9, 0xcf9)), "the reset control register");
    for port in 0..=u16::MAX {
        let named = ranges.iter().any(|&(first, last)| (first..=last).contains(&port));
        assert_eq!(pc.read_port(port, AccessSize::Byte, 0).is_some(), named, "port {port:#x}");
    }
}

#[test]
fn ports_and_pages_outside_the_board_are_not_its() {
    let mut pc = board();
    assert_eq!(pc.read_port(0x3f8, AccessSize::Byte, 0), None);
    assert_eq!(pc.write_port(0xe9, AccessSize::Byte, 0, 0), None);
    assert_eq!(pc.read_mmio(0xfed0_0000, AccessSize::Dword, 0), None);
    assert_eq!(pc.write_mmio(LOCAL_APIC_BASE - 4, AccessSize::Dword, 0, 0), None);
    assert_eq!(pc.read_mmio(LOCAL_APIC_BASE + 0x30, AccessSize::Dword, 0).map(|v| v & 0xff), Some(0x14));
}

fn registers(rflags: u64) -> GuestRegisters {
    GuestRegisters { rflags, ..GuestRegisters::default() }
}

#[test]
fn an_interrupt_is_injected_when_the_guest_can_take_it() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 4, 0x44, false);
    pc.set_isa_line(4, true);
    let mut halted = false;
    let mut guest = registers(0x2 | IF);
    let plan = pc.plan_entry(&mut guest, 0, &mut halted, 0);
    assert_eq!(
        Event::from_word(guest.event),
        Ok(Some(Event { vector: 0x44, kind: EventKind::External, error_code: None }))
    );
    assert_eq!(plan, EntryPlan { deadline: None, interrupt_window: false, wait: false });
}

#[test]
fn a_guest_that_cannot_take_an_interrupt_gets_a_window_exit() {
    for (rflags, interruptibility, event) in
        [(0x2, 0, 0), (0x2 | IF, 1, 0), (0x2 | IF, 2, 0), (0x2 | IF, 0, 0x8000_0320)]
    {
        let mut pc = board();
        init_pic(&mut pc, 0xff, 0xff);
        route_io_apic(&mut pc, 4, 0x44, false);
        pc.set_isa_line(4, true);
        let mut halted = false;
        let mut guest = registers(rflags);
        guest.event = event;
        let plan = pc.plan_entry(&mut guest, interruptibility, &mut halted, 0);
        assert_eq!(guest.event, event, "nothing injected over {rflags:#x}/{interruptibility}/{event:#x}");
        assert!(plan.interrupt_window && !plan.wait);
        assert!(pc.has_interrupt(), "the interrupt still waits");
    }
}

#[test]
fn a_halted_guest_waits_for_the_next_timer_event_then_takes_it() {
    let mut pc = board();
    init_pic(&mut pc, 0xfe, 0xff);
    start_pit(&mut pc, 11932, 0);
    let mut halted = true;
    let mut guest = registers(0x2 | IF);
    let plan = pc.plan_entry(&mut guest, 0, &mut halted, MS);
    assert!(plan.wait && !plan.interrupt_window);
    let deadline = plan.deadline.expect("the PIT's next edge");
    assert!((10 * MS..=10 * MS + MS / 100).contains(&deadline), "deadline {deadline}");
    let plan = pc.plan_entry(&mut guest, 0, &mut halted, deadline);
    assert!(!halted && !plan.wait);
    assert_eq!(guest.event & 0xff, 0x30);
}

#[test]
fn a_lower_priority_interrupt_waits_for_the_end_of_the_higher_one() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 4, 0x44, false);
    route_io_apic(&mut pc, 3, 0x54, false);
    pc.set_isa_line(4, true);
    pc.set_isa_line(3, true);
    let mut halted = false;
    let mut guest = registers(0x2 | IF);
    let plan = pc.plan_entry(&mut guest, 0, &mut halted, 0);
    assert_eq!(guest.event & 0xff, 0x54, "the higher priority class first");
    assert!(!plan.interrupt_window, "0x44 is below the processor priority while 0x54 is in service");
    assert!(!pc.has_interrupt());
    lapic_eoi(&mut pc, 0);
    guest.event = 0;
    pc.plan_entry(&mut guest, 0, &mut halted, 0);
    assert_eq!(guest.event & 0xff, 0x44);
}

#[test]
fn an_interrupt_behind_one_being_injected_asks_for_a_window() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 4, 0x44, false);
    route_io_apic(&mut pc, 3, 0x65, false);
    pc.set_isa_line(4, true);
    let mut halted = false;
    let mut guest = registers(0x2 | IF);
    pc.plan_entry(&mut guest, 0, &mut halted, 0);
    assert_eq!(guest.event & 0xff, 0x44);
    // The first is still being delivered (its handler has not run yet)
    // when the second arrives: it needs the next window.
    pc.set_isa_line(3, true);
    let plan = pc.plan_entry(&mut guest, 0, &mut halted, 0);
    assert_eq!(guest.event & 0xff, 0x44);
    assert!(plan.interrupt_window && pc.has_interrupt());
}

#[test]
fn an_ipi_to_all_others_reaches_no_one_and_a_self_ipi_arrives() {
    let mut pc = board();
    // ICR: vector 0x50, fixed, shorthand "all excluding self".
    mmio_write(&mut pc, LOCAL_APIC_BASE + 0x300, 0x50 | 0b11 << 18, 0);
    pc.update(0);
    assert_eq!(pc.take_interrupt(), None);
    assert_eq!(pc.counters().undelivered_messages, 1);
    // Shorthand "self".
    mmio_write(&mut pc, LOCAL_APIC_BASE + 0x300, 0x51 | 0b01 << 18, 0);
    pc.update(0);
    assert_eq!(pc.take_interrupt(), Some(0x51));
}

#[test]
fn the_adapters_reach_the_board_and_read_open_bus_when_it_is_busy() {
    let cell = RefCell::new(board());
    let now = || 0;
    let mut ports = BoardPorts { pc: &cell, now: &now };
    assert_eq!(ports.write(0x70, AccessSize::Byte, 0x0f), ControlFlow::Continue(()));
    let mut page = BoardPage { pc: &cell, now: &now, base: LOCAL_APIC_BASE };
    assert_eq!(page.read(0x30, AccessSize::Dword) & 0xff, 0x14);
    // LVT timer in TSC-deadline mode: the MSR is ignored in the others.
    assert_eq!(page.write(0x320, AccessSize::Dword, 0xef | 0b10 << 17), ControlFlow::Continue(()));
    let mut msrs = BoardMsrs { pc: &cell, now: &now };
    assert_eq!(msrs.write(TSC_DEADLINE_MSR, 77), Some(()));
    assert_eq!(msrs.read(TSC_DEADLINE_MSR), Some(77));
    assert_eq!(msrs.read(0x10), None);
    let _held = cell.borrow_mut();
    assert_eq!(ports.read(0x71, AccessSize::Byte), 0xff);
    assert_eq!(page.read(0x30, AccessSize::Dword), 0xffff_ffff);
}

#[derive(Clone, Debug)]
enum Step {
    Out(u16, u8),
    In(u16),
    Mmio(bool, u16, u32),
    Line(u8, bool),
    Tsc(u64),
    Enter(u64, u8, bool),
}

fn step() -> impl Strategy<Value = Step> {
    let port = prop_oneof![
        0x20_u16..=0x21,
        0xa0_u16..=0xa1,
        0x40_u16..=0x43,
        Just(0x61),
        0x70_u16..=0x71,
        0x600_u16..=0x60b,
        0x4d0_u16..=0x4d1
    ];
    prop_oneof![
        (port.clone(), any::<u8>()).prop_map(|(port, value)| Step::Out(port, value)),
        port.prop_map(Step::In),
        (any::<bool>(), 0_u16..0x400, any::<u32>()).prop_map(|(io, offset, value)| Step::Mmio(io, offset & !3, value)),
        (0_u8..20, any::<bool>()).prop_map(|(line, level)| Step::Line(line, level)),
        any::<u64>().prop_map(Step::Tsc),
        (any::<u64>(), 0_u8..4, any::<bool>()).prop_map(|(rflags, shadow, halted)| Step::Enter(rflags, shadow, halted)),
    ]
}

proptest! {
    /// Whatever the guest writes and whenever the VMM asks, the board
    /// never panics, time never makes it loop, an injected event is a
    /// valid external interrupt, and an interrupt the board holds is
    /// injected, waited for through a window, or waited for halted.
    #[test]
    fn random_guests_never_break_the_board(steps in proptest::collection::vec((step(), 0_u64..5_000_000), 1..200)) {
        let mut pc = board();
        let mut now = 0;
        for (step, advance) in steps {
            now += advance;
            match step {
                Step::Out(port, value) => { let _ = pc.write_port(port, AccessSize::Byte, u32::from(value), now); }
                Step::In(port) => {
                    // 0x606 and 0x607 lie between the PM blocks: not the board's.
                    let value = pc.read_port(port, AccessSize::Byte, now);
                    prop_assert_eq!(value.is_none(), matches!(port, 0x606 | 0x607));
                }
                Step::Mmio(io, offset, value) => {
                    let base = if io { IO_APIC_BASE } else { LOCAL_APIC_BASE };
                    let _ = pc.write_mmio(base + u64::from(offset), AccessSize::Dword, u64::from(value), now);
                }
                Step::Line(line, level) => pc.set_isa_line(line, level),
                Step::Tsc(value) => pc.set_tsc_deadline(value, now),
                Step::Enter(flags, shadow, halted) => {
                    let mut guest = registers(flags & 0x3f_7fd7 | 0x2);
                    let can_take = guest.rflags & IF != 0 && (halted || shadow & 0b11 == 0);
                    let mut halted = halted;
                    let plan = pc.plan_entry(&mut guest, u64::from(shadow), &mut halted, now);
                    // Nothing is left waiting unnoticed: an interrupt the
                    // board holds is injected, or the entry asks for a
                    // window, or the guest waits halted (IF clear), or it
                    // is an 8259A vector below 16 that a level line raised
                    // again, to be dropped at the next exit.
                    if pc.has_interrupt() {
                        let mut pic = *pc.pic();
                        let dropped_again = guest.event == 0
                            && can_take
                            && pc.local_apic().highest_pending().is_none()
                            && pic.acknowledge().is_some_and(|vector| vector < FIRST_EXTERNAL_VECTOR);
                        prop_assert!(plan.interrupt_window || plan.wait || dropped_again, "{:?}", plan);
                    }
                    // No window over a guest that can take an interrupt and
                    // was given none: it would end the entry at once.
                    if plan.interrupt_window {
                        prop_assert!(!can_take || guest.event != 0, "{:?}", plan);
                    }
                    if plan.wait {
                        prop_assert!(halted && guest.event == 0 && !plan.interrupt_window);
                    }
                    if let Some(deadline) = plan.deadline {
                        prop_assert!(deadline >= now);
                    }
                    if guest.event != 0 {
                        let event = Event::from_word(guest.event);
                        prop_assert!(matches!(event, Ok(Some(Event { kind: EventKind::External, .. }))), "{event:?}");
                        prop_assert!(!halted);
                    }
                }
            }
        }
    }
}

/// The guest's deadline "1 ms from now", computed from its RDTSC, fires
/// 1 ms from now when the vCPU has the clock's TSC offset (without it,
/// the base: 500 s late here).
#[test]
fn a_tsc_deadline_from_the_guest_s_rdtsc_fires_on_time() {
    let base = 1_000_000_000_000;
    let clock = crate::platform::TscClock::new(base, TSC_HZ);
    let mut pc = board();
    mmio_write(&mut pc, LOCAL_APIC_BASE + 0x320, 0xef | 0b10 << 17, 0);
    let host_tsc = base + TSC_HZ;
    let now = clock.nanoseconds(host_tsc);
    let guest_tsc = host_tsc.wrapping_add(clock.guest_tsc_offset());
    pc.set_tsc_deadline(guest_tsc + 2_000_000, now);
    let deadline = pc.next_event(now).expect("the deadline");
    assert_eq!(clock.tsc_at(deadline), host_tsc + 2_000_000);
}

/// `sti; hlt`: the HLT exit reports the STI shadow, which ended when the
/// HLT retired; the halted guest takes the interrupt.
#[test]
fn a_halted_guest_is_woken_whatever_shadow_its_hlt_exit_reported() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 4, 0x44, false);
    pc.set_isa_line(4, true);
    let mut halted = true;
    let mut guest = registers(0x2 | IF);
    let plan = pc.plan_entry(&mut guest, 1, &mut halted, 0);
    assert_eq!(guest.event & 0xff, 0x44);
    assert!(!halted && !plan.wait);
}

/// A timer edge that happened before an access is routed before it: the
/// PIT's 1 ms edge, with I/O APIC entry 2 unmasked, is not lost to a mask
/// written at 1.2 ms (the first access since 0.9 ms).
#[test]
fn an_edge_before_an_access_is_routed_before_it() {
    let mut pc = board();
    init_pic(&mut pc, 0xff, 0xff);
    route_io_apic(&mut pc, 2, 0x31, false);
    start_pit(&mut pc, 1193, 0);
    mmio_write(&mut pc, IO_APIC_BASE, 0x14, 900_000);
    mmio_write(&mut pc, IO_APIC_BASE + 0x10, 0x31 | 1 << 16, 1_200_000);
    assert_eq!(pc.take_interrupt(), Some(0x31));
}
