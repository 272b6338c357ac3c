//! `repro sweep`: one recorded run per grid combination, grouped under a sweep id.

use std::path::Path;

use crate::support::{git, TestEnv};

/// A repository with `train.sh LR WD`: prints its arguments and writes `acc = LR` to m.jsonl.
fn repo(env: &TestEnv) -> std::path::PathBuf {
    let repo = env.git_repo("proj");
    std::fs::write(
        repo.join("train.sh"),
        "echo \"lr=$1 wd=$2\"\nprintf '{\"acc\": %s}\\n' \"$1\" > m.jsonl\n[ \"$3\" = fail ] && exit 3\nexit 0\n",
    )
    .unwrap();
    git(&repo, &["add", "train.sh"]);
    git(&repo, &["commit", "-q", "-m", "train"]);
    repo
}

fn sweep_runs(env: &TestEnv, cwd: &Path, sweep: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = env.run_in(cwd, &["ls", "--sweep", sweep, "--json", "--all"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["runs"].as_array().unwrap().clone()
}

fn sweep_id(stderr: &str) -> String {
    let at = stderr.find("repro ls --sweep ").expect(stderr) + "repro ls --sweep ".len();
    stderr[at..].split(')').next().unwrap().to_string()
}

#[test]
fn a_two_by_three_grid_records_six_runs_with_params_and_substituted_argv() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "sweep",
            "--host",
            "--grid",
            "lr=0.1,0.2",
            "--grid",
            "wd=0,1e-4,{x}",
            "--objective",
            "metric:acc",
            "--metrics",
            "m.jsonl",
            "--tag",
            "grid",
            "--",
            "sh",
            "train.sh",
            "{lr}",
            "{wd}",
            "{{literal}}",
        ],
    );
    // `{x}` as a *value* is data, not a placeholder: it reaches the argv verbatim.
    assert_eq!(code, 0, "{err}");
    let id = sweep_id(&err);
    let runs = sweep_runs(&env, &repo, &id);
    assert_eq!(runs.len(), 6, "{runs:?}");
    let mut seen = Vec::new();
    for r in &runs {
        let full = env.show_json(r["id"].as_str().unwrap());
        let argv: Vec<String> = full["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let (lr, wd) = (
            full["params"]["lr"].as_str().unwrap().to_string(),
            full["params"]["wd"].as_str().unwrap().to_string(),
        );
        assert_eq!(argv, ["sh", "train.sh", &lr, &wd, "{literal}"], "{full}");
        assert_eq!(full["status"], "succeeded");
        assert_eq!(full["sweep"], id.as_str(), "{full}");
        assert!(full["tags"].to_string().contains("grid"), "{full}");
        seen.push((lr, wd));
    }
    seen.sort();
    let want: Vec<(String, String)> = ["0.1", "0.2"]
        .iter()
        .flat_map(|l| ["0", "1e-4", "{x}"].map(|w| (l.to_string(), w.to_string())))
        .collect();
    assert_eq!(seen, want);
    // The summary follows the runs' own output: one row per run, best first (acc = lr).
    let lines: Vec<&str> = out.lines().collect();
    let head = lines.iter().position(|l| l.starts_with("RUN")).expect(&out);
    assert!(
        lines[head].contains("STATUS") && lines[head].contains("ACC"),
        "{out}"
    );
    let rows: Vec<&str> = lines[head + 1..]
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    assert!(
        rows[..3].iter().all(|r| r.trim_end().ends_with("0.2")),
        "{out}"
    );
    assert!(
        rows[3..].iter().all(|r| r.trim_end().ends_with("0.1")),
        "{out}"
    );
    let (code, text, _) = env.run_in(&repo, &["show", runs[0]["id"].as_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains(&format!("sweep        {id}")), "{text}");
    // A run outside the sweep is not listed by --sweep.
    let (code, _, err) = env.run_in(&repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sweep_runs(&env, &repo, &id).len(), 6);
    assert_eq!(
        sweep_runs(&env, &repo, &id[..10]).len(),
        6,
        "a prefix selects the sweep"
    );
    assert_eq!(sweep_runs(&env, &repo, "%").len(), 0, "no LIKE wildcards");
    assert_eq!(env.runs().len(), 7);
}

