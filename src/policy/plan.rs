//! Building a [`Plan`] from a policy and an alert: resolve the target from the alert's
//! labels (checked against Kubernetes name rules), derive the run name and correlation id
//! from the alert episode, and write each step's exact `heal` command line.

use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Action, Piece, Policy, Step, StepTarget, TargetField, Template, ValueSource};
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
    /// A verify step without a query needs the alert's own expression, and the alert's
    /// `generatorURL` does not carry one.
    #[error(
        "policy {policy}: step {step:?} has no query and the alert's expression cannot be used: {reason}"
    )]
    NoExpression {
        /// Policy name.
        policy: String,
        /// Step name.
        step: String,
        /// Why (no generatorURL, no `g0.expr`, not decodable).
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

/// How placeholders and target fields get label values, and verify steps without a query
/// the alert's expression.
trait Labels {
    fn label(&self, label: &str, needed_for: &str) -> Result<String, PlanError>;
    /// The PromQL expression of the alert's rule, for `step`.
    fn expression(&self, step: &str) -> Result<String, PlanError>;
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

    fn expression(&self, step: &str) -> Result<String, PlanError> {
        alert_expression(&self.alert.generator_url).map_err(|reason| PlanError::NoExpression {
            policy: self.policy.to_string(),
            step: step.to_string(),
            reason,
        })
    }
}

/// Stand-in values, to check a policy's command lines before any alert arrives.
struct SampleLabels;

impl Labels for SampleLabels {
    fn label(&self, _: &str, _: &str) -> Result<String, PlanError> {
        Ok("example".into())
    }

    fn expression(&self, _: &str) -> Result<String, PlanError> {
        Ok("up == 0".into())
    }
}

/// Longest alert expression accepted from a `generatorURL`, in bytes.
const MAX_EXPRESSION_BYTES: usize = 8 * 1024;

/// The PromQL expression of the rule that fired an alert, read from its `generatorURL`
/// (Prometheus writes `.../graph?g0.expr=<query-escaped expression>&g0.tab=1`). The value
/// is untrusted: it becomes one argument of `heal verify`, never shell or template text,
/// and it must be readable text without control characters other than line breaks and tabs.
pub fn alert_expression(generator_url: &str) -> Result<String, String> {
    if generator_url.trim().is_empty() {
        return Err("the alert has no generatorURL".into());
    }
    let query = generator_url
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q))
        .ok_or_else(|| format!("generatorURL {} has no query string", shown(generator_url)))?;
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("g0.expr="))
        .ok_or_else(|| {
            format!(
                "generatorURL {} has no g0.expr parameter",
                shown(generator_url)
            )
        })?;
    let expr = percent_decode(raw).ok_or_else(|| {
        format!(
            "g0.expr in generatorURL {} is not valid percent-encoded UTF-8",
            shown(generator_url)
        )
    })?;
    let expr = expr.trim().to_string();
    if expr.is_empty() {
        return Err("g0.expr in the generatorURL is empty".into());
    }
    if expr.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "g0.expr is {} bytes long; at most {MAX_EXPRESSION_BYTES} are accepted",
            expr.len()
        ));
    }
    if expr
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("g0.expr contains control characters".into());
    }
    Ok(expr)
}

/// Decode a query-string value: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn resolve_target(policy: &Policy, labels: &dyn Labels) -> Result<Resolved, PlanError> {
    resolve_spec(policy, &policy.target, "target", labels)
}

