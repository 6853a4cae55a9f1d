//! Tests of the in-memory API server itself: it must answer the way a real API server
//! does, or the HTTP-level tests of heal prove nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use heal_testkit::apiserver::*;
use serde_json::{Value, json};

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

fn get_json(server: &ApiServer, path: &str) -> (u16, Value) {
    let r = server.request("GET", path, None, None);
    (r.status, r.json())
}

fn status_of(server: &ApiServer, path: &str) -> u16 {
    server.request("GET", path, None, None).status
}

#[test]
fn a_missing_deployment_is_a_404_status_naming_the_resource() {
    let server = ApiServer::start();
    let r = server.request("GET", &format!("{DEPLOY}/web"), None, None);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "deployments.apps \"web\" not found", "reason": "NotFound",
            "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 404,
        })
    );
    let r = server.request("GET", &format!("{PODS}/x"), None, None);
    assert_eq!(r.json()["message"], "pods \"x\" not found");
    assert_eq!(r.json()["details"], json!({"name": "x", "kind": "pods"}));
}

#[test]
fn requests_without_the_bearer_token_are_401_unauthorized() {
    let server = ApiServer::start();
    let r = server.raw("GET", "/api/v1/namespaces", None, None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Unauthorized");
    let r = server.raw("GET", "/api/v1/namespaces", None, None, Some("wrong"));
    assert_eq!(r.status, 401);
    assert_eq!(status_of(&server, "/api/v1/namespaces"), 200);
}

#[test]
fn creating_fills_system_fields_and_a_second_create_is_409_already_exists() {
    let server = ApiServer::start();
    let rv_before = server.resource_version();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}});
    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &body,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(created["metadata"]["namespace"], "default");
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(created["metadata"]["creationTimestamp"].is_string());
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > rv_before);
    // ConfigMaps keep no generation; deployments start at 1.
    assert!(created["metadata"].get("generation").is_none());

    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &body,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");
    assert_eq!(r.json()["message"], "configmaps \"cfg\" already exists");
    assert_eq!(
        r.json()["details"],
        json!({"name": "cfg", "kind": "configmaps"})
    );

    let d = server.send_json("POST", DEPLOY, "application/json", &{
        let mut d = deployment("default", "web", 2);
        d["metadata"].as_object_mut().unwrap().remove("uid");
        d
    });
    assert_eq!(d.status, 201, "{}", d.body);
    assert_eq!(d.json()["metadata"]["generation"], 1);
    assert_eq!(
        d.json()["status"],
        json!({}),
        "status is not settable on create"
    );
    let r = server.send_json(
        "POST",
        DEPLOY,
        "application/json",
        &deployment("default", "web", 2),
    );
    assert_eq!(
        r.json()["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );
}

#[test]
fn generate_name_gets_a_random_suffix_and_a_bad_name_is_422_invalid() {
    let server = ApiServer::start();
    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "run-"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let name = r.json()["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("run-") && name.len() == 9, "{name}");

    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
    );
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{s}"
    );
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");

    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );

    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/nowhere/configmaps",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nowhere\" not found");
}

#[test]
fn an_update_with_a_stale_resource_version_is_a_409_conflict() {
    let server = ApiServer::start();
    let stored = server.insert(configmap("default", "cfg", &[("a", "1")]));
    let mut first = stored.clone();
    first["data"]["a"] = json!("2");
    let r = server.send_json(
        "PUT",
        "/api/v1/namespaces/default/configmaps/cfg",
        "application/json",
        &first,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(
        r.json()["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );

    let mut second = stored.clone();
    second["data"]["a"] = json!("3");
    let r = server.send_json(
        "PUT",
        "/api/v1/namespaces/default/configmaps/cfg",
        "application/json",
        &second,
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    assert_eq!(
        r.json()["message"],
        "Operation cannot be fulfilled on configmaps \"cfg\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        server.get("v1", "configmap", "default", "cfg").unwrap()["data"]["a"],
        "2"
    );
}

#[test]
fn a_no_op_update_keeps_the_resource_version() {
    let server = ApiServer::start();
    let stored = server.insert(configmap("default", "cfg", &[("a", "1")]));
    let r = server.send_json(
        "PUT",
        "/api/v1/namespaces/default/configmaps/cfg",
        "application/json",
        &stored,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );
}

#[test]
fn delete_with_the_uid_of_a_replaced_pod_is_a_409_and_spares_the_replacement() {
    let server = ApiServer::start();
    let old = server.insert(pod("default", "db-0"));
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    let new = server.replace_pod_same_name("default", "db-0");
    let new_uid = new["metadata"]["uid"].as_str().unwrap().to_string();
    assert_ne!(old_uid, new_uid);

    let opts =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": old_uid}});
    let r = server.send_json("DELETE", &format!("{PODS}/db-0"), "application/json", &opts);
    assert_eq!(r.status, 409, "{}", r.body);
    let s = r.json();
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["message"],
        format!(
            "Operation cannot be fulfilled on Pod \"db-0\": the UID in the precondition ({old_uid}) does not match the UID in record ({new_uid}). The object might have been deleted and then recreated"
        )
    );
    assert!(server.get("v1", "pods", "default", "db-0").is_some());

    let opts = json!({"preconditions": {"uid": new_uid}, "gracePeriodSeconds": 0});
    let r = server.send_json("DELETE", &format!("{PODS}/db-0"), "application/json", &opts);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["kind"], "Pod", "pods answer a delete with the pod");
    assert!(server.get("v1", "pods", "default", "db-0").is_none());
}

#[test]
fn deleting_a_deployment_answers_status_success_and_collects_its_dependents() {
    let server = ApiServer::start();
    let seeded = server.seed_deployment("default", "web", 2, &[]);
    let r = server.request("DELETE", &format!("{DEPLOY}/web"), None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": "web", "group": "apps", "kind": "deployments", "uid": seeded.deployment["metadata"]["uid"]},
        })
    );
    assert!(server.list("apps/v1", "replicasets", "default").is_empty());
    assert!(server.list("v1", "pods", "default").is_empty());
}

