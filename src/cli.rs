//! Command-line interface of `heal`: clap definitions (every flag also reads a `HEAL_*`
//! environment variable), validation of raw arguments into [`Action`]s, and dispatch.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tokio::time::Instant;

use crate::actions::{
    self, Action, ArgoTracking, Common, CordonSpec, DeleteSpec, DrainSpec, GitOpsOptions, HpaMode,
    MaxUnschedulable, PatchSpec, PatchType, Replicas, RestartSpec, ScaleSpec, UncordonSpec,
    WaitFor, WaitSpec,
};
use crate::address::Address;
use crate::guard::LabelRequirement;
use crate::kube_api::{ConnectOptions, Kube};
use crate::outcome::{Exit, HealResult, Outcome, Target};
use crate::step::{Step, StepAction, VerifyOptions};

const ABOUT: &str = "heal: one safe, idempotent remediation step against the Kubernetes API.";

const LONG_ABOUT: &str = "heal: one safe, idempotent remediation step against the Kubernetes API.

Runs as a step of an Argo Workflow or Tekton Task (or from a laptop with a kubeconfig),
performs one action, and reports it: one JSON result (-o json, --result-file) and an exit
code the workflow engine acts on:
  0  done, or already in the wanted state     1  failed, retrying will not help
  2  usage or configuration error             3  transient failure, retry the step
  4  refused by a guard, escalate";

const EXAMPLES: &str = "Examples:
  heal scale deploy/web -n shop --replicas +1 --max 10
  heal restart deployment/api -n shop --wait --timeout 5m
  heal delete pod/web-7d4f9 -n shop --uid 1f2e... --min-available 2
  heal patch deploy/web -n shop --type merge --patch '{\"spec\":{\"replicas\":3}}'
  heal drain node/worker-1 --min-available 1 --timeout 10m
  heal script steps.txt --dry-run -o json";

/// Output format of the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// One line for humans.
    #[default]
    Text,
    /// The result JSON.
    Json,
}

pub use crate::logging::LogFormat;

/// Flags every action takes.
#[derive(Debug, Clone, Args, Default)]
pub struct CommonArgs {
    /// Namespace of the target [default: the kubeconfig context's, or the pod's own in cluster]
    #[arg(short = 'n', long, env = "HEAL_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Server-side dry run (dryRun=All): the API server validates, nothing changes
    #[arg(long, env = "HEAL_DRY_RUN")]
    pub dry_run: bool,
    /// Correlation id for logs, the result and Events [default: a new UUID]
    #[arg(long, env = "HEAL_CORRELATION_ID", value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Also write the result JSON to this file (Argo output parameter / Tekton result)
    #[arg(long, env = "HEAL_RESULT_FILE", value_name = "PATH")]
    pub result_file: Option<PathBuf>,
    /// Give up (exit 3) when the action, including retries and waiting, takes longer [default: 60s]
    #[arg(long, env = "HEAL_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// kubeconfig file [default: $KUBECONFIG, ~/.kube/config, then in-cluster]
    #[arg(long, env = "HEAL_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use
    #[arg(long, env = "HEAL_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Result format on stdout
    #[arg(short = 'o', long, env = "HEAL_OUTPUT", value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Refuse (exit 4) targets outside these namespaces (shell globs, repeat or comma-separate)
    #[arg(
        long = "allow-namespace",
        env = "HEAL_ALLOW_NAMESPACE",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub allow_namespace: Vec<String>,
    /// Refuse (exit 4) targets that do not carry this label (opt-in)
    #[arg(long, env = "HEAL_REQUIRE_LABEL", value_name = "KEY=VALUE")]
    pub require_label: Option<LabelRequirement>,
    /// Do not record a Kubernetes Event on the target
    #[arg(long, env = "HEAL_NO_EVENT")]
    pub no_event: bool,
    /// Log format on stderr [default: json, or plain on a terminal]
    #[arg(long, env = "HEAL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// What heal does about objects that Argo CD or Flux reconciles from Git (scale, restart,
/// patch).
#[derive(Debug, Clone, Args, Default)]
pub struct GitOpsArgs {
    /// Change an object that Argo CD or Flux manages anyway (it may revert the change);
    /// without it such an object is refused (exit 4)
    #[arg(long, env = "HEAL_ALLOW_GITOPS")]
    pub allow_gitops: bool,
    /// How Argo CD tracks its resources (its application.resourceTrackingMethod): with
    /// `label`, the instance label also marks an object as Argo CD's
    #[arg(
        long,
        env = "HEAL_ARGOCD_TRACKING",
        value_enum,
        value_name = "METHOD",
        default_value = "annotation"
    )]
    pub argocd_tracking: ArgoTracking,
    /// The label Argo CD tracks by with --argocd-tracking label (its application.instanceLabelKey)
    #[arg(
        long,
        env = "HEAL_ARGOCD_INSTANCE_LABEL",
        value_name = "KEY",
        default_value = "app.kubernetes.io/instance"
    )]
    pub argocd_instance_label: String,
}

impl GitOpsArgs {
    fn options(&self) -> Result<GitOpsOptions, String> {
        let key = self.argocd_instance_label.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!(
                "invalid --argocd-instance-label {:?}: expected a label key such as app.kubernetes.io/instance",
                self.argocd_instance_label
            ));
        }
        Ok(GitOpsOptions {
            allow: self.allow_gitops,
            argocd_tracking: self.argocd_tracking,
            instance_label: key.to_string(),
        })
    }
}

