//! HTTP-level tests of every heal action and guard: the exact requests a real API server
//! receives, and the outcome and exit code heal reports, including the API's errors.

use std::time::Duration;

use crate::support::{Env, assert_outcome, env};
use heal::outcome::{Exit, Outcome};
use heal_testkit::apiserver::*;
use serde_json::{Value, json};

impl Env {
    fn events(&self, ns: &str) -> Vec<Value> {
        self.server.list("v1", "events", ns)
    }
}

const SCALE: &str = "/apis/apps/v1/namespaces/default/deployments/web/scale";
const WEB: &str = "/apis/apps/v1/namespaces/default/deployments/web";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

// ----- scale -----

#[tokio::test]
async fn scale_patches_the_scale_subresource_without_discovery_and_records_an_event() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let r = e.heal(&["scale", "deploy/web", "--replicas", "3"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(r.0.before["replicas"], 1);
    assert_eq!(r.0.after["replicas"], 3);
    assert_eq!(r.0.target.kind, "Deployment");
    assert_eq!(r.0.target.namespace.as_deref(), Some("default"));
    assert!(r.0.target.uid.is_some());
    e.server.assert_no_discovery();
    // The workload (its replicas, and who else manages it), its autoscalers, then the
    // scale subresource.
    e.server.assert_requests(&[
        ("GET", WEB),
        ("GET", HPAS),
        ("PATCH", SCALE),
        ("POST", "/api/v1/namespaces/default/events"),
    ]);
    let patch = e.server.assert_requested("PATCH", SCALE);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body, Some(json!({"spec": {"replicas": 3}})));
    assert!(patch.query.is_empty(), "{:?}", patch.query);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 3);
    let events = e.events("default");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "HealScaled");
    assert_eq!(events[0]["involvedObject"]["name"], "web");
    assert!(
        events[0]["message"].as_str().unwrap().contains("cid-1"),
        "{}",
        events[0]
    );
    assert_eq!(
        events[0]["metadata"]["annotations"]["heal.dev/correlation-id"],
        "cid-1"
    );
}

#[tokio::test]
async fn scale_to_the_current_count_is_a_noop_without_a_write() {
    let e = env();
    e.server.insert(deployment("default", "web", 3));
    let r = e
        .heal(&["scale", "deployment/web", "--replicas", "3"])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.server.assert_requests(&[("GET", WEB), ("GET", HPAS)]);
}

#[tokio::test]
async fn relative_scale_is_clamped_and_carries_the_resource_version_and_the_correlation_id() {
    let e = env();
    e.server.insert(deployment("default", "web", 4));
    let rv = e.deployment("web")["metadata"]["resourceVersion"].clone();
    let r = e
        .heal(&["scale", "deploy/web", "--replicas", "+3", "--max", "5"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(r.0.after["replicas"], 5);
    // A relative change patches the workload itself: the count, the version it was
    // computed from, and which remediation set it, in one write.
    e.server.assert_no_discovery();
    e.server.assert_requests(&[
        ("GET", WEB),
        ("GET", HPAS),
        ("PATCH", WEB),
        ("POST", "/api/v1/namespaces/default/events"),
    ]);
    let patch = e.server.assert_requested("PATCH", WEB);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert!(patch.query.is_empty(), "{:?}", patch.query);
    assert_eq!(
        patch.body,
        Some(json!({
            "metadata": {
                "resourceVersion": rv,
                "annotations": {
                    "heal.dev/scale-correlation-id": "cid-1",
                    "heal.dev/scale-replicas": "5",
                },
            },
            "spec": {"replicas": 5},
        }))
    );

    // The same remediation again: already applied, nothing sent.
    e.server.clear_requests();
    let r = e
        .heal(&["scale", "deploy/web", "--replicas", "+3", "--max", "5"])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.server.assert_requests(&[("GET", WEB), ("GET", HPAS)]);

    let r = e
        .heal_as(
            "cid-2",
            &["scale", "deploy/web", "--replicas", "-10", "--min", "2"],
        )
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 2);
}

#[tokio::test]
async fn scale_conflict_is_retried_on_the_fresh_object() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server
        .inject(Fault::on("PATCH", "/deployments/web").conflict());
    let r = e.heal(&["scale", "deploy/web", "--replicas", "+1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    e.server.assert_requests(&[
        ("GET", WEB),
        ("GET", HPAS),
        ("PATCH", WEB),
        ("GET", WEB),
        ("PATCH", WEB),
        ("POST", "/api/v1/namespaces/default/events"),
    ]);
    let patches = e.server.requests_matching("PATCH", WEB);
    assert_eq!((patches[0].status, patches[1].status), (409, 200));
    assert_eq!(e.deployment("web")["spec"]["replicas"], 3);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after_then_succeeds() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    e.server
        .inject(Fault::on("PATCH", "/scale").too_many_requests(1));
    let started = std::time::Instant::now();
    let r = e.heal(&["scale", "deploy/web", "--replicas", "2"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 must be honoured"
    );
    let patches = e.server.requests_matching("PATCH", SCALE);
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].status, 429);
    assert_eq!(patches[1].status, 200);
}

