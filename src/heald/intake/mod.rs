//! Performing the decision for each alert of a webhook: match policies, build and render
//! the plan, then **observe** (the target's Lease, the run when the Lease names it, the
//! rate budget), **decide** ([`decide`], pure) and **act**: the decision's
//! [`effects`](crate::heald::intake::decide::effects), in their order, performed by one function.
//! The hold and the intent to create the run (the alert itself) are written to the Lease
//! before anything else changes, so a heald killed at any later point leaves a record from
//! which any replica ([`intents`](crate::heald::intake::intents), or a redelivery) creates the run. A
//! resolved alert whose policy says `onResolved: cancel` cancels its unfinished run. Each
//! alert is handled in its own task, so an answer that is cut short (client gone, timeout)
//! never stops the effects half way.

pub mod decide;
pub mod deferred;
pub mod intents;
pub mod owner;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::alert::Alert;
use crate::heald::engines::SubmitError;
use crate::heald::engines::runs::{RunInfo, RunOutcome, object_path, run_object_type};
use crate::heald::failpoint;
use crate::heald::guards::lease::LeaseIo;
use crate::heald::guards::lease::{LeaseState, RunEnd, lease_name};
use crate::heald::guards::ratelimit::Admit;
use crate::heald::intake::decide::{
    Decision, Effect, Observed, RateScope, Verdict, completes_intent, decide, effects,
    hold_being_created, stale_hold,
};
use crate::heald::kube_io::{Budget, EventTarget, K8s, KubeIoError, answer_due};
use crate::heald::policies::Loaded;
use crate::heald::reporting::alertmanager_http::{
    create_silence, expire_silence, find_silences, progress_marker, silence_body,
};
use crate::heald::reporting::notify_http::Notification;
use crate::heald::reporting::remediations::Entry;
use crate::heald::state::State;
use crate::heald::tracking::alert_link;
use crate::heald::{
    ALERT_LABELS_ANNOTATION, DEADLINE_ANNOTATION, LEASE_ANNOTATION, REPORTED_LABEL,
    SILENCE_ANNOTATION,
};
use crate::kube_api::ApiError;
use crate::plan::Plan;
use crate::policy::{self, OnResolved, Policy};
use crate::render::Engine;

/// Longest JSON of alert labels kept on a run (for the silence after success).
const MAX_LABELS_JSON: usize = 16 * 1024;

/// One line of the answer to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's name.
    pub alertname: String,
    /// The policy that matched, if any.
    pub policy: Option<String>,
    /// What heald did.
    pub decision: Decision,
    /// The engine of the run.
    pub engine: Option<String>,
    /// The namespace of the run.
    pub namespace: Option<String>,
    /// The run started or found.
    pub run: Option<String>,
    /// Correlation id of the remediation.
    pub correlation_id: Option<String>,
    /// Why.
    pub reason: String,
}

impl DecisionRecord {
    /// A decision about an alert before any policy's plan: no policy, engine or run.
    fn unplanned(
        fingerprint: String,
        alertname: String,
        decision: Decision,
        reason: String,
    ) -> DecisionRecord {
        DecisionRecord {
            fingerprint,
            alertname,
            policy: None,
            decision,
            engine: None,
            namespace: None,
            run: None,
            correlation_id: None,
            reason,
        }
    }
}

