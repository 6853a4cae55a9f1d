//! Simulated controllers, switchable per test: the rollout controller (deployment,
//! statefulset, daemonset and replicaset status), the disruption controller (PDB status),
//! the garbage collector (ownerReferences), ReplicaSet/StatefulSet pod replacement, the
//! kubelet finishing graceful pod deletions, and the CRD controller (registering served
//! types).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::ops;
use super::resources::{ResourceType, ScalePaths};
use super::selectors::LabelSelector;
use super::store::{
    ObjKey, PodReplacement, Rollout, State, meta_str, now, remove_meta, set_meta, suffix_from,
};
use super::validation::parse_percent;

/// Delayed controller work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// The rollout controller reports the object's status as caught up.
    RolloutCatchUp(ObjKey),
    /// The kubelet confirms the graceful deletion of the pod with this uid.
    FinishTermination(ObjKey, String),
}

/// Run `job` after `delay` (the server's controller loop picks it up).
pub fn schedule(state: &mut State, delay: Duration, job: Job) {
    state.timers.push((Instant::now() + delay, job));
}

/// Run the jobs that are due.
pub fn run_due(state: &mut State) {
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = state.timers.drain(..).partition(|(t, _)| *t <= now);
    state.timers = later;
    for (_, job) in due {
        match job {
            Job::RolloutCatchUp(key) => catch_up(state, &key),
            Job::FinishTermination(key, uid) => {
                if state
                    .objects
                    .get(&key)
                    .is_some_and(|o| meta_str(o, "uid") == uid)
                {
                    ops::finish_pod_termination(state, &key);
                }
            }
        }
    }
}

fn is_rollout_kind(key: &ObjKey) -> bool {
    key.group == "apps"
        && matches!(
            key.plural.as_str(),
            "deployments" | "statefulsets" | "daemonsets" | "replicasets"
        )
}

fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Hooks after an object was written through the API.
pub fn after_write(state: &mut State, key: &ObjKey, old: Option<&Value>, new: &Value) {
    observe(state, key, old, Some(new));
    if is_rollout_kind(key)
        && meta_str(new, "deletionTimestamp").is_empty()
        && old.map(generation) != Some(generation(new))
    {
        let mode = state
            .settings
            .rollout_overrides
            .get(&(key.plural.clone(), key.namespace.clone(), key.name.clone()))
            .copied()
            .unwrap_or(state.settings.rollout);
        state.pending.remove(key);
        match mode {
            Rollout::Immediate | Rollout::AfterReads(0) => catch_up(state, key),
            Rollout::AfterReads(n) => {
                state
                    .pending
                    .insert(key.clone(), super::store::Pending { reads_left: n });
            }
            Rollout::AfterDelay(d) => schedule(state, d, Job::RolloutCatchUp(key.clone())),
            Rollout::Stuck => stuck(state, key),
        }
    }
}

/// Hooks after an object was removed through the API.
pub fn after_remove(state: &mut State, key: &ObjKey, removed: &Value) {
    observe(state, key, Some(removed), None);
    if state.settings.garbage_collector {
        let uid = meta_str(removed, "uid").to_string();
        collect_dependents(state, &uid, false);
    }
    if key.group.is_empty() && key.plural == "pods" {
        replace_pod(state, key, removed);
    }
    if key.group.is_empty() && key.plural == "namespaces" {
        let doomed: Vec<ObjKey> = state
            .objects
            .keys()
            .filter(|k| k.namespace == key.name)
            .cloned()
            .collect();
        for k in doomed {
            state.take(&k);
        }
    }
}

/// Controllers that only observe (run for test data too): PDB status and CRD registration.
pub fn observe(state: &mut State, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
    let pods_or_pdbs = (key.group.is_empty() && key.plural == "pods")
        || (key.group == "policy" && key.plural == "poddisruptionbudgets");
    if pods_or_pdbs && state.settings.disruption_controller {
        recompute_pdbs(state, &key.namespace.clone());
    }
    if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
        crd_changed(state, key, old, new);
    }
}

/// The rollout controller's view of a caught-up object.
fn catch_up(state: &mut State, key: &ObjKey) {
    state.pending.remove(key);
    let Some(obj) = state.objects.get(key).cloned() else {
        return;
    };
    let nodes = count_nodes(state);
    let status = ready_status(&key.plural, &obj, nodes);
    write_status(state, key, obj, status);
}

fn stuck(state: &mut State, key: &ObjKey) {
    let Some(obj) = state.objects.get(key).cloned() else {
        return;
    };
    let status = stuck_status(&key.plural, &obj);
    write_status(state, key, obj, status);
}

