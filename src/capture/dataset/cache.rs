//! The hash cache (`hash_cache` table): per-file SHA-256 keyed by what changes when the file does.
//!
//! An entry is served only when device, inode, size, mtime and ctime all match *and* the file's
//! mtime and ctime are both older than the moment hashing started minus [`RACY_GRANULARITY_NS`].
//! The second condition is git's "racily clean" rule: a write that lands in the same timestamp
//! tick as the write we saw, after we read the file, leaves every key field unchanged; such an
//! entry is re-read instead of trusted. ctime cannot be set by users (`touch -d`, `utimensat`
//! change it to now), so restoring an old mtime after an edit is caught too.
//!
//! Reads are one range scan over the dataset's paths; writes one IMMEDIATE transaction.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::manifest::{Entry, FileMeta};
use super::DatasetError;

/// Timestamps within this much of the hashing start are not trusted. Most Linux filesystems
/// stamp with a jiffy-coarse clock (up to ~10 ms behind), some (FAT, ext3, HFS+, NFS with skew)
/// with whole seconds; two seconds covers them, and the cost is only that a file written in the
/// last two seconds before hashing is read once more next time.
pub const RACY_GRANULARITY_NS: i64 = 2_000_000_000;

#[derive(Debug, Clone)]
struct Row {
    dev: i64,
    ino: i64,
    size: i64,
    mtime_ns: i64,
    ctime_ns: i64,
    sha: [u8; 32],
    hashed_ns: i64,
}

/// The cache rows under one hashed root, loaded in one query.
pub(crate) struct Cache {
    rows: HashMap<String, Row>,
    /// Whether the root is representable as a TEXT key (non-UTF-8 paths are never cached).
    usable: bool,
}

fn err(what: &'static str) -> impl Fn(rusqlite::Error) -> DatasetError {
    move |source| DatasetError::Cache { what, source }
}

impl Cache {
    /// Loads every row for `root` itself and for paths under it.
    pub(crate) fn load(conn: &Connection, root: &Path) -> Result<Cache, DatasetError> {
        let Some(root) = root.to_str() else {
            return Ok(Cache {
                rows: HashMap::new(),
                usable: false,
            });
        };
        let base = root.trim_end_matches('/');
        // Everything starting with "<root>/" sorts in ["<root>/", "<root>0"): '0' follows '/'.
        let range = (root.to_string(), format!("{base}/"), format!("{base}0"));
        let mut rows = HashMap::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256, hashed_ns FROM hash_cache
                 WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
            )
            .map_err(err("reading it"))?;
        let mut q = stmt
            .query(params![range.0, range.1, range.2])
            .map_err(err("reading it"))?;
        while let Some(r) = q.next().map_err(err("reading it"))? {
            let hexsha: String = r.get(6).map_err(err("reading it"))?;
            let mut sha = [0u8; 32];
            if hex::decode_to_slice(hexsha.as_bytes(), &mut sha).is_err() {
                continue; // a damaged row is a miss, and gets overwritten
            }
            rows.insert(
                r.get(0).map_err(err("reading it"))?,
                Row {
                    dev: r.get(1).map_err(err("reading it"))?,
                    ino: r.get(2).map_err(err("reading it"))?,
                    size: r.get(3).map_err(err("reading it"))?,
                    mtime_ns: r.get(4).map_err(err("reading it"))?,
                    ctime_ns: r.get(5).map_err(err("reading it"))?,
                    sha,
                    hashed_ns: r.get(7).map_err(err("reading it"))?,
                },
            );
        }
        Ok(Cache { rows, usable: true })
    }

    /// The cached hash of `abs`, when it can be trusted for a file with metadata `m`.
    pub(crate) fn lookup(&self, abs: &Path, m: &FileMeta) -> Option<[u8; 32]> {
        let row = self.rows.get(abs.to_str()?)?;
        trusted(row, m).then_some(row.sha)
    }
}

fn trusted(row: &Row, m: &FileMeta) -> bool {
    row.dev == m.dev as i64
        && row.ino == m.ino as i64
        && row.size == m.size as i64
        && row.mtime_ns == m.mtime_ns
        && row.ctime_ns == m.ctime_ns
        && m.mtime_ns.max(m.ctime_ns) < row.hashed_ns.saturating_sub(RACY_GRANULARITY_NS)
}

