//! The approval gate of a local run: before its first step, a local run whose plan has a
//! gate waits while its ConfigMap says `heal.dev/approval: waiting`, reading it every few
//! seconds and keeping its heartbeat fresh (so no other replica takes it over). Approved,
//! the run goes on; rejected (by `heal reject`, heald's endpoint or the timeout), it ends
//! `rejected` without running a step; cancelled (its alert resolved), the executor ends it
//! as cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::approval::{GateState, gate_state};
use crate::heald::engines::local::HEARTBEAT;
use crate::heald::engines::local_run::{LocalRun, holder_patch, outcome_patch};
use crate::heald::engines::runs::{Ending, RunOutcome, object_path, run_object_type};
use crate::heald::state::State;
use crate::kube_api::MERGE_PATCH;
use crate::render::Engine as Kind;

/// Longest time between two reads of a waiting run.
const POLL_MAX: Duration = Duration::from_secs(5);

fn typed(mut obj: Value) -> Value {
    let (api_version, kind) = run_object_type(Kind::Local);
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    obj
}

/// Wait at `run`'s gate. `Some((run, waited))`, the run as read last, when its steps may
/// start (approved, no gate, or cancelled: the executor then starts none); `waited` says
/// the gate was still closed when this replica first looked, so no step can have started
/// before. `None` when this replica is done with it (rejected and handed to `finish_run`,
/// taken over by another replica, or gone).
pub async fn wait(
    st: &Arc<State>,
    run: LocalRun,
    mut cancel: watch::Receiver<Option<String>>,
) -> Option<(LocalRun, bool)> {
    if run.plan.approval.is_none() {
        return Some((run, false));
    }
    let mut waited = false;
    let path = object_path(Kind::Local, &run.namespace, &run.name)?;
    let me = st.local.holder().to_string();
    let cid = run.plan.correlation_id.clone();
    let poll = st.config.track_interval.min(POLL_MAX);
    let mut beat = Instant::now();
    let mut logged = false;
    loop {
        let obj = match st.k8s.get_opt(&path).await {
            Ok(Some(o)) => typed(o),
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(correlation_id = %cid, run = %run.name, error = %e, "cannot read the waiting local run");
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let current = match LocalRun::from_object(&obj) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the waiting local run");
                return None;
            }
        };
        if current.holder.as_deref() != Some(me.as_str()) || current.outcome.is_some() {
            return None;
        }
        match gate_state(&obj) {
            GateState::Approved | GateState::None => {
                if waited {
                    tracing::info!(correlation_id = %cid, run = %run.name, "the local run is approved");
                }
                return Some((current, waited));
            }
            GateState::Rejected => {
                reject(st, &path, &current, &cid).await;
                return None;
            }
            GateState::Waiting => {}
        }
        waited = true;
        if cancel.borrow().is_some() {
            return Some((current, waited));
        }
        if !logged {
            tracing::info!(correlation_id = %cid, run = %run.name, "the local run waits for approval");
            logged = true;
        }
        if beat.elapsed() >= HEARTBEAT {
            let mut patch = holder_patch(Some(&me), Timestamp::now());
            patch["metadata"]["resourceVersion"] = json!(current.resource_version);
            match st
                .k8s
                .send(Method::PATCH, &path, Some(MERGE_PATCH), Some(&patch))
                .await
            {
                Ok(_) => beat = Instant::now(),
                // Changed meanwhile (a decision, a cancellation): read it again at once.
                Err(e) if e.is_conflict() => continue,
                Err(e) if e.is_not_found() => return None,
                Err(e) => {
                    tracing::warn!(correlation_id = %cid, run = %run.name, error = %e, "could not refresh the waiting run's heartbeat");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = cancel.changed() => {}
        }
    }
}

/// Record that the rejected run ended, then hand it to `finish_run`.
async fn reject(st: &Arc<State>, path: &str, run: &LocalRun, cid: &str) {
    let mut patch = outcome_patch(
        RunOutcome::Rejected,
        "rejected at the approval gate",
        Timestamp::now(),
    );
    patch["metadata"] = json!({"resourceVersion": run.resource_version});
    let written = match st
        .k8s
        .send(Method::PATCH, path, Some(MERGE_PATCH), Some(&patch))
        .await
    {
        Ok(o) => typed(o),
        Err(e) => {
            // Another replica or the tracker records it on its next pass.
            tracing::warn!(correlation_id = cid, run = %run.name, error = %e, "could not record the rejected run's end");
            return;
        }
    };
    tracing::info!(correlation_id = cid, run = %run.name, "the local run was rejected; no step ran");
    let ending = Ending {
        outcome: RunOutcome::Rejected,
        message: "rejected".into(),
        steps: BTreeMap::new(),
        source: "local",
    };
    if let Err(e) = (st.finish_run)(st, &written, ending).await {
        tracing::warn!(correlation_id = cid, run = %run.name, error = %e, "could not handle the rejected run's end; the tracker will");
    }
}
