//! heald's configuration: command-line flags, each with a `HEALD_*` environment variable,
//! over an optional YAML `--config` file, over defaults; parsed in two stages (raw
//! [`Args`] and [`FileConfig`], then a validated [`Config`]) so that a bad value stops
//! heald at start-up with one line naming it. Pure except for reading the token and the
//! config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::logging::LogFormat;
use crate::render::Engine;

/// Default address of the webhook listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default address of the admin listener (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";
/// Default limit of a request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is malformed or out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The flag (or config file key) at fault, e.g. `--listen`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A file named in the configuration cannot be read.
    #[error("{field}: cannot read {}: {source}", .path.display())]
    Io {
        /// The flag naming the file.
        field: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `--config` file is not valid YAML for heald.
    #[error("--config {}: {message}", .path.display())]
    File {
        /// The config file.
        path: PathBuf,
        /// The parser's message with its location.
        message: String,
    },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// heald's command line. Every flag can also be set with the `HEALD_*` variable shown, or
/// in the `--config` file under the camelCase key (flags and variables win over the file).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "heald",
    version,
    about = "heald: the heal injector. Receives Alertmanager webhooks, decides, submits \
             remediation runs to Argo Workflows or Tekton, follows them and reports back."
)]
pub struct Args {
    /// YAML file with any of the settings below (camelCase keys, e.g. `listen: 0.0.0.0:8080`)
    #[arg(long, env = "HEALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the webhook listener [default: 0.0.0.0:8080]
    #[arg(long, env = "HEALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the admin listener with /healthz, /readyz, /metrics [default: 0.0.0.0:9090]
    #[arg(long, env = "HEALD_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Policy files or directories (repeatable; the variable takes a comma-separated list)
    #[arg(
        long = "policies",
        env = "HEALD_POLICIES",
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub policies: Vec<PathBuf>,
    /// Directory of workflow templates replacing the embedded ones (same layout as
    /// workflow-templates/)
    #[arg(long, env = "HEALD_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// File holding the bearer token webhook and report callers must send (e.g. a mounted
    /// Secret)
    #[arg(long, env = "HEALD_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself; prefer --token-file, since flags show in `ps`
    #[arg(
        long,
        env = "HEALD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the bearer token callers of POST /v1/runs/{namespace}/{name}/approve and
    /// /reject must send (chat buttons); without it (or --approval-token) those endpoints
    /// answer 401 to everyone
    #[arg(long, env = "HEALD_APPROVAL_TOKEN_FILE", value_name = "FILE")]
    pub approval_token_file: Option<PathBuf>,
    /// The approval token itself; prefer --approval-token-file, since flags show in `ps`
    #[arg(
        long,
        env = "HEALD_APPROVAL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub approval_token: Option<String>,
    /// Accept unauthenticated requests (local experiments only)
    #[arg(long, env = "HEALD_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// PEM certificate chain: serve the webhook listener over TLS (with --tls-key)
    #[arg(long, env = "HEALD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "HEALD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted request body, e.g. 1Mi, 512Ki, 65536 [default: 1Mi]
    #[arg(long, env = "HEALD_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,
    /// heald's own namespace, where its Leases and Events live [default: $POD_NAMESPACE, else
    /// heal-system]
    #[arg(long, env = "HEALD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Namespace runs are created in unless a policy names one [default: --namespace]
    #[arg(long, env = "HEALD_RUN_NAMESPACE", value_name = "NS")]
    pub run_namespace: Option<String>,
    /// Engine for policies that name none: argo, tekton or local [default: argo]
    #[arg(long, env = "HEALD_ENGINE", value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Local engine: wait before the first retry of a step that exited 3, doubling up to 60s
    /// [default: 5s, as the Argo retryStrategy heald renders]
    #[arg(long, env = "HEALD_LOCAL_RETRY_BACKOFF", value_name = "DURATION")]
    pub local_retry_backoff: Option<String>,
    /// Container image of heal that the steps run
    #[arg(long, env = "HEALD_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,
    /// Service account the steps run as unless a policy names one [default: heal]
    #[arg(long, env = "HEALD_SERVICE_ACCOUNT", value_name = "NAME")]
    pub service_account: Option<String>,
    /// heald's /v1/reports URL as the runs reach it, e.g.
    /// http://heald.heal-system:8080/v1/reports
    #[arg(long, env = "HEALD_REPORT_URL", value_name = "URL")]
    pub report_url: Option<String>,
    /// Secret (key `token`) the runs' report step mounts to send heald its token: the one
    /// --token-file comes from, in the runs' namespace [default: heald-token]
    #[arg(long, env = "HEALD_REPORT_TOKEN_SECRET", value_name = "NAME")]
    pub report_token_secret: Option<String>,
    /// Alertmanager base URL for silences, e.g. http://alertmanager.monitoring:9093
    #[arg(long, env = "HEALD_ALERTMANAGER_URL", value_name = "URL")]
    pub alertmanager_url: Option<String>,
    /// Submit Argo Workflows through this Argo Server instead of the Kubernetes API
    #[arg(long, env = "HEALD_ARGO_SERVER_URL", value_name = "URL")]
    pub argo_server_url: Option<String>,
    /// File holding the bearer token for --argo-server-url
    #[arg(long, env = "HEALD_ARGO_SERVER_TOKEN_FILE", value_name = "FILE")]
    pub argo_server_token_file: Option<PathBuf>,
    /// Kubernetes API requests per second heald may send [default: 20]
    #[arg(long, env = "HEALD_KUBE_QPS", value_name = "QPS")]
    pub kube_qps: Option<f64>,
    /// Kubernetes API requests heald may send in a burst [default: 40]
    #[arg(long, env = "HEALD_KUBE_BURST", value_name = "N")]
    pub kube_burst: Option<u32>,
    /// Runs submitted per second, over all namespaces [default: 1]
    #[arg(long, env = "HEALD_SUBMIT_RATE", value_name = "PER_SECOND")]
    pub submit_rate: Option<f64>,
    /// Runs that may be submitted at once, over all namespaces [default: 20]
    #[arg(long, env = "HEALD_SUBMIT_BURST", value_name = "N")]
    pub submit_burst: Option<u32>,
    /// Runs submitted per second for targets of one namespace [default: 0.2]
    #[arg(long, env = "HEALD_NAMESPACE_SUBMIT_RATE", value_name = "PER_SECOND")]
    pub namespace_submit_rate: Option<f64>,
    /// Runs that may be submitted at once for targets of one namespace [default: 5]
    #[arg(long, env = "HEALD_NAMESPACE_SUBMIT_BURST", value_name = "N")]
    pub namespace_submit_burst: Option<u32>,
    /// Decide and render, log the run, submit nothing
    #[arg(long, env = "HEALD_DRY_RUN")]
    pub dry_run: bool,
    /// kubeconfig to use instead of KUBECONFIG, ~/.kube/config or the in-cluster account
    #[arg(long, env = "HEALD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context
    #[arg(long, env = "HEALD_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Time one Kubernetes call may take, retries included [default: 5s]
    #[arg(long, env = "HEALD_API_TIMEOUT", value_name = "DURATION")]
    pub api_timeout: Option<String>,
    /// Time heald may take to answer a webhook [default: 10s]
    #[arg(long, env = "HEALD_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// How often runs are checked for their outcome [default: 5s]
    #[arg(long, env = "HEALD_TRACK_INTERVAL", value_name = "DURATION")]
    pub track_interval: Option<String>,
    /// Time a run gets beyond its deadline to report before heald calls it timed out
    /// [default: 3m]
    #[arg(long, env = "HEALD_DEADLINE_GRACE", value_name = "DURATION")]
    pub deadline_grace: Option<String>,
    /// How long finished Tekton runs are kept before heald deletes them [default: 1h]
    #[arg(long, env = "HEALD_TEKTON_RETENTION", value_name = "DURATION")]
    pub tekton_retention: Option<String>,
    /// How often policy and template files are checked for changes; 0 disables [default: 10s]
    #[arg(long, env = "HEALD_RELOAD_INTERVAL", value_name = "DURATION")]
    pub reload_interval: Option<String>,
    /// Decisions and outcomes kept for GET /v1/remediations [default: 1000]
    #[arg(long, env = "HEALD_HISTORY", value_name = "N")]
    pub history: Option<usize>,
    /// Time in-flight requests get to finish after the first SIGTERM [default: 20s]
    #[arg(long, env = "HEALD_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Name of this replica in Leases and Events [default: $HOSTNAME, else heald]
    #[arg(long, env = "HEALD_INSTANCE", value_name = "NAME")]
    pub instance: Option<String>,
    /// Log format: json or plain [default: json]
    #[arg(long, env = "HEALD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The `--config` file: the same settings as the flags, camelCase keys, all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)] // each field is the flag of the same name, documented on Args
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub policies: Option<Vec<PathBuf>>,
    pub templates: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub approval_token_file: Option<PathBuf>,
    pub insecure_no_auth: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_body: Option<SizeValue>,
    pub namespace: Option<String>,
    pub run_namespace: Option<String>,
    pub engine: Option<String>,
    pub local_retry_backoff: Option<String>,
    pub image: Option<String>,
    pub service_account: Option<String>,
    pub report_url: Option<String>,
    pub report_token_secret: Option<String>,
    pub alertmanager_url: Option<String>,
    pub argo_server_url: Option<String>,
    pub argo_server_token_file: Option<PathBuf>,
    pub kube_qps: Option<f64>,
    pub kube_burst: Option<u32>,
    pub submit_rate: Option<f64>,
    pub submit_burst: Option<u32>,
    pub namespace_submit_rate: Option<f64>,
    pub namespace_submit_burst: Option<u32>,
    pub dry_run: Option<bool>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub api_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub track_interval: Option<String>,
    pub deadline_grace: Option<String>,
    pub tekton_retention: Option<String>,
    pub reload_interval: Option<String>,
    pub history: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub instance: Option<String>,
    pub log_format: Option<String>,
}

