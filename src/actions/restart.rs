//! `heal restart`: rollout restart through the pod-template annotation kubectl uses, made
//! idempotent per remediation by also recording the correlation id in the template.

use http::Method;
use serde_json::json;

use super::controllers;
use super::{ActionError, Ctx, Done, int, str_at};
use crate::address::{Address, ResourceType};
use crate::kube_api::STRATEGIC_PATCH;
use crate::outcome::Outcome;
use crate::step::RestartSpec;

/// The annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The annotation naming the remediation that restarted the workload.
pub const RESTART_CORRELATION: &str = "heal.dev/restart-correlation-id";

/// Only workloads with rollouts can be restarted.
pub(super) fn check_kind(rt: &ResourceType) -> Result<(), ActionError> {
    if matches!(rt.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") {
        return Ok(());
    }
    Err(ActionError::Usage(format!(
        "cannot restart {}: only deployments, statefulsets and daemonsets have rollouts",
        rt.qualified_plural()
    )))
}

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &RestartSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    check_kind(&rt)?;
    ctx.check_namespace(ns.as_deref())?;
    let obj = super::get_required(ctx.kube, &rt, ns.as_deref(), &addr.name).await?;
    ctx.check_object(&obj)?;
    let gitops = controllers::check_gitops(ctx, &obj, &rt, &spec.gitops)?;
    let annotations = "/spec/template/metadata/annotations";
    let previous = str_at(
        &obj,
        &format!("{annotations}/{}", RESTARTED_AT.replace('/', "~1")),
    )
    .map(str::to_string);
    let before = json!({"generation": int(&obj, "/metadata/generation"), "restartedAt": previous});
    let already = str_at(
        &obj,
        &format!("{annotations}/{}", RESTART_CORRELATION.replace('/', "~1")),
    ) == Some(ctx.common.correlation_id.as_str());
    if already {
        let mut done = Done {
            outcome: Outcome::Noop,
            after: before.clone(),
            before,
            message: format!(
                "{} was already restarted by this remediation",
                ctx.target_name()
            ),
            reason: "HealRestarted",
        };
        if spec.wait && !ctx.common.dry_run {
            super::wait::rollout(ctx, &rt, ns.as_deref(), &addr.name).await?;
            done.message.push_str("; rollout complete");
        }
        return Ok(done);
    }
    let now = jiff::Timestamp::now().to_string();
    let body = json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: now,
        RESTART_CORRELATION: ctx.common.correlation_id,
    }}}}});
    let url = format!(
        "{}{}",
        rt.object_path(ns.as_deref(), &addr.name),
        ctx.dry_query()
    );
    let answer = ctx
        .write(Method::PATCH, &url, Some(STRATEGIC_PATCH), Some(&body))
        .await?;
    let after = json!({"generation": int(&answer, "/metadata/generation"), "restartedAt": now});
    let mut message = if ctx.common.dry_run {
        format!("would restart {}", ctx.target_name())
    } else {
        format!("restarted {}", ctx.target_name())
    };
    if spec.wait && !ctx.common.dry_run {
        super::wait::rollout(ctx, &rt, ns.as_deref(), &addr.name).await?;
        message.push_str("; rollout complete");
    }
    let mut after = after;
    if let Some(owner) = &gitops {
        message.push_str(&controllers::gitops_note(&ctx.target_name(), owner));
        after["gitOps"] = owner.to_json();
    }
    Ok(Done {
        outcome: ctx.changed(),
        before,
        after,
        message,
        reason: "HealRestarted",
    })
}