fn write_status(state: &mut State, key: &ObjKey, mut obj: Value, status: Value) {
    if obj.get("status") == Some(&status) {
        return;
    }
    obj["status"] = status;
    state.put(key.clone(), obj);
}

/// A GET of the object (or its scale/status) happened: the `AfterReads` countdown moves.
pub fn on_read(state: &mut State, key: &ObjKey) {
    let Some(p) = state.pending.get_mut(key) else {
        return;
    };
    if p.reads_left == 0 {
        catch_up(state, key);
    } else {
        p.reads_left -= 1;
    }
}

fn count_nodes(state: &State) -> i64 {
    state
        .objects
        .keys()
        .filter(|k| k.group.is_empty() && k.plural == "nodes")
        .count() as i64
}

/// The pod-template-hash the simulated controllers use for a workload's template.
pub fn template_hash(obj: &Value) -> String {
    let template = obj
        .pointer("/spec/template")
        .map(Value::to_string)
        .unwrap_or_default();
    suffix_from(&template, 10)
}

fn desired_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn condition(
    old: &Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    with_update_time: bool,
) -> Value {
    let previous = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let now = now();
    let transition = previous
        .filter(|c| c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let mut c = json!({"type": kind, "status": status});
    if with_update_time {
        c["lastUpdateTime"] = json!(now);
    }
    c["lastTransitionTime"] = transition;
    c["reason"] = json!(reason);
    c["message"] = json!(message);
    c
}

fn put_nonzero(m: &mut Map<String, Value>, field: &str, n: i64) {
    if n != 0 {
        m.insert(field.into(), json!(n));
    }
}

/// The status a controller reports once a workload has fully rolled out.
pub fn ready_status(plural: &str, obj: &Value, nodes: i64) -> Value {
    let n = desired_replicas(obj);
    let name = meta_str(obj, "name");
    let mut st = Map::new();
    st.insert("observedGeneration".into(), json!(generation(obj)));
    match plural {
        "deployments" => {
            for f in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ] {
                put_nonzero(&mut st, f, n);
            }
            let rs = format!("{name}-{}", template_hash(obj));
            st.insert(
                "conditions".into(),
                json!([
                    condition(
                        obj,
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        true
                    ),
                    condition(
                        obj,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet {rs:?} has successfully progressed."),
                        true
                    ),
                ]),
            );
        }
        "statefulsets" => {
            let rev = format!("{name}-{}", template_hash(obj));
            st.insert("replicas".into(), json!(n));
            for f in [
                "readyReplicas",
                "currentReplicas",
                "updatedReplicas",
                "availableReplicas",
            ] {
                put_nonzero(&mut st, f, n);
            }
            st.insert("currentRevision".into(), json!(rev));
            st.insert("updateRevision".into(), json!(rev));
            st.insert("collisionCount".into(), json!(0));
        }
        "daemonsets" => {
            let desired = obj
                .pointer("/status/desiredNumberScheduled")
                .and_then(Value::as_i64)
                .filter(|d| *d > 0)
                .unwrap_or(nodes);
            for f in [
                "currentNumberScheduled",
                "desiredNumberScheduled",
                "numberReady",
                "updatedNumberScheduled",
                "numberAvailable",
            ] {
                st.insert(f.into(), json!(desired));
            }
            st.insert("numberMisscheduled".into(), json!(0));
        }
        _ => {
            st.insert("replicas".into(), json!(n));
            for f in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
                put_nonzero(&mut st, f, n);
            }
        }
    }
    Value::Object(st)
}

