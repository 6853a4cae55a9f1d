//! Black-box tests: the compiled `heal` binary against the test API server on 127.0.0.1,
//! through a kubeconfig file, as a workflow step would run it.

use std::path::Path;

use crate::support::{code, env, heal_bin, stdout_json, without_heal_env};
use heal_testkit::apiserver::*;
use serde_json::Value;

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("result file written")).unwrap()
}

#[test]
fn scale_prints_the_result_and_writes_the_result_file() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let result = e.path("result.json");
    let out = e.run(&[
        "scale",
        "deploy/web",
        "--replicas",
        "3",
        "-o",
        "json",
        "--correlation-id",
        "abc",
        "--result-file",
        result.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let printed = stdout_json(&out);
    assert_eq!(printed, read_json(&result));
    assert_eq!(printed["outcome"], "applied");
    assert_eq!(printed["correlationId"], "abc");
    assert_eq!(printed["action"], "scale");
    assert_eq!(printed["before"]["replicas"], 1);
    assert_eq!(printed["after"]["replicas"], 3);
    for key in ["startedAt", "durationMs", "message", "target"] {
        assert!(printed.get(key).is_some(), "{key} missing: {printed}");
    }
    // One structured JSON log line per phase on stderr, each with the correlation id.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert!(lines.len() >= 2, "{stderr}");
    assert!(
        lines.iter().all(|l| l["correlation_id"] == "abc"),
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l["phase"] == "done"), "{stderr}");
}

#[test]
fn flags_also_come_from_heal_environment_variables() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let out = heal_bin()
        .args(["scale", "deploy/web"])
        .env("HEAL_REPLICAS", "4")
        .env("HEAL_DRY_RUN", "true")
        .env("HEAL_OUTPUT", "json")
        .env("HEAL_KUBECONFIG", &e.kubeconfig)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_json(&out)["outcome"], "dry-run");
    let patch = e.server.assert_requested(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    );
    assert_eq!(patch.param("dryRun"), Some("All"));
    assert_eq!(
        e.server
            .get("apps/v1", "deployments", "default", "web")
            .unwrap()["spec"]["replicas"],
        1
    );
}

