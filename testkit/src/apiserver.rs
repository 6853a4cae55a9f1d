//! An in-memory Kubernetes API server for HTTP-level tests.
//!
//! [`ApiServer::start`] binds `127.0.0.1:0` and serves on its own thread with its own
//! multi-thread tokio runtime, so `#[tokio::test]` tests and plain tests that spawn the
//! `heal` binary (or kubectl) with [`ApiServer::kubeconfig`] can both use it; it stops when
//! dropped. Requests need `Authorization: Bearer test-token`.
//!
//! # What it serves
//!
//! Discovery as a real server answers it (legacy format; clients asking for aggregated
//! discovery fall back): `/api`, `/apis`, `/api/v1`, `/apis/{group}[/{version}]`, plus
//! `/version` and `/healthz`. OpenAPI (`/openapi/v2`, `/openapi/v3`) is a 404, as on a
//! server with OpenAPI disabled. Resources, with their real scope, short names and verbs:
//! core v1 pods (+ `status`, `eviction`), nodes, events, configmaps, secrets, services,
//! namespaces; apps/v1 deployments, statefulsets, replicasets (+ `scale`, `status`),
//! daemonsets; autoscaling/v2 horizontalpodautoscalers (+ `status`); policy/v1
//! poddisruptionbudgets; coordination.k8s.io/v1 leases;
//! events.k8s.io/v1 events (the same store as core events, converted both ways);
//! apiextensions.k8s.io/v1 customresourcedefinitions; and custom resources once a CRD is
//! registered ([`ApiServer::register_crd`], [`ApiServer::register_argo_workflows`],
//! [`ApiServer::register_tekton_pipelineruns`], or by creating a CRD through the API).
//!
//! # Conventions followed
//!
//! Errors are `Status` objects with the reasons, codes, messages and details of
//! `k8s.io/apimachinery/pkg/api/errors` (`deployments.apps "web" not found`, AlreadyExists,
//! the optimistic-concurrency Conflict, Invalid with field causes, 415 for unknown patch
//! types, 405, 406, 401). Create fills uid, creationTimestamp, generation (for types that
//! keep one), a resourceVersion from one global counter, honours `generateName`, rejects a
//! missing or invalid name (422), a set resourceVersion (500, as upstream), an existing name
//! (409) and a missing namespace (404), and resets status for types with a status
//! subresource. Update checks a set resourceVersion (409 Conflict), keeps status (or only
//! takes status, on `/status`), bumps generation on spec changes (deployments also on
//! annotation changes, custom resources on anything but metadata/status), and stores
//! nothing for a no-op write. PATCH takes merge, JSON (422 for a failed `test`, 400 for a
//! malformed patch), strategic merge (built-ins only) and apply patches (see
//! [`patch`]); apply needs `fieldManager` (422 as `PatchOptions` validation answers).
//! DELETE honours `DeleteOptions` from query and body: preconditions (409 with the upstream
//! `BeforeDelete` message), `gracePeriodSeconds` (pods on a node get a deletionTimestamp and
//! the simulated kubelet removes them, see [`PodTermination`]), `propagationPolicy`
//! (foreground/orphan finalizers, background garbage collection), finalizers; pods answer
//! with the object, other types with `Status Success`. `dryRun=All` works on every
//! mutating verb; other values are 422 (`CreateOptions ... dryRun: Unsupported value`), as
//! upstream validates options. LIST has label selectors (`=`, `==`, `!=`, `in`, `notin`,
//! exists, `!key`), field selectors (the fields each type indexes; others are 400),
//! `limit`/`continue`, and cross-namespace lists; built-in list items carry no
//! apiVersion/kind, custom resource items do. `watch=true` streams newline-delimited
//! events from the given resourceVersion (initial ADDED events when it is unset or `0`,
//! `sendInitialEvents` with the end bookmark, 410 Expired after [`ApiServer::compact`]),
//! translating selector transitions into ADDED/DELETED, closing after `timeoutSeconds`.
//! Scale subresources speak `autoscaling/v1` Scale (422 for negative replicas). Eviction
//! follows the eviction REST handler: it ignores budgets for pending, terminal or
//! terminating pods, refuses with 429 and a `DisruptionBudget` cause when the budget's
//! `disruptionsAllowed` is 0, and answers 201 `Status Success`.
//!
//! # Approximations
//!
//! - Validation covers names, labels and a few rules per type ([`validation`]); unknown
//!   fields are accepted (`fieldValidation=Strict` is accepted and recorded only); CRD
//!   schemas are not enforced.
//! - Strategic merge patch merges lists by a key chosen from the field name; server-side
//!   apply keeps field ownership beside the object ([`fields`]) and answers a conflict with
//!   another manager's fields as the API server does (409, `FieldManagerConflict` causes,
//!   unless `force=true`), but `managedFields` are omitted from answers.
//! - The rollout controller writes status only (no ReplicaSets or pods are created for
//!   a rollout, and workload status does not follow pod deletions); a stuck rollout reports
//!   ProgressDeadlineExceeded at once.
//! - The disruption controller recomputes PDB status on every pod or PDB change: an integer
//!   `minAvailable` counts the selected pods, a percentage or `maxUnavailable` the replicas
//!   of their controllers (a Deployment through its ReplicaSet, a ReplicaSet, a
//!   StatefulSet); a selected pod whose controller is not stored allows no disruption.
//!   `disruptedPods` is not kept: evicted pods are gone or terminating, hence unhealthy.
//! - Namespace deletion is immediate and removes the namespace's objects; the garbage
//!   collector acts at once.
//! - Answers are JSON only (YAML request bodies are read): no protobuf, no Table (kubectl
//!   falls back to NAME/AGE columns), no aggregated discovery (clients fall back to the
//!   legacy documents), no OpenAPI (so `kubectl create/apply` need `--validate=false`).
//! - client-go (kubectl) sends credentials only over TLS: use [`ApiServer::kubeconfig_tls`]
//!   for kubectl; the same port speaks plain HTTP and TLS.
//! - GET ignores `resourceVersion`; a continue token lists from the current state.

