//! `heal scale`: set replicas, absolute or relative, clamped. An absolute count goes
//! through the scale subresource: sending it again changes nothing. A relative change of a
//! built-in workload is a merge patch of the workload that also records the remediation's
//! correlation id and the count it set, in the same write, so that a retry whose first
//! answer was lost, or a re-run of the step with the same correlation id, finds it applied
//! instead of adding again.

use http::Method;
use serde_json::{Value, json};

use super::controllers::{self, GitOpsOwner, Hpa};
use super::{ActionError, Ctx, Done, int, str_at};
use crate::address::{Address, ResourceType};
use crate::kube_api::MERGE_PATCH;
use crate::outcome::Outcome;
use crate::step::{HpaMode, Replicas, ScaleSpec};

/// Annotation: the correlation id of the remediation whose relative scale set the replicas.
pub const SCALE_CORRELATION: &str = "heal.dev/scale-correlation-id";
/// Annotation: the replica count that relative scale set.
pub const SCALE_REPLICAS: &str = "heal.dev/scale-replicas";

impl ScaleSpec {
    /// The replica count wanted when the current count is `current`.
    pub fn desired(&self, current: i64) -> i64 {
        let raw = match self.replicas {
            Replicas::Absolute(n) => n,
            Replicas::Relative(d) => current.saturating_add(d),
        };
        let mut n = raw.max(0);
        if let Some(max) = self.max {
            n = n.min(max);
        }
        if let Some(min) = self.min {
            n = n.max(min);
        }
        n
    }
}

/// Only objects with a scale subresource can be scaled.
pub(super) fn check_kind(rt: &ResourceType) -> Result<(), ActionError> {
    if rt.scalable {
        return Ok(());
    }
    Err(ActionError::Failed(format!(
        "{} cannot be scaled: it has no scale subresource",
        rt.qualified_plural()
    )))
}

/// Built-in workloads keep their replicas in `spec.replicas`, where a patch of the object
/// can set them together with the annotations.
fn replicas_in_spec(rt: &ResourceType) -> bool {
    matches!(
        (rt.group.as_str(), rt.kind.as_str()),
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") | ("", "ReplicationController")
    )
}

fn annotation<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    str_at(
        obj,
        &format!("/metadata/annotations/{}", key.replace('/', "~1")),
    )
}

/// The other controllers of the workload, found before anything is written.
struct Guards {
    /// The GitOps application that reconciles it.
    gitops: Option<GitOpsOwner>,
    /// Autoscalers targeting it (looked up unless `--hpa ignore`).
    hpas: Vec<Hpa>,
    /// `--hpa`.
    mode: HpaMode,
    /// Namespace of the workload (and of its autoscalers).
    ns: Option<String>,
}

impl Guards {
    async fn find(
        ctx: &Ctx<'_>,
        spec: &ScaleSpec,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: Option<&Value>,
    ) -> Result<Guards, ActionError> {
        let gitops = obj.and_then(|o| controllers::gitops_owner(o, rt, &spec.gitops));
        let hpas = match (spec.hpa, ns) {
            (HpaMode::Ignore, _) | (_, None) => Vec::new(),
            (_, Some(ns)) => controllers::hpas_targeting(ctx, rt, ns, name).await?,
        };
        Ok(Guards {
            gitops,
            hpas,
            mode: spec.hpa,
            ns: ns.map(str::to_string),
        })
    }

    /// The one autoscaler `--hpa raise-min` adapts.
    fn raising(&self) -> Option<&Hpa> {
        match self.mode {
            HpaMode::RaiseMin => self.hpas.first(),
            _ => None,
        }
    }

