//! Shared test support: an in-memory Kubernetes API server (`apiserver`).
#![allow(dead_code)] // shared by many test binaries, each uses a part

pub mod apiserver;
pub mod prometheus;