/// A size in a config file: a number of bytes or a string such as `1Mi`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// A quantity such as `1Mi`.
    Text(String),
}

/// TLS material for the webhook listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Token buckets for submissions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Runs per second over all namespaces.
    pub global_rate: f64,
    /// Burst over all namespaces.
    pub global_burst: u32,
    /// Runs per second per target namespace.
    pub namespace_rate: f64,
    /// Burst per target namespace.
    pub namespace_burst: u32,
}

/// The validated configuration heald runs with.
#[derive(Clone)]
pub struct Config {
    /// Webhook listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Policy files and directories.
    pub policies: Vec<PathBuf>,
    /// Template directory replacing the embedded templates.
    pub templates: Option<PathBuf>,
    /// The bearer token callers must present; `None` only with `--insecure-no-auth`.
    pub token: Option<String>,
    /// The bearer token callers of the approve and reject endpoints must present; `None`:
    /// those endpoints refuse everyone.
    pub approval_token: Option<String>,
    /// TLS for the webhook listener.
    pub tls: Option<TlsFiles>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// heald's namespace (Leases, Events).
    pub namespace: String,
    /// Default namespace of runs.
    pub run_namespace: String,
    /// Engine of policies that name none.
    pub engine: Engine,
    /// Local engine: the first wait before a step's retry.
    pub local_retry_backoff: Duration,
    /// heal image.
    pub image: String,
    /// Default service account of steps.
    pub service_account: String,
    /// `/v1/reports` URL for the runs' report step.
    pub report_url: Option<String>,
    /// Secret with heald's token that the report step mounts; `None` without a token.
    pub report_token_secret: Option<String>,
    /// Alertmanager base URL (no trailing slash).
    pub alertmanager_url: Option<String>,
    /// Argo Server base URL (no trailing slash), for REST submission.
    pub argo_server_url: Option<String>,
    /// Bearer token for the Argo Server.
    pub argo_server_token: Option<String>,
    /// Kubernetes requests per second.
    pub kube_qps: f64,
    /// Kubernetes request burst.
    pub kube_burst: u32,
    /// Submission token buckets.
    pub rate_limits: RateLimits,
    /// Submit nothing.
    pub dry_run: bool,
    /// kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context.
    pub context: Option<String>,
    /// Deadline of one Kubernetes call, retries included.
    pub api_timeout: Duration,
    /// Deadline of one webhook answer.
    pub request_timeout: Duration,
    /// Tracking period.
    pub track_interval: Duration,
    /// Time a run gets beyond its deadline before it counts as timed out.
    pub deadline_grace: Duration,
    /// Retention of finished Tekton runs.
    pub tekton_retention: Duration,
    /// Reload period; zero disables reloading.
    pub reload_interval: Duration,
    /// Size of the remediations ring buffer.
    pub history: usize,
    /// Drain time after the first signal.
    pub shutdown_grace: Duration,
    /// This replica's name.
    pub instance: String,
    /// Log format.
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written by hand so that tokens never reach a log line.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("policies", &self.policies)
            .field("templates", &self.templates)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "approval_token",
                &self.approval_token.as_ref().map(|_| "<redacted>"),
            )
            .field("tls", &self.tls)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("namespace", &self.namespace)
            .field("run_namespace", &self.run_namespace)
            .field("engine", &self.engine)
            .field("local_retry_backoff", &self.local_retry_backoff)
            .field("image", &self.image)
            .field("service_account", &self.service_account)
            .field("report_url", &self.report_url)
            .field("report_token_secret", &self.report_token_secret)
            .field("alertmanager_url", &self.alertmanager_url)
            .field("argo_server_url", &self.argo_server_url)
            .field(
                "argo_server_token",
                &self.argo_server_token.as_ref().map(|_| "<redacted>"),
            )
            .field("kube_qps", &self.kube_qps)
            .field("kube_burst", &self.kube_burst)
            .field("rate_limits", &self.rate_limits)
            .field("dry_run", &self.dry_run)
            .field("api_timeout", &self.api_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("track_interval", &self.track_interval)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The heal image heald's steps run unless `--image` says otherwise.
pub fn default_image() -> String {
    format!("ghcr.io/heal-project/heal:{}", env!("CARGO_PKG_VERSION"))
}

impl Config {
    /// How heald renders runs: its templates, and the Secret the report step mounts.
    pub fn render_options(&self) -> crate::render::RenderOptions {
        crate::render::RenderOptions {
            templates_dir: self.templates.clone(),
            report_token_secret: self.report_token_secret.clone(),
            ..crate::render::RenderOptions::default()
        }
    }

    /// Validate parsed flags, reading `--config`, the token file and the TLS files' presence.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        Config::merge(args, file)
    }

    /// Validate flags over an already-read config file.
    pub fn merge(a: Args, f: FileConfig) -> Result<Config, ConfigError> {
        let listen = addr(
            "--listen",
            a.listen.or(f.listen).as_deref().unwrap_or(DEFAULT_LISTEN),
        )?;
        let admin_listen = addr(
            "--admin-listen",
            a.admin_listen
                .or(f.admin_listen)
                .as_deref()
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
        )?;
        if listen == admin_listen && listen.port() != 0 {
            return Err(invalid(
                "--admin-listen",
                format!("{admin_listen} is also the webhook listener; give it its own port"),
            ));
        }
        let policies = if a.policies.is_empty() {
            f.policies.unwrap_or_default()
        } else {
            a.policies
        };
        if policies.is_empty() {
            return Err(invalid(
                "--policies",
                "no policy files given (e.g. --policies /etc/heald/policies)",
            ));
        }
        for p in &policies {
            if !p.exists() {
                return Err(invalid(
                    "--policies",
                    format!("{} does not exist", p.display()),
                ));
            }
        }
        let templates = a.templates.or(f.templates);
        if let Some(t) = &templates
            && !t.is_dir()
        {
            return Err(invalid(
                "--templates",
                format!("{} is not a directory", t.display()),
            ));
        }
        let insecure_no_auth = a.insecure_no_auth || f.insecure_no_auth.unwrap_or(false);
        let token = match (a.token, a.token_file.or(f.token_file)) {
            (Some(t), _) => Some(check_token("--token", t)?),
            (None, Some(path)) => Some(check_token(
                "--token-file",
                read_secret("--token-file", &path)?,
            )?),
            (None, None) => None,
        };
        let approval_token = match (
            a.approval_token,
            a.approval_token_file.or(f.approval_token_file),
        ) {
            (Some(t), _) => Some(check_token("--approval-token", t)?),
            (None, Some(path)) => Some(check_token(
                "--approval-token-file",
                read_secret("--approval-token-file", &path)?,
            )?),
            (None, None) => None,
        };
        if approval_token.is_some() && approval_token == token {
            return Err(invalid(
                "--approval-token-file",
                "the approval token must differ from the webhook token: whoever sends alerts must not approve runs",
            ));
        }
        if token.is_none() && !insecure_no_auth {
            return Err(invalid(
                "--token-file",
                "no webhook token: give --token-file (or HEALD_TOKEN), or --insecure-no-auth",
            ));
        }
        let tls = match (a.tls_cert.or(f.tls_cert), a.tls_key.or(f.tls_key)) {
            (Some(cert), Some(key)) => {
                for (field, p) in [("--tls-cert", &cert), ("--tls-key", &key)] {
                    if !p.is_file() {
                        return Err(invalid(field, format!("{} is not a file", p.display())));
                    }
                }
                Some(TlsFiles { cert, key })
            }
            (None, None) => None,
            (Some(_), None) => return Err(invalid("--tls-key", "--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(invalid("--tls-cert", "--tls-key needs --tls-cert")),
        };
        let max_body_bytes = match (a.max_body, f.max_body) {
            (Some(s), _) | (None, Some(SizeValue::Text(s))) => parse_size("--max-body", &s)?,
            (None, Some(SizeValue::Bytes(n))) => usize::try_from(n)
                .map_err(|_| invalid("--max-body", format!("{n} bytes is too large")))?,
            (None, None) => DEFAULT_MAX_BODY_BYTES,
        };
        if max_body_bytes < 1024 {
            return Err(invalid(
                "--max-body",
                "must be at least 1Ki: Alertmanager bodies are a few KiB",
            ));
        }
        let namespace = a
            .namespace
            .or(f.namespace)
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "heal-system".into());
        check_dns_label("--namespace", &namespace)?;
        let run_namespace = a
            .run_namespace
            .or(f.run_namespace)
            .unwrap_or_else(|| namespace.clone());
        check_dns_label("--run-namespace", &run_namespace)?;
        let engine = match a.engine.or(f.engine) {
            Some(e) => e
                .parse::<Engine>()
                .map_err(|e| invalid("--engine", e.to_string()))?,
            None => Engine::Argo,
        };
        let image = a.image.or(f.image).unwrap_or_else(default_image);
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(invalid(
                "--image",
                format!("{image:?} is not an image reference"),
            ));
        }
        let service_account = a
            .service_account
            .or(f.service_account)
            .unwrap_or_else(|| "heal".into());
        if service_account.len() > 253 || !service_account.split('.').all(is_dns_label) {
            return Err(invalid(
                "--service-account",
                format!("{service_account:?} is not a valid service account name"),
            ));
        }
        let report_url = a
            .report_url
            .or(f.report_url)
            .map(|u| url("--report-url", &u))
            .transpose()?;
        let report_token_secret = a
            .report_token_secret
            .or(f.report_token_secret)
            .unwrap_or_else(|| crate::render::DEFAULT_REPORT_TOKEN_SECRET.into());
        if report_token_secret.len() > 253 || !report_token_secret.split('.').all(is_dns_label) {
            return Err(invalid(
                "--report-token-secret",
                format!("{report_token_secret:?} is not a valid Secret name"),
            ));
        }
        let report_token_secret = token.as_ref().map(|_| report_token_secret);
        let alertmanager_url = a
            .alertmanager_url
            .or(f.alertmanager_url)
            .map(|u| url("--alertmanager-url", &u))
            .transpose()?;
        let argo_server_url = a
            .argo_server_url
            .or(f.argo_server_url)
            .map(|u| url("--argo-server-url", &u))
            .transpose()?;
        let argo_server_token = match a.argo_server_token_file.or(f.argo_server_token_file) {
            Some(p) => Some(read_secret("--argo-server-token-file", &p)?),
            None => None,
        };
        let kube_qps = positive("--kube-qps", a.kube_qps.or(f.kube_qps).unwrap_or(20.0))?;
        let kube_burst = at_least_one("--kube-burst", a.kube_burst.or(f.kube_burst).unwrap_or(40))?;
        let rate_limits = RateLimits {
            global_rate: positive(
                "--submit-rate",
                a.submit_rate.or(f.submit_rate).unwrap_or(1.0),
            )?,
            global_burst: at_least_one(
                "--submit-burst",
                a.submit_burst.or(f.submit_burst).unwrap_or(20),
            )?,
            namespace_rate: positive(
                "--namespace-submit-rate",
                a.namespace_submit_rate
                    .or(f.namespace_submit_rate)
                    .unwrap_or(0.2),
            )?,
            namespace_burst: at_least_one(
                "--namespace-submit-burst",
                a.namespace_submit_burst
                    .or(f.namespace_submit_burst)
                    .unwrap_or(5),
            )?,
        };
        let dur = |field: &str, flag: Option<String>, file: Option<String>, default: &str| {
            let s = flag.or(file).unwrap_or_else(|| default.to_string());
            crate::duration::parse(&s).map_err(|m| invalid(field, m))
        };
        let api_timeout = dur("--api-timeout", a.api_timeout, f.api_timeout, "5s")?;
        let local_retry_backoff = dur(
            "--local-retry-backoff",
            a.local_retry_backoff,
            f.local_retry_backoff,
            "5s",
        )?;
        let request_timeout = dur(
            "--request-timeout",
            a.request_timeout,
            f.request_timeout,
            "10s",
        )?;
        let track_interval = dur("--track-interval", a.track_interval, f.track_interval, "5s")?;
        let deadline_grace = dur("--deadline-grace", a.deadline_grace, f.deadline_grace, "3m")?;
        let tekton_retention = dur(
            "--tekton-retention",
            a.tekton_retention,
            f.tekton_retention,
            "1h",
        )?;
        let reload_interval = dur(
            "--reload-interval",
            a.reload_interval,
            f.reload_interval,
            "10s",
        )?;
        let shutdown_grace = dur(
            "--shutdown-grace",
            a.shutdown_grace,
            f.shutdown_grace,
            "20s",
        )?;
        for (field, d) in [
            ("--api-timeout", api_timeout),
            ("--request-timeout", request_timeout),
            ("--track-interval", track_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be longer than 0s"));
            }
        }
        if api_timeout > request_timeout {
            return Err(invalid(
                "--api-timeout",
                format!(
                    "{} is longer than --request-timeout {}",
                    crate::duration::format(api_timeout),
                    crate::duration::format(request_timeout)
                ),
            ));
        }
        let history = a.history.or(f.history).unwrap_or(1000);
        if history == 0 || history > 1_000_000 {
            return Err(invalid("--history", "must be between 1 and 1000000"));
        }
        let instance = a
            .instance
            .or(f.instance)
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "heald".into());
        let log_format = match a.log_format.or(f.log_format).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("plain") => LogFormat::Plain,
            Some(other) => {
                return Err(invalid(
                    "--log-format",
                    format!("{other:?}: expected json or plain"),
                ));
            }
        };
        Ok(Config {
            listen,
            admin_listen,
            policies,
            templates,
            token,
            approval_token,
            tls,
            max_body_bytes,
            namespace,
            run_namespace,
            engine,
            local_retry_backoff,
            image,
            service_account,
            report_url,
            report_token_secret,
            alertmanager_url,
            argo_server_url,
            argo_server_token,
            kube_qps,
            kube_burst,
            rate_limits,
            dry_run: a.dry_run || f.dry_run.unwrap_or(false),
            kubeconfig: a.kubeconfig.or(f.kubeconfig),
            context: a.context.or(f.context),
            api_timeout,
            request_timeout,
            track_interval,
            deadline_grace,
            tekton_retention,
            reload_interval,
            history,
            shutdown_grace,
            instance,
            log_format,
        })
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        field: "--config".into(),
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    crate::yaml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: crate::yaml::message(&e),
    })
}

