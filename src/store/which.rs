//! The look-ups of `repro which` (which runs produced or read a file with this content), and
//! the rows they read about datasets: `dataset_files`, filled once per dataset digest.

use rusqlite::{params, OptionalExtension};

use super::kept::{parse_manifest, ManifestEntry};
use super::{Result, Store};

/// A run that produced the content: as a file output, or a file inside a directory output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRow {
    pub run_id: String,
    pub name: Option<String>,
    /// The stored status (`running` is decided by the caller).
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The output path as recorded.
    pub output: String,
    /// The path inside a directory output (manifest bytes); empty for the output itself.
    pub inside: Vec<u8>,
    /// `run_outputs.kept` (None: recorded before outputs were kept).
    pub kept: Option<bool>,
}

/// A run that read the content as (part of) a path dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRow {
    pub run_id: String,
    pub name: Option<String>,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The dataset's name in that run.
    pub dataset: String,
    /// The dataset's digest (`sha256:…`).
    pub digest: String,
    /// The path inside the dataset; empty when the dataset is the content itself.
    pub inside: Vec<u8>,
}

/// The four look-ups, each on an index (a test reads their query plans).
#[derive(Debug, Clone, Copy)]
enum Look {
    /// A file output, or a file inside a directory output, by its SHA-256.
    ProducedFile,
    /// A directory output by its dataset digest.
    ProducedDir,
    /// A file inside a path dataset whose manifest is known, by its SHA-256.
    ReadFile,
    /// A path dataset by its digest.
    ReadDir,
}

impl Look {
    fn sql(self) -> String {
        let (columns, from) = match self {
            Look::ProducedFile => (
                "o.path, f.rel, o.kept",
                "output_files f JOIN run_outputs o ON o.run_id = f.run_id AND o.pos = f.pos
                 JOIN runs r ON r.id = f.run_id WHERE f.sha256 = ?1",
            ),
            Look::ProducedDir => (
                "o.path, X'', o.kept",
                "run_outputs o JOIN runs r ON r.id = o.run_id WHERE o.sha256 = ?1",
            ),
            Look::ReadFile => (
                "d.name, d.digest, df.rel",
                "dataset_files df JOIN run_datasets d ON d.digest = df.digest
                 JOIN runs r ON r.id = d.run_id WHERE df.sha256 = ?1",
            ),
            Look::ReadDir => (
                "d.name, d.digest, X''",
                "run_datasets d JOIN runs r ON r.id = d.run_id WHERE d.digest = ?1",
            ),
        };
        format!(
            "SELECT r.id, r.name, r.status, r.started_at, r.ended_at, {columns}
             FROM {from} ORDER BY r.started_at DESC, r.id DESC"
        )
    }
}

impl Store {
    /// The runs that produced a file whose SHA-256 is `sha256` (64 hex), newest first: one
    /// indexed look-up in `output_files`.
    pub fn produced_file(&self, sha256: &str) -> Result<Vec<ProducedRow>> {
        self.produced(Look::ProducedFile, sha256)
    }

    /// The runs whose directory output has the dataset digest `digest` (`sha256:…`).
    pub fn produced_dir(&self, digest: &str) -> Result<Vec<ProducedRow>> {
        self.produced(Look::ProducedDir, digest)
    }

