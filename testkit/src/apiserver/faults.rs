//! Fault injection: a FIFO of rules that answer matching requests with an error, delay
//! them, drop the connection, or apply them and then drop the connection (a lost answer),
//! plus seeded random failures for chaos tests.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;

use super::status::{FieldError, StatusError};

/// What the faulty request gets instead of (or before) its normal answer.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer with this `Status` (code, reason, message, details, headers).
    Respond(StatusError),
    /// 403 Forbidden worded as RBAC words it for this request and user.
    Forbidden {
        /// The user named in the message (`system:serviceaccount:ns:sa`).
        user: String,
    },
    /// 409 Conflict on the requested object, as a stale `resourceVersion` produces it.
    Conflict,
    /// Wait, then answer normally.
    Delay(Duration),
    /// Close the connection without answering (the request is not applied).
    Reset,
    /// Apply the request fully (the store changes, the resourceVersion moves on, watchers
    /// see the event, the request is logged with status `0`), then close the connection
    /// before any byte of the answer: the write happened and the client cannot know it, as
    /// when a load balancer or the network drops the connection after the API server
    /// committed the write.
    LoseAnswer,
}

/// Which paths a rule applies to.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Every path.
    Any,
    /// Paths containing this text.
    Contains(String),
    /// Paths (with `?query` when there is one) matching this regex.
    Regex(Regex),
}

/// One injected fault rule. Build with [`Fault::on`] and the action methods:
/// `Fault::on("PATCH", "/deployments/web/scale").times(2).too_many_requests(3)`.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Method to match (`None`: any).
    pub method: Option<String>,
    /// Path to match.
    pub path: PathMatch,
    /// How many matching requests it hits before it is used up (`None`: forever).
    pub times: Option<usize>,
    /// What happens.
    pub action: FaultAction,
}

impl Fault {
    /// A rule for `method` (`"*"` for any) on paths containing `path_contains`; by default it
    /// fires once and answers 500.
    pub fn on(method: &str, path_contains: &str) -> Fault {
        Fault {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path: if path_contains.is_empty() {
                PathMatch::Any
            } else {
                PathMatch::Contains(path_contains.to_string())
            },
            times: Some(1),
            action: FaultAction::Respond(StatusError::internal("injected fault")),
        }
    }

    /// A rule for every request.
    pub fn any() -> Fault {
        Fault::on("*", "")
    }

    /// Match paths (plus `?query`) against a regex instead.
    ///
    /// # Panics
    /// On an invalid regex (a bug in the test).
    pub fn path_regex(mut self, re: &str) -> Fault {
        self.path = PathMatch::Regex(Regex::new(re).expect("fault path regex must be valid"));
        self
    }

