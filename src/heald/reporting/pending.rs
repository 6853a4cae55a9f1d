//! Alertmanager work a finished run still owes: the success silence that replaces the
//! in-progress one, or the expiry of the in-progress silence after a failure. It is
//! recorded on the run object itself, in the same patch that claims the run's end (label
//! `heal.dev/silence: pending`, annotation `heal.dev/silence-pending` with the work, the
//! attempts made and when the next one is due), so neither an Alertmanager outage nor a
//! heald restart loses it: any replica's tracker finds it by label and tries again, with
//! exponential backoff, until it is delivered or pointless (the silence would already have
//! ended). Each retry first bumps the attempt count under the run's resourceVersion, so of
//! two replicas only one sends it. Pure: the document and its patches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::heald::SILENCE_ANNOTATION;

/// Label on a run that still owes Alertmanager a delivery (value [`PENDING`]).
pub const PENDING_LABEL: &str = "heal.dev/silence";
/// Value of [`PENDING_LABEL`].
pub const PENDING: &str = "pending";
/// Annotation holding the [`PendingSilence`] as JSON.
pub const PENDING_ANNOTATION: &str = "heal.dev/silence-pending";

/// First wait before a retry.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What Alertmanager must be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum SilenceWork {
    /// Create this silence (a `postableSilence`; with an `id`, replacing that silence, and
    /// created anew when Alertmanager no longer has it).
    Create {
        /// The silence. `startsAt` is set to the time of each attempt.
        silence: Value,
    },
    /// Expire the silence with this id.
    Expire {
        /// The silence's id.
        id: String,
    },
}

/// A delivery to Alertmanager that has not happened yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSilence {
    /// What to deliver.
    #[serde(flatten)]
    pub work: SilenceWork,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_at: Timestamp,
    /// After this the delivery is pointless (the silence would have ended).
    pub until: Timestamp,
}

/// A pending-silence annotation heald cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    /// The annotation is not the JSON heald writes.
    #[error("annotation {PENDING_ANNOTATION:?}: {0}")]
    Parse(String),
}

/// Passes between two looks for pending deliveries when this replica knows of none (they
/// may have been left by another replica, or by an earlier life of this one).
pub const SWEEP_EVERY: u64 = 12;

/// When the tracker looks for pending deliveries: on every pass while this replica knows
/// that one is owed, else on every [`SWEEP_EVERY`]th pass (the first one included).
#[derive(Debug, Default)]
pub struct Sweeps {
    passes: AtomicU64,
    noted: AtomicU64,
    cleared_through: AtomicU64,
}

impl Sweeps {
    /// A delivery failed and was left pending: look again on the next pass.
    pub fn note_pending(&self) {
        self.noted.fetch_add(1, Ordering::SeqCst);
    }

    /// Count a tracking pass; `Some(token)` when it should look for pending deliveries
    /// (hand the token back to [`swept`](Sweeps::swept)).
    pub fn start_pass(&self) -> Option<u64> {
        let n = self.passes.fetch_add(1, Ordering::SeqCst);
        let noted = self.noted.load(Ordering::SeqCst);
        let known = noted > self.cleared_through.load(Ordering::SeqCst);
        (known || n.is_multiple_of(SWEEP_EVERY)).then_some(noted)
    }

    /// The look that started with `token` found `found` runs still owing a delivery.
    pub fn swept(&self, token: u64, found: usize) {
        if found == 0 {
            self.cleared_through.fetch_max(token, Ordering::SeqCst);
        }
    }
}

/// The wait after `attempts` failed attempts: 2 s, doubling, at most a minute.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

fn later(now: Timestamp, d: Duration) -> Timestamp {
    now + SignedDuration::from_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4))
}

impl PendingSilence {
    /// Work about to be tried for the first time at `now`: recorded as one attempt
    /// started, the next due after the first backoff.
    pub fn first(work: SilenceWork, now: Timestamp, until: Timestamp) -> PendingSilence {
        PendingSilence {
            work,
            attempts: 1,
            next_at: later(now, backoff(1)),
            until,
        }
    }

    /// Read it from a run object: `None` when the run owes nothing.
    pub fn from_object(obj: &Value) -> Option<Result<PendingSilence, PendingError>> {
        let text = obj
            .pointer(&format!(
                "/metadata/annotations/{}",
                PENDING_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)?;
        Some(serde_json::from_str(text).map_err(|e| PendingError::Parse(e.to_string())))
    }

    /// Whether the next attempt is due at `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        self.next_at <= now
    }

    /// Whether delivering at `now` is no use any more.
    pub fn pointless(&self, now: Timestamp) -> bool {
        self.until <= now
    }

    /// The same work with one more attempt started at `now`.
    pub fn retried(&self, now: Timestamp) -> PendingSilence {
        let attempts = self.attempts.saturating_add(1);
        PendingSilence {
            work: self.work.clone(),
            attempts,
            next_at: later(now, backoff(attempts)),
            until: self.until,
        }
    }

