//! Which image digests and dataset versions the runs used: the rows behind `repro ui`'s Images
//! page (tags → digests over time → runs) and its Datasets page (names → versions → runs).

use super::{Result, Store};

/// The runs of one recorded reference that resolved to one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The reference as the run was given it (`REPO:TAG`, `REPO@DIGEST`, …).
    pub reference: String,
    /// The platform digest it resolved to (`None`: unpinned).
    pub digest: Option<String>,
    /// The first and the last start time of those runs (RFC 3339).
    pub first: String,
    pub last: String,
    /// How many runs.
    pub runs: u64,
    /// How many of them have an archived copy of their image (`repro image archive`).
    pub archived: u64,
}

/// The runs that read one version of a dataset (by name, version and content digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetUse {
    pub name: String,
    /// How it was declared: `path`, `dvc`, `uri` or `label`.
    pub kind: String,
    /// The location as recorded by the first of those runs (a path, a URI), if any.
    pub uri: Option<String>,
    /// The version as recorded (a label, a DVC revision, or the digest for a path).
    pub version: Option<String>,
    /// The content digest (`sha256:…`) when it was hashed.
    pub digest: Option<String>,
    /// Files and bytes as hashed (the largest any of the runs recorded).
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// The first and the last start time of those runs (RFC 3339).
    pub first: String,
    pub last: String,
    /// How many runs read it (dataset rows: a run that names it twice counts twice).
    pub runs: u64,
}

