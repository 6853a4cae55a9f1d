//! Failure testing: the API server applies a write and the answer is lost (the connection
//! drops before any byte of it). heal's client retries the write in process; the engine may
//! run the whole step again with the same correlation id. Either way every action changes
//! its target once, which the test API server's request log (method, path, query, content
//! type, body, status: `0` for the lost answer) and the stored objects show.

use std::process::Command;

use crate::heald_support::{Files, Heald, NS, policies, run_name, web_down, webhook};
use crate::support::{Env, assert_outcome, env, stdout_json};
use heal::outcome::{Exit, Outcome};
use heal_testkit::apiserver::*;
use serde_json::{Value, json};

const CID: &str = "cid-lost-1";
const WEB: &str = "/apis/apps/v1/namespaces/default/deployments/web";
const SCALE: &str = "/apis/apps/v1/namespaces/default/deployments/web/scale";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
const EVENTS: &str = "/api/v1/namespaces/default/events";
const NODE: &str = "/api/v1/nodes/n1";
const MERGE: &str = "application/merge-patch+json";

impl Env {
    /// `heal ARGS -o json` as its own process, as an engine runs a step (again): the exit
    /// code and the result.
    fn step(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(self.argv(CID, args))
            .args(["-o", "json", "--log-format", "plain"])
            .output()
            .expect("run heal");
        (out.status.code().unwrap_or(-1), stdout_json(&out))
    }
}

/// Assert the exact non-discovery requests as `(METHOD, path, status)`, leaving out heald's
/// reads and replaces of its submission buckets (`heald-rate-*`, asserted in heald_router).
fn assert_seen(server: &ApiServer, expected: &[(&str, &str, u16)]) {
    let actual: Vec<(String, String, u16)> = server
        .resource_requests()
        .iter()
        .filter(|r| !r.path.contains("/leases/heald-rate-"))
        .map(|r| (r.method.clone(), r.path.clone(), r.status))
        .collect();
    let expected: Vec<(String, String, u16)> = expected
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.to_string(), *s))
        .collect();
    assert_eq!(actual, expected, "the server saw:\n{}", server.log_text());
}

/// Both attempts of a retried write carried exactly this content type, query and body.
fn assert_writes(writes: &[Recorded], content_type: &str, raw_query: &str, body: &Value) {
    assert_eq!(writes.len(), 2, "the write and its retry: {writes:#?}");
    for w in writes {
        assert_eq!(w.content_type.as_deref(), Some(content_type), "{w}");
        assert_eq!(w.raw_query, raw_query, "{w}");
        assert_eq!(w.body.as_ref(), Some(body), "{w}");
    }
    assert!(writes[0].injected && writes[0].status == 0, "{}", writes[0]);
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn events(server: &ApiServer) -> Vec<Value> {
    server.list("v1", "events", "default")
}

// ----- scale -----

#[tokio::test]
async fn a_relative_scale_whose_answer_is_lost_adds_one_replica_and_says_so() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    let version = rv(&e.deployment("web"));
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .times(1)
            .lose_answer(),
    );
    let r = e
        .heal_as(CID, &["scale", "deploy/web", "--replicas", "+1"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(
        (&r.0.before["replicas"], &r.0.after["replicas"]),
        (&json!(2), &json!(3))
    );
    assert!(r.0.message.contains("from 2 to 3"), "{}", r.0.message);
    // The retry carries the version the count was computed from: 409. The re-read finds
    // this remediation's id, written by the lost write: applied, once.
    assert_seen(
        &e.server,
        &[
            ("GET", WEB, 200),
            ("GET", HPAS, 200),
            ("PATCH", WEB, 0),
            ("PATCH", WEB, 409),
            ("GET", WEB, 200),
            ("POST", EVENTS, 201),
        ],
    );
    assert_writes(
        &e.server.requests_matching("PATCH", WEB),
        MERGE,
        "",
        &json!({
            "metadata": {
                "resourceVersion": version,
                "annotations": {
                    "heal.dev/scale-correlation-id": CID,
                    "heal.dev/scale-replicas": "3",
                },
            },
            "spec": {"replicas": 3},
        }),
    );
    let web = e.deployment("web");
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(
        web["metadata"]["annotations"]["heal.dev/scale-correlation-id"],
        CID
    );
    assert_eq!(
        web["metadata"]["annotations"]["heal.dev/scale-replicas"],
        "3"
    );
    let ev = events(&e.server);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["reason"], "HealScaled");
}

