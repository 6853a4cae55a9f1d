//! Rendering a [`Plan`] into what an engine runs: an Argo `Workflow`, a Tekton
//! `PipelineRun`, or a `HealPlan` document for heald's local engine.
//!
//! Argo and Tekton manifests come from Handlebars templates (`workflow-templates/`, embedded
//! in the binary; a directory of the same layout may replace any file). Templates run in
//! strict mode without HTML escaping, and write every value through the `q` helper, which
//! emits a YAML double-quoted scalar. The text is then parsed back and checked
//! ([`check_manifest`]) before it is returned: kind and name, the tasks against the plan's
//! steps, images and commands, the DAG, each step's `heal` arguments and every engine
//! variable. Plan values are untrusted alert text: a value that an engine would expand
//! (`{{...}}` for Argo, `$(...)` for Tekton and for Kubernetes itself) is refused, since
//! Argo has no way to escape it.
//!
//! [`Renderer::new`] reads `templates_dir` once; everything else here is pure.

mod checks;
mod context;
mod names;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::Plan;

pub use context::{
    REPORT_TOKEN_DIR, REPORT_TOKEN_ENV, REPORT_TOKEN_FILE, REPORT_TOKEN_KEY, REPORT_TOKEN_VOLUME,
    report_args,
};
pub use names::{is_label_key, is_label_value, label_value, mutex_name, yaml_quote};

/// The workflow engine that carries out a remediation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Argo Workflows: a `Workflow` (`argoproj.io/v1alpha1`).
    Argo,
    /// Tekton Pipelines: a `PipelineRun` (`tekton.dev/v1`).
    Tekton,
    /// heald runs the DAG itself (a `HealPlan` document).
    Local,
}

impl Engine {
    /// Every engine, in the order users see them listed.
    pub const ALL: [Engine; 3] = [Engine::Argo, Engine::Tekton, Engine::Local];

    /// The lowercase name used in policies, flags and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Argo => "argo",
            Engine::Tekton => "tekton",
            Engine::Local => "local",
        }
    }

    /// `apiVersion` of the object rendered for this engine.
    pub fn api_version(self) -> &'static str {
        match self {
            Engine::Argo => "argoproj.io/v1alpha1",
            Engine::Tekton => "tekton.dev/v1",
            Engine::Local => HEAL_PLAN_API_VERSION,
        }
    }

    /// `kind` of the object rendered for this engine.
    pub fn kind(self) -> &'static str {
        match self {
            Engine::Argo => "Workflow",
            Engine::Tekton => "PipelineRun",
            Engine::Local => HEAL_PLAN_KIND,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engine name that is not `argo`, `tekton` or `local`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?}: expected argo, tekton or local")]
pub struct UnknownEngine(pub String);

impl FromStr for Engine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "argo" => Ok(Engine::Argo),
            "tekton" => Ok(Engine::Tekton),
            "local" => Ok(Engine::Local),
            _ => Err(UnknownEngine(s.to_string())),
        }
    }
}

/// When Argo deletes a workflow's pods (`spec.podGC.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodGcStrategy {
    /// Each pod as soon as it completes.
    OnPodCompletion,
    /// Each pod that succeeded; failed pods stay for `kubectl logs`.
    OnPodSuccess,
    /// All pods when the workflow completes.
    OnWorkflowCompletion,
    /// All pods when the workflow succeeds.
    OnWorkflowSuccess,
}

impl PodGcStrategy {
    /// The value Argo expects.
    pub fn as_str(self) -> &'static str {
        match self {
            PodGcStrategy::OnPodCompletion => "OnPodCompletion",
            PodGcStrategy::OnPodSuccess => "OnPodSuccess",
            PodGcStrategy::OnWorkflowCompletion => "OnWorkflowCompletion",
            PodGcStrategy::OnWorkflowSuccess => "OnWorkflowSuccess",
        }
    }
}

/// The Secret with heald's token that the report step mounts unless told otherwise: the one
/// heald itself reads its token from (`deploy/`).
pub const DEFAULT_REPORT_TOKEN_SECRET: &str = "heald-token";

