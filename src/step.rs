//! The typed heal step: an action, the object it acts on, and its options. heal's command
//! line parses into it, policies produce it, and it is executed by `actions` (and by heald's
//! local engine). Pure data: no I/O, no Kubernetes client, no command-line parser.

use std::path::PathBuf;
use std::time::Duration;

use crate::address::Address;
use crate::guard::LabelRequirement;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ----- The step -----

/// One heal step: what `heal ACTION ...` runs. heal's command line parses into it
/// (`cli::parse_step`), policies produce it (`policy::plan`), and [`Step::argv`] is the one
/// writer of its command line, which the renderers put into Workflows and PipelineRuns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The action and its own options.
    pub action: StepAction,
    /// The options every action shares.
    pub common: Common,
    /// `--timeout`: `None` leaves heal's default (60 s).
    pub timeout: Option<Duration>,
}

/// A step's action: one against the Kubernetes API, or a Prometheus check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepAction {
    /// scale, restart, delete, patch, cordon, uncordon, drain, wait.
    Kube(Action),
    /// verify.
    Verify(VerifyOptions),
}

/// Options of `heal verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyOptions {
    /// PromQL expression.
    pub query: String,
    /// Condition on its result.
    pub expect: Expect,
    /// Prometheus base URL; `None`: heal's default.
    pub prometheus_url: Option<String>,
    /// File holding a bearer token for Prometheus.
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA certificate for Prometheus's TLS.
    pub ca_file: Option<PathBuf>,
    /// Time between evaluations; `None`: heal's default (15 s).
    pub interval: Option<Duration>,
}

impl Step {
    /// The heal subcommand.
    pub fn name(&self) -> &'static str {
        match &self.action {
            StepAction::Kube(a) => a.name(),
            StepAction::Verify(_) => "verify",
        }
    }

    /// The step's command line, after the program name: the action, its target and
    /// namespace, `--owner`, the action's switches, its options, `--timeout`, the guards,
    /// `--dry-run`, `--correlation-id`. Options at their default are left out, so that
    /// parsing the line gives this step back.
    pub fn argv(&self) -> Vec<String> {
        let c = &self.common;
        let mut argv: Vec<String> = vec![self.name().to_string()];
        let mut flags: Vec<(&str, String)> = Vec::new();
        let switch = |argv: &mut Vec<String>, on: bool, name: &str| {
            if on {
                argv.push(name.to_string());
            }
        };
        let kube = match &self.action {
            StepAction::Kube(a) => Some(a),
            StepAction::Verify(_) => None,
        };
        if let Some(a) = kube {
            argv.push(address(a).to_string());
            if let Some(ns) = &c.namespace {
                argv.push("-n".into());
                argv.push(ns.clone());
            }
            if let Some(o) = c.owner.as_ref().filter(|_| a.takes_owner()) {
                argv.push("--owner".into());
                if let Some(e) = &o.expect {
                    flags.push(("--expect-owner", e.to_string()));
                }
            }
        }
        let gitops =
            |argv: &mut Vec<String>, flags: &mut Vec<(&str, String)>, g: &GitOpsOptions| {
                if g.allow {
                    argv.push("--allow-gitops".into());
                }
                if g.argocd_tracking != ArgoTracking::default() {
                    flags.push(("--argocd-tracking", g.argocd_tracking.as_str().into()));
                }
                if g.instance_label != DEFAULT_INSTANCE_LABEL {
                    flags.push(("--argocd-instance-label", g.instance_label.clone()));
                }
            };
        match &self.action {
            StepAction::Kube(Action::Scale(_, s)) => {
                flags.push(("--replicas", s.replicas.to_string()));
                if let Some(m) = s.min {
                    flags.push(("--min", m.to_string()));
                }
                if let Some(m) = s.max {
                    flags.push(("--max", m.to_string()));
                }
                if s.hpa != HpaMode::default() {
                    flags.push(("--hpa", s.hpa.as_str().into()));
                }
                gitops(&mut argv, &mut flags, &s.gitops);
            }
            StepAction::Kube(Action::Restart(_, s)) => {
                switch(&mut argv, s.wait, "--wait");
                gitops(&mut argv, &mut flags, &s.gitops);
            }
            StepAction::Kube(Action::Delete(_, s)) => {
                switch(&mut argv, s.evict, "--evict");
                if let Some(g) = s.grace_period {
                    flags.push(("--grace-period", g.to_string()));
                }
                if let Some(u) = &s.uid {
                    flags.push(("--uid", u.clone()));
                }
                if let Some(m) = s.min_available {
                    flags.push(("--min-available", m.to_string()));
                }
            }
            StepAction::Kube(Action::Patch(_, s)) => {
                flags.push(("--type", s.kind.as_str().into()));
                flags.push(("--patch", s.patch.to_string()));
                switch(&mut argv, s.force_conflicts, "--force-conflicts");
                gitops(&mut argv, &mut flags, &s.gitops);
            }
            StepAction::Kube(Action::Cordon(_, s)) => {
                if let Some(m) = s.max_unschedulable {
                    flags.push(("--max-unschedulable", m.to_string()));
                }
            }
            StepAction::Kube(Action::Uncordon(_, s)) => switch(&mut argv, s.force, "--force"),
            StepAction::Kube(Action::Drain(_, s)) => {
                switch(&mut argv, s.force, "--force");
                if let Some(m) = s.min_available {
                    flags.push(("--min-available", m.to_string()));
                }
                if let Some(m) = s.max_unschedulable {
                    flags.push(("--max-unschedulable", m.to_string()));
                }
            }
            StepAction::Kube(Action::Wait(_, s)) => flags.push(("--for", s.for_.to_string())),
            StepAction::Verify(v) => {
                flags.push(("--query", v.query.clone()));
                flags.push(("--expect", v.expect.to_string()));
                if let Some(u) = &v.prometheus_url {
                    flags.push(("--prometheus-url", u.clone()));
                }
                if let Some(f) = &v.bearer_token_file {
                    flags.push(("--bearer-token-file", f.display().to_string()));
                }
                if let Some(f) = &v.ca_file {
                    flags.push(("--ca-file", f.display().to_string()));
                }
                if let Some(i) = v.interval {
                    flags.push(("--interval", crate::duration::format(i)));
                }
            }
        }
        if let Some(t) = self.timeout {
            flags.push(("--timeout", crate::duration::format(t)));
        }
        if kube.is_some() {
            for p in &c.allow_namespaces {
                flags.push(("--allow-namespace", p.clone()));
            }
            if let Some(l) = &c.require_label {
                flags.push(("--require-label", format!("{}={}", l.key, l.value)));
            }
            switch(&mut argv, !c.events, "--no-event");
        }
        for (f, v) in flags {
            argv.push(f.to_string());
            argv.push(v);
        }
        switch(&mut argv, c.dry_run, "--dry-run");
        argv.push("--correlation-id".into());
        argv.push(c.correlation_id.clone());
        argv
    }
}

