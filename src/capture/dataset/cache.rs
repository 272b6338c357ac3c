//! The hash cache (`hash_cache` table): per-file SHA-256 keyed by what changes when the file does.
//!
//! An entry is served only when device, inode, size, mtime and ctime all match *and* the file's
//! mtime and ctime are both older than the moment hashing started minus [`RACY_GRANULARITY_NS`].
//! The second condition is git's "racily clean" rule: a write that lands in the same timestamp
//! tick as the write we saw, after we read the file, leaves every key field unchanged; such an
//! entry is re-read instead of trusted. ctime cannot be set by users (`touch -d`, `utimensat`
//! change it to now), so restoring an old mtime after an edit is caught too.
//!
//! Reads are one ordered range scan over the dataset's paths, run while the tree is walked and
//! merged with the sorted walk; writes one IMMEDIATE transaction.

use std::path::Path;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::manifest::{EntryKind, FileMeta, Tree};
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

fn err(what: &'static str) -> impl Fn(rusqlite::Error) -> DatasetError {
    move |source| DatasetError::Cache { what, source }
}

/// What the cache knew about a tree.
pub(crate) struct Lookup {
    /// Per entry: the trusted cached hash.
    pub hits: Vec<Option<[u8; 32]>>,
    /// Rows under the root whose file is gone (or is no longer a regular file).
    stale: Vec<String>,
    /// Whether the root can be a TEXT key at all (non-UTF-8 paths are never cached).
    usable: bool,
}

/// The cache rows under a directory, read in path order before the walk ends: the range scan
/// runs on the caller's thread (the connection's) while the pool walks the tree.
pub(crate) struct Preloaded {
    /// `<root>/`: the rows' common prefix.
    prefix: String,
    /// Each row with the end of its relative path in `names` (the previous row's end is its start).
    rows: Vec<(usize, Row)>,
    names: Vec<u8>,
}

/// Reads every row under the directory `root` in one ordered range scan (nothing when `root` is
/// not UTF-8, as such paths are never cached, or names a file: its row is read by [`lookup`]).
pub(crate) fn preload(conn: &Connection, root: &Path) -> Result<Preloaded, DatasetError> {
    let base = root.to_str().unwrap_or_default().trim_end_matches('/');
    let mut out = Preloaded {
        prefix: format!("{base}/"),
        rows: Vec::new(),
        names: Vec::new(),
    };
    if root.to_str().is_none() {
        return Ok(out);
    }
    // Everything starting with "<root>/" sorts in ["<root>/", "<root>0"): '0' follows '/'. The
    // BINARY collation is memcmp, the same order as the entries' relative paths.
    let mut stmt = conn
        .prepare_cached(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256, hashed_ns FROM hash_cache
             WHERE path >= ?1 AND path < ?2 ORDER BY path",
        )
        .map_err(err("reading it"))?;
    let mut q = stmt
        .query(params![out.prefix, format!("{base}0")])
        .map_err(err("reading it"))?;
    while let Some(r) = q.next().map_err(err("reading it"))? {
        let path = r.get_ref(0).and_then(|v| v.as_str().map_err(Into::into));
        let path = path.map_err(err("reading it"))?;
        out.names
            .extend_from_slice(&path.as_bytes()[out.prefix.len()..]);
        // A damaged row is a miss (and is overwritten or dropped): keep it with an impossible key.
        let row = row_of(r)?.unwrap_or(Row {
            dev: -1,
            ino: -1,
            size: -1,
            mtime_ns: 0,
            ctime_ns: 0,
            sha: [0; 32],
            hashed_ns: i64::MIN,
        });
        out.rows.push((out.names.len(), row));
    }
    Ok(out)
}

