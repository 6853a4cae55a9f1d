//! Approval gates against the test Kubernetes API server, per engine: a run that waits
//! (Argo's suspend step, Tekton's pending PipelineRun, the local run's gate), the dry-run
//! plan the notifiers get, approving and rejecting through heald's endpoints (the exact
//! writes), timeouts applying `onTimeout`, and a rejection that ends `rejected`, escalates,
//! leaves the alert firing and does not count towards the circuit.

use std::time::{Duration, Instant};

use crate::heald_support::*;
use axum::http::StatusCode;
use heal::heald::tracking;
use heal_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");
const PR: (&str, &str) = ("tekton.dev/v1", "pipelineruns");
const CM: (&str, &str) = ("v1", "configmaps");
const WEB: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
const APPROVAL_TOKEN: &str = "approval-test-token-0123456789";
const REPORT_URL: &str = "http://heald.test:8080/v1/reports";

fn server(crds: bool) -> ApiServer {
    let s = ApiServer::start();
    if crds {
        s.register_argo_workflows();
        s.register_tekton_pipelineruns();
    }
    s.with_state(|st| st.ensure_namespace(NS));
    s.seed_deployment("shop", "web", 2, &[]);
    s
}

/// `gated-web`: answers `WebDown` on `engine` with one changing step (a merge patch that
/// marks the Deployment), behind an approval gate of `timeout` with `on_timeout`.
fn gated(engine: &str, timeout: &str, on_timeout: &str, notifier: &str) -> String {
    format!(
        r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: gated-web
spec:
  match:
    alertname: WebDown
  target:
    kind: deployment
    namespace: "{{{{ labels.namespace }}}}"
    name: "{{{{ labels.deployment }}}}"
  engine: {engine}
  timeout: 10m
  approval: {{timeout: {timeout}, onTimeout: {on_timeout}}}
  guards:
    failureBudget: {{failures: 1, window: 1h}}
  steps:
    - name: mark
      action: patch
      type: merge
      patch: {{metadata: {{annotations: {{heal.dev/marked: "yes"}}}}}}
  onSuccess: {{silence: 1h}}
  onFailure: {{notify: [oncall]}}
---
apiVersion: heal.dev/v1alpha1
kind: Notifier
metadata:
  name: oncall
spec:
  type: webhook
  url: {notifier}
"#
    )
}

struct Setup {
    server: ApiServer,
    am: Receiver,
    h: Heald,
    _files: Files,
    run: String,
}

/// heald with the approval token and Alertmanager, and one `WebDown` alert submitted and
/// its approval request sent.
async fn submitted(engine: &str, timeout: &str, on_timeout: &str) -> Setup {
    let server = server(engine != "local");
    let am = Receiver::start().await;
    let files = Files::new(&gated(
        engine,
        timeout,
        on_timeout,
        &format!("{}/notify", am.url),
    ));
    let token_file = files.path().join("approval-token");
    std::fs::write(&token_file, APPROVAL_TOKEN).unwrap();
    let h = Heald::start(
        &server,
        &files,
        &[
            "--alertmanager-url",
            &am.url,
            "--approval-token-file",
            token_file.to_str().unwrap(),
            "--report-url",
            REPORT_URL,
            "--track-interval",
            "100ms",
        ],
    )
    .await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    // The dry runs and the request go out in the background: wait for them.
    eventually(&server, "the approval request", || {
        (am.bodies("/notify").len() == 1).then_some(())
    })
    .await;
    Setup {
        run: run_name("gated-web", &a),
        server,
        am,
        h,
        _files: files,
    }
}

async fn eventually<T>(server: &ApiServer, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; requests:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POST to heald's approve or reject endpoint of the run.
async fn decide(
    s: &Setup,
    what: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, v) = call(
        &s.h.app,
        "POST",
        &format!("/v1/runs/{NS}/{}/{what}", s.run),
        token,
        body.as_ref().map(|_| "application/json"),
        body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    )
    .await;
    (status, v)
}

