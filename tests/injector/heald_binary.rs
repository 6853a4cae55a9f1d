//! The `heald` binary as users run it: configuration errors, graceful and aborted
//! shutdown, end to end with a real Alertmanager, and the `deploy/` kustomize base.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::heald_support::*;
use heal_testkit::apiserver::{ApiServer, Fault};
use serde_json::{Value, json};

const WF: (&str, &str) = ("argoproj.io/v1alpha1", "workflows");

// ----- configuration -----

#[test]
fn a_bad_flag_value_stops_heald_with_one_line_and_exit_code_2() {
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let out = Command::new(env!("CARGO_BIN_EXE_heald"))
        .args([
            "--policies",
            f.policies().to_str().unwrap(),
            "--token-file",
            f.path().join("token").to_str().unwrap(),
            "--listen",
            "everywhere",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("heald: --listen: \"everywhere\""), "{err}");
}

#[test]
fn a_bad_policy_file_stops_heald_at_start_up_with_exit_code_2() {
    let f = Files::new(
        "apiVersion: heal.dev/v1alpha1\nkind: HealingPolicy\nmetadata: {name: x}\nspec: {nonsense: 1}\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_heald"))
        .env("HEALD_POLICIES", f.policies())
        .env("HEALD_TOKEN_FILE", f.path().join("token"))
        .env("HEALD_LOG_FORMAT", "plain")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("heald: policies:") && err.contains("nonsense"),
        "{err}"
    );
}

// ----- shutdown -----

