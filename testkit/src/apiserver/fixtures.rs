//! Builders for test data: workloads, pods, nodes, PDBs and CRDs as full manifests
//! (`serde_json::Value`), ready for [`super::ApiServer::insert`]. Uids are deterministic
//! (UUIDv5 of kind, namespace and name) so owners and dependents built separately still
//! point at each other.

use serde_json::{Value, json};

use super::controllers::{ready_status, running_status, template_hash};
use super::store::{meta_str, suffix_from};

/// The uid the builders give `kind` `ns/name`.
pub fn fixture_uid(kind: &str, ns: &str, name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("heal-test/{kind}/{ns}/{name}").as_bytes(),
    )
    .to_string()
}

fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "nginx:1.27",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

fn pod_spec(container_name: &str) -> Value {
    json!({
        "containers": [container(container_name)],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "schedulerName": "default-scheduler",
        "securityContext": {},
    })
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn uid_of(obj: &Value, kind: &str) -> String {
    match meta_str(obj, "uid") {
        "" => fixture_uid(kind, meta_str(obj, "namespace"), meta_str(obj, "name")),
        uid => uid.to_string(),
    }
}

/// An apps/v1 Deployment with selector and template labels `app: NAME`, fully rolled out.
pub fn deployment(ns: &str, name: &str, replicas: i64) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("Deployment", ns, name),
            "generation": 1,
            "labels": {"app": name},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec(name),
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
    });
    d["status"] = ready_status("deployments", &d, 0);
    d
}

/// An apps/v1 StatefulSet (`app: NAME`), fully rolled out.
pub fn statefulset(ns: &str, name: &str, replicas: i64) -> Value {
    let mut s = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("StatefulSet", ns, name),
            "generation": 1,
            "labels": {"app": name},
        },
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec(name),
            },
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 10,
        },
    });
    s["status"] = ready_status("statefulsets", &s, 0);
    s
}

/// An apps/v1 DaemonSet (`app: NAME`) scheduled on `nodes` nodes, fully rolled out.
pub fn daemonset(ns: &str, name: &str, nodes: i64) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("DaemonSet", ns, name),
            "generation": 1,
            "labels": {"app": name},
        },
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec(name),
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10,
        },
    });
    d["status"] = ready_status("daemonsets", &d, nodes);
    d
}

/// The current ReplicaSet of a deployment (built with [`deployment`] or read back),
/// owned by it, named `NAME-<pod-template-hash>`.
pub fn replicaset(deployment: &Value) -> Value {
    let ns = meta_str(deployment, "namespace");
    let dname = meta_str(deployment, "name");
    let hash = template_hash(deployment);
    let name = format!("{dname}-{hash}");
    let replicas = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(
            || json!({"metadata": {"labels": {"app": dname}}, "spec": pod_spec(dname)}),
        );
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deployment
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({"matchLabels": {"app": dname}}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut labels = template["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hash);
    let mut rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("ReplicaSet", ns, &name),
            "generation": 1,
            "labels": labels,
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                "deployment.kubernetes.io/max-replicas": (replicas + (replicas + 3) / 4).to_string(),
                "deployment.kubernetes.io/revision": "1",
            },
            "ownerReferences": [owner_ref("apps/v1", "Deployment", dname, &uid_of(deployment, "Deployment"))],
        },
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": template,
        },
    });
    rs["status"] = ready_status("replicasets", &rs, 0);
    rs
}

/// A Running, Ready pod on `node-1`, owned by a ReplicaSet whose name is the pod name
/// without its last `-suffix` (`web-7d4f8-abcde` -> ReplicaSet `web-7d4f8`, label
/// `app: web`, `pod-template-hash: 7d4f8`). The ReplicaSet itself is not built: insert
/// [`replicaset`] (or use `ApiServer::seed_deployment`) when a test needs the owner, for
/// example for a PDB with `maxUnavailable`.
pub fn pod(ns: &str, name: &str) -> Value {
    let rs = name.rsplit_once('-').map(|(p, _)| p).unwrap_or(name);
    let (app, hash) = match rs.rsplit_once('-') {
        Some((a, h)) => (a, Some(h)),
        None => (rs, None),
    };
    let mut labels = json!({"app": app});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    let mut spec = pod_spec(app);
    spec["nodeName"] = json!("node-1");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("Pod", ns, name),
            "generation": 1,
            "labels": labels,
            "ownerReferences": [owner_ref("apps/v1", "ReplicaSet", rs, &fixture_uid("ReplicaSet", ns, rs))],
        },
        "spec": spec,
        "status": running_status("node-1"),
    })
}

