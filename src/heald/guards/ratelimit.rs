//! Token buckets: the global and per-namespace limits on submissions that protect the API
//! server during alert storms, kept in the cluster so that they hold across replicas. The
//! bucket arithmetic takes the time as an argument, so it is tested without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::heald::config::RateLimits;
use crate::heald::guards::lease::micro_time;
use crate::heald::kube_io::{K8s, KubeIoError, lease_path};
use crate::kube_api::JSON;

/// Namespaces whose buckets are kept at most; full buckets are forgotten first, since a
/// new bucket starts full anyway.
const MAX_NAMESPACE_BUCKETS: usize = 10_000;

/// Which token bucket refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateScope {
    /// The bucket shared by all namespaces.
    Global,
    /// The bucket of this target namespace.
    Namespace(String),
}

/// A bucket's level as kept in the cluster: `tokens` at the wall-clock time `at`. Pure
/// arithmetic; the time is an argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Tokens left at `at`.
    pub tokens: f64,
    /// When `tokens` was computed.
    pub at: Timestamp,
}

impl Level {
    /// A full bucket.
    pub fn full(burst: u32, now: Timestamp) -> Level {
        Level {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// The level at `now`: refilled at `rate` per second up to `burst`. A clock behind `at`
    /// (another replica's) refills nothing.
    pub fn at(&self, now: Timestamp, rate: f64, burst: u32) -> Level {
        let micros = now.as_microsecond() - self.at.as_microsecond();
        if micros <= 0 {
            return *self;
        }
        #[allow(clippy::cast_precision_loss)]
        let elapsed = micros as f64 / 1e6;
        Level {
            tokens: (self.tokens + elapsed * rate).min(f64::from(burst)),
            at: now,
        }
    }

    /// Whether a token is there.
    pub fn has_token(&self) -> bool {
        self.tokens >= 1.0
    }
}

/// Which bucket: the global one or a target namespace's (`-`: cluster-scoped targets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// Shared by all namespaces.
    Global,
    /// One target namespace.
    Namespace(String),
}

impl BucketKey {
    /// The Lease that keeps the bucket: `heald-rate-global`, `heald-rate-ns-NAMESPACE`,
    /// `heald-rate-cluster` (targets without a namespace).
    pub fn lease_name(&self) -> String {
        match self {
            BucketKey::Global => "heald-rate-global".into(),
            BucketKey::Namespace(ns) if ns == "-" || ns.is_empty() => "heald-rate-cluster".into(),
            BucketKey::Namespace(ns) => format!("heald-rate-ns-{ns}"),
        }
    }

    fn scope(&self) -> RateScope {
        match self {
            BucketKey::Global => RateScope::Global,
            BucketKey::Namespace(ns) => RateScope::Namespace(ns.clone()),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            BucketKey::Global => "global",
            BucketKey::Namespace(_) => "namespace",
        }
    }

    fn rate_burst(&self, l: RateLimits) -> (f64, u32) {
        match self {
            BucketKey::Global => (l.global_rate, l.global_burst),
            BucketKey::Namespace(_) => (l.namespace_rate, l.namespace_burst),
        }
    }
}

/// The label on heald's rate-limit Leases (its value: `global` or `namespace`); the other
/// Leases of heald's (target holds) do not have it.
pub const RATE_BUCKET_LABEL: &str = "heal.dev/rate-bucket";
const TOKENS: &str = "heal.dev/tokens";
const TOKENS_AT: &str = "heal.dev/tokens-at";
/// Attempts at one bucket write before giving up (each conflict means another replica
/// took or gave a token meanwhile).
const ATTEMPTS: usize = 10;

/// A bucket Lease as last seen by this replica.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    /// `None`: the Lease does not exist (as far as this replica knows).
    resource_version: Option<String>,
}

/// The submission limits, a global bucket and one per target namespace, kept in the
/// cluster so that they hold across every heald replica: each bucket is a Lease in heald's
/// namespace whose annotations carry its level, changed only by a replace under its
/// `resourceVersion` (a 409 means another replica took or gave a token first: read again).
///
/// Deciding costs no API request: [`check`](SubmitLimiter::check) answers from the levels
/// this replica last saw. Since other replicas only take tokens (a refund gives back one
/// taken), the real level is at most the one seen refilled, so an empty bucket seen here is
/// empty in the cluster and the alert is refused before any request is spent on it.
/// [`take`](SubmitLimiter::take) writes; this replica's takes go one at a time.
///
/// During a storm, the alerts of one webhook would all pass that check at once (a bucket
/// not seen yet counts as full) and all spend requests on their observation before the
/// first takes a token. [`admit`](SubmitLimiter::admit) lets through at most as many
/// alerts per bucket as it has tokens seen; the others wait for them, and are refused
/// without a request once the tokens are spent.
#[derive(Debug)]
pub struct SubmitLimiter {
    limits: RateLimits,
    seen: Mutex<HashMap<String, Seen>>,
    turn: tokio::sync::Mutex<()>,
    /// Alerts admitted and not done yet, by bucket Lease.
    admitted: Mutex<HashMap<String, u32>>,
    done: tokio::sync::Notify,
}