/// Resolve a target spec; `at` names it in errors (`target`, `step "x" target`).
fn resolve_spec(
    policy: &Policy,
    t: &super::TargetSpec,
    at: &str,
    labels: &dyn Labels,
) -> Result<Resolved, PlanError> {
    let value = |src: &ValueSource,
                 what: &str,
                 check: fn(&str) -> Result<(), String>|
     -> Result<String, PlanError> {
        match src {
            ValueSource::Literal(v) => Ok(v.clone()),
            ValueSource::Label(l) => {
                let needed_for = format!("{at}.{what}");
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
    /// The owner of the policy's target as heald found it, for `target: owner` steps.
    owner: Option<&'a PlanTarget>,
}

fn step_argv(
    policy: &Policy,
    step: &Step,
    target: &Resolved,
    labels: &dyn Labels,
    ctx: &ArgvContext,
) -> Result<Vec<String>, PlanError> {
    Ok(heal_step(policy, step, target, labels, ctx)?.argv())
}

/// A policy word read into its type (`"+1"`, `raise-min`, `25%`, ...).
fn parsed<T: std::str::FromStr<Err = String>>(
    v: &str,
    bad: &dyn Fn(String) -> PlanError,
) -> Result<T, PlanError> {
    v.parse().map_err(bad)
}

/// The typed heal step a policy step is for this alert: the policy's values (placeholders
/// filled in, words read into their types) and the guards. Its command line is
/// [`heal::step::Step::argv`](crate::step::Step::argv).
fn heal_step(
    policy: &Policy,
    step: &Step,
    target: &Resolved,
    labels: &dyn Labels,
    ctx: &ArgvContext,
) -> Result<crate::step::Step, PlanError> {
    use crate::step as s;
    let bad = |reason: String| PlanError::Argv {
        policy: policy.name.clone(),
        step: step.name.clone(),
        reason,
    };
    let fill = Fill {
        policy,
        target,
        labels,
        step: &step.name,
    };
    let own;
    let target = match &step.target {
        StepTarget::Own(spec) => {
            own = resolve_spec(
                policy,
                spec,
                &format!("step {:?} target", step.name),
                labels,
            )?;
            &own
        }
        StepTarget::Policy | StepTarget::Owner => target,
    };
    let fill = Fill { target, ..fill };
    let addr = || -> Result<address::Address, PlanError> {
        format!("{}/{}", target.kind, target.name)
            .parse::<address::Address>()
            .map_err(|e| bad(e.to_string()))
    };
    let gitops = |g: &super::GitOpsStep| -> Result<s::GitOpsOptions, PlanError> {
        Ok(s::GitOpsOptions {
            allow: g.allow,
            argocd_tracking: match &g.argocd_tracking {
                Some(t) => t.parse().map_err(bad)?,
                None => s::ArgoTracking::default(),
            },
            ..s::GitOpsOptions::default()
        })
    };
    let action = match &step.action {
        Action::Scale {
            replicas,
            min,
            max,
            hpa,
            gitops: g,
        } => s::StepAction::Kube(s::Action::Scale(
            addr()?,
            s::ScaleSpec {
                replicas: parsed(replicas, &bad)?,
                min: min.map(i64::from),
                max: max.map(i64::from),
                hpa: match hpa {
                    Some(h) => h.parse().map_err(bad)?,
                    None => s::HpaMode::default(),
                },
                gitops: gitops(g)?,
            },
        )),
        Action::Restart { wait, gitops: g } => s::StepAction::Kube(s::Action::Restart(
            addr()?,
            s::RestartSpec {
                wait: *wait,
                gitops: gitops(g)?,
            },
        )),
        Action::Delete {
            grace_period,
            uid,
            min_available,
            evict,
        } => s::StepAction::Kube(s::Action::Delete(
            addr()?,
            s::DeleteSpec {
                grace_period: grace_period.map(|g| i64::try_from(g).unwrap_or(i64::MAX)),
                uid: uid.as_ref().map(|u| fill.template(u)).transpose()?,
                min_available: min_available.map(i64::from),
                evict: *evict,
            },
        )),
        Action::Patch {
            patch_type,
            patch,
            force_conflicts,
            gitops: g,
        } => {
            let body = match fill.json(patch)? {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
            let mut spec = s::PatchSpec::parse(parsed(patch_type, &bad)?, &body).map_err(bad)?;
            spec.force_conflicts = *force_conflicts;
            spec.gitops = gitops(g)?;
            s::StepAction::Kube(s::Action::Patch(addr()?, spec))
        }
        Action::Cordon { max_unschedulable } => s::StepAction::Kube(s::Action::Cordon(
            addr()?,
            s::CordonSpec {
                max_unschedulable: max_unschedulable
                    .as_deref()
                    .map(|v| parsed(v, &bad))
                    .transpose()?,
            },
        )),
        Action::Uncordon => {
            s::StepAction::Kube(s::Action::Uncordon(addr()?, s::UncordonSpec::default()))
        }
        Action::Drain {
            min_available,
            max_unschedulable,
        } => s::StepAction::Kube(s::Action::Drain(
            addr()?,
            s::DrainSpec {
                min_available: min_available.map(i64::from),
                force: false,
                max_unschedulable: max_unschedulable
                    .as_deref()
                    .map(|v| parsed(v, &bad))
                    .transpose()?,
            },
        )),
        Action::Wait { condition } => s::StepAction::Kube(s::Action::Wait(
            addr()?,
            s::WaitSpec {
                for_: parsed(condition, &bad)?,
            },
        )),
        Action::Verify {
            query,
            expect,
            prometheus_url,
        } => {
            let query = match query {
                Some(q) => fill.template(q)?,
                None => labels.expression(&step.name)?,
            };
            s::StepAction::Verify(s::VerifyOptions {
                query,
                expect: parsed(expect, &bad)?,
                prometheus_url: prometheus_url
                    .clone()
                    .or_else(|| ctx.prometheus_url.map(str::to_string)),
                bearer_token_file: None,
                ca_file: None,
                interval: None,
            })
        }
    };
    let owner = (step.target == StepTarget::Owner)
        .then(|| -> Result<s::OwnerOptions, PlanError> {
            Ok(s::OwnerOptions {
                expect: ctx
                    .owner
                    .map(|o| {
                        format!("{}/{}", o.kind, o.name)
                            .parse::<address::Address>()
                            .map_err(|e| bad(e.to_string()))
                    })
                    .transpose()?,
            })
        })
        .transpose()?;
    Ok(s::Step {
        action,
        common: s::Common {
            correlation_id: ctx.correlation_id.to_string(),
            dry_run: ctx.dry_run,
            namespace: target.namespace.clone(),
            allow_namespaces: policy.guards.allow_namespaces.clone(),
            require_label: policy
                .guards
                .require_label
                .as_deref()
                .map(|v| parsed(v, &bad))
                .transpose()?,
            events: true,
            owner,
        },
        timeout: step.timeout,
    })
}

/// The engine-level timeout of a step, in seconds.
pub(super) fn step_timeout_seconds(step: &Step, defaults: &PlanDefaults) -> u64 {
    step.timeout
        .map(|t| t + STEP_GRACE)
        .unwrap_or(defaults.step_timeout)
        .as_secs()
        .max(1)
}

/// A step's command line with stand-in label values, to lint a policy.
pub(super) fn sample_argv(policy: &Policy, step: &Step) -> Result<Vec<String>, String> {
    let target = resolve_target(policy, &SampleLabels).map_err(|e| e.to_string())?;
    let ctx = ArgvContext {
        correlation_id: "00000000-0000-0000-0000-000000000000",
        dry_run: policy.dry_run,
        prometheus_url: None,
        owner: None,
    };
    step_argv(policy, step, &target, &SampleLabels, &ctx).map_err(|e| match e {
        PlanError::Argv { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// Build the plan that remediates `alert` according to `policy`.
pub fn plan(policy: &Policy, alert: &Alert, defaults: &PlanDefaults) -> Result<Plan, PlanError> {
    plan_with_owner(policy, alert, defaults, None)
}

/// [`plan`], with the owner of the policy's target as heald found it when the policy has
/// `target: owner` steps: the plan's target is then that owner (so the hold, cooldown and
/// circuit cover the workload that changes), [`Plan::addressed`] the policy's target, and
/// each owner step carries `--expect-owner`, so that heal refuses when the owner changed
/// before the step runs. Without it, owner steps find the owner at run time only.
pub fn plan_with_owner(
    policy: &Policy,
    alert: &Alert,
    defaults: &PlanDefaults,
    owner: Option<&PlanTarget>,
) -> Result<Plan, PlanError> {
    let labels = AlertLabels {
        policy: &policy.name,
        alert,
    };
    let target = resolve_target(policy, &labels)?;
    let starts_at = alert.starts_at_rfc3339();
    let correlation = correlation_id(&policy.name, &alert.fingerprint, &starts_at);
    let dry_run = policy.dry_run || defaults.dry_run;
    let owner = owner.filter(|_| policy.needs_owner());
    let ctx = ArgvContext {
        correlation_id: &correlation,
        dry_run,
        prometheus_url: defaults.prometheus_url.as_deref(),
        owner,
    };
    let steps = policy
        .steps
        .iter()
        .map(|s| {
            Ok(PlanStep {
                name: s.name.clone(),
                action: s.action.name().to_string(),
                heal: heal_step(policy, s, &target, &labels, &ctx)?,
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
        addressed: owner.map(|_| PlanTarget {
            kind: target.kind.clone(),
            namespace: target.namespace.clone().unwrap_or_default(),
            name: target.name.clone(),
        }),
        target: owner.cloned().unwrap_or(PlanTarget {
            kind: target.kind,
            namespace: target.namespace.unwrap_or_default(),
            name: target.name,
        }),
        steps,
        deadline_seconds,
        service_account: policy
            .service_account
            .clone()
            .unwrap_or_else(|| defaults.service_account.clone()),
        image: defaults.image.clone(),
        dry_run,
        report_url: defaults.report_url.clone(),
        approval: policy.approval.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    const POLICY: &str = r#"
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: scale-web
spec:
  match:
    alertname: HighCpuUsage
  target:
    kind: deployment
    namespace: "{{ labels.namespace }}"
    name: "{{ labels.deployment }}"
  steps:
    - name: scale-out
      action: scale
      replicas: "+1"
    - name: verify
      action: verify
      after: [scale-out]
      expect: empty
"#;

    fn alert(generator_url: &str) -> Alert {
        let labels = [
            ("alertname", "HighCpuUsage"),
            ("namespace", "shop"),
            ("deployment", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut a = Alert::new(labels);
        a.generator_url = generator_url.into();
        a
    }

    fn policy() -> Policy {
        match PolicySet::from_yaml("p.yaml", POLICY) {
            Ok(set) => set.policies[0].clone(),
            Err(e) => panic!("the test policy does not load: {e}"),
        }
    }

    fn query_of(plan: &Plan, step: &str) -> String {
        let argv = plan.steps.iter().find(|s| s.name == step).unwrap().argv();
        let i = argv.iter().position(|a| a == "--query").unwrap();
        argv[i + 1].clone()
    }

    #[test]
    fn a_verify_step_without_a_query_checks_the_alerts_own_expression() {
        let url = "http://prometheus.monitoring:9090/graph?g0.expr=sum+by+%28namespace%2C+deployment%29+%28rate%28container_cpu_usage_seconds_total%5B5m%5D%29%29+%3E+0.85&g0.tab=1";
        let plan = plan(&policy(), &alert(url), &PlanDefaults::default()).unwrap();
        assert_eq!(
            query_of(&plan, "verify"),
            "sum by (namespace, deployment) (rate(container_cpu_usage_seconds_total[5m])) > 0.85"
        );
    }

    #[test]
    fn a_multi_line_rule_expression_keeps_its_line_breaks() {
        let url = "http://p/graph?g0.tab=1&g0.expr=up%7Bjob%3D%22web%22%7D%0A++%3D%3D+0";
        assert_eq!(alert_expression(url).unwrap(), "up{job=\"web\"}\n  == 0");
    }

    #[test]
    fn an_alert_without_an_expression_makes_the_plan_fail_naming_the_step() {
        for (url, why) in [
            ("", "no generatorURL"),
            ("http://prometheus/graph", "no query string"),
            ("http://prometheus/graph?g0.tab=1", "no g0.expr"),
            (
                "http://prometheus/graph?g0.expr=%ZZ",
                "not valid percent-encoded",
            ),
            ("http://prometheus/graph?g0.expr=+", "empty"),
            (
                "http://prometheus/graph?g0.expr=up%00",
                "control characters",
            ),
        ] {
            let e = plan(&policy(), &alert(url), &PlanDefaults::default()).unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(&e, PlanError::NoExpression { step, .. } if step == "verify"),
                "{url}: {text}"
            );
            assert!(text.contains(why), "{url}: {text}");
            assert!(text.contains("step \"verify\" has no query"), "{text}");
        }
    }

    #[test]
    fn a_written_query_wins_over_the_alerts_expression() {
        let yaml = POLICY.replace(
            "      expect: empty",
            "      query: 'up{deployment=\"{{ target.name }}\"} == 0'\n      expect: empty",
        );
        let p = PolicySet::from_yaml("p.yaml", &yaml).unwrap().policies[0].clone();
        let plan = plan(&p, &alert(""), &PlanDefaults::default()).unwrap();
        assert_eq!(query_of(&plan, "verify"), "up{deployment=\"web\"} == 0");
    }

    #[test]
    fn a_policy_may_fall_back_to_the_local_engine_and_nothing_else() {
        let with = |line: &str| POLICY.replace("  steps:\n", &format!("  {line}\n  steps:\n"));
        let p = PolicySet::from_yaml("p.yaml", &with("engine: argo\n  fallback: local")).unwrap();
        assert_eq!(p.policies[0].fallback, Some(crate::render::Engine::Local));
        assert_eq!(policy().fallback, None, "no fallback unless asked for");
        let e = PolicySet::from_yaml("p.yaml", &with("fallback: tekton"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.yaml:13:13: fallback tekton"), "{e}");
        assert!(e.contains("only fall back to the local engine"), "{e}");
        let e = PolicySet::from_yaml("p.yaml", &with("fallback: jenkins"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.yaml:13:13") && e.contains("jenkins"), "{e}");
    }

    #[test]
    fn a_policy_may_ask_to_cancel_its_run_when_the_alert_resolves() {
        let with = |line: &str| POLICY.replace("  steps:\n", &format!("  {line}\n  steps:\n"));
        let p = PolicySet::from_yaml("p.yaml", &with("onResolved: cancel")).unwrap();
        assert_eq!(p.policies[0].on_resolved, crate::policy::OnResolved::Cancel);
        assert_eq!(
            policy().on_resolved,
            crate::policy::OnResolved::Nothing,
            "nothing unless asked for"
        );
        let e = PolicySet::from_yaml("p.yaml", &with("onResolved: stop"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.yaml:13:15: unknown onResolved \"stop\""),
            "{e}"
        );
        assert!(e.contains("onResolved: cancel"), "{e}");
        let both = POLICY
            .replace(
                "    alertname: HighCpuUsage\n",
                "    alertname: HighCpuUsage\n    status: any\n",
            )
            .replace("  steps:\n", "  onResolved: cancel\n  steps:\n");
        let e = PolicySet::from_yaml("p.yaml", &both)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("onResolved: cancel needs a policy that answers firing alerts only"),
            "{e}"
        );
    }
}
