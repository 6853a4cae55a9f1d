//! Invariants checked by the fuzz targets (`fuzz/fuzz_targets/`), the property tests
//! (`tests/properties.rs`) and the regression tests (`tests/fuzz_regressions.rs`): each
//! function takes one input, feeds it to heal's parsers or renderer, and panics with a
//! message naming the broken invariant. Bad input must give an error, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use heal::address::{Address, TypeRef};
use heal::alert::{self, Alert, Webhook};
use heal::matcher::Matchers;
use heal::plan::Plan;
use heal::policy::{self, Decision, Policy, PolicySet};
use heal::render::{Engine, RenderOptions, Rendered, Renderer};
use serde_json::Value;

/// Longest error message a parser may produce for any input. Errors end up in heald's
/// 400 answers and in logs; echoing a large hostile body back is a bug.
pub const MAX_ERROR_BYTES: usize = 4096;

fn assert_error_readable(what: &str, message: &str) {
    assert!(!message.is_empty(), "{what}: empty error message");
    assert!(
        message.len() <= MAX_ERROR_BYTES,
        "{what}: error message of {} bytes (at most {MAX_ERROR_BYTES}): {}...",
        message.len(),
        message.chars().take(200).collect::<String>()
    );
}

/// The webhook parser: `Webhook::parse` and `parse_alerts` never panic, errors are short,
/// a parsed body yields the same alerts through both entry points and reads back
/// identically after serialisation (what heald stores is what it got).
pub fn webhook(data: &[u8]) {
    let parsed = Webhook::parse(data);
    let alerts = alert::parse_alerts(data);
    match (&parsed, &alerts) {
        (Ok(w), Ok(a)) => {
            assert_eq!(&w.alerts, a, "parse_alerts differs from Webhook::parse");
            let json = serde_json::to_vec(w).expect("a parsed webhook serialises");
            let again = Webhook::parse(&json)
                .unwrap_or_else(|e| panic!("a serialised webhook does not parse back: {e}"));
            assert_eq!(&again, w, "a webhook changes through serialise and parse");
            assert_eq!(again.into_alerts().len(), w.alerts.len());
        }
        (Ok(_), Err(e)) => panic!("Webhook::parse accepts a body parse_alerts refuses: {e}"),
        (Err(e), _) => assert_error_readable("Webhook::parse", &e.to_string()),
    }
    if let Err(e) = &alerts {
        assert_error_readable("parse_alerts", &e.to_string());
    }
    if let Ok(list) = &alerts {
        for a in list {
            assert_eq!(a.fingerprint.len(), 16, "fingerprint {:?}", a.fingerprint);
            assert!(
                a.fingerprint
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "fingerprint {:?} is not lowercase hex",
                a.fingerprint
            );
        }
    }
}

/// Matcher parsing: never panics, errors are short and name a column inside the input, and
/// a parsed list prints (as Alertmanager prints matchers) to text that parses back to the
/// same matchers.
pub fn matchers(text: &str) {
    match Matchers::parse(text) {
        Ok(ms) => {
            let printed = ms.to_string();
            let again = Matchers::parse(&printed).unwrap_or_else(|e| {
                panic!("matchers {text:?} print as {printed:?}, which does not parse: {e}")
            });
            assert_eq!(again, ms, "matchers {text:?} print as {printed:?}");
            let labels: alert::LabelSet = ms
                .iter()
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect();
            let _ = ms.matches(&labels);
        }
        Err(e) => {
            assert!(
                e.column >= 1 && e.column <= text.chars().count() + 1,
                "column {} outside {text:?}",
                e.column
            );
            assert_error_readable("Matchers::parse", &e.message);
        }
    }
}

