use super::*;
use crate::record::*;

pub(crate) fn sample_run(id: &str) -> Run {
    Run {
        schema_version: SCHEMA_VERSION,
        id: id.into(),
        name: Some("baseline".into()),
        status: Status::Running,
        exit_code: None,
        signal: None,
        started_at: "2026-11-26T14:00:00.000Z".into(),
        ended_at: None,
        duration_ms: None,
        command: vec![Arg::from("python"), Arg(vec![0xff]), Arg::from("")],
        cwd: "experiments".into(),
        exec: Exec {
            mode: ExecMode::Container,
            engine: Some("podman".into()),
            workdir: Some("/workspace".into()),
            engine_args: vec!["--network=none".into()],
            gpus: None,
            registry: None,
        },
        image: Some(Image {
            reference: "127.0.0.1:5000/team/app:1".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            index_digest: None,
            platform: Some("linux/amd64".into()),
            resolved_by: ResolvedBy::Registry,
            labels: [(
                "org.opencontainers.image.revision".to_string(),
                "abc".to_string(),
            )]
            .into_iter()
            .collect(),
        }),
        code: Some(Code {
            repo_root: "/src/repo".into(),
            remote: Some("https://example.com/r.git".into()),
            commit: Some("b".repeat(40)),
            branch: Some("main".into()),
            dirty: true,
            untracked: vec!["new.txt".into()],
            patch_sha256: Some("c".repeat(64)),
            patch: Some(Arg::from("diff --git a/x b/x\n")),
        }),
        datasets: vec![Dataset {
            name: "imagenet".into(),
            kind: DatasetKind::Uri,
            uri: Some("s3://corp/imagenet".into()),
            version: Some("v3".into()),
            digest: None,
            files: None,
            bytes: None,
        }],
        outputs: vec![],
        params_from_argv: Vec::new(),
        params_from_job: Vec::new(),
        params: [("lr".to_string(), "0.1".to_string())]
            .into_iter()
            .collect(),
        tags: vec!["nightly".into()],
        notes: vec![],
        env: [("SEED".to_string(), "1".to_string())]
            .into_iter()
            .collect(),
        host: "h".into(),
        user: "u".into(),
        platform: "linux/amd64".into(),
        pid: Some(42),
        boot_id: Some("boot".into()),
        pid_start: Some(7),
        pid_ns: None,
        rerun_of: None,
        scheduler: None,
    }
}

#[test]
fn insert_get_round_trip_and_finish_once() {
    let mut s = Store::open_in_memory().unwrap();
    let run = sample_run("01jd3k0000000000000000000a");
    s.insert_run(&run).unwrap();
    assert_eq!(s.get_run(&run.id).unwrap(), run);
    let fin = Finish {
        status: Status::Failed,
        exit_code: Some(3),
        signal: None,
        ended_at: "2026-11-26T14:00:01.000Z".into(),
        duration_ms: 1000,
        outputs: vec![Output::hashed("m.pt".into(), Some("d".repeat(64)), Some(1))],
        output_files: vec![],
    };
    assert_eq!(s.finish(&run, &fin).unwrap(), Finished::Recorded);
    let got = s.get_run(&run.id).unwrap();
    assert_eq!(got.status, Status::Failed);
    assert_eq!(got.exit_code, Some(3));
    assert_eq!(got.outputs.len(), 1);
    // Finished provenance is never rewritten.
    let again = Finish {
        status: Status::Succeeded,
        exit_code: Some(0),
        ..fin
    };
    assert_eq!(s.finish(&run, &again).unwrap(), Finished::AlreadyFinished);
    assert_eq!(s.get_run(&run.id).unwrap().exit_code, Some(3));
    assert!(matches!(s.insert_run(&run), Err(StoreError::Duplicate(_))));
}

