//! The offline commands: `heal render` (what would run for an alert) and
//! `heal policy lint|test|rules`. They read policy, alert and test files and print; they
//! never contact a cluster. The `heal` CLI embeds [`RenderArgs`] and [`PolicyCommand`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alert::{self, Alert, LabelSet, Status};
use crate::policy::{self, Decision, LoadError, LoadErrors, PlanDefaults, PolicySet, decide};
use crate::render::{Engine, RenderOptions, Renderer};

/// How `heal render` prints what it rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON object, or a `List` of them.
    Json,
}

/// `heal render`: show the Workflow, PipelineRun or local plan that an alert would start.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Policy file or directory of *.yaml/*.yml (repeatable; comma-separated in the env var),
    /// e.g. --policies examples/policies
    #[arg(
        long = "policies",
        short = 'p',
        env = "HEAL_POLICIES",
        value_delimiter = ',',
        required = true,
        value_name = "PATH"
    )]
    pub policies: Vec<PathBuf>,
    /// Alert file: an Alertmanager webhook body, one alert, or a list of alerts; `-` reads
    /// stdin, e.g. --alert examples/alerts/kube-pod-crash-looping.json
    #[arg(long, env = "HEAL_ALERT", default_value = "-", value_name = "FILE")]
    pub alert: PathBuf,
    /// Engine to render for, overriding the policy's (argo, tekton, local), e.g. --engine tekton
    #[arg(long, env = "HEAL_ENGINE", value_name = "ENGINE", value_parser = parse_engine)]
    pub engine: Option<Engine>,
    /// Directory of Handlebars templates laid out like workflow-templates/, replacing the
    /// built-in ones, e.g. --templates ./my-templates
    #[arg(long, env = "HEAL_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// heal container image the steps run, e.g. --image ghcr.io/heal-project/heal:0.1.0
    #[arg(long, env = "HEAL_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,
    /// Namespace the run is created in (unless the policy sets runNamespace), e.g.
    /// --namespace heal-system
    #[arg(long, env = "HEAL_RUN_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// heald's reports endpoint for the exit handler, e.g.
    /// --report-url http://heald.heal-system:8080/v1/reports
    #[arg(long, env = "HEAL_REPORT_URL", value_name = "URL")]
    pub report_url: Option<String>,
    /// Prometheus for verify steps that name none, e.g.
    /// --prometheus-url http://prometheus.monitoring:9090
    #[arg(long, env = "HEAL_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Tekton: embed the heal Task spec instead of referencing the installed Task, e.g.
    /// --tekton-embed-task
    #[arg(long, env = "HEAL_TEKTON_EMBED_TASK")]
    pub tekton_embed_task: bool,
    /// Output format: yaml or json, e.g. -o json
    #[arg(
        short = 'o',
        long = "output",
        env = "HEAL_RENDER_OUTPUT",
        value_enum,
        default_value = "yaml"
    )]
    pub output: OutputFormat,
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    s.parse::<Engine>().map_err(|e| e.to_string())
}

/// `heal policy ...`: check, test and export healing policies offline.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check policy files: every error with file, line and a fix hint; exit 1 on errors
    #[command(after_help = "Example:\n  heal policy lint examples/policies")]
    Lint {
        /// Policy files or directories, e.g. examples/policies
        #[arg(
            required = true,
            env = "HEAL_POLICIES",
            value_delimiter = ',',
            value_name = "PATH"
        )]
        paths: Vec<PathBuf>,
    },
    /// Run test cases (alerts in, expected decisions and steps out), like `promtool test rules`
    #[command(
        after_help = "Example:\n  heal policy test examples/policies examples/policies/tests.yaml"
    )]
    Test {
        /// Policy file or directory, e.g. examples/policies
        #[arg(env = "HEAL_POLICIES", value_name = "POLICIES")]
        policies: PathBuf,
        /// Test files, e.g. examples/policies/tests.yaml
        #[arg(
            required = true,
            env = "HEAL_POLICY_TESTS",
            value_delimiter = ',',
            value_name = "TESTS"
        )]
        tests: Vec<PathBuf>,
    },
    /// Print Prometheus alerting rules for flat-format policies (a rule file for promtool)
    #[command(
        after_help = "Example:\n  heal policy rules examples/policies/legacy-flat.yaml > heal-rules.yaml"
    )]
    Rules {
        /// Policy files or directories, e.g. examples/policies
        #[arg(
            required = true,
            env = "HEAL_POLICIES",
            value_delimiter = ',',
            value_name = "PATH"
        )]
        paths: Vec<PathBuf>,
    },
}

