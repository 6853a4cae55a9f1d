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

#[cfg(test)]
mod tests {
    use crate::approval::OnTimeout;
    use crate::policy::PolicySet;

    fn policy(approval: &str, steps: &str) -> String {
        format!(
            "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata:\n  name: p\nspec:\n  \
             match: {{alertname: A}}\n  target: {{kind: deployment, namespace: shop, name: web}}\n  \
             approval: {approval}\n  steps:\n{steps}"
        )
    }

    const RESTART: &str = "    - {name: restart, action: restart}\n";

    fn errors(text: &str) -> String {
        PolicySet::from_yaml("p.yaml", text)
            .expect_err("the policy should be refused")
            .to_string()
    }

    #[test]
    fn an_approval_gate_is_read_with_reject_as_the_default() {
        let set = PolicySet::from_yaml("p.yaml", &policy("{timeout: 15m}", RESTART)).unwrap();
        let gate = set.policies[0].approval.unwrap();
        assert_eq!(gate.timeout.as_secs(), 900);
        assert_eq!(gate.on_timeout, OnTimeout::Reject);
        let set = PolicySet::from_yaml(
            "p.yaml",
            &policy("{timeout: 1h, onTimeout: approve}", RESTART),
        )
        .unwrap();
        assert_eq!(
            set.policies[0].approval.unwrap().on_timeout,
            OnTimeout::Approve
        );
    }

    #[test]
    fn approval_mistakes_are_errors_at_their_line() {
        let e = errors(&policy("{timeout: 15m, onTimeout: maybe}", RESTART));
        assert!(e.contains("p.yaml:8:"), "{e}");
        assert!(e.contains("unknown onTimeout \"maybe\""), "{e}");
        let e = errors(&policy("{timeout: soon}", RESTART));
        assert!(
            e.contains("p.yaml:8:") && e.contains("invalid duration"),
            "{e}"
        );
        let e = errors(&policy("{onTimeout: reject}", RESTART));
        assert!(e.contains("needs a `timeout`"), "{e}");
        let e = errors(&policy("{timeout: 15m, when: now}", RESTART));
        assert!(e.contains("p.yaml:8:") && e.contains("when"), "{e}");
        let e = errors(&policy(
            "{timeout: 15m}",
            "    - {name: check, action: verify, query: up, expect: empty}\n",
        ));
        assert!(e.contains("change nothing"), "{e}");
        let e = errors(&policy(
            "{timeout: 15m}",
            "    - {name: heal-approval, action: restart}\n",
        ));
        assert!(e.contains("p.yaml:10:") && e.contains("reserved"), "{e}");
    }
}
