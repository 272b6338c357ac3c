//! `repro mlflow push` against a real MLflow tracking server, checked through its REST API.

use std::path::Path;

use serde_json::Value;

use crate::support::mlflow::{auth_server, kv, server, ADMIN_PASSWORD, ADMIN_USER};
use crate::support::{git, TestEnv};

/// A unique experiment name per test (the server is shared by the test binary).
fn experiment(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// `repro mlflow push ARGS` with MLFLOW_* set for `uri`; returns (code, stdout, stderr).
fn push(
    env: &TestEnv,
    uri: &str,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let mut c = env.repro();
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_") {
            c.env_remove(&k);
        }
    }
    c.env("MLFLOW_TRACKING_URI", uri);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c
        .current_dir(env.root())
        .args(["mlflow", "push"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(env: &TestEnv, cwd: &Path, args: &[&str]) -> String {
    let (code, out, err) = env.run_in(cwd, args);
    assert_eq!(code, 0, "repro {args:?}: {err}");
    out
}

/// A repository with a remote, a path dataset, and a recorded run with params, tags and a note.
fn recorded_run(env: &TestEnv, long_param: bool) -> (std::path::PathBuf, String) {
    let repo = env.git_repo("app");
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "https://git.example.com/team/app.git",
        ],
    );
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/train.csv"), "x,y\n1,2\n").unwrap();
    let big = format!("--param=prompt={}", "p".repeat(7000));
    let mut args = vec![
        "run",
        "--host",
        "--name",
        "baseline",
        "--param",
        "lr=0.1",
        "--param",
        "epochs=3",
        "--tag",
        "best",
        "--dataset",
        "data",
    ];
    if long_param {
        args.push(&big);
    }
    args.extend(["--", "sh", "-c", "exit 0"]);
    ok(env, &repo, &args);
    let id = env.last_id();
    ok(env, &repo, &["note", &id, "first baseline"]);
    (repo, id)
}

#[test]
fn push_sends_every_field_and_a_second_push_sends_nothing() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("fields");
    let (repo, id) = recorded_run(&env, true);
    // A re-run of it (linked to the original), and a failed run.
    ok(&env, &repo, &["rerun", &id]);
    let rerun_id = env.last_id();
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--name",
            "again",
            "--dataset",
            "data",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    assert_eq!(code, 3, "{err}");
    let failed_id = env.last_id();

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would create"), "{out}");
    assert!(srv.runs(&exp).is_empty(), "a dry run sent runs");

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("created").count(), 3, "{out}");
    assert!(err.contains("3 created"), "{err}");

    let run = srv
        .run_by_repro_id(&exp, &id)
        .expect("pushed run found by repro.run_id");
    let shown = env.show_json(&id);
    let info = &run["info"];
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], "baseline");
    let start =
        chrono::DateTime::parse_from_rfc3339(shown["started_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        info["start_time"].as_i64().unwrap(),
        start.timestamp_millis()
    );
    let end = chrono::DateTime::parse_from_rfc3339(shown["ended_at"].as_str().unwrap()).unwrap();
    assert_eq!(info["end_time"].as_i64().unwrap(), end.timestamp_millis());
    assert_eq!(info["user_id"], shown["user"]);

    let params = kv(&run["data"]["params"]);
    assert_eq!(params.get("lr").map(String::as_str), Some("0.1"));
    assert_eq!(params.get("epochs").map(String::as_str), Some("3"));
    assert!(
        !params.contains_key("prompt"),
        "a 7000-character param cannot be an MLflow param"
    );

    let tags = kv(&run["data"]["tags"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    for (k, v) in [
        ("mlflow.runName", "baseline"),
        ("mlflow.source.type", "JOB"),
        // What ran (mapping 2): the program, as no .py/.sh argument was given.
        ("mlflow.source.name", "sh"),
        (
            "mlflow.source.git.repoURL",
            "https://git.example.com/team/app.git",
        ),
        ("mlflow.source.git.commit", commit.as_str()),
        ("mlflow.source.git.branch", "main"),
        ("repro.run_id", id.as_str()),
        ("repro.exit", "0"),
        (
            "mlflow.source.git.dirty",
            shown["code"]["dirty"].to_string().as_str(),
        ),
        ("repro.params.moved", "prompt"),
        ("repro.tags", "best"),
        ("best", "true"),
    ] {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "tag {k}: {tags:?}"
        );
    }
    assert_eq!(tags["mlflow.user"], shown["user"].as_str().unwrap());
    assert!(tags["repro.pin"].starts_with("image: none, code: "));
    assert!(tags["repro.pin"].ends_with("data: content-addressed"));
    let note = &tags["mlflow.note.content"];
    assert!(note.starts_with("first baseline"), "{note}");
    assert!(note.contains("repro/params.json: prompt"), "{note}");
    assert!(
        note.contains(&format!("- **Commit**: `{commit}`")),
        "{note}"
    );

    // The dataset as an input: digest prefix there, full digest in the source.
    let inputs = run["inputs"]["dataset_inputs"]
        .as_array()
        .expect("dataset inputs");
    assert_eq!(inputs.len(), 1);
    let ds = &inputs[0]["dataset"];
    let full = shown["datasets"][0]["digest"].as_str().unwrap();
    assert_eq!(ds["name"], "data");
    assert_eq!(
        ds["digest"].as_str().unwrap(),
        &full["sha256:".len().."sha256:".len() + 12]
    );
    let source: Value = serde_json::from_str(ds["source"].as_str().unwrap()).unwrap();
    assert_eq!(source["digest"], full);

    // Artifacts: run.json is `show --json`, rerun.sh is `repro script`, the long param whole.
    let mlflow_id = info["run_id"].as_str().unwrap();
    let exp_id = info["experiment_id"].as_str().unwrap();
    let mut listed = srv.artifacts(mlflow_id, "repro");
    listed.sort();
    assert_eq!(
        listed,
        [
            "repro/README.md",
            "repro/params.json",
            "repro/rerun.sh",
            "repro/run.json"
        ]
    );
    let run_json: Value =
        serde_json::from_slice(&srv.download(exp_id, mlflow_id, "repro/run.json")).unwrap();
    // run.json is the run object of `show --json`, metric summary included.
    assert_eq!(run_json, shown);
    let script = ok(&env, &repo, &["script", &id]);
    assert_eq!(
        String::from_utf8(srv.download(exp_id, mlflow_id, "repro/rerun.sh")).unwrap(),
        script
    );
    let all: Value =
        serde_json::from_slice(&srv.download(exp_id, mlflow_id, "repro/params.json")).unwrap();
    assert_eq!(all["prompt"].as_str().unwrap().len(), 7000);

    let failed = srv.run_by_repro_id(&exp, &failed_id).unwrap();
    assert_eq!(failed["info"]["status"], "FAILED");
    assert_eq!(kv(&failed["data"]["tags"])["repro.exit"], "3");

    let rerun = srv.run_by_repro_id(&exp, &rerun_id).unwrap();
    let rerun_tags = kv(&rerun["data"]["tags"]);
    assert_eq!(rerun_tags["mlflow.parentRunId"], mlflow_id);
    assert!(
        !rerun_tags.contains_key("repro.rerun_of"),
        "in run.json only"
    );

    // Second push: nothing created, nothing sent (one request looks for runs deleted in MLflow).
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("0 created") && err.contains("3 unchanged") && err.contains("(1 request)"),
        "{err}"
    );
    assert_eq!(srv.runs(&exp).len(), 3);
}

#[test]
fn a_changed_tag_updates_the_run_and_a_lost_ledger_relinks_by_repro_run_id() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("tags");
    let (repo, id) = recorded_run(&env, false);
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");

    ok(&env, &repo, &["tag", &id, "+shipped", "-best"]);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("updated tags"), "{out}");
    assert!(!out.contains("params"), "{out}");
    let tags = kv(&srv.run_by_repro_id(&exp, &id).unwrap()["data"]["tags"]);
    assert_eq!(tags.get("shipped").map(String::as_str), Some("true"));
    assert!(
        !tags.contains_key("best"),
        "removed tag still on the server: {tags:?}"
    );
    assert_eq!(tags["repro.tags"], "shipped");

    // The ledger is lost: the run is found again, not pushed twice.
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    assert_eq!(conn.execute("DELETE FROM mlflow_pushes", []).unwrap(), 1);
    drop(conn);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("re-linked"), "{out}");
    assert_eq!(srv.runs(&exp).len(), 1);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    // A param changed locally is a conflict, reported on every push, never hidden.
    ok(&env, &repo, &["param", &id, "lr=0.5"]);
    for _ in 0..2 {
        let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("param 'lr' is '0.5' locally but '0.1' on the server"),
            "{err}"
        );
    }
    let params = kv(&srv.run_by_repro_id(&exp, &id).unwrap()["data"]["params"]);
    assert_eq!(params["lr"], "0.1");
}