#[test]
fn a_failed_run_makes_the_sweep_fail_and_says_how_many() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "sweep",
            "--host",
            "--grid",
            "lr=1,2",
            "--grid",
            "end=ok,fail",
            "--",
            "sh",
            "train.sh",
            "{lr}",
            "0",
            "{end}",
        ],
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("2 of 4 run(s) failed"), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" failed")).count(),
        2,
        "{out}"
    );
    assert_eq!(env.runs().len(), 4);
}

#[test]
fn random_samples_the_same_combinations_for_the_same_seed() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let mut picked = Vec::new();
    for _ in 0..2 {
        let (code, _, err) = env.run_in(
            &repo,
            &[
                "sweep",
                "--host",
                "--grid",
                "lr=1,2,3,4,5",
                "--grid",
                "wd=1,2,3",
                "--random",
                "4",
                "--seed",
                "42",
                "--",
                "sh",
                "train.sh",
                "{lr}",
                "{wd}",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let mut p: Vec<String> = sweep_runs(&env, &repo, &sweep_id(&err))
            .iter()
            .map(|r| {
                let full = env.show_json(r["id"].as_str().unwrap());
                format!("{}/{}", full["params"]["lr"], full["params"]["wd"])
            })
            .collect();
        p.sort();
        assert_eq!(p.len(), 4);
        picked.push(p);
    }
    assert_eq!(picked[0], picked[1]);
}

#[test]
fn bad_grids_and_templates_are_refused_with_nothing_recorded() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let cases: &[(&[&str], &str)] = &[
        (&["--grid", "lr=1", "--", "echo", "{lrr}"], "{lrr}"),
        (
            &["--grid", "lr=1", "--grid", "wd=0", "--", "echo", "{lr}"],
            "--grid wd is never used",
        ),
        (&["--grid", "lr=1", "--", "echo", "{lr"], "unclosed"),
        (
            &["--grid", "lr=1", "--", "echo", "{lr}}"],
            "'}' without '{'",
        ),
        (&["--grid", "lr", "--", "echo", "{lr}"], "KEY=V1,V2"),
        (&["--grid", "lr=1,,2", "--", "echo", "{lr}"], "empty value"),
        (
            &["--grid", "lr=1", "--param", "lr=2", "--", "echo", "{lr}"],
            "both given",
        ),
        (
            &["--grid", "lr=1", "--objective", "acc", "--", "echo", "{lr}"],
            "metric:",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["sweep", "--host"];
        all.extend_from_slice(args);
        let (code, out, err) = env.run_in(&repo, &all);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("hint:"), "{args:?}: {err}");
    }
    assert!(!env.db().exists() || env.runs().is_empty());
}

#[test]
fn ctrl_c_mid_sweep_records_the_running_run_and_starts_nothing_new() {
    use std::process::{Command as StdCommand, Stdio};
    use std::time::{Duration, Instant};
    let env = TestEnv::new();
    let repo = repo(&env);
    let ready = env.root().join("ready-2");
    // The second combination signals that it runs, then sleeps until interrupted.
    let script = format!(
        "if [ \"$1\" = 2 ]; then touch {}; exec sleep 30; fi; echo run $1",
        ready.display()
    );
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(&repo)
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .args([
            "sweep",
            "--host",
            "--grid",
            "n=1,2,3,4",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            "{n}",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !ready.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the second run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "SIGINT did not stop the sweep"
    );
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("2 combination(s) not started"), "{err}");
    let runs = env.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["killed", "succeeded"], "{runs:?}");
}

#[test]
fn needed_skips_combinations_that_already_succeeded_and_names_their_runs() {
    let env = TestEnv::new();
    let repo = repo(&env);
    // The metrics file must not make the tree dirty: a dirty tree never matches.
    std::fs::write(repo.join(".gitignore"), "m.jsonl\n").unwrap();
    git(&repo, &["add", ".gitignore"]);
    git(&repo, &["commit", "-q", "-m", "ignore"]);
    let args = [
        "sweep",
        "--host",
        "--grid",
        "lr=1,2",
        "--grid",
        "end=ok,fail",
        "--",
        "sh",
        "train.sh",
        "{lr}",
        "0",
        "{end}",
    ];
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 3, "{err}");
    let first = sweep_runs(&env, &repo, &sweep_id(&err));
    let ok_ids: Vec<String> = first
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ok_ids.len(), 2);
    let mut again = args.to_vec();
    again.insert(1, "--needed");
    let (code, out, err) = env.run_in(&repo, &again);
    assert_eq!(code, 3, "the failed ones ran again and failed: {err}");
    for id in &ok_ids {
        assert!(
            err.contains(&format!("already succeeded as run {id}")),
            "{err}"
        );
        assert!(out.contains(id.as_str()), "the summary names {id}: {out}");
    }
    assert_eq!(env.runs().len(), 6, "two skipped, two failed ones re-run");
    // A changed commit is not the identical run: nothing is skipped.
    std::fs::write(repo.join("README"), "changed\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "change"]);
    let (_, _, err) = env.run_in(&repo, &again);
    assert!(!err.contains("already succeeded"), "{err}");
    assert_eq!(env.runs().len(), 10);
    assert_eq!(env.runs().len(), 10);
}