#[test]
fn prefixes_resolve_uniquely_or_list_candidates() {
    let mut s = Store::open_in_memory().unwrap();
    s.insert_run(&sample_run("01jd3k0000000000000000000a"))
        .unwrap();
    s.insert_run(&sample_run("01jd3k0000000000000000000b"))
        .unwrap();
    s.insert_run(&sample_run("01jd9a0000000000000000000c"))
        .unwrap();
    assert_eq!(s.resolve_id("01JD9").unwrap(), "01jd9a0000000000000000000c");
    match s.resolve_id("01jd3k") {
        Err(StoreError::AmbiguousRun { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.resolve_id("01jz"),
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        s.resolve_id("not-an-id"),
        Err(StoreError::BadId(_))
    ));
}

#[test]
fn filters_combine() {
    let mut s = Store::open_in_memory().unwrap();
    let mut a = sample_run("01jd3k0000000000000000000a");
    a.status = Status::Failed;
    s.insert_run(&a).unwrap();
    let mut b = sample_run("01jd3k0000000000000000000b");
    b.image = None;
    s.insert_run(&b).unwrap();
    let f = RunFilter {
        image: Some("team/app".into()),
        ..Default::default()
    };
    assert_eq!(s.list_runs(&f).unwrap().len(), 1);
    let f = RunFilter {
        digest: Some("aaaa".into()),
        statuses: vec![Status::Failed],
        ..Default::default()
    };
    assert_eq!(s.list_runs(&f).unwrap()[0].id, a.id);
    let f = RunFilter {
        dataset: Some(("imagenet".into(), Some("v3".into()))),
        ..Default::default()
    };
    let ids: Vec<_> = s.list_runs(&f).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![b.id.clone(), a.id.clone()]);
    let f = RunFilter {
        limit: Some(1),
        oldest_first: true,
        ..Default::default()
    };
    assert_eq!(s.list_runs(&f).unwrap()[0].id, a.id);
}

#[test]
fn newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    drop(Store::open(&path).unwrap());
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 999").unwrap();
    }
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::TooNew { found: 999, .. })
    ));
    let c = Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 999);
}

#[test]
fn database_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/r.db");
    drop(Store::open(&path).unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);
}

#[test]
fn a_large_wal_is_truncated_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let wal = dir.path().join("r.db-wal");
    {
        let mut s = Store::open(&path).unwrap();
        s.insert_run(&sample_run("01jd3k0000000000000000000a"))
            .unwrap();
    }
    // A small WAL is left for the next process (no checkpoint, no fsync at close).
    let small = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(small > 0 && small <= WAL_TRUNCATE_BYTES, "{small}");
    {
        let mut s = Store::open(&path).unwrap();
        let mut run = sample_run("01jd3k0000000000000000000b");
        run.notes = vec!["x".repeat(2 * WAL_TRUNCATE_BYTES as usize)];
        s.insert_run(&run).unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() > WAL_TRUNCATE_BYTES);
    }
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.get_run("01jd3k0000000000000000000b").unwrap().notes[0].len(),
        2 << 20
    );
}

#[test]
fn error_status_is_stored_filtered_and_exported() {
    let mut s = Store::open_in_memory().unwrap();
    let mut run = sample_run("01jd3k0000000000000000000a");
    run.status = Status::Error;
    run.exit_code = Some(125);
    run.code.as_mut().unwrap().patch = None;
    s.insert_run(&run).unwrap();
    let other = sample_run("01jd3k0000000000000000000b");
    s.insert_run(&other).unwrap();
    assert_eq!(s.get_run(&run.id).unwrap().status, Status::Error);
    let only = s
        .list_runs(&RunFilter {
            statuses: vec![Status::Error],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].id, run.id);
    let line = serde_json::to_string(&only[0]).unwrap();
    assert!(line.contains(r#""status":"error""#), "{line}");
    let mut t = Store::open_in_memory().unwrap();
    t.import_lines(format!("{line}\n").as_bytes(), "x").unwrap();
    assert_eq!(t.get_run(&run.id).unwrap().status, Status::Error);
}

/// Several processes opening a database nobody has created yet (the tasks of a Slurm array)
/// all get it: the switch to WAL waits for the others instead of failing "database is locked".
#[test]
fn concurrent_first_opens_of_a_new_database_all_succeed() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&path).map(|_| ()).map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }
}
