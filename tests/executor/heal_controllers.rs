//! heal among the cluster's other controllers, HTTP-level against the test API server:
//! HorizontalPodAutoscalers, Argo CD and Flux, other server-side apply field managers,
//! PodDisruptionBudgets on pod deletes, someone else's cordon, and the cap on
//! unschedulable nodes. Every refusal is checked to write nothing, from the request log.

use crate::support::{Env, assert_outcome, env};
use heal::outcome::{Exit, HealResult, Outcome};
use heal_testkit::apiserver::*;
use serde_json::{Value, json};

impl Env {
    fn hpa(&self, name: &str) -> Value {
        self.server
            .get(
                "autoscaling/v2",
                "horizontalpodautoscalers",
                "default",
                name,
            )
            .expect("hpa exists")
    }

    fn node(&self, name: &str) -> Value {
        self.server
            .get("v1", "nodes", "", name)
            .expect("node exists")
    }

    /// Nothing but reads reached the server.
    fn assert_wrote_nothing(&self) {
        let writes: Vec<String> = self
            .server
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| r.summary())
            .collect();
        assert!(writes.is_empty(), "a refusal wrote: {writes:?}");
    }
}

fn assert_mentions(r: &(HealResult, Exit), needles: &[&str]) {
    for n in needles {
        assert!(r.0.message.contains(n), "{n:?} not in {:?}", r.0.message);
    }
}

const WEB: &str = "/apis/apps/v1/namespaces/default/deployments/web";
const SCALE: &str = "/apis/apps/v1/namespaces/default/deployments/web/scale";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
const EVENTS: &str = "/api/v1/namespaces/default/events";
const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";

/// An autoscaling/v2 HPA scaling `kind/target` between `min` and `max` on CPU.
fn hpa(name: &str, kind: &str, target: &str, min: i64, max: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    })
}

fn with_annotations(mut obj: Value, annotations: &[(&str, &str)]) -> Value {
    for (k, v) in annotations {
        obj["metadata"]["annotations"][*k] = json!(v);
    }
    obj
}

// ----- HorizontalPodAutoscalers -----

#[tokio::test]
async fn scaling_a_workload_an_hpa_targets_is_refused_naming_the_hpa_and_writes_nothing() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.insert(hpa("web", "Deployment", "web", 2, 10));
    e.server.insert(hpa("api", "Deployment", "api", 1, 3));
    e.server.clear_requests();
    let r = e.heal(&["scale", "deploy/web", "--replicas", "5"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(
        &r,
        &[
            "HorizontalPodAutoscaler web (minReplicas 2, maxReplicas 10)",
            "--hpa raise-min",
        ],
    );
    assert!(!r.0.message.contains("HorizontalPodAutoscaler api"));
    e.server.assert_requests(&[("GET", WEB), ("GET", HPAS)]);
    e.assert_wrote_nothing();
    assert_eq!(e.deployment("web")["spec"]["replicas"], 2);

    // Relative, through the workload patch: refused the same way.
    let r = e.heal(&["scale", "deploy/web", "--replicas", "+1"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    e.assert_wrote_nothing();

    // Already at the wanted count: nothing to undo, a noop.
    let r = e.heal(&["scale", "deploy/web", "--replicas", "2"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.assert_wrote_nothing();
}

#[tokio::test]
async fn an_hpa_of_another_workload_or_kind_does_not_count() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.insert(hpa("web", "StatefulSet", "web", 2, 10));
    e.server.insert(hpa("api", "Deployment", "api", 1, 3));
    let r = e.heal(&["scale", "deploy/web", "--replicas", "3"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
}

#[tokio::test]
async fn hpa_raise_min_raises_min_replicas_to_the_wanted_count_with_before_and_after() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.insert(hpa("web", "Deployment", "web", 2, 10));
    let rv = e.hpa("web")["metadata"]["resourceVersion"].clone();
    e.server.clear_requests();
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "5",
            "--hpa",
            "raise-min",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    // The workload first, then its autoscaler, then the Event.
    e.server.assert_requests(&[
        ("GET", WEB),
        ("GET", HPAS),
        ("PATCH", SCALE),
        ("PATCH", &format!("{HPAS}/web")),
        ("POST", EVENTS),
    ]);
    let patch = e.server.assert_requested("PATCH", &format!("{HPAS}/web"));
    assert_eq!(patch.content_type.as_deref(), Some(MERGE));
    assert_eq!(
        patch.body,
        Some(json!({"metadata": {"resourceVersion": rv}, "spec": {"minReplicas": 5}}))
    );
    assert_eq!(e.hpa("web")["spec"]["minReplicas"], 5);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 5);
    assert_eq!(
        r.0.before["hpa"],
        json!({"name": "web", "minReplicas": 2, "maxReplicas": 10})
    );
    assert_eq!(r.0.after["hpa"], json!({"name": "web", "minReplicas": 5}));
    assert_eq!(r.0.after["replicas"], 5);
    assert_mentions(
        &r,
        &[
            "scaled deployment/web from 2 to 5 replicas",
            "raised the minReplicas of HorizontalPodAutoscaler web from 2 to 5",
            "set it back to 2",
        ],
    );
    let events = e.server.list("v1", "events", "default");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("HorizontalPodAutoscaler web"),
        "{}",
        events[0]
    );

    // Again: the workload and the autoscaler are where they should be.
    e.server.clear_requests();
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "5",
            "--hpa",
            "raise-min",
        ])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.assert_wrote_nothing();
}

#[tokio::test]
async fn hpa_raise_min_is_clamped_by_max_replicas() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.insert(hpa("web", "Deployment", "web", 2, 6));
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "20",
            "--hpa",
            "raise-min",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 6);
    assert_eq!(e.hpa("web")["spec"]["minReplicas"], 6);
    assert_mentions(&r, &["clamped from 20 by the maxReplicas"]);
}

