//! The cluster's other controllers, which would undo or fight what heal changes: a
//! HorizontalPodAutoscaler scaling the same workload, Argo CD or Flux reconciling the object
//! from Git. heal refuses when one of them owns what it would change, or adapts only when
//! asked (`--hpa raise-min`, `--allow-gitops`).

use http::Method;
use serde_json::{Value, json};

use super::{ActionError, Ctx, int, str_at};
use crate::address::ResourceType;
use crate::kube_api::{MERGE_PATCH, enc};
use crate::step::{ArgoTracking, GitOpsOptions};

/// Argo CD's tracking annotation.
pub const ARGOCD_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
const FLUX_KUSTOMIZE: &str = "kustomize.toolkit.fluxcd.io";
const FLUX_HELM: &str = "helm.toolkit.fluxcd.io";

/// The GitOps application that reconciles an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOpsOwner {
    /// `Argo CD` or `Flux`.
    pub tool: &'static str,
    /// `Application`, `Kustomization` or `HelmRelease`.
    pub kind: &'static str,
    /// The application's name (`NAMESPACE/NAME` where it has a namespace).
    pub name: String,
    /// What says so (the annotation or label).
    pub evidence: String,
}

impl GitOpsOwner {
    /// `Argo CD Application shop-web`.
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.tool, self.kind, self.name)
    }

    /// The owner as the result carries it.
    pub fn to_json(&self) -> Value {
        json!({"tool": self.tool, "kind": self.kind, "name": self.name, "evidence": self.evidence})
    }
}

fn annotation<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    str_at(
        obj,
        &format!(
            "/metadata/annotations/{}",
            key.replace('~', "~0").replace('/', "~1")
        ),
    )
    .filter(|v| !v.is_empty())
}

fn label<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    str_at(
        obj,
        &format!(
            "/metadata/labels/{}",
            key.replace('~', "~0").replace('/', "~1")
        ),
    )
    .filter(|v| !v.is_empty())
}

/// The Argo CD application a tracking id names, when the id is about this very object.
/// An id is `APP:GROUP/KIND:NAMESPACE/NAME` (`APP` is `NAMESPACE_NAME` for applications
/// outside Argo CD's own namespace). An id naming another object was copied (a Deployment's
/// annotations reach its ReplicaSets), and Argo CD does not track by it either; an id heal
/// cannot read is taken to track the object, so heal errs on the side of refusing.
fn argocd_application(id: &str, rt: &ResourceType, name: &str) -> Option<String> {
    let Some((app, rest)) = id.split_once(':') else {
        return Some(id.to_string());
    };
    let Some((group_kind, ns_name)) = rest.split_once(':') else {
        return Some(app.to_string());
    };
    let (group, kind) = group_kind.split_once('/').unwrap_or(("", group_kind));
    let obj_name = ns_name.rsplit('/').next().unwrap_or(ns_name);
    if kind != rt.kind || obj_name != name || group != rt.group {
        return None;
    }
    Some(match app.split_once('_') {
        Some((ns, n)) if !ns.is_empty() && !n.is_empty() => format!("{ns}/{n}"),
        _ => app.to_string(),
    })
}

/// The GitOps application that reconciles `obj`, if any: Argo CD by its tracking
/// annotation (or, with label tracking, its instance label), Flux by the labels its
/// kustomize and helm controllers set.
pub fn gitops_owner(obj: &Value, rt: &ResourceType, opts: &GitOpsOptions) -> Option<GitOpsOwner> {
    let name = str_at(obj, "/metadata/name").unwrap_or_default();
    if let Some(id) = annotation(obj, ARGOCD_TRACKING_ID)
        && let Some(app) = argocd_application(id, rt, name)
    {
        return Some(GitOpsOwner {
            tool: "Argo CD",
            kind: "Application",
            name: app,
            evidence: format!("annotation {ARGOCD_TRACKING_ID}={id}"),
        });
    }
    if opts.argocd_tracking == ArgoTracking::Label
        && let Some(app) = label(obj, &opts.instance_label)
    {
        return Some(GitOpsOwner {
            tool: "Argo CD",
            kind: "Application",
            name: app.to_string(),
            evidence: format!("label {}={app}", opts.instance_label),
        });
    }
    for (group, kind) in [
        (FLUX_KUSTOMIZE, "Kustomization"),
        (FLUX_HELM, "HelmRelease"),
    ] {
        if let Some(n) = label(obj, &format!("{group}/name")) {
            let full = match label(obj, &format!("{group}/namespace")) {
                Some(ns) => format!("{ns}/{n}"),
                None => n.to_string(),
            };
            return Some(GitOpsOwner {
                tool: "Flux",
                kind,
                name: full,
                evidence: format!("label {group}/name={n}"),
            });
        }
    }
    None
}

