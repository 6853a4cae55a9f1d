//! `heal patch`: merge, JSON, strategic merge, or server-side apply (field manager `heal`).
//! Merge, strategic and apply patches give the same object when applied twice; a JSON patch
//! may not (`add` to `/list/-` appends again, `remove` fails the second time), so it is sent
//! with the `resourceVersion` it was checked against and, in the same patch, the
//! remediation's correlation id as an annotation: a retry whose first answer was lost, or a
//! re-run with the same correlation id, finds the id and does not patch again.

use http::Method;
use serde_json::{Value, json};

use super::controllers::{self, GitOpsOwner};
use super::{ActionError, Ctx, Done, int, str_at};
use crate::address::{Address, ResourceType};
use crate::kube_api::{APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH};
use crate::outcome::Outcome;
use crate::step::{PatchSpec, PatchType};

/// The field manager heal writes with.
pub const FIELD_MANAGER: &str = "heal";
/// Annotation: the correlation id of the remediation whose JSON patch was applied.
pub const PATCH_CORRELATION: &str = "heal.dev/patch-correlation-id";

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => MERGE_PATCH,
            PatchType::Json => JSON_PATCH,
            PatchType::Strategic => STRATEGIC_PATCH,
            PatchType::Apply => APPLY_PATCH,
        }
    }
}

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &PatchSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    ctx.check_namespace(ns.as_deref())?;
    if spec.kind == PatchType::Json {
        return json_patch(ctx, addr, spec, &rt, ns.as_deref()).await;
    }
    let obj = super::get_required(ctx.kube, &rt, ns.as_deref(), &addr.name).await?;
    ctx.check_object(&obj)?;
    let gitops = controllers::check_gitops(ctx, &obj, &rt, &spec.gitops)?;
    let rv_before = str_at(&obj, "/metadata/resourceVersion").map(str::to_string);
    let before =
        json!({"resourceVersion": rv_before, "generation": int(&obj, "/metadata/generation")});

    // Merge patches have exact local semantics: skip the write when it would change
    // nothing. Strategic and apply are decided by the server (unchanged resourceVersion
    // below).
    let local = match spec.kind {
        PatchType::Merge => {
            let mut copy = obj.clone();
            json_patch::merge(&mut copy, &spec.patch);
            Some(copy)
        }
        _ => None,
    };
    if local.as_ref() == Some(&obj) {
        return Ok(Done {
            outcome: Outcome::Noop,
            after: before.clone(),
            before,
            message: format!("{} already matches the patch", ctx.target_name()),
            reason: "HealPatched",
        });
    }

    let mut body = spec.patch.clone();
    let mut query = format!("fieldManager={FIELD_MANAGER}");
    if spec.kind == PatchType::Apply {
        // As `kubectl apply --server-side`: fields another manager owns are a conflict,
        // taken only with --force-conflicts.
        if spec.force_conflicts {
            query.push_str("&force=true");
        }
        if let Some(o) = body.as_object_mut() {
            o.entry("apiVersion").or_insert(json!(rt.api_version()));
            o.entry("kind").or_insert(json!(rt.kind));
            let meta = o.entry("metadata").or_insert(json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.entry("name").or_insert(json!(addr.name));
                if let Some(ns) = &ns {
                    m.entry("namespace").or_insert(json!(ns));
                }
            }
        }
    }
    if ctx.common.dry_run {
        query.push_str("&dryRun=All");
    }
    let url = format!("{}?{query}", rt.object_path(ns.as_deref(), &addr.name));
    let answer = ctx
        .write(
            Method::PATCH,
            &url,
            Some(spec.kind.content_type()),
            Some(&body),
        )
        .await
        .map_err(|e| apply_conflict(ctx, spec, e))?;
    let rv_after = str_at(&answer, "/metadata/resourceVersion").map(str::to_string);
    let after =
        json!({"resourceVersion": rv_after, "generation": int(&answer, "/metadata/generation")});
    if !ctx.common.dry_run && rv_after.is_some() && rv_after == rv_before {
        return Ok(Done {
            outcome: Outcome::Noop,
            before,
            after,
            message: format!("{} already matched the patch", ctx.target_name()),
            reason: "HealPatched",
        });
    }
    let message = if ctx.common.dry_run {
        format!("would patch {} ({:?})", ctx.target_name(), spec.kind).to_lowercase()
    } else {
        format!("patched {} ({:?})", ctx.target_name(), spec.kind).to_lowercase()
    };
    Ok(with_gitops(
        ctx,
        gitops.as_ref(),
        Done {
            outcome: ctx.changed(),
            before,
            after,
            message,
            reason: "HealPatched",
        },
    ))
}

