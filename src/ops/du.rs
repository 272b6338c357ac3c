//! `repro du`: what the object store of kept outputs takes — in all, per run (what its kept
//! outputs hold, and what only it holds, i.e. what deleting it frees), orphans and temporary
//! files apart.

use std::collections::HashMap;

use crate::ops::gc::{GcError, Space};
use crate::store::objects::Objects;
use crate::store::retention::object_id;
use crate::store::Store;

/// The space one run's kept outputs take.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunUsage {
    pub id: String,
    pub name: Option<String>,
    pub started_at: String,
    /// Kept outputs.
    pub outputs: u64,
    /// Distinct objects they need, present in the store.
    pub objects: u64,
    /// The bytes of those objects.
    pub bytes: u64,
    /// The bytes of the objects no other run needs: what deleting the run (or removing its
    /// kept outputs) frees.
    pub only_bytes: u64,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DuReport {
    /// Every object present.
    pub objects: Space,
    /// Blocks allocated to them on disk (reflinked objects may share theirs with the files
    /// they were kept from).
    pub disk_bytes: u64,
    /// Objects some kept output needs.
    pub referenced: Space,
    /// Objects no kept output needs (`repro gc --outputs --orphans` removes them).
    pub orphans: Space,
    /// Temporary files: writers at work, or left by writers that died.
    pub temps: Space,
    /// Objects a kept output needs that are absent (`repro verify --store` names them).
    pub missing: u64,
    /// Runs with kept outputs, largest first (at most the limit asked for).
    pub runs: Vec<RunUsage>,
    /// How many runs have kept outputs.
    pub runs_total: u64,
}

/// Measures the store; `limit` bounds the runs listed (largest first).
pub fn du(store: &Store, objects: &Objects, limit: Option<u64>) -> Result<DuReport, GcError> {
    let refs = store.kept_references(objects)?;
    let mut report = DuReport::default();
    let mut size = HashMap::with_capacity(refs.users.len());
    for e in objects.entries()? {
        let Some(id) = object_id(&e.sha256) else {
            continue;
        };
        report.objects.count += 1;
        report.objects.bytes += e.bytes;
        report.disk_bytes += e.disk_bytes;
        if refs.needs(&id) {
            report.referenced.count += 1;
            report.referenced.bytes += e.bytes;
            size.insert(id, e.bytes);
        } else {
            report.orphans.count += 1;
            report.orphans.bytes += e.bytes;
        }
    }
    report.missing = refs
        .users
        .keys()
        .filter(|id| !size.contains_key(*id))
        .count() as u64;
    let t = objects.temps();
    report.temps = Space {
        count: t.files,
        bytes: t.bytes,
    };
    // Outputs are sorted by run: one pass groups them.
    let mut runs: Vec<RunUsage> = Vec::new();
    let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
    for o in &refs.outputs {
        if runs.last().is_none_or(|r| r.id != o.run_id) {
            runs.push(RunUsage {
                id: o.run_id.clone(),
                name: o.run_name.clone(),
                started_at: o.started_at.clone(),
                outputs: 0,
                objects: 0,
                bytes: 0,
                only_bytes: 0,
            });
        }
        let at = runs.len() - 1;
        let r = &mut runs[at];
        r.outputs += 1;
        for id in &o.objects {
            let Some(&bytes) = size.get(id) else {
                continue;
            };
            if seen.insert(*id, at) == Some(at) {
                continue;
            }
            r.objects += 1;
            r.bytes += bytes;
            let only = refs.users[id]
                .iter()
                .all(|&u| refs.outputs[u as usize].run_id == o.run_id);
            if only {
                r.only_bytes += bytes;
            }
        }
    }
    report.runs_total = runs.len() as u64;
    runs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| b.id.cmp(&a.id)));
    if let Some(n) = limit {
        runs.truncate(n as usize);
    }
    report.runs = runs;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gc::sample_run;
    use crate::record::{Output, Status};
    use crate::store::Finish;

    #[test]
    fn shared_objects_count_for_each_run_but_free_nothing() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("repro.db");
        let mut s = Store::open(&db).unwrap();
        let o = Objects::beside(&db);
        let shared = o.store_bytes(&[1u8; 100]).unwrap();
        let own = o.store_bytes(&[2u8; 10]).unwrap();
        o.store_bytes(&[3u8; 5]).unwrap();
        let out = |p: &str, d: &str, b| Output {
            path: p.into(),
            sha256: Some(d.to_string()),
            bytes: Some(b),
            kept: Some(true),
            not_kept: None,
        };
        let a = sample_run("01jd3k0000000000000000000a");
        let b = sample_run("01jd3k0000000000000000000b");
        for (r, outs) in [
            // The same object twice in one run counts once.
            (
                &a,
                vec![
                    out("x", &shared, 100),
                    out("y", &own, 10),
                    out("z", &own, 10),
                ],
            ),
            (&b, vec![out("x", &shared, 100)]),
        ] {
            s.insert_run(r).unwrap();
            let fin = Finish {
                status: Status::Succeeded,
                exit_code: Some(0),
                signal: None,
                ended_at: "2026-11-26T14:01:00.000Z".into(),
                duration_ms: 1,
                outputs: outs,
                output_files: vec![],
            };
            s.finish(r, &fin).unwrap();
        }
        let r = du(&s, &o, Some(1)).unwrap();
        assert_eq!(
            r.objects,
            Space {
                count: 3,
                bytes: 115
            }
        );
        assert_eq!(r.orphans, Space { count: 1, bytes: 5 });
        assert_eq!(r.runs_total, 2);
        assert_eq!(r.runs.len(), 1, "limited");
        let top = &r.runs[0];
        assert_eq!(
            (
                top.id.as_str(),
                top.outputs,
                top.objects,
                top.bytes,
                top.only_bytes
            ),
            (a.id.as_str(), 3, 2, 110, 10)
        );
        let all = du(&s, &o, None).unwrap();
        assert_eq!((all.runs[1].bytes, all.runs[1].only_bytes), (100, 0));
    }
}