fn read_secret(field: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| ConfigError::Io {
            field: field.into(),
            path: path.to_path_buf(),
            source,
        })
}

fn check_token(field: &str, token: String) -> Result<String, ConfigError> {
    let token = token.trim().to_string();
    if token.len() < 16 {
        return Err(invalid(
            field,
            "the token is shorter than 16 characters; generate one with `openssl rand -hex 32`",
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "the token must be printable ASCII without spaces",
        ));
    }
    Ok(token)
}

fn addr(field: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse::<SocketAddr>().map_err(|_| {
        invalid(
            field,
            format!("{s:?} is not an address such as 0.0.0.0:8080"),
        )
    })
}

fn url(field: &str, s: &str) -> Result<String, ConfigError> {
    let u =
        reqwest::Url::parse(s).map_err(|e| invalid(field, format!("{s:?} is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(invalid(
            field,
            format!("{s:?}: expected an http:// or https:// URL"),
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn positive(field: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(field, format!("{v} must be a number above 0")))
    }
}

fn at_least_one(field: &str, v: u32) -> Result<u32, ConfigError> {
    if v >= 1 {
        Ok(v)
    } else {
        Err(invalid(field, "must be at least 1"))
    }
}

fn check_dns_label(field: &str, s: &str) -> Result<(), ConfigError> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{s:?} is not a valid name: at most 63 lower-case letters, digits and '-', \
                 starting and ending with a letter or digit"
            ),
        ))
    }
}

