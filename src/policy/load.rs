//! Loading policies from YAML: the `heal.dev/v1alpha1` documents, the older flat format
//! (bare list or inside a ConfigMap), notifiers; every error with file, line, column and a
//! fix hint.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    API_VERSION, Action, FailureBudget, GitOpsStep, Guards, Notifier, NotifierKind, OnFailure,
    OnResolved, OnSuccess, Piece, Policy, PolicySet, Source, StatusFilter, Step, StepTarget,
    TargetField, TargetSpec, Template, UrlSource, ValueSource, flat,
};
use crate::address::{self, TypeRef};
use crate::matcher::Matchers;
use crate::render::Engine;
use crate::yaml::{self, Segment};

/// One policy file's text, read by the caller.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path shown in messages.
    pub path: PathBuf,
    /// The YAML text.
    pub text: String,
    /// Found by listing a directory (rather than named by the user): `heal policy test`
    /// files (top-level `tests:`) in it are skipped instead of rejected.
    pub from_directory: bool,
}

impl SourceFile {
    /// A file named by the user.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
            from_directory: false,
        }
    }
}

/// Where in which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        Ok(())
    }
}

/// Why a policy file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The YAML does not have the expected shape: syntax, unknown or missing field, wrong type.
    #[error("{at}: {message} (hint: {hint})")]
    Parse {
        /// Where.
        at: At,
        /// What.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// Well-formed, but not a valid policy: unknown action, cycle, bad regex, ...
    #[error("{at}: {message} (hint: {hint})")]
    Invalid {
        /// Where.
        at: At,
        /// What.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A file or directory could not be read.
    #[error("{}: cannot read: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
}

impl LoadError {
    /// Where the error is.
    pub fn at(&self) -> At {
        match self {
            LoadError::Parse { at, .. } | LoadError::Invalid { at, .. } => at.clone(),
            LoadError::Io { path, .. } => At {
                file: path.clone(),
                line: None,
                column: None,
            },
        }
    }
}

/// Every error found while loading a set of files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct LoadErrors(pub Vec<LoadError>);

/// A problem found in a document, located by its path in the document.
pub(super) struct Issue {
    pub(super) path: Vec<Segment>,
    pub(super) message: String,
    pub(super) hint: String,
}

pub(super) fn issue(
    path: &[Segment],
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Issue {
    Issue {
        path: path.to_vec(),
        message: message.into(),
        hint: hint.into(),
    }
}

pub(super) fn at(base: &[Segment], more: &[Segment]) -> Vec<Segment> {
    let mut p = base.to_vec();
    p.extend_from_slice(more);
    p
}

pub(super) fn k(key: &str) -> Segment {
    Segment::Key(key.to_string())
}

/// One YAML document of a file (possibly embedded in a ConfigMap).
pub(super) struct Doc<'a> {
    file: &'a Path,
    text: &'a str,
    index: usize,
    line_offset: usize,
    column_offset: usize,
}

impl Doc<'_> {
    fn at(&self, loc: Option<yaml::Location>) -> At {
        At {
            file: self.file.to_path_buf(),
            line: loc.map(|l| l.line + self.line_offset),
            column: loc.map(|l| l.column + self.column_offset),
        }
    }

    pub(super) fn locate(&self, path: &[Segment]) -> Option<yaml::Location> {
        // Fall back to the nearest enclosing node that exists.
        (0..=path.len())
            .rev()
            .find_map(|n| yaml::locate(self.text, self.index, &path[..n]))
    }

    fn invalid(&self, issue: Issue) -> LoadError {
        LoadError::Invalid {
            at: self.at(self.locate(&issue.path)),
            message: issue.message,
            hint: issue.hint,
        }
    }

    fn source(&self, path: &[Segment]) -> Source {
        Source {
            file: self.file.to_path_buf(),
            line: self
                .locate(path)
                .map(|l| l.line + self.line_offset)
                .unwrap_or(0),
        }
    }

    /// The raw text of the scalar at `path`, from its first character to the end of its line.
    pub(super) fn raw_scalar(&self, path: &[Segment]) -> Option<&str> {
        let loc = yaml::locate(self.text, self.index, path)?;
        let line = self.text.lines().nth(loc.line - 1)?;
        let start = line.char_indices().nth(loc.column - 1).map(|(i, _)| i)?;
        Some(&line[start..])
    }

    fn typed<T: DeserializeOwned>(&self) -> Result<T, LoadError> {
        let doc = yaml_serde::Deserializer::from_str(self.text)
            .nth(self.index)
            .ok_or_else(|| LoadError::Parse {
                at: self.at(None),
                message: "document disappeared".into(),
                hint: "report this as a bug".into(),
            })?;
        T::deserialize(doc).map_err(|e| self.parse_error(&e))
    }

    fn parse_error(&self, e: &yaml::Error) -> LoadError {
        let message = yaml::message(e);
        LoadError::Parse {
            at: self.at(yaml::Location::of(e)),
            hint: parse_hint(&message),
            message,
        }
    }
}

fn parse_hint(message: &str) -> String {
    if message.contains("unknown field") {
        "fix the spelling or remove the field; the fields allowed here are listed in the message"
            .into()
    } else if let Some(field) = message
        .split("missing field `")
        .nth(1)
        .and_then(|s| s.split('`').next())
    {
        format!("add the required field `{field}:`")
    } else if message.contains("invalid type") {
        "give the field a value of the type named in the message (quote strings such as \"+1\")"
            .into()
    } else {
        "check the YAML syntax near this position (indentation, quotes, a missing ':')".into()
    }
}

#[derive(Default)]
struct Ctx {
    set: PolicySet,
    errors: Vec<LoadError>,
    policy_names: HashMap<String, Source>,
    notifier_names: HashMap<String, Source>,
    /// `onFailure.notify` references, checked once every file is loaded.
    notify_refs: Vec<(String, LoadError)>,
}

pub(super) fn parse(files: &[SourceFile]) -> Result<PolicySet, LoadErrors> {
    let mut ctx = Ctx::default();
    for f in files {
        load_text(&f.path, &f.text, (0, 0), f.from_directory, &mut ctx);
    }
    let notifiers = std::mem::take(&mut ctx.notify_refs);
    for (name, err) in notifiers {
        if !ctx.notifier_names.contains_key(&name) {
            ctx.errors.push(err);
        }
    }
    // Report in reading order: files as given, then by position in the file.
    let order = |e: &LoadError| {
        let at = e.at();
        let file = files.iter().position(|f| f.path == at.file);
        (file, at.line, at.column)
    };
    ctx.errors.sort_by_key(order);
    if ctx.errors.is_empty() {
        Ok(ctx.set)
    } else {
        Err(LoadErrors(ctx.errors))
    }
}

fn load_text(file: &Path, text: &str, offset: (usize, usize), from_dir: bool, ctx: &mut Ctx) {
    for (index, de) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let doc = Doc {
            file,
            text,
            index,
            line_offset: offset.0,
            column_offset: offset.1,
        };
        let value = match yaml_serde::Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                ctx.errors.push(doc.parse_error(&e));
                return;
            }
        };
        load_doc(&doc, &value, from_dir, ctx);
    }
}

