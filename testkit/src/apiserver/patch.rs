//! The four PATCH flavours: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic
//! merge patch and server-side apply.
//!
//! Strategic merge patch is an approximation: merge patch semantics, plus merge-by-key for
//! the lists kubectl and heal touch (containers, env, volumes, ports, conditions, ...: see
//! [`merge_key`]), union for `finalizers`, and the `$patch: delete|replace`,
//! `$deleteFromPrimitiveList/<field>` directives; `$setElementOrder` and `$retainKeys` are
//! accepted and ignored. The merge key depends only on the field name, not on the type that
//! holds it. Server-side apply has no field ownership: it merges the applied configuration
//! into the live object (strategic rules for built-ins, RFC 7386 for custom resources) and
//! never reports an ownership conflict.

use serde_json::{Map, Value};

use super::status::StatusError;

/// Apply an RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Apply an RFC 6902 JSON patch. A malformed patch is a 400; an operation that cannot be
/// applied (failed `test`, missing path) is the 422 the API server answers.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), StatusError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        StatusError::bad_request(format!(
            "json: cannot unmarshal JSON patch: {e} (a JSON patch is an array of {{\"op\", \"path\", ...}} operations)"
        ))
    })?;
    json_patch::patch(target, &ops).map_err(|_| {
        // k8s.io/apiserver patch.go: NewGenericServerResponse(422, ...) drops the detail.
        StatusError::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        )
        .with_details(serde_json::json!({}))
    })
}

/// The key that identifies elements of a list field in a strategic merge patch, if the
/// field is merged by key rather than replaced.
pub fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "envFrom" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// List fields whose primitive elements are merged as a set.
fn is_set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Apply a strategic merge patch (see the module docs for what is approximated).
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), StatusError> {
    if !patch.is_object() {
        return Err(StatusError::bad_request(
            "invalid JSON document: a strategic merge patch must be a JSON object",
        ));
    }
    smp_object(target, patch);
    Ok(())
}

fn smp_object(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = clean(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tm) = target.as_object_mut() else {
        return;
    };
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (tm.get_mut(field), pv.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() || pv.get("$patch").and_then(Value::as_str) == Some("delete") {
            tm.remove(k);
            continue;
        }
        match pv {
            Value::Array(items) => {
                let key = merge_key(k, items.iter().find(|i| i.is_object()));
                match (tm.get_mut(k), key) {
                    (Some(Value::Array(existing)), Some(key)) => merge_list(existing, items, key),
                    (Some(Value::Array(existing)), None) if is_set_list(k) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        let cleaned: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").is_none())
                            .map(clean)
                            .collect();
                        tm.insert(k.clone(), Value::Array(cleaned));
                    }
                }
            }
            Value::Object(_) => {
                let slot = tm
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                smp_object(slot, pv);
            }
            other => {
                tm.insert(k.clone(), other.clone());
            }
        }
    }
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], key: &str) {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(clean)
            .collect();
        return;
    }
    for item in items {
        let id = item.get(key);
        let pos = id.and_then(|id| existing.iter().position(|e| e.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(p), true) => {
                existing.remove(p);
            }
            (None, true) => {}
            (Some(p), false) => smp_object(&mut existing[p], item),
            (None, false) => existing.push(clean(item)),
        }
    }
}

/// Strip patch directives and nulls from a value that is being added wholesale.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}
