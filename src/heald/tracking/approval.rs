//! Approval timeouts: each tracking pass looks at the runs waiting at their approval gate,
//! and applies `onTimeout` to those whose gate has waited its timeout (from the run's
//! creation), as heald and with the actor `timeout`: approve, or reject (the run then ends
//! `rejected` like a human's rejection). The write carries the run's resourceVersion, so a
//! human's decision taken meanwhile wins.

use serde_json::Value;
use tokio::time::Instant;

use crate::actions::approve::decide_on;
use crate::approval::{GateState, OnTimeout, TIMEOUT_ACTOR, Verdict, gate_deadline, gate_state};
use crate::heald::state::State;
use crate::render::Engine as Kind;

/// Apply `onTimeout` to the run `obj` of `engine` when its gate has timed out. Returns
/// whether a decision was written.
pub async fn expire(st: &State, engine: Kind, obj: &Value) -> bool {
    if gate_state(obj) != GateState::Waiting {
        return false;
    }
    let Some((when, on)) = gate_deadline(obj) else {
        return false;
    };
    if jiff::Timestamp::now() < when {
        return false;
    }
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let verdict = match on {
        OnTimeout::Approve => Verdict::Approve,
        OnTimeout::Reject => Verdict::Reject {
            reason: "nobody approved the run before its approval timed out".into(),
        },
    };
    let kube = st
        .k8s
        .kube()
        .with_deadline(Instant::now() + st.config.api_timeout);
    let mut current = obj.clone();
    match decide_on(
        &kube,
        engine,
        &mut current,
        &verdict,
        TIMEOUT_ACTOR,
        "heald",
    )
    .await
    {
        Ok(_) => {
            tracing::info!(
                correlation_id = s("/metadata/labels/heal.dev~1correlation-id"),
                run = s("/metadata/name"),
                on_timeout = on.as_str(),
                "the run's approval timed out: {}",
                verdict.past()
            );
            true
        }
        Err(e) if e.is_not_waiting() => false,
        Err(e) => {
            tracing::warn!(run = s("/metadata/name"), error = %e,
                "could not apply the approval timeout; trying again next pass");
            false
        }
    }
}
