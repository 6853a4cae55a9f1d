//! `heal approve RUN -n NS` and `heal reject RUN -n NS --reason TEXT`: decide a run that
//! waits at its approval gate, with the caller's own kubeconfig identity (so RBAC decides
//! who may approve). Who decided is the API server's answer to a SelfSubjectReview, or the
//! kubeconfig's user name when the server refuses one.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::time::Instant;

use crate::actions::approve::{DecideError, decide_on, find, who_am_i};
use crate::approval::{Verdict, decision_patch};
use crate::cli::OutputFormat;
use crate::kube_api::{ConnectOptions, Kube};
use crate::logging::LogFormat;
use crate::outcome::Exit;

/// The flags `heal approve` and `heal reject` share.
#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// The run: the Workflow, PipelineRun or local run heald created (its name)
    #[arg(value_name = "RUN")]
    pub run: String,
    /// Namespace of the run [default: the kubeconfig context's]
    #[arg(short = 'n', long, env = "HEAL_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Give up (exit 3) when the API server has not answered within this time
    #[arg(long, env = "HEAL_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// kubeconfig file [default: $KUBECONFIG, ~/.kube/config, then in-cluster]
    #[arg(long, env = "HEAL_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use
    #[arg(long, env = "HEAL_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Result format on stdout
    #[arg(short = 'o', long, env = "HEAL_OUTPUT", value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Log format on stderr [default: json, or plain on a terminal]
    #[arg(long, env = "HEAL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// `heal approve`.
#[derive(Debug, Clone, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub decide: DecideArgs,
}

/// `heal reject`.
#[derive(Debug, Clone, Args)]
pub struct RejectArgs {
    /// Why: recorded on the run and told to the notifiers
    #[arg(long, env = "HEAL_REASON", value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened, documented on the struct
    pub decide: DecideArgs,
}

/// The kubeconfig's user name for the context in use, when it can be read.
fn kubeconfig_user(args: &DecideArgs) -> Option<String> {
    let kc = match &args.kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p).ok()?,
        None => kube::config::Kubeconfig::read().ok()?,
    };
    let context = args
        .context
        .clone()
        .or_else(|| kc.current_context.clone())?;
    kc.contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
}

/// Run `heal approve` (`reason: None`) or `heal reject`; returns the exit code.
pub fn main(args: &DecideArgs, reason: Option<&str>) -> i32 {
    crate::logging::init(args.log_format, "HEAL_LOG");
    let verdict = match reason {
        None => Verdict::Approve,
        Some(r) if r.trim().is_empty() => {
            eprintln!("heal: --reason must not be empty: say why the run is rejected");
            return Exit::Usage.code();
        }
        Some(r) => Verdict::Reject {
            reason: r.trim().to_string(),
        },
    };
    if let Err(why) = crate::address::check_namespace(&args.run) {
        eprintln!("heal: invalid run name {:?}: {why}", args.run);
        return Exit::Usage.code();
    }
    if let Some(ns) = &args.namespace
        && let Err(why) = crate::address::check_namespace(ns)
    {
        eprintln!("heal: invalid namespace {ns:?}: {why}");
        return Exit::Usage.code();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("heal: cannot start the async runtime: {e}");
            return Exit::Failed.code();
        }
    };
    runtime.block_on(run(args, &verdict))
}

async fn run(args: &DecideArgs, verdict: &Verdict) -> i32 {
    let opts = ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    let kube = match Kube::connect(&opts, Instant::now() + args.timeout).await {
        Ok(k) => k,
        Err(e) => {
            eprintln!("heal: {e}");
            return e.exit().code();
        }
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| kube.default_namespace.clone());
    // Refuse a run that is missing or not waiting before anything else is sent.
    let found = match find(&kube, &namespace, &args.run).await {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(DecideError::NotFound {
            namespace: namespace.clone(),
            name: args.run.clone(),
        }),
        Err(e) => Err(e.into()),
    };
    let (engine, mut obj) = match found.and_then(|(engine, obj)| {
        decision_patch(engine, &obj, verdict, "", jiff::Timestamp::now())?;
        Ok((engine, obj))
    }) {
        Ok(f) => f,
        Err(e) => return refused(e),
    };
    let by = match who_am_i(&kube).await.or_else(|| kubeconfig_user(args)) {
        Some(u) => u,
        None => {
            eprintln!(
                "heal: cannot tell who you are: the API server refused a SelfSubjectReview and the kubeconfig names no user"
            );
            return Exit::Failed.code();
        }
    };
    match decide_on(&kube, engine, &mut obj, verdict, &by, "heal").await {
        Ok(d) => {
            let mut out = std::io::stdout().lock();
            let _ = match args.output {
                OutputFormat::Json => writeln!(
                    out,
                    "{}",
                    json!({
                        "run": args.run,
                        "namespace": namespace,
                        "engine": d.engine.as_str(),
                        "decision": verdict.past(),
                        "by": d.by,
                        "at": d.at.to_string(),
                    })
                ),
                OutputFormat::Text => writeln!(
                    out,
                    "{}: run {namespace}/{} ({}) as {}",
                    verdict.past(),
                    args.run,
                    d.engine,
                    d.by
                ),
            };
            Exit::Ok.code()
        }
        Err(e) => refused(e),
    }
}

/// One line on stderr; the exit code of `e`.
fn refused(e: DecideError) -> i32 {
    eprintln!("heal: {e}");
    match e {
        DecideError::Kube(k) => k.exit().code(),
        DecideError::NotFound { .. } | DecideError::Gate(_) => Exit::Failed.code(),
    }
}
