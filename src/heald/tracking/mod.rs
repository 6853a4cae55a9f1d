//! Following the runs heald created to their end, and handling each end exactly once.
//!
//! Argo and Tekton runs are [watched](crate::heald::tracking::watch), so an end is handled when it happens;
//! every period, as the resync, heald lists, per engine and run namespace, the runs labelled
//! `app.kubernetes.io/managed-by=heald` that are not yet labelled `heal.dev/reported`
//! (after a restart this finds every run still in flight), reads each one's outcome, and
//! calls runs that overran their deadline (or never started) timed out. Local-engine runs
//! are found the same way (their ConfigMaps) and resumed when no replica executes them. A
//! report posted by `heal report` ends a run at once. Handling an end starts by claiming
//! it: a merge patch that sets `heal.dev/reported` with the run's `resourceVersion` as
//! precondition, so of two replicas (or a report and the tracker) exactly one goes on to
//! release the Lease, record the cooldown or failure, notify, count it, and record an
//! Event. What Alertmanager must be told (the success silence, or expiring the
//! in-progress one) is recorded in that same patch ([`pending`](crate::heald::reporting::pending)) and
//! retried by later passes until it is delivered.

pub mod approval;
pub mod local;
pub mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::heald::engines::BoxFuture;
use crate::heald::engines::Cancel;
pub use crate::heald::engines::runs::Ending;
use crate::heald::engines::runs::{
    RunInfo, RunOutcome, RunState, argo_step_results, collection_path, object_path, run_object_type,
};
use crate::heald::guards::lease::LeaseIo;
use crate::heald::guards::lease::RunEnd;
use crate::heald::kube_io::{EventTarget, KubeIoError, truncate};
use crate::heald::policies::Loaded;
use crate::heald::reporting::alertmanager_http::{
    DeliveryError, create_silence, expire_silence, silence_body,
};
use crate::heald::reporting::notify_http::{Notification, notify};
use crate::heald::reporting::pending::{
    PENDING, PENDING_LABEL, PendingSilence, SilenceWork, clear_patch, silence_at, without_id,
};
use crate::heald::reporting::remediations::Entry;
use crate::heald::state::State;
use crate::heald::tracking::watch::Watchers;
use crate::heald::{MANAGED_BY, OUTCOME_LABEL, REPORTED_LABEL, RESULTS_ANNOTATION};
use crate::kube_api::MERGE_PATCH;
use crate::policy::Policy;
use crate::render::Engine as Kind;

/// Longest step-results JSON kept on a run.
const MAX_RESULTS_JSON: usize = 32 * 1024;

/// What one tracking pass saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Runs still going.
    pub in_flight: usize,
    /// Runs whose end this pass handled.
    pub finished: usize,
    /// Finished Tekton runs deleted after the retention period.
    pub pruned: usize,
}

/// The run namespaces heald watches: the default and every policy's own.
pub fn run_namespaces(st: &State) -> BTreeSet<String> {
    let mut set = BTreeSet::from([st.config.run_namespace.clone()]);
    for p in &st.policies.current().set.policies {
        if let Some(ns) = &p.run_namespace {
            set.insert(ns.clone());
        }
    }
    set
}