pub mod controllers;
pub mod faults;
pub mod fields;
pub mod fixtures;
pub mod handler;
pub mod latency;
pub mod log;
pub mod ops;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod status;
pub mod store;
pub mod tls;
pub mod validation;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

// Re-exports for the tests; each test binary uses a different part.
#[allow(unused_imports)]
pub use faults::{Chaos, Fault, FaultAction};
#[allow(unused_imports)]
pub use fixtures::*;
#[allow(unused_imports)]
pub use latency::{Latency, Served, Work};
#[allow(unused_imports)]
pub use log::Recorded;
#[allow(unused_imports)]
pub use status::{FieldError, StatusError};
#[allow(unused_imports)]
pub use store::{PodReplacement, PodTermination, Rollout};
#[allow(unused_imports)]
pub use tls::ServingKey;

use handler::{Reply, Request};
use store::{ObjKey, State};

/// The bearer token the server accepts.
pub const TOKEN: &str = "test-token";

/// Objects created by [`ApiServer::seed_deployment`].
#[derive(Debug, Clone)]
pub struct Seeded {
    /// The Deployment.
    pub deployment: Value,
    /// Its current ReplicaSet.
    pub replicaset: Value,
    /// Its pods.
    pub pods: Vec<Value>,
}

impl Seeded {
    /// The pod names, in order.
    pub fn pod_names(&self) -> Vec<String> {
        self.pods
            .iter()
            .map(|p| store::meta_str(p, "name").to_string())
            .collect()
    }
}

/// An answer from [`ApiServer::request`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// Body text (chunked encoding removed).
    pub body: String,
}

