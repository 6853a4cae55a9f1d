//! The older flat policy format (`condition: {metric, operator, threshold, window}` plus
//! `action: {type, ...}`), mapped onto the same model. Its alerts are the ones
//! `heal policy rules` generates: alertname `Heal<PolicyName>` and label `heal_policy`.

use std::time::Duration;

use serde::Deserialize;

use super::load::{IntOrString, Issue, at, check_label_name, duration, issue, k};
use super::{
    Action, Guards, OnFailure, OnResolved, OnSuccess, Policy, Source, StatusFilter, Step,
    TargetSpec, ValueSource,
};
use crate::matcher::{MatchType, Matcher, Matchers};
use crate::yaml::Segment;

/// The label that ties a generated alert to its flat-format policy.
pub const POLICY_LABEL: &str = "heal_policy";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlat {
    name: String,
    condition: RawCondition,
    action: RawAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    metric: String,
    operator: String,
    threshold: f64,
    window: IntOrString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(rename = "type")]
    kind: String,
    description: Option<String>,
    replicas: Option<u32>,
}

/// A flat-format condition: the Prometheus alerting rule a policy's alert comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatCondition {
    /// Metric name or PromQL expression compared with the threshold.
    pub metric: String,
    /// `>`, `<`, `>=`, `<=`, `==` or `!=`.
    pub operator: String,
    /// The threshold.
    pub threshold: f64,
    /// How long the condition must hold (the rule's `for`).
    pub window: Duration,
    /// The alert name the rule fires and the policy matches.
    pub alertname: String,
    /// The action's description, used as the alert's summary.
    pub description: Option<String>,
}

impl FlatCondition {
    /// The PromQL expression of the rule, e.g. `cpu_usage > 0.85`.
    pub fn expr(&self) -> String {
        let simple = self
            .metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let threshold = format_threshold(self.threshold);
        if simple {
            format!("{} {} {threshold}", self.metric, self.operator)
        } else {
            format!("({}) {} {threshold}", self.metric, self.operator)
        }
    }
}

fn format_threshold(t: f64) -> String {
    // f64's Display never uses an exponent and prints 3.0 as "3": both valid PromQL.
    format!("{t}")
}

