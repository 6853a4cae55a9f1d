//! heald's HTTP interface. [`router`] serves the webhook port: `POST /v1/alerts`
//! (Alertmanager webhook v4), `POST /v1/reports` (what `heal report` sends) and
//! `GET /v1/remediations`; all three need the bearer token. `POST
//! /v1/runs/{namespace}/{name}/approve` and `/reject` decide a run waiting for approval,
//! with their own token ([`approval`](crate::heald::approval)). [`admin_router`] serves the
//! admin port: `/healthz`, `/readyz`, `/metrics`. Error answers are JSON
//! `{"error": MESSAGE, "code": STATUS}` and never carry internals; 5xx only when a retry
//! could succeed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::alert::Webhook;
use crate::heald::engines::runs::{RunInfo, object_path};
use crate::heald::state::State;
use crate::heald::tracking::{Ending, finish};
use crate::heald::{REPORTED_LABEL, intake};
use crate::render::Engine as Kind;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiProblem {
    /// No or wrong bearer token (401).
    Unauthorized,
    /// The body is larger than the limit (413).
    TooLarge(usize),
    /// The body is not JSON (415).
    UnsupportedMediaType(String),
    /// The body is malformed (400); the message names the field.
    BadRequest(String),
    /// The named thing does not exist (404).
    NotFound(String),
    /// The named thing is not in a state that allows the request (409).
    Conflict(String),
    /// The Kubernetes API refused heald (403).
    Forbidden(String),
    /// Shutting down or a dependency is down: retry (503).
    Unavailable(String),
}

impl ApiProblem {
    fn status(&self) -> StatusCode {
        match self {
            ApiProblem::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiProblem::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiProblem::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiProblem::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiProblem::NotFound(_) => StatusCode::NOT_FOUND,
            ApiProblem::Conflict(_) => StatusCode::CONFLICT,
            ApiProblem::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiProblem::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiProblem::Unauthorized => {
                "missing or wrong bearer token (Authorization: Bearer TOKEN)".into()
            }
            ApiProblem::TooLarge(limit) => format!("the body is larger than {limit} bytes"),
            ApiProblem::UnsupportedMediaType(m)
            | ApiProblem::BadRequest(m)
            | ApiProblem::NotFound(m)
            | ApiProblem::Conflict(m)
            | ApiProblem::Forbidden(m)
            | ApiProblem::Unavailable(m) => m.clone(),
        }
    }
}

impl IntoResponse for ApiProblem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (
            status,
            axum::Json(json!({"error": self.message(), "code": status.as_u16()})),
        )
            .into_response();
        match self {
            ApiProblem::Unauthorized => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"heald\""),
                );
            }
            ApiProblem::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}

