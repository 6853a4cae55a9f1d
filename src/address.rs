//! kubectl-style resource addressing: `deployment/web`, `deploy/web`, `node/n1`,
//! `rollouts.argoproj.io/web`, `argoproj.io/Rollout/web`. Pure: well-known kinds resolve
//! from a built-in table; anything else is left for API discovery.

use std::fmt;

/// A resource type as the API server serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// API version within the group (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name used in URLs (`deployments`).
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the type has a `/scale` subresource.
    pub scalable: bool,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// URL path of the collection, e.g. `/apis/apps/v1/namespaces/shop/deployments`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            _ => format!("{prefix}/{}", self.plural),
        }
    }

    /// URL path of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }

    /// `deployments.apps`, as Kubernetes names a resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// What the user typed before the `/`: either a known type, or something to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A well-known type that needs no discovery round trip.
    Known(ResourceType),
    /// A custom resource: look `name` (plural, singular, kind or short name, any case) up
    /// in `group` (and `version` when given) through API discovery.
    Discover {
        /// API group, e.g. `argoproj.io`.
        group: String,
        /// API version when the user pinned one (`rollouts.v1alpha1.argoproj.io`).
        version: Option<String>,
        /// Resource name as typed.
        name: String,
    },
}

/// A parsed `TYPE/NAME` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The type part.
    pub type_ref: TypeRef,
    /// The object name.
    pub name: String,
}

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not of the form `TYPE/NAME`.
    #[error("malformed resource address {0:?}: expected TYPE/NAME, e.g. deployment/web")]
    Malformed(String),
    /// The type is neither a well-known kind nor qualified with an API group.
    #[error(
        "unknown resource type {0:?}: use a well-known type (deployment, statefulset, pod, node, ...) or qualify it with its API group, e.g. rollouts.argoproj.io/web"
    )]
    UnknownType(String),
    /// The name is not a valid Kubernetes object name.
    #[error("invalid object name {0:?}: {1}")]
    InvalidName(String, String),
}

struct Known {
    names: &'static [&'static str],
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    scalable: bool,
}

const KNOWN: &[Known] = &[
    Known {
        names: &["deployment", "deployments", "deploy"],
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        scalable: true,
    },
    Known {
        names: &["statefulset", "statefulsets", "sts"],
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        scalable: true,
    },
    Known {
        names: &["replicaset", "replicasets", "rs"],
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        scalable: true,
    },
    Known {
        names: &["daemonset", "daemonsets", "ds"],
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["pod", "pods", "po"],
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["node", "nodes", "no"],
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        scalable: false,
    },
    Known {
        names: &["configmap", "configmaps", "cm"],
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["secret", "secrets"],
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["service", "services", "svc"],
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["replicationcontroller", "replicationcontrollers", "rc"],
        group: "",
        version: "v1",
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        namespaced: true,
        scalable: true,
    },
    Known {
        names: &["job", "jobs"],
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["cronjob", "cronjobs", "cj"],
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["poddisruptionbudget", "poddisruptionbudgets", "pdb"],
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["horizontalpodautoscaler", "horizontalpodautoscalers", "hpa"],
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        namespaced: true,
        scalable: false,
    },
    Known {
        names: &["namespace", "namespaces", "ns"],
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        scalable: false,
    },
    Known {
        names: &["lease", "leases"],
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        scalable: false,
    },
];

fn known(name: &str, group: Option<&str>) -> Option<ResourceType> {
    let lower = name.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|k| k.names.contains(&lower.as_str()) && group.is_none_or(|g| g == k.group))
        .map(|k| ResourceType {
            group: k.group.to_string(),
            version: k.version.to_string(),
            kind: k.kind.to_string(),
            plural: k.plural.to_string(),
            namespaced: k.namespaced,
            scalable: k.scalable,
        })
}

/// The well-known type for a kind or resource name (`Deployment`, `deploy`), if any.
pub fn well_known(name: &str) -> Option<ResourceType> {
    known(name, None)
}

