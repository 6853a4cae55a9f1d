//! heald's HTTP interface, called through its routers without a socket: every decision a
//! webhook can get, every error status, the remediations list and the admin endpoints.

use std::sync::Arc;

use crate::heald_support::*;
use axum::http::StatusCode;
use heal_testkit::apiserver::{ApiServer, Fault};
use serde_json::{Value, json};

fn decision(d: &Value) -> &str {
    d["decision"].as_str().unwrap_or("?")
}

fn files() -> Files {
    Files::new(&policies("http://127.0.0.1:9/notify"))
}

fn body_of(alerts: &[Value]) -> Vec<u8> {
    webhook(alerts).to_string().into_bytes()
}

// ----- errors -----

#[tokio::test]
async fn a_webhook_without_a_token_is_refused_with_a_bearer_challenge() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let body = body_of(&[web_down("web", "2026-08-20T10:00:00Z")]);
    let (status, headers, v) = call(
        &h.app,
        "POST",
        "/v1/alerts",
        None,
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"heald\"");
    assert_eq!(v["code"], 401);
    assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
}

#[tokio::test]
async fn a_webhook_with_a_wrong_token_is_refused() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    for token in [
        "heald-test-token-012345678",
        "heald-test-token-0123456789x",
        "",
    ] {
        let body = body_of(&[web_down("web", "2026-08-20T10:00:00Z")]);
        let (status, headers, _) = call(
            &h.app,
            "POST",
            "/v1/alerts",
            Some(token),
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, _, _) = call(
        &h.app,
        "GET",
        "/v1/remediations",
        Some("nope"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let f = files();
    let h = Heald::offline(&f, &["--max-body", "4Ki"]);
    let mut a = web_down("web", "2026-08-20T10:00:00Z");
    a["annotations"]["description"] = json!("x".repeat(5000));
    let (status, _, v) = call(
        &h.app,
        "POST",
        "/v1/alerts",
        Some(TOKEN),
        Some("application/json"),
        body_of(&[a]),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"], "the body is larger than 4096 bytes");
}

#[tokio::test]
async fn malformed_json_is_a_400_saying_so() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let (status, _, v) = call(
        &h.app,
        "POST",
        "/v1/alerts",
        Some(TOKEN),
        Some("application/json"),
        b"{\"version\": \"4\", ".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("body is not valid JSON"),
        "{v}"
    );
}

#[tokio::test]
async fn a_wrong_payload_version_is_a_400_naming_the_supported_one() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let mut body = webhook(&[web_down("web", "2026-08-20T10:00:00Z")]);
    body["version"] = json!("3");
    let (status, v) = h.alerts(&body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("unsupported webhook payload version \"3\""),
        "{e}"
    );
}

#[tokio::test]
async fn a_missing_field_is_a_400_naming_it() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let mut a = web_down("web", "2026-08-20T10:00:00Z");
    a.as_object_mut().unwrap().remove("startsAt");
    let (status, v) = h.alerts(&webhook(&[a])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "alerts[0].startsAt: missing required field");
}

#[tokio::test]
async fn an_empty_alert_list_is_a_400() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let (status, v) = h.alerts(&webhook(&[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("alerts: empty list"),
        "{v}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_by_content_type_is_a_415() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let (status, _, v) = call(
        &h.app,
        "POST",
        "/v1/alerts",
        Some(TOKEN),
        Some("application/x-www-form-urlencoded"),
        b"a=b".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(v["error"].as_str().unwrap().contains("application/json"));
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_503_so_alertmanager_retries() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(&server, &f, &["--api-timeout", "500ms"]).await;
    server.inject(Fault::on("GET", "/leases/").service_unavailable().always());
    let (status, v) = h
        .alerts(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Kubernetes API is unavailable"),
        "{v}"
    );
    server.clear_faults();
    let d = h
        .decide(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(
        decision(&d[0]),
        "submitted",
        "the retry goes through: {d:?}"
    );
}

#[tokio::test]
async fn an_unknown_path_is_a_404() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let (status, _, v) = call(&h.app, "GET", "/v2/alerts", Some(TOKEN), None, Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], 404);
}

// ----- decisions -----

#[tokio::test]
async fn an_alert_no_policy_answers_is_no_match_without_touching_kubernetes() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let d = h
        .decide(&webhook(&[alert(
            "DiskFull",
            &[("node", "n1")],
            "2026-08-20T10:00:00Z",
        )]))
        .await;
    assert_eq!(d.len(), 1);
    assert_eq!(decision(&d[0]), "no-match");
    assert_eq!(d[0]["alertname"], "DiskFull");
    assert_eq!(d[0]["policy"], Value::Null);
    assert_eq!(d[0]["run"], Value::Null);
}

