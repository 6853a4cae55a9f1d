//! Healing policies: the model (which alerts a policy answers, the target it acts on, the
//! DAG of heal steps, guards, what to do on success and failure), loading it from YAML (the
//! `heal.dev/v1alpha1` format, the older flat format, either bare or inside a ConfigMap),
//! deciding which policies an alert matches, building a [`Plan`](crate::plan::Plan), and the
//! Prometheus rules for flat-format conditions. Pure: callers read the files.

mod approval_lint;
mod flat;
mod load;
mod plan;
mod rules;

use std::path::PathBuf;
use std::time::Duration;

use crate::alert::{Alert, Status};
use crate::matcher::Matchers;
use crate::render::Engine;

pub use flat::{FlatCondition, flat_alert_name};
pub use load::{LoadError, LoadErrors, SourceFile};
pub use plan::{PlanDefaults, PlanError, correlation_id, plan, plan_with_owner, run_name};
pub use rules::{Rule, RuleFile, RuleGroup, prometheus_rules};

/// The `apiVersion` of policy and notifier documents.
pub const API_VERSION: &str = "heal.dev/v1alpha1";

/// Every policy and notifier loaded from a set of files, in load order (files in the order
/// given, a directory's files sorted by name, documents in file order).
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Policies, in the order they are tried.
    pub policies: Vec<Policy>,
    /// Notifiers that `onFailure.notify` refers to.
    pub notifiers: Vec<Notifier>,
}

impl PolicySet {
    /// Load policies from already-read files. Every problem is reported, each with its file,
    /// line and column and a hint.
    pub fn parse(files: &[SourceFile]) -> Result<PolicySet, LoadErrors> {
        load::parse(files)
    }

    /// Load policies from one YAML text (tests, `heal policy test` inline use).
    pub fn from_yaml(name: &str, text: &str) -> Result<PolicySet, LoadErrors> {
        load::parse(&[SourceFile::new(name, text)])
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The notifier called `name`.
    pub fn notifier(&self, name: &str) -> Option<&Notifier> {
        self.notifiers.iter().find(|n| n.name == name)
    }
}

/// Where a policy or notifier was defined, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// File it came from.
    pub file: PathBuf,
    /// 1-based line of its name.
    pub line: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Which alert statuses a policy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Only firing alerts (the default).
    Firing,
    /// Only resolved alerts (clean-up policies, e.g. uncordon a node that is Ready again).
    Resolved,
    /// Both.
    Any,
}

impl StatusFilter {
    /// Whether an alert with `status` passes.
    pub fn accepts(self, status: Status) -> bool {
        matches!(
            (self, status),
            (StatusFilter::Any, _)
                | (StatusFilter::Firing, Status::Firing)
                | (StatusFilter::Resolved, Status::Resolved)
        )
    }
}

/// One healing policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Unique name, a DNS-1123 label; part of run names.
    pub name: String,
    /// Where it was defined.
    pub source: Source,
    /// Human description.
    pub description: Option<String>,
    /// Label matchers that must all hold (`alertname` included).
    pub matchers: Matchers,
    /// Alert statuses answered.
    pub status: StatusFilter,
    /// How the target is found from the alert.
    pub target: TargetSpec,
    /// The steps, in declaration order; `after` makes them a DAG.
    pub steps: Vec<Step>,
    /// Engine that runs the steps; `None` leaves the choice to heald's default.
    pub engine: Option<Engine>,
    /// Engine to run the steps on instead when the chosen one is not installed (its CRD is
    /// absent) or refuses the run; only `local` is accepted. `None`: such a failure is
    /// escalated to the policy's notifiers.
    pub fallback: Option<Engine>,
    /// Service account the steps run as, unless a step names its own.
    pub service_account: Option<String>,
    /// Whole-run deadline.
    pub timeout: Option<Duration>,
    /// Namespace the Workflow / PipelineRun is created in.
    pub run_namespace: Option<String>,
    /// Safety limits checked before acting.
    pub guards: Guards,
    /// Run every step with `--dry-run`.
    pub dry_run: bool,
    /// Keep looking for more matching policies after this one matched.
    pub continue_matching: bool,
    /// What to do when the run succeeds.
    pub on_success: OnSuccess,
    /// What to do when it fails.
    pub on_failure: OnFailure,
    /// What to do when the alert resolves while its run has not finished.
    pub on_resolved: OnResolved,
    /// Wait for a human's approval before the first changing step.
    pub approval: Option<crate::approval::Approval>,
    /// For policies in the older flat format: the condition the alert is generated from.
    pub flat: Option<FlatCondition>,
}

