//! Which image digests the runs used, per recorded reference: the rows behind `repro ui`'s
//! Images page (tags → digests over time → runs).

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

impl Store {
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
