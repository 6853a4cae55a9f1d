//! The data the templates see: the plan's values plus everything derived from them (labels,
//! lock name, each step's full argument list, engine-specific timeouts), so templates only
//! lay values out and never compute or concatenate them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::names::{label_value, mutex_name};
use super::{Engine, RenderOptions};
use crate::plan::{Plan, PlanStep};

/// Where each Argo step writes its result, read back as the output parameter `result`.
pub const ARGO_RESULT_PATH: &str = "/tmp/heal-result.json";
/// Tekton result (of the heal Task) that holds the step's result.
pub const TEKTON_RESULT: &str = "outcome";
/// Argo's variable for the workflow's final status, resolved in the exit handler.
pub const ARGO_STATUS_VAR: &str = "{{workflow.status}}";
/// Tekton's variable for the aggregate status of the tasks, resolved in `finally`.
pub const TEKTON_STATUS_VAR: &str = "$(tasks.status)";
/// The report step's Secret volume (Argo) and workspace (Tekton) holding heald's token.
pub const REPORT_TOKEN_VOLUME: &str = "heal-report-token";
/// The key of the token in the Secret, and the file name it is mounted as.
pub const REPORT_TOKEN_KEY: &str = "token";
/// Where the report step mounts the token Secret, read-only.
pub const REPORT_TOKEN_DIR: &str = "/var/run/secrets/heal/report";
/// The file `heal report` reads the token from.
pub const REPORT_TOKEN_FILE: &str = "/var/run/secrets/heal/report/token";
/// The variable that tells `heal report` where the token file is (`--token-file`).
pub const REPORT_TOKEN_ENV: &str = "HEAL_REPORT_TOKEN_FILE";

#[derive(Debug, Serialize)]
pub struct Ctx<'a> {
    engine: &'static str,
    run_name: &'a str,
    run_namespace: &'a str,
    policy: &'a str,
    fingerprint: &'a str,
    alertname: &'a str,
    starts_at: &'a str,
    correlation_id: &'a str,
    image: &'a str,
    service_account: &'a str,
    deadline_seconds: u64,
    dry_run: bool,
    report_url: Option<&'a str>,
    target: Target<'a>,
    labels: BTreeMap<String, String>,
    pod_labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    mutex: String,
    result_path: &'static str,
    result_name: &'static str,
    ttl: Ttl,
    pod_gc: PodGc,
    retry: Retry,
    steps: Vec<Step<'a>>,
    step_service_accounts: Vec<StepServiceAccount<'a>>,
    report: Report<'a>,
    /// Where the heal Task declares the token workspace (embedded Task spec), whether or
    /// not this run binds it.
    report_token_mount: TokenMount,
    tekton: Tekton,
    /// The approval gate: Argo's suspend task, Tekton's pending status.
    approval: Option<Gate>,
}

/// The approval gate as the templates see it.
#[derive(Debug, Serialize)]
struct Gate {
    /// The Argo DAG task and suspend template.
    task: &'static str,
    /// Tekton's `spec.status` until the run is approved.
    tekton_status: &'static str,
}

/// Tekton's `spec.status` of a PipelineRun created pending.
pub const TEKTON_PENDING: &str = "PipelineRunPending";

#[derive(Debug, Serialize)]
struct TokenMount {
    volume: &'static str,
    dir: &'static str,
}

#[derive(Debug, Serialize)]
struct Target<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct Ttl {
    after_completion: u32,
    after_failure: u32,
}

#[derive(Debug, Serialize)]
struct PodGc {
    strategy: &'static str,
    delete_delay: String,
}

#[derive(Debug, Serialize)]
struct Retry {
    expression: &'static str,
    backoff: String,
    factor: u32,
    cap: String,
    max_duration: String,
}

#[derive(Debug, Serialize)]
struct Step<'a> {
    name: &'a str,
    template: String,
    action: &'a str,
    args: Vec<String>,
    after: &'a [String],
    depends: String,
    retries: u32,
    timeout_seconds: u64,
    timeout: String,
    service_account: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct StepServiceAccount<'a> {
    step: &'a str,
    service_account: &'a str,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    name: &'static str,
    template: &'static str,
    args: Vec<String>,
    retries: u32,
    timeout_seconds: u64,
    timeout: String,
    /// `None`: the report step mounts no Secret.
    token: Option<ReportToken<'a>>,
}

/// The Secret with heald's bearer token, as the report step mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportToken<'a> {
    /// The Secret's name.
    pub secret: &'a str,
    /// The token's key in the Secret (and its file name in `dir`).
    pub key: &'static str,
    /// Argo volume / Tekton workspace name.
    pub volume: &'static str,
    /// Mount path, read-only.
    pub dir: &'static str,
    /// The token file: `dir/key`.
    pub file: &'static str,
    /// The variable naming the file.
    pub env: &'static str,
}