/// Stores fresh hashes and drops rows for paths under the root that no longer exist, in one
/// transaction (none when nothing changed).
pub(crate) fn store<'a>(
    conn: &Connection,
    cache: &Cache,
    entries: &[Entry],
    fresh: impl Iterator<Item = (&'a Path, &'a FileMeta, &'a [u8; 32])>,
    hashed_ns: i64,
) -> Result<(), DatasetError> {
    if !cache.usable {
        return Ok(());
    }
    let fresh: Vec<_> = fresh
        .filter_map(|(p, m, s)| Some((p.to_str()?, m, s)))
        .collect();
    let seen_rows = entries
        .iter()
        .filter(|e| e.abs.to_str().is_some_and(|p| cache.rows.contains_key(p)))
        .count();
    let stale: Vec<&str> = if seen_rows < cache.rows.len() {
        let live: HashSet<&str> = entries.iter().filter_map(|e| e.abs.to_str()).collect();
        cache
            .rows
            .keys()
            .map(String::as_str)
            .filter(|k| !live.contains(k))
            .collect()
    } else {
        Vec::new()
    };
    if fresh.is_empty() && stale.is_empty() {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(err("starting a write"))?;
    {
        let mut put = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO hash_cache (path, dev, ino, size, mtime_ns, ctime_ns, sha256, hashed_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(err("writing it"))?;
        for (path, m, sha) in fresh {
            put.execute(params![
                path,
                m.dev as i64,
                m.ino as i64,
                m.size as i64,
                m.mtime_ns,
                m.ctime_ns,
                hex::encode(sha),
                hashed_ns
            ])
            .map_err(err("writing it"))?;
        }
        let mut del = tx
            .prepare_cached("DELETE FROM hash_cache WHERE path = ?1")
            .map_err(err("writing it"))?;
        for path in stale {
            del.execute([path]).map_err(err("writing it"))?;
        }
    }
    tx.commit().map_err(err("committing a write"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> FileMeta {
        FileMeta {
            size: 10,
            dev: 1,
            ino: 2,
            mtime_ns: 1_000_000_000_000,
            ctime_ns: 1_000_000_000_000,
        }
    }

    fn row_for(m: &FileMeta, hashed_ns: i64) -> Row {
        Row {
            dev: m.dev as i64,
            ino: m.ino as i64,
            size: m.size as i64,
            mtime_ns: m.mtime_ns,
            ctime_ns: m.ctime_ns,
            sha: [7; 32],
            hashed_ns,
        }
    }

    #[test]
    fn an_entry_hashed_well_after_the_last_change_is_trusted() {
        let m = meta();
        assert!(trusted(&row_for(&m, m.ctime_ns + 10_000_000_000), &m));
    }

    #[test]
    fn a_racily_clean_entry_is_not_trusted() {
        // Hashed in the same tick as the last write: a later same-tick, same-size write would
        // leave every key field unchanged, so the entry must be re-read.
        let m = meta();
        assert!(!trusted(&row_for(&m, m.ctime_ns), &m));
        assert!(!trusted(&row_for(&m, m.ctime_ns + RACY_GRANULARITY_NS), &m));
        // A future mtime (touch -d tomorrow) is never trusted either.
        let mut fut = m;
        fut.mtime_ns = m.ctime_ns + 100_000_000_000;
        assert!(!trusted(&row_for(&fut, m.ctime_ns + 10_000_000_000), &fut));
    }

    #[test]
    fn any_key_change_is_a_miss() {
        let m = meta();
        let r = row_for(&m, m.ctime_ns + 10_000_000_000);
        for change in [
            |m: &mut FileMeta| m.size += 1,
            |m: &mut FileMeta| m.dev += 1,
            |m: &mut FileMeta| m.ino += 1,
            |m: &mut FileMeta| m.mtime_ns -= 1,
            |m: &mut FileMeta| m.ctime_ns -= 1,
        ] {
            let mut m2 = m;
            change(&mut m2);
            assert!(!trusted(&r, &m2), "{m2:?}");
        }
    }
}
