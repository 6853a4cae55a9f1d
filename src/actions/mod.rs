//! Remediation actions against the Kubernetes API (I/O). Each action reads the target,
//! checks the guards, changes it at most once (idempotently), and describes what it did;
//! [`run`] turns that into the one [`HealResult`] every action reports, records a
//! Kubernetes Event for applied changes, and logs one line per phase.

pub mod approve;
mod controllers;
mod delete;
mod node;
mod owner;
mod patch;
mod restart;
mod scale;
mod wait;

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

pub use crate::step::{
    Action, ArgoTracking, Common, CordonSpec, DeleteSpec, DrainSpec, GitOpsOptions, HpaMode,
    MaxUnschedulable, OwnerOptions, PatchSpec, PatchType, Replicas, RestartSpec, ScaleSpec,
    UncordonSpec, WaitFor, WaitSpec, address,
};

use crate::address::{Address, ResourceType};
use crate::guard;
use crate::kube_api::{ApiError, JSON, Kube, Sent, enc};
use crate::outcome::{Exit, HealResult, Outcome, Target};

/// Why an action did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// The invocation cannot work as given (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Failed, and retrying will not help (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Failed after in-process retries; the engine may retry (exit 3).
    #[error("{0}")]
    Transient(String),
    /// A guard refused (exit 4).
    #[error("refused: {0}")]
    Refused(String),
}

impl ActionError {
    /// The exit code.
    pub fn exit(&self) -> Exit {
        match self {
            ActionError::Usage(_) => Exit::Usage,
            ActionError::Failed(_) => Exit::Failed,
            ActionError::Transient(_) => Exit::Transient,
            ActionError::Refused(_) => Exit::Refused,
        }
    }

    /// The same error, its message prefixed with what was being done.
    pub fn with_context(self, what: &str) -> ActionError {
        match self {
            ActionError::Usage(m) => ActionError::Usage(format!("{what}: {m}")),
            ActionError::Failed(m) => ActionError::Failed(format!("{what}: {m}")),
            ActionError::Transient(m) => ActionError::Transient(format!("{what}: {m}")),
            ActionError::Refused(m) => ActionError::Refused(format!("{what}: {m}")),
        }
    }
}

impl From<ApiError> for ActionError {
    fn from(e: ApiError) -> Self {
        match e.exit() {
            Exit::Usage => ActionError::Usage(e.to_string()),
            Exit::Transient => ActionError::Transient(e.to_string()),
            _ => ActionError::Failed(e.to_string()),
        }
    }
}

/// What an action reports when it completes.
#[derive(Debug, Clone)]
pub struct Done {
    /// Applied, noop or dry-run.
    pub outcome: Outcome,
    /// State before.
    pub before: Value,
    /// State after.
    pub after: Value,
    /// What happened, in one sentence.
    pub message: String,
    /// Event reason (`HealScaled`) for applied changes.
    pub reason: &'static str,
}

/// Shared state of one action run: the connection, the options, and what has been
/// learnt about the target so far (so that a failure still reports it).
pub struct Ctx<'a> {
    /// API access with the run's deadline.
    pub kube: &'a Kube,
    /// Shared options.
    pub common: &'a Common,
    /// The target as known so far.
    pub target: Target,
    /// With `--owner`: the object addressed, whose owner is the target.
    pub addressed: Option<Target>,
}

