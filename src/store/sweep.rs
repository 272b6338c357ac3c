//! Sweeps: the runs one `repro sweep` recorded, grouped under a sweep id.

use rusqlite::params;

use super::{Result, Store};

impl Store {
    /// Records that run `run_id` is combination `pos` of sweep `sweep_id`.
    pub fn add_sweep_run(&mut self, sweep_id: &str, run_id: &str, pos: usize) -> Result<()> {
        self.require_run(run_id)?;
        self.conn
            .execute(
                "INSERT INTO sweep_runs (run_id, sweep_id, pos) VALUES (?1, ?2, ?3)",
                params![run_id, sweep_id, pos as i64],
            )
            .map_err(self.sql_err("record sweep run"))?;
        Ok(())
    }

    /// The sweep a run belongs to, if any.
    pub fn sweep_of(&self, run_id: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT sweep_id FROM sweep_runs WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_err("read sweep"))
    }

    /// The run ids of a sweep (`ID` or a unique prefix of it), in combination order.
    pub fn sweep_runs(&self, sweep_id: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT run_id FROM sweep_runs WHERE sweep_id = ?1 OR sweep_id LIKE ?1 || '%' \
                 ORDER BY sweep_id, pos",
            )
            .map_err(self.sql_err("read sweep"))?;
        let rows = st
            .query_map([sweep_id], |r| r.get::<_, String>(0))
            .map_err(self.sql_err("read sweep"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql_err("read sweep"))
    }
}
