//! Deciding what to do about one alert for one matched policy, from what heald read: the
//! Lease of the target, whether the run is already known, the rate limiters' answer and
//! the dry-run switch. Deciding is separated from doing ([`intake`](crate::heald::intake)
//! performs the decision), so every rule here is tested without Kubernetes. Pure.

use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Serialize, Serializer};

use crate::heald::guards::lease::LeaseState;
use crate::policy::Policy;

/// What heald did about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A run was created.
    Submitted,
    /// A run already exists for this alert episode.
    Duplicate,
    /// The target was remediated by this policy less than the cooldown ago.
    Cooldown,
    /// Another run holds the target.
    Locked,
    /// `guards.maxInFlight` runs of the policy are unfinished (over all its targets and
    /// every replica): no more at once.
    BlastRadius,
    /// A global or per-namespace token bucket is empty.
    RateLimited,
    /// heald's Kubernetes request budget (`--kube-qps`) cannot decide this alert before the
    /// answer is due: it is kept and decided as the budget frees up.
    Deferred,
    /// The policy failed on this target too often within its window; escalate instead.
    CircuitOpen,
    /// No policy answers the alert.
    NoMatch,
    /// The alert resolved; nothing to do.
    Resolved,
    /// heald runs with `--dry-run`: the run was rendered and logged, not submitted.
    DryRun,
    /// The alert cannot be acted on (its labels make no valid target, the rendered run is
    /// refused, the engine rejected it); retrying will not help.
    Error,
}

impl Decision {
    /// Every decision, in the order the documentation lists them.
    pub const ALL: [Decision; 12] = [
        Decision::Submitted,
        Decision::Duplicate,
        Decision::Cooldown,
        Decision::Locked,
        Decision::BlastRadius,
        Decision::RateLimited,
        Decision::Deferred,
        Decision::CircuitOpen,
        Decision::NoMatch,
        Decision::Resolved,
        Decision::DryRun,
        Decision::Error,
    ];

    /// The wire name (`submitted`, `rate-limited`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Submitted => "submitted",
            Decision::Duplicate => "duplicate",
            Decision::Cooldown => "cooldown",
            Decision::Locked => "locked",
            Decision::BlastRadius => "blast-radius",
            Decision::RateLimited => "rate-limited",
            Decision::Deferred => "deferred",
            Decision::CircuitOpen => "circuit-open",
            Decision::NoMatch => "no-match",
            Decision::Resolved => "resolved",
            Decision::DryRun => "dry-run",
            Decision::Error => "error",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

pub use crate::heald::guards::ratelimit::RateScope;

/// What heald knows when it decides.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// Now.
    pub now: Timestamp,
    /// The deterministic name of the run this alert episode would start.
    pub run_name: &'a str,
    /// The target's Lease; `None` when nobody acted on it yet.
    pub lease: Option<&'a LeaseState>,
    /// This replica already created or saw this run.
    pub run_known: bool,
    /// The run object was looked up and does not exist (the API server answered 404).
    pub run_absent: bool,
    /// How long the engine keeps a run after it ends, at least (Argo's TTL, heald's Tekton
    /// retention); `None` when runs stay until someone deletes them (local runs). A run
    /// absent sooner than that after its hold was taken was never created.
    pub run_kept_for: Option<Duration>,
    /// How long a replica may take from taking the Lease to creating the run: a hold
    /// younger than that may belong to a run being created right now.
    pub creating_within: Duration,
    /// The policy's other unfinished runs, over all targets and replicas, when it has a
    /// `guards.maxInFlight` (read from its in-flight Lease).
    pub in_flight: Option<usize>,
    /// The rate limiters' answer if a run were submitted now.
    pub rate: Result<(), RateScope>,
    /// heald runs with `--dry-run`.
    pub dry_run: bool,
}

/// The decision with a sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Why, for the answer, the log and `/v1/remediations`.
    pub reason: String,
}

fn verdict(decision: Decision, reason: impl Into<String>) -> Verdict {
    Verdict {
        decision,
        reason: reason.into(),
    }
}

