//! `heal wait`: poll until a rollout completes, a condition holds, or an object is gone.

use serde_json::{Value, json};

use super::{ActionError, Ctx, Done, get_opt, int, poll_sleep, str_at};
use crate::address::{Address, ResourceType};
use crate::outcome::Outcome;
use crate::step::{WaitFor, WaitSpec};

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &WaitSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    ctx.check_namespace(ns.as_deref())?;
    let path = rt.object_path(ns.as_deref(), &addr.name);
    let what = match &spec.for_ {
        WaitFor::Rollout => {
            let status = rollout(ctx, &rt, ns.as_deref(), &addr.name).await?;
            return Ok(Done {
                outcome: Outcome::Noop,
                before: Value::Null,
                after: status,
                message: format!("rollout of {} is complete", ctx.target_name()),
                reason: "HealWaited",
            });
        }
        WaitFor::Delete => "deleted".to_string(),
        WaitFor::Condition { name, value } => format!("condition {name}={value}"),
    };
    let mut first_uid: Option<String> = None;
    let mut attempt = 0;
    loop {
        let obj = match get_opt(ctx.kube, &path).await {
            Ok(o) => o,
            // The deadline passed during a poll after the wait had seen its object unmet:
            // the wait timed out, as it does when the deadline passes between polls.
            Err(ActionError::Transient(_))
                if attempt > 0 && tokio::time::Instant::now() >= ctx.kube.deadline() =>
            {
                return Err(ActionError::Failed(format!(
                    "timed out waiting for {} to be {what}",
                    ctx.target_name()
                )));
            }
            Err(e) => return Err(e),
        };
        let met = match (&spec.for_, &obj) {
            (WaitFor::Delete, None) => true,
            (WaitFor::Delete, Some(o)) => {
                let uid = str_at(o, "/metadata/uid").map(str::to_string);
                if first_uid.is_none() {
                    first_uid = uid.clone();
                    if let Some(u) = &uid {
                        ctx.target.uid = Some(u.clone());
                    }
                }
                uid != first_uid
            }
            (WaitFor::Condition { name, value }, Some(o)) => {
                ctx.check_object(o)?;
                condition(o, name) == Some(value.as_str())
            }
            (WaitFor::Condition { .. }, None) => {
                return Err(ActionError::Failed(format!(
                    "{} {:?} not found",
                    rt.qualified_plural(),
                    addr.name
                )));
            }
            (WaitFor::Rollout, _) => unreachable!("handled above"),
        };
        if met {
            return Ok(Done {
                outcome: Outcome::Noop,
                before: Value::Null,
                after: json!({"met": what}),
                message: format!("{} is {what}", ctx.target_name()),
                reason: "HealWaited",
            });
        }
        if !poll_sleep(ctx.kube, attempt).await {
            return Err(ActionError::Failed(format!(
                "timed out waiting for {} to be {what}",
                ctx.target_name()
            )));
        }
        attempt += 1;
    }
}

/// The status of condition `name` of an object.
pub fn condition<'v>(obj: &'v Value, name: &str) -> Option<&'v str> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(name))?
        .get("status")?
        .as_str()
}

/// Whether a rollout is complete, failed, or still going (with a reason), following
/// `kubectl rollout status`.
pub fn rollout_state(kind: &str, obj: &Value) -> Result<bool, String> {
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    if observed < generation {
        return Ok(false);
    }
    let want = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match kind {
        "Deployment" => {
            let progressing = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing"))
                });
            if let Some(p) = progressing
                && p.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            {
                return Err("rollout exceeded its progress deadline".into());
            }
            let updated = int(obj, "/status/updatedReplicas");
            let replicas = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            Ok(updated >= want && replicas <= updated && available >= updated)
        }
        "StatefulSet" => {
            let ready = int(obj, "/status/readyReplicas");
            let updated = int(obj, "/status/updatedReplicas");
            let revisions_match = match (
                str_at(obj, "/status/updateRevision"),
                str_at(obj, "/status/currentRevision"),
            ) {
                (Some(u), Some(c)) => u == c,
                _ => true,
            };
            Ok(ready >= want && updated >= want && revisions_match)
        }
        "DaemonSet" => {
            let desired = int(obj, "/status/desiredNumberScheduled");
            Ok(int(obj, "/status/updatedNumberScheduled") >= desired
                && int(obj, "/status/numberAvailable") >= desired)
        }
        other => Err(format!("{other} has no rollout to wait for")),
    }
}

/// Poll a workload until its rollout completes; fail on a progress deadline or timeout.
pub(super) async fn rollout(
    ctx: &mut Ctx<'_>,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ActionError> {
    let path = rt.object_path(ns, name);
    let mut attempt = 0;
    loop {
        let obj = super::get_required(ctx.kube, rt, ns, name).await?;
        match rollout_state(&rt.kind, &obj) {
            Ok(true) => {
                return Ok(json!({
                    "generation": int(&obj, "/metadata/generation"),
                    "observedGeneration": int(&obj, "/status/observedGeneration"),
                    "readyReplicas": int(&obj, "/status/readyReplicas"),
                    "updatedReplicas": int(&obj, "/status/updatedReplicas"),
                }));
            }
            Ok(false) => {}
            Err(why) => {
                return Err(ActionError::Failed(format!("{}: {why}", ctx.target_name())));
            }
        }
        if !poll_sleep(ctx.kube, attempt).await {
            return Err(ActionError::Failed(format!(
                "timed out waiting for the rollout of {} ({path})",
                ctx.target_name()
            )));
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_targets_parse() {
        assert_eq!("rollout".parse(), Ok(WaitFor::Rollout));
        assert_eq!(
            "condition=Available".parse(),
            Ok(WaitFor::Condition {
                name: "Available".into(),
                value: "True".into()
            })
        );
        assert_eq!(
            "condition=Ready=False".parse(),
            Ok(WaitFor::Condition {
                name: "Ready".into(),
                value: "False".into()
            })
        );
        assert!("ready".parse::<WaitFor>().is_err());
    }

    #[test]
    fn deployment_rollout_completes_when_all_replicas_are_updated_and_available() {
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(rollout_state("Deployment", &d), Ok(false));
        d["status"]["replicas"] = json!(2);
        assert_eq!(rollout_state("Deployment", &d), Ok(true));
        d["status"]["observedGeneration"] = json!(1);
        assert_eq!(rollout_state("Deployment", &d), Ok(false));
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        d["status"]["observedGeneration"] = json!(2);
        assert!(rollout_state("Deployment", &d).is_err());
    }
}
