//! Benchmark of the `heald` binary's local engine over loopback HTTP against the test API
//! server (not a test: ignored by default). Run with
//! `cargo test --release --test injector local_engine_bench:: -- --ignored --nocapture`; the numbers are
//! printed: the time from sending the webhook to the first action applied (the target's
//! replicas changed in the API server), and for a three-step DAG from sending the webhook
//! to the outcome handled (the success silence reaching Alertmanager, the last thing heald
//! does for a run).

use std::time::{Duration, Instant};

use crate::heald_support::*;
use heal_testkit::apiserver::ApiServer;
use serde_json::Value;

/// Measured deliveries per scenario (after two warm-up ones).
const N: usize = 30;

fn policies() -> String {
    let policy = |name: &str, alertname: &str, steps: &str| {
        format!(
            r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: {name}
spec:
  match:
    alertname: {alertname}
  target:
    kind: deployment
    namespace: "{{{{ labels.namespace }}}}"
    name: "{{{{ labels.deployment }}}}"
  engine: local
  onSuccess: {{silence: 1h}}
  steps:
{steps}"#
        )
    };
    let one = "    - name: scale-out\n      action: scale\n      replicas: \"+1\"\n";
    let three = "    - name: scale-out\n      action: scale\n      replicas: \"+1\"\n\
                 \x20   - name: wait-rollout\n      action: wait\n      for: rollout\n      after: [scale-out]\n\
                 \x20   - name: annotate\n      action: patch\n      type: merge\n      after: [wait-rollout]\n      \
                 patch: {metadata: {annotations: {heal.dev/remediated: \"true\"}}}\n";
    format!(
        "{}\n---\n{}",
        policy("first-action", "FirstAction", one),
        policy("three-steps", "ThreeSteps", three)
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn print(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    println!(
        "{name:<52} median {:>6.2} ms  p90 {:>6.2} ms  min {:>6.2} ms  max {:>6.2} ms  (n={})",
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.9)),
        ms(d[0]),
        ms(d[d.len() - 1]),
        d.len()
    );
}

fn replicas(server: &ApiServer, name: &str) -> i64 {
    server
        .get("apps/v1", "deployments", "shop", name)
        .and_then(|d| d["spec"]["replicas"].as_i64())
        .unwrap_or(-1)
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn local_engine_webhook_to_first_action_and_to_outcome() {
    let server = ApiServer::start();
    for i in 0..N + 2 {
        server.seed_deployment("shop", &format!("first-{i}"), 1, &[]);
        server.seed_deployment("shop", &format!("dag-{i}"), 1, &[]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let am = rt.block_on(Receiver::start());
    let f = Files::new(&policies());
    let p = Proc::start(
        &server,
        &f,
        &["--alertmanager-url", &am.url, "--log-format", "json"],
    );
    let url = format!("{}/v1/alerts", p.web);
    let client =
        heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
    let send = |body: Value| {
        let (client, url) = (client.clone(), url.clone());
        rt.spawn(async move {
            let t = Instant::now();
            let resp = client
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("heald answers");
            assert!(resp.status().is_success());
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["decisions"][0]["decision"], "submitted", "{v}");
            t.elapsed()
        })
    };
    let successes = || {
        am.bodies("/api/v2/silences")
            .iter()
            .filter(|s| s.get("id").is_some())
            .count()
    };

    let mut first_action = Vec::new();
    let mut answered = Vec::new();
    for i in 0..N + 2 {
        let name = format!("first-{i}");
        let a = alert(
            "FirstAction",
            &[("namespace", "shop"), ("deployment", &name)],
            "2026-08-20T10:00:00Z",
        );
        let done_before = successes();
        let t0 = Instant::now();
        let answer = send(webhook(&[a]));
        while replicas(&server, &name) != 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no action on {name}"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        let d = t0.elapsed();
        let a = rt.block_on(answer).unwrap();
        while successes() == done_before {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no outcome for {name}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if i >= 2 {
            first_action.push(d);
            answered.push(a);
        }
    }

    let mut dag = Vec::new();
    for i in 0..N + 2 {
        let name = format!("dag-{i}");
        let a = alert(
            "ThreeSteps",
            &[("namespace", "shop"), ("deployment", &name)],
            "2026-08-20T10:00:00Z",
        );
        let done_before = successes();
        let t0 = Instant::now();
        let answer = send(webhook(&[a]));
        while successes() == done_before {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no outcome for {name}"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        let d = t0.elapsed();
        rt.block_on(answer).unwrap();
        let web = server.get("apps/v1", "deployments", "shop", &name).unwrap();
        assert_eq!(
            web["metadata"]["annotations"]["heal.dev/remediated"],
            "true"
        );
        if i >= 2 {
            dag.push(d);
        }
    }
    println!();
    print("webhook -> first action applied (scale +1)", first_action);
    print("webhook -> answer (decision submitted)", answered);
    print("webhook -> outcome handled, 3-step DAG", dag);
}
