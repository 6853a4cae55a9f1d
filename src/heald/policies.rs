//! The policies and templates heald acts with, and reloading them when their files change:
//! a changed set is loaded and compiled in full first, and only a set without a single
//! error replaces the current one (a bad file is rejected with a log line and a metric,
//! and the old set stays).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::policy::PolicySet;
use crate::policy_files::read_policy_files;
use crate::render::{RenderOptions, Renderer};

/// Policies and templates that loaded without error.
#[derive(Debug)]
pub struct Loaded {
    /// The policies and notifiers.
    pub set: PolicySet,
    /// Templates, compiled.
    pub renderer: Renderer,
    /// Hash of every file read, to notice changes.
    pub digest: [u8; 32],
}

/// Why a set of files was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A policy file is missing, unreadable or invalid (every problem listed).
    #[error("{0}")]
    Policies(String),
    /// A template does not compile or the templates directory cannot be read.
    #[error(transparent)]
    Templates(#[from] crate::render::RenderError),
}

/// The current set, swapped atomically on reload.
#[derive(Debug)]
pub struct PolicyStore {
    paths: Vec<PathBuf>,
    render: RenderOptions,
    current: RwLock<Arc<Loaded>>,
}

impl PolicyStore {
    /// Load the files for the first time; any error is fatal at start-up.
    pub fn load(paths: &[PathBuf], templates: Option<&Path>) -> Result<PolicyStore, ReloadError> {
        let render = RenderOptions {
            templates_dir: templates.map(Path::to_path_buf),
            ..RenderOptions::default()
        };
        PolicyStore::load_with(paths, render)
    }

    /// [`PolicyStore::load`] with these render options (`templates_dir` is reloaded too).
    pub fn load_with(paths: &[PathBuf], render: RenderOptions) -> Result<PolicyStore, ReloadError> {
        let loaded = load(paths, &render)?;
        Ok(PolicyStore {
            paths: paths.to_vec(),
            render,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The set in use.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Read the files again; when they changed and load cleanly, use them. `Ok(true)`: a new
    /// set is in use; `Ok(false)`: nothing changed; `Err`: the new files are rejected and
    /// the old set stays.
    pub fn reload(&self) -> Result<bool, ReloadError> {
        let digest = digest(&self.paths, self.render.templates_dir.as_deref())?;
        if digest == self.current().digest {
            return Ok(false);
        }
        let loaded = load(&self.paths, &self.render)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(true)
    }
}

fn policy_errors(e: crate::policy::LoadErrors) -> ReloadError {
    ReloadError::Policies(
        e.0.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn load(paths: &[PathBuf], render: &RenderOptions) -> Result<Loaded, ReloadError> {
    let files = read_policy_files(paths).map_err(policy_errors)?;
    let set = PolicySet::parse(&files).map_err(policy_errors)?;
    let renderer = Renderer::new(render.clone())?;
    Ok(Loaded {
        set,
        renderer,
        digest: digest(paths, render.templates_dir.as_deref())?,
    })
}

/// Hash of the policy files' and templates' names and contents.
fn digest(paths: &[PathBuf], templates: Option<&Path>) -> Result<[u8; 32], ReloadError> {
    let mut h = Sha256::new();
    for f in read_policy_files(paths).map_err(policy_errors)? {
        h.update(f.path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    if let Some(dir) = templates {
        let mut files = Vec::new();
        for sub in ["argo", "tekton"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
        files.sort();
        for f in files {
            h.update(f.to_string_lossy().as_bytes());
            h.update([0]);
            h.update(std::fs::read(&f).unwrap_or_default());
            h.update([0]);
        }
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"apiVersion: heal.dev/v1alpha1
kind: HealingPolicy
metadata: {name: NAME}
spec:
  match: {alertname: X}
  target: {kind: deployment, namespace: shop, name: web}
  steps:
    - {name: restart, action: restart}
"#;

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_is_rejected_keeping_the_old_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, GOOD.replace("NAME", "first")).unwrap();
        let store = PolicyStore::load(&[dir.path().to_path_buf()], None).unwrap();
        assert!(!store.reload().unwrap(), "nothing changed");
        std::fs::write(&file, GOOD.replace("NAME", "second")).unwrap();
        assert!(store.reload().unwrap());
        assert_eq!(store.current().set.policies[0].name, "second");
        std::fs::write(&file, "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata: {name: x}\nspec: {oops: 1}\n").unwrap();
        let e = store.reload().unwrap_err().to_string();
        assert!(e.contains("oops"), "{e}");
        assert_eq!(
            store.current().set.policies[0].name,
            "second",
            "the old set stays"
        );
    }
}