/// The alert name a flat-format policy matches: `Heal` plus the policy name in
/// PascalCase (`high-cpu` -> `HealHighCpu`).
pub fn flat_alert_name(policy: &str) -> String {
    let mut out = String::from("Heal");
    for part in policy.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

const TYPES: &str = "restart-pod, delete-pod, restart-deployment, restart-statefulset, \
                     restart-daemonset, scale-deployment, scale-statefulset, cordon-node, \
                     uncordon-node, drain-node";

fn label_target(kind: &str, name_label: &str, namespaced: bool) -> TargetSpec {
    TargetSpec {
        kind: kind.to_string(),
        namespace: namespaced.then(|| ValueSource::Label("namespace".into())),
        name: ValueSource::Label(name_label.to_string()),
    }
}

pub(super) fn convert(
    raw: RawFlat,
    source: Source,
    base: &[Segment],
) -> Result<Policy, Vec<Issue>> {
    let mut issues = Vec::new();
    check_label_name("policy", &raw.name, &at(base, &[k("name")]), &mut issues);
    let cp = at(base, &[k("condition")]);
    let c = &raw.condition;
    if !matches!(c.operator.as_str(), ">" | "<" | ">=" | "<=" | "==" | "!=") {
        issues.push(issue(
            &at(&cp, &[k("operator")]),
            format!("unknown operator {:?}", c.operator),
            "use one of >, <, >=, <=, ==, != (quoted in YAML: \">\")",
        ));
    }
    if c.metric.trim().is_empty() || c.metric.contains('\n') {
        issues.push(issue(
            &at(&cp, &[k("metric")]),
            "metric must be a metric name or a one-line PromQL expression",
            "e.g. metric: cpu_usage",
        ));
    }
    if !c.threshold.is_finite() {
        issues.push(issue(
            &at(&cp, &[k("threshold")]),
            "threshold must be a finite number",
            "e.g. threshold: 0.85",
        ));
    }
    let window = duration(&c.window, &at(&cp, &[k("window")]), &mut issues);

    let ap = at(base, &[k("action")]);
    let a = &raw.action;
    let needs_replicas = a.kind.starts_with("scale-");
    let known = TYPES.split(", ").any(|t| t.trim() == a.kind);
    if a.replicas.is_some() && !needs_replicas && known {
        issues.push(issue(
            &at(&ap, &[Segment::KeyOf("replicas".into())]),
            format!(
                "`replicas` is only for scale-deployment and scale-statefulset, not {}",
                a.kind
            ),
            "remove it",
        ));
    }
    let (target, action) = match a.kind.as_str() {
        "restart-pod" | "delete-pod" => (
            label_target("pod", "pod", true),
            Action::Delete {
                grace_period: None,
                uid: None,
                min_available: Some(1),
                evict: true,
            },
        ),
        "restart-deployment" => (
            label_target("deployment", "deployment", true),
            Action::Restart {
                wait: true,
                gitops: Default::default(),
            },
        ),
        "restart-statefulset" => (
            label_target("statefulset", "statefulset", true),
            Action::Restart {
                wait: true,
                gitops: Default::default(),
            },
        ),
        "restart-daemonset" => (
            label_target("daemonset", "daemonset", true),
            Action::Restart {
                wait: true,
                gitops: Default::default(),
            },
        ),
        "scale-deployment" | "scale-statefulset" => {
            let kind = &a.kind["scale-".len()..];
            let replicas = match a.replicas {
                Some(r) => r.to_string(),
                None => {
                    issues.push(issue(
                        &ap,
                        format!("action {} needs `replicas`", a.kind),
                        "add e.g. `replicas: 4`",
                    ));
                    String::new()
                }
            };
            (
                label_target(kind, kind, true),
                Action::Scale {
                    replicas,
                    min: None,
                    max: None,
                    hpa: None,
                    gitops: Default::default(),
                },
            )
        }
        "cordon-node" => (
            label_target("node", "node", false),
            Action::Cordon {
                max_unschedulable: None,
            },
        ),
        "uncordon-node" => (label_target("node", "node", false), Action::Uncordon),
        "drain-node" => (
            label_target("node", "node", false),
            Action::Drain {
                min_available: Some(1),
                max_unschedulable: None,
            },
        ),
        other => {
            issues.push(issue(
                &at(&ap, &[k("type")]),
                format!("unknown action type {other:?}"),
                format!("use one of: {TYPES}"),
            ));
            return Err(issues);
        }
    };
    let Some(window) = window else {
        return Err(issues);
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let alertname = flat_alert_name(&raw.name);
    let matchers = Matchers(
        [
            ("alertname", alertname.as_str()),
            (POLICY_LABEL, raw.name.as_str()),
        ]
        .iter()
        .map(|(n, v)| Matcher::new(n, MatchType::Equal, v))
        .collect::<Result<_, _>>()
        .map_err(|e| vec![issue(base, e, "")])?,
    );
    Ok(Policy {
        name: raw.name.clone(),
        source,
        description: a.description.clone(),
        matchers,
        status: StatusFilter::Firing,
        target,
        steps: vec![Step {
            target: super::StepTarget::Policy,
            name: a.kind.clone(),
            action,
            after: Vec::new(),
            retries: None,
            timeout: None,
            service_account: None,
        }],
        engine: None,
        fallback: None,
        service_account: None,
        timeout: None,
        run_namespace: None,
        guards: Guards::default(),
        dry_run: false,
        continue_matching: false,
        on_success: OnSuccess::default(),
        on_failure: OnFailure::default(),
        on_resolved: OnResolved::default(),
        approval: None,
        flat: Some(FlatCondition {
            metric: c.metric.clone(),
            operator: c.operator.clone(),
            threshold: c.threshold,
            window,
            alertname,
            description: a.description.clone(),
        }),
    })
}
