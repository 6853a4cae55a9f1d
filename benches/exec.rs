//! heal versus kubectl, one action at a time, against the same loopback test API server
//! (TLS, bearer token), kubectl with an empty cache directory as in a fresh step container.
//!
//! Everything runs twice in one process: against the test API server with no latency (it
//! answers in microseconds), and with the kube-apiserver 1.36 latency model (handshake 4 ms,
//! read 2 ms, write 5 ms; see `testkit/src/apiserver/latency.rs`), or with the model
//! `HEAL_APISERVER_LATENCY` names when it is set to one. Each table says which.
//!
//! Per action and tool: median wall time (the process run directly), CPU time and peak RSS
//! (a second run under GNU time), and their ratios; for heal also its own time, its wall
//! time minus the time the server spent on its requests (TLS handshake and requests,
//! injected delays included, as the server recorded them). kubectl is optional: without it
//! heal is measured alone and the comparison is skipped with a note.
//!
//! Run with `scripts/bench` (or `cargo bench --bench exec`). Compare ratios within one run;
//! absolute values depend on the machine and its load.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use heal_testkit::apiserver::*;

const RUNS: usize = 15;

/// One run of a tool: directly (wall time, server time) and under time(1) (CPU, RSS).
#[derive(Default, Clone, Copy)]
struct Sample {
    wall_ms: f64,
    server_ms: f64,
    requests: usize,
    handshakes: usize,
    cpu_ms: f64,
    rss_kib: f64,
}

