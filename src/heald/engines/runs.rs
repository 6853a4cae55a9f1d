//! Reading a run: where an Argo Workflow, Tekton PipelineRun or local-engine run (a
//! ConfigMap, see [`local_run`](crate::heald::engines::local_run)) lives in the API, whether it has ended
//! and how (Argo `status.phase`, Tekton's `Succeeded` condition, the local run's recorded
//! outcome), whether it has overrun its deadline (including runs that never started
//! because the engine's controller is down), and the step results it carries. Pure.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::heald::{
    ALERT_LABELS_ANNOTATION, CANCELLED_ANNOTATION, DEADLINE_ANNOTATION, LEASE_ANNOTATION,
    SILENCE_ANNOTATION,
};
use crate::kube_api::enc;
use crate::render::Engine;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// Every step succeeded.
    Succeeded,
    /// A step failed, or the engine gave up.
    Failed,
    /// The run did not finish (or never started) before its deadline.
    TimedOut,
    /// heald cancelled the run because its alert resolved (the policy's
    /// `onResolved: cancel`).
    Cancelled,
    /// A human rejected the run at its approval gate, or the gate timed out with
    /// `onTimeout: reject`: no changing step ran. Escalated, but not a failure of the remedy.
    Rejected,
}

impl RunOutcome {
    /// Wire and label name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::TimedOut => "timed-out",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Rejected => "rejected",
        }
    }

    /// Every outcome.
    pub const ALL: [RunOutcome; 5] = [
        RunOutcome::Succeeded,
        RunOutcome::Failed,
        RunOutcome::TimedOut,
        RunOutcome::Cancelled,
        RunOutcome::Rejected,
    ];

    /// The outcome with this wire name.
    pub fn from_name(name: &str) -> Option<RunOutcome> {
        RunOutcome::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Whether the remedy worked.
    pub fn is_success(self) -> bool {
        self == RunOutcome::Succeeded
    }

    /// Whether the remedy failed (or ran out of time): the failure counts towards the
    /// circuit and the policy's notifiers are told.
    pub fn is_failure(self) -> bool {
        matches!(self, RunOutcome::Failed | RunOutcome::TimedOut)
    }

    /// Whether the policy's notifiers are told: a failure, or a rejection (the alert keeps
    /// firing and nobody acted on it).
    pub fn escalates(self) -> bool {
        self.is_failure() || self == RunOutcome::Rejected
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Created, not started by the engine's controller yet.
    Pending,
    /// Running.
    Running,
    /// Ended, with the engine's message.
    Finished(RunOutcome, String),
}

/// API path of the collection of `engine`'s runs in `namespace` (ConfigMaps for the local
/// engine, which keeps its runs' state in them).
pub fn collection_path(engine: Engine, namespace: &str) -> Option<String> {
    let ns = enc(namespace);
    match engine {
        Engine::Argo => Some(format!(
            "/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows"
        )),
        Engine::Tekton => Some(format!("/apis/tekton.dev/v1/namespaces/{ns}/pipelineruns")),
        Engine::Local => Some(format!("/api/v1/namespaces/{ns}/configmaps")),
    }
}

/// `apiVersion` and `kind` of the object a run of `engine` is in the cluster: the Workflow,
/// the PipelineRun, or the local run's ConfigMap. Events about a run name this object.
pub fn run_object_type(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::Local => ("v1", "ConfigMap"),
        other => (other.api_version(), other.kind()),
    }
}

/// API path of one run.
pub fn object_path(engine: Engine, namespace: &str, name: &str) -> Option<String> {
    collection_path(engine, namespace).map(|c| format!("{c}/{}", enc(name)))
}

/// The engine a run object belongs to, from its `apiVersion` and `kind` (and, for a
/// ConfigMap, its `heal.dev/engine: local` label).
pub fn engine_of(obj: &Value) -> Option<Engine> {
    let api = obj.get("apiVersion").and_then(Value::as_str)?;
    let kind = obj.get("kind").and_then(Value::as_str)?;
    if (api, kind) == run_object_type(Engine::Local) {
        let engine = obj
            .pointer("/metadata/labels/heal.dev~1engine")
            .and_then(Value::as_str);
        return (engine == Some(Engine::Local.as_str())).then_some(Engine::Local);
    }
    [Engine::Argo, Engine::Tekton]
        .into_iter()
        .find(|e| e.api_version() == api && e.kind() == kind)
}

