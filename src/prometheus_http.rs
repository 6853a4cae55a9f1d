//! `heal verify`: evaluate a PromQL expression against a Prometheus HTTP API
//! (`/api/v1/query`) until the expected condition holds or the timeout passes.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::outcome::{Exit, HealResult, Outcome, Target};
pub use crate::step::{Cmp, Expect};

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

impl Expect {
    /// Whether `samples` (the values of the result's series) satisfy the expectation.
    pub fn holds(&self, samples: &[f64]) -> bool {
        match self {
            Expect::Empty => samples.is_empty(),
            Expect::NonEmpty => !samples.is_empty(),
            Expect::Compare(op, n) => {
                !samples.is_empty() && samples.iter().all(|v| op.holds(*v, *n))
            }
        }
    }
}

/// `url` without the `user:password@` part it may carry, for messages and logs.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Options of `heal verify`.
#[derive(Clone)]
pub struct VerifySpec {
    /// PromQL expression.
    pub query: String,
    /// Condition on its result.
    pub expect: Expect,
    /// Base URL of Prometheus (`http://prometheus:9090`).
    pub prometheus_url: String,
    /// Bearer token for a secured Prometheus.
    pub bearer_token: Option<String>,
    /// Extra CA certificate (PEM) for a Prometheus with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Time between evaluations.
    pub interval: Duration,
}

impl VerifySpec {
    /// What a verify step runs: its options, heal's defaults where it sets none, and the
    /// bearer token read from its file.
    pub fn from_options(v: &crate::step::VerifyOptions) -> Result<VerifySpec, String> {
        let bearer_token = match &v.bearer_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(VerifySpec {
            query: v.query.clone(),
            expect: v.expect,
            prometheus_url: v
                .prometheus_url
                .clone()
                .unwrap_or_else(|| DEFAULT_PROMETHEUS_URL.to_string()),
            bearer_token,
            ca_file: v.ca_file.clone(),
            interval: v
                .interval
                .unwrap_or(DEFAULT_INTERVAL)
                .max(Duration::from_millis(100)),
        })
    }
}

/// Prometheus when a verify step names none.
pub const DEFAULT_PROMETHEUS_URL: &str = "http://prometheus-operated.monitoring.svc:9090";
/// Time between evaluations when a verify step sets none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

// Hand-written so the bearer token can never reach a log line through `{:?}`.
impl std::fmt::Debug for VerifySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifySpec")
            .field("query", &self.query)
            .field("expect", &self.expect)
            .field("prometheus_url", &redacted_url(&self.prometheus_url))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("interval", &self.interval)
            .finish()
    }
}

/// Why one evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Prometheus could not be reached or answered 5xx/429: try again.
    #[error("Prometheus unavailable: {0}")]
    Unavailable(String),
    /// Prometheus rejected the query (bad PromQL, 4xx).
    #[error("Prometheus rejected the query: {0}")]
    Rejected(String),
}

/// The sample values of a query answer (`vector` or `scalar`).
pub fn samples(answer: &Value) -> Result<Vec<f64>, String> {
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        return Err(answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("query failed")
            .to_string());
    }
    let data = answer.get("data").ok_or("answer has no data")?;
    let value_of = |v: &Value| -> Option<f64> {
        let s = v.get(1)?.as_str()?;
        match s {
            "NaN" => Some(f64::NAN),
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            _ => s.parse().ok(),
        }
    };
    match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => Ok(data
            .get("result")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.get("value").and_then(value_of))
                    .collect()
            })
            .unwrap_or_default()),
        Some("scalar") => Ok(data.get("result").and_then(value_of).into_iter().collect()),
        Some(other) => Err(format!(
            "unsupported result type {other:?} (use an instant vector)"
        )),
        None => Err("answer has no resultType".into()),
    }
}

async fn evaluate(client: &reqwest::Client, spec: &VerifySpec) -> Result<Vec<f64>, QueryError> {
    let url = format!("{}/api/v1/query", spec.prometheus_url.trim_end_matches('/'));
    let mut req = client
        .post(&url)
        .form_body(&[("query", spec.query.as_str())]);
    if let Some(t) = &spec.bearer_token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| QueryError::Unavailable(crate::kube_api::error_chain(&e)))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| QueryError::Unavailable(format!("unreadable answer ({status}): {e}")))?;
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(QueryError::Unavailable(format!("{status}")));
    }
    samples(&body).map_err(QueryError::Rejected)
}

trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", crate::kube_api::enc(k), crate::kube_api::enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
    }
}

