//! `repro gc`: deleting runs, or removing their kept outputs by a retention policy (the records
//! stay). Either way the objects no kept output needs any more are deleted, under the object
//! store's exclusive lock and only when older than the gc, so a run finishing meanwhile keeps
//! what it wrote or reused (see `store::objects::Objects::lock`).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::error::Hinted;
use crate::ops::Events;
use crate::record::{Run, Status};
use crate::store::metrics::MetricSort;
use crate::store::objects::{LockMode, ObjectEntry, ObjectError, Objects};
use crate::store::retention::{object_id, KeptOutput, ObjectId, References};
use crate::store::{RunQuery, Store, StoreError};

/// Why gc could not do it.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Object(#[from] ObjectError),
}

impl Hinted for GcError {
    fn hint(&self) -> Option<String> {
        match self {
            GcError::Store(e) => e.hint(),
            GcError::Object(e) => e.hint(),
        }
    }
}

/// A number of objects (or files) and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    pub count: u64,
    pub bytes: u64,
}

impl Space {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// Keep the outputs of the `n` best runs by `query`'s order (a metric or an `ls` sort key).
#[derive(Debug, Clone)]
pub struct KeepBest {
    pub n: u64,
    /// The considered runs, sorted, limited to `n`.
    pub query: RunQuery,
    /// When sorting by a metric: runs without it are never "best".
    pub metric: Option<MetricSort>,
    /// How the rule reads (`best 3 by metric:val_acc`).
    pub label: String,
}

/// `repro gc --outputs`: which runs are considered and which keep their outputs. An output is
/// kept when any rule holds for its run.
#[derive(Debug, Clone, Default)]
pub struct OutputsPolicy {
    /// The runs considered (the usual filters, no limit).
    pub considered: RunQuery,
    /// Keep runs with any tag.
    pub keep_tagged: bool,
    /// Keep runs with one of these tags.
    pub keep_tags: Vec<String>,
    pub keep_best: Option<KeepBest>,
    /// Keep runs started at or after this RFC 3339 time, and how the rule reads.
    pub keep_newer: Option<(String, String)>,
    /// Remove no kept output: only objects no run keeps and stale temporary files.
    pub orphans_only: bool,
}

/// One kept output that would lose its copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    pub run: String,
    pub name: Option<String>,
    #[serde(skip)]
    pub pos: u32,
    pub output: String,
    /// The recorded size.
    pub bytes: u64,
}

/// A considered run whose outputs stay, and the rules that keep them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptRun {
    pub run: String,
    pub why: Vec<String>,
}

/// What `repro gc --outputs` would do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutputsPlan {
    /// Outputs whose kept copies go, by run then position.
    pub remove: Vec<Removal>,
    /// Considered runs with kept outputs that a rule keeps.
    pub kept: Vec<KeptRun>,
    /// Objects the removals leave unneeded (objects shared with outputs that stay free nothing).
    pub frees: Space,
    /// Objects no kept output needs already (left by deleted runs or failed writers).
    pub orphans: Space,
    /// Temporary files old enough to be left by writers that died.
    pub temps: Space,
    /// Kept directory outputs whose manifest cannot be read (their link targets are unknown).
    pub unreadable: Vec<String>,
    #[serde(skip)]
    started: Option<SystemTime>,
}

/// What a sweep of the object store removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Objects deleted.
    pub objects: Space,
    /// Unneeded objects left because they were written or reused after the gc began.
    pub fresh: u64,
    /// Stale temporary files removed.
    pub temps: Space,
}

