//! Failure testing with a real Alertmanager (Debian's `prometheus-alertmanager`) and the
//! `heald` binary: Alertmanager going away and coming back on the same port while heald
//! reports, and two heald replicas behind one Alertmanager.
//!
//! Without an Alertmanager binary these tests skip with a printed reason; under `CI=true`
//! they fail instead.

mod heald_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use heald_support::alertmanager::{Alertmanager, alertmanager_binary};
use heald_support::*;
use serde_json::{Value, json};
use support::apiserver::ApiServer;

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");

fn comment(s: &Value) -> &str {
    s["comment"].as_str().unwrap_or("")
}

/// The run heald created for `deployment`, if any.
fn run_for(server: &ApiServer, deployment: &str) -> Option<String> {
    server.list(WF.0, WF.1, NS).into_iter().find_map(|w| {
        let target = w["metadata"]["annotations"]["heal.dev/target"].as_str()?;
        (target == format!("deployment/{deployment}"))
            .then(|| w["metadata"]["name"].as_str().unwrap().to_string())
    })
}

fn set_phase(server: &ApiServer, run: &str, phase: &str) {
    server.modify(WF.0, WF.1, NS, run, |o| {
        o["status"] = json!({"phase": phase, "message": format!("test says {phase}")});
    });
}

fn reported(server: &ApiServer, run: &str) -> bool {
    server
        .get(WF.0, WF.1, NS, run)
        .is_some_and(|w| w["metadata"]["labels"]["heal.dev/reported"] == "true")
}

/// POST one alert for `deployment` straight to heald, as Alertmanager's webhook would; the
/// status, the decision and how long the answer took.
fn deliver(p: &Proc, deployment: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let body = webhook(&[web_down(deployment, "2026-08-20T10:00:00Z")]);
    let (status, text) = http(
        "POST",
        &format!("{}/v1/alerts", p.web),
        Some(TOKEN),
        Some(&body),
    )
    .expect("heald answers");
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let decision = v["decisions"][0]["decision"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    (status, decision, started.elapsed())
}

struct Setup {
    server: ApiServer,
    _files: Files,
    am: Alertmanager,
    heald: Proc,
}

/// The test API server, a real Alertmanager, and heald reporting to it (tracking every
/// 200 ms).
fn setup(bin: &'static str) -> Setup {
    let server = ApiServer::start();
    server.register_argo_workflows();
    let files = Files::new(&policies("http://127.0.0.1:9/notify"));
    let am = Alertmanager::start(bin, &[]);
    let heald = Proc::start(
        &server,
        &files,
        &["--alertmanager-url", &am.url, "--track-interval", "200ms"],
    );
    Setup {
        server,
        _files: files,
        am,
        heald,
    }
}

#[test]
fn while_alertmanager_is_down_heald_keeps_answering_webhooks_and_starting_runs() {
    heal_testkit::require_reference!();
    let Some(bin) = alertmanager_binary() else {
        return;
    };
    let mut s = setup(bin);
    let (status, decision, _) = deliver(&s.heald, "before");
    assert_eq!((status, decision.as_str()), (200, "submitted"));
    assert_eq!(s.am.heald_silences().len(), 1, "silenced while in progress");

    s.am.stop();
    for i in 0..5 {
        let (status, decision, took) = deliver(&s.heald, &format!("during-{i}"));
        assert_eq!((status, decision.as_str()), (200, "submitted"));
        assert!(
            took < Duration::from_secs(1),
            "an unreachable Alertmanager does not hold up intake: answered in {took:?}"
        );
    }
    // A run that ends meanwhile is handled too (its silence is another test's matter).
    let before = run_for(&s.server, "before").unwrap();
    set_phase(&s.server, &before, "Failed");
    wait_for(
        "the failed run to be reported",
        Duration::from_secs(10),
        || reported(&s.server, &before).then_some(()),
    );

    s.am.restart(true);
    let (status, decision, _) = deliver(&s.heald, "after");
    assert_eq!((status, decision.as_str()), (200, "submitted"));
    let after = run_for(&s.server, "after").unwrap();
    let silences = s.am.heald_silences();
    assert!(
        silences.iter().any(|x| comment(x).contains(&after)),
        "runs are silenced again once Alertmanager is back: {silences:?}"
    );
    for i in 0..5 {
        assert!(run_for(&s.server, &format!("during-{i}")).is_some());
    }
}

#[test]
fn a_run_that_succeeds_while_alertmanager_is_down_is_silenced_once_alertmanager_is_back() {
    heal_testkit::require_reference!();
    let Some(bin) = alertmanager_binary() else {
        return;
    };
    let mut s = setup(bin);
    let (_, decision, _) = deliver(&s.heald, "web");
    assert_eq!(decision, "submitted");
    let run = run_for(&s.server, "web").unwrap();

    s.am.stop();
    let outage = Instant::now();
    set_phase(&s.server, &run, "Succeeded");
    wait_for("the run to be reported", Duration::from_secs(10), || {
        reported(&s.server, &run).then_some(())
    });
    // A short outage, as when Alertmanager's pod is rescheduled.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(outage.elapsed()));
    s.am.restart(true);
    let silence = wait_for(
        "the success silence after Alertmanager came back",
        Duration::from_secs(30),
        || {
            s.am.heald_silences()
                .into_iter()
                .find(|x| comment(x).contains(&run) && comment(x).contains("succeeded"))
        },
    );
    assert_eq!(silence["status"]["state"], "active");
}

#[test]
fn a_run_that_succeeds_after_alertmanager_lost_its_silences_is_still_silenced() {
    heal_testkit::require_reference!();
    let Some(bin) = alertmanager_binary() else {
        return;
    };
    let mut s = setup(bin);
    let (_, decision, _) = deliver(&s.heald, "web");
    assert_eq!(decision, "submitted");
    let run = run_for(&s.server, "web").unwrap();
    assert_eq!(s.am.heald_silences().len(), 1, "in progress");

    s.am.restart(false);
    assert!(s.am.heald_silences().is_empty(), "a fresh Alertmanager");
    set_phase(&s.server, &run, "Succeeded");
    wait_for("the run to be reported", Duration::from_secs(10), || {
        reported(&s.server, &run).then_some(())
    });
    let silence = wait_for("the success silence", Duration::from_secs(10), || {
        s.am.heald_silences()
            .into_iter()
            .find(|x| comment(x).contains(&run) && comment(x).contains("succeeded"))
    });
    assert_eq!(silence["status"]["state"], "active");
}

// ----- two replicas -----

/// heald's recent decisions (`GET /v1/remediations`).
fn decisions(p: &Proc) -> Vec<Value> {
    let (status, body) = http(
        "GET",
        &format!("{}/v1/remediations?limit=1000", p.web),
        Some(TOKEN),
        None,
    )
    .expect("heald answers");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == "decision")
        .collect()
}

