//! The schema: `schema.sql` creates a fresh database at the current version; the append-only
//! files in `migrations/` (one per version, embedded) upgrade older ones. `PRAGMA user_version`
//! says which were applied. A test checks that every older database, migrated, has exactly the
//! schema of a fresh one, so a migration lost in a merge fails the build.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The current full schema of a fresh database.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// The migrations as (version, sql), in order: `migrations/NNNN.sql` upgrades version NNNN-1 to NNNN.
pub static MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001.sql")),
    (2, include_str!("../../migrations/0002.sql")),
    (3, include_str!("../../migrations/0003.sql")),
    (4, include_str!("../../migrations/0004.sql")),
    (5, include_str!("../../migrations/0005.sql")),
    (6, include_str!("../../migrations/0006.sql")),
    (7, include_str!("../../migrations/0007.sql")),
    (8, include_str!("../../migrations/0008.sql")),
    (9, include_str!("../../migrations/0009.sql")),
    (10, include_str!("../../migrations/0010.sql")),
    (11, include_str!("../../migrations/0011.sql")),
    (12, include_str!("../../migrations/0012.sql")),
    (13, include_str!("../../migrations/0013.sql")),
    (14, include_str!("../../migrations/0014.sql")),
    (15, include_str!("../../migrations/0015.sql")),
    (16, include_str!("../../migrations/0016.sql")),
    (17, include_str!("../../migrations/0017.sql")),
    (18, include_str!("../../migrations/0018.sql")),
    (19, include_str!("../../migrations/0019.sql")),
    (20, include_str!("../../migrations/0020.sql")),
    (21, include_str!("../../migrations/0021.sql")),
    (22, include_str!("../../migrations/0022.sql")),
    (23, include_str!("../../migrations/0023.sql")),
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current = user_version(conn).map_err(|source| StoreError::NotADatabase {
        path: path.into(),
        source,
    })?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::TooNew {
            path: path.into(),
            found: current,
            supported: latest,
        });
    }
    if current == latest {
        return Ok(());
    }
    let fail = |version: i64| {
        move |source| StoreError::Migrate {
            path: path.into(),
            version,
            source,
        }
    };
    if current == 0 {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail(latest))?;
        // Another process may have created it while we waited for the lock.
        if user_version(&tx).map_err(fail(latest))? == 0 {
            tx.execute_batch(SCHEMA).map_err(fail(latest))?;
            tx.execute_batch(&format!("PRAGMA user_version = {latest}"))
                .map_err(fail(latest))?;
            tx.commit().map_err(fail(latest))?;
            return Ok(());
        }
    }
    // A migration may rebuild a table that others reference (SQLite cannot alter a CHECK):
    // foreign keys stay off while it runs (the pragma is a no-op inside a transaction), so the
    // rebuild neither cascades deletes nor fails; they are checked before each commit.
    conn.execute_batch("PRAGMA foreign_keys=OFF")
        .map_err(fail(current + 1))?;
    let result = apply(conn, path);
    let on = conn.execute_batch("PRAGMA foreign_keys=ON");
    result?;
    on.map_err(fail(latest))
}

fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    for (version, sql) in MIGRATIONS.iter() {
        let fail = |source| StoreError::Migrate {
            path: path.into(),
            version: *version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        // Another process may have migrated while we waited for the lock.
        if user_version(&tx).map_err(fail)? >= *version {
            continue;
        }
        tx.execute_batch(sql).map_err(fail)?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(fail)?;
        if let Some(table) = broken {
            return Err(fail(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!("a row of {table} lost its run")),
            )));
        }
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

/// The schema of a database as comparable text: every table, index and trigger of
/// `sqlite_master` with comments, quotes and layout removed, sorted by name.
pub fn normalised_schema(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )?;
    let rows = st.query_map([], |r| {
        let (ty, name, sql): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok(format!("{ty} {name}: {}", normalise_sql(&sql)))
    })?;
    rows.collect()
}

fn normalise_sql(sql: &str) -> String {
    let no_comments: Vec<&str> = sql
        .lines()
        .map(|l| l.split_once("--").map(|(a, _)| a).unwrap_or(l))
        .collect();
    let joined = no_comments.join(" ").replace('"', "");
    let words: Vec<&str> = joined.split_whitespace().collect();
    words
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" ,", ",")
        .replace("IF NOT EXISTS ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, Path::new(":memory:")).unwrap();
        c
    }

    #[test]
    fn migrations_are_numbered_one_by_one() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
    }

    #[test]
    fn every_migration_step_reaches_the_fresh_schema() {
        let want = normalised_schema(&fresh()).unwrap();
        assert!(want.iter().any(|l| l.contains("'error'")), "{want:?}");
        // From nothing, through every migration.
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        apply(&mut c, Path::new(":memory:")).unwrap();
        assert_eq!(normalised_schema(&c).unwrap(), want);
        assert_eq!(user_version(&c).unwrap(), latest_version());
    }

    #[test]
    fn fixtures_of_every_earlier_version_migrate_to_the_fresh_schema() {
        let want = normalised_schema(&fresh()).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut seen = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if !(name.starts_with("schema-v") && name.ends_with(".db")) {
                continue;
            }
            let tmp = tempfile::tempdir().unwrap();
            let copy = tmp.path().join("db");
            std::fs::copy(&p, &copy).unwrap();
            let mut c = Connection::open(&copy).unwrap();
            c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
            let before: i64 = c
                .query_row("SELECT count(*) FROM run_datasets", [], |r| r.get(0))
                .unwrap();
            migrate(&mut c, &copy).unwrap();
            assert_eq!(normalised_schema(&c).unwrap(), want, "{name}");
            let after: i64 = c
                .query_row("SELECT count(*) FROM run_datasets", [], |r| r.get(0))
                .unwrap();
            assert_eq!(before, after, "{name}: child rows must survive the rebuild");
            seen.push(name);
        }
        assert!(seen.len() >= 2, "fixtures: {seen:?}");
    }

    #[test]
    fn a_missing_migration_is_caught() {
        let want = normalised_schema(&fresh()).unwrap();
        let c = Connection::open_in_memory().unwrap();
        for (_, sql) in &MIGRATIONS[..MIGRATIONS.len() - 1] {
            c.execute_batch(sql).unwrap();
        }
        assert_ne!(normalised_schema(&c).unwrap(), want);
    }
}
