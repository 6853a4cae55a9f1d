//! heald against the test Kubernetes API server: the exact requests that create runs, 409
//! handling, Lease locks, cooldowns and circuits shared by two replicas, tracking runs to
//! success, failure and deadline with silences and notifications, reports, restart
//! recovery, and an alert storm.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::heald_support::*;
use heal::heald::tracking;
use heal_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");
const PR: (&str, &str) = ("tekton.dev/v1", "pipelineruns");

fn server() -> ApiServer {
    let s = ApiServer::start();
    s.register_argo_workflows();
    s.register_tekton_pipelineruns();
    s.with_state(|st| st.ensure_namespace(NS));
    s
}

fn decision(d: &[Value]) -> &str {
    d[0]["decision"].as_str().unwrap_or("?")
}

/// The body heald must send for `alert`: the rendered run plus heald's annotations.
fn expected_run(h: &Heald, policy: &str, alert: &Value, engine: heal::render::Engine) -> Value {
    let parsed =
        heal::alert::parse_alerts(webhook(std::slice::from_ref(alert)).to_string().as_bytes())
            .unwrap()
            .remove(0);
    let loaded = h.state.policies.current();
    let p = loaded.set.policy(policy).unwrap();
    let plan = heal::policy::plan(p, &parsed, &h.state.plan_defaults).unwrap();
    let mut run = loaded.renderer.render(&plan, engine).unwrap().value;
    let ann = run["metadata"]["annotations"].as_object_mut().unwrap();
    ann.insert(
        "heal.dev/alert-labels".into(),
        json!(serde_json::to_string(&parsed.labels).unwrap()),
    );
    ann.insert(
        "heal.dev/lease".into(),
        json!(heal::heald::guards::lease::lease_name(policy, &plan.target)),
    );
    ann.insert(
        "heal.dev/deadline-seconds".into(),
        json!(plan.deadline_seconds.to_string()),
    );
    run
}

fn lease_of(server: &ApiServer, policy: &str, name: &str) -> Value {
    let target = heal::plan::PlanTarget {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: name.into(),
    };
    server
        .get(
            "coordination.k8s.io/v1",
            "leases",
            NS,
            &heal::heald::guards::lease::lease_name(policy, &target),
        )
        .unwrap_or_else(|| panic!("no Lease for {policy} {name}:\n{}", server.log_text()))
}

fn set_phase(server: &ApiServer, run: &str, phase: &str) {
    server.modify(WF.0, WF.1, NS, run, |o| {
        o["status"] = json!({"phase": phase, "message": format!("test says {phase}")});
    });
}

// ----- submission -----

#[tokio::test]
async fn an_argo_workflow_is_created_with_exactly_the_rendered_manifest_and_strict_validation() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let run = run_name("restart-web", &a);
    server.clear_requests();
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(decision(&d), "submitted");
    let lease = heal::heald::guards::lease::lease_name(
        "restart-web",
        &heal::plan::PlanTarget {
            kind: "deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        },
    );
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    server.assert_requests(&[
        ("GET", &format!("{leases}/{lease}")),
        // A submission token from the namespace's bucket, then from the global one: both
        // Leases, created full on first use.
        ("GET", &format!("{leases}/heald-rate-ns-shop")),
        ("POST", &leases),
        ("GET", &format!("{leases}/heald-rate-global")),
        ("POST", &leases),
        // The hold, with the intent.
        ("POST", &leases),
        (
            "POST",
            &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows"),
        ),
        ("POST", &format!("/api/v1/namespaces/{NS}/events")),
    ]);
    let create = server.assert_requested(
        "POST",
        &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows"),
    );
    assert_eq!(create.param("fieldValidation"), Some("Strict"));
    assert_eq!(create.content_type.as_deref(), Some("application/json"));
    assert_eq!(create.status, 201);
    let body = create.body.unwrap();
    assert_eq!(
        body,
        expected_run(&h, "restart-web", &a, heal::render::Engine::Argo)
    );
    assert_eq!(body["metadata"]["name"], json!(run));
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "heald"
    );
    assert_eq!(body["spec"]["activeDeadlineSeconds"], 600);
    let labels: BTreeMap<String, String> = serde_json::from_str(
        body["metadata"]["annotations"]["heal.dev/alert-labels"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(labels["deployment"], "web");
    let posted: Vec<Value> = server
        .requests_matching("POST", &leases)
        .into_iter()
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(posted[0]["metadata"]["name"], "heald-rate-ns-shop");
    assert_eq!(
        posted[0]["metadata"]["labels"]["heal.dev/rate-bucket"],
        "namespace"
    );
    assert_eq!(posted[1]["metadata"]["name"], "heald-rate-global");
    let lease_body = posted[2].clone();
    assert_eq!(lease_body["metadata"]["name"], json!(lease));
    assert_eq!(lease_body["spec"]["holderIdentity"], json!(run));
    assert_eq!(lease_body["spec"]["leaseDurationSeconds"], 600 + 120);
    let event = server.assert_requested("POST", &format!("/api/v1/namespaces/{NS}/events"));
    let event = event.body.unwrap();
    assert_eq!(event["involvedObject"]["kind"], "Workflow");
    assert_eq!(event["involvedObject"]["name"], json!(run));
    assert_eq!(event["reason"], "RemediationSubmitted");
}

#[tokio::test]
async fn a_tekton_pipelinerun_is_created_with_exactly_the_rendered_manifest_and_strict_validation()
{
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let a = alert(
        "ApiSlow",
        &[("namespace", "shop"), ("deployment", "api")],
        "2026-08-20T10:00:00Z",
    );
    server.clear_requests();
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(decision(&d), "submitted", "{d:?}");
    assert_eq!(d[0]["engine"], "tekton");
    let create = server.assert_requested(
        "POST",
        &format!("/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns"),
    );
    assert_eq!(create.param("fieldValidation"), Some("Strict"));
    assert_eq!(create.status, 201);
    assert_eq!(
        create.body.unwrap(),
        expected_run(&h, "scale-api", &a, heal::render::Engine::Tekton)
    );
    assert!(
        server
            .get(PR.0, PR.1, NS, &run_name("scale-api", &a))
            .is_some()
    );
}

#[tokio::test]
async fn a_run_that_already_exists_is_a_duplicate_and_the_target_is_left_free() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let run = run_name("restart-web", &a);
    server.insert(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": run, "namespace": NS},
        "spec": {"entrypoint": "main", "templates": []},
    }));
    let d = h.decide(&webhook(&[a])).await;
    assert_eq!(decision(&d), "duplicate", "{d:?}");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("already"),
        "{d:?}"
    );
    let lease = lease_of(&server, "restart-web", "web");
    assert_eq!(
        lease["metadata"]["annotations"]["heal.dev/holders"], "[]",
        "{lease}"
    );
    assert_eq!(
        lease["metadata"]["annotations"]["heal.dev/last-run"],
        json!(run)
    );
    let other = h
        .decide(&webhook(&[web_down("web", "2026-08-20T12:00:00Z")]))
        .await;
    assert_eq!(
        decision(&other),
        "submitted",
        "the target is not locked by the duplicate"
    );
}

