//! `heald`, the injector: its HTTP interface, its Kubernetes writes, the binary, storms,
//! kills at every gap between its effects, a real Alertmanager, the local engine, the
//! notifiers, and secrets kept out of its logs.

#[path = "../heald_support/mod.rs"]
mod heald_support;

mod approval;
mod failure_alertmanager;
mod failure_heald_kill;
mod failure_kill_points;
mod heald_bench;
mod heald_binary;
mod heald_kube;
mod heald_router;
mod local_engine;
mod local_engine_bench;
mod notifiers;
mod secrets_not_logged;
