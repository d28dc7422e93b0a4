//! Decodes arbitrary bytes into a sequence of system calls
//! (`bulkhead_harness::decode`) and runs it on the kernel core and the
//! spec side by side; a violation of refinement or of an invariant
//! panics with the step, the failed checks and the sequence.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let ops = bulkhead_harness::decode::ops(bytes);
    if let Err(violation) = bulkhead_harness::driver::run(&ops) {
        panic!("{violation}the sequence: {ops:?}");
    }
});
