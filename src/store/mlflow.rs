//! The MLflow push ledger: what `repro mlflow push` sent to which tracking server, so a second
//! push of an unchanged run sends nothing and a changed one sends only the difference.

use std::collections::HashMap;

use rusqlite::params;

use super::query::RunFilter;
use super::{run_from_row, sql_error, Result, Store, RUN_COLUMNS};
use crate::record::Run;

/// One pushed run, as recorded after the server acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowPush {
    /// Tracking server URI (normalised: no trailing slash).
    pub tracking_uri: String,
    /// Experiment name pushed to.
    pub experiment: String,
    /// repro run id.
    pub run_id: String,
    /// MLflow's run id.
    pub mlflow_run_id: String,
    /// MLflow's experiment id.
    pub experiment_id: String,
    /// SHA-256 (hex) of everything pushed; equal means nothing to send.
    pub pushed_hash: String,
    /// Params as the server holds them (JSON object).
    pub params_json: String,
    /// Tags repro set, as the server holds them (JSON object).
    pub tags_json: String,
    /// Hash of status, end time and name.
    pub state_hash: String,
    /// Hash of the datasets logged as inputs.
    pub inputs_hash: String,
    /// Hash of the `repro/` artifacts uploaded.
    pub artifacts_hash: String,
    /// Metric points pushed per key (JSON object).
    pub metrics_json: String,
    /// When this row was written (RFC 3339 UTC).
    pub pushed_at: String,
    /// What the mapping read when the run was pushed (see `ops::mlflow::fingerprint`); equal
    /// means unchanged without building what would be sent. `None` in rows written before
    /// migration 10, and while a param conflict stands.
    pub fingerprint: Option<String>,
}

/// One file of a kept output uploaded to an MLflow run as an artifact (`outputs/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedArtifact {
    /// Tracking server URI (normalised: no trailing slash).
    pub tracking_uri: String,
    /// MLflow's run id.
    pub mlflow_run_id: String,
    /// Artifact path under the run's artifact root.
    pub path: String,
    /// repro run id.
    pub run_id: String,
    /// SHA-256 (hex) of the bytes uploaded.
    pub sha256: String,
    pub bytes: u64,
    /// When the server acknowledged it (RFC 3339 UTC).
    pub uploaded_at: String,
}

/// What the push fingerprint reads from the store besides the run record, for many runs at once.
#[derive(Debug, Default)]
pub struct FingerprintInputs {
    /// Per run: its change number (migration 11: a new one whenever any row belonging to the
    /// run is inserted, updated or deleted); absent when none changed since the migration.
    pub changes: HashMap<String, i64>,
    /// Per run: its attestation rows (sha256, path), in the order the push considers them.
    pub attestations: HashMap<String, Vec<(String, Option<String>)>>,
}

/// Up to this many runs, the fingerprint inputs are read run by run (through the indexes);
/// more, and one scan of each table is cheaper.
const PER_RUN_LOOKUPS: usize = 64;

