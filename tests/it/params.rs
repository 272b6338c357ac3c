//! Params read from the command's arguments (issue 25 item 2, docs/params.md): the forms, `--param`
//! winning, the switch and the config key, and the mark carried by show, JSON, export/import and
//! re-runs.

use serde_json::{json, Value};

use crate::support::TestEnv;

fn train(env: &TestEnv) {
    std::fs::write(env.root().join("train.py"), "import sys\n").unwrap();
}

const ARGV: [&str; 10] = [
    "python3",
    "train.py",
    "--lr",
    "0.1",
    "--epochs=5",
    "--amp",
    "trainer.max_epochs=3",
    "--",
    "--not-a-param",
    "1",
];

fn run(env: &TestEnv, flags: &[&str]) -> Value {
    let mut args = vec!["run", "--host", "--param", "lr=0.2"];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(&ARGV);
    let (code, _, err) = env.run_in(env.root(), &args);
    assert_eq!(code, 0, "{err}");
    env.show_json(&env.last_id())
}

#[test]
fn argv_params_are_recorded_marked_and_param_wins() {
    let env = TestEnv::new();
    train(&env);
    let r = run(&env, &[]);
    assert_eq!(
        r["params"],
        json!({"lr": "0.2", "epochs": "5", "amp": "true", "trainer.max_epochs": "3"}),
        "--param lr=0.2 wins over --lr 0.1; nothing after --: {r}"
    );
    assert_eq!(
        r["params_from_argv"],
        json!(["amp", "epochs", "trainer.max_epochs"])
    );
    let id = env.last_id();
    let (code, out, _) = env.run_in(env.root(), &["show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("epochs=5  (from argv)"), "{out}");
    assert!(out.contains("lr=0.2\n"), "{out}");
    // `ls --param` finds runs by them like any param.
    let (code, out, _) = env.run_in(
        env.root(),
        &["ls", "--param", "trainer.max_epochs=3", "--format", "csv"],
    );
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");
    // And as columns (issue 25 item 5): `param:KEY`, `-` / empty where a run lacks it.
    let (code, out, err) = env.run_in(
        env.root(),
        &[
            "ls",
            "--columns",
            "id,param:epochs,param:nope",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("id,param:epochs,param:nope\r\n{id},5,\r\n"),
        "RFC 4180"
    );
    let (code, out, _) = env.run_in(env.root(), &["ls", "--columns", "param:lr,param:nope"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("lr") && out.contains("0.2") && out.contains('-'),
        "{out}"
    );
    let (code, _, err) = env.run_in(env.root(), &["ls", "--columns", "param:"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn the_switch_and_the_config_key_turn_it_off() {
    let env = TestEnv::new();
    train(&env);
    let r = run(&env, &["--no-params-from-argv"]);
    assert_eq!(r["params"], json!({"lr": "0.2"}));
    assert!(r.get("params_from_argv").is_none(), "{r}");

    let cfg = env.home().join(".config/repro");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.toml"), "params_from_argv = false\n").unwrap();
    let r = run(&env, &[]);
    assert_eq!(r["params"], json!({"lr": "0.2"}), "{r}");
    let r = run(&env, &["--params-from-argv"]);
    assert_eq!(r["params"]["epochs"], "5", "the flag beats the config: {r}");
}

#[test]
fn the_mark_survives_export_import_and_reruns() {
    let env = TestEnv::new();
    train(&env);
    run(&env, &[]);
    let id = env.last_id();
    let (code, export, err) = env.run_in(env.root(), &["export"]);
    assert_eq!(code, 0, "{err}");
    let file = env.root().join("runs.jsonl");
    std::fs::write(&file, export).unwrap();
    let other = TestEnv::new();
    let (code, _, err) = other.run_in(other.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let imported = other.show_json(&id);
    assert_eq!(
        imported["params_from_argv"],
        json!(["amp", "epochs", "trainer.max_epochs"])
    );

    // Re-runs copy params (provenance), not the original's hand-added tags and notes.
    for args in [
        vec!["tag", &id, "+best"],
        vec!["note", &id, "the one to ship"],
    ] {
        let (code, _, err) = env.run_in(env.root(), &args);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id]);
    assert_eq!(code, 0, "{err}");
    let again = env.show_json(&env.last_id());
    assert_eq!(again["rerun_of"], id.as_str());
    assert_eq!(again["params"], env.show_json(&id)["params"]);
    assert_eq!(again["tags"], json!([]), "{again}");
    assert_eq!(again["notes"], json!([]), "{again}");
    assert_eq!(env.show_json(&id)["tags"], json!(["best"]));
    let (code, out, _) = env.run_in(
        env.root(),
        &["ls", "--tag", "best", "--format", "csv", "--columns", "id"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().count(),
        2,
        "one run tagged best, not its re-run: {out}"
    );
    assert_eq!(
        again["params_from_argv"],
        json!(["amp", "epochs", "trainer.max_epochs"])
    );
}
