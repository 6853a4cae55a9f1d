//! Building a [`Plan`] from a policy and an alert: resolve the target from the alert's
//! labels (checked against Kubernetes name rules), derive the run name and correlation id
//! from the alert episode, and write each step's exact `heal` command line.

use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Action, Piece, Policy, Step, TargetField, Template, ValueSource};
use crate::address;
use crate::alert::Alert;
use crate::plan::{Plan, PlanStep, PlanTarget};

/// Settings a plan takes when the policy does not say (heald's flags, `heal render`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDefaults {
    /// Namespace runs are created in.
    pub run_namespace: String,
    /// Service account steps run as.
    pub service_account: String,
    /// heal's container image.
    pub image: String,
    /// Whole-run deadline.
    pub deadline: Duration,
    /// Engine-level timeout of a step that sets none.
    pub step_timeout: Duration,
    /// Engine-level retries (exit code 3) of a step that sets none.
    pub retries: u32,
    /// Force `--dry-run` on every step.
    pub dry_run: bool,
    /// heald's `/v1/reports` URL for the exit handler.
    pub report_url: Option<String>,
    /// Prometheus for verify steps that name none.
    pub prometheus_url: Option<String>,
}

impl Default for PlanDefaults {
    fn default() -> Self {
        PlanDefaults {
            run_namespace: "heal-system".into(),
            service_account: "heal".into(),
            image: format!("ghcr.io/heal-project/heal:{}", env!("CARGO_PKG_VERSION")),
            deadline: Duration::from_secs(15 * 60),
            step_timeout: Duration::from_secs(5 * 60),
            retries: 2,
            dry_run: false,
            report_url: None,
            prometheus_url: None,
        }
    }
}

/// Time an engine gives a step beyond the step's own `--timeout`, so heal can report a
/// timeout itself (exit code 3) instead of being killed.
const STEP_GRACE: Duration = Duration::from_secs(30);

/// Why a plan could not be built for an alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The alert lacks a label the policy needs.
    #[error("policy {policy}: alert has no label {label:?}, needed for {needed_for}")]
    MissingLabel {
        /// Policy name.
        policy: String,
        /// The label.
        label: String,
        /// What it was needed for (`target.name`, step `verify`).
        needed_for: String,
    },
    /// A label value is not acceptable where the policy puts it.
    #[error(
        "policy {policy}: label {label:?} value {value} cannot be used as {needed_for}: {reason}"
    )]
    InvalidLabel {
        /// Policy name.
        policy: String,
        /// The label.
        label: String,
        /// The value, shortened and quoted.
        value: String,
        /// Where it would go.
        needed_for: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A step's command line is not one heal accepts.
    #[error("policy {policy}: step {step:?}: invalid heal command: {reason}")]
    Argv {
        /// Policy name.
        policy: String,
        /// Step name.
        step: String,
        /// What heal's argument check said.
        reason: String,
    },
}

/// Quote an untrusted value for a message, cut to a readable length.
fn shown(v: &str) -> String {
    const MAX: usize = 64;
    if v.chars().count() > MAX {
        let cut: String = v.chars().take(MAX).collect();
        format!("{cut:?}... ({} bytes)", v.len())
    } else {
        format!("{v:?}")
    }
}

fn identity(policy: &str, fingerprint: &str, starts_at: &str) -> String {
    format!("{policy}|{fingerprint}|{starts_at}")
}

/// The run name of an alert episode: `heal-<policy>-<10 hex of sha256(policy|fingerprint|
/// startsAt)>`, the policy part cut so the whole is a DNS-1123 label of at most 63
/// characters. The same alert episode always yields the same name.
pub fn run_name(policy: &str, fingerprint: &str, starts_at: &str) -> String {
    let digest = Sha256::digest(identity(policy, fingerprint, starts_at).as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let max = 63 - "heal-".len() - 1 - hex.len();
    let mut p: String = policy
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .take(max)
        .collect();
    while p.ends_with('-') {
        p.pop();
    }
    let p = p.trim_start_matches('-');
    if p.is_empty() {
        format!("heal-{hex}")
    } else {
        format!("heal-{p}-{hex}")
    }
}

/// The correlation id of an alert episode: a UUID v5 of the same identity as the run name.
pub fn correlation_id(policy: &str, fingerprint: &str, starts_at: &str) -> String {
    let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://heal.dev/remediation");
    Uuid::new_v5(&ns, identity(policy, fingerprint, starts_at).as_bytes()).to_string()
}

/// The target of one run.
struct Resolved {
    kind: String,
    namespace: Option<String>,
    name: String,
}

/// How placeholders and target fields get label values.
trait Labels {
    fn label(&self, label: &str, needed_for: &str) -> Result<String, PlanError>;
}

struct AlertLabels<'a> {
    policy: &'a str,
    alert: &'a Alert,
}