/// Nothing was decided because a dependency is down: Alertmanager should retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Decide and act for every alert, concurrently; the records come back in alert order.
///
/// With `answer_within` (the webhook's `--request-timeout`) the answer is on time whatever
/// the storm: an alert whose Kubernetes requests cannot all be sent under `--kube-qps`
/// before half of it is [deferred](crate::heald::intake::deferred) without any effect, and an alert
/// still being decided at 70% of it is answered `deferred` while its decision goes on in
/// the background (if that then needs a retry, the alert joins the deferred queue). With
/// the default 10 s that is within Alertmanager's own limit for a notification (its
/// retries included): max(`group_interval`, 10 s).
pub async fn handle_alerts(
    state: &Arc<State>,
    alerts: Vec<Alert>,
    answer_within: Option<Duration>,
) -> Result<Vec<DecisionRecord>, Unavailable> {
    let loaded = state.policies.current();
    let started = Instant::now();
    let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = alerts
        .into_iter()
        .map(|alert| {
            let state = Arc::clone(state);
            let loaded = Arc::clone(&loaded);
            let late = Arc::clone(&late);
            let head = (alert.fingerprint.clone(), alert.name().to_string());
            // A failure hands the alert back: it may join the deferred queue.
            let work = async move {
                match handle_alert(&state, &loaded, &alert).await {
                    Ok(records) => Ok(records),
                    Err(e) if late.load(std::sync::atomic::Ordering::SeqCst) => {
                        tracing::warn!(fingerprint = %alert.fingerprint, error = %e,
                            "an alert answered deferred cannot be decided yet; it joins the deferred queue");
                        state.deferred.push(&alert);
                        Err((e, None))
                    }
                    Err(e) => Err((e, Some(alert))),
                }
            };
            let handle = match answer_within {
                Some(t) => tokio::spawn(Budget::scope(started + t.mul_f64(0.5), work)),
                None => tokio::spawn(work),
            };
            (head, handle)
        })
        .collect();
    let mut out = Vec::new();
    let mut failure = None;
    let mut failed = Vec::new();
    for ((fingerprint, alertname), mut h) in handles {
        let joined = match answer_within {
            None => (&mut h).await,
            Some(t) => match tokio::time::timeout_at(started + t.mul_f64(0.7), &mut h).await {
                Ok(j) => j,
                Err(_) => {
                    late.store(true, std::sync::atomic::Ordering::SeqCst);
                    if h.is_finished() {
                        (&mut h).await
                    } else {
                        let rec = DecisionRecord::unplanned(
                            fingerprint,
                            alertname,
                            Decision::Deferred,
                            "still being decided when the answer was due; heald goes on in \
                             the background"
                                .into(),
                        );
                        note(state, &rec);
                        out.push(rec);
                        continue;
                    }
                }
            },
        };
        match joined {
            Ok(Ok(records)) => out.extend(records),
            Ok(Err((e, alert))) => {
                if let Some(alert) = alert {
                    failed.push((alert, e.0.clone()));
                }
                failure = Some(e);
            }
            Err(e) => failure = Some(Unavailable(format!("an alert's handler failed: {e}"))),
        }
    }
    match failure {
        // Some alerts were decided and some need a retry: answering 503 would make
        // Alertmanager send the whole group again (for at most 10 s); the ones that need
        // it are deferred instead, and the answer is on time.
        Some(_) if answer_within.is_some() && !out.is_empty() && !failed.is_empty() => {
            for (alert, why) in failed {
                let queued = state.deferred.push(&alert);
                let reason = if queued {
                    format!("{why}; it is decided again as soon as possible")
                } else {
                    format!("{why}; Alertmanager's next notification of its group brings it again")
                };
                let rec = DecisionRecord::unplanned(
                    alert.fingerprint.clone(),
                    alert.name().to_string(),
                    Decision::Deferred,
                    reason,
                );
                note(state, &rec);
                out.push(rec);
            }
            Ok(out)
        }
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Decide and act for one alert: one record per matched policy, or one `no-match`.
pub async fn handle_alert(
    state: &Arc<State>,
    loaded: &Loaded,
    alert: &Alert,
) -> Result<Vec<DecisionRecord>, Unavailable> {
    let matches = policy::decide(&loaded.set, alert);
    if matches.is_empty() {
        let rec = DecisionRecord::unplanned(
            alert.fingerprint.clone(),
            alert.name().to_string(),
            Decision::NoMatch,
            format!("no policy answers this {} alert", alert.status),
        );
        note(state, &rec);
        return Ok(vec![rec]);
    }
    let mut out = Vec::with_capacity(matches.len());
    for m in matches {
        let rec = match m.decision {
            policy::Decision::Resolved => handle_resolved(state, m.policy, alert).await?,
            policy::Decision::Matched => handle_match(state, loaded, m.policy, alert).await?,
        };
        note(state, &rec);
        out.push(rec);
    }
    Ok(out)
}

/// A resolved alert that a firing-only policy answered: nothing to do, unless the policy
/// says `onResolved: cancel` and the run of this alert episode has not finished; then it is
/// cancelled (Argo `spec.shutdown: Stop`, Tekton `spec.status: Cancelled`, a local run
/// starts no further step) and its end is reported `cancelled`.
pub async fn handle_resolved(
    state: &Arc<State>,
    policy: &Policy,
    alert: &Alert,
) -> Result<DecisionRecord, Unavailable> {
    let mut rec = DecisionRecord {
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.name().to_string(),
        policy: Some(policy.name.clone()),
        decision: Decision::Resolved,
        engine: None,
        namespace: None,
        run: None,
        correlation_id: None,
        reason: "the alert resolved; nothing to do".into(),
    };
    if policy.on_resolved != OnResolved::Cancel {
        return Ok(rec);
    }
    let k8s = &state.k8s;
    let engine = policy.engine.unwrap_or(state.config.engine);
    let starts_at = alert.starts_at_rfc3339();
    let run = policy::run_name(&policy.name, &alert.fingerprint, &starts_at);
    let namespace = policy
        .run_namespace
        .clone()
        .unwrap_or_else(|| state.plan_defaults.run_namespace.clone());
    rec.engine = Some(engine.as_str().into());
    rec.namespace = Some(namespace.clone());
    rec.run = Some(run.clone());
    rec.correlation_id = Some(policy::correlation_id(
        &policy.name,
        &alert.fingerprint,
        &starts_at,
    ));
    // One decision at a time per run in this replica (a firing delivery may be starting it).
    let _deciding = state.deciding.lock(&run).await;
    let found = match find_run(k8s, &run_engines(policy, engine), &namespace, &run).await {
        Ok(f) => f,
        Err(e) if e.is_transient() => return Err(unavailable(e)),
        Err(e) => {
            rec.decision = Decision::Error;
            rec.reason = format!("the alert resolved, but run {run} cannot be read: {e}");
            return Ok(rec);
        }
    };
    let Some((engine, obj)) = found else {
        rec.reason = format!("the alert resolved; run {run} was never created: nothing to cancel");
        return Ok(rec);
    };
    rec.engine = Some(engine.as_str().into());
    let finished = matches!(
        state.engines.get(engine).outcome(&obj),
        crate::heald::engines::runs::RunState::Finished(..)
    );
    if !run_in_flight(&obj) || finished {
        rec.reason = format!("the alert resolved; run {run} had already ended: nothing to cancel");
        return Ok(rec);
    }
    if let Some(why) = RunInfo::from_object(&obj).and_then(|i| i.cancelled) {
        rec.reason = format!("the alert resolved; run {run} is already being cancelled ({why})");
        return Ok(rec);
    }
    let why = format!(
        "alert {} ({}) resolved before the run finished",
        alert.name(),
        alert.fingerprint
    );
    match state
        .engines
        .get(engine)
        .cancel(&obj, &why, crate::heald::engines::Cancel::Stop)
        .await
    {
        Ok(true) => {
            let how = match engine {
                Engine::Argo => "spec.shutdown: Stop",
                Engine::Tekton => "spec.status: Cancelled",
                Engine::Local => "no further step starts",
            };
            rec.reason =
                format!("the alert resolved; cancelled run {run}, which had not finished ({how})");
            Ok(rec)
        }
        Ok(false) => {
            rec.reason =
                format!("the alert resolved; run {run} ended meanwhile: nothing to cancel");
            Ok(rec)
        }
        Err(e) if e.is_transient() => Err(unavailable(e)),
        Err(e) => {
            rec.decision = Decision::Error;
            rec.reason = format!("the alert resolved, but run {run} could not be cancelled: {e}");
            Ok(rec)
        }
    }
}

/// Count, log and remember a decision.
pub(crate) fn note(state: &State, rec: &DecisionRecord) {
    state.metrics.decision(
        rec.decision.as_str(),
        rec.engine.as_deref().unwrap_or(""),
        rec.policy.as_deref().unwrap_or(""),
    );
    tracing::info!(
        correlation_id = rec.correlation_id.as_deref().unwrap_or(""),
        fingerprint = %rec.fingerprint,
        alertname = %rec.alertname,
        policy = rec.policy.as_deref().unwrap_or(""),
        decision = rec.decision.as_str(),
        engine = rec.engine.as_deref().unwrap_or(""),
        run = rec.run.as_deref().unwrap_or(""),
        "{}",
        rec.reason
    );
    state.history.push(Entry {
        time: Timestamp::now().to_string(),
        kind: "decision",
        result: rec.decision.as_str().into(),
        fingerprint: Some(rec.fingerprint.clone()),
        alertname: Some(rec.alertname.clone()),
        policy: rec.policy.clone(),
        engine: rec.engine.clone(),
        namespace: rec.namespace.clone(),
        run: rec.run.clone(),
        correlation_id: rec.correlation_id.clone(),
        reason: rec.reason.clone(),
    });
}

/// The record of a decision about `plan`.
fn record(plan: &Plan, engine: Engine, v: Verdict) -> DecisionRecord {
    DecisionRecord {
        fingerprint: plan.fingerprint.clone(),
        alertname: plan.alertname.clone(),
        policy: Some(plan.policy.clone()),
        decision: v.decision,
        engine: Some(engine.as_str().into()),
        namespace: Some(plan.run_namespace.clone()),
        run: Some(plan.run_name.clone()),
        correlation_id: Some(plan.correlation_id.clone()),
        reason: v.reason,
    }
}

fn error_before_plan(alert: &Alert, policy: &Policy, reason: String) -> DecisionRecord {
    DecisionRecord {
        fingerprint: alert.fingerprint.clone(),
        alertname: alert.name().to_string(),
        policy: Some(policy.name.clone()),
        decision: Decision::Error,
        engine: None,
        namespace: None,
        run: None,
        correlation_id: None,
        reason,
    }
}

fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable(format!("the Kubernetes API is unavailable: {e}"))
}

/// How long a run holds its target: its deadline plus the time it gets to report.
pub fn hold_duration(state: &State, loaded: &Loaded, plan: &Plan) -> Duration {
    Duration::from_secs(plan.run_deadline_seconds())
        + Duration::from_secs(loaded.renderer.options().report_timeout_seconds)
        + state.config.deadline_grace
}

/// The verdict for an empty submission bucket.
fn rate_limited(scope: &RateScope) -> Verdict {
    let reason = match scope {
        RateScope::Global => "the global submission rate limit is reached".to_string(),
        RateScope::Namespace(ns) => {
            format!("the submission rate limit of namespace {ns:?} is reached")
        }
    };
    Verdict {
        decision: Decision::RateLimited,
        reason,
    }
}

/// The rate-limit bucket of a target: its namespace (`-` for cluster-scoped targets).
fn bucket(plan: &Plan) -> &str {
    if plan.target.namespace.is_empty() {
        "-"
    } else {
        &plan.target.namespace
    }
}

/// Decide and act for one alert and one matched policy: **observe** (the target's Lease,
/// the run when the Lease says it holds the target, the rate budget), **decide**
/// ([`decide`], pure), then **act**: the [`effects`] of the decision, in their order,
/// by [`act`].
pub async fn handle_match(
    state: &Arc<State>,
    loaded: &Loaded,
    policy: &Policy,
    alert: &Alert,
) -> Result<DecisionRecord, Unavailable> {
    handle_match_from(state, loaded, policy, alert, Intake::Webhook).await
}

/// Where a decision comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// A webhook (or a deferred alert of one).
    Webhook,
    /// An intent left in a Lease by a replica that stopped: its token was taken already.
    Intent,
}