/// The `restart-web` Lease on `deployment/shop/web` held by `run` since `taken`, as a
/// heald that stopped between taking it and creating the run leaves it.
fn lease_held_by(run: &str, taken: jiff::Timestamp) -> Value {
    let target = heal::plan::PlanTarget {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
    };
    let until = taken + jiff::SignedDuration::from_mins(20);
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": heal::heald::guards::lease::lease_name("restart-web", &target),
            "namespace": NS,
            "annotations": {
                "heal.dev/policy": "restart-web",
                "heal.dev/target": "deployment/shop/web",
                "heal.dev/holders": json!([{"run": run, "until": until.to_string()}]).to_string(),
                "heal.dev/last-run": run,
                "heal.dev/last-run-at": taken.to_string(),
            },
        },
        "spec": {"holderIdentity": run, "leaseDurationSeconds": 1200},
    })
}

#[tokio::test]
async fn a_lease_held_by_a_run_never_created_is_taken_over_once_no_replica_can_still_be_creating_it()
 {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &["--api-timeout", "1s"]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let run = run_name("restart-web", &a);
    server.insert(lease_held_by(&run, jiff::Timestamp::now()));
    // Just taken: the replica that took it may be creating the run. Wait, then ask for a
    // retry rather than answer `duplicate` (Alertmanager would not deliver it again).
    let started = std::time::Instant::now();
    let (status, answer) = h.alerts(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(status.as_u16(), 503, "{answer}");
    assert!(
        answer.to_string().contains("may still be creating it"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(server.names(WF.0, WF.1, NS).is_empty());
    // Taken longer ago than a create can take (2s + 2 x --api-timeout + 1s): stale.
    let lease = lease_of(&server, "restart-web", "web")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    server.modify("coordination.k8s.io/v1", "leases", NS, &lease, |l| {
        l["metadata"]["annotations"]["heal.dev/last-run-at"] =
            json!((jiff::Timestamp::now() - jiff::SignedDuration::from_secs(6)).to_string());
    });
    server.clear_requests();
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(decision(&d), "submitted", "{d:?}");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("stale hold"),
        "{d:?}"
    );
    assert_eq!(server.names(WF.0, WF.1, NS), std::slice::from_ref(&run));
    let put = server
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path.contains("/leases/"))
        .expect("the hold is taken over by replacing the Lease");
    assert!(
        put.body.as_ref().unwrap()["metadata"]["resourceVersion"].is_string(),
        "under the Lease's resourceVersion, so two replicas cannot both: {:?}",
        put.body
    );
    assert_eq!(
        decision(&h.decide(&webhook(&[a])).await),
        "duplicate",
        "created once"
    );
}

#[tokio::test]
async fn a_redelivery_while_another_replica_creates_the_run_waits_for_it_and_is_a_duplicate() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let run = run_name("restart-web", &a);
    server.insert(lease_held_by(&run, jiff::Timestamp::now()));
    let (replica, body) = (h.clone(), webhook(&[a]));
    let decided = tokio::spawn(async move { replica.decide(&body).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The replica that took the Lease creates the run meanwhile.
    server.insert(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": run, "namespace": NS,
                     "labels": {"app.kubernetes.io/managed-by": "heald"}},
        "spec": {"entrypoint": "main", "templates": []},
    }));
    let d = decided.await.unwrap();
    assert_eq!(decision(&d), "duplicate", "{d:?}");
    assert!(
        server
            .requests_matching(
                "POST",
                &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows")
            )
            .is_empty(),
        "nothing created by this replica"
    );
}

