//! The `local` engine: heald runs a remediation's steps itself, through the same library
//! code the `heal` binary uses ([`execute_step`](crate::actions::execute_step)) on heald's own
//! Kubernetes connection, with no pod per step.
//!
//! Submitting a local run creates its ConfigMap (see [`local_run`](crate::heald::engines::local_run)):
//! create-if-absent, so a second create answers 409 and the alert episode is a duplicate,
//! across replicas and restarts. The run then executes in a task of this replica: steps in
//! dependency order, parallel where the DAG allows, each with its own timeout, retried
//! with backoff on exit code 3 only, all within the run's deadline; a failed step stops
//! its dependants. Each step's status is written to the ConfigMap when it ends (with the
//! resourceVersion last written as precondition, so a replica that lost the run stops
//! writing), and dependants start only once it is written. When every step has ended, the
//! outcome is written and handled by the state's `finish_run` (tracking's `finish`), the same code that handles the end
//! of an Argo or Tekton run: Lease release, cooldown or failure count, silence or
//! escalation, metrics, history and Event.
//!
//! Each tracking pass looks at the local runs no replica reported yet: one whose outcome is
//! written is handled; one whose replica restarted, released it or stopped writing for
//! [`STALE`] is taken over (a merge patch of the holder under the run's resourceVersion,
//! so one replica wins) and resumed: succeeded steps are skipped, and a step that may have
//! been running is repeated only when that is harmless
//! ([`repeatable`](crate::heald::engines::local_run::repeatable)); otherwise it counts as interrupted and
//! the run fails and is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::heald::engines::local_run::{
    LocalRun, StepPhase, StepStatus, backoff, blocked, config_map, cut, holder_patch, outcome,
    outcome_patch, possibly_started, ready, recorded_outcome, repeatable, steps_patch,
};
use crate::heald::engines::runs::Ending;
use crate::heald::engines::runs::{RunOutcome, cancel_patch, collection_path, object_path};
use crate::heald::engines::{BoxFuture, Cancel, Engine, SubmitError, Submitted};
use crate::heald::kube_io::{K8s, KubeIoError};
use crate::heald::state::State;
use crate::kube_api::{ApiError, JSON, Kube, MERGE_PATCH};
use crate::outcome::Exit;
use crate::plan::PlanStep;
use crate::render::Engine as Kind;

/// How often a replica executing a local run refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long without a heartbeat before another replica takes a local run over.
pub const STALE: Duration = Duration::from_secs(45);
/// Longest wait between two retries of a step.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Time a step gets past its own deadline before heald stops waiting for it.
const STEP_GRACE: Duration = Duration::from_secs(1);

/// The local engine behind the engine seam: a run is a ConfigMap (created held by this
/// replica), its outcome is recorded in it, and cancelling it is an annotation the
/// executing replica reads before it starts another step.
#[derive(Debug, Clone)]
pub struct LocalEngine {
    k8s: K8s,
    runs: Arc<LocalRuns>,
}

impl LocalEngine {
    /// Create local runs with `k8s`, held by this replica (`runs`, whose executions a
    /// cancel also tells at once).
    pub fn new(k8s: K8s, runs: Arc<LocalRuns>) -> LocalEngine {
        LocalEngine { k8s, runs }
    }
}

impl Engine for LocalEngine {
    fn kind(&self) -> Kind {
        Kind::Local
    }