#[test]
fn a_relative_scale_run_again_after_a_lost_answer_finds_it_applied_and_adds_nothing() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    let version = rv(&e.deployment("web"));
    // The write is applied, its answer lost, and the API server then fails until the
    // step's timeout: exit 3, and the engine runs the step again.
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .times(1)
            .lose_answer(),
    );
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .service_unavailable()
            .always(),
    );
    let (code, first) = e.step(&["scale", "deploy/web", "--replicas", "+1", "--timeout", "2s"]);
    assert_eq!(
        (code, first["outcome"].as_str()),
        (3, Some("failed")),
        "{first}"
    );
    let patches = e.server.requests_matching("PATCH", WEB);
    assert!(patches.len() >= 2, "{}", e.server.log_text());
    for p in &patches {
        assert_eq!(p.content_type.as_deref(), Some(MERGE));
        assert_eq!(
            p.body,
            Some(json!({
                "metadata": {
                    "resourceVersion": version,
                    "annotations": {
                        "heal.dev/scale-correlation-id": CID,
                        "heal.dev/scale-replicas": "3",
                    },
                },
                "spec": {"replicas": 3},
            }))
        );
    }
    assert_eq!(
        e.deployment("web")["spec"]["replicas"],
        3,
        "the lost write was applied"
    );

    e.server.clear_faults();
    e.server.clear_requests();
    let (code, second) = e.step(&["scale", "deploy/web", "--replicas", "+1"]);
    assert_eq!(
        (code, second["outcome"].as_str()),
        (0, Some("noop")),
        "{second}"
    );
    assert_eq!(
        second["message"],
        "deployment/web was already scaled to 3 replicas by this remediation"
    );
    assert_seen(&e.server, &[("GET", WEB, 200), ("GET", HPAS, 200)]);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 3, "2 + 1, once");

    // Another remediation (another correlation id) does add its own replica.
    let mut argv = e.argv(CID, &["scale", "deploy/web", "--replicas", "+1"]);
    let at = argv.iter().position(|a| a == CID).unwrap();
    argv[at] = "cid-lost-2".into();
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(&argv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(e.deployment("web")["spec"]["replicas"], 4);
}