/// [`handle_match`] for a decision from `from`.
pub async fn handle_match_from(
    state: &Arc<State>,
    loaded: &Loaded,
    policy: &Policy,
    alert: &Alert,
    from: Intake,
) -> Result<DecisionRecord, Unavailable> {
    // What was taken for a submission and not spent on a run: given back at the end,
    // whatever the answer.
    let mut taken = Taken::default();
    let out = observe_decide_act(state, loaded, policy, alert, from, &mut taken).await;
    if let Ok(rec) = &out {
        crate::heald::reporting::escalation::stood_down(
            state,
            policy,
            alert,
            rec.decision.as_str(),
            &rec.reason,
        );
    }
    let k8s = &state.k8s;
    if let Some(ns) = taken.token {
        state
            .limiter
            .refund(k8s, &state.config.namespace, &state.config.instance, &ns)
            .await;
    }
    if let Some((slots, run)) = taken.slot
        && let Err(e) =
            crate::heald::guards::lease::drop_holder(k8s, &state.config.namespace, &slots, &run)
                .await
    {
        tracing::warn!(run, lease = %slots, error = %e, "could not free an in-flight slot; it lapses at its deadline");
    }
    k8s.return_unused();
    out
}

/// What a decision took for a submission and has not spent on a run yet.
#[derive(Debug, Default)]
struct Taken {
    /// The namespace bucket a submission token was taken from (and the global one).
    token: Option<String>,
    /// The policy's in-flight Lease and the run holding a slot in it.
    slot: Option<(String, String)>,
}

/// Kubernetes requests an alert's observation sends at most, usually, besides reading
/// Leases the watch does not keep: the run, when the Lease says it holds the target.
const OBSERVE_REQUESTS: u32 = 1;
/// Kubernetes requests a submission's effects send, usually: the two bucket tokens, the
/// hold, the run and its Event.
const ACT_REQUESTS: u32 = 5;

/// The record of an alert deferred for want of Kubernetes request budget, kept to be
/// decided as the budget frees up.
fn defer(state: &State, plan: &Plan, engine: Engine, alert: &Alert) -> DecisionRecord {
    let kept = state.deferred.push(alert);
    let reason = if kept {
        format!(
            "heald's Kubernetes request budget (--kube-qps) cannot decide this alert before \
             the answer is due; it is decided as the budget frees up ({} waiting)",
            state.deferred.len()
        )
    } else {
        format!(
            "heald's Kubernetes request budget (--kube-qps) cannot decide this alert before \
             the answer is due, and {} alerts already wait: Alertmanager's next notification \
             of its group brings it again",
            crate::heald::intake::deferred::CAPACITY
        )
    };
    record(
        plan,
        engine,
        Verdict {
            decision: Decision::Deferred,
            reason,
        },
    )
}