/// Build an HTTP client with the ring crypto provider and an optional extra CA.
pub fn http_client(
    ca_file: Option<&PathBuf>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("heal/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("invalid CA file {}: {e}", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// Run `heal verify`: poll until the expectation holds (exit 0), the timeout passes with
/// it false (exit 1), or Prometheus stays unreachable (exit 3).
pub async fn verify(
    spec: &VerifySpec,
    correlation_id: &str,
    timeout: Duration,
) -> (HealResult, Exit) {
    let started = Instant::now();
    let deadline = started + timeout;
    let started_at = jiff::Timestamp::now().to_string();
    let target = Target {
        api_version: "prometheus/v1".into(),
        kind: "Query".into(),
        namespace: None,
        name: spec.query.clone(),
        uid: None,
    };
    let finish = |outcome, before: Value, after: Value, message: String, exit| {
        tracing::info!(correlation_id, action = "verify", phase = "done", outcome = %Outcome::as_str(outcome), exit_code = Exit::code(exit), "{message}");
        (
            HealResult {
                correlation_id: correlation_id.to_string(),
                action: "verify".into(),
                target: target.clone(),
                addressed: None,
                outcome,
                before,
                after,
                message,
                started_at: started_at.clone(),
                duration_ms: started.elapsed().as_millis() as u64,
            },
            exit,
        )
    };
    let client = match http_client(spec.ca_file.as_ref(), Duration::from_secs(10).min(timeout)) {
        Ok(c) => c,
        Err(e) => return finish(Outcome::Failed, Value::Null, Value::Null, e, Exit::Usage),
    };
    let mut first: Option<Vec<f64>> = None;
    let mut last_values: Option<Vec<f64>> = None;
    let mut last_error: Option<String> = None;
    let mut evaluations = 0u32;
    loop {
        evaluations += 1;
        match tokio::time::timeout_at(deadline, evaluate(&client, spec)).await {
            Ok(Ok(values)) => {
                last_error = None;
                if first.is_none() {
                    first = Some(values.clone());
                }
                let holds = spec.expect.holds(&values);
                tracing::info!(
                    correlation_id,
                    action = "verify",
                    phase = "evaluate",
                    series = values.len(),
                    holds,
                    "evaluated query"
                );
                if holds {
                    return finish(
                        Outcome::Noop,
                        json!({"values": first}),
                        json!({"values": values, "evaluations": evaluations}),
                        format!(
                            "verified: {} holds for {:?} after {evaluations} evaluation(s)",
                            describe(&spec.expect),
                            spec.query
                        ),
                        Exit::Ok,
                    );
                }
                last_values = Some(values);
            }
            Ok(Err(QueryError::Rejected(e))) => {
                return finish(
                    Outcome::Failed,
                    Value::Null,
                    Value::Null,
                    format!("Prometheus rejected the query {:?}: {e}", spec.query),
                    Exit::Failed,
                );
            }
            Ok(Err(QueryError::Unavailable(e))) => {
                tracing::warn!(correlation_id, action = "verify", phase = "evaluate", error = %e, "Prometheus unavailable");
                last_error = Some(e);
            }
            // Cut off by the deadline: a Prometheus that never answered is unavailable
            // (exit 3), not a condition seen false.
            Err(_) => {
                if last_values.is_none() && last_error.is_none() {
                    last_error = Some(format!(
                        "no answer within {}",
                        crate::duration::format(timeout)
                    ));
                }
            }
        }
        if Instant::now() + spec.interval >= deadline {
            break;
        }
        tokio::time::sleep(spec.interval).await;
    }
    match (last_values, last_error) {
        (_, Some(e)) => finish(
            Outcome::Failed,
            json!({"values": first}),
            Value::Null,
            format!(
                "Prometheus at {} stayed unavailable until the timeout: {e}",
                redacted_url(&spec.prometheus_url)
            ),
            Exit::Transient,
        ),
        (values, None) => finish(
            Outcome::Failed,
            json!({"values": first}),
            json!({"values": values, "evaluations": evaluations}),
            format!(
                "not verified: {} still does not hold for {:?} after {}",
                describe(&spec.expect),
                spec.query,
                crate::duration::format(timeout)
            ),
            Exit::Failed,
        ),
    }
}

fn describe(e: &Expect) -> String {
    format!("'{e}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_and_hold() {
        assert_eq!("empty".parse(), Ok(Expect::Empty));
        assert_eq!("< 0.85".parse(), Ok(Expect::Compare(Cmp::Lt, 0.85)));
        assert_eq!(">=3".parse(), Ok(Expect::Compare(Cmp::Ge, 3.0)));
        assert!("about 3".parse::<Expect>().is_err());
        assert!("< x".parse::<Expect>().is_err());
        assert!(Expect::Empty.holds(&[]));
        assert!(!Expect::Empty.holds(&[1.0]));
        let lt = Expect::Compare(Cmp::Lt, 0.85);
        assert!(lt.holds(&[0.5, 0.8]));
        assert!(!lt.holds(&[0.5, 0.9]));
        assert!(!lt.holds(&[]), "no data never verifies a comparison");
    }

    #[test]
    fn vector_and_scalar_answers_give_samples() {
        let v = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a"},"value":[1.0,"0.9"]},{"metric":{},"value":[1.0,"NaN"]}]}});
        let s = samples(&v).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], 0.9);
        assert!(s[1].is_nan());
        let sc = json!({"status":"success","data":{"resultType":"scalar","result":[1.0,"2"]}});
        assert_eq!(samples(&sc).unwrap(), vec![2.0]);
        let err = json!({"status":"error","errorType":"bad_data","error":"parse error"});
        assert_eq!(samples(&err).unwrap_err(), "parse error");
    }
}