impl Labels for AlertLabels<'_> {
    fn label(&self, label: &str, needed_for: &str) -> Result<String, PlanError> {
        match self.alert.labels.get(label) {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(PlanError::MissingLabel {
                policy: self.policy.to_string(),
                label: label.to_string(),
                needed_for: needed_for.to_string(),
            }),
        }
    }
}

/// Stand-in values, to check a policy's command lines before any alert arrives.
struct SampleLabels;

impl Labels for SampleLabels {
    fn label(&self, _: &str, _: &str) -> Result<String, PlanError> {
        Ok("example".into())
    }
}

fn resolve_target(policy: &Policy, labels: &dyn Labels) -> Result<Resolved, PlanError> {
    let t = &policy.target;
    let value = |src: &ValueSource,
                 what: &str,
                 check: fn(&str) -> Result<(), String>|
     -> Result<String, PlanError> {
        match src {
            ValueSource::Literal(v) => Ok(v.clone()),
            ValueSource::Label(l) => {
                let needed_for = format!("target.{what}");
                let v = labels.label(l, &needed_for)?;
                check(&v).map_err(|reason| PlanError::InvalidLabel {
                    policy: policy.name.clone(),
                    label: l.clone(),
                    value: shown(&v),
                    needed_for,
                    reason,
                })?;
                Ok(v)
            }
        }
    };
    Ok(Resolved {
        kind: t.kind.clone(),
        namespace: t
            .namespace
            .as_ref()
            .map(|ns| value(ns, "namespace", address::check_namespace))
            .transpose()?,
        name: value(&t.name, "name", address::check_name)?,
    })
}

/// Whether a label value may be spliced into a step argument (a PromQL query, a patch):
/// name-like characters only, so it can neither end a quoted string nor add syntax.
fn check_splice(v: &str) -> Result<(), String> {
    if v.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '+' | '-'))
    {
        Ok(())
    } else {
        Err("only letters, digits and . _ : / @ + - may be placed into step arguments".into())
    }
}

struct Fill<'a> {
    policy: &'a Policy,
    target: &'a Resolved,
    labels: &'a dyn Labels,
    step: &'a str,
}

impl Fill<'_> {
    fn template(&self, t: &Template) -> Result<String, PlanError> {
        let mut out = String::new();
        for piece in &t.0 {
            match piece {
                Piece::Text(s) => out.push_str(s),
                Piece::Target(TargetField::Kind) => out.push_str(&self.target.kind),
                Piece::Target(TargetField::Namespace) => {
                    out.push_str(self.target.namespace.as_deref().unwrap_or(""))
                }
                Piece::Target(TargetField::Name) => out.push_str(&self.target.name),
                Piece::Label(l) => {
                    let needed_for = format!("step {:?}", self.step);
                    let v = self.labels.label(l, &needed_for)?;
                    check_splice(&v).map_err(|reason| PlanError::InvalidLabel {
                        policy: self.policy.name.clone(),
                        label: l.clone(),
                        value: shown(&v),
                        needed_for,
                        reason,
                    })?;
                    out.push_str(&v);
                }
            }
        }
        Ok(out)
    }

    fn json(&self, v: &serde_json::Value) -> Result<serde_json::Value, PlanError> {
        use serde_json::Value;
        Ok(match v {
            Value::String(s) => {
                Value::String(self.template(&super::load::template(s).map_err(|reason| {
                    PlanError::Argv {
                        policy: self.policy.name.clone(),
                        step: self.step.to_string(),
                        reason,
                    }
                })?)?)
            }
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.json(x)).collect::<Result<_, _>>()?)
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), self.json(x)?)))
                    .collect::<Result<_, PlanError>>()?,
            ),
            other => other.clone(),
        })
    }
}

struct ArgvContext<'a> {
    correlation_id: &'a str,
    dry_run: bool,
    prometheus_url: Option<&'a str>,
}

