//! Deleting runs (`repro gc`): the run row and, by cascade, its datasets, outputs, env and
//! annotations together, in short batches.

use super::{sql_error, Result, Store};

impl Store {
    /// Deletes the runs with these full ids; returns how many existed. Runs are deleted in
    /// batches of at most `GC_BATCH`, each its own short transaction (a run and its child rows
    /// go together), with a pause between batches so that waiting writers get the lock. An
    /// interrupted gc is resumed by running it again.
    pub fn delete_runs(&mut self, ids: &[String]) -> Result<u64> {
        let path = self.path.clone();
        let err = |what: &'static str| sql_error(&path, what);
        let mut n = 0u64;
        for (i, chunk) in ids.chunks(GC_BATCH).enumerate() {
            if i > 0 {
                std::thread::sleep(GC_PAUSE);
            }
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err("begin"))?;
            {
                let mut st = tx
                    .prepare_cached("DELETE FROM runs WHERE id = ?1")
                    .map_err(err("delete run"))?;
                for id in chunk {
                    n += st.execute([id]).map_err(err("delete run"))? as u64;
                }
            }
            tx.commit().map_err(err("commit"))?;
        }
        if n > 0 {
            // Environment snapshots are shared by content: the ones no run points at any more
            // go too. Recording inserts a snapshot and its link in one transaction, so this
            // one cannot take a snapshot from under a run being recorded.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err("begin"))?;
            tx.execute(
                "DELETE FROM environments WHERE NOT EXISTS \
                 (SELECT 1 FROM run_environments WHERE environment = environments.sha256)",
                [],
            )
            .map_err(err("delete unused environments"))?;
            tx.commit().map_err(err("commit"))?;
        }
        Ok(n)
    }
}

/// Most runs deleted by one gc transaction (about 0.1 s of work).
const GC_BATCH: usize = 500;
/// Pause between gc batches, so that writers waiting for the lock get it.
const GC_PAUSE: std::time::Duration = std::time::Duration::from_millis(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;

    #[test]
    fn delete_cascades_to_children() {
        let mut s = Store::open_in_memory().unwrap();
        let a = sample_run("01jd3k0000000000000000000a");
        let b = sample_run("01jd3k0000000000000000000b");
        s.insert_run(&a).unwrap();
        s.insert_run(&b).unwrap();
        assert_eq!(s.delete_runs(&[a.id.clone(), "nope".into()]).unwrap(), 1);
        assert!(s.get_run(&a.id).is_err());
        assert_eq!(s.get_run(&b.id).unwrap(), b);
        for table in ["run_datasets", "run_env", "run_params", "run_tags"] {
            let n: i64 = s
                .conn()
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE run_id = ?1"),
                    [&a.id],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
    }

    #[test]
    fn an_environment_goes_with_the_last_run_that_points_at_it() {
        use crate::record::environment::Environment;
        let mut s = Store::open_in_memory().unwrap();
        let ids: Vec<String> = (0..3)
            .map(|i| format!("01jd3k000000000000000000e{i}"))
            .collect();
        for id in &ids {
            s.insert_run(&sample_run(id)).unwrap();
        }
        let mut shared = Environment::default();
        shared.vars.insert("SEED".into(), "1".into());
        let mut own = Environment::default();
        own.vars.insert("SEED".into(), "2".into());
        s.record_environment(&ids[0], &shared).unwrap();
        s.record_environment(&ids[1], &shared).unwrap();
        s.record_environment(&ids[2], &own).unwrap();
        let count = |s: &Store| -> i64 {
            s.conn()
                .query_row("SELECT count(*) FROM environments", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&s), 2);
        s.delete_runs(&[ids[0].clone(), ids[2].clone()]).unwrap();
        assert_eq!(count(&s), 1, "the shared one stays for the run left");
        assert_eq!(s.environment_of(&ids[1]).unwrap(), Some(shared));
        s.delete_runs(&[ids[1].clone()]).unwrap();
        assert_eq!(count(&s), 0);
    }
}
