//! Time to match and render one alert (decide + plan + render), per engine, over the
//! example policies and alerts, and the size of each rendered object.
//!
//! `cargo bench --bench render`. Medians of many iterations; the match-only time is the
//! baseline the others compare to.

use std::path::PathBuf;
use std::time::Instant;

use heal::policy::{Decision, PlanDefaults, decide, plan};
use heal::render::{Engine, RenderOptions, Renderer};

const ITERATIONS: usize = 300;

fn median_us(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let set = heal::offline::load_policies(&[root.join("examples/policies")])
        .unwrap_or_else(|e| panic!("example policies load: {e:?}"));
    let renderer = Renderer::new(RenderOptions::default()).expect("templates compile");
    let defaults = PlanDefaults::default();
    let mut alerts = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples/alerts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for a in heal::alert::parse_alerts(&bytes).unwrap() {
            alerts.push((f.file_name().unwrap().to_string_lossy().to_string(), a));
        }
    }

    println!("match + plan + render one alert, median of {ITERATIONS} iterations (µs)\n");
    println!(
        "| alert | policy | match only | + plan | argo render | tekton render | argo YAML bytes | tekton YAML bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut all = [vec![], vec![], vec![], vec![]];
    for (name, alert) in &alerts {
        let matched = decide(&set, alert);
        let Some(m) = matched.iter().find(|m| m.decision == Decision::Matched) else {
            continue;
        };
        let p = plan(m.policy, alert, &defaults).expect("plan");
        let time = |f: &dyn Fn()| {
            median_us(
                (0..ITERATIONS)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e6
                    })
                    .collect(),
            )
        };
        let t_match = time(&|| {
            std::hint::black_box(decide(&set, alert));
        });
        let t_plan = time(&|| {
            let ms = decide(&set, alert);
            std::hint::black_box(plan(ms[0].policy, alert, &defaults).unwrap());
        });
        let t_argo = time(&|| {
            let ms = decide(&set, alert);
            let p = plan(ms[0].policy, alert, &defaults).unwrap();
            std::hint::black_box(renderer.render(&p, Engine::Argo).unwrap());
        });
        let t_tekton = time(&|| {
            let ms = decide(&set, alert);
            let p = plan(ms[0].policy, alert, &defaults).unwrap();
            std::hint::black_box(renderer.render(&p, Engine::Tekton).unwrap());
        });
        let argo = renderer.render(&p, Engine::Argo).unwrap().yaml.len();
        let tekton = renderer.render(&p, Engine::Tekton).unwrap().yaml.len();
        println!(
            "| {name} | {} | {t_match:.1} | {t_plan:.1} | {t_argo:.1} | {t_tekton:.1} | {argo} | {tekton} |",
            m.policy.name
        );
        for (i, t) in [t_match, t_plan, t_argo, t_tekton].into_iter().enumerate() {
            all[i].push(t);
        }
    }
    let [a, b, c, d] = all;
    println!(
        "\nmedian over alerts: match {:.1} µs, match+plan {:.1} µs, match+plan+render argo {:.1} µs, tekton {:.1} µs",
        median_us(a),
        median_us(b),
        median_us(c),
        median_us(d)
    );
}