/// An object's controller reference (the `ownerReferences` entry with `controller:
/// true`): its `apiVersion`, `kind` and `name`.
pub fn controller_of(obj: &serde_json::Value) -> Option<(String, String, String)> {
    use serde_json::Value;
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            Some((s("apiVersion")?, s("kind")?, s("name")?))
        })
}

/// The type of an owner reference: a well-known type of the same group and kind, else
/// one to discover in its group and version.
pub fn owner_type(api_version: &str, kind: &str) -> TypeRef {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    match well_known(&kind.to_ascii_lowercase()) {
        Some(rt) if rt.group == group && rt.kind == kind => TypeRef::Known(rt),
        _ => TypeRef::Discover {
            group: group.to_string(),
            version: Some(version.to_string()),
            name: kind.to_string(),
        },
    }
}

/// An owner reference's type as heal addresses it: `deployment`, or `rollout.argoproj.io`
/// for a kind of another group.
pub fn owner_type_name(api_version: &str, kind: &str) -> String {
    match owner_type(api_version, kind) {
        TypeRef::Known(rt) => rt.kind.to_ascii_lowercase(),
        TypeRef::Discover { group, .. } => format!("{}.{group}", kind.to_ascii_lowercase()),
    }
}

/// Check a name against the DNS-1123 subdomain rules most object names follow.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if ok {
        Ok(())
    } else {
        Err("must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into())
    }
}

/// Check a namespace name (a DNS-1123 label).
pub fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if ns.contains('.') {
        return Err("must not contain '.'".into());
    }
    check_name(ns)
}

impl std::str::FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let (type_ref, name) = match parts.as_slice() {
            [ty, name] if !ty.is_empty() && !name.is_empty() => (parse_type(ty)?, *name),
            // GROUP/KIND/NAME, e.g. argoproj.io/Rollout/web; a kind has no dots.
            [group, kind, name]
                if group.contains('.')
                    && !group.split('.').any(str::is_empty)
                    && !kind.is_empty()
                    && !kind.contains('.')
                    && !name.is_empty() =>
            {
                let tr = match known(kind, Some(group)) {
                    Some(rt) => TypeRef::Known(rt),
                    None => TypeRef::Discover {
                        group: group.to_string(),
                        version: None,
                        name: kind.to_string(),
                    },
                };
                (tr, *name)
            }
            _ => return Err(AddressError::Malformed(s.to_string())),
        };
        check_name(name).map_err(|why| AddressError::InvalidName(name.to_string(), why))?;
        Ok(Address {
            type_ref,
            name: name.to_string(),
        })
    }
}