fn step_argv(
    policy: &Policy,
    step: &Step,
    target: &Resolved,
    labels: &dyn Labels,
    ctx: &ArgvContext,
) -> Result<Vec<String>, PlanError> {
    let fill = Fill {
        policy,
        target,
        labels,
        step: &step.name,
    };
    let mut argv: Vec<String> = vec![step.action.name().to_string()];
    if step.action.has_target() {
        push_target(&mut argv, target);
    }
    let mut flags: Vec<(&str, String)> = Vec::new();
    match &step.action {
        Action::Scale { replicas, min, max } => {
            flags.push(("--replicas", replicas.clone()));
            if let Some(m) = min {
                flags.push(("--min", m.to_string()));
            }
            if let Some(m) = max {
                flags.push(("--max", m.to_string()));
            }
        }
        Action::Restart { wait } => {
            if *wait {
                argv.push("--wait".into());
            }
        }
        Action::Delete {
            grace_period,
            uid,
            min_available,
        } => {
            if let Some(g) = grace_period {
                flags.push(("--grace-period", g.to_string()));
            }
            if let Some(u) = uid {
                flags.push(("--uid", fill.template(u)?));
            }
            if let Some(m) = min_available {
                flags.push(("--min-available", m.to_string()));
            }
        }
        Action::Patch { patch_type, patch } => {
            flags.push(("--type", patch_type.clone()));
            let body = match fill.json(patch)? {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
            flags.push(("--patch", body));
        }
        Action::Cordon | Action::Uncordon => {}
        Action::Drain { min_available } => {
            if let Some(m) = min_available {
                flags.push(("--min-available", m.to_string()));
            }
        }
        Action::Wait { condition } => flags.push(("--for", condition.clone())),
        Action::Verify {
            query,
            expect,
            prometheus_url,
        } => {
            flags.push(("--query", fill.template(query)?));
            flags.push(("--expect", expect.clone()));
            if let Some(u) = prometheus_url.as_deref().or(ctx.prometheus_url) {
                flags.push(("--prometheus-url", u.to_string()));
            }
        }
    }
    if let Some(t) = step.timeout {
        flags.push(("--timeout", crate::duration::format(t)));
    }
    if step.action.has_target() {
        for p in &policy.guards.allow_namespaces {
            flags.push(("--allow-namespace", p.clone()));
        }
        if let Some(l) = &policy.guards.require_label {
            flags.push(("--require-label", l.clone()));
        }
    }
    for (f, v) in flags {
        argv.push(f.to_string());
        argv.push(v);
    }
    if ctx.dry_run {
        argv.push("--dry-run".into());
    }
    argv.push("--correlation-id".into());
    argv.push(ctx.correlation_id.to_string());
    crate::cli::validate_action_argv(&argv).map_err(|reason| PlanError::Argv {
        policy: policy.name.clone(),
        step: step.name.clone(),
        reason,
    })?;
    Ok(argv)
}

fn push_target(argv: &mut Vec<String>, target: &Resolved) {
    argv.push(format!("{}/{}", target.kind, target.name));
    if let Some(ns) = &target.namespace {
        argv.push("-n".into());
        argv.push(ns.clone());
    }
}

/// A step's command line with stand-in label values, to lint a policy.
/// The engine-level timeout of a step, in seconds.
pub(super) fn step_timeout_seconds(step: &Step, defaults: &PlanDefaults) -> u64 {
    step.timeout
        .map(|t| t + STEP_GRACE)
        .unwrap_or(defaults.step_timeout)
        .as_secs()
        .max(1)
}

pub(super) fn sample_argv(policy: &Policy, step: &Step) -> Result<Vec<String>, String> {
    let target = resolve_target(policy, &SampleLabels).map_err(|e| e.to_string())?;
    let ctx = ArgvContext {
        correlation_id: "00000000-0000-0000-0000-000000000000",
        dry_run: policy.dry_run,
        prometheus_url: None,
    };
    step_argv(policy, step, &target, &SampleLabels, &ctx).map_err(|e| match e {
        PlanError::Argv { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// Build the plan that remediates `alert` according to `policy`.
pub fn plan(policy: &Policy, alert: &Alert, defaults: &PlanDefaults) -> Result<Plan, PlanError> {
    let labels = AlertLabels {
        policy: &policy.name,
        alert,
    };
    let target = resolve_target(policy, &labels)?;
    let starts_at = alert.starts_at_rfc3339();
    let correlation = correlation_id(&policy.name, &alert.fingerprint, &starts_at);
    let dry_run = policy.dry_run || defaults.dry_run;
    let ctx = ArgvContext {
        correlation_id: &correlation,
        dry_run,
        prometheus_url: defaults.prometheus_url.as_deref(),
    };
    let steps = policy
        .steps
        .iter()
        .map(|s| {
            Ok(PlanStep {
                name: s.name.clone(),
                action: s.action.name().to_string(),
                argv: step_argv(policy, s, &target, &labels, &ctx)?,
                after: s.after.clone(),
                retries: s.retries.unwrap_or(defaults.retries),
                timeout_seconds: step_timeout_seconds(s, defaults),
                service_account: s.service_account.clone(),
            })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    let deadline_seconds = policy
        .timeout
        .map(|t| t.as_secs().max(1))
        .unwrap_or_else(|| {
            // Without a policy timeout, the run may take as long as all its steps together.
            let steps: u64 = steps.iter().map(|s| s.timeout_seconds).sum();
            defaults.deadline.as_secs().max(steps)
        });
    Ok(Plan {
        run_name: run_name(&policy.name, &alert.fingerprint, &starts_at),
        run_namespace: policy
            .run_namespace
            .clone()
            .unwrap_or_else(|| defaults.run_namespace.clone()),
        policy: policy.name.clone(),
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.name().to_string(),
        starts_at,
        correlation_id: correlation,
        target: PlanTarget {
            kind: target.kind,
            namespace: target.namespace.unwrap_or_default(),
            name: target.name,
        },
        steps,
        deadline_seconds,
        service_account: policy
            .service_account
            .clone()
            .unwrap_or_else(|| defaults.service_account.clone()),
        image: defaults.image.clone(),
        dry_run,
        report_url: defaults.report_url.clone(),
    })
}
