//! Talking to the Kubernetes API server: connecting (kubeconfig or in-cluster), sending
//! requests, classifying errors the way the exit codes need, and retrying transient
//! failures (connection errors, timeouts, 429 honouring Retry-After, 500/502/503/504) with
//! exponential backoff and jitter, bounded by the run's deadline. A retry may follow an
//! attempt whose answer was lost after the server applied it: [`Sent::unanswered`] says so,
//! and [`Kube::create`] recognises its own object behind the 409 that such a retry gets.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use http::{Method, Request, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use crate::address::{ResourceType, TypeRef};
use crate::outcome::Exit;

/// Content type of a JSON merge patch (RFC 7386).
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// Content type of a JSON patch (RFC 6902).
pub const JSON_PATCH: &str = "application/json-patch+json";
/// Content type of a strategic merge patch.
pub const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
/// Content type of a server-side apply patch.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";
/// Content type of ordinary JSON bodies.
pub const JSON: &str = "application/json";

/// Longest a single HTTP attempt may take before it counts as a (transient) timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Path of a kubeconfig file; otherwise `KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use instead of the current one.
    pub context: Option<String>,
}

/// A failure talking to the API server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The server answered with a non-success status.
    #[error("{message} ({code} {reason})")]
    Status {
        /// HTTP status code.
        code: u16,
        /// `Status.reason` (`NotFound`, `Conflict`, ...), or the HTTP reason phrase.
        reason: String,
        /// `Status.message`, or the body text.
        message: String,
        /// Server-requested delay before retrying (Retry-After or `details.retryAfterSeconds`).
        retry_after: Option<Duration>,
        /// `Status.details.causes`, when present.
        causes: Vec<String>,
    },
    /// The request never got an answer (connection refused or reset, TLS failure, ...).
    #[error("cannot reach the API server: {0}")]
    Transport(String),
    /// The deadline passed.
    #[error("timed out{}", .0.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Timeout(Option<String>),
    /// The answer was not the JSON that was expected.
    #[error("unexpected answer from the API server: {0}")]
    Decode(String),
    /// The kubeconfig or in-cluster configuration could not be loaded.
    #[error("{}", .0.lines().next().unwrap_or_default())]
    Config(String),
}