#[test]
fn server_down_loses_nothing_and_the_next_push_succeeds() {
    let env = TestEnv::new();
    let exp = experiment("down");
    let (_repo, id) = recorded_run(&env, false);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let (code, out, err) = push(&env, &dead, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!(
            "cannot reach the MLflow tracking server at {dead}"
        )),
        "{err}"
    );
    assert!(err.contains("nothing was changed locally"), "{err}");
    assert_eq!(env.runs().len(), 1);
    let srv = server();
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    assert!(srv.run_by_repro_id(&exp, &id).is_some());
}

#[test]
fn only_http_servers_are_accepted() {
    let env = TestEnv::new();
    recorded_run(&env, false);
    for uri in ["file:///tmp/mlruns", "sqlite:///mlflow.db"] {
        let (code, _, err) = push(&env, uri, &[], &[]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("is not an http(s) MLflow tracking server"),
            "{err}"
        );
        assert!(err.contains("hint: start `mlflow server`"), "{err}");
    }
    let mut c = env.repro();
    c.env_remove("MLFLOW_TRACKING_URI");
    let out = c.args(["mlflow", "push"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MLFLOW_TRACKING_URI"));
}

#[test]
fn wrong_credentials_fail_clearly_and_right_ones_push() {
    let srv = auth_server();
    let env = TestEnv::new();
    let exp = experiment("auth");
    let (_repo, id) = recorded_run(&env, false);
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused the credentials (HTTP 401)"), "{err}");
    assert!(
        err.contains("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        "{err}"
    );
    let wrong = [
        ("MLFLOW_TRACKING_USERNAME", ADMIN_USER),
        ("MLFLOW_TRACKING_PASSWORD", "not-the-password"),
    ];
    let (code, _, err) = push(&env, &srv.uri, &wrong, &["--experiment", &exp]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains("check MLFLOW_TRACKING_USERNAME"), "{err}");
    let right = [
        ("MLFLOW_TRACKING_USERNAME", ADMIN_USER),
        ("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD),
    ];
    let (code, out, err) = push(&env, &srv.uri, &right, &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    assert!(srv.run_by_repro_id(&exp, &id).is_some());
}

/// The metrics input of the op (history given by the caller): history arrives with its steps and
/// timestamps, a re-push sends only new points, and none are duplicated.
#[test]
fn metric_history_is_pushed_with_steps_and_timestamps_and_never_duplicated() {
    use repro::mlflow::{MetricPoint, Settings};
    use repro::ops::mlflow::{push, PushRequest, RunToPush};
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("metrics");
    let (_repo, id) = recorded_run(&env, false);
    let store = repro::store::Store::open(&env.db()).unwrap();
    let run = store.get_run(&id).unwrap();
    let point = |step: i64| MetricPoint {
        key: "loss".into(),
        value: 1.0 / (step + 1) as f64,
        timestamp: 1_796_000_000_000 + step * 1000,
        step,
    };
    let settings = Settings::from_env(Some(&srv.uri), &|_| None).unwrap();
    let request = |metrics: Vec<MetricPoint>| PushRequest {
        settings: settings.clone(),
        experiment: exp.clone(),
        runs: vec![RunToPush {
            run: run.clone(),
            metrics: Some(metrics),
            loaded: true,
        }],
        dry_run: false,
        jobs: 2,
        deleted: Default::default(),
        outputs: Default::default(),
        dataset_context: String::new(),
    };
    // 1,500 points: more than one log-batch request can hold.
    let first: Vec<MetricPoint> = (0..1500).map(point).collect();
    let s = push(&store, request(first.clone()), &mut |_| {}).unwrap();
    assert!(s.outcomes[0].error.is_none(), "{:?}", s.outcomes[0].error);
    let mlflow_id = s.outcomes[0].mlflow_run_id.clone().unwrap();
    let mut more = first.clone();
    more.extend((1500..1510).map(point));
    let s = push(&store, request(more), &mut |_| {}).unwrap();
    assert!(s.outcomes[0].error.is_none());
    // Same history again: nothing to send.
    let mut again = first;
    again.extend((1500..1510).map(point));
    let s = push(&store, request(again), &mut |_| {}).unwrap();
    assert_eq!(s.outcomes[0].requests, 0);
    let h = srv.get(
        "metrics/get-history",
        &[
            ("run_id", &mlflow_id),
            ("metric_key", "loss"),
            ("max_results", "25000"),
        ],
    );
    let pts = h["metrics"].as_array().unwrap();
    assert_eq!(pts.len(), 1510);
    let mut steps: Vec<i64> = pts.iter().map(|p| p["step"].as_i64().unwrap()).collect();
    steps.sort();
    assert_eq!(steps, (0..1510).collect::<Vec<_>>());
    let p7 = pts.iter().find(|p| p["step"] == 7).unwrap();
    assert_eq!(p7["timestamp"].as_i64().unwrap(), 1_796_000_007_000);
    assert_eq!(p7["value"].as_f64().unwrap(), 1.0 / 8.0);
}

/// Runs without a ledger row are looked up all at once: a run pushed alone costs its own
/// `runs/search`, two pushed together cost one listing of the experiment between them and no
/// search each; with the ledger lost, the listing re-links every run it finds and creates the
/// others.
#[test]
fn new_runs_are_looked_up_in_one_listing_and_a_lost_ledger_relinks_them_all() {
    use repro::mlflow::Settings;
    use repro::ops::mlflow::{push, Action, PushRequest, RunToPush};
    let srv = server();
    let env = TestEnv::new();
    let repo = env.git_repo("app");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ok(&env, &repo, &["run", "--host", "--", "true"]);
        ids.push(env.last_id());
    }
    let store = repro::store::Store::open(&env.db()).unwrap();
    let settings = Settings::from_env(Some(&srv.uri), &|_| None).unwrap();
    let request = |exp: &str, ids: &[String]| PushRequest {
        settings: settings.clone(),
        experiment: exp.to_string(),
        runs: ids
            .iter()
            .map(|id| RunToPush::new(store.get_run(id).unwrap()))
            .collect(),
        dry_run: false,
        jobs: 2,
        deleted: Default::default(),
        outputs: Default::default(),
        dataset_context: String::new(),
    };
    let one = experiment("lookup-one");
    let s = push(&store, request(&one, &ids[..1]), &mut |_| {}).unwrap();
    assert!(s.outcomes[0].error.is_none(), "{:?}", s.outcomes[0].error);
    assert_eq!(s.outcomes[0].action, Action::Create);
    let alone = s.outcomes[0].requests;

    let two = experiment("lookup-two");
    let s = push(&store, request(&two, &ids[1..]), &mut |_| {}).unwrap();
    for o in &s.outcomes {
        assert!(o.error.is_none(), "{:?}", o.error);
        assert_eq!(o.action, Action::Create);
        assert_eq!(
            o.requests,
            alone - 1,
            "a run of a batch searched on its own"
        );
    }
    assert_eq!(srv.runs(&two).len(), 2);

    // The ledger is lost; a third run joins: two re-linked from the listing, one created.
    assert_eq!(
        store
            .forget_mlflow_pushes(&settings.uri, &two, None)
            .unwrap(),
        2
    );
    let s = push(&store, request(&two, &ids), &mut |_| {}).unwrap();
    for o in &s.outcomes {
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    assert_eq!(s.outcomes[0].action, Action::Create);
    for o in &s.outcomes[1..] {
        assert!(
            matches!(o.action, Action::Relinked { .. }),
            "{:?}",
            o.action
        );
    }
    assert_eq!(srv.runs(&two).len(), 3);
    let s = push(&store, request(&two, &ids), &mut |_| {}).unwrap();
    assert!(s.outcomes.iter().all(|o| o.action == Action::Unchanged));
}

/// `repro` with MLFLOW_TRACKING_URI = `uri` and no other inherited MLFLOW_* variable.
fn repro_mlflow(
    env: &TestEnv,
    uri: Option<&str>,
    cwd: &Path,
    args: &[&str],
) -> (i32, String, String) {
    let mut c = env.repro();
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_") {
            c.env_remove(&k);
        }
    }
    if let Some(u) = uri {
        c.env("MLFLOW_TRACKING_URI", u);
    }
    let out = c.current_dir(cwd).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A run with a hashed output (what `repro attest` needs as the subject).
fn run_with_output(env: &TestEnv) -> (std::path::PathBuf, String) {
    let repo = env.git_repo("app");
    ok(
        env,
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "model.bin",
            "--",
            "sh",
            "-c",
            "echo w > model.bin",
        ],
    );
    (repo.clone(), env.last_id())
}

fn history(srv: &crate::support::mlflow::MlflowServer, run_id: &str, key: &str) -> Vec<Value> {
    let h = srv.get(
        "metrics/get-history",
        &[
            ("run_id", run_id),
            ("metric_key", key),
            ("max_results", "25000"),
        ],
    );
    let mut pts = h["metrics"].as_array().cloned().unwrap_or_default();
    pts.sort_by_key(|p| (p["step"].as_i64(), p["timestamp"].as_i64()));
    pts
}

/// Metrics recorded in the metric store and the run's attestation reach the server through
/// `repro mlflow push`; a re-push sends nothing; new points alone are sent later.
#[test]
fn stored_metrics_and_the_attestation_are_pushed_and_never_duplicated() {
    use repro::record::metrics::MetricPoint;
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("stored-metrics");
    let (repo, id) = run_with_output(&env);
    let point = |key: &str, step: Option<i64>, value: f64, time: Option<f64>| MetricPoint {
        key: key.into(),
        step,
        value,
        time,
    };
    let mut pts: Vec<MetricPoint> = (0..1200)
        .map(|s| {
            point(
                "loss",
                Some(s),
                s as f64 * 0.25,
                Some(1_796_000_000.0 + s as f64 * 0.5),
            )
        })
        .collect();
    pts.push(point("acc", None, 0.5, None));
    pts.push(point("acc", None, f64::NAN, None));
    {
        let mut store = repro::store::Store::open(&env.db()).unwrap();
        store.insert_metrics(&id, &pts).unwrap();
    }
    let statement = env.root().join("run.intoto.json");
    ok(
        &env,
        &repo,
        &["attest", &id, "-o", statement.to_str().unwrap()],
    );

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    let run = srv.run_by_repro_id(&exp, &id).unwrap();
    let mlflow_id = run["info"]["run_id"].as_str().unwrap().to_string();
    let exp_id = run["info"]["experiment_id"].as_str().unwrap().to_string();
    let loss = history(srv, &mlflow_id, "loss");
    assert_eq!(loss.len(), 1200);
    assert_eq!(loss[10]["step"].as_i64(), Some(10));
    assert_eq!(loss[10]["timestamp"].as_i64(), Some(1_796_000_005_000));
    assert_eq!(loss[10]["value"].as_f64(), Some(2.5));
    // No step: the position in the history; no time: the run's end; NaN kept as NaN.
    let started =
        chrono::DateTime::parse_from_rfc3339(env.show_json(&id)["ended_at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
    let acc = history(srv, &mlflow_id, "acc");
    assert_eq!(acc.len(), 2, "{acc:?}");
    assert_eq!(acc[0]["step"].as_i64(), Some(0));
    assert_eq!(acc[0]["value"].as_f64(), Some(0.5));
    assert_eq!(acc[1]["step"].as_i64(), Some(1));
    assert_eq!(acc[1]["value"], "NaN");
    assert_eq!(acc[1]["timestamp"].as_i64(), Some(started));

    // The attestation, byte for byte, under repro/attestation/.
    let listed = srv.artifacts(&mlflow_id, "repro/attestation");
    assert_eq!(listed, ["repro/attestation/run.intoto.json"]);
    assert_eq!(
        srv.download(&exp_id, &mlflow_id, "repro/attestation/run.intoto.json"),
        std::fs::read(&statement).unwrap()
    );

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("(1 request)"), "{err}");

    // More points later: only those are sent; the history holds each point once.
    {
        let mut store = repro::store::Store::open(&env.db()).unwrap();
        let later: Vec<MetricPoint> = (1200..1205)
            .map(|s| point("loss", Some(s), 0.001, Some(1_796_001_000.0 + s as f64)))
            .collect();
        store.insert_metrics(&id, &later).unwrap();
    }
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("updated metrics"), "{out}");
    // run.json (the `show --json` object) carries the new summary, so it is sent again.
    assert!(out.contains("artifacts"), "{out}");
    assert_eq!(history(srv, &mlflow_id, "loss").len(), 1205);
    assert_eq!(history(srv, &mlflow_id, "acc").len(), 2);
}

/// An attestation whose file changed (or vanished) since `repro attest` wrote it is not uploaded.
#[test]
fn a_tampered_attestation_file_is_not_uploaded() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("tampered");
    let (repo, id) = run_with_output(&env);
    let statement = env.root().join("st.json");
    ok(
        &env,
        &repo,
        &["attest", &id, "-o", statement.to_str().unwrap()],
    );
    std::fs::write(&statement, "{}").unwrap();
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    let run = srv.run_by_repro_id(&exp, &id).unwrap();
    let mlflow_id = run["info"]["run_id"].as_str().unwrap();
    assert!(srv.artifacts(mlflow_id, "repro/attestation").is_empty());
    assert!(!srv.artifacts(mlflow_id, "repro").is_empty());
}

/// `repro run --mlflow` pushes the finished run; with the server down the run keeps its exit
/// code and status, one warning says so, and the next `repro mlflow push` sends it.
#[test]
fn run_with_mlflow_pushes_at_the_end_and_a_failed_push_changes_nothing() {
    let srv = server();
    let env = TestEnv::new();
    let repo = env.git_repo("app");
    let exp = experiment("run-flag");
    let (code, _, err) = repro_mlflow(
        &env,
        Some(&srv.uri),
        &repo,
        &[
            "run", "--host", "--mlflow", "--param", "lr=0.1", "--", "sh", "-c", "exit 3",
        ],
    );
    // MLFLOW_EXPERIMENT_NAME is read like MLflow's client does.
    let _ = &exp;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("pushed to MLflow at"), "{err}");
    let id = env.last_id();
    let run = srv
        .run_by_repro_id("repro", &id)
        .expect("pushed by run --mlflow");
    assert_eq!(run["info"]["status"], "FAILED");
    assert_eq!(kv(&run["data"]["params"])["lr"], "0.1");

    // Server down: same exit code and status, a warning, and it stays queued.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let (code, _, err) = repro_mlflow(
        &env,
        Some(&dead),
        &repo,
        &["run", "--host", "--mlflow", "--", "sh", "-c", "exit 0"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: not pushed to MLflow: cannot reach the MLflow tracking server"),
        "{err}"
    );
    assert!(
        err.contains("it stays queued for `repro mlflow push`"),
        "{err}"
    );
    let queued = env.last_id();
    assert_eq!(env.show_json(&queued)["status"], "succeeded");
    // No URI at all: a warning too, the run is unaffected.
    let (code, _, err) = repro_mlflow(
        &env,
        None,
        &repo,
        &["run", "--host", "--mlflow", "--", "true"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("not pushed to MLflow: no MLflow tracking server is set"),
        "{err}"
    );

    let (code, out, err) = push(&env, &srv.uri, &[], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&queued), "{out}");
    assert!(err.contains("2 created"), "{err}");
    assert!(srv.run_by_repro_id("repro", &queued).is_some());
}

/// `mlflow_push = true` with `mlflow_tracking_uri` and `mlflow_experiment` in the user's config
/// push every run; a repository's .repro.toml cannot choose the server.
#[test]
fn config_keys_push_after_each_run_and_a_repository_cannot_pick_the_server() {
    let srv = server();
    let env = TestEnv::new();
    let repo = env.git_repo("app");
    let exp = experiment("config");
    let dir = env.home().join(".config/repro");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "mlflow_push = true\nmlflow_tracking_uri = \"{}\"\nmlflow_experiment = \"{exp}\"\n",
            srv.uri
        ),
    )
    .unwrap();
    let (code, _, err) = repro_mlflow(&env, None, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    assert!(srv.run_by_repro_id(&exp, &id).is_some(), "{err}");
    // `repro mlflow push` reads the same keys: nothing left to send.
    let (code, out, err) = repro_mlflow(&env, None, &repo, &["mlflow", "push"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains(&format!("experiment '{exp}'")), "{err}");

    std::fs::write(
        repo.join(".repro.toml"),
        "mlflow_tracking_uri = \"http://evil.example\"\n",
    )
    .unwrap();
    let (code, _, err) = repro_mlflow(&env, None, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`mlflow_tracking_uri`: cannot be set in a repository's .repro.toml"),
        "{err}"
    );
}

/// HTTPS: a server whose CA is not trusted fails with a clear TLS error;
/// MLFLOW_TRACKING_SERVER_CERT_PATH or MLFLOW_TRACKING_INSECURE_TLS make it work; a bearer token
/// (MLFLOW_TRACKING_TOKEN) is sent as `Authorization: Bearer` and refused clearly by a
/// basic-auth server.
#[test]
fn https_with_a_private_ca_insecure_tls_and_a_bearer_token() {
    use crate::support::mlflow::TlsProxy;
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("tls");
    let (_repo, id) = recorded_run(&env, false);
    let proxy = TlsProxy::start(&srv.uri, &env.root().join("tls"));

    let (code, _, err) = push(&env, &proxy.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "TLS failed talking to the MLflow tracking server at {}",
            proxy.uri
        )),
        "{err}"
    );
    assert!(err.contains("MLFLOW_TRACKING_SERVER_CERT_PATH"), "{err}");
    assert!(srv.run_by_repro_id(&exp, &id).is_none());

    let ca = proxy.ca.to_str().unwrap();
    let (code, out, err) = push(
        &env,
        &proxy.uri,
        &[("MLFLOW_TRACKING_SERVER_CERT_PATH", ca)],
        &["--experiment", &exp],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    assert!(srv.run_by_repro_id(&exp, &id).is_some());

    // Another ledger (a second database) pushing through with verification off: re-linked.
    let other = TestEnv::new();
    let (_r, id2) = recorded_run(&other, false);
    let (code, out, err) = push(
        &other,
        &proxy.uri,
        &[("MLFLOW_TRACKING_INSECURE_TLS", "true")],
        &["--experiment", &exp],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    assert!(srv.run_by_repro_id(&exp, &id2).is_some());

    // A bearer token is sent as such, on every request (a new experiment: requests are made).
    std::fs::write(&proxy.auth_log, "").unwrap();
    let exp2 = format!("{exp}-token");
    let (code, _, err) = push(
        &other,
        &proxy.uri,
        &[
            ("MLFLOW_TRACKING_INSECURE_TLS", "true"),
            ("MLFLOW_TRACKING_TOKEN", "tok-123"),
        ],
        &["--experiment", &exp2],
    );
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(&proxy.auth_log).unwrap();
    assert!(log.lines().count() >= 3, "{log}");
    assert!(log.lines().all(|l| l == "Bearer tok-123"), "{log}");

    // And refused clearly by a basic-auth server.
    let auth = crate::support::mlflow::auth_server();
    let (code, _, err) = push(
        &env,
        &auth.uri,
        &[("MLFLOW_TRACKING_TOKEN", "tok-123")],
        &["--experiment", &exp],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused the credentials (HTTP 401)"), "{err}");
    assert!(err.contains("check MLFLOW_TRACKING_USERNAME"), "{err}");
}

/// The cheap change check (the ledger's fingerprint) never hides a change: a run pushed while
/// running is updated when it ends; a note, a tag and new metric points are each sent; and a
/// ledger row written before the fingerprint existed is compared in full once, then filled in.
#[test]
fn every_change_passes_the_cheap_check_and_old_ledger_rows_get_a_fingerprint() {
    use std::process::Stdio;
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("fingerprint");
    let repo = env.git_repo("app");
    // `env.repro()` cannot spawn: the same environment on a std Command.
    let mut bg = std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REPRO_") || k.starts_with("XDG_") || k.starts_with("MLFLOW_") {
            bg.env_remove(&k);
        }
    }
    let mut child = bg
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .current_dir(&repo)
        .args(["run", "--host", "--name", "long", "--", "sh", "-c"])
        .arg("while [ ! -e go ]; do sleep 0.05; done")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let runs = env.runs();
        if let Some(r) = runs.first() {
            assert_eq!(r["status"], "running");
            break r["id"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let pushed = |what: &str| {
        let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
        assert_eq!(code, 0, "{what}: {err}");
        (out, err)
    };
    let nothing_sent = |what: &str| {
        let (out, err) = pushed(what);
        assert_eq!(out, "", "{what}");
        assert!(
            err.contains("1 unchanged") && err.contains("(1 request)"),
            "{what}: {err}"
        );
    };
    let server_run = || srv.run_by_repro_id(&exp, &id).unwrap();
    let (out, _) = pushed("running");
    assert!(out.contains("created"), "{out}");
    assert_eq!(server_run()["info"]["status"], "RUNNING");
    nothing_sent("still running");

    std::fs::write(repo.join("go"), "").unwrap();
    assert!(child.wait().unwrap().success());
    let (out, _) = pushed("ended");
    assert!(out.contains("updated") && out.contains("status"), "{out}");
    let info = &server_run()["info"];
    assert_eq!(info["status"], "FINISHED");
    let ended =
        chrono::DateTime::parse_from_rfc3339(env.show_json(&id)["ended_at"].as_str().unwrap())
            .unwrap();
    assert_eq!(info["end_time"].as_i64(), Some(ended.timestamp_millis()));
    nothing_sent("ended");

    ok(&env, &repo, &["note", &id, "looked at it"]);
    let (out, _) = pushed("note");
    assert!(out.contains("updated tags"), "{out}");
    let tags = kv(&server_run()["data"]["tags"]);
    assert!(
        tags["mlflow.note.content"].starts_with("looked at it"),
        "{tags:?}"
    );
    nothing_sent("note");

    ok(&env, &repo, &["tag", &id, "+shipped"]);
    let (out, _) = pushed("tag");
    assert!(out.contains("updated tags"), "{out}");
    assert_eq!(kv(&server_run()["data"]["tags"])["shipped"], "true");
    nothing_sent("tag");

    {
        let mut store = repro::store::Store::open(&env.db()).unwrap();
        let p = repro::record::metrics::MetricPoint {
            key: "loss".into(),
            step: Some(4),
            value: 0.25,
            time: None,
        };
        store.insert_metrics(&id, &[p]).unwrap();
    }
    let (out, _) = pushed("metrics");
    assert!(out.contains("updated metrics"), "{out}");
    let mlflow_id = server_run()["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(history(srv, &mlflow_id, "loss").len(), 1);
    nothing_sent("metrics");

    // A ledger row from before the fingerprint (migration 10): compared in full, nothing sent,
    // and the fingerprint is written for the next push.
    let fingerprint = || -> Option<String> {
        rusqlite::Connection::open(env.db())
            .unwrap()
            .query_row("SELECT fingerprint FROM mlflow_pushes", [], |r| r.get(0))
            .unwrap()
    };
    let current = fingerprint().expect("a push records the fingerprint");
    let forget = || {
        let conn = rusqlite::Connection::open(env.db()).unwrap();
        assert_eq!(
            conn.execute("UPDATE mlflow_pushes SET fingerprint = NULL", [])
                .unwrap(),
            1
        );
    };
    forget();
    nothing_sent("old ledger row");
    assert_eq!(fingerprint().as_deref(), Some(current.as_str()));
    // An old row and a change since: the change is sent.
    forget();
    ok(&env, &repo, &["tag", &id, "-shipped"]);
    let (out, _) = pushed("old row, changed");
    assert!(out.contains("updated tags"), "{out}");
    assert!(!kv(&server_run()["data"]["tags"]).contains_key("shipped"));
    assert!(fingerprint().is_some());
    nothing_sent("old row, changed");
    assert_eq!(srv.runs(&exp).len(), 1);
}

/// A request the server refuses (HTTP 400: a param name MLflow does not allow) fails with the
/// server's own message, names the run as still queued, writes no ledger row, and does not stop
/// the other runs.
#[test]
fn a_rejected_request_shows_the_servers_message_and_the_run_stays_queued() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("rejected");
    let repo = env.git_repo("app");
    ok(
        &env,
        &repo,
        &["run", "--host", "--param", "lr=0.1", "--", "true"],
    );
    let good = env.last_id();
    // A dataset name over MLflow's 500-character limit (param and metric names MLflow refuses
    // are renamed by repro, so they no longer serve here).
    std::fs::create_dir_all(repo.join("d")).unwrap();
    std::fs::write(repo.join("d/f"), "x").unwrap();
    let long_name = format!("{}=d", "n".repeat(600));
    ok(
        &env,
        &repo,
        &["run", "--host", "--dataset", &long_name, "--", "true"],
    );
    let bad = env.last_id();
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp, "--jobs", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1 of 2 runs not pushed (they stay queued"),
        "{err}"
    );
    assert!(
        err.contains(
            "the MLflow tracking server rejected runs/log-inputs (HTTP 400 INVALID_PARAMETER_VALUE)"
        ),
        "{err}"
    );
    // The server's own words, naming what is wrong, and the run by its id.
    assert!(err.contains("name"), "{err}");
    assert!(err.contains(&bad), "{err}");
    assert!(
        err.contains("fix what the server names and push again"),
        "{err}"
    );
    assert!(srv.run_by_repro_id(&exp, &good).is_some());
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let ledger: Vec<String> = conn
        .prepare("SELECT run_id FROM mlflow_pushes")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        ledger,
        std::slice::from_ref(&good),
        "only the acknowledged run is in the ledger"
    );
    // Still queued: the next push tries it again (and is refused again), never marks it pushed.
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1 unchanged") && err.contains("1 failed"),
        "{err}"
    );
    // The refused run was created before its log-batch failed: the retry found it by its
    // repro.run_id tag instead of creating it twice.
    assert!(srv.run_by_repro_id(&exp, &bad).is_some());
    assert_eq!(srv.runs(&exp).len(), 2);
}

