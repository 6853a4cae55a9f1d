//! The recent decisions and outcomes that `GET /v1/remediations` shows, newest first: a
//! bounded ring buffer, so memory stays flat however many alerts arrive. Also the small
//! bounded set of run names this replica has created or seen, which answers repeated
//! alerts without an API call. Pure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One entry: a decision about an alert, or the outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When, RFC 3339.
    pub time: String,
    /// `decision` or `outcome`.
    pub kind: &'static str,
    /// The decision (`submitted`, ...) or outcome (`succeeded`, `failed`, `timed-out`).
    pub result: String,
    /// Alert fingerprint.
    pub fingerprint: Option<String>,
    /// Alert name.
    pub alertname: Option<String>,
    /// Policy.
    pub policy: Option<String>,
    /// Engine.
    pub engine: Option<String>,
    /// Namespace of the run.
    pub namespace: Option<String>,
    /// Run name.
    pub run: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// A bounded, thread-safe ring buffer of entries.
#[derive(Debug)]
pub struct History {
    cap: usize,
    entries: Mutex<VecDeque<Entry>>,
}

impl History {
    /// Keep at most `cap` entries.
    pub fn new(cap: usize) -> History {
        History {
            cap: cap.max(1),
            entries: Mutex::new(VecDeque::with_capacity(cap.clamp(1, 4096))),
        }
    }

    /// Add an entry, dropping the oldest beyond the bound.
    pub fn push(&self, entry: Entry) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() == self.cap {
            e.pop_front();
        }
        e.push_back(entry);
    }

    /// At most `limit` entries, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Entry> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().rev().take(limit).cloned().collect()
    }
}

/// Run names this replica knows exist, bounded (oldest forgotten first).
#[derive(Debug)]
pub struct KnownRuns {
    cap: usize,
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl KnownRuns {
    /// Remember at most `cap` names.
    pub fn new(cap: usize) -> KnownRuns {
        KnownRuns {
            cap: cap.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Whether `run` is known.
    pub fn contains(&self, run: &str) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.contains(run)
    }

    /// Remember `run`.
    pub fn insert(&self, run: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *g;
        if set.insert(run.to_string()) {
            order.push_back(run.to_string());
            if order.len() > self.cap
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }
}

/// One-at-a-time handling per key (a run name) within this replica: during a storm, the
/// repeats of an alert wait for the first delivery's decision instead of each asking the
/// API server. Entries go away when nobody holds or waits for them.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    inner: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a key of [`KeyedLocks`] until dropped.
pub struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Wait until `key` is free and hold it.
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let m = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }

    /// Keys currently held or waited for.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map's own reference left: nobody holds or waits for the key.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            time: String::new(),
            kind: "decision",
            result: "submitted".into(),
            fingerprint: None,
            alertname: None,
            policy: None,
            engine: None,
            namespace: None,
            run: Some(format!("run-{n}")),
            correlation_id: None,
            reason: String::new(),
        }
    }

    #[test]
    fn history_keeps_the_newest_entries_newest_first() {
        let h = History::new(3);
        for n in 0..5 {
            h.push(entry(n));
        }
        let runs: Vec<_> = h.recent(10).into_iter().filter_map(|e| e.run).collect();
        assert_eq!(runs, ["run-4", "run-3", "run-2"]);
        assert_eq!(h.recent(1).len(), 1);
    }

    #[tokio::test]
    async fn keyed_locks_serialise_one_key_and_forget_it_when_free() {
        let locks = Arc::new(KeyedLocks::default());
        let g = locks.lock("a").await;
        let other = locks.lock("b").await;
        let l2 = Arc::clone(&locks);
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the second holder of a waits");
        drop(g);
        waiter.await.unwrap();
        drop(other);
        assert!(locks.is_empty());
    }

    #[test]
    fn known_runs_forget_the_oldest_past_the_bound() {
        let k = KnownRuns::new(2);
        k.insert("a");
        k.insert("b");
        k.insert("a");
        k.insert("c");
        assert!(!k.contains("a"));
        assert!(k.contains("b") && k.contains("c"));
    }
}