fn load_doc(doc: &Doc, value: &yaml_serde::Value, from_dir: bool, ctx: &mut Ctx) {
    use yaml_serde::Value;
    match value {
        Value::Null => {}
        Value::Sequence(_) => match doc.typed::<Vec<flat::RawFlat>>() {
            Ok(list) => {
                for (i, raw) in list.into_iter().enumerate() {
                    add_flat(doc, raw, &[Segment::Index(i)], ctx);
                }
            }
            Err(e) => ctx.errors.push(e),
        },
        Value::Mapping(m) => {
            let kind = m.get("kind").and_then(Value::as_str);
            match kind {
                Some("HealingPolicy") => match doc.typed::<RawPolicyDoc>() {
                    Ok(raw) => add_policy(doc, raw, ctx),
                    Err(e) => ctx.errors.push(e),
                },
                Some("Notifier") => match doc.typed::<RawNotifierDoc>() {
                    Ok(raw) => add_notifier(doc, raw, ctx),
                    Err(e) => ctx.errors.push(e),
                },
                Some("ConfigMap") => match doc.typed::<RawConfigMap>() {
                    Ok(cm) => load_config_map(doc, cm, ctx),
                    Err(e) => ctx.errors.push(e),
                },
                None if m.contains_key("tests") => {
                    if !from_dir {
                        ctx.errors.push(doc.invalid(issue(
                            &[Segment::KeyOf("tests".into())],
                            "this is a `heal policy test` file, not a policy file",
                            "pass it as the second argument: heal policy test POLICIES TESTS.yaml",
                        )));
                    }
                }
                None if m.contains_key("condition") || m.contains_key("action") => {
                    match doc.typed::<flat::RawFlat>() {
                        Ok(raw) => add_flat(doc, raw, &[], ctx),
                        Err(e) => ctx.errors.push(e),
                    }
                }
                None => ctx.errors.push(doc.invalid(issue(
                    &[],
                    "document has no `kind`",
                    format!(
                        "start the document with `apiVersion: {API_VERSION}` and `kind: HealingPolicy` \
                         (or `kind: Notifier`), or write the flat format as a list"
                    ),
                ))),
                Some(other) => ctx.errors.push(doc.invalid(issue(
                    &[k("kind")],
                    format!("unknown kind {other:?}"),
                    "use HealingPolicy, Notifier, or a ConfigMap whose data holds policies",
                ))),
            }
        }
        _ => ctx.errors.push(doc.invalid(issue(
            &[],
            "expected a policy document (a mapping) or a flat-format list",
            format!("see the README for the `{API_VERSION}` policy format"),
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfigMap {
    #[serde(default)]
    data: BTreeMap<String, String>,
}

fn load_config_map(doc: &Doc, cm: RawConfigMap, ctx: &mut Ctx) {
    let mut found = false;
    for (key, text) in &cm.data {
        if !(key.ends_with(".yaml") || key.ends_with(".yml")) {
            continue;
        }
        found = true;
        let path = [k("data"), k(key)];
        // A block scalar (`key: |`) starts on the line after its indicator, indented.
        let offset = match yaml::locate(doc.text, doc.index, &path) {
            Some(loc) => {
                let indicator = doc.text.lines().nth(loc.line - 1).unwrap_or("");
                let block = indicator.trim_end().ends_with(['|', '>', '-', '+']);
                if block {
                    let indent = doc
                        .text
                        .lines()
                        .skip(loc.line)
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.len() - l.trim_start().len())
                        .unwrap_or(0);
                    (loc.line + doc.line_offset, indent + doc.column_offset)
                } else {
                    (loc.line - 1 + doc.line_offset, doc.column_offset)
                }
            }
            None => (doc.line_offset, doc.column_offset),
        };
        load_text(doc.file, text, offset, false, ctx);
    }
    if !found {
        ctx.errors.push(doc.invalid(issue(
            &[k("data")],
            "ConfigMap has no data key ending in .yaml or .yml",
            "put the policies under `data: {policies.yaml: |...}`",
        )));
    }
}

fn add_flat(doc: &Doc, raw: flat::RawFlat, base: &[Segment], ctx: &mut Ctx) {
    let source = doc.source(&at(base, &[k("name")]));
    match flat::convert(raw, source, base) {
        Ok(policy) => register_policy(doc, policy, &at(base, &[k("name")]), ctx),
        Err(issues) => ctx
            .errors
            .extend(issues.into_iter().map(|i| doc.invalid(i))),
    }
}

fn register_policy(doc: &Doc, policy: Policy, name_path: &[Segment], ctx: &mut Ctx) {
    if let Some(first) = ctx.policy_names.get(&policy.name) {
        ctx.errors.push(doc.invalid(issue(
            name_path,
            format!(
                "duplicate policy name {:?} (first defined at {first})",
                policy.name
            ),
            "give every policy a unique name; names identify runs and metrics",
        )));
        return;
    }
    ctx.policy_names
        .insert(policy.name.clone(), policy.source.clone());
    ctx.set.policies.push(policy);
}

// ---------------------------------------------------------------------------------------
// The heal.dev/v1alpha1 HealingPolicy document.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicyDoc {
    api_version: String,
    #[allow(dead_code)] // Checked by load_doc before this type is chosen.
    kind: String,
    metadata: RawMeta,
    spec: RawSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    name: String,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for familiarity with Kubernetes objects; unused.
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for familiarity with Kubernetes objects; unused.
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    description: Option<String>,
    #[serde(rename = "match")]
    match_: Option<RawMatch>,
    target: Option<RawTarget>,
    #[serde(default)]
    steps: Vec<RawStep>,
    engine: Option<String>,
    fallback: Option<String>,
    service_account: Option<String>,
    timeout: Option<IntOrString>,
    run_namespace: Option<String>,
    #[serde(default)]
    guards: RawGuards,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, rename = "continue")]
    continue_: bool,
    #[serde(default)]
    on_success: RawOnSuccess,
    #[serde(default)]
    on_failure: RawOnFailure,
    on_resolved: Option<String>,
    approval: Option<RawApproval>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApproval {
    timeout: Option<IntOrString>,
    on_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    alertname: Option<String>,
    #[serde(default)]
    matchers: Vec<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawStep {
    name: String,
    action: String,
    #[serde(default)]
    after: Vec<String>,
    retries: Option<u32>,
    timeout: Option<IntOrString>,
    service_account: Option<String>,
    // Arguments of the actions; which ones an action takes is checked in `step`.
    replicas: Option<IntOrString>,
    min: Option<u32>,
    max: Option<u32>,
    wait: Option<bool>,
    grace_period: Option<IntOrString>,
    uid: Option<String>,
    min_available: Option<u32>,
    #[serde(rename = "type")]
    patch_type: Option<String>,
    patch: Option<yaml_serde::Value>,
    #[serde(rename = "for")]
    for_: Option<String>,
    query: Option<String>,
    expect: Option<String>,
    prometheus_url: Option<String>,
    hpa: Option<String>,
    git_ops: Option<String>,
    argocd_tracking: Option<String>,
    evict: Option<bool>,
    force_conflicts: Option<bool>,
    max_unschedulable: Option<IntOrString>,
    /// `owner`, or a target of the step's own (read in `step`).
    target: Option<yaml_serde::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGuards {
    cooldown: Option<IntOrString>,
    concurrency_per_target: Option<u32>,
    max_in_flight: Option<u32>,
    failure_budget: Option<RawFailureBudget>,
    #[serde(default)]
    allow_namespaces: Vec<String>,
    require_label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailureBudget {
    failures: u32,
    window: IntOrString,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOnSuccess {
    silence: Option<IntOrString>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOnFailure {
    #[serde(default)]
    notify: Vec<String>,
}

/// A YAML scalar that may be written as a number or a string (`replicas: 3` / `"+1"`,
/// `timeout: 300` / `5m`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum IntOrString {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => f.write_str(s),
        }
    }
}

const DURATION_HINT: &str = "write a duration like 30s, 5m or 1h30m";

pub(super) fn duration(
    v: &IntOrString,
    path: &[Segment],
    issues: &mut Vec<Issue>,
) -> Option<Duration> {
    let parsed = match v {
        IntOrString::Int(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        IntOrString::Int(i) => Err(format!("invalid duration {i}: must not be negative")),
        IntOrString::Str(s) => crate::duration::parse(s),
    };
    match parsed {
        Ok(d) if d.is_zero() => {
            issues.push(issue(
                path,
                format!("duration {v} must be greater than zero"),
                DURATION_HINT,
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            issues.push(issue(path, e, DURATION_HINT));
            None
        }
    }
}

fn dns_label(s: &str) -> Result<(), String> {
    address::check_namespace(s)
}

/// Check a policy, step or notifier name: a DNS-1123 label.
pub(super) fn check_label_name(what: &str, name: &str, path: &[Segment], issues: &mut Vec<Issue>) {
    if let Err(why) = dns_label(name) {
        issues.push(issue(
            path,
            format!("invalid {what} name {name:?}: {why}"),
            "use lower-case letters, digits and '-', at most 63 characters, e.g. restart-web",
        ));
    }
}

fn add_policy(doc: &Doc, raw: RawPolicyDoc, ctx: &mut Ctx) {
    let mut issues = Vec::new();
    if raw.api_version != API_VERSION {
        issues.push(issue(
            &[k("apiVersion")],
            format!("unsupported apiVersion {:?}", raw.api_version),
            format!("use `apiVersion: {API_VERSION}`"),
        ));
    }
    let name = raw.metadata.name.clone();
    let name_path = [k("metadata"), k("name")];
    check_label_name("policy", &name, &name_path, &mut issues);
    let spec_path = [k("spec")];
    let s = raw.spec;

    // Matching.
    let mut matchers = Matchers::default();
    let mut status = StatusFilter::Firing;
    match s.match_ {
        None => issues.push(issue(
            &[Segment::KeyOf("spec".into())],
            "missing `match`: the policy would answer no alert",
            "add `match: {alertname: KubePodCrashLooping}` or `matchers: ['severity=\"critical\"']`",
        )),
        Some(m) => {
            let mp = at(&spec_path, &[k("match")]);
            if let Some(a) = &m.alertname {
                match crate::matcher::Matcher::new(
                    "alertname",
                    crate::matcher::MatchType::Equal,
                    a,
                ) {
                    Ok(mm) => matchers.0.push(mm),
                    Err(e) => issues.push(issue(&at(&mp, &[k("alertname")]), e, "")),
                }
            }
            for (i, text) in m.matchers.iter().enumerate() {
                match Matchers::parse(text) {
                    Ok(ms) => matchers.0.extend(ms.0),
                    Err(e) => issues.push(issue(
                        &at(&mp, &[k("matchers"), Segment::Index(i)]),
                        e.to_string(),
                        "write Alertmanager matchers such as severity=\"critical\" or \
                         namespace=~\"shop-.*\"; quote the whole string in YAML",
                    )),
                }
            }
            if m.alertname.is_none() && m.matchers.is_empty() {
                issues.push(issue(
                    &mp,
                    "`match` is empty: the policy would answer every alert",
                    "add `alertname:` or at least one entry under `matchers:`",
                ));
            }
            match m.status.as_deref() {
                None | Some("firing") => {}
                Some("resolved") => status = StatusFilter::Resolved,
                Some("any") => status = StatusFilter::Any,
                Some(other) => issues.push(issue(
                    &at(&mp, &[k("status")]),
                    format!("unknown status {other:?}"),
                    "use firing (the default), resolved or any",
                )),
            }
        }
    }

    // Target.
    let target = match s.target {
        None => {
            issues.push(issue(
                &[Segment::KeyOf("spec".into())],
                "missing `target`: heal needs to know which object to act on",
                "add `target: {kind: deployment, namespace: \"{{ labels.namespace }}\", \
                 name: \"{{ labels.deployment }}\"}`",
            ));
            None
        }
        Some(t) => target(t, &at(&spec_path, &[k("target")]), &mut issues),
    };

    // Steps.
    let steps = steps(doc, &s.steps, &spec_path, &mut issues);

    let engine = s.engine.as_deref().and_then(|e| match e.parse::<Engine>() {
        Ok(e) => Some(e),
        Err(err) => {
            issues.push(issue(
                &at(&spec_path, &[k("engine")]),
                err.to_string(),
                "use argo, tekton or local",
            ));
            None
        }
    });
    let fallback = s.fallback.as_deref().and_then(|f| match f.parse::<Engine>() {
        Ok(Engine::Local) => Some(Engine::Local),
        Ok(other) => {
            issues.push(issue(
                &at(&spec_path, &[k("fallback")]),
                format!("fallback {other} is not supported: heald can only fall back to the local engine"),
                "write `fallback: local`, or remove it to escalate when the engine is missing",
            ));
            None
        }
        Err(err) => {
            issues.push(issue(
                &at(&spec_path, &[k("fallback")]),
                err.to_string(),
                "write `fallback: local`, or remove it to escalate when the engine is missing",
            ));
            None
        }
    });
    if let Some(sa) = &s.service_account {
        check_service_account(sa, &at(&spec_path, &[k("serviceAccount")]), &mut issues);
    }
    let timeout = s
        .timeout
        .as_ref()
        .and_then(|t| duration(t, &at(&spec_path, &[k("timeout")]), &mut issues));
    if let Some(ns) = &s.run_namespace
        && let Err(why) = dns_label(ns)
    {
        issues.push(issue(
            &at(&spec_path, &[k("runNamespace")]),
            format!("invalid runNamespace {ns:?}: {why}"),
            "name the namespace the Workflow or PipelineRun is created in, e.g. heal-system",
        ));
    }
    let guards = guards(s.guards, &at(&spec_path, &[k("guards")]), &mut issues);
    let silence = s.on_success.silence.as_ref().and_then(|d| {
        duration(
            d,
            &at(&spec_path, &[k("onSuccess"), k("silence")]),
            &mut issues,
        )
    });
    let on_resolved = match s.on_resolved.as_deref() {
        None | Some("nothing") => OnResolved::Nothing,
        Some("cancel") => OnResolved::Cancel,
        Some(other) => {
            issues.push(issue(
                &at(&spec_path, &[k("onResolved")]),
                format!("unknown onResolved {other:?}"),
                "write `onResolved: cancel` to cancel an unfinished run when its alert \
                 resolves, or leave it out (`nothing`, the default)",
            ));
            OnResolved::Nothing
        }
    };
    if on_resolved == OnResolved::Cancel && status != StatusFilter::Firing {
        issues.push(issue(
            &at(&spec_path, &[k("onResolved")]),
            "onResolved: cancel needs a policy that answers firing alerts only: this one \
             answers resolved alerts with a run of its own",
            "remove `match.status`, or remove `onResolved`",
        ));
    }

    let approval = s.approval.as_ref().and_then(|a| {
        super::approval_lint::approval(
            a.timeout.as_ref(),
            a.on_timeout.as_deref(),
            s.steps
                .iter()
                .map(|st| (st.name.as_str(), st.action.as_str())),
            &spec_path,
            &mut issues,
        )
    });

    if !issues.is_empty() {
        ctx.errors
            .extend(issues.into_iter().map(|i| doc.invalid(i)));
        return;
    }
    for (i, n) in s.on_failure.notify.iter().enumerate() {
        let err = doc.invalid(issue(
            &at(
                &spec_path,
                &[k("onFailure"), k("notify"), Segment::Index(i)],
            ),
            format!("unknown notifier {n:?}"),
            "define it in a `kind: Notifier` document (any of the loaded files)",
        ));
        ctx.notify_refs.push((n.clone(), err));
    }
    let (Some(target), Some(steps)) = (target, steps) else {
        return;
    };
    let policy = Policy {
        source: doc.source(&name_path),
        name,
        description: s.description,
        matchers,
        status,
        target,
        steps,
        engine,
        fallback,
        service_account: s.service_account,
        timeout,
        run_namespace: s.run_namespace,
        guards,
        dry_run: s.dry_run,
        continue_matching: s.continue_,
        on_success: OnSuccess { silence },
        on_failure: OnFailure {
            notify: s.on_failure.notify,
        },
        on_resolved,
        approval,
        flat: None,
    };
    if let Some(deadline) = policy.timeout {
        for (i, step) in policy.steps.iter().enumerate() {
            let needs = super::plan::step_timeout_seconds(step, &super::PlanDefaults::default());
            if needs > deadline.as_secs() {
                ctx.errors.push(doc.invalid(issue(
                    &at(&spec_path, &[k("steps"), Segment::Index(i), k("timeout")]),
                    format!(
                        "step {:?} may take {needs}s (its timeout plus 30s, or the 5m default), longer than the policy's timeout of {}s",
                        step.name,
                        deadline.as_secs()
                    ),
                    "raise `spec.timeout` or lower the step's `timeout`",
                )));
                return;
            }
        }
    }
    // Every step's action must fit the kind of object it acts on.
    for (i, step) in policy.steps.iter().enumerate() {
        if let Err((message, hint)) = fits(&policy, step) {
            let key = if step.target == StepTarget::Policy {
                k("action")
            } else {
                k("target")
            };
            ctx.errors.push(doc.invalid(issue(
                &at(&spec_path, &[k("steps"), Segment::Index(i), key]),
                message,
                hint,
            )));
        }
    }
    // Lint every step's command line against heal's own argument rules.
    for (i, step) in policy.steps.iter().enumerate() {
        if let Err(e) = super::plan::sample_argv(&policy, step) {
            ctx.errors.push(doc.invalid(issue(
                &at(&spec_path, &[k("steps"), Segment::Index(i)]),
                format!(
                    "step {:?} would not be a valid heal command: {e}",
                    step.name
                ),
                "check the step's arguments against `heal {action} --help`",
            )));
        }
    }
    register_policy(doc, policy, &name_path, ctx);
}

/// Whether a step's action can apply to the kind of object it acts on, known from the
/// kind alone (a custom resource is left to heal at run time, except where only nodes
/// fit): the message and a hint when it cannot.
fn fits(policy: &Policy, step: &Step) -> Result<(), (String, String)> {
    let action = step.action.name();
    let spec = match &step.target {
        StepTarget::Own(t) => t,
        _ => &policy.target,
    };
    let rt = match address::parse_type(&spec.kind) {
        Ok(TypeRef::Known(rt)) => Some(rt),
        _ => None,
    };
    if step.target == StepTarget::Owner {
        return match rt {
            Some(rt) if !rt.namespaced => Err((
                format!(
                    "step {:?} acts on the owner of a {}, which no workload controls",
                    step.name, spec.kind
                ),
                "remove `target: owner`".into(),
            )),
            _ => Ok(()),
        };
    }
    let kind = spec.kind.as_str();
    let owner_hint = |what: &str| {
        if rt.as_ref().is_some_and(|rt| rt.kind == "Pod") {
            format!(
                "add `target: owner` to the step to {what} the pod's Deployment, StatefulSet or other controller"
            )
        } else {
            format!("{what} a workload that supports it, or give the step a `target:` of its own")
        }
    };
    match (action, &rt) {
        ("scale", Some(rt)) if !rt.scalable => Err((
            format!("step {:?}: a {kind} cannot be scaled", step.name),
            owner_hint("scale"),
        )),
        ("restart", Some(rt))
            if !matches!(rt.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") =>
        {
            Err((
                format!(
                    "step {:?}: a {kind} cannot be restarted (only deployments, statefulsets and daemonsets have rollouts)",
                    step.name
                ),
                owner_hint("restart"),
            ))
        }
        ("cordon" | "uncordon" | "drain", rt) if rt.as_ref().is_none_or(|rt| rt.kind != "Node") => {
            Err((
                format!(
                    "step {:?}: {action} applies to nodes only, not to a {kind}",
                    step.name
                ),
                "target `kind: node`, or use another action".into(),
            ))
        }
        ("delete", Some(rt)) if rt.kind == "Node" => Err((
            format!("step {:?}: heal does not delete nodes", step.name),
            "use `drain` (and `cordon`) for a node".into(),
        )),
        _ => Ok(()),
    }
}

fn check_service_account(sa: &str, path: &[Segment], issues: &mut Vec<Issue>) {
    if let Err(why) = address::check_name(sa) {
        issues.push(issue(
            path,
            format!("invalid service account name {sa:?}: {why}"),
            "name a ServiceAccount in the run's namespace, e.g. heal-restart",
        ));
    }
}

/// Parse `{{ ... }}` placeholders in a step argument.
pub(super) fn template(s: &str) -> Result<Template, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder in {s:?}: missing }}}}"))?;
        let inner = after[..end].trim();
        let piece = match inner {
            "target.kind" => Piece::Target(TargetField::Kind),
            "target.namespace" => Piece::Target(TargetField::Namespace),
            "target.name" => Piece::Target(TargetField::Name),
            _ => match inner.strip_prefix("labels.") {
                Some(l) if is_label_name(l) => Piece::Label(l.to_string()),
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{{ {inner} }}}}: use {{{{ target.name }}}}, \
                         {{{{ target.namespace }}}}, {{{{ target.kind }}}} or {{{{ labels.NAME }}}}"
                    ));
                }
            },
        };
        pieces.push(piece);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(format!("stray }}}} in {s:?}"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(Template(pieces))
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn value_source(
    what: &str,
    v: &str,
    check: fn(&str) -> Result<(), String>,
    path: &[Segment],
    issues: &mut Vec<Issue>,
) -> Option<ValueSource> {
    let hint = format!(
        "write a literal {what} or exactly \"{{{{ labels.NAME }}}}\" (the whole value of one alert label)"
    );
    if v.contains("{{") || v.contains("}}") {
        match template(v) {
            Ok(Template(p)) => match p.as_slice() {
                [Piece::Label(l)] => return Some(ValueSource::Label(l.clone())),
                _ => issues.push(issue(
                    path,
                    format!("target {what} {v:?} mixes text and placeholders"),
                    hint,
                )),
            },
            Err(e) => issues.push(issue(path, e, hint)),
        }
        return None;
    }
    match check(v) {
        Ok(()) => Some(ValueSource::Literal(v.to_string())),
        Err(why) => {
            issues.push(issue(
                path,
                format!("invalid target {what} {v:?}: {why}"),
                hint,
            ));
            None
        }
    }
}

fn target(t: RawTarget, base: &[Segment], issues: &mut Vec<Issue>) -> Option<TargetSpec> {
    let before = issues.len();
    let Some(kind) = t.kind else {
        issues.push(issue(
            base,
            "target has no `kind`",
            "add `kind: deployment` (or statefulset, daemonset, pod, node, rollouts.argoproj.io, ...)",
        ));
        return None;
    };
    let namespaced = match address::parse_type(&kind) {
        Ok(TypeRef::Known(rt)) => Some(rt.namespaced),
        Ok(TypeRef::Discover { .. }) => None,
        Err(e) => {
            issues.push(issue(
                &at(base, &[k("kind")]),
                e.to_string(),
                "use a type heal addresses, as in `heal scale deployment/web`",
            ));
            return None;
        }
    };
    let namespace = match (&t.namespace, namespaced) {
        (Some(_), Some(false)) => {
            issues.push(issue(
                &at(base, &[k("namespace")]),
                format!("{kind} objects are cluster-scoped and have no namespace"),
                "remove `namespace:` from the target",
            ));
            None
        }
        (None, Some(true)) => {
            issues.push(issue(
                base,
                format!("target of kind {kind} needs a `namespace`"),
                "add `namespace: \"{{ labels.namespace }}\"`",
            ));
            None
        }
        (Some(ns), _) => value_source(
            "namespace",
            ns,
            address::check_namespace,
            &at(base, &[k("namespace")]),
            issues,
        ),
        (None, _) => None,
    };
    let name = match &t.name {
        None => {
            issues.push(issue(
                base,
                "target has no `name`",
                "add e.g. `name: \"{{ labels.deployment }}\"`",
            ));
            None
        }
        Some(n) => value_source(
            "name",
            n,
            address::check_name,
            &at(base, &[k("name")]),
            issues,
        ),
    };
    if issues.len() > before {
        return None;
    }
    Some(TargetSpec {
        kind: kind.to_ascii_lowercase(),
        namespace,
        name: name?,
    })
}

fn guards(g: RawGuards, base: &[Segment], issues: &mut Vec<Issue>) -> Guards {
    let cooldown = g
        .cooldown
        .as_ref()
        .and_then(|d| duration(d, &at(base, &[k("cooldown")]), issues));
    let concurrency = g.concurrency_per_target.unwrap_or(1);
    if concurrency == 0 {
        issues.push(issue(
            &at(base, &[k("concurrencyPerTarget")]),
            "concurrencyPerTarget must be at least 1",
            "use 1 to let one run at a time touch a target",
        ));
    }
    if g.max_in_flight == Some(0) {
        issues.push(issue(
            &at(base, &[k("maxInFlight")]),
            "maxInFlight must be at least 1",
            "the number of this policy's runs that may be unfinished at once, over all targets",
        ));
    }
    let failure_budget = g.failure_budget.and_then(|b| {
        let bp = at(base, &[k("failureBudget")]);
        if b.failures == 0 {
            issues.push(issue(
                &at(&bp, &[k("failures")]),
                "failureBudget.failures must be at least 1",
                "the circuit opens after this many failed runs within `window`",
            ));
        }
        duration(&b.window, &at(&bp, &[k("window")]), issues).map(|window| FailureBudget {
            failures: b.failures,
            window,
        })
    });
    for (i, p) in g.allow_namespaces.iter().enumerate() {
        let ok = !p.is_empty()
            && p.len() <= 63
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '*' | '?')
            });
        if !ok {
            issues.push(issue(
                &at(base, &[k("allowNamespaces"), Segment::Index(i)]),
                format!("invalid namespace pattern {p:?}"),
                "use namespace names with * and ? wildcards, e.g. shop-*",
            ));
        }
    }
    if let Some(l) = &g.require_label
        && let Err(e) = l.parse::<crate::guard::LabelRequirement>()
    {
        issues.push(issue(
            &at(base, &[k("requireLabel")]),
            e,
            "write KEY=VALUE, e.g. heal.dev/enabled=true",
        ));
    }
    Guards {
        cooldown,
        concurrency_per_target: concurrency,
        max_in_flight: g.max_in_flight,
        failure_budget,
        allow_namespaces: g.allow_namespaces,
        require_label: g.require_label,
    }
}