    /// Whether changing the replicas from `current` to `desired` may go ahead: refused
    /// (exit 4, nothing written) when a GitOps application reconciles the workload (unless
    /// allowed) or an autoscaler would undo it. Returns the count to set, clamped by the
    /// autoscaler's `maxReplicas` under `--hpa raise-min`, and why it was clamped.
    fn check(
        &self,
        ctx: &Ctx<'_>,
        spec: &ScaleSpec,
        current: i64,
        desired: i64,
    ) -> Result<(i64, String), ActionError> {
        let target = ctx.target_name();
        if let Some(owner) = &self.gitops
            && !spec.gitops.allow
        {
            return Err(ActionError::Refused(format!(
                "{target} is managed by {} ({}), which would revert this change: change it in Git, or pass --allow-gitops (policy: gitOps: allow)",
                owner.describe(),
                owner.evidence
            )));
        }
        let names = || {
            self.hpas
                .iter()
                .map(Hpa::describe)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.mode {
            HpaMode::Ignore => Ok((desired, String::new())),
            _ if self.hpas.is_empty() => Ok((desired, String::new())),
            HpaMode::Refuse => Err(ActionError::Refused(format!(
                "{target} is scaled by {}, which would undo this change: pass --hpa raise-min to raise its minReplicas instead, or --hpa ignore (policy: hpa: raise-min | ignore)",
                names()
            ))),
            HpaMode::RaiseMin if self.hpas.len() > 1 => Err(ActionError::Refused(format!(
                "{target} is targeted by more than one HorizontalPodAutoscaler ({}): --hpa raise-min cannot tell which to raise",
                names()
            ))),
            HpaMode::RaiseMin => {
                let h = &self.hpas[0];
                if desired < current {
                    return Err(ActionError::Refused(format!(
                        "{target} has {current} replicas and is scaled by {}: scaling it down to {desired} would be undone, and --hpa raise-min only raises its minReplicas (use --hpa ignore to scale down anyway)",
                        h.describe()
                    )));
                }
                if desired > h.max {
                    return Ok((
                        h.max,
                        format!(
                            " (clamped from {desired} by the maxReplicas of HorizontalPodAutoscaler {})",
                            h.name
                        ),
                    ));
                }
                Ok((desired, String::new()))
            }
        }
    }

    /// Whether the replicas are already right but the autoscaler's minimum is not.
    fn needs_raise(&self, count: i64) -> bool {
        self.raising().is_some_and(|h| h.min < count.min(h.max))
    }

    /// After the workload has `count` replicas: raise the autoscaler's `minReplicas` to it
    /// (`--hpa raise-min`), and say who may revert the change.
    async fn finish(&self, ctx: &Ctx<'_>, mut done: Done, count: i64) -> Result<Done, ActionError> {
        if let Some(h) = self.raising() {
            let to = count.min(h.max);
            done.before["hpa"] =
                json!({"name": h.name, "minReplicas": h.min, "maxReplicas": h.max});
            let ns = self.ns.as_deref().unwrap_or("default");
            let (was, now) = controllers::raise_min(ctx, ns, h, to).await?;
            done.after["hpa"] = json!({"name": h.name, "minReplicas": now});
            if now > was.min {
                if done.outcome == Outcome::Noop {
                    done.outcome = ctx.changed();
                }
                let verb = if ctx.common.dry_run {
                    "would raise"
                } else {
                    "raised"
                };
                done.message.push_str(&format!(
                    "; {verb} the minReplicas of HorizontalPodAutoscaler {} from {} to {now} (set it back to {} to undo)",
                    h.name, was.min, was.min
                ));
            }
        }
        if let Some(owner) = &self.gitops
            && done.outcome != Outcome::Noop
        {
            done.message
                .push_str(&controllers::gitops_note(&ctx.target_name(), owner));
            done.after["gitOps"] = owner.to_json();
        }
        Ok(done)
    }
}

fn verb(ctx: &Ctx<'_>) -> &'static str {
    if ctx.common.dry_run {
        "would scale"
    } else {
        "scaled"
    }
}

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &ScaleSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    check_kind(&rt)?;
    ctx.check_namespace(ns.as_deref())?;
    let relative = matches!(spec.replicas, Replicas::Relative(_));
    // The workload itself: its labels and annotations say who else manages it, and a
    // built-in one carries its replicas too.
    let needs_object =
        replicas_in_spec(&rt) || !spec.gitops.allow || ctx.common.require_label.is_some();
    let obj = if needs_object {
        let o = super::get_required(ctx.kube, &rt, ns.as_deref(), &addr.name).await?;
        ctx.check_object(&o)?;
        Some(o)
    } else {
        None
    };
    let guards = Guards::find(ctx, spec, &rt, ns.as_deref(), &addr.name, obj.as_ref()).await?;
    if relative && replicas_in_spec(&rt) {
        return relative_scale(ctx, addr, spec, &rt, ns.as_deref(), &guards, obj).await;
    }
    let path = format!("{}/scale", rt.object_path(ns.as_deref(), &addr.name));
    // A built-in workload's scale is its spec.replicas: no second read.
    let mut known = obj.filter(|_| replicas_in_spec(&rt)).map(|o| {
        json!({
            "metadata": {"uid": str_at(&o, "/metadata/uid"), "resourceVersion": str_at(&o, "/metadata/resourceVersion")},
            "spec": {"replicas": o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
            "status": {"replicas": int(&o, "/status/replicas")},
        })
    });
    // Read, decide, write; a relative change carries the resourceVersion it was computed
    // from, so a concurrent change answers 409 and is recomputed on the fresh object.
    loop {
        let scale = match known.take() {
            Some(s) => s,
            None => match ctx.kube.get(&path).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => {
                    return Err(ActionError::Failed(format!(
                        "{} {:?} not found{}",
                        rt.qualified_plural(),
                        addr.name,
                        ns.as_deref()
                            .map(|n| format!(" in namespace {n:?}"))
                            .unwrap_or_default()
                    )));
                }
                Err(e) => return Err(e.into()),
            },
        };
        if let Some(uid) = str_at(&scale, "/metadata/uid") {
            ctx.target.uid = Some(uid.to_string());
        }
        let current = int(&scale, "/spec/replicas");
        let before = json!({"replicas": current, "readyReplicas": int(&scale, "/status/replicas")});
        let wanted = spec.desired(current);
        if wanted == current && !guards.needs_raise(current) {
            return Ok(Done {
                outcome: Outcome::Noop,
                after: json!({"replicas": current}),
                before,
                message: format!("{} already has {current} replicas", ctx.target_name()),
                reason: "HealScaled",
            });
        }
        let (desired, clamped) = guards.check(ctx, spec, current, wanted)?;
        if desired == current {
            let done = Done {
                outcome: Outcome::Noop,
                after: json!({"replicas": current}),
                before,
                message: format!(
                    "{} already has {current} replicas{clamped}",
                    ctx.target_name()
                ),
                reason: "HealScaled",
            };
            return guards.finish(ctx, done, current).await;
        }
        let mut body = json!({"spec": {"replicas": desired}});
        if matches!(spec.replicas, Replicas::Relative(_))
            && let Some(rv) = str_at(&scale, "/metadata/resourceVersion")
        {
            body["metadata"] = json!({"resourceVersion": rv});
        }
        let url = format!("{path}{}", ctx.dry_query());
        let sent = ctx
            .write_tracked(Method::PATCH, &url, Some(MERGE_PATCH), Some(&body))
            .await;
        match sent.result {
            // A relative change whose answer was lost may have been applied: the scale
            // subresource records no correlation id, so computing it again could add twice.
            Err(e) if e.is_conflict() && sent.unanswered && body.get("metadata").is_some() => {
                return Err(ActionError::Failed(format!(
                    "the answer to the scale of {} was lost and it changed since: it may have been \
                     scaled already, so it is not scaled again (check its replicas; a relative \
                     scale of a custom resource cannot be recognised as applied): {e}",
                    ctx.target_name()
                )));
            }
            Ok(answer) => {
                let after = int(&answer, "/spec/replicas");
                let done = Done {
                    outcome: ctx.changed(),
                    before,
                    after: json!({"replicas": after}),
                    message: format!(
                        "{} {} from {current} to {after} replicas{clamped}",
                        verb(ctx),
                        ctx.target_name()
                    ),
                    reason: "HealScaled",
                };
                return guards.finish(ctx, done, desired).await;
            }
            Err(e) if e.is_conflict() => {
                tracing::info!(correlation_id = %ctx.common.correlation_id, phase = "apply", "conflict, re-reading {path}");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A relative scale of a built-in workload: read it, and when this remediation's
/// correlation id is not on it yet, set the replicas and record the id and the count in one
/// merge patch carrying the `resourceVersion` the count was computed from.
async fn relative_scale(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &ScaleSpec,
    rt: &ResourceType,
    ns: Option<&str>,
    guards: &Guards,
    mut first: Option<Value>,
) -> Result<Done, ActionError> {
    let cid = ctx.common.correlation_id.clone();
    // The state a write of this run was computed from: when the next read finds the
    // correlation id, that write was applied and its answer lost.
    let mut pending: Option<(i64, Value)> = None;
    loop {
        let obj = match first.take() {
            Some(o) => o,
            None => {
                let o = super::get_required(ctx.kube, rt, ns, &addr.name).await?;
                ctx.check_object(&o)?;
                o
            }
        };
        let current = int(&obj, "/spec/replicas");
        if annotation(&obj, SCALE_CORRELATION) == Some(cid.as_str()) {
            if let Some((from, before)) = pending {
                let done = Done {
                    outcome: ctx.changed(),
                    before,
                    after: json!({"replicas": current}),
                    message: format!(
                        "scaled {} from {from} to {current} replicas (the first answer was lost)",
                        ctx.target_name()
                    ),
                    reason: "HealScaled",
                };
                return guards.finish(ctx, done, current).await;
            }
            let set = annotation(&obj, SCALE_REPLICAS).unwrap_or("?").to_string();
            let now = if set == current.to_string() {
                String::new()
            } else {
                format!(" (it has {current} now)")
            };
            let state =
                json!({"replicas": current, "readyReplicas": int(&obj, "/status/replicas")});
            let done = Done {
                outcome: Outcome::Noop,
                before: state.clone(),
                after: json!({"replicas": current}),
                message: format!(
                    "{} was already scaled to {set} replicas by this remediation{now}",
                    ctx.target_name()
                ),
                reason: "HealScaled",
            };
            // A run that stopped between the workload and its autoscaler finishes the job.
            let count = set.parse().unwrap_or(current);
            return guards.finish(ctx, done, count).await;
        }
        let wanted = spec.desired(current);
        let before = json!({"replicas": current, "readyReplicas": int(&obj, "/status/replicas")});
        if wanted == current && !guards.needs_raise(current) {
            return Ok(Done {
                outcome: Outcome::Noop,
                after: json!({"replicas": current}),
                before,
                message: format!("{} already has {current} replicas", ctx.target_name()),
                reason: "HealScaled",
            });
        }
        let (desired, clamped) = guards.check(ctx, spec, current, wanted)?;
        if desired == current {
            let done = Done {
                outcome: Outcome::Noop,
                after: json!({"replicas": current}),
                before,
                message: format!(
                    "{} already has {current} replicas{clamped}",
                    ctx.target_name()
                ),
                reason: "HealScaled",
            };
            return guards.finish(ctx, done, current).await;
        }
        let rv = str_at(&obj, "/metadata/resourceVersion").unwrap_or_default();
        let body = json!({
            "metadata": {
                "resourceVersion": rv,
                "annotations": {SCALE_CORRELATION: cid, SCALE_REPLICAS: desired.to_string()},
            },
            "spec": {"replicas": desired},
        });
        let url = format!("{}{}", rt.object_path(ns, &addr.name), ctx.dry_query());
        pending = Some((current, before.clone()));
        match ctx
            .write(Method::PATCH, &url, Some(MERGE_PATCH), Some(&body))
            .await
        {
            Ok(answer) => {
                let after = int(&answer, "/spec/replicas");
                let done = Done {
                    outcome: ctx.changed(),
                    before,
                    after: json!({"replicas": after}),
                    message: format!(
                        "{} {} from {current} to {after} replicas{clamped}",
                        verb(ctx),
                        ctx.target_name()
                    ),
                    reason: "HealScaled",
                };
                return guards.finish(ctx, done, desired).await;
            }
            Err(e) if e.is_conflict() => {
                tracing::info!(correlation_id = %cid, phase = "apply", "conflict, re-reading {url}");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::GitOpsOptions;

    #[test]
    fn relative_and_absolute_replicas_parse() {
        assert_eq!("3".parse::<Replicas>(), Ok(Replicas::Absolute(3)));
        assert_eq!("+2".parse::<Replicas>(), Ok(Replicas::Relative(2)));
        assert_eq!("-1".parse::<Replicas>(), Ok(Replicas::Relative(-1)));
        assert!("x".parse::<Replicas>().is_err());
        assert!("+-1".parse::<Replicas>().is_err());
    }

    #[test]
    fn desired_replicas_are_clamped() {
        let s = ScaleSpec {
            replicas: Replicas::Relative(5),
            min: Some(2),
            max: Some(6),
            hpa: HpaMode::Refuse,
            gitops: GitOpsOptions::default(),
        };
        assert_eq!(s.desired(3), 6);
        let s = ScaleSpec {
            replicas: Replicas::Relative(-5),
            min: Some(2),
            max: None,
            hpa: HpaMode::Refuse,
            gitops: GitOpsOptions::default(),
        };
        assert_eq!(s.desired(3), 2);
        let s = ScaleSpec {
            replicas: Replicas::Absolute(0),
            min: None,
            max: None,
            hpa: HpaMode::Refuse,
            gitops: GitOpsOptions::default(),
        };
        assert_eq!(s.desired(3), 0);
    }
}