async fn observe_decide_act(
    state: &Arc<State>,
    loaded: &Loaded,
    policy: &Policy,
    alert: &Alert,
    from: Intake,
    taken: &mut Taken,
) -> Result<DecisionRecord, Unavailable> {
    let engine = policy.engine.unwrap_or(state.config.engine);
    let plan = match policy::plan(policy, alert, &state.plan_defaults) {
        Ok(p) => p,
        Err(e) => return Ok(error_before_plan(alert, policy, e.to_string())),
    };
    let err = |reason: String| {
        Ok(record(
            &plan,
            engine,
            Verdict {
                decision: Decision::Error,
                reason,
            },
        ))
    };
    let known = || {
        state.known.contains(&plan.run_name).then(|| {
            let v = Verdict {
                decision: Decision::Duplicate,
                reason: format!("run {} already exists", plan.run_name),
            };
            record(&plan, engine, v)
        })
    };
    if let Some(rec) = known() {
        return Ok(rec);
    }
    // Repeats of this alert episode arriving meanwhile wait here for this decision.
    let _deciding = state.deciding.lock(&plan.run_name).await;
    if let Some(rec) = known() {
        return Ok(rec);
    }
    if !plan.target.namespace.is_empty()
        && let Err(why) = crate::guard::check_namespace_allowed(
            &plan.target.namespace,
            &policy.guards.allow_namespaces,
        )
    {
        return err(why);
    }
    let submitter = Arc::clone(state.engines.get(engine));
    let k8s = &state.k8s;
    let lease_ns = &state.config.namespace;
    let ns_bucket = bucket(&plan).to_string();
    let ns_bucket = ns_bucket.as_str();
    // The submission buckets as this replica last saw them: empty ones refuse before any
    // request is spent on this alert (they only refill; nobody else gives tokens), and no
    // more alerts go on at once than they have tokens. An intent being completed took its
    // token when its hold was written.
    let _admitted = if state.config.dry_run || from == Intake::Intent {
        None
    } else {
        match state.limiter.admit(ns_bucket, answer_due()).await {
            Admit::Go(a) => Some(a),
            Admit::Refused(scope) => return Ok(record(&plan, engine, rate_limited(&scope))),
            Admit::Later => return Ok(defer(state, &plan, engine, alert)),
        }
    };
    // `target: owner` steps: the owner, found now, is what the hold covers.
    let owned = if policy.needs_owner() {
        if !k8s.reserve(owner::OWNER_READS).await {
            return Ok(defer(state, &plan, engine, alert));
        }
        match owner::find(k8s, &plan.target).await {
            Ok(Ok(found)) => {
                match policy::plan_with_owner(policy, alert, &state.plan_defaults, Some(&found)) {
                    Ok(p) => Some(p),
                    Err(e) => return err(e.to_string()),
                }
            }
            Ok(Err(why)) => return err(format!("cannot act on the owner: {why}")),
            Err(e) if e.is_transient() => return Err(unavailable(e)),
            Err(e) => return err(e.to_string()),
        }
    } else {
        None
    };
    let plan = owned.unwrap_or(plan);
    let err = |reason: String| {
        Ok(record(
            &plan,
            engine,
            Verdict {
                decision: Decision::Error,
                reason,
            },
        ))
    };
    let lease = lease_name(&policy.name, &plan.target);
    let hold = hold_duration(state, loaded, &plan);
    // Rendered once admitted: in a storm, most alerts are refused before this.
    let rendered = match loaded.renderer.render(&plan, engine) {
        Ok(r) => r,
        Err(e) => return err(format!("the run cannot be rendered: {e}")),
    };
    // The policy's in-flight Lease, when it caps its unfinished runs.
    let slots = policy
        .guards
        .max_in_flight
        .map(|_| crate::heald::guards::lease::in_flight_lease_name(&policy.name));
    // Leases the watch keeps cost no read.
    let lease_reads = if k8s.leases().is_synced() {
        0
    } else {
        1 + u32::from(slots.is_some())
    };
    if !k8s.reserve(OBSERVE_REQUESTS + lease_reads).await {
        return Ok(defer(state, &plan, engine, alert));
    }
    for _ in 0..5 {
        // Observe.
        let current = match k8s.read_lease(lease_ns, &lease).await {
            Ok(l) => l,
            Err(e) if e.is_transient() => return Err(unavailable(e)),
            Err(e) => return err(e.to_string()),
        };
        let slots_current = match &slots {
            Some(name) => match k8s.read_lease(lease_ns, name).await {
                Ok(l) => l,
                Err(e) if e.is_transient() => return Err(unavailable(e)),
                Err(e) => return err(e.to_string()),
            },
            None => None,
        };
        let now = Timestamp::now();
        let in_flight = slots.as_ref().map(|_| {
            slots_current.as_ref().map_or(0, |l| {
                l.active_holders(now)
                    .filter(|h| h.run != plan.run_name)
                    .count()
            })
        });
        let mut seen = Observed {
            now,
            run_name: &plan.run_name,
            lease: current.as_ref(),
            run_known: false,
            run_absent: false,
            run_kept_for: run_kept_for(state, loaded, engine),
            creating_within: creating_within(state),
            in_flight,
            rate: state.limiter.check(ns_bucket, now),
            dry_run: state.config.dry_run,
        };
        // The Lease says this run holds the target: does the run exist? A heald that
        // stopped between taking the Lease and creating the run leaves its intent there.
        if current
            .as_ref()
            .is_some_and(|l| l.holds(&plan.run_name, now))
        {
            match find_run(
                k8s,
                &run_engines(policy, engine),
                &plan.run_namespace,
                &plan.run_name,
            )
            .await
            {
                Ok(Some(_)) => seen.run_known = true,
                Ok(None) => seen.run_absent = true,
                Err(e) if e.is_transient() => return Err(unavailable(e)),
                Err(e) => {
                    tracing::warn!(correlation_id = %plan.correlation_id, run = %plan.run_name, error = %e,
                        "cannot tell whether the run holding the target exists; answering duplicate");
                    seen.run_known = true;
                }
            }
        }
        // Decide.
        let verdict = decide(policy, &seen);
        let completing = completes_intent(&seen);
        // A hold without an intent (written by an older heald, or for an alert too large
        // to record) is waited for while its replica may still be creating the run.
        if verdict.decision == Decision::Duplicate && !completing && hold_being_created(&seen) {
            match wait_for_run(state, k8s, policy, engine, &plan, &seen).await {
                Ok(true) => {
                    state.known.insert(&plan.run_name);
                    return Ok(record(&plan, engine, verdict));
                }
                Ok(false)
                    if hold_being_created(&Observed {
                        now: Timestamp::now(),
                        ..seen.clone()
                    }) =>
                {
                    return Err(Unavailable(format!(
                        "run {} holds its target but does not exist yet; the heald \
                         that took the Lease may still be creating it: retry",
                        plan.run_name
                    )));
                }
                // Long enough: read the Lease again and take the hold over.
                Ok(false) => continue,
                Err(e) if e.is_transient() => return Err(unavailable(e)),
                Err(e) => return err(e.to_string()),
            }
        }
        if verdict.decision == Decision::Submitted && completing {
            tracing::warn!(correlation_id = %plan.correlation_id, run = %plan.run_name, lease,
                "the target's Lease records the intent to create this run, which does not exist: creating it");
        } else if verdict.decision == Decision::Submitted && stale_hold(&seen) {
            tracing::warn!(correlation_id = %plan.correlation_id, run = %plan.run_name, lease,
                "the target's Lease is held for a run that was never created; taking the hold over");
        }
        match verdict.decision {
            Decision::Submitted => {}
            Decision::DryRun => {
                tracing::info!(
                    correlation_id = %plan.correlation_id,
                    run = %plan.run_name,
                    manifest = %rendered.yaml,
                    "dry run: not submitted"
                );
                return Ok(record(&plan, engine, verdict));
            }
            Decision::Duplicate => {
                state.known.insert(&plan.run_name);
                return Ok(record(&plan, engine, verdict));
            }
            _ => return Ok(record(&plan, engine, verdict)),
        }
        if !k8s.reserve(ACT_REQUESTS).await {
            return Ok(defer(state, &plan, engine, alert));
        }
        // The hold being completed took its token when it was written.
        if !completing && taken.token.is_none() {
            match state
                .limiter
                .take(k8s, lease_ns, &state.config.instance, ns_bucket)
                .await
            {
                Ok(Ok(())) => taken.token = Some(ns_bucket.to_string()),
                Ok(Err(scope)) => return Ok(record(&plan, engine, rate_limited(&scope))),
                Err(e) if e.is_transient() => return Err(unavailable(e)),
                Err(e) => return err(e.to_string()),
            }
        }
        // Act.
        let silences =
            state.config.alertmanager_url.is_some() && !plan.dry_run && !alert.labels.is_empty();
        let cx = Acting {
            state,
            loaded,
            policy,
            alert,
            plan: &plan,
            engine,
            run: &rendered.value,
            submitter: &submitter,
            k8s,
            lease: &lease,
            current: current.as_ref(),
            slots: slots.as_deref().map(|name| (name, slots_current.as_ref())),
            hold,
        };
        match act(
            &cx,
            &effects(verdict.decision, completing, silences, slots.is_some()),
            verdict,
            taken,
        )
        .await?
        {
            Acted::Done(rec) => return Ok(rec),
            Acted::LeaseChanged => continue,
        }
    }
    Err(Unavailable(format!(
        "Lease {lease} kept changing under heald; retry"
    )))
}

