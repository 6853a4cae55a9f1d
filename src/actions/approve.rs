//! Approving or rejecting a run that waits at its approval gate (I/O): find the run
//! (an Argo Workflow, a Tekton PipelineRun, or a local run's ConfigMap, all heald's), write
//! the decision with the run's `resourceVersion` as precondition (see
//! [`approval`](crate::approval) for what each engine gets), and record an Event on the run.
//! `heal approve` / `heal reject` call this with the caller's own kubeconfig identity, so
//! RBAC decides who may approve; heald's approve endpoint and its timeout with heald's.

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::approval::{GateError, Verdict, decision_patch, event_words};
use crate::kube_api::{ApiError, JSON, Kube, MERGE_PATCH, enc};
use crate::render::Engine;

/// Writes attempted before giving up on a run that keeps changing (the Argo controller
/// updates a workflow's status often).
const ATTEMPTS: usize = 5;

/// Why a decision was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No run of that name heald created in the namespace.
    #[error("no heal run {name} in namespace {namespace}")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The run.
        name: String,
    },
    /// The run has no gate, or is not waiting at it.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The API server refused or failed.
    #[error(transparent)]
    Kube(#[from] ApiError),
}

impl DecideError {
    /// Whether the run exists but is not waiting (HTTP 409).
    pub fn is_not_waiting(&self) -> bool {
        matches!(self, DecideError::Gate(_))
    }
}

/// A recorded decision.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The run's engine.
    pub engine: Engine,
    /// The run as written.
    pub object: Value,
    /// Who decided.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// API path of a run of `engine` (a local run is its ConfigMap).
pub fn run_path(engine: Engine, namespace: &str, name: &str) -> String {
    let (ns, name) = (enc(namespace), enc(name));
    match engine {
        Engine::Argo => format!("/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows/{name}"),
        Engine::Tekton => format!("/apis/tekton.dev/v1/namespaces/{ns}/pipelineruns/{name}"),
        Engine::Local => format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
    }
}

fn is_heald_run(obj: &Value, engine: Engine) -> bool {
    let label = |k: &str| {
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
    };
    label("app.kubernetes.io/managed-by") == Some("heald")
        && (engine != Engine::Local || label("heal.dev/engine") == Some("local"))
}

/// The heald run called `name` in `namespace`, with its engine: tried as a Workflow, a
/// PipelineRun, then a local run (an engine that is not installed answers 404 too).
pub async fn find(
    kube: &Kube,
    namespace: &str,
    name: &str,
) -> Result<Option<(Engine, Value)>, ApiError> {
    for engine in [Engine::Argo, Engine::Tekton, Engine::Local] {
        match kube.get(&run_path(engine, namespace, name)).await {
            Ok(mut obj) if is_heald_run(&obj, engine) => {
                if engine == Engine::Local {
                    obj["apiVersion"] = json!("v1");
                    obj["kind"] = json!("ConfigMap");
                }
                return Ok(Some((engine, obj)));
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Record `verdict` by `by` on the run `name` in `namespace`, and an Event saying so
/// (`component` is who writes it: `heal` or `heald`). A run that is not waiting is refused
/// before anything is written.
pub async fn decide(
    kube: &Kube,
    namespace: &str,
    name: &str,
    verdict: &Verdict,
    by: &str,
    component: &str,
) -> Result<Decided, DecideError> {
    let not_found = || DecideError::NotFound {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let (engine, mut obj) = find(kube, namespace, name).await?.ok_or_else(not_found)?;
    decide_on(kube, engine, &mut obj, verdict, by, component).await
}

/// [`decide`] on a run already read (`obj`, of `engine`), read again on a conflict.
pub async fn decide_on(
    kube: &Kube,
    engine: Engine,
    obj: &mut Value,
    verdict: &Verdict,
    by: &str,
    component: &str,
) -> Result<Decided, DecideError> {
    let s = |o: &Value, p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (namespace, name) = (s(obj, "/metadata/namespace"), s(obj, "/metadata/name"));
    let path = run_path(engine, &namespace, &name);
    let mut attempt = 0;
    let (written, at) = loop {
        attempt += 1;
        let at = Timestamp::now();
        let patch = decision_patch(engine, obj, verdict, by, at)?;
        match kube
            .send(Method::PATCH, &path, Some(MERGE_PATCH), Some(&patch))
            .await
        {
            Ok(written) => break (written, at),
            Err(e) if e.is_conflict() && attempt < ATTEMPTS => {
                let mut fresh = kube.get(&path).await?;
                if engine == Engine::Local {
                    fresh["apiVersion"] = json!("v1");
                    fresh["kind"] = json!("ConfigMap");
                }
                *obj = fresh;
            }
            Err(e) if e.is_not_found() => {
                return Err(DecideError::NotFound { namespace, name });
            }
            Err(e) => return Err(e.into()),
        }
    };
    let (reason, message) = event_words(verdict, by, &name);
    let (api_version, kind) = match engine {
        Engine::Local => ("v1", "ConfigMap"),
        e => (e.api_version(), e.kind()),
    };
    let cid = s(obj, "/metadata/labels/heal.dev~1correlation-id");
    let time = at.to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": crate::actions::event_name(&name, at),
            "namespace": namespace,
            "annotations": {"heal.dev/correlation-id": cid},
        },
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "uid": s(obj, "/metadata/uid"),
        },
        "reason": reason,
        "message": message,
        "type": "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": time,
        "lastTimestamp": time,
        "count": 1,
    });
    let events = format!("/api/v1/namespaces/{}/events", enc(&namespace));
    if let Err(e) = kube
        .send(Method::POST, &events, Some(JSON), Some(&event))
        .await
    {
        tracing::warn!(run = %name, error = %e, "the decision is recorded on the run, but its Event could not be");
    }
    Ok(Decided {
        engine,
        object: written,
        by: by.to_string(),
        at,
    })
}

/// Who the caller is, as the API server sees it: a SelfSubjectReview's
/// `status.userInfo.username`. `None` when the server refuses or does not serve it.
pub async fn who_am_i(kube: &Kube) -> Option<String> {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
    });
    match kube
        .send(
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(JSON),
            Some(&body),
        )
        .await
    {
        Ok(review) => review
            .pointer("/status/userInfo/username")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        Err(e) => {
            tracing::debug!(error = %e, "SelfSubjectReview refused; naming the kubeconfig user");
            None
        }
    }
}