/// Refuse (exit 4) to change an object a GitOps controller reconciles, unless allowed;
/// an allowed change gets the owner back, for the result and the Event.
pub fn check_gitops(
    ctx: &Ctx<'_>,
    obj: &Value,
    rt: &ResourceType,
    opts: &GitOpsOptions,
) -> Result<Option<GitOpsOwner>, ActionError> {
    let Some(owner) = gitops_owner(obj, rt, opts) else {
        return Ok(None);
    };
    if opts.allow {
        tracing::warn!(
            correlation_id = %ctx.common.correlation_id,
            phase = "guard",
            owner = %owner.describe(),
            "{} is managed by {}; changing it anyway (--allow-gitops)",
            ctx.target_name(),
            owner.describe()
        );
        return Ok(Some(owner));
    }
    Err(ActionError::Refused(format!(
        "{} is managed by {} ({}), which would revert this change: change it in Git, or pass --allow-gitops (policy: gitOps: allow)",
        ctx.target_name(),
        owner.describe(),
        owner.evidence
    )))
}

/// The sentence an allowed change carries about its GitOps owner.
pub fn gitops_note(target: &str, owner: &GitOpsOwner) -> String {
    format!(
        "; {target} is managed by {}, which may revert this change",
        owner.describe()
    )
}

/// A HorizontalPodAutoscaler targeting a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hpa {
    /// Its name (in the workload's namespace).
    pub name: String,
    /// `spec.minReplicas` (1 when unset).
    pub min: i64,
    /// `spec.maxReplicas`.
    pub max: i64,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
}

impl Hpa {
    /// `HorizontalPodAutoscaler web (minReplicas 2, maxReplicas 10)`.
    pub fn describe(&self) -> String {
        format!(
            "HorizontalPodAutoscaler {} (minReplicas {}, maxReplicas {})",
            self.name, self.min, self.max
        )
    }
}

fn hpa_path(ns: &str) -> String {
    format!(
        "/apis/autoscaling/v2/namespaces/{}/horizontalpodautoscalers",
        enc(ns)
    )
}

fn hpa_of(v: &Value) -> Hpa {
    Hpa {
        name: str_at(v, "/metadata/name").unwrap_or_default().to_string(),
        min: v
            .pointer("/spec/minReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        max: int(v, "/spec/maxReplicas"),
        resource_version: str_at(v, "/metadata/resourceVersion")
            .unwrap_or_default()
            .to_string(),
    }
}

/// Whether an HPA's `scaleTargetRef` names this workload.
fn targets(hpa: &Value, rt: &ResourceType, name: &str) -> bool {
    let r = |f: &str| str_at(hpa, &format!("/spec/scaleTargetRef/{f}")).unwrap_or_default();
    let group = r("apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    r("kind") == rt.kind && r("name") == name && group == rt.group
}

/// The `autoscaling/v2` HorizontalPodAutoscalers of `ns` whose `scaleTargetRef` names the
/// workload. A cluster that does not serve `autoscaling/v2` (404) has none.
pub async fn hpas_targeting(
    ctx: &Ctx<'_>,
    rt: &ResourceType,
    ns: &str,
    name: &str,
) -> Result<Vec<Hpa>, ActionError> {
    let list = match ctx.kube.get(&hpa_path(ns)).await {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => {
            return Err(ActionError::from(e).with_context(
                "cannot list HorizontalPodAutoscalers (heal scale needs get/list on horizontalpodautoscalers.autoscaling, or --hpa ignore)",
            ));
        }
    };
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|h| targets(h, rt, name))
                .map(hpa_of)
                .collect()
        })
        .unwrap_or_default())
}

