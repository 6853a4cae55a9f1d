//! Secrets never reach logs or results. The `heal` binary runs with debug logging and
//! distinctive tokens (a kubeconfig user token, the Prometheus token of `heal verify`, heald's
//! token for `heal report`) against a closed port and against a small HTTP server answering
//! 401, 403 and 500; `heald` runs with debug logging and is called with its webhook token
//! and a wrong one. The tokens are sent where they belong (the server sees them) and never
//! appear in stdout, stderr, the result file or heald's log and answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::heald_support::{
    Files, Proc, TOKEN as HEALD_TOKEN, base_args, free_port, http, policies,
};
use heal_testkit::apiserver::{ApiServer, TOKEN as APISERVER_TOKEN};
use serde_json::json;

/// The kubeconfig user's token.
const KUBE_TOKEN: &str = "kube-Zq7xW4-5ecret-token-must-not-leak";
/// The Prometheus token of `heal verify`.
const PROM_TOKEN: &str = "prom-Jk2pR9-5ecret-token-must-not-leak";
/// heald's token, as `heal report` sends it.
const REPORT_TOKEN: &str = "heald-Vb8nT3-5ecret-token-must-not-leak";
/// A password written into a URL (`http://user:PASSWORD@host`).
const URL_PASSWORD: &str = "pw-Tc5yD1-5ecret-password-must-not-leak";
/// A wrong token someone sends to heald (a real secret of theirs, perhaps).
const WRONG_TOKEN: &str = "wrong-Hm3sL6-5ecret-token-must-not-leak";

/// Fragments that would betray a token even if cut or wrapped: the distinctive middle.
fn fragments(token: &str) -> [&str; 2] {
    [token, &token[..13]]
}

/// Fail when any fragment of `token` is in `text`.
fn assert_no_token(what: &str, text: &str, token: &str) {
    for f in fragments(token) {
        assert!(
            !text.contains(f),
            "{what} contains the secret {f:?}:\n{text}"
        );
    }
}

/// A tiny HTTP/1.1 server that answers every request with one status and JSON body and
/// keeps each request's head (request line and headers).
struct Answering {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Answering {
    fn start(status: u16, body: &str) -> Answering {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        let body = body.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = Arc::clone(&seen);
                let body = body.clone();
                std::thread::spawn(move || answer(stream, status, &body, &seen));
            }
        });
        Answering { url, heads }
    }

    /// Whether some request carried `Authorization: Bearer <token>`.
    fn saw_bearer(&self, token: &str) -> bool {
        let want = format!("authorization: bearer {}", token.to_ascii_lowercase());
        self.heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains(&want))
    }
}

fn answer(mut stream: TcpStream, status: u16, body: &str, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Serve requests on this connection until the client closes it.
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        seen.lock().unwrap().push(head);
        let reason = match status {
            401 => "Unauthorized",
            403 => "Forbidden",
            _ => "Internal Server Error",
        };
        let reply = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A Kubernetes `Status` body for `code`.
fn status_body(code: u16) -> String {
    let reason = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "InternalError",
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{reason} (from the test server)"),
        "reason": reason,
        "code": code,
    })
    .to_string()
}

/// A URL on 127.0.0.1 where nothing listens.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("address"));
    drop(l);
    url
}