impl RawResponse {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as newline-delimited JSON (watch streams).
    pub fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

struct Shared {
    state: Mutex<State>,
    /// `127.0.0.1:PORT`.
    address: String,
    /// TLS on the same port, for clients that send credentials only over TLS (kubectl).
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// PEM of the CA that signed the serving certificate.
    ca_pem: String,
    /// The latency model and the server time spent ([`latency`]).
    timing: latency::Timing,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running test API server. Dropping it stops the server.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ApiServer {
    /// Bind `127.0.0.1:0` and start serving on a background thread, with the latency
    /// model `HEAL_APISERVER_LATENCY` names (none when it is unset; see [`latency`]).
    ///
    /// # Panics
    /// When no local port can be bound, no runtime can be built, or
    /// `HEAL_APISERVER_LATENCY` has a value [`Latency::parse`] rejects.
    pub fn start() -> ApiServer {
        ApiServer::start_with_latency(Latency::from_env())
    }

    /// [`Self::start`] with the latency model `latency` (whatever the environment says).
    ///
    /// # Panics
    /// When no local port can be bound or no runtime can be built.
    pub fn start_with_latency(latency: Latency) -> ApiServer {
        ApiServer::start_with(latency, ServingKey::default())
    }

    /// [`Self::start_with_latency`] with a serving certificate of `key`'s type (RSA-2048,
    /// kubeadm's default, unless told otherwise; see [`tls`]).
    ///
    /// # Panics
    /// When no local port can be bound or no runtime can be built.
    pub fn start_with(latency: Latency, key: ServingKey) -> ApiServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0 for the test API server");
        listener
            .set_nonblocking(true)
            .expect("make the test API server's listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("local address of the test API server");
        let (tls, ca_pem) = match tls::serving(key) {
            Ok((acceptor, ca)) => (Some(acceptor), ca),
            Err(e) => {
                eprintln!("test API server: no TLS ({e}); kubectl will not authenticate");
                (None, String::new())
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            address: addr.to_string(),
            tls,
            ca_pem,
            timing: latency::Timing::new(latency),
        });
        let (tx, rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-apiserver")
            .enable_all()
            .build()
            .expect("build the test API server runtime");
        shared.lock().runtime = Some(runtime.handle().clone());
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                runtime.block_on(accept_loop(server_shared, listener, rx));
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn the test API server thread");
        ApiServer {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Write a kubeconfig for this server into `dir` (cluster `test` at [`Self::url`], user
    /// `test` with the bearer token, context `test` with namespace `default`, current).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user:\n    token: {TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write the test kubeconfig");
        path
    }

    /// `https://127.0.0.1:PORT`: the same server over TLS (the port speaks both).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// PEM of the CA that signed the server's certificate (for 127.0.0.1 and localhost).
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    /// Write a kubeconfig like [`Self::kubeconfig`] but for [`Self::https_url`], trusting
    /// [`Self::ca_pem`]. kubectl needs this one: client-go sends credentials only over TLS.
    ///
    /// # Panics
    /// When the files cannot be written.
    pub fn kubeconfig_tls(&self, dir: &Path) -> PathBuf {
        let ca = dir.join("apiserver-ca.crt");
        std::fs::write(&ca, &self.shared.ca_pem).expect("write the test CA");
        let path = dir.join("kubeconfig-tls");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: test\n  user:\n    token: {TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n",
            self.https_url(),
            ca.display()
        );
        std::fs::write(&path, text).expect("write the test kubeconfig");
        path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Run `f` on the server state (for anything the helpers below do not cover).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.lock())
    }

    // ----- objects -----

    /// Store a full manifest as test data, filling uid, resourceVersion,
    /// creationTimestamp and generation (for types that keep one) when missing, and
    /// creating its namespace. Replaces an object of the same name. Answers what was stored.
    ///
    /// # Panics
    /// When the object has no apiVersion, kind or name, or its type is not served.
    pub fn insert(&self, obj: Value) -> Value {
        let result = ops::insert_raw(&mut self.lock(), obj);
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    fn resolve(&self, api_version: &str, kind_or_plural: &str) -> resources::ResourceType {
        self.lock()
            .resolve(api_version, kind_or_plural)
            .unwrap_or_else(|| {
                panic!("the test API server does not serve {kind_or_plural:?} in {api_version:?}")
            })
    }

    /// One object as the API serves it (`ns` is ignored for cluster-scoped types).
    ///
    /// # Panics
    /// When the type is not served.
    pub fn get(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let rt = self.resolve(api_version, kind_or_plural);
        ops::get(&self.lock(), &rt, ns, name).ok()
    }

    /// The field managers of an object and the fields each owns (server-side apply
    /// ownership, see [`fields`]): `(manager, operation, fields)`.
    ///
    /// # Panics
    /// When the type is not served.
    pub fn field_managers(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        ns: &str,
        name: &str,
    ) -> Vec<(String, String, Vec<String>)> {
        let rt = self.resolve(api_version, kind_or_plural);
        let ns = if rt.namespaced { ns } else { "" };
        fields::owners(&self.lock(), &store::ObjKey::new(&rt, ns, name))
    }

    /// Objects of a type in `ns` (every namespace when `ns` is empty), in name order, with
    /// apiVersion and kind.
    ///
    /// # Panics
    /// When the type is not served.
    pub fn list(&self, api_version: &str, kind_or_plural: &str, ns: &str) -> Vec<Value> {
        let rt = self.resolve(api_version, kind_or_plural);
        let state = self.lock();
        let ns = (!ns.is_empty() && rt.namespaced).then_some(ns);
        state
            .collection(&rt, ns)
            .into_iter()
            .map(|(_, v)| store::to_served(&rt, &v))
            .collect()
    }

    /// Names of the objects [`Self::list`] returns.
    pub fn names(&self, api_version: &str, kind_or_plural: &str, ns: &str) -> Vec<String> {
        self.list(api_version, kind_or_plural, ns)
            .iter()
            .map(|o| store::meta_str(o, "name").to_string())
            .collect()
    }

    /// Remove an object outright (no grace period, garbage collection or replacement).
    ///
    /// # Panics
    /// When the type is not served.
    pub fn remove(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let rt = self.resolve(api_version, kind_or_plural);
        let mut state = self.lock();
        let key = ObjKey::new(&rt, ns, name);
        let removed = state.take(&key)?;
        controllers::observe(&mut state, &key, Some(&removed), None);
        Some(store::to_served(&rt, &removed))
    }

    /// Change an object in place (a new resourceVersion and a MODIFIED event; generation is
    /// left to `f`). Answers the stored object.
    ///
    /// # Panics
    /// When the type is not served or the object does not exist.
    pub fn modify(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Value {
        let rt = self.resolve(api_version, kind_or_plural);
        let mut state = self.lock();
        let key = ObjKey::new(&rt, ns, name);
        let old = state
            .objects
            .get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("modify: {} {ns}/{name} does not exist", rt.plural));
        let mut obj = store::to_served(&rt, &old);
        f(&mut obj);
        let stored = state.put(key.clone(), store::to_stored(&rt, &obj));
        controllers::observe(&mut state, &key, Some(&old), Some(&stored));
        store::to_served(&rt, &stored)
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Forget the watch history: watches from an older resourceVersion get 410 Expired.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// Seed a deployment with its ReplicaSet and `replicas` Running, Ready pods spread over
    /// `nodes` (`node-1` when empty).
    pub fn seed_deployment(&self, ns: &str, name: &str, replicas: i64, nodes: &[&str]) -> Seeded {
        let deployment = self.insert(deployment(ns, name, replicas));
        let rs = self.insert(replicaset(&deployment));
        let rs_name = store::meta_str(&rs, "name").to_string();
        let nodes: Vec<&str> = if nodes.is_empty() {
            vec!["node-1"]
        } else {
            nodes.to_vec()
        };
        let pods = (0..replicas.max(0) as usize)
            .map(|i| {
                let pod_name = format!(
                    "{rs_name}-{}",
                    store::suffix_from(&format!("{rs_name}/{i}"), 5)
                );
                self.insert(owned_pod(&rs, &pod_name, nodes[i % nodes.len()]))
            })
            .collect();
        Seeded {
            deployment,
            replicaset: rs,
            pods,
        }
    }

    // ----- custom resources -----

    /// Register a custom resource type (and store its CRD, so discovery and
    /// `kubectl get crd` show it).
    pub fn register_crd(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        scale_subresource: bool,
    ) {
        self.register_crd_manifest(crd(
            group,
            version,
            kind,
            plural,
            namespaced,
            scale_subresource,
        ));
    }

    /// Register the types of a CRD manifest (as parsed from YAML).
    ///
    /// # Panics
    /// When the manifest is not a usable CRD.
    pub fn register_crd_manifest(&self, crd: Value) {
        controllers::types_from_crd(&crd).unwrap_or_else(|e| panic!("register_crd_manifest: {e}"));
        let mut crd = crd;
        if let Some(m) = crd.as_object_mut() {
            m.remove("status");
        }
        self.insert(crd);
    }

    /// Where the upstream reference files are: `$HEAL_REFERENCE_DIR`, else
    /// `../shared/reference` beside the crate.
    pub fn reference_dir() -> PathBuf {
        crate::reference_dir()
    }

    fn register_reference_crd(&self, relative: &str) {
        let path = Self::reference_dir().join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("read CRD {}: {e} (set HEAL_REFERENCE_DIR)", path.display())
        });
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("parse CRD {}: {e}", path.display()));
            if value.get("kind") == Some(&json!("CustomResourceDefinition")) {
                self.register_crd_manifest(value);
            }
        }
    }

    /// Register argoproj.io/v1alpha1 Workflows from the upstream (minimal) CRD.
    pub fn register_argo_workflows(&self) {
        self.register_reference_crd("argo/crd-minimal-argoproj.io_workflows.yaml");
    }

    /// Register tekton.dev PipelineRuns (v1 and v1beta1) from the upstream CRD.
    pub fn register_tekton_pipelineruns(&self) {
        self.register_reference_crd("tekton/300-pipelinerun.yaml");
    }

    // ----- simulated controllers -----

    /// How deployments, statefulsets, daemonsets and replicasets catch up after a spec
    /// change (default [`Rollout::Immediate`]).
    pub fn set_rollout(&self, mode: Rollout) {
        self.lock().settings.rollout = mode;
    }

    /// Rollout behaviour for one object (`kind_or_plural` like `deployment`).
    pub fn set_rollout_for(&self, kind_or_plural: &str, ns: &str, name: &str, mode: Rollout) {
        let rt = self.resolve("apps/v1", kind_or_plural);
        self.lock()
            .settings
            .rollout_overrides
            .insert((rt.plural, ns.to_string(), name.to_string()), mode);
    }

    /// Whether pods of a ReplicaSet/StatefulSet that go away are replaced
    /// (default [`PodReplacement::None`]).
    pub fn set_pod_replacement(&self, mode: PodReplacement) {
        self.lock().settings.pod_replacement = mode;
    }

    /// Whether replacement pods start Running and Ready on a schedulable node (default) or
    /// stay Pending.
    pub fn set_replacement_ready(&self, ready: bool) {
        self.lock().settings.replacement_ready = ready;
    }

    /// How graceful pod deletions finish (default [`PodTermination::Immediate`]).
    pub fn set_pod_termination(&self, mode: PodTermination) {
        self.lock().settings.pod_termination = mode;
    }

    /// Turn the simulated disruption controller (PDB status) on or off.
    pub fn set_disruption_controller(&self, on: bool) {
        self.lock().settings.disruption_controller = on;
    }

    /// Answer SelfSubjectReviews (`POST /apis/authentication.k8s.io/v1/selfsubjectreviews`)
    /// naming `user`; by default the server does not serve them (404).
    pub fn set_self_subject(&self, user: &str) {
        self.lock().settings.self_subject = Some(user.to_string());
    }

    /// Turn the simulated garbage collector on or off.
    pub fn set_garbage_collector(&self, on: bool) {
        self.lock().settings.garbage_collector = on;
    }

    /// Replace pod `ns/name` by a new pod with the same name and a new uid, as a
    /// StatefulSet would after a deletion (for the UID-precondition race). Answers the new
    /// pod.
    ///
    /// # Panics
    /// When the pod does not exist.
    pub fn replace_pod_same_name(&self, ns: &str, name: &str) -> Value {
        let rt = self.resolve("v1", "pods");
        let mut state = self.lock();
        let key = ObjKey::new(&rt, ns, name);
        let old = state
            .take(&key)
            .unwrap_or_else(|| panic!("replace_pod_same_name: pod {ns}/{name} does not exist"));
        let mut pod = old.clone();
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            store::remove_meta(&mut pod, f);
        }
        store::set_meta(&mut pod, "uid", json!(uuid::Uuid::new_v4().to_string()));
        store::set_meta(&mut pod, "creationTimestamp", json!(store::now()));
        let stored = state.put(key.clone(), pod);
        controllers::observe(&mut state, &key, Some(&old), Some(&stored));
        store::to_served(&rt, &stored)
    }

