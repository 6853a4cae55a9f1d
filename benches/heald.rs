//! heald over loopback HTTP: webhook answer latency (p50, p99, p999) and throughput for
//! repeated and for new alerts, and resident memory idle, after the repeated-alert phases
//! (about 200,000 alerts) and every 20,000 of 100,000 new alerts (each a run created in the
//! test API server).
//!
//! `cargo bench --bench heald` (or `scripts/bench`). heald is the release binary; the load
//! generator (a Rust client with keep-alive connections) and the test API server share the
//! machine with it, so the absolute numbers are a floor for what a dedicated heald does.
//! `HEAL_BENCH_NEW_ALERTS` changes the size of the last phase (default 100000), which stops
//! early, saying so, after `HEAL_BENCH_NEW_SECS` seconds (default 240).
//!
//! All of that runs against the test API server with no latency (it answers in
//! microseconds). Then the phases with new alerts (each making API requests) run again
//! against a new test API server and heald with the kube-apiserver 1.36 latency model
//! (handshake 4 ms, read 2 ms, write 5 ms; or the model `HEAL_APISERVER_LATENCY` names when
//! it is set to one), and a last table sets both side by side. Each table says which server
//! it was measured against.

#[path = "../tests/heald_support/mod.rs"]
mod heald_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use heal_testkit::apiserver::{ApiServer, Latency};
use heald_support::*;
use serde_json::Value;

/// Resident memory of a process, KiB.
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

/// CPU time a process used so far (user + system), seconds; `pid` 0 is this process.
fn cpu_secs(pid: u32, ticks_per_sec: f64) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / ticks_per_sec
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The memory phase at one point: new alerts so far, heald's RSS, and over the last
/// interval the alerts/s and the CPU seconds of heald and of this process (test API
/// server and load generator).
struct Milestone {
    alerts: usize,
    rss_kib: u64,
    rate: f64,
    heald_cpu: f64,
    bench_cpu: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest sample with at least p of the samples at or below it.
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One measured phase.
#[derive(Default)]
struct Phase {
    name: String,
    deliveries: usize,
    alerts: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
    /// Alerts answered `submitted` (a run created while the delivery waited).
    submitted: usize,
    /// Alerts answered `deferred` (past the API budget: submitted later, after the answer).
    deferred: usize,
}

impl Phase {
    fn row(&mut self) -> String {
        self.latencies.sort();
        let secs = self.elapsed.as_secs_f64();
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            self.name,
            self.alerts,
            self.deliveries as f64 / secs,
            self.alerts as f64 / secs,
            ms(percentile(&self.latencies, 0.50)),
            ms(percentile(&self.latencies, 0.99)),
            ms(percentile(&self.latencies, 0.999)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.errors,
            self.submitted,
            self.deferred,
        )
    }
}

/// One delivery's answer: whether it succeeded, how long it took, and how many of its alerts
/// were answered `submitted` and `deferred`.
struct Answer {
    ok: bool,
    took: Duration,
    submitted: usize,
    deferred: usize,
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> Answer {
    let t = Instant::now();
    let sent = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let (ok, text) = match sent {
        Ok(r) => (r.status().is_success(), r.text().await.unwrap_or_default()),
        Err(_) => (false, String::new()),
    };
    let took = t.elapsed();
    let decisions: Value = serde_json::from_str(&text).unwrap_or_default();
    let count = |kind: &str| {
        decisions["decisions"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|x| x["decision"] == kind).count())
    };
    Answer {
        ok,
        took,
        submitted: count("submitted"),
        deferred: count("deferred"),
    }
}

impl Phase {
    fn add(&mut self, a: &Answer) {
        self.latencies.push(a.took);
        self.errors += usize::from(!a.ok);
        self.submitted += a.submitted;
        self.deferred += a.deferred;
    }
}

type Bodies = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// `rate` deliveries per second for `duration`, each sent on time whatever the answers do
/// (an open-loop load, as Alertmanager's notifications arrive).
async fn paced(
    name: &str,
    url: &str,
    body: Bodies,
    per: usize,
    rate: f64,
    duration: Duration,
) -> Phase {
    let client =
        heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0usize;
    while start.elapsed() < duration {
        let due = start + interval.mul_f64(n as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let (client, url, text) = (client.clone(), url.to_string(), body(n));
        tasks.push(tokio::spawn(async move { post(&client, &url, text).await }));
        n += 1;
    }
    let mut phase = Phase {
        name: name.to_string(),
        deliveries: n,
        alerts: n * per,
        latencies: Vec::with_capacity(n),
        ..Phase::default()
    };
    for t in tasks {
        phase.add(&t.await.unwrap());
    }
    phase.elapsed = start.elapsed();
    phase
}

/// `workers` clients sending back to back, until `duration` is over or `limit` deliveries
/// were sent (a closed-loop load: throughput).
async fn flood(
    name: &str,
    url: &str,
    body: Bodies,
    per: usize,
    workers: usize,
    duration: Duration,
    limit: usize,
) -> Phase {
    let client =
        heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, counter, body) = (
                client.clone(),
                url.to_string(),
                counter.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while start.elapsed() < duration {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    answers.push(post(&client, &url, body(i)).await);
                }
                answers
            })
        })
        .collect();
    let mut phase = Phase {
        name: name.to_string(),
        ..Phase::default()
    };
    for t in tasks {
        let answers = t.await.unwrap();
        phase.deliveries += answers.len();
        for a in &answers {
            phase.add(a);
        }
    }
    phase.alerts = phase.deliveries * per;
    phase.elapsed = start.elapsed();
    phase
}

