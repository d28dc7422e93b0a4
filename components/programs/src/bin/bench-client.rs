//! The test system `ipc_bench`'s client (tests/systems/ipc_bench.capdl): makes 10,000 one-word Calls to the server, checks every answer, and prints the TSC ticks per round trip (instructions under QEMU `-icount shift=0`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

bulkhead_programs::program!("ipc_bench", "bench-client", run);

/// The measured round trips.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const ROUND_TRIPS: u64 = 10_000;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_info: &bulkhead_sys::PdInfo, sys: &mut bulkhead_sys::Sys) -> u64 {
    use bulkhead_components::cap::{Cap, kind};
    use bulkhead_sys::arch::read_tsc;
    use bulkhead_sys::println;
    let endpoint: Cap<kind::Endpoint> = Cap::new(names::caps::BENCH);
    // The answer is the word plus this PD's badge, the same every time
    // and never 0.
    let mut badge = None;
    let start = read_tsc();
    for word in 0..ROUND_TRIPS {
        match bulkhead_programs::call_echo(sys, endpoint, word) {
            Ok(answer)
                if answer != word && *badge.get_or_insert(answer.wrapping_sub(word)) == answer.wrapping_sub(word) => {}
            Ok(answer) => {
                println!("call {word} answered {answer}");
                return 1;
            }
            Err(error) => {
                println!("call {word} failed: {error}");
                return 1;
            }
        }
    }
    let ticks = read_tsc().saturating_sub(start);
    let (whole, hundredths) = bulkhead_programs::hundredths(ticks, ROUND_TRIPS);
    println!(
        "{ROUND_TRIPS} round trips, every answer right: {ticks} TSC ticks, {whole}.{hundredths:02} per round trip"
    );
    0
}
