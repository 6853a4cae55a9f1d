//! Approval gates, the pure part: a policy's `approval: {timeout, onTimeout}`, which steps
//! must wait for it, the annotations that record a run's gate (waiting, approved or
//! rejected, who decided and when), and the writes that approve or reject a run of each
//! engine:
//!
//! - Argo: the DAG's task [`GATE_TASK`] runs a `suspend: {}` template that every changing
//!   step depends on. Approving resumes it the way `argo resume --node-field-selector
//!   displayName=heal-approval` does: the suspend node's `phase` becomes `Succeeded` with
//!   `finishedAt` and a `Resumed by: ...` message (the Workflow has no status subresource:
//!   the node is patched on the object). Rejecting stops the workflow (`spec.shutdown:
//!   Stop`), which fails the suspend node, skips the steps and runs the exit handler.
//! - Tekton: the PipelineRun is created with `spec.status: PipelineRunPending`. Approving
//!   clears `spec.status`; rejecting sets it to `Cancelled`.
//! - local: the run's ConfigMap carries the gate's annotations; heald's executor runs no
//!   changing step until they say `approved`, and ends the run when they say `rejected`.
//!
//! Every write carries the object's `resourceVersion`, so a decision taken on a stale read
//! (a second approver, the timeout) fails with 409 instead of overwriting the first one.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::render::Engine;

/// The Argo DAG task (and template) that waits for the approval, and the display name of
/// its suspend node.
pub const GATE_TASK: &str = "heal-approval";
/// Annotation with the gate's state: `waiting`, `approved` or `rejected`.
pub const APPROVAL_ANNOTATION: &str = "heal.dev/approval";
/// Annotation with the time the gate waits, in seconds, from the run's creation.
pub const APPROVAL_TIMEOUT_ANNOTATION: &str = "heal.dev/approval-timeout-seconds";
/// Annotation with what the timeout does: `reject` or `approve`.
pub const ON_TIMEOUT_ANNOTATION: &str = "heal.dev/approval-on-timeout";
/// Annotation naming who approved the run.
pub const APPROVED_BY_ANNOTATION: &str = "heal.dev/approved-by";
/// Annotation with when the run was approved (RFC 3339).
pub const APPROVED_AT_ANNOTATION: &str = "heal.dev/approved-at";
/// Annotation naming who rejected the run (`timeout` when the timeout did).
pub const REJECTED_BY_ANNOTATION: &str = "heal.dev/rejected-by";
/// Annotation with when the run was rejected (RFC 3339).
pub const REJECTED_AT_ANNOTATION: &str = "heal.dev/rejected-at";
/// Annotation with the reason given for a rejection.
pub const REJECTED_REASON_ANNOTATION: &str = "heal.dev/rejected-reason";
/// The label heald sets on a run whose end it handled (`heald::REPORTED_LABEL`).
const REPORTED_LABEL: &str = "heal.dev/reported";
/// Who decides when the timeout applies `onTimeout`.
pub const TIMEOUT_ACTOR: &str = "timeout";
/// Longest reason kept on a run.
pub const MAX_REASON: usize = 1024;
/// Longest approver name kept on a run.
pub const MAX_ACTOR: usize = 253;

/// What the timeout of an approval gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// The run ends `rejected` (the default).
    #[default]
    Reject,
    /// The run goes on as if approved.
    Approve,
}

impl OnTimeout {
    /// The policy's and annotation's word.
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Reject => "reject",
            OnTimeout::Approve => "approve",
        }
    }

    /// The value with this word.
    pub fn from_name(s: &str) -> Option<OnTimeout> {
        match s {
            "reject" => Some(OnTimeout::Reject),
            "approve" => Some(OnTimeout::Approve),
            _ => None,
        }
    }
}

/// A policy's `approval`: the run waits before its first changing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    /// How long the run waits for a decision.
    pub timeout: Duration,
    /// What happens when nobody decides in time.
    pub on_timeout: OnTimeout,
}

/// The gate as a plan carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanApproval {
    /// How long the run waits for a decision, in seconds.
    pub timeout_seconds: u64,
    /// What happens when nobody decides in time.
    pub on_timeout: OnTimeout,
}

impl From<Approval> for PlanApproval {
    fn from(a: Approval) -> PlanApproval {
        PlanApproval {
            timeout_seconds: a.timeout.as_secs().max(1),
            on_timeout: a.on_timeout,
        }
    }
}

/// Whether a step of this heal action changes the cluster, and so waits for the gate
/// (everything but `verify` and `wait`).
pub fn changes(action: &str) -> bool {
    !matches!(action, "verify" | "wait")
}

/// A human's (or the timeout's) decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the changing steps.
    Approve,
    /// End the run `rejected`.
    Reject {
        /// Why (may be empty).
        reason: String,
    },
}

impl Verdict {
    /// `approve` or `reject`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject { .. } => "reject",
        }
    }

    /// `approved` or `rejected`.
    pub fn past(&self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject { .. } => "rejected",
        }
    }
}