/// Issue 21: the `repro/rerun.sh` of a run made with `--insecure-registry` only, downloaded with
/// the MLflow Python client, is the bytes of `repro script ID` and runs under bash against the
/// loopback registry (the run recorded what reaching it took).
#[test]
fn the_pushed_rerun_script_of_an_insecure_registry_run_runs_after_download() {
    use crate::support::engine::Podman;
    use crate::support::registry::Registry;
    let srv = server();
    let registry = Registry::start();
    registry.push_busybox("team/mlflowplain", "1.0");
    let podman = Podman::new(&[]);
    let env = TestEnv::new();
    let repo = env.git_repo("mlflow-insecure");
    let image = format!("{}/team/mlflowplain:1.0", registry.addr());
    crate::support::engine::run_with_insecure_flag(&env, &repo, &podman, &registry.addr(), &image);
    let id = env.last_id();
    let exp = experiment("insecure-rerun");
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    let mlflow_id = srv.run_by_repro_id(&exp, &id).unwrap()["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    let dst = env.root().join("downloaded");
    std::fs::create_dir_all(&dst).unwrap();
    let py = std::process::Command::new(crate::support::mlflow::venv().join("bin/python"))
        .args([
            "-c",
            "import sys, mlflow\nprint(mlflow.artifacts.download_artifacts(run_id=sys.argv[1], artifact_path='repro/rerun.sh', dst_path=sys.argv[2], tracking_uri=sys.argv[3]))",
            &mlflow_id,
            dst.to_str().unwrap(),
            &srv.uri,
        ])
        .output()
        .unwrap();
    crate::support::assert_ok_for(&py, "mlflow.artifacts.download_artifacts");
    let script = std::path::PathBuf::from(String::from_utf8_lossy(&py.stdout).trim());
    let text = std::fs::read_to_string(&script).unwrap();
    assert_eq!(text, ok(&env, &repo, &["script", &id]));
    assert!(text.contains("--tls-verify=false"), "{text}");

    let rerun = std::process::Command::new("bash")
        .arg(&script)
        .arg(env.root().join("work"))
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("HOME", env.home())
        .output()
        .unwrap();
    crate::support::assert_ok_for(&rerun, "bash rerun.sh from MLflow");
    assert_eq!(String::from_utf8_lossy(&rerun.stdout), "hello\n");
}

/// `{repro.run_id: count}` of the experiment's active runs, counted by MLflow's own Python
/// client (`MlflowClient.search_runs`, every page).
fn mlflow_client_counts(
    srv: &crate::support::mlflow::MlflowServer,
    exp: &str,
) -> std::collections::BTreeMap<String, usize> {
    const COUNT_PY: &str = r#"
import collections, json, sys
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1])
e = c.get_experiment_by_name(sys.argv[2])
n = collections.Counter()
token = None
while True:
    page = c.search_runs([e.experiment_id], max_results=500, page_token=token)
    for r in page:
        n[r.data.tags.get("repro.run_id", "")] += 1
    token = page.token
    if not token:
        break
