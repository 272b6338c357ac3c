//! `repro which FILE…` over real runs (outputs, directory outputs, path datasets), and `repro
//! verify` falling back to the kept copy of an output whose working file changed.

use std::path::Path;

use crate::support::TestEnv;

/// `repro which ARGS` in `cwd`: (exit code, stdout, stderr).
fn which(env: &TestEnv, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["which"];
    a.extend_from_slice(args);
    env.run_in(cwd, &a)
}

fn which_json(env: &TestEnv, cwd: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (_, out, err) = which(env, cwd, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"))
}

/// A run in `dir` that writes `model.txt`, the directory `ckpt/` and copies a dataset file.
fn producing_run(env: &TestEnv, dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("data/sub")).unwrap();
    std::fs::write(dir.join("data/train.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(dir.join("data/sub/val.csv"), "x,y\n3,4\n").unwrap();
    let (code, _, err) = env.run_in(
        dir,
        &[
            "run",
            "--name",
            "producer",
            "--dataset",
            "data",
            "--output",
            "model.txt",
            "--output",
            "ckpt",
            "--",
            "sh",
            "-c",
            "echo weights-1 > model.txt; mkdir -p ckpt/sub; echo step-9 > ckpt/sub/w.txt; echo meta > ckpt/meta.txt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    env.last_id()
}

#[test]
fn a_produced_file_names_its_run_and_whether_it_is_still_kept() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    let id = producing_run(&env, &dir);
    let (code, out, err) = which(&env, &dir, &["model.txt"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("model.txt  ("), "{out}");
    let line = out.lines().nth(1).unwrap();
    assert!(line.contains("produced"), "{out}");
    assert!(line.contains(&id[..12]), "{out}");
    assert!(
        line.contains("succeeded  producer  output model.txt  (kept)"),
        "{out}"
    );

    // The same bytes elsewhere are the same content.
    std::fs::copy(dir.join("model.txt"), env.root().join("copy")).unwrap();
    let v = which_json(&env, env.root(), &["copy"]);
    let p = &v["files"][0]["produced_by"][0];
    assert_eq!(p["run_id"], id.as_str());
    assert_eq!(p["output"], "model.txt");
    assert_eq!(p["kept"], true);
    assert_eq!(p["inside"], serde_json::Value::Null);

    // Once the object is gone from the store, the copy is no longer kept.
    let sha = v["files"][0]["sha256"].as_str().unwrap();
    let object =
        env.db()
            .parent()
            .unwrap()
            .join(format!("objects/sha256/{}/{}", &sha[..2], &sha[2..]));
    std::fs::remove_file(&object).unwrap();
    let v = which_json(&env, env.root(), &["copy"]);
    assert_eq!(v["files"][0]["produced_by"][0]["kept"], false);
}

#[test]
fn a_file_inside_a_directory_output_and_the_directory_itself() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    let id = producing_run(&env, &dir);
    let (code, out, err) = which(&env, &dir, &["ckpt/sub/w.txt"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("output ckpt → sub/w.txt  (kept)"), "{out}");

    let v = which_json(&env, &dir, &["ckpt"]);
    let f = &v["files"][0];
    assert!(f["sha256"].as_str().unwrap().starts_with("sha256:"), "{v}");
    assert_eq!(f["sha256"], env.show_json(&id)["outputs"][1]["sha256"]);
    assert_eq!(f["produced_by"][0]["run_id"], id.as_str());
    assert_eq!(f["produced_by"][0]["output"], "ckpt");
}

/// An imported run's directory outputs are looked up file by file when this store holds their
/// manifests (the objects came along); without them only the directory's digest is known.
#[test]
fn files_inside_an_imported_directory_output_are_found_when_its_objects_are_here() {
    let from = TestEnv::new();
    let dir = from.root().join("work");
    let id = producing_run(&from, &dir);
    let (code, export, err) = from.run_in(&dir, &["export"]);
    assert_eq!(code, 0, "{err}");
    let file = from.root().join("runs.jsonl");
    std::fs::write(&file, export).unwrap();
    let objects = |env: &TestEnv| env.db().parent().unwrap().join("objects");

    let bare = TestEnv::new();
    let (code, _, err) = bare.run_in(bare.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = which(&bare, &dir, &["ckpt/sub/w.txt"]);
    assert_eq!(code, 1, "no manifest here, no file rows: {out}");

    let with = TestEnv::new();
    std::fs::create_dir_all(objects(&with).parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(objects(&from))
        .arg(objects(&with))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, err) = with.run_in(with.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = which(&with, &dir, &["ckpt/sub/w.txt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&id[..12]), "{out}");
    assert!(out.contains("output ckpt → sub/w.txt  (kept)"), "{out}");
}

#[test]
fn a_file_inside_a_dataset_names_every_run_that_read_it_newest_first() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    let first = producing_run(&env, &dir);
    // A second run reads the unchanged dataset: its files are not recorded twice.
    let (code, _, err) = env.run_in(&dir, &["run", "--dataset", "train=data", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let second = env.last_id();

    let v = which_json(&env, &dir, &["data/sub/val.csv"]);
    let read = v["files"][0]["read_by"].as_array().unwrap();
    let ids: Vec<&str> = read.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "{v}");
    assert_eq!(read[0]["dataset"], "train");
    assert_eq!(read[1]["dataset"], "data");
    assert_eq!(read[0]["inside"], "sub/val.csv");
    assert_eq!(
        read[0]["digest"],
        env.show_json(&first)["datasets"][0]["digest"]
    );
    assert!(v["files"][0]["produced_by"].as_array().unwrap().is_empty());

    let (code, out, _) = which(&env, &dir, &["data/train.csv"]);
    assert_eq!(code, 0);
    assert!(out.contains("dataset train → train.csv"), "{out}");

    // The directory itself is the dataset.
    let v = which_json(&env, &dir, &["data"]);
    assert_eq!(v["files"][0]["read_by"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        v["files"][0]["read_by"][0]["inside"],
        serde_json::Value::Null
    );

    // One row per file of the one digest, whatever the number of runs that read it.
    let db = rusqlite::Connection::open(env.db()).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM dataset_files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn unknown_content_exits_1_and_a_missing_path_exits_2_without_hiding_the_others() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    producing_run(&env, &dir);
    std::fs::write(dir.join("fresh.txt"), "never recorded\n").unwrap();
    let (code, out, err) = which(&env, &dir, &["fresh.txt"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("no recorded run produced or read this content"),
        "{out}"
    );
    let (code, _, _) = which(&env, &dir, &["fresh.txt", "model.txt"]);
    assert_eq!(code, 1, "one unknown path is enough");

    let (code, out, err) = which(&env, &dir, &["nope.bin", "model.txt"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("nope.bin does not exist"), "{err}");
    assert!(
        out.contains("model.txt"),
        "the other path is still reported: {out}"
    );

    let v = which_json(&env, &dir, &["nope.bin"]);
    assert_eq!(v["schema_version"], 1);
    let f = &v["files"][0];
    assert_eq!(f["path"], "nope.bin");
    assert_eq!(f["sha256"], serde_json::Value::Null);
    assert!(
        f["error"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
}

#[test]
fn json_has_the_documented_fields() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    producing_run(&env, &dir);
    let v = which_json(&env, &dir, &["model.txt"]);
    let f = &v["files"][0];
    let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["bytes", "error", "path", "produced_by", "read_by", "sha256"]
    );
    assert_eq!(f["bytes"], 10);
    let mut keys: Vec<&str> = f["produced_by"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ended_at",
            "inside",
            "kept",
            "name",
            "output",
            "run_id",
            "started_at",
            "status"
        ]
    );
}

#[test]
fn a_hostile_file_name_is_escaped_on_the_terminal_and_exact_in_json() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    // A newline cannot be in a manifest (docs/datasets.md); a carriage return can.
    let name = "evil\x1b[2J\rname.txt";
    let (code, _, err) = env.run_in(
        &dir,
        &[
            "run",
            "--name",
            "n\x07x",
            "--output",
            "out",
            "--",
            "sh",
            "-c",
            "mkdir -p out && echo x > \"out/$1\"",
            "sh",
            name,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let path = format!("out/{name}");
    let (code, out, err) = which(&env, &dir, &[&path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains('\x1b') && !out.contains('\x07') && !out.contains('\r'),
        "{out:?}"
    );
    assert!(out.contains("evil\\x1b[2J\\rname.txt"), "{out}");
    assert!(out.contains("n\\x07x"), "{out}");
    assert_eq!(out.lines().count(), 2, "no forged line: {out:?}");
    let v = which_json(&env, &dir, &[&path]);
    assert_eq!(v["files"][0]["path"], path.as_str());
    assert_eq!(v["files"][0]["produced_by"][0]["inside"], name);
}

#[test]
fn verify_says_when_the_kept_copy_still_matches_a_changed_working_file() {
    let env = TestEnv::new();
    let dir = env.root().join("work");
    let id = producing_run(&env, &dir);
    std::fs::write(dir.join("model.txt"), "overwritten\n").unwrap();
    std::fs::remove_file(dir.join("ckpt/meta.txt")).unwrap();
    let base = dir.to_str().unwrap();
    let (code, out, err) = env.run_in(&dir, &["verify", &id, "--base", base]);
    assert_eq!(
        code, 1,
        "a changed working file is still a mismatch: {out}{err}"
    );
    let restore = format!("`repro get {id} model.txt --to {base} --force` restores it");
    assert!(
        out.contains(&format!(
            "working file changed since the run; the kept copy matches — {restore}"
        )),
        "{out}"
    );
    let (_, json, _) = env.run_in(&dir, &["verify", &id, "--base", base, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = v["items"].as_array().unwrap();
    let kept: Vec<&serde_json::Value> = items.iter().map(|i| &i["kept_copy"]).collect();
    assert_eq!(
        kept,
        [&serde_json::Value::Null, &"match".into(), &"match".into()],
        "{v}"
    );

    // The line it gives works.
    let (code, _, err) = env.run_in(
        env.root(),
        &["get", &id, "model.txt", "--to", base, "--force"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = env.run_in(env.root(), &["get", &id, "ckpt", "--to", base]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = env.run_in(&dir, &["verify", &id, "--base", base]);
    assert_eq!(code, 0, "{out}{err}");

    // With the kept copy gone too, it says so.
    let sha = env.show_json(&id)["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let objects = env.db().parent().unwrap().join("objects/sha256");
    std::fs::remove_file(objects.join(&sha[..2]).join(&sha[2..])).unwrap();
    std::fs::write(dir.join("model.txt"), "overwritten\n").unwrap();
    let (code, out, _) = env.run_in(&dir, &["verify", &id, "--base", base]);
    assert_eq!(code, 1);
    assert!(
        out.contains("its kept copy is gone from the object store"),
        "{out}"
    );
}
