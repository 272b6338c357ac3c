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

/// Runs for the page tests, newest last: statuses of every kind (`running` ones elsewhere, and
/// here with their wrapper gone, which read `lost`), ties in duration, name and metric values,
/// runs without the metric and one with a NaN.
pub(crate) fn paged_store(n: usize) -> Store {
    use crate::record::metrics::MetricPoint;
    let mut s = Store::open_in_memory().unwrap();
    let mut metrics = Vec::new();
    for i in 0..n {
        let mut r = sample_run(&format!("01jd3k{i:020}"));
        r.status = match i % 5 {
            0 => Status::Failed,
            1 => Status::Succeeded,
            2 => {
                r.host = "another-host".into();
                Status::Running
            }
            3 => {
                // Running here, its wrapper gone: it reads `lost`.
                r.host = crate::capture::host::hostname();
                r.boot_id = crate::capture::host::boot_id();
                r.pid_ns = crate::capture::host::pid_namespace();
                r.pid = Some(i64::from(u32::MAX - 1));
                r.pid_start = Some(1);
                Status::Running
            }
            _ => Status::Killed,
        };
        r.duration_ms = (i % 4 != 0).then_some((i % 3) as i64 * 1000);
        r.name = (i % 6 != 0).then(|| format!("n{}", i % 4));
        if i % 3 == 0 {
            r.tags = vec!["nightly".into(), "best".into()];
        }
        s.insert_run(&r).unwrap();
        let mut points = Vec::new();
        if i % 4 != 1 {
            let acc = if i == 7 {
                f64::NAN
            } else {
                (i % 5) as f64 / 10.0
            };
            points.push(MetricPoint {
                key: "acc".into(),
                step: Some(0),
                value: acc,
                time: None,
            });
        }
        points.push(MetricPoint {
            key: "loss".into(),
            step: Some(0),
            value: (i % 2) as f64,
            time: None,
        });
        metrics.push((r.id.clone(), points));
    }
    s.insert_metrics_batch(&metrics).unwrap();
    s
}

/// The queries the page tests list: each sort (field, metric, metric with a tie-breaker) with
/// status filters (`running` and `lost` decided as rows are read) and other filters.
pub(crate) fn paged_queries() -> Vec<(String, RunQuery)> {
    use crate::store::metrics::{parse_metric_sort, parse_metric_where};
    let acc = || parse_metric_sort("metric:acc").unwrap();
    let loss = || parse_metric_sort("metric:loss").unwrap();
    let mut sorts: Vec<(&str, RunQuery)> = Vec::new();
    for (name, key, reverse) in [
        ("started", SortKey::Started, false),
        ("oldest", SortKey::Started, true),
        ("duration", SortKey::Duration, false),
        ("name", SortKey::Name, false),
        ("status rev", SortKey::Status, true),
    ] {
        let mut q = RunQuery::default();
        q.filter.sort = key;
        q.filter.oldest_first = reverse;
        sorts.push((name, q));
    }
    for (name, desc, then) in [
        ("metric:acc", true, false),
        ("metric:acc:asc", false, false),
        ("metric:acc then loss", true, true),
    ] {
        let q = RunQuery {
            metric_sort: Some((acc(), desc)),
            then_by: if then { vec![(loss(), false)] } else { vec![] },
            ..Default::default()
        };
        sorts.push((name, q));
    }
    let mut out = Vec::new();
    for (sort, q) in &sorts {
        for status in [
            vec![],
            vec![Status::Failed],
            vec![Status::Running],
            vec![Status::Lost],
            vec![Status::Running, Status::Failed],
        ] {
            for (what, metric, tag) in [
                ("", false, false),
                ("where", true, false),
                ("tag", false, true),
            ] {
                if (metric || tag) && status.len() > 1 {
                    continue;
                }
                let mut q = q.clone();
                q.status = status.clone();
                if metric {
                    q.filter.metrics = vec![parse_metric_where("metric:acc>=0.2").unwrap()];
                }
                if tag {
                    q.filter.tags = vec!["nightly".into()];
                }
                out.push((format!("{sort} {status:?} {what}"), q));
            }
        }
    }
    out
}

/// The page as it was read before `query_from`: every run up to its end, completed, then the
/// first `offset` dropped.
pub(crate) fn page_the_old_way(s: &Store, q: &RunQuery, offset: u64) -> Vec<Run> {
    let mut read = q.clone();
    read.filter.limit = q.filter.limit.map(|l| l + offset);
    let mut runs = s.query(&read).unwrap();
    runs.drain(..(offset as usize).min(runs.len()));
    runs
}

