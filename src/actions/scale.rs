//! `heal scale`: set replicas, absolute or relative, clamped. An absolute count goes
//! through the scale subresource: sending it again changes nothing. A relative change of a
//! built-in workload is a merge patch of the workload that also records the remediation's
//! correlation id and the count it set, in the same write, so that a retry whose first
//! answer was lost, or a re-run of the step with the same correlation id, finds it applied
//! instead of adding again.

use http::Method;
use serde_json::{Value, json};

use super::{ActionError, Ctx, Done, int, str_at};
use crate::address::{Address, ResourceType};
use crate::kube_api::MERGE_PATCH;
use crate::outcome::Outcome;

/// Annotation: the correlation id of the remediation whose relative scale set the replicas.
pub const SCALE_CORRELATION: &str = "heal.dev/scale-correlation-id";
/// Annotation: the replica count that relative scale set.
pub const SCALE_REPLICAS: &str = "heal.dev/scale-replicas";

/// `--replicas N`, `+N` or `-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// Set to exactly this many.
    Absolute(i64),
    /// Add (or with a negative number, remove) this many.
    Relative(i64),
}

impl std::str::FromStr for Replicas {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("invalid replicas {s:?}: expected a count (3) or a change (+1, -1)");
        if let Some(rest) = s.strip_prefix('+') {
            rest.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Replicas::Relative)
                .ok_or_else(bad)
        } else if let Some(rest) = s.strip_prefix('-') {
            rest.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| Replicas::Relative(-n))
                .ok_or_else(bad)
        } else {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Replicas::Absolute)
                .ok_or_else(bad)
        }
    }
}

/// Options of `heal scale`.
#[derive(Debug, Clone)]
pub struct ScaleSpec {
    /// Wanted replicas.
    pub replicas: Replicas,
    /// Lower clamp.
    pub min: Option<i64>,
    /// Upper clamp.
    pub max: Option<i64>,
}

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

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &ScaleSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    check_kind(&rt)?;
    ctx.check_namespace(ns.as_deref())?;
    if matches!(spec.replicas, Replicas::Relative(_)) && replicas_in_spec(&rt) {
        return relative(ctx, addr, spec, &rt, ns.as_deref()).await;
    }
    let path = format!("{}/scale", rt.object_path(ns.as_deref(), &addr.name));
    if ctx.common.require_label.is_some() {
        let obj = super::get_required(ctx.kube, &rt, ns.as_deref(), &addr.name).await?;
        ctx.check_object(&obj)?;
    }
    // Read, decide, write; a relative change carries the resourceVersion it was computed
    // from, so a concurrent change answers 409 and is recomputed on the fresh object.
    loop {
        let scale = match ctx.kube.get(&path).await {
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
        };
        if let Some(uid) = str_at(&scale, "/metadata/uid") {
            ctx.target.uid = Some(uid.to_string());
        }
        let current = int(&scale, "/spec/replicas");
        let desired = spec.desired(current);
        let before = json!({"replicas": current, "readyReplicas": int(&scale, "/status/replicas")});
        if desired == current {
            return Ok(Done {
                outcome: Outcome::Noop,
                after: json!({"replicas": current}),
                before,
                message: format!("{} already has {current} replicas", ctx.target_name()),
                reason: "HealScaled",
            });
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
                let verb = if ctx.common.dry_run {
                    "would scale"
                } else {
                    "scaled"
                };
                return Ok(Done {
                    outcome: ctx.changed(),
                    before,
                    after: json!({"replicas": after}),
                    message: format!(
                        "{verb} {} from {current} to {after} replicas",
                        ctx.target_name()
                    ),
                    reason: "HealScaled",
                });
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
async fn relative(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &ScaleSpec,
    rt: &ResourceType,
    ns: Option<&str>,
) -> Result<Done, ActionError> {
    let cid = ctx.common.correlation_id.clone();
    // The state a write of this run was computed from: when the next read finds the
    // correlation id, that write was applied and its answer lost.
    let mut pending: Option<(i64, Value)> = None;
    loop {
        let obj = super::get_required(ctx.kube, rt, ns, &addr.name).await?;
        ctx.check_object(&obj)?;
        let current = int(&obj, "/spec/replicas");
        if annotation(&obj, SCALE_CORRELATION) == Some(cid.as_str()) {
            if let Some((from, before)) = pending {
                return Ok(Done {
                    outcome: ctx.changed(),
                    before,
                    after: json!({"replicas": current}),
                    message: format!(
                        "scaled {} from {from} to {current} replicas (the first answer was lost)",
                        ctx.target_name()
                    ),
                    reason: "HealScaled",
                });
            }
            let set = annotation(&obj, SCALE_REPLICAS).unwrap_or("?").to_string();
            let now = if set == current.to_string() {
                String::new()
            } else {
                format!(" (it has {current} now)")
            };
            let state =
                json!({"replicas": current, "readyReplicas": int(&obj, "/status/replicas")});
            return Ok(Done {
                outcome: Outcome::Noop,
                before: state.clone(),
                after: json!({"replicas": current}),
                message: format!(
                    "{} was already scaled to {set} replicas by this remediation{now}",
                    ctx.target_name()
                ),
                reason: "HealScaled",
            });
        }
        let desired = spec.desired(current);
        let before = json!({"replicas": current, "readyReplicas": int(&obj, "/status/replicas")});
        if desired == current {
            return Ok(Done {
                outcome: Outcome::Noop,
                after: json!({"replicas": current}),
                before,
                message: format!("{} already has {current} replicas", ctx.target_name()),
                reason: "HealScaled",
            });
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
                let verb = if ctx.common.dry_run {
                    "would scale"
                } else {
                    "scaled"
                };
                return Ok(Done {
                    outcome: ctx.changed(),
                    before,
                    after: json!({"replicas": after}),
                    message: format!(
                        "{verb} {} from {current} to {after} replicas",
                        ctx.target_name()
                    ),
                    reason: "HealScaled",
                });
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
        };
        assert_eq!(s.desired(3), 6);
        let s = ScaleSpec {
            replicas: Replicas::Relative(-5),
            min: Some(2),
            max: None,
        };
        assert_eq!(s.desired(3), 2);
        let s = ScaleSpec {
            replicas: Replicas::Absolute(0),
            min: None,
            max: None,
        };
        assert_eq!(s.desired(3), 0);
    }
}