/// `--owner`: act on the workload that controls the addressed object (scale, restart,
/// patch, wait).
#[derive(Debug, Clone, Args, Default)]
pub struct OwnerArgs {
    /// Act on the workload controlling the addressed object, found through its
    /// ownerReferences (controller: true): pod -> replicaset -> deployment, pod ->
    /// statefulset, ... The result names both
    #[arg(long, env = "HEAL_OWNER")]
    pub owner: bool,
    /// With --owner: refuse (exit 4) unless the owner found is this one (KIND/NAME)
    #[arg(
        long,
        env = "HEAL_EXPECT_OWNER",
        value_name = "KIND/NAME",
        requires = "owner"
    )]
    pub expect_owner: Option<Address>,
}

impl OwnerArgs {
    fn options(&self) -> Option<actions::OwnerOptions> {
        self.owner.then(|| actions::OwnerOptions {
            expect: self.expect_owner.clone(),
        })
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
}

fn non_negative(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        Ok(n) => Err(format!("{n} is negative; expected 0 or more")),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// `heal`.
#[derive(Debug, Parser)]
#[command(name = "heal", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// The action.
    #[command(subcommand)]
    pub command: Command,
}

/// The actions.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set replicas through the scale subresource (absolute, or relative +N/-N), clamped
    #[command(
        after_help = "Example:\n  heal scale deploy/web -n shop --replicas +1 --min 2 --max 10"
    )]
    Scale(ScaleArgs),
    /// Rollout restart of a Deployment, StatefulSet or DaemonSet
    #[command(after_help = "Example:\n  heal restart deploy/web -n shop --wait --timeout 5m")]
    Restart(RestartArgs),
    /// Delete an object, guarded by a UID precondition and a minimum of ready replicas
    #[command(
        after_help = "Example:\n  heal delete pod/web-7d4f9 -n shop --uid 3c1f... --min-available 2 --grace-period 30"
    )]
    Delete(DeleteArgs),
    /// Patch an object: merge, json, strategic, or server-side apply (field manager heal)
    #[command(
        after_help = "Example:\n  heal patch deploy/web -n shop --type strategic \\\n    --patch '{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\",\"resources\":{\"limits\":{\"memory\":\"1Gi\"}}}]}}}}'"
    )]
    Patch(PatchArgs),
    /// Mark a node unschedulable
    #[command(after_help = "Example:\n  heal cordon node/worker-1 --max-unschedulable 25%")]
    Cordon(CordonArgs),
    /// Mark a node schedulable again (only one heal cordoned, unless --force)
    #[command(after_help = "Example:\n  heal uncordon node/worker-1")]
    Uncordon(UncordonArgs),
    /// Cordon a node, then evict its pods through the Eviction API (PodDisruptionBudgets hold)
    #[command(after_help = "Example:\n  heal drain node/worker-1 --min-available 1 --timeout 10m")]
    Drain(DrainArgs),
    /// Wait until a rollout completes, a condition holds, or an object is deleted
    #[command(
        after_help = "Example:\n  heal wait deploy/web -n shop --for rollout --timeout 5m\n  heal wait pod/web-7d4f9 -n shop --for delete"
    )]
    Wait(WaitArgs),
    /// Poll a PromQL query until it returns no series (or meets a comparison)
    #[command(
        after_help = "Example:\n  heal verify --prometheus-url http://prometheus:9090 \\\n    --query 'rate(container_cpu_usage_seconds_total{pod=~\"web-.*\"}[5m]) > 0.85' --expect empty --timeout 10m"
    )]
    Verify(VerifyArgs),
    /// Send a run's outcome to heald (or, when heald is unreachable, to Alertmanager)
    #[command(
        after_help = "Example (an Argo exit handler):\n  heal report --engine argo --run-name heal-web-1a2b -n heal --status '{{workflow.status}}' \\\n    --correlation-id $ID --report-url http://heald.heal-system:8080/v1/reports"
    )]
    Report(ReportArgs),
    /// Show the Workflow, PipelineRun or local plan an alert would start (offline)
    #[command(
        after_help = "Example:\n  heal render --policies examples/policies --alert examples/alerts/kube-pod-crash-looping.json --engine argo"
    )]
    Render(crate::offline::RenderArgs),
    /// Check, test and export healing policies (offline)
    Policy {
        /// What to do with the policies.
        #[command(subcommand)]
        cmd: crate::offline::PolicyCommand,
    },
    /// Run heal commands from a file, one per line, stopping at the first failure
    #[command(
        after_help = "Example (an Argo script step: command: [heal, script], source: the list):\n  # steps.txt\n  scale deploy/web -n shop --replicas +1\n  wait deploy/web -n shop --for rollout\n\n  heal script steps.txt --correlation-id $ID"
    )]
    Script(ScriptArgs),
    /// Approve a run that waits at its approval gate (with your kubeconfig identity)
    #[command(
        after_help = "Example:\n  heal approve heal-statefulset-restart-approved-ade2cdf0d3 -n heal-system"
    )]
    Approve(crate::cli_approve::ApproveArgs),
    /// Reject a run that waits at its approval gate: it ends rejected and is escalated
    #[command(
        after_help = "Example:\n  heal reject heal-statefulset-restart-approved-ade2cdf0d3 -n heal-system --reason 'failing over by hand'"
    )]
    Reject(crate::cli_approve::RejectArgs),
}