pub use crate::policy_files::{load_policies, read_policy_files};

/// Print load errors, one per line, to stderr; the exit code they mean (2 when a file could
/// not be read, else `invalid`).
fn report_load_errors(e: &LoadErrors, invalid: i32) -> i32 {
    for err in &e.0 {
        eprintln!("error: {err}");
    }
    if e.0.iter().any(|e| matches!(e, LoadError::Io { .. })) {
        2
    } else {
        invalid
    }
}

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

fn describe(a: &Alert) -> String {
    format!("alert {} ({})", a.name(), a.fingerprint)
}

/// Run `heal render`; returns the exit code (0 rendered, 1 an alert could not be rendered,
/// 2 bad flags or files). Manifests go to `out`, diagnostics to stderr.
pub fn run_render(args: &RenderArgs, out: &mut dyn Write) -> i32 {
    let set = match load_policies(&args.policies) {
        Ok(s) => s,
        Err(e) => return report_load_errors(&e, 2),
    };
    let body = match read_input(&args.alert) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}: cannot read: {e}", args.alert.display());
            return 2;
        }
    };
    let alerts = match alert::parse_alerts(&body) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {}: {e}", args.alert.display());
            return 2;
        }
    };
    let mut defaults = PlanDefaults::default();
    if let Some(i) = &args.image {
        defaults.image = i.clone();
    }
    if let Some(ns) = &args.namespace {
        if let Err(why) = crate::address::check_namespace(ns) {
            eprintln!("error: --namespace {ns:?}: {why}");
            return 2;
        }
        defaults.run_namespace = ns.clone();
    }
    defaults.report_url = args.report_url.clone();
    defaults.prometheus_url = args.prometheus_url.clone();
    let opts = RenderOptions {
        templates_dir: args.templates.clone(),
        tekton_embed_task: args.tekton_embed_task,
        ..RenderOptions::default()
    };
    let renderer = match Renderer::new(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: templates: {e}");
            return 2;
        }
    };
    let mut rendered = Vec::new();
    let mut failed = false;
    for a in &alerts {
        let matches = decide(&set, a);
        if matches.is_empty() {
            eprintln!("{}: no policy matches", describe(a));
        }
        for m in matches {
            if m.decision == Decision::Resolved {
                eprintln!(
                    "{}: resolved; policy {} has nothing to do",
                    describe(a),
                    m.policy.name
                );
                continue;
            }
            let plan = match policy::plan(m.policy, a, &defaults) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}: {e} ({})", describe(a), m.policy.source);
                    failed = true;
                    continue;
                }
            };
            let engine = args.engine.or(m.policy.engine).unwrap_or(Engine::Local);
            match renderer.render(&plan, engine) {
                Ok(r) => rendered.push(r),
                Err(e) => {
                    eprintln!(
                        "error: {}: policy {}: rendering for {engine} failed: {e}",
                        describe(a),
                        m.policy.name
                    );
                    failed = true;
                }
            }
        }
    }
    let written = match args.output {
        OutputFormat::Yaml => rendered.iter().try_for_each(|r| {
            let y = r.yaml.strip_prefix("---\n").unwrap_or(&r.yaml);
            let nl = if y.ends_with('\n') { "" } else { "\n" };
            write!(out, "---\n{y}{nl}")
        }),
        OutputFormat::Json => {
            let value = match rendered.as_slice() {
                [] => None,
                [one] => Some(one.value.clone()),
                many => Some(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": many.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
                })),
            };
            match value {
                Some(v) => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                ),
                None => Ok(()),
            }
        }
    };
    if let Err(e) = written {
        return write_failed(&e);
    }
    if failed { 1 } else { 0 }
}

/// The exit code when stdout could not take the output. A reader that stopped reading
/// (`| head`) is not an error: nothing is printed, as with any Unix filter.
fn write_failed(e: &std::io::Error) -> i32 {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return 0;
    }
    eprintln!("error: writing output: {e}");
    2
}

/// Run `heal policy lint|test|rules`; returns the exit code (0 ok, 1 lint errors or failed
/// tests, 2 unreadable files or bad test files).
pub fn run_policy(cmd: &PolicyCommand, out: &mut dyn Write) -> i32 {
    let result = match cmd {
        PolicyCommand::Lint { paths } => lint(paths, out),
        PolicyCommand::Rules { paths } => rules(paths, out),
        PolicyCommand::Test { policies, tests } => test(policies, tests, out),
    };
    match result {
        Ok(code) => code,
        Err(e) => write_failed(&e),
    }
}