/// The token Secret the report step mounts: only when the plan reports to heald (has a
/// report URL) and the options name a Secret.
pub fn report_token<'a>(plan: &Plan, opts: &'a RenderOptions) -> Option<ReportToken<'a>> {
    plan.report_url.as_ref()?;
    Some(ReportToken {
        secret: opts.report_token_secret.as_deref()?,
        key: REPORT_TOKEN_KEY,
        volume: REPORT_TOKEN_VOLUME,
        dir: REPORT_TOKEN_DIR,
        file: REPORT_TOKEN_FILE,
        env: REPORT_TOKEN_ENV,
    })
}

#[derive(Debug, Serialize)]
struct Tekton {
    /// Whether `taskRunSpecs` has an entry: a step's own service account, or the report's
    /// token variable.
    task_run_specs: bool,
    results: Vec<TektonResult>,
    task_name: String,
    embed_task: bool,
    timeouts: TektonTimeouts,
}

#[derive(Debug, Serialize)]
struct TektonResult {
    name: String,
    description: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct TektonTimeouts {
    pipeline: String,
    tasks: String,
    #[serde(rename = "finally")]
    finally_: String,
}

/// Argo's retry expression: retry only when heal exited 3 (transient failure).
pub const ARGO_RETRY_EXPRESSION: &str = "asInt(lastRetry.exitCode) == 3";

/// Seconds as a Go/Argo/Tekton duration string.
pub fn secs(n: u64) -> String {
    format!("{n}s")
}

/// Argo template name of a step.
pub fn step_template(step: &str) -> String {
    format!("step-{step}")
}

/// Argo `depends` expression for a step: every dependency must have succeeded.
pub fn depends_expr(after: &[String]) -> String {
    after
        .iter()
        .map(|d| format!("{d}.Succeeded"))
        .collect::<Vec<_>>()
        .join(" && ")
}

fn has_flag(argv: &[String], flag: &str) -> bool {
    argv.iter()
        .any(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
}

/// The arguments a step runs with: the plan's argv, then the correlation id and `--dry-run`
/// when the plan asks for it (unless argv already has them), then for Argo the result file.
/// Tekton's heal Task appends `--result-file $(results.outcome.path)` itself.
pub fn step_args(plan: &Plan, step: &PlanStep, engine: Engine) -> Vec<String> {
    let mut args = step.argv().clone();
    if !has_flag(&args, "--correlation-id") {
        args.push("--correlation-id".into());
        args.push(plan.correlation_id.clone());
    }
    if plan.dry_run && !has_flag(&args, "--dry-run") {
        args.push("--dry-run".into());
    }
    if engine == Engine::Argo {
        args.push("--result-file".into());
        args.push(ARGO_RESULT_PATH.into());
    }
    args
}

/// The arguments of the `heal report` step that runs when the run ends, whatever happened.
pub fn report_args(plan: &Plan, engine: Engine) -> Vec<String> {
    let status = match engine {
        Engine::Argo => ARGO_STATUS_VAR,
        _ => TEKTON_STATUS_VAR,
    };
    let mut args: Vec<String> = vec![
        "report".into(),
        "--engine".into(),
        engine.as_str().into(),
        "--run-name".into(),
        plan.run_name.clone(),
        "-n".into(),
        plan.run_namespace.clone(),
        "--status".into(),
        status.into(),
        "--correlation-id".into(),
        plan.correlation_id.clone(),
    ];
    if let Some(url) = &plan.report_url {
        args.push("--report-url".into());
        args.push(url.clone());
    }
    args
}

/// Labels on every rendered object: valid label values only, raw values go in annotations.
pub fn labels(plan: &Plan, engine: Engine) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".into(), "heald".into()),
        ("app.kubernetes.io/name".into(), "heal".into()),
        ("heal.dev/policy".into(), label_value(&plan.policy)),
        (
            "heal.dev/fingerprint".into(),
            label_value(&plan.fingerprint),
        ),
        ("heal.dev/alertname".into(), label_value(&plan.alertname)),
        (
            "heal.dev/correlation-id".into(),
            plan.correlation_id.clone(),
        ),
        ("heal.dev/engine".into(), engine.as_str().into()),
        ("heal.dev/dry-run".into(), plan.dry_run.to_string()),
    ])
}

/// Annotations on every rendered object: the alert's values as they came.
pub fn annotations(plan: &Plan) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("heal.dev/policy".into(), plan.policy.clone()),
        ("heal.dev/fingerprint".into(), plan.fingerprint.clone()),
        ("heal.dev/alertname".into(), plan.alertname.clone()),
        ("heal.dev/starts-at".into(), plan.starts_at.clone()),
        (
            "heal.dev/target".into(),
            format!("{}/{}", plan.target.kind, plan.target.name),
        ),
    ]);
    if !plan.target.namespace.is_empty() {
        a.insert(
            "heal.dev/target-namespace".into(),
            plan.target.namespace.clone(),
        );
    }
    if let Some(gate) = &plan.approval {
        a.extend(crate::approval::initial_annotations(gate));
    }
    a
}

