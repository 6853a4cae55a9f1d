//! The Alertmanager webhook model (payload version "4", Alertmanager v0.25 through v0.34):
//! parse a notification body, split a group into its alerts, reject malformed input with a
//! message naming the field. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Labels or annotations of an alert: names to values.
pub type LabelSet = BTreeMap<String, String>;

/// The time Alertmanager puts in `endsAt` of alerts that are still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Why an alert or webhook body was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The body is not JSON at all.
    #[error("body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The body declares a payload version this parser does not speak.
    #[error(
        "version: unsupported webhook payload version {found:?}; heal understands version \"4\" \
         (Alertmanager v0.25 through v0.34)"
    )]
    Version {
        /// The version found in the body.
        found: String,
    },
    /// A field is missing or has the wrong type or value.
    #[error("{path}: {message}")]
    Field {
        /// Where in the body, e.g. `alerts[2].startsAt`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The document is neither a webhook body, an alert, nor a list of alerts.
    #[error("{0}")]
    Shape(String),
}

fn field(path: impl Into<String>, message: impl Into<String>) -> AlertError {
    AlertError::Field {
        path: path.into(),
        message: message.into(),
    }
}

/// Whether an alert (or a whole group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The alert's condition holds.
    Firing,
    /// The alert's condition no longer holds.
    Resolved,
}

impl Status {
    /// The wire name: `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert, as Alertmanager sends it inside a webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: Status,
    /// Identifying labels; `alertname` among them.
    pub labels: LabelSet,
    /// Non-identifying annotations (summary, runbook_url, ...).
    pub annotations: LabelSet,
    /// When the alert started firing.
    pub starts_at: Timestamp,
    /// When it resolved; `None` for the zero time Alertmanager sends while an alert fires.
    pub ends_at: Option<Timestamp>,
    /// Link to the expression in Prometheus.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the label set: 16 lowercase hex digits.
    pub fingerprint: String,
}

impl Alert {
    /// A firing alert with these labels, fingerprinted the way Alertmanager does, starting at
    /// the Unix epoch. A starting point for tests and for `heal policy test` cases.
    pub fn new(labels: LabelSet) -> Alert {
        let fingerprint = fingerprint(&labels);
        Alert {
            status: Status::Firing,
            labels,
            annotations: LabelSet::new(),
            starts_at: Timestamp::UNIX_EPOCH,
            ends_at: None,
            generator_url: String::new(),
            fingerprint,
        }
    }

    /// The value of label `name`, or `""` when the alert does not carry it (Alertmanager's
    /// rule: a missing label equals the empty string).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }

    /// The alert's name (label `alertname`).
    pub fn name(&self) -> &str {
        self.label("alertname")
    }

    /// `startsAt` in RFC 3339 (UTC, shortest fraction), the form used in run identities.
    pub fn starts_at_rfc3339(&self) -> String {
        self.starts_at.to_string()
    }
}

/// A webhook notification body (version "4"): one group of alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Payload version, always "4".
    pub version: String,
    /// Key identifying the group (route and group labels).
    pub group_key: String,
    /// How many alerts Alertmanager left out because of `max_alerts`.
    pub truncated_alerts: u64,
    /// Name of the receiver that sent this.
    pub receiver: String,
    /// Status of the group: firing when at least one alert fires.
    pub status: Status,
    /// Why this notification was sent (v0.32+), e.g. `first notification`.
    #[serde(
        rename = "notification_reason",
        skip_serializing_if = "Option::is_none"
    )]
    pub notification_reason: Option<String>,
    /// Labels the group is grouped by.
    pub group_labels: LabelSet,
    /// Labels every alert of the group shares.
    pub common_labels: LabelSet,
    /// Annotations every alert of the group shares.
    pub common_annotations: LabelSet,
    /// Labels of the route that matched (v0.34+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_labels: Option<LabelSet>,
    /// Alertmanager's external URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
}

impl Webhook {
    /// Parse a webhook body, checking every field Alertmanager always sends.
    pub fn parse(body: &[u8]) -> Result<Webhook, AlertError> {
        let value: Value = serde_json::from_slice(body).map_err(AlertError::Json)?;
        Webhook::from_value(&value)
    }