/// The webhook port's routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/alerts", post(alerts))
        .route("/v1/reports", post(reports))
        .route("/v1/remediations", get(remediations))
        .route(
            "/v1/runs/{namespace}/{name}/approve",
            post(crate::heald::approval::approve),
        )
        .route(
            "/v1/runs/{namespace}/{name}/reject",
            post(crate::heald::approval::reject),
        )
        .fallback(|| async { ApiProblem::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// The admin port's routes.
pub fn admin_router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(AxState(st): AxState<Arc<State>>) -> Response {
    if st.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics(AxState(st): AxState<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

/// Check the bearer token in constant time.
fn authorize(st: &State, headers: &HeaderMap) -> Result<(), ApiProblem> {
    let Some(expected) = &st.config.token else {
        return Ok(());
    };
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

/// JSON bodies only; a missing content type is accepted (Alertmanager always sends one).
pub(crate) fn check_json(headers: &HeaderMap) -> Result<(), ApiProblem> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiProblem::UnsupportedMediaType(format!(
            "Content-Type {ct:?}: send application/json"
        )))
    }
}

/// Read the body, refusing it as soon as it passes `limit` bytes.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, ApiProblem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiProblem::TooLarge(limit));
    }
    let mut body = body;
    let mut buf = Vec::with_capacity(declared.map_or(8192, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiProblem::BadRequest(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiProblem::TooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// Authenticate and read a JSON body.
async fn authenticated_json(st: &State, req: Request) -> Result<Vec<u8>, ApiProblem> {
    let (parts, body) = req.into_parts();
    authorize(st, &parts.headers)?;
    if st.is_shutting_down() {
        return Err(ApiProblem::Unavailable(
            "heald is shutting down; retry against another replica".into(),
        ));
    }
    check_json(&parts.headers)?;
    read_body(&parts.headers, body, st.config.max_body_bytes).await
}

fn count(st: &State, route: &str, resp: Response) -> Response {
    st.metrics.request(route, resp.status().as_u16());
    resp
}

async fn alerts(AxState(st): AxState<Arc<State>>, req: Request) -> Response {
    let started = Instant::now();
    let resp = match alerts_inner(&st, req).await {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(p) => p.into_response(),
    };
    st.metrics
        .webhook_seconds
        .observe(started.elapsed().as_secs_f64());
    count(&st, "/v1/alerts", resp)
}

async fn alerts_inner(st: &Arc<State>, req: Request) -> Result<Value, ApiProblem> {
    let body = authenticated_json(st, req).await?;
    let hook = Webhook::parse(&body).map_err(|e| ApiProblem::BadRequest(e.to_string()))?;
    if hook.alerts.is_empty() {
        return Err(ApiProblem::BadRequest(
            "alerts: empty list; Alertmanager always sends at least one alert".into(),
        ));
    }
    if hook.truncated_alerts > 0 {
        tracing::warn!(
            group_key = %hook.group_key,
            truncated = hook.truncated_alerts,
            "Alertmanager left alerts out of this notification (max_alerts); they get no decision"
        );
    }
    // Work that cannot be done in time is deferred rather than answered 503.
    let work = intake::handle_alerts(st, hook.into_alerts(), Some(st.config.request_timeout));
    match tokio::time::timeout(st.config.request_timeout, work).await {
        Ok(Ok(decisions)) => Ok(json!({"decisions": decisions})),
        Ok(Err(e)) => Err(ApiProblem::Unavailable(e.0)),
        Err(_) => Err(ApiProblem::Unavailable(format!(
            "no answer within {}; the work goes on, and a retry gets the decisions",
            crate::duration::format(st.config.request_timeout)
        ))),
    }
}

/// The body of `POST /v1/reports` (what `heal report` sends).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportBody {
    engine: String,
    run_name: String,
    namespace: String,
    status: String,
    #[serde(default)]
    outcome: Option<String>,
    correlation_id: String,
    #[serde(default)]
    results: Option<Value>,
}

/// Step results from a report: an object by step name, or a list of heal results.
fn report_steps(results: Option<Value>) -> BTreeMap<String, Value> {
    match results {
        Some(Value::Object(m)) => m.into_iter().collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let name = v
                    .get("step")
                    .or_else(|| v.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("step-{i}"));
                (name, v)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

async fn reports(AxState(st): AxState<Arc<State>>, req: Request) -> Response {
    let resp = match reports_inner(&st, req).await {
        Ok((code, v)) => (code, axum::Json(v)).into_response(),
        Err(p) => p.into_response(),
    };
    count(&st, "/v1/reports", resp)
}

async fn reports_inner(st: &Arc<State>, req: Request) -> Result<(StatusCode, Value), ApiProblem> {
    let body = authenticated_json(st, req).await?;
    let report: ReportBody = serde_json::from_slice(&body)
        .map_err(|e| ApiProblem::BadRequest(format!("invalid report: {e}")))?;
    let engine: Kind = report
        .engine
        .parse()
        .map_err(|e| ApiProblem::BadRequest(format!("engine: {e}")))?;
    for (field, v) in [
        ("runName", &report.run_name),
        ("namespace", &report.namespace),
    ] {
        if !crate::heald::config::is_dns_label(v) {
            return Err(ApiProblem::BadRequest(format!(
                "{field}: {v:?} is not a valid name"
            )));
        }
    }
    if engine == Kind::Local {
        return Err(ApiProblem::BadRequest(
            "engine: heald runs local runs itself and handles their outcome; nothing to report"
                .into(),
        ));
    }
    let Some(path) = object_path(engine, &report.namespace, &report.run_name) else {
        return Err(ApiProblem::BadRequest(format!(
            "engine: heald does not track {engine} runs"
        )));
    };
    let k8s = &st.k8s;
    let not_found = || {
        ApiProblem::NotFound(format!(
            "no {} {}/{} created by heald",
            engine.kind(),
            report.namespace,
            report.run_name
        ))
    };
    let obj = match k8s.get_opt(&path).await {
        Ok(Some(o)) => o,
        Ok(None) => return Err(not_found()),
        Err(e) if e.is_transient() => {
            return Err(ApiProblem::Unavailable(format!(
                "the Kubernetes API is unavailable: {e}"
            )));
        }
        Err(e) => return Err(ApiProblem::Unavailable(format!("reading the run: {e}"))),
    };
    let info = RunInfo::from_object(&obj).ok_or_else(not_found)?;
    if info.correlation_id != report.correlation_id {
        return Err(ApiProblem::BadRequest(format!(
            "correlationId: {:?} is not the correlation id of run {}",
            report.correlation_id, report.run_name
        )));
    }
    let already = obj
        .pointer(&format!(
            "/metadata/labels/{}",
            REPORTED_LABEL.replace('/', "~1")
        ))
        .is_some();
    if already {
        return Ok((
            StatusCode::OK,
            json!({"run": report.run_name, "status": "already-reported"}),
        ));
    }
    let status = report.outcome.as_deref().unwrap_or(&report.status);
    let outcome = match crate::report_http::normalise(status) {
        "succeeded" => crate::heald::engines::runs::RunOutcome::Succeeded,
        _ => crate::heald::engines::runs::RunOutcome::Failed,
    };
    let ending = Ending {
        outcome,
        message: format!("heal report: status {}", report.status),
        steps: report_steps(report.results),
        source: "report",
    };
    // In its own task: the report's sender may go away, the outcome must still be handled.
    let task_state = Arc::clone(st);
    let run = report.run_name.clone();
    tokio::spawn(async move {
        if let Err(e) = finish(&task_state, &obj, ending).await {
            tracing::warn!(run = %run, error = %e, "could not handle the report; the tracker will");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        json!({"run": report.run_name, "outcome": outcome.as_str(), "status": "accepted"}),
    ))
}

async fn remediations(
    AxState(st): AxState<Arc<State>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let resp = (|| {
        authorize(&st, &headers)?;
        let limit = match q.get("limit") {
            None => 100,
            Some(s) => s.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiProblem::BadRequest(format!("limit: {s:?} is not a positive number"))
            })?,
        };
        Ok::<_, ApiProblem>(json!({"items": st.history.recent(limit)}))
    })();
    let resp = match resp {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(p) => p.into_response(),
    };
    count(&st, "/v1/remediations", resp)
}
