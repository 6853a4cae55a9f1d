//! Reading policy files from disk: shared by `heal policy`/`heal render` and by heald,
//! so that neither reaches into the other's front end. A directory contributes its `*.yaml`
//! and `*.yml` files, sorted by name; loading reports every problem at its file and line.

use std::path::{Path, PathBuf};

use crate::policy::{LoadError, LoadErrors, PolicySet, SourceFile};

/// Read policy files; a directory contributes its `*.yaml` and `*.yml` files, sorted by name.
pub fn read_policy_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, LoadErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let io = |path: &Path, e: std::io::Error| LoadError::Io {
        path: path.to_path_buf(),
        message: if e.kind() == std::io::ErrorKind::InvalidData {
            format!("not a text file ({e}) (hint: policies are YAML text)")
        } else {
            format!("{e} (hint: check the path and its permissions)")
        },
    };
    for path in paths {
        if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(rd) => rd,
                Err(e) => {
                    errors.push(io(path, e));
                    continue;
                }
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                errors.push(LoadError::Io {
                    path: path.clone(),
                    message: "directory has no *.yaml or *.yml files".into(),
                });
            }
            for p in found {
                match std::fs::read_to_string(&p) {
                    Ok(text) => files.push(SourceFile {
                        path: p,
                        text,
                        from_directory: true,
                    }),
                    Err(e) => errors.push(io(&p, e)),
                }
            }
        } else {
            match std::fs::read_to_string(path) {
                Ok(text) => files.push(SourceFile::new(path.clone(), text)),
                Err(e) => errors.push(io(path, e)),
            }
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Read and load policies from files and directories.
pub fn load_policies(paths: &[PathBuf]) -> Result<PolicySet, LoadErrors> {
    PolicySet::parse(&read_policy_files(paths)?)
}