#[tokio::test]
async fn hpa_raise_min_with_a_relative_count_applies_once_per_remediation() {
    let e = env();
    e.server.insert(deployment("default", "web", 3));
    e.server.insert(hpa("web", "Deployment", "web", 2, 10));
    let args = [
        "scale",
        "deploy/web",
        "--replicas",
        "+2",
        "--hpa",
        "raise-min",
    ];
    let r = e.heal(&args).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 5);
    assert_eq!(e.hpa("web")["spec"]["minReplicas"], 5);
    e.server.clear_requests();
    let r = e.heal(&args).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.assert_wrote_nothing();

    // A run that stopped after the workload and before its autoscaler: the re-run raises
    // the autoscaler to the count this remediation set, and does not add again.
    e.server.modify(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "default",
        "web",
        |h| h["spec"]["minReplicas"] = json!(2),
    );
    let r = e.heal(&args).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 5);
    assert_eq!(e.hpa("web")["spec"]["minReplicas"], 5);
}

#[tokio::test]
async fn hpa_raise_min_refuses_to_scale_down() {
    let e = env();
    e.server.insert(deployment("default", "web", 5));
    e.server.insert(hpa("web", "Deployment", "web", 2, 10));
    e.server.clear_requests();
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "3",
            "--hpa",
            "raise-min",
        ])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(&r, &["only raises its minReplicas", "--hpa ignore"]);
    e.assert_wrote_nothing();
}

#[tokio::test]
async fn hpa_ignore_scales_without_looking_for_autoscalers() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.insert(hpa("web", "Deployment", "web", 2, 10));
    e.server.clear_requests();
    let r = e
        .heal(&["scale", "deploy/web", "--replicas", "4", "--hpa", "ignore"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    e.server
        .assert_requests(&[("GET", WEB), ("PATCH", SCALE), ("POST", EVENTS)]);
    assert_eq!(e.hpa("web")["spec"]["minReplicas"], 2);
}

#[tokio::test]
async fn hpa_raise_min_in_dry_run_changes_nothing() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    e.server.insert(hpa("web", "Deployment", "web", 2, 10));
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "4",
            "--hpa",
            "raise-min",
            "--dry-run",
        ])
        .await;
    assert_outcome(&r, Outcome::DryRun, Exit::Ok);
    for req in e.server.requests().iter().filter(|r| r.method != "GET") {
        assert_eq!(req.param("dryRun"), Some("All"), "{}", req.summary());
    }
    assert_eq!(e.hpa("web")["spec"]["minReplicas"], 2);
    assert_eq!(e.deployment("web")["spec"]["replicas"], 2);
}

