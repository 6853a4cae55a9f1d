//! Unit tests of loading, matching and planning.

use super::*;
use crate::alert::{Alert, LabelSet, Status};

const WEB: &str = r#"
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: scale-web
spec:
  match:
    alertname: KubeDeploymentReplicasMismatch
    matchers:
      - severity=~"warning|critical"
  target:
    kind: deployment
    namespace: "{{ labels.namespace }}"
    name: "{{ labels.deployment }}"
  engine: argo
  guards:
    cooldown: 30m
    failureBudget: {failures: 3, window: 1h}
    allowNamespaces: [shop, "team-*"]
  steps:
    - name: scale-up
      action: scale
      replicas: "+1"
      min: 2
      max: 10
    - name: verify
      action: verify
      after: [scale-up]
      query: 'kube_deployment_status_replicas_unavailable{namespace="{{ target.namespace }}", deployment="{{ target.name }}"} > 0'
      expect: empty
      timeout: 5m
  onSuccess: {silence: 2h}
"#;

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn alert(pairs: &[(&str, &str)]) -> Alert {
    Alert::new(labels(pairs))
}

fn load(text: &str) -> PolicySet {
    PolicySet::from_yaml("p.yaml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> String {
    match PolicySet::from_yaml("p.yaml", text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn web_alert() -> Alert {
    alert(&[
        ("alertname", "KubeDeploymentReplicasMismatch"),
        ("namespace", "shop"),
        ("deployment", "web"),
        ("severity", "critical"),
    ])
}

#[test]
fn a_full_policy_loads_with_every_field() {
    let set = load(WEB);
    let p = &set.policies[0];
    assert_eq!(p.name, "scale-web");
    assert_eq!(p.source.line, 5);
    assert_eq!(p.engine, Some(Engine::Argo));
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.steps[1].after, vec!["scale-up".to_string()]);
    assert_eq!(p.guards.cooldown, Some(Duration::from_secs(1800)));
    assert_eq!(
        p.guards.failure_budget,
        Some(FailureBudget {
            failures: 3,
            window: Duration::from_secs(3600)
        })
    );
    assert_eq!(p.on_success.silence, Some(Duration::from_secs(7200)));
    assert_eq!(p.target.name, ValueSource::Label("deployment".into()));
}

#[test]
fn the_plan_carries_exact_heal_command_lines() {
    let set = load(WEB);
    let a = web_alert();
    let plan = plan(&set.policies[0], &a, &PlanDefaults::default()).unwrap();
    let id = plan.correlation_id.clone();
    assert_eq!(
        plan.steps[0].argv(),
        [
            "scale",
            "deployment/web",
            "-n",
            "shop",
            "--replicas",
            "+1",
            "--min",
            "2",
            "--max",
            "10",
            "--allow-namespace",
            "shop",
            "--allow-namespace",
            "team-*",
            "--correlation-id",
            &id
        ]
    );
    assert_eq!(
        plan.steps[1].argv(),
        [
            "verify",
            "--query",
            r#"kube_deployment_status_replicas_unavailable{namespace="shop", deployment="web"} > 0"#,
            "--expect",
            "empty",
            "--timeout",
            "5m",
            "--correlation-id",
            &id
        ]
    );
    assert_eq!(plan.steps[1].timeout_seconds, 330);
    assert_eq!(plan.target.namespace, "shop");
    assert_eq!(plan.alertname, "KubeDeploymentReplicasMismatch");
}

#[test]
fn run_names_are_deterministic_valid_and_short() {
    let set = load(WEB);
    let a = web_alert();
    let d = PlanDefaults::default();
    let p1 = plan(&set.policies[0], &a, &d).unwrap();
    let p2 = plan(&set.policies[0], &a, &d).unwrap();
    assert_eq!(p1.run_name, p2.run_name);
    assert_eq!(p1.correlation_id, p2.correlation_id);
    assert!(
        p1.run_name.starts_with("heal-scale-web-"),
        "{}",
        p1.run_name
    );
    let mut later = a.clone();
    later.starts_at = "2026-01-01T00:00:00Z".parse().unwrap();
    let p3 = plan(&set.policies[0], &later, &d).unwrap();
    assert_ne!(p1.run_name, p3.run_name, "a new episode gets a new run");
    let long = run_name(&"x".repeat(63), "0123456789abcdef", "2026-01-01T00:00:00Z");
    assert!(long.len() <= 63, "{long}");
    assert!(crate::address::check_namespace(&long).is_ok(), "{long}");
    let dashy = run_name(&format!("{}-y", "a".repeat(46)), "0123456789abcdef", "t");
    assert!(!dashy.contains("--"), "{dashy}");
}

#[test]
fn hostile_label_values_are_refused_not_rendered() {
    let set = load(WEB);
    for bad in [
        "web\"; rm -rf /",
        "{{workflow.parameters.x}}",
        "$(params.x)",
        "a\n---\nb",
        &"w".repeat(1 << 20),
    ] {
        let mut a = web_alert();
        a.labels.insert("deployment".into(), bad.to_string());
        let e = plan(&set.policies[0], &a, &PlanDefaults::default()).unwrap_err();
        assert!(matches!(e, PlanError::InvalidLabel { .. }), "{e}");
        assert!(e.to_string().contains("target.name"), "{e}");
        assert!(e.to_string().len() < 400, "the message stays short");
    }
    let mut a = web_alert();
    a.labels.remove("namespace");
    let e = plan(&set.policies[0], &a, &PlanDefaults::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "policy scale-web: alert has no label \"namespace\", needed for target.namespace"
    );
}

#[test]
fn dry_run_puts_the_flag_on_every_step() {
    let set = load(&WEB.replace("  engine: argo\n", "  engine: argo\n  dryRun: true\n"));
    let plan = plan(&set.policies[0], &web_alert(), &PlanDefaults::default()).unwrap();
    assert!(plan.dry_run);
    assert!(
        plan.steps
            .iter()
            .all(|s| s.argv().contains(&"--dry-run".to_string()))
    );
}

const THREE: &str = r#"
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata: {name: first}
spec:
  match: {alertname: A}
  continue: true
  target: {kind: node, name: "{{ labels.node }}"}
  steps: [{name: cordon, action: cordon}]
---
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata: {name: second}
spec:
  match: {matchers: ['alertname=~"A|B"']}
  target: {kind: node, name: "{{ labels.node }}"}
  steps: [{name: drain, action: drain, minAvailable: 1}]
---
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata: {name: third}
spec:
  match: {alertname: A}
  target: {kind: node, name: "{{ labels.node }}"}
  steps: [{name: uncordon, action: uncordon}]
---
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata: {name: on-resolve}
spec:
  match: {alertname: C, status: resolved}
  target: {kind: node, name: "{{ labels.node }}"}
  steps: [{name: uncordon, action: uncordon}]
"#;

fn names<'a>(ms: &[Match<'a>]) -> Vec<(&'a str, Decision)> {
    ms.iter()
        .map(|m| (m.policy.name.as_str(), m.decision))
        .collect()
}