    /// Check and convert an already-parsed JSON body.
    pub fn from_value(value: &Value) -> Result<Webhook, AlertError> {
        let obj = value
            .as_object()
            .ok_or_else(|| AlertError::Shape("body: expected a JSON object".into()))?;
        let version = match obj.get("version") {
            None => {
                return Err(field(
                    "version",
                    "missing (Alertmanager always sends \"4\")",
                ));
            }
            Some(Value::String(v)) => v.clone(),
            Some(other) => {
                return Err(AlertError::Version {
                    found: other.to_string(),
                });
            }
        };
        if version != "4" {
            return Err(AlertError::Version { found: version });
        }
        let alerts = req(obj, "", "alerts")?
            .as_array()
            .ok_or_else(|| field("alerts", "expected an array of alerts"))?
            .iter()
            .enumerate()
            .map(|(i, a)| parse_alert(a, &format!("alerts[{i}]"), true))
            .collect::<Result<Vec<_>, _>>()?;
        let truncated_alerts = match obj.get("truncatedAlerts") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| field("truncatedAlerts", "expected a non-negative integer"))?,
        };
        let route_labels = match obj.get("routeLabels") {
            None | Some(Value::Null) => None,
            Some(v) => Some(kv(v, "routeLabels")?),
        };
        let notification_reason = match obj.get("notification_reason") {
            None | Some(Value::Null) => None,
            Some(v) => Some(string(v, "notification_reason")?),
        };
        Ok(Webhook {
            version,
            group_key: string(req(obj, "", "groupKey")?, "groupKey")?,
            truncated_alerts,
            receiver: string(req(obj, "", "receiver")?, "receiver")?,
            status: status(req(obj, "", "status")?, "status")?,
            notification_reason,
            group_labels: kv(req(obj, "", "groupLabels")?, "groupLabels")?,
            common_labels: kv(req(obj, "", "commonLabels")?, "commonLabels")?,
            common_annotations: kv(req(obj, "", "commonAnnotations")?, "commonAnnotations")?,
            route_labels,
            external_url: string(req(obj, "", "externalURL")?, "externalURL")?,
            alerts,
        })
    }

    /// Split the group into its alerts (each keeps its own status).
    pub fn into_alerts(self) -> Vec<Alert> {
        self.alerts
    }
}

/// Parse alerts from a file as users have them: a webhook body (the main form), a single
/// alert object, or a plain list of alerts (for example `amtool alert query -o json`, whose
/// alerts carry `status: {state: active}`). Outside a webhook body `fingerprint`, `endsAt`,
/// `generatorURL`, `annotations` and `status` are optional: a missing fingerprint is
/// computed from the labels as Alertmanager computes it; a missing `startsAt` is an error.
pub fn parse_alerts(body: &[u8]) -> Result<Vec<Alert>, AlertError> {
    let value: Value = serde_json::from_slice(body).map_err(AlertError::Json)?;
    match &value {
        Value::Object(obj) if obj.contains_key("alerts") || obj.contains_key("version") => {
            Ok(Webhook::from_value(&value)?.into_alerts())
        }
        Value::Object(_) => Ok(vec![parse_alert(&value, "alert", false)?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, a)| parse_alert(a, &format!("[{i}]"), false))
            .collect(),
        _ => Err(AlertError::Shape(
            "expected an Alertmanager webhook body, an alert object or a list of alerts".into(),
        )),
    }
}

fn req<'v>(obj: &'v Map<String, Value>, at: &str, name: &str) -> Result<&'v Value, AlertError> {
    obj.get(name)
        .ok_or_else(|| field(join(at, name), "missing required field"))
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn string(v: &Value, path: &str) -> Result<String, AlertError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| field(path, format!("expected a string, found {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn status(v: &Value, path: &str) -> Result<Status, AlertError> {
    match v.as_str() {
        Some("firing") => Ok(Status::Firing),
        Some("resolved") => Ok(Status::Resolved),
        _ => Err(field(
            path,
            format!("expected \"firing\" or \"resolved\", found {v}"),
        )),
    }
}

fn kv(v: &Value, path: &str) -> Result<LabelSet, AlertError> {
    let obj = v.as_object().ok_or_else(|| {
        field(
            path,
            format!("expected an object of strings, found {}", kind(v)),
        )
    })?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), string(v, &format!("{path}.{k}"))?)))
        .collect()
}

/// Whether `t` is Go's zero time, 0001-01-01T00:00:00Z, however it was written.
fn is_zero_time(t: &Timestamp) -> bool {
    t.as_second() == -62_135_596_800 && t.subsec_nanosecond() == 0
}