impl std::fmt::Display for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replicas::Absolute(n) => write!(f, "{n}"),
            Replicas::Relative(n) if *n >= 0 => write!(f, "+{n}"),
            Replicas::Relative(n) => write!(f, "{n}"),
        }
    }
}

impl std::fmt::Display for WaitFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFor::Rollout => f.write_str("rollout"),
            WaitFor::Delete => f.write_str("delete"),
            WaitFor::Condition { name, value } if value == "True" => write!(f, "condition={name}"),
            WaitFor::Condition { name, value } => write!(f, "condition={name}={value}"),
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Empty => f.write_str("empty"),
            Expect::NonEmpty => f.write_str("non-empty"),
            Expect::Compare(op, n) => {
                let op = match op {
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                    Cmp::Gt => ">",
                    Cmp::Ge => ">=",
                    Cmp::Eq => "==",
                    Cmp::Ne => "!=",
                };
                write!(f, "{op} {n}")
            }
        }
    }
}

impl PatchType {
    /// The name `--type` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchType::Merge => "merge",
            PatchType::Json => "json",
            PatchType::Strategic => "strategic",
            PatchType::Apply => "apply",
        }
    }
}

/// Options every action shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    /// Correlation id carried into logs, the result and Events.
    pub correlation_id: String,
    /// Server-side dry run (`dryRun=All`).
    pub dry_run: bool,
    /// Namespace override (`-n`).
    pub namespace: Option<String>,
    /// Allowed namespace patterns; empty allows all.
    pub allow_namespaces: Vec<String>,
    /// Opt-in label the target must carry.
    pub require_label: Option<LabelRequirement>,
    /// Record a Kubernetes Event on applied changes.
    pub events: bool,
    /// `--owner`: act on the workload controlling the addressed object (scale, restart,
    /// patch, wait).
    pub owner: Option<OwnerOptions>,
}