const ACTIONS: &str = "scale, restart, delete, patch, cordon, uncordon, drain, wait, verify";

/// Arguments each action takes (besides name, action, after, retries, timeout,
/// serviceAccount).
fn allowed_args(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "scale" => &["replicas", "min", "max", "hpa", "gitOps", "argocdTracking"],
        "restart" => &["wait", "gitOps", "argocdTracking"],
        "delete" => &["gracePeriod", "uid", "minAvailable", "evict"],
        "patch" => &[
            "type",
            "patch",
            "forceConflicts",
            "gitOps",
            "argocdTracking",
        ],
        "cordon" => &["maxUnschedulable"],
        "uncordon" => &[],
        "drain" => &["minAvailable", "maxUnschedulable"],
        "wait" => &["for"],
        "verify" => &["query", "expect", "prometheusUrl"],
        _ => return None,
    })
}

fn given_args(s: &RawStep) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |present: bool, name: &'static str| {
        if present {
            v.push(name);
        }
    };
    add(s.replicas.is_some(), "replicas");
    add(s.min.is_some(), "min");
    add(s.max.is_some(), "max");
    add(s.wait.is_some(), "wait");
    add(s.grace_period.is_some(), "gracePeriod");
    add(s.uid.is_some(), "uid");
    add(s.min_available.is_some(), "minAvailable");
    add(s.patch_type.is_some(), "type");
    add(s.patch.is_some(), "patch");
    add(s.for_.is_some(), "for");
    add(s.query.is_some(), "query");
    add(s.expect.is_some(), "expect");
    add(s.prometheus_url.is_some(), "prometheusUrl");
    add(s.hpa.is_some(), "hpa");
    add(s.git_ops.is_some(), "gitOps");
    add(s.argocd_tracking.is_some(), "argocdTracking");
    add(s.evict.is_some(), "evict");
    add(s.force_conflicts.is_some(), "forceConflicts");
    add(s.max_unschedulable.is_some(), "maxUnschedulable");
    v
}