print(json.dumps(n))
"#;
    let out = std::process::Command::new(crate::support::mlflow::venv().join("bin/python"))
        .args(["-c", COUNT_PY, &srv.uri, exp])
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `n` host runs in one repository; their ids, oldest first.
fn many_runs(env: &TestEnv, n: usize) -> Vec<String> {
    let repo = env.git_repo("app");
    (0..n)
        .map(|i| {
            ok(
                env,
                &repo,
                &["run", "--host", "--param", &format!("i={i}"), "--", "true"],
            );
            env.last_id()
        })
        .collect()
}

/// Two, then four `repro mlflow push` started at once over the same 60 runs: every run is one
/// MLflow run (counted by MLflow's Python client), every push exits 0, and the ledger points at
/// that one run. Pushes to one server and experiment take turns (a lock beside the database).
#[test]
fn concurrent_pushes_create_exactly_one_mlflow_run_per_repro_run() {
    let srv = server();
    let env = TestEnv::new();
    let ids = many_runs(&env, 60);
    for pushers in [2, 4] {
        let exp = experiment(&format!("concurrent-{pushers}"));
        // Each pusher is its own `repro` process, started together.
        let results: Vec<(i32, String, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..pushers)
                .map(|_| s.spawn(|| push(&env, &srv.uri, &[], &["--experiment", &exp])))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (code, out, err) in &results {
            assert_eq!(*code, 0, "{out}\n{err}");
        }
        let counts = mlflow_client_counts(srv, &exp);
        assert_eq!(counts.len(), 60, "{counts:?}");
        for id in &ids {
            assert_eq!(counts.get(id), Some(&1), "{pushers} pushers: {counts:?}");
        }
        let conn = rusqlite::Connection::open(env.db()).unwrap();
        let linked: Vec<String> = conn
            .prepare("SELECT mlflow_run_id FROM mlflow_pushes WHERE experiment = ?1")
            .unwrap()
            .query_map([&exp], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(linked.len(), 60);
        let on_server: std::collections::BTreeSet<String> = srv
            .runs(&exp)
            .iter()
            .map(|r| r["info"]["run_id"].as_str().unwrap().to_string())
            .collect();
        assert!(linked.iter().all(|m| on_server.contains(m)));
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that forwards the first `requests` HTTP
/// requests, then dies: every connection is cut and new ones are refused (the server went away
/// in the middle of a push).
fn dying_proxy(upstream: &str, requests: usize) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            if seen.load(Ordering::SeqCst) >= requests {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let mut server = TcpStream::connect(&upstream).unwrap();
            open.lock().unwrap().push(client.try_clone().unwrap());
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
            });
            let (seen, open) = (seen.clone(), open.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    let starts = [&b"POST /"[..], b"GET /", b"PUT /"]
                        .iter()
                        .filter(|m| chunk.starts_with(m))
                        .count();
                    if starts > 0 && seen.fetch_add(1, Ordering::SeqCst) >= requests {
                        for s in open.lock().unwrap().iter() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                        let _ = server.shutdown(Shutdown::Both);
                        break;
                    }
                    if server.write_all(chunk).is_err() {
                        break;
                    }
                }
            });
        }
    });
    uri
}