/// `heal scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// What to scale: deploy/NAME, sts/NAME, rs/NAME, or a custom resource with a scale subresource
    #[arg(value_name = "KIND/NAME")]
    pub target: Address,
    /// Replicas: N, or +N / -N relative to the current count
    #[arg(
        long,
        env = "HEAL_REPLICAS",
        value_name = "N|+N|-N",
        allow_hyphen_values = true
    )]
    pub replicas: Replicas,
    /// Never go below this many replicas
    #[arg(long, env = "HEAL_MIN", value_name = "N", value_parser = non_negative, allow_negative_numbers = true)]
    pub min: Option<i64>,
    /// Never go above this many replicas
    #[arg(long, env = "HEAL_MAX", value_name = "N", value_parser = non_negative, allow_negative_numbers = true)]
    pub max: Option<i64>,
    /// A HorizontalPodAutoscaler targets the workload: refuse (exit 4), raise its
    /// minReplicas to the wanted count (clamped by its maxReplicas), or ignore it
    #[arg(
        long,
        env = "HEAL_HPA",
        value_enum,
        value_name = "MODE",
        default_value = "refuse"
    )]
    pub hpa: HpaMode,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub gitops: GitOpsArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub owner: OwnerArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// deploy/NAME, sts/NAME or ds/NAME
    #[arg(value_name = "KIND/NAME")]
    pub target: Address,
    /// Follow the rollout until it completes (bounded by --timeout)
    #[arg(long, env = "HEAL_WAIT")]
    pub wait: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub gitops: GitOpsArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub owner: OwnerArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// What to delete, typically pod/NAME
    #[arg(value_name = "KIND/NAME")]
    pub target: Address,
    /// Seconds the object gets to terminate gracefully
    #[arg(long, env = "HEAL_GRACE_PERIOD", value_name = "SECONDS", value_parser = non_negative, allow_negative_numbers = true)]
    pub grace_period: Option<i64>,
    /// Only delete the object with this UID (a replacement that reused the name is left alone)
    #[arg(long, env = "HEAL_UID", value_name = "UID")]
    pub uid: Option<String>,
    /// Refuse (exit 4) when the pod's workload would keep fewer ready replicas
    #[arg(long, env = "HEAL_MIN_AVAILABLE", value_name = "N", value_parser = non_negative, allow_negative_numbers = true)]
    pub min_available: Option<i64>,
    /// Evict the pod through the Eviction API, so its PodDisruptionBudget holds (a budget
    /// that blocks until --timeout is exit 3)
    #[arg(long, env = "HEAL_EVICT")]
    pub evict: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal patch`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["patch", "patch_file"])))]
pub struct PatchArgs {
    /// What to patch
    #[arg(value_name = "KIND/NAME")]
    pub target: Address,
    /// Patch strategy
    #[arg(
        long = "type",
        env = "HEAL_PATCH_TYPE",
        value_enum,
        default_value = "strategic"
    )]
    pub patch_type: PatchType,
    /// The patch, as JSON or YAML
    #[arg(short = 'p', long, env = "HEAL_PATCH", value_name = "PATCH")]
    pub patch: Option<String>,
    /// Read the patch (JSON or YAML) from this file
    #[arg(long, env = "HEAL_PATCH_FILE", value_name = "PATH")]
    pub patch_file: Option<PathBuf>,
    /// With --type apply: take fields other field managers own (force=true), as
    /// kubectl apply --server-side --force-conflicts; without it a conflict is exit 1
    #[arg(long, env = "HEAL_FORCE_CONFLICTS")]
    pub force_conflicts: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub gitops: GitOpsArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub owner: OwnerArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal cordon`.