/// `gitOps` and `argocdTracking` of a step that changes a workload.
fn gitops_step(s: &RawStep, base: &[Segment], issues: &mut Vec<Issue>) -> GitOpsStep {
    let allow = match s.git_ops.as_deref() {
        None | Some("refuse") => false,
        Some("allow") => true,
        Some(other) => {
            issues.push(issue(
                &at(base, &[k("gitOps")]),
                format!("invalid gitOps {other:?}"),
                "use allow (change objects Argo CD or Flux manage; they may revert it) or refuse (the default)",
            ));
            false
        }
    };
    if let Some(t) = &s.argocd_tracking
        && !matches!(t.as_str(), "annotation" | "label" | "annotation+label")
    {
        issues.push(issue(
            &at(base, &[k("argocdTracking")]),
            format!("invalid argocdTracking {t:?}"),
            "use Argo CD's application.resourceTrackingMethod: annotation, label or annotation+label",
        ));
    }
    GitOpsStep {
        allow,
        argocd_tracking: s.argocd_tracking.clone(),
    }
}

/// `maxUnschedulable: N` or `"P%"`.
fn max_unschedulable(s: &RawStep, base: &[Segment], issues: &mut Vec<Issue>) -> Option<String> {
    let v = s.max_unschedulable.as_ref()?;
    let text = v.to_string();
    let ok = match v {
        IntOrString::Int(n) => *n >= 0,
        IntOrString::Str(t) => {
            t.strip_suffix('%')
                .and_then(|p| p.parse::<u64>().ok())
                .is_some_and(|p| p <= 100)
                || t.parse::<u64>().is_ok()
        }
    };
    if !ok {
        issues.push(issue(
            &at(base, &[k("maxUnschedulable")]),
            format!("invalid maxUnschedulable {text:?}"),
            "give a number of nodes (2) or a percentage of them (\"25%\")",
        ));
        return None;
    }
    Some(text)
}

