//! Running heald: parse and validate the configuration (exit 2 on a bad value), set up
//! logging, connect to Kubernetes, bind both listeners (TLS on the webhook port when
//! configured), start tracking and reloading, and own shutdown: the first SIGTERM or SIGINT
//! turns readiness false, stops taking connections, lets in-flight answers finish (up to
//! `--shutdown-grace`), lets the tracker finish its pass, so Leases stay consistent, and
//! lets local runs finish (releasing those that do not, for another replica to resume); a
//! second signal aborts at once.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Parser;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::heald::config::{Args, Config, TlsFiles};
use crate::heald::policies::PolicyStore;
use crate::heald::server::{admin_router, router};
use crate::heald::state::State;
use crate::kube_api::{ConnectOptions, Kube};

/// Exit code for a configuration or start-up problem.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code after a second signal aborted the drain.
pub const EXIT_ABORTED: i32 = 130;

/// Why heald could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policies or templates do not load.
    #[error("policies: {0}")]
    Policies(#[from] crate::heald::policies::ReloadError),
    /// No Kubernetes configuration.
    #[error("kubernetes: {0}")]
    Kube(#[from] crate::kube_api::ApiError),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files are not a usable certificate and key.
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(String),
    /// Anything else while setting up.
    #[error("{0}")]
    Setup(String),
}

/// Run heald with these arguments (program name first); returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            eprintln!(
                "heald: {} (see 'heald --help')",
                crate::logging::usage_error_line(&e)
            );
            return EXIT_CONFIG;
        }
    };
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heald: {e}");
            return EXIT_CONFIG;
        }
    };
    crate::logging::init(Some(config.log_format), "HEALD_LOG");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("heald: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(async {
        match serve(config).await {
            Ok(code) => code,
            Err(e) => {
                // One line, on stderr, like every other fatal error (not also a log line).
                eprintln!("heald: {e}");
                EXIT_CONFIG
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Start heald with a validated configuration and run until shut down; returns the exit
/// code (0 after a clean drain, 130 when a second signal aborted it).
pub async fn serve(config: Config) -> Result<i32, ServeError> {
    let policies = PolicyStore::load_with(&config.policies, config.render_options())?;
    let kube = Kube::connect(
        &ConnectOptions {
            kubeconfig: config.kubeconfig.clone(),
            context: config.context.clone(),
        },
        tokio::time::Instant::now() + Duration::from_secs(3600),
    )
    .await?;
    let state =
        Arc::new(State::new(config, policies, kube).map_err(|e| ServeError::Setup(e.to_string()))?);
    let listeners = Listeners::bind(&state.config).await?;
    tracing::info!(
        listen = %listeners.web_addr,
        admin = %listeners.admin_addr,
        tls = state.config.tls.is_some(),
        policies = state.policies.current().set.policies.len(),
        dry_run = state.config.dry_run,
        "heald started"
    );
    let signals = tokio::spawn(watch_signals(Arc::clone(&state)));
    let code = run(Arc::clone(&state), listeners).await;
    signals.abort();
    Ok(code)
}

/// Both bound listeners.
pub struct Listeners {
    web: TcpListener,
    web_addr: SocketAddr,
    admin: TcpListener,
    admin_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Listeners {
    /// Bind the webhook and admin addresses and load the TLS material.
    pub async fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let web = bind(config.listen).await?;
        let admin = bind(config.admin_listen).await?;
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        Ok(Listeners {
            web_addr: web.local_addr().unwrap_or(config.listen),
            admin_addr: admin.local_addr().unwrap_or(config.admin_listen),
            web,
            admin,
            tls,
        })
    }

    /// The webhook listener's address (its port when 0 was asked for).
    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve until shutdown: both listeners, the tracker and the reloader. Returns the exit
/// code.
pub async fn run(state: Arc<State>, listeners: Listeners) -> i32 {
    let stop = state.shutdown_signal();
    let grace = state.config.shutdown_grace;
    let tracker = tokio::spawn(crate::heald::tracking::run(Arc::clone(&state)));
    let intents = tokio::spawn(crate::heald::intake::intents::run(Arc::clone(&state)));
    let deferred = tokio::spawn(crate::heald::intake::deferred::run(Arc::clone(&state)));
    let reloader = tokio::spawn(reload_loop(Arc::clone(&state)));
    // The admin port stays up during the drain so /readyz can say so.
    let (admin_stop_tx, admin_stop) = watch::channel(false);
    let admin = tokio::spawn(serve_listener(
        listeners.admin,
        admin_router(Arc::clone(&state)),
        None,
        admin_stop,
        Duration::from_secs(1),
    ));
    serve_listener(
        listeners.web,
        router(Arc::clone(&state)),
        listeners.tls,
        stop,
        grace,
    )
    .await;
    tracing::info!("webhook listener drained; waiting for the tracker to finish its pass");
    if tokio::time::timeout(grace, tracker).await.is_err() {
        tracing::warn!("the tracker did not finish within the shutdown grace");
    }
    // Local runs get the same grace; what is left is released for a replica to resume.
    crate::heald::engines::local::drain(&state, grace).await;
    intents.abort();
    // Deferred alerts left now were never held or silenced: Alertmanager brings them again.
    if !state.deferred.is_empty() {
        tracing::warn!(
            alerts = state.deferred.len(),
            "stopping with deferred alerts not decided; Alertmanager's next notification brings them again"
        );
    }
    deferred.abort();
    reloader.abort();
    admin_stop_tx.send_replace(true);
    let _ = admin.await;
    tracing::info!("heald stopped");
    0
}

/// Accept connections until `stop` turns true, then let open connections finish their
/// requests (up to `grace`).
pub async fn serve_listener(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, _peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(watcher.watch(conn));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    let Ok(Ok(tls_stream)) = handshake else {
                        return;
                    };
                    let conn = http.serve_connection(TokioIo::new(tls_stream), service);
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the shutdown grace");
    }
}

/// Reload policies and templates when their files change.
async fn reload_loop(state: Arc<State>) {
    let every = state.config.reload_interval;
    if every.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(every).await;
        let st = Arc::clone(&state);
        let result = tokio::task::spawn_blocking(move || st.policies.reload()).await;
        match result {
            Ok(Ok(true)) => {
                state.metrics.reloads.inc();
                let n = state.policies.current().set.policies.len();
                state
                    .metrics
                    .policies
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
                tracing::info!(policies = n, "policies reloaded");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                state.metrics.reload_failures.inc();
                tracing::error!(error = %e, "policy reload rejected; the previous policies stay in use");
            }
            Err(e) => tracing::error!(error = %e, "policy reload failed"),
        }
    }
}

/// The first SIGTERM or SIGINT starts the drain; a second one exits at once.
async fn watch_signals(state: Arc<State>) {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for signals");
            return;
        }
    };
    signals.next().await;
    tracing::info!("shutdown requested: readiness off, finishing in-flight requests");
    state.begin_shutdown();
    signals.next().await;
    tracing::warn!("second signal: aborting");
    std::process::exit(EXIT_ABORTED);
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
