//! `heal`, the step executor: each action against the test API server (exact requests,
//! exit codes, refusals that write nothing), its command line, the API server's faults and
//! lost answers, and `heal verify` against a real Prometheus.

#[path = "../heald_support/mod.rs"]
mod heald_support;
mod support;

mod apiserver_selftest;
mod approve_cli;
mod failure_api_faults;
mod failure_lost_answers;
mod heal_actions;
mod heal_cli;
mod heal_controllers;
mod heal_owner;
mod verify_prometheus;
