//! `heal delete`: delete an object with a UID precondition, so a retry never deletes a
//! replacement that reused the name; optionally refuse when a pod's workload would drop
//! below a number of ready replicas.

use http::Method;
use serde_json::{Value, json};

use super::{ActionError, Ctx, Done, get_opt, int, str_at};
use crate::address::{Address, ResourceType, well_known};
use crate::guard;
use crate::kube_api::{JSON, Kube};
use crate::outcome::Outcome;
use crate::step::DeleteSpec;

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &DeleteSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    ctx.check_namespace(ns.as_deref())?;
    let path = rt.object_path(ns.as_deref(), &addr.name);
    let Some(obj) = get_opt(ctx.kube, &path).await? else {
        return Ok(gone(ctx, spec));
    };
    let uid = str_at(&obj, "/metadata/uid")
        .unwrap_or_default()
        .to_string();
    if let Some(wanted) = &spec.uid
        && *wanted != uid
    {
        ctx.target.uid = Some(wanted.clone());
        return Ok(Done {
            outcome: Outcome::Noop,
            before: json!({"exists": false, "uid": wanted}),
            after: json!({"exists": false, "replacementUid": uid}),
            message: format!(
                "{} with uid {wanted} is already gone; the object now under that name (uid {uid}) is a replacement and was left alone",
                ctx.target_name()
            ),
            reason: "HealDeleted",
        });
    }
    ctx.check_object(&obj)?;
    if spec.evict {
        check_evictable(&rt)?;
    }
    if let Some(min) = spec.min_available {
        check_min_available(ctx.kube, &rt, &obj, min).await?;
    }
    if spec.evict {
        return evict(ctx, spec, &obj, &uid).await;
    }
    let mut options = json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": uid},
        "propagationPolicy": "Background",
    });
    if let Some(g) = spec.grace_period {
        options["gracePeriodSeconds"] = json!(g);
    }
    let url = format!("{path}{}", ctx.dry_query());
    let before = json!({"exists": true, "uid": uid, "resourceVersion": str_at(&obj, "/metadata/resourceVersion")});
    let sent = ctx
        .write_tracked(Method::DELETE, &url, Some(JSON), Some(&options))
        .await;
    match sent.result {
        Ok(_) => Ok(Done {
            outcome: ctx.changed(),
            before,
            after: json!({"exists": ctx.common.dry_run, "uid": uid}),
            message: if ctx.common.dry_run {
                format!("would delete {}", ctx.target_name())
            } else {
                format!("deleted {}", ctx.target_name())
            },
            reason: "HealDeleted",
        }),
        // Gone (or replaced) after a delete that got no answer: that delete removed it.
        Err(e) if (e.is_not_found() || e.is_conflict()) && sent.unanswered => Ok(Done {
            outcome: ctx.changed(),
            before,
            after: json!({"exists": false, "uid": uid}),
            message: format!("deleted {} (the first answer was lost)", ctx.target_name()),
            reason: "HealDeleted",
        }),
        Err(e) if e.is_not_found() => Ok(gone(ctx, spec)),
        // The precondition failed: the object was replaced between our read and delete.
        Err(e) if e.is_conflict() => Ok(Done {
            outcome: Outcome::Noop,
            before,
            after: json!({"exists": false, "uid": uid}),
            message: format!(
                "{} with uid {uid} is already gone (replaced before it could be deleted): {e}",
                ctx.target_name()
            ),
            reason: "HealDeleted",
        }),
        Err(e) => Err(e.into()),
    }
}

/// Only pods have the eviction subresource.
pub(super) fn check_evictable(rt: &ResourceType) -> Result<(), ActionError> {
    if rt.group.is_empty() && rt.kind == "Pod" {
        Ok(())
    } else {
        Err(ActionError::Usage(format!(
            "--evict applies to pods only, not {}",
            rt.qualified_plural()
        )))
    }
}

