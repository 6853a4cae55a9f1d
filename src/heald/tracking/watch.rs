//! Following heald's Argo Workflows and Tekton PipelineRuns by watching them, so that a
//! run's end is handled as soon as the engine records it rather than at the next tracking
//! pass. One watch per run namespace and engine, on the runs not reported yet
//! (`app.kubernetes.io/managed-by=heald,!heal.dev/reported`): list them (handling the ended
//! ones) and watch from the list's `resourceVersion`, picking up after each event's; a
//! watch the server closes is reopened where it stopped, and one whose version expired
//! (410) starts again with a list. The periodic pass of [`track`](crate::heald::tracking) stays: it
//! resyncs, and it alone calls runs overdue and resumes local runs. Claiming a run's end
//! makes handling it once safe when both see it.
//!
//! heald's guard Leases are followed the same way (one watch on heald's namespace,
//! `app.kubernetes.io/managed-by=heald,!heal.dev/rate-bucket`) into the client's
//! [Lease cache](crate::heald::kube_io::Cache): an alert's observation then reads its
//! target's Lease from memory, and a write made from a stale entry meets 409 and reads
//! the Lease again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use crate::heald::engines::runs::{RunInfo, RunState, argo_step_results, collection_path};
use crate::heald::guards::ratelimit::RATE_BUCKET_LABEL;
use crate::heald::kube_io::lease_path;
use crate::heald::state::State;
use crate::heald::tracking::{Ending, finish, run_namespaces};
use crate::heald::{MANAGED_BY, REPORTED_LABEL};
use crate::render::Engine as Kind;

/// How long the server keeps one watch open before heald reopens it.
const WATCH_SECONDS: u64 = 290;
/// Longest wait before opening a watch again after a failure.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Wait before looking again for an engine that is not installed (no CRD).
const MISSING_ENGINE_RETRY: Duration = Duration::from_secs(60);

/// The watches of one heald replica.
#[derive(Debug, Default)]
pub struct Watchers {
    tasks: JoinSet<()>,
    watching: BTreeSet<(String, &'static str)>,
    leases: bool,
}

impl Watchers {
    /// Start the watches of run namespaces not watched yet (policies name new ones when
    /// they are reloaded).
    pub fn ensure(&mut self, st: &Arc<State>) {
        if st.is_shutting_down() {
            return;
        }
        if !std::mem::replace(&mut self.leases, true) {
            self.tasks.spawn(watch_leases(Arc::clone(st)));
        }
        for ns in run_namespaces(st) {
            for kind in [Kind::Argo, Kind::Tekton] {
                if self.watching.insert((ns.clone(), kind.as_str())) {
                    self.tasks
                        .spawn(watch_runs(Arc::clone(st), ns.clone(), kind));
                }
            }
        }
    }

