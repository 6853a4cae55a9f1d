//! The resource types the server knows (built-ins plus registered CRDs) and the discovery
//! documents (`/api`, `/apis`, `/api/v1`, `/apis/{group}[/{version}]`) built from them.

use serde_json::{Value, json};

/// When `metadata.generation` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationRule {
    /// The resource keeps no generation (configmaps, nodes, events, ...).
    None,
    /// `spec` changed (pods, statefulsets, replicasets, daemonsets, PDBs).
    Spec,
    /// `spec` or `metadata.annotations` changed (deployments: annotations are copied to
    /// ReplicaSets, so the deployment strategy bumps on them too).
    SpecAndAnnotations,
    /// Anything but `metadata` and `status` changed (custom resources with a status
    /// subresource).
    AllButMetadataStatus,
    /// Anything but `metadata` changed (custom resources without a status subresource).
    AllButMetadata,
}

/// Where a scalable resource keeps its replicas (`scale` subresource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// JSON pointer of the desired replicas (`/spec/replicas`).
    pub spec_replicas: String,
    /// JSON pointer of the observed replicas (`/status/replicas`).
    pub status_replicas: String,
    /// JSON pointer of the selector string for custom resources; built-ins render
    /// `spec.selector` instead.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// `.spec.replicas` / `.status.replicas` / `.status.selector`.
    pub fn standard() -> ScalePaths {
        ScalePaths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            label_selector: Some("/status/selector".into()),
        }
    }
}

