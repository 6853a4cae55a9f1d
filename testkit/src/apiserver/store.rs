//! The server's state: objects keyed like etcd keys, the global resourceVersion counter,
//! the watch history, the request log, injected faults and controller settings.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::faults::{ChaosState, Fault};
use super::log::Recorded;
use super::resources::{Catalogue, ResourceType};

/// Where an object is stored: (group, storage version, plural, namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// API group (empty for core).
    pub group: String,
    /// Storage version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl ObjKey {
    /// The key of `name` in `namespace` for a resource type.
    pub fn new(rt: &ResourceType, namespace: &str, name: &str) -> ObjKey {
        let (group, version, plural) = rt.storage();
        ObjKey {
            group,
            version,
            plural,
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// Whether the key belongs to the store of `rt` (and to `namespace` when given).
    pub fn in_collection(&self, rt: &ResourceType, namespace: Option<&str>) -> bool {
        let (group, version, plural) = rt.storage();
        self.group == group
            && self.version == version
            && self.plural == plural
            && namespace.is_none_or(|ns| self.namespace == ns)
    }
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watches.
#[derive(Debug, Clone)]
pub struct HistEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub etype: EventType,
    /// Which object.
    pub key: ObjKey,
    /// The object after the change (for deletes: its last state, with the delete's rv).
    pub object: Value,
    /// The object before the change.
    pub old: Option<Value>,
}

/// How the simulated deployment/statefulset/daemonset controller catches up after a spec
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// Status catches up right after the write (the write's own answer still shows the old
    /// status, as with a real controller).
    Immediate,
    /// Status catches up after this many GETs of the object (or of its scale/status).
    AfterReads(usize),
    /// Status catches up after this long.
    AfterDelay(Duration),
    /// Status never catches up; Progressing turns False with ProgressDeadlineExceeded.
    Stuck,
}

/// What the simulated ReplicaSet/StatefulSet controller does when one of its pods goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodReplacement {
    /// Nothing.
    None,
    /// A new pod with the same owner and a new generated name (ReplicaSet behaviour).
    NewName,
    /// A new pod with the same name and a new uid (StatefulSet behaviour).
    SameName,
}

/// How the simulated kubelet finishes a graceful pod deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodTermination {
    /// The pod is gone right after its deletionTimestamp is set.
    Immediate,
    /// The pod is gone this long after.
    AfterDelay(Duration),
    /// The pod stays terminating (until the test removes it).
    Never,
}

/// Per-test switches of the simulated controllers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default rollout behaviour.
    pub rollout: Rollout,
    /// Rollout behaviour per (plural, namespace, name).
    pub rollout_overrides: HashMap<(String, String, String), Rollout>,
    /// Pod replacement.
    pub pod_replacement: PodReplacement,
    /// Whether replacement pods start Running and Ready (else Pending).
    pub replacement_ready: bool,
    /// Graceful pod deletion.
    pub pod_termination: PodTermination,
    /// Keep PodDisruptionBudget status up to date (disruption controller).
    pub disruption_controller: bool,
    /// Delete dependents of deleted owners (garbage collector).
    pub garbage_collector: bool,
    /// The user a SelfSubjectReview names; `None`: the server does not serve the review
    /// (404), as one that refuses it.
    pub self_subject: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            rollout: Rollout::Immediate,
            rollout_overrides: HashMap::new(),
            pod_replacement: PodReplacement::None,
            replacement_ready: true,
            pod_termination: PodTermination::Immediate,
            disruption_controller: true,
            garbage_collector: true,
            self_subject: None,
        }
    }
}

/// A pending status catch-up of the rollout controller.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// GETs still to come before the status catches up.
    pub reads_left: usize,
}

/// Everything the server knows.
#[derive(Debug)]
pub struct State {
    /// Served resource types.
    pub catalogue: Catalogue,
    /// Objects, as stored (storage apiVersion and kind).
    pub objects: BTreeMap<ObjKey, Value>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// Changes since `compacted`.
    pub history: Vec<HistEvent>,
    /// Watches from a resourceVersion at or below this get 410 Expired.
    pub compacted: u64,
    /// Request log.
    pub log: Vec<Recorded>,
    /// Fault rules, first match wins.
    pub faults: VecDeque<Fault>,
    /// Random failures.
    pub chaos: Option<ChaosState>,
    /// Controller switches.
    pub settings: Settings,
    /// Rollouts waiting for reads.
    pub pending: HashMap<ObjKey, Pending>,
    /// Wakes watchers when `rv` moves.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// Runtime for delayed controller work; absent until the server runs.
    pub runtime: Option<tokio::runtime::Handle>,
    /// Counter for generated names.
    pub name_seq: u64,
    /// Delayed controller work, run by the server's controller loop.
    pub timers: Vec<(std::time::Instant, super::controllers::Job)>,
    /// Field managers of each object (server-side apply), see [`super::fields`].
    pub managed: HashMap<ObjKey, super::fields::Managed>,
}