/// What [`act`] needs: the decision's subject and the clients.
struct Acting<'a> {
    state: &'a Arc<State>,
    loaded: &'a Loaded,
    policy: &'a Policy,
    alert: &'a Alert,
    plan: &'a Plan,
    engine: Engine,
    /// The rendered run.
    run: &'a Value,
    submitter: &'a Arc<dyn crate::heald::engines::Engine>,
    k8s: &'a K8s,
    lease: &'a str,
    /// The Lease as observed (the hold is written over it, under its resourceVersion).
    current: Option<&'a LeaseState>,
    /// The policy's in-flight Lease and its state as observed (`guards.maxInFlight`).
    slots: Option<(&'a str, Option<&'a LeaseState>)>,
    hold: Duration,
}

/// How acting ended.
enum Acted {
    /// The answer for this alert.
    Done(DecisionRecord),
    /// Another replica changed the Lease first: observe and decide again.
    LeaseChanged,
}

/// Perform `effects` in order (see [`effects`] for why that order keeps the invariant), and
/// undo what a failed creation leaves: the hold is dropped and the silence expired. Each
/// gap between two effects has a [failpoint](crate::heald::failpoint) for the kill tests.
async fn act(
    cx: &Acting<'_>,
    effects: &[Effect],
    mut verdict: Verdict,
    taken: &mut Taken,
) -> Result<Acted, Unavailable> {
    let (state, plan, k8s) = (cx.state, cx.plan, cx.k8s);
    let mut engine = cx.engine;
    // The in-progress silence, and whether this call made it (a found one belongs to the
    // interrupted creation this call completes).
    let mut silence: Option<String> = None;
    let mut made_silence = false;
    let mut submitted: Option<Result<crate::heald::engines::Submitted, SubmitError>> = None;
    for effect in effects {
        match effect {
            Effect::TakeSlot => {
                let Some((name, observed)) = cx.slots else {
                    continue;
                };
                let mut next = observed.cloned().unwrap_or_else(|| {
                    LeaseState::new(
                        name,
                        &cx.policy.name,
                        &crate::heald::guards::lease::in_flight_target(&cx.policy.name),
                    )
                });
                next.acquire(&plan.run_name, Timestamp::now(), cx.hold);
                match k8s.write_lease(&state.config.namespace, &next).await {
                    Ok(_) => taken.slot = Some((name.to_string(), plan.run_name.clone())),
                    // Another replica took or freed a slot: count again.
                    Err(KubeIoError::Conflict(_)) => return Ok(Acted::LeaseChanged),
                    Err(e) if e.is_transient() => return Err(unavailable(e)),
                    Err(e) => {
                        return Ok(Acted::Done(record(
                            plan,
                            engine,
                            Verdict {
                                decision: Decision::Error,
                                reason: e.to_string(),
                            },
                        )));
                    }
                }
            }
            Effect::TakeHold => {
                let mut next = cx
                    .current
                    .cloned()
                    .unwrap_or_else(|| LeaseState::new(cx.lease, &cx.policy.name, &plan.target));
                next.acquire_with_intent(
                    &plan.run_name,
                    Timestamp::now(),
                    cx.hold,
                    Some(intent_alert(cx.alert)),
                );
                match k8s.write_lease(&state.config.namespace, &next).await {
                    Ok(_) => {}
                    // The token stays for the next attempt.
                    Err(KubeIoError::Conflict(_)) => return Ok(Acted::LeaseChanged),
                    Err(e) => {
                        if e.is_transient() {
                            return Err(unavailable(e));
                        }
                        return Ok(Acted::Done(record(
                            plan,
                            engine,
                            Verdict {
                                decision: Decision::Error,
                                reason: e.to_string(),
                            },
                        )));
                    }
                }
                failpoint::hit("hold-taken");
            }
            Effect::FindSilence => {
                silence = find_progress_silence(state, cx.alert, plan).await;
            }
            Effect::Silence => {
                if silence.is_none() {
                    silence = progress_silence(state, cx.alert, plan, cx.hold).await;
                    made_silence = silence.is_some();
                    if made_silence {
                        failpoint::hit("silence-created");
                    }
                }
            }
            Effect::CreateRun => {
                let (result, used) = create_run(cx, silence.as_deref(), &mut verdict).await;
                engine = used;
                if let Ok(created) = &result {
                    // The token and the slot are spent on this run (its end frees the slot).
                    taken.token = None;
                    taken.slot = None;
                    state.known.insert(&plan.run_name);
                    if plan.approval.is_some() {
                        crate::heald::reporting::approval::ask(
                            state,
                            &cx.policy.name,
                            plan,
                            engine,
                            &cx.alert.labels,
                            created.object.as_ref(),
                        );
                    }
                    if engine == Engine::Local {
                        // The first step starts before the answer and the Event go out.
                        match &created.object {
                            Some(obj) => {
                                crate::heald::engines::local::start(state, obj, false);
                            }
                            None => {
                                tracing::warn!(run = %plan.run_name, "the created local run was not returned; the tracker resumes it once its heartbeat is stale")
                            }
                        }
                    }
                    failpoint::hit("run-created");
                }
                let failed = result.is_err();
                submitted = Some(result);
                if failed {
                    break;
                }
            }
            Effect::RecordEvent => {
                let (api_version, kind) = run_object_type(engine);
                k8s.event(
                    &EventTarget {
                        api_version,
                        kind,
                        namespace: &plan.run_namespace,
                        name: &plan.run_name,
                        correlation_id: &plan.correlation_id,
                        instance: &state.config.instance,
                    },
                    "Normal",
                    "RemediationSubmitted",
                    &format!(
                        "heald started {} for alert {} ({}) on {}/{}",
                        plan.policy,
                        plan.alertname,
                        plan.fingerprint,
                        plan.target.kind,
                        plan.target.name
                    ),
                )
                .await;
                failpoint::hit("event-recorded");
            }
        }
    }
    let Some(submitted) = submitted else {
        return Ok(Acted::Done(record(plan, engine, verdict)));
    };
    let rec = match submitted {
        Ok(_) => record(plan, engine, verdict),
        Err(SubmitError::AlreadyExists(what)) => {
            // Another replica created it meanwhile, with its own silence.
            if made_silence && let Some(id) = &silence {
                expire(state, id).await;
            }
            state.known.insert(&plan.run_name);
            // A run heald is still following keeps the hold (the tracker releases it
            // when the run ends); one that ended, or is not heald's, leaves it free.
            let in_flight =
                match find_run(k8s, &[engine], &plan.run_namespace, &plan.run_name).await {
                    Ok(Some((_, obj))) => run_in_flight(&obj),
                    _ => false,
                };
            if in_flight {
                // The run that exists holds the same slot (slots are by run name).
                taken.slot = None;
            } else {
                release(state, cx.lease, &plan.run_name, RunEnd::Existing).await;
            }
            let v = Verdict {
                decision: Decision::Duplicate,
                reason: format!("{what}: this alert episode already has its run"),
            };
            record(plan, engine, v)
        }
        Err(SubmitError::Unavailable(msg)) => {
            // The create may have been applied with its answer lost, and every retry
            // failed: look before undoing anything.
            match find_run(k8s, &[engine], &plan.run_namespace, &plan.run_name).await {
                Ok(Some(_)) => {
                    tracing::warn!(correlation_id = %plan.correlation_id, run = %plan.run_name, error = %msg,
                        "the run's create was not answered, but the run exists: it is this one");
                    state.known.insert(&plan.run_name);
                    taken.token = None;
                    taken.slot = None;
                    record(plan, engine, verdict)
                }
                Ok(None) => {
                    // No run: neither the hold nor the silence may stay.
                    release(state, cx.lease, &plan.run_name, RunEnd::Abandoned).await;
                    if let Some(id) = &silence {
                        expire(state, id).await;
                    }
                    return Err(Unavailable(format!(
                        "the {engine} engine is unavailable: {msg}"
                    )));
                }
                Err(e) => {
                    // Cannot tell: the hold keeps its intent, from which a replica creates
                    // the run (409 if it exists) or drops the hold and the silence.
                    tracing::warn!(correlation_id = %plan.correlation_id, run = %plan.run_name, error = %e,
                        "cannot tell whether the run was created; its intent stays in the Lease");
                    taken.token = None;
                    taken.slot = None;
                    return Err(Unavailable(format!(
                        "the {engine} engine is unavailable: {msg}; the intent stays recorded"
                    )));
                }
            }
        }
        Err(e) => {
            // No run: neither the hold nor the silence may stay.
            release(state, cx.lease, &plan.run_name, RunEnd::Abandoned).await;
            if let Some(id) = &silence {
                expire(state, id).await;
            }
            let msg = e.to_string();
            escalate_not_started(state, cx.policy, cx.alert, plan, engine, &msg);
            let v = Verdict {
                decision: Decision::Error,
                reason: msg,
            };
            record(plan, engine, v)
        }
    };
    Ok(Acted::Done(rec))
}

