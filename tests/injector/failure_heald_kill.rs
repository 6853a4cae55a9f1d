//! Failure testing: the `heald` process is killed with SIGKILL during an alert storm and
//! started again on the same port. The storm client redelivers, as Alertmanager does, every
//! notification that got a 5xx or no answer at all; in the end every alert must have
//! exactly one run, and every run's end must be handled once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::heald_support::*;
use heal_testkit::apiserver::{ApiServer, Fault};
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");

/// One notification, delivered until heald answers 200 (retrying 5xx and connection
/// errors every 50 ms, as Alertmanager retries); its decisions by run name.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    retries: &AtomicUsize,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client.post(url).bearer_auth(TOKEN).json(body).send().await;
        match answer {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                return v["decisions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|d| {
                        (
                            d["run"].as_str().unwrap_or("?").to_string(),
                            d["decision"].as_str().unwrap_or("?").to_string(),
                        )
                    })
                    .collect();
            }
            Ok(r) => assert!(
                r.status().is_server_error(),
                "heald answered {}: Alertmanager would drop the notification",
                r.status()
            ),
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "no 200 answer within 60 s");
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The storm: `deliveries` sent by `workers` concurrent senders, in order; the decisions by
/// run name, and how many deliveries were retried.
fn storm(
    url: String,
    deliveries: Vec<Value>,
    workers: usize,
) -> std::thread::JoinHandle<(BTreeMap<String, Vec<String>>, usize)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client =
                heal::heald::reporting::alertmanager_http::client(Duration::from_secs(30)).unwrap();
            let queue = Arc::new(Mutex::new(deliveries.into_iter()));
            let retries = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..workers)
                .map(|_| {
                    let (client, url, queue, retries) =
                        (client.clone(), url.clone(), queue.clone(), retries.clone());
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        loop {
                            let next = queue.lock().unwrap().next();
                            let Some(body) = next else { break };
                            got.extend(deliver(&client, &url, &body, &retries).await);
                        }
                        got
                    })
                })
                .collect();
            let mut decisions: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for t in tasks {
                for (run, d) in t.await.unwrap() {
                    decisions.entry(run).or_default().push(d);
                }
            }
            (decisions, retries.load(Ordering::Relaxed))
        })
    })
}

/// Kill heald with SIGKILL (no drain, no goodbye) and start a new one on the same port.
fn kill_and_restart(p: &mut Proc, server: &ApiServer, files: &Files, extra: &[&str]) -> Proc {
    p.signal("-KILL");
    let (code, _) = p.wait_exit(Duration::from_secs(5));
    assert_eq!(code, -1, "killed by a signal");
    let port: u16 = p.web.rsplit(':').next().unwrap().parse().unwrap();
    Proc::start_on(server, files, port, extra)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn heald_killed_during_an_alert_storm_and_restarted_leaves_every_alert_exactly_one_run() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let extra = ["--track-interval", "200ms"];
    let mut p = Proc::start(&server, &f, &extra);
    // Every answer about a new run waits 1.5 s on its Event, after the run is created: the
    // storm goes in waves, and heald dies with a wave of answers unsent.
    server.inject(
        Fault::on("POST", "/events")
            .always()
            .delay(Duration::from_millis(1500)),
    );
    let alerts: Vec<Value> = (0..120)
        .map(|i| web_down(&format!("svc-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    // 24 notifications of 5 new alerts, then each alert again (as Alertmanager repeats).
    let mut deliveries: Vec<Value> = alerts.chunks(5).map(webhook).collect();
    deliveries.extend(alerts.chunks(3).rev().map(webhook));
    let client = storm(format!("{}/v1/alerts", p.web), deliveries, 8);

    // The second wave's runs exist, its answers wait on their Events, the third wave is
    // not sent yet: kill.
    wait_until("the second wave's runs", Duration::from_secs(20), || {
        server.list(WF.0, WF.1, NS).len() >= 80
    });
    let mut p = kill_and_restart(&mut p, &server, &f, &extra);
    let (decisions, retries) = client.join().unwrap();
    server.clear_faults();

    let expected: BTreeSet<String> = alerts.iter().map(|a| run_name("restart-web", a)).collect();
    assert!(retries > 0, "some notifications were redelivered");
    assert_eq!(
        decisions.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every alert was decided"
    );
    for (run, ds) in &decisions {
        assert!(
            ds.iter().all(|d| d == "submitted" || d == "duplicate"),
            "{run}: {ds:?}"
        );
    }
    let stored: BTreeSet<String> = server.names(WF.0, WF.1, NS).into_iter().collect();
    assert_eq!(stored, expected, "exactly one run per alert");
    let creates = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/workflows") && r.status == 201)
        .count();
    assert_eq!(creates, expected.len(), "each run created once");

    // The new heald follows the runs the killed one started, and handles each end once.
    for run in &expected {
        server.modify(WF.0, WF.1, NS, run, |o| {
            o["status"] = json!({"phase": "Succeeded"});
        });
    }
    wait_until("every run to be reported", Duration::from_secs(30), || {
        server
            .list(WF.0, WF.1, NS)
            .iter()
            .all(|w| w["metadata"]["labels"]["heal.dev/reported"] == "true")
    });
    let claims = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path.contains("/workflows/")
                && r.status == 200
                && r.body
                    .as_ref()
                    .is_some_and(|b| b["metadata"]["labels"]["heal.dev/reported"] == "true")
        })
        .count();
    assert_eq!(claims, expected.len(), "each end handled once");
    p.signal("-TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(15)).0, 0);
}

/// An Alertmanager stand-in whose silences take `delay` to answer: heald asks for the
/// in-progress silence after it took the target's Lease and before it creates the run.
async fn slow_alertmanager(delay: Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        axum::Json(json!({"silenceID": "silence-1"}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[test]
fn heald_killed_between_taking_the_lease_and_creating_the_run_still_gives_the_alert_its_run() {
    heal_testkit::require_reference!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let am = rt.block_on(slow_alertmanager(Duration::from_millis(1500)));
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let extra = [
        "--alertmanager-url",
        am.as_str(),
        "--track-interval",
        "200ms",
    ];
    let mut p = Proc::start(&server, &f, &extra);
    let alerts: Vec<Value> = (0..10)
        .map(|i| web_down(&format!("svc-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    let deliveries: Vec<Value> = alerts.chunks(5).map(webhook).collect();
    let client = storm(format!("{}/v1/alerts", p.web), deliveries, 2);
    wait_until("every Lease to be taken", Duration::from_secs(20), || {
        target_leases(&server).len() >= alerts.len()
    });
    assert!(server.names(WF.0, WF.1, NS).is_empty(), "no run yet");
    let _p = kill_and_restart(&mut p, &server, &f, &extra);
    let (decisions, _) = client.join().unwrap();
    let stored: BTreeSet<String> = server.names(WF.0, WF.1, NS).into_iter().collect();
    let expected: BTreeSet<String> = alerts.iter().map(|a| run_name("restart-web", a)).collect();
    assert_eq!(
        stored, expected,
        "every redelivered alert gets its run; heald decided {decisions:?}"
    );
}
