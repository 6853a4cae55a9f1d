//! Token buckets: the global and per-namespace limits on submissions that protect the API
//! server during alert storms, and the limiter that bounds heald's own Kubernetes request
//! rate (QPS and burst). The bucket arithmetic takes the time as an argument, so it is
//! tested without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::heald::config::RateLimits;
use crate::heald::decide::RateScope;

/// Namespaces whose buckets are kept at most; full buckets are forgotten first, since a
/// new bucket starts full anyway.
const MAX_NAMESPACE_BUCKETS: usize = 10_000;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether a token is there at `now`, without taking it.
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Take a token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take a token now or in the future: how long the caller must wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// The submission limits: a global bucket and one bucket per target namespace.
#[derive(Debug)]
pub struct SubmitLimiter {
    limits: RateLimits,
    inner: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    global: Bucket,
    namespaces: HashMap<String, Bucket>,
}

impl SubmitLimiter {
    /// Full buckets for these limits.
    pub fn new(limits: RateLimits) -> SubmitLimiter {
        let now = Instant::now();
        SubmitLimiter {
            limits,
            inner: Mutex::new(Buckets {
                global: Bucket::new(limits.global_rate, limits.global_burst, now),
                namespaces: HashMap::new(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Buckets, RateLimits) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            // A panic elsewhere cannot leave the buckets inconsistent: keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard, self.limits)
    }

    /// Whether a run for a target in `namespace` could be submitted at `now`.
    pub fn check(&self, namespace: &str, now: Instant) -> Result<(), RateScope> {
        self.with(|b, _| {
            if !b.global.has_token(now) {
                return Err(RateScope::Global);
            }
            if let Some(bucket) = b.namespaces.get_mut(namespace)
                && !bucket.has_token(now)
            {
                return Err(RateScope::Namespace(namespace.to_string()));
            }
            Ok(())
        })
    }

    /// Take one token from both buckets, or none.
    pub fn try_take(&self, namespace: &str, now: Instant) -> Result<(), RateScope> {
        self.with(|b, limits| {
            if b.namespaces.len() >= MAX_NAMESPACE_BUCKETS {
                b.namespaces.retain(|_, bucket| !bucket.is_full(now));
            }
            let ns = b
                .namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| Bucket::new(limits.namespace_rate, limits.namespace_burst, now));
            if !ns.has_token(now) {
                return Err(RateScope::Namespace(namespace.to_string()));
            }
            if !b.global.try_take(now) {
                return Err(RateScope::Global);
            }
            ns.try_take(now);
            Ok(())
        })
    }

    /// Give back a token taken for a submission that did not happen (lost a race).
    pub fn refund(&self, namespace: &str) {
        self.with(|b, _| {
            b.global.tokens = (b.global.tokens + 1.0).min(b.global.burst);
            if let Some(ns) = b.namespaces.get_mut(namespace) {
                ns.tokens = (ns.tokens + 1.0).min(ns.burst);
            }
        });
    }
}

/// Bounds heald's Kubernetes request rate: each request waits for its token.
#[derive(Debug)]
pub struct QpsLimiter {
    bucket: Mutex<Bucket>,
}

impl QpsLimiter {
    /// `qps` requests per second, bursts of `burst`.
    pub fn new(qps: f64, burst: u32) -> QpsLimiter {
        QpsLimiter {
            bucket: Mutex::new(Bucket::new(qps, burst, Instant::now())),
        }
    }

    /// Wait for a token; `false` when it would come after `deadline` (nothing is taken).
    pub async fn acquire(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        let wait = {
            let mut b = match self.bucket.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let wait = b.reserve(now);
            if now + wait > deadline {
                b.tokens += 1.0;
                return false;
            }
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits {
            global_rate: 1.0,
            global_burst: 3,
            namespace_rate: 0.5,
            namespace_burst: 2,
        }
    }

    #[test]
    fn a_namespace_bucket_empties_before_the_global_one() {
        let l = SubmitLimiter::new(limits());
        let now = Instant::now();
        assert_eq!(l.try_take("shop", now), Ok(()));
        assert_eq!(l.try_take("shop", now), Ok(()));
        assert_eq!(
            l.try_take("shop", now),
            Err(RateScope::Namespace("shop".into()))
        );
        assert_eq!(
            l.check("shop", now),
            Err(RateScope::Namespace("shop".into()))
        );
        assert_eq!(l.try_take("web", now), Ok(()));
        assert_eq!(l.try_take("db", now), Err(RateScope::Global));
        let later = now + Duration::from_secs(2);
        assert_eq!(l.try_take("shop", later), Ok(()));
    }

    #[test]
    fn a_refund_gives_the_token_back() {
        let l = SubmitLimiter::new(RateLimits {
            global_burst: 1,
            ..limits()
        });
        let now = Instant::now();
        assert_eq!(l.try_take("a", now), Ok(()));
        assert_eq!(l.check("a", now), Err(RateScope::Global));
        l.refund("a");
        assert_eq!(l.try_take("a", now), Ok(()));
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
