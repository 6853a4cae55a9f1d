//! Policies and rendering: `heal policy` and `heal render`, the rendered runs against the
//! upstream schemas, and property and fuzz-regression tests.

/// The fuzz targets' invariants, shared with `fuzz/`.
#[path = "../../fuzz/src/invariants.rs"]
#[allow(dead_code)] // the fuzz targets use what the tests do not
mod invariants;

mod fuzz_regressions;
mod policy_cli;
mod properties;
mod render;
