//! Checks on a rendered Argo Workflow or Tekton PipelineRun, done on the parsed object so
//! they hold whatever a (possibly user-supplied) template wrote: the object is the one
//! asked for, its tasks are exactly the plan's steps running the plan's image with command
//! `heal` and the plan's arguments, the DAG is complete and acyclic, and every engine
//! variable is one the engine resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::checks::{REPORT_TASK, check_dag};
use super::context::{
    ARGO_RETRY_EXPRESSION, REPORT_TOKEN_DIR, REPORT_TOKEN_VOLUME, ReportToken, TEKTON_RESULT,
    report_args, report_token, step_args,
};
use super::names::{is_label_key, is_label_value, shorten};
use super::{Engine, RenderError, RenderOptions};
use crate::approval::GATE_TASK;
use crate::plan::Plan;

/// Kubernetes' limit on the total size of an object's annotations.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;
/// The only command a rendered container may run.
const HEAL_COMMAND: &[&str] = &["heal"];

type Res<T = ()> = Result<T, RenderError>;

struct Checker<'a> {
    engine: Engine,
    plan: &'a Plan,
}

impl<'a> Checker<'a> {
    fn err(&self, path: impl Into<String>, message: impl Into<String>) -> RenderError {
        RenderError::Invalid {
            engine: self.engine,
            path: shorten(path.into()),
            message: shorten(message.into()),
        }
    }