/// A Running, Ready pod of `owner` (a ReplicaSet or StatefulSet) on `node`, with the
/// owner's template labels.
pub fn owned_pod(owner: &Value, name: &str, node: &str) -> Value {
    let ns = meta_str(owner, "namespace");
    let kind = owner
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("ReplicaSet");
    let labels = owner
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let mut spec = owner
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| pod_spec("app"));
    spec["nodeName"] = json!(node);
    if kind == "StatefulSet" {
        spec["hostname"] = json!(name);
        spec["subdomain"] = owner
            .pointer("/spec/serviceName")
            .cloned()
            .unwrap_or(json!(""));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("Pod", ns, name),
            "generation": 1,
            "labels": labels,
            "ownerReferences": [owner_ref("apps/v1", kind, meta_str(owner, "name"), &uid_of(owner, kind))],
        },
        "spec": spec,
        "status": running_status(node),
    })
}

/// A pod of DaemonSet `ns/daemonset` on `node` (drain leaves these alone).
pub fn daemonset_pod(ns: &str, daemonset: &str, node: &str) -> Value {
    let name = format!(
        "{daemonset}-{}",
        suffix_from(&format!("{daemonset}/{node}"), 5)
    );
    let mut spec = pod_spec(daemonset);
    spec["nodeName"] = json!(node);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("Pod", ns, &name),
            "generation": 1,
            "labels": {"app": daemonset, "controller-revision-hash": suffix_from(daemonset, 10), "pod-template-generation": "1"},
            "ownerReferences": [owner_ref("apps/v1", "DaemonSet", daemonset, &fixture_uid("DaemonSet", ns, daemonset))],
        },
        "spec": spec,
        "status": running_status(node),
    })
}

/// A pod no controller manages (drain refuses it without force).
pub fn bare_pod(ns: &str, name: &str, node: &str) -> Value {
    let mut spec = pod_spec(name);
    spec["nodeName"] = json!(node);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": fixture_uid("Pod", ns, name),
            "generation": 1,
            "labels": {"app": name},
        },
        "spec": spec,
        "status": running_status(node),
    })
}

/// The pod with its Ready condition False (and phase still Running).
pub fn not_ready(mut pod: Value) -> Value {
    if let Some(cs) = pod
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                c["status"] = json!("False");
                c["reason"] = json!("ContainersNotReady");
            }
        }
    }
    pod
}

/// The object with these labels added.
pub fn with_labels(mut obj: Value, labels: &[(&str, &str)]) -> Value {
    if !obj
        .pointer("/metadata/labels")
        .is_some_and(Value::is_object)
    {
        obj["metadata"]["labels"] = json!({});
    }
    for (k, v) in labels {
        obj["metadata"]["labels"][*k] = json!(v);
    }
    obj
}

/// A Ready, schedulable node.
pub fn node(name: &str) -> Value {
    let t = super::store::now();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": fixture_uid("Node", "", name),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": t, "lastTransitionTime": t},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": t, "lastTransitionTime": t},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
            ],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.10"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.1",
                "containerRuntimeVersion": "containerd://2.0.5",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

/// The node marked unschedulable (what `cordon` does).
pub fn cordoned(mut node: Value) -> Value {
    node["spec"]["unschedulable"] = json!(true);
    node
}

/// What a PodDisruptionBudget guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `minAvailable: N`.
    MinAvailable(i64),
    /// `minAvailable: "P%"`.
    MinAvailablePercent(u32),
    /// `maxUnavailable: N`.
    MaxUnavailable(i64),
    /// `maxUnavailable: "P%"`.
    MaxUnavailablePercent(u32),
}

/// A policy/v1 PodDisruptionBudget selecting `matchLabels` (status is filled in by the
/// simulated disruption controller on insert).
pub fn pdb(ns: &str, name: &str, selector: &[(&str, &str)], budget: Budget) -> Value {
    let labels: serde_json::Map<String, Value> = selector
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut spec = json!({"selector": {"matchLabels": labels}});
    match budget {
        Budget::MinAvailable(n) => spec["minAvailable"] = json!(n),
        Budget::MinAvailablePercent(p) => spec["minAvailable"] = json!(format!("{p}%")),
        Budget::MaxUnavailable(n) => spec["maxUnavailable"] = json!(n),
        Budget::MaxUnavailablePercent(p) => spec["maxUnavailable"] = json!(format!("{p}%")),
    }
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns, "uid": fixture_uid("PodDisruptionBudget", ns, name), "generation": 1},
        "spec": spec,
    })
}

/// A ConfigMap.
pub fn configmap(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    })
}

/// A coordination.k8s.io/v1 Lease held by `holder` (none when empty).
pub fn lease(ns: &str, name: &str, holder: &str, duration_secs: i64) -> Value {
    let mut spec = json!({"leaseDurationSeconds": duration_secs});
    if !holder.is_empty() {
        let t = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
            .to_string();
        spec["holderIdentity"] = json!(holder);
        spec["acquireTime"] = json!(t);
        spec["renewTime"] = json!(t);
        spec["leaseTransitions"] = json!(0);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// A CustomResourceDefinition serving one version, with an open schema.
pub fn crd(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    scale_subresource: bool,
) -> Value {
    let mut subresources = json!({"status": {}});
    if scale_subresource {
        subresources["scale"] = json!({
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        });
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_ascii_lowercase(),
            },
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": subresources,
            }],
        },
    })
}
