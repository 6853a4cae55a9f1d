//! The result of one heal action: the JSON schema every action reports, and the exit codes
//! that tell a workflow engine what to do next. Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an action ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The change was made.
    Applied,
    /// The target was already in the wanted state; nothing was changed.
    Noop,
    /// A guard refused the action.
    Refused,
    /// The action failed.
    Failed,
    /// The API server validated the change with `dryRun=All`; nothing was changed.
    DryRun,
}

impl Outcome {
    /// The lower-case name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Noop => "noop",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry-run",
        }
    }
}

/// Process exit codes: the step's API towards Argo's `retryStrategy` and Tekton's `retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// 0: done, or already in the wanted state.
    Ok = 0,
    /// 1: failed, and retrying will not help (not found, forbidden, invalid).
    Failed = 1,
    /// 2: usage or configuration error.
    Usage = 2,
    /// 3: transient failure after in-process retries; the engine should retry the step.
    Transient = 3,
    /// 4: refused by a guard; stop and escalate.
    Refused = 4,
}

impl Exit {
    /// The numeric process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code for a numeric value, if it is one heal uses.
    pub fn from_code(code: i32) -> Option<Exit> {
        Some(match code {
            0 => Exit::Ok,
            1 => Exit::Failed,
            2 => Exit::Usage,
            3 => Exit::Transient,
            4 => Exit::Refused,
            _ => return None,
        })
    }
}

/// The object an action touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Namespace, absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// UID of the object acted on, when it was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One result per run, the same schema for every action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealResult {
    /// Correlation id shared by every step of one remediation.
    pub correlation_id: String,
    /// The action (`scale`, `restart`, ...).
    pub action: String,
    /// What was acted on.
    pub target: Target,
    /// With `--owner`: the object addressed, whose controlling workload is `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressed: Option<Target>,
    /// How it ended.
    pub outcome: Outcome,
    /// Relevant state before the action (replicas, generation, cordoned, ...).
    pub before: Value,
    /// Relevant state after the action.
    pub after: Value,
    /// One human sentence: what happened, or exactly why not.
    pub message: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Wall time of the action in milliseconds.
    pub duration_ms: u64,
}

impl HealResult {
    /// The exit code this result implies, given how a failure was classified.
    pub fn exit(&self, failure: Option<Exit>) -> Exit {
        match self.outcome {
            Outcome::Applied | Outcome::Noop | Outcome::DryRun => Exit::Ok,
            Outcome::Refused => Exit::Refused,
            Outcome::Failed => failure.unwrap_or(Exit::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_serializes_with_the_documented_field_names() {
        let r = HealResult {
            correlation_id: "c".into(),
            action: "scale".into(),
            target: Target {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
                uid: Some("u".into()),
            },
            addressed: None,
            outcome: Outcome::DryRun,
            before: serde_json::json!({"replicas": 1}),
            after: serde_json::json!({"replicas": 3}),
            message: "m".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_ms: 5,
        };
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "action",
                "after",
                "before",
                "correlationId",
                "durationMs",
                "message",
                "outcome",
                "startedAt",
                "target"
            ]
        );
        assert_eq!(v["outcome"], "dry-run");
        assert_eq!(v["target"]["apiVersion"], "apps/v1");
    }

    #[test]
    fn exit_codes_match_the_design() {
        assert_eq!(Exit::Transient.code(), 3);
        assert_eq!(Exit::Refused.code(), 4);
        assert_eq!(Exit::from_code(2), Some(Exit::Usage));
        assert_eq!(Exit::from_code(9), None);
    }
}
