//! The per-target guard state that every heald replica shares: one `coordination.k8s.io/v1`
//! Lease per policy and target, in heald's namespace. `spec.holderIdentity` names the run
//! holding the target (`leaseDurationSeconds` is the run's deadline, so a lock left by a
//! crashed heald expires on its own); annotations keep the last run, the last success and
//! the recent failure times. Updates carry `metadata.resourceVersion`, so when two replicas
//! race the API server answers 409 to one of them. Pure: reading and writing the document.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use http::Method;

use crate::heald::kube_io::{Cached, K8s, KubeIoError, lease_path};
use crate::kube_api::JSON;
use crate::plan::PlanTarget;

/// Annotation: the policy the Lease belongs to.
pub const POLICY: &str = "heal.dev/policy";
/// Annotation: the target, `kind/namespace/name` (`kind//name` when cluster-scoped).
pub const TARGET: &str = "heal.dev/target";
/// Annotation: the runs holding the target, JSON `[{"run": NAME, "until": RFC3339}]`.
pub const HOLDERS: &str = "heal.dev/holders";
/// Annotation: the name of the last run started on the target.
pub const LAST_RUN: &str = "heal.dev/last-run";
/// Annotation: when the last run started.
pub const LAST_RUN_AT: &str = "heal.dev/last-run-at";
/// Annotation: when a run last succeeded.
pub const LAST_SUCCESS_AT: &str = "heal.dev/last-success-at";
/// Annotation: comma-separated times of recent failures (the circuit breaker's window).
pub const FAILURES: &str = "heal.dev/failures";

/// Failure times kept at most, whatever the policy's budget.
const MAX_FAILURES_KEPT: usize = 50;

/// A Lease that is not the document heald writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// A field has the wrong type or an unreadable value.
    #[error("Lease {name}: {field}: {message}")]
    Field {
        /// The Lease's name.
        name: String,
        /// The field, e.g. `metadata.annotations["heal.dev/failures"]`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// One run holding a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run's name.
    pub run: String,
    /// When the hold lapses if nobody releases it (start + deadline).
    pub until: Timestamp,
    /// The intent recorded with the hold: what any replica needs to create the run when
    /// the replica that took the hold stopped before it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
}

/// The durable record of a run about to be created, written in the same Lease update that
/// takes the hold, before any other effect: from it any replica creates the run (or
/// releases the hold) when the replica that took the hold stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// When the hold was taken.
    pub at: Timestamp,
    /// The alert, as heald's own JSON of it (`alert::parse_alerts` reads it back).
    pub alert: Value,
}

/// Largest alert JSON recorded in an intent: a Lease's annotations may hold 256 KiB in
/// all. An alert larger than this gets a hold without an intent (see [`Intent`]).
pub const MAX_INTENT_JSON: usize = 32 * 1024;

/// How a run ended, as the guards count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// It succeeded: the cooldown starts, the failure count clears.
    Success,
    /// It failed or ran out of time: one more failure in the window.
    Failure,
    /// It never ran (the submission failed): the hold is dropped and the run forgotten.
    Abandoned,
    /// It existed already (an earlier delivery created it): only the hold is dropped.
    Existing,
    /// heald cancelled it because its alert resolved: the hold is dropped, and neither a
    /// success (no cooldown) nor a failure (no step towards the circuit) is counted.
    Cancelled,
    /// A human (or the approval timeout) rejected it: nothing was changed, so like a
    /// cancellation the hold is dropped and neither a success nor a failure is counted.
    Rejected,
}

/// The guard state of one policy and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The Lease's name.
    pub name: String,
    /// `metadata.resourceVersion`, `None` for a Lease not yet created.
    pub resource_version: Option<String>,
    /// The policy.
    pub policy: String,
    /// The target, as written in [`TARGET`].
    pub target: String,
    /// Runs holding the target (expired ones included until the next write).
    pub holders: Vec<Holder>,
    /// The last run started.
    pub last_run: Option<String>,
    /// When it started.
    pub last_run_at: Option<Timestamp>,
    /// When a run last succeeded.
    pub last_success_at: Option<Timestamp>,
    /// Recent failure times, oldest first.
    pub failures: Vec<Timestamp>,
}