/// One action to perform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "args", rename_all = "kebab-case")]
pub enum Action {
    /// Set replicas through the scale subresource.
    Scale(Address, ScaleSpec),
    /// Rollout restart.
    Restart(Address, RestartSpec),
    /// Delete an object.
    Delete(Address, DeleteSpec),
    /// Patch an object.
    Patch(Address, PatchSpec),
    /// Mark a node unschedulable.
    Cordon(Address, CordonSpec),
    /// Mark a node schedulable.
    Uncordon(Address, UncordonSpec),
    /// Cordon then evict.
    Drain(Address, DrainSpec),
    /// Wait for a condition.
    Wait(Address, WaitSpec),
}

impl Action {
    /// Whether the action may act on the addressed object's owner (`--owner`).
    pub fn takes_owner(&self) -> bool {
        matches!(
            self,
            Action::Scale(..) | Action::Restart(..) | Action::Patch(..) | Action::Wait(..)
        )
    }

    /// The same action on another object.
    pub fn on(&self, addr: Address) -> Action {
        match self.clone() {
            Action::Scale(_, s) => Action::Scale(addr, s),
            Action::Restart(_, s) => Action::Restart(addr, s),
            Action::Delete(_, s) => Action::Delete(addr, s),
            Action::Patch(_, s) => Action::Patch(addr, s),
            Action::Cordon(_, s) => Action::Cordon(addr, s),
            Action::Uncordon(_, s) => Action::Uncordon(addr, s),
            Action::Drain(_, s) => Action::Drain(addr, s),
            Action::Wait(_, s) => Action::Wait(addr, s),
        }
    }

    /// The action's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Scale(..) => "scale",
            Action::Restart(..) => "restart",
            Action::Delete(..) => "delete",
            Action::Patch(..) => "patch",
            Action::Cordon(..) => "cordon",
            Action::Uncordon(..) => "uncordon",
            Action::Drain(..) => "drain",
            Action::Wait(..) => "wait",
        }
    }
}

/// The object an action addresses.
pub fn address(action: &Action) -> &Address {
    match action {
        Action::Scale(a, _)
        | Action::Restart(a, _)
        | Action::Delete(a, _)
        | Action::Patch(a, _)
        | Action::Cordon(a, _)
        | Action::Uncordon(a, _)
        | Action::Drain(a, _)
        | Action::Wait(a, _) => a,
    }
}

// ----- scale -----

/// `--replicas N`, `+N` or `-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// Set to exactly this many.
    Absolute(i64),
    /// Add (or with a negative number, remove) this many.
    Relative(i64),
}

impl std::str::FromStr for Replicas {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("invalid replicas {s:?}: expected a count (3) or a change (+1, -1)");
        if let Some(rest) = s.strip_prefix('+') {
            rest.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Replicas::Relative)
                .ok_or_else(bad)
        } else if let Some(rest) = s.strip_prefix('-') {
            rest.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| Replicas::Relative(-n))
                .ok_or_else(bad)
        } else {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Replicas::Absolute)
                .ok_or_else(bad)
        }
    }
}

/// Options of `heal scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSpec {
    /// Wanted replicas.
    pub replicas: Replicas,
    /// Lower clamp.
    pub min: Option<i64>,
    /// Upper clamp.
    pub max: Option<i64>,
    /// What to do about a HorizontalPodAutoscaler of the workload.
    pub hpa: HpaMode,
    /// What to do about a workload that Argo CD or Flux reconciles.
    pub gitops: GitOpsOptions,
}

// ----- restart -----

/// Options of `heal restart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartSpec {
    /// Follow the rollout until it completes.
    pub wait: bool,
    /// What to do about a workload that Argo CD or Flux reconciles.
    pub gitops: GitOpsOptions,
}

// ----- delete -----

/// Options of `heal delete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteSpec {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// Only delete the object with this UID.
    pub uid: Option<String>,
    /// Refuse when the owning workload would keep fewer ready replicas.
    pub min_available: Option<i64>,
    /// Evict the pod through the Eviction API instead of deleting it, so its
    /// PodDisruptionBudget holds.
    pub evict: bool,
}

// ----- patch -----

/// Patch strategies, as `kubectl patch --type` names them (plus `apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchType {
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902).
    Json,
    /// Strategic merge patch.
    Strategic,
    /// Server-side apply with field manager `heal`.
    Apply,
}

/// Options of `heal patch`: the patch, already parsed and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchSpec {
    /// Strategy.
    pub kind: PatchType,
    /// The patch document.
    pub patch: Value,
    /// Server-side apply: take the fields other field managers own (`force=true`).
    pub force_conflicts: bool,
    /// What to do about an object that Argo CD or Flux reconciles.
    pub gitops: GitOpsOptions,
}