/// Parse the type part: `deploy`, `deployments.apps`, `rollouts.argoproj.io`,
/// `rollouts.v1alpha1.argoproj.io`.
pub fn parse_type(ty: &str) -> Result<TypeRef, AddressError> {
    match ty.split_once('.') {
        None => known(ty, None)
            .map(TypeRef::Known)
            .ok_or_else(|| AddressError::UnknownType(ty.to_string())),
        Some((name, rest)) => {
            if name.is_empty() || rest.split('.').any(str::is_empty) {
                return Err(AddressError::UnknownType(ty.to_string()));
            }
            // kind.version.group when the second segment looks like a version.
            let (version, group) = match rest.split_once('.') {
                Some((v, g)) if is_version(v) => (Some(v.to_string()), g.to_string()),
                _ => (None, rest.to_string()),
            };
            if let Some(mut rt) = known(name, Some(&group)) {
                if let Some(v) = version {
                    rt.version = v;
                }
                return Ok(TypeRef::Known(rt));
            }
            Ok(TypeRef::Discover {
                group,
                version,
                name: name.to_string(),
            })
        }
    }
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            tail.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.type_ref {
            TypeRef::Known(rt) => write!(f, "{}/{}", rt.kind.to_ascii_lowercase(), self.name),
            TypeRef::Discover {
                group,
                version,
                name,
            } => match version {
                Some(v) => write!(f, "{name}.{v}.{group}/{}", self.name),
                // `NAME.vN.REST/` would read back as a pinned version: write GROUP/KIND/NAME.
                None if group.contains('.') && group.split('.').next().is_some_and(is_version) => {
                    write!(f, "{group}/{name}/{}", self.name)
                }
                None => write!(f, "{name}.{group}/{}", self.name),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn short_and_long_names_resolve_without_discovery() {
        for s in [
            "deployment/web",
            "deploy/web",
            "deployments/web",
            "Deployment/web",
            "deployments.apps/web",
        ] {
            let a = addr(s);
            let TypeRef::Known(rt) = a.type_ref else {
                panic!("{s} needs discovery")
            };
            assert_eq!(rt.plural, "deployments");
            assert_eq!(rt.group, "apps");
            assert_eq!(a.name, "web");
        }
        let TypeRef::Known(sts) = addr("sts/db").type_ref else {
            panic!()
        };
        assert_eq!(sts.kind, "StatefulSet");
        let TypeRef::Known(node) = addr("node/n1").type_ref else {
            panic!()
        };
        assert!(!node.namespaced);
        assert_eq!(node.object_path(Some("x"), "n1"), "/api/v1/nodes/n1");
    }

    #[test]
    fn custom_resources_go_to_discovery() {
        assert_eq!(
            addr("rollouts.argoproj.io/web").type_ref,
            TypeRef::Discover {
                group: "argoproj.io".into(),
                version: None,
                name: "rollouts".into()
            }
        );
        assert_eq!(
            addr("rollout.v1alpha1.argoproj.io/web").type_ref,
            TypeRef::Discover {
                group: "argoproj.io".into(),
                version: Some("v1alpha1".into()),
                name: "rollout".into()
            }
        );
        assert_eq!(
            addr("argoproj.io/Rollout/web").type_ref,
            TypeRef::Discover {
                group: "argoproj.io".into(),
                version: None,
                name: "Rollout".into()
            }
        );
    }

    #[test]
    fn paths_follow_the_api_layout() {
        let TypeRef::Known(rt) = addr("deploy/web").type_ref else {
            panic!()
        };
        assert_eq!(
            rt.object_path(Some("shop"), "web"),
            "/apis/apps/v1/namespaces/shop/deployments/web"
        );
        let TypeRef::Known(pod) = addr("po/p").type_ref else {
            panic!()
        };
        assert_eq!(
            pod.object_path(Some("a"), "p"),
            "/api/v1/namespaces/a/pods/p"
        );
    }

    #[test]
    fn malformed_addresses_are_rejected_with_a_reason() {
        for s in ["web", "/web", "deploy/", "a/b/c/d", ""] {
            assert!(
                matches!(s.parse::<Address>(), Err(AddressError::Malformed(_))),
                "{s}"
            );
        }
        assert!(matches!(
            "frobnicator/web".parse::<Address>(),
            Err(AddressError::UnknownType(_))
        ));
        let err = "deploy/Web_1".parse::<Address>().unwrap_err();
        assert!(err.to_string().contains("invalid object name"), "{err}");
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_controller_reference_counts() {
        let pod = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "other"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "controller": true},
        ]}});
        assert_eq!(
            controller_of(&pod),
            Some(("apps/v1".into(), "ReplicaSet".into(), "web-5d8f".into()))
        );
        assert_eq!(controller_of(&json!({"metadata": {}})), None);
    }

    #[test]
    fn well_known_owners_need_no_discovery_and_others_are_discovered() {
        assert!(
            matches!(owner_type("apps/v1", "Deployment"), TypeRef::Known(rt) if rt.plural == "deployments")
        );
        assert_eq!(
            owner_type("argoproj.io/v1alpha1", "Rollout"),
            TypeRef::Discover {
                group: "argoproj.io".into(),
                version: Some("v1alpha1".into()),
                name: "Rollout".into()
            }
        );
        assert_eq!(owner_type_name("apps/v1", "StatefulSet"), "statefulset");
        assert_eq!(
            owner_type_name("argoproj.io/v1alpha1", "Rollout"),
            "rollout.argoproj.io"
        );
        assert!("rollout.argoproj.io/web".parse::<Address>().is_ok());
    }
}