/// One tracking pass over every engine and run namespace (for the local engine, see
/// [`local::pass`]: it also resumes the local runs nobody
/// executes).
pub async fn pass(st: &Arc<State>) -> Result<Pass, KubeIoError> {
    let k8s = &st.k8s;
    let mut out = Pass::default();
    let sweep = st.sweeps.start_pass();
    let unreported = format!("{MANAGED_BY}=heald,!{REPORTED_LABEL}");
    let grace =
        SignedDuration::from_secs(i64::try_from(st.config.deadline_grace.as_secs()).unwrap_or(0));
    for ns in run_namespaces(st) {
        for kind in [Kind::Argo, Kind::Tekton] {
            let Some(collection) = collection_path(kind, &ns) else {
                continue;
            };
            for obj in k8s.list(&collection, &unreported).await? {
                let Some(info) = RunInfo::from_object(&obj) else {
                    continue;
                };
                if approval::expire(st, kind, &obj).await {
                    // Its engine ends it (rejected) or goes on (approved): a later pass sees.
                    out.in_flight += 1;
                    continue;
                }
                let ending = match st.engines.get(kind).outcome(&obj) {
                    RunState::Finished(outcome, message) => Ending {
                        outcome,
                        message,
                        steps: argo_step_results(&obj),
                        source: "engine",
                    },
                    s if info.overdue(Timestamp::now(), grace) => {
                        let message = if s == RunState::Pending {
                            format!(
                                "the run never started within its deadline of {}s: is the {kind} \
                                 controller running?",
                                info.deadline_seconds.unwrap_or(0)
                            )
                        } else {
                            format!(
                                "the run did not finish within its deadline of {}s",
                                info.deadline_seconds.unwrap_or(0)
                            )
                        };
                        stop(st, &info, &obj).await;
                        Ending {
                            outcome: RunOutcome::TimedOut,
                            message,
                            steps: argo_step_results(&obj),
                            source: "deadline",
                        }
                    }
                    _ => {
                        out.in_flight += 1;
                        continue;
                    }
                };
                if finish(st, &obj, ending).await? {
                    out.finished += 1;
                }
            }
        }
        local::pass(st, &ns, &mut out).await?;
        out.pruned += prune_tekton(st, &ns).await.unwrap_or(0);
    }
    if let Some(token) = sweep {
        let mut found = 0;
        let mut failed = false;
        for ns in run_namespaces(st) {
            for kind in [Kind::Argo, Kind::Tekton, Kind::Local] {
                match sweep_pending(st, kind, &ns).await {
                    Ok(n) => found += n,
                    Err(e) => {
                        failed = true;
                        tracing::warn!(namespace = %ns, engine = %kind, error = %e,
                            "could not look for silences still owed to Alertmanager");
                    }
                }
            }
        }
        if !failed {
            st.sweeps.swept(token, found);
        }
    }
    st.metrics
        .runs_in_flight
        .set(i64::try_from(out.in_flight).unwrap_or(i64::MAX));
    Ok(out)
}

/// Track until shutdown: a pass at once (which picks up runs left by a previous heald),
/// then one per `--track-interval`, and meanwhile a [watch](crate::heald::tracking::watch) on the
/// Argo and Tekton runs of each run namespace, which handles an end as soon as it happens.
pub async fn run(st: Arc<State>) {
    let mut stop = st.shutdown_signal();
    let mut watchers = Watchers::default();
    loop {
        watchers.ensure(&st);
        match pass(&st).await {
            Ok(p) if p.finished > 0 || p.pruned > 0 => {
                tracing::debug!(
                    in_flight = p.in_flight,
                    finished = p.finished,
                    pruned = p.pruned,
                    "tracking pass"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "tracking pass failed; trying again next period"),
        }
        let stopping = tokio::select! {
            _ = tokio::time::sleep(st.config.track_interval) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            watchers.stopped().await;
            return;
        }
    }
}

/// Ask the engine to stop a run that overran its deadline. Best effort.
async fn stop(st: &State, info: &RunInfo, obj: &Value) {
    let why = "the run overran its deadline";
    if let Err(e) = st
        .engines
        .get(info.engine)
        .cancel(obj, why, Cancel::Terminate)
        .await
    {
        tracing::warn!(run = %info.name, error = %e, "could not stop the overdue run");
    }
}

/// Claim the run's end (label it reported, with its resourceVersion as precondition, and
/// keep the step results on it). `Ok(false)`: another replica or report already did.
async fn claim(
    st: &State,
    obj: &Value,
    ending: &Ending,
    owed: Option<&PendingSilence>,
) -> Result<Option<RunInfo>, KubeIoError> {
    let k8s = &st.k8s;
    let mut obj = obj.clone();
    for _ in 0..5 {
        let Some(info) = RunInfo::from_object(&obj) else {
            return Ok(None);
        };
        if obj
            .pointer(&format!(
                "/metadata/labels/{}",
                REPORTED_LABEL.replace('/', "~1")
            ))
            .is_some()
        {
            return Ok(None);
        }
        let Some(path) = object_path(info.engine, &info.namespace, &info.name) else {
            return Ok(None);
        };
        let mut patch = json!({"metadata": {"labels": {
            REPORTED_LABEL: "true",
            OUTCOME_LABEL: ending.outcome.as_str(),
        }}});
        if !ending.steps.is_empty() {
            let text = serde_json::to_string(&ending.steps).unwrap_or_default();
            if text.len() <= MAX_RESULTS_JSON {
                patch["metadata"]["annotations"] = json!({RESULTS_ANNOTATION: text});
            }
        }
        if let Some(owed) = owed {
            merge_into(&mut patch["metadata"], owed.record_patch());
        }
        if k8s
            .patch_if_unchanged(&path, &info.resource_version, patch)
            .await?
        {
            return Ok(Some(info));
        }
        // Changed (the engine updates status often) or gone: read again.
        match k8s.get_opt(&path).await? {
            Some(fresh) => obj = fresh,
            None => return Ok(None),
        }
    }
    Err(KubeIoError::Conflict(format!(
        "run {}",
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )))
}

/// Handle a run's end once: claim it, release the Lease and count the outcome, silence or
/// escalate, record metrics, history, a log line and an Event. `Ok(false)` when someone
/// else handled it.
/// The type of [`finish_boxed`].
pub type FinishRun =
    for<'a> fn(&'a State, &'a Value, Ending) -> BoxFuture<'a, Result<bool, KubeIoError>>;

/// [`finish`] as the state keeps it, for the local engine (which must not import
/// tracking, a part above it): [`State::finish_run`].
pub fn finish_boxed<'a>(
    st: &'a State,
    obj: &'a Value,
    ending: Ending,
) -> BoxFuture<'a, Result<bool, KubeIoError>> {
    Box::pin(finish(st, obj, ending))
}

