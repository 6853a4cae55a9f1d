//! heald's Kubernetes calls, all through [`Kube`]: each call waits for a token of the QPS
//! limiter and gets its own deadline. Reading and writing the guard Leases (create, or
//! replace with `resourceVersion`; 409 means another replica won), listing and marking runs,
//! and recording Events on runs. A create whose answer was lost, met by 409 on its retry,
//! is recognised as created (see [`Kube::create`]); so is a Lease update whose answer was
//! lost when the Lease holds what was written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::kube_api::{ApiError, JSON, Kube, MERGE_PATCH, Sent, enc};

/// A failure of one of heald's Kubernetes operations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeIoError {
    /// The API server refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// An object of heald's (a Lease) it cannot read.
    #[error("{0}")]
    Unreadable(String),
    /// Another writer changed the object first (409): read again and decide again.
    #[error("{0} was changed by someone else first")]
    Conflict(String),
}

impl KubeIoError {
    /// Whether a retry later (for example by Alertmanager) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            KubeIoError::Api(e) => e.is_transient(),
            KubeIoError::Unreadable(_) => false,
            KubeIoError::Conflict(_) => true,
        }
    }
}

tokio::task_local! {
    /// The request budget of the webhook answer this task works for: see
    /// [`K8s::reserve`].
    static BUDGET: Budget;
}

/// Requests an answer may still send: tokens of the QPS limiter taken ahead for the work
/// at hand, and the instant by which the answer is due.
#[derive(Debug)]
pub struct Budget {
    deadline: Instant,
    prepaid: std::cell::Cell<u32>,
}

impl Budget {
    /// Run `work` with an answer due at `deadline`: its [`K8s::reserve`] calls take their
    /// tokens ahead, or say the work does not fit.
    pub async fn scope<F: std::future::Future>(deadline: Instant, work: F) -> F::Output {
        let budget = Budget {
            deadline,
            prepaid: std::cell::Cell::new(0),
        };
        BUDGET.scope(budget, work).await
    }
}

/// When the answer the current task works for is due (`None` outside a
/// [`Budget::scope`]).
pub fn answer_due() -> Option<Instant> {
    BUDGET.try_with(|b| b.deadline).ok()
}

/// Objects of one collection as a watch shows them, by name, the way a client-go
/// informer's store keeps them: filled by a list, kept current by the watch's events and
/// by the writer's own answers (an older version never replaces a newer one). Until the
/// first list, and while the watch is broken, it knows nothing and readers ask the API
/// server. A name whose write met 409 is unknown until the watch or a read brings its
/// current version. What it shows may lag the API server by a watch event: writes made
/// from it carry its `resourceVersion`, so a stale entry costs a 409 and a read, never a
/// lost update.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    synced: bool,
    objects: std::collections::HashMap<String, Value>,
    /// Names whose cached state is known to be behind (a write met 409).
    stale: std::collections::HashSet<String>,
}

/// What a [`Cache`] says of one name.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// Ask the API server: the cache is not synced, or this entry is behind.
    Unknown,
    /// No such object.
    Absent,
    /// The object.
    Present(Value),
}

/// `metadata.resourceVersion` as a number, when it is one (it is on every kube-apiserver,
/// though clients are told to treat it as opaque: then every version counts as newer).
fn version_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

fn name_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name").and_then(Value::as_str)
}

impl Cache {
    /// What the cache knows of `name`.
    pub fn get(&self, name: &str) -> Cached {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !c.synced || c.stale.contains(name) {
            return Cached::Unknown;
        }
        match c.objects.get(name) {
            Some(obj) => Cached::Present(obj.clone()),
            None => Cached::Absent,
        }
    }

    /// Whether the cache answers reads.
    pub fn is_synced(&self) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).synced
    }

    /// Start over from a list: its items are all there is.
    pub fn replace_all(&self, items: &[Value]) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.objects = items
            .iter()
            .filter_map(|o| Some((name_of(o)?.to_string(), o.clone())))
            .collect();
        c.stale.clear();
        c.synced = true;
    }

    /// Stop answering reads (the watch broke), or answer them again (it goes on from
    /// where it stopped).
    pub fn set_synced(&self, synced: bool) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).synced = synced;
    }

    /// An object as written or read or shown by the watch: kept unless the cache holds a
    /// newer version.
    pub fn put(&self, obj: &Value) {
        let Some(name) = name_of(obj) else { return };
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let newer = match (c.objects.get(name).and_then(version_of), version_of(obj)) {
            (Some(held), Some(new)) => new >= held,
            _ => true,
        };
        if newer {
            c.objects.insert(name.to_string(), obj.clone());
        }
        c.stale.remove(name);
    }

    /// An object the watch shows deleted, or a read found missing.
    pub fn remove(&self, name: &str) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.objects.remove(name);
        c.stale.remove(name);
    }

    /// A write of `name` met 409: its cached state is behind until the watch or a read
    /// brings the current one.
    pub fn invalidate(&self, name: &str) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.stale.insert(name.to_string());
    }
}

