//! Property tests: the invariants of the fuzz targets (`fuzz/`), run by `cargo test` on a
//! few hundred generated inputs each, in a few seconds. Resource addresses, matchers and
//! webhook bodies never panic the parser and read back as they were written; rendering an
//! alert with arbitrary label values either refuses it or runs exactly the policy's steps.

use std::path::PathBuf;
use std::sync::LazyLock;

use crate::invariants::{EXAMPLE_ALERTNAMES, EXAMPLE_LABELS, RenderCheck, sample_alert};
use heal::address::Address;
use heal::alert::{Alert, Webhook};
use heal::matcher::{MatchType, Matchers};
use proptest::prelude::*;
use serde_json::{Value, json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static CHECK: LazyLock<RenderCheck> =
    LazyLock::new(|| RenderCheck::new(&crate_dir().join("examples/policies")));

// ---------------------------------------------------------------------------------------
// Resource addresses

/// A valid Kubernetes object name (DNS-1123 subdomain), up to three parts.
fn object_name() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,12}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?){0,2}"
}

/// An API group such as `argoproj.io` or `example.com`.
fn api_group() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,8}){1,3}"
}

/// Every way a user may write a resource type: well-known names in any case, their
/// plural and short forms, `plural.group`, `plural.version.group` and `GROUP/KIND/`.
fn address_text() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "deployment",
        "deploy",
        "Deployments",
        "sts",
        "StatefulSet",
        "rs",
        "ds",
        "pod",
        "po",
        "node",
        "no",
        "cm",
        "svc",
        "job",
        "cj",
        "pdb",
        "hpa",
        "ns",
        "lease",
        "deployments.apps",
        "leases.coordination.k8s.io",
    ]);
    let version = "v[1-9][0-9]?((alpha|beta)[1-9])?";
    prop_oneof![
        (known, object_name()).prop_map(|(t, n)| format!("{t}/{n}")),
        ("[a-z]{1,12}", api_group(), object_name()).prop_map(|(p, g, n)| format!("{p}.{g}/{n}")),
        ("[a-z]{1,12}", version, api_group(), object_name())
            .prop_map(|(p, v, g, n)| format!("{p}.{v}.{g}/{n}")),
        (api_group(), "[A-Z][a-zA-Z0-9]{0,12}", object_name())
            .prop_map(|(g, k, n)| format!("{g}/{k}/{n}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_text_as_an_address_never_panics(text in any::<String>()) {
        crate::invariants::address(&text);
    }

    #[test]
    fn parsing_address_like_text_never_panics(text in "[a-zA-Z0-9./_-]{0,40}") {
        crate::invariants::address(&text);
    }

    #[test]
    fn every_valid_address_parses_keeps_its_name_and_reads_back_from_its_printed_form(
        text in address_text()
    ) {
        let a: Address = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let suffix = format!("/{}", a.name);
        prop_assert!(text.ends_with(&suffix), "{} has name {}", text, a.name);
        let again: Address = a.to_string().parse().unwrap();
        prop_assert_eq!(&again, &a, "{} printed as {}", text, a);
        crate::invariants::address(&text);
    }
}

// ---------------------------------------------------------------------------------------
// Matchers

/// A label name as Prometheus allows it unquoted.
fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}"
}

fn match_type() -> impl Strategy<Value = MatchType> {
    prop::sample::select(vec![
        MatchType::Equal,
        MatchType::NotEqual,
        MatchType::Regexp,
        MatchType::NotRegexp,
    ])
}

