//! `repro verify --store`: every object rehashed (on the pool's threads), and every object a
//! kept output needs looked for; what is damaged or missing is named with the runs and outputs
//! it breaks and where their outputs were pushed.

use std::collections::{HashMap, HashSet};

use crate::ops::gc::{GcError, Space};
use crate::ops::pool::parallel;
use crate::ops::Events;
use crate::store::objects::Objects;
use crate::store::retention::{object_id, ObjectId, References};
use crate::store::Store;

/// A kept output that a damaged or missing object breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Affected {
    pub run: String,
    pub name: Option<String>,
    pub output: String,
    /// Where the run's outputs were pushed (`repro outputs push`), to get them back from.
    pub pushed: Vec<String>,
}

/// What is wrong with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    /// Its bytes no longer hash to its name.
    Damaged,
    /// A kept output needs it and it is absent.
    Missing,
    /// It could not be read.
    Unreadable,
}

/// One damaged, missing or unreadable object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadObject {
    pub sha256: String,
    pub problem: Problem,
    /// Its size on disk (absent when missing).
    pub bytes: Option<u64>,
    /// The read error, when unreadable.
    pub error: Option<String>,
    /// The kept outputs it breaks (none: an orphan, which `repro gc --outputs --orphans` removes).
    pub affected: Vec<Affected>,
}

/// The report of `repro verify --store`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreCheck {
    /// Objects rehashed.
    pub checked: Space,
    pub bad: Vec<BadObject>,
}

impl StoreCheck {
    /// Whether every object is intact and every needed object present.
    pub fn ok(&self) -> bool {
        self.bad.is_empty()
    }
}

/// Rehashes every object on `jobs` threads and looks for every needed object.
pub fn verify_store(
    ev: &dyn Events,
    store: &Store,
    objects: &Objects,
    jobs: usize,
) -> Result<StoreCheck, GcError> {
    let refs = store.kept_references(objects)?;
    let entries = objects.entries()?;
    ev.status(&format!(
        "rehashing {} object(s), {}",
        entries.len(),
        crate::store::kept::human_bytes(entries.iter().map(|e| e.bytes).sum())
    ));
    let results = parallel(&entries, jobs, |e| objects.verify(&e.sha256));
    let mut check = StoreCheck::default();
    let mut present: HashSet<ObjectId> = HashSet::with_capacity(entries.len());
    let mut bad: Vec<(ObjectId, BadObject)> = Vec::new();
    for (e, r) in entries.iter().zip(results) {
        let Some(id) = object_id(&e.sha256) else {
            continue;
        };
        let (problem, error) = match r {
            Ok(Some(true)) => {
                check.checked.count += 1;
                check.checked.bytes += e.bytes;
                present.insert(id);
                continue;
            }
            // Deleted while we read (a gc): judged with the missing below.
            Ok(None) => continue,
            Ok(Some(false)) => (Problem::Damaged, None),
            Err(err) => (Problem::Unreadable, Some(crate::error::report(err))),
        };
        check.checked.count += 1;
        check.checked.bytes += e.bytes;
        present.insert(id);
        bad.push((
            id,
            BadObject {
                sha256: e.sha256.clone(),
                problem,
                bytes: Some(e.bytes),
                error,
                affected: Vec::new(),
            },
        ));
    }
    let missing: Vec<ObjectId> = refs
        .users
        .keys()
        .filter(|id| !present.contains(*id))
        .copied()
        .collect();
    // A gc may have removed outputs while we hashed: what is missing must still be needed
    // (and still absent) when we are done.
    let missing = if missing.is_empty() {
        missing
    } else {
        let now = store.kept_references(objects)?;
        missing
            .into_iter()
            .filter(|id| now.needs(id) && !objects.contains(&hex::encode(id)))
            .collect()
    };
    for id in missing {
        bad.push((
            id,
            BadObject {
                sha256: hex::encode(id),
                problem: Problem::Missing,
                bytes: None,
                error: None,
                affected: Vec::new(),
            },
        ));
    }
    attach_affected(store, &refs, &mut bad)?;
    bad.sort_by(|a, b| (a.1.problem as u8, &a.1.sha256).cmp(&(b.1.problem as u8, &b.1.sha256)));
    check.bad = bad.into_iter().map(|(_, b)| b).collect();
    Ok(check)
}

/// Names the kept outputs each bad object breaks, with where their runs' outputs were pushed.
fn attach_affected(
    store: &Store,
    refs: &References,
    bad: &mut [(ObjectId, BadObject)],
) -> Result<(), GcError> {
    let runs: Vec<&str> = bad
        .iter()
        .flat_map(|(id, _)| refs.users.get(id).into_iter().flatten())
        .map(|&u| refs.outputs[u as usize].run_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let pushed: HashMap<String, Vec<String>> = store.pushed_outputs(&runs)?;
    for (id, b) in bad.iter_mut() {
        for &u in refs.users.get(id).into_iter().flatten() {
            let o = &refs.outputs[u as usize];
            b.affected.push(Affected {
                run: o.run_id.clone(),
                name: o.run_name.clone(),
                output: o.path.clone(),
                pushed: pushed.get(&o.run_id).cloned().unwrap_or_default(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gc::sample_run;
    use crate::ops::Collect;
    use crate::record::{Output, Status};
    use crate::store::Finish;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn damaged_and_missing_objects_name_the_outputs_they_break() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("repro.db");
        let mut s = Store::open(&db).unwrap();
        let o = Objects::beside(&db);
        let good = o.store_bytes(b"good").unwrap();
        let damaged = o.store_bytes(b"damaged").unwrap();
        let gone = o.store_bytes(b"gone").unwrap();
        let run = sample_run("01jd3k0000000000000000000a");
        s.insert_run(&run).unwrap();
        let out = |p: &str, d: &str| Output {
            path: p.into(),
            sha256: Some(d.to_string()),
            bytes: Some(4),
            kept: Some(true),
            not_kept: None,
        };
        let fin = Finish {
            status: Status::Succeeded,
            exit_code: Some(0),
            signal: None,
            ended_at: "2026-11-26T14:01:00.000Z".into(),
            duration_ms: 1,
            outputs: vec![out("a", &good), out("b", &damaged), out("c", &gone)],
            output_files: vec![],
        };
        s.finish(&run, &fin).unwrap();
        let ev = Collect::default();
        assert!(verify_store(&ev, &s, &o, 2).unwrap().ok());

        let p = o.path_of(&damaged).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, b"DAMAGED").unwrap();
        o.remove(&gone).unwrap();
        let c = verify_store(&ev, &s, &o, 2).unwrap();
        assert!(!c.ok());
        assert_eq!(c.checked.count, 2);
        let kinds: Vec<(Problem, &str, &str)> = c
            .bad
            .iter()
            .map(|b| (b.problem, b.sha256.as_str(), b.affected[0].output.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Problem::Damaged, damaged.as_str(), "b"),
                (Problem::Missing, gone.as_str(), "c")
            ]
        );
        assert_eq!(c.bad[0].affected[0].run, run.id);
    }
}