/// Create the run on its engine, falling back to the local engine when the policy says
/// so and the engine is missing or refused it: the result and the engine used.
async fn create_run(
    cx: &Acting<'_>,
    silence: Option<&str>,
    verdict: &mut Verdict,
) -> (
    Result<crate::heald::engines::Submitted, SubmitError>,
    Engine,
) {
    let (state, plan) = (cx.state, cx.plan);
    let slots = cx.slots.map(|(name, _)| name);
    let run = annotate(cx.run.clone(), cx.alert, cx.lease, slots, plan, silence);
    let started = Instant::now();
    let mut engine = cx.engine;
    let mut submitted = cx.submitter.submit(&run).await;
    if let Err(e @ (SubmitError::EngineMissing(_) | SubmitError::Rejected(_))) = &submitted
        && engine != Engine::Local
        && cx.policy.fallback == Some(Engine::Local)
    {
        let local = state.engines.get(Engine::Local);
        match cx.loaded.renderer.render(plan, Engine::Local) {
            Ok(r) => {
                let why = e.to_string();
                tracing::warn!(correlation_id = %plan.correlation_id, run = %plan.run_name, engine = %engine, error = %why, "falling back to the local engine");
                let run = annotate(r.value, cx.alert, cx.lease, slots, plan, silence);
                submitted = local.submit(&run).await;
                verdict.reason = format!(
                    "{} on the local engine (fallback: the {engine} engine failed: {why})",
                    verdict.reason
                );
                engine = Engine::Local;
            }
            Err(re) => {
                tracing::warn!(correlation_id = %plan.correlation_id, error = %re, "the fallback run cannot be rendered");
            }
        }
    }
    state
        .metrics
        .submit_seconds
        .get_or_create(&crate::heald::reporting::metrics::EngineLabels {
            engine: engine.as_str().into(),
        })
        .observe(started.elapsed().as_secs_f64());
    (submitted, engine)
}

