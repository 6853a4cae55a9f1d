//! heald, the injector service: receives Alertmanager webhooks, decides per alert whether
//! acting now is safe, submits the rendered run to its engine, follows it to the end and
//! reports back.
//!
//! Pure parts (no I/O): [`config`] parsing and validation, [`decide`] (the decision for one
//! alert from what was read), [`lease`] (the Lease document holding locks, cooldowns and
//! failure counts), [`pending`] (Alertmanager deliveries a run still owes),
//! [`ratelimit`] (token buckets), [`runs`] (reading a run's outcome),
//! [`local_run`] (a local-engine run's ConfigMap and the scheduling of its steps),
//! [`remediations`] (the recent-decisions ring buffer) and [`metrics`].
//! Parts that talk to the outside say so: [`kube_io`] (Leases, runs and Events through
//! [`Kube`](crate::kube_api::Kube)), [`engines`] (the one trait seam: Argo, Tekton, Argo
//! Server), [`local`] (the local engine: heald runs the steps itself),
//! [`alertmanager_http`] and [`notify_http`] (silences and notifiers), [`intake`]
//! (performing decisions), [`intents`] (completing the runs a stopped heald recorded the
//! intent of), [`failpoint`] (debug-build kill points for the kill tests), [`track`] (following runs) and [`watch`] (watching them),
//! [`server`] (the HTTP routers) and
//! [`service`] (start-up, listeners, reload and shutdown).

pub mod alertmanager_http;
pub mod config;
pub mod decide;
pub mod deferred;
pub mod engines;
pub mod failpoint;
pub mod intake;
pub mod intents;
pub mod kube_io;
pub mod lease;
pub mod local;
pub mod local_run;
pub mod metrics;
pub mod notify_http;
pub mod pending;
pub mod policies;
pub mod ratelimit;
pub mod remediations;
pub mod runs;
pub mod server;
pub mod service;
pub mod state;
pub mod track;
pub mod watch;

pub use config::{Args, Config, ConfigError};
pub use decide::Decision;
pub use server::{admin_router, router};
pub use service::{main_with_args, serve};
pub use state::State;

/// Label every object heald creates carries (`app.kubernetes.io/managed-by: heald`).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label heald sets on a run once its outcome has been handled, so it is handled once.
pub const REPORTED_LABEL: &str = "heal.dev/reported";
/// Label heald sets on a run with its outcome (`succeeded`, `failed`, `timed-out`).
pub const OUTCOME_LABEL: &str = "heal.dev/outcome";
/// Annotation with the alert's labels as JSON, for the silence made when the run succeeds.
pub const ALERT_LABELS_ANNOTATION: &str = "heal.dev/alert-labels";
/// Annotation naming the Lease that holds the run's target.
pub const LEASE_ANNOTATION: &str = "heal.dev/lease";
/// Annotation with the run's deadline in seconds.
pub const DEADLINE_ANNOTATION: &str = "heal.dev/deadline-seconds";
/// Annotation with the id of the Alertmanager silence made while the run is in progress.
pub const SILENCE_ANNOTATION: &str = "heal.dev/silence-id";
/// Annotation with the step results `heal report` sent (JSON, truncated).
pub const RESULTS_ANNOTATION: &str = "heal.dev/results";
/// Annotation heald sets on a run it cancelled because its alert resolved: the reason.
pub const CANCELLED_ANNOTATION: &str = "heal.dev/cancelled";
