//! Request handling without I/O: route a request (discovery, resource, subresource), check
//! the query options, and run the verb against the state. The server module does the HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::controllers;
use super::ops::{self, DeleteOptions, Part, UpdateCtx};
use super::patch;
use super::resources::{ResourceType, split_api_version};
use super::selectors::{FieldRequirement, FieldSelector, LabelSelector};
use super::status::{FieldError, StatusError};
use super::store::{EventType, ObjKey, State, meta_str, to_served};

/// Media types of the four PATCH flavours.
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// RFC 6902.
pub const JSON_PATCH: &str = "application/json-patch+json";
/// Strategic merge patch.
pub const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
/// Server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Bodies above this size get 413, like the API server's 3 MiB limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// An HTTP request, already read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Method, upper case.
    pub method: String,
    /// Path, percent-decoded.
    pub path: String,
    /// Query string as sent.
    pub raw_query: String,
    /// Every query parameter in order, decoded.
    pub query_all: Vec<(String, String)>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Accept` header.
    pub accept: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// `User-Agent` header (names the field manager of writes without `fieldManager`).
    pub user_agent: Option<String>,
}

impl Request {
    /// Build a request, decoding the query string.
    pub fn new(
        method: &str,
        path: &str,
        raw_query: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Request {
        let query_all = raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Request {
            method: method.to_ascii_uppercase(),
            path: decode_path(path),
            raw_query: raw_query.to_string(),
            query_all,
            content_type: content_type.map(str::to_string),
            accept: accept.map(str::to_string),
            body,
            user_agent: None,
        }
    }

    /// The query as a map (last value wins).
    pub fn query(&self) -> BTreeMap<String, String> {
        self.query_all.iter().cloned().collect()
    }

    /// One query parameter (last value wins).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query_all
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.query_all
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The media type of the body, lower case, without parameters.
    pub fn media_type(&self) -> String {
        self.content_type
            .as_deref()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// The body parsed for the log: JSON, or YAML for apply patches.
    pub fn body_value(&self) -> Option<Value> {
        if self.body.is_empty() {
            return None;
        }
        if let Ok(v) = serde_json::from_slice(&self.body) {
            return Some(v);
        }
        let media = self.media_type();
        if media == APPLY_PATCH || media == "application/yaml" {
            return yaml_serde::from_slice(&self.body).ok();
        }
        None
    }
}

fn decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

fn decode_path(s: &str) -> String {
    percent_decode(s)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A streaming watch to start.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    /// The watched type.
    pub rt: ResourceType,
    /// Namespace filter.
    pub namespace: Option<String>,
    /// Label filter.
    pub labels: LabelSelector,
    /// Field filter.
    pub fields: FieldSelector,
    /// Send changes after this resourceVersion.
    pub since: u64,
    /// Synthetic ADDED events first (objects as served).
    pub initial: Vec<Value>,
    /// Then a BOOKMARK marking the end of the initial events (`sendInitialEvents`).
    pub initial_bookmark: Option<u64>,
    /// Close after this long (`timeoutSeconds`).
    pub timeout: Duration,
    /// Send only this ERROR event (410 Expired) and close.
    pub expired: Option<StatusError>,
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body.
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Value,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A plain-text body.
    Text {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// A watch stream.
    Watch(Box<WatchPlan>),
}

impl Reply {
    fn ok(status: u16, body: Value) -> Reply {
        Reply::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// The HTTP status this reply starts with.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json { status, .. } | Reply::Text { status, .. } => *status,
            Reply::Watch(_) => 200,
        }
    }
}

impl From<StatusError> for Reply {
    fn from(e: StatusError) -> Reply {
        Reply::Json {
            status: e.code,
            body: e.body(),
            headers: e.headers.clone(),
        }
    }
}

/// The resource a path names.
#[derive(Debug, Clone)]
pub struct Target {
    /// The type.
    pub rt: ResourceType,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `eviction`).
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    pub legacy_watch: bool,
}

/// Where a path leads.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/`.
    Root,
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    Api,
    /// `/apis`.
    Apis,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`.
    GroupVersion(String, String),
    /// A resource or subresource.
    Resource(Box<Target>),
    /// An unknown API path (404 Status).
    Missing,
    /// An unknown non-API path (404 text, like the API server's mux).
    MissingText,
}

/// Resolve a path against the served types.
pub fn route(state: &State, path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        [""] => return Route::Root,
        ["version"] => return Route::Version,
        ["healthz" | "livez" | "readyz", ..] => return Route::Health,
        ["api"] => return Route::Api,
        ["apis"] => return Route::Apis,
        ["api", v] => return Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g] => return Route::Group(g.to_string()),
        ["apis", g, v] => return Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest.to_vec()),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest.to_vec()),
        _ => return Route::MissingText,
    };
    let (legacy_watch, rest) = match rest.as_slice() {
        ["watch", tail @ ..] => (true, tail.to_vec()),
        _ => (false, rest),
    };
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), rest[2..].to_vec())
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Route::Missing,
    };
    let Some(rt) = state.catalogue.find(&group, &version, plural) else {
        return Route::Missing;
    };
    if namespace.is_some() && !rt.namespaced {
        return Route::Missing;
    }
    if namespace.is_none() && rt.namespaced && name.is_some() {
        return Route::Missing;
    }
    if let Some(s) = &sub {
        let served = match s.as_str() {
            "status" => rt.status_subresource,
            "scale" => rt.scale.is_some(),
            "eviction" => rt.eviction,
            _ => false,
        };
        if !served {
            return Route::Missing;
        }
    }
    Route::Resource(Box::new(Target {
        rt: rt.clone(),
        namespace,
        name,
        subresource: sub,
        legacy_watch,
    }))
}

/// Attributes of a request as the authorizer sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Plural resource (empty for non-resource paths).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The path, for non-resource requests.
    pub path: String,
}

/// Compute the authorizer attributes of a request.
pub fn attributes(state: &State, req: &Request) -> Attributes {
    let watch = matches!(req.param("watch"), Some("true" | "1"));
    match route(state, &req.path) {
        Route::Resource(t) => {
            let verb = match (req.method.as_str(), t.name.is_some()) {
                ("GET", _) if watch || t.legacy_watch => "watch",
                ("GET", true) => "get",
                ("GET", false) => "list",
                ("POST", _) => "create",
                ("PUT", _) => "update",
                ("PATCH", _) => "patch",
                ("DELETE", true) => "delete",
                ("DELETE", false) => "deletecollection",
                _ => "",
            };
            Attributes {
                verb: verb.to_string(),
                group: t.rt.group.clone(),
                resource: t.rt.plural.clone(),
                subresource: t.subresource.clone().unwrap_or_default(),
                namespace: t.namespace.clone().unwrap_or_default(),
                name: t.name.clone().unwrap_or_default(),
                path: req.path.clone(),
            }
        }
        _ => Attributes {
            verb: req.method.to_ascii_lowercase(),
            path: req.path.clone(),
            ..Attributes::default()
        },
    }
}

/// 403 as RBAC words it for this request and user.
pub fn forbidden_for(attrs: &Attributes, user: &str) -> StatusError {
    let reason = if attrs.resource.is_empty() {
        format!("User {user:?} cannot {} path {:?}", attrs.verb, attrs.path)
    } else {
        let resource = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        if attrs.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                attrs.verb, attrs.group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                attrs.verb, attrs.group, attrs.namespace
            )
        }
    };
    StatusError::forbidden(&attrs.group, &attrs.resource, &attrs.name, &reason)
}

/// 409 Conflict on the requested object, as a stale resourceVersion produces it.
pub fn conflict_for(attrs: &Attributes) -> StatusError {
    StatusError::stale(&attrs.group, &attrs.resource, &attrs.name)
}

/// Whether the Accept header allows JSON (or YAML). Discovery and Table requests always
/// carry a plain `application/json` fallback.
fn acceptable(accept: Option<&str>) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let special =
            parts.any(|p| p.starts_with("as=") || p.starts_with("g=") || p.starts_with("v="));
        !special
            && matches!(
                media.as_str(),
                "application/json" | "application/yaml" | "application/*" | "*/*" | "*"
            )
    })
}

/// Answer a request (faults and authentication are handled by the caller).
pub fn serve(state: &mut State, req: &Request, server_address: &str) -> Reply {
    if req.method == "POST"
        && req.path == "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        && let Some(user) = &state.settings.self_subject
    {
        return Reply::ok(
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {"username": user, "groups": ["system:authenticated"]}}}),
        );
    }
    let r = route(state, &req.path);
    if matches!(r, Route::Health) {
        return Reply::Text {
            status: 200,
            body: "ok".into(),
        };
    }
    if matches!(r, Route::MissingText) {
        return Reply::Text {
            status: 404,
            body: "404 page not found\n".into(),
        };
    }
    if !acceptable(req.accept.as_deref()) {
        return StatusError::not_acceptable().into();
    }
    let discovery = !matches!(r, Route::Resource(_) | Route::Missing);
    if discovery && req.method != "GET" {
        return StatusError::method_not_allowed().into();
    }
    match r {
        Route::Root => Reply::ok(
            200,
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}),
        ),
        Route::Version => Reply::ok(
            200,
            json!({
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.1",
                "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
                "gitTreeState": "clean",
                "buildDate": "2025-05-15T08:19:08Z",
                "goVersion": "go1.24.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            }),
        ),
        Route::Api => Reply::ok(200, state.catalogue.api_versions(server_address)),
        Route::Apis => Reply::ok(200, state.catalogue.api_group_list()),
        Route::Group(g) => match state.catalogue.api_group(&g) {
            Some(v) => Reply::ok(200, v),
            None => StatusError::no_route().into(),
        },
        Route::GroupVersion(g, v) => match state.catalogue.resource_list(&g, &v) {
            Some(list) => Reply::ok(200, list),
            None => StatusError::no_route().into(),
        },
        Route::Resource(t) => tracked(state, req, &t).unwrap_or_else(Reply::from),
        Route::Missing => StatusError::no_route().into(),
        Route::Health | Route::MissingText => StatusError::no_route().into(),
    }
}

fn options_invalid(kind: &str, errs: &[FieldError]) -> StatusError {
    StatusError::invalid("meta.k8s.io", kind, "", errs)
}

/// `dryRun` query values: none, or all `All`.
fn dry_run(req: &Request, options_kind: &str) -> Result<bool, StatusError> {
    let values = req.values("dryRun");
    if values.is_empty() {
        return Ok(false);
    }
    if values.iter().all(|v| *v == "All") {
        return Ok(true);
    }
    Err(options_invalid(
        options_kind,
        &[FieldError::not_supported("dryRun", json!(values), &["All"])],
    ))
}

fn check_field_validation(req: &Request, options_kind: &str) -> Result<(), StatusError> {
    match req.param("fieldValidation") {
        None | Some("" | "Ignore" | "Warn" | "Strict") => Ok(()),
        Some(other) => Err(options_invalid(
            options_kind,
            &[FieldError::not_supported(
                "fieldValidation",
                json!(other),
                &["", "Ignore", "Warn", "Strict"],
            )],
        )),
    }
}

/// Parse a create/update body (JSON or YAML).
fn parse_body(req: &Request) -> Result<Value, StatusError> {
    let media = req.media_type();
    let value = match media.as_str() {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice::<Value>(&req.body).map_err(|e| {
                StatusError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {e}"
                ))
            })?
        }
        "application/yaml" => yaml_serde::from_slice::<Value>(&req.body)
            .map_err(|e| StatusError::bad_request(format!("error converting YAML to JSON: {e}")))?,
        _ => {
            return Err(StatusError::unsupported_media_type(&[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ]));
        }
    };
    if !value.is_object() {
        return Err(StatusError::bad_request(format!(
            "couldn't get version/kind; json parse error: json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            match value {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "null",
            }
        )));
    }
    Ok(value)
}

/// [`resource`], keeping field ownership (see [`super::fields`]): a server-side apply that
/// would change fields another manager owns is refused with 409 before anything changes
/// (unless `force=true`), and every write records what its manager now owns.
fn tracked(state: &mut State, req: &Request, t: &Target) -> Result<Reply, StatusError> {
    let writes = matches!(req.method.as_str(), "POST" | "PUT" | "PATCH")
        && matches!(t.subresource.as_deref(), None | Some("scale"))
        && !(req.method == "POST" && t.name.is_some());
    if !writes {
        return resource(state, req, t);
    }
    let rt = t.rt.clone();
    let ns = t.namespace.clone().unwrap_or_default();
    let dry = req.values("dryRun").contains(&"All");
    let before = t
        .name
        .as_deref()
        .and_then(|n| ops::get(state, &rt, &ns, n).ok());
    let field_manager = req.param("fieldManager").filter(|m| !m.is_empty());
    let applied: Option<Value> =
        (req.method == "PATCH" && req.media_type() == APPLY_PATCH && t.subresource.is_none())
            .then(|| yaml_serde::from_slice(&req.body).ok())
            .flatten();
    if let (Some(applied), Some(name), Some(manager)) = (&applied, &t.name, field_manager) {
        let key = ObjKey::new(&rt, &ns, name);
        let force = matches!(req.param("force"), Some("true" | "1"));
        super::fields::check_apply(state, &key, before.as_ref(), applied, manager, force)?;
    }
    let reply = resource(state, req, t)?;
    if dry || reply.status() >= 300 {
        return Ok(reply);
    }
    let name = match (&t.name, &reply) {
        (Some(n), _) => n.clone(),
        (None, Reply::Json { body, .. }) => meta_str(body, "name").to_string(),
        _ => return Ok(reply),
    };
    let Ok(after) = ops::get(state, &rt, &ns, &name) else {
        return Ok(reply);
    };
    let key = ObjKey::new(&rt, &ns, &name);
    match (&applied, field_manager) {
        (Some(applied), Some(manager)) => {
            super::fields::record_apply(state, &key, before.as_ref(), &after, applied, manager)
        }
        _ => {
            let manager = super::fields::manager_of(field_manager, req.user_agent.as_deref());
            super::fields::record_update(state, &key, before.as_ref(), &after, &manager);
        }
    }
    Ok(reply)
}

fn resource(state: &mut State, req: &Request, t: &Target) -> Result<Reply, StatusError> {
    let rt = &t.rt;
    let ns = t.namespace.clone().unwrap_or_default();
    let watch = t.legacy_watch || matches!(req.param("watch"), Some("true" | "1"));
    let sub = t.subresource.as_deref();
    let verb_ok = |verb: &str| {
        if rt.allows(verb) {
            Ok(())
        } else {
            Err(StatusError::method_not_allowed())
        }
    };
    match (req.method.as_str(), t.name.as_deref(), sub) {
        ("GET", None, None) => {
            if watch {
                verb_ok("watch")?;
                watch_plan(state, req, t, None)
            } else {
                verb_ok("list")?;
                list(state, req, t)
            }
        }
        ("GET", Some(name), None) => {
            if watch {
                verb_ok("watch")?;
                return watch_plan(state, req, t, Some(name));
            }
            verb_ok("get")?;
            controllers::on_read(state, &ObjKey::new(rt, &ns, name));
            Ok(Reply::ok(200, ops::get(state, rt, &ns, name)?))
        }
        ("POST", None, None) => {
            verb_ok("create")?;
            if rt.namespaced && t.namespace.is_none() {
                return Err(StatusError::method_not_allowed());
            }
            let dry = dry_run(req, "CreateOptions")?;
            check_field_validation(req, "CreateOptions")?;
            let body = parse_body(req)?;
            Ok(Reply::ok(201, ops::create(state, rt, &ns, &body, dry)?))
        }
        ("PUT", Some(name), None | Some("status")) => {
            verb_ok("update")?;
            let dry = dry_run(req, "UpdateOptions")?;
            check_field_validation(req, "UpdateOptions")?;
            let body = parse_body(req)?;
            let part = if sub == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            let (obj, created) = ops::update(
                state,
                rt,
                &ns,
                name,
                &body,
                UpdateCtx {
                    part,
                    dry_run: dry,
                    is_patch: false,
                },
            )?;
            Ok(Reply::ok(if created { 201 } else { 200 }, obj))
        }
        ("PATCH", Some(name), None | Some("status")) => {
            verb_ok("patch")?;
            let part = if sub == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            patch_object(state, req, t, name, part)
        }
        ("DELETE", Some(name), None) => {
            verb_ok("delete")?;
            let opts = delete_options(req)?;
            let (code, body) = ops::delete(state, rt, &ns, name, &opts)?;
            Ok(Reply::ok(code, body))
        }
        ("DELETE", None, None) => {
            verb_ok("deletecollection")?;
            if rt.namespaced && t.namespace.is_none() {
                return Err(StatusError::method_not_allowed());
            }
            delete_collection(state, req, t)
        }
        ("GET", Some(name), Some("status")) => {
            controllers::on_read(state, &ObjKey::new(rt, &ns, name));
            Ok(Reply::ok(200, ops::get(state, rt, &ns, name)?))
        }
        ("GET", Some(name), Some("scale")) => {
            controllers::on_read(state, &ObjKey::new(rt, &ns, name));
            let obj = ops::get(state, rt, &ns, name)?;
            Ok(Reply::ok(200, scale_of(rt, &obj)))
        }
        ("PUT", Some(name), Some("scale")) => {
            let dry = dry_run(req, "UpdateOptions")?;
            let body = parse_body(req)?;
            scale_write(state, t, name, &body, dry)
        }
        ("PATCH", Some(name), Some("scale")) => {
            let obj = ops::get(state, rt, &ns, name)?;
            let current = scale_of(rt, &obj);
            let (patched, dry) = apply_patch_body(req, true, &current)?;
            scale_write(state, t, name, &patched, dry)
        }
        ("POST", Some(name), Some("eviction")) => evict(state, req, &ns, name),
        _ => Err(StatusError::method_not_allowed()),
    }
}

fn selectors(
    req: &Request,
    rt: &ResourceType,
) -> Result<(LabelSelector, FieldSelector), StatusError> {
    let labels = LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(req.param("fieldSelector").unwrap_or(""), rt)?;
    Ok((labels, fields))
}

fn strip_type_meta(rt: &ResourceType, mut obj: Value) -> Value {
    // Items of built-in lists carry no apiVersion/kind; unstructured (CR) items do.
    if !rt.custom
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("apiVersion");
        m.remove("kind");
    }
    obj
}

fn encode_continue(key: &ObjKey) -> String {
    format!("{}/{}", key.namespace, key.name)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let (ns, name) = s.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

fn list(state: &mut State, req: &Request, t: &Target) -> Result<Reply, StatusError> {
    let rt = &t.rt;
    let (labels, fields) = selectors(req, rt)?;
    let limit = match req.param("limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| StatusError::bad_request(format!("invalid limit: {l:?}")))?,
        )
        .filter(|l| *l > 0),
    };
    let after = match req.param("continue") {
        None | Some("") => None,
        Some(c) => Some(decode_continue(c).ok_or_else(|| {
            StatusError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })?),
    };
    let mut items: Vec<(ObjKey, Value)> = state
        .collection(rt, t.namespace.as_deref())
        .into_iter()
        .map(|(k, v)| (k, to_served(rt, &v)))
        .filter(|(_, v)| labels.matches(v) && fields.matches(v))
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|(ns, name)| (&k.namespace, &k.name) > (ns, name))
        })
        .collect();
    let mut metadata = json!({"resourceVersion": state.rv.to_string()});
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some((last, _)) = items.last() {
            metadata["continue"] = json!(encode_continue(last));
        }
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(Reply::ok(
        200,
        json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items.into_iter().map(|(_, v)| strip_type_meta(rt, v)).collect::<Vec<_>>(),
        }),
    ))
}

fn watch_plan(
    state: &mut State,
    req: &Request,
    t: &Target,
    name: Option<&str>,
) -> Result<Reply, StatusError> {
    let rt = &t.rt;
    let (labels, mut fields) = selectors(req, rt)?;
    if let Some(n) = name {
        fields.0.push(FieldRequirement {
            field: "metadata.name".into(),
            value: n.to_string(),
            negated: false,
        });
    }
    let timeout = match req.param("timeoutSeconds") {
        None | Some("") => Duration::from_secs(1800),
        Some(s) => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| StatusError::bad_request(format!("invalid timeoutSeconds: {s:?}")))?,
        ),
    };
    let send_initial = req.param("sendInitialEvents") == Some("true");
    if send_initial
        && (req.param("resourceVersionMatch") != Some("NotOlderThan")
            || req.param("allowWatchBookmarks") != Some("true"))
    {
        return Err(options_invalid(
            "ListOptions",
            &[FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled and resourceVersionMatch is set to NotOlderThan and allowWatchBookmarks is set to true",
            )],
        ));
    }
    let current = |state: &State| -> Vec<Value> {
        state
            .collection(rt, t.namespace.as_deref())
            .into_iter()
            .map(|(_, v)| to_served(rt, &v))
            .filter(|v| labels.matches(v) && fields.matches(v))
            .collect()
    };
    let rv = req.param("resourceVersion").unwrap_or("");
    let mut plan = WatchPlan {
        rt: rt.clone(),
        namespace: t.namespace.clone(),
        labels: labels.clone(),
        fields: fields.clone(),
        since: state.rv,
        initial: Vec::new(),
        initial_bookmark: None,
        timeout,
        expired: None,
    };
    if send_initial {
        plan.initial = current(state);
        plan.initial_bookmark = Some(state.rv);
    } else if rv.is_empty() || rv == "0" {
        plan.initial = current(state);
    } else {
        let n: u64 = rv
            .parse()
            .map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if n < state.compacted {
            plan.expired = Some(StatusError::expired(&format!(
                "too old resource version: {n} ({})",
                state.compacted + 1
            )));
        }
        plan.since = n;
    }
    Ok(Reply::Watch(Box::new(plan)))
}

/// The watch events after `since` that the plan selects, as JSON lines, and the
/// resourceVersion to continue from.
pub fn watch_events(state: &State, plan: &WatchPlan, since: u64) -> (Vec<Value>, u64) {
    let mut out = Vec::new();
    let mut last = since.max(state.compacted);
    for e in state.history.iter().filter(|e| e.rv > since) {
        last = e.rv;
        if !e.key.in_collection(&plan.rt, plan.namespace.as_deref()) {
            continue;
        }
        let new = to_served(&plan.rt, &e.object);
        let sel = |v: &Value| plan.labels.matches(v) && plan.fields.matches(v);
        let new_match = sel(&new);
        let old_match = e.old.as_ref().map(|o| sel(&to_served(&plan.rt, o)));
        let etype = match (e.etype, old_match, new_match) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Modified, Some(true), true) => "MODIFIED",
            (EventType::Modified, Some(false) | None, true) => "ADDED",
            (EventType::Modified, Some(true), false) => "DELETED",
            (EventType::Deleted, _, true) => "DELETED",
            _ => continue,
        };
        out.push(json!({"type": etype, "object": new}));
    }
    if let Some(e) = state.history.last() {
        last = last.max(e.rv);
    }
    (out, last)
}

fn patch_types(strategic: bool) -> Vec<&'static str> {
    if strategic {
        vec![JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]
    } else {
        vec![JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    }
}

/// Check a PATCH request's options and apply its body to `current` (a built-in typed
/// object when `typed`: strategic merge patch works only on those). Returns the patched
/// object and whether this is a dry run.
fn apply_patch_body(
    req: &Request,
    typed: bool,
    current: &Value,
) -> Result<(Value, bool), StatusError> {
    let media = req.media_type();
    let allowed = patch_types(typed);
    if !allowed.contains(&media.as_str()) {
        return Err(StatusError::unsupported_media_type(&allowed));
    }
    let dry = dry_run(req, "PatchOptions")?;
    check_field_validation(req, "PatchOptions")?;
    let mut errs = Vec::new();
    if media == APPLY_PATCH {
        if req.param("fieldManager").is_none_or(str::is_empty) {
            errs.push(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            ));
        }
    } else if req.param("force").is_some() {
        errs.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if !errs.is_empty() {
        return Err(options_invalid("PatchOptions", &errs));
    }
    let body: Value = if media == APPLY_PATCH {
        yaml_serde::from_slice(&req.body)
            .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| StatusError::bad_request(format!("error decoding patch: {e}")))?
    };
    let mut target = current.clone();
    match media.as_str() {
        MERGE_PATCH => {
            if !body.is_object() {
                return Err(StatusError::bad_request(
                    "json: cannot unmarshal a non-object merge patch into Go value of type map[string]interface {}",
                ));
            }
            patch::merge(&mut target, &body);
        }
        JSON_PATCH => patch::json_patch(&mut target, &body)?,
        STRATEGIC_PATCH => patch::strategic_merge(&mut target, &body)?,
        _ => {
            if !body.is_object() {
                return Err(StatusError::bad_request("apply patches must be objects"));
            }
            if typed {
                patch::strategic_merge(&mut target, &body)?;
            } else {
                patch::merge(&mut target, &body);
            }
        }
    }
    Ok((target, dry))
}

fn patch_object(
    state: &mut State,
    req: &Request,
    t: &Target,
    name: &str,
    part: Part,
) -> Result<Reply, StatusError> {
    let rt = &t.rt;
    let ns = t.namespace.clone().unwrap_or_default();
    let media = req.media_type();
    let current = match ops::get(state, rt, &ns, name) {
        Ok(obj) => obj,
        Err(e) if media == APPLY_PATCH && part == Part::Main => {
            // Server-side apply creates what does not exist yet.
            let (mut applied, dry) = apply_patch_body(req, !rt.custom, &json!({}))?;
            let (api_version, kind) = (
                applied
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                applied.get("kind").and_then(Value::as_str).unwrap_or(""),
            );
            if api_version.is_empty() || kind.is_empty() {
                return Err(StatusError::bad_request(format!(
                    "Object 'Kind' is missing in '{}'",
                    String::from_utf8_lossy(&req.body).trim()
                )));
            }
            let applied_name = meta_str(&applied, "name");
            if !applied_name.is_empty() && applied_name != name {
                return Err(StatusError::bad_request(format!(
                    "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                )));
            }
            if applied_name.is_empty() {
                super::store::set_meta(&mut applied, "name", json!(name));
            }
            let _ = e;
            return Ok(Reply::ok(201, ops::create(state, rt, &ns, &applied, dry)?));
        }
        Err(e) => return Err(e),
    };
    let (patched, dry) = apply_patch_body(req, !rt.custom, &current)?;
    let (obj, _) = ops::update(
        state,
        rt,
        &ns,
        name,
        &patched,
        UpdateCtx {
            part,
            dry_run: dry,
            is_patch: true,
        },
    )?;
    Ok(Reply::ok(200, obj))
}

/// The `autoscaling/v1` Scale of a scalable object.
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let Some(paths) = &rt.scale else {
        return Value::Null;
    };
    let spec = obj
        .pointer(&paths.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = obj
        .pointer(&paths.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = if rt.custom {
        paths
            .label_selector
            .as_deref()
            .and_then(|p| obj.pointer(p))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        obj.pointer("/spec/selector")
            .and_then(|s| LabelSelector::from_object(s).ok())
            .map(|s| s.to_query())
            .unwrap_or_default()
    };
    let mut metadata = json!({
        "name": meta_str(obj, "name"),
        "uid": meta_str(obj, "uid"),
        "resourceVersion": meta_str(obj, "resourceVersion"),
        "creationTimestamp": obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
    });
    if rt.namespaced {
        metadata["namespace"] = json!(meta_str(obj, "namespace"));
    }
    let mut scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {},
        "status": {"replicas": status},
    });
    if spec != 0 {
        scale["spec"]["replicas"] = json!(spec);
    }
    if !selector.is_empty() {
        scale["status"]["selector"] = json!(selector);
    }
    scale
}

fn set_pointer(obj: &mut Value, ptr: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i == parts.len() - 1 {
            cur[*p] = value;
            return;
        }
        cur = &mut cur[*p];
    }
}

fn scale_write(
    state: &mut State,
    t: &Target,
    name: &str,
    scale: &Value,
    dry: bool,
) -> Result<Reply, StatusError> {
    let rt = &t.rt;
    let ns = t.namespace.clone().unwrap_or_default();
    let kind = scale.get("kind").and_then(Value::as_str).unwrap_or("Scale");
    if kind != "Scale" {
        return Err(StatusError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a Scale: the kind in the data ({kind}) does not match the expected kind (Scale)"
        )));
    }
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().filter(|n| i32::try_from(*n).is_ok()).ok_or_else(|| {
            StatusError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal {} into Go struct field ScaleSpec.spec.replicas of type int32",
                if v.is_string() { "string".to_string() } else { format!("number {v}") }
            ))
        })?,
    };
    let obj = ops::get(state, rt, &ns, name)?;
    let scale_name = meta_str(scale, "name");
    if !scale_name.is_empty() && scale_name != name {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({scale_name}) does not match the name on the URL ({name})"
        )));
    }
    if replicas < 0 {
        return Err(StatusError::invalid(
            "autoscaling",
            "Scale",
            name,
            &[FieldError::invalid(
                "spec.replicas",
                json!(replicas),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let uid = meta_str(scale, "uid");
    if !uid.is_empty() && uid != meta_str(&obj, "uid") {
        return Err(StatusError::conflict(
            &rt.group,
            &format!("{}/scale", rt.plural),
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&obj, "uid")
            ),
        ));
    }
    let rv = meta_str(scale, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&obj, "resourceVersion") {
        return Err(StatusError::stale(&rt.group, &rt.plural, name));
    }
    let mut updated = obj.clone();
    let Some(paths) = &rt.scale else {
        return Err(StatusError::no_route());
    };
    set_pointer(&mut updated, &paths.spec_replicas, json!(replicas));
    let (after, _) = ops::update(
        state,
        rt,
        &ns,
        name,
        &updated,
        UpdateCtx {
            part: Part::Main,
            dry_run: dry,
            is_patch: false,
        },
    )?;
    Ok(Reply::ok(200, scale_of(rt, &after)))
}

/// `DeleteOptions` from the query, overlaid with the body.
fn delete_options(req: &Request) -> Result<DeleteOptions, StatusError> {
    let body =
        if req.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(serde_json::from_slice::<Value>(&req.body).map_err(|e| {
                StatusError::bad_request(format!("error decoding DeleteOptions: {e}"))
            })?)
        };
    delete_options_from(req, body.as_ref(), "DeleteOptions")
}

fn delete_options_from(
    req: &Request,
    body: Option<&Value>,
    options_kind: &str,
) -> Result<DeleteOptions, StatusError> {
    let mut opts = DeleteOptions::default();
    let mut errs = Vec::new();
    if let Some(g) = req.param("gracePeriodSeconds") {
        opts.grace_period =
            Some(g.parse().map_err(|_| {
                StatusError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
    }
    if let Some(p) = req.param("propagationPolicy") {
        opts.propagation = Some(p.to_string());
    }
    if let Some(o) = req.param("orphanDependents") {
        opts.orphan_dependents = Some(o == "true");
    }
    let mut dry_values: Vec<String> = req.values("dryRun").iter().map(|s| s.to_string()).collect();
    if let Some(b) = body.filter(|b| !b.is_null()) {
        if !b.is_object() {
            return Err(StatusError::bad_request(
                "DeleteOptions must be a JSON object",
            ));
        }
        if let Some(g) = b.get("gracePeriodSeconds").filter(|v| !v.is_null()) {
            opts.grace_period = Some(g.as_i64().ok_or_else(|| {
                StatusError::bad_request("json: cannot unmarshal into Go struct field DeleteOptions.gracePeriodSeconds of type int64")
            })?);
        }
        if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(p.to_string());
        }
        if let Some(o) = b.get("orphanDependents").and_then(Value::as_bool) {
            opts.orphan_dependents = Some(o);
        }
        if let Some(u) = b.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.uid = Some(u.to_string());
        }
        if let Some(r) = b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            opts.resource_version = Some(r.to_string());
        }
        if let Some(d) = b.get("dryRun").and_then(Value::as_array) {
            dry_values.extend(d.iter().filter_map(Value::as_str).map(String::from));
        }
    }
    if opts.orphan_dependents.is_some() && opts.propagation.is_some() {
        errs.push(FieldError::invalid(
            "propagationPolicy",
            json!(opts.propagation),
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    if let Some(p) = &opts.propagation
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        errs.push(FieldError::not_supported(
            "propagationPolicy",
            json!(p),
            &["Foreground", "Background", "Orphan", "nil"],
        ));
    }
    if !dry_values.is_empty() {
        if dry_values.iter().all(|v| v == "All") {
            opts.dry_run = true;
        } else {
            errs.push(FieldError::not_supported(
                "dryRun",
                json!(dry_values),
                &["All"],
            ));
        }
    }
    if !errs.is_empty() {
        return Err(options_invalid(options_kind, &errs));
    }
    Ok(opts)
}

fn delete_collection(state: &mut State, req: &Request, t: &Target) -> Result<Reply, StatusError> {
    let rt = &t.rt;
    let opts = delete_options(req)?;
    let (labels, fields) = selectors(req, rt)?;
    let victims: Vec<(ObjKey, Value)> = state
        .collection(rt, t.namespace.as_deref())
        .into_iter()
        .map(|(k, v)| (k, to_served(rt, &v)))
        .filter(|(_, v)| labels.matches(v) && fields.matches(v))
        .collect();
    let mut items = Vec::new();
    for (key, obj) in victims {
        ops::delete(state, rt, &key.namespace, &key.name, &opts)?;
        items.push(strip_type_meta(rt, obj));
    }
    Ok(Reply::ok(
        200,
        json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": state.rv.to_string()},
            "items": items,
        }),
    ))
}

/// `POST pods/{name}/eviction`: honour the pod's PodDisruptionBudget, then delete it.
fn evict(state: &mut State, req: &Request, ns: &str, name: &str) -> Result<Reply, StatusError> {
    let dry_query = dry_run(req, "CreateOptions")?;
    let body = parse_body(req)?;
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Eviction");
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("policy/v1");
    let (group, _) = split_api_version(api_version);
    if kind != "Eviction" || group != "policy" {
        return Err(StatusError::bad_request(format!(
            "{kind} in version {api_version:?} cannot be handled as a Eviction: no kind {kind:?} is registered for version {api_version:?}"
        )));
    }
    let body_name = meta_str(&body, "name");
    if !body_name.is_empty() && body_name != name {
        return Err(StatusError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut opts = delete_options_from(req, body.get("deleteOptions"), "DeleteOptions")?;
    opts.dry_run |= dry_query;
    let pod_rt = state
        .resolve("v1", "pods")
        .ok_or_else(|| StatusError::internal("pods are not served"))?;
    let pod = ops::get(state, &pod_rt, ns, name)?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || !meta_str(&pod, "deletionTimestamp").is_empty();
    if !ignore_pdb {
        check_budget(state, ns, &pod)?;
    }
    ops::delete(state, &pod_rt, ns, name, &opts)?;
    Ok(Reply::ok(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    ))
}

fn check_budget(state: &mut State, ns: &str, pod: &Value) -> Result<(), StatusError> {
    let Some(pdb_rt) = state.resolve("policy/v1", "poddisruptionbudgets") else {
        return Ok(());
    };
    if state.settings.disruption_controller {
        controllers::recompute_pdbs(state, ns);
    }
    let pdbs: Vec<Value> = state
        .collection(&pdb_rt, Some(ns))
        .into_iter()
        .map(|(_, v)| v)
        .filter(|pdb| {
            pdb.pointer("/spec/selector")
                .filter(|s| !s.is_null())
                .and_then(|s| LabelSelector::from_object(s).ok())
                .is_some_and(|s| s.matches(pod))
        })
        .collect();
    let pdb = match pdbs.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => {
            return Err(StatusError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let pdb_name = meta_str(pdb, "name");
    let refuse = |cause: String| {
        let mut e = StatusError::too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            0,
        );
        e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}));
        e
    };
    let status_int = |f: &str| pdb.pointer(&format!("/status/{f}")).and_then(Value::as_i64);
    let observed = status_int("observedGeneration").unwrap_or(-1);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if observed < generation {
        return Err(refuse(format!(
            "The disruption budget {pdb_name} is still being processed by the server."
        )));
    }
    let allowed = status_int("disruptionsAllowed").unwrap_or(0);
    let healthy = status_int("currentHealthy").unwrap_or(0);
    let desired = status_int("desiredHealthy").unwrap_or(0);
    if allowed < 0 {
        return Err(StatusError::forbidden(
            "policy",
            "poddisruptionbudgets",
            pdb_name,
            "pdb disruptions allowed is negative",
        ));
    }
    let pod_healthy = controllers::pod_ready(pod);
    if !pod_healthy {
        // unhealthyPodEvictionPolicy: IfHealthyBudget (default) or AlwaysAllow.
        let always = pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"));
        if always || healthy >= desired {
            return Ok(());
        }
    } else if allowed > 0 {
        return Ok(());
    }
    Err(refuse(format!(
        "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
    )))
}
