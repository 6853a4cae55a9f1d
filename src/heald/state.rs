//! Everything heald's handlers and background tasks share: the configuration, the current
//! policies, the Kubernetes client, the engines, the rate limiters, the recent history, the
//! metrics and the readiness switch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::heald::config::Config;
use crate::heald::engines::local::{LocalEngine, LocalRuns};
use crate::heald::engines::{ArgoServerEngine, Engine, Engines, KubeEngine};
use crate::heald::guards::ratelimit::SubmitLimiter;
use crate::heald::kube_io::K8s;
use crate::heald::policies::PolicyStore;
use crate::heald::reporting::metrics::Metrics;
use crate::heald::reporting::pending::Sweeps;
use crate::heald::reporting::remediations::{History, KeyedLocks, KnownRuns};
use crate::kube_api::Kube;
use crate::policy::PlanDefaults;
use crate::render::Engine as Kind;

/// Run names remembered per replica to answer repeated alerts without an API call.
const KNOWN_RUNS: usize = 100_000;

/// heald's shared state.
pub struct State {
    /// The configuration.
    pub config: Config,
    /// Policies and templates.
    pub policies: PolicyStore,
    /// The Kubernetes client.
    pub k8s: K8s,
    /// How a run's end is handled ([`tracking::finish`](crate::heald::tracking::finish)),
    /// for the local engine, which hands its runs' ends up without importing tracking.
    pub finish_run: crate::heald::tracking::FinishRun,
    /// Engines by kind.
    pub engines: Engines,
    /// Submission token buckets.
    pub limiter: SubmitLimiter,
    /// Recent decisions and outcomes.
    pub history: History,
    /// Runs this replica created or saw.
    pub known: KnownRuns,
    /// Alerts waiting for heald's Kubernetes request budget.
    pub deferred: crate::heald::intake::deferred::Deferred,
    /// One decision at a time per run name in this replica.
    pub deciding: KeyedLocks,
    /// Metrics.
    pub metrics: Metrics,
    /// Outbound HTTP client (Alertmanager, notifiers, Argo Server).
    pub http: reqwest::Client,
    /// What plans take when a policy does not say.
    pub plan_defaults: PlanDefaults,
    /// Local-engine runs executing in this replica, and this replica's holder identity.
    pub local: Arc<LocalRuns>,
    /// When the tracker looks for silences still owed to Alertmanager.
    pub sweeps: Sweeps,
    /// When this replica last told a human it stood down, per policy and target.
    pub notices: crate::heald::reporting::escalation::Notices,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .field("engines", &self.engines)
            .finish_non_exhaustive()
    }
}

/// Why heald could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The outbound HTTP client could not be built.
    #[error("{0}")]
    Http(String),
}

impl State {
    /// Build the state: Argo and Tekton runs are created through the Kubernetes API (Argo
    /// through the Argo Server when `--argo-server-url` is set), and local runs are
    /// executed by heald itself.
    pub fn new(config: Config, policies: PolicyStore, kube: Kube) -> Result<State, StateError> {
        let http = crate::heald::reporting::alertmanager_http::client(Duration::from_secs(10))
            .map_err(StateError::Http)?;
        let k8s = K8s::new(kube, config.kube_qps, config.kube_burst, config.api_timeout);
        let local = Arc::new(LocalRuns::new(&config.instance));
        let argo: Arc<dyn Engine> = match &config.argo_server_url {
            Some(url) => Arc::new(ArgoServerEngine::new(
                http.clone(),
                url,
                config.argo_server_token.clone(),
                k8s.clone(),
            )),
            None => Arc::new(KubeEngine::new(Kind::Argo, k8s.clone())),
        };
        let engines = Engines::new(
            argo,
            Arc::new(KubeEngine::new(Kind::Tekton, k8s.clone())),
            Arc::new(LocalEngine::new(k8s.clone(), Arc::clone(&local))),
        );
        let plan_defaults = PlanDefaults {
            run_namespace: config.run_namespace.clone(),
            service_account: config.service_account.clone(),
            image: config.image.clone(),
            report_url: config.report_url.clone(),
            ..PlanDefaults::default()
        };
        let (shutdown, _) = watch::channel(false);
        let metrics = Metrics::new();
        metrics
            .policies
            .set(i64::try_from(policies.current().set.policies.len()).unwrap_or(i64::MAX));
        Ok(State {
            limiter: SubmitLimiter::new(config.rate_limits),
            history: History::new(config.history),
            known: KnownRuns::new(KNOWN_RUNS),
            deferred: crate::heald::intake::deferred::Deferred::default(),
            deciding: KeyedLocks::default(),
            metrics,
            http,
            plan_defaults,
            local,
            sweeps: Sweeps::default(),
            notices: Default::default(),
            ready: AtomicBool::new(true),
            shutdown,
            engines,
            k8s,
            finish_run: crate::heald::tracking::finish_boxed,
            policies,
            config,
        })
    }

    /// Use `engine` for its kind instead of the default (tests, other submitters).
    pub fn with_engine(mut self, engine: Arc<dyn Engine>) -> State {
        self.engines.set(engine);
        self
    }

    /// Whether heald takes new work (false once shutdown starts).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Start shutting down: readiness turns false, listeners stop accepting, background
    /// loops finish what they are doing.
    pub fn begin_shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.shutdown.send_replace(true);
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that changes to `true` when shutdown starts.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