    /// Wait for the watches to end (they stop when shutdown starts, after handling the
    /// event at hand).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What one watch event means for the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// Go on from this resourceVersion (`None`: the event carried none).
    From(Option<String>),
    /// The version is too old (410) or the server reported an error: list again.
    Relist,
}

/// Read one watch event: its type, the object and the version to go on from.
fn read_event(event: &Value) -> (&str, Option<&Value>, Next) {
    let etype = event.get("type").and_then(Value::as_str).unwrap_or("");
    let obj = event.get("object");
    if etype == "ERROR" {
        return (etype, obj, Next::Relist);
    }
    let rv = obj
        .and_then(|o| o.pointer("/metadata/resourceVersion"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    (etype, obj, Next::From(rv))
}

/// Handle a run the watch or list shows, if the engine says it ended. Either way the run
/// is known from now on: a repeat of its alert is a duplicate without a request.
async fn handle(st: &State, kind: Kind, obj: &Value) {
    let Some(info) = RunInfo::from_object(obj) else {
        return;
    };
    st.known.insert(&info.name);
    let RunState::Finished(outcome, message) = st.engines.get(kind).outcome(obj) else {
        return;
    };
    let ending = Ending {
        outcome,
        message,
        steps: argo_step_results(obj),
        source: "engine",
    };
    if let Err(e) = finish(st, obj, ending).await {
        tracing::warn!(correlation_id = %info.correlation_id, run = %info.name, error = %e,
            "could not handle the run's end; the next tracking pass will");
    }
}

/// What the events of one followed collection do.
trait Follow: Send {
    /// The list the watch starts from: everything there is.
    fn listed(&mut self, items: &[Value]) -> impl std::future::Future<Output = ()> + Send;
    /// One `ADDED`, `MODIFIED` or `DELETED` event.
    fn event(&mut self, etype: &str, obj: &Value) -> impl std::future::Future<Output = ()> + Send;
    /// Whether the watch is open: while it is not, events may be missed.
    fn open(&mut self, _open: bool) {}
}

/// List `collection` (objects matching `selector`), then watch it from the list's version
/// until shutdown, reopening the watch where it stopped and listing again when its version
/// expired. `what` names it in logs.
async fn follow(
    st: Arc<State>,
    collection: String,
    selector: String,
    what: String,
    mut f: impl Follow,
) {
    let k8s = st.k8s.clone();
    let mut stop = st.shutdown_signal();
    let mut from: Option<String> = None;
    let mut failures: u32 = 0;
    loop {
        if st.is_shutting_down() {
            return;
        }
        // Where to start: after a list, unless the last watch left a version to go on from.
        if from.is_none() {
            let listed = tokio::select! {
                l = k8s.list_from(&collection, &selector) => l,
                _ = stop.wait_for(|s| *s) => return,
            };
            match listed {
                Ok((items, rv)) => {
                    f.listed(&items).await;
                    from = rv;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(what, error = %e, "cannot list what to watch");
                }
            }
        }
        let opened = match &from {
            Some(rv) => {
                tokio::select! {
                    w = k8s.watch(&collection, &selector, Some(rv), WATCH_SECONDS) => Some(w),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            None => None,
        };
        let mut stream = match opened {
            Some(Ok(s)) => {
                failures = 0;
                f.open(true);
                s
            }
            other => {
                f.open(false);
                let missing = matches!(&other, Some(Err(e)) if e.is_not_found());
                if let Some(Err(e)) = &other {
                    failures += 1;
                    if !missing {
                        tracing::warn!(what, error = %e,
                            "cannot watch; the tracking pass goes on");
                    }
                }
                let wait = if missing || failures == 0 {
                    MISSING_ENGINE_RETRY
                } else {
                    Duration::from_secs(1 << failures.min(5)).min(MAX_RETRY)
                };
                from = None;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Ok(Some(event)) => {
                    let (etype, obj, next) = read_event(&event);
                    match next {
                        Next::Relist => {
                            tracing::debug!(what, ?obj, "watch ended by the server; listing again");
                            from = None;
                            break;
                        }
                        Next::From(rv) => {
                            if let (Some(obj), "ADDED" | "MODIFIED" | "DELETED") = (obj, etype) {
                                f.event(etype, obj).await;
                            }
                            if rv.is_some() {
                                from = rv;
                            }
                        }
                    }
                }
                // The server closed the watch (its timeout): open it again from here.
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(what, error = %e, "the watch broke; opening it again");
                    break;
                }
            }
        }
        f.open(false);
    }
}

/// Following one engine's unreported runs in one namespace.
struct Runs {
    st: Arc<State>,
    kind: Kind,
}

impl Follow for Runs {
    async fn listed(&mut self, items: &[Value]) {
        for obj in items {
            handle(&self.st, self.kind, obj).await;
        }
    }

    async fn event(&mut self, etype: &str, obj: &Value) {
        if etype != "DELETED" {
            handle(&self.st, self.kind, obj).await;
        }
    }
}

/// Watch `kind`'s unreported runs in `namespace` until shutdown.
async fn watch_runs(st: Arc<State>, namespace: String, kind: Kind) {
    let Some(collection) = collection_path(kind, &namespace) else {
        return;
    };
    // The runs already reported are known too (one list at start): repeats of their alerts
    // cost no request.
    let reported = format!("{MANAGED_BY}=heald,{REPORTED_LABEL}");
    match st.k8s.list(&collection, &reported).await {
        Ok(items) => {
            for obj in &items {
                if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
                    st.known.insert(name);
                }
            }
        }
        Err(e) => {
            tracing::debug!(namespace, engine = %kind, error = %e, "cannot list reported runs");
        }
    }
    let selector = format!("{MANAGED_BY}=heald,!{REPORTED_LABEL}");
    let what = format!("{kind} runs in {namespace}");
    follow(
        Arc::clone(&st),
        collection,
        selector,
        what,
        Runs { st, kind },
    )
    .await;
}

/// Following heald's guard Leases into [`K8s::leases`](crate::heald::kube_io::K8s::leases).
struct Leases {
    st: Arc<State>,
}

impl Follow for Leases {
    async fn listed(&mut self, items: &[Value]) {
        self.st.k8s.leases().replace_all(items);
    }

    async fn event(&mut self, etype: &str, obj: &Value) {
        let cache = self.st.k8s.leases();
        match (etype, obj.pointer("/metadata/name").and_then(Value::as_str)) {
            ("DELETED", Some(name)) => cache.remove(name),
            _ => cache.put(obj),
        }
    }

    fn open(&mut self, open: bool) {
        // Reads go to the API server until the watch goes on from where it stopped.
        self.st.k8s.leases().set_synced(open);
    }
}

/// Watch heald's guard Leases (not its rate buckets, which the limiter keeps) until
/// shutdown, so that observing an alert's target costs no read.
async fn watch_leases(st: Arc<State>) {
    let collection = lease_path(&st.config.namespace, None);
    let selector = format!("{MANAGED_BY}=heald,!{RATE_BUCKET_LABEL}");
    let what = format!("Leases in {}", st.config.namespace);
    follow(Arc::clone(&st), collection, selector, what, Leases { st }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_watch_goes_on_from_each_events_version_and_lists_again_after_an_error() {
        let ev = json!({"type": "MODIFIED", "object": {"metadata": {"resourceVersion": "42"}}});
        let (t, obj, next) = read_event(&ev);
        assert_eq!(t, "MODIFIED");
        assert!(obj.is_some());
        assert_eq!(next, Next::From(Some("42".into())));
        let bookmark =
            json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "43"}}});
        assert_eq!(read_event(&bookmark).2, Next::From(Some("43".into())));
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "code": 410}});
        assert_eq!(read_event(&gone).2, Next::Relist);
    }
}