/// Resource addresses: never panic; an accepted address keeps its name, prints to an
/// address that parses back, and printing is a fixed point (prints the same again).
pub fn address(text: &str) {
    let Ok(a) = text.parse::<Address>() else {
        return;
    };
    assert!(
        text.ends_with(&format!("/{}", a.name)),
        "{text:?}: name {:?}",
        a.name
    );
    heal::address::check_name(&a.name).unwrap_or_else(|e| panic!("{text:?}: accepted name: {e}"));
    let printed = a.to_string();
    let again = printed
        .parse::<Address>()
        .unwrap_or_else(|e| panic!("{text:?} prints as {printed:?}, which does not parse: {e}"));
    assert_eq!(again.name, a.name, "{text:?} prints as {printed:?}");
    assert_eq!(again.to_string(), printed, "{text:?} prints as {printed:?}");
    match (&a.type_ref, &again.type_ref) {
        (TypeRef::Known(x), TypeRef::Known(y)) => {
            assert_eq!((&x.group, &x.kind), (&y.group, &y.kind), "{text:?}")
        }
        (
            TypeRef::Discover {
                group: g1,
                name: n1,
                ..
            },
            TypeRef::Discover {
                group: g2,
                name: n2,
                ..
            },
        ) => assert_eq!((g1, n1), (g2, n2), "{text:?} prints as {printed:?}"),
        (x, y) => panic!("{text:?} prints as {printed:?}: {x:?} became {y:?}"),
    }
}

/// The policy loader: never panics, every error names the file, and a loaded policy set
/// plans and renders a sample alert for every policy without panicking.
pub fn policy_yaml(text: &str, checker: &RenderCheck) {
    match PolicySet::from_yaml("fuzz.yaml", text) {
        Err(errs) => {
            assert!(!errs.0.is_empty(), "an empty error list");
            for e in &errs.0 {
                assert_eq!(e.at().file, Path::new("fuzz.yaml"), "{e}");
                assert!(!e.to_string().is_empty());
            }
        }
        Ok(set) => {
            let _ = policy::prometheus_rules(&set).to_yaml();
            let sample = sample_alert("Sample");
            let _ = policy::decide(&set, &sample);
            for p in &set.policies {
                if let Ok(plan) = policy::plan(p, &sample, &checker.defaults) {
                    for (engine, renderer) in checker.engines() {
                        let _ = renderer.render(&plan, engine);
                    }
                }
            }
        }
    }
}

/// A firing alert called `alertname` carrying every label the example policies read, with
/// ordinary values (the flat-format alerts name their policy in `heal_policy`).
pub fn sample_alert(alertname: &str) -> Alert {
    let heal_policy = match alertname {
        "HealHighCpu" => "high-cpu",
        "HealCrashLoop" => "crash-loop",
        _ => "sample",
    };
    let labels = [
        ("alertname", alertname),
        ("namespace", "shop"),
        ("pod", "web-7d4f9c6b8-x2k4q"),
        ("deployment", "web"),
        ("container", "web"),
        ("node", "worker-1"),
        ("instance", "10.0.3.17:9100"),
        ("mountpoint", "/var/log"),
        ("heal_policy", heal_policy),
        ("severity", "warning"),
    ];
    Alert::new(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The label names the example policies read (targets, placeholders, matchers).
pub const EXAMPLE_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "deployment",
    "container",
    "node",
    "instance",
    "mountpoint",
    "heal_policy",
    "severity",
    "condition",
    "status",
    "device",
    "fstype",
];

/// The alert names the example policies answer.
pub const EXAMPLE_ALERTNAMES: &[&str] = &[
    "KubePodCrashLooping",
    "HighCpuUsage",
    "KubeDeploymentRolloutStuck",
    "KubePodOOMKilled",
    "KubeNodeNotReady",
    "NodeFilesystemSpaceFillingUp",
    "HealHighCpu",
    "HealCrashLoop",
];

/// What [`RenderCheck::check`] saw for one alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderSummary {
    /// Policies the alert matched.
    pub matched: usize,
    /// Plans refused (a label unfit for where the policy puts it).
    pub plans_refused: usize,
    /// Renderings refused by the renderer's checks.
    pub renders_refused: usize,
    /// Renderings produced and found to keep the policy's shape.
    pub rendered: usize,
}

/// The example policies with a renderer per engine configuration, to check that hostile
/// alert values never change what a rendered run does.
pub struct RenderCheck {
    /// The example policies.
    pub set: PolicySet,
    /// Plan defaults, as heald ships them (with a report URL).
    pub defaults: policy::PlanDefaults,
    plain: Renderer,
    embed: Renderer,
}

