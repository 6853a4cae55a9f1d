//! `heal cordon`, `heal uncordon` and `heal drain`: node scheduling, and evictions through
//! the Eviction API so PodDisruptionBudgets hold.

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Value, json};

use super::delete::{owning_workload, pod_ready};
use super::{ActionError, Ctx, Done, get_opt, poll_sleep, str_at};
use crate::address::{Address, ResourceType};
use crate::guard;
use crate::kube_api::{JSON, MERGE_PATCH, enc};
use crate::outcome::Outcome;
use crate::step::{CordonSpec, DrainSpec, MaxUnschedulable, UncordonSpec};

/// Annotation on a node heal cordoned: the correlation id of the remediation that did.
/// `heal uncordon` uncordons only nodes that carry it (unless `--force`), and removes it.
pub const CORDONED_BY: &str = "heal.dev/cordoned-by";

async fn node(ctx: &mut Ctx<'_>, addr: &Address) -> Result<(ResourceType, Value), ActionError> {
    let (rt, _) = ctx.resolve(addr).await?;
    if rt.kind != "Node" {
        return Err(ActionError::Usage(format!(
            "{} is not a node: cordon, uncordon and drain take node/NAME",
            rt.qualified_plural()
        )));
    }
    let obj = super::get_required(ctx.kube, &rt, None, &addr.name).await?;
    ctx.check_object(&obj)?;
    Ok((rt, obj))
}

fn is_cordoned(node: &Value) -> bool {
    node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
}

/// The correlation id of the heal remediation that cordoned the node, if heal did.
fn cordoned_by(node: &Value) -> Option<&str> {
    str_at(
        node,
        &format!("/metadata/annotations/{}", CORDONED_BY.replace('/', "~1")),
    )
    .filter(|v| !v.is_empty())
}

/// Cordon (recording this remediation's correlation id on the node, in the same write) or
/// uncordon (removing it).
async fn set_unschedulable(
    ctx: &Ctx<'_>,
    rt: &ResourceType,
    name: &str,
    on: bool,
) -> Result<(), ActionError> {
    let body = if on {
        json!({
            "metadata": {"annotations": {CORDONED_BY: ctx.common.correlation_id}},
            "spec": {"unschedulable": true},
        })
    } else {
        json!({
            "metadata": {"annotations": {CORDONED_BY: null}},
            "spec": {"unschedulable": null},
        })
    };
    let url = format!("{}{}", rt.object_path(None, name), ctx.dry_query());
    ctx.write(Method::PATCH, &url, Some(MERGE_PATCH), Some(&body))
        .await?;
    Ok(())
}

/// `--max-unschedulable`: refuse (exit 4) when cordoning `name` would leave more of the
/// cluster's nodes unschedulable than allowed, counting those already cordoned. Only for a
/// node not cordoned yet: one that is (by anyone, or by an earlier attempt of this very
/// remediation) adds no unschedulable node.
async fn check_max_unschedulable(
    ctx: &Ctx<'_>,
    rt: &ResourceType,
    name: &str,
    max: MaxUnschedulable,
) -> Result<Value, ActionError> {
    let list = ctx.kube.get(&rt.collection_path(None)).await.map_err(|e| {
        ActionError::from(e)
            .with_context("cannot list nodes for --max-unschedulable (it needs list on nodes)")
    })?;
    let nodes: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = nodes.len().max(1) as u64;
    let others: Vec<String> = nodes
        .iter()
        .filter(|n| is_cordoned(n) && str_at(n, "/metadata/name") != Some(name))
        .filter_map(|n| str_at(n, "/metadata/name").map(str::to_string))
        .collect();
    let after = others.len() as u64 + 1;
    let limit = max.limit(total);
    let summary = json!({"unschedulable": after, "nodes": total, "limit": limit});
    if after > limit {
        return Err(ActionError::Refused(format!(
            "cordoning node/{name} would leave {after} of {total} nodes unschedulable, more than --max-unschedulable {max} allows ({limit}){}",
            if others.is_empty() {
                String::new()
            } else {
                format!("; already unschedulable: {}", others.join(", "))
            }
        )));
    }
    Ok(summary)
}

