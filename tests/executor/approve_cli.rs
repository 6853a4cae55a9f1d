//! `heal approve` and `heal reject`, the compiled binary against the test API server: the
//! exact requests that resume an Argo suspend node, start or cancel a pending Tekton
//! PipelineRun and mark a local run, who decided (the kubeconfig user when the server
//! answers no SelfSubjectReview), and refusals that write nothing.

use std::process::Output;

use crate::support::{Env, code, name_of, stdout_json};
use heal::render::Engine;
use heal_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

const NS: &str = "heal-system";
const SSR: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const EVENTS: &str = "/api/v1/namespaces/heal-system/events";

/// A test API server that serves Argo Workflows and Tekton PipelineRuns, with the namespace
/// `NS`.
fn env() -> Env {
    let server = ApiServer::start();
    server.register_argo_workflows();
    server.register_tekton_pipelineruns();
    server.with_state(|s| s.ensure_namespace(NS));
    Env::on(server)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The example approval policy's run for the example alert, rendered for `engine` as heald
/// would create it.
fn rendered(engine: Engine) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<heal::policy::SourceFile> = ["statefulset-approval.yaml", "notifiers.yaml"]
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join("examples/policies").join(f)).unwrap();
            heal::policy::SourceFile::new(f, text)
        })
        .collect();
    let set = heal::policy::PolicySet::parse(&files).unwrap();
    let body =
        std::fs::read(root.join("examples/alerts/statefulset-replicas-mismatch.json")).unwrap();
    let alert = heal::alert::parse_alerts(&body).unwrap().remove(0);
    let plan = heal::policy::plan(
        &set.policies[0],
        &alert,
        &heal::policy::PlanDefaults::default(),
    )
    .unwrap();
    heal::render::render(&plan, engine, &heal::render::RenderOptions::default())
        .unwrap()
        .value
}

/// An Argo run of the example waiting at its suspend node.
fn waiting_workflow(e: &Env) -> (String, String) {
    let run = e.server.insert(rendered(Engine::Argo));
    let name = name_of(&run);
    let node = format!("{name}-2734098715");
    let n = name.clone();
    let id = node.clone();
    e.server
        .modify("argoproj.io/v1alpha1", "workflows", NS, &name, move |o| {
            o["status"] = json!({"phase": "Running", "nodes": {
                n.clone(): {"id": n.clone(), "name": n.clone(), "displayName": n.clone(),
                    "type": "DAG", "phase": "Running"},
                id.clone(): {"id": id.clone(), "name": format!("{n}.heal-approval"),
                    "displayName": "heal-approval", "type": "Suspend",
                    "templateName": "heal-approval", "phase": "Running"}}});
        });
    (name, node)
}