impl PatchSpec {
    /// Parse a patch given as JSON or YAML text, checking its shape for the strategy.
    pub fn parse(kind: PatchType, text: &str) -> Result<PatchSpec, String> {
        let patch: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(json_err) => crate::yaml::from_str(text)
                .map_err(|_| format!("invalid patch: not valid JSON ({json_err}) nor YAML"))?,
        };
        match (kind, &patch) {
            (PatchType::Json, Value::Array(ops)) => {
                serde_json::from_value::<json_patch::Patch>(Value::Array(ops.clone()))
                    .map_err(|e| format!("invalid JSON patch: {e}"))?;
            }
            (PatchType::Json, _) => {
                return Err("invalid JSON patch: expected an array of operations".into());
            }
            (_, Value::Object(_)) => {}
            _ => {
                return Err(
                    format!("invalid {kind:?} patch: expected a JSON object").to_lowercase()
                );
            }
        }
        Ok(PatchSpec {
            kind,
            patch,
            force_conflicts: false,
            gitops: GitOpsOptions::default(),
        })
    }
}

// ----- cordon, uncordon, drain -----

/// `--max-unschedulable N|P%`: how many of the cluster's nodes may be unschedulable once
/// this one is cordoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnschedulable {
    /// At most this many nodes.
    Count(u64),
    /// At most this percentage of the nodes, rounded down.
    Percent(u64),
}

impl MaxUnschedulable {
    /// The limit for a cluster of `total` nodes.
    pub fn limit(self, total: u64) -> u64 {
        match self {
            MaxUnschedulable::Count(n) => n,
            MaxUnschedulable::Percent(p) => total * p / 100,
        }
    }
}

impl std::fmt::Display for MaxUnschedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxUnschedulable::Count(n) => write!(f, "{n}"),
            MaxUnschedulable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxUnschedulable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid value {s:?}: expected a number of nodes (2) or a percentage of them (25%)"
            )
        };
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: u64 = p.parse().map_err(|_| bad())?;
            if p > 100 {
                return Err(format!("invalid value {s:?}: a percentage is at most 100%"));
            }
            Ok(MaxUnschedulable::Percent(p))
        } else {
            t.parse().map(MaxUnschedulable::Count).map_err(|_| bad())
        }
    }
}

/// Options of `heal cordon`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CordonSpec {
    /// Refuse when cordoning would leave more nodes unschedulable than this.
    pub max_unschedulable: Option<MaxUnschedulable>,
}

/// Options of `heal uncordon`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UncordonSpec {
    /// Also uncordon a node that heal did not cordon.
    pub force: bool,
}

/// Options of `heal drain`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// Refuse when a workload would keep fewer ready replicas than this.
    pub min_available: Option<i64>,
    /// Also evict pods that no controller manages (they will not come back).
    pub force: bool,
    /// Refuse when cordoning would leave more nodes unschedulable than this.
    pub max_unschedulable: Option<MaxUnschedulable>,
}

// ----- wait -----

/// What to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// The rollout of a Deployment, StatefulSet or DaemonSet is complete.
    Rollout,
    /// `status.conditions[type=NAME].status == VALUE` (default `True`).
    Condition {
        /// Condition type.
        name: String,
        /// Wanted status.
        value: String,
    },
    /// The object no longer exists (or was replaced: its uid changed).
    Delete,
}

impl std::str::FromStr for WaitFor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rollout" => Ok(WaitFor::Rollout),
            "delete" => Ok(WaitFor::Delete),
            _ => match s.strip_prefix("condition=") {
                Some(rest) if !rest.is_empty() => {
                    let (name, value) = rest.split_once('=').unwrap_or((rest, "True"));
                    if name.is_empty() || value.is_empty() {
                        return Err(format!("invalid wait condition {s:?}"));
                    }
                    Ok(WaitFor::Condition {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                }
                _ => Err(format!(
                    "invalid --for {s:?}: expected rollout, delete, or condition=NAME[=VALUE]"
                )),
            },
        }
    }
}

/// Options of `heal wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitSpec {
    /// The condition.
    pub for_: WaitFor,
}

// ----- the other controllers (HPA, GitOps) -----

