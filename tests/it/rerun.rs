//! `repro rerun`: same pins now, recorded as a new run linked to the original, outputs compared.
use crate::support::assert_ok_for;

use crate::support::assert_ok;
use crate::support::engine::Podman;
use crate::support::registry::Registry;
use crate::support::{git, TestEnv};
use std::path::Path;

#[test]
fn deterministic_job_reruns_from_commit_and_patch_with_matching_outputs() {
    let env = TestEnv::new();
    let repo = env.git_repo("det");
    std::fs::write(
        repo.join("train.sh"),
        "cat README data/in.txt > model.txt\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "train"]);
    std::fs::write(repo.join("README"), "uncommitted change\n").unwrap();
    let data = repo.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.txt"), "data v1\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "data/\nmodel.txt\n").unwrap();
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--dataset",
            "data",
            "--output",
            "model.txt",
            "--",
            "sh",
            "train.sh",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let orig_id = env.last_id();
    let orig = env.show_json(&orig_id);
    assert!(orig["outputs"][0]["sha256"].is_string());

    let checkout = env.root().join("co");
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "rerun",
            &orig_id[..10],
            "--check",
            "--checkout",
            checkout.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("output model.txt: match"), "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], orig_id.as_str());
    assert_ne!(new["id"], orig["id"]);
    assert_eq!(new["code"]["commit"], orig["code"]["commit"]);
    assert_eq!(new["code"]["patch_sha256"], orig["code"]["patch_sha256"]);
    assert_eq!(new["outputs"][0]["sha256"], orig["outputs"][0]["sha256"]);
    assert_eq!(new["datasets"], orig["datasets"]);
    // The new run records the original code state, not the temporary checkout.
    assert_eq!(new["code"], orig["code"]);
    assert_eq!(
        std::fs::read_to_string(checkout.join("model.txt")).unwrap(),
        "uncommitted change\ndata v1\n"
    );

    // A temporary checkout is removed after the run unless --keep, which says where it is.
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let rerun_in_tmp = |extra: &[&str]| {
        let out = env
            .repro()
            .current_dir(env.root())
            .env("TMPDIR", &tmp)
            .args(["rerun", &orig_id])
            .args(extra)
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = rerun_in_tmp(&[]);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "{err}");
    let err = rerun_in_tmp(&["--keep"]);
    let kept: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "kept the checkout in {}",
            kept[0].path().display()
        )),
        "{err}"
    );

    // Changed data is refused before anything runs.
    std::fs::write(data.join("in.txt"), "data v2\n").unwrap();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &orig_id, "--check"]);
    assert_eq!(code, 1);
    assert!(err.contains("has changed"), "{err}");
    assert_eq!(env.runs().len(), 4);
}

#[test]
fn a_job_writing_random_bytes_is_reported_as_a_mismatch() {
    let env = TestEnv::new();
    let dir = env.root().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, _, _) = env.run_in(
        &dir,
        &[
            "run",
            "--output",
            "rand.bin",
            "--",
            "sh",
            "-c",
            "head -c 32 /dev/urandom > rand.bin",
        ],
    );
    assert_eq!(code, 0);
    let id = env.last_id();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("output rand.bin: MISMATCH"), "{err}");
    // Without --check the mismatch is reported but the exit code is the command's.
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("MISMATCH"), "{err}");
    let (_, listed, _) = env.run_in(env.root(), &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let reruns = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rerun_of"] == id.as_str())
        .count();
    assert_eq!(reruns, 2);
}

#[test]
fn container_run_reruns_in_exactly_the_recorded_digest() {
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "5.0");
    let podman = Podman::new(&[&registry.addr()]);
    let env = TestEnv::new();
    let repo = env.git_repo("ctr");
    let image = format!("{}/team/trainer:5.0", registry.addr());
    let out = env
        .repro()
        .current_dir(&repo)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args([
            "run", "-q", "--engine", "podman", "--image", &image, "--output", "out.txt",
        ])
        .args([
            "--engine-arg=--network=none",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "cat README > out.txt; echo done",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    let id = env.last_id();
    // The tag moves; the re-run must not follow it.
    registry.push_busybox("team/trainer", "5.0");
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["rerun", &id, "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    assert!(err.contains("output out.txt: match"), "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], id.as_str());
    assert_eq!(new["image"]["digest"], digest.as_str());
    assert_eq!(new["exec"]["mode"], "container");
}