fn timestamp(v: &Value, path: &str) -> Result<Timestamp, AlertError> {
    let s = string(v, path)?;
    s.parse::<Timestamp>()
        .map_err(|_| field(path, format!("invalid timestamp {s:?} (expected RFC 3339)")))
}

/// Parse one alert at `path`. `strict`: the webhook form, where every field is required.
fn parse_alert(v: &Value, path: &str, strict: bool) -> Result<Alert, AlertError> {
    let obj = v
        .as_object()
        .ok_or_else(|| field(path, format!("expected an alert object, found {}", kind(v))))?;
    let get = |name: &str| -> Result<Option<&Value>, AlertError> {
        match obj.get(name) {
            Some(v) => Ok(Some(v)),
            None if strict => Err(field(join(path, name), "missing required field")),
            None => Ok(None),
        }
    };
    let labels = kv(req(obj, path, "labels")?, &join(path, "labels"))?;
    let annotations = match get("annotations")? {
        Some(v) => kv(v, &join(path, "annotations"))?,
        None => LabelSet::new(),
    };
    let starts_at = timestamp(req(obj, path, "startsAt")?, &join(path, "startsAt"))?;
    let ends_at = match get("endsAt")? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == ZERO_TIME => None,
        // The zero time written another way (`z`, a fraction, an offset) is still unset.
        Some(v) => Some(timestamp(v, &join(path, "endsAt"))?).filter(|t| !is_zero_time(t)),
    };
    let status = match get("status")? {
        None => Status::Firing,
        // The API v2 shape (`amtool alert query -o json`): `{state: active|suppressed|...}`;
        // the API only lists alerts that have not resolved.
        Some(Value::Object(s)) if !strict => match s.get("state").and_then(Value::as_str) {
            Some("active" | "suppressed" | "unprocessed") => Status::Firing,
            _ => {
                return Err(field(
                    join(path, "status.state"),
                    "expected active, suppressed or unprocessed",
                ));
            }
        },
        Some(v) => status(v, &join(path, "status"))?,
    };
    let generator_url = match get("generatorURL")? {
        Some(v) => string(v, &join(path, "generatorURL"))?,
        None => String::new(),
    };
    let fingerprint = match get("fingerprint")? {
        Some(v) => {
            let fp = string(v, &join(path, "fingerprint"))?;
            if fp.len() != 16 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(field(
                    join(path, "fingerprint"),
                    format!(
                        "expected 16 lowercase hex digits, found {:?}",
                        fp.chars().take(64).collect::<String>()
                    ),
                ));
            }
            fp
        }
        None => fingerprint(&labels),
    };
    Ok(Alert {
        status,
        labels,
        annotations,
        starts_at,
        ends_at,
        generator_url,
        fingerprint,
    })
}

