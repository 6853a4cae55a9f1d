//! Opsgenie Alert API: a failure or a stand-down creates an alert
//! (`POST {api}/v2/alerts`, `Authorization: GenieKey <key>`), whose `alias` is the alert
//! episode's correlation id, so Opsgenie de-duplicates the messages of one episode; a later
//! success of the same episode closes it
//! (`POST {api}/v2/alerts/{alias}/close?identifierType=alias`). `{api}` is
//! `https://api.opsgenie.com`, `https://api.eu.opsgenie.com` for `region: eu`. Opsgenie
//! answers 202 and processes the request later.

use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::heald::reporting::notify_http::{Message, Outbound, cut, step_words};
use crate::policy::VendorOptions;

/// Opsgenie's limits: `message`, `alias`, `description`, `entity`, `note`, and all of
/// `details` together.
const MAX_MESSAGE: usize = 130;
const MAX_ALIAS: usize = 512;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_ENTITY: usize = 512;
const MAX_NOTE: usize = 25_000;
const MAX_DETAILS: usize = 8_000;

/// One priority lower (`P3` → `P4`), for stand-down notices.
fn lower(priority: &str) -> String {
    match priority {
        "P1" => "P2",
        "P2" => "P3",
        "P3" => "P4",
        _ => "P5",
    }
    .to_string()
}

/// `details`: string values only, at most [`MAX_DETAILS`] characters in all (later
/// entries are left out).
fn details(entries: Vec<(String, String)>) -> Value {
    let mut out = Map::new();
    let mut used = 0;
    for (k, v) in entries {
        let v = cut(&v, 1000);
        let size = k.chars().count() + v.chars().count();
        if used + size > MAX_DETAILS {
            continue;
        }
        used += size;
        out.insert(k, Value::String(v));
    }
    Value::Object(out)
}

/// The request for `m`, to the API at `api`, authorized with `key`.
pub fn request(vendor: &VendorOptions, m: &Message<'_>, api: &str, key: &str) -> Option<Outbound> {
    let api = api.trim_end_matches('/');
    let alias = cut(m.correlation_id(), MAX_ALIAS);
    let authorization = Some(SecretString::from(format!("GenieKey {key}")));
    let (tag, priority, entity, entries) = match m {
        Message::Resolved(_) => {
            return Some(Outbound {
                url: format!(
                    "{api}/v2/alerts/{}/close?identifierType=alias",
                    crate::kube_api::enc(&alias)
                ),
                authorization,
                body: json!({
                    "source": "heald",
                    "user": "heald",
                    "note": cut(&m.text(), MAX_NOTE),
                }),
            });
        }
        Message::Failed(n) => {
            let mut e = vec![
                ("policy".to_string(), n.policy.clone()),
                ("alertname".into(), n.alertname.clone()),
                ("fingerprint".into(), n.fingerprint.clone()),
            ];
            if let Some(t) = &n.target {
                e.push(("target".into(), t.clone()));
            }
            e.extend([
                ("run".into(), format!("{}/{}", n.namespace, n.run)),
                ("engine".into(), n.engine.clone()),
                ("outcome".into(), n.outcome.to_string()),
                ("message".into(), n.message.clone()),
                ("correlationId".into(), n.correlation_id.clone()),
            ]);
            if let Some(l) = &n.link {
                e.push(("link".into(), l.clone()));
            }
            for (step, result) in &n.steps {
                let (outcome, message) = step_words(result);
                e.push((format!("step.{step}"), format!("{outcome}: {message}")));
            }
            for (k, v) in &n.labels {
                e.push((format!("label.{k}"), v.clone()));
            }
            (
                "remediation-failed",
                vendor.priority.clone(),
                n.target.clone(),
                e,
            )
        }
        Message::StoodDown(s) => {
            let mut e = vec![
                ("policy".to_string(), s.policy.clone()),
                ("alertname".into(), s.alertname.clone()),
                ("fingerprint".into(), s.fingerprint.clone()),
                ("target".into(), s.target.clone()),
                ("decision".into(), s.decision.clone()),
                ("reason".into(), s.reason.clone()),
                ("quietFor".into(), s.quiet_for.clone()),
                ("correlationId".into(), s.correlation_id.clone()),
            ];
            if let Some(l) = &s.link {
                e.push(("link".into(), l.clone()));
            }
            for (k, v) in &s.labels {
                e.push((format!("label.{k}"), v.clone()));
            }
            (
                "stood-down",
                lower(&vendor.priority),
                Some(s.target.clone()),
                e,
            )
        }
        Message::Approval(a) => {
            let mut e = vec![
                ("policy".to_string(), a.policy.clone()),
                ("alertname".into(), a.alertname.clone()),
                ("fingerprint".into(), a.fingerprint.clone()),
                ("target".into(), a.target.clone()),
                ("run".into(), format!("{}/{}", a.namespace, a.run)),
                ("deadline".into(), a.deadline.clone()),
                ("onTimeout".into(), a.on_timeout.clone()),
                ("approve".into(), a.decide.approve_command.clone()),
                ("reject".into(), a.decide.reject_command.clone()),
                ("correlationId".into(), a.correlation_id.clone()),
            ];
            for step in &a.steps {
                e.push((
                    format!("step.{}", step.name),
                    format!("{}: {}", step.dry_run, step.command),
                ));
            }
            (
                "awaiting-approval",
                vendor.priority.clone(),
                Some(a.target.clone()),
                e,
            )
        }
    };
    let mut tags = vec![json!("heal"), json!(tag)];
    tags.extend(vendor.tags.iter().map(|t| json!(t)));
    let mut body = json!({
        "message": cut(&m.summary(), MAX_MESSAGE),
        "alias": alias,
        "description": cut(&m.text(), MAX_DESCRIPTION),
        "tags": tags,
        "details": details(entries),
        "source": "heald",
        "priority": priority,
    });
    if let Some(entity) = entity {
        body["entity"] = json!(cut(&entity, MAX_ENTITY));
    }
    if !vendor.responders.is_empty() {
        body["responders"] = vendor
            .responders
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("type".into(), json!(r.kind));
                o.insert(r.by.into(), json!(r.value));
                Value::Object(o)
            })
            .collect();
    }
    Some(Outbound {
        url: format!("{api}/v2/alerts"),
        authorization,
        body,
    })
}
