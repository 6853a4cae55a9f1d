//! Test support shared by heal's unit tests, integration tests and benchmarks: the test
//! Kubernetes API server ([`apiserver`]), a real Prometheus ([`prometheus`]), where the
//! upstream reference data is, which external tools this machine has, and how a test that
//! needs something missing skips (or, under `CI=true`, fails).
//!
//! A skip is announced on the test process's real stderr, past the test harness's output
//! capture, so `cargo test` shows it:
//!
//! ```text
//! skipped tests::name: needs the upstream reference data at /work/shared/reference (set HEAL_REFERENCE_DIR)
//! ```

pub mod apiserver;
pub mod prometheus;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether the tests run under CI (`CI=true`), where a missing prerequisite is a failure
/// rather than a skip.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Where the upstream Argo, Tekton and Alertmanager reference files are:
/// `$HEAL_REFERENCE_DIR`, else `shared/reference` beside the repository's checkout.
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("HEAL_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // testkit/ is inside the checkout; the reference data is beside the checkout.
            let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("testkit is inside the repository");
            checkout
                .parent()
                .unwrap_or(checkout)
                .join("shared/reference")
        }
    }
}

/// Whether the reference data is here. When it is not, announces that the calling test is
/// skipped and returns false.
///
/// # Panics
/// Under `CI=true` when the reference data is missing: CI must not skip.
pub fn reference_available() -> bool {
    let dir = reference_dir();
    if dir.is_dir() {
        return true;
    }
    let why = format!(
        "needs the upstream reference data at {} (set HEAL_REFERENCE_DIR)",
        dir.display()
    );
    assert!(!ci(), "CI=true, but this test {why}");
    skip(&why);
    false
}

/// A file of the reference data, read whole.
///
/// # Panics
/// When it cannot be read, naming the path and `HEAL_REFERENCE_DIR`.
pub fn reference_bytes(relative: &str) -> Vec<u8> {
    let path = reference_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reference file {}: {e} (set HEAL_REFERENCE_DIR to the reference directory)",
            path.display()
        )
    })
}

/// [`reference_bytes`] as text.
pub fn reference_text(relative: &str) -> String {
    String::from_utf8(reference_bytes(relative))
        .unwrap_or_else(|e| panic!("reference file {relative} is not UTF-8: {e}"))
}

/// The first of `candidates` that answers its version question (`--version`; kubectl's is
/// `version --client`), if any (a candidate may be a path or a name on the `PATH`).
pub fn find_tool<P: AsRef<Path>>(candidates: &[P]) -> Option<PathBuf> {
    candidates.iter().map(|c| c.as_ref()).find_map(|c| {
        let probe: &[&str] = if c.file_name().is_some_and(|n| n == "kubectl") {
            &["version", "--client"]
        } else {
            &["--version"]
        };
        Command::new(c)
            .args(probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| c.to_path_buf())
    })
}

/// Which tests need a missing tool may skip even under CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    /// `.ci/run` installs the tool, so under `CI=true` its absence is a failure.
    InCi,
    /// The tool is optional everywhere (kubectl: Debian 12 does not package a current one).
    Optional,
}

/// The tool (the first candidate that answers `--version`), or `None` after announcing
/// that the calling test is skipped; `install` says how to get it.
///
/// # Panics
/// Under `CI=true` when a tool that is [`Required::InCi`] is missing.
pub fn tool_or_skip<P: AsRef<Path>>(
    candidates: &[P],
    install: &str,
    required: Required,
) -> Option<PathBuf> {
    let found = find_tool(candidates);
    if found.is_none() {
        let names: Vec<String> = candidates
            .iter()
            .map(|c| c.as_ref().display().to_string())
            .collect();
        let why = format!("needs {} ({install})", names.join(" or "));
        assert!(
            !(ci() && required == Required::InCi),
            "CI=true, but this test {why}"
        );
        skip(&why);
    }
    found
}

/// Announces on the real stderr (past the harness's capture) that the running test is
/// skipped, and why.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// Returns from the calling test (after announcing the skip) when the upstream reference
/// data is missing; under `CI=true` fails instead.
#[macro_export]
macro_rules! require_reference {
    () => {
        if !$crate::reference_available() {
            return;
        }
    };
    ($skipped:expr) => {
        if !$crate::reference_available() {
            return $skipped;
        }
    };
}

/// Prints a measured figure on the real stderr (past the harness's capture), so that
/// `cargo test` shows it without `--nocapture`.
pub fn report(line: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "{test}: {line}");
}
