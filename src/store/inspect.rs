//! Read-only looks at a database (`repro doctor`, run-id completion): never creates, migrates
//! or writes it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{latest_version, Store};

/// What `Store::inspect` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `PRAGMA user_version`.
    pub version: i64,
    /// The version this repro writes.
    pub latest: i64,
    /// `PRAGMA integrity_check` lines: `["ok"]` for a sound file.
    pub integrity: Vec<String>,
    /// Number of runs, when the table can be read.
    pub runs: Option<i64>,
    /// Run outcomes spilled while the database was unavailable, waiting to be replayed.
    pub pending_spills: usize,
}

impl Inspection {
    /// Whether the integrity check passed.
    pub fn is_sound(&self) -> bool {
        self.integrity.first().map(String::as_str) == Some("ok")
    }
}

impl Store {
    /// Opens `path` read-only and reports its version, integrity and size. The error is the
    /// SQLite error that made it unreadable (not a database, corrupt, …).
    pub fn inspect(path: &Path) -> rusqlite::Result<Inspection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let integrity: Vec<String> = conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let runs = conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .ok();
        let pending_spills = std::fs::read_dir(super::spill_dir(path))
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0);
        Ok(Inspection {
            version,
            latest: latest_version(),
            integrity,
            runs,
            pending_spills,
        })
    }

    /// Up to 50 run ids starting with `prefix` (lowercase alphanumerics), newest first, read
    /// from `path` opened read-only: shell completion must neither create nor wait on a database.
    pub fn complete_ids(path: &Path, prefix: &str) -> rusqlite::Result<Vec<String>> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut stmt = conn
            .prepare("SELECT id FROM runs WHERE id >= ?1 AND id < ?2 ORDER BY id DESC LIMIT 50")?;
        let ids = stmt
            .query_map([prefix, &format!("{prefix}\u{7f}")], |r| r.get(0))?
            .collect();
        ids
    }
}

impl Store {
    /// The metric keys recorded in the database at `path` (read-only, never migrated or
    /// created), sorted, at most 200: what `ls --sort metric:` completes to.
    pub fn complete_metric_keys(path: &Path) -> rusqlite::Result<Vec<String>> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut stmt = conn.prepare(
            "WITH RECURSIVE k(key, n) AS (
                 SELECT min(key), 1 FROM run_metrics
                 UNION ALL
                 SELECT (SELECT min(key) FROM run_metrics WHERE key > k.key), n + 1 FROM k
                 WHERE k.key IS NOT NULL AND n < 200
             )
             SELECT key FROM k WHERE key IS NOT NULL",
        )?;
        let keys = stmt.query_map([], |r| r.get(0))?.collect();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;

    #[test]
    fn complete_ids_lists_matching_ids_newest_first() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("repro.db");
        let mut s = Store::open(&path).unwrap();
        for id in [
            "01jd3k0000000000000000000a",
            "01jd3k0000000000000000000b",
            "01jd4k0000000000000000000c",
        ] {
            s.insert_run(&sample_run(id)).unwrap();
        }
        drop(s);
        assert_eq!(
            Store::complete_ids(&path, "01jd3").unwrap(),
            ["01jd3k0000000000000000000b", "01jd3k0000000000000000000a"]
        );
        assert_eq!(Store::complete_ids(&path, "").unwrap().len(), 3);
        assert!(Store::complete_ids(&path, "zz").unwrap().is_empty());
    }
}
