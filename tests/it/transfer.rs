//! `repro export` / `repro import` round trips and conflicts; `repro gc` safety.

use serde_json::Value;

use crate::query::{at_now, seeded, NOW};
use crate::support::TestEnv;

fn ids_of(env: &TestEnv) -> Vec<String> {
    let (code, out, err) = at_now(env, &["ls", "--all", "--format", "csv", "--columns", "id"]);
    assert_eq!(code, 0, "{err}");
    out.lines().skip(1).map(String::from).collect()
}

fn import(env: &TestEnv, file: &std::path::Path) -> (i32, String, String) {
    at_now(env, &["import", file.to_str().unwrap()])
}

#[test]
fn export_then_import_elsewhere_gives_identical_show_json() {
    let (src, runs) = seeded();
    at_now(&src, &["tag", &runs[2].1.id, "+shared"]);
    at_now(&src, &["note", &runs[2].1.id, "exported note"]);
    let (code, out, err) = at_now(&src, &["export"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exported 6 run(s)"), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    // oldest first, the DESIGN.md shape, the patch included, lost runs exported as lost
    assert_eq!(lines[0]["id"], runs[0].1.id.as_str());
    assert_eq!(lines[0]["status"], "lost");
    assert_eq!(lines[2]["code"]["patch"], "diff --git a/x b/x\n+dirty\n");
    assert_eq!(lines[2]["schema_version"], 1);

    let file = src.root().join("runs.jsonl");
    std::fs::write(&file, &out).unwrap();
    let dst = TestEnv::new();
    let (code, _, err) = import(&dst, &file);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("imported 6, unchanged 0, updated 0, conflicts 0"),
        "{err}"
    );
    assert_eq!(ids_of(&src), ids_of(&dst));
    for id in ids_of(&src) {
        assert_eq!(
            at_now(&src, &["show", &id, "--json"]).1,
            at_now(&dst, &["show", &id, "--json"]).1,
            "run {id}"
        );
    }
    // the patch survived byte for byte
    let patch = |env: &TestEnv| -> Vec<u8> {
        rusqlite::Connection::open(env.db())
            .unwrap()
            .query_row(
                "SELECT code_patch FROM runs WHERE id = ?1",
                [&runs[2].1.id],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(patch(&src), patch(&dst));

    // idempotent
    let (code, _, err) = import(&dst, &file);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("imported 0, unchanged 6, updated 0, conflicts 0"),
        "{err}"
    );
    // filters apply to export
    let (_, some, _) = at_now(&src, &["export", "--tag", "nightly"]);
    assert_eq!(some.lines().count(), 2);
}

#[test]
fn conflicting_provenance_is_reported_never_overwritten_and_the_rest_imported() {
    let (src, runs) = seeded();
    let (_, out, _) = at_now(&src, &["export"]);
    let mut lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dst = TestEnv::new();
    let first = dst.root().join("first.jsonl");
    std::fs::write(
        &first,
        lines[..3]
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    assert_eq!(import(&dst, &first).0, 0);
    let before = at_now(&dst, &["show", &runs[2].1.id, "--json"]).1;

    // line 3: same id, another digest; and new annotations on line 2
    lines[2]["image"]["digest"] = Value::String(format!("sha256:{}", "9".repeat(64)));
    lines[2]["tags"] = serde_json::json!(["evil"]);
    lines[1]["tags"] = serde_json::json!(["merged"]);
    lines[1]["params"] = serde_json::json!({"seed": "3"});
    let second = dst.root().join("second.jsonl");
    std::fs::write(
        &second,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (code, _, err) = import(&dst, &second);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "conflict: run {} (line 3) differs from the stored run in image",
            runs[2].1.id
        )),
        "{err}"
    );
    assert!(
        err.contains("imported 3, unchanged 2, updated 0, conflicts 1"),
        "{err}"
    );
    assert!(err.contains("1 run(s) conflict with stored runs"), "{err}");
    assert_eq!(
        before,
        at_now(&dst, &["show", &runs[2].1.id, "--json"]).1,
        "stored run kept"
    );
    assert_eq!(ids_of(&dst).len(), 6);
    let merged: Value =
        serde_json::from_str(&at_now(&dst, &["show", &runs[1].1.id, "--json"]).1).unwrap();
    assert_eq!(merged["tags"], serde_json::json!(["merged"]));
    assert_eq!(merged["params"], serde_json::json!({"seed": "3"}));
}

#[test]
fn invalid_input_names_the_line_and_imports_nothing() {
    let (src, _) = seeded();
    let (_, out, _) = at_now(&src, &["export"]);
    let mut lines: Vec<String> = out.lines().map(String::from).collect();
    let dst = TestEnv::new();
    for (bad, needle) in [
        (
            lines[3].replace("\"schema_version\":1", "\"schema_version\":7"),
            "line 4: schema_version 7 is not supported",
        ),
        (
            lines[3].replace("01jdt0000000000000000000a2", "not-a-ulid"),
            "line 4: id 'not-a-ulid' is not a run id",
        ),
        (
            lines[3].replace(&"b".repeat(64), "bbbb"),
            "line 4: image.digest 'sha256:bbbb' is not a digest",
        ),
        ("{\"id\": 1}".to_string(), "line 4: "),
    ] {
        let saved = std::mem::replace(&mut lines[3], bad);
        let file = dst.root().join("bad.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let (code, _, err) = import(&dst, &file);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(needle), "want {needle}: {err}");
        assert!(err.contains("nothing was imported"), "{err}");
        lines[3] = saved;
        assert!(ids_of(&dst).is_empty());
    }
    let (code, _, err) = at_now(&dst, &["import", "/nonexistent/runs.jsonl"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot open /nonexistent/runs.jsonl"), "{err}");
}

#[test]
fn import_reads_stdin() {
    let (src, _) = seeded();
    let (_, out, _) = at_now(&src, &["export", "--status", "failed"]);
    let dst = TestEnv::new();
    let res = dst
        .repro()
        .env("REPRO_NOW", NOW)
        .args(["import", "-"])
        .write_stdin(out)
        .output()
        .unwrap();
    assert!(res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("imported 1,"));
    assert_eq!(ids_of(&dst).len(), 1);
}

#[test]
fn gc_needs_a_filter_and_confirmation_and_deletes_only_matches() {
    let (env, runs) = seeded();
    let all = ids_of(&env);
    let (code, _, err) = at_now(&env, &["gc", "--yes"]);
    assert_eq!(code, 2);
    assert!(err.contains("gc needs at least one filter"), "{err}");
    // not a terminal and no --yes: refuse
    let (code, _, err) = at_now(&env, &["gc", "--status", "lost", "--until", "30d"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("refusing to delete 1 run(s) without confirmation"),
        "{err}"
    );
    assert_eq!(ids_of(&env), all);
    // dry run lists and keeps
    let (code, out, err) = at_now(
        &env,
        &["gc", "--status", "lost", "--until", "30d", "--dry-run"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&runs[0].1.id[..12]), "{out}");
    assert!(err.contains("would delete 1 run(s)"), "{err}");
    assert_eq!(ids_of(&env), all);
    // nothing matches: nothing deleted, success
    let (code, _, err) = at_now(&env, &["gc", "--status", "lost", "--since", "1d", "--yes"]);
    assert_eq!(code, 0);
    assert!(err.contains("nothing deleted"), "{err}");
    // --yes deletes exactly the matches
    let (code, _, err) = at_now(&env, &["gc", "--status", "lost", "--until", "30d", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("deleted 1 run(s)"), "{err}");
    let left = ids_of(&env);
    assert_eq!(left.len(), 5);
    assert!(!left.contains(&runs[0].1.id));
    let (code, _, _) = at_now(&env, &["show", &runs[0].1.id]);
    assert_eq!(code, 1);
}

#[test]
fn gc_keeps_a_run_whose_wrapper_is_alive() {
    let (env, runs) = seeded();
    let mut live = runs[0].1.clone();
    live.id = "01jdz00000000000000000000c".into();
    live.boot_id = repro::capture::host::boot_id();
    live.pid = Some(std::process::id() as i64);
    live.pid_start = repro::capture::host::process_start(std::process::id());
    repro::store::Store::open(&env.db())
        .unwrap()
        .insert_run(&live)
        .unwrap();
    let (code, _, err) = at_now(&env, &["gc", "--status", "running", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("kept 1 run(s) that may still be running"),
        "{err}"
    );
    assert!(ids_of(&env).contains(&live.id));
}

#[test]
fn gc_on_a_terminal_asks_and_deletes_only_on_yes() {
    if !crate::support::tool_or_skip("script", "util-linux `script` gives the pseudo-terminal") {
        return;
    }
    let (env, runs) = seeded();
    let bin = assert_cmd::cargo::cargo_bin("repro");
    let gc = |answer: &str| -> String {
        let cmd = format!(
            "HOME='{}' REPRO_DB='{}' REPRO_NOW='{NOW}' '{}' gc --status lost",
            env.home().display(),
            env.db().display(),
            bin.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(answer.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = gc("n\n");
    assert!(
        said.contains("Delete 1 run(s)? This cannot be undone. [y/N]"),
        "{said}"
    );
    assert!(
        said.contains(&runs[0].1.id[..12]),
        "the prompt lists the run: {said}"
    );
    assert!(said.contains("nothing deleted"), "{said}");
    assert_eq!(ids_of(&env).len(), 6);
    let said = gc("y\n");
    assert!(said.contains("deleted 1 run(s)"), "{said}");
    assert_eq!(ids_of(&env).len(), 5);
}

#[test]
fn forged_import_lines_are_refused_with_their_line_and_nothing_written() {
    let good = serde_json::json!({
        "schema_version": 1, "id": "01jd3k0000000000000000000a", "name": null,
        "status": "succeeded", "exit_code": 0, "signal": null,
        "started_at": "2026-01-02T03:04:05.000Z", "ended_at": "2026-01-02T03:04:06.000Z",
        "duration_ms": 1000, "command": ["true"], "cwd": "/w",
        "exec": {"mode": "host", "engine": null, "workdir": null, "engine_args": [], "gpus": null},
        "image": null, "code": null, "datasets": [], "outputs": [], "params": {}, "tags": [],
        "notes": [], "env": {}, "host": "h", "user": "u", "platform": "linux/amd64",
        "pid": null, "boot_id": null, "rerun_of": null
    });
    let image = serde_json::json!({"reference": "127.0.0.1:5000/App:1", "digest": null,
        "index_digest": null, "platform": null, "resolved_by": "unpinned", "labels": {}});
    let code = |patch: Value, sha: Value| {
        serde_json::json!({"repo_root": "/r", "remote": null, "commit": null, "branch": null,
            "dirty": true, "untracked": [], "patch_sha256": sha, "patch": patch})
    };
    let out =
        |path: &str, sha: &str| serde_json::json!([{"path": path, "sha256": sha, "bytes": 1}]);
    let ds = |uri: &str| {
        serde_json::json!([{"name": "d", "kind": "path", "uri": uri, "version": null,
            "digest": null, "files": null, "bytes": null}])
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("image", image, "image.reference"),
        (
            "env",
            serde_json::json!({"BAD NAME": "x"}),
            "env: 'BAD NAME'",
        ),
        (
            "exec",
            serde_json::json!({"mode": "container", "engine": "podman",
                "workdir": "/workspace:U", "engine_args": [], "gpus": null}),
            "exec.workdir",
        ),
        ("status", "failed".into(), "cannot have exit_code 0"),
        ("duration_ms", (-5).into(), "negative"),
        (
            "started_at",
            "9999-01-01T00:00:00Z".into(),
            "not a plausible date",
        ),
        ("outputs", out("model.bin", "not-hex"), "is not a SHA-256"),
        ("outputs", out("/etc/passwd", &"a".repeat(64)), "relative"),
        ("outputs", out("../x", &"a".repeat(64)), "'..'"),
        ("datasets", ds("/etc"), "system directory"),
        ("datasets", ds("data/../../x"), "'..'"),
        (
            "code",
            code("diff --git a/x b/x\n".into(), Value::Null),
            "no code.patch_sha256",
        ),
        (
            "code",
            code("diff --git a/x b/x\n".into(), "0".repeat(64).into()),
            "does not match",
        ),
    ];
    for (field, value, want) in cases {
        let env = TestEnv::new();
        let mut bad = good.clone();
        bad["id"] = "01jd3k0000000000000000000b".into();
        bad[field] = value;
        let file = env.root().join("in.jsonl");
        std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
        let (code, _, err) = import(&env, &file);
        assert_eq!(code, 1, "{field}: {err}");
        assert!(err.contains("line 2: "), "{field}: {err}");
        assert!(err.contains(want), "{field}: want {want:?} in {err}");
        assert!(ids_of(&env).is_empty(), "{field}: nothing may be written");
    }
    // The same lines, fixed, import.
    let env = TestEnv::new();
    let file = env.root().join("in.jsonl");
    std::fs::write(&file, format!("{good}\n")).unwrap();
    let (code, _, err) = import(&env, &file);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids_of(&env), vec!["01jd3k0000000000000000000a".to_string()]);
}

/// Metric summaries and histories travel with export/import: every run's
/// `show --json --history` is identical after the round trip (NaN, ±inf, steps, missing steps
/// and times), and importing again changes nothing.
#[test]
fn export_import_carries_metric_history_and_summaries() {
    use repro::record::metrics::MetricPoint;
    let (src, runs) = crate::query::seeded_with_metrics();
    let eval = runs
        .iter()
        .find(|(l, _)| *l == "eval")
        .unwrap()
        .1
        .id
        .clone();
    {
        let mut store = repro::store::Store::open(&src.db()).unwrap();
        let pts: Vec<MetricPoint> = (0..50)
            .map(|i| MetricPoint {
                key: "train/loss".into(),
                step: (i % 7 != 3).then_some(i),
                value: if i == 5 {
                    f64::NEG_INFINITY
                } else {
                    1.0 / (i + 1) as f64
                },
                time: (i % 2 == 0).then_some(1_790_000_000.25 + i as f64),
            })
            .collect();
        store.insert_metrics(&eval, &pts).unwrap();
    }
    let (code, out, err) = at_now(&src, &["export"]);
    assert_eq!(code, 0, "{err}");
    let line: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["id"] == eval.as_str())
        .unwrap();
    assert_eq!(line["history"]["train/loss"].as_array().unwrap().len(), 50);
    assert_eq!(line["metrics"]["acc"]["last"], 0.95);
    let file = src.root().join("runs.jsonl");
    std::fs::write(&file, &out).unwrap();
    let dst = TestEnv::new();
    let (code, _, err) = import(&dst, &file);
    assert_eq!(code, 0, "{err}");
    for id in ids_of(&src) {
        let shown = |env: &TestEnv| at_now(env, &["show", &id, "--json", "--history"]).1;
        assert_eq!(shown(&src), shown(&dst), "run {id}");
    }
    let h: Value =
        serde_json::from_str(&at_now(&dst, &["show", &eval, "--json", "--history"]).1).unwrap();
    assert_eq!(
        h["history"]["train/loss"][3],
        serde_json::json!([null, 0.25, null])
    );
    assert_eq!(h["history"]["train/loss"][5][1], "-Infinity");
    // Sorting and filtering work on the imported summaries.
    let (_, top, _) = at_now(
        &dst,
        &[
            "ls",
            "--where",
            "metric:acc>=0.95",
            "--format",
            "csv",
            "--columns",
            "id",
        ],
    );
    assert_eq!(top.lines().nth(1), Some(eval.as_str()));
    // Importing again writes no point twice.
    let (code, _, err) = import(&dst, &file);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 0, unchanged 6"), "{err}");
    assert_eq!(
        at_now(&src, &["show", &eval, "--json", "--history"]).1,
        at_now(&dst, &["show", &eval, "--json", "--history"]).1
    );
    // Runs recorded without their metrics get them; a different stored history is a conflict.
    let bare = TestEnv::new();
    let stripped: String = out
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("metrics");
            o.remove("history");
            serde_json::to_string(&v).unwrap() + "\n"
        })
        .collect();
    let bare_file = bare.root().join("bare.jsonl");
    std::fs::write(&bare_file, stripped).unwrap();
    assert_eq!(import(&bare, &bare_file).0, 0);
    assert!(!at_now(&bare, &["show", &eval, "--json"])
        .1
        .contains("\"acc\""));
    let (code, _, err) = import(&bare, &file);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        at_now(&src, &["show", &eval, "--json", "--history"]).1,
        at_now(&bare, &["show", &eval, "--json", "--history"]).1
    );
    let changed = out.replace("\"acc\":[[1,0.95,null]]", "\"acc\":[[1,0.5,null]]");
    assert_ne!(changed, out);
    let changed = changed.replace(
        "\"acc\":{\"count\":1,\"last\":0.95,\"max\":0.95,\"min\":0.95,\"step\":1}",
        "\"acc\":{\"count\":1,\"last\":0.5,\"max\":0.5,\"min\":0.5,\"step\":1}",
    );
    std::fs::write(&file, changed).unwrap();
    let (code, _, err) = import(&dst, &file);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("conflict: run {eval}")), "{err}");
    assert!(err.contains("history"), "{err}");
}

/// A bad metric line is refused with its line number and nothing is written: no run, no point.
#[test]
fn bad_metric_lines_are_refused_and_nothing_written() {
    let (src, _) = crate::query::seeded_with_metrics();
    let (_, out, _) = at_now(&src, &["export"]);
    let lines: Vec<String> = out.lines().map(String::from).collect();
    // Oldest first: line 5 is sweep3 (acc .91, loss .6).
    assert!(lines[4].contains("\"acc\":[[1,0.91,null]]"), "{}", lines[4]);
    let dst = TestEnv::new();
    for (from, to, needle) in [
        (
            "[[1,0.91,null]]",
            "[[1,\"high\",null]]",
            "line 5: history.acc[0]: value is not a number",
        ),
        (
            "[[1,0.91,null]]",
            "[[1.5,0.91,null]]",
            "line 5: history.acc[0]: step is not an integer",
        ),
        (
            "[[1,0.91,null]]",
            "[[1,0.91]]",
            "line 5: history.acc[0]: not a [step, value, time] triple",
        ),
        (
            "[[1,0.91,null]]",
            "[[1,0.91,\"yesterday\"]]",
            "line 5: history.acc[0]: time 'yesterday' is not an RFC 3339 time",
        ),
        ("[[1,0.91,null]]", "[]", "line 5: history.acc has no points"),
        (
            "[[1,0.91,null]]",
            "[[1,0.92,null]]",
            "line 5: metrics does not match the summary of history",
        ),
        (
            "\"history\":{",
            "\"hist\":{",
            "line 5: metrics has no history",
        ),
    ] {
        let mut bad = lines.clone();
        bad[4] = bad[4].replacen(from, to, 1);
        assert_ne!(bad[4], lines[4], "{from}");
        let file = dst.root().join("bad.jsonl");
        std::fs::write(&file, bad.join("\n") + "\n").unwrap();
        let (code, _, err) = import(&dst, &file);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(needle), "want {needle}: {err}");
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(ids_of(&dst).is_empty());
        let points: i64 = rusqlite::Connection::open(dst.db())
            .unwrap()
            .query_row("SELECT count(*) FROM metric_points", [], |r| r.get(0))
            .unwrap();
        assert_eq!(points, 0);
    }
}

/// Issue 22 item 5: whatever `repro run` records, `repro import` takes back. A job reports an
/// empty key, keys with ESC and a newline, a `ts` of 1e30 (no RFC 3339 time) and a value of
/// 1e400 beside valid ones: the run keeps the valid values (the 1e30 point without a time), warns
/// about each problem, and `export | import` into a new database gives the same
/// `show --json --history`.
#[test]
fn whatever_run_records_export_then_import_takes_back() {
    let src = TestEnv::new();
    let reports = src.root().join("reports.jsonl");
    std::fs::write(
        &reports,
        concat!(
            "{\"step\": 1, \"\": 1, \"a\\u001b[2Jb\": 2, \"x\\ny\": 3, \"ok\": 4, \"ts\": 1e30}\n",
            "{\"step\": 2, \"big\": 1e400, \"ok\": 5, \"nested\": {\"huge\": -1e999, \"v\": 6}}\n",
            "{\"step\": 3, \"ok\": 7, \"ts\": \"yesterday\"}\n",
            "{\"step\": 4, \"ok\": 8, \"ts\": 1790000000.5}\n",
        ),
    )
    .unwrap();
    let job = format!("cat '{}' >> \"$REPRO_METRICS\"", reports.display());
    let (code, _, err) = src.run_in(src.root(), &["run", "--host", "--", "sh", "-c", &job]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 time(s) are not a time (1e30;"),
        "a bad ts is a bad time, not a non-numeric key: {err}"
    );
    assert!(!err.contains("non-numeric values of key: ts"), "{err}");
    assert!(
        err.contains("ignored values of keys: big, nested.huge beyond the range of a 64-bit float"),
        "{err}"
    );
    let id = src.last_id();
    let history = |env: &TestEnv| {
        let out = env
            .repro()
            .args(["show", &id, "--json", "--history"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let h: Value = serde_json::from_str(&history(&src)).unwrap();
    // A point without a valid ts carries the time repro first saw its line (issue 24), within
    // the run; a valid ts is kept as written.
    let run = src.show_json(&id);
    let (start, end) = (
        run["started_at"].as_str().unwrap().to_string(),
        run["ended_at"].as_str().unwrap().to_string(),
    );
    let points = |key: &str| -> Vec<(i64, f64)> {
        let list = h["history"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {h}"));
        list.iter()
            .map(|p| {
                let t = p[2]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key}: no time in {p}"));
                if t != "2026-09-21T14:13:20.500Z" {
                    assert!(
                        start.as_str() <= t && t <= end.as_str(),
                        "{key}: {t} outside the run ({start} .. {end})"
                    );
                }
                (p[0].as_i64().unwrap(), p[1].as_f64().unwrap())
            })
            .collect()
    };
    assert_eq!(
        points("ok"),
        [(1, 4.0), (2, 5.0), (3, 7.0), (4, 8.0)],
        "the line with 1e400 keeps its valid values; a bad ts keeps the point"
    );
    assert_eq!(h["history"]["ok"][3][2], "2026-09-21T14:13:20.500Z");
    assert_eq!(points("nested.v"), [(2, 6.0)]);
    assert_eq!(points(""), [(1, 1.0)]);
    assert_eq!(points("a\u{1b}[2Jb"), [(1, 2.0)]);
    assert!(h["history"].get("big").is_none());

    let out = src.repro().arg("export").output().unwrap();
    assert!(out.status.success());
    let file = src.root().join("all.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let dst = TestEnv::new();
    let out = dst
        .repro()
        .args(["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("imported 1,"), "{err}");
    assert_eq!(history(&src), history(&dst));
}

/// Issue 22 item 5, a database recorded before times were checked: a stored time of 1e27 s is
/// exported as no time, so the export still imports.
#[test]
fn a_stored_time_beyond_rfc_3339_exports_as_null_and_imports() {
    use repro::record::metrics::MetricPoint;
    let src = TestEnv::new();
    let (code, _, err) = src.run_in(src.root(), &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = src.last_id();
    let mut store = repro::store::Store::open(&src.db()).unwrap();
    let pts = [1e27, 1_790_000_000.0].map(|t| MetricPoint {
        key: "loss".into(),
        step: None,
        value: 0.5,
        time: Some(t),
    });
    store.insert_metrics(&id, &pts).unwrap();
    drop(store);
    let out = src.repro().arg("export").output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.contains("\"loss\":[[null,0.5,null],[null,0.5,\"2026-09-21T14:13:20.000Z\"]]"),
        "{line}"
    );
    let file = src.root().join("all.jsonl");
    std::fs::write(&file, &line).unwrap();
    let dst = TestEnv::new();
    let out = dst
        .repro()
        .args(["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 22 item 9: an imported run may not send a re-run outside the checkout: a `cwd` with
/// `..` or absolute (for a run with a repository) and an `exec.workdir` with `..` are refused at
/// import with the line and the field, nothing written.
#[test]
fn import_refuses_a_cwd_or_workdir_that_leaves_the_checkout() {
    let good = serde_json::json!({
        "schema_version": 1, "id": "01jd3k0000000000000000000a", "name": null,
        "status": "succeeded", "exit_code": 0, "signal": null,
        "started_at": "2026-01-02T03:04:05.000Z", "ended_at": "2026-01-02T03:04:06.000Z",
        "duration_ms": 1000, "command": ["true"], "cwd": "exp/a",
        "exec": {"mode": "host", "engine": null, "workdir": null, "engine_args": [], "gpus": null},
        "image": null,
        "code": {"repo_root": "/r", "remote": null, "commit": null, "branch": null,
            "dirty": false, "untracked": [], "patch_sha256": null, "patch": null},
        "datasets": [], "outputs": [], "params": {}, "tags": [],
        "notes": [], "env": {}, "host": "h", "user": "u", "platform": "linux/amd64",
        "pid": null, "boot_id": null, "rerun_of": null
    });
    let workdir = |w: &str| {
        serde_json::json!({"mode": "container", "engine": "podman", "workdir": w,
            "engine_args": [], "gpus": null})
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "cwd",
            "../../../../tmp/x".into(),
            "cwd: '../../../../tmp/x' has a '..' component",
        ),
        ("cwd", "exp/../../x".into(), "'..' component"),
        ("cwd", "/tmp/x".into(), "cwd: '/tmp/x' is absolute"),
        (
            "exec",
            workdir("/../../etc"),
            "exec.workdir: '/../../etc' has a '..' component",
        ),
        ("exec", workdir("/workspace/.."), "'..' component"),
    ];
    for (field, value, want) in cases {
        let env = TestEnv::new();
        let mut bad = good.clone();
        bad["id"] = "01jd3k0000000000000000000b".into();
        bad[field] = value;
        let file = env.root().join("in.jsonl");
        std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
        let (code, _, err) = import(&env, &file);
        assert_eq!(code, 1, "{field}: {err}");
        assert!(err.contains("line 2: "), "{field}: {err}");
        assert!(err.contains(want), "{field}: want {want:?} in {err}");
        assert!(ids_of(&env).is_empty(), "{field}: nothing may be written");
    }
    // Without a repository the recorded directory is absolute, as `repro run` writes it.
    let env = TestEnv::new();
    let mut no_repo = good.clone();
    no_repo["code"] = Value::Null;
    no_repo["cwd"] = "/home/me/exp".into();
    let file = env.root().join("in.jsonl");
    let mut second = no_repo.clone();
    second["id"] = "01jd3k0000000000000000000c".into();
    std::fs::write(&file, format!("{good}\n{second}\n")).unwrap();
    let (code, _, err) = import(&env, &file);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids_of(&env).len(), 2);
}