#[tokio::test]
async fn persistent_503_ends_in_exit_3_when_the_timeout_runs_out() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    e.server.inject(
        Fault::on("GET", "/deployments/web")
            .service_unavailable()
            .always(),
    );
    let r = e
        .heal(&["scale", "deploy/web", "--replicas", "2", "--timeout", "1s"])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Transient);
    assert!(r.0.message.contains("503"), "{}", r.0.message);
    assert!(e.server.requests_matching("GET", WEB).len() >= 2);
    e.server.assert_not_requested("PATCH", "/scale");
}

#[tokio::test]
async fn connection_resets_and_500s_are_retried() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    e.server
        .inject(Fault::on("GET", "/deployments/web").reset());
    e.server
        .inject(Fault::on("PATCH", "/scale").internal_error());
    let r = e.heal(&["scale", "deploy/web", "--replicas", "2"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 2);
}

#[tokio::test]
async fn scale_of_a_missing_deployment_fails_with_exit_1() {
    let e = env();
    let r = e.heal(&["scale", "deploy/nope", "--replicas", "2"]).await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert!(
        r.0.message.contains("\"nope\" not found"),
        "{}",
        r.0.message
    );
}

#[tokio::test]
async fn forbidden_and_invalid_answers_fail_with_exit_1() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    e.server
        .inject(Fault::on("PATCH", "/scale").forbidden("system:serviceaccount:heal:heal-scale"));
    let r = e.heal(&["scale", "deploy/web", "--replicas", "2"]).await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert!(r.0.message.contains("forbidden"), "{}", r.0.message);
    assert_eq!(
        e.server.requests_matching("PATCH", SCALE).len(),
        1,
        "no retry"
    );

    e.server.inject(Fault::on("PATCH", "/scale").invalid(
        "autoscaling",
        "Scale",
        "web",
        "spec.replicas",
        "must be greater than or equal to 0",
    ));
    let r = e.heal(&["scale", "deploy/web", "--replicas", "2"]).await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert!(r.0.message.contains("422"), "{}", r.0.message);
}

#[tokio::test]
async fn dry_run_sends_dry_run_all_and_changes_nothing() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let r = e
        .heal(&["scale", "deploy/web", "--replicas", "5", "--dry-run"])
        .await;
    assert_outcome(&r, Outcome::DryRun, Exit::Ok);
    let patch = e.server.assert_requested("PATCH", SCALE);
    assert_eq!(patch.param("dryRun"), Some("All"));
    assert_eq!(e.deployment("web")["spec"]["replicas"], 1);
    assert!(e.events("default").is_empty(), "no event for a dry run");
}

#[tokio::test]
async fn custom_resources_resolve_through_discovery() {
    let e = env();
    e.server
        .register_crd("argoproj.io", "v1alpha1", "Rollout", "rollouts", true, true);
    e.server.insert(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}
    }));
    let r = e
        .heal(&["scale", "rollouts.argoproj.io/web", "--replicas", "2"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(r.0.target.kind, "Rollout");
    e.server.assert_requested(
        "PATCH",
        "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web/scale",
    );
    assert!(e.server.requests().iter().any(|r| r.is_discovery()));
}

// ----- guards -----

#[tokio::test]
async fn namespace_outside_the_allow_list_is_refused_before_any_write() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "2",
            "--allow-namespace",
            "shop-*,payments",
        ])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert!(
        r.0.message
            .contains("\"default\" is not in the allowed namespaces"),
        "{}",
        r.0.message
    );
    assert!(
        e.server.resource_requests().is_empty(),
        "{}",
        e.server.log_text()
    );
}

