//! Rendering plans into Argo Workflows, Tekton PipelineRuns and local HealPlans: validity
//! against the engines' strict schemas, golden files, hostile alert values, DAG checks,
//! user templates, and the manifests shipped in `argo/` and `tekton/`.
//!
//! Schemas come from `$HEAL_REFERENCE_DIR/schemas/` (default `../shared/reference`).
//! `HEAL_BLESS=1 cargo test --test policies render::` rewrites the golden files in `tests/golden/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use heal::plan::{Plan, PlanStep, PlanTarget};
use heal::render::{
    DEFAULT_REPORT_TOKEN_SECRET, Engine, HealPlan, REPORT_TOKEN_DIR, REPORT_TOKEN_FILE,
    RenderError, RenderOptions, Rendered, Renderer, check_manifest, render,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Fixtures

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference_dir() -> PathBuf {
    heal_testkit::reference_dir()
}

/// The correlation id of the fixture plans' steps.
const FIXTURE_CID: &str = "6f1c2b1e-5d7a-5b8e-9a3c-2f4e6d8a0b1c";

/// A plan step running `heal ARGV --correlation-id FIXTURE_CID`.
fn step(name: &str, argv: &[&str], after: &[&str]) -> PlanStep {
    let mut line: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    line.extend(["--correlation-id".into(), FIXTURE_CID.into()]);
    PlanStep {
        name: name.into(),
        action: argv[0].into(),
        heal: heal::cli::parse_step(&line).expect("a heal step"),
        after: after.iter().map(|s| s.to_string()).collect(),
        retries: 2,
        timeout_seconds: 300,
        service_account: None,
    }
}

/// Crash-looping deployment: scale up, restart, then verify that the alert stopped.
fn crash_loop_plan() -> Plan {
    Plan {
        run_name: "heal-crash-loop-4b1c9e0d6a2f7e31-1f3a9c".into(),
        run_namespace: "heal".into(),
        policy: "crash-loop".into(),
        fingerprint: "4b1c9e0d6a2f7e31".into(),
        alertname: "KubePodCrashLooping".into(),
        starts_at: "2026-11-27T20:00:00Z".into(),
        correlation_id: "6f1c2b1e-5d7a-5b8e-9a3c-2f4e6d8a0b1c".into(),
        addressed: None,
        target: PlanTarget {
            kind: "deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        },
        steps: vec![
            step(
                "scale-up",
                &["scale", "deployment/web", "-n", "shop", "--replicas", "4"],
                &[],
            ),
            step(
                "restart",
                &["restart", "deployment/web", "-n", "shop", "--wait"],
                &["scale-up"],
            ),
            PlanStep {
                retries: 0,
                timeout_seconds: 600,
                ..step(
                    "verify",
                    &[
                        "verify",
                        "--query",
                        "sum(rate(kube_pod_container_status_restarts_total{namespace=\"shop\"}[5m])) == 0",
                        "--timeout",
                        "10m",
                    ],
                    &["restart"],
                )
            },
        ],
        deadline_seconds: 900,
        service_account: "heal-runner".into(),
        image: "ghcr.io/heal-project/heal:0.1.0".into(),
        dry_run: false,
        approval: None,
        report_url: Some("http://heald.heal.svc:8080/v1/reports".into()),
    }
}

/// Node not ready: cordon and drain in parallel with an event, a step with its own service
/// account, a diamond-shaped DAG, a cluster-scoped target and a dry run.
fn node_drain_plan() -> Plan {
    let mut drain = step(
        "drain",
        &["drain", "node/worker-1", "--timeout", "5m"],
        &["cordon"],
    );
    drain.service_account = Some("heal-node-drainer".into());
    Plan {
        run_name: "heal-node-not-ready-9f8e7d6c5b4a3921-77aa01".into(),
        run_namespace: "heal".into(),
        policy: "node-not-ready".into(),
        fingerprint: "9f8e7d6c5b4a3921".into(),
        alertname: "KubeNodeNotReady".into(),
        starts_at: "2026-11-27T21:15:00Z".into(),
        correlation_id: "0d9c8b7a-6f5e-5d4c-8b3a-291807f6e5d4".into(),
        addressed: None,
        target: PlanTarget {
            kind: "node".into(),
            namespace: String::new(),
            name: "worker-1".into(),
        },
        steps: vec![
            step("cordon", &["cordon", "node/worker-1"], &[]),
            drain,
            step(
                "wait-pods-gone",
                &["wait", "node/worker-1", "--for", "delete", "--timeout", "5m"],
                &["cordon"],
            ),
            step(
                "verify",
                &["verify", "--query", "kube_node_status_condition{node=\"worker-1\",condition=\"Ready\",status=\"true\"} == 1", "--timeout", "5m"],
                &["drain", "wait-pods-gone"],
            ),
        ],
        deadline_seconds: 1800,
        service_account: "heal-runner".into(),
        image: "ghcr.io/heal-project/heal@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        dry_run: true,
        approval: None,
        report_url: None,
    }
}

fn fixture_plans() -> Vec<(&'static str, Plan)> {
    vec![
        ("crash-loop", crash_loop_plan()),
        ("node-not-ready", node_drain_plan()),
    ]
}

fn opts() -> RenderOptions {
    RenderOptions::default()
}

fn embed_opts() -> RenderOptions {
    RenderOptions {
        tekton_embed_task: true,
        ..RenderOptions::default()
    }
}

// ---------------------------------------------------------------------------------------
// Schemas

fn load_schema(file: &str) -> jsonschema::Validator {
    let path = reference_dir().join("schemas").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {} (set HEAL_REFERENCE_DIR to the reference directory): {e}",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn schema_for(kind: &str) -> &'static jsonschema::Validator {
    static ARGO_WF: OnceLock<jsonschema::Validator> = OnceLock::new();
    static ARGO_WFT: OnceLock<jsonschema::Validator> = OnceLock::new();
    static ARGO_CWFT: OnceLock<jsonschema::Validator> = OnceLock::new();
    static TEKTON_PR: OnceLock<jsonschema::Validator> = OnceLock::new();
    static TEKTON_TASK: OnceLock<jsonschema::Validator> = OnceLock::new();
    match kind {
        "Workflow" => ARGO_WF.get_or_init(|| load_schema("crd-argo-workflow.strict.schema.json")),
        "WorkflowTemplate" => {
            ARGO_WFT.get_or_init(|| load_schema("crd-argo-workflowtemplate.strict.schema.json"))
        }
        "ClusterWorkflowTemplate" => ARGO_CWFT
            .get_or_init(|| load_schema("crd-argo-clusterworkflowtemplate.strict.schema.json")),
        "PipelineRun" => TEKTON_PR
            .get_or_init(|| load_schema("crd-tekton-pipelinerun-v1.composed-strict.schema.json")),
        "Task" => TEKTON_TASK.get_or_init(|| load_schema("crd-tekton-task-v1.strict.schema.json")),
        other => panic!("no schema for kind {other}"),
    }
}

/// Every schema violation of `value`, one per line (empty when valid).
fn schema_errors(value: &Value) -> String {
    let kind = value["kind"].as_str().expect("kind");
    schema_for(kind)
        .iter_errors(value)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_schema_valid(what: &str, value: &Value) {
    let errors = schema_errors(value);
    assert!(
        errors.is_empty(),
        "{what} violates the {} schema:\n{errors}",
        value["kind"]
    );
}

// ---------------------------------------------------------------------------------------
// Helpers

fn render_ok(plan: &Plan, engine: Engine, opts: &RenderOptions) -> Rendered {
    render(plan, engine, opts)
        .unwrap_or_else(|e| panic!("rendering {} for {engine}: {e}", plan.policy))
}

fn render_err(plan: &Plan, engine: Engine) -> String {
    match render(plan, engine, &opts()) {
        Ok(r) => panic!("rendering for {engine} should fail, got:\n{}", r.yaml),
        Err(e) => e.to_string(),
    }
}

/// Argo: the step templates the DAG runs, by task name (the approval gate's suspend
/// template is not a step).
fn argo_step_templates(value: &Value) -> BTreeMap<String, Value> {
    let templates = value["spec"]["templates"].as_array().unwrap();
    let by_name: BTreeMap<&str, &Value> = templates
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t))
        .collect();
    let main = by_name[value["spec"]["entrypoint"].as_str().unwrap()];
    main["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["template"] != heal::approval::GATE_TASK)
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                by_name[t["template"].as_str().unwrap()].clone(),
            )
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The steps of a rendered object as (name, image, command, args), whatever the engine.
fn rendered_steps(r: &Rendered, plan: &Plan) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    match r.engine {
        Engine::Argo => argo_step_templates(&r.value)
            .into_iter()
            .map(|(name, t)| {
                let c = &t["container"];
                (
                    name,
                    c["image"].as_str().unwrap().to_string(),
                    strings(&c["command"]),
                    strings(&c["args"]),
                )
            })
            .collect(),
        Engine::Tekton => r.value["spec"]["pipelineSpec"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let image = match t.get("taskSpec") {
                    Some(spec) => spec["steps"][0]["image"].as_str().unwrap().to_string(),
                    None => plan.image.clone(), // the installed Task's image
                };
                (
                    t["name"].as_str().unwrap().to_string(),
                    image,
                    vec!["heal".to_string()],
                    strings(&t["params"][0]["value"]),
                )
            })
            .collect(),
        Engine::Local => {
            let doc: HealPlan = serde_json::from_value(r.value.clone()).unwrap();
            doc.spec
                .steps
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        doc.spec.image.clone(),
                        vec!["heal".to_string()],
                        s.argv().clone(),
                    )
                })
                .collect()
        }
    }
}