/// What `heal scale` does about a HorizontalPodAutoscaler that targets the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HpaMode {
    /// Refuse (exit 4): the autoscaler would undo the change.
    #[default]
    Refuse,
    /// Raise the autoscaler's `minReplicas` to the wanted count (clamped by its
    /// `maxReplicas`), then scale.
    RaiseMin,
    /// Scale anyway; autoscalers are not looked up.
    Ignore,
}

impl HpaMode {
    /// The value as written on the command line and in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            HpaMode::Refuse => "refuse",
            HpaMode::RaiseMin => "raise-min",
            HpaMode::Ignore => "ignore",
        }
    }
}

/// Argo CD's `application.resourceTrackingMethod` (its `argocd-cm` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgoTracking {
    /// The annotation `argocd.argoproj.io/tracking-id` (Argo CD 3's default).
    #[default]
    Annotation,
    /// The instance label (`app.kubernetes.io/instance`, or `application.instanceLabelKey`):
    /// Argo CD 2's default.
    Label,
    /// The annotation tracks; the label is informational only.
    #[value(name = "annotation+label")]
    #[serde(rename = "annotation+label")]
    AnnotationAndLabel,
}

impl ArgoTracking {
    /// The value as Argo CD writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgoTracking::Annotation => "annotation",
            ArgoTracking::Label => "label",
            ArgoTracking::AnnotationAndLabel => "annotation+label",
        }
    }
}

/// The label Argo CD tracks by with the `label` method, unless configured otherwise.
pub const DEFAULT_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// How heal treats objects that a GitOps controller reconciles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitOpsOptions {
    /// Change them anyway (the result and Event then say who may revert it).
    pub allow: bool,
    /// How Argo CD tracks the resources it manages.
    pub argocd_tracking: ArgoTracking,
    /// The label Argo CD tracks by when `argocd_tracking` is `label`.
    pub instance_label: String,
}

impl Default for GitOpsOptions {
    fn default() -> Self {
        GitOpsOptions {
            allow: false,
            argocd_tracking: ArgoTracking::Annotation,
            instance_label: DEFAULT_INSTANCE_LABEL.into(),
        }
    }
}

// ----- --owner -----

/// What `--owner` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerOptions {
    /// `--expect-owner KIND/NAME`: refuse (exit 4) when the owner found is another (it
    /// changed since heald decided).
    pub expect: Option<Address>,
}

// ----- verify -----

/// What the query result must look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// No series (an alert expression that stopped firing).
    Empty,
    /// At least one series.
    NonEmpty,
    /// At least one sample, and every sample compares true against the number.
    Compare(Cmp, f64),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl std::str::FromStr for Expect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t {
            "empty" => return Ok(Expect::Empty),
            "non-empty" | "nonempty" | "present" => return Ok(Expect::NonEmpty),
            _ => {}
        }
        let ops = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ];
        for (tok, op) in ops {
            if let Some(rest) = t.strip_prefix(tok) {
                let n: f64 = rest.trim().parse().map_err(|_| {
                    format!("invalid --expect {s:?}: {:?} is not a number", rest.trim())
                })?;
                return Ok(Expect::Compare(op, n));
            }
        }
        Err(format!(
            "invalid --expect {s:?}: use empty, non-empty, or a comparison such as '< 0.85'"
        ))
    }
}

/// Read a value by the names `values` gives it (as the command line and policies write
/// them).
fn by_name<T: Copy>(what: &str, s: &str, values: &[(&str, T)]) -> Result<T, String> {
    values
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
            format!("invalid {what} {s:?}: expected one of {}", names.join(", "))
        })
}

impl std::str::FromStr for HpaMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            "hpa mode",
            s,
            &[
                ("refuse", HpaMode::Refuse),
                ("raise-min", HpaMode::RaiseMin),
                ("ignore", HpaMode::Ignore),
            ],
        )
    }
}

impl std::str::FromStr for ArgoTracking {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            "Argo CD tracking method",
            s,
            &[
                ("annotation", ArgoTracking::Annotation),
                ("label", ArgoTracking::Label),
                ("annotation+label", ArgoTracking::AnnotationAndLabel),
            ],
        )
    }
}

impl std::str::FromStr for PatchType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            "patch type",
            s,
            &[
                ("merge", PatchType::Merge),
                ("json", PatchType::Json),
                ("strategic", PatchType::Strategic),
                ("apply", PatchType::Apply),
            ],
        )
    }
}

impl Serialize for Replicas {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Replicas, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for MaxUnschedulable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MaxUnschedulable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MaxUnschedulable, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for WaitFor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WaitFor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WaitFor, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Expect, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
