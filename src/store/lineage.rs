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
    /// How many runs.
    pub runs: u64,
}

impl Store {
    /// Every (name, version, digest) a run read, by name, then first use. One pass over the
    /// dataset rows.
    pub fn dataset_uses(&self) -> Result<Vec<DatasetUse>> {
        let sql = "SELECT d.name, min(d.kind), min(d.uri), d.version, d.digest, max(d.files),
                          max(d.bytes), min(r.started_at), max(r.started_at), count(DISTINCT r.id)
                   FROM run_datasets d JOIN runs r ON r.id = d.run_id
                   GROUP BY d.name, d.version, d.digest
                   ORDER BY d.name, min(r.started_at)";
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

    /// Every (reference, digest) pair the runs used, by reference, then first use. One pass
    /// over the runs with an image.
    pub fn image_uses(&self) -> Result<Vec<ImageUse>> {
        let sql = "SELECT r.image_ref, r.image_digest, min(r.started_at), max(r.started_at),
                          count(*), count(a.run_id)
                   FROM runs r
                   LEFT JOIN (SELECT DISTINCT run_id FROM run_archives) a ON a.run_id = r.id
                   WHERE r.image_ref IS NOT NULL
                   GROUP BY r.image_ref, r.image_digest
                   ORDER BY r.image_ref, min(r.started_at)";
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