impl Policy {
    /// Whether a step acts on the owner of the policy's target (`target: owner`): heald
    /// then finds that owner when it decides, and the hold covers it.
    pub fn needs_owner(&self) -> bool {
        self.steps.iter().any(|s| s.target == StepTarget::Owner)
    }

    /// Whether the alert's labels satisfy every matcher (status not considered).
    pub fn matches_labels(&self, alert: &Alert) -> bool {
        self.matchers.matches(&alert.labels)
    }

    /// Whether this policy answers the alert: labels and status.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.status.accepts(alert.status) && self.matches_labels(alert)
    }
}

/// Where a target field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// Written in the policy.
    Literal(String),
    /// The whole value of this alert label (`"{{ labels.NAME }}"`).
    Label(String),
}

/// How the object to remediate is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// Resource type as heal addresses it (`deployment`, `pod`, `node`, `rollouts.argoproj.io`).
    pub kind: String,
    /// Namespace; `None` for cluster-scoped kinds such as nodes.
    pub namespace: Option<ValueSource>,
    /// Object name.
    pub name: ValueSource,
}

/// Which object a step acts on (`target:` of a step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StepTarget {
    /// The policy's target (no `target:` on the step).
    #[default]
    Policy,
    /// `target: owner`: the workload controlling the policy's target (heal `--owner`).
    Owner,
    /// A target of the step's own (`target: {kind, namespace, name}`).
    Own(TargetSpec),
}

/// One step of a policy: one heal invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique name within the policy, a DNS-1123 label.
    pub name: String,
    /// What heal does.
    pub action: Action,
    /// The object it acts on.
    pub target: StepTarget,
    /// Steps that must succeed first.
    pub after: Vec<String>,
    /// Engine-level retries on exit code 3.
    pub retries: Option<u32>,
    /// Time the action may take (heal's `--timeout`).
    pub timeout: Option<Duration>,
    /// Service account for this step only.
    pub service_account: Option<String>,
}

/// What a step that changes a workload does about Argo CD and Flux (`gitOps`,
/// `argocdTracking`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOpsStep {
    /// `gitOps: allow`: change objects a GitOps application reconciles (`--allow-gitops`).
    pub allow: bool,
    /// `argocdTracking`: how Argo CD tracks its resources (`--argocd-tracking`).
    pub argocd_tracking: Option<String>,
}

/// A heal action with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `heal scale`.
    Scale {
        /// `N`, `+N` or `-N`.
        replicas: String,
        /// Lower clamp.
        min: Option<u32>,
        /// Upper clamp.
        max: Option<u32>,
        /// `refuse`, `raise-min` or `ignore` (`--hpa`).
        hpa: Option<String>,
        /// Argo CD and Flux.
        gitops: GitOpsStep,
    },
    /// `heal restart` (rollout restart).
    Restart {
        /// Wait for the rollout to finish.
        wait: bool,
        /// Argo CD and Flux.
        gitops: GitOpsStep,
    },
    /// `heal delete`.
    Delete {
        /// Seconds the pod gets to terminate.
        grace_period: Option<u64>,
        /// UID precondition (may use placeholders).
        uid: Option<Template>,
        /// Refuse when fewer ready pods would remain.
        min_available: Option<u32>,
        /// Evict through the Eviction API, so a PodDisruptionBudget holds (`--evict`).
        evict: bool,
    },
    /// `heal patch`.
    Patch {
        /// `merge`, `json`, `strategic` or `apply`.
        patch_type: String,
        /// The patch; string leaves may use placeholders.
        patch: serde_json::Value,
        /// Server-side apply takes other managers' fields (`--force-conflicts`).
        force_conflicts: bool,
        /// Argo CD and Flux.
        gitops: GitOpsStep,
    },
    /// `heal cordon`.
    Cordon {
        /// `N` or `P%` (`--max-unschedulable`).
        max_unschedulable: Option<String>,
    },
    /// `heal uncordon`.
    Uncordon,
    /// `heal drain`.
    Drain {
        /// Refuse evictions that would leave fewer ready pods.
        min_available: Option<u32>,
        /// `N` or `P%` (`--max-unschedulable`).
        max_unschedulable: Option<String>,
    },
    /// `heal wait`.
    Wait {
        /// `rollout`, `condition=NAME` or `delete`.
        condition: String,
    },
    /// `heal verify`.
    Verify {
        /// PromQL query (may use placeholders); `None`: the alert's own expression, read
        /// from its `generatorURL`.
        query: Option<Template>,
        /// What the result must be (`empty`, ...).
        expect: String,
        /// Prometheus to ask, instead of the default.
        prometheus_url: Option<String>,
    },
}

