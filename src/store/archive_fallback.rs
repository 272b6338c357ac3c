//! The archives a pull can fall back to: every recorded archive of an image digest, whichever
//! run archived it (a re-run is a new run; an archive made for one run serves every run of the
//! same digest).

use super::archive::{ArchiveKind, ArchiveRecord};
use super::{sql_error, Result, Store};

impl Store {
    /// The archives recorded for any of `digests` (the platform manifest and, for a multi-arch
    /// image, the index: an archive is recorded under its top digest), oldest first.
    pub fn archives_of_digests(&self, digests: &[&str]) -> Result<Vec<ArchiveRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run_id, kind, location, digest, archived_at FROM run_archives
                 WHERE digest = ?1 ORDER BY archived_at, run_id, location",
            )
            .map_err(sql_error(&self.path, "read archives"))?;
        let mut out = Vec::new();
        for d in digests {
            let rows = stmt
                .query_map([d], |r| {
                    let kind: String = r.get(1)?;
                    Ok(ArchiveRecord {
                        run_id: r.get(0)?,
                        kind: if kind == ArchiveKind::Registry.as_str() {
                            ArchiveKind::Registry
                        } else {
                            ArchiveKind::OciLayout
                        },
                        location: r.get(2)?,
                        digest: r.get(3)?,
                        archived_at: r.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(sql_error(&self.path, "read archives"))?;
            out.extend(rows);
        }
        Ok(out)
    }
}