/// How plans are rendered. `Default` gives the values heald ships with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RenderOptions {
    /// A directory laid out like `workflow-templates/` (`argo/*.hbs`, `tekton/*.hbs`); each
    /// file found there replaces the embedded template of the same name, other `*.hbs` files
    /// become extra partials. `None`: the embedded templates only.
    pub templates_dir: Option<PathBuf>,
    /// Tekton: embed the heal Task's spec (`taskSpec`) instead of `taskRef: {name: heal}`,
    /// for clusters where the shipped Task is not installed.
    pub tekton_embed_task: bool,
    /// Tekton: the name of the installed heal Task that `taskRef` points to.
    pub tekton_task_name: String,
    /// Argo `ttlStrategy.secondsAfterCompletion`: how long a finished workflow is kept.
    pub ttl_after_completion_seconds: u32,
    /// Argo `ttlStrategy.secondsAfterFailure`: how long a failed workflow is kept.
    pub ttl_after_failure_seconds: u32,
    /// Argo `podGC.strategy`.
    pub pod_gc_strategy: PodGcStrategy,
    /// Argo `podGC.deleteDelayDuration`, in seconds.
    pub pod_gc_delete_delay_seconds: u64,
    /// First wait before an engine-level retry (Argo `backoff.duration`), in seconds.
    pub retry_backoff_seconds: u64,
    /// Growth of the wait between retries (Argo `backoff.factor`).
    pub retry_backoff_factor: u32,
    /// Longest single wait between retries (Argo `backoff.cap`), in seconds.
    pub retry_backoff_cap_seconds: u64,
    /// Time allowed to the `heal report` exit handler / finally task, in seconds. It comes on
    /// top of the plan's deadline, so a run that hits its deadline still reports.
    pub report_timeout_seconds: u64,
    /// Engine-level retries of `heal report` (on exit code 3 for Argo).
    pub report_retries: u32,
    /// The Secret holding heald's bearer token under the key `token` (heald's own
    /// `heald-token`). When the plan has a report URL, the report step, and only it, mounts
    /// it read-only at [`REPORT_TOKEN_DIR`] (`optional: true`, so a missing Secret cannot
    /// keep the exit handler from starting) and gets `HEAL_REPORT_TOKEN_FILE` pointing at
    /// [`REPORT_TOKEN_FILE`]. `None` mounts nothing, for a heald that takes unauthenticated
    /// reports. The token itself never appears in a manifest.
    pub report_token_secret: Option<String>,
    /// Longest plan value (argument, annotation) accepted, in bytes.
    pub max_value_bytes: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            templates_dir: None,
            tekton_embed_task: false,
            tekton_task_name: "heal".into(),
            ttl_after_completion_seconds: 3600,
            ttl_after_failure_seconds: 86400,
            pod_gc_strategy: PodGcStrategy::OnPodSuccess,
            pod_gc_delete_delay_seconds: 60,
            retry_backoff_seconds: 5,
            retry_backoff_factor: 2,
            retry_backoff_cap_seconds: 60,
            report_timeout_seconds: 120,
            report_retries: 2,
            report_token_secret: Some(DEFAULT_REPORT_TOKEN_SECRET.into()),
            max_value_bytes: 16 * 1024,
        }
    }
}

/// A rendered, checked object, ready to submit (Argo, Tekton) or to run (local).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The engine it was rendered for.
    pub engine: Engine,
    /// The manifest as YAML text (what `heal render` prints).
    pub yaml: String,
    /// The same manifest as JSON (what is submitted).
    pub value: Value,
}

/// `apiVersion` of the local engine's plan document.
pub const HEAL_PLAN_API_VERSION: &str = "heal.dev/v1alpha1";
/// `kind` of the local engine's plan document.
pub const HEAL_PLAN_KIND: &str = "HealPlan";

/// The local engine's document: the plan with Kubernetes-style metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealPlan {
    /// Always [`HEAL_PLAN_API_VERSION`].
    pub api_version: String,
    /// Always [`HEAL_PLAN_KIND`].
    pub kind: String,
    /// Name, namespace, labels and annotations, as on a Workflow or PipelineRun.
    pub metadata: HealPlanMetadata,
    /// The plan itself.
    pub spec: Plan,
}

/// Metadata of a [`HealPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealPlanMetadata {
    /// The plan's run name.
    pub name: String,
    /// The plan's run namespace.
    pub namespace: String,
    /// The same labels a Workflow or PipelineRun carries.
    pub labels: BTreeMap<String, String>,
    /// The same annotations a Workflow or PipelineRun carries.
    pub annotations: BTreeMap<String, String>,
}

