//! Who is told what, and how often: the policy's `onFailure.notify` notifiers get every
//! failure, a success only when they keep an open alert (PagerDuty, Opsgenie), and a
//! stand-down notice **once per guard window**: when heald does not act on an alert
//! because the circuit is open (per policy and target, within the failure budget's window),
//! a rate limit is reached (per policy and target namespace bucket, within
//! [`STAND_DOWN_WINDOW`]), the blast radius is reached (`guards.maxInFlight`: per policy,
//! within [`STAND_DOWN_WINDOW`]), or a run could not be started (per policy and target, within
//! [`STAND_DOWN_WINDOW`]). The windows are kept in memory by each replica ([`Notices`]), so
//! with N replicas a human hears of the same thing at most N times per window, and again
//! after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::alert::Alert;
use crate::heald::engines::runs::{RunInfo, RunOutcome};
use crate::heald::reporting::notify_http::{
    Message, Notification, Resolution, StandDown, send, target_words,
};
use crate::heald::state::State;
use crate::policy::{Policy, PolicySet};

/// How long heald keeps quiet about a stand-down other than an open circuit (whose window
/// is the failure budget's).
pub const STAND_DOWN_WINDOW: Duration = Duration::from_secs(600);

/// Keys remembered before expired ones are dropped.
const MAX_KEYS: usize = 10_000;

/// When this replica last told a human about each stand-down, and for how long it keeps
/// quiet about it.
#[derive(Debug, Default)]
pub struct Notices {
    last: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl Notices {
    /// Whether a notice under `key` may go out at `now`: none did within its window. When
    /// it may, `now` is recorded with `window`, so of two callers at once only one sends.
    pub fn admit(&self, key: &str, window: Duration, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, quiet)) = last.get(key)
            && now.saturating_duration_since(*at) < *quiet
        {
            return false;
        }
        if last.len() >= MAX_KEYS {
            last.retain(|_, (at, quiet)| now.saturating_duration_since(*at) < *quiet);
        }
        last.insert(key.to_string(), (now, window));
        true
    }
}

/// Where a message points to: the alert in Alertmanager, when heald knows it.
pub fn alert_link(st: &State, alertname: &str) -> Option<String> {
    st.config.alertmanager_url.as_ref().map(|am| {
        format!(
            "{am}/#/alerts?filter=%7Balertname%3D%22{}%22%7D",
            crate::kube_api::enc(alertname)
        )
    })
}

/// The target of a run heald created, from its annotations (`heal.dev/target`,
/// `heal.dev/target-namespace`), as messages name it.
pub fn target_of(run: &Value) -> Option<String> {
    let ann = |k: &str| {
        run.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
            .and_then(Value::as_str)
    };
    let (kind, name) = ann("heal.dev/target")?.split_once('/')?;
    Some(target_words(
        kind,
        ann("heal.dev/target-namespace").unwrap_or_default(),
        name,
    ))
}

/// Send `m` to each of the policy's `onFailure.notify` notifiers that takes it, counting
/// deliveries (`heald_deliveries_total{kind}`) and logging each (never a secret).
pub async fn tell(st: &State, set: &PolicySet, policy: &Policy, m: &Message<'_>) {
    for name in &policy.on_failure.notify {
        let Some(notifier) = set.notifier(name) else {
            tracing::warn!(notifier = %name, "unknown notifier");
            continue;
        };
        let kind = notifier.kind.as_str();
        match send(&st.http, notifier, m).await {
            Ok(false) => {}
            Ok(true) => {
                st.metrics.delivery(kind, true);
                tracing::info!(correlation_id = %m.correlation_id(), run = %m.run(), notifier = %name,
                    kind, message = m.what(), "told the notifier");
            }
            Err(e) => {
                st.metrics.delivery(kind, false);
                tracing::warn!(correlation_id = %m.correlation_id(), run = %m.run(), notifier = %name,
                    kind, message = m.what(), error = %e, "could not tell the notifier");
            }
        }
    }
}

/// What heald keeps quiet about, per decision: the key of the thing and the window.
fn quiet_key(
    policy: &Policy,
    decision: &str,
    target: &crate::plan::PlanTarget,
) -> (String, Duration) {
    let target_key = crate::heald::guards::lease::target_key(target);
    let (scope, window) = match decision {
        "circuit-open" => (
            target_key,
            policy
                .guards
                .failure_budget
                .map(|b| b.window)
                .unwrap_or(STAND_DOWN_WINDOW),
        ),
        "rate-limited" => {
            let bucket = if target.namespace.is_empty() {
                "-"
            } else {
                target.namespace.as_str()
            };
            (format!("namespace {bucket}"), STAND_DOWN_WINDOW)
        }
        // `guards.maxInFlight` holds for the whole policy.
        "blast-radius" => ("all targets".to_string(), STAND_DOWN_WINDOW),
        _ => (target_key, STAND_DOWN_WINDOW),
    };
    (format!("{decision}\n{}\n{scope}", policy.name), window)
}

