//! heald's notifiers against local stand-ins for their vendors: the exact request each
//! vendor documents (PagerDuty Events API v2, Opsgenie Alert API, a Microsoft Teams
//! Adaptive Card), retries after 500 and 429, the secret only where the vendor wants it
//! (PagerDuty's `routing_key`, Opsgenie's `Authorization: GenieKey`, Teams' URL) and never
//! in heald's log, the resolve or close when a later run of the same alert episode
//! succeeds, and stand-down notices (circuit open, rate limited, a run that could not be
//! started) sent once per window.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::heald_support::*;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use heal::heald::tracking;
use heal_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");

/// PagerDuty's routing key, Opsgenie's API key and the secret part of a Teams URL.
const PD_KEY: &str = "pdkey-R7c2Q9-5ecret-routing-key-must-not-leak";
const OG_KEY: &str = "ogkey-M4w8Z1-5ecret-api-key-must-not-leak";
const TEAMS_SECRET: &str = "teams-X3v6B0-5ecret-webhook-path-must-not-leak";

// ----- a vendor stand-in -----

/// One request a [`Vendor`] got.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    path: String,
    /// Headers, names in lower case.
    headers: BTreeMap<String, String>,
    /// The body as sent.
    raw: String,
    /// The body as JSON.
    body: Value,
}

/// An answer: status, body, extra headers.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: String,
    headers: Vec<(&'static str, &'static str)>,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        headers: Vec::new(),
    }
}

