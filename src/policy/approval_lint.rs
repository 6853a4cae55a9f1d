//! Reading and checking a policy's `approval: {timeout, onTimeout}`. Pure.

use super::load::{IntOrString, Issue, at, duration, issue, k};
use crate::approval::{Approval, GATE_TASK, OnTimeout, changes};
use crate::yaml::Segment;

/// The gate `spec.approval` asks for, or `None` with the problems added to `issues`.
/// `steps` are the policy's steps as `(name, action)`.
pub(super) fn approval<'a>(
    timeout: Option<&IntOrString>,
    on_timeout: Option<&str>,
    steps: impl IntoIterator<Item = (&'a str, &'a str)>,
    spec: &[Segment],
    issues: &mut Vec<Issue>,
) -> Option<Approval> {
    let base = at(spec, &[k("approval")]);
    let before = issues.len();
    let timeout = match timeout {
        Some(t) => duration(t, &at(&base, &[k("timeout")]), issues),
        None => {
            issues.push(issue(
                &base,
                "`approval` needs a `timeout`: a run nobody answers must still end",
                "write `approval: {timeout: 15m, onTimeout: reject}`",
            ));
            None
        }
    };
    let on_timeout = match on_timeout {
        None => OnTimeout::Reject,
        Some(word) => OnTimeout::from_name(word).unwrap_or_else(|| {
            issues.push(issue(
                &at(&base, &[k("onTimeout")]),
                format!("unknown onTimeout {word:?}"),
                "use reject (the default: the run ends rejected) or approve (the run goes on)",
            ));
            OnTimeout::Reject
        }),
    };
    let mut changing = 0;
    for (i, (name, action)) in steps.into_iter().enumerate() {
        if name == GATE_TASK {
            issues.push(issue(
                &at(spec, &[k("steps"), Segment::Index(i), k("name")]),
                format!("the step name {GATE_TASK:?} is reserved for the approval gate"),
                "rename the step",
            ));
        }
        if changes(action) {
            changing += 1;
        }
    }
    if changing == 0 {
        issues.push(issue(
            &base,
            "`approval` on a policy whose steps change nothing (only verify and wait)",
            "remove `approval`: there is nothing to approve",
        ));
    }
    if issues.len() > before {
        return None;
    }
    Some(Approval {
        timeout: timeout?,
        on_timeout,
    })
}