/// `--evict`: the Eviction API with the same uid precondition (and grace period) a delete
/// carries, so the pod's PodDisruptionBudget holds. A budget that blocks until the timeout
/// is exit 3, as in drain.
async fn evict(
    ctx: &mut Ctx<'_>,
    spec: &DeleteSpec,
    obj: &Value,
    uid: &str,
) -> Result<Done, ActionError> {
    let ns = str_at(obj, "/metadata/namespace")
        .unwrap_or("default")
        .to_string();
    let name = str_at(obj, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    let mut options = json!({"preconditions": {"uid": uid}});
    if let Some(g) = spec.grace_period {
        options["gracePeriodSeconds"] = json!(g);
    }
    let before = json!({"exists": true, "uid": uid, "resourceVersion": str_at(obj, "/metadata/resourceVersion")});
    let sent = super::node::evict(ctx, &ns, &name, options).await;
    match sent.result {
        Ok(_) => Ok(Done {
            outcome: ctx.changed(),
            before,
            after: json!({"exists": ctx.common.dry_run, "uid": uid, "evicted": true}),
            message: if ctx.common.dry_run {
                format!("would evict {}", ctx.target_name())
            } else {
                format!("evicted {}", ctx.target_name())
            },
            reason: "HealDeleted",
        }),
        // Gone (or replaced) after an eviction that got no answer: that eviction removed it.
        Err(e) if (e.is_not_found() || e.is_conflict()) && sent.unanswered => Ok(Done {
            outcome: ctx.changed(),
            before,
            after: json!({"exists": false, "uid": uid, "evicted": true}),
            message: format!("evicted {} (the first answer was lost)", ctx.target_name()),
            reason: "HealDeleted",
        }),
        Err(e) if e.is_not_found() => Ok(gone(ctx, spec)),
        Err(e) if e.is_conflict() => Ok(Done {
            outcome: Outcome::Noop,
            before,
            after: json!({"exists": false, "uid": uid}),
            message: format!(
                "{} with uid {uid} is already gone (replaced before it could be evicted): {e}",
                ctx.target_name()
            ),
            reason: "HealDeleted",
        }),
        Err(e) if e.is_transient() => Err(ActionError::Transient(format!(
            "could not evict {} before the timeout: {e}{}",
            ctx.target_name(),
            super::node::budget_causes(&e)
        ))),
        Err(e) => Err(e.into()),
    }
}

fn gone(ctx: &Ctx<'_>, spec: &DeleteSpec) -> Done {
    Done {
        outcome: Outcome::Noop,
        before: json!({"exists": false, "uid": spec.uid}),
        after: json!({"exists": false}),
        message: format!("{} is already gone", ctx.target_name()),
        reason: "HealDeleted",
    }
}

/// Whether a pod's `Ready` condition is true.
pub(super) fn pod_ready(pod: &Value) -> bool {
    super::wait::condition(pod, "Ready") == Some("True")
}

/// The workload that ultimately owns a pod (ReplicaSet -> Deployment), with its ready
/// replica count, or `None` for a pod nothing manages.
pub(super) async fn owning_workload(
    kube: &Kube,
    pod: &Value,
) -> Result<Option<(String, i64)>, ActionError> {
    let ns = str_at(pod, "/metadata/namespace").unwrap_or("default");
    let mut current = pod.clone();
    let mut found: Option<(String, i64)> = None;
    // At most two hops: Pod -> ReplicaSet -> Deployment.
    for _ in 0..2 {
        let Some(owner) = controller_of(&current) else {
            break;
        };
        let (kind, name) = owner;
        let Some(rt) =
            well_known(&kind).filter(|rt| rt.group == "apps" || kind == "ReplicationController")
        else {
            break;
        };
        let Some(obj) = get_opt(kube, &rt.object_path(Some(ns), &name)).await? else {
            break;
        };
        let ready = match kind.as_str() {
            "DaemonSet" => int(&obj, "/status/numberReady"),
            _ => int(&obj, "/status/readyReplicas"),
        };
        found = Some((format!("{}/{name}", kind.to_ascii_lowercase()), ready));
        current = obj;
    }
    Ok(found)
}

fn controller_of(obj: &Value) -> Option<(String, String)> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            (
                o.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                o.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
}

async fn check_min_available(
    kube: &Kube,
    rt: &ResourceType,
    obj: &Value,
    min: i64,
) -> Result<(), ActionError> {
    if rt.kind != "Pod" {
        return Err(ActionError::Usage(
            "--min-available applies to pods only".into(),
        ));
    }
    let removing = i64::from(pod_ready(obj));
    let (workload, ready) = match owning_workload(kube, obj).await? {
        Some(w) => w,
        None => (
            format!("pod/{}", str_at(obj, "/metadata/name").unwrap_or_default()),
            removing,
        ),
    };
    guard::check_min_available(&workload, ready, removing, min).map_err(ActionError::Refused)
}
