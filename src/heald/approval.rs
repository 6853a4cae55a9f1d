//! heald's approve and reject endpoints, for chat buttons: `POST
//! /v1/runs/{namespace}/{name}/approve` and `/reject`, with their own bearer token
//! (`--approval-token-file`) and an optional JSON body `{"reason": "...", "by": "..."}`.
//! They do what `heal approve` and `heal reject` do, as heald: 401 without the token (or
//! when heald has none), 404 for a run heald does not know, 409 for a run that is not
//! waiting, 200 with the decision otherwise.

use std::sync::Arc;

use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::actions::approve::{DecideError, decide};
use crate::approval::{MAX_ACTOR, Verdict};
use crate::heald::server::{ApiProblem, check_json, read_body};
use crate::heald::state::State;

/// Who decided when a caller of the endpoint names nobody.
pub const DEFAULT_ACTOR: &str = "heald";

/// The optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

/// Check the approval token in constant time; no token configured refuses everyone.
fn authorize(st: &State, headers: &HeaderMap) -> Result<(), ApiProblem> {
    let expected = st
        .config
        .approval_token
        .as_ref()
        .ok_or(ApiProblem::Unauthorized)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(ApiProblem::Unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiProblem::Unauthorized)
    }
}

/// `POST /v1/runs/{namespace}/{name}/approve`.
pub async fn approve(
    AxState(st): AxState<Arc<State>>,
    Path((namespace, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let resp = respond(handle(&st, &namespace, &name, req, false).await);
    st.metrics
        .request("/v1/runs/approve", resp.status().as_u16());
    resp
}

/// `POST /v1/runs/{namespace}/{name}/reject`.
pub async fn reject(
    AxState(st): AxState<Arc<State>>,
    Path((namespace, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let resp = respond(handle(&st, &namespace, &name, req, true).await);
    st.metrics
        .request("/v1/runs/reject", resp.status().as_u16());
    resp
}

fn respond(r: Result<Value, ApiProblem>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn handle(
    st: &State,
    namespace: &str,
    name: &str,
    req: Request,
    rejecting: bool,
) -> Result<Value, ApiProblem> {
    let (parts, body) = req.into_parts();
    authorize(st, &parts.headers)?;
    if st.is_shutting_down() {
        return Err(ApiProblem::Unavailable(
            "heald is shutting down; retry against another replica".into(),
        ));
    }
    for (what, v) in [("namespace", namespace), ("run name", name)] {
        crate::address::check_namespace(v)
            .map_err(|why| ApiProblem::BadRequest(format!("invalid {what} {v:?}: {why}")))?;
    }
    let bytes = read_body(&parts.headers, body, st.config.max_body_bytes).await?;
    let body: DecideBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        DecideBody::default()
    } else {
        check_json(&parts.headers)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiProblem::BadRequest(format!("invalid body: {e}")))?
    };
    let by = match body.by.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_ACTOR.to_string(),
        Some(b) if b.chars().count() > MAX_ACTOR || b.chars().any(char::is_control) => {
            return Err(ApiProblem::BadRequest(format!(
                "by: at most {MAX_ACTOR} characters, without control characters"
            )));
        }
        Some(b) => b.to_string(),
    };
    let verdict = if rejecting {
        Verdict::Reject {
            reason: body.reason.unwrap_or_default().trim().to_string(),
        }
    } else {
        if body.reason.is_some() {
            return Err(ApiProblem::BadRequest(
                "reason: only a rejection takes one".into(),
            ));
        }
        Verdict::Approve
    };
    let kube = st
        .k8s
        .kube()
        .with_deadline(Instant::now() + st.config.api_timeout);
    match decide(&kube, namespace, name, &verdict, &by, "heald").await {
        Ok(d) => {
            tracing::info!(run = name, namespace, by = %d.by, decision = verdict.past(),
                "a run waiting for approval was decided through heald's endpoint");
            Ok(json!({
                "run": name,
                "namespace": namespace,
                "engine": d.engine.as_str(),
                "decision": verdict.past(),
                "by": d.by,
                "at": d.at.to_string(),
            }))
        }
        Err(e @ DecideError::NotFound { .. }) => Err(ApiProblem::NotFound(e.to_string())),
        Err(DecideError::Gate(g)) => Err(ApiProblem::Conflict(g.to_string())),
        Err(DecideError::Kube(e)) if e.is_transient() => Err(ApiProblem::Unavailable(
            "the Kubernetes API is unavailable; retry".into(),
        )),
        Err(DecideError::Kube(e)) => {
            tracing::warn!(run = name, namespace, error = %e, "could not record the decision");
            Err(ApiProblem::Forbidden(
                "the Kubernetes API refused the decision (see heald's log)".into(),
            ))
        }
    }
}