#[test]
fn graceful_pod_deletion_leaves_a_terminating_pod_until_the_kubelet_finishes() {
    let server = ApiServer::start();
    server.set_pod_termination(PodTermination::Never);
    server.insert(pod("default", "web-abc-1"));
    let r = server.request(
        "DELETE",
        &format!("{PODS}/web-abc-1?gracePeriodSeconds=30"),
        None,
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(status_of(&server, &format!("{PODS}/web-abc-1")), 200);
    server.finish_termination("default", "web-abc-1");
    assert_eq!(status_of(&server, &format!("{PODS}/web-abc-1")), 404);
}

#[test]
fn merge_patch_bumps_generation_on_spec_changes_only() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 2));
    let path = format!("{DEPLOY}/web");
    let r = server.send_json(
        "PATCH",
        &path,
        MERGE,
        &json!({"metadata": {"labels": {"team": "a"}}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["metadata"]["generation"], 1);
    assert_eq!(r.json()["metadata"]["labels"]["team"], "a");
    let r = server.send_json("PATCH", &path, MERGE, &json!({"spec": {"replicas": 5}}));
    assert_eq!(r.json()["metadata"]["generation"], 2);
    assert_eq!(r.json()["spec"]["replicas"], 5);
    // Status is not patchable through the main resource.
    let r = server.send_json("PATCH", &path, MERGE, &json!({"status": {"replicas": 99}}));
    assert_ne!(r.json()["status"]["replicas"], 99);
}

#[test]
fn json_patch_test_failures_are_422_and_malformed_patches_are_400() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 2));
    let path = format!("{DEPLOY}/web");
    let ok = json!([{"op": "test", "path": "/spec/replicas", "value": 2}, {"op": "replace", "path": "/spec/replicas", "value": 4}]);
    let r = server.send_json("PATCH", &path, JSON_PATCH, &ok);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["replicas"], 4);

    let r = server.send_json("PATCH", &path, JSON_PATCH, &ok);
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["reason"], "Invalid");
    assert_eq!(
        r.json()["message"],
        "the server rejected our request due to an error in our request"
    );

    let r = server.send_json("PATCH", &path, JSON_PATCH, &json!({"op": "replace"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "BadRequest");
    assert_eq!(
        server.get("apps/v1", "deploy", "default", "web").unwrap()["spec"]["replicas"],
        4
    );
}

#[test]
fn strategic_merge_patch_merges_containers_by_name_and_415_for_unknown_types() {
    let server = ApiServer::start();
    let mut d = deployment("default", "web", 1);
    d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy:1"}));
    server.insert(d);
    let path = format!("{DEPLOY}/web");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy:2"}]}}}});
    let r = server.send_json("PATCH", &path, STRATEGIC, &patch);
    assert_eq!(r.status, 200, "{}", r.body);
    let containers = r.json()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(containers.as_array().unwrap().len(), 2, "{containers}");
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(containers[1]["image"], "envoy:2");

    // A merge patch replaces the list instead.
    let r = server.send_json("PATCH", &path, MERGE, &patch);
    assert_eq!(
        r.json()["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = server.send_json("PATCH", &path, "text/plain", &patch);
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");

    server.register_crd("example.com", "v1", "Widget", "widgets", true, false);
    server.insert(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}, "spec": {"a": 1}}));
    let r = server.send_json(
        "PATCH",
        "/apis/example.com/v1/namespaces/default/widgets/w",
        STRATEGIC,
        &json!({"spec": {"a": 2}}),
    );
    assert_eq!(
        r.status, 415,
        "custom resources take no strategic merge patch: {}",
        r.body
    );
}