#[tokio::test]
async fn target_without_the_opt_in_label_is_refused() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let r = e
        .heal(&[
            "restart",
            "deploy/web",
            "--require-label",
            "heal.dev/enabled=true",
        ])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert!(r.0.message.contains("heal.dev/enabled"), "{}", r.0.message);
    e.server.assert_not_requested("PATCH", "");

    e.server.insert(with_labels(
        deployment("default", "api", 1),
        &[("heal.dev/enabled", "true")],
    ));
    let r = e
        .heal(&[
            "scale",
            "deploy/api",
            "--replicas",
            "2",
            "--require-label",
            "heal.dev/enabled=true",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
}

// ----- restart -----

#[tokio::test]
async fn restart_patches_the_pod_template_and_is_idempotent_per_correlation_id() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    let r = e.heal(&["restart", "deploy/web"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let patch = e.server.assert_requested("PATCH", WEB);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let ann = &patch.body.unwrap()["spec"]["template"]["metadata"]["annotations"];
    assert!(ann["kubectl.kubernetes.io/restartedAt"].is_string());
    assert_eq!(ann["heal.dev/restart-correlation-id"], "cid-1");
    assert_eq!(e.deployment("web")["metadata"]["generation"], 2);

    e.server.clear_requests();
    let again = e.heal(&["restart", "deploy/web"]).await;
    assert_outcome(&again, Outcome::Noop, Exit::Ok);
    e.server.assert_requests(&[("GET", WEB)]);
}

#[tokio::test]
async fn restart_wait_follows_the_rollout_to_completion() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.set_rollout(Rollout::AfterReads(3));
    let r = e.heal(&["restart", "deploy/web", "--wait"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert!(r.0.message.contains("rollout complete"), "{}", r.0.message);
    assert!(e.server.requests_matching("GET", WEB).len() >= 3);
}

#[tokio::test]
async fn restart_wait_fails_on_a_stuck_rollout() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.set_rollout(Rollout::Stuck);
    let r = e
        .heal(&["restart", "deploy/web", "--wait", "--timeout", "5s"])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert!(r.0.message.contains("progress deadline"), "{}", r.0.message);
}

#[tokio::test]
async fn restarting_a_pod_is_a_usage_error() {
    let e = env();
    let r = e.heal(&["restart", "pod/web-1"]).await;
    assert_outcome(&r, Outcome::Failed, Exit::Usage);
}

// ----- delete -----

#[tokio::test]
async fn delete_sends_a_uid_precondition_and_grace_period() {
    let e = env();
    let seeded = e.server.seed_deployment("default", "web", 2, &[]);
    let pod = &seeded.pod_names()[0];
    let uid = seeded.pods[0]["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let r = e
        .heal(&["delete", &format!("pod/{pod}"), "--grace-period", "5"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let path = format!("/api/v1/namespaces/default/pods/{pod}");
    let del = e.server.assert_requested("DELETE", &path);
    let body = del.body.unwrap();
    assert_eq!(body["preconditions"]["uid"], uid.as_str());
    assert_eq!(body["gracePeriodSeconds"], 5);
    assert_eq!(body["kind"], "DeleteOptions");
    assert!(e.server.get("v1", "pods", "default", pod).is_none());
}

#[tokio::test]
async fn deleting_something_already_gone_is_a_noop() {
    let e = env();
    let r = e.heal(&["delete", "pod/gone"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.server.assert_not_requested("DELETE", "");
}

#[tokio::test]
async fn a_retry_never_deletes_a_replacement_that_reused_the_name() {
    let e = env();
    e.server.insert(pod("default", "db-0"));
    let old_uid = e.server.get("v1", "pods", "default", "db-0").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let replacement = e.server.replace_pod_same_name("default", "db-0");
    let r = e.heal(&["delete", "pod/db-0", "--uid", &old_uid]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    assert!(r.0.message.contains("replacement"), "{}", r.0.message);
    e.server.assert_not_requested("DELETE", "");
    assert_eq!(
        e.server.get("v1", "pods", "default", "db-0").unwrap()["metadata"]["uid"],
        replacement["metadata"]["uid"]
    );
}

#[tokio::test]
async fn delete_precondition_conflict_means_the_original_is_gone() {
    let e = env();
    e.server.insert(pod("default", "db-0"));
    // The object is replaced between heal's read and its delete.
    e.server.inject(
        Fault::on("DELETE", "/pods/db-0").respond(StatusError::new(
            409,
            "Conflict",
            "Operation cannot be fulfilled on Pod \"db-0\": Precondition failed: UID in precondition: a, UID in object meta: b",
        )),
    );
    let r = e.heal(&["delete", "pod/db-0"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
}

#[tokio::test]
async fn min_available_refuses_deleting_the_last_ready_replica() {
    let e = env();
    let seeded = e.server.seed_deployment("default", "web", 1, &[]);
    let pod = &seeded.pod_names()[0];
    let r = e
        .heal(&["delete", &format!("pod/{pod}"), "--min-available", "1"])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert!(
        r.0.message.contains("deployment/web has 1 ready"),
        "{}",
        r.0.message
    );
    e.server.assert_not_requested("DELETE", "");

    let seeded = e.server.seed_deployment("default", "api", 3, &[]);
    let pod = &seeded.pod_names()[0];
    let r = e
        .heal(&["delete", &format!("pod/{pod}"), "--min-available", "2"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
}

#[tokio::test]
async fn delete_dry_run_keeps_the_pod() {
    let e = env();
    e.server.insert(pod("default", "p"));
    let r = e.heal(&["delete", "pod/p", "--dry-run"]).await;
    assert_outcome(&r, Outcome::DryRun, Exit::Ok);
    let del = e
        .server
        .assert_requested("DELETE", "/api/v1/namespaces/default/pods/p");
    assert_eq!(del.param("dryRun"), Some("All"));
    assert!(e.server.get("v1", "pods", "default", "p").is_some());
}

// ----- patch -----

#[tokio::test]
async fn every_patch_type_uses_its_content_type_and_the_heal_field_manager() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    for (kind, patch, ct) in [
        (
            "merge",
            r#"{"metadata":{"labels":{"a":"1"}}}"#,
            "application/merge-patch+json",
        ),
        (
            "json",
            r#"[{"op":"add","path":"/metadata/labels/b","value":"2"}]"#,
            "application/json-patch+json",
        ),
        (
            "strategic",
            r#"{"metadata":{"labels":{"c":"3"}}}"#,
            "application/strategic-merge-patch+json",
        ),
        (
            "apply",
            "metadata:\n  labels:\n    d: \"4\"\n",
            "application/apply-patch+yaml",
        ),
    ] {
        e.server.clear_requests();
        let r = e
            .heal(&["patch", "deploy/web", "--type", kind, "--patch", patch])
            .await;
        assert_outcome(&r, Outcome::Applied, Exit::Ok);
        let req = e.server.assert_requested("PATCH", WEB);
        assert_eq!(req.content_type.as_deref(), Some(ct), "{kind}");
        assert_eq!(req.param("fieldManager"), Some("heal"), "{kind}");
        if kind == "apply" {
            // As kubectl apply --server-side: no force unless --force-conflicts.
            assert_eq!(req.param("force"), None);
            let body = req.body.unwrap();
            assert_eq!(body["apiVersion"], "apps/v1");
            assert_eq!(body["kind"], "Deployment");
            assert_eq!(body["metadata"]["name"], "web");
        }
    }
    let labels = &e.deployment("web")["metadata"]["labels"];
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        assert_eq!(labels[k], v, "{labels}");
    }
}

#[tokio::test]
async fn a_merge_patch_already_applied_is_a_noop_without_a_write() {
    let e = env();
    e.server.insert(with_labels(
        deployment("default", "web", 1),
        &[("tier", "web")],
    ));
    let r = e
        .heal(&[
            "patch",
            "deploy/web",
            "--type",
            "merge",
            "--patch",
            r#"{"metadata":{"labels":{"tier":"web"}}}"#,
        ])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.server.assert_not_requested("PATCH", "");
}

#[tokio::test]
async fn a_rejected_json_patch_fails_with_exit_1() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let r = e
        .heal(&[
            "patch",
            "deploy/web",
            "--type",
            "json",
            "--patch",
            r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
        ])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert!(
        r.0.message.contains("rejected the patch"),
        "{}",
        r.0.message
    );
}

// ----- cordon, uncordon, drain -----

#[tokio::test]
async fn cordon_and_uncordon_set_unschedulable_once() {
    let e = env();
    e.server.insert(node("n1"));
    let r = e.heal(&["cordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let req = e.server.assert_requested("PATCH", "/api/v1/nodes/n1");
    assert_eq!(
        req.body,
        Some(json!({
            "metadata": {"annotations": {"heal.dev/cordoned-by": "cid-1"}},
            "spec": {"unschedulable": true},
        }))
    );
    assert_eq!(r.0.after["cordoned"], true);
    let again = e.heal(&["cordon", "n1"]).await;
    assert_outcome(&again, Outcome::Noop, Exit::Ok);
    let events = e.events("default");
    assert!(events.iter().any(|ev| ev["reason"] == "HealCordoned"));

    let r = e.heal(&["uncordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let node = e.server.get("v1", "nodes", "", "n1").unwrap();
    assert_ne!(node["spec"]["unschedulable"], true);
}

#[tokio::test]
async fn drain_evicts_through_the_eviction_api_and_skips_daemonset_pods() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.insert(node("n2"));
    let seeded = e.server.seed_deployment("default", "web", 2, &["n1", "n2"]);
    e.server.insert(daemonset_pod("default", "agent", "n1"));
    e.server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MinAvailable(1),
    ));
    let r = e.heal(&["drain", "node/n1", "--timeout", "10s"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let on_n1 = &seeded.pod_names()[0];
    let eviction = e.server.assert_requested(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{on_n1}/eviction"),
    );
    let body = eviction.body.unwrap();
    assert_eq!(body["apiVersion"], "policy/v1");
    assert_eq!(body["kind"], "Eviction");
    assert_eq!(body["metadata"]["name"], on_n1.as_str());
    assert_eq!(
        e.server.requests_to("POST", "/eviction").len(),
        1,
        "daemonset pod skipped"
    );
    assert_eq!(r.0.after["skipped"].as_array().unwrap().len(), 1);
    let list = e.server.assert_requested("GET", "/api/v1/pods");
    assert_eq!(list.param("fieldSelector"), Some("spec.nodeName=n1"));
    assert_eq!(
        e.server.get("v1", "nodes", "", "n1").unwrap()["spec"]["unschedulable"],
        true
    );
}

#[tokio::test]
async fn drain_blocked_by_a_disruption_budget_ends_in_exit_3() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.seed_deployment("default", "web", 2, &["n1"]);
    e.server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MinAvailable(2),
    ));
    let r = e.heal(&["drain", "node/n1", "--timeout", "2s"]).await;
    assert_outcome(&r, Outcome::Failed, Exit::Transient);
    assert!(r.0.message.contains("disruption budget"), "{}", r.0.message);
    let evictions = e.server.requests_to("POST", "/eviction");
    assert!(evictions.len() >= 2, "retried: {}", e.server.log_text());
    assert!(evictions.iter().all(|r| r.status == 429));
    assert_eq!(
        e.server.list("v1", "pods", "default").len(),
        2,
        "nothing evicted"
    );
}

#[tokio::test]
async fn drain_min_available_refuses_before_cordoning() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.seed_deployment("default", "web", 2, &["n1"]);
    let r = e.heal(&["drain", "node/n1", "--min-available", "1"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert!(r.0.message.contains("deployment/web"), "{}", r.0.message);
    e.server.assert_not_requested("PATCH", "");
    e.server.assert_not_requested("POST", "/eviction");
}

#[tokio::test]
async fn drain_refuses_unmanaged_pods_without_force() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.insert(bare_pod("default", "lonely", "n1"));
    let r = e.heal(&["drain", "node/n1"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert!(r.0.message.contains("default/lonely"), "{}", r.0.message);
    e.server.assert_not_requested("PATCH", "");
    let r = e.heal(&["drain", "node/n1", "--force"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
}

#[tokio::test]
async fn drain_dry_run_changes_nothing() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.seed_deployment("default", "web", 2, &["n1"]);
    let r = e.heal(&["drain", "node/n1", "--dry-run"]).await;
    assert_outcome(&r, Outcome::DryRun, Exit::Ok);
    for req in e.server.requests().iter().filter(|r| r.method != "GET") {
        assert_eq!(req.param("dryRun"), Some("All"), "{}", req.summary());
    }
    assert_eq!(e.server.list("v1", "pods", "default").len(), 2);
    assert_ne!(
        e.server.get("v1", "nodes", "", "n1").unwrap()["spec"]["unschedulable"],
        true
    );
}

// ----- wait -----

#[tokio::test]
async fn wait_for_a_condition_and_for_deletion() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let r = e
        .heal(&["wait", "deploy/web", "--for", "condition=Available"])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    let r = e
        .heal(&[
            "wait",
            "deploy/web",
            "--for",
            "condition=Available=False",
            "--timeout",
            "1s",
        ])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert!(r.0.message.contains("timed out"), "{}", r.0.message);
    let r = e.heal(&["wait", "pod/none", "--for", "delete"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    let r = e.heal(&["wait", "deploy/web", "--for", "rollout"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
}
