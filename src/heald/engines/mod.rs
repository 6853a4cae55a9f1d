//! Submitting a rendered run to the engine that carries it out: the one trait seam of heald
//! (the local engine's side is in [`local`](crate::heald::engines::local)).
//! Argo Workflows and Tekton PipelineRuns are created through the Kubernetes API
//! (`fieldValidation=Strict`, so a field the CRD does not know is an error instead of being
//! dropped); Argo Workflows may instead go through the Argo Server REST API. Creating a run
//! whose deterministic name exists answers 409: the alert episode is already handled.

pub mod local;
pub mod local_gate;
pub mod local_run;
pub mod runs;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use crate::heald::engines::runs::{RunState, collection_path};
use crate::heald::kube_io::K8s;
use crate::kube_api::{ApiError, JSON, MERGE_PATCH, enc};
use crate::prometheus_http::redacted_url;
use crate::render::Engine as Kind;

/// A boxed future, so that [`Engine`] can be used as `Arc<dyn Engine>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a run was not created.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// A run of that name exists: this alert episode is already handled.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The engine refused the run (invalid, forbidden); sending it again will not help.
    #[error("the engine refused the run: {0}")]
    Rejected(String),
    /// The engine could not be reached or is overloaded; a later retry may succeed.
    #[error("the engine is unavailable: {0}")]
    Unavailable(String),
    /// The engine is not installed: the API server does not serve its runs (no CRD).
    #[error("the engine is not installed: {0}")]
    EngineMissing(String),
}

impl SubmitError {
    /// Classify the API server's answer to creating `what`.
    pub fn from_api(e: ApiError, what: &str) -> SubmitError {
        if e.is_conflict() {
            SubmitError::AlreadyExists(what.to_string())
        } else if let ApiError::Status {
            code: 404, message, ..
        } = &e
            && message.contains("could not find the requested resource")
        {
            SubmitError::EngineMissing(format!(
                "the API server has no resource for {what}: {message}"
            ))
        } else if e.is_transient() {
            SubmitError::Unavailable(e.to_string())
        } else {
            let mut msg = e.to_string();
            if let ApiError::Status { causes, .. } = &e
                && !causes.is_empty()
            {
                msg.push_str(": ");
                msg.push_str(&causes.join("; "));
            }
            SubmitError::Rejected(msg)
        }
    }
}

/// What the engine answered to a create.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The run's `metadata.uid`, when the answer carried it.
    pub uid: Option<String>,
    /// The object as created, when the engine answers with it.
    pub object: Option<Value>,
}

/// How to cancel an unfinished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Start no further step; the running ones finish and the exit handler reports (the
    /// alert resolved: Argo `spec.shutdown: Stop`, Tekton `spec.status: Cancelled`, a local
    /// run starts no further step).
    Stop,
    /// Stop the running steps too (the run overran its deadline: Argo `Terminate`, Tekton
    /// `Cancelled`; a local run's executor keeps its own deadline, so nothing).
    Terminate,
}

/// A workflow engine heald submits runs to, reads the outcome of, and cancels.
pub trait Engine: Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> Kind;
    /// Create `run` (a rendered Workflow or PipelineRun, with name and namespace).
    fn submit<'a>(&'a self, run: &'a Value) -> BoxFuture<'a, Result<Submitted, SubmitError>>;
    /// Where the engine says the run `obj` (as read from the cluster) is.
    fn outcome(&self, obj: &Value) -> RunState {
        runs::state(self.kind(), obj)
    }
    /// Cancel the unfinished run `obj`, saying `why`: `Ok(false)` when it is gone or ended
    /// meanwhile (or, for `how`, the engine has nothing to do).
    fn cancel<'a>(
        &'a self,
        obj: &'a Value,
        why: &'a str,
        how: Cancel,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
}

/// The engines of one heald: all three kinds, always (Argo through the Argo Server when
/// `--argo-server-url` is set).
#[derive(Clone)]
pub struct Engines {
    argo: Arc<dyn Engine>,
    tekton: Arc<dyn Engine>,
    local: Arc<dyn Engine>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines").finish_non_exhaustive()
    }
}

impl Engines {
    /// These three.
    pub fn new(argo: Arc<dyn Engine>, tekton: Arc<dyn Engine>, local: Arc<dyn Engine>) -> Engines {
        Engines {
            argo,
            tekton,
            local,
        }
    }

    /// The engine of `kind`.
    pub fn get(&self, kind: Kind) -> &Arc<dyn Engine> {
        match kind {
            Kind::Argo => &self.argo,
            Kind::Tekton => &self.tekton,
            Kind::Local => &self.local,
        }
    }

    /// Replace the engine of its kind (tests put a fake one in).
    pub fn set(&mut self, engine: Arc<dyn Engine>) {
        match engine.kind() {
            Kind::Argo => self.argo = engine,
            Kind::Tekton => self.tekton = engine,
            Kind::Local => self.local = engine,
        }
    }
}

