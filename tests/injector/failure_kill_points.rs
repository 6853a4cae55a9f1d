//! Kill-anywhere testing: heald is stopped dead (a failpoint, `HEALD_FAILPOINT`, makes a
//! debug build abort with no cleanup, like SIGKILL) in every gap between two of intake's
//! effects (hold taken, silence made, run created, Event recorded) and between claiming a
//! run's end and the rest of handling it, then started again on the same port. Nobody
//! delivers the alert again (Alertmanager may have given up), yet in the end: the alert
//! episode has exactly one run, the run's end is handled exactly once, and no silence of
//! heald's outlives a run that does not exist. Each point is run with alerts posted
//! straight to heald and, when Alertmanager is installed, through a real Alertmanager at
//! `group_interval: 2s` (whose retries race the restarted heald).

use std::time::{Duration, Instant};

use crate::heald_support::alertmanager::{Alertmanager, alertmanager_binary};
use crate::heald_support::*;
use heal_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How the alert reaches heald.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// Posted once, straight to heald (never delivered again).
    Direct,
    /// Through a real Alertmanager at `group_interval: 2s`.
    Alertmanager,
}

struct World {
    server: ApiServer,
    files: Files,
    am: Option<Alertmanager>,
    port: u16,
    extra: Vec<String>,
}

impl World {
    fn new(via: Via, bin: Option<&'static str>) -> World {
        let server = ApiServer::start();
        server.register_argo_workflows();
        let files = Files::new(&policies("http://127.0.0.1:9/notify"));
        let port = free_port();
        let am = bin.map(|b| {
            let hooks = match via {
                Via::Direct => vec![],
                Via::Alertmanager => vec![format!("http://127.0.0.1:{port}")],
            };
            Alertmanager::start_grouping(b, &hooks, "2s")
        });
        let mut extra = vec!["--track-interval".to_string(), "200ms".to_string()];
        if let Some(am) = &am {
            extra.extend(["--alertmanager-url".to_string(), am.url.clone()]);
        }
        World {
            server,
            files,
            am,
            port,
            extra,
        }
    }

    fn heald(&self, failpoint: Option<&str>) -> Proc {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = failpoint
            .map(|f| ("HEALD_FAILPOINT", f))
            .into_iter()
            .collect();
        Proc::start_with_env(&self.server, &self.files, self.port, &extra, &env)
    }

    fn send_alert(&self, via: Via, p: &Proc) {
        match via {
            Via::Direct => {
                // heald dies before (or while) answering, or answers: both are fine.
                let _ = http(
                    "POST",
                    &format!("{}/v1/alerts", p.web),
                    Some(TOKEN),
                    Some(&webhook(&[web_down("web-1", "2026-08-20T10:00:00Z")])),
                );
            }
            Via::Alertmanager => self
                .am
                .as_ref()
                .unwrap()
                .post_alerts(&["web-1".to_string()]),
        }
    }

    fn runs(&self) -> Vec<Value> {
        self.server.list(WF.0, WF.1, NS)
    }

    fn creates(&self) -> usize {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/workflows") && r.status == 201)
            .count()
    }

    fn claims(&self) -> usize {
        self.server
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
            .count()
    }

    /// heald's unexpired silences.
    fn live_silences(&self) -> Vec<Value> {
        self.am
            .as_ref()
            .map(|am| am.heald_silences())
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["status"]["state"] != "expired")
            .collect()
    }

    /// No unexpired silence of heald's names a run that does not exist, and at most one
    /// names each run.
    fn assert_no_orphan_silence(&self) {
        let runs: Vec<String> = self.server.names(WF.0, WF.1, NS);
        let live = self.live_silences();
        for s in &live {
            let comment = s["comment"].as_str().unwrap_or("");
            assert!(
                runs.iter()
                    .any(|r| comment.contains(&format!("heal run {r} "))),
                "silence {} outlives a run that does not exist: {comment}",
                s["id"]
            );
        }
        assert!(
            live.len() <= runs.len(),
            "one silence per run at most: {live:?}"
        );
    }
}

