//! Asking a human: when heald creates a run that waits at its approval gate, it dry-runs
//! the planned steps that change something (server-side `dryRun=All`, through the same code
//! as `heal --dry-run`) and sends the policy's notifiers an [`ApprovalRequest`]: the alert,
//! the target, each planned step in words with its dry-run outcome, the deadline, and how
//! to approve or reject (the `heal approve` / `heal reject` commands and heald's
//! endpoints). Also: how a rejected run's end reads ([`rejected_ending`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::approval::{
    GateState, REJECTED_BY_ANNOTATION, REJECTED_REASON_ANNOTATION, TIMEOUT_ACTOR, changes,
    gate_state,
};
use crate::heald::engines::runs::{Ending, RunOutcome};
use crate::heald::reporting::escalation::{alert_link, tell};
use crate::heald::reporting::notify_http::Message;
use crate::heald::reporting::notify_http::target_words;
use crate::heald::state::State;
use crate::plan::Plan;
use crate::render::Engine;

/// Longest a dry run of one step may take.
const DRY_RUN_STEP: Duration = Duration::from_secs(20);

/// One planned step of a run waiting for approval.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The step's name.
    pub name: String,
    /// The heal action.
    pub action: String,
    /// The step in words: its heal command line.
    pub command: String,
    /// Whether it waits for the approval (it changes something).
    pub waits_for_approval: bool,
    /// The dry run's outcome (`dry-run`, `noop`, `refused`, `failed`), or `not-dry-run`
    /// for a step that changes nothing.
    pub dry_run: String,
    /// The dry run's message.
    pub dry_run_message: String,
}

/// How to decide, both ways.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HowToDecide {
    /// The `heal approve` command line.
    pub approve_command: String,
    /// The `heal reject` command line.
    pub reject_command: String,
    /// heald's approve endpoint (`POST`, bearer token), when heald knows its own URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve_url: Option<String>,
    /// heald's reject endpoint (`POST`, bearer token, body `{"reason": ...}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_url: Option<String>,
}

/// What heald asks the humans before a run's changing steps.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// Always `heal.dev/v1alpha1`.
    pub api_version: &'static str,
    /// Always `RemediationAwaitingApproval`.
    pub kind: &'static str,
    /// The policy.
    pub policy: String,
    /// The alert's name.
    pub alertname: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The target (`payments/statefulset/ledger-db`).
    pub target: String,
    /// The run.
    pub run: String,
    /// Its namespace.
    pub namespace: String,
    /// Its engine.
    pub engine: String,
    /// Correlation id.
    pub correlation_id: String,
    /// The planned steps, in order.
    pub steps: Vec<PlannedStep>,
    /// When the gate times out (RFC 3339).
    pub deadline: String,
    /// What the timeout does: `reject` or `approve`.
    pub on_timeout: String,
    /// How to decide.
    pub decide: HowToDecide,
    /// Where to look (Alertmanager's view of the alert), when known.
    pub link: Option<String>,
}

impl ApprovalRequest {
    /// One line.
    pub fn summary(&self) -> String {
        format!(
            "heal asks for approval to fix {} on {} ({}): run {}/{}",
            self.alertname, self.target, self.policy, self.namespace, self.run
        )
    }

    /// A few lines for chat.
    pub fn text(&self) -> String {
        let mut s = format!(
            ":raised_hand: heal asks for approval to fix {alert} on {target} ({policy}): run \
             {ns}/{run} on {engine} waits.",
            alert = self.alertname,
            target = self.target,
            policy = self.policy,
            ns = self.namespace,
            run = self.run,
            engine = self.engine,
        );
        for step in &self.steps {
            s.push_str(&format!("\n• {}: heal {}", step.name, step.command));
            if step.waits_for_approval {
                s.push_str(&format!(
                    " (dry run: {} {})",
                    step.dry_run, step.dry_run_message
                ));
            } else {
                s.push_str(" (changes nothing; may run before the approval)");
            }
        }
        s.push_str(&format!(
            "\nDecide by {}; without a decision the run is {}d.",
            self.deadline, self.on_timeout
        ));
        s.push_str(&format!(
            "\nApprove: {}\nReject: {}",
            self.decide.approve_command, self.decide.reject_command
        ));
        if let (Some(a), Some(r)) = (&self.decide.approve_url, &self.decide.reject_url) {
            s.push_str(&format!(
                "\nOr POST {a} (or {r}) with heald's approval token"
            ));
        }
        s.push_str(&format!("\ncorrelation id {}", self.correlation_id));
        if let Some(link) = &self.link {
            s.push_str(&format!("\n{link}"));
        }
        s
    }
}

/// heald's base URL as the runs and chat buttons reach it: its `--report-url` without the
/// `/v1/reports` path.
pub fn base_url(report_url: Option<&str>) -> Option<String> {
    let u = report_url?.trim_end_matches('/');
    Some(u.strip_suffix("/v1/reports").unwrap_or(u).to_string())
}