/// Label values are replaced by `zzqNNqzz` to learn which parts of a run come from them:
/// valid names, safe to splice, and unlike anything in the policies or templates.
const MARK: &str = "zzq";

fn sentinel(i: usize) -> String {
    format!("{MARK}{i:02}qzz")
}

impl RenderCheck {
    /// Load the policies of `dir` (the repository's `examples/policies`).
    pub fn new(dir: &Path) -> RenderCheck {
        let set = heal::offline::load_policies(&[dir.to_path_buf()])
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let plain = Renderer::new(RenderOptions::default()).expect("default render options");
        let embed = Renderer::new(RenderOptions {
            tekton_embed_task: true,
            ..RenderOptions::default()
        })
        .expect("embedded-task render options");
        RenderCheck {
            set,
            defaults: policy::PlanDefaults {
                image: "ghcr.io/heal-project/heal:0.1.0".into(),
                report_url: Some("http://heald.heal-system.svc:8080/v1/reports".into()),
                prometheus_url: Some("http://prometheus.monitoring:9090".into()),
                ..policy::PlanDefaults::default()
            },
            plain,
            embed,
        }
    }

    fn engines(&self) -> [(Engine, &Renderer); 4] {
        [
            (Engine::Argo, &self.plain),
            (Engine::Tekton, &self.plain),
            (Engine::Tekton, &self.embed),
            (Engine::Local, &self.plain),
        ]
    }

    /// Match `alert` against the example policies, plan and render every match for every
    /// engine, and check each rendering against the same run made from harmless stand-in
    /// label values: the same document shape (keys, list lengths, numbers), every string
    /// that does not come from a label identical (tasks, images, commands, service
    /// accounts, engine variables), no more `{{` or `$(` than the stand-in run has, and the
    /// steps' arguments exactly the policy's with the label values in their places.
    pub fn check(&self, alert: &Alert) -> RenderSummary {
        let mut summary = RenderSummary::default();
        for m in policy::decide(&self.set, alert) {
            if m.decision != Decision::Matched {
                continue;
            }
            summary.matched += 1;
            self.check_policy(m.policy, alert, &mut summary);
        }
        summary
    }

    fn check_policy(&self, policy: &Policy, alert: &Alert, summary: &mut RenderSummary) {
        let hostile = match policy::plan(policy, alert, &self.defaults) {
            Ok(p) => p,
            Err(e) => {
                summary.plans_refused += 1;
                assert_error_readable(&format!("plan {}", policy.name), &e.to_string());
                return;
            }
        };
        let values: Vec<&str> = alert.labels.values().map(String::as_str).collect();
        let mut stand_in = alert.clone();
        for (i, v) in stand_in.labels.values_mut().enumerate() {
            *v = sentinel(i);
        }
        let reference = policy::plan(policy, &stand_in, &self.defaults).unwrap_or_else(|e| {
            panic!(
                "policy {}: the stand-in alert does not plan: {e}",
                policy.name
            )
        });
        check_plan_shape(&hostile, &reference, &values);
        for (engine, renderer) in self.engines() {
            let want = match renderer.render(&reference, engine) {
                Ok(w) => w,
                Err(e) => {
                    // Refused for what both plans share (fingerprint, start time): the
                    // hostile plan must be refused as well.
                    let got = renderer.render(&hostile, engine);
                    assert!(
                        got.is_err(),
                        "policy {}: {engine} renders the hostile plan but refuses the \
                         stand-in plan: {e}",
                        policy.name
                    );
                    summary.renders_refused += 1;
                    continue;
                }
            };
            match renderer.render(&hostile, engine) {
                Err(e) => {
                    summary.renders_refused += 1;
                    assert_error_readable(&format!("render {engine}"), &e.to_string());
                }
                Ok(got) => {
                    summary.rendered += 1;
                    check_rendered(&got, &want);
                }
            }
        }
    }
}

