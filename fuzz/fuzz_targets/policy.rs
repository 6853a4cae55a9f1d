//! The policy loader on arbitrary YAML text; what loads is planned and rendered for a
//! sample alert.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use heal_fuzz::invariants::{RenderCheck, policy_yaml};
use libfuzzer_sys::fuzz_target;

static CHECK: LazyLock<RenderCheck> = LazyLock::new(|| {
    RenderCheck::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies"))
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    policy_yaml(&text, &CHECK);
});
