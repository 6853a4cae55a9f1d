//! Alertmanager webhook bodies: `Webhook::parse` and `parse_alerts` on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    heal_fuzz::invariants::webhook(data);
});