/// `--needed` compares dataset digests: the same data is skipped, changed data runs again.
#[test]
fn needed_compares_dataset_digests() {
    let env = TestEnv::new();
    let repo = repo(&env);
    std::fs::write(repo.join(".gitignore"), "m.jsonl\ndata/\n").unwrap();
    git(&repo, &["add", ".gitignore"]);
    git(&repo, &["commit", "-q", "-m", "ignore"]);
    std::fs::create_dir(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/a.csv"), "1,2\n").unwrap();
    let args = [
        "sweep",
        "--needed",
        "--host",
        "--dataset",
        "data",
        "--grid",
        "lr=1,2",
        "--",
        "sh",
        "train.sh",
        "{lr}",
        "0",
    ];
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("already succeeded"), "{err}");
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("already succeeded as run").count(), 2, "{err}");
    assert_eq!(env.runs().len(), 2);
    // One changed byte in the data: a different digest, so both run again.
    std::fs::write(repo.join("data/a.csv"), "1,3\n").unwrap();
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("already succeeded"), "{err}");
    assert_eq!(env.runs().len(), 4);
    // A missing dataset stops the sweep before anything runs.
    std::fs::remove_dir_all(repo.join("data")).unwrap();
    let (code, _, err) = env.run_in(&repo, &args);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--needed"), "{err}");
    assert_eq!(env.runs().len(), 4);
}

/// `--needed` with a tag resolves it against the registry now: while the tag points at the
/// digest the earlier runs used they are skipped; once the tag moves, the combinations run.
#[test]
fn needed_resolves_a_tag_and_runs_again_when_it_moved() {
    use crate::support::registry::Registry;
    let registry = Registry::start();
    let env = TestEnv::new();
    let repo = repo(&env);
    std::fs::write(repo.join(".gitignore"), "m.jsonl\n").unwrap();
    git(&repo, &["add", ".gitignore"]);
    git(&repo, &["commit", "-q", "-m", "ignore"]);
    let image = registry.reference("team/app", "v1");
    let d1 = registry.push_busybox("team/app", "v1");
    let args = [
        "sweep", "--needed", "--host", "--image", &image, "--grid", "lr=1,2", "--", "sh",
        "train.sh", "{lr}", "0",
    ];
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 0, "{err}");
    let runs = env.runs();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|r| r["image"]["digest"] == d1.as_str()),
        "{runs:?}"
    );
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("already succeeded as run").count(), 2, "{err}");
    assert_eq!(env.runs().len(), 2);
    let d2 = registry.push_busybox("team/app", "v1");
    assert_ne!(d1, d2);
    let (code, _, err) = env.run_in(&repo, &args);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("already succeeded"), "{err}");
    let runs = env.runs();
    assert_eq!(runs.len(), 4);
    assert_eq!(
        runs.iter()
            .filter(|r| r["image"]["digest"] == d2.as_str())
            .count(),
        2
    );
}