#[derive(Debug, Args)]
pub struct CordonArgs {
    /// node/NAME (or just NAME)
    #[arg(value_name = "node/NAME", value_parser = parse_node)]
    pub target: Address,
    /// Refuse (exit 4) when cordoning would leave more than N (or P% of the) nodes
    /// unschedulable, counting those already cordoned
    #[arg(
        long,
        env = "HEAL_MAX_UNSCHEDULABLE",
        value_name = "N|P%",
        allow_negative_numbers = true
    )]
    pub max_unschedulable: Option<MaxUnschedulable>,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal uncordon`.
#[derive(Debug, Args)]
pub struct UncordonArgs {
    /// node/NAME (or just NAME)
    #[arg(value_name = "node/NAME", value_parser = parse_node)]
    pub target: Address,
    /// Also uncordon a node that heal did not cordon (one without heal.dev/cordoned-by)
    #[arg(long, env = "HEAL_FORCE")]
    pub force: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// node/NAME (or just NAME)
    #[arg(value_name = "node/NAME", value_parser = parse_node)]
    pub target: Address,
    /// Refuse (exit 4), before changing anything, when a workload would keep fewer ready replicas
    #[arg(long, env = "HEAL_MIN_AVAILABLE", value_name = "N", value_parser = non_negative, allow_negative_numbers = true)]
    pub min_available: Option<i64>,
    /// Also evict pods that no controller manages (they will not be recreated)
    #[arg(long, env = "HEAL_FORCE")]
    pub force: bool,
    /// Refuse (exit 4) when cordoning would leave more than N (or P% of the) nodes
    /// unschedulable, counting those already cordoned
    #[arg(
        long,
        env = "HEAL_MAX_UNSCHEDULABLE",
        value_name = "N|P%",
        allow_negative_numbers = true
    )]
    pub max_unschedulable: Option<MaxUnschedulable>,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// What to wait on
    #[arg(value_name = "KIND/NAME")]
    pub target: Address,
    /// rollout, delete, or condition=NAME[=VALUE]
    #[arg(long = "for", env = "HEAL_FOR", value_name = "CONDITION")]
    pub for_: WaitFor,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub owner: OwnerArgs,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// PromQL expression to evaluate (instant query)
    #[arg(long, env = "HEAL_QUERY", value_name = "PROMQL")]
    pub query: String,
    /// empty (no series), non-empty, or a comparison every sample must meet: '< 0.85', '>= 3'
    #[arg(
        long,
        env = "HEAL_EXPECT",
        value_name = "EXPECTATION",
        default_value = "empty"
    )]
    pub expect: crate::prometheus_http::Expect,
    /// Prometheus base URL [default: http://prometheus-operated.monitoring.svc:9090]
    #[arg(long, env = "HEAL_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// File holding a bearer token for Prometheus
    #[arg(long, env = "HEAL_PROMETHEUS_TOKEN_FILE", value_name = "PATH")]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA certificate for Prometheus's TLS
    #[arg(long, env = "HEAL_PROMETHEUS_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Time between evaluations [default: 15s]
    #[arg(long, env = "HEAL_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Engine that ran the remediation: argo, tekton or local
    #[arg(long, env = "HEAL_ENGINE", value_name = "ENGINE")]
    pub engine: String,
    /// Name of the Workflow / PipelineRun
    #[arg(long, env = "HEAL_RUN_NAME", value_name = "NAME")]
    pub run_name: String,
    /// The engine's status: Argo {{workflow.status}}, Tekton $(tasks.status)
    #[arg(long, env = "HEAL_STATUS", value_name = "STATUS")]
    pub status: String,
    /// heald's reports endpoint
    #[arg(long, env = "HEAL_REPORT_URL", value_name = "URL")]
    pub report_url: Option<String>,
    /// File holding the bearer token heald expects
    #[arg(long, env = "HEAL_REPORT_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Alertmanager base URL, told directly when heald cannot be reached
    #[arg(long, env = "HEAL_ALERTMANAGER_URL", value_name = "URL")]
    pub alertmanager_url: Option<String>,
    /// Step results to include (JSON)
    #[arg(long, env = "HEAL_RESULTS", value_name = "JSON")]
    pub results: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// `heal script`.
#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// File with one heal command per line (without the leading `heal`); `-` reads stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub common: CommonArgs,
}

/// Offline commands take none of the common flags.
static NO_COMMON: std::sync::LazyLock<CommonArgs> = std::sync::LazyLock::new(CommonArgs::default);

fn parse_node(s: &str) -> Result<Address, String> {
    let full = if s.contains('/') {
        s.to_string()
    } else {
        format!("node/{s}")
    };
    full.parse::<Address>().map_err(|e| e.to_string())
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Scale(_) => "scale",
            Command::Restart(_) => "restart",
            Command::Delete(_) => "delete",
            Command::Patch(_) => "patch",
            Command::Cordon(_) => "cordon",
            Command::Uncordon(_) => "uncordon",
            Command::Drain(_) => "drain",
            Command::Wait(_) => "wait",
            Command::Script(_) => "script",
            Command::Verify(_) => "verify",
            Command::Report(_) => "report",
            Command::Render(_) => "render",
            Command::Policy { .. } => "policy",
            Command::Approve(_) => "approve",
            Command::Reject(_) => "reject",
        }
    }

    /// `--owner` and `--expect-owner`, on the actions that take them.
    fn owner(&self) -> Option<actions::OwnerOptions> {
        match self {
            Command::Scale(a) => a.owner.options(),
            Command::Restart(a) => a.owner.options(),
            Command::Patch(a) => a.owner.options(),
            Command::Wait(a) => a.owner.options(),
            _ => None,
        }
    }

    fn common(&self) -> &CommonArgs {
        match self {
            Command::Scale(a) => &a.common,
            Command::Restart(a) => &a.common,
            Command::Delete(a) => &a.common,
            Command::Patch(a) => &a.common,
            Command::Cordon(a) => &a.common,
            Command::Uncordon(a) => &a.common,
            Command::Drain(a) => &a.common,
            Command::Wait(a) => &a.common,
            Command::Script(a) => &a.common,
            Command::Verify(a) => &a.common,
            Command::Report(a) => &a.common,
            Command::Render(_)
            | Command::Policy { .. }
            | Command::Approve(_)
            | Command::Reject(_) => &NO_COMMON,
        }
    }

    /// The typed step this command runs (the heal actions and verify).
    fn step(&self) -> Result<Step, String> {
        let args = self.common();
        let mut common = common_options(args);
        common.owner = self.owner();
        let action = match self {
            Command::Verify(v) => StepAction::Verify(verify_options(v)?),
            other => StepAction::Kube(other.action()?),
        };
        Ok(Step {
            action,
            common,
            timeout: args.timeout,
        })
    }

    /// Turn raw arguments into an action, reading files and checking values.
    fn action(&self) -> Result<Action, String> {
        Ok(match self {
            Command::Scale(a) => {
                if let (Some(min), Some(max)) = (a.min, a.max)
                    && min > max
                {
                    return Err(format!("--min {min} is greater than --max {max}"));
                }
                Action::Scale(
                    a.target.clone(),
                    ScaleSpec {
                        replicas: a.replicas,
                        min: a.min,
                        max: a.max,
                        hpa: a.hpa,
                        gitops: a.gitops.options()?,
                    },
                )
            }
            Command::Restart(a) => Action::Restart(
                a.target.clone(),
                RestartSpec {
                    wait: a.wait,
                    gitops: a.gitops.options()?,
                },
            ),
            Command::Delete(a) => Action::Delete(
                a.target.clone(),
                DeleteSpec {
                    grace_period: a.grace_period,
                    uid: a.uid.clone(),
                    min_available: a.min_available,
                    evict: a.evict,
                },
            ),
            Command::Patch(a) => {
                let text = match (&a.patch, &a.patch_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(f)) => std::fs::read_to_string(f)
                        .map_err(|e| format!("cannot read patch file {}: {e}", f.display()))?,
                    (None, None) => return Err("give --patch or --patch-file".into()),
                };
                if a.force_conflicts && a.patch_type != PatchType::Apply {
                    return Err(
                        "--force-conflicts applies to server-side apply only (--type apply)".into(),
                    );
                }
                let mut spec = PatchSpec::parse(a.patch_type, &text)?;
                spec.force_conflicts = a.force_conflicts;
                spec.gitops = a.gitops.options()?;
                Action::Patch(a.target.clone(), spec)
            }
            Command::Cordon(a) => Action::Cordon(
                a.target.clone(),
                CordonSpec {
                    max_unschedulable: a.max_unschedulable,
                },
            ),
            Command::Uncordon(a) => {
                Action::Uncordon(a.target.clone(), UncordonSpec { force: a.force })
            }
            Command::Drain(a) => Action::Drain(
                a.target.clone(),
                DrainSpec {
                    min_available: a.min_available,
                    force: a.force,
                    max_unschedulable: a.max_unschedulable,
                },
            ),
            Command::Wait(a) => Action::Wait(
                a.target.clone(),
                WaitSpec {
                    for_: a.for_.clone(),
                },
            ),
            Command::Script(_)
            | Command::Verify(_)
            | Command::Report(_)
            | Command::Render(_)
            | Command::Policy { .. }
            | Command::Approve(_)
            | Command::Reject(_) => {
                return Err(format!("{} is not a Kubernetes action", self.name()));
            }
        })
    }
}

/// Parse `heal` arguments (without the program name), as the renderer and `heal script`
/// need: a usage error comes back as one line.
fn parse_argv(argv: &[String]) -> Result<Command, String> {
    thread_local! {
        // Building the parser costs far more than parsing; renderers validate many argvs.
        static PARSER: std::cell::RefCell<clap::Command> = std::cell::RefCell::new(Cli::command());
    }
    let args = std::iter::once("heal".to_string()).chain(argv.iter().cloned());
    let matches = PARSER
        .with(|p| p.borrow_mut().try_get_matches_from_mut(args))
        .map_err(|e| crate::logging::usage_error_line(&e))?;
    Cli::from_arg_matches(&matches)
        .map(|c| c.command)
        .map_err(|e| crate::logging::usage_error_line(&e))
}

/// Parse a heal step's command line (without the program name) into the typed step:
/// what [`Step::argv`] writes reads back as the same step.
pub fn parse_step(argv: &[String]) -> Result<Step, String> {
    parse_argv(argv)?.step()
}

/// Where to read more after a usage error: `heal ACTION --help` when the arguments name a
/// known action, else `heal --help`.
fn help_hint(args: &[OsString]) -> String {
    let command = Cli::command();
    let sub = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'))
        .filter(|a| command.find_subcommand(a).is_some());
    match sub {
        Some(s) => format!("see 'heal {s} --help'"),
        None => "see 'heal --help'".into(),
    }
}

/// Check that `argv` (without the leading `heal`) is a valid `heal` action invocation,
/// for example `["scale", "deploy/web", "--replicas", "3"]`. Used by the renderer to
/// prove every rendered step runs a real heal command.
pub fn validate_action_argv(argv: &[String]) -> Result<(), String> {
    if argv.is_empty() {
        return Err("empty heal command".into());
    }
    let command = parse_argv(argv)?;
    match &command {
        Command::Script(_) => Ok(()),
        Command::Verify(_) => Ok(()),
        Command::Report(_) => Ok(()),
        Command::Render(_) | Command::Policy { .. } | Command::Approve(_) | Command::Reject(_) => {
            Err(format!("{} is not a remediation step", command.name()))
        }
        _ => command.action().map(|_| ()),
    }
}

/// Run one heal command in-process, without printing or writing a result file: the
/// library entry point for tests and for heald's local engine. A usage error (exit 2) comes
/// back as `Err` with the one-line message.
pub async fn execute(argv: &[String]) -> Result<(HealResult, Exit), String> {
    dispatch(&parse_argv(argv)?, None).await
}

/// Run one heal command in-process on an existing connection (heald's local engine): the
/// command's `--kubeconfig`/`--context` are ignored, its `--timeout` bounds the step (never
/// past `kube`'s own deadline). A usage error comes back as `Err`.
pub async fn execute_with(kube: &Kube, argv: &[String]) -> Result<(HealResult, Exit), String> {
    dispatch(&parse_argv(argv)?, Some(kube)).await
}

fn common_options(c: &CommonArgs) -> Common {
    Common {
        correlation_id: c
            .correlation_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        dry_run: c.dry_run,
        namespace: c.namespace.clone(),
        allow_namespaces: c.allow_namespace.clone(),
        require_label: c.require_label.clone(),
        events: !c.no_event,
        owner: None,
    }
}

/// The parser of one step action alone: the action's arguments under a `heal` that knows
/// no other subcommand, or `None` for a name that is not a step action.
fn one_action_parser(name: &str) -> Option<clap::Command> {
    fn sub<A: Args>(name: &'static str) -> clap::Command {
        A::augment_args(clap::Command::new(name))
    }
    let sub = match name {
        "scale" => sub::<ScaleArgs>("scale"),
        "restart" => sub::<RestartArgs>("restart"),
        "delete" => sub::<DeleteArgs>("delete"),
        "patch" => sub::<PatchArgs>("patch"),
        "cordon" => sub::<CordonArgs>("cordon"),
        "uncordon" => sub::<UncordonArgs>("uncordon"),
        "drain" => sub::<DrainArgs>("drain"),
        "wait" => sub::<WaitArgs>("wait"),
        "verify" => sub::<VerifyArgs>("verify"),
        "report" => sub::<ReportArgs>("report"),
        _ => return None,
    };
    Some(clap::Command::new("heal").subcommand(sub))
}

/// Parse heal's command line. Building the whole command tree (every action and its
/// arguments) costs more than the parse itself, and a step runs one action: a step
/// action's arguments are parsed by a parser of that action alone, and anything else
/// (help, a version, an unknown name, any error) by the whole tree, so every message and
/// every answer is the one the whole tree gives.
fn parse_cli(args: &[OsString]) -> Result<Cli, clap::Error> {
    let asks_for_help = |a: &OsString| {
        matches!(
            a.to_str(),
            Some("-h" | "--help" | "-V" | "--version" | "help")
        )
    };
    if let Some(parser) = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(one_action_parser)
        && !args[1..].iter().any(asks_for_help)
        && let Ok(matches) = parser.try_get_matches_from(args)
        && let Ok(cli) = Cli::from_arg_matches(&matches)
    {
        return Ok(cli);
    }
    Cli::try_parse_from(args)
}

/// Run `heal` with these arguments (including the program name) and return the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let cli = match parse_cli(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return Exit::Usage.code();
            }
            eprintln!(
                "heal: {} ({})",
                crate::logging::usage_error_line(&e),
                help_hint(&args)
            );
            return Exit::Usage.code();
        }
    };
    match &cli.command {
        Command::Render(args) => {
            return crate::offline::run_render(args, &mut std::io::stdout().lock());
        }
        Command::Policy { cmd } => {
            return crate::offline::run_policy(cmd, &mut std::io::stdout().lock());
        }
        Command::Approve(a) => return crate::cli_approve::main(&a.decide, None),
        Command::Reject(a) => return crate::cli_approve::main(&a.decide, Some(&a.reason)),
        _ => {}
    }
    let common = cli.command.common().clone();
    crate::logging::init(common.log_format, "HEAL_LOG");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("heal: cannot start the async runtime: {e}");
            return Exit::Failed.code();
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> i32 {
    let common_args = command.common().clone();
    match dispatch(&command, None).await {
        Ok((result, exit)) => emit(&common_args, &result, exit),
        Err(msg) => {
            eprintln!("heal: {msg}");
            Exit::Usage.code()
        }
    }
}

/// Run a parsed command: on `kube` when given (heald's local engine), else on a connection
/// of its own from its flags. `Err` is a usage error.
async fn dispatch(command: &Command, kube: Option<&Kube>) -> Result<(HealResult, Exit), String> {
    let common_args = command.common().clone();
    let mut common = common_options(&common_args);
    common.owner = command.owner();
    let deadline = Instant::now() + common_args.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = kube.map_or(deadline, |k| k.deadline().min(deadline));
    let timeout = || deadline.saturating_duration_since(Instant::now());
    Ok(match command {
        // On a connection already open, a step runs as heald's local engine runs it.
        Command::Scale(_)
        | Command::Restart(_)
        | Command::Delete(_)
        | Command::Patch(_)
        | Command::Cordon(_)
        | Command::Uncordon(_)
        | Command::Drain(_)
        | Command::Wait(_)
        | Command::Verify(_)
            if kube.is_some() =>
        {
            let kube = kube.expect("checked");
            actions::execute_step(kube, &command.step()?).await
        }
        Command::Script(s) if kube.is_none() => run_script(s, &common).await,
        Command::Verify(v) => {
            let spec = verify_spec(v)?;
            crate::prometheus_http::verify(&spec, &common.correlation_id, timeout()).await
        }
        Command::Report(r) => {
            let spec = report_spec(r, &common)?;
            crate::report_http::report(&spec, timeout()).await
        }
        Command::Script(_)
        | Command::Render(_)
        | Command::Policy { .. }
        | Command::Approve(_)
        | Command::Reject(_) => {
            return Err(format!("{} cannot run as a step here", command.name()));
        }
        other => {
            let action = other.action()?;
            match kube {
                Some(k) => actions::run(&k.with_deadline(deadline), &common, &action).await,
                None => run_action(&common_args, &common, &action).await,
            }
        }
    })
}

fn read_secret(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub use crate::actions::DEFAULT_TIMEOUT;

fn verify_options(v: &VerifyArgs) -> Result<VerifyOptions, String> {
    if v.query.trim().is_empty() {
        return Err("--query must not be empty".into());
    }
    if let Some(u) = &v.prometheus_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(format!(
            "invalid --prometheus-url {u:?}: expected http:// or https://"
        ));
    }
    Ok(VerifyOptions {
        query: v.query.clone(),
        expect: v.expect,
        prometheus_url: v.prometheus_url.clone(),
        bearer_token_file: v.bearer_token_file.clone(),
        ca_file: v.ca_file.clone(),
        interval: v.interval,
    })
}

fn verify_spec(v: &VerifyArgs) -> Result<crate::prometheus_http::VerifySpec, String> {
    crate::prometheus_http::VerifySpec::from_options(&verify_options(v)?)
}

fn report_spec(r: &ReportArgs, common: &Common) -> Result<crate::report_http::ReportSpec, String> {
    let results = match &r.results {
        None => None,
        Some(s) => {
            Some(serde_json::from_str(s).map_err(|e| format!("invalid --results JSON: {e}"))?)
        }
    };
    let token = match (&r.token_file, std::env::var("HEAL_REPORT_TOKEN")) {
        // The report must go out even when the token Secret is missing: heald may refuse it
        // (then Alertmanager is told), but the outcome is never silently dropped.
        (Some(p), _) => match read_secret(p) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "no report token; reporting without one");
                None
            }
        },
        (None, Ok(t)) if !t.is_empty() => Some(t),
        _ => None,
    };
    Ok(crate::report_http::ReportSpec {
        report: crate::report_http::Report {
            engine: r.engine.clone(),
            run_name: r.run_name.clone(),
            namespace: common.namespace.clone().unwrap_or_else(|| "default".into()),
            outcome: crate::report_http::normalise(&r.status).to_string(),
            status: r.status.clone(),
            correlation_id: common.correlation_id.clone(),
            results,
        },
        report_url: r.report_url.clone(),
        token,
        alertmanager_url: r.alertmanager_url.clone(),
    })
}

async fn run_action(args: &CommonArgs, common: &Common, action: &Action) -> (HealResult, Exit) {
    let deadline = Instant::now() + args.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if let Err(e) = actions::preflight(action, common) {
        let outcome = if matches!(e, actions::ActionError::Refused(_)) {
            Outcome::Refused
        } else {
            Outcome::Failed
        };
        let mut r = failed_result(common, action.name(), e.to_string(), outcome);
        r.target = actions::initial_target(action);
        return (r, e.exit());
    }
    let opts = ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    match Kube::connect(&opts, deadline).await {
        Ok(kube) => actions::run(&kube, common, action).await,
        Err(e) => {
            let mut r = failed_result(common, action.name(), e.to_string(), Outcome::Failed);
            r.target = actions::initial_target(action);
            (r, e.exit())
        }
    }
}

fn failed_result(common: &Common, action: &str, message: String, outcome: Outcome) -> HealResult {
    HealResult {
        correlation_id: common.correlation_id.clone(),
        action: action.to_string(),
        target: Target::default(),
        addressed: None,
        outcome,
        before: serde_json::Value::Null,
        after: serde_json::Value::Null,
        message,
        started_at: jiff::Timestamp::now().to_string(),
        duration_ms: 0,
    }
}

/// Print and write the result; returns the exit code. The result goes to stdout (as JSON
/// with `-o json`, else as one line when it succeeded); a failure or refusal is also one
/// line on stderr, `heal: MESSAGE` (`heal: refused: MESSAGE`).
fn emit(args: &CommonArgs, result: &HealResult, exit: Exit) -> i32 {
    let json = serde_json::to_string(result).unwrap_or_else(|_| "{}".into());
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not an error worth a message.
    let _ = match (args.output, exit) {
        (OutputFormat::Json, _) => writeln!(stdout, "{json}"),
        (OutputFormat::Text, Exit::Ok) => {
            writeln!(stdout, "{}: {}", result.outcome.as_str(), result.message)
        }
        (OutputFormat::Text, _) => Ok(()),
    };
    if exit != Exit::Ok {
        match result.outcome {
            Outcome::Refused => eprintln!("heal: refused: {}", result.message),
            _ => eprintln!("heal: {}", result.message),
        }
    }
    if let Some(path) = &args.result_file
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        eprintln!("heal: cannot write result file {}: {e}", path.display());
        if exit == Exit::Ok {
            return Exit::Usage.code();
        }
    }
    exit.code()
}

/// Parse a script into argument vectors: one command per line, `#` comments, blank lines
/// skipped, shell-style quoting, a leading `heal` tolerated.
pub fn parse_script(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = shell_words::split(trimmed).map_err(|e| format!("line {}: {e}", i + 1))?;
        if let Some(hash) = words.iter().position(|w| w.starts_with('#')) {
            words.truncate(hash);
        }
        if words.first().map(String::as_str) == Some("heal") {
            words.remove(0);
        }
        if !words.is_empty() {
            out.push((i + 1, words));
        }
    }
    Ok(out)
}