/// The Lease name for a policy and target: readable prefix, hash of the whole identity.
/// The Lease that counts a policy's unfinished runs (`guards.maxInFlight`): a Lease like a
/// target's, for the pseudo-target `policy//NAME`, whose holders are the runs in flight.
pub fn in_flight_lease_name(policy: &str) -> String {
    lease_name(policy, &in_flight_target(policy))
}

/// The pseudo-target of a policy's in-flight Lease.
pub fn in_flight_target(policy: &str) -> PlanTarget {
    PlanTarget {
        kind: "policy".into(),
        namespace: String::new(),
        name: policy.into(),
    }
}

/// Drop `run` from the holders of Lease `name` (its in-flight slot); nothing is written when
/// it holds none.
pub async fn drop_holder(
    k8s: &K8s,
    namespace: &str,
    name: &str,
    run: &str,
) -> Result<(), KubeIoError> {
    let now = Timestamp::now();
    k8s.update_lease(namespace, name, |cur| {
        let mut l = cur?;
        let before = l.holders.len();
        l.holders.retain(|h| h.run != run && h.until > now);
        (l.holders.len() != before).then_some(l)
    })
    .await
    .map(|_| ())
}

pub fn lease_name(policy: &str, target: &PlanTarget) -> String {
    let mut h = Sha256::new();
    h.update(policy.as_bytes());
    h.update([0]);
    h.update(target_key(target).as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let mut prefix: String = policy.chars().take(40).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    format!("heal-{prefix}-{hex}")
}

/// The target as written in the Lease: `kind/namespace/name`.
pub fn target_key(target: &PlanTarget) -> String {
    format!("{}/{}/{}", target.kind, target.namespace, target.name)
}

/// Kubernetes `MicroTime`: RFC 3339 in UTC with exactly six fractional digits.
pub fn micro_time(t: Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_microsecond()
    )
}

fn seconds(d: Duration) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4))
}

impl LeaseState {
    /// The state of a target nobody has acted on yet.
    pub fn new(name: &str, policy: &str, target: &PlanTarget) -> LeaseState {
        LeaseState {
            name: name.to_string(),
            resource_version: None,
            policy: policy.to_string(),
            target: target_key(target),
            holders: Vec::new(),
            last_run: None,
            last_run_at: None,
            last_success_at: None,
            failures: Vec::new(),
        }
    }