/// The Kubernetes client heald uses: [`Kube`] plus a QPS limiter and a per-call deadline.
#[derive(Clone)]
pub struct K8s {
    kube: Kube,
    qps: Arc<QpsLimiter>,
    timeout: Duration,
    leases: Arc<Cache>,
}

impl std::fmt::Debug for K8s {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8s")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl K8s {
    /// Wrap a client: `qps` requests per second, bursts of `burst`, each call at most
    /// `timeout` (retries included).
    pub fn new(kube: Kube, qps: f64, burst: u32, timeout: Duration) -> K8s {
        K8s {
            kube,
            qps: Arc::new(QpsLimiter::new(qps, burst)),
            timeout,
            leases: Arc::new(Cache::default()),
        }
    }

    /// heald's own Leases (its guards' state, not its rate buckets) as its Lease watch
    /// last showed them and its own writes left them.
    pub fn leases(&self) -> &Cache {
        &self.leases
    }

    /// The underlying connection, for work that is not heald's own bookkeeping (the local
    /// engine's steps), outside the QPS limiter.
    pub fn kube(&self) -> &Kube {
        &self.kube
    }

    /// Take ahead the tokens of the `n` requests the next piece of work sends (an alert's
    /// observation, or its effects), when they all come before the answer is due: `false`
    /// when they do not (nothing is taken, nothing should be sent). Outside a
    /// [`Budget::scope`] there is no answer to wait for: `true`, and requests wait for
    /// their tokens one by one.
    pub async fn reserve(&self, n: u32) -> bool {
        let Ok(deadline) = BUDGET.try_with(|b| b.deadline) else {
            return true;
        };
        let Some(wait) = self.qps.reserve(n, deadline) else {
            return false;
        };
        let _ = BUDGET.try_with(|b| b.prepaid.set(b.prepaid.get() + n));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }

    /// Give back the tokens taken ahead and not used.
    pub fn return_unused(&self) {
        let left = BUDGET.try_with(|b| b.prepaid.replace(0)).unwrap_or(0);
        if left > 0 {
            self.qps.give_back(left);
        }
    }

    fn prepaid(&self) -> bool {
        BUDGET
            .try_with(|b| {
                let n = b.prepaid.get();
                if n > 0 {
                    b.prepaid.set(n - 1);
                }
                n > 0
            })
            .unwrap_or(false)
    }