fn human(d: SignedDuration) -> String {
    let secs = u64::try_from(d.as_secs().max(0)).unwrap_or(0);
    crate::duration::format(std::time::Duration::from_secs(secs))
}

/// Whether the target's hold by `run` is stale: the Lease says `run` holds the target, but
/// the run was never created (heald stopped, or the API server failed, between taking the
/// Lease and creating the run, and the hold could not be dropped). It is stale only when
/// the run is absent and could not have run and been deleted since the hold was taken.
pub fn stale_hold(seen: &Observed<'_>) -> bool {
    let Some(taken) = absent_holder_since(seen) else {
        return false;
    };
    if seen.now < taken + signed(seen.creating_within) {
        return false;
    }
    match seen.run_kept_for {
        None => true,
        Some(kept) => seen.now < taken + signed(kept),
    }
}

/// Whether the hold by this alert episode's absent run is so recent that the replica that
/// took it may be creating the run right now: wait for the run, or ask for a retry.
pub fn hold_being_created(seen: &Observed<'_>) -> bool {
    absent_holder_since(seen).is_some_and(|taken| seen.now < taken + signed(seen.creating_within))
}

/// When the hold was taken, if the Lease says this alert episode's run holds the target
/// and the run is known to be absent.
fn absent_holder_since(seen: &Observed<'_>) -> Option<Timestamp> {
    let lease = seen.lease?;
    let run = seen.run_name;
    if !seen.run_absent || !lease.holds(run, seen.now) || lease.last_run.as_deref() != Some(run) {
        return None;
    }
    lease.last_run_at
}

/// Whether this alert episode's run is to be created from the intent recorded with its
/// hold: the Lease says the run holds the target and carries its intent, the run is known
/// to be absent, and it cannot have run and been deleted since the hold was taken (its
/// engine keeps ended runs longer than that). Creating is safe at any time: the run's name
/// is the episode's, so of two replicas creating it one gets 409.
pub fn completes_intent(seen: &Observed<'_>) -> bool {
    let Some(intent) = seen.lease.and_then(|l| l.intent(seen.run_name, seen.now)) else {
        return false;
    };
    if !seen.run_absent || seen.run_known {
        return false;
    }
    match seen.run_kept_for {
        None => true,
        Some(kept) => seen.now < intent.at + signed(kept),
    }
}

/// One effect of acting on a decision, in the order [`effects`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Add the run to the policy's in-flight Lease (`guards.maxInFlight`; 409: another
    /// replica changed it; observe and decide again).
    TakeSlot,
    /// Write the target's Lease: the hold and the intent to create the run (409: another
    /// replica changed it; observe and decide again).
    TakeHold,
    /// Look for the in-progress silence an interrupted creation of this run left.
    FindSilence,
    /// Silence the alert while the run is in progress (best effort, bounded wait).
    Silence,
    /// Create the run, with the silence's id (409: the episode already has its run).
    CreateRun,
    /// Record a Kubernetes Event on the run.
    RecordEvent,
}

/// The effects of `decision`, in the order heald performs them. Only a submission has
/// any. The hold and its intent are written first, before anything else changes: from
/// then on any replica can create the run (or drop the hold and the silence) from the
/// Lease alone, so no later kill can leave an alert silenced, or its target held, for a
/// run nobody will create. `completing`: the hold and intent exist already (a replica
/// stopped after writing them); the silence it may have made is looked for first.
/// `silences`: an in-progress silence is wanted (Alertmanager configured, not a dry run).
/// `slot`: the policy caps its unfinished runs; the slot is taken before the hold, so a
/// kill between the two leaves a slot that lapses with its deadline (one run fewer for a
/// while, never one more).
pub fn effects(decision: Decision, completing: bool, silences: bool, slot: bool) -> Vec<Effect> {
    if decision != Decision::Submitted {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(6);
    if completing {
        if silences {
            out.push(Effect::FindSilence);
        }
    } else {
        if slot {
            out.push(Effect::TakeSlot);
        }
        out.push(Effect::TakeHold);
    }
    if silences {
        out.push(Effect::Silence);
    }
    out.push(Effect::CreateRun);
    out.push(Effect::RecordEvent);
    out
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4))
}