/// Issue 25 item 6: `plot --sweep ID --parallel metric:KEY` draws the sweep's runs as parallel
/// coordinates (one line per run through lr, wd and the objective); an unknown sweep is an error.
#[test]
fn plot_sweep_draws_parallel_coordinates_of_its_runs() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "sweep",
            "--host",
            "--grid",
            "lr=0.1,0.2",
            "--grid",
            "wd=0,1e-4",
            "--metrics",
            "m.jsonl",
            "--",
            "sh",
            "train.sh",
            "{lr}",
            "{wd}",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = sweep_id(&err);
    let svg = repo.join("sweep.svg");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "plot",
            "--sweep",
            &id,
            "--parallel",
            "metric:acc",
            "-o",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(4 runs)"), "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("points").unwrap().split_whitespace().count() == 3)
        .count();
    assert_eq!(lines, 4, "{text}");
    // The SWEEP column (issue 25 item 1): the id in CSV, 12 characters in the table.
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "ls",
            "--columns",
            "sweep,param:lr",
            "--format",
            "csv",
            "--all",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches(&format!("{id},")).count(), 4, "{out}");
    let (code, out, _) = env.run_in(&repo, &["ls", "--columns", "id,sweep"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID") && out.contains("SWEEP"), "{out}");
    assert!(out.contains(&id[..12]) && !out.contains(&id), "{out}");
    let (code, _, err) = env.run_in(&repo, &["plot", "--sweep", "zzzz", "-m", "acc"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no sweep matches 'zzzz'"), "{err}");
}

/// `--jobs 2` runs two combinations at once: each job waits for the other's file, which only
/// works when both run at the same time; their output lines carry their combination.
#[test]
fn jobs_runs_combinations_at_once_with_prefixed_output() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let dir = env.root().join("meet");
    std::fs::create_dir(&dir).unwrap();
    let script = format!(
        "touch {d}/$1; other=$((3 - $1)); i=0; \
         while [ ! -e {d}/$other ]; do i=$((i+1)); [ $i -gt 300 ] && exit 9; sleep 0.05; done; \
         echo met $other; printf '{{{{\"acc\": %s}}}}\\n' $1 > \"$REPRO_METRICS\"",
        d = dir.display()
    );
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "sweep",
            "--jobs",
            "2",
            "--host",
            "--objective",
            "metric:acc",
            "--grid",
            "n=1,2",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            "{n}",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[n=1] met 2"), "{out}");
    assert!(out.contains("[n=2] met 1"), "{out}");
    assert!(err.contains("2 at a time"), "{err}");
    let runs = sweep_runs(&env, &repo, &sweep_id(&err));
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
    // The summary is ranked by the objective, best first.
    let table: Vec<&str> = out.lines().filter(|l| !l.starts_with('[')).collect();
    let n2 = table.iter().position(|l| l.contains(" 2 ")).expect(&out);
    let n1 = table.iter().position(|l| l.contains(" 1 ")).expect(&out);
    assert!(n2 < n1, "{out}");
    // --jobs 0 is a usage error and records nothing.
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "sweep", "--jobs", "0", "--host", "--grid", "n=1", "--", "echo", "{n}",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--jobs"), "{err}");
    // Slurm's flags without --on slurm are a usage error too.
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "sweep", "--wait", "--host", "--grid", "n=1", "--", "echo", "{n}",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--on slurm"), "{err}");
    assert_eq!(env.runs().len(), 2);
}

/// Ctrl-C (SIGINT to the sweep's process group, as a terminal sends it) during `--jobs 2`:
/// both running jobs are signalled once and recorded as killed, nothing new starts, exit 130.
#[test]
fn ctrl_c_during_jobs_records_the_running_runs_and_starts_nothing_new() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command as StdCommand, Stdio};
    use std::time::{Duration, Instant};
    let env = TestEnv::new();
    let repo = repo(&env);
    let dir = env.root().join("ready");
    std::fs::create_dir(&dir).unwrap();
    let script = format!("touch {}/$1; exec sleep 30", dir.display());
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(&repo)
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .args([
            "sweep",
            "--jobs",
            "2",
            "--host",
            "--grid",
            "n=1,2,3,4,5",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            "{n}",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !(dir.join("1").exists() && dir.join("2").exists()) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the jobs never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signals the test's own child process group.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "SIGINT did not stop the sweep: {err}"
    );
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("3 combination(s) not started"), "{err}");
    assert!(!dir.join("3").exists(), "a third job started: {err}");
    let runs = env.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "killed"), "{runs:?}");
    let sweep = sweep_runs(&env, &repo, &sweep_id(&err));
    assert_eq!(sweep.len(), 2, "both belong to the sweep: {sweep:?}");
}