#[test]
fn the_first_sigterm_finishes_the_answer_in_flight_then_exits_0() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let mut p = Proc::start(&server, &f, &["--shutdown-grace", "10s"]);
    server.inject(Fault::on("GET", "/leases/").delay(Duration::from_millis(1500)));
    let url = format!("{}/v1/alerts", p.web);
    let in_flight = std::thread::spawn(move || {
        http(
            "POST",
            &url,
            Some(TOKEN),
            Some(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")])),
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    p.signal("-TERM");
    let answer = in_flight
        .join()
        .unwrap()
        .expect("the answer in flight arrives");
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(answer.1.contains("\"submitted\""), "{}", answer.1);
    let (code, err) = p.wait_exit(Duration::from_secs(15));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("shutdown requested"), "{err}");
    assert!(
        get(&format!("{}/readyz", p.admin)).is_none(),
        "gone after the drain"
    );
}

#[test]
fn a_second_signal_aborts_the_drain() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let mut p = Proc::start(
        &server,
        &f,
        &[
            "--shutdown-grace",
            "60s",
            "--request-timeout",
            "60s",
            "--api-timeout",
            "60s",
        ],
    );
    server.inject(Fault::on("GET", "/leases/").delay(Duration::from_secs(30)));
    let url = format!("{}/v1/alerts", p.web);
    std::thread::spawn(move || {
        http(
            "POST",
            &url,
            Some(TOKEN),
            Some(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")])),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    p.signal("-TERM");
    wait_for("readiness to turn false", Duration::from_secs(5), || {
        get(&format!("{}/readyz", p.admin)).filter(|(s, _)| *s == 503)
    });
    p.signal("-INT");
    let started = Instant::now();
    let (code, err) = p.wait_exit(Duration::from_secs(5));
    assert_eq!(code, 130, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_webhook_port_speaks_tls_when_given_a_certificate_and_key() {
    heal_testkit::require_reference!();
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies("http://127.0.0.1:9/notify"));
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_file, key_file) = (f.path().join("tls.crt"), f.path().join("tls.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let p = Proc::start(
        &server,
        &f,
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    let https = p.web.replace("http://", "https://");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let resp = client
            .post(format!("{https}/v1/alerts"))
            .bearer_auth(TOKEN)
            .json(&webhook(&[web_down("web", "2026-08-20T10:00:00Z")]))
            .send()
            .await
            .expect("an HTTPS answer");
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"submitted\""), "{body}");
    assert!(
        http(
            "POST",
            &format!("{}/v1/alerts", p.web),
            Some(TOKEN),
            Some(&json!({}))
        )
        .is_none(),
        "plain HTTP gets no answer on the TLS port"
    );
}

// ----- end to end with Alertmanager -----

use crate::heald_support::alertmanager::{Alertmanager, alertmanager_binary};

fn post_alert(am: &Alertmanager, deployment: &str) {
    let alert = json!([{
        "labels": {"alertname": "WebDown", "namespace": "shop", "deployment": deployment},
        "annotations": {"summary": "web is down"},
        "startsAt": jiff::Timestamp::now().to_string(),
    }]);
    let (status, body) = http(
        "POST",
        &format!("{}/api/v2/alerts", am.url),
        None,
        Some(&alert),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

fn heald_silences(am: &Alertmanager) -> Vec<Value> {
    let (_, body) = get(&format!("{}/api/v2/silences", am.url)).unwrap();
    let all: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    all.into_iter()
        .filter(|s| s["createdBy"] == "heald")
        .collect()
}

fn run_for(server: &ApiServer, deployment: &str) -> Option<String> {
    server.list(WF.0, WF.1, NS).into_iter().find_map(|w| {
        let target = w["metadata"]["annotations"]["heal.dev/target"].as_str()?;
        (target == format!("deployment/{deployment}"))
            .then(|| w["metadata"]["name"].as_str().unwrap().to_string())
    })
}

#[test]
fn end_to_end_alertmanager_alerts_become_runs_and_a_success_becomes_a_silence() {
    heal_testkit::require_reference!();
    let Some(bin) = alertmanager_binary() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let notifier = rt.block_on(Receiver::start());
    let server = ApiServer::start();
    server.register_argo_workflows();
    let f = Files::new(&policies(&format!("{}/notify", notifier.url)));
    // Alertmanager needs heald's address and heald needs Alertmanager's: fix heald's port.
    let heald_web = free_port();
    let am = Alertmanager::start(bin, &[format!("http://127.0.0.1:{heald_web}")]);
    let mut p = Proc::start_on(
        &server,
        &f,
        heald_web,
        &["--alertmanager-url", &am.url, "--track-interval", "200ms"],
    );

    post_alert(&am, "web");
    let run = wait_for("the run for web", Duration::from_secs(30), || {
        run_for(&server, "web")
    });
    let during = heald_silences(&am);
    assert_eq!(during.len(), 1, "silenced while in progress: {during:?}");
    assert!(
        during[0]["comment"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );
    server.modify(WF.0, WF.1, NS, &run, |o| {
        o["status"] = json!({"phase": "Succeeded"})
    });
    let silence = wait_for("heald's success silence", Duration::from_secs(30), || {
        heald_silences(&am)
            .into_iter()
            .find(|s| s["comment"].as_str().unwrap_or("").contains("succeeded"))
    });
    assert!(
        silence["comment"].as_str().unwrap().contains(&run),
        "{silence}"
    );
    let matchers: Vec<(String, String)> = silence["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        matchers.contains(&("deployment".into(), "web".into())),
        "{matchers:?}"
    );
    assert_eq!(silence["status"]["state"], "active");

    post_alert(&am, "api");
    let failed = wait_for("the run for api", Duration::from_secs(30), || {
        run_for(&server, "api")
    });
    server.modify(WF.0, WF.1, NS, &failed, |o| {
        o["status"] = json!({"phase": "Failed", "message": "restart failed"})
    });
    let note = wait_for("the notification", Duration::from_secs(30), || {
        notifier.bodies("/notify").into_iter().next()
    });
    assert_eq!(note["run"], json!(failed));
    assert_eq!(note["outcome"], "failed");
    let expired = wait_for(
        "the failed run's silence to expire",
        Duration::from_secs(10),
        || {
            heald_silences(&am).into_iter().find(|s| {
                s["comment"].as_str().unwrap_or("").contains(&failed)
                    && s["status"]["state"] == "expired"
            })
        },
    );
    assert!(expired["comment"].as_str().unwrap().contains("in progress"));
    let active: Vec<Value> = heald_silences(&am)
        .into_iter()
        .filter(|s| s["status"]["state"] == "active")
        .collect();
    assert_eq!(
        active.len(),
        1,
        "only the success silence stays: {active:?}"
    );
    assert!(active[0]["comment"].as_str().unwrap().contains(&run));
    p.signal("-TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(15)).0, 0);
}

// ----- deploy/ -----

fn kustomize() -> Option<Vec<Value>> {
    kustomize_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"))
}

fn kustomize_dir(dir: &Path) -> Option<Vec<Value>> {
    // kubectl is optional everywhere: Debian 12 packages none recent enough.
    let kubectl = heal_testkit::tool_or_skip(
        &["kubectl"],
        "a kubectl with `kustomize`, from the Kubernetes release",
        heal_testkit::Required::Optional,
    )?;
    let out = Command::new(kubectl)
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(heal::yaml::from_str_multi(&text).unwrap())
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

#[test]
fn the_deploy_base_renders_a_locked_down_deployment_with_probes_on_the_admin_port() {
    let Some(docs) = kustomize() else { return };
    let d = find(&docs, "Deployment", "heald");
    assert_eq!(d["metadata"]["namespace"], NS);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "heald");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["command"], json!(["heald"]));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let admin = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(admin["containerPort"], 9090);
    let svc = find(&docs, "Service", "heald");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    find(&docs, "ServiceAccount", "heald");
    find(&docs, "PodDisruptionBudget", "heald");
}

#[test]
fn the_deploy_base_grants_heald_only_leases_runs_and_events_and_nothing_cluster_wide() {
    let Some(docs) = kustomize() else { return };
    assert!(
        !docs.iter().any(|d| d["kind"] == "ClusterRoleBinding"),
        "heald gets no cluster-wide power"
    );
    let role = find(&docs, "Role", "heald-leases");
    assert_eq!(role["rules"][0]["resources"], json!(["leases"]));
    // Listed and watched: heald keeps its guard Leases in memory.
    assert_eq!(
        role["rules"][0]["verbs"],
        json!(["get", "list", "watch", "create", "update"])
    );
    let runs = find(&docs, "ClusterRole", "heald-runs");
    let resources: Vec<&str> = runs["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
        })
        .collect();
    assert_eq!(resources, ["workflows", "pipelineruns", "events"]);
    for r in runs["rules"].as_array().unwrap() {
        let verbs = r["verbs"].as_array().unwrap();
        assert!(!verbs.contains(&json!("*")) && !verbs.contains(&json!("escalate")));
    }
    for rule in &runs["rules"].as_array().unwrap()[..2] {
        assert!(
            rule["verbs"].as_array().unwrap().contains(&json!("watch")),
            "heald watches its runs: {rule}"
        );
    }
    let binding = find(&docs, "RoleBinding", "heald-runs");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["subjects"][0]["name"], "heald");
    // `target: owner` policies: heald reads pods and ReplicaSets, nothing more, bound
    // per target namespace.
    let owners = find(&docs, "ClusterRole", "heald-owners");
    for r in owners["rules"].as_array().unwrap() {
        assert_eq!(r["verbs"], json!(["get"]), "{r}");
    }
    let binding = find(&docs, "RoleBinding", "heald-owners");
    assert_eq!(binding["roleRef"]["name"], "heald-owners");
}

#[test]
fn the_deploy_base_ships_policies_and_settings_heald_accepts() {
    let Some(docs) = kustomize() else { return };
    let policies = find(&docs, "ConfigMap", "heald-policies");
    let files: Vec<heal::policy::SourceFile> = policies["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| heal::policy::SourceFile::new(k, v.as_str().unwrap()))
        .collect();
    let set = heal::policy::PolicySet::parse(&files).unwrap_or_else(|e| panic!("{e}"));
    assert!(!set.policies.is_empty());
    let config = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("heald-config")
        })
        .expect("heald-config ConfigMap");
    let text = config["data"]["heald.yaml"].as_str().unwrap();
    let file: heal::heald::config::FileConfig = heal::yaml::from_str(text).unwrap();
    assert_eq!(
        file.token_file.unwrap(),
        Path::new("/etc/heald/token/token")
    );
    let d = find(&docs, "Deployment", "heald");
    let mounts = d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/heald/policies") && mounts.contains("/etc/heald/token"));
    let receiver: Value = heal::yaml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/alertmanager-receiver.example.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let hook = &receiver["receivers"][1]["webhook_configs"][0];
    assert!(hook["url"].as_str().unwrap().ends_with("/v1/alerts"));
    assert_eq!(hook["http_config"]["authorization"]["type"], "Bearer");
}

/// `path` relative to `from` (kustomize refuses absolute paths to other kustomizations).
fn relative(path: &Path, from: &Path) -> String {
    let (path, from) = (path.canonicalize().unwrap(), from.canonicalize().unwrap());
    let common = path
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let ups = from.components().count() - common;
    let mut rel: Vec<String> = vec!["..".to_string(); ups];
    rel.extend(
        path.components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    rel.join("/")
}

#[test]
fn the_local_engine_component_lets_heald_keep_runs_in_config_maps_and_act_per_namespace() {
    // An overlay of deploy/ with the component, as the component's comment shows.
    let overlay = tempfile::tempdir().unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let rel = relative(&deploy, overlay.path());
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{rel}]\ncomponents: [{rel}/local-engine]\n"
        ),
    )
    .unwrap();
    let Some(docs) = kustomize_dir(overlay.path()) else {
        return;
    };
    find(&docs, "Deployment", "heald");
    let runs = find(&docs, "ClusterRole", "heald-local-runs");
    assert_eq!(
        runs["rules"],
        json!([{"apiGroups": [""], "resources": ["configmaps"],
                "verbs": ["get", "list", "create", "patch"]}]),
        "heald creates, reads, lists and patches its local runs, and deletes nothing"
    );
    let binding = find(&docs, "RoleBinding", "heald-local-runs");
    assert_eq!(binding["metadata"]["namespace"], NS);
    assert_eq!(binding["roleRef"]["name"], "heald-local-runs");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "heald", "namespace": NS}])
    );
    // The per-action roles of argo/ (and tekton/) are bound to heald itself, per namespace.
    let actions: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            d["kind"] == "RoleBinding"
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("heald-local-")
                && d["metadata"]["name"] != "heald-local-runs"
        })
        .collect();
    let mut roles: Vec<&str> = actions
        .iter()
        .map(|b| b["roleRef"]["name"].as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "heal-delete-pods",
            "heal-events",
            "heal-patch",
            "heal-restart",
            "heal-scale",
            "heal-wait"
        ]
    );
    let argo_roles = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("argo/rbac-actions.yaml"),
    )
    .unwrap();
    for b in &actions {
        assert_eq!(b["roleRef"]["kind"], "ClusterRole");
        assert!(
            argo_roles.contains(&format!("name: {}", b["roleRef"]["name"].as_str().unwrap())),
            "{b}"
        );
        assert_eq!(b["metadata"]["namespace"], "default");
        assert_eq!(b["subjects"][0]["name"], "heald");
        assert_eq!(b["subjects"][0]["namespace"], NS);
    }
    // Only the node actions, cluster-scoped by nature, are bound cluster-wide.
    let cluster: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .collect();
    assert_eq!(cluster.len(), 1);
    assert_eq!(cluster[0]["roleRef"]["name"], "heal-nodes");
}
