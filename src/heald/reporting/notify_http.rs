//! Telling humans: the policy's notifiers get a [`Message`] when a run fails (or could not
//! be started), when heald stands down (circuit open, rate limited, blast radius), and,
//! for the vendors that keep an open alert (PagerDuty, Opsgenie), when a later run of the
//! same alert episode succeeds. Each kind gets its vendor's documented request:
//!
//! - `webhook`: heald's own JSON document (`kind: RemediationFailed` or
//!   `RemediationStoodDown`);
//! - `slack`: a Slack-compatible `{text, channel}` message;
//! - `pagerduty`: an Events API v2 event ([`pagerduty`](crate::heald::reporting::pagerduty));
//! - `opsgenie`: an Alert API request ([`opsgenie`](crate::heald::reporting::opsgenie));
//! - `teams`: an Adaptive Card ([`teams`](crate::heald::reporting::teams)).
//!
//! Every request is retried on 429, 5xx and transport errors (at most
//! [`ATTEMPTS`] attempts, exponential backoff with jitter, a `Retry-After` of up to
//! [`MAX_DELAY`] honoured). Secrets (Slack's and Teams' URLs, PagerDuty's routing key,
//! Opsgenie's API key) are read when needed (a rotated Secret is picked up), sent only
//! where the vendor wants them (the URL, PagerDuty's `routing_key` body field, Opsgenie's
//! `Authorization: GenieKey` header), and never logged: errors name the notifier instead
//! of its URL, and any key or URL an answer echoes is cut out.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};

use crate::heald::engines::runs::RunOutcome;
use crate::heald::reporting::alertmanager_http::DeliveryError;
use crate::policy::{Notifier, NotifierKind, SecretSource, UrlSource};

/// Attempts per request, the first included.
pub const ATTEMPTS: usize = 4;
/// The first retry's delay (doubling, with up to 50% jitter).
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts, a vendor's `Retry-After` included.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

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
    /// The target (`shop/deployment/web`, `node/worker-1`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
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
            let (outcome, message) = step_words(result);
            s.push_str(&format!("\n• {step}: {outcome} {message}"));
        }
        s.push_str(&format!("\ncorrelation id {}", self.correlation_id));
        if let Some(link) = &self.link {
            s.push_str(&format!("\n{link}"));
        }
        s
    }
}

/// A step result's outcome and message.
pub fn step_words(result: &Value) -> (&str, &str) {
    (
        result.get("outcome").and_then(Value::as_str).unwrap_or("?"),
        result.get("message").and_then(Value::as_str).unwrap_or(""),
    )
}

/// What heald says when it stands down: it did not act on an alert, and will not tell
/// again about the same thing within `window`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StandDown {
    /// Always `heal.dev/v1alpha1`.
    pub api_version: &'static str,
    /// Always `RemediationStoodDown`.
    pub kind: &'static str,
    /// The policy.
    pub policy: String,
    /// The alert's name.
    pub alertname: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The decision: `circuit-open`, `rate-limited`, `blast-radius`.
    pub decision: String,
    /// Why, as the webhook's answer says it.
    pub reason: String,
    /// The target (`shop/deployment/web`, `node/worker-1`).
    pub target: String,
    /// The run this alert episode would have had.
    pub run: String,
    /// The alert episode's correlation id.
    pub correlation_id: String,
    /// No other notice about this decision for this policy and target (or namespace
    /// bucket) goes out within this time, from this replica (`10m`, `2h`).
    pub quiet_for: String,
    /// Where to look (Alertmanager's view of the alert), when known.
    pub link: Option<String>,
}

