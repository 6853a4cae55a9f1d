//! Shared code of heal's fuzz targets: the invariants each target checks. The same file is
//! compiled into `tests/properties.rs` and `tests/fuzz_regressions.rs`, so a finding can be
//! replayed with plain `cargo test`.

pub mod invariants;