/// The alert as recorded in an intent: heald's JSON of it, without the zero `endsAt`.
pub fn intent_alert(alert: &Alert) -> Value {
    let mut v = serde_json::to_value(alert).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut()
        && obj.get("endsAt").is_some_and(Value::is_null)
    {
        obj.remove("endsAt");
    }
    v
}

/// The alert an intent records, read back.
pub fn alert_of_intent(v: &Value) -> Option<Alert> {
    let bytes = serde_json::to_vec(v).ok()?;
    crate::alert::parse_alerts(&bytes).ok()?.into_iter().next()
}

/// The engines this alert episode's run may be on: the policy's, and the local engine
/// when the policy falls back to it.
pub fn run_engines(policy: &Policy, engine: Engine) -> Vec<Engine> {
    let mut out = vec![engine];
    if engine != Engine::Local && policy.fallback == Some(Engine::Local) {
        out.push(Engine::Local);
    }
    out
}

/// Look run `namespace/name` up on each of `engines`; `None` when it exists on none of them.
pub async fn find_run(
    k8s: &K8s,
    engines: &[Engine],
    namespace: &str,
    name: &str,
) -> Result<Option<(Engine, Value)>, ApiError> {
    for &engine in engines {
        let Some(path) = object_path(engine, namespace, name) else {
            continue;
        };
        if let Some(mut obj) = k8s.get_opt(&path).await? {
            // A built-in type's object may come without its type.
            let (api_version, kind) = run_object_type(engine);
            obj["apiVersion"] = json!(api_version);
            obj["kind"] = json!(kind);
            return Ok(Some((engine, obj)));
        }
    }
    Ok(None)
}

/// Whether `obj` is a run heald created and has not handled the end of yet.
fn run_in_flight(obj: &Value) -> bool {
    RunInfo::from_object(obj).is_some()
        && obj
            .pointer(&format!(
                "/metadata/labels/{}",
                REPORTED_LABEL.replace('/', "~1")
            ))
            .is_none()
}

/// Longest wait for the in-progress silence before the run is created.
const PROGRESS_SILENCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait, within one delivery, for a run whose hold was just taken.
const WAIT_FOR_CREATION: Duration = Duration::from_secs(3);

/// How long a replica may take from taking a target's Lease to creating the run: the
/// in-progress silence, the create and a fallback create, plus a second for clock skew
/// between replicas.
fn creating_within(state: &State) -> Duration {
    PROGRESS_SILENCE_TIMEOUT + state.config.api_timeout * 2 + Duration::from_secs(1)
}

/// Look for the run every 50 ms while its hold is young, at most [`WAIT_FOR_CREATION`]:
/// whether it appeared.
async fn wait_for_run(
    state: &State,
    k8s: &K8s,
    policy: &Policy,
    engine: Engine,
    plan: &Plan,
    seen: &Observed<'_>,
) -> Result<bool, ApiError> {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if find_run(
            k8s,
            &run_engines(policy, engine),
            &plan.run_namespace,
            &plan.run_name,
        )
        .await?
        .is_some()
        {
            return Ok(true);
        }
        let now = Observed {
            now: Timestamp::now(),
            ..seen.clone()
        };
        if !hold_being_created(&now)
            || started.elapsed() >= WAIT_FOR_CREATION
            || state.is_shutting_down()
        {
            return Ok(false);
        }
    }
}

/// How long `engine` keeps a run after it ended, at least: Argo's TTL, heald's Tekton
/// retention; `None` for local runs, which stay until someone deletes them.
fn run_kept_for(state: &State, loaded: &Loaded, engine: Engine) -> Option<Duration> {
    match engine {
        Engine::Argo => {
            let o = loaded.renderer.options();
            let secs = o
                .ttl_after_completion_seconds
                .min(o.ttl_after_failure_seconds);
            Some(Duration::from_secs(u64::from(secs)))
        }
        Engine::Tekton => Some(state.config.tekton_retention),
        Engine::Local => None,
    }
}