/// Plans `repro gc --outputs`: which kept copies go under `policy`, and what that frees.
pub fn plan_outputs(
    store: &Store,
    objects: &Objects,
    policy: &OutputsPolicy,
) -> Result<OutputsPlan, GcError> {
    let started = objects.clock();
    let refs = store.kept_references(objects)?;
    let mut plan = OutputsPlan {
        started: Some(started),
        ..Default::default()
    };
    if !policy.orphans_only {
        let runs = store.query(&policy.considered)?;
        let reasons = keep_reasons(store, policy, &runs)?;
        let considered: HashSet<&str> = runs
            .iter()
            .filter(|r| r.status != Status::Running)
            .map(|r| r.id.as_str())
            .collect();
        let mut kept_runs = Vec::new();
        for o in refs.outputs.iter().filter(|o| !o.spilled) {
            if !considered.contains(o.run_id.as_str()) {
                continue;
            }
            match reasons.get(o.run_id.as_str()) {
                Some(why) => kept_runs.push(KeptRun {
                    run: o.run_id.clone(),
                    why: why.clone(),
                }),
                None => plan.remove.push(Removal {
                    run: o.run_id.clone(),
                    name: o.run_name.clone(),
                    pos: o.pos,
                    output: o.path.clone(),
                    bytes: o.bytes,
                }),
            }
        }
        kept_runs.dedup_by(|a, b| a.run == b.run);
        plan.kept = kept_runs;
    }
    let going: HashSet<(&str, u32)> = plan
        .remove
        .iter()
        .map(|r| (r.run.as_str(), r.pos))
        .collect();
    let needed = refs.needed_without(&|o: &KeptOutput| {
        !o.spilled && going.contains(&(o.run_id.as_str(), o.pos))
    });
    for e in objects.entries()? {
        let Some(id) = object_id(&e.sha256) else {
            continue;
        };
        if needed.contains(&id) {
            continue;
        }
        if refs.needs(&id) {
            plan.frees.add(e.bytes);
        } else {
            plan.orphans.add(e.bytes);
        }
    }
    let t = objects.temps();
    plan.temps = Space {
        count: t.stale_files,
        bytes: t.stale_bytes,
    };
    plan.unreadable = unreadable(&refs);
    Ok(plan)
}

/// The rules that keep each considered run (runs no rule keeps are absent).
fn keep_reasons(
    store: &Store,
    policy: &OutputsPolicy,
    runs: &[Run],
) -> Result<HashMap<String, Vec<String>>, GcError> {
    let mut why: HashMap<String, Vec<String>> = HashMap::new();
    let mut add = |id: &str, reason: String| why.entry(id.to_string()).or_default().push(reason);
    for r in runs {
        if policy.keep_tagged && !r.tags.is_empty() {
            add(&r.id, format!("tagged {}", r.tags.join(", ")));
        } else if let Some(t) = policy.keep_tags.iter().find(|t| r.tags.contains(t)) {
            add(&r.id, format!("tagged {t}"));
        }
        if let Some((since, label)) = &policy.keep_newer {
            if r.started_at.as_str() >= since.as_str() {
                add(&r.id, label.clone());
            }
        }
    }
    if let Some(best) = &policy.keep_best {
        let mut top = store.query(&best.query)?;
        if let Some(m) = &best.metric {
            let ids: Vec<&str> = top.iter().map(|r| r.id.as_str()).collect();
            let has = store.metric_values(&ids, &m.key, m.stat)?;
            top.retain(|r| has.contains_key(&r.id));
        }
        for r in top.iter().take(best.n as usize) {
            add(&r.id, best.label.clone());
        }
    }
    Ok(why)
}

/// Removes the kept copies `plan` lists (the outputs say why, dated `date`), then every object
/// no kept output needs.
pub fn remove_outputs(
    ev: &dyn Events,
    store: &mut Store,
    objects: &Objects,
    plan: &OutputsPlan,
    date: &str,
) -> Result<(u64, Swept), GcError> {
    let rows: Vec<(String, u32)> = plan.remove.iter().map(|r| (r.run.clone(), r.pos)).collect();
    let why = format!("removed by repro gc --outputs on {date}");
    let n = store.unkeep_outputs(&rows, &why)?;
    let started = plan.started.unwrap_or_else(|| objects.clock());
    let swept = sweep(ev, store, objects, None, started)?;
    Ok((n, swept))
}

/// Plain `repro gc`: the runs to delete and the objects only they need.
#[derive(Debug, Clone, Default)]
pub struct RunsPlan {
    pub runs: Vec<Run>,
    /// Matching runs left alone because they may still be going.
    pub live: usize,
    /// What deleting them frees in the object store.
    pub frees: Space,
    objects: HashSet<ObjectId>,
    started: Option<SystemTime>,
}