/// The answer of [`SubmitLimiter::admit`].
#[derive(Debug)]
pub enum Admit<'a> {
    /// Go on (the admission ends when this is dropped).
    Go(Admission<'a>),
    /// A bucket is empty as seen: refuse without a request.
    Refused(RateScope),
    /// Still waiting for the alerts admitted before when `until` came.
    Later,
}

/// An alert admitted to decide and perhaps take a token; dropping it lets the next in.
#[derive(Debug)]
pub struct Admission<'a> {
    limiter: &'a SubmitLimiter,
    keys: [String; 2],
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        {
            let mut admitted = self.limiter.admitted();
            for k in &self.keys {
                if let Some(n) = admitted.get_mut(k) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        admitted.remove(k);
                    }
                }
            }
        }
        self.limiter.done.notify_waiters();
    }
}

impl SubmitLimiter {
    /// Buckets for these limits, none seen yet (a bucket never seen counts as full).
    pub fn new(limits: RateLimits) -> SubmitLimiter {
        SubmitLimiter {
            limits,
            seen: Mutex::new(HashMap::new()),
            turn: tokio::sync::Mutex::new(()),
            admitted: Mutex::new(HashMap::new()),
            done: tokio::sync::Notify::new(),
        }
    }

    fn admitted(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.admitted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit an alert for a target in `namespace` to be decided: at once while fewer alerts
    /// are admitted than both buckets have tokens seen; refused when a bucket is seen
    /// empty; otherwise after those admitted before are done (`Later` if that is after
    /// `until`).
    pub async fn admit(&self, namespace: &str, until: Option<Instant>) -> Admit<'_> {
        let keys = [
            BucketKey::Namespace(namespace.to_string()),
            BucketKey::Global,
        ];
        loop {
            let done = self.done.notified();
            let now = Timestamp::now();
            let levels = keys.clone().map(|k| self.level_seen(&k, now));
            for (k, level) in keys.iter().zip(&levels) {
                if !level.has_token() {
                    return Admit::Refused(k.scope());
                }
            }
            {
                let names = keys.clone().map(|k| k.lease_name());
                let mut admitted = self.admitted();
                let room = names.iter().zip(&levels).all(|(n, level)| {
                    let inside = f64::from(admitted.get(n).copied().unwrap_or(0));
                    level.tokens.floor() - inside >= 1.0
                });
                if room {
                    for n in &names {
                        *admitted.entry(n.clone()).or_insert(0) += 1;
                    }
                    return Admit::Go(Admission {
                        limiter: self,
                        keys: names,
                    });
                }
            }
            // Wait for one admitted before to be done, or for a refill.
            let poll = Instant::now() + Duration::from_millis(100);
            let wake = until.map_or(poll, |u| u.min(poll));
            tokio::select! {
                () = done => {}
                () = tokio::time::sleep_until(wake) => {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Admit::Later;
                    }
                }
            }
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        // A panic elsewhere cannot leave a level inconsistent: keep going.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn level_seen(&self, key: &BucketKey, now: Timestamp) -> Level {
        let (rate, burst) = key.rate_burst(self.limits);
        match self.seen().get(&key.lease_name()) {
            Some(s) => s.level.at(now, rate, burst),
            None => Level::full(burst, now),
        }
    }

    fn remember(&self, key: &BucketKey, level: Level, resource_version: Option<String>) {
        let mut seen = self.seen();
        if seen.len() >= MAX_NAMESPACE_BUCKETS {
            seen.clear();
        }
        seen.insert(
            key.lease_name(),
            Seen {
                level,
                resource_version,
            },
        );
    }

    /// Whether a run for a target in `namespace` could be submitted at `now`, from the
    /// levels last seen (no request).
    pub fn check(&self, namespace: &str, now: Timestamp) -> Result<(), RateScope> {
        for key in [
            BucketKey::Namespace(namespace.to_string()),
            BucketKey::Global,
        ] {
            if !self.level_seen(&key, now).has_token() {
                return Err(key.scope());
            }
        }
        Ok(())
    }