/// `--on slurm --wait`: one job array on the real one-node Slurm, one task per combination,
/// each a recorded run in the sweep with its Slurm array ids; `--needed` leaves done
/// combinations out of the next array; the array script passes shellcheck.
#[test]
fn on_slurm_submits_one_array_whose_tasks_are_recorded_runs() {
    use crate::support::slurm;
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let repo = repo(&env);
    std::fs::write(repo.join(".gitignore"), "m.jsonl\njob*/\n").unwrap();
    git(&repo, &["add", ".gitignore"]);
    git(&repo, &["commit", "-q", "-m", "ignore"]);
    let sweep =
        |extra: &[&str], dir: &str| {
            let mut args = vec!["sweep", "--on", "slurm", "--wait", "--job-dir", dir];
            args.extend_from_slice(extra);
            args.extend_from_slice(&[
            "--host", "--objective", "metric:acc", "--grid", "lr=1,2,3", "--", "sh", "-c",
            "printf '{{\"acc\": %s}}\\n' \"$1\" > \"$REPRO_METRICS\"; [ \"$1\" != 3 ] || exit 4",
            "sh", "{lr}",
        ]);
            let out = env
                .repro()
                .env("SLURM_CONF", cluster.conf())
                .current_dir(&repo)
                .args(&args)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
    let (code, out, err) = sweep(&["--jobs", "2"], "job1");
    assert_eq!(
        code,
        4,
        "the lr=3 task failed with 4: {err}\n{}",
        cluster.logs()
    );
    let job_id = out.lines().next().unwrap().trim().to_string();
    assert!(job_id.bytes().all(|b| b.is_ascii_digit()), "{out}");
    assert!(err.contains("1 of 3 run(s) failed"), "{err}");
    let runs = sweep_runs(&env, &repo, &sweep_id(&err));
    assert_eq!(runs.len(), 3, "{runs:?}");
    for r in &runs {
        let id = r["id"].as_str().unwrap();
        let show = env.show_json(id);
        let lr = show["params"]["lr"].as_str().unwrap().to_string();
        assert_eq!(
            show["status"],
            if lr == "3" { "failed" } else { "succeeded" }
        );
        assert_eq!(show["scheduler"]["kind"], "slurm", "{show}");
        assert_eq!(show["scheduler"]["array_job_id"], job_id.as_str(), "{show}");
        let task: usize = show["scheduler"]["array_task_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            task,
            lr.parse::<usize>().unwrap() - 1,
            "task index = combination"
        );
        assert_eq!(show["command"][2], format!("printf '{{\"acc\": %s}}\\n' \"$1\" > \"$REPRO_METRICS\"; [ \"$1\" != 3 ] || exit 4"));
    }
    // The summary, best first by acc (3 failed but reported 3), then 2, then 1.
    let rows: Vec<&str> = out.lines().skip(2).collect();
    assert!(rows[0].contains(" 3 ") && rows[2].contains(" 1 "), "{out}");
    // The array script is clean bash.
    let script = repo.join("job1/sweep.sbatch");
    let sc = std::process::Command::new("shellcheck")
        .arg(&script)
        .output();
    match sc {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => crate::support::skip_or_fail(&format!("shellcheck: {e}")),
    }
    // --needed: the two succeeded combinations are left out; one task runs again.
    let (code, _, err) = sweep(&["--needed"], "job2");
    assert_eq!(code, 4, "{err}");
    assert_eq!(err.matches("already succeeded as run").count(), 2, "{err}");
    assert!(err.contains("(1 task(s);"), "{err}");
    assert_eq!(env.runs().len(), 4);
}

/// With params read from the argv (the default), a template's `--lr {lr}` is the grid's param,
/// not a second one: each run's other `--key value` arguments are read from its own argv.
#[test]
fn params_from_the_argv_are_read_per_combination() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "sweep",
            "--host",
            "--grid",
            "lr=1,2",
            "--",
            "sh",
            "train.sh",
            "--lr",
            "{lr}",
            "--out=model-{lr}.json",
            "--epochs",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let runs = sweep_runs(&env, &repo, &sweep_id(&err));
    assert_eq!(runs.len(), 2);
    for r in &runs {
        let show = env.show_json(r["id"].as_str().unwrap());
        let lr = show["params"]["lr"].as_str().unwrap().to_string();
        assert_eq!(show["params"]["out"], format!("model-{lr}.json"), "{show}");
        assert_eq!(show["params"]["epochs"], "3", "{show}");
        assert_eq!(
            show["params_from_argv"],
            serde_json::json!(["epochs", "out"]),
            "the grid's lr is not marked as read from the argv: {show}"
        );
    }
}
