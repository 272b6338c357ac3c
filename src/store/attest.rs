//! Attestations written by `repro attest`: the document digest per run (and where it was written),
//! so `show --format notes` can cite it. Annotations of a run, never part of its provenance.

use rusqlite::params;

use super::{sql_error, Result, Store};

/// One attestation document produced for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRecord {
    pub run_id: String,
    /// Hex SHA-256 of the document as written.
    pub sha256: String,
    /// Signing key id (SHA-256 of the SPKI DER); `None` for an unsigned statement.
    pub keyid: Option<String>,
    /// Absolute path written with `-o`; `None` when printed to stdout.
    pub path: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl Store {
    /// Records an attestation document; writing the same document again updates its path and time.
    pub fn record_attestation(&mut self, a: &AttestationRecord) -> Result<()> {
        self.require_run(&a.run_id)?;
        self.conn
            .execute(
                "INSERT INTO run_attestations (run_id, sha256, keyid, path, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id, sha256) DO UPDATE SET
                     path = COALESCE(excluded.path, path), created_at = excluded.created_at",
                params![a.run_id, a.sha256, a.keyid, a.path, a.created_at],
            )
            .map_err(sql_error(&self.path, "record attestation"))?;
        Ok(())
    }

    /// The attestations of a run: signed ones first, each group newest first.
    pub fn attestations(&self, run_id: &str) -> Result<Vec<AttestationRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run_id, sha256, keyid, path, created_at FROM run_attestations
                 WHERE run_id = ?1 ORDER BY keyid IS NULL, created_at DESC, sha256",
            )
            .map_err(sql_error(&self.path, "read attestations"))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(AttestationRecord {
                    run_id: r.get(0)?,
                    sha256: r.get(1)?,
                    keyid: r.get(2)?,
                    path: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(sql_error(&self.path, "read attestations"))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;
    use crate::store::StoreError;

    #[test]
    fn attestations_are_recorded_per_run_and_document() {
        let mut store = Store::open_in_memory().unwrap();
        let e = store
            .record_attestation(&AttestationRecord {
                run_id: "01jd3k0000000000000000000a".into(),
                sha256: "ab".into(),
                keyid: None,
                path: None,
                created_at: "2026-01-01T00:00:00.000Z".into(),
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::UnknownRun(_)), "{e}");
        assert!(store
            .attestations("01jd3k0000000000000000000a")
            .unwrap()
            .is_empty());

        let id = "01jd3k0000000000000000000b";
        store.insert_run(&sample_run(id)).unwrap();
        let mut a = AttestationRecord {
            run_id: id.into(),
            sha256: "aa".into(),
            keyid: None,
            path: Some("/x/st.json".into()),
            created_at: "2026-01-01T00:00:00.000Z".into(),
        };
        store.record_attestation(&a).unwrap();
        // The same document again (printed to stdout): one row, path kept, time updated.
        a.path = None;
        a.created_at = "2026-01-02T00:00:00.000Z".into();
        store.record_attestation(&a).unwrap();
        let signed = AttestationRecord {
            sha256: "bb".into(),
            keyid: Some("k".into()),
            ..a.clone()
        };
        store.record_attestation(&signed).unwrap();
        let got = store.attestations(id).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], signed, "signed first");
        assert_eq!(got[1].path.as_deref(), Some("/x/st.json"));
        assert_eq!(got[1].created_at, "2026-01-02T00:00:00.000Z");
    }
}
