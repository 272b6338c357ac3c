//! What the object store must keep: every object a kept output needs (a file output's object; a
//! directory output's manifest, its files and its symlink targets), read from the database and
//! from outcomes still waiting in spill files; and marking outputs no longer kept.

use std::collections::HashMap;

use super::kept::{parse_manifest, ManifestEntry};
use super::objects::{is_sha256_hex, Objects};
use super::{sql_error, Finish, Result, Store};

/// An object name as its 32 bytes (half the memory of the hex, for stores of millions).
pub type ObjectId = [u8; 32];

/// The 32 bytes of a 64-hex object name; `None` when it is not one.
pub fn object_id(hex_name: &str) -> Option<ObjectId> {
    let mut id = [0u8; 32];
    (is_sha256_hex(hex_name) && hex::decode_to_slice(hex_name, &mut id).is_ok()).then_some(id)
}

/// One output whose copy is kept, and the objects it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptOutput {
    pub run_id: String,
    pub run_name: Option<String>,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// Position in the run's outputs.
    pub pos: u32,
    /// The output as recorded (`--output PATH`).
    pub path: String,
    /// The recorded digest: 64 hex for a file, `sha256:<manifest>` for a directory.
    pub digest: String,
    /// The recorded size (a directory: its files together).
    pub bytes: u64,
    /// Every object it needs, without repeats.
    pub objects: Vec<ObjectId>,
    /// A directory whose manifest object is absent or damaged: its symlink targets (named only
    /// in the manifest) are unknown.
    pub manifest_unreadable: bool,
    /// Named by an outcome still waiting in a spill file, not yet in the database.
    pub spilled: bool,
}

impl KeptOutput {
    /// Whether the output is a directory (its digest names a manifest).
    pub fn is_dir(&self) -> bool {
        self.digest.starts_with("sha256:")
    }
}

/// Which object each kept output needs, and which outputs need each object.
#[derive(Debug, Default)]
pub struct References {
    /// Every kept output, by run id then position.
    pub outputs: Vec<KeptOutput>,
    /// Object → the outputs (indexes into `outputs`) that need it.
    pub users: HashMap<ObjectId, Vec<u32>>,
}

impl References {
    /// Whether any kept output needs the object.
    pub fn needs(&self, id: &ObjectId) -> bool {
        self.users.contains_key(id)
    }

    /// The objects needed by outputs other than those `gone` says go.
    pub fn needed_without(
        &self,
        gone: &dyn Fn(&KeptOutput) -> bool,
    ) -> std::collections::HashSet<ObjectId> {
        let keep: Vec<bool> = self.outputs.iter().map(|o| !gone(o)).collect();
        self.users
            .iter()
            .filter(|(_, users)| users.iter().any(|&i| keep[i as usize]))
            .map(|(id, _)| *id)
            .collect()
    }

    fn index(mut outputs: Vec<KeptOutput>) -> References {
        outputs.sort_by(|a, b| (&a.run_id, a.pos).cmp(&(&b.run_id, b.pos)));
        let mut users: HashMap<ObjectId, Vec<u32>> = HashMap::new();
        for (i, o) in outputs.iter().enumerate() {
            for id in &o.objects {
                users.entry(*id).or_default().push(i as u32);
            }
        }
        References { outputs, users }
    }
}

impl Store {
    /// Every kept output with the objects it needs: the database's (`kept = 1`) and those of
    /// outcomes spilled while the database was unavailable. Manifests are read from `objects`.
    pub fn kept_references(&self, objects: &Objects) -> Result<References> {
        let mut outputs = self.kept_output_rows()?;
        let at: HashMap<(String, u32), usize> = outputs
            .iter()
            .enumerate()
            .map(|(i, o)| ((o.run_id.clone(), o.pos), i))
            .collect();
        for (run_id, pos, sha) in self.kept_dir_files()? {
            if let (Some(&i), Some(id)) = (at.get(&(run_id, pos)), object_id(&sha)) {
                outputs[i].objects.push(id);
            }
        }
        outputs.extend(spilled_outputs(&self.path));
        let mut manifests = ManifestCache::default();
        for o in &mut outputs {
            if o.is_dir() {
                match manifests.objects_of(objects, &o.digest) {
                    Some(ids) => o.objects.extend(ids.iter().copied()),
                    None => o.manifest_unreadable = true,
                }
            }
            o.objects.sort_unstable();
            o.objects.dedup();
        }
        Ok(References::index(outputs))
    }

