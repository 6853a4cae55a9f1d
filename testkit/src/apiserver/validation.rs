//! Validation the server applies before storing: object names, labels, and the handful of
//! type-specific rules heal can run into (replicas, selectors, pod spec immutability,
//! PDB budgets, Event fields, Lease durations). Unknown fields are never rejected; only a
//! few well-known fields are type-checked as the typed decoders of the API server would.

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::selectors::LabelSelector;
use super::status::FieldError;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_1123_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_label_1123(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain, as most object names must be.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_1123)
}

fn is_label_1035(s: &str) -> bool {
    is_label_1123(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Errors for a name that the resource's naming rule rejects.
pub fn name_errors(rt: &ResourceType, name: &str) -> Vec<FieldError> {
    let field = "metadata.name";
    let v = json!(name);
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            let mut e = Vec::new();
            if name.len() > 63 {
                e.push(FieldError::invalid(
                    field,
                    v.clone(),
                    "must be no more than 63 characters",
                ));
            }
            if !is_label_1123(name) {
                e.push(FieldError::invalid(field, v, LABEL_1123_MSG));
            }
            e
        }
        ("", "services") => {
            if is_label_1035(name) {
                vec![]
            } else {
                vec![FieldError::invalid(field, v, LABEL_1035_MSG)]
            }
        }
        _ => {
            let mut e = Vec::new();
            if name.len() > 253 {
                e.push(FieldError::invalid(
                    field,
                    v.clone(),
                    "must be no more than 253 characters",
                ));
            }
            if !is_subdomain(name) {
                e.push(FieldError::invalid(field, v, SUBDOMAIN_MSG));
            }
            e
        }
    }
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn label_key_ok(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_subdomain) && !name.is_empty() && label_value_ok(name)
}

/// Decode errors a typed decoder would report (the API server answers them with 400 on
/// create/update and 422 on patch). `None` when the well-known fields have the right types.
pub fn decode_error(rt: &ResourceType, obj: &Value) -> Option<String> {
    if rt.custom {
        return None;
    }
    let go_type = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    let meta = obj.get("metadata");
    if let Some(m) = meta
        && !m.is_object()
        && !m.is_null()
    {
        return Some(format!(
            "json: cannot unmarshal {} into Go struct field {}.metadata of type v1.ObjectMeta",
            go_type(m),
            rt.kind
        ));
    }
    for field in ["labels", "annotations"] {
        if let Some(map) = meta.and_then(|m| m.get(field)) {
            match map {
                Value::Object(entries) => {
                    if let Some((_, bad)) = entries.iter().find(|(_, v)| !v.is_string()) {
                        return Some(format!(
                            "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type string",
                            go_type(bad)
                        ));
                    }
                }
                Value::Null => {}
                other => {
                    return Some(format!(
                        "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type map[string]string",
                        go_type(other)
                    ));
                }
            }
        }
    }
    if matches!(
        (rt.group.as_str(), rt.kind.as_str()),
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet")
    ) && let Some(r) = obj.pointer("/spec/replicas")
        && !r.is_null()
        && r.as_i64().is_none_or(|n| i32::try_from(n).is_err())
    {
        let what = if r.is_number() {
            format!("number {r}")
        } else {
            go_type(r).to_string()
        };
        return Some(format!(
            "json: cannot unmarshal {what} into Go struct field {}Spec.spec.replicas of type int32",
            rt.kind
        ));
    }
    None
}

/// Validation on create.
pub fn validate_create(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = common(rt, obj);
    errs.extend(specific(rt, obj, None));
    errs
}

/// Validation on update (including patches and status writes).
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = common(rt, new);
    errs.extend(specific(rt, new, Some(old)));
    errs
}

fn common(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        errs.extend(name_errors(rt, name));
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !label_key_ok(k) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    json!(k),
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                ));
            }
            if let Some(v) = v.as_str()
                && !label_value_ok(v)
            {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    json!(v),
                    LABEL_VALUE_MSG,
                ));
            }
        }
    }
    errs
}

fn selector_of(obj: &Value) -> Option<&Value> {
    obj.pointer("/spec/selector").filter(|s| !s.is_null())
}