#[tokio::test]
async fn an_absolute_scale_whose_answer_is_lost_is_sent_again_unchanged() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.inject(Fault::on("PATCH", "/scale").lose_answer());
    let r = e
        .heal_as(CID, &["scale", "deploy/web", "--replicas", "5"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_seen(
        &e.server,
        &[
            ("GET", WEB, 200),
            ("GET", HPAS, 200),
            ("PATCH", SCALE, 0),
            ("PATCH", SCALE, 200),
            ("POST", EVENTS, 201),
        ],
    );
    assert_writes(
        &e.server.requests_matching("PATCH", SCALE),
        MERGE,
        "",
        &json!({"spec": {"replicas": 5}}),
    );
    assert_eq!(e.deployment("web")["spec"]["replicas"], 5);
}

// ----- restart -----

#[tokio::test]
async fn a_restart_whose_answer_is_lost_restarts_once_in_process_and_on_a_rerun() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    let generation = e.deployment("web")["metadata"]["generation"]
        .as_i64()
        .unwrap();
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .times(1)
            .lose_answer(),
    );
    let r = e.heal_as(CID, &["restart", "deploy/web"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    // The retry is the same patch (same time, same id): applied again, it changes nothing.
    assert_seen(
        &e.server,
        &[
            ("GET", WEB, 200),
            ("PATCH", WEB, 0),
            ("PATCH", WEB, 200),
            ("POST", EVENTS, 201),
        ],
    );
    let patches = e.server.requests_matching("PATCH", WEB);
    let body = patches[0].body.clone().unwrap();
    let restarted_at =
        body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap()
            .to_string();
    assert_writes(
        &patches,
        "application/strategic-merge-patch+json",
        "",
        &json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": restarted_at,
            "heal.dev/restart-correlation-id": CID,
        }}}}}),
    );
    let web = e.deployment("web");
    assert_eq!(
        web["metadata"]["generation"],
        json!(generation + 1),
        "one rollout"
    );
    assert_eq!(
        web["spec"]["template"]["metadata"]["annotations"]["heal.dev/restart-correlation-id"],
        CID
    );

    // The engine runs the step again with the same correlation id: nothing is sent.
    e.server.clear_requests();
    let (code, again) = e.step(&["restart", "deploy/web"]);
    assert_eq!(
        (code, again["outcome"].as_str()),
        (0, Some("noop")),
        "{again}"
    );
    assert_seen(&e.server, &[("GET", WEB, 200)]);
    let web = e.deployment("web");
    assert_eq!(web["metadata"]["generation"], json!(generation + 1));
    assert_eq!(
        web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        json!(restarted_at)
    );
}

// ----- patch -----

fn web_with_env() -> Value {
    let mut d = deployment("default", "web", 1);
    d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
    d
}

const APPEND: &str = r#"[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"B","value":"2"}}]"#;

fn env_of(web: &Value) -> Value {
    web["spec"]["template"]["spec"]["containers"][0]["env"].clone()
}

fn guarded_append(version: &str) -> Value {
    json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "B", "value": "2"}},
        {"op": "add", "path": "/metadata/annotations/heal.dev~1patch-correlation-id", "value": CID},
    ])
}

#[tokio::test]
async fn a_json_patch_appending_to_a_list_whose_answer_is_lost_appends_once() {
    let e = env();
    e.server.insert(web_with_env());
    let version = rv(&e.deployment("web"));
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .times(1)
            .lose_answer(),
    );
    let r = e
        .heal_as(
            CID,
            &["patch", "deploy/web", "--type", "json", "--patch", APPEND],
        )
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_seen(
        &e.server,
        &[
            ("GET", WEB, 200),
            ("PATCH", WEB, 0),
            ("PATCH", WEB, 409),
            ("GET", WEB, 200),
            ("POST", EVENTS, 201),
        ],
    );
    assert_writes(
        &e.server.requests_matching("PATCH", WEB),
        "application/json-patch+json",
        "fieldManager=heal",
        &guarded_append(&version),
    );
    let web = e.deployment("web");
    assert_eq!(
        env_of(&web),
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    assert_eq!(
        web["metadata"]["annotations"]["heal.dev/patch-correlation-id"],
        CID
    );
    assert_eq!(
        web["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1",
        "the other annotations stay"
    );
}

#[test]
fn a_json_patch_run_again_after_a_lost_answer_does_not_append_again() {
    let e = env();
    e.server.insert(web_with_env());
    let version = rv(&e.deployment("web"));
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .times(1)
            .lose_answer(),
    );
    e.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .service_unavailable()
            .always(),
    );
    let (code, first) = e.step(&[
        "patch",
        "deploy/web",
        "--type",
        "json",
        "--patch",
        APPEND,
        "--timeout",
        "2s",
    ]);
    assert_eq!(
        (code, first["outcome"].as_str()),
        (3, Some("failed")),
        "{first}"
    );
    for p in e.server.requests_matching("PATCH", WEB) {
        assert_eq!(p.body, Some(guarded_append(&version)), "{p}");
    }
    e.server.clear_faults();
    e.server.clear_requests();
    let (code, second) = e.step(&["patch", "deploy/web", "--type", "json", "--patch", APPEND]);
    assert_eq!(
        (code, second["outcome"].as_str()),
        (0, Some("noop")),
        "{second}"
    );
    assert_eq!(
        second["message"],
        "deployment/web was already patched by this remediation"
    );
    assert_seen(&e.server, &[("GET", WEB, 200)]);
    assert_eq!(
        env_of(&e.deployment("web")),
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
}