/// The rendered steps are exactly the plan's: same names, image, command `heal`, and the
/// plan's argv at the front of the arguments.
fn assert_steps_are_the_plans(r: &Rendered, plan: &Plan) {
    let steps = rendered_steps(r, plan);
    let mut names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    let mut want: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    want.sort();
    assert_eq!(names, want, "{} tasks", r.engine);
    for (name, image, command, args) in steps {
        let step = plan.steps.iter().find(|s| s.name == name).unwrap();
        assert_eq!(image, plan.image, "{} step {name} image", r.engine);
        assert_eq!(command, ["heal"], "{} step {name} command", r.engine);
        assert_eq!(
            &args[..step.argv().len()],
            step.argv().as_slice(),
            "{} step {name} args",
            r.engine
        );
    }
}

fn golden(name: &str, actual: &str) {
    let path = crate_dir().join("tests/golden").join(name);
    if std::env::var_os("HEAL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading golden file {} ({e}); run with HEAL_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered output from line {} on:\n  golden:   {:?}\n  rendered: {:?}\nrun with HEAL_BLESS=1 to accept the new output",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rendering the fixture plans

#[test]
fn rendered_argo_workflows_validate_against_the_strict_workflow_schema() {
    heal_testkit::require_reference!();
    for (name, plan) in fixture_plans() {
        let r = render_ok(&plan, Engine::Argo, &opts());
        assert_schema_valid(&format!("the Argo Workflow for {name}"), &r.value);
        assert_steps_are_the_plans(&r, &plan);
    }
}

#[test]
fn rendered_tekton_pipelineruns_validate_against_the_strict_pipelinerun_schema() {
    heal_testkit::require_reference!();
    for (name, plan) in fixture_plans() {
        for o in [opts(), embed_opts()] {
            let r = render_ok(&plan, Engine::Tekton, &o);
            assert_schema_valid(
                &format!(
                    "the Tekton PipelineRun for {name} (embed task: {})",
                    o.tekton_embed_task
                ),
                &r.value,
            );
            assert_steps_are_the_plans(&r, &plan);
        }
    }
}

#[test]
fn rendered_output_matches_the_golden_files() {
    for (name, plan) in fixture_plans() {
        golden(
            &format!("argo-{name}.yaml"),
            &render_ok(&plan, Engine::Argo, &opts()).yaml,
        );
        golden(
            &format!("tekton-{name}.yaml"),
            &render_ok(&plan, Engine::Tekton, &opts()).yaml,
        );
        golden(
            &format!("tekton-embedded-{name}.yaml"),
            &render_ok(&plan, Engine::Tekton, &embed_opts()).yaml,
        );
        golden(
            &format!("local-{name}.yaml"),
            &render_ok(&plan, Engine::Local, &opts()).yaml,
        );
    }
}

#[test]
fn the_argo_workflow_uses_the_engines_safety_features() {
    let plan = crash_loop_plan();
    let wf = render_ok(&plan, Engine::Argo, &opts()).value;
    let meta = &wf["metadata"];
    assert_eq!(meta["name"], plan.run_name.as_str());
    assert!(meta.get("generateName").is_none());
    assert_eq!(meta["namespace"], "heal");
    assert_eq!(meta["labels"]["heal.dev/policy"], "crash-loop");
    assert_eq!(meta["labels"]["heal.dev/fingerprint"], "4b1c9e0d6a2f7e31");
    assert_eq!(
        meta["labels"]["heal.dev/correlation-id"],
        plan.correlation_id.as_str()
    );
    assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "heald");

    let spec = &wf["spec"];
    assert_eq!(spec["activeDeadlineSeconds"], 900);
    assert_eq!(spec["serviceAccountName"], "heal-runner");
    assert_eq!(
        spec["synchronization"]["mutexes"][0]["name"],
        "heal-shop-deployment-web"
    );
    assert!(spec["ttlStrategy"]["secondsAfterCompletion"].is_u64());
    assert_eq!(spec["podGC"]["strategy"], "OnPodSuccess");

    let steps = argo_step_templates(&wf);
    let scale = &steps["scale-up"];
    assert_eq!(scale["retryStrategy"]["limit"], 2);
    assert_eq!(
        scale["retryStrategy"]["expression"],
        "asInt(lastRetry.exitCode) == 3"
    );
    assert_eq!(scale["retryStrategy"]["backoff"]["factor"], 2);
    assert_eq!(scale["activeDeadlineSeconds"], 300);
    let args = strings(&scale["container"]["args"]);
    assert_eq!(
        args,
        [
            "scale",
            "deployment/web",
            "-n",
            "shop",
            "--replicas",
            "4",
            "--correlation-id",
            plan.correlation_id.as_str(),
            "--result-file",
            "/tmp/heal-result.json",
        ]
    );
    assert_eq!(
        scale["outputs"]["parameters"][0]["valueFrom"]["path"],
        "/tmp/heal-result.json"
    );

    let tasks = spec["templates"][0]["dag"]["tasks"].as_array().unwrap();
    let restart = tasks.iter().find(|t| t["name"] == "restart").unwrap();
    assert_eq!(restart["depends"], "scale-up.Succeeded");

    let exit_name = spec["onExit"].as_str().unwrap();
    let exit = spec["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == exit_name)
        .unwrap();
    let exit_args = strings(&exit["container"]["args"]);
    assert_eq!(exit_args[0], "report");
    assert!(exit_args.contains(&"{{workflow.status}}".to_string()));
    assert!(exit_args.contains(&plan.run_name));
    assert!(exit_args.contains(&plan.correlation_id));
    assert!(exit_args.contains(plan.report_url.as_ref().unwrap()));
}

#[test]
fn a_step_with_its_own_service_account_runs_as_it_and_the_others_as_the_plans() {
    let plan = node_drain_plan();
    let wf = render_ok(&plan, Engine::Argo, &opts()).value;
    let steps = argo_step_templates(&wf);
    assert_eq!(steps["drain"]["serviceAccountName"], "heal-node-drainer");
    assert!(steps["cordon"].get("serviceAccountName").is_none());
    assert_eq!(wf["spec"]["serviceAccountName"], "heal-runner");

    let pr = render_ok(&plan, Engine::Tekton, &opts()).value;
    assert_eq!(
        pr["spec"]["taskRunTemplate"]["serviceAccountName"],
        "heal-runner"
    );
    assert_eq!(
        pr["spec"]["taskRunSpecs"],
        json!([{"pipelineTaskName": "drain", "serviceAccountName": "heal-node-drainer"}])
    );
}

#[test]
fn a_dry_run_plan_passes_dry_run_to_every_step_but_not_to_the_report() {
    let plan = node_drain_plan();
    let wf = render_ok(&plan, Engine::Argo, &opts()).value;
    for (name, t) in argo_step_templates(&wf) {
        let args = strings(&t["container"]["args"]);
        assert!(args.contains(&"--dry-run".to_string()), "{name}: {args:?}");
    }
    assert_eq!(wf["metadata"]["labels"]["heal.dev/dry-run"], "true");
    let pr = render_ok(&plan, Engine::Tekton, &opts()).value;
    for t in pr["spec"]["pipelineSpec"]["tasks"].as_array().unwrap() {
        assert!(strings(&t["params"][0]["value"]).contains(&"--dry-run".to_string()));
    }
    let report = strings(&pr["spec"]["pipelineSpec"]["finally"][0]["params"][0]["value"]);
    assert!(!report.contains(&"--dry-run".to_string()));
}

#[test]
fn the_tekton_pipelinerun_uses_finally_timeouts_retries_and_the_heal_task() {
    let plan = crash_loop_plan();
    let pr = render_ok(&plan, Engine::Tekton, &opts()).value;
    assert_eq!(pr["apiVersion"], "tekton.dev/v1");
    assert_eq!(pr["metadata"]["name"], plan.run_name.as_str());
    assert_eq!(pr["metadata"]["labels"]["heal.dev/policy"], "crash-loop");
    let spec = &pr["spec"];
    assert_eq!(
        spec["timeouts"],
        json!({"pipeline": "1020s", "tasks": "900s", "finally": "120s"})
    );
    let tasks = spec["pipelineSpec"]["tasks"].as_array().unwrap();
    let restart = tasks.iter().find(|t| t["name"] == "restart").unwrap();
    assert_eq!(restart["taskRef"], json!({"kind": "Task", "name": "heal"}));
    assert_eq!(restart["runAfter"], json!(["scale-up"]));
    assert_eq!(restart["retries"], 2);
    assert_eq!(restart["timeout"], "300s");
    assert_eq!(restart["params"][0]["name"], "args");
    let finally = &spec["pipelineSpec"]["finally"][0];
    let report = strings(&finally["params"][0]["value"]);
    assert_eq!(report[0], "report");
    assert!(
        report.contains(&"$(tasks.status)".to_string()),
        "{report:?}"
    );
    let results = spec["pipelineSpec"]["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .any(|r| r["value"] == "$(tasks.verify.results.outcome)"),
        "{results:?}"
    );
}

#[test]
fn an_embedded_tekton_task_runs_the_plans_image_with_the_args_param() {
    let plan = crash_loop_plan();
    let pr = render_ok(&plan, Engine::Tekton, &embed_opts()).value;
    for t in pr["spec"]["pipelineSpec"]["tasks"].as_array().unwrap() {
        assert!(t.get("taskRef").is_none());
        let step = &t["taskSpec"]["steps"][0];
        assert_eq!(step["image"], plan.image.as_str());
        assert_eq!(step["command"], json!(["heal"]));
        assert_eq!(step["args"][0], "$(params.args[*])");
        assert_eq!(t["taskSpec"]["params"][0]["type"], "array");
        assert_eq!(t["taskSpec"]["results"][0]["name"], "outcome");
    }
}

#[test]
fn the_local_engine_gets_the_plan_itself_as_a_healplan_document() {
    let plan = crash_loop_plan();
    let r = render_ok(&plan, Engine::Local, &opts());
    assert_eq!(r.value["kind"], "HealPlan");
    let doc: HealPlan = heal::yaml::from_str(&r.yaml).unwrap();
    assert_eq!(doc.spec, plan);
    assert_eq!(doc.metadata.name, plan.run_name);
    assert_eq!(doc.metadata.labels["heal.dev/engine"], "local");
}

#[test]
fn rendering_the_same_plan_twice_gives_the_same_bytes() {
    let renderer = Renderer::new(opts()).unwrap();
    for engine in Engine::ALL {
        let a = renderer.render(&crash_loop_plan(), engine).unwrap();
        let b = renderer.render(&crash_loop_plan(), engine).unwrap();
        assert_eq!(a.yaml, b.yaml, "{engine}");
    }
}

// ---------------------------------------------------------------------------------------
// The example policies with their sample alerts

/// Every (alert file, policy, plan) the examples produce: each sample alert in
/// `examples/alerts/` through the policies of `examples/policies/`, as heald would plan it.
fn example_plans() -> Vec<(String, Plan)> {
    let set = heal::offline::load_policies(&[crate_dir().join("examples/policies")])
        .unwrap_or_else(|e| panic!("examples/policies load: {e:?}"));
    let defaults = heal::policy::PlanDefaults {
        image: "ghcr.io/heal-project/heal:0.1.0".into(),
        report_url: Some("http://heald.heal-system.svc:8080/v1/reports".into()),
        ..heal::policy::PlanDefaults::default()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("examples/alerts"))
        .expect("examples/alerts")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut plans = Vec::new();
    for file in files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let alerts = heal::alert::parse_alerts(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for alert in &alerts {
            for m in heal::policy::decide(&set, alert) {
                if m.decision != heal::policy::Decision::Matched {
                    continue;
                }
                let plan = heal::policy::plan(m.policy, alert, &defaults)
                    .unwrap_or_else(|e| panic!("{stem}: policy {}: {e}", m.policy.name));
                plans.push((format!("{stem}--{}", m.policy.name), plan));
            }
        }
    }
    assert!(
        plans.len() >= 6,
        "the examples should give a plan for most sample alerts, got {}",
        plans.len()
    );
    plans
}

#[test]
fn every_example_policy_renders_for_every_engine_and_validates_against_the_strict_schemas() {
    heal_testkit::require_reference!();
    for (name, plan) in example_plans() {
        for (engine, o) in [
            (Engine::Argo, opts()),
            (Engine::Tekton, opts()),
            (Engine::Tekton, embed_opts()),
            (Engine::Local, opts()),
        ] {
            let r = render_ok(&plan, engine, &o);
            assert_steps_are_the_plans(&r, &plan);
            if engine != Engine::Local {
                assert_schema_valid(&format!("{engine} run for example {name}"), &r.value);
            }
        }
    }
}

#[test]
fn the_example_policies_render_as_in_the_golden_files() {
    let mut sizes = Vec::new();
    for (name, plan) in example_plans() {
        for engine in [Engine::Argo, Engine::Tekton, Engine::Local] {
            let r = render_ok(&plan, engine, &opts());
            golden(&format!("examples/{engine}-{name}.yaml"), &r.yaml);
            sizes.push(format!(
                "{engine} {name}: {} bytes YAML, {} bytes JSON",
                r.yaml.len(),
                r.value.to_string().len()
            ));
        }
    }
    println!("{}", sizes.join("\n"));
}

#[test]
fn every_service_account_an_example_policy_names_is_shipped_with_the_manifests() {
    let shipped: Vec<String> = manifest_docs("argo")
        .into_iter()
        .filter(|(_, v)| v["kind"] == "ServiceAccount")
        .map(|(_, v)| v["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for (name, plan) in example_plans() {
        let mut accounts = vec![plan.service_account.clone()];
        accounts.extend(plan.steps.iter().filter_map(|s| s.service_account.clone()));
        for sa in accounts {
            assert!(
                shipped.contains(&sa),
                "example {name} runs as {sa}, not in argo/: {shipped:?}"
            );
        }
        assert_eq!(plan.run_namespace, "heal-system", "example {name}");
    }
}

// ---------------------------------------------------------------------------------------
// Hostile values

/// Set a verify step's query.
fn set_query(step: &mut PlanStep, query: String) {
    match &mut step.heal.action {
        heal::step::StepAction::Verify(v) => v.query = query,
        other => panic!("not a verify step: {other:?}"),
    }
}

/// A plan whose alert-derived values (fingerprint, alert name, start time, and an argument
/// a policy copied from a label) are `value`.
fn hostile_plan(value: &str) -> Plan {
    let mut plan = crash_loop_plan();
    plan.fingerprint = value.into();
    plan.alertname = value.into();
    plan.starts_at = value.into();
    set_query(&mut plan.steps[2], format!("up{{reason=\"{value}\"}} == 0"));
    plan
}

#[test]
fn hostile_values_end_up_as_quoted_data_and_never_change_the_steps() {
    heal_testkit::require_reference!();
    let values = [
        "it's \"quoted\" \\ back\\slashed",
        "line one\nline two\r\n\ttabbed",
        "---\nkind: Secret\n...\n",
        "\n- name: injected\n  image: evil:latest\n",
        "\"\nspec:\n  serviceAccountName: cluster-admin\n",
        "# comment: &anchor *alias !!binary",
        "}} ] } ) $ { ( [",
        "\u{0085}\u{2028}\u{2029}\u{feff}\u{7f}\u{1}",
        "emoji 😀 and invalid-utf8-as-text \\xff\\xfe and U+FFFD \u{fffd}",
    ];
    for v in values {
        let plan = hostile_plan(v);
        for (engine, o) in [
            (Engine::Argo, opts()),
            (Engine::Tekton, opts()),
            (Engine::Tekton, embed_opts()),
            (Engine::Local, opts()),
        ] {
            let r = render_ok(&plan, engine, &o);
            assert_steps_are_the_plans(&r, &plan);
            if engine != Engine::Local {
                assert_schema_valid(&format!("{engine} with hostile value {v:?}"), &r.value);
            }
            // The raw value survives, as data, in the annotations.
            assert_eq!(
                r.value["metadata"]["annotations"]["heal.dev/alertname"], v,
                "{engine}"
            );
            let label = r.value["metadata"]["labels"]["heal.dev/alertname"]
                .as_str()
                .unwrap();
            assert!(heal::render::is_label_value(label), "{label:?}");
            // Nothing else was added: one object, the plan's service account.
            let docs: Vec<Value> = heal::yaml::from_str_multi(&r.yaml).unwrap();
            assert_eq!(docs.len(), 1, "{engine}: {v:?}");
        }
    }
}

/// The OOM example alert with some labels replaced, as Alertmanager would send it.
fn oom_alert_with(labels: &[(&str, &str)], fingerprint: Option<&str>) -> Vec<u8> {
    let path = crate_dir().join("examples/alerts/oom-killed.json");
    let mut body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for (k, v) in labels {
        body["alerts"][0]["labels"][*k] = json!(v);
        body["alerts"][0]["annotations"]["summary"] = json!(v);
    }
    if let Some(fp) = fingerprint {
        body["alerts"][0]["fingerprint"] = json!(fp);
    }
    serde_json::to_vec(&body).unwrap()
}

/// Alert in, plan and every engine's manifest out, or the first error as text.
fn alert_to_runs(body: &[u8]) -> Result<Vec<(Plan, Rendered)>, String> {
    let set = heal::offline::load_policies(&[crate_dir().join("examples/policies")])
        .map_err(|e| format!("{e:?}"))?;
    let defaults = heal::policy::PlanDefaults::default();
    let mut out = Vec::new();
    for alert in heal::alert::parse_alerts(body).map_err(|e| e.to_string())? {
        for m in heal::policy::decide(&set, &alert) {
            let plan =
                heal::policy::plan(m.policy, &alert, &defaults).map_err(|e| e.to_string())?;
            for engine in Engine::ALL {
                let r = render(&plan, engine, &opts()).map_err(|e| e.to_string())?;
                out.push((plan.clone(), r));
            }
        }
    }
    Ok(out)
}

/// A rendered step as far as safety goes: name, image, command, action, argument count.
type StepShape = (String, String, Vec<String>, String, usize);

#[test]
fn hostile_alerts_are_refused_or_run_exactly_the_policys_steps() {
    let benign = alert_to_runs(&oom_alert_with(&[], None)).expect("the example renders");
    let shape = |runs: &[(Plan, Rendered)]| -> Vec<(Engine, Vec<StepShape>)> {
        runs.iter()
            .map(|(plan, r)| {
                let steps = rendered_steps(r, plan)
                    .into_iter()
                    .map(|(name, image, command, args)| {
                        (name, image, command, args[0].clone(), args.len())
                    })
                    .collect();
                (r.engine, steps)
            })
            .collect()
    };
    let want = shape(&benign);
    let megabyte = "m".repeat(1 << 20);
    let hostile = [
        "it's \"quoted\"",
        "multi\nline\n---\nkind: Secret",
        "{{workflow.parameters.x}}",
        "$(params.x)",
        "--- \n- name: evil\n  image: evil",
        "x\"}}]}}}}, \"--kubeconfig\", \"/evil",
        "\u{85}\u{2028}\u{feff}😀",
        megabyte.as_str(),
    ];
    let (mut refused, mut rendered) = (0, 0);
    for v in hostile {
        for (labels, fp) in [
            (vec![("container", v)], None),
            (vec![("deployment", v)], None),
            (vec![("namespace", v)], None),
            (vec![], Some(v)),
        ] {
            match alert_to_runs(&oom_alert_with(&labels, fp)) {
                Err(e) => {
                    refused += 1;
                    assert!(!e.is_empty());
                    assert!(
                        e.len() < 4096,
                        "an error message should not echo 1 MB: {} bytes: {}",
                        e.len(),
                        &e[..300]
                    );
                }
                Ok(runs) => {
                    rendered += 1;
                    assert_eq!(
                        shape(&runs),
                        want,
                        "label {labels:?} / fingerprint {fp:?} = {v:?}"
                    );
                }
            }
        }
    }
    assert_eq!(rendered + refused, hostile.len() * 4);
    // The comparison is not vacuous: other, harmless values render with the same shape.
    let other = alert_to_runs(&oom_alert_with(
        &[
            ("container", "sidecar-2"),
            ("deployment", "billing"),
            ("namespace", "team-a"),
        ],
        Some("0123456789abcdef"),
    ))
    .expect("harmless values render");
    assert_eq!(shape(&other), want);
    assert_ne!(
        other
            .iter()
            .map(|(_, r)| r.yaml.clone())
            .collect::<Vec<_>>(),
        benign
            .iter()
            .map(|(_, r)| r.yaml.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn alerts_with_invalid_utf8_are_refused_before_any_plan_is_made() {
    let body = oom_alert_with(&[("container", "PLACEHOLDER")], None);
    let text = String::from_utf8(body).unwrap();
    let escaped = text.replace("PLACEHOLDER", "bad\\udc80escape").into_bytes();
    assert!(alert_to_runs(&escaped).is_err());
    let mut raw = text.into_bytes();
    let at = raw.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
    raw[at] = 0xff;
    raw[at + 1] = 0xfe;
    assert!(alert_to_runs(&raw).is_err());
}

#[test]
fn values_with_engine_substitutions_are_refused_naming_the_field() {
    for (v, field) in [
        ("{{workflow.parameters.x}}", "plan.fingerprint"),
        ("{{=sprig.env(\"HOME\")}}", "plan.fingerprint"),
        ("$(params.x)", "plan.fingerprint"),
        ("$(context.taskRun.name)", "plan.fingerprint"),
        ("$(HOME)", "plan.fingerprint"),
    ] {
        for engine in Engine::ALL {
            let err = render_err(&hostile_plan(v), engine);
            assert!(
                err.starts_with(&format!("{field}: contains")),
                "{engine}: {err}"
            );
        }
    }
    let mut plan = crash_loop_plan();
    plan.steps[0].heal.common.namespace = Some("$(params.namespace)".into());
    let err = render_err(&plan, Engine::Tekton);
    assert!(
        err.starts_with("plan.steps[0].argv[3]: contains \"$(\""),
        "{err}"
    );
    plan.steps[0].heal.common.namespace = Some("a{{workflow.name}}".into());
    let err = render_err(&plan, Engine::Argo);
    assert!(
        err.starts_with("plan.steps[0].argv[3]: contains \"{{\""),
        "{err}"
    );
}

#[test]
fn a_one_megabyte_value_is_refused_with_its_size() {
    let huge = "x".repeat(1 << 20);
    for engine in Engine::ALL {
        let err = render_err(&hostile_plan(&huge), engine);
        assert!(err.contains("plan.fingerprint"), "{err}");
        assert!(err.contains("1048576 bytes"), "{err}");
    }
    // Raising the limit lets it through, still as quoted data.
    let o = RenderOptions {
        max_value_bytes: 2 << 20,
        ..opts()
    };
    let mut plan = crash_loop_plan();
    set_query(&mut plan.steps[2], huge.clone());
    let r = render_ok(&plan, Engine::Argo, &o);
    assert_steps_are_the_plans(&r, &plan);
}

#[test]
fn a_plan_with_non_utf8_escapes_in_json_is_refused_before_rendering() {
    // heald reads HealPlans and alerts as JSON; a lone surrogate is not a string at all.
    let mut v = serde_json::to_value(crash_loop_plan()).unwrap();
    v["alertname"] = json!("placeholder");
    let text = v.to_string().replace("placeholder", "bad \\udc80 escape");
    let err = serde_json::from_str::<Plan>(&text).unwrap_err();
    assert!(err.to_string().contains("surrogate"), "{err}");
}

type PlanEdit = Box<dyn Fn(&mut Plan)>;

#[test]
fn names_that_are_not_kubernetes_names_are_refused() {
    let cases: Vec<(PlanEdit, &str)> = vec![
        (Box::new(|p| p.run_name = "Heal_Run".into()), "plan.runName"),
        (Box::new(|p| p.run_name = "a".repeat(64)), "plan.runName"),
        (
            Box::new(|p| p.run_namespace = "heal\nkind: Secret".into()),
            "plan.runNamespace",
        ),
        (
            Box::new(|p| p.target.name = "web\"; rm -rf /".into()),
            "plan.target.name",
        ),
        (
            Box::new(|p| p.target.namespace = "Shop".into()),
            "plan.target.namespace",
        ),
        (
            Box::new(|p| p.service_account = "cluster admin".into()),
            "plan.serviceAccount",
        ),
        (
            Box::new(|p| p.steps[0].name = "Scale Up".into()),
            "plan.steps[0].name",
        ),
        (
            Box::new(|p| p.image = "evil image:latest".into()),
            "plan.image",
        ),
        (
            Box::new(|p| p.correlation_id = "not a label value!".into()),
            "plan.correlationId",
        ),
    ];
    for (mutate, field) in cases {
        let mut plan = crash_loop_plan();
        mutate(&mut plan);
        for engine in Engine::ALL {
            let err = render_err(&plan, engine);
            assert!(err.starts_with(field), "{engine}: {err}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// DAG checks

#[test]
fn a_step_after_a_missing_step_is_refused() {
    let mut plan = crash_loop_plan();
    plan.steps[1].after = vec!["scale-down".into()];
    for engine in Engine::ALL {
        let err = render(&plan, engine, &opts()).unwrap_err();
        assert!(
            matches!(err, RenderError::MissingDependency { .. }),
            "{engine}: {err}"
        );
        assert_eq!(
            err.to_string(),
            "plan.steps[1].after: step \"restart\" runs after \"scale-down\", which is not a step of this run"
        );
    }
}

#[test]
fn steps_that_depend_on_each_other_in_a_cycle_are_refused() {
    let mut plan = crash_loop_plan();
    plan.steps[0].after = vec!["verify".into()];
    for engine in Engine::ALL {
        let err = render(&plan, engine, &opts()).unwrap_err();
        let RenderError::Cycle { cycle, .. } = &err else {
            panic!("{engine}: expected a cycle, got {err}");
        };
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4, "{cycle:?}");
        assert!(err.to_string().contains("cycle"), "{err}");
    }
}

#[test]
fn duplicate_and_reserved_step_names_are_refused() {
    let mut plan = crash_loop_plan();
    plan.steps[1].name = "scale-up".into();
    assert!(render_err(&plan, Engine::Argo).contains("names two steps"));
    let mut plan = crash_loop_plan();
    plan.steps[0].name = "heal-report".into();
    plan.steps[1].after = vec!["heal-report".into()];
    assert!(render_err(&plan, Engine::Tekton).contains("reserved"));
    let mut plan = crash_loop_plan();
    plan.steps[0].name = "1-scale".into();
    plan.steps[1].after = vec!["1-scale".into()];
    assert!(render_err(&plan, Engine::Argo).contains("starts with a digit"));
    assert!(render(&plan, Engine::Tekton, &opts()).is_ok());
}

/// A manifest rendered correctly, then altered: the checks heald runs before submitting
/// catch what a broken or malicious template would produce.
fn tampered(engine: Engine, o: &RenderOptions, alter: impl Fn(&mut Value)) -> String {
    let plan = crash_loop_plan();
    let mut value = render_ok(&plan, engine, o).value;
    alter(&mut value);
    check_manifest(&plan, engine, &value, o)
        .expect_err("the altered manifest should be rejected")
        .to_string()
}

#[test]
fn a_rendered_dag_with_a_missing_dependency_or_a_cycle_is_rejected() {
    let o = opts();
    let err = tampered(Engine::Argo, &o, |v| {
        v["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = json!("scale-down.Succeeded");
    });
    assert!(err.contains("\"scale-down\", which is not a step"), "{err}");
    let err = tampered(Engine::Argo, &o, |v| {
        v["spec"]["templates"][0]["dag"]["tasks"][0]["depends"] = json!("verify.Succeeded");
    });
    assert!(err.contains("cycle"), "{err}");
    let err = tampered(Engine::Tekton, &o, |v| {
        v["spec"]["pipelineSpec"]["tasks"][0]["runAfter"] = json!(["verify"]);
    });
    assert!(err.contains("cycle"), "{err}");
    let err = tampered(Engine::Tekton, &o, |v| {
        v["spec"]["pipelineSpec"]["tasks"][2]["runAfter"] = json!(["nope"]);
    });
    assert!(err.contains("\"nope\", which is not a step"), "{err}");
}

#[test]
fn a_rendered_manifest_that_changes_tasks_images_or_commands_is_rejected() {
    let o = opts();
    for (what, alter) in [
        (
            "an extra task",
            Box::new(|v: &mut Value| {
                let tasks = v["spec"]["templates"][0]["dag"]["tasks"]
                    .as_array_mut()
                    .unwrap();
                tasks.push(json!({"name": "extra", "template": "step-verify"}));
            }) as Box<dyn Fn(&mut Value)>,
        ),
        (
            "a missing task",
            Box::new(|v: &mut Value| {
                v["spec"]["templates"][0]["dag"]["tasks"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
        ),
        (
            "another image",
            Box::new(|v: &mut Value| {
                v["spec"]["templates"][1]["container"]["image"] = json!("evil:latest");
            }),
        ),
        (
            "another command",
            Box::new(|v: &mut Value| {
                v["spec"]["templates"][1]["container"]["command"] = json!(["sh", "-c"]);
            }),
        ),
        (
            "other arguments",
            Box::new(|v: &mut Value| {
                v["spec"]["templates"][1]["container"]["args"][5] = json!("0");
            }),
        ),
        (
            "a sidecar",
            Box::new(|v: &mut Value| {
                v["spec"]["templates"][1]["sidecars"] =
                    json!([{"name": "x", "image": "evil:latest"}]);
            }),
        ),
        (
            "a workflow parameter reference",
            Box::new(|v: &mut Value| {
                v["metadata"]["annotations"]["x"] = json!("{{workflow.parameters.x}}");
            }),
        ),
        (
            "a generateName",
            Box::new(|v: &mut Value| {
                v["metadata"]["generateName"] = json!("heal-");
            }),
        ),
        (
            "another service account",
            Box::new(|v: &mut Value| {
                v["spec"]["serviceAccountName"] = json!("cluster-admin");
            }),
        ),
    ] {
        let err = tampered(Engine::Argo, &o, alter);
        assert!(
            err.starts_with("the rendered argo manifest"),
            "{what}: {err}"
        );
    }
    let err = tampered(Engine::Tekton, &o, |v| {
        v["spec"]["pipelineSpec"]["tasks"][0]["taskRef"]["name"] = json!("kubectl");
    });
    assert!(err.contains("taskRef.name"), "{err}");
    let err = tampered(Engine::Tekton, &o, |v| {
        v["spec"]["pipelineSpec"]["tasks"][0]["params"][0]["value"][1] = json!("deployment/db");
    });
    assert!(err.contains("params"), "{err}");
    let err = tampered(Engine::Tekton, &o, |v| {
        v["spec"]["pipelineSpec"]["finally"][0]["params"][0]["value"][8] = json!("$(params.x)");
    });
    assert!(err.contains("finally"), "{err}");
}

// ---------------------------------------------------------------------------------------
// heald's token for the report step

/// Every place in `v` where `key` is an object key, as `spec.templates[4].volumes[0].secret`.
fn key_paths(v: &Value, key: &str) -> Vec<String> {
    fn walk(v: &Value, path: String, key: &str, out: &mut Vec<String>) {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    if k == key {
                        out.push(join(k));
                    }
                    walk(val, join(k), key, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), key, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), key, &mut out);
    out
}

/// The Secret volume (Argo) or workspace binding (Tekton) the report step gets.
fn token_secret(secret: &str) -> Value {
    json!({
        "name": "heal-report-token",
        "secret": {
            "secretName": secret,
            "optional": true,
            "items": [{"key": "token", "path": "token"}],
        },
    })
}

fn token_env() -> Value {
    json!([{"name": "HEAL_REPORT_TOKEN_FILE", "value": REPORT_TOKEN_FILE}])
}

/// Argo: the index of the exit handler in `spec.templates`.
fn argo_exit_index(wf: &Value) -> usize {
    let exit = wf["spec"]["onExit"].as_str().unwrap();
    wf["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t["name"] == exit)
        .unwrap()
}

#[test]
fn only_the_report_step_mounts_healds_token_secret_and_is_told_where_it_is() {
    let plan = crash_loop_plan();
    let wf = render_ok(&plan, Engine::Argo, &opts()).value;
    let ei = argo_exit_index(&wf);
    let exit = &wf["spec"]["templates"][ei];
    assert_eq!(exit["volumes"], json!([token_secret("heald-token")]));
    assert_eq!(exit["container"]["env"], token_env());
    let mounts = exit["container"]["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.contains(
            &json!({"name": "heal-report-token", "mountPath": REPORT_TOKEN_DIR, "readOnly": true})
        ),
        "{mounts:?}"
    );
    assert_eq!(REPORT_TOKEN_FILE, format!("{REPORT_TOKEN_DIR}/token"));
    // Nothing else: one Secret, one environment, and no step mounts the token.
    assert_eq!(
        key_paths(&wf, "secret"),
        [format!("spec.templates[{ei}].volumes[0].secret")]
    );
    assert_eq!(
        key_paths(&wf, "env"),
        [format!("spec.templates[{ei}].container.env")]
    );
    assert!(key_paths(&wf, "secretKeyRef").is_empty());
    for (name, t) in argo_step_templates(&wf) {
        assert!(t.get("volumes").is_none(), "step {name} has volumes");
        let mounts = t["container"]["volumeMounts"].to_string();
        assert!(
            !mounts.contains("heal-report-token"),
            "step {name}: {mounts}"
        );
    }
    assert!(!wf["spec"]["volumes"].to_string().contains("secret"));

    for o in [opts(), embed_opts()] {
        let pr = render_ok(&plan, Engine::Tekton, &o).value;
        let spec = &pr["spec"];
        assert_eq!(spec["workspaces"], json!([token_secret("heald-token")]));
        assert_eq!(
            spec["pipelineSpec"]["workspaces"][0]["name"],
            "heal-report-token"
        );
        let report = &spec["pipelineSpec"]["finally"][0];
        assert_eq!(
            report["workspaces"],
            json!([{"name": "heal-report-token", "workspace": "heal-report-token"}])
        );
        for t in spec["pipelineSpec"]["tasks"].as_array().unwrap() {
            assert!(t.get("workspaces").is_none(), "step {} binds it", t["name"]);
        }
        assert_eq!(
            spec["taskRunSpecs"],
            json!([{"pipelineTaskName": "heal-report", "podTemplate": {"env": token_env()}}])
        );
        assert_eq!(key_paths(&pr, "secret"), ["spec.workspaces[0].secret"]);
        assert_eq!(
            key_paths(&pr, "env"),
            ["spec.taskRunSpecs[0].podTemplate.env"]
        );
        assert!(key_paths(&pr, "secretKeyRef").is_empty());
        if o.tekton_embed_task {
            let decl = &report["taskSpec"]["workspaces"][0];
            assert_eq!(decl["mountPath"], REPORT_TOKEN_DIR);
            assert_eq!(decl["readOnly"], true);
            assert_eq!(decl["optional"], true);
        }
    }
}

#[test]
fn a_step_with_its_own_service_account_and_the_report_token_share_tekton_task_run_specs() {
    heal_testkit::require_reference!();
    let mut plan = node_drain_plan();
    plan.report_url = Some("https://heald.example.com/v1/reports".into());
    let pr = render_ok(&plan, Engine::Tekton, &opts()).value;
    assert_eq!(
        pr["spec"]["taskRunSpecs"],
        json!([
            {"pipelineTaskName": "drain", "serviceAccountName": "heal-node-drainer"},
            {"pipelineTaskName": "heal-report", "podTemplate": {"env": token_env()}},
        ])
    );
    assert_schema_valid("the PipelineRun with both", &pr);
}

#[test]
fn a_run_without_a_report_url_or_without_a_token_secret_mounts_no_secret() {
    let no_url = node_drain_plan();
    assert!(no_url.report_url.is_none());
    let no_secret = RenderOptions {
        report_token_secret: None,
        ..opts()
    };
    for (plan, o) in [
        (no_url, opts()),
        (node_drain_plan(), no_secret.clone()),
        (crash_loop_plan(), no_secret),
    ] {
        for engine in [Engine::Argo, Engine::Tekton] {
            let r = render_ok(&plan, engine, &o);
            assert!(key_paths(&r.value, "secret").is_empty(), "{engine}");
            assert!(key_paths(&r.value, "env").is_empty(), "{engine}");
            assert!(!r.yaml.contains("HEAL_REPORT_TOKEN_FILE"), "{engine}");
            assert!(r.value["spec"].get("workspaces").is_none(), "{engine}");
        }
    }
}

#[test]
fn the_token_secret_name_comes_from_the_render_options() {
    heal_testkit::require_reference!();
    let o = RenderOptions {
        report_token_secret: Some("team-a.heald-token".into()),
        ..opts()
    };
    let plan = crash_loop_plan();
    let wf = render_ok(&plan, Engine::Argo, &o).value;
    let ei = argo_exit_index(&wf);
    assert_eq!(
        wf["spec"]["templates"][ei]["volumes"],
        json!([token_secret("team-a.heald-token")])
    );
    assert_schema_valid("Argo with another Secret", &wf);
    let pr = render_ok(&plan, Engine::Tekton, &o).value;
    assert_eq!(
        pr["spec"]["workspaces"],
        json!([token_secret("team-a.heald-token")])
    );
    // A manifest made for one Secret does not pass the checks for another.
    let err = check_manifest(&plan, Engine::Argo, &wf, &opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("volumes"), "{err}");
    assert!(err.contains("reportTokenSecret"), "{err}");

    for bad in ["Heald_Token", "", "a..b", "token\nkind: Secret"] {
        let o = RenderOptions {
            report_token_secret: Some(bad.into()),
            ..opts()
        };
        let err = Renderer::new(o).unwrap_err().to_string();
        assert!(
            err.starts_with("render option reportTokenSecret:"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn the_report_token_secret_is_the_one_heald_reads_its_own_token_from() {
    assert_eq!(
        RenderOptions::default().report_token_secret.as_deref(),
        Some(DEFAULT_REPORT_TOKEN_SECRET)
    );
    let deploy = |file: &str| -> Value {
        heal::yaml::from_str(
            &std::fs::read_to_string(crate_dir().join("deploy").join(file)).unwrap(),
        )
        .unwrap()
    };
    let deployment = deploy("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == DEFAULT_REPORT_TOKEN_SECRET)
        .expect("heald mounts the heald-token Secret");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("and mounts it");
    // heald reads the same key, `token`, that the report step reads.
    let config = deploy("heald.yaml");
    assert_eq!(
        config["tokenFile"],
        format!("{}/token", mount["mountPath"].as_str().unwrap())
    );
}

/// What a tampering does, the change, and the place the rejection must name.
type Tamper = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

#[test]
fn a_rendered_manifest_that_hands_a_secret_or_settings_to_anything_but_the_report_is_rejected() {
    let o = opts();
    let wf = render_ok(&crash_loop_plan(), Engine::Argo, &o).value;
    let ei = argo_exit_index(&wf);
    let argo: Vec<Tamper> = vec![
        (
            "a Secret volume on the Workflow",
            Box::new(|v| {
                v["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(token_secret("heald-token"));
            }),
            "spec.volumes[1]",
        ),
        (
            "the token volume on a step",
            Box::new(|v| {
                v["spec"]["templates"][1]["volumes"] = json!([token_secret("heald-token")])
            }),
            "spec.templates[1].volumes",
        ),
        (
            "a step mounting the token",
            Box::new(|v| {
                v["spec"]["templates"][1]["container"]["volumeMounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "heal-report-token", "mountPath": "/t"}));
            }),
            "spec.templates[1].container.volumeMounts[1]",
        ),
        (
            "a step reading a Secret into its environment",
            Box::new(|v| {
                v["spec"]["templates"][1]["container"]["env"] = json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "heald-token", "key": "token"}}}]);
            }),
            "spec.templates[1].container.env",
        ),
        (
            "a step with a plain variable",
            Box::new(|v| {
                v["spec"]["templates"][1]["container"]["env"] =
                    json!([{"name": "HEAL_MAX", "value": "100"}]);
            }),
            "spec.templates[1].container.env",
        ),
        (
            "a writable token mount",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["container"]["volumeMounts"][1]["readOnly"] =
                    json!(false);
            }),
            "volumeMounts[1]",
        ),
        (
            "a required Secret",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["volumes"][0]["secret"]["optional"] = json!(false);
            }),
            "volumes",
        ),
        (
            "another Secret",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["volumes"][0]["secret"]["secretName"] =
                    json!("argo-admin");
            }),
            "volumes",
        ),
        (
            "no token variable",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["container"]
                    .as_object_mut()
                    .unwrap()
                    .remove("env");
            }),
            "container.env",
        ),
        (
            "no token mount",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["container"]["volumeMounts"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
            "container.volumeMounts",
        ),
        (
            "an envFrom on the report",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["container"]["envFrom"] =
                    json!([{"secretRef": {"name": "heald-token"}}]);
            }),
            "envFrom",
        ),
        (
            "a sidecar of the report mounting the token",
            Box::new(move |v| {
                v["spec"]["templates"][ei]["sidecars"] = json!([{"name": "s", "image": "ghcr.io/heal-project/heal:0.1.0", "volumeMounts": [{"name": "heal-report-token", "mountPath": "/t"}]}]);
            }),
            "sidecars[0].volumeMounts",
        ),
    ];
    for (what, alter, at) in argo {
        let err = tampered(Engine::Argo, &o, alter);
        assert!(
            err.starts_with("the rendered argo manifest is rejected at") && err.contains(at),
            "{what}: {err}"
        );
    }

    for o in [opts(), embed_opts()] {
        let tekton: Vec<Tamper> = vec![
            (
                "a step binding the token workspace",
                Box::new(|v| {
                    v["spec"]["pipelineSpec"]["tasks"][0]["workspaces"] =
                        json!([{"name": "heal-report-token", "workspace": "heal-report-token"}]);
                }),
                "tasks[0].workspaces",
            ),
            (
                "the token variable on a step",
                Box::new(|v| {
                    v["spec"]["taskRunSpecs"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"pipelineTaskName": "scale-up", "podTemplate": {"env": token_env()}}));
                }),
                "taskRunSpecs[1].podTemplate",
            ),
            (
                "variables for every task",
                Box::new(|v| {
                    v["spec"]["taskRunTemplate"]["podTemplate"]["env"] =
                        json!([{"name": "HEAL_MAX", "value": "9"}]);
                }),
                "taskRunTemplate.podTemplate.env",
            ),
            (
                "a Secret volume for every task",
                Box::new(|v| {
                    v["spec"]["taskRunTemplate"]["podTemplate"]["volumes"] =
                        json!([token_secret("heald-token")]);
                }),
                "taskRunTemplate.podTemplate.volumes",
            ),
            (
                "no token variable on the report",
                Box::new(|v| {
                    v["spec"].as_object_mut().unwrap().remove("taskRunSpecs");
                }),
                "spec.taskRunSpecs",
            ),
            (
                "another Secret",
                Box::new(|v| {
                    v["spec"]["workspaces"][0]["secret"]["secretName"] = json!("tekton-admin");
                }),
                "spec.workspaces",
            ),
            (
                "a second workspace binding",
                Box::new(|v| {
                    v["spec"]["workspaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "x", "emptyDir": {}}));
                }),
                "spec.workspaces",
            ),
            (
                "the report running as another account",
                Box::new(|v| {
                    v["spec"]["taskRunSpecs"][0]["serviceAccountName"] = json!("cluster-admin");
                }),
                "serviceAccountName",
            ),
        ];
        for (what, alter, at) in tekton {
            let err = tampered(Engine::Tekton, &o, alter);
            assert!(
                err.starts_with("the rendered tekton manifest is rejected at") && err.contains(at),
                "{what} (embedded: {}): {err}",
                o.tekton_embed_task
            );
        }
    }
    let o = embed_opts();
    for (what, alter, at) in [
        (
            "an embedded step mounting a volume",
            Box::new(|v: &mut Value| {
                v["spec"]["pipelineSpec"]["tasks"][0]["taskSpec"]["steps"][0]["volumeMounts"] =
                    json!([{"name": "heal-report-token", "mountPath": "/t"}]);
            }) as Box<dyn Fn(&mut Value)>,
            "steps[0].volumeMounts",
        ),
        (
            "a writable token workspace",
            Box::new(|v: &mut Value| {
                v["spec"]["pipelineSpec"]["finally"][0]["taskSpec"]["workspaces"][0]["readOnly"] =
                    json!(false);
            }),
            "taskSpec.workspaces[0].readOnly",
        ),
        (
            "a report Task without the workspace",
            Box::new(|v: &mut Value| {
                v["spec"]["pipelineSpec"]["finally"][0]["taskSpec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("workspaces");
            }),
            "finally[0].taskSpec.workspaces",
        ),
    ] {
        let err = tampered(Engine::Tekton, &o, alter);
        assert!(err.contains(at), "{what}: {err}");
    }
}

#[test]
fn labels_annotations_and_node_selectors_named_like_env_or_secret_are_still_allowed() {
    let plan = crash_loop_plan();
    for (engine, o) in [
        (Engine::Argo, opts()),
        (Engine::Tekton, opts()),
        (Engine::Tekton, embed_opts()),
    ] {
        let mut v = render_ok(&plan, engine, &o).value;
        v["metadata"]["labels"]["env"] = json!("prod");
        v["metadata"]["annotations"]["secret"] = json!("none here");
        match engine {
            Engine::Argo => {
                v["spec"]["podMetadata"]["labels"]["env"] = json!("prod");
                v["spec"]["templates"][1]["nodeSelector"] = json!({"env": "prod"});
            }
            _ => {
                v["spec"]["taskRunTemplate"]["podTemplate"]["nodeSelector"] =
                    json!({"env": "prod"});
            }
        }
        check_manifest(&plan, engine, &v, &o).unwrap_or_else(|e| panic!("{engine}: {e}"));
    }
}

#[test]
fn a_user_report_template_without_the_token_mount_is_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    copy_default_templates(dir.path());
    let path = dir.path().join("argo/report-template.yaml.hbs");
    let text = std::fs::read_to_string(&path).unwrap();
    // The template as it was before the token: every `report.token` block dropped.
    let mut old = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line == "{{#if report.token}}" {
            skipping = true;
        } else if skipping && line == "{{/if}}" {
            skipping = false;
        } else if !skipping {
            old.push_str(line);
            old.push('\n');
        }
    }
    std::fs::write(&path, old).unwrap();
    let o = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..opts()
    };
    let err = render(&crash_loop_plan(), Engine::Argo, &o)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".volumes: is missing"), "{err}");
    assert!(err.contains("reportTokenSecret"), "{err}");
    // For a heald that takes unauthenticated reports, the old template still does.
    let o = RenderOptions {
        report_token_secret: None,
        ..o
    };
    render_ok(&crash_loop_plan(), Engine::Argo, &o);
}

