//! The typed heal step: an action, the object it acts on, and its options. heal's command
//! line parses into it, policies produce it, and it is executed by `actions` (and by heald's
//! local engine). Pure data: no I/O, no Kubernetes client, no command-line parser.

use crate::address::Address;
use crate::guard::LabelRequirement;
use serde_json::Value;

// ----- The step -----

/// Options every action shares.
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Default)]
pub struct RestartSpec {
    /// Follow the rollout until it completes.
    pub wait: bool,
    /// What to do about a workload that Argo CD or Flux reconciles.
    pub gitops: GitOpsOptions,
}

// ----- delete -----

/// Options of `heal delete`.
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Default)]
pub struct CordonSpec {
    /// Refuse when cordoning would leave more nodes unschedulable than this.
    pub max_unschedulable: Option<MaxUnschedulable>,
}

/// Options of `heal uncordon`.
#[derive(Debug, Clone, Default)]
pub struct UncordonSpec {
    /// Also uncordon a node that heal did not cordon.
    pub force: bool,
}

/// Options of `heal drain`.
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone)]
pub struct WaitSpec {
    /// The condition.
    pub for_: WaitFor,
}

// ----- the other controllers (HPA, GitOps) -----

/// What `heal scale` does about a HorizontalPodAutoscaler that targets the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ArgoTracking {
    /// The annotation `argocd.argoproj.io/tracking-id` (Argo CD 3's default).
    #[default]
    Annotation,
    /// The instance label (`app.kubernetes.io/instance`, or `application.instanceLabelKey`):
    /// Argo CD 2's default.
    Label,
    /// The annotation tracks; the label is informational only.
    #[value(name = "annotation+label")]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
