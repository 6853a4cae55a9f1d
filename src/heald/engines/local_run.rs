//! A run of the `local` engine as the cluster keeps it, and the rules that schedule its
//! steps. Pure.
//!
//! The run's state is a ConfigMap named after the run, in the run's namespace, carrying the
//! same labels and annotations as a Workflow or PipelineRun would (so the tracker finds it
//! after a restart by `app.kubernetes.io/managed-by=heald,!heal.dev/reported`), with:
//!
//! - `data["plan.json"]`: the plan (steps, argv, `after`, retries, timeouts, deadline);
//! - `data["step.NAME"]`: a step's status, written when the step ends (and before each
//!   retry), so a succeeded step is never run again;
//! - `data["outcome.json"]`: how the run ended, written before heald handles the outcome;
//! - annotations `heal.dev/holder` (the heald replica executing it, `INSTANCE/BOOT`) and
//!   `heal.dev/heartbeat` (when that replica last wrote), so another replica takes over a
//!   run whose replica went away, and only then.
//!
//! A step without a status whose dependencies all succeeded may have been running when its
//! replica stopped. A resumed run repeats it only when repeating is harmless
//! ([`repeatable`]); otherwise the step counts as failed ("interrupted") and the run's
//! outcome is reported, so nothing is applied twice and nothing is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::heald::engines::runs::{RunOutcome, run_object_type};
use crate::plan::{Plan, PlanStep};
use crate::render::HealPlan;

/// Data key of the plan.
pub const PLAN_KEY: &str = "plan.json";
/// Data key of the run's end.
pub const OUTCOME_KEY: &str = "outcome.json";
/// Prefix of the data key of each step's status (`step.NAME`).
pub const STEP_PREFIX: &str = "step.";
/// Annotation naming the replica executing the run: `INSTANCE/BOOT`.
pub const HOLDER_ANNOTATION: &str = "heal.dev/holder";
/// Annotation with the time the executing replica last wrote the run.
pub const HEARTBEAT_ANNOTATION: &str = "heal.dev/heartbeat";

/// Longest message kept in a step status.
const MAX_MESSAGE: usize = 2000;

/// A local run's ConfigMap that heald cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalRunError {
    /// A field is missing or unreadable.
    #[error("local run {name}: {field}: {message}")]
    Field {
        /// The run (ConfigMap) name.
        name: String,
        /// The field, e.g. `data["plan.json"]`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Where a step stands. A step without a status has not ended (and may not have started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepPhase {
    /// An attempt ended with exit code 3 and another one follows after a backoff.
    Retrying,
    /// The step succeeded (exit code 0).
    Succeeded,
    /// The step failed, ran out of retries or time, or was interrupted.
    Failed,
    /// The step never ran because a step it runs after did not succeed.
    Skipped,
}

impl StepPhase {
    /// Whether the step has ended for good.
    pub fn is_final(self) -> bool {
        !matches!(self, StepPhase::Retrying)
    }
}

/// A step's status, as kept in `data["step.NAME"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Where it stands.
    pub phase: StepPhase,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last attempt's exit code (0, 1, 2, 3 or 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What happened, in one sentence.
    #[serde(default)]
    pub message: String,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the status was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The run's deadline ended the step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The last attempt's result, the JSON `heal` prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl StepStatus {
    /// A step that never ran, and why.
    pub fn skipped(message: String, now: Timestamp) -> StepStatus {
        StepStatus {
            phase: StepPhase::Skipped,
            attempts: 0,
            exit_code: None,
            message: cut(message),
            started_at: None,
            finished_at: Some(now.to_string()),
            timed_out: false,
            result: None,
        }
    }

    /// A step that failed without an attempt (interrupted, or past the run's deadline).
    pub fn failed(message: String, timed_out: bool, now: Timestamp) -> StepStatus {
        StepStatus {
            phase: StepPhase::Failed,
            attempts: 0,
            exit_code: None,
            message: cut(message),
            started_at: None,
            finished_at: Some(now.to_string()),
            timed_out,
            result: None,
        }
    }

    /// What the outcome handling and notifiers show for this step: heal's result with the
    /// phase, attempts and exit code added, or the status itself for a step that never ran.
    pub fn report(&self) -> Value {
        let phase = serde_json::to_value(self.phase).unwrap_or(Value::Null);
        let mut v = match &self.result {
            Some(Value::Object(r)) => Value::Object(r.clone()),
            _ => json!({"message": self.message}),
        };
        v["phase"] = phase;
        v["attempts"] = json!(self.attempts);
        if let Some(code) = self.exit_code {
            v["exitCode"] = json!(code);
        }
        if self.phase != StepPhase::Succeeded {
            v["message"] = json!(self.message);
        }
        v
    }
}