/// Whether `s` is a DNS-1123 label (namespace and service account names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parse a size: bytes, or a Kubernetes quantity (`1Mi`, `512Ki`, `1M`, `64k`); `KiB` and
/// `MiB` are read as `Ki` and `Mi`.
pub fn parse_size(field: &str, s: &str) -> Result<usize, ConfigError> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let bad = || {
        invalid(
            field,
            format!("{s:?} is not a size such as 1Mi, 512Ki or 65536"),
        )
    };
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let mult: u64 = match &t[digits..] {
        "" | "B" => 1,
        "k" | "K" | "KB" => 1000,
        "Ki" | "KiB" => 1024,
        "M" | "MB" => 1_000_000,
        "Mi" | "MiB" => 1024 * 1024,
        "G" | "GB" => 1_000_000_000,
        "Gi" | "GiB" => 1024 * 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("token"), "0123456789abcdef0123\n").unwrap();
        std::fs::create_dir(d.path().join("policies")).unwrap();
        d
    }

    fn args(d: &tempfile::TempDir, extra: &[&str]) -> Args {
        let mut v = vec![
            "heald".to_string(),
            "--policies".into(),
            d.path().join("policies").display().to_string(),
            "--token-file".into(),
            d.path().join("token").display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        Args::try_parse_from(v).unwrap()
    }

    fn err(d: &tempfile::TempDir, extra: &[&str]) -> String {
        Config::from_args(args(d, extra)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_give_a_working_configuration() {
        let d = dir();
        let c = Config::from_args(args(&d, &["--namespace", "heal-system"])).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.token.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(c.engine, Engine::Argo);
        assert_eq!(c.run_namespace, "heal-system");
        assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
    }

    #[test]
    fn runs_mount_the_token_secret_heald_is_told_unless_heald_takes_no_token() {
        let d = dir();
        let c = Config::from_args(args(&d, &[])).unwrap();
        assert_eq!(
            c.render_options().report_token_secret.as_deref(),
            Some("heald-token")
        );
        let c = Config::from_args(args(&d, &["--report-token-secret", "team-a-token"])).unwrap();
        assert_eq!(
            c.render_options().report_token_secret.as_deref(),
            Some("team-a-token")
        );
        assert!(
            err(&d, &["--report-token-secret", "Bad_Name"]).starts_with("--report-token-secret:")
        );
        let policies = d.path().join("policies").display().to_string();
        let open = Args::try_parse_from(["heald", "--insecure-no-auth", "--policies", &policies]);
        let c = Config::from_args(open.unwrap()).unwrap();
        assert_eq!(c.render_options().report_token_secret, None);
    }

    #[test]
    fn bad_values_are_named_in_one_line() {
        let d = dir();
        assert!(err(&d, &["--listen", "nowhere"]).starts_with("--listen: \"nowhere\""));
        assert!(err(&d, &["--max-body", "lots"]).starts_with("--max-body:"));
        assert!(err(&d, &["--engine", "jenkins"]).contains("argo, tekton or local"));
        assert!(err(&d, &["--submit-rate", "0"]).starts_with("--submit-rate:"));
        assert!(err(&d, &["--tls-cert", "/etc/passwd"]).starts_with("--tls-key:"));
        assert!(err(&d, &["--alertmanager-url", "am:9093"]).starts_with("--alertmanager-url:"));
        assert!(err(&d, &["--run-namespace", "Not_A_Name"]).starts_with("--run-namespace:"));
        assert!(err(&d, &["--track-interval", "0s"]).starts_with("--track-interval:"));
        assert!(
            err(
                &d,
                &[
                    "--listen",
                    "127.0.0.1:8080",
                    "--admin-listen",
                    "127.0.0.1:8080"
                ]
            )
            .starts_with("--admin-listen:")
        );
        let no_token = Args::try_parse_from([
            "heald",
            "--policies",
            &d.path().join("policies").display().to_string(),
        ])
        .unwrap();
        let e = Config::from_args(no_token).unwrap_err().to_string();
        assert!(e.starts_with("--token-file: no webhook token"), "{e}");
    }

    #[test]
    fn the_config_file_fills_in_what_flags_leave_out() {
        let d = dir();
        let file = d.path().join("heald.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:18080\nmaxBody: 64Ki\nengine: tekton\nsubmitRate: 5\n",
        )
        .unwrap();
        let c = Config::from_args(args(
            &d,
            &["--config", file.to_str().unwrap(), "--engine", "argo"],
        ))
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:18080");
        assert_eq!(c.max_body_bytes, 64 * 1024);
        assert_eq!(c.engine, Engine::Argo, "the flag wins over the file");
        assert_eq!(c.rate_limits.global_rate, 5.0);
        std::fs::write(&file, "lissen: 1\n").unwrap();
        let e = err(&d, &["--config", file.to_str().unwrap()]);
        assert!(e.contains("unknown field `lissen`"), "{e}");
    }

    #[test]
    fn sizes_read_like_kubernetes_quantities() {
        assert_eq!(parse_size("x", "1Mi").unwrap(), 1 << 20);
        assert_eq!(parse_size("x", "512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("x", "64k").unwrap(), 64_000);
        assert_eq!(parse_size("x", "2048").unwrap(), 2048);
        assert!(parse_size("x", "-1").is_err());
        assert!(parse_size("x", "1 parsec").is_err());
    }
}