impl Store {
    /// Every ledger row for one server and experiment, by repro run id (one query, for speed).
    pub fn mlflow_pushes(
        &self,
        tracking_uri: &str,
        experiment: &str,
    ) -> Result<HashMap<String, MlflowPush>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT tracking_uri, experiment, run_id, mlflow_run_id, experiment_id, pushed_hash,
                        params_json, tags_json, state_hash, inputs_hash, artifacts_hash,
                        metrics_json, pushed_at, fingerprint
                 FROM mlflow_pushes WHERE tracking_uri = ?1 AND experiment = ?2",
            )
            .map_err(self.sql_err("read mlflow ledger"))?;
        let rows = stmt
            .query_map(params![tracking_uri, experiment], |r| {
                Ok(MlflowPush {
                    tracking_uri: r.get(0)?,
                    experiment: r.get(1)?,
                    run_id: r.get(2)?,
                    mlflow_run_id: r.get(3)?,
                    experiment_id: r.get(4)?,
                    pushed_hash: r.get(5)?,
                    params_json: r.get(6)?,
                    tags_json: r.get(7)?,
                    state_hash: r.get(8)?,
                    inputs_hash: r.get(9)?,
                    artifacts_hash: r.get(10)?,
                    metrics_json: r.get(11)?,
                    pushed_at: r.get(12)?,
                    fingerprint: r.get(13)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.sql_err("read mlflow ledger"))?;
        Ok(rows.into_iter().map(|p| (p.run_id.clone(), p)).collect())
    }

    /// Records (or replaces) what was pushed for one run.
    pub fn record_mlflow_push(&self, p: &MlflowPush) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO mlflow_pushes (tracking_uri, experiment, run_id,
                    mlflow_run_id, experiment_id, pushed_hash, params_json, tags_json, state_hash,
                    inputs_hash, artifacts_hash, metrics_json, pushed_at, fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    p.tracking_uri,
                    p.experiment,
                    p.run_id,
                    p.mlflow_run_id,
                    p.experiment_id,
                    p.pushed_hash,
                    p.params_json,
                    p.tags_json,
                    p.state_hash,
                    p.inputs_hash,
                    p.artifacts_hash,
                    p.metrics_json,
                    p.pushed_at,
                    p.fingerprint
                ])
            })
            .map_err(sql_error(&self.path, "write mlflow ledger"))?;
        Ok(())
    }

    /// Sets the fingerprint of ledger rows found unchanged by their full hash (rows written
    /// before migration 10, or after a repro upgrade): one transaction, no other column moves.
    pub fn set_mlflow_fingerprints(
        &self,
        tracking_uri: &str,
        experiment: &str,
        fingerprints: &[(String, String)],
    ) -> Result<()> {
        if fingerprints.is_empty() {
            return Ok(());
        }
        let fail = sql_error(&self.path, "write mlflow ledger");
        let tx = self.conn.unchecked_transaction().map_err(&fail)?;
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE mlflow_pushes SET fingerprint = ?4
                     WHERE tracking_uri = ?1 AND experiment = ?2 AND run_id = ?3",
                )
                .map_err(&fail)?;
            for (run_id, fp) in fingerprints {
                st.execute(params![tracking_uri, experiment, run_id, fp])
                    .map_err(&fail)?;
            }
        }
        tx.commit().map_err(&fail)?;
        Ok(())
    }

    /// The runs `filter` selects, in its order, as their `runs` rows only (datasets, params,
    /// tags, notes, … not loaded: [`Store::load_run_children`] does it for the runs a push
    /// sends). `keep` sees each row and may reject it (the `lost` post-filter). One query.
    pub fn select_run_rows(
        &self,
        filter: &RunFilter,
        mut keep: Option<&mut dyn FnMut(&Run) -> bool>,
    ) -> Result<Vec<Run>> {
        let (sql, args) = filter.to_sql(RUN_COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(self.sql_err("list runs"))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(self.sql_err("list runs"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sql_err("list runs"))? {
            let run = run_from_row(row).map_err(self.sql_err("list runs"))?;
            if keep.as_mut().is_none_or(|k| k(&run)) {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// Loads the datasets, outputs, env, params, tags and notes of a run read by
    /// [`Store::select_run_rows`].
    pub fn load_run_children(&self, run: &mut Run) -> Result<()> {
        self.load_children(std::slice::from_mut(run))
    }

    /// The change numbers and attestation rows of `run_ids` (see [`FingerprintInputs`]).
    pub fn fingerprint_inputs(&self, run_ids: &[&str]) -> Result<FingerprintInputs> {
        let mut out = FingerprintInputs::default();
        if run_ids.is_empty() {
            return Ok(out);
        }
        let fail = || self.sql_err("read metrics and attestations for the mlflow push");
        let few = run_ids.len() <= PER_RUN_LOOKUPS;
        {
            let sql = if few {
                "SELECT run_id, seq FROM run_changes WHERE run_id = ?1"
            } else {
                "SELECT run_id, seq FROM run_changes"
            };
            let mut st = self.conn.prepare_cached(sql).map_err(fail())?;
            for_runs_or_all(&mut st, few.then_some(run_ids), &mut |r| {
                out.changes.insert(r.get(0)?, r.get(1)?);
                Ok(())
            })
            .map_err(fail())?;
        }
        // Ordered as `Store::attestations` orders them: the push uploads the first valid one.
        let sql = if few {
            "SELECT run_id, sha256, path FROM run_attestations WHERE run_id = ?1
             ORDER BY keyid IS NULL, created_at DESC, sha256"
        } else {
            "SELECT run_id, sha256, path FROM run_attestations
             ORDER BY run_id, keyid IS NULL, created_at DESC, sha256"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(fail())?;
        for_runs_or_all(&mut st, few.then_some(run_ids), &mut |r| {
            out.attestations
                .entry(r.get(0)?)
                .or_default()
                .push((r.get(1)?, r.get(2)?));
            Ok(())
        })
        .map_err(fail())?;
        Ok(out)
    }

    /// The kept-output files uploaded to `tracking_uri` for the repro run `run_id`, to any of
    /// its MLflow runs (a re-created run has a new MLflow run id and starts empty).
    pub fn mlflow_artifacts(
        &self,
        tracking_uri: &str,
        run_id: &str,
    ) -> Result<Vec<UploadedArtifact>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT tracking_uri, mlflow_run_id, path, run_id, sha256, bytes, uploaded_at
                 FROM mlflow_artifacts WHERE run_id = ?1 AND tracking_uri = ?2
                 ORDER BY mlflow_run_id, path",
            )
            .map_err(self.sql_err("read mlflow artifact ledger"))?;
        let rows = st
            .query_map(params![run_id, tracking_uri], |r| {
                Ok(UploadedArtifact {
                    tracking_uri: r.get(0)?,
                    mlflow_run_id: r.get(1)?,
                    path: r.get(2)?,
                    run_id: r.get(3)?,
                    sha256: r.get(4)?,
                    bytes: r.get::<_, i64>(5)? as u64,
                    uploaded_at: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.sql_err("read mlflow artifact ledger"))?;
        Ok(rows)
    }

    /// Records one uploaded file (replacing what was recorded at the same path of that run).
    pub fn record_mlflow_artifact(&self, a: &UploadedArtifact) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO mlflow_artifacts (tracking_uri, mlflow_run_id, path,
                    run_id, sha256, bytes, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.tracking_uri,
                    a.mlflow_run_id,
                    a.path,
                    a.run_id,
                    a.sha256,
                    a.bytes as i64,
                    a.uploaded_at
                ])
            })
            .map_err(sql_error(&self.path, "write mlflow artifact ledger"))?;
        Ok(())
    }

    /// Forgets what was pushed to one server and experiment (all of it when `run_id` is None).
    pub fn forget_mlflow_pushes(
        &self,
        tracking_uri: &str,
        experiment: &str,
        run_id: Option<&str>,
    ) -> Result<usize> {
        let n = match run_id {
            Some(id) => self.conn.execute(
                "DELETE FROM mlflow_pushes WHERE tracking_uri = ?1 AND experiment = ?2 AND run_id = ?3",
                params![tracking_uri, experiment, id],
            ),
            None => self.conn.execute(
                "DELETE FROM mlflow_pushes WHERE tracking_uri = ?1 AND experiment = ?2",
                params![tracking_uri, experiment],
            ),
        }
        .map_err(sql_error(&self.path, "forget mlflow ledger"))?;
        Ok(n)
    }
}

/// Runs `st` once per id of `ids` (its one parameter) or, with `None`, once without parameters
/// over every row, handing each row to `row`.
fn for_runs_or_all(
    st: &mut rusqlite::CachedStatement<'_>,
    ids: Option<&[&str]>,
    row: &mut dyn FnMut(&rusqlite::Row) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut read = |mut rows: rusqlite::Rows| -> rusqlite::Result<()> {
        while let Some(r) = rows.next()? {
            row(r)?;
        }
        Ok(())
    };
    match ids {
        Some(ids) => {
            for id in ids {
                read(st.query([id])?)?;
            }
            Ok(())
        }
        None => read(st.query([])?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, hash: &str) -> MlflowPush {
        MlflowPush {
            tracking_uri: "http://127.0.0.1:5000".into(),
            experiment: "repro".into(),
            run_id: id.into(),
            mlflow_run_id: format!("m-{id}"),
            experiment_id: "1".into(),
            pushed_hash: hash.into(),
            params_json: "{}".into(),
            tags_json: "{}".into(),
            state_hash: "s".into(),
            inputs_hash: "i".into(),
            artifacts_hash: "a".into(),
            metrics_json: "{}".into(),
            pushed_at: "2026-12-01T00:00:00.000Z".into(),
            fingerprint: None,
        }
    }

    #[test]
    fn ledger_rows_round_trip_and_are_keyed_by_server_experiment_and_run() {
        let store = Store::open_in_memory().unwrap();
        store.record_mlflow_push(&row("a", "h1")).unwrap();
        store.record_mlflow_push(&row("a", "h2")).unwrap();
        store.record_mlflow_push(&row("b", "h3")).unwrap();
        let got = store
            .mlflow_pushes("http://127.0.0.1:5000", "repro")
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["a"].pushed_hash, "h2");
        assert!(store
            .mlflow_pushes("http://127.0.0.1:5000", "other")
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .forget_mlflow_pushes("http://127.0.0.1:5000", "repro", Some("a"))
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .mlflow_pushes("http://127.0.0.1:5000", "repro")
                .unwrap()["b"],
            row("b", "h3")
        );
    }

    #[test]
    fn uploaded_artifacts_are_kept_per_server_and_mlflow_run() {
        let store = Store::open_in_memory().unwrap();
        let a = |mlflow: &str, path: &str, sha: &str| UploadedArtifact {
            tracking_uri: "http://127.0.0.1:5000".into(),
            mlflow_run_id: mlflow.into(),
            path: path.into(),
            run_id: "r1".into(),
            sha256: sha.into(),
            bytes: 3,
            uploaded_at: "2026-12-01T00:00:00.000Z".into(),
        };
        store
            .record_mlflow_artifact(&a("m1", "outputs/a", "x"))
            .unwrap();
        store
            .record_mlflow_artifact(&a("m1", "outputs/a", "y"))
            .unwrap();
        store
            .record_mlflow_artifact(&a("m2", "outputs/a", "x"))
            .unwrap();
        let got = store
            .mlflow_artifacts("http://127.0.0.1:5000", "r1")
            .unwrap();
        assert_eq!(got, [a("m1", "outputs/a", "y"), a("m2", "outputs/a", "x")]);
        assert!(store
            .mlflow_artifacts("http://other", "r1")
            .unwrap()
            .is_empty());
    }

    /// Up to `PER_RUN_LOOKUPS` runs the inputs are read run by run, above that in one scan of
    /// each table: both give the same numbers and the same attestation order.
    #[test]
    fn fingerprint_inputs_read_run_by_run_or_in_one_scan_agree() {
        use crate::store::attest::AttestationRecord;
        use crate::store::tests::sample_run;
        let mut s = Store::open_in_memory().unwrap();
        let ids: Vec<String> = (0..PER_RUN_LOOKUPS + 6)
            .map(|i| format!("01jd3k00000000000000000{i:03}"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            s.insert_run(&sample_run(id)).unwrap();
            if i % 3 == 0 {
                s.add_note(id, "changed").unwrap();
            }
            for k in 0..(i % 3) {
                s.record_attestation(&AttestationRecord {
                    run_id: id.clone(),
                    sha256: format!("{k:02}{i:03}"),
                    keyid: (k == 1).then(|| "key".to_string()),
                    path: Some(format!("/tmp/att-{i}-{k}.json")),
                    created_at: format!("2026-01-01T00:00:0{k}.000Z"),
                })
                .unwrap();
            }
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let all = s.fingerprint_inputs(&refs).unwrap();
        assert!(refs.len() > PER_RUN_LOOKUPS);
        assert_eq!(all.changes.len(), ids.len());
        let mut seen = 0;
        for chunk in refs.chunks(10) {
            let few = s.fingerprint_inputs(chunk).unwrap();
            for id in chunk {
                assert_eq!(few.changes.get(*id), all.changes.get(*id), "{id}");
                assert_eq!(few.attestations.get(*id), all.attestations.get(*id), "{id}");
                seen += few.attestations.get(*id).map_or(0, Vec::len);
            }
        }
        assert_eq!(seen, (0..ids.len()).map(|i| i % 3).sum::<usize>());
        // Signed first, then newest: the order the push uploads in.
        let two = &all.attestations[&ids[2]];
        assert_eq!(two[0].0, "01002");
    }
}