#[test]
fn server_side_apply_needs_a_field_manager_and_creates_what_is_missing() {
    let server = ApiServer::start();
    let path = "/api/v1/namespaces/default/configmaps/cfg";
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n";
    let r = server.request("PATCH", path, Some(APPLY), Some(yaml));
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let r = server.request(
        "PATCH",
        &format!("{path}?fieldManager=heal&force=true"),
        Some(APPLY),
        Some(yaml),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = server.request(
        "PATCH",
        &format!("{path}?fieldManager=heal&force=true"),
        Some(APPLY),
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  c: d\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"], json!({"a": "b", "c": "d"}));
    let recorded = server.requests_matching("PATCH", path).pop().unwrap();
    assert_eq!(recorded.param("fieldManager"), Some("heal"));
    assert_eq!(
        recorded.body.unwrap()["data"]["c"],
        "d",
        "apply bodies are logged parsed from YAML"
    );
}

#[test]
fn dry_run_all_answers_as_if_done_and_changes_nothing() {
    let server = ApiServer::start();
    server.seed_deployment("default", "web", 2, &[]);
    let rv = server.resource_version();
    let pod_name = server.names("v1", "pods", "default")[0].clone();

    let r = server.send_json(
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        "application/json",
        &configmap("default", "new", &[]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json()["metadata"].get("resourceVersion").is_none());
    let r = server.send_json(
        "PATCH",
        &format!("{DEPLOY}/web/scale?dryRun=All"),
        MERGE,
        &json!({"spec": {"replicas": 7}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["replicas"], 7);
    let r = server.request(
        "DELETE",
        &format!("{PODS}/{pod_name}?dryRun=All"),
        None,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod_name}, "deleteOptions": {"dryRun": ["All"]}});
    let r = server.send_json(
        "POST",
        &format!("{PODS}/{pod_name}/eviction"),
        "application/json",
        &eviction,
    );
    assert_eq!(r.status, 201, "{}", r.body);

    assert_eq!(server.resource_version(), rv, "a dry run writes nothing");
    assert!(server.get("v1", "configmaps", "default", "new").is_none());
    assert_eq!(
        server
            .get("apps/v1", "deployments", "default", "web")
            .unwrap()["spec"]["replicas"],
        2
    );
    assert!(server.get("v1", "pods", "default", &pod_name).is_some());

    let r = server.send_json(
        "PATCH",
        &format!("{DEPLOY}/web?dryRun=Yes"),
        MERGE,
        &json!({}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Yes\"}: supported values: \"All\""
    );
}

#[test]
fn the_scale_subresource_speaks_autoscaling_v1_and_rejects_negative_replicas() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 2));
    let (code, scale) = get_json(&server, &format!("{DEPLOY}/web/scale"));
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(
        scale["status"],
        json!({"replicas": 2, "selector": "app=web"})
    );

    let mut put = scale.clone();
    put["spec"]["replicas"] = json!(4);
    let r = server.send_json(
        "PUT",
        &format!("{DEPLOY}/web/scale"),
        "application/json",
        &put,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["replicas"], 4);
    let r = server.send_json(
        "PUT",
        &format!("{DEPLOY}/web/scale"),
        "application/json",
        &put,
    );
    assert_eq!(
        r.status, 409,
        "the Scale carried a stale resourceVersion: {}",
        r.body
    );

    let r = server.send_json(
        "PATCH",
        &format!("{DEPLOY}/web/scale"),
        MERGE,
        &json!({"spec": {"replicas": -1}}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    let d = server
        .get("apps/v1", "deployments", "default", "web")
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        d["status"]["readyReplicas"], 4,
        "the rollout controller caught up"
    );
}

#[test]
fn an_eviction_that_would_violate_the_budget_is_a_429_with_a_disruption_budget_cause() {
    let server = ApiServer::start();
    let seeded = server.seed_deployment("default", "web", 2, &[]);
    server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MinAvailable(2),
    ));
    let name = &seeded.pod_names()[0];
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    let r = server.send_json(
        "POST",
        &format!("{PODS}/{name}/eviction"),
        "application/json",
        &eviction,
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests",
            "details": {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]},
            "code": 429,
        })
    );
    assert!(server.get("v1", "pods", "default", name).is_some());
}

#[test]
fn an_eviction_the_budget_allows_is_201_and_the_pod_is_gone() {
    let server = ApiServer::start();
    let seeded = server.seed_deployment("default", "web", 3, &[]);
    server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MaxUnavailable(1),
    ));
    let name = &seeded.pod_names()[0];
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}});
    let r = server.send_json(
        "POST",
        &format!("{PODS}/{name}/eviction"),
        "application/json",
        &eviction,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
    );
    assert!(server.get("v1", "pods", "default", name).is_none());
    let status = server.get("policy/v1", "pdb", "default", "web").unwrap()["status"].clone();
    assert_eq!(status["currentHealthy"], 2);
    assert_eq!(status["disruptionsAllowed"], 0);
    let second = &seeded.pod_names()[1];
    let r = server.send_json(
        "POST",
        &format!("{PODS}/{second}/eviction"),
        "application/json",
        &eviction,
    );
    assert_eq!(r.status, 400, "the Eviction names another pod: {}", r.body);
    let r = server.request(
        "POST",
        &format!("{PODS}/gone/eviction"),
        Some("application/json"),
        Some("{}"),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn replaced_pods_get_new_names_with_the_same_owner() {
    let server = ApiServer::start();
    server.set_pod_replacement(PodReplacement::NewName);
    let seeded = server.seed_deployment("default", "web", 2, &[]);
    let victim = seeded.pod_names()[0].clone();
    let r = server.request("DELETE", &format!("{PODS}/{victim}"), None, None);
    assert_eq!(r.status, 200);
    let pods = server.list("v1", "pods", "default");
    assert_eq!(pods.len(), 2);
    let replacement = pods
        .iter()
        .find(|p| {
            !seeded
                .pod_names()
                .contains(&p["metadata"]["name"].as_str().unwrap().to_string())
        })
        .expect("a replacement pod");
    assert_eq!(
        replacement["metadata"]["ownerReferences"],
        seeded.pods[0]["metadata"]["ownerReferences"]
    );
    assert_ne!(
        replacement["metadata"]["uid"],
        seeded.pods[0]["metadata"]["uid"]
    );
}

#[test]
fn an_injected_429_carries_retry_after_and_runs_out() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 1));
    server.inject(
        Fault::on("GET", "/deployments/web")
            .times(2)
            .too_many_requests(3),
    );
    for _ in 0..2 {
        let r = server.request("GET", &format!("{DEPLOY}/web"), None, None);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("3"));
        assert_eq!(r.json()["details"]["retryAfterSeconds"], 3);
        assert_eq!(r.json()["reason"], "TooManyRequests");
    }
    assert_eq!(status_of(&server, &format!("{DEPLOY}/web")), 200);
    let log = server.requests_matching("GET", &format!("{DEPLOY}/web"));
    assert_eq!(
        log.iter()
            .map(|r| (r.status, r.injected))
            .collect::<Vec<_>>(),
        vec![(429, true), (429, true), (200, false)]
    );
}

