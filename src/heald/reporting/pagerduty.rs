//! PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`, the routing key
//! in the body's `routing_key`, as PagerDuty documents it): a failure or a stand-down is a
//! `trigger`, a later success of the same alert episode a `resolve`. The `dedup_key` is
//! the episode's correlation id, so every message of one episode lands on one PagerDuty
//! alert, and a resolve for an episode that never triggered is dropped by PagerDuty.

use serde_json::{Value, json};

use crate::heald::reporting::notify_http::{Message, cut};
use crate::policy::VendorOptions;

/// PagerDuty's limit on `payload.summary`.
pub const MAX_SUMMARY: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
pub const MAX_DEDUP_KEY: usize = 255;

/// The event for `m`, carrying `routing_key`.
pub fn event(vendor: &VendorOptions, m: &Message<'_>, routing_key: &str) -> Option<Value> {
    let dedup_key = cut(m.correlation_id(), MAX_DEDUP_KEY);
    let (severity, class, source, details) = match m {
        Message::Resolved(_) => {
            return Some(json!({
                "routing_key": routing_key,
                "dedup_key": dedup_key,
                "event_action": "resolve",
            }));
        }
        Message::Failed(n) => (
            vendor.severity.as_str(),
            "RemediationFailed",
            n.target.clone().unwrap_or_else(|| "heald".into()),
            serde_json::to_value(n).unwrap_or(Value::Null),
        ),
        Message::StoodDown(s) => (
            "warning",
            "RemediationStoodDown",
            s.target.clone(),
            serde_json::to_value(s).unwrap_or(Value::Null),
        ),
        Message::Approval(a) => (
            "info",
            "RemediationAwaitingApproval",
            a.target.clone(),
            serde_json::to_value(a).unwrap_or(Value::Null),
        ),
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": cut(&m.summary(), MAX_SUMMARY),
            "source": source,
            "severity": severity,
            "timestamp": jiff::Timestamp::now().to_string(),
            "class": class,
            "custom_details": details,
        },
        "client": "heald",
    });
    if let Some(link) = m.link() {
        event["client_url"] = json!(link);
        event["links"] = json!([{"href": link, "text": "The alert in Alertmanager"}]);
    }
    Some(event)
}