impl Ctx<'_> {
    /// The namespace to act in: `-n`, else the configured default.
    pub fn namespace(&self) -> String {
        self.common
            .namespace
            .clone()
            .unwrap_or_else(|| self.kube.default_namespace.clone())
    }

    /// Resolve the address, remember the target, and return the type and namespace.
    pub async fn resolve(
        &mut self,
        addr: &Address,
    ) -> Result<(ResourceType, Option<String>), ActionError> {
        let rt = self.kube.resolve(&addr.type_ref).await?;
        let ns = rt.namespaced.then(|| self.namespace());
        if let Some(ns) = &ns {
            crate::address::check_namespace(ns)
                .map_err(|why| ActionError::Usage(format!("invalid namespace {ns:?}: {why}")))?;
        }
        tracing::info!(
            correlation_id = %self.common.correlation_id,
            phase = "resolve",
            api_version = %rt.api_version(),
            kind = %rt.kind,
            namespace = ns.as_deref().unwrap_or(""),
            name = %addr.name,
            "resolved {}/{}",
            rt.qualified_plural(),
            addr.name
        );
        self.target = Target {
            api_version: rt.api_version(),
            kind: rt.kind.clone(),
            namespace: ns.clone(),
            name: addr.name.clone(),
            uid: None,
        };
        Ok((rt, ns))
    }

    /// Namespace allow-list, checked before anything is read.
    pub fn check_namespace(&self, ns: Option<&str>) -> Result<(), ActionError> {
        match ns {
            Some(ns) => guard::check_namespace_allowed(ns, &self.common.allow_namespaces)
                .map_err(ActionError::Refused),
            None => Ok(()),
        }
    }

    /// Opt-in label check on a fetched object; also records its uid.
    pub fn check_object(&mut self, obj: &Value) -> Result<(), ActionError> {
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            self.target.uid = Some(uid.to_string());
        }
        if let Some(req) = &self.common.require_label {
            guard::check_label(&labels(obj), req).map_err(ActionError::Refused)?;
        }
        Ok(())
    }

    /// `?dryRun=All` when dry-running, as the first query parameter.
    pub fn dry_query(&self) -> &'static str {
        if self.common.dry_run {
            "?dryRun=All"
        } else {
            ""
        }
    }

    /// The outcome of a change that was sent.
    pub fn changed(&self) -> Outcome {
        if self.common.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Applied
        }
    }

    /// Send a write, with one `apply` log line carrying the correlation id.
    pub async fn write(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.write_tracked(method, url, content_type, body)
            .await
            .result
    }

    /// [`Self::write`], also telling whether an attempt went unanswered, so that the
    /// answer to its retry (409, 404) may be the answer to this very write, applied.
    pub async fn write_tracked(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Sent {
        tracing::info!(
            correlation_id = %self.common.correlation_id,
            phase = "apply",
            %method,
            url,
            dry_run = self.common.dry_run,
            "sending {method} {url}"
        );
        let sent = self
            .kube
            .send_tracked(method.clone(), url, content_type, body)
            .await;
        if sent.unanswered {
            tracing::warn!(
                correlation_id = %self.common.correlation_id,
                phase = "apply",
                %method,
                url,
                ok = sent.result.is_ok(),
                "an attempt of {method} {url} got no answer: it may have been applied"
            );
        }
        sent
    }

    /// Human name of the target, `deployment/web`.
    pub fn target_name(&self) -> String {
        format!(
            "{}/{}",
            self.target.kind.to_ascii_lowercase(),
            self.target.name
        )
    }
}

