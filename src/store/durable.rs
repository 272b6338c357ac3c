//! Writes that must land: the `running` record waits for the lock as long as it takes (saying
//! after a moment what it waits for), and a run's outcome is retried, re-inserts a record that
//! was deleted meanwhile, and is spilled to a file replayed later if the database stays
//! unavailable. A run's outcome is never lost.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{
    insert_output_files, insert_outputs, insert_rows, sql_error, Finish, Result, Store, StoreError,
};
use crate::record::Run;

/// After this long waiting for the lock, the caller is told what it waits for.
pub const WAIT_NOTICE_AFTER: Duration = Duration::from_secs(2);

/// How long a run's outcome is retried against a locked database before it is spilled.
pub const FINISH_BUDGET: Duration = Duration::from_secs(120);

/// How a run's outcome was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The `running` row was finished.
    Recorded,
    /// The row was already finished (by an import or another process); it was left alone.
    AlreadyFinished,
    /// The row was gone (deleted by `gc` or a restore): the complete record was inserted again,
    /// with its outcome. The caller should warn.
    Restored,
}

/// Where a run's outcome ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// In the database.
    Stored(Finished),
    /// In this spill file, because the database stayed unavailable; replayed by the next
    /// repro process that opens the database.
    Spilled(PathBuf),
}

impl Landed {
    /// Whether this call wrote the outcome into the database (recorded or restored): what
    /// follows an outcome once (a note, metrics, a push) is due. Not when the row was already
    /// finished, nor when the outcome waits in a spill file for the next process.
    pub fn finished_now(&self) -> bool {
        matches!(
            self,
            Landed::Stored(Finished::Recorded | Finished::Restored)
        )
    }
}

/// A spilled outcome: the whole record (so it can be restored) and the outcome.
#[derive(Debug, Serialize, Deserialize)]
struct Spill {
    run: Run,
    finish: Finish,
}

/// The directory of spilled outcomes of the database at `db`.
pub fn spill_dir(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".spill");
    PathBuf::from(p)
}

impl Store {
    /// Runs `op`, waiting while another process holds the lock: after `WAIT_NOTICE_AFTER`,
    /// `on_wait` is called once with the error that made it wait. `budget` bounds the wait
    /// (`None`: as long as needed). Other errors are returned at once.
    pub fn waiting<T>(
        &mut self,
        budget: Option<Duration>,
        on_wait: &mut dyn FnMut(&StoreError),
        mut op: impl FnMut(&mut Store) -> Result<T>,
    ) -> Result<T> {
        // Short SQLite-level waits, so the notice comes on time and the loop sees each failure.
        let _ = self.conn.busy_timeout(Duration::from_millis(100));
        let t0 = Instant::now();
        let mut told = false;
        let result = loop {
            match op(self) {
                Err(e) if e.is_busy() => {
                    if !told && t0.elapsed() >= WAIT_NOTICE_AFTER {
                        on_wait(&e);
                        told = true;
                    }
                    if budget.is_some_and(|b| t0.elapsed() >= b) {
                        break Err(e);
                    }
                }
                other => break other,
            }
        };
        let _ = self.conn.busy_timeout(super::BUSY_TIMEOUT);
        result
    }

    /// Inserts the `running` record, waiting for the lock as long as needed (see `waiting`).
    pub fn insert_run_waiting(
        &mut self,
        run: &Run,
        on_wait: &mut dyn FnMut(&StoreError),
    ) -> Result<()> {
        self.waiting(None, on_wait, |s| s.insert_run(run))
    }

    /// Finishes `run` with its outcome: the `running` row is updated; a row already finished is
    /// left alone; a row that is gone is inserted again, complete, with the outcome.
    pub fn finish(&mut self, run: &Run, fin: &Finish) -> Result<Finished> {
        let path = self.path.clone();
        let err = |what: &'static str| sql_error(&path, what);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("begin"))?;
        let n = tx
            .execute(
                "UPDATE runs SET status = ?2, exit_code = ?3, signal = ?4, ended_at = ?5, duration_ms = ?6
                 WHERE id = ?1 AND status = 'running'",
                params![
                    run.id,
                    fin.status.as_str(),
                    fin.exit_code,
                    fin.signal,
                    fin.ended_at,
                    fin.duration_ms
                ],
            )
            .map_err(err("finish run"))?;
        let done = if n == 1 {
            insert_outputs(&tx, &run.id, &fin.outputs).map_err(err("insert output"))?;
            insert_output_files(&tx, &run.id, &fin.output_files).map_err(err("insert output"))?;
            Finished::Recorded
        } else {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM runs WHERE id = ?1", [&run.id], |r| r.get(0))
                .optional()
                .map_err(err("finish run"))?;
            if exists.is_some() {
                return Ok(Finished::AlreadyFinished);
            }
            let mut whole = run.clone();
            whole.status = fin.status;
            whole.exit_code = fin.exit_code;
            whole.signal = fin.signal;
            whole.ended_at = Some(fin.ended_at.clone());
            whole.duration_ms = Some(fin.duration_ms);
            whole.outputs = fin.outputs.clone();
            insert_rows(&tx, &whole).map_err(|(what, source)| sql_error(&path, what)(source))?;
            insert_output_files(&tx, &run.id, &fin.output_files).map_err(err("insert output"))?;
            Finished::Restored
        };
        tx.commit().map_err(err("commit"))?;
        Ok(done)
    }