#[test]
fn first_match_wins_unless_continue_is_set() {
    let set = load(THREE);
    let a = alert(&[("alertname", "A"), ("node", "n1")]);
    assert_eq!(
        names(&decide(&set, &a)),
        [("first", Decision::Matched), ("second", Decision::Matched)]
    );
    let b = alert(&[("alertname", "B"), ("node", "n1")]);
    assert_eq!(names(&decide(&set, &b)), [("second", Decision::Matched)]);
}

#[test]
fn an_alert_no_policy_answers_is_no_match() {
    let set = load(THREE);
    assert!(decide(&set, &alert(&[("alertname", "Z")])).is_empty());
}

#[test]
fn status_filters_decide_what_resolved_alerts_do() {
    let set = load(THREE);
    let mut a = alert(&[("alertname", "A"), ("node", "n1")]);
    a.status = Status::Resolved;
    assert_eq!(names(&decide(&set, &a)), [("first", Decision::Resolved)]);
    let mut c = alert(&[("alertname", "C"), ("node", "n1")]);
    assert!(
        decide(&set, &c).is_empty(),
        "a resolved-only policy ignores firing alerts"
    );
    c.status = Status::Resolved;
    assert_eq!(
        names(&decide(&set, &c)),
        [("on-resolve", Decision::Matched)]
    );
}

