use super::*;

#[test]
fn exits_are_counted_by_kind_and_in_total() {
    let mut counters = Counters::default();
    counters.count_exit(Some(ExitKind::Cpuid));
    counters.count_exit(Some(ExitKind::Cpuid));
    counters.count_exit(Some(ExitKind::Other));
    counters.count_exit(None);
    assert_eq!(counters.exits(Some(ExitKind::Cpuid)), 2);
    assert_eq!(counters.exits(Some(ExitKind::Other)), 1);
    assert_eq!(counters.exits(None), 1);
    assert_eq!(counters.exits(Some(ExitKind::Hlt)), 0);
    assert_eq!(counters.total_exits(), 4);
    let sum: u64 = ExitKind::ALL.iter().map(|kind| counters.exits(Some(*kind))).sum();
    assert_eq!(sum + counters.exits(None), counters.total_exits());
}

#[test]
fn counts_saturate() {
    let mut counters = Counters::default();
    counters.count_string_elements(u64::MAX);
    counters.count_string_elements(5);
    assert_eq!(counters.string_io_elements(), u64::MAX);
    counters.count_injected(13);
    counters.count_injected(200);
    assert_eq!((counters.injected(13), counters.injected(200)), (1, 0));
}
