//! Failure testing: the Kubernetes API server answers a share of the requests with 429
//! (Retry-After 0 or 1), 500, 503, a slow answer or a reset connection, while heald
//! handles alerts and tracks their runs and `heal` performs actions. Every remediation must
//! still complete or escalate; none is lost and none is applied twice, which the test API
//! server's request log shows (it injects its faults before a request is applied, so a
//! write it answered 2xx without a fault is a write that happened).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::heald_support::*;
use crate::support::env;
use heal::heald::tracking;
use heal_testkit::apiserver::{ApiServer, Chaos, Fault, FaultAction, Recorded};
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");
const WF_PATH: &str = "/apis/argoproj.io/v1alpha1/namespaces/heal-system/workflows";

/// `fraction` of the resource requests fail, picked uniformly from every transient fault
/// a real API server (or the network to it) produces.
fn faults(fraction: f64, seed: u64) -> Chaos {
    let action = |f: Fault| f.action;
    Chaos::transient(fraction, seed).actions(vec![
        action(Fault::any().too_many_requests(0)),
        action(Fault::any().too_many_requests(1)),
        action(Fault::any().internal_error()),
        action(Fault::any().service_unavailable()),
        FaultAction::Delay(Duration::from_millis(300)),
        FaultAction::Reset,
    ])
}

/// Writes the server performed: the method on paths under `prefix` (and, when `exact`,
/// exactly `prefix`), answered 2xx without an injected fault.
fn applied(log: &[Recorded], method: &str, prefix: &str, exact: bool) -> Vec<Recorded> {
    log.iter()
        .filter(|r| {
            r.method == method
                && !r.injected
                && (200..300).contains(&r.status)
                && if exact {
                    r.path == prefix
                } else {
                    r.path.starts_with(prefix)
                }
        })
        .cloned()
        .collect()
}

/// What an Alertmanager delivery loop saw for one webhook.
struct Delivered {
    /// Attempts made, the last one answered 200.
    attempts: usize,
    /// The decisions of the 200 answer.
    decisions: Vec<Value>,
}

/// Deliver `body` as Alertmanager does: retry 5xx answers (here every 50 ms, at most for
/// `within`); any other status ends the delivery, and fails the test because Alertmanager
/// would drop the notification.
async fn deliver(h: &Heald, body: &Value, within: Duration) -> Delivered {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, answer) = h.alerts(body).await;
        if status.is_success() {
            let decisions = answer["decisions"].as_array().cloned().unwrap_or_default();
            return Delivered {
                attempts,
                decisions,
            };
        }
        assert!(
            status.is_server_error(),
            "heald answered {status} to a valid webhook: Alertmanager drops it and the alerts \
             are lost: {answer}"
        );
        assert!(
            started.elapsed() < within,
            "still answered {status} after {attempts} attempts over {within:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_30_percent_of_api_requests_failing_every_alert_gets_exactly_one_run_and_one_report() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let am = Receiver::start().await;
    let f = Files::new(&policies(&format!("{}/notify", am.url)));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;

    // 12 alerts for 12 deployments, arriving as 4 groups of 3.
    let alerts: Vec<Value> = (0..12)
        .map(|i| web_down(&format!("svc-{i}"), "2026-08-20T10:00:00Z"))
        .collect();
    server.clear_requests();
    server.chaos(faults(0.3, 7));
    let deliveries: Vec<_> = alerts
        .chunks(3)
        .map(|group| {
            let (h, body) = (h.clone(), webhook(group));
            tokio::spawn(async move { deliver(&h, &body, Duration::from_secs(40)).await })
        })
        .collect();
    let mut decided: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut retried = 0;
    for d in deliveries {
        let d = d.await.unwrap();
        retried += d.attempts - 1;
        for rec in d.decisions {
            decided
                .entry(rec["run"].as_str().unwrap_or("?").to_string())
                .or_default()
                .push(rec["decision"].as_str().unwrap_or("?").to_string());
        }
    }
    let expected: BTreeSet<String> = alerts.iter().map(|a| run_name("restart-web", a)).collect();
    for (run, decisions) in &decided {
        assert!(
            decisions
                .iter()
                .all(|d| d == "submitted" || d == "duplicate"),
            "a transient API failure must never end an alert's delivery with another \
             decision ({run}: {decisions:?}); Alertmanager would not retry it"
        );
    }
    assert_eq!(
        decided.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every alert got a decision"
    );
    let created = applied(&server.requests(), "POST", WF_PATH, true);
    let mut created_names: Vec<String> = created
        .iter()
        .filter_map(|r| {
            r.body.as_ref()?["metadata"]["name"]
                .as_str()
                .map(String::from)
        })
        .collect();
    created_names.sort();
    assert_eq!(
        created_names,
        expected.iter().cloned().collect::<Vec<_>>(),
        "each run created exactly once ({retried} deliveries were retried)"
    );
    let stored: BTreeSet<String> = server.names(WF.0, WF.1, NS).into_iter().collect();
    assert_eq!(stored, expected);

    // Half the runs succeed, half fail; heald tracks them to their end through the faults.
    let runs: Vec<String> = expected.iter().cloned().collect();
    for (i, run) in runs.iter().enumerate() {
        let phase = if i % 2 == 0 { "Succeeded" } else { "Failed" };
        server.modify(WF.0, WF.1, NS, run, |o| {
            o["status"] = json!({"phase": phase, "message": format!("test says {phase}")});
        });
    }
    let started = Instant::now();
    loop {
        let _ = tracking::pass(&h.state).await;
        let reported = server
            .list(WF.0, WF.1, NS)
            .iter()
            .filter(|w| w["metadata"]["labels"]["heal.dev/reported"] == "true")
            .count();
        if reported == runs.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {reported} of {} runs reported after 30 s of tracking",
            runs.len()
        );
    }
    let injected = server.stop_chaos();
    assert!(
        injected >= 15,
        "the faults really happened: {injected} injected"
    );

    let log = server.requests();
    for (i, run) in runs.iter().enumerate() {
        let claims: Vec<&Recorded> = log
            .iter()
            .filter(|r| {
                r.method == "PATCH"
                    && !r.injected
                    && r.status == 200
                    && r.path == format!("{WF_PATH}/{run}")
                    && r.body
                        .as_ref()
                        .is_some_and(|b| b["metadata"]["labels"]["heal.dev/reported"] == "true")
            })
            .collect();
        assert_eq!(claims.len(), 1, "{run}'s end is handled exactly once");
        let wf = server.get(WF.0, WF.1, NS, run).unwrap();
        let want = if i % 2 == 0 { "succeeded" } else { "failed" };
        assert_eq!(wf["metadata"]["labels"]["heal.dev/outcome"], want, "{run}");
    }
    let silences = am.bodies("/api/v2/silences");
    let notes = am.bodies("/notify");
    for (i, run) in runs.iter().enumerate() {
        let success_silences = silences
            .iter()
            .filter(|s| {
                let c = s["comment"].as_str().unwrap_or("");
                c.contains(run.as_str()) && c.contains("succeeded")
            })
            .count();
        let notified = notes.iter().filter(|n| n["run"] == json!(run)).count();
        if i % 2 == 0 {
            assert_eq!(
                (success_silences, notified),
                (1, 0),
                "{run} succeeded: silenced once"
            );
        } else {
            assert_eq!(
                (success_silences, notified),
                (0, 1),
                "{run} failed: escalated once"
            );
        }
    }
}

