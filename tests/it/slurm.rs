//! A real Slurm cluster (one node on 127.0.0.1): jobs submitted with `repro::slurm`, their
//! final states mapped to repro outcomes, and the scheduler context read from inside a job.

use std::collections::BTreeMap;
use std::time::Duration;

use repro::capture::scheduler;
use repro::record::Status;
use repro::slurm::{JobState, JobStatus};

use crate::support::slurm;

const FINISH: Duration = Duration::from_secs(60);

fn one(jobs: Vec<JobStatus>) -> JobStatus {
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs.into_iter().next().unwrap()
}

/// `KEY=VALUE\0` records of `env -0`.
fn parse_env0(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|rec| {
            let rec = String::from_utf8_lossy(rec);
            let (k, v) = rec.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn completed_job_is_succeeded_with_exit_zero() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &["--job-name=hello"],
        "#!/bin/sh\necho hello from slurm > out.txt\n",
    );
    let job = one(cluster.wait_final(&id, FINISH));
    assert_eq!(job.job_id, id);
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    let o = job.outcome().unwrap();
    assert_eq!((o.status, o.exit_code), (Status::Succeeded, Some(0)));
    assert_eq!(o.wrapper_exit_code(), 0);
    // The job really ran, in the directory it was submitted from.
    assert_eq!(
        std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
        "hello from slurm\n"
    );
    // What `poll` falls back to once the controller forgets the job: this cluster has no
    // slurmdbd, so `sacct` fails and the completion log (`sacct -c`) answers.
    let rows = cluster.client().poll_accounting(&id).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].job_id.as_str(), &rows[0].state),
        (id.as_str(), &JobState::Completed)
    );
}

#[test]
fn failing_script_is_failed_with_its_exit_code() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(work.path(), &[], "#!/bin/sh\necho bad >&2\nexit 3\n");
    let job = one(cluster.wait_final(&id, FINISH));
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!((job.exit_code, job.signal), (3, 0));
    let o = job.outcome().unwrap();
    assert_eq!((o.status, o.exit_code), (Status::Failed, Some(3)));
    assert_eq!(o.wrapper_exit_code(), 3);
    // The batch script's stderr went to Slurm's default output file.
    let log = std::fs::read_to_string(work.path().join(format!("slurm-{id}.out"))).unwrap();
    assert_eq!(log, "bad\n");
    let rows = cluster.client().poll_accounting(&id).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].outcome().unwrap().exit_code, Some(3));
    assert_eq!(
        (rows[0].state.clone(), rows[0].exit_code),
        (JobState::Failed, 3)
    );
}

#[test]
fn scancelled_job_is_killed() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &[],
        // `&&`: slurmd signals every process of the job; the shell can outlive a killed `sleep`
        // by a moment on a loaded machine, and must not then write end.txt.
        "#!/bin/sh\necho started > started.txt\nsleep 300 && echo not reached > end.txt\n",
    );
    cluster.wait_running(&id, FINISH);
    cluster.client().cancel(&id).unwrap();
    let job = one(cluster.wait_final(&id, FINISH));
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    let o = job.outcome().unwrap();
    assert_eq!(o.status, Status::Killed);
    assert_eq!(o.exit_code, None);
    assert!(o.reason.as_deref().unwrap().contains("CANCELLED"), "{o:?}");
    assert!(!work.path().join("end.txt").exists());
    // The completion log loses the signal but keeps the state: still killed.
    let rows = cluster.client().poll_accounting(&id).unwrap();
    assert_eq!(
        rows[0].outcome().unwrap().status,
        Status::Killed,
        "{rows:?}"
    );
}

#[test]
fn job_past_its_time_limit_is_killed_with_the_reason() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    // One minute is Slurm's smallest limit; the controller checks limits every 30 s or so.
    let id = cluster.submit(work.path(), &["--time=1"], "#!/bin/sh\nexec sleep 600\n");
    let job = one(cluster.wait_final(&id, Duration::from_secs(240)));
    assert_eq!(job.state, JobState::Timeout, "{job:?}");
    assert_eq!(job.reason.as_deref(), Some("TimeLimit"));
    let o = job.outcome().unwrap();
    assert_eq!(o.status, Status::Killed);
    assert!(o.reason.as_deref().unwrap().contains("time limit"), "{o:?}");
}

