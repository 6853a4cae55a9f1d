//! The tracking pass over local runs: heald's own engine keeps its runs in ConfigMaps; the
//! pass handles the ended ones, counts the ones executing, and takes over and resumes the
//! ones whose replica stopped (their holder's heartbeat is stale).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::heald::engines::local::{STALE, start};
use crate::heald::engines::local_run::{LocalRun, holder_patch};
use crate::heald::engines::runs::{RunOutcome, collection_path, object_path, run_object_type};
use crate::heald::kube_io::KubeIoError;
use crate::heald::state::State;
use crate::heald::tracking::{Ending, Pass, finish};
use crate::heald::{MANAGED_BY, REPORTED_LABEL};
use crate::kube_api::MERGE_PATCH;
use crate::render::Engine as Kind;

/// One tracking pass over the unreported local runs of `namespace`: handle the ended ones,
/// count the ones executing, take over and resume the ones nobody executes.
pub async fn pass(st: &Arc<State>, namespace: &str, out: &mut Pass) -> Result<(), KubeIoError> {
    let k8s = &st.k8s;
    let Some(collection) = collection_path(Kind::Local, namespace) else {
        return Ok(());
    };
    let selector = format!("{MANAGED_BY}=heald,heal.dev/engine=local,!{REPORTED_LABEL}");
    for mut obj in k8s.list(&collection, &selector).await? {
        // Items of a built-in type's list carry no apiVersion and kind.
        let (api_version, kind) = run_object_type(Kind::Local);
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        let Some(name) = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let name = name.as_str();
        if crate::heald::tracking::approval::expire(st, Kind::Local, &obj).await {
            // The replica executing it reads the decision at its next look.
            out.in_flight += 1;
            continue;
        }
        if st.local.is_running(namespace, name) {
            out.in_flight += 1;
            continue;
        }
        let run = match LocalRun::from_object(&obj) {
            Ok(r) => r,
            Err(e) => {
                // Never drop a run silently: one whose state cannot be read is a failure.
                let ending = Ending {
                    outcome: RunOutcome::Failed,
                    message: e.to_string(),
                    steps: BTreeMap::new(),
                    source: "local",
                };
                if finish(st, &obj, ending).await? {
                    out.finished += 1;
                }
                continue;
            }
        };
        if let Some((outcome, message)) = run.outcome.clone() {
            let ending = Ending {
                outcome,
                message,
                steps: run.reports(),
                source: "local",
            };
            if finish(st, &obj, ending).await? {
                out.finished += 1;
            }
            continue;
        }
        let now = Timestamp::now();
        if !run.may_take_over(st.local.holder(), now, STALE) {
            out.in_flight += 1;
            continue;
        }
        let Some(path) = object_path(Kind::Local, namespace, name) else {
            continue;
        };
        let mut patch = holder_patch(Some(st.local.holder()), now);
        patch["metadata"]["resourceVersion"] = json!(run.resource_version);
        match k8s
            .send(Method::PATCH, &path, Some(MERGE_PATCH), Some(&patch))
            .await
        {
            Ok(taken) => {
                tracing::info!(
                    correlation_id = %run.plan.correlation_id,
                    run = %run.name,
                    previous = run.holder.as_deref().unwrap_or(""),
                    "taking over the local run"
                );
                start(st, &taken, true);
                out.in_flight += 1;
            }
            // Another replica took it first, or it is gone.
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