fn str_at<'v>(obj: &'v Value, pointer: &str) -> Option<&'v str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// Where the engine says the run is.
pub fn state(engine: Engine, obj: &Value) -> RunState {
    match engine {
        Engine::Argo => {
            let message = str_at(obj, "/status/message")
                .unwrap_or_default()
                .to_string();
            match str_at(obj, "/status/phase").unwrap_or_default() {
                "Succeeded" => RunState::Finished(RunOutcome::Succeeded, message),
                "Failed" | "Error" => {
                    let timed_out = message.contains("deadline exceeded")
                        || message.contains("activeDeadlineSeconds");
                    let outcome = if timed_out {
                        RunOutcome::TimedOut
                    } else {
                        RunOutcome::Failed
                    };
                    RunState::Finished(outcome, message)
                }
                "Running" => RunState::Running,
                _ => RunState::Pending,
            }
        }
        Engine::Local => match crate::heald::engines::local_run::recorded_outcome(obj) {
            Some((outcome, message)) => RunState::Finished(outcome, message),
            None => RunState::Running,
        },
        Engine::Tekton => {
            let cond = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Succeeded"))
                });
            let Some(cond) = cond else {
                return RunState::Pending;
            };
            let message = str_at(cond, "/message").unwrap_or_default().to_string();
            let reason = str_at(cond, "/reason").unwrap_or_default();
            match str_at(cond, "/status").unwrap_or_default() {
                "True" => RunState::Finished(RunOutcome::Succeeded, message),
                "False" if reason.contains("Timeout") || reason.contains("TimedOut") => {
                    RunState::Finished(RunOutcome::TimedOut, message)
                }
                "False" => RunState::Finished(RunOutcome::Failed, message),
                _ if reason == "PipelineRunPending" => RunState::Pending,
                _ => RunState::Running,
            }
        }
    }
}

/// The merge patch that cancels an unfinished run, saying why: Argo `spec.shutdown: Stop`
/// (no new steps; running ones finish and the exit handler reports), Tekton
/// `spec.status: Cancelled`; a local run only gets the annotation, which the replica
/// executing it reads before it starts another step.
///
/// Terminating (a deadline overrun) stops running steps too (Argo `Terminate`) and leaves
/// no annotation: the run's end says why.
pub fn cancel_patch(engine: Engine, reason: &str, how: crate::heald::engines::Cancel) -> Value {
    use crate::heald::engines::Cancel;
    let mut patch = match how {
        Cancel::Stop => {
            serde_json::json!({"metadata": {"annotations": {CANCELLED_ANNOTATION: reason}}})
        }
        Cancel::Terminate => serde_json::json!({}),
    };
    match (engine, how) {
        (Engine::Argo, Cancel::Stop) => patch["spec"] = serde_json::json!({"shutdown": "Stop"}),
        (Engine::Argo, Cancel::Terminate) => {
            patch["spec"] = serde_json::json!({"shutdown": "Terminate"});
        }
        (Engine::Tekton, _) => patch["spec"] = serde_json::json!({"status": "Cancelled"}),
        (Engine::Local, _) => {}
    }
    patch
}

/// How a run ended, and what is known about its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// The outcome.
    pub outcome: RunOutcome,
    /// The engine's (or heald's) message.
    pub message: String,
    /// Each step's result, by step name.
    pub steps: BTreeMap<String, Value>,
    /// Who said so: `engine`, `report`, `deadline` or `local` (heald's local engine).
    pub source: &'static str,
}

/// What heald needs to know about a run it created, read from the object.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Engine.
    pub engine: Engine,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// Creation time.
    pub created: Option<Timestamp>,
    /// Policy (annotation `heal.dev/policy`).
    pub policy: String,
    /// Correlation id (label `heal.dev/correlation-id`).
    pub correlation_id: String,
    /// Alert fingerprint (annotation `heal.dev/fingerprint`).
    pub fingerprint: String,
    /// Alert name (annotation `heal.dev/alertname`).
    pub alertname: String,
    /// The alert's labels, for a silence (annotation written by heald).
    pub alert_labels: BTreeMap<String, String>,
    /// The Lease holding the target (annotation written by heald).
    pub lease: Option<String>,
    /// The policy's in-flight Lease the run holds a slot of (`guards.maxInFlight`).
    pub in_flight_lease: Option<String>,
    /// The run's deadline in seconds.
    pub deadline_seconds: Option<u64>,
    /// The silence made while the run is in progress.
    pub silence_id: Option<String>,
    /// Whether the steps ran with `--dry-run`.
    pub dry_run: bool,
    /// Why heald cancelled the run, when it did (annotation [`CANCELLED_ANNOTATION`]).
    pub cancelled: Option<String>,
}

