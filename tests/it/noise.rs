//! Is it noise? `repro rerun ID --repeat N` (the spread of each metric and which outputs differ
//! between repeats, recorded as a group) and `repro diff A B` judging deltas against A's repeats.

use serde_json::{json, Value};

use crate::support::TestEnv;

/// A host job (no repository) in ROOT/job: its n-th execution reports `acc` = 0.9 + n/100 and
/// a fixed `loss`, and writes `log.txt` (line 2 is `run n`) and `model.bin` (random bytes) when
/// `noisy`; else the same values and files every time. Returns the original run's id.
fn job(env: &TestEnv, noisy: bool) -> String {
    let dir = env.root().join("job");
    std::fs::create_dir_all(&dir).unwrap();
    let script = if noisy {
        format!(
            r#"n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > '{c}'
printf '{{"acc": 0.9%s, "loss": 0.25}}\n' "$n" >> "$REPRO_METRICS"
printf 'header\nrun %s\n' "$n" > log.txt
head -c 64 /dev/urandom > model.bin"#,
            c = env.root().join("count").display()
        )
    } else {
        r#"printf '{"acc": 0.9, "loss": 0.25}\n' >> "$REPRO_METRICS"
printf 'header\nsame\n' > log.txt; printf 'weights' > model.bin"#
            .to_string()
    };
    let (code, _, err) = env.run_in(
        &dir,
        &[
            "run",
            "--host",
            "--output",
            "log.txt",
            "--output",
            "model.bin",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, 0, "{err}");
    env.last_id()
}

fn repeat_json(env: &TestEnv, id: &str) -> Value {
    let (code, out, err) = env.run_in(env.root(), &["rerun", id, "--repeat", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn repeats_of_a_nondeterministic_job_report_the_spread_and_the_differing_outputs() {
    let env = TestEnv::new();
    let id = job(&env, true);
    let doc = repeat_json(&env, &id);
    assert_eq!(doc["original"], id.as_str());
    assert_eq!(doc["interrupted"], false);
    let repeats = doc["repeats"].as_array().unwrap();
    assert_eq!(repeats.len(), 3);
    // Each repeat is a recorded re-run linked to the original.
    for r in repeats {
        let run = env.show_json(r["id"].as_str().unwrap());
        assert_eq!(run["rerun_of"], id.as_str(), "{run}");
    }
    assert_eq!(env.runs().len(), 4);
    let acc = &doc["metrics"][0];
    assert_eq!(acc["key"], "acc");
    assert_eq!(acc["original"], 0.91);
    assert_eq!(acc["values"], json!([0.92, 0.93, 0.94]));
    assert_eq!(
        (acc["min"].clone(), acc["max"].clone()),
        (json!(0.92), json!(0.94))
    );
    assert!(
        (acc["stddev"].as_f64().unwrap() - 0.01).abs() < 1e-9,
        "{acc}"
    );
    let loss = &doc["metrics"][1];
    assert_eq!(
        (loss["key"].clone(), loss["stddev"].clone()),
        (json!("loss"), json!(0.0))
    );

    let outputs = doc["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["path"], "log.txt");
    assert_eq!(outputs[0]["differ"], true);
    assert_eq!(outputs[0]["differs_at"], 2);
    assert_eq!(
        outputs[0]["first_difference"],
        r#"first difference at line 2: "run 2" vs "run 3""#
    );
    assert_eq!(outputs[1]["path"], "model.bin");
    assert_eq!(outputs[1]["differ"], true);
    let digests = outputs[1]["digests"].as_array().unwrap();
    assert!(
        digests[0] != digests[1] && digests[1] != digests[2],
        "{digests:?}"
    );

    // The text says the same.
    let (code, out, err) = env.run_in(env.root(), &["rerun", &id, "--repeat", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 repeat(s) of"), "{out}");
    let acc_row = out.lines().find(|l| l.starts_with("acc ")).unwrap();
    let cells: Vec<&str> = acc_row.split_whitespace().collect();
    assert_eq!(
        cells,
        vec!["acc", "0.91", "0.95", "0.96", "0.00707107", "2/2"]
    );
    assert!(
        out.contains(r#"output log.txt: DIFFERS between repeats (2 distinct digests; repeat 2 vs repeat 1): first difference at line 2: "run 5" vs "run 6""#),
        "{out}"
    );
    assert!(err.contains("repeat 2 of 2"), "{err}");
}

#[test]
fn repeats_of_a_deterministic_job_have_no_spread_and_no_differing_output() {
    let env = TestEnv::new();
    let id = job(&env, false);
    let doc = repeat_json(&env, &id);
    for m in doc["metrics"].as_array().unwrap() {
        assert_eq!(m["stddev"], 0.0, "{m}");
        assert_eq!(m["min"], m["max"], "{m}");
        assert_eq!(m["n"], 3, "{m}");
    }
    for o in doc["outputs"].as_array().unwrap() {
        assert_eq!(o["differ"], false, "{o}");
        assert_eq!(o["first_difference"], Value::Null, "{o}");
    }
    let (code, out, _) = env.run_in(env.root(), &["rerun", &id, "--repeat", "1"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("output model.bin: the same in every repeat"),
        "{out}"
    );
}

#[test]
fn diff_marks_a_delta_inside_the_spread_of_a_s_repeats_as_noise() {
    let env = TestEnv::new();
    let id = job(&env, true);
    // Without repeats there is no verdict.
    let (code, out, err) = env.run_in(env.root(), &["rerun", &id]);
    assert_eq!(code, 0, "{err} {out}");
    let single = env.last_id();
    let (_, out, _) = env.run_in(env.root(), &["diff", &id, &single, "--json"]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["noise_group"], Value::Null);
    assert_eq!(doc["metrics"][0]["noise"], Value::Null);

    // Repeats 0.93, 0.94, 0.95: a spread of 0.02. A is 0.91.
    let rep = repeat_json(&env, &id);
    let rid = |i: usize| rep["repeats"][i]["id"].as_str().unwrap().to_string();
    let diff = |b: &str| {
        let (code, out, err) = env.run_in(env.root(), &["diff", &id, b, "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let near = diff(&single); // 0.92: delta 0.01
    assert_eq!(near["noise_group"], rep["group"]);
    let acc = &near["metrics"][0];
    assert_eq!(acc["key"], "acc");
    assert_eq!(acc["noise"]["within"], true, "{acc}");
    assert!((acc["noise"]["range"].as_f64().unwrap() - 0.02).abs() < 1e-9);
    assert_eq!(near["metrics"][1]["noise"]["within"], true); // loss: delta 0, spread 0
    let far = diff(&rid(2)); // 0.95: delta 0.04
    assert_eq!(far["metrics"][0]["noise"]["within"], false, "{far}");

    let (code, out, err) = env.run_in(env.root(), &["diff", &id, &rid(2)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("noise: the spread of 3 repeat(s) of A"),
        "{out}"
    );
    let row = |out: &str, key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    assert!(
        row(&out, "acc").ends_with("BEYOND noise (spread 0.02)"),
        "{out}"
    );
    let (_, out, _) = env.run_in(env.root(), &["diff", &id, &single]);
    assert!(
        row(&out, "acc").ends_with("within noise (spread 0.02)"),
        "{out}"
    );
    assert!(
        row(&out, "loss").ends_with("within noise (spread 0)"),
        "{out}"
    );
}

#[test]
fn bad_repeat_counts_and_conflicting_flags_are_usage_errors_that_record_nothing() {
    let env = TestEnv::new();
    let id = job(&env, false);
    for args in [
        vec!["rerun", &id, "--repeat", "0"],
        vec!["rerun", &id, "--repeat", "x"],
        vec!["rerun", &id, "--repeat", "2", "--dry-run"],
        vec!["rerun", &id, "--repeat", "2", "--checkout", "somewhere"],
        vec!["rerun", &id, "--json"],
    ] {
        let (code, _, err) = env.run_in(env.root(), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("--repeat"), "{args:?}: {err}");
    }
    assert_eq!(env.runs().len(), 1);
}

/// Starts `repro run --host` of a job in ROOT/live that writes `acc` step 1, waits (at most
/// 30 s) for the file ROOT/live/go, then writes step 2 and ends; returns the wrapper process
/// and the run's id once it is recorded.
fn live_job(env: &TestEnv) -> (std::process::Child, String) {
    let dir = env.root().join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"printf '{"step": 1, "acc": 0.5}\n' >> "$REPRO_METRICS"
i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
printf '{"step": 2, "acc": 0.75}\n' >> "$REPRO_METRICS""#;
    let mut child = std_repro(env)
        .current_dir(&dir)
        .args(["run", "--host", "--", "sh", "-c", script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if let Some(r) = env.runs().first() {
            if r["status"] == "running" {
                return (child, r["id"].as_str().unwrap().to_string());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the run was never recorded as running");
}

/// `repro` with this environment as a `std` command (to spawn and read while it runs).
fn std_repro(env: &TestEnv) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REPRO_") || k.starts_with("XDG_") || k == "NO_COLOR" {
            c.env_remove(&k);
        }
    }
    c.env("HOME", env.home()).env("REPRO_DB", env.db());
    c
}

fn follower(env: &TestEnv, id: &str) -> std::process::Child {
    std_repro(env)
        .args(["--utc", "show", id, "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn fields(line: &str) -> Vec<String> {
    // `YYYY-MM-DD HH:MM:SS.mmm UTC  KEY  step=N  VALUE`: the time is three words.
    line.split_whitespace().skip(3).map(String::from).collect()
}

#[test]
fn follow_prints_points_of_a_run_in_another_process_as_they_are_written() {
    use std::io::{BufRead, Read};
    let env = TestEnv::new();
    let (mut job, id) = live_job(&env);
    let mut f = follower(&env, &id);
    let mut lines = std::io::BufReader::new(f.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(fields(&line), vec!["acc", "step=1", "0.5"], "{line}");
    // The job is still waiting: the point came while it ran, and the follower goes on.
    assert!(job.try_wait().unwrap().is_none());
    assert!(f.try_wait().unwrap().is_none());
    std::fs::write(env.root().join("live/go"), "").unwrap();
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(fields(&line), vec!["acc", "step=2", "0.75"], "{line}");
    // The follower ends by itself when the run ends.
    assert!(job.wait().unwrap().success());
    let status = f.wait().unwrap();
    let mut err = String::new();
    f.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("run {id} succeeded")), "{err}");
    let mut rest = String::new();
    lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "each point once");

    // An ended run: its stored points, then exit.
    let (code, out, err) = env.run_in(env.root(), &["--utc", "show", &id, "--follow"]);
    assert_eq!(code, 0, "{err}");
    let got: Vec<Vec<String>> = out.lines().map(fields).collect();
    assert_eq!(
        got,
        vec![vec!["acc", "step=1", "0.5"], vec!["acc", "step=2", "0.75"]]
    );
}

#[test]
fn ctrl_c_stops_following_with_exit_0() {
    use std::io::{BufRead, Read};
    let env = TestEnv::new();
    let (mut job, id) = live_job(&env);
    let mut f = follower(&env, &id);
    let mut lines = std::io::BufReader::new(f.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(fields(&line), vec!["acc", "step=1", "0.5"], "{line}");
    // SAFETY: a signal to the follower this test started.
    assert_eq!(unsafe { libc::kill(f.id() as i32, libc::SIGINT) }, 0);
    let status = f.wait().unwrap();
    let mut err = String::new();
    f.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("stopped following run {id}")),
        "{err}"
    );
    // The run itself goes on to its end.
    assert!(job.try_wait().unwrap().is_none());
    std::fs::write(env.root().join("live/go"), "").unwrap();
    assert!(job.wait().unwrap().success());
    assert_eq!(env.show_json(&id)["metrics"]["acc"]["last"], 0.75);
}

#[test]
fn follow_of_an_unknown_run_is_an_error() {
    let env = TestEnv::new();
    job(&env, false);
    let (code, out, err) = env.run_in(env.root(), &["show", "01zzzzzz", "--follow"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("no run matches id '01zzzzzz'"), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["show", "01zzzzzz", "--follow", "--history"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn ctrl_c_during_a_repeat_ends_the_loop_and_reports_the_repeats_that_ran() {
    use std::io::Read;
    let env = TestEnv::new();
    let dir = env.root().join("job");
    std::fs::create_dir_all(&dir).unwrap();
    let (block, started) = (env.root().join("block"), env.root().join("started"));
    let script = format!(
        r#"printf '{{"acc": 0.5}}\n' >> "$REPRO_METRICS"
if [ -e '{b}' ]; then touch '{s}'; exec sleep 30; fi"#,
        b = block.display(),
        s = started.display()
    );
    let (code, _, err) = env.run_in(&dir, &["run", "--host", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    std::fs::write(&block, "").unwrap();
    let mut rerun = std_repro(&env)
        .args(["rerun", &id, "--repeat", "3", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(started.exists(), "the first repeat never started");
    // SAFETY: a signal to the repro process this test started.
    assert_eq!(unsafe { libc::kill(rerun.id() as i32, libc::SIGINT) }, 0);
    let status = rerun.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    rerun
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    rerun
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(doc["interrupted"], true);
    assert_eq!(doc["asked"], 3);
    assert_eq!(doc["repeats"].as_array().unwrap().len(), 1);
    assert_eq!(doc["repeats"][0]["exit_code"], 130);
    assert!(err.contains("1 of 3 repeats ran"), "{err}");
    assert_eq!(env.runs().len(), 2, "no repeat started after Ctrl-C");
}
