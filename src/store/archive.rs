//! Where a run's image is archived (`repro image archive`): an OCI image layout directory or an
//! archive registry repository. Annotations of a run, never part of its provenance.

use rusqlite::params;

use super::{sql_error, Result, Store};

/// What kind of place an archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveKind {
    /// An OCI image layout directory (`index.json`, `oci-layout`, `blobs/sha256/…`).
    OciLayout,
    /// A repository of an archive registry (`REGISTRY/REPO`).
    Registry,
}

impl ArchiveKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::OciLayout => "oci-layout",
            ArchiveKind::Registry => "registry",
        }
    }

    fn parse(s: &str) -> Option<ArchiveKind> {
        match s {
            "oci-layout" => Some(ArchiveKind::OciLayout),
            "registry" => Some(ArchiveKind::Registry),
            _ => None,
        }
    }
}

/// One archived copy of a run's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    pub run_id: String,
    pub kind: ArchiveKind,
    /// Absolute directory (OCI layout) or `REGISTRY/REPO`.
    pub location: String,
    /// The top digest archived: the index for a multi-arch tag, else the manifest.
    pub digest: String,
    /// RFC 3339 UTC.
    pub archived_at: String,
}

impl Store {
    /// Records (or refreshes) an archive of a run.
    pub fn record_archive(&mut self, a: &ArchiveRecord) -> Result<()> {
        self.require_run(&a.run_id)?;
        self.conn
            .execute(
                "INSERT INTO run_archives (run_id, kind, location, digest, archived_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id, kind, location) DO UPDATE SET
                     digest = excluded.digest, archived_at = excluded.archived_at",
                params![
                    a.run_id,
                    a.kind.as_str(),
                    a.location,
                    a.digest,
                    a.archived_at
                ],
            )
            .map_err(sql_error(&self.path, "record archive"))?;
        Ok(())
    }

    /// The archives of a run, oldest first.
    pub fn archives(&self, run_id: &str) -> Result<Vec<ArchiveRecord>> {
        self.archives_where("run_id = ?1", run_id)
    }

    /// Every archive recorded at `location` (for `--gc`).
    pub fn archives_at(&self, location: &str) -> Result<Vec<ArchiveRecord>> {
        self.archives_where("location = ?1", location)
    }

    fn archives_where(&self, cond: &str, arg: &str) -> Result<Vec<ArchiveRecord>> {
        let sql = format!(
            "SELECT run_id, kind, location, digest, archived_at FROM run_archives
             WHERE {cond} ORDER BY archived_at, run_id, location"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sql_error(&self.path, "read archives"))?;
        let rows = stmt
            .query_map([arg], |r| {
                let kind: String = r.get(1)?;
                Ok(ArchiveRecord {
                    run_id: r.get(0)?,
                    kind: ArchiveKind::parse(&kind).unwrap_or(ArchiveKind::OciLayout),
                    location: r.get(2)?,
                    digest: r.get(3)?,
                    archived_at: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(sql_error(&self.path, "read archives"))?;
        Ok(rows)
    }

    /// Every digest (platform and index) some recorded run needs, for archive `--gc`.
    pub fn referenced_image_digests(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT image_digest FROM runs WHERE image_digest IS NOT NULL
                 UNION SELECT image_index_digest FROM runs WHERE image_index_digest IS NOT NULL",
            )
            .map_err(sql_error(&self.path, "read image digests"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(sql_error(&self.path, "read image digests"))?;
        Ok(rows)
    }

    /// One run (other than `except`) whose platform or index digest is `digest`, if any.
    pub fn run_using_digest(&self, digest: &str, except: &[String]) -> Result<Option<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM runs WHERE image_digest = ?1
                 UNION SELECT id FROM runs WHERE image_index_digest = ?1",
            )
            .map_err(sql_error(&self.path, "read runs by digest"))?;
        let ids: Vec<String> = stmt
            .query_map([digest], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(sql_error(&self.path, "read runs by digest"))?;
        Ok(ids.into_iter().find(|i| !except.contains(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;
    use crate::store::StoreError;

    #[test]
    fn archives_are_annotations_per_run_and_place() {
        let mut store = Store::open_in_memory().unwrap();
        let mut a = ArchiveRecord {
            run_id: "01jd3k0000000000000000000a".into(),
            kind: ArchiveKind::OciLayout,
            location: "/a".into(),
            digest: "sha256:00".into(),
            archived_at: "2026-01-01T00:00:00.000Z".into(),
        };
        assert!(matches!(
            store.record_archive(&a),
            Err(StoreError::UnknownRun(_))
        ));
        let run = sample_run("01jd3k0000000000000000000a");
        store.insert_run(&run).unwrap();
        store.record_archive(&a).unwrap();
        a.archived_at = "2026-01-02T00:00:00.000Z".into();
        store.record_archive(&a).unwrap();
        let reg = ArchiveRecord {
            kind: ArchiveKind::Registry,
            location: "127.0.0.1:5000/keep".into(),
            ..a.clone()
        };
        store.record_archive(&reg).unwrap();
        let got = store.archives(&run.id).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&a) && got.contains(&reg));
        assert_eq!(store.archives_at("/a").unwrap(), vec![a]);
        // Provenance untouched.
        assert_eq!(store.get_run(&run.id).unwrap(), run);
        let d = run.image.as_ref().and_then(|i| i.digest.clone()).unwrap();
        assert!(store.referenced_image_digests().unwrap().contains(&d));
        assert_eq!(
            store.run_using_digest(&d, &[]).unwrap(),
            Some(run.id.clone())
        );
        assert_eq!(
            store
                .run_using_digest(&d, std::slice::from_ref(&run.id))
                .unwrap(),
            None
        );
    }
}