async fn run_script(args: &ScriptArgs, common: &Common) -> (HealResult, Exit) {
    let started = Instant::now();
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => Ok(s),
            Err(e) => Err(e),
        }
    } else {
        std::fs::read_to_string(&args.file)
    };
    let usage = |msg: String| {
        (
            failed_result(common, "script", msg, Outcome::Failed),
            Exit::Usage,
        )
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read script {}: {e}", args.file.display())),
    };
    let lines = match parse_script(&text) {
        Ok(l) => l,
        Err(e) => return usage(format!("{}: {e}", args.file.display())),
    };
    // Check every line before running any, so a typo on line 3 never leaves lines 1-2 applied.
    let mut planned = Vec::new();
    for (n, argv) in &lines {
        let parsed = parse_argv(argv).and_then(|cmd| {
            let action = cmd.action()?;
            Ok((cmd, action))
        });
        match parsed {
            Ok((cmd, action)) => planned.push((*n, cmd, action)),
            Err(e) => return usage(format!("{} line {n}: {e}", args.file.display())),
        }
    }
    let mut steps = Vec::new();
    let mut applied = false;
    for (n, cmd, action) in planned {
        let mut line_args = cmd.common().clone();
        inherit(&mut line_args, &args.common);
        let mut line_common = common_options(&line_args);
        line_common.correlation_id = line_args
            .correlation_id
            .clone()
            .unwrap_or_else(|| common.correlation_id.clone());
        let (result, exit) = run_action(&line_args, &line_common, &action).await;
        applied |= matches!(result.outcome, Outcome::Applied | Outcome::DryRun);
        let outcome = result.outcome;
        let message = format!("line {n} ({}): {}", action.name(), result.message);
        steps.push(json!({"line": n, "result": result}));
        if exit != Exit::Ok {
            let mut r = failed_result(common, "script", message, outcome);
            r.after = json!({"steps": steps});
            r.duration_ms = started.elapsed().as_millis() as u64;
            return (r, exit);
        }
    }
    let outcome = if applied {
        if common.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Applied
        }
    } else {
        Outcome::Noop
    };
    let mut r = failed_result(
        common,
        "script",
        format!("ran {} command(s)", steps.len()),
        outcome,
    );
    r.after = json!({"steps": steps});
    r.duration_ms = started.elapsed().as_millis() as u64;
    (r, Exit::Ok)
}