/// Cut a message to a size that fits a ConfigMap comfortably.
pub fn cut(message: String) -> String {
    crate::heald::kube_io::truncate(&message, MAX_MESSAGE)
}

/// How a run ended, as kept in `data["outcome.json"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeDoc {
    outcome: String,
    message: String,
    finished_at: String,
}

/// A local run read from its ConfigMap.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRun {
    /// The run's (and ConfigMap's) name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `metadata.resourceVersion`, the precondition of every write.
    pub resource_version: String,
    /// When the run was created: its deadline counts from here.
    pub created: Option<Timestamp>,
    /// The plan.
    pub plan: Plan,
    /// The status of each step that has one, by step name.
    pub steps: BTreeMap<String, StepStatus>,
    /// The replica executing the run.
    pub holder: Option<String>,
    /// When that replica last wrote the run.
    pub heartbeat: Option<Timestamp>,
    /// How the run ended, once it has.
    pub outcome: Option<(RunOutcome, String)>,
    /// Why it was cancelled, when it was (annotation `heal.dev/cancelled`): start no
    /// further step.
    pub cancelled: Option<String>,
}

fn str_at<'v>(obj: &'v Value, pointer: &str) -> Option<&'v str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

fn data_key(key: &str) -> String {
    format!("/data/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn annotation(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

fn outcome_from_str(s: &str) -> Option<RunOutcome> {
    RunOutcome::from_name(s)
}

/// The outcome recorded in a local run's ConfigMap, if the run has ended. An outcome that
/// cannot be read counts as a failure, so that it is still reported.
pub fn recorded_outcome(obj: &Value) -> Option<(RunOutcome, String)> {
    let text = str_at(obj, &data_key(OUTCOME_KEY))?;
    Some(match serde_json::from_str::<OutcomeDoc>(text) {
        Ok(doc) => (
            outcome_from_str(&doc.outcome).unwrap_or(RunOutcome::Failed),
            doc.message,
        ),
        Err(e) => (
            RunOutcome::Failed,
            format!("the recorded outcome cannot be read: {e}"),
        ),
    })
}

impl LocalRun {
    /// Read a local run's ConfigMap.
    pub fn from_object(obj: &Value) -> Result<LocalRun, LocalRunError> {
        let name = str_at(obj, "/metadata/name")
            .unwrap_or_default()
            .to_string();
        let err = |field: &str, message: String| LocalRunError::Field {
            name: name.clone(),
            field: field.to_string(),
            message,
        };
        let plan_text = str_at(obj, &data_key(PLAN_KEY))
            .ok_or_else(|| err(&format!("data[{PLAN_KEY:?}]"), "missing".into()))?;
        let plan: Plan = serde_json::from_str(plan_text)
            .map_err(|e| err(&format!("data[{PLAN_KEY:?}]"), e.to_string()))?;
        let mut steps = BTreeMap::new();
        if let Some(data) = obj.pointer("/data").and_then(Value::as_object) {
            for (key, value) in data {
                let Some(step) = key.strip_prefix(STEP_PREFIX) else {
                    continue;
                };
                let text = value.as_str().unwrap_or_default();
                let status: StepStatus = serde_json::from_str(text)
                    .map_err(|e| err(&format!("data[{key:?}]"), e.to_string()))?;
                steps.insert(step.to_string(), status);
            }
        }
        let time = |pointer: &str| str_at(obj, pointer).and_then(|s| s.parse::<Timestamp>().ok());
        Ok(LocalRun {
            namespace: str_at(obj, "/metadata/namespace")
                .unwrap_or_default()
                .to_string(),
            resource_version: str_at(obj, "/metadata/resourceVersion")
                .unwrap_or_default()
                .to_string(),
            created: time("/metadata/creationTimestamp"),
            plan,
            steps,
            holder: str_at(obj, &annotation(HOLDER_ANNOTATION))
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            heartbeat: time(&annotation(HEARTBEAT_ANNOTATION)),
            outcome: recorded_outcome(obj),
            cancelled: str_at(obj, &annotation(crate::heald::CANCELLED_ANNOTATION))
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            name,
        })
    }

    /// When the run must be over: its creation plus the plan's deadline (`now` plus the
    /// deadline when the creation time is unknown).
    pub fn deadline(&self, now: Timestamp) -> Timestamp {
        let secs = i64::try_from(self.plan.run_deadline_seconds()).unwrap_or(i64::MAX / 4);
        self.created.unwrap_or(now) + SignedDuration::from_secs(secs)
    }

    /// Whether the replica `me` (`INSTANCE/BOOT`) may take the run over at `now`: nobody
    /// holds it, an earlier life of the same instance held it (heald restarted), or the
    /// holder (`me` included: a run this process created but does not execute) has not
    /// written for `stale`.
    pub fn may_take_over(&self, me: &str, now: Timestamp, stale: Duration) -> bool {
        let Some(holder) = &self.holder else {
            return true;
        };
        if holder != me && instance_of(holder) == instance_of(me) {
            return true;
        }
        let stale = SignedDuration::from_secs(i64::try_from(stale.as_secs()).unwrap_or(0));
        match self.heartbeat {
            Some(beat) => now.duration_since(beat) > stale,
            None => true,
        }
    }

    /// Each step's status for reporting, by step name.
    pub fn reports(&self) -> BTreeMap<String, Value> {
        self.steps
            .iter()
            .map(|(name, s)| (name.clone(), s.report()))
            .collect()
    }
}

/// The instance part of a holder `INSTANCE/BOOT`.
pub fn instance_of(holder: &str) -> &str {
    holder.rsplit_once('/').map(|(i, _)| i).unwrap_or(holder)
}

/// The ConfigMap that starts a local run: the rendered `HealPlan` document (with heald's
/// annotations) turned into the run's state, held by `holder` from `now`.
pub fn config_map(doc: &Value, holder: &str, now: Timestamp) -> Result<Value, LocalRunError> {
    let plan_doc: HealPlan =
        serde_json::from_value(doc.clone()).map_err(|e| LocalRunError::Field {
            name: str_at(doc, "/metadata/name")
                .unwrap_or_default()
                .to_string(),
            field: "HealPlan".into(),
            message: e.to_string(),
        })?;
    let plan_json = serde_json::to_string(&plan_doc.spec).map_err(|e| LocalRunError::Field {
        name: plan_doc.metadata.name.clone(),
        field: "spec".into(),
        message: e.to_string(),
    })?;
    // The document carries heald's annotations (alert labels, Lease, deadline, silence)
    // beside the rendered ones.
    let mut annotations: Map<String, Value> = plan_doc
        .metadata
        .annotations
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    annotations.insert(HOLDER_ANNOTATION.into(), json!(holder));
    annotations.insert(HEARTBEAT_ANNOTATION.into(), json!(now.to_string()));
    let (api_version, kind) = run_object_type(crate::render::Engine::Local);
    Ok(json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": plan_doc.metadata.name,
            "namespace": plan_doc.metadata.namespace,
            "labels": plan_doc.metadata.labels,
            "annotations": annotations,
        },
        "data": {PLAN_KEY: plan_json},
    }))
}