/// The server dies in the middle of a push: each run's line says what happened to it (created
/// only for the runs the server acknowledged, which are in the ledger; `failed: REASON` for the
/// others), the summary counts are those of the lines, the error names every run not pushed, and
/// it does not say "nothing was changed locally" when ledger rows were written. The next push
/// sends the rest, each run once.
#[test]
fn per_run_lines_and_the_summary_tell_the_truth_when_the_server_dies_mid_push() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("dies");
    let ids = many_runs(&env, 12);
    // Enough requests for a few runs (about nine each), then the server is gone.
    let proxy = dying_proxy(&srv.uri, 40);
    let (code, out, err) = push(&env, &proxy, &[], &["--experiment", &exp, "--jobs", "1"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let ledger: std::collections::BTreeMap<String, String> = conn
        .prepare("SELECT run_id, mlflow_run_id FROM mlflow_pushes")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !ledger.is_empty() && ledger.len() < ids.len(),
        "{ledger:?}\n{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), ids.len(), "{out}");
    let mut created = 0;
    let mut failed = Vec::new();
    for line in &lines {
        let f: Vec<&str> = line.splitn(3, '\t').collect();
        let (id, mlflow, what) = (f[0], f[1], f[2]);
        match ledger.get(id) {
            Some(m) => {
                assert_eq!(what, "created", "{line}");
                assert_eq!(mlflow, m, "{line}");
                created += 1;
            }
            None => {
                assert!(what.starts_with("failed"), "{line}");
                assert!(
                    what.contains("cannot reach the MLflow tracking server"),
                    "{line}"
                );
                failed.push(id);
            }
        }
    }
    assert!(
        err.contains(&format!(
            "{created} created, 0 re-linked, 0 updated, 0 unchanged, {} failed",
            failed.len()
        )),
        "{err}"
    );
    assert!(!err.contains("(0 requests)"), "{err}");
    assert!(
        err.contains(&format!(
            "{} of {} runs not pushed",
            failed.len(),
            ids.len()
        )),
        "{err}"
    );
    for id in &failed {
        assert!(err.contains(id), "{id} not named: {err}");
    }
    assert!(!err.contains("nothing was changed locally"), "{err}");
    assert!(
        err.contains(&format!("{created} runs were pushed and recorded")),
        "{err}"
    );

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{out}\n{err}");
    let counts = mlflow_client_counts(srv, &exp);
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{counts:?}");
    }
}

