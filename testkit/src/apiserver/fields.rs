//! Field ownership for server-side apply, as the API server's field manager keeps it
//! (`managedFields`), enough to answer conflicts the way it does.
//!
//! Every write names a manager: an apply patch its `fieldManager` (operation `Apply`);
//! any other create, update or patch its `fieldManager`, else the User-Agent up to the
//! first `/` (operation `Update`). A manager owns the leaf fields it set or changed; a
//! change by another manager takes them over. An apply that would change a field another
//! manager owns is refused with 409 and one `FieldManagerConflict` cause per field,
//! unless `force=true`, which takes the fields over. Fields are leaf values addressed as
//! structured-merge-diff prints them (`.spec.replicas`, `.spec.template.spec.containers
//! [name="web"].resources.limits.memory`); lists merged by key (see
//! [`super::patch::merge_key`]) are addressed per element, other lists are one value.
//! `status` and the server-set metadata are not tracked. Objects put in with
//! [`super::ApiServer::insert`] have no managers until something writes them.
//!
//! Approximations: ownership is kept beside the object rather than in
//! `metadata.managedFields` (which answers omit); an apply does not remove fields its
//! manager applied before and applies no longer; a field is one leaf, so a manager owning
//! `.data.a` does not conflict with an apply of the whole `.data` map as a value.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::status::StatusError;
use super::store::{ObjKey, State, meta_str};

/// One segment of a field path: a map key, or a list element by its merge key.
type Path = Vec<String>;

/// One manager's fields of one object (a `managedFields` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `fieldManager`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
    /// apiVersion of the write.
    pub api_version: String,
    /// Owned leaf fields.
    pub fields: BTreeSet<Path>,
}

/// The managers of one object, for the object with this uid.
#[derive(Debug, Clone, Default)]
pub struct Managed {
    /// The object's uid (a new object of the same name starts afresh).
    pub uid: String,
    /// Its managers.
    pub entries: Vec<Entry>,
}

/// Print a path as structured-merge-diff does.
pub fn print(path: &Path) -> String {
    path.iter()
        .map(|s| {
            if s.starts_with('[') {
                s.clone()
            } else {
                format!(".{s}")
            }
        })
        .collect()
}

fn flatten(v: &Value, field: Option<&str>, prefix: &mut Path, out: &mut BTreeMap<Path, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                prefix.push(k.clone());
                flatten(x, Some(k), prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            let key = field
                .and_then(|f| super::patch::merge_key(f, items.iter().find(|i| i.is_object())));
            match key {
                Some(key) if items.iter().all(|i| i.get(key).is_some()) => {
                    for item in items {
                        let id = item.get(key).cloned().unwrap_or(Value::Null);
                        prefix.push(format!("[{key}={id}]"));
                        match item.as_object() {
                            Some(m) => {
                                // The key itself is part of the element's identity.
                                for (k, x) in m {
                                    if k == key {
                                        continue;
                                    }
                                    prefix.push(k.clone());
                                    flatten(x, Some(k), prefix, out);
                                    prefix.pop();
                                }
                                if m.len() == 1 {
                                    out.insert(prefix.clone(), json!({}));
                                }
                            }
                            None => {
                                out.insert(prefix.clone(), item.clone());
                            }
                        }
                        prefix.pop();
                    }
                }
                _ => {
                    out.insert(prefix.clone(), v.clone());
                }
            }
        }
        other => {
            out.insert(prefix.clone(), other.clone());
        }
    }
}

/// The tracked leaf fields of an object or an applied configuration, with their values.
pub fn leaves(obj: &Value) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(f) {
                        let mut p = vec!["metadata".to_string(), f.to_string()];
                        flatten(x, Some(f), &mut p, &mut out);
                    }
                }
            }
            _ => {
                let mut p = vec![k.clone()];
                flatten(v, Some(k), &mut p, &mut out);
            }
        }
    }
    out
}

/// The manager of a write that is not an apply: `fieldManager`, else the User-Agent's
/// first word (as the API server derives it).
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    match field_manager.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => user_agent
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    }
}

fn managed<'s>(state: &'s mut State, key: &ObjKey, uid: &str) -> &'s mut Managed {
    let m = state.managed.entry(key.clone()).or_default();
    if m.uid != uid {
        *m = Managed {
            uid: uid.to_string(),
            entries: Vec::new(),
        };
    }
    m
}