/// Merges the rows read by [`preload`] with the entries of `tree` (sorted by relative path): no
/// per-file query, no hash map, no allocation per row.
pub(crate) fn lookup(
    conn: &Connection,
    tree: &Tree,
    preloaded: Preloaded,
) -> Result<Lookup, DatasetError> {
    let n = tree.entries.len();
    let mut out = Lookup {
        hits: vec![None; n],
        stale: Vec::new(),
        usable: false,
    };
    let Some(root) = tree.root.to_str() else {
        return Ok(out);
    };
    out.usable = true;
    if tree.single {
        let mut stmt = conn
            .prepare_cached(
                "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256, hashed_ns FROM hash_cache WHERE path = ?1",
            )
            .map_err(err("reading it"))?;
        let mut q = stmt.query([root]).map_err(err("reading it"))?;
        if let Some(r) = q.next().map_err(err("reading it"))? {
            if let (Some(row), EntryKind::File(m)) = (row_of(r)?, &tree.entries[0].kind) {
                out.hits[0] = trusted(&row, m).then_some(row.sha);
            }
        }
        return Ok(out);
    }
    let (mut i, mut start) = (0, 0);
    for (end, row) in &preloaded.rows {
        let rel = &preloaded.names[start..*end];
        start = *end;
        while i < n && tree.entries[i].rel.as_slice() < rel {
            i += 1;
        }
        match tree.entries.get(i) {
            Some(e) if e.rel == rel => {
                if let EntryKind::File(m) = &e.kind {
                    out.hits[i] = trusted(row, m).then_some(row.sha);
                    continue;
                }
            }
            _ => {}
        }
        let mut path = preloaded.prefix.clone();
        path.push_str(std::str::from_utf8(rel).unwrap_or_default());
        out.stale.push(path);
    }
    Ok(out)
}

fn row_of(r: &rusqlite::Row<'_>) -> Result<Option<Row>, DatasetError> {
    let e = err("reading it");
    let sha = r.get_ref(6).map_err(&e)?;
    let Ok(sha) = <[u8; 32]>::try_from(sha.as_blob().unwrap_or_default()) else {
        return Ok(None); // a damaged row is a miss, and gets overwritten
    };
    Ok(Some(Row {
        dev: r.get(1).map_err(&e)?,
        ino: r.get(2).map_err(&e)?,
        size: r.get(3).map_err(&e)?,
        mtime_ns: r.get(4).map_err(&e)?,
        ctime_ns: r.get(5).map_err(&e)?,
        sha,
        hashed_ns: r.get(7).map_err(&e)?,
    }))
}

fn trusted(row: &Row, m: &FileMeta) -> bool {
    row.dev == m.dev as i64
        && row.ino == m.ino as i64
        && row.size == m.size as i64
        && row.mtime_ns == m.mtime_ns
        && row.ctime_ns == m.ctime_ns
        && m.mtime_ns.max(m.ctime_ns) < row.hashed_ns.saturating_sub(RACY_GRANULARITY_NS)
}

/// Stores the hashes of the entries `fresh` (indices into the tree) and drops stale rows, in one
/// transaction (none when nothing changed).
pub(crate) fn store(
    conn: &Connection,
    tree: &Tree,
    found: &Lookup,
    fresh: &[(usize, [u8; 32])],
    hashed_ns: i64,
) -> Result<(), DatasetError> {
    if !found.usable || (fresh.is_empty() && found.stale.is_empty()) {
        return Ok(());
    }
    // A big first fill would overflow SQLite's default 2 MiB page cache and spill pages to the
    // WAL mid-transaction, rewriting them over and over; give it room for this write only.
    let old_cache: Option<i64> = if fresh.len() > 10_000 {
        let old = conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .map_err(err("starting a write"))?;
        conn.execute_batch("PRAGMA cache_size = -131072")
            .map_err(err("starting a write"))?;
        Some(old)
    } else {
        None
    };
    let result = write(conn, tree, found, fresh, hashed_ns);
    if let Some(old) = old_cache {
        let _ = conn.execute_batch(&format!("PRAGMA cache_size = {old}"));
    }
    result
}

fn write(
    conn: &Connection,
    tree: &Tree,
    found: &Lookup,
    fresh: &[(usize, [u8; 32])],
    hashed_ns: i64,
) -> Result<(), DatasetError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(err("starting a write"))?;
    {
        let mut put = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO hash_cache (path, dev, ino, size, mtime_ns, ctime_ns, sha256, hashed_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(err("writing it"))?;
        for (i, sha) in fresh {
            let e = &tree.entries[*i];
            let EntryKind::File(m) = &e.kind else {
                continue;
            };
            let abs = tree.abs(e);
            let Some(path) = abs.to_str() else { continue };
            put.execute(params![
                path,
                m.dev as i64,
                m.ino as i64,
                m.size as i64,
                m.mtime_ns,
                m.ctime_ns,
                &sha[..],
                hashed_ns
            ])
            .map_err(err("writing it"))?;
        }
        let mut del = tx
            .prepare_cached("DELETE FROM hash_cache WHERE path = ?1")
            .map_err(err("writing it"))?;
        for path in &found.stale {
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