#[tokio::test]
async fn a_json_patch_on_an_object_without_annotations_adds_the_map_with_the_id() {
    let e = env();
    let mut cm = configmap("default", "c", &[("a", "1")]);
    cm["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    e.server.insert(cm);
    let version = rv(&e.server.get("v1", "configmaps", "default", "c").unwrap());
    let r = e
        .heal_as(
            CID,
            &[
                "patch",
                "configmap/c",
                "--type",
                "json",
                "--patch",
                r#"[{"op":"add","path":"/data/b","value":"2"}]"#,
            ],
        )
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let patch = e
        .server
        .assert_requested("PATCH", "/api/v1/namespaces/default/configmaps/c");
    assert_eq!(
        patch.body,
        Some(json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "add", "path": "/metadata/annotations", "value": {"heal.dev/patch-correlation-id": CID}},
        ]))
    );
    let c = e.server.get("v1", "configmaps", "default", "c").unwrap();
    assert_eq!(c["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        c["metadata"]["annotations"],
        json!({"heal.dev/patch-correlation-id": CID})
    );
}

// ----- cordon and drain -----

#[tokio::test]
async fn a_cordon_whose_answer_is_lost_is_sent_again_and_a_rerun_is_a_noop() {
    let e = env();
    e.server.insert(node("n1"));
    e.server
        .inject(Fault::on("PATCH", "/nodes/n1").lose_answer());
    let r = e.heal_as(CID, &["cordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_seen(
        &e.server,
        &[
            ("GET", NODE, 200),
            ("PATCH", NODE, 0),
            ("PATCH", NODE, 200),
            ("POST", EVENTS, 201),
        ],
    );
    assert_writes(
        &e.server.requests_matching("PATCH", NODE),
        MERGE,
        "",
        &json!({
            "metadata": {"annotations": {"heal.dev/cordoned-by": CID}},
            "spec": {"unschedulable": true},
        }),
    );
    e.server.clear_requests();
    let r = e.heal_as(CID, &["cordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    assert_seen(&e.server, &[("GET", NODE, 200)]);
    let n = e.server.get("v1", "nodes", "", "n1").unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
}

#[tokio::test]
async fn a_drain_whose_eviction_answer_is_lost_counts_the_pod_as_evicted() {
    let e = env();
    e.server.insert(node("n1"));
    let seeded = e.server.seed_deployment("default", "web", 1, &["n1"]);
    let pod = seeded.pod_names()[0].clone();
    let pod_path = format!("/api/v1/namespaces/default/pods/{pod}");
    let eviction = format!("{pod_path}/eviction");
    e.server
        .inject(Fault::on("POST", "/eviction").lose_answer());
    let r = e.heal_as(CID, &["drain", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(r.0.after["evicted"], json!([format!("default/{pod}")]));
    // The retried eviction finds the pod gone (404): the lost eviction removed it.
    assert_seen(
        &e.server,
        &[
            ("GET", NODE, 200),
            ("GET", "/api/v1/pods", 200),
            ("PATCH", NODE, 200),
            ("POST", &eviction, 0),
            ("POST", &eviction, 404),
            ("GET", &pod_path, 404),
            ("POST", EVENTS, 201),
        ],
    );
    assert_writes(
        &e.server.requests_matching("POST", &eviction),
        "application/json",
        "",
        &json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": "default"},
        }),
    );
    assert!(e.server.get("v1", "pods", "default", &pod).is_none());
}

#[test]
fn a_drain_run_again_after_a_lost_eviction_answer_is_a_noop() {
    let e = env();
    e.server.insert(node("n1"));
    let seeded = e.server.seed_deployment("default", "web", 1, &["n1"]);
    let pod = seeded.pod_names()[0].clone();
    e.server
        .inject(Fault::on("POST", "/eviction").lose_answer());
    e.server.inject(
        Fault::on("POST", "/eviction")
            .service_unavailable()
            .always(),
    );
    let (code, first) = e.step(&["drain", "node/n1", "--timeout", "2s"]);
    assert_eq!(
        (code, first["outcome"].as_str()),
        (3, Some("failed")),
        "{first}"
    );
    assert!(
        e.server.get("v1", "pods", "default", &pod).is_none(),
        "the lost eviction was applied"
    );
    e.server.clear_faults();
    e.server.clear_requests();
    let (code, second) = e.step(&["drain", "node/n1"]);
    assert_eq!(
        (code, second["outcome"].as_str()),
        (0, Some("noop")),
        "{second}"
    );
    assert_eq!(second["message"], "node/n1 is already cordoned and drained");
    assert_seen(
        &e.server,
        &[("GET", NODE, 200), ("GET", "/api/v1/pods", 200)],
    );
}

// ----- delete and Events -----

#[tokio::test]
async fn a_delete_whose_answer_is_lost_is_reported_as_deleted() {
    let e = env();
    e.server.insert(pod("default", "p"));
    let path = "/api/v1/namespaces/default/pods/p";
    let uid = e.server.get("v1", "pods", "default", "p").unwrap()["metadata"]["uid"].clone();
    e.server
        .inject(Fault::on("DELETE", "/pods/p").lose_answer());
    let r = e.heal_as(CID, &["delete", "pod/p"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert!(r.0.message.contains("deleted pod/p"), "{}", r.0.message);
    assert_seen(
        &e.server,
        &[
            ("GET", path, 200),
            ("DELETE", path, 0),
            ("DELETE", path, 404),
            ("POST", EVENTS, 201),
        ],
    );
    assert_writes(
        &e.server.requests_matching("DELETE", path),
        "application/json",
        "",
        &json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": "Background",
        }),
    );
}

#[tokio::test]
async fn an_event_whose_answer_is_lost_is_recorded_once() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.inject(Fault::on("POST", "/events").lose_answer());
    let r = e
        .heal_as(CID, &["scale", "deploy/web", "--replicas", "3"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let posts = e.server.requests_matching("POST", EVENTS);
    let name = posts[0].body.as_ref().unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("web."), "{name}");
    assert_seen(
        &e.server,
        &[
            ("GET", WEB, 200),
            ("GET", HPAS, 200),
            ("PATCH", SCALE, 200),
            ("POST", EVENTS, 0),
            ("POST", EVENTS, 409),
            ("GET", &format!("{EVENTS}/{name}"), 200),
        ],
    );
    assert_eq!(posts[0].body, posts[1].body, "the retry is the same Event");
    let ev = events(&e.server);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["metadata"]["name"], json!(name));
    assert_eq!(ev[0]["reason"], "HealScaled");
}

// ----- heald's creates -----

fn heald_server() -> ApiServer {
    let s = ApiServer::start();
    s.register_argo_workflows();
    s.register_tekton_pipelineruns();
    s.with_state(|st| st.ensure_namespace(NS));
    s
}

const WORKFLOWS: &str = "/apis/argoproj.io/v1alpha1/namespaces/heal-system/workflows";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/heal-system/leases";
const HEALD_EVENTS: &str = "/api/v1/namespaces/heal-system/events";

fn lease_name() -> String {
    heal::heald::guards::lease::lease_name(
        "restart-web",
        &heal::plan::PlanTarget {
            kind: "deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        },
    )
}

struct HealdCase {
    server: ApiServer,
    _files: Files,
    heald: Heald,
    alert: Value,
    run: String,
}

async fn heald_case() -> HealdCase {
    heald_case_with(&[]).await
}

async fn heald_case_with(extra: &[&str]) -> HealdCase {
    let server = heald_server();
    let files = Files::new(&policies("http://127.0.0.1:9/notify"));
    let heald = Heald::start(&server, &files, extra).await;
    // The submission buckets exist already (a submission takes its tokens by a GET and a
    // PUT of each, covered in heald_router's tests), so every POST of a Lease here is the
    // target's hold.
    for (name, scope) in [
        ("heald-rate-ns-shop", "namespace"),
        ("heald-rate-global", "global"),
    ] {
        server.insert(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": {"app.kubernetes.io/managed-by": "heald", "heal.dev/rate-bucket": scope},
                "annotations": {"heal.dev/tokens": "100", "heal.dev/tokens-at": "2026-01-01T00:00:00Z"},
            },
            "spec": {},
        }));
    }
    let alert = web_down("web", "2026-08-20T10:00:00Z");
    let run = run_name("restart-web", &alert);
    server.clear_requests();
    HealdCase {
        server,
        _files: files,
        heald,
        alert,
        run,
    }
}

