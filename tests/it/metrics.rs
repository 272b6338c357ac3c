//! Metrics: files as real tools write them (DVCLive from PyPI), stored per run, and `repro plot`
//! (the SVG parsed back, the PNG decoded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use repro::capture::metrics::{read_path, MetricPoint};
use repro::store::Store;

use crate::support::TestEnv;

/// Records a real (host) run named `name` and returns its id.
fn new_run(env: &TestEnv, name: &str) -> String {
    let (code, _, err) = env.run_in(env.root(), &["run", "--host", "--name", name, "--", "true"]);
    assert_eq!(code, 0, "{err}");
    env.last_id()
}

fn ingest(env: &TestEnv, id: &str, points: &[MetricPoint]) {
    let mut store = Store::open(&env.db()).unwrap();
    store.insert_metrics(id, points).unwrap();
}

fn loss_curve(n: usize, rate: f64) -> Vec<MetricPoint> {
    (0..n)
        .map(|i| MetricPoint {
            key: "loss".into(),
            step: Some(i as i64),
            value: 2.0 * (-rate * i as f64).exp(),
            time: Some(1.7e9 + i as f64),
        })
        .collect()
}

/// Three runs with loss histories of 40, 25 (one NaN) and 60 points.
fn three_runs(env: &TestEnv) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (name, n, rate) in [("base", 40, 0.05), ("fast", 25, 0.2), ("slow", 60, 0.01)] {
        let id = new_run(env, name);
        let mut pts = loss_curve(n, rate);
        let mut drawn = n;
        if name == "fast" {
            pts[10].value = f64::NAN;
            drawn -= 1;
        }
        ingest(env, &id, &pts);
        out.push((id, drawn));
    }
    out
}

#[test]
fn plot_svg_has_one_series_per_run_with_its_points_and_legend() {
    let env = TestEnv::new();
    let runs = three_runs(&env);
    let svg_path = env.root().join("loss.svg");
    let mut args = vec!["plot".to_string()];
    args.extend(runs.iter().map(|(id, _)| id[..12].to_string()));
    args.extend(["--metric", "loss", "-o"].map(String::from));
    args.push(svg_path.display().to_string());
    let out = env.repro().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 NaN or infinite values of 'loss' not drawn"),
        "{err}"
    );
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    // Data lines are polylines of more than two points; the legend samples have two.
    let mut by_colour: BTreeMap<String, usize> = BTreeMap::new();
    for n in doc.descendants().filter(|n| n.has_tag_name("polyline")) {
        let pts = n
            .attribute("points")
            .unwrap_or("")
            .split_whitespace()
            .count();
        if pts > 2 {
            let stroke = n.attribute("stroke").unwrap().to_string();
            assert!(
                by_colour.insert(stroke, pts).is_none(),
                "two lines share a colour"
            );
        }
    }
    let mut counts: Vec<usize> = by_colour.values().copied().collect();
    counts.sort();
    let mut want: Vec<usize> = runs.iter().map(|(_, n)| *n).collect();
    want.sort();
    assert_eq!(
        counts, want,
        "one line per run, one vertex per finite point"
    );
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for (name, (id, _)) in ["base", "fast", "slow"].iter().zip(&runs) {
        let label = format!("{name} ({})", &id[..10]);
        assert!(
            texts.contains(&label.as_str()),
            "legend {label} in {texts:?}"
        );
    }
    assert!(
        texts.contains(&"step") && texts.contains(&"loss"),
        "{texts:?}"
    );

    // Without -o the same SVG goes to stdout.
    let out = env.repro().args(&args[..args.len() - 2]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
}