/// Lines of a script inherit the script's connection and safety flags unless they set
/// their own.
fn inherit(line: &mut CommonArgs, script: &CommonArgs) {
    line.dry_run |= script.dry_run;
    line.no_event |= script.no_event;
    if line.namespace.is_none() {
        line.namespace = script.namespace.clone();
    }
    if line.kubeconfig.is_none() {
        line.kubeconfig = script.kubeconfig.clone();
    }
    if line.context.is_none() {
        line.context = script.context.clone();
    }
    if line.allow_namespace.is_empty() {
        line.allow_namespace = script.allow_namespace.clone();
    }
    if line.require_label.is_none() {
        line.require_label = script.require_label.clone();
    }
    if line.correlation_id.is_none() {
        line.correlation_id = script.correlation_id.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        shell_words::split(s).unwrap()
    }

    #[test]
    fn one_action_s_parser_reads_every_command_line_as_the_whole_tree_does() {
        let lines = [
            "scale deploy/web -n shop --replicas +1 --min 2 --max 10",
            "scale pod/web-1 -n shop --owner --expect-owner deployment/web --replicas 4 -o json",
            "scale deploy/web --replicas 3 --hpa raise-min --dry-run --correlation-id c-1",
            "restart deploy/web -n shop --wait --timeout 5m",
            "delete pod/web-7d4f9 -n shop --uid 3c1f --min-available 2 --grace-period 30 --evict",
            "patch deploy/web -n shop --type merge --patch '{\"metadata\":{}}'",
            "patch deploy/web --type apply --patch '{}' --force-conflicts",
            "cordon node/worker-1 --max-unschedulable 25%",
            "uncordon node/worker-1 --force",
            "drain node/worker-1 --min-available 1 --timeout 10m",
            "wait deploy/web -n shop --for rollout --timeout 5m",
            "verify --prometheus-url http://p:9090 --query up --expect empty --timeout 10m",
            "report --engine argo --run-name r -n heal --status Succeeded --correlation-id c",
            // Wrong ones: the fast parser must refuse them too (the whole tree then words it).
            "scale deploy/web",
            "scale deploy/web --replicas",
            "scale deploy/web --replicas 2 --type merge",
            "scale deploy/web --replicas 2 extra",
            "scale --replicas 2",
            "patch deploy/web --type foo --patch '{}'",
            "delete pod/x --grace-period -1",
            "wait deploy/web --for nothing",
            "scale deploy/web --replicas 2 -o xml",
            "scale deploy/web --replicas 2 --expect-owner deployment/web",
        ];
        for line in lines {
            let args: Vec<OsString> = std::iter::once("heal".to_string())
                .chain(argv(line))
                .map(OsString::from)
                .collect();
            let full = Cli::try_parse_from(&args).map(|c| format!("{:?}", c.command));
            let parser = one_action_parser(args[1].to_str().unwrap()).expect("a step action");
            let fast = parser
                .try_get_matches_from(&args)
                .ok()
                .and_then(|m| Cli::from_arg_matches(&m).ok())
                .map(|c| format!("{:?}", c.command));
            match (&full, &fast) {
                (Ok(f), Some(q)) => assert_eq!(f, q, "{line}"),
                (Err(_), None) => {}
                _ => panic!("{line}: the whole tree says {full:?}, one action's parser {fast:?}"),
            }
            assert_eq!(
                parse_cli(&args)
                    .map(|c| format!("{:?}", c.command))
                    .map_err(|e| e.to_string()),
                full.map_err(|e| e.to_string()),
                "{line}"
            );
        }
    }

    #[test]
    fn valid_commands_pass_validation() {
        for s in [
            "scale deploy/web --replicas 3",
            "scale deploy/web --replicas -1 --min 1",
            "restart sts/db -n data --wait",
            "delete pod/p --uid abc --min-available 1",
            "patch deploy/web --type merge --patch '{\"spec\":{}}'",
            "cordon worker-1",
            "drain node/worker-1 --timeout 10m",
            "wait deploy/web --for rollout",
        ] {
            assert_eq!(validate_action_argv(&argv(s)), Ok(()), "{s}");
        }
    }

    #[test]
    fn bad_commands_fail_validation_with_one_line() {
        for (s, needle) in [
            ("frob deploy/web", "unrecognized subcommand"),
            ("scale web --replicas 3", "malformed resource address"),
            ("scale deploy/web --replicas 3 --min -2", "negative"),
            ("patch deploy/web --type json --patch '{'", "invalid"),
            (
                "scale deploy/web --replicas 3 --min 5 --max 2",
                "greater than",
            ),
            ("wait deploy/web --for ready", "invalid --for"),
        ] {
            let err = validate_action_argv(&argv(s)).unwrap_err();
            assert!(err.contains(needle), "{s}: {err}");
            assert!(!err.contains('\n'), "{s}: {err}");
        }
    }

    #[test]
    fn scripts_skip_comments_and_keep_line_numbers() {
        let lines = parse_script("# fix web\n\nscale deploy/web --replicas +1 # more\nheal wait deploy/web --for rollout\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, 3);
        assert_eq!(lines[0].1, argv("scale deploy/web --replicas +1"));
        assert_eq!(lines[1].1[0], "wait");
    }
}
