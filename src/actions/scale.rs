//! `heal scale`: set replicas through the scale subresource, absolute or relative, clamped.

use http::Method;
use serde_json::json;

use super::{ActionError, Ctx, Done, int, str_at};
use crate::address::{Address, ResourceType};
use crate::kube_api::MERGE_PATCH;
use crate::outcome::Outcome;

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

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &ScaleSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    check_kind(&rt)?;
    ctx.check_namespace(ns.as_deref())?;
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
                tracing::info!(correlation_id = %ctx.common.correlation_id, phase = "apply", "conflict, re-reading {path}");
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
