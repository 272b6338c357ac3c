//! Environment snapshots (docs/environment.md), content-addressed: `environments` holds each
//! distinct snapshot once under its SHA-256, `run_environments` points a run at one.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Result, Store};
use crate::record::environment::Environment;

/// Stores `env` (once per distinct content) and links run `run_id` to it.
pub(super) fn insert_environment_in(
    conn: &Connection,
    run_id: &str,
    env: &Environment,
) -> rusqlite::Result<()> {
    let digest = env.digest();
    conn.prepare_cached("INSERT OR IGNORE INTO environments (sha256, body) VALUES (?1, ?2)")?
        .execute(params![digest, env.canonical()])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_environments (run_id, environment) VALUES (?1, ?2)",
    )?
    .execute(params![run_id, digest])?;
    Ok(())
}

impl Store {
    /// Records the environment run `run_id` ran in.
    pub fn record_environment(&mut self, run_id: &str, env: &Environment) -> Result<()> {
        self.require_run(run_id)?;
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(super::sql_error(&path, "record environment"))?;
        insert_environment_in(&tx, run_id, env)
            .map_err(super::sql_error(&path, "record environment"))?;
        tx.commit()
            .map_err(super::sql_error(&path, "record environment"))
    }

    /// The environment a run ran in, if one was recorded. A stored body this repro cannot read
    /// (written by a newer one) reads as none.
    pub fn environment_of(&self, run_id: &str) -> Result<Option<Environment>> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT e.body FROM run_environments r JOIN environments e ON e.sha256 = r.environment \
                 WHERE r.run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_err("read environment"))?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// How many distinct environment snapshots are stored.
    pub fn environment_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM environments", [], |r| r.get(0))
            .map_err(self.sql_err("read environment"))
    }
}