    /// The `kept = 1` outputs, each with its own object (a file) or its manifest (a directory).
    fn kept_output_rows(&self) -> Result<Vec<KeptOutput>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT o.run_id, r.name, r.started_at, o.pos, o.path, o.sha256, o.bytes
                 FROM run_outputs AS o JOIN runs AS r ON r.id = o.run_id
                 WHERE o.kept = 1 AND o.sha256 IS NOT NULL",
            )
            .map_err(self.sql_err("read kept outputs"))?;
        let rows = st
            .query_map([], |r| {
                let digest: String = r.get(5)?;
                let own = object_id(digest.strip_prefix("sha256:").unwrap_or(&digest));
                Ok(KeptOutput {
                    run_id: r.get(0)?,
                    run_name: r.get(1)?,
                    started_at: r.get(2)?,
                    pos: r.get::<_, i64>(3)? as u32,
                    path: r.get(4)?,
                    digest,
                    bytes: r.get::<_, Option<i64>>(6)?.unwrap_or(0).max(0) as u64,
                    objects: own.into_iter().collect(),
                    manifest_unreadable: false,
                    spilled: false,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("read kept outputs"))?;
        Ok(rows)
    }

    /// The files of kept directory outputs: (run id, position, object name).
    fn kept_dir_files(&self) -> Result<Vec<(String, u32, String)>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT f.run_id, f.pos, f.sha256 FROM output_files AS f
                 JOIN run_outputs AS o ON o.run_id = f.run_id AND o.pos = f.pos
                 WHERE o.kept = 1 AND o.sha256 LIKE 'sha256:%'",
            )
            .map_err(self.sql_err("read kept files"))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u32, r.get(2)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("read kept files"))?;
        Ok(rows)
    }

    /// Marks these outputs (run id, position) no longer kept, saying `why`; only rows still
    /// kept change. Short transactions of at most `BATCH` rows, like run deletion, so waiting
    /// writers get the lock. Returns how many rows changed.
    pub fn unkeep_outputs(&mut self, outputs: &[(String, u32)], why: &str) -> Result<u64> {
        let path = self.path.clone();
        let err = |what: &'static str| sql_error(&path, what);
        let mut n = 0u64;
        for (i, chunk) in outputs.chunks(BATCH).enumerate() {
            if i > 0 {
                std::thread::sleep(PAUSE);
            }
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err("begin"))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "UPDATE run_outputs SET kept = 0, not_kept = ?3
                         WHERE run_id = ?1 AND pos = ?2 AND kept = 1",
                    )
                    .map_err(err("update output"))?;
                for (run_id, pos) in chunk {
                    n += st
                        .execute(rusqlite::params![run_id, *pos as i64, why])
                        .map_err(err("update output"))? as u64;
                }
            }
            tx.commit().map_err(err("commit"))?;
        }
        Ok(n)
    }

    /// Where the outputs of these runs were pushed: run id → references (`run_artifacts`).
    pub fn pushed_outputs(&self, run_ids: &[&str]) -> Result<HashMap<String, Vec<String>>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT reference FROM run_artifacts WHERE run_id = ?1 AND kind = 'outputs'
                 ORDER BY pushed_at",
            )
            .map_err(self.sql_err("read pushed artifacts"))?;
        let mut out = HashMap::new();
        for id in run_ids {
            let refs: Vec<String> = st
                .query_map([id], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("read pushed artifacts"))?;
            if !refs.is_empty() {
                out.insert(id.to_string(), refs);
            }
        }
        Ok(out)
    }
}

/// Most outputs marked by one transaction.
const BATCH: usize = 500;
/// Pause between batches, so that writers waiting for the lock get it.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(30);

/// The objects each manifest names, read once per digest (runs often share a directory).
#[derive(Default)]
struct ManifestCache(HashMap<String, Option<Vec<ObjectId>>>);

impl ManifestCache {
    /// The files' and symlink targets' objects of the manifest `digest` (`sha256:<hex>`);
    /// `None` when the manifest object is absent, damaged or not a manifest.
    fn objects_of(&mut self, objects: &Objects, digest: &str) -> Option<&Vec<ObjectId>> {
        self.0
            .entry(digest.to_string())
            .or_insert_with(|| {
                let text = objects
                    .read(digest.strip_prefix("sha256:")?)
                    .ok()
                    .flatten()?;
                let entries = parse_manifest(&text)?;
                Some(
                    entries
                        .iter()
                        .filter_map(|e| match e {
                            ManifestEntry::File { sha256, .. }
                            | ManifestEntry::Symlink { sha256, .. } => object_id(sha256),
                        })
                        .collect(),
                )
            })
            .as_ref()
    }
}

