//! Tests of the in-memory API server itself: it must answer like a real one.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::apiserver::*;

fn kubectl(server: &ApiServer, dir: &Path, args: &[&str]) -> (bool, String) {
    let kubeconfig = server.kubeconfig_tls(dir);
    let cache = dir.join("cache");
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn kubectl_scale_works_against_the_server() {
    if !Path::new("/usr/bin/kubectl").exists() {
        return;
    }
    let server = ApiServer::start();
    server.insert(deployment("default", "web", 2));
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["scale", "deploy/web", "--replicas=3"],
        vec!["rollout", "restart", "deploy/web"],
        vec!["patch", "deploy/web", "--type", "merge", "-p", r#"{"metadata":{"labels":{"x":"y"}}}"#],
        vec!["get", "deploy", "web", "-o", "json"],
        vec!["get", "deploy"],
        vec!["get", "pods"],
        vec!["rollout", "status", "deploy/web", "--timeout=5s"],
    ] {
        let (ok, out) = kubectl(&server, dir.path(), &args);
        eprintln!("kubectl {args:?}: ok={ok}\n{out}");
    }
    eprintln!("{}", server.log_text());
    let _ = json!({});
    panic!("show");
}