fn steps(
    doc: &Doc,
    raw: &[RawStep],
    spec_path: &[Segment],
    issues: &mut Vec<Issue>,
) -> Option<Vec<Step>> {
    let before = issues.len();
    let sp = at(spec_path, &[k("steps")]);
    if raw.is_empty() {
        issues.push(issue(
            &[Segment::KeyOf("spec".into())],
            "the policy has no steps",
            "add `steps:` with at least one heal action, e.g. `- {name: restart, action: restart}`",
        ));
        return None;
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in raw.iter().enumerate() {
        let p = at(&sp, &[Segment::Index(i), k("name")]);
        check_label_name("step", &s.name, &p, issues);
        if let Some(first) = names.insert(&s.name, i) {
            names.insert(&s.name, first);
            issues.push(issue(
                &p,
                format!("duplicate step name {:?} (also step {})", s.name, first + 1),
                "give every step of a policy a unique name",
            ));
        }
    }
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let base = at(&sp, &[Segment::Index(i)]);
        for (j, dep) in s.after.iter().enumerate() {
            let dp = at(&base, &[k("after"), Segment::Index(j)]);
            if dep == &s.name {
                issues.push(issue(
                    &dp,
                    format!("step {:?} cannot run after itself", s.name),
                    "remove it from `after`",
                ));
            } else if !names.contains_key(dep.as_str()) {
                let known: Vec<&str> = raw.iter().map(|s| s.name.as_str()).collect();
                issues.push(issue(
                    &dp,
                    format!(
                        "step {:?} runs after {dep:?}, which is not a step of this policy",
                        s.name
                    ),
                    format!("name one of: {}", known.join(", ")),
                ));
            }
        }
        if let Some(step) = step(doc, s, &base, issues) {
            out.push(step);
        }
    }
    if issues.len() > before {
        return None;
    }
    if let Some(cycle) = find_cycle(&out) {
        let first = cycle[0];
        let path = at(&sp, &[Segment::Index(first), k("after")]);
        let names: Vec<&str> = cycle.iter().map(|&i| out[i].name.as_str()).collect();
        issues.push(issue(
            &path,
            format!("steps form a cycle: {} -> {}", names.join(" -> "), names[0]),
            "remove one of these `after` entries so the steps form a DAG",
        ));
        return None;
    }
    Some(out)
}