/// The merge patch that records `steps` and refreshes the heartbeat of `holder`.
pub fn steps_patch(steps: &BTreeMap<String, StepStatus>, holder: &str, now: Timestamp) -> Value {
    let data: Map<String, Value> = steps
        .iter()
        .map(|(name, s)| {
            (
                format!("{STEP_PREFIX}{name}"),
                Value::String(serde_json::to_string(s).unwrap_or_default()),
            )
        })
        .collect();
    let mut patch = holder_patch(Some(holder), now);
    if !data.is_empty() {
        patch["data"] = Value::Object(data);
    }
    patch
}

/// The merge patch that sets (or, with `None`, clears) the holder, with a fresh heartbeat.
pub fn holder_patch(holder: Option<&str>, now: Timestamp) -> Value {
    json!({"metadata": {"annotations": {
        HOLDER_ANNOTATION: holder,
        HEARTBEAT_ANNOTATION: holder.map(|_| now.to_string()),
    }}})
}

/// The merge patch that records how the run ended.
pub fn outcome_patch(outcome: RunOutcome, message: &str, now: Timestamp) -> Value {
    let doc = OutcomeDoc {
        outcome: outcome.as_str().into(),
        message: cut(message.to_string()),
        finished_at: now.to_string(),
    };
    json!({"data": {OUTCOME_KEY: serde_json::to_string(&doc).unwrap_or_default()}})
}