/// Where a run's gate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    /// The run has no gate.
    None,
    /// Waiting for a decision.
    Waiting,
    /// Approved.
    Approved,
    /// Rejected (by a human or the timeout).
    Rejected,
}

fn annotation<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The gate state a run object records.
pub fn gate_state(obj: &Value) -> GateState {
    match annotation(obj, APPROVAL_ANNOTATION) {
        Some("waiting") => GateState::Waiting,
        Some("approved") => GateState::Approved,
        Some("rejected") => GateState::Rejected,
        _ => GateState::None,
    }
}

/// When the gate of a waiting run times out (its creation plus the recorded timeout), and
/// what the timeout does. `None` for a run without a readable gate.
pub fn gate_deadline(obj: &Value) -> Option<(Timestamp, OnTimeout)> {
    let created: Timestamp = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)?
        .parse()
        .ok()?;
    let secs: i64 = annotation(obj, APPROVAL_TIMEOUT_ANNOTATION)?.parse().ok()?;
    let on = annotation(obj, ON_TIMEOUT_ANNOTATION)
        .and_then(OnTimeout::from_name)
        .unwrap_or_default();
    Some((created + SignedDuration::from_secs(secs), on))
}

/// The annotations a rendered run with a gate carries from the start.
pub fn initial_annotations(a: &PlanApproval) -> [(String, String); 3] {
    [
        (APPROVAL_ANNOTATION.into(), "waiting".into()),
        (
            APPROVAL_TIMEOUT_ANNOTATION.into(),
            a.timeout_seconds.to_string(),
        ),
        (ON_TIMEOUT_ANNOTATION.into(), a.on_timeout.as_str().into()),
    ]
}

/// The key of the Argo suspend node of the gate in `status.nodes`, and its phase. `None`
/// while the controller has not started it.
pub fn argo_gate_node(obj: &Value) -> Option<(String, String)> {
    let nodes = obj.pointer("/status/nodes")?.as_object()?;
    nodes.iter().find_map(|(id, node)| {
        let s = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or_default();
        (s("type") == "Suspend"
            && (s("displayName") == GATE_TASK || s("templateName") == GATE_TASK))
            .then(|| (id.clone(), s("phase").to_string()))
    })
}

/// Cut `s` to at most `max` characters.
pub fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Why a decision cannot be written on a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The run has no approval gate.
    #[error("run {0} has no approval gate")]
    NoGate(String),
    /// The run's gate was decided already, or the run ended.
    #[error("run {run} is not waiting for approval: {why}")]
    NotWaiting {
        /// The run.
        run: String,
        /// What it is doing instead.
        why: String,
    },
}

/// The merge patch that records `verdict` by `by` at `at` on the waiting run `obj` of
/// `engine` and acts on it (see the module's description), with the run's
/// `resourceVersion` as precondition. Refused when the run is not waiting.
pub fn decision_patch(
    engine: Engine,
    obj: &Value,
    verdict: &Verdict,
    by: &str,
    at: Timestamp,
) -> Result<Value, GateError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let not_waiting = |why: String| GateError::NotWaiting {
        run: name.clone(),
        why,
    };
    match gate_state(obj) {
        GateState::None => return Err(GateError::NoGate(name)),
        GateState::Approved => return Err(not_waiting("it was approved already".into())),
        GateState::Rejected => return Err(not_waiting("it was rejected already".into())),
        GateState::Waiting => {}
    }
    if obj
        .pointer("/metadata/labels")
        .and_then(|l| l.get(REPORTED_LABEL))
        .is_some()
    {
        return Err(not_waiting("it has ended".into()));
    }
    let by = cut(by, MAX_ACTOR);
    let at_s = at.to_string();
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut patch = match verdict {
        Verdict::Approve => json!({"metadata": {"annotations": {
            APPROVAL_ANNOTATION: "approved",
            APPROVED_BY_ANNOTATION: by,
            APPROVED_AT_ANNOTATION: at_s,
        }}}),
        Verdict::Reject { reason } => json!({"metadata": {"annotations": {
            APPROVAL_ANNOTATION: "rejected",
            REJECTED_BY_ANNOTATION: by,
            REJECTED_AT_ANNOTATION: at_s,
            REJECTED_REASON_ANNOTATION: cut(reason, MAX_REASON),
        }}}),
    };
    patch["metadata"]["resourceVersion"] = json!(rv);
    match (engine, verdict) {
        (Engine::Argo, Verdict::Approve) => {
            if let Some(phase) = obj.pointer("/status/phase").and_then(Value::as_str)
                && matches!(phase, "Succeeded" | "Failed" | "Error")
            {
                return Err(not_waiting(format!("the workflow has ended ({phase})")));
            }
            let Some((id, phase)) = argo_gate_node(obj) else {
                return Err(not_waiting(
                    "the workflow has not reached its approval step yet (is the Argo controller running?); try again shortly".into(),
                ));
            };
            if phase != "Running" {
                return Err(not_waiting(format!("its approval step is {phase}")));
            }
            patch["status"] = json!({"nodes": {id: {
                "phase": "Succeeded",
                "finishedAt": at_s,
                "message": format!("Resumed by: {by}"),
            }}});
        }
        (Engine::Argo, Verdict::Reject { .. }) => {
            patch["spec"] = json!({"shutdown": "Stop"});
        }
        (Engine::Tekton, Verdict::Approve) => {
            patch["spec"] = json!({"status": null});
        }
        (Engine::Tekton, Verdict::Reject { .. }) => {
            patch["spec"] = json!({"status": "Cancelled"});
        }
        (Engine::Local, _) => {}
    }
    Ok(patch)
}