#[test]
fn array_tasks_each_get_their_outcome() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &["--array=0-2"],
        "#!/bin/sh\necho \"$SLURM_ARRAY_TASK_ID\" > \"task-$SLURM_ARRAY_TASK_ID.txt\"\nexit \"$SLURM_ARRAY_TASK_ID\"\n",
    );
    let mut jobs = cluster.wait_final(&id, FINISH);
    jobs.sort_by_key(|j| j.array_task_id.clone());
    let seen: Vec<(String, JobState, Option<i32>, Status)> = jobs
        .iter()
        .map(|j| {
            let o = j.outcome().unwrap();
            (j.display_id(), j.state.clone(), o.exit_code, o.status)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                format!("{id}_0"),
                JobState::Completed,
                Some(0),
                Status::Succeeded
            ),
            (format!("{id}_1"), JobState::Failed, Some(1), Status::Failed),
            (format!("{id}_2"), JobState::Failed, Some(2), Status::Failed),
        ]
    );
    for t in 0..3 {
        assert_eq!(
            std::fs::read_to_string(work.path().join(format!("task-{t}.txt"))).unwrap(),
            format!("{t}\n")
        );
    }
}

#[test]
fn scheduler_context_is_read_from_a_real_job_environment() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &["--job-name=ctx", "--partition=debug"],
        "#!/bin/sh\nenv -0 > env.bin\n",
    );
    let job = one(cluster.wait_final(&id, FINISH));
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    let env = parse_env0(&std::fs::read(work.path().join("env.bin")).unwrap());
    let ctx = scheduler::detect(&env).expect("a Slurm job is detected");
    assert_eq!(ctx.kubernetes, None);
    let s = ctx.slurm.unwrap();
    assert_eq!(s.job_id, id);
    assert_eq!(s.cluster.as_deref(), Some("repro-test"));
    assert_eq!(s.job_name.as_deref(), Some("ctx"));
    assert_eq!(s.partition.as_deref(), Some("debug"));
    assert_eq!(s.node_list.as_deref(), Some("localhost"));
    assert_eq!(s.node.as_deref(), Some("localhost"));
    assert_eq!(s.array_job_id, None);
    assert_eq!(s.gpus, None, "the test node has no GPUs");
    assert!(s.matches(&id));
}

#[test]
fn scheduler_context_of_an_array_task() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &["--array=3-4"],
        "#!/bin/sh\nenv -0 > \"env-$SLURM_ARRAY_TASK_ID.bin\"\n",
    );
    let jobs = cluster.wait_final(&id, FINISH);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for task in ["3", "4"] {
        let env = parse_env0(&std::fs::read(work.path().join(format!("env-{task}.bin"))).unwrap());
        let s = scheduler::detect(&env).unwrap().slurm.unwrap();
        assert_eq!(s.array_job_id.as_deref(), Some(id.as_str()));
        assert_eq!(s.array_task_id.as_deref(), Some(task));
        assert_eq!(s.display_id(), format!("{id}_{task}"));
        assert!(s.matches(&id), "the array id matches each task");
        // The raw id of each task is the one squeue reports for it.
        let raw = jobs
            .iter()
            .find(|j| j.array_task_id.as_deref() == Some(task))
            .unwrap();
        assert_eq!(s.job_id, raw.job_id);
    }
}

