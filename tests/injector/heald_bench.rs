//! Benchmarks of the `heald` binary over loopback HTTP against the test API server (not
//! tests: ignored by default). Run with
//! `cargo test --release --test injector heald_bench:: -- --ignored --nocapture`; the numbers are printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::heald_support::*;
use heal_testkit::apiserver::ApiServer;
use serde_json::Value;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Run {
    deliveries: usize,
    alerts: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Run {
    fn print(&mut self, name: &str) {
        self.latencies.sort();
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{name:<44} {:>7.0} deliveries/s {:>8.0} alerts/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            self.deliveries as f64 / secs,
            self.alerts as f64 / secs,
            percentile(&self.latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1000.0,
            self.errors,
        );
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> (bool, Duration) {
    let t = Instant::now();
    let ok = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    (ok, t.elapsed())
}

/// Deliveries paced at `rate` per second for `duration`.
async fn paced(
    url: &str,
    bodies: Arc<Vec<String>>,
    per: usize,
    rate: f64,
    duration: Duration,
) -> Run {
    let client =
        heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0usize;
    while start.elapsed() < duration {
        let due = start + interval * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let (client, url, bodies) = (client.clone(), url.to_string(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            post(&client, &url, &bodies[n % bodies.len()]).await
        }));
        n += 1;
    }
    let mut run = Run {
        deliveries: n,
        alerts: n * per,
        elapsed: start.elapsed(),
        latencies: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (ok, d) = t.await.unwrap();
        run.latencies.push(d);
        run.errors += usize::from(!ok);
    }
    run.elapsed = start.elapsed();
    run
}

/// As many deliveries as `workers` concurrent clients manage in `duration`.
async fn flood(
    url: &str,
    body: impl Fn(usize) -> String + Send + Sync + 'static,
    per: usize,
    workers: usize,
    duration: Duration,
) -> Run {
    let client =
        heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, url, counter, body) = (
            client.clone(),
            url.to_string(),
            counter.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while start.elapsed() < duration {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let (ok, d) = post(&client, &url, &body(i)).await;
                lat.push(d);
                errors += usize::from(!ok);
            }
            (lat, errors)
        }));
    }
    let mut run = Run {
        deliveries: 0,
        alerts: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        run.deliveries += lat.len();
        run.latencies.extend(lat);
        run.errors += errors;
    }
    run.alerts = run.deliveries * per;
    run.elapsed = start.elapsed();
    run
}

fn group(alerts: &[Value]) -> String {
    webhook(alerts).to_string()
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn webhook_latency_throughput_and_memory() {
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let p = Proc::start(
        &server,
        &f,
        &["--track-interval", "1h", "--log-format", "json"],
    );
    let pid = p.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(pid);
    let url = format!("{}/v1/alerts", p.web);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Ten alerts, submitted once; every later delivery of them is a repeat.
    let ten: Vec<Value> = (0..10)
        .map(|i| web_down(&format!("bench-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let repeated = Arc::new(vec![group(&ten)]);
    let mut peak = 0;
    rt.block_on(async {
        let warm = flood(
            &url,
            {
                let b = repeated[0].clone();
                move |_| b.clone()
            },
            10,
            1,
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(warm.errors, 0);
        let mut r = paced(&url, repeated.clone(), 10, 500.0, Duration::from_secs(5)).await;
        peak = peak.max(rss_kib(pid));
        r.print("repeated alerts, 500 deliveries/s x 10");
        let b = repeated[0].clone();
        let mut r = flood(&url, move |_| b.clone(), 10, 32, Duration::from_secs(5)).await;
        peak = peak.max(rss_kib(pid));
        r.print("repeated alerts, 32 clients, as fast as possible");
        let mut r = flood(
            &url,
            |i| {
                let alerts: Vec<Value> = (0..10)
                    .map(|k| web_down(&format!("new-{i}-{k}"), "2026-08-20T10:00:00Z"))
                    .collect();
                group(&alerts)
            },
            10,
            16,
            Duration::from_secs(5),
        )
        .await;
        peak = peak.max(rss_kib(pid));
        r.print("new alerts, 16 clients, as fast as possible");
        let mut r = flood(
            &url,
            |i| group(&[web_down(&format!("single-{i}"), "2026-08-20T10:00:00Z")]),
            1,
            16,
            Duration::from_secs(5),
        )
        .await;
        peak = peak.max(rss_kib(pid));
        r.print("new alerts, 1 per delivery, 16 clients");
    });
    println!(
        "resident memory: idle {:.1} MiB, after load {:.1} MiB (peak sampled {:.1} MiB)",
        idle as f64 / 1024.0,
        rss_kib(pid) as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