/// An HTTP server standing in for PagerDuty, Opsgenie or Teams: records every request
/// and answers from its script, then with its default.
struct Vendor {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Vendor {
    async fn start(default: Answer) -> Vendor {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<Answer>>> = Arc::default();
        let (s, q) = (seen.clone(), script.clone());
        let app = Router::new().fallback(move |req: Request<Body>| {
            let (s, q, default) = (s.clone(), q.clone(), default.clone());
            async move {
                let method = req.method().to_string();
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            v.to_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                let raw = String::from_utf8_lossy(&bytes).into_owned();
                let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
                s.lock().unwrap().push(Seen {
                    method,
                    path,
                    headers,
                    raw,
                    body,
                });
                let a = q.lock().unwrap().pop_front().unwrap_or(default);
                let mut resp = axum::response::Response::builder()
                    .status(StatusCode::from_u16(a.status).unwrap())
                    .header("content-type", "application/json");
                for (k, v) in &a.headers {
                    resp = resp.header(*k, *v);
                }
                resp.body(Body::from(a.body)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Vendor { url, seen, script }
    }

    /// PagerDuty's answer to an accepted event.
    async fn pagerduty() -> Vendor {
        Vendor::start(answer(
            202,
            r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
        ))
        .await
    }

    /// Opsgenie's answer to an accepted request.
    async fn opsgenie() -> Vendor {
        Vendor::start(answer(
            202,
            r#"{"result":"Request will be processed","took":0.1,"requestId":"43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}"#,
        ))
        .await
    }

    /// A classic Teams incoming webhook's answer: 200 `1`.
    async fn teams() -> Vendor {
        Vendor::start(answer(200, "1")).await
    }

    fn then(&self, a: Answer) {
        self.script.lock().unwrap().push_back(a);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

// ----- policies -----

/// `restart-web` on Argo (failure budget: 2 in `window`) escalating to `notify`, then the
/// `notifiers` documents.
fn policies(notify: &[&str], window: &str, notifiers: &str) -> String {
    format!(
        r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: restart-web
spec:
  match:
    alertname: WebDown
  target:
    kind: deployment
    namespace: "{{{{ labels.namespace }}}}"
    name: "{{{{ labels.deployment }}}}"
  engine: argo
  timeout: 10m
  guards:
    failureBudget: {{failures: 2, window: {window}}}
  steps:
    - name: restart
      action: restart
  onFailure: {{notify: [{notify}]}}
{notifiers}"#,
        notify = notify.join(", ")
    )
}

fn notifier(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: heal.dev/v1alpha1\nkind: Notifier\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

fn webhook_notifier(url: &str) -> String {
    notifier("hook", &format!("  type: webhook\n  url: {url}/hook\n"))
}

fn key_file(dir: &Path, name: &str, key: &str) -> String {
    let path = dir.join(name);
    // With a trailing newline, as a mounted Secret often has it.
    std::fs::write(&path, format!("{key}\n")).unwrap();
    path.display().to_string()
}

fn server() -> ApiServer {
    let s = ApiServer::start();
    s.with_state(|st| st.ensure_namespace(NS));
    s
}

fn argo_server() -> ApiServer {
    let s = server();
    s.register_argo_workflows();
    s
}

fn fail_run(server: &ApiServer, run: &str) {
    server.modify(WF.0, WF.1, NS, run, |o| {
        o["status"] = json!({"phase": "Failed", "message": "child 'restart' failed", "nodes": {
            "n1": {"displayName": "restart", "type": "Pod", "outputs": {"parameters": [
                {"name": "result", "value": "{\"outcome\":\"failed\",\"message\":\"forbidden\"}"}]}}}});
    });
}

fn succeed_run(server: &ApiServer, run: &str) {
    server.modify(WF.0, WF.1, NS, run, |o| {
        o["status"] = json!({"phase": "Succeeded"});
    });
}

/// Poll `f` every 20 ms for up to 20 s.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PagerDuty trigger without its timestamp, which must be a recent RFC 3339 time.
fn without_timestamp(mut event: Value) -> Value {
    let ts = event["payload"]["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no payload.timestamp: {event}"));
    let t: jiff::Timestamp = ts.parse().unwrap();
    assert!(
        (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1)) < t,
        "{ts}"
    );
    event["payload"]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    event
}

/// `secret` appears in the request exactly once, at `place`, nowhere else.
fn secret_only_in(s: &Seen, secret: &str, place: &str) {
    let in_body = s.raw.matches(secret).count();
    let in_path = s.path.matches(secret).count();
    let in_headers: usize = s.headers.values().map(|v| v.matches(secret).count()).sum();
    let want = match place {
        "body" => (1, 0, 0),
        "path" => (0, 1, 0),
        "header" => (0, 0, 1),
        _ => unreachable!(),
    };
    assert_eq!(
        (in_body, in_path, in_headers),
        want,
        "the secret must be only in the {place}: {s:?}"
    );
}

fn delivered(h: &Heald, kind: &str, result: &str) -> f64 {
    metric_sum(
        &h.state.metrics.encode(),
        "heald_deliveries_total",
        &format!("kind=\"{kind}\",result=\"{result}\""),
    )
}

// ----- PagerDuty -----

#[tokio::test]
async fn pagerduty_gets_a_documented_trigger_for_a_failed_run_retried_after_500_and_429() {
    heal_testkit::require_reference!();
    let server = argo_server();
    let am = Receiver::start().await;
    let pd = Vendor::pagerduty().await;
    pd.then(answer(500, r#"{"status":"error"}"#));
    pd.then(Answer {
        headers: vec![("retry-after", "0")],
        ..answer(429, r#"{"status":"throttled"}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "routing-key", PD_KEY);
    let f = Files::new(&policies(
        &["hook", "pager"],
        "1h",
        &format!(
            "{}{}",
            webhook_notifier(&am.url),
            notifier(
                "pager",
                &format!(
                    "  type: pagerduty\n  url: {}/v2/enqueue\n  routingKeyFile: {key}\n",
                    pd.url
                )
            )
        ),
    ));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    let correlation_id = d[0]["correlationId"].as_str().unwrap().to_string();
    fail_run(&server, &run_name("restart-web", &a));
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);

    let seen = pd.seen();
    assert_eq!(seen.len(), 3, "500 and 429 are retried: {seen:?}");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/v2/enqueue");
        assert_eq!(s.headers["content-type"], "application/json");
        assert!(!s.headers.contains_key("authorization"), "{s:?}");
        secret_only_in(s, PD_KEY, "body");
        assert_eq!(s.body, seen[0].body, "every attempt sends the same event");
    }
    let document = am.bodies("/hook").remove(0);
    assert_eq!(document["kind"], "RemediationFailed");
    assert_eq!(document["target"], "shop/deployment/web");
    let link = document["link"].as_str().unwrap().to_string();
    assert_eq!(
        without_timestamp(seen[0].body.clone()),
        json!({
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": correlation_id,
            "payload": {
                "summary": "heal could not fix WebDown on shop/deployment/web (restart-web): run failed",
                "source": "shop/deployment/web",
                "severity": "error",
                "class": "RemediationFailed",
                "custom_details": document,
            },
            "client": "heald",
            "client_url": link,
            "links": [{"href": link, "text": "The alert in Alertmanager"}],
        })
    );
    assert_eq!(delivered(&h, "pagerduty", "ok"), 1.0);
}

#[tokio::test]
async fn pagerduty_resolves_the_episode_when_a_later_run_of_it_succeeds() {
    heal_testkit::require_reference!();
    // No Argo at first: the run cannot be started, PagerDuty is triggered.
    let server = server();
    let pd = Vendor::pagerduty().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "routing-key", PD_KEY);
    let f = Files::new(&policies(
        &["pager"],
        "1h",
        &notifier(
            "pager",
            &format!(
                "  type: pagerduty\n  url: {}/v2/enqueue\n  routingKeyFile: {key}\n  severity: critical\n",
                pd.url
            ),
        ),
    ));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(d[0]["decision"], "error", "{d:?}");
    let correlation_id = d[0]["correlationId"].as_str().unwrap().to_string();
    let trigger = eventually("the trigger", || pd.seen().pop()).await;
    assert_eq!(trigger.body["event_action"], "trigger");
    assert_eq!(trigger.body["dedup_key"], json!(correlation_id));
    assert_eq!(trigger.body["payload"]["severity"], "critical");
    assert!(
        trigger.body["payload"]["custom_details"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the run could not be started:"),
        "{}",
        trigger.body
    );

    // Argo is installed; Alertmanager's next notification brings the same episode again.
    server.register_argo_workflows();
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    assert_eq!(d[0]["correlationId"], json!(correlation_id));
    succeed_run(&server, &run_name("restart-web", &a));
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let seen = pd.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let resolve = &seen[1];
    assert_eq!(resolve.path, "/v2/enqueue");
    assert_eq!(resolve.headers["content-type"], "application/json");
    assert_eq!(
        resolve.body,
        json!({"routing_key": PD_KEY, "dedup_key": correlation_id, "event_action": "resolve"}),
        "exactly PagerDuty's documented resolve"
    );
    secret_only_in(resolve, PD_KEY, "body");
}

#[tokio::test]
async fn pagerduty_with_send_resolved_false_is_not_told_of_successes() {
    heal_testkit::require_reference!();
    let server = argo_server();
    let pd = Vendor::pagerduty().await;
    let f = Files::new(&policies(
        &["pager"],
        "1h",
        &notifier(
            "pager",
            &format!(
                "  type: pagerduty\n  url: {}/v2/enqueue\n  routingKeyEnv: HEAL_TEST_UNSET_KEY\n  sendResolved: false\n",
                pd.url
            ),
        ),
    ));
    let h = Heald::start(&server, &f, &[]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&a))).await;
    succeed_run(&server, &run_name("restart-web", &a));
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    assert!(pd.seen().is_empty());
    assert_eq!(delivered(&h, "pagerduty", "error"), 0.0);
}

// ----- Opsgenie -----

#[tokio::test]
async fn opsgenie_gets_a_documented_alert_with_its_genie_key_and_a_close_by_alias() {
    heal_testkit::require_reference!();
    let server = argo_server();
    let am = Receiver::start().await;
    let og = Vendor::opsgenie().await;
    og.then(Answer {
        headers: vec![("retry-after", "0")],
        ..answer(
            429,
            r#"{"message":"You are making too many requests!","took":0.0,"requestId":"r"}"#,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "api-key", OG_KEY);
    let f = Files::new(&policies(
        &["hook", "genie"],
        "1h",
        &format!(
            "{}{}",
            webhook_notifier(&am.url),
            notifier(
                "genie",
                &format!(
                    "  type: opsgenie\n  url: {}\n  apiKeyFile: {key}\n  priority: P2\n  \
                     responders: [{{type: team, name: platform-oncall}}, {{type: user, username: ana@example.com}}]\n  \
                     tags: [shop]\n",
                    og.url,
                )
            )
        ),
    ));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;

    // A failure creates an alert.
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    let correlation_id = d[0]["correlationId"].as_str().unwrap().to_string();
    let run = run_name("restart-web", &a);
    fail_run(&server, &run);
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let seen = og.seen();
    assert_eq!(seen.len(), 2, "the 429 is retried: {seen:?}");
    let create = &seen[1];
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, "/v2/alerts");
    assert_eq!(create.headers["content-type"], "application/json");
    assert_eq!(
        create.headers["authorization"],
        format!("GenieKey {OG_KEY}")
    );
    secret_only_in(create, OG_KEY, "header");
    let document = am.bodies("/hook").remove(0);
    let link = document["link"].as_str().unwrap();
    let fingerprint = a["fingerprint"].as_str().unwrap();
    let text = format!(
        ":rotating_light: heal could not fix WebDown (restart-web): run {NS}/{run} on argo failed: \
         child 'restart' failed\n• restart: failed forbidden\ncorrelation id {correlation_id}\n{link}"
    );
    assert_eq!(
        create.body,
        json!({
            "message": "heal could not fix WebDown on shop/deployment/web (restart-web): run failed",
            "alias": correlation_id,
            "description": text,
            "responders": [
                {"type": "team", "name": "platform-oncall"},
                {"type": "user", "username": "ana@example.com"},
            ],
            "tags": ["heal", "remediation-failed", "shop"],
            "details": {
                "policy": "restart-web",
                "alertname": "WebDown",
                "fingerprint": fingerprint,
                "target": "shop/deployment/web",
                "run": format!("{NS}/{run}"),
                "engine": "argo",
                "outcome": "failed",
                "message": "child 'restart' failed",
                "correlationId": correlation_id,
                "link": link,
                "step.restart": "failed: forbidden",
                "label.alertname": "WebDown",
                "label.deployment": "web",
                "label.namespace": "shop",
            },
            "entity": "shop/deployment/web",
            "source": "heald",
            "priority": "P2",
        })
    );

    // A success closes the alert of its episode by alias.
    let b = web_down("api", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&b))).await;
    let b_id = d[0]["correlationId"].as_str().unwrap().to_string();
    let b_run = run_name("restart-web", &b);
    succeed_run(&server, &b_run);
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let close = og.seen().pop().unwrap();
    assert_eq!(close.method, "POST");
    assert_eq!(
        close.path,
        format!("/v2/alerts/{b_id}/close?identifierType=alias")
    );
    assert_eq!(close.headers["authorization"], format!("GenieKey {OG_KEY}"));
    secret_only_in(&close, OG_KEY, "header");
    assert_eq!(
        close.body,
        json!({
            "source": "heald",
            "user": "heald",
            "note": format!(
                "heal run {NS}/{b_run} (argo) succeeded; policy restart-web; correlation id {b_id}"
            ),
        })
    );
    assert_eq!(delivered(&h, "opsgenie", "ok"), 2.0);
}

// ----- Microsoft Teams -----

#[tokio::test]
async fn teams_gets_an_adaptive_card_at_its_secret_url_retried_when_throttled() {
    heal_testkit::require_reference!();
    let server = argo_server();
    let am = Receiver::start().await;
    let teams = Vendor::teams().await;
    // A classic incoming webhook answers a throttled post 200, saying so in the body.
    teams.then(answer(
        200,
        "Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0,server=x",
    ));
    let dir = tempfile::tempdir().unwrap();
    let url_file = key_file(
        dir.path(),
        "teams-url",
        &format!("{}/webhookb2/{TEAMS_SECRET}/IncomingWebhook/abc", teams.url),
    );
    let f = Files::new(&policies(
        &["hook", "channel"],
        "1h",
        &format!(
            "{}{}",
            webhook_notifier(&am.url),
            notifier(
                "channel",
                &format!("  type: teams\n  urlFile: {url_file}\n")
            )
        ),
    ));
    let h = Heald::start(&server, &f, &["--alertmanager-url", &am.url]).await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    let correlation_id = d[0]["correlationId"].as_str().unwrap().to_string();
    let run = run_name("restart-web", &a);
    fail_run(&server, &run);
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    let seen = teams.seen();
    assert_eq!(seen.len(), 2, "the throttled post is retried: {seen:?}");
    let post = &seen[1];
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.path,
        format!("/webhookb2/{TEAMS_SECRET}/IncomingWebhook/abc")
    );
    assert_eq!(post.headers["content-type"], "application/json");
    secret_only_in(post, TEAMS_SECRET, "path");
    let link = am.bodies("/hook").remove(0)["link"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post.body,
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": [
                        {"type": "TextBlock", "size": "Medium", "weight": "Bolder",
                         "color": "Attention", "wrap": true,
                         "text": "heal could not fix WebDown on shop/deployment/web (restart-web): run failed"},
                        {"type": "TextBlock", "wrap": true,
                         "text": "child 'restart' failed\n\n- restart: failed forbidden"},
                        {"type": "FactSet", "facts": [
                            {"title": "Policy", "value": "restart-web"},
                            {"title": "Target", "value": "shop/deployment/web"},
                            {"title": "Run", "value": format!("{NS}/{run}")},
                            {"title": "Engine", "value": "argo"},
                            {"title": "Outcome", "value": "failed"},
                            {"title": "Correlation id", "value": correlation_id},
                        ]},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Open in Alertmanager", "url": link}],
                },
            }],
        })
    );
    // Teams keeps no alert to close: a success is not posted.
    let b = web_down("api", "2026-08-20T10:00:00Z");
    h.decide(&webhook(std::slice::from_ref(&b))).await;
    succeed_run(&server, &run_name("restart-web", &b));
    assert_eq!(tracking::pass(&h.state).await.unwrap().finished, 1);
    assert_eq!(teams.seen().len(), 2);
    assert_eq!(delivered(&h, "teams", "ok"), 1.0);
}

// ----- standing down -----

/// The Lease of `restart-web` on `shop/deployment/NAME` with two failures minutes ago.
fn failed_twice(name: &str) -> Value {
    let target = heal::plan::PlanTarget {
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: name.into(),
    };
    let ago = |m: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(m)).to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": heal::heald::guards::lease::lease_name("restart-web", &target),
            "namespace": NS,
            "annotations": {
                "heal.dev/policy": "restart-web",
                "heal.dev/target": format!("deployment/shop/{name}"),
                "heal.dev/holders": "[]",
                "heal.dev/failures": format!("{},{}", ago(20), ago(10)),
            },
        },
        "spec": {},
    })
}

