//! A store opened read-only (`repro ui`): never created, migrated or written; it must already
//! be at this repro's schema version.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{migrate::latest_version, Result, Store, StoreError, BUSY_TIMEOUT};

impl Store {
    /// Opens the database at `path` read-only (SQLite's read-only mode and `query_only`): for a
    /// server that answers queries and must never change what it shows. The database must
    /// exist at this repro's schema version (open it once with [`Store::open`] to migrate).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|_| conn.execute_batch("PRAGMA query_only=ON;"))
            .map_err(|source| StoreError::Open {
                path: path.into(),
                source,
            })?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|source| StoreError::NotADatabase {
                path: path.into(),
                source,
            })?;
        if found != latest_version() {
            // Older: the caller migrates with `Store::open` first; newer: not understood.
            return Err(StoreError::TooNew {
                path: path.into(),
                found,
                supported: latest_version(),
            });
        }
        Ok(Store {
            conn,
            path: path.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_store_reads_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Store::open(&path).unwrap());
        let ro = Store::open_read_only(&path).unwrap();
        assert_eq!(ro.query(&Default::default()).unwrap().len(), 0);
        assert!(ro.conn.execute("DELETE FROM runs", []).is_err());
        assert!(Store::open_read_only(&dir.path().join("absent.sqlite")).is_err());
    }
}
