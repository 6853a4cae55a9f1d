//! Escalation when a run fails: the policy's notifiers get the alert, the run, the steps'
//! results and a link, as a generic JSON webhook or a Slack-compatible `{text}` message,
//! with retries. Notifier URLs are usually secrets: they are read when needed (literal,
//! environment variable or file) and never logged.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::heald::engines::runs::RunOutcome;
use crate::heald::reporting::alertmanager_http::{DeliveryError, post_retrying};
use crate::policy::{Notifier, NotifierKind, UrlSource};

/// What a failure notification says.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Always `heal.dev/v1alpha1`.
    pub api_version: &'static str,
    /// Always `RemediationFailed`.
    pub kind: &'static str,
    /// The policy.
    pub policy: String,
    /// The alert's name.
    pub alertname: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The run.
    pub run: String,
    /// Its namespace.
    pub namespace: String,
    /// Its engine.
    pub engine: String,
    /// Correlation id.
    pub correlation_id: String,
    /// `failed` or `timed-out`.
    pub outcome: RunOutcome,
    /// The engine's or heald's message.
    pub message: String,
    /// Each step's result, by step name.
    pub steps: BTreeMap<String, Value>,
    /// Where to look (Alertmanager's view of the alert), when known.
    pub link: Option<String>,
}

impl Notification {
    /// One line for chat.
    pub fn text(&self) -> String {
        let mut s = format!(
            ":rotating_light: heal could not fix {alert} ({policy}): run {ns}/{run} on {engine} \
             {outcome}",
            alert = self.alertname,
            policy = self.policy,
            ns = self.namespace,
            run = self.run,
            engine = self.engine,
            outcome = self.outcome,
        );
        if !self.message.is_empty() {
            s.push_str(&format!(": {}", self.message));
        }
        for (step, result) in &self.steps {
            let outcome = result.get("outcome").and_then(Value::as_str).unwrap_or("?");
            let message = result.get("message").and_then(Value::as_str).unwrap_or("");
            s.push_str(&format!("\n• {step}: {outcome} {message}"));
        }
        s.push_str(&format!("\ncorrelation id {}", self.correlation_id));
        if let Some(link) = &self.link {
            s.push_str(&format!("\n{link}"));
        }
        s
    }
}

/// The body sent to a notifier.
pub fn body(kind: NotifierKind, channel: Option<&str>, n: &Notification) -> Value {
    match kind {
        NotifierKind::Webhook => serde_json::to_value(n).unwrap_or(Value::Null),
        NotifierKind::Slack => {
            let mut b = json!({"text": n.text()});
            if let Some(c) = channel {
                b["channel"] = json!(c);
            }
            b
        }
    }
}

/// The notifier's URL, read now (a rotated Secret is picked up).
pub fn resolve_url(source: &UrlSource) -> Result<String, DeliveryError> {
    match source {
        UrlSource::Literal(u) => Ok(u.clone()),
        UrlSource::Env(var) => std::env::var(var)
            .map_err(|_| DeliveryError::Config(format!("environment variable {var} is not set"))),
        UrlSource::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| DeliveryError::Config(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Send `n` to `notifier`, retrying transient failures.
pub async fn notify(
    client: &reqwest::Client,
    notifier: &Notifier,
    n: &Notification,
) -> Result<(), DeliveryError> {
    let url = resolve_url(&notifier.url)?;
    let body = body(notifier.kind, notifier.channel.as_deref(), n);
    post_retrying(client, &url, &body, 4)
        .await
        .map(|_| ())
        // The URL may hold a secret (Slack's does): name the notifier instead.
        .map_err(|e| match e {
            DeliveryError::Status { status, body, .. } => DeliveryError::Status {
                url: format!("notifier {}", notifier.name),
                status,
                body,
            },
            DeliveryError::Transport { message, .. } => DeliveryError::Transport {
                url: format!("notifier {}", notifier.name),
                message: message.replace(&url, "<url>"),
            },
            other => other,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Notification {
        Notification {
            api_version: "heal.dev/v1alpha1",
            kind: "RemediationFailed",
            policy: "restart-web".into(),
            alertname: "WebDown".into(),
            fingerprint: "0123456789abcdef".into(),
            labels: BTreeMap::new(),
            run: "heal-restart-web-1".into(),
            namespace: "heal-system".into(),
            engine: "argo".into(),
            correlation_id: "c-1".into(),
            outcome: RunOutcome::Failed,
            message: "child failed".into(),
            steps: [(
                "restart".to_string(),
                json!({"outcome": "failed", "message": "forbidden"}),
            )]
            .into(),
            link: None,
        }
    }

    #[test]
    fn slack_gets_text_naming_the_run_the_steps_and_the_correlation_id() {
        let b = body(NotifierKind::Slack, Some("#oncall"), &n());
        let text = b["text"].as_str().unwrap();
        assert!(text.contains("heal-restart-web-1"), "{text}");
        assert!(text.contains("restart: failed forbidden"), "{text}");
        assert!(text.contains("correlation id c-1"), "{text}");
        assert_eq!(b["channel"], "#oncall");
    }

    #[test]
    fn the_webhook_gets_the_whole_notification_as_json() {
        let b = body(NotifierKind::Webhook, None, &n());
        assert_eq!(b["kind"], "RemediationFailed");
        assert_eq!(b["outcome"], "failed");
        assert_eq!(b["correlationId"], "c-1");
        assert_eq!(b["steps"]["restart"]["message"], "forbidden");
    }
}