#[test]
fn injected_forbidden_and_conflict_name_the_request() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 1));
    server.inject(Fault::on("PATCH", "/scale").forbidden("system:serviceaccount:heal:runner"));
    server.inject(Fault::on("PUT", "").conflict());
    let r = server.send_json(
        "PATCH",
        &format!("{DEPLOY}/web/scale"),
        MERGE,
        &json!({"spec": {"replicas": 2}}),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:heal:runner\" cannot patch resource \"deployments/scale\" in API group \"apps\" in the namespace \"default\""
    );
    let r = server.send_json(
        "PUT",
        &format!("{DEPLOY}/web"),
        "application/json",
        &json!({}),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
}

#[test]
fn a_reset_fault_closes_the_connection_without_an_answer_and_a_delay_still_answers() {
    let server = ApiServer::start();
    server.inject(Fault::on("GET", "/api/v1/namespaces/default").reset());
    server.inject(Fault::on("GET", "/api/v1/namespaces/default").delay(Duration::from_millis(200)));
    let r = server.request("GET", "/api/v1/namespaces/default", None, None);
    assert_eq!(r.status, 0);
    let started = std::time::Instant::now();
    assert_eq!(status_of(&server, "/api/v1/namespaces/default"), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(server.requests()[0].status, 0);
}

#[tokio::test]
async fn a_lost_answer_applies_the_write_then_closes_the_connection_before_any_answer() {
    let server = ApiServer::start();
    // No status write of the rollout controller in between: resourceVersions count writes.
    server.set_rollout(Rollout::AfterReads(100));
    server.insert(deployment("default", "web", 2));
    let rv_before = server.resource_version();
    server.inject(
        Fault::on("PATCH", "/deployments/web/scale")
            .times(1)
            .lose_answer(),
    );
    // A real HTTP client sees the connection close before any byte of an answer.
    let stream = tokio::net::TcpStream::connect(server.address())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("PATCH")
        .uri(format!("{DEPLOY}/web/scale"))
        .header("host", server.address().to_string())
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", MERGE)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"spec":{"replicas":3}}"#,
        )))
        .unwrap();
    let err = sender
        .send_request(req)
        .await
        .expect_err("a lost answer is no answer");
    assert!(
        err.is_incomplete_message(),
        "the client sees the connection closed before the answer: {err:?}"
    );
    let _ = driver.await;

    // The write was applied in full: the store, the resourceVersion, the log.
    let web = server
        .get("apps/v1", "deployments", "default", "web")
        .unwrap();
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(server.resource_version(), rv_before + 1);
    assert_eq!(
        web["metadata"]["resourceVersion"],
        json!((rv_before + 1).to_string())
    );
    let log = server.requests();
    assert_eq!(log.len(), 1, "{}", server.log_text());
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web/scale"
        )
    );
    assert_eq!(log[0].status, 0, "no answer was sent");
    assert!(log[0].injected);
    assert_eq!(log[0].body, Some(json!({"spec": {"replicas": 3}})));

    // The fault is used up: the same request again is answered, and changes nothing more.
    let r = server.request(
        "PATCH",
        &format!("{DEPLOY}/web/scale"),
        Some(MERGE),
        Some(r#"{"spec":{"replicas":3}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["replicas"], 3);
    assert_eq!(
        server.resource_version(),
        rv_before + 1,
        "a no-op write stores nothing"
    );

    // A create whose answer is lost exists; its retry is 409 AlreadyExists.
    server.inject(Fault::on("POST", "/configmaps").lose_answer());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let path = "/api/v1/namespaces/default/configmaps";
    let r = server.send_json("POST", path, "application/json", &cm);
    assert_eq!(r.status, 0);
    assert!(server.get("v1", "configmaps", "default", "c").is_some());
    let r = server.send_json("POST", path, "application/json", &cm);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");
}

#[test]
fn chaos_fails_the_same_requests_for_the_same_seed() {
    let run = |seed: u64| {
        let server = ApiServer::start();
        server.fail_fraction(0.5, seed);
        let codes: Vec<u16> = (0..20)
            .map(|_| status_of(&server, "/api/v1/namespaces/default"))
            .collect();
        (codes, server.stop_chaos())
    };
    let (a, failed) = run(7);
    assert_eq!(a, run(7).0);
    assert!(failed > 0 && failed < 20, "{a:?}");
    assert!(
        a.iter()
            .all(|c| matches!(c, 0 | 200 | 429 | 500 | 503 | 504)),
        "{a:?}"
    );
}

#[test]
fn label_selectors_support_equality_and_set_requirements() {
    let server = ApiServer::start();
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
    ] {
        server.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "labels": labels}}));
    }
    let names = |selector: &str| -> Vec<String> {
        let r = server.request(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?labelSelector={selector}"),
            None,
            None,
        );
        assert_eq!(r.status, 200, "{selector}: {}", r.body);
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("app%3Dweb"), ["a", "b"]);
    assert_eq!(names("app%3D%3Dweb,tier!%3Dback"), ["a"]);
    assert_eq!(names("tier%20in%20(front,back)"), ["a", "b"]);
    assert_eq!(names("tier%20notin%20(front)"), ["b", "c"]);
    assert_eq!(names("tier"), ["a", "b"]);
    assert_eq!(names("!tier"), ["c"]);
    let r = server.request(
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20b",
        None,
        None,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn lists_have_a_list_kind_a_resource_version_pages_and_field_selectors() {
    let server = ApiServer::start();
    server.seed_deployment("default", "web", 3, &["n1", "n2"]);
    server.insert(pod("other", "x-y-z"));
    let (code, list) = get_json(&server, "/api/v1/pods");
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(
        list["metadata"]["resourceVersion"],
        server.resource_version().to_string()
    );
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        4,
        "lists cross namespaces"
    );
    assert!(
        list["items"][0].get("kind").is_none(),
        "built-in list items carry no kind"
    );

    let (_, on_n1) = get_json(&server, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1");
    assert_eq!(on_n1["items"].as_array().unwrap().len(), 2);
    let r = server.request(
        "GET",
        "/api/v1/pods?fieldSelector=spec.bogus%3D1",
        None,
        None,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "field label not supported: spec.bogus");

    let (_, page1) = get_json(&server, "/api/v1/namespaces/default/pods?limit=2");
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page1["metadata"]["remainingItemCount"], 1);
    let token = page1["metadata"]["continue"].as_str().unwrap();
    let (_, page2) = get_json(
        &server,
        &format!("/api/v1/namespaces/default/pods?limit=2&continue={token}"),
    );
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert!(page2["metadata"].get("continue").is_none());
}