    fn submit<'a>(&'a self, run: &'a Value) -> BoxFuture<'a, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            let cm = config_map(run, self.runs.holder(), Timestamp::now())
                .map_err(|e| SubmitError::Rejected(e.to_string()))?;
            let ns = cm
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let name = cm
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(collection) = collection_path(Kind::Local, &ns) else {
                return Err(SubmitError::Rejected("no ConfigMap collection".into()));
            };
            let created = self
                .k8s
                .send(Method::POST, &collection, Some(JSON), Some(&cm))
                .await
                .map_err(|e| SubmitError::from_api(e, &format!("local run {ns}/{name}")))?;
            Ok(Submitted {
                uid: created
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                object: Some(created),
            })
        })
    }

    /// The annotation is written under the run's resourceVersion, so a run that ended
    /// meanwhile is left alone; the replica executing it stops scheduling steps at once
    /// when it is this one, else at its next write. A deadline is the executor's own.
    fn cancel<'a>(
        &'a self,
        obj: &'a Value,
        why: &'a str,
        how: Cancel,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            if how == Cancel::Terminate {
                return Ok(false);
            }
            let str_at =
                |o: &Value, p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_string);
            let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
            let name = str_at(obj, "/metadata/name").unwrap_or_default();
            let Some(path) = object_path(Kind::Local, &namespace, &name) else {
                return Ok(false);
            };
            let patch = cancel_patch(Kind::Local, why, how);
            let mut current = obj.clone();
            for _ in 0..5 {
                if recorded_outcome(&current).is_some() {
                    return Ok(false);
                }
                let rv = str_at(&current, "/metadata/resourceVersion").unwrap_or_default();
                if self
                    .k8s
                    .patch_if_unchanged(&path, &rv, patch.clone())
                    .await?
                {
                    self.runs.cancel(&namespace, &name, why);
                    return Ok(true);
                }
                match self.k8s.get_opt(&path).await? {
                    Some(fresh) => current = fresh,
                    None => return Ok(false),
                }
            }
            Err(ApiError::Timeout(Some(format!(
                "local run {namespace}/{name} kept changing; could not cancel it"
            ))))
        })
    }
}

/// Tells a local run's execution that it is cancelled, and why.
type CancelSender = Arc<watch::Sender<Option<String>>>;

/// A local run executing in this replica.
#[derive(Debug)]
struct Executing {
    abort: Option<AbortHandle>,
    cancel: CancelSender,
}

/// The local runs executing in this replica, and who this replica is.
#[derive(Debug)]
pub struct LocalRuns {
    holder: String,
    running: Mutex<HashMap<String, Executing>>,
    idle: tokio::sync::Notify,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl LocalRuns {
    /// The registry of replica `instance`; its holder identity is `INSTANCE/BOOT`, with a
    /// boot id new for every start.
    pub fn new(instance: &str) -> LocalRuns {
        let boot = uuid::Uuid::new_v4().simple().to_string();
        LocalRuns {
            holder: format!("{instance}/{}", &boot[..12]),
            running: Mutex::new(HashMap::new()),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// This replica's holder identity, `INSTANCE/BOOT`.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Executing>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this replica executes the run.
    pub fn is_running(&self, namespace: &str, name: &str) -> bool {
        self.lock().contains_key(&key(namespace, name))
    }

    /// Local runs executing in this replica.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no local run executes in this replica.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn claim(&self, k: &str) -> Option<CancelSender> {
        let mut m = self.lock();
        if m.contains_key(k) {
            return None;
        }
        let cancel = Arc::new(watch::Sender::new(None));
        m.insert(
            k.to_string(),
            Executing {
                abort: None,
                cancel: Arc::clone(&cancel),
            },
        );
        Some(cancel)
    }

    fn set_handle(&self, k: &str, handle: AbortHandle) {
        if let Some(slot) = self.lock().get_mut(k) {
            slot.abort = Some(handle);
        }
    }

    /// Tell the run, if it executes here, that it is cancelled: it starts no further step
    /// and retries none. Returns whether it executes here.
    pub fn cancel(&self, namespace: &str, name: &str, why: &str) -> bool {
        match self.lock().get(&key(namespace, name)) {
            Some(e) => {
                signal_cancel(&e.cancel, why);
                true
            }
            None => false,
        }
    }

    fn remove(&self, k: &str) {
        let empty = {
            let mut m = self.lock();
            m.remove(k);
            m.is_empty()
        };
        if empty {
            self.idle.notify_waiters();
        }
    }

    /// Wait until no local run executes here, at most `within`; whether that happened.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.idle.notified();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }

    /// Stop every run executing here; their names (`namespace/name`).
    fn abort_all(&self) -> Vec<String> {
        let m = self.lock();
        for h in m.values().filter_map(|e| e.abort.as_ref()) {
            h.abort();
        }
        m.keys().cloned().collect()
    }
}

/// Record the cancellation once (a second one keeps the first reason).
fn signal_cancel(cancel: &CancelSender, why: &str) {
    cancel.send_if_modified(|c| {
        if c.is_some() {
            return false;
        }
        *c = Some(why.to_string());
        true
    });
}

/// Removes a run from the registry when its task ends, however it ends.
struct Slot {
    st: Arc<State>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.st.local.remove(&self.key);
    }
}

/// Execute the local run in `obj` (its ConfigMap, as created or as taken over) in this
/// replica. `resumed`: another process may have run part of it. Returns false when it is
/// already executing here or cannot be read.
pub fn start(st: &Arc<State>, obj: &Value, resumed: bool) -> bool {
    let run = match LocalRun::from_object(obj) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot execute the local run");
            return false;
        }
    };
    let k = key(&run.namespace, &run.name);
    let Some(cancel) = st.local.claim(&k) else {
        return false;
    };
    let slot = Slot {
        st: Arc::clone(st),
        key: k.clone(),
    };
    let handle = tokio::spawn(execute(Arc::clone(st), run, resumed, slot, cancel));
    st.local.set_handle(&k, handle.abort_handle());
    true
}