/// Shell-quote a word when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Dry-run the plan's changing steps (in plan order, each bounded by its timeout and
/// [`DRY_RUN_STEP`]) on heald's connection, and describe every step.
pub async fn dry_run(st: &State, plan: &Plan) -> Vec<PlannedStep> {
    let mut out = Vec::new();
    for step in &plan.steps {
        let waits = changes(&step.action);
        let command = step
            .argv()
            .iter()
            .map(|a| shell_word(a))
            .collect::<Vec<_>>()
            .join(" ");
        let (outcome, message) = if waits {
            let limit = DRY_RUN_STEP.min(Duration::from_secs(step.timeout_seconds.max(1)));
            let kube = st.k8s.kube().with_deadline(Instant::now() + limit);
            // The same typed step, with the server-side dry run (`dryRun=All`) of
            // `heal --dry-run`.
            let mut heal = step.heal.clone();
            heal.common.dry_run = true;
            match tokio::time::timeout(
                limit + Duration::from_secs(1),
                crate::actions::execute_step(&kube, &heal),
            )
            .await
            {
                Ok((res, _)) => (res.outcome.as_str().to_string(), res.message),
                Err(_) => (
                    "failed".into(),
                    format!(
                        "the dry run did not finish within {}",
                        crate::duration::format(limit)
                    ),
                ),
            }
        } else {
            ("not-dry-run".into(), String::new())
        };
        out.push(PlannedStep {
            name: step.name.clone(),
            action: step.action.clone(),
            command,
            waits_for_approval: waits,
            dry_run: outcome,
            dry_run_message: message,
        });
    }
    out
}

/// The request for the run `plan` created on `engine`, with `steps` dry-run.
pub fn request(
    st: &State,
    plan: &Plan,
    engine: Engine,
    labels: &BTreeMap<String, String>,
    created: Option<Timestamp>,
    steps: Vec<PlannedStep>,
) -> ApprovalRequest {
    let gate = plan.approval.unwrap_or(crate::approval::PlanApproval {
        timeout_seconds: 0,
        on_timeout: Default::default(),
    });
    let deadline = created.unwrap_or_else(Timestamp::now)
        + SignedDuration::from_secs(i64::try_from(gate.timeout_seconds).unwrap_or(0));
    let (ns, run) = (&plan.run_namespace, &plan.run_name);
    let base = base_url(st.config.report_url.as_deref());
    ApprovalRequest {
        api_version: "heal.dev/v1alpha1",
        kind: "RemediationAwaitingApproval",
        policy: plan.policy.clone(),
        alertname: plan.alertname.clone(),
        fingerprint: plan.fingerprint.clone(),
        labels: labels.clone(),
        target: target_words(&plan.target.kind, &plan.target.namespace, &plan.target.name),
        run: run.clone(),
        namespace: ns.clone(),
        engine: engine.as_str().into(),
        correlation_id: plan.correlation_id.clone(),
        steps,
        deadline: deadline.to_string(),
        on_timeout: gate.on_timeout.as_str().into(),
        decide: HowToDecide {
            approve_command: format!("heal approve {run} -n {ns}"),
            reject_command: format!("heal reject {run} -n {ns} --reason 'WHY'"),
            approve_url: base
                .as_ref()
                .map(|b| format!("{b}/v1/runs/{ns}/{run}/approve")),
            reject_url: base.map(|b| format!("{b}/v1/runs/{ns}/{run}/reject")),
        },
        link: alert_link(st, &plan.alertname),
    }
}