#[test]
fn discovery_answers_like_a_real_server_and_shows_registered_crds() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    let (_, api) = get_json(&server, "/api");
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let (_, apps) = get_json(&server, "/apis/apps/v1");
    assert_eq!(apps["kind"], "APIResourceList");
    assert_eq!(apps["groupVersion"], "apps/v1");
    let find = |list: &Value, name: &str| {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let deployments = find(&apps, "deployments");
    assert_eq!(deployments["kind"], "Deployment");
    assert_eq!(deployments["namespaced"], true);
    assert_eq!(deployments["shortNames"], json!(["deploy"]));
    assert_eq!(deployments["singularName"], "deployment");
    let scale = find(&apps, "deployments/scale");
    assert_eq!(
        (
            scale["group"].clone(),
            scale["version"].clone(),
            scale["kind"].clone()
        ),
        (json!("autoscaling"), json!("v1"), json!("Scale"))
    );
    let (_, core) = get_json(&server, "/api/v1");
    assert_eq!(find(&core, "nodes")["namespaced"], false);
    assert_eq!(find(&core, "pods/eviction")["kind"], "Eviction");

    assert_eq!(status_of(&server, "/apis/argoproj.io/v1alpha1"), 404);
    server.register_argo_workflows();
    server.register_tekton_pipelineruns();
    let (_, argo) = get_json(&server, "/apis/argoproj.io/v1alpha1");
    assert_eq!(find(&argo, "workflows")["shortNames"], json!(["wf"]));
    let (_, group) = get_json(&server, "/apis/tekton.dev");
    assert_eq!(group["preferredVersion"]["version"], "v1");
    let (_, groups) = get_json(&server, "/apis");
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "argoproj.io")
    );
    assert_eq!(status_of(&server, "/openapi/v3"), 404);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.is_discovery() || r.path.starts_with("/openapi"))
    );
}

#[test]
fn custom_resources_list_with_kinds_and_bump_generation_outside_status() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_tekton_pipelineruns();
    let run = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "r1"}, "spec": {"pipelineRef": {"name": "p"}}, "status": {"x": 1}});
    let r = server.send_json(
        "POST",
        "/apis/tekton.dev/v1/namespaces/default/pipelineruns",
        "application/json",
        &run,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.json().get("status").is_none(),
        "status is reset on create for a status subresource"
    );
    let (_, list) = get_json(
        &server,
        "/apis/tekton.dev/v1/namespaces/default/pipelineruns",
    );
    assert_eq!(list["kind"], "PipelineRunList");
    assert_eq!(list["items"][0]["kind"], "PipelineRun");
    let r = server.send_json(
        "PATCH",
        "/apis/tekton.dev/v1/namespaces/default/pipelineruns/r1/status",
        MERGE,
        &json!({"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["metadata"]["generation"], 1);
    let (_, beta) = get_json(
        &server,
        "/apis/tekton.dev/v1beta1/namespaces/default/pipelineruns/r1",
    );
    assert_eq!(
        beta["apiVersion"], "tekton.dev/v1beta1",
        "every served version reads the same object"
    );
}

#[test]
fn events_written_as_events_k8s_io_read_back_as_core_events() {
    let server = ApiServer::start();
    let event = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "heal.example.com/heal", "reportingInstance": "heal-1",
        "action": "Scale", "reason": "Remediated", "type": "Normal", "note": "scaled 2 -> 3",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default"},
    });
    let r = server.send_json(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "application/json",
        &event,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let core = server.get("v1", "events", "default", "web.1").unwrap();
    assert_eq!(core["message"], "scaled 2 -> 3");
    assert_eq!(core["involvedObject"]["name"], "web");
    assert_eq!(core["reportingComponent"], "heal.example.com/heal");

    let mut bad = event.clone();
    bad["metadata"]["name"] = json!("web.2");
    bad["type"] = json!("Info");
    let r = server.send_json(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "application/json",
        &bad,
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "type");
}

#[test]
fn rollouts_can_lag_for_some_reads_or_get_stuck() {
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 2));
    server.set_rollout(Rollout::AfterReads(2));
    let r = server.send_json(
        "PATCH",
        &format!("{DEPLOY}/web"),
        MERGE,
        &json!({"spec": {"replicas": 3}}),
    );
    assert_eq!(r.json()["status"]["observedGeneration"], 1);
    let observed = |server: &ApiServer| {
        get_json(server, &format!("{DEPLOY}/web")).1["status"]["observedGeneration"].clone()
    };
    assert_eq!(observed(&server), 1);
    assert_eq!(observed(&server), 1);
    assert_eq!(observed(&server), 2, "caught up on the third read");

    server.set_rollout(Rollout::Stuck);
    server.send_json(
        "PATCH",
        &format!("{DEPLOY}/web"),
        MERGE,
        &json!({"spec": {"replicas": 4}}),
    );
    let (_, d) = get_json(&server, &format!("{DEPLOY}/web"));
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    assert_eq!(d["status"]["observedGeneration"], 3);
    assert_ne!(d["status"]["updatedReplicas"], 4);
}