/// Why the run's state could not be written.
#[derive(Debug)]
enum WriteError {
    /// Another replica holds the run now, or it is gone: stop executing it.
    Lost(String),
    /// The API server did not take the write; try again later.
    Failed(KubeIoError),
}

/// Writes to one local run's ConfigMap, each under the resourceVersion last written.
struct Store {
    k8s: K8s,
    path: String,
    resource_version: String,
    holder: String,
    dirty: BTreeMap<String, StepStatus>,
    beat_due: bool,
    cancel: CancelSender,
}

impl Store {
    fn mark(&mut self, name: &str, status: &StepStatus) {
        self.dirty.insert(name.to_string(), status.clone());
    }

    /// Write `patch` (with a fresh heartbeat); on 409, read again and go on if this replica
    /// still holds the run.
    async fn write(&mut self, patch: Value) -> Result<Value, WriteError> {
        for _ in 0..5 {
            let mut p = patch.clone();
            p["metadata"]["resourceVersion"] = json!(self.resource_version);
            match self
                .k8s
                .send(Method::PATCH, &self.path, Some(MERGE_PATCH), Some(&p))
                .await
            {
                Ok(obj) => {
                    if let Some(rv) = obj
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                    {
                        self.resource_version = rv.to_string();
                    }
                    return Ok(obj);
                }
                Err(e) if e.is_conflict() => {
                    let fresh = match self.k8s.get_opt(&self.path).await {
                        Ok(Some(o)) => o,
                        Ok(None) => return Err(WriteError::Lost("the run is gone".into())),
                        Err(e) => return Err(WriteError::Failed(e.into())),
                    };
                    let run = LocalRun::from_object(&fresh)
                        .map_err(|e| WriteError::Lost(e.to_string()))?;
                    if run.holder.as_deref() != Some(self.holder.as_str()) {
                        return Err(WriteError::Lost(format!(
                            "{} holds the run now",
                            run.holder.as_deref().unwrap_or("nobody")
                        )));
                    }
                    if recorded_outcome(&fresh).is_some() {
                        return Err(WriteError::Lost("the run has ended".into()));
                    }
                    // What changed it may be a cancellation (the alert resolved).
                    if let Some(why) = &run.cancelled {
                        signal_cancel(&self.cancel, why);
                    }
                    self.resource_version = run.resource_version;
                }
                Err(e) if e.is_not_found() => {
                    return Err(WriteError::Lost("the run is gone".into()));
                }
                Err(e) => return Err(WriteError::Failed(e.into())),
            }
        }
        Err(WriteError::Failed(KubeIoError::Conflict(self.path.clone())))
    }

    /// Write the step statuses not written yet (and the heartbeat when due).
    async fn flush(&mut self) -> Result<(), WriteError> {
        if self.dirty.is_empty() && !self.beat_due {
            return Ok(());
        }
        let patch = steps_patch(&self.dirty, &self.holder, Timestamp::now());
        self.write(patch).await?;
        self.dirty.clear();
        self.beat_due = false;
        Ok(())
    }
}

/// What every step of one run shares.
#[derive(Clone)]
struct StepCtx {
    kube: Kube,
    deadline: Instant,
    deadline_seconds: u64,
    backoff: Duration,
    correlation_id: String,
    progress: mpsc::UnboundedSender<(String, StepStatus)>,
    cancel: watch::Receiver<Option<String>>,
}

