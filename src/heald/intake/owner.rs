//! Finding the owner of a policy's target when the policy has `target: owner` steps, when
//! heald decides: the addressed object is read, then (for a ReplicaSet) its controller, as
//! heal `--owner` walks at run time. The owner becomes the plan's target, so the hold,
//! cooldown and circuit cover the workload that changes, and two alerts for two pods of
//! one Deployment cannot both scale it at once.

use crate::address::{TypeRef, controller_of, owner_type_name, parse_type, well_known};
use crate::heald::kube_io::{K8s, KubeIoError};
use crate::plan::PlanTarget;

/// Kubernetes reads finding an owner costs at most: the object, and its ReplicaSet.
pub const OWNER_READS: u32 = 2;

/// The owner of `target`, `Ok(Err(why))` when it has none heald can act through (the
/// object is gone, has no controller, or is not a built-in kind).
pub async fn find(
    k8s: &K8s,
    target: &PlanTarget,
) -> Result<Result<PlanTarget, String>, KubeIoError> {
    let what = format!("{}/{} in {}", target.kind, target.name, target.namespace);
    let rt = match parse_type(&target.kind) {
        Ok(TypeRef::Known(rt)) => rt,
        _ => {
            return Ok(Err(format!(
                "heald finds the owner of built-in kinds only, not of {what}"
            )));
        }
    };
    let ns = Some(target.namespace.as_str()).filter(|n| !n.is_empty());
    let Some(obj) = k8s.get_opt(&rt.object_path(ns, &target.name)).await? else {
        return Ok(Err(format!(
            "{what} not found, so it has no owner to act on"
        )));
    };
    let Some(mut top) = controller_of(&obj) else {
        return Ok(Err(format!(
            "{what} has no controller (no ownerReferences entry with controller: true)"
        )));
    };
    if top.0 == "apps/v1" && top.1 == "ReplicaSet" {
        let rs = well_known("replicaset").expect("replicaset is well known");
        match k8s.get_opt(&rs.object_path(ns, &top.2)).await? {
            Some(o) => {
                if let Some(up) = controller_of(&o) {
                    top = up;
                }
            }
            None => {
                // A rollout replaced it meanwhile: decide again on the next delivery.
                return Err(KubeIoError::Conflict(format!(
                    "the owner of {what}, replicaset/{},",
                    top.2
                )));
            }
        }
    }
    Ok(Ok(PlanTarget {
        kind: owner_type_name(&top.0, &top.1),
        namespace: target.namespace.clone(),
        name: top.2,
    }))
}