fn specific(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", kind @ ("Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet")) => {
            if kind != "DaemonSet"
                && let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                errs.push(FieldError::invalid(
                    "spec.replicas",
                    json!(r),
                    "must be greater than or equal to 0",
                ));
            }
            match selector_of(obj) {
                None => errs.push(FieldError::required("spec.selector", "")),
                Some(sel) => match LabelSelector::from_object(sel) {
                    Ok(s) if s.is_empty() => errs.push(FieldError::invalid(
                        "spec.selector",
                        sel.clone(),
                        &format!(
                            "empty selector is invalid for {}",
                            kind.to_ascii_lowercase()
                        ),
                    )),
                    Ok(s) => {
                        let template = json!({"metadata": obj.pointer("/spec/template/metadata").cloned().unwrap_or(json!({}))});
                        if !s.matches(&template) {
                            errs.push(FieldError::invalid(
                                "spec.template.metadata.labels",
                                template["metadata"]
                                    .get("labels")
                                    .cloned()
                                    .unwrap_or(json!({})),
                                "`selector` does not match template `labels`",
                            ));
                        }
                    }
                    Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), &e)),
                },
            }
            let containers = obj
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array);
            if containers.is_none_or(Vec::is_empty) {
                errs.push(FieldError::required("spec.template.spec.containers", ""));
            }
            if let Some(old) = old
                && selector_of(old) != selector_of(obj)
            {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    selector_of(obj).cloned().unwrap_or(Value::Null),
                    "field is immutable",
                ));
            }
        }
        ("", "Pod") => {
            let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
            if containers.is_none_or(Vec::is_empty) {
                errs.push(FieldError::required("spec.containers", ""));
            }
            if let Some(old) = old
                && strip_mutable_pod_fields(obj.get("spec"))
                    != strip_mutable_pod_fields(old.get("spec"))
            {
                errs.push(FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        ("policy", "PodDisruptionBudget") => {
            let spec = obj.get("spec");
            let min = spec
                .and_then(|s| s.get("minAvailable"))
                .filter(|v| !v.is_null());
            let max = spec
                .and_then(|s| s.get("maxUnavailable"))
                .filter(|v| !v.is_null());
            if min.is_some() && max.is_some() {
                errs.push(FieldError::invalid(
                    "spec",
                    spec.cloned().unwrap_or(Value::Null),
                    "minAvailable and maxUnavailable cannot be both set",
                ));
            }
            for (field, v) in [("spec.minAvailable", min), ("spec.maxUnavailable", max)] {
                match v {
                    Some(Value::Number(n)) if n.as_i64().is_none_or(|n| n < 0) => {
                        errs.push(FieldError::invalid(
                            field,
                            json!(n),
                            "must be greater than or equal to 0",
                        ));
                    }
                    Some(Value::String(s)) if parse_percent(s).is_none() => {
                        errs.push(FieldError::invalid(
                            field,
                            json!(s),
                            "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                        ));
                    }
                    _ => {}
                }
            }
        }
        ("", "ConfigMap") => {
            for field in ["data", "binaryData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
                            });
                        if !ok {
                            errs.push(FieldError::invalid(
                                &format!("{field}[{k}]"),
                                json!(k),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        ("coordination.k8s.io", "Lease") => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    json!(d),
                    "must be greater than 0",
                ));
            }
        }
        ("", "Event") => errs.extend(core_event(obj)),
        ("events.k8s.io", "Event") => errs.extend(new_event(obj)),
        _ => {}
    }
    errs
}

/// `"25%"` -> 25.
pub fn parse_percent(s: &str) -> Option<u32> {
    s.strip_suffix('%')?.parse().ok()
}

fn strip_mutable_pod_fields(spec: Option<&Value>) -> Value {
    let mut spec = spec.cloned().unwrap_or(Value::Null);
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    if let Some(m) = spec.as_object_mut() {
        m.remove("activeDeadlineSeconds");
        m.remove("tolerations");
        m.remove("terminationGracePeriodSeconds");
    }
    spec
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `legacyValidateEvent` for core/v1 Events.
fn core_event(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = str_at(obj, "/metadata/namespace");
    let involved_ns = str_at(obj, "/involvedObject/namespace");
    let event_time = str_at(obj, "/eventTime");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            json!(involved_ns),
            "does not match event.namespace",
        )
    };
    if event_time.is_empty() {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        for (ptr, field) in [
            ("/reportingComponent", "reportingComponent"),
            ("/reportingInstance", "reportingInstance"),
            ("/action", "action"),
            ("/reason", "reason"),
        ] {
            if str_at(obj, ptr).is_empty() {
                errs.push(FieldError::required(field, ""));
            }
        }
    }
    let t = str_at(obj, "/type");
    if !t.is_empty() && t != "Normal" && t != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            json!(t),
            &format!("has invalid value: {t}"),
        ));
    }
    errs
}

/// `ValidateEventCreate` for events.k8s.io/v1 Events.
fn new_event(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = str_at(obj, "/metadata/namespace");
    let regarding_ns = str_at(obj, "/regarding/namespace");
    if str_at(obj, "/eventTime").is_empty() {
        errs.push(FieldError::required("eventTime", ""));
    }
    if regarding_ns.is_empty() {
        if ns != "default" && ns != "kube-system" {
            errs.push(FieldError::invalid(
                "regarding.namespace",
                json!(regarding_ns),
                "does not match event.namespace",
            ));
        }
    } else if regarding_ns != ns {
        errs.push(FieldError::invalid(
            "regarding.namespace",
            json!(regarding_ns),
            "does not match event.namespace",
        ));
    }
    for (ptr, field) in [
        ("/reportingController", "reportingController"),
        ("/reportingInstance", "reportingInstance"),
        ("/action", "action"),
        ("/reason", "reason"),
    ] {
        if str_at(obj, ptr).is_empty() {
            errs.push(FieldError::required(field, ""));
        }
    }
    let t = str_at(obj, "/type");
    if t != "Normal" && t != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            json!(t),
            &format!("has invalid value: {t}"),
        ));
    }
    if str_at(obj, "/note").len() > 1024 {
        errs.push(FieldError::too_long("note", 1024));
    }
    errs
}