    /// Send one request under the limiter and the deadline. A POST of a named object is a
    /// create: when its answer was lost and the retry answers 409, the object found under
    /// that name with the labels and annotations sent is the answer ([`Kube::create`]).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let kube = self.limited().await?;
        match body {
            Some(b) if method == Method::POST && b.pointer("/metadata/name").is_some() => {
                kube.create(path, content_type, b).await
            }
            _ => kube.send(method, path, content_type, body).await,
        }
    }

    /// [`Self::send`] without the create handling, telling whether an attempt went
    /// unanswered.
    pub async fn send_tracked(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Sent {
        match self.limited().await {
            Ok(kube) => kube.send_tracked(method, path, content_type, body).await,
            Err(e) => Sent {
                result: Err(e),
                unanswered: false,
            },
        }
    }

    /// The client with this call's deadline, once the limiter lets the call go.
    async fn limited(&self) -> Result<Kube, ApiError> {
        let deadline = Instant::now() + self.timeout;
        if !self.prepaid() && !self.qps.acquire(deadline).await {
            return Err(ApiError::Timeout(Some(
                "heald's Kubernetes request rate limit (--kube-qps) was reached".into(),
            )));
        }
        Ok(self.kube.with_deadline(deadline))
    }

    /// GET, with 404 as `None`.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, ApiError> {
        match self.send(Method::GET, path, None, None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// List objects of a collection matching a label selector; 404 (the engine's CRD is not
    /// installed) is an empty list.
    pub async fn list(&self, collection: &str, selector: &str) -> Result<Vec<Value>, ApiError> {
        let path = format!("{collection}?labelSelector={}", enc(selector));
        match self.send(Method::GET, &path, None, None).await {
            Ok(v) => Ok(v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// List a collection with a label selector: its items and the list's
    /// `metadata.resourceVersion` (where a watch starts); 404 (no CRD) is an empty list.
    pub async fn list_from(
        &self,
        collection: &str,
        selector: &str,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        let path = format!("{collection}?labelSelector={}", enc(selector));
        match self.send(Method::GET, &path, None, None).await {
            Ok(v) => Ok((
                v.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                v.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            )),
            Err(e) if e.is_not_found() => Ok((Vec::new(), None)),
            Err(e) => Err(e),
        }
    }

    /// Open a watch on a collection (`?watch=true&labelSelector=...&resourceVersion=...`,
    /// bookmarks allowed, closed by the server after `timeout_seconds`). The answer's
    /// headers come within the per-call deadline; the events then arrive for as long as
    /// the server keeps the stream open.
    pub async fn watch(
        &self,
        collection: &str,
        selector: &str,
        resource_version: Option<&str>,
        timeout_seconds: u64,
    ) -> Result<WatchStream, ApiError> {
        let deadline = Instant::now() + self.timeout;
        if !self.qps.acquire(deadline).await {
            return Err(ApiError::Timeout(Some(
                "heald's Kubernetes request rate limit (--kube-qps) was reached".into(),
            )));
        }
        let mut path = format!(
            "{collection}?watch=true&allowWatchBookmarks=true&timeoutSeconds={timeout_seconds}\
             &labelSelector={}",
            enc(selector)
        );
        if let Some(rv) = resource_version {
            path.push_str(&format!("&resourceVersion={}", enc(rv)));
        }
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(&path)
            .header(http::header::ACCEPT, JSON)
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|e| ApiError::Decode(format!("cannot build request for {path}: {e}")))?;
        let resp = tokio::time::timeout_at(deadline, self.kube.client().send(req))
            .await
            .map_err(|_| ApiError::Timeout(None))?
            .map_err(|e| ApiError::Transport(crate::kube_api::error_chain(&e)))?;
        let status = resp.status();
        let body = resp.into_body();
        if !status.is_success() {
            let text = tokio::time::timeout_at(deadline, http_body_util::BodyExt::collect(body))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default();
            let parsed: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
            let field = |k: &str| parsed.get(k).and_then(Value::as_str).map(str::to_string);
            return Err(ApiError::Status {
                code: status.as_u16(),
                reason: field("reason")
                    .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string()),
                message: field("message")
                    .unwrap_or_else(|| truncate(String::from_utf8_lossy(&text).trim(), 300)),
                retry_after: None,
                causes: Vec::new(),
            });
        }
        Ok(WatchStream {
            body,
            buf: Vec::new(),
        })
    }

    /// Merge-patch an object with its `resourceVersion` as a precondition: `Ok(false)` when
    /// someone changed it first (409) or it is gone (404).
    pub async fn patch_if_unchanged(
        &self,
        path: &str,
        resource_version: &str,
        mut patch: Value,
    ) -> Result<bool, ApiError> {
        patch["metadata"]["resourceVersion"] = json!(resource_version);
        match self
            .send(Method::PATCH, path, Some(MERGE_PATCH), Some(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Record a `core/v1` Event on a run (or any object). Failures are logged, never fatal.
    /// The Event is named for its object and time, as client-go names Events, so that a
    /// retry after a lost answer meets it (409) instead of recording it twice.
    pub async fn event(&self, on: &EventTarget<'_>, event_type: &str, reason: &str, message: &str) {
        let now = Timestamp::now();
        let time = now.to_string();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": crate::actions::event_name(on.name, now),
                "namespace": on.namespace,
                "annotations": {"heal.dev/correlation-id": on.correlation_id},
            },
            "involvedObject": {
                "apiVersion": on.api_version,
                "kind": on.kind,
                "namespace": on.namespace,
                "name": on.name,
            },
            "reason": reason,
            "message": truncate(message, 1024),
            "type": event_type,
            "source": {"component": "heald"},
            "reportingComponent": "heald",
            "reportingInstance": on.instance,
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
        });
        let path = format!("/api/v1/namespaces/{}/events", enc(on.namespace));
        if let Err(e) = self
            .send(Method::POST, &path, Some(JSON), Some(&event))
            .await
        {
            tracing::warn!(correlation_id = on.correlation_id, run = on.name, error = %e, "could not record event");
        }
    }
}

/// Longest watch event heald reads (a run object with its status).
const MAX_WATCH_LINE: usize = 16 * 1024 * 1024;

/// The events of an open watch, one JSON document per line.
pub struct WatchStream {
    body: kube::client::Body,
    buf: Vec<u8>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    /// The next event (`{"type": ..., "object": ...}`); `Ok(None)` when the server closed
    /// the stream.
    pub async fn next(&mut self) -> Result<Option<Value>, ApiError> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| ApiError::Decode(format!("watch event: {e}")));
            }
            if self.buf.len() > MAX_WATCH_LINE {
                return Err(ApiError::Decode(format!(
                    "a watch event is longer than {MAX_WATCH_LINE} bytes"
                )));
            }
            match http_body_util::BodyExt::frame(&mut self.body).await {
                None => {
                    let rest = std::mem::take(&mut self.buf);
                    if rest.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    return serde_json::from_slice(&rest)
                        .map(Some)
                        .map_err(|e| ApiError::Decode(format!("watch event: {e}")));
                }
                Some(Err(e)) => {
                    return Err(ApiError::Transport(crate::kube_api::error_chain(&e)));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// The object an Event is about.
#[derive(Debug, Clone, Copy)]
pub struct EventTarget<'a> {
    /// `argoproj.io/v1alpha1`.
    pub api_version: &'a str,
    /// `Workflow`.
    pub kind: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Correlation id.
    pub correlation_id: &'a str,
    /// heald replica.
    pub instance: &'a str,
}

/// Cut `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Path of the Leases collection, or of one Lease.
pub fn lease_path(namespace: &str, name: Option<&str>) -> String {
    let base = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
        enc(namespace)
    );
    match name {
        Some(n) => format!("{base}/{}", enc(n)),
        None => base,
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take a token now or in the future: how long the caller must wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.reserve_n(1, now)
    }

    /// Take `n` tokens now or in the future: how long until the last of them is there.
    pub fn reserve_n(&mut self, n: u32, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= f64::from(n);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Bounds heald's Kubernetes request rate: each request waits for its token.
#[derive(Debug)]
pub struct QpsLimiter {
    bucket: Mutex<Bucket>,
}

impl QpsLimiter {
    /// `qps` requests per second, bursts of `burst`.
    pub fn new(qps: f64, burst: u32) -> QpsLimiter {
        QpsLimiter {
            bucket: Mutex::new(Bucket::new(qps, burst, Instant::now())),
        }
    }

    /// Reserve `n` requests' tokens for one piece of work (an alert's decision and its
    /// effects), if the last of them comes by `deadline`: how long to wait before starting
    /// (after which the `n` requests need no token), or `None` (nothing is taken).
    pub fn reserve(&self, n: u32, deadline: Instant) -> Option<Duration> {
        let now = Instant::now();
        let mut b = match self.bucket.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let wait = b.reserve_n(n, now);
        if now + wait > deadline {
            b.tokens += f64::from(n);
            return None;
        }
        Some(wait)
    }

    /// Give back `n` tokens reserved and not used.
    pub fn give_back(&self, n: u32) {
        let mut b = match self.bucket.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        b.tokens = (b.tokens + f64::from(n)).min(b.burst);
    }

    /// Wait for a token; `false` when it would come after `deadline` (nothing is taken).
    pub async fn acquire(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        let wait = {
            let mut b = match self.bucket.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let wait = b.reserve(now);
            if now + wait > deadline {
                b.tokens += 1.0;
                return false;
            }
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn lease(name: &str, rv: &str, holder: &str) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": rv}, "spec": {"holderIdentity": holder}})
    }

    #[test]
    fn a_cache_answers_only_once_listed_and_never_goes_back_to_an_older_version() {
        let c = Cache::default();
        c.put(&lease("a", "5", "r1"));
        assert_eq!(c.get("a"), Cached::Unknown, "not listed yet");
        c.replace_all(&[lease("a", "5", "r1")]);
        assert_eq!(c.get("a"), Cached::Present(lease("a", "5", "r1")));
        assert_eq!(c.get("b"), Cached::Absent);
        // heald's own write (version 7) arrives before the watch's older event (6).
        c.put(&lease("a", "7", "r3"));
        c.put(&lease("a", "6", "r2"));
        assert_eq!(c.get("a"), Cached::Present(lease("a", "7", "r3")));
        // A write met 409: read the API server until a newer version comes.
        c.invalidate("a");
        assert_eq!(c.get("a"), Cached::Unknown);
        c.put(&lease("a", "9", "r4"));
        assert_eq!(c.get("a"), Cached::Present(lease("a", "9", "r4")));
        c.remove("a");
        assert_eq!(c.get("a"), Cached::Absent);
        // The watch broke: nothing is answered from memory until it goes on.
        c.set_synced(false);
        assert_eq!(c.get("b"), Cached::Unknown);
    }
}
