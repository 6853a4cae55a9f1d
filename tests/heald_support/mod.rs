//! Shared set-up for heald's tests: a heald state against the test API server, webhook
//! bodies, calls through the router without a socket, and a small HTTP receiver standing in
//! for Alertmanager and notifiers.
#![allow(dead_code)] // shared by several test binaries, each uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use clap::Parser;
use heal::heald::policies::PolicyStore;
use heal::heald::{Args, Config, State};
use heal::kube_api::{ConnectOptions, Kube};
use serde_json::{Value, json};
use tower::ServiceExt;

use heal_testkit::apiserver::ApiServer;

pub mod alertmanager;

/// The webhook token every test heald accepts.
pub const TOKEN: &str = "heald-test-token-0123456789";

/// heald's namespace in the tests.
pub const NS: &str = "heal-system";

/// Policies most tests use: `restart-web` (Argo, cooldown, failure budget, silence on
/// success, a webhook notifier on failure) and `scale-api` (Tekton).
pub fn policies(notifier_url: &str) -> String {
    format!(
        r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: restart-web
spec:
  match:
    alertname: WebDown
  target:
    kind: deployment
    namespace: "{{{{ labels.namespace }}}}"
    name: "{{{{ labels.deployment }}}}"
  engine: argo
  timeout: 10m
  guards:
    cooldown: 30m
    failureBudget: {{failures: 2, window: 1h}}
  steps:
    - name: restart
      action: restart
  onSuccess: {{silence: 2h}}
  onFailure: {{notify: [oncall]}}
---
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: scale-api
spec:
  match:
    alertname: ApiSlow
  target:
    kind: deployment
    namespace: "{{{{ labels.namespace }}}}"
    name: "{{{{ labels.deployment }}}}"
  engine: tekton
  steps:
    - name: scale-up
      action: scale
      replicas: "+1"
      max: 10
---
apiVersion: heal.dev/v1alpha1
kind: Notifier
metadata:
  name: oncall
spec:
  type: webhook
  url: {notifier_url}
"#
    )
}

/// A directory with a token file and a policies directory.
pub struct Files {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
}

impl Files {
    /// Write the token and `policies` (as `policies/policies.yaml`).
    pub fn new(policies: &str) -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("token"), TOKEN).expect("write token");
        std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
        std::fs::write(dir.path().join("policies/policies.yaml"), policies)
            .expect("write policies");
        Files { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The policies directory.
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }
}