/// The kept outputs of outcomes spilled while the database was unavailable: their objects are
/// written, and the rows that name them wait for the next process to replay the file.
fn spilled_outputs(db: &std::path::Path) -> Vec<KeptOutput> {
    #[derive(serde::Deserialize)]
    struct SpillRun {
        id: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        started_at: String,
    }
    #[derive(serde::Deserialize)]
    struct Spilled {
        run: SpillRun,
        finish: Finish,
    }
    let Ok(rd) = std::fs::read_dir(super::spill_dir(db)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Ok(text) = std::fs::read(e.path()) else {
            continue;
        };
        let Ok(s) = serde_json::from_slice::<Spilled>(&text) else {
            continue;
        };
        for (pos, o) in s.finish.outputs.iter().enumerate() {
            let (Some(true), Some(digest)) = (o.kept, &o.sha256) else {
                continue;
            };
            let mut objects: Vec<ObjectId> =
                object_id(digest.strip_prefix("sha256:").unwrap_or(digest))
                    .into_iter()
                    .collect();
            objects.extend(
                s.finish
                    .output_files
                    .iter()
                    .filter(|f| f.pos as usize == pos)
                    .filter_map(|f| object_id(&f.sha256)),
            );
            out.push(KeptOutput {
                run_id: s.run.id.clone(),
                run_name: s.run.name.clone(),
                started_at: s.run.started_at.clone(),
                pos: pos as u32,
                path: o.path.clone(),
                digest: digest.clone(),
                bytes: o.bytes.unwrap_or(0),
                objects,
                manifest_unreadable: false,
                spilled: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Output, OutputFile, Status};
    use crate::store::tests::sample_run;

    fn finish_with(outputs: Vec<Output>, files: Vec<OutputFile>) -> Finish {
        Finish {
            status: Status::Succeeded,
            exit_code: Some(0),
            signal: None,
            ended_at: "2026-11-26T14:01:00.000Z".into(),
            duration_ms: 60_000,
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

    #[test]
    fn references_cover_files_directories_links_and_spills() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("repro.db");
        let mut s = Store::open(&db).unwrap();
        let o = Objects::beside(&db);
        let file = o.store_bytes(b"weights").unwrap();
        let a = o.store_bytes(b"aaa").unwrap();
        let link = o.store_bytes(b"a.bin").unwrap();
        let man = format!("{a} 3 a.bin\n{link} symlink l\n");
        let man = o.store_bytes(man.as_bytes()).unwrap();
        let run = sample_run("01jd3k0000000000000000000a");
        s.insert_run(&run).unwrap();
        let mut unkept = kept("log.txt", &"e".repeat(64), 4);
        unkept.kept = Some(false);
        let fin = finish_with(
            vec![
                kept("model.bin", &file, 7),
                kept("ckpt", &format!("sha256:{man}"), 3),
                unkept,
            ],
            vec![OutputFile {
                pos: 1,
                rel: b"a.bin".to_vec(),
                sha256: a.clone(),
                bytes: 3,
            }],
        );
        s.finish(&run, &fin).unwrap();
        // An outcome waiting in a spill file names its object too.
        let spilled = o.store_bytes(b"spilled").unwrap();
        let dir = crate::store::spill_dir(&db);
        std::fs::create_dir_all(&dir).unwrap();
        let other = sample_run("01jd3k0000000000000000000b");
        let doc = serde_json::json!({"run": other, "finish": finish_with(vec![kept("x", &spilled, 7)], vec![])});
        std::fs::write(dir.join("01jd3k0000000000000000000b.json"), doc.to_string()).unwrap();

        let refs = s.kept_references(&o).unwrap();
        assert_eq!(refs.outputs.len(), 3, "{:?}", refs.outputs);
        for name in [&file, &a, &link, &man, &spilled] {
            assert!(refs.needs(&object_id(name).unwrap()), "{name}");
        }
        assert!(!refs.needs(&object_id(&"e".repeat(64)).unwrap()));
        assert!(refs.outputs.iter().any(|k| k.spilled && k.path == "x"));
        let dir_out = refs.outputs.iter().find(|k| k.path == "ckpt").unwrap();
        assert_eq!(dir_out.objects.len(), 3, "manifest, file, link target");

        // Without the manifest the link target is unknown, and that is said.
        o.remove(&man).unwrap();
        let refs = s.kept_references(&o).unwrap();
        let dir_out = refs.outputs.iter().find(|k| k.path == "ckpt").unwrap();
        assert!(dir_out.manifest_unreadable);
        assert!(!refs.needs(&object_id(&link).unwrap()));

        let n = s
            .unkeep_outputs(
                &[(run.id.clone(), 0), (run.id.clone(), 2)],
                "removed by test",
            )
            .unwrap();
        assert_eq!(n, 1, "only a kept row changes");
        let got = s.get_run(&run.id).unwrap();
        assert_eq!(got.outputs[0].kept, Some(false));
        assert_eq!(got.outputs[0].not_kept.as_deref(), Some("removed by test"));
        assert_eq!(got.outputs[2].not_kept, None);
    }
}