fn start_replica(server: &ApiServer, files: &Files, port: u16, am: &str) -> Proc {
    Proc::start_on(
        server,
        files,
        port,
        &[
            "--alertmanager-url",
            am,
            "--track-interval",
            "200ms",
            "--instance",
            &format!("heald-{port}"),
        ],
    )
}

#[test]
fn two_heald_replicas_behind_one_alertmanager_start_exactly_one_run_per_alert_episode() {
    heal_testkit::require_reference!();
    let Some(bin) = alertmanager_binary() else {
        return;
    };
    let server = ApiServer::start();
    server.register_argo_workflows();
    let files = Files::new(&policies("http://127.0.0.1:9/notify"));
    // Alertmanager needs the replicas' addresses and they need its: fix their ports first.
    let ports = [free_port(), free_port()];
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let am = Alertmanager::start(bin, &urls);
    let replicas = [
        start_replica(&server, &files, ports[0], &am.url),
        start_replica(&server, &files, ports[1], &am.url),
    ];

    let deployments: Vec<String> = (0..10).map(|i| format!("svc-{i}")).collect();
    am.post_alerts(&deployments);
    // Prometheus sends firing alerts again every evaluation; Alertmanager deduplicates.
    am.post_alerts(&deployments);
    let decided = |r: &Proc| {
        decisions(r)
            .iter()
            .filter(|d| d["alertname"] == "WebDown")
            .count()
    };
    wait_for(
        "both replicas to decide on every alert",
        Duration::from_secs(20),
        || (replicas.iter().all(|r| decided(r) >= deployments.len())).then_some(()),
    );
    let mut per_run: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &replicas {
        for d in decisions(r) {
            per_run
                .entry(d["run"].as_str().unwrap_or("?").to_string())
                .or_default()
                .push(d["result"].as_str().unwrap_or("?").to_string());
        }
    }
    assert_eq!(per_run.len(), deployments.len(), "{per_run:?}");
    for (run, results) in &per_run {
        let submitted = results.iter().filter(|r| *r == "submitted").count();
        assert_eq!(submitted, 1, "{run}: {results:?}");
        assert!(
            results.iter().all(|r| r == "submitted" || r == "duplicate"),
            "{run}: {results:?}"
        );
    }
    let created = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/workflows") && r.status == 201)
        .count();
    assert_eq!(created, deployments.len(), "one create per alert episode");
    let runs = server.names(WF.0, WF.1, NS);
    assert_eq!(runs.len(), deployments.len());

    // Both replicas track the runs; each success is reported, and silenced, once.
    for run in &runs {
        set_phase(&server, run, "Succeeded");
    }
    wait_for(
        "every success to be silenced",
        Duration::from_secs(20),
        || {
            let silences = am.heald_silences();
            runs.iter()
                .all(|run| {
                    silences
                        .iter()
                        .any(|x| comment(x).contains(run) && comment(x).contains("succeeded"))
                })
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(600));
    let silences = am.heald_silences();
    for run in &runs {
        let of_run: Vec<&Value> = silences
            .iter()
            .filter(|x| comment(x).contains(run.as_str()))
            .collect();
        // Alertmanager updates the in-progress silence in place, or expires it and makes
        // a new one, depending on its state: either way one of each at most.
        let success: Vec<&&Value> = of_run
            .iter()
            .filter(|x| comment(x).contains("succeeded"))
            .collect();
        let in_progress: Vec<&&Value> = of_run
            .iter()
            .filter(|x| comment(x).contains("in progress"))
            .collect();
        assert_eq!(success.len(), 1, "{run}: one success silence: {of_run:?}");
        assert_eq!(success[0]["status"]["state"], "active");
        assert!(
            in_progress.len() <= 1
                && in_progress
                    .iter()
                    .all(|x| x["status"]["state"] == "expired"),
            "{run}: at most one in-progress silence, made by the replica that started the \
             run, and replaced by the success silence: {of_run:?}"
        );
    }
    let outcomes: usize = replicas
        .iter()
        .map(|r| {
            let (_, body) = http(
                "GET",
                &format!("{}/v1/remediations?limit=1000", r.web),
                Some(TOKEN),
                None,
            )
            .unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "outcome")
                .count()
        })
        .sum();
    assert_eq!(
        outcomes,
        runs.len(),
        "each run's end handled by one replica"
    );
}