#[test]
fn a_watch_streams_changes_after_its_resource_version_until_the_timeout() {
    let server = ApiServer::start();
    server.insert(configmap("default", "old", &[]));
    let rv = server.resource_version();
    let url = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    );
    let (started, response) = std::thread::scope(|s| {
        let watcher = s.spawn(|| server.request("GET", &url, None, None));
        std::thread::sleep(Duration::from_millis(200));
        server.insert(configmap("default", "new", &[]));
        server.modify("v1", "configmaps", "default", "new", |c| {
            c["data"] = json!({"k": "v"})
        });
        server.request(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/old",
            None,
            None,
        );
        let started = std::time::Instant::now();
        (started, watcher.join().unwrap())
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeoutSeconds closes the watch"
    );
    assert_eq!(response.status, 200);
    let events: Vec<(String, String)> = response
        .lines()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("ADDED".into(), "new".into()),
            ("MODIFIED".into(), "new".into()),
            ("DELETED".into(), "old".into())
        ]
    );
    let raw = response.body;
    assert!(
        raw.contains("\"kind\":\"ConfigMap\""),
        "watch objects carry their kind"
    );
}

#[test]
fn a_watch_from_a_compacted_resource_version_gets_410_expired() {
    let server = ApiServer::start();
    let rv = server.resource_version();
    server.insert(configmap("default", "a", &[]));
    server.compact();
    let r = server.request(
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
        None,
        None,
    );
    assert_eq!(r.status, 200);
    let events = r.lines();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    let r = server.request(
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=0",
        None,
        None,
    );
    assert_eq!(
        r.lines()[0]["type"],
        "ADDED",
        "without a resourceVersion a watch starts with the current state"
    );
}

fn kubectl(server: &ApiServer, dir: &Path, args: &[&str]) -> String {
    let kubeconfig = server.kubeconfig_tls(dir);
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .output()
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{text}\nrequests:\n{}",
        server.log_text()
    );
    text
}

#[test]
fn kubectl_scale_restart_patch_delete_and_get_work_against_the_server() {
    if heal_testkit::tool_or_skip(
        &["/usr/bin/kubectl"],
        "a kubectl from the Kubernetes release; optional: it checks the test API server's fidelity",
        heal_testkit::Required::Optional,
    )
    .is_none()
    {
        return;
    }
    let server = ApiServer::start();
    let seeded = server.seed_deployment("default", "web", 2, &[]);
    let dir = tempfile::tempdir().unwrap();
    assert!(
        kubectl(
            &server,
            dir.path(),
            &["scale", "deploy/web", "--replicas=3"]
        )
        .contains("scaled")
    );
    let scale = server.assert_requested("PATCH", &format!("{DEPLOY}/web/scale"));
    assert_eq!(scale.body, Some(json!({"spec": {"replicas": 3}})));
    kubectl(&server, dir.path(), &["rollout", "restart", "deploy/web"]);
    kubectl(
        &server,
        dir.path(),
        &[
            "patch",
            "deploy/web",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"healed":"yes"}}}"#,
        ],
    );
    kubectl(
        &server,
        dir.path(),
        &["delete", &format!("pod/{}", seeded.pod_names()[0])],
    );
    let out = kubectl(&server, dir.path(), &["get", "deploy", "web", "-o", "json"]);
    let d: Value = serde_json::from_str(&out).expect("kubectl printed JSON");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["labels"]["healed"], "yes");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    assert!(
        kubectl(
            &server,
            dir.path(),
            &["rollout", "status", "deploy/web", "--timeout=10s"]
        )
        .contains("successfully rolled out")
    );
    assert!(
        server
            .get("v1", "pods", "default", &seeded.pod_names()[0])
            .is_none()
    );
}