fn kubeconfig(dir: &Path, server: &str, token: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: shop\ncurrent-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

/// Run heal with debug logging (JSON lines) and a result file; return its output and the
/// result file's text.
fn heal(dir: &Path, log: &str, args: &[&str]) -> (Output, String) {
    let result = dir.join("result.json");
    let _ = std::fs::remove_file(&result);
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(args)
        .args(["-o", "json", "--timeout", "1s", "--result-file"])
        .arg(&result)
        .env("HEAL_LOG", log)
        .env("HEAL_LOG_FORMAT", "json")
        .env_remove("KUBECONFIG")
        .env_remove("HEAL_REPORT_TOKEN")
        .output()
        .expect("run heal");
    let result = std::fs::read_to_string(&result).unwrap_or_default();
    (out, result)
}

/// heal's stdout, stderr and result file hold no fragment of `token`; the run failed the
/// way the situation calls for (`codes`), so the check is not vacuous.
fn assert_clean(what: &str, run: &(Output, String), token: &str, codes: &[i32]) {
    assert_clean_logged(what, run, token, codes, true)
}

/// [`assert_clean`]; `logged`: whether the run must have written log lines.
fn assert_clean_logged(
    what: &str,
    (out, result): &(Output, String),
    token: &str,
    codes: &[i32],
    logged: bool,
) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        codes.contains(&code),
        "{what}: exit code {code}, expected one of {codes:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        !logged || !stderr.trim().is_empty(),
        "{what}: debug logging wrote nothing"
    );
    assert!(!result.is_empty(), "{what}: no result file");
    assert_no_token(&format!("{what}: stdout"), &stdout, token);
    assert_no_token(&format!("{what}: stderr"), &stderr, token);
    assert_no_token(&format!("{what}: result file"), result, token);
}

const LOG_LEVELS: [&str; 2] = ["heal=debug", "trace"];

#[test]
fn the_kubeconfig_token_stays_out_of_output_logs_and_results_when_the_api_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &closed_port_url(), KUBE_TOKEN);
    let kc = kc.to_str().unwrap();
    for log in LOG_LEVELS {
        for args in [
            &[
                "scale",
                "deployment/web",
                "--replicas",
                "3",
                "--kubeconfig",
                kc,
            ][..],
            &["delete", "pod/web-1", "--uid", "1234", "--kubeconfig", kc][..],
        ] {
            let run = heal(dir.path(), log, args);
            assert_clean(&format!("{args:?} with {log}"), &run, KUBE_TOKEN, &[3]);
        }
    }
}

#[test]
fn the_kubeconfig_token_is_sent_but_never_printed_when_the_api_server_answers_401_403_or_500() {
    let dir = tempfile::tempdir().unwrap();
    for (code, exit) in [(401, 1), (403, 1), (500, 3)] {
        let server = Answering::start(code, &status_body(code));
        let kc = kubeconfig(dir.path(), &server.url, KUBE_TOKEN);
        let kc = kc.to_str().unwrap();
        for log in LOG_LEVELS {
            let args = [
                "scale",
                "deployment/web",
                "--replicas",
                "3",
                "--kubeconfig",
                kc,
            ];
            let run = heal(dir.path(), log, &args);
            assert_clean(&format!("{code} with {log}"), &run, KUBE_TOKEN, &[exit]);
        }
        assert!(
            server.saw_bearer(KUBE_TOKEN),
            "heal should have sent the kubeconfig token to the server answering {code}"
        );
    }
}

#[test]
fn a_malformed_kubeconfig_is_a_configuration_error_that_does_not_echo_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    for text in [
        // The token where a user entry should be.
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\nusers:\n- name: u\n  user: {KUBE_TOKEN}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
        // A token that cannot be an HTTP header value.
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\nusers:\n- name: u\n  user:\n    token: \"{KUBE_TOKEN}\\x7f\\n\"\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
        // A syntax error on the token's line.
        format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: {KUBE_TOKEN}: [\n"
        ),
    ] {
        std::fs::write(&path, &text).unwrap();
        let kc = path.to_str().unwrap();
        for log in LOG_LEVELS {
            let args = [
                "scale",
                "deployment/web",
                "--replicas",
                "3",
                "--kubeconfig",
                kc,
            ];
            let run = heal(dir.path(), log, &args);
            // A configuration error: exit code 2, before anything is sent or logged.
            assert_clean_logged(
                &format!("kubeconfig {text:?}"),
                &run,
                KUBE_TOKEN,
                &[2],
                false,
            );
            let message = serde_json::from_slice::<serde_json::Value>(&run.0.stdout)
                .expect("the JSON result on stdout")["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(message.contains("kubeconfig"), "{message}");
        }
    }
}

fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    // With a trailing newline, as `kubectl create secret --from-file` often leaves it.
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

#[test]
fn the_prometheus_token_of_heal_verify_is_sent_but_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path(), "prom-token", PROM_TOKEN);
    let tf = tf.to_str().unwrap();
    let error = |code: u16| {
        json!({"status": "error", "errorType": "auth", "error": format!("status {code}")})
            .to_string()
    };
    let servers: Vec<(String, Option<Answering>)> = [401, 403, 500]
        .into_iter()
        .map(|code| {
            let s = Answering::start(code, &error(code));
            (s.url.clone(), Some(s))
        })
        .chain([(closed_port_url(), None)])
        .collect();
    for (url, server) in &servers {
        for log in LOG_LEVELS {
            let args = [
                "verify",
                "--query",
                "up == 0",
                "--prometheus-url",
                url,
                "--bearer-token-file",
                tf,
                "--interval",
                "100ms",
            ];
            let run = heal(dir.path(), log, &args);
            assert_clean(
                &format!("verify at {url} with {log}"),
                &run,
                PROM_TOKEN,
                &[1, 3],
            );
        }
        if let Some(s) = server {
            assert!(
                s.saw_bearer(PROM_TOKEN),
                "heal verify should have sent its token to {url}"
            );
        }
    }
}

#[test]
fn the_heald_token_of_heal_report_is_sent_but_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path(), "heald-token", REPORT_TOKEN);
    let tf = tf.to_str().unwrap();
    for code in [401, 403, 500] {
        let server = Answering::start(code, r#"{"error": "no"}"#);
        let url = format!("{}/v1/reports", server.url);
        for log in LOG_LEVELS {
            let args = [
                "report",
                "--engine",
                "argo",
                "--run-name",
                "heal-web-0123456789",
                "-n",
                "heal-system",
                "--status",
                "Succeeded",
                "--report-url",
                &url,
                "--token-file",
                tf,
            ];
            let run = heal(dir.path(), log, &args);
            assert_clean(
                &format!("report to {code} with {log}"),
                &run,
                REPORT_TOKEN,
                &[1, 3],
            );
        }
        assert!(
            server.saw_bearer(REPORT_TOKEN),
            "heal report should have sent its token to the server answering {code}"
        );
    }
}

#[test]
fn a_password_in_the_prometheus_heald_or_alertmanager_url_is_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Answering::start(500, r#"{"status": "error", "error": "down"}"#);
    let with_password = |url: &str| url.replacen("://", &format!("://heal:{URL_PASSWORD}@"), 1);
    let closed = closed_port_url();
    for url in [with_password(&failing.url), with_password(&closed)] {
        for log in LOG_LEVELS {
            let args = [
                "verify",
                "--query",
                "up == 0",
                "--prometheus-url",
                &url,
                "--interval",
                "100ms",
            ];
            let run = heal(dir.path(), log, &args);
            assert_clean(&format!("verify at {url}"), &run, URL_PASSWORD, &[3]);
            let report = [
                "report",
                "--engine",
                "argo",
                "--run-name",
                "heal-web-0123456789",
                "-n",
                "heal-system",
                "--status",
                "Failed",
                "--report-url",
                &format!("{url}/v1/reports"),
                "--alertmanager-url",
                &with_password(&closed),
            ];
            let run = heal(dir.path(), log, &report);
            assert_clean(&format!("report to {url}"), &run, URL_PASSWORD, &[3]);
        }
    }
}

