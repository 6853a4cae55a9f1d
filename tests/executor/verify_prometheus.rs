//! `heal verify` against a real Prometheus (the Debian package), scraping every second a
//! test exporter whose gauge the test changes: the step fails while the metric is high,
//! succeeds once it drops, and reports bad queries and an unreachable Prometheus with the
//! exit codes a workflow engine acts on.

use std::time::{Duration, Instant};

use heal::outcome::{Exit, HealResult, Outcome};
use heal_testkit::prometheus::{self, Exporter, Prometheus};
use serde_json::{Value, json};

const METRIC: &str = "heal_test_cpu";
const HIGH: f64 = 0.95;
const LOW: f64 = 0.3;

/// A Prometheus scraping one exporter; the Prometheus process goes first when dropped.
struct Loop {
    prometheus: Prometheus,
    exporter: Exporter,
}

/// Start the exporter with `value` and a Prometheus scraping it, or `None` (skip) when
/// Prometheus is not installed outside CI.
fn start(value: f64) -> Option<Loop> {
    let bin = prometheus::binary_or_skip()?;
    eprintln!("using {}", prometheus::version(&bin));
    let exporter = Exporter::start(METRIC, r#"pod="web-1""#, value);
    let prometheus = Prometheus::start(&bin, &[exporter.target()]);
    Some(Loop {
        prometheus,
        exporter,
    })
}

async fn verify(url: &str, args: &[&str]) -> (HealResult, Exit) {
    let argv: Vec<String> = ["verify", "--prometheus-url", url]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect();
    heal::cli::execute(&argv).await.expect("valid arguments")
}

fn evaluations(r: &HealResult) -> u64 {
    r.after["evaluations"].as_u64().unwrap_or(0)
}

/// Runs `heal verify` once while the gauge is high (it must fail), then again while the
/// test lowers the gauge in the background after 2 s (it must succeed, after waiting).
async fn fails_while_high_then_passes_once_lowered(query: &str, expect: &str) {
    let Some(lp) = start(HIGH) else { return };
    let url = lp.prometheus.url().to_string();

    let (high, exit) = verify(
        &url,
        &[
            "--query",
            query,
            "--expect",
            expect,
            "--timeout",
            "4s",
            "--interval",
            "500ms",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Failed, "{high:?}");
    assert_eq!(high.outcome, Outcome::Failed, "{high:?}");
    assert!(
        high.message.starts_with("not verified") && high.message.contains(query),
        "{}",
        high.message
    );
    assert!(evaluations(&high) > 1, "polled until the timeout: {high:?}");
    assert!(high.duration_ms >= 3000, "{high:?}");
    assert_eq!(
        high.before["values"],
        json!([HIGH]),
        "the result shows the high value it saw"
    );

    let gauge = lp.exporter.gauge();
    let lower = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        gauge.set(LOW);
    });
    let (low, exit) = verify(
        &url,
        &[
            "--query",
            query,
            "--expect",
            expect,
            "--timeout",
            "15s",
            "--interval",
            "500ms",
        ],
    )
    .await;
    lower.await.expect("the gauge was lowered");
    assert_eq!(exit, Exit::Ok, "{low:?}");
    assert_eq!(
        low.outcome,
        Outcome::Noop,
        "verify changes nothing: {low:?}"
    );
    assert!(low.message.starts_with("verified"), "{}", low.message);
    assert!(
        evaluations(&low) > 1,
        "the first evaluations still saw the high value: {low:?}"
    );
    assert!(low.duration_ms >= 1500, "{low:?}");
    assert_eq!(low.before["values"], json!([HIGH]), "{low:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_expression_fails_verify_while_the_metric_is_high_and_passes_once_it_drops() {
    fails_while_high_then_passes_once_lowered(&format!("{METRIC} > 0.85"), "empty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_fails_verify_while_the_metric_is_high_and_passes_once_it_drops() {
    fails_while_high_then_passes_once_lowered(METRIC, "< 0.85").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_prometheus_rejects_fails_at_once_with_a_message_naming_the_query() {
    let Some(lp) = start(HIGH) else { return };
    let query = format!("sum(rate({METRIC}[1m]) >");
    let started = Instant::now();
    let (r, exit) = verify(
        lp.prometheus.url(),
        &["--query", &query, "--timeout", "20s", "--interval", "500ms"],
    )
    .await;
    assert_eq!(exit, Exit::Failed, "{r:?}");
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no polling for a query that can never work: {r:?}"
    );
    assert!(
        r.message.contains(&format!("{query:?}")) && r.message.contains("parse error"),
        "{}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_exits_3_once_the_timeout_passes() {
    let url = format!("http://127.0.0.1:{}", prometheus::free_port());
    let started = Instant::now();
    let (r, exit) = verify(
        &url,
        &[
            "--query",
            METRIC,
            "--timeout",
            "1500ms",
            "--interval",
            "200ms",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Transient, "{r:?}");
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.message.contains("unavailable") && r.message.contains(&url),
        "{}",
        r.message
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(5),
        "kept trying until the timeout: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_never_answers_exits_3_once_the_timeout_passes() {
    // The kernel accepts connections on a bound listener nobody serves: requests hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent port");
    let url = format!("http://{}", silent.local_addr().expect("address"));
    let started = Instant::now();
    let (r, exit) = verify(
        &url,
        &[
            "--query",
            METRIC,
            "--timeout",
            "1500ms",
            "--interval",
            "200ms",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Transient, "{r:?}");
    assert!(r.message.contains(&url), "{}", r.message);
    assert!(started.elapsed() < Duration::from_secs(5), "{r:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heal_binary_prints_one_json_result_for_verify_and_writes_the_result_file() {
    let Some(lp) = start(LOW) else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let result_file = dir.path().join("result.json");
    let query = format!("{METRIC} > 0.85");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "verify",
            "--prometheus-url",
            lp.prometheus.url(),
            "--query",
            &query,
            "--timeout",
            "10s",
            "--correlation-id",
            "verify-e2e-1",
            "--log-format",
            "json",
            "-o",
            "json",
            "--result-file",
        ])
        .arg(&result_file)
        .env_remove("HEAL_EXPECT")
        .output()
        .await
        .expect("run heal");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let printed: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON result ({e}): {stdout}"));

    assert_eq!(printed["correlationId"], "verify-e2e-1");
    assert_eq!(printed["action"], "verify");
    assert_eq!(
        printed["target"],
        json!({"apiVersion": "prometheus/v1", "kind": "Query", "name": query})
    );
    assert_eq!(printed["outcome"], "noop");
    assert_eq!(printed["before"], json!({"values": []}));
    assert_eq!(printed["after"], json!({"values": [], "evaluations": 1}));
    let message = printed["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("verified: 'empty' holds"), "{message}");
    let started_at = printed["startedAt"].as_str().unwrap_or_default();
    assert!(
        started_at.parse::<jiff::Timestamp>().is_ok(),
        "startedAt is RFC 3339: {started_at:?}"
    );
    assert!(printed["durationMs"].is_u64(), "{printed}");
    let mut keys: Vec<&str> = printed
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "after",
            "before",
            "correlationId",
            "durationMs",
            "message",
            "outcome",
            "startedAt",
            "target"
        ],
        "exactly the documented result fields"
    );

    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(&result_file).expect("the result file was written"),
    )
    .expect("the result file is JSON");
    assert_eq!(written, printed);
    assert!(
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| l["correlation_id"] == "verify-e2e-1"),
        "log lines carry the correlation id: {stderr}"
    );
}