pub(super) async fn cordon(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &CordonSpec,
) -> Result<Done, ActionError> {
    let (rt, obj) = node(ctx, addr).await?;
    let was = is_cordoned(&obj);
    let before = json!({"cordoned": was, "cordonedBy": cordoned_by(&obj)});
    if was {
        let by = match cordoned_by(&obj) {
            Some(cid) if cid == ctx.common.correlation_id => " by this remediation".to_string(),
            Some(cid) => format!(" by heal (correlation id {cid})"),
            None => " (not by heal: heal uncordon will leave it cordoned)".to_string(),
        };
        return Ok(Done {
            outcome: Outcome::Noop,
            after: before.clone(),
            before,
            message: format!("node/{} is already cordoned{by}", addr.name),
            reason: "HealCordoned",
        });
    }
    let mut after = json!({"cordoned": true, "cordonedBy": ctx.common.correlation_id});
    if let Some(max) = spec.max_unschedulable {
        after["unschedulable"] = check_max_unschedulable(ctx, &rt, &addr.name, max).await?;
    }
    set_unschedulable(ctx, &rt, &addr.name, true).await?;
    Ok(Done {
        outcome: ctx.changed(),
        before,
        after,
        message: format!(
            "{}cordoned node/{}",
            if ctx.common.dry_run {
                "would have "
            } else {
                ""
            },
            addr.name
        ),
        reason: "HealCordoned",
    })
}

pub(super) async fn uncordon(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &UncordonSpec,
) -> Result<Done, ActionError> {
    let (rt, obj) = node(ctx, addr).await?;
    let was = is_cordoned(&obj);
    let by = cordoned_by(&obj).map(str::to_string);
    let before = json!({"cordoned": was, "cordonedBy": by});
    if !was {
        return Ok(Done {
            outcome: Outcome::Noop,
            after: before.clone(),
            before,
            message: format!("node/{} is already uncordoned", addr.name),
            reason: "HealUncordoned",
        });
    }
    let forced = match (&by, spec.force) {
        (Some(_), _) => "",
        (None, true) => " (it was not cordoned by heal: --force)",
        (None, false) => {
            return Err(ActionError::Refused(format!(
                "node/{} was cordoned by someone else (it has no {CORDONED_BY} annotation), so heal leaves it cordoned: uncordon it yourself (kubectl uncordon {}), or pass --force",
                addr.name, addr.name
            )));
        }
    };
    set_unschedulable(ctx, &rt, &addr.name, false).await?;
    Ok(Done {
        outcome: ctx.changed(),
        before,
        after: json!({"cordoned": false}),
        message: format!(
            "{}uncordoned node/{}{}{forced}",
            if ctx.common.dry_run {
                "would have "
            } else {
                ""
            },
            addr.name,
            by.map(|cid| format!(", cordoned by heal (correlation id {cid})"))
                .unwrap_or_default()
        ),
        reason: "HealUncordoned",
    })
}

/// Evict one pod through the Eviction API (`policy/v1`), so its PodDisruptionBudget holds,
/// with these `deleteOptions`. A budget that blocks answers 429, which the client retries
/// until the deadline.
pub(super) async fn evict(
    ctx: &Ctx<'_>,
    ns: &str,
    name: &str,
    mut delete_options: Value,
) -> crate::kube_api::Sent {
    let mut eviction = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    });
    if ctx.common.dry_run {
        delete_options["dryRun"] = json!(["All"]);
    }
    if delete_options.as_object().is_some_and(|o| !o.is_empty()) {
        eviction["deleteOptions"] = delete_options;
    }
    let url = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction{}",
        enc(ns),
        enc(name),
        ctx.dry_query()
    );
    ctx.write_tracked(Method::POST, &url, Some(JSON), Some(&eviction))
        .await
}

/// The budget's own words when an eviction was refused: ` (The disruption budget web
/// needs 2 healthy pods and has 2 currently)`.
pub(super) fn budget_causes(e: &crate::kube_api::ApiError) -> String {
    match e {
        crate::kube_api::ApiError::Status { causes, .. } if !causes.is_empty() => {
            format!(" ({})", causes.join("; "))
        }
        _ => String::new(),
    }
}

fn pod_key(p: &Value) -> String {
    format!(
        "{}/{}",
        str_at(p, "/metadata/namespace").unwrap_or_default(),
        str_at(p, "/metadata/name").unwrap_or_default()
    )
}

fn owner_kind(p: &Value) -> Option<&str> {
    p.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("kind")?
        .as_str()
}