/// Why a plan could not be rendered, or why a rendered manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A plan field is unacceptable: not a valid name, too long, or carrying engine
    /// substitution syntax.
    #[error("{field}: {message}")]
    Plan {
        /// Where, e.g. `plan.steps[0].argv[3]`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A step depends on a step that does not exist.
    #[error("{at}: step {step:?} runs after {dependency:?}, which is not a step of this run")]
    MissingDependency {
        /// Where the dependency is written.
        at: String,
        /// The dependent step.
        step: String,
        /// The missing step.
        dependency: String,
    },
    /// The steps' dependencies form a cycle, so none of them could ever start.
    #[error("{at}: the steps depend on each other in a cycle: {}", .cycle.join(" -> "))]
    Cycle {
        /// Where the DAG is written.
        at: String,
        /// The steps of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A render option is out of range.
    #[error("render option {field}: {message}")]
    Options {
        /// The option's name.
        field: &'static str,
        /// What is allowed.
        message: String,
    },
    /// A template file or directory could not be read.
    #[error("reading templates from {}: {source}", .path.display())]
    TemplateIo {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A template does not compile.
    #[error("template {name}: {source}")]
    Template {
        /// The template's name (`argo/workflow`).
        name: String,
        /// The Handlebars error, with line and column.
        #[source]
        source: Box<handlebars::TemplateError>,
    },
    /// Rendering failed: a variable does not exist (strict mode) or a helper refused a value.
    #[error("rendering the {engine} template: {source}")]
    Render {
        /// The engine whose template failed.
        engine: Engine,
        /// The Handlebars error, with template, line and column.
        #[source]
        source: Box<handlebars::RenderError>,
    },
    /// The rendered text is not one YAML document.
    #[error("the rendered {engine} manifest is not valid YAML: {message}")]
    Parse {
        /// The engine whose template produced it.
        engine: Engine,
        /// The parser's message, with the location.
        message: String,
    },
    /// The rendered manifest fails a check.
    #[error("the rendered {engine} manifest is rejected at {path}: {message}")]
    Invalid {
        /// The engine whose template produced it.
        engine: Engine,
        /// JSON path of the offending place, e.g. `spec.templates[1].container.image`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The local plan document could not be serialised or read back.
    #[error("the local plan document: {0}")]
    Serialize(String),
}

/// Templates shipped in the binary: `(engine directory, file name, source)`.
const DEFAULT_TEMPLATES: &[(Engine, &str, &str)] = &[
    (
        Engine::Argo,
        "workflow.yaml.hbs",
        include_str!("../../workflow-templates/argo/workflow.yaml.hbs"),
    ),
    (
        Engine::Argo,
        "metadata.yaml.hbs",
        include_str!("../../workflow-templates/argo/metadata.yaml.hbs"),
    ),
    (
        Engine::Argo,
        "step-template.yaml.hbs",
        include_str!("../../workflow-templates/argo/step-template.yaml.hbs"),
    ),
    (
        Engine::Argo,
        "report-template.yaml.hbs",
        include_str!("../../workflow-templates/argo/report-template.yaml.hbs"),
    ),
    (
        Engine::Tekton,
        "pipelinerun.yaml.hbs",
        include_str!("../../workflow-templates/tekton/pipelinerun.yaml.hbs"),
    ),
    (
        Engine::Tekton,
        "metadata.yaml.hbs",
        include_str!("../../workflow-templates/tekton/metadata.yaml.hbs"),
    ),
    (
        Engine::Tekton,
        "pipeline-task.yaml.hbs",
        include_str!("../../workflow-templates/tekton/pipeline-task.yaml.hbs"),
    ),
    (
        Engine::Tekton,
        "task-spec.yaml.hbs",
        include_str!("../../workflow-templates/tekton/task-spec.yaml.hbs"),
    ),
];

/// The template each engine starts from; the others are partials (`{{> name}}`).
fn entry_template(engine: Engine) -> &'static str {
    match engine {
        Engine::Argo => "workflow",
        Engine::Tekton | Engine::Local => "pipelinerun",
    }
}

/// Compiled templates and options, reusable for any number of plans.
pub struct Renderer {
    argo: Handlebars<'static>,
    tekton: Handlebars<'static>,
    opts: RenderOptions,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Check the options and compile the templates (reading `templates_dir` if set).
    pub fn new(opts: RenderOptions) -> Result<Self, RenderError> {
        checks::check_options(&opts)?;
        let argo = registry(Engine::Argo, opts.templates_dir.as_deref())?;
        let tekton = registry(Engine::Tekton, opts.templates_dir.as_deref())?;
        Ok(Renderer { argo, tekton, opts })
    }

    /// The options this renderer was built with.
    pub fn options(&self) -> &RenderOptions {
        &self.opts
    }

    /// Render `plan` for `engine`, then parse the result back and check it.
    pub fn render(&self, plan: &Plan, engine: Engine) -> Result<Rendered, RenderError> {
        checks::check_plan(plan, engine, &self.opts)?;
        if engine == Engine::Local {
            return render_local(plan);
        }
        let hb = match engine {
            Engine::Argo => &self.argo,
            _ => &self.tekton,
        };
        let ctx = context::build(plan, engine, &self.opts);
        let yaml = hb
            .render(entry_template(engine), &ctx)
            .map_err(|e| RenderError::Render {
                engine,
                source: Box::new(e),
            })?;
        let value = parse_single(&yaml, engine)?;
        check_manifest(plan, engine, &value, &self.opts)?;
        Ok(Rendered {
            engine,
            yaml,
            value,
        })
    }
}

/// Render `plan` for `engine` with `opts`: [`Renderer::new`] then [`Renderer::render`].
/// Build a [`Renderer`] once instead when rendering many plans.
pub fn render(plan: &Plan, engine: Engine, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    Renderer::new(opts.clone())?.render(plan, engine)
}

/// Check a manifest rendered for `plan` (by this module or by anything else): kind and
/// name, labels, that its tasks are exactly the plan's steps with the plan's image, command
/// `heal` and arguments, that the DAG is complete and acyclic, that every step's arguments
/// are a valid `heal` command, and that every engine variable it uses is one the engine
/// resolves.
pub fn check_manifest(
    plan: &Plan,
    engine: Engine,
    value: &Value,
    opts: &RenderOptions,
) -> Result<(), RenderError> {
    match engine {
        Engine::Argo => validate::argo(plan, value, opts),
        Engine::Tekton => validate::tekton(plan, value, opts),
        Engine::Local => {
            let doc: HealPlan = serde_json::from_value(value.clone())
                .map_err(|e| RenderError::Serialize(e.to_string()))?;
            if doc.spec != *plan {
                return Err(RenderError::Invalid {
                    engine,
                    path: "spec".into(),
                    message: "does not read back as the plan".into(),
                });
            }
            Ok(())
        }
    }
}

/// The labels every rendered object carries (policy, fingerprint, alert name as valid label
/// values; the correlation id; `app.kubernetes.io/managed-by: heald`).
pub fn labels(plan: &Plan, engine: Engine) -> BTreeMap<String, String> {
    context::labels(plan, engine)
}

/// The annotations every rendered object carries: the raw, unsanitised alert values.
pub fn annotations(plan: &Plan) -> BTreeMap<String, String> {
    context::annotations(plan)
}

fn render_local(plan: &Plan) -> Result<Rendered, RenderError> {
    let doc = HealPlan {
        api_version: HEAL_PLAN_API_VERSION.into(),
        kind: HEAL_PLAN_KIND.into(),
        metadata: HealPlanMetadata {
            name: plan.run_name.clone(),
            namespace: plan.run_namespace.clone(),
            labels: labels(plan, Engine::Local),
            annotations: annotations(plan),
        },
        spec: plan.clone(),
    };
    let yaml = crate::yaml::to_string(&doc).map_err(|e| RenderError::Serialize(e.to_string()))?;
    let back: HealPlan =
        crate::yaml::from_str(&yaml).map_err(|e| RenderError::Serialize(e.to_string()))?;
    if back != doc {
        return Err(RenderError::Serialize(
            "the YAML document does not read back as the plan".into(),
        ));
    }
    let value = serde_json::to_value(&doc).map_err(|e| RenderError::Serialize(e.to_string()))?;
    Ok(Rendered {
        engine: Engine::Local,
        yaml,
        value,
    })
}

/// Parse rendered text, insisting on exactly one YAML document.
fn parse_single(yaml: &str, engine: Engine) -> Result<Value, RenderError> {
    let docs: Vec<Value> = crate::yaml::from_str_multi(yaml).map_err(|e| RenderError::Parse {
        engine,
        message: e.to_string(),
    })?;
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(RenderError::Parse {
            engine,
            message: format!("expected exactly one YAML document, found {n}"),
        }),
    }
}

/// Build one engine's Handlebars registry: strict, no escaping, the `q`, `int` and `qlist`
/// helpers, the embedded templates, then any replacements from `dir/<engine>/`.
fn registry(engine: Engine, dir: Option<&Path>) -> Result<Handlebars<'static>, RenderError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("q", Box::new(q_helper));
    hb.register_helper("qlist", Box::new(qlist_helper));
    hb.register_helper("int", Box::new(int_helper));
    let mut sources: BTreeMap<String, String> = DEFAULT_TEMPLATES
        .iter()
        .filter(|(e, _, _)| *e == engine)
        .map(|(_, file, src)| (template_name(file), (*src).to_string()))
        .collect();
    if let Some(dir) = dir {
        let sub = dir.join(engine.as_str());
        if sub.is_dir() {
            let entries = std::fs::read_dir(&sub).map_err(|source| RenderError::TemplateIo {
                path: sub.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| RenderError::TemplateIo {
                    path: sub.clone(),
                    source,
                })?;
                let path = entry.path();
                let Some(file) = path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                if !file.ends_with(".hbs") || !path.is_file() {
                    continue;
                }
                let src = std::fs::read_to_string(&path)
                    .map_err(|source| RenderError::TemplateIo { path, source })?;
                sources.insert(template_name(&file), src);
            }
        } else if !dir.is_dir() {
            return Err(RenderError::TemplateIo {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
    }
    for (name, src) in sources {
        hb.register_template_string(&name, src)
            .map_err(|e| RenderError::Template {
                name: format!("{engine}/{name}"),
                source: Box::new(e),
            })?;
    }
    Ok(hb)
}

/// `workflow.yaml.hbs` -> `workflow`.
fn template_name(file: &str) -> String {
    let stem = file.strip_suffix(".hbs").unwrap_or(file);
    stem.strip_suffix(".yaml").unwrap_or(stem).to_string()
}

fn helper_value<'a>(h: &'a Helper<'_>, name: &'static str) -> Result<&'a Value, RenderErrorReason> {
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
    if param.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(
            param.relative_path().cloned(),
        ));
    }
    Ok(param.value())
}