impl StandDown {
    /// A few lines for chat.
    pub fn text(&self) -> String {
        let mut s = format!(
            ":warning: heal stood down on {alert} ({policy}) for {target}: {decision}: {reason}",
            alert = self.alertname,
            policy = self.policy,
            target = self.target,
            decision = self.decision,
            reason = self.reason,
        );
        s.push_str(&format!(
            "\nNothing was done; the alert keeps firing. No further {} notice for this for {}.",
            self.decision, self.quiet_for
        ));
        s.push_str(&format!("\ncorrelation id {}", self.correlation_id));
        if let Some(link) = &self.link {
            s.push_str(&format!("\n{link}"));
        }
        s
    }
}

/// A run of an alert episode succeeded: what PagerDuty and Opsgenie are told to close the
/// alert an earlier message of the same episode opened.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    /// The policy.
    pub policy: String,
    /// The alert's name.
    pub alertname: String,
    /// The run that succeeded.
    pub run: String,
    /// Its namespace.
    pub namespace: String,
    /// Its engine.
    pub engine: String,
    /// The alert episode's correlation id.
    pub correlation_id: String,
}

/// Something to tell a notifier.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A run failed, timed out, or could not be started.
    Failed(&'a Notification),
    /// heald stood down.
    StoodDown(&'a StandDown),
    /// A run succeeded (sent only to notifiers that [resolve](NotifierKind::resolves)).
    Resolved(&'a Resolution),
    /// A run waits at its approval gate.
    Approval(&'a crate::heald::reporting::approval::ApprovalRequest),
}

impl Message<'_> {
    /// The alert episode's correlation id: PagerDuty's `dedup_key`, Opsgenie's `alias`.
    pub fn correlation_id(&self) -> &str {
        match self {
            Message::Failed(n) => &n.correlation_id,
            Message::StoodDown(s) => &s.correlation_id,
            Message::Resolved(r) => &r.correlation_id,
            Message::Approval(a) => &a.correlation_id,
        }
    }

    /// The run the message is about.
    pub fn run(&self) -> &str {
        match self {
            Message::Failed(n) => &n.run,
            Message::StoodDown(s) => &s.run,
            Message::Resolved(r) => &r.run,
            Message::Approval(a) => &a.run,
        }
    }

    /// The word for logs and metrics.
    pub fn what(&self) -> &'static str {
        match self {
            Message::Failed(_) => "failure",
            Message::StoodDown(_) => "stand-down",
            Message::Resolved(_) => "resolution",
            Message::Approval(_) => "approval-request",
        }
    }

    /// Where the alert can be seen, when known.
    pub fn link(&self) -> Option<&str> {
        match self {
            Message::Failed(n) => n.link.as_deref(),
            Message::StoodDown(s) => s.link.as_deref(),
            Message::Resolved(_) => None,
            Message::Approval(a) => a.link.as_deref(),
        }
    }

    /// One line naming what happened: PagerDuty's `summary`, Opsgenie's `message` (cut to
    /// the vendor's limit by the caller), the card's title.
    pub fn summary(&self) -> String {
        match self {
            Message::Failed(n) => {
                let on = n
                    .target
                    .as_ref()
                    .map(|t| format!(" on {t}"))
                    .unwrap_or_default();
                format!(
                    "heal could not fix {}{on} ({}): run {}",
                    n.alertname, n.policy, n.outcome
                )
            }
            Message::StoodDown(s) => format!(
                "heal stood down on {} for {} ({}): {}",
                s.alertname, s.target, s.policy, s.decision
            ),
            Message::Resolved(r) => format!(
                "heal fixed {} ({}): run {}/{} succeeded",
                r.alertname, r.policy, r.namespace, r.run
            ),
            Message::Approval(a) => a.summary(),
        }
    }

    /// The full text for chat and descriptions.
    pub fn text(&self) -> String {
        match self {
            Message::Failed(n) => n.text(),
            Message::StoodDown(s) => s.text(),
            Message::Approval(a) => a.text(),
            Message::Resolved(r) => format!(
                "heal run {}/{} ({}) succeeded; policy {}; correlation id {}",
                r.namespace, r.run, r.engine, r.policy, r.correlation_id
            ),
        }
    }
}

/// `s` cut to at most `max` characters (not bytes), with `...` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// One HTTP request to a notifier.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Where.
    pub url: String,
    /// The `Authorization` header, when the vendor wants one.
    pub authorization: Option<SecretString>,
    /// The JSON body.
    pub body: Value,
}