    /// Fire for the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = Some(n);
        self
    }

    /// Fire for every matching request.
    pub fn always(mut self) -> Fault {
        self.times = None;
        self
    }

    /// Answer with this status.
    pub fn respond(mut self, err: StatusError) -> Fault {
        self.action = FaultAction::Respond(err);
        self
    }

    /// 429 with `Retry-After: secs` and `details.retryAfterSeconds`, as API priority and
    /// fairness answers.
    pub fn too_many_requests(self, retry_after_secs: u64) -> Fault {
        let mut e = StatusError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        )
        .with_details(serde_json::json!({"retryAfterSeconds": retry_after_secs}));
        e = e.with_header("Retry-After", &retry_after_secs.to_string());
        self.respond(e)
    }

    /// 500 InternalError.
    pub fn internal_error(self) -> Fault {
        self.respond(StatusError::internal("etcdserver: leader changed"))
    }

    /// 503 ServiceUnavailable.
    pub fn service_unavailable(self) -> Fault {
        self.respond(StatusError::service_unavailable(
            "the server is currently unable to handle the request",
        ))
    }

    /// 504 Timeout.
    pub fn gateway_timeout(self) -> Fault {
        self.respond(StatusError::gateway_timeout(
            "request did not complete within requested timeout - context deadline exceeded",
        ))
    }

    /// 409 Conflict naming the requested object.
    pub fn conflict(mut self) -> Fault {
        self.action = FaultAction::Conflict;
        self
    }

    /// 403 Forbidden for `user`, worded for the request it hits.
    pub fn forbidden(mut self, user: &str) -> Fault {
        self.action = FaultAction::Forbidden {
            user: user.to_string(),
        };
        self
    }

    /// 422 Invalid with one field error.
    pub fn invalid(self, group: &str, kind: &str, name: &str, field: &str, detail: &str) -> Fault {
        self.respond(StatusError::invalid(
            group,
            kind,
            name,
            &[FieldError::invalid(field, serde_json::Value::Null, detail)],
        ))
    }

    /// Wait, then answer normally.
    pub fn delay(mut self, d: Duration) -> Fault {
        self.action = FaultAction::Delay(d);
        self
    }

    /// Close the connection without answering.
    pub fn reset(mut self) -> Fault {
        self.action = FaultAction::Reset;
        self
    }

    /// Apply the request, then close the connection without answering (see
    /// [`FaultAction::LoseAnswer`]).
    pub fn lose_answer(mut self) -> Fault {
        self.action = FaultAction::LoseAnswer;
        self
    }

    /// Whether the rule applies to this request.
    pub fn matches(&self, method: &str, path: &str, raw_query: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.path {
            PathMatch::Any => true,
            PathMatch::Contains(s) => path.contains(s.as_str()),
            PathMatch::Regex(re) => {
                if raw_query.is_empty() {
                    re.is_match(path)
                } else {
                    re.is_match(&format!("{path}?{raw_query}"))
                }
            }
        }
    }
}

/// Random failures for a fraction of requests, from a seeded RNG so a run is repeatable.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// Share of matching requests that fail (0.0 to 1.0).
    pub fraction: f64,
    /// RNG seed.
    pub seed: u64,
    /// Only this method (`None`: any).
    pub method: Option<String>,
    /// Only paths containing this text (`None`: any).
    pub path_contains: Option<String>,
    /// Whether discovery requests may fail too.
    pub include_discovery: bool,
    /// The failures to pick from, uniformly.
    pub actions: Vec<FaultAction>,
}

impl Chaos {
    /// Transient failures (429 with Retry-After 1, 500, 503, 504, reset connections) for
    /// `fraction` of the resource requests.
    pub fn transient(fraction: f64, seed: u64) -> Chaos {
        let pick = |f: Fault| f.action;
        Chaos {
            fraction,
            seed,
            method: None,
            path_contains: None,
            include_discovery: false,
            actions: vec![
                pick(Fault::any().too_many_requests(1)),
                pick(Fault::any().internal_error()),
                pick(Fault::any().service_unavailable()),
                pick(Fault::any().gateway_timeout()),
                FaultAction::Reset,
            ],
        }
    }

    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Chaos {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only paths containing this text.
    pub fn path(mut self, path_contains: &str) -> Chaos {
        self.path_contains = Some(path_contains.to_string());
        self
    }

    /// Pick from these failures instead.
    pub fn actions(mut self, actions: Vec<FaultAction>) -> Chaos {
        self.actions = actions;
        self
    }
}

/// A running chaos configuration.
#[derive(Debug)]
pub struct ChaosState {
    /// The configuration.
    pub chaos: Chaos,
    rng: StdRng,
    /// Requests failed so far.
    pub injected: usize,
}

impl ChaosState {
    /// Start from the seed.
    pub fn new(chaos: Chaos) -> ChaosState {
        let rng = StdRng::seed_from_u64(chaos.seed);
        ChaosState {
            chaos,
            rng,
            injected: 0,
        }
    }

    /// Decide the fate of one request.
    pub fn roll(&mut self, method: &str, path: &str, discovery: bool) -> Option<FaultAction> {
        let c = &self.chaos;
        if (discovery && !c.include_discovery)
            || c.method.as_deref().is_some_and(|m| m != method)
            || c.path_contains
                .as_deref()
                .is_some_and(|p| !path.contains(p))
            || c.actions.is_empty()
        {
            return None;
        }
        if self.rng.random::<f64>() >= c.fraction {
            return None;
        }
        let i = self.rng.random_range(0..c.actions.len());
        self.injected += 1;
        Some(c.actions[i].clone())
    }
}
