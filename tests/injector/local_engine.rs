//! heald's local engine against the test Kubernetes API server: steps run in dependency
//! order and in parallel where the DAG allows, a failing step stops its dependants while the
//! outcome is still handled, retries on exit code 3, the run's deadline, restarts in the
//! middle of a run (nothing applied twice, the outcome handled once), takeover by another
//! replica, and the fallback from a missing Argo to the local engine.

use std::time::{Duration, Instant};

use crate::heald_support::*;
use heal::heald::tracking;
use heal_testkit::apiserver::{ApiServer, Fault, Recorded};
use serde_json::{Value, json};

const CM: (&str, &str) = ("v1", "configmaps");
const DEPLOY: (&str, &str) = ("apps/v1", "deployments");
const WEB: &str = "/apis/apps/v1/namespaces/shop/deployments/web";

/// A server with heald's namespace and `shop/web` (2 replicas), without Argo or Tekton.
fn server() -> ApiServer {
    let s = ApiServer::start();
    s.with_state(|st| st.ensure_namespace(NS));
    s.seed_deployment("shop", "web", 2, &[]);
    s
}

/// The policy `fix-web` answering `WebDown` with `spec` (engine and steps), silencing for
/// an hour on success and escalating to the `oncall` webhook at `notifier` on failure.
fn policy(notifier: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: fix-web
spec:
  match:
    alertname: WebDown
  target:
    kind: deployment
    namespace: "{{{{ labels.namespace }}}}"
    name: "{{{{ labels.deployment }}}}"
  onSuccess: {{silence: 1h}}
  onFailure: {{notify: [oncall]}}
{spec}
---
apiVersion: heal.dev/v1alpha1
kind: Notifier
metadata:
  name: oncall
spec:
  type: webhook
  url: {notifier}
"#
    )
}

/// A step that sets annotation `heal.dev/step-NAME` on the target.
fn mark(name: &str, after: &[&str]) -> String {
    format!(
        "    - name: {name}\n      action: patch\n      type: merge\n      after: [{}]\n      \
         patch: {{metadata: {{annotations: {{heal.dev/step-{name}: done}}}}}}\n",
        after.join(", ")
    )
}

/// A step that waits until the target has condition `condition` (set by the test).
fn wait_step(name: &str, condition: &str, after: &[&str]) -> String {
    format!(
        "    - name: {name}\n      action: wait\n      for: condition={condition}\n      \
         timeout: 30s\n      after: [{}]\n",
        after.join(", ")
    )
}

fn alert() -> Value {
    web_down("web", "2026-08-20T10:00:00Z")
}

fn run() -> String {
    run_name("fix-web", &alert())
}

/// The run's ConfigMap.
fn state(server: &ApiServer) -> Value {
    server
        .get(CM.0, CM.1, NS, &run())
        .unwrap_or_else(|| panic!("no ConfigMap for the run:\n{}", server.log_text()))
}

/// A step's status from the run's ConfigMap.
fn step(server: &ApiServer, name: &str) -> Option<Value> {
    let cm = server.get(CM.0, CM.1, NS, &run())?;
    let text = cm["data"][format!("step.{name}")].as_str()?.to_string();
    Some(serde_json::from_str(&text).expect("a step status is JSON"))
}

fn reported(server: &ApiServer) -> bool {
    server
        .get(CM.0, CM.1, NS, &run())
        .is_some_and(|cm| cm["metadata"]["labels"]["heal.dev/reported"] == "true")
}

/// Poll `f` every 20 ms for up to 20 s.
async fn eventually<T>(server: &ApiServer, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; requests:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The merge patches sent to the target, in order: the annotation each one set.
fn marks(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == WEB)
        .filter_map(|r| {
            r.body.as_ref()?["metadata"]["annotations"]
                .as_object()?
                .keys()
                .find_map(|k| k.strip_prefix("heal.dev/step-").map(str::to_string))
        })
        .collect()
}