/// Flags every test heald gets: generous rate limits, no deadline grace, loopback ports.
pub fn base_args(files: &Files) -> Vec<String> {
    [
        "heald",
        "--policies",
        files.policies().to_str().unwrap(),
        "--token-file",
        files.path().join("token").to_str().unwrap(),
        "--namespace",
        NS,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--submit-rate",
        "10000",
        "--submit-burst",
        "10000",
        "--namespace-submit-rate",
        "10000",
        "--namespace-submit-burst",
        "10000",
        "--kube-qps",
        "100000",
        "--kube-burst",
        "100000",
        "--deadline-grace",
        "0s",
        "--reload-interval",
        "0s",
        "--image",
        "ghcr.io/heal-project/heal:test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// heald's production defaults for the limits the base flags raise (for tests that need
/// them as a user gets them).
pub const DEFAULT_LIMITS: [&str; 12] = [
    "--submit-rate",
    "1",
    "--submit-burst",
    "20",
    "--namespace-submit-rate",
    "0.2",
    "--namespace-submit-burst",
    "5",
    "--kube-qps",
    "20",
    "--kube-burst",
    "40",
];

/// The base flags (without the program name) less those `extra` gives again (clap refuses
/// a flag given twice).
fn base_args_without(files: &Files, extra: &[&str]) -> Vec<String> {
    let base = base_args(files);
    let mut args = Vec::new();
    let mut i = 1;
    while i < base.len() {
        let flag = &base[i];
        let takes_value = i + 1 < base.len() && !base[i + 1].starts_with("--");
        let width = if takes_value { 2 } else { 1 };
        if !extra.contains(&flag.as_str()) {
            args.extend(base[i..i + width].iter().cloned());
        }
        i += width;
    }
    args
}

/// A configuration from the base flags plus `extra`.
pub fn config(files: &Files, kubeconfig: Option<&Path>, extra: &[&str]) -> Config {
    let mut args = vec!["heald".to_string()];
    args.extend(base_args_without(files, extra));
    if let Some(k) = kubeconfig {
        args.push("--kubeconfig".into());
        args.push(k.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args = Args::try_parse_from(args).expect("test flags parse");
    Config::from_args(args).expect("test configuration is valid")
}

/// One heald replica: its state and its webhook router.
#[derive(Clone)]
pub struct Heald {
    /// Shared state.
    pub state: Arc<State>,
    /// `router(state)`.
    pub app: Router,
}

impl Heald {
    /// A replica connected to `server` (which gets heald's namespace and both CRDs).
    pub async fn start(server: &ApiServer, files: &Files, extra: &[&str]) -> Heald {
        server.with_state(|s| s.ensure_namespace(NS));
        let kubeconfig = server.kubeconfig(files.path());
        let config = config(files, Some(&kubeconfig), extra);
        let policies = PolicyStore::load(&config.policies, config.templates.as_deref())
            .expect("test policies load");
        let kube = Kube::connect(
            &ConnectOptions {
                kubeconfig: Some(kubeconfig),
                context: None,
            },
            tokio::time::Instant::now() + Duration::from_secs(3600),
        )
        .await
        .expect("connect to the test API server");
        let state = Arc::new(State::new(config, policies, kube).expect("state"));
        Heald {
            app: heal::heald::router(Arc::clone(&state)),
            state,
        }
    }

    /// A replica whose Kubernetes API server does not answer (127.0.0.1:9), for answers
    /// that never reach it. Needs a Tokio runtime (the client's worker starts in it).
    pub fn offline(files: &Files, extra: &[&str]) -> Heald {
        let config = config(files, None, extra);
        let policies = PolicyStore::load(&config.policies, config.templates.as_deref())
            .expect("test policies load");
        let unreachable = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(unreachable).expect("a client for 127.0.0.1:9");
        let kube = Kube::from_client(
            client,
            tokio::time::Instant::now() + Duration::from_secs(3600),
        );
        let state = Arc::new(State::new(config, policies, kube).expect("state"));
        Heald {
            app: heal::heald::router(Arc::clone(&state)),
            state,
        }
    }

    /// POST a webhook body with the right token; the status and the JSON answer.
    pub async fn alerts(&self, body: &Value) -> (StatusCode, Value) {
        let (s, _, v) = call(
            &self.app,
            "POST",
            "/v1/alerts",
            Some(TOKEN),
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
        (s, v)
    }

    /// The decisions of a webhook that must be answered 200.
    pub async fn decide(&self, body: &Value) -> Vec<Value> {
        let (s, v) = self.alerts(body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["decisions"].as_array().cloned().unwrap_or_default()
    }
}

/// Send one request through `app` without a socket.
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

/// A firing alert as Alertmanager sends it in a webhook.
pub fn alert(alertname: &str, labels: &[(&str, &str)], starts_at: &str) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("alertname".into(), json!(alertname));
    for (k, v) in labels {
        l.insert((*k).into(), json!(v));
    }
    let ls: heal::alert::LabelSet = l
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    json!({
        "status": "firing",
        "labels": l,
        "annotations": {"summary": "test"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": heal::alert::fingerprint(&ls),
    })
}

/// The sum of a metric's samples in a Prometheus exposition whose labels contain `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.contains(filter)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// heald's Leases that hold targets (not its rate-limit buckets), by name.
pub fn target_leases(server: &ApiServer) -> Vec<Value> {
    server
        .list("coordination.k8s.io/v1", "leases", NS)
        .into_iter()
        .filter(|l| l["metadata"]["labels"]["heal.dev/rate-bucket"].is_null())
        .collect()
}

/// `WebDown` for deployment `name` in `shop`, starting at `starts_at`.
pub fn web_down(name: &str, starts_at: &str) -> Value {
    alert(
        "WebDown",
        &[("namespace", "shop"), ("deployment", name)],
        starts_at,
    )
}

/// The same alert, resolved.
pub fn resolved(mut a: Value) -> Value {
    a["status"] = json!("resolved");
    a["endsAt"] = json!("2026-08-20T11:00:00Z");
    a
}

/// A version 4 webhook body carrying `alerts`.
pub fn webhook(alerts: &[Value]) -> Value {
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"WebDown\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "heald",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": alerts,
    })
}

/// The run name heald gives an alert under a policy.
pub fn run_name(policy: &str, alert: &Value) -> String {
    let starts: jiff::Timestamp = alert["startsAt"].as_str().unwrap().parse().unwrap();
    heal::policy::run_name(
        policy,
        alert["fingerprint"].as_str().unwrap(),
        &starts.to_string(),
    )
}

/// What a [`Receiver`] got: path and JSON body of each POST.
pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP server standing in for Alertmanager's API and for notifiers: records every POST
/// and answers like Alertmanager (`{"silenceID": ...}`), or with `status` when set.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it got.
    pub received: Received,
    /// Status to answer with (200 when unset).
    pub status: Arc<Mutex<u16>>,
    /// The `Authorization` header of each request (empty when absent).
    pub auth: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Start on a loopback port in the current runtime.
    pub async fn start() -> Receiver {
        let received: Received = Arc::default();
        let status = Arc::new(Mutex::new(200u16));
        let auth: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, s, a) = (received.clone(), status.clone(), auth.clone());
        let app = Router::new().fallback(move |req: Request<Body>| {
            let (r, s, a) = (r.clone(), s.clone(), a.clone());
            async move {
                let path = req.uri().path().to_string();
                let header = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                a.lock().unwrap().push(header);
                let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                r.lock().unwrap().push((path, body));
                let code = *s.lock().unwrap();
                (
                    StatusCode::from_u16(code).unwrap(),
                    axum::Json(json!({"silenceID": "silence-1"})),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            received,
            status,
            auth,
        }
    }

    /// Bodies received on `path`.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

// ----- the heald binary -----

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running heald process, killed when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT` of the webhook listener.
    pub web: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    /// Where its log goes.
    pub log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn start(server: &ApiServer, files: &Files, extra: &[&str]) -> Proc {
        Proc::start_on(server, files, free_port(), extra)
    }

    pub fn start_on(server: &ApiServer, files: &Files, web: u16, extra: &[&str]) -> Proc {
        Proc::start_with_env(server, files, web, extra, &[])
    }

    /// Start on port `web` with extra environment variables (`HEALD_FAILPOINT`).
    pub fn start_with_env(
        server: &ApiServer,
        files: &Files,
        web: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        server.with_state(|s| s.ensure_namespace(NS));
        let admin = free_port();
        let kubeconfig = server.kubeconfig(files.path());
        let mut args: Vec<String> = base_args_without(files, extra);
        for (flag, value) in [
            ("--listen", format!("127.0.0.1:{web}")),
            ("--admin-listen", format!("127.0.0.1:{admin}")),
        ] {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value;
        }
        args.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
        if !extra.contains(&"--log-format") {
            args.extend(["--log-format".into(), "plain".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        // A file, not a pipe: nobody reads a pipe while heald runs, and a full one blocks it.
        let log = files.path().join(format!("heald-{web}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_heald"))
            .args(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start heald");
        let p = Proc {
            child,
            web: format!("http://127.0.0.1:{web}"),
            admin: format!("http://127.0.0.1:{admin}"),
            log,
        };
        p.wait_ready();
        p
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if get(&format!("{}/readyz", self.admin)).is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "heald did not become ready; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    pub fn wait_exit(&mut self, within: Duration) -> (i32, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err = std::fs::read_to_string(&self.log).unwrap_or_default();
                return (status.code().unwrap_or(-1), err);
            }
            assert!(Instant::now() < deadline, "heald did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A blocking HTTP call (tests run plain threads here): status and body.
pub fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client =
            heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.unwrap_or_default()))
    })
}

pub fn get(url: &str) -> Option<(u16, String)> {
    http("GET", url, None, None)
}

pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