/// Raise an HPA's `minReplicas` to `to` (a merge patch carrying the resourceVersion it
/// was read at; a concurrent change is read again). Returns the HPA as it was before and
/// the `minReplicas` it has now; never lowers it.
pub async fn raise_min(
    ctx: &Ctx<'_>,
    ns: &str,
    hpa: &Hpa,
    to: i64,
) -> Result<(Hpa, i64), ActionError> {
    let path = format!("{}/{}", hpa_path(ns), enc(&hpa.name));
    let mut current = hpa.clone();
    let mut first = true;
    loop {
        if !first {
            let v = super::get_opt(ctx.kube, &path).await?.ok_or_else(|| {
                ActionError::Failed(format!(
                    "HorizontalPodAutoscaler {} disappeared while raising its minReplicas",
                    hpa.name
                ))
            })?;
            current = hpa_of(&v);
        }
        first = false;
        if current.min >= to {
            return Ok((current.clone(), current.min));
        }
        let body = json!({
            "metadata": {"resourceVersion": current.resource_version},
            "spec": {"minReplicas": to},
        });
        let url = format!("{path}{}", ctx.dry_query());
        match ctx
            .write(Method::PATCH, &url, Some(MERGE_PATCH), Some(&body))
            .await
        {
            Ok(answer) => {
                let now = answer
                    .pointer("/spec/minReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(to);
                return Ok((current, now));
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => {
                return Err(ActionError::from(e).with_context(&format!(
                    "cannot raise the minReplicas of HorizontalPodAutoscaler {} (--hpa raise-min needs patch on horizontalpodautoscalers.autoscaling)",
                    hpa.name
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::well_known;
    use crate::step::DEFAULT_INSTANCE_LABEL;

    fn deploy() -> ResourceType {
        well_known("deployment").unwrap()
    }

    fn obj(annotations: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "annotations": annotations, "labels": labels}})
    }

    #[test]
    fn argo_cd_tracking_ids_name_the_application_of_this_object_only() {
        let o = GitOpsOptions::default();
        let owner = gitops_owner(
            &obj(
                json!({ARGOCD_TRACKING_ID: "shop-web:apps/Deployment:shop/web"}),
                json!({}),
            ),
            &deploy(),
            &o,
        )
        .unwrap();
        assert_eq!(owner.describe(), "Argo CD Application shop-web");
        // Applications in any namespace: NAMESPACE_NAME.
        let owner = gitops_owner(
            &obj(
                json!({ARGOCD_TRACKING_ID: "team-a_web:apps/Deployment:shop/web"}),
                json!({}),
            ),
            &deploy(),
            &o,
        )
        .unwrap();
        assert_eq!(owner.name, "team-a/web");
        // Copied from another object: not tracked.
        assert!(
            gitops_owner(
                &obj(
                    json!({ARGOCD_TRACKING_ID: "shop-web:apps/Deployment:shop/other"}),
                    json!({}),
                ),
                &deploy(),
                &o,
            )
            .is_none()
        );
        // Unreadable: taken as tracked.
        assert!(
            gitops_owner(
                &obj(json!({ARGOCD_TRACKING_ID: "garbage"}), json!({})),
                &deploy(),
                &o
            )
            .is_some()
        );
    }

    #[test]
    fn the_instance_label_counts_only_with_label_tracking() {
        let o = obj(json!({}), json!({DEFAULT_INSTANCE_LABEL: "shop-web"}));
        assert!(gitops_owner(&o, &deploy(), &GitOpsOptions::default()).is_none());
        let label = GitOpsOptions {
            argocd_tracking: ArgoTracking::Label,
            ..GitOpsOptions::default()
        };
        assert_eq!(
            gitops_owner(&o, &deploy(), &label).unwrap().name,
            "shop-web"
        );
        let aal = GitOpsOptions {
            argocd_tracking: ArgoTracking::AnnotationAndLabel,
            ..GitOpsOptions::default()
        };
        assert!(gitops_owner(&o, &deploy(), &aal).is_none());
    }

    #[test]
    fn flux_labels_name_the_kustomization_or_helm_release() {
        let o = obj(
            json!({}),
            json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
        );
        assert_eq!(
            gitops_owner(&o, &deploy(), &GitOpsOptions::default())
                .unwrap()
                .describe(),
            "Flux Kustomization flux-system/apps"
        );
        let o = obj(json!({}), json!({"helm.toolkit.fluxcd.io/name": "web"}));
        assert_eq!(
            gitops_owner(&o, &deploy(), &GitOpsOptions::default())
                .unwrap()
                .describe(),
            "Flux HelmRelease web"
        );
    }

    #[test]
    fn hpas_match_their_scale_target_by_group_kind_and_name() {
        let h = json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}});
        assert!(targets(&h, &deploy(), "web"));
        assert!(!targets(&h, &deploy(), "api"));
        let h = json!({"spec": {"scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Deployment", "name": "web"}}});
        assert!(!targets(&h, &deploy(), "web"));
    }
}
