//! heal: alert-driven, self-healing remediation for Kubernetes.
//!
//! Pure modules (no Kubernetes client, no I/O): [`address`], [`approval`], [`outcome`], [`guard`],
//! [`alert`], [`matcher`], [`policy`], [`render`], [`yaml`].
//! Modules that talk to the outside world say so in their names: [`kube_api`], [`actions`].

pub mod actions;
pub mod address;
pub mod alert;
pub mod approval;
pub mod cli;
pub mod cli_approve;
pub mod duration;
pub mod guard;
pub mod heald;
pub mod kube_api;
pub mod logging;
pub mod matcher;
pub mod offline;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod policy_files;
pub mod prometheus_http;
pub mod render;
pub mod report_http;
pub mod step;
pub mod yaml;