fn set_condition(server: &ApiServer, condition: &str) {
    server.modify(DEPLOY.0, DEPLOY.1, "shop", "web", |d| {
        let mut conds = d["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds.push(json!({"type": condition, "status": "True", "reason": "Test"}));
        d["status"]["conditions"] = json!(conds);
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ----- executing the DAG -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_policy_runs_its_steps_in_dependency_order_inside_heald_and_reports_success() {
    let server = server();
    let am = Receiver::start().await;
    // Declared backwards: only `after` decides the order.
    let spec = format!(
        "  engine: local\n  steps:\n{}{}{}",
        mark("c", &["b"]),
        mark("b", &["a"]),
        mark("a", &[])
    );
    let f = Files::new(&policy(&format!("{}/notify", am.url), &spec));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let d = h.decide(&webhook(&[alert()])).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    assert_eq!(d[0]["engine"], "local");
    assert_eq!(d[0]["namespace"], NS);
    assert_eq!(d[0]["run"], json!(run()));
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    assert_eq!(marks(&server.requests()), ["a", "b", "c"]);
    let web = server.get(DEPLOY.0, DEPLOY.1, "shop", "web").unwrap();
    for s in ["a", "b", "c"] {
        assert_eq!(
            web["metadata"]["annotations"][format!("heal.dev/step-{s}")],
            "done"
        );
        let st = step(&server, s).unwrap();
        assert_eq!(st["phase"], "Succeeded", "{st}");
        assert_eq!(st["attempts"], 1);
        assert_eq!(st["result"]["outcome"], "applied");
        assert_eq!(st["result"]["correlationId"], d[0]["correlationId"]);
    }
    let cm = state(&server);
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "heald"
    );
    assert_eq!(cm["metadata"]["labels"]["heal.dev/engine"], "local");
    assert_eq!(cm["metadata"]["labels"]["heal.dev/outcome"], "succeeded");
    let plan: Value = serde_json::from_str(cm["data"]["plan.json"].as_str().unwrap()).unwrap();
    assert_eq!(plan["runName"], json!(run()));
    // The outcome is handled as for any engine: silence, Lease, history, Events.
    let silences = eventually(&server, "the success silence", || {
        let s = am.bodies("/api/v2/silences");
        (s.len() == 2).then_some(s)
    })
    .await;
    assert_eq!(
        silences[1]["id"], "silence-1",
        "the in-progress silence is replaced"
    );
    assert!(am.bodies("/notify").is_empty());
    let lease = target_leases(&server).pop().unwrap();
    assert_eq!(lease["metadata"]["annotations"]["heal.dev/holders"], "[]");
    assert!(lease["metadata"]["annotations"]["heal.dev/last-success-at"].is_string());
    let outcomes: Vec<_> = h
        .state
        .history
        .recent(10)
        .into_iter()
        .filter(|e| e.kind == "outcome")
        .collect();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, "succeeded");
    assert_eq!(outcomes[0].engine.as_deref(), Some("local"));
    let events: Vec<Value> = server
        .requests_matching("POST", &format!("/api/v1/namespaces/{NS}/events"))
        .into_iter()
        .filter_map(|r| r.body)
        .collect();
    for reason in ["RemediationSubmitted", "RemediationSucceeded"] {
        let e = events
            .iter()
            .find(|e| e["reason"] == reason)
            .unwrap_or_else(|| panic!("no {reason} Event: {events:?}"));
        assert_eq!(e["involvedObject"]["kind"], "ConfigMap");
        assert_eq!(e["involvedObject"]["name"], json!(run()));
    }
    let metrics = h.state.metrics.encode();
    assert!(
        metrics.contains(
            r#"heald_outcomes_total{outcome="succeeded",engine="local",policy="fix-web"} 1"#
        ),
        "{metrics}"
    );
    // The same alert episode again is a duplicate; there is one run.
    let again = h.decide(&webhook(&[alert()])).await;
    assert_eq!(again[0]["decision"], "duplicate");
    assert_eq!(server.names(CM.0, CM.1, NS), [run()]);
    assert_eq!(
        tracking::pass(&h.state).await.unwrap().finished,
        0,
        "handled once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_branches_run_at_the_same_time_and_a_join_waits_for_both() {
    let server = server();
    let spec = format!(
        "  engine: local\n  steps:\n{}{}{}{}",
        mark("a", &[]),
        wait_step("slow", "Settled", &["a"]),
        mark("fast", &["a"]),
        mark("join", &["slow", "fast"]),
    );
    let f = Files::new(&policy("http://127.0.0.1:9/notify", &spec));
    let h = Heald::start(&server, &f, &[]).await;
    assert_eq!(
        h.decide(&webhook(&[alert()])).await[0]["decision"],
        "submitted"
    );
    // `fast` is done while `slow` still waits: the branches do not wait for each other.
    eventually(&server, "the fast branch", || {
        (marks(&server.requests()) == ["a", "fast"]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(step(&server, "slow"), None, "slow is still waiting");
    assert_eq!(
        marks(&server.requests()),
        ["a", "fast"],
        "join waits for slow"
    );
    let before = server.requests().len();
    set_condition(&server, "Settled");
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    let log = server.requests();
    assert_eq!(marks(&log), ["a", "fast", "join"]);
    let join_at = log
        .iter()
        .position(|r| {
            r.method == "PATCH" && r.path == WEB && marks(std::slice::from_ref(r)) == ["join"]
        })
        .unwrap();
    assert!(join_at > before, "join ran only after slow could finish");
    assert_eq!(step(&server, "slow").unwrap()["phase"], "Succeeded");
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_stops_its_dependants_but_the_other_branch_runs_and_the_failure_is_escalated()
 {
    let server = server();
    let am = Receiver::start().await;
    let broken = "    - name: broken\n      action: patch\n      type: json\n      after: [a]\n      \
                  patch: [{op: test, path: /metadata/name, value: not-web}]\n";
    let spec = format!(
        "  engine: local\n  guards:\n    failureBudget: {{failures: 3, window: 1h}}\n  steps:\n{}{broken}{}{}",
        mark("a", &[]),
        mark("after-broken", &["broken"]),
        mark("other", &["a"]),
    );
    let f = Files::new(&policy(&format!("{}/notify", am.url), &spec));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    assert_eq!(
        h.decide(&webhook(&[alert()])).await[0]["decision"],
        "submitted"
    );
    let notes = eventually(&server, "the escalation", || {
        let n = am.bodies("/notify");
        (!n.is_empty()).then_some(n)
    })
    .await;
    let mut done = marks(&server.requests());
    done.sort();
    assert_eq!(done, ["a", "other"], "after-broken never ran");
    let n = &notes[0];
    assert_eq!(n["kind"], "RemediationFailed");
    assert_eq!(n["engine"], "local");
    assert_eq!(n["outcome"], "failed");
    let message = n["message"].as_str().unwrap();
    assert!(message.starts_with("step broken failed:"), "{message}");
    assert!(message.ends_with("not run: after-broken"), "{message}");
    assert_eq!(n["steps"]["broken"]["phase"], "Failed");
    assert_eq!(n["steps"]["broken"]["exitCode"], 1);
    assert_eq!(n["steps"]["after-broken"]["phase"], "Skipped");
    assert_eq!(n["steps"]["other"]["phase"], "Succeeded");
    assert_eq!(
        step(&server, "after-broken").unwrap()["message"],
        "not run: broken did not succeed"
    );
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "failed"
    );
    eventually(&server, "the in-progress silence to expire", || {
        (am.bodies("/api/v2/silence/silence-1").len() == 1).then_some(())
    })
    .await;
    let lease = target_leases(&server).pop().unwrap();
    assert!(
        lease["metadata"]["annotations"]["heal.dev/failures"].is_string(),
        "the failure counts towards the circuit: {lease}"
    );
    assert_eq!(am.bodies("/notify").len(), 1, "escalated once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_engine_local_as_heald_default_policies_that_name_no_engine_run_in_heald() {
    let server = server();
    let spec = format!("  steps:\n{}", mark("a", &[]));
    let f = Files::new(&policy("http://127.0.0.1:9/notify", &spec));
    let h = Heald::start(&server, &f, &["--engine", "local"]).await;
    let d = h.decide(&webhook(&[alert()])).await;
    assert_eq!(d[0]["engine"], "local", "{d:?}");
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    assert_eq!(marks(&server.requests()), ["a"]);
    // heald reports local runs itself; `heal report` has nothing to add.
    let report = json!({"engine": "local", "runName": run(), "namespace": NS,
        "status": "Succeeded", "correlationId": d[0]["correlationId"]});
    let (status, _, v) = call(
        &h.app,
        "POST",
        "/v1/reports",
        Some(TOKEN),
        Some("application/json"),
        report.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status.as_u16(), 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_whose_end_was_not_handled_is_handled_by_the_next_pass_and_never_dropped() {
    let server = server();
    let am = Receiver::start().await;
    let spec = format!("  engine: local\n  steps:\n{}", mark("a", &[]));
    let f = Files::new(&policy(&format!("{}/notify", am.url), &spec));
    let h = Heald::start(&server, &f, &[]).await;
    h.decide(&webhook(&[alert()])).await;
    eventually(&server, "the run to end", || {
        h.state.local.is_empty().then_some(())
    })
    .await;
    assert!(reported(&server));
    // heald stopped after writing the outcome but before claiming it.
    let unclaim = |cm: &mut Value| {
        let labels = cm["metadata"]["labels"].as_object_mut().unwrap();
        labels.remove("heal.dev/reported");
        labels.remove("heal.dev/outcome");
    };
    server.modify(CM.0, CM.1, NS, &run(), unclaim);
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "succeeded"
    );
    // A run whose state cannot be read is reported as failed, with the reason.
    server.modify(CM.0, CM.1, NS, &run(), |cm| {
        unclaim(cm);
        cm["data"] = json!({"plan.json": "{not a plan"});
    });
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "failed"
    );
    let notes = am.bodies("/notify");
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]["message"].as_str().unwrap().contains("plan.json"),
        "{}",
        notes[0]["message"]
    );
}

// ----- retries and the deadline -----

fn flaky_scale(retries: u32) -> String {
    format!(
        "  engine: local\n  steps:\n    - name: scale\n      action: scale\n      replicas: 3\n      \
         timeout: 1s\n      retries: {retries}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_exits_3_is_retried_after_a_backoff_and_then_succeeds() {
    let server = server();
    server.inject(
        Fault::on("PATCH", "/deployments/web/scale")
            .service_unavailable()
            .always(),
    );
    let f = Files::new(&policy("http://127.0.0.1:9/notify", &flaky_scale(2)));
    let h = Heald::start(&server, &f, &["--local-retry-backoff", "300ms"]).await;
    assert_eq!(
        h.decide(&webhook(&[alert()])).await[0]["decision"],
        "submitted"
    );
    let first = eventually(&server, "the first attempt to end", || {
        step(&server, "scale").filter(|s| s["phase"] == "Retrying")
    })
    .await;
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["exitCode"], 3, "{first}");
    // The API server recovers before the retry.
    server.clear_faults();
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    let st = step(&server, "scale").unwrap();
    assert_eq!(st["phase"], "Succeeded", "{st}");
    assert_eq!(st["attempts"], 2);
    let web = server.get(DEPLOY.0, DEPLOY.1, "shop", "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_still_failing_after_its_retries_fails_the_run_and_is_escalated() {
    let server = server();
    let am = Receiver::start().await;
    server.inject(
        Fault::on("PATCH", "/deployments/web/scale")
            .service_unavailable()
            .always(),
    );
    let f = Files::new(&policy(&format!("{}/notify", am.url), &flaky_scale(1)));
    let h = Heald::start(&server, &f, &["--local-retry-backoff", "100ms"]).await;
    h.decide(&webhook(&[alert()])).await;
    let notes = eventually(&server, "the escalation", || {
        let n = am.bodies("/notify");
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(notes[0]["outcome"], "failed");
    assert_eq!(
        notes[0]["steps"]["scale"]["attempts"], 2,
        "one try and one retry"
    );
    assert_eq!(notes[0]["steps"]["scale"]["exitCode"], 3);
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap()
            .contains("after 2 attempts"),
        "{}",
        notes[0]["message"]
    );
}

// ----- restarts -----

/// A crash of heald #1 (its runtime and every task stop where they are) once `ready`
/// holds, then heald #2 (`extra2`) on a fresh runtime with one tracking pass.
struct Restart {
    server: ApiServer,
    am: Receiver,
    files: Files,
    _main: tokio::runtime::Runtime,
    second: tokio::runtime::Runtime,
    h2: Option<Heald>,
}

impl Restart {
    fn new(spec: &str) -> Restart {
        let main = runtime();
        let server = server();
        let am = main.block_on(Receiver::start());
        let files = Files::new(&policy(&format!("{}/notify", am.url), spec));
        Restart {
            server,
            am,
            files,
            _main: main,
            second: runtime(),
            h2: None,
        }
    }

    fn extra(&self) -> Vec<String> {
        vec!["--alertmanager-url".into(), self.am.url.clone()]
    }

    /// Start heald #1, send the alert, wait for `ready`, crash it.
    fn first_life(&self, instance: &str, ready: impl Fn(&ApiServer) -> bool) {
        let first = runtime();
        let mut extra = self.extra();
        extra.extend(["--instance".into(), instance.into()]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let h1 = first.block_on(Heald::start(&self.server, &self.files, &extra));
        let d = first.block_on(h1.decide(&webhook(&[alert()])));
        assert_eq!(d[0]["decision"], "submitted", "{d:?}");
        wait_for(
            "heald #1 to get far enough",
            Duration::from_secs(20),
            || ready(&self.server).then_some(()),
        );
        drop(h1);
        drop(first);
    }

    /// Start heald #2 and run one tracking pass.
    fn second_life(&mut self, instance: &str) -> tracking::Pass {
        let mut extra = self.extra();
        extra.extend(["--instance".into(), instance.into()]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let h2 = self
            .second
            .block_on(Heald::start(&self.server, &self.files, &extra));
        let pass = self.second.block_on(tracking::pass(&h2.state)).unwrap();
        self.h2 = Some(h2);
        pass
    }

    fn outcomes(&self) -> Vec<String> {
        self.h2
            .as_ref()
            .unwrap()
            .state
            .history
            .recent(100)
            .into_iter()
            .filter(|e| e.kind == "outcome")
            .map(|e| e.result)
            .collect()
    }
}

/// Relative scales applied: patches of the Deployment recording a scale's correlation id.
fn scale_patches(server: &ApiServer) -> usize {
    server
        .requests_matching("PATCH", WEB)
        .into_iter()
        .filter(|r| {
            r.status == 200
                && r.body.as_ref().is_some_and(|b| {
                    b["metadata"]["annotations"]
                        .get("heal.dev/scale-correlation-id")
                        .is_some()
                })
        })
        .count()
}

#[test]
fn a_restart_in_the_middle_of_a_run_repeats_no_finished_step_and_reports_once() {
    let spec = format!(
        "  engine: local\n  steps:\n    - name: scale-up\n      action: scale\n      \
         replicas: \"+1\"\n{}{}",
        wait_step("settle", "Settled", &["scale-up"]),
        mark("done", &["settle"]),
    );
    let mut r = Restart::new(&spec);
    r.first_life("heald-0", |s| {
        // One GET of the relative scale, then two of the wait: settle is running.
        step(s, "scale-up").is_some_and(|st| st["phase"] == "Succeeded")
            && s.requests_matching("GET", WEB).len() >= 3
    });
    assert_eq!(scale_patches(&r.server), 1);
    assert_eq!(step(&r.server, "settle"), None, "settle was running");
    assert!(!reported(&r.server));
    r.server.clear_requests();
    // The same pod restarts (same instance name): it resumes its run at once.
    let pass = r.second_life("heald-0");
    assert_eq!(pass.in_flight, 1, "{pass:?}");
    set_condition(&r.server, "Settled");
    wait_for("the outcome", Duration::from_secs(20), || {
        (r.outcomes().len() == 1).then_some(())
    });
    assert_eq!(scale_patches(&r.server), 0, "scale-up is not applied again");
    assert_eq!(marks(&r.server.requests()), ["done"]);
    let web = r.server.get(DEPLOY.0, DEPLOY.1, "shop", "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 3, "2 + 1, once");
    assert_eq!(r.outcomes(), ["succeeded"]);
    let st = step(&r.server, "settle").unwrap();
    assert_eq!(
        st["phase"], "Succeeded",
        "the wait is repeated: it changes nothing"
    );
    wait_for("the success silence", Duration::from_secs(10), || {
        (r.am.bodies("/api/v2/silences").len() == 2).then_some(())
    });
    // Later passes and other replicas find nothing left to report.
    let again = r
        .second
        .block_on(tracking::pass(&r.h2.as_ref().unwrap().state))
        .unwrap();
    assert_eq!((again.finished, again.in_flight), (0, 0));
    let events = r
        .server
        .requests_matching("POST", &format!("/api/v1/namespaces/{NS}/events"))
        .into_iter()
        .filter(|e| {
            e.body
                .as_ref()
                .is_some_and(|b| b["reason"] == "RemediationSucceeded")
        })
        .count();
    assert_eq!(events, 1);
    assert_eq!(
        r.am.bodies("/api/v2/silences").len(),
        2,
        "in progress, then success"
    );
}

#[test]
fn a_step_interrupted_by_a_restart_that_could_apply_twice_is_reported_instead_of_repeated() {
    let spec = format!(
        "  engine: local\n  steps:\n    - name: scale-up\n      action: scale\n      \
         replicas: \"+1\"\n{}",
        mark("done", &["scale-up"]),
    );
    let mut r = Restart::new(&spec);
    // The scale PATCH (of the Deployment: the scale is relative) hangs: heald #1 stops
    // while it is in flight.
    r.server.inject(
        Fault::on("PATCH", "/deployments/web")
            .delay(Duration::from_secs(1))
            .always(),
    );
    r.first_life("heald-0", |s| s.requests_matching("GET", WEB).len() == 1);
    // Let the server finish the delayed request, whatever it makes of it.
    std::thread::sleep(Duration::from_millis(1500));
    r.server.clear_faults();
    r.server.clear_requests();
    r.second_life("heald-0");
    wait_for("the outcome", Duration::from_secs(20), || {
        (r.outcomes().len() == 1).then_some(())
    });
    assert_eq!(r.outcomes(), ["failed"]);
    assert_eq!(
        r.server.requests_matching("PATCH", WEB).len(),
        0,
        "a relative scale is not sent again:\n{}",
        r.server.log_text()
    );
    assert!(
        marks(&r.server.requests()).is_empty(),
        "its dependant did not run"
    );
    let st = step(&r.server, "scale-up").unwrap();
    assert!(
        st["message"].as_str().unwrap().starts_with("interrupted"),
        "{st}"
    );
    let notes = wait_for("the escalation", Duration::from_secs(20), || {
        Some(r.am.bodies("/notify")).filter(|n| !n.is_empty())
    });
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["steps"]["done"]["phase"], "Skipped");
}

#[test]
fn a_resumed_run_past_its_deadline_times_out_without_starting_anything() {
    let spec = format!(
        "  engine: local\n  steps:\n{}{}",
        wait_step("settle", "Settled", &[]),
        mark("done", &["settle"]),
    );
    let mut r = Restart::new(&spec);
    r.first_life("heald-0", |s| s.requests_matching("GET", WEB).len() >= 2);
    r.server.modify(CM.0, CM.1, NS, &run(), |cm| {
        cm["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    });
    r.server.clear_requests();
    r.second_life("heald-0");
    wait_for("the outcome", Duration::from_secs(20), || {
        (r.outcomes().len() == 1).then_some(())
    });
    assert_eq!(r.outcomes(), ["timed-out"]);
    assert!(
        r.server.requests_matching("GET", WEB).is_empty(),
        "nothing runs after the deadline"
    );
    let settle = step(&r.server, "settle").unwrap();
    assert_eq!(settle["timedOut"], true);
    assert!(
        settle["message"].as_str().unwrap().contains("deadline"),
        "{settle}"
    );
    assert_eq!(step(&r.server, "done").unwrap()["phase"], "Skipped");
    // The outcome is recorded first; the escalation follows.
    let notes = wait_for("the escalation", Duration::from_secs(20), || {
        Some(r.am.bodies("/notify")).filter(|n| !n.is_empty())
    });
    assert_eq!(notes[0]["outcome"], "timed-out");
    assert_eq!(
        state(&r.server)["metadata"]["labels"]["heal.dev/outcome"],
        "timed-out"
    );
}

#[test]
fn another_replica_takes_a_run_over_only_once_its_heartbeat_is_stale() {
    let spec = format!(
        "  engine: local\n  steps:\n{}{}",
        wait_step("settle", "Settled", &[]),
        mark("done", &["settle"]),
    );
    let mut r = Restart::new(&spec);
    r.first_life("heald-0", |s| s.requests_matching("GET", WEB).len() >= 2);
    // heald-1 is another pod: heald-0's heartbeat is fresh, so it may still be running.
    let pass = r.second_life("heald-1");
    assert_eq!(pass.in_flight, 1);
    let holder = |s: &ApiServer| state(s)["metadata"]["annotations"]["heal.dev/holder"].clone();
    assert!(holder(&r.server).as_str().unwrap().starts_with("heald-0/"));
    r.server.modify(CM.0, CM.1, NS, &run(), |cm| {
        cm["metadata"]["annotations"]["heal.dev/heartbeat"] = json!("2026-01-01T00:00:00Z");
    });
    let h2 = r.h2.take().unwrap();
    let pass = r.second.block_on(tracking::pass(&h2.state)).unwrap();
    assert_eq!(pass.in_flight, 1);
    assert!(holder(&r.server).as_str().unwrap().starts_with("heald-1/"));
    r.h2 = Some(h2);
    set_condition(&r.server, "Settled");
    wait_for("the outcome", Duration::from_secs(20), || {
        (r.outcomes().len() == 1).then_some(())
    });
    assert_eq!(r.outcomes(), ["succeeded"]);
}

// ----- fallback -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_argo_crds_a_policy_with_fallback_runs_on_the_local_engine() {
    let server = server();
    let spec = format!(
        "  engine: argo\n  fallback: local\n  steps:\n{}",
        mark("a", &[])
    );
    let f = Files::new(&policy("http://127.0.0.1:9/notify", &spec));
    let h = Heald::start(&server, &f, &[]).await;
    let d = h.decide(&webhook(&[alert()])).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    assert_eq!(d[0]["engine"], "local");
    let reason = d[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("fallback") && reason.contains("not installed"),
        "{reason}"
    );
    let create = server.assert_requested(
        "POST",
        &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows"),
    );
    assert_eq!(create.status, 404, "Argo was tried first");
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    assert_eq!(marks(&server.requests()), ["a"]);
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_argo_engine_refuses_falls_back_to_the_local_engine_too() {
    heal_testkit::require_reference!();
    let server = server();
    server.register_argo_workflows();
    server.inject(Fault::on("POST", "/workflows").invalid(
        "argoproj.io",
        "Workflow",
        "x",
        "spec.templates",
        "refused by a test webhook",
    ));
    let spec = format!(
        "  engine: argo\n  fallback: local\n  steps:\n{}",
        mark("a", &[])
    );
    let f = Files::new(&policy("http://127.0.0.1:9/notify", &spec));
    let h = Heald::start(&server, &f, &[]).await;
    let d = h.decide(&webhook(&[alert()])).await;
    assert_eq!(d[0]["engine"], "local", "{d:?}");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("refused"),
        "{d:?}"
    );
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    assert!(
        server
            .names("argoproj.io/v1alpha1", "workflows", NS)
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_argo_crds_a_policy_without_fallback_escalates_and_leaves_the_target_free() {
    let server = server();
    let am = Receiver::start().await;
    let spec = format!("  engine: argo\n  steps:\n{}", mark("a", &[]));
    let f = Files::new(&policy(&format!("{}/notify", am.url), &spec));
    let h = Heald::start(&server, &f, &[]).await;
    let d = h.decide(&webhook(&[alert()])).await;
    assert_eq!(d[0]["decision"], "error", "{d:?}");
    assert_eq!(d[0]["engine"], "argo");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("not installed"),
        "{d:?}"
    );
    let notes = eventually(&server, "the escalation", || {
        let n = am.bodies("/notify");
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(notes[0]["kind"], "RemediationFailed");
    assert_eq!(notes[0]["run"], json!(run()));
    let message = notes[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the run could not be started:") && message.contains("not installed"),
        "{message}"
    );
    assert!(server.names(CM.0, CM.1, NS).is_empty(), "no local run");
    assert!(marks(&server.requests()).is_empty(), "nothing was done");
    let lease = target_leases(&server).pop().unwrap();
    assert_eq!(lease["metadata"]["annotations"]["heal.dev/holders"], "[]");
}

// ----- cancellation -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_alert_cancels_a_local_run_which_finishes_its_running_step_and_starts_no_other()
{
    let server = server();
    let am = Receiver::start().await;
    let spec = format!(
        "  engine: local\n  onResolved: cancel\n  steps:\n{}{}",
        wait_step("settle", "Settled", &[]),
        mark("after", &["settle"]),
    );
    let f = Files::new(&policy(&format!("{}/notify", am.url), &spec));
    let h = Heald::start(&server, &f, &[]).await;
    let d = h.decide(&webhook(&[alert()])).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    eventually(&server, "the wait step to be waiting", || {
        (server.requests_matching("GET", WEB).len() >= 2).then_some(())
    })
    .await;
    // The resolved notification reaches another replica, which does not execute the run.
    let other = Heald::start(&server, &f, &[]).await;
    server.clear_requests();
    let d = other.decide(&webhook(&[resolved(alert())])).await;
    assert_eq!(d[0]["decision"], "resolved", "{d:?}");
    assert_eq!(d[0]["engine"], "local");
    let reason = d[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("cancelled run {}", run())) && reason.contains("no further step"),
        "{reason}"
    );
    let path = format!("/api/v1/namespaces/{NS}/configmaps/{}", run());
    let patch = server.assert_requested("PATCH", &path);
    let body = patch.body.unwrap();
    assert_eq!(
        body["metadata"]["annotations"]["heal.dev/cancelled"],
        json!(format!(
            "alert WebDown ({}) resolved before the run finished",
            alert()["fingerprint"].as_str().unwrap()
        ))
    );
    assert!(
        body["metadata"]["resourceVersion"].is_string(),
        "written under the run's resourceVersion: {body}"
    );
    assert!(body.get("data").is_none(), "{body}");

    // The running step finishes; the one after it never starts.
    set_condition(&server, "Settled");
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    assert!(
        marks(&server.requests()).is_empty(),
        "no step after the cancellation"
    );
    assert_eq!(step(&server, "settle").unwrap()["phase"], "Succeeded");
    let after = step(&server, "after").unwrap();
    assert_eq!(after["phase"], "Skipped", "{after}");
    assert!(
        after["message"].as_str().unwrap().contains("cancelled"),
        "{after}"
    );
    let cm = state(&server);
    assert_eq!(cm["metadata"]["labels"]["heal.dev/outcome"], "cancelled");
    let outcome: Value =
        serde_json::from_str(cm["data"]["outcome.json"].as_str().unwrap()).unwrap();
    assert_eq!(outcome["outcome"], "cancelled");
    assert!(
        am.bodies("/notify").is_empty(),
        "a cancellation is not escalated"
    );
    let web = server.get(DEPLOY.0, DEPLOY.1, "shop", "web").unwrap();
    assert!(
        web["metadata"]["annotations"]
            .get("heal.dev/step-after")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_cancelled_in_the_replica_executing_it_stops_retrying_at_once() {
    let server = server();
    // The scale subresource answers 503 until the test stops it: the step retries.
    server.inject(
        Fault::on("PATCH", "/deployments/web/scale")
            .always()
            .service_unavailable(),
    );
    let spec = format!(
        "{}{}",
        flaky_scale(5).replace("  steps:\n", "  onResolved: cancel\n  steps:\n"),
        mark("after", &["scale"]),
    );
    let f = Files::new(&policy("http://127.0.0.1:9/notify", &spec));
    let h = Heald::start(&server, &f, &["--local-retry-backoff", "30s"]).await;
    h.decide(&webhook(&[alert()])).await;
    eventually(&server, "the first attempt to fail", || {
        step(&server, "scale").filter(|s| s["phase"] == "Retrying")
    })
    .await;
    let started = Instant::now();
    let d = h.decide(&webhook(&[resolved(alert())])).await;
    assert_eq!(d[0]["decision"], "resolved", "{d:?}");
    eventually(&server, "the outcome", || reported(&server).then_some(())).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the backoff of 30s was cut short: {:?}",
        started.elapsed()
    );
    let scale = step(&server, "scale").unwrap();
    assert_eq!(scale["phase"], "Failed", "{scale}");
    assert!(
        scale["message"]
            .as_str()
            .unwrap()
            .contains("not retried: the run was cancelled"),
        "{scale}"
    );
    assert_eq!(step(&server, "after").unwrap()["phase"], "Skipped");
    assert_eq!(
        state(&server)["metadata"]["labels"]["heal.dev/outcome"],
        "cancelled"
    );
}

// ----- the seed remediation -----

/// `examples/policies/pod-not-ready.yaml` as shipped, escalating to a local webhook.
fn seed_policy(notifier: &str) -> String {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/policies/pod-not-ready.yaml"),
    )
    .expect("the seed example");
    assert!(shipped.contains("onFailure: {notify: [oncall-slack, incident-webhook]}"));
    format!(
        "{}---\napiVersion: heal.dev/v1alpha1\nkind: Notifier\nmetadata:\n  name: oncall\nspec:\n  type: webhook\n  url: {notifier}\n",
        shipped.replace(
            "onFailure: {notify: [oncall-slack, incident-webhook]}",
            "onFailure: {notify: [oncall]}"
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_scales_the_pods_deployment_to_4_then_deletes_that_pod_on_the_local_engine()
 {
    let server = ApiServer::start();
    server.with_state(|st| st.ensure_namespace(NS));
    let seeded = server.seed_deployment("shop", "checkout", 1, &[]);
    let pod = seeded.pods[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let uid = seeded.pods[0]["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let rs = seeded.replicaset["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let f = Files::new(&seed_policy("http://127.0.0.1:9/notify"));
    let h = Heald::start(&server, &f, &["--engine", "local"]).await;
    let a = crate::heald_support::alert(
        "KubePodNotReady",
        &[("namespace", "shop"), ("pod", &pod), ("uid", &uid)],
        "2026-08-20T10:15:00Z",
    );
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    assert_eq!(d[0]["engine"], "local");
    let run = run_name("pod-not-ready-scale-and-replace", &a);
    eventually(&server, "the outcome", || {
        server
            .get(CM.0, CM.1, NS, &run)
            .filter(|cm| cm["metadata"]["labels"]["heal.dev/reported"] == "true")
    })
    .await;

    let deploy = server.get(DEPLOY.0, DEPLOY.1, "shop", "checkout").unwrap();
    assert_eq!(deploy["spec"]["replicas"], 4);
    // The requests about the workload and the pod, in order: heald finds the owner (pod,
    // then its ReplicaSet) when it decides; the scale step finds it again, checks it is
    // the same, and scales the Deployment; then the pod is deleted, by UID, with 30 s.
    let pod_path = format!("/api/v1/namespaces/shop/pods/{pod}");
    let rs_path = format!("/apis/apps/v1/namespaces/shop/replicasets/{rs}");
    let deploy_path = "/apis/apps/v1/namespaces/shop/deployments/checkout";
    let about: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| {
            r.path.starts_with("/api/v1/namespaces/shop/pods")
                || r.path.contains("/namespaces/shop/replicasets")
                || r.path.starts_with(deploy_path)
                || r.path.contains("horizontalpodautoscalers")
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        about,
        [
            format!("GET {pod_path}"),
            format!("GET {rs_path}"),
            format!("GET {pod_path}"),
            format!("GET {rs_path}"),
            format!("GET {deploy_path}"),
            "GET /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers".to_string(),
            format!("PATCH {deploy_path}/scale"),
            format!("GET {pod_path}"),
            format!("DELETE {pod_path}"),
        ],
        "{}",
        server.log_text()
    );
    let scale = server.assert_requested("PATCH", &format!("{deploy_path}/scale"));
    assert_eq!(scale.body, Some(json!({"spec": {"replicas": 4}})));
    let delete = server.assert_requested("DELETE", &pod_path);
    assert_eq!(
        delete.body,
        Some(json!({
            "apiVersion": "v1", "kind": "DeleteOptions",
            "gracePeriodSeconds": 30,
            "preconditions": {"uid": uid},
            "propagationPolicy": "Background",
        })),
        "{delete:?}"
    );
    // The hold covered the Deployment, not the pod: an alert for the Deployment's other
    // pod meanwhile is held off by the same Lease.
    let lease = target_leases(&server).pop().unwrap();
    assert_eq!(
        lease["metadata"]["annotations"]["heal.dev/target"], "deployment/shop/checkout",
        "{lease}"
    );
    let scale_result = {
        let cm = server.get(CM.0, CM.1, NS, &run).unwrap();
        let st: Value =
            serde_json::from_str(cm["data"]["step.scale-owner"].as_str().unwrap()).unwrap();
        st["result"].clone()
    };
    assert_eq!(scale_result["target"]["kind"], "Deployment");
    assert_eq!(scale_result["addressed"]["kind"], "Pod");
    assert_eq!(scale_result["addressed"]["name"], json!(pod));
}
