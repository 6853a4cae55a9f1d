//! The offline commands end to end: `heal policy lint|test|rules` and `heal render` on the
//! shipped examples, bad policy files, and the rules through `promtool check rules`.

use std::path::{Path, PathBuf};
use std::process::Command;

use heal::offline::{OutputFormat, PolicyCommand, RenderArgs, run_policy, run_render};
use heal::render::Engine;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference_dir() -> PathBuf {
    heal_testkit::reference_dir()
}

fn examples() -> PathBuf {
    root().join("examples/policies")
}

fn policy(cmd: PolicyCommand) -> (i32, String) {
    let mut out = Vec::new();
    let code = run_policy(&cmd, &mut out);
    (code, String::from_utf8(out).expect("utf-8 output"))
}

fn render(alert: &Path, engine: Option<Engine>, output: OutputFormat) -> (i32, String) {
    let args = RenderArgs {
        policies: vec![examples()],
        alert: alert.to_path_buf(),
        engine,
        templates: None,
        image: Some("ghcr.io/heal-project/heal:test".into()),
        namespace: Some("heal-system".into()),
        report_url: Some("http://heald.heal-system:8080/v1/reports".into()),
        prometheus_url: None,
        tekton_embed_task: false,
        output,
    };
    let mut out = Vec::new();
    let code = run_render(&args, &mut out);
    (code, String::from_utf8(out).expect("utf-8 output"))
}

fn example_alerts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples/alerts"))
        .expect("examples/alerts")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_shipped_example_policies_lint_clean() {
    let (code, out) = policy(PolicyCommand::Lint {
        paths: vec![examples()],
    });
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok: 13 policies, 2 notifiers in 12 files"),
        "{out}"
    );
}

#[test]
fn the_shipped_policy_tests_pass() {
    let (code, out) = policy(PolicyCommand::Test {
        policies: examples(),
        tests: vec![examples().join("tests.yaml")],
    });
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_policy_test_prints_what_was_wanted_and_got() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tests = dir.path().join("t.yaml");
    std::fs::write(
        &tests,
        r#"tests:
  - name: crash loop in shop
    alert:
      labels: {alertname: KubePodCrashLooping, namespace: shop, pod: web-1, container: web}
    expect:
      decision: matched
      policy: stuck-rollout-restart
      steps:
        - name: delete-pod
          argv: [delete, pod/web-2, -n, shop]
  - name: unknown alert
    alert:
      labels: {alertname: Nope}
    expect: {decision: no-match}
"#,
    )
    .expect("write");
    let (code, out) = policy(PolicyCommand::Test {
        policies: examples(),
        tests: vec![tests],
    });
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL crash loop in shop"), "{out}");
    assert!(
        out.contains("- stuck-rollout-restart\n    + crash-loop-restart-pod"),
        "{out}"
    );
    assert!(out.contains("steps[0] (delete-pod) argv"), "{out}");
    assert!(out.contains("PASS unknown alert"), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn a_bad_policy_file_fails_lint_with_exit_code_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata: {name: x}\nspec:\n  match: {alertname: A}\n  target: {kind: node, name: n1}\n  steps:\n    - {name: a, action: cordon, after: [b]}\n    - {name: b, action: drain, after: [a]}\n",
    )
    .expect("write");
    let (code, out) = policy(PolicyCommand::Lint { paths: vec![bad] });
    assert_eq!(code, 1);
    assert_eq!(out, "1 error found\n");
    let (code, _) = policy(PolicyCommand::Lint {
        paths: vec![dir.path().join("missing.yaml")],
    });
    assert_eq!(code, 2, "an unreadable path is a usage error");
}

#[test]
fn rules_cover_every_flat_policy_with_the_alert_names_they_match() {
    let (code, out) = policy(PolicyCommand::Rules {
        paths: vec![examples()],
    });
    assert_eq!(code, 0, "{out}");
    for (alert, expr) in [
        ("HealHighCpu", "cpu_usage > 0.85"),
        ("HealCrashLoop", "restart_count > 3"),
        (
            "HealMemoryLeak",
            "container_memory_working_set_bytes > 1500000000",
        ),
        (
            "HealNodeDiskPressure",
            "(kube_node_status_condition{condition=\"DiskPressure\",status=\"true\"}) == 1",
        ),
    ] {
        assert!(
            out.contains(&format!("alert: {alert}\n")),
            "{alert} in\n{out}"
        );
        assert!(out.contains(expr), "{expr} in\n{out}");
    }
    assert!(out.contains("heal_policy: high-cpu"), "{out}");
}