/// One served resource (one group, version and plural).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// API version (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Verbs of the main resource.
    pub verbs: Vec<String>,
    /// Has a `status` subresource (status is ignored on the main resource).
    pub status_subresource: bool,
    /// Has a `scale` subresource.
    pub scale: Option<ScalePaths>,
    /// Has the `eviction` subresource (pods).
    pub eviction: bool,
    /// How `metadata.generation` moves.
    pub generation: GenerationRule,
    /// A custom resource: list items carry apiVersion/kind, strategic merge patch is 415.
    pub custom: bool,
    /// Fields a `fieldSelector` may use besides `metadata.name` and `metadata.namespace`.
    pub field_labels: Vec<String>,
    /// `PUT` of a missing object creates it (events).
    pub create_on_update: bool,
    /// `DELETE` answers with the object instead of a `Status` (pods, services).
    pub return_deleted_object: bool,
    /// The version whose key stores the objects (several served versions share one store).
    pub storage_version: String,
    /// Another resource whose storage this one shares, as (group, version, plural); objects
    /// are converted on the way in and out (events.k8s.io/v1 events are core/v1 events).
    pub shared_storage: Option<(String, String, String)>,
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        short: &[&str],
    ) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
            status_subresource: false,
            scale: None,
            eviction: false,
            generation: GenerationRule::None,
            custom: false,
            field_labels: Vec::new(),
            create_on_update: false,
            return_deleted_object: false,
            storage_version: version.into(),
            shared_storage: None,
        }
    }

    /// A custom resource served from a CRD.
    pub fn custom(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> ResourceType {
        let mut rt = ResourceType::builtin(group, version, kind, plural, namespaced, &[]);
        rt.custom = true;
        rt.generation = GenerationRule::AllButMetadata;
        rt
    }

    fn status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    fn all(mut self) -> Self {
        self.categories.push("all".into());
        self
    }

    fn generation(mut self, rule: GenerationRule) -> Self {
        self.generation = rule;
        self
    }

    fn scalable(mut self) -> Self {
        self.scale = Some(ScalePaths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            label_selector: None,
        });
        self
    }

    fn fields(mut self, fields: &[&str]) -> Self {
        self.field_labels = fields.iter().map(|s| s.to_string()).collect();
        self
    }

    fn verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` (what error messages call the resource).
    pub fn group_resource(&self) -> String {
        super::status::group_resource(&self.group, &self.plural)
    }

    /// `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether the verb is served on the main resource.
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Whether `name` (kind, plural, singular or short name, any case) names this type.
    pub fn is_named(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        n == self.plural
            || n == self.singular
            || n == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&n)
    }

    /// The group, version and plural of the store this type's objects live in.
    pub fn storage(&self) -> (String, String, String) {
        match &self.shared_storage {
            Some(s) => s.clone(),
            None => (
                self.group.clone(),
                self.storage_version.clone(),
                self.plural.clone(),
            ),
        }
    }

    /// The `APIResource` entries of this type and its subresources.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.eviction {
            out.push(json!({
                "name": format!("{}/eviction", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }));
        }
        if self.scale.is_some() {
            out.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// Every served resource type.
#[derive(Debug, Clone)]
pub struct Catalogue {
    types: Vec<ResourceType>,
}

impl Catalogue {
    /// The built-in types the server starts with.
    pub fn builtin() -> Catalogue {
        use GenerationRule as G;
        let pod_fields = [
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ];
        let event_fields = [
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ];
        let mut pods = ResourceType::builtin("", "v1", "Pod", "pods", true, &["po"])
            .status()
            .all()
            .generation(G::Spec)
            .fields(&pod_fields);
        pods.eviction = true;
        pods.return_deleted_object = true;
        let mut core_events =
            ResourceType::builtin("", "v1", "Event", "events", true, &["ev"]).fields(&event_fields);
        core_events.create_on_update = true;
        let mut new_events =
            ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"]).fields(
                &[
                    "regarding.kind",
                    "regarding.namespace",
                    "regarding.name",
                    "regarding.uid",
                    "regarding.apiVersion",
                    "reason",
                    "reportingController",
                    "type",
                ],
            );
        new_events.create_on_update = true;
        new_events.shared_storage = Some(("".into(), "v1".into(), "events".into()));
        let mut services = ResourceType::builtin("", "v1", "Service", "services", true, &["svc"])
            .status()
            .all();
        services.return_deleted_object = true;
        let types = vec![
            pods,
            ResourceType::builtin("", "v1", "Node", "nodes", false, &["no"])
                .status()
                .fields(&["spec.unschedulable"]),
            core_events,
            ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
            ResourceType::builtin("", "v1", "Secret", "secrets", true, &[]).fields(&["type"]),
            services,
            ResourceType::builtin("", "v1", "Namespace", "namespaces", false, &["ns"])
                .status()
                .fields(&["status.phase"])
                .verbs(&[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ]),
            ResourceType::builtin("apps", "v1", "Deployment", "deployments", true, &["deploy"])
                .status()
                .all()
                .scalable()
                .generation(G::SpecAndAnnotations),
            ResourceType::builtin("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"])
                .status()
                .all()
                .scalable()
                .generation(G::Spec),
            ResourceType::builtin("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"])
                .status()
                .all()
                .scalable()
                .generation(G::Spec),
            ResourceType::builtin("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"])
                .status()
                .all()
                .generation(G::Spec),
            ResourceType::builtin(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                true,
                &["hpa"],
            )
            .status()
            .generation(G::Spec),
            ResourceType::builtin(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
                &["pdb"],
            )
            .status()
            .generation(G::Spec),
            ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
            new_events,
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                &["crd", "crds"],
            )
            .status()
            .generation(G::Spec),
        ];
        Catalogue { types }
    }

    /// All types, built-ins first.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Add (or replace) a type.
    pub fn register(&mut self, rt: ResourceType) {
        self.types
            .retain(|t| !(t.group == rt.group && t.version == rt.version && t.plural == rt.plural));
        self.types.push(rt);
    }

    /// Remove every version of `plural` in `group`.
    pub fn unregister(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.custom && t.group == group && t.plural == plural));
    }

    /// The type served at `/{group}/{version}/{plural}`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Resolve an `apiVersion` (or bare group) plus a kind, plural, singular or short name.
    pub fn resolve(&self, api_version: &str, name: &str) -> Option<&ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.types.iter().find(|t| {
            t.group == group && (version.is_empty() || t.version == version) && t.is_named(name)
        })
    }

    /// The groups in the order the server lists them, core first.
    fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = Vec::new();
        for t in &self.types {
            if !t.group.is_empty() && !groups.contains(&t.group) {
                groups.push(t.group.clone());
            }
        }
        groups
    }

    fn versions_of(&self, group: &str) -> Vec<String> {
        let mut versions: Vec<String> = Vec::new();
        for t in self.types.iter().filter(|t| t.group == group) {
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        // Preferred version first: the stable one when there is one.
        versions.sort_by_key(|v| version_priority(v));
        versions
    }

    /// `GET /api`.
    pub fn api_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        })
    }

    /// `GET /apis/{group}`, if the group exists.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let versions = self.versions_of(group);
        let preferred = versions.first()?;
        let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
        Some(json!({
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": versions.iter().map(gv).collect::<Vec<_>>(),
            "preferredVersion": gv(preferred),
        }))
    }

    /// `GET /apis`.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .filter_map(|g| {
                let mut v = self.api_group(g)?;
                if let Value::Object(m) = &mut v {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                Some(v)
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`, if served.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let types: Vec<&ResourceType> = self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect();
        if types.is_empty() {
            return None;
        }
        let mut resources: Vec<Value> = types.iter().flat_map(|t| t.discovery_entries()).collect();
        resources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let mut list =
            json!({"kind": "APIResourceList", "groupVersion": gv, "resources": resources});
        if !group.is_empty() {
            list["apiVersion"] = json!("v1");
        }
        Some(list)
    }
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`); `apps` -> (`apps`, ``).
pub fn split_api_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None if api_version.starts_with('v')
            && api_version[1..].starts_with(|c: char| c.is_ascii_digit()) =>
        {
            (String::new(), api_version.to_string())
        }
        None => (api_version.to_string(), String::new()),
    }
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, i64, i64) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: i64 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (class, minor) = if tail.is_empty() {
        (0, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (1, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (2, n.parse().unwrap_or(0))
    } else {
        (3, 0)
    };
    (class, -major, -minor)
}
