//! Completing the intents heald recorded in its Leases: a replica that stopped (killed,
//! OOM, node lost) between taking a target's hold and creating the run leaves the hold and
//! its intent (the alert) in the Lease. Every replica lists heald's Leases every
//! [`SCAN_EVERY`] and, for each intent older than [`GRACE`] whose run it does not know,
//! performs the decision again from the Lease ([`intake::handle_match`]): the run is
//! created (409 when it exists), or, when it cannot be any more (the policy is gone, the
//! intent is unreadable), the hold is dropped and the run's in-progress silence expired.
//! So within `GRACE + SCAN_EVERY` of the kill (plus the restart, when every replica was
//! down) the alert has its run or is neither held nor silenced, well inside Alertmanager's
//! smallest retry window (10 s), without waiting for Alertmanager to deliver again.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::heald::MANAGED_BY;
use crate::heald::guards::lease::LeaseIo;
use crate::heald::guards::lease::{Intent, LeaseState, RunEnd};
use crate::heald::guards::ratelimit::RATE_BUCKET_LABEL;
use crate::heald::intake::{Intake, alert_of_intent, handle_match_from, note};
use crate::heald::kube_io::{KubeIoError, lease_path};
use crate::heald::reporting::alertmanager_http::{expire_silence, find_silences};
use crate::heald::state::State;

/// How often every replica looks for intents left behind.
pub const SCAN_EVERY: Duration = Duration::from_secs(1);
/// How old an intent is before another replica completes it: a live replica creates the
/// run within the silence's wait (2 s) of taking the hold.
pub const GRACE: Duration = Duration::from_secs(3);

/// Look for intents left behind until shutdown.
pub async fn run(st: Arc<State>) {
    let mut shutdown = st.shutdown_signal();
    loop {
        match pass(&st).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(intents = n, "completed intents left by a stopped heald"),
            Err(e) => tracing::warn!(error = %e, "could not look for intents left in Leases"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One look at every Lease of heald's: how many intents were acted on.
pub async fn pass(st: &Arc<State>) -> Result<usize, KubeIoError> {
    let k8s = &st.k8s;
    let objs = k8s
        .list(
            &lease_path(&st.config.namespace, None),
            &format!("{MANAGED_BY}=heald,!{RATE_BUCKET_LABEL}"),
        )
        .await
        .map_err(KubeIoError::from)?;
    let now = Timestamp::now();
    let grace = SignedDuration::from_secs(i64::try_from(GRACE.as_secs()).unwrap_or(3));
    let mut done = 0;
    for obj in objs {
        let Ok(lease) = LeaseState::from_object(&obj) else {
            continue;
        };
        let due: Vec<(String, Intent)> = lease
            .active_holders(now)
            .filter_map(|h| Some((h.run.clone(), h.intent.clone()?)))
            .filter(|(run, i)| now >= i.at + grace && !st.known.contains(run))
            .collect();
        for (run, intent) in due {
            if st.is_shutting_down() {
                return Ok(done);
            }
            complete(st, &lease, &run, &intent).await;
            done += 1;
        }
    }
    Ok(done)
}

/// Act on one intent: decide again for its alert and policy, or drop it.
async fn complete(st: &Arc<State>, lease: &LeaseState, run: &str, intent: &Intent) {
    let loaded = st.policies.current();
    let alert = alert_of_intent(&intent.alert);
    let policy = loaded.set.policy(&lease.policy);
    if let (Some(alert), Some(policy)) = (&alert, policy) {
        let same =
            crate::policy::plan(policy, alert, &st.plan_defaults).is_ok_and(|p| p.run_name == run);
        if same {
            match handle_match_from(st, &loaded, policy, alert, Intake::Intent).await {
                Ok(rec) => note(st, &rec),
                Err(e) => {
                    tracing::warn!(run, error = %e, "could not complete the intent yet; retrying")
                }
            }
            return;
        }
    }
    tracing::warn!(
        run,
        lease = %lease.name,
        policy = %lease.policy,
        "the intent in the Lease can no longer be completed (its policy or alert changed): dropping the hold and the run's silence"
    );
    let k8s = &st.k8s;
    let now = Timestamp::now();
    let dropped = k8s
        .update_lease(&st.config.namespace, &lease.name, |cur| {
            let mut l = cur?;
            l.release(run, RunEnd::Abandoned, now, Duration::from_secs(86_400));
            Some(l)
        })
        .await;
    if let Err(e) = dropped {
        tracing::warn!(run, error = %e, "could not drop the hold; it lapses at its deadline");
        return;
    }
    st.known.insert(run);
    if let (Some(am), Some(alert)) = (&st.config.alertmanager_url, &alert) {
        // The policy may be gone with its run namespace: the run's name is enough.
        let marker = format!("heal run {run} (");
        if let Ok(ids) = find_silences(&st.http, am, &alert.labels, &marker).await {
            for id in ids {
                if let Err(e) = expire_silence(&st.http, am, &id).await {
                    tracing::warn!(silence = %id, error = %e, "could not expire the silence");
                }
            }
        }
    }
}