impl RunInfo {
    /// Read a run object; `None` when it is not a run heald created.
    pub fn from_object(obj: &Value) -> Option<RunInfo> {
        let engine = engine_of(obj)?;
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        if label(crate::heald::MANAGED_BY) != Some("heald") {
            return None;
        }
        let ann = obj.pointer("/metadata/annotations");
        let annotation = |k: &str| {
            ann.and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let deadline_seconds = annotation(DEADLINE_ANNOTATION)
            .parse::<u64>()
            .ok()
            .or_else(|| {
                obj.pointer("/spec/activeDeadlineSeconds")
                    .and_then(Value::as_u64)
            })
            .or_else(|| {
                str_at(obj, "/spec/timeouts/pipeline")
                    .and_then(|s| crate::duration::parse(s).ok())
                    .map(|d| d.as_secs())
            });
        Some(RunInfo {
            engine,
            name: str_at(obj, "/metadata/name")?.to_string(),
            namespace: str_at(obj, "/metadata/namespace")
                .unwrap_or_default()
                .to_string(),
            resource_version: str_at(obj, "/metadata/resourceVersion")
                .unwrap_or_default()
                .to_string(),
            created: str_at(obj, "/metadata/creationTimestamp").and_then(|s| s.parse().ok()),
            policy: annotation("heal.dev/policy"),
            correlation_id: label("heal.dev/correlation-id")
                .unwrap_or_default()
                .to_string(),
            fingerprint: annotation("heal.dev/fingerprint"),
            alertname: annotation("heal.dev/alertname"),
            alert_labels: serde_json::from_str(&annotation(ALERT_LABELS_ANNOTATION))
                .unwrap_or_default(),
            lease: Some(annotation(LEASE_ANNOTATION)).filter(|s| !s.is_empty()),
            in_flight_lease: Some(annotation(crate::heald::IN_FLIGHT_ANNOTATION))
                .filter(|s| !s.is_empty()),
            deadline_seconds,
            silence_id: Some(annotation(SILENCE_ANNOTATION)).filter(|s| !s.is_empty()),
            dry_run: label("heal.dev/dry-run") == Some("true"),
            cancelled: Some(annotation(CANCELLED_ANNOTATION)).filter(|s| !s.is_empty()),
        })
    }

    /// Whether the run is past its deadline plus `grace` at `now` (a run with no known
    /// creation time or deadline never is).
    pub fn overdue(&self, now: Timestamp, grace: SignedDuration) -> bool {
        match (self.created, self.deadline_seconds) {
            (Some(created), Some(secs)) => {
                let secs = i64::try_from(secs).unwrap_or(i64::MAX / 4);
                now > created + SignedDuration::from_secs(secs) + grace
            }
            _ => false,
        }
    }
}

/// Step results an Argo Workflow carries: each step node's `result` output parameter (the
/// JSON that `heal --result-file` wrote), by task name.
pub fn argo_step_results(obj: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Some(nodes) = obj.pointer("/status/nodes").and_then(Value::as_object) else {
        return out;
    };
    for node in nodes.values() {
        let Some(params) = node
            .pointer("/outputs/parameters")
            .and_then(Value::as_array)
        else {
            continue;
        };
        let Some(text) = params
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some("result"))
            .and_then(|p| p.get("value"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let name = str_at(node, "/displayName")
            .or_else(|| str_at(node, "/name"))
            .unwrap_or_default();
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
        if value != Value::Object(Default::default()) {
            out.insert(name.to_string(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reference(path: &str) -> String {
        heal_testkit::reference_text(path)
    }

    #[test]
    fn argo_phases_map_to_outcomes() {
        let wf = |phase: &str, msg: &str| {
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                   "status": {"phase": phase, "message": msg}})
        };
        assert_eq!(state(Engine::Argo, &json!({})), RunState::Pending);
        assert_eq!(state(Engine::Argo, &wf("Running", "")), RunState::Running);
        assert_eq!(
            state(Engine::Argo, &wf("Succeeded", "")),
            RunState::Finished(RunOutcome::Succeeded, String::new())
        );
        assert!(matches!(
            state(Engine::Argo, &wf("Error", "boom")),
            RunState::Finished(RunOutcome::Failed, m) if m == "boom"
        ));
        assert!(matches!(
            state(
                Engine::Argo,
                &wf(
                    "Failed",
                    "Step exceeded its deadline: activeDeadlineSeconds"
                )
            ),
            RunState::Finished(RunOutcome::TimedOut, _)
        ));
    }

    #[test]
    fn the_finished_tekton_example_reads_as_succeeded() {
        heal_testkit::require_reference!();
        let obj: Value = crate::yaml::from_str(&reference(
            "tekton/pipelinerun-status-succeeded.example.yaml",
        ))
        .unwrap();
        assert!(matches!(
            state(Engine::Tekton, &obj),
            RunState::Finished(RunOutcome::Succeeded, _)
        ));
        assert_eq!(engine_of(&obj), Some(Engine::Tekton));
        let cond = |status: &str, reason: &str| json!({"status": {"conditions": [{"type": "Succeeded", "status": status, "reason": reason}]}});
        assert_eq!(
            state(Engine::Tekton, &cond("Unknown", "Running")),
            RunState::Running
        );
        assert!(matches!(
            state(Engine::Tekton, &cond("False", "PipelineRunTimeout")),
            RunState::Finished(RunOutcome::TimedOut, _)
        ));
        assert!(matches!(
            state(Engine::Tekton, &cond("False", "Failed")),
            RunState::Finished(RunOutcome::Failed, _)
        ));
    }

    #[test]
    fn the_argo_event_example_yields_its_step_results() {
        heal_testkit::require_reference!();
        let line: Value =
            serde_json::from_str(&reference("argo/rest-watch-event-line.example.json")).unwrap();
        let wf = &line["result"]["object"];
        assert_eq!(engine_of(wf), Some(Engine::Argo));
        assert!(matches!(
            state(Engine::Argo, wf),
            RunState::Finished(RunOutcome::Succeeded, _)
        ));
        let results = argo_step_results(wf);
        assert!(!results.is_empty(), "{wf}");
    }

    #[test]
    fn a_cancellation_stops_each_engine_its_own_way_and_says_why() {
        let argo = cancel_patch(
            Engine::Argo,
            "alert resolved",
            crate::heald::engines::Cancel::Stop,
        );
        assert_eq!(
            argo,
            json!({"metadata": {"annotations": {"heal.dev/cancelled": "alert resolved"}},
                   "spec": {"shutdown": "Stop"}})
        );
        assert_eq!(
            cancel_patch(Engine::Tekton, "x", crate::heald::engines::Cancel::Stop)["spec"],
            json!({"status": "Cancelled"})
        );
        assert_eq!(
            cancel_patch(Engine::Local, "x", crate::heald::engines::Cancel::Stop).get("spec"),
            None
        );
        let names: Vec<&str> = RunOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            ["succeeded", "failed", "timed-out", "cancelled", "rejected"]
        );
        assert_eq!(
            RunOutcome::from_name("cancelled"),
            Some(RunOutcome::Cancelled)
        );
        assert!(!RunOutcome::Cancelled.is_success() && !RunOutcome::Cancelled.is_failure());
    }

    #[test]
    fn a_run_that_never_started_is_overdue_after_its_deadline() {
        let obj = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "r", "namespace": "heal-system",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app.kubernetes.io/managed-by": "heald"},
                "annotations": {"heal.dev/deadline-seconds": "600"}},
        });
        let info = RunInfo::from_object(&obj).unwrap();
        let grace = SignedDuration::from_secs(60);
        assert!(!info.overdue("2026-01-01T00:10:30Z".parse().unwrap(), grace));
        assert!(info.overdue("2026-01-01T00:11:01Z".parse().unwrap(), grace));
        let foreign = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                             "metadata": {"name": "x"}});
        assert_eq!(RunInfo::from_object(&foreign), None);
    }
}
