//! Talking to Alertmanager's API v2: a silence for the alert while its run is in progress
//! (`POST /api/v2/silences`, every label of the alert as an equality matcher, until the
//! run's deadline, `createdBy: heald`, the comment carrying the correlation id and run
//! name), replaced after a success by one for the policy's duration (posted with the old
//! id; Alertmanager v0.25-v0.34 answers with a new id and expires the old silence) and
//! expired after a failure (`DELETE /api/v2/silence/{id}`). Also the HTTP client heald
//! uses for every outbound call (rustls with ring).

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::prometheus_http::redacted_url;

/// An outbound delivery that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// Where it was sent.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The receiver could not be reached.
    #[error("{url}: {message}")]
    Transport {
        /// Where it was sent.
        url: String,
        /// The client's error.
        message: String,
    },
    /// The receiver is not configured or its URL cannot be read.
    #[error("{0}")]
    Config(String),
}

impl DeliveryError {
    /// Whether trying again may work.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => *status == 429 || *status >= 500,
            DeliveryError::Transport { .. } => true,
            DeliveryError::Config(_) => false,
        }
    }
}

/// The HTTP client for Alertmanager, notifiers and the Argo Server: rustls with the ring
/// provider, the given timeout per request.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("heald/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// POST `body` as JSON to `url` once.
pub async fn post_once(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<Value, DeliveryError> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| DeliveryError::Transport {
            url: redacted_url(url),
            message: error_chain(&e),
        })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(DeliveryError::Status {
            url: redacted_url(url),
            status: status.as_u16(),
            body: crate::heald::kube_io::truncate(text.trim(), 300),
        });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POST with retries of transient failures (exponential backoff, `attempts` in all).
pub async fn post_retrying(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    attempts: usize,
) -> Result<Value, DeliveryError> {
    (|| post_once(client, url, body))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .with_max_times(attempts.saturating_sub(1)),
        )
        .sleep(tokio::time::sleep)
        .when(DeliveryError::is_transient)
        .notify(|e, d| {
            tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "delivery failed, retrying")
        })
        .await
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

/// The `postableSilence` for an alert: every label as an equality matcher, from `now` for
/// `duration`.
pub fn silence_body(
    labels: &BTreeMap<String, String>,
    now: Timestamp,
    duration: Duration,
    comment: &str,
) -> Value {
    let matchers: Vec<Value> = labels
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v, "isRegex": false, "isEqual": true}))
        .collect();
    let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4);
    json!({
        "matchers": matchers,
        "startsAt": now.to_string(),
        "endsAt": (now + SignedDuration::from_secs(secs)).to_string(),
        "createdBy": "heald",
        "comment": comment,
    })
}

