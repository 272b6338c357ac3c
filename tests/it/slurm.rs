//! A real Slurm cluster (one node on 127.0.0.1): jobs submitted with `repro::ops::slurm`, their
//! final states mapped to repro outcomes, and the scheduler context read from inside a job.

use std::collections::BTreeMap;
use std::time::Duration;

use repro::capture::scheduler;
use repro::ops::slurm::{JobState, JobStatus};
use repro::record::Status;

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
        "#!/bin/sh\necho started > started.txt\nsleep 300\necho not reached > end.txt\n",
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
    let id = cluster.submit(
        work.path(),
        &["--time=1"],
        "#!/bin/sh\nsleep 600\necho not reached > end.txt\n",
    );
    let job = one(cluster.wait_final(&id, Duration::from_secs(240)));
    assert_eq!(job.state, JobState::Timeout, "{job:?}");
    assert_eq!(job.reason.as_deref(), Some("TimeLimit"));
    let o = job.outcome().unwrap();
    assert_eq!(o.status, Status::Killed);
    assert!(o.reason.as_deref().unwrap().contains("time limit"), "{o:?}");
    assert!(!work.path().join("end.txt").exists());
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
        matches!(err, repro::ops::slurm::SlurmError::UnknownJob { .. }),
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
        .submit(&repro::ops::slurm::Submit {
            script: "#!/bin/sh\ntrue\n".into(),
            sbatch_args: vec!["--partition=no-such-partition".into()],
            workdir: Some(work.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, repro::ops::slurm::SlurmError::Command { .. }),
        "{err:?}"
    );
    assert!(msg.contains("sbatch") && msg.contains("partition"), "{msg}");
}
