//! A real Alertmanager process (Debian's `prometheus-alertmanager`) for the tests that
//! need one; they skip when it is not installed, and fail under `CI=true`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{TOKEN, free_port, get, http, wait_for};

/// The Alertmanager binary, or `None` (after a printed reason) when the test must skip.
pub fn alertmanager_binary() -> Option<&'static str> {
    let bin = heal_testkit::tool_or_skip(
        &["prometheus-alertmanager", "alertmanager"],
        "apt-get install prometheus-alertmanager",
        heal_testkit::Required::InCi,
    )?;
    // Lives as long as the test process, as the callers want.
    Some(Box::leak(
        bin.to_string_lossy().into_owned().into_boxed_str(),
    ))
}

/// A real Alertmanager on a fixed loopback port, which can be stopped and started again
/// on the same port (with its data directory kept, or a fresh one).
pub struct Alertmanager {
    bin: &'static str,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    data: PathBuf,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Alertmanager {
    /// Start with one receiver whose webhooks go to every URL of `healds`.
    pub fn start(bin: &'static str, healds: &[String]) -> Alertmanager {
        Alertmanager::start_grouping(bin, healds, "1s")
    }

    /// Start with `group_interval` (Alertmanager retries a failed notification for
    /// max(group_interval, 10 s)).
    pub fn start_grouping(
        bin: &'static str,
        healds: &[String],
        group_interval: &str,
    ) -> Alertmanager {
        Alertmanager::start_routed(bin, healds, &["alertname", "deployment"], group_interval)
    }

    /// Start with this `group_by` (`["alertname"]`: every `WebDown` in one notification, as
    /// a zone outage or a bad rollout produces) and `group_interval`.
    pub fn start_routed(
        bin: &'static str,
        healds: &[String],
        group_by: &[&str],
        group_interval: &str,
    ) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let hooks: String = healds
            .iter()
            .map(|h| {
                format!(
                    "      - url: {h}/v1/alerts\n        send_resolved: true\n        \
                     http_config:\n          authorization:\n            type: Bearer\n            \
                     credentials: {TOKEN}\n"
                )
            })
            .collect();
        let config = format!(
            "route:\n  receiver: heald\n  group_by: [{}]\n  group_wait: 500ms\n  \
             group_interval: {group_interval}\n  repeat_interval: 1h\nreceivers:\n  - name: heald\n    \
             webhook_configs:\n{hooks}",
            group_by.join(", ")
        );
        std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
        let data = dir.path().join("data");
        let mut am = Alertmanager {
            bin,
            port: free_port(),
            dir,
            data,
            child: None,
            url: String::new(),
        };
        am.url = format!("http://127.0.0.1:{}", am.port);
        am.run();
        am
    }

    fn run(&mut self) {
        let child = Command::new(self.bin)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", self.data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        self.child = Some(child);
        let url = self.url.clone();
        wait_for("Alertmanager to be ready", Duration::from_secs(20), || {
            get(&format!("{url}/-/ready")).filter(|(s, _)| *s == 200)
        });
    }

    /// Stop it the way Kubernetes does (SIGTERM: it saves its silences) and wait for it.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if c.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Start again on the same port; with `keep_data` false, as a pod without a persistent
    /// volume comes back: with no silences.
    pub fn restart(&mut self, keep_data: bool) {
        self.stop();
        if !keep_data {
            self.data = self.dir.path().join(format!("data-{}", free_port()));
        }
        self.run();
    }

    /// Post alerts as Prometheus does.
    pub fn post_alerts(&self, deployments: &[String]) {
        let now = jiff::Timestamp::now().to_string();
        let alerts: Vec<Value> = deployments
            .iter()
            .map(|d| {
                json!({
                    "labels": {"alertname": "WebDown", "namespace": "shop", "deployment": d},
                    "annotations": {"summary": "web is down"},
                    "startsAt": now,
                })
            })
            .collect();
        let (status, body) = http(
            "POST",
            &format!("{}/api/v2/alerts", self.url),
            None,
            Some(&json!(alerts)),
        )
        .expect("Alertmanager answers");
        assert_eq!(status, 200, "{body}");
    }

    /// The value of a counter in Alertmanager's own metrics (summed over its series that
    /// match `filter`, a substring of the labels).
    pub fn metric(&self, name: &str, filter: &str) -> f64 {
        let Some((_, text)) = get(&format!("{}/metrics", self.url)) else {
            return 0.0;
        };
        super::metric_sum(&text, name, filter)
    }

    /// Silences heald made.
    pub fn heald_silences(&self) -> Vec<Value> {
        let Some((_, body)) = get(&format!("{}/api/v2/silences", self.url)) else {
            return Vec::new();
        };
        let all: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        all.into_iter()
            .filter(|s| s["createdBy"] == "heald")
            .collect()
    }
}
