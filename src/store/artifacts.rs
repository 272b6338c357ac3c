//! Where a run's outputs or attestations were pushed (an OCI registry): the reference, the
//! manifest digest and the time, so `repro get` can pull the outputs back when the local copy is
//! gone. Annotations of a run, never part of its provenance.

use rusqlite::params;

use super::{sql_error, Result, Store};

/// What an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// The run's kept outputs (`repro outputs push`).
    Outputs,
    /// A signed attestation (`repro attest --push`).
    Attestation,
}

impl ArtifactKind {
    /// The name stored in `run_artifacts.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Outputs => "outputs",
            ArtifactKind::Attestation => "attestation",
        }
    }

    fn parse(s: &str) -> Option<ArtifactKind> {
        match s {
            "outputs" => Some(ArtifactKind::Outputs),
            "attestation" => Some(ArtifactKind::Attestation),
            _ => None,
        }
    }
}

/// One push of a run's artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunArtifact {
    pub run_id: String,
    pub kind: ArtifactKind,
    /// Where it was pushed: `HOST/REPO:TAG`, or `HOST/REPO` when pushed by digest only.
    pub reference: String,
    /// `sha256:…` of the manifest pushed.
    pub digest: String,
    /// RFC 3339 UTC.
    pub pushed_at: String,
}

impl Store {
    /// Records a push; pushing to the same reference again replaces its digest and time.
    pub fn record_artifact(&mut self, a: &RunArtifact) -> Result<()> {
        self.require_run(&a.run_id)?;
        self.conn
            .execute(
                "INSERT INTO run_artifacts (run_id, kind, reference, digest, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id, kind, reference) DO UPDATE SET
                     digest = excluded.digest, pushed_at = excluded.pushed_at",
                params![
                    a.run_id,
                    a.kind.as_str(),
                    a.reference,
                    a.digest,
                    a.pushed_at
                ],
            )
            .map_err(sql_error(&self.path, "record artifact"))?;
        Ok(())
    }

    /// The artifacts of a run (of one kind when given), newest first.
    pub fn artifacts(&self, run_id: &str, kind: Option<ArtifactKind>) -> Result<Vec<RunArtifact>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run_id, kind, reference, digest, pushed_at FROM run_artifacts
                 WHERE run_id = ?1 AND (?2 IS NULL OR kind = ?2)
                 ORDER BY pushed_at DESC, reference",
            )
            .map_err(sql_error(&self.path, "read artifacts"))?;
        let rows = stmt
            .query_map(params![run_id, kind.map(ArtifactKind::as_str)], |r| {
                let kind: String = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    kind,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(sql_error(&self.path, "read artifacts"))?;
        // The CHECK constraint admits only the two kinds.
        Ok(rows
            .into_iter()
            .filter_map(|(run_id, kind, reference, digest, pushed_at)| {
                Some(RunArtifact {
                    run_id,
                    kind: ArtifactKind::parse(&kind)?,
                    reference,
                    digest,
                    pushed_at,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;
    use crate::store::StoreError;

    #[test]
    fn artifacts_are_recorded_per_reference_newest_first() {
        let mut store = Store::open_in_memory().unwrap();
        let a = |run: &str, kind, reference: &str, digest: &str, at: &str| RunArtifact {
            run_id: run.into(),
            kind,
            reference: reference.into(),
            digest: digest.into(),
            pushed_at: at.into(),
        };
        let e = store
            .record_artifact(&a(
                "01jd3k0000000000000000000a",
                ArtifactKind::Outputs,
                "r/x:1",
                "sha256:1",
                "2026-01-01T00:00:00Z",
            ))
            .unwrap_err();
        assert!(matches!(e, StoreError::UnknownRun(_)), "{e}");
        let run = sample_run("01jd3k0000000000000000000b");
        store.insert_run(&run).unwrap();
        let id = run.id.as_str();
        store
            .record_artifact(&a(
                id,
                ArtifactKind::Outputs,
                "r/x:1",
                "sha256:1",
                "2026-01-01T00:00:00Z",
            ))
            .unwrap();
        store
            .record_artifact(&a(
                id,
                ArtifactKind::Attestation,
                "r/x:a",
                "sha256:2",
                "2026-01-02T00:00:00Z",
            ))
            .unwrap();
        store
            .record_artifact(&a(
                id,
                ArtifactKind::Outputs,
                "r/x:1",
                "sha256:3",
                "2026-01-03T00:00:00Z",
            ))
            .unwrap();
        let all = store.artifacts(id, None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].digest, "sha256:3", "replaced, newest first");
        let outs = store.artifacts(id, Some(ArtifactKind::Outputs)).unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].kind, ArtifactKind::Outputs);
    }
}