/// `per` new alerts per delivery, distinct for every (`tag`, delivery index).
fn new_alerts(tag: &'static str, per: usize) -> Bodies {
    Arc::new(move |i| {
        let alerts: Vec<Value> = (0..per)
            .map(|k| web_down(&format!("{tag}-{i}-{k}"), "2026-08-20T10:00:00Z"))
            .collect();
        webhook(&alerts).to_string()
    })
}

/// The phases with new alerts at a fixed rate and flat out (each alert a run created).
async fn new_alert_phases(url: &str) -> Vec<Phase> {
    let (secs, five) = (Duration::from_secs(10), Duration::from_secs(5));
    vec![
        paced(
            "new, 1 alert/delivery, 100 deliveries/s",
            url,
            new_alerts("paced", 1),
            1,
            100.0,
            secs,
        )
        .await,
        paced(
            "new, 1 alert/delivery, 500 deliveries/s",
            url,
            new_alerts("paced500", 1),
            1,
            500.0,
            five,
        )
        .await,
        flood(
            "new, 1 alert/delivery, 16 clients flat out",
            url,
            new_alerts("single", 1),
            1,
            16,
            five,
            usize::MAX,
        )
        .await,
    ]
}

/// heald as in the main run, against a new test API server with `model`: the new-alert
/// phases only.
fn new_alerts_with(model: Latency, rt: &tokio::runtime::Runtime) -> Vec<Phase> {
    let server = ApiServer::start_with_latency(model);
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let p = Proc::start(
        &server,
        &f,
        &["--track-interval", "1h", "--log-format", "json"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let url = format!("{}/v1/alerts", p.web);
    let ten: Vec<Value> = (0..10)
        .map(|i| web_down(&format!("bench-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let group_of_ten = webhook(&ten).to_string();
    rt.block_on(async {
        let warm = flood(
            "warm-up",
            &url,
            Arc::new(move |_| group_of_ten.clone()),
            10,
            1,
            Duration::from_millis(500),
            usize::MAX,
        )
        .await;
        assert_eq!(warm.errors, 0, "heald answers the warm-up");
        new_alert_phases(&url).await
    })
}

const HEADER: &str = "| load | alerts | deliveries/s | alerts/s | p50 ms | p99 ms | p999 ms | max ms | errors | submitted | deferred |\n|---|---|---|---|---|---|---|---|---|---|---|";

fn main() {
    let new_total: usize = std::env::var("HEAL_BENCH_NEW_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = ApiServer::start_with_latency(Latency::OFF);
    let env_model = Latency::from_env();
    let model = if env_model.is_off() {
        Latency::KUBE_APISERVER_1_36
    } else {
        env_model
    };
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    // Tracking would list every run each period; this measures intake alone.
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
    let group_of_ten = webhook(&ten).to_string();
    let singles: Vec<String> = ten
        .iter()
        .map(|a| webhook(std::slice::from_ref(a)).to_string())
        .collect();
    let repeated_ten: Bodies = Arc::new(move |_| group_of_ten.clone());
    let repeated_one: Bodies = Arc::new(move |i| singles[i % singles.len()].clone());

    let mut rows = Vec::new();
    let mut new_rows = Vec::new();
    let mut repeated_alerts = 0;
    let mut after_repeated = 0;
    let mut after_new = 0;
    let mut new_sent = 0;
    let bench_start = Instant::now();
    let new_secs = Duration::from_secs(
        std::env::var("HEAL_BENCH_NEW_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(240),
    );
    let mut new_phase = None;
    let mut milestones = Vec::new();
    rt.block_on(async {
        let warm = flood(
            "warm-up",
            &url,
            repeated_ten.clone(),
            10,
            1,
            Duration::from_millis(500),
            usize::MAX,
        )
        .await;
        assert_eq!(warm.errors, 0, "heald answers the warm-up");
        let secs = Duration::from_secs(10);
        let five = Duration::from_secs(5);
        for mut phase in [
            paced(
                "repeated, 1 alert/delivery, 500 deliveries/s",
                &url,
                repeated_one.clone(),
                1,
                500.0,
                secs,
            )
            .await,
            paced(
                "repeated, 10 alerts/delivery, 500 deliveries/s",
                &url,
                repeated_ten.clone(),
                10,
                500.0,
                secs,
            )
            .await,
            flood(
                "repeated, 10 alerts/delivery, 32 clients flat out",
                &url,
                repeated_ten.clone(),
                10,
                32,
                five,
                usize::MAX,
            )
            .await,
        ] {
            repeated_alerts += phase.alerts;
            rows.push(phase.row());
        }
        after_repeated = rss_kib(pid);
        eprintln!("heald bench: the new-alert phases start after {:?}", bench_start.elapsed());
        for mut phase in new_alert_phases(&url).await {
            rows.push(phase.row());
            new_rows.push(phase);
        }
        eprintln!("heald bench: the memory phase starts after {:?}", bench_start.elapsed());
        // The memory phase: `new_total` new alerts, the request log emptied as it goes.
        let mut total = Phase::default();
        let chunk = 100; // deliveries of 10 alerts
        let memory_start = Instant::now();
        let mut sent = 0;
        let ticks = clock_ticks();
        let mut mark = (
            Instant::now(),
            0usize,
            cpu_secs(pid, ticks),
            cpu_secs(0, ticks),
        );
        while sent * 10 < new_total {
            let n = chunk.min(new_total / 10 - sent);
            let base = sent;
            let bodies: Bodies = Arc::new(move |i| new_alerts("storm", 10)(base + i));
            let part = flood("", &url, bodies, 10, 16, Duration::from_secs(600), n).await;
            total.deliveries += part.deliveries;
            total.alerts += part.alerts;
            total.elapsed += part.elapsed;
            total.errors += part.errors;
            total.submitted += part.submitted;
            total.deferred += part.deferred;
            total.latencies.extend(part.latencies);
            sent += n;
            server.clear_requests();
            let stop = memory_start.elapsed() > new_secs;
            if (sent * 10) % 20_000 == 0 || sent * 10 >= new_total || stop {
                let (heald_cpu, bench_cpu) = (cpu_secs(pid, ticks), cpu_secs(0, ticks));
                milestones.push(Milestone {
                    alerts: sent * 10,
                    rss_kib: rss_kib(pid),
                    rate: (sent * 10 - mark.1) as f64 / mark.0.elapsed().as_secs_f64(),
                    heald_cpu: heald_cpu - mark.2,
                    bench_cpu: bench_cpu - mark.3,
                });
                mark = (Instant::now(), sent * 10, heald_cpu, bench_cpu);
            }
            if stop {
                break;
            }
        }
        new_sent = sent * 10;
        total.name = if new_sent < new_total {
            format!(
                "new, 10 alerts/delivery, 16 clients flat out ({new_sent} of {new_total} alerts: stopped after {}s)",
                new_secs.as_secs()
            )
        } else {
            format!("new, 10 alerts/delivery, 16 clients flat out ({new_total} alerts)")
        };
        after_new = rss_kib(pid);
        new_phase = Some(total);
    });
    if let Some(mut p) = new_phase {
        rows.push(p.row());
    }

    println!("### Against the {}\n", server.latency().describe());
    println!(
        "heald webhook over loopback (release build; load generator and test API server on the same machine)\n"
    );
    println!("{HEADER}");
    for r in rows {
        println!("{r}");
    }
    let mib = |k: u64| k as f64 / 1024.0;
    println!("\n| heald resident memory | MiB |\n|---|---|");
    println!("| idle, after start-up | {:.1} |", mib(idle));
    println!(
        "| after {repeated_alerts} repeated alerts | {:.1} |",
        mib(after_repeated)
    );
    println!(
        "| after {new_sent} more new alerts (as many runs created) | {:.1} |",
        mib(after_new)
    );
    println!(
        "\nThe {new_sent} new alerts, every 20,000 (and at the end): heald's memory, the rate over the last \
         stretch, and the CPU time heald and the bench process (test API server and load \
         generator) used in it\n"
    );
    println!(
        "| new alerts so far | heald RSS MiB | alerts/s | heald CPU s | API server + load generator CPU s |"
    );
    println!("|---|---|---|---|---|");
    for m in &milestones {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.1} |",
            m.alerts,
            mib(m.rss_kib),
            m.rate,
            m.heald_cpu,
            m.bench_cpu
        );
    }
    let log = std::fs::metadata(&p.log).map(|m| m.len()).unwrap_or(0);
    println!(
        "\n(heald wrote {:.1} MiB of JSON log lines)\n",
        log as f64 / 1_048_576.0
    );
    drop(p);
    drop(server);
    eprintln!(
        "heald bench: the latency model pass starts after {:?}",
        bench_start.elapsed()
    );

    let mut with_model = new_alerts_with(model, &rt);
    println!("### Against the {}\n", model.describe());
    println!(
        "The new-alert phases again, a new heald and test API server (heald talks to it over \
         plain HTTP with keep-alive connections, so the handshake delay hardly applies; each new \
         alert makes several reads and writes, among them the two bucket Lease writes of the \
         submission rate limit, which one heald takes one submission at a time)\n"
    );
    println!("{HEADER}");
    for phase in &mut with_model {
        println!("{}", phase.row());
    }
    println!("\n### New alerts: no latency against the {model} latency model, same run\n");
    println!(
        "| load | alerts answered/s, no latency | alerts answered/s, model | model/no latency | submitted in the answer, no latency | submitted in the answer, model | p50 ms, no latency | p50 ms, model | p99 ms, no latency | p99 ms, model |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (a, b) in new_rows.iter().zip(&with_model) {
        let rate = |p: &Phase| p.alerts as f64 / p.elapsed.as_secs_f64();
        // `row` sorted the latencies.
        let pct = |p: &Phase, q| ms(percentile(&p.latencies, q));
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {} of {} | {} of {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            a.name,
            rate(a),
            rate(b),
            rate(b) / rate(a),
            a.submitted,
            a.alerts,
            b.submitted,
            b.alerts,
            pct(a, 0.5),
            pct(b, 0.5),
            pct(a, 0.99),
            pct(b, 0.99)
        );
    }
}