/// The words of each `+ ENGINE …` line of a dry run, parsed by bash itself.
fn engine_lines(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("+ podman ") || l.starts_with("+ docker "))
        .map(|l| {
            let out = std::process::Command::new("bash")
                .args([
                    "-c",
                    &format!(
                        "eval \"set -- {}\"; printf '%s\\0' \"$@\"",
                        &l[2..]
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('$', "\\$")
                            .replace('`', "\\`")
                    ),
                ])
                .output()
                .unwrap();
            assert_ok_for(&out, &format!("bash could not parse {l}"));
            String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn rerun_dry_run_prints_the_same_engine_argv_as_the_bash_script() {
    let env = TestEnv::new();
    let repo = env.git_repo("parity");
    let head = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let variants = [
        serde_json::json!({"engine_args": [], "gpus": null, "env": {}, "workdir": "/workspace", "cwd": "."}),
        serde_json::json!({"engine_args": ["--cap-add", "A", "--cap-add", "B", "--shm-size=1g"], "gpus": "all", "env": {"SEED": "42 `id`"}, "workdir": "/w space", "cwd": "sub dir"}),
        serde_json::json!({"engine_args": ["--volume=/data:/data:ro"], "gpus": "device=0,1", "env": {"A": "1", "B_2": "$(x)"}, "workdir": "/workspace", "cwd": "exp"}),
    ];
    let file = env.root().join("runs.jsonl");
    let mut lines = String::new();
    let mut ids = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let id = format!("01jd3kq8x9v5n2m4p6r8t0w2y{i}");
        let run = serde_json::json!({
            "schema_version": 1, "id": id, "name": null, "status": "succeeded", "exit_code": 0,
            "signal": null, "started_at": "2026-11-26T14:00:00Z", "ended_at": "2026-11-26T14:01:00Z",
            "duration_ms": 60000, "command": ["python", "train.py", "it's", "a b", "--lr=0.1"],
            "cwd": v["cwd"],
            "exec": {"mode": "container", "engine": "podman", "workdir": v["workdir"],
                     "engine_args": v["engine_args"], "gpus": v["gpus"]},
            "image": {"reference": "registry.example.com:5000/team/trainer:1.0", "digest": digest,
                      "index_digest": null, "platform": null, "resolved_by": "registry", "labels": {}},
            "code": {"repo_root": repo.to_str().unwrap(), "remote": null, "commit": head,
                     "branch": "main", "dirty": false, "untracked": [], "patch_sha256": null},
            "datasets": [], "outputs": [], "params": {}, "tags": [], "notes": [], "env": v["env"],
            "host": "h", "user": "u", "platform": "linux/amd64", "pid": null, "boot_id": null,
            "pid_start": null, "rerun_of": null
        });
        lines.push_str(&run.to_string());
        lines.push('\n');
        ids.push(id);
    }
    std::fs::write(&file, lines).unwrap();
    let (code, _, err) = env.run_in(env.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for (id, insecure) in ids.iter().zip([false, true, false]) {
        let dir = env.root().join(format!("co-{id}"));
        let mut rerun = vec![
            "rerun",
            id.as_str(),
            "--dry-run",
            "--checkout",
            dir.to_str().unwrap(),
        ];
        let mut script = vec!["script", id.as_str()];
        if insecure {
            rerun.extend(["--insecure-registry", "registry.example.com:5000"]);
            script.extend(["--insecure-registry", "registry.example.com:5000"]);
        }
        let (code, native, err) = env.run_in(env.root(), &rerun);
        assert_eq!(code, 0, "{err}");
        let (code, text, err) = env.run_in(env.root(), &script);
        assert_eq!(code, 0, "{err}");
        let path = env.root().join(format!("{id}.sh"));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new("bash")
            .arg(&path)
            .arg("--dry-run")
            .arg(&dir)
            .env("PATH", std::env::var("PATH").unwrap())
            .env_remove("REPRO_ENGINE")
            .output()
            .unwrap();
        let from_script = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_ok(&out);
        // The native run also names its container after the new run and mounts that run's
        // metrics file; the script names none and makes a temporary file (METRICS_FILE in a
        // dry run). The channel directory is native only.
        let a: Vec<Vec<String>> = engine_lines(&native)
            .iter()
            .map(|w| {
                let id = w
                    .iter()
                    .find_map(|x| x.strip_prefix("--name=repro-"))
                    .map(str::to_string);
                let metrics = id.map(|id| {
                    let dir = env.db().parent().unwrap().join("metrics");
                    dir.join(format!("{id}.jsonl")).display().to_string()
                });
                // The native run also gives the job the channels repro reads at the end
                // (REPRO_PARAMS, REPRO_OUTPUTS); the script records nothing, so has none.
                let channels = env.db().parent().unwrap().join("channels");
                let channels = format!("--volume={}/", channels.display());
                w.iter()
                    .filter(|x| !x.starts_with("--name=repro-"))
                    .filter(|x| {
                        !x.starts_with(&channels)
                            && !matches!(
                                x.as_str(),
                                "--env=REPRO_PARAMS"
                                    | "--env=REPRO_OUTPUTS"
                                    | "--env=REPRO_WORKDIR"
                            )
                    })
                    .map(|x| match &metrics {
                        Some(m) => x.replace(m.as_str(), "METRICS_FILE"),
                        None => x.clone(),
                    })
                    .collect()
            })
            .collect();
        let b = engine_lines(&from_script);
        assert_eq!(a.len(), 2, "pull and run expected: {native}");
        assert_eq!(
            a, b,
            "repro rerun --dry-run:\n{native}\nbash --dry-run:\n{from_script}"
        );
        assert_eq!(a[0].contains(&"--tls-verify=false".to_string()), insecure);
    }
}

/// One imported run as a JSON line: `host` decides whether it was recorded on this machine.
fn foreign_run(id: &str, host: &str, cwd: &Path, exec: serde_json::Value) -> String {
    let image = if exec["mode"] == "container" {
        serde_json::json!({"reference": "registry.example.com/team/trainer:1.0",
            "digest": format!("sha256:{}", "ab".repeat(32)), "index_digest": null,
            "platform": null, "resolved_by": "registry", "labels": {}})
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({
        "schema_version": 1, "id": id, "name": null, "status": "succeeded", "exit_code": 0,
        "signal": null, "started_at": "2026-11-26T14:00:00Z", "ended_at": "2026-11-26T14:01:00Z",
        "duration_ms": 60000, "command": ["sh", "-c", "touch replayed"],
        "cwd": cwd.to_str().unwrap(), "exec": exec, "image": image, "code": null,
        "datasets": [], "outputs": [], "params": {}, "tags": [], "notes": [], "env": {},
        "host": host, "user": "mallory", "platform": "linux/amd64", "pid": null,
        "boot_id": null, "pid_start": null, "rerun_of": null
    })
    .to_string()
}

fn this_host() -> String {
    let out = std::process::Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A run recorded on another machine replays someone else's command: without a terminal it
/// needs --trust, and nothing runs (or is recorded) before that.
#[test]
fn a_run_recorded_elsewhere_needs_trust_before_anything_runs() {
    let env = TestEnv::new();
    let work = env.root().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let id = "01jd3kq8x9v5n2m4p6r8t0w2ya";
    let host_exec = serde_json::json!({"mode": "host", "engine": null, "workdir": null,
        "engine_args": [], "gpus": null});
    let file = env.root().join("in.jsonl");
    std::fs::write(
        &file,
        foreign_run(id, "elsewhere.example", &work, host_exec) + "\n",
    )
    .unwrap();
    let (code, _, err) = env.run_in(env.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = env.run_in(env.root(), &["rerun", id]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("recorded on elsewhere.example by mallory"),
        "{err}"
    );
    assert!(
        err.contains("sh -c 'touch replayed'"),
        "the command is shown: {err}"
    );
    assert!(err.contains("--trust"), "{err}");
    assert!(!work.join("replayed").exists(), "nothing may run");
    assert_eq!(env.runs().len(), 1, "nothing may be recorded");
    let (code, _, err) = env.run_in(env.root(), &["rerun", "--trust", id]);
    assert_eq!(code, 0, "{err}");
    assert!(work.join("replayed").exists(), "{err}");
}

/// Risky engine flags and mounts are shown and need consent even for a run of this machine;
/// a dry run shows them; the script header lists engine flags and mounts.
#[test]
fn risky_engine_flags_and_mounts_need_trust_and_are_listed_in_the_script() {
    let env = TestEnv::new();
    let id = "01jd3kq8x9v5n2m4p6r8t0w2yb";
    let exec = serde_json::json!({"mode": "container", "engine": "podman",
        "workdir": "/workspace", "engine_args": ["--volume=/:/host", "--privileged",
        "--shm-size=1g"], "gpus": null});
    let file = env.root().join("in.jsonl");
    std::fs::write(
        &file,
        foreign_run(id, &this_host(), env.root(), exec) + "\n",
    )
    .unwrap();
    let (code, _, err) = env.run_in(env.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = env.run_in(env.root(), &["rerun", id, "--engine", "podman"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("risky"), "{err}");
    assert!(
        err.contains("RISKY for this host: '--volume=/:/host' --privileged"),
        "{err}"
    );
    assert!(!err.contains("recorded on"), "recorded here: {err}");
    assert!(err.contains("--trust"), "{err}");
    assert_eq!(env.runs().len(), 1, "nothing may be recorded");
    let (code, out, err) = env.run_in(env.root(), &["rerun", id, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("--privileged"), "{out}");
    assert!(err.contains("RISKY for this host"), "{err}");
    let (code, script, err) = env.run_in(env.root(), &["script", id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        script.contains("# Engine flags: --privileged '--shm-size=1g'\n"),
        "{script}"
    );
    assert!(
        script.contains("# Mounts:       '--volume=/:/host'\n"),
        "{script}"
    );
    assert!(
        script.contains("RISKY for the host running this script: '--volume=/:/host' --privileged"),
        "{script}"
    );
}

/// On a terminal the re-run lists what it would replay and asks; only `y` runs it.
#[test]
fn on_a_terminal_a_foreign_run_is_confirmed_first() {
    crate::support::require_tool("script");
    let env = TestEnv::new();
    let work = env.root().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let id = "01jd3kq8x9v5n2m4p6r8t0w2yc";
    let host_exec = serde_json::json!({"mode": "host", "engine": null, "workdir": null,
        "engine_args": [], "gpus": null});
    let file = env.root().join("in.jsonl");
    std::fs::write(
        &file,
        foreign_run(id, "elsewhere.example", &work, host_exec) + "\n",
    )
    .unwrap();
    let (code, _, err) = env.run_in(env.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bin = assert_cmd::cargo::cargo_bin("repro");
    let rerun = |answer: &str| -> String {
        let cmd = format!(
            "HOME='{}' REPRO_DB='{}' '{}' rerun {id}",
            env.home().display(),
            env.db().display(),
            bin.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(env.root())
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
    let said = rerun("n\n");
    assert!(said.contains("recorded on elsewhere.example"), "{said}");
    assert!(said.contains("re-run it? [y/N]"), "{said}");
    assert!(!work.join("replayed").exists(), "{said}");
    let said = rerun("y\n");
    assert!(work.join("replayed").exists(), "{said}");
}

/// A host job (no repository) whose n-th execution reports `acc` = 0.90n, `nan` = NaN, a fixed
/// `loss`, and `first` only the first time; returns the original run's id.
fn counting_metrics_run(env: &TestEnv) -> String {
    let dir = env.root().join("job");
    std::fs::create_dir_all(&dir).unwrap();
    let count = env.root().join("count");
    let script = format!(
        r#"n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > '{c}'
printf '{{"step": 1, "acc": 0.5, "loss": 0.25, "nan": NaN}}\n{{"step": 2, "acc": 0.90%s, "loss": 0.125}}\n' "$n" >> "$REPRO_METRICS"
if [ "$n" = 1 ]; then printf '{{"first": 1}}\n' >> "$REPRO_METRICS"; fi"#,
        c = count.display()
    );
    let (code, _, err) = env.run_in(&dir, &["run", "--host", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    env.last_id()
}

#[test]
fn check_compares_metrics_within_rtol_and_atol() {
    let env = TestEnv::new();
    let id = counting_metrics_run(&env);
    assert_eq!(env.show_json(&id)["metrics"]["acc"]["last"], 0.901);
    let rerun = |extra: &[&str]| {
        let mut args = vec!["rerun", id.as_str()];
        args.extend_from_slice(extra);
        env.run_in(env.root(), &args)
    };
    // Run 2: acc 0.902 (exact check fails), `first` is gone, NaN matches NaN, loss matches.
    let (code, _, err) = rerun(&["--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("repro: metric acc: OUT OF TOLERANCE: now 0.902, was 0.901"),
        "{err}"
    );
    assert!(
        err.contains("repro: metric first: MISSING now (was 1)"),
        "{err}"
    );
    assert!(
        err.contains("repro: metrics: 2 of 4 within tolerance (rtol 0, atol 0)"),
        "{err}"
    );
    assert!(
        !err.contains("metric loss:") && !err.contains("metric nan:"),
        "{err}"
    );
    let new = env.show_json(&env.last_id());
    assert_eq!(new["metrics"]["acc"]["last"], 0.902);
    assert_eq!(
        new["status"], "succeeded",
        "the check does not change the record"
    );

    // Run 3 (0.903): within atol 0.01, but `first` is still missing.
    let (code, _, err) = rerun(&["--check", "--atol", "0.01"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("metric acc:"), "{err}");
    assert!(err.contains("metric first: MISSING now"), "{err}");

    // A run without `first`: run 4 against run 3 (0.904 vs 0.903).
    let (code, _, err) = env.run_in(
        env.root(),
        &["rerun", &env.last_id(), "--check", "--rtol", "1e-4"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("metric acc: OUT OF TOLERANCE: now 0.904, was 0.903"),
        "{err}"
    );
    let third = env.runs()[1]["id"].as_str().unwrap().to_string();
    // Run 5 (0.905 vs 0.903): |d| = 0.002 <= 0.01 * 0.903.
    let (code, _, err) = env.run_in(env.root(), &["rerun", &third, "--check", "--rtol", "0.01"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("metrics: 3 of 3 within tolerance (rtol 0.01, atol 0)"),
        "{err}"
    );
    // Without --check the verdicts are shown and the exit code is the command's.
    let (code, _, err) = rerun(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("metric acc: OUT OF TOLERANCE"), "{err}");
}

#[test]
fn bad_tolerances_are_usage_errors_and_record_nothing() {
    let env = TestEnv::new();
    let id = counting_metrics_run(&env);
    for bad in [
        ["--rtol", "-0.1"],
        ["--rtol", "abc"],
        ["--atol", "-1"],
        ["--atol", "NaN"],
        ["--rtol", "inf"],
    ] {
        let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--check", bad[0], bad[1]]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains(bad[0]) && err.contains(bad[1]), "{err}");
    }
    assert_eq!(env.runs().len(), 1, "nothing ran");
}

#[test]
fn a_failed_rerun_keeps_its_exit_code_when_metrics_differ() {
    let env = TestEnv::new();
    let dir = env.root().join("job");
    std::fs::create_dir_all(&dir).unwrap();
    let flag = env.root().join("ran-once");
    let script = format!(
        r#"if [ -e '{f}' ]; then printf '{{"acc": 0.1}}\n' >> "$REPRO_METRICS"; exit 3; fi
touch '{f}'; printf '{{"acc": 0.9}}\n' >> "$REPRO_METRICS""#,
        f = flag.display()
    );
    let (code, _, err) = env.run_in(&dir, &["run", "--host", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--check"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("metric acc: OUT OF TOLERANCE"), "{err}");
}

/// `repro ARGS` in the environment's root with only `MLFLOW_TRACKING_URI` = `uri` and
/// `MLFLOW_EXPERIMENT_NAME` = `exp` of the MLflow variables (plus `extra` variables); returns
/// (exit code, stderr).
pub(crate) fn repro_with_mlflow(
    env: &TestEnv,
    uri: &str,
    exp: &str,
    extra: &[(&str, &std::ffi::OsStr)],
    args: &[&str],
) -> (i32, String) {
    let mut c = env.repro();
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_") {
            c.env_remove(&k);
        }
    }
    let out = c
        .envs(extra.iter().copied())
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_EXPERIMENT_NAME", exp)
        .current_dir(env.root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `repro rerun --mlflow` pushes the re-run when it ends, linked to its pushed original by
/// `mlflow.parentRunId`; a failed push is a warning and keeps the exit code.
#[test]
fn rerun_with_mlflow_pushes_linked_to_the_original() {
    use crate::support::mlflow::{kv, server};
    let srv = server();
    let env = TestEnv::new();
    let exp = format!("rerun-{}", std::process::id());
    let repro = |uri: &str, args: &[&str]| repro_with_mlflow(&env, uri, &exp, &[], args);
    let script = r#"printf '{"acc": 0.75}\n' >> "$REPRO_METRICS""#;
    let (code, err) = repro(
        &srv.uri,
        &[
            "run", "--host", "--mlflow", "--param", "lr=0.1", "--", "sh", "-c", script,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let orig = env.last_id();
    let pushed_orig = srv.run_by_repro_id(&exp, &orig).expect("original pushed");
    let (code, err) = repro(&srv.uri, &["rerun", &orig, "--mlflow", "--check"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pushed to MLflow at"), "{err}");
    let new = env.last_id();
    assert_ne!(new, orig);
    let pushed = srv.run_by_repro_id(&exp, &new).expect("re-run pushed");
    let tags = kv(&pushed["data"]["tags"]);
    assert_eq!(
        tags.get("mlflow.parentRunId").map(String::as_str),
        pushed_orig["info"]["run_id"].as_str()
    );
    assert_eq!(pushed["info"]["status"], "FINISHED");
    assert_eq!(kv(&pushed["data"]["params"])["lr"], "0.1");
    let metrics = pushed["data"]["metrics"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["key"] == "acc" && m["value"] == 0.75),
        "{metrics:?}"
    );

    // Server down: the check still decides the exit code, the push only warns.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let (code, err) = repro(&dead, &["rerun", &orig, "--mlflow", "--check"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: not pushed to MLflow"), "{err}");
    assert_eq!(env.show_json(&env.last_id())["status"], "succeeded");
    // Without --mlflow nothing is pushed.
    let (code, err) = repro(&srv.uri, &["rerun", &orig]);
    assert_eq!(code, 0, "{err}");
    assert!(srv.run_by_repro_id(&exp, &env.last_id()).is_none(), "{err}");
}

/// Issue 21: a path dataset is verified where the re-run reads it. Data tracked in the recorded
/// commit is read (and verified) in the checkout, so a change in the live tree after the run does
/// not matter; untracked data is still verified at its recorded path.
#[test]
fn check_verifies_tracked_data_in_the_checkout_and_untracked_data_where_recorded() {
    let env = TestEnv::new();
    let repo = env.git_repo("data-in-git");
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/train.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "scratch/\nout.txt\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "data"]);
    std::fs::create_dir_all(repo.join("scratch")).unwrap();
    std::fs::write(repo.join("scratch/extra.txt"), "untracked v1\n").unwrap();
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--dataset",
            "data/train.csv",
            "--dataset",
            "scratch",
            "--output",
            "out.txt",
            "--",
            "sh",
            "-c",
            "cat data/train.csv scratch/extra.txt > out.txt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();

    // The live tree moves on after the run; the recorded commit still has the data.
    std::fs::write(repo.join("data/train.csv"), "x,y\n9,9\n").unwrap();
    let co = env.root().join("co1");
    let (code, _, err) = env.run_in(
        env.root(),
        &["rerun", &id, "--check", "--checkout", co.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("output out.txt: match"), "{err}");
    assert_eq!(
        std::fs::read_to_string(co.join("out.txt")).unwrap(),
        "x,y\n1,2\nuntracked v1\n"
    );

    // Untracked data is read from its recorded place, so it is verified there.
    std::fs::write(repo.join("scratch/extra.txt"), "untracked v2\n").unwrap();
    let co = env.root().join("co2");
    let (code, _, err) = env.run_in(
        env.root(),
        &["rerun", &id, "--check", "--checkout", co.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("dataset scratch at"), "{err}");
    assert!(
        err.contains(&repo.join("scratch").display().to_string()),
        "{err}"
    );
    assert!(err.contains("has changed"), "{err}");
    assert!(!co.join("out.txt").exists(), "nothing ran");
}

/// A stand-in `podman` on PATH that records each pull and run argv (NUL-separated, one file
/// per call, named by the time of the call) and reports the image as absent, so the run pulls.
fn recording_podman(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    let log = dir.join("podman-calls");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    let script = format!(
        "#!/bin/sh\ncase $1 in\n  image | events) exit 1 ;;\nesac\nprintf '%s\\0' \"$@\" > '{}'/\"$(date +%s%N)\"\nexit 0\n",
        log.display()
    );
    let p = bin.join("podman");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, log)
}

/// The recorded calls of [`recording_podman`], oldest first.
fn recorded_calls(log: &Path) -> Vec<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir(log)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let mut words: Vec<String> = String::from_utf8(std::fs::read(f).unwrap())
                .unwrap()
                .split('\0')
                .map(str::to_string)
                .collect();
            words.pop();
            words
        })
        .collect()
}

/// `--name=repro-<new run id>` names the container; each run gets its own id.
fn without_run_id(words: &[String]) -> Vec<String> {
    let id = words
        .iter()
        .find_map(|w| w.strip_prefix("--name=repro-"))
        .map(str::to_string);
    words
        .iter()
        .map(|w| match &id {
            Some(id) => w.replace(id.as_str(), "NEW_RUN_ID"),
            None => w.clone(),
        })
        .collect()
}

/// Issue 21: `rerun --dry-run` prints the argv that really runs (checkout mount, dataset mounts,
/// container name, metrics file, the registry options the run recorded), and a run made with
/// `--insecure-registry` re-runs with it without the flag given again.
#[test]
fn dry_run_prints_the_argv_the_rerun_executes() {
    let env = TestEnv::new();
    let (bin, log) = recording_podman(env.root());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let repo = env.git_repo("dry");
    std::fs::write(repo.join(".gitignore"), "data/\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "ignore data"]);
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/in.txt"), "untracked\n").unwrap();
    let image = format!("127.0.0.1:9/team/app@sha256:{}", "ab".repeat(32));
    let repro = |cwd: &Path, args: &[&str]| {
        let out = env
            .repro()
            .current_dir(cwd)
            .env("PATH", &path)
            .env("TMPDIR", &tmp)
            .args(args)
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    repro(
        &repo,
        &[
            "run",
            "-q",
            "--offline",
            "--engine",
            "podman",
            "--image",
            &image,
            "--insecure-registry",
            "127.0.0.1:9",
            "--dataset",
            "data",
            "--",
            "sh",
            "-c",
            "echo it's",
        ],
    );
    let id = env.last_id();
    std::fs::remove_dir_all(&log).unwrap();
    std::fs::create_dir_all(&log).unwrap();

    let dry = repro(env.root(), &["rerun", &id, "--dry-run"]);
    let printed: Vec<Vec<String>> = engine_lines(&dry)
        .iter()
        .map(|w| without_run_id(w))
        .collect();
    assert!(recorded_calls(&log).is_empty(), "a dry run runs nothing");
    repro(env.root(), &["rerun", &id]);
    // The system-metrics sampler asks the engine for the container (`podman inspect`): not a
    // step of the re-run, so not printed by --dry-run.
    let ran: Vec<Vec<String>> = recorded_calls(&log)
        .iter()
        .filter(|w| w.first().map(String::as_str) != Some("inspect"))
        .map(|w| {
            let mut argv = vec!["podman".to_string()];
            argv.extend(without_run_id(w));
            argv
        })
        .collect();
    assert_eq!(ran.len(), 2, "pull and run: {ran:?}");
    assert_eq!(printed, ran, "dry run:\n{dry}");
    // What makes them equal: the recorded registry option, the checkout (not the repository)
    // at the workdir, the untracked data mounted from where it was recorded.
    assert_eq!(
        ran[0],
        [
            "podman",
            "pull",
            "--tls-verify=false",
            &format!("127.0.0.1:9/team/app@sha256:{}", "ab".repeat(32))
        ]
    );
    let checkout = tmp.join(format!("repro-rerun-{}", &id[..12]));
    let run = &ran[1];
    assert!(
        run.contains(&format!("--volume={}:/workspace", checkout.display())),
        "{run:?}"
    );
    assert!(
        run.contains(&format!(
            "--volume={}:/workspace/data:ro",
            repo.join("data").display()
        )),
        "{run:?}"
    );
    assert!(
        run.contains(&"--name=repro-NEW_RUN_ID".to_string()),
        "{run:?}"
    );
}

/// A record altered after it was made (`cwd` or `exec.workdir` leaving the checkout) is refused
/// by `rerun` and `script` before anything runs or is written — import refuses such lines, this
/// is the second check for a database changed by other means.
#[test]
fn a_record_whose_directories_leave_the_checkout_is_refused_at_rerun_and_script() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let (code, _, err) = env.run_in(&repo, &["run", "-q", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let escape = env.root().join("escaped");
    for (column, value, field) in [
        ("cwd", "../../../../escaped", "cwd"),
        ("workdir", "/../../etc", "exec.workdir"),
    ] {
        let c = rusqlite::Connection::open(env.db()).unwrap();
        c.execute(
            &format!("UPDATE runs SET {column} = ?1 WHERE id = ?2"),
            rusqlite::params![value, id],
        )
        .unwrap();
        drop(c);
        let before = env.runs().len();
        let (code, _, err) = env.run_in(&repo, &["rerun", &id, "--trust"]);
        assert_eq!(code, 1, "{field}: {err}");
        assert!(
            err.contains(field) && err.contains("'..' component"),
            "{field}: {err}"
        );
        assert_eq!(env.runs().len(), before, "{field}: no new run recorded");
        let (code, out, err) = env.run_in(&repo, &["script", &id]);
        assert_eq!(code, 1, "{field}: {err}");
        assert!(out.is_empty() && err.contains(field), "{field}: {err}");
        // Put the column back before the next case.
        let c = rusqlite::Connection::open(env.db()).unwrap();
        let restore: Option<&str> = if column == "cwd" { Some(".") } else { None };
        c.execute(
            &format!("UPDATE runs SET {column} = ?1 WHERE id = ?2"),
            rusqlite::params![restore, id],
        )
        .unwrap();
    }
    assert!(!escape.exists(), "nothing may be made outside the checkout");
}

/// A repository whose job writes a counter (kept outside it, so it grows from run to run) into
/// a text output and into a file of a directory output.
fn counting_outputs_repo(env: &TestEnv) -> (std::path::PathBuf, String) {
    let repo = env.git_repo("counting");
    let counter = env.root().join("counter");
    std::fs::write(
        repo.join("job.sh"),
        format!(
            "n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'\n\
             printf 'header\\ncount=%s\\n' \"$n\" > count.txt\n\
             mkdir -p out; printf 'same\\n' > out/a.txt; printf 'step 1\\nrun %s\\n' \"$n\" > out/log.txt\n",
            c = counter.display()
        ),
    )
    .unwrap();
    std::fs::write(repo.join(".gitignore"), "count.txt\nout/\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "job"]);
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--output",
            "count.txt",
            "--output",
            "out",
            "--",
            "sh",
            "job.sh",
        ],
    );
    assert_eq!(code, 0, "{err}");
    (repo, env.last_id())
}

#[test]
fn check_names_the_first_differing_line_of_text_outputs() {
    let env = TestEnv::new();
    let (repo, id) = counting_outputs_repo(&env);
    // Whatever the working file holds now, the original's side is its kept copy.
    std::fs::write(repo.join("count.txt"), "something else entirely\n").unwrap();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--host", "--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            r#"output count.txt: MISMATCH: first difference at line 2: "count=1" vs "count=2""#
        ),
        "{err}"
    );
    assert!(
        err.contains(
            r#"output out: MISMATCH: first difference in log.txt at line 2: "run 1" vs "run 2""#
        ),
        "{err}"
    );

    // Re-run outputs that are not kept are read where the re-run wrote them.
    let out = env
        .repro()
        .current_dir(env.root())
        .env("REPRO_KEEP_OUTPUTS", "false")
        .args(["rerun", &id, "--host", "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(r#"first difference at line 2: "count=1" vs "count=3""#),
        "{err}"
    );
    assert!(
        err.contains(r#"in log.txt at line 2: "run 1" vs "run 3""#),
        "{err}"
    );
}

#[test]
fn check_without_a_kept_original_says_why_it_cannot_compare_lines() {
    let env = TestEnv::new();
    let repo = env.git_repo("unkept");
    std::fs::write(repo.join(".gitignore"), "stamp.txt\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "ignore"]);
    let out = env
        .repro()
        .current_dir(&repo)
        .args([
            "run",
            "--no-keep-outputs",
            "--output",
            "stamp.txt",
            "--",
            "sh",
            "-c",
            "date +%s%N > stamp.txt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = env.last_id();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--host", "--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "output stamp.txt: MISMATCH (no line comparison: the original's output is not kept)"
        ),
        "{err}"
    );
}

#[test]
fn check_of_a_run_without_code_compares_with_the_kept_copy_it_overwrote() {
    let env = TestEnv::new();
    let dir = env.root().join("plain-count");
    std::fs::create_dir_all(&dir).unwrap();
    let job =
        "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo \"count=$n\" > count.txt";
    let (code, _, err) = env.run_in(
        &dir,
        &["run", "--output", "count.txt", "--", "sh", "-c", job],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    // Without code the re-run runs where the run did, overwriting the original's working file.
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--check"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("count.txt")).unwrap(),
        "count=2\n"
    );
    assert!(
        err.contains(
            r#"output count.txt: MISMATCH: first difference at line 1: "count=1" vs "count=2""#
        ),
        "{err}"
    );
}
