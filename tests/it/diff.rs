//! `repro diff A B`: only what differs, as a table or JSON; same-run and unknown-id errors.

use serde_json::{json, Value};

use crate::query::{at_now, seeded};

fn id(runs: &[(&'static str, repro::record::Run)], label: &str) -> String {
    runs.iter().find(|(l, _)| *l == label).unwrap().1.id.clone()
}

#[test]
fn json_lists_only_the_differences() {
    let (env, runs) = seeded();
    let (code, out, err) = at_now(
        &env,
        &["diff", &id(&runs, "sweep2"), &id(&runs, "sweep3"), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["a"], id(&runs, "sweep2").as_str());
    let diffs = doc["differences"].as_array().unwrap();
    let fields: Vec<&str> = diffs.iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        vec![
            "name",
            "command[3]",
            "param.lr",
            "status",
            "exit_code",
            "signal",
            "duration_ms"
        ]
    );
    assert_eq!(
        diffs[1],
        json!({"field": "command[3]", "a": "0.2", "b": "0.3"})
    );
    assert_eq!(diffs[5], json!({"field": "signal", "a": null, "b": 9}));
    assert_eq!(doc["warnings"], json!([]));
}

#[test]
fn image_code_and_dataset_changes_are_named() {
    let (env, runs) = seeded();
    let (code, out, err) = at_now(
        &env,
        &[
            "diff",
            &id(&runs, "baseline"),
            &id(&runs, "sweep2"),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let get = |f: &str| {
        doc["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["field"] == f)
            .cloned()
            .unwrap_or_else(|| panic!("no {f} in {doc:#}"))
    };
    assert_eq!(
        get("image.reference")["b"],
        "registry.example.com/team/trainer:2.3.2"
    );
    assert_eq!(
        get("image.digest")["a"],
        format!("sha256:{}", "a".repeat(64)).as_str()
    );
    assert_eq!(get("image.index_digest")["a"], Value::Null);
    assert_eq!(get("code.commit")["b"], "2".repeat(40).as_str());
    assert_eq!(get("code.branch")["a"], "main");
    assert_eq!(get("code.dirty")["a"], true);
    assert!(get("code.patch_sha256")["a"].is_string());
    assert_eq!(get("dataset.imagenet")["a"], "uri s3://corp/imagenet @ v3");
    assert_eq!(get("dataset.imagenet")["b"], "uri s3://corp/imagenet @ v4");
    assert_eq!(get("dataset.val")["a"], Value::Null);
    // sweep2 adds `--lr 0.2` to the argv: insertions, named by B's index.
    assert_eq!(get("command[+2]")["a"], Value::Null);
    assert_eq!(get("command[+2]")["b"], "--lr");
    assert_eq!(get("command[+3]")["b"], "0.2");
    assert_eq!(get("host")["b"], "gpu-2");
    assert_eq!(get("exec.mode")["a"], "container");
    // annotations other than params and identical facts stay out
    let fields: Vec<&str> = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(!fields.contains(&"user"));
    assert!(!fields.contains(&"cwd"));
    assert!(!fields.iter().any(|f| f.starts_with("tag")));
}

#[test]
fn text_table_snapshot_and_revision_warning() {
    let (env, runs) = seeded();
    let (code, out, err) = at_now(&env, &["diff", &id(&runs, "baseline"), &id(&runs, "eval")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning: run B (01jdw0000000): the image label org.opencontainers.image.revision is ffff"), "{out}");
    insta::assert_snapshot!("diff_text", out);
    let (_, json, _) = at_now(
        &env,
        &["diff", &id(&runs, "baseline"), &id(&runs, "eval"), "--json"],
    );
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn same_run_and_unknown_ids_are_clear_errors() {
    let (env, runs) = seeded();
    let a = id(&runs, "baseline");
    let (code, out, err) = at_now(&env, &["diff", &a, &a[..6]]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains(&format!("are the same run {a}")), "{err}");
    let (code, _, err) = at_now(&env, &["diff", &a, "01zzzzzz"]);
    assert_eq!(code, 1);
    assert!(err.contains("no run matches id '01zzzzzz'"), "{err}");
    let (code, _, err) = at_now(&env, &["diff", &a, "01jd"]);
    assert_eq!(code, 1);
    assert!(err.contains("ambiguous"), "{err}");
    let (code, _, err) = at_now(&env, &["diff", &a]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_run_against_its_copy_has_no_differences() {
    let (env, runs) = seeded();
    let mut copy = runs[2].1.clone();
    copy.id = "01jdz00000000000000000000b".into();
    copy.tags = vec!["other".into()];
    repro::store::Store::open(&env.db())
        .unwrap()
        .insert_run(&copy)
        .unwrap();
    let (code, out, err) = at_now(&env, &["diff", &runs[2].1.id, &copy.id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("no differences between"), "{out}");
}

/// Records a host run whose job reports `line` (JSON) through `REPRO_METRICS`.
fn run_with_metrics(env: &crate::support::TestEnv, name: &str, line: &str) -> String {
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--name",
            name,
            "--",
            "sh",
            "-c",
            &format!("printf '%s\\n' '{line}' >> \"$REPRO_METRICS\""),
        ],
    );
    assert_eq!(code, 0, "{err}");
    env.last_id()
}

#[test]
fn metrics_of_both_runs_with_deltas_in_text_and_json() {
    let env = crate::support::TestEnv::new();
    let a = run_with_metrics(
        &env,
        "a",
        r#"{"acc": 0.8, "loss": 0.4, "only_a": 1, "big": Infinity, "wobbly": NaN, "zero": 0}"#,
    );
    let b = run_with_metrics(
        &env,
        "b",
        r#"{"acc": 0.9, "loss": 0.4, "only_b": 2, "big": Infinity, "wobbly": 1, "zero": 0.5}"#,
    );
    let (code, out, err) = env.run_in(env.root(), &["diff", &a, &b, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let m = doc["metrics"].as_array().unwrap();
    let keys: Vec<&str> = m.iter().map(|x| x["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        ["acc", "big", "loss", "only_a", "only_b", "wobbly", "zero"]
    );
    let get = |k: &str| m.iter().find(|x| x["key"] == k).unwrap().clone();
    let acc = get("acc");
    assert_eq!(acc["a"]["last"], 0.8);
    assert_eq!(acc["b"]["last"], 0.9);
    assert_eq!(acc["a"]["count"], 1);
    assert!(
        (acc["delta"].as_f64().unwrap() - 0.1).abs() < 1e-12,
        "{acc}"
    );
    assert!((acc["relative"].as_f64().unwrap() - 0.125).abs() < 1e-12);
    assert_eq!(get("loss")["delta"], 0.0);
    assert_eq!(get("loss")["relative"], 0.0);
    assert_eq!(
        get("big"),
        json!({"key": "big", "a": get("big")["a"], "b": get("big")["b"], "delta": 0.0, "relative": 0.0, "noise": null})
    );
    assert_eq!(get("big")["a"]["last"], "Infinity");
    assert_eq!(get("only_a")["b"], Value::Null);
    assert_eq!(get("only_a")["delta"], Value::Null);
    assert_eq!(get("only_b")["a"], Value::Null);
    assert_eq!(get("wobbly")["a"]["last"], "NaN");
    assert_eq!(get("wobbly")["delta"], "NaN");
    assert_eq!(get("wobbly")["relative"], Value::Null);
    assert_eq!(get("zero")["delta"], 0.5);
    assert_eq!(get("zero")["relative"], Value::Null, "no ratio to 0");

    // The text: a metric table after the fields, one row per key.
    let (code, out, err) = env.run_in(env.root(), &["diff", &a, &b]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["METRIC", "(last)", "A"], "{out}");
    let row = |k: &str| rows.iter().find(|r| r[0] == k).unwrap().clone();
    assert_eq!(row("acc"), ["acc", "0.8", "0.9", "+0.1", "+12.5%"], "{out}");
    assert_eq!(row("loss"), ["loss", "0.4", "0.4", "0", "0%"]);
    assert_eq!(row("big"), ["big", "inf", "inf", "0", "0%"]);
    assert_eq!(
        row("only_a"),
        ["only_a", "1", "(none)", "only", "in", "A", "-"]
    );
    assert_eq!(
        row("only_b"),
        ["only_b", "(none)", "2", "only", "in", "B", "-"]
    );
    assert_eq!(row("wobbly"), ["wobbly", "NaN", "1", "NaN", "-"]);
    assert_eq!(row("zero"), ["zero", "0", "0.5", "+0.5", "-"]);

    // Runs without metrics: no metric table, an empty list in JSON.
    let c = run_with_metrics(&env, "c", "{}");
    let d = run_with_metrics(&env, "d", "{}");
    let (_, out, _) = env.run_in(env.root(), &["diff", &c, &d]);
    assert!(!out.contains("METRIC"), "{out}");
    let (_, out, _) = env.run_in(env.root(), &["diff", &c, &d, "--json"]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["metrics"], json!([]));
}

#[test]
fn argv_insertions_are_aligned_not_reported_as_shifted_changes() {
    let (env, runs) = seeded();
    // baseline runs `python train.py`; sweep2 `python train.py --lr 0.2`.
    let (code, out, err) = at_now(
        &env,
        &["diff", &id(&runs, "baseline"), &id(&runs, "sweep2")],
    );
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("diff_text_argv_insertion", out);
    let row = |f: &str| {
        out.lines()
            .find(|l| l.starts_with(f))
            .unwrap_or_else(|| panic!("no {f} in {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("command[+2]"), vec!["command[+2]", "(none)", "--lr"]);
    assert_eq!(row("command[+3]"), vec!["command[+3]", "(none)", "0.2"]);
    // sweep2 → sweep3 changes one value in place.
    let (_, out, _) = at_now(&env, &["diff", &id(&runs, "sweep2"), &id(&runs, "sweep3")]);
    assert!(
        !out.contains("command[+") && !out.contains("command[-"),
        "{out}"
    );
    assert!(out.contains("command[3] "), "{out}");
}