/// The status of a rollout that does not progress.
fn stuck_status(plural: &str, obj: &Value) -> Value {
    let n = desired_replicas(obj);
    let name = meta_str(obj, "name");
    let old = obj.get("status").cloned().unwrap_or(json!({}));
    let old_int = |f: &str| old.get(f).and_then(Value::as_i64).unwrap_or(0);
    let mut st = Map::new();
    st.insert("observedGeneration".into(), json!(generation(obj)));
    match plural {
        "deployments" => {
            put_nonzero(&mut st, "replicas", old_int("replicas"));
            put_nonzero(&mut st, "readyReplicas", old_int("readyReplicas"));
            put_nonzero(&mut st, "availableReplicas", old_int("availableReplicas"));
            put_nonzero(
                &mut st,
                "unavailableReplicas",
                (n - old_int("availableReplicas")).max(0),
            );
            let rs = format!("{name}-{}", template_hash(obj));
            let available = if old_int("availableReplicas") > 0 {
                "True"
            } else {
                "False"
            };
            let (reason, message) = if available == "True" {
                (
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                (
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
            st.insert(
                "conditions".into(),
                json!([
                    condition(obj, "Available", available, reason, message, true),
                    condition(
                        obj,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet {rs:?} has timed out progressing."),
                        true
                    ),
                ]),
            );
        }
        "statefulsets" => {
            let rev = format!("{name}-{}", template_hash(obj));
            st.insert("replicas".into(), json!(old_int("replicas")));
            put_nonzero(&mut st, "readyReplicas", old_int("readyReplicas"));
            put_nonzero(&mut st, "currentReplicas", old_int("currentReplicas"));
            put_nonzero(&mut st, "availableReplicas", old_int("availableReplicas"));
            let current = old
                .get("currentRevision")
                .cloned()
                .unwrap_or_else(|| json!(format!("{name}-0")));
            st.insert("currentRevision".into(), current);
            st.insert("updateRevision".into(), json!(rev));
            st.insert("collisionCount".into(), json!(0));
        }
        "daemonsets" => {
            let desired = old_int("desiredNumberScheduled");
            st.insert("desiredNumberScheduled".into(), json!(desired));
            st.insert("currentNumberScheduled".into(), json!(desired));
            st.insert("numberReady".into(), json!(old_int("numberReady")));
            st.insert("updatedNumberScheduled".into(), json!(0));
            st.insert("numberAvailable".into(), json!(old_int("numberAvailable")));
            put_nonzero(
                &mut st,
                "numberUnavailable",
                desired - old_int("numberAvailable"),
            );
            st.insert("numberMisscheduled".into(), json!(0));
        }
        _ => {
            st.insert("replicas".into(), json!(old_int("replicas")));
            put_nonzero(&mut st, "readyReplicas", old_int("readyReplicas"));
            put_nonzero(&mut st, "availableReplicas", old_int("availableReplicas"));
        }
    }
    Value::Object(st)
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Scale an int-or-percent against `total` (rounding up, as the disruption controller does).
fn scaled(v: &Value, total: i64) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match parse_percent(s) {
            Some(p) => (i64::from(p) * total + 99) / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// The pods' controllers' desired replicas, summed over distinct controllers, as the
/// disruption controller finds them (a ReplicaSet owned by a Deployment counts the
/// Deployment's replicas). `None` when a pod has no controller the server knows.
fn expected_from_controllers(state: &State, pods: &[&Value]) -> Option<i64> {
    let mut seen: Vec<String> = Vec::new();
    let mut total = 0;
    for pod in pods {
        let owner = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r["controller"] == true))?;
        let owner_obj = owner["uid"]
            .as_str()
            .and_then(|u| find_by_uid(state, u))
            .and_then(|k| state.objects.get(&k))?;
        let scale_owner = match owner["kind"].as_str() {
            Some("ReplicaSet") => owner_obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| {
                    refs.iter()
                        .find(|r| r["controller"] == true && r["kind"] == "Deployment")
                })
                .and_then(|d| d["uid"].as_str())
                .and_then(|u| find_by_uid(state, u))
                .and_then(|k| state.objects.get(&k))
                .unwrap_or(owner_obj),
            _ => owner_obj,
        };
        let uid = meta_str(scale_owner, "uid").to_string();
        if !seen.contains(&uid) {
            total += desired_replicas(scale_owner);
            seen.push(uid);
        }
    }
    Some(total)
}

/// The status the disruption controller computes for a PDB over the given pods: an
/// integer `minAvailable` counts the selected pods; a percentage or `maxUnavailable` counts
/// the replicas their controllers want.
pub fn pdb_status(state: &State, pdb: &Value, pods: &[Value]) -> Value {
    let selector = pdb
        .pointer("/spec/selector")
        .filter(|s| !s.is_null())
        .and_then(|s| LabelSelector::from_object(s).ok());
    let matching: Vec<&Value> = match &selector {
        Some(sel) => pods.iter().filter(|p| sel.matches(p)).collect(),
        None => Vec::new(),
    };
    let healthy = matching
        .iter()
        .filter(|p| pod_ready(p) && meta_str(p, "deletionTimestamp").is_empty())
        .count() as i64;
    let spec = pdb.get("spec").cloned().unwrap_or(json!({}));
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    let by_count = matches!(min, Some(Value::Number(_))) || (min.is_none() && max.is_none());
    let expected = if by_count {
        Some(matching.len() as i64)
    } else {
        expected_from_controllers(state, &matching)
    };
    let (expected, desired) = match (expected, min, max) {
        (None, ..) => (0, healthy),
        (Some(e), Some(min), _) => (e, scaled(min, e)),
        (Some(e), None, Some(max)) => (e, (e - scaled(max, e)).max(0)),
        (Some(e), None, None) => (e, 0),
    };
    let allowed = (healthy - desired).max(0);
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut cond = condition(pdb, "DisruptionAllowed", status, reason, "", false);
    cond["observedGeneration"] = json!(generation(pdb));
    json!({
        "observedGeneration": generation(pdb),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [cond],
    })
}

/// Bring the status of every PDB in `ns` up to date.
pub fn recompute_pdbs(state: &mut State, ns: &str) {
    let (Some(pod_rt), Some(pdb_rt)) = (
        state.resolve("v1", "pods"),
        state.resolve("policy/v1", "poddisruptionbudgets"),
    ) else {
        return;
    };
    let pods: Vec<Value> = state
        .collection(&pod_rt, Some(ns))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    for (key, pdb) in state.collection(&pdb_rt, Some(ns)) {
        let status = pdb_status(state, &pdb, &pods);
        let same = pdb
            .get("status")
            .is_some_and(|old| strip_times(old) == strip_times(&status));
        if !same {
            let mut updated = pdb.clone();
            updated["status"] = status;
            state.put(key, updated);
        }
    }
}

fn strip_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "lastTransitionTime" | "lastUpdateTime"))
                .map(|(k, v)| (k.clone(), strip_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_times).collect()),
        other => other.clone(),
    }
}