/// A value written inside double quotes, with `\\`, `\"` and `\n` escaped.
fn quoted(v: &str) -> String {
    let escaped = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_text_as_matchers_never_panics(text in any::<String>()) {
        crate::invariants::matchers(&text);
    }

    #[test]
    fn parsing_matcher_like_text_never_panics(text in "[{}a-z=!~,\"\\\\ .*|()\\[\\]^$+?-]{0,40}") {
        crate::invariants::matchers(&text);
    }

    #[test]
    fn a_list_of_quoted_matchers_parses_to_exactly_those_matchers(
        ms in prop::collection::vec((label_name(), match_type(), "[^\\\\]{0,16}"), 0..5)
    ) {
        // Regex values are kept to literal text so that each one compiles.
        let ms: Vec<(String, MatchType, String)> = ms
            .into_iter()
            .map(|(n, op, v)| match op {
                MatchType::Regexp | MatchType::NotRegexp => (n, op, regex_literal(&v)),
                _ => (n, op, v),
            })
            .collect();
        let text = format!(
            "{{{}}}",
            ms.iter()
                .map(|(n, op, v)| format!("{n}{op}{}", quoted(v)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let parsed = Matchers::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: Vec<(String, MatchType, String)> = parsed
            .iter()
            .map(|m| (m.name.clone(), m.op, m.value.clone()))
            .collect();
        prop_assert_eq!(got, ms);
        crate::invariants::matchers(&text);
    }
}

/// `v` with every regex metacharacter escaped.
fn regex_literal(v: &str) -> String {
    v.chars()
        .flat_map(|c| {
            let meta = "\\.+*?()|[]{}^$".contains(c);
            meta.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Webhook bodies

fn example_webhook() -> Value {
    let path = crate_dir().join("examples/alerts/oom-killed.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        Just(json!("2026-08-20T10:00:00Z")),
        Just(json!("firing")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Where in the example webhook a generated value may be put.
const WEBHOOK_FIELDS: &[&[&str]] = &[
    &["version"],
    &["status"],
    &["receiver"],
    &["groupKey"],
    &["truncatedAlerts"],
    &["groupLabels"],
    &["commonLabels"],
    &["routeLabels"],
    &["notification_reason"],
    &["externalURL"],
    &["alerts"],
    &["alerts", "0"],
    &["alerts", "0", "status"],
    &["alerts", "0", "labels"],
    &["alerts", "0", "labels", "namespace"],
    &["alerts", "0", "annotations"],
    &["alerts", "0", "startsAt"],
    &["alerts", "0", "endsAt"],
    &["alerts", "0", "fingerprint"],
    &["alerts", "0", "generatorURL"],
];

fn set_path(v: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        cur = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
    }
    match last.parse::<usize>() {
        Ok(i) => cur[i] = new,
        Err(_) => cur[*last] = new,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_bytes_as_a_webhook_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        crate::invariants::webhook(&data);
    }

    #[test]
    fn a_webhook_with_one_field_replaced_by_any_json_parses_or_names_what_is_wrong(
        field in prop::sample::select(WEBHOOK_FIELDS),
        value in json_value(),
    ) {
        let mut body = example_webhook();
        set_path(&mut body, field, value);
        let bytes = serde_json::to_vec(&body).unwrap();
        crate::invariants::webhook(&bytes);
    }

    #[test]
    fn any_label_and_annotation_text_survives_parsing_unchanged(
        labels in prop::collection::btree_map(any::<String>(), any::<String>(), 0..6),
        summary in any::<String>(),
    ) {
        let mut body = example_webhook();
        body["alerts"][0]["labels"] = json!(labels);
        body["alerts"][0]["annotations"]["summary"] = json!(summary);
        let bytes = serde_json::to_vec(&body).unwrap();
        let w = Webhook::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&w.alerts[0].labels, &labels);
        prop_assert_eq!(&w.alerts[0].annotations["summary"], &summary);
        crate::invariants::webhook(&bytes);
    }
}

// ---------------------------------------------------------------------------------------
// Rendering with hostile label values

/// Label text an attacker would try: YAML and JSON syntax, engine substitutions, control
/// and odd Unicode characters, long runs; or any string at all.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "\"",
        "'",
        "\\",
        "\n",
        "\r\n",
        "\t",
        ": ",
        "- ",
        "#",
        "&a",
        "*a",
        "!!str",
        "---",
        "...",
        "{{",
        "}}",
        "{{workflow.name}}",
        "$(",
        ")",
        "$(params.x)",
        "${x}",
        "`",
        "|",
        ">",
        "[",
        "]",
        "{",
        "}",
        ",",
        "--",
        "--kubeconfig=/evil",
        " ",
        "\u{0}",
        "\u{85}",
        "\u{2028}",
        "\u{feff}",
        "\u{fffd}",
        "😀",
        "web",
        "shop",
        "a.b",
        "-",
        ".",
        "/",
        "evil:latest",
        "image: evil",
    ]);
    prop_oneof![
        3 => prop::collection::vec(piece, 1..8).prop_map(|p| p.concat()),
        1 => any::<String>(),
        1 => "[a-z0-9][-a-z0-9.]{0,70}",
        1 => (1usize..400).prop_map(|n| "x".repeat(n)),
    ]
}

/// One of the example alerts' label names, or an unrelated one.
fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(EXAMPLE_LABELS).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// The sample alert under one of the example alert names, with some labels replaced by
/// hostile text or removed.
fn hostile_alert() -> impl Strategy<Value = Alert> {
    (
        prop::sample::select(EXAMPLE_ALERTNAMES),
        prop::collection::vec(
            (label_key(), prop::option::weighted(0.9, hostile_text())),
            0..4,
        ),
        prop::option::weighted(0.2, hostile_text()),
    )
        .prop_map(|(name, overrides, fingerprint)| {
            let mut labels = sample_alert(name).labels;
            for (k, v) in overrides {
                match v {
                    Some(v) => labels.insert(k, v),
                    None => labels.remove(&k),
                };
            }
            let mut alert = Alert::new(labels);
            if let Some(fp) = fingerprint {
                alert.fingerprint = fp;
            }
            alert
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn rendering_an_alert_with_arbitrary_label_values_refuses_it_or_keeps_the_policys_steps(
        alert in hostile_alert()
    ) {
        CHECK.check(&alert);
    }
}

#[test]
fn the_render_property_is_not_vacuous_every_example_alert_name_renders_for_every_engine() {
    for name in EXAMPLE_ALERTNAMES {
        let s = CHECK.check(&sample_alert(name));
        assert!(s.matched >= 1, "{name}: no example policy matched: {s:?}");
        assert_eq!(s.plans_refused, 0, "{name}: {s:?}");
        assert_eq!(s.renders_refused, 0, "{name}: {s:?}");
        assert_eq!(s.rendered, 4 * s.matched, "{name}: {s:?}");
    }
}