    fn obj<'v>(&self, v: &'v Value, path: &str) -> Res<&'v Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| self.err(path, "must be an object"))
    }

    fn field<'v>(&self, m: &'v Map<String, Value>, path: &str, key: &str) -> Res<&'v Value> {
        m.get(key)
            .ok_or_else(|| self.err(join(path, key), "is missing"))
    }

    fn str_field<'v>(&self, m: &'v Map<String, Value>, path: &str, key: &str) -> Res<&'v str> {
        self.field(m, path, key)?
            .as_str()
            .ok_or_else(|| self.err(join(path, key), "must be a string"))
    }

    fn arr<'v>(&self, v: &'v Value, path: &str) -> Res<&'v Vec<Value>> {
        v.as_array().ok_or_else(|| self.err(path, "must be a list"))
    }

    fn strings(&self, v: &Value, path: &str) -> Res<Vec<String>> {
        self.arr(v, path)?
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.err(format!("{path}[{i}]"), "must be a string"))
            })
            .collect()
    }

    fn expect_eq(&self, path: &str, found: &str, want: &str) -> Res {
        if found == want {
            Ok(())
        } else {
            Err(self.err(path, format!("is {found:?}, expected {want:?}")))
        }
    }

    /// apiVersion, kind, name, namespace, labels and annotations.
    fn header(&self, v: &Value) -> Res<&'a Plan> {
        let root = self.obj(v, "$")?;
        let api = self.str_field(root, "", "apiVersion")?;
        self.expect_eq("apiVersion", api, self.engine.api_version())?;
        let kind = self.str_field(root, "", "kind")?;
        self.expect_eq("kind", kind, self.engine.kind())?;
        let meta = self.obj(self.field(root, "", "metadata")?, "metadata")?;
        if meta.contains_key("generateName") {
            return Err(self.err(
                "metadata.generateName",
                "must not be set: the run's name is deterministic so a repeated alert is a duplicate",
            ));
        }
        let name = self.str_field(meta, "metadata", "name")?;
        self.expect_eq("metadata.name", name, &self.plan.run_name)?;
        let ns = self.str_field(meta, "metadata", "namespace")?;
        self.expect_eq("metadata.namespace", ns, &self.plan.run_namespace)?;
        let labels = self.obj(self.field(meta, "metadata", "labels")?, "metadata.labels")?;
        for (k, val) in labels {
            let path = format!("metadata.labels.{k}");
            if !is_label_key(k) {
                return Err(self.err(path, "is not a valid label key"));
            }
            match val.as_str() {
                Some(s) if is_label_value(s) => {}
                Some(s) => {
                    return Err(self.err(path, format!("{s:?} is not a valid label value")));
                }
                None => return Err(self.err(path, "must be a string")),
            }
        }
        for (k, want) in super::labels(self.plan, self.engine) {
            let path = format!("metadata.labels.{k}");
            match labels.get(&k).and_then(Value::as_str) {
                Some(found) => self.expect_eq(&path, found, &want)?,
                None => return Err(self.err(path, "is missing")),
            }
        }
        if let Some(ann) = meta.get("annotations") {
            let ann = self.obj(ann, "metadata.annotations")?;
            let mut total = 0;
            for (k, val) in ann {
                let path = format!("metadata.annotations.{k}");
                if !is_label_key(k) {
                    return Err(self.err(path, "is not a valid annotation key"));
                }
                let s = val
                    .as_str()
                    .ok_or_else(|| self.err(&path, "must be a string"))?;
                total += k.len() + s.len();
            }
            if total > ANNOTATIONS_MAX_BYTES {
                return Err(self.err(
                    "metadata.annotations",
                    format!("hold {total} bytes; Kubernetes allows {ANNOTATIONS_MAX_BYTES}"),
                ));
            }
        }
        Ok(self.plan)
    }

    /// Compare a rendered task list with the plan's steps and check the DAG.
    fn tasks_match_steps(
        &self,
        found: &[(String, Vec<String>)],
        tasks_path: &str,
        dep_field: &str,
    ) -> Res {
        let mut seen = BTreeSet::new();
        for (i, (name, _)) in found.iter().enumerate() {
            if !seen.insert(name.as_str()) {
                return Err(self.err(
                    format!("{tasks_path}[{i}].name"),
                    format!("{name:?} appears twice"),
                ));
            }
            if !self.plan.steps.iter().any(|s| &s.name == name) {
                return Err(self.err(
                    format!("{tasks_path}[{i}].name"),
                    format!("{name:?} is not a step of the plan"),
                ));
            }
        }
        for step in &self.plan.steps {
            if !seen.contains(step.name.as_str()) {
                return Err(self.err(
                    tasks_path,
                    format!("has no task for the plan's step {:?}", step.name),
                ));
            }
        }
        check_dag(
            found,
            |i| format!("{tasks_path}[{i}].{dep_field}"),
            tasks_path,
        )?;
        for (i, (name, deps)) in found.iter().enumerate() {
            let Some(step) = self.plan.steps.iter().find(|s| &s.name == name) else {
                continue;
            };
            let want: BTreeSet<&str> = step.after.iter().map(String::as_str).collect();
            let got: BTreeSet<&str> = deps.iter().map(String::as_str).collect();
            if want != got {
                return Err(self.err(
                    format!("{tasks_path}[{i}].{dep_field}"),
                    format!("runs after {got:?}, the plan says {want:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Every `image` is the plan's, every `command` is `heal`, and none of `forbidden`
    /// (ways to run something other than the plan's steps) appears.
    fn walk_containers(&self, v: &Value, path: &str, forbidden: &[&str]) -> Res {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    let p = join(path, k);
                    if forbidden.contains(&k.as_str()) {
                        return Err(self.err(p, "is not allowed in a rendered heal run"));
                    }
                    match k.as_str() {
                        "image" if val.is_string() => {
                            self.expect_eq(&p, val.as_str().unwrap_or(""), &self.plan.image)?;
                        }
                        "command" if val.is_array() => {
                            let cmd = self.strings(val, &p)?;
                            if cmd != HEAL_COMMAND {
                                return Err(self.err(p, format!("is {cmd:?}, expected [\"heal\"]")));
                            }
                        }
                        _ => {}
                    }
                    self.walk_containers(val, &p, forbidden)?;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk_containers(item, &format!("{path}[{i}]"), forbidden)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every engine variable in every string (keys too) is one the engine resolves here.
    fn walk_variables(&self, v: &Value, path: &str) -> Res {
        match v {
            Value::String(s) => self.variables_in(s, path),
            Value::Object(m) => {
                for (k, val) in m {
                    let p = join(path, k);
                    self.variables_in(k, &p)?;
                    self.walk_variables(val, &p)?;
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk_variables(item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn variables_in(&self, s: &str, path: &str) -> Res {
        let (open, close, other) = match self.engine {
            Engine::Argo => ("{{", "}}", "$("),
            _ => ("$(", ")", ""),
        };
        if !other.is_empty() && s.contains(other) {
            return Err(self.err(
                path,
                format!("contains {other:?}, which Kubernetes would expand in a container"),
            ));
        }
        let mut rest = s;
        while let Some(start) = rest.find(open) {
            let after = &rest[start + open.len()..];
            let Some(end) = after.find(close) else {
                return Err(self.err(path, format!("has an unclosed {open:?}")));
            };
            let var = after[..end].trim();
            if !self.allowed_variable(var) {
                return Err(self.err(
                    path,
                    format!(
                        "uses the variable {open}{var}{close}, which is not one {} resolves for a heal run",
                        self.engine
                    ),
                ));
            }
            rest = &after[end + close.len()..];
        }
        Ok(())
    }

    /// Keys that hand a Secret, settings or files to a container (`secret`, `env`,
    /// `volumeMounts`, ...) appear only at the paths in `allowed`, which the caller checks
    /// field by field; everywhere else they are refused.
    fn walk_sensitive(&self, v: &Value, path: &str, allowed: &[(&str, Vec<String>)]) -> Res {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    let p = join(path, k);
                    if let Some((_, paths)) = allowed.iter().find(|(key, _)| key == k)
                        && !paths.contains(&p)
                    {
                        return Err(self.err(p, sensitive_key_message(k)));
                    }
                    // Label, annotation and node-selector keys are data (`env: prod`).
                    if !matches!(k.as_str(), "labels" | "annotations" | "nodeSelector") {
                        self.walk_sensitive(val, &p, allowed)?;
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk_sensitive(item, &format!("{path}[{i}]"), allowed)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `found` is `want` exactly; `what` says what it is for the message.
    fn expect_value(&self, path: &str, found: Option<&Value>, want: &Value, what: &str) -> Res {
        match found {
            Some(f) if f == want => Ok(()),
            Some(f) => Err(self.err(path, format!("is {f}, {what} is exactly {want}"))),
            None => Err(self.err(path, format!("is missing: {what} is {want}"))),
        }
    }

    fn allowed_variable(&self, var: &str) -> bool {
        let is_step = |name: &str| self.plan.steps.iter().any(|s| s.name == name);
        let (plain, per_task): (&[&LazyLock<Regex>], &LazyLock<Regex>) = match self.engine {
            Engine::Argo => (&[&ARGO_VARS], &ARGO_TASK_VARS),
            _ => (&[&TEKTON_VARS], &TEKTON_TASK_VARS),
        };
        plain.iter().any(|re| re.is_match(var))
            || per_task
                .captures(var)
                .and_then(|c| c.get(1))
                .is_some_and(|m| is_step(m.as_str()))
    }
}

static ARGO_VARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(workflow\.(name|namespace|uid|status|duration|serviceAccountName|mainEntrypoint",
        r"|creationTimestamp(\.[A-Za-z]+)?|labels\.[A-Za-z0-9./_-]+|annotations\.[A-Za-z0-9./_-]+)",
        r"|inputs\.parameters\.[A-Za-z0-9_-]+|pod\.name|node\.name|retries)$"
    ))
    .expect("static regex")
});
static ARGO_TASK_VARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^tasks\.([a-z0-9-]+)\.(status|exitCode|id|ip|startedAt|finishedAt",
        r"|outputs\.result|outputs\.parameters\.[A-Za-z0-9_-]+)$"
    ))
    .expect("static regex")
});
static TEKTON_VARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(tasks\.status|params\.args\[\*\]|results\.[A-Za-z0-9_-]+\.path",
        r"|context\.(pipelineRun|pipeline|taskRun|task)\.(name|namespace|uid|retry-count))$"
    ))
    .expect("static regex")
});
static TEKTON_TASK_VARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^tasks\.([a-z0-9-]+)\.(status|reason|results\.[A-Za-z0-9_.-]+)$")
        .expect("static regex")
});

fn join(path: &str, key: &str) -> String {
    if path.is_empty() || path == "$" {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Why a key that could hand a Secret or settings to a container is refused where it is.
fn sensitive_key_message(key: &str) -> String {
    match key {
        "env" => "is not allowed here: heal steps take their settings from their arguments, and only the report step gets HEAL_REPORT_TOKEN_FILE".into(),
        "secret" | "secretKeyRef" | "secretRef" | "envFrom" | "projected" => format!(
            "is not allowed here: only the report step gets a Secret, heald's token as the volume {REPORT_TOKEN_VOLUME:?}"
        ),
        _ => format!("is not allowed here: a heal step mounts only scratch space, and the report step heald's token at {REPORT_TOKEN_DIR}"),
    }
}

/// The token Secret as an Argo volume or a Tekton workspace binding (the same shape).
fn token_volume(t: &ReportToken<'_>) -> Value {
    serde_json::json!({
        "name": t.volume,
        "secret": {
            "secretName": t.secret,
            "optional": true,
            "items": [{"key": t.key, "path": t.key}],
        },
    })
}

/// The variable that points `heal report` at the token file.
fn token_env(t: &ReportToken<'_>) -> Value {
    serde_json::json!([{"name": t.env, "value": t.file}])
}

/// Task names an Argo `depends` expression refers to (`a.Succeeded && (b || !c.Failed)`).
fn depends_names(expr: &str) -> Result<Vec<String>, String> {
    const RESULTS: &[&str] = &[
        "Succeeded",
        "Failed",
        "Errored",
        "Skipped",
        "Omitted",
        "Daemoned",
        "AnySucceeded",
        "AllFailed",
    ];
    let mut names = Vec::new();
    for token in expr
        .split(|c: char| c.is_whitespace() || matches!(c, '&' | '|' | '!' | '(' | ')'))
        .filter(|t| !t.is_empty())
    {
        let (name, result) = match token.split_once('.') {
            Some((n, r)) => (n, Some(r)),
            None => (token, None),
        };
        if let Some(r) = result
            && !RESULTS.contains(&r)
        {
            return Err(format!("{token:?} is not TASK or TASK.RESULT"));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Seconds in a Go duration string (`90s`, `1h30m`, `1m0.5s`).
fn go_duration_seconds(s: &str) -> Option<f64> {
    if s == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// Check an Argo `Workflow` rendered for `plan`.
pub fn argo(plan: &Plan, v: &Value, opts: &RenderOptions) -> Res {
    let c = Checker {
        engine: Engine::Argo,
        plan,
    };
    c.header(v)?;
    let root = c.obj(v, "$")?;
    let spec = c.obj(c.field(root, "", "spec")?, "spec")?;
    let sa = c.str_field(spec, "spec", "serviceAccountName")?;
    c.expect_eq("spec.serviceAccountName", sa, &plan.service_account)?;
    match spec.get("activeDeadlineSeconds").and_then(Value::as_u64) {
        Some(d) if d <= plan.run_deadline_seconds() => {}
        _ => {
            return Err(c.err(
                "spec.activeDeadlineSeconds",
                format!(
                    "must be a number of seconds no larger than the plan's deadline ({})",
                    plan.run_deadline_seconds()
                ),
            ));
        }
    }
    let gate = plan.approval.map(|_| GATE_TASK);
    let templates_v = c.field(spec, "spec", "templates")?;
    let templates = c.arr(templates_v, "spec.templates")?;
    let mut by_name: BTreeMap<&str, (usize, &Map<String, Value>)> = BTreeMap::new();
    for (i, t) in templates.iter().enumerate() {
        let path = format!("spec.templates[{i}]");
        let t = c.obj(t, &path)?;
        let name = c.str_field(t, &path, "name")?;
        if by_name.insert(name, (i, t)).is_some() {
            return Err(c.err(
                format!("{path}.name"),
                format!("{name:?} names two templates"),
            ));
        }
        let kinds: Vec<&str> = [
            "container",
            "script",
            "dag",
            "steps",
            "resource",
            "suspend",
            "containerSet",
            "data",
            "http",
            "plugin",
        ]
        .into_iter()
        .filter(|k| t.contains_key(*k))
        .collect();
        if gate == Some(name) && kinds == ["suspend"] {
            // The approval gate: exactly `suspend: {}`, nothing that resumes it by itself.
            let want = serde_json::json!({"name": GATE_TASK, "suspend": {}});
            c.expect_value(
                &path,
                Some(&Value::Object(t.clone())),
                &want,
                "the approval gate",
            )?;
            continue;
        }
        if kinds != ["container"] && kinds != ["dag"] {
            return Err(c.err(
                path,
                format!(
                    "has template type {kinds:?}; a heal run has only dag and container templates"
                ),
            ));
        }
    }
    let entry = c.str_field(spec, "spec", "entrypoint")?;
    let Some(&(main_i, main)) = by_name.get(entry) else {
        return Err(c.err("spec.entrypoint", format!("{entry:?} is not a template")));
    };
    let main_path = format!("spec.templates[{main_i}]");
    let dag = c.obj(
        c.field(main, &main_path, "dag")?,
        &format!("{main_path}.dag"),
    )?;
    let tasks_path = format!("{main_path}.dag.tasks");
    let tasks = c.arr(
        c.field(dag, &format!("{main_path}.dag"), "tasks")?,
        &tasks_path,
    )?;
    let mut used: BTreeSet<&str> = BTreeSet::from([entry]);
    let mut graph = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let tpath = format!("{tasks_path}[{i}]");
        let task = c.obj(task, &tpath)?;
        for key in task.keys() {
            if !matches!(
                key.as_str(),
                "name" | "template" | "depends" | "dependencies"
            ) {
                return Err(c.err(
                    join(&tpath, key),
                    "is not allowed on a heal task (only name, template, depends, dependencies)",
                ));
            }
        }
        let name = c.str_field(task, &tpath, "name")?;
        let deps = match (task.get("depends"), task.get("dependencies")) {
            (Some(_), Some(_)) => {
                return Err(c.err(
                    &tpath,
                    "sets both depends and dependencies, which Argo refuses",
                ));
            }
            (Some(d), None) => {
                let expr = d
                    .as_str()
                    .ok_or_else(|| c.err(format!("{tpath}.depends"), "must be a string"))?;
                depends_names(expr).map_err(|e| c.err(format!("{tpath}.depends"), e))?
            }
            (None, Some(d)) => c.strings(d, &format!("{tpath}.dependencies"))?,
            (None, None) => Vec::new(),
        };
        let dep_field = if task.contains_key("dependencies") {
            "dependencies"
        } else {
            "depends"
        };
        let tname = c.str_field(task, &tpath, "template")?;
        if let Some(g) = gate
            && name == g
        {
            c.expect_eq(&format!("{tpath}.template"), tname, g)?;
            if !deps.is_empty() {
                return Err(c.err(
                    format!("{tpath}.{dep_field}"),
                    "the approval gate waits for nothing but the approval",
                ));
            }
            used.insert(g);
            continue;
        }
        let mut deps = deps;
        let waits = gate.is_some_and(|g| {
            let before = deps.len();
            deps.retain(|d| d != g);
            deps.len() != before
        });
        if let Some(step) = plan.steps.iter().find(|s| s.name == name)
            && gate.is_some()
            && crate::approval::changes(&step.action)
            && !waits
        {
            return Err(c.err(
                format!("{tpath}.{dep_field}"),
                format!(
                    "step {name:?} changes the cluster and must wait for the approval gate {GATE_TASK:?}"
                ),
            ));
        }
        graph.push((name.to_string(), deps, dep_field));
        let Some(&(ti, t)) = by_name.get(tname) else {
            return Err(c.err(
                format!("{tpath}.template"),
                format!("{tname:?} is not a template"),
            ));
        };
        used.insert(tname);
        let Some(step) = plan.steps.iter().find(|s| s.name == name) else {
            continue; // reported by tasks_match_steps
        };
        let path = format!("spec.templates[{ti}]");
        let container = c.obj(
            c.field(t, &path, "container")?,
            &format!("{path}.container"),
        )?;
        let args = c.strings(
            c.field(container, &format!("{path}.container"), "args")?,
            &format!("{path}.container.args"),
        )?;
        let want = step_args(plan, step, Engine::Argo);
        if args != want {
            return Err(c.err(
                format!("{path}.container.args"),
                format!(
                    "are {args:?}, the plan's step {:?} runs {want:?}",
                    step.name
                ),
            ));
        }
        let want_sa = step.service_account.as_deref();
        let got_sa = t.get("serviceAccountName").and_then(Value::as_str);
        if got_sa != want_sa {
            return Err(c.err(
                format!("{path}.serviceAccountName"),
                format!("is {got_sa:?}, the plan's step runs as {want_sa:?}"),
            ));
        }
        if step.retries > 0 {
            let rs = t
                .get("retryStrategy")
                .and_then(Value::as_object)
                .ok_or_else(|| c.err(format!("{path}.retryStrategy"), "is missing"))?;
            let limit = rs.get("limit").and_then(|l| {
                l.as_u64()
                    .or_else(|| l.as_str().and_then(|s| s.parse().ok()))
            });
            if limit != Some(u64::from(step.retries)) {
                return Err(c.err(
                    format!("{path}.retryStrategy.limit"),
                    format!("must be {}", step.retries),
                ));
            }
            if rs.get("expression").and_then(Value::as_str) != Some(ARGO_RETRY_EXPRESSION) {
                return Err(c.err(
                    format!("{path}.retryStrategy.expression"),
                    format!("must be {ARGO_RETRY_EXPRESSION:?}: only exit code 3 is worth a retry"),
                ));
            }
        }
        let result_file = args
            .iter()
            .position(|a| a == "--result-file")
            .and_then(|i| args.get(i + 1));
        let exposed = t
            .get("outputs")
            .and_then(|o| o.get("parameters"))
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("valueFrom")
                        .and_then(|vf| vf.get("path"))
                        .and_then(Value::as_str)
                        == result_file.map(String::as_str)
                })
            });
        if !exposed {
            return Err(c.err(
                format!("{path}.outputs.parameters"),
                "must expose the --result-file as an output parameter (valueFrom.path)",
            ));
        }
    }
    let plain: Vec<(String, Vec<String>)> = graph
        .iter()
        .map(|(n, d, _)| (n.clone(), d.clone()))
        .collect();
    let dep_field = graph
        .iter()
        .find(|(_, _, f)| *f == "dependencies")
        .map_or("depends", |(_, _, f)| *f);
    c.tasks_match_steps(&plain, &tasks_path, dep_field)?;

    let on_exit = c.str_field(spec, "spec", "onExit")?;
    let Some(&(ei, exit)) = by_name.get(on_exit) else {
        return Err(c.err("spec.onExit", format!("{on_exit:?} is not a template")));
    };
    used.insert(on_exit);
    let epath = format!("spec.templates[{ei}].container");
    let container = c.obj(
        c.field(exit, &format!("spec.templates[{ei}]"), "container")?,
        &epath,
    )?;
    let args = c.strings(
        c.field(container, &epath, "args")?,
        &format!("{epath}.args"),
    )?;
    let want = report_args(plan, Engine::Argo);
    if args != want {
        return Err(c.err(
            format!("{epath}.args"),
            format!("are {args:?}, the exit handler runs {want:?}"),
        ));
    }
    let token = report_token(plan, opts);
    argo_mounts(&c, spec, templates, ei, token.as_ref())?;

    for (name, (i, _)) in &by_name {
        if !used.contains(name) {
            return Err(c.err(
                format!("spec.templates[{i}]"),
                format!("{name:?} is neither the DAG, a step nor the exit handler"),
            ));
        }
    }
    c.walk_containers(
        v,
        "",
        &[
            "templateRef",
            "workflowTemplateRef",
            "hooks",
            "script",
            "resource",
            "http",
            "plugin",
            "containerSet",
            "podSpecPatch",
            "templateDefaults",
        ],
    )?;
    let mounts: Vec<String> = templates
        .iter()
        .enumerate()
        .filter(|(_, t)| t.get("container").is_some())
        .map(|(i, _)| format!("spec.templates[{i}].container.volumeMounts"))
        .collect();
    let (exit_env, exit_secret) = match token {
        Some(_) => (
            vec![format!("spec.templates[{ei}].container.env")],
            vec![format!("spec.templates[{ei}].volumes[0].secret")],
        ),
        None => (Vec::new(), Vec::new()),
    };
    let allowed = [
        ("env", exit_env),
        ("secret", exit_secret),
        ("volumeMounts", mounts),
        ("envFrom", Vec::new()),
        ("secretKeyRef", Vec::new()),
        ("secretRef", Vec::new()),
        ("projected", Vec::new()),
    ];
    c.walk_sensitive(v, "", &allowed)?;
    c.walk_variables(v, "")
}

/// Argo volumes, mounts and variables: scratch `emptyDir` volumes on the Workflow, mounted
/// by any container; heald's token Secret on the exit handler alone, exactly as rendered
/// (read-only, optional, with `HEAL_REPORT_TOKEN_FILE`); nothing else.
fn argo_mounts(
    c: &Checker<'_>,
    spec: &Map<String, Value>,
    templates: &[Value],
    exit_i: usize,
    token: Option<&ReportToken<'_>>,
) -> Res {
    let mut scratch = BTreeSet::new();
    if let Some(vols) = spec.get("volumes") {
        for (i, vol) in c.arr(vols, "spec.volumes")?.iter().enumerate() {
            let path = format!("spec.volumes[{i}]");
            let vol = c.obj(vol, &path)?;
            let name = c.str_field(vol, &path, "name")?;
            if vol.len() != 2 || !vol.contains_key("emptyDir") {
                return Err(c.err(
                    path,
                    "only emptyDir scratch volumes are allowed on the Workflow; heald's token Secret is the exit handler's alone",
                ));
            }
            scratch.insert(name);
        }
    }
    for (i, t) in templates.iter().enumerate() {
        let tpath = format!("spec.templates[{i}]");
        let t = c.obj(t, &tpath)?;
        let exit_token = if i == exit_i { token } else { None };
        let vpath = format!("{tpath}.volumes");
        match (exit_token, t.get("volumes")) {
            (Some(tok), found) => c.expect_value(
                &vpath,
                found,
                &Value::Array(vec![token_volume(tok)]),
                "the exit handler's volume, heald's token Secret (render option reportTokenSecret),",
            )?,
            (None, Some(_)) => {
                return Err(c.err(
                    vpath,
                    "is not allowed: only the exit handler has a volume of its own, heald's token Secret",
                ));
            }
            (None, None) => {}
        }
        let Some(container) = t.get("container") else {
            continue;
        };
        let cpath = format!("{tpath}.container");
        let container = c.obj(container, &cpath)?;
        if let Some(tok) = exit_token {
            c.expect_value(
                &format!("{cpath}.env"),
                container.get("env"),
                &token_env(tok),
                "the exit handler's environment",
            )?;
        }
        let mut token_mounted = false;
        if let Some(mounts) = container.get("volumeMounts") {
            let mpath = format!("{cpath}.volumeMounts");
            for (j, m) in c.arr(mounts, &mpath)?.iter().enumerate() {
                let path = format!("{mpath}[{j}]");
                let name = c.str_field(c.obj(m, &path)?, &path, "name")?;
                match exit_token {
                    Some(tok) if name == tok.volume => {
                        let want = serde_json::json!({
                            "name": tok.volume,
                            "mountPath": tok.dir,
                            "readOnly": true,
                        });
                        c.expect_value(&path, Some(m), &want, "the token mount")?;
                        token_mounted = true;
                    }
                    _ if scratch.contains(name) => {}
                    _ => {
                        return Err(c.err(
                            path,
                            format!("mounts {name:?}, which is not a scratch emptyDir volume of the Workflow"),
                        ));
                    }
                }
            }
        }
        if let Some(tok) = exit_token
            && !token_mounted
        {
            return Err(c.err(
                format!("{cpath}.volumeMounts"),
                format!(
                    "must mount {:?} read-only at {}: heal report reads heald's token there",
                    tok.volume, tok.dir
                ),
            ));
        }
    }
    Ok(())
}

/// Check a Tekton `PipelineRun` rendered for `plan`.
pub fn tekton(plan: &Plan, v: &Value, opts: &RenderOptions) -> Res {
    let c = Checker {
        engine: Engine::Tekton,
        plan,
    };
    c.header(v)?;
    let root = c.obj(v, "$")?;
    let spec = c.obj(c.field(root, "", "spec")?, "spec")?;
    match (plan.approval, spec.get("status")) {
        (Some(_), found) => c.expect_value(
            "spec.status",
            found,
            &Value::String(super::context::TEKTON_PENDING.into()),
            "a run that waits for approval is created pending: its status",
        )?,
        (None, Some(_)) => {
            return Err(c.err(
                "spec.status",
                "must not be set: a heal run without an approval gate starts at once",
            ));
        }
        (None, None) => {}
    }
    let trt = c.obj(
        c.field(spec, "spec", "taskRunTemplate")?,
        "spec.taskRunTemplate",
    )?;
    let sa = c.str_field(trt, "spec.taskRunTemplate", "serviceAccountName")?;
    c.expect_eq(
        "spec.taskRunTemplate.serviceAccountName",
        sa,
        &plan.service_account,
    )?;
    let token = report_token(plan, opts);
    let mut step_sas: BTreeMap<String, String> = BTreeMap::new();
    let mut report_env = None;
    if let Some(specs) = spec.get("taskRunSpecs") {
        for (i, s) in c.arr(specs, "spec.taskRunSpecs")?.iter().enumerate() {
            let path = format!("spec.taskRunSpecs[{i}]");
            let s = c.obj(s, &path)?;
            let task = c.str_field(s, &path, "pipelineTaskName")?;
            for key in s.keys() {
                if !matches!(
                    key.as_str(),
                    "pipelineTaskName" | "serviceAccountName" | "podTemplate"
                ) {
                    return Err(c.err(
                        join(&path, key),
                        "is not allowed on a heal run (only pipelineTaskName, serviceAccountName, and the report's podTemplate)",
                    ));
                }
            }
            if let Some(sa) = s.get("serviceAccountName") {
                let sa = sa.as_str().ok_or_else(|| {
                    c.err(format!("{path}.serviceAccountName"), "must be a string")
                })?;
                if task == REPORT_TASK {
                    return Err(c.err(
                        format!("{path}.serviceAccountName"),
                        format!("is {sa:?}: the report runs as the run's service account"),
                    ));
                }
                step_sas.insert(task.to_string(), sa.to_string());
            }
            if let Some(pt) = s.get("podTemplate") {
                let ppath = format!("{path}.podTemplate");
                match &token {
                    Some(tok) if task == REPORT_TASK => {
                        let want = serde_json::json!({"env": token_env(tok)});
                        c.expect_value(&ppath, Some(pt), &want, "the report's pod template")?;
                        report_env = Some(format!("{ppath}.env"));
                    }
                    _ => {
                        return Err(c.err(
                            ppath,
                            "is not allowed: only the report task has a pod template of its own, to set HEAL_REPORT_TOKEN_FILE",
                        ));
                    }
                }
            }
        }
    }
    if let Some(tok) = &token
        && report_env.is_none()
    {
        return Err(c.err(
            "spec.taskRunSpecs",
            format!(
                "must set {}={} for the {REPORT_TASK:?} task (podTemplate.env): heal report reads heald's token there",
                tok.env, tok.file
            ),
        ));
    }
    match (&token, spec.get("workspaces")) {
        (Some(tok), found) => c.expect_value(
            "spec.workspaces",
            found,
            &Value::Array(vec![token_volume(tok)]),
            "the report's workspace binding, heald's token Secret (render option reportTokenSecret),",
        )?,
        (None, Some(_)) => {
            return Err(c.err(
                "spec.workspaces",
                "is not allowed: a heal run binds a workspace only to give its report heald's token",
            ));
        }
        (None, None) => {}
    }
    for step in &plan.steps {
        let got = step_sas.get(&step.name).map(String::as_str);
        if got != step.service_account.as_deref() {
            return Err(c.err(
                "spec.taskRunSpecs",
                format!(
                    "runs step {:?} as {got:?}, the plan says {:?}",
                    step.name, step.service_account
                ),
            ));
        }
    }

    let timeouts = c.obj(c.field(spec, "spec", "timeouts")?, "spec.timeouts")?;
    let mut secs = BTreeMap::new();
    for key in ["pipeline", "tasks", "finally"] {
        let s = c.str_field(timeouts, "spec.timeouts", key)?;
        let n = go_duration_seconds(s).ok_or_else(|| {
            c.err(
                format!("spec.timeouts.{key}"),
                format!("{s:?} is not a duration"),
            )
        })?;
        secs.insert(key, n);
    }
    if secs["tasks"] > plan.deadline_seconds as f64 {
        return Err(c.err(
            "spec.timeouts.tasks",
            format!("exceeds the plan's deadline ({} s)", plan.deadline_seconds),
        ));
    }
    if secs["tasks"] + secs["finally"] > secs["pipeline"] {
        return Err(c.err(
            "spec.timeouts",
            "tasks + finally must not exceed pipeline, which Tekton refuses",
        ));
    }

    let ps_path = "spec.pipelineSpec";
    let ps = c.obj(c.field(spec, "spec", "pipelineSpec")?, ps_path)?;
    let wpath = format!("{ps_path}.workspaces");
    match (&token, ps.get("workspaces")) {
        (Some(tok), Some(w)) => {
            let [decl] = c.arr(w, &wpath)?.as_slice() else {
                return Err(c.err(
                    &wpath,
                    format!("must declare exactly one workspace, {:?}", tok.volume),
                ));
            };
            let dpath = format!("{wpath}[0]");
            let decl = c.obj(decl, &dpath)?;
            let name = c.str_field(decl, &dpath, "name")?;
            c.expect_eq(&format!("{dpath}.name"), name, tok.volume)?;
            if let Some(key) = decl
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "description" | "optional"))
            {
                return Err(c.err(join(&dpath, key), "is not allowed"));
            }
        }
        (Some(tok), None) => {
            return Err(c.err(
                &wpath,
                format!(
                    "is missing: the pipeline declares the workspace {:?} for the report",
                    tok.volume
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(c.err(
                &wpath,
                "is not allowed: a heal run declares a workspace only for its report's token",
            ));
        }
        (None, None) => {}
    }
    let tasks_path = format!("{ps_path}.tasks");
    let tasks = c.arr(c.field(ps, ps_path, "tasks")?, &tasks_path)?;
    let mut graph = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let tpath = format!("{tasks_path}[{i}]");
        let task = c.obj(task, &tpath)?;
        let name = c.str_field(task, &tpath, "name")?;
        let deps = match task.get("runAfter") {
            Some(r) => c.strings(r, &format!("{tpath}.runAfter"))?,
            None => Vec::new(),
        };
        graph.push((name.to_string(), deps));
        let Some(step) = plan.steps.iter().find(|s| s.name == name) else {
            continue; // reported by tasks_match_steps
        };
        let args = tekton_task(&c, task, &tpath, opts, TektonTask::Step)?;
        let want = step_args(plan, step, Engine::Tekton);
        if args != want {
            return Err(c.err(
                format!("{tpath}.params"),
                format!(
                    "pass args {args:?}, the plan's step {:?} runs {want:?}",
                    step.name
                ),
            ));
        }
        let mut full = args.clone();
        full.extend([
            "--result-file".into(),
            format!("/tekton/results/{TEKTON_RESULT}"),
        ]);
        let retries = task.get("retries").and_then(Value::as_u64).unwrap_or(0);
        if retries != u64::from(step.retries) {
            return Err(c.err(
                format!("{tpath}.retries"),
                format!(
                    "is {retries}, the plan's step retries {} times",
                    step.retries
                ),
            ));
        }
        if let Some(t) = task.get("timeout") {
            let s = t.as_str().unwrap_or("");
            match go_duration_seconds(s) {
                Some(n) if n <= secs["tasks"] => {}
                _ => {
                    return Err(c.err(
                        format!("{tpath}.timeout"),
                        format!("{s:?} must be a duration no longer than timeouts.tasks"),
                    ));
                }
            }
        }
    }
    c.tasks_match_steps(&graph, &tasks_path, "runAfter")?;

    let fpath = format!("{ps_path}.finally");
    let finally = c.arr(c.field(ps, ps_path, "finally")?, &fpath)?;
    let [report] = finally.as_slice() else {
        return Err(c.err(&fpath, "must hold exactly one task, the heal report"));
    };
    let rpath = format!("{fpath}[0]");
    let report = c.obj(report, &rpath)?;
    let name = c.str_field(report, &rpath, "name")?;
    c.expect_eq(&format!("{rpath}.name"), name, REPORT_TASK)?;
    if report.contains_key("runAfter") {
        return Err(c.err(format!("{rpath}.runAfter"), "is not allowed in finally"));
    }
    let args = tekton_task(
        &c,
        report,
        &rpath,
        opts,
        TektonTask::Report {
            token: token.is_some(),
        },
    )?;
    let fw = format!("{rpath}.workspaces");
    match (&token, report.get("workspaces")) {
        (Some(tok), found) => {
            let want = serde_json::json!([{"name": tok.volume, "workspace": tok.volume}]);
            c.expect_value(&fw, found, &want, "the report's workspace")?;
        }
        (None, Some(_)) => {
            return Err(c.err(
                fw,
                "is not allowed: the report binds a workspace only for heald's token",
            ));
        }
        (None, None) => {}
    }
    let want = report_args(plan, Engine::Tekton);
    if args != want {
        return Err(c.err(
            format!("{rpath}.params"),
            format!("pass args {args:?}, the report runs {want:?}"),
        ));
    }

    c.walk_containers(
        v,
        "",
        &[
            "pipelineRef",
            "resolver",
            "script",
            "matrix",
            "when",
            "sidecars",
            "stepTemplate",
            "ref",
        ],
    )?;
    let exit_secret = match token {
        Some(_) => vec!["spec.workspaces[0].secret".to_string()],
        None => Vec::new(),
    };
    let allowed = [
        ("env", report_env.into_iter().collect()),
        ("secret", exit_secret),
        ("volumes", Vec::new()),
        ("volumeMounts", Vec::new()),
        ("envFrom", Vec::new()),
        ("secretKeyRef", Vec::new()),
        ("secretRef", Vec::new()),
        ("projected", Vec::new()),
    ];
    c.walk_sensitive(v, "", &allowed)?;
    c.walk_variables(v, "")
}

/// Which pipeline task [`tekton_task`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TektonTask {
    /// One of the plan's steps.
    Step,
    /// The finally task, which may bind the token workspace (checked by the caller);
    /// `token`: it does, so an embedded Task spec must declare it.
    Report { token: bool },
}

/// The task reference (or embedded heal Task spec) of a pipeline task, and its `args`.
fn tekton_task(
    c: &Checker<'_>,
    task: &Map<String, Value>,
    path: &str,
    opts: &RenderOptions,
    role: TektonTask,
) -> Res<Vec<String>> {
    for key in task.keys() {
        let workspaces = key == "workspaces" && role != TektonTask::Step;
        if !workspaces
            && !matches!(
                key.as_str(),
                "name" | "taskRef" | "taskSpec" | "params" | "runAfter" | "retries" | "timeout"
            )
        {
            return Err(c.err(
                join(path, key),
                "is not allowed on a heal task (only name, taskRef or taskSpec, params, runAfter, retries, timeout)",
            ));
        }
    }
    match (task.get("taskRef"), task.get("taskSpec")) {
        (Some(r), None) if !opts.tekton_embed_task => {
            let rp = format!("{path}.taskRef");
            let r = c.obj(r, &rp)?;
            let name = c.str_field(r, &rp, "name")?;
            c.expect_eq(&format!("{rp}.name"), name, &opts.tekton_task_name)?;
            if let Some(kind) = r.get("kind") {
                c.expect_eq(&format!("{rp}.kind"), kind.as_str().unwrap_or(""), "Task")?;
            }
            for key in r.keys() {
                if !matches!(key.as_str(), "name" | "kind") {
                    return Err(c.err(
                        join(&rp, key),
                        "is not allowed: the heal Task is referenced by name",
                    ));
                }
            }
        }
        (None, Some(s)) if opts.tekton_embed_task => {
            let sp = format!("{path}.taskSpec");
            let s = c.obj(s, &sp)?;
            let wpath = format!("{sp}.workspaces");
            match s.get("workspaces") {
                Some(w) => tekton_token_workspace(c, w, &wpath)?,
                None if role == (TektonTask::Report { token: true }) => {
                    return Err(c.err(
                        wpath,
                        format!(
                            "is missing: the report's Task declares the workspace {REPORT_TOKEN_VOLUME:?} for heald's token"
                        ),
                    ));
                }
                None => {}
            }
            let steps = c.arr(c.field(s, &sp, "steps")?, &format!("{sp}.steps"))?;
            for (i, st) in steps.iter().enumerate() {
                let stp = format!("{sp}.steps[{i}]");
                let st = c.obj(st, &stp)?;
                let image = c.str_field(st, &stp, "image")?;
                c.expect_eq(&format!("{stp}.image"), image, &c.plan.image)?;
                let args = c.strings(c.field(st, &stp, "args")?, &format!("{stp}.args"))?;
                if args.first().map(String::as_str) != Some("$(params.args[*])") {
                    return Err(c.err(
                        format!("{stp}.args"),
                        "must start with \"$(params.args[*])\", the step's arguments",
                    ));
                }
            }
        }
        _ => {
            let want = if opts.tekton_embed_task {
                "an embedded taskSpec (option tektonEmbedTask)"
            } else {
                "a taskRef to the installed heal Task"
            };
            return Err(c.err(path, format!("must use {want}")));
        }
    }
    let pp = format!("{path}.params");
    let params = c.arr(c.field(task, path, "params")?, &pp)?;
    let [param] = params.as_slice() else {
        return Err(c.err(&pp, "must hold exactly one param, args"));
    };
    let param = c.obj(param, &format!("{pp}[0]"))?;
    let name = c.str_field(param, &format!("{pp}[0]"), "name")?;
    c.expect_eq(&format!("{pp}[0].name"), name, "args")?;
    c.strings(
        c.field(param, &format!("{pp}[0]"), "value")?,
        &format!("{pp}[0].value"),
    )
}

/// The heal Task's one workspace: heald's token, optional, mounted read-only at
/// [`REPORT_TOKEN_DIR`].
fn tekton_token_workspace(c: &Checker<'_>, w: &Value, path: &str) -> Res {
    let [decl] = c.arr(w, path)?.as_slice() else {
        return Err(c.err(
            path,
            format!("must declare exactly one workspace, {REPORT_TOKEN_VOLUME:?}"),
        ));
    };
    let dpath = format!("{path}[0]");
    let decl = c.obj(decl, &dpath)?;
    let name = c.str_field(decl, &dpath, "name")?;
    c.expect_eq(&format!("{dpath}.name"), name, REPORT_TOKEN_VOLUME)?;
    let mount = c.str_field(decl, &dpath, "mountPath")?;
    c.expect_eq(&format!("{dpath}.mountPath"), mount, REPORT_TOKEN_DIR)?;
    for key in ["readOnly", "optional"] {
        if decl.get(key) != Some(&Value::Bool(true)) {
            return Err(c.err(join(&dpath, key), "must be true"));
        }
    }
    if let Some(key) = decl.keys().find(|k| {
        !matches!(
            k.as_str(),
            "name" | "description" | "mountPath" | "readOnly" | "optional"
        )
    }) {
        return Err(c.err(join(&dpath, key), "is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_expressions_name_their_tasks() {
        assert_eq!(
            depends_names("a.Succeeded && (b || !c.Failed)").unwrap(),
            ["a", "b", "c"]
        );
        assert!(depends_names("a.Whatever").is_err());
        assert!(depends_names("").unwrap().is_empty());
    }

    #[test]
    fn go_durations_are_read_in_seconds() {
        assert_eq!(go_duration_seconds("90s"), Some(90.0));
        assert_eq!(go_duration_seconds("1h30m"), Some(5400.0));
        assert_eq!(go_duration_seconds("0"), Some(0.0));
        assert_eq!(go_duration_seconds("10"), None);
        assert_eq!(go_duration_seconds("soon"), None);
    }
}