pub async fn finish(st: &State, obj: &Value, ending: Ending) -> Result<bool, KubeIoError> {
    let ending =
        crate::heald::reporting::approval::rejected_ending(obj, cancelled_ending(obj, ending));
    let now = Timestamp::now();
    let current = st.policies.current();
    let owed = RunInfo::from_object(obj).and_then(|info| {
        let policy = current.set.policy(&info.policy)?;
        owed_to_alertmanager(st, &current, policy, &info, ending.outcome, now)
    });
    let Some(info) = claim(st, obj, &ending, owed.as_ref()).await? else {
        return Ok(false);
    };
    crate::heald::failpoint::hit("end-claimed");
    let policy = current.set.policy(&info.policy);
    let k8s = &st.k8s;
    if let Some(lease) = &info.lease {
        let end = match ending.outcome {
            RunOutcome::Succeeded => RunEnd::Success,
            RunOutcome::Cancelled => RunEnd::Cancelled,
            RunOutcome::Rejected => RunEnd::Rejected,
            RunOutcome::Failed | RunOutcome::TimedOut => RunEnd::Failure,
        };
        let window = policy
            .and_then(|p| p.guards.failure_budget)
            .map(|b| b.window)
            .unwrap_or(Duration::from_secs(86_400));
        let result = k8s
            .update_lease(&st.config.namespace, lease, |cur| {
                let mut l = cur?;
                l.release(&info.name, end, now, window);
                Some(l)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(correlation_id = %info.correlation_id, run = %info.name, lease, error = %e,
                "could not record the outcome on the Lease; its hold lapses at the deadline");
        }
    }
    if let Some(slots) = &info.in_flight_lease
        && let Err(e) =
            crate::heald::guards::lease::drop_holder(k8s, &st.config.namespace, slots, &info.name)
                .await
    {
        tracing::warn!(correlation_id = %info.correlation_id, run = %info.name, lease = %slots, error = %e,
            "could not free the run's in-flight slot; it lapses at the deadline");
    }
    let engine = info.engine.as_str();
    st.metrics.outcome(ending.outcome, engine, &info.policy);
    let mut reason = format!("run {} {} ({})", info.name, ending.outcome, ending.source);
    if !ending.message.is_empty() {
        reason.push_str(&format!(": {}", ending.message));
    }
    tracing::info!(
        correlation_id = %info.correlation_id,
        run = %info.name,
        policy = %info.policy,
        engine,
        outcome = ending.outcome.as_str(),
        source = ending.source,
        "{reason}"
    );
    st.history.push(Entry {
        time: now.to_string(),
        kind: "outcome",
        result: ending.outcome.as_str().into(),
        fingerprint: Some(info.fingerprint.clone()),
        alertname: Some(info.alertname.clone()),
        policy: Some(info.policy.clone()),
        engine: Some(engine.into()),
        namespace: Some(info.namespace.clone()),
        run: Some(info.name.clone()),
        correlation_id: Some(info.correlation_id.clone()),
        reason: reason.clone(),
    });
    {
        let (kind, reason_word) = match ending.outcome {
            RunOutcome::Succeeded => ("Normal", "RemediationSucceeded"),
            RunOutcome::Cancelled => ("Normal", "RemediationCancelled"),
            RunOutcome::Rejected => ("Warning", "RemediationRejected"),
            RunOutcome::Failed | RunOutcome::TimedOut => ("Warning", "RemediationFailed"),
        };
        let (api_version, object_kind) = run_object_type(info.engine);
        k8s.event(
            &EventTarget {
                api_version,
                kind: object_kind,
                namespace: &info.namespace,
                name: &info.name,
                correlation_id: &info.correlation_id,
                instance: &st.config.instance,
            },
            kind,
            reason_word,
            &reason,
        )
        .await;
    }
    let Some(policy) = policy else {
        tracing::warn!(run = %info.name, policy = %info.policy, "the policy is no longer loaded: no silence, no notification");
        return Ok(true);
    };
    if ending.outcome.escalates() {
        let n = Notification {
            api_version: "heal.dev/v1alpha1",
            kind: if ending.outcome == RunOutcome::Rejected {
                "RemediationRejected"
            } else {
                "RemediationFailed"
            },
            policy: info.policy.clone(),
            alertname: info.alertname.clone(),
            fingerprint: info.fingerprint.clone(),
            labels: info.alert_labels.clone(),
            run: info.name.clone(),
            namespace: info.namespace.clone(),
            engine: engine.into(),
            correlation_id: info.correlation_id.clone(),
            outcome: ending.outcome,
            message: truncate(&ending.message, 2000),
            steps: ending.steps.clone(),
            link: alert_link(st, &info.alertname),
            target: crate::heald::reporting::escalation::target_of(obj),
        };
        escalate(st, &current.set, policy, &n).await;
    }
    // After the humans are told: Alertmanager may take a while to answer.
    if let Some(owed) = &owed {
        deliver(st, &info, owed).await;
    }
    crate::heald::reporting::escalation::resolved(st, &current.set, policy, &info, ending.outcome)
        .await;
    Ok(true)
}

/// A run heald cancelled (because its alert resolved) that did not succeed ended
/// cancelled, however the engine words it (Argo: failed, "Stopped with strategy 'Stop'";
/// Tekton: `Cancelled`; the exit handler's report: failed; the deadline: timed out).
fn cancelled_ending(obj: &Value, mut ending: Ending) -> Ending {
    if matches!(ending.outcome, RunOutcome::Failed | RunOutcome::TimedOut)
        && let Some(why) = RunInfo::from_object(obj).and_then(|i| i.cancelled)
    {
        ending.outcome = RunOutcome::Cancelled;
        ending.message = if ending.message.is_empty() {
            format!("cancelled: {why}")
        } else {
            format!("cancelled: {why} ({})", ending.message)
        };
    }
    ending
}

/// Merge the JSON object `extra` into `target` (objects merged key by key).
fn merge_into(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                merge_into(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, e) => *t = e,
    }
}