/// Run one step to its end: attempts until exit 0, a final failure, no retries left, or
/// the run's deadline.
async fn run_step(ctx: StepCtx, step: PlanStep, prior: Option<StepStatus>) -> StepStatus {
    let started_at = prior
        .as_ref()
        .and_then(|p| p.started_at.clone())
        .unwrap_or_else(|| Timestamp::now().to_string());
    let mut attempts = prior.map(|p| p.attempts).unwrap_or(0);
    loop {
        attempts += 1;
        let own = Instant::now() + Duration::from_secs(step.timeout_seconds);
        let step_deadline = own.min(ctx.deadline);
        let by_run_deadline = ctx.deadline <= own;
        let kube = ctx.kube.with_deadline(step_deadline);
        let allowed = step_deadline.saturating_duration_since(Instant::now());
        let attempt = crate::actions::execute_step(&kube, &step.heal);
        let (exit, message, result) =
            match tokio::time::timeout_at(step_deadline + STEP_GRACE, attempt).await {
                Ok((res, exit)) => (exit, res.message.clone(), serde_json::to_value(&res).ok()),
                Err(_) => (
                    Exit::Transient,
                    format!(
                        "the step did not finish within its {}",
                        crate::duration::format(allowed)
                    ),
                    None,
                ),
            };
        let mut status = StepStatus {
            phase: StepPhase::Failed,
            attempts,
            exit_code: Some(exit.code()),
            message: cut(message),
            started_at: Some(started_at.clone()),
            finished_at: Some(Timestamp::now().to_string()),
            timed_out: false,
            result,
        };
        tracing::info!(
            correlation_id = %ctx.correlation_id,
            step = %step.name,
            attempt = attempts,
            exit_code = exit.code(),
            "local step: {}",
            status.message
        );
        match exit {
            Exit::Ok => {
                status.phase = StepPhase::Succeeded;
                return status;
            }
            Exit::Transient if attempts <= step.retries => {
                let wait = backoff(ctx.backoff, attempts, BACKOFF_CAP);
                if Instant::now() + wait >= ctx.deadline {
                    status.timed_out = true;
                    status.message = cut(format!(
                        "{}; not retried: the run's deadline of {}s comes first",
                        status.message, ctx.deadline_seconds
                    ));
                    return status;
                }
                status.phase = StepPhase::Retrying;
                let _ = ctx.progress.send((step.name.clone(), status.clone()));
                let mut cancel = ctx.cancel.clone();
                let cancelled = tokio::select! {
                    _ = tokio::time::sleep(wait) => None,
                    Ok(why) = cancel.wait_for(Option::is_some) => why.clone(),
                };
                if let Some(why) = cancelled {
                    status.phase = StepPhase::Failed;
                    status.message = cut(format!(
                        "{}; not retried: the run was cancelled ({why})",
                        status.message
                    ));
                    return status;
                }
            }
            Exit::Transient => {
                status.timed_out = by_run_deadline && Instant::now() + STEP_GRACE >= ctx.deadline;
                if status.timed_out {
                    status.message = cut(format!(
                        "{}; the run's deadline of {}s passed",
                        status.message, ctx.deadline_seconds
                    ));
                } else if step.retries > 0 {
                    status.message = cut(format!("{} (after {attempts} attempts)", status.message));
                }
                return status;
            }
            _ => return status,
        }
    }
}

