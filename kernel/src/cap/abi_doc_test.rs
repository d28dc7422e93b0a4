//! Keeps `docs/abi.md` in step with the code: every invocation label with
//! its name, argument words and extra capabilities, every object type and
//! every error code must appear in its table, and the tables must list
//! nothing the code does not have.

use super::invocation::LABELS;
use super::object::ObjectKind;
use crate::error::SyscallError;

const ABI_DOC: &str = include_str!("../../../docs/abi.md");

/// The rows of the table whose header line contains `header`.
fn table_rows(header: &str) -> Vec<Vec<String>> {
    let mut lines = ABI_DOC.lines().skip_while(|line| !line.contains(header));
    lines.next().expect("the table exists");
    lines
        .skip(1) // the |---| line
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect()
}

#[test]
fn every_invocation_is_documented_exactly() {
    let rows = table_rows("| label | name | argument words | extra caps |");
    let all = LABELS
        .iter()
        .chain(crate::syscall::INVOCATION_LABELS.iter())
        .chain(crate::io_port::LABELS.iter())
        .chain(crate::irq::LABELS.iter())
        .chain(crate::vspace::LABELS.iter())
        .chain(crate::vcpu::LABELS.iter());
    let count = LABELS.len()
        + crate::syscall::INVOCATION_LABELS.len()
        + crate::io_port::LABELS.len()
        + crate::irq::LABELS.len()
        + crate::vspace::LABELS.len()
        + crate::vcpu::LABELS.len();
    assert_eq!(rows.len(), count, "extra or missing rows");
    for &(label, name, words, extra) in all {
        let row = rows
            .iter()
            .find(|row| row[0] == label.to_string())
            .unwrap_or_else(|| panic!("label {label} ({name}) is not in docs/abi.md"));
        assert_eq!(row[1], name, "label {label}");
        assert_eq!(row[2], words.join(", "), "{name}'s argument words");
        assert_eq!(row[3], extra.join(", "), "{name}'s extra capabilities");
    }
}

#[test]
fn every_object_type_is_documented() {
    let rows = table_rows("| value | type | size |");
    assert_eq!(rows.len(), ObjectKind::ALL.len());
    for kind in ObjectKind::ALL {
        let row = rows.iter().find(|row| row[0] == (kind as u64).to_string()).expect("a row per type");
        assert_eq!(row[1], format!("{kind:?}").replace("Tcb", "TCB"), "type {}", kind as u64);
    }
}

#[test]
fn every_error_code_is_documented() {
    let rows = table_rows("| code | name | meaning |");
    assert_eq!(rows.len(), SyscallError::ALL.len() + 1, "one row per error plus success");
    for error in SyscallError::ALL {
        let row = rows.iter().find(|row| row[0] == error.code().to_string()).expect("a row per code");
        assert_eq!(row[1], format!("{error:?}"));
    }
}

#[test]
fn every_system_call_is_documented() {
    let rows = table_rows("| number | system call |");
    assert_eq!(rows.len(), crate::syscall::SYSCALLS.len());
    for (number, name) in crate::syscall::SYSCALLS {
        let row = rows.iter().find(|row| row[0] == number.to_string()).expect("a row per system call");
        assert_eq!(row[1], name);
    }
}