    /// The kubelet confirms the graceful deletion of a terminating pod now.
    pub fn finish_termination(&self, ns: &str, name: &str) {
        let rt = self.resolve("v1", "pods");
        ops::finish_pod_termination(&mut self.lock(), &ObjKey::new(&rt, ns, name));
    }

    // ----- faults -----

    /// Add a fault rule (rules are tried in the order they were added).
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Drop every fault rule.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Fail `fraction` of the resource requests with transient errors (429, 500, 503, 504,
    /// reset), reproducibly for a seed.
    pub fn fail_fraction(&self, fraction: f64, seed: u64) {
        self.chaos(Chaos::transient(fraction, seed));
    }

    /// Start random failures.
    pub fn chaos(&self, chaos: Chaos) {
        self.lock().chaos = Some(faults::ChaosState::new(chaos));
    }

    /// Stop random failures; answers how many requests they failed.
    pub fn stop_chaos(&self) -> usize {
        self.lock().chaos.take().map(|c| c.injected).unwrap_or(0)
    }

    // ----- request log -----

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().log.clone()
    }

    /// Forget the requests so far (and the server time recorded for them).
    pub fn clear_requests(&self) {
        self.lock().log.clear();
        self.shared.timing.take();
    }

    // ----- latency model -----

    /// The latency model in force ([`Latency::OFF`] unless turned on).
    pub fn latency(&self) -> Latency {
        self.shared.timing.model()
    }