/// A cycle in the `after` graph, as step indexes, if there is one.
pub(super) fn find_cycle(steps: &[Step]) -> Option<Vec<usize>> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; steps.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        stack.push(i);
        for dep in &steps[i].after {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            if state[j] == 1 {
                let from = stack.iter().position(|&x| x == j).unwrap_or(0);
                let mut cycle: Vec<usize> = stack[from..].to_vec();
                // Report in execution order: each step runs after the next one listed.
                cycle.reverse();
                return Some(cycle);
            }
            if state[j] == 0
                && let Some(c) = visit(j, steps, index, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    (0..steps.len()).find_map(|i| {
        if state[i] == 0 {
            visit(i, steps, &index, &mut state, &mut stack)
        } else {
            None
        }
    })
}

fn step(doc: &Doc, s: &RawStep, base: &[Segment], issues: &mut Vec<Issue>) -> Option<Step> {
    let before = issues.len();
    let Some(allowed) = allowed_args(&s.action) else {
        issues.push(issue(
            &at(base, &[k("action")]),
            format!("unknown action {:?}", s.action),
            format!("use one of: {ACTIONS}"),
        ));
        return None;
    };
    for arg in given_args(s) {
        if !allowed.contains(&arg) {
            let takes = if allowed.is_empty() {
                "no arguments".to_string()
            } else {
                allowed.join(", ")
            };
            issues.push(issue(
                &[base, &[Segment::KeyOf(arg.to_string())]].concat(),
                format!(
                    "`{arg}` is not an argument of action {} (it takes {takes})",
                    s.action
                ),
                "remove it, or use the action it belongs to",
            ));
        }
    }
    let required = |present: bool, arg: &str, example: &str, issues: &mut Vec<Issue>| {
        if !present {
            issues.push(issue(
                base,
                format!("action {} needs `{arg}`", s.action),
                format!("add e.g. `{arg}: {example}`"),
            ));
        }
    };
    let tmpl = |v: &str, arg: &str, issues: &mut Vec<Issue>| match template(v) {
        Ok(t) => Some(t),
        Err(e) => {
            issues.push(issue(
                &at(base, &[k(arg)]),
                e,
                "placeholders fill in the target or a label value that is checked to be name-like",
            ));
            None
        }
    };
    let action = match s.action.as_str() {
        "scale" => {
            required(s.replicas.is_some(), "replicas", "\"+1\"", issues);
            let replicas = match &s.replicas {
                Some(IntOrString::Int(n)) => {
                    // YAML reads an unquoted +1 as the number 1: refuse rather than set 1.
                    let raw = doc.raw_scalar(&at(base, &[k("replicas")])).unwrap_or("");
                    if raw.starts_with('+') {
                        issues.push(issue(
                            &at(base, &[k("replicas")]),
                            format!("replicas: YAML reads the unquoted {} as the number {n}, an absolute count", raw.split_whitespace().next().unwrap_or("")),
                            "quote relative changes: replicas: \"+1\"",
                        ));
                    } else if *n < 0 {
                        issues.push(issue(
                            &at(base, &[k("replicas")]),
                            format!("replicas: {n} is negative"),
                            "quote relative changes: replicas: \"-1\"",
                        ));
                    }
                    n.to_string()
                }
                Some(IntOrString::Str(v)) => {
                    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
                    if digits.is_empty()
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                        || digits.len() > 9
                    {
                        issues.push(issue(
                            &at(base, &[k("replicas")]),
                            format!("invalid replicas {v:?}"),
                            "write a count (3) or a change (\"+1\", \"-1\")",
                        ));
                    }
                    v.clone()
                }
                None => String::new(),
            };
            if let (Some(min), Some(max)) = (s.min, s.max)
                && min > max
            {
                issues.push(issue(
                    &at(base, &[k("min")]),
                    format!("min ({min}) is greater than max ({max})"),
                    "swap them",
                ));
            }
            if let Some(h) = &s.hpa
                && !matches!(h.as_str(), "refuse" | "raise-min" | "ignore")
            {
                issues.push(issue(
                    &at(base, &[k("hpa")]),
                    format!("invalid hpa {h:?}"),
                    "use refuse (the default), raise-min or ignore",
                ));
            }
            Action::Scale {
                replicas,
                min: s.min,
                max: s.max,
                hpa: s.hpa.clone(),
                gitops: gitops_step(s, base, issues),
            }
        }
        "restart" => Action::Restart {
            wait: s.wait.unwrap_or(false),
            gitops: gitops_step(s, base, issues),
        },
        "delete" => {
            let grace_period = s.grace_period.as_ref().and_then(|g| match g {
                IntOrString::Int(n) if *n >= 0 => Some(*n as u64),
                IntOrString::Int(n) => {
                    issues.push(issue(
                        &at(base, &[k("gracePeriod")]),
                        format!("gracePeriod {n} is negative"),
                        "give seconds, e.g. 30",
                    ));
                    None
                }
                IntOrString::Str(_) => {
                    let mut local = Vec::new();
                    let d = duration(g, &at(base, &[k("gracePeriod")]), &mut local);
                    issues.extend(local);
                    d.map(|d| d.as_secs())
                }
            });
            Action::Delete {
                grace_period,
                uid: s.uid.as_deref().and_then(|u| tmpl(u, "uid", issues)),
                min_available: s.min_available,
                evict: s.evict.unwrap_or(false),
            }
        }
        "patch" => {
            required(
                s.patch.is_some(),
                "patch",
                "{spec: {paused: false}}",
                issues,
            );
            let patch_type = s.patch_type.clone().unwrap_or_else(|| "strategic".into());
            if !matches!(
                patch_type.as_str(),
                "merge" | "json" | "strategic" | "apply"
            ) {
                issues.push(issue(
                    &at(base, &[k("type")]),
                    format!("unknown patch type {patch_type:?}"),
                    "use merge, json, strategic or apply",
                ));
            }
            let patch = match &s.patch {
                None => serde_json::Value::Null,
                Some(yaml_serde::Value::String(text)) => serde_json::Value::String(text.clone()),
                Some(v) => match serde_json::to_value(v) {
                    Ok(j) => j,
                    Err(e) => {
                        issues.push(issue(
                            &at(base, &[k("patch")]),
                            format!("patch cannot be written as JSON: {e}"),
                            "use string keys only",
                        ));
                        serde_json::Value::Null
                    }
                },
            };
            if patch_type == "json" && !(patch.is_array() || patch.is_string()) {
                issues.push(issue(
                    &at(base, &[k("patch")]),
                    "a json patch is a list of operations",
                    "write `patch: [{op: replace, path: /spec/replicas, value: 3}]`",
                ));
            }
            check_patch_placeholders(&patch, &at(base, &[k("patch")]), issues);
            let force_conflicts = s.force_conflicts.unwrap_or(false);
            if force_conflicts && patch_type != "apply" {
                issues.push(issue(
                    &at(base, &[k("forceConflicts")]),
                    format!("forceConflicts is for server-side apply, not a {patch_type} patch"),
                    "use `type: apply`, or remove forceConflicts",
                ));
            }
            Action::Patch {
                patch_type,
                patch,
                force_conflicts,
                gitops: gitops_step(s, base, issues),
            }
        }
        "cordon" => Action::Cordon {
            max_unschedulable: max_unschedulable(s, base, issues),
        },
        "uncordon" => Action::Uncordon,
        "drain" => Action::Drain {
            min_available: s.min_available,
            max_unschedulable: max_unschedulable(s, base, issues),
        },
        "wait" => {
            required(s.for_.is_some(), "for", "rollout", issues);
            let condition = s.for_.clone().unwrap_or_default();
            let ok = condition == "rollout"
                || condition == "delete"
                || condition
                    .strip_prefix("condition=")
                    .is_some_and(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric()));
            if s.for_.is_some() && !ok {
                issues.push(issue(
                    &at(base, &[k("for")]),
                    format!("unknown wait condition {condition:?}"),
                    "use rollout, delete or condition=NAME (e.g. condition=Available)",
                ));
            }
            Action::Wait { condition }
        }
        "verify" => {
            // Without a query, the step checks the alert's own expression (generatorURL).
            let query = s.query.as_deref().and_then(|q| tmpl(q, "query", issues));
            if let Some(u) = &s.prometheus_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                issues.push(issue(
                    &at(base, &[k("prometheusUrl")]),
                    format!("invalid prometheusUrl {u:?}"),
                    "write e.g. http://prometheus.monitoring:9090",
                ));
            }
            Action::Verify {
                query,
                expect: s.expect.clone().unwrap_or_else(|| "empty".into()),
                prometheus_url: s.prometheus_url.clone(),
            }
        }
        _ => return None,
    };
    let timeout = s
        .timeout
        .as_ref()
        .and_then(|t| duration(t, &at(base, &[k("timeout")]), issues));
    if let Some(sa) = &s.service_account {
        check_service_account(sa, &at(base, &[k("serviceAccount")]), issues);
    }
    if issues.len() > before {
        return None;
    }
    let target = match &s.target {
        None => StepTarget::Policy,
        Some(yaml_serde::Value::String(w)) if w == "owner" => {
            if !action.takes_owner() {
                issues.push(issue(
                    &at(base, &[k("target")]),
                    format!("action {} cannot act on an owner", s.action),
                    "`target: owner` is for scale, restart, patch and wait",
                ));
            }
            StepTarget::Owner
        }
        Some(v) if !action.has_target() => {
            let _ = v;
            issues.push(issue(
                &at(base, &[k("target")]),
                format!("action {} has no target", s.action),
                "remove `target:` from the step",
            ));
            StepTarget::Policy
        }
        Some(yaml_serde::Value::Mapping(m)) => {
            match yaml_serde::from_value::<RawTarget>(yaml_serde::Value::Mapping(m.clone())) {
                Ok(t) => match target(t, &at(base, &[k("target")]), issues) {
                    Some(t) => StepTarget::Own(t),
                    None => StepTarget::Policy,
                },
                Err(e) => {
                    issues.push(issue(
                        &at(base, &[k("target")]),
                        format!("invalid step target: {e}"),
                        "a step's own target takes `kind`, `namespace` and `name`",
                    ));
                    StepTarget::Policy
                }
            }
        }
        Some(other) => {
            let shown = match other {
                yaml_serde::Value::String(w) => format!("{w:?}"),
                _ => "this value".to_string(),
            };
            issues.push(issue(
                &at(base, &[k("target")]),
                format!("unknown step target {shown}"),
                "write `target: owner` (the workload controlling the policy's target), or \
                 `target: {kind: ..., namespace: ..., name: ...}`",
            ));
            StepTarget::Policy
        }
    };
    if issues.len() > before {
        return None;
    }
    Some(Step {
        name: s.name.clone(),
        action,
        target,
        after: s.after.clone(),
        retries: s.retries,
        timeout,
        service_account: s.service_account.clone(),
    })
}