#[test]
fn unknown_job_is_a_clear_error() {
    let cluster = slurm::shared();
    let err = cluster.client().poll("999999").unwrap_err();
    assert!(
        matches!(err, repro::slurm::SlurmError::UnknownJob { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("999999"), "{err}");
}

#[test]
fn database_on_sshfs_is_a_network_filesystem_and_refused_unless_allowed() {
    use repro::store::filesystem::{self, Journal};
    let sshfs = slurm::Sshfs::mount();
    // The database does not exist yet: its nearest existing directory is examined.
    let db = sshfs.mnt().join("db/repro.db");
    let (examined, fs) = filesystem::probe(&db).unwrap();
    assert_eq!(examined, sshfs.mnt());
    assert_eq!(fs.name, "fuse.sshfs");
    assert!(fs.network, "{fs:?}");
    let err = filesystem::journal(&db, &fs, false).unwrap_err();
    assert!(err.to_string().contains("fuse.sshfs"), "{err}");
    assert_eq!(
        filesystem::journal(&db, &fs, true).unwrap(),
        Journal::Rollback
    );
    // The same directory seen from the exporting side is local.
    let (_, local) = filesystem::probe(&sshfs.export()).unwrap();
    assert!(!local.network, "{local:?}");
    assert_eq!(
        filesystem::journal(&db, &local, false).unwrap(),
        Journal::Wal
    );
}

#[test]
fn database_on_fuse_overlayfs_is_local() {
    use repro::store::filesystem;
    crate::support::require_tool("fuse-overlayfs");
    let d = tempfile::tempdir().unwrap();
    for sub in ["l", "u", "w", "m"] {
        std::fs::create_dir(d.path().join(sub)).unwrap();
    }
    let p = |s: &str| d.path().join(s).display().to_string();
    let status = std::process::Command::new("fuse-overlayfs")
        .arg("-o")
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            p("l"),
            p("u"),
            p("w")
        ))
        .arg(d.path().join("m"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let probed = filesystem::probe(&d.path().join("m/repro.db"));
    let _ = std::process::Command::new("fusermount")
        .arg("-u")
        .arg(d.path().join("m"))
        .status();
    let (_, fs) = probed.unwrap();
    assert_eq!(fs.name, "fuse.fuse-overlayfs");
    assert!(!fs.network, "{fs:?}");
}

#[test]
fn rejected_submission_names_sbatch_and_its_complaint() {
    let cluster = slurm::shared();
    let work = tempfile::tempdir().unwrap();
    let err = cluster
        .client()
        .submit(&repro::slurm::Submit {
            script: "#!/bin/sh\ntrue\n".into(),
            sbatch_args: vec!["--partition=no-such-partition".into()],
            workdir: Some(work.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, repro::slurm::SlurmError::Command { .. }),
        "{err:?}"
    );
    assert!(msg.contains("sbatch") && msg.contains("partition"), "{msg}");
}

// ---- repro itself inside and against the cluster ----

use crate::support::engine::Podman;
use crate::support::registry::Registry;
use crate::support::TestEnv;

const REPRO: &str = env!("CARGO_BIN_EXE_repro");

/// A batch script that runs `repro ARGS` with the test's database (a local disk).
fn repro_job(env: &TestEnv, args: &str) -> String {
    format!(
        "#!/bin/sh\nexport HOME='{}' REPRO_DB='{}'\nexec '{REPRO}' {args}\n",
        env.home().display(),
        env.db().display()
    )
}

/// `repro ls --json ARGS` run ids.
fn ls_ids(env: &TestEnv, args: &[&str]) -> Vec<String> {
    let out = env
        .repro()
        .args(["ls", "--json"])
        .args(args)
        .output()
        .unwrap();
    crate::support::assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn repro_run_inside_a_job_records_the_job() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &["--job-name=ctx", "--partition=debug"],
        &repro_job(&env, "run -q --host -- true"),
    );
    let job = one(cluster.wait_final(&id, FINISH));
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    let runs = env.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let s = &runs[0]["scheduler"];
    assert_eq!(s["kind"], "slurm", "{s}");
    assert_eq!(s["job_id"], id.as_str());
    assert_eq!(s["cluster"], "repro-test");
    assert_eq!(s["partition"], "debug");
    assert_eq!(s["node_list"], "localhost");
    assert_eq!(s["job_name"], "ctx");
    assert_eq!(s["array_task_id"], serde_json::Value::Null);
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(ls_ids(&env, &["--job", &id]), vec![run_id.clone()]);
    assert!(ls_ids(&env, &["--job", "999999"]).is_empty());
    let (code, text, _) = env.run_in(env.root(), &["show", &run_id]);
    assert_eq!(code, 0);
    assert!(
        text.contains(&format!(
            "slurm job    {id}: cluster repro-test, name ctx, partition debug"
        )),
        "{text}"
    );
    // A run outside any job has none.
    let (code, _, err) = env.run_in(env.root(), &["run", "-q", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        env.show_json(&env.last_id())["scheduler"],
        serde_json::Value::Null
    );
    // diff shows the scheduler fields that differ.
    let (_, diff, _) = env.run_in(env.root(), &["diff", &run_id, &env.last_id()]);
    assert!(diff.contains("scheduler.job_id"), "{diff}");
    // Bad input: a clear usage error.
    let (code, _, err) = env.run_in(env.root(), &["ls", "--job", "abc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a Slurm job id"), "{err}");
}

#[test]
fn repro_run_in_an_array_records_each_task_and_ls_job_finds_them() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        work.path(),
        &["--array=0-1"],
        &repro_job(
            &env,
            "run -q --host --name \"task-$SLURM_ARRAY_TASK_ID\" -- true",
        ),
    );
    let jobs = cluster.wait_final(&id, FINISH);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Completed),
        "{jobs:?}"
    );
    assert_eq!(ls_ids(&env, &["--job", &id]).len(), 2);
    let one_task = ls_ids(&env, &["--job", &format!("{id}_1")]);
    assert_eq!(one_task.len(), 1);
    let s = env.show_json(&one_task[0]);
    assert_eq!(s["name"], "task-1");
    assert_eq!(s["scheduler"]["array_job_id"], id.as_str());
    assert_eq!(s["scheduler"]["array_task_id"], "1");
    // A task's raw id finds it too — except the task whose raw id is the array id, which
    // names the whole array (as `SlurmContext::matches` says).
    let raw = s["scheduler"]["job_id"].as_str().unwrap().to_string();
    let want = if raw == id { 2 } else { 1 };
    assert_eq!(ls_ids(&env, &["--job", &raw]).len(), want);
    let zero = ls_ids(&env, &["--job", &format!("{id}_0")]);
    let raw0 = env.show_json(&zero[0])["scheduler"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(raw != id || raw0 != id, "one task has its own raw id");
    let (task, raw) = if raw != id {
        (&one_task, raw)
    } else {
        (&zero, raw0)
    };
    assert_eq!(&ls_ids(&env, &["--job", &raw]), task);
    // Export and import carry the context.
    let out = env.repro().args(["export"]).output().unwrap();
    crate::support::assert_ok(&out);
    let other = TestEnv::new();
    let mut imp = other.repro();
    imp.args(["import", "-"]).write_stdin(out.stdout);
    crate::support::assert_ok(&imp.output().unwrap());
    assert_eq!(other.show_json(&one_task[0])["scheduler"], s["scheduler"]);
    assert_eq!(ls_ids(&other, &["--job", &id]).len(), 2);
}