pub fn build<'a>(plan: &'a Plan, engine: Engine, opts: &'a RenderOptions) -> Ctx<'a> {
    let labels = labels(plan, engine);
    let pod_labels = labels
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "app.kubernetes.io/managed-by" | "heal.dev/policy" | "heal.dev/correlation-id"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let steps = plan
        .steps
        .iter()
        .map(|s| Step {
            name: &s.name,
            template: step_template(&s.name),
            action: &s.action,
            args: step_args(plan, s, engine),
            after: &s.after,
            depends: step_depends(plan, s),
            retries: s.retries,
            timeout_seconds: s.timeout_seconds,
            timeout: secs(s.timeout_seconds),
            service_account: s.service_account.as_deref(),
        })
        .collect();
    let step_service_accounts: Vec<StepServiceAccount<'_>> = plan
        .steps
        .iter()
        .filter_map(|s| {
            s.service_account.as_deref().map(|sa| StepServiceAccount {
                step: &s.name,
                service_account: sa,
            })
        })
        .collect();
    let report_secs = opts.report_timeout_seconds;
    let token = report_token(plan, opts);
    let task_run_specs = !step_service_accounts.is_empty() || token.is_some();
    Ctx {
        engine: engine.as_str(),
        run_name: &plan.run_name,
        run_namespace: &plan.run_namespace,
        policy: &plan.policy,
        fingerprint: &plan.fingerprint,
        alertname: &plan.alertname,
        starts_at: &plan.starts_at,
        correlation_id: &plan.correlation_id,
        image: &plan.image,
        service_account: &plan.service_account,
        deadline_seconds: plan.run_deadline_seconds(),
        dry_run: plan.dry_run,
        report_url: plan.report_url.as_deref(),
        target: Target {
            kind: &plan.target.kind,
            namespace: &plan.target.namespace,
            name: &plan.target.name,
        },
        labels,
        pod_labels,
        annotations: annotations(plan),
        mutex: mutex_name(&plan.target.namespace, &plan.target.kind, &plan.target.name),
        result_path: ARGO_RESULT_PATH,
        result_name: TEKTON_RESULT,
        ttl: Ttl {
            after_completion: opts.ttl_after_completion_seconds,
            after_failure: opts.ttl_after_failure_seconds,
        },
        pod_gc: PodGc {
            strategy: opts.pod_gc_strategy.as_str(),
            delete_delay: secs(opts.pod_gc_delete_delay_seconds),
        },
        retry: Retry {
            expression: ARGO_RETRY_EXPRESSION,
            backoff: secs(opts.retry_backoff_seconds),
            factor: opts.retry_backoff_factor,
            cap: secs(opts.retry_backoff_cap_seconds),
            max_duration: secs(plan.deadline_seconds),
        },
        steps,
        step_service_accounts,
        report: Report {
            name: super::checks::REPORT_TASK,
            template: "report",
            args: report_args(plan, engine),
            retries: opts.report_retries,
            timeout_seconds: report_secs,
            timeout: secs(report_secs),
            token,
        },
        report_token_mount: TokenMount {
            volume: REPORT_TOKEN_VOLUME,
            dir: REPORT_TOKEN_DIR,
        },
        tekton: Tekton {
            task_run_specs,
            results: plan
                .steps
                .iter()
                .map(|s| TektonResult {
                    name: s.name.clone(),
                    description: format!("heal result of step {}", s.name),
                    value: format!("$(tasks.{}.results.{TEKTON_RESULT})", s.name),
                })
                .collect(),
            task_name: opts.tekton_task_name.clone(),
            embed_task: opts.tekton_embed_task,
            timeouts: TektonTimeouts {
                pipeline: secs(plan.deadline_seconds + report_secs),
                tasks: secs(plan.deadline_seconds),
                finally_: secs(report_secs),
            },
        },
        approval: plan.approval.map(|_| Gate {
            task: crate::approval::GATE_TASK,
            tekton_status: TEKTON_PENDING,
        }),
    }
}

/// The names an Argo step depends on: the plan's `after`, and the approval gate for a
/// step that changes something when the plan has one.
pub fn argo_dependencies(plan: &Plan, step: &PlanStep) -> Vec<String> {
    let mut deps = step.after.clone();
    if plan.approval.is_some() && crate::approval::changes(&step.action) {
        deps.insert(0, crate::approval::GATE_TASK.to_string());
    }
    deps
}

fn step_depends(plan: &Plan, step: &PlanStep) -> String {
    depends_expr(&argo_dependencies(plan, step))
}
