//! A real Prometheus process for tests (the Debian package's `/usr/bin/prometheus`),
//! scraping a tiny in-test exporter every second; both are stopped when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

/// The Prometheus binary candidates: `$HEAL_PROMETHEUS_BIN` when set (and only it), else
/// `/usr/bin/prometheus` or `prometheus` on the `PATH`.
fn candidates() -> Vec<PathBuf> {
    match std::env::var_os("HEAL_PROMETHEUS_BIN") {
        Some(p) => vec![p.into()],
        None => vec!["/usr/bin/prometheus".into(), "prometheus".into()],
    }
}

/// The Prometheus binary, whichever candidate answers `--version`.
pub fn binary() -> Option<PathBuf> {
    crate::find_tool(&candidates())
}

/// The Prometheus binary, or `None` after announcing why the test is skipped.
///
/// # Panics
/// Under `CI=true` when Prometheus is not installed: CI must not skip silently.
pub fn binary_or_skip() -> Option<PathBuf> {
    crate::tool_or_skip(
        &candidates(),
        "apt-get install prometheus, or set HEAL_PROMETHEUS_BIN",
        crate::Required::InCi,
    )
}

/// The first line of `prometheus --version` (`prometheus, version 2.42.0+ds ...`).
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            all.lines().next().unwrap_or_default().to_string()
        })
        .unwrap_or_default()
}

/// A free loopback port (bound, then released).
///
/// # Panics
/// When no local port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 for a free port")
        .port()
}

/// A gauge value shared between the test and the exporter that serves it.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Change the value the next scrape sees.
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::SeqCst))
    }
}

/// A tiny exporter answering `GET /metrics` in the Prometheus text format with one gauge,
/// served on its own thread so sync and async tests can use it alike.
pub struct Exporter {
    addr: SocketAddr,
    gauge: Gauge,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Serve `NAME{LABELS} VALUE` (for example `heal_test_cpu`, `pod="web-1"`) on a free
    /// loopback port.
    ///
    /// # Panics
    /// When no local port can be bound or no runtime can be built.
    pub fn start(name: &str, labels: &str, value: f64) -> Exporter {
        let gauge = Gauge(Arc::new(AtomicU64::new(value.to_bits())));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the test exporter");
        listener
            .set_nonblocking(true)
            .expect("make the test exporter's listener non-blocking");
        let addr = listener.local_addr().expect("test exporter address");
        let (tx, rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the test exporter runtime");
        let served = gauge.clone();
        let name = name.to_string();
        let series = if labels.is_empty() {
            name.clone()
        } else {
            format!("{name}{{{labels}}}")
        };
        let thread = std::thread::Builder::new()
            .name("test-exporter".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = axum::Router::new().route(
                        "/metrics",
                        axum::routing::get(move || {
                            let value = served.get();
                            let text = format!(
                                "# HELP {name} A gauge the test changes.\n# TYPE {name} gauge\n{series} {value}\n"
                            );
                            async move {
                                (
                                    [(
                                        axum::http::header::CONTENT_TYPE,
                                        "text/plain; version=0.0.4",
                                    )],
                                    text,
                                )
                            }
                        }),
                    );
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn the test exporter thread");
        Exporter {
            addr,
            gauge,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, as a scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// A handle to change the served value (also from another task or thread).
    pub fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running Prometheus with a generated configuration and a temporary TSDB, killed and
/// reaped when dropped (also when the test panics).
pub struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start `bin` on a free loopback port, scraping `targets` every second (job
    /// `heal-test`), and wait (at most 20 s) until every target has been scraped once.
    /// Prometheus hands new targets to its scrapers on a 5 s tick, so this takes about 5 s.
    ///
    /// # Panics
    /// When Prometheus does not start or never scrapes the targets; the message carries the
    /// end of its log.
    pub fn start(bin: &Path, targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir for Prometheus");
        let port = free_port();
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: heal-test\n    static_configs:\n      - targets: [{list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .expect("create prometheus.log");
        let log_err = log.try_clone().expect("clone the log file handle");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        prometheus.wait_until_scraped(targets.len(), Duration::from_secs(20));
        prometheus
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The end of Prometheus's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn wait_until_scraped(&mut self, targets: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Prometheus exited ({status}) before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            let last = match self.query("up == 1") {
                Ok(answer) => {
                    let up = answer["data"]["result"].as_array().map_or(0, Vec::len);
                    if up >= targets {
                        return;
                    }
                    format!("{up} of {targets} target(s) up")
                }
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "Prometheus at {} did not scrape its targets within {limit:?} ({last}); its log:\n{}",
                self.url,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instant query through `GET /api/v1/query`: the decoded answer, whatever its status.
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET /api/v1/query?query={} HTTP/1.0\r\nHost: {addr}\r\n\r\n",
            percent_encode(promql)
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or_else(|| format!("no HTTP answer from {addr}"))?;
        serde_json::from_str(body).map_err(|e| format!("not JSON from {addr}: {e}: {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