impl ApiError {
    /// HTTP status, if the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether this is a 409.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// Whether this is a 409 `AlreadyExists` (a create of a name that exists), not the
    /// optimistic-concurrency `Conflict`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ApiError::Status { code: 409, reason, .. } if reason == "AlreadyExists")
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { code, .. } => matches!(code, 429 | 500 | 502 | 503 | 504),
            ApiError::Transport(_) | ApiError::Timeout(_) => true,
            ApiError::Decode(_) | ApiError::Config(_) => false,
        }
    }

    /// The exit code this error leads to when it ends the action.
    pub fn exit(&self) -> Exit {
        match self {
            ApiError::Config(_) => Exit::Usage,
            e if e.is_transient() || e.is_conflict() => Exit::Transient,
            _ => Exit::Failed,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The answer to one request, retries included.
#[derive(Debug, Clone)]
pub struct Sent {
    /// What the last attempt got.
    pub result: Result<Value, ApiError>,
    /// An earlier attempt ended without an answer (connection lost or reset, attempt timed
    /// out). A write it carried may have been applied: the answer that ended the call (a 409
    /// of a stale `resourceVersion`, a 404 of a deleted object, a 409 `AlreadyExists`) may
    /// then be the server's answer to this very write, repeated.
    pub unanswered: bool,
}

/// The HTTP client for `config`, as kube-client builds it (the kubeconfig's TLS, the base URI,
/// authentication, impersonation headers) but with the socket options of client-go:
/// `TCP_NODELAY` (Nagle's algorithm off), so that a request written right after the TLS
/// handshake, or a small request after a small one, leaves at once instead of waiting a
/// round trip for the server's ACK (kube-rs issue 2056). An `http://` server gets no TLS
/// configuration at all (kube-client would build one, loading the system's CA store when the
/// kubeconfig names no CA). Retries and the per-attempt timeout are [`Kube`]'s, so the
/// client has neither.
fn build_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    use hyper_util::client::legacy::Client as HyperClient;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    // A proxy, or an exec plugin (whose client certificate may expire), goes through
    // kube-client's own stack, which handles both.
    if config.proxy_url.is_some() || config.auth_info.exec.is_some() {
        return kube::Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let layers = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from);
    let namespace = config.default_namespace.clone();
    let plain = config.cluster_url.scheme() == Some(&http::uri::Scheme::HTTP);
    Ok(if plain {
        let client = HyperClient::builder(TokioExecutor::new()).build(http);
        kube::Client::new(layers.service(client), namespace)
    } else {
        let https = config.rustls_https_connector_with_connector(http)?;
        let client = HyperClient::builder(TokioExecutor::new()).build(https);
        kube::Client::new(layers.service(client), namespace)
    })
}

/// A connected API client with a deadline shared by every request of one action.
#[derive(Clone)]
pub struct Kube {
    client: kube::Client,
    /// Namespace from `-n`, else the kubeconfig context's, else the pod's own in cluster.
    pub default_namespace: String,
    deadline: Instant,
}

impl Kube {
    /// Load configuration and build a client. Nothing is sent yet.
    pub async fn connect(opts: &ConnectOptions, deadline: Instant) -> Result<Kube, ApiError> {
        let kc_opts = kube::config::KubeConfigOptions {
            context: opts.context.clone(),
            ..Default::default()
        };
        let mut config = match &opts.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    ApiError::Config(format!("cannot load kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(kc, &kc_opts)
                    .await
                    .map_err(|e| {
                        ApiError::Config(format!("invalid kubeconfig {}: {e}", path.display()))
                    })?
            }
            None if opts.context.is_some() => kube::Config::from_kubeconfig(&kc_opts)
                .await
                .map_err(|e| ApiError::Config(format!("cannot load kubeconfig: {e}")))?,
            None => kube::Config::infer().await.map_err(|e| {
                ApiError::Config(format!(
                    "no cluster configuration: {e} (pass --kubeconfig, set KUBECONFIG, or run in a pod)"
                ))
            })?,
        };
        // Retries are ours: bounded by the deadline, and they decide the exit code.
        config.default_retry = false;
        config.read_timeout = None;
        // kube-client panics on a bearer token that cannot be an HTTP header value (a stray
        // newline or control character): refuse it here, without echoing it.
        if let Some(token) = &config.auth_info.token {
            use secrecy::ExposeSecret;
            if http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).is_err() {
                return Err(ApiError::Config(
                    "the kubeconfig user's token is not a valid HTTP header value (does it hold a \
                     newline or a control character?)"
                        .into(),
                ));
            }
        }
        let default_namespace = config.default_namespace.clone();
        let client = build_client(config)
            .map_err(|e| ApiError::Config(format!("cannot build a Kubernetes client: {e}")))?;
        Ok(Kube {
            client,
            default_namespace,
            deadline,
        })
    }

    /// Wrap an existing client (tests, heald).
    pub fn from_client(client: kube::Client, deadline: Instant) -> Kube {
        let default_namespace = client.default_namespace().to_string();
        Kube {
            client,
            default_namespace,
            deadline,
        }
    }

    /// The same client with another deadline.
    pub fn with_deadline(&self, deadline: Instant) -> Kube {
        Kube {
            deadline,
            ..self.clone()
        }
    }

    /// The underlying client, for streaming requests (heald's watches).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// When the current action must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// GET `path` (which may carry a query string).
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.send(Method::GET, path, None, None).await
    }

    /// Send one request, retrying transient failures until the deadline.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.send_tracked(method, path, content_type, body)
            .await
            .result
    }

    /// [`Self::send`], also telling whether an attempt went unanswered before the answer
    /// that ended the call (see [`Sent::unanswered`]).
    pub async fn send_tracked(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Sent {
        let unanswered = AtomicBool::new(false);
        let result = self
            .send_retrying(method, path, content_type, body, &unanswered)
            .await;
        Sent {
            result,
            unanswered: unanswered.load(Ordering::Relaxed),
        }
    }

    /// Create `body` (an object with `metadata.name`) by POSTing it to `collection`
    /// (which may carry a query string). When an attempt went unanswered and the retry is
    /// 409 `AlreadyExists`, the object of that name is read: if it carries every label and
    /// annotation that was sent, it is this create's object, whose answer was lost, and it
    /// is the answer. Otherwise the 409 stands: someone else created that name.
    pub async fn create(
        &self,
        collection: &str,
        content_type: Option<&str>,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let sent = self
            .send_tracked(Method::POST, collection, content_type, Some(body))
            .await;
        match sent.result {
            Err(e) if sent.unanswered && e.is_already_exists() => {
                let Some(name) = body.pointer("/metadata/name").and_then(Value::as_str) else {
                    return Err(e);
                };
                let base = collection.split('?').next().unwrap_or(collection);
                let path = format!("{}/{}", base.trim_end_matches('/'), enc(name));
                match self.get(&path).await {
                    Ok(existing) if carries_metadata_of(&existing, body) => {
                        tracing::info!(
                            path,
                            "the answer to the create was lost; the object that exists is the one sent"
                        );
                        Ok(existing)
                    }
                    _ => Err(e),
                }
            }
            result => result,
        }
    }

    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
        unanswered: &AtomicBool,
    ) -> Result<Value, ApiError> {
        let bytes = match body {
            None => None,
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| ApiError::Decode(e.to_string()))?),
        };
        let last_error: Mutex<Option<String>> = Mutex::new(None);
        let attempt = || self.send_once(method.clone(), path, content_type, bytes.clone());
        let deadline = self.deadline;
        let retrying = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_factor(2.0)
                    .with_jitter()
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            .when(ApiError::is_transient)
            .adjust(|err, backoff| {
                let delay = err.retry_after().or(backoff)?;
                // Sleeping past the deadline only delays the exit code 3 that must follow.
                (Instant::now() + delay < deadline).then_some(delay)
            })
            .notify(|err, delay| {
                if matches!(err, ApiError::Transport(_) | ApiError::Timeout(_)) {
                    unanswered.store(true, Ordering::Relaxed);
                }
                tracing::warn!(%method, path, error = %err, retry_in_ms = delay.as_millis() as u64, "transient API error, retrying");
                if let Ok(mut last) = last_error.lock() {
                    *last = Some(err.to_string());
                }
            });
        match tokio::time::timeout_at(self.deadline, retrying).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Timeout(
                last_error.lock().ok().and_then(|mut l| l.take()),
            )),
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Value, ApiError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::ACCEPT, JSON);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        let req = builder
            .body(kube::client::Body::from(body.unwrap_or_default()))
            .map_err(|e| ApiError::Decode(format!("cannot build request for {path}: {e}")))?;
        let attempt_deadline = self.deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
        let exchange = async {
            let resp = self
                .client
                .send(req)
                .await
                .map_err(|e| ApiError::Transport(error_chain(&e)))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = resp
                .into_body()
                .collect_bytes()
                .await
                .map_err(|e| ApiError::Transport(error_chain(&e)))?;
            Ok::<_, ApiError>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = tokio::time::timeout_at(attempt_deadline, exchange)
            .await
            .map_err(|_| ApiError::Timeout(None))??;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Decode(format!("{path}: {e}")));
        }
        Err(status_error(status, retry_after, &bytes))
    }

    /// Resolve a resource type, using API discovery only for custom resources.
    pub async fn resolve(&self, type_ref: &TypeRef) -> Result<ResourceType, ApiError> {
        let (group, version, name) = match type_ref {
            TypeRef::Known(rt) => return Ok(rt.clone()),
            TypeRef::Discover {
                group,
                version,
                name,
            } => (group, version, name),
        };
        let version = match version {
            Some(v) => v.clone(),
            None => {
                let g = self.get(&format!("/apis/{group}")).await.map_err(|e| {
                    if e.is_not_found() {
                        ApiError::Status {
                            code: 404,
                            reason: "NotFound".into(),
                            message: format!("the server has no API group {group:?}"),
                            retry_after: None,
                            causes: vec![],
                        }
                    } else {
                        e
                    }
                })?;
                g.pointer("/preferredVersion/version")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::Decode(format!("API group {group} has no preferred version"))
                    })?
                    .to_string()
            }
        };
        let list = self.get(&format!("/apis/{group}/{version}")).await?;
        let resources = list
            .get("resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        let found = resources.iter().find(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let plural = s("name");
            !plural.contains('/')
                && (plural == lower
                    || s("singularName") == lower
                    || s("kind").to_ascii_lowercase() == lower
                    || r.get("shortNames")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(lower.as_str()))))
        });
        let Some(r) = found else {
            return Err(ApiError::Status {
                code: 404,
                reason: "NotFound".into(),
                message: format!(
                    "the server doesn't have a resource type {name:?} in {group}/{version}"
                ),
                retry_after: None,
                causes: vec![],
            });
        };
        let plural = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let scalable = resources
            .iter()
            .any(|s| s.get("name").and_then(Value::as_str) == Some(&format!("{plural}/scale")));
        Ok(ResourceType {
            group: group.clone(),
            version,
            kind: r
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            plural: plural.to_string(),
            namespaced: r.get("namespaced").and_then(Value::as_bool).unwrap_or(true),
            scalable,
        })
    }
}

fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let retry_after = retry_after.or_else(|| {
        parsed
            .as_ref()
            .and_then(|v| v.pointer("/details/retryAfterSeconds"))
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
    });
    let causes = parsed
        .as_ref()
        .and_then(|v| v.pointer("/details/causes"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let message = c.get("message").and_then(Value::as_str)?;
                    // A server-side apply conflict names the field apart from the manager.
                    Some(match c.get("field").and_then(Value::as_str) {
                        Some(f)
                            if c.get("reason").and_then(Value::as_str)
                                == Some("FieldManagerConflict") =>
                        {
                            format!("{message}: {f}")
                        }
                        _ => message.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    ApiError::Status {
        code: status.as_u16(),
        reason: field("reason")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").replace(' ', "")),
        message: field("message").unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("the server answered {status}")
            } else {
                text.chars().take(300).collect()
            }
        }),
        retry_after,
        causes,
    }
}

/// Whether `existing` carries every label and annotation of `sent`, with the same values.
pub fn carries_metadata_of(existing: &Value, sent: &Value) -> bool {
    ["labels", "annotations"].iter().all(|field| {
        let theirs = existing
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object);
        match sent
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        {
            None => true,
            Some(ours) => ours
                .iter()
                .all(|(k, v)| theirs.and_then(|t| t.get(k)) == Some(v)),
        }
    })
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Percent-encode a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_become_classified_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too many","reason":"TooManyRequests","details":{"retryAfterSeconds":2},"code":429}"#;
        let e = status_error(StatusCode::TOO_MANY_REQUESTS, None, body);
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(e.exit(), Exit::Transient);
        let e = status_error(StatusCode::NOT_FOUND, None, b"");
        assert!(e.is_not_found());
        assert_eq!(e.exit(), Exit::Failed);
        assert!(e.to_string().contains("404 NotFound"), "{e}");
    }

    #[test]
    fn an_object_carries_the_metadata_sent_when_every_label_and_annotation_is_there() {
        let sent = serde_json::json!({"metadata": {"name": "r", "labels": {"a": "1"},
            "annotations": {"heal.dev/x": "y"}}});
        let stored = serde_json::json!({"metadata": {"name": "r", "uid": "u",
            "labels": {"a": "1", "b": "2"}, "annotations": {"heal.dev/x": "y", "z": ""}}});
        assert!(carries_metadata_of(&stored, &sent));
        let other = serde_json::json!({"metadata": {"name": "r", "labels": {"a": "1"},
            "annotations": {"heal.dev/x": "someone else"}}});
        assert!(!carries_metadata_of(&other, &sent));
        assert!(!carries_metadata_of(
            &serde_json::json!({"metadata": {}}),
            &sent
        ));
    }

    #[test]
    fn already_exists_is_a_409_with_its_own_reason() {
        let e = status_error(
            StatusCode::CONFLICT,
            None,
            br#"{"kind":"Status","reason":"AlreadyExists","message":"x","code":409}"#,
        );
        assert!(e.is_already_exists() && e.is_conflict());
        let e = status_error(
            StatusCode::CONFLICT,
            None,
            br#"{"kind":"Status","reason":"Conflict","message":"x","code":409}"#,
        );
        assert!(!e.is_already_exists() && e.is_conflict());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("spec.nodeName=n1"), "spec.nodeName%3Dn1");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
