//! Reporting: Alertmanager silences and notifiers (the outside world heald tells: a generic
//! webhook, Slack, PagerDuty, Opsgenie, Microsoft Teams; who is told what and how often),
//! the recent-decisions list and the metrics.
pub mod alertmanager_http;
pub mod approval;
pub mod escalation;
pub mod metrics;
pub mod notify_http;
pub mod opsgenie;
pub mod pagerduty;
pub mod pending;
pub mod remediations;
pub mod teams;