#[tokio::test]
async fn with_an_argo_server_url_workflows_are_submitted_through_its_rest_api() {
    heal_testkit::require_reference!();
    let server = server();
    let argo = Receiver::start().await;
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    std::fs::write(f.path().join("argo-token"), "argo-secret\n").unwrap();
    let token_file = f.path().join("argo-token");
    let h = Heald::start(
        &server,
        &f,
        &[
            "--argo-server-url",
            &argo.url,
            "--argo-server-token-file",
            token_file.to_str().unwrap(),
        ],
    )
    .await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(decision(&d), "submitted", "{d:?}");
    let bodies = argo.bodies(&format!("/api/v1/workflows/{NS}"));
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["namespace"], NS);
    assert_eq!(bodies[0]["serverDryRun"], false);
    assert_eq!(
        bodies[0]["workflow"],
        expected_run(&h, "restart-web", &a, heal::render::Engine::Argo)
    );
    assert_eq!(argo.auth.lock().unwrap()[0], "Bearer argo-secret");
    server.assert_not_requested("POST", "/workflows");
    *argo.status.lock().unwrap() = 409;
    let again = h
        .decide(&webhook(&[web_down("api", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(
        decision(&again),
        "duplicate",
        "409 from the Argo Server: {again:?}"
    );
}

// ----- two replicas -----

#[tokio::test]
async fn two_replicas_agree_on_duplicates_locks_cooldowns_and_circuits_through_leases() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let extra = ["--alertmanager-url", am.url.as_str()];
    let a = Heald::start(&server, &f, &extra).await;
    let b = Heald::start(&server, &f, &extra).await;

    let first = web_down("web", "2026-08-20T10:00:00Z");
    assert_eq!(
        decision(&a.decide(&webhook(std::slice::from_ref(&first))).await),
        "submitted"
    );
    assert_eq!(
        decision(&b.decide(&webhook(std::slice::from_ref(&first))).await),
        "duplicate"
    );
    let second = web_down("web", "2026-08-20T10:30:00Z");
    assert_eq!(
        decision(&b.decide(&webhook(std::slice::from_ref(&second))).await),
        "locked"
    );

    set_phase(&server, &run_name("restart-web", &first), "Succeeded");
    let pass = tracking::pass(&b.state).await.unwrap();
    assert_eq!(pass.finished, 1);
    let lease = lease_of(&server, "restart-web", "web");
    assert!(
        lease["metadata"]["annotations"]["heal.dev/last-success-at"].is_string(),
        "{lease}"
    );
    assert_eq!(
        decision(&a.decide(&webhook(std::slice::from_ref(&second))).await),
        "cooldown"
    );
    assert_eq!(decision(&b.decide(&webhook(&[second])).await), "cooldown");

    // Failures: two within the hour open the circuit, whichever replica acted.
    let api1 = web_down("api", "2026-08-20T10:00:00Z");
    assert_eq!(
        decision(&a.decide(&webhook(std::slice::from_ref(&api1))).await),
        "submitted"
    );
    set_phase(&server, &run_name("restart-web", &api1), "Failed");
    assert_eq!(tracking::pass(&a.state).await.unwrap().finished, 1);
    let api2 = web_down("api", "2026-08-20T10:10:00Z");
    assert_eq!(
        decision(&b.decide(&webhook(std::slice::from_ref(&api2))).await),
        "submitted"
    );
    set_phase(&server, &run_name("restart-web", &api2), "Failed");
    assert_eq!(tracking::pass(&b.state).await.unwrap().finished, 1);
    let api3 = web_down("api", "2026-08-20T10:20:00Z");
    let d = a.decide(&webhook(&[api3])).await;
    assert_eq!(decision(&d), "circuit-open", "{d:?}");
    assert_eq!(am.bodies("/notify").len(), 2, "each failure escalated once");
}

#[tokio::test]
async fn when_two_replicas_race_for_a_fresh_target_exactly_one_run_is_created() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let a = Heald::start(&server, &f, &[]).await;
    let b = Heald::start(&server, &f, &[]).await;
    for round in 0..10 {
        let alert = web_down(&format!("race-{round}"), "2026-08-20T10:00:00Z");
        let body = webhook(&[alert]);
        let (da, db) = tokio::join!(a.decide(&body), b.decide(&body));
        let mut got = [decision(&da).to_string(), decision(&db).to_string()];
        got.sort();
        assert_eq!(got, ["duplicate", "submitted"], "round {round}");
    }
    assert_eq!(server.list(WF.0, WF.1, NS).len(), 10);
}

// ----- tracking -----

#[tokio::test]
async fn a_successful_run_silences_the_alert_releases_the_target_and_is_recorded() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    assert_eq!(tracking::pass(&h.state).await.unwrap().in_flight, 1);
    let during = am.bodies("/api/v2/silences");
    assert_eq!(during.len(), 1, "silenced while the run is in progress");
    assert!(
        during[0]["comment"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );
    assert_eq!(during[0].get("id"), None);
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(
        wf["metadata"]["annotations"]["heal.dev/silence-id"],
        "silence-1"
    );
    server.modify(WF.0, WF.1, NS, &run, |o| {
        o["status"] = json!({"phase": "Succeeded", "nodes": {
            "n1": {"displayName": "restart", "type": "Pod", "outputs": {"parameters": [
                {"name": "result", "value": "{\"outcome\":\"applied\",\"message\":\"restarted\"}"}]}}}});
    });
    let pass = tracking::pass(&h.state).await.unwrap();
    assert_eq!((pass.finished, pass.in_flight), (1, 0));
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/reported"], "true");
    assert_eq!(wf["metadata"]["labels"]["heal.dev/outcome"], "succeeded");
    assert!(
        wf["metadata"]["annotations"]["heal.dev/results"]
            .as_str()
            .unwrap()
            .contains("restarted")
    );
    let silences = am.bodies("/api/v2/silences");
    assert_eq!(silences.len(), 2);
    let s = &silences[1];
    assert_eq!(s["id"], "silence-1", "the in-progress silence is replaced");
    assert_eq!(s["createdBy"], "heald");
    let comment = s["comment"].as_str().unwrap();
    assert!(
        comment.contains(&run) && comment.contains(d[0]["correlationId"].as_str().unwrap()),
        "{comment}"
    );
    let matchers: BTreeMap<String, String> = s["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(matchers["alertname"], "WebDown");
    assert_eq!(matchers["deployment"], "web");
    let starts: jiff::Timestamp = s["startsAt"].as_str().unwrap().parse().unwrap();
    let ends: jiff::Timestamp = s["endsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        ends.duration_since(starts),
        jiff::SignedDuration::from_hours(2)
    );
    assert!(am.bodies("/notify").is_empty());
    let lease = lease_of(&server, "restart-web", "web");
    assert_eq!(lease["metadata"]["annotations"]["heal.dev/holders"], "[]");
    let events: Vec<Value> = server
        .requests_matching("POST", &format!("/api/v1/namespaces/{NS}/events"))
        .into_iter()
        .filter_map(|r| r.body)
        .collect();
    assert!(
        events.iter().any(|e| e["reason"] == "RemediationSucceeded"),
        "{events:?}"
    );
    let outcomes: Vec<_> = h
        .state
        .history
        .recent(10)
        .into_iter()
        .filter(|e| e.kind == "outcome")
        .collect();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, "succeeded");
    assert_eq!(
        tracking::pass(&h.state).await.unwrap().finished,
        0,
        "handled once"
    );
    assert_eq!(am.bodies("/api/v2/silences").len(), 2);
}

#[tokio::test]
async fn a_failed_run_escalates_to_the_notifier_with_its_steps_and_leaves_the_alert_firing() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    server.modify(WF.0, WF.1, NS, &run, |o| {
        o["status"] = json!({"phase": "Failed", "message": "child 'restart' failed", "nodes": {
            "n1": {"displayName": "restart", "type": "Pod", "outputs": {"parameters": [
                {"name": "result", "value": "{\"outcome\":\"failed\",\"message\":\"forbidden\"}"}]}}}});
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    assert_eq!(
        am.bodies("/api/v2/silences").len(),
        1,
        "only the in-progress silence, no success silence"
    );
    assert_eq!(
        am.bodies("/api/v2/silence/silence-1").len(),
        1,
        "the in-progress silence is expired so the alert fires again"
    );
    let notes = am.bodies("/notify");
    assert_eq!(notes.len(), 1);
    let n = &notes[0];
    assert_eq!(n["kind"], "RemediationFailed");
    assert_eq!(n["outcome"], "failed");
    assert_eq!(n["run"], json!(run));
    assert_eq!(n["labels"]["deployment"], "web");
    assert_eq!(n["steps"]["restart"]["message"], "forbidden");
    assert!(n["link"].as_str().unwrap().starts_with(&am.url));
    let lease = lease_of(&server, "restart-web", "web");
    assert!(lease["metadata"]["annotations"]["heal.dev/failures"].is_string());
}

/// A stand-in Alertmanager that answers every silence request with `status`, and a
/// replace (a silence with an `id`) with 404 "silence not found" as an Alertmanager that
/// lost its silences does.
async fn forgetful_alertmanager(status: std::sync::Arc<std::sync::Mutex<u16>>) -> Receiver {
    let received: Received = Default::default();
    let r = received.clone();
    let s = status.clone();
    let app = axum::Router::new().fallback(move |req: axum::http::Request<axum::body::Body>| {
        let (r, s) = (r.clone(), s.clone());
        async move {
            let path = req.uri().path().to_string();
            let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            r.lock().unwrap().push((path, body.clone()));
            let code = *s.lock().unwrap();
            if code != 200 {
                return (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    axum::Json(json!("down")),
                );
            }
            if body.get("id").is_some() {
                return (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!("silence not found")),
                );
            }
            (
                axum::http::StatusCode::OK,
                axum::Json(json!({"silenceID": "silence-2"})),
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
        auth: Default::default(),
    }
}

#[tokio::test]
async fn a_success_silence_alertmanager_could_not_take_is_kept_on_the_run_and_delivered_by_a_later_pass()
 {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    // Alertmanager goes away, then comes back having lost its silences.
    let status = std::sync::Arc::new(std::sync::Mutex::new(503u16));
    let forgetful = forgetful_alertmanager(status.clone()).await;
    let h = Heald::start(&server, &f, &["--alertmanager-url", &forgetful.url]).await;
    set_phase(&server, &run, "Succeeded");
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/reported"], "true");
    assert_eq!(
        wf["metadata"]["labels"]["heal.dev/silence"], "pending",
        "the undelivered silence is recorded on the run: {wf}"
    );
    let pending: Value = serde_json::from_str(
        wf["metadata"]["annotations"]["heal.dev/silence-pending"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pending["op"], "create");
    assert_eq!(pending["silence"]["id"], "silence-1", "{pending}");
    assert_eq!(forgetful.bodies("/api/v2/silences").len(), 1, "one attempt");

    *status.lock().unwrap() = 200;
    tracking::pass(&h.state).await.unwrap();
    assert_eq!(
        forgetful.bodies("/api/v2/silences").len(),
        1,
        "not before its backoff"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Another replica (or this one restarted) finds it by label and delivers it.
    let other = Heald::start(&server, &f, &["--alertmanager-url", &forgetful.url]).await;
    tracking::pass(&other.state).await.unwrap();
    let sent = forgetful.bodies("/api/v2/silences");
    assert_eq!(
        sent.len(),
        3,
        "a replace answered 404, then a new silence: {sent:?}"
    );
    assert_eq!(sent[1]["id"], "silence-1");
    assert_eq!(sent[2].get("id"), None);
    assert!(sent[2]["comment"].as_str().unwrap().contains("succeeded"));
    assert_eq!(
        sent[2]["endsAt"], sent[0]["endsAt"],
        "it ends when it would have"
    );
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(
        wf["metadata"]["labels"].get("heal.dev/silence"),
        None,
        "{wf}"
    );
    assert_eq!(
        wf["metadata"]["annotations"].get("heal.dev/silence-pending"),
        None
    );
    assert_eq!(
        wf["metadata"]["annotations"]["heal.dev/silence-id"],
        "silence-2"
    );
    tracking::pass(&h.state).await.unwrap();
    tracking::pass(&other.state).await.unwrap();
    assert_eq!(
        forgetful.bodies("/api/v2/silences").len(),
        3,
        "delivered once"
    );
}

#[tokio::test]
async fn a_failed_runs_in_progress_silence_is_expired_once_alertmanager_answers_again() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let notifier = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", notifier.url)));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    *am.status.lock().unwrap() = 503;
    set_phase(&server, &run, "Failed");
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    assert_eq!(
        notifier.bodies("/notify").len(),
        1,
        "escalated at once all the same"
    );
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/silence"], "pending");
    *am.status.lock().unwrap() = 200;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tracking::pass(&h.state).await.unwrap();
    assert_eq!(
        am.bodies("/api/v2/silence/silence-1").len(),
        2,
        "expired on the retry"
    );
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"].get("heal.dev/silence"), None);
}

#[tokio::test]
async fn a_notifier_that_fails_at_first_gets_the_notification_on_a_retry() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    *am.status.lock().unwrap() = 503;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    set_phase(&server, &run_name("restart-web", &a), "Error");
    let status = am.status.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        *status.lock().unwrap() = 200;
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let notes = am.bodies("/notify");
    assert!(notes.len() >= 2, "retried: {notes:?}");
    let text = h.state.metrics.encode();
    assert!(
        text.contains(r#"heald_deliveries_total{kind="webhook",result="ok"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_run_that_never_starts_times_out_at_its_deadline_and_is_stopped() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    assert_eq!(
        tracking::pass(&h.state).await.unwrap().in_flight,
        1,
        "not yet overdue"
    );
    server.modify(WF.0, WF.1, NS, &run, |o| {
        o["metadata"]["creationTimestamp"] = json!("2020-01-01T00:00:00Z");
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/outcome"], "timed-out");
    assert_eq!(
        wf["spec"]["shutdown"], "Terminate",
        "the engine is told to stop it"
    );
    let notes = am.bodies("/notify");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["outcome"], "timed-out");
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap()
            .contains("never started"),
        "{:?}",
        notes[0]
    );
}

#[tokio::test]
async fn a_report_ends_the_run_at_once_and_a_second_report_changes_nothing() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    let report = json!({
        "engine": "argo", "runName": run, "namespace": NS, "status": "Succeeded",
        "outcome": "succeeded", "correlationId": d[0]["correlationId"],
        "results": {"restart": {"outcome": "applied", "message": "restarted deployment/web"}},
    });
    let post = |body: Value| {
        let app = h.app.clone();
        async move {
            call(
                &app,
                "POST",
                "/v1/reports",
                Some(TOKEN),
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (status, _, v) = post(report.clone()).await;
    assert_eq!(status.as_u16(), 202, "{v}");
    assert_eq!(v["outcome"], "succeeded");
    for _ in 0..100 {
        if am.bodies("/api/v2/silences").len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        am.bodies("/api/v2/silences").len(),
        2,
        "in progress, then success"
    );
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/reported"], "true");
    assert!(
        wf["metadata"]["annotations"]["heal.dev/results"]
            .as_str()
            .unwrap()
            .contains("restarted deployment/web")
    );
    let (status, _, v) = post(report.clone()).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(v["status"], "already-reported");
    set_phase(&server, &run, "Succeeded");
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 0);
    let mut wrong = report;
    wrong["correlationId"] = json!("not-it");
    let (status, _, v) = post(wrong).await;
    assert_eq!(status.as_u16(), 400, "{v}");
    assert_eq!(am.bodies("/api/v2/silences").len(), 2);
}

#[tokio::test]
async fn after_a_restart_every_run_in_flight_is_still_reported_exactly_once() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let extra = ["--alertmanager-url", am.url.as_str()];
    let names = ["web", "api", "cart", "search"];
    let runs: Vec<String> = {
        let first = Heald::start(&server, &f, &extra).await;
        let mut runs = Vec::new();
        for n in names {
            let a = web_down(n, "2026-08-20T10:00:00Z");
            assert_eq!(
                decision(&first.decide(&webhook(std::slice::from_ref(&a))).await),
                "submitted"
            );
            runs.push(run_name("restart-web", &a));
        }
        first.state.begin_shutdown();
        runs
        // The first heald goes away with its runs in flight.
    };
    set_phase(&server, &runs[0], "Succeeded");
    set_phase(&server, &runs[1], "Succeeded");
    set_phase(&server, &runs[2], "Failed");
    let a = Heald::start(&server, &f, &extra).await;
    let b = Heald::start(&server, &f, &extra).await;
    let (pa, pb) = tokio::join!(tracking::pass(&a.state), tracking::pass(&b.state));
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!(pa.finished + pb.finished, 3, "{pa:?} {pb:?}");
    set_phase(&server, &runs[3], "Succeeded");
    let (pa, pb) = tokio::join!(tracking::pass(&a.state), tracking::pass(&b.state));
    assert_eq!(pa.unwrap().finished + pb.unwrap().finished, 1);
    assert_eq!(tracking::pass(&a.state).await.unwrap().finished, 0);
    let silences = am.bodies("/api/v2/silences");
    let replaced = silences.iter().filter(|s| s.get("id").is_some()).count();
    assert_eq!(
        (silences.len(), replaced),
        (4 + 3, 3),
        "4 in progress, 3 successes"
    );
    assert_eq!(
        am.bodies("/api/v2/silence/silence-1").len(),
        1,
        "1 failure expires its silence"
    );
    assert_eq!(am.bodies("/notify").len(), 1);
    for run in &runs {
        let wf = server.get(WF.0, WF.1, NS, run).unwrap();
        assert_eq!(
            wf["metadata"]["labels"]["heal.dev/reported"], "true",
            "{run}"
        );
    }
}

#[tokio::test]
async fn finished_tekton_runs_are_pruned_after_the_retention_period() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &["--tekton-retention", "1h"]).await;
    let a = alert(
        "ApiSlow",
        &[("namespace", "shop"), ("deployment", "api")],
        "2026-08-20T10:00:00Z",
    );
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("scale-api", &a);
    server.modify(PR.0, PR.1, NS, &run, |o| {
        o["status"] = json!({
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
            "completionTime": jiff::Timestamp::now().to_string(),
        });
    });
    let p = tracking::pass(&h.state).await.unwrap();
    assert_eq!((p.finished, p.pruned), (1, 0), "kept while recent");
    server.modify(PR.0, PR.1, NS, &run, |o| {
        o["status"]["completionTime"] = json!("2020-01-01T00:00:00Z");
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().pruned, 1);
    assert!(server.get(PR.0, PR.1, NS, &run).is_none());
}

// ----- storm -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_storm_of_1000_deliveries_for_50_alerts_to_two_replicas_creates_exactly_50_runs() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let replicas = [
        Heald::start(&server, &f, &[]).await,
        Heald::start(&server, &f, &[]).await,
    ];
    let alerts: Vec<Value> = (0..50)
        .map(|i| web_down(&format!("svc-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let mut tasks = Vec::new();
    for delivery in 0..1000usize {
        // Groups of 1 to 3 alerts, repeating, alternating replicas.
        let group: Vec<Value> = (0..1 + delivery % 3)
            .map(|k| alerts[(delivery * 7 + k * 13) % 50].clone())
            .collect();
        let h = replicas[delivery % 2].clone();
        tasks.push(tokio::spawn(
            async move { h.alerts(&webhook(&group)).await },
        ));
    }
    let mut submitted = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!(status.as_u16(), 200, "{v}");
        for d in v["decisions"].as_array().unwrap() {
            match d["decision"].as_str().unwrap() {
                "submitted" => submitted += 1,
                "duplicate" => {}
                other => panic!("unexpected decision {other}: {d}"),
            }
        }
    }
    assert_eq!(submitted, 50);
    let mut names = server.names(WF.0, WF.1, NS);
    names.sort();
    let mut expected: Vec<String> = alerts.iter().map(|a| run_name("restart-web", a)).collect();
    expected.sort();
    assert_eq!(names, expected);
}

// ----- resolved alerts -----

/// The test policies with `onResolved: cancel` on both.
fn cancelling_policies(notifier_url: &str) -> String {
    policies(notifier_url).replace("  steps:\n", "  onResolved: cancel\n  steps:\n")
}

#[tokio::test]
async fn a_resolved_alert_stops_its_unfinished_argo_workflow_and_the_end_is_reported_cancelled() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&cancelling_policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    assert_eq!(
        decision(&h.decide(&webhook(std::slice::from_ref(&a))).await),
        "submitted"
    );
    let run = run_name("restart-web", &a);
    set_phase(&server, &run, "Running");
    server.clear_requests();
    let d = h.decide(&webhook(&[resolved(a.clone())])).await;
    assert_eq!(decision(&d), "resolved", "{d:?}");
    let reason = d[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("cancelled run {run}")) && reason.contains("shutdown: Stop"),
        "{reason}"
    );
    assert_eq!(d[0]["run"], json!(run));
    assert_eq!(d[0]["engine"], "argo");
    let path = format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{run}");
    let patches = server.requests_matching("PATCH", &path);
    assert_eq!(patches.len(), 1, "{}", server.log_text());
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let why = format!(
        "alert WebDown ({}) resolved before the run finished",
        a["fingerprint"].as_str().unwrap()
    );
    assert_eq!(
        patches[0].body,
        Some(json!({
            "metadata": {"annotations": {"heal.dev/cancelled": why}},
            "spec": {"shutdown": "Stop"},
        }))
    );
    // A repeat of the resolved notification asks nothing more.
    let again = h.decide(&webhook(&[resolved(a.clone())])).await;
    assert!(
        again[0]["reason"]
            .as_str()
            .unwrap()
            .contains("already being cancelled"),
        "{again:?}"
    );
    assert_eq!(server.requests_matching("PATCH", &path).len(), 1);

    // Argo stops it: the workflow fails with "Stopped with strategy 'Stop'".
    server.modify(WF.0, WF.1, NS, &run, |o| {
        o["status"] = json!({"phase": "Failed", "message": "Stopped with strategy 'Stop'"});
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let wf = server.get(WF.0, WF.1, NS, &run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/outcome"], "cancelled");
    assert!(
        am.bodies("/notify").is_empty(),
        "a cancellation is no failure to escalate"
    );
    assert_eq!(
        am.bodies("/api/v2/silence/silence-1").len(),
        1,
        "the in-progress silence is expired"
    );
    let lease = lease_of(&server, "restart-web", "web");
    assert_eq!(lease["metadata"]["annotations"]["heal.dev/holders"], "[]");
    assert!(
        lease["metadata"]["annotations"]
            .get("heal.dev/failures")
            .is_none(),
        "not counted towards the circuit: {lease}"
    );
    let outcomes: Vec<_> = h
        .state
        .history
        .recent(10)
        .into_iter()
        .filter(|e| e.kind == "outcome")
        .collect();
    assert_eq!(outcomes[0].result, "cancelled");
    assert!(
        outcomes[0]
            .reason
            .contains("resolved before the run finished"),
        "{}",
        outcomes[0].reason
    );
}

#[tokio::test]
async fn a_resolved_alert_cancels_its_unfinished_tekton_pipelinerun() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&cancelling_policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let a = alert(
        "ApiSlow",
        &[("namespace", "shop"), ("deployment", "api")],
        "2026-08-20T10:00:00Z",
    );
    assert_eq!(
        decision(&h.decide(&webhook(std::slice::from_ref(&a))).await),
        "submitted"
    );
    let run = run_name("scale-api", &a);
    server.clear_requests();
    let d = h.decide(&webhook(&[resolved(a.clone())])).await;
    assert_eq!(decision(&d), "resolved");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap()
            .contains("spec.status: Cancelled"),
        "{d:?}"
    );
    let path = format!("/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns/{run}");
    let patch = server.assert_requested("PATCH", &path);
    assert_eq!(
        patch.body.as_ref().unwrap()["spec"],
        json!({"status": "Cancelled"})
    );
    assert!(
        patch.body.as_ref().unwrap()["metadata"]["annotations"]["heal.dev/cancelled"].is_string()
    );
    server.modify(PR.0, PR.1, NS, &run, |o| {
        o["status"] = json!({"conditions": [{"type": "Succeeded", "status": "False",
            "reason": "Cancelled", "message": "PipelineRun was cancelled"}]});
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let pr = server.get(PR.0, PR.1, NS, &run).unwrap();
    assert_eq!(pr["metadata"]["labels"]["heal.dev/outcome"], "cancelled");
}

#[tokio::test]
async fn a_resolved_alert_leaves_a_finished_run_and_policies_without_on_resolved_alone() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&cancelling_policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    set_phase(&server, &run, "Succeeded");
    server.clear_requests();
    let d = h.decide(&webhook(&[resolved(a.clone())])).await;
    assert_eq!(decision(&d), "resolved");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap()
            .contains("had already ended"),
        "{d:?}"
    );
    let never = web_down("other", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(&[resolved(never)])).await;
    assert!(
        d[0]["reason"].as_str().unwrap().contains("never created"),
        "{d:?}"
    );
    server.assert_not_requested("PATCH", "/workflows/");

    // Without `onResolved`, a resolved alert does nothing to a running run.
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let plain = Heald::start(&server, &f, &[]).await;
    let b = web_down("web", "2026-08-20T12:00:00Z");
    plain.decide(&webhook(std::slice::from_ref(&b))).await;
    server.clear_requests();
    let d = plain.decide(&webhook(&[resolved(b)])).await;
    assert_eq!(d[0]["reason"], "the alert resolved; nothing to do");
    assert!(
        server.resource_requests().is_empty(),
        "{}",
        server.log_text()
    );
}

// ----- watching -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_end_is_handled_as_soon_as_the_watch_shows_it_without_waiting_for_a_pass() {
    heal_testkit::require_reference!();
    let server = server();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    // One pass at start, the next in an hour: only the watch can see the end in time.
    let h = Heald::start(&server, &f, &["--track-interval", "1h"]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    let tracker = tokio::spawn(tracking::run(std::sync::Arc::clone(&h.state)));
    let path = format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows");
    let watch = wait_async("a watch on the workflows", || {
        server
            .requests_matching("GET", &path)
            .into_iter()
            .find(|r| r.param("watch") == Some("true"))
    })
    .await;
    assert_eq!(
        watch.param("labelSelector"),
        Some("app.kubernetes.io/managed-by=heald,!heal.dev/reported")
    );
    let rv = watch
        .param("resourceVersion")
        .expect("starts where its list ended");
    assert!(rv.parse::<u64>().is_ok(), "{rv}");
    assert!(
        server
            .requests_matching(
                "GET",
                &format!("/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns")
            )
            .iter()
            .any(|r| r.param("watch") == Some("true")),
        "Tekton runs are watched too"
    );

    set_phase(&server, &run, "Failed");
    wait_async("the end to be handled", || {
        server
            .get(WF.0, WF.1, NS, &run)
            .filter(|w| w["metadata"]["labels"]["heal.dev/reported"] == "true")
    })
    .await;
    let notes = wait_async("the escalation", || {
        Some(am.bodies("/notify")).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(notes[0]["run"], json!(run));

    h.state.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), tracker)
        .await
        .expect("the tracker and its watches stop at shutdown")
        .unwrap();
}

/// Poll `f` every 20 ms for up to 5 s.
async fn wait_async<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- blast radius -----

fn one(d: &Value) -> &str {
    d["decision"].as_str().unwrap_or("?")
}

const CAPPED: &str = r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: restart-web
spec:
  match:
    alertname: WebDown
  target:
    kind: deployment
    namespace: "{{ labels.namespace }}"
    name: "{{ labels.deployment }}"
  engine: argo
  guards:
    maxInFlight: 2
  steps:
    - name: restart
      action: restart
"#;

#[tokio::test]
async fn past_max_in_flight_the_policy_answers_blast_radius_across_replicas_until_a_run_ends() {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(CAPPED);
    let a = Heald::start(&server, &f, &["--instance", "heald-a"]).await;
    let b = Heald::start(&server, &f, &["--instance", "heald-b"]).await;
    let alerts: Vec<Value> = (0..6)
        .map(|i| web_down(&format!("web-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let (hook_a, hook_b) = (webhook(&alerts[..3]), webhook(&alerts[3..]));
    let (da, db) = tokio::join!(a.decide(&hook_a), b.decide(&hook_b));
    let all: Vec<&Value> = da.iter().chain(db.iter()).collect();
    let count = |what: &str| all.iter().filter(|d| one(d) == what).count();
    assert_eq!(count("submitted"), 2, "{all:#?}");
    assert_eq!(count("blast-radius"), 4, "{all:#?}");
    for d in all.iter().filter(|d| one(d) == "blast-radius") {
        assert!(
            d["reason"].as_str().unwrap().contains("maxInFlight 2"),
            "{d}"
        );
    }
    let runs = server.names(WF.0, WF.1, NS);
    assert_eq!(runs.len(), 2);
    // The slots are the holders of the policy's in-flight Lease, one per run; each run
    // names it.
    let slots_name = heal::heald::guards::lease::in_flight_lease_name("restart-web");
    let slots = server
        .get("coordination.k8s.io/v1", "leases", NS, &slots_name)
        .expect("the in-flight Lease");
    let holders: Vec<Value> = serde_json::from_str(
        slots["metadata"]["annotations"]["heal.dev/holders"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut held: Vec<&str> = holders.iter().map(|h| h["run"].as_str().unwrap()).collect();
    held.sort_unstable();
    assert_eq!(held, runs.iter().map(String::as_str).collect::<Vec<_>>());
    for run in &runs {
        let w = server.get(WF.0, WF.1, NS, run).unwrap();
        assert_eq!(
            w["metadata"]["annotations"]["heal.dev/in-flight-lease"],
            json!(slots_name)
        );
    }
    // A refused alert wrote nothing: no hold for it.
    let refused: Vec<String> = all
        .iter()
        .filter(|d| one(d) == "blast-radius")
        .map(|d| d["run"].as_str().unwrap().to_string())
        .collect();
    for l in target_leases(&server) {
        let h = l["metadata"]["annotations"]["heal.dev/holders"]
            .as_str()
            .unwrap_or("[]");
        for r in &refused {
            assert!(!h.contains(r.as_str()), "{r} holds {l}");
        }
    }

    // One run ends: its slot is freed, and the next new alert gets a run.
    set_phase(&server, &runs[0], "Succeeded");
    assert_eq!(tracking::pass(&a.state).await.unwrap().finished, 1);
    let d = b
        .decide(&webhook(&[web_down("web-9", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(one(&d[0]), "submitted", "{d:?}");
    let d = a
        .decide(&webhook(&[web_down("web-10", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(one(&d[0]), "blast-radius", "{d:?}");
}

#[test]
fn max_in_flight_zero_is_a_lint_error_at_its_line() {
    let yaml = CAPPED.replace("maxInFlight: 2", "maxInFlight: 0");
    let e = heal::policy::PolicySet::from_yaml("p.yaml", &yaml)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("p.yaml:14") && e.contains("maxInFlight must be at least 1"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_lease_watch_synced_heald_reads_no_lease_and_a_write_from_a_stale_entry_reads_it_again()
 {
    heal_testkit::require_reference!();
    let server = server();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &["--track-interval", "1h"]).await;
    let tracker = tokio::spawn(tracking::run(std::sync::Arc::clone(&h.state)));
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    let watch = wait_async("a watch on heald's Leases", || {
        server
            .requests_matching("GET", &leases)
            .into_iter()
            .find(|r| r.param("watch") == Some("true"))
    })
    .await;
    assert_eq!(
        watch.param("labelSelector"),
        Some("app.kubernetes.io/managed-by=heald,!heal.dev/rate-bucket")
    );
    wait_async("the Lease cache to sync", || {
        h.state.k8s.leases().is_synced().then_some(())
    })
    .await;
    let target = heal::plan::PlanTarget {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
    };
    let name = heal::heald::guards::lease::lease_name("restart-web", &target);
    let lease_path = format!("{leases}/{name}");
    let reads = |server: &ApiServer| server.requests_matching("GET", &lease_path).len();

    // A new alert: its target's Lease is known absent, so heald creates it without a read.
    let first = web_down("web", "2026-08-20T10:00:00Z");
    assert_eq!(
        decision(&h.decide(&webhook(std::slice::from_ref(&first))).await),
        "submitted"
    );
    assert_eq!(reads(&server), 0, "{}", server.log_text());
    let on_target = |server: &ApiServer, from: usize| -> Vec<String> {
        server.requests()[from..]
            .iter()
            .filter(|r| {
                r.path == lease_path
                    || (r.path == leases
                        && r.body
                            .as_ref()
                            .is_some_and(|b| b["metadata"]["name"] == name))
            })
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect()
    };
    assert_eq!(on_target(&server, 0), [format!("POST {leases} 201")]);

    // Every watch event so far delivered: a marker Lease made after them is in the cache
    // (the watch delivers in order). Then nothing arriving late can refill the cache.
    let mut marker = heal_testkit::apiserver::lease(NS, "marker", "", 1);
    marker["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "heald"});
    server.insert(marker);
    wait_async("the watch to deliver the marker", || {
        matches!(
            h.state.k8s.leases().get("marker"),
            heal::heald::kube_io::Cached::Present(_)
        )
        .then_some(())
    })
    .await;
    // The tracker's own requests (its first pass, its run watches) are not the alert's.
    let alerts_own = |server: &ApiServer, from: usize| -> Vec<String> {
        server.requests()[from..]
            .iter()
            .filter(|r| r.param("labelSelector").is_none())
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect()
    };

    // A new episode for the held target: decided from memory, no request at all.
    let before = server.requests().len();
    let second = web_down("web", "2026-08-20T10:30:00Z");
    assert_eq!(
        decision(&h.decide(&webhook(std::slice::from_ref(&second))).await),
        "locked"
    );
    assert_eq!(alerts_own(&server, before), Vec::<String>::new());

    // The cache behind the API server (as while a watch event is on its way): the create
    // meets 409, heald reads the Lease and decides from what it holds.
    h.state.k8s.leases().remove(&name);
    let third = web_down("web", "2026-08-20T11:00:00Z");
    assert_eq!(
        decision(&h.decide(&webhook(std::slice::from_ref(&third))).await),
        "locked"
    );
    assert_eq!(
        on_target(&server, before),
        [
            format!("POST {leases} 409"),
            format!("GET {lease_path} 200")
        ],
        "{}",
        server.log_text()
    );
    assert_eq!(server.list(WF.0, WF.1, NS).len(), 1, "one run");

    h.state.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), tracker)
        .await
        .expect("the tracker and its watches stop at shutdown")
        .unwrap();
}

/// `examples/policies/pod-not-ready.yaml` as shipped, escalating to `notifier`.
fn seed_policy(notifier: &str) -> String {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/policies/pod-not-ready.yaml"),
    )
    .expect("the seed example");
    format!(
        "{}---\napiVersion: heal.dev/v1alpha1\nkind: Notifier\nmetadata:\n  name: oncall\nspec:\n  type: webhook\n  url: {notifier}\n",
        shipped.replace(
            "onFailure: {notify: [oncall-slack, incident-webhook]}",
            "onFailure: {notify: [oncall]}"
        )
    )
}

#[tokio::test]
async fn target_owner_holds_the_deployment_so_two_pods_alerts_do_not_both_scale_it() {
    heal_testkit::require_reference!();
    let server = server();
    let seeded = server.seed_deployment("shop", "checkout", 2, &[]);
    let pods: Vec<(String, String)> = seeded
        .pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    server.insert(heal_testkit::apiserver::bare_pod(
        "shop", "lonely", "node-1",
    ));
    let f = Files::new(&seed_policy("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &[]).await;
    let not_ready = |pod: &str, uid: &str| {
        alert(
            "KubePodNotReady",
            &[("namespace", "shop"), ("pod", pod), ("uid", uid)],
            "2026-08-20T10:15:00Z",
        )
    };
    let first = not_ready(&pods[0].0, &pods[0].1);
    let d = h.decide(&webhook(std::slice::from_ref(&first))).await;
    assert_eq!(decision(&d), "submitted", "{d:?}");
    let held: Vec<Value> = target_leases(&server)
        .into_iter()
        .map(|l| l["metadata"]["annotations"]["heal.dev/target"].clone())
        .collect();
    assert_eq!(
        held,
        [json!("deployment/shop/checkout")],
        "the hold covers the Deployment"
    );
    // The Workflow finds the owner again and refuses if it is not this one.
    let run = run_name("pod-not-ready-scale-and-replace", &first);
    let wf = server.get(WF.0, WF.1, NS, &run).expect("the workflow");
    let text = wf.to_string();
    assert!(
        text.contains(r#""--owner","--expect-owner","deployment/checkout""#),
        "{text}"
    );
    // The other pod of the same Deployment: the Deployment is held.
    let d = h
        .decide(&webhook(&[not_ready(&pods[1].0, &pods[1].1)]))
        .await;
    assert_eq!(decision(&d), "locked", "{d:?}");
    assert_eq!(server.list(WF.0, WF.1, NS).len(), 1);
    // A pod without a controller: nothing to scale, told as an error, nothing written.
    let before = server.requests().len();
    let d = h.decide(&webhook(&[not_ready("lonely", "u-1")])).await;
    assert_eq!(decision(&d), "error", "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap()
            .contains("pod/lonely in shop has no controller"),
        "{d:?}"
    );
    let writes: Vec<_> = server.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}
