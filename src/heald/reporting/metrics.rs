//! heald's Prometheus metrics, in the text format on the admin port's `/metrics`. Label
//! sets are bounded: decisions, outcomes and engines are fixed lists, and policy names are
//! capped (past the cap they count under `other`), so an alert storm or a runaway policy
//! directory cannot grow the series without limit.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::heald::engines::runs::RunOutcome;

/// Distinct policy label values at most; the rest count as `other`.
const MAX_POLICY_LABELS: usize = 200;

/// Labels of a decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `submitted`, `duplicate`, ...
    pub decision: String,
    /// `argo`, `tekton`, `local`, or empty for no-match.
    pub engine: String,
    /// Policy name (bounded), empty for no-match.
    pub policy: String,
}

/// Labels of an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `succeeded`, `failed`, `timed-out`.
    pub outcome: String,
    /// Engine.
    pub engine: String,
    /// Policy name (bounded).
    pub policy: String,
}

/// Labels naming an engine.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    /// Engine.
    pub engine: String,
}

/// Labels of a delivery to Alertmanager or a notifier.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `silence`, `webhook`, `slack`.
    pub kind: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of an HTTP answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// Route (`/v1/alerts`, `/v1/reports`, `/v1/remediations`).
    pub route: String,
    /// HTTP status code.
    pub code: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric heald exports.
pub struct Metrics {
    registry: Registry,
    policies_seen: Mutex<HashSet<String>>,
    /// Decisions per alert.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Run outcomes.
    pub outcomes: Family<OutcomeLabels, Counter>,
    /// Time to create a run in its engine.
    pub submit_seconds: Family<EngineLabels, Histogram, fn() -> Histogram>,
    /// Time to answer a webhook.
    pub webhook_seconds: Histogram,
    /// HTTP answers by route and code.
    pub requests: Family<CodeLabels, Counter>,
    /// Policy reloads that were rejected (the old set stays).
    pub reload_failures: Counter,
    /// Policy reloads that took effect.
    pub reloads: Counter,
    /// Policies loaded.
    pub policies: Gauge,
    /// Runs heald is following.
    pub runs_in_flight: Gauge,
    /// Silences and notifications.
    pub deliveries: Family<DeliveryLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Create and register every metric under the `heald_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("heald");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions about alerts, by decision, engine and policy",
            decisions.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "outcomes",
            "Outcomes of remediation runs, by outcome, engine and policy",
            outcomes.clone(),
        );
        let submit_seconds =
            Family::<EngineLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "submit_duration_seconds",
            "Time to create a run in its engine",
            submit_seconds.clone(),
        );
        let webhook_seconds = latency_histogram();
        registry.register(
            "webhook_duration_seconds",
            "Time to answer an Alertmanager webhook",
            webhook_seconds.clone(),
        );
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP answers by route and status code",
            requests.clone(),
        );
        let reload_failures = Counter::default();
        registry.register(
            "reload_failures",
            "Policy or template reloads rejected; the previous set stays in use",
            reload_failures.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "reloads",
            "Policy or template reloads that took effect",
            reloads.clone(),
        );
        let policies = Gauge::default();
        registry.register("policies", "Policies loaded", policies.clone());
        let runs_in_flight = Gauge::default();
        registry.register(
            "runs_in_flight",
            "Runs created by heald whose outcome is not handled yet",
            runs_in_flight.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Silences and notifications sent, by kind and result",
            deliveries.clone(),
        );
        Metrics {
            registry,
            policies_seen: Mutex::new(HashSet::new()),
            decisions,
            outcomes,
            submit_seconds,
            webhook_seconds,
            requests,
            reload_failures,
            reloads,
            policies,
            runs_in_flight,
            deliveries,
        }
    }

    /// The policy label value: the name, or `other` once the cap is reached.
    fn policy_label(&self, policy: &str) -> String {
        let mut seen = self.policies_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(policy) {
            return policy.to_string();
        }
        if seen.len() < MAX_POLICY_LABELS {
            seen.insert(policy.to_string());
            return policy.to_string();
        }
        "other".into()
    }

    /// Count a decision.
    pub fn decision(&self, decision: &str, engine: &str, policy: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: decision.into(),
                engine: engine.into(),
                policy: self.policy_label(policy),
            })
            .inc();
    }

    /// Count an outcome.
    pub fn outcome(&self, outcome: RunOutcome, engine: &str, policy: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().into(),
                engine: engine.into(),
                policy: self.policy_label(policy),
            })
            .inc();
    }

    /// Count a delivery.
    pub fn delivery(&self, kind: &str, ok: bool) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                kind: kind.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// Count an HTTP answer.
    pub fn request(&self, route: &str, code: u16) {
        self.requests
            .get_or_create(&CodeLabels {
                route: route.into(),
                code: code.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_show_in_the_text_format_with_their_labels() {
        let m = Metrics::new();
        m.decision("submitted", "argo", "restart-web");
        m.decision("submitted", "argo", "restart-web");
        let text = m.encode();
        assert!(
            text.contains(
                r#"heald_decisions_total{decision="submitted",engine="argo",policy="restart-web"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("heald_reload_failures_total 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn policy_labels_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_POLICY_LABELS + 10 {
            m.decision("no-match", "", &format!("p{i}"));
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("heald_decisions_total{"))
            .count();
        assert_eq!(series, MAX_POLICY_LABELS + 1);
        assert!(text.contains(r#"policy="other"} 10"#), "{text}");
    }
}