/// Replace each stand-in in `s` by the label value it stands for, in one pass.
fn fill_in(s: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + MARK.len()..];
        let index = tail
            .get(..2)
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|_| tail.get(2..5) == Some("qzz"));
        match index.and_then(|i| values.get(i)) {
            Some(v) => {
                out.push_str(v);
                rest = &tail[5..];
            }
            None => {
                out.push_str(MARK);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The hostile plan is the stand-in plan with the label values put back: same steps,
/// dependencies, retries, timeouts, service accounts and image, and each argument the
/// stand-in's argument with the values in place of the stand-ins.
fn check_plan_shape(hostile: &Plan, reference: &Plan, values: &[&str]) {
    assert_eq!(hostile.image, reference.image, "image");
    assert_eq!(hostile.service_account, reference.service_account);
    assert_eq!(hostile.run_namespace, reference.run_namespace);
    assert_eq!(hostile.run_name, reference.run_name);
    assert_eq!(hostile.correlation_id, reference.correlation_id);
    assert_eq!(hostile.deadline_seconds, reference.deadline_seconds);
    assert_eq!(hostile.dry_run, reference.dry_run);
    assert_eq!(hostile.steps.len(), reference.steps.len(), "step count");
    for (h, r) in hostile.steps.iter().zip(&reference.steps) {
        assert_eq!(h.name, r.name);
        assert_eq!(h.action, r.action);
        assert_eq!(h.after, r.after);
        assert_eq!(h.retries, r.retries);
        assert_eq!(h.timeout_seconds, r.timeout_seconds);
        assert_eq!(h.service_account, r.service_account);
        let want: Vec<String> = r.argv().iter().map(|a| fill_in(a, values)).collect();
        assert_eq!(
            h.argv(),
            want,
            "step {}: the arguments are not the policy's",
            h.name
        );
    }
}

fn count(s: &str, pattern: &str) -> usize {
    s.matches(pattern).count()
}

/// `got` (hostile values) against `want` (stand-ins): same shape, strings that do not
/// come from labels identical, no extra engine substitutions, one YAML document.
fn check_rendered(got: &Rendered, want: &Rendered) {
    let docs: Vec<Value> = heal::yaml::from_str_multi(&got.yaml)
        .unwrap_or_else(|e| panic!("{}: the YAML does not parse: {e}", got.engine));
    assert_eq!(docs.len(), 1, "{}: documents", got.engine);
    assert_eq!(
        docs[0], got.value,
        "{}: the YAML and the value differ",
        got.engine
    );
    let mut g = BTreeMap::new();
    let mut w = BTreeMap::new();
    leaves(&got.value, String::new(), &mut g);
    leaves(&want.value, String::new(), &mut w);
    let gk: Vec<&String> = g.keys().collect();
    let wk: Vec<&String> = w.keys().collect();
    assert_eq!(gk, wk, "{}: the document's shape changed", got.engine);
    for (path, wv) in &w {
        let gv = &g[path];
        match (wv, gv) {
            (Value::String(ws), Value::String(gs)) => {
                if !ws.contains(MARK) {
                    assert_eq!(gs, ws, "{}: {path} changed", got.engine);
                }
                for pattern in ["{{", "$("] {
                    assert_eq!(
                        count(gs, pattern),
                        count(ws, pattern),
                        "{}: {path} = {gs:?} has a {pattern:?} the template does not",
                        got.engine
                    );
                }
            }
            (Value::String(_), other) => {
                panic!("{}: {path} became {other}", got.engine)
            }
            (a, b) => assert_eq!(a, b, "{}: {path}", got.engine),
        }
    }
}

/// Every leaf of a JSON value by path (`spec.templates[1].container.image`); empty objects
/// and lists are leaves too, so the paths describe the whole shape.
fn leaves(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, x) in o {
                leaves(x, format!("{path}.{k:?}"), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{path}[{i}]"), out);
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_are_replaced_once_and_other_text_is_kept() {
        let s = format!("a{}b{}c{MARK}9", sentinel(0), sentinel(1));
        assert_eq!(fill_in(&s, &["x", "zzq00qzz"]), "axbzzq00qzzczzq9");
    }
}