/// Issue 25 item 6: `-m` twice gives two stacked panels; `--smooth` draws a moving average over
/// each (faint) raw line; a bad weight is a usage error.
#[test]
fn plot_several_metrics_stacked_with_smoothing() {
    let env = TestEnv::new();
    let runs = three_runs(&env);
    for (id, _) in &runs {
        let acc: Vec<MetricPoint> = (0..30)
            .map(|i| MetricPoint {
                key: "acc".into(),
                step: Some(i),
                value: 0.5 + 0.4 * (1.0 - (-0.1 * i as f64).exp()) + 0.03 * ((i * 7 % 5) as f64),
                time: None,
            })
            .collect();
        ingest(&env, id, &acc);
    }
    let svg_path = env.root().join("both.svg");
    let mut cmd = env.repro();
    cmd.arg("plot");
    for (id, _) in &runs {
        cmd.arg(id);
    }
    let out = cmd
        .args([
            "-m", "loss", "-m", "acc", "--smooth", "0.6", "--size", "700x300", "-o",
        ])
        .arg(&svg_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("(3 runs, metrics 'loss', 'acc')"), "{err}");
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.root_element().attribute("height"), Some("600"));
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("points").unwrap().split_whitespace().count() > 2)
        .count();
    assert_eq!(lines, 12, "raw and smoothed line for 3 runs in 2 panels");

    let (code, _, err) = env.run_in(
        env.root(),
        &["plot", &runs[0].0, "-m", "loss", "--smooth", "1"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a smoothing weight"), "{err}");
    let (code, _, err) = env.run_in(
        env.root(),
        &["plot", &runs[0].0, "-m", "loss", "-m", "nope"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("none of the runs has a metric 'nope'"),
        "{err}"
    );
}

/// Issue 25 item 6: parallel coordinates of real runs — an axis per parameter that differs, then
/// the objective; one line per run; a run without the objective and a constant parameter are
/// said, not drawn.
#[test]
fn plot_parallel_draws_a_line_per_run_through_its_params_and_objective() {
    let env = TestEnv::new();
    let mut ids = Vec::new();
    for (lr, opt, acc) in [
        ("0.1", "adam", 0.7),
        ("0.01", "adam", 0.9),
        ("0.001", "sgd", 0.8),
        ("0.01", "sgd", 0.85),
    ] {
        let job = format!("echo '{{\"val_acc\": {acc}}}' >> \"$REPRO_METRICS\"");
        let (code, _, err) = env.run_in(
            env.root(),
            &[
                "run",
                "--host",
                "--param",
                &format!("lr={lr}"),
                "--param",
                &format!("opt={opt}"),
                "--param",
                "seed=7",
                "--",
                "sh",
                "-c",
                &job,
            ],
        );
        assert_eq!(code, 0, "{err}");
        ids.push(env.last_id());
    }
    let (code, _, err) = env.run_in(env.root(), &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    ids.push(env.last_id());
    let svg_path = env.root().join("par.svg");
    let mut args: Vec<&str> = vec!["plot"];
    args.extend(ids.iter().map(String::as_str));
    args.extend([
        "--parallel",
        "metric:val_acc:max",
        "-o",
        svg_path.to_str().unwrap(),
    ]);
    let (code, _, err) = env.run_in(env.root(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "run {} has no value for metric:val_acc:max; left out",
            ids[4]
        )),
        "{err}"
    );
    assert!(
        err.contains("not drawn, the same in every run: seed"),
        "{err}"
    );
    assert!(err.contains("(4 runs)"), "{err}");
    let doc_text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&doc_text).unwrap();
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("points").unwrap().split_whitespace().count() == 3)
        .count();
    assert_eq!(lines, 4, "lr, opt and the objective for 4 runs");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for t in ["lr", "opt", "val_acc (max)", "adam", "sgd"] {
        assert!(texts.contains(&t), "{t} in {texts:?}");
    }
    assert!(!texts.contains(&"seed"), "{texts:?}");

    let (code, _, err) = env.run_in(env.root(), &["plot", &ids[0], "--parallel", "val_acc"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = env.run_in(
        env.root(),
        &["plot", &ids[4], "--parallel", "metric:val_acc"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("none of the runs has a metric 'val_acc'"),
        "{err}"
    );
}

#[test]
fn plot_png_draws_every_run_in_its_colour() {
    let env = TestEnv::new();
    let runs = three_runs(&env);
    let png = env.root().join("loss.png");
    let mut cmd = env.repro();
    cmd.arg("plot");
    for (id, _) in &runs {
        cmd.arg(id);
    }
    let out = cmd
        .args(["--metric", "loss", "--x", "time", "--size", "800x400", "-o"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 400));
    let count = |rgb: [u8; 3]| img.pixels().filter(|p| p.0 == rgb).count();
    // The first three line colours (Tableau 10): each line is drawn, not just its legend.
    for rgb in [[31, 119, 180], [255, 127, 14], [44, 160, 44]] {
        let n = count(rgb);
        assert!(n > 300, "colour {rgb:?}: {n} pixels");
    }
    let white = count([255, 255, 255]);
    let total = (800 * 400) as usize;
    assert!(
        white < total * 97 / 100 && white > total / 2,
        "white {white} of {total}"
    );
    // Text is drawn with the embedded font: dark anti-aliased pixels exist.
    let dark = img.pixels().filter(|p| p.0.iter().all(|c| *c < 80)).count();
    assert!(dark > 500, "{dark} dark pixels (axis text and ticks)");
}

#[test]
fn plot_errors_are_clear() {
    let env = TestEnv::new();
    let runs = three_runs(&env);
    let id = runs[0].0.clone();
    let (code, _, err) = env.run_in(env.root(), &["plot", &id, "--metric", "acc"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("none of the runs has a metric 'acc'"), "{err}");
    assert!(err.contains("hint: their metrics: loss"), "{err}");
    let (code, _, err) = env.run_in(
        env.root(),
        &["plot", &id, "--metric", "loss", "-o", "x.gif"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("FILE.svg or FILE.png"), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["plot", "zzzz", "--metric", "loss"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no run matches id 'zzzz'"), "{err}");
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "plot",
            &id,
            "--metric",
            "loss",
            "-o",
            "/nonexistent/dir/x.png",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot write /nonexistent/dir/x.png"), "{err}");
    // A run without the metric next to one with it: drawn, with a warning.
    let other = new_run(&env, "empty");
    let (code, out, err) = env.run_in(env.root(), &["plot", &id, &other, "--metric", "loss"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("<svg"), "{out}");
    assert!(
        err.contains(&format!("run {other} has no metric 'loss'; left out")),
        "{err}"
    );
}

/// A venv with the real `dvclive` from PyPI, made once under the target directory.
fn dvclive_python() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dvclive-venv");
    let py = dir.join("bin/python");
    let ok = dir.join(".installed");
    if !ok.exists() {
        let st = StdCommand::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3");
        assert!(
            st.success(),
            "python3 -m venv failed (install python3-venv)"
        );
        let st = StdCommand::new(dir.join("bin/pip"))
            .args(["install", "-q", "dvclive==3.49.1"])
            .status()
            .unwrap();
        assert!(st.success(), "pip install dvclive failed");
        std::fs::write(&ok, "").unwrap();
    }
    py
}

#[test]
fn dvclive_output_from_the_real_package_is_read_and_stored() {
    let env = TestEnv::new();
    let py = dvclive_python();
    let work = env.root().join("job");
    std::fs::create_dir_all(&work).unwrap();
    let script = r#"
from dvclive import Live
with Live(save_dvc_exp=False) as live:
    live.log_param("lr", 0.1)
    for epoch in range(5):
        live.log_metric("train/loss", 1.0 / (epoch + 1))
        live.log_metric("val/acc", 0.5 + epoch * 0.1)
        live.log_metric("weird", float("nan") if epoch == 2 else float(epoch))
        live.next_step()
    live.log_metric("test_acc", 0.875, plot=False)
"#;
    let out = StdCommand::new(&py)
        .arg("-c")
        .arg(script)
        .current_dir(&work)
        .env("DVC_NO_ANALYTICS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = read_path(&work.join("dvclive"));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let mut hist: BTreeMap<String, Vec<(Option<i64>, f64)>> = BTreeMap::new();
    for p in &parsed.points {
        hist.entry(p.key.to_string())
            .or_default()
            .push((p.step, p.value));
    }
    let keys: Vec<&str> = hist.keys().map(String::as_str).collect();
    assert_eq!(keys, ["test_acc", "train/loss", "val/acc", "weird"]);
    assert_eq!(hist["train/loss"].len(), 5);
    assert_eq!(hist["train/loss"][4], (Some(4), 0.2));
    assert_eq!(hist["val/acc"][0], (Some(0), 0.5));
    assert!(hist["weird"][2].1.is_nan());
    // metrics.json carries the step of the last logged values (dvclive 3.49 writes 4 here).
    let last_step = hist["train/loss"][4].0;
    assert_eq!(hist["test_acc"], vec![(last_step, 0.875)]);

    let id = new_run(&env, "dvclive");
    ingest(&env, &id, &parsed.points);
    let store = Store::open(&env.db()).unwrap();
    let sum = store.metric_summaries(&id).unwrap();
    let weird = sum.iter().find(|m| m.key == "weird").unwrap();
    assert_eq!(
        (weird.last, weird.min, weird.max, weird.count),
        (4.0, 0.0, 4.0, 5)
    );
    assert_eq!(store.metric_history(&id, "train/loss").unwrap().len(), 5);
}

#[test]
fn a_100k_step_jsonl_history_with_malformed_lines_round_trips_and_plots() {
    let env = TestEnv::new();
    let file = env.root().join("metrics.jsonl");
    let mut text = String::new();
    for i in 0..100_000 {
        if i == 500 {
            text.push_str("{\"step\": 500, \"loss\": \n");
        }
        text.push_str(&format!(
            "{{\"step\": {i}, \"loss\": {}, \"acc\": {}, \"phase\": \"train\"}}\n",
            1.0 / (1.0 + i as f64),
            if i == 7 {
                "NaN".to_string()
            } else {
                format!("{}", i as f64 / 1e5)
            }
        ));
    }
    std::fs::write(&file, text).unwrap();
    let parsed = read_path(&file);
    assert_eq!(parsed.points.len(), 200_000);
    assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
    assert!(
        parsed.warnings[0].contains("line 501: not JSON"),
        "{:?}",
        parsed.warnings
    );
    assert!(parsed.warnings[1].contains("non-numeric values of key: phase"));
    let id = new_run(&env, "long");
    ingest(&env, &id, &parsed.points);
    let store = Store::open(&env.db()).unwrap();
    let h = store.metric_history(&id, "acc").unwrap();
    assert_eq!(h.len(), 100_000);
    assert!(h[7].value.is_nan());
    assert_eq!(h[99_999].step, Some(99_999));
    let sum = store.metric_summaries(&id).unwrap();
    assert_eq!(sum[0].key, "acc");
    assert_eq!(
        (sum[0].last, sum[0].min, sum[0].count),
        (0.99999, 0.0, 100_000)
    );
    drop(store);
    let (code, out, err) = env.run_in(env.root(), &["plot", &id, "--metric", "acc"]);
    assert_eq!(code, 0, "{err}");
    let doc = roxmltree::Document::parse(&out).unwrap();
    let longest = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap();
    assert!(longest > 1000, "{longest} vertices");
}

/// A host job that reports through `REPRO_METRICS` (the three-line Python helper of
/// docs/metrics.md) and a `--metrics` file: both stored, `show --json` has the DESIGN.md shape.
#[test]
fn run_exports_repro_metrics_and_reads_metrics_files() {
    crate::support::require_tool("python3");
    let env = TestEnv::new();
    std::fs::write(
        env.root().join("train.py"),
        r#"import json, os, stat
def log(**m):
    with open(os.environ["REPRO_METRICS"], "a") as f: f.write(json.dumps(m) + "\n")
for step, acc in enumerate([0.5, 0.75, 0.875], start=1):
    log(step=step, acc=acc, loss=1 - acc)
log(step=4, loss=float("nan"))
mode = stat.S_IMODE(os.stat(os.environ["REPRO_METRICS"]).st_mode)
open("seen.txt", "w").write(os.environ["REPRO_RUN_ID"] + " " + oct(mode))
json.dump({"val": {"acc": 0.8}, "note": "text"}, open("final.json", "w"))
"#,
    )
    .unwrap();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--metrics",
            "final.json",
            "--",
            "python3",
            "train.py",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("note"),
        "the non-numeric value is named: {err}"
    );
    let id = env.last_id();
    let seen = std::fs::read_to_string(env.root().join("seen.txt")).unwrap();
    assert_eq!(seen, format!("{id} 0o600"));
    let j = env.show_json(&id);
    assert_eq!(
        j["metrics"]["acc"],
        serde_json::json!({"last": 0.875, "min": 0.5, "max": 0.875, "count": 3, "step": 3})
    );
    assert_eq!(j["metrics"]["loss"]["last"], "NaN");
    assert_eq!(j["metrics"]["loss"]["count"], 4);
    assert_eq!(j["metrics"]["val.acc"]["last"], 0.8);
    assert!(j.get("history").is_none());
    let out = env
        .repro()
        .args(["show", &id, "--json", "--history"])
        .output()
        .unwrap();
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acc = h["history"]["acc"].as_array().unwrap();
    assert_eq!(acc.len(), 3);
    assert_eq!(acc[1][0], 2);
    assert_eq!(acc[1][1], 0.75);
    // Piped text: values, no sparkline.
    let (_, text, _) = env.run_in(env.root(), &["show", &id]);
    assert!(
        text.contains("acc") && text.contains("last 0.875"),
        "{text}"
    );
    assert!(!text.contains('▁') && !text.contains('█'), "{text}");
    // Once its points are stored the file is emptied and kept, private, for the lines a
    // process the job left behind may still append (the next run counts and removes them).
    let left: Vec<_> = std::fs::read_dir(env.db().parent().unwrap().join("metrics"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let meta = std::fs::metadata(&left[0]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600));
}

/// A malformed metrics file and a missing one warn; the child's exit code and status stay.
#[test]
fn bad_metrics_never_change_status_or_exit_code() {
    let env = TestEnv::new();
    std::fs::write(env.root().join("bad.json"), "{not json").unwrap();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--metrics",
            "bad.json",
            "--metrics",
            "nope.csv",
            "--",
            "sh",
            "-c",
            "echo 'garbage' >> \"$REPRO_METRICS\"; exit 3",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("bad.json"), "{err}");
    assert!(err.contains("nope.csv"), "{err}");
    assert!(err.contains("REPRO_METRICS"), "{err}");
    let j = env.show_json(&env.last_id());
    assert_eq!(j["status"], "failed");
    assert_eq!(j["metrics"], serde_json::json!({}));
}

/// The config key `metrics` adds files read after every run; a run without metrics shows `{}`.
#[test]
fn config_metrics_key_is_read() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    std::fs::write(repo.join(".repro.toml"), "metrics = [\"m.csv\"]\n").unwrap();
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--",
            "sh",
            "-c",
            "printf 'step,acc\\n1,0.25\\n2,0.5\\n' > m.csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let j = env.show_json(&env.last_id());
    assert_eq!(j["metrics"]["acc"]["last"], 0.5);
    assert_eq!(j["metrics"]["acc"]["count"], 2);
}

/// `ls --sort metric:acc`: highest first, runs without the metric last (newest first);
/// `--reverse` lowest first; `--limit` counts both parts; a bad stat is a usage error.
#[test]
fn ls_sorts_by_a_metric() {
    let env = TestEnv::new();
    let mut ids = BTreeMap::new();
    for (name, acc) in [
        ("a", Some(0.5)),
        ("b", Some(0.9)),
        ("none", None),
        ("c", Some(0.7)),
    ] {
        let id = new_run(&env, name);
        if let Some(v) = acc {
            ingest(
                &env,
                &id,
                &[MetricPoint {
                    key: "acc".into(),
                    step: Some(1),
                    value: v,
                    time: None,
                }],
            );
        }
        ids.insert(name, id);
    }
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ls", "--json"];
        a.extend_from_slice(args);
        let (code, out, err) = env.run_in(env.root(), &a);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["--sort", "metric:acc"]), ["b", "c", "a", "none"]);
    assert_eq!(
        names(&["--sort", "metric:acc", "--reverse"]),
        ["a", "c", "b", "none"]
    );
    assert_eq!(names(&["--sort", "metric:acc", "--limit", "2"]), ["b", "c"]);
    assert_eq!(
        names(&["--sort", "metric:acc:max", "--name", "[ab]"]),
        ["b", "a"]
    );
    let (code, _, err) = env.run_in(env.root(), &["ls", "--sort", "metric:"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("metric:"), "{err}");
}

/// In a container (real podman, a pinned busybox from a local registry) the job appends to
/// `REPRO_METRICS` at the same path, and the points are stored even though it exits 3.
#[test]
fn container_job_reports_through_the_mounted_file() {
    use crate::support::engine::PushedBusybox;
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let (image, podman) = (&bb.image, bb.podman());
    let env = TestEnv::new();
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "--engine", "podman", "--image", image])
        .args(["--engine-arg=--network=none", "--", "/bin/busybox", "sh", "-c"])
        .arg("echo \"{\\\"step\\\": 1, \\\"acc\\\": 0.5, \\\"id_len\\\": ${#REPRO_RUN_ID}}\" >> \"$REPRO_METRICS\"; exit 3")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let j = env.show_json(&env.last_id());
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["metrics"]["acc"]["last"], 0.5, "{err}");
    assert_eq!(
        j["metrics"]["id_len"]["last"], 26.0,
        "REPRO_RUN_ID reached the container"
    );
}

/// `repro` with a deadline: a read that blocks (a FIFO) fails the test instead of hanging it.
fn run_bounded(env: &TestEnv, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = env
        .repro()
        .current_dir(cwd)
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 22 item 12: a `--metrics` FIFO, a `--metrics` symlink to /dev/zero and one committed to
/// a repository whose `.repro.toml` names it are refused by name (not a regular file) without
/// blocking or reading without end; the run is recorded with its exit code and its other
/// metrics.
#[test]
fn metrics_files_that_never_end_are_refused_by_name() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let fifo = repo.join("pipe.jsonl");
    assert!(StdCommand::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("/dev/zero", repo.join("zero.jsonl")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", repo.join("m.jsonl")).unwrap();
    std::fs::write(repo.join(".repro.toml"), "metrics = [\"m.jsonl\"]\n").unwrap();
    crate::support::git(&repo, &["add", "."]);
    crate::support::git(&repo, &["commit", "-qm", "metrics"]);
    let (code, _, err) = run_bounded(
        &env,
        &repo,
        &[
            "run",
            "--host",
            "--metrics",
            "pipe.jsonl",
            "--metrics",
            "zero.jsonl",
            "--",
            "sh",
            "-c",
            "echo '{\"acc\": 0.5}' >> \"$REPRO_METRICS\"; exit 3",
        ],
    );
    assert_eq!(code, 3, "{err}");
    for (name, kind) in [
        ("pipe.jsonl", "a FIFO (named pipe)"),
        ("zero.jsonl", "a character device"),
        ("m.jsonl", "a character device"),
    ] {
        assert!(
            err.contains(&format!("{name} is {kind}, not a regular file")),
            "{name}: {err}"
        );
    }
    let j = env.show_json(&env.last_id());
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["metrics"]["acc"]["last"], 0.5);
}

/// Issue 22 item 8: a process the job left running appends to `REPRO_METRICS` after the run
/// ended. Its line lands in the run's own file, still 0600 (not a new 0644 one), and the next
/// run says how many lines were not recorded and removes the file.
#[test]
fn metrics_appended_after_the_run_ended_are_counted_and_the_file_stays_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let job = concat!(
        "echo '{\"early\": 1}' >> \"$REPRO_METRICS\"; ",
        "(sleep 1; echo '{\"late\": 1}' >> \"$REPRO_METRICS\"; ",
        "echo '{\"late\": 2}' >> \"$REPRO_METRICS\"; echo done > \"$0\") ",
        ">/dev/null 2>&1 &"
    );
    let marker = env.root().join("daemon-done");
    let (code, _, err) = run_bounded(
        &env,
        env.root(),
        &[
            "run",
            "--host",
            "--",
            "sh",
            "-c",
            job,
            marker.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let file = env
        .db()
        .parent()
        .unwrap()
        .join(format!("metrics/{id}.jsonl"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the late lines are in a private file");
    assert_eq!(
        env.show_json(&id)["metrics"]["early"]["count"],
        1,
        "what came before the end is recorded"
    );
    let (code, _, err) = run_bounded(&env, env.root(), &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "2 line(s) reached REPRO_METRICS of run {id} after repro had read it"
        )),
        "{err}"
    );
    assert!(!file.exists(), "the leftover is removed");
    // The second run's own file was read and emptied; a third run removes it quietly.
    let (_, _, err) = run_bounded(&env, env.root(), &["run", "--host", "--", "true"]);
    assert!(!err.contains("reached REPRO_METRICS"), "{err}");
}

/// Issue 22 items 11 and 14: metric keys and run names with ESC, OSC, BEL and U+202E reach
/// neither the terminal (the plot hint) nor the SVG raw: the SVG is well-formed XML showing them
/// escaped. A value of 1.797e308 is shown short.
#[test]
fn plot_escapes_hostile_keys_and_names_and_huge_values_print_short() {
    let env = TestEnv::new();
    let key = "loss\u{1b}]0;pwned\u{7}\u{202e}";
    let id = new_run(&env, "evil\u{1b}[2J<&>\u{7}");
    let mut pts = loss_curve(20, 0.1);
    for p in &mut pts {
        p.key = key.into();
    }
    pts.push(MetricPoint {
        key: "huge".into(),
        step: Some(1),
        value: 1.797e308,
        time: None,
    });
    ingest(&env, &id, &pts);
    let svg_path = env.root().join("evil.svg");
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "plot",
            &id,
            "--metric",
            key,
            "-o",
            svg_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    // The status line names the metric: escaped too.
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("loss\\x1b]0;pwned"), "{err}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    let text: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    assert!(text.contains("loss\\x1b]0;pwned\\x07\\u{202e}"), "{text}");
    assert!(text.contains("evil\\x1b[2J<&>\\x07"), "{text}");
    // The hint lists the run's keys: escaped.
    let (code, _, err) = env.run_in(env.root(), &["plot", &id, "--metric", "acc"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("their metrics: huge, loss\\x1b]0;pwned\\x07\\u{202e}"),
        "{err:?}"
    );
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{202e}'),
        "{err:?}"
    );
    let (code, out, err) = env.run_in(env.root(), &["show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1.797e308"), "{out}");
    assert!(!out.contains("17970000000"), "{out}");
}

/// Issue 25 item 3: `ls` shows the latest values of a running run, read from the metrics file
/// its job is writing (they are stored only when it ends).
#[test]
fn ls_shows_the_latest_values_of_a_running_run() {
    let env = TestEnv::new();
    let mut job = std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"))
        .env("HOME", env.home())
        .env("REPRO_DB", env.db())
        .env_remove("REPRO_METRICS")
        .current_dir(env.root())
        .args([
            "run",
            "--host",
            "--",
            "sh",
            "-c",
            "echo '{\"step\": 1, \"loss\": 0.5}' >> \"$REPRO_METRICS\"; \
             echo '{\"step\": 2, \"loss\": 0.25}' >> \"$REPRO_METRICS\"; \
             while [ ! -e stop ]; do sleep 0.05; done",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let seen = loop {
        let (code, out, err) = env.run_in(
            env.root(),
            &[
                "ls",
                "--columns",
                "status,metric:loss,metric:loss:count",
                "--format",
                "csv",
            ],
        );
        // Until the job has written, no run has `loss` yet: a usage error (exit 2).
        assert!(code == 0 || code == 2, "{err}");
        if out.contains("running,0.25,2") {
            break out;
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "no live value while running: {out}{err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(seen.contains("running"), "{seen}");
    let (_, json, _) = env.run_in(env.root(), &["ls", "--format", "jsonl"]);
    assert!(
        json.contains("\"loss\""),
        "live summary in JSON too: {json}"
    );
    std::fs::write(env.root().join("stop"), "").unwrap();
    assert!(job.wait().unwrap().success());
    let (_, out, _) = env.run_in(
        env.root(),
        &["ls", "--columns", "status,metric:loss", "--format", "csv"],
    );
    assert!(out.contains("succeeded,0.25"), "stored at the end: {out}");
}
