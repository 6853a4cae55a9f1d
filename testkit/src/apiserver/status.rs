//! `Status` error bodies, built the way `k8s.io/apimachinery/pkg/api/errors` builds them.

use serde_json::{Map, Value, json};

/// A failed request, answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusError {
    /// HTTP status code, also written to `Status.code`.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `Conflict`, ...); empty for an unknown reason.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the error has any.
    pub details: Option<Value>,
    /// Extra response headers (`Retry-After`).
    pub headers: Vec<(String, String)>,
}

/// One field error of an `Invalid` status, as `field.Error` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `field.ErrorType`.
    pub kind: FieldErrorKind,
    /// JSON path of the field (`spec.replicas`).
    pub field: String,
    /// Human explanation (may be empty).
    pub detail: String,
}

/// The error types of `k8s.io/apimachinery/pkg/util/validation/field`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// `Invalid value: V`.
    Invalid(Value),
    /// `Required value`.
    Required,
    /// `Forbidden`.
    Forbidden,
    /// `Unsupported value: V: supported values: ...`.
    NotSupported(Value, Vec<String>),
    /// `Too long: may not be more than N bytes`.
    TooLong(usize),
}

impl FieldError {
    /// `field.Invalid(path, value, detail)`.
    pub fn invalid(field: &str, value: Value, detail: &str) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Invalid(value),
            field: field.to_string(),
            detail: detail.to_string(),
        }
    }

    /// `field.Required(path, detail)`.
    pub fn required(field: &str, detail: &str) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Required,
            field: field.to_string(),
            detail: detail.to_string(),
        }
    }

    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            kind: FieldErrorKind::Forbidden,
            field: field.to_string(),
            detail: detail.to_string(),
        }
    }

    /// `field.NotSupported(path, value, supported)`.
    pub fn not_supported(field: &str, value: Value, supported: &[&str]) -> FieldError {
        FieldError {
            kind: FieldErrorKind::NotSupported(
                value,
                supported.iter().map(|s| s.to_string()).collect(),
            ),
            field: field.to_string(),
            detail: String::new(),
        }
    }

    /// `field.TooLong(path, value, max)`.
    pub fn too_long(field: &str, max: usize) -> FieldError {
        FieldError {
            kind: FieldErrorKind::TooLong(max),
            field: field.to_string(),
            detail: String::new(),
        }
    }

    /// `field.Error.ErrorBody()`: the message without the field path.
    pub fn body(&self) -> String {
        let mut s = match &self.kind {
            FieldErrorKind::Invalid(v) => format!("Invalid value: {}", go_value(v)),
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::NotSupported(v, supported) => {
                let mut s = format!("Unsupported value: {}", go_value(v));
                if !supported.is_empty() {
                    let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                    s.push_str(&format!(": supported values: {}", quoted.join(", ")));
                }
                s
            }
            FieldErrorKind::TooLong(max) => {
                format!("Too long: may not be more than {max} bytes")
            }
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `field.Error.Error()`: `path: body`.
    pub fn text(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    fn cause(&self) -> Value {
        let reason = match self.kind {
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
        };
        json!({"reason": reason, "message": self.body(), "field": self.field})
    }
}

/// Print a value the way Go's `%v`/`%q` does in field errors: strings quoted, numbers bare.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => format!(
            "[]string{{{}}}",
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// `schema.GroupResource.String()`: `deployments.apps`, or `pods` in the core group.
pub fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    Value::Object(d)
}

impl StatusError {
    /// A bare error with the given code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> StatusError {
        StatusError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    /// Attach `details`.
    pub fn with_details(mut self, details: Value) -> StatusError {
        self.details = Some(details);
        self
    }

    /// Add a response header.
    pub fn with_header(mut self, name: &str, value: &str) -> StatusError {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The `Status` object sent as the body.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }

    /// `errors.NewNotFound`: `deployments.apps "web" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> StatusError {
        StatusError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", group_resource(group, resource)),
        )
        .with_details(details(name, group, resource))
    }

    /// The 404 for a path that names no resource.
    pub fn no_route() -> StatusError {
        StatusError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// `errors.NewAlreadyExists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> StatusError {
        StatusError::new(
            409,
            "AlreadyExists",
            format!(
                "{} {name:?} already exists",
                group_resource(group, resource)
            ),
        )
        .with_details(details(name, group, resource))
    }

    /// `errors.NewConflict(GroupResource{group, resource}, name, err)`.
    pub fn conflict(group: &str, resource: &str, name: &str, err: &str) -> StatusError {
        StatusError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {err}",
                group_resource(group, resource)
            ),
        )
        .with_details(details(name, group, resource))
    }

    /// The optimistic-concurrency conflict of an update with a stale `resourceVersion`.
    pub fn stale(group: &str, resource: &str, name: &str) -> StatusError {
        StatusError::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `errors.NewInvalid(GroupKind{group, kind}, name, errs)`.
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> StatusError {
        let list = match errs {
            [one] => one.text(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(FieldError::text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut d = details(name, group, kind);
        if let Value::Object(m) = &mut d {
            m.insert(
                "causes".into(),
                Value::Array(errs.iter().map(FieldError::cause).collect()),
            );
        }
        StatusError::new(
            422,
            "Invalid",
            format!(
                "{} {name:?} is invalid: {list}",
                group_resource(group, kind)
            ),
        )
        .with_details(d)
    }

    /// `errors.NewBadRequest`.
    pub fn bad_request(message: impl Into<String>) -> StatusError {
        StatusError::new(400, "BadRequest", message)
    }

    /// `errors.NewMethodNotSupported` as the router answers it.
    pub fn method_not_allowed() -> StatusError {
        StatusError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// 415 for a body in a format the endpoint does not take.
    pub fn unsupported_media_type(accepted: &[&str]) -> StatusError {
        StatusError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 406 when the Accept header allows nothing this server writes.
    pub fn not_acceptable() -> StatusError {
        StatusError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    /// `errors.NewTooManyRequests(message, retryAfterSeconds)`, with the `Retry-After` header
    /// the API server adds when the delay is positive.
    pub fn too_many_requests(message: &str, retry_after_seconds: u64) -> StatusError {
        let mut e = StatusError::new(429, "TooManyRequests", message);
        if retry_after_seconds > 0 {
            e = e
                .with_details(json!({"retryAfterSeconds": retry_after_seconds}))
                .with_header("Retry-After", &retry_after_seconds.to_string());
        }
        e
    }

    /// `errors.NewInternalError(err)`.
    pub fn internal(message: &str) -> StatusError {
        StatusError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({"causes": [{"message": message}]}))
    }

    /// `errors.NewServiceUnavailable(reason)`.
    pub fn service_unavailable(message: &str) -> StatusError {
        StatusError::new(503, "ServiceUnavailable", message)
    }

    /// `errors.NewTimeoutError(message, 0)`, what the request-timeout filter answers.
    pub fn gateway_timeout(message: &str) -> StatusError {
        StatusError::new(504, "Timeout", format!("Timeout: {message}")).with_details(json!({}))
    }

    /// `errors.NewForbidden(GroupResource{group, resource}, name, err)`.
    pub fn forbidden(group: &str, resource: &str, name: &str, err: &str) -> StatusError {
        let gr = group_resource(group, resource);
        let message = if resource.is_empty() {
            format!("forbidden: {err}")
        } else if name.is_empty() {
            format!("{gr} is forbidden: {err}")
        } else {
            format!("{gr} {name:?} is forbidden: {err}")
        };
        StatusError::new(403, "Forbidden", message).with_details(details(name, group, resource))
    }

    /// 401 for a request without the test bearer token.
    pub fn unauthorized() -> StatusError {
        StatusError::new(401, "Unauthorized", "Unauthorized")
    }

    /// `errors.NewGone` as a watch answers a compacted resourceVersion.
    pub fn expired(message: &str) -> StatusError {
        StatusError::new(410, "Expired", message)
    }

    /// 413 for bodies over the API server's 3 MiB limit.
    pub fn too_large(message: &str) -> StatusError {
        StatusError::new(413, "RequestEntityTooLarge", message)
    }
}
