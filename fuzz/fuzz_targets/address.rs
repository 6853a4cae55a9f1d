//! kubectl-style resource addresses (`deploy/web`, `rollouts.argoproj.io/web`) on arbitrary
//! text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    heal_fuzz::invariants::address(text);
});