#[test]
fn kubectl_drain_evicts_through_the_budget() {
    if heal_testkit::tool_or_skip(
        &["/usr/bin/kubectl"],
        "a kubectl from the Kubernetes release; optional: it checks the test API server's fidelity",
        heal_testkit::Required::Optional,
    )
    .is_none()
    {
        return;
    }
    let server = ApiServer::start();
    server.insert(node("node-1"));
    server.insert(node("node-2"));
    server.set_pod_replacement(PodReplacement::NewName);
    server.seed_deployment("default", "web", 2, &["node-1", "node-2"]);
    server.insert(daemonset("kube-system", "proxy", 2));
    server.insert(daemonset_pod("kube-system", "proxy", "node-1"));
    server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MinAvailable(1),
    ));
    let dir = tempfile::tempdir().unwrap();
    kubectl(
        &server,
        dir.path(),
        &["drain", "node-1", "--ignore-daemonsets", "--timeout=20s"],
    );
    let pods = server.list("v1", "pods", "default");
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter().all(|p| p["spec"]["nodeName"] == "node-2"),
        "the replacement went to node-2"
    );
    assert_eq!(
        server.get("v1", "nodes", "", "node-1").unwrap()["spec"]["unschedulable"],
        true
    );
    assert_eq!(server.requests_to("POST", "/eviction").len(), 1);
}

#[tokio::test]
async fn kube_rs_clients_work_over_plain_http_and_over_tls() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};

    let server = ApiServer::start();
    let seeded = server.seed_deployment("default", "web", 2, &[]);
    let dir = tempfile::tempdir().unwrap();
    for (i, path) in [
        server.kubeconfig(dir.path()),
        server.kubeconfig_tls(dir.path()),
    ]
    .into_iter()
    .enumerate()
    {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
        let d = deployments.get("web").await.unwrap();
        assert_eq!(d.spec.unwrap().replicas, Some(2 + i as i32));
        let scale = deployments
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await
            .unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(3));
        let pods: Api<Pod> = Api::default_namespaced(client);
        let listed = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 2 - i);
        let victim = &seeded.pod_names()[i];
        let stale = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some("not-the-uid".into()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let err = pods.delete(victim, &stale).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
            "{err:?}"
        );
        pods.delete(victim, &DeleteParams::default()).await.unwrap();
    }
}

#[test]
fn an_object_with_finalizers_stays_terminating_until_they_are_removed() {
    let server = ApiServer::start();
    let mut cm = configmap("default", "held", &[]);
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    server.insert(cm);
    let path = "/api/v1/namespaces/default/configmaps/held";
    let r = server.request("DELETE", path, None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(status_of(&server, path), 200);
    let r = server.send_json(
        "PATCH",
        path,
        MERGE,
        &json!({"metadata": {"finalizers": ["example.com/other"]}}),
    );
    assert_eq!(
        r.status, 422,
        "no new finalizers on a deleting object: {}",
        r.body
    );
    let r = server.send_json(
        "PATCH",
        path,
        MERGE,
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(status_of(&server, path), 404);
}

// ----- the latency model -----

/// Time one request.
fn timed(server: &ApiServer, method: &str, path: &str, body: Option<&Value>) -> (u16, Duration) {
    let started = std::time::Instant::now();
    let text = body.map(Value::to_string);
    let ct = body.map(|_| {
        if method == "PATCH" {
            MERGE
        } else {
            "application/json"
        }
    });
    let r = server.request(method, path, ct, text.as_deref());
    (r.status, started.elapsed())
}

/// One TLS handshake with the server (trusting its CA), then one GET over it; answers how
/// long the handshake took and the status.
async fn tls_handshake_then_get(server: &ApiServer, path: &str) -> (Duration, String) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.address())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let handshake = started.elapsed();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    (handshake, answer.lines().next().unwrap_or("").to_string())
}

#[test]
fn the_latency_model_is_off_by_default_and_answers_record_their_server_time() {
    assert_eq!(Latency::default(), Latency::OFF);
    assert!(Latency::OFF.is_off());
    let server = ApiServer::start_with_latency(Latency::OFF);
    assert_eq!(server.latency(), Latency::OFF);
    assert_eq!(server.latency().describe(), "test API server, no latency");
    server.insert(configmap("default", "a", &[]));
    let (status, _) = timed(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps/a",
        None,
    );
    assert_eq!(status, 200);
    let served = server.served();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].work, Work::Read);
    assert_eq!(served[0].injected, Duration::ZERO);
    // Without the variable, `start` has no latency either (checked in a child process, so
    // that the environment of this one does not matter).
    let out = latency_probe(None);
    assert!(
        out.contains("probe latency: off"),
        "without {}: {out}",
        latency::ENV
    );
}