/// Param names and metric keys MLflow refuses (`../etc`, `/abs`, `a//b`, `q"uote`, `trail/`;
/// `""`, ESC, newline, `../up`) are pushed under safe names, the same on every push; the run
/// is FINISHED with all its params, the originals are in `repro/params.json` and
/// `repro/metric_keys.json`, and tags list the renames. A second push sends nothing.
#[test]
fn names_mlflow_refuses_are_pushed_under_safe_names_and_the_originals_kept() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("names");
    let repo = env.git_repo("app");
    let bad = ["../etc", "/abs", "a//b", "q\"uote", "trail/"];
    let mut args: Vec<String> = vec!["run".into(), "--host".into()];
    for (i, k) in bad.iter().enumerate() {
        args.push("--param".into());
        args.push(format!("{k}={i}"));
    }
    args.extend(
        [
            "--param",
            "lr=0.1",
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" >> \"$REPRO_METRICS\"",
            "sh",
            r#"{"": 1, "\u001b[2J": 2, "a\nb": 3, "../up": 4, "loss": 5}"#,
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&env, &repo, &args);
    let id = env.last_id();
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created"), "{out}");
    let run = srv.run_by_repro_id(&exp, &id).expect("pushed");
    assert_eq!(run["info"]["status"], "FINISHED");
    let params = kv(&run["data"]["params"]);
    assert_eq!(params.len(), 6, "{params:?}");
    assert_eq!(params["lr"], "0.1");
    assert!(params.keys().any(|k| k.starts_with("etc-")), "{params:?}");
    let metrics: Vec<String> = run["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(metrics.len(), 5, "{metrics:?}");
    assert!(metrics.contains(&"loss".to_string()));
    let tags = kv(&run["data"]["tags"]);
    assert!(
        tags["repro.params.renamed"].contains("'../etc' as 'etc-"),
        "{tags:?}"
    );
    assert!(
        tags["repro.metrics.renamed"].contains("'\\x1b[2J' as '__2J-"),
        "{tags:?}"
    );
    let mlflow_id = run["info"]["run_id"].as_str().unwrap();
    let exp_id = run["info"]["experiment_id"].as_str().unwrap();
    let all: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&srv.download(exp_id, mlflow_id, "repro/params.json")).unwrap();
    assert_eq!(all["../etc"], "0");
    assert_eq!(all["q\"uote"], "3");
    let keys: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&srv.download(exp_id, mlflow_id, "repro/metric_keys.json")).unwrap();
    let originals: std::collections::BTreeSet<&str> = keys.values().map(String::as_str).collect();
    assert_eq!(
        originals,
        ["", "\u{1b}[2J", "a\nb", "../up"].into_iter().collect()
    );
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// A run deleted in MLflow (its trash) is never "unchanged" and never sent to: the push says it
/// was deleted and how to go on; `--recreate-deleted` pushes it again as a new run,
/// `--forget-deleted` leaves it out from then on (exit 0).
#[test]
fn a_run_deleted_in_mlflow_is_reported_and_can_be_recreated_or_left_out() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("deleted");
    let (repo, id) = recorded_run(&env, false);
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    let first = srv.run_by_repro_id(&exp, &id).unwrap()["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    srv.post("runs/delete", serde_json::json!({ "run_id": first }));

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{id}\t{first}\tfailed: the MLflow run {first} was deleted"
        )),
        "{out}"
    );
    assert!(
        err.contains("--recreate-deleted") && err.contains("--forget-deleted"),
        "{err}"
    );
    // A local change does not end in "must be in the 'active' state".
    ok(&env, &repo, &["tag", &id, "+later"]);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("was deleted"), "{out}");
    assert!(!err.contains("active"), "{err}");

    let (code, out, err) = push(
        &env,
        &srv.uri,
        &[],
        &["--experiment", &exp, "--recreate-deleted"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("re-created (the MLflow run {first} was deleted)")),
        "{out}"
    );
    let second = srv.run_by_repro_id(&exp, &id).unwrap();
    assert_ne!(second["info"]["run_id"].as_str().unwrap(), first);
    assert_eq!(
        kv(&second["data"]["tags"]).get("later").map(String::as_str),
        Some("true")
    );
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    srv.post(
        "runs/delete",
        serde_json::json!({ "run_id": second["info"]["run_id"] }),
    );
    let (code, out, err) = push(
        &env,
        &srv.uri,
        &[],
        &["--experiment", &exp, "--forget-deleted"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("left out"), "{out}");
    ok(&env, &repo, &["tag", &id, "+even-later"]);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("1 left out (deleted in MLflow)"), "{err}");
    assert!(
        srv.run_by_repro_id(&exp, &id).is_none(),
        "left out, not pushed"
    );
}

