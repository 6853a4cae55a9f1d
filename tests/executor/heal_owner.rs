//! `--owner`: scale, restart, patch and wait act on the workload that controls the
//! addressed pod, found through `ownerReferences` (controller: true) at run time: the exact
//! reads of the walk, the result naming both objects, and refusals that write nothing.

use crate::support::{Env, env, name_of};
use heal::outcome::{Exit, Outcome};
use heal_testkit::apiserver::*;
use serde_json::json;

impl Env {
    fn writes(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

const NS: &str = "/namespaces/default";

#[tokio::test]
async fn scale_owner_walks_pod_to_replicaset_to_deployment_and_scales_the_deployment() {
    let e = env();
    let seeded = e.server.seed_deployment("default", "web", 1, &[]);
    let pod = name_of(&seeded.pods[0]);
    let rs = name_of(&seeded.replicaset);
    let r = e
        .heal(&["scale", &format!("pod/{pod}"), "--owner", "--replicas", "4"])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Applied, Exit::Ok),
        "{:?}",
        r.0
    );
    assert_eq!(r.0.target.kind, "Deployment");
    assert_eq!(r.0.target.name, "web");
    let addressed = r.0.addressed.as_ref().expect("the result names the pod");
    assert_eq!(
        (addressed.kind.as_str(), addressed.name.as_str()),
        ("Pod", pod.as_str())
    );
    assert!(addressed.uid.is_some());
    assert_eq!(r.0.after["replicas"], 4);
    e.server.assert_no_discovery();
    e.server.assert_requests(&[
        ("GET", &format!("/api/v1{NS}/pods/{pod}")),
        ("GET", &format!("/apis/apps/v1{NS}/replicasets/{rs}")),
        ("GET", &format!("/apis/apps/v1{NS}/deployments/web")),
        (
            "GET",
            &format!("/apis/autoscaling/v2{NS}/horizontalpodautoscalers"),
        ),
        ("PATCH", &format!("/apis/apps/v1{NS}/deployments/web/scale")),
        ("POST", &format!("/api/v1{NS}/events")),
    ]);
    let json = serde_json::to_value(&r.0).unwrap();
    assert_eq!(json["addressed"]["kind"], "Pod", "{json}");
    assert_eq!(json["target"]["kind"], "Deployment", "{json}");
}

#[tokio::test]
async fn restart_owner_of_a_statefulset_pod_reads_the_pod_only_before_the_statefulset() {
    let e = env();
    let sts = e.server.insert(statefulset("default", "db", 2));
    let pod = e.server.insert(owned_pod(&sts, "db-0", "node-1"));
    let r = e
        .heal(&["restart", &format!("pod/{}", name_of(&pod)), "--owner"])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Applied, Exit::Ok),
        "{:?}",
        r.0
    );
    assert_eq!(r.0.target.kind, "StatefulSet");
    let reqs = e.server.requests();
    assert_eq!(reqs[0].path, format!("/api/v1{NS}/pods/db-0"));
    assert_eq!(reqs[1].path, format!("/apis/apps/v1{NS}/statefulsets/db"));
    assert_eq!(
        e.writes()[0],
        format!("PATCH /apis/apps/v1{NS}/statefulsets/db")
    );
}

#[tokio::test]
async fn a_rollouts_replicaset_leads_to_the_rollout_through_discovery() {
    let e = env();
    e.server
        .register_crd("argoproj.io", "v1alpha1", "Rollout", "rollouts", true, true);
    e.server.insert(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default", "uid": "r-1"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}
    }));
    let mut rs = replicaset(&deployment("default", "web", 1));
    rs["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web",
        "uid": "r-1", "controller": true, "blockOwnerDeletion": true,
    }]);
    let rs = e.server.insert(rs);
    let pod = e.server.insert(owned_pod(&rs, "web-abc-x1", "node-1"));
    let r = e
        .heal(&[
            "scale",
            &format!("pod/{}", name_of(&pod)),
            "--owner",
            "--replicas",
            "3",
        ])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Applied, Exit::Ok),
        "{:?}",
        r.0
    );
    assert_eq!(r.0.target.kind, "Rollout");
    e.server.assert_requested(
        "PATCH",
        &format!("/apis/argoproj.io/v1alpha1{NS}/rollouts/web/scale"),
    );
}

