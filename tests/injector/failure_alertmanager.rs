//! Failure testing with a real Alertmanager (Debian's `prometheus-alertmanager`) and the
//! `heald` binary: Alertmanager going away and coming back on the same port while heald
//! reports, two heald replicas behind one Alertmanager, and storms of hundreds of new
//! alerts in one Alertmanager group.
//!
//! Without an Alertmanager binary these tests skip with a printed reason; under `CI=true`
//! they fail instead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::heald_support::alertmanager::{Alertmanager, alertmanager_binary};
use crate::heald_support::*;
use heal_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

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

// ----- storms -----

/// What a storm produced, printed by the tests (figures, not assertions on time).
struct Storm {
    alerts: usize,
    runs: usize,
    decisions: BTreeMap<String, f64>,
    to_last_run: Duration,
    answers: f64,
    answer_mean: Duration,
    answer_max_bucket: f64,
    api_requests: usize,
    /// What the figures were measured against.
    against: String,
}

/// One Alertmanager group of `n` new `WebDown` alerts delivered by a real Alertmanager
/// (`group_interval: 2s`, so it retries a failed notification for 10 s only) to heald
/// started with `extra`; waits until every alert has its final decision and at least
/// `runs` Workflows exist.
fn storm(n: usize, extra: &[&str], runs: usize) -> Option<Storm> {
    heal_testkit::require_reference!(None);
    let bin = alertmanager_binary()?;
    let server = ApiServer::start();
    server.register_argo_workflows();
    let files = Files::new(&policies("http://127.0.0.1:9/notify"));
    let port = free_port();
    let am = Alertmanager::start_routed(
        bin,
        &[format!("http://127.0.0.1:{port}")],
        &["alertname"],
        "2s",
    );
    let mut args = vec![
        "--alertmanager-url",
        am.url.as_str(),
        "--instance",
        "heald-storm",
        "--history",
        "10000",
    ];
    args.extend_from_slice(extra);
    let heald = Proc::start_on(&server, &files, port, &args);
    let metrics = || {
        http("GET", &format!("{}/metrics", heald.admin), None, None)
            .map(|(_, t)| t)
            .unwrap_or_default()
    };
    let deployments: Vec<String> = (0..n).map(|i| format!("svc-{i}")).collect();
    server.clear_requests();
    let started = Instant::now();
    am.post_alerts(&deployments);
    let mut to_last_run = Duration::ZERO;
    let mut seen = 0;
    wait_for(
        "every alert to be decided and its runs created",
        Duration::from_secs(300),
        || {
            let now = server.list(WF.0, WF.1, NS).len();
            if now > seen {
                seen = now;
                to_last_run = started.elapsed();
            }
            let text = metrics();
            let deferred = metric_sum(&text, "heald_decisions_total", "decision=\"deferred\"");
            let decided = metric_sum(&text, "heald_decisions_total", "");
            // Each deferred alert is decided twice: deferred, then for good.
            (now >= runs && decided - deferred >= n as f64).then_some(())
        },
    );
    // Nothing more comes (a second delivery would decide again).
    std::thread::sleep(Duration::from_secs(3));
    let text = metrics();
    let mut decisions = BTreeMap::new();
    for d in [
        "submitted",
        "duplicate",
        "rate-limited",
        "deferred",
        "error",
        "locked",
    ] {
        let v = metric_sum(&text, "heald_decisions_total", &format!("decision=\"{d}\""));
        if v > 0.0 {
            decisions.insert(d.to_string(), v);
        }
    }
    let answers = metric_sum(&text, "heald_webhook_duration_seconds_count", "");
    let sum = metric_sum(&text, "heald_webhook_duration_seconds_sum", "");
    // The smallest bucket bound holding every answer.
    let answer_max_bucket = text
        .lines()
        .filter(|l| l.starts_with("heald_webhook_duration_seconds_bucket"))
        .filter_map(|l| {
            let le = l
                .split("le=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse::<f64>()
                .ok()?;
            let count = l.rsplit_once(' ')?.1.parse::<f64>().ok()?;
            (count >= answers).then_some(le)
        })
        .fold(f64::INFINITY, f64::min);
    // Every notification was answered 2xx: Alertmanager counts no failure, and heald's
    // own answers to /v1/alerts were all 200.
    let failed = am.metric("alertmanager_notifications_failed_total", "webhook");
    if failed > 0.0 {
        let log = std::fs::read_to_string(&heald.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let requests: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("heald_http_requests_total"))
            .collect();
        panic!(
            "Alertmanager saw {failed} failed notifications; heald answered {requests:#?}; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let not_ok = metric_sum(&text, "heald_http_requests_total", "/v1/alerts")
        - metric_sum(&text, "heald_http_requests_total", "code=\"200\"");
    assert!(not_ok <= 0.0, "answers other than 200:\n{text}");
    let created = server.list(WF.0, WF.1, NS).len();
    // Exactly one run per alert episode: one create each, each a submitted decision.
    let creates = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/workflows") && r.status == 201)
        .count();
    assert_eq!(creates, created);
    assert_eq!(
        metric_sum(&text, "heald_decisions_total", "decision=\"submitted\""),
        created as f64
    );
    Some(Storm {
        alerts: n,
        runs: created,
        decisions,
        to_last_run,
        answers,
        answer_mean: Duration::from_secs_f64(if answers > 0.0 { sum / answers } else { 0.0 }),
        answer_max_bucket,
        api_requests: server.resource_requests().len(),
        against: server.latency().describe(),
    })
}

fn print(what: &str, s: &Storm) {
    #[allow(clippy::cast_precision_loss)]
    let per_alert = s.api_requests as f64 / s.alerts as f64;
    heal_testkit::report(&format!(
        "storm ({what}), against {}: {} alerts in one group -> {} runs; \
         decisions {:?}; last run created after {:.2?}; {} webhook answers, mean {:.2?}, all \
         within {} s; {} API requests ({per_alert:.2} per alert)",
        s.against,
        s.alerts,
        s.runs,
        s.decisions,
        s.to_last_run,
        s.answers,
        s.answer_mean,
        s.answer_max_bucket,
        s.api_requests,
    ));
}

/// The namespace's burst (5) at once, then its refill (0.2/s) at most while the storm
/// lasts; every other alert rate-limited, none deferred: refused before any request.
fn at_the_default_limits(s: &Storm) {
    let refilled = (s.to_last_run.as_secs_f64() * 0.2).ceil() as usize;
    assert!(
        (5..=5 + refilled).contains(&s.runs),
        "{} runs: {:?}",
        s.runs,
        s.decisions
    );
    assert_eq!(
        s.decisions.get("rate-limited").copied(),
        Some((s.alerts - s.runs) as f64),
        "{:?}",
        s.decisions
    );
    assert!(!s.decisions.contains_key("deferred"), "{:?}", s.decisions);
}

#[test]
fn a_storm_of_300_new_alerts_at_the_default_limits_gets_one_decision_each_and_a_2xx() {
    // Defaults: 5 runs at once per namespace; the rest rate-limited before any request.
    let Some(s) = storm(300, &DEFAULT_LIMITS, 5) else {
        return;
    };
    at_the_default_limits(&s);
    print("300, default limits", &s);
}

#[test]
fn a_storm_of_1000_new_alerts_at_the_default_limits_gets_one_decision_each_and_a_2xx() {
    let Some(s) = storm(1000, &DEFAULT_LIMITS, 5) else {
        return;
    };
    at_the_default_limits(&s);
    print("1000, default limits", &s);
}

/// Submission limits raised past what `--kube-qps` can serve before the answer is due:
/// the alerts beyond the request budget are answered `deferred` (2xx) and all get their
/// run as the budget frees up, one each.
fn storm_past_the_request_budget(n: usize, qps: &str) {
    let burst = (qps.parse::<u32>().unwrap() * 2).to_string();
    let Some(s) = storm(
        n,
        &[
            "--submit-burst",
            "100000",
            "--submit-rate",
            "1000",
            "--namespace-submit-burst",
            "100000",
            "--namespace-submit-rate",
            "1000",
            "--kube-qps",
            qps,
            "--kube-burst",
            &burst,
        ],
        n,
    ) else {
        return;
    };
    assert_eq!(
        s.decisions.get("submitted"),
        Some(&(n as f64)),
        "{:?}",
        s.decisions
    );
    assert!(s.decisions.contains_key("deferred"), "{:?}", s.decisions);
    print(&format!("{n}, past --kube-qps {qps}"), &s);
}

#[test]
fn a_storm_of_300_new_alerts_past_the_request_budget_is_deferred_and_every_alert_gets_its_run() {
    storm_past_the_request_budget(300, "100");
}

#[test]
fn a_storm_of_1000_new_alerts_past_the_request_budget_is_deferred_and_every_alert_gets_its_run() {
    storm_past_the_request_budget(1000, "200");
}
