//! Checks on the plan and the options before anything is rendered, and the DAG rules
//! (every dependency exists, no cycle) shared with the checks on rendered manifests.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{check_dns_label, check_dns_subdomain, is_label_value, shorten};
use super::{Engine, RenderError, RenderOptions};
use crate::plan::Plan;

/// The name of Tekton's `finally` task, so no step may take it.
pub const REPORT_TASK: &str = "heal-report";
/// Most engine-level retries a step may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Flags the renderer adds itself; a plan's argv must not set them.
pub const RENDERER_FLAGS: &[&str] = &["--result-file"];

pub fn check_options(o: &RenderOptions) -> Result<(), RenderError> {
    let bad = |field, message: &str| {
        Err(RenderError::Options {
            field,
            message: message.to_string(),
        })
    };
    if check_dns_subdomain(&o.tekton_task_name, 253).is_err() {
        return bad(
            "tektonTaskName",
            "must be a Kubernetes object name (lower-case letters, digits, '-' and '.')",
        );
    }
    for (field, v) in [
        ("ttlAfterCompletionSeconds", o.ttl_after_completion_seconds),
        ("ttlAfterFailureSeconds", o.ttl_after_failure_seconds),
    ] {
        if v > i32::MAX as u32 {
            return bad(field, "must fit a 32-bit signed integer");
        }
    }
    if o.retry_backoff_factor == 0 {
        return bad("retryBackoffFactor", "must be at least 1");
    }
    if o.retry_backoff_seconds == 0 {
        return bad("retryBackoffSeconds", "must be at least 1");
    }
    if o.retry_backoff_cap_seconds < o.retry_backoff_seconds {
        return bad(
            "retryBackoffCapSeconds",
            "must be at least retryBackoffSeconds",
        );
    }
    if o.report_timeout_seconds == 0 || o.report_timeout_seconds > i32::MAX as u64 {
        return bad("reportTimeoutSeconds", "must be between 1 and 2147483647");
    }
    if o.report_retries > MAX_RETRIES {
        return bad("reportRetries", "must be at most 100");
    }
    if let Some(secret) = &o.report_token_secret
        && let Err(why) = check_dns_subdomain(secret, 253)
    {
        return bad(
            "reportTokenSecret",
            &format!("{secret:?} is not a Secret name: {why}"),
        );
    }
    if o.max_value_bytes == 0 {
        return bad("maxValueBytes", "must be at least 1");
    }
    Ok(())
}

fn plan_err(field: impl Into<String>, message: impl Into<String>) -> RenderError {
    RenderError::Plan {
        field: field.into(),
        message: shorten(message.into()),
    }
}

/// Refuse a value an engine would expand, or one too long to carry.
///
/// Argo expands `{{...}}` (and `{{=...}}` expressions) and has no escape for it; Tekton
/// expands `$(...)`, and so does the kubelet in a container's `command` and `args`. A NUL
/// cannot be passed as a process argument.
pub fn check_value(field: &str, value: &str, max: usize) -> Result<(), RenderError> {
    if value.len() > max {
        return Err(plan_err(
            field,
            format!(
                "is {} bytes long; at most {max} bytes are accepted (render option maxValueBytes)",
                value.len()
            ),
        ));
    }
    for (pattern, who) in [
        ("{{", "Argo would expand it as a template variable"),
        ("$(", "Tekton and Kubernetes would expand it as a variable"),
    ] {
        if value.contains(pattern) {
            return Err(plan_err(
                field,
                format!("contains {pattern:?}, which is refused in rendered values: {who}"),
            ));
        }
    }
    if value.contains('\0') {
        return Err(plan_err(field, "contains a NUL character"));
    }
    Ok(())
}

fn check_name(field: &str, value: &str, rule: Result<(), String>) -> Result<(), RenderError> {
    rule.map_err(|why| plan_err(field, format!("{value:?} is not a valid name: {why}")))
}