/// Create a silence, or replace the one whose `id` the body carries; returns its id.
/// `attempts` bounds the retries of transient failures.
pub async fn create_silence(
    client: &reqwest::Client,
    alertmanager_url: &str,
    body: &Value,
    attempts: usize,
) -> Result<String, DeliveryError> {
    if body
        .get("matchers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(DeliveryError::Config(
            "the alert's labels are unknown: no silence without matchers".into(),
        ));
    }
    let url = format!("{}/api/v2/silences", alertmanager_url.trim_end_matches('/'));
    let answer = post_retrying(client, &url, body, attempts).await?;
    Ok(answer
        .get("silenceID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// The ids of heald's unexpired silences (`createdBy: heald`, state `active` or
/// `pending`) whose comment contains `marker`, among those matching the alert's
/// `alertname` (`GET /api/v2/silences?filter=alertname="..."`). Used only to recover the
/// in-progress silence of a run whose creation was interrupted.
pub async fn find_silences(
    client: &reqwest::Client,
    alertmanager_url: &str,
    labels: &BTreeMap<String, String>,
    marker: &str,
) -> Result<Vec<String>, DeliveryError> {
    let mut url = format!("{}/api/v2/silences", alertmanager_url.trim_end_matches('/'));
    if let Some(name) = labels.get("alertname") {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        let filter = format!("alertname=\"{escaped}\"");
        url = format!("{url}?filter={}", crate::kube_api::enc(&filter));
    }
    let req = client.get(&url);
    let transport = |e: reqwest::Error| DeliveryError::Transport {
        url: redacted_url(&url),
        message: error_chain(&e),
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(DeliveryError::Status {
            url: redacted_url(&url),
            status: status.as_u16(),
            body: crate::heald::kube_io::truncate(
                resp.text().await.unwrap_or_default().trim(),
                300,
            ),
        });
    }
    let list: Value = resp.json().await.map_err(transport)?;
    Ok(heald_silences(&list, marker))
}

/// The ids of heald's unexpired silences in a `gettableSilences` list whose comment
/// contains `marker`.
pub fn heald_silences(list: &Value, marker: &str) -> Vec<String> {
    let str_at = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|s| str_at(s, "/createdBy") == "heald")
        .filter(|s| matches!(str_at(s, "/status/state").as_str(), "active" | "pending"))
        .filter(|s| str_at(s, "/comment").contains(marker))
        .map(|s| str_at(s, "/id"))
        .filter(|id| !id.is_empty())
        .collect()
}

/// The part of an in-progress silence's comment that names its run.
pub fn progress_marker(run: &str, namespace: &str) -> String {
    format!("heal run {run} ({namespace}) in progress")
}

/// Expire a silence (`DELETE /api/v2/silence/{id}`); one that is already gone is fine.
pub async fn expire_silence(
    client: &reqwest::Client,
    alertmanager_url: &str,
    id: &str,
) -> Result<(), DeliveryError> {
    let url = format!(
        "{}/api/v2/silence/{}",
        alertmanager_url.trim_end_matches('/'),
        crate::kube_api::enc(id)
    );
    let resp = client
        .delete(&url)
        .send()
        .await
        .map_err(|e| DeliveryError::Transport {
            url: redacted_url(&url),
            message: error_chain(&e),
        })?;
    let status = resp.status();
    if status.is_success() || status.as_u16() == 404 {
        return Ok(());
    }
    Err(DeliveryError::Status {
        url: redacted_url(&url),
        status: status.as_u16(),
        body: crate::heald::kube_io::truncate(resp.text().await.unwrap_or_default().trim(), 300),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_matches_every_label_and_has_the_reference_shape() {
        heal_testkit::require_reference!();
        let labels: BTreeMap<String, String> = [
            ("alertname".to_string(), "WebDown".to_string()),
            ("namespace".to_string(), "shop".to_string()),
        ]
        .into();
        let body = silence_body(
            &labels,
            "2026-01-01T00:00:00Z".parse().unwrap(),
            Duration::from_secs(7200),
            "heal run r succeeded",
        );
        assert_eq!(body["endsAt"], "2026-01-01T02:00:00Z");
        assert_eq!(body["createdBy"], "heald");
        assert_eq!(body["matchers"][1]["name"], "namespace");
        assert_eq!(body["matchers"][1]["isEqual"], true);
        let reference: Value = serde_json::from_str(&heal_testkit::reference_text(
            "alertmanager/postable-silence.example.json",
        ))
        .unwrap();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&body), keys(&reference));
    }

    #[test]
    fn only_heald_s_unexpired_silences_of_the_run_are_found() {
        let marker = progress_marker("heal-r-1", "heal");
        let list = json!([
            {"id": "a", "createdBy": "heald", "status": {"state": "active"},
             "comment": format!("{marker}; policy p; correlation id c")},
            {"id": "b", "createdBy": "heald", "status": {"state": "expired"},
             "comment": format!("{marker}; policy p")},
            {"id": "c", "createdBy": "alice", "status": {"state": "active"},
             "comment": format!("{marker}; policy p")},
            {"id": "d", "createdBy": "heald", "status": {"state": "pending"},
             "comment": "heal run heal-r-10 (heal) in progress"},
            {"id": "e", "createdBy": "heald", "status": {"state": "pending"},
             "comment": format!("{marker}")}
        ]);
        assert_eq!(heald_silences(&list, &marker), ["a", "e"]);
    }
}