#[tokio::test]
async fn a_resolved_alert_is_resolved_and_starts_nothing() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let d = h
        .decide(&webhook(&[resolved(web_down(
            "web",
            "2026-08-20T10:00:00Z",
        ))]))
        .await;
    assert_eq!(decision(&d[0]), "resolved");
    assert_eq!(d[0]["policy"], "restart-web");
}

#[tokio::test]
async fn a_new_alert_is_submitted_and_its_repeat_is_a_duplicate() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    let run = run_name("restart-web", &a);
    assert_eq!(decision(&d[0]), "submitted", "{d:?}");
    assert_eq!(d[0]["run"], json!(run));
    assert_eq!(d[0]["engine"], "argo");
    assert_eq!(d[0]["namespace"], NS);
    assert_eq!(d[0]["policy"], "restart-web");
    assert_eq!(d[0]["fingerprint"], a["fingerprint"]);
    assert!(d[0]["correlationId"].as_str().unwrap().len() == 36);
    assert!(
        server
            .get("argoproj.io/v1alpha1", "workflows", NS, &run)
            .is_some()
    );
    let again = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(decision(&again[0]), "duplicate", "{again:?}");
    assert_eq!(again[0]["run"], json!(run));
    assert_eq!(again[0]["correlationId"], d[0]["correlationId"]);
}

#[tokio::test]
async fn another_episode_on_a_held_target_is_locked() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let first = h
        .decide(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&first[0]), "submitted");
    let d = h
        .decide(&webhook(&[web_down("web", "2026-08-20T11:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "locked", "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap()
            .contains(first[0]["run"].as_str().unwrap())
    );
    let other = h
        .decide(&webhook(&[web_down("api", "2026-08-20T11:00:00Z")]))
        .await;
    assert_eq!(decision(&other[0]), "submitted", "another target is free");
}

/// A Lease for `restart-web` on `deployment/shop/web` with these annotations.
fn guard_lease(annotations: Value) -> Value {
    let target = heal::plan::PlanTarget {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
    };
    let mut ann = json!({
        "heal.dev/policy": "restart-web",
        "heal.dev/target": "deployment/shop/web",
        "heal.dev/holders": "[]",
    });
    for (k, v) in annotations.as_object().unwrap() {
        ann[k] = v.clone();
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": heal::heald::guards::lease::lease_name("restart-web", &target),
            "namespace": NS,
            "annotations": ann,
        },
        "spec": {},
    })
}

fn ago(minutes: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes)).to_string()
}

#[tokio::test]
async fn a_target_remediated_within_the_cooldown_is_cooldown() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    server.insert(guard_lease(json!({"heal.dev/last-success-at": ago(5)})));
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let d = h
        .decide(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "cooldown", "{d:?}");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("cooldown 30m"),
        "{d:?}"
    );
    assert!(
        server
            .list("argoproj.io/v1alpha1", "workflows", NS)
            .is_empty()
    );
}

#[tokio::test]
async fn a_target_that_failed_too_often_is_circuit_open() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    server.insert(guard_lease(
        json!({"heal.dev/failures": format!("{},{}", ago(50), ago(10))}),
    ));
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let d = h
        .decide(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "circuit-open", "{d:?}");
    assert!(d[0]["reason"].as_str().unwrap().contains("escalate"));
    assert!(
        server
            .list("argoproj.io/v1alpha1", "workflows", NS)
            .is_empty()
    );
}