/// Everything checked before rendering, for any engine.
pub fn check_plan(plan: &Plan, engine: Engine, opts: &RenderOptions) -> Result<(), RenderError> {
    let max = opts.max_value_bytes;
    check_name(
        "plan.runName",
        &plan.run_name,
        check_dns_subdomain(&plan.run_name, 63),
    )?;
    check_name(
        "plan.runNamespace",
        &plan.run_namespace,
        check_dns_label(&plan.run_namespace),
    )?;
    for (field, value) in [
        ("plan.policy", &plan.policy),
        ("plan.fingerprint", &plan.fingerprint),
        ("plan.alertname", &plan.alertname),
        ("plan.startsAt", &plan.starts_at),
    ] {
        check_value(field, value, max)?;
    }
    if plan.policy.is_empty() {
        return Err(plan_err("plan.policy", "must not be empty"));
    }
    if plan.correlation_id.is_empty() || !is_label_value(&plan.correlation_id) {
        return Err(plan_err(
            "plan.correlationId",
            format!(
                "{:?} must be a valid label value (a UUID): at most 63 letters, digits, '-', '_' or '.'",
                plan.correlation_id
            ),
        ));
    }
    check_target(plan, max)?;
    check_value("plan.image", &plan.image, max)?;
    if plan.image.is_empty()
        || plan.image.len() > 512
        || !plan.image.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !plan
            .image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
    {
        return Err(plan_err(
            "plan.image",
            format!(
                "{:?} is not an image reference (registry/repository:tag or @digest)",
                plan.image
            ),
        ));
    }
    check_name(
        "plan.serviceAccount",
        &plan.service_account,
        check_dns_subdomain(&plan.service_account, 253),
    )?;
    if plan.deadline_seconds == 0 || plan.deadline_seconds > i32::MAX as u64 {
        return Err(plan_err(
            "plan.deadlineSeconds",
            "must be between 1 and 2147483647",
        ));
    }
    if let Some(url) = &plan.report_url {
        check_value("plan.reportUrl", url, max)?;
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(plan_err(
                "plan.reportUrl",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
    }
    check_steps(plan, engine, max)
}

fn check_target(plan: &Plan, max: usize) -> Result<(), RenderError> {
    let t = &plan.target;
    let kind_ok = !t.kind.is_empty()
        && t.kind.len() <= 253
        && t.kind.starts_with(|c: char| c.is_ascii_alphanumeric())
        && t.kind.ends_with(|c: char| c.is_ascii_alphanumeric())
        && t.kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '/'));
    if !kind_ok {
        return Err(plan_err(
            "plan.target.kind",
            format!(
                "{:?} is not a resource type (deployment, pod, node, rollouts.argoproj.io)",
                t.kind
            ),
        ));
    }
    if !t.namespace.is_empty() {
        check_name(
            "plan.target.namespace",
            &t.namespace,
            check_dns_label(&t.namespace),
        )?;
    }
    check_name(
        "plan.target.name",
        &t.name,
        check_dns_subdomain(&t.name, 253),
    )?;
    check_value("plan.target.name", &t.name, max)
}

fn check_steps(plan: &Plan, engine: Engine, max: usize) -> Result<(), RenderError> {
    if plan.steps.is_empty() {
        return Err(plan_err("plan.steps", "a plan needs at least one step"));
    }
    let mut seen = BTreeSet::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let at = format!("plan.steps[{i}]");
        check_name(
            &format!("{at}.name"),
            &step.name,
            check_dns_label(&step.name),
        )?;
        if engine == Engine::Argo && step.name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(plan_err(
                format!("{at}.name"),
                format!(
                    "{:?} starts with a digit, which Argo refuses for DAG task names",
                    step.name
                ),
            ));
        }
        if step.name == REPORT_TASK {
            return Err(plan_err(
                format!("{at}.name"),
                format!("{REPORT_TASK:?} is reserved for the report task"),
            ));
        }
        if !seen.insert(step.name.as_str()) {
            return Err(plan_err(
                format!("{at}.name"),
                format!("{:?} names two steps; step names must be unique", step.name),
            ));
        }
        if step.argv().first() != Some(&step.action) {
            return Err(plan_err(
                format!("{at}.argv"),
                format!(
                    "must start with the step's action {:?}, found {:?}",
                    step.action,
                    step.argv().first().map(String::as_str).unwrap_or("")
                ),
            ));
        }
        for (j, arg) in step.argv().iter().enumerate() {
            let field = format!("{at}.argv[{j}]");
            check_value(&field, arg, max)?;
            let flag = arg.split('=').next().unwrap_or(arg);
            if RENDERER_FLAGS.contains(&flag) {
                return Err(plan_err(
                    field,
                    format!("{flag} is set by the renderer and must not be in a step's argv"),
                ));
            }
        }
        if step.retries > MAX_RETRIES {
            return Err(plan_err(
                format!("{at}.retries"),
                format!("{} is more than the {MAX_RETRIES} allowed", step.retries),
            ));
        }
        if step.timeout_seconds == 0 || step.timeout_seconds > plan.deadline_seconds {
            return Err(plan_err(
                format!("{at}.timeoutSeconds"),
                format!(
                    "{} must be between 1 and the run's deadline ({} s)",
                    step.timeout_seconds, plan.deadline_seconds
                ),
            ));
        }
        if let Some(sa) = &step.service_account {
            check_name(
                &format!("{at}.serviceAccount"),
                sa,
                check_dns_subdomain(sa, 253),
            )?;
        }
        let mut after = BTreeSet::new();
        for dep in &step.after {
            if !after.insert(dep.as_str()) {
                return Err(plan_err(
                    format!("{at}.after"),
                    format!("lists {dep:?} twice"),
                ));
            }
        }
    }
    let graph: Vec<(String, Vec<String>)> = plan
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.after.clone()))
        .collect();
    check_dag(&graph, |i| format!("plan.steps[{i}].after"), "plan.steps")
}

