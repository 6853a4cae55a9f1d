//! `heal report`: send a run's outcome to heald (`POST /v1/reports`), and when heald cannot
//! be reached, tell humans straight through Alertmanager (`POST /api/v2/alerts`).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::outcome::{Exit, HealResult, Outcome, Target};
use crate::prometheus_http::redacted_url;

/// The body of `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `argo`, `tekton` or `local`.
    pub engine: String,
    /// Name of the Workflow / PipelineRun.
    pub run_name: String,
    /// Its namespace.
    pub namespace: String,
    /// The engine's status (`Succeeded`, `Failed`, `Error`, `Completed`, ...).
    pub status: String,
    /// `succeeded` or `failed`, normalised from `status`.
    pub outcome: String,
    /// Correlation id of the remediation.
    pub correlation_id: String,
    /// Step results, when the report step could collect them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
}

/// Normalise an engine status: Argo `Succeeded`, Tekton `$(tasks.status)` `Succeeded` or
/// `Completed` are success; everything else is failure.
pub fn normalise(status: &str) -> &'static str {
    match status.trim() {
        "Succeeded" | "Completed" | "succeeded" => "succeeded",
        _ => "failed",
    }
}

/// Options of `heal report`.
#[derive(Clone)]
pub struct ReportSpec {
    /// The report.
    pub report: Report,
    /// heald's reports endpoint (`http://heald.heal-system:8080/v1/reports`).
    pub report_url: Option<String>,
    /// Bearer token for heald.
    pub token: Option<String>,
    /// Alertmanager base URL for the fallback.
    pub alertmanager_url: Option<String>,
}

// Hand-written so the token can never reach a log line through `{:?}`.
impl std::fmt::Debug for ReportSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::prometheus_http::redacted_url;
        f.debug_struct("ReportSpec")
            .field("report", &self.report)
            .field("report_url", &self.report_url.as_deref().map(redacted_url))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field(
                "alertmanager_url",
                &self.alertmanager_url.as_deref().map(redacted_url),
            )
            .finish()
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(), (bool, String)> {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let s = r.status();
            Err((
                s.is_server_error() || s.as_u16() == 429,
                format!("{} answered {s}", redacted_url(url)),
            ))
        }
        Err(e) => Err((
            true,
            format!(
                "{}: {}",
                redacted_url(url),
                crate::kube_api::error_chain(&e)
            ),
        )),
    }
}

async fn post_retrying(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
    deadline: Instant,
) -> Result<(), String> {
    let attempt = || post(client, url, token, body);
    let fut = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .without_max_times(),
        )
        .sleep(tokio::time::sleep)
        .when(|(transient, _)| *transient)
        .notify(|(_, e), d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "report not delivered, retrying"));
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err((_, e))) => Err(e),
        Err(_) => Err(format!(
            "{}: no answer before the deadline",
            redacted_url(url)
        )),
    }
}

/// Deliver the report. Exit 0 when heald (or, failing that, Alertmanager) took it; 3 when
/// neither could be reached; 1 when heald refused it.
pub async fn report(spec: &ReportSpec, timeout: Duration) -> (HealResult, Exit) {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now().to_string();
    let r = &spec.report;
    let result = |outcome, message: String, exit| {
        tracing::info!(correlation_id = %r.correlation_id, action = "report", phase = "done", exit_code = Exit::code(exit), "{message}");
        (
            HealResult {
                correlation_id: r.correlation_id.clone(),
                action: "report".into(),
                target: Target {
                    api_version: match r.engine.as_str() {
                        "argo" => "argoproj.io/v1alpha1".into(),
                        "tekton" => "tekton.dev/v1".into(),
                        _ => "heal.dev/v1alpha1".into(),
                    },
                    kind: match r.engine.as_str() {
                        "argo" => "Workflow".into(),
                        "tekton" => "PipelineRun".into(),
                        _ => "HealPlan".into(),
                    },
                    namespace: Some(r.namespace.clone()),
                    name: r.run_name.clone(),
                    uid: None,
                },
                addressed: None,
                outcome,
                before: Value::Null,
                after: json!({"status": r.status, "outcome": r.outcome}),
                message,
                started_at: started_at.clone(),
                duration_ms: started.elapsed().as_millis() as u64,
            },
            exit,
        )
    };
    let client = match crate::prometheus_http::http_client(None, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => return result(Outcome::Failed, e, Exit::Usage),
    };
    let body = match serde_json::to_value(r) {
        Ok(b) => b,
        Err(e) => return result(Outcome::Failed, e.to_string(), Exit::Failed),
    };
    // Keep part of the time for the fallback.
    let heald_deadline = started
        + if spec.alertmanager_url.is_some() {
            timeout / 2
        } else {
            timeout
        };
    let mut why = String::from("no --report-url given");
    if let Some(url) = &spec.report_url {
        match post_retrying(&client, url, spec.token.as_deref(), &body, heald_deadline).await {
            Ok(()) => {
                return result(
                    Outcome::Applied,
                    format!(
                        "reported {} of {} {} to heald",
                        r.outcome, r.engine, r.run_name
                    ),
                    Exit::Ok,
                );
            }
            Err(e) => why = e,
        }
    }
    let Some(am) = &spec.alertmanager_url else {
        return result(
            Outcome::Failed,
            format!("report not delivered: {why}"),
            Exit::Transient,
        );
    };
    let alert = json!([{
        "labels": {
            "alertname": "HealReportUndelivered",
            "severity": "warning",
            "heal_run": r.run_name,
            "heal_namespace": r.namespace,
            "heal_outcome": r.outcome,
        },
        "annotations": {
            "summary": format!("heal run {} ended {} but heald could not be told", r.run_name, r.outcome),
            "description": format!("engine {}, status {}, correlation id {}: {why}", r.engine, r.status, r.correlation_id),
            "correlation_id": r.correlation_id,
        },
    }]);
    let url = format!("{}/api/v2/alerts", am.trim_end_matches('/'));
    match post_retrying(&client, &url, None, &alert, started + timeout).await {
        Ok(()) => result(
            Outcome::Applied,
            format!("heald unreachable ({why}); told Alertmanager instead"),
            Exit::Ok,
        ),
        Err(e) => result(
            Outcome::Failed,
            format!("report not delivered: heald: {why}; Alertmanager: {e}"),
            Exit::Transient,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_statuses_normalise() {
        assert_eq!(normalise("Succeeded"), "succeeded");
        assert_eq!(normalise("Completed"), "succeeded");
        assert_eq!(normalise("Failed"), "failed");
        assert_eq!(normalise("Error"), "failed");
        assert_eq!(normalise("None"), "failed");
    }
}
