//! A read-only look at a database for `repro doctor`: never creates, migrates or writes it.

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
}