/// Plans plain `repro gc`: the runs `q` selects (those that may still be going only with
/// `include_running`) and the objects that only they need.
pub fn plan_runs(
    store: &Store,
    objects: &Objects,
    q: &RunQuery,
    include_running: bool,
) -> Result<RunsPlan, GcError> {
    let started = objects.clock();
    let (runs, live): (Vec<Run>, Vec<Run>) = store
        .query(q)?
        .into_iter()
        .partition(|r| r.status != Status::Running || include_running);
    let refs = store.kept_references(objects)?;
    let ids: HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let going = |o: &KeptOutput| !o.spilled && ids.contains(o.run_id.as_str());
    let needed = refs.needed_without(&going);
    let only: HashSet<ObjectId> = refs
        .outputs
        .iter()
        .filter(|o| going(o))
        .flat_map(|o| o.objects.iter().copied())
        .filter(|id| !needed.contains(id))
        .collect();
    let mut frees = Space::default();
    for e in objects.entries()? {
        if object_id(&e.sha256).is_some_and(|id| only.contains(&id)) {
            frees.add(e.bytes);
        }
    }
    Ok(RunsPlan {
        runs,
        live: live.len(),
        frees,
        objects: only,
        started: Some(started),
    })
}

/// Deletes the runs of `plan`, then the objects only they needed (and stale temporary files).
pub fn delete_runs(
    ev: &dyn Events,
    store: &mut Store,
    objects: &Objects,
    plan: &RunsPlan,
) -> Result<(u64, Swept), GcError> {
    let ids: Vec<String> = plan.runs.iter().map(|r| r.id.clone()).collect();
    let n = store.delete_runs(&ids)?;
    let started = plan.started.unwrap_or_else(|| objects.clock());
    let swept = sweep(ev, store, objects, Some(&plan.objects), started)?;
    Ok((n, swept))
}

/// Deletes the objects no kept output needs (only those in `only`, when given), under the
/// store's exclusive lock, with the references read under it. An object written or reused
/// since `started` stays: its writer may not have recorded it yet.
pub fn sweep(
    ev: &dyn Events,
    store: &Store,
    objects: &Objects,
    only: Option<&HashSet<ObjectId>>,
    started: SystemTime,
) -> Result<Swept, GcError> {
    let mut swept = Swept::default();
    if !objects.root().exists() {
        return Ok(swept);
    }
    let _lock = objects.lock(LockMode::Delete, &mut || {
        ev.status("waiting for runs that are keeping outputs to record them");
    })?;
    let refs = store.kept_references(objects)?;
    for w in unreadable(&refs) {
        ev.warn(&format!(
            "{w}: its manifest cannot be read, so the objects of its links are not known and may be deleted (`repro verify --store` lists damaged objects)"
        ));
    }
    for e in objects.entries()? {
        let Some(id) = object_id(&e.sha256) else {
            continue;
        };
        if refs.needs(&id) || only.is_some_and(|o| !o.contains(&id)) {
            continue;
        }
        if fresh(&e, started) {
            swept.fresh += 1;
            continue;
        }
        if objects.remove(&e.sha256)? {
            swept.objects.add(e.bytes);
        }
    }
    let (n, bytes) = objects.sweep_temps();
    swept.temps = Space { count: n, bytes };
    Ok(swept)
}

/// Written or reused at or after `started` (by a writer that may not have recorded it yet).
fn fresh(e: &ObjectEntry, started: SystemTime) -> bool {
    e.modified >= started
}

/// "output PATH of run ID" for every kept directory output whose manifest cannot be read.
fn unreadable(refs: &References) -> Vec<String> {
    refs.outputs
        .iter()
        .filter(|o| o.manifest_unreadable)
        .map(|o| format!("output {} of run {}", o.path, o.run_id))
        .collect()
}