#[test]
fn cluster_scoped_targets_have_no_namespace_flag() {
    let set = load(THREE);
    let a = alert(&[("alertname", "B"), ("node", "worker-1")]);
    let plan = plan(set.policy("second").unwrap(), &a, &PlanDefaults::default()).unwrap();
    assert_eq!(
        &plan.steps[0].argv()[..4],
        ["drain", "node/worker-1", "--min-available", "1"]
    );
    assert_eq!(plan.target.namespace, "");
}

const FLAT: &str = r#"- name: high-cpu
  condition: {metric: cpu_usage, operator: ">", threshold: 0.85, window: "5m"}
  action: {type: restart-pod, description: "Restart pod when CPU > 85% for 5 minutes"}
- name: crash-loop
  condition: {metric: restart_count, operator: ">", threshold: 3, window: "10m"}
  action: {type: scale-deployment, replicas: 4, description: "Scale up to 4 replicas"}
"#;

#[test]
fn the_flat_format_maps_onto_generated_alert_names() {
    let set = load(FLAT);
    assert_eq!(set.policies.len(), 2);
    let cpu = &set.policies[0];
    assert_eq!(cpu.flat.as_ref().unwrap().alertname, "HealHighCpu");
    assert_eq!(cpu.flat.as_ref().unwrap().expr(), "cpu_usage > 0.85");
    let a = alert(&[
        ("alertname", "HealHighCpu"),
        ("heal_policy", "high-cpu"),
        ("namespace", "shop"),
        ("pod", "web-7d4f"),
    ]);
    let ms = decide(&set, &a);
    assert_eq!(names(&ms), [("high-cpu", Decision::Matched)]);
    let p = plan(cpu, &a, &PlanDefaults::default()).unwrap();
    // A flat pod restart evicts, so a PodDisruptionBudget holds.
    assert_eq!(
        &p.steps[0].argv()[..7],
        [
            "delete",
            "pod/web-7d4f",
            "-n",
            "shop",
            "--evict",
            "--min-available",
            "1"
        ]
    );
    let crash = &set.policies[1];
    assert_eq!(crash.flat.as_ref().unwrap().expr(), "restart_count > 3");
    let a = alert(&[
        ("alertname", "HealCrashLoop"),
        ("heal_policy", "crash-loop"),
        ("namespace", "shop"),
        ("deployment", "web"),
    ]);
    let plan = plan(crash, &a, &PlanDefaults::default()).unwrap();
    assert_eq!(
        &plan.steps[0].argv()[..6],
        ["scale", "deployment/web", "-n", "shop", "--replicas", "4"]
    );
}

#[test]
fn the_flat_format_loads_inside_a_config_map_with_real_line_numbers() {
    let indented: String = FLAT.lines().map(|l| format!("    {l}\n")).collect();
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: heal-policies\ndata:\n  policies.yaml: |\n{indented}"
    );
    let set = load(&cm);
    assert_eq!(set.policies.len(), 2);
    assert_eq!(set.policies[1].source.line, 10);
    let bad = cm.replace("type: scale-deployment", "type: explode");
    let e = errors(&bad);
    assert!(e.starts_with("p.yaml:12:22: unknown action type"), "{e}");
    assert!(e.contains("unknown action type \"explode\""), "{e}");
}

#[test]
fn flat_and_new_formats_mix_in_one_set() {
    let set = PolicySet::parse(&[
        SourceFile::new("a.yaml", FLAT),
        SourceFile::new("b.yaml", WEB),
    ])
    .unwrap();
    assert_eq!(set.policies.len(), 3);
    let rules = prometheus_rules(&set);
    assert_eq!(rules.groups[0].rules.len(), 2);
    assert_eq!(rules.groups[0].rules[0].alert, "HealHighCpu");
    assert_eq!(rules.groups[0].rules[0].for_, "5m");
    assert_eq!(rules.groups[0].rules[1].for_, "10m");
}

