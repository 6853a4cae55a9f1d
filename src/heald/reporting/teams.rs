//! Microsoft Teams: an Adaptive Card posted to the channel's webhook, in the message
//! envelope Teams documents for incoming webhooks (`{"type": "message", "attachments":
//! [{"contentType": "application/vnd.microsoft.card.adaptive", "content": CARD}]}`), which
//! Workflows' "When a Teams webhook request is received" accepts too. The webhook URL is
//! the secret. Teams keeps no alert to close, so successes are not sent.

use serde_json::{Value, json};

use crate::heald::reporting::notify_http::{Message, step_words};

/// The card's schema and version (1.2: what incoming webhooks and Workflows both render).
const SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";
const VERSION: &str = "1.2";

fn fact(title: &str, value: &str) -> Value {
    json!({"title": title, "value": value})
}

/// The message for `m`; `None` for a success.
pub fn card(m: &Message<'_>) -> Option<Value> {
    let (color, facts, detail) = match m {
        Message::Resolved(_) => return None,
        Message::Failed(n) => {
            let mut facts = vec![fact("Policy", &n.policy)];
            if let Some(t) = &n.target {
                facts.push(fact("Target", t));
            }
            facts.extend([
                fact("Run", &format!("{}/{}", n.namespace, n.run)),
                fact("Engine", &n.engine),
                fact("Outcome", n.outcome.as_str()),
                fact("Correlation id", &n.correlation_id),
            ]);
            let mut detail = Vec::new();
            if !n.message.is_empty() {
                detail.push(n.message.clone());
            }
            for (step, result) in &n.steps {
                let (outcome, message) = step_words(result);
                detail.push(
                    format!("- {step}: {outcome} {message}")
                        .trim_end()
                        .to_string(),
                );
            }
            ("Attention", facts, detail.join("\n\n"))
        }
        Message::Approval(a) => {
            let mut detail: Vec<String> = a
                .steps
                .iter()
                .map(|s| {
                    if s.waits_for_approval {
                        format!(
                            "- {}: heal {} (dry run: {} {})",
                            s.name, s.command, s.dry_run, s.dry_run_message
                        )
                        .trim_end()
                        .to_string()
                    } else {
                        format!("- {}: heal {} (changes nothing)", s.name, s.command)
                    }
                })
                .collect();
            detail.push(format!(
                "Approve: {}\n\nReject: {}",
                a.decide.approve_command, a.decide.reject_command
            ));
            (
                "Accent",
                vec![
                    fact("Policy", &a.policy),
                    fact("Target", &a.target),
                    fact("Run", &format!("{}/{}", a.namespace, a.run)),
                    fact("Engine", &a.engine),
                    fact("Decide by", &a.deadline),
                    fact("Without a decision", &a.on_timeout),
                    fact("Correlation id", &a.correlation_id),
                ],
                detail.join("\n\n"),
            )
        }
        Message::StoodDown(s) => (
            "Warning",
            vec![
                fact("Policy", &s.policy),
                fact("Target", &s.target),
                fact("Decision", &s.decision),
                fact("Run", &s.run),
                fact("Correlation id", &s.correlation_id),
            ],
            format!(
                "{}\n\nNothing was done; the alert keeps firing. No further {} notice for this \
                 for {}.",
                s.reason, s.decision, s.quiet_for
            ),
        ),
    };
    let mut body = vec![json!({
        "type": "TextBlock",
        "size": "Medium",
        "weight": "Bolder",
        "color": color,
        "wrap": true,
        "text": m.summary(),
    })];
    if !detail.is_empty() {
        body.push(json!({"type": "TextBlock", "wrap": true, "text": detail}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    let mut content = json!({
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": VERSION,
        "body": body,
    });
    if let Some(link) = m.link() {
        content["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": "Open in Alertmanager",
            "url": link,
        }]);
    }
    Some(json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    }))
}