/// heald with a short Kubernetes API timeout, so that an outage outlasts it quickly.
async fn impatient_heald(server: &ApiServer, f: &Files) -> Heald {
    server.register_argo_workflows();
    Heald::start(
        server,
        f,
        &["--api-timeout", "500ms", "--request-timeout", "5s"],
    )
    .await
}

#[tokio::test]
async fn when_run_creation_fails_past_the_api_timeout_heald_answers_503_and_the_retry_creates_the_run_once()
 {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = impatient_heald(&server, &f).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let body = webhook(std::slice::from_ref(&a));
    server.clear_requests();
    server.inject(
        Fault::on("POST", "/workflows")
            .path_regex(r"/workflows(\?|$)")
            .always()
            .service_unavailable(),
    );
    let (status, answer) = h.alerts(&body).await;
    assert_eq!(
        status.as_u16(),
        503,
        "a retry by Alertmanager can succeed: {answer}"
    );
    assert!(server.names(WF.0, WF.1, NS).is_empty());
    server.clear_faults();
    let d = deliver(&h, &body, Duration::from_secs(10)).await;
    assert_eq!(d.decisions[0]["decision"], "submitted", "{:?}", d.decisions);
    assert_eq!(server.names(WF.0, WF.1, NS), [run_name("restart-web", &a)]);
    assert_eq!(
        applied(&server.requests(), "POST", WF_PATH, true).len(),
        1,
        "created once"
    );
}

#[tokio::test]
async fn when_the_api_server_is_down_for_both_the_create_and_the_lease_release_the_retry_still_creates_the_run()
 {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let h = impatient_heald(&server, &f).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let body = webhook(std::slice::from_ref(&a));
    // The Lease is taken (GET, POST), then the API server goes away: the create and the
    // release of the Lease both fail.
    server.inject(
        Fault::on("POST", "/workflows")
            .path_regex(r"/workflows(\?|$)")
            .always()
            .service_unavailable(),
    );
    server.inject(Fault::on("PUT", "/leases/").always().service_unavailable());
    let (status, answer) = h.alerts(&body).await;
    assert_eq!(status.as_u16(), 503, "{answer}");
    assert!(server.names(WF.0, WF.1, NS).is_empty(), "no run yet");
    server.clear_faults();
    // The API server is back; Alertmanager retries the notification.
    let d = deliver(&h, &body, Duration::from_secs(10)).await;
    assert_eq!(
        server.names(WF.0, WF.1, NS),
        [run_name("restart-web", &a)],
        "the alert gets its run on Alertmanager's retry; heald answered {:?}",
        d.decisions
    );
}