fn bad(find: &str, replace: &str) -> String {
    assert!(WEB.contains(find), "{find}");
    errors(&WEB.replacen(find, replace, 1))
}

#[test]
fn an_unknown_field_is_an_error_at_its_line() {
    let e = bad("  engine: argo\n", "  engine: argo\n  enigne: tekton\n");
    assert!(
        e.starts_with("p.yaml:16:3: spec: unknown field `enigne`"),
        "{e}"
    );
    assert!(e.contains("unknown field `enigne`"), "{e}");
    assert!(e.contains("hint:"), "{e}");
}

#[test]
fn a_missing_target_is_an_error_with_an_example() {
    let e = bad(
        "  target:\n    kind: deployment\n    namespace: \"{{ labels.namespace }}\"\n    name: \"{{ labels.deployment }}\"\n",
        "",
    );
    assert!(e.starts_with("p.yaml:6:1: missing `target`"), "{e}");
    assert!(e.contains("kind: deployment"), "{e}");
}

#[test]
fn an_unknown_action_is_an_error_at_the_action() {
    let e = bad("action: scale", "action: scael");
    assert!(
        e.starts_with("p.yaml:22:15: unknown action \"scael\""),
        "{e}"
    );
    assert!(e.contains("scale, restart"), "{e}");
}

#[test]
fn a_duplicate_step_name_is_an_error_at_the_second() {
    let e = bad("- name: verify", "- name: scale-up");
    assert!(
        e.starts_with("p.yaml:26:13: duplicate step name \"scale-up\""),
        "{e}"
    );
}

#[test]
fn a_dependency_on_a_missing_step_names_the_known_ones() {
    let e = bad("after: [scale-up]", "after: [scale-upp]");
    assert!(
        e.starts_with("p.yaml:28:15: step \"verify\" runs after \"scale-upp\""),
        "{e}"
    );
    assert!(e.contains("name one of: scale-up, verify"), "{e}");
}

#[test]
fn a_cycle_is_an_error_naming_its_steps() {
    let e = bad("      max: 10\n", "      max: 10\n      after: [verify]\n");
    assert!(e.contains("steps form a cycle"), "{e}");
    assert!(e.contains("scale-up") && e.contains("verify"), "{e}");
    assert!(e.starts_with("p.yaml:29:"), "{e}");
}