#[test]
fn promtool_accepts_the_generated_rules() {
    if heal_testkit::tool_or_skip(
        &["promtool"],
        "apt-get install prometheus",
        heal_testkit::Required::InCi,
    )
    .is_none()
    {
        return;
    }
    let (code, out) = policy(PolicyCommand::Rules {
        paths: vec![examples()],
    });
    assert_eq!(code, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("heal-rules.yaml");
    std::fs::write(&file, out).expect("write");
    let res = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(res.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS: 4 rules found"), "{text}");
}

#[test]
fn every_example_alert_renders_for_every_engine() {
    for alert in example_alerts() {
        for engine in [Engine::Argo, Engine::Tekton, Engine::Local] {
            let (code, out) = render(&alert, Some(engine), OutputFormat::Yaml);
            assert_eq!(code, 0, "{} {engine}:\n{out}", alert.display());
            let resolved = alert.ends_with("node-ready-again.json");
            if resolved {
                // The uncordon policy answers the resolved alert.
                assert!(out.contains("uncordon"), "{out}");
            }
            assert!(
                out.starts_with("---\n"),
                "{} {engine}:\n{out}",
                alert.display()
            );
            let docs: Vec<serde_json::Value> = out
                .split("\n---\n")
                .map(|d| {
                    heal::yaml::from_str(d.trim_start_matches("---\n"))
                        .expect("rendered YAML parses")
                })
                .collect();
            assert!(!docs.is_empty());
        }
    }
}

#[test]
fn render_uses_the_policy_engine_unless_told_otherwise() {
    let alert = root().join("examples/alerts/stuck-rollout.json");
    let (code, out) = render(&alert, None, OutputFormat::Json);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["kind"], "PipelineRun", "the policy says engine: tekton");
    let (_, out) = render(&alert, Some(Engine::Argo), OutputFormat::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["kind"], "Workflow");
}

#[test]
fn the_same_alert_renders_the_same_run_name_twice() {
    let alert = root().join("examples/alerts/kube-pod-crash-looping.json");
    let (_, a) = render(&alert, Some(Engine::Argo), OutputFormat::Yaml);
    let (_, b) = render(&alert, Some(Engine::Argo), OutputFormat::Yaml);
    assert_eq!(a, b);
    assert!(a.contains("heal-crash-loop-restart-pod-"), "{a}");
}

#[test]
fn an_alert_no_policy_matches_renders_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.json");
    std::fs::write(
        &f,
        r#"{"labels": {"alertname": "Watchdog"}, "startsAt": "2026-08-20T10:00:00Z"}"#,
    )
    .expect("write");
    let (code, out) = render(&f, None, OutputFormat::Yaml);
    assert_eq!(code, 0);
    assert_eq!(out, "");
}

#[test]
fn a_malformed_alert_file_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.json");
    std::fs::write(&f, r#"{"version": "3", "alerts": []}"#).expect("write");
    let (code, out) = render(&f, None, OutputFormat::Yaml);
    assert_eq!(code, 2);
    assert_eq!(out, "");
}

#[test]
fn example_alerts_are_valid_alertmanager_webhook_bodies() {
    heal_testkit::require_reference!();
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(reference_dir().join("alertmanager/webhook-v4.schema.json"))
            .expect("webhook schema in HEAL_REFERENCE_DIR"),
    )
    .expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for alert in example_alerts() {
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&alert).expect("read")).expect("json");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", alert.display());
        heal::alert::Webhook::from_value(&body).expect("heal parses it");
    }
}

/// Run the real `heal` binary.
fn heal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(args)
        .current_dir(root())
        .env_remove("HEAL_POLICIES")
        .env_remove("HEAL_ENGINE")
        .output()
        .expect("run heal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn heal_policy_lint_prints_each_error_with_file_line_and_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata: {name: restart-web}\nspec:\n  match: {matchers: ['namespace=~\"(shop\"']}\n  steps:\n    - {name: restart, action: restrat}\n",
    )
    .expect("write");
    let bad = bad.to_str().expect("utf-8 path");
    let (code, out, err) = heal(&["policy", "lint", bad]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!("error: {bad}:4:1: missing `target`")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("error: {bad}:5:22: invalid matcher")),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("error: {bad}:7:31: unknown action \"restrat\"")),
        "{err}"
    );
    assert!(lines.iter().all(|l| l.contains("(hint: ")), "{err}");
    assert_eq!(out, "3 errors found\n");
}

#[test]
fn heal_policy_lint_and_test_pass_on_the_examples() {
    let (code, out, err) = heal(&["policy", "lint", "examples/policies"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 13 policies"), "{out}");
    let (code, out, err) = heal(&[
        "policy",
        "test",
        "examples/policies",
        "examples/policies/tests.yaml",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with(" passed, 0 failed\n"), "{out}");
}

#[test]
fn heal_policy_rules_prints_a_rule_file() {
    let (code, out, err) = heal(&["policy", "rules", "examples/policies/legacy-flat.yaml"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = heal::yaml::from_str(&out).expect("rule file parses");
    assert_eq!(v["groups"][0]["rules"][0]["alert"], "HealHighCpu");
    assert_eq!(v["groups"][0]["rules"][1]["for"], "10m");
}

#[test]
fn heal_render_reads_the_alert_from_stdin() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "render",
            "--policies",
            "examples/policies",
            "--engine",
            "local",
            "-o",
            "json",
        ])
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn heal");
    let body = std::fs::read(root().join("examples/alerts/stuck-rollout.json")).expect("alert");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&body)
        .expect("write stdin");
    let out = child.wait_with_output().expect("heal finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["kind"], "HealPlan");
    assert_eq!(v["spec"]["steps"][0]["argv"][0], "restart");
    assert_eq!(v["spec"]["target"]["name"], "frontend");
}

#[test]
fn heal_render_refuses_a_hostile_label_with_a_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.json");
    let alert = serde_json::json!({
        "labels": {
            "alertname": "KubeDeploymentRolloutStuck",
            "namespace": "shop",
            "deployment": "web\n---\nkind: Secret {{workflow.parameters.x}} $(params.x)",
        },
        "startsAt": "2026-08-20T10:00:00Z",
    });
    std::fs::write(&f, alert.to_string()).expect("write");
    let (code, out, err) = heal(&[
        "render",
        "--policies",
        "examples/policies",
        "--alert",
        f.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "", "nothing is rendered");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot be used as target.name"), "{err}");
    assert!(err.contains("stuck-rollout.yaml:"), "{err}");
}