/// The Event a decision records on the run: reason and message.
pub fn event_words(verdict: &Verdict, by: &str, run: &str) -> (&'static str, String) {
    match verdict {
        Verdict::Approve => (
            "RemediationApproved",
            format!("{by} approved run {run}: its changing steps start"),
        ),
        Verdict::Reject { reason } if reason.is_empty() => (
            "RemediationRejected",
            format!("{by} rejected run {run}: no changing step runs"),
        ),
        Verdict::Reject { reason } => (
            "RemediationRejected",
            format!("{by} rejected run {run}: {}", cut(reason, MAX_REASON)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(engine: Engine) -> Value {
        let (api, kind) = match engine {
            Engine::Local => ("v1", "ConfigMap"),
            e => (e.api_version(), e.kind()),
        };
        json!({"apiVersion": api, "kind": kind,
            "metadata": {"name": "r", "namespace": "heal-system", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"heal.dev/approval": "waiting",
                    "heal.dev/approval-timeout-seconds": "900",
                    "heal.dev/approval-on-timeout": "approve"}},
            "status": {"phase": "Running", "nodes": {
                "r": {"type": "DAG", "displayName": "r", "phase": "Running"},
                "r-123": {"type": "Suspend", "displayName": "heal-approval", "phase": "Running"}}}})
    }

    #[test]
    fn only_verify_and_wait_run_before_the_gate() {
        assert!(!changes("verify") && !changes("wait"));
        for a in [
            "scale", "restart", "delete", "patch", "cordon", "uncordon", "drain",
        ] {
            assert!(changes(a), "{a}");
        }
    }

    #[test]
    fn approving_an_argo_run_resumes_its_suspend_node_as_argo_resume_does() {
        let at: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let p = decision_patch(
            Engine::Argo,
            &waiting(Engine::Argo),
            &Verdict::Approve,
            "alice",
            at,
        )
        .unwrap();
        assert_eq!(
            p,
            json!({"metadata": {"resourceVersion": "7", "annotations": {
                "heal.dev/approval": "approved", "heal.dev/approved-by": "alice",
                "heal.dev/approved-at": "2026-01-01T00:05:00Z"}},
                "status": {"nodes": {"r-123": {"phase": "Succeeded",
                    "finishedAt": "2026-01-01T00:05:00Z", "message": "Resumed by: alice"}}}})
        );
    }

    #[test]
    fn rejecting_stops_argo_and_cancels_tekton_and_a_decided_run_is_refused() {
        let at: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let no = Verdict::Reject {
            reason: "not now".into(),
        };
        let argo = decision_patch(Engine::Argo, &waiting(Engine::Argo), &no, "bob", at).unwrap();
        assert_eq!(argo["spec"], json!({"shutdown": "Stop"}));
        assert_eq!(
            argo["metadata"]["annotations"]["heal.dev/rejected-reason"],
            "not now"
        );
        let tekton =
            decision_patch(Engine::Tekton, &waiting(Engine::Tekton), &no, "bob", at).unwrap();
        assert_eq!(tekton["spec"], json!({"status": "Cancelled"}));
        let start = decision_patch(
            Engine::Tekton,
            &waiting(Engine::Tekton),
            &Verdict::Approve,
            "b",
            at,
        )
        .unwrap();
        assert_eq!(start["spec"], json!({"status": null}));
        let local = decision_patch(Engine::Local, &waiting(Engine::Local), &no, "b", at).unwrap();
        assert_eq!(local.get("spec"), None);
        let mut done = waiting(Engine::Tekton);
        done["metadata"]["annotations"]["heal.dev/approval"] = json!("approved");
        assert!(matches!(
            decision_patch(Engine::Tekton, &done, &no, "b", at),
            Err(GateError::NotWaiting { .. })
        ));
        let mut plain = waiting(Engine::Tekton);
        plain["metadata"]["annotations"] = json!({});
        assert_eq!(
            decision_patch(Engine::Tekton, &plain, &no, "b", at),
            Err(GateError::NoGate("r".into()))
        );
    }

    #[test]
    fn the_gate_times_out_its_timeout_after_the_runs_creation() {
        let (when, on) = gate_deadline(&waiting(Engine::Local)).unwrap();
        assert_eq!(when.to_string(), "2026-01-01T00:15:00Z");
        assert_eq!(on, OnTimeout::Approve);
        assert_eq!(gate_state(&waiting(Engine::Local)), GateState::Waiting);
    }
}