impl Action {
    /// The heal subcommand.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Scale { .. } => "scale",
            Action::Restart { .. } => "restart",
            Action::Delete { .. } => "delete",
            Action::Patch { .. } => "patch",
            Action::Cordon { .. } => "cordon",
            Action::Uncordon => "uncordon",
            Action::Drain { .. } => "drain",
            Action::Wait { .. } => "wait",
            Action::Verify { .. } => "verify",
        }
    }

    /// Whether the action acts on the policy's target (all but `verify`).
    pub fn has_target(&self) -> bool {
        !matches!(self, Action::Verify { .. })
    }

    /// Whether the action may act on its target's owner (`target: owner`, heal `--owner`).
    pub fn takes_owner(&self) -> bool {
        matches!(
            self,
            Action::Scale { .. }
                | Action::Restart { .. }
                | Action::Patch { .. }
                | Action::Wait { .. }
        )
    }
}

/// A piece of a step argument: text, or a placeholder filled in from the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// `{{ target.kind }}`, `{{ target.namespace }}` or `{{ target.name }}`.
    Target(TargetField),
    /// `{{ labels.NAME }}`: the label's value, which must be name-like.
    Label(String),
}

/// A field of the resolved target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetField {
    /// Resource type.
    Kind,
    /// Namespace.
    Namespace,
    /// Name.
    Name,
}

/// A step argument with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

/// Safety limits of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guards {
    /// Minimum time between two runs for the same target.
    pub cooldown: Option<Duration>,
    /// Runs allowed at once per target (default 1).
    pub concurrency_per_target: u32,
    /// Unfinished runs of this policy allowed at once over all its targets, counted across
    /// every heald replica (`None`: no cap).
    pub max_in_flight: Option<u32>,
    /// Failures allowed within a window before the circuit opens.
    pub failure_budget: Option<FailureBudget>,
    /// Namespace patterns (`*`, `?`) the target must be in; empty allows all.
    pub allow_namespaces: Vec<String>,
    /// `KEY=VALUE` label the target must carry to opt in.
    pub require_label: Option<String>,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            cooldown: None,
            concurrency_per_target: 1,
            max_in_flight: None,
            failure_budget: None,
            allow_namespaces: Vec::new(),
            require_label: None,
        }
    }
}

/// How many failures within a window open the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBudget {
    /// Failures allowed.
    pub failures: u32,
    /// Sliding window they are counted in.
    pub window: Duration,
}

/// What heald does after a successful run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnSuccess {
    /// Silence the alert in Alertmanager for this long.
    pub silence: Option<Duration>,
}

/// What heald does after a failed run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnFailure {
    /// Notifiers to escalate to, by name.
    pub notify: Vec<String>,
}

/// What heald does when an alert resolves while the run it started has not finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnResolved {
    /// Nothing: the run goes on to its end (the default).
    #[default]
    Nothing,
    /// Cancel the run: Argo `spec.shutdown: Stop` (running steps finish, the exit handler
    /// reports), Tekton `spec.status: Cancelled`, the local engine starts no further step.
    Cancel,
}

/// Kinds of notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierKind {
    /// A generic webhook receiving a JSON document.
    Webhook,
    /// A Slack-compatible incoming webhook.
    Slack,
    /// PagerDuty Events API v2: `trigger` on failure, `resolve` on a later success.
    PagerDuty,
    /// Opsgenie Alert API: create on failure, close on a later success.
    Opsgenie,
    /// A Microsoft Teams incoming webhook (or Workflows webhook): an Adaptive Card.
    Teams,
}