/// Ask the policy's notifiers to decide the run `plan` just created on `engine` (in the
/// background: the webhook's answer does not wait for the dry runs).
pub fn ask(
    st: &Arc<State>,
    policy: &str,
    plan: &Plan,
    engine: Engine,
    labels: &BTreeMap<String, String>,
    created: Option<&Value>,
) {
    let created = created
        .and_then(|o| o.pointer("/metadata/creationTimestamp"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let (st, policy, plan, labels) = (
        Arc::clone(st),
        policy.to_string(),
        plan.clone(),
        labels.clone(),
    );
    tokio::spawn(async move {
        let steps = dry_run(&st, &plan).await;
        let req = request(&st, &plan, engine, &labels, created, steps);
        tracing::info!(correlation_id = %plan.correlation_id, run = %plan.run_name,
            deadline = %req.deadline, "the run waits for approval");
        let loaded = st.policies.current();
        if let Some(policy) = loaded.set.policy(&policy) {
            tell(&st, &loaded.set, policy, &Message::Approval(&req)).await;
        }
    });
}

/// A run whose gate was rejected that did not succeed ended `rejected`, however its engine
/// words it (Argo: failed, stopped; Tekton: cancelled; the exit handler's report: failed).
pub fn rejected_ending(obj: &Value, mut ending: Ending) -> Ending {
    if ending.outcome == RunOutcome::Succeeded || gate_state(obj) != GateState::Rejected {
        return ending;
    }
    let ann = |k: &str| {
        obj.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let by = ann(REJECTED_BY_ANNOTATION);
    let reason = ann(REJECTED_REASON_ANNOTATION);
    ending.outcome = RunOutcome::Rejected;
    ending.message = match (by, reason) {
        (TIMEOUT_ACTOR, _) => {
            "rejected: nobody approved the run before its approval timed out".into()
        }
        (by, "") => format!("rejected by {by}"),
        (by, reason) => format!("rejected by {by}: {reason}"),
    };
    ending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heald_is_reached_where_the_runs_report_to() {
        assert_eq!(
            base_url(Some("http://heald.heal-system:8080/v1/reports")).as_deref(),
            Some("http://heald.heal-system:8080")
        );
        assert_eq!(base_url(None), None);
        assert_eq!(shell_word("deploy/web"), "deploy/web");
        assert_eq!(shell_word("a b"), "'a b'");
    }

    #[test]
    fn a_rejected_run_that_did_not_succeed_ends_rejected_saying_by_whom() {
        let obj = serde_json::json!({"metadata": {"annotations": {
            "heal.dev/approval": "rejected", "heal.dev/rejected-by": "bob",
            "heal.dev/rejected-reason": "not now"}}});
        let ending = Ending {
            outcome: RunOutcome::Failed,
            message: "Stopped with strategy 'Stop'".into(),
            steps: BTreeMap::new(),
            source: "engine",
        };
        let e = rejected_ending(&obj, ending.clone());
        assert_eq!(e.outcome, RunOutcome::Rejected);
        assert_eq!(e.message, "rejected by bob: not now");
        let plain = rejected_ending(&serde_json::json!({}), ending);
        assert_eq!(plain.outcome, RunOutcome::Failed);
    }
}

#[cfg(test)]
mod vendor_tests {
    use super::*;
    use crate::heald::reporting::notify_http::request;
    use crate::policy::{Notifier, NotifierKind, Source, UrlSource, VendorOptions};
    use secrecy::SecretString;

    fn asked() -> ApprovalRequest {
        ApprovalRequest {
            api_version: "heal.dev/v1alpha1",
            kind: "RemediationAwaitingApproval",
            policy: "p".into(),
            alertname: "WebDown".into(),
            fingerprint: "f".into(),
            labels: BTreeMap::new(),
            target: "shop/deployment/web".into(),
            run: "heal-p-1".into(),
            namespace: "heal-system".into(),
            engine: "argo".into(),
            correlation_id: "c-1".into(),
            steps: vec![PlannedStep {
                name: "restart".into(),
                action: "restart".into(),
                command: "restart deployment/web -n shop".into(),
                waits_for_approval: true,
                dry_run: "dry-run".into(),
                dry_run_message: "would restart".into(),
            }],
            deadline: "2026-08-20T10:15:00Z".into(),
            on_timeout: "reject".into(),
            decide: HowToDecide {
                approve_command: "heal approve heal-p-1 -n heal-system".into(),
                reject_command: "heal reject heal-p-1 -n heal-system --reason 'WHY'".into(),
                approve_url: Some("http://heald/v1/runs/heal-system/heal-p-1/approve".into()),
                reject_url: Some("http://heald/v1/runs/heal-system/heal-p-1/reject".into()),
            },
            link: None,
        }
    }

    fn notifier(kind: NotifierKind) -> Notifier {
        Notifier {
            name: "n".into(),
            source: Source {
                file: "n.yaml".into(),
                line: 1,
            },
            kind,
            url: UrlSource::Literal("http://vendor".into()),
            channel: None,
            key: None,
            vendor: VendorOptions::default(),
        }
    }

    #[test]
    fn every_notifier_kind_gets_the_request_in_its_own_format() {
        let a = asked();
        let m = Message::Approval(&a);
        let key = SecretString::from("k".to_string());
        let body = |kind| {
            request(&notifier(kind), &m, "http://vendor", Some(&key))
                .unwrap()
                .body
        };
        let hook = body(NotifierKind::Webhook);
        assert_eq!(hook["kind"], "RemediationAwaitingApproval");
        assert_eq!(hook["steps"][0]["dryRun"], "dry-run");
        let slack = body(NotifierKind::Slack)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            slack.contains("heal approve heal-p-1 -n heal-system"),
            "{slack}"
        );
        assert!(slack.contains("dry run: dry-run would restart"), "{slack}");
        assert!(slack.contains("/approve"), "{slack}");
        let pd = body(NotifierKind::PagerDuty);
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "c-1");
        assert_eq!(pd["payload"]["severity"], "info");
        assert_eq!(pd["payload"]["class"], "RemediationAwaitingApproval");
        let og = body(NotifierKind::Opsgenie);
        assert!(
            og["tags"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("awaiting-approval"))
        );
        assert_eq!(
            og["details"]["approve"],
            "heal approve heal-p-1 -n heal-system"
        );
        let teams = body(NotifierKind::Teams);
        let card = &teams["attachments"][0]["content"];
        assert!(
            card["body"][1]["text"]
                .as_str()
                .unwrap()
                .contains("Approve: heal approve"),
            "{card}"
        );
    }
}