/// Execute a local run to its end and hand the outcome to [`finish`].
async fn execute(st: Arc<State>, run: LocalRun, resumed: bool, _slot: Slot, cancel: CancelSender) {
    // A run with an approval gate starts no step before it is approved.
    let Some((run, waited)) =
        crate::heald::engines::local_gate::wait(&st, run, cancel.subscribe()).await
    else {
        return;
    };
    // A run that was still waiting when this replica took it had started no step.
    let resumed = resumed && !waited;
    let k8s = st.k8s.clone();
    let Some(path) = object_path(Kind::Local, &run.namespace, &run.name) else {
        return;
    };
    let plan = run.plan.clone();
    let cid = plan.correlation_id.clone();
    let now = Timestamp::now();
    let left = run.deadline(now).duration_since(now);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    let deadline = Instant::now() + left;
    let mut store = Store {
        k8s: k8s.clone(),
        path,
        resource_version: run.resource_version.clone(),
        holder: st.local.holder().to_string(),
        dirty: BTreeMap::new(),
        beat_due: false,
        cancel: Arc::clone(&cancel),
    };
    if let Some(why) = &run.cancelled {
        signal_cancel(&cancel, why);
    }
    let mut cancel_rx = cancel.subscribe();
    let mut steps = run.steps.clone();
    if resumed {
        let interrupted: Vec<&PlanStep> = possibly_started(&plan, &steps)
            .into_iter()
            .filter(|s| !repeatable(&s.argv()))
            .collect();
        for s in interrupted {
            let status = StepStatus::failed(
                format!(
                    "interrupted: heald stopped while this step may have been running, and a \
                     {} step is not repeated because it could apply twice",
                    s.action
                ),
                false,
                now,
            );
            store.mark(&s.name, &status);
            steps.insert(s.name.clone(), status);
        }
        tracing::info!(correlation_id = %cid, run = %run.name, done = steps.values().filter(|s| s.phase.is_final()).count(), "resuming local run");
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, StepStatus)>();
    let ctx = StepCtx {
        kube: k8s.kube().clone(),
        deadline,
        deadline_seconds: plan.deadline_seconds,
        backoff: st.config.local_retry_backoff,
        correlation_id: cid.clone(),
        progress: tx,
        cancel: cancel.subscribe(),
    };
    let mut tasks: JoinSet<StepStatus> = JoinSet::new();
    let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let mut beat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut retry_write = false;
    loop {
        // Skip what can no longer run, and fail what the deadline left no time for, until
        // nothing changes.
        loop {
            let mut changed = false;
            for (name, why) in blocked(&plan, &steps) {
                let status = StepStatus::skipped(why, Timestamp::now());
                store.mark(&name, &status);
                steps.insert(name, status);
                changed = true;
            }
            if Instant::now() >= deadline {
                let late: Vec<String> = ready(&plan, &steps, &running)
                    .into_iter()
                    .map(|s| s.name.clone())
                    .collect();
                for name in late {
                    let status = StepStatus::failed(
                        format!(
                            "not started: the run's deadline of {}s passed",
                            plan.deadline_seconds
                        ),
                        true,
                        Timestamp::now(),
                    );
                    store.mark(&name, &status);
                    steps.insert(name, status);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // A step starts only once what it runs after is written, so a restart never finds
        // a dependant started before its dependency's success was recorded.
        match store.flush().await {
            Ok(()) => retry_write = false,
            Err(WriteError::Lost(why)) => {
                tracing::warn!(correlation_id = %cid, run = %run.name, "stopped executing the local run: {why}");
                return;
            }
            Err(WriteError::Failed(e)) => {
                if !retry_write {
                    tracing::warn!(correlation_id = %cid, run = %run.name, error = %e, "could not record step status; retrying before starting more steps");
                }
                retry_write = true;
            }
        }
        // Read after the write: a cancellation by another replica shows up as a conflict.
        let cancelled = cancel.borrow().is_some();
        if !retry_write {
            let start: Vec<PlanStep> = if cancelled {
                Vec::new()
            } else {
                ready(&plan, &steps, &running)
                    .into_iter()
                    .cloned()
                    .collect()
            };
            for step in start {
                let prior = steps.get(&step.name).cloned();
                running.insert(step.name.clone());
                let name = step.name.clone();
                let handle = tasks.spawn(run_step(ctx.clone(), step, prior));
                names.insert(handle.id(), name);
            }
            if running.is_empty() {
                break;
            }
        }
        tokio::select! {
            Some(joined) = tasks.join_next_with_id() => {
                let (name, status) = match joined {
                    Ok((id, status)) => (names.remove(&id).unwrap_or_default(), status),
                    Err(e) => {
                        let name = names.remove(&e.id()).unwrap_or_default();
                        (name, StepStatus::failed(format!("the step's task ended abnormally: {e}"), false, Timestamp::now()))
                    }
                };
                running.remove(&name);
                store.mark(&name, &status);
                steps.insert(name, status);
            }
            Some((name, status)) = rx.recv() => {
                store.mark(&name, &status);
                steps.insert(name, status);
            }
            _ = beat.tick() => store.beat_due = true,
            _ = cancel_rx.changed(), if !cancelled => {}
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry_write => {}
        }
    }
    let cancelled = cancel.borrow().clone();
    if let Some(why) = &cancelled {
        for step in &plan.steps {
            if steps.get(&step.name).is_none_or(|s| !s.phase.is_final()) {
                let status = StepStatus::skipped(
                    format!("not started: the run was cancelled ({why})"),
                    Timestamp::now(),
                );
                store.mark(&step.name, &status);
                steps.insert(step.name.clone(), status);
            }
        }
    }
    let (mut result, mut message) = outcome(&plan, &steps).unwrap_or_else(|| {
        (
            RunOutcome::Failed,
            "the run's steps could not all be scheduled".to_string(),
        )
    });
    let all_succeeded = plan.steps.iter().all(|s| {
        steps
            .get(&s.name)
            .is_some_and(|st| st.phase == StepPhase::Succeeded)
    });
    if let Some(why) = cancelled
        && !all_succeeded
    {
        let ran = steps.values().filter(|s| s.attempts > 0).count();
        result = RunOutcome::Cancelled;
        message = format!(
            "cancelled: {why}; {ran} of {} steps ran, no further step was started",
            plan.steps.len()
        );
        tracing::info!(correlation_id = %cid, run = %run.name, "local run cancelled: {why}");
    }
    let reports: BTreeMap<String, Value> = steps
        .iter()
        .map(|(name, s)| (name.clone(), s.report()))
        .collect();
    let obj = loop {
        // The steps a cancellation left unstarted are recorded with the outcome.
        let mut patch = outcome_patch(result, &message, Timestamp::now());
        if !store.dirty.is_empty() {
            let steps = steps_patch(&store.dirty, &store.holder, Timestamp::now());
            if let (Some(data), Some(more)) = (
                patch.get_mut("data").and_then(Value::as_object_mut),
                steps.get("data").and_then(Value::as_object),
            ) {
                data.extend(more.clone());
            }
            patch["metadata"] = steps["metadata"].clone();
        }
        match store.write(patch).await {
            Ok(obj) => break obj,
            Err(WriteError::Lost(why)) => {
                tracing::warn!(correlation_id = %cid, run = %run.name, "could not record the outcome: {why}");
                return;
            }
            Err(WriteError::Failed(e)) => {
                tracing::warn!(correlation_id = %cid, run = %run.name, error = %e, "could not record the outcome; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let ending = Ending {
        outcome: result,
        message,
        steps: reports,
        source: "local",
    };
    if let Err(e) = (st.finish_run)(&st, &obj, ending).await {
        tracing::warn!(correlation_id = %cid, run = %run.name, error = %e, "could not handle the local run's outcome; the tracker will");
    }
}

/// At shutdown: let the local runs executing here finish within `grace`, then stop the
/// rest and release them, so another replica (or this one, restarted) resumes them at once.
pub async fn drain(st: &State, grace: Duration) {
    if st.local.is_empty() {
        return;
    }
    tracing::info!(
        runs = st.local.len(),
        "waiting for the local runs in progress"
    );
    if st.local.wait_idle(grace).await {
        return;
    }
    let k8s = &st.k8s;
    for k in st.local.abort_all() {
        let Some((ns, name)) = k.split_once('/') else {
            continue;
        };
        let Some(path) = object_path(Kind::Local, ns, name) else {
            continue;
        };
        let Ok(Some(obj)) = k8s.get_opt(&path).await else {
            continue;
        };
        let Ok(run) = LocalRun::from_object(&obj) else {
            continue;
        };
        if run.holder.as_deref() != Some(st.local.holder()) {
            continue;
        }
        let mut patch = holder_patch(None, Timestamp::now());
        patch["metadata"]["resourceVersion"] = json!(run.resource_version);
        match k8s
            .send(Method::PATCH, &path, Some(MERGE_PATCH), Some(&patch))
            .await
        {
            Ok(_) => tracing::info!(run = name, "released the unfinished local run"),
            Err(e) => {
                tracing::warn!(run = name, error = %e, "could not release the local run; another replica takes it over when its heartbeat is stale")
            }
        }
    }
}
