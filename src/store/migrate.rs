//! Ordered, append-only migrations read from `schema.sql`, tracked with `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The schema file, split on `-- migration: N` markers.
const SCHEMA: &str = include_str!("../../schema.sql");

/// The migrations as (version, sql), in order.
pub static MIGRATIONS: std::sync::LazyLock<Vec<(i64, &'static str)>> =
    std::sync::LazyLock::new(|| split(SCHEMA));

fn split(schema: &'static str) -> Vec<(i64, &'static str)> {
    let mut out: Vec<(i64, &'static str)> = Vec::new();
    let marker = "\n-- migration: ";
    let mut rest = schema;
    while let Some(start) = rest.find(marker) {
        let after = &rest[start + marker.len()..];
        let eol = after.find('\n').unwrap_or(after.len());
        let version: i64 = after[..eol]
            .trim()
            .parse()
            .expect("schema.sql: migration number");
        let body_start = (eol + 1).min(after.len());
        let body = &after[body_start..];
        let end = body.find(marker).unwrap_or(body.len());
        out.push((version, &body[..end]));
        rest = &body[end..];
    }
    for (i, (v, _)) in out.iter().enumerate() {
        assert_eq!(
            *v,
            i as i64 + 1,
            "schema.sql: migrations must be numbered 1, 2, 3, …"
        );
    }
    out
}

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| StoreError::NotADatabase {
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
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let fail = |source| StoreError::Migrate {
            path: path.into(),
            version: *version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if now >= *version {
            continue;
        }
        tx.execute_batch(sql).map_err(fail)?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}