impl HealdCase {
    async fn decide(&self) -> Value {
        let d = self
            .heald
            .decide(&webhook(std::slice::from_ref(&self.alert)))
            .await;
        assert_eq!(d.len(), 1, "{d:?}");
        d[0].clone()
    }

    fn submitted_events(&self) -> Vec<Value> {
        self.server
            .list("v1", "events", NS)
            .into_iter()
            .filter(|e| e["reason"] == "RemediationSubmitted")
            .collect()
    }

    fn holds_the_run(&self) -> bool {
        let lease = self
            .server
            .get("coordination.k8s.io/v1", "leases", NS, &lease_name())
            .expect("the Lease exists");
        let holders: Vec<Value> = serde_json::from_str(
            lease["metadata"]["annotations"]["heal.dev/holders"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        holders.iter().any(|h| h["run"] == json!(self.run))
    }
}

#[tokio::test]
async fn heald_counts_a_run_whose_create_answer_was_lost_as_created() {
    heal_testkit::require_reference!();
    let c = heald_case().await;
    c.server
        .inject(Fault::on("POST", "/workflows").lose_answer());
    let d = c.decide().await;
    assert_eq!(d["decision"], "submitted", "{d}");
    assert_eq!(d["run"], json!(c.run));
    let lease = format!("{LEASES}/{}", lease_name());
    assert_seen(
        &c.server,
        &[
            ("GET", &lease, 404),
            ("POST", LEASES, 201),
            ("POST", WORKFLOWS, 0),
            ("POST", WORKFLOWS, 409),
            ("GET", &format!("{WORKFLOWS}/{}", c.run), 200),
            ("POST", HEALD_EVENTS, 201),
        ],
    );
    let creates = c.server.requests_matching("POST", WORKFLOWS);
    assert_eq!(
        creates[0].body, creates[1].body,
        "the retry is the same run"
    );
    assert_eq!(creates[1].raw_query, "fieldValidation=Strict");
    assert_eq!(
        c.server.names("argoproj.io/v1alpha1", "workflows", NS),
        std::slice::from_ref(&c.run)
    );
    assert_eq!(c.submitted_events().len(), 1);
    assert!(
        c.holds_the_run(),
        "the hold stays with the run heald follows"
    );
}

#[tokio::test]
async fn heald_counts_a_lease_whose_create_answer_was_lost_as_created() {
    heal_testkit::require_reference!();
    let c = heald_case().await;
    c.server.inject(Fault::on("POST", "/leases").lose_answer());
    let d = c.decide().await;
    assert_eq!(d["decision"], "submitted", "{d}");
    let lease = format!("{LEASES}/{}", lease_name());
    assert_seen(
        &c.server,
        &[
            ("GET", &lease, 404),
            ("POST", LEASES, 0),
            ("POST", LEASES, 409),
            ("GET", &lease, 200),
            ("POST", WORKFLOWS, 201),
            ("POST", HEALD_EVENTS, 201),
        ],
    );
    let creates = c.server.requests_matching("POST", LEASES);
    assert_eq!(creates[0].body, creates[1].body);
    assert!(c.holds_the_run());
    assert_eq!(c.submitted_events().len(), 1);
}

#[tokio::test]
async fn heald_counts_a_lease_whose_update_answer_was_lost_as_written() {
    heal_testkit::require_reference!();
    let c = heald_case().await;
    // An earlier remediation of the target left its Lease behind: taking the hold is an
    // update with the Lease's resourceVersion.
    let target = heal::plan::PlanTarget {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
    };
    c.server.insert(
        heal::heald::guards::lease::LeaseState::new(&lease_name(), "restart-web", &target)
            .to_object(NS),
    );
    c.server.clear_requests();
    c.server
        .inject(Fault::on("PUT", &format!("/leases/{}", lease_name())).lose_answer());
    let d = c.decide().await;
    assert_eq!(d["decision"], "submitted", "{d}");
    let lease = format!("{LEASES}/{}", lease_name());
    assert_seen(
        &c.server,
        &[
            ("GET", &lease, 200),
            ("PUT", &lease, 0),
            ("PUT", &lease, 409),
            ("GET", &lease, 200),
            ("POST", WORKFLOWS, 201),
            ("POST", HEALD_EVENTS, 201),
        ],
    );
    let puts = c.server.requests_matching("PUT", &lease);
    assert_eq!(puts[0].body, puts[1].body);
    assert!(c.holds_the_run());
}

#[tokio::test]
async fn heald_records_an_event_whose_answer_was_lost_once() {
    heal_testkit::require_reference!();
    let c = heald_case().await;
    c.server.inject(Fault::on("POST", "/events").lose_answer());
    let d = c.decide().await;
    assert_eq!(d["decision"], "submitted", "{d}");
    let posts = c.server.requests_matching("POST", HEALD_EVENTS);
    let name = posts[0].body.as_ref().unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with(&format!("{}.", c.run)), "{name}");
    let lease = format!("{LEASES}/{}", lease_name());
    assert_seen(
        &c.server,
        &[
            ("GET", &lease, 404),
            ("POST", LEASES, 201),
            ("POST", WORKFLOWS, 201),
            ("POST", HEALD_EVENTS, 0),
            ("POST", HEALD_EVENTS, 409),
            ("GET", &format!("{HEALD_EVENTS}/{name}"), 200),
        ],
    );
    assert_eq!(posts[0].body, posts[1].body);
    let ev = c.submitted_events();
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["involvedObject"]["name"], json!(c.run));
}