/// Alertmanager's fingerprint of a label set (Prometheus `model.LabelSet.Fingerprint`):
/// FNV-1a 64 over the labels sorted by name, each name and value followed by byte 255,
/// as 16 lowercase hex digits.
pub fn fingerprint(labels: &LabelSet) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    if labels.is_empty() {
        return format!("{OFFSET:016x}");
    }
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in byte order of names, which is Go's sort order for strings.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[255]);
        add(value.as_bytes());
        add(&[255]);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> Vec<u8> {
        heal_testkit::reference_bytes(&format!("alertmanager/{name}"))
    }

    fn body() -> Value {
        serde_json::from_slice(&reference("webhook-v4-firing.example.json")).unwrap()
    }

    fn err(v: &Value) -> String {
        Webhook::from_value(v).unwrap_err().to_string()
    }

    #[test]
    fn the_v0_34_firing_example_parses_into_its_alert_with_zero_end_time_as_none() {
        heal_testkit::require_reference!();
        let hook = Webhook::parse(&reference("webhook-v4-firing.example.json")).unwrap();
        assert_eq!(hook.status, Status::Firing);
        assert_eq!(
            hook.notification_reason.as_deref(),
            Some("first notification")
        );
        assert_eq!(hook.route_labels, Some(LabelSet::new()));
        assert_eq!(hook.truncated_alerts, 0);
        let alerts = hook.into_alerts();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.name(), "KubeDeploymentReplicasMismatch");
        assert_eq!(a.label("deployment"), "web");
        assert_eq!(a.label("no-such-label"), "");
        assert_eq!(a.fingerprint, "4b1c9e0d6a2f7e31");
        assert_eq!(a.ends_at, None);
        assert_eq!(a.starts_at_rfc3339(), "2026-08-20T10:00:00.123456789Z");
        assert!(
            a.generator_url
                .starts_with("http://prometheus.monitoring:9090/graph")
        );
        assert!(a.annotations.contains_key("runbook_url"));
    }

    #[test]
    fn the_pre_v0_32_resolved_example_parses_without_reason_or_route_labels() {
        heal_testkit::require_reference!();
        let hook = Webhook::parse(&reference("webhook-v4-resolved-legacy.example.json")).unwrap();
        assert_eq!(hook.status, Status::Resolved);
        assert_eq!(hook.notification_reason, None);
        assert_eq!(hook.route_labels, None);
        let a = &hook.alerts[0];
        assert_eq!(a.status, Status::Resolved);
        assert_eq!(
            a.ends_at.map(|t| t.to_string()).as_deref(),
            Some("2026-08-20T10:12:30.5Z")
        );
    }

    #[test]
    fn a_bad_start_time_is_rejected_naming_the_alert_and_field() {
        heal_testkit::require_reference!();
        let mut v = body();
        let a = v["alerts"][0].clone();
        v["alerts"] = Value::Array(vec![a.clone(), a.clone(), a]);
        v["alerts"][2]["startsAt"] = Value::from("yesterday");
        assert!(
            err(&v).starts_with("alerts[2].startsAt: invalid timestamp"),
            "{}",
            err(&v)
        );
    }

    #[test]
    fn a_wrong_version_is_rejected_with_the_supported_one() {
        heal_testkit::require_reference!();
        let mut v = body();
        v["version"] = Value::from("3");
        let e = err(&v);
        assert!(
            e.contains("unsupported webhook payload version \"3\""),
            "{e}"
        );
        assert!(e.contains("\"4\""), "{e}");
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        heal_testkit::require_reference!();
        let mut v = body();
        v.as_object_mut().unwrap().remove("groupKey");
        assert_eq!(err(&v), "groupKey: missing required field");
        let mut v = body();
        v["alerts"][0]["labels"]["namespace"] = Value::from(3);
        assert_eq!(
            err(&v),
            "alerts[0].labels.namespace: expected a string, found a number"
        );
        let mut v = body();
        v["alerts"][0]["status"] = Value::from("pending");
        assert!(err(&v).starts_with("alerts[0].status: expected \"firing\" or \"resolved\""));
        let mut v = body();
        v["alerts"][0]["fingerprint"] = Value::from("{{x}}");
        assert!(err(&v).starts_with("alerts[0].fingerprint: expected 16 lowercase hex"));
        let mut v = body();
        v["truncatedAlerts"] = Value::from(-1);
        assert!(err(&v).starts_with("truncatedAlerts:"));
        assert!(
            Webhook::parse(b"{not json")
                .unwrap_err()
                .to_string()
                .starts_with("body is not valid JSON")
        );
    }

    #[test]
    fn a_single_alert_or_a_list_from_amtool_is_accepted_from_a_file() {
        heal_testkit::require_reference!();
        let one =
            br#"{"labels": {"alertname": "X", "job": "a"}, "startsAt": "2026-01-01T00:00:00Z"}"#;
        let alerts = parse_alerts(one).unwrap();
        assert_eq!(alerts[0].status, Status::Firing);
        assert_eq!(alerts[0].fingerprint, fingerprint(&alerts[0].labels));
        let list = br#"[{"labels": {"alertname": "X"}, "startsAt": "2026-01-01T00:00:00Z",
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
            "fingerprint": "0123456789abcdef"},
            {"labels": {"alertname": "Y"}, "startsAt": "2026-01-01T00:00:00Z", "status": "resolved"}]"#;
        let alerts = parse_alerts(list).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[1].status, Status::Resolved);
        let bad = br#"[{"labels": {"alertname": "X"}}]"#;
        assert_eq!(
            parse_alerts(bad).unwrap_err().to_string(),
            "[0].startsAt: missing required field"
        );
        assert_eq!(
            parse_alerts(&reference("webhook-v4-firing.example.json"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn fingerprints_match_what_alertmanager_computes() {
        // Values from prometheus/common's signature tests (5799056148416392346 in hex).
        assert_eq!(fingerprint(&LabelSet::new()), "cbf29ce484222325");
        let ls: LabelSet = [
            ("name".to_string(), "garland, briggs".to_string()),
            ("fear".to_string(), "love is not enough".to_string()),
        ]
        .into();
        assert_eq!(fingerprint(&ls), "507a62d79ee76c9a");
    }
}
