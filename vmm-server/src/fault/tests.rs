use super::*;

fn exception(vector: u8) -> Event {
    let error_code = has_error_code(vector).then_some(0);
    Exception { vector, error_code }.event().expect("a valid exception")
}

#[test]
fn the_constants_are_events_the_kernel_accepts() {
    for exception in [Exception::INVALID_OPCODE, Exception::DOUBLE_FAULT, Exception::GENERAL_PROTECTION] {
        assert!(exception.event().is_some(), "{exception:?}");
    }
    assert_eq!(Exception { vector: 13, error_code: None }.event(), None);
    assert_eq!(Exception { vector: 15, error_code: None }.event(), None);
    assert_eq!(Exception { vector: 40, error_code: None }.event(), None);
}

#[test]
fn qualifications_give_exceptions_with_their_error_codes() {
    let general_protection = 13 | 1 << 8 | 0x18 << 32;
    assert_eq!(
        Exception::from_qualification(general_protection),
        Some(Exception { vector: 13, error_code: Some(0x18) })
    );
    assert_eq!(Exception::from_qualification(6), Some(Exception::INVALID_OPCODE));
    // The vector decides whether an error code is pushed.
    assert_eq!(Exception::from_qualification(6 | 1 << 8 | 5 << 32), Some(Exception::INVALID_OPCODE));
    assert_eq!(Exception::from_qualification(13), Some(Exception::GENERAL_PROTECTION));
    // Not exceptions.
    assert_eq!(Exception::from_qualification(2), None);
    assert_eq!(Exception::from_qualification(15), None);
    assert_eq!(Exception::from_qualification(32), None);
}

#[test]
fn double_faults_follow_the_sdm_table() {
    let double_fault = exception(8);
    // Contributory then contributory, page fault then contributory or page fault.
    assert_eq!(combine(exception(13), exception(0)), Ok(double_fault));
    assert_eq!(combine(exception(10), exception(13)), Ok(double_fault));
    assert_eq!(combine(exception(14), exception(13)), Ok(double_fault));
    assert_eq!(combine(exception(14), exception(14)), Ok(double_fault));
    // Contributory then page fault, benign either way: the second alone.
    assert_eq!(combine(exception(13), exception(14)), Ok(exception(14)));
    assert_eq!(combine(exception(6), exception(13)), Ok(exception(13)));
    assert_eq!(combine(exception(13), exception(6)), Ok(exception(6)));
    // After a double fault, shutdown.
    assert_eq!(combine(double_fault, exception(13)), Err(Stop::TripleFault));
    assert_eq!(combine(double_fault, exception(14)), Err(Stop::TripleFault));
    assert_eq!(combine(double_fault, exception(6)), Ok(exception(6)));
}

#[test]
fn an_interrupt_cannot_wait_for_an_exception() {
    let interrupt = Event { vector: 0x30, kind: EventKind::External, error_code: None };
    let nmi = Event { vector: 2, kind: EventKind::Nmi, error_code: None };
    for pending in [interrupt, nmi] {
        assert_eq!(
            combine(pending, exception(13)),
            Err(Stop::UndeliverableEvent { event: pending.to_word(), other: exception(13).to_word() })
        );
    }
    let software = Event { vector: 0x80, kind: EventKind::Software, error_code: None };
    assert_eq!(combine(software, exception(13)), Ok(exception(13)));
}