/// `http://user:secret@host` sends the credentials as basic auth but never prints or stores
/// them (status line, per-run errors, `run --mlflow` warnings, the push ledger); credentials
/// over plain HTTP to a host that is not loopback are refused before any connection unless
/// `MLFLOW_TRACKING_INSECURE_HTTP=true`.
#[test]
fn credentials_in_the_tracking_uri_are_never_shown_or_stored_nor_sent_in_clear() {
    let srv = auth_server();
    let env = TestEnv::new();
    let exp = experiment("userinfo");
    let (repo, id) = recorded_run(&env, false);
    let with_creds = srv.uri.replacen(
        "http://",
        &format!("http://{ADMIN_USER}:{ADMIN_PASSWORD}@"),
        1,
    );
    let (code, out, err) = push(&env, &with_creds, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(
        srv.run_by_repro_id(&exp, &id).is_some(),
        "sent as basic auth"
    );
    assert!(
        !out.contains(ADMIN_PASSWORD) && !err.contains(ADMIN_PASSWORD),
        "{err}"
    );
    assert!(err.contains(&srv.uri), "{err}");
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let stored: Vec<String> = conn
        .prepare("SELECT tracking_uri FROM mlflow_pushes")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, std::slice::from_ref(&srv.uri));
    let db = std::fs::read(env.db()).unwrap();
    assert!(
        !db.windows(ADMIN_PASSWORD.len())
            .any(|w| w == ADMIN_PASSWORD.as_bytes()),
        "the password is in the database file"
    );
    // The server down: the error names the server without the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://u:{ADMIN_PASSWORD}@127.0.0.1:{port}");
    ok(&env, &repo, &["tag", &id, "+again"]);
    let (code, out, err) = push(&env, &dead, &[], &["--experiment", &exp]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach the MLflow tracking server at http://127.0.0.1:"),
        "{err}"
    );
    assert!(
        !out.contains(ADMIN_PASSWORD) && !err.contains(ADMIN_PASSWORD),
        "{out}\n{err}"
    );
    let (code, _, err) = repro_mlflow(
        &env,
        Some(&dead),
        &repo,
        &["run", "--host", "--mlflow", "--", "true"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not pushed to MLflow"), "{err}");
    assert!(!err.contains(ADMIN_PASSWORD), "{err}");

    // Plain HTTP to a name that is not loopback (and resolves nowhere): refused first.
    for (uri, extra) in [
        ("http://alice:pw@mlflow.invalid:5000", vec![]),
        (
            "http://mlflow.invalid:5000",
            vec![("MLFLOW_TRACKING_TOKEN", "tok")],
        ),
        (
            "http://mlflow.invalid:5000",
            vec![
                ("MLFLOW_TRACKING_USERNAME", "alice"),
                ("MLFLOW_TRACKING_PASSWORD", "pw"),
            ],
        ),
    ] {
        let (code, _, err) = push(&env, uri, &extra, &["--experiment", &exp]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("refusing to send MLflow credentials")
                && err.contains("over plain HTTP to http://mlflow.invalid:5000"),
            "{err}"
        );
        assert!(err.contains("MLFLOW_TRACKING_INSECURE_HTTP=true"), "{err}");
        assert!(!err.contains("cannot reach"), "{err}");
    }
    let (code, _, err) = push(
        &env,
        "http://mlflow.invalid:5000",
        &[
            ("MLFLOW_TRACKING_TOKEN", "tok"),
            ("MLFLOW_TRACKING_INSECURE_HTTP", "true"),
        ],
        &["--experiment", &exp],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach the MLflow tracking server"),
        "{err}"
    );
}

/// A loopback HTTP server that answers every request with HTTP `status` and `body`.
fn canned_server(status: &'static str, body: &'static str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut r = BufReader::new(conn);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = r.read_exact(&mut vec![0; len]);
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    uri
}

/// The server's error text reaches the terminal with its control characters shown, never
/// obeyed: no ESC byte on stderr, in `repro mlflow push` or in `run --mlflow`'s warning.
#[test]
fn server_error_text_with_escapes_is_escaped_on_the_terminal() {
    let env = TestEnv::new();
    let (repo, _) = recorded_run(&env, false);
    let evil = canned_server(
        "400 Bad Request",
        r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad \u001b[2J\u001b]0;pwned\u0007 name\nrepro: all runs pushed"}"#,
    );
    let (code, _, err) = push(&env, &evil, &[], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(r"bad \x1b[2J\x1b]0;pwned\x07 name\nrepro: all runs pushed"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    let (code, _, err) = repro_mlflow(
        &env,
        Some(&evil),
        &repo,
        &["run", "--host", "--mlflow", "--", "true"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(r"\x1b[2J"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// `run --mlflow` against a server that accepts connections and never answers: the run ends
/// after the job within the push's bound (10 s by default, `REPRO_MLFLOW_AFTER_RUN_TIMEOUT`), with
/// one warning, and stays queued for `repro mlflow push`.
#[test]
fn run_with_mlflow_against_a_hanging_server_gives_up_after_its_bound_and_stays_queued() {
    let env = TestEnv::new();
    let repo = env.git_repo("app");
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", hang.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for c in hang.incoming().flatten() {
                held.lock().unwrap().push(c);
            }
        });
    }
    let started = std::time::Instant::now();
    let (code, _, err) = repro_mlflow(
        &env,
        Some(&uri),
        &repo,
        &["run", "--host", "--mlflow", "--", "sh", "-c", "exit 4"],
    );
    let took = started.elapsed();
    assert_eq!(code, 4, "{err}");
    assert!(
        took < std::time::Duration::from_secs(60),
        "took {took:?}: {err}"
    );
    assert!(
        err.contains("not pushed to MLflow: gave up on the MLflow tracking server")
            && err.contains("after 10 s"),
        "{err}"
    );
    assert!(
        err.contains("it stays queued for `repro mlflow push`"),
        "{err}"
    );
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    let mut c = env.repro();
    c.env("MLFLOW_TRACKING_URI", &uri)
        .env("REPRO_MLFLOW_AFTER_RUN_TIMEOUT", "1");
    let out = c
        .current_dir(&repo)
        .args(["run", "--host", "--mlflow", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("after 1 s"), "{err}");
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM mlflow_pushes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "queued, not recorded as pushed");
}

/// Every file under `dir` with its bytes and modification time (ns), sorted by path.
fn files_with_mtimes(dir: &Path) -> Vec<(String, Vec<u8>, i128)> {
    use std::os::unix::fs::MetadataExt;
    crate::support::tree(dir)
        .into_iter()
        .map(|(rel, bytes)| {
            let m = std::fs::metadata(dir.join(&rel)).unwrap();
            let t = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            (rel, bytes, t)
        })
        .collect()
}

/// Sets every file under `dir` to an old modification time, so any rewrite shows.
fn age(dir: &Path) {
    for (rel, _) in crate::support::tree(dir) {
        let st = std::process::Command::new("touch")
            .args(["-h", "-d", "@1000000000"])
            .arg(dir.join(rel))
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// The push's (MLflow run id, experiment id) of a repro run.
fn mlflow_ids(srv: &crate::support::mlflow::MlflowServer, exp: &str, id: &str) -> (String, String) {
    let run = srv.run_by_repro_id(exp, id).expect("pushed run");
    (
        run["info"]["run_id"].as_str().unwrap().to_string(),
        run["info"]["experiment_id"].as_str().unwrap().to_string(),
    )
}

/// A run's file output and directory output (nested files, a name with a space and non-ASCII,
/// a symbolic link) reach MLflow under `outputs/` as the kept bytes — the working file was
/// overwritten after the run — and MLflow's own client downloads them byte for byte. A second
/// push sends no upload: the server's artifact files are not rewritten.
#[test]
fn kept_outputs_are_artifacts_the_mlflow_client_downloads_and_a_repush_uploads_nothing() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("outputs");
    let repo = env.git_repo("app");
    ok(
        &env,
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "model.json",
            "--output",
            "ckpt",
            "--",
            "sh",
            "-c",
            "printf '{\"w\": [1, 2]}' > model.json && mkdir -p ckpt/sub && seq 1 200000 > ckpt/w.bin \
             && printf 'x' > 'ckpt/sub/a b ü.txt' && : > ckpt/empty && ln -s w.bin ckpt/link",
        ],
    );
    let id = env.last_id();
    let kept_model = std::fs::read(repo.join("model.json")).unwrap();
    let weights = std::fs::read(repo.join("ckpt/w.bin")).unwrap();
    // Later work overwrites the file: the push sends what the run produced.
    std::fs::write(repo.join("model.json"), "overwritten").unwrap();

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created (outputs: 4 files, "), "{out}");
    assert!(
        err.contains(&format!(
            "run {id}: output not uploaded to MLflow: ckpt: link is a symbolic link"
        )),
        "{err}"
    );
    let (mlflow_id, exp_id) = mlflow_ids(srv, &exp, &id);
    let run = srv.run_by_repro_id(&exp, &id).unwrap();
    assert!(kv(&run["data"]["tags"])["repro.outputs.skipped"].contains("ckpt: link"));

    let dst = env.root().join("downloaded");
    let got = srv.client_download(&mlflow_id, "outputs", &dst);
    let expected: Vec<(String, Vec<u8>)> = vec![
        ("ckpt/empty".into(), vec![]),
        ("ckpt/sub/a b ü.txt".into(), b"x".to_vec()),
        ("ckpt/w.bin".into(), weights),
        ("model.json".into(), kept_model),
    ];
    assert_eq!(crate::support::tree(&got), expected);

    // The server's copies, aged: a second push must leave them alone.
    let stored = srv.artifact_dir(&exp_id, &mlflow_id).join("outputs");
    age(&stored);
    let before = files_with_mtimes(&stored);
    assert_eq!(before.len(), 4);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(
        err.contains("1 unchanged") && err.contains("(1 request)"),
        "{err}"
    );
    assert_eq!(files_with_mtimes(&stored), before);
    // Even compared in full (the ledger row's fingerprint gone), the artifact ledger says the
    // files are there: no upload.
    rusqlite::Connection::open(env.db())
        .unwrap()
        .execute(
            "UPDATE mlflow_pushes SET fingerprint = NULL, pushed_hash = 'x'",
            [],
        )
        .unwrap();
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(1 request)"), "{err}");
    assert_eq!(files_with_mtimes(&stored), before);
}

/// A run pushed without its outputs (`--no-outputs`, as every push before outputs were
/// uploaded) gets them on a later push; an output over `--outputs-max` is listed as skipped,
/// never fails the push, and goes up once the cap allows it.
#[test]
fn outputs_pushed_later_within_the_cap_and_the_rest_listed_not_failed() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("outputs-later");
    let repo = env.git_repo("app");
    ok(
        &env,
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "model.bin",
            "--output",
            "big.bin",
            "--",
            "sh",
            "-c",
            "echo w > model.bin && seq 1 400000 > big.bin",
        ],
    );
    let id = env.last_id();
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp, "--no-outputs"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created") && !out.contains("outputs"), "{out}");
    let (mlflow_id, exp_id) = mlflow_ids(srv, &exp, &id);
    assert!(srv.artifacts(&mlflow_id, "outputs").is_empty());
    assert!(!srv.artifacts(&mlflow_id, "repro").is_empty());
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp, "--no-outputs"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    let (code, out, err) = push(
        &env,
        &srv.uri,
        &[],
        &["--experiment", &exp, "--outputs-max", "1MiB"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("updated tags, outputs (outputs: 1 file, 2 B)"),
        "{out}"
    );
    assert!(
        err.contains("big.bin: its 2.6 MiB would take the run past mlflow_outputs_max (1.0 MiB)"),
        "{err}"
    );
    assert_eq!(srv.artifacts(&mlflow_id, "outputs"), ["outputs/model.bin"]);
    let tags = kv(&srv.run_by_repro_id(&exp, &id).unwrap()["data"]["tags"]);
    assert!(tags["repro.outputs.skipped"].starts_with("big.bin: its 2.6 MiB"));

    // The default cap (1 GiB): only the file not yet there is sent, and the tag goes.
    let stored = srv.artifact_dir(&exp_id, &mlflow_id).join("outputs");
    age(&stored);
    let model = files_with_mtimes(&stored);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(outputs: 1 file, 2.6 MiB)"), "{out}");
    assert!(!err.contains("warning"), "{err}");
    let now = files_with_mtimes(&stored);
    assert_eq!(now.len(), 2);
    assert_eq!(now.iter().find(|f| f.0 == "model.bin"), model.first());
    assert_eq!(
        now.iter().find(|f| f.0 == "big.bin").unwrap().1,
        std::fs::read(repo.join("big.bin")).unwrap()
    );
    let tags = kv(&srv.run_by_repro_id(&exp, &id).unwrap()["data"]["tags"]);
    assert!(!tags.contains_key("repro.outputs.skipped"), "{tags:?}");
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// The object path of a kept file (64 hex) in the store beside the test database.
fn object_path(env: &TestEnv, sha256: &str) -> std::path::PathBuf {
    env.db()
        .parent()
        .unwrap()
        .join("objects/sha256")
        .join(&sha256[..2])
        .join(&sha256[2..])
}

/// A kept copy damaged in the object store is never uploaded — not even in part: the server
/// holds no file at its path — the push says so without failing, and tries again next time;
/// once the copy is whole again it goes up.
#[test]
fn a_damaged_kept_copy_is_not_uploaded_and_is_retried_once_repaired() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("outputs-damaged");
    let repo = env.git_repo("app");
    ok(
        &env,
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "w.bin",
            "--",
            "sh",
            "-c",
            "seq 1 500000 > w.bin",
        ],
    );
    let id = env.last_id();
    let sha = env.show_json(&id)["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let object = object_path(&env, &sha);
    let good = std::fs::read(&object).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&object, &bad).unwrap();

    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created") && !out.contains("outputs:"),
        "{out}"
    );
    assert!(
        err.contains("output not uploaded to MLflow: outputs/w.bin: its kept copy")
            && err.contains("does not hold the recorded bytes"),
        "{err}"
    );
    let (mlflow_id, exp_id) = mlflow_ids(srv, &exp, &id);
    assert!(srv.artifacts(&mlflow_id, "outputs").is_empty());
    let stored = srv.artifact_dir(&exp_id, &mlflow_id).join("outputs");
    assert!(!stored.join("w.bin").exists(), "a partial upload was kept");
    // Not recorded as pushed in full: the next push tries again (and says so again).
    let (code, _, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("does not hold the recorded bytes"), "{err}");

    std::fs::write(&object, &good).unwrap();
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("updated outputs (outputs: 1 file"), "{out}");
    assert_eq!(std::fs::read(stored.join("w.bin")).unwrap(), good);
    let (code, out, err) = push(&env, &srv.uri, &[], &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// A run in `repo` whose one output is `bytes` random bytes (`big.bin`); returns its id.
fn run_with_big_output(env: &TestEnv, repo: &Path, bytes: u64) -> String {
    let script = format!("head -c {bytes} /dev/urandom > big.bin");
    ok(
        env,
        repo,
        &[
            "run", "--host", "--output", "big.bin", "--", "sh", "-c", &script,
        ],
    );
    env.last_id()
}

/// Multipart thresholds small enough for test files (5 MiB: S3's smallest part).
const SMALL_PARTS: [(&str, &str); 2] = [
    ("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "5242880"),
    ("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", "5242880"),
];

/// A server whose artifacts are a local directory offers no multipart upload: a file over the
/// multipart threshold goes up in one PUT after the server says so, whole.
#[test]
fn a_server_without_multipart_gets_large_outputs_in_one_request() {
    let srv = server();
    let env = TestEnv::new();
    let exp = experiment("no-multipart");
    let repo = env.git_repo("app");
    let id = run_with_big_output(&env, &repo, 6 << 20);
    let (code, out, err) = push(&env, &srv.uri, &SMALL_PARTS, &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(outputs: 1 file, 6.0 MiB)"), "{out}");
    let (mlflow_id, exp_id) = mlflow_ids(srv, &exp, &id);
    let log = std::fs::read_to_string(srv.dir.join("server.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("mpu/create") && l.contains(&mlflow_id) && l.contains(" 501")),
        "the server was not asked for a multipart upload"
    );
    assert_eq!(
        std::fs::read(
            srv.artifact_dir(&exp_id, &mlflow_id)
                .join("outputs/big.bin")
        )
        .unwrap(),
        std::fs::read(repo.join("big.bin")).unwrap()
    );
}

/// Over S3 (MLflow's S3 artifact store on moto's S3 server) the server offers multipart
/// uploads: a large kept output goes up in parts to the URLs it hands out, MLflow's client
/// downloads it byte for byte, and a re-push sends nothing. A damaged copy is refused before
/// its last part and the upload aborted: nothing appears on the server.
#[test]
fn large_outputs_go_up_in_parts_when_the_server_offers_multipart() {
    let Some(srv) = crate::support::mlflow::s3_server() else {
        return;
    };
    let env = TestEnv::new();
    let exp = experiment("multipart");
    let repo = env.git_repo("app");
    let id = run_with_big_output(&env, &repo, (12 << 20) + 1);
    let (code, out, err) = push(&env, &srv.uri, &SMALL_PARTS, &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created (outputs: 1 file, 12.0 MiB, 1 in parts)"),
        "{out}"
    );
    let (mlflow_id, _) = mlflow_ids(srv, &exp, &id);
    let got = srv.client_download(&mlflow_id, "outputs", &env.root().join("dl"));
    assert_eq!(
        std::fs::read(got.join("big.bin")).unwrap(),
        std::fs::read(repo.join("big.bin")).unwrap()
    );
    let (code, out, err) = push(&env, &srv.uri, &SMALL_PARTS, &["--experiment", &exp]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("(1 request)"), "{err}");

    // A damaged copy: the parts before the last may go, the upload is never completed.
    let bad_id = run_with_big_output(&env, &repo, (11 << 20) + 7);
    let sha = env.show_json(&bad_id)["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let object = object_path(&env, &sha);
    let mut bytes = std::fs::read(&object).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let (code, out, err) = push(&env, &srv.uri, &SMALL_PARTS, &["--experiment", &exp]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created") && !out.contains("outputs:"),
        "{out}"
    );
    assert!(err.contains("does not hold the recorded bytes"), "{err}");
    let (bad_mlflow, _) = mlflow_ids(srv, &exp, &bad_id);
    assert!(srv.artifacts(&bad_mlflow, "outputs").is_empty());
}