/// Escalate a run that could not be started at all (its engine is missing or refused it,
/// and the policy has no usable fallback) to the policy's notifiers, in the background:
/// the alert is left firing and the humans are told why nothing was done.
fn escalate_not_started(
    state: &Arc<State>,
    policy: &Policy,
    alert: &Alert,
    plan: &Plan,
    engine: Engine,
    message: &str,
) {
    if policy.on_failure.notify.is_empty() {
        return;
    }
    let n = Notification {
        api_version: "heal.dev/v1alpha1",
        kind: "RemediationFailed",
        policy: plan.policy.clone(),
        alertname: plan.alertname.clone(),
        fingerprint: plan.fingerprint.clone(),
        labels: alert.labels.clone(),
        run: plan.run_name.clone(),
        namespace: plan.run_namespace.clone(),
        engine: engine.as_str().into(),
        correlation_id: plan.correlation_id.clone(),
        outcome: RunOutcome::Failed,
        message: format!("the run could not be started: {message}"),
        steps: Default::default(),
        link: alert_link(state, &plan.alertname),
        target: Some(crate::heald::reporting::notify_http::target_words(
            &plan.target.kind,
            &plan.target.namespace,
            &plan.target.name,
        )),
    };
    let state = Arc::clone(state);
    let policy_name = policy.name.clone();
    tokio::spawn(async move {
        let loaded = state.policies.current();
        if let Some(policy) = loaded.set.policy(&policy_name) {
            crate::heald::reporting::escalation::not_started(&state, &loaded.set, policy, &n).await;
        }
    });
}

/// Drop `run`'s hold on a Lease after a failed or duplicate submission. Best effort: a
/// hold that is not dropped lapses at its deadline.
async fn release(state: &State, lease: &str, run: &str, end: RunEnd) {
    let k8s = &state.k8s;
    let now = Timestamp::now();
    let result = k8s
        .update_lease(&state.config.namespace, lease, |cur| {
            let mut l = cur?;
            l.release(run, end, now, Duration::from_secs(86_400));
            Some(l)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(lease, run, error = %e, "could not release the Lease; it lapses at its deadline");
    }
}

/// Silence the alert while its run is in progress (until the run's deadline), so that
/// nobody is paged for what is being fixed. Best effort and quick: without Alertmanager the
/// run still starts. `None` when there is no silence (no Alertmanager configured, a
/// dry-run plan, or Alertmanager did not answer in time).
async fn progress_silence(
    state: &State,
    alert: &Alert,
    plan: &Plan,
    hold: Duration,
) -> Option<String> {
    let am = state.config.alertmanager_url.as_ref()?;
    if plan.dry_run || alert.labels.is_empty() {
        return None;
    }
    let comment = format!(
        "{}; policy {}; correlation id {}",
        progress_marker(&plan.run_name, &plan.run_namespace),
        plan.policy,
        plan.correlation_id
    );
    let body = silence_body(&alert.labels, Timestamp::now(), hold, &comment);
    let attempt = create_silence(&state.http, am, &body, 1);
    match tokio::time::timeout(PROGRESS_SILENCE_TIMEOUT, attempt).await {
        Ok(Ok(id)) if !id.is_empty() => {
            state.metrics.delivery("silence", true);
            Some(id)
        }
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            state.metrics.delivery("silence", false);
            tracing::warn!(correlation_id = %plan.correlation_id, error = %e, "could not silence the alert during the run");
            None
        }
        Err(_) => {
            state.metrics.delivery("silence", false);
            tracing::warn!(correlation_id = %plan.correlation_id, "Alertmanager did not answer in time; the run starts without a silence");
            None
        }
    }
}

/// The in-progress silence an interrupted creation of this run left, if Alertmanager
/// answers in time. Extra ones (two completions raced) are expired.
async fn find_progress_silence(state: &State, alert: &Alert, plan: &Plan) -> Option<String> {
    let am = state.config.alertmanager_url.as_ref()?;
    let marker = progress_marker(&plan.run_name, &plan.run_namespace);
    let attempt = find_silences(&state.http, am, &alert.labels, &marker);
    match tokio::time::timeout(PROGRESS_SILENCE_TIMEOUT, attempt).await {
        Ok(Ok(ids)) => {
            let mut ids = ids.into_iter();
            let keep = ids.next();
            for extra in ids {
                expire(state, &extra).await;
            }
            keep
        }
        Ok(Err(e)) => {
            tracing::warn!(correlation_id = %plan.correlation_id, error = %e, "could not look for the run's in-progress silence");
            None
        }
        Err(_) => None,
    }
}

/// Expire a silence made for a run that did not start. Best effort.
async fn expire(state: &State, id: &str) {
    let Some(am) = &state.config.alertmanager_url else {
        return;
    };
    if let Err(e) = expire_silence(&state.http, am, id).await {
        tracing::warn!(silence = id, error = %e, "could not expire the silence");
    }
}

/// Add what heald needs later to the run: the alert's labels (for the silence), the Lease,
/// the deadline, and the in-progress silence.
fn annotate(
    mut run: Value,
    alert: &Alert,
    lease: &str,
    slots: Option<&str>,
    plan: &Plan,
    silence: Option<&str>,
) -> Value {
    let labels = serde_json::to_string(&alert.labels).unwrap_or_default();
    let labels = if labels.len() > MAX_LABELS_JSON {
        String::new()
    } else {
        labels
    };
    if let Some(meta) = run.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(ALERT_LABELS_ANNOTATION.into(), json!(labels));
            ann.insert(LEASE_ANNOTATION.into(), json!(lease));
            ann.insert(
                DEADLINE_ANNOTATION.into(),
                json!(plan.run_deadline_seconds().to_string()),
            );
            if let Some(id) = silence {
                ann.insert(SILENCE_ANNOTATION.into(), json!(id));
            }
            if let Some(name) = slots {
                ann.insert(crate::heald::IN_FLIGHT_ANNOTATION.into(), json!(name));
            }
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_recorded_in_an_intent_reads_back_the_same() {
        let body = br#"{"labels": {"alertname": "WebDown", "namespace": "shop"},
            "annotations": {"summary": "down"}, "startsAt": "2026-08-20T10:00:00.5Z",
            "status": "firing", "generatorURL": "http://p/g", "fingerprint": "0123456789abcdef"}"#;
        let alert = crate::alert::parse_alerts(body).unwrap().remove(0);
        let recorded = intent_alert(&alert);
        assert!(recorded.get("endsAt").is_none(), "{recorded}");
        assert_eq!(alert_of_intent(&recorded), Some(alert));
    }
}