/// Decide for one alert and one policy that matched it (status included). Rules, first
/// that applies wins:
/// 0. submitted: the run [completes an intent](completes_intent) (no new token is taken:
///    the hold's own was);
/// 1. duplicate: the run of this alert episode is known, holds the target, or was the
///    target's last run, unless its hold is [stale](stale_hold): then the hold is
///    ignored and the run is created after all;
/// 2. circuit-open: the policy's failure budget is spent within its window;
/// 3. locked: as many runs as `concurrencyPerTarget` hold the target;
/// 4. cooldown: the last success is more recent than the cooldown;
/// 5. rate-limited: a token bucket is empty;
/// 6. dry-run: heald runs with `--dry-run`;
/// 7. submitted.
pub fn decide(policy: &Policy, seen: &Observed<'_>) -> Verdict {
    let run = seen.run_name;
    if seen.run_known {
        return verdict(Decision::Duplicate, format!("run {run} already exists"));
    }
    if completes_intent(seen) {
        return verdict(
            Decision::Submitted,
            format!(
                "run {run} created from the intent recorded with its hold (the heald that \
                 took the hold stopped before creating it)"
            ),
        );
    }
    let stale = stale_hold(seen);
    if let Some(lease) = seen.lease.filter(|_| !stale) {
        if lease.holds(run, seen.now) {
            return verdict(
                Decision::Duplicate,
                format!("run {run} is already in progress"),
            );
        }
        if lease.last_run.as_deref() == Some(run) {
            return verdict(
                Decision::Duplicate,
                format!("run {run} already ran for this alert"),
            );
        }
    }
    if let Some(lease) = seen.lease {
        if let Some(budget) = policy.guards.failure_budget {
            let failed = lease.failures_within(seen.now, budget.window);
            if failed >= budget.failures as usize {
                return verdict(
                    Decision::CircuitOpen,
                    format!(
                        "{failed} failed runs on {} within {}: no more automatic attempts, \
                         escalate",
                        lease.target,
                        crate::duration::format(budget.window)
                    ),
                );
            }
        }
        let holders: Vec<&str> = lease
            .active_holders(seen.now)
            .map(|h| h.run.as_str())
            .filter(|h| *h != run)
            .collect();
        let limit = policy.guards.concurrency_per_target.max(1) as usize;
        if holders.len() >= limit {
            return verdict(
                Decision::Locked,
                format!("{} is held by run {}", lease.target, holders.join(", ")),
            );
        }
        if let (Some(cooldown), Some(last)) = (policy.guards.cooldown, lease.last_success_at) {
            let cooldown = SignedDuration::from_secs(
                i64::try_from(cooldown.as_secs()).unwrap_or(i64::MAX / 4),
            );
            let since = seen.now.duration_since(last);
            if since < cooldown {
                return verdict(
                    Decision::Cooldown,
                    format!(
                        "{} was remediated {} ago; cooldown {} has {} left",
                        lease.target,
                        human(since),
                        human(cooldown),
                        human(cooldown - since)
                    ),
                );
            }
        }
    }
    if let (Some(max), Some(n)) = (policy.guards.max_in_flight, seen.in_flight)
        && n >= max as usize
    {
        return verdict(
            Decision::BlastRadius,
            format!(
                "{n} runs of policy {} are unfinished (maxInFlight {max}): no more at once",
                policy.name
            ),
        );
    }
    match &seen.rate {
        Err(RateScope::Global) => {
            return verdict(
                Decision::RateLimited,
                "the global submission rate limit is reached",
            );
        }
        Err(RateScope::Namespace(ns)) => {
            return verdict(
                Decision::RateLimited,
                format!("the submission rate limit of namespace {ns:?} is reached"),
            );
        }
        Ok(()) => {}
    }
    if seen.dry_run {
        return verdict(
            Decision::DryRun,
            format!("heald runs with --dry-run: run {run} rendered, not submitted"),
        );
    }
    if stale {
        return verdict(
            Decision::Submitted,
            format!(
                "run {run} created (the target's Lease named it, but it had never been \
                 created: the stale hold was taken over)"
            ),
        );
    }
    verdict(Decision::Submitted, format!("run {run} created"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heald::guards::lease::RunEnd;
    use crate::plan::PlanTarget;
    use crate::policy::PolicySet;
    use std::time::Duration;

    fn policy() -> Policy {
        let yaml = r#"
apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata:
  name: restart-web
spec:
  match:
    alertname: WebDown
  target:
    kind: deployment
    namespace: "{{ labels.namespace }}"
    name: "{{ labels.deployment }}"
  steps:
    - name: restart
      action: restart
  guards:
    cooldown: 10m
    concurrencyPerTarget: 1
    failureBudget: {failures: 2, window: 1h}
"#;
        match PolicySet::from_yaml("p.yaml", yaml) {
            Ok(set) => set.policies[0].clone(),
            Err(e) => panic!("test policy does not load: {e}"),
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn lease() -> LeaseState {
        LeaseState::new(
            "l",
            "restart-web",
            &PlanTarget {
                kind: "deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
            },
        )
    }

    fn seen<'a>(lease: Option<&'a LeaseState>) -> Observed<'a> {
        Observed {
            now: t("2026-01-01T12:00:00Z"),
            run_name: "heal-restart-web-aaaa",
            lease,
            run_known: false,
            run_absent: false,
            run_kept_for: Some(Duration::from_secs(3600)),
            in_flight: None,
            creating_within: Duration::from_secs(20),
            rate: Ok(()),
            dry_run: false,
        }
    }

    #[test]
    fn a_first_alert_on_a_fresh_target_is_submitted() {
        let v = decide(&policy(), &seen(None));
        assert_eq!(v.decision, Decision::Submitted);
        assert_eq!(
            decide(&policy(), &seen(Some(&lease()))).decision,
            Decision::Submitted
        );
    }

    #[test]
    fn the_same_episode_again_is_a_duplicate_while_running_and_after() {
        let mut l = lease();
        l.acquire(
            "heal-restart-web-aaaa",
            t("2026-01-01T11:59:00Z"),
            Duration::from_secs(600),
        );
        assert_eq!(
            decide(&policy(), &seen(Some(&l))).decision,
            Decision::Duplicate
        );
        l.release(
            "heal-restart-web-aaaa",
            RunEnd::Success,
            t("2026-01-01T11:59:30Z"),
            Duration::from_secs(3600),
        );
        let v = decide(&policy(), &seen(Some(&l)));
        assert_eq!(v.decision, Decision::Duplicate, "{}", v.reason);
        let mut known = seen(None);
        known.run_known = true;
        assert_eq!(decide(&policy(), &known).decision, Decision::Duplicate);
    }

    #[test]
    fn a_hold_for_a_run_that_was_never_created_is_taken_over() {
        let mut l = lease();
        l.acquire(
            "heal-restart-web-aaaa",
            t("2026-01-01T11:59:00Z"),
            Duration::from_secs(600),
        );
        let mut s = seen(Some(&l));
        assert_eq!(
            decide(&policy(), &s).decision,
            Decision::Duplicate,
            "without looking the run up, the hold stands"
        );
        s.run_absent = true;
        let v = decide(&policy(), &s);
        assert_eq!(v.decision, Decision::Submitted, "{}", v.reason);
        assert!(v.reason.contains("stale hold"), "{}", v.reason);
        assert!(!hold_being_created(&s));
        // Taken a moment ago: the replica that took it may be creating the run now.
        s.creating_within = Duration::from_secs(90);
        assert_eq!(decide(&policy(), &s).decision, Decision::Duplicate);
        assert!(hold_being_created(&s));
    }

    #[test]
    fn an_absent_run_that_may_have_run_and_been_deleted_stays_a_duplicate() {
        let mut l = lease();
        l.acquire(
            "heal-restart-web-aaaa",
            t("2026-01-01T11:00:00Z"),
            Duration::from_secs(7200),
        );
        let mut s = seen(Some(&l));
        s.run_absent = true;
        s.run_kept_for = Some(Duration::from_secs(1800));
        assert_eq!(
            decide(&policy(), &s).decision,
            Decision::Duplicate,
            "an hour after the hold was taken, a run kept 30m after its end may be gone"
        );
        s.run_kept_for = None;
        assert_eq!(decide(&policy(), &s).decision, Decision::Submitted);
        // A run that ended and released its hold is a duplicate, absent or not.
        l.release(
            "heal-restart-web-aaaa",
            RunEnd::Failure,
            t("2026-01-01T11:30:00Z"),
            Duration::from_secs(3600),
        );
        let mut s = seen(Some(&l));
        s.run_absent = true;
        assert_eq!(decide(&policy(), &s).decision, Decision::Duplicate);
    }

    #[test]
    fn another_episode_waits_for_the_lock_then_the_cooldown() {
        let mut l = lease();
        l.acquire(
            "heal-restart-web-bbbb",
            t("2026-01-01T11:59:00Z"),
            Duration::from_secs(600),
        );
        let v = decide(&policy(), &seen(Some(&l)));
        assert_eq!(v.decision, Decision::Locked);
        assert!(v.reason.contains("heal-restart-web-bbbb"), "{}", v.reason);
        l.release(
            "heal-restart-web-bbbb",
            RunEnd::Success,
            t("2026-01-01T11:55:00Z"),
            Duration::from_secs(3600),
        );
        let v = decide(&policy(), &seen(Some(&l)));
        assert_eq!(v.decision, Decision::Cooldown);
        assert!(v.reason.contains("5m ago"), "{}", v.reason);
        let mut later = seen(Some(&l));
        later.now = t("2026-01-01T12:06:00Z");
        assert_eq!(decide(&policy(), &later).decision, Decision::Submitted);
    }

    #[test]
    fn an_expired_lock_no_longer_holds_the_target() {
        let mut l = lease();
        l.acquire(
            "heal-restart-web-bbbb",
            t("2026-01-01T10:00:00Z"),
            Duration::from_secs(600),
        );
        assert_eq!(
            decide(&policy(), &seen(Some(&l))).decision,
            Decision::Submitted
        );
    }

    #[test]
    fn the_circuit_opens_when_the_failure_budget_is_spent_in_the_window() {
        let mut l = lease();
        for at in ["2026-01-01T11:10:00Z", "2026-01-01T11:40:00Z"] {
            l.release("x", RunEnd::Failure, t(at), Duration::from_secs(3600));
        }
        let v = decide(&policy(), &seen(Some(&l)));
        assert_eq!(v.decision, Decision::CircuitOpen);
        assert!(v.reason.contains("2 failed runs"), "{}", v.reason);
        let mut later = seen(Some(&l));
        later.now = t("2026-01-01T12:20:00Z");
        assert_eq!(decide(&policy(), &later).decision, Decision::Submitted);
    }

    #[test]
    fn rate_limits_and_dry_run_come_after_the_guards() {
        let mut s = seen(None);
        s.rate = Err(RateScope::Namespace("shop".into()));
        let v = decide(&policy(), &s);
        assert_eq!(v.decision, Decision::RateLimited);
        assert!(v.reason.contains("\"shop\""));
        s.rate = Ok(());
        s.dry_run = true;
        assert_eq!(decide(&policy(), &s).decision, Decision::DryRun);
        let mut l = lease();
        l.acquire("other", t("2026-01-01T11:59:00Z"), Duration::from_secs(600));
        s.lease = Some(&l);
        assert_eq!(decide(&policy(), &s).decision, Decision::Locked);
    }

    #[test]
    fn past_max_in_flight_the_policy_stands_down_with_blast_radius() {
        let mut p = policy();
        p.guards.max_in_flight = Some(2);
        let mut s = seen(None);
        s.in_flight = Some(1);
        assert_eq!(decide(&p, &s).decision, Decision::Submitted);
        s.in_flight = Some(2);
        let v = decide(&p, &s);
        assert_eq!(v.decision, Decision::BlastRadius);
        assert!(v.reason.contains("maxInFlight 2"), "{}", v.reason);
        // A duplicate is still a duplicate.
        s.run_known = true;
        assert_eq!(decide(&p, &s).decision, Decision::Duplicate);
    }

    #[test]
    fn decisions_have_their_documented_wire_names() {
        let names: Vec<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            names,
            [
                "submitted",
                "duplicate",
                "cooldown",
                "locked",
                "blast-radius",
                "rate-limited",
                "deferred",
                "circuit-open",
                "no-match",
                "resolved",
                "dry-run",
                "error"
            ]
        );
        assert_eq!(
            serde_json::to_string(&Decision::CircuitOpen).unwrap(),
            "\"circuit-open\""
        );
    }

    #[test]
    fn a_submission_takes_the_hold_with_its_intent_before_any_other_effect() {
        use Effect::*;
        assert_eq!(
            effects(Decision::Submitted, false, true, false),
            [TakeHold, Silence, CreateRun, RecordEvent]
        );
        assert_eq!(
            effects(Decision::Submitted, false, false, false),
            [TakeHold, CreateRun, RecordEvent]
        );
        assert_eq!(
            effects(Decision::Submitted, false, true, true),
            [TakeSlot, TakeHold, Silence, CreateRun, RecordEvent]
        );
        for d in Decision::ALL
            .into_iter()
            .filter(|d| *d != Decision::Submitted)
        {
            assert!(
                effects(d, false, true, true).is_empty(),
                "{d} changes nothing"
            );
        }
    }

    #[test]
    fn completing_an_intent_reuses_the_hold_and_looks_for_the_silence_first() {
        use Effect::*;
        assert_eq!(
            effects(Decision::Submitted, true, true, true),
            [FindSilence, Silence, CreateRun, RecordEvent]
        );
        assert_eq!(
            effects(Decision::Submitted, true, false, false),
            [CreateRun, RecordEvent]
        );
    }

    #[test]
    fn every_effect_list_keeps_the_invariant() {
        // No silence and no run before the hold with its intent is durable (or already
        // was); the run before its Event; each effect at most once.
        for (completing, silences, slot) in (0..8).map(|i| (i & 1 == 1, i & 2 == 2, i & 4 == 4)) {
            {
                let fx = effects(Decision::Submitted, completing, silences, slot);
                let at = |e: Effect| fx.iter().position(|x| *x == e);
                if !completing {
                    // The slot (when the policy caps its runs) comes first: a kill after it
                    // costs capacity for a while, never an extra run.
                    assert_eq!(at(Effect::TakeHold), Some(usize::from(slot)));
                }
                assert!(at(Effect::CreateRun) < at(Effect::RecordEvent));
                if silences {
                    assert!(at(Effect::Silence) < at(Effect::CreateRun), "id on the run");
                }
                let mut dedup = fx.clone();
                dedup.dedup();
                assert_eq!(dedup.len(), fx.len());
            }
        }
    }

    #[test]
    fn an_intent_whose_run_is_absent_is_completed_without_a_new_token() {
        let mut l = lease();
        l.acquire_with_intent(
            "heal-restart-web-aaaa",
            t("2026-01-01T11:59:59Z"),
            Duration::from_secs(7200),
            Some(serde_json::json!({"labels": {}})),
        );
        let mut s = seen(Some(&l));
        // Not looked up yet: the hold is this episode's, a duplicate.
        assert_eq!(decide(&policy(), &s).decision, Decision::Duplicate);
        s.run_absent = true;
        s.rate = Err(RateScope::Global);
        assert!(completes_intent(&s));
        let v = decide(&policy(), &s);
        assert_eq!(v.decision, Decision::Submitted, "{}", v.reason);
        assert!(v.reason.contains("intent"), "{}", v.reason);
        // Older than the engine keeps ended runs: it may have run and been deleted.
        s.now = t("2026-01-01T13:00:00Z");
        s.lease = Some(&l);
        assert!(!completes_intent(&s));
        // A hold without an intent (older heald, oversized alert) is not completed.
        let mut bare = lease();
        bare.acquire(
            "heal-restart-web-aaaa",
            t("2026-01-01T11:59:59Z"),
            Duration::from_secs(600),
        );
        let mut s = seen(Some(&bare));
        s.run_absent = true;
        assert!(!completes_intent(&s));
    }
}
