//! Alerts deferred because heald's Kubernetes request budget (`--kube-qps`) could not
//! decide them before their webhook's answer was due: kept in this replica, once each, and
//! decided one after another as the budget frees up. Nothing was written for them (no
//! Lease, no silence), so if this replica stops first they are still firing and unsilenced,
//! and Alertmanager's next notification of their group brings them again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::alert::Alert;
use crate::heald::state::State;

/// Alerts kept at most; past that the answer says they wait for Alertmanager.
pub const CAPACITY: usize = 10_000;
/// Wait before trying again an alert whose decision needed something unavailable.
const RETRY: Duration = Duration::from_secs(1);

/// The queue of deferred alerts.
#[derive(Debug, Default)]
pub struct Deferred {
    inner: Mutex<(VecDeque<Alert>, HashSet<String>)>,
    ready: tokio::sync::Notify,
}

fn key(alert: &Alert) -> String {
    format!("{}@{}", alert.fingerprint, alert.starts_at)
}

impl Deferred {
    /// Keep `alert` (once per episode): `false` when the queue is full.
    pub fn push(&self, alert: &Alert) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (queue, keys) = &mut *g;
        if keys.contains(&key(alert)) {
            return true;
        }
        if queue.len() >= CAPACITY {
            return false;
        }
        keys.insert(key(alert));
        queue.push_back(alert.clone());
        drop(g);
        self.ready.notify_one();
        true
    }

    /// How many alerts wait.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Option<Alert> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (queue, keys) = &mut *g;
        let alert = queue.pop_front()?;
        keys.remove(&key(&alert));
        Some(alert)
    }
}

/// Decide the deferred alerts until shutdown, one at a time: each request waits for its
/// token of the QPS limiter, so they go as fast as the budget allows and no faster.
pub async fn run(st: Arc<State>) {
    let mut shutdown = st.shutdown_signal();
    loop {
        let Some(alert) = st.deferred.pop() else {
            tokio::select! {
                () = st.deferred.ready.notified() => continue,
                _ = shutdown.changed() => return,
            }
        };
        let loaded = st.policies.current();
        match crate::heald::intake::handle_alert(&st, &loaded, &alert).await {
            Ok(records) => {
                for r in records {
                    tracing::info!(fingerprint = %r.fingerprint, policy = r.policy.as_deref().unwrap_or(""),
                        decision = %r.decision, run = r.run.as_deref().unwrap_or(""), "decided a deferred alert");
                }
            }
            Err(e) => {
                tracing::warn!(fingerprint = %alert.fingerprint, error = %e, "a deferred alert cannot be decided yet; trying again");
                st.deferred.push(&alert);
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