#[test]
fn with_the_kube_apiserver_model_a_read_takes_2_ms_and_a_write_5_ms() {
    let model = Latency::KUBE_APISERVER_1_36;
    assert_eq!(
        model.describe(),
        "test API server with the kube-apiserver 1.36 latency model: handshake 4 ms, read 2 ms, write 5 ms"
    );
    let server = ApiServer::start_with_latency(model);
    assert_eq!(server.latency(), model);
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = configmap("default", "slow", &[]);
    let (status, took) = timed(&server, "POST", cms, Some(&cm));
    assert_eq!(status, 201);
    assert!(took >= Duration::from_millis(5), "POST took {took:?}");
    let one = format!("{cms}/slow");
    let (status, took) = timed(&server, "GET", &one, None);
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(2), "GET took {took:?}");
    let (status, took) = timed(&server, "GET", cms, None);
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(2), "LIST took {took:?}");
    let patch = json!({"data": {"k": "v"}});
    let (status, took) = timed(&server, "PATCH", &one, Some(&patch));
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(5), "PATCH took {took:?}");
    let mut replaced = server.get("v1", "configmaps", "default", "slow").unwrap();
    replaced["data"] = json!({"k": "w"});
    let (status, took) = timed(&server, "PUT", &one, Some(&replaced));
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(5), "PUT took {took:?}");
    let (status, took) = timed(&server, "DELETE", &one, None);
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(5), "DELETE took {took:?}");
    // Errors are answered as late: the delay comes before the handler.
    let (status, took) = timed(&server, "GET", &one, None);
    assert_eq!(status, 404);
    assert!(took >= Duration::from_millis(2), "a 404 GET took {took:?}");

    let served = server.served();
    let kinds: Vec<(Work, Duration)> = served.iter().map(|s| (s.work, s.injected)).collect();
    let (r, w) = (model.read, model.write);
    assert_eq!(
        kinds,
        [
            (Work::Write, w),
            (Work::Read, r),
            (Work::Read, r),
            (Work::Write, w),
            (Work::Write, w),
            (Work::Write, w),
            (Work::Read, r),
        ]
    );
    for s in &served {
        assert!(s.took() >= s.injected, "{s:?}");
    }
    assert!(latency::busy(&served) >= Duration::from_millis(3 * 2 + 4 * 5));
    // Switched off again, the next request records no delay.
    server.set_latency(Latency::OFF);
    server.take_served();
    timed(&server, "GET", cms, None);
    assert_eq!(server.served()[0].injected, Duration::ZERO);
}

#[tokio::test]
async fn with_a_handshake_delay_each_tls_connection_waits_for_it_once() {
    let model = Latency::parse("handshake=40ms").unwrap();
    assert_eq!(model.handshake, Duration::from_millis(40));
    assert_eq!(model.read, Duration::ZERO);
    let server = ApiServer::start_with_latency(model);
    assert_eq!(
        model.describe(),
        "test API server with a custom latency model: handshake 40 ms, read 0 ms, write 0 ms"
    );
    let (handshake, status_line) = tls_handshake_then_get(&server, "/api/v1/namespaces").await;
    assert!(status_line.contains(" 200 "), "{status_line}");
    assert!(
        handshake >= Duration::from_millis(40),
        "handshake {handshake:?}"
    );
    let served = server.served();
    let kinds: Vec<(Work, Duration)> = served.iter().map(|s| (s.work, s.injected)).collect();
    assert_eq!(
        kinds,
        [
            (Work::Handshake, Duration::from_millis(40)),
            (Work::Read, Duration::ZERO)
        ]
    );
    // Plain HTTP has no handshake to delay.
    server.take_served();
    server.request("GET", "/api/v1/namespaces", None, None);
    let served = server.served();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].work, Work::Read);
}

#[test]
fn a_watch_waits_for_the_read_delay_before_its_response_only() {
    let server = ApiServer::start_with_latency(Latency::parse("read=150ms,write=1ms").unwrap());
    server.insert(configmap("default", "old", &[]));
    let rv = server.resource_version();
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=2"
    );
    // The response head comes after the read delay.
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
            .as_bytes(),
    )
    .unwrap();
    let mut first = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut first).unwrap();
    let head = started.elapsed();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        head >= Duration::from_millis(150),
        "watch head after {head:?}"
    );
    // Three changes while it streams: the watch records one read, not one per event.
    for name in ["a", "b", "c"] {
        server.insert(configmap("default", name, &[]));
    }
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert_eq!(text.matches("\"ADDED\"").count(), 3, "{text}");
    let watches: Vec<Served> = server
        .served()
        .into_iter()
        .filter(|s| s.work == Work::Read)
        .collect();
    assert_eq!(watches.len(), 1, "{watches:?}");
    assert_eq!(watches[0].injected, Duration::from_millis(150));
}

/// Run [`latency_env_probe`] in a child process with `HEAL_APISERVER_LATENCY` set to
/// `value` (removed when `None`); answers its output.
fn latency_probe(value: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "apiserver_selftest::latency_env_probe",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    match value {
        Some(v) => cmd.env(latency::ENV, v),
        None => cmd.env_remove(latency::ENV),
    };
    let out = cmd.output().unwrap();
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Prints the latency model `ApiServer::start` picked up (for the test below).
#[test]
fn latency_env_probe() {
    let server = ApiServer::start();
    println!("probe latency: {}", server.latency());
}

#[test]
fn heal_apiserver_latency_turns_the_model_on_for_the_process_and_rejects_bad_values() {
    for (value, expected) in [
        (
            "kube-apiserver-1.36",
            "probe latency: handshake 4 ms, read 2 ms, write 5 ms",
        ),
        (
            "handshake=4ms,read=2ms,write=5ms",
            "probe latency: handshake 4 ms, read 2 ms, write 5 ms",
        ),
        (
            "read=0.5ms, write=1ms",
            "probe latency: handshake 0 ms, read 0.5 ms, write 1 ms",
        ),
        ("off", "probe latency: off"),
    ] {
        let out = latency_probe(Some(value));
        assert!(
            out.contains(expected) && out.contains("exit Some(0)"),
            "{value}: {out}"
        );
    }
    for bad in [
        "kube-apiserver-1.99",
        "read=2 parsecs",
        "latency=4ms",
        "read",
    ] {
        let out = latency_probe(Some(bad));
        assert!(
            !out.contains("exit Some(0)") && out.contains("HEAL_APISERVER_LATENCY="),
            "{bad}: {out}"
        );
    }
    assert!(Latency::parse("write=5 parsecs").is_err());
}