/// Records `sh -c SCRIPT` (with `--output out.txt`) in a fresh git repository.
fn record(env: &TestEnv, script: &str) -> String {
    let repo = env.git_repo("src");
    let (code, _, err) = env.run_in(
        &repo,
        &["run", "-q", "--output", "out.txt", "--", "sh", "-c", script],
    );
    assert!(code == 0 || code == 3, "{err}");
    env.last_id()
}

fn rerun_on_slurm(env: &TestEnv, cluster: &slurm::Slurm, args: &[&str]) -> (i32, String, String) {
    let out = env
        .repro()
        .env("SLURM_CONF", cluster.conf())
        .current_dir(env.root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rerun_on_slurm_waits_records_the_job_and_checks_outputs() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let orig = record(&env, "cat README > out.txt");
    let dir = env.root().join("job");
    let (code, out, err) = rerun_on_slurm(
        &env,
        cluster,
        &[
            "rerun",
            &orig,
            "--on",
            "slurm",
            "--wait",
            "--check",
            "--checkout",
            dir.to_str().unwrap(),
            "--sbatch-arg=--job-name=rerun-ok",
        ],
    );
    assert_eq!(code, 0, "{err}\n{}", cluster.logs());
    let job_id = out.trim().to_string();
    assert!(job_id.bytes().all(|b| b.is_ascii_digit()), "{out}");
    assert!(err.contains("output out.txt: match"), "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], orig.as_str());
    assert_eq!(new["status"], "succeeded");
    assert_eq!(new["exit_code"], 0);
    assert_eq!(new["scheduler"]["kind"], "slurm");
    assert_eq!(new["scheduler"]["job_id"], job_id.as_str());
    assert_eq!(
        new["outputs"][0]["sha256"],
        env.show_json(&orig)["outputs"][0]["sha256"]
    );
    // The job ran the script written into the job directory, under the given name.
    assert!(dir.join("rerun.sbatch").is_file());
    assert!(dir.join("code/out.txt").is_file());
    let acct = cluster
        .command("sacct")
        .args([
            "-c",
            "--noheader",
            "--parsable2",
            "--format=JobID,JobName",
            "-j",
            &job_id,
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&acct.stdout).contains("rerun-ok"),
        "{}",
        String::from_utf8_lossy(&acct.stdout)
    );
}

/// A Slurm re-run reports metrics through REPRO_METRICS like a local one; `--check` compares
/// them with `--rtol/--atol`, after `--wait` and after `--poll --checkout DIR`.
#[test]
fn rerun_on_slurm_checks_metrics_after_wait_and_poll() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let count = env.root().join("count");
    let orig = record(
        &env,
        &format!(
            r#"n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > '{c}'; echo x > out.txt
printf '{{"step": 3, "acc": 0.90%s, "loss": 0.25}}\n' "$n" >> "$REPRO_METRICS""#,
            c = count.display()
        ),
    );
    assert_eq!(env.show_json(&orig)["metrics"]["acc"]["last"], 0.901);
    // The original on a real MLflow server, so the polled re-run can be pushed linked to it.
    let srv = crate::support::mlflow::server();
    let exp = format!("slurm-rerun-{}", std::process::id());
    let with_mlflow = |args: &[&str]| {
        crate::rerun::repro_with_mlflow(
            &env,
            &srv.uri,
            &exp,
            &[("SLURM_CONF", cluster.conf().as_os_str())],
            args,
        )
    };
    let (code, err) = with_mlflow(&["mlflow", "push"]);
    assert_eq!(code, 0, "{err}");
    let pushed_orig = srv.run_by_repro_id(&exp, &orig).expect("original pushed");
    let dir = env.root().join("job1");
    let (code, _, err) = rerun_on_slurm(
        &env,
        cluster,
        &[
            "rerun",
            &orig,
            "--on",
            "slurm",
            "--wait",
            "--check",
            "--checkout",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}\n{}", cluster.logs());
    assert!(err.contains("output out.txt: match"), "{err}");
    assert!(
        err.contains("metric acc: OUT OF TOLERANCE: now 0.902, was 0.901"),
        "{err}"
    );
    let new = env.show_json(&env.last_id());
    assert_eq!(new["status"], "succeeded");
    assert_eq!(new["metrics"]["acc"]["last"], 0.902);
    assert_eq!(new["metrics"]["acc"]["step"], 3);
    assert!(!dir.join("metrics.jsonl").exists(), "stored, then removed");

    // Submitted without --wait, then polled with the job directory: compared within atol.
    let dir = env.root().join("job2");
    let (code, out, err) = rerun_on_slurm(
        &env,
        cluster,
        &[
            "rerun",
            &orig,
            "--on",
            "slurm",
            "--checkout",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let job_id = out.trim().to_string();
    let new_id = env.last_id();
    cluster.wait_final(&job_id, FINISH);
    let (code, err) = with_mlflow(&[
        "rerun",
        &new_id,
        "--poll",
        "--wait",
        "--check",
        "--atol",
        "0.01",
        "--checkout",
        dir.to_str().unwrap(),
        "--mlflow",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("metrics: 2 of 2 within tolerance (rtol 0, atol 0.01)"),
        "{err}"
    );
    assert_eq!(env.show_json(&new_id)["metrics"]["acc"]["last"], 0.903);
    // Pushed once its end was recorded, under its original.
    let pushed = srv.run_by_repro_id(&exp, &new_id).expect("re-run pushed");
    assert_eq!(pushed["info"]["status"], "FINISHED");
    assert_eq!(
        crate::support::mlflow::kv(&pushed["data"]["tags"])
            .get("mlflow.parentRunId")
            .map(String::as_str),
        pushed_orig["info"]["run_id"].as_str()
    );
    let acc = pushed["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "acc")
        .cloned();
    assert_eq!(acc.map(|m| m["value"].clone()), Some(0.903.into()));
}

#[test]
fn rerun_on_slurm_failure_carries_the_exit_code() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let orig = record(&env, "echo x > out.txt; exit 3");
    let (code, out, err) =
        rerun_on_slurm(&env, cluster, &["rerun", &orig, "--on", "slurm", "--wait"]);
    assert_eq!(code, 3, "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["status"], "failed");
    assert_eq!(new["exit_code"], 3);
    assert_eq!(new["scheduler"]["job_id"], out.trim());
    assert!(
        new["notes"][0].as_str().unwrap().contains("exited with 3"),
        "{new}"
    );
}

#[test]
fn rerun_on_slurm_without_wait_stays_running_until_polled_and_scancel_is_killed() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let marker = env.root().join("fast");
    std::fs::write(&marker, "").unwrap();
    let orig = record(
        &env,
        &format!(
            "echo x > out.txt; test -f '{}' || sleep 300",
            marker.display()
        ),
    );
    std::fs::remove_file(&marker).unwrap();
    let (code, out, err) = rerun_on_slurm(&env, cluster, &["rerun", &orig, "--on", "slurm"]);
    assert_eq!(code, 0, "{err}");
    let job_id = out.trim().to_string();
    let new_id = env.last_id();
    assert_ne!(new_id, orig);
    let new = env.show_json(&new_id);
    assert_eq!(
        new["status"], "running",
        "no wrapper process: never taken for lost"
    );
    assert_eq!(ls_ids(&env, &["--job", &job_id]), vec![new_id.clone()]);
    cluster.wait_running(&job_id, FINISH);
    // Polled while it runs: still running.
    let (code, out, err) = rerun_on_slurm(&env, cluster, &["rerun", &new_id, "--poll"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RUNNING"), "{out}");
    assert_eq!(env.show_json(&new_id)["status"], "running");
    cluster.client().cancel(&job_id).unwrap();
    let (code, _, err) = rerun_on_slurm(&env, cluster, &["rerun", &new_id, "--poll", "--wait"]);
    assert_ne!(code, 0, "{err}");
    let new = env.show_json(&new_id);
    assert_eq!(new["status"], "killed", "{new}");
    assert!(
        new["notes"][0].as_str().unwrap().contains("CANCELLED"),
        "{new}"
    );
    // Polling the original (not a Slurm re-run) is a clear error.
    let (code, _, err) = rerun_on_slurm(&env, cluster, &["rerun", &orig, "--poll"]);
    assert_eq!(code, 1);
    assert!(err.contains("not submitted to Slurm"), "{err}");
}

#[test]
fn rerun_on_slurm_past_its_time_limit_is_killed() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let marker = env.root().join("fast");
    std::fs::write(&marker, "").unwrap();
    let orig = record(
        &env,
        &format!(
            "echo x > out.txt; test -f '{}' || sleep 600",
            marker.display()
        ),
    );
    std::fs::remove_file(&marker).unwrap();
    let (code, _, err) = rerun_on_slurm(
        &env,
        cluster,
        &[
            "rerun",
            &orig,
            "--on",
            "slurm",
            "--wait",
            "--sbatch-arg",
            "--time=1",
        ],
    );
    assert_ne!(code, 0, "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["status"], "killed", "{new}");
    assert!(
        new["notes"][0].as_str().unwrap().contains("TIMEOUT"),
        "{new}"
    );
}

#[test]
fn rerun_on_slurm_runs_the_pinned_image_with_podman() {
    let cluster = slurm::shared();
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
            "cat README > out.txt; echo done; if [ -n \"$REPRO_PARAMS\" ]; then \
             echo \"{\\\"token\\\": \\\"$(cat /proc/sys/kernel/random/uuid)\\\", \\\"wd\\\": \\\"$REPRO_WORKDIR\\\"}\" >> \"$REPRO_PARAMS\"; fi",
        ])
        .output()
        .unwrap();
    crate::support::assert_ok(&out);
    let orig = env.last_id();
    let token = env.show_json(&orig)["params"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", env.show_json(&orig)))
        .to_string();
    // The tag moves; the job must run the recorded digest.
    registry.push_busybox("team/trainer", "5.0");
    let dir = env.root().join("job");
    let out = env
        .repro()
        .env("SLURM_CONF", cluster.conf())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .current_dir(env.root())
        .args([
            "rerun",
            &orig,
            "--on",
            "slurm",
            "--runtime",
            "podman",
            "--wait",
            "--check",
        ])
        .args([
            "--insecure-registry",
            &registry.addr(),
            "--checkout",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let job_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{err}\n{log}");
    assert!(err.contains("output out.txt: match"), "{err}");
    assert!(log.contains("done\n"), "{log}");
    let script = std::fs::read_to_string(dir.join("rerun.sbatch")).unwrap();
    assert!(script.contains(&digest), "the script pulls by digest");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["status"], "succeeded");
    assert_eq!(new["image"]["digest"], digest.as_str());
    assert_eq!(new["exec"]["engine"], "podman");
    assert_eq!(new["scheduler"]["job_id"], job_id.as_str());
    // The job in the container logged its params through the mounted REPRO_PARAMS.
    assert_ne!(new["params"]["token"], token.as_str(), "{new}");
    assert_eq!(new["params"]["wd"], env.show_json(&orig)["params"]["wd"]);
    assert!(
        new["params"]["wd"].as_str().unwrap().starts_with('/'),
        "{new}"
    );
}

#[test]
fn repro_refuses_a_database_on_sshfs_unless_allowed() {
    let sshfs = slurm::Sshfs::mount();
    let env = TestEnv::new();
    let db = sshfs.mnt().join("db/repro.db");
    let out = env
        .repro()
        .env("REPRO_DB", &db)
        .args(["run", "-q", "--host", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("network filesystem (fuse.sshfs)"), "{err}");
    assert!(err.contains("REPRO_ALLOW_NETWORK_FS=1"), "{err}");
    assert!(!sshfs.export().join("db").exists(), "nothing created");
    // doctor says the same.
    let out = env
        .repro()
        .env("REPRO_DB", &db)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fs = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "database filesystem")
        .unwrap()
        .clone();
    assert_eq!(fs["status"], "fail", "{fs}");
    assert!(
        fs["detail"]
            .as_str()
            .unwrap()
            .contains("fuse.sshfs (network"),
        "{fs}"
    );
    // Allowed: recorded with a rollback journal.
    let out = env
        .repro()
        .env("REPRO_DB", &db)
        .env("REPRO_ALLOW_NETWORK_FS", "1")
        .args(["run", "-q", "--host", "--", "true"])
        .output()
        .unwrap();
    crate::support::assert_ok(&out);
    let conn = rusqlite::Connection::open(sshfs.export().join("db/repro.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    assert!(!sshfs.export().join("db/repro.db-wal").exists());
    let out = env
        .repro()
        .env("REPRO_DB", &db)
        .env("REPRO_ALLOW_NETWORK_FS", "1")
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fs = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "database filesystem")
        .unwrap()
        .clone();
    assert_eq!(fs["status"], "warn", "{fs}");
    assert!(
        fs["detail"].as_str().unwrap().contains("rollback journal"),
        "{fs}"
    );
}

#[test]
fn repro_run_in_a_pod_records_the_downward_api_variables() {
    let env = TestEnv::new();
    let out = env
        .repro()
        .env_remove("SLURM_JOB_ID")
        .env_remove("SLURM_JOBID")
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("HOSTNAME", "train-abc12")
        .env("POD_NAMESPACE", "ml")
        .env("NODE_NAME", "gpu-node-3")
        .env("JOB_COMPLETION_INDEX", "2")
        .args(["run", "-q", "--host", "--", "true"])
        .output()
        .unwrap();
    crate::support::assert_ok(&out);
    let id = env.last_id();
    let v = &env.show_json(&id)["scheduler"];
    assert_eq!(v["kind"], "kubernetes", "{v}");
    assert_eq!(v["pod"], "train-abc12");
    assert_eq!(v["namespace"], "ml");
    assert_eq!(v["node"], "gpu-node-3");
    assert_eq!(v["completion_index"], "2");
    assert_eq!(v["pod_uid"], serde_json::Value::Null);
    let (_, text, _) = env.run_in(env.root(), &["show", &id]);
    assert!(
        text.contains("k8s pod      ml/train-abc12 on node gpu-node-3, index 2"),
        "{text}"
    );
}

/// Issue 22 item 6: a job Slurm requeues (here `scontrol requeue` while it runs, as after a node
/// failure) starts its script again; the second attempt checks out afresh instead of dying on
/// the first one's checkout, the re-run is recorded with the last attempt's outcome and a note
/// saying it was requeued, both attempts' log lines are kept, and only the last attempt's
/// metrics are recorded.
#[test]
fn rerun_on_slurm_survives_a_requeue_and_records_the_restart() {
    use std::process::Command;
    use std::time::Instant;
    crate::support::require_tool("shellcheck");
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let fast = env.root().join("fast");
    let started = env.root().join("started");
    std::fs::write(&fast, "").unwrap();
    let orig = record(
        &env,
        &format!(
            r#"echo x > out.txt
if test -f '{fast}'; then echo fast
elif test -f '{started}'; then echo "second attempt finishes"
else touch '{started}'; printf '{{"step": 1, "acc": 0.1}}\n' >> "$REPRO_METRICS"; echo "first attempt sleeps"; exec sleep 300
fi
printf '{{"step": 1, "acc": 0.5}}\n' >> "$REPRO_METRICS""#,
            fast = fast.display(),
            started = started.display()
        ),
    );
    std::fs::remove_file(&fast).unwrap();
    let dir = env.root().join("job");
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "rerun",
        &orig,
        "--on",
        "slurm",
        "--wait",
        "--check",
        "--checkout",
        dir_arg,
    ];
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| rerun_on_slurm(&env, cluster, &args));
        // The first attempt is in its sleep: requeue the job, as Slurm does after a node failure.
        let deadline = Instant::now() + FINISH;
        while !started.exists() {
            assert!(
                Instant::now() < deadline,
                "the first attempt never started\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let new_id = env.last_id();
        assert_ne!(new_id, orig);
        let job_id = env.show_json(&new_id)["scheduler"]["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        let scontrol = |args: &[&str]| {
            let out = cluster.command("scontrol").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "scontrol {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        scontrol(&["requeue", &job_id]);
        // A requeued job is eligible again only ~2 minutes later: once it is back to PENDING
        // (the first attempt has been killed), let it start now.
        let deadline = Instant::now() + FINISH;
        loop {
            let out = cluster
                .command("squeue")
                .args([
                    "--noheader",
                    "--states=all",
                    "--format=%T %r",
                    "--jobs",
                    &job_id,
                ])
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "PENDING BeginTime" {
                scontrol(&["update", &format!("jobid={job_id}"), "StartTime=now"]);
            } else if !state.starts_with("PENDING") && !state.starts_with("COMPLETING") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} did not start again: {state}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let (code, out, err) = waiting.join().unwrap();
        let log_file = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.path())
            .expect("Slurm's log in the job directory");
        let log = std::fs::read_to_string(&log_file).unwrap();
        assert_eq!(code, 0, "{err}\n{log}\n{}", cluster.logs());
        assert_eq!(out.trim(), job_id);
        assert!(err.contains("output out.txt: match"), "{err}");
        assert!(err.contains("metrics: 1 of 1 within tolerance"), "{err}");
        assert!(
            err.contains(&format!("Slurm requeued job {job_id} once")),
            "{err}"
        );

        // The record: the last attempt's outcome and the job's real exit code, with the restart.
        let new = env.show_json(&new_id);
        assert_eq!(new["status"], "succeeded", "{new}");
        assert_eq!(new["exit_code"], 0);
        assert_eq!(new["scheduler"]["job_id"], job_id.as_str());
        let notes: Vec<&str> = new["notes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .collect();
        assert!(
            notes.iter().any(
                |n| n.starts_with(&format!("Slurm requeued job {job_id} once"))
                    && n.contains("attempt 2")
            ),
            "{new}"
        );
        let (code, text, _) = env.run_in(env.root(), &["show", &new_id]);
        assert_eq!(code, 0);
        assert!(text.contains("Slurm requeued job"), "{text}");
        // Only the last attempt's metrics: the first one's point was set aside with its checkout.
        assert_eq!(new["metrics"]["acc"]["count"], 1, "{new}");
        assert_eq!(new["metrics"]["acc"]["min"], 0.5, "{new}");
        assert_eq!(
            std::fs::read_to_string(dir.join("metrics.jsonl.attempt-1")).unwrap(),
            "{\"step\": 1, \"acc\": 0.1}\n"
        );

        // Both attempts' log lines are kept, each under its attempt line.
        let first = log
            .find("attempt 1 (SLURM_RESTART_COUNT=0)")
            .unwrap_or_else(|| panic!("{log}"));
        let sleeps = log
            .find("\nfirst attempt sleeps\n")
            .unwrap_or_else(|| panic!("{log}"));
        let second = log
            .find("attempt 2 (SLURM_RESTART_COUNT=1)")
            .unwrap_or_else(|| panic!("{log}"));
        let finishes = log
            .find("\nsecond attempt finishes\n")
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            first < sleeps && sleeps < second && second < finishes,
            "{log}"
        );
        assert!(log.contains("DUE TO JOB REQUEUE"), "{log}");
        // The first attempt's checkout is kept beside the fresh one.
        assert!(dir.join("code.attempt-1/out.txt").is_file());
        assert!(dir.join("code/out.txt").is_file());

        // The script is shellcheck-clean.
        let sc = Command::new("shellcheck")
            .arg(dir.join("rerun.sbatch"))
            .output()
            .unwrap();
        assert!(
            sc.status.success(),
            "shellcheck: {}",
            String::from_utf8_lossy(&sc.stdout)
        );
    });
}

/// A Slurm re-run gets the channels `repro run` gives a job: the params it logs through
/// `REPRO_PARAMS` are the re-run's own (not the original's), an output it declares through
/// `REPRO_OUTPUTS` is hashed and recorded, and `REPRO_WORKDIR` is its working directory.
#[test]
fn rerun_on_slurm_records_the_params_and_outputs_the_job_sends() {
    let cluster = slurm::shared();
    let env = TestEnv::new();
    let orig = record(
        &env,
        r#"cat README > out.txt
printf '%s' "${REPRO_WORKDIR:-unset}" > wd.txt
if [ -n "${REPRO_PARAMS:-}" ]; then
  printf '{"attempt": "%s"}\n' "$$" >> "$REPRO_PARAMS"
  echo kept > "extra-$$.bin"
  printf '{"path": "extra-%s.bin"}\n' "$$" >> "$REPRO_OUTPUTS"
fi"#,
    );
    let first = env.show_json(&orig);
    let attempt = first["params"]["attempt"].as_str().unwrap().to_string();
    let dir = env.root().join("job");
    let (code, _, err) = rerun_on_slurm(
        &env,
        cluster,
        &[
            "rerun",
            &orig,
            "--on",
            "slurm",
            "--wait",
            "--checkout",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}\n{}", cluster.logs());
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], orig.as_str());
    let again = new["params"]["attempt"].as_str().unwrap();
    assert_ne!(
        again, attempt,
        "the re-run's job logged its own value: {new}"
    );
    assert!(!err.contains("wins over"), "{err}");
    let declared = format!("extra-{again}.bin");
    let out = new["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == declared.as_str())
        .unwrap_or_else(|| panic!("no output {declared}: {new}"));
    assert_eq!(
        out["sha256"],
        crate::support::registry::sha256_digest(b"kept\n").trim_start_matches("sha256:")
    );
    let code_dir = dir.join("code").canonicalize().unwrap();
    assert_eq!(
        std::fs::read_to_string(code_dir.join("wd.txt")).unwrap(),
        code_dir.display().to_string()
    );
    // The channel files were read and removed.
    assert!(!dir.join("channels").exists());
}
