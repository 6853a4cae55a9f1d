//! The set-up the executor's tests share: the test API server with a kubeconfig for it in a
//! temporary directory ([`Env`]), `heal` run against it in this process or as the compiled
//! binary, and what is read back from a run. A test file adds what only it needs in its
//! own `impl Env` block.

use std::path::PathBuf;
use std::process::{Command, Output};

use heal::outcome::{Exit, HealResult, Outcome};
use heal_testkit::apiserver::ApiServer;
use serde_json::Value;

/// The correlation id [`Env::heal`] runs with.
const CID: &str = "cid-1";

/// A test API server and a kubeconfig for it, in a directory that lives as long as this.
pub struct Env {
    pub server: ApiServer,
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// A fresh test API server and its kubeconfig.
pub fn env() -> Env {
    Env::on(ApiServer::start())
}

impl Env {
    /// `server`, prepared by the caller, and a kubeconfig for it.
    pub fn on(server: ApiServer) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.kubeconfig(dir.path());
        Env {
            server,
            dir,
            kubeconfig,
        }
    }

    /// `name` in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ARGS --kubeconfig KUBECONFIG --correlation-id CID`.
    pub fn argv(&self, cid: &str, args: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        argv.extend([
            "--kubeconfig".to_string(),
            self.kubeconfig.display().to_string(),
            "--correlation-id".to_string(),
            cid.to_string(),
        ]);
        argv
    }

    /// Run `heal ARGS` in-process against the test server, as remediation `cid-1`.
    pub async fn heal(&self, args: &[&str]) -> (HealResult, Exit) {
        self.heal_as(CID, args).await
    }

    /// Run `heal ARGS` in-process for the remediation with correlation id `cid`.
    pub async fn heal_as(&self, cid: &str, args: &[&str]) -> (HealResult, Exit) {
        heal::cli::execute(&self.argv(cid, args))
            .await
            .expect("valid arguments")
    }

    /// Run the compiled `heal ARGS --kubeconfig KUBECONFIG` (see [`heal_bin`]).
    pub fn run(&self, args: &[&str]) -> Output {
        heal_bin()
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output()
            .expect("run heal")
    }

    /// The Deployment `default/name` as the server stores it.
    pub fn deployment(&self, name: &str) -> Value {
        self.server
            .get("apps/v1", "deployments", "default", name)
            .expect("deployment exists")
    }
}

/// The compiled `heal`, with nothing from the developer's environment.
pub fn heal_bin() -> Command {
    without_heal_env(Command::new(env!("CARGO_BIN_EXE_heal")))
}

/// `c` (which runs heal, perhaps under another program) without the developer's `HEAL_*`
/// variables and `KUBECONFIG`, so that nothing leaks into the run.
pub fn without_heal_env(mut c: Command) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("HEAL_") || k == "KUBECONFIG" {
            c.env_remove(k);
        }
    }
    c
}

/// The exit code of a process that exited.
pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

/// What the process printed on stdout, which must be JSON.
pub fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

pub fn assert_outcome(r: &(HealResult, Exit), outcome: Outcome, exit: Exit) {
    assert_eq!(
        (r.0.outcome, r.1),
        (outcome, exit),
        "unexpected result: {}",
        serde_json::to_string_pretty(&r.0).unwrap()
    );
}

/// The `metadata.name` of an object.
pub fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap().to_string()
}