/// The labels of an object.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Sleep between polls, never past the deadline.
pub(crate) async fn poll_sleep(kube: &Kube, attempt: u32) -> bool {
    let delay = Duration::from_millis(match attempt {
        0 => 100,
        1 => 200,
        2 => 500,
        _ => 1000,
    });
    if Instant::now() + delay >= kube.deadline() {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

async fn execute(action: &Action, ctx: &mut Ctx<'_>) -> Result<Done, ActionError> {
    if let Some(opts) = ctx.common.owner.clone()
        && action.takes_owner()
    {
        let (owner, addressed) = owner::resolve(ctx, address(action), &opts, action.name()).await?;
        let about = format!(
            "{owner}, the owner of {}/{}",
            addressed.kind.to_ascii_lowercase(),
            addressed.name
        );
        ctx.addressed = Some(addressed);
        return execute_on(&action.on(owner), ctx)
            .await
            .map_err(|e| e.with_context(&about));
    }
    execute_on(action, ctx).await
}

async fn execute_on(action: &Action, ctx: &mut Ctx<'_>) -> Result<Done, ActionError> {
    match action {
        Action::Scale(a, s) => scale::run(ctx, a, s).await,
        Action::Restart(a, s) => restart::run(ctx, a, s).await,
        Action::Delete(a, s) => delete::run(ctx, a, s).await,
        Action::Patch(a, s) => patch::run(ctx, a, s).await,
        Action::Cordon(a, s) => node::cordon(ctx, a, s).await,
        Action::Uncordon(a, s) => node::uncordon(ctx, a, s).await,
        Action::Drain(a, s) => node::drain(ctx, a, s).await,
        Action::Wait(a, s) => wait::run(ctx, a, s).await,
    }
}

/// The target as far as the address alone tells (before any API call).
/// Everything about an action that needs no cluster, checked before connecting, so a
/// mistake is named even where the cluster cannot be reached: the namespace's name, and
/// whether a well-known kind can take the action at all.
pub fn preflight(action: &Action, common: &Common) -> Result<(), ActionError> {
    if let Some(ns) = &common.namespace {
        crate::address::check_namespace(ns)
            .map_err(|why| ActionError::Usage(format!("invalid namespace {ns:?}: {why}")))?;
    }
    type KindCheck = fn(&ResourceType) -> Result<(), ActionError>;
    let (addr, check): (&Address, KindCheck) = match action {
        // The owner's kind is known only once it is found.
        _ if common.owner.is_some() && action.takes_owner() => return Ok(()),
        Action::Scale(a, _) => (a, scale::check_kind),
        Action::Restart(a, _) => (a, restart::check_kind),
        Action::Delete(a, s) if s.evict => (a, delete::check_evictable),
        _ => return Ok(()),
    };
    match &addr.type_ref {
        crate::address::TypeRef::Known(rt) => check(rt),
        crate::address::TypeRef::Discover { .. } => Ok(()),
    }
}

pub fn initial_target(action: &Action) -> Target {
    let addr = address(action);
    let (api_version, kind) = match &addr.type_ref {
        crate::address::TypeRef::Known(rt) => (rt.api_version(), rt.kind.clone()),
        crate::address::TypeRef::Discover { group, name, .. } => (group.clone(), name.clone()),
    };
    Target {
        api_version,
        kind,
        namespace: None,
        name: addr.name.clone(),
        uid: None,
    }
}

/// Run one typed step on `kube` (whose deadline bounds it, with the step's own
/// `--timeout`): what `heal` runs in process and what heald's local engine runs, without
/// going through the command line. A verify step asks Prometheus and needs no connection.
pub async fn execute_step(kube: &Kube, step: &crate::step::Step) -> (HealResult, Exit) {
    use crate::step::StepAction;
    let deadline = Instant::now() + step.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let kube = kube.with_deadline(kube.deadline().min(deadline));
    match &step.action {
        StepAction::Kube(action) => run(&kube, &step.common, action).await,
        StepAction::Verify(v) => match crate::prometheus_http::VerifySpec::from_options(v) {
            Ok(spec) => {
                let left = kube
                    .deadline()
                    .saturating_duration_since(tokio::time::Instant::now());
                crate::prometheus_http::verify(&spec, &step.common.correlation_id, left).await
            }
            Err(message) => (
                HealResult {
                    correlation_id: step.common.correlation_id.clone(),
                    action: "verify".into(),
                    target: Target::default(),
                    addressed: None,
                    outcome: Outcome::Failed,
                    before: Value::Null,
                    after: Value::Null,
                    message,
                    started_at: jiff::Timestamp::now().to_string(),
                    duration_ms: 0,
                },
                Exit::Usage,
            ),
        },
    }
}

/// heal's `--timeout` when a step sets none.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Run one action to its result and exit code.
pub async fn run(kube: &Kube, common: &Common, action: &Action) -> (HealResult, Exit) {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now().to_string();
    let mut ctx = Ctx {
        kube,
        common,
        target: initial_target(action),
        addressed: None,
    };
    tracing::info!(
        correlation_id = %common.correlation_id,
        action = action.name(),
        phase = "start",
        dry_run = common.dry_run,
        "starting {}",
        action.name()
    );
    let result = execute(action, &mut ctx).await;
    let target = ctx.target.clone();
    let (outcome, before, after, message, exit) = match result {
        Ok(done) => {
            if done.outcome == Outcome::Applied && common.events {
                record_event(kube, common, &target, done.reason, &done.message).await;
            }
            (
                done.outcome,
                done.before,
                done.after,
                done.message,
                Exit::Ok,
            )
        }
        Err(e) => {
            let outcome = if matches!(e, ActionError::Refused(_)) {
                Outcome::Refused
            } else {
                Outcome::Failed
            };
            (outcome, Value::Null, Value::Null, e.to_string(), e.exit())
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        correlation_id = %common.correlation_id,
        action = action.name(),
        phase = "done",
        outcome = outcome.as_str(),
        exit_code = exit.code(),
        duration_ms,
        "{message}"
    );
    (
        HealResult {
            correlation_id: common.correlation_id.clone(),
            action: action.name().to_string(),
            target,
            addressed: ctx.addressed.clone(),
            outcome,
            before,
            after,
            message,
            started_at,
            duration_ms,
        },
        exit,
    )
}

/// Record a `core/v1` Event on the target, so `kubectl describe` shows who touched it and
/// why. Failing to record is logged, never fatal: the change itself already happened.
async fn record_event(kube: &Kube, common: &Common, target: &Target, reason: &str, note: &str) {
    let ns = target
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let at = jiff::Timestamp::now();
    let now = at.to_string();
    let mut involved = json!({
        "apiVersion": target.api_version,
        "kind": target.kind,
        "name": target.name,
    });
    if let Some(n) = &target.namespace {
        involved["namespace"] = json!(n);
    }
    if let Some(uid) = &target.uid {
        involved["uid"] = json!(uid);
    }
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            // A name of its own (as client-go's recorder names Events), not generateName:
            // a retry after a lost answer then meets its own Event (409) instead of
            // recording a second one.
            "name": event_name(&target.name, at),
            "namespace": ns,
            "annotations": {"heal.dev/correlation-id": common.correlation_id},
        },
        "involvedObject": involved,
        "reason": reason,
        "message": format!("{note} (heal, correlation id {})", common.correlation_id),
        "type": "Normal",
        "source": {"component": "heal"},
        "reportingComponent": "heal",
        "reportingInstance": std::env::var("HOSTNAME").unwrap_or_else(|_| "heal".into()),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let path = format!("/api/v1/namespaces/{}/events", enc(&ns));
    match kube.create(&path, Some(JSON), &event).await {
        Ok(_) => {
            tracing::info!(correlation_id = %common.correlation_id, phase = "event", reason, "recorded event")
        }
        Err(e) => {
            tracing::warn!(correlation_id = %common.correlation_id, phase = "event", error = %e, "could not record event")
        }
    }
}

/// The name of an Event about `object` recorded at `at`: `OBJECT.UNIXNANOS` in hex, as
/// client-go's event recorder names them, within the 253 characters of a name.
pub fn event_name(object: &str, at: jiff::Timestamp) -> String {
    let suffix = format!("{:x}", at.as_nanosecond().max(0));
    let mut prefix: String = object.chars().take(252 - suffix.len()).collect();
    while prefix.ends_with(['.', '-']) {
        prefix.pop();
    }
    format!("{prefix}.{suffix}")
}

/// GET an object, mapping 404 to `None`.
pub(crate) async fn get_opt(kube: &Kube, path: &str) -> Result<Option<Value>, ActionError> {
    match kube.get(path).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// GET an object; 404 is a failure naming the object.
pub(crate) async fn get_required(
    kube: &Kube,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ActionError> {
    match kube.get(&rt.object_path(ns, name)).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_found() => Err(ActionError::Failed(format!(
            "{} {name:?} not found{}",
            rt.qualified_plural(),
            ns.map(|n| format!(" in namespace {n:?}"))
                .unwrap_or_default()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// An integer field of an object, 0 when absent.
pub(crate) fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// A string field of an object.
pub(crate) fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_the_object_and_the_time_in_nanoseconds_within_253_characters() {
        let at: jiff::Timestamp = "2026-08-20T10:00:00.000000001Z".parse().unwrap();
        let name = event_name("web", at);
        assert_eq!(name, format!("web.{:x}", at.as_nanosecond()));
        // Cut where a dash would end the prefix: the dash goes too.
        let long = format!("{}-{}", "a".repeat(235), "b".repeat(20));
        let name = event_name(&long, at);
        assert!(name.len() <= 253, "{}", name.len());
        assert_eq!(
            name,
            format!("{}.{:x}", "a".repeat(235), at.as_nanosecond())
        );
        assert_ne!(
            event_name("web", at),
            event_name("web", at + jiff::SignedDuration::from_nanos(1))
        );
    }
}
