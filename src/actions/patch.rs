//! `heal patch`: merge, JSON, strategic merge, or server-side apply (field manager `heal`).

use http::Method;
use serde_json::{Value, json};

use super::{ActionError, Ctx, Done, int, str_at};
use crate::address::Address;
use crate::kube_api::{APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH};
use crate::outcome::Outcome;

/// The field manager heal writes with.
pub const FIELD_MANAGER: &str = "heal";

/// Patch strategies, as `kubectl patch --type` names them (plus `apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PatchType {
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902).
    Json,
    /// Strategic merge patch.
    Strategic,
    /// Server-side apply with field manager `heal` (forced).
    Apply,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => MERGE_PATCH,
            PatchType::Json => JSON_PATCH,
            PatchType::Strategic => STRATEGIC_PATCH,
            PatchType::Apply => APPLY_PATCH,
        }
    }
}

/// Options of `heal patch`: the patch, already parsed and checked.
#[derive(Debug, Clone)]
pub struct PatchSpec {
    /// Strategy.
    pub kind: PatchType,
    /// The patch document.
    pub patch: Value,
}

impl PatchSpec {
    /// Parse a patch given as JSON or YAML text, checking its shape for the strategy.
    pub fn parse(kind: PatchType, text: &str) -> Result<PatchSpec, String> {
        let patch: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(json_err) => crate::yaml::from_str(text)
                .map_err(|_| format!("invalid patch: not valid JSON ({json_err}) nor YAML"))?,
        };
        match (kind, &patch) {
            (PatchType::Json, Value::Array(ops)) => {
                serde_json::from_value::<json_patch::Patch>(Value::Array(ops.clone()))
                    .map_err(|e| format!("invalid JSON patch: {e}"))?;
            }
            (PatchType::Json, _) => {
                return Err("invalid JSON patch: expected an array of operations".into());
            }
            (_, Value::Object(_)) => {}
            _ => {
                return Err(
                    format!("invalid {kind:?} patch: expected a JSON object").to_lowercase()
                );
            }
        }
        Ok(PatchSpec { kind, patch })
    }
}

pub(super) async fn run(
    ctx: &mut Ctx<'_>,
    addr: &Address,
    spec: &PatchSpec,
) -> Result<Done, ActionError> {
    let (rt, ns) = ctx.resolve(addr).await?;
    ctx.check_namespace(ns.as_deref())?;
    let obj = super::get_required(ctx.kube, &rt, ns.as_deref(), &addr.name).await?;
    ctx.check_object(&obj)?;
    let rv_before = str_at(&obj, "/metadata/resourceVersion").map(str::to_string);
    let before =
        json!({"resourceVersion": rv_before, "generation": int(&obj, "/metadata/generation")});

    // Merge and JSON patches have exact local semantics: skip the write when it would
    // change nothing. Strategic and apply are decided by the server (unchanged
    // resourceVersion below).
    let local = match spec.kind {
        PatchType::Merge => {
            let mut copy = obj.clone();
            json_patch::merge(&mut copy, &spec.patch);
            Some(copy)
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(spec.patch.clone())
                .map_err(|e| ActionError::Usage(format!("invalid JSON patch: {e}")))?;
            let mut copy = obj.clone();
            // A failing `test` op is for the server to report (422), as kubectl would see.
            json_patch::patch(&mut copy, &ops).ok().map(|_| copy)
        }
        _ => None,
    };
    if local.as_ref() == Some(&obj) {
        return Ok(Done {
            outcome: Outcome::Noop,
            after: before.clone(),
            before,
            message: format!("{} already matches the patch", ctx.target_name()),
            reason: "HealPatched",
        });
    }

    let mut body = spec.patch.clone();
    let mut query = format!("fieldManager={FIELD_MANAGER}");
    if spec.kind == PatchType::Apply {
        query.push_str("&force=true");
        if let Some(o) = body.as_object_mut() {
            o.entry("apiVersion").or_insert(json!(rt.api_version()));
            o.entry("kind").or_insert(json!(rt.kind));
            let meta = o.entry("metadata").or_insert(json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.entry("name").or_insert(json!(addr.name));
                if let Some(ns) = &ns {
                    m.entry("namespace").or_insert(json!(ns));
                }
            }
        }
    }
    if ctx.common.dry_run {
        query.push_str("&dryRun=All");
    }
    let url = format!("{}?{query}", rt.object_path(ns.as_deref(), &addr.name));
    let answer = ctx
        .write(
            Method::PATCH,
            &url,
            Some(spec.kind.content_type()),
            Some(&body),
        )
        .await
        .map_err(|e| match e.code() {
            Some(400 | 422) => {
                ActionError::Failed(format!("the API server rejected the patch: {e}"))
            }
            _ => e.into(),
        })?;
    let rv_after = str_at(&answer, "/metadata/resourceVersion").map(str::to_string);
    let after =
        json!({"resourceVersion": rv_after, "generation": int(&answer, "/metadata/generation")});
    if !ctx.common.dry_run && rv_after.is_some() && rv_after == rv_before {
        return Ok(Done {
            outcome: Outcome::Noop,
            before,
            after,
            message: format!("{} already matched the patch", ctx.target_name()),
            reason: "HealPatched",
        });
    }
    Ok(Done {
        outcome: ctx.changed(),
        before,
        after,
        message: if ctx.common.dry_run {
            format!("would patch {} ({:?})", ctx.target_name(), spec.kind).to_lowercase()
        } else {
            format!("patched {} ({:?})", ctx.target_name(), spec.kind).to_lowercase()
        },
        reason: "HealPatched",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_checked_before_anything_is_sent() {
        assert!(PatchSpec::parse(PatchType::Merge, r#"{"spec":{"replicas":2}}"#).is_ok());
        assert!(PatchSpec::parse(PatchType::Merge, "spec:\n  replicas: 2\n").is_ok());
        let e = PatchSpec::parse(PatchType::Merge, "{not json").unwrap_err();
        assert!(e.contains("invalid patch"), "{e}");
        let e = PatchSpec::parse(PatchType::Json, r#"{"op":"add"}"#).unwrap_err();
        assert!(e.contains("array"), "{e}");
        let e = PatchSpec::parse(PatchType::Json, r#"[{"op":"frob","path":"/a"}]"#).unwrap_err();
        assert!(e.contains("invalid JSON patch"), "{e}");
        assert!(PatchSpec::parse(PatchType::Strategic, "[1]").is_err());
    }
}
