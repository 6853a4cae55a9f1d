//! Alertmanager matcher lists (`{a="b", c=~"d"}`) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    heal_fuzz::invariants::matchers(text);
});