// ---------------------------------------------------------------------------------------
// User templates

fn copy_default_templates(to: &Path) {
    for engine in ["argo", "tekton"] {
        let from = crate_dir().join("workflow-templates").join(engine);
        std::fs::create_dir_all(to.join(engine)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(engine).join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_user_template_directory_replaces_the_files_it_has() {
    let dir = tempfile::tempdir().unwrap();
    copy_default_templates(dir.path());
    let path = dir.path().join("argo/metadata.yaml.hbs");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "  annotations:\n",
        "  annotations:\n    \"example.com/team\": \"sre\"\n",
    );
    std::fs::write(&path, text).unwrap();
    std::fs::remove_dir_all(dir.path().join("tekton")).unwrap();
    let o = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..opts()
    };
    let plan = crash_loop_plan();
    let wf = render_ok(&plan, Engine::Argo, &o);
    assert_eq!(
        wf.value["metadata"]["annotations"]["example.com/team"],
        "sre"
    );
    // No tekton/ directory: the embedded Tekton templates are used.
    let pr = render_ok(&plan, Engine::Tekton, &o);
    assert_eq!(pr.yaml, render_ok(&plan, Engine::Tekton, &opts()).yaml);
}

#[test]
fn a_user_template_that_prints_a_value_unquoted_or_names_a_missing_variable_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    copy_default_templates(dir.path());
    let path = dir.path().join("argo/metadata.yaml.hbs");
    std::fs::write(
        &path,
        "  name: {{q run_name}}\n  namespace: {{q run_namespace}}\n  labels: {{q lables}}\n",
    )
    .unwrap();
    let o = RenderOptions {
        templates_dir: Some(dir.path().to_path_buf()),
        ..opts()
    };
    let err = render(&crash_loop_plan(), Engine::Argo, &o).unwrap_err();
    assert!(matches!(err, RenderError::Render { .. }), "{err}");
    assert!(err.to_string().contains("lables"), "{err}");

    // A template that bypasses `q` lets a hostile value break the YAML: caught on parse-back.
    std::fs::write(
        &path,
        "  name: {{q run_name}}\n  namespace: {{q run_namespace}}\n  labels: {}\n  annotations:\n    a: {{alertname}}\n",
    )
    .unwrap();
    let mut plan = crash_loop_plan();
    plan.alertname = "x\n  generateName: evil-".into();
    let err = render(&plan, Engine::Argo, &o).unwrap_err();
    assert!(err.to_string().contains("argo manifest"), "{err}");

    std::fs::write(&path, "  name: {{q run_name}\n").unwrap();
    let err = Renderer::new(o).unwrap_err();
    assert!(
        matches!(&err, RenderError::Template { name, .. } if name == "argo/metadata"),
        "{err}"
    );
}