/// heald decided `decision` about `alert` under `policy`: when that is a stand-down
/// (`circuit-open`, `rate-limited`, `blast-radius`) and nobody was told of it within its
/// window, tell the policy's notifiers, in the background (the webhook's answer does not
/// wait). Any other decision: nothing.
pub fn stood_down(
    state: &Arc<State>,
    policy: &Policy,
    alert: &Alert,
    decision: &str,
    reason: &str,
) {
    if policy.on_failure.notify.is_empty()
        || !matches!(decision, "circuit-open" | "rate-limited" | "blast-radius")
    {
        return;
    }
    let Ok(plan) = crate::policy::plan(policy, alert, &state.plan_defaults) else {
        return;
    };
    let (key, window) = quiet_key(policy, decision, &plan.target);
    if !state.notices.admit(&key, window, Instant::now()) {
        tracing::debug!(correlation_id = %plan.correlation_id, policy = %policy.name, decision,
            "stood down again within the window: nobody is told");
        return;
    }
    let notice = StandDown {
        api_version: "heal.dev/v1alpha1",
        kind: "RemediationStoodDown",
        policy: policy.name.clone(),
        alertname: plan.alertname.clone(),
        fingerprint: plan.fingerprint.clone(),
        labels: alert.labels.clone(),
        decision: decision.to_string(),
        reason: reason.to_string(),
        target: target_words(&plan.target.kind, &plan.target.namespace, &plan.target.name),
        run: plan.run_name.clone(),
        correlation_id: plan.correlation_id.clone(),
        quiet_for: crate::duration::format(window),
        link: alert_link(state, &plan.alertname),
    };
    let state = Arc::clone(state);
    let policy_name = policy.name.clone();
    tokio::spawn(async move {
        let loaded = state.policies.current();
        if let Some(policy) = loaded.set.policy(&policy_name) {
            tell(&state, &loaded.set, policy, &Message::StoodDown(&notice)).await;
        }
    });
}

/// A run could not be started (its engine is missing or refused it, and no fallback
/// took it): tell the policy's notifiers, once per [`STAND_DOWN_WINDOW`] per policy and
/// target.
pub async fn not_started(st: &State, set: &PolicySet, policy: &Policy, n: &Notification) {
    let target = n.target.as_deref().unwrap_or(&n.run);
    let key = format!("not-started\n{}\n{target}", policy.name);
    if !st.notices.admit(&key, STAND_DOWN_WINDOW, Instant::now()) {
        tracing::debug!(correlation_id = %n.correlation_id, policy = %policy.name,
            "another run could not be started within the window: nobody is told");
        return;
    }
    tell(st, set, policy, &Message::Failed(n)).await;
}

/// A run ended with `outcome`: when it succeeded (and was not a dry run), the notifiers
/// that keep an open alert (PagerDuty: `resolve`, Opsgenie: close) are told, so what an
/// earlier failure or stand-down of the same alert episode opened is closed. PagerDuty
/// drops a resolve whose `dedup_key` has no open alert; Opsgenie answers 202 and finds
/// nothing to close.
pub async fn resolved(
    st: &State,
    set: &PolicySet,
    policy: &Policy,
    info: &RunInfo,
    outcome: RunOutcome,
) {
    if outcome != RunOutcome::Succeeded || info.dry_run {
        return;
    }
    let resolving = policy.on_failure.notify.iter().any(|name| {
        set.notifier(name)
            .is_some_and(|n| n.kind.resolves() && n.vendor.send_resolved)
    });
    if !resolving {
        return;
    }
    let r = Resolution {
        policy: info.policy.clone(),
        alertname: info.alertname.clone(),
        run: info.name.clone(),
        namespace: info.namespace.clone(),
        engine: info.engine.as_str().into(),
        correlation_id: info.correlation_id.clone(),
    };
    tell(st, set, policy, &Message::Resolved(&r)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_goes_out_once_per_window_per_key() {
        let n = Notices::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(600);
        assert!(n.admit("a", w, t0));
        assert!(!n.admit("a", w, t0 + Duration::from_secs(1)));
        assert!(!n.admit("a", w, t0 + Duration::from_secs(599)));
        assert!(n.admit("b", w, t0 + Duration::from_secs(1)), "another key");
        assert!(
            n.admit("a", w, t0 + Duration::from_secs(600)),
            "the window passed"
        );
        assert!(!n.admit("a", w, t0 + Duration::from_secs(601)));
    }

    #[test]
    fn the_circuits_window_is_the_failure_budgets_and_rate_limits_go_by_namespace() {
        let set = PolicySet::from_yaml(
            "p.yaml",
            "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata: {name: p}\nspec:\n  \
             match: {alertname: A}\n  target: {kind: deployment, namespace: shop, name: web}\n  \
             guards: {failureBudget: {failures: 2, window: 2h}}\n  steps:\n    - {name: r, action: restart}\n",
        )
        .unwrap();
        let p = &set.policies[0];
        let web = crate::plan::PlanTarget {
            kind: "deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        let api = crate::plan::PlanTarget {
            name: "api".into(),
            ..web.clone()
        };
        let (k1, w1) = quiet_key(p, "circuit-open", &web);
        let (k2, _) = quiet_key(p, "circuit-open", &api);
        assert_eq!(w1, Duration::from_secs(7200));
        assert_ne!(k1, k2, "per target");
        let (r1, rw) = quiet_key(p, "rate-limited", &web);
        let (r2, _) = quiet_key(p, "rate-limited", &api);
        assert_eq!(rw, STAND_DOWN_WINDOW);
        assert_eq!(r1, r2, "per namespace bucket");
        let (b1, _) = quiet_key(p, "blast-radius", &web);
        let (b2, _) = quiet_key(p, "blast-radius", &api);
        assert_eq!(b1, b2, "per policy");
    }
}
