//! The object lifecycle shared by the HTTP handlers and the test helpers: create, update
//! (main resource or status), delete with preconditions, grace periods, finalizers and
//! propagation, following the generic registry store of the API server.

use serde_json::{Map, Value, json};

use super::controllers;
use super::resources::{GenerationRule, ResourceType};
use super::status::{FieldError, StatusError};
use super::store::{
    ObjKey, PodTermination, State, meta_str, now, now_plus, remove_meta, set_meta, to_served,
    to_stored,
};
use super::validation;

/// Which part of an object a write replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object (status is kept when the type has a status subresource).
    Main,
    /// Only `status` (the `/status` subresource).
    Status,
}

/// How an update arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateCtx {
    /// Main resource or status.
    pub part: Part,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Whether the new object came from applying a patch (errors differ from PUT).
    pub is_patch: bool,
}

/// `DeleteOptions`, merged from the query and the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<String>,
    /// Deprecated `orphanDependents`.
    pub orphan_dependents: Option<bool>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: [All]`.
    pub dry_run: bool,
}

/// The stored object, as `rt` serves it.
pub fn get(state: &State, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, StatusError> {
    let key = ObjKey::new(rt, ns, name);
    state
        .objects
        .get(&key)
        .map(|o| to_served(rt, o))
        .ok_or_else(|| StatusError::not_found(&rt.group, &rt.plural, name))
}

fn check_type_meta(rt: &ResourceType, body: &Value) -> Result<(), StatusError> {
    if !body.is_object() {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be a JSON object describing a {})",
            rt.kind
        )));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !api_version.is_empty() && api_version != rt.api_version() {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if !kind.is_empty() && kind != rt.kind {
        return Err(StatusError::bad_request(format!(
            "{kind} in version {:?} cannot be handled as a {}: the kind in the data ({kind}) does not match the expected kind ({})",
            rt.version, rt.kind, rt.kind
        )));
    }
    Ok(())
}

fn set_type_meta(rt: &ResourceType, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
}

/// What a freshly created object's status is reset to (status is not user-settable).
fn initial_status(rt: &ResourceType, obj: &mut Value) {
    if !rt.status_subresource {
        return;
    }
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    match (rt.group.as_str(), rt.kind.as_str()) {
        // Nodes may set their status on create (the kubelet registers that way).
        ("", "Node") => {}
        ("", "Pod") => {
            m.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
        }
        ("", "Namespace") => {
            m.insert("status".into(), json!({"phase": "Active"}));
        }
        ("", "Service") => {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
        _ if rt.custom => {
            m.remove("status");
        }
        _ => {
            m.insert("status".into(), json!({}));
        }
    }
}

fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") => {
            if obj.pointer("/spec/replicas").is_none_or(Value::is_null)
                && obj.get("spec").is_some_and(Value::is_object)
            {
                obj["spec"]["replicas"] = json!(1);
            }
            if rt.kind == "Deployment" && obj.get("spec").is_some_and(Value::is_object) {
                let spec = &mut obj["spec"];
                if spec.get("strategy").is_none() {
                    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
                }
                if spec.get("revisionHistoryLimit").is_none() {
                    spec["revisionHistoryLimit"] = json!(10);
                }
                if spec.get("progressDeadlineSeconds").is_none() {
                    spec["progressDeadlineSeconds"] = json!(600);
                }
            }
        }
        ("", "Pod")
            if obj.get("spec").is_some_and(Value::is_object)
                && obj.pointer("/spec/terminationGracePeriodSeconds").is_none() =>
        {
            obj["spec"]["terminationGracePeriodSeconds"] = json!(30);
        }
        ("", "Namespace") => {
            let name = meta_str(obj, "name").to_string();
            if obj.get("spec").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            set_meta(obj, "labels", {
                let mut labels = obj
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                labels["kubernetes.io/metadata.name"] = json!(name);
                labels
            });
        }
        ("", "Event") => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("eventTime").or_insert(Value::Null);
                m.entry("reportingComponent").or_insert(json!(""));
                m.entry("reportingInstance").or_insert(json!(""));
            }
        }
        _ => {}
    }
}

/// `POST` a new object.
pub fn create(
    state: &mut State,
    rt: &ResourceType,
    ns: &str,
    body: &Value,
    dry_run: bool,
) -> Result<Value, StatusError> {
    check_type_meta(rt, body)?;
    if let Some(e) = validation::decode_error(rt, body) {
        return Err(StatusError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            rt.kind, rt.version, rt.kind
        )));
    }
    let mut obj = body.clone();
    set_type_meta(rt, &mut obj);
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if rt.namespaced {
        let body_ns = meta_str(&obj, "namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        set_meta(&mut obj, "namespace", json!(ns));
        let ns_type = state.resolve("v1", "namespaces");
        let ns_exists = ns_type
            .as_ref()
            .is_some_and(|t| state.objects.contains_key(&ObjKey::new(t, "", ns)));
        if !ns_exists {
            return Err(StatusError::not_found("", "namespaces", ns));
        }
    } else {
        remove_meta(&mut obj, "namespace");
    }
    if meta_str(&obj, "name").is_empty() {
        let prefix = meta_str(&obj, "generateName").to_string();
        if !prefix.is_empty() {
            let name = loop {
                let candidate = format!("{prefix}{}", state.random_suffix());
                if !state.objects.contains_key(&ObjKey::new(rt, ns, &candidate)) {
                    break candidate;
                }
            };
            set_meta(&mut obj, "name", json!(name));
        }
    }
    let name = meta_str(&obj, "name").to_string();
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(StatusError::new(
            500,
            "",
            "resourceVersion should not be set on objects to be created",
        ));
    }
    set_meta(&mut obj, "uid", json!(uuid::Uuid::new_v4().to_string()));
    set_meta(&mut obj, "creationTimestamp", json!(now()));
    for f in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
        "resourceVersion",
    ] {
        remove_meta(&mut obj, f);
    }
    if rt.generation == GenerationRule::None {
        remove_meta(&mut obj, "generation");
    } else {
        set_meta(&mut obj, "generation", json!(1));
    }
    initial_status(rt, &mut obj);
    apply_defaults(rt, &mut obj);
    let errs = validation::validate_create(rt, &obj);
    if !errs.is_empty() {
        return Err(StatusError::invalid(&rt.group, &rt.kind, &name, &errs));
    }
    let key = ObjKey::new(rt, ns, &name);
    if state.objects.contains_key(&key) {
        return Err(StatusError::already_exists(&rt.group, &rt.plural, &name));
    }
    if dry_run {
        return Ok(obj);
    }
    let stored = state.put(key.clone(), to_stored(rt, &obj));
    controllers::after_write(state, &key, None, &stored);
    Ok(to_served(rt, &stored))
}

/// Whether the generation rule sees a change between two versions of an object.
fn generation_changed(rule: GenerationRule, old: &Value, new: &Value) -> bool {
    let without = |v: &Value, drop: &[&str]| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for d in drop {
                m.remove(*d);
            }
        }
        v
    };
    match rule {
        GenerationRule::None => false,
        GenerationRule::Spec => old.get("spec") != new.get("spec"),
        GenerationRule::SpecAndAnnotations => {
            old.get("spec") != new.get("spec")
                || old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations")
        }
        GenerationRule::AllButMetadataStatus => {
            let drop = ["metadata", "status", "apiVersion", "kind"];
            without(old, &drop) != without(new, &drop)
        }
        GenerationRule::AllButMetadata => {
            let drop = ["metadata", "apiVersion", "kind"];
            without(old, &drop) != without(new, &drop)
        }
    }
}

/// What an update stores: system fields from the old object, status rules, generation.
fn prepare_update(rt: &ResourceType, old: &Value, new: &Value, part: Part) -> Value {
    let mut out = match part {
        Part::Main => {
            let mut out = new.clone();
            if rt.status_subresource {
                match (out.as_object_mut(), old.get("status")) {
                    (Some(m), Some(s)) => {
                        m.insert("status".into(), s.clone());
                    }
                    (Some(m), None) => {
                        m.remove("status");
                    }
                    _ => {}
                }
            }
            out
        }
        Part::Status => {
            let mut out = old.clone();
            match (out.as_object_mut(), new.get("status")) {
                (Some(m), Some(s)) => {
                    m.insert("status".into(), s.clone());
                }
                (Some(m), None) => {
                    m.remove("status");
                }
                _ => {}
            }
            out
        }
    };
    set_type_meta(rt, &mut out);
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "name",
        "namespace",
        "generation",
    ] {
        match old.pointer(&format!("/metadata/{f}")) {
            Some(v) => set_meta(&mut out, f, v.clone()),
            None => remove_meta(&mut out, f),
        }
    }
    for f in ["managedFields", "selfLink"] {
        remove_meta(&mut out, f);
    }
    set_meta(
        &mut out,
        "resourceVersion",
        json!(meta_str(old, "resourceVersion")),
    );
    if part == Part::Main && generation_changed(rt.generation, old, &out) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        set_meta(&mut out, "generation", json!(g + 1));
    }
    out
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `PUT` (or the write that ends a `PATCH`) of an object or its status. Answers the stored
/// object and whether it was created (events allow create-on-update).
pub fn update(
    state: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    body: &Value,
    ctx: UpdateCtx,
) -> Result<(Value, bool), StatusError> {
    check_type_meta(rt, body)?;
    if let Some(e) = validation::decode_error(rt, body) {
        return Err(if ctx.is_patch {
            StatusError::invalid(
                "",
                "",
                "",
                &[FieldError::invalid(
                    "patch",
                    Value::String(body.to_string()),
                    &e,
                )],
            )
        } else {
            StatusError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                rt.kind, rt.version, rt.kind
            ))
        });
    }
    let key = ObjKey::new(rt, ns, name);
    let Some(current) = state.objects.get(&key) else {
        if rt.create_on_update && ctx.part == Part::Main && !ctx.is_patch {
            let body_name = meta_str(body, "name");
            if body_name != name {
                return Err(name_mismatch(body_name, name));
            }
            return create(state, rt, ns, body, ctx.dry_run).map(|v| (v, true));
        }
        return Err(StatusError::not_found(&rt.group, &rt.plural, name));
    };
    let old = to_served(rt, current);
    let body_ns = meta_str(body, "namespace");
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_name = meta_str(body, "name");
    if body_name != name {
        return Err(if ctx.is_patch {
            StatusError::invalid(
                &rt.group,
                &rt.kind,
                name,
                &[FieldError::invalid(
                    "metadata.name",
                    json!(body_name),
                    "field is immutable",
                )],
            )
        } else {
            name_mismatch(body_name, name)
        });
    }
    let body_rv = meta_str(body, "resourceVersion");
    if !body_rv.is_empty() && body_rv != meta_str(&old, "resourceVersion") {
        return Err(StatusError::stale(&rt.group, &rt.plural, name));
    }
    let body_uid = meta_str(body, "uid");
    let old_uid = meta_str(&old, "uid");
    if !body_uid.is_empty() && body_uid != old_uid {
        return Err(if ctx.is_patch {
            StatusError::invalid(
                &rt.group,
                &rt.kind,
                name,
                &[FieldError::invalid(
                    "metadata.uid",
                    json!(body_uid),
                    "field is immutable",
                )],
            )
        } else {
            let storage_key = if rt.namespaced {
                format!("/registry/{}/{ns}/{name}", rt.group_resource())
            } else {
                format!("/registry/{}/{name}", rt.group_resource())
            };
            StatusError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "StorageError: invalid object, Code: 4, Key: {storage_key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {body_uid}, UID in object meta: {old_uid}"
                ),
            )
        });
    }
    let new = prepare_update(rt, &old, body, ctx.part);
    let mut errs = validation::validate_update(rt, &old, &new);
    if !meta_str(&old, "deletionTimestamp").is_empty() {
        let before = finalizers(&old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    json_go_strings(&added)
                ),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(StatusError::invalid(&rt.group, &rt.kind, name, &errs));
    }
    if new == old {
        // A no-op write stores nothing: same resourceVersion, no watch event.
        return Ok((old, false));
    }
    if ctx.dry_run {
        return Ok((new, false));
    }
    if !meta_str(&new, "deletionTimestamp").is_empty() && finalizers(&new).is_empty() {
        if let Some(removed) = state.take(&key) {
            controllers::after_remove(state, &key, &removed);
        }
        return Ok((new, false));
    }
    let stored = state.put(key.clone(), to_stored(rt, &new));
    controllers::after_write(state, &key, Some(current_clone(&old, rt)).as_ref(), &stored);
    Ok((to_served(rt, &stored), false))
}

fn current_clone(old_served: &Value, rt: &ResourceType) -> Value {
    to_stored(rt, old_served)
}

fn json_go_strings(v: &[String]) -> String {
    format!(
        "[]string{{{}}}",
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn name_mismatch(body_name: &str, url_name: &str) -> StatusError {
    StatusError::bad_request(format!(
        "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
    ))
}

/// The answer to a delete: status code and body.
pub type Deleted = (u16, Value);

/// `DELETE` one object.
pub fn delete(
    state: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, StatusError> {
    let key = ObjKey::new(rt, ns, name);
    let obj = get(state, rt, ns, name)?;
    let conflict = |what: String| StatusError::conflict(&rt.group, &rt.kind, name, &what);
    if let Some(uid) = &opts.uid
        && uid != meta_str(&obj, "uid")
    {
        return Err(conflict(format!(
            "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
            meta_str(&obj, "uid")
        )));
    }
    if let Some(rv) = &opts.resource_version
        && rv != meta_str(&obj, "resourceVersion")
    {
        return Err(conflict(format!(
            "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
            meta_str(&obj, "resourceVersion")
        )));
    }
    let is_pod = rt.group.is_empty() && rt.kind == "Pod";
    if !meta_str(&obj, "deletionTimestamp").is_empty() {
        if is_pod && opts.grace_period == Some(0) && !opts.dry_run {
            finish_pod_termination(state, &key);
        }
        return Ok((200, obj));
    }
    let grace = if is_pod {
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        let scheduled = !obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if !scheduled || phase == "Succeeded" || phase == "Failed" {
            0
        } else {
            opts.grace_period
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .max(0)
        }
    } else {
        0
    };
    let propagation = opts.propagation.clone().unwrap_or_else(|| {
        if opts.orphan_dependents == Some(true) {
            "Orphan".into()
        } else {
            "Background".into()
        }
    });
    let gc_finalizer = match propagation.as_str() {
        "Foreground" => Some("foregroundDeletion"),
        "Orphan" => Some("orphan"),
        _ => None,
    };
    if grace > 0 {
        let mut terminating = obj.clone();
        set_meta(
            &mut terminating,
            "deletionTimestamp",
            json!(now_plus(grace)),
        );
        set_meta(&mut terminating, "deletionGracePeriodSeconds", json!(grace));
        if opts.dry_run {
            return Ok((200, terminating));
        }
        let stored = state.put(key.clone(), to_stored(rt, &terminating));
        controllers::after_write(state, &key, Some(&to_stored(rt, &obj)), &stored);
        let answer = to_served(rt, &stored);
        match state.settings.pod_termination {
            PodTermination::Immediate => finish_pod_termination(state, &key),
            PodTermination::AfterDelay(d) => controllers::schedule(
                state,
                d,
                controllers::Job::FinishTermination(key.clone(), meta_str(&obj, "uid").to_string()),
            ),
            PodTermination::Never => {}
        }
        return Ok((200, answer));
    }
    let mut fins = finalizers(&obj);
    if !fins.is_empty() || gc_finalizer.is_some() {
        let mut deleting = obj.clone();
        set_meta(&mut deleting, "deletionTimestamp", json!(now()));
        set_meta(&mut deleting, "deletionGracePeriodSeconds", json!(0));
        if let Some(f) = gc_finalizer
            && !fins.iter().any(|x| x == f)
        {
            fins.push(f.to_string());
        }
        set_meta(&mut deleting, "finalizers", json!(fins));
        if opts.dry_run {
            return Ok((200, deleting));
        }
        let stored = state.put(key.clone(), to_stored(rt, &deleting));
        let answer = to_served(rt, &stored);
        if let Some(f) = gc_finalizer {
            let uid = meta_str(&obj, "uid").to_string();
            controllers::collect_dependents(state, &uid, f == "orphan");
            fins.retain(|x| x != f);
            if fins.is_empty() {
                if let Some(removed) = state.take(&key) {
                    controllers::after_remove(state, &key, &removed);
                }
            } else {
                let mut rest = stored.clone();
                set_meta(&mut rest, "finalizers", json!(fins));
                state.put(key.clone(), rest);
            }
        }
        return Ok((200, answer));
    }
    if !opts.dry_run
        && let Some(removed) = state.take(&key)
    {
        controllers::after_remove(state, &key, &removed);
    }
    if rt.group.is_empty() && rt.kind == "Namespace" {
        // The namespace controller empties and removes it at once here; the answer shows
        // what a real server answers first: the namespace, Terminating.
        let mut terminating = obj;
        set_meta(&mut terminating, "deletionTimestamp", json!(now()));
        terminating["status"] = json!({"phase": "Terminating"});
        Ok((200, terminating))
    } else if rt.return_deleted_object {
        Ok((200, obj))
    } else {
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !rt.group.is_empty() {
            details.insert("group".into(), json!(rt.group));
        }
        details.insert("kind".into(), json!(rt.plural));
        details.insert("uid".into(), json!(meta_str(&obj, "uid")));
        Ok((
            200,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": Value::Object(details),
            }),
        ))
    }
}

/// The kubelet confirms a graceful deletion: the pod is gone.
pub fn finish_pod_termination(state: &mut State, key: &ObjKey) {
    if let Some(removed) = state.take(key) {
        controllers::after_remove(state, key, &removed);
    }
}

/// Put test data in place as-is, filling only what the server always sets (uid,
/// resourceVersion, creationTimestamp, generation 1, namespace). Runs the observing
/// controllers (PDB status, CRD registration) but not the rollout controller.
pub fn insert_raw(state: &mut State, obj: Value) -> Result<Value, String> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or("insert: the object has no apiVersion")?
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("insert: the object has no kind")?
        .to_string();
    let rt = state
        .catalogue
        .types()
        .iter()
        .find(|t| t.api_version() == api_version && t.kind == kind)
        .cloned()
        .ok_or_else(|| {
            format!(
                "insert: the server does not serve {kind} in {api_version} (register the CRD first)"
            )
        })?;
    let name = meta_str(&obj, "name").to_string();
    if name.is_empty() {
        return Err(format!("insert: the {kind} has no metadata.name"));
    }
    let mut obj = obj;
    let ns = if rt.namespaced {
        let ns = match meta_str(&obj, "namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        set_meta(&mut obj, "namespace", json!(ns));
        state.ensure_namespace(&ns);
        ns
    } else {
        remove_meta(&mut obj, "namespace");
        String::new()
    };
    let key = ObjKey::new(&rt, &ns, &name);
    let old = state.objects.get(&key).cloned();
    if meta_str(&obj, "uid").is_empty() {
        let uid = old
            .as_ref()
            .map(|o| meta_str(o, "uid").to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        set_meta(&mut obj, "uid", json!(uid));
    }
    if meta_str(&obj, "creationTimestamp").is_empty() {
        set_meta(&mut obj, "creationTimestamp", json!(now()));
    }
    if rt.generation != GenerationRule::None && obj.pointer("/metadata/generation").is_none() {
        set_meta(&mut obj, "generation", json!(1));
    }
    let stored = state.put(key.clone(), to_stored(&rt, &obj));
    controllers::observe(state, &key, old.as_ref(), Some(&stored));
    Ok(to_served(&rt, &stored))
}