    /// Put a latency model in force for connections and requests from now on.
    pub fn set_latency(&self, latency: Latency) {
        self.shared.timing.set_model(latency);
    }

    /// The server time recorded so far, one entry per TLS handshake and per request,
    /// injected delays included (see [`latency::busy`] for the total a client waited).
    pub fn served(&self) -> Vec<Served> {
        self.shared.timing.served()
    }

    /// [`Self::served`], forgetting it.
    pub fn take_served(&self) -> Vec<Served> {
        self.shared.timing.take()
    }

    /// Requests with this method and exactly this path.
    pub fn requests_matching(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .collect()
    }

    /// Requests with this method (`*` for any) whose path contains `fragment`.
    pub fn requests_to(&self, method: &str, fragment: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                (method == "*" || r.method.eq_ignore_ascii_case(method))
                    && r.path.contains(fragment)
            })
            .collect()
    }

    /// Requests other than discovery.
    pub fn resource_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_discovery())
            .collect()
    }

    /// The request log, one line per request, for assertion messages.
    pub fn log_text(&self) -> String {
        log::render(&self.requests())
    }

    /// Assert that `method path` was requested; answers the last such request.
    ///
    /// # Panics
    /// With the whole request log when it was not.
    pub fn assert_requested(&self, method: &str, path: &str) -> Recorded {
        match self.requests_matching(method, path).pop() {
            Some(r) => r,
            None => panic!(
                "expected a request {method} {path}, but the server saw:\n{}",
                self.log_text()
            ),
        }
    }

    /// Assert that no `method` request had a path containing `fragment`.
    ///
    /// # Panics
    /// With the whole request log when one did.
    pub fn assert_not_requested(&self, method: &str, fragment: &str) {
        let hits = self.requests_to(method, fragment);
        if !hits.is_empty() {
            panic!(
                "expected no {method} request to a path containing {fragment:?}, but the server saw:\n{}",
                self.log_text()
            );
        }
    }

    /// Assert that no discovery request (`/api`, `/apis`, `/apis/{group}/{version}`, ...)
    /// was made.
    ///
    /// # Panics
    /// With the whole request log when one was.
    pub fn assert_no_discovery(&self) {
        if self.requests().iter().any(Recorded::is_discovery) {
            panic!(
                "expected no API discovery round trip, but the server saw:\n{}",
                self.log_text()
            );
        }
    }

    /// Assert the exact sequence of non-discovery requests as `(METHOD, path)`.
    ///
    /// # Panics
    /// With the whole request log when it differs.
    pub fn assert_requests(&self, expected: &[(&str, &str)]) {
        let actual: Vec<(String, String)> = self
            .resource_requests()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(m, p)| (m.to_ascii_uppercase(), p.to_string()))
            .collect();
        if actual != expected {
            panic!(
                "expected requests {expected:#?}\nbut the server saw:\n{}",
                self.log_text()
            );
        }
    }

    // ----- raw client -----

    /// Send one HTTP request with the test token and wait for the whole answer (blocking;
    /// `path` may carry a query string). For watches, pass `timeoutSeconds`.
    ///
    /// # Panics
    /// On connection errors other than a reset by the server (reported as status 0).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&str>,
    ) -> RawResponse {
        self.raw(method, path, content_type, body, Some(TOKEN))
    }

    /// [`Self::request`] with a JSON body.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> RawResponse {
        self.request(method, path, Some(content_type), Some(&body.to_string()))
    }

    /// Send one HTTP request with an optional bearer token.
    ///
    /// # Panics
    /// On connection errors other than a reset by the server (reported as status 0).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&str>,
        token: Option<&str>,
    ) -> RawResponse {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the test API server");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let body = body.unwrap_or("");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: apiserver-selftest\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|_| stream.write_all(body.as_bytes()))
            .expect("send a request to the test API server");
        let mut raw = Vec::new();
        if stream.read_to_end(&mut raw).is_err() || raw.is_empty() {
            return RawResponse {
                status: 0,
                headers: Vec::new(),
                body: String::new(),
            };
        }
        parse_response(&raw)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        rest.to_string()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

// ----- HTTP -----

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A response body fed from a channel (watch streams).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test API server cannot listen: {e}");
            return;
        }
    };
    let ticker = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut state = ticker.lock();
            if !state.timers.is_empty() {
                controllers::run_due(&mut state);
            }
        }
    });
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_connection(shared.clone(), stream));
                }
            }
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    // Nagle's algorithm off, as on every connection kube-apiserver accepts (Go's net package
    // sets TCP_NODELAY on each TCP connection it makes or accepts). With it on, a server
    // holds an answer written while its session tickets are unacknowledged, and a client
    // that sent its request at once (TCP_NODELAY, as client-go and heal do) delays that ACK:
    // 40 ms per connection that a real API server never shows.
    let _ = stream.set_nodelay(true);
    // One port speaks both: a TLS ClientHello starts with 0x16.
    let mut first = [0u8; 1];
    let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
    match (&shared.tls, is_tls) {
        (Some(acceptor), true) => {
            let start = Instant::now();
            let delay = shared.timing.model().handshake;
            latency::pause(delay).await;
            let stream = latency::Timed::new(stream);
            if let Ok(tls) = acceptor.clone().accept(stream).await {
                let end = tls.get_ref().0.first_write.unwrap_or_else(Instant::now);
                shared.timing.record(Served {
                    work: Work::Handshake,
                    start,
                    end,
                    injected: delay,
                });
                serve_io(shared.clone(), tls).await;
            }
        }
        _ => serve_io(shared, stream).await,
    }
}