/// What Alertmanager must be told about a run that ended with `outcome` at `now`: on
/// success, if the policy asks for it, the success silence (replacing the in-progress one);
/// otherwise the in-progress silence is expired. `None`: nothing (no Alertmanager, or no
/// silence either way).
fn owed_to_alertmanager(
    st: &State,
    loaded: &Loaded,
    policy: &Policy,
    info: &RunInfo,
    outcome: RunOutcome,
    now: Timestamp,
) -> Option<PendingSilence> {
    st.config.alertmanager_url.as_ref()?;
    let success_silence = policy.on_success.silence.filter(|_| !info.dry_run);
    match (outcome.is_success(), success_silence) {
        (true, Some(duration)) => {
            if info.alert_labels.is_empty() {
                tracing::warn!(correlation_id = %info.correlation_id, run = %info.name,
                    "the alert's labels are unknown: no success silence");
                return None;
            }
            let comment = format!(
                "heal run {} ({}) succeeded; policy {}; correlation id {}",
                info.name,
                info.engine.as_str(),
                info.policy,
                info.correlation_id
            );
            let mut body = silence_body(&info.alert_labels, now, duration, &comment);
            // Replace the in-progress silence rather than adding a second one.
            if let Some(id) = &info.silence_id {
                body["id"] = json!(id);
            }
            let until = body
                .get("endsAt")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(now);
            Some(PendingSilence::first(
                SilenceWork::Create { silence: body },
                now,
                until,
            ))
        }
        _ => {
            // A failure (or a success the policy does not silence): the alert fires again
            // once the in-progress silence, which lasts until the run's deadline, is gone.
            let id = info.silence_id.clone()?;
            let lasts = Duration::from_secs(
                info.deadline_seconds.unwrap_or(3600)
                    + loaded.renderer.options().report_timeout_seconds,
            ) + st.config.deadline_grace;
            let until = info.created.unwrap_or(now)
                + SignedDuration::from_secs(i64::try_from(lasts.as_secs()).unwrap_or(0));
            Some(PendingSilence::first(
                SilenceWork::Expire { id },
                now,
                until,
            ))
        }
    }
}