#[tokio::test]
async fn an_open_circuit_is_told_once_per_target_within_the_failure_budgets_window() {
    let server = server();
    server.insert(failed_twice("web"));
    server.insert(failed_twice("api"));
    let hook = Receiver::start().await;
    let pd = Vendor::pagerduty().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "routing-key", PD_KEY);
    let f = Files::new(&policies(
        &["hook", "pager"],
        "2h",
        &format!(
            "{}{}",
            webhook_notifier(&hook.url),
            notifier(
                "pager",
                &format!(
                    "  type: pagerduty\n  url: {}/v2/enqueue\n  routingKeyFile: {key}\n",
                    pd.url
                )
            )
        ),
    ));
    let h = Heald::start(&server, &f, &[]).await;
    let first = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&first))).await;
    assert_eq!(d[0]["decision"], "circuit-open", "{d:?}");
    let reason = d[0]["reason"].as_str().unwrap().to_string();
    let correlation_id = d[0]["correlationId"].as_str().unwrap().to_string();
    let notice = eventually("the notice", || hook.bodies("/hook").pop()).await;
    assert_eq!(
        notice,
        json!({
            "apiVersion": "heal.dev/v1alpha1",
            "kind": "RemediationStoodDown",
            "policy": "restart-web",
            "alertname": "WebDown",
            "fingerprint": first["fingerprint"],
            "labels": first["labels"],
            "decision": "circuit-open",
            "reason": reason,
            "target": "shop/deployment/web",
            "run": run_name("restart-web", &first),
            "correlationId": correlation_id,
            "quietFor": "2h",
            "link": null,
        })
    );
    let trigger = eventually("the trigger", || pd.seen().pop()).await;
    assert_eq!(
        without_timestamp(trigger.body),
        json!({
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": correlation_id,
            "payload": {
                "summary": "heal stood down on WebDown for shop/deployment/web (restart-web): circuit-open",
                "source": "shop/deployment/web",
                "severity": "warning",
                "class": "RemediationStoodDown",
                "custom_details": notice,
            },
            "client": "heald",
        })
    );

    // The same target again, another episode: nobody is told. Another target: told.
    let again = web_down("web", "2026-08-20T10:30:00Z");
    let d = h.decide(&webhook(&[again])).await;
    assert_eq!(d[0]["decision"], "circuit-open", "{d:?}");
    let other = web_down("api", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(&[other])).await;
    assert_eq!(d[0]["decision"], "circuit-open", "{d:?}");
    let notes = eventually("the second target's notice", || {
        Some(hook.bodies("/hook")).filter(|n| n.len() >= 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes_after = hook.bodies("/hook");
    assert_eq!(notes_after.len(), 2, "{notes_after:?}");
    assert_eq!(notes[1]["target"], "shop/deployment/api");
    assert_eq!(pd.seen().len(), 2);
}

#[tokio::test]
async fn a_rate_limit_is_told_once_per_namespace_bucket_within_ten_minutes() {
    heal_testkit::require_reference!();
    let server = argo_server();
    let hook = Receiver::start().await;
    let f = Files::new(&policies(&["hook"], "1h", &webhook_notifier(&hook.url)));
    let h = Heald::start(
        &server,
        &f,
        &[
            "--namespace-submit-burst",
            "1",
            "--namespace-submit-rate",
            "0.0001",
        ],
    )
    .await;
    let in_ns = |ns: &str, name: &str| {
        alert(
            "WebDown",
            &[("namespace", ns), ("deployment", name)],
            "2026-08-20T10:00:00Z",
        )
    };
    let mut decisions = Vec::new();
    for (ns, name) in [
        ("shop", "web"),
        ("shop", "api"),
        ("shop", "db"),
        ("pay", "web"),
        ("pay", "api"),
    ] {
        let d = h.decide(&webhook(&[in_ns(ns, name)])).await;
        decisions.push(d[0]["decision"].as_str().unwrap().to_string());
    }
    assert_eq!(
        decisions,
        [
            "submitted",
            "rate-limited",
            "rate-limited",
            "submitted",
            "rate-limited"
        ]
    );
    let notes = eventually("a notice per namespace", || {
        Some(hook.bodies("/hook")).filter(|n| n.len() >= 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.bodies("/hook").len(), 2);
    let mut targets: Vec<&str> = notes
        .iter()
        .map(|n| n["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["pay/deployment/api", "shop/deployment/api"]);
    for n in &notes {
        assert_eq!(n["kind"], "RemediationStoodDown");
        assert_eq!(n["decision"], "rate-limited");
        assert_eq!(n["quietFor"], "10m");
        assert!(n["reason"].as_str().unwrap().contains("rate limit"), "{n}");
    }
}

#[tokio::test]
async fn a_blast_radius_is_told_once_per_policy_within_ten_minutes() {
    heal_testkit::require_reference!();
    let server = argo_server();
    let hook = Receiver::start().await;
    let f = Files::new(
        &policies(&["hook"], "1h", &webhook_notifier(&hook.url))
            .replace("  guards:\n", "  guards:\n    maxInFlight: 1\n"),
    );
    let h = Heald::start(&server, &f, &[]).await;
    let mut decisions = Vec::new();
    for name in ["web", "api", "db"] {
        let d = h
            .decide(&webhook(&[web_down(name, "2026-08-20T10:00:00Z")]))
            .await;
        decisions.push(d[0]["decision"].as_str().unwrap().to_string());
    }
    assert_eq!(decisions, ["submitted", "blast-radius", "blast-radius"]);
    let notice = eventually("the notice", || hook.bodies("/hook").pop()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hook.bodies("/hook").len(),
        1,
        "one per policy, whatever the target"
    );
    assert_eq!(notice["kind"], "RemediationStoodDown");
    assert_eq!(notice["decision"], "blast-radius");
    assert_eq!(notice["target"], "shop/deployment/api");
    assert_eq!(notice["quietFor"], "10m");
}

#[tokio::test]
async fn a_run_that_could_not_start_is_told_once_per_target_within_ten_minutes() {
    // No Argo: every run is refused as not installed.
    let server = server();
    let hook = Receiver::start().await;
    let f = Files::new(&policies(&["hook"], "1h", &webhook_notifier(&hook.url)));
    let h = Heald::start(&server, &f, &[]).await;
    let d = h
        .decide(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
        .await;
    assert_eq!(d[0]["decision"], "error", "{d:?}");
    let first = eventually("the escalation", || hook.bodies("/hook").pop()).await;
    assert_eq!(first["kind"], "RemediationFailed");
    assert_eq!(first["target"], "shop/deployment/web");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("the run could not be started:"),
        "{first}"
    );
    for a in [
        web_down("web", "2026-08-20T10:30:00Z"),
        web_down("api", "2026-08-20T10:00:00Z"),
    ] {
        let d = h.decide(&webhook(&[a])).await;
        assert_eq!(d[0]["decision"], "error", "{d:?}");
    }
    let notes = eventually("the other target's escalation", || {
        Some(hook.bodies("/hook")).filter(|n| n.len() >= 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.bodies("/hook").len(), 2, "{notes:?}");
    assert_eq!(notes[1]["target"], "shop/deployment/api");
}

// ----- secrets in heald's log -----

fn assert_not_in(what: &str, text: &str, secret: &str) {
    for fragment in [secret, &secret[..13]] {
        assert!(
            !text.contains(fragment),
            "{what} contains the secret {fragment:?}:\n{text}"
        );
    }
}

#[test]
fn the_heald_binary_sends_each_key_where_its_vendor_wants_it_and_never_logs_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Every vendor fails, echoing the secret it got, so heald retries and logs errors.
    let pd = rt.block_on(Vendor::start(answer(
        500,
        &format!(r#"{{"status":"error","message":"routing key {PD_KEY} is broken"}}"#),
    )));
    let og = rt.block_on(Vendor::start(answer(
        503,
        &format!(r#"{{"message":"GenieKey {OG_KEY} unavailable"}}"#),
    )));
    let teams = rt.block_on(Vendor::start(answer(
        500,
        &format!("webhook /webhookb2/{TEAMS_SECRET} failed"),
    )));
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let pd_key = key_file(dir.path(), "routing-key", PD_KEY);
    let teams_url = key_file(
        dir.path(),
        "teams-url",
        &format!("{}/webhookb2/{TEAMS_SECRET}", teams.url),
    );
    let f = Files::new(&policies(
        &["pager", "genie", "channel", "nowhere"],
        "1h",
        &[
            notifier(
                "pager",
                &format!(
                    "  type: pagerduty\n  url: {}/v2/enqueue\n  routingKeyFile: {pd_key}\n",
                    pd.url
                ),
            ),
            notifier(
                "genie",
                &format!(
                    "  type: opsgenie\n  url: {}\n  apiKeyEnv: HEAL_TEST_OPSGENIE_KEY\n",
                    og.url
                ),
            ),
            notifier(
                "channel",
                &format!("  type: teams\n  urlFile: {teams_url}\n"),
            ),
            // Nothing listens there: a transport error, whose message names the URL.
            notifier("nowhere", "  type: teams\n  urlEnv: HEAL_TEST_TEAMS_URL\n"),
        ]
        .concat(),
    ));
    let closed = format!("http://127.0.0.1:9/webhookb2/{TEAMS_SECRET}");
    let p = Proc::start_with_env(
        &server,
        &f,
        free_port(),
        &[],
        &[
            ("HEALD_LOG", "trace"),
            ("HEAL_TEST_OPSGENIE_KEY", OG_KEY),
            ("HEAL_TEST_TEAMS_URL", &closed),
        ],
    );
    let (status, answer_text) = http(
        "POST",
        &format!("{}/v1/alerts", p.web),
        Some(TOKEN),
        Some(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")])),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer_text}");
    let log = wait_for(
        "every notifier to be given up on",
        Duration::from_secs(90),
        || {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            (log.matches("could not tell the notifier").count() >= 4).then_some(log)
        },
    );
    for (name, secret) in [
        ("the routing key", PD_KEY),
        ("the API key", OG_KEY),
        ("the Teams URL", TEAMS_SECRET),
    ] {
        assert_not_in(&format!("heald's log ({name})"), &log, secret);
        assert_not_in("heald's answer", &answer_text, secret);
    }
    for name in ["pager", "genie", "channel", "nowhere"] {
        assert!(
            log.contains(&format!("notifier {name}")),
            "errors name notifier {name}:\n{log}"
        );
    }
    let attempts = heal::heald::reporting::notify_http::ATTEMPTS;
    let (pd, og, teams) = (pd.seen(), og.seen(), teams.seen());
    assert_eq!(
        (pd.len(), og.len(), teams.len()),
        (attempts, attempts, attempts)
    );
    for s in &pd {
        secret_only_in(s, PD_KEY, "body");
    }
    for s in &og {
        secret_only_in(s, OG_KEY, "header");
        assert_eq!(s.headers["authorization"], format!("GenieKey {OG_KEY}"));
    }
    for s in &teams {
        secret_only_in(s, TEAMS_SECRET, "path");
    }
}

// ----- asking for approval -----

#[tokio::test]
async fn each_vendor_gets_the_approval_request_in_its_documented_format_with_the_dry_run() {
    heal_testkit::require_reference!();
    let server = argo_server();
    server.seed_deployment("shop", "web", 2, &[]);
    let am = Receiver::start().await;
    let (pd, og, teams) = (
        Vendor::pagerduty().await,
        Vendor::opsgenie().await,
        Vendor::teams().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let pd_key = key_file(dir.path(), "routing-key", PD_KEY);
    let og_key = key_file(dir.path(), "api-key", OG_KEY);
    let teams_url = key_file(
        dir.path(),
        "teams-url",
        &format!("{}/webhookb2/{TEAMS_SECRET}/IncomingWebhook/abc", teams.url),
    );
    let notifiers = [
        webhook_notifier(&am.url),
        notifier(
            "pager",
            &format!(
                "  type: pagerduty\n  url: {}/v2/enqueue\n  routingKeyFile: {pd_key}\n",
                pd.url
            ),
        ),
        notifier(
            "genie",
            &format!(
                "  type: opsgenie\n  url: {}\n  apiKeyFile: {og_key}\n",
                og.url
            ),
        ),
        notifier(
            "channel",
            &format!("  type: teams\n  urlFile: {teams_url}\n"),
        ),
    ]
    .concat();
    let policy = policies(&["hook", "pager", "genie", "channel"], "1h", &notifiers).replace(
        "  engine: argo\n",
        "  engine: argo\n  approval: {timeout: 15m, onTimeout: reject}\n",
    );
    let f = Files::new(&policy);
    let h = Heald::start(
        &server,
        &f,
        &[
            "--alertmanager-url",
            &am.url,
            "--report-url",
            "http://heald.test:8080/v1/reports",
        ],
    )
    .await;
    let a = web_down("web", "2026-08-20T10:00:00Z");
    let d = h.decide(&webhook(std::slice::from_ref(&a))).await;
    assert_eq!(d[0]["decision"], "submitted", "{d:?}");
    let correlation_id = d[0]["correlationId"].as_str().unwrap().to_string();
    let run = run_name("restart-web", &a);
    // The requests go out in the background, after the dry run.
    eventually("the approval requests", || {
        (am.bodies("/hook").len() == 1
            && pd.seen().len() == 1
            && og.seen().len() == 1
            && teams.seen().len() == 1)
            .then_some(())
    })
    .await;

    // The dry run: the restart's patch with dryRun=All, and the Deployment unchanged.
    let web = "/apis/apps/v1/namespaces/shop/deployments/web";
    let patches = server.requests_matching("PATCH", web);
    assert_eq!(patches.len(), 1, "{}", server.log_text());
    assert!(
        patches[0].raw_query.contains("dryRun=All"),
        "{:?}",
        patches[0].raw_query
    );
    let deployment = server.get("apps/v1", "deployments", "shop", "web").unwrap();
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_null(),
        "{deployment}"
    );

    // The webhook document: what everything else carries.
    let document = am.bodies("/hook").remove(0);
    assert_eq!(document["kind"], "RemediationAwaitingApproval");
    assert_eq!(document["target"], "shop/deployment/web");
    assert_eq!(document["run"], run);
    assert_eq!(document["onTimeout"], "reject");
    assert_eq!(document["steps"][0]["name"], "restart");
    assert_eq!(document["steps"][0]["waitsForApproval"], true);
    assert_eq!(document["steps"][0]["dryRun"], "dry-run", "{document}");
    let approve = format!("heal approve {run} -n {NS}");
    let reject = format!("heal reject {run} -n {NS} --reason 'WHY'");
    assert_eq!(document["decide"]["approveCommand"], approve);
    assert_eq!(document["decide"]["rejectCommand"], reject);
    assert_eq!(
        document["decide"]["approveUrl"],
        format!("http://heald.test:8080/v1/runs/{NS}/{run}/approve")
    );
    let deadline = document["deadline"].as_str().unwrap().to_string();
    let link = document["link"].as_str().unwrap().to_string();
    let summary = format!(
        "heal asks for approval to fix WebDown on shop/deployment/web (restart-web): run {NS}/{run}"
    );
    let step = format!(
        "restart: heal {}",
        document["steps"][0]["command"].as_str().unwrap()
    );
    let dry_message = document["steps"][0]["dryRunMessage"].as_str().unwrap();

    // PagerDuty: an `info` trigger on the episode's dedup key, the document as details.
    let event = &pd.seen()[0];
    assert_eq!(
        (event.method.as_str(), event.path.as_str()),
        ("POST", "/v2/enqueue")
    );
    assert_eq!(event.headers["content-type"], "application/json");
    secret_only_in(event, PD_KEY, "body");
    assert_eq!(
        without_timestamp(event.body.clone()),
        json!({
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": correlation_id,
            "payload": {
                "summary": summary,
                "source": "shop/deployment/web",
                "severity": "info",
                "class": "RemediationAwaitingApproval",
                "custom_details": document,
            },
            "client": "heald",
            "client_url": link,
            "links": [{"href": link, "text": "The alert in Alertmanager"}],
        })
    );

    // Opsgenie: an alert tagged awaiting-approval, the commands and the dry run in its details.
    let alert = &og.seen()[0];
    assert_eq!(
        (alert.method.as_str(), alert.path.as_str()),
        ("POST", "/v2/alerts")
    );
    assert_eq!(alert.headers["authorization"], format!("GenieKey {OG_KEY}"));
    secret_only_in(alert, OG_KEY, "header");
    assert_eq!(alert.body["message"], summary);
    assert_eq!(alert.body["alias"], correlation_id);
    assert_eq!(alert.body["tags"], json!(["heal", "awaiting-approval"]));
    assert_eq!(alert.body["entity"], "shop/deployment/web");
    assert_eq!(
        alert.body["details"],
        json!({
            "policy": "restart-web",
            "alertname": "WebDown",
            "fingerprint": a["fingerprint"],
            "target": "shop/deployment/web",
            "run": format!("{NS}/{run}"),
            "deadline": deadline,
            "onTimeout": "reject",
            "approve": approve,
            "reject": reject,
            "correlationId": correlation_id,
            "step.restart": format!("dry-run: {}", document["steps"][0]["command"].as_str().unwrap()),
        })
    );
    let description = alert.body["description"].as_str().unwrap();
    assert!(
        description.contains(&format!("Approve: {approve}")),
        "{description}"
    );

    // Teams: a card in the accent colour with the plan, the commands and the facts.
    let post = &teams.seen()[0];
    assert_eq!(
        post.path,
        format!("/webhookb2/{TEAMS_SECRET}/IncomingWebhook/abc")
    );
    secret_only_in(post, TEAMS_SECRET, "path");
    let card = &post.body["attachments"][0]["content"];
    assert_eq!(post.body["type"], "message");
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["color"], "Accent");
    assert_eq!(card["body"][0]["text"], summary);
    assert_eq!(
        card["body"][1]["text"],
        format!(
            "- {step} (dry run: dry-run {dry_message})\n\nApprove: {approve}\n\nReject: {reject}"
        )
    );
    assert_eq!(
        card["body"][2]["facts"],
        json!([
            {"title": "Policy", "value": "restart-web"},
            {"title": "Target", "value": "shop/deployment/web"},
            {"title": "Run", "value": format!("{NS}/{run}")},
            {"title": "Engine", "value": "argo"},
            {"title": "Decide by", "value": deadline},
            {"title": "Without a decision", "value": "reject"},
            {"title": "Correlation id", "value": correlation_id},
        ])
    );
    assert_eq!(delivered(&h, "pagerduty", "ok"), 1.0);
    assert_eq!(delivered(&h, "opsgenie", "ok"), 1.0);
    assert_eq!(delivered(&h, "teams", "ok"), 1.0);
}