impl Sample {
    fn own_ms(&self) -> f64 {
        self.wall_ms - self.server_ms
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn check(program: &str, args: &[String], out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Run `program` directly, timing it, and take the server time recorded meanwhile.
fn run_direct(server: &ApiServer, program: &str, args: &[String]) -> Sample {
    run_direct_expecting(server, program, args, true)
}

/// [`run_direct`], for a run that must succeed (`true`) or fail (`false`).
fn run_direct_expecting(
    server: &ApiServer,
    program: &str,
    args: &[String],
    success: bool,
) -> Sample {
    server.clear_requests();
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("run the program");
    let wall = started.elapsed();
    if success {
        check(program, args, &out);
    } else {
        assert!(!out.status.success(), "{program} {args:?} succeeded");
    }
    let served = server.take_served();
    Sample {
        wall_ms: ms(wall),
        server_ms: ms(latency::busy(&served)),
        requests: served.iter().filter(|s| s.work != Work::Handshake).count(),
        handshakes: served.iter().filter(|s| s.work == Work::Handshake).count(),
        ..Sample::default()
    }
}

/// Run `program` under GNU time: CPU time and peak RSS.
fn run_timed(program: &str, args: &[String]) -> (f64, f64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %U %S %M"])
        .arg(program)
        .args(args)
        .output()
        .expect("run /usr/bin/time");
    check(program, args, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .expect("time(1) output");
    let f: Vec<f64> = line[5..]
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    ((f[0] + f[1]) * 1000.0, f[2])
}

/// Whether `perf stat` works here (Debian `linux-perf`): then CPU time is its task-clock, to
/// the microsecond, instead of time(1)'s 10 ms steps.
fn perf_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        Command::new("perf")
            .args(["stat", "-x", ",", "-e", "task-clock", "--", "true"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Run `program` under `perf stat -e task-clock`: its CPU time in ms.
fn run_perf(program: &str, args: &[String]) -> f64 {
    run_perf_expecting(program, args, true)
}

/// [`run_perf`], for a run that must succeed (`true`) or may fail (`false`).
fn run_perf_expecting(program: &str, args: &[String], success: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("perf.csv");
    let out = Command::new("perf")
        .args(["stat", "-x", ",", "-e", "task-clock", "-o"])
        .arg(&file)
        .arg("--")
        .arg(program)
        .args(args)
        .output()
        .expect("run perf stat");
    if success {
        check(program, args, &out);
    }
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    text.lines()
        .find(|l| l.contains("task-clock"))
        .and_then(|l| l.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn m(v: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    median(v.iter().map(f).collect())
}

/// The arguments of invocation `i` of an action.
type Args<'a> = Box<dyn Fn(usize) -> Vec<String> + 'a>;

/// What to do to the server before invocation `i` of heal (`false`) or kubectl (`true`).
type Prepare<'a> = Box<dyn Fn(&ApiServer, bool, usize) + 'a>;

struct Action<'a> {
    name: &'static str,
    prepare: Prepare<'a>,
    heal: Args<'a>,
    kubectl: Args<'a>,
}

struct Row {
    action: &'static str,
    heal: Vec<Sample>,
    kubectl: Vec<Sample>,
    heal_requests: String,
}

/// Every action, RUNS times per tool, against a new server with `model`.
fn measure_all(model: Latency, heal: &str, kubectl: Option<&str>) -> (Vec<Row>, usize) {
    let server = ApiServer::start_with_latency(model);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig_tls(dir.path()).display().to_string();
    server.insert(node("node-1"));
    server.seed_deployment("default", "web", 1, &[]);

    // A cache directory no earlier invocation used, whatever the action.
    let caches = std::sync::atomic::AtomicUsize::new(0);
    let (cache_root, kc_kubeconfig) = (dir.path().to_path_buf(), kubeconfig.clone());
    let kc = move |extra: Vec<String>, _i: usize| -> Vec<String> {
        let n = caches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut v = vec![
            "--kubeconfig".to_string(),
            kc_kubeconfig.clone(),
            "--cache-dir".to_string(),
            cache_root.join(format!("cache-{n}")).display().to_string(),
        ];
        v.extend(extra);
        v
    };
    let kc = &kc;
    let hl = |extra: Vec<String>| -> Vec<String> {
        let mut v = extra;
        v.extend([
            "--kubeconfig".to_string(),
            kubeconfig.clone(),
            "--no-event".into(),
        ]);
        v
    };
    let hl = &hl;
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let actions: Vec<Action> = vec![
        // scale: alternate values so every run changes something.
        Action {
            name: "scale deploy/web",
            prepare: Box::new(|_, _, _| {}),
            heal: Box::new(move |i| {
                let n = if i % 2 == 0 { "3" } else { "2" };
                hl(s(&["scale", "deploy/web", "--replicas", n]))
            }),
            kubectl: Box::new(move |i| {
                let n = if i % 2 == 0 { "4" } else { "5" };
                kc(s(&["scale", "deploy/web", &format!("--replicas={n}")]), i)
            }),
        },
        // rollout restart (heal: a new correlation id each time, so each run restarts).
        Action {
            name: "rollout restart deploy/web",
            // kubectl refuses a restart within a second of the last one (its patch would be
            // empty): take its annotation away first.
            prepare: Box::new(|server, kubectl, _| {
                if kubectl {
                    server.modify("apps/v1", "deployments", "default", "web", |d| {
                        if let Some(a) =
                            d["spec"]["template"]["metadata"]["annotations"].as_object_mut()
                        {
                            a.remove("kubectl.kubernetes.io/restartedAt");
                        }
                    });
                }
            }),
            heal: Box::new(move |i| {
                hl(s(&[
                    "restart",
                    "deploy/web",
                    "--correlation-id",
                    &format!("bench-{i}"),
                ]))
            }),
            kubectl: Box::new(move |i| kc(s(&["rollout", "restart", "deploy/web"]), i)),
        },
        // delete a pod (a fresh one each run).
        Action {
            name: "delete pod",
            prepare: Box::new(|server, kubectl, i| {
                let tool = if kubectl { "k" } else { "h" };
                server.insert(pod("default", &format!("victim-{tool}-{i}")));
            }),
            heal: Box::new(move |i| hl(s(&["delete", &format!("pod/victim-h-{i}")]))),
            kubectl: Box::new(move |i| {
                kc(
                    s(&["delete", &format!("pod/victim-k-{i}"), "--wait=false"]),
                    i,
                )
            }),
        },
        // merge patch (alternating values).
        Action {
            name: "patch --type merge",
            prepare: Box::new(|_, _, _| {}),
            heal: Box::new(move |i| {
                let p = format!("{{\"metadata\":{{\"labels\":{{\"bench\":\"v{i}\"}}}}}}");
                hl(s(&[
                    "patch",
                    "deploy/web",
                    "--type",
                    "merge",
                    "--patch",
                    &p,
                ]))
            }),
            kubectl: Box::new(move |i| {
                let p = format!("{{\"metadata\":{{\"labels\":{{\"bench-k\":\"v{i}\"}}}}}}");
                kc(s(&["patch", "deploy/web", "--type", "merge", "-p", &p]), i)
            }),
        },
    ];

    let mut rows = Vec::new();
    let mut served_requests = 0;
    for a in &actions {
        let mut row = Row {
            action: a.name,
            heal: vec![],
            kubectl: vec![],
            heal_requests: String::new(),
        };
        // Invocation 2i runs directly, 2i+1 under time(1): each changes something.
        for i in 0..RUNS {
            // Each run its own index, so that every run changes something.
            let (direct, timed, perf) = (3 * i, 3 * i + 1, 3 * i + 2);
            (a.prepare)(&server, false, direct);
            let mut sample = run_direct(&server, heal, &(a.heal)(direct));
            if i == 0 {
                row.heal_requests = server
                    .requests()
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            served_requests += sample.requests;
            (a.prepare)(&server, false, timed);
            (sample.cpu_ms, sample.rss_kib) = run_timed(heal, &(a.heal)(timed));
            if perf_works() {
                (a.prepare)(&server, false, perf);
                sample.cpu_ms = run_perf(heal, &(a.heal)(perf));
            }
            row.heal.push(sample);
            if let Some(kubectl) = kubectl {
                (a.prepare)(&server, true, direct);
                let mut sample = run_direct(&server, kubectl, &(a.kubectl)(direct));
                served_requests += sample.requests;
                (a.prepare)(&server, true, timed);
                (sample.cpu_ms, sample.rss_kib) = run_timed(kubectl, &(a.kubectl)(timed));
                if perf_works() {
                    (a.prepare)(&server, true, perf);
                    sample.cpu_ms = run_perf(kubectl, &(a.kubectl)(perf));
                }
                row.kubectl.push(sample);
            }
        }
        rows.push(row);
    }
    (rows, served_requests)
}

fn print_table(model: Latency, rows: &[Row], with_kubectl: bool, served: usize) {
    println!("### Against the {}\n", model.describe());
    println!(
        "heal{}, {RUNS} runs each, medians; heal own time = heal wall time - the time the server \
         spent on heal's TLS handshake and requests (injected delays included)\n",
        if with_kubectl {
            " vs kubectl (empty --cache-dir)"
        } else {
            ""
        }
    );
    if with_kubectl {
        println!(
            "| action | heal wall ms | heal own ms | server ms for heal | heal requests (handshakes) | kubectl wall ms | kubectl own ms | kubectl requests (handshakes) | wall ratio (kubectl/heal) | heal CPU ms | kubectl CPU ms | heal peak RSS MiB | kubectl peak RSS MiB | RSS ratio (kubectl/heal) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    } else {
        println!(
            "| action | heal wall ms | heal own ms | server ms for heal | heal requests (handshakes) | heal CPU ms | heal peak RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    for r in rows {
        let (hw, ho, hs) = (
            m(&r.heal, |s| s.wall_ms),
            m(&r.heal, Sample::own_ms),
            m(&r.heal, |s| s.server_ms),
        );
        let hreq = format!(
            "{:.0} ({:.0})",
            m(&r.heal, |s| s.requests as f64),
            m(&r.heal, |s| s.handshakes as f64)
        );
        let (hc, hr) = (m(&r.heal, |s| s.cpu_ms), m(&r.heal, |s| s.rss_kib));
        // time(1) counts CPU in 10 ms steps: below one step, say so rather than print 0.
        let cpu = |c: f64| {
            if perf_works() {
                format!("{c:.2}")
            } else if c < 10.0 {
                "< 10".to_string()
            } else {
                format!("{c:.0}")
            }
        };
        if with_kubectl {
            let (kw, ko) = (m(&r.kubectl, |s| s.wall_ms), m(&r.kubectl, Sample::own_ms));
            let kreq = format!(
                "{:.0} ({:.0})",
                m(&r.kubectl, |s| s.requests as f64),
                m(&r.kubectl, |s| s.handshakes as f64)
            );
            let (kcpu, kr) = (m(&r.kubectl, |s| s.cpu_ms), m(&r.kubectl, |s| s.rss_kib));
            println!(
                "| {} | {hw:.1} | {ho:.1} | {hs:.1} | {hreq} | {kw:.1} | {ko:.1} | {kreq} | {:.1}x | {} | {} | {:.1} | {:.1} | {:.1}x |",
                r.action,
                kw / hw,
                cpu(hc),
                cpu(kcpu),
                hr / 1024.0,
                kr / 1024.0,
                kr / hr
            );
        } else {
            println!(
                "| {} | {hw:.1} | {ho:.1} | {hs:.1} | {hreq} | {} | {:.1} |",
                r.action,
                cpu(hc),
                hr / 1024.0
            );
        }
    }
    println!();
    for r in rows {
        println!("- heal {}: {}", r.action, r.heal_requests);
    }
    println!("\n({served} API requests served)\n");
}

/// Where heal's own time goes: the same `scale` stopped at successive points, against the
/// test API server with no latency, interleaved so that the machine's noise spreads evenly.
/// `compare` is another build of heal (`HEAL_BIN_COMPARE`, with its `HEAL_BIN_COMPARE_LABEL`):
/// its `--version` and its TLS `scale` run in the same rounds, as runs 6 and 7.
fn own_time_stages(heal: &str, compare: Option<(&str, &str)>) {
    let server = ApiServer::start_with_latency(Latency::OFF);
    let ecdsa = ApiServer::start_with(Latency::OFF, ServingKey::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let ec_dir = tempfile::tempdir().unwrap();
    let plain = server.kubeconfig(dir.path()).display().to_string();
    let tls = server.kubeconfig_tls(dir.path()).display().to_string();
    let tls_ec = ecdsa.kubeconfig_tls(ec_dir.path()).display().to_string();
    let missing = dir.path().join("missing").display().to_string();
    for s in [&server, &ecdsa] {
        s.insert(node("node-1"));
        s.seed_deployment("default", "web", 1, &[]);
    }
    let scale = |kubeconfig: &str, n: usize| -> Vec<String> {
        let n = (2 + n % 2).to_string();
        ["scale", "deploy/web", "--replicas", &n, "--no-event"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--kubeconfig".to_string(), kubeconfig.to_string()])
            .collect()
    };
    // (what the run does beyond the run it is compared with, must it succeed, compared with)
    let stages: [(&str, bool, Option<usize>); 6] = [
        (
            "0. `true` (/bin/true): what starting any process costs on this machine (spawn, exec, exit)",
            true,
            None,
        ),
        (
            "1. `heal --version`: process start (exec, loading, runtime-less main), clap",
            true,
            Some(0),
        ),
        (
            "2. `heal scale` with a missing kubeconfig: + clap for the action, logging set-up, the tokio runtime, the failed read, the error line",
            false,
            Some(1),
        ),
        (
            "3. `heal scale` over TLS, an RSA-2048 serving certificate (kubeadm's default; as in the benchmarks above), the kubeconfig naming its CA: + kubeconfig parsing, TLS configuration, the client's part of the handshake, GET of the Deployment and its HPAs, PATCH of the scale subresource",
            true,
            Some(2),
        ),
        (
            "4. the same over TLS with an ECDSA P-256 serving certificate (kubeadm's `ECDSA-P256`, k3s)",
            true,
            Some(2),
        ),
        (
            "5. `heal scale` over plain HTTP, the kubeconfig naming no CA: + kubeconfig parsing, the system CA store (loaded even for http://), the requests",
            true,
            Some(2),
        ),
    ];
    let mut stages: Vec<(String, bool, Option<usize>)> = stages
        .iter()
        .map(|(name, ok, base)| (name.to_string(), *ok, *base))
        .collect();
    if let Some((_, label)) = compare {
        stages.push((format!("6. `heal --version`, {label}"), true, Some(1)));
        stages.push((
            format!("7. `heal scale` over TLS, RSA-2048, as run 3, {label}"),
            true,
            Some(3),
        ));
    }
    let other = compare.map_or(heal, |(bin, _)| bin);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); stages.len()];
    for i in 0..3 * RUNS {
        for (k, (_, success, _)) in stages.iter().enumerate() {
            let (on, program, args) = match k {
                0 => (&server, "true", vec![]),
                1 => (&server, heal, vec!["--version".to_string()]),
                2 => (&server, heal, scale(&missing, i)),
                3 => (&server, heal, scale(&tls, i)),
                4 => (&ecdsa, heal, scale(&tls_ec, i)),
                5 => (&server, heal, scale(&plain, i)),
                6 => (&server, other, vec!["--version".to_string()]),
                _ => (&server, other, scale(&tls, i)),
            };
            let mut sample = run_direct_expecting(on, program, &args, *success);
            if perf_works() {
                sample.cpu_ms = run_perf_expecting(program, &args, *success);
            }
            samples[k].push(sample);
        }
    }
    println!(
        "### Where heal's own time goes (against the {})\n",
        server.latency().describe()
    );
    println!(
        "The same `heal scale deploy/web` stopped at successive points, {} runs each, \
         interleaved; medians. Own time = wall time - server time.\n",
        3 * RUNS
    );
    println!("| run | wall ms | server ms | own ms | own ms added | CPU ms (perf task-clock) |");
    println!("|---|---|---|---|---|---|");
    let own: Vec<f64> = samples.iter().map(|v| m(v, Sample::own_ms)).collect();
    for (k, ((name, _, base), v)) in stages.iter().zip(&samples).enumerate() {
        let added = match base {
            Some(b) => format!("{:+.2} (over run {b})", own[k] - own[*b]),
            None => format!("{:+.2}", own[k]),
        };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {added} | {} |",
            m(v, |s| s.wall_ms),
            m(v, |s| s.server_ms),
            own[k],
            if perf_works() {
                format!("{:.2}", m(v, |s| s.cpu_ms))
            } else {
                "n/a (no perf)".to_string()
            }
        );
    }
    println!();
}

/// `exec --serve DIR`: serve the bench's fixtures (node-1, deploy/web) with the latency model
/// `HEAL_APISERVER_LATENCY` names until standard input closes, with `kubeconfig` (plain
/// HTTP) and `kubeconfig-tls` written into DIR, to profile heal by hand (valgrind, perf).
fn serve(dir: &Path) {
    let server = ApiServer::start();
    std::fs::create_dir_all(dir).expect("create the --serve directory");
    let plain = server.kubeconfig(dir);
    let tls = server.kubeconfig_tls(dir);
    server.insert(node("node-1"));
    server.seed_deployment("default", "web", 1, &[]);
    println!(
        "serving {} ({}); kubeconfigs {} and {}; close standard input to stop",
        server.https_url(),
        server.latency().describe(),
        plain.display(),
        tls.display()
    );
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let dir = args.get(i + 1).expect("--serve DIR");
        serve(Path::new(dir));
        return;
    }
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("bench needs GNU time at /usr/bin/time (Debian package `time`)");
        std::process::exit(2);
    }
    let kubectl_path = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
    let kubectl = Path::new(&kubectl_path)
        .exists()
        .then_some(kubectl_path.as_str());
    // scripts/bench passes a static build, as the image's (HEAL_BIN), and the static-pie
    // build of the same sources to compare it with (HEAL_BIN_COMPARE).
    let heal_bin = std::env::var("HEAL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_heal").into());
    let heal = heal_bin.as_str();
    println!("heal binary: {heal}\n");
    let compare_bin = std::env::var("HEAL_BIN_COMPARE").ok();
    let compare_label = std::env::var("HEAL_BIN_COMPARE_LABEL")
        .unwrap_or_else(|_| format!("the build at {}", compare_bin.as_deref().unwrap_or("")));
    let compare = compare_bin.as_deref().map(|b| (b, compare_label.as_str()));
    if let Some((bin, label)) = compare {
        println!("compared with: {bin} ({label})\n");
    }
    let env_model = Latency::from_env();
    let on = if env_model.is_off() {
        Latency::KUBE_APISERVER_1_36
    } else {
        env_model
    };

    println!(
        "heal{} per action, {RUNS} runs per tool and model; wall time of the process run \
         directly, peak RSS from a second run under GNU time, CPU time from a third under \
         `perf stat -e task-clock` (or, without perf, from GNU time in 10 ms steps)\n",
        if kubectl.is_some() { " vs kubectl" } else { "" }
    );
    if kubectl.is_none() {
        println!(
            "> kubectl not found ({kubectl_path}; Debian package `kubectl`, or set KUBECTL): \
             the kubectl comparison is skipped, heal is measured alone.\n"
        );
    }
    own_time_stages(heal, compare);
    let mut results = Vec::new();
    for model in [Latency::OFF, on] {
        let (rows, served) = measure_all(model, heal, kubectl);
        print_table(model, &rows, kubectl.is_some(), served);
        results.push((model, rows));
    }

    // Both models side by side: the ratios against the baseline of this same run.
    let (off, on_rows) = (&results[0].1, &results[1].1);
    println!(
        "### No latency against the {} latency model, same run\n",
        results[1].0
    );
    if kubectl.is_some() {
        println!(
            "| action | heal wall ms, no latency | heal wall ms, model | heal own ms, no latency | heal own ms, model | kubectl wall ms, no latency | kubectl wall ms, model | kubectl/heal, no latency | kubectl/heal, model |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
    } else {
        println!(
            "| action | heal wall ms, no latency | heal wall ms, model | heal own ms, no latency | heal own ms, model |"
        );
        println!("|---|---|---|---|---|");
    }
    for (a, b) in off.iter().zip(on_rows) {
        let (hw0, hw1) = (m(&a.heal, |s| s.wall_ms), m(&b.heal, |s| s.wall_ms));
        let (ho0, ho1) = (m(&a.heal, Sample::own_ms), m(&b.heal, Sample::own_ms));
        if kubectl.is_some() {
            let (kw0, kw1) = (m(&a.kubectl, |s| s.wall_ms), m(&b.kubectl, |s| s.wall_ms));
            println!(
                "| {} | {hw0:.1} | {hw1:.1} | {ho0:.1} | {ho1:.1} | {kw0:.1} | {kw1:.1} | {:.1}x | {:.1}x |",
                a.action,
                kw0 / hw0,
                kw1 / hw1
            );
        } else {
            println!(
                "| {} | {hw0:.1} | {hw1:.1} | {ho0:.1} | {ho1:.1} |",
                a.action
            );
        }
    }
    let size = |p: &str| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1_048_576.0)
            .unwrap_or(0.0)
    };
    println!("\n| binary | size MiB |\n|---|---|");
    println!("| heal (this build's profile) | {:.1} |", size(heal));
    if let Some(k) = kubectl {
        println!("| kubectl ({k}) | {:.1} |", size(k));
    }
}