    fn produced(&self, look: Look, key: &str) -> Result<Vec<ProducedRow>> {
        let err = self.sql_err("look up outputs");
        let mut st = self.conn.prepare_cached(&look.sql()).map_err(&err)?;
        let rows = st
            .query_map([key], |r| {
                Ok(ProducedRow {
                    run_id: r.get(0)?,
                    name: r.get(1)?,
                    status: r.get(2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    output: r.get(5)?,
                    inside: r.get(6)?,
                    kept: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        Ok(rows)
    }

    /// The runs that read a file whose SHA-256 is `sha256` inside a path dataset whose
    /// manifest is known (`dataset_files`), newest first.
    pub fn read_file(&self, sha256: &str) -> Result<Vec<ReadRow>> {
        self.read(Look::ReadFile, sha256)
    }

    /// The runs that read a path dataset with the digest `digest` (`sha256:…`), newest first.
    pub fn read_dir(&self, digest: &str) -> Result<Vec<ReadRow>> {
        self.read(Look::ReadDir, digest)
    }

    fn read(&self, look: Look, key: &str) -> Result<Vec<ReadRow>> {
        let err = self.sql_err("look up datasets");
        let mut st = self.conn.prepare_cached(&look.sql()).map_err(&err)?;
        let rows = st
            .query_map([key], |r| {
                Ok(ReadRow {
                    run_id: r.get(0)?,
                    name: r.get(1)?,
                    status: r.get(2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    dataset: r.get(5)?,
                    digest: r.get(6)?,
                    inside: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&err)?;
        Ok(rows)
    }

    /// Whether the files of the dataset `digest` are recorded.
    pub fn dataset_files_known(&self, digest: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM dataset_files WHERE digest = ?1 LIMIT 1")
            .and_then(|mut st| st.query_row([digest], |_| Ok(())).optional())
            .map(|found| found.is_some())
            .map_err(self.sql_err("look up dataset files"))
    }

    /// Records the regular files of the dataset `digest` from its canonical `manifest`, once:
    /// a digest already known costs one indexed look-up (an unchanged 200,000-file dataset is
    /// not written again); a new one is written in one transaction. Symlinks are left out (their
    /// digest names a target string, not content a user would ask about). Returns the number
    /// of files written; a manifest that does not parse writes nothing.
    pub fn record_dataset_files(&mut self, digest: &str, manifest: &[u8]) -> Result<usize> {
        if self.dataset_files_known(digest)? {
            return Ok(0);
        }
        let Some(entries) = parse_manifest(manifest) else {
            return Ok(0);
        };
        let err = super::sql_error(&self.path, "record dataset files");
        // Immediate, as every writer of the store: no deadlock upgrading a read lock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut n = 0;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO dataset_files (digest, rel, sha256, bytes) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&err)?;
            for e in &entries {
                if let ManifestEntry::File { rel, sha256, bytes } = e {
                    n += st
                        .execute(params![digest, rel, sha256, *bytes as i64])
                        .map_err(&err)?;
                }
            }
        }
        tx.commit().map_err(&err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sha: char, size: u64, rel: &str) -> String {
        format!("{} {size} {rel}\n", sha.to_string().repeat(64))
    }

    #[test]
    fn dataset_files_are_recorded_once_and_symlinks_left_out() {
        let mut s = Store::open_in_memory().unwrap();
        let man = format!(
            "{}{}{} symlink c\n",
            line('a', 3, "a.txt"),
            line('b', 5, "sub/b.txt"),
            "c".repeat(64)
        );
        assert!(!s.dataset_files_known("sha256:x").unwrap());
        assert_eq!(
            s.record_dataset_files("sha256:x", man.as_bytes()).unwrap(),
            2
        );
        assert!(s.dataset_files_known("sha256:x").unwrap());
        assert_eq!(
            s.record_dataset_files("sha256:x", man.as_bytes()).unwrap(),
            0,
            "a known digest is not written again"
        );
        assert_eq!(
            s.record_dataset_files("sha256:y", b"not a manifest\n")
                .unwrap(),
            0
        );
        let n: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM dataset_files WHERE sha256 = ?1",
                ["c".repeat(64)],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn every_look_up_uses_an_index() {
        let s = Store::open_in_memory().unwrap();
        for look in [
            Look::ProducedFile,
            Look::ProducedDir,
            Look::ReadFile,
            Look::ReadDir,
        ] {
            let mut st = s
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", look.sql()))
                .unwrap();
            let plan: Vec<String> = st
                .query_map(["x"], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            // A full scan of a table would grow with the number of runs; the sort is over the
            // matches only.
            assert!(
                plan.iter().all(|l| !l.starts_with("SCAN")),
                "{look:?}: {plan:?}"
            );
        }
    }

    #[test]
    fn migration_15_gives_older_file_outputs_their_output_files_row() {
        use crate::store::MIGRATIONS;
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for (_, sql) in &MIGRATIONS[..14] {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(
            "INSERT INTO runs (id, status, started_at, argv, cwd, exec_mode, host, user, platform)
                 VALUES ('r1', 'succeeded', '2026-01-01T00:00:00Z', '[]', '.', 'host', 'h', 'u', 'p');
             INSERT INTO run_outputs (run_id, pos, path, sha256, bytes) VALUES
                 ('r1', 0, 'model.pt', 'aaaa', 4),
                 ('r1', 1, 'ckpt', 'sha256:bbbb', 9),
                 ('r1', 2, 'gone', NULL, NULL);",
        )
        .unwrap();
        c.execute_batch(MIGRATIONS[14].1).unwrap();
        let rows: Vec<(i64, Vec<u8>, String, i64)> = c
            .prepare("SELECT pos, rel, sha256, bytes FROM output_files")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows, [(0, Vec::new(), "aaaa".to_string(), 4)]);
    }
}