/// Whether every step `step` runs after has succeeded.
fn deps_succeeded(step: &PlanStep, steps: &BTreeMap<String, StepStatus>) -> bool {
    step.after.iter().all(|d| {
        steps
            .get(d)
            .is_some_and(|s| s.phase == StepPhase::Succeeded)
    })
}

fn is_final(name: &str, steps: &BTreeMap<String, StepStatus>) -> bool {
    steps.get(name).is_some_and(|s| s.phase.is_final())
}

/// Steps that may start now: not ended, not `running`, every dependency succeeded; in plan
/// order.
pub fn ready<'p>(
    plan: &'p Plan,
    steps: &BTreeMap<String, StepStatus>,
    running: &BTreeSet<String>,
) -> Vec<&'p PlanStep> {
    plan.steps
        .iter()
        .filter(|s| !is_final(&s.name, steps) && !running.contains(&s.name))
        .filter(|s| deps_succeeded(s, steps))
        .collect()
}

/// Steps that will never run because a step they run after failed or was skipped, each
/// with the reason; in plan order. A skipped step makes its own dependants skip in turn, so
/// call this until it returns nothing.
pub fn blocked(plan: &Plan, steps: &BTreeMap<String, StepStatus>) -> Vec<(String, String)> {
    plan.steps
        .iter()
        .filter(|s| !is_final(&s.name, steps))
        .filter_map(|s| {
            let bad: Vec<&str> = s
                .after
                .iter()
                .filter(|d| {
                    steps.get(d.as_str()).is_some_and(|st| {
                        matches!(st.phase, StepPhase::Failed | StepPhase::Skipped)
                    })
                })
                .map(String::as_str)
                .collect();
            (!bad.is_empty()).then(|| {
                (
                    s.name.clone(),
                    format!("not run: {} did not succeed", bad.join(", ")),
                )
            })
        })
        .collect()
}

/// Steps a resumed run finds possibly started by the replica that stopped: not ended, every
/// dependency succeeded. In plan order.
pub fn possibly_started<'p>(
    plan: &'p Plan,
    steps: &BTreeMap<String, StepStatus>,
) -> Vec<&'p PlanStep> {
    ready(plan, steps, &BTreeSet::new())
}

/// Whether running a step again after an attempt of unknown outcome is harmless: read-only
/// actions (`verify`, `wait`), and actions that reach a state rather than change one
/// (`restart`, which records the correlation id in the pod template, `cordon`, `uncordon`,
/// `drain`, absolute `scale`, `delete` guarded by `--uid`, and merge, strategic and apply
/// patches). A relative scale, an unguarded delete or a JSON patch might apply twice.
pub fn repeatable(argv: &[String]) -> bool {
    let flag = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .map(String::as_str)
    };
    match argv.first().map(String::as_str) {
        Some("verify" | "wait" | "restart" | "cordon" | "uncordon" | "drain") => true,
        Some("scale") => flag("--replicas").is_some_and(|r| !r.starts_with(['+', '-'])),
        Some("delete") => flag("--uid").is_some(),
        Some("patch") => flag("--type").is_none_or(|t| t != "json"),
        _ => false,
    }
}

