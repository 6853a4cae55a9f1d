//! The recent decisions and outcomes that `GET /v1/remediations` shows, newest first: a
//! bounded ring buffer, so memory stays flat however many alerts arrive. Also the small
//! bounded set of run names this replica has created or seen, which answers repeated
//! alerts without an API call. Pure.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

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
