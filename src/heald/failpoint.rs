//! Failpoints for the kill tests: in a debug build, `HEALD_FAILPOINT=NAME` (or `NAME@N`,
//! the N-th time it is reached) makes heald abort, with no cleanup at all, like SIGKILL,
//! at the named point between two of its effects. Release builds compile every failpoint
//! to nothing and never read the variable.

/// Abort the process here when `HEALD_FAILPOINT` names this point (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    debug::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod debug {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The failpoint set by the environment: its name and on which hit it fires.
    fn armed() -> Option<&'static (String, u64)> {
        static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let v = std::env::var("HEALD_FAILPOINT").ok()?;
                let (name, n) = match v.split_once('@') {
                    Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                    None => (v, 1),
                };
                Some((name, n.max(1)))
            })
            .as_ref()
    }

    pub(super) fn hit(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some((armed, n)) = armed() else {
            return;
        };
        if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("heald: failpoint {name} reached: aborting");
            std::process::abort();
        }
    }
}