fn entry<'m>(
    m: &'m mut Managed,
    manager: &str,
    operation: &'static str,
    api_version: &str,
) -> &'m mut Entry {
    let pos = m
        .entries
        .iter()
        .position(|e| e.manager == manager && e.operation == operation);
    let i = match pos {
        Some(i) => i,
        None => {
            m.entries.push(Entry {
                manager: manager.to_string(),
                operation,
                api_version: api_version.to_string(),
                fields: BTreeSet::new(),
            });
            m.entries.len() - 1
        }
    };
    let e = &mut m.entries[i];
    e.api_version = api_version.to_string();
    e
}

/// How the conflict message names a manager (structured-merge-diff's `printManager`).
fn shown(e: &Entry) -> String {
    if e.operation == "Update" {
        format!("{:?} using {}", e.manager, e.api_version)
    } else {
        format!("{:?}", e.manager)
    }
}

/// The 409 of an apply that conflicts, as `NewApplyConflict` builds it.
fn conflict_error(conflicts: &[(String, Path)]) -> StatusError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {m}"),
                "field": print(p),
            })
        })
        .collect();
    let message = if let [(m, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {m}: {}",
            print(p)
        )
    } else {
        let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (m, p) in conflicts {
            by.entry(m).or_default().push(print(p));
        }
        let mut lines = Vec::new();
        for (m, paths) in by {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    StatusError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
}

/// Check an apply of `applied` by `manager` to `live` (the object as it is, `None` when
/// the apply creates it): the fields it would change that another manager owns.
pub fn check_apply(
    state: &State,
    key: &ObjKey,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<(), StatusError> {
    let Some(live) = live else {
        return Ok(());
    };
    if force {
        return Ok(());
    }
    let Some(m) = state
        .managed
        .get(key)
        .filter(|m| m.uid == meta_str(live, "uid"))
    else {
        return Ok(());
    };
    let now = leaves(live);
    let mut conflicts = Vec::new();
    for (path, value) in leaves(applied) {
        if now.get(&path) == Some(&value) {
            continue;
        }
        for e in &m.entries {
            if e.manager == manager && e.operation == "Apply" {
                continue;
            }
            if e.fields.contains(&path) {
                conflicts.push((shown(e), path.clone()));
            }
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(conflict_error(&conflicts))
    }
}

/// Record a successful apply: the manager owns every field it applied; the fields whose
/// value it changed are no one else's any more.
pub fn record_apply(
    state: &mut State,
    key: &ObjKey,
    before: Option<&Value>,
    after: &Value,
    applied: &Value,
    manager: &str,
) {
    let was = before.map(leaves).unwrap_or_default();
    let uid = meta_str(after, "uid").to_string();
    let api_version = meta_str_top(after, "apiVersion");
    let applied = leaves(applied);
    let m = managed(state, key, &uid);
    for (path, value) in &applied {
        if was.get(path) != Some(value) {
            for e in m.entries.iter_mut() {
                if !(e.manager == manager && e.operation == "Apply") {
                    e.fields.remove(path);
                }
            }
        }
    }
    let e = entry(m, manager, "Apply", &api_version);
    e.fields = applied.into_keys().collect();
    m.entries.retain(|e| !e.fields.is_empty());
}

/// Record a successful write that is not an apply: the manager owns the fields it set or
/// changed; fields it removed are no one's.
pub fn record_update(
    state: &mut State,
    key: &ObjKey,
    before: Option<&Value>,
    after: &Value,
    manager: &str,
) {
    let was = before.map(leaves).unwrap_or_default();
    let now = leaves(after);
    let uid = meta_str(after, "uid").to_string();
    let api_version = meta_str_top(after, "apiVersion");
    let m = managed(state, key, &uid);
    let changed: Vec<Path> = now
        .iter()
        .filter(|(p, v)| was.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .collect();
    let removed: Vec<Path> = was
        .keys()
        .filter(|p| !now.contains_key(*p))
        .cloned()
        .collect();
    for e in m.entries.iter_mut() {
        for p in changed.iter().chain(&removed) {
            e.fields.remove(p);
        }
    }
    if !changed.is_empty() {
        entry(m, manager, "Update", &api_version)
            .fields
            .extend(changed);
    }
    m.entries.retain(|e| !e.fields.is_empty());
}

fn meta_str_top(obj: &Value, field: &str) -> String {
    obj.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The managers of an object and their fields, for tests: `(manager, operation, fields)`.
pub fn owners(state: &State, key: &ObjKey) -> Vec<(String, String, Vec<String>)> {
    state
        .managed
        .get(key)
        .map(|m| {
            m.entries
                .iter()
                .map(|e| {
                    (
                        e.manager.clone(),
                        e.operation.to_string(),
                        e.fields.iter().map(print).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