/// How the run ended once every step has: succeeded when all did; timed out when the
/// run's deadline ended a step; else failed. The message names what went wrong. `None`
/// while a step has not ended.
pub fn outcome(plan: &Plan, steps: &BTreeMap<String, StepStatus>) -> Option<(RunOutcome, String)> {
    if plan.steps.iter().any(|s| !is_final(&s.name, steps)) {
        return None;
    }
    let of = |phase: StepPhase| -> Vec<&PlanStep> {
        plan.steps
            .iter()
            .filter(|s| steps.get(&s.name).map(|st| st.phase) == Some(phase))
            .collect()
    };
    let failed = of(StepPhase::Failed);
    if failed.is_empty() {
        let n = plan.steps.len();
        return Some((
            RunOutcome::Succeeded,
            format!("{n} step{} succeeded", if n == 1 { "" } else { "s" }),
        ));
    }
    let timed_out = failed
        .iter()
        .any(|s| steps.get(&s.name).is_some_and(|st| st.timed_out));
    let mut message = failed
        .iter()
        .map(|s| {
            let m = steps
                .get(&s.name)
                .map(|st| st.message.as_str())
                .unwrap_or_default();
            format!("step {} failed: {m}", s.name)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let skipped: Vec<&str> = of(StepPhase::Skipped)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    if !skipped.is_empty() {
        message.push_str(&format!("; not run: {}", skipped.join(", ")));
    }
    let outcome = if timed_out {
        RunOutcome::TimedOut
    } else {
        RunOutcome::Failed
    };
    Some((outcome, message))
}

/// The wait before retry number `retry` (1 for the first): `base` doubled each time, at
/// most `cap`.
pub fn backoff(base: Duration, retry: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanTarget;

    fn step(name: &str, after: &[&str], argv: &[&str]) -> PlanStep {
        PlanStep {
            name: name.into(),
            action: argv[0].into(),
            heal: crate::cli::parse_step(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("a heal step"),
            after: after.iter().map(|s| s.to_string()).collect(),
            retries: 2,
            timeout_seconds: 60,
            service_account: None,
        }
    }

    fn plan(steps: Vec<PlanStep>) -> Plan {
        Plan {
            run_name: "heal-p-0123456789".into(),
            run_namespace: "heal-system".into(),
            policy: "p".into(),
            fingerprint: "f".into(),
            alertname: "A".into(),
            starts_at: "2026-01-01T00:00:00Z".into(),
            correlation_id: "c".into(),
            addressed: None,
            target: PlanTarget {
                kind: "deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
            },
            steps,
            deadline_seconds: 600,
            service_account: "heal".into(),
            image: "heal:test".into(),
            dry_run: false,
            approval: None,
            report_url: None,
        }
    }

    fn diamond() -> Plan {
        plan(vec![
            step("d", &["b", "c"], &["restart", "deployment/web"]),
            step("a", &[], &["scale", "deployment/web", "--replicas", "+1"]),
            step("b", &["a"], &["wait", "deployment/web", "--for", "rollout"]),
            step("c", &["a"], &["restart", "deployment/web"]),
        ])
    }

    fn t() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn done(phase: StepPhase) -> StepStatus {
        StepStatus {
            phase,
            attempts: 1,
            exit_code: Some(if phase == StepPhase::Succeeded { 0 } else { 1 }),
            message: format!("{phase:?}"),
            started_at: None,
            finished_at: None,
            timed_out: false,
            result: None,
        }
    }

    fn names(steps: &[&PlanStep]) -> Vec<String> {
        steps.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn steps_start_in_dependency_order_and_branches_together() {
        let p = diamond();
        let mut st = BTreeMap::new();
        assert_eq!(names(&ready(&p, &st, &BTreeSet::new())), ["a"]);
        st.insert("a".to_string(), done(StepPhase::Succeeded));
        assert_eq!(names(&ready(&p, &st, &BTreeSet::new())), ["b", "c"]);
        let running = BTreeSet::from(["b".to_string()]);
        assert_eq!(names(&ready(&p, &st, &running)), ["c"]);
        st.insert("b".to_string(), done(StepPhase::Succeeded));
        assert_eq!(names(&ready(&p, &st, &BTreeSet::new())), ["c"]);
        st.insert("c".to_string(), done(StepPhase::Succeeded));
        assert_eq!(names(&ready(&p, &st, &BTreeSet::new())), ["d"]);
        assert_eq!(outcome(&p, &st), None);
        st.insert("d".to_string(), done(StepPhase::Succeeded));
        assert_eq!(
            outcome(&p, &st),
            Some((RunOutcome::Succeeded, "4 steps succeeded".into()))
        );
    }

    #[test]
    fn a_failed_step_stops_its_dependants_and_the_run_fails_naming_it() {
        let p = diamond();
        let mut st = BTreeMap::new();
        st.insert("a".to_string(), done(StepPhase::Succeeded));
        st.insert("b".to_string(), done(StepPhase::Failed));
        assert_eq!(
            blocked(&p, &st),
            [("d".to_string(), "not run: b did not succeed".to_string())]
        );
        assert_eq!(names(&ready(&p, &st, &BTreeSet::new())), ["c"]);
        st.insert("c".to_string(), done(StepPhase::Succeeded));
        st.insert(
            "d".to_string(),
            StepStatus::skipped("not run: b did not succeed".into(), t()),
        );
        let (o, m) = outcome(&p, &st).unwrap();
        assert_eq!(o, RunOutcome::Failed);
        assert_eq!(m, "step b failed: Failed; not run: d");
        st.get_mut("b").unwrap().timed_out = true;
        assert_eq!(outcome(&p, &st).unwrap().0, RunOutcome::TimedOut);
    }

    #[test]
    fn only_steps_that_cannot_apply_twice_are_repeated_after_an_interruption() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        for yes in [
            "verify --query up",
            "wait deployment/web --for rollout",
            "restart deployment/web",
            "scale deployment/web --replicas 3",
            "delete pod/p --uid 123",
            "patch deployment/web --type merge --patch {}",
            "cordon node/n",
        ] {
            assert!(repeatable(&v(yes)), "{yes}");
        }
        for no in [
            "scale deployment/web --replicas +1",
            "scale deployment/web --replicas -1",
            "delete pod/p",
            "patch deployment/web --type json --patch []",
        ] {
            assert!(!repeatable(&v(no)), "{no}");
        }
    }

    #[test]
    fn a_run_is_taken_over_only_when_its_replica_is_gone() {
        let p = diamond();
        let doc = serde_json::to_value(HealPlan {
            api_version: "heal.dev/v1alpha1".into(),
            kind: "HealPlan".into(),
            metadata: crate::render::HealPlanMetadata {
                name: p.run_name.clone(),
                namespace: p.run_namespace.clone(),
                labels: BTreeMap::from([("heal.dev/engine".into(), "local".into())]),
                annotations: BTreeMap::new(),
            },
            spec: p.clone(),
        })
        .unwrap();
        let mut cm = config_map(&doc, "heald-a/1111", t()).unwrap();
        cm["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        let run = LocalRun::from_object(&cm).unwrap();
        assert_eq!(run.plan, p);
        assert_eq!(run.holder.as_deref(), Some("heald-a/1111"));
        assert_eq!(
            run.deadline(t()),
            "2026-01-01T00:10:00Z".parse::<Timestamp>().unwrap()
        );
        let stale = Duration::from_secs(30);
        let soon: Timestamp = "2026-01-01T00:00:20Z".parse().unwrap();
        let later: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert!(!run.may_take_over("heald-b/2222", soon, stale));
        assert!(run.may_take_over("heald-b/2222", later, stale));
        assert!(
            run.may_take_over("heald-a/3333", soon, stale),
            "a restarted heald-a"
        );
        assert!(
            !run.may_take_over("heald-a/1111", soon, stale),
            "the replica that is starting it"
        );
        assert_eq!(
            crate::heald::engines::runs::engine_of(&cm),
            Some(crate::render::Engine::Local)
        );
    }

    #[test]
    fn step_statuses_and_the_outcome_round_trip_through_the_config_map() {
        let p = diamond();
        let mut cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": p.run_name, "namespace": "heal-system", "resourceVersion": "7",
                         "labels": {"heal.dev/engine": "local"}},
            "data": {PLAN_KEY: serde_json::to_string(&p).unwrap()},
        });
        let mut st = BTreeMap::new();
        st.insert("a".to_string(), done(StepPhase::Succeeded));
        let patch = steps_patch(&st, "heald-a/1", t());
        cm["data"][format!("{STEP_PREFIX}a")] = patch["data"]["step.a"].clone();
        let run = LocalRun::from_object(&cm).unwrap();
        assert_eq!(run.steps, st);
        assert_eq!(run.outcome, None);
        assert_eq!(recorded_outcome(&cm), None);
        let o = outcome_patch(RunOutcome::Failed, "step b failed", t());
        cm["data"][OUTCOME_KEY] = o["data"][OUTCOME_KEY].clone();
        assert_eq!(
            recorded_outcome(&cm),
            Some((RunOutcome::Failed, "step b failed".into()))
        );
        cm["data"]["step.b"] = json!("{not json");
        let e = LocalRun::from_object(&cm).unwrap_err().to_string();
        assert!(e.contains("data[\"step.b\"]"), "{e}");
    }

    #[test]
    fn retries_back_off_doubling_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), 1, s(60)), s(5));
        assert_eq!(backoff(s(5), 2, s(60)), s(10));
        assert_eq!(backoff(s(5), 5, s(60)), s(60));
        assert_eq!(backoff(s(5), 1000, s(60)), s(60));
    }
}