/// `{{q value}}`: a string as a YAML double-quoted scalar. Anything but a string is an error,
/// so a template cannot quietly print `null` or an object.
fn q_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    match helper_value(h, "q")? {
        Value::String(s) => out.write(&yaml_quote(s))?,
        other => {
            return Err(RenderErrorReason::Other(format!(
                "q expects a string, got {}",
                type_name(other)
            ))
            .into());
        }
    }
    Ok(())
}

/// `{{qlist values}}`: a list of strings as a YAML flow sequence of quoted scalars.
fn qlist_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let Value::Array(items) = helper_value(h, "qlist")? else {
        return Err(RenderErrorReason::Other("qlist expects a list of strings".into()).into());
    };
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) => parts.push(yaml_quote(s)),
            other => {
                return Err(RenderErrorReason::Other(format!(
                    "qlist expects strings, got {}",
                    type_name(other)
                ))
                .into());
            }
        }
    }
    out.write(&format!("[{}]", parts.join(", ")))?;
    Ok(())
}

/// `{{int value}}`: a whole number, written as a YAML integer.
fn int_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    match helper_value(h, "int")? {
        Value::Number(n) if n.is_u64() || n.is_i64() => out.write(&n.to_string())?,
        other => {
            return Err(RenderErrorReason::Other(format!(
                "int expects a whole number, got {}",
                type_name(other)
            ))
            .into());
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_parse_and_print_in_lower_case() {
        for e in Engine::ALL {
            assert_eq!(e.to_string().parse::<Engine>(), Ok(e));
        }
        assert_eq!("Argo".parse::<Engine>(), Ok(Engine::Argo));
        let err = "jenkins".parse::<Engine>().unwrap_err();
        assert!(err.to_string().contains("argo, tekton or local"));
        assert_eq!(
            serde_json::to_string(&Engine::Tekton).unwrap(),
            "\"tekton\""
        );
    }

    #[test]
    fn template_names_drop_the_yaml_and_hbs_suffixes() {
        assert_eq!(template_name("workflow.yaml.hbs"), "workflow");
        assert_eq!(template_name("extra.hbs"), "extra");
    }

    #[test]
    fn helpers_refuse_values_of_the_wrong_type() {
        let hb = registry(Engine::Argo, None).unwrap();
        let q = hb.render_template("{{q n}}", &serde_json::json!({"n": 3}));
        assert!(q.unwrap_err().to_string().contains("q expects a string"));
        let int = hb.render_template("{{int s}}", &serde_json::json!({"s": "3"}));
        assert!(int.unwrap_err().to_string().contains("int expects"));
        let missing = hb.render_template("{{q nope}}", &serde_json::json!({}));
        assert!(missing.is_err());
        let raw_missing = hb.render_template("{{nope}}", &serde_json::json!({}));
        assert!(raw_missing.is_err());
        let list = hb
            .render_template("{{qlist l}}", &serde_json::json!({"l": ["a", "b\"c"]}))
            .unwrap();
        assert_eq!(list, r#"["a", "b\"c"]"#);
    }
}