fn find_by_uid(state: &State, uid: &str) -> Option<ObjKey> {
    state
        .objects
        .iter()
        .find(|(_, o)| meta_str(o, "uid") == uid)
        .map(|(k, _)| k.clone())
}

/// The garbage collector for an owner that is gone (or being deleted): orphan the
/// dependents, or delete those that have no other live owner.
pub fn collect_dependents(state: &mut State, uid: &str, orphan: bool) {
    if uid.is_empty() {
        return;
    }
    let dependents: Vec<(ObjKey, Value)> = state
        .objects
        .iter()
        .filter(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, mut obj) in dependents {
        let refs = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let others: Vec<Value> = refs.iter().filter(|r| r["uid"] != uid).cloned().collect();
        let other_alive = others.iter().any(|r| {
            r["uid"]
                .as_str()
                .is_some_and(|u| find_by_uid(state, u).is_some())
        });
        if orphan || other_alive {
            if others.is_empty() {
                remove_meta(&mut obj, "ownerReferences");
            } else {
                set_meta(&mut obj, "ownerReferences", json!(others));
            }
            state.put(key, obj);
        } else if let Some(removed) = state.take(&key) {
            after_remove(state, &key, &removed);
        }
    }
}

/// ReplicaSet / StatefulSet controller: a pod of a live owner went away, start another.
fn replace_pod(state: &mut State, key: &ObjKey, removed: &Value) {
    let mode = state.settings.pod_replacement;
    if mode == PodReplacement::None {
        return;
    }
    let owner = removed
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| {
                    r["controller"] == true
                        && (r["kind"] == "ReplicaSet" || r["kind"] == "StatefulSet")
                })
                .cloned()
        });
    let Some(owner) = owner else {
        return;
    };
    let owner_alive = owner["uid"]
        .as_str()
        .and_then(|u| find_by_uid(state, u))
        .and_then(|k| state.objects.get(&k))
        .is_some_and(|o| meta_str(o, "deletionTimestamp").is_empty());
    if !owner_alive {
        return;
    }
    let owner_name = owner["name"].as_str().unwrap_or("pod").to_string();
    let name = match mode {
        PodReplacement::SameName => key.name.clone(),
        _ => loop {
            let candidate = format!("{owner_name}-{}", state.random_suffix());
            let k = ObjKey {
                name: candidate.clone(),
                ..key.clone()
            };
            if !state.objects.contains_key(&k) {
                break candidate;
            }
        },
    };
    let mut pod = removed.clone();
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        remove_meta(&mut pod, f);
    }
    set_meta(&mut pod, "name", json!(name));
    set_meta(&mut pod, "uid", json!(uuid::Uuid::new_v4().to_string()));
    set_meta(&mut pod, "creationTimestamp", json!(now()));
    set_meta(&mut pod, "generation", json!(1));
    if mode == PodReplacement::SameName
        && let Some(h) = pod.pointer_mut("/spec/hostname")
    {
        *h = json!(name);
    }
    let old_node = removed
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let node = pick_node(state, &old_node);
    match (state.settings.replacement_ready, node) {
        (true, Some(node)) => {
            if !pod.get("spec").is_some_and(Value::is_object) {
                pod["spec"] = json!({});
            }
            pod["spec"]["nodeName"] = json!(node);
            pod["status"] = running_status(&node);
        }
        _ => {
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("nodeName");
            }
            pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
    }
    let new_key = ObjKey {
        name,
        ..key.clone()
    };
    let stored = state.put(new_key.clone(), pod);
    observe(state, &new_key, None, Some(&stored));
}