/// The body a `webhook` or `slack` notifier gets; `None`: nothing to tell this kind.
pub fn body(kind: NotifierKind, channel: Option<&str>, m: &Message<'_>) -> Option<Value> {
    match (kind, m) {
        (_, Message::Resolved(_)) => None,
        (NotifierKind::Webhook, Message::Failed(n)) => serde_json::to_value(n).ok(),
        (NotifierKind::Webhook, Message::StoodDown(s)) => serde_json::to_value(s).ok(),
        (NotifierKind::Webhook, Message::Approval(a)) => serde_json::to_value(a).ok(),
        (NotifierKind::Slack, m) => {
            let mut b = json!({"text": m.text()});
            if let Some(c) = channel {
                b["channel"] = json!(c);
            }
            Some(b)
        }
        _ => None,
    }
}

/// The notifier's URL, read now (a rotated Secret is picked up).
pub fn resolve_url(source: &UrlSource) -> Result<String, DeliveryError> {
    match source {
        UrlSource::Literal(u) => Ok(u.clone()),
        UrlSource::Env(var) => std::env::var(var)
            .map(|s| s.trim().to_string())
            .map_err(|_| DeliveryError::Config(format!("environment variable {var} is not set"))),
        UrlSource::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| DeliveryError::Config(format!("cannot read {}: {e}", path.display()))),
    }
}

/// A notifier's key, read now; never empty.
pub fn resolve_secret(source: &SecretSource) -> Result<SecretString, DeliveryError> {
    let (text, from) = match source {
        SecretSource::Env(var) => (
            std::env::var(var).map_err(|_| {
                DeliveryError::Config(format!("environment variable {var} is not set"))
            })?,
            format!("environment variable {var}"),
        ),
        SecretSource::File(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                DeliveryError::Config(format!("cannot read {}: {e}", path.display()))
            })?,
            path.display().to_string(),
        ),
    };
    let key = text.trim();
    if key.is_empty() {
        return Err(DeliveryError::Config(format!("the key in {from} is empty")));
    }
    Ok(SecretString::from(key.to_string()))
}

/// The request `m` makes to `notifier`, given its URL and key as read; `None`: nothing to
/// tell this notifier (a success, to a kind that keeps no open alert or was told not to).
pub fn request(
    notifier: &Notifier,
    m: &Message<'_>,
    url: &str,
    key: Option<&SecretString>,
) -> Option<Outbound> {
    if matches!(m, Message::Resolved(_))
        && !(notifier.kind.resolves() && notifier.vendor.send_resolved)
    {
        return None;
    }
    let plain = |body: Value| Outbound {
        url: url.to_string(),
        authorization: None,
        body,
    };
    match notifier.kind {
        NotifierKind::Webhook | NotifierKind::Slack => {
            body(notifier.kind, notifier.channel.as_deref(), m).map(plain)
        }
        NotifierKind::Teams => crate::heald::reporting::teams::card(m).map(plain),
        NotifierKind::PagerDuty => {
            let key = key?.expose_secret();
            crate::heald::reporting::pagerduty::event(&notifier.vendor, m, key).map(plain)
        }
        NotifierKind::Opsgenie => crate::heald::reporting::opsgenie::request(
            &notifier.vendor,
            m,
            url,
            key?.expose_secret(),
        ),
    }
}

/// Send `n` (a failure) to `notifier`, retrying transient failures.
pub async fn notify(
    client: &reqwest::Client,
    notifier: &Notifier,
    n: &Notification,
) -> Result<(), DeliveryError> {
    send(client, notifier, &Message::Failed(n))
        .await
        .map(|_| ())
}

