//! The harness in `cargo test`.

use std::collections::BTreeMap;

use bulkhead_harness::driver::hunt;

#[test]
fn fixed_seed_run() {
    let found = hunt(1, 200, 100);
    let mut table: BTreeMap<&str, BTreeMap<u64, usize>> = BTreeMap::new();
    for ((op, code), count) in &found.stats.results {
        table.entry(op).or_default().insert(*code, *count);
    }
    for (op, codes) in table {
        println!("{op}: {codes:?}");
    }
    println!("applied {} skipped {}", found.stats.applied, found.stats.skipped);
    if let Some((number, ops, violation)) = found.violation {
        panic!("sequence {number}: {violation}\n{ops:?}");
    }
}