#[test]
fn heald_logs_and_answers_never_contain_its_webhook_token_a_wrong_token_or_the_kube_token() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let files = Files::new(&policies("http://127.0.0.1:9/notify"));
    let p = heald_with_debug_log(&server, &files);
    let alert = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"WebDown\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "heald",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "WebDown", "namespace": "shop", "deployment": "web"},
            "annotations": {},
            "startsAt": "2026-08-20T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "0123456789abcdef",
        }],
    });
    let url = format!("{}/v1/alerts", p.web);
    let mut answers = String::new();
    for (token, want) in [
        (None, 401),
        (Some(WRONG_TOKEN), 401),
        (Some(HEALD_TOKEN), 200),
    ] {
        let (status, body) = http("POST", &url, token, Some(&alert)).expect("heald answers");
        assert!(
            status == want || (want == 200 && status == 202),
            "token {token:?}: {status} {body}"
        );
        answers.push_str(&body);
    }
    let report = json!({"engine": "argo", "runName": "x", "namespace": "heal-system",
        "outcome": "succeeded", "status": "Succeeded", "correlationId": "c"});
    let reports = format!("{}/v1/reports", p.web);
    for token in [Some(WRONG_TOKEN), Some(HEALD_TOKEN)] {
        if let Some((_, body)) = http("POST", &reports, token, Some(&report)) {
            answers.push_str(&body);
        }
    }
    for path in ["/v1/remediations"] {
        if let Some((_, body)) = http("GET", &format!("{}{path}", p.web), Some(HEALD_TOKEN), None) {
            answers.push_str(&body);
        }
    }
    if let Some((_, body)) = http("GET", &format!("{}/metrics", p.admin), None, None) {
        answers.push_str(&body);
    }
    let log_path = p.log.clone();
    drop(p);
    let log = std::fs::read_to_string(&log_path).expect("heald's log");
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "heald should log at debug level:\n{log}"
    );
    for token in [HEALD_TOKEN, WRONG_TOKEN] {
        assert_no_token("heald's log", &log, token);
        assert_no_token("heald's answers", &answers, token);
    }
    // The test API server's token is short; check it whole.
    assert!(
        !log.contains(APISERVER_TOKEN),
        "heald's log contains the kubeconfig token:\n{log}"
    );
}

/// heald as `Proc::start` runs it, plus `HEALD_LOG` at debug level for heal and trace for
/// the HTTP layers.
fn heald_with_debug_log(server: &ApiServer, files: &Files) -> Proc {
    server.with_state(|s| s.ensure_namespace(crate::heald_support::NS));
    let (web, admin) = (free_port(), free_port());
    let mut args: Vec<String> = base_args(files).into_iter().skip(1).collect();
    for (flag, value) in [
        ("--listen", format!("127.0.0.1:{web}")),
        ("--admin-listen", format!("127.0.0.1:{admin}")),
    ] {
        let i = args.iter().position(|a| a == flag).expect("base flag");
        args[i + 1] = value;
    }
    let kubeconfig = server.kubeconfig(files.path());
    args.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
    args.extend(["--log-format".into(), "json".into()]);
    let log = files.path().join("heald.log");
    let child = Command::new(env!("CARGO_BIN_EXE_heald"))
        .args(&args)
        .env("HEALD_LOG", "heal=debug,hyper=trace,axum=trace,tower=trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start heald");
    let p = Proc {
        child,
        web: format!("http://127.0.0.1:{web}"),
        admin: format!("http://127.0.0.1:{admin}"),
        log,
    };
    p.wait_ready();
    p
}

#[test]
fn urls_in_messages_lose_only_their_user_and_password() {
    use heal::prometheus_http::redacted_url;
    assert_eq!(
        redacted_url("https://heal:s3cret@prometheus:9090/api?x=a@b"),
        "https://***@prometheus:9090/api?x=a@b"
    );
    assert_eq!(
        redacted_url("http://token@heald:8080"),
        "http://***@heald:8080"
    );
    for plain in [
        "http://prometheus:9090/api/v1/query?match=a@b",
        "http://heald.heal-system.svc:8080/v1/reports",
        "not a url",
    ] {
        assert_eq!(redacted_url(plain), plain);
    }
}