#[tokio::test]
async fn submissions_past_the_rate_limit_are_rate_limited() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(
        &server,
        &f,
        &["--submit-burst", "2", "--submit-rate", "0.001"],
    )
    .await;
    let d = h
        .decide(&webhook(&[web_down("a", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "submitted");
    let d = h
        .decide(&webhook(&[web_down("b", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "submitted");
    let d = h
        .decide(&webhook(&[web_down("c", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "rate-limited", "{d:?}");
    assert!(d[0]["reason"].as_str().unwrap().contains("global"));
    assert_eq!(
        server.list("argoproj.io/v1alpha1", "workflows", NS).len(),
        2
    );
}

/// 20 new alerts at once, half to each of two replicas: the submission limit holds across
/// both (kept in the cluster), so exactly `burst` runs are created and the rest answered
/// `rate-limited`.
async fn two_replicas_share_the_limit(flags: &[&str], scope: &str) {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let mut a_flags = flags.to_vec();
    a_flags.extend(["--instance", "heald-a"]);
    let mut b_flags = flags.to_vec();
    b_flags.extend(["--instance", "heald-b"]);
    let a = Heald::start(&server, &f, &a_flags).await;
    let b = Heald::start(&server, &f, &b_flags).await;
    let alerts: Vec<Value> = (0..20)
        .map(|i| web_down(&format!("web-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let (to_a, to_b) = alerts.split_at(10);
    let (hook_a, hook_b) = (webhook(to_a), webhook(to_b));
    let (da, db) = tokio::join!(a.decide(&hook_a), b.decide(&hook_b));
    let all: Vec<&Value> = da.iter().chain(db.iter()).collect();
    assert_eq!(all.len(), 20);
    let submitted = all.iter().filter(|d| decision(d) == "submitted").count();
    let limited: Vec<&&Value> = all
        .iter()
        .filter(|d| decision(d) == "rate-limited")
        .collect();
    assert_eq!(submitted, 5, "{all:#?}");
    assert_eq!(limited.len(), 15, "{all:#?}");
    for d in limited {
        assert!(d["reason"].as_str().unwrap().contains(scope), "{d}");
    }
    assert_eq!(
        server.list("argoproj.io/v1alpha1", "workflows", NS).len(),
        5,
        "{}",
        server.log_text()
    );
    // The buckets are Leases in heald's namespace; every change was a replace under the
    // version read (or a create), so no take was lost to a race.
    let buckets: Vec<String> = server
        .names("coordination.k8s.io/v1", "leases", NS)
        .into_iter()
        .filter(|n| n.starts_with("heald-rate-"))
        .collect();
    assert_eq!(buckets, ["heald-rate-global", "heald-rate-ns-shop"]);
    for w in server.requests_to("PUT", "/leases/heald-rate-") {
        assert!(w.body.as_ref().unwrap()["metadata"]["resourceVersion"].is_string());
    }
}

#[tokio::test]
async fn the_global_submission_limit_holds_across_two_replicas() {
    two_replicas_share_the_limit(
        &[
            "--submit-burst",
            "5",
            "--submit-rate",
            "0.001",
            "--namespace-submit-burst",
            "100",
        ],
        "global",
    )
    .await;
}

#[tokio::test]
async fn the_namespace_submission_limit_holds_across_two_replicas() {
    two_replicas_share_the_limit(
        &[
            "--namespace-submit-burst",
            "5",
            "--namespace-submit-rate",
            "0.001",
        ],
        "namespace \"shop\"",
    )
    .await;
}

#[tokio::test]
async fn an_empty_bucket_refuses_without_any_request() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(
        &server,
        &f,
        &["--submit-burst", "1", "--submit-rate", "0.001"],
    )
    .await;
    let d = h
        .decide(&webhook(&[web_down("a", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "submitted");
    server.clear_requests();
    let many: Vec<Value> = (0..50)
        .map(|i| web_down(&format!("b-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let d = h.decide(&webhook(&many)).await;
    assert!(d.iter().all(|d| decision(d) == "rate-limited"), "{d:?}");
    assert!(
        server.resource_requests().is_empty(),
        "{}",
        server.log_text()
    );
}

#[tokio::test]
async fn in_dry_run_the_run_is_rendered_but_nothing_is_created() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(&server, &f, &["--dry-run"]).await;
    let d = h
        .decide(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(decision(&d[0]), "dry-run", "{d:?}");
    assert!(d[0]["run"].is_string());
    assert!(
        server
            .list("argoproj.io/v1alpha1", "workflows", NS)
            .is_empty()
    );
    assert!(
        server
            .list("coordination.k8s.io/v1", "leases", NS)
            .is_empty()
    );
}

#[tokio::test]
async fn an_alert_without_the_labels_the_target_needs_is_an_error_decision() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let d = h
        .decide(&webhook(&[alert(
            "WebDown",
            &[("namespace", "shop")],
            "2026-08-20T10:00:00Z",
        )]))
        .await;
    assert_eq!(decision(&d[0]), "error");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("deployment"),
        "{d:?}"
    );
}

#[tokio::test]
async fn every_alert_of_a_group_gets_its_own_decision_in_order() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    server.register_tekton_pipelineruns();
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let d = h
        .decide(&webhook(&[
            web_down("web", "2026-08-20T10:00:00Z"),
            alert("Nothing", &[], "2026-08-20T10:00:00Z"),
            alert(
                "ApiSlow",
                &[("namespace", "shop"), ("deployment", "api")],
                "2026-08-20T10:00:00Z",
            ),
        ]))
        .await;
    let got: Vec<(&str, &str)> = d
        .iter()
        .map(|d| (d["alertname"].as_str().unwrap(), decision(d)))
        .collect();
    assert_eq!(
        got,
        [
            ("WebDown", "submitted"),
            ("Nothing", "no-match"),
            ("ApiSlow", "submitted")
        ]
    );
    assert_eq!(d[2]["engine"], "tekton");
}

// ----- remediations, reports, admin -----

#[tokio::test]
async fn remediations_lists_recent_decisions_newest_first_with_a_limit() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    for name in ["First", "Second", "Third"] {
        h.decide(&webhook(&[alert(name, &[], "2026-08-20T10:00:00Z")]))
            .await;
    }
    let (status, _, v) = call(
        &h.app,
        "GET",
        "/v1/remediations?limit=2",
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alertname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Third", "Second"]);
    assert_eq!(v["items"][0]["result"], "no-match");
    let (status, _, _) = call(
        &h.app,
        "GET",
        "/v1/remediations?limit=lots",
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_report_for_a_run_heald_did_not_create_is_a_404_and_a_bad_one_a_400() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let report = json!({
        "engine": "argo", "runName": "heal-restart-web-0000000000", "namespace": NS,
        "status": "Succeeded", "outcome": "succeeded", "correlationId": "x",
    });
    let (status, _, v) = call(
        &h.app,
        "POST",
        "/v1/reports",
        Some(TOKEN),
        Some("application/json"),
        report.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, _, v) = call(
        &h.app,
        "POST",
        "/v1/reports",
        Some(TOKEN),
        Some("application/json"),
        br#"{"engine": "argo"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("runName"), "{v}");
    let (status, _, _) = call(
        &h.app,
        "POST",
        "/v1/reports",
        None,
        Some("application/json"),
        report.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn readiness_turns_false_when_shutdown_starts_and_intake_stops() {
    let f = files();
    let h = Heald::offline(&f, &[]);
    let admin = heal::heald::admin_router(Arc::clone(&h.state));
    let (s, _, _) = call(&admin, "GET", "/healthz", None, None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(&admin, "GET", "/readyz", None, None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    h.state.begin_shutdown();
    let (s, _, _) = call(&admin, "GET", "/readyz", None, None, Vec::new()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _, _) = call(&admin, "GET", "/healthz", None, None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK, "still alive while draining");
    let (s, v) = h
        .alerts(&webhook(&[alert("X", &[], "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
}

#[tokio::test]
async fn metrics_count_decisions_by_decision_engine_and_policy() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = files();
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    h.decide(&webhook(&[a])).await;
    h.decide(&webhook(&[alert("X", &[], "2026-08-20T10:00:00Z")]))
        .await;
    let admin = heal::heald::admin_router(Arc::clone(&h.state));
    let (s, headers, v) = call(&admin, "GET", "/metrics", None, None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = v.as_str().unwrap();
    for line in [
        r#"heald_decisions_total{decision="submitted",engine="argo",policy="restart-web"} 1"#,
        r#"heald_decisions_total{decision="duplicate",engine="argo",policy="restart-web"} 1"#,
        r#"heald_decisions_total{decision="no-match",engine="",policy=""} 1"#,
        r#"heald_http_requests_total{route="/v1/alerts",code="200"} 3"#,
        "heald_submit_duration_seconds_count{engine=\"argo\"} 1",
        "heald_reload_failures_total 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