impl State {
    /// An empty cluster with the built-in types and the usual namespaces.
    pub fn new() -> State {
        let (changes, _) = tokio::sync::watch::channel(0);
        let mut s = State {
            catalogue: Catalogue::builtin(),
            objects: BTreeMap::new(),
            rv: 1000,
            history: Vec::new(),
            compacted: 0,
            log: Vec::new(),
            faults: VecDeque::new(),
            chaos: None,
            settings: Settings::default(),
            pending: HashMap::new(),
            changes,
            runtime: None,
            name_seq: 0,
            timers: Vec::new(),
            managed: HashMap::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.ensure_namespace(ns);
        }
        s.compacted = s.rv;
        s.history.clear();
        s
    }

    /// The resource type of a stored key (the one that owns the storage).
    pub fn type_of_key(&self, key: &ObjKey) -> Option<ResourceType> {
        self.catalogue
            .types()
            .iter()
            .find(|t| {
                t.shared_storage.is_none()
                    && t.group == key.group
                    && t.storage_version == key.version
                    && t.plural == key.plural
            })
            .cloned()
    }

    /// The built-in or registered type for `apiVersion` + kind/plural/short name.
    pub fn resolve(&self, api_version: &str, name: &str) -> Option<ResourceType> {
        self.catalogue.resolve(api_version, name).cloned()
    }

    /// Create the namespace if it does not exist (test data may name any namespace).
    pub fn ensure_namespace(&mut self, ns: &str) {
        if ns.is_empty() {
            return;
        }
        let Some(rt) = self.resolve("v1", "namespaces") else {
            return;
        };
        let key = ObjKey::new(&rt, "", ns);
        if self.objects.contains_key(&key) {
            return;
        }
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now(),
                "labels": {"kubernetes.io/metadata.name": ns},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        self.put(key, obj);
    }

    /// Store an object under a fresh resourceVersion and record the change.
    pub fn put(&mut self, key: ObjKey, mut obj: Value) -> Value {
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        let old = self.objects.insert(key.clone(), obj.clone());
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.history.push(HistEvent {
            rv: self.rv,
            etype,
            key,
            object: obj.clone(),
            old,
        });
        self.changes.send_replace(self.rv);
        obj
    }

    /// Remove an object and record the deletion.
    pub fn take(&mut self, key: &ObjKey) -> Option<Value> {
        let old = self.objects.remove(key)?;
        self.managed.remove(key);
        self.rv += 1;
        let mut last = old.clone();
        set_meta(&mut last, "resourceVersion", json!(self.rv.to_string()));
        self.history.push(HistEvent {
            rv: self.rv,
            etype: EventType::Deleted,
            key: key.clone(),
            object: last,
            old: Some(old.clone()),
        });
        self.pending.remove(key);
        self.changes.send_replace(self.rv);
        Some(old)
    }

    /// Forget the watch history: later watches from an older resourceVersion get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// A fresh 5-character suffix in the alphabet Kubernetes uses for generated names.
    pub fn random_suffix(&mut self) -> String {
        self.name_seq += 1;
        suffix_from(&format!("{}-{}", uuid::Uuid::new_v4(), self.name_seq), 5)
    }

    /// Objects of one collection, in key order (namespace, then name).
    pub fn collection(&self, rt: &ResourceType, namespace: Option<&str>) -> Vec<(ObjKey, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.in_collection(rt, namespace))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

/// Set `metadata.<field>`, creating `metadata` when needed.
pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"][field] = value;
}

/// Remove `metadata.<field>`.
pub fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(field);
    }
}

/// `metadata.<field>` as a string ("" when absent).
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The current time as the API server writes `metav1.Time` (seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A time `secs` seconds from now, in the same format.
pub fn now_plus(secs: i64) -> String {
    let ts = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A deterministic suffix of `len` characters from the alphabet of generated names
/// (`bcdfghjklmnpqrstvwxz2456789`), derived from `seed`.
pub fn suffix_from(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(len);
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    for _ in 0..len {
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        out.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
    }
    out
}

/// Field renames between core/v1 and events.k8s.io/v1 Events.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Convert a stored object to what `rt` serves (apiVersion, and the events.k8s.io view of
/// core events).
pub fn to_served(rt: &ResourceType, stored: &Value) -> Value {
    let mut obj = stored.clone();
    if rt.shared_storage.is_some()
        && rt.group == "events.k8s.io"
        && let Some(m) = obj.as_object_mut()
    {
        for (core, new) in EVENT_FIELDS {
            if let Some(v) = m.remove(*core)
                && !v.is_null()
                && v != json!("")
            {
                m.insert((*new).to_string(), v);
            }
        }
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    obj
}

/// Convert an object as `rt` serves it to its stored form.
pub fn to_stored(rt: &ResourceType, served: &Value) -> Value {
    let mut obj = served.clone();
    if rt.shared_storage.is_some() && rt.group == "events.k8s.io" {
        if let Some(m) = obj.as_object_mut() {
            for (core, new) in EVENT_FIELDS {
                if let Some(v) = m.remove(*new) {
                    m.insert((*core).to_string(), v);
                }
            }
            m.insert("apiVersion".into(), json!("v1"));
        }
        return obj;
    }
    if let Some(m) = obj.as_object_mut() {
        let api_version = if rt.group.is_empty() {
            rt.storage_version.clone()
        } else {
            format!("{}/{}", rt.group, rt.storage_version)
        };
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(rt.kind));
    }
    obj
}
