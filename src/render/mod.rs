//! Rendering a [`Plan`](crate::plan::Plan) into what an engine runs: an Argo `Workflow`, a
//! Tekton `PipelineRun`, or a `HealPlan` document for heald's local engine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The workflow engine that carries out a remediation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Argo Workflows: a `Workflow` (`argoproj.io/v1alpha1`).
    Argo,
    /// Tekton Pipelines: a `PipelineRun` (`tekton.dev/v1`).
    Tekton,
    /// heald runs the DAG itself (a `HealPlan` document).
    Local,
}

impl Engine {
    /// Every engine, in the order users see them listed.
    pub const ALL: [Engine; 3] = [Engine::Argo, Engine::Tekton, Engine::Local];

    /// The lowercase name used in policies, flags and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Argo => "argo",
            Engine::Tekton => "tekton",
            Engine::Local => "local",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engine name that is not `argo`, `tekton` or `local`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?}: expected argo, tekton or local")]
pub struct UnknownEngine(pub String);

impl FromStr for Engine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "argo" => Ok(Engine::Argo),
            "tekton" => Ok(Engine::Tekton),
            "local" => Ok(Engine::Local),
            _ => Err(UnknownEngine(s.to_string())),
        }
    }
}