fn kill_at(point: &str, via: Via) {
    let bin = alertmanager_binary();
    if via == Via::Alertmanager && bin.is_none() {
        return;
    }
    if point == "silence-created" && bin.is_none() {
        eprintln!("skipped: the silence needs an Alertmanager");
        return;
    }
    let w = World::new(via, bin);
    let mut p = w.heald(Some(point));
    w.send_alert(via, &p);
    let (code, log) = p.wait_exit(Duration::from_secs(30));
    assert_eq!(code, -1, "heald aborted at {point}; its log:\n{log}");
    assert!(log.contains(&format!("failpoint {point} reached")), "{log}");
    // Started again; the alert is not posted again.
    let _p = w.heald(None);
    wait_until("the alert episode's run", Duration::from_secs(30), || {
        w.runs().len() == 1
    });
    let run = w.runs().remove(0);
    let name = run["metadata"]["name"].as_str().unwrap().to_string();
    if via == Via::Direct {
        let alert = web_down("web-1", "2026-08-20T10:00:00Z");
        assert_eq!(name, run_name("restart-web", &alert), "the episode's run");
    }
    assert_eq!(w.creates(), 1, "the run was created once");
    if w.am.is_some() {
        wait_until("the in-progress silence", Duration::from_secs(30), || {
            w.server
                .get(WF.0, WF.1, NS, &name)
                .is_some_and(|r| r["metadata"]["annotations"]["heal.dev/silence-id"].is_string())
        });
        let run = w.server.get(WF.0, WF.1, NS, &name).unwrap();
        let id = run["metadata"]["annotations"]["heal.dev/silence-id"].clone();
        let live = w.live_silences();
        assert_eq!(live.len(), 1, "one in-progress silence: {live:?}");
        assert_eq!(live[0]["id"], id, "the run knows its silence");
    }
    w.assert_no_orphan_silence();
    // A delivery now is a duplicate.
    let (status, body) = http(
        "POST",
        &format!("http://127.0.0.1:{}/v1/alerts", w.port),
        Some(TOKEN),
        Some(&webhook(&[web_down("web-1", "2026-08-20T10:00:00Z")])),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    if via == Via::Direct {
        assert!(body.contains("\"duplicate\""), "{body}");
    }
    // The run's end is handled once, and the in-progress silence gives way to the success
    // silence (Alertmanager 0.25+ gives it a new id and expires the old one).
    w.server.modify(WF.0, WF.1, NS, &name, |o| {
        o["status"] = json!({"phase": "Succeeded"});
    });
    wait_until(
        "the run's end to be handled",
        Duration::from_secs(30),
        || {
            w.server
                .get(WF.0, WF.1, NS, &name)
                .is_some_and(|r| r["metadata"]["labels"]["heal.dev/reported"] == "true")
        },
    );
    assert_eq!(w.claims(), 1, "the end was handled once");
    if w.am.is_some() {
        wait_until("the success silence", Duration::from_secs(30), || {
            let live = w.live_silences();
            live.len() == 1
                && !live[0]["comment"]
                    .as_str()
                    .unwrap_or("")
                    .contains("in progress")
        });
    }
    assert_eq!(w.creates(), 1, "still one run");
}

/// heald is stopped dead right after claiming a run's end (before the Lease, the
/// notification and Alertmanager): the restarted heald does not handle it again, and the
/// silence recorded with the claim is still delivered.
fn killed_after_claiming_the_end(via: Via) {
    let Some(bin) = alertmanager_binary() else {
        return;
    };
    let w = World::new(via, Some(bin));
    let mut p = w.heald(Some("end-claimed"));
    w.send_alert(via, &p);
    wait_until("the run", Duration::from_secs(30), || w.runs().len() == 1);
    let name = w.server.names(WF.0, WF.1, NS).remove(0);
    wait_until("the in-progress silence", Duration::from_secs(30), || {
        w.live_silences().len() == 1
    });
    w.server.modify(WF.0, WF.1, NS, &name, |o| {
        o["status"] = json!({"phase": "Succeeded"});
    });
    let (code, log) = p.wait_exit(Duration::from_secs(30));
    assert_eq!(code, -1, "{log}");
    let _p = w.heald(None);
    wait_until("the success silence", Duration::from_secs(60), || {
        let live = w.live_silences();
        live.len() == 1
            && !live[0]["comment"]
                .as_str()
                .unwrap_or("")
                .contains("in progress")
    });
    assert_eq!(w.claims(), 1, "the end was claimed once");
    assert_eq!(w.creates(), 1);
}

#[test]
fn killed_after_taking_the_hold_the_alert_still_gets_its_one_run() {
    heal_testkit::require_reference!();
    kill_at("hold-taken", Via::Direct);
}

#[test]
fn killed_after_the_silence_the_alert_still_gets_its_one_run_and_that_silence() {
    heal_testkit::require_reference!();
    kill_at("silence-created", Via::Direct);
}

#[test]
fn killed_after_creating_the_run_nothing_is_created_twice() {
    heal_testkit::require_reference!();
    kill_at("run-created", Via::Direct);
}

#[test]
fn killed_after_the_event_before_answering_nothing_is_created_twice() {
    heal_testkit::require_reference!();
    kill_at("event-recorded", Via::Direct);
}

#[test]
fn killed_after_claiming_a_run_s_end_the_end_is_handled_once() {
    heal_testkit::require_reference!();
    killed_after_claiming_the_end(Via::Direct);
}

#[test]
fn through_alertmanager_killed_after_taking_the_hold() {
    heal_testkit::require_reference!();
    kill_at("hold-taken", Via::Alertmanager);
}

#[test]
fn through_alertmanager_killed_after_the_silence() {
    heal_testkit::require_reference!();
    kill_at("silence-created", Via::Alertmanager);
}

#[test]
fn through_alertmanager_killed_after_creating_the_run() {
    heal_testkit::require_reference!();
    kill_at("run-created", Via::Alertmanager);
}

#[test]
fn through_alertmanager_killed_after_the_event() {
    heal_testkit::require_reference!();
    kill_at("event-recorded", Via::Alertmanager);
}

#[test]
fn through_alertmanager_killed_after_claiming_a_run_s_end() {
    heal_testkit::require_reference!();
    killed_after_claiming_the_end(Via::Alertmanager);
}