#[test]
fn pages_from_an_offset_are_the_runs_the_old_way_listed() {
    let n = 23;
    let s = paged_store(n);
    let mut checked = 0;
    for (what, q) in paged_queries() {
        let every = s.query(&q).unwrap().len() as u64;
        for limit in [Some(1), Some(4), Some(5), None] {
            for offset in [
                0,
                1,
                3,
                4,
                5,
                8,
                9,
                10,
                every.saturating_sub(1),
                every,
                every + 1,
                40,
            ] {
                let mut q = q.clone();
                q.filter.limit = limit;
                let want = page_the_old_way(&s, &q, offset);
                let got = s.query_from(&q, offset).unwrap();
                let ids = |runs: &[Run]| runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
                assert_eq!(
                    ids(&got),
                    ids(&want),
                    "{what}, limit {limit:?}, offset {offset}"
                );
                // Complete runs, statuses as read (`lost`), as before.
                assert_eq!(got, want, "{what}, limit {limit:?}, offset {offset}");
                checked += 1;
            }
        }
        // Past the end: as many as there are, counted up to the offset.
        assert_eq!(s.count_upto(&q, 1000).unwrap(), every, "{what}");
        assert_eq!(s.count_upto(&q, 2).unwrap(), every.min(2), "{what}");
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn a_lost_run_is_skipped_by_its_read_status() {
    // Offsets count runs as read: a `running` row whose wrapper is gone is not a running run.
    let s = paged_store(10);
    let q = RunQuery {
        status: vec![Status::Running],
        filter: RunFilter {
            limit: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    // Running elsewhere: runs 2 and 7 (3 and 8 read lost), newest first.
    let page = |offset| {
        s.query_from(&q, offset)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(0), [format!("01jd3k{:020}", 7)]);
    assert_eq!(page(1), [format!("01jd3k{:020}", 2)]);
    assert!(page(2).is_empty());
}

#[test]
fn a_metric_condition_many_runs_meet_is_counted_only_when_cheap() {
    use crate::record::metrics::MetricPoint;
    use crate::store::metrics::{parse_metric_where, Membership, IN_MAX_MATCHES};
    // More runs meet the condition than IN_MAX_MATCHES: it is checked run by run (`Exists`).
    let n = (IN_MAX_MATCHES as usize + 100) * 4 / 3;
    let mut s = Store::open_in_memory().unwrap();
    let mut metrics = Vec::new();
    for i in 0..n {
        let mut r = sample_run(&format!("01jd3k{i:020}"));
        r.status = if i % 10 == 0 {
            Status::Failed
        } else {
            Status::Succeeded
        };
        s.insert_run(&r).unwrap();
        let point = MetricPoint {
            key: "acc".into(),
            step: None,
            value: if i % 4 == 3 { 0.5 } else { 0.95 },
            time: None,
        };
        metrics.push((r.id.clone(), vec![point]));
    }
    s.insert_metrics_batch(&metrics).unwrap();
    let meet = (0..n).filter(|i| i % 4 != 3).count() as u64;
    // Every failed run (i % 10 == 0) is even: it meets the condition.
    let failed = (0..n).filter(|i| i % 10 == 0).count() as u64;
    let failed_meet = failed;
    let q = |status: Vec<Status>| RunQuery {
        status,
        filter: RunFilter {
            metrics: vec![parse_metric_where("metric:acc>=0.9").unwrap()],
            limit: Some(50),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut compiled = q(vec![]).filter;
    s.shape_metric_conditions(&mut compiled).unwrap();
    assert_eq!(compiled.metric_shapes, [Membership::Exists]);
    // The condition alone: counted through its index, bounded by the cap, exact under it.
    assert_eq!(s.count_matching(&q(vec![]), 100).unwrap(), Some(101));
    assert_eq!(s.count_matching(&q(vec![]), 10_000).unwrap(), Some(meet));
    // With a status: exact when the failed runs (the candidates) are at most the cap…
    assert_eq!(
        s.count_matching(&q(vec![Status::Failed]), failed).unwrap(),
        Some(failed_meet)
    );
    // … else not counted (the listing says whether more follow).
    assert_eq!(
        s.count_matching(&q(vec![Status::Failed]), failed - 1)
            .unwrap(),
        None
    );
    // The same runs either way, and the count is what the runs listed say.
    let mut all = q(vec![Status::Failed]);
    all.filter.limit = None;
    assert_eq!(s.query(&all).unwrap().len() as u64, failed_meet);
    let mut all = q(vec![]);
    all.filter.limit = None;
    assert_eq!(s.query(&all).unwrap().len() as u64, meet);
}