#[test]
fn an_invalid_regex_is_an_error_at_the_matcher() {
    let e = bad(r#"severity=~"warning|critical""#, r#"severity=~"(warning""#);
    assert!(e.starts_with("p.yaml:10:9: invalid matcher"), "{e}");
    assert!(e.contains("invalid regex"), "{e}");
}

#[test]
fn an_invalid_duration_is_an_error_with_examples() {
    let e = bad("cooldown: 30m", "cooldown: 30 minutes");
    assert!(
        e.starts_with("p.yaml:17:15: invalid duration \"30 minutes\""),
        "{e}"
    );
    assert!(e.contains("1h30m"), "{e}");
}

#[test]
fn a_duplicate_policy_name_points_at_both() {
    let e = PolicySet::parse(&[
        SourceFile::new("a.yaml", WEB),
        SourceFile::new("b.yaml", WEB),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "b.yaml:5:9: duplicate policy name \"scale-web\" (first defined at a.yaml:5)"
        ),
        "{e}"
    );
}

#[test]
fn an_unquoted_plus_one_is_refused_instead_of_read_as_one() {
    let e = bad("replicas: \"+1\"", "replicas: +1");
    assert!(
        e.starts_with("p.yaml:23:17: replicas: YAML reads the unquoted +1"),
        "{e}"
    );
    assert!(e.contains("quote"), "{e}");
}

#[test]
fn target_values_must_be_whole_labels_or_valid_names() {
    let e = bad(
        "name: \"{{ labels.deployment }}\"",
        "name: \"web-{{ labels.deployment }}\"",
    );
    assert!(e.contains("mixes text and placeholders"), "{e}");
    let e = bad("name: \"{{ labels.deployment }}\"", "name: Web_App");
    assert!(e.contains("invalid target name \"Web_App\""), "{e}");
    let e = bad("kind: deployment", "kind: node");
    assert!(e.contains("cluster-scoped"), "{e}");
}

#[test]
fn arguments_of_another_action_are_refused() {
    let e = bad("      min: 2\n", "      min: 2\n      wait: true\n");
    assert!(
        e.contains("`wait` is not an argument of action scale"),
        "{e}"
    );
}

#[test]
fn unknown_placeholders_and_notifiers_are_refused() {
    let e = bad("{{ target.name }}", "{{ workflow.name }}");
    assert!(e.contains("unknown placeholder {{ workflow.name }}"), "{e}");
    let e = bad(
        "  onSuccess: {silence: 2h}\n",
        "  onSuccess: {silence: 2h}\n  onFailure: {notify: [pager]}\n",
    );
    assert!(e.contains("unknown notifier \"pager\""), "{e}");
    let with_notifier = format!(
        "{}\n---\napiVersion: heal.dev/v1alpha1\nkind: Notifier\nmetadata: {{name: pager}}\nspec: {{type: slack, urlFrom: {{env: SLACK_URL}}}}\n",
        WEB.replace(
            "  onSuccess: {silence: 2h}\n",
            "  onSuccess: {silence: 2h}\n  onFailure: {notify: [pager]}\n"
        )
    );
    let set = load(&with_notifier);
    assert_eq!(
        set.notifier("pager").unwrap().url,
        UrlSource::Env("SLACK_URL".into())
    );
}

#[test]
fn every_error_of_a_file_is_reported() {
    let text = WEB
        .replace("action: scale", "action: scael")
        .replace("cooldown: 30m", "cooldown: soon");
    let e = PolicySet::from_yaml("p.yaml", &text).unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
}

#[test]
fn a_document_without_kind_gets_a_hint() {
    let e = errors("name: x\nspec: {}\n");
    assert!(e.contains("document has no `kind`"), "{e}");
    assert!(e.contains("HealingPolicy"), "{e}");
}

#[test]
fn a_yaml_syntax_error_names_its_line() {
    let e = errors(
        "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata: {name: x\nspec: {}\n",
    );
    assert!(e.starts_with("p.yaml:4:"), "{e}");
    assert!(e.contains("hint: check the YAML syntax"), "{e}");
}

#[test]
fn test_files_are_skipped_in_directories_but_refused_when_named() {
    let tests = "tests:\n  - name: x\n";
    let mut f = SourceFile::new("dir/tests.yaml", tests);
    f.from_directory = true;
    assert!(PolicySet::parse(&[f]).unwrap().policies.is_empty());
    let e = errors(tests);
    assert!(e.contains("heal policy test POLICIES TESTS.yaml"), "{e}");
}

#[test]
fn a_wrong_api_version_is_refused_with_the_right_one() {
    let e = bad("apiVersion: heal.dev/v1alpha1", "apiVersion: heal.dev/v1");
    assert!(
        e.starts_with("p.yaml:2:13: unsupported apiVersion \"heal.dev/v1\""),
        "{e}"
    );
    assert!(e.contains("heal.dev/v1alpha1"), "{e}");
}

#[test]
fn a_step_longer_than_the_policy_timeout_is_refused() {
    let e = bad("  engine: argo\n", "  engine: argo\n  timeout: 4m\n");
    assert!(
        e.contains("longer than the policy's timeout of 240s"),
        "{e}"
    );
}

const CONTROLLERS: &str = r#"
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: controllers
spec:
  match: {alertname: A}
  target: {kind: deployment, namespace: shop, name: web}
  steps:
    - {name: scale, action: scale, replicas: 3, hpa: raise-min, gitOps: allow, argocdTracking: label}
    - {name: restart, action: restart, gitOps: allow, after: [scale]}
    - {name: apply, action: patch, type: apply, patch: {spec: {paused: false}}, forceConflicts: true, gitOps: refuse, after: [restart]}
---
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: pods-and-nodes
spec:
  match: {alertname: B}
  target: {kind: node, name: "{{ labels.node }}"}
  steps:
    - {name: cordon, action: cordon, maxUnschedulable: "25%"}
    - {name: drain, action: drain, maxUnschedulable: 2, after: [cordon]}
---
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: evict
spec:
  match: {alertname: C}
  target: {kind: pod, namespace: shop, name: "{{ labels.pod }}"}
  steps:
    - {name: evict, action: delete, evict: true, minAvailable: 1}
"#;

#[test]
fn controller_fields_of_steps_become_heal_flags() {
    let set = load(CONTROLLERS);
    let argv = |policy: &str, labels: &[(&str, &str)]| {
        let p = set.policy(policy).unwrap();
        let mut pairs = vec![("alertname", "x")];
        pairs.extend_from_slice(labels);
        plan(p, &alert(&pairs), &PlanDefaults::default())
            .unwrap()
            .steps
            .into_iter()
            .map(|s| {
                let n = s
                    .argv()
                    .iter()
                    .position(|a| a == "--correlation-id")
                    .unwrap();
                s.argv()[..n].join(" ")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        argv("controllers", &[]),
        [
            "scale deployment/web -n shop --allow-gitops --replicas 3 --hpa raise-min --argocd-tracking label",
            "restart deployment/web -n shop --allow-gitops",
            "patch deployment/web -n shop --force-conflicts --type apply --patch {\"spec\":{\"paused\":false}}",
        ]
    );
    assert_eq!(
        argv("pods-and-nodes", &[("node", "n1")]),
        [
            "cordon node/n1 --max-unschedulable 25%",
            "drain node/n1 --max-unschedulable 2",
        ]
    );
    assert_eq!(
        argv("evict", &[("pod", "web-1")]),
        ["delete pod/web-1 -n shop --evict --min-available 1"]
    );
}

#[test]
fn bad_controller_fields_are_errors_with_their_line() {
    let e = errors(
        r#"
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: bad
spec:
  match: {alertname: A}
  target: {kind: deployment, namespace: shop, name: web}
  steps:
    - name: scale
      action: scale
      replicas: 3
      hpa: raise
      gitOps: yes-please
      argocdTracking: labels
    - name: merge
      action: patch
      type: merge
      patch: {spec: {paused: false}}
      forceConflicts: true
    - name: cordon
      action: cordon
      maxUnschedulable: "150%"
    - name: restart
      action: restart
      evict: true
    - name: drain
      action: drain
      maxUnschedulable: -1
"#,
    );
    for needle in [
        "p.yaml:13:",
        "invalid hpa \"raise\"",
        "p.yaml:14:",
        "invalid gitOps \"yes-please\"",
        "p.yaml:15:",
        "invalid argocdTracking \"labels\"",
        "p.yaml:20:",
        "forceConflicts is for server-side apply",
        "p.yaml:23:",
        "invalid maxUnschedulable \"150%\"",
        "p.yaml:26:",
        "`evict` is not an argument of action restart",
        "p.yaml:29:",
        "invalid maxUnschedulable \"-1\"",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

// ----- notifiers -----

fn notifier_doc(spec: &str) -> String {
    format!("apiVersion: heal.dev/v1alpha1\nkind: Notifier\nmetadata:\n  name: n\nspec:\n{spec}")
}

#[test]
fn pagerduty_opsgenie_and_teams_notifiers_load_with_their_defaults() {
    let set = load(&format!(
        "{}\n---\n{}\n---\n{}\n---\n{}",
        notifier_doc("  type: pagerduty\n  routingKeyFile: /etc/heald/pagerduty/key\n")
            .replace("name: n", "name: pager"),
        notifier_doc(
            "  type: opsgenie\n  apiKeyEnv: OPSGENIE_KEY\n  region: eu\n  priority: P1\n  \
             responders: [{type: team, name: sre}]\n  tags: [shop]\n  sendResolved: false\n"
        )
        .replace("name: n", "name: genie"),
        notifier_doc("  type: teams\n  urlFile: /etc/heald/teams/url\n")
            .replace("name: n", "name: channel"),
        notifier_doc("  type: teams\n  urlEnv: TEAMS_URL\n").replace("name: n", "name: channel2"),
    ));
    let pd = set.notifier("pager").unwrap();
    assert_eq!(pd.kind, NotifierKind::PagerDuty);
    assert_eq!(pd.url, UrlSource::Literal(PAGERDUTY_EVENTS_URL.into()));
    assert_eq!(
        pd.key,
        Some(SecretSource::File("/etc/heald/pagerduty/key".into()))
    );
    assert_eq!(pd.vendor.severity, "error");
    assert!(pd.vendor.send_resolved);
    let og = set.notifier("genie").unwrap();
    assert_eq!(og.url, UrlSource::Literal(OPSGENIE_EU_API_URL.into()));
    assert_eq!(og.key, Some(SecretSource::Env("OPSGENIE_KEY".into())));
    assert_eq!(og.vendor.priority, "P1");
    assert_eq!(
        og.vendor.responders,
        [Responder {
            kind: "team".into(),
            by: "name",
            value: "sre".into()
        }]
    );
    assert_eq!(og.vendor.tags, ["shop"]);
    assert!(!og.vendor.send_resolved);
    assert_eq!(
        set.notifier("channel").unwrap().url,
        UrlSource::File("/etc/heald/teams/url".into())
    );
    assert_eq!(
        set.notifier("channel2").unwrap().url,
        UrlSource::Env("TEAMS_URL".into())
    );
    let us = load(&notifier_doc("  type: opsgenie\n  apiKeyFile: /k\n"));
    assert_eq!(
        us.notifier("n").unwrap().url,
        UrlSource::Literal(OPSGENIE_API_URL.into())
    );
}

#[test]
fn notifier_mistakes_are_reported_at_their_line() {
    let cases = [
        (
            "  type: pagerduty\n  routingKey: abc123\n",
            "p.yaml:7:",
            "`routingKey` is a secret and cannot be written in a policy file",
        ),
        (
            "  type: pagerduty\n",
            "p.yaml:6:",
            "notifier needs its routing key",
        ),
        (
            "  type: pagerduty\n  routingKeyFile: /k\n  severity: page\n",
            "p.yaml:8:",
            "invalid PagerDuty severity \"page\"",
        ),
        (
            "  type: opsgenie\n  apiKeyFile: /k\n  apiKeyEnv: K\n",
            "p.yaml:8:",
            "give `apiKeyFile` or `apiKeyEnv`, not both",
        ),
        (
            "  type: opsgenie\n  apiKeyEnv: K\n  region: asia\n",
            "p.yaml:8:",
            "unknown Opsgenie region \"asia\"",
        ),
        (
            "  type: opsgenie\n  apiKeyEnv: K\n  priority: high\n",
            "p.yaml:8:",
            "invalid Opsgenie priority \"high\"",
        ),
        (
            "  type: opsgenie\n  apiKeyEnv: K\n  responders:\n    - {type: team}\n",
            "p.yaml:9:",
            "a responder needs exactly one of `id`, `name` or `username`",
        ),
        (
            "  type: teams\n  url: https://example/a\n  urlFile: /u\n",
            "p.yaml:6:",
            "notifier has more than one URL source",
        ),
        (
            "  type: teams\n  urlFile: /u\n  routingKeyFile: /k\n",
            "p.yaml:8:",
            "`routingKeyFile` is not a field of teams notifiers (only of pagerduty)",
        ),
        (
            "  type: slack\n  urlEnv: U\n  severity: info\n",
            "p.yaml:8:",
            "`severity` is not a field of slack notifiers (only of pagerduty)",
        ),
        (
            "  type: pager\n",
            "p.yaml:6:",
            "unknown notifier type \"pager\" (hint: use webhook, slack, pagerduty, opsgenie or teams)",
        ),
    ];
    for (spec, at, message) in cases {
        let e = errors(&notifier_doc(spec));
        assert!(
            e.starts_with(at) && e.contains(message),
            "{spec:?}: want {at} {message}, got:\n{e}"
        );
        assert!(!e.contains("abc123"), "a key is never echoed: {e}");
    }
}