#[tokio::test]
async fn a_pod_without_a_controller_is_exit_1_naming_it_and_nothing_is_written() {
    let e = env();
    e.server.insert(bare_pod("default", "lonely", "node-1"));
    let r = e
        .heal(&["scale", "pod/lonely", "--owner", "--replicas", "4"])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Failed, Exit::Failed),
        "{:?}",
        r.0
    );
    assert!(
        r.0.message
            .contains("pod/lonely in default has no controller"),
        "{}",
        r.0.message
    );
    assert!(e.writes().is_empty(), "{:?}", e.writes());
}

#[tokio::test]
async fn an_owner_that_cannot_be_scaled_is_exit_1_naming_both_and_nothing_is_written() {
    let e = env();
    e.server.insert(daemonset("default", "agent", 1));
    let pod = e.server.insert(daemonset_pod("default", "agent", "node-1"));
    let r = e
        .heal(&[
            "scale",
            &format!("pod/{}", name_of(&pod)),
            "--owner",
            "--replicas",
            "4",
        ])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Failed, Exit::Failed),
        "{:?}",
        r.0
    );
    let m = &r.0.message;
    assert!(m.contains("daemonset/agent, the owner of pod/"), "{m}");
    assert!(m.contains("cannot be scaled"), "{m}");
    assert!(e.writes().is_empty(), "{:?}", e.writes());
}

#[tokio::test]
async fn an_owner_other_than_the_expected_one_is_refused_and_nothing_is_written() {
    let e = env();
    let seeded = e.server.seed_deployment("default", "web", 1, &[]);
    let pod = name_of(&seeded.pods[0]);
    let r = e
        .heal(&[
            "scale",
            &format!("pod/{pod}"),
            "--owner",
            "--expect-owner",
            "deployment/api",
            "--replicas",
            "4",
        ])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Refused, Exit::Refused),
        "{:?}",
        r.0
    );
    assert!(
        r.0.message
            .contains("is now deployment/web, not deployment/api"),
        "{}",
        r.0.message
    );
    assert!(e.writes().is_empty(), "{:?}", e.writes());
    // The expected owner: acted on.
    let r = e
        .heal(&[
            "scale",
            &format!("pod/{pod}"),
            "--owner",
            "--expect-owner",
            "deploy/web",
            "--replicas",
            "4",
        ])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Applied, Exit::Ok),
        "{:?}",
        r.0
    );
}

#[tokio::test]
async fn a_missing_pod_is_exit_1_and_wait_owner_follows_the_deployments_rollout() {
    let e = env();
    let r = e
        .heal(&["wait", "pod/gone", "--owner", "--for", "rollout"])
        .await;
    assert_eq!(
        (r.0.outcome, r.1),
        (Outcome::Failed, Exit::Failed),
        "{:?}",
        r.0
    );
    assert!(
        r.0.message.contains("pod/gone in default not found"),
        "{}",
        r.0.message
    );
    let seeded = e.server.seed_deployment("default", "web", 2, &[]);
    let pod = name_of(&seeded.pods[0]);
    let r = e
        .heal(&["wait", &format!("pod/{pod}"), "--owner", "--for", "rollout"])
        .await;
    assert_eq!((r.0.outcome, r.1), (Outcome::Noop, Exit::Ok), "{:?}", r.0);
    assert_eq!(r.0.target.kind, "Deployment");
}

#[tokio::test]
async fn expect_owner_without_owner_and_owner_on_delete_are_usage_errors() {
    let e = env();
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let err = heal::cli::execute(&argv(&[
        "scale",
        "pod/x",
        "--expect-owner",
        "deploy/web",
        "--replicas",
        "1",
    ]))
    .await
    .unwrap_err();
    assert!(err.contains("--owner"), "{err}");
    let err = heal::cli::execute(&argv(&["delete", "pod/x", "--owner"]))
        .await
        .unwrap_err();
    assert!(err.contains("--owner"), "{err}");
    assert!(e.server.requests().is_empty());
}