/// An allowed change of an object a GitOps application reconciles says so.
fn with_gitops(ctx: &Ctx<'_>, owner: Option<&GitOpsOwner>, mut done: Done) -> Done {
    if let Some(owner) = owner
        && done.outcome != Outcome::Noop
    {
        done.message
            .push_str(&controllers::gitops_note(&ctx.target_name(), owner));
        done.after["gitOps"] = owner.to_json();
    }
    done
}

/// The field managers a server-side apply conflicts with, from the 409's
/// `details.causes` (`conflict with "kubectl-edit" using apps/v1: .spec.replicas`).
fn conflicting_managers(causes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in causes {
        if let Some(rest) = c.strip_prefix("conflict with \"")
            && let Some((manager, _)) = rest.split_once('"')
            && !out.iter().any(|m| m == manager)
        {
            out.push(manager.to_string());
        }
    }
    out
}

/// A 409 with field manager conflicts is another manager's fields: exit 1, naming it
/// (as `kubectl apply --server-side`, which takes them only with `--force-conflicts`).
fn apply_conflict(ctx: &Ctx<'_>, spec: &PatchSpec, e: crate::kube_api::ApiError) -> ActionError {
    if let crate::kube_api::ApiError::Status {
        code: 409, causes, ..
    } = &e
        && spec.kind == PatchType::Apply
    {
        let managers = conflicting_managers(causes);
        if !managers.is_empty() {
            let fields: Vec<&str> = causes
                .iter()
                .filter_map(|c| c.rsplit_once(": ").map(|(_, f)| f))
                .collect();
            return ActionError::Failed(format!(
                "server-side apply of {} conflicts with field manager{} {} on {}: heal does not take fields another manager owns; pass --force-conflicts to take them (policy: forceConflicts: true), or change them through that manager",
                ctx.target_name(),
                if managers.len() == 1 { "" } else { "s" },
                managers
                    .iter()
                    .map(|m| format!("{m:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                fields.join(", ")
            ));
        }
    }
    rejected(e)
}

fn rejected(e: crate::kube_api::ApiError) -> ActionError {
    match e.code() {
        Some(400 | 422) => ActionError::Failed(format!("the API server rejected the patch: {e}")),
        _ => e.into(),
    }
}

fn version(obj: &Value) -> Value {
    json!({
        "resourceVersion": str_at(obj, "/metadata/resourceVersion"),
        "generation": int(obj, "/metadata/generation"),
    })
}

/// A JSON patch: skipped when the object carries this remediation's correlation id or when
/// it would change nothing; else sent as `replace /metadata/resourceVersion` (the version
/// it was checked against: a change since is a 409), the patch's operations, and an `add`
/// of the correlation id annotation.
async fn json_patch(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &PatchSpec,
    rt: &ResourceType,
    ns: Option<&str>,
) -> Result<Done, ActionError> {
    let ops: json_patch::Patch = serde_json::from_value(spec.patch.clone())
        .map_err(|e| ActionError::Usage(format!("invalid JSON patch: {e}")))?;
    let cid = ctx.common.correlation_id.clone();
    let marker = format!(
        "/metadata/annotations/{}",
        PATCH_CORRELATION.replace('/', "~1")
    );
    // The state a write of this run was computed from: when the next read finds the
    // correlation id, that write was applied and its answer lost.
    let mut pending: Option<Value> = None;
    loop {
        let obj = super::get_required(ctx.kube, rt, ns, &addr.name).await?;
        ctx.check_object(&obj)?;
        let gitops = controllers::check_gitops(ctx, &obj, rt, &spec.gitops)?;
        let before = version(&obj);
        if str_at(&obj, &marker) == Some(cid.as_str()) {
            return Ok(match pending {
                Some(sent_from) => Done {
                    outcome: ctx.changed(),
                    before: sent_from,
                    after: before,
                    message: format!(
                        "patched {} (json; the first answer was lost)",
                        ctx.target_name()
                    ),
                    reason: "HealPatched",
                },
                None => Done {
                    outcome: Outcome::Noop,
                    after: before.clone(),
                    before,
                    message: format!(
                        "{} was already patched by this remediation",
                        ctx.target_name()
                    ),
                    reason: "HealPatched",
                },
            });
        }
        let mut copy = obj.clone();
        // A failing `test` op is for the server to report (422), as kubectl would see.
        let local = json_patch::patch(&mut copy, &ops).ok().map(|_| copy);
        if local.as_ref() == Some(&obj) {
            return Ok(Done {
                outcome: Outcome::Noop,
                after: before.clone(),
                before,
                message: format!("{} already matches the patch", ctx.target_name()),
                reason: "HealPatched",
            });
        }
        let mut body = Vec::new();
        if let Some(rv) = str_at(&obj, "/metadata/resourceVersion") {
            body.push(json!({"op": "replace", "path": "/metadata/resourceVersion", "value": rv}));
        }
        body.extend(spec.patch.as_array().cloned().unwrap_or_default());
        // After the patch's own operations, which may have replaced or removed the map.
        let has_annotations = local
            .as_ref()
            .unwrap_or(&obj)
            .pointer("/metadata/annotations")
            .is_some_and(Value::is_object);
        body.push(if has_annotations {
            json!({"op": "add", "path": marker, "value": cid})
        } else {
            json!({"op": "add", "path": "/metadata/annotations", "value": {PATCH_CORRELATION: cid}})
        });
        let body = Value::Array(body);
        let mut query = format!("fieldManager={FIELD_MANAGER}");
        if ctx.common.dry_run {
            query.push_str("&dryRun=All");
        }
        let url = format!("{}?{query}", rt.object_path(ns, &addr.name));
        pending = Some(before.clone());
        match ctx
            .write(Method::PATCH, &url, Some(JSON_PATCH), Some(&body))
            .await
        {
            Ok(answer) => {
                let message = if ctx.common.dry_run {
                    format!("would patch {} (json)", ctx.target_name())
                } else {
                    format!("patched {} (json)", ctx.target_name())
                };
                return Ok(with_gitops(
                    ctx,
                    gitops.as_ref(),
                    Done {
                        outcome: ctx.changed(),
                        before,
                        after: version(&answer),
                        message,
                        reason: "HealPatched",
                    },
                ));
            }
            Err(e) if e.is_conflict() => {
                tracing::info!(correlation_id = %cid, phase = "apply", "conflict, re-reading {url}");
                continue;
            }
            Err(e) => return Err(rejected(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_checked_before_anything_is_sent() {
        assert!(PatchSpec::parse(PatchType::Merge, r#"{"spec":{"replicas":2}}"#).is_ok());
        assert!(PatchSpec::parse(PatchType::Merge, "spec:\n  replicas: 2\n").is_ok());
        let e = PatchSpec::parse(PatchType::Merge, "{not json").unwrap_err();
        assert!(e.contains("invalid patch"), "{e}");
        let e = PatchSpec::parse(PatchType::Json, r#"{"op":"add"}"#).unwrap_err();
        assert!(e.contains("array"), "{e}");
        let e = PatchSpec::parse(PatchType::Json, r#"[{"op":"frob","path":"/a"}]"#).unwrap_err();
        assert!(e.contains("invalid JSON patch"), "{e}");
        assert!(PatchSpec::parse(PatchType::Strategic, "[1]").is_err());
    }
}