/// Cancel a run of the Kubernetes API (Argo or Tekton) with a merge patch.
async fn cancel_by_patch(
    k8s: &K8s,
    kind: Kind,
    obj: &Value,
    why: &str,
    how: Cancel,
) -> Result<bool, ApiError> {
    let (ns, name) = name_of(obj);
    let Some(path) = runs::object_path(kind, &ns, &name) else {
        return Ok(false);
    };
    let patch = runs::cancel_patch(kind, why, how);
    match k8s
        .send(Method::PATCH, &path, Some(MERGE_PATCH), Some(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

fn name_of(run: &Value) -> (String, String) {
    let s = |p: &str| {
        run.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// Argo Workflows or Tekton through the Kubernetes API.
#[derive(Debug, Clone)]
pub struct KubeEngine {
    kind: Kind,
    k8s: K8s,
}

impl KubeEngine {
    /// An engine creating `kind`'s objects (`Argo` or `Tekton`) with `k8s`.
    pub fn new(kind: Kind, k8s: K8s) -> KubeEngine {
        KubeEngine { kind, k8s }
    }
}

impl Engine for KubeEngine {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn submit<'a>(&'a self, run: &'a Value) -> BoxFuture<'a, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            let (ns, name) = name_of(run);
            let Some(collection) = collection_path(self.kind, &ns) else {
                return Err(SubmitError::Rejected(format!(
                    "the {} engine is not submitted through the Kubernetes API",
                    self.kind
                )));
            };
            let path = format!("{collection}?fieldValidation=Strict");
            let what = format!("{} {ns}/{name}", self.kind.kind());
            let created = self
                .k8s
                .send(Method::POST, &path, Some(JSON), Some(run))
                .await
                .map_err(|e| SubmitError::from_api(e, &what))?;
            Ok(Submitted {
                uid: created
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                object: Some(created),
            })
        })
    }

    fn cancel<'a>(
        &'a self,
        obj: &'a Value,
        why: &'a str,
        how: Cancel,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(cancel_by_patch(&self.k8s, self.kind, obj, why, how))
    }
}

/// Argo Workflows through the Argo Server REST API (`POST /api/v1/workflows/{namespace}`).
#[derive(Debug, Clone)]
pub struct ArgoServerEngine {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    /// Runs are read and cancelled through the Kubernetes API, as the Argo Server's own
    /// Workflows are the same objects.
    k8s: K8s,
}

impl ArgoServerEngine {
    /// Submit to the Argo Server at `url` (no trailing slash) with an optional bearer token;
    /// cancel through `k8s`.
    pub fn new(
        client: reqwest::Client,
        url: &str,
        token: Option<String>,
        k8s: K8s,
    ) -> ArgoServerEngine {
        ArgoServerEngine {
            client,
            url: url.trim_end_matches('/').to_string(),
            token,
            k8s,
        }
    }

    /// The request body: `{namespace, serverDryRun, workflow}` (`WorkflowCreateRequest`).
    pub fn request_body(run: &Value) -> Value {
        let (ns, _) = name_of(run);
        json!({"namespace": ns, "serverDryRun": false, "workflow": run})
    }
}

impl Engine for ArgoServerEngine {
    fn kind(&self) -> Kind {
        Kind::Argo
    }

    fn submit<'a>(&'a self, run: &'a Value) -> BoxFuture<'a, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            let (ns, name) = name_of(run);
            let url = format!("{}/api/v1/workflows/{}", self.url, enc(&ns));
            let mut req = self.client.post(&url).json(&Self::request_body(run));
            // For messages: without a password the URL may carry.
            let shown = redacted_url(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| SubmitError::Unavailable(format!("{shown}: {e}")))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // grpc-gateway answers AlreadyExists (gRPC code 6) as 409.
            if status.as_u16() == 409 || body.get("code").and_then(Value::as_i64) == Some(6) {
                return Err(SubmitError::AlreadyExists(format!("Workflow {ns}/{name}")));
            }
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(SubmitError::Unavailable(format!(
                    "{shown} answered {status}: {message}"
                )));
            }
            if !status.is_success() {
                return Err(SubmitError::Rejected(format!(
                    "{shown} answered {status}: {message}"
                )));
            }
            Ok(Submitted {
                uid: body
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                object: Some(body),
            })
        })
    }

    fn cancel<'a>(
        &'a self,
        obj: &'a Value,
        why: &'a str,
        how: Cancel,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(cancel_by_patch(&self.k8s, Kind::Argo, obj, why, how))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argo_server_body_has_the_shape_of_the_reference_request() {
        heal_testkit::require_reference!();
        let reference: Value = serde_json::from_str(&heal_testkit::reference_text(
            "argo/rest-create-workflow-request.example.json",
        ))
        .unwrap();
        let ours = ArgoServerEngine::request_body(&reference["workflow"]);
        assert_eq!(ours, reference);
    }

    #[test]
    fn a_conflict_is_already_exists_and_a_503_is_unavailable() {
        let status = |code: u16| ApiError::Status {
            code,
            reason: String::new(),
            message: "m".into(),
            retry_after: None,
            causes: vec!["spec.x: unknown field".into()],
        };
        assert!(matches!(
            SubmitError::from_api(status(409), "w"),
            SubmitError::AlreadyExists(_)
        ));
        assert!(matches!(
            SubmitError::from_api(status(503), "w"),
            SubmitError::Unavailable(_)
        ));
        let e = SubmitError::from_api(status(422), "w").to_string();
        assert!(e.contains("unknown field"), "{e}");
        let mut missing = status(404);
        if let ApiError::Status { message, .. } = &mut missing {
            *message = "the server could not find the requested resource".into();
        }
        assert!(matches!(
            SubmitError::from_api(missing, "w"),
            SubmitError::EngineMissing(_)
        ));
        assert!(
            matches!(
                SubmitError::from_api(status(404), "w"),
                SubmitError::Rejected(_)
            ),
            "a missing namespace is not a missing engine"
        );
    }
}