#[test]
fn a_missing_template_directory_is_an_error_naming_it() {
    let o = RenderOptions {
        templates_dir: Some("/nonexistent/heal-templates".into()),
        ..opts()
    };
    let err = Renderer::new(o).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/heal-templates"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Shipped manifests in argo/ and tekton/

fn manifest_docs(dir: &str) -> Vec<(String, Value)> {
    let root = crate_dir().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let values: Vec<Value> = heal::yaml::from_str_multi(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", f.display()));
        for v in values.into_iter().filter(|v| !v.is_null()) {
            docs.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    docs
}

const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
];

#[test]
fn every_shipped_argo_manifest_validates_against_its_kinds_schema() {
    heal_testkit::require_reference!();
    let docs = manifest_docs("argo");
    let mut kinds = BTreeMap::new();
    for (file, v) in &docs {
        let kind = v["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
        match kind {
            "WorkflowTemplate" | "ClusterWorkflowTemplate" => {
                assert_schema_valid(&format!("argo/{file}"), v);
            }
            "Kustomization" => {}
            k if RBAC_KINDS.contains(&k) => {
                assert!(
                    v["metadata"]["name"].is_string(),
                    "{file}: {k} without a name"
                );
            }
            other => panic!("argo/{file}: unexpected kind {other}"),
        }
    }
    for kind in [
        "WorkflowTemplate",
        "ClusterWorkflowTemplate",
        "ServiceAccount",
        "ClusterRole",
        "Role",
    ] {
        assert!(kinds.contains_key(kind), "argo/ ships no {kind}: {kinds:?}");
    }
}

#[test]
fn every_shipped_tekton_manifest_validates_against_its_kinds_schema() {
    heal_testkit::require_reference!();
    let docs = manifest_docs("tekton");
    let mut kinds = BTreeMap::new();
    for (file, v) in &docs {
        let kind = v["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
        match kind {
            "Task" => assert_schema_valid(&format!("tekton/{file}"), v),
            "StepAction" => {
                // No schema is shipped for StepAction: check its shape by hand.
                assert_eq!(v["apiVersion"], "tekton.dev/v1beta1", "{file}");
                assert!(v["spec"]["image"].is_string(), "{file}");
                assert_eq!(v["spec"]["command"], json!(["heal"]), "{file}");
                assert_eq!(v["spec"]["params"][0]["type"], "array", "{file}");
            }
            "Kustomization" => {}
            k if RBAC_KINDS.contains(&k) => {
                assert!(
                    v["metadata"]["name"].is_string(),
                    "{file}: {k} without a name"
                );
            }
            other => panic!("tekton/{file}: unexpected kind {other}"),
        }
    }
    for kind in ["Task", "StepAction", "ServiceAccount", "ClusterRole"] {
        assert!(
            kinds.contains_key(kind),
            "tekton/ ships no {kind}: {kinds:?}"
        );
    }
}

#[test]
fn the_shipped_heal_task_takes_an_args_array_and_writes_the_outcome_result() {
    let docs = manifest_docs("tekton");
    let (_, task) = docs
        .iter()
        .find(|(_, v)| v["kind"] == "Task")
        .expect("a Task");
    assert_eq!(task["metadata"]["name"], "heal");
    assert_eq!(task["spec"]["params"][0]["name"], "args");
    assert_eq!(task["spec"]["params"][0]["type"], "array");
    assert_eq!(task["spec"]["results"][0]["name"], "outcome");
    // The embedded spec the renderer uses is the shipped Task's spec.
    let pr = render_ok(&crash_loop_plan(), Engine::Tekton, &embed_opts()).value;
    let embedded = &pr["spec"]["pipelineSpec"]["tasks"][0]["taskSpec"];
    assert_eq!(embedded["params"], task["spec"]["params"]);
    assert_eq!(embedded["results"], task["spec"]["results"]);
    assert_eq!(embedded["workspaces"], task["spec"]["workspaces"]);
    let mut shipped_step = task["spec"]["steps"][0].clone();
    shipped_step["image"] = json!(crash_loop_plan().image);
    assert_eq!(embedded["steps"][0], shipped_step);
}

#[test]
fn every_kustomization_lists_exactly_the_yaml_files_beside_it() {
    for dir in ["argo", "tekton"] {
        let root = crate_dir().join(dir);
        let k: Value = heal::yaml::from_str(
            &std::fs::read_to_string(root.join("kustomization.yaml")).unwrap(),
        )
        .unwrap();
        let mut listed = strings(&k["resources"]);
        listed.sort();
        let mut files: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
            .collect();
        files.sort();
        assert_eq!(listed, files, "{dir}/kustomization.yaml");
    }
}

#[test]
fn shipped_rbac_grants_no_cluster_wide_delete_and_no_wildcards() {
    for dir in ["argo", "tekton"] {
        let docs = manifest_docs(dir);
        let mut deleting_roles = Vec::new();
        for (file, v) in &docs {
            let kind = v["kind"].as_str().unwrap();
            if kind != "Role" && kind != "ClusterRole" {
                continue;
            }
            for rule in v["rules"].as_array().unwrap() {
                let verbs = strings(&rule["verbs"]);
                let resources = strings(&rule["resources"]);
                assert!(
                    !verbs.contains(&"*".to_string()) && !resources.contains(&"*".to_string()),
                    "{dir}/{file}: wildcard in {rule}"
                );
                if verbs
                    .iter()
                    .any(|v| v == "delete" || v == "deletecollection")
                {
                    deleting_roles.push(v["metadata"]["name"].as_str().unwrap().to_string());
                }
            }
        }
        assert!(!deleting_roles.is_empty(), "{dir}: no role may delete pods");
        for (file, v) in &docs {
            if v["kind"] == "ClusterRoleBinding" {
                let role = v["roleRef"]["name"].as_str().unwrap();
                assert!(
                    !deleting_roles.iter().any(|r| r == role),
                    "{dir}/{file}: {role} can delete and is bound cluster-wide"
                );
            }
        }
    }
}

#[test]
fn argo_and_tekton_ship_the_same_rbac_for_heals_actions() {
    for file in [
        "serviceaccount.yaml",
        "rbac-actions.yaml",
        "rbac-bindings.yaml",
    ] {
        let argo = std::fs::read_to_string(crate_dir().join("argo").join(file)).unwrap();
        let tekton = std::fs::read_to_string(crate_dir().join("tekton").join(file)).unwrap();
        assert_eq!(argo, tekton, "argo/{file} and tekton/{file} differ");
    }
}

#[test]
fn the_argo_executor_may_report_task_results_in_the_run_namespace() {
    let docs = manifest_docs("argo");
    let role = docs
        .iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == "Role" && v["metadata"]["name"] == "heal-argo-executor")
        .expect("the executor Role");
    assert_eq!(
        role["rules"][0],
        json!({"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]})
    );
}

// ---------------------------------------------------------------------------------------
// Argo's CEL rules (x-kubernetes-validations), which the JSON schemas cannot express

/// Whether python3 with cel-python and PyYAML is here; under CI it must be.
fn cel_tool_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import celpy, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "needs python3 with cel-python and pyyaml (pip install cel-python pyyaml)";
        assert!(!heal_testkit::ci(), "CI=true, but this test {why}");
        heal_testkit::skip(why);
    }
    ok
}

fn cel_check(crd: &str, files: &[PathBuf]) {
    let out = std::process::Command::new("python3")
        .arg(reference_dir().join("tools/cel_check.py"))
        .arg(reference_dir().join("argo").join(crd))
        .arg("v1alpha1")
        .args(files)
        .output()
        .expect("running cel_check.py");
    assert!(
        out.status.success(),
        "Argo CEL rules reject the manifests:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rendered_workflows_and_shipped_templates_pass_argos_cel_rules() {
    heal_testkit::require_reference!();
    if !cel_tool_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut plans = fixture_plans();
    plans.push(("hostile", hostile_plan("\"\n---\n- name: x\n  image: y")));
    let examples = example_plans();
    plans.extend(examples.iter().map(|(n, p)| (n.as_str(), p.clone())));
    for (name, plan) in plans {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, render_ok(&plan, Engine::Argo, &opts()).yaml).unwrap();
        files.push(path);
    }
    cel_check("crd-full-argoproj.io_workflows.yaml", &files);
    cel_check(
        "crd-full-argoproj.io_workflowtemplates.yaml",
        &[crate_dir().join("argo/workflowtemplate.yaml")],
    );
    cel_check(
        "crd-full-argoproj.io_clusterworkflowtemplates.yaml",
        &[crate_dir().join("argo/clusterworkflowtemplate.yaml")],
    );
}

#[test]
fn every_example_step_is_a_heal_command_that_reads_back_as_the_same_step() {
    // The plans' command lines are written by one function from the typed step; heal's
    // own parser must read each back as a step that writes the same line.
    let mut checked = 0;
    for (name, plan) in example_plans() {
        for step in &plan.steps {
            let parsed = heal::cli::parse_step(&step.argv())
                .unwrap_or_else(|e| panic!("{name} step {}: {e}: {:?}", step.name, step.argv()));
            assert_eq!(parsed.argv(), step.argv(), "{name} step {}", step.name);
            assert_eq!(parsed.name(), step.action, "{name} step {}", step.name);
            checked += 1;
        }
        for engine in [Engine::Argo, Engine::Tekton] {
            let report = heal::render::report_args(&plan, engine);
            let concrete: Vec<String> = report
                .iter()
                .map(|a| {
                    a.replace("{{workflow.status}}", "Succeeded")
                        .replace("$(tasks.status)", "Succeeded")
                })
                .collect();
            if !concrete.is_empty() {
                heal::cli::validate_action_argv(&concrete)
                    .unwrap_or_else(|e| panic!("{name} {engine} report: {e}: {concrete:?}"));
            }
        }
    }
    assert!(checked > 10, "{checked}");
}

// ---------------------------------------------------------------------------------------
// Approval gates

fn gated_plan() -> Plan {
    Plan {
        approval: Some(heal::approval::PlanApproval {
            timeout_seconds: 900,
            on_timeout: heal::approval::OnTimeout::Reject,
        }),
        ..crash_loop_plan()
    }
}

#[test]
fn a_gated_plan_waits_before_its_changing_steps_on_argo_and_starts_pending_on_tekton() {
    heal_testkit::require_reference!();
    let plan = gated_plan();
    let argo = render_ok(&plan, Engine::Argo, &opts());
    assert_schema_valid("gated Argo run", &argo.value);
    let tasks = &argo.value["spec"]["templates"][0]["dag"]["tasks"];
    assert_eq!(
        tasks[0],
        json!({"name": "heal-approval", "template": "heal-approval"})
    );
    assert_eq!(tasks[1]["depends"], "heal-approval.Succeeded");
    assert_eq!(
        tasks[2]["depends"], "heal-approval.Succeeded && scale-up.Succeeded",
        "every changing step waits"
    );
    assert_eq!(
        tasks[3]["depends"], "restart.Succeeded",
        "verify changes nothing: it waits only for what it runs after"
    );
    assert_eq!(
        argo.value["spec"]["activeDeadlineSeconds"],
        json!(plan.deadline_seconds + 900),
        "the wait is inside the workflow's deadline"
    );
    let tekton = render_ok(&plan, Engine::Tekton, &opts());
    assert_schema_valid("gated Tekton run", &tekton.value);
    assert_eq!(tekton.value["spec"]["status"], "PipelineRunPending");
    let local = render_ok(&plan, Engine::Local, &opts());
    assert_eq!(local.value["spec"]["approval"]["timeoutSeconds"], 900);
    for r in [&argo, &tekton, &local] {
        assert_eq!(
            r.value["metadata"]["annotations"]["heal.dev/approval"],
            "waiting"
        );
    }
}

#[test]
fn a_suspend_or_pending_status_is_refused_unless_it_is_exactly_the_plans_gate() {
    let gated = gated_plan();
    let argo = render_ok(&gated, Engine::Argo, &opts()).value;
    let check = |plan: &Plan, engine: Engine, v: &Value| {
        heal::render::check_manifest(plan, engine, v, &opts())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    // A changing step that skips the gate.
    let mut skip = argo.clone();
    skip["spec"]["templates"][0]["dag"]["tasks"][1]
        .as_object_mut()
        .unwrap()
        .remove("depends");
    assert!(
        check(&gated, Engine::Argo, &skip).contains("must wait for the approval gate"),
        "{}",
        check(&gated, Engine::Argo, &skip)
    );
    // A gate that resumes by itself.
    let mut timed = argo.clone();
    let i = timed["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t["name"] == "heal-approval")
        .unwrap();
    timed["spec"]["templates"][i]["suspend"] = json!({"duration": "1m"});
    assert!(
        check(&gated, Engine::Argo, &timed).contains("the approval gate is exactly"),
        "{}",
        check(&gated, Engine::Argo, &timed)
    );
    // A plan without a gate gets no suspend template and no pending status.
    let plain = crash_loop_plan();
    let mut foreign = argo.clone();
    foreign["spec"]["activeDeadlineSeconds"] = json!(plain.deadline_seconds);
    let e = check(&plain, Engine::Argo, &foreign);
    assert!(e.contains("suspend") || e.contains("heal-approval"), "{e}");
    let mut pending = render_ok(&plain, Engine::Tekton, &opts()).value;
    pending["spec"]["status"] = json!("PipelineRunPending");
    assert!(
        check(&plain, Engine::Tekton, &pending).contains("spec.status"),
        "{}",
        check(&plain, Engine::Tekton, &pending)
    );
    let mut started = render_ok(&gated, Engine::Tekton, &opts()).value;
    started["spec"].as_object_mut().unwrap().remove("status");
    assert!(check(&gated, Engine::Tekton, &started).contains("spec.status"));
}
