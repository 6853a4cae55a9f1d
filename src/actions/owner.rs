//! `--owner`: act on the workload that controls the addressed object, found at run time
//! through `ownerReferences` with `controller: true` (as `kubectl get pod -o
//! jsonpath='{.metadata.ownerReferences[0].name}'` does by hand), walked up to the top
//! workload: Pod → ReplicaSet → Deployment (or an Argo Rollout, or any other owner of a
//! ReplicaSet, through discovery); Pod → StatefulSet, DaemonSet, Job or any other
//! controller. A ReplicaSet is walked past; anything else is the top.

use serde_json::Value;

use crate::actions::{ActionError, Ctx};
use crate::address::{Address, TypeRef, controller_of, owner_type as type_of, well_known};
use crate::outcome::Target;
use crate::step::OwnerOptions;

fn describe(t: &Target) -> String {
    let name = format!("{}/{}", t.kind.to_ascii_lowercase(), t.name);
    match &t.namespace {
        Some(ns) => format!("{name} in {ns}"),
        None => name,
    }
}

/// Find the top workload controlling `addr`: its address, and the addressed object as
/// seen (for the result). `action` names what will be done, for messages.
pub(super) async fn resolve(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    opts: &OwnerOptions,
    action: &str,
) -> Result<(Address, Target), ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    ctx.check_namespace(ns.as_deref())?;
    let path = rt.object_path(ns.as_deref(), &addr.name);
    let obj = match ctx.kube.get(&path).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => {
            return Err(ActionError::Failed(format!(
                "{} not found, so it has no owner to {action}",
                describe(&ctx.target)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
        ctx.target.uid = Some(uid.to_string());
    }
    let addressed = ctx.target.clone();
    let Some((api_version, kind, name)) = controller_of(&obj) else {
        return Err(ActionError::Failed(format!(
            "{} has no controller (no ownerReferences entry with controller: true), so it has no owner to {action}",
            describe(&addressed)
        )));
    };
    let mut top = (api_version, kind, name);
    // A ReplicaSet is a Deployment's (or a Rollout's) revision: go on to its controller.
    if top.0 == "apps/v1" && top.1 == "ReplicaSet" {
        let rs = well_known("replicaset").expect("replicaset is well known");
        let rs_path = rs.object_path(ns.as_deref(), &top.2);
        match ctx.kube.get(&rs_path).await {
            Ok(o) => {
                if let Some(up) = controller_of(&o) {
                    top = up;
                }
            }
            Err(e) if e.is_not_found() => {
                return Err(ActionError::Transient(format!(
                    "the owner of {}, replicaset/{}, is gone (a rollout may be replacing it); retry",
                    describe(&addressed),
                    top.2
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let owner = Address {
        type_ref: type_of(&top.0, &top.1),
        name: top.2.clone(),
    };
    let found = format!("{}/{}", top.1.to_ascii_lowercase(), top.2);
    if let Some(expected) = &opts.expect {
        let same = owner.name == expected.name
            && match (&expected.type_ref, &owner.type_ref) {
                (TypeRef::Known(a), TypeRef::Known(b)) => a.group == b.group && a.kind == b.kind,
                (TypeRef::Discover { group, name, .. }, _) => {
                    top.0.split('/').next() == Some(group.as_str())
                        && name.eq_ignore_ascii_case(&top.1)
                }
                _ => false,
            };
        if !same {
            return Err(ActionError::Refused(format!(
                "the owner of {} is now {found}, not {} as when the remediation was decided",
                describe(&addressed),
                expected
            )));
        }
    }
    tracing::info!(
        correlation_id = %ctx.common.correlation_id,
        phase = "resolve",
        addressed = %describe(&addressed),
        owner = %found,
        "{} is controlled by {found}",
        describe(&addressed)
    );
    Ok((owner, addressed))
}