    /// The merge-patch fragment (`metadata`) that records this on a run.
    pub fn record_patch(&self) -> Value {
        json!({
            "labels": {PENDING_LABEL: PENDING},
            "annotations": {
                PENDING_ANNOTATION: serde_json::to_string(self).unwrap_or_default(),
            },
        })
    }
}

/// The merge patch that marks the delivery done (or abandoned); with the id of the silence
/// now covering the alert, when there is one.
pub fn clear_patch(silence_id: Option<&str>) -> Value {
    let mut annotations = json!({PENDING_ANNOTATION: null});
    if let Some(id) = silence_id.filter(|id| !id.is_empty()) {
        annotations[SILENCE_ANNOTATION] = json!(id);
    }
    json!({"metadata": {
        "labels": {PENDING_LABEL: null},
        "annotations": annotations,
    }})
}

/// The silence to post at `now`: starting now (a silence that was due while Alertmanager
/// was away still ends when it would have).
pub fn silence_at(silence: &Value, now: Timestamp) -> Value {
    let mut s = silence.clone();
    s["startsAt"] = json!(now.to_string());
    s
}

/// The same silence without the id of the silence it replaces (Alertmanager lost it).
pub fn without_id(silence: &Value) -> Value {
    let mut s = silence.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("id");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn pending_deliveries_are_looked_for_every_pass_while_one_is_known_else_now_and_then() {
        let s = Sweeps::default();
        assert!(s.start_pass().is_some(), "the first pass looks");
        for _ in 1..SWEEP_EVERY {
            assert_eq!(s.start_pass(), None);
        }
        assert!(s.start_pass().is_some());
        s.note_pending();
        let token = s
            .start_pass()
            .expect("a known pending delivery is looked for");
        s.swept(token, 1);
        let token = s.start_pass().expect("still owed");
        s.note_pending();
        s.swept(token, 0);
        assert!(
            s.start_pass().is_some(),
            "a delivery noted during the look is looked for next time"
        );
    }

    #[test]
    fn retries_back_off_from_two_seconds_to_a_minute() {
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_pending_silence_round_trips_through_the_run_and_is_due_after_its_backoff() {
        let now = t("2026-01-01T00:00:00Z");
        let p = PendingSilence::first(
            SilenceWork::Create {
                silence: json!({"id": "s1", "matchers": [], "endsAt": "2026-01-01T02:00:00Z"}),
            },
            now,
            t("2026-01-01T02:00:00Z"),
        );
        let patch = p.record_patch();
        assert_eq!(patch["labels"][PENDING_LABEL], PENDING);
        let obj = json!({"metadata": {"annotations": patch["annotations"]}});
        let back = PendingSilence::from_object(&obj).unwrap().unwrap();
        assert_eq!(back, p);
        assert!(!back.due(t("2026-01-01T00:00:01Z")));
        assert!(back.due(t("2026-01-01T00:00:02Z")));
        let again = back.retried(t("2026-01-01T00:00:02Z"));
        assert_eq!(again.attempts, 2);
        assert_eq!(again.next_at, t("2026-01-01T00:00:06Z"));
        assert!(!again.pointless(t("2026-01-01T01:59:59Z")));
        assert!(again.pointless(t("2026-01-01T02:00:00Z")));
        assert_eq!(
            PendingSilence::from_object(&json!({"metadata": {}})),
            None,
            "nothing owed"
        );
        let bad = json!({"metadata": {"annotations": {PENDING_ANNOTATION: "{"}}});
        let e = PendingSilence::from_object(&bad).unwrap().unwrap_err();
        assert!(e.to_string().contains(PENDING_ANNOTATION), "{e}");
    }

    #[test]
    fn clearing_removes_the_label_and_the_work_and_keeps_the_new_silence_id() {
        let patch = clear_patch(Some("s2"));
        assert_eq!(patch["metadata"]["labels"][PENDING_LABEL], Value::Null);
        assert_eq!(
            patch["metadata"]["annotations"][PENDING_ANNOTATION],
            Value::Null
        );
        assert_eq!(patch["metadata"]["annotations"][SILENCE_ANNOTATION], "s2");
        assert!(
            clear_patch(None)["metadata"]["annotations"]
                .get(SILENCE_ANNOTATION)
                .is_none()
        );
    }

    #[test]
    fn a_late_silence_starts_when_it_is_posted_and_drops_a_lost_id() {
        let s = json!({"id": "s1", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T02:00:00Z"});
        let late = silence_at(&s, t("2026-01-01T00:05:00Z"));
        assert_eq!(late["startsAt"], "2026-01-01T00:05:00Z");
        assert_eq!(late["endsAt"], "2026-01-01T02:00:00Z");
        assert_eq!(without_id(&late).get("id"), None);
    }
}
