//! Every input a fuzz target (`fuzz/`) or a property test found to break an invariant, kept
//! as a test so that the fix stays fixed. Each test replays the input through the same
//! invariant (`fuzz/src/invariants.rs`) and asserts what a user sees. See docs/fuzzing.md.

use std::path::PathBuf;

use crate::invariants::{RenderCheck, sample_alert};
use heal::address::{Address, AddressError, TypeRef};
use heal::alert::Webhook;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// address target, finding 1: crash-50e552e131033fe6ddcd54e2cdcaddfead1171b0
//
// `rollouts.v1alppod/web-7d4j.io/canary` was read as GROUP/KIND/NAME with the kind
// `web-7d4j.io`, which printed as `web-7d4j.io.rollouts.v1alppod/canary`: a different group.
// A kind never has a dot, so the address is now refused.

#[test]
fn an_address_whose_kind_has_a_dot_is_refused_as_malformed() {
    let input = "rollouts.v1alppod/web-7d4j.io/canary";
    assert!(
        matches!(input.parse::<Address>(), Err(AddressError::Malformed(_))),
        "{:?}",
        input.parse::<Address>()
    );
    crate::invariants::address(input);
}

// ---------------------------------------------------------------------------------------
// address target, finding 2 (after fixing 1): `v1.o1rolloutro/wlloutro/o`
//
// A GROUP/KIND/NAME address whose group starts with a version-like part printed as
// `wlloutro.v1.o1rolloutro/o`, which reads back as version v1 of group `o1rolloutro`;
// and an address with a pinned version (`rollouts.v1alpha1.argoproj.io/web`) printed
// without it. Both now print in a form that reads back to the same address.

#[test]
fn a_group_that_looks_like_a_version_prints_in_the_group_kind_name_form() {
    let input = "v1.o1rolloutro/wlloutro/o";
    let a: Address = input.parse().unwrap();
    assert_eq!(a.to_string(), input);
    assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
    crate::invariants::address(input);
}

#[test]
fn an_address_with_a_pinned_version_prints_with_that_version() {
    let input = "rollouts.v1alpha1.argoproj.io/web";
    let a: Address = input.parse().unwrap();
    assert_eq!(a.to_string(), input);
    let TypeRef::Discover { group, version, .. } = a.type_ref else {
        panic!("a custom resource needs discovery");
    };
    assert_eq!(group, "argoproj.io");
    assert_eq!(version.as_deref(), Some("v1alpha1"));
    crate::invariants::address(input);
}

// Found while fixing finding 1, by reading the same code: a type with an empty
// dot-separated part (`rollouts.v1./web` gave an empty API group, which printed as
// `rollouts./web`, an address heal refuses).

#[test]
fn a_type_or_group_with_an_empty_part_is_refused() {
    for input in [
        "rollouts.v1./web",
        "rollouts..argoproj.io/web",
        "rollouts.argoproj.io./web",
        "argoproj..io/Rollout/web",
        ".argoproj.io/Rollout/web",
    ] {
        assert!(
            input.parse::<Address>().is_err(),
            "{input} parses as {:?}",
            input.parse::<Address>()
        );
        crate::invariants::address(input);
    }
}

// ---------------------------------------------------------------------------------------
// render target, finding 1: a NUL in the fingerprint
//
// The first render run stopped on an alert whose fingerprint held a NUL character: the
// renderer refused it, as it must, but the fuzz harness expected the stand-in run (which
// shares the fingerprint) to render. The harness now requires both to be refused; this test
// keeps the product's side of it: such an alert never becomes a manifest.

#[test]
fn an_alert_whose_fingerprint_holds_a_nul_is_refused_by_every_engine() {
    let check =
        RenderCheck::new(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/policies"));
    let mut alert = sample_alert("KubePodCrashLooping");
    alert.fingerprint = "\0".into();
    let s = check.check(&alert);
    assert_eq!(s.matched, 1, "{s:?}");
    assert_eq!(s.rendered, 0, "{s:?}");
    assert_eq!(s.renders_refused, 4, "{s:?}");
}

// ---------------------------------------------------------------------------------------
// webhook target, finding 1: crash-5caee02b64fdbbbd54bca6d4da2bb38cbc72ef9b
//
// `"endsAt": "0001-01-01T00:00:00z"` (lower-case z) is Go's zero time, which Alertmanager
// sends while an alert fires, but only the exact text `0001-01-01T00:00:00Z` was read as
// "not ended": the alert got an end time in year 1, and the parsed webhook no longer read
// back the same once serialised. The zero instant is now unset however it is written.

fn webhook_with_ends_at(ends_at: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/alerts/oom-killed.json");
    let mut body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    body["alerts"][0]["endsAt"] = json!(ends_at);
    serde_json::to_vec(&body).unwrap()
}

#[test]
fn the_zero_end_time_written_any_way_means_the_alert_has_not_ended() {
    for ends_at in [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00z",
        "0001-01-01T00:00:00.000Z",
        "0001-01-01T01:00:00+01:00",
    ] {
        let body = webhook_with_ends_at(ends_at);
        let w = Webhook::parse(&body).unwrap();
        assert_eq!(w.alerts[0].ends_at, None, "endsAt {ends_at}");
        crate::invariants::webhook(&body);
    }
    // A real end time is kept.
    let w = Webhook::parse(&webhook_with_ends_at("2026-08-20T10:05:00Z")).unwrap();
    assert_eq!(
        w.alerts[0].ends_at.map(|t| t.to_string()).as_deref(),
        Some("2026-08-20T10:05:00Z")
    );
}
