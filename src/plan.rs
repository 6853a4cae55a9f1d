//! A remediation plan: the engine-neutral DAG that a policy and an alert produce, and that
//! every renderer (Argo, Tekton, local) turns into something that runs. Pure data.

use serde::{Deserialize, Serialize};

use crate::step::Step;

/// Everything needed to run one remediation for one alert episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Deterministic run name (policy, alert fingerprint, startsAt), a valid Kubernetes name
    /// of at most 63 characters, so a repeated alert yields the same name and a second
    /// create answers 409.
    pub run_name: String,
    /// Namespace the Workflow / PipelineRun is created in.
    pub run_namespace: String,
    /// Name of the policy that matched.
    pub policy: String,
    /// Alertmanager fingerprint of the alert.
    pub fingerprint: String,
    /// The alert's name (label `alertname`).
    pub alertname: String,
    /// The alert's `startsAt`, RFC 3339.
    pub starts_at: String,
    /// Deterministic correlation id (UUID v5 of run identity), carried by every step.
    pub correlation_id: String,
    /// The object being remediated: the one the hold, cooldown and circuit cover (with
    /// `target: owner` steps and the owner found, the owner).
    pub target: PlanTarget,
    /// With `target: owner` steps and the owner found: the object the alert named, whose
    /// owner `target` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressed: Option<PlanTarget>,
    /// Steps of the DAG, in declaration order.
    pub steps: Vec<PlanStep>,
    /// Whole-run deadline (Argo `activeDeadlineSeconds`, Tekton `timeouts.pipeline`).
    pub deadline_seconds: u64,
    /// Service account the steps run as unless a step names its own.
    pub service_account: String,
    /// Container image of heal.
    pub image: String,
    /// Whether every step runs with `--dry-run`.
    pub dry_run: bool,
    /// URL of heald's `/v1/reports`, for the exit-handler / finally `heal report` step.
    pub report_url: Option<String>,
    /// The approval gate the changing steps wait for, when the policy asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::approval::PlanApproval>,
}

impl Plan {
    /// The run's whole deadline from its creation: the steps' deadline plus, with an
    /// approval gate, the time the gate may wait.
    pub fn run_deadline_seconds(&self) -> u64 {
        self.deadline_seconds + self.approval.map_or(0, |a| a.timeout_seconds)
    }
}

impl PlanStep {
    /// Its command line after the program name, e.g.
    /// `["scale", "deployment/web", "-n", "shop", "--replicas", "+1", ...]`.
    pub fn argv(&self) -> Vec<String> {
        self.heal.argv()
    }
}

impl Serialize for PlanStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PlanStep", 8)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("action", &self.action)?;
        st.serialize_field("argv", &self.argv())?;
        st.serialize_field("after", &self.after)?;
        st.serialize_field("retries", &self.retries)?;
        st.serialize_field("timeoutSeconds", &self.timeout_seconds)?;
        st.serialize_field("serviceAccount", &self.service_account)?;
        st.serialize_field("heal", &self.heal)?;
        st.end()
    }
}

/// The object a plan remediates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanTarget {
    /// Resource type as `heal` addresses it: `deployment`, `pod`, `node`, `rollouts.argoproj.io`.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects such as nodes.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

/// One step: one `heal` invocation. Serialized with its command line (`argv`, written by
/// [`Step::argv`] from the typed step, for the reader; it is not read back).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStep {
    /// Step name, a DNS-1123 label, unique in the plan.
    pub name: String,
    /// The heal action (`scale`, `restart`, ...).
    pub action: String,
    /// The typed step: what heal (or heald's local engine) runs.
    pub heal: Step,
    /// Names of steps that must succeed first.
    pub after: Vec<String>,
    /// Engine-level retries (on exit code 3 only).
    pub retries: u32,
    /// Step timeout in seconds.
    pub timeout_seconds: u64,
    /// Service account for this step, when it differs from the plan's.
    pub service_account: Option<String>,
}
