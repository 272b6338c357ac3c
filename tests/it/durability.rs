//! Never lose a run's outcome: runs in another pid namespace are not `lost` and survive `gc`;
//! a long import does not lock `repro run` out.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use crate::support::{tool_available, TestEnv};

fn repro_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("repro")
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `repro` as a plain process (spawned in the background), with the test's HOME and database.
fn spawn_repro(env: &TestEnv) -> StdCommand {
    let mut c = StdCommand::new(repro_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("REPRO_") || k.starts_with("XDG_") {
            c.env_remove(&k);
        }
    }
    c.current_dir(env.root())
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .stdin(Stdio::null());
    c
}

/// Whether this machine lets us make a pid namespace (root, or unprivileged user namespaces).
fn can_unshare_pid() -> bool {
    tool_available("unshare")
        && StdCommand::new("unshare")
            .args(["-pf", "--mount-proc", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[test]
fn a_run_in_another_pid_namespace_is_running_not_lost_and_its_outcome_survives_gc() {
    if !can_unshare_pid() {
        crate::support::skip_or_fail(
            "cannot create a pid namespace here (unshare -pf --mount-proc)",
        );
        return;
    }
    let env = TestEnv::new();
    let ready = env.root().join("ready");
    let go = env.root().join("go");
    let wrapper = StdCommand::new("unshare")
        .args(["-pf", "--mount-proc"])
        .arg(repro_bin())
        .current_dir(env.root())
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .args(["run", "--host", "--", "sh", "-c"])
        .arg(format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.05; done; exit 3",
            ready.display(),
            go.display()
        ))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the child", 60, || ready.exists());
    let id = env.last_id();
    // Seen from here, its pid is someone else's (or nobody's): undecidable, never lost.
    assert_eq!(env.show_json(&id)["status"], "running");
    let (code, out, err) = env.run_in(env.root(), &["ls", "--columns", "id,status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("running? (in another pid namespace)"), "{out}");
    let (code, out, _) = env.run_in(env.root(), &["ls", "--status", "lost", "--json"]);
    assert_eq!(code, 0);
    assert!(!out.contains(&id), "{out}");
    let (code, _, err) = env.run_in(env.root(), &["gc", "--status", "lost,running", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("kept 1 run(s) that may still be running"),
        "{err}"
    );
    assert_eq!(env.show_json(&id)["status"], "running");
    // Deleted on purpose while it runs: the wrapper puts the record back with its outcome.
    let (code, _, err) = env.run_in(
        env.root(),
        &["gc", "--status", "running", "--include-running", "--yes"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("deleted 1 run(s)"), "{err}");
    std::fs::write(&go, "").unwrap();
    let out = wrapper.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("had been deleted while it ran"), "{err}");
    let back = env.show_json(&id);
    assert_eq!(back["status"], "failed");
    assert_eq!(back["exit_code"], 3);
    assert_eq!(back["command"][0], "sh");
}

/// `N` exported runs as JSON lines, with valid, distinct, time-ordered ids.
fn export_lines(n: usize) -> Vec<u8> {
    let template = serde_json::json!({
        "schema_version": 1,
        "id": "",
        "name": "imported",
        "status": "succeeded",
        "exit_code": 0,
        "signal": null,
        "started_at": "2026-01-02T03:04:05.000Z",
        "ended_at": "2026-01-02T03:04:06.000Z",
        "duration_ms": 1000,
        "command": ["python", "train.py", "--lr", "0.1"],
        "cwd": "experiments",
        "exec": {"mode": "host", "engine": null, "workdir": null, "engine_args": [], "gpus": null},
        "image": null,
        "code": null,
        "datasets": [{"name": "imagenet", "kind": "label", "uri": null, "version": "v3",
                      "digest": null, "files": null, "bytes": null}],
        "outputs": [],
        "params": {"lr": "0.1"},
        "tags": ["bulk"],
        "notes": [],
        "env": {},
        "host": "elsewhere",
        "user": "u",
        "platform": "linux/amd64",
        "pid": null,
        "boot_id": null,
        "rerun_of": null
    });
    let mut out = Vec::with_capacity(n * 800);
    let base = 1_767_000_000_000u64;
    for i in 0..n {
        let mut v = template.clone();
        let id = ulid::Ulid::from_parts(base + i as u64, i as u128 + 1)
            .to_string()
            .to_lowercase();
        v["id"] = id.into();
        serde_json::to_writer(&mut out, &v).unwrap();
        out.push(b'\n');
    }
    out
}

#[test]
fn runs_started_during_a_300k_run_import_all_run_and_are_recorded() {
    let env = TestEnv::new();
    let file = env.root().join("bulk.jsonl");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(&export_lines(300_000))
        .unwrap();
    // Make the database first so the import does not hold it for the migration.
    let (code, _, err) = env.run_in(env.root(), &["ls"]);
    assert_eq!(code, 0, "{err}");
    let import = spawn_repro(&env)
        .args(["import", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it writes (its first pass only reads).
    wait_until("the import to start writing", 300, || {
        let c = rusqlite::Connection::open(env.db()).unwrap();
        c.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n > 0)
    });
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let marker = env.root().join(format!("ran-{i}"));
            spawn_repro(&env)
                .args([
                    "run",
                    "--host",
                    "--name",
                    &format!("during-{i}"),
                    "--",
                    "sh",
                    "-c",
                ])
                .arg(format!("touch {}; exit {i}", marker.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, r) in runs.into_iter().enumerate() {
        let out = r.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i as i32), "run {i}: {err}");
        assert!(
            env.root().join(format!("ran-{i}")).exists(),
            "run {i} never ran: {err}"
        );
    }
    let still_importing = {
        let c = rusqlite::Connection::open(env.db()).unwrap();
        c.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .unwrap()
            < 300_008
    };
    let out = import.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("imported 300000"), "{err}");
    for i in 0..8 {
        let (code, out, err) = env.run_in(
            env.root(),
            &["ls", "--name", &format!("during-{i}"), "--json"],
        );
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let run = &v["runs"][0];
        assert_eq!(run["exit_code"], i, "{run}");
        let want = if i == 0 { "succeeded" } else { "failed" };
        assert_eq!(run["status"], want);
    }
    // The runs overlapped the import (else this test proves nothing about the lock).
    assert!(still_importing, "the import ended before the runs did");
}