impl Store {
    /// Every (name, version, digest) a run read, by name, then first use: the rows of
    /// `dataset_versions` (kept by triggers on `run_datasets`, migration 23), each with the start
    /// times of its first and last run.
    pub fn dataset_uses(&self) -> Result<Vec<DatasetUse>> {
        let sql = "SELECT v.name, v.kind, v.uri, nullif(v.vkey, ''), nullif(v.dkey, ''), v.files,
                          v.bytes, ifnull(f.started_at, ''), ifnull(l.started_at, ''), v.readings
                   FROM dataset_versions v
                   LEFT JOIN runs f ON f.id = v.first_run
                   LEFT JOIN runs l ON l.id = v.last_run
                   ORDER BY v.name, v.first_run";
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(self.sql_err("list dataset uses"))?;
        let count = |v: Option<i64>| v.map(|n| n.max(0) as u64);
        let rows = stmt
            .query_map([], |r| {
                Ok(DatasetUse {
                    name: r.get(0)?,
                    kind: r.get(1)?,
                    uri: r.get(2)?,
                    version: r.get(3)?,
                    digest: r.get(4)?,
                    files: count(r.get(5)?),
                    bytes: count(r.get(6)?),
                    first: r.get(7)?,
                    last: r.get(8)?,
                    runs: r.get::<_, i64>(9)?.max(0) as u64,
                })
            })
            .map_err(self.sql_err("list dataset uses"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.sql_err("list dataset uses"))
    }

    /// Every (reference, digest) pair the runs used, by reference, then first use: the rows of
    /// `image_uses` (kept by triggers on `runs`, migration 23), with the start times of the first
    /// and last run and how many runs have an archived copy of their image.
    pub fn image_uses(&self) -> Result<Vec<ImageUse>> {
        let sql =
            "SELECT u.ref, nullif(u.dkey, ''), ifnull(f.started_at, ''), ifnull(l.started_at, ''),
                          u.runs, ifnull(a.archived, 0)
                   FROM image_uses u
                   LEFT JOIN runs f ON f.id = u.first_run
                   LEFT JOIN runs l ON l.id = u.last_run
                   LEFT JOIN (SELECT r.image_ref AS ref, ifnull(r.image_digest, '') AS dkey,
                                     count(DISTINCT a.run_id) AS archived
                              FROM run_archives a JOIN runs r ON r.id = a.run_id
                              GROUP BY 1, 2) a ON a.ref = u.ref AND a.dkey = u.dkey
                   ORDER BY u.ref, u.first_run";
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(self.sql_err("list image uses"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ImageUse {
                    reference: r.get(0)?,
                    digest: r.get(1)?,
                    first: r.get(2)?,
                    last: r.get(3)?,
                    runs: r.get::<_, i64>(4)?.max(0) as u64,
                    archived: r.get::<_, i64>(5)?.max(0) as u64,
                })
            })
            .map_err(self.sql_err("list image uses"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.sql_err("list image uses"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;

    /// (name, version, digest, rows, first run, last run).
    type Version = (String, Option<String>, Option<String>, i64, String, String);

    /// The rows of `sql` (six columns: name, version, digest, rows, first run, last run).
    fn versions(s: &Store, sql: &str) -> Vec<Version> {
        let mut st = s.conn().prepare(sql).unwrap();
        st.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    /// What grouping every dataset row says, to compare the trigger-kept table with.
    fn grouped(s: &Store) -> Vec<Version> {
        versions(
            s,
            "SELECT name, version, digest, count(*), min(run_id), max(run_id) FROM run_datasets
             GROUP BY name, ifnull(version, ''), ifnull(digest, '') ORDER BY 1, 5",
        )
    }

    fn kept(s: &Store) -> Vec<Version> {
        versions(
            s,
            "SELECT name, nullif(vkey, ''), nullif(dkey, ''), readings, first_run, last_run
             FROM dataset_versions ORDER BY 1, 5",
        )
    }

    #[test]
    fn the_kept_dataset_versions_follow_inserts_deletes_and_updates() {
        let mut s = Store::open_in_memory().unwrap();
        let ids: Vec<String> = (0..6)
            .map(|i| format!("01jd3k00000000000000000{i:03}"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let mut r = sample_run(id);
            for d in &mut r.datasets {
                // Two versions of each dataset, alternating; a label without a digest.
                if i % 2 == 1 {
                    d.version = Some(format!("{}-b", d.version.clone().unwrap_or_default()));
                    d.digest = None;
                }
            }
            // A path dataset in three versions (by content digest).
            let digest = format!("sha256:{}", (i % 3).to_string().repeat(64));
            r.datasets.push(crate::record::Dataset {
                name: "data".into(),
                kind: crate::record::DatasetKind::Path,
                uri: Some("data".into()),
                version: Some(digest.clone()),
                digest: Some(digest),
                files: Some(i as u64),
                bytes: Some(10 * i as u64),
            });
            s.insert_run(&r).unwrap();
        }
        assert_eq!(kept(&s).len(), 5, "{:?}", kept(&s));
        assert_eq!(kept(&s), grouped(&s));
        // The first and the last run of versions go: bounds move to the runs left.
        s.delete_runs(&[ids[0].clone(), ids[5].clone(), ids[2].clone()])
            .unwrap();
        assert_eq!(kept(&s), grouped(&s));
        s.conn()
            .execute(
                "UPDATE run_datasets SET version = 'v9', digest = NULL WHERE run_id = ?1",
                [&ids[3]],
            )
            .unwrap();
        assert_eq!(kept(&s), grouped(&s));
        // Every run gone: nothing left.
        s.delete_runs(&ids).unwrap();
        assert!(kept(&s).is_empty());
        // The page's rows carry the start times of the first and last runs.
        let mut r = sample_run(&ids[1]);
        r.started_at = "2026-01-02T03:04:05.000Z".into();
        s.insert_run(&r).unwrap();
        let uses = s.dataset_uses().unwrap();
        assert!(!uses.is_empty());
        assert!(uses.iter().all(|u| u.first == r.started_at && u.runs == 1));
    }

    #[test]
    fn the_kept_image_uses_follow_inserts_deletes_and_updates() {
        // (reference, digest, runs, first run, last run), through the same six-column helper.
        let grouped = |s: &Store| {
            versions(
                s,
                "SELECT image_ref, NULL, image_digest, count(*), min(id), max(id) FROM runs
                 WHERE image_ref IS NOT NULL GROUP BY 1, ifnull(image_digest, '') ORDER BY 1, 5",
            )
        };
        let kept = |s: &Store| {
            versions(
                s,
                "SELECT ref, NULL, nullif(dkey, ''), runs, first_run, last_run FROM image_uses
                 ORDER BY 1, 5",
            )
        };
        let mut s = Store::open_in_memory().unwrap();
        let ids: Vec<String> = (0..7)
            .map(|i| format!("01jd3k00000000000000000{i:03}"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let mut r = sample_run(id);
            match i % 3 {
                0 => r.image = None,
                1 => {
                    if let Some(img) = r.image.as_mut() {
                        img.digest = None;
                    }
                }
                _ => {
                    if let Some(img) = r.image.as_mut() {
                        img.digest = Some(format!("sha256:{}", (i % 2).to_string().repeat(64)));
                    }
                }
            }
            s.insert_run(&r).unwrap();
        }
        assert!(kept(&s).len() >= 2, "{:?}", kept(&s));
        assert_eq!(kept(&s), grouped(&s));
        s.delete_runs(&[ids[1].clone(), ids[5].clone()]).unwrap();
        assert_eq!(kept(&s), grouped(&s));
        s.conn()
            .execute(
                "UPDATE runs SET image_digest = NULL WHERE id = ?1",
                [&ids[2]],
            )
            .unwrap();
        assert_eq!(kept(&s), grouped(&s));
        s.delete_runs(&ids).unwrap();
        assert!(kept(&s).is_empty());
    }
}
