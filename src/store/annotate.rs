//! Annotations — tags, notes and params added at or after a run. They live in their own tables
//! and never touch the run's provenance row.

use rusqlite::{params, OptionalExtension};

use super::{sql_error, Result, Store, StoreError};

impl Store {
    /// `UnknownRun` unless a run with this exact id is stored: annotations need their run.
    pub(super) fn require_run(&self, id: &str) -> Result<()> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.sql_err("read run"))?;
        found
            .map(|_| ())
            .ok_or_else(|| StoreError::UnknownRun(id.to_string()))
    }

    /// Adds and removes tags of a run in one transaction; returns the tags afterwards.
    pub fn change_tags(
        &mut self,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>> {
        self.require_run(id)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_error(&self.path, "begin"))?;
        for t in remove {
            tx.execute(
                "DELETE FROM run_tags WHERE run_id = ?1 AND tag = ?2",
                params![id, t],
            )
            .map_err(sql_error(&self.path, "remove tag"))?;
        }
        for t in add {
            tx.execute(
                "INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?1, ?2)",
                params![id, t],
            )
            .map_err(sql_error(&self.path, "add tag"))?;
        }
        tx.commit().map_err(sql_error(&self.path, "commit"))?;
        Ok(self.get_run(id)?.tags)
    }

    /// Appends a note to a run.
    pub fn add_note(&mut self, id: &str, text: &str) -> Result<()> {
        self.require_run(id)?;
        self.conn
            .execute(
                "INSERT INTO run_notes (run_id, pos, text)
                 VALUES (?1, (SELECT COALESCE(MAX(pos), -1) + 1 FROM run_notes WHERE run_id = ?1), ?2)",
                params![id, text],
            )
            .map_err(self.sql_err("add note"))?;
        Ok(())
    }

    /// Sets (or replaces) params of a run and removes the keys in `unset`, in one transaction.
    pub fn set_params(
        &mut self,
        id: &str,
        set: &[(String, String)],
        unset: &[String],
    ) -> Result<()> {
        self.require_run(id)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_error(&self.path, "begin"))?;
        for k in unset {
            tx.execute(
                "DELETE FROM run_params WHERE run_id = ?1 AND key = ?2",
                params![id, k],
            )
            .map_err(sql_error(&self.path, "remove param"))?;
        }
        for (k, v) in set {
            tx.execute(
                "INSERT INTO run_params (run_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value,
                     from_argv = 0, from_job = 0",
                params![id, k, v],
            )
            .map_err(sql_error(&self.path, "set param"))?;
        }
        tx.commit().map_err(sql_error(&self.path, "commit"))?;
        Ok(())
    }

    /// Records params the job logged while it ran (`REPRO_PARAMS`), marked as the job's; each
    /// replaces a param of the same key (the caller leaves out the keys `--param` gave).
    pub fn record_job_params(&mut self, id: &str, set: &[(String, String)]) -> Result<()> {
        if set.is_empty() {
            return Ok(());
        }
        self.require_run(id)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_error(&self.path, "begin"))?;
        for (k, v) in set {
            tx.execute(
                "INSERT INTO run_params (run_id, key, value, from_argv, from_job) VALUES (?1, ?2, ?3, 0, 1)
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value,
                     from_argv = 0, from_job = 1",
                params![id, k, v],
            )
            .map_err(sql_error(&self.path, "record the job's params"))?;
        }
        tx.commit().map_err(sql_error(&self.path, "commit"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;

    #[test]
    fn annotations_change_only_annotations() {
        let mut s = Store::open_in_memory().unwrap();
        let run = sample_run("01jd3k0000000000000000000a");
        s.insert_run(&run).unwrap();
        let tags = s
            .change_tags(&run.id, &["best".into(), "a".into()], &["nightly".into()])
            .unwrap();
        assert_eq!(tags, vec!["a", "best"]);
        s.add_note(&run.id, "first").unwrap();
        s.add_note(&run.id, "second").unwrap();
        s.set_params(
            &run.id,
            &[("lr".into(), "0.2".into()), ("bs".into(), "64".into())],
            &[],
        )
        .unwrap();
        let after = s.get_run(&run.id).unwrap();
        assert_eq!(after.notes, vec!["first", "second"]);
        assert_eq!(after.params["lr"], "0.2");
        assert_eq!(after.params["bs"], "64");
        let mut strip = after.clone();
        strip.tags = run.tags.clone();
        strip.notes = run.notes.clone();
        strip.params = run.params.clone();
        assert_eq!(strip, run);
        assert!(matches!(
            s.add_note("01jd3k0000000000000000000z", "x"),
            Err(StoreError::UnknownRun(_))
        ));
    }
}