#[test]
fn heal_approve_resumes_an_argo_runs_suspend_node_as_the_kubeconfig_user() {
    heal_testkit::require_reference!();
    let e = env();
    let (run, node) = waiting_workflow(&e);
    let rv = e
        .server
        .get("argoproj.io/v1alpha1", "workflows", NS, &run)
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    e.server.clear_requests();
    let out = e.run(&["approve", &run, "-n", NS, "-o", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = stdout_json(&out);
    assert_eq!(printed["decision"], "approved");
    assert_eq!(printed["engine"], "argo");
    assert_eq!(printed["by"], "test", "the kubeconfig's user");
    let path = format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{run}");
    e.server.assert_requests(&[
        ("GET", &path),
        // The test server serves no SelfSubjectReview (404): the kubeconfig user decides.
        ("POST", SSR),
        ("PATCH", &path),
        ("POST", EVENTS),
    ]);
    let patch = e.server.assert_requested("PATCH", &path);
    assert_eq!(patch.status, 200, "{}", e.server.log_text());
    let at = printed["at"].as_str().unwrap();
    assert_eq!(
        patch.body.unwrap(),
        json!({
            "metadata": {"resourceVersion": rv, "annotations": {
                "heal.dev/approval": "approved", "heal.dev/approved-by": "test",
                "heal.dev/approved-at": at}},
            "status": {"nodes": {node.clone(): {"phase": "Succeeded", "finishedAt": at,
                "message": "Resumed by: test"}}},
        })
    );
    let event = e.server.assert_requested("POST", EVENTS).body.unwrap();
    assert_eq!(event["reason"], "RemediationApproved");
    assert_eq!(event["source"]["component"], "heal");
    assert_eq!(event["involvedObject"]["name"], json!(run));

    // Once decided, a second decision is refused with one line, and only reads are sent.
    e.server.clear_requests();
    let again = e.run(&["reject", &run, "-n", NS, "--reason", "too late"]);
    assert_eq!(code(&again), 1);
    let err = stderr(&again);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("is not waiting for approval: it was approved already"),
        "{err}"
    );
    assert!(
        e.server
            .resource_requests()
            .iter()
            .all(|r| r.method == "GET"),
        "a refusal writes nothing:\n{}",
        e.server.log_text()
    );
}

#[test]
fn heal_reject_cancels_a_pending_tekton_run_and_records_why() {
    heal_testkit::require_reference!();
    let e = env();
    e.server.set_self_subject("oidc:alice@example.com");
    let run = name_of(&e.server.insert(rendered(Engine::Tekton)));
    let out = e.run(&["reject", &run, "-n", NS, "--reason", "failing over by hand"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("rejected: run {NS}/{run} (tekton) as oidc:alice@example.com")
    );
    let pr = e
        .server
        .get("tekton.dev/v1", "pipelineruns", NS, &run)
        .unwrap();
    assert_eq!(pr["spec"]["status"], "Cancelled");
    let ann = &pr["metadata"]["annotations"];
    assert_eq!(ann["heal.dev/approval"], "rejected");
    assert_eq!(
        ann["heal.dev/rejected-by"], "oidc:alice@example.com",
        "the API server's name for the caller"
    );
    let review = e.server.assert_requested("POST", SSR);
    assert_eq!(review.status, 201);
    assert_eq!(ann["heal.dev/rejected-reason"], "failing over by hand");
    assert!(ann["heal.dev/rejected-at"].is_string());
    let event = e.server.assert_requested("POST", EVENTS).body.unwrap();
    assert_eq!(event["reason"], "RemediationRejected");
    assert_eq!(event["involvedObject"]["kind"], "PipelineRun");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .ends_with("failing over by hand"),
        "{event}"
    );
}

#[test]
fn heal_approve_marks_a_local_run_on_its_configmap() {
    // env() serves Argo Workflows and Tekton PipelineRuns from the upstream CRDs.
    heal_testkit::require_reference!();
    let e = env();
    let cm = heal::heald::engines::local_run::config_map(
        &rendered(Engine::Local),
        "heald-0/boot",
        jiff::Timestamp::now(),
    )
    .unwrap();
    let run = name_of(&e.server.insert(cm));
    e.server.clear_requests();
    let out = e.run(&["approve", &run, "-n", NS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cm_path = format!("/api/v1/namespaces/{NS}/configmaps/{run}");
    e.server.assert_requests(&[
        (
            "GET",
            &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows/{run}"),
        ),
        (
            "GET",
            &format!("/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns/{run}"),
        ),
        ("GET", &cm_path),
        ("POST", SSR),
        ("PATCH", &cm_path),
        ("POST", EVENTS),
    ]);
    let body = e.server.assert_requested("PATCH", &cm_path).body.unwrap();
    assert_eq!(body.get("spec"), None);
    assert_eq!(body.get("data"), None, "the executor reads the annotation");
    let cm = e.server.get("v1", "configmaps", NS, &run).unwrap();
    assert_eq!(
        cm["metadata"]["annotations"]["heal.dev/approval"],
        "approved"
    );
    assert_eq!(
        cm["metadata"]["annotations"]["heal.dev/approved-by"],
        "test"
    );
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit_and_writes_nothing() {
    // env() serves Argo Workflows and Tekton PipelineRuns from the upstream CRDs.
    heal_testkit::require_reference!();
    let e = env();
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["approve", "heal-nothing-like-it", "-n", NS],
            1,
            "no heal run heal-nothing-like-it in namespace heal-system",
        ),
        (
            &["reject", "heal-x", "-n", NS, "--reason", "  "],
            2,
            "--reason must not be empty",
        ),
        (&["approve", "Not_A_Name", "-n", NS], 2, "invalid run name"),
        (&["reject", "heal-x", "-n", NS], 2, "--reason"),
    ];
    for (args, want, says) in cases {
        let out = e.run(args);
        let err = stderr(&out);
        assert_eq!(code(&out), want, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A ConfigMap that is not heald's run is not a run.
    e.server
        .insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "plain", "namespace": NS}, "data": {"a": "b"}}));
    let out = e.run(&["approve", "plain", "-n", NS]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        e.server
            .resource_requests()
            .iter()
            .all(|r| r.method == "GET"),
        "refusals write nothing:\n{}",
        e.server.log_text()
    );
}