/// Try once to deliver what a run owes Alertmanager; clear it from the run when delivered
/// (or when trying again cannot help), leave it for a later pass otherwise.
async fn deliver(st: &State, info: &RunInfo, owed: &PendingSilence) {
    let k8s = &st.k8s;
    let (Some(am), Some(path)) = (
        st.config.alertmanager_url.as_deref(),
        object_path(info.engine, &info.namespace, &info.name),
    ) else {
        return;
    };
    let cid = info.correlation_id.as_str();
    let run = info.name.as_str();
    let now = Timestamp::now();
    let (kind, result) = match &owed.work {
        _ if owed.pointless(now) => {
            tracing::warn!(
                correlation_id = cid,
                run,
                attempts = owed.attempts,
                "gave up on Alertmanager: the silence would have ended by now"
            );
            if let Err(e) = k8s
                .send(
                    Method::PATCH,
                    &path,
                    Some(MERGE_PATCH),
                    Some(&clear_patch(None)),
                )
                .await
            {
                tracing::warn!(correlation_id = cid, run, error = %e, "could not clear the pending silence");
            }
            return;
        }
        SilenceWork::Create { silence } => {
            // A retry starts the silence when it is posted; it still ends as planned.
            let body = if owed.attempts > 1 {
                silence_at(silence, now)
            } else {
                silence.clone()
            };
            let mut result = create_silence(&st.http, am, &body, 1).await;
            if let Err(DeliveryError::Status { status: 404, .. }) = &result
                && body.get("id").is_some()
            {
                tracing::info!(
                    correlation_id = cid,
                    run,
                    "Alertmanager no longer has the in-progress silence; creating a new one"
                );
                result = create_silence(&st.http, am, &without_id(&body), 1).await;
            }
            ("silence", result.map(Some))
        }
        SilenceWork::Expire { id } => (
            "silence-expiry",
            expire_silence(&st.http, am, id).await.map(|()| None),
        ),
    };
    let clear = match result {
        Ok(id) => {
            st.metrics.delivery(kind, true);
            match &id {
                Some(id) => {
                    tracing::info!(correlation_id = cid, run, silence = %id, "silenced the alert")
                }
                None => {
                    tracing::info!(correlation_id = cid, run, "expired the in-progress silence")
                }
            }
            clear_patch(id.as_deref())
        }
        Err(e) if e.is_transient() => {
            st.metrics.delivery(kind, false);
            st.sweeps.note_pending();
            tracing::warn!(correlation_id = cid, run, attempts = owed.attempts, error = %e,
                next_at = %owed.next_at, "could not reach Alertmanager; trying again later");
            return;
        }
        Err(e) => {
            st.metrics.delivery(kind, false);
            tracing::warn!(correlation_id = cid, run, error = %e,
                "Alertmanager refused the silence; not trying again");
            clear_patch(None)
        }
    };
    if let Err(e) = k8s
        .send(Method::PATCH, &path, Some(MERGE_PATCH), Some(&clear))
        .await
    {
        // Left pending: a later pass delivers it again (replacing the silence by its id).
        tracing::warn!(correlation_id = cid, run, error = %e, "could not mark the silence delivered");
        st.sweeps.note_pending();
    }
}