/// A schedulable node for a replacement pod: another node when there is one, the old one
/// if it is still schedulable, or the old one when the test defined no nodes at all.
fn pick_node(state: &State, old_node: &str) -> Option<String> {
    let nodes: Vec<&Value> = state
        .objects
        .iter()
        .filter(|(k, _)| k.group.is_empty() && k.plural == "nodes")
        .map(|(_, v)| v)
        .collect();
    if nodes.is_empty() {
        return (!old_node.is_empty()).then(|| old_node.to_string());
    }
    let schedulable: Vec<&str> = nodes
        .iter()
        .filter(|n| n.pointer("/spec/unschedulable") != Some(&json!(true)))
        .map(|n| meta_str(n, "name"))
        .collect();
    schedulable
        .iter()
        .find(|n| **n != old_node)
        .or_else(|| schedulable.first())
        .map(|n| n.to_string())
}

/// The status of a Running, Ready pod on `node`.
pub fn running_status(node: &str) -> Value {
    let t = now();
    let cond = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": t});
    json!({
        "phase": "Running",
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": format!("10.0.0.{}", 10 + suffix_from(node, 1).as_bytes()[0] % 200),
        "podIP": "10.244.1.17",
        "startTime": t,
        "qosClass": "BestEffort",
    })
}

/// The resource types a CRD object serves.
pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = crd.get("spec").ok_or("CRD without spec")?;
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = s("/group");
    let kind = s("/names/kind");
    let plural = s("/names/plural");
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Err("CRD needs spec.group, spec.names.kind and spec.names.plural".into());
    }
    let singular = match s("/names/singular") {
        x if x.is_empty() => kind.to_ascii_lowercase(),
        x => x,
    };
    let strings = |p: &str| -> Vec<String> {
        spec.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = s("/scope") != "Cluster";
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v["storage"] == true)
        .or_else(|| versions.first())
        .and_then(|v| v["name"].as_str())
        .ok_or("CRD without versions")?
        .to_string();
    let mut out = Vec::new();
    for v in versions.iter().filter(|v| v["served"] != false) {
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        let mut rt = ResourceType::custom(&group, version, &kind, &plural, namespaced);
        rt.singular = singular.clone();
        rt.short_names = strings("/names/shortNames");
        rt.categories = strings("/names/categories");
        rt.storage_version = storage.clone();
        if v.pointer("/subresources/status").is_some() {
            rt.status_subresource = true;
            rt.generation = super::resources::GenerationRule::AllButMetadataStatus;
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            let ptr = |k: &str| {
                scale
                    .get(k)
                    .and_then(Value::as_str)
                    .map(|p| p.replace('.', "/"))
            };
            rt.scale = Some(ScalePaths {
                spec_replicas: ptr("specReplicasPath").unwrap_or_else(|| "/spec/replicas".into()),
                status_replicas: ptr("statusReplicasPath")
                    .unwrap_or_else(|| "/status/replicas".into()),
                label_selector: ptr("labelSelectorPath"),
            });
        }
        rt.field_labels = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["jsonPath"].as_str())
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push(rt);
    }
    Ok(out)
}

fn crd_changed(state: &mut State, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
    match new {
        Some(crd) if meta_str(crd, "deletionTimestamp").is_empty() => {
            let Ok(types) = types_from_crd(crd) else {
                return;
            };
            if let Some(first) = types.first() {
                state.catalogue.unregister(&first.group, &first.plural);
            }
            for t in types {
                state.catalogue.register(t);
            }
            if crd.pointer("/status/conditions").is_none() {
                let mut established = crd.clone();
                let t = now();
                established["status"] = json!({
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
                    ],
                    "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
                    "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array)
                        .map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>())
                        .unwrap_or_default(),
                });
                state.put(key.clone(), established);
            }
        }
        _ => {
            let Some(crd) = new.or(old) else {
                return;
            };
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = crd
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            if new.is_none() {
                let doomed: Vec<ObjKey> = state
                    .objects
                    .keys()
                    .filter(|k| k.group == group && k.plural == plural)
                    .cloned()
                    .collect();
                for k in doomed {
                    state.take(&k);
                }
                state.catalogue.unregister(group, plural);
            }
        }
    }
}