fn check_patch_placeholders(v: &serde_json::Value, path: &[Segment], issues: &mut Vec<Issue>) {
    match v {
        serde_json::Value::String(s) => {
            if let Err(e) = template(s) {
                issues.push(issue(
                    path,
                    e,
                    "placeholders fill in the target or a name-like label value",
                ));
            }
        }
        serde_json::Value::Array(a) => a
            .iter()
            .for_each(|x| check_patch_placeholders(x, path, issues)),
        serde_json::Value::Object(o) => o
            .values()
            .for_each(|x| check_patch_placeholders(x, path, issues)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Notifiers.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNotifierDoc {
    api_version: String,
    #[allow(dead_code)] // Checked by load_doc before this type is chosen.
    kind: String,
    metadata: RawMeta,
    spec: RawNotifierSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNotifierSpec {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    url_from: Option<RawUrlFrom>,
    url_file: Option<PathBuf>,
    url_env: Option<String>,
    channel: Option<String>,
    routing_key: Option<yaml_serde::Value>,
    routing_key_file: Option<PathBuf>,
    routing_key_env: Option<String>,
    api_key: Option<yaml_serde::Value>,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    severity: Option<String>,
    region: Option<String>,
    priority: Option<String>,
    responders: Option<Vec<RawResponder>>,
    tags: Option<Vec<String>>,
    send_resolved: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrlFrom {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponder {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    name: Option<String>,
    username: Option<String>,
}

/// Which notifier types take which optional field.
const NOTIFIER_FIELDS: &[(&str, &[NotifierKind])] = &[
    ("channel", &[NotifierKind::Slack]),
    (
        "urlFrom",
        &[
            NotifierKind::Webhook,
            NotifierKind::Slack,
            NotifierKind::Teams,
        ],
    ),
    (
        "urlFile",
        &[
            NotifierKind::Webhook,
            NotifierKind::Slack,
            NotifierKind::Teams,
        ],
    ),
    (
        "urlEnv",
        &[
            NotifierKind::Webhook,
            NotifierKind::Slack,
            NotifierKind::Teams,
        ],
    ),
    ("routingKeyFile", &[NotifierKind::PagerDuty]),
    ("routingKeyEnv", &[NotifierKind::PagerDuty]),
    ("apiKeyFile", &[NotifierKind::Opsgenie]),
    ("apiKeyEnv", &[NotifierKind::Opsgenie]),
    ("severity", &[NotifierKind::PagerDuty]),
    ("region", &[NotifierKind::Opsgenie]),
    ("priority", &[NotifierKind::Opsgenie]),
    ("responders", &[NotifierKind::Opsgenie]),
    ("tags", &[NotifierKind::Opsgenie]),
    (
        "sendResolved",
        &[NotifierKind::PagerDuty, NotifierKind::Opsgenie],
    ),
];

fn add_notifier(doc: &Doc, raw: RawNotifierDoc, ctx: &mut Ctx) {
    let mut issues = Vec::new();
    if raw.api_version != API_VERSION {
        issues.push(issue(
            &[k("apiVersion")],
            format!("unsupported apiVersion {:?}", raw.api_version),
            format!("use `apiVersion: {API_VERSION}`"),
        ));
    }
    let name_path = [k("metadata"), k("name")];
    check_label_name("notifier", &raw.metadata.name, &name_path, &mut issues);
    let sp = [k("spec")];
    let spec = &raw.spec;
    let kind = match spec.kind.as_str() {
        "webhook" => Some(NotifierKind::Webhook),
        "slack" => Some(NotifierKind::Slack),
        "pagerduty" => Some(NotifierKind::PagerDuty),
        "opsgenie" => Some(NotifierKind::Opsgenie),
        "teams" => Some(NotifierKind::Teams),
        other => {
            issues.push(issue(
                &at(&sp, &[k("type")]),
                format!("unknown notifier type {other:?}"),
                "use webhook, slack, pagerduty, opsgenie or teams",
            ));
            None
        }
    };
    // A key written in the file would end up in a ConfigMap, readable by many.
    for (field, file, env) in [
        ("routingKey", "routingKeyFile", "routingKeyEnv"),
        ("apiKey", "apiKeyFile", "apiKeyEnv"),
    ] {
        let given = if field == "routingKey" {
            spec.routing_key.is_some()
        } else {
            spec.api_key.is_some()
        };
        if given {
            issues.push(issue(
                &at(&sp, &[k(field)]),
                format!("`{field}` is a secret and cannot be written in a policy file"),
                format!(
                    "put it in a Secret and give `{file}: /path/of/the/mounted/key` or \
                     `{env}: VARIABLE`"
                ),
            ));
        }
    }
    let set = |field: &str| -> bool {
        match field {
            "channel" => spec.channel.is_some(),
            "urlFrom" => spec.url_from.is_some(),
            "urlFile" => spec.url_file.is_some(),
            "urlEnv" => spec.url_env.is_some(),
            "routingKeyFile" => spec.routing_key_file.is_some(),
            "routingKeyEnv" => spec.routing_key_env.is_some(),
            "apiKeyFile" => spec.api_key_file.is_some(),
            "apiKeyEnv" => spec.api_key_env.is_some(),
            "severity" => spec.severity.is_some(),
            "region" => spec.region.is_some(),
            "priority" => spec.priority.is_some(),
            "responders" => spec.responders.is_some(),
            "tags" => spec.tags.is_some(),
            "sendResolved" => spec.send_resolved.is_some(),
            _ => false,
        }
    };
    if let Some(kind) = kind {
        for (field, kinds) in NOTIFIER_FIELDS {
            if set(field) && !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                issues.push(issue(
                    &at(&sp, &[k(field)]),
                    format!(
                        "`{field}` is not a field of {} notifiers (only of {})",
                        kind.as_str(),
                        names.join(", ")
                    ),
                    "remove it, or change `type`",
                ));
            }
        }
    }
    let url = kind.and_then(|kind| notifier_url(spec, kind, &sp, &mut issues));
    let key = match kind {
        Some(NotifierKind::PagerDuty) => notifier_key(
            spec.routing_key_file.as_ref(),
            spec.routing_key_env.as_ref(),
            ("routingKeyFile", "routingKeyEnv", "routing key"),
            &sp,
            spec.routing_key.is_some(),
            &mut issues,
        ),
        Some(NotifierKind::Opsgenie) => notifier_key(
            spec.api_key_file.as_ref(),
            spec.api_key_env.as_ref(),
            ("apiKeyFile", "apiKeyEnv", "API key"),
            &sp,
            spec.api_key.is_some(),
            &mut issues,
        ),
        _ => None,
    };
    let vendor = vendor_options(spec, &sp, &mut issues);
    if !issues.is_empty() {
        ctx.errors
            .extend(issues.into_iter().map(|i| doc.invalid(i)));
        return;
    }
    let (Some(kind), Some(url)) = (kind, url) else {
        return;
    };
    let notifier = Notifier {
        name: raw.metadata.name,
        source: doc.source(&name_path),
        kind,
        url,
        channel: raw.spec.channel,
        key,
        vendor,
    };
    if let Some(first) = ctx.notifier_names.get(&notifier.name) {
        ctx.errors.push(doc.invalid(issue(
            &name_path,
            format!(
                "duplicate notifier name {:?} (first defined at {first})",
                notifier.name
            ),
            "give every notifier a unique name",
        )));
        return;
    }
    ctx.notifier_names
        .insert(notifier.name.clone(), notifier.source.clone());
    ctx.set.notifiers.push(notifier);
}

fn check_http_url(u: &str, path: &[Segment], issues: &mut Vec<Issue>) {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        issues.push(issue(
            path,
            format!("invalid url {u:?}"),
            "write an http:// or https:// URL",
        ));
    }
}

/// Where a notifier sends: one URL source for webhooks (Slack's and Teams' URLs are
/// secrets), PagerDuty's events endpoint or Opsgenie's API (vendor defaults, `url`
/// overrides them, e.g. for a proxy).
fn notifier_url(
    spec: &RawNotifierSpec,
    kind: NotifierKind,
    sp: &[Segment],
    issues: &mut Vec<Issue>,
) -> Option<UrlSource> {
    match kind {
        NotifierKind::PagerDuty => {
            let url = spec.url.as_deref().unwrap_or(super::PAGERDUTY_EVENTS_URL);
            check_http_url(url, &at(sp, &[k("url")]), issues);
            Some(UrlSource::Literal(url.to_string()))
        }
        NotifierKind::Opsgenie => {
            let region_url = match spec.region.as_deref() {
                None | Some("us") => super::OPSGENIE_API_URL,
                Some("eu") => super::OPSGENIE_EU_API_URL,
                Some(other) => {
                    issues.push(issue(
                        &at(sp, &[k("region")]),
                        format!("unknown Opsgenie region {other:?}"),
                        "use us (api.opsgenie.com, the default) or eu (api.eu.opsgenie.com)",
                    ));
                    super::OPSGENIE_API_URL
                }
            };
            if spec.url.is_some() && spec.region.is_some() {
                issues.push(issue(
                    &at(sp, &[k("url")]),
                    "give `region` or `url`, not both",
                    "`url` replaces the region's API host (https://api.eu.opsgenie.com for eu)",
                ));
            }
            let url = spec.url.as_deref().unwrap_or(region_url);
            check_http_url(url, &at(sp, &[k("url")]), issues);
            Some(UrlSource::Literal(url.trim_end_matches('/').to_string()))
        }
        NotifierKind::Webhook | NotifierKind::Slack | NotifierKind::Teams => {
            let hint = "give exactly one of `url: https://...`, `urlFile: PATH`, `urlEnv: VAR` \
                        (or `urlFrom: {file: PATH}` / `urlFrom: {env: VAR}`)";
            let mut sources = Vec::new();
            if let Some(u) = &spec.url {
                check_http_url(u, &at(sp, &[k("url")]), issues);
                sources.push(UrlSource::Literal(u.clone()));
            }
            match &spec.url_from {
                Some(RawUrlFrom {
                    env: Some(e),
                    file: None,
                }) => sources.push(UrlSource::Env(e.clone())),
                Some(RawUrlFrom {
                    env: None,
                    file: Some(f),
                }) => sources.push(UrlSource::File(f.clone())),
                Some(_) => {
                    issues.push(issue(
                        &at(sp, &[k("urlFrom")]),
                        "`urlFrom` needs exactly one of `env` or `file`",
                        hint,
                    ));
                    return None;
                }
                None => {}
            }
            if let Some(f) = &spec.url_file {
                sources.push(UrlSource::File(f.clone()));
            }
            if let Some(e) = &spec.url_env {
                sources.push(UrlSource::Env(e.clone()));
            }
            if sources.len() != 1 {
                let message = if sources.is_empty() {
                    "notifier needs one URL source"
                } else {
                    "notifier has more than one URL source"
                };
                issues.push(issue(sp, message, hint));
                return None;
            }
            sources.pop()
        }
    }
}

/// A PagerDuty or Opsgenie key: exactly one of a file or an environment variable.
fn notifier_key(
    file: Option<&PathBuf>,
    env: Option<&String>,
    (file_field, env_field, what): (&str, &str, &str),
    sp: &[Segment],
    literal_given: bool,
    issues: &mut Vec<Issue>,
) -> Option<crate::policy::SecretSource> {
    use crate::policy::SecretSource;
    match (file, env) {
        (Some(f), None) => Some(SecretSource::File(f.clone())),
        (None, Some(e)) if e.is_empty() => {
            issues.push(issue(
                &at(sp, &[k(env_field)]),
                format!("empty `{env_field}`"),
                "name the environment variable that holds the key",
            ));
            None
        }
        (None, Some(e)) => Some(SecretSource::Env(e.clone())),
        (Some(_), Some(_)) => {
            issues.push(issue(
                &at(sp, &[k(env_field)]),
                format!("give `{file_field}` or `{env_field}`, not both"),
                format!("the {what} is read from one place"),
            ));
            None
        }
        (None, None) => {
            // A literal key was reported already.
            if !literal_given {
                issues.push(issue(
                    sp,
                    format!("notifier needs its {what}"),
                    format!(
                        "give `{file_field}: /path/of/the/mounted/secret` or `{env_field}: VARIABLE`"
                    ),
                ));
            }
            None
        }
    }
}

fn vendor_options(
    spec: &RawNotifierSpec,
    sp: &[Segment],
    issues: &mut Vec<Issue>,
) -> crate::policy::VendorOptions {
    let mut v = crate::policy::VendorOptions::default();
    if let Some(s) = &spec.severity {
        if ["critical", "error", "warning", "info"].contains(&s.as_str()) {
            v.severity = s.clone();
        } else {
            issues.push(issue(
                &at(sp, &[k("severity")]),
                format!("invalid PagerDuty severity {s:?}"),
                "use critical, error, warning or info",
            ));
        }
    }
    if let Some(p) = &spec.priority {
        if ["P1", "P2", "P3", "P4", "P5"].contains(&p.as_str()) {
            v.priority = p.clone();
        } else {
            issues.push(issue(
                &at(sp, &[k("priority")]),
                format!("invalid Opsgenie priority {p:?}"),
                "use P1, P2, P3 (the default), P4 or P5",
            ));
        }
    }
    for (i, r) in spec.responders.iter().flatten().enumerate() {
        let path = at(sp, &[k("responders"), Segment::Index(i)]);
        if !["team", "user", "escalation", "schedule"].contains(&r.kind.as_str()) {
            issues.push(issue(
                &at(&path, &[k("type")]),
                format!("invalid Opsgenie responder type {:?}", r.kind),
                "use team, user, escalation or schedule",
            ));
            continue;
        }
        let given: Vec<(&'static str, &String)> = [
            ("id", r.id.as_ref()),
            ("name", r.name.as_ref()),
            ("username", r.username.as_ref()),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (f, v)))
        .collect();
        match given.as_slice() {
            [("username", _)] if r.kind != "user" => issues.push(issue(
                &at(&path, &[k("username")]),
                "`username` is only for responders of type user",
                "name a team, escalation or schedule by `name` or `id`",
            )),
            [(by, value)] => v.responders.push(crate::policy::Responder {
                kind: r.kind.clone(),
                by,
                value: (*value).clone(),
            }),
            _ => issues.push(issue(
                &path,
                "a responder needs exactly one of `id`, `name` or `username`",
                "for example {type: team, name: platform-oncall}",
            )),
        }
    }
    if let Some(tags) = &spec.tags {
        // Opsgenie keeps 20 tags of at most 50 characters; heald adds two of its own.
        if tags.len() > 18 {
            issues.push(issue(
                &at(sp, &[k("tags")]),
                format!("{} tags; Opsgenie keeps 20, and heald adds 2", tags.len()),
                "give at most 18 tags",
            ));
        }
        for (i, t) in tags.iter().enumerate() {
            if t.is_empty() || t.chars().count() > 50 {
                issues.push(issue(
                    &at(sp, &[k("tags"), Segment::Index(i)]),
                    format!("invalid Opsgenie tag {t:?}"),
                    "a tag has 1 to 50 characters",
                ));
            }
        }
        v.tags = tags.clone();
    }
    if let Some(b) = spec.send_resolved {
        v.send_resolved = b;
    }
    v
}