// ----- heal under faults -----

/// One `heal` step as an engine runs it: exit 3 is retried (Argo's `retryStrategy` on exit
/// code 3, at most 4 retries); answers the exit code of the last attempt and the number of
/// attempts.
fn heal_step(kubeconfig: &str, args: &[&str]) -> (i32, usize, String) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(args)
            .args(["--kubeconfig", kubeconfig, "--timeout", "20s", "-o", "json"])
            .output()
            .expect("run heal");
        let code = out.status.code().unwrap_or(-1);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if code != 3 || attempts == 5 {
            return (code, attempts, text);
        }
    }
}

#[test]
fn with_30_percent_of_api_requests_failing_every_heal_action_is_applied_exactly_once() {
    let e = env();
    let server = &e.server;
    let kubeconfig = e.kubeconfig.display().to_string();
    let kubeconfig = kubeconfig.as_str();
    const N: usize = 5;
    for i in 0..N {
        server.seed_deployment("shop", &format!("web-{i}"), 2, &[]);
        server.insert(heal_testkit::apiserver::node(&format!("worker-{i}")));
    }
    let victims: Vec<(String, String)> = (0..N)
        .map(|i| {
            let p = server.insert(heal_testkit::apiserver::pod("shop", &format!("victim-{i}")));
            (
                format!("victim-{i}"),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    server.clear_requests();
    server.chaos(faults(0.3, 11));

    // Every action on its own thread, the way independent steps run at once in a cluster.
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let kubeconfig = kubeconfig.to_string();
            let (victim, uid) = victims[i].clone();
            std::thread::spawn(move || {
                let web = format!("deploy/web-{i}");
                let node = format!("node/worker-{i}");
                let pod = format!("pod/{victim}");
                let cid = format!("fault-test-{i}");
                let label = format!("{{\"metadata\":{{\"labels\":{{\"patched\":\"p{i}\"}}}}}}");
                let steps: Vec<Vec<&str>> = vec![
                    vec!["scale", &web, "-n", "shop", "--replicas", "+1"],
                    vec!["restart", &web, "-n", "shop", "--correlation-id", &cid],
                    vec!["delete", &pod, "-n", "shop", "--uid", &uid],
                    vec![
                        "patch", &web, "-n", "shop", "--type", "merge", "--patch", &label,
                    ],
                    vec!["cordon", &node],
                ];
                steps
                    .iter()
                    .map(|s| {
                        let (code, attempts, out) = heal_step(&kubeconfig, s);
                        (s.join(" "), code, attempts, out)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in threads {
        results.extend(t.join().unwrap());
    }
    let injected = server.stop_chaos();
    for (step, code, attempts, out) in &results {
        assert_eq!(
            *code, 0,
            "`heal {step}` completes despite the faults (after {attempts} attempts): {out}"
        );
    }
    assert!(
        injected >= 10,
        "the faults really happened: {injected} injected"
    );

    let log = server.requests();
    let apps = "/apis/apps/v1/namespaces/shop/deployments";
    for i in 0..N {
        let web = format!("{apps}/web-{i}");
        let scale = format!("{web}/scale");
        let patches = applied(&log, "PATCH", &web, true);
        // A relative scale patches the Deployment, recording its correlation id.
        let scales = patches
            .iter()
            .filter(|r| {
                r.raw_body
                    .as_deref()
                    .unwrap_or("")
                    .contains("heal.dev/scale-correlation-id")
            })
            .count();
        assert_eq!(scales, 1, "web-{i} scaled once");
        assert!(applied(&log, "PATCH", &scale, true).is_empty());
        let d = server.get("apps/v1", "deployments", "shop", &format!("web-{i}"));
        let d = d.unwrap();
        assert_eq!(d["spec"]["replicas"], 3, "+1 from 2, once: web-{i}");
        let restarts = patches
            .iter()
            .filter(|r| r.raw_body.as_deref().unwrap_or("").contains("restartedAt"))
            .count();
        let merges = patches
            .iter()
            .filter(|r| r.raw_body.as_deref().unwrap_or("").contains("patched"))
            .count();
        assert_eq!(
            (restarts, merges),
            (1, 1),
            "web-{i}: one restart, one patch"
        );
        assert_eq!(d["metadata"]["labels"]["patched"], json!(format!("p{i}")));
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string()
        );
        let pod = format!("/api/v1/namespaces/shop/pods/victim-{i}");
        assert_eq!(
            applied(&log, "DELETE", &pod, true).len(),
            1,
            "victim-{i} deleted once"
        );
        assert!(
            server
                .get("v1", "pods", "shop", &format!("victim-{i}"))
                .is_none()
        );
        let node = format!("/api/v1/nodes/worker-{i}");
        assert_eq!(applied(&log, "PATCH", &node, true).len(), 1, "worker-{i}");
        let n = server
            .get("v1", "nodes", "", &format!("worker-{i}"))
            .unwrap();
        assert_eq!(n["spec"]["unschedulable"], true);
    }
}