    /// Read a Lease object.
    pub fn from_object(obj: &Value) -> Result<LeaseState, LeaseError> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let err = |field: &str, message: String| LeaseError::Field {
            name: name.clone(),
            field: field.to_string(),
            message,
        };
        let empty = Map::new();
        let ann = obj
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let get = |k: &str| ann.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let time = |k: &str| -> Result<Option<Timestamp>, LeaseError> {
            get(k)
                .map(|s| {
                    s.parse::<Timestamp>().map_err(|e| {
                        err(
                            &format!("metadata.annotations[{k:?}]"),
                            format!("{s:?}: {e}"),
                        )
                    })
                })
                .transpose()
        };
        let holders = match get(HOLDERS) {
            Some(text) => serde_json::from_str::<Vec<Holder>>(text)
                .map_err(|e| err(&format!("metadata.annotations[{HOLDERS:?}]"), e.to_string()))?,
            None => holder_from_spec(obj)
                .map_err(|m| err("spec", m))?
                .into_iter()
                .collect(),
        };
        let failures = match get(FAILURES) {
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Timestamp>().map_err(|e| {
                        err(
                            &format!("metadata.annotations[{FAILURES:?}]"),
                            format!("{s:?}: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        Ok(LeaseState {
            resource_version: obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            policy: get(POLICY).unwrap_or_default().to_string(),
            target: get(TARGET).unwrap_or_default().to_string(),
            holders,
            last_run: get(LAST_RUN).map(str::to_string),
            last_run_at: time(LAST_RUN_AT)?,
            last_success_at: time(LAST_SUCCESS_AT)?,
            failures,
            name,
        })
    }

    /// The Lease object to create or replace (with `resourceVersion` when it exists, so a
    /// concurrent update makes the API server answer 409).
    pub fn to_object(&self, namespace: &str) -> Value {
        let mut ann = Map::new();
        let mut put = |k: &str, v: String| {
            ann.insert(k.to_string(), Value::String(v));
        };
        put(POLICY, self.policy.clone());
        put(TARGET, self.target.clone());
        put(
            HOLDERS,
            serde_json::to_string(&self.holders).unwrap_or_else(|_| "[]".into()),
        );
        if let Some(r) = &self.last_run {
            put(LAST_RUN, r.clone());
        }
        if let Some(t) = self.last_run_at {
            put(LAST_RUN_AT, t.to_string());
        }
        if let Some(t) = self.last_success_at {
            put(LAST_SUCCESS_AT, t.to_string());
        }
        if !self.failures.is_empty() {
            put(
                FAILURES,
                self.failures
                    .iter()
                    .map(Timestamp::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let mut metadata = json!({
            "name": self.name,
            "namespace": namespace,
            "labels": {
                crate::heald::MANAGED_BY: "heald",
                "heal.dev/policy": crate::render::label_value(&self.policy),
            },
            "annotations": ann,
        });
        if let Some(rv) = &self.resource_version {
            metadata["resourceVersion"] = json!(rv);
        }
        let mut spec = Map::new();
        // The newest holder is the one `kubectl get lease` shows.
        if let Some(h) = self.holders.iter().max_by_key(|h| h.until) {
            let start = self
                .last_run_at
                .filter(|_| self.last_run.as_deref() == Some(h.run.as_str()))
                .unwrap_or(h.until);
            let secs = (h.until.as_second() - start.as_second()).clamp(1, i64::from(i32::MAX));
            spec.insert("holderIdentity".into(), json!(h.run));
            spec.insert("leaseDurationSeconds".into(), json!(secs));
            spec.insert("acquireTime".into(), json!(micro_time(start)));
            spec.insert("renewTime".into(), json!(micro_time(start)));
        }
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        })
    }

    /// Holders whose hold has not lapsed at `now`.
    pub fn active_holders(&self, now: Timestamp) -> impl Iterator<Item = &Holder> {
        self.holders.iter().filter(move |h| h.until > now)
    }

    /// The intent recorded with `run`'s active hold, if any.
    pub fn intent(&self, run: &str, now: Timestamp) -> Option<&Intent> {
        self.active_holders(now)
            .find(|h| h.run == run)
            .and_then(|h| h.intent.as_ref())
    }

    /// Whether `run` holds the target at `now`.
    pub fn holds(&self, run: &str, now: Timestamp) -> bool {
        self.active_holders(now).any(|h| h.run == run)
    }

    /// Failures within `window` before `now`.
    pub fn failures_within(&self, now: Timestamp, window: Duration) -> usize {
        let since = now - seconds(window);
        self.failures.iter().filter(|t| **t > since).count()
    }

    /// Take the target for `run` until `now + hold`, dropping lapsed holds.
    pub fn acquire(&mut self, run: &str, now: Timestamp, hold: Duration) {
        self.acquire_with_intent(run, now, hold, None);
    }

    /// Take the target for `run` and record the intent to create it: the alert, unless its
    /// JSON is longer than [`MAX_INTENT_JSON`].
    pub fn acquire_with_intent(
        &mut self,
        run: &str,
        now: Timestamp,
        hold: Duration,
        alert: Option<Value>,
    ) {
        let intent = alert
            .filter(|a| a.to_string().len() <= MAX_INTENT_JSON)
            .map(|alert| Intent { at: now, alert });
        self.holders.retain(|h| h.until > now && h.run != run);
        self.holders.push(Holder {
            run: run.to_string(),
            until: now + seconds(hold),
            intent,
        });
        self.last_run = Some(run.to_string());
        self.last_run_at = Some(now);
    }

    /// Drop `run`'s hold and count how it ended. `window` bounds the failures kept.
    /// Returns whether the run held the target (false: released before, or expired and
    /// taken over).
    pub fn release(&mut self, run: &str, end: RunEnd, now: Timestamp, window: Duration) -> bool {
        let before = self.holders.len();
        self.holders.retain(|h| h.run != run && h.until > now);
        let held = before != self.holders.len();
        match end {
            RunEnd::Success => {
                self.last_success_at = Some(now);
                self.failures.clear();
            }
            RunEnd::Failure => {
                let since = now - seconds(window);
                self.failures.retain(|t| *t > since);
                self.failures.push(now);
                let excess = self.failures.len().saturating_sub(MAX_FAILURES_KEPT);
                self.failures.drain(..excess);
            }
            RunEnd::Abandoned => {
                if self.last_run.as_deref() == Some(run) {
                    self.last_run = None;
                    self.last_run_at = None;
                }
            }
            RunEnd::Existing | RunEnd::Cancelled | RunEnd::Rejected => {}
        }
        held
    }
}

/// A Lease written by something else than heald: its `holderIdentity` and duration.
fn holder_from_spec(obj: &Value) -> Result<Option<Holder>, String> {
    let Some(run) = obj
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let start = obj
        .pointer("/spec/renewTime")
        .or_else(|| obj.pointer("/spec/acquireTime"))
        .and_then(Value::as_str)
        .map(|s| {
            s.parse::<Timestamp>()
                .map_err(|e| format!("renewTime {s:?}: {e}"))
        })
        .transpose()?
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let secs = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Ok(Some(Holder {
        run: run.to_string(),
        until: start + SignedDuration::from_secs(secs),
        intent: None,
    }))
}

/// Reading and writing target Leases through heald's client.
pub trait LeaseIo {
    /// Read a Lease; `None` when it does not exist.
    fn read_lease(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Option<LeaseState>, KubeIoError>> + Send;
    /// Write a Lease: create it when it has no `resourceVersion`, else replace it with that
    /// version as a precondition. 409 (created or changed by another replica first) is
    /// [`KubeIoError::Conflict`]. Returns the state as written.
    fn write_lease(
        &self,
        namespace: &str,
        lease: &LeaseState,
    ) -> impl std::future::Future<Output = Result<LeaseState, KubeIoError>> + Send;
    /// Apply `change` to a Lease, re-reading and retrying when another replica wrote it
    /// first. `change` gets the current state (`None`: no Lease yet) and returns the state
    /// to write, or `None` to write nothing.
    fn update_lease<F>(
        &self,
        namespace: &str,
        name: &str,
        change: F,
    ) -> impl std::future::Future<Output = Result<Option<LeaseState>, KubeIoError>> + Send
    where
        F: FnMut(Option<LeaseState>) -> Option<LeaseState> + Send;
}

impl From<LeaseError> for KubeIoError {
    fn from(e: LeaseError) -> KubeIoError {
        KubeIoError::Unreadable(e.to_string())
    }
}

impl LeaseIo for K8s {
    /// Read a Lease; `None` when it does not exist.
    async fn read_lease(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<LeaseState>, KubeIoError> {
        match self.leases().get(name) {
            Cached::Present(obj) => return Ok(Some(LeaseState::from_object(&obj)?)),
            Cached::Absent => return Ok(None),
            Cached::Unknown => {}
        }
        match self.get_opt(&lease_path(namespace, Some(name))).await? {
            Some(obj) => {
                self.leases().put(&obj);
                Ok(Some(LeaseState::from_object(&obj)?))
            }
            None => {
                self.leases().remove(name);
                Ok(None)
            }
        }
    }

    /// Write a Lease: create it when it has no `resourceVersion`, else replace it with that
    /// version as a precondition. 409 (created or changed by another replica first) is
    /// [`KubeIoError::Conflict`]. Returns the state as written.
    async fn write_lease(
        &self,
        namespace: &str,
        lease: &LeaseState,
    ) -> Result<LeaseState, KubeIoError> {
        let obj = lease.to_object(namespace);
        let result = match &lease.resource_version {
            None => {
                self.send(
                    Method::POST,
                    &lease_path(namespace, None),
                    Some(JSON),
                    Some(&obj),
                )
                .await
            }
            Some(_) => {
                let path = lease_path(namespace, Some(&lease.name));
                let sent = self
                    .send_tracked(Method::PUT, &path, Some(JSON), Some(&obj))
                    .await;
                match sent.result {
                    // The answer to the replace was lost and its retry met the version it
                    // wrote: when the Lease holds what was written, it was written.
                    Err(e) if e.is_conflict() && sent.unanswered => {
                        self.leases().invalidate(&lease.name);
                        match self.read_lease(namespace, &lease.name).await? {
                            Some(now) if same_state(&now, lease) => {
                                tracing::info!(lease = %lease.name, "the answer to the Lease update was lost; the Lease holds what was written");
                                return Ok(now);
                            }
                            _ => Err(e),
                        }
                    }
                    result => result,
                }
            }
        };
        match result {
            Ok(v) => {
                self.leases().put(&v);
                Ok(LeaseState::from_object(&v)?)
            }
            Err(e) if e.is_conflict() => {
                self.leases().invalidate(&lease.name);
                Err(KubeIoError::Conflict(format!("Lease {}", lease.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Apply `change` to a Lease, re-reading and retrying when another replica wrote it
    /// first. `change` gets the current state (`None`: no Lease yet) and returns the state
    /// to write, or `None` to write nothing.
    async fn update_lease<F>(
        &self,
        namespace: &str,
        name: &str,
        mut change: F,
    ) -> Result<Option<LeaseState>, KubeIoError>
    where
        F: FnMut(Option<LeaseState>) -> Option<LeaseState> + Send,
    {
        let mut last = None;
        for _ in 0..5 {
            let current = self.read_lease(namespace, name).await?;
            let Some(next) = change(current) else {
                return Ok(None);
            };
            match self.write_lease(namespace, &next).await {
                Ok(written) => return Ok(Some(written)),
                Err(KubeIoError::Conflict(what)) => last = Some(what),
                Err(e) => return Err(e),
            }
        }
        Err(KubeIoError::Conflict(
            last.unwrap_or_else(|| format!("Lease {name}")),
        ))
    }
}

/// Whether two states of a Lease are the same, whatever their `resourceVersion`.
fn same_state(a: &LeaseState, b: &LeaseState) -> bool {
    let strip = |s: &LeaseState| LeaseState {
        resource_version: None,
        ..s.clone()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> PlanTarget {
        PlanTarget {
            kind: "deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn lease_names_are_stable_valid_and_distinct_per_target() {
        let a = lease_name("restart-web", &target());
        assert_eq!(a, lease_name("restart-web", &target()));
        assert!(a.starts_with("heal-restart-web-"), "{a}");
        assert!(a.len() <= 63);
        let mut other = target();
        other.name = "api".into();
        assert_ne!(a, lease_name("restart-web", &other));
        assert_ne!(a, lease_name("scale-web", &target()));
    }

    #[test]
    fn a_lease_round_trips_through_its_object() {
        let mut s = LeaseState::new("heal-x-0011223344", "x", &target());
        s.acquire(
            "heal-x-run1",
            t("2026-01-01T00:00:00Z"),
            Duration::from_secs(600),
        );
        s.release(
            "heal-x-run0",
            RunEnd::Failure,
            t("2026-01-01T00:00:01Z"),
            Duration::from_secs(3600),
        );
        s.resource_version = Some("42".into());
        let obj = s.to_object("heal-system");
        assert_eq!(obj["spec"]["holderIdentity"], "heal-x-run1");
        assert_eq!(obj["spec"]["leaseDurationSeconds"], 600);
        assert_eq!(obj["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(obj["metadata"]["resourceVersion"], "42");
        assert_eq!(LeaseState::from_object(&obj).unwrap(), s);
    }

    #[test]
    fn holds_lapse_after_the_deadline_and_failures_leave_the_window() {
        let mut s = LeaseState::new("l", "p", &target());
        let t0 = t("2026-01-01T00:00:00Z");
        s.acquire("r1", t0, Duration::from_secs(60));
        assert_eq!(s.active_holders(t0).count(), 1);
        assert_eq!(s.active_holders(t("2026-01-01T00:01:01Z")).count(), 0);
        assert!(s.release("r1", RunEnd::Failure, t0, Duration::from_secs(600)));
        assert!(!s.release(
            "r1",
            RunEnd::Failure,
            t("2026-01-01T00:05:00Z"),
            Duration::from_secs(600)
        ));
        assert_eq!(
            s.failures_within(t("2026-01-01T00:06:00Z"), Duration::from_secs(600)),
            2
        );
        assert_eq!(
            s.failures_within(t("2026-01-01T00:12:00Z"), Duration::from_secs(600)),
            1
        );
        s.release(
            "r2",
            RunEnd::Success,
            t("2026-01-01T00:13:00Z"),
            Duration::from_secs(600),
        );
        assert!(s.failures.is_empty());
        assert_eq!(s.last_success_at, Some(t("2026-01-01T00:13:00Z")));
    }

    #[test]
    fn a_foreign_lease_is_read_from_its_spec_and_bad_annotations_are_named() {
        let obj = json!({
            "metadata": {"name": "l", "resourceVersion": "7"},
            "spec": {"holderIdentity": "someone", "leaseDurationSeconds": 30,
                     "renewTime": "2026-01-01T00:00:00.000000Z"}
        });
        let s = LeaseState::from_object(&obj).unwrap();
        assert_eq!(s.holders[0].until, t("2026-01-01T00:00:30Z"));
        let bad = json!({"metadata": {"name": "l", "annotations": {FAILURES: "yesterday"}}});
        let e = LeaseState::from_object(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("Lease l: metadata.annotations[\"heal.dev/failures\"]"),
            "{e}"
        );
    }

    #[test]
    fn the_intent_is_written_with_the_hold_and_read_back_and_dropped_with_it() {
        let mut l = LeaseState::new("heal-p-1", "p", &target());
        let alert = json!({"labels": {"alertname": "WebDown"}, "startsAt": "2026-01-01T00:00:00Z"});
        l.acquire_with_intent(
            "r1",
            t("2026-01-01T12:00:00Z"),
            Duration::from_secs(600),
            Some(alert.clone()),
        );
        let back = LeaseState::from_object(&l.to_object("heal")).unwrap();
        let intent = back.intent("r1", t("2026-01-01T12:00:01Z")).unwrap();
        assert_eq!(intent.alert, alert);
        assert_eq!(intent.at, t("2026-01-01T12:00:00Z"));
        assert!(
            back.intent("r1", t("2026-01-01T12:10:01Z")).is_none(),
            "lapsed with the hold"
        );
        let mut back = back;
        back.release(
            "r1",
            RunEnd::Abandoned,
            t("2026-01-01T12:00:02Z"),
            Duration::from_secs(60),
        );
        assert!(back.intent("r1", t("2026-01-01T12:00:03Z")).is_none());
        // A hold written by an older heald (no intent field) still reads.
        let old = json!({"metadata": {"name": "x", "annotations": {
            HOLDERS: "[{\"run\":\"r0\",\"until\":\"2026-01-01T13:00:00Z\"}]"}}});
        let old = LeaseState::from_object(&old).unwrap();
        assert!(old.holds("r0", t("2026-01-01T12:00:00Z")));
        assert!(old.intent("r0", t("2026-01-01T12:00:00Z")).is_none());
    }

    #[test]
    fn an_alert_too_large_for_the_lease_gets_a_hold_without_intent() {
        let mut l = LeaseState::new("heal-p-1", "p", &target());
        let big = json!({"annotations": {"description": "x".repeat(MAX_INTENT_JSON)}});
        l.acquire_with_intent(
            "r1",
            t("2026-01-01T12:00:00Z"),
            Duration::from_secs(600),
            Some(big),
        );
        assert!(l.holds("r1", t("2026-01-01T12:00:01Z")));
        assert!(l.intent("r1", t("2026-01-01T12:00:01Z")).is_none());
    }
}