impl NotifierKind {
    /// The `type:` of the notifier document, also the `kind` label of
    /// `heald_deliveries_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifierKind::Webhook => "webhook",
            NotifierKind::Slack => "slack",
            NotifierKind::PagerDuty => "pagerduty",
            NotifierKind::Opsgenie => "opsgenie",
            NotifierKind::Teams => "teams",
        }
    }

    /// Whether the vendor keeps an open alert heald can close when a later run of the same
    /// alert episode succeeds.
    pub fn resolves(self) -> bool {
        matches!(self, NotifierKind::PagerDuty | NotifierKind::Opsgenie)
    }
}

/// Where a notifier's URL comes from (it is usually a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the file.
    Literal(String),
    /// Read from this environment variable of heald.
    Env(String),
    /// Read from this file (e.g. a mounted Secret).
    File(PathBuf),
}

/// Where a notifier's key comes from (PagerDuty's routing key, Opsgenie's API key): never
/// written in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read from this environment variable of heald.
    Env(String),
    /// Read from this file (e.g. a mounted Secret), surrounding whitespace trimmed.
    File(PathBuf),
}

/// An Opsgenie responder: a team, user, escalation or schedule, by id, name or username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// `team`, `user`, `escalation` or `schedule`.
    pub kind: String,
    /// `id`, `name` or `username` (users only).
    pub by: &'static str,
    /// Its value.
    pub value: String,
}

/// What only some kinds of notifier take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorOptions {
    /// PagerDuty `payload.severity` of failures: `critical`, `error` (default), `warning`
    /// or `info` (stand-down notices are `warning`).
    pub severity: String,
    /// Opsgenie `priority` of failures: `P1` to `P5` (default `P3`; stand-down notices are
    /// one lower).
    pub priority: String,
    /// Opsgenie `responders`.
    pub responders: Vec<Responder>,
    /// Opsgenie `tags` beside heald's own.
    pub tags: Vec<String>,
    /// PagerDuty and Opsgenie: resolve (close) the episode's alert when a run of it
    /// succeeds (default true).
    pub send_resolved: bool,
}

impl Default for VendorOptions {
    fn default() -> VendorOptions {
        VendorOptions {
            severity: "error".into(),
            priority: "P3".into(),
            responders: Vec::new(),
            tags: Vec::new(),
            send_resolved: true,
        }
    }
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Opsgenie's API (US and other regions).
pub const OPSGENIE_API_URL: &str = "https://api.opsgenie.com";
/// Opsgenie's API for EU accounts.
pub const OPSGENIE_EU_API_URL: &str = "https://api.eu.opsgenie.com";

/// A named destination for escalations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    /// Name that `onFailure.notify` uses.
    pub name: String,
    /// Where it was defined.
    pub source: Source,
    /// Webhook, Slack, PagerDuty, Opsgenie or Teams.
    pub kind: NotifierKind,
    /// Where to send: the webhook's URL (webhook, Slack, Teams), PagerDuty's events
    /// endpoint, Opsgenie's API base URL.
    pub url: UrlSource,
    /// Slack channel override.
    pub channel: Option<String>,
    /// PagerDuty's routing key or Opsgenie's API key.
    pub key: Option<SecretSource>,
    /// What only PagerDuty or Opsgenie take.
    pub vendor: VendorOptions,
}

/// What [`decide`] concluded for one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The policy answers the alert: build a plan and run it.
    Matched,
    /// The alert is resolved and this (firing-only) policy would have matched: nothing to do.
    Resolved,
}

/// A policy an alert matched.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// Matched, or resolved.
    pub decision: Decision,
}

/// Which policies answer `alert`: policies are tried in order; the first whose matchers and
/// status filter accept the alert wins, and the search goes on only past policies that say
/// `continue: true`. When nothing matches and the alert is resolved, the first policy whose
/// labels match is returned with [`Decision::Resolved`]. An empty result is "no match".
pub fn decide<'a>(policies: &'a PolicySet, alert: &Alert) -> Vec<Match<'a>> {
    let mut out = Vec::new();
    for policy in &policies.policies {
        if policy.matches(alert) {
            out.push(Match {
                policy,
                decision: Decision::Matched,
            });
            if !policy.continue_matching {
                break;
            }
        }
    }
    if out.is_empty()
        && alert.status == Status::Resolved
        && let Some(policy) = policies.policies.iter().find(|p| p.matches_labels(alert))
    {
        out.push(Match {
            policy,
            decision: Decision::Resolved,
        });
    }
    out
}

#[cfg(test)]
mod tests;
