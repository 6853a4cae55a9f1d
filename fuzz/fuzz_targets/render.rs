//! Rendering with hostile alert values: a sample alert whose labels, name, fingerprint and
//! start are overridden by fuzzed values goes through the example policies, `plan` and
//! every engine's renderer; a rendering must keep the policy's steps, images and commands.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use heal::alert::{Alert, Status};
use heal_fuzz::invariants::{EXAMPLE_ALERTNAMES, EXAMPLE_LABELS, RenderCheck, sample_alert};
use libfuzzer_sys::fuzz_target;

static CHECK: LazyLock<RenderCheck> = LazyLock::new(|| {
    RenderCheck::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies"))
});

/// A label name: one the example policies read, or any string.
#[derive(Debug, Arbitrary)]
enum Key {
    Known(u8),
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Index into the example alert names, or a name of its own.
    alertname: Key,
    /// Labels to set (`Some`) or remove (`None`), over the sample alert's.
    overrides: Vec<(Key, Option<String>)>,
    /// A fingerprint to use instead of the computed one.
    fingerprint: Option<String>,
    /// `startsAt`, in seconds since the epoch.
    starts_at: i64,
    resolved: bool,
}

fuzz_target!(|input: Input| {
    let name = match input.alertname {
        Key::Known(i) => EXAMPLE_ALERTNAMES[usize::from(i) % EXAMPLE_ALERTNAMES.len()].to_string(),
        Key::Other(s) => s,
    };
    let mut alert = sample_alert(&name);
    for (key, value) in input.overrides {
        let key = match key {
            Key::Known(i) => EXAMPLE_LABELS[usize::from(i) % EXAMPLE_LABELS.len()].to_string(),
            Key::Other(s) => s,
        };
        match value {
            Some(v) => alert.labels.insert(key, v),
            None => alert.labels.remove(&key),
        };
    }
    let mut alert = Alert::new(alert.labels);
    if let Some(fp) = input.fingerprint {
        alert.fingerprint = fp;
    }
    if let Ok(t) = jiff::Timestamp::from_second(input.starts_at) {
        alert.starts_at = t;
    }
    if input.resolved {
        alert.status = Status::Resolved;
    }
    let summary = CHECK.check(&alert);
    // `HEAL_FUZZ_STATS=1 .../render -runs=0 fuzz/corpus/render` tells how the corpus fares.
    if std::env::var_os("HEAL_FUZZ_STATS").is_some() {
        eprintln!("render-stats {summary:?}");
    }
});