#[tokio::test]
async fn a_bad_hpa_mode_is_a_one_line_usage_error() {
    let e = env();
    let err = heal::cli::execute(&e.argv(
        "cid-1",
        &["scale", "deploy/web", "--replicas", "3", "--hpa", "raise"],
    ))
    .await
    .unwrap_err();
    assert!(err.contains("raise-min"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(e.server.requests().is_empty());
}

// ----- GitOps: Argo CD and Flux -----

const TRACKED: (&str, &str) = (
    "argocd.argoproj.io/tracking-id",
    "shop-web:apps/Deployment:default/web",
);

#[tokio::test]
async fn objects_argo_cd_tracks_are_refused_for_scale_restart_and_patch_writing_nothing() {
    let e = env();
    e.server.insert(with_annotations(
        deployment("default", "web", 2),
        &[TRACKED],
    ));
    e.server.clear_requests();
    for args in [
        &["scale", "deploy/web", "--replicas", "3"][..],
        &["scale", "deploy/web", "--replicas", "+1"][..],
        &["restart", "deploy/web"][..],
        &[
            "patch",
            "deploy/web",
            "--type",
            "merge",
            "--patch",
            r#"{"spec":{"paused":true}}"#,
        ][..],
        &[
            "patch",
            "deploy/web",
            "--type",
            "json",
            "--patch",
            r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
        ][..],
    ] {
        let r = e.heal(args).await;
        assert_outcome(&r, Outcome::Refused, Exit::Refused);
        assert_mentions(
            &r,
            &[
                "deployment/web is managed by Argo CD Application shop-web",
                "--allow-gitops",
            ],
        );
    }
    e.assert_wrote_nothing();
    assert_eq!(e.deployment("web")["spec"]["replicas"], 2);
}

#[tokio::test]
async fn allow_gitops_changes_it_and_says_who_may_revert_it_in_the_result_and_the_event() {
    let e = env();
    e.server.insert(with_annotations(
        deployment("default", "web", 2),
        &[TRACKED],
    ));
    let r = e
        .heal(&["scale", "deploy/web", "--replicas", "3", "--allow-gitops"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_mentions(
        &r,
        &["managed by Argo CD Application shop-web, which may revert this change"],
    );
    assert_eq!(r.0.after["gitOps"]["name"], "shop-web");
    assert_eq!(r.0.after["gitOps"]["tool"], "Argo CD");
    let r = e.heal(&["restart", "deploy/web", "--allow-gitops"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_mentions(&r, &["may revert"]);
    let events = e.server.list("v1", "events", "default");
    assert_eq!(events.len(), 2);
    for ev in &events {
        let msg = ev["message"].as_str().unwrap();
        assert!(msg.contains("Argo CD Application shop-web"), "{msg}");
        assert!(msg.contains("may revert"), "{msg}");
    }
}

#[tokio::test]
async fn flux_labels_name_the_kustomization_or_helm_release() {
    let e = env();
    e.server.insert(with_labels(
        deployment("default", "web", 2),
        &[
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
            ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
        ],
    ));
    e.server.insert(with_labels(
        deployment("default", "api", 2),
        &[
            ("helm.toolkit.fluxcd.io/name", "api"),
            ("helm.toolkit.fluxcd.io/namespace", "default"),
        ],
    ));
    e.server.clear_requests();
    let r = e.heal(&["restart", "deploy/web"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(&r, &["Flux Kustomization flux-system/apps"]);
    let r = e
        .heal(&[
            "patch",
            "deploy/api",
            "--type",
            "strategic",
            "--patch",
            r#"{"spec":{"paused":true}}"#,
        ])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(&r, &["Flux HelmRelease default/api"]);
    e.assert_wrote_nothing();
}

#[tokio::test]
async fn the_instance_label_counts_where_argo_cd_tracks_by_label() {
    let e = env();
    e.server.insert(with_labels(
        deployment("default", "web", 2),
        &[("app.kubernetes.io/instance", "shop-web")],
    ));
    e.server.clear_requests();
    // Argo CD's default tracking is the annotation; Helm sets this label too.
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "3",
            "--argocd-tracking",
            "label",
        ])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(
        &r,
        &[
            "Argo CD Application shop-web",
            "label app.kubernetes.io/instance=shop-web",
        ],
    );
    e.assert_wrote_nothing();
    let r = e
        .heal(&[
            "scale",
            "deploy/web",
            "--replicas",
            "3",
            "--argocd-tracking",
            "annotation+label",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    // A custom instanceLabelKey.
    e.server.insert(with_labels(
        deployment("default", "api", 2),
        &[("argocd.argoproj.io/instance", "shop-api")],
    ));
    let r = e
        .heal(&[
            "restart",
            "deploy/api",
            "--argocd-tracking",
            "label",
            "--argocd-instance-label",
            "argocd.argoproj.io/instance",
        ])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(&r, &["Argo CD Application shop-api"]);
}

#[tokio::test]
async fn a_tracking_id_copied_from_another_object_does_not_count() {
    let e = env();
    e.server.insert(with_annotations(
        deployment("default", "web", 2),
        &[(
            "argocd.argoproj.io/tracking-id",
            "shop:apps/Deployment:default/other",
        )],
    ));
    let r = e.heal(&["scale", "deploy/web", "--replicas", "3"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert!(r.0.after.get("gitOps").is_none(), "{}", r.0.after);
}

#[tokio::test]
async fn deleting_a_pod_argo_cd_tracks_is_not_affected() {
    let e = env();
    e.server.insert(with_annotations(
        pod("default", "web-1"),
        &[(
            "argocd.argoproj.io/tracking-id",
            "shop-web:/Pod:default/web-1",
        )],
    ));
    let r = e.heal(&["delete", "pod/web-1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
}

// ----- server-side apply and other field managers -----

fn apply_as(server: &ApiServer, manager: &str, yaml: &str) {
    let r = server.request(
        "PATCH",
        &format!("{WEB}?fieldManager={manager}"),
        Some(APPLY),
        Some(yaml),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

const APPLY_REPLICAS_3: &str =
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n";

#[tokio::test]
async fn apply_without_force_conflicts_with_another_managers_field_and_names_it() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    apply_as(&e.server, "argocd-controller", APPLY_REPLICAS_3);
    e.server.clear_requests();
    let r = e
        .heal(&[
            "patch",
            "deploy/web",
            "--type",
            "apply",
            "--patch",
            "spec:\n  replicas: 5\n",
        ])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert_mentions(
        &r,
        &[
            "\"argocd-controller\"",
            ".spec.replicas",
            "--force-conflicts",
        ],
    );
    let sent = e.server.requests_matching("PATCH", WEB);
    assert_eq!(sent.len(), 1, "not retried: {}", e.server.log_text());
    assert_eq!(sent[0].status, 409);
    assert_eq!(sent[0].param("force"), None);
    assert_eq!(sent[0].param("fieldManager"), Some("heal"));
    assert_eq!(e.deployment("web")["spec"]["replicas"], 3);
    assert!(
        e.server.requests_to("POST", "/events").is_empty(),
        "no Event for a failure"
    );
}

#[tokio::test]
async fn force_conflicts_takes_the_fields_as_kubectl_apply_server_side_does() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    apply_as(&e.server, "argocd-controller", APPLY_REPLICAS_3);
    e.server.clear_requests();
    let r = e
        .heal(&[
            "patch",
            "deploy/web",
            "--type",
            "apply",
            "--patch",
            "spec:\n  replicas: 5\n",
            "--force-conflicts",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let sent = e.server.assert_requested("PATCH", WEB);
    assert_eq!(sent.param("force"), Some("true"));
    assert_eq!(e.deployment("web")["spec"]["replicas"], 5);
    let managers = e
        .server
        .field_managers("apps/v1", "deployments", "default", "web");
    assert!(
        managers.iter().any(|(m, op, f)| m == "heal"
            && op == "Apply"
            && f.contains(&".spec.replicas".to_string())),
        "{managers:?}"
    );
    assert!(
        !managers
            .iter()
            .any(|(m, _, f)| m == "argocd-controller" && f.contains(&".spec.replicas".to_string())),
        "{managers:?}"
    );
}

#[tokio::test]
async fn apply_of_fields_no_one_else_owns_or_of_the_same_value_needs_no_force() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    apply_as(&e.server, "argocd-controller", APPLY_REPLICAS_3);
    let r = e
        .heal(&[
            "patch",
            "deploy/web",
            "--type",
            "apply",
            "--patch",
            "metadata:\n  labels:\n    heal: \"yes\"\nspec:\n  replicas: 3\n",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(e.deployment("web")["metadata"]["labels"]["heal"], "yes");
}

#[tokio::test]
async fn a_field_another_manager_changed_with_an_update_conflicts_too() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    let r = e.server.send_json(
        "PATCH",
        &format!("{WEB}?fieldManager=kubectl-edit"),
        MERGE,
        &json!({"spec": {"replicas": 4}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = e
        .heal(&[
            "patch",
            "deploy/web",
            "--type",
            "apply",
            "--patch",
            "spec:\n  replicas: 5\n",
        ])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Failed);
    assert_mentions(&r, &["\"kubectl-edit\""]);
    let answer = e
        .server
        .requests_matching("PATCH", WEB)
        .into_iter()
        .find(|r| r.status == 409)
        .expect("the conflict");
    assert_eq!(answer.param("fieldManager"), Some("heal"));
    assert_eq!(e.deployment("web")["spec"]["replicas"], 4);
}

#[test]
fn the_test_api_server_answers_ssa_conflicts_as_the_api_server_does() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 2));
    apply_as(&server, "argocd-controller", APPLY_REPLICAS_3);
    let r = server.request(
        "PATCH",
        &format!("{WEB}?fieldManager=heal"),
        Some(APPLY),
        Some(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n",
        ),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Apply failed with 1 conflict: conflict with \"argocd-controller\": .spec.replicas",
            "reason": "Conflict",
            "details": {"causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"argocd-controller\"",
                "field": ".spec.replicas",
            }]},
            "code": 409,
        })
    );
    // Dry runs are checked too; force takes the field over.
    let r = server.request(
        "PATCH",
        &format!("{WEB}?fieldManager=heal&dryRun=All"),
        Some(APPLY),
        Some(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n",
        ),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = server.request(
        "PATCH",
        &format!("{WEB}?fieldManager=heal&force=true"),
        Some(APPLY),
        Some(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n",
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Now argocd-controller is the one that conflicts.
    let r = server.request(
        "PATCH",
        &format!("{WEB}?fieldManager=argocd-controller"),
        Some(APPLY),
        Some(APPLY_REPLICAS_3),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json()["details"]["causes"][0]["message"],
        "conflict with \"heal\""
    );
}

#[tokio::test]
async fn force_conflicts_without_apply_is_a_usage_error() {
    let e = env();
    let err = heal::cli::execute(&e.argv(
        "cid-1",
        &[
            "patch",
            "deploy/web",
            "--type",
            "merge",
            "--patch",
            "{}",
            "--force-conflicts",
        ],
    ))
    .await
    .unwrap_err();
    assert!(err.contains("--type apply"), "{err}");
    assert!(e.server.requests().is_empty());
}

// ----- delete --evict -----

#[tokio::test]
async fn delete_evict_goes_through_the_eviction_api_with_the_uid_precondition() {
    let e = env();
    e.server.insert(node("n1"));
    let seeded = e.server.seed_deployment("default", "web", 2, &["n1"]);
    e.server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MinAvailable(1),
    ));
    let name = seeded.pod_names()[0].clone();
    let uid = e.server.get("v1", "pods", "default", &name).unwrap()["metadata"]["uid"].clone();
    e.server.clear_requests();
    let r = e
        .heal(&[
            "delete",
            &format!("pod/{name}"),
            "--evict",
            "--grace-period",
            "10",
        ])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_mentions(&r, &["evicted pod/"]);
    let path = format!("/api/v1/namespaces/default/pods/{name}");
    e.server.assert_requests(&[
        ("GET", &path),
        ("POST", &format!("{path}/eviction")),
        ("POST", EVENTS),
    ]);
    let eviction = e
        .server
        .assert_requested("POST", &format!("{path}/eviction"));
    assert_eq!(
        eviction.body,
        Some(json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": "default"},
            "deleteOptions": {"preconditions": {"uid": uid}, "gracePeriodSeconds": 10},
        }))
    );
    e.server.assert_not_requested("DELETE", "");
}

#[tokio::test]
async fn delete_evict_blocked_by_a_disruption_budget_until_the_timeout_is_exit_3() {
    let e = env();
    e.server.insert(node("n1"));
    let seeded = e.server.seed_deployment("default", "web", 2, &["n1"]);
    e.server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MinAvailable(2),
    ));
    let name = seeded.pod_names()[0].clone();
    let r = e
        .heal(&[
            "delete",
            &format!("pod/{name}"),
            "--evict",
            "--timeout",
            "2s",
        ])
        .await;
    assert_outcome(&r, Outcome::Failed, Exit::Transient);
    assert_mentions(&r, &["could not evict", "disruption budget"]);
    let evictions = e.server.requests_to("POST", "/eviction");
    assert!(evictions.len() >= 2, "retried: {}", e.server.log_text());
    assert!(evictions.iter().all(|r| r.status == 429));
    assert!(e.server.get("v1", "pods", "default", &name).is_some());
    e.server.assert_not_requested("DELETE", "");
}

#[tokio::test]
async fn delete_evict_of_a_replaced_or_gone_pod_is_a_noop() {
    let e = env();
    e.server.insert(pod("default", "web-1"));
    let r = e
        .heal(&["delete", "pod/web-1", "--evict", "--uid", "not-this-one"])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    let r = e.heal(&["delete", "pod/gone", "--evict"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    e.assert_wrote_nothing();
}

#[tokio::test]
async fn delete_evict_in_dry_run_evicts_nothing() {
    let e = env();
    e.server.insert(pod("default", "web-1"));
    let r = e
        .heal(&["delete", "pod/web-1", "--evict", "--dry-run"])
        .await;
    assert_outcome(&r, Outcome::DryRun, Exit::Ok);
    let eviction = e
        .server
        .assert_requested("POST", "/api/v1/namespaces/default/pods/web-1/eviction");
    assert_eq!(eviction.param("dryRun"), Some("All"));
    assert_eq!(
        eviction.body.unwrap()["deleteOptions"]["dryRun"],
        json!(["All"])
    );
    assert!(e.server.get("v1", "pods", "default", "web-1").is_some());
}

#[tokio::test]
async fn evicting_something_that_is_not_a_pod_is_a_usage_error_before_any_request() {
    let e = env();
    let r = e.heal(&["delete", "deploy/web", "--evict"]).await;
    assert_eq!(r.1, Exit::Usage, "{}", r.0.message);
    assert_mentions(&r, &["--evict applies to pods only"]);
    assert!(e.server.requests().is_empty());
}

// ----- someone else's cordon -----

const N1: &str = "/api/v1/nodes/n1";

#[tokio::test]
async fn cordon_records_the_correlation_id_and_uncordon_removes_it() {
    let e = env();
    e.server.insert(node("n1"));
    let r = e.heal(&["cordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    let patch = e.server.assert_requested("PATCH", N1);
    assert_eq!(
        patch.body,
        Some(json!({
            "metadata": {"annotations": {"heal.dev/cordoned-by": "cid-1"}},
            "spec": {"unschedulable": true},
        }))
    );
    assert_eq!(
        e.node("n1")["metadata"]["annotations"]["heal.dev/cordoned-by"],
        "cid-1"
    );
    // Another remediation uncordons it: heal cordoned it.
    e.server.clear_requests();
    let r = e.heal_as("cid-2", &["uncordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_mentions(&r, &["cordoned by heal (correlation id cid-1)"]);
    let patch = e.server.assert_requested("PATCH", N1);
    assert_eq!(
        patch.body,
        Some(json!({
            "metadata": {"annotations": {"heal.dev/cordoned-by": null}},
            "spec": {"unschedulable": null},
        }))
    );
    let n = e.node("n1");
    assert_ne!(n["spec"]["unschedulable"], true);
    assert!(
        n["metadata"]["annotations"]
            .get("heal.dev/cordoned-by")
            .is_none(),
        "{n}"
    );
    let r = e.heal(&["uncordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
}

#[tokio::test]
async fn uncordon_refuses_a_node_someone_else_cordoned_unless_forced() {
    let e = env();
    e.server.insert(cordoned(node("n1")));
    e.server.clear_requests();
    let r = e.heal(&["uncordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(&r, &["cordoned by someone else", "--force"]);
    e.assert_wrote_nothing();
    assert_eq!(e.node("n1")["spec"]["unschedulable"], true);

    // Cordoning it again does not make it heal's.
    let r = e.heal(&["cordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    assert_mentions(&r, &["not by heal"]);
    e.assert_wrote_nothing();
    let r = e.heal(&["uncordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);

    let r = e.heal(&["uncordon", "node/n1", "--force"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_ne!(e.node("n1")["spec"]["unschedulable"], true);
}

#[tokio::test]
async fn drain_records_that_heal_cordoned_the_node() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.insert(node("n2"));
    e.server.seed_deployment("default", "web", 2, &["n1", "n2"]);
    let r = e.heal(&["drain", "node/n1", "--timeout", "10s"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(
        e.node("n1")["metadata"]["annotations"]["heal.dev/cordoned-by"],
        "cid-1"
    );
    assert_eq!(r.0.after["cordonedBy"], "cid-1");
    let r = e.heal_as("cid-2", &["uncordon", "node/n1"]).await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
}

// ----- --max-unschedulable -----

fn nodes(e: &Env, n: usize, cordoned_ones: &[usize]) {
    for i in 1..=n {
        let mut obj = node(&format!("n{i}"));
        if cordoned_ones.contains(&i) {
            obj = cordoned(obj);
        }
        e.server.insert(obj);
    }
}

#[tokio::test]
async fn cordon_refuses_when_it_would_leave_too_many_nodes_unschedulable() {
    let e = env();
    nodes(&e, 4, &[2]);
    e.server.clear_requests();
    let r = e
        .heal(&["cordon", "node/n1", "--max-unschedulable", "1"])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(
        &r,
        &[
            "would leave 2 of 4 nodes unschedulable",
            "--max-unschedulable 1",
            "already unschedulable: n2",
        ],
    );
    e.server
        .assert_requests(&[("GET", N1), ("GET", "/api/v1/nodes")]);
    e.assert_wrote_nothing();
    let r = e
        .heal(&["cordon", "node/n1", "--max-unschedulable", "25%"])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    e.assert_wrote_nothing();
    let r = e
        .heal(&["cordon", "node/n1", "--max-unschedulable", "50%"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    assert_eq!(
        r.0.after["unschedulable"],
        json!({"unschedulable": 2, "nodes": 4, "limit": 2})
    );
}

#[tokio::test]
async fn drain_refuses_past_max_unschedulable_before_cordoning_or_evicting() {
    let e = env();
    nodes(&e, 3, &[2, 3]);
    e.server.seed_deployment("default", "web", 2, &["n1"]);
    e.server.clear_requests();
    let r = e
        .heal(&["drain", "node/n1", "--max-unschedulable", "2"])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
    assert_mentions(&r, &["would leave 3 of 3 nodes unschedulable"]);
    e.assert_wrote_nothing();
}

#[tokio::test]
async fn a_node_already_cordoned_by_this_remediation_is_not_counted_twice() {
    let e = env();
    nodes(&e, 4, &[]);
    let r = e
        .heal(&["cordon", "node/n1", "--max-unschedulable", "1"])
        .await;
    assert_outcome(&r, Outcome::Applied, Exit::Ok);
    // Meanwhile someone cordons n2: 2 of 4 now, over the limit of 1; the retry of this
    // remediation adds no unschedulable node, so it goes on.
    e.server.modify("v1", "nodes", "", "n2", |n| {
        n["spec"]["unschedulable"] = json!(true)
    });
    let r = e
        .heal(&["cordon", "node/n1", "--max-unschedulable", "1"])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    let r = e
        .heal(&["drain", "node/n1", "--max-unschedulable", "1"])
        .await;
    assert_outcome(&r, Outcome::Noop, Exit::Ok);
    // A new node would be past it.
    let r = e
        .heal_as("cid-3", &["cordon", "node/n3", "--max-unschedulable", "1"])
        .await;
    assert_outcome(&r, Outcome::Refused, Exit::Refused);
}

#[tokio::test]
async fn bad_max_unschedulable_values_are_one_line_usage_errors() {
    let e = env();
    for v in ["150%", "x", "-1", "2.5"] {
        let err =
            heal::cli::execute(&e.argv("cid-1", &["cordon", "node/n1", "--max-unschedulable", v]))
                .await
                .unwrap_err();
        assert!(err.contains("--max-unschedulable"), "{v}: {err}");
        assert!(!err.contains('\n'), "{v}: {err}");
    }
    assert!(e.server.requests().is_empty());
}