/// Argo has started the workflow and reached the gate: its suspend node runs.
fn at_the_gate(s: &Setup) {
    let run = s.run.clone();
    s.server.modify(WF.0, WF.1, NS, &run, |o| {
        o["status"] = json!({"phase": "Running", "startedAt": "2026-08-20T10:00:01Z", "nodes": {
            run.clone(): {"id": run.clone(), "name": run.clone(), "displayName": run.clone(),
                "type": "DAG", "templateName": "main", "phase": "Running"},
            format!("{run}-1618224532"): {"id": format!("{run}-1618224532"),
                "name": format!("{run}.heal-approval"), "displayName": "heal-approval",
                "type": "Suspend", "templateName": "heal-approval", "phase": "Running",
                "boundaryID": run.clone(), "startedAt": "2026-08-20T10:00:01Z"}}});
    });
}

fn annotations(obj: &Value) -> &Value {
    &obj["metadata"]["annotations"]
}

/// The writes (not reads) the server saw, as `(METHOD, path)`.
fn writes(server: &ApiServer) -> Vec<(String, String)> {
    server
        .resource_requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

/// Every write to the target was a server-side dry run.
fn target_untouched(server: &ApiServer) {
    for r in server.requests_matching("PATCH", WEB) {
        assert_eq!(
            r.param("dryRun"),
            Some("All"),
            "the target was changed before approval:\n{}",
            server.log_text()
        );
    }
    let web = server.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert!(
        web["metadata"]["annotations"]["heal.dev/marked"].is_null(),
        "{web}"
    );
}

fn lease_failures(server: &ApiServer) -> Value {
    let lease = target_leases(server).pop().expect("the target's Lease");
    lease["metadata"]["annotations"]["heal.dev/failures"].clone()
}

// ----- Argo -----

#[tokio::test]
async fn an_argo_run_waits_at_its_suspend_step_and_the_notifiers_get_the_dry_run_plan() {
    heal_testkit::require_reference!();
    let s = submitted("argo", "15m", "reject").await;
    let create = s.server.assert_requested(
        "POST",
        &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows"),
    );
    assert_eq!(create.status, 201, "the strict schema takes it");
    let wf = create.body.unwrap();
    let templates = wf["spec"]["templates"].as_array().unwrap();
    assert!(
        templates.contains(&json!({"name": "heal-approval", "suspend": {}})),
        "{templates:?}"
    );
    assert_eq!(
        templates[0]["dag"]["tasks"],
        json!([
            {"name": "heal-approval", "template": "heal-approval"},
            {"name": "mark", "template": "step-mark", "depends": "heal-approval.Succeeded"},
        ])
    );
    assert_eq!(annotations(&wf)["heal.dev/approval"], "waiting");
    assert_eq!(annotations(&wf)["heal.dev/approval-timeout-seconds"], "900");
    assert_eq!(annotations(&wf)["heal.dev/approval-on-timeout"], "reject");
    assert_eq!(
        annotations(&wf)["heal.dev/deadline-seconds"],
        "1500",
        "the run's deadline covers the wait"
    );

    let asked = eventually(&s.server, "the approval request", || {
        s.am.bodies("/notify").pop()
    })
    .await;
    assert_eq!(asked["kind"], "RemediationAwaitingApproval");
    assert_eq!(asked["run"], json!(s.run));
    assert_eq!(asked["target"], "shop/deployment/web");
    assert_eq!(asked["labels"]["deployment"], "web");
    assert_eq!(asked["onTimeout"], "reject");
    let step = &asked["steps"][0];
    assert_eq!(step["name"], "mark");
    assert_eq!(step["waitsForApproval"], true);
    assert_eq!(step["dryRun"], "dry-run", "{step}");
    assert!(
        step["command"]
            .as_str()
            .unwrap()
            .starts_with("patch deployment/web -n shop --type merge"),
        "{step}"
    );
    assert_eq!(
        asked["decide"],
        json!({
            "approveCommand": format!("heal approve {} -n {NS}", s.run),
            "rejectCommand": format!("heal reject {} -n {NS} --reason 'WHY'", s.run),
            "approveUrl": format!("http://heald.test:8080/v1/runs/{NS}/{}/approve", s.run),
            "rejectUrl": format!("http://heald.test:8080/v1/runs/{NS}/{}/reject", s.run),
        })
    );
    let created: jiff::Timestamp =
        s.server.get(WF.0, WF.1, NS, &s.run).unwrap()["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let deadline: jiff::Timestamp = asked["deadline"].as_str().unwrap().parse().unwrap();
    assert_eq!(deadline, created + jiff::SignedDuration::from_mins(15));
    // The dry run went to the API server with dryRun=All; nothing changed.
    assert_eq!(s.server.requests_matching("PATCH", WEB).len(), 1);
    target_untouched(&s.server);
    assert_eq!(s.am.bodies("/notify").len(), 1, "asked once");
}

#[tokio::test]
async fn approving_an_argo_run_through_heald_resumes_its_suspend_node_as_argo_resume_does() {
    heal_testkit::require_reference!();
    let s = submitted("argo", "15m", "reject").await;
    at_the_gate(&s);
    let rv = s.server.get(WF.0, WF.1, NS, &s.run).unwrap()["metadata"]["resourceVersion"].clone();
    s.server.clear_requests();
    let (status, answer) = decide(
        &s,
        "approve",
        Some(APPROVAL_TOKEN),
        Some(json!({"by": "alice@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "approved");
    assert_eq!(answer["engine"], "argo");
    assert_eq!(answer["by"], "alice@example.com");
    let path = format!(
        "/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{}",
        s.run
    );
    s.server.assert_requests(&[
        ("GET", &path),
        ("PATCH", &path),
        ("POST", &format!("/api/v1/namespaces/{NS}/events")),
    ]);
    let patch = s.server.assert_requested("PATCH", &path);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.status, 200, "{}", s.server.log_text());
    let body = patch.body.unwrap();
    let at = answer["at"].as_str().unwrap();
    assert_eq!(
        body,
        json!({
            "metadata": {"resourceVersion": rv, "annotations": {
                "heal.dev/approval": "approved",
                "heal.dev/approved-by": "alice@example.com",
                "heal.dev/approved-at": at}},
            "status": {"nodes": {format!("{}-1618224532", s.run): {
                "phase": "Succeeded", "finishedAt": at,
                "message": "Resumed by: alice@example.com"}}},
        })
    );
    let wf = s.server.get(WF.0, WF.1, NS, &s.run).unwrap();
    assert_eq!(annotations(&wf)["heal.dev/approval"], "approved");
    let node = &wf["status"]["nodes"][format!("{}-1618224532", s.run)];
    assert_eq!(node["phase"], "Succeeded");
    assert_eq!(node["type"], "Suspend", "the rest of the node is kept");
    let event = s
        .server
        .assert_requested("POST", &format!("/api/v1/namespaces/{NS}/events"))
        .body
        .unwrap();
    assert_eq!(event["reason"], "RemediationApproved");
    assert_eq!(event["involvedObject"]["kind"], "Workflow");
    assert_eq!(event["involvedObject"]["name"], json!(s.run));
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("alice@example.com")
    );

    // Decided once: a second approval is refused and writes nothing.
    s.server.clear_requests();
    let (again, v) = decide(&s, "approve", Some(APPROVAL_TOKEN), None).await;
    assert_eq!(again, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("approved already"),
        "{v}"
    );
    assert_eq!(writes(&s.server), Vec::<(String, String)>::new());
}

#[tokio::test]
async fn rejecting_an_argo_run_stops_it_and_it_ends_rejected_escalated_and_not_a_failure() {
    heal_testkit::require_reference!();
    let s = submitted("argo", "15m", "reject").await;
    eventually(&s.server, "the approval request", || {
        (s.am.bodies("/notify").len() == 1).then_some(())
    })
    .await;
    at_the_gate(&s);
    s.server.clear_requests();
    let (status, answer) = decide(
        &s,
        "reject",
        Some(APPROVAL_TOKEN),
        Some(json!({"reason": "failing over by hand", "by": "bob"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "rejected");
    let path = format!(
        "/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{}",
        s.run
    );
    let body = s.server.assert_requested("PATCH", &path).body.unwrap();
    assert_eq!(body["spec"], json!({"shutdown": "Stop"}));
    assert_eq!(
        body.get("status"),
        None,
        "the node is left to Argo's shutdown"
    );
    let ann = &body["metadata"]["annotations"];
    assert_eq!(ann["heal.dev/approval"], "rejected");
    assert_eq!(ann["heal.dev/rejected-by"], "bob");
    assert_eq!(ann["heal.dev/rejected-reason"], "failing over by hand");
    assert_eq!(ann["heal.dev/rejected-at"], answer["at"]);

    // Argo stops the workflow: the suspend node fails, the exit handler runs.
    s.server.modify(WF.0, WF.1, NS, &s.run, |o| {
        o["status"]["phase"] = json!("Failed");
        o["status"]["message"] = json!("Stopped with strategy 'Stop'");
    });
    assert_eq!(tracking::pass(&s.h.state).await.unwrap().finished, 1);
    let wf = s.server.get(WF.0, WF.1, NS, &s.run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/outcome"], "rejected");
    let told = s.am.bodies("/notify");
    assert_eq!(told.len(), 2, "the request, then the rejection: {told:?}");
    assert_eq!(told[1]["kind"], "RemediationRejected");
    assert_eq!(told[1]["outcome"], "rejected");
    assert_eq!(told[1]["message"], "rejected by bob: failing over by hand");
    assert_eq!(
        s.am.bodies("/api/v2/silences").len(),
        1,
        "only the in-progress silence: no success silence"
    );
    assert_eq!(
        s.am.bodies("/api/v2/silence/silence-1").len(),
        1,
        "the in-progress silence is expired, so the alert fires again"
    );
    assert!(
        lease_failures(&s.server).is_null(),
        "a rejection does not count towards the circuit"
    );
    let m = s.h.state.metrics.encode();
    assert!(
        m.contains(
            r#"heald_outcomes_total{outcome="rejected",engine="argo",policy="gated-web"} 1"#
        ),
        "{m}"
    );
    target_untouched(&s.server);
}

#[tokio::test]
async fn an_argo_run_nobody_approves_is_rejected_when_its_approval_times_out() {
    heal_testkit::require_reference!();
    // Long enough that the first pass comes before the deadline on a loaded CI machine (with
    // 1 s it once did not); timestamps are whole seconds, hence the extra second below.
    let s = submitted("argo", "4s", "reject").await;
    at_the_gate(&s);
    assert_eq!(tracking::pass(&s.h.state).await.unwrap().finished, 0);
    let path = format!(
        "/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{}",
        s.run
    );
    assert!(
        s.server.requests_matching("PATCH", &path).is_empty(),
        "not yet"
    );
    tokio::time::sleep(Duration::from_millis(5100)).await;
    tracking::pass(&s.h.state).await.unwrap();
    let patches = s.server.requests_matching("PATCH", &path);
    assert_eq!(patches.len(), 1, "{}", s.server.log_text());
    let body = patches[0].body.clone().unwrap();
    assert_eq!(body["spec"], json!({"shutdown": "Stop"}));
    assert_eq!(
        body["metadata"]["annotations"]["heal.dev/rejected-by"],
        "timeout"
    );
    s.server.modify(WF.0, WF.1, NS, &s.run, |o| {
        o["status"]["phase"] = json!("Failed");
        o["status"]["message"] = json!("Stopped with strategy 'Stop'");
    });
    assert_eq!(tracking::pass(&s.h.state).await.unwrap().finished, 1);
    let wf = s.server.get(WF.0, WF.1, NS, &s.run).unwrap();
    assert_eq!(wf["metadata"]["labels"]["heal.dev/outcome"], "rejected");
    let rejected = eventually(&s.server, "the rejection notice", || {
        s.am.bodies("/notify")
            .into_iter()
            .find(|b| b["kind"] == "RemediationRejected")
    })
    .await;
    assert!(
        rejected["message"].as_str().unwrap().contains("timed out"),
        "{rejected}"
    );
    assert!(lease_failures(&s.server).is_null());
}

#[tokio::test]
async fn the_approval_endpoints_refuse_without_their_token_and_unknown_or_decided_runs_and_write_nothing()
 {
    heal_testkit::require_reference!();
    let s = submitted("argo", "15m", "reject").await;
    at_the_gate(&s);
    s.server.clear_requests();
    let (no_token, _) = decide(&s, "approve", None, None).await;
    assert_eq!(no_token, StatusCode::UNAUTHORIZED);
    let (webhook_token, _) = decide(&s, "reject", Some(TOKEN), None).await;
    assert_eq!(
        webhook_token,
        StatusCode::UNAUTHORIZED,
        "the webhook's token does not approve"
    );
    let (unknown, v) = {
        let (st, _, v) = call(
            &s.h.app,
            "POST",
            &format!("/v1/runs/{NS}/heal-nothing-like-it/approve"),
            Some(APPROVAL_TOKEN),
            None,
            Vec::new(),
        )
        .await;
        (st, v)
    };
    assert_eq!(unknown, StatusCode::NOT_FOUND, "{v}");
    let (bad_name, _, v) = call(
        &s.h.app,
        "POST",
        &format!("/v1/runs/{NS}/Not_A_Name/approve"),
        Some(APPROVAL_TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(bad_name, StatusCode::BAD_REQUEST, "{v}");
    let (bad_body, _, v) = call(
        &s.h.app,
        "POST",
        &format!("/v1/runs/{NS}/{}/reject", s.run),
        Some(APPROVAL_TOKEN),
        Some("application/json"),
        b"{\"reason\": 3}".to_vec(),
    )
    .await;
    assert_eq!(bad_body, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with("invalid body"),
        "{v}"
    );
    let (reasoned, v) = decide(
        &s,
        "approve",
        Some(APPROVAL_TOKEN),
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(reasoned, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        writes(&s.server),
        Vec::<(String, String)>::new(),
        "a refusal writes nothing"
    );
    let wf = s.server.get(WF.0, WF.1, NS, &s.run).unwrap();
    assert_eq!(annotations(&wf)["heal.dev/approval"], "waiting");

    // A heald without an approval token refuses everyone.
    let f = Files::new(&gated("argo", "15m", "reject", "http://127.0.0.1:9/n"));
    let other = Heald::start(&s.server, &f, &[]).await;
    let (st, _, _) = call(
        &other.app,
        "POST",
        &format!("/v1/runs/{NS}/{}/approve", s.run),
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(writes(&s.server), Vec::<(String, String)>::new());
}

// ----- Tekton -----

#[tokio::test]
async fn a_tekton_run_with_an_approval_gate_is_created_pending_and_approving_clears_its_status() {
    heal_testkit::require_reference!();
    let s = submitted("tekton", "15m", "reject").await;
    let collection = format!("/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns");
    let create = s.server.assert_requested("POST", &collection);
    assert_eq!(create.status, 201);
    let pr = create.body.unwrap();
    assert_eq!(pr["spec"]["status"], "PipelineRunPending");
    assert_eq!(annotations(&pr)["heal.dev/approval"], "waiting");
    let rv = s.server.get(PR.0, PR.1, NS, &s.run).unwrap()["metadata"]["resourceVersion"].clone();
    s.server.clear_requests();
    let (status, answer) = decide(&s, "approve", Some(APPROVAL_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["by"], "heald", "nobody named: heald decided");
    let path = format!("{collection}/{}", s.run);
    s.server.assert_requests(&[
        (
            "GET",
            &format!(
                "/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{}",
                s.run
            ),
        ),
        ("GET", &path),
        ("PATCH", &path),
        ("POST", &format!("/api/v1/namespaces/{NS}/events")),
    ]);
    let body = s.server.assert_requested("PATCH", &path).body.unwrap();
    assert_eq!(
        body,
        json!({"metadata": {"resourceVersion": rv, "annotations": {
                "heal.dev/approval": "approved", "heal.dev/approved-by": "heald",
                "heal.dev/approved-at": answer["at"]}},
               "spec": {"status": null}})
    );
    let pr = s.server.get(PR.0, PR.1, NS, &s.run).unwrap();
    assert!(pr["spec"].get("status").is_none(), "Tekton starts it: {pr}");
}

#[tokio::test]
async fn rejecting_a_tekton_run_cancels_it_and_its_end_is_rejected() {
    heal_testkit::require_reference!();
    let s = submitted("tekton", "15m", "reject").await;
    let (status, answer) = decide(
        &s,
        "reject",
        Some(APPROVAL_TOKEN),
        Some(json!({"reason": "change freeze"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let pr = s.server.get(PR.0, PR.1, NS, &s.run).unwrap();
    assert_eq!(pr["spec"]["status"], "Cancelled");
    assert_eq!(
        annotations(&pr)["heal.dev/rejected-reason"],
        "change freeze"
    );
    s.server.modify(PR.0, PR.1, NS, &s.run, |o| {
        o["status"] = json!({"conditions": [{"type": "Succeeded", "status": "False",
            "reason": "Cancelled", "message": "PipelineRun was cancelled"}]});
    });
    assert_eq!(tracking::pass(&s.h.state).await.unwrap().finished, 1);
    let pr = s.server.get(PR.0, PR.1, NS, &s.run).unwrap();
    assert_eq!(pr["metadata"]["labels"]["heal.dev/outcome"], "rejected");
    let rejected = eventually(&s.server, "the rejection notice", || {
        s.am.bodies("/notify")
            .into_iter()
            .find(|b| b["kind"] == "RemediationRejected")
    })
    .await;
    assert_eq!(rejected["message"], "rejected by heald: change freeze");
    assert!(lease_failures(&s.server).is_null());
}

#[tokio::test]
async fn a_tekton_run_nobody_decides_on_is_approved_at_its_timeout_when_the_policy_says_so() {
    heal_testkit::require_reference!();
    let s = submitted("tekton", "1s", "approve").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tracking::pass(&s.h.state).await.unwrap();
    let path = format!("/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns/{}", s.run);
    let patches = s.server.requests_matching("PATCH", &path);
    assert_eq!(patches.len(), 1, "{}", s.server.log_text());
    let body = patches[0].body.clone().unwrap();
    assert_eq!(body["spec"], json!({"status": null}));
    assert_eq!(
        body["metadata"]["annotations"]["heal.dev/approved-by"],
        "timeout"
    );
    let pr = s.server.get(PR.0, PR.1, NS, &s.run).unwrap();
    assert_eq!(annotations(&pr)["heal.dev/approval"], "approved");
    // A later pass decides nothing more.
    tracking::pass(&s.h.state).await.unwrap();
    assert_eq!(s.server.requests_matching("PATCH", &path).len(), 1);
}

// ----- local -----

fn cm_annotation(server: &ApiServer, run: &str, key: &str) -> Value {
    server
        .get(CM.0, CM.1, NS, run)
        .map_or(Value::Null, |cm| cm["metadata"]["annotations"][key].clone())
}

fn local_outcome(server: &ApiServer, run: &str) -> Option<String> {
    let cm = server.get(CM.0, CM.1, NS, run)?;
    cm["metadata"]["labels"]["heal.dev/outcome"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_waits_at_its_gate_and_runs_its_step_once_approved() {
    let s = submitted("local", "15m", "reject").await;
    let asked = eventually(&s.server, "the approval request", || {
        s.am.bodies("/notify").pop()
    })
    .await;
    assert_eq!(asked["engine"], "local");
    assert_eq!(asked["steps"][0]["dryRun"], "dry-run");
    // It waits: a few looks at its ConfigMap, no step.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        cm_annotation(&s.server, &s.run, "heal.dev/approval"),
        "waiting"
    );
    target_untouched(&s.server);
    assert!(s.server.get(CM.0, CM.1, NS, &s.run).unwrap()["data"]["step.mark"].is_null());
    let (status, answer) = decide(
        &s,
        "approve",
        Some(APPROVAL_TOKEN),
        Some(json!({"by": "carol"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["engine"], "local");
    let outcome = eventually(&s.server, "the outcome", || {
        local_outcome(&s.server, &s.run)
    })
    .await;
    assert_eq!(outcome, "succeeded");
    let web = s
        .server
        .get("apps/v1", "deployments", "shop", "web")
        .unwrap();
    assert_eq!(web["metadata"]["annotations"]["heal.dev/marked"], "yes");
    assert_eq!(
        cm_annotation(&s.server, &s.run, "heal.dev/approved-by"),
        "carol"
    );
    let event = s
        .server
        .requests_matching("POST", &format!("/api/v1/namespaces/{NS}/events"))
        .into_iter()
        .filter_map(|r| r.body)
        .find(|e| e["reason"] == "RemediationApproved")
        .expect("an Event for the approval");
    assert_eq!(event["involvedObject"]["kind"], "ConfigMap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_local_run_ends_rejected_without_running_its_step() {
    let s = submitted("local", "15m", "reject").await;
    eventually(&s.server, "the approval request", || {
        (s.am.bodies("/notify").len() == 1).then_some(())
    })
    .await;
    let (status, answer) = decide(
        &s,
        "reject",
        Some(APPROVAL_TOKEN),
        Some(json!({"reason": "not during the sale", "by": "dave"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let outcome = eventually(&s.server, "the outcome", || {
        local_outcome(&s.server, &s.run)
    })
    .await;
    assert_eq!(outcome, "rejected");
    target_untouched(&s.server);
    let told = eventually(&s.server, "the rejection notice", || {
        s.am.bodies("/notify")
            .into_iter()
            .find(|b| b["kind"] == "RemediationRejected")
    })
    .await;
    assert_eq!(told["message"], "rejected by dave: not during the sale");
    // The expiry is owed by the run and delivered on its own, so it may follow the notice.
    eventually(&s.server, "the in-progress silence expired", || {
        (s.am.bodies("/api/v2/silence/silence-1").len() == 1).then_some(())
    })
    .await;
    assert!(lease_failures(&s.server).is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_nobody_approves_is_rejected_at_its_timeout() {
    let s = submitted("local", "1s", "reject").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tracking::pass(&s.h.state).await.unwrap();
    assert_eq!(
        cm_annotation(&s.server, &s.run, "heal.dev/rejected-by"),
        "timeout"
    );
    let outcome = eventually(&s.server, "the outcome", || {
        local_outcome(&s.server, &s.run)
    })
    .await;
    assert_eq!(outcome, "rejected");
    target_untouched(&s.server);
    let told = eventually(&s.server, "the rejection notice", || {
        s.am.bodies("/notify")
            .into_iter()
            .find(|b| b["kind"] == "RemediationRejected")
    })
    .await;
    assert!(
        told["message"].as_str().unwrap().contains("timed out"),
        "{told}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_local_run_taken_over_from_a_stopped_replica_waits_again_and_runs_once_approved()
{
    let server = server(false);
    let am = Receiver::start().await;
    // A relative scale could apply twice, so a resumed run never repeats one that may
    // have started.
    let policy = gated("local", "15m", "reject", &format!("{}/notify", am.url)).replace(
        "      action: patch\n      type: merge\n      patch: {metadata: {annotations: {heal.dev/marked: \"yes\"}}}\n",
        "      action: scale\n      replicas: \"+1\"\n",
    );
    assert!(policy.contains("replicas"), "{policy}");
    let files = Files::new(&policy);
    let token_file = files.path().join("approval-token");
    std::fs::write(&token_file, APPROVAL_TOKEN).unwrap();
    let h = Heald::start(
        &server,
        &files,
        &[
            "--approval-token-file",
            token_file.to_str().unwrap(),
            "--track-interval",
            "100ms",
        ],
    )
    .await;
    // A replica that stopped left the run waiting, its heartbeat a minute old.
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let alert = heal::alert::parse_alerts(webhook(std::slice::from_ref(&a)).to_string().as_bytes())
        .unwrap()
        .remove(0);
    let loaded = h.state.policies.current();
    let plan = heal::policy::plan(
        loaded.set.policy("gated-web").unwrap(),
        &alert,
        &h.state.plan_defaults,
    )
    .unwrap();
    let doc = loaded
        .renderer
        .render(&plan, heal::render::Engine::Local)
        .unwrap()
        .value;
    let stale = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1);
    let cm = heal::heald::engines::local_run::config_map(&doc, "heald-gone/boot-1", stale).unwrap();
    server.insert(cm);
    let run = plan.run_name.clone();
    tracking::pass(&h.state).await.unwrap();
    eventually(&server, "the takeover", || {
        (cm_annotation(&server, &run, "heal.dev/holder") != json!("heald-gone/boot-1"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    target_untouched(&server);
    let s = Setup {
        server,
        am,
        h,
        _files: files,
        run,
    };
    let (status, answer) = decide(&s, "approve", Some(APPROVAL_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let outcome = eventually(&s.server, "the outcome", || {
        local_outcome(&s.server, &s.run)
    })
    .await;
    assert_eq!(
        outcome, "succeeded",
        "the step had not started before the takeover, so it is not 'interrupted'"
    );
    let web = s
        .server
        .get("apps/v1", "deployments", "shop", "web")
        .unwrap();
    assert_eq!(web["spec"]["replicas"], 3, "scaled once: {web}");
}
