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

/// Options of `heal drain`.
#[derive(Debug, Clone, Default)]
pub struct DrainSpec {
    /// Refuse when a workload would keep fewer ready replicas than this.
    pub min_available: Option<i64>,
    /// Also evict pods that no controller manages (they will not come back).
    pub force: bool,
}

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

async fn set_unschedulable(
    ctx: &Ctx<'_>,
    rt: &ResourceType,
    name: &str,
    on: bool,
) -> Result<(), ActionError> {
    let body = json!({"spec": {"unschedulable": if on { json!(true) } else { Value::Null }}});
    let url = format!("{}{}", rt.object_path(None, name), ctx.dry_query());
    ctx.write(Method::PATCH, &url, Some(MERGE_PATCH), Some(&body))
        .await?;
    Ok(())
}

pub(super) async fn cordon(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    on: bool,
) -> Result<Done, ActionError> {
    let (rt, obj) = node(ctx, addr).await?;
    let was = is_cordoned(&obj);
    let before = json!({"cordoned": was});
    let (verb, reason) = if on {
        ("cordoned", "HealCordoned")
    } else {
        ("uncordoned", "HealUncordoned")
    };
    if was == on {
        return Ok(Done {
            outcome: Outcome::Noop,
            after: before.clone(),
            before,
            message: format!("node/{} is already {verb}", addr.name),
            reason,
        });
    }
    set_unschedulable(ctx, &rt, &addr.name, on).await?;
    Ok(Done {
        outcome: ctx.changed(),
        before,
        after: json!({"cordoned": on}),
        message: format!(
            "{}{verb} node/{}",
            if ctx.common.dry_run {
                "would have "
            } else {
                ""
            },
            addr.name
        ),
        reason,
    })
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

    let before =
        json!({"cordoned": was_cordoned, "pods": to_evict.iter().map(pod_key).collect::<Vec<_>>()});
    if !was_cordoned {
        set_unschedulable(ctx, &rt, &addr.name, true).await?;
    }
    let mut evicted = Vec::new();
    for p in &to_evict {
        let ns = str_at(p, "/metadata/namespace").unwrap_or("default");
        let name = str_at(p, "/metadata/name").unwrap_or_default();
        let mut eviction = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
        });
        if ctx.common.dry_run {
            eviction["deleteOptions"] = json!({"dryRun": ["All"]});
        }
        let url = format!(
            "/api/v1/namespaces/{}/pods/{}/eviction{}",
            enc(ns),
            enc(name),
            ctx.dry_query()
        );
        let sent = ctx
            .write_tracked(Method::POST, &url, Some(JSON), Some(&eviction))
            .await;
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
                    match &e {
                        crate::kube_api::ApiError::Status { causes, .. } if !causes.is_empty() =>
                            format!(" ({})", causes.join("; ")),
                        _ => String::new(),
                    },
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
    Ok(Done {
        outcome,
        before,
        after: json!({"cordoned": true, "evicted": evicted, "skipped": skipped}),
        message,
        reason: "HealDrained",
    })
}