pub(super) async fn drain(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &DrainSpec,
) -> Result<Done, ActionError> {
    let (rt, obj) = node(ctx, addr).await?;
    let was_cordoned = is_cordoned(&obj);
    let list = ctx
        .kube
        .get(&format!(
            "/api/v1/pods?fieldSelector={}",
            enc(&format!("spec.nodeName={}", addr.name))
        ))
        .await?;
    let pods: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    // Decide everything before changing anything: a refusal leaves the node untouched.
    let mut skipped = Vec::new();
    let mut unmanaged = Vec::new();
    let mut to_evict = Vec::new();
    for p in pods {
        let phase = str_at(&p, "/status/phase").unwrap_or_default();
        let mirror = p
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some();
        if owner_kind(&p) == Some("DaemonSet") || mirror || matches!(phase, "Succeeded" | "Failed")
        {
            skipped.push(pod_key(&p));
        } else {
            if owner_kind(&p).is_none() {
                unmanaged.push(pod_key(&p));
            }
            to_evict.push(p);
        }
    }
    for p in &to_evict {
        if let Some(ns) = str_at(p, "/metadata/namespace") {
            guard::check_namespace_allowed(ns, &ctx.common.allow_namespaces).map_err(|why| {
                ActionError::Refused(format!("pod {} cannot be evicted: {why}", pod_key(p)))
            })?;
        }
    }
    if !unmanaged.is_empty() && !spec.force {
        return Err(ActionError::Refused(format!(
            "node/{} runs pods no controller manages, which would not come back: {} (use --force to evict them anyway)",
            addr.name,
            unmanaged.join(", ")
        )));
    }
    if let Some(min) = spec.min_available {
        let mut removing: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for p in &to_evict {
            let ready = pod_ready(p);
            let (workload, workload_ready) = match owning_workload(ctx.kube, p).await? {
                Some(w) => w,
                None => (format!("pod/{}", pod_key(p)), i64::from(ready)),
            };
            let entry = removing.entry(workload).or_insert((workload_ready, 0));
            entry.1 += i64::from(ready);
        }
        for (workload, (ready, gone)) in &removing {
            guard::check_min_available(workload, *ready, *gone, min)
                .map_err(ActionError::Refused)?;
        }
    }

    let unschedulable = match spec.max_unschedulable {
        Some(max) if !was_cordoned => {
            Some(check_max_unschedulable(ctx, &rt, &addr.name, max).await?)
        }
        _ => None,
    };

    let before = json!({"cordoned": was_cordoned, "cordonedBy": cordoned_by(&obj), "pods": to_evict.iter().map(pod_key).collect::<Vec<_>>()});
    if !was_cordoned {
        set_unschedulable(ctx, &rt, &addr.name, true).await?;
    }
    let mut evicted = Vec::new();
    for p in &to_evict {
        let ns = str_at(p, "/metadata/namespace").unwrap_or("default");
        let name = str_at(p, "/metadata/name").unwrap_or_default();
        let sent = evict(ctx, ns, name, json!({})).await;
        match sent.result {
            Ok(_) => evicted.push(pod_key(p)),
            // Gone after an eviction that got no answer: that eviction removed it.
            Err(e) if e.is_not_found() && sent.unanswered => evicted.push(pod_key(p)),
            // Already gone: nothing left to evict.
            Err(e) if e.is_not_found() => {}
            Err(e) if e.is_transient() => {
                return Err(ActionError::Transient(format!(
                    "drain of node/{} incomplete: could not evict {} before the timeout: {e}{}; evicted so far: [{}]",
                    addr.name,
                    pod_key(p),
                    budget_causes(&e),
                    evicted.join(", ")
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !ctx.common.dry_run {
        // Evicted pods terminate gracefully; the drain is done when they are gone.
        for p in &to_evict {
            let ns = str_at(p, "/metadata/namespace").unwrap_or("default");
            let name = str_at(p, "/metadata/name").unwrap_or_default();
            let uid = str_at(p, "/metadata/uid");
            let path = format!("/api/v1/namespaces/{}/pods/{}", enc(ns), enc(name));
            let mut attempt = 0;
            loop {
                match get_opt(ctx.kube, &path).await? {
                    None => break,
                    Some(now) if str_at(&now, "/metadata/uid") != uid => break,
                    Some(_) => {}
                }
                if !poll_sleep(ctx.kube, attempt).await {
                    return Err(ActionError::Transient(format!(
                        "drain of node/{}: pod {} did not terminate before the timeout",
                        addr.name,
                        pod_key(p)
                    )));
                }
                attempt += 1;
            }
        }
    }
    let outcome = if was_cordoned && evicted.is_empty() {
        Outcome::Noop
    } else {
        ctx.changed()
    };
    let message = if outcome == Outcome::Noop {
        format!("node/{} is already cordoned and drained", addr.name)
    } else {
        format!(
            "{}drained node/{}: evicted {} pod(s), skipped {} (DaemonSet, mirror or finished)",
            if ctx.common.dry_run {
                "would have "
            } else {
                ""
            },
            addr.name,
            evicted.len(),
            skipped.len()
        )
    };
    let mut after = json!({
        "cordoned": true,
        "cordonedBy": if was_cordoned { cordoned_by(&obj).map(str::to_string) } else { Some(ctx.common.correlation_id.clone()) },
        "evicted": evicted,
        "skipped": skipped,
    });
    if let Some(u) = unschedulable {
        after["unschedulable"] = u;
    }
    Ok(Done {
        outcome,
        before,
        after,
        message,
        reason: "HealDrained",
    })
}