/// Send `m` to `notifier`, retrying transient failures. `Ok(false)`: nothing to send to
/// this kind of notifier.
pub async fn send(
    client: &reqwest::Client,
    notifier: &Notifier,
    m: &Message<'_>,
) -> Result<bool, DeliveryError> {
    if matches!(m, Message::Resolved(_))
        && !(notifier.kind.resolves() && notifier.vendor.send_resolved)
    {
        return Ok(false);
    }
    let url = resolve_url(&notifier.url)?;
    let key = notifier.key.as_ref().map(resolve_secret).transpose()?;
    let Some(out) = request(notifier, m, &url, key.as_ref()) else {
        return Ok(false);
    };
    let secrets = secrets_of(notifier, &url, key.as_ref());
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    // The URL may hold a secret (Slack's and Teams' do), so may an answer: name the
    // notifier instead, and cut out every secret and the URL.
    let clean = |e: DeliveryError| redact(e, &notifier.name, &out.url, &secrets);
    post_retrying(client, &out, notifier.kind, &clean)
        .await
        .map(|()| true)
        .map_err(clean)
}

/// What must never be logged: a URL read from a secret (whole, its path and query, each
/// path segment of 8 characters or more, since an answer may echo any of them) and the
/// key; longest first.
fn secrets_of(notifier: &Notifier, url: &str, key: Option<&SecretString>) -> Vec<String> {
    let mut out = Vec::new();
    if !matches!(notifier.url, UrlSource::Literal(_)) {
        out.push(url.to_string());
        if let Ok(u) = reqwest::Url::parse(url) {
            out.push(u.path().to_string());
            out.extend(u.query().map(str::to_string));
            out.extend(
                u.path_segments()
                    .into_iter()
                    .flatten()
                    .filter(|s| s.len() >= 8)
                    .map(str::to_string),
            );
        }
    }
    out.extend(key.map(|k| k.expose_secret().to_string()));
    out.retain(|s| s.len() > 1);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `e` with the notifier's name for its URL and no secret left in its text.
fn redact(e: DeliveryError, name: &str, url: &str, secrets: &[&str]) -> DeliveryError {
    let clean = |s: String| {
        let mut s = s.replace(url, "<url>");
        for secret in secrets {
            s = s.replace(secret, "<redacted>");
        }
        s
    };
    match e {
        DeliveryError::Status { status, body, .. } => DeliveryError::Status {
            url: format!("notifier {name}"),
            status,
            body: clean(body),
        },
        DeliveryError::Transport { message, .. } => DeliveryError::Transport {
            url: format!("notifier {name}"),
            message: clean(message),
        },
        DeliveryError::Config(m) => DeliveryError::Config(clean(m)),
    }
}

/// POST with retries of transient failures: [`ATTEMPTS`] in all, [`FIRST_DELAY`]
/// doubling with jitter, a `Retry-After` (seconds) honoured up to [`MAX_DELAY`].
async fn post_retrying(
    client: &reqwest::Client,
    out: &Outbound,
    kind: NotifierKind,
    clean: &(dyn Fn(DeliveryError) -> DeliveryError + Sync),
) -> Result<(), DeliveryError> {
    let mut delay = FIRST_DELAY;
    let mut attempt = 1;
    loop {
        match post_once(client, out, kind).await {
            Ok(()) => return Ok(()),
            Err((e, retry_after)) if e.is_transient() && attempt < ATTEMPTS => {
                let jitter = rand::rng().random_range(0.0..0.5);
                let wait = retry_after
                    .unwrap_or_else(|| delay.mul_f64(1.0 + jitter))
                    .min(MAX_DELAY);
                tracing::warn!(kind = kind.as_str(), attempt, retry_in_ms = wait.as_millis() as u64,
                    error = %clean(e), "notification not delivered, retrying");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(MAX_DELAY);
                attempt += 1;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Teams' classic incoming webhooks answer a throttled request 200 with this in the body
/// (Microsoft's "Rate limiting for connectors").
const TEAMS_THROTTLED: &str = "HTTP error 429";

async fn post_once(
    client: &reqwest::Client,
    out: &Outbound,
    kind: NotifierKind,
) -> Result<(), (DeliveryError, Option<Duration>)> {
    let mut req = client.post(&out.url).json(&out.body);
    if let Some(auth) = &out.authorization {
        let mut value = HeaderValue::from_str(auth.expose_secret()).map_err(|_| {
            (
                DeliveryError::Config("the key is not a valid HTTP header value".into()),
                None,
            )
        })?;
        value.set_sensitive(true);
        req = req.header(AUTHORIZATION, value);
    }
    let resp = req.send().await.map_err(|e| {
        (
            DeliveryError::Transport {
                url: String::new(),
                message: error_chain(&e),
            },
            None,
        )
    })?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let throttled = kind == NotifierKind::Teams && text.contains(TEAMS_THROTTLED);
    if !status.is_success() || throttled {
        return Err((
            DeliveryError::Status {
                url: String::new(),
                status: if throttled { 429 } else { status.as_u16() },
                body: crate::heald::kube_io::truncate(text.trim(), 300),
            },
            retry_after,
        ));
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The target as notifications name it: `shop/deployment/web`, `node/worker-1`.
pub fn target_words(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{namespace}/{kind}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn n() -> Notification {
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
            target: Some("shop/deployment/web".into()),
        }
    }

    #[test]
    fn slack_gets_text_naming_the_run_the_steps_and_the_correlation_id() {
        let n = n();
        let b = body(NotifierKind::Slack, Some("#oncall"), &Message::Failed(&n)).unwrap();
        let text = b["text"].as_str().unwrap();
        assert!(text.contains("heal-restart-web-1"), "{text}");
        assert!(text.contains("restart: failed forbidden"), "{text}");
        assert!(text.contains("correlation id c-1"), "{text}");
        assert_eq!(b["channel"], "#oncall");
    }

    #[test]
    fn the_webhook_gets_the_whole_notification_as_json() {
        let n = n();
        let b = body(NotifierKind::Webhook, None, &Message::Failed(&n)).unwrap();
        assert_eq!(b["kind"], "RemediationFailed");
        assert_eq!(b["outcome"], "failed");
        assert_eq!(b["correlationId"], "c-1");
        assert_eq!(b["steps"]["restart"]["message"], "forbidden");
    }

    #[test]
    fn a_success_is_told_to_nobody_but_the_vendors_that_keep_an_alert_open() {
        let r = Resolution {
            policy: "p".into(),
            alertname: "A".into(),
            run: "r".into(),
            namespace: "ns".into(),
            engine: "argo".into(),
            correlation_id: "c".into(),
        };
        for kind in [NotifierKind::Webhook, NotifierKind::Slack] {
            assert!(body(kind, None, &Message::Resolved(&r)).is_none());
        }
    }

    #[test]
    fn cutting_counts_characters() {
        assert_eq!(cut("ééééé", 5), "ééééé");
        assert_eq!(cut("éééééé", 5), "éé...");
    }

    #[test]
    fn errors_name_the_notifier_and_lose_every_secret() {
        let e = DeliveryError::Transport {
            url: "https://hooks.example/SECRET-PATH".into(),
            message: "error sending request for url (https://hooks.example/SECRET-PATH): key KEY-1"
                .into(),
        };
        let e = redact(
            e,
            "oncall",
            "https://hooks.example/SECRET-PATH",
            &["KEY-1", "https://hooks.example/SECRET-PATH"],
        );
        let text = e.to_string();
        assert!(
            !text.contains("SECRET-PATH") && !text.contains("KEY-1"),
            "{text}"
        );
        assert!(text.starts_with("notifier oncall"), "{text}");
    }
}