    /// Take one token from the namespace's bucket and one from the global bucket, or none:
    /// `Ok(Err(scope))` when a bucket is empty.
    pub async fn take(
        &self,
        k8s: &K8s,
        lease_ns: &str,
        holder: &str,
        namespace: &str,
    ) -> Result<Result<(), RateScope>, KubeIoError> {
        let _turn = self.turn.lock().await;
        if let Err(scope) = self.check(namespace, Timestamp::now()) {
            return Ok(Err(scope));
        }
        let ns = BucketKey::Namespace(namespace.to_string());
        if !self.adjust(k8s, lease_ns, holder, &ns, -1.0).await? {
            return Ok(Err(ns.scope()));
        }
        match self
            .adjust(k8s, lease_ns, holder, &BucketKey::Global, -1.0)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                self.give_back(k8s, lease_ns, holder, &ns).await;
                Ok(Err(RateScope::Global))
            }
            Err(e) => {
                self.give_back(k8s, lease_ns, holder, &ns).await;
                Err(e)
            }
        }
    }

    /// Give back the tokens taken for a submission that did not happen (another replica
    /// won the race, the engine was down). Best effort: a failure is logged, and costs the
    /// limit one token until the bucket refills.
    pub async fn refund(&self, k8s: &K8s, lease_ns: &str, holder: &str, namespace: &str) {
        let _turn = self.turn.lock().await;
        self.give_back(
            k8s,
            lease_ns,
            holder,
            &BucketKey::Namespace(namespace.into()),
        )
        .await;
        self.give_back(k8s, lease_ns, holder, &BucketKey::Global)
            .await;
    }

    async fn give_back(&self, k8s: &K8s, lease_ns: &str, holder: &str, key: &BucketKey) {
        if let Err(e) = self.adjust(k8s, lease_ns, holder, key, 1.0).await {
            tracing::warn!(lease = %key.lease_name(), error = %e, "could not give a submission token back");
        }
    }

    /// Add `delta` tokens to a bucket (`-1`: take one). A take from an empty bucket writes
    /// nothing and answers `false`.
    async fn adjust(
        &self,
        k8s: &K8s,
        lease_ns: &str,
        holder: &str,
        key: &BucketKey,
        delta: f64,
    ) -> Result<bool, KubeIoError> {
        let name = key.lease_name();
        let (rate, burst) = key.rate_burst(self.limits);
        for _ in 0..ATTEMPTS {
            let cached = self.seen().get(&name).cloned();
            // The level seen last, when this replica knows its version (a replace under it
            // fails if it moved); otherwise read it.
            let (seen, fresh) = match cached {
                Some(s) if s.resource_version.is_some() => (s, false),
                _ => {
                    let read = match k8s.get_opt(&lease_path(lease_ns, Some(&name))).await? {
                        Some(obj) => read_bucket(&obj, burst),
                        None => Seen {
                            level: Level::full(burst, Timestamp::now()),
                            resource_version: None,
                        },
                    };
                    (read, true)
                }
            };
            let now = Timestamp::now();
            let mut level = seen.level.at(now, rate, burst);
            if delta < 0.0 && !level.has_token() {
                // Empty as read now, or as seen before (it only refilled since): empty.
                if fresh {
                    self.remember(key, level, seen.resource_version);
                }
                return Ok(false);
            }
            level.tokens = (level.tokens + delta).min(f64::from(burst));
            let obj = bucket_object(
                lease_ns,
                key,
                holder,
                level,
                seen.resource_version.as_deref(),
            );
            let sent = match &seen.resource_version {
                None => {
                    k8s.send(
                        Method::POST,
                        &lease_path(lease_ns, None),
                        Some(JSON),
                        Some(&obj),
                    )
                    .await
                }
                Some(_) => {
                    k8s.send(
                        Method::PUT,
                        &lease_path(lease_ns, Some(&name)),
                        Some(JSON),
                        Some(&obj),
                    )
                    .await
                }
            };
            match sent {
                Ok(written) => {
                    let s = read_bucket(&written, burst);
                    self.remember(key, level, s.resource_version);
                    return Ok(true);
                }
                // Another replica wrote (or created) it first: read it and try again.
                Err(e) if e.is_conflict() => {
                    self.seen().remove(&name);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(KubeIoError::Conflict(format!("Lease {name}")))
    }
}

/// A bucket Lease's level; a Lease without a readable level counts as a full bucket.
fn read_bucket(obj: &Value, burst: u32) -> Seen {
    let ann = &obj["metadata"]["annotations"];
    let tokens = ann[TOKENS].as_str().and_then(|t| t.parse::<f64>().ok());
    let at = ann[TOKENS_AT]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let level = match (tokens, at) {
        (Some(tokens), Some(at)) if tokens.is_finite() => Level {
            tokens: tokens.clamp(-1.0, f64::from(burst)),
            at,
        },
        _ => Level::full(burst, Timestamp::now()),
    };
    Seen {
        level,
        resource_version: obj["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    }
}

/// The Lease that keeps a bucket's level (`kubectl get lease -l heal.dev/rate-bucket`
/// shows who took a token last and when).
fn bucket_object(
    lease_ns: &str,
    key: &BucketKey,
    holder: &str,
    level: Level,
    resource_version: Option<&str>,
) -> Value {
    let mut metadata = json!({
        "name": key.lease_name(),
        "namespace": lease_ns,
        "labels": {
            crate::heald::MANAGED_BY: "heald",
            RATE_BUCKET_LABEL: key.label(),
        },
        "annotations": {
            TOKENS: format!("{:.6}", level.tokens),
            TOKENS_AT: level.at.to_string(),
        },
    });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "renewTime": micro_time(level.at),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heald::kube_io::Bucket;

    fn limits() -> RateLimits {
        RateLimits {
            global_rate: 1.0,
            global_burst: 3,
            namespace_rate: 0.5,
            namespace_burst: 2,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_level_refills_at_its_rate_up_to_the_burst() {
        let mut l = Level::full(3, at(0));
        l.tokens = 0.0;
        assert!(!l.has_token());
        assert_eq!(l.at(at(1), 0.5, 3).tokens, 0.5);
        assert!(l.at(at(2), 0.5, 3).has_token());
        assert_eq!(l.at(at(100), 0.5, 3).tokens, 3.0);
        // Another replica's clock behind this one refills nothing.
        assert_eq!(l.at(at(-5), 0.5, 3).tokens, 0.0);
    }

    #[test]
    fn an_unseen_bucket_counts_as_full_and_a_seen_empty_one_refuses() {
        let l = SubmitLimiter::new(limits());
        let now = Timestamp::now();
        assert_eq!(l.check("shop", now), Ok(()));
        let empty = Level {
            tokens: 0.2,
            at: now,
        };
        l.remember(
            &BucketKey::Namespace("shop".into()),
            empty,
            Some("7".into()),
        );
        assert_eq!(
            l.check("shop", now),
            Err(RateScope::Namespace("shop".into()))
        );
        assert_eq!(l.check("web", now), Ok(()));
        l.remember(&BucketKey::Global, empty, Some("8".into()));
        assert_eq!(l.check("web", now), Err(RateScope::Global));
        // Refilled: 0.2 + 2 s x 0.5/s.
        let later = now.checked_add(jiff::SignedDuration::from_secs(2)).unwrap();
        assert_eq!(l.check("shop", later), Ok(()));
    }

    #[test]
    fn bucket_leases_are_named_and_read_back() {
        assert_eq!(BucketKey::Global.lease_name(), "heald-rate-global");
        assert_eq!(
            BucketKey::Namespace("shop".into()).lease_name(),
            "heald-rate-ns-shop"
        );
        assert_eq!(
            BucketKey::Namespace("-".into()).lease_name(),
            "heald-rate-cluster"
        );
        let level = Level {
            tokens: 2.5,
            at: at(0),
        };
        let obj = bucket_object("heal", &BucketKey::Global, "heald-0", level, Some("12"));
        assert_eq!(obj["metadata"]["labels"][RATE_BUCKET_LABEL], "global");
        let back = read_bucket(&obj, 5);
        assert_eq!(back.level, level);
        assert_eq!(back.resource_version.as_deref(), Some("12"));
        // Unreadable: full.
        let junk = json!({"metadata": {"annotations": {TOKENS: "NaN", TOKENS_AT: "x"}}});
        assert_eq!(read_bucket(&junk, 5).level.tokens, 5.0);
    }

    #[test]
    fn reservations_past_the_burst_wait_their_turn() {
        let now = Instant::now();
        let mut b = Bucket::new(10.0, 2, now);
        assert_eq!(b.reserve(now), Duration::ZERO);
        assert_eq!(b.reserve(now), Duration::ZERO);
        let w = b.reserve(now);
        assert!(
            w > Duration::from_millis(90) && w < Duration::from_millis(110),
            "{w:?}"
        );
    }
}