#[test]
fn restart_then_restart_again_is_a_noop_for_the_same_correlation_id() {
    let e = env();
    e.server.insert(deployment("default", "web", 2));
    let args = [
        "restart",
        "deploy/web",
        "--wait",
        "--correlation-id",
        "r1",
        "-o",
        "json",
    ];
    let first = e.run(&args);
    assert_eq!(
        code(&first),
        0,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(stdout_json(&first)["outcome"], "applied");
    let second = e.run(&args);
    assert_eq!(code(&second), 0);
    assert_eq!(stdout_json(&second)["outcome"], "noop");
}

#[test]
fn delete_with_a_stale_uid_leaves_the_replacement_alone() {
    let e = env();
    e.server.insert(pod("default", "db-0"));
    let old = e.server.get("v1", "pods", "default", "db-0").unwrap();
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    // First attempt deletes the pod with the UID precondition...
    let out = e.run(&["delete", "pod/db-0", "--uid", &old_uid, "-o", "json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_json(&out)["outcome"], "applied");
    let del = e
        .server
        .assert_requested("DELETE", "/api/v1/namespaces/default/pods/db-0");
    assert_eq!(del.body.unwrap()["preconditions"]["uid"], old_uid.as_str());
    // ...a StatefulSet recreates it under the same name, and the engine retries the step.
    let mut replacement = pod("default", "db-0");
    replacement["metadata"]["uid"] = "a-new-uid".into();
    e.server.insert(replacement);
    let new_uid = e.server.get("v1", "pods", "default", "db-0").unwrap()["metadata"]["uid"].clone();
    assert_ne!(new_uid, old_uid.as_str());
    e.server.clear_requests();
    let retry = e.run(&["delete", "pod/db-0", "--uid", &old_uid, "-o", "json"]);
    assert_eq!(code(&retry), 0);
    assert_eq!(stdout_json(&retry)["outcome"], "noop");
    e.server.assert_not_requested("DELETE", "");
    assert_eq!(
        e.server.get("v1", "pods", "default", "db-0").unwrap()["metadata"]["uid"],
        new_uid
    );
}

#[test]
fn patch_from_a_yaml_file() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let file = e.path("patch.yaml");
    std::fs::write(&file, "spec:\n  paused: true\n").unwrap();
    let out = e.run(&[
        "patch",
        "deploy/web",
        "--type",
        "merge",
        "--patch-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("applied: patched deployment/web"));
    assert_eq!(
        e.server
            .get("apps/v1", "deployments", "default", "web")
            .unwrap()["spec"]["paused"],
        true
    );
}

#[test]
fn drain_respects_a_pod_disruption_budget() {
    let e = env();
    e.server.insert(node("n1"));
    e.server.insert(node("n2"));
    let seeded = e.server.seed_deployment("default", "web", 2, &["n1", "n1"]);
    e.server.insert(pdb(
        "default",
        "web",
        &[("app", "web")],
        Budget::MaxUnavailable(1),
    ));
    // The budget lets one pod go; the second eviction waits until the timeout: exit 3.
    let out = e.run(&["drain", "node/n1", "--timeout", "2s", "-o", "json"]);
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stdout));
    let result = stdout_json(&out);
    assert_eq!(result["outcome"], "failed");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("evicted so far"),
        "{result}"
    );
    let left = e.server.names("v1", "pods", "default");
    assert_eq!(left.len(), 1, "exactly one pod evicted: {left:?}");
    assert!(seeded.pod_names().contains(&left[0]));
    assert_eq!(
        e.server.get("v1", "nodes", "", "n1").unwrap()["spec"]["unschedulable"],
        true
    );
}

#[test]
fn script_runs_lines_in_order_and_stops_at_the_first_failure() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let script = e.path("steps.txt");
    std::fs::write(
        &script,
        "# remedy for web\nscale deploy/web --replicas +1\n\nheal wait deploy/web --for rollout --timeout 5s\nscale deploy/missing --replicas 2\nrestart deploy/web\n",
    )
    .unwrap();
    let out = e.run(&[
        "script",
        script.to_str().unwrap(),
        "-o",
        "json",
        "--correlation-id",
        "s1",
    ]);
    assert_eq!(code(&out), 1, "the failing line's exit code");
    let result = stdout_json(&out);
    assert_eq!(result["action"], "script");
    assert_eq!(result["correlationId"], "s1");
    let steps = result["after"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{result}");
    assert_eq!(steps[0]["line"], 2);
    assert_eq!(steps[0]["result"]["outcome"], "applied");
    assert_eq!(steps[0]["result"]["correlationId"], "s1");
    assert_eq!(steps[2]["result"]["outcome"], "failed");
    assert!(
        result["message"].as_str().unwrap().starts_with("line 5"),
        "{result}"
    );
    e.server.assert_not_requested("PATCH", "/deployments/web?");
    assert_eq!(
        e.server
            .get("apps/v1", "deployments", "default", "web")
            .unwrap()["spec"]["replicas"],
        2
    );
}

#[test]
fn script_with_a_bad_line_runs_nothing() {
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let script = e.path("steps.txt");
    std::fs::write(&script, "scale deploy/web --replicas 2\nscale web\n").unwrap();
    let out = e.run(&["script", script.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    // One line on stderr, as every error; nothing on stdout.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("heal: ") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(e.server.requests().is_empty(), "{}", e.server.log_text());
}

#[test]
fn script_reads_stdin_as_an_argo_script_step_would_pass_a_file() {
    use std::io::Write;
    let e = env();
    e.server.insert(node("n1"));
    let mut child = heal_bin()
        .args(["script", "-", "--kubeconfig"])
        .arg(&e.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"cordon node/n1\nuncordon node/n1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(e.server.requests_to("PATCH", "/api/v1/nodes/n1").len(), 2);
}

#[test]
fn bad_input_gets_one_line_naming_the_problem_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&bad_kubeconfig, "clusters: [\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["frobnicate", "deploy/web"],
            "unrecognized subcommand 'frobnicate'",
        ),
        (
            vec!["scale", "web", "--replicas", "3"],
            "malformed resource address \"web\"",
        ),
        (
            vec!["scale", "gizmo/web", "--replicas", "3"],
            "unknown resource type \"gizmo\"",
        ),
        (
            vec![
                "patch",
                "deploy/web",
                "--type",
                "merge",
                "--patch",
                "{\"spec\":",
            ],
            "invalid patch",
        ),
        (
            vec![
                "patch",
                "deploy/web",
                "--type",
                "json",
                "--patch",
                "{\"op\":\"add\"}",
            ],
            "invalid JSON patch",
        ),
        (
            vec!["scale", "deploy/web", "--replicas", "3", "--min", "-1"],
            "negative",
        ),
        (
            vec!["scale", "deploy/web", "--replicas", "three"],
            "invalid replicas",
        ),
        (
            vec![
                "scale",
                "deploy/web",
                "--replicas",
                "3",
                "--kubeconfig",
                bad_kubeconfig.to_str().unwrap(),
            ],
            "kubeconfig",
        ),
        (
            vec![
                "scale",
                "deploy/web",
                "--replicas",
                "3",
                "--kubeconfig",
                "/nonexistent/kubeconfig",
            ],
            "cannot load kubeconfig /nonexistent/kubeconfig",
        ),
        (
            vec![
                "scale",
                "deploy/web",
                "--replicas",
                "3",
                "--timeout",
                "soon",
            ],
            "invalid duration",
        ),
    ];
    for (args, needle) in cases {
        let out = heal_bin().args(&args).output().unwrap();
        assert_eq!(code(&out), 2, "{args:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let text: Vec<&str> = all.lines().filter(|l| !l.starts_with('{')).collect();
        assert_eq!(text.len(), 1, "{args:?}: expected one line, got {all}");
        assert!(text[0].contains(needle), "{args:?}: {all}");
    }
}

#[test]
fn help_is_complete_with_an_example_per_action() {
    let out = heal_bin().arg("--help").output().unwrap();
    assert_eq!(code(&out), 0);
    let top = String::from_utf8_lossy(&out.stdout);
    for action in [
        "scale", "restart", "delete", "patch", "cordon", "uncordon", "drain", "wait", "verify",
        "report", "script",
    ] {
        assert!(top.contains(action), "{action} missing from --help");
        let out = heal_bin().args([action, "--help"]).output().unwrap();
        assert_eq!(code(&out), 0);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Example"), "{action} --help has no example");
        assert!(help.contains("HEAL_"), "{action} --help shows no env vars");
    }
}

/// heal's connections to the API server have Nagle's algorithm off (`TCP_NODELAY`), as
/// client-go's have: the first request follows the TLS handshake's last message at once,
/// instead of waiting a round trip for the server's ACK of it (kube-rs issue 2056). Seen in
/// the system calls heal makes, over TLS and over plain HTTP.
#[test]
fn connections_to_the_api_server_set_tcp_nodelay() {
    let Some(strace) = heal_testkit::tool_or_skip(
        &["strace"],
        "Debian package strace",
        heal_testkit::Required::InCi,
    ) else {
        return;
    };
    let e = env();
    e.server.insert(deployment("default", "web", 1));
    let tls = e.server.kubeconfig_tls(&e.path("."));
    for (n, kubeconfig) in [&tls, &e.kubeconfig].into_iter().enumerate() {
        let trace = e.path(&format!("strace-{n}.txt"));
        let out = without_heal_env(std::process::Command::new(&strace))
            .arg("-f")
            .args(["-e", "trace=setsockopt", "-o"])
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_heal"))
            .args(["scale", "deploy/web", "--replicas", &(2 + n).to_string()])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let calls = std::fs::read_to_string(&trace).unwrap();
        assert!(
            calls.contains("TCP_NODELAY, [1]") && !calls.contains("TCP_NODELAY, [0]"),
            "{}: {calls}",
            kubeconfig.display()
        );
    }
}