fn lint(paths: &[PathBuf], out: &mut dyn Write) -> std::io::Result<i32> {
    let files = match read_policy_files(paths) {
        Ok(f) => f,
        Err(e) => return Ok(report_load_errors(&e, 2)),
    };
    match PolicySet::parse(&files) {
        Ok(set) if set.policies.is_empty() && set.notifiers.is_empty() => {
            let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
            eprintln!(
                "error: {}: no policies or notifiers found (hint: a policy file holds HealingPolicy documents, a flat list, or a ConfigMap of them)",
                names.join(", ")
            );
            Ok(1)
        }
        Ok(set) => {
            writeln!(
                out,
                "ok: {} {}, {} {} in {} {}",
                set.policies.len(),
                plural(set.policies.len(), "policy", "policies"),
                set.notifiers.len(),
                plural(set.notifiers.len(), "notifier", "notifiers"),
                files.len(),
                plural(files.len(), "file", "files"),
            )?;
            Ok(0)
        }
        Err(e) => {
            let code = report_load_errors(&e, 1);
            writeln!(
                out,
                "{} {} found",
                e.0.len(),
                plural(e.0.len(), "error", "errors")
            )?;
            Ok(code)
        }
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

fn rules(paths: &[PathBuf], out: &mut dyn Write) -> std::io::Result<i32> {
    let set = match load_policies(paths) {
        Ok(s) => s,
        Err(e) => return Ok(report_load_errors(&e, 2)),
    };
    let rules = policy::prometheus_rules(&set);
    if rules.groups.iter().all(|g| g.rules.is_empty()) {
        eprintln!(
            "note: no flat-format policies (condition + action) found; the rule group is empty"
        );
    }
    write!(out, "{}", rules.to_yaml())?;
    Ok(0)
}

/// A `heal policy test` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    alert: TestAlert,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestAlert {
    labels: LabelSet,
    #[serde(default)]
    annotations: LabelSet,
    status: Option<Status>,
    starts_at: Option<String>,
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    decision: ExpectedDecision,
    policy: Option<String>,
    policies: Option<Vec<String>>,
    run_name: Option<String>,
    steps: Option<Vec<ExpectedStep>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ExpectedDecision {
    NoMatch,
    Matched,
    Resolved,
}

impl ExpectedDecision {
    fn as_str(self) -> &'static str {
        match self {
            ExpectedDecision::NoMatch => "no-match",
            ExpectedDecision::Matched => "matched",
            ExpectedDecision::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedStep {
    name: String,
    argv: Option<Vec<String>>,
}

/// The token in an expected argv that stands for the run's correlation id.
const CORRELATION_TOKEN: &str = "${correlationId}";

fn test_alert(t: &TestAlert) -> Result<Alert, String> {
    let mut a = Alert::new(t.labels.clone());
    a.annotations = t.annotations.clone();
    a.status = t.status.unwrap_or(Status::Firing);
    if let Some(s) = &t.starts_at {
        a.starts_at = s
            .parse()
            .map_err(|_| format!("alert.startsAt: invalid timestamp {s:?} (expected RFC 3339)"))?;
    }
    if a.status == Status::Resolved {
        a.ends_at = Some(a.starts_at);
    }
    if let Some(fp) = &t.fingerprint {
        if fp.len() != 16 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "alert.fingerprint: expected 16 hex digits, found {fp:?}"
            ));
        }
        a.fingerprint = fp.to_ascii_lowercase();
    }
    Ok(a)
}

/// Compare one case; returns the differences, `-` wanted and `+` got.
fn check_case(set: &PolicySet, case: &TestCase) -> Result<Vec<String>, String> {
    let alert = test_alert(&case.alert)?;
    let matches = decide(set, &alert);
    let got_decision = match matches.first().map(|m| m.decision) {
        None => ExpectedDecision::NoMatch,
        Some(Decision::Matched) => ExpectedDecision::Matched,
        Some(Decision::Resolved) => ExpectedDecision::Resolved,
    };
    let mut diffs = Vec::new();
    let mut diff = |what: &str, want: String, got: String| {
        diffs.push(format!("{what}:\n    - {want}\n    + {got}"));
    };
    if got_decision != case.expect.decision {
        diff(
            "decision",
            case.expect.decision.as_str().into(),
            got_decision.as_str().into(),
        );
    }
    let got_names: Vec<String> = matches.iter().map(|m| m.policy.name.clone()).collect();
    if let Some(p) = &case.expect.policy {
        let got = got_names
            .first()
            .cloned()
            .unwrap_or_else(|| "(none)".into());
        if *p != got {
            diff("policy", p.clone(), got);
        }
    }
    if let Some(ps) = &case.expect.policies
        && *ps != got_names
    {
        diff("policies", format!("{ps:?}"), format!("{got_names:?}"));
    }
    let wants_plan = case.expect.run_name.is_some() || case.expect.steps.is_some();
    let first = matches.first().filter(|m| m.decision == Decision::Matched);
    if let (true, Some(m)) = (wants_plan, first) {
        match policy::plan(m.policy, &alert, &PlanDefaults::default()) {
            Err(e) => diffs.push(format!("plan: {e}")),
            Ok(plan) => {
                if let Some(rn) = &case.expect.run_name
                    && *rn != plan.run_name
                {
                    diff("runName", rn.clone(), plan.run_name.clone());
                }
                if let Some(steps) = &case.expect.steps {
                    let want: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                    let got: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
                    if want != got {
                        diff("steps", format!("{want:?}"), format!("{got:?}"));
                    }
                    for (i, (w, g)) in steps.iter().zip(&plan.steps).enumerate() {
                        let Some(argv) = &w.argv else { continue };
                        let argv: Vec<String> = argv
                            .iter()
                            .map(|a| a.replace(CORRELATION_TOKEN, &plan.correlation_id))
                            .collect();
                        if argv != g.argv() {
                            diff(
                                &format!("steps[{i}] ({}) argv", g.name),
                                format!("{argv:?}"),
                                format!("{:?}", g.argv()),
                            );
                        }
                    }
                }
            }
        }
    } else if wants_plan && got_decision == case.expect.decision {
        diffs.push("runName/steps expected, but no policy matched to build a plan".into());
    }
    Ok(diffs)
}

fn test(policies: &Path, tests: &[PathBuf], out: &mut dyn Write) -> std::io::Result<i32> {
    let set = match load_policies(&[policies.to_path_buf()]) {
        Ok(s) => s,
        Err(e) => return Ok(report_load_errors(&e, 2)),
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in tests {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: cannot read: {e}", path.display());
                return Ok(2);
            }
        };
        let file: TestFile = match crate::yaml::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                let at = crate::yaml::Location::of(&e)
                    .map(|l| format!(":{}:{}", l.line, l.column))
                    .unwrap_or_default();
                eprintln!(
                    "error: {}{at}: {} (hint: a test file is `tests: [{{name, alert: {{labels}}, expect: {{decision}}}}]`)",
                    path.display(),
                    crate::yaml::message(&e)
                );
                return Ok(2);
            }
        };
        for case in &file.tests {
            match check_case(&set, case) {
                Err(e) => {
                    eprintln!("error: {}: test {:?}: {e}", path.display(), case.name);
                    return Ok(2);
                }
                Ok(diffs) if diffs.is_empty() => {
                    passed += 1;
                    writeln!(out, "PASS {}", case.name)?;
                }
                Ok(diffs) => {
                    failed += 1;
                    writeln!(out, "FAIL {}", case.name)?;
                    for d in diffs {
                        writeln!(out, "  {d}")?;
                    }
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        Render(RenderArgs),
        Policy {
            #[command(subcommand)]
            cmd: PolicyCommand,
        },
    }

    #[test]
    fn the_clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn render_flags_parse_with_repeatable_policies_and_engine() {
        let cli = Cli::try_parse_from([
            "heal",
            "render",
            "-p",
            "a.yaml",
            "--policies",
            "dir",
            "--alert",
            "x.json",
            "--engine",
            "tekton",
            "-o",
            "json",
        ])
        .unwrap();
        let Cmd::Render(r) = cli.cmd else {
            panic!("render expected")
        };
        assert_eq!(r.policies, [PathBuf::from("a.yaml"), PathBuf::from("dir")]);
        assert_eq!(r.engine, Some(Engine::Tekton));
        assert_eq!(r.output, OutputFormat::Json);
        let err = Cli::try_parse_from(["heal", "render", "-p", "a", "--engine", "jenkins"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown engine \"jenkins\""), "{err}");
    }

    #[test]
    fn policy_subcommands_take_their_paths() {
        let cli =
            Cli::try_parse_from(["heal", "policy", "test", "pol", "t1.yaml", "t2.yaml"]).unwrap();
        let Cmd::Policy {
            cmd: PolicyCommand::Test { policies, tests },
        } = cli.cmd
        else {
            panic!("policy test expected")
        };
        assert_eq!(policies, PathBuf::from("pol"));
        assert_eq!(tests.len(), 2);
        assert!(Cli::try_parse_from(["heal", "policy", "lint"]).is_err());
    }
}
