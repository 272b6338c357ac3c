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
    assert_eq!(get("command[2]")["a"], Value::Null);
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
