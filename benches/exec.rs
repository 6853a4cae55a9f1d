//! heal versus kubectl, one action at a time, against the same loopback test API server
//! (TLS, bearer token), kubectl with an empty cache directory as in a fresh step container.
//! Reports median wall time, CPU time and peak RSS of each, and their ratios.
//!
//! Run with `scripts/bench` (or `cargo bench --bench exec`). Numbers are ratios within one
//! run; absolute values depend on the machine.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::apiserver::*;

const RUNS: usize = 15;

#[derive(Default, Clone, Copy)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    rss_kib: f64,
}

/// Run a command under GNU time; wall time measured here, CPU and peak RSS from time(1).
fn measure(program: &str, args: &[String]) -> Sample {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %U %S %M"])
        .arg(program)
        .args(args)
        .output()
        .expect("run /usr/bin/time");
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .expect("time(1) output");
    let f: Vec<f64> = line[5..]
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    Sample {
        wall_ms,
        cpu_ms: (f[0] + f[1]) * 1000.0,
        rss_kib: f[2],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Row {
    action: &'static str,
    heal: Vec<Sample>,
    kubectl: Vec<Sample>,
}

fn main() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("bench needs GNU time at /usr/bin/time (Debian package `time`)");
        std::process::exit(2);
    }
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
    if !Path::new(&kubectl).exists() {
        eprintln!("bench needs kubectl ({kubectl}; Debian package `kubectl`, or set KUBECTL)");
        std::process::exit(2);
    }
    let heal = env!("CARGO_BIN_EXE_heal");
    let server = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig_tls(dir.path()).display().to_string();
    server.insert(node("node-1"));
    server.seed_deployment("default", "web", 1, &[]);

    let mut rows = Vec::new();
    let fresh_cache = |i: usize, tool: &str| {
        dir.path()
            .join(format!("cache-{tool}-{i}"))
            .display()
            .to_string()
    };
    let kc = |extra: &[&str], i: usize| -> Vec<String> {
        let mut v = vec![
            "--kubeconfig".to_string(),
            kubeconfig.clone(),
            "--cache-dir".to_string(),
            fresh_cache(i, "kubectl"),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let hl = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--kubeconfig".to_string(),
            kubeconfig.clone(),
            "--no-event".into(),
        ]);
        v
    };

    // scale: alternate 3 and 2 so every run changes something.
    let mut row = Row {
        action: "scale deploy/web",
        heal: vec![],
        kubectl: vec![],
    };
    for i in 0..RUNS {
        let n = if i % 2 == 0 { "3" } else { "2" };
        row.heal.push(measure(
            heal,
            &hl(&["scale", "deploy/web", "--replicas", n]),
        ));
        let n = if i % 2 == 0 { "4" } else { "5" };
        row.kubectl.push(measure(
            &kubectl,
            &kc(&["scale", "deploy/web", &format!("--replicas={n}")], i),
        ));
    }
    rows.push(row);

    // rollout restart (heal: a new correlation id each time, so each run restarts).
    let mut row = Row {
        action: "rollout restart deploy/web",
        heal: vec![],
        kubectl: vec![],
    };
    for i in 0..RUNS {
        let cid = format!("bench-{i}");
        row.heal.push(measure(
            heal,
            &hl(&["restart", "deploy/web", "--correlation-id", &cid]),
        ));
        row.kubectl.push(measure(
            &kubectl,
            &kc(&["rollout", "restart", "deploy/web"], i),
        ));
    }
    rows.push(row);

    // delete a pod (a fresh one each run).
    let mut row = Row {
        action: "delete pod",
        heal: vec![],
        kubectl: vec![],
    };
    for i in 0..RUNS {
        server.insert(pod("default", &format!("victim-h-{i}")));
        server.insert(pod("default", &format!("victim-k-{i}")));
        row.heal.push(measure(
            heal,
            &hl(&["delete", &format!("pod/victim-h-{i}")]),
        ));
        row.kubectl.push(measure(
            &kubectl,
            &kc(&["delete", &format!("pod/victim-k-{i}"), "--wait=false"], i),
        ));
    }
    rows.push(row);

    // merge patch (alternating values).
    let mut row = Row {
        action: "patch --type merge",
        heal: vec![],
        kubectl: vec![],
    };
    for i in 0..RUNS {
        let p = format!("{{\"metadata\":{{\"labels\":{{\"bench\":\"v{i}\"}}}}}}");
        row.heal.push(measure(
            heal,
            &hl(&["patch", "deploy/web", "--type", "merge", "--patch", &p]),
        ));
        let p = format!("{{\"metadata\":{{\"labels\":{{\"bench-k\":\"v{i}\"}}}}}}");
        row.kubectl.push(measure(
            &kubectl,
            &kc(&["patch", "deploy/web", "--type", "merge", "-p", &p], i),
        ));
    }
    rows.push(row);

    println!(
        "heal vs kubectl, {RUNS} runs each, medians (loopback TLS test API server, kubectl with an empty --cache-dir)\n"
    );
    println!(
        "| action | heal wall ms | kubectl wall ms | wall ratio (kubectl/heal) | heal CPU ms | kubectl CPU ms | CPU ratio (kubectl/heal) | heal peak RSS MiB | kubectl peak RSS MiB | RSS ratio (kubectl/heal) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
        let (hw, kw) = (m(&r.heal, |s| s.wall_ms), m(&r.kubectl, |s| s.wall_ms));
        let (hc, kcpu) = (m(&r.heal, |s| s.cpu_ms), m(&r.kubectl, |s| s.cpu_ms));
        let (hr, kr) = (m(&r.heal, |s| s.rss_kib), m(&r.kubectl, |s| s.rss_kib));
        // time(1) counts CPU in 10 ms steps: below one step, say so rather than print 0.
        let (heal_cpu, cpu_ratio) = if hc < 10.0 {
            ("< 10".to_string(), format!("> {:.0}x", kcpu / 10.0))
        } else {
            (format!("{hc:.0}"), format!("{:.1}x", kcpu / hc))
        };
        println!(
            "| {} | {hw:.1} | {kw:.1} | {:.1}x | {heal_cpu} | {kcpu:.0} | {cpu_ratio} | {:.1} | {:.1} | {:.1}x |",
            r.action,
            kw / hw,
            hr / 1024.0,
            kr / 1024.0,
            kr / hr
        );
    }
    let size = |p: &str| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1_048_576.0)
            .unwrap_or(0.0)
    };
    println!("\n| binary | size MiB |\n|---|---|");
    println!("| heal (this build's profile) | {:.1} |", size(heal));
    println!("| kubectl ({kubectl}) | {:.1} |", size(&kubectl));
    let requests = server.requests().len();
    println!("\n({requests} API requests served)");
}