/// Every dependency exists (and is not the step itself), and there is no cycle.
/// `graph` is `(node, dependencies)` in declaration order; `dep_at(i)` names where node
/// `i`'s dependencies are written, `dag_at` where the whole DAG is.
pub fn check_dag(
    graph: &[(String, Vec<String>)],
    dep_at: impl Fn(usize) -> String,
    dag_at: &str,
) -> Result<(), RenderError> {
    let names: BTreeSet<&str> = graph.iter().map(|(n, _)| n.as_str()).collect();
    for (i, (name, deps)) in graph.iter().enumerate() {
        for dep in deps {
            if !names.contains(dep.as_str()) || dep == name {
                return Err(RenderError::MissingDependency {
                    at: dep_at(i),
                    step: name.clone(),
                    dependency: dep.clone(),
                });
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        return Err(RenderError::Cycle {
            at: dag_at.to_string(),
            cycle,
        });
    }
    Ok(())
}

/// A cycle in the dependency graph, as a path whose first node is repeated at the end.
pub fn find_cycle(graph: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let deps: BTreeMap<&str, &[String]> = graph
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let mut mark: BTreeMap<&str, Mark> =
        graph.iter().map(|(n, _)| (n.as_str(), Mark::New)).collect();
    for (start, _) in graph {
        if mark.get(start.as_str()) != Some(&Mark::New) {
            continue;
        }
        // Iterative depth-first search; `path` is the chain of open nodes.
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        mark.insert(start.as_str(), Mark::Open);
        while let Some((node, next)) = path.last().copied() {
            let node_deps = deps.get(node).copied().unwrap_or(&[]);
            if let Some(dep) = node_deps.get(next) {
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                match mark.get(dep.as_str()).copied() {
                    Some(Mark::New) => {
                        mark.insert(dep.as_str(), Mark::Open);
                        path.push((dep.as_str(), 0));
                    }
                    Some(Mark::Open) => {
                        let from = path.iter().position(|(n, _)| *n == dep.as_str())?;
                        // Report it in execution order: a runs after b, so b -> a.
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.reverse();
                        cycle.push(cycle[0].clone());
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                mark.insert(node, Mark::Done);
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_diamond_has_no_cycle() {
        let graph = g(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        assert_eq!(find_cycle(&graph), None);
    }

    #[test]
    fn a_cycle_is_reported_in_execution_order() {
        let graph = g(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let cycle = find_cycle(&graph).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        // a runs after c, so c comes just before a.
        let pos = |n: &str| cycle.iter().position(|x| x == n).unwrap();
        assert_eq!(pos("c") + 1, pos("a"));
    }

    #[test]
    fn a_dependency_on_itself_or_a_missing_step_is_named() {
        let err = check_dag(&g(&[("a", &["a"])]), |i| format!("s[{i}]"), "s").unwrap_err();
        assert!(err.to_string().contains("\"a\" runs after \"a\""), "{err}");
        let err = check_dag(&g(&[("a", &["zz"])]), |i| format!("s[{i}]"), "s").unwrap_err();
        assert!(err.to_string().starts_with("s[0]:"), "{err}");
        assert!(err.to_string().contains("\"zz\""), "{err}");
    }

    #[test]
    fn values_an_engine_would_expand_are_refused_with_the_field_named() {
        for v in [
            "{{workflow.parameters.x}}",
            "$(params.x)",
            "a{{=sprig.x}}",
            "$(HOME)",
        ] {
            let err = check_value("plan.alertname", v, 100).unwrap_err();
            assert!(
                err.to_string().starts_with("plan.alertname: contains"),
                "{err}"
            );
        }
        assert!(check_value("f", "}} $ ( {", 100).is_ok());
        let err = check_value("f", &"x".repeat(101), 100).unwrap_err();
        assert!(err.to_string().contains("101 bytes"), "{err}");
    }
}