#[tokio::test]
async fn heald_keeps_a_run_whose_create_was_applied_though_every_retry_failed() {
    heal_testkit::require_reference!();
    let c = heald_case_with(&["--api-timeout", "1s"]).await;
    // The create is applied and its answer lost; every retry then meets a 503 until the
    // call's deadline. The run exists: heald must not drop its hold (nor, with
    // Alertmanager, expire its silence) as if nothing had been created.
    c.server
        .inject(Fault::on("POST", "/workflows").times(1).lose_answer());
    c.server.inject(
        Fault::on("POST", "/workflows")
            .always()
            .service_unavailable(),
    );
    let d = c.decide().await;
    assert_eq!(d["decision"], "submitted", "{d}");
    assert_eq!(
        c.server.names("argoproj.io/v1alpha1", "workflows", NS),
        std::slice::from_ref(&c.run)
    );
    assert!(c.holds_the_run(), "the hold stays with the run that exists");
    let seen: Vec<(String, u16)> = c
        .server
        .resource_requests()
        .iter()
        .filter(|r| r.path.contains("/workflows"))
        .map(|r| (r.method.clone(), r.status))
        .collect();
    assert_eq!(seen.first(), Some(&("POST".to_string(), 0)), "{seen:?}");
    assert!(
        seen[1..seen.len() - 1]
            .iter()
            .all(|s| *s == ("POST".to_string(), 503)),
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&("GET".to_string(), 200)),
        "looked before undoing: {seen:?}"
    );
}