/// Deliver the Alertmanager work that runs of `kind` in `namespace` still owe and whose
/// next attempt is due; each attempt is first claimed on the run (its attempt count and
/// next due time, under its resourceVersion), so one replica makes it. Returns how many
/// runs owed one when the look started.
async fn sweep_pending(st: &State, kind: Kind, namespace: &str) -> Result<usize, KubeIoError> {
    let k8s = &st.k8s;
    let Some(collection) = collection_path(kind, namespace) else {
        return Ok(0);
    };
    let selector = format!("{MANAGED_BY}=heald,{PENDING_LABEL}={PENDING}");
    let mut owed = 0;
    for mut obj in k8s.list(&collection, &selector).await? {
        // Items of a built-in type's list carry no apiVersion and kind.
        let (api_version, object_kind) = run_object_type(kind);
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(object_kind);
        let Some(info) = RunInfo::from_object(&obj) else {
            continue;
        };
        let Some(path) = object_path(kind, namespace, &info.name) else {
            continue;
        };
        let pending = match PendingSilence::from_object(&obj) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                tracing::warn!(run = %info.name, error = %e, "dropping an unreadable pending silence");
                let _ = k8s
                    .send(
                        Method::PATCH,
                        &path,
                        Some(MERGE_PATCH),
                        Some(&clear_patch(None)),
                    )
                    .await;
                continue;
            }
            None => {
                let _ = k8s
                    .send(
                        Method::PATCH,
                        &path,
                        Some(MERGE_PATCH),
                        Some(&clear_patch(None)),
                    )
                    .await;
                continue;
            }
        };
        let now = Timestamp::now();
        if !pending.due(now) && !pending.pointless(now) {
            owed += 1;
            continue;
        }
        let attempt = pending.retried(now);
        let patch = json!({"metadata": attempt.record_patch()});
        if !k8s
            .patch_if_unchanged(&path, &info.resource_version, patch)
            .await?
        {
            // Another replica is trying it (or the run changed): look again next pass.
            owed += 1;
            continue;
        }
        deliver(st, &info, &attempt).await;
        owed += 1;
    }
    Ok(owed)
}

/// Where a notification points to: the alert in Alertmanager, when heald knows it.
pub fn alert_link(st: &State, alertname: &str) -> Option<String> {
    st.config.alertmanager_url.as_ref().map(|am| {
        format!(
            "{am}/#/alerts?filter=%7Balertname%3D%22{}%22%7D",
            crate::kube_api::enc(alertname)
        )
    })
}

/// Send `n` to each of the policy's `onFailure.notify` notifiers, counting deliveries.
pub async fn escalate(
    st: &State,
    set: &crate::policy::PolicySet,
    policy: &crate::policy::Policy,
    n: &Notification,
) {
    for name in &policy.on_failure.notify {
        let Some(notifier) = set.notifier(name) else {
            tracing::warn!(notifier = %name, "unknown notifier");
            continue;
        };
        let kind = notifier.kind.as_str();
        match notify(&st.http, notifier, n).await {
            Ok(()) => {
                st.metrics.delivery(kind, true);
                tracing::info!(correlation_id = %n.correlation_id, run = %n.run, notifier = %name, "escalated");
            }
            Err(e) => {
                st.metrics.delivery(kind, false);
                tracing::warn!(correlation_id = %n.correlation_id, run = %n.run, notifier = %name, error = %e, "could not escalate");
            }
        }
    }
}

/// Delete this namespace's finished Tekton runs older than the retention period (Tekton
/// has no TTL of its own).
async fn prune_tekton(st: &State, ns: &str) -> Result<usize, KubeIoError> {
    let k8s = &st.k8s;
    let Some(collection) = collection_path(Kind::Tekton, ns) else {
        return Ok(0);
    };
    let reported = format!("{MANAGED_BY}=heald,{REPORTED_LABEL}");
    let retention = SignedDuration::from_secs(
        i64::try_from(st.config.tekton_retention.as_secs()).unwrap_or(i64::MAX / 4),
    );
    let now = Timestamp::now();
    let mut pruned = 0;
    for obj in k8s.list(&collection, &reported).await? {
        let done = obj
            .pointer("/status/completionTime")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Timestamp>().ok());
        let Some(done) = done else {
            continue;
        };
        // A run that still owes Alertmanager a silence is kept until that is settled.
        let owes = obj
            .pointer(&format!(
                "/metadata/labels/{}",
                PENDING_LABEL.replace('/', "~1")
            ))
            .is_some();
        if now.duration_since(done) < retention || owes {
            continue;
        }
        let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let Some(path) = object_path(Kind::Tekton, ns, name) else {
            continue;
        };
        match k8s.send(Method::DELETE, &path, None, None).await {
            Ok(_) => pruned += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(run = name, error = %e, "could not prune the finished run"),
        }
    }
    Ok(pruned)
}