    /// `finish`, retried while the database is locked for up to `budget`; if it still cannot be
    /// written (locked, disk full, read-only, …), the outcome is written to a spill file next to
    /// the database and replayed by the next process that opens it. Errors only when even the
    /// spill file cannot be written.
    pub fn finish_durably(
        &mut self,
        run: &Run,
        fin: &Finish,
        budget: Duration,
        on_wait: &mut dyn FnMut(&StoreError),
    ) -> Result<Landed> {
        match self.waiting(Some(budget), on_wait, |s| s.finish(run, fin)) {
            Ok(done) => Ok(Landed::Stored(done)),
            Err(e) => spill(&self.path, run, fin)
                .map(Landed::Spilled)
                .map_err(|spill| StoreError::NotRecorded {
                    id: run.id.clone(),
                    spill,
                    source: Box::new(e),
                }),
        }
    }

    /// Replays spilled outcomes (see `finish_durably`); returns the runs replayed and how.
    /// A spill file that cannot be applied yet stays for the next try.
    pub fn replay_spills(&mut self) -> Result<Vec<(String, Finished)>> {
        let dir = spill_dir(&self.path);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut done = Vec::new();
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let Ok(text) = fs::read(&file) else { continue };
            let Ok(spill) = serde_json::from_slice::<Spill>(&text) else {
                continue;
            };
            let how = self.finish(&spill.run, &spill.finish)?;
            let _ = fs::remove_file(&file);
            done.push((spill.run.id, how));
        }
        let _ = fs::remove_dir(&dir);
        Ok(done)
    }

    /// How many spilled outcomes wait to be replayed.
    pub fn pending_spills(&self) -> usize {
        fs::read_dir(spill_dir(&self.path))
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0)
    }
}

fn spill(db: &Path, run: &Run, fin: &Finish) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let dir = spill_dir(db);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let file = dir.join(format!("{}.json", run.id));
    let tmp = dir.join(format!(".{}.{}.tmp", run.id, std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let body = serde_json::to_vec(&Spill {
        run: run.clone(),
        finish: fin.clone(),
    })
    .expect("run serialises");
    f.write_all(&body)?;
    f.sync_all()?;
    fs::rename(&tmp, &file)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use crate::store::tests::sample_run;

    fn fin(status: Status, code: i32) -> Finish {
        Finish {
            status,
            exit_code: Some(code),
            signal: None,
            ended_at: "2026-11-26T14:00:05.000Z".into(),
            duration_ms: 5000,
            outputs: vec![],
            output_files: vec![],
        }
    }

    #[test]
    fn finish_records_once_and_restores_a_deleted_row() {
        let mut s = Store::open_in_memory().unwrap();
        let run = sample_run("01jd3k0000000000000000000a");
        s.insert_run(&run).unwrap();
        let landed = s
            .finish_durably(&run, &fin(Status::Failed, 3), FINISH_BUDGET, &mut |_| {})
            .unwrap();
        assert_eq!(landed, Landed::Stored(Finished::Recorded));
        assert!(landed.finished_now());
        let again = s
            .finish_durably(&run, &fin(Status::Succeeded, 0), FINISH_BUDGET, &mut |_| {})
            .unwrap();
        assert_eq!(again, Landed::Stored(Finished::AlreadyFinished));
        assert!(
            !again.finished_now(),
            "finished provenance is never rewritten"
        );
        assert_eq!(s.get_run(&run.id).unwrap().exit_code, Some(3));
        // gc deleted it while it ran: the outcome is not lost.
        s.delete_runs(std::slice::from_ref(&run.id)).unwrap();
        let restored = s
            .finish_durably(&run, &fin(Status::Failed, 4), FINISH_BUDGET, &mut |_| {})
            .unwrap();
        assert_eq!(restored, Landed::Stored(Finished::Restored));
        assert!(restored.finished_now());
        let back = s.get_run(&run.id).unwrap();
        assert_eq!((back.status, back.exit_code), (Status::Failed, Some(4)));
        assert_eq!(back.datasets, run.datasets);
        assert_eq!(back.command, run.command);
    }

    #[test]
    fn a_locked_database_gets_the_outcome_through_a_spill_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let mut s = Store::open(&db).unwrap();
        let run = sample_run("01jd3k0000000000000000000a");
        s.insert_run(&run).unwrap();
        let mut blocker = rusqlite::Connection::open(&db).unwrap();
        let tx = blocker
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let mut waited = Vec::new();
        let t0 = Instant::now();
        let landed = s
            .finish_durably(
                &run,
                &fin(Status::Failed, 9),
                Duration::from_millis(2500),
                &mut |e| waited.push(e.to_string()),
            )
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(2500));
        assert_eq!(waited.len(), 1, "told once what it waits for");
        assert!(
            waited[0].contains("locked by another process"),
            "{waited:?}"
        );
        let Landed::Spilled(file) = &landed else {
            panic!("{landed:?}")
        };
        let file = file.clone();
        assert!(!landed.finished_now(), "spilled: not in the database yet");
        assert!(file.exists());
        assert_eq!(s.pending_spills(), 1);
        drop(tx);
        drop(blocker);
        drop(s);
        let mut s = Store::open(&db).unwrap();
        assert_eq!(
            s.pending_spills(),
            0,
            "replayed when the database is opened"
        );
        let back = s.get_run(&run.id).unwrap();
        assert_eq!((back.status, back.exit_code), (Status::Failed, Some(9)));
        assert!(!file.exists());
        assert!(s.replay_spills().unwrap().is_empty());
    }

    #[test]
    fn the_running_record_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let mut s = Store::open(&db).unwrap();
        let blocker = std::thread::spawn({
            let db = db.clone();
            move || {
                let mut c = rusqlite::Connection::open(&db).unwrap();
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2600));
                tx.commit().unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let run = sample_run("01jd3k0000000000000000000a");
        let mut told = 0;
        s.insert_run_waiting(&run, &mut |_| told += 1).unwrap();
        blocker.join().unwrap();
        assert_eq!(told, 1);
        assert_eq!(s.get_run(&run.id).unwrap().id, run.id);
    }
}
