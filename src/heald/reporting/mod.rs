//! Reporting: Alertmanager silences and notifiers (the outside world heald tells), the
//! recent-decisions list and the metrics.
pub mod alertmanager_http;
pub mod metrics;
pub mod notify_http;
pub mod pending;
pub mod remediations;
