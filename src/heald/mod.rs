//! heald, the injector service: receives Alertmanager webhooks, decides per alert whether
//! acting now is safe, submits the rendered run to its engine, follows it to the end and
//! reports back.
//!
//! Its parts, each a folder, from the bottom up (a part imports only the parts below it,
//! and the shared ground: [`config`], [`kube_io`], [`state`], [`policies`],
//! [`failpoint`]):
//!
//! - [`guards`]: the Leases that hold targets and count failures, and the token buckets
//!   (pure documents, read and written through [`kube_io`]);
//! - [`engines`]: the one seam to what carries a run out (Argo, Argo Server, Tekton, and
//!   heald's own local engine): submit, read the outcome, cancel;
//! - [`reporting`]: Alertmanager silences, notifiers, the recent-decisions list, metrics;
//! - [`tracking`]: following runs to their end (watches and the periodic pass) and
//!   handling each end once;
//! - [`intake`]: the webhook's alerts: observe, decide (pure), act; deferred alerts and
//!   the intents a stopped replica left.
//!
//! On top: [`server`] (the HTTP routers) and [`service`] (start-up, listeners, reload and
//! shutdown).

pub mod approval;
pub mod config;
pub mod engines;
pub mod failpoint;
pub mod guards;
pub mod intake;
pub mod kube_io;
pub mod policies;
pub mod reporting;
pub mod server;
pub mod service;
pub mod state;
pub mod tracking;

pub use config::{Args, Config, ConfigError};
pub use intake::decide::Decision;
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
/// Annotation naming the Lease that counts the policy's unfinished runs
/// (`guards.maxInFlight`), which the run holds a slot of until it ends.
pub const IN_FLIGHT_ANNOTATION: &str = "heal.dev/in-flight-lease";
/// Annotation with the run's deadline in seconds.
pub const DEADLINE_ANNOTATION: &str = "heal.dev/deadline-seconds";
/// Annotation with the id of the Alertmanager silence made while the run is in progress.
pub const SILENCE_ANNOTATION: &str = "heal.dev/silence-id";
/// Annotation with the step results `heal report` sent (JSON, truncated).
pub const RESULTS_ANNOTATION: &str = "heal.dev/results";
/// Annotation heald sets on a run it cancelled because its alert resolved: the reason.
pub const CANCELLED_ANNOTATION: &str = "heal.dev/cancelled";