async fn serve_io<IO>(shared: Arc<Shared>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream = io;
    let reset = Arc::new(Notify::new());
    let svc_reset = reset.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let (shared, reset) = (shared.clone(), svc_reset.clone());
        async move {
            let method = req.method().as_str().to_string();
            let reply = handle(shared.clone(), req, reset);
            shared.timing.request(&method, reply).await
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        // Dropping the connection closes the socket without an answer.
        _ = reset.notified() => {}
    }
}

fn full(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(String, String)],
) -> hyper::Response<Body> {
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private");
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> hyper::Response<Body> {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    full(status, "application/json", bytes, headers)
}

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
    reset: Arc<Notify>,
) -> Result<hyper::Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = Limited::new(body, handler::MAX_BODY).collect().await;
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let too_large = body.is_err();
    let bytes = body.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
    let mut request = Request::new(
        parts.method.as_str(),
        &path,
        &raw_query,
        header("content-type").as_deref(),
        header("accept").as_deref(),
        bytes,
    );
    request.user_agent = header("user-agent");
    let mut record = Recorded {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query(),
        raw_query: raw_query.clone(),
        content_type: request.content_type.clone(),
        accept: request.accept.clone(),
        user_agent: header("user-agent"),
        body: request.body_value(),
        raw_body: (!request.body.is_empty())
            .then(|| String::from_utf8_lossy(&request.body).into_owned()),
        status: 0,
        injected: false,
    };
    let finish = |record: Recorded, reply: hyper::Response<Body>| {
        shared.lock().log.push(record);
        Ok(reply)
    };
    if too_large {
        let e = StatusError::too_large("the request body is too large (limit 3 MiB)");
        record.status = e.code;
        return finish(record, json_response(e.code, &e.body(), &e.headers));
    }
    let authorized = header("authorization").is_some_and(|a| {
        a.split_once(' ').is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim() == TOKEN
        })
    });
    let public = matches!(
        path.as_str(),
        "/healthz" | "/livez" | "/readyz" | "/version"
    );
    if !authorized && !public {
        let e = StatusError::unauthorized();
        record.status = e.code;
        return finish(record, json_response(e.code, &e.body(), &e.headers));
    }
    let action = {
        let mut state = shared.lock();
        let pos = state
            .faults
            .iter()
            .position(|f| f.matches(&request.method, &request.path, &request.raw_query));
        match pos {
            Some(i) => {
                let fault = &mut state.faults[i];
                let action = fault.action.clone();
                match &mut fault.times {
                    Some(n) if *n <= 1 => {
                        state.faults.remove(i);
                    }
                    Some(n) => *n -= 1,
                    None => {}
                }
                Some(action)
            }
            None => {
                let discovery = record.is_discovery();
                state
                    .chaos
                    .as_mut()
                    .and_then(|c| c.roll(&request.method, &request.path, discovery))
            }
        }
    };
    let mut lose_answer = false;
    if let Some(action) = action {
        let injected = match action {
            FaultAction::Respond(e) => Some(e),
            FaultAction::Forbidden { user } => {
                let attrs = handler::attributes(&shared.lock(), &request);
                Some(handler::forbidden_for(&attrs, &user))
            }
            FaultAction::Conflict => {
                let attrs = handler::attributes(&shared.lock(), &request);
                Some(handler::conflict_for(&attrs))
            }
            FaultAction::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
            FaultAction::Reset => {
                record.injected = true;
                shared.lock().log.push(record.clone());
                reset.notify_one();
                std::future::pending::<()>().await;
                None
            }
            FaultAction::LoseAnswer => {
                lose_answer = true;
                None
            }
        };
        if let Some(e) = injected {
            record.status = e.code;
            record.injected = true;
            return finish(record, json_response(e.code, &e.body(), &e.headers));
        }
    }
    let reply = {
        let mut state = shared.lock();
        let reply = handler::serve(&mut state, &request, &shared.address);
        record.status = reply.status();
        if lose_answer {
            // Applied; the answer is never sent.
            record.status = 0;
            record.injected = true;
        }
        state.log.push(record);
        reply
    };
    if lose_answer {
        // Dropping the connection drops this future, and the answer with it.
        reset.notify_one();
        std::future::pending::<()>().await;
    }
    Ok(match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => json_response(status, &body, &headers),
        Reply::Text { status, body } => {
            full(status, "text/plain; charset=utf-8", body.into_bytes(), &[])
        }
        Reply::Watch(plan) => {
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(run_watch(shared.clone(), *plan, tx));
            hyper::Response::builder()
                .status(200)
                .header("Content-Type", "application/json")
                .header("Cache-Control", "no-cache, private")
                .body(ChannelBody { rx }.boxed_unsync())
                .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()).boxed_unsync()))
        }
    })
}

async fn run_watch(shared: Arc<Shared>, plan: handler::WatchPlan, tx: mpsc::Sender<Bytes>) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let mut changes = shared.lock().changes.subscribe();
    let line = |v: &Value| Bytes::from(format!("{v}\n"));
    if let Some(e) = &plan.expired {
        let _ = tx
            .send(line(&json!({"type": "ERROR", "object": e.body()})))
            .await;
        return;
    }
    for obj in &plan.initial {
        if tx
            .send(line(&json!({"type": "ADDED", "object": obj})))
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some(rv) = plan.initial_bookmark {
        let bookmark = json!({
            "type": "BOOKMARK",
            "object": {
                "kind": plan.rt.kind,
                "apiVersion": plan.rt.api_version(),
                "metadata": {
                    "resourceVersion": rv.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            },
        });
        if tx.send(line(&bookmark)).await.is_err() {
            return;
        }
    }
    let mut since = plan.since;
    loop {
        let (events, last) = handler::watch_events(&shared.lock(), &plan, since);
        since = last;
        for ev in events {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
        }
    }
}