/// A `running` run with this id and the tag `nightly`, for the tests of gc, du and verify.
#[cfg(test)]
pub(crate) fn sample_run(id: &str) -> Run {
    let mut r = crate::script::sample_run();
    r.id = id.into();
    r.status = Status::Running;
    r.tags = vec!["nightly".into()];
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Collect;
    use crate::record::{Output, OutputFile};
    use crate::store::Finish;

    fn finish(outputs: Vec<Output>, files: Vec<OutputFile>) -> Finish {
        Finish {
            status: Status::Succeeded,
            exit_code: Some(0),
            signal: None,
            ended_at: "2026-11-26T14:01:00.000Z".into(),
            duration_ms: 1,
            outputs,
            output_files: files,
        }
    }

    fn kept(path: &str, digest: &str, bytes: u64) -> Output {
        Output {
            path: path.into(),
            sha256: Some(digest.into()),
            bytes: Some(bytes),
            kept: Some(true),
            not_kept: None,
        }
    }

    fn age(o: &Objects, name: &str) {
        let f = std::fs::File::open(o.path_of(name).unwrap()).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
    }

    #[test]
    fn sweeping_deletes_only_old_unneeded_objects() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("repro.db");
        let mut s = Store::open(&db).unwrap();
        let o = Objects::beside(&db);
        let needed = o.store_bytes(b"kept").unwrap();
        let orphan = o.store_bytes(b"orphan").unwrap();
        let young = o.store_bytes(b"young").unwrap();
        let reused = o.store_bytes(b"reused").unwrap();
        for n in [&needed, &orphan, &young, &reused] {
            age(&o, n);
        }
        let run = sample_run("01jd3k0000000000000000000a");
        s.insert_run(&run).unwrap();
        s.finish(&run, &finish(vec![kept("m", &needed, 4)], vec![]))
            .unwrap();
        let started = o.clock();
        // Written, and reused (a writer found it present), after the gc began.
        std::fs::remove_file(o.path_of(&young).unwrap()).unwrap();
        o.store_bytes(b"young").unwrap();
        o.store_bytes(b"reused").unwrap();
        let ev = Collect::default();
        let swept = sweep(&ev, &s, &o, None, started).unwrap();
        assert_eq!(swept.objects, Space { count: 1, bytes: 6 });
        assert_eq!(swept.fresh, 2);
        assert!(o.contains(&needed) && o.contains(&young) && o.contains(&reused));
        assert!(!o.contains(&orphan));
    }

    #[test]
    fn a_plan_counts_shared_objects_once_and_frees_nothing_kept() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("repro.db");
        let mut s = Store::open(&db).unwrap();
        let o = Objects::beside(&db);
        let shared = o.store_bytes(&[1u8; 100]).unwrap();
        let own = o.store_bytes(&[2u8; 10]).unwrap();
        let orphan = o.store_bytes(&[3u8; 5]).unwrap();
        for n in [&shared, &own, &orphan] {
            age(&o, n);
        }
        let mut a = sample_run("01jd3k0000000000000000000a");
        a.tags.clear();
        let b = sample_run("01jd3k0000000000000000000b");
        for (r, outs) in [
            (&a, vec![kept("x", &shared, 100), kept("y", &own, 10)]),
            (&b, vec![kept("x", &shared, 100)]),
        ] {
            s.insert_run(r).unwrap();
            s.finish(r, &finish(outs, vec![])).unwrap();
        }
        let policy = OutputsPolicy {
            keep_tagged: true,
            ..Default::default()
        };
        let plan = plan_outputs(&s, &o, &policy).unwrap();
        assert_eq!(plan.remove.len(), 2, "{:?}", plan.remove);
        assert_eq!(
            plan.frees,
            Space {
                count: 1,
                bytes: 10
            },
            "only `own` goes"
        );
        assert_eq!(plan.orphans, Space { count: 1, bytes: 5 });
        assert_eq!(plan.kept[0].why, vec!["tagged nightly".to_string()]);
        assert!(o.contains(&orphan), "a plan changes nothing");
        let ev = Collect::default();
        let (n, swept) = remove_outputs(&ev, &mut s, &o, &plan, "2026-11-26").unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            swept.objects,
            Space {
                count: 2,
                bytes: 15
            }
        );
        assert!(o.contains(&shared) && !o.contains(&own));
        let got = s.get_run(&a.id).unwrap();
        assert_eq!(
            got.outputs[1].not_kept.as_deref(),
            Some("removed by repro gc --outputs on 2026-11-26")
        );
    }
}
